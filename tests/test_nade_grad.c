/*
 * test_nade_grad.c - the NADE trainer's NLL and gradient (models/train/nade_grad.c)
 * against a float64 evaluation of the NADE of docs/model-files.md and its central finite
 * differences.
 */
#include "gm/rng.h"
#include "nade_grad.h"
#include "testutil.h"

/* -log p(x) in double, straight from docs/model-files.md (raster order, sigmoid). */
static double nll64(const gm_nade_params *p, const double *WT, const double *V, const double *c, const double *b,
                    const float *x) {
    int D = p->D, H = p->H;
    double a[64], nll = 0;
    for (int j = 0; j < H; j++) a[j] = c[j];
    for (int k = 0; k < D; k++) {
        double logit = b[k];
        for (int j = 0; j < H; j++) logit += V[k * H + j] / (1 + exp(-a[j]));
        double s = x[k] ? -logit : logit; /* -log sigmoid(+-logit) = softplus(-+logit) */
        nll += s > 0 ? s + log1p(exp(-s)) : log1p(exp(s));
        if (x[k])
            for (int j = 0; j < H; j++) a[j] += WT[k * H + j];
    }
    return nll;
}

static void random_params(gm_nade_params *p, gm_rng *r, double scale) {
    int D = p->D, H = p->H;
    for (int i = 0; i < D * H; i++) {
        p->WT[i] = (float)(gm_rng_normal(r) * scale);
        p->V[i] = (float)(gm_rng_normal(r) * scale);
    }
    for (int j = 0; j < H; j++) p->c[j] = (float)(gm_rng_normal(r) * scale);
    for (int k = 0; k < D; k++) p->b[k] = (float)(gm_rng_normal(r) * scale);
}

/* Every parameter's gradient equals the central difference of the float64
 * NLL summed over a few images. */
static void test_gradient_matches_finite_differences(void **state) {
    enum { D = 7, H = 5, N = 4 };
    gm_nade_params p, g;
    assert_int_equal(gm_nade_params_alloc(&p, D, H), 0);
    assert_int_equal(gm_nade_params_alloc(&g, D, H), 0);
    gm_rng r;
    gm_rng_seed(&r, 7, 0);
    random_params(&p, &r, 1.0);
    float x[N * D], scratch[3 * N * H];
    for (int i = 0; i < N * D; i++) x[i] = gm_rng_uniform(&r) < 0.5 ? 1.0f : 0.0f;
    double got_nll = gm_nade_nll_grad(&p, N, x, scratch, &g);

    /* double copies of every parameter, addressed as one vector */
    double WT[D * H], V[D * H], c[H], b[D];
    struct {
        double *d;
        float *grad;
        int n;
    } blocks[] = {{WT, g.WT, D * H}, {V, g.V, D * H}, {c, g.c, H}, {b, g.b, D}};
    float *src[] = {p.WT, p.V, p.c, p.b};
    for (int bi = 0; bi < 4; bi++)
        for (int i = 0; i < blocks[bi].n; i++) blocks[bi].d[i] = src[bi][i];
    double want_nll = 0;
    for (int n = 0; n < N; n++) want_nll += nll64(&p, WT, V, c, b, x + n * D);
    assert_true(fabs(got_nll - want_nll) < 1e-4);

    double worst = 0;
    for (int bi = 0; bi < 4; bi++)
        for (int i = 0; i < blocks[bi].n; i++) {
            double keep = blocks[bi].d[i], h = 1e-5, up = 0, down = 0;
            blocks[bi].d[i] = keep + h;
            for (int n = 0; n < N; n++) up += nll64(&p, WT, V, c, b, x + n * D);
            blocks[bi].d[i] = keep - h;
            for (int n = 0; n < N; n++) down += nll64(&p, WT, V, c, b, x + n * D);
            blocks[bi].d[i] = keep;
            double fd = (up - down) / (2 * h), err = fabs(fd - blocks[bi].grad[i]) / (fabs(fd) + 1e-2);
            if (err > worst) worst = err;
        }
    print_message("NADE gradient: worst relative error against finite differences %.2g\n", worst);
    assert_true(worst < 1e-3);
    gm_nade_params_free(&p);
    gm_nade_params_free(&g);
}

/* At D = 784, H = 50 (the shape of the trainer), recovering a_k by
 * subtraction keeps the NLL within 1e-3 nats per image of float64. */
static void test_full_size_nll_matches_float64(void **state) {
    enum { D = 784, H = 50, N = 3 };
    gm_nade_params p;
    assert_int_equal(gm_nade_params_alloc(&p, D, H), 0);
    gm_rng r;
    gm_rng_seed(&r, 11, 0);
    random_params(&p, &r, 0.3);
    float *x = malloc(sizeof(float) * N * D), scratch[3 * N * H];
    double *WT = malloc(sizeof(double) * D * H), *V = malloc(sizeof(double) * D * H), c[H], b[D];
    for (int i = 0; i < D * H; i++) WT[i] = p.WT[i], V[i] = p.V[i];
    for (int j = 0; j < H; j++) c[j] = p.c[j];
    for (int k = 0; k < D; k++) b[k] = p.b[k];
    for (int i = 0; i < N * D; i++) x[i] = gm_rng_uniform(&r) < 0.4 ? 1.0f : 0.0f;
    for (int n = 0; n < N; n++) {
        double got = gm_nade_nll_grad(&p, 1, x + n * D, scratch, NULL), want = nll64(&p, WT, V, c, b, x + n * D);
        assert_true(fabs(got - want) < 1e-3);
    }
    free(x);
    free(WT);
    free(V);
    gm_nade_params_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient_matches_finite_differences),
        cmocka_unit_test(test_full_size_nll_matches_float64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
