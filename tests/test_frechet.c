/*
 * test_frechet.c - the Fréchet distance of `gmserve eval` against its closed
 * form for commuting covariances, its invariance under a common rotation,
 * and the eigensolver against a matrix built from known eigenpairs.
 */
#include "frechet.h"
#include "gm/rng.h"
#include "testutil.h"

enum { d = 12 };

/* A random orthogonal matrix: Gram-Schmidt on Gaussian columns. */
static void random_rotation(gm_rng *r, double *q) {
    for (int i = 0; i < d * d; i++) q[i] = gm_rng_normal(r);
    for (int j = 0; j < d; j++) {
        for (int k = 0; k < j; k++) {
            double dot = 0;
            for (int i = 0; i < d; i++) dot += q[i * d + j] * q[i * d + k];
            for (int i = 0; i < d; i++) q[i * d + j] -= dot * q[i * d + k];
        }
        double n = 0;
        for (int i = 0; i < d; i++) n += q[i * d + j] * q[i * d + j];
        for (int i = 0; i < d; i++) q[i * d + j] /= sqrt(n);
    }
}

/* out = Q diag(w) Q^T */
static void compose(const double *q, const double *w, double *out) {
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += q[i * d + k] * w[k] * q[j * d + k];
            out[i * d + j] = s;
        }
}

static void test_eigen_recovers_known_pairs(void **state) {
    gm_rng r;
    gm_rng_seed(&r, 3, 0);
    double q[d * d], w[d], a[d * d], got_w[d], v[d * d];
    random_rotation(&r, q);
    for (int i = 0; i < d; i++) w[i] = i - 4.5; /* distinct, some negative */
    compose(q, w, a);
    gm_sym_eigen(a, d, got_w, v);
    for (int i = 0; i < d; i++) {
        int found = 0;
        for (int j = 0; j < d; j++) found |= fabs(got_w[j] - w[i]) < 1e-10;
        assert_true(found);
    }
    double back[d * d];
    compose(v, got_w, back); /* V diag(w) V^T rebuilds the matrix */
    double want[d * d];
    compose(q, w, want);
    for (int i = 0; i < d * d; i++) assert_true(fabs(back[i] - want[i]) < 1e-10);
}

/* Diagonal covariances: |m1 - m2|^2 + sum (sqrt a - sqrt b)^2, and the same
 * after rotating both Gaussians by one orthogonal Q. */
static void test_closed_form_and_rotation_invariance(void **state) {
    gm_rng r;
    gm_rng_seed(&r, 5, 0);
    double m1[d], m2[d], a[d], b[d], s1[d * d] = {0}, s2[d * d] = {0}, want = 0;
    for (int i = 0; i < d; i++) {
        m1[i] = gm_rng_normal(&r);
        m2[i] = gm_rng_normal(&r);
        a[i] = 0.1 + gm_rng_uniform(&r) * 3;
        b[i] = 0.1 + gm_rng_uniform(&r) * 3;
        s1[i * d + i] = a[i];
        s2[i * d + i] = b[i];
        want += (m1[i] - m2[i]) * (m1[i] - m2[i]) + (sqrt(a[i]) - sqrt(b[i])) * (sqrt(a[i]) - sqrt(b[i]));
    }
    assert_true(fabs(gm_frechet_distance(m1, s1, m2, s2, d) - want) < 1e-9 * want);
    double q[d * d], rs1[d * d], rs2[d * d], rm1[d] = {0}, rm2[d] = {0};
    random_rotation(&r, q);
    compose(q, a, rs1);
    compose(q, b, rs2);
    for (int i = 0; i < d; i++)
        for (int k = 0; k < d; k++) rm1[i] += q[i * d + k] * m1[k], rm2[i] += q[i * d + k] * m2[k];
    double got = gm_frechet_distance(rm1, rs1, rm2, rs2, d);
    print_message("Fréchet: closed form %.9f, rotated %.9f\n", want, got);
    assert_true(fabs(got - want) < 1e-8 * want);
}

/* A feature set against itself is at distance 0; its fitted Gaussian has
 * the sample mean and unbiased covariance. */
static void test_fit_and_self_distance(void **state) {
    enum { n = 5000 };
    gm_rng r;
    gm_rng_seed(&r, 9, 0);
    float *x = malloc(sizeof(float) * n * d);
    for (int i = 0; i < n; i++) {
        double z = gm_rng_normal(&r);
        for (int j = 0; j < d; j++) x[i * d + j] = (float)(j + z * (j % 3 + 1) + 0.5 * gm_rng_normal(&r));
    }
    double m[d], s[d * d];
    assert_int_equal(gm_gaussian_fit(x, n, d, m, s), 0);
    for (int j = 0; j < d; j++) {
        double var = (j % 3 + 1) * (j % 3 + 1) + 0.25;
        assert_true(fabs(m[j] - j) < 5 * sqrt(var / n));
        assert_true(fabs(s[j * d + j] - var) < 0.1 * var);
    }
    assert_true(gm_frechet_distance(m, s, m, s, d) < 1e-9);
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eigen_recovers_known_pairs),
        cmocka_unit_test(test_closed_form_and_rotation_invariance),
        cmocka_unit_test(test_fit_and_self_distance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
