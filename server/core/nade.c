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
 * an add of W[:, i] or nothing, so h is recomputed only after an on pixel;
 * the loops vectorize (gm_expf; `omp simd` lets the dot products reassociate,
 * four rows at a time so that their accumulators are independent).
 * Per-image log p accumulates in double: a sum of D terms must hold 1e-4.
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

typedef struct {
    int D, H;
    float *WT; /* (D, H): row i is W[:, i] */
    float *V;  /* (D, H) */
    float *c;  /* (H) */
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
            gm_errorf(err, "%s: NADE tensor '%s' must be a float tensor of shape [%d, %d]", gm_st_label(st), name,
                      d0, d1);
        else
            gm_errorf(err, "%s: NADE tensor '%s' must be a float tensor of shape [%d]", gm_st_label(st), name, d0);
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
    m->WT = malloc((size_t)D * H * sizeof(float));
    m->V = malloc((size_t)D * H * sizeof(float));
    m->c = malloc((size_t)H * sizeof(float));
    m->b = malloc((size_t)D * sizeof(float));
    m->order = malloc((size_t)D * sizeof(int));
    if (!m->WT || !m->V || !m->c || !m->b || !m->order) goto oom;
    for (int h = 0; h < H; h++)
        for (int i = 0; i < D; i++) m->WT[(size_t)i * H + h] = w->f32[(size_t)h * D + i];
    memcpy(m->V, v->f32, (size_t)D * H * sizeof(float));
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

/* a += w and h = act(a), fused: the only place activations are computed. */
static inline void add_and_activate(float *restrict a, float *restrict h, const float *restrict w, int H,
                                    bool relu) {
    if (relu) {
#pragma omp simd
        for (int j = 0; j < H; j++) {
            a[j] += w[j];
            h[j] = a[j] > 0.0f ? a[j] : 0.0f;
        }
    } else {
#pragma omp simd
        for (int j = 0; j < H; j++) {
            a[j] += w[j];
            h[j] = gm_sigmoidf(a[j]);
        }
    }
}

/* Four rows' dot products with v at once: one vector accumulator would be a
 * chain of dependent adds (latency-bound); four are independent, and v is
 * loaded once for all four. Every row goes through this same code (a short
 * batch repeats its last row), so a row's logit never depends on its batch. */
static inline void dot4(const float *const h[4], const float *restrict v, int H, float *out) {
    const float *restrict h0 = h[0], *restrict h1 = h[1], *restrict h2 = h[2], *restrict h3 = h[3];
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (int j = 0; j < H; j++) {
        s0 += h0[j] * v[j];
        s1 += h1[j] * v[j];
        s2 += h2[j] * v[j];
        s3 += h3[j] * v[j];
    }
    out[0] = s0, out[1] = s1, out[2] = s2, out[3] = s3;
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

/* Rows of one block of nade_rows: its state (a and h, 2 H floats per row)
 * stays within 2 x 16 MiB however many rows a call brings. */
#define BLOCK_VALUES (1 << 22)

static int nade_block(const nade_call *c, int r0, int r1);

/* The recurrence over rows [r0, r1), in blocks of bounded state. */
static int nade_rows(void *ctx, int r0, int r1) {
    const nade_call *c = ctx;
    int per = BLOCK_VALUES / c->m->H; /* >= 4: H <= 2^20 */
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
    int D = m->D, H = m->H, B = r1 - r0;
    float *A = calloc((size_t)B * H, sizeof(float)), *Hs = malloc((size_t)B * H * sizeof(float)),
          *logits = malloc((size_t)B * sizeof(float));
    if (!A || !Hs || !logits) {
        free(A);
        free(Hs);
        free(logits);
        return -1;
    }
    for (int r = 0; r < B; r++) { /* a = 0 + c */
        add_and_activate(A + (size_t)r * H, Hs + (size_t)r * H, m->c, H, m->relu);
        c->logp[r0 + r] = 0.0;
        if (c->rest) c->rest[r0 + r] = 0.0;
    }
    for (int k = 0; k < D; k++) {
        int i = m->order[k];
        const float *v = m->V + (size_t)i * H, *w = m->WT + (size_t)i * H;
        for (int r = 0; r < B; r += 4) {
            const float *h[4];
            float out[4];
            for (int q = 0; q < 4; q++) h[q] = Hs + (size_t)(r + q < B ? r + q : B - 1) * H;
            dot4(h, v, H, out);
            for (int q = 0; q < 4 && r + q < B; q++) logits[r + q] = out[q];
        }
        for (int r = 0; r < B; r++) {
            size_t px = (size_t)(r0 + r) * D + i;
            double logit = (double)(m->b[i] + logits[r]), e = exp(-fabs(logit));
            bool on, kept = !c->rows || (c->x && k < c->rows[r0 + r].given);
            if (c->rows) {
                gm_row *row = &c->rows[r0 + r];
                double p = row->temperature == 1.0f ? (logit >= 0 ? 1.0 : e) / (1.0 + e)
                                                    : 1.0 / (1.0 + exp(-logit / row->temperature));
                on = gm_rng_uniform(&row->rng) < p; /* drawn for a kept pixel too: the stream stays sample's */
                if (kept) on = c->x[px] != 0.0f;
                c->drawn[px] = on ? 1.0f : 0.0f;
            } else {
                on = c->x[px] != 0.0f;
            }
            double term = -gm_softplus_e(on ? -logit : logit, e); /* log sigmoid(+-logit), e shared with p */
            c->logp[r0 + r] += term;
            if (c->rest && !kept) c->rest[r0 + r] += term;
            if (on) add_and_activate(A + (size_t)r * H, Hs + (size_t)r * H, w, H, m->relu);
        }
    }
    free(A);
    free(Hs);
    free(logits);
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

static int nade_complete(const void *p, const gm_model_info *info, int B, const float *x, gm_row *rows,
                         float *pixels, double *logp, double *logp_rest) {
    return nade_run(p, B, x, pixels, rows, logp, logp_rest);
}

/* features: act(c + W x) for the whole image, one sgemm. z: (B, H) */
static int nade_encode(const void *p, const gm_model_info *info, int B, const float *x, float *z, float *logvar) {
    const nade *m = p;
    int H = m->H;
    for (int r = 0; r < B; r++) memcpy(z + (size_t)r * H, m->c, (size_t)H * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, H, m->D, 1.0f, x, m->D, m->WT, H, 1.0f, z, H);
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
