/*
 * causal.h - the numerical causality check of the autoregressive families.
 *
 * An autoregressive network's output at pixel t may depend on earlier
 * pixels only (raster order, channels in order). Whatever a file's graph
 * claims, loading flips a few pixels of a random binary image and refuses
 * the network if an output at or before the flipped value moves.
 */
#ifndef GM_CAUSAL_H
#define GM_CAUSAL_H

#include "gm/error.h"

/* One image's outputs: x and y are (H * W * C) channels last; 0 on success. */
typedef int (*gm_logits_fn)(const void *net, const float *x, float *y);

/* Flips every channel of 16 pixels spread over the image, one value at a
 * time (three images of memory), comparing the outputs of `fn` at every
 * position up to the flipped value with the unflipped image's, to a
 * relative 1e-5. On failure writes "L: WHAT is not causal: ..." naming
 * the output and the flipped input, and returns -1. */
int gm_check_causal(const void *net, gm_logits_fn fn, int height, int width, int channels, const char *L,
                    const char *what, char err[GM_ERR_LEN]);

#endif
