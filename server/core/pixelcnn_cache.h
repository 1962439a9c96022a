/*
 * pixelcnn_cache.h - sampling an autoregressive image network position by
 * position, computing each op only where the next pixel needs it
 * (internal; pixelcnn_cache.c says how).
 */
#ifndef GM_PIXELCNN_CACHE_H
#define GM_PIXELCNN_CACHE_H

#include "gm/layers.h"
#include "gm/model.h"

typedef struct pc_plan pc_plan;

/* Plans the net (input 0 the image [C, H, W], an optional input 1 the
 * label, output per-pixel logits [C, H, W]): checks that every op on an
 * image-dependent value is one the sampler can evaluate at single
 * positions, and that, counting only kernel taps with a non-zero weight,
 * no output position depends on a later pixel (C = 1: on its own pixel
 * either). NULL with a message naming the op, or the first output position
 * and the input pixel it must not depend on. `what` names the net. */
pc_plan *pc_plan_build(const gm_net *net, const char *label, const char *what, char err[GM_ERR_LEN]);
void pc_plan_free(pc_plan *p); /* accepts NULL */

/* Draws B images in raster order (pixels channels-last (B, D)), pixel
 * (h, w, c) ~ Bernoulli(sigmoid(logit / T)) from the row's stream; logp
 * (B, may be NULL) gets each image's exact log p at T = 1. labels: (B) or
 * NULL for an unconditional net. cached = false recomputes every op at
 * every position before each pixel (the naive loop), with the same
 * arithmetic: both give the same pixels bit for bit. Returns 0, or -1 when
 * memory runs out. */
int pc_sample(const pc_plan *p, int B, gm_row *rows, const int *labels, float *pixels, double *logp, bool cached);

/* pc_sample (cached) that keeps row r's first rows[r].given values of
 * `given` (B, D) channels-last, in raster order, and draws the rest. The
 * positions that the whole pixels kept by every row of a block need are
 * computed first, op by op over all of them, then sampling continues pixel
 * by pixel. A row draws one number per value as pc_sample does, the kept
 * values' included (discarded), so completing a prefix of a sample with its
 * stream gives the sample back. rest (B): log p of the drawn values given
 * the kept ones. */
int pc_complete(const pc_plan *p, int B, gm_row *rows, const int *labels, const float *given, float *pixels,
                double *logp, double *rest);

/* Positions the cached sampler computes over a whole image, summed over
 * ops, and the naive loop's count, for benchmarks and docs. */
long long pc_positions(const pc_plan *p, bool cached);

#endif
