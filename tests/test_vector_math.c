/*
 * test_vector_math.c - the vector kernels of server/core/vmath.h that NADE
 * runs on, against libm in double: gm_sigmoid_v (the divide-free sigmoid
 * of a whole register) within 2e-7 relative, and gm_softplus_sum (the
 * double softplus its log p is summed with) within 1e-13 a term.
 */
#include <float.h>

#include "core/vmath.h"
#include "testutil.h"

/* softplus in double from libm, the truth */
static double softplus_libm(double x) { return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x))); }

static void test_vector_sigmoid_matches_libm(void **state) {
#ifdef GM_SIG_LANES
    double worst = 0.0, at = 0.0;
    float in[GM_SIG_LANES] __attribute__((aligned(64))), out[GM_SIG_LANES] __attribute__((aligned(64)));
    for (int i = -130000; i <= 130000; i += GM_SIG_LANES) {
        for (int l = 0; l < GM_SIG_LANES; l++) in[l] = (float)(i + l) * 1e-3f; /* -130 .. 130: both clamps */
#if GM_SIG_LANES == 16
        _mm512_store_ps(out, gm_sigmoid_v(_mm512_load_ps(in)));
#else
        _mm256_store_ps(out, gm_sigmoid_v(_mm256_load_ps(in)));
#endif
        for (int l = 0; l < GM_SIG_LANES; l++) {
            double want = 1.0 / (1.0 + exp(-(double)in[l])), d = fabs(out[l] - want);
            /* relative where float has normal values; below 2^-126 (what
             * model calls flush to zero) only within 2^-126 */
            if (want < FLT_MIN) {
                assert_true(d <= FLT_MIN);
                continue;
            }
            if (d / want > worst) worst = d / want, at = in[l];
        }
    }
    print_message("gm_sigmoid_v (%d lanes): worst relative error %.3g at x = %.4f\n", GM_SIG_LANES, worst, at);
    assert_true(worst <= 2e-7);
#else
    skip();
#endif
}

static void test_terms_match_libm(void **state) {
    double worst = 0.0, at = 0.0;
    for (int i = -200000; i <= 200000; i++) {
        float x = (float)i * 3e-4f; /* -60 .. 60, through both clamps and 0 */
        double d = fabs(gm_softplus_sum(&x, 1) - softplus_libm(x));
        if (d > worst) worst = d, at = x;
    }
    const float edge[] = {0.0f,   -0.0f,  FLT_MIN, -FLT_MIN, 1e-30f,  -1e-30f,  49.99f,     50.0f,
                          50.01f, -50.0f, 1e30f,   -1e30f,   FLT_MAX, -FLT_MAX, 0.6931472f, -0.3465736f};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        double d = fabs(gm_softplus_sum(&edge[i], 1) - softplus_libm(edge[i]));
        if (d > worst) worst = d, at = edge[i];
    }
    print_message("gm_softplus_sum: worst absolute error %.3g at x = %.6g\n", worst, at);
    assert_true(worst <= 1e-13);
}

static void test_sums_match_libm(void **state) {
    gm_rng g;
    gm_rng_seed(&g, 18, 0);
    float s[1003]; /* not a multiple of the vector width: the remainder too */
    for (int n = 1; n <= 1003; n += 37) {
        double want = 0.0;
        for (int i = 0; i < n; i++) {
            s[i] = (float)(40.0 * (gm_rng_uniform(&g) - 0.5));
            want += softplus_libm(s[i]);
        }
        double got = gm_softplus_sum(s, n);
        if (!(fabs(got - want) <= 1e-13 * n)) {
            print_error("n = %d: sum %.17g, libm %.17g\n", n, got, want);
            fail();
        }
    }
}

static void test_infinities_and_nan(void **state) {
    float pinf = INFINITY, ninf = -INFINITY, nan = NAN;
    assert_true(isinf(gm_softplus_sum(&pinf, 1)) && gm_softplus_sum(&pinf, 1) > 0);
    assert_true(gm_softplus_sum(&ninf, 1) == 0.0 || fabs(gm_softplus_sum(&ninf, 1)) < 1e-20);
    assert_true(isnan(gm_softplus_sum(&nan, 1)));
    assert_true(gm_softplus_sum(NULL, 0) == 0.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_sigmoid_matches_libm),
        cmocka_unit_test(test_terms_match_libm),
        cmocka_unit_test(test_sums_match_libm),
        cmocka_unit_test(test_infinities_and_nan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
