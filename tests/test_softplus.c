/*
 * test_softplus.c - gm_softplus_sum (server/core/vmath.h), the vectorized
 * double softplus that NADE's log p is summed with, against libm's
 * log1p(exp(x)) term by term and over arrays: within 1e-13 a term.
 */
#include <float.h>

#include "core/vmath.h"
#include "testutil.h"

/* softplus in double from libm, the truth */
static double softplus_libm(double x) { return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x))); }

static void test_terms_match_libm(void **state) {
    double worst = 0.0, at = 0.0;
    for (int i = -200000; i <= 200000; i++) {
        float x = (float)i * 3e-4f; /* -60 .. 60, through both clamps and 0 */
        double d = fabs(gm_softplus_sum(&x, 1) - softplus_libm(x));
        if (d > worst) worst = d, at = x;
    }
    const float edge[] = {0.0f, -0.0f, FLT_MIN, -FLT_MIN, 1e-30f, -1e-30f, 49.99f, 50.0f, 50.01f, -50.0f,
                          1e30f, -1e30f, FLT_MAX, -FLT_MAX, 0.6931472f, -0.3465736f};
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
        cmocka_unit_test(test_terms_match_libm),
        cmocka_unit_test(test_sums_match_libm),
        cmocka_unit_test(test_infinities_and_nan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
