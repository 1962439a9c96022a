/*
 * nade_grad.h - the negative log-likelihood of a sigmoid NADE in raster
 * order and its exact gradient, in O(D H) per image: what the trainer
 * (models/train/nade_train.c) needs, kept in the core so that the tests can
 * check it against finite differences of the served log p.
 */
#ifndef GM_NADE_GRAD_H
#define GM_NADE_GRAD_H

typedef struct {
    int D, H;
    float *WT, *V, *c, *b; /* WT (D, H): row k is W[:, k]; V (D, H); c (H); b (D) */
} gm_nade_params;

int gm_nade_params_alloc(gm_nade_params *p, int D, int H); /* zeroed; 0 or -1 */
void gm_nade_params_zero(gm_nade_params *p);
void gm_nade_params_free(gm_nade_params *p);

/* Returns sum over the n binary images x (n, D) of -log p(x). When grad is
 * not NULL, adds the gradient of that sum to it. scratch: 3 n H floats. */
double gm_nade_nll_grad(const gm_nade_params *p, int n, const float *x, float *scratch, gm_nade_params *grad);

#endif
