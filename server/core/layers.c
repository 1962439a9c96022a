/*
 * layers.c - builds and runs layer graphs: the layer lists of model files,
 * each op optionally naming its inputs and its output.
 *
 * A net is a list of ops run in order over named values: the network's
 * inputs, then each op's output(s). An op reads the values named in its
 * "inputs" (by default the previous op's output, the first input for the
 * first op) and its output is named by "name" (split: "names"). A plain
 * layer list is the graph in which no op names anything, so there is one
 * mechanism for both.
 *
 * Build, in two passes. The first resolves every name to a value and
 * counts each value's readers (the network's output counts as one). The
 * second looks up and copies each tensor (refusing NaN and infinities),
 * infers every op's output shape from its inputs and checks each weight
 * against it and every size against the per-sample bounds of layers.h
 * (each product overflow-checked: a file chooses the factors), and folds a
 * batch_norm whose input is a linear or convolution's output read by
 * nothing else into that layer (w' = w * s, b' = (b - mean) * s + beta with
 * s = gamma / sqrt(var + eps)), so that eval-mode BN costs nothing at run
 * time. An activation in the same position is fused into the layer too:
 * applied in the pass that adds the bias (linear, conv2d) or right after
 * col2im builds a sample (conv_transpose2d), while the values are still in
 * cache. After the gate fusion (fuse_gates), an add whose input is a
 * conv2d's output read by nothing else (a residual or skip connection) is
 * fused into that conv, which starts from the add's other input plus its
 * bias (fuse_adds). dropout is the identity at inference: its output is its input
 * value, so it costs nothing and does not stand between a layer and the
 * activation after it.
 *
 * Forward: a whole batch goes through one op at a time. Each value lives
 * in one of a few activation buffers from the op that writes it to the last
 * op that reads it; the buffers are assigned once at build, so a chain
 * ping-pongs between two as a plain list always did, and the last op writes
 * the caller's output directly. A conv_transpose2d whose only reader is
 * another leaves its output channels-last, which is what the next one's
 * sgemm reads (ops_dense.c). All scratch is the calling thread's
 * (scratch.h), reused from call to call.
 */
#include "gm/layers.h"
#include "ops.h"
#include "scratch.h"

#include <assert.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 256
#define MAX_KERNEL_PARAM 4096 /* kernel size, stride, padding */
#define COL_SCRATCH_FLOATS (1 << 19)

static const char *const OP_NAMES[OP_COUNT] = {
    "linear",     "conv2d",     "conv_transpose2d", "batch_norm",    "relu",     "sigmoid",       "tanh",
    "leaky_relu", "reshape",    "flatten",          "add",           "mul",      "concat",        "split",
    "expand",     "embedding",  "dropout",          "pad",           "upsample", "elu",           "gelu",
    "silu",       "softplus",   "hardtanh",         "prelu",         "softmax",  "instance_norm", "group_norm",
    "layer_norm", "max_pool2d", "avg_pool2d",       "pixel_shuffle",
};

typedef struct {
    gm_shape shape;
    const char *name; /* NULL for a value only the default chaining reaches */
    int producer;     /* index in net->layers; -1 for a network input */
    int readers;      /* ops reading it, plus one for the network's output */
    int slot;         /* forward: its activation buffer; -1 for inputs and the output */
} value;

typedef struct {
    const char *name; /* in the net's JSON, or one of its input names */
    int val;
} named_value;

struct gm_net {
    int n_inputs; /* values 0 .. n_inputs-1 */
    char names[GM_NET_MAX_INPUTS][GM_NET_NAME_LEN];
    gm_shape out;
    int out_val;
    int n;
    layer *layers;
    int n_vals;
    value *vals;
    int n_named;
    named_value *named;
    int n_slots;             /* activation buffers of B * max_size values */
    int max_size;            /* largest per-sample value */
    int max_col;             /* largest per-sample im2col / col2im scratch */
    int max_aux;             /* largest per-sample channels-last scratch */
    long long macs, weights; /* per-sample multiply-adds and weight values, summed over layers */
};

int gm_shape_size(gm_shape s) {
    int n = 1;
    for (int i = 0; i < s.rank; i++) n *= s.dim[i];
    return n;
}

/* a * b, or -1 when either is negative or the product overflows or exceeds
 * limit: every size a file can influence is multiplied through this, so that
 * no product wraps to a plausible value. */
static long long mul_within(long long a, long long b, long long limit) {
    long long r;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r) || r > limit) return -1;
    return r;
}
gm_shape gm_shape0(void) { return (gm_shape){0, {0, 0, 0}}; }
gm_shape gm_shape1(int n) { return (gm_shape){1, {n, 0, 0}}; }
gm_shape gm_shape3(int c, int h, int w) { return (gm_shape){3, {c, h, w}}; }

static void fmt_shape(char *buf, size_t n, gm_shape s) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < s.rank && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%d", i ? ", " : "", s.dim[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

static void fmt_tshape(char *buf, size_t n, const gm_tensor *t) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

/* Context for messages: "<file>: gm.decoder layer 3 (linear)". */
typedef struct {
    const gm_st *st;
    const char *what;
    int index;
    const char *op;
} where;

#define WHERE_FMT "%s: %s layer %d (%s): "
#define WHERE_ARGS(w) gm_st_label((w)->st), (w)->what, (w)->index, (w)->op

/* Looks up the float tensor named by field `key` of op object `o`. */
static int get_tensor(const where *w, json_t *o, const char *key, int required, const gm_tensor **out,
                      char err[GM_ERR_LEN]) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v) {
        if (required) return gm_errorf(err, WHERE_FMT "field \"%s\" (a tensor name) is missing", WHERE_ARGS(w), key);
        return 0;
    }
    if (!json_is_string(v)) return gm_errorf(err, WHERE_FMT "field \"%s\" must be a tensor name", WHERE_ARGS(w), key);
    const gm_tensor *t = gm_st_tensor(w->st, json_string_value(v));
    if (!t)
        return gm_errorf(err, WHERE_FMT "tensor '%s' (field \"%s\") is not in the file", WHERE_ARGS(w),
                         json_string_value(v), key);
    if (!t->f32)
        return gm_errorf(err, WHERE_FMT "tensor '%s' has dtype %s; a float dtype is needed", WHERE_ARGS(w), t->name,
                         gm_dtype_name(t->dtype));
    int64_t bad = gm_tensor_nonfinite(t);
    if (bad >= 0)
        return gm_errorf(err, WHERE_FMT "tensor '%s' holds %g at flat index %lld; weights must be finite",
                         WHERE_ARGS(w), t->name, (double)t->f32[bad], (long long)bad);
    *out = t;
    return 0;
}

/* A tensor that must be a vector of n values (biases, BN statistics). */
static int check_vector(const where *w, const gm_tensor *t, int n, gm_shape in, char err[GM_ERR_LEN]) {
    if (!t) return 0;
    if (t->ndim != 1 || t->shape[0] != n) {
        char ts[64], is[64];
        fmt_tshape(ts, sizeof ts, t);
        fmt_shape(is, sizeof is, in);
        return gm_errorf(err, WHERE_FMT "tensor '%s' has shape %s but [%d] is needed (layer input %s)", WHERE_ARGS(w),
                         t->name, ts, n, is);
    }
    return 0;
}

static int get_int(const where *w, json_t *o, const char *key, int dflt, int lo, int *out, char err[GM_ERR_LEN]) {
    json_t *v = json_object_get(o, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > MAX_KERNEL_PARAM)
        return gm_errorf(err, WHERE_FMT "field \"%s\" must be an integer in %d..%d", WHERE_ARGS(w), key, lo,
                         MAX_KERNEL_PARAM);
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_num(const where *w, json_t *o, const char *key, double dflt, double *out, char err[GM_ERR_LEN]) {
    json_t *v = json_object_get(o, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_number(v) || !(fabs(json_number_value(v)) <= FLT_MAX)) /* also refuses NaN */
        return gm_errorf(err, WHERE_FMT "field \"%s\" must be a finite number within float range", WHERE_ARGS(w), key);
    *out = json_number_value(v);
    return 0;
}

static float *copy_floats(const float *src, size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    if (p && src) memcpy(p, src, n * sizeof *p);
    return p;
}

static int weight_mismatch(const where *w, const gm_tensor *t, const char *want, gm_shape in, char err[GM_ERR_LEN]) {
    char ts[64], is[64];
    fmt_tshape(ts, sizeof ts, t);
    fmt_shape(is, sizeof is, in);
    return gm_errorf(err, WHERE_FMT "weight '%s' has shape %s but the layer input has shape %s (%s)", WHERE_ARGS(w),
                     t->name, ts, is, want);
}

static int build_linear(const where *w, json_t *o, layer *L, char err[GM_ERR_LEN]) {
    const gm_tensor *wt, *bt;
    if (get_tensor(w, o, "weight", 1, &wt, err) || get_tensor(w, o, "bias", 0, &bt, err)) return -1;
    int in = gm_shape_size(L->in);
    if (wt->ndim != 2 || wt->shape[1] != in)
        return weight_mismatch(w, wt, "a linear weight is [out, in] with in = the input's size", L->in, err);
    if (wt->shape[0] < 1 || wt->shape[0] > GM_NET_MAX_VALUES)
        return gm_errorf(err, WHERE_FMT "weight '%s' has %lld outputs (1..%d values per sample)", WHERE_ARGS(w),
                         wt->name, (long long)wt->shape[0], GM_NET_MAX_VALUES);
    int out = (int)wt->shape[0];
    if (check_vector(w, bt, out, L->in, err)) return -1;
    L->out = gm_shape1(out);
    L->weight = malloc((size_t)wt->numel * sizeof(float));
    if (L->weight) /* (I, O): row i is what input i adds to every output */
        for (int r = 0; r < out; r++)
            for (int i = 0; i < in; i++) L->weight[(size_t)i * out + r] = wt->f32[(size_t)r * in + i];
    L->bias = copy_floats(bt ? bt->f32 : NULL, (size_t)out);
    return 0;
}

/* An int or [h, w] field ("stride", "padding", "dilation", ...), each in
 * lo..MAX_KERNEL_PARAM. */
static int get_pair(const where *w, json_t *o, const char *key, int dflt, int lo, int out[2], char err[GM_ERR_LEN]) {
    json_t *v = json_object_get(o, key);
    out[0] = out[1] = dflt;
    if (!v) return 0;
    json_t *e[2] = {v, v};
    if (json_is_array(v) && json_array_size(v) == 2) e[0] = json_array_get(v, 0), e[1] = json_array_get(v, 1);
    for (int i = 0; i < 2; i++) {
        if (!json_is_integer(e[i]) || json_integer_value(e[i]) < lo || json_integer_value(e[i]) > MAX_KERNEL_PARAM)
            return gm_errorf(err, WHERE_FMT "field \"%s\" must be an integer in %d..%d or a pair [h, w] of them",
                             WHERE_ARGS(w), key, lo, MAX_KERNEL_PARAM);
        out[i] = (int)json_integer_value(e[i]);
    }
    return 0;
}

static int build_conv(const where *w, json_t *o, layer *L, int transposed, char err[GM_ERR_LEN]) {
    const gm_tensor *wt, *bt;
    if (get_tensor(w, o, "weight", 1, &wt, err) || get_tensor(w, o, "bias", 0, &bt, err)) return -1;
    if (L->in.rank != 3) {
        char is[64];
        fmt_shape(is, sizeof is, L->in);
        return gm_errorf(err, WHERE_FMT "input has shape %s but a convolution needs [C, H, W] (add a reshape)",
                         WHERE_ARGS(w), is);
    }
    int C = L->in.dim[0], H = L->in.dim[1], W = L->in.dim[2], st[2], pad[2] = {0, 0}, dil[2], opad[2];
    if (get_int(w, o, "groups", 1, 1, &L->groups, err)) return -1;
    int g = L->groups;
    /* conv2d weight: [out, in / groups, kh, kw]; conv_transpose2d: [in, out / groups, kh, kw] */
    int in_axis = transposed ? 0 : 1;
    long long want_in = transposed ? C : C / g;
    if (C % g)
        return gm_errorf(err, WHERE_FMT "groups %d does not divide the input's %d channels", WHERE_ARGS(w), g, C);
    if (wt->ndim != 4 || wt->shape[in_axis] != want_in || wt->shape[2] < 1 || wt->shape[3] < 1 ||
        wt->shape[2] > MAX_KERNEL_PARAM || wt->shape[3] > MAX_KERNEL_PARAM || wt->shape[1 - in_axis] < 1 ||
        wt->shape[1 - in_axis] > GM_NET_MAX_VALUES / (transposed ? g : 1))
        return weight_mismatch(w, wt,
                               transposed ? "a conv_transpose2d weight is [in, out / groups, kh, kw] with in = C"
                                          : "a conv2d weight is [out, in / groups, kh, kw] with in = C / groups",
                               L->in, err);
    int cout = (int)wt->shape[1 - in_axis] * (transposed ? g : 1);
    if (cout % g)
        return gm_errorf(err, WHERE_FMT "groups %d does not divide the %d output channels of weight '%s'",
                         WHERE_ARGS(w), g, cout, wt->name);
    L->kh = (int)wt->shape[2];
    L->kw = (int)wt->shape[3];
    json_t *pv = json_object_get(o, "padding");
    bool same = !transposed && json_is_string(pv) && strcmp(json_string_value(pv), "same") == 0;
    bool valid = !transposed && json_is_string(pv) && strcmp(json_string_value(pv), "valid") == 0;
    if (get_pair(w, o, "stride", 1, 1, st, err) || get_pair(w, o, "dilation", 1, 1, dil, err) ||
        (!same && !valid && get_pair(w, o, "padding", 0, 0, pad, err)) ||
        get_pair(w, o, "output_padding", 0, 0, opad, err))
        return -1;
    L->sh = st[0], L->sw = st[1], L->dh = dil[0], L->dw = dil[1];
    /* the kernel's extent, dilation * (k - 1) + 1: at most 4096 * 4096 */
    long long eh = (long long)L->dh * (L->kh - 1) + 1, ew = (long long)L->dw * (L->kw - 1) + 1;
    if (same) {
        /* PyTorch: the total padding dilation * (k - 1), any odd one on the bottom / right */
        if (L->sh != 1 || L->sw != 1)
            return gm_errorf(err, WHERE_FMT "padding \"same\" needs stride 1 (as in PyTorch), not %dx%d", WHERE_ARGS(w),
                             L->sh, L->sw);
        pad[0] = (int)((eh - 1) / 2), pad[1] = (int)((ew - 1) / 2);
    }
    L->ph = pad[0], L->pw = pad[1];
    long long ph_total = same ? eh - 1 : 2LL * L->ph, pw_total = same ? ew - 1 : 2LL * L->pw;
    long long ho, wo;
    if (transposed) {
        if ((opad[0] >= L->sh && opad[0] >= L->dh) || (opad[1] >= L->sw && opad[1] >= L->dw))
            return gm_errorf(err, WHERE_FMT "output_padding %d must be smaller than stride %d or dilation %d",
                             WHERE_ARGS(w), opad[0] >= L->sh && opad[0] >= L->dh ? opad[0] : opad[1],
                             opad[0] >= L->sh && opad[0] >= L->dh ? L->sh : L->sw,
                             opad[0] >= L->sh && opad[0] >= L->dh ? L->dh : L->dw);
        ho = (long long)(H - 1) * L->sh - ph_total + eh + opad[0];
        wo = (long long)(W - 1) * L->sw - pw_total + ew + opad[1];
    } else {
        if (opad[0] || opad[1])
            return gm_errorf(err, WHERE_FMT "output_padding is only for conv_transpose2d", WHERE_ARGS(w));
        ho = (H + ph_total - eh) / L->sh + 1;
        wo = (W + pw_total - ew) / L->sw + 1;
        if (H + ph_total < eh || W + pw_total < ew) ho = wo = 0;
    }
    /* each factor is bounded (sides by the input and MAX_KERNEL_PARAM), but
     * their products are not: checked */
    if (ho < 1 || wo < 1 || mul_within(mul_within(ho, wo, GM_NET_MAX_VALUES), cout, GM_NET_MAX_VALUES) < 0) {
        char is[64];
        fmt_shape(is, sizeof is, L->in);
        return gm_errorf(err,
                         WHERE_FMT "kernel %dx%d, stride %dx%d, padding %dx%d, dilation %dx%d on input %s gives "
                                   "an output of %lldx%lld with %d channels (at most %d values per sample)",
                         WHERE_ARGS(w), L->kh, L->kw, L->sh, L->sw, L->ph, L->pw, L->dh, L->dw, is, ho, wo, cout,
                         GM_NET_MAX_VALUES);
    }
    /* im2col holds one row of C*kh*kw values per output pixel; col2im one
     * row of Cout*kh*kw per input pixel */
    long long pixels = transposed ? (long long)H * W : ho * wo, taps = (long long)L->kh * L->kw;
    long long col = mul_within(mul_within(pixels, taps, GM_NET_MAX_COL), transposed ? cout : C, GM_NET_MAX_COL);
    if (col < 0)
        return gm_errorf(err,
                         WHERE_FMT "kernel %dx%d over %d channels and %lld pixels needs %.0f %s values per "
                                   "sample, over the limit of %d (use a smaller kernel, input or padding)",
                         WHERE_ARGS(w), L->kh, L->kw, transposed ? cout : C, pixels,
                         (double)pixels * (double)taps * (transposed ? cout : C), transposed ? "col2im" : "im2col",
                         GM_NET_MAX_COL);
    if (check_vector(w, bt, cout, L->in, err)) return -1;
    L->out = gm_shape3(cout, (int)ho, (int)wo);
    L->weight = copy_floats(wt->f32, (size_t)wt->numel);
    L->bias = copy_floats(bt ? bt->f32 : NULL, (size_t)cout);
    return 0;
}

/* Builds batch_norm as per-channel scale and shift, then folds it into the
 * previous layer when that is a linear or convolution. */
static int build_batch_norm(const where *w, json_t *o, layer *L, layer *prev, int *folded, char err[GM_ERR_LEN]) {
    const gm_tensor *g, *b, *m, *v;
    double eps;
    if (get_tensor(w, o, "weight", 0, &g, err) || get_tensor(w, o, "bias", 0, &b, err) ||
        get_tensor(w, o, "mean", 1, &m, err) || get_tensor(w, o, "var", 1, &v, err) ||
        get_num(w, o, "eps", 1e-5, &eps, err))
        return -1;
    if (L->in.rank == 0)
        return gm_errorf(err, WHERE_FMT "input is a single value; batch_norm needs [C], [C, L] or [C, H, W]",
                         WHERE_ARGS(w));
    int ch = L->in.dim[0];
    if (check_vector(w, g, ch, L->in, err) || check_vector(w, b, ch, L->in, err) ||
        check_vector(w, m, ch, L->in, err) || check_vector(w, v, ch, L->in, err))
        return -1;
    L->out = L->in;
    L->scale = malloc((size_t)ch * sizeof(float));
    L->shift = malloc((size_t)ch * sizeof(float));
    if (!L->scale || !L->shift) return gm_errorf(err, "out of memory");
    for (int c = 0; c < ch; c++) {
        double var = (double)v->f32[c] + eps;
        if (!(var > 0))
            return gm_errorf(err, WHERE_FMT "var + eps must be positive (channel %d of '%s')", WHERE_ARGS(w), c,
                             v->name);
        double s = (g ? g->f32[c] : 1.0) / sqrt(var), sh = (b ? b->f32[c] : 0.0) - m->f32[c] * s;
        if (!(fabs(s) <= FLT_MAX && fabs(sh) <= FLT_MAX)) /* a tiny var: no float holds the scale */
            return gm_errorf(err, WHERE_FMT "channel %d of '%s' gives scale %g and shift %g, beyond float range",
                             WHERE_ARGS(w), c, v->name, s, sh);
        L->scale[c] = (float)s;
        L->shift[c] = (float)sh;
    }
    *folded = 0;
    if (!prev || !op_has_weights(prev->kind) || prev->act != OP_COUNT) return 0; /* BN after an activation stays */
    /* y = s * (W x + bias) + shift = (s W) x + (s bias + shift) */
    int n_out = prev->out.dim[0];
    if (prev->kind == OP_CONV_T2D) { /* (Cin, Cout / groups, kh, kw): input ci feeds its group's outputs */
        int cin = prev->in.dim[0], kk = prev->kh * prev->kw, og = n_out / prev->groups, ig = cin / prev->groups;
        for (int ci = 0; ci < cin; ci++)
            for (int j = 0; j < og; j++)
                for (int k = 0; k < kk; k++) prev->weight[((size_t)ci * og + j) * kk + k] *= L->scale[ci / ig * og + j];
    } else if (prev->kind == OP_LINEAR) {
        size_t n_in = (size_t)gm_shape_size(prev->in);
        for (size_t k = 0; k < n_in; k++)
            for (int co = 0; co < n_out; co++) prev->weight[k * n_out + co] *= L->scale[co];
    } else {
        size_t row = (size_t)prev->in.dim[0] / prev->groups * prev->kh * prev->kw;
        for (int co = 0; co < n_out; co++)
            for (size_t k = 0; k < row; k++) prev->weight[co * row + k] *= L->scale[co];
    }
    for (int co = 0; co < n_out; co++) prev->bias[co] = prev->bias[co] * L->scale[co] + L->shift[co];
    size_t n_weights = prev->kind == OP_LINEAR ? (size_t)gm_shape_size(prev->in) * n_out
                                               : (size_t)prev->in.dim[0] * n_out / prev->groups * prev->kh * prev->kw;
    for (size_t k = 0; k < n_weights; k++)
        if (!isfinite(prev->weight[k]))
            return gm_errorf(err, WHERE_FMT "folded into the layer before, it makes weight %zu %g (beyond float range)",
                             WHERE_ARGS(w), k, prev->weight[k]);
    for (int co = 0; co < n_out; co++)
        if (!isfinite(prev->bias[co]))
            return gm_errorf(err, WHERE_FMT "folded into the layer before, it makes bias %d %g (beyond float range)",
                             WHERE_ARGS(w), co, prev->bias[co]);
    free(L->scale);
    free(L->shift);
    L->scale = L->shift = NULL;
    *folded = 1;
    return 0;
}

static int build_reshape(const where *w, json_t *o, layer *L, char err[GM_ERR_LEN]) {
    json_t *s = json_object_get(o, "shape");
    size_t n = json_array_size(s);
    int d[3];
    if (!json_is_array(s) || n < 1 || n > 3)
        return gm_errorf(err, WHERE_FMT "\"shape\" must be a per-sample shape [n], [a, b] or [C, H, W]", WHERE_ARGS(w));
    long long total = 1;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(s, i);
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > GM_NET_MAX_VALUES)
            return gm_errorf(err, WHERE_FMT "\"shape\" entries must be integers in 1..%d", WHERE_ARGS(w),
                             GM_NET_MAX_VALUES);
        d[i] = (int)json_integer_value(v);
        /* checked: three dims of up to 2^22 could wrap to the input's size */
        if ((total = mul_within(total, d[i], GM_NET_MAX_VALUES)) < 0) {
            char is[64], *os = json_dumps(s, JSON_COMPACT);
            fmt_shape(is, sizeof is, L->in);
            gm_errorf(err, WHERE_FMT "cannot reshape input %s (%d values) to %s (more than %d values per sample)",
                      WHERE_ARGS(w), is, gm_shape_size(L->in), os ? os : "that shape", GM_NET_MAX_VALUES);
            free(os);
            return -1;
        }
    }
    L->out = (gm_shape){(int)n, {d[0], n > 1 ? d[1] : 0, n > 2 ? d[2] : 0}};
    if (total != gm_shape_size(L->in)) {
        char is[64], os[64];
        fmt_shape(is, sizeof is, L->in);
        fmt_shape(os, sizeof os, L->out);
        return gm_errorf(err, WHERE_FMT "cannot reshape input %s (%d values) to %s (%lld values)", WHERE_ARGS(w), is,
                         gm_shape_size(L->in), os, total);
    }
    return 0;
}

/* conv_transpose2d weights from the file's (Cin, Cout/g, kh, kw) to (Cin,
 * kh, kw, Cout/g), the order of col2im's rows within a group. Done once the
 * graph is built: a batch_norm folded into the layer scales them in the
 * file's order. */
static int reorder_conv_t(layer *L) {
    int ci = L->in.dim[0], co = L->out.dim[0] / L->groups, kk = L->kh * L->kw;
    float *w = malloc((size_t)ci * co * kk * sizeof *w);
    if (!w) return -1;
    for (int i = 0; i < ci; i++)
        for (int o = 0; o < co; o++)
            for (int k = 0; k < kk; k++) w[((size_t)i * kk + k) * co + o] = L->weight[((size_t)i * co + o) * kk + k];
    free(L->weight);
    L->weight = w;
    return 0;
}

static void free_layer(layer *L) {
    free(L->taps);
    free(L->wtaps);
    free(L->weight);
    free(L->bias);
    free(L->scale);
    free(L->shift);
}

void gm_net_free(gm_net *net) {
    if (!net) return;
    for (int i = 0; i < net->n; i++) free_layer(&net->layers[i]);
    free(net->layers);
    free(net->vals);
    free(net->named);
    free(net);
}

/* Adds a linear, convolution, embedding or pooling's multiply-adds (a
 * pooling window's taps count as such) and weights to the net's
 * totals, which must stay within GM_NET_MAX_MACS and GM_NET_MAX_WEIGHTS: a
 * layer list may name one big tensor in every layer, so the file's size
 * alone bounds neither. The factors are bounded (<= 2^24 each), their
 * products fit long long. */
static int track_cost(const where *w, gm_net *net, const layer *L, char err[GM_ERR_LEN]) {
    long long cin = L->in.dim[0], cout = L->out.dim[0], kk = (long long)L->kh * L->kw, macs, weights;
    if (L->kind == OP_EMBEDDING) {
        weights = (long long)L->rows * cout;
        macs = cout;
    } else if (L->kind == OP_MAX_POOL2D || L->kind == OP_AVG_POOL2D) { /* a window per output value */
        weights = 0;
        macs = (long long)gm_shape_size(L->out) * kk;
    } else if (L->kind == OP_LINEAR) {
        macs = weights = (long long)gm_shape_size(L->in) * cout;
    } else {
        weights = cin * cout / L->groups * kk;
        macs = weights * (L->kind == OP_CONV2D ? (long long)L->out.dim[1] * L->out.dim[2]
                                               : (long long)L->in.dim[1] * L->in.dim[2]);
    }
    net->macs = net->macs + macs > GM_NET_MAX_MACS ? -1 : net->macs + macs;
    net->weights = net->weights + weights > GM_NET_MAX_WEIGHTS ? -1 : net->weights + weights;
    if (net->macs < 0 || net->weights < 0)
        return gm_errorf(err,
                         WHERE_FMT "the net would exceed %lld multiply-adds or %d weight values per sample "
                                   "(this layer: %lld and %lld)",
                         WHERE_ARGS(w), GM_NET_MAX_MACS, GM_NET_MAX_WEIGHTS, macs, weights);
    return 0;
}

/* Sizes here fit int: build checked each against GM_NET_MAX_VALUES or
 * GM_NET_MAX_COL. */
static void track_scratch(gm_net *net, const layer *L) {
    for (int k = 0; k < L->n_out; k++)
        if (gm_shape_size(L->outs[k]) > net->max_size) net->max_size = gm_shape_size(L->outs[k]);
    int col = 0, aux = 0;
    if (L->kind == OP_CONV2D) {
        int P = L->out.dim[1] * L->out.dim[2];
        col = P * L->in.dim[0] * L->kh * L->kw; /* before zero taps are left out: a bound */
        aux = P * L->out.dim[0];
    } else if (L->kind == OP_CONV_T2D) {
        int Pin = L->in.dim[1] * L->in.dim[2];
        col = Pin * L->out.dim[0] * L->kh * L->kw;
        aux = Pin * L->in.dim[0];
    }
    if (col > net->max_col) net->max_col = col;
    if (aux > net->max_aux) net->max_aux = aux;
}

/* ---- the ops that combine values ---- */

static const char *value_label(const gm_net *net, int v) { return net->vals[v].name ? net->vals[v].name : "(unnamed)"; }

/* The shape s seen as [d0, d1, d2] for broadcasting: trailing 1s, so that
 * a [C] lines up with the channels of a [C, H, W]. */
static void view3(gm_shape s, int d[3]) {
    d[0] = d[1] = d[2] = 1;
    for (int i = 0; i < s.rank; i++) d[i] = s.dim[i];
}

/* Strides that walk a contiguous [d0, d1, d2] block, 0 where d is 1 (a
 * broadcast dimension). */
static void view_strides(const int d[3], int st[3]) {
    st[2] = d[2] == 1 ? 0 : 1;
    st[1] = d[1] == 1 ? 0 : d[2];
    st[0] = d[0] == 1 ? 0 : d[1] * d[2];
}

static int build_broadcast(const where *w, const gm_net *net, layer *L, char err[GM_ERR_LEN]) {
    gm_shape a = L->ins[0], b = L->ins[1];
    int da[3], db[3];
    view3(a, da);
    view3(b, db);
    /* same rank dimension by dimension; a single value with anything; a
     * per-channel [C] with a [C, H, W] */
    bool ok = a.rank == b.rank || gm_shape_size(a) == 1 || gm_shape_size(b) == 1 || (a.rank == 1 && b.rank == 3) ||
              (a.rank == 3 && b.rank == 1);
    for (int i = 0; i < 3 && ok; i++) ok = da[i] == db[i] || da[i] == 1 || db[i] == 1;
    if (!ok) {
        char as[64], bs[64];
        fmt_shape(as, sizeof as, a);
        fmt_shape(bs, sizeof bs, b);
        return gm_errorf(err,
                         WHERE_FMT "inputs '%s' %s and '%s' %s do not broadcast (equal dimensions or 1; a [C] "
                                   "broadcasts over the channels of a [C, H, W])",
                         WHERE_ARGS(w), value_label(net, L->in_val[0]), as, value_label(net, L->in_val[1]), bs);
    }
    for (int i = 0; i < 3; i++) L->bdim[i] = da[i] > db[i] ? da[i] : db[i];
    int rank = a.rank > b.rank ? a.rank : b.rank;
    L->out = (gm_shape){rank, {rank > 0 ? L->bdim[0] : 0, rank > 1 ? L->bdim[1] : 0, rank > 2 ? L->bdim[2] : 0}};
    view_strides(da, L->bstr[0]);
    view_strides(db, L->bstr[1]);
    return 0;
}

static int build_expand(const where *w, json_t *o, layer *L, char err[GM_ERR_LEN]) {
    json_t *s = json_object_get(o, "shape");
    size_t n = json_array_size(s);
    int d[3];
    char is[64];
    fmt_shape(is, sizeof is, L->in);
    view3(L->in, d);
    if (!json_is_array(s) || n < 1 || n > 3 || (int)n < L->in.rank)
        return gm_errorf(err,
                         WHERE_FMT "\"shape\" must be a per-sample shape of 1 to 3 dimensions, at least as many "
                                   "as the input %s",
                         WHERE_ARGS(w), is);
    long long total = 1;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(s, i);
        long long e = json_is_integer(v) ? json_integer_value(v) : 0;
        if (e == -1) e = d[i]; /* -1 keeps the input's size, as in PyTorch */
        if (e < 1 || e > GM_NET_MAX_VALUES || (d[i] != 1 && d[i] != e) ||
            (total = mul_within(total, e, GM_NET_MAX_VALUES)) < 0)
            return gm_errorf(err,
                             WHERE_FMT "cannot expand input %s to \"shape\" entry %zu (each entry an integer, -1 "
                                       "or the input's size where it is not 1, at most %d values per sample)",
                             WHERE_ARGS(w), is, i, GM_NET_MAX_VALUES);
        L->bdim[i] = (int)e;
    }
    for (size_t i = n; i < 3; i++) L->bdim[i] = 1;
    L->out = (gm_shape){(int)n, {L->bdim[0], n > 1 ? L->bdim[1] : 0, n > 2 ? L->bdim[2] : 0}};
    view_strides(d, L->bstr[0]);
    return 0;
}

/* "dim" of concat / split: a per-sample dimension, negative counting from
 * the end as in PyTorch. */
static int get_axis(const where *w, json_t *o, gm_shape s, int *axis, char err[GM_ERR_LEN]) {
    json_t *v = json_object_get(o, "dim");
    long long d = v ? (json_is_integer(v) ? json_integer_value(v) : s.rank) : 0;
    if (d < 0) d += s.rank;
    if (d < 0 || d >= s.rank) {
        char is[64];
        fmt_shape(is, sizeof is, s);
        return gm_errorf(err, WHERE_FMT "\"dim\" must be an integer dimension of the per-sample input %s",
                         WHERE_ARGS(w), is);
    }
    *axis = (int)d;
    return 0;
}

static int build_concat(const where *w, const gm_net *net, json_t *o, layer *L, char err[GM_ERR_LEN]) {
    if (get_axis(w, o, L->in, &L->axis, err)) return -1;
    L->out = L->in;
    long long along = L->in.dim[L->axis];
    for (int k = 1; k < L->n_in; k++) {
        gm_shape s = L->ins[k];
        bool ok = s.rank == L->in.rank;
        for (int i = 0; i < s.rank && ok; i++) ok = i == L->axis || s.dim[i] == L->in.dim[i];
        if (!ok) {
            char as[64], bs[64];
            fmt_shape(as, sizeof as, L->in);
            fmt_shape(bs, sizeof bs, s);
            return gm_errorf(err, WHERE_FMT "input '%s' %s does not match input '%s' %s outside dim %d", WHERE_ARGS(w),
                             value_label(net, L->in_val[k]), bs, value_label(net, L->in_val[0]), as, L->axis);
        }
        along += s.dim[L->axis];
    }
    L->out.dim[L->axis] = (int)(along > GM_NET_MAX_VALUES ? GM_NET_MAX_VALUES + 1LL : along);
    if (mul_within(gm_shape_size(L->in) / L->in.dim[L->axis], along, GM_NET_MAX_VALUES) < 0)
        return gm_errorf(err, WHERE_FMT "the concatenation would hold more than %d values per sample", WHERE_ARGS(w),
                         GM_NET_MAX_VALUES);
    return 0;
}

static int build_split(const where *w, json_t *o, layer *L, char err[GM_ERR_LEN]) {
    if (get_axis(w, o, L->in, &L->axis, err)) return -1;
    json_t *s = json_object_get(o, "sizes");
    char is[64];
    fmt_shape(is, sizeof is, L->in);
    if (!json_is_array(s) || (int)json_array_size(s) != L->n_out)
        return gm_errorf(err, WHERE_FMT "\"sizes\" must be an array with one size per name in \"names\" (%d)",
                         WHERE_ARGS(w), L->n_out);
    long long sum = 0;
    for (int k = 0; k < L->n_out; k++) {
        json_t *v = json_array_get(s, (size_t)k);
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > L->in.dim[L->axis])
            return gm_errorf(err, WHERE_FMT "\"sizes\" entry %d must be an integer in 1..%d (dim %d of input %s)",
                             WHERE_ARGS(w), k, L->in.dim[L->axis], L->axis, is);
        L->outs[k] = L->in;
        L->outs[k].dim[L->axis] = (int)json_integer_value(v);
        sum += json_integer_value(v);
    }
    if (sum != L->in.dim[L->axis])
        return gm_errorf(err, WHERE_FMT "\"sizes\" add up to %lld but dim %d of input %s is %d", WHERE_ARGS(w), sum,
                         L->axis, is, L->in.dim[L->axis]);
    L->out = L->outs[0];
    return 0;
}

static int build_embedding(const where *w, json_t *o, layer *L, char err[GM_ERR_LEN]) {
    const gm_tensor *wt;
    if (get_tensor(w, o, "weight", 1, &wt, err)) return -1;
    if (gm_shape_size(L->in) != 1) {
        char is[64];
        fmt_shape(is, sizeof is, L->in);
        return gm_errorf(err, WHERE_FMT "input has shape %s but an embedding takes one index per sample ([] or [1])",
                         WHERE_ARGS(w), is);
    }
    if (wt->ndim != 2 || wt->shape[0] < 1 || wt->shape[1] < 1 || wt->shape[1] > GM_NET_MAX_VALUES ||
        wt->shape[0] > GM_NET_MAX_WEIGHTS)
        return weight_mismatch(w, wt, "an embedding weight is [num_embeddings, embedding_dim]", L->in, err);
    L->rows = (int)wt->shape[0];
    L->out = gm_shape1((int)wt->shape[1]);
    L->weight = copy_floats(wt->f32, (size_t)wt->numel);
    L->bias = copy_floats(NULL, 1);
    return 0;
}

/* ---- activations and normalizations ---- */

/* One of `names` (n of them) in string field `key`, or dflt when absent. */
static int get_choice(const where *w, json_t *o, const char *key, const char *const *names, int n, int dflt, int *out,
                      char err[GM_ERR_LEN]) {
    json_t *v = json_object_get(o, key);
    *out = dflt;
    if (!v) return 0;
    for (int i = 0; i < n && json_is_string(v); i++)
        if (strcmp(json_string_value(v), names[i]) == 0) return (*out = i), 0;
    char list[128];
    size_t at = 0;
    for (int i = 0; i < n; i++)
        at += (size_t)snprintf(list + at, sizeof list - at, "%s\"%s\"", i ? ", " : "", names[i]);
    return gm_errorf(err, WHERE_FMT "field \"%s\" must be one of %s", WHERE_ARGS(w), key, list);
}

static int build_activation(const where *w, json_t *o, layer *L, char err[GM_ERR_LEN]) {
    double a0 = 0, a1 = 0;
    int rc = 0;
    switch (L->kind) {
    case OP_LEAKY_RELU:
        rc = get_num(w, o, "slope", 0.01, &a0, err);
        break;
    case OP_ELU:
        rc = get_num(w, o, "alpha", 1.0, &a0, err);
        break;
    case OP_GELU: {
        static const char *const approx[] = {"none", "tanh"};
        int k;
        rc = get_choice(w, o, "approximate", approx, 2, 0, &k, err);
        a0 = k;
        break;
    }
    case OP_SOFTPLUS:
        rc = get_num(w, o, "beta", 1.0, &a0, err) || get_num(w, o, "threshold", 20.0, &a1, err);
        if (!rc && !(a0 > 0))
            return gm_errorf(err, WHERE_FMT "field \"beta\" must be positive (found %g)", WHERE_ARGS(w), a0);
        break;
    default: /* hardtanh */
        rc = get_num(w, o, "min", -1.0, &a0, err) || get_num(w, o, "max", 1.0, &a1, err);
        if (!rc && !(a0 <= a1))
            return gm_errorf(err, WHERE_FMT "\"min\" %g must not exceed \"max\" %g", WHERE_ARGS(w), a0, a1);
    }
    L->a0 = (float)a0;
    L->a1 = (float)a1;
    return rc ? -1 : 0;
}

/* A per-channel vector from an optional tensor of n values (or one value
 * broadcast, when `one` allows it), else `dflt` everywhere. */
static float *channel_vector(const where *w, const gm_tensor *t, int n, bool one, float dflt, gm_shape in,
                             char err[GM_ERR_LEN]) {
    if (t && !(one && t->ndim == 1 && t->shape[0] == 1) && check_vector(w, t, n, in, err)) return NULL;
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) {
        gm_errorf(err, "%s: out of memory building %s", gm_st_label(w->st), w->what);
        return NULL;
    }
    for (int i = 0; i < n; i++) v[i] = t ? t->f32[t->numel == 1 ? 0 : i] : dflt;
    return v;
}

static int build_prelu(const where *w, json_t *o, layer *L, char err[GM_ERR_LEN]) {
    const gm_tensor *t;
    if (get_tensor(w, o, "weight", 1, &t, err)) return -1;
    if (L->in.rank == 0)
        return gm_errorf(err, WHERE_FMT "input is a single value; prelu needs channels", WHERE_ARGS(w));
    return (L->scale = channel_vector(w, t, L->in.dim[0], true, 0, L->in, err)) ? 0 : -1;
}

/* instance_norm with running statistics is a batch_norm (what PyTorch's
 * eval does with them), so it folds like one. Otherwise each sample's
 * blocks are normalized by their own statistics: instance_norm one block
 * per channel, group_norm one per group of channels, layer_norm one over
 * the trailing "normalized_shape" dimensions. */
static int build_norm(const where *w, json_t *o, layer *L, layer *prev, int *folded, char err[GM_ERR_LEN]) {
    char is[64];
    fmt_shape(is, sizeof is, L->in);
    if (L->kind == OP_INSTANCE_NORM && L->in.rank < 2)
        return gm_errorf(err, WHERE_FMT "input has shape %s but instance_norm needs [C, L] or [C, H, W]", WHERE_ARGS(w),
                         is);
    if (L->kind == OP_INSTANCE_NORM && (json_object_get(o, "mean") || json_object_get(o, "var"))) {
        L->kind = OP_BATCH_NORM;
        return build_batch_norm(w, o, L, prev, folded, err);
    }
    if (L->in.rank == 0)
        return gm_errorf(err, WHERE_FMT "input is a single value; nothing to normalize", WHERE_ARGS(w));
    const gm_tensor *g, *b;
    if (get_tensor(w, o, "weight", 0, &g, err) || get_tensor(w, o, "bias", 0, &b, err) ||
        get_num(w, o, "eps", 1e-5, &L->eps, err))
        return -1;
    if (!(L->eps > 0)) return gm_errorf(err, WHERE_FMT "field \"eps\" must be positive", WHERE_ARGS(w));
    int C = L->in.dim[0], n = C;
    if (L->kind == OP_INSTANCE_NORM) {
        L->groups = C;
    } else if (L->kind == OP_GROUP_NORM) {
        if (get_int(w, o, "groups", 0, 1, &L->groups, err)) return -1;
        if (L->groups < 1 || C % L->groups)
            return gm_errorf(err, WHERE_FMT "\"groups\" (%d) must divide the %d channels of input %s", WHERE_ARGS(w),
                             L->groups, C, is);
    } else {
        json_t *ns = json_object_get(o, "normalized_shape");
        int k = (int)json_array_size(ns);
        bool ok = json_is_array(ns) && k >= 1 && k <= L->in.rank;
        n = 1;
        for (int i = 0; ok && i < k; i++) {
            json_t *v = json_array_get(ns, (size_t)i);
            ok = json_is_integer(v) && json_integer_value(v) == L->in.dim[L->in.rank - k + i];
            n *= L->in.dim[L->in.rank - k + i];
        }
        if (!ok)
            return gm_errorf(err, WHERE_FMT "\"normalized_shape\" must be the trailing dimensions of input %s",
                             WHERE_ARGS(w), is);
        L->groups = gm_shape_size(L->in) / n;
        for (int i = 0; i < 2; i++) {
            const gm_tensor *t = i ? b : g;
            if (t && t->numel != n) {
                char ts[64];
                fmt_tshape(ts, sizeof ts, t);
                return gm_errorf(err,
                                 WHERE_FMT "tensor '%s' has shape %s but normalized_shape holds %d values (input %s)",
                                 WHERE_ARGS(w), t->name, ts, n, is);
            }
        }
    }
    L->scale = channel_vector(w, L->kind == OP_LAYER_NORM ? NULL : g, n, false, 1, L->in, err);
    L->shift = L->scale ? channel_vector(w, L->kind == OP_LAYER_NORM ? NULL : b, n, false, 0, L->in, err) : NULL;
    if (!L->scale || !L->shift) return -1;
    if (L->kind == OP_LAYER_NORM)
        for (int i = 0; i < n; i++) {
            if (g) L->scale[i] = g->f32[i];
            if (b) L->shift[i] = b->f32[i];
        }
    return 0;
}

/* ---- pooling and pixel_shuffle ---- */

static int build_pool(const where *w, json_t *o, layer *L, char err[GM_ERR_LEN]) {
    char is[64];
    fmt_shape(is, sizeof is, L->in);
    if (L->in.rank != 3)
        return gm_errorf(err, WHERE_FMT "input has shape %s but %s needs [C, H, W]", WHERE_ARGS(w), is, w->op);
    int k[2], st[2], pad[2], dil[2] = {1, 1};
    bool avg = L->kind == OP_AVG_POOL2D;
    json_t *ceil = json_object_get(o, "ceil_mode"), *cip = json_object_get(o, "count_include_pad");
    if (ceil && !json_is_false(ceil))
        return gm_errorf(err, WHERE_FMT "\"ceil_mode\" must be false (windows past the edge are not supported)",
                         WHERE_ARGS(w));
    if (json_object_get(o, "divisor_override") && !json_is_null(json_object_get(o, "divisor_override")))
        return gm_errorf(err, WHERE_FMT "\"divisor_override\" is not supported", WHERE_ARGS(w));
    if ((cip && !json_is_boolean(cip)) || (cip && !avg))
        return gm_errorf(err, WHERE_FMT "\"count_include_pad\" must be true or false (avg_pool2d only)", WHERE_ARGS(w));
    if (!json_object_get(o, "kernel_size"))
        return gm_errorf(err, WHERE_FMT "field \"kernel_size\" is missing", WHERE_ARGS(w));
    if (get_pair(w, o, "kernel_size", 1, 1, k, err) || get_pair(w, o, "padding", 0, 0, pad, err) ||
        (!avg && get_pair(w, o, "dilation", 1, 1, dil, err)))
        return -1;
    json_t *sv = json_object_get(o, "stride"); /* PyTorch: null or absent means the kernel size */
    st[0] = k[0], st[1] = k[1];
    if (sv && !json_is_null(sv) && !(json_is_array(sv) && json_array_size(sv) == 0) &&
        get_pair(w, o, "stride", 1, 1, st, err))
        return -1;
    if (2 * pad[0] > k[0] || 2 * pad[1] > k[1])
        return gm_errorf(err, WHERE_FMT "padding %dx%d must be at most half the kernel %dx%d", WHERE_ARGS(w), pad[0],
                         pad[1], k[0], k[1]);
    L->kh = k[0], L->kw = k[1], L->sh = st[0], L->sw = st[1], L->ph = pad[0], L->pw = pad[1], L->dh = dil[0],
    L->dw = dil[1];
    L->align_corners = !cip || json_is_true(cip); /* count_include_pad */
    long long eh = (long long)L->dh * (L->kh - 1) + 1, ew = (long long)L->dw * (L->kw - 1) + 1;
    long long ho = (L->in.dim[1] + 2LL * L->ph - eh) / L->sh + 1, wo = (L->in.dim[2] + 2LL * L->pw - ew) / L->sw + 1;
    if (L->in.dim[1] + 2LL * L->ph < eh || L->in.dim[2] + 2LL * L->pw < ew || ho < 1 || wo < 1)
        return gm_errorf(err, WHERE_FMT "kernel %dx%d (dilation %dx%d) with padding %dx%d does not fit input %s",
                         WHERE_ARGS(w), L->kh, L->kw, L->dh, L->dw, L->ph, L->pw, is);
    L->out = gm_shape3(L->in.dim[0], (int)ho, (int)wo);
    return 0;
}

static int build_pixel_shuffle(const where *w, json_t *o, layer *L, char err[GM_ERR_LEN]) {
    char is[64];
    fmt_shape(is, sizeof is, L->in);
    if (get_int(w, o, "upscale_factor", 0, 1, &L->groups, err)) return -1;
    int r = L->groups;
    if (L->in.rank != 3 || r < 1 || L->in.dim[0] % (r * r) || mul_within(L->in.dim[1], r, GM_NET_MAX_VALUES) < 0 ||
        mul_within(L->in.dim[2], r, GM_NET_MAX_VALUES) < 0)
        return gm_errorf(err,
                         WHERE_FMT "\"upscale_factor\" %d needs a [C, H, W] input with C a multiple of %d "
                                   "(input %s)",
                         WHERE_ARGS(w), r, r * r, is);
    L->out = gm_shape3(L->in.dim[0] / (r * r), L->in.dim[1] * r, L->in.dim[2] * r);
    return 0;
}

/* ---- pad and upsample: the last two dimensions ---- */

static int build_pad(const where *w, json_t *o, layer *L, char err[GM_ERR_LEN]) {
    static const char *const modes[] = {"zero", "reflect", "replicate", "constant"};
    json_t *p = json_object_get(o, "pad");
    size_t n = json_array_size(p);
    char is[64];
    fmt_shape(is, sizeof is, L->in);
    if (!json_is_array(p) || (n != 2 && n != 4) || L->in.rank < (int)n / 2)
        return gm_errorf(err,
                         WHERE_FMT "\"pad\" must be [left, right] or [left, right, top, bottom] over the last "
                                   "dimensions of the input %s",
                         WHERE_ARGS(w), is);
    double fill;
    if (get_choice(w, o, "mode", modes, 4, 0, &L->mode, err) || get_num(w, o, "value", 0, &fill, err)) return -1;
    if (L->mode == 3) L->mode = PAD_ZERO; /* PyTorch's name for it */
    L->value = (float)fill;
    L->out = L->in;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(p, i);
        int axis = L->in.rank - 1 - (int)i / 2, size = L->in.dim[axis];
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MAX_KERNEL_PARAM ||
            (L->mode == PAD_REFLECT && json_integer_value(v) >= size))
            return gm_errorf(err, WHERE_FMT "\"pad\" entry %zu must be an integer in 0..%d%s (input %s)", WHERE_ARGS(w),
                             i, L->mode == PAD_REFLECT ? size - 1 : MAX_KERNEL_PARAM,
                             L->mode == PAD_REFLECT ? ", less than the padded dimension for reflect" : "", is);
        L->pads[i] = (int)json_integer_value(v);
        L->out.dim[axis] += L->pads[i];
    }
    long long total = 1;
    for (int d = 0; d < L->out.rank && total > 0; d++) total = mul_within(total, L->out.dim[d], GM_NET_MAX_VALUES);
    if (total < 0)
        return gm_errorf(err, WHERE_FMT "padding input %s would give more than %d values per sample", WHERE_ARGS(w), is,
                         GM_NET_MAX_VALUES);
    return 0;
}

static int build_upsample(const where *w, json_t *o, layer *L, char err[GM_ERR_LEN]) {
    static const char *const modes[] = {"nearest", "bilinear"};
    char is[64];
    fmt_shape(is, sizeof is, L->in);
    if (L->in.rank != 3)
        return gm_errorf(err, WHERE_FMT "input has shape %s but upsample needs [C, H, W]", WHERE_ARGS(w), is);
    if (get_choice(w, o, "mode", modes, 2, 0, &L->mode, err)) return -1;
    L->mode += UP_NEAREST;
    json_t *ac = json_object_get(o, "align_corners");
    if (ac && !json_is_boolean(ac))
        return gm_errorf(err, WHERE_FMT "field \"align_corners\" must be true or false", WHERE_ARGS(w));
    L->align_corners = json_is_true(ac);
    json_t *size = json_object_get(o, "size"), *sf = json_object_get(o, "scale_factor");
    long long out[2];
    if (!size == !sf)
        return gm_errorf(err, WHERE_FMT "give one of \"size\" [H, W] and \"scale_factor\" (an integer or [sh, sw])",
                         WHERE_ARGS(w));
    json_t *e[2] = {size ? size : sf, size ? size : sf};
    if (json_is_array(e[0]) && json_array_size(e[0]) == 2)
        e[1] = json_array_get(e[0], 1), e[0] = json_array_get(e[0], 0);
    for (int i = 0; i < 2; i++) {
        /* a scale factor is an integer, in JSON 2 or 2.0 */
        double v = json_is_number(e[i]) ? json_number_value(e[i]) : 0;
        if (!(v >= 1 && v <= (size ? GM_NET_MAX_VALUES : MAX_KERNEL_PARAM)) || v != floor(v) ||
            (size && !json_is_integer(e[i])))
            return gm_errorf(err, WHERE_FMT "\"%s\" must be %s", WHERE_ARGS(w), size ? "size" : "scale_factor",
                             size ? "[H, W] of positive integers" : "an integer factor 1..4096 or a pair of them");
        out[i] = size ? (long long)v : (long long)v * L->in.dim[1 + i];
    }
    if (mul_within(mul_within(out[0], out[1], GM_NET_MAX_VALUES), L->in.dim[0], GM_NET_MAX_VALUES) < 0)
        return gm_errorf(err, WHERE_FMT "upsampling input %s to %lldx%lld gives more than %d values per sample",
                         WHERE_ARGS(w), is, out[0], out[1], GM_NET_MAX_VALUES);
    L->out = gm_shape3(L->in.dim[0], (int)out[0], (int)out[1]);
    return 0;
}

/* ---- the graph ---- */

static int find_value(const gm_net *net, const char *name) {
    for (int i = 0; i < net->n_named; i++)
        if (strcmp(net->named[i].name, name) == 0) return net->named[i].val;
    return -1;
}

static int check_name(const where *w, const char *field, json_t *v, char err[GM_ERR_LEN]) {
    if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) >= GM_NET_NAME_LEN ||
        strlen(json_string_value(v)) != json_string_length(v))
        return gm_errorf(err, WHERE_FMT "\"%s\" must hold value names of 1 to %d characters", WHERE_ARGS(w), field,
                         GM_NET_NAME_LEN - 1);
    return 0;
}

/* Gives value v the name held by json string `name`. */
static int add_name(const where *w, gm_net *net, json_t *name, int v, char err[GM_ERR_LEN]) {
    if (check_name(w, "name", name, err)) return -1;
    const char *s = json_string_value(name);
    if (find_value(net, s) >= 0)
        return gm_errorf(err, WHERE_FMT "value name '%s' is already taken (each name is given once)", WHERE_ARGS(w), s);
    net->named[net->n_named++] = (named_value){s, v};
    if (!net->vals[v].name) net->vals[v].name = s;
    return 0;
}

/* A new value for an op's output, named by json string `name` (unnamed
 * when NULL). */
static int new_value(const where *w, gm_net *net, json_t *name, char err[GM_ERR_LEN]) {
    int v = net->n_vals++;
    net->vals[v] = (value){.producer = -1, .slot = -1};
    return name && add_name(w, net, name, v, err) ? -1 : v;
}

/* How many inputs an op takes: [lo, hi]. */
static void arity(op_kind k, int *lo, int *hi) {
    *lo = *hi = 1;
    if (k == OP_ADD || k == OP_MUL) *lo = *hi = 2;
    if (k == OP_CONCAT) *hi = OP_MAX_IO;
}

/* Pass 1 for op `o`: its kind, its input values (counting each as read)
 * and new values for its outputs. dropout defines no value: its output is
 * its input. `prev` is the value the op reads by default; on return, the one
 * the next op reads by default. */
static int resolve(const where *w, gm_net *net, json_t *o, op_kind kind, layer *L, int *prev, char err[GM_ERR_LEN]) {
    json_t *ins = json_object_get(o, "inputs");
    int lo, hi;
    arity(kind, &lo, &hi);
    if (ins) {
        size_t n = json_array_size(ins);
        if (!json_is_array(ins) || (int)n < lo || (int)n > hi)
            return gm_errorf(err, WHERE_FMT "\"inputs\" must be an array of %d%s%d value names", WHERE_ARGS(w), lo,
                             lo == hi ? "" : " to ", lo == hi ? lo : hi);
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array_get(ins, i);
            if (check_name(w, "inputs", v, err)) return -1;
            int id = find_value(net, json_string_value(v));
            if (id < 0)
                return gm_errorf(err,
                                 WHERE_FMT "input '%s' is neither an input of the network nor the name of an "
                                           "earlier op's output",
                                 WHERE_ARGS(w), json_string_value(v));
            L->in_val[L->n_in++] = id;
        }
    } else if (lo > 1) {
        return gm_errorf(err, WHERE_FMT "\"inputs\" is needed: the op takes %d values", WHERE_ARGS(w), lo);
    } else {
        L->in_val[L->n_in++] = *prev;
    }
    for (int k = 0; k < L->n_in; k++) net->vals[L->in_val[k]].readers++;
    if (kind == OP_DROPOUT) { /* its "name" names its input value */
        json_t *name = json_object_get(o, "name");
        if (name && add_name(w, net, name, L->in_val[0], err)) return -1;
        net->vals[L->in_val[0]].readers--;
        *prev = L->in_val[0];
        return 0;
    }
    if (kind == OP_SPLIT) {
        json_t *names = json_object_get(o, "names");
        size_t n = json_array_size(names);
        if (!json_is_array(names) || n < 1 || n > OP_MAX_IO)
            return gm_errorf(err, WHERE_FMT "\"names\" must be an array of 1 to %d value names, one per output",
                             WHERE_ARGS(w), OP_MAX_IO);
        for (size_t i = 0; i < n; i++) {
            int id = new_value(w, net, json_array_get(names, i), err);
            if (id < 0) return -1;
            L->out_val[L->n_out++] = id;
        }
    } else {
        int id = new_value(w, net, json_object_get(o, "name"), err);
        if (id < 0) return -1;
        L->out_val[L->n_out++] = id;
    }
    *prev = L->out_val[0];
    return 0;
}

/* Pass 2 for one op: its output shape, weights and checks; a batch_norm or
 * activation whose input only it reads, written by a linear or convolution
 * without a fused activation, is folded into that layer instead
 * (*folded). */
static int build_op(const where *w, gm_net *net, json_t *o, layer *L, int *folded, char err[GM_ERR_LEN]) {
    for (int k = 0; k < L->n_in; k++) L->ins[k] = net->vals[L->in_val[k]].shape;
    L->in = L->ins[0];
    L->out = L->in;
    L->act = OP_COUNT;
    const value *src = &net->vals[L->in_val[0]];
    layer *prev = src->producer >= 0 && src->readers == 1 ? &net->layers[src->producer] : NULL;
    if (prev && (!op_has_weights(prev->kind) || prev->act != OP_COUNT)) prev = NULL;
    int rc = 0;
    *folded = 0;
    switch (L->kind) {
    case OP_LINEAR:
        rc = build_linear(w, o, L, err);
        break;
    case OP_CONV2D:
        rc = build_conv(w, o, L, 0, err);
        break;
    case OP_CONV_T2D:
        rc = build_conv(w, o, L, 1, err);
        break;
    case OP_BATCH_NORM:
        rc = build_batch_norm(w, o, L, prev, folded, err);
        break;
    case OP_LEAKY_RELU:
    case OP_ELU:
    case OP_GELU:
    case OP_SOFTPLUS:
    case OP_HARDTANH:
        rc = build_activation(w, o, L, err);
        break;
    case OP_PRELU:
        rc = build_prelu(w, o, L, err);
        break;
    case OP_SOFTMAX:
        rc = get_axis(w, o, L->in, &L->axis, err);
        break;
    case OP_INSTANCE_NORM:
    case OP_GROUP_NORM:
    case OP_LAYER_NORM:
        rc = build_norm(w, o, L, prev, folded, err);
        break;
    case OP_RESHAPE:
        rc = build_reshape(w, o, L, err);
        break;
    case OP_FLATTEN:
        L->out = gm_shape1(gm_shape_size(L->in));
        break;
    case OP_ADD:
    case OP_MUL:
        rc = build_broadcast(w, net, L, err);
        break;
    case OP_CONCAT:
        rc = build_concat(w, net, o, L, err);
        break;
    case OP_SPLIT:
        rc = build_split(w, o, L, err);
        break;
    case OP_EXPAND:
        rc = build_expand(w, o, L, err);
        break;
    case OP_EMBEDDING:
        rc = build_embedding(w, o, L, err);
        break;
    case OP_PAD:
        rc = build_pad(w, o, L, err);
        break;
    case OP_MAX_POOL2D:
    case OP_AVG_POOL2D:
        rc = build_pool(w, o, L, err);
        break;
    case OP_PIXEL_SHUFFLE:
        rc = build_pixel_shuffle(w, o, L, err);
        break;
    case OP_UPSAMPLE:
        rc = build_upsample(w, o, L, err);
        break;
    default:
        break; /* relu, sigmoid, tanh: shape unchanged */
    }
    if (rc) return -1;
    if ((op_has_weights(L->kind) || L->kind == OP_EMBEDDING) && (!L->weight || !L->bias))
        return gm_errorf(err, "%s: out of memory building %s", gm_st_label(w->st), w->what);
    if ((op_has_weights(L->kind) || L->kind == OP_EMBEDDING || L->kind == OP_MAX_POOL2D || L->kind == OP_AVG_POOL2D) &&
        track_cost(w, net, L, err))
        return -1;
    if (L->kind != OP_SPLIT) L->outs[0] = L->out;
    if (op_is_activation(L->kind) && prev) {
        prev->act = L->kind;
        prev->a0 = L->a0;
        prev->a1 = L->a1;
        *folded = 1;
    }
    return 0;
}

/* The gated activation of PixelCNNs and WaveNets, a, b = split(x, 2);
 * tanh(a) * sigmoid(b), as one op reading x once: when the split's two
 * halves and the tanh and sigmoid outputs have no other reader, the mul
 * becomes a gate op and the split, tanh and sigmoid go. */
/* A rewrite's view of the built graph: each value's readers (the
 * network's output counting as one) and producing op (-1: an input), and
 * the ops the rewrite removes. */
typedef struct {
    int *readers, *prod;
    bool *gone;
} uses;

static int uses_of(const gm_net *net, uses *u) {
    u->readers = calloc((size_t)net->n_vals, sizeof *u->readers);
    u->prod = malloc((size_t)net->n_vals * sizeof *u->prod);
    u->gone = calloc((size_t)net->n + 1, sizeof *u->gone);
    if (!u->readers || !u->prod || !u->gone) {
        free(u->readers), free(u->prod), free(u->gone);
        return -1;
    }
    for (int v = 0; v < net->n_vals; v++) u->prod[v] = -1;
    u->readers[net->out_val]++;
    for (int i = 0; i < net->n; i++) {
        for (int k = 0; k < net->layers[i].n_in; k++) u->readers[net->layers[i].in_val[k]]++;
        for (int k = 0; k < net->layers[i].n_out; k++) u->prod[net->layers[i].out_val[k]] = i;
    }
    return 0;
}

/* Drops the ops marked gone, keeping the others in order. */
static void drop_gone(gm_net *net, uses *u) {
    int n = 0;
    for (int i = 0; i < net->n; i++) {
        if (u->gone[i]) {
            free_layer(&net->layers[i]);
            continue;
        }
        net->layers[n++] = net->layers[i];
    }
    net->n = n;
    free(u->readers), free(u->prod), free(u->gone);
}

static int fuse_gates(gm_net *net) {
    uses u;
    if (uses_of(net, &u)) return -1;
    int *readers = u.readers, *prod = u.prod;
    bool *gone = u.gone;
    for (int i = 0; i < net->n; i++) {
        layer *M = &net->layers[i];
        if (M->kind != OP_MUL) continue;
        int t = prod[M->in_val[0]], g = prod[M->in_val[1]];
        if (t < 0 || g < 0 || net->layers[t].kind != OP_TANH || net->layers[g].kind != OP_SIGMOID) continue;
        int s = prod[net->layers[t].in_val[0]];
        const layer *S = s >= 0 ? &net->layers[s] : NULL;
        if (!S || S->kind != OP_SPLIT || S->n_out != 2 || S->axis != 0 || prod[net->layers[g].in_val[0]] != s ||
            S->out_val[0] != net->layers[t].in_val[0] || S->out_val[1] != net->layers[g].in_val[0] ||
            gm_shape_size(S->outs[0]) != gm_shape_size(S->outs[1]) || readers[S->out_val[0]] != 1 ||
            readers[S->out_val[1]] != 1 || readers[M->in_val[0]] != 1 || readers[M->in_val[1]] != 1 ||
            gm_shape_size(M->ins[0]) != gm_shape_size(M->out) || gm_shape_size(M->ins[1]) != gm_shape_size(M->out))
            continue;
        layer G = {.kind = OP_GATE, .n_in = 1, .n_out = 1, .act = OP_COUNT};
        G.in_val[0] = S->in_val[0];
        G.ins[0] = G.in = S->in;
        G.out_val[0] = M->out_val[0];
        G.outs[0] = G.out = M->out;
        *M = G;
        gone[s] = gone[t] = gone[g] = true;
    }
    drop_gone(net, &u);
    return 0;
}

static bool same_shape(gm_shape a, gm_shape b) {
    return a.rank == b.rank && a.dim[0] == b.dim[0] && a.dim[1] == b.dim[1] && a.dim[2] == b.dim[2];
}

/* Residual and skip connections, y = conv(x) + r with r of y's shape: a
 * conv2d without a fused activation whose output only the add reads
 * starts its output from r + bias instead of the bias, as its second
 * input, and the add goes: one pass over y and one buffer fewer. r must be
 * computed before the conv; of two convs (a gated PixelCNN's horizontal
 * stack adds its own conv to the vertical stack's 1x1), the later one
 * takes the add. */
static int fuse_adds(gm_net *net) {
    uses u;
    if (uses_of(net, &u)) return -1;
    for (int i = 0; i < net->n; i++) {
        layer *M = &net->layers[i];
        if (M->kind != OP_ADD || !same_shape(M->ins[0], M->out) || !same_shape(M->ins[1], M->out)) continue;
        int best = -1, k_best = 0;
        for (int k = 0; k < 2; k++) {
            int c = u.prod[M->in_val[k]];
            const layer *C = c >= 0 ? &net->layers[c] : NULL;
            if (C && C->kind == OP_CONV2D && C->act == OP_COUNT && C->n_in == 1 && u.readers[M->in_val[k]] == 1 &&
                u.prod[M->in_val[1 - k]] < c && c > best)
                best = c, k_best = k;
        }
        if (best < 0) continue;
        layer *C = &net->layers[best];
        C->n_in = 2;
        C->in_val[1] = M->in_val[1 - k_best];
        C->ins[1] = M->ins[1 - k_best];
        memcpy(C->bdim, M->bdim, sizeof C->bdim);
        memcpy(C->bstr[1], M->bstr[1 - k_best], sizeof C->bstr[1]);
        C->out_val[0] = M->out_val[0];
        u.prod[M->out_val[0]] = best;
        u.gone[i] = true;
    }
    drop_gone(net, &u);
    return 0;
}

/* conv2d's taps with a non-zero weight and the weight restricted to them
 * (after folding, which scales weights): a masked convolution computes
 * only its unmasked taps. */
static int pack_taps(layer *L) {
    int kk = L->kh * L->kw, cin_g = L->in.dim[0] / L->groups, Co = L->out.dim[0];
    L->taps = malloc((size_t)kk * sizeof *L->taps);
    if (!L->taps) return -1;
    for (int t = 0; t < kk; t++) {
        bool nz = false;
        for (size_t r = 0; r < (size_t)Co * cin_g && !nz; r++) nz = L->weight[r * kk + t] != 0.0f;
        if (nz) L->taps[L->ntaps++] = t;
    }
    size_t K = (size_t)cin_g * (L->ntaps ? L->ntaps : 1);
    if (!(L->wtaps = calloc((size_t)Co * K, sizeof *L->wtaps))) return -1;
    for (int co = 0; co < Co; co++)
        for (int ci = 0; ci < cin_g; ci++)
            for (int t = 0; t < L->ntaps; t++)
                L->wtaps[(size_t)co * K + (size_t)ci * L->ntaps + t] =
                    L->weight[((size_t)co * cin_g + ci) * kk + L->taps[t]];
    return 0;
}

/* After pass 2: conv2d's taps, conv_transpose2d weights to col2im's order, channels-last
 * hand-offs between conv_transpose2d layers, and the activation buffers. */
static int plan(gm_net *net) {
    int *last = malloc((size_t)net->n_vals * sizeof *last), *busy = calloc((size_t)net->n_vals + 1, sizeof *busy);
    int rc = -1;
    if (!last || !busy) goto done;
    for (int v = 0; v < net->n_vals; v++) {
        last[v] = -1;
        net->vals[v].readers = v == net->out_val;
        net->vals[v].slot = -1;
    }
    for (int i = 0; i < net->n; i++)
        for (int k = 0; k < net->layers[i].n_in; k++) {
            last[net->layers[i].in_val[k]] = i;
            net->vals[net->layers[i].in_val[k]].readers++;
        }
    for (int i = 0; i < net->n; i++)
        if (net->layers[i].kind == OP_CONV2D && pack_taps(&net->layers[i])) goto done;
    for (int i = 0; i < net->n; i++) {
        layer *L = &net->layers[i];
        if (L->kind != OP_CONV_T2D) continue;
        if (reorder_conv_t(L)) goto done;
        int v = L->out_val[0], j = last[v];
        if (net->vals[v].readers == 1 && v != net->out_val && j >= 0 && net->layers[j].kind == OP_CONV_T2D)
            L->nhwc_out = net->layers[j].nhwc_in = true;
    }
    /* a value holds its buffer from the op that writes it to the last op
     * that reads it; outputs are placed before the inputs are released, so
     * no op writes over what it reads */
    for (int i = 0; i < net->n; i++) {
        const layer *L = &net->layers[i];
        for (int k = 0; k < L->n_out; k++) {
            int v = L->out_val[k], s = 0;
            if (v == net->out_val) continue;
            while (busy[s]) s++;
            busy[s] = 1;
            net->vals[v].slot = s;
            if (s + 1 > net->n_slots) net->n_slots = s + 1;
        }
        for (int k = 0; k < L->n_in; k++) {
            const value *x = &net->vals[L->in_val[k]];
            if (last[L->in_val[k]] == i && x->slot >= 0) busy[x->slot] = 0;
        }
        for (int k = 0; k < L->n_out; k++)
            if (last[L->out_val[k]] < 0 && net->vals[L->out_val[k]].slot >= 0) busy[net->vals[L->out_val[k]].slot] = 0;
    }
    rc = 0;
done:
    free(last);
    free(busy);
    return rc;
}

int gm_net_input_names(const gm_st *st, const char *what, char names[GM_NET_MAX_INPUTS][GM_NET_NAME_LEN],
                       char err[GM_ERR_LEN]) {
    char key[128];
    snprintf(key, sizeof key, "%s_inputs", what);
    const char *text = gm_st_meta(st, key);
    if (!text) return 0;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    size_t n = json_array_size(root);
    int rc = (int)n;
    if (!json_is_array(root) || n < 1 || n > GM_NET_MAX_INPUTS) rc = -1;
    for (size_t i = 0; i < n && rc > 0; i++) {
        json_t *v = json_array_get(root, i);
        if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) >= GM_NET_NAME_LEN ||
            strlen(json_string_value(v)) != json_string_length(v)) {
            rc = -1;
            break;
        }
        memcpy(names[i], json_string_value(v), json_string_length(v) + 1);
        for (size_t j = 0; j < i; j++)
            if (strcmp(names[j], names[i]) == 0) rc = -1;
    }
    json_decref(root);
    if (rc < 0)
        gm_errorf(err, "%s: metadata \"%s\" must be a JSON array of 1 to %d distinct input names of 1 to %d characters",
                  gm_st_label(st), key, GM_NET_MAX_INPUTS, GM_NET_NAME_LEN - 1);
    return rc;
}

gm_net *gm_net_build_inputs(const gm_st *st, const char *what, const char *json, int n_inputs,
                            const gm_net_input *inputs, char err[GM_ERR_LEN]) {
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    gm_net *net = calloc(1, sizeof *net);
    if (!net) goto oom;
    if (!root) {
        gm_errorf(err, "%s: %s is not a valid JSON layer list: %s", gm_st_label(st), what, jerr.text);
        goto fail;
    }
    if (!json_is_array(root) || json_array_size(root) > MAX_LAYERS) {
        gm_errorf(err, "%s: %s must be a JSON array of at most %d layers", gm_st_label(st), what, MAX_LAYERS);
        goto fail;
    }
    size_t count = json_array_size(root), max_vals = count * OP_MAX_IO + (size_t)n_inputs;
    net->layers = calloc(count ? count : 1, sizeof(layer));
    net->vals = calloc(max_vals, sizeof(value));
    net->named = calloc(max_vals, sizeof(named_value));
    if (!net->layers || !net->vals || !net->named) goto oom;
    if (n_inputs < 1 || n_inputs > GM_NET_MAX_INPUTS) {
        gm_errorf(err, "%s: %s takes %d inputs (1 to %d)", gm_st_label(st), what, n_inputs, GM_NET_MAX_INPUTS);
        goto fail;
    }
    for (int i = 0; i < n_inputs; i++) {
        gm_shape s = inputs[i].shape;
        long long size = 1;
        for (int d = 0; d < s.rank && d < 3; d++) size = mul_within(size, s.dim[d], GM_NET_MAX_VALUES);
        size_t len = strlen(inputs[i].name);
        if (s.rank < 0 || s.rank > 3 || size < 1 || len < 1 || len >= GM_NET_NAME_LEN ||
            find_value(net, inputs[i].name) >= 0) {
            gm_errorf(err,
                      "%s: %s input %d ('%.*s') needs a new name of 1 to %d characters and 1 to %d values per "
                      "sample",
                      gm_st_label(st), what, i, GM_NET_NAME_LEN - 1, inputs[i].name, GM_NET_NAME_LEN - 1,
                      GM_NET_MAX_VALUES);
            goto fail;
        }
        memcpy(net->names[i], inputs[i].name, len + 1);
        net->vals[i] = (value){.shape = s, .name = net->names[i], .producer = -1, .slot = -1};
        net->named[net->n_named++] = (named_value){net->names[i], i};
        if (size > net->max_size) net->max_size = (int)size;
    }
    net->n_inputs = net->n_vals = n_inputs;
    /* pass 1: names to values, and who reads what */
    int prev = 0;
    for (size_t i = 0; i < count; i++) {
        json_t *o = json_array_get(root, i);
        where w = {st, what, (int)i, "?"};
        json_t *op = json_object_get(o, "op");
        if (!json_is_object(o) || !json_is_string(op)) {
            gm_errorf(err, WHERE_FMT "each layer must be an object with an \"op\" string", WHERE_ARGS(&w));
            goto fail;
        }
        w.op = json_string_value(op);
        op_kind kind = OP_COUNT;
        for (int k = 0; k < OP_COUNT; k++)
            if (OP_NAMES[k] && strcmp(OP_NAMES[k], w.op) == 0) kind = (op_kind)k;
        if (kind == OP_COUNT) {
            char known[512];
            size_t at = 0;
            for (int k = 0; k < OP_COUNT; k++)
                if (OP_NAMES[k])
                    at += (size_t)snprintf(known + at, sizeof known - at, "%s%s", k ? ", " : "", OP_NAMES[k]);
            gm_errorf(err, WHERE_FMT "unknown op (known: %s)", WHERE_ARGS(&w), known);
            goto fail;
        }
        layer *L = &net->layers[i];
        L->kind = kind;
        if (resolve(&w, net, o, kind, L, &prev, err)) goto fail;
    }
    net->out_val = prev;
    net->vals[prev].readers++;
    if (count && net->layers[count - 1].n_out > 1) {
        gm_errorf(err, "%s: %s layer %d (split): the last op must have one output, the network's", gm_st_label(st),
                  what, (int)count - 1);
        goto fail;
    }
    /* pass 2: shapes, weights, folding; net->layers is compacted as it goes */
    for (size_t i = 0; i < count; i++) {
        layer op = net->layers[i], *L = &net->layers[net->n];
        if (op.kind == OP_DROPOUT) continue;
        where w = {st, what, (int)i, OP_NAMES[op.kind]};
        memset(&net->layers[i], 0, sizeof(layer));
        *L = op;
        int folded;
        if (build_op(&w, net, json_array_get(root, i), L, &folded, err)) {
            free_layer(L);
            memset(L, 0, sizeof *L);
            goto fail;
        }
        if (folded) { /* the layer before now writes this op's output */
            int p = net->vals[L->in_val[0]].producer;
            net->layers[p].out_val[0] = L->out_val[0];
            net->vals[L->out_val[0]].shape = L->out;
            net->vals[L->out_val[0]].producer = p;
            free_layer(L);
            memset(L, 0, sizeof *L);
            continue;
        }
        for (int k = 0; k < L->n_out; k++) {
            net->vals[L->out_val[k]].shape = L->outs[k];
            net->vals[L->out_val[k]].producer = net->n;
        }
        track_scratch(net, L);
        net->n++;
    }
    net->out = net->vals[net->out_val].shape;
    if (fuse_gates(net) || fuse_adds(net) || plan(net)) goto oom;
    for (int v = 0; v < net->n_vals; v++) net->vals[v].name = NULL; /* they point into root */
    free(net->named);
    net->named = NULL;
    json_decref(root);
    return net;
oom:
    gm_errorf(err, "%s: out of memory building %s", gm_st_label(st), what);
fail:
    json_decref(root);
    gm_net_free(net);
    return NULL;
}

gm_net *gm_net_build(const gm_st *st, const char *what, const char *json, gm_shape in, char err[GM_ERR_LEN]) {
    char names[GM_NET_MAX_INPUTS][GM_NET_NAME_LEN];
    int n = gm_net_input_names(st, what, names, err);
    if (n < 0) return NULL;
    if (n > 1) {
        gm_errorf(err, "%s: metadata \"%s_inputs\" names %d inputs but %s is given one", gm_st_label(st), what, n,
                  what);
        return NULL;
    }
    gm_net_input input = {n == 1 ? names[0] : in.rank == 3 ? "image" : "z", in};
    return gm_net_build_inputs(st, what, json, 1, &input, err);
}

gm_shape gm_net_in_shape(const gm_net *net) { return net->vals[0].shape; }
gm_shape gm_net_out_shape(const gm_net *net) { return net->out; }
int gm_net_layers(const gm_net *net) { return net->n; }
int gm_net_inputs(const gm_net *net) { return net->n_inputs; }
const char *gm_net_input_name(const gm_net *net, int i) { return net->names[i]; }
gm_shape gm_net_input_shape(const gm_net *net, int i) { return net->vals[i].shape; }

/* ---- forward ---- */

static int forward_pass(const gm_net *net, int B, const float *const *in, float *out) {
    op_scratch s = {0};
    s.chunk = net->max_col ? COL_SCRATCH_FLOATS / net->max_col : B;
    if (s.chunk < 1) s.chunk = 1;
    if (s.chunk > B) s.chunk = B;
    size_t per_slot = (size_t)B * net->max_size;
    float *base = net->n_slots ? gm_scratch(0, net->n_slots * per_slot) : NULL;
    if (net->max_col) {
        s.col = gm_scratch(2, (size_t)s.chunk * net->max_col);
        s.aux = gm_scratch(3, (size_t)s.chunk * net->max_aux);
    }
    if ((net->n_slots && !base) || (net->max_col && (!s.col || !s.aux))) return -1;
#define VALUE_AT(v)                                                                                                    \
    ((v) < net->n_inputs ? (float *)in[v] : (v) == net->out_val ? out : base + net->vals[v].slot * per_slot)
    for (int i = 0; i < net->n; i++) {
        const layer *L = &net->layers[i];
        const float *x[OP_MAX_IO];
        float *y[OP_MAX_IO];
        for (int k = 0; k < L->n_in; k++) x[k] = VALUE_AT(L->in_val[k]);
        for (int k = 0; k < L->n_out; k++) y[k] = VALUE_AT(L->out_val[k]);
        switch (L->kind) {
        case OP_LINEAR:
            op_linear(L, B, x[0], y[0]);
            break;
        case OP_CONV2D:
            op_conv2d(L, B, x[0], L->n_in > 1 ? x[1] : NULL, y[0], &s);
            break;
        case OP_CONV_T2D:
            if (op_conv_t2d(L, B, x[0], y[0], &s)) return -1;
            break;
        case OP_ADD:
        case OP_MUL:
        case OP_CONCAT:
        case OP_SPLIT:
        case OP_EXPAND:
        case OP_EMBEDDING:
            op_graph(L, B, x, y);
            break;
        case OP_PAD:
        case OP_UPSAMPLE:
            op_resample(L, B, x[0], y[0]);
            break;
        case OP_SOFTMAX:
        case OP_PRELU:
        case OP_INSTANCE_NORM:
        case OP_GROUP_NORM:
        case OP_LAYER_NORM:
            op_norm(L, B, x[0], y[0]);
            break;
        case OP_MAX_POOL2D:
        case OP_AVG_POOL2D:
        case OP_PIXEL_SHUFFLE:
            op_pool(L, B, x[0], y[0]);
            break;
        case OP_GATE:
            op_gate(L, B, x[0], y[0]);
            break;
        default:
            op_elementwise(L, B, x[0], y[0]);
        }
    }
#undef VALUE_AT
    if (net->out_val < net->n_inputs) /* no op between the input and the output */
        memmove(out, in[net->out_val], (size_t)B * gm_shape_size(net->out) * sizeof *out);
    return 0;
}

/* Passes of at most GM_NET_PASS_VALUES activation values per buffer of a
 * chain (two buffers), so that scratch memory stays bounded however large
 * the batch and however many values a graph keeps (each row's result is its
 * own, so the split changes nothing but rounding in BLAS). */
int gm_net_forward_inputs(const gm_net *net, int B, const float *const *in, float *out) {
    int slots = net->n_slots > 2 ? net->n_slots : 2;
    int rows = (int)(2LL * GM_NET_PASS_VALUES / ((long long)slots * net->max_size));
    size_t out_n = (size_t)gm_shape_size(net->out);
    if (rows < 1) rows = 1;
    for (int b0 = 0; b0 < B; b0 += rows) {
        int nb = B - b0 < rows ? B - b0 : rows;
        const float *part[GM_NET_MAX_INPUTS];
        for (int k = 0; k < net->n_inputs; k++) part[k] = in[k] + (size_t)b0 * gm_shape_size(net->vals[k].shape);
        if (forward_pass(net, nb, part, out + (size_t)b0 * out_n)) return -1;
    }
    return 0;
}

int gm_net_forward(const gm_net *net, int B, const float *in, float *out) {
    assert(net->n_inputs == 1 && "a net of several inputs runs through gm_net_forward_inputs");
    return gm_net_forward_inputs(net, B, &in, out);
}

/* ---- read access for evaluators of their own (graph.h) ---- */

int gm_net_n_ops(const gm_net *net) { return net->n; }
const layer *gm_net_op(const gm_net *net, int i) { return &net->layers[i]; }
int gm_net_n_values(const gm_net *net) { return net->n_vals; }
gm_shape gm_net_value_shape(const gm_net *net, int v) { return net->vals[v].shape; }
int gm_net_out_value(const gm_net *net) { return net->out_val; }
