/*
 * ops_elem.c - the ops that are not sgemm calls: activations, a batch_norm
 * that could not be folded, reshapes, and the ops that combine or split
 * values (add, mul, concat, split, expand, embedding).
 *
 * Each is split over samples across the compute threads (parallel.h) only
 * when each thread gets enough values to pay for the hand-off.
 */
#include "ops.h"
#include "parallel.h"
#include "vmath.h"

#include <math.h>
#include <string.h>

/* y = act(x) for an activation kind (in place when y == x); any other kind
 * copies. */
void op_activate(op_kind act, float a0, float a1, const float *x, float *y, size_t n) {
    switch (act) {
    case OP_RELU:
#pragma omp simd
        for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
        break;
    case OP_LEAKY_RELU:
#pragma omp simd
        for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : x[i] * a0;
        break;
    case OP_ELU:
        for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : a0 * expm1f(x[i]);
        break;
    case OP_GELU:
        if (a0 != 0) /* tanh approximation */
#pragma omp simd
            for (size_t i = 0; i < n; i++)
                y[i] = 0.5f * x[i] * (1.0f + gm_tanhf(0.7978845608f * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
        else
            for (size_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678f));
        break;
    case OP_SILU:
#pragma omp simd
        for (size_t i = 0; i < n; i++) y[i] = x[i] * gm_sigmoidf(x[i]);
        break;
    case OP_SOFTPLUS: /* linear above the threshold, as in PyTorch */
#pragma omp simd
        for (size_t i = 0; i < n; i++) y[i] = x[i] * a0 > a1 ? x[i] : gm_softplusf(x[i] * a0) / a0;
        break;
    case OP_HARDTANH:
#pragma omp simd
        for (size_t i = 0; i < n; i++) y[i] = x[i] < a0 ? a0 : x[i] > a1 ? a1 : x[i];
        break;
    case OP_SIGMOID:
#pragma omp simd
        for (size_t i = 0; i < n; i++) y[i] = gm_sigmoidf(x[i]);
        break;
    case OP_TANH:
#pragma omp simd
        for (size_t i = 0; i < n; i++) y[i] = gm_tanhf(x[i]);
        break;
    default:
        if (y != x) memmove(y, x, n * sizeof *y);
    }
}

#define MIN_SAMPLES_PER_THREAD 4
#define MIN_VALUES_PER_THREAD (1 << 17)

/* Splits `B` samples of `per` values each over the compute threads only
 * when each thread gets at least MIN_VALUES_PER_THREAD values: a hand-off
 * to a worker costs from 10 to 50 microseconds (parallel.c), more than a
 * small pass. */
void op_split_values(int B, size_t per, int (*fn)(void *, int, int), void *ctx) {
    size_t min_rows = MIN_VALUES_PER_THREAD / (per ? per : 1) + 1;
    gm_parallel_rows(B, min_rows > (size_t)B ? B + 1 : (int)min_rows, fn, ctx);
}
typedef struct {
    const layer *L;
    const float *x;
    float *y;
    size_t per; /* values per sample */
} elementwise_part;

static int elementwise_samples(void *ctx, int r0, int r1) {
    const elementwise_part *e = ctx;
    const layer *L = e->L;
    size_t lo = (size_t)r0 * e->per, hi = (size_t)r1 * e->per;
    if (L->kind == OP_BATCH_NORM) {
        int C = L->in.dim[0];
        size_t inner = e->per / C;
        for (size_t i = lo; i < hi; i++) {
            size_t c = i / inner % C;
            e->y[i] = e->x[i] * L->scale[c] + L->shift[c];
        }
    } else { /* activations; reshape and flatten copy */
        op_activate(L->kind, L->a0, L->a1, e->x + lo, e->y + lo, hi - lo);
    }
    return 0;
}

static int gate_samples(void *ctx, int r0, int r1) {
    const elementwise_part *e = ctx;
    size_t half = e->per;
    for (int b = r0; b < r1; b++) {
        const float *restrict a = e->x + (size_t)b * 2 * half, *restrict g = a + half;
        float *restrict y = e->y + (size_t)b * half;
        size_t i = 0;
#ifdef GM_SIG_LANES
        for (; i + GM_SIG_LANES <= half; i += GM_SIG_LANES) {
            gm_vsig va, vg;
            memcpy(&va, a + i, sizeof va);
            memcpy(&vg, g + i, sizeof vg);
            vg = gm_gate_v(va, vg);
            memcpy(y + i, &vg, sizeof vg);
        }
#endif
#pragma omp simd
        for (size_t j = i; j < half; j++) y[j] = gm_gatef(a[j], g[j]);
    }
    return 0;
}

void op_gate(const layer *L, int B, const float *x, float *y) {
    elementwise_part e = {L, x, y, (size_t)gm_shape_size(L->out)};
    op_split_values(B, e.per, gate_samples, &e);
}

/* batch_norm (not folded), activations not fused, reshape and flatten, in
 * place or not */
void op_elementwise(const layer *L, int B, const float *x, float *y) {
    elementwise_part e = {L, x, y, (size_t)gm_shape_size(L->in)};
    op_split_values(B, e.per, elementwise_samples, &e);
}

/* Values per sample of dims [from, rank) of s. */
static size_t span(gm_shape s, int from) {
    size_t n = 1;
    for (int i = from; i < s.rank; i++) n *= (size_t)s.dim[i];
    return n;
}

typedef struct {
    const layer *L;
    const float *const *x;
    float *const *y;
} graph_part;

/* add / mul / expand of one sample: y[i0, i1, i2] = a[..] op b[..] with the
 * broadcast strides of build */
static void broadcast_sample(const layer *L, const float *a, const float *b, float *y) {
    const int *d = L->bdim, *sa = L->bstr[0], *sb = L->bstr[1];
    if (L->kind != OP_EXPAND && sa[2] == 1 && sb[2] == 1 && sa[1] == d[2] && sb[1] == d[2] &&
        (d[0] == 1 || (sa[0] == d[1] * d[2] && sb[0] == d[1] * d[2]))) { /* equal shapes: one vector loop */
        size_t n = (size_t)d[0] * d[1] * d[2];
        if (L->kind == OP_ADD)
#pragma omp simd
            for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
        else
#pragma omp simd
            for (size_t i = 0; i < n; i++) y[i] = a[i] * b[i];
        return;
    }
    for (int i0 = 0; i0 < d[0]; i0++)
        for (int i1 = 0; i1 < d[1]; i1++) {
            const float *ra = a + (size_t)i0 * sa[0] + (size_t)i1 * sa[1];
            float *ry = y + ((size_t)i0 * d[1] + i1) * d[2];
            if (L->kind == OP_EXPAND) {
                for (int i2 = 0; i2 < d[2]; i2++) ry[i2] = ra[(size_t)i2 * sa[2]];
                continue;
            }
            const float *rb = b + (size_t)i0 * sb[0] + (size_t)i1 * sb[1];
            if (L->kind == OP_ADD)
                for (int i2 = 0; i2 < d[2]; i2++) ry[i2] = ra[(size_t)i2 * sa[2]] + rb[(size_t)i2 * sb[2]];
            else
                for (int i2 = 0; i2 < d[2]; i2++) ry[i2] = ra[(size_t)i2 * sa[2]] * rb[(size_t)i2 * sb[2]];
        }
}

static int graph_samples(void *ctx, int r0, int r1) {
    const graph_part *g = ctx;
    const layer *L = g->L;
    size_t out_n = (size_t)gm_shape_size(L->out);
    for (int b = r0; b < r1; b++) {
        switch (L->kind) {
        case OP_ADD:
        case OP_MUL:
            broadcast_sample(L, g->x[0] + (size_t)b * gm_shape_size(L->ins[0]),
                             g->x[1] + (size_t)b * gm_shape_size(L->ins[1]), g->y[0] + (size_t)b * out_n);
            break;
        case OP_EXPAND:
            broadcast_sample(L, g->x[0] + (size_t)b * gm_shape_size(L->in), NULL, g->y[0] + (size_t)b * out_n);
            break;
        case OP_CONCAT: {
            /* each input contributes a block of span(axis) values per outer index */
            size_t outer = span(L->out, 0) / span(L->out, L->axis), at = 0, row = span(L->out, L->axis);
            float *y = g->y[0] + (size_t)b * out_n;
            for (int k = 0; k < L->n_in; k++) {
                size_t blk = span(L->ins[k], L->axis), n = (size_t)gm_shape_size(L->ins[k]);
                const float *x = g->x[k] + (size_t)b * n;
                for (size_t o = 0; o < outer; o++) memcpy(y + o * row + at, x + o * blk, blk * sizeof *y);
                at += blk;
            }
            break;
        }
        case OP_SPLIT: {
            size_t in_n = (size_t)gm_shape_size(L->in), row = span(L->in, L->axis), outer = in_n / row, at = 0;
            const float *x = g->x[0] + (size_t)b * in_n;
            for (int k = 0; k < L->n_out; k++) {
                size_t blk = span(L->outs[k], L->axis), n = (size_t)gm_shape_size(L->outs[k]);
                float *y = g->y[k] + (size_t)b * n;
                for (size_t o = 0; o < outer; o++) memcpy(y + o * blk, x + o * row + at, blk * sizeof *y);
                at += blk;
            }
            break;
        }
        case OP_EMBEDDING: {
            /* the label arrives as a float; one that is not a row index has
             * no embedding (PyTorch raises): NaN makes that visible */
            float v = g->x[0][b], *y = g->y[0] + (size_t)b * out_n;
            if (v >= 0 && v < (float)L->rows && v == floorf(v))
                memcpy(y, L->weight + (size_t)v * out_n, out_n * sizeof *y);
            else
                for (size_t i = 0; i < out_n; i++) y[i] = NAN;
            break;
        }
        default:
            break;
        }
    }
    return 0;
}

void op_graph(const layer *L, int B, const float *const *x, float *const *y) {
    graph_part g = {L, x, y};
    op_split_values(B, (size_t)gm_shape_size(L->out) * (L->kind == OP_SPLIT ? 1 : L->n_in), graph_samples, &g);
}

/* The rows and columns of a sample's last two dimensions: [H, W] of a
 * [C, H, W] (C planes), [1, n] of an [n]. */
static void planes_of(gm_shape s, int *planes, int *h, int *w) {
    *w = s.dim[s.rank - 1];
    *h = s.rank >= 2 ? s.dim[s.rank - 2] : 1;
    *planes = gm_shape_size(s) / (*h * *w);
}

/* pad: the source index of output index i along an axis of n values
 * padded by `before`, or -1 for the zero mode's constant */
static int pad_source(int mode, int i, int before, int n) {
    i -= before;
    if (i >= 0 && i < n) return i;
    if (mode == PAD_ZERO) return -1;
    if (mode == PAD_REPLICATE) return i < 0 ? 0 : n - 1;
    return i < 0 ? -i : 2 * (n - 1) - i; /* reflect: build checked before, after < n */
}

/* upsample along one axis: output i reads inputs i0 and i1 with weight
 * (1 - t, t), as PyTorch computes it in float */
static void up_source(const layer *L, int i, int n_in, int n_out, int *i0, int *i1, float *t) {
    if (L->mode == UP_NEAREST) {
        /* an integer factor exactly; otherwise PyTorch's float formula */
        int s = n_out % n_in == 0 ? i / (n_out / n_in) : (int)floorf((float)i * ((float)n_in / (float)n_out));
        *i0 = *i1 = s < n_in - 1 ? s : n_in - 1;
        *t = 0;
        return;
    }
    float src;
    if (L->align_corners) src = n_out > 1 ? (float)i * ((float)(n_in - 1) / (float)(n_out - 1)) : 0.0f;
    else src = ((float)i + 0.5f) * ((float)n_in / (float)n_out) - 0.5f;
    if (src < 0) src = 0;
    *i0 = (int)src;
    if (*i0 > n_in - 1) *i0 = n_in - 1;
    *i1 = *i0 + 1 < n_in ? *i0 + 1 : n_in - 1;
    *t = src - (float)*i0;
}

typedef struct {
    const layer *L;
    const float *x;
    float *y;
} resample_part;

static int resample_samples(void *ctx, int r0, int r1) {
    const resample_part *r = ctx;
    const layer *L = r->L;
    int planes, H, W, Ho, Wo, unused;
    planes_of(L->in, &planes, &H, &W);
    planes_of(L->out, &unused, &Ho, &Wo);
    for (int b = r0; b < r1; b++)
        for (int p = 0; p < planes; p++) {
            const float *x = r->x + ((size_t)b * planes + p) * H * W;
            float *y = r->y + ((size_t)b * planes + p) * Ho * Wo;
            for (int oy = 0; oy < Ho; oy++) {
                if (L->kind == OP_PAD) {
                    int sy = pad_source(L->mode, oy, L->pads[2], H);
                    for (int ox = 0; ox < Wo; ox++) {
                        int sx = pad_source(L->mode, ox, L->pads[0], W);
                        y[(size_t)oy * Wo + ox] = sy < 0 || sx < 0 ? L->value : x[(size_t)sy * W + sx];
                    }
                    continue;
                }
                int y0, y1, x0, x1;
                float ty, tx;
                up_source(L, oy, H, Ho, &y0, &y1, &ty);
                const float *a = x + (size_t)y0 * W, *c = x + (size_t)y1 * W;
                for (int ox = 0; ox < Wo; ox++) {
                    up_source(L, ox, W, Wo, &x0, &x1, &tx);
                    y[(size_t)oy * Wo + ox] = L->mode == UP_NEAREST ? a[x0]
                                                                    : (1 - ty) * ((1 - tx) * a[x0] + tx * a[x1]) +
                                                                          ty * ((1 - tx) * c[x0] + tx * c[x1]);
                }
            }
        }
    return 0;
}

void op_resample(const layer *L, int B, const float *x, float *y) {
    resample_part r = {L, x, y};
    op_split_values(B, (size_t)gm_shape_size(L->out), resample_samples, &r);
}

typedef struct {
    const layer *L;
    const float *x;
    float *y;
} norm_part;

/* instance_norm / group_norm / layer_norm: each sample is L->groups blocks
 * of contiguous values normalized by their own mean and (biased) variance,
 * both accumulated in double; then the affine weight and bias, per channel
 * or (layer_norm) per value of the block. */
static void normalize_sample(const layer *L, const float *x, float *y) {
    size_t size = (size_t)gm_shape_size(L->in), n = size / L->groups, inner = size / L->in.dim[0];
    for (int g = 0; g < L->groups; g++) {
        const float *xb = x + g * n;
        float *yb = y + g * n;
        double sum = 0, sq = 0;
        for (size_t i = 0; i < n; i++) sum += xb[i];
        double mean = sum / (double)n;
        for (size_t i = 0; i < n; i++) sq += (xb[i] - mean) * (xb[i] - mean);
        double inv = 1.0 / sqrt(sq / (double)n + L->eps);
        for (size_t i = 0; i < n; i++) {
            size_t a = L->kind == OP_LAYER_NORM ? i : (g * n + i) / inner;
            yb[i] = (float)((xb[i] - mean) * inv) * L->scale[a] + L->shift[a];
        }
    }
}

/* softmax along per-sample dimension L->axis: for each position of the
 * other dimensions, exp(x - max) / sum */
static void softmax_sample(const layer *L, const float *x, float *y) {
    size_t inner = 1, outer = 1, len = (size_t)L->in.dim[L->axis];
    for (int d = L->axis + 1; d < L->in.rank; d++) inner *= (size_t)L->in.dim[d];
    for (int d = 0; d < L->axis; d++) outer *= (size_t)L->in.dim[d];
    for (size_t o = 0; o < outer; o++)
        for (size_t j = 0; j < inner; j++) {
            const float *xr = x + o * len * inner + j;
            float *yr = y + o * len * inner + j, mx = xr[0];
            for (size_t k = 1; k < len; k++) mx = xr[k * inner] > mx ? xr[k * inner] : mx;
            double sum = 0;
            for (size_t k = 0; k < len; k++) sum += (yr[k * inner] = gm_expf(xr[k * inner] - mx));
            float inv = (float)(1.0 / sum);
            for (size_t k = 0; k < len; k++) yr[k * inner] *= inv;
        }
}

static int norm_samples(void *ctx, int r0, int r1) {
    const norm_part *p = ctx;
    const layer *L = p->L;
    size_t size = (size_t)gm_shape_size(L->in);
    for (int b = r0; b < r1; b++) {
        const float *x = p->x + (size_t)b * size;
        float *y = p->y + (size_t)b * size;
        if (L->kind == OP_SOFTMAX) {
            softmax_sample(L, x, y);
        } else if (L->kind == OP_PRELU) {
            size_t inner = size / L->in.dim[0];
            for (size_t i = 0; i < size; i++) y[i] = x[i] > 0 ? x[i] : x[i] * L->scale[i / inner];
        } else {
            normalize_sample(L, x, y);
        }
    }
    return 0;
}

void op_norm(const layer *L, int B, const float *x, float *y) {
    norm_part p = {L, x, y};
    op_split_values(B, (size_t)gm_shape_size(L->in), norm_samples, &p);
}

typedef struct {
    const layer *L;
    const float *x;
    float *y;
} pool_part;

static int pool_samples(void *ctx, int r0, int r1) {
    const pool_part *p = ctx;
    const layer *L = p->L;
    int C = L->in.dim[0], H = L->in.dim[1], W = L->in.dim[2], Co = L->out.dim[0], Ho = L->out.dim[1],
        Wo = L->out.dim[2];
    for (int b = r0; b < r1; b++) {
        const float *x = p->x + (size_t)b * C * H * W;
        float *y = p->y + (size_t)b * Co * Ho * Wo;
        if (L->kind == OP_PIXEL_SHUFFLE) { /* y[c, h*r + i, w*r + j] = x[c*r*r + i*r + j, h, w] */
            int r = L->groups;
            for (int c = 0; c < Co; c++)
                for (int oy = 0; oy < Ho; oy++)
                    for (int ox = 0; ox < Wo; ox++)
                        y[((size_t)c * Ho + oy) * Wo + ox] =
                            x[(((size_t)c * r * r + (oy % r) * r + ox % r) * H + oy / r) * W + ox / r];
            continue;
        }
        for (int c = 0; c < C; c++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    /* the window; taps in the padding are -inf for max, zeros for avg */
                    float mx = -INFINITY, sum = 0;
                    int inside = 0, window = 0;
                    for (int ky = 0; ky < L->kh; ky++) {
                        int iy = oy * L->sh - L->ph + ky * L->dh;
                        for (int kx = 0; kx < L->kw; kx++) {
                            int ix = ox * L->sw - L->pw + kx * L->dw;
                            /* avg counts padding up to the padded edge, as PyTorch does */
                            window += iy < H + L->ph && ix < W + L->pw;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                            float v = x[((size_t)c * H + iy) * W + ix];
                            mx = v > mx || isnan(v) ? v : mx;
                            sum += v;
                            inside++;
                        }
                    }
                    y[((size_t)c * Ho + oy) * Wo + ox] =
                        L->kind == OP_MAX_POOL2D ? mx : sum / (float)(L->align_corners ? window : inside);
                }
    }
    return 0;
}

void op_pool(const layer *L, int B, const float *x, float *y) {
    pool_part p = {L, x, y};
    op_split_values(B, (size_t)gm_shape_size(L->in), pool_samples, &p);
}
