/*
 * dataset.h - Fashion-MNIST (or any MNIST-format data) from idx.gz files, and
 * the fixed binarization that every likelihood figure of models/README.md
 * is measured on.
 *
 * Used by `gmserve eval` and the NADE trainer; the files are untrusted input
 * like any other: magic, rank, sizes and lengths are checked before use.
 */
#ifndef GM_DATASET_H
#define GM_DATASET_H

#include <stdint.h>

#include "gm/error.h"

#define GM_DATASET_DIR "/usr/share/datasets/fashion-mnist"
/* The seed of the fixed binarization of the test set (gm_binarize). */
#define GM_BINARIZE_SEED 20261124u

typedef struct {
    int n, height, width, dim; /* dim = height * width */
    float *images;             /* (n, dim) in [0, 1], raster order */
    int *labels;               /* (n) class indices */
} gm_dataset;

/* split: "train" or "t10k"; reads DIR/{split}-images-idx3-ubyte.gz and the
 * matching labels. Returns 0, or -1 with a message naming the file. */
int gm_dataset_load(gm_dataset *ds, const char *dir, const char *split, char err[GM_ERR_LEN]);
void gm_dataset_free(gm_dataset *ds);

/* out[n, j] = 1 if u < images[n, j] else 0, where u are successive uniforms
 * of gm_rng stream (seed, n): one fixed, reproducible binarization per seed.
 * Images first..first+count-1 of ds. */
void gm_binarize(const gm_dataset *ds, int first, int count, uint64_t seed, float *out);

#endif
