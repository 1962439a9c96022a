/*
 * graph.h - read access to a built net's ops and values (internal), for code
 * that evaluates a graph its own way: the PixelCNN sampler computes each op
 * at chosen positions only (pixelcnn_cache.c).
 *
 * Values 0 .. gm_net_inputs() - 1 are the network's inputs; every op reads
 * and writes value ids (layer.in_val / out_val), in an order in which each
 * value is written before it is read. Ops are as built: batch norms and
 * activations folded into the layer before them, dropout gone.
 */
#ifndef GM_GRAPH_H
#define GM_GRAPH_H

#include "ops.h"

int gm_net_n_ops(const gm_net *net);
const layer *gm_net_op(const gm_net *net, int i);
int gm_net_n_values(const gm_net *net);
gm_shape gm_net_value_shape(const gm_net *net, int v);
int gm_net_out_value(const gm_net *net);

#endif
