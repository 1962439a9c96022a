/*
 * eval.h - `gmserve eval`: model quality on Fashion-MNIST (see eval.c).
 */
#ifndef GM_EVAL_H
#define GM_EVAL_H

/* argv after "eval"; returns the process exit code. */
int gm_eval_main(int argc, char **argv);

#endif
