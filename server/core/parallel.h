/*
 * parallel.h - splitting one operation's rows across threads (internal).
 *
 * OpenBLAS parallelizes the GEMMs; kernels outside BLAS (NADE's recurrence)
 * split their batch here instead, into gm_compute_threads() contiguous row
 * ranges, the first run by the caller. Results do not depend on the split:
 * every row is computed by the same code from its own inputs and stream.
 */
#ifndef GM_PARALLEL_H
#define GM_PARALLEL_H

/* Runs fn(ctx, r0, r1) over [0, B) in up to gm_compute_threads() ranges of
 * at least min_rows rows. Returns 0, or -1 when any range returned non-zero. */
int gm_parallel_rows(int B, int min_rows, int (*fn)(void *ctx, int r0, int r1), void *ctx);

#endif
