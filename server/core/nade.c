/*
 * nade.c - the Neural Autoregressive Distribution Estimator (docs/model-files.md).
 *
 * log p(x) = sum_k log p(x_{o_k} | x_{o_<k}) with each conditional a logistic
 * regression on h_k = act(a_k), where a_k = c + sum_{j<k} W[:, o_j] x_{o_j}.
 * Because a_{k+1} = a_k + W[:, o_k] x_{o_k}, every conditional costs O(H):
 * the whole image is O(D H), never the O(D^2 H) of recomputing each a_k.
 *
 * The batch is walked pixel by pixel, and for each pixel image by image: the
 * two rows of weights that pixel needs (V[i, :] and W[:, i], stored
 * transposed so both are contiguous) stay in L1 while every image's running
 * a and h = act(a) (H floats each) are updated. Binary pixels make the update
 * an add of W[:, i] or nothing, so h is recomputed only after an on pixel.
 * Both loops are written in vector registers (AVX-512, or AVX2 + FMA): the
 * sigmoid without a divide (vmath.h), the dot products four rows at a time
 * with several accumulators each (below), so that independent FMAs overlap.
 * Each pixel's signed logit is kept, and log p summed from them at the end
 * in double by one vectorized pass (vmath.h): a sum of D terms must hold
 * 1e-4, and libm's scalar log1p per pixel was a third of the time.
 *
 * Sampling runs the same recurrence, drawing x_i ~ Bernoulli(sigmoid(logit /
 * T)) from the row's own stream; the returned log p is the model's (T = 1).
 * Completion is sampling that keeps the row's first `given` pixels of its
 * input instead of the drawn ones: the conditionals of the rest are then
 * exactly p(x_i | x_<i) given the kept pixels. It is served only when the
 * order is raster order, where "the first rows" are a prefix of the order.
 */
#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "family.h"
#include "parallel.h"
#include "vmath.h"

/* The vector type of the hot loops: 64-byte registers where the CPU has
 * AVX-512, 32-byte ones with AVX2 and FMA (the container's x86-64-v3), plain
 * loops elsewhere. ACC accumulators per row in the dot products, so that
 * four rows keep 4 ACC independent FMAs in flight (one row alone, at batch
 * 1, is otherwise bound by the FMA latency), within the 32 (AVX-512) or 16
 * (AVX2) vector registers; PAD is ACC vectors. (Four sigmoid vectors a
 * step in the activation loop ran slower: their constants and temporaries
 * spill.) */
#if defined(__AVX512F__)
#define LANES 16
#define ACC 4
typedef __m512 vec;
#define vload _mm512_load_ps
#define vstore _mm512_store_ps
#define vadd _mm512_add_ps
#define vfma _mm512_fmadd_ps
#define vzero _mm512_setzero_ps
#define vmax _mm512_max_ps
static inline float vsum(__m512 v) { return _mm512_reduce_add_ps(v); }
#elif defined(__AVX2__) && defined(__FMA__)
#define LANES 8
#define ACC 4
typedef __m256 vec;
#define vload _mm256_load_ps
#define vstore _mm256_store_ps
#define vadd _mm256_add_ps
#define vfma _mm256_fmadd_ps
#define vzero _mm256_setzero_ps
#define vmax _mm256_max_ps
static inline float vsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#endif

#ifdef LANES
#define PAD (ACC * LANES)
#else
#define PAD 16 /* 64 bytes: the state rows stay aligned */
#endif

/* Rows of H values are stored with stride Hp, H rounded up to a multiple
 * of PAD, zero-padded: a padded unit has a = 0 and a zero output
 * weight, so it adds exactly 0 to every logit, and the vector loops need no
 * remainder (so every unit of every row goes through the same code). */

typedef struct {
    int D, H, Hp;
    float *WT; /* (D, Hp): row i is W[:, i] */
    float *V;  /* (D, Hp) */
    float *c;  /* (Hp) */
    float *b;  /* (D) */
    int *order;
    bool relu, raster; /* raster: order is the identity */
} nade;

static void nade_free(void *p) {
    nade *m = p;
    if (!m) return;
    free(m->WT);
    free(m->V);
    free(m->c);
    free(m->b);
    free(m->order);
    free(m);
}

static const gm_tensor *need(const gm_st *st, const char *name, int d0, int d1, char err[GM_ERR_LEN]) {
    const gm_tensor *t = gm_st_tensor(st, name);
    int nd = d1 ? 2 : 1;
    if (!t) {
        gm_errorf(err, "%s: NADE tensor '%s' is missing", gm_st_label(st), name);
        return NULL;
    }
    if (!t->f32 || t->ndim != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1)) {
        if (nd == 2)
            gm_errorf(err, "%s: NADE tensor '%s' must be a float tensor of shape [%d, %d]", gm_st_label(st), name, d0,
                      d1);
        else gm_errorf(err, "%s: NADE tensor '%s' must be a float tensor of shape [%d]", gm_st_label(st), name, d0);
        return NULL;
    }
    int64_t bad = gm_tensor_nonfinite(t);
    if (bad >= 0) {
        gm_errorf(err, "%s: NADE tensor '%s' holds %g at flat index %lld; weights must be finite", gm_st_label(st),
                  name, (double)t->f32[bad], (long long)bad);
        return NULL;
    }
    return t;
}

static void *nade_load(const gm_st *st, gm_model_info *info, char err[GM_ERR_LEN]) {
    const char *L = gm_st_label(st);
    int D = info->dim;
    const gm_tensor *w = gm_st_tensor(st, "W");
    if (!w || w->ndim != 2 || w->shape[1] != D || w->shape[0] < 1 || w->shape[0] > (1 << 20)) {
        gm_errorf(err, "%s: NADE tensor 'W' must have shape [H, D] with D = %d from gm.image", L, D);
        return NULL;
    }
    int H = (int)w->shape[0];
    const gm_tensor *c, *v, *b;
    if (!need(st, "W", H, D, err) || !(c = need(st, "c", H, 0, err)) || !(v = need(st, "V", D, H, err)) ||
        !(b = need(st, "b", D, 0, err)))
        return NULL;
    nade *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->D = D;
    m->H = H;
    int P = m->Hp = (H + PAD - 1) / PAD * PAD;
    m->WT = aligned_alloc(64, (size_t)D * P * sizeof(float));
    m->V = aligned_alloc(64, (size_t)D * P * sizeof(float));
    m->c = aligned_alloc(64, (size_t)P * sizeof(float));
    m->b = malloc((size_t)D * sizeof(float));
    m->order = malloc((size_t)D * sizeof(int));
    if (!m->WT || !m->V || !m->c || !m->b || !m->order) goto oom;
    memset(m->WT, 0, (size_t)D * P * sizeof(float));
    memset(m->V, 0, (size_t)D * P * sizeof(float));
    memset(m->c, 0, (size_t)P * sizeof(float));
    for (int h = 0; h < H; h++)
        for (int i = 0; i < D; i++) m->WT[(size_t)i * P + h] = w->f32[(size_t)h * D + i];
    for (int i = 0; i < D; i++) memcpy(m->V + (size_t)i * P, v->f32 + (size_t)i * H, (size_t)H * sizeof(float));
    memcpy(m->c, c->f32, (size_t)H * sizeof(float));
    memcpy(m->b, b->f32, (size_t)D * sizeof(float));
    const gm_tensor *o = gm_st_tensor(st, "ordering");
    if (o) {
        if (!o->i64 || o->ndim != 1 || o->shape[0] != D) {
            gm_errorf(err, "%s: NADE tensor 'ordering' must be an I64 or I32 tensor of shape [%d]", L, D);
            goto fail;
        }
        char *seen = calloc((size_t)D, 1);
        if (!seen) goto oom;
        for (int k = 0; k < D; k++) {
            int64_t i = o->i64[k];
            if (i < 0 || i >= D || seen[i]) {
                gm_errorf(err, "%s: NADE 'ordering' is not a permutation of 0..%d (entry %d = %lld)", L, D - 1, k,
                          (long long)i);
                free(seen);
                goto fail;
            }
            seen[i] = 1;
            m->order[k] = (int)i;
        }
        free(seen);
    } else {
        for (int k = 0; k < D; k++) m->order[k] = k;
    }
    const char *act = gm_st_meta(st, "gm.activation");
    if (act && strcmp(act, "relu") != 0 && strcmp(act, "sigmoid") != 0) {
        gm_errorf(err, "%s: metadata \"gm.activation\" must be sigmoid or relu (found \"%s\")", L, act);
        goto fail;
    }
    m->relu = act && strcmp(act, "relu") == 0;
    m->raster = true;
    for (int k = 0; k < D; k++) m->raster &= m->order[k] == k;
    info->encode_dim = H;
    info->binary = true;
    info->exact_logp = true;
    info->supports[GM_OP_SAMPLE] = info->supports[GM_OP_LOGP] = info->supports[GM_OP_ENCODE] = true;
    info->supports[GM_OP_COMPLETE] = m->raster;
    return m;
oom:
    gm_errorf(err, "%s: out of memory", L);
fail:
    nade_free(m);
    return NULL;
}

/* a += w and h = act(a), fused: the only place activations are computed.
 * a, h, w: (Hp), 64-byte aligned. */
static inline void add_and_activate(float *restrict a, float *restrict h, const float *restrict w, int Hp, bool relu) {
#ifdef LANES
    for (int j = 0; j < Hp; j += LANES) {
        vec x = vadd(vload(a + j), vload(w + j));
        vstore(a + j, x);
        vstore(h + j, relu ? vmax(x, vzero()) : gm_sigmoid_v(x));
    }
#else
    for (int j = 0; j < Hp; j++) {
        a[j] += w[j];
        h[j] = relu ? (a[j] > 0.0f ? a[j] : 0.0f) : gm_sigmoidf(a[j]);
    }
#endif
}

/* The dot products of n <= 4 rows h[q] with v: out[q] = h[q] . v. Each row
 * is summed by the same sequence of operations whatever n is, so a row's
 * logit never depends on its batch or its place in it. */
static inline __attribute__((always_inline)) void dot_rows(int n, const float *const h[4], const float *restrict v,
                                                           int Hp, float *out) {
#ifdef LANES
    vec s[4][ACC];
    for (int q = 0; q < n; q++)
        for (int u = 0; u < ACC; u++) s[q][u] = vzero();
    for (int j = 0; j < Hp; j += ACC * LANES) {
        vec vv[ACC];
#pragma GCC unroll 4
        for (int u = 0; u < ACC; u++) vv[u] = vload(v + j + u * LANES);
#pragma GCC unroll 4
        for (int q = 0; q < n; q++)
#pragma GCC unroll 4
            for (int u = 0; u < ACC; u++) s[q][u] = vfma(vload(h[q] + j + u * LANES), vv[u], s[q][u]);
    }
    for (int q = 0; q < n; q++) {
        vec t = s[q][0];
        for (int u = 1; u < ACC; u++) t = vadd(t, s[q][u]);
        out[q] = vsum(t);
    }
#else
    for (int q = 0; q < n; q++) {
        float t = 0.0f;
        for (int j = 0; j < Hp; j++) t += h[q][j] * v[j];
        out[q] = t;
    }
#endif
}

static void dot(int n, const float *const h[4], const float *restrict v, int Hp, float *out) {
    switch (n) {
    case 4:
        dot_rows(4, h, v, Hp, out);
        break;
    case 3:
        dot_rows(3, h, v, Hp, out);
        break;
    case 2:
        dot_rows(2, h, v, Hp, out);
        break;
    default:
        dot_rows(1, h, v, Hp, out);
        break;
    }
}

/* One call's rows and where their results go: scoring (rows NULL), sampling
 * (x NULL) or completion (both). */
typedef struct {
    const nade *m;
    const float *x; /* the binary images to score, or whose first rows[r].given pixels to keep */
    float *drawn;   /* rows != NULL: where the pixels go */
    gm_row *rows;
    double *logp;
    double *rest; /* completion: log p of the pixels not kept, given the kept ones */
} nade_call;

/* Rows of one block of nade_rows: its state (a and h, 2 Hp floats per row,
 * and D signed logits) stays within 3 x 16 MiB however many rows a call
 * brings. */
#define BLOCK_VALUES (1 << 22)

static int nade_block(const nade_call *c, int r0, int r1);

/* The recurrence over rows [r0, r1), in blocks of bounded state. */
static int nade_rows(void *ctx, int r0, int r1) {
    const nade_call *c = ctx;
    int widest = c->m->Hp > c->m->D ? c->m->Hp : c->m->D;
    int per = BLOCK_VALUES / widest > 0 ? BLOCK_VALUES / widest : 1; /* a huge image: one row at a time */
    for (int b0 = r0; b0 < r1; b0 += per)
        if (nade_block(c, b0, r1 - b0 < per ? r1 : b0 + per)) return -1;
    return 0;
}

/* The recurrence over rows [r0, r1) of a call: score the images x, or draw
 * each pixel into `drawn` with the rows' streams and temperatures. Each image
 * keeps a and h = act(a); h changes only after a pixel that is on, so the
 * activations (the costly part) are computed for the on pixels only, a
 * fraction the size of the mean intensity (~0.29 on Fashion-MNIST). */
static int nade_block(const nade_call *c, int r0, int r1) {
    const nade *m = c->m;
    int D = m->D, P = m->Hp, B = r1 - r0;
    size_t state = (size_t)B * P * sizeof(float); /* a multiple of 64 */
    float *A = aligned_alloc(64, state), *Hs = aligned_alloc(64, state), *logits = malloc((size_t)B * sizeof(float));
    /* row r's logits, signed: -logit where the pixel is on */
    float *S = malloc((size_t)B * D * sizeof(float));
    if (!A || !Hs || !logits || !S) {
        free(A);
        free(Hs);
        free(logits);
        free(S);
        return -1;
    }
    memset(A, 0, state);
    for (int r = 0; r < B; r++) { /* a = 0 + c */
        add_and_activate(A + (size_t)r * P, Hs + (size_t)r * P, m->c, P, m->relu);
    }
    for (int k = 0; k < D; k++) {
        int i = m->order[k];
        const float *v = m->V + (size_t)i * P, *w = m->WT + (size_t)i * P;
        for (int r = 0; r < B; r += 4) {
            const float *h[4];
            int n = B - r < 4 ? B - r : 4;
            for (int q = 0; q < n; q++) h[q] = Hs + (size_t)(r + q) * P;
            dot(n, h, v, P, logits + r);
        }
        for (int r = 0; r < B; r++) {
            size_t px = (size_t)(r0 + r) * D + i;
            float logit = m->b[i] + logits[r];
            bool on, kept = !c->rows || (c->x && k < c->rows[r0 + r].given);
            if (c->rows) {
                gm_row *row = &c->rows[r0 + r];
                double l = logit, e = exp(-fabs(l));
                double p = row->temperature == 1.0f ? (l >= 0 ? 1.0 : e) / (1.0 + e)
                                                    : 1.0 / (1.0 + exp(-l / row->temperature));
                on = gm_rng_uniform(&row->rng) < p; /* drawn for a kept pixel too: the stream stays sample's */
                if (kept) on = c->x[px] != 0.0f;
                c->drawn[px] = on ? 1.0f : 0.0f;
            } else {
                on = c->x[px] != 0.0f;
            }
            S[(size_t)r * D + k] = on ? -logit : logit;
            if (on) add_and_activate(A + (size_t)r * P, Hs + (size_t)r * P, w, P, m->relu);
        }
    }
    /* log p = sum_k log sigmoid(+-logit_k) = -sum_k softplus(-+logit_k) */
    for (int r = 0; r < B; r++) {
        const float *sr = S + (size_t)r * D;
        c->logp[r0 + r] = -gm_softplus_sum(sr, D);
        if (c->rest) { /* the drawn pixels are the last D - given of the order */
            int g = c->rows[r0 + r].given;
            c->rest[r0 + r] = -gm_softplus_sum(sr + g, D - g);
        }
    }
    free(A);
    free(Hs);
    free(logits);
    free(S);
    return 0;
}

/* Rows split across the compute threads, a few images each at least. */
static int nade_run(const nade *m, int B, const float *x, float *drawn, gm_row *rows, double *logp, double *rest) {
    nade_call c = {m, x, drawn, rows, logp, rest};
    return gm_parallel_rows(B, 4, nade_rows, &c);
}

static int nade_logp(const void *p, const gm_model_info *info, int B, const float *x, int K, gm_row *rows,
                     gm_logp_result *out) {
    const nade *m = p;
    double *lp = malloc((size_t)B * sizeof *lp);
    if (!lp) return -1;
    int rc = nade_run(m, B, x, NULL, NULL, lp, NULL);
    for (int r = 0; r < B && !rc; r++) out[r] = (gm_logp_result){lp[r], NAN, NAN};
    free(lp);
    return rc;
}

static int nade_sample(const void *p, const gm_model_info *info, int B, gm_row *rows, float *pixels, double *logp) {
    const nade *m = p;
    double *lp = logp ? logp : malloc((size_t)B * sizeof *lp);
    if (!lp) return -1;
    int rc = nade_run(m, B, NULL, pixels, rows, lp, NULL);
    if (!logp) free(lp);
    return rc;
}

static int nade_complete(const void *p, const gm_model_info *info, int B, const float *x, gm_row *rows, float *pixels,
                         double *logp, double *logp_rest) {
    return nade_run(p, B, x, pixels, rows, logp, logp_rest);
}

/* features: act(c + W x) for the whole image, one sgemm. z: (B, H) */
static int nade_encode(const void *p, const gm_model_info *info, int B, const float *x, float *z, float *logvar) {
    const nade *m = p;
    int H = m->H;
    for (int r = 0; r < B; r++) memcpy(z + (size_t)r * H, m->c, (size_t)H * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, H, m->D, 1.0f, x, m->D, m->WT, m->Hp, 1.0f, z, H);
    size_t n = (size_t)B * H;
    if (m->relu)
        for (size_t j = 0; j < n; j++) z[j] = z[j] > 0 ? z[j] : 0;
    else
#pragma omp simd
        for (size_t j = 0; j < n; j++) z[j] = gm_sigmoidf(z[j]);
    return 0;
}

const gm_family_impl gm_nade_family = {
    .load = nade_load,
    .free = nade_free,
    .sample = nade_sample,
    .logp = nade_logp,
    .encode = nade_encode,
    .complete = nade_complete,
};
