/*
 * nade_grad.c - NADE's NLL and its gradient without the B*D*H tensor.
 *
 * PyTorch needs every prefix sum a_k of a batch at once (~25 min an epoch
 * at H = 500, measured on 2 cores). The gradient needs none of them stored:
 *   forward:  a_D = c + W x is one sgemm for the whole batch;
 *   backward: walking k = D-1 .. 0, a_k = a_{k+1} - W[:, k] x_k recovers each
 *             prefix sum, h_k = sigmoid(a_k) (recomputed only when x_k = 1,
 *             else h_k = h_{k+1}), and with e_k = p_k - x_k:
 *             db_k += e_k,  dV_k += e_k h_k,  delta_k = e_k V_k * h_k * (1 - h_k),
 *             dW[:, k] += x_k g  where g = sum_{k' > k} delta_k',
 *             and dc += g once every k is done.
 * As in inference (nade.c) the walk is pixel-major over the images, so the
 * rows V_k, W[:, k], dV_k and dW[:, k] stay in L1 while each image's a, h
 * and g are updated. Recovering a_k by subtraction rounds slightly differently
 * from adding; the tests bound the effect on the NLL.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/vmath.h"
#include "nade_grad.h"

int gm_nade_params_alloc(gm_nade_params *p, int D, int H) {
    p->D = D;
    p->H = H;
    p->WT = calloc((size_t)D * H, sizeof(float));
    p->V = calloc((size_t)D * H, sizeof(float));
    p->c = calloc((size_t)H, sizeof(float));
    p->b = calloc((size_t)D, sizeof(float));
    if (p->WT && p->V && p->c && p->b) return 0;
    gm_nade_params_free(p);
    return -1;
}

void gm_nade_params_zero(gm_nade_params *p) {
    memset(p->WT, 0, (size_t)p->D * p->H * sizeof(float));
    memset(p->V, 0, (size_t)p->D * p->H * sizeof(float));
    memset(p->c, 0, (size_t)p->H * sizeof(float));
    memset(p->b, 0, (size_t)p->D * sizeof(float));
}

void gm_nade_params_free(gm_nade_params *p) {
    free(p->WT);
    free(p->V);
    free(p->c);
    free(p->b);
    p->WT = p->V = p->c = p->b = NULL;
}

double gm_nade_nll_grad(const gm_nade_params *p, int n, const float *x, float *scratch, gm_nade_params *grad) {
    int D = p->D, H = p->H;
    if (n <= 0) return 0.0;
    float *A = scratch, *Hs = scratch + (size_t)n * H, *G = scratch + (size_t)2 * n * H;
    for (int r = 0; r < n; r++) memcpy(A + (size_t)r * H, p->c, (size_t)H * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, H, D, 1.0f, x, D, p->WT, H, 1.0f, A, H);
    for (size_t j = 0; j < (size_t)n * H; j++) Hs[j] = gm_sigmoidf(A[j]);
    memset(G, 0, (size_t)n * H * sizeof(float));
    double nll = 0;
    for (int k = D - 1; k >= 0; k--) {
        const float *restrict wk = p->WT + (size_t)k * H, *restrict vk = p->V + (size_t)k * H;
        float db = 0.0f;
        for (int r = 0; r < n; r++) {
            float *restrict a = A + (size_t)r * H, *restrict h = Hs + (size_t)r * H, *restrict g = G + (size_t)r * H;
            int on = x[(size_t)r * D + k] != 0.0f;
            if (on) { /* a_k = a_{k+1} - W[:, k]; otherwise a_k and h_k are unchanged */
#pragma omp simd
                for (int j = 0; j < H; j++) {
                    a[j] -= wk[j];
                    h[j] = gm_sigmoidf(a[j]);
                }
            }
            float logit = p->b[k];
#pragma omp simd reduction(+ : logit)
            for (int j = 0; j < H; j++) logit += h[j] * vk[j];
            nll += gm_softplus(on ? -(double)logit : (double)logit);
            if (!grad) continue;
            float *restrict dwk = grad->WT + (size_t)k * H, *restrict dvk = grad->V + (size_t)k * H;
            float e = gm_sigmoidf(logit) - (float)on;
            db += e;
            if (on) {
#pragma omp simd
                for (int j = 0; j < H; j++) dwk[j] += g[j];
            }
#pragma omp simd
            for (int j = 0; j < H; j++) {
                dvk[j] += e * h[j];
                g[j] += e * vk[j] * h[j] * (1.0f - h[j]);
            }
        }
        if (grad) grad->b[k] += db;
    }
    if (grad)
        for (int r = 0; r < n; r++)
            for (int j = 0; j < H; j++) grad->c[j] += G[(size_t)r * H + j];
    return nll;
}
