/*
 * ops_dense.c - the ops that are sgemm calls: linear, conv2d,
 * conv_transpose2d, each with its fused bias and activation.
 *
 * linear is one sgemm over the batch (or, for a single sample, a sparse or
 * sgemv matrix-vector product). conv2d is im2col with one row per input
 * channel and kernel tap, over the output pixels of every sample in a chunk
 * (N = samples * output pixels, big, BLAS-friendly); taps whose weights are
 * all zero (a masked convolution's) are left out of it, so they cost
 * nothing. On maps of 256 pixels or more each sample's sgemm adds into its
 * output, filled with the bias first (plus the other input of an add fused
 * into the conv, layers.c); on smaller ones one sgemm over the chunk gives
 * each output channel's plane, copied to NCHW with the bias. A 1x1
 * convolution reads its input planes directly. conv_transpose2d is the adjoint: the chunk's channel
 * planes side by side, one sgemm giving, for every input pixel, a row of
 * every kernel tap's contribution to every output channel (the weight is
 * stored (Cin, kh, kw, Cout) for this), then col2im adds each tap's Cout
 * values into a channels-last copy of the sample's output, contiguous vector
 * adds, and transposes that to NCHW. Between two conv_transpose2d layers the
 * output stays channels-last: it is what the next one's sgemm reads, so
 * neither transposes nor copies. Chunks bound the im2col / col2im scratch to
 * 2 MB whatever the batch size, so that it stays in cache between the sgemm
 * that writes it and the pass that reads it (16 MB chunks made GAN sampling
 * 10 % slower). OpenBLAS threads the sgemms; everything else is split over
 * samples (gm_parallel_rows).
 */
#include "ops.h"
#include "parallel.h"
#include "scratch.h"

#include <cblas.h>
#include <string.h>

#define MIN_SAMPLES_PER_THREAD 4

/* linear's bias and activation pass over samples [r0, r1) */
typedef struct {
    const layer *L;
    float *y;
} linear_part;

static int bias_act_samples(void *ctx, int r0, int r1) {
    const linear_part *c = ctx;
    int n = c->L->out.dim[0];
    for (int b = r0; b < r1; b++) {
        float *y = c->y + (size_t)b * n;
#pragma omp simd
        for (int o = 0; o < n; o++) y[o] += c->L->bias[o];
        op_activate(c->L->act, c->L->a0, c->L->a1, y, y, (size_t)n);
    }
    return 0;
}

/* x: (B, n_in); y: (B, n_out) = act(x W + bias), W stored (n_in, n_out).
 * One sample is a matrix-vector product, which is bound by reading W: when
 * at least half its inputs are zero (a binary image, a ReLU's output) it
 * reads only the rows of the nonzero ones; otherwise sgemv (sgemm would
 * pack all of W for a single row). */
#define SPARSE_CHUNK 1024

void op_linear(const layer *L, int B, const float *x, float *y) {
    int n_in = gm_shape_size(L->in), n_out = L->out.dim[0];
    int nonzero = 0;
    if (B == 1)
        for (int i = 0; i < n_in; i++) nonzero += x[i] != 0.0f;
    if (B == 1 && 2 * nonzero <= n_in) {
        memset(y, 0, (size_t)n_out * sizeof *y);
        for (int i0 = 0; i0 < n_in; i0 += SPARSE_CHUNK) {
            /* the nonzero inputs' indices first, without branches: a
             * branch per input mispredicts on every new image */
            int idx[SPARSE_CHUNK], m = 0, i1 = n_in - i0 < SPARSE_CHUNK ? n_in : i0 + SPARSE_CHUNK;
            for (int i = i0; i < i1; i++) {
                idx[m] = i;
                m += x[i] != 0.0f;
            }
            for (int k = 0; k < m; k++) {
                const float *restrict w = L->weight + (size_t)idx[k] * n_out;
                float xi = x[idx[k]];
#pragma omp simd
                for (int o = 0; o < n_out; o++) y[o] += xi * w[o];
            }
        }
    } else if (B == 1) {
        cblas_sgemv(CblasRowMajor, CblasTrans, n_in, n_out, 1.0f, L->weight, n_out, x, 1, 0.0f, y, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, n_out, n_in, 1.0f, x, n_in, L->weight, n_out, 0.0f, y,
                    n_out);
    }
    linear_part part = {L, y};
    op_split_values(B, (size_t)n_out, bias_act_samples, &part);
}

/* Work outside sgemm is split over samples across the compute threads
 * (parallel.h): each sample's im2col rows, scatter and col2im planes are its
 * own, so the split changes no result. */
typedef struct {
    const layer *L;
    const float *x, *r; /* r: conv2d's fused add input, or NULL */
    float *y;
    const op_scratch *s;
    int b0, cols; /* the chunk's first sample; its samples (conv2d) or the columns of col (conv_transpose2d) */
} conv_part;

/* conv2d: col (Kt, nb*P), one row per (input channel, kernel tap with a
 * non-zero weight), holding what that tap reads for every output pixel of
 * every sample of the chunk (0 in the padding), samples side by side; each
 * group's rows are a contiguous slice. With stride 1 a row is the input
 * row shifted: one memcpy per output row. */
static int im2col_samples(void *ctx, int r0, int r1) {
    const conv_part *c = ctx;
    const layer *L = c->L;
    int C = L->in.dim[0], H = L->in.dim[1], W = L->in.dim[2], Ho = L->out.dim[1], Wo = L->out.dim[2];
    size_t P = (size_t)Ho * Wo, N = (size_t)c->cols * P;
    for (int b = r0; b < r1; b++)
        for (int ch = 0; ch < C; ch++) {
            const float *plane = c->x + ((size_t)(c->b0 + b) * C + ch) * H * W;
            for (int t = 0; t < L->ntaps; t++) {
                int ky = L->taps[t] / L->kw, kx = L->taps[t] % L->kw, dx = kx * L->dw - L->pw;
                float *row = c->s->col + ((size_t)ch * L->ntaps + t) * N + (size_t)b * P;
                for (int oy = 0; oy < Ho; oy++) {
                    int iy = oy * L->sh - L->ph + ky * L->dh;
                    float *dst = row + (size_t)oy * Wo;
                    if (iy < 0 || iy >= H) {
                        memset(dst, 0, (size_t)Wo * sizeof *dst);
                        continue;
                    }
                    const float *src = plane + (size_t)iy * W;
                    if (L->sw == 1) { /* ix = ox + dx: zeros, a copy, zeros */
                        int lo = dx < 0 ? -dx : 0, hi = W - dx < Wo ? W - dx : Wo;
                        if (hi < lo) hi = lo;
                        if (lo > Wo) lo = hi = Wo;
                        memset(dst, 0, (size_t)lo * sizeof *dst);
                        memcpy(dst + lo, src + lo + dx, (size_t)(hi - lo) * sizeof *dst);
                        memset(dst + hi, 0, (size_t)(Wo - hi) * sizeof *dst);
                    } else {
                        for (int ox = 0; ox < Wo; ox++) {
                            int ix = ox * L->sw + dx;
                            dst[ox] = ix >= 0 && ix < W ? src[ix] : 0.0f;
                        }
                    }
                }
            }
        }
    return 0;
}

/* conv2d: the sgemm's (Co, nb*P) planes to each sample's NCHW output, plus
 * bias (and r) and activation */
static int scatter_samples(void *ctx, int r0, int r1) {
    const conv_part *c = ctx;
    const layer *L = c->L;
    int Co = L->out.dim[0];
    size_t P = (size_t)L->out.dim[1] * L->out.dim[2], N = (size_t)c->cols * P;
    for (int b = r0; b < r1; b++) {
        float *yb = c->y + (size_t)(c->b0 + b) * Co * P;
        for (int ch = 0; ch < Co; ch++) {
            const float *restrict src = c->s->aux + (size_t)ch * N + (size_t)b * P;
            float *restrict dst = yb + (size_t)ch * P, bias = L->bias[ch];
            if (c->r) {
                const float *restrict r = c->r + (size_t)(c->b0 + b) * Co * P + (size_t)ch * P;
#pragma omp simd
                for (size_t p = 0; p < P; p++) dst[p] = src[p] + bias + r[p];
            } else {
#pragma omp simd
                for (size_t p = 0; p < P; p++) dst[p] = src[p] + bias;
            }
        }
        op_activate(L->act, L->a0, L->a1, yb, yb, (size_t)Co * P);
    }
    return 0;
}

/* conv2d's output of samples [r0, r1) of the chunk filled with the bias,
 * plus r when an add is fused, for the sgemms to add into */
static int bias_samples(void *ctx, int r0, int r1) {
    const conv_part *c = ctx;
    const layer *L = c->L;
    int Co = L->out.dim[0];
    size_t P = (size_t)L->out.dim[1] * L->out.dim[2];
    for (int b = r0; b < r1; b++)
        for (int ch = 0; ch < Co; ch++) {
            size_t at = ((size_t)(c->b0 + b) * Co + ch) * P;
            float *restrict dst = c->y + at, bias = L->bias[ch];
            if (c->r) {
                const float *restrict r = c->r + at;
#pragma omp simd
                for (size_t p = 0; p < P; p++) dst[p] = bias + r[p];
            } else {
#pragma omp simd
                for (size_t p = 0; p < P; p++) dst[p] = bias;
            }
        }
    return 0;
}

static int act_samples(void *ctx, int r0, int r1) {
    const conv_part *c = ctx;
    const layer *L = c->L;
    size_t n = (size_t)L->out.dim[0] * L->out.dim[1] * L->out.dim[2];
    float *y = c->y + (size_t)(c->b0 + r0) * n;
    op_activate(L->act, L->a0, L->a1, y, y, (size_t)(r1 - r0) * n);
    return 0;
}

/* 1x1, stride 1, unpadded, one group: each sample's planes are already
 * the sgemm's input, and its output the sgemm's, filled with the bias
 * first */
static void conv1x1(const layer *L, int B, const float *x, const float *r, float *y) {
    int C = L->in.dim[0], Co = L->out.dim[0], P = L->out.dim[1] * L->out.dim[2];
    conv_part part = {L, x, r, y, NULL, 0, B};
    gm_parallel_rows(B, MIN_SAMPLES_PER_THREAD, bias_samples, &part);
    for (int b = 0; b < B; b++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, P, C, 1.0f, L->wtaps, C, x + (size_t)b * C * P, P,
                    1.0f, y + (size_t)b * Co * P, P);
    if (L->act != OP_COUNT) gm_parallel_rows(B, MIN_SAMPLES_PER_THREAD, act_samples, &part);
}

/* conv2d with maps of at least DIRECT_PIXELS output pixels: each sample's
 * output is filled with the bias (bias_samples) and its sgemm (N = the
 * sample's pixels, its columns of col) adds into it, then the activation,
 * in place. No clearing of a product buffer and no copy of it to the
 * output: both were passes over every output value (sgemm's beta = 0
 * clears its output). Smaller maps keep one sgemm over the chunk. */
#define DIRECT_PIXELS 256

/* x: (B, C, H, W); y: (B, Cout, Ho, Wo) */
void op_conv2d(const layer *L, int B, const float *x, const float *r, float *y, const op_scratch *s) {
    if (L->kh == 1 && L->kw == 1 && L->sh == 1 && L->sw == 1 && L->ph == 0 && L->pw == 0 && L->groups == 1 &&
        L->ntaps == 1) {
        conv1x1(L, B, x, r, y);
        return;
    }
    int Co = L->out.dim[0], P = L->out.dim[1] * L->out.dim[2];
    int g = L->groups, Kg = L->in.dim[0] / g * L->ntaps, Cg = Co / g;
    for (int b0 = 0; b0 < B; b0 += s->chunk) {
        int nb = B - b0 < s->chunk ? B - b0 : s->chunk;
        conv_part part = {L, x, r, y, s, b0, nb};
        size_t N = (size_t)nb * P;
        if (P >= DIRECT_PIXELS) {
            gm_parallel_rows(nb, MIN_SAMPLES_PER_THREAD, bias_samples, &part);
            if (L->ntaps) gm_parallel_rows(nb, MIN_SAMPLES_PER_THREAD, im2col_samples, &part);
            for (int b = 0; b < nb && L->ntaps; b++)
                for (int i = 0; i < g; i++)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cg, P, Kg, 1.0f,
                                L->wtaps + (size_t)i * Cg * Kg, Kg, s->col + (size_t)i * Kg * N + (size_t)b * P, (int)N,
                                1.0f, y + ((size_t)(b0 + b) * Co + (size_t)i * Cg) * P, P);
            if (L->act != OP_COUNT) gm_parallel_rows(nb, MIN_SAMPLES_PER_THREAD, act_samples, &part);
            continue;
        }
        if (L->ntaps == 0) { /* every weight zero: the bias alone */
            memset(s->aux, 0, (size_t)Co * N * sizeof *s->aux);
        } else {
            gm_parallel_rows(nb, MIN_SAMPLES_PER_THREAD, im2col_samples, &part);
            /* aux: (Co, N) = W col, group by group: group i's Cg output rows
             * from its Kg weight columns and its Kg rows of col */
            for (int i = 0; i < g; i++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cg, (int)N, Kg, 1.0f,
                            L->wtaps + (size_t)i * Cg * Kg, Kg, s->col + (size_t)i * Kg * N, (int)N, 0.0f,
                            s->aux + (size_t)i * Cg * N, (int)N);
        }
        gm_parallel_rows(nb, MIN_SAMPLES_PER_THREAD, scatter_samples, &part);
    }
}

/* conv_transpose2d's col2im. Row (b, iy, ix) of col holds, for each group
 * and each kernel tap (ky, kx), the group's Cout/g values that input pixel
 * adds to output pixel (iy*stride - pad + ky*dilation, ix*stride - pad +
 * kx*dilation). They are added into the
 * sample's output kept channels-last (Cout contiguous values per pixel, so
 * each add is one vector loop), which is then transposed to NCHW unless
 * the next layer takes it channels-last. */
static int col2im_samples(void *ctx, int r0, int r1) {
    const conv_part *c = ctx;
    const layer *L = c->L;
    int H = L->in.dim[1], W = L->in.dim[2], Pin = H * W, sh = L->sh, sw = L->sw, dh = L->dh, dw = L->dw;
    int Co = L->out.dim[0], Ho = L->out.dim[1], Wo = L->out.dim[2], P = Ho * Wo, Cg = Co / L->groups;
    size_t N = (size_t)Co * L->kh * L->kw, Ng = N / L->groups;
    float *t = L->nhwc_out ? NULL : gm_scratch(4, (size_t)P * Co);
    if (!L->nhwc_out && !t) return -1;
    for (int b = r0; b < r1; b++) {
        float *yb = c->y + (size_t)(c->b0 + b) * Co * P;
        if (L->nhwc_out) t = yb;
        for (int p = 0; p < P; p++) memcpy(t + (size_t)p * Co, L->bias, (size_t)Co * sizeof *t);
        for (int iy = 0; iy < H; iy++)
            for (int ix = 0; ix < W; ix++) {
                const float *row = c->s->col + ((size_t)b * Pin + (size_t)iy * W + ix) * N;
                for (int ky = 0; ky < L->kh; ky++) {
                    int oy = iy * sh - L->ph + ky * dh;
                    if (oy < 0 || oy >= Ho) continue;
                    for (int kx = 0; kx < L->kw; kx++) {
                        int ox = ix * sw - L->pw + kx * dw;
                        if (ox < 0 || ox >= Wo) continue;
                        float *restrict dst = t + ((size_t)oy * Wo + ox) * Co;
                        const float *restrict src = row + ((size_t)ky * L->kw + kx) * Cg;
                        if (L->groups == 1) { /* the common case, without the group loop (tiny Cout) */
#pragma omp simd
                            for (int ch = 0; ch < Co; ch++) dst[ch] += src[ch];
                            continue;
                        }
                        for (int gi = 0; gi < L->groups; gi++)
#pragma omp simd
                            for (int ch = 0; ch < Cg; ch++) dst[gi * Cg + ch] += src[gi * Ng + ch];
                    }
                }
            }
        if (!L->nhwc_out)
            for (int ch = 0; ch < Co; ch++)
                for (int p = 0; p < P; p++) yb[(size_t)ch * P + p] = t[(size_t)p * Co + ch];
        op_activate(L->act, L->a0, L->a1, yb, yb, (size_t)Co * P);
    }
    return 0;
}

/* conv_transpose2d's input to aux: (Ci, nb*Pin), each sample's channel
 * plane copied whole */
static int planes_samples(void *ctx, int r0, int r1) {
    const conv_part *c = ctx;
    int Ci = c->L->in.dim[0], Pin = c->L->in.dim[1] * c->L->in.dim[2];
    for (int b = r0; b < r1; b++)
        for (int ch = 0; ch < Ci; ch++)
            memcpy(c->s->aux + (size_t)ch * c->cols + (size_t)b * Pin, c->x + ((size_t)(c->b0 + b) * Ci + ch) * Pin,
                   (size_t)Pin * sizeof(float));
    return 0;
}

/* x: (B, Cin, H, W), or (B, H, W, Cin) when nhwc_in; y: (B, Cout, Ho, Wo),
 * or (B, Ho, Wo, Cout) when L->nhwc_out */
int op_conv_t2d(const layer *L, int B, const float *x, float *y, const op_scratch *s) {
    int g = L->groups, Ci = L->in.dim[0], Cig = Ci / g, Pin = L->in.dim[1] * L->in.dim[2];
    int N = L->out.dim[0] * L->kh * L->kw, Ng = N / g;
    for (int b0 = 0; b0 < B; b0 += s->chunk) {
        int nb = B - b0 < s->chunk ? B - b0 : s->chunk, cols = nb * Pin;
        conv_part part = {L, x, NULL, y, s, b0, cols};
        /* col: (nb*Pin, g*kh*kw*Cg) = X W per group, X being the chunk's
         * pixels as rows of the group's Cig channels (channels-last input
         * as it is, NCHW through aux's planes) and W the group's (Cig,
         * kh*kw*Cg) */
        if (!L->nhwc_in) op_split_values(nb, (size_t)Ci * Pin, planes_samples, &part);
        for (int i = 0; i < g; i++) {
            const float *wg = L->weight + (size_t)i * Cig * Ng;
            if (L->nhwc_in)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cols, Ng, Cig, 1.0f,
                            x + (size_t)b0 * Ci * Pin + (size_t)i * Cig, Ci, wg, Ng, 0.0f, s->col + (size_t)i * Ng, N);
            else
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, Ng, Cig, 1.0f,
                            s->aux + (size_t)i * Cig * cols, cols, wg, Ng, 0.0f, s->col + (size_t)i * Ng, N);
        }
        if (gm_parallel_rows(nb, MIN_SAMPLES_PER_THREAD, col2im_samples, &part)) return -1;
    }
    return 0;
}
