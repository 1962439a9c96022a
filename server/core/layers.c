/*
 * layers.c - builds and runs the layer lists of SPEC.md §1.4.
 *
 * Build: parse the JSON once, look up and copy each tensor (refusing NaN and
 * infinities), infer every layer's output shape from its input and check
 * each weight against it and every size against the per-sample bounds of
 * layers.h (each product overflow-checked: a file chooses the factors), and
 * fold a batch_norm that follows a linear or convolution into that layer
 * (w' = w * s, b' = (b - mean) * s + beta with s = gamma / sqrt(var + eps)),
 * so that eval-mode BN costs nothing at run time. An activation that follows
 * one of those layers is fused into it too: applied in the pass that adds
 * the bias (linear, conv2d) or right after col2im builds a sample
 * (conv_transpose2d), while the values are still in cache, instead of as a
 * separate pass over the batch.
 *
 * Forward: a whole batch goes through one layer at a time, ping-ponging
 * between two scratch buffers. linear is one sgemm over the batch. conv2d is
 * im2col with one row per output pixel of every sample in a chunk, so the
 * sgemm has M = samples * output pixels (big, BLAS-friendly) and produces
 * channels-last rows that are then scattered to NCHW. conv_transpose2d is the
 * adjoint: the chunk's channel planes side by side, one sgemm giving, for
 * every input pixel, a row of every kernel tap's contribution to every
 * output channel (the weight is stored (Cin, kh, kw, Cout) for this), then
 * col2im adds each tap's Cout values into a channels-last copy of the
 * sample's output, contiguous vector adds, and transposes that to NCHW.
 * Between two conv_transpose2d layers the output stays channels-last: it is
 * what the next one's sgemm reads, so neither transposes nor copies.
 * Chunks bound the im2col / col2im scratch to 2 MB whatever the batch size,
 * so that it stays in cache between the sgemm that writes it and the pass
 * that reads it (16 MB chunks made GAN sampling 10 % slower). All scratch is
 * the calling thread's (scratch.h), reused from call to call. OpenBLAS
 * threads the sgemms; everything else is split over samples
 * (gm_parallel_rows).
 */
#include "gm/layers.h"
#include "parallel.h"
#include "scratch.h"
#include "vmath.h"

#include <cblas.h>
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

typedef enum {
    OP_LINEAR,
    OP_CONV2D,
    OP_CONV_T2D,
    OP_BATCH_NORM,
    OP_RELU,
    OP_SIGMOID,
    OP_TANH,
    OP_LEAKY_RELU,
    OP_RESHAPE,
    OP_FLATTEN,
    OP_COUNT
} op_kind;

static const char *const OP_NAMES[OP_COUNT] = {
    "linear", "conv2d", "conv_transpose2d", "batch_norm", "relu",
    "sigmoid", "tanh", "leaky_relu", "reshape", "flatten",
};

typedef struct {
    op_kind kind;
    gm_shape in, out;
    /* linear: weight (I, O), transposed at load; conv2d: (Cout, Cin*kh*kw);
     * conv_transpose2d: (Cin, Cout*kh*kw) as in the file, (Cin, kh*kw*Cout)
     * once the chain is built. bias (O) or (Cout), zeros when the file has
     * none. */
    float *weight, *bias;
    float *scale, *shift; /* standalone batch_norm, per channel */
    int kh, kw, stride, pad, out_pad;
    float slope;   /* leaky_relu, standalone or fused */
    op_kind act;   /* linear / convolutions: a fused activation, or OP_COUNT for none */
    bool nhwc_out; /* conv_transpose2d followed by another: output channels-last */
} layer;

static bool has_weights(const layer *L) {
    return L->kind == OP_LINEAR || L->kind == OP_CONV2D || L->kind == OP_CONV_T2D;
}
static bool is_activation(op_kind k) { return k == OP_RELU || k == OP_LEAKY_RELU || k == OP_SIGMOID || k == OP_TANH; }

struct gm_net {
    gm_shape in, out;
    int n;
    layer *layers;
    int max_size;   /* largest per-sample activation */
    int max_col;    /* largest per-sample im2col / col2im scratch */
    int max_aux;    /* largest per-sample channels-last scratch */
    long long macs, weights; /* per-sample multiply-adds and weight values, summed over layers */
};

int gm_shape_size(gm_shape s) { return s.rank == 1 ? s.dim[0] : s.dim[0] * s.dim[1] * s.dim[2]; }

/* a * b, or -1 when either is negative or the product overflows or exceeds
 * limit: every size a file can influence is multiplied through this, so that
 * no product wraps to a plausible value. */
static long long mul_within(long long a, long long b, long long limit) {
    long long r;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r) || r > limit) return -1;
    return r;
}
gm_shape gm_shape1(int n) { return (gm_shape){1, {n, 0, 0}}; }
gm_shape gm_shape3(int c, int h, int w) { return (gm_shape){3, {c, h, w}}; }

static void fmt_shape(char *buf, size_t n, gm_shape s) {
    if (s.rank == 1)
        snprintf(buf, n, "[%d]", s.dim[0]);
    else
        snprintf(buf, n, "[%d, %d, %d]", s.dim[0], s.dim[1], s.dim[2]);
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
    if (!json_is_string(v))
        return gm_errorf(err, WHERE_FMT "field \"%s\" must be a tensor name", WHERE_ARGS(w), key);
    const gm_tensor *t = gm_st_tensor(w->st, json_string_value(v));
    if (!t)
        return gm_errorf(err, WHERE_FMT "tensor '%s' (field \"%s\") is not in the file", WHERE_ARGS(w),
                         json_string_value(v), key);
    if (!t->f32)
        return gm_errorf(err, WHERE_FMT "tensor '%s' has dtype %s; a float dtype is needed", WHERE_ARGS(w),
                         t->name, gm_dtype_name(t->dtype));
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
        return gm_errorf(err, WHERE_FMT "tensor '%s' has shape %s but [%d] is needed (layer input %s)",
                         WHERE_ARGS(w), t->name, ts, n, is);
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
        return gm_errorf(err, WHERE_FMT "field \"%s\" must be a finite number within float range", WHERE_ARGS(w),
                         key);
    *out = json_number_value(v);
    return 0;
}

static float *copy_floats(const float *src, size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    if (p && src) memcpy(p, src, n * sizeof *p);
    return p;
}

static int weight_mismatch(const where *w, const gm_tensor *t, const char *want, gm_shape in,
                           char err[GM_ERR_LEN]) {
    char ts[64], is[64];
    fmt_tshape(ts, sizeof ts, t);
    fmt_shape(is, sizeof is, in);
    return gm_errorf(err, WHERE_FMT "weight '%s' has shape %s but the layer input has shape %s (%s)",
                     WHERE_ARGS(w), t->name, ts, is, want);
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

static int build_conv(const where *w, json_t *o, layer *L, int transposed, char err[GM_ERR_LEN]) {
    const gm_tensor *wt, *bt;
    if (get_tensor(w, o, "weight", 1, &wt, err) || get_tensor(w, o, "bias", 0, &bt, err)) return -1;
    if (L->in.rank != 3) {
        char is[64];
        fmt_shape(is, sizeof is, L->in);
        return gm_errorf(err, WHERE_FMT "input has shape %s but a convolution needs [C, H, W] (add a reshape)",
                         WHERE_ARGS(w), is);
    }
    int C = L->in.dim[0], H = L->in.dim[1], W = L->in.dim[2];
    /* conv2d weight: [out, in, kh, kw]; conv_transpose2d: [in, out, kh, kw] */
    int in_axis = transposed ? 0 : 1;
    if (wt->ndim != 4 || wt->shape[in_axis] != C || wt->shape[2] < 1 || wt->shape[3] < 1 ||
        wt->shape[2] > MAX_KERNEL_PARAM || wt->shape[3] > MAX_KERNEL_PARAM || wt->shape[1 - in_axis] < 1 ||
        wt->shape[1 - in_axis] > GM_NET_MAX_VALUES)
        return weight_mismatch(w, wt,
                               transposed ? "a conv_transpose2d weight is [in, out, kh, kw] with in = C"
                                          : "a conv2d weight is [out, in, kh, kw] with in = C",
                               L->in, err);
    int cout = (int)wt->shape[1 - in_axis];
    L->kh = (int)wt->shape[2];
    L->kw = (int)wt->shape[3];
    if (get_int(w, o, "stride", 1, 1, &L->stride, err) || get_int(w, o, "padding", 0, 0, &L->pad, err) ||
        get_int(w, o, "output_padding", 0, 0, &L->out_pad, err))
        return -1;
    long long ho, wo;
    if (transposed) {
        if (L->out_pad >= L->stride)
            return gm_errorf(err, WHERE_FMT "output_padding %d must be smaller than stride %d", WHERE_ARGS(w),
                             L->out_pad, L->stride);
        ho = (long long)(H - 1) * L->stride - 2LL * L->pad + L->kh + L->out_pad;
        wo = (long long)(W - 1) * L->stride - 2LL * L->pad + L->kw + L->out_pad;
    } else {
        if (L->out_pad)
            return gm_errorf(err, WHERE_FMT "output_padding is only for conv_transpose2d", WHERE_ARGS(w));
        ho = (H + 2LL * L->pad - L->kh) / L->stride + 1;
        wo = (W + 2LL * L->pad - L->kw) / L->stride + 1;
        if (H + 2LL * L->pad < L->kh || W + 2LL * L->pad < L->kw) ho = wo = 0;
    }
    /* each factor is bounded (sides by the input and MAX_KERNEL_PARAM), but
     * their products are not: checked */
    if (ho < 1 || wo < 1 || mul_within(mul_within(ho, wo, GM_NET_MAX_VALUES), cout, GM_NET_MAX_VALUES) < 0) {
        char is[64];
        fmt_shape(is, sizeof is, L->in);
        return gm_errorf(err, WHERE_FMT "kernel %dx%d, stride %d, padding %d on input %s gives an output of "
                                       "%lldx%lld with %d channels (at most %d values per sample)",
                         WHERE_ARGS(w), L->kh, L->kw, L->stride, L->pad, is, ho, wo, cout, GM_NET_MAX_VALUES);
    }
    /* im2col holds one row of C*kh*kw values per output pixel; col2im one
     * row of Cout*kh*kw per input pixel */
    long long pixels = transposed ? (long long)H * W : ho * wo, taps = (long long)L->kh * L->kw;
    long long col = mul_within(mul_within(pixels, taps, GM_NET_MAX_COL), transposed ? cout : C, GM_NET_MAX_COL);
    if (col < 0)
        return gm_errorf(err, WHERE_FMT "kernel %dx%d over %d channels and %lld pixels needs %.0f %s values per "
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
    if (!prev || !has_weights(prev) || prev->act != OP_COUNT) return 0; /* BN after an activation stays */
    /* y = s * (W x + bias) + shift = (s W) x + (s bias + shift) */
    int n_out = prev->out.dim[0];
    if (prev->kind == OP_CONV_T2D) {
        int cin = prev->in.dim[0], kk = prev->kh * prev->kw;
        for (int ci = 0; ci < cin; ci++)
            for (int co = 0; co < n_out; co++)
                for (int k = 0; k < kk; k++) prev->weight[((size_t)ci * n_out + co) * kk + k] *= L->scale[co];
    } else if (prev->kind == OP_LINEAR) {
        size_t n_in = (size_t)gm_shape_size(prev->in);
        for (size_t k = 0; k < n_in; k++)
            for (int co = 0; co < n_out; co++) prev->weight[k * n_out + co] *= L->scale[co];
    } else {
        size_t row = (size_t)prev->in.dim[0] * prev->kh * prev->kw;
        for (int co = 0; co < n_out; co++)
            for (size_t k = 0; k < row; k++) prev->weight[co * row + k] *= L->scale[co];
    }
    for (int co = 0; co < n_out; co++) prev->bias[co] = prev->bias[co] * L->scale[co] + L->shift[co];
    size_t n_weights = prev->kind == OP_LINEAR ? (size_t)gm_shape_size(prev->in) * n_out
                                               : (size_t)prev->in.dim[0] * n_out * prev->kh * prev->kw;
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
    if (!json_is_array(s) || (n != 1 && n != 3))
        return gm_errorf(err, WHERE_FMT "\"shape\" must be a per-sample shape [n] or [C, H, W]", WHERE_ARGS(w));
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
    L->out = n == 1 ? gm_shape1(d[0]) : gm_shape3(d[0], d[1], d[2]);
    if (total != gm_shape_size(L->in)) {
        char is[64], os[64];
        fmt_shape(is, sizeof is, L->in);
        fmt_shape(os, sizeof os, L->out);
        return gm_errorf(err, WHERE_FMT "cannot reshape input %s (%d values) to %s (%lld values)", WHERE_ARGS(w),
                         is, gm_shape_size(L->in), os, total);
    }
    return 0;
}

/* conv_transpose2d weights from the file's (Cin, Cout, kh, kw) to (Cin, kh,
 * kw, Cout), the order of col2im's rows. Done once the chain is built: a
 * batch_norm folded into the layer scales them in the file's order. */
static int reorder_conv_t(layer *L) {
    int ci = L->in.dim[0], co = L->out.dim[0], kk = L->kh * L->kw;
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
    free(L->weight);
    free(L->bias);
    free(L->scale);
    free(L->shift);
}

void gm_net_free(gm_net *net) {
    if (!net) return;
    for (int i = 0; i < net->n; i++) free_layer(&net->layers[i]);
    free(net->layers);
    free(net);
}

/* Adds a linear or convolution's multiply-adds and weights to the net's
 * totals, which must stay within GM_NET_MAX_MACS and GM_NET_MAX_WEIGHTS: a
 * layer list may name one big tensor in every layer, so the file's size
 * alone bounds neither. The factors are bounded (<= 2^24 each), their
 * products fit long long. */
static int track_cost(const where *w, gm_net *net, const layer *L, char err[GM_ERR_LEN]) {
    long long cin = L->in.dim[0], cout = L->out.dim[0], kk = (long long)L->kh * L->kw, macs, weights;
    if (L->kind == OP_LINEAR) {
        macs = weights = (long long)gm_shape_size(L->in) * cout;
    } else {
        weights = cin * cout * kk;
        macs = weights * (L->kind == OP_CONV2D ? (long long)L->out.dim[1] * L->out.dim[2]
                                               : (long long)L->in.dim[1] * L->in.dim[2]);
    }
    net->macs = net->macs + macs > GM_NET_MAX_MACS ? -1 : net->macs + macs;
    net->weights = net->weights + weights > GM_NET_MAX_WEIGHTS ? -1 : net->weights + weights;
    if (net->macs < 0 || net->weights < 0)
        return gm_errorf(err, WHERE_FMT "the net would exceed %lld multiply-adds or %d weight values per sample "
                                       "(this layer: %lld and %lld)",
                         WHERE_ARGS(w), GM_NET_MAX_MACS, GM_NET_MAX_WEIGHTS, macs, weights);
    return 0;
}

/* Sizes here fit int: build checked each against GM_NET_MAX_VALUES or
 * GM_NET_MAX_COL. */
static void track_scratch(gm_net *net, const layer *L) {
    int size = gm_shape_size(L->out);
    if (size > net->max_size) net->max_size = size;
    int col = 0, aux = 0;
    if (L->kind == OP_CONV2D) {
        int P = L->out.dim[1] * L->out.dim[2];
        col = P * L->in.dim[0] * L->kh * L->kw;
        aux = P * L->out.dim[0];
    } else if (L->kind == OP_CONV_T2D) {
        int Pin = L->in.dim[1] * L->in.dim[2];
        col = Pin * L->out.dim[0] * L->kh * L->kw;
        aux = Pin * L->in.dim[0];
    }
    if (col > net->max_col) net->max_col = col;
    if (aux > net->max_aux) net->max_aux = aux;
}

gm_net *gm_net_build(const gm_st *st, const char *what, const char *json, gm_shape in, char err[GM_ERR_LEN]) {
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    gm_net *net = calloc(1, sizeof *net);
    if (!net) goto oom;
    net->in = net->out = in;
    long long in_size = in.rank == 1 ? in.dim[0]
                                     : mul_within(mul_within(in.dim[0], in.dim[1], GM_NET_MAX_VALUES), in.dim[2],
                                                  GM_NET_MAX_VALUES);
    if (in_size < 1 || in_size > GM_NET_MAX_VALUES) {
        gm_errorf(err, "%s: %s would take more than %d values per sample", gm_st_label(st), what, GM_NET_MAX_VALUES);
        goto fail;
    }
    net->max_size = (int)in_size;
    if (!root) {
        gm_errorf(err, "%s: %s is not a valid JSON layer list: %s", gm_st_label(st), what, jerr.text);
        goto fail;
    }
    if (!json_is_array(root) || json_array_size(root) > MAX_LAYERS) {
        gm_errorf(err, "%s: %s must be a JSON array of at most %d layers", gm_st_label(st), what, MAX_LAYERS);
        goto fail;
    }
    size_t count = json_array_size(root);
    net->layers = calloc(count ? count : 1, sizeof(layer));
    if (!net->layers) goto oom;
    gm_shape cur = in;
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
            if (strcmp(OP_NAMES[k], w.op) == 0) kind = (op_kind)k;
        layer *L = &net->layers[net->n], *prev = net->n ? &net->layers[net->n - 1] : NULL;
        memset(L, 0, sizeof *L);
        L->kind = kind;
        L->act = OP_COUNT;
        L->in = cur;
        L->out = cur;
        int rc = 0, folded = 0;
        switch (kind) {
        case OP_LINEAR: rc = build_linear(&w, o, L, err); break;
        case OP_CONV2D: rc = build_conv(&w, o, L, 0, err); break;
        case OP_CONV_T2D: rc = build_conv(&w, o, L, 1, err); break;
        case OP_BATCH_NORM:
            rc = build_batch_norm(&w, o, L, prev, &folded, err);
            break;
        case OP_LEAKY_RELU: {
            double slope;
            rc = get_num(&w, o, "slope", 0.01, &slope, err);
            L->slope = (float)slope;
            break;
        }
        case OP_RESHAPE: rc = build_reshape(&w, o, L, err); break;
        case OP_FLATTEN: L->out = gm_shape1(gm_shape_size(cur)); break;
        case OP_RELU:
        case OP_SIGMOID:
        case OP_TANH: break;
        case OP_COUNT:
            gm_errorf(err, WHERE_FMT "unknown op (known: linear, conv2d, conv_transpose2d, batch_norm, relu, "
                           "sigmoid, tanh, leaky_relu, reshape, flatten)",
                      WHERE_ARGS(&w));
            free_layer(L);
            goto fail;
        }
        if (rc) {
            free_layer(L);
            goto fail;
        }
        if (has_weights(L) && (!L->weight || !L->bias)) {
            free_layer(L);
            goto oom;
        }
        if (has_weights(L) && track_cost(&w, net, L, err)) {
            free_layer(L);
            goto fail;
        }
        cur = L->out;
        if (is_activation(kind) && prev && has_weights(prev) && prev->act == OP_COUNT) {
            prev->act = kind;
            prev->slope = L->slope;
            folded = 1;
        }
        if (folded) {
            free_layer(L);
            continue;
        }
        track_scratch(net, L);
        net->n++;
    }
    net->out = cur;
    for (int i = 0; i < net->n; i++) {
        layer *L = &net->layers[i];
        if (L->kind != OP_CONV_T2D) continue;
        if (reorder_conv_t(L)) goto oom;
        L->nhwc_out = i + 1 < net->n && net->layers[i + 1].kind == OP_CONV_T2D;
    }
    json_decref(root);
    return net;
oom:
    gm_errorf(err, "%s: out of memory building %s", gm_st_label(st), what);
fail:
    json_decref(root);
    gm_net_free(net);
    return NULL;
}

gm_shape gm_net_in_shape(const gm_net *net) { return net->in; }
gm_shape gm_net_out_shape(const gm_net *net) { return net->out; }
int gm_net_layers(const gm_net *net) { return net->n; }

/* ---- forward ---- */

typedef struct {
    float *col, *aux;
    int chunk; /* samples per im2col chunk */
} scratch;

/* y = act(x) for an activation kind (in place when y == x); any other kind
 * copies. */
static void activate(op_kind act, float slope, const float *x, float *y, size_t n) {
    switch (act) {
    case OP_RELU:
#pragma omp simd
        for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
        break;
    case OP_LEAKY_RELU:
#pragma omp simd
        for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : x[i] * slope;
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
        activate(c->L->act, c->L->slope, y, y, (size_t)n);
    }
    return 0;
}

#define MIN_SAMPLES_PER_THREAD 4
#define MIN_VALUES_PER_THREAD (1 << 17)

/* Splits `B` samples of `per` values each over the compute threads only
 * when each thread gets at least MIN_VALUES_PER_THREAD values: a hand-off
 * to a worker costs from 10 to 50 microseconds (parallel.c), more than a
 * small pass. */
static void split_values(int B, size_t per, int (*fn)(void *, int, int), void *ctx) {
    size_t min_rows = MIN_VALUES_PER_THREAD / (per ? per : 1) + 1;
    gm_parallel_rows(B, min_rows > (size_t)B ? B + 1 : (int)min_rows, fn, ctx);
}

/* x: (B, n_in); y: (B, n_out) = act(x W + bias), W stored (n_in, n_out).
 * One sample is a matrix-vector product, which is bound by reading W: when
 * at least half its inputs are zero (a binary image, a ReLU's output) it
 * reads only the rows of the nonzero ones; otherwise sgemv (sgemm would
 * pack all of W for a single row). */
#define SPARSE_CHUNK 1024

static void linear_forward(const layer *L, int B, const float *x, float *y) {
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
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, n_out, n_in, 1.0f, x, n_in, L->weight, n_out,
                    0.0f, y, n_out);
    }
    linear_part part = {L, y};
    split_values(B, (size_t)n_out, bias_act_samples, &part);
}

/* Work outside sgemm is split over samples across the compute threads
 * (parallel.h): each sample's im2col rows, scatter and col2im planes are its
 * own, so the split changes no result. */
typedef struct {
    const layer *L;
    const float *x;
    float *y;
    const scratch *s;
    int b0, cols; /* the chunk's first sample; conv_transpose2d: columns of col */
} conv_part;

/* conv2d: col (nb*P, K), one row per output pixel */
static int im2col_samples(void *ctx, int r0, int r1) {
    const conv_part *c = ctx;
    const layer *L = c->L;
    int C = L->in.dim[0], H = L->in.dim[1], W = L->in.dim[2];
    int Ho = L->out.dim[1], Wo = L->out.dim[2], P = Ho * Wo, K = C * L->kh * L->kw;
    for (int b = r0; b < r1; b++) {
        const float *xb = c->x + (size_t)(c->b0 + b) * C * H * W;
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                float *row = c->s->col + ((size_t)b * P + oy * Wo + ox) * K;
                for (int ch = 0; ch < C; ch++)
                    for (int ky = 0; ky < L->kh; ky++) {
                        int iy = oy * L->stride - L->pad + ky;
                        for (int kx = 0; kx < L->kw; kx++) {
                            int ix = ox * L->stride - L->pad + kx;
                            *row++ = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? xb[((size_t)ch * H + iy) * W + ix]
                                                                                : 0.0f;
                        }
                    }
            }
    }
    return 0;
}

/* conv2d: channels-last sgemm rows to NCHW, plus bias */
static int scatter_samples(void *ctx, int r0, int r1) {
    const conv_part *c = ctx;
    const layer *L = c->L;
    int Co = L->out.dim[0], P = L->out.dim[1] * L->out.dim[2];
    for (int b = r0; b < r1; b++) {
        float *yb = c->y + (size_t)(c->b0 + b) * Co * P;
        const float *ab = c->s->aux + (size_t)b * P * Co;
        for (int p = 0; p < P; p++)
            for (int ch = 0; ch < Co; ch++) yb[(size_t)ch * P + p] = ab[(size_t)p * Co + ch] + L->bias[ch];
        activate(L->act, L->slope, yb, yb, (size_t)Co * P);
    }
    return 0;
}

/* x: (B, C, H, W); y: (B, Cout, Ho, Wo) */
static void conv2d_forward(const layer *L, int B, const float *x, float *y, const scratch *s) {
    int Co = L->out.dim[0], P = L->out.dim[1] * L->out.dim[2];
    int K = L->in.dim[0] * L->kh * L->kw;
    for (int b0 = 0; b0 < B; b0 += s->chunk) {
        int nb = B - b0 < s->chunk ? B - b0 : s->chunk;
        conv_part part = {L, x, y, s, b0, 0};
        gm_parallel_rows(nb, MIN_SAMPLES_PER_THREAD, im2col_samples, &part);
        /* aux: (nb*P, Co) = col W^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb * P, Co, K, 1.0f, s->col, K, L->weight, K, 0.0f,
                    s->aux, Co);
        gm_parallel_rows(nb, MIN_SAMPLES_PER_THREAD, scatter_samples, &part);
    }
}

/* conv_transpose2d's col2im. Row (b, iy, ix) of col holds, for each kernel
 * tap (ky, kx), the Cout values that input pixel adds to output pixel
 * (iy*stride - pad + ky, ix*stride - pad + kx). They are added into the
 * sample's output kept channels-last (Cout contiguous values per pixel, so
 * each add is one vector loop), which is then transposed to NCHW unless
 * the next layer takes it channels-last. */
static int col2im_samples(void *ctx, int r0, int r1) {
    const conv_part *c = ctx;
    const layer *L = c->L;
    int H = L->in.dim[1], W = L->in.dim[2], Pin = H * W, st = L->stride;
    int Co = L->out.dim[0], Ho = L->out.dim[1], Wo = L->out.dim[2], P = Ho * Wo;
    size_t N = (size_t)Co * L->kh * L->kw;
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
                    int oy = iy * st - L->pad + ky;
                    if (oy < 0 || oy >= Ho) continue;
                    for (int kx = 0; kx < L->kw; kx++) {
                        int ox = ix * st - L->pad + kx;
                        if (ox < 0 || ox >= Wo) continue;
                        float *restrict dst = t + ((size_t)oy * Wo + ox) * Co;
                        const float *restrict src = row + ((size_t)ky * L->kw + kx) * Co;
#pragma omp simd
                        for (int ch = 0; ch < Co; ch++) dst[ch] += src[ch];
                    }
                }
            }
        if (!L->nhwc_out)
            for (int ch = 0; ch < Co; ch++)
                for (int p = 0; p < P; p++) yb[(size_t)ch * P + p] = t[(size_t)p * Co + ch];
        activate(L->act, L->slope, yb, yb, (size_t)Co * P);
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
static int conv_t2d_forward(const layer *L, int B, const float *x, float *y, const scratch *s, bool nhwc_in) {
    int Ci = L->in.dim[0], Pin = L->in.dim[1] * L->in.dim[2];
    int N = L->out.dim[0] * L->kh * L->kw;
    for (int b0 = 0; b0 < B; b0 += s->chunk) {
        int nb = B - b0 < s->chunk ? B - b0 : s->chunk, cols = nb * Pin;
        conv_part part = {L, x, y, s, b0, cols};
        /* col: (nb*Pin, kh*kw*Co) = X W, X being the chunk's pixels as rows of
         * Ci (channels-last input as it is, NCHW through aux's planes) and W
         * (Ci, kh*kw*Co) */
        if (nhwc_in) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cols, N, Ci, 1.0f, x + (size_t)b0 * Ci * Pin, Ci,
                        L->weight, N, 0.0f, s->col, N);
        } else {
            split_values(nb, (size_t)Ci * Pin, planes_samples, &part);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, N, Ci, 1.0f, s->aux, cols, L->weight, N,
                        0.0f, s->col, N);
        }
        if (gm_parallel_rows(nb, MIN_SAMPLES_PER_THREAD, col2im_samples, &part)) return -1;
    }
    return 0;
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
        activate(L->kind, L->slope, e->x + lo, e->y + lo, hi - lo);
    }
    return 0;
}

/* batch_norm (not folded), activations not fused, reshape and flatten, in
 * place or not */
static void elementwise_forward(const layer *L, int B, const float *x, float *y) {
    elementwise_part e = {L, x, y, (size_t)gm_shape_size(L->in)};
    split_values(B, e.per, elementwise_samples, &e);
}

static int forward_pass(const gm_net *net, int B, const float *in, float *out) {
    size_t in_n = (size_t)B * gm_shape_size(net->in);
    if (net->n == 0) {
        memmove(out, in, in_n * sizeof *out);
        return 0;
    }
    scratch s = {0};
    s.chunk = net->max_col ? COL_SCRATCH_FLOATS / net->max_col : B;
    if (s.chunk < 1) s.chunk = 1;
    if (s.chunk > B) s.chunk = B;
    size_t act = (size_t)B * net->max_size;
    float *buf[2] = {gm_scratch(0, act), gm_scratch(1, act)};
    if (net->max_col) {
        s.col = gm_scratch(2, (size_t)s.chunk * net->max_col);
        s.aux = gm_scratch(3, (size_t)s.chunk * net->max_aux);
    }
    if (!buf[0] || !buf[1] || (net->max_col && (!s.col || !s.aux))) return -1;
    const float *x = in;
    for (int i = 0; i < net->n; i++) {
        const layer *L = &net->layers[i];
        float *y = i == net->n - 1 ? out : buf[i & 1];
        switch (L->kind) {
        case OP_LINEAR: linear_forward(L, B, x, y); break;
        case OP_CONV2D: conv2d_forward(L, B, x, y, &s); break;
        case OP_CONV_T2D:
            if (conv_t2d_forward(L, B, x, y, &s, i > 0 && net->layers[i - 1].nhwc_out)) return -1;
            break;
        default: elementwise_forward(L, B, x, y);
        }
        x = y;
    }
    return 0;
}

/* Passes of at most GM_NET_PASS_VALUES activation values, so that scratch
 * memory stays bounded however large the batch (each row's result is its
 * own, so the split changes nothing but rounding in BLAS). */
int gm_net_forward(const gm_net *net, int B, const float *in, float *out) {
    int rows = GM_NET_PASS_VALUES / net->max_size;
    size_t in_n = (size_t)gm_shape_size(net->in), out_n = (size_t)gm_shape_size(net->out);
    if (rows < 1) rows = 1;
    for (int b0 = 0; b0 < B; b0 += rows) {
        int nb = B - b0 < rows ? B - b0 : rows;
        if (forward_pass(net, nb, in + (size_t)b0 * in_n, out + (size_t)b0 * out_n)) return -1;
    }
    return 0;
}
