/*
 * test_math.c - the vectorizable exp/sigmoid/tanh/gate against libm in double, and the
 * random streams' distributions and independence.
 */
#include "../server/core/vmath.h"
#include "gm/rng.h"
#include "testutil.h"

static void test_expf_accuracy(void **state) {
    double worst = 0, at = 0;
    for (double x = -87.0; x <= 88.0; x += 0.000731) {
        double want = exp((double)(float)x), got = gm_expf((float)x);
        double rel = fabs(got - want) / want;
        if (rel > worst) worst = rel, at = x;
    }
    print_message("gm_expf: worst relative error %.3g at x = %.4f\n", worst, at);
    assert_true(worst < 3e-7);
    /* clamped outside the range: finite, no NaN */
    assert_true(isfinite(gm_expf(1000.0f)) && gm_expf(-1000.0f) >= 0.0f);
    /* a NaN from a hostile model file must not reach the float-to-int conversion */
    float nan_in = gm_expf(NAN);
    assert_true(nan_in >= 0.0f && nan_in <= expf(-86.0f));
    double worst_sig = 0;
    for (double x = -87; x <= 88; x += 0.000731) {
        double want = 1.0 / (1.0 + exp(-(double)(float)x)), rel = fabs(gm_sigmoidf((float)x) - want) / want;
        if (rel > worst_sig) worst_sig = rel;
    }
    print_message("gm_sigmoidf: worst relative error %.3g\n", worst_sig);
    assert_true(worst_sig < 3e-7);
    assert_true(gm_sigmoidf(-1e30f) >= 0.0f && gm_sigmoidf(-1e30f) < 1e-37f && gm_sigmoidf(1e30f) == 1.0f);
    double worst_tanh = 0;
    for (double x = -20; x <= 20; x += 0.000917) {
        double err = fabs(gm_tanhf((float)x) - tanh((double)(float)x));
        if (err > worst_tanh) worst_tanh = err;
    }
    print_message("gm_tanhf: worst absolute error %.3g\n", worst_tanh);
    assert_true(worst_tanh < 2e-7);
    double worst_sp = 0;
    for (double x = -100; x <= 100; x += 0.000731) {
        double want = x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
        double err = fabs(gm_softplusf((float)x) - want) / fmax(1.0, want);
        if (err > worst_sp) worst_sp = err;
    }
    print_message("gm_softplusf: worst error %.3g (absolute, relative above 1)\n", worst_sp);
    assert_true(worst_sp < 3e-7);
    assert_true(gm_tanhf(100.0f) == 1.0f && gm_tanhf(-100.0f) == -1.0f && gm_tanhf(0.0f) == 0.0f);
}

/* The gate tanh(a) sigmoid(g) in one divide, against double, over a grid
 * of both arguments and at the clamps: finite, within 3e-7 absolute. */
static void test_gate_accuracy(void **state) {
    double worst = 0;
    for (double a = -12; a <= 12; a += 0.0137)
        for (double g = -30; g <= 30; g += 0.0571) {
            float af = (float)a, gf = (float)g;
            double want = tanh((double)af) / (1.0 + exp(-(double)gf)), err = fabs(gm_gatef(af, gf) - want);
            if (err > worst) worst = err;
        }
    print_message("gm_gatef: worst absolute error %.3g\n", worst);
    assert_true(worst < 3e-7);
#ifdef GM_SIG_LANES
    double worst_v = 0; /* the vector gate, a register of neighbouring points at a time */
    for (double a = -12; a <= 12; a += 0.0137)
        for (double g = -30; g <= 30; g += 0.0571 * GM_SIG_LANES) {
            float av[GM_SIG_LANES], gv[GM_SIG_LANES], yv[GM_SIG_LANES];
            for (int l = 0; l < GM_SIG_LANES; l++) av[l] = (float)(a + 0.001 * l), gv[l] = (float)(g + 0.0571 * l);
            gm_vsig va, vg;
            memcpy(&va, av, sizeof va);
            memcpy(&vg, gv, sizeof vg);
            vg = gm_gate_v(va, vg);
            memcpy(yv, &vg, sizeof yv);
            for (int l = 0; l < GM_SIG_LANES; l++) {
                double err = fabs(yv[l] - tanh((double)av[l]) / (1.0 + exp(-(double)gv[l])));
                if (err > worst_v) worst_v = err;
            }
        }
    print_message("gm_gate_v: worst absolute error %.3g\n", worst_v);
    assert_true(worst_v < 5e-7);
#endif
    float ends[4] = {gm_gatef(100.0f, -1000.0f), gm_gatef(-100.0f, 1000.0f), gm_gatef(0.0f, 5.0f),
                     gm_gatef(1e30f, 1e30f)};
    for (int i = 0; i < 4; i++) assert_true(isfinite(ends[i]));
    assert_true(ends[0] >= 0.0f && ends[0] < 1e-37f && ends[1] == -1.0f && ends[2] == 0.0f && ends[3] == 1.0f);
}

static void test_uniform_and_normal_moments(void **state) {
    gm_rng r;
    gm_rng_seed(&r, 12345, 0);
    const int N = 1000000;
    double su = 0, su2 = 0, sn = 0, sn2 = 0, sn4 = 0;
    for (int i = 0; i < N; i++) {
        double u = gm_rng_uniform(&r), n = gm_rng_normal(&r);
        assert_true(u >= 0.0 && u < 1.0);
        su += u, su2 += u * u, sn += n, sn2 += n * n, sn4 += n * n * n * n;
    }
    /* tolerances: ~5 standard errors of each moment at N = 1e6 */
    assert_true(fabs(su / N - 0.5) < 5 * sqrt(1.0 / 12 / N));
    assert_true(fabs(su2 / N - 1.0 / 3) < 5 * sqrt(4.0 / 45 / N));
    assert_true(fabs(sn / N) < 5 * sqrt(1.0 / N));
    assert_true(fabs(sn2 / N - 1.0) < 5 * sqrt(2.0 / N));
    assert_true(fabs(sn4 / N - 3.0) < 5 * sqrt(96.0 / N));
}

static void test_streams_independent(void **state) {
    /* neighbouring streams of one seed, and neighbouring seeds, are uncorrelated */
    const int N = 200000;
    gm_rng a, b, c;
    gm_rng_seed(&a, 1, 0);
    gm_rng_seed(&b, 1, 1);
    gm_rng_seed(&c, 2, 0);
    double sab = 0, sac = 0;
    for (int i = 0; i < N; i++) {
        double x = gm_rng_normal(&a);
        sab += x * gm_rng_normal(&b);
        sac += x * gm_rng_normal(&c);
    }
    assert_true(fabs(sab / N) < 5 / sqrt(N));
    assert_true(fabs(sac / N) < 5 / sqrt(N));
    gm_rng_seed(&a, 77, 3);
    gm_rng_seed(&b, 77, 3);
    for (int i = 0; i < 1000; i++) assert_true(gm_rng_next(&a) == gm_rng_next(&b));
}

/* gm_rng_normals gives what as many gm_rng_normal calls give (libm's log,
 * sin and cos), in their order, through the spare: runs of every length
 * mixed with single calls, within a few units in the last place (of 1
 * near 0, where libm sees 2 pi u2 rounded), and the
 * streams stay in step (the next uniform is the same). */
static void test_vector_normals_match_scalar(void **state) {
    gm_rng a, b;
    gm_rng_seed(&a, 99, 7);
    gm_rng_seed(&b, 99, 7);
    double out[200], worst = 0;
    for (int round = 0; round < 3000; round++) {
        int n = round % 67 == 0 ? 0 : 1 + (round * 37) % 131; /* odd, even, above one vector of pairs */
        if (round % 5 == 0) { /* a single call between runs (it may take the spare a run left) */
            double x = gm_rng_normal(&a), want = gm_rng_normal(&b), err = fabs(x - want) / fmax(fabs(want), 1.0);
            if (err > worst) worst = err;
        }
        gm_rng_normals(&a, out, n);
        for (int i = 0; i < n; i++) {
            double want = gm_rng_normal(&b), err = fabs(out[i] - want) / fmax(fabs(want), 1.0);
            if (err > worst) worst = err;
        }
        assert_true(a.has_spare == b.has_spare);
    }
    print_message("vector normals: worst difference %.3g (relative above 1, absolute below)\n", worst);
    assert_true(worst < 1e-14);
    assert_true(gm_rng_next(&a) == gm_rng_next(&b));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expf_accuracy),
        cmocka_unit_test(test_gate_accuracy),
        cmocka_unit_test(test_uniform_and_normal_moments),
        cmocka_unit_test(test_streams_independent),
        cmocka_unit_test(test_vector_normals_match_scalar),
    };
    return cmocka_run_group_tests_name("math", tests, NULL, NULL);
}
