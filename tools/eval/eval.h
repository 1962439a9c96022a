/*
 * eval.h - `gmserve eval`: model quality on Fashion-MNIST (see eval.c).
 */
#ifndef GM_EVAL_H
#define GM_EVAL_H

#include "gm/error.h"

/* argv after "eval"; returns the process exit code. */
int gm_eval_main(int argc, char **argv);

/* Writes n images (n, h*w*c) in [0, 1] to path as one grid PNG, every pixel
 * doubled, with description desc. Returns 0, or -1 with err filled. */
int gm_eval_write_png(const float *px, int n, int h, int w, int c, const char *path, const char *desc,
                      char err[GM_ERR_LEN]);

#endif
