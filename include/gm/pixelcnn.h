/*
 * pixelcnn.h - what a pixelcnn model offers beyond gm_model_sample: the
 * naive sampling loop beside the cached one (tests, benchmarks).
 */
#ifndef GM_PIXELCNN_H
#define GM_PIXELCNN_H

#include <stdbool.h>

#include "gm/model.h"

/* gm_model_sample for a pixelcnn, with cached = false for the naive loop
 * (every op at every position before each pixel): the same pixels and log p
 * bit for bit, about H * W times the work. -1 for another family. */
int gm_pixelcnn_sample_mode(const gm_model *m, int B, gm_row *rows, float *pixels, double *logp, bool cached);

/* Op positions one image costs the cached sampler or the naive loop. */
long long gm_pixelcnn_positions(const gm_model *m, bool cached);

#endif
