/*
 * layers.h - the layer-graph interpreter (docs/model-format.md).
 *
 * A network is a JSON array of ops (linear, convolutions, normalizations,
 * activations, reshapes, and ops that combine values: add, mul, concat,
 * split, expand, embedding) whose weights are tensors of a safetensors
 * file. Each op reads named values (by default the previous op's output)
 * and may name its output, so a plain layer list and a graph with residual
 * additions, concatenations and several inputs are the same thing. Building
 * checks every shape along the graph and folds each batch_norm or
 * activation that directly consumes a linear or convolution's output (read
 * by nothing else) into that layer. Forward runs a whole batch per op, so
 * that linear layers and convolutions are single large sgemm calls.
 *
 * Per-sample shapes have rank 0 (one value, e.g. a class index), 1 [n],
 * 2 [a, b] or 3 [C, H, W] (NCHW, the batch dimension implicit).
 * Convolutions need rank 3. A built net is immutable and may be used from
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
    int rank;   /* 0 to 3 */
    int dim[3]; /* the first `rank` are used: [], [n], [a, b] or [C, H, W] */
} gm_shape;

int gm_shape_size(gm_shape s); /* 1 for rank 0 */
gm_shape gm_shape0(void);
gm_shape gm_shape1(int n);
gm_shape gm_shape3(int c, int h, int w);

typedef struct gm_net gm_net;

#define GM_NET_MAX_INPUTS 8
#define GM_NET_NAME_LEN 64 /* value names: 1 to 63 bytes */

typedef struct {
    const char *name; /* what ops' "inputs" call it, e.g. "z", "label", "image" */
    gm_shape shape;
} gm_net_input;

/* Builds the net described by `json` (a layer list or graph) over tensors
 * of st, for the n_inputs named inputs (1 to GM_NET_MAX_INPUTS, distinct
 * names); the first op reads inputs[0] unless it names its inputs. `what`
 * names the net in messages (e.g. the metadata key "gm.decoder"). Tensors
 * and names are copied: st, json and inputs may be freed afterwards. */
gm_net *gm_net_build_inputs(const gm_st *st, const char *what, const char *json, int n_inputs,
                            const gm_net_input *inputs, char err[GM_ERR_LEN]);

/* A net of one input of shape `in`, named by metadata "<what>_inputs" when
 * the file has it (it must then list exactly one name), else "image" for a
 * rank-3 input and "z" otherwise. */
gm_net *gm_net_build(const gm_st *st, const char *what, const char *json, gm_shape in, char err[GM_ERR_LEN]);
void gm_net_free(gm_net *net); /* accepts NULL */

/* The input names that metadata "<what>_inputs" (a JSON array of names in
 * forward() order, e.g. "gm.generator_inputs") lists: returns their count,
 * 0 when the file has no such key, or -1 with a message when it is not an
 * array of 1 to GM_NET_MAX_INPUTS distinct names of 1 to 63 bytes. */
int gm_net_input_names(const gm_st *st, const char *what, char names[GM_NET_MAX_INPUTS][GM_NET_NAME_LEN],
                       char err[GM_ERR_LEN]);

gm_shape gm_net_in_shape(const gm_net *net); /* input 0's */
gm_shape gm_net_out_shape(const gm_net *net);
int gm_net_layers(const gm_net *net); /* ops left after folding (dropout counts none) */
int gm_net_inputs(const gm_net *net);
const char *gm_net_input_name(const gm_net *net, int i);
gm_shape gm_net_input_shape(const gm_net *net, int i);

/* in[k]: (B, size of input k); out: (B, out_size). Returns 0, or -1 when
 * scratch memory cannot be allocated. */
int gm_net_forward_inputs(const gm_net *net, int B, const float *const *in, float *out);
/* The same for a net of one input. */
int gm_net_forward(const gm_net *net, int B, const float *in, float *out);

#endif
