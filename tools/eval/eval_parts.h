/*
 * eval_parts.h - what the parts of `gmserve eval` share (eval.c defines
 * them): the evaluation classifier (models/classifier.safetensors: a
 * features network and a head), a parallel loop over chunks of rows with
 * progress on stderr, and the grid PNGs of --grids.
 */
#ifndef GM_EVAL_PARTS_H
#define GM_EVAL_PARTS_H

#include "gm/layers.h"

typedef struct {
    gm_net *features, *head;
    int fdim, classes;
} gm_classifier;

/* Runs fn(ctx, first, count) over rows 0..n-1 in chunks of `chunk` on
 * `threads` threads (the caller's among them), printing `what` and the rows
 * done. Returns 0, or -1 when a call failed. */
int gm_eval_parallel(const char *what, int n, int chunk, int threads, int (*fn)(void *, int, int), void *ctx);

/* pixels: (n, D) in [0, 1] -> features (n, fdim) and the classifier's most
 * likely class of each image, predicted (n). Returns 0, or -1 when out of
 * memory. */
int gm_classify(const gm_classifier *c, const float *pixels, int n, int D, int threads, const char *what,
                float *features, int *predicted);

/* Writes n images (n, h*w*c) in [0, 1] as the grid PNG DIR/NAME.png
 * (gm_png_encode, scale 2, description desc). Returns 0, or -1 with err. */
int gm_eval_write_png(const char *dir, const char *name, const float *px, int n, int h, int w, int c, const char *desc,
                      char err[GM_ERR_LEN]);

#endif
