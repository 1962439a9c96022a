/*
 * translate_eval.h - `gmserve eval --stargan` and `--cyclegan`: how well a
 * translator reaches its target and keeps its source (translate_eval.c).
 */
#ifndef GM_TRANSLATE_EVAL_H
#define GM_TRANSLATE_EVAL_H

#include <jansson.h>

#include "dataset.h"
#include "eval_parts.h"

/* A multi-domain translator (StarGAN) over the classifier's classes: every
 * test image translated to one other class, scored, under
 * report["stargan"]; a grid DIR/stargan.png when grids is not NULL.
 * Returns 0, or -1 with err. */
int gm_eval_stargan(const char *path, const gm_classifier *c, const gm_dataset *test, int threads, const char *grids,
                    json_t *report, char err[GM_ERR_LEN]);

/* A two-domain translator with its reverse generator (CycleGAN) between the
 * dataset classes class_a (domain A) and class_b (B): the test images of A
 * forward, of B in reverse, and each back again, scored under
 * report["cyclegan"]; a grid DIR/cyclegan.png when grids is not NULL.
 * Returns 0, or -1 with err. */
int gm_eval_cyclegan(const char *path, int class_a, int class_b, const gm_classifier *c, const gm_dataset *test,
                     int threads, const char *grids, json_t *report, char err[GM_ERR_LEN]);

#endif
