/*
 * translator.c - image-to-image translation (docs/model-files.md): CycleGAN,
 * StarGAN and their kin.
 *
 * A generator maps an image to an image of the same shape in another
 * domain. A multi-domain translator (StarGAN) also takes the target
 * domain, one of gm.num_classes classes, as its "label" (the class index)
 * or "onehot" input; a two-domain one (CycleGAN) may carry the generator
 * of the other direction as gm.reverse, the pair naming its domains A and
 * B in gm.domains: gm.generator maps A to B, gm.reverse B to A. The
 * networks read images in the range they end in (gm.output "tanh": [-1, 1],
 * the default; "sigmoid": [0, 1]), so pixels are mapped there and back.
 *
 * Training pitted each generator against a discriminator and a cycle (or
 * reconstruction) loss; none of that defines a density of images, so the
 * family serves translate only, deterministically: no random numbers are
 * drawn.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "family.h"

#define MAX_DOMAIN_NAME 64

typedef enum { IN_IMAGE, IN_LABEL, IN_ONEHOT, IN_KINDS } tr_input;

static const char *const INPUT_NAMES[IN_KINDS] = {"image", "label", "onehot"};

typedef struct {
    gm_net *net;
    int n_inputs;
    tr_input inputs[GM_NET_MAX_INPUTS];
} generator;

typedef struct {
    generator fwd, rev; /* rev.net is NULL without gm.reverse */
    bool tanh_range;
    char domain[2][MAX_DOMAIN_NAME];
    const char *domain_ptrs[2];
} translator;

static void translator_free(void *p) {
    translator *m = p;
    if (!m) return;
    gm_net_free(m->fwd.net);
    gm_net_free(m->rev.net);
    free(m);
}

/* Builds gm.<net> over the inputs gm.<net>_inputs names (default: the
 * image alone), and checks that it ends in an image of the input's shape. */
static int build_generator(const gm_st *st, const gm_model_info *info, const char *net, generator *g,
                           char err[GM_ERR_LEN]) {
    const char *L = gm_st_label(st);
    char key[32], names[GM_NET_MAX_INPUTS][GM_NET_NAME_LEN];
    snprintf(key, sizeof key, "gm.%s", net);
    int n = gm_net_input_names(st, key, names, err), C = info->num_classes;
    if (n < 0) return -1;
    if (n == 0) {
        n = 1;
        strcpy(names[0], "image");
    }
    gm_net_input in[GM_NET_MAX_INPUTS];
    bool seen[IN_KINDS] = {0};
    for (int i = 0; i < n; i++) {
        int k = 0;
        while (k < IN_KINDS && strcmp(names[i], INPUT_NAMES[k]) != 0) k++;
        if (k == IN_KINDS)
            return gm_errorf(err,
                             "%s: metadata \"%s_inputs\" names input '%s'; a translator takes image, label and onehot",
                             L, key, names[i]);
        seen[k] = true;
        g->inputs[i] = (tr_input)k;
        in[i].name = INPUT_NAMES[k];
        in[i].shape = k == IN_IMAGE ? gm_image_shape(info) : k == IN_LABEL ? gm_shape0() : gm_shape1(C);
    }
    if (!seen[IN_IMAGE]) return gm_errorf(err, "%s: metadata \"%s_inputs\" must list \"image\"", L, key);
    if (seen[IN_LABEL] && seen[IN_ONEHOT])
        return gm_errorf(err, "%s: %s takes the target class as \"label\" or as \"onehot\", not both", L, key);
    if ((seen[IN_LABEL] || seen[IN_ONEHOT]) != (C > 0))
        return gm_errorf(err,
                         "%s: %s %s the target class but gm.num_classes is %d: a multi-domain translator "
                         "(num_classes > 0) takes it as \"label\" or \"onehot\", and only it does",
                         L, key, C ? "does not take" : "takes", C);
    g->n_inputs = n;
    const char *json = gm_st_meta(st, key);
    if (!json) return gm_errorf(err, "%s: metadata \"%s\" (a layer list) is required", L, key);
    if (!(g->net = gm_net_build_inputs(st, key, json, n, in, err))) return -1;
    gm_shape os = gm_net_out_shape(g->net), is = gm_image_shape(info);
    if (os.rank != 3 || os.dim[0] != is.dim[0] || os.dim[1] != is.dim[1] || os.dim[2] != is.dim[2])
        return gm_errorf(err,
                         "%s: %s must end in an image [C, H, W] = [%d, %d, %d], the shape of its input image "
                         "(gm.image)",
                         L, key, is.dim[0], is.dim[1], is.dim[2]);
    return 0;
}

/* gm.domains: a JSON array of two different names, neither "forward" nor
 * "reverse" (those name the directions themselves). */
static int parse_domains(const gm_st *st, translator *m, char err[GM_ERR_LEN]) {
    const char *L = gm_st_label(st), *v = gm_st_meta(st, "gm.domains");
    if (!v)
        return gm_errorf(err,
                         "%s: a translator with a reverse generator (gm.reverse) needs metadata \"gm.domains\": "
                         "the names of its two domains, [A, B]",
                         L);
    json_t *arr = json_loads(v, 0, NULL);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < 2; i++) {
        json_t *s = json_array_get(arr, i);
        size_t len = json_string_length(s);
        if (!json_is_array(arr) || json_array_size(arr) != 2 || !json_is_string(s) || len == 0 ||
            len >= MAX_DOMAIN_NAME || strlen(json_string_value(s)) != len)
            rc = gm_errorf(err, "%s: metadata \"gm.domains\" must be a JSON array of two names of 1 to %d bytes", L,
                           MAX_DOMAIN_NAME - 1);
        else memcpy(m->domain[i], json_string_value(s), len + 1);
    }
    json_decref(arr);
    if (rc) return rc;
    if (!strcmp(m->domain[0], m->domain[1]))
        return gm_errorf(err, "%s: metadata \"gm.domains\" names one domain twice (\"%s\")", L, m->domain[0]);
    for (int i = 0; i < 2; i++)
        if (!strcmp(m->domain[i], "forward") || !strcmp(m->domain[i], "reverse"))
            return gm_errorf(err, "%s: metadata \"gm.domains\": \"%s\" names a direction; name the domains otherwise",
                             L, m->domain[i]);
    m->domain_ptrs[0] = m->domain[0];
    m->domain_ptrs[1] = m->domain[1];
    return 0;
}

static void *translator_load(const gm_st *st, gm_model_info *info, char err[GM_ERR_LEN]) {
    const char *out = gm_st_meta(st, "gm.output");
    if (out && strcmp(out, "tanh") != 0 && strcmp(out, "sigmoid") != 0) {
        gm_errorf(err, "%s: metadata \"gm.output\" must be tanh or sigmoid (found \"%s\")", gm_st_label(st), out);
        return NULL;
    }
    translator *m = calloc(1, sizeof *m);
    if (!m) {
        gm_errorf(err, "out of memory");
        return NULL;
    }
    m->tanh_range = !out || strcmp(out, "tanh") == 0;
    if (build_generator(st, info, "generator", &m->fwd, err)) goto fail;
    if (gm_st_meta(st, "gm.reverse")) {
        if (parse_domains(st, m, err) || build_generator(st, info, "reverse", &m->rev, err)) goto fail;
    } else if (gm_st_meta(st, "gm.domains")) {
        gm_errorf(err,
                  "%s: metadata \"gm.domains\" names the domains of a reverse generator, but the file has no "
                  "\"gm.reverse\"",
                  gm_st_label(st));
        goto fail;
    }
    info->binary = false;
    info->reverse = m->rev.net != NULL;
    info->domains = m->rev.net ? m->domain_ptrs : NULL;
    info->supports[GM_OP_TRANSLATE] = true;
    return m;
fail:
    translator_free(m);
    return NULL;
}

/* x: (B, D) channels last in [0, 1] -> pixels: (B, D) channels last in
 * [0, 1], through the generator of the direction asked; labels: (B) target
 * classes of a multi-domain model. pixels may be x. */
static int translator_translate(const void *p, const gm_model_info *info, int B, const float *x, const int *labels,
                                bool reverse, float *pixels) {
    const translator *m = p;
    const generator *g = reverse ? &m->rev : &m->fwd;
    int C = info->num_classes;
    size_t n = (size_t)B * info->dim;
    float *img = malloc(n * sizeof *img), *y = calloc(n, sizeof *y), *cls = NULL;
    const float *in[GM_NET_MAX_INPUTS];
    int rc = -1;
    if (!img || !y) goto done;
    for (int i = 0; i < g->n_inputs; i++) {
        if (g->inputs[i] == IN_IMAGE) in[i] = img;
        else {
            int width = g->inputs[i] == IN_LABEL ? 1 : C;
            if (!(cls = calloc((size_t)B * width, sizeof *cls))) goto done;
            for (int r = 0; r < B; r++)
                cls[(size_t)r * width + (g->inputs[i] == IN_LABEL ? 0 : labels[r])] =
                    g->inputs[i] == IN_LABEL ? (float)labels[r] : 1.0f;
            in[i] = cls;
        }
    }
    /* to the networks' range, channels first: y holds the mapped image until img takes it */
    for (size_t i = 0; i < n; i++) y[i] = m->tanh_range ? 2.0f * x[i] - 1.0f : x[i];
    gm_hwc_to_chw(info, B, y, img);
    if (gm_net_forward_inputs(g->net, B, in, y)) goto done;
    gm_chw_to_hwc(info, B, y, pixels);
    for (size_t i = 0; i < n; i++) {
        float v = m->tanh_range ? 0.5f * (pixels[i] + 1.0f) : pixels[i];
        pixels[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
    rc = 0;
done:
    free(img);
    free(y);
    free(cls);
    return rc;
}

static const gm_net *translator_net(const void *p, const char *name) {
    const translator *m = p;
    return !strcmp(name, "generator") ? m->fwd.net : !strcmp(name, "reverse") ? m->rev.net : NULL;
}

const gm_family_impl gm_translator_family = {
    .load = translator_load,
    .net = translator_net,
    .free = translator_free,
    .translate = translator_translate,
};
