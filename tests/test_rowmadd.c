/*
 * test_rowmadd.c - the samplers' fixed-order row products (server/core/rowmadd.c)
 * against a float64 evaluation of the same sums, over shapes that reach every
 * block and remainder (64-, 32- and 16-column blocks, four-row blocks, the
 * scalar tail), with zero inputs among the others; and the four-row kernel
 * against the single-row one, bit for bit, which keeps a sampled image
 * independent of its batch.
 */
#include <string.h>

#include "../server/core/rowmadd.h"
#include "testutil.h"

static float uniform(uint32_t *s) { return (float)rnd(s) / (1 << 24) * 2.0f - 1.0f; }

static void check_shape(int M, int K, int N, uint32_t *seed) {
    float *A = malloc((size_t)M * K * sizeof *A), *B = malloc((size_t)K * N * sizeof *B);
    float *C = malloc((size_t)M * N * sizeof *C), *one = malloc((size_t)M * N * sizeof *one);
    for (int i = 0; i < M * K; i++) A[i] = rnd(seed) % 3 == 0 ? 0.0f : uniform(seed); /* a third are zeros */
    for (int i = 0; i < K * N; i++) B[i] = uniform(seed);
    for (int i = 0; i < M * N; i++) C[i] = one[i] = uniform(seed);
    double *want = malloc((size_t)M * N * sizeof *want), *bound = malloc((size_t)M * N * sizeof *bound);
    for (int i = 0; i < M; i++)
        for (int n = 0; n < N; n++) {
            double s = C[(size_t)i * N + n], a = fabs(s);
            for (int k = 0; k < K; k++) {
                double t = (double)A[(size_t)i * K + k] * B[(size_t)k * N + n];
                s += t, a += fabs(t);
            }
            want[(size_t)i * N + n] = s, bound[(size_t)i * N + n] = a;
        }
    gm_rows_madd(M, K, N, A, B, C);
    for (int i = 0; i < M; i++) gm_row_madd(A + (size_t)i * K, K, B, N, N, one + (size_t)i * N);
    for (int i = 0; i < M * N; i++) {
        /* K + 1 roundings of at most 2^-24 of the running sum's magnitudes */
        double err = fabs(C[i] - want[i]), tol = (K + 1) * 0x1p-24 * bound[i];
        if (!(err <= tol))
            fail_msg("M %d K %d N %d: row %d column %d is %.9g, the float64 sum %.9g (bound %.3g)", M, K, N, i / N,
                     i % N, (double)C[i], want[i], tol);
    }
    assert_memory_equal(C, one, (size_t)M * N * sizeof *C);
    free(A), free(B), free(C), free(one), free(want), free(bound);
}

static void test_rows_against_float64(void **state) {
    static const int Ms[] = {1, 3, 4, 5, 8, 9};
    static const int Ks[] = {1, 7, 40};
    static const int Ns[] = {1, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 84, 100, 130, 192};
    uint32_t seed = 12345;
    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
        for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++)
            for (size_t c = 0; c < sizeof Ns / sizeof *Ns; c++) check_shape(Ms[a], Ks[b], Ns[c], &seed);
}

/* A row of B wider than the columns used (ldb > N), as the PixelCNN's
 * grouped convolutions and the four-row kernel's tail call it. */
static void test_row_with_stride(void **state) {
    enum { K = 5, LD = 40, N = 23 };
    float a[K] = {0.5f, 0.0f, -1.0f, 2.0f, 0.25f}, B[K * LD], c[N], want[N];
    for (int i = 0; i < K * LD; i++) B[i] = (float)(i % 17) - 8.0f;
    for (int n = 0; n < N; n++) {
        c[n] = (float)n;
        double s = n;
        for (int k = 0; k < K; k++) s += (double)a[k] * B[k * LD + 3 + n];
        want[n] = (float)s; /* small integers and halves: exact in float */
    }
    gm_row_madd(a, K, B + 3, LD, N, c);
    assert_memory_equal(c, want, sizeof c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_against_float64),
        cmocka_unit_test(test_row_with_stride),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
