/*
 * layers.h - the layer-list interpreter of SPEC.md §1.4.
 *
 * A network is a JSON array of ops (linear, conv2d, conv_transpose2d,
 * batch_norm, relu, sigmoid, tanh, leaky_relu, reshape, flatten) whose
 * weights are tensors of a safetensors file. Building it checks every shape
 * along the chain and folds each batch_norm that directly follows a linear
 * or convolution into that layer's weights (exact in real arithmetic).
 * Forward runs a whole batch per layer, so that linear layers and
 * convolutions (im2col / col2im) are single large sgemm calls.
 *
 * Per-sample shapes are either rank 1 [n] or rank 3 [C, H, W] (NCHW, the
 * batch dimension implicit). A built net is immutable and may be used from
 * several threads at once.
 */
#ifndef GM_LAYERS_H
#define GM_LAYERS_H

#include "gm/error.h"
#include "gm/safetensors.h"

/* Bounds every net keeps, per sample (batch row), so that a file cannot make
 * a batch need unbounded memory: at most GM_NET_MAX_VALUES values (16 MiB of
 * floats) at any layer's input or output, and at most GM_NET_MAX_COL values
 * (64 MiB) in one convolution's im2col / col2im buffer. gm_net_forward also
 * splits a batch into passes of at most GM_NET_PASS_VALUES activation values
 * (64 MiB per buffer), so that memory does not grow with the batch size.
 * Across its layers a net does at most GM_NET_MAX_MACS multiply-adds per
 * sample (seconds on one core) and holds at most GM_NET_MAX_WEIGHTS weight
 * values (256 MiB). Building a net that needs more is refused, naming the
 * layer. */
#define GM_NET_MAX_VALUES (1 << 22)
#define GM_NET_MAX_COL (1 << 24)
#define GM_NET_PASS_VALUES (1 << 24)
#define GM_NET_MAX_MACS (1LL << 33)
#define GM_NET_MAX_WEIGHTS (1 << 26)

typedef struct {
    int rank;   /* 1 or 3 */
    int dim[3]; /* [n] or [C, H, W] */
} gm_shape;

int gm_shape_size(gm_shape s);
gm_shape gm_shape1(int n);
gm_shape gm_shape3(int c, int h, int w);

typedef struct gm_net gm_net;

/* Builds the net described by `json` (a layer list) over tensors of st, for
 * inputs of shape `in`. `what` names the net in messages (e.g. the metadata
 * key "gm.decoder"). Tensors are copied: st may be freed afterwards. */
gm_net *gm_net_build(const gm_st *st, const char *what, const char *json, gm_shape in,
                     char err[GM_ERR_LEN]);
void gm_net_free(gm_net *net); /* accepts NULL */

gm_shape gm_net_in_shape(const gm_net *net);
gm_shape gm_net_out_shape(const gm_net *net);
int gm_net_layers(const gm_net *net); /* after folding */

/* in: (B, in_size); out: (B, out_size). Returns 0, or -1 when scratch
 * memory cannot be allocated. */
int gm_net_forward(const gm_net *net, int B, const float *in, float *out);

#endif
