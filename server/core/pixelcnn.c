/*
 * pixelcnn.c - autoregressive image models over pixels in raster order
 * (PixelCNN, gated PixelCNN; docs/model-files.md, "pixelcnn").
 *
 * log p(x) = sum_i log p(x_i | x_<i): the network (metadata gm.network)
 * maps the image [C, H, W] (and, for a class-conditional model, the label)
 * to one Bernoulli logit per pixel and channel, the logit of x_i computed
 * from the pixels before i only. So one batched forward pass scores an
 * image exactly; a conditional model's log p(x) without a label is the
 * mixture over its classes with equal weight, log (1/K) sum_y p(x | y).
 * The batch goes through the network a few images at a time (PASS_FLOATS),
 * which keeps every activation in cache between its writer and its
 * readers: 1.2x the rate of whole-batch passes at batch 64.
 *
 * Loading refuses a network that is not causal, twice over: the plan of
 * pixelcnn_cache.c proves, from the kernel taps with non-zero weights, that
 * no output at any position depends on its own or a later pixel; and the
 * network as served is run on a random binary image and on copies with one
 * pixel flipped, 16 pixels spread over the image (causal.c; every channel
 * of each), one image at a time, and no output at or before the flipped
 * pixel may move.
 *
 * Sampling draws pixel after pixel with the cached sampler, at the row's
 * temperature; the log p it returns is at temperature 1, like NADE's.
 * Completion is the same sampler started from the kept prefix: the
 * positions the kept pixels need are computed once, then sampling goes on.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "causal.h"
#include "family.h"
#include "gm/pixelcnn.h"
#include "graph.h"
#include "pixelcnn_cache.h"
#include "vmath.h"

/* log p runs the network over a few images at a time, at most PASS_FLOATS
 * values of its largest activation per pass (one image of the bundled
 * model's 64 x 28 x 28), so that each value stays in the core's cache from
 * the op that writes it to the ops that read it */
#define PASS_FLOATS (1 << 16)

typedef struct {
    gm_net *net;
    pc_plan *plan;
    bool conditional;
    int pass_rows; /* images per forward pass */
} pixelcnn;

static void pixelcnn_free(void *p) {
    pixelcnn *m = p;
    if (!m) return;
    pc_plan_free(m->plan);
    gm_net_free(m->net);
    free(m);
}

static const gm_net *pixelcnn_net(const void *p, const char *name) {
    const pixelcnn *m = p;
    return strcmp(name, "network") == 0 ? m->net : NULL;
}

/* Forward of B images (channels-last) with one label for all rows (-1:
 * none): logits channels-last. */
static int logits_of(const pixelcnn *m, const gm_model_info *info, int B, const float *x, int label, float *out) {
    size_t n = (size_t)B * info->dim;
    float *chw = malloc(n * sizeof *chw), *y = malloc(n * sizeof *y), *lab = malloc((size_t)B * sizeof *lab);
    int rc = -1;
    if (chw && y && lab) {
        gm_hwc_to_chw(info, B, x, chw);
        for (int r = 0; r < B; r++) lab[r] = (float)label;
        rc = 0;
        for (int b0 = 0; b0 < B && !rc; b0 += m->pass_rows) {
            const float *in[2] = {chw + (size_t)b0 * info->dim, lab + b0};
            int nb = B - b0 < m->pass_rows ? B - b0 : m->pass_rows;
            rc = gm_net_forward_inputs(m->net, nb, in, y + (size_t)b0 * info->dim) ? -1 : 0;
        }
        if (!rc) gm_chw_to_hwc(info, B, y, out);
    }
    free(chw);
    free(y);
    free(lab);
    return rc;
}

/* The causality check's view of the network: one image, label 0 if conditional. */
typedef struct {
    const pixelcnn *m;
    const gm_model_info *info;
} causal_view;

static int causal_logits(const void *p, const float *x, float *y) {
    const causal_view *v = p;
    return logits_of(v->m, v->info, 1, x, v->m->conditional ? 0 : -1, y);
}

static void *pixelcnn_load(const gm_st *st, gm_model_info *info, char err[GM_ERR_LEN]) {
    const char *L = gm_st_label(st), *lik = gm_st_meta(st, "gm.likelihood");
    if (lik && strcmp(lik, "bernoulli") != 0) {
        gm_errorf(err,
                  "%s: metadata \"gm.likelihood\" = \"%s\": a pixelcnn serves \"bernoulli\" (one logit per "
                  "pixel of a binary image)",
                  L, lik);
        return NULL;
    }
    const char *json = gm_st_meta(st, "gm.network");
    if (!json) {
        gm_errorf(err,
                  "%s: metadata \"gm.network\" (the layer graph from the image to per-pixel logits) is "
                  "required",
                  L);
        return NULL;
    }
    char names[GM_NET_MAX_INPUTS][GM_NET_NAME_LEN];
    int n = gm_net_input_names(st, "gm.network", names, err);
    if (n < 0) return NULL;
    bool image_only = n == 0 || (n == 1 && !strcmp(names[0], "image"));
    bool with_label = n == 2 && !strcmp(names[0], "image") && !strcmp(names[1], "label");
    if (!image_only && !with_label) {
        gm_errorf(err, "%s: metadata \"gm.network_inputs\" must be [\"image\"] or [\"image\", \"label\"]", L);
        return NULL;
    }
    if (with_label && info->num_classes < 1) {
        gm_errorf(err, "%s: gm.network takes a label, so metadata \"gm.num_classes\" must be at least 1", L);
        return NULL;
    }
    pixelcnn *m = calloc(1, sizeof *m);
    if (!m) {
        gm_errorf(err, "%s: out of memory", L);
        return NULL;
    }
    m->conditional = with_label;
    gm_net_input in[2] = {{"image", gm_image_shape(info)}, {"label", gm_shape0()}};
    if (!(m->net = gm_net_build_inputs(st, "gm.network", json, with_label ? 2 : 1, in, err))) goto fail;
    gm_shape os = gm_net_out_shape(m->net), want = gm_image_shape(info);
    if (os.rank != 3 || os.dim[0] != want.dim[0] || os.dim[1] != want.dim[1] || os.dim[2] != want.dim[2]) {
        gm_errorf(err, "%s: gm.network must output one logit per pixel, [%d, %d, %d], like its image input", L,
                  want.dim[0], want.dim[1], want.dim[2]);
        goto fail;
    }
    int largest = 1;
    for (int v = 0; v < gm_net_n_values(m->net); v++) {
        int size = gm_shape_size(gm_net_value_shape(m->net, v));
        if (size > largest) largest = size;
    }
    m->pass_rows = PASS_FLOATS / largest > 1 ? PASS_FLOATS / largest : 1;
    if (!(m->plan = pc_plan_build(m->net, L, "gm.network", err)) ||
        gm_check_causal(&(causal_view){m, info}, causal_logits, info->height, info->width, info->channels, L,
                        "gm.network", err))
        goto fail;
    info->binary = true;
    info->exact_logp = true;
    info->supports[GM_OP_SAMPLE] = info->supports[GM_OP_LOGP] = info->supports[GM_OP_COMPLETE] = true;
    return m;
fail:
    pixelcnn_free(m);
    return NULL;
}

/* log p(x | label) of B binary images from their logits. */
static void score(const gm_model_info *info, int B, const float *x, const float *logits, double *lp) {
    for (int r = 0; r < B; r++) {
        double s = 0.0;
        for (int i = 0; i < info->dim; i++) {
            double l = logits[(size_t)r * info->dim + i];
            s -= gm_softplus(x[(size_t)r * info->dim + i] != 0.0f ? -l : l);
        }
        lp[r] = s;
    }
}

static int pixelcnn_logp(const void *p, const gm_model_info *info, int B, const float *x, int K, gm_row *rows,
                         gm_logp_result *out) {
    const pixelcnn *m = p;
    int classes = m->conditional ? info->num_classes : 1, rc = -1;
    float *logits = malloc((size_t)B * info->dim * sizeof *logits);
    double *lp = malloc((size_t)B * sizeof *lp), *acc = malloc((size_t)B * classes * sizeof *acc);
    if (!logits || !lp || !acc) goto done;
    for (int y = 0; y < classes; y++) {
        if (logits_of(m, info, B, x, m->conditional ? y : -1, logits)) goto done;
        score(info, B, x, logits, lp);
        for (int r = 0; r < B; r++) acc[(size_t)r * classes + y] = lp[r];
    }
    for (int r = 0; r < B; r++) { /* log (1/K) sum_y p(x | y), max first */
        const double *a = acc + (size_t)r * classes;
        double mx = a[0], s = 0.0;
        for (int y = 1; y < classes; y++) mx = fmax(mx, a[y]);
        for (int y = 0; y < classes; y++) s += exp(a[y] - mx);
        out[r] = (gm_logp_result){mx + log(s / classes), NAN, NAN};
    }
    rc = 0;
done:
    free(logits);
    free(lp);
    free(acc);
    return rc;
}

static int sample_with(const pixelcnn *m, int B, gm_row *rows, float *pixels, double *logp, bool cached) {
    int *labels = m->conditional ? malloc((size_t)B * sizeof *labels) : NULL;
    if (m->conditional && !labels) return -1;
    for (int r = 0; m->conditional && r < B; r++) labels[r] = rows[r].label;
    int rc = pc_sample(m->plan, B, rows, labels, pixels, logp, cached);
    free(labels);
    return rc;
}

static int pixelcnn_sample(const void *p, const gm_model_info *info, int B, gm_row *rows, float *pixels, double *logp) {
    return sample_with(p, B, rows, pixels, logp, true);
}

static int pixelcnn_complete(const void *p, const gm_model_info *info, int B, const float *x, gm_row *rows,
                             float *pixels, double *logp, double *logp_rest) {
    const pixelcnn *m = p;
    int *labels = m->conditional ? malloc((size_t)B * sizeof *labels) : NULL;
    if (m->conditional && !labels) return -1;
    for (int r = 0; m->conditional && r < B; r++) labels[r] = rows[r].label;
    int rc = pc_complete(m->plan, B, rows, labels, x, pixels, logp, logp_rest);
    free(labels);
    return rc;
}

const gm_family_impl gm_pixelcnn_family = {
    .load = pixelcnn_load,
    .free = pixelcnn_free,
    .net = pixelcnn_net,
    .sample = pixelcnn_sample,
    .logp = pixelcnn_logp,
    .complete = pixelcnn_complete,
};

int gm_pixelcnn_sample_mode(const gm_model *model, int B, gm_row *rows, float *pixels, double *logp, bool cached) {
    if (gm_model_get_info(model)->family != GM_FAMILY_PIXELCNN) return -1;
    return sample_with(gm_model_state(model), B, rows, pixels, logp, cached);
}

long long gm_pixelcnn_positions(const gm_model *model, bool cached) {
    if (gm_model_get_info(model)->family != GM_FAMILY_PIXELCNN) return -1;
    return pc_positions(((const pixelcnn *)gm_model_state(model))->plan, cached);
}
