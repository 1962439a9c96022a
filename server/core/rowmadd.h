/*
 * rowmadd.h - products that add a row of inputs times a weight matrix
 * into a row of outputs, each output's sum in a fixed order (internal).
 *
 * The autoregressive samplers compute one position at a time, and a drawn
 * image must not depend on what else its batch holds. BLAS may sum in an
 * order that depends on the shape it is given; these kernels add the
 * inputs k = 0, 1, ... in sequence, one multiply-add each, for every
 * output, whichever rows are computed together, so a row's results are the
 * same bits alone or in any batch.
 */
#ifndef GM_ROWMADD_H
#define GM_ROWMADD_H

/* c[n] += sum_k a[k] B[k * ldb + n] for n < N, skipping zero inputs
 * (binary pixels, relu zeros: adding 0 * b changes no value). */
void gm_row_madd(const float *a, int K, const float *B, int ldb, int N, float *c);

/* C (M, N) += A (M, K) B (K, N), row-major: gm_row_madd on every row, four
 * rows at a time sharing each load of B (one weight matrix of a layer is
 * larger than the L1 cache, so one row alone reads it from L2 once per
 * position). The same bits as M calls of gm_row_madd. */
void gm_rows_madd(int M, int K, int N, const float *A, const float *B, float *C);

#endif
