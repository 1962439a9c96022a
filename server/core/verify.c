/*
 * verify.c - self-verifying model files: the exporter stores probe inputs
 * and PyTorch's outputs for them next to the weights, and loading recomputes
 * every probe on the networks as built, so that a file which does not
 * compute what its PyTorch module computes is refused at load, not served.
 *
 * For a network N (encoder, decoder, generator, discriminator; a pixelcnn's
 * network; InfoGAN's q_network; a translator's generator and reverse) the tensors
 * are gm.probe.N.in.<input> [P, per-sample input shape] and gm.probe.N.out
 * [P, per-sample output shape] (F32, 1 <= P <= MAX_ROWS), the output being
 * the network's own (before the sigmoid or tanh the server applies after
 * it). The inputs are the network's own, named as in gm.N_inputs (a JSON
 * array), or by default "image" for encoders and discriminators and "z" for
 * decoders and generators (a class-conditional generator without the key
 * takes one z input: z and the one-hot label side by side). A value matches when
 * |got - want| <= 1e-4 max(1, max |want|), the maximum over the whole probe
 * output. Probe tensors are input like any other: every name, dtype, shape
 * and value is checked before it is used.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "family.h"

#define PREFIX "gm.probe."
#define MAX_ROWS 16 /* probe inputs per network: each costs one forward row */
#define TOLERANCE 1e-4

static const char *const NETS[] = {"encoder", "decoder",   "generator", "discriminator",
                                   "network", "q_network", "reverse"};
#define NETS_COUNT (int)(sizeof NETS / sizeof NETS[0])

static int net_index(const char *s, size_t n) {
    for (int i = 0; i < NETS_COUNT; i++)
        if (strlen(NETS[i]) == n && strncmp(s, NETS[i], n) == 0) return i;
    return -1;
}

/* Checks tensor t = [P, shape...] of F32 finite values. */
static int check_tensor(const gm_st *st, const char *net, const gm_tensor *t, int P, gm_shape shape,
                        char err[GM_ERR_LEN]) {
    const char *L = gm_st_label(st);
    bool ok = t->ndim == shape.rank + 1 && t->shape[0] == P;
    for (int d = 0; ok && d < shape.rank; d++) ok = t->shape[d + 1] == shape.dim[d];
    if (!ok) {
        char want[96];
        int at = snprintf(want, sizeof want, "[%d", P);
        for (int d = 0; d < shape.rank; d++) at += snprintf(want + at, sizeof want - (size_t)at, ", %d", shape.dim[d]);
        snprintf(want + at, sizeof want - (size_t)at, "]");
        return gm_errorf(err,
                         "%s: tensor '%s' (a probe of network \"%s\") must have shape %s: [probes, the "
                         "network's per-sample shape]",
                         L, t->name, net, want);
    }
    int64_t bad = gm_tensor_nonfinite(t);
    if (bad >= 0)
        return gm_errorf(err, "%s: tensor '%s' (a probe of network \"%s\") holds %g at index %lld", L, t->name, net,
                         (double)t->f32[bad], (long long)bad);
    return 0;
}

/* Recomputes the probes of one network: each of the net's named inputs
 * reads gm.probe.<name>.in.<input> (a "label" input holds class indices),
 * and the output must match gm.probe.<name>.out. */
static int verify_net(const gm_st *st, const gm_model_info *info, const gm_net *net, const char *name,
                      const gm_tensor *out, int *rows, char err[GM_ERR_LEN]) {
    const char *L = gm_st_label(st);
    const float *ins[GM_NET_MAX_INPUTS];
    int n = gm_net_inputs(net);
    float *got = NULL;
    if (out->ndim < 1 || out->shape[0] < 1 || out->shape[0] > MAX_ROWS)
        return gm_errorf(err, "%s: tensor '%s' must hold 1..%d probes along its first dimension", L, out->name,
                         MAX_ROWS);
    int P = (int)out->shape[0];
    for (int i = 0; i < n; i++) {
        const char *in_name = gm_net_input_name(net, i);
        char key[128];
        snprintf(key, sizeof key, PREFIX "%s.in.%s", name, in_name);
        const gm_tensor *t = gm_st_tensor(st, key);
        if (!t)
            return gm_errorf(err, "%s: probe of network \"%s\": tensor '%s' (input \"%s\") is missing", L, name, key,
                             in_name);
        if (check_tensor(st, name, t, P, gm_net_input_shape(net, i), err)) return -1;
        for (int64_t k = 0; !strcmp(in_name, "label") && k < P; k++) {
            float v = t->f32[k];
            if (!(v >= 0 && v < info->num_classes && v == floorf(v)))
                return gm_errorf(err, "%s: tensor '%s' value %lld is %g, not a class index in 0..%d", L, key,
                                 (long long)k, (double)v, info->num_classes - 1);
        }
        ins[i] = t->f32;
    }
    /* every input tensor of this network is one of its inputs */
    char in_prefix[64];
    int in_len = snprintf(in_prefix, sizeof in_prefix, PREFIX "%s.in.", name);
    for (int t = 0; t < gm_st_count(st); t++) {
        const char *tn = gm_st_at(st, t)->name;
        if (strncmp(tn, in_prefix, (size_t)in_len) != 0) continue;
        bool listed = false;
        for (int i = 0; i < n; i++) listed = listed || !strcmp(tn + in_len, gm_net_input_name(net, i));
        if (!listed) {
            char list[96] = "";
            for (int i = 0, at = 0; i < n && at < (int)sizeof list; i++)
                at += snprintf(list + at, sizeof list - (size_t)at, "%s%s", i ? ", " : "", gm_net_input_name(net, i));
            return gm_errorf(err, "%s: tensor '%s' is a probe input that network \"%s\" does not take (its inputs: %s)",
                             L, tn, name, list);
        }
    }
    gm_shape os = gm_net_out_shape(net);
    int out_size = gm_shape_size(os);
    /* the output as the network shapes it, or flattened */
    if (check_tensor(st, name, out, P, gm_shape1(out_size), err) && check_tensor(st, name, out, P, os, err)) return -1;
    if (!(got = malloc((size_t)P * out_size * sizeof *got)) || gm_net_forward_inputs(net, P, ins, got)) {
        free(got);
        return gm_errorf(err, "%s: out of memory for the probes of network \"%s\"", L, name);
    }
    size_t total = (size_t)P * out_size;
    double scale = 1.0;
    for (size_t i = 0; i < total; i++) scale = fmax(scale, fabs((double)out->f32[i]));
    for (size_t i = 0; i < total; i++) {
        double diff = fabs((double)got[i] - (double)out->f32[i]);
        if (!(diff <= TOLERANCE * scale)) {
            gm_errorf(err,
                      "%s: probe of network \"%s\" does not match: output %zu (probe %zu, value %zu) is %.9g "
                      "here but %.9g in '%s' (|difference| %.3g > %g x %.3g): the file does not compute what "
                      "the exported module did",
                      L, name, i, i / (size_t)out_size, i % (size_t)out_size, (double)got[i], (double)out->f32[i],
                      out->name, diff, TOLERANCE, scale);
            free(got);
            return -1;
        }
    }
    free(got);
    *rows = P;
    return 0;
}

int gm_verify_probes(const gm_st *st, const gm_model_info *info, const gm_family_impl *impl, const void *state,
                     char *summary, size_t summary_len, char err[GM_ERR_LEN]) {
    const char *L = gm_st_label(st);
    const gm_tensor *outs[NETS_COUNT] = {0};
    summary[0] = '\0';
    /* every gm.probe.* tensor names a network of this model, as out or in.<input> */
    for (int t = 0; t < gm_st_count(st); t++) {
        const gm_tensor *ten = gm_st_at(st, t);
        if (strncmp(ten->name, PREFIX, strlen(PREFIX)) != 0) continue;
        const char *rest = ten->name + strlen(PREFIX), *dot = strchr(rest, '.');
        int k = dot ? net_index(rest, (size_t)(dot - rest)) : -1;
        bool is_out = dot && !strcmp(dot, ".out"), is_in = dot && !strncmp(dot, ".in.", 4) && dot[4];
        if (k < 0 || !(is_out || is_in))
            return gm_errorf(
                err,
                "%s: tensor '%s': a probe must be named " PREFIX "<network>.out or " PREFIX
                "<network>.in.<input>, the network one of encoder, decoder, generator, discriminator, network, "
                "q_network, reverse",
                L, ten->name);
        if (!impl->net || !impl->net(state, NETS[k]))
            return gm_errorf(err, "%s: tensor '%s' probes network \"%s\", which this %s file does not have", L,
                             ten->name, NETS[k], gm_family_name(info->family));
        if (ten->dtype != GM_DTYPE_F32)
            return gm_errorf(err, "%s: tensor '%s': a probe must be F32 (found %s)", L, ten->name,
                             gm_dtype_name(ten->dtype));
        if (is_out) outs[k] = ten;
    }
    int rows[NETS_COUNT] = {0}, verified = 0;
    for (int k = 0; k < NETS_COUNT; k++) {
        const gm_net *net = impl->net ? impl->net(state, NETS[k]) : NULL;
        if (!net) continue;
        char in_prefix[64];
        int in_len = snprintf(in_prefix, sizeof in_prefix, PREFIX "%s.in.", NETS[k]);
        bool has_in = false;
        for (int t = 0; t < gm_st_count(st); t++)
            has_in = has_in || !strncmp(gm_st_at(st, t)->name, in_prefix, (size_t)in_len);
        if (!outs[k] && has_in)
            return gm_errorf(err, "%s: network \"%s\" has probe inputs but no tensor '" PREFIX "%s.out'", L, NETS[k],
                             NETS[k]);
        if (!outs[k]) continue;
        if (verify_net(st, info, net, NETS[k], outs[k], &rows[k], err)) return -1;
        verified++;
    }
    if (!verified) return 0;
    bool same = true;
    int first = -1, at = 0;
    for (int k = 0; k < NETS_COUNT; k++)
        if (rows[k]) {
            if (first < 0) first = k;
            same = same && rows[k] == rows[first];
        }
    for (int k = 0, i = 0; k < NETS_COUNT; k++) {
        if (!rows[k]) continue;
        at += snprintf(summary + at, summary_len - (size_t)at, "%s%s", i++ ? ", " : "", NETS[k]);
        if (!same) at += snprintf(summary + at, summary_len - (size_t)at, " (%d probe inputs)", rows[k]);
    }
    if (same)
        snprintf(summary + at, summary_len - (size_t)at, " verified (%d probe input%s%s)", rows[first],
                 rows[first] == 1 ? "" : "s", verified > 1 ? " each" : "");
    else snprintf(summary + at, summary_len - (size_t)at, " verified");
    return 0;
}
