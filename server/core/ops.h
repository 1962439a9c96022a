/*
 * ops.h - the ops of a layer graph as layers.c builds them, and their
 * kernels (internal).
 *
 * layers.c parses a graph, checks shapes and rewrites it (batch-norm
 * folding, activation fusion); ops_dense.c runs the sgemm-based ops (linear,
 * convolutions), ops_elem.c everything else. Every kernel takes a whole
 * batch: x / y are (B, per-sample size) row-major, NCHW per sample unless a
 * comment says channels-last.
 */
#ifndef GM_OPS_H
#define GM_OPS_H

#include "gm/layers.h"

#include <stdbool.h>
#include <stddef.h>

#define OP_MAX_IO 16 /* inputs of a concat, outputs of a split */

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
    OP_ADD,
    OP_MUL,
    OP_CONCAT,
    OP_SPLIT,
    OP_EXPAND,
    OP_EMBEDDING,
    OP_DROPOUT,
    OP_PAD,
    OP_UPSAMPLE,
    OP_ELU,
    OP_GELU,
    OP_SILU,
    OP_SOFTPLUS,
    OP_HARDTANH,
    OP_PRELU,
    OP_SOFTMAX,
    OP_INSTANCE_NORM,
    OP_GROUP_NORM,
    OP_LAYER_NORM,
    OP_MAX_POOL2D,
    OP_AVG_POOL2D,
    OP_PIXEL_SHUFFLE,
    OP_GATE, /* not a file op: tanh(first half) * sigmoid(second half) over channels, fused at build */
    OP_COUNT
} op_kind;

typedef struct {
    op_kind kind;
    int n_in, n_out;
    int in_val[OP_MAX_IO], out_val[OP_MAX_IO]; /* value ids (layers.c) */
    gm_shape ins[OP_MAX_IO], outs[OP_MAX_IO];
    gm_shape in, out; /* ins[0], outs[0] */
    /* linear: weight (I, O), transposed at load; conv2d: (Cout, Cin*kh*kw);
     * conv_transpose2d: (Cin, Cout/g*kh*kw) as in the file, (Cin,
     * kh*kw*Cout/g) once the graph is built (g = groups; conv2d's rows are
     * Cin/g*kh*kw long); embedding: (num, dim) as in the file. bias
     * (O) or (Cout), zeros when the file has none. */
    float *weight, *bias;
    /* standalone batch_norm: per channel; prelu: scale the slope per
     * channel; instance / group norm: the affine weight and bias per
     * channel, layer_norm per normalized value */
    float *scale, *shift;
    /* convolutions: kernel, stride, padding before the first row / column
     * (conv2d "same" pads any odd extra after the last), dilation, groups */
    int kh, kw, sh, sw, ph, pw, dh, dw, groups;
    /* conv2d, once the graph is built: the kernel taps (ky * kw + kx) with a
     * non-zero weight for some channel pair, and the weight without the
     * others, (Cout, Cin/g * ntaps). A conv2d with two inputs has an add
     * fused (layers.c): y = conv(x) + r, r (in_val[1]) of y's shape, bstr[1]
     * the add's strides for r */
    int ntaps, *taps;
    float *wtaps;
    int axis; /* concat / split: the per-sample dimension */
    /* pad: [left, right, top, bottom] of the last two dimensions, the mode
     * and the zero mode's value; upsample: the mode and whether corners
     * align */
    int pads[4], mode;
    float value;
    bool align_corners;
    int rows; /* embedding: rows of the table */
    /* add, mul, expand: the output as [d0, d1, d2] and, per input, the
     * strides that walk it (0 along a broadcast dimension) */
    int bdim[3], bstr[2][3];
    /* an activation's parameters, standalone or fused: leaky_relu slope;
     * elu alpha; gelu 1 for the tanh approximation; softplus beta and
     * threshold; hardtanh min and max */
    float a0, a1;
    double eps;    /* instance_norm (without running stats), group_norm, layer_norm */
    op_kind act;   /* linear / convolutions: a fused activation, or OP_COUNT for none */
    bool nhwc_in;  /* conv_transpose2d whose input is another's channels-last output */
    bool nhwc_out; /* conv_transpose2d whose only consumer is another: output channels-last */
} layer;

typedef struct {
    float *col, *aux;
    int chunk; /* samples per im2col chunk */
} op_scratch;

static inline bool op_has_weights(op_kind k) { return k == OP_LINEAR || k == OP_CONV2D || k == OP_CONV_T2D; }
/* the elementwise functions with scalar parameters, which a linear or
 * convolution can apply in its bias pass */
static inline bool op_is_activation(op_kind k) {
    return k == OP_RELU || k == OP_LEAKY_RELU || k == OP_SIGMOID || k == OP_TANH || k == OP_ELU || k == OP_GELU ||
           k == OP_SILU || k == OP_SOFTPLUS || k == OP_HARDTANH;
}

/* ops_dense.c */
void op_linear(const layer *L, int B, const float *x, float *y);
/* r: a fused add's other input, of y's shape (conv2d's in_val[1]), or NULL */
void op_conv2d(const layer *L, int B, const float *x, const float *r, float *y, const op_scratch *s);
int op_conv_t2d(const layer *L, int B, const float *x, float *y, const op_scratch *s);

/* ops_elem.c: y = act(x) for an activation kind (in place when y == x); any
 * other kind copies */
void op_activate(op_kind act, float a0, float a1, const float *x, float *y, size_t n);
/* Splits B samples of `per` values over the compute threads when that pays. */
void op_split_values(int B, size_t per, int (*fn)(void *, int, int), void *ctx);
/* batch_norm (not folded), activations not fused, reshape, flatten */
void op_elementwise(const layer *L, int B, const float *x, float *y);
/* instance_norm, group_norm, layer_norm, softmax, prelu */
void op_norm(const layer *L, int B, const float *x, float *y);
/* max_pool2d, avg_pool2d (kernel kh x kw, stride, padding, dilation of
 * the conv fields; avg: count_include_pad in align_corners), pixel_shuffle
 * (factor in groups) */
void op_pool(const layer *L, int B, const float *x, float *y);
/* gate: y = tanh(x[:half]) * sigmoid(x[half:]) over each sample's values */
void op_gate(const layer *L, int B, const float *x, float *y);
/* pad and upsample, over the last two dimensions of each sample */
void op_resample(const layer *L, int B, const float *x, float *y);
enum { PAD_ZERO, PAD_REFLECT, PAD_REPLICATE, UP_NEAREST, UP_BILINEAR };
/* add, mul, concat, split, expand, embedding: x[k] is input k, y[k] output k */
void op_graph(const layer *L, int B, const float *const *x, float *const *y);

#endif
