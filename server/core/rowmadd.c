/*
 * rowmadd.c - fixed-order row products for the samplers (rowmadd.h).
 *
 * Outputs are held in vector registers over all the inputs and stored
 * once: a loop over an output array in memory loads and stores it at
 * every input (the compiler keeps a local array in memory too; vector
 * variables it keeps in registers), which cost the PixelCNN sampler 38 %
 * of its time. Each output still sees its inputs in sequence, one
 * multiply-add each, so every path below gives the same bits as the plain
 * loop.
 */
#include "rowmadd.h"

#include <stddef.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));

static inline v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

void gm_row_madd(const float *a, int K, const float *B, int ldb, int N, float *c) {
    int n0 = 0;
    for (; n0 + 64 <= N; n0 += 64) {
        v16 r0 = load16(c + n0), r1 = load16(c + n0 + 16), r2 = load16(c + n0 + 32), r3 = load16(c + n0 + 48);
        for (int k = 0; k < K; k++) {
            float v = a[k];
            if (v == 0.0f) continue;
            const float *b = B + (size_t)k * ldb + n0;
            r0 += v * load16(b), r1 += v * load16(b + 16), r2 += v * load16(b + 32), r3 += v * load16(b + 48);
        }
        store16(c + n0, r0), store16(c + n0 + 16, r1), store16(c + n0 + 32, r2), store16(c + n0 + 48, r3);
    }
    for (; n0 + 16 <= N; n0 += 16) {
        v16 r0 = load16(c + n0);
        for (int k = 0; k < K; k++)
            if (a[k] != 0.0f) r0 += a[k] * load16(B + (size_t)k * ldb + n0);
        store16(c + n0, r0);
    }
    if (n0 == N) return;
    for (int k = 0; k < K; k++) {
        float v = a[k];
        if (v == 0.0f) continue;
        const float *b = B + (size_t)k * ldb;
#pragma omp simd
        for (int n = n0; n < N; n++) c[n] += v * b[n];
    }
}

/* Four rows, 32 columns at a time: 8 accumulators and 2 loads of B per
 * input (on AVX2 a v16 is two registers, 16 of the 16). A zero input is
 * added like any other where a single row would skip it: fma(0, b, c) is
 * c, so the values are the same. */
void gm_rows_madd(int M, int K, int N, const float *A, const float *B, float *C) {
    int i = 0, N32 = N / 32 * 32;
    for (; i + 4 <= M && N32 > 0; i += 4) {
        const float *a0 = A + (size_t)i * K, *a1 = a0 + K, *a2 = a1 + K, *a3 = a2 + K;
        float *c0 = C + (size_t)i * N, *c1 = c0 + N, *c2 = c1 + N, *c3 = c2 + N;
        for (int n0 = 0; n0 < N32; n0 += 32) {
            v16 p0 = load16(c0 + n0), q0 = load16(c0 + n0 + 16), p1 = load16(c1 + n0), q1 = load16(c1 + n0 + 16);
            v16 p2 = load16(c2 + n0), q2 = load16(c2 + n0 + 16), p3 = load16(c3 + n0), q3 = load16(c3 + n0 + 16);
            for (int k = 0; k < K; k++) {
                const float *b = B + (size_t)k * N + n0;
                v16 u = load16(b), w = load16(b + 16);
                p0 += a0[k] * u, q0 += a0[k] * w, p1 += a1[k] * u, q1 += a1[k] * w;
                p2 += a2[k] * u, q2 += a2[k] * w, p3 += a3[k] * u, q3 += a3[k] * w;
            }
            store16(c0 + n0, p0), store16(c0 + n0 + 16, q0), store16(c1 + n0, p1), store16(c1 + n0 + 16, q1);
            store16(c2 + n0, p2), store16(c2 + n0 + 16, q2), store16(c3 + n0, p3), store16(c3 + n0 + 16, q3);
        }
        if (N32 < N)
            for (int r = 0; r < 4; r++)
                gm_row_madd(A + (size_t)(i + r) * K, K, B + N32, N, N - N32, C + (size_t)(i + r) * N + N32);
    }
    for (; i < M; i++) gm_row_madd(A + (size_t)i * K, K, B, N, N, C + (size_t)i * N);
}
