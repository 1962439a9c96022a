/*
 * pixelrnn.c - the Row LSTM of PixelRNN (van den Oord et al. 2016, "Pixel
 * Recurrent Neural Networks") over binary images (docs/model-files.md,
 * "pixelrnn"); models/train/pixelrnn_net.py is the PyTorch definition.
 *
 * Each layer is an LSTM that walks down the image a row at a time and
 * computes a whole row at once: the gates (input, forget, output,
 * candidate: 4h values per position) of row i at column j are
 *
 *   b + K_is * in[i, j - k_in/2 .. j - 1 (mask A) or j (mask B)]
 *     + K_ss * h[i - 1, j - k_state/2 .. j + k_state/2]
 *
 * then c = sig(f) c_prev + sig(i) tanh(g) and h = sig(o) tanh(c), with
 * the previous row's c at the same column. Mask A (the first layer, whose
 * input is the image) keeps the taps left of the pixel, mask B (later
 * layers, residual: their output is their input plus h) also the centre.
 * A head relu -> 1x1 -> relu -> 1x1 gives one Bernoulli logit per pixel.
 *
 * So (i, j) depends on the rows above and on row i left of j only: log p
 * is exact from one pass. The pass goes row by row; per row and layer, one
 * GEMM over batch x width for the state term and one for the input term.
 * Sampling uses the same row structure: at the start of row i the state
 * terms of the whole row are known (the row above is complete), so each
 * pixel then costs the input term, gates and head at its own column only,
 * one forward pass over the whole image. The sampler's products are
 * rowmadd.h's, which sum in a fixed order per image (BLAS may not), so a
 * row's draws never depend on the other rows of its batch.
 *
 * Loading checks every tensor's name, shape and finiteness, that the
 * masked taps are zero (the causality by construction), recomputes the
 * exporter's probe logits, and runs a random image with one pixel flipped
 * at a time (16 pixels, causal.c): no logit at or before it may move.
 */
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "causal.h"
#include "family.h"
#include "parallel.h"
#include "rowmadd.h"
#include "vmath.h"

#define MAX_LAYERS 16
#define MAX_HIDDEN 1024
#define MAX_KERNEL 15
#define MAX_HEAD 4096
#define MAX_PROBES 16
#define BLOCK_ROWS 64          /* images one pass holds at most */
#define BLOCK_FLOATS (1 << 24) /* and the floats of its work space */
#define PROBE_TOLERANCE 1e-4

typedef struct {
    int cin, taps; /* input channels; input-to-state taps the mask keeps */
    float *wi;     /* (taps * cin, 4h): tap t reads column j - k_in/2 + t */
    float *bi;     /* (4h) */
    float *ws;     /* (k_state * h, 4h): tap t reads the row above at j - k_state/2 + t */
    float *cb;     /* (K, 4h) class biases, or NULL */
} rlayer;

typedef struct {
    int H, W, L, h, kin, ks, head, K;
    rlayer lay[MAX_LAYERS];
    float *w1, *b1; /* (h, head), (head) */
    float *w2;      /* (head) */
    float b2;
    size_t wide, gw;  /* floats per position of the gathered inputs and of the gates */
    size_t per_image; /* work floats per image of a block */
    int probes;       /* probe inputs verified at load */
} pixelrnn;

static void pixelrnn_free(void *p) {
    pixelrnn *m = p;
    if (!m) return;
    for (int l = 0; l < m->L; l++) {
        free(m->lay[l].wi);
        free(m->lay[l].bi);
        free(m->lay[l].ws);
        free(m->lay[l].cb);
    }
    free(m->w1);
    free(m->b1);
    free(m->w2);
    free(m);
}

/* ---- the pass ---- */

/* One block of nb images in flight: the recurrent state of every layer and
 * the current row's values, channels last. */
typedef struct {
    const pixelrnn *m;
    int nb;
    const int *labels;                      /* (nb) class indices, or NULL */
    bool blas;                              /* the batched pass; the sampler computes rows alone */
    float *x;                               /* (nb, W): the image row being computed */
    float *hs[MAX_LAYERS], *cs[MAX_LAYERS]; /* (nb, W, h): h and c of the last row computed */
    float *S[MAX_LAYERS];                   /* (nb, W, 4h): the current row's bias and state terms */
    float *out[MAX_LAYERS];                 /* (nb, W, h): the layers' outputs of the current row */
    float *cols;                            /* (nb * W, widest gather) */
    float *g;                               /* (nb * W, max(4h, head)) */
    float *logit;                           /* (nb, W) */
    float *mem;
} work;

/* Sizes the work space: the widest gather is the state's k_state * h, a
 * mask B input's (k_in/2 + 1) h or the head's h; the gates 4h or head. */
static void size_work(pixelrnn *m) {
    size_t h = (size_t)m->h, wide = (size_t)m->ks * h;
    if (((size_t)m->kin / 2 + 1) * h > wide) wide = ((size_t)m->kin / 2 + 1) * h;
    m->wide = wide;
    m->gw = 4 * h > (size_t)m->head ? 4 * h : (size_t)m->head;
    m->per_image = (size_t)m->W * (1 + (size_t)m->L * 7 * h + m->wide + m->gw + 1);
}

static int block_rows(const pixelrnn *m, int B) {
    size_t n = BLOCK_FLOATS / m->per_image;
    if (n < 1) n = 1;
    if (n > BLOCK_ROWS) n = BLOCK_ROWS;
    return (size_t)B < n ? B : (int)n;
}

static int work_init(work *w, const pixelrnn *m, int nb, const int *labels, bool blas) {
    *w = (work){.m = m, .nb = nb, .labels = labels, .blas = blas};
    size_t W = (size_t)m->W, h = (size_t)m->h;
    float *p = w->mem = calloc((size_t)nb * m->per_image, sizeof *p);
    if (!p) return -1;
    w->x = p, p += nb * W;
    for (int l = 0; l < m->L; l++) {
        w->hs[l] = p, p += nb * W * h;
        w->cs[l] = p, p += nb * W * h;
        w->out[l] = p, p += nb * W * h;
        w->S[l] = p, p += nb * W * 4 * h;
    }
    w->cols = p, p += nb * W * m->wide;
    w->g = p, p += nb * W * m->gw;
    w->logit = p;
    return 0;
}

/* C (M, N) += A (M, K) B (K, N), row-major. BLAS for the batched pass; else
 * rowmadd.h's kernel, whose sums run over k in order for each row alone. */
static void matmul(bool blas, int M, int K, int N, const float *A, const float *B, float *C) {
    if (M < 1 || K < 1) return;
    if (blas) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 1.0f, C, N);
    else gm_rows_madd(M, K, N, A, B, C);
}

/* Row i's bias and state terms of every layer, for all columns: S = b
 * (+ class bias) + K_ss * h of row i - 1 (zero above the first row). */
static void state_terms(work *w, int i) {
    const pixelrnn *m = w->m;
    int W = m->W, h = m->h, G = 4 * h, half = m->ks / 2;
    for (int l = 0; l < m->L; l++) {
        const rlayer *ly = &m->lay[l];
        for (int r = 0; r < w->nb; r++) {
            float *s = w->S[l] + (size_t)r * W * G;
            memcpy(s, ly->bi, (size_t)G * sizeof *s);
            if (ly->cb)
                for (int o = 0; o < G; o++) s[o] += ly->cb[(size_t)w->labels[r] * G + o];
            for (int j = 1; j < W; j++) memcpy(s + (size_t)j * G, s, (size_t)G * sizeof *s);
        }
        if (i == 0) continue;
        for (int r = 0; r < w->nb; r++)
            for (int j = 0; j < W; j++) {
                float *col = w->cols + ((size_t)r * W + j) * m->ks * h;
                for (int t = 0; t < m->ks; t++) {
                    int jj = j - half + t;
                    if (jj >= 0 && jj < W) memcpy(col + t * h, w->hs[l] + ((size_t)r * W + jj) * h, h * sizeof *col);
                    else memset(col + t * h, 0, h * sizeof *col);
                }
            }
        matmul(w->blas, w->nb * W, m->ks * h, G, w->cols, ly->ws, w->S[l]);
    }
}

/* One position's LSTM update from its gates g = (input, forget, output,
 * candidate), h each: c = sig(f) c + sig(i) tanh(g), hv = sig(o) tanh(c),
 * out = hv, plus res (the layer's input) when res is not NULL. Each
 * sig(.) tanh(.) is vmath.h's gate, on vectors without a divide (libm's
 * expm1f and tanhf took a fifth of a pass); the units past the last whole
 * vector take its scalar form, the same units on every call. */
static void cell(int h, const float *g, float *c, float *hv, const float *res, float *out) {
    int u = 0;
#ifdef GM_SIG_LANES
    for (; u + GM_SIG_LANES <= h; u += GM_SIG_LANES) {
        gm_vsig gi, gf, go, gg, cv;
        memcpy(&gi, g + u, sizeof gi), memcpy(&gf, g + h + u, sizeof gf);
        memcpy(&go, g + 2 * h + u, sizeof go), memcpy(&gg, g + 3 * h + u, sizeof gg), memcpy(&cv, c + u, sizeof cv);
        cv = gm_sigmoid_v(gf) * cv + gm_gate_v(gg, gi);
        gm_vsig y = gm_gate_v(cv, go);
        memcpy(c + u, &cv, sizeof cv), memcpy(hv + u, &y, sizeof y);
        if (res) {
            gm_vsig r;
            memcpy(&r, res + u, sizeof r);
            y += r;
        }
        memcpy(out + u, &y, sizeof y);
    }
#endif
    for (; u < h; u++) {
        c[u] = gm_sigmoidf(g[h + u]) * c[u] + gm_gatef(g[3 * h + u], g[u]);
        hv[u] = gm_gatef(c[u], g[2 * h + u]);
        out[u] = res ? res[u] + hv[u] : hv[u];
    }
}

/* Columns [j0, j1) of the current row, every layer and the head: needs
 * state_terms of the row and w->x filled left of j1. Logits to w->logit. */
static void columns(work *w, int j0, int j1) {
    const pixelrnn *m = w->m;
    int W = m->W, h = m->h, G = 4 * h, n = j1 - j0, M = w->nb * n, half = m->kin / 2;
    for (int l = 0; l < m->L; l++) {
        const rlayer *ly = &m->lay[l];
        const float *in = l == 0 ? w->x : w->out[l - 1];
        int K = ly->taps * ly->cin;
        for (int r = 0; r < w->nb; r++)
            for (int j = j0; j < j1; j++) {
                size_t q = (size_t)r * n + (j - j0), at = (size_t)r * W + j;
                float *col = w->cols + q * K;
                for (int t = 0; t < ly->taps; t++) {
                    int jj = j - half + t;
                    if (jj >= 0) memcpy(col + t * ly->cin, in + ((size_t)r * W + jj) * ly->cin, ly->cin * sizeof *col);
                    else memset(col + t * ly->cin, 0, ly->cin * sizeof *col);
                }
                memcpy(w->g + q * G, w->S[l] + at * G, (size_t)G * sizeof *w->g);
            }
        matmul(w->blas, M, K, G, w->cols, ly->wi, w->g);
        for (int r = 0; r < w->nb; r++)
            for (int j = j0; j < j1; j++) {
                const float *g = w->g + ((size_t)r * n + (j - j0)) * G;
                size_t at = ((size_t)r * W + j) * h;
                cell(h, g, w->cs[l] + at, w->hs[l] + at, l == 0 ? NULL : in + at, w->out[l] + at);
            }
    }
    const float *top = w->out[m->L - 1];
    for (int r = 0; r < w->nb; r++)
        for (int j = j0; j < j1; j++) {
            size_t q = (size_t)r * n + (j - j0);
            const float *o = top + ((size_t)r * W + j) * h;
            for (int u = 0; u < h; u++) w->cols[q * h + u] = o[u] > 0.0f ? o[u] : 0.0f;
            memcpy(w->g + q * m->head, m->b1, (size_t)m->head * sizeof *w->g);
        }
    matmul(w->blas, M, h, m->head, w->cols, m->w1, w->g);
    for (int r = 0; r < w->nb; r++)
        for (int j = j0; j < j1; j++) {
            const float *y = w->g + ((size_t)r * n + (j - j0)) * m->head;
            float s = m->b2;
            for (int u = 0; u < m->head; u++) s += (y[u] > 0.0f ? y[u] : 0.0f) * m->w2[u];
            w->logit[(size_t)r * W + j] = s;
        }
}

/* The logits (nb, H*W) of nb images (nb, H*W) in one batched pass. */
static int pass_logits(const pixelrnn *m, int nb, const float *x, const int *labels, float *logits) {
    work w;
    if (work_init(&w, m, nb, labels, true)) return -1;
    int W = m->W, D = m->H * W;
    for (int i = 0; i < m->H; i++) {
        for (int r = 0; r < nb; r++) memcpy(w.x + (size_t)r * W, x + (size_t)r * D + (size_t)i * W, W * sizeof *w.x);
        state_terms(&w, i);
        columns(&w, 0, W);
        for (int r = 0; r < nb; r++)
            memcpy(logits + (size_t)r * D + (size_t)i * W, w.logit + (size_t)r * W, W * sizeof *logits);
    }
    free(w.mem);
    return 0;
}

/* log p(x | labels) of nb images from their logits, summed in double. */
static void score(int D, int nb, const float *x, const float *logits, double *lp) {
    for (int r = 0; r < nb; r++) {
        double s = 0.0;
        for (int i = 0; i < D; i++) {
            double l = logits[(size_t)r * D + i];
            s -= gm_softplus(x[(size_t)r * D + i] != 0.0f ? -l : l);
        }
        lp[r] = s;
    }
}

static int pixelrnn_logp(const void *p, const gm_model_info *info, int B, const float *x, int K_, gm_row *rows,
                         gm_logp_result *out) {
    const pixelrnn *m = p;
    int D = info->dim, classes = m->K ? m->K : 1, nb = block_rows(m, B), rc = -1;
    float *logits = malloc((size_t)nb * D * sizeof *logits);
    int *labels = malloc((size_t)nb * sizeof *labels);
    double *lp = malloc((size_t)nb * sizeof *lp), *acc = malloc((size_t)nb * classes * sizeof *acc);
    if (!logits || !labels || !lp || !acc) goto done;
    for (int r0 = 0; r0 < B; r0 += nb) {
        int n = B - r0 < nb ? B - r0 : nb;
        for (int y = 0; y < classes; y++) {
            for (int r = 0; r < n; r++) labels[r] = y;
            if (pass_logits(m, n, x + (size_t)r0 * D, m->K ? labels : NULL, logits)) goto done;
            score(D, n, x + (size_t)r0 * D, logits, lp);
            for (int r = 0; r < n; r++) acc[(size_t)r * classes + y] = lp[r];
        }
        for (int r = 0; r < n; r++) { /* a conditional model without a label: log (1/K) sum_y p(x | y) */
            const double *a = acc + (size_t)r * classes;
            double mx = a[0], s = 0.0;
            for (int y = 1; y < classes; y++) mx = fmax(mx, a[y]);
            for (int y = 0; y < classes; y++) s += exp(a[y] - mx);
            out[r0 + r] = (gm_logp_result){mx + log(s / classes), NAN, NAN};
        }
    }
    rc = 0;
done:
    free(logits);
    free(labels);
    free(lp);
    free(acc);
    return rc;
}

/* ---- sampling and completion ---- */

typedef struct {
    const pixelrnn *m;
    gm_row *rows;
    const float *given; /* completion: images whose first rows[r].given pixels are kept, or NULL */
    float *pixels;
    double *logp, *rest;
} draw_call;

static int draw_block(const draw_call *c, int r0, int nb) {
    const pixelrnn *m = c->m;
    int W = m->W, D = m->H * W;
    int *labels = calloc((size_t)nb, sizeof *labels);
    work w;
    if (!labels || work_init(&w, m, nb, labels, false)) {
        free(labels);
        return -1;
    }
    for (int r = 0; r < nb; r++) {
        labels[r] = m->K ? c->rows[r0 + r].label : 0;
        if (c->logp) c->logp[r0 + r] = 0.0;
        if (c->rest) c->rest[r0 + r] = 0.0;
    }
    for (int i = 0; i < m->H; i++) {
        memset(w.x, 0, (size_t)nb * W * sizeof *w.x);
        state_terms(&w, i);
        for (int j = 0; j < W; j++) {
            columns(&w, j, j + 1);
            for (int r = 0; r < nb; r++) {
                gm_row *row = &c->rows[r0 + r];
                size_t v = (size_t)i * W + j;
                double logit = w.logit[(size_t)r * W + j], e = exp(-fabs(logit));
                double pr = row->temperature == 1.0f ? (logit >= 0 ? 1.0 : e) / (1.0 + e)
                                                     : 1.0 / (1.0 + exp(-logit / row->temperature));
                bool on = gm_rng_uniform(&row->rng) < pr; /* drawn for a kept pixel too: the stream stays sample's */
                bool keep = c->given && v < (size_t)row->given;
                if (keep) on = c->given[(size_t)(r0 + r) * D + v] != 0.0f;
                w.x[(size_t)r * W + j] = c->pixels[(size_t)(r0 + r) * D + v] = on ? 1.0f : 0.0f;
                double term = -gm_softplus_e(on ? -logit : logit, e);
                if (c->logp) c->logp[r0 + r] += term;
                if (c->rest && !keep) c->rest[r0 + r] += term;
            }
        }
    }
    free(w.mem);
    free(labels);
    return 0;
}

static int draw_rows(void *ctx, int r0, int r1) {
    const draw_call *c = ctx;
    int nb = block_rows(c->m, r1 - r0);
    for (int b = r0; b < r1; b += nb)
        if (draw_block(c, b, r1 - b < nb ? r1 - b : nb)) return -1;
    return 0;
}

static int pixelrnn_sample(const void *p, const gm_model_info *info, int B, gm_row *rows, float *pixels, double *logp) {
    draw_call c = {p, rows, NULL, pixels, logp, NULL};
    return gm_parallel_rows(B, 1, draw_rows, &c);
}

static int pixelrnn_complete(const void *p, const gm_model_info *info, int B, const float *x, gm_row *rows,
                             float *pixels, double *logp, double *logp_rest) {
    draw_call c = {p, rows, x, pixels, logp, logp_rest};
    return gm_parallel_rows(B, 1, draw_rows, &c);
}

/* ---- loading ---- */

/* The integer field `key` of gm.pixelrnn, in [lo, hi] (odd when asked). */
static int arch_int(const char *L, json_t *o, const char *key, int lo, int hi, bool odd, int *out,
                    char err[GM_ERR_LEN]) {
    json_t *v = json_object_get(o, key);
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : lo - 1;
    if (n < lo || n > hi || (odd && n % 2 == 0))
        return gm_errorf(err, "%s: metadata \"gm.pixelrnn\" field \"%s\" must be %s integer in %d..%d", L, key,
                         odd ? "an odd" : "an", lo, hi);
    *out = (int)n;
    return 0;
}

static int parse_arch(const gm_st *st, pixelrnn *m, char err[GM_ERR_LEN]) {
    const char *L = gm_st_label(st), *text = gm_st_meta(st, "gm.pixelrnn");
    if (!text)
        return gm_errorf(err,
                         "%s: metadata \"gm.pixelrnn\" (the Row LSTM's layers, hidden, input_kernel, "
                         "state_kernel and head) is required",
                         L);
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    int rc = -1;
    if (!json_is_object(o)) {
        gm_errorf(err, "%s: metadata \"gm.pixelrnn\" must be a JSON object", L);
        goto done;
    }
    static const char *const KEYS[] = {"layers", "hidden", "input_kernel", "state_kernel", "head"};
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val) {
        bool known = false;
        for (size_t k = 0; k < sizeof KEYS / sizeof KEYS[0]; k++) known = known || !strcmp(key, KEYS[k]);
        if (!known) {
            gm_errorf(err,
                      "%s: metadata \"gm.pixelrnn\" has an unknown field \"%s\" (fields: layers, hidden, "
                      "input_kernel, state_kernel, head)",
                      L, key);
            goto done;
        }
    }
    if (arch_int(L, o, "layers", 1, MAX_LAYERS, false, &m->L, err) ||
        arch_int(L, o, "hidden", 1, MAX_HIDDEN, false, &m->h, err) ||
        arch_int(L, o, "input_kernel", 1, MAX_KERNEL, true, &m->kin, err) ||
        arch_int(L, o, "state_kernel", 1, MAX_KERNEL, true, &m->ks, err) ||
        arch_int(L, o, "head", 1, MAX_HEAD, false, &m->head, err))
        goto done;
    rc = 0;
done:
    json_decref(o);
    return rc;
}

/* Tensor `name` of shape [d0, d1, d2] (rank = dims given), finite floats. */
/* Tensor `name` of shape d[0..rank) (rank 1 to 4), finite floats. */
static const gm_tensor *need(const gm_st *st, const char *name, int rank, const int *d, char err[GM_ERR_LEN]) {
    const char *L = gm_st_label(st);
    const gm_tensor *t = gm_st_tensor(st, name);
    char want[64];
    int at = snprintf(want, sizeof want, "[%d", d[0]);
    for (int k = 1; k < rank; k++) at += snprintf(want + at, sizeof want - (size_t)at, ", %d", d[k]);
    snprintf(want + at, sizeof want - (size_t)at, "]");
    if (!t) {
        gm_errorf(err, "%s: pixelrnn tensor '%s' %s is missing", L, name, want);
        return NULL;
    }
    bool ok = t->f32 && t->ndim == rank;
    for (int k = 0; ok && k < rank; k++) ok = t->shape[k] == d[k];
    if (!ok) {
        gm_errorf(err, "%s: pixelrnn tensor '%s' must be a float tensor of shape %s (from gm.pixelrnn and gm.image)", L,
                  name, want);
        return NULL;
    }
    int64_t bad = gm_tensor_nonfinite(t);
    if (bad >= 0) {
        gm_errorf(err, "%s: pixelrnn tensor '%s' holds %g at flat index %lld; weights must be finite", L, name,
                  (double)t->f32[bad], (long long)bad);
        return NULL;
    }
    return t;
}

static float *copy_of(const float *src, size_t n) {
    float *p = malloc(n * sizeof *p);
    if (p) memcpy(p, src, n * sizeof *p);
    return p;
}

/* Layer l's tensors: the input taps its mask keeps (the others must be 0),
 * transposed to (taps * cin, 4h); the state kernel to (k_state * h, 4h). */
static int load_layer(const gm_st *st, pixelrnn *m, int l, char err[GM_ERR_LEN]) {
    const char *L = gm_st_label(st);
    rlayer *ly = &m->lay[l];
    int h = m->h, G = 4 * h, cin = ly->cin = l == 0 ? 1 : h, half = m->kin / 2;
    ly->taps = half + (l == 0 ? 0 : 1); /* mask A: columns left of the pixel; B: up to it */
    char n[96];
    snprintf(n, sizeof n, "layers.%d.input_to_state.weight", l);
    const gm_tensor *wi = need(st, n, 3, (const int[]){G, cin, m->kin}, err);
    if (!wi) return -1;
    for (int o = 0; o < G; o++)
        for (int c = 0; c < cin; c++)
            for (int t = ly->taps; t < m->kin; t++) {
                float v = wi->f32[((size_t)o * cin + c) * m->kin + t];
                if (v != 0.0f)
                    return gm_errorf(err,
                                     "%s: pixelrnn tensor '%s' is not causal: tap %d (column offset %+d) of gate "
                                     "%d, channel %d is %g, but mask %c keeps the columns %s the pixel only",
                                     L, n, t, t - half, o, c, (double)v, l == 0 ? 'A' : 'B',
                                     l == 0 ? "left of" : "up to");
            }
    snprintf(n, sizeof n, "layers.%d.input_to_state.bias", l);
    const gm_tensor *bi = need(st, n, 1, (const int[]){G}, err);
    snprintf(n, sizeof n, "layers.%d.state_to_state.weight", l);
    const gm_tensor *ws = bi ? need(st, n, 3, (const int[]){G, h, m->ks}, err) : NULL;
    if (!ws) return -1;
    snprintf(n, sizeof n, "layers.%d.class_bias", l);
    const gm_tensor *cb = NULL;
    if (m->K && !(cb = need(st, n, 2, (const int[]){m->K, G}, err))) return -1;
    ly->wi = malloc(((size_t)ly->taps * cin * G + 1) * sizeof(float));
    ly->ws = malloc((size_t)m->ks * h * G * sizeof(float));
    ly->bi = copy_of(bi->f32, (size_t)G);
    if (cb) ly->cb = copy_of(cb->f32, (size_t)m->K * G);
    if (!ly->wi || !ly->ws || !ly->bi || (cb && !ly->cb)) return gm_errorf(err, "%s: out of memory", L);
    for (int o = 0; o < G; o++) {
        for (int c = 0; c < cin; c++)
            for (int t = 0; t < ly->taps; t++)
                ly->wi[((size_t)t * cin + c) * G + o] = wi->f32[((size_t)o * cin + c) * m->kin + t];
        for (int c = 0; c < h; c++)
            for (int t = 0; t < m->ks; t++)
                ly->ws[((size_t)t * h + c) * G + o] = ws->f32[((size_t)o * h + c) * m->ks + t];
    }
    return 0;
}

/* The exporter's probes: PyTorch's logits of P images (and labels). */
static int check_probes(const gm_st *st, const pixelrnn *m, int *probes, char err[GM_ERR_LEN]) {
    const char *L = gm_st_label(st);
    const gm_tensor *img = gm_st_tensor(st, "gm.pixelrnn.probe.image");
    *probes = 0;
    if (!img) return 0;
    int P = img->ndim == 4 ? (int)img->shape[0] : 0, D = m->H * m->W;
    if (P < 1 || P > MAX_PROBES)
        return gm_errorf(err, "%s: tensor 'gm.pixelrnn.probe.image' must be [P, 1, %d, %d] with 1 <= P <= %d", L, m->H,
                         m->W, MAX_PROBES);
    const gm_tensor *want, *lab = NULL;
    if (!need(st, "gm.pixelrnn.probe.image", 4, (const int[]){P, 1, m->H, m->W}, err) ||
        !(want = need(st, "gm.pixelrnn.probe.logits", 4, (const int[]){P, 1, m->H, m->W}, err)) ||
        (m->K && !(lab = need(st, "gm.pixelrnn.probe.label", 1, (const int[]){P}, err))))
        return -1;
    float *x = malloc((size_t)P * D * sizeof *x), *got = malloc((size_t)P * D * sizeof *got);
    int *labels = malloc((size_t)P * sizeof *labels), rc = -1;
    if (!x || !got || !labels) {
        gm_errorf(err, "%s: out of memory checking the probes", L);
        goto done;
    }
    for (int i = 0; i < P * D; i++) x[i] = img->f32[i] != 0.0f ? 1.0f : 0.0f;
    for (int r = 0; r < P; r++) {
        float v = lab ? lab->f32[r] : 0.0f;
        if (!(v >= 0 && v < (m->K ? m->K : 1) && v == floorf(v))) {
            gm_errorf(err, "%s: tensor 'gm.pixelrnn.probe.label' value %d is %g, not a class index in 0..%d", L, r,
                      (double)v, m->K - 1);
            goto done;
        }
        labels[r] = (int)v;
    }
    if (pass_logits(m, P, x, m->K ? labels : NULL, got)) {
        gm_errorf(err, "%s: out of memory checking the probes", L);
        goto done;
    }
    double scale = 1.0;
    for (int i = 0; i < P * D; i++) scale = fmax(scale, fabs((double)want->f32[i]));
    for (int i = 0; i < P * D; i++) {
        double diff = fabs((double)got[i] - (double)want->f32[i]);
        if (!(diff <= PROBE_TOLERANCE * scale)) {
            gm_errorf(err,
                      "%s: probe %d of the pixelrnn does not match: the logit of pixel (row %d, column %d) is "
                      "%.9g here but %.9g in 'gm.pixelrnn.probe.logits': the file does not compute what the "
                      "exported module did",
                      L, i / D, i % D / m->W, i % m->W, (double)got[i], (double)want->f32[i]);
            goto done;
        }
    }
    *probes = P;
    rc = 0;
done:
    free(x);
    free(got);
    free(labels);
    return rc;
}

/* The causality check's view of the network: one image, label 0 if conditional. */
static int causal_logits(const void *p, const float *x, float *y) {
    const pixelrnn *m = p;
    int label = 0;
    return pass_logits(m, 1, x, m->K ? &label : NULL, y);
}

static void *pixelrnn_load(const gm_st *st, gm_model_info *info, char err[GM_ERR_LEN]) {
    const char *L = gm_st_label(st), *lik = gm_st_meta(st, "gm.likelihood");
    if (lik && strcmp(lik, "bernoulli") != 0) {
        gm_errorf(err, "%s: metadata \"gm.likelihood\" = \"%s\": a pixelrnn serves \"bernoulli\" only", L, lik);
        return NULL;
    }
    if (info->channels != 1) {
        gm_errorf(err, "%s: metadata \"gm.image\": a pixelrnn models binary images of one channel (found %d)", L,
                  info->channels);
        return NULL;
    }
    pixelrnn *m = calloc(1, sizeof *m);
    if (!m) {
        gm_errorf(err, "%s: out of memory", L);
        return NULL;
    }
    m->H = info->height, m->W = info->width, m->K = info->num_classes;
    if (parse_arch(st, m, err)) goto fail;
    for (int l = 0; l < m->L; l++)
        if (load_layer(st, m, l, err)) goto fail;
    const gm_tensor *w1 = need(st, "out1.weight", 2, (const int[]){m->head, m->h}, err), *b1, *w2, *b2;
    if (!w1 || !(b1 = need(st, "out1.bias", 1, (const int[]){m->head}, err)) ||
        !(w2 = need(st, "out2.weight", 2, (const int[]){1, m->head}, err)) ||
        !(b2 = need(st, "out2.bias", 1, (const int[]){1}, err)))
        goto fail;
    m->w1 = malloc((size_t)m->h * m->head * sizeof *m->w1);
    m->b1 = copy_of(b1->f32, (size_t)m->head);
    m->w2 = copy_of(w2->f32, (size_t)m->head);
    if (!m->w1 || !m->b1 || !m->w2) {
        gm_errorf(err, "%s: out of memory", L);
        goto fail;
    }
    for (int o = 0; o < m->head; o++)
        for (int c = 0; c < m->h; c++) m->w1[(size_t)c * m->head + o] = w1->f32[(size_t)o * m->h + c];
    m->b2 = b2->f32[0];
    size_work(m);
    int probes;
    if (check_probes(st, m, &probes, err)) goto fail;
    m->probes = probes;
    /* every tensor is one of those read: nothing unknown rides along */
    int expected = m->L * (m->K ? 4 : 3) + 4 + (probes ? (m->K ? 3 : 2) : 0);
    if (gm_st_count(st) != expected) {
        for (int t = 0; t < gm_st_count(st); t++) {
            const char *name = gm_st_at(st, t)->name;
            bool known = !strcmp(name, "out1.weight") || !strcmp(name, "out1.bias") || !strcmp(name, "out2.weight") ||
                         !strcmp(name, "out2.bias") || (probes && !strncmp(name, "gm.pixelrnn.probe.", 18));
            int l, end = 0;
            char part[32];
            if (!known && sscanf(name, "layers.%d.%31[a-z_.]%n", &l, part, &end) == 2 && !name[end] && l >= 0 &&
                l < m->L)
                known = !strcmp(part, "input_to_state.weight") || !strcmp(part, "input_to_state.bias") ||
                        !strcmp(part, "state_to_state.weight") || (m->K && !strcmp(part, "class_bias"));
            if (!known) {
                gm_errorf(err,
                          "%s: tensor '%s' is not part of this pixelrnn (%d layers%s; docs/model-files.md lists "
                          "its tensors)",
                          L, name, m->L, m->K ? ", class-conditional" : ", no gm.num_classes");
                goto fail;
            }
        }
        gm_errorf(err, "%s: a pixelrnn's probes are gm.pixelrnn.probe.image, .logits (and .label) together", L);
        goto fail;
    }
    if (gm_check_causal(m, causal_logits, m->H, m->W, 1, L, "the pixelrnn", err)) goto fail;
    info->binary = true;
    info->exact_logp = true;
    info->supports[GM_OP_SAMPLE] = info->supports[GM_OP_LOGP] = info->supports[GM_OP_COMPLETE] = true;
    return m;
fail:
    pixelrnn_free(m);
    return NULL;
}

static int pixelrnn_probes(const void *p) { return ((const pixelrnn *)p)->probes; }

const gm_family_impl gm_pixelrnn_family = {
    .load = pixelrnn_load,
    .free = pixelrnn_free,
    .sample = pixelrnn_sample,
    .logp = pixelrnn_logp,
    .complete = pixelrnn_complete,
    .own_probes = pixelrnn_probes,
};
