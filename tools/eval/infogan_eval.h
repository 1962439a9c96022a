/*
 * infogan_eval.h - `gmserve eval --infogan`: what an InfoGAN's codes mean,
 * measured (see infogan_eval.c).
 */
#ifndef GM_INFOGAN_EVAL_H
#define GM_INFOGAN_EVAL_H

#include <jansson.h>

#include "dataset.h"
#include "gm/error.h"

#define GM_ASSIGN_MAX 64

/* The one-to-one assignment of rows to columns of the n x n matrix m
 * (row-major, 1 <= n <= GM_ASSIGN_MAX) that maximizes the sum of the chosen
 * entries (the Hungarian algorithm, O(n^3)); assign[row] = column. Returns
 * the maximal sum, or -1 when n is out of range. */
double gm_best_assignment(const double *m, int n, int *assign);

/* Statistics of one grayscale image (h, w) in [0, 1], raster order:
 *   brightness  the mean pixel value
 *   width       columns from the leftmost to the rightmost pixel > 0.5
 *               (0 when none is)
 *   height      the same over rows
 *   slant       -mu11 / mu02 of the intensity-weighted second moments
 *               around the centroid (x = column, y = row, downwards): the
 *               columns a stroke moves right per row up; > 0 leans right
 *               like italics, 0 when mu02 is 0 */
typedef struct {
    double brightness, width, height, slant;
} gm_image_stats;

#define GM_IMAGE_STATS 4
extern const char *const GM_IMAGE_STAT_NAMES[GM_IMAGE_STATS]; /* "brightness", "width", "height", "slant" */

void gm_image_stats_of(const float *px, int h, int w, gm_image_stats *out);
/* The statistic i (GM_IMAGE_STAT_NAMES order) of s. */
double gm_image_stat(const gm_image_stats *s, int i);

/* Predicted classes of n images (n, D) in [0, 1]; returns 0 or -1. */
typedef int (*gm_classify_fn)(void *ctx, const float *pixels, int n, int *predicted);

/* Evaluates the InfoGAN at path (a GAN with gm.cat_dim, gm.code_dim and a Q
 * network) on the test set, writes report["infogan"], prints a summary and,
 * with grids, one sample grid per continuous code (rows: categories,
 * columns: the code from -2 to 2). samples: images sampled for the
 * classifier's view of the categories and z rows of each code sweep. */
int gm_eval_infogan(const char *path, const gm_dataset *test, int samples, gm_classify_fn classify, void *ctx,
                    const char *grids, json_t *report, char err[GM_ERR_LEN]);

#endif
