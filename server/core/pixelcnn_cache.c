/*
 * pixelcnn_cache.c - sampling an autoregressive network with cached
 * activations (the idea of Ramachandran et al. 2017, "Fast Generation for
 * Convolutional Autoregressive Models").
 *
 * The naive loop runs the whole network once per pixel. But a value at
 * position q of some layer depends on a fixed set of pixels, its backward
 * cone through each op's window; once they are drawn it never changes.
 * Counting only kernel taps with a non-zero weight (a masked convolution's
 * masked taps are zero), the plan walks, for each pixel t in raster order,
 * the cone of output t back through the graph and records, per op, the
 * positions not computed for an earlier pixel. Sampling then computes
 * exactly those before drawing pixel t: over a whole image every op is
 * computed about once per position, one forward pass in all.
 *
 * Values that do not depend on the image (the label's embedding and what is
 * made from it) are computed once per image by the ordinary kernels.
 * Image-dependent values are kept channels-last, one vector per position;
 * a split's outputs (channels, or rows and columns: the crop of a shift)
 * are views of its input. The ops the sampler follows: conv2d with stride 1
 * (any padding, dilation, groups; its fused activation), the activations
 * and the fused gate tanh(a) * sigmoid(b), the per-channel batch_norm
 * (an affine map in eval) and prelu, add and mul (an image-dependent input of the output's shape, the other
 * anything that broadcasts; an add fused into the conv2d before it is that
 * conv's second input, read at the output's position), concat over
 * channels, split, and pad in the
 * zero mode. Planning refuses any other
 * op on an image-dependent value.
 *
 * Planning also proves the network causal at position level: the largest
 * pixel each value at each position depends on (over non-zero taps) is
 * propagated forward, and output t may depend on pixels before t only (for
 * C > 1 channels, on pixel t's own channels too, whose order the model's
 * numeric check at load covers). That is what makes the cache correct: every
 * value in the cone of output t depends on drawn pixels only, so computing it
 * at step t gives the value it will always have. With C > 1 the positions of
 * step t are computed again before each channel of pixel t is drawn.
 *
 * The naive mode runs the same per-position kernels at every position
 * before every pixel, so the two modes compute the same numbers and draw
 * the same images bit for bit; the kernels accumulate in a fixed order
 * (a vector over output channels, the taps in sequence), independent of
 * which positions or rows are computed together.
 */
#include "pixelcnn_cache.h"
#include "graph.h"
#include "parallel.h"
#include "rowmadd.h"
#include "scratch.h"
#include "vmath.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* plan bounds: schedule entries (image positions x ops) and positions over
 * all values, and the arena one block of rows may use (floats) */
#define MAX_PLAN_ENTRIES (1 << 24)
#define BLOCK_FLOATS (1 << 24)

typedef struct {
    bool spatial;   /* depends on the image */
    int C, H, W;    /* spatial: its shape */
    int store;      /* spatial: the value whose buffer holds it (a split's input) */
    int off, cs;    /* spatial: its first channel there, and channels per position */
    int oy, ox, sw; /* spatial: its (0, 0) at (oy, ox) of the store, whose rows are sw wide */
    size_t srow;    /* spatial: floats per row (batch row) of the store */
    size_t at;      /* floats before its buffer in a row block, per row */
    size_t per_row; /* floats per row of its buffer (0 for views and inputs) */
    int *dep;       /* planning: the largest pixel each position depends on, -1 none */
} pval;

typedef struct {
    bool spatial;
    int ntaps, *dy, *dx; /* conv2d: taps with a non-zero weight read input (h + dy, w + dx) */
    int cin_g, cout_g;
    float *wt; /* conv2d: per group, (ntaps * cin_g, cout_g): a tap's input channel's weights, contiguous */
} pop;

struct pc_plan {
    const gm_net *net;
    int C, H, W, P, label_val; /* label_val: -1 without a label input */
    int n_ops, n_vals;
    pval *vals;
    pop *ops;
    size_t row_floats;
    int max_k, max_cout;
    int *start, *count; /* (P, n_ops): op i's positions at step t */
    int *pos;
    long long cached_positions, naive_positions;
};

static const char *op_label(op_kind k) {
    static const char *const names[OP_COUNT] = {[OP_LINEAR] = "linear",
                                                [OP_CONV2D] = "conv2d",
                                                [OP_CONV_T2D] = "conv_transpose2d",
                                                [OP_BATCH_NORM] = "batch_norm",
                                                [OP_RESHAPE] = "reshape",
                                                [OP_FLATTEN] = "flatten",
                                                [OP_EXPAND] = "expand",
                                                [OP_EMBEDDING] = "embedding",
                                                [OP_UPSAMPLE] = "upsample",
                                                [OP_PRELU] = "prelu",
                                                [OP_SOFTMAX] = "softmax",
                                                [OP_INSTANCE_NORM] = "instance_norm",
                                                [OP_GROUP_NORM] = "group_norm",
                                                [OP_LAYER_NORM] = "layer_norm",
                                                [OP_MAX_POOL2D] = "max_pool2d",
                                                [OP_AVG_POOL2D] = "avg_pool2d",
                                                [OP_PIXEL_SHUFFLE] = "pixel_shuffle",
                                                [OP_PAD] = "pad",
                                                [OP_CONCAT] = "concat",
                                                [OP_SPLIT] = "split"};
    return k < OP_COUNT && names[k] ? names[k] : "op";
}

void pc_plan_free(pc_plan *p) {
    if (!p) return;
    for (int v = 0; p->vals && v < p->n_vals; v++) free(p->vals[v].dep);
    for (int i = 0; p->ops && i < p->n_ops; i++) {
        free(p->ops[i].dy);
        free(p->ops[i].dx);
        free(p->ops[i].wt);
    }
    free(p->vals);
    free(p->ops);
    free(p->start);
    free(p->count);
    free(p->pos);
    free(p);
}

static bool same_map(const pval *a, gm_shape s) {
    return s.rank == 3 && a->C == s.dim[0] && a->H == s.dim[1] && a->W == s.dim[2];
}

/* The nonzero taps of a conv2d and its weights regrouped for the sampler. */
static int plan_conv(pop *o, const layer *L) {
    int cin_g = L->in.dim[0] / L->groups, cout = L->out.dim[0], cout_g = cout / L->groups, kk = L->kh * L->kw;
    o->cin_g = cin_g;
    o->cout_g = cout_g;
    o->dy = malloc((size_t)kk * sizeof(int));
    o->dx = malloc((size_t)kk * sizeof(int));
    if (!o->dy || !o->dx) return -1;
    int *tap = malloc((size_t)kk * sizeof(int));
    if (!tap) return -1;
    for (int a = 0; a < L->kh; a++)
        for (int b = 0; b < L->kw; b++) {
            bool nz = false;
            for (int co = 0; co < cout && !nz; co++)
                for (int ci = 0; ci < cin_g && !nz; ci++)
                    nz = L->weight[(size_t)co * cin_g * kk + (size_t)ci * kk + a * L->kw + b] != 0.0f;
            if (!nz) continue;
            tap[o->ntaps] = a * L->kw + b;
            o->dy[o->ntaps] = a * L->dh - L->ph;
            o->dx[o->ntaps] = b * L->dw - L->pw;
            o->ntaps++;
        }
    size_t K = (size_t)(o->ntaps ? o->ntaps : 1) * cin_g;
    o->wt = malloc((size_t)L->groups * K * cout_g * sizeof(float));
    if (!o->wt) {
        free(tap);
        return -1;
    }
    for (int g = 0; g < L->groups; g++)
        for (int t = 0; t < o->ntaps; t++)
            for (int ci = 0; ci < cin_g; ci++)
                for (int co = 0; co < cout_g; co++)
                    o->wt[((size_t)g * K + (size_t)t * cin_g + ci) * cout_g + co] =
                        L->weight[(size_t)(g * cout_g + co) * cin_g * kk + (size_t)ci * kk + tap[t]];
    free(tap);
    return 0;
}

/* Input k of op L at position (h, w) of its output `out`: calls fn for
 * every position of the input it reads (the window). */
typedef void (*pos_fn)(void *ctx, int v, int q);
static void window(const pc_plan *p, int i, int k, int out, int h, int w, pos_fn fn, void *ctx) {
    const layer *L = gm_net_op(p->net, i);
    const pop *o = &p->ops[i];
    const pval *x = &p->vals[L->in_val[k]];
    if (L->kind == OP_SPLIT) { /* a view: the same element at an offset */
        const pval *y = &p->vals[L->out_val[out]];
        fn(ctx, L->in_val[k], (h + y->oy - x->oy) * x->W + (w + y->ox - x->ox));
    } else if (L->kind == OP_CONV2D && k == 0) { /* input 1, a fused add's: the same position */
        for (int t = 0; t < o->ntaps; t++) {
            int hh = h + o->dy[t], ww = w + o->dx[t];
            if (hh >= 0 && hh < x->H && ww >= 0 && ww < x->W) fn(ctx, L->in_val[k], hh * x->W + ww);
        }
    } else if (L->kind == OP_PAD) {
        int hh = h - L->pads[2], ww = w - L->pads[0];
        if (hh >= 0 && hh < x->H && ww >= 0 && ww < x->W) fn(ctx, L->in_val[k], hh * x->W + ww);
    } else {
        fn(ctx, L->in_val[k], h * x->W + w);
    }
}

/* ---- planning ---- */

static void dep_max(void *ctx, int v, int q) {
    const pc_plan *p = ((void **)ctx)[0];
    int *m = ((void **)ctx)[1];
    if (p->vals[v].dep[q] > *m) *m = p->vals[v].dep[q];
}

typedef struct {
    pc_plan *p;
    char **done; /* per value: positions already scheduled */
    int **list;  /* per value: this step's positions */
    int *n;
} cone;

static void push(void *ctx, int v, int q) {
    cone *c = ctx;
    if (v == 0 || !c->p->vals[v].spatial || c->done[v][q]) return;
    c->done[v][q] = 1;
    c->list[v][c->n[v]++] = q;
}

/* Classifies every value, checks each op on image-dependent values, and
 * assigns buffers. */
static int plan_values(pc_plan *p, const char *label, const char *what, char err[GM_ERR_LEN]) {
    const gm_net *net = p->net;
    size_t at = 0, positions = 0;
    pval *im = &p->vals[0];
    *im = (pval){.spatial = true,
                 .C = p->C,
                 .H = p->H,
                 .W = p->W,
                 .store = 0,
                 .cs = p->C,
                 .sw = p->W,
                 .srow = (size_t)p->P * p->C};
    if (p->label_val >= 0) p->vals[p->label_val].per_row = 1;
    for (int i = 0; i < p->n_ops; i++) {
        const layer *L = gm_net_op(net, i);
        pop *o = &p->ops[i];
        for (int k = 0; k < L->n_in; k++) o->spatial |= p->vals[L->in_val[k]].spatial;
        for (int k = 0; k < L->n_out; k++) {
            pval *y = &p->vals[L->out_val[k]];
            y->spatial = o->spatial;
            if (!o->spatial) {
                y->at = at;
                y->per_row = (size_t)gm_shape_size(L->outs[k]);
                at += y->per_row;
            }
        }
        if (!o->spatial) {
            if (L->kind == OP_LINEAR || L->kind == OP_ADD || L->kind == OP_MUL || L->kind == OP_CONCAT ||
                L->kind == OP_SPLIT || L->kind == OP_EXPAND || L->kind == OP_EMBEDDING || L->kind == OP_RESHAPE ||
                L->kind == OP_FLATTEN || L->kind == OP_BATCH_NORM || L->kind == OP_GATE || op_is_activation(L->kind))
                continue;
            return gm_errorf(err,
                             "%s: %s op %d (%s) works on the label only, where the sampler runs linear, "
                             "embedding, add, mul, concat, split, expand, reshape and activations",
                             label, what, i, op_label(L->kind));
        }
        bool ok = L->out.rank == 3;
        const char *why = "its output is not a [C, H, W] map";
        switch (L->kind) {
        case OP_CONV2D:
            if (L->sh != 1 || L->sw != 1) ok = false, why = "a stride other than 1 changes the resolution";
            else if (!p->vals[L->in_val[0]].spatial) /* image-dependent through a fused add's input only */
                ok = false, why = "it convolves a value made from the label only";
            else if (plan_conv(o, L)) return gm_errorf(err, "%s: out of memory planning %s", label, what);
            break;
        case OP_PAD:
            if (L->mode != PAD_ZERO || L->in.rank != 3) ok = false, why = "only zero padding of a map";
            break;
        case OP_CONCAT:
            if (L->axis != 0) ok = false, why = "only over channels (dim 0)";
            for (int k = 0; k < L->n_in && ok; k++)
                if (L->ins[k].rank != 3 || L->ins[k].dim[1] != L->out.dim[1] || L->ins[k].dim[2] != L->out.dim[2])
                    ok = false, why = "inputs must be maps of the same height and width";
            break;
        case OP_SPLIT: /* channels, rows or columns: views */
            if (L->in.rank != 3) ok = false, why = "only of a [C, H, W] map";
            break;
        case OP_ADD:
        case OP_MUL:
            for (int k = 0; k < 2 && ok; k++) {
                const pval *x = &p->vals[L->in_val[k]];
                if (x->spatial && !(x->C == L->out.dim[0] && x->H == L->out.dim[1] && x->W == L->out.dim[2]))
                    ok = false, why = "an image-dependent input must have the output's shape";
            }
            break;
        case OP_BATCH_NORM: /* per channel: x * scale + shift, or a slope below 0 */
        case OP_PRELU:
            if (L->in.rank != 3) ok = false, why = "only of a [C, H, W] map";
            break;
        default:
            if (!op_is_activation(L->kind) && L->kind != OP_GATE)
                ok = false, why = "the sampler cannot compute it position by position";
        }
        if (!ok)
            return gm_errorf(err,
                             "%s: %s op %d (%s) on an image-dependent value: %s; the PixelCNN sampler "
                             "follows conv2d (stride 1), activations, batch_norm, prelu, add, mul, concat "
                             "over channels, split and zero pad",
                             label, what, i, op_label(L->kind), why);
        int coff = 0;
        for (int k = 0; k < L->n_out; k++) {
            pval *y = &p->vals[L->out_val[k]];
            y->C = L->outs[k].dim[0], y->H = L->outs[k].dim[1], y->W = L->outs[k].dim[2];
            positions += (size_t)y->H * y->W;
            if (L->kind == OP_SPLIT) { /* a view of the input: some of its channels, rows or columns */
                const pval *x = &p->vals[L->in_val[0]];
                *y = *x;
                y->C = L->outs[k].dim[0], y->H = L->outs[k].dim[1], y->W = L->outs[k].dim[2];
                y->per_row = 0;
                y->dep = NULL;
                if (L->axis == 0) y->off += coff;
                else if (L->axis == 1) y->oy += coff;
                else y->ox += coff;
                coff += L->outs[k].dim[L->axis];
                continue;
            }
            y->store = L->out_val[k], y->off = 0, y->cs = y->C, y->oy = y->ox = 0, y->sw = y->W;
            y->srow = (size_t)y->C * y->H * y->W;
            y->at = at;
            y->per_row = (size_t)y->C * y->H * y->W;
            at += y->per_row;
            if (y->C > p->max_cout) p->max_cout = y->C;
        }
        if (L->kind == OP_CONV2D && (long long)o->ntaps * o->cin_g > p->max_k) p->max_k = o->ntaps * o->cin_g;
    }
    const pval *out = &p->vals[gm_net_out_value(net)];
    if (!out->spatial || !same_map(out, gm_shape3(p->C, p->H, p->W)))
        return gm_errorf(err, "%s: %s must end with per-pixel logits [%d, %d, %d] computed from the image", label, what,
                         p->C, p->H, p->W);
    if (positions > MAX_PLAN_ENTRIES || (long long)p->P * p->n_ops > MAX_PLAN_ENTRIES)
        return gm_errorf(err,
                         "%s: %s is too large to plan for sampling (%zu positions over its values, %lld "
                         "schedule entries; at most %d)",
                         label, what, positions, (long long)p->P * p->n_ops, MAX_PLAN_ENTRIES);
    p->row_floats = at ? at : 1;
    return 0;
}

/* The largest pixel each position of each value depends on, over taps with
 * a non-zero weight; output t must depend on earlier pixels only. */
static int plan_causal(pc_plan *p, const char *label, const char *what, char err[GM_ERR_LEN]) {
    for (int v = 0; v < p->n_vals; v++) {
        pval *x = &p->vals[v];
        if (!x->spatial) continue;
        if (!(x->dep = malloc((size_t)x->H * x->W * sizeof(int))))
            return gm_errorf(err, "%s: out of memory planning %s", label, what);
        for (int q = 0; q < x->H * x->W; q++) x->dep[q] = v == 0 ? q : -1;
    }
    for (int i = 0; i < p->n_ops; i++) {
        const layer *L = gm_net_op(p->net, i);
        if (!p->ops[i].spatial) continue;
        for (int k = 0; k < L->n_out; k++) {
            pval *y = &p->vals[L->out_val[k]];
            for (int h = 0; h < y->H; h++)
                for (int w = 0; w < y->W; w++) {
                    int m = -1;
                    void *ctx[2] = {p, &m};
                    for (int j = 0; j < L->n_in; j++)
                        if (p->vals[L->in_val[j]].spatial) window(p, i, j, k, h, w, dep_max, ctx);
                    y->dep[h * y->W + w] = m;
                }
        }
    }
    const pval *out = &p->vals[gm_net_out_value(p->net)];
    for (int t = 0; t < p->P; t++) {
        int d = out->dep[t];
        if (d > t || (p->C == 1 && d == t))
            return gm_errorf(err,
                             "%s: %s is not causal: the output at pixel (row %d, column %d) depends on input "
                             "pixel (row %d, column %d) through kernel taps with non-zero weights; an "
                             "autoregressive network's output at a pixel may depend on earlier pixels "
                             "(raster order) only (mask the first convolution with type A, later ones "
                             "with type B)",
                             label, what, t / p->W, t % p->W, d / p->W, d % p->W);
    }
    return 0;
}

/* For each pixel, the positions of each op in the cone of its output not
 * computed for an earlier pixel. */
static int plan_schedule(pc_plan *p) {
    int nv = p->n_vals, rc = -1;
    cone c = {p, calloc((size_t)nv, sizeof(char *)), calloc((size_t)nv, sizeof(int *)),
              calloc((size_t)nv, sizeof(int))};
    size_t total = 0;
    p->start = malloc((size_t)p->P * p->n_ops * sizeof(int));
    p->count = calloc((size_t)p->P * p->n_ops, sizeof(int));
    if (!c.done || !c.list || !c.n || !p->start || !p->count) goto done;
    for (int v = 1; v < nv; v++) {
        const pval *x = &p->vals[v];
        if (!x->spatial) continue;
        total += (size_t)x->H * x->W;
        if (!(c.done[v] = calloc((size_t)x->H * x->W, 1)) || !(c.list[v] = malloc((size_t)x->H * x->W * sizeof(int))))
            goto done;
    }
    if (!(p->pos = malloc((total ? total : 1) * sizeof(int)))) goto done;
    size_t used = 0;
    int outv = gm_net_out_value(p->net);
    for (int t = 0; t < p->P; t++) {
        memset(c.n, 0, (size_t)nv * sizeof(int));
        push(&c, outv, t);
        for (int i = p->n_ops - 1; i >= 0; i--) {
            const layer *L = gm_net_op(p->net, i);
            if (!p->ops[i].spatial) continue;
            for (int k = 0; k < L->n_out; k++) {
                int v = L->out_val[k];
                const pval *y = &p->vals[v];
                for (int e = 0; e < c.n[v]; e++) {
                    int q = c.list[v][e];
                    for (int j = 0; j < L->n_in; j++) window(p, i, j, k, q / y->W, q % y->W, push, &c);
                }
            }
            if (L->kind == OP_SPLIT) continue; /* views: nothing to compute */
            int v = L->out_val[0];
            p->start[(size_t)t * p->n_ops + i] = (int)used;
            p->count[(size_t)t * p->n_ops + i] = c.n[v];
            memcpy(p->pos + used, c.list[v], (size_t)c.n[v] * sizeof(int));
            used += (size_t)c.n[v];
        }
    }
    p->cached_positions = (long long)used * p->C;
    for (int i = 0; i < p->n_ops; i++) {
        const layer *L = gm_net_op(p->net, i);
        if (p->ops[i].spatial && L->kind != OP_SPLIT)
            p->naive_positions += (long long)L->out.dim[1] * L->out.dim[2] * p->P * p->C;
    }
    rc = 0;
done:
    for (int v = 0; v < nv; v++) {
        if (c.done) free(c.done[v]);
        if (c.list) free(c.list[v]);
    }
    free(c.done);
    free(c.list);
    free(c.n);
    return rc;
}

pc_plan *pc_plan_build(const gm_net *net, const char *label, const char *what, char err[GM_ERR_LEN]) {
    gm_shape im = gm_net_input_shape(net, 0);
    pc_plan *p = calloc(1, sizeof *p);
    if (!p) {
        gm_errorf(err, "%s: out of memory planning %s", label, what);
        return NULL;
    }
    p->net = net;
    p->C = im.dim[0], p->H = im.dim[1], p->W = im.dim[2], p->P = p->H * p->W;
    p->label_val = gm_net_inputs(net) > 1 ? 1 : -1;
    p->n_ops = gm_net_n_ops(net);
    p->n_vals = gm_net_n_values(net);
    p->vals = calloc((size_t)p->n_vals, sizeof(pval));
    p->ops = calloc((size_t)(p->n_ops ? p->n_ops : 1), sizeof(pop));
    if (!p->vals || !p->ops) {
        gm_errorf(err, "%s: out of memory planning %s", label, what);
        goto fail;
    }
    if (plan_values(p, label, what, err) || plan_causal(p, label, what, err)) goto fail;
    if (plan_schedule(p)) {
        gm_errorf(err, "%s: out of memory planning %s", label, what);
        goto fail;
    }
    for (int v = 0; v < p->n_vals; v++) {
        free(p->vals[v].dep);
        p->vals[v].dep = NULL;
    }
    return p;
fail:
    pc_plan_free(p);
    return NULL;
}

long long pc_positions(const pc_plan *p, bool cached) { return cached ? p->cached_positions : p->naive_positions; }

/* ---- sampling ---- */

typedef struct {
    const pc_plan *p;
    gm_row *rows;
    const int *labels;
    float *pixels;
    double *logp;
    bool cached;
    const float *given; /* completion: the images whose first rows[r].given values are kept, or NULL */
    double *rest;       /* completion: log p of the drawn values */
} pc_call;

typedef struct {
    const pc_plan *p;
    int nb;
    float **buf; /* per value: its store's buffer, nb rows */
    float *gather, *acc;
} block;

/* Where position (h, w) of image-dependent value x starts in row b of
 * its store's buffer. */
static inline size_t at_pos(const pval *x, int b, int h, int w) {
    return (size_t)b * x->srow + ((size_t)(h + x->oy) * x->sw + (size_t)(w + x->ox)) * x->cs + x->off;
}

/* Channel c of input j of op L at output position q of row b. */
static inline float at_value(const block *k, const layer *L, int j, int b, int c, int q) {
    const pval *x = &k->p->vals[L->in_val[j]];
    if (x->spatial) return k->buf[L->in_val[j]][at_pos(x, b, q / x->W, q % x->W) + c];
    int W = L->out.dim[2], h = q / W, w = q % W;
    const int *s = L->bstr[j];
    return k->buf[L->in_val[j]][(size_t)b * x->per_row + (size_t)c * s[0] + (size_t)h * s[1] + (size_t)w * s[2]];
}

/* Input j of op L at output position q of row b, its channels contiguous,
 * when it depends on the image; NULL for a label-only value (read it by
 * at_value, which broadcasts). */
static inline const float *at_vector(const block *k, const layer *L, int j, int b, int q) {
    const pval *x = &k->p->vals[L->in_val[j]];
    return x->spatial ? k->buf[L->in_val[j]] + at_pos(x, b, q / x->W, q % x->W) : NULL;
}

static void compute(const block *k, int i, const int *qs, int n) {
    const pc_plan *p = k->p;
    const layer *L = gm_net_op(p->net, i);
    const pop *o = &p->ops[i];
    const pval *y = &p->vals[L->out_val[0]];
    float *Y = k->buf[L->out_val[0]];
    int Cy = y->C;
    size_t yrow = (size_t)y->H * y->W;
    for (int e = 0; e < n; e++) {
        int q = qs ? qs[e] : e;
        for (int b = 0; b < k->nb; b++) {
            float *out = Y + at_pos(y, b, q / y->W, q % y->W);
            switch (L->kind) {
            case OP_CONV2D: {
                const pval *x = &p->vals[L->in_val[0]];
                const float *X = k->buf[L->in_val[0]];
                int h = q / y->W, w = q % y->W, K = o->ntaps * o->cin_g;
                for (int g = 0; g < L->groups; g++) {
                    float *gt = k->gather, *acc = k->acc;
                    for (int t = 0; t < o->ntaps; t++) {
                        int hh = h + o->dy[t], ww = w + o->dx[t];
                        if (hh >= 0 && hh < x->H && ww >= 0 && ww < x->W)
                            memcpy(gt + t * o->cin_g, X + at_pos(x, b, hh, ww) + g * o->cin_g,
                                   (size_t)o->cin_g * sizeof(float));
                        else memset(gt + t * o->cin_g, 0, (size_t)o->cin_g * sizeof(float));
                    }
                    const float *bias = L->bias + g * o->cout_g,
                                *wt = o->wt + (size_t)g * (K ? K : o->cin_g) * o->cout_g;
                    int co_n = o->cout_g;
                    memcpy(acc, bias, (size_t)co_n * sizeof(float));
                    gm_row_madd(gt, K, wt, co_n, co_n, acc); /* the taps in sequence */
                    memcpy(out + g * co_n, acc, (size_t)co_n * sizeof(float));
                }
                if (L->n_in > 1) { /* a fused add */
                    const float *a = at_vector(k, L, 1, b, q);
                    if (a) {
#pragma omp simd
                        for (int c = 0; c < Cy; c++) out[c] += a[c];
                    } else {
                        for (int c = 0; c < Cy; c++) out[c] += at_value(k, L, 1, b, c, q);
                    }
                }
                if (L->act != OP_COUNT) op_activate(L->act, L->a0, L->a1, out, out, (size_t)Cy);
                break;
            }
            case OP_ADD:
            case OP_MUL: {
                const float *a = at_vector(k, L, 0, b, q), *v = at_vector(k, L, 1, b, q);
                if (a && v && L->kind == OP_ADD) {
#pragma omp simd
                    for (int c = 0; c < Cy; c++) out[c] = a[c] + v[c];
                } else if (a && v) {
#pragma omp simd
                    for (int c = 0; c < Cy; c++) out[c] = a[c] * v[c];
                } else {
                    for (int c = 0; c < Cy; c++) {
                        float x0 = at_value(k, L, 0, b, c, q), x1 = at_value(k, L, 1, b, c, q);
                        out[c] = L->kind == OP_ADD ? x0 + x1 : x0 * x1;
                    }
                }
                break;
            }
            case OP_CONCAT: {
                int c0 = 0;
                for (int j = 0; j < L->n_in; j++) {
                    const pval *x = &p->vals[L->in_val[j]];
                    int Cx = L->ins[j].dim[0];
                    for (int c = 0; c < Cx; c++)
                        out[c0 + c] = x->spatial ? at_value(k, L, j, b, c, q)
                                                 : k->buf[L->in_val[j]][(size_t)b * x->per_row + (size_t)c * yrow + q];
                    c0 += Cx;
                }
                break;
            }
            case OP_PAD: {
                const pval *x = &p->vals[L->in_val[0]];
                int hh = q / y->W - L->pads[2], ww = q % y->W - L->pads[0];
                bool in = hh >= 0 && hh < x->H && ww >= 0 && ww < x->W;
                for (int c = 0; c < Cy; c++) out[c] = in ? at_value(k, L, 0, b, c, hh * x->W + ww) : L->value;
                break;
            }
            case OP_BATCH_NORM:
            case OP_PRELU: {
                const pval *x = &p->vals[L->in_val[0]];
                const float *in = k->buf[L->in_val[0]] + at_pos(x, b, q / x->W, q % x->W);
                for (int c = 0; c < Cy; c++) {
                    if (L->kind == OP_BATCH_NORM) out[c] = in[c] * L->scale[c] + L->shift[c];
                    else out[c] = in[c] > 0 ? in[c] : in[c] * L->scale[c];
                }
                break;
            }
            case OP_GATE: { /* tanh(first half) * sigmoid(second half) of the channels */
                const pval *x = &p->vals[L->in_val[0]];
                const float *in = k->buf[L->in_val[0]] + at_pos(x, b, q / x->W, q % x->W);
#pragma omp simd
                for (int c = 0; c < Cy; c++) out[c] = gm_gatef(in[c], in[Cy + c]);
                break;
            }
            default: { /* an activation */
                const pval *x = &p->vals[L->in_val[0]];
                const float *in = k->buf[L->in_val[0]] + at_pos(x, b, q / x->W, q % x->W);
                op_activate(L->kind, L->a0, L->a1, in, out, (size_t)Cy);
            }
            }
        }
    }
}

/* The ordinary kernels for an op on label-only values, all rows at once. */
static void compute_const(const block *k, int i) {
    const layer *L = gm_net_op(k->p->net, i);
    const float *x[OP_MAX_IO];
    float *y[OP_MAX_IO];
    for (int j = 0; j < L->n_in; j++) x[j] = k->buf[L->in_val[j]];
    for (int j = 0; j < L->n_out; j++) y[j] = k->buf[L->out_val[j]];
    if (L->kind == OP_LINEAR) op_linear(L, k->nb, x[0], y[0]);
    else if (L->kind == OP_ADD || L->kind == OP_MUL || L->kind == OP_CONCAT || L->kind == OP_SPLIT ||
             L->kind == OP_EXPAND || L->kind == OP_EMBEDDING)
        op_graph(L, k->nb, x, y);
    else if (L->kind == OP_GATE) op_gate(L, k->nb, x[0], y[0]);
    else op_elementwise(L, k->nb, x[0], y[0]);
}

static int run_block(const pc_call *c, int r0, int r1) {
    const pc_plan *p = c->p;
    int nb = r1 - r0, D = p->P * p->C;
    block k = {p, nb, calloc((size_t)p->n_vals, sizeof(float *)), malloc(((size_t)p->max_k + 1) * sizeof(float)),
               malloc(((size_t)p->max_cout + 1) * sizeof(float))};
    /* reused, not calloc'ed: fresh pages cost a fault each, a tenth of a
     * small batch's time; zeroed for the borders that pads read */
    size_t arena_n = (size_t)nb * p->row_floats;
    float *arena = gm_scratch(5, arena_n), *labf = calloc((size_t)nb, sizeof(float));
    int rc = -1;
    if (!k.buf || !k.gather || !k.acc || !arena || !labf) goto done;
    memset(arena, 0, arena_n * sizeof *arena);
    float *px = c->pixels + (size_t)r0 * D;
    memset(px, 0, (size_t)nb * D * sizeof *px);
    int kept = c->given ? p->P : 0; /* whole pixels every row of the block keeps */
    for (int r = 0; r < nb; r++) {
        if (p->label_val >= 0) labf[r] = (float)c->labels[r0 + r];
        if (c->logp) c->logp[r0 + r] = 0.0;
        if (!c->given) continue;
        int g = c->rows[r0 + r].given;
        memcpy(px + (size_t)r * D, c->given + (size_t)(r0 + r) * D, (size_t)g * sizeof *px);
        c->rest[r0 + r] = 0.0;
        if (g / p->C < kept) kept = g / p->C;
    }
    for (int v = 0; v < p->n_vals; v++) {
        const pval *x = &p->vals[v];
        int store = x->spatial ? x->store : v;
        k.buf[v] = store == 0 ? px : v == p->label_val ? labf : arena + p->vals[store].at * nb;
    }
    for (int i = 0; i < p->n_ops; i++)
        if (!p->ops[i].spatial) compute_const(&k, i);
    const pval *out = &p->vals[gm_net_out_value(p->net)];
    const float *Y = k.buf[gm_net_out_value(p->net)];
    /* the kept pixels' positions, op after op: every input of op i at a
     * position of the first `kept` steps is then computed already */
    for (int i = 0; i < p->n_ops; i++) {
        if (!p->ops[i].spatial || gm_net_op(p->net, i)->kind == OP_SPLIT) continue;
        for (int t = 0; t < kept; t++) {
            size_t e = (size_t)t * p->n_ops + i;
            if (p->count[e]) compute(&k, i, p->pos + p->start[e], p->count[e]);
        }
    }
    for (int t = 0; t < p->P; t++)
        for (int ch = 0; ch < p->C; ch++) {
            for (int i = 0; i < p->n_ops && t >= kept; i++) {
                const layer *L = gm_net_op(p->net, i);
                if (!p->ops[i].spatial || L->kind == OP_SPLIT) continue;
                if (c->cached) {
                    size_t e = (size_t)t * p->n_ops + i;
                    if (p->count[e]) compute(&k, i, p->pos + p->start[e], p->count[e]);
                } else {
                    compute(&k, i, NULL, L->out.dim[1] * L->out.dim[2]);
                }
            }
            for (int r = 0; r < nb; r++) {
                gm_row *row = &c->rows[r0 + r];
                double logit = Y[at_pos(out, r, t / p->W, t % p->W) + ch], e = exp(-fabs(logit));
                double pr = row->temperature == 1.0f ? (logit >= 0 ? 1.0 : e) / (1.0 + e)
                                                     : 1.0 / (1.0 + exp(-logit / row->temperature));
                size_t v = (size_t)t * p->C + ch;
                bool on = gm_rng_uniform(&row->rng) < pr; /* drawn for a kept value too: the stream stays sample's */
                bool keep = c->given && v < (size_t)row->given;
                if (keep) on = px[(size_t)r * D + v] != 0.0f;
                px[(size_t)r * D + v] = on ? 1.0f : 0.0f;
                double term = -gm_softplus_e(on ? -logit : logit, e);
                if (c->logp) c->logp[r0 + r] += term;
                if (c->rest && !keep) c->rest[r0 + r] += term;
            }
        }
    rc = 0;
done:
    free(k.buf);
    free(k.gather);
    free(k.acc);
    free(labf);
    return rc;
}

static int sample_rows(void *ctx, int r0, int r1) {
    const pc_call *c = ctx;
    size_t per = BLOCK_FLOATS / c->p->row_floats;
    int nb = per < 1 ? 1 : per > (size_t)(r1 - r0) ? r1 - r0 : (int)per;
    for (int b0 = r0; b0 < r1; b0 += nb)
        if (run_block(c, b0, r1 - b0 < nb ? r1 : b0 + nb)) return -1;
    return 0;
}

int pc_sample(const pc_plan *p, int B, gm_row *rows, const int *labels, float *pixels, double *logp, bool cached) {
    pc_call c = {p, rows, labels, pixels, logp, cached, NULL, NULL};
    return gm_parallel_rows(B, 1, sample_rows, &c);
}

int pc_complete(const pc_plan *p, int B, gm_row *rows, const int *labels, const float *given, float *pixels,
                double *logp, double *rest) {
    pc_call c = {p, rows, labels, pixels, logp, true, given, rest};
    return gm_parallel_rows(B, 1, sample_rows, &c);
}
