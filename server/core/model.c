/*
 * model.c - loads a model file (docs/model-files.md) and dispatches operations to its
 * family.
 *
 * The metadata every family shares is read and validated here once (format,
 * family, image shape, latent size, classes); a family's own tensors and
 * networks are its load function's business. Binary models get their inputs
 * binarized at 0.5 here, so that no family repeats it.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "family.h"
#include "gm/model.h"
#include "vmath.h"

#define MAX_IMAGE_SIDE 4096
#define MAX_IMAGE_DIM GM_NET_MAX_VALUES /* an image must fit through a net */
#define MAX_LATENT 65536
#define MAX_CLASSES 100000

struct gm_model {
    gm_st *st;
    const gm_family_impl *impl;
    void *state;
    gm_model_info info;
    char **class_names;
    char probes[192]; /* what the load-time probes verified; "" when none */
};

static const char *const FAMILY_NAMES[GM_FAMILY_COUNT] = {"nade",     "vae",        "gan",     "aae",
                                                          "pixelcnn", "translator", "pixelrnn"};
static const char *const OP_NAMES[GM_OP_COUNT] = {"sample",       "logp",        "encode",   "decode",
                                                  "discriminate", "reconstruct", "complete", "translate"};
static const gm_family_impl *const FAMILIES[GM_FAMILY_COUNT] = {
    &gm_nade_family,     &gm_vae_family,        &gm_gan_family,     &gm_aae_family,
    &gm_pixelcnn_family, &gm_translator_family, &gm_pixelrnn_family};

const char *gm_family_name(gm_family f) { return f < GM_FAMILY_COUNT ? FAMILY_NAMES[f] : "?"; }
const char *gm_op_name(gm_op op) { return op < GM_OP_COUNT ? OP_NAMES[op] : "?"; }

/* A metadata integer in [lo, hi]; absent gives dflt (or an error when
 * required, signalled by dflt < lo). */
static int meta_int(const gm_st *st, const char *key, long lo, long hi, long dflt, int *out, char err[GM_ERR_LEN]) {
    const char *v = gm_st_meta(st, key);
    if (!v) {
        if (dflt < lo) return gm_errorf(err, "%s: metadata \"%s\" is required", gm_st_label(st), key);
        *out = (int)dflt;
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi)
        return gm_errorf(err, "%s: metadata \"%s\" = \"%s\" must be an integer in %ld..%ld", gm_st_label(st), key, v,
                         lo, hi);
    *out = (int)n;
    return 0;
}

/* The decimal integer in 1..max at *p, followed by `sep`, or -1. (Not
 * sscanf: its %d is undefined for numbers beyond int.) */
static long side(const char **p, long max, char sep) {
    char *end;
    if (**p < '0' || **p > '9') return -1;
    errno = 0;
    long n = strtol(*p, &end, 10);
    if (errno || n < 1 || n > max || *end != sep) return -1;
    *p = sep ? end + 1 : end;
    return n;
}

static int parse_image(const gm_st *st, gm_model_info *info, char err[GM_ERR_LEN]) {
    const char *v = gm_st_meta(st, "gm.image"), *p = v;
    long h, w, c;
    if (!v)
        return gm_errorf(err, "%s: metadata \"gm.image\" (\"HxWxC\", e.g. \"28x28x1\") is required", gm_st_label(st));
    if ((h = side(&p, MAX_IMAGE_SIDE, 'x')) < 0 || (w = side(&p, MAX_IMAGE_SIDE, 'x')) < 0 ||
        (c = side(&p, 4, 0)) < 0 || h * w * c > MAX_IMAGE_DIM)
        return gm_errorf(err,
                         "%s: metadata \"gm.image\" = \"%s\" must be \"HxWxC\" with sides 1..%d, C 1..4 and "
                         "at most %d values",
                         gm_st_label(st), v, MAX_IMAGE_SIDE, MAX_IMAGE_DIM);
    info->height = (int)h;
    info->width = (int)w;
    info->channels = (int)c;
    info->dim = (int)(h * w * c);
    return 0;
}

static int parse_classes(gm_model *m, char err[GM_ERR_LEN]) {
    const gm_st *st = m->st;
    if (meta_int(st, "gm.num_classes", 0, MAX_CLASSES, 0, &m->info.num_classes, err)) return -1;
    const char *v = gm_st_meta(st, "gm.class_names");
    if (!v) return 0;
    json_error_t jerr;
    json_t *arr = json_loads(v, 0, &jerr);
    int rc = 0;
    if (!json_is_array(arr) || (int)json_array_size(arr) != m->info.num_classes) {
        rc = gm_errorf(err, "%s: metadata \"gm.class_names\" must be a JSON array of gm.num_classes = %d strings",
                       gm_st_label(st), m->info.num_classes);
        goto done;
    }
    m->class_names = calloc((size_t)m->info.num_classes + 1, sizeof(char *));
    if (!m->class_names) {
        rc = gm_errorf(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < m->info.num_classes; i++) {
        json_t *s = json_array_get(arr, (size_t)i);
        if (!json_is_string(s)) {
            rc = gm_errorf(err, "%s: metadata \"gm.class_names\" entry %d is not a string", gm_st_label(st), i);
            goto done;
        }
        if (!(m->class_names[i] = strdup(json_string_value(s)))) {
            rc = gm_errorf(err, "out of memory");
            goto done;
        }
    }
    m->info.class_names = (const char *const *)m->class_names;
done:
    json_decref(arr);
    return rc;
}

gm_model *gm_model_load(const char *path, char err[GM_ERR_LEN]) {
    gm_model *m = calloc(1, sizeof *m);
    if (!m) {
        gm_errorf(err, "%s: out of memory", path);
        return NULL;
    }
    if (!(m->st = gm_st_load(path, err))) goto fail;
    memcpy(m->info.sha256, gm_st_sha256(m->st), sizeof m->info.sha256);
    const char *fmt = gm_st_meta(m->st, "gm.format");
    if (!fmt) {
        gm_errorf(err,
                  "%s: a safetensors file without gm.* metadata (no gm.format: a plain state_dict?); "
                  "gmserve serves files written by its exporter, which adds the networks and their "
                  "metadata: python3 -m gmexport (README: Serve your own PyTorch model)",
                  path);
        goto fail;
    }
    if (strcmp(fmt, "1") != 0) {
        gm_errorf(err, "%s: metadata \"gm.format\" must be \"1\" (found \"%s\")", path, fmt);
        goto fail;
    }
    const char *fam = gm_st_meta(m->st, "gm.family");
    int f = 0;
    while (f < GM_FAMILY_COUNT && !(fam && strcmp(fam, FAMILY_NAMES[f]) == 0)) f++;
    if (fam && strcmp(fam, "classifier") == 0) {
        gm_errorf(err,
                  "%s: the evaluation classifier (gm.family \"classifier\"), read by gmserve eval "
                  "--classifier: not a model the daemon serves",
                  path);
        goto fail;
    }
    if (f == GM_FAMILY_COUNT) {
        gm_errorf(err,
                  "%s: metadata \"gm.family\" must be nade, vae, gan, aae, pixelcnn, translator or pixelrnn (found %s)",
                  path, fam ? fam : "none");
        goto fail;
    }
    m->info.family = (gm_family)f;
    m->impl = FAMILIES[f];
    if (parse_image(m->st, &m->info, err) || parse_classes(m, err)) goto fail;
    if (f != GM_FAMILY_NADE && f != GM_FAMILY_PIXELCNN && f != GM_FAMILY_TRANSLATOR && f != GM_FAMILY_PIXELRNN &&
        meta_int(m->st, "gm.latent_dim", 1, MAX_LATENT, 0, &m->info.latent_dim, err))
        goto fail;
    if (!(m->state = m->impl->load(m->st, &m->info, err)) ||
        gm_verify_probes(m->st, &m->info, m->impl, m->state, m->probes, sizeof m->probes, err) ||
        gm_model_selftest(m, err))
        goto fail;
    int own = m->impl->own_probes ? m->impl->own_probes(m->state) : 0;
    if (own > 0) snprintf(m->probes, sizeof m->probes, "network verified (%d probe input%s)", own, own == 1 ? "" : "s");
    return m;
fail:
    gm_model_free(m);
    return NULL;
}

void gm_model_free(gm_model *m) {
    if (!m) return;
    if (m->state) m->impl->free(m->state);
    if (m->class_names)
        for (int i = 0; i < m->info.num_classes; i++) free(m->class_names[i]);
    free(m->class_names);
    gm_st_free(m->st);
    free(m);
}

const gm_model_info *gm_model_get_info(const gm_model *m) { return &m->info; }
const void *gm_model_state(const gm_model *m) { return m->state; }
const char *gm_model_probes(const gm_model *m) { return m->probes; }
const char *gm_model_meta(const gm_model *m, const char *key) { return gm_st_meta(m->st, key); }
int gm_model_meta_count(const gm_model *m) { return gm_st_meta_count(m->st); }
const char *gm_model_meta_at(const gm_model *m, int i, const char **key) { return gm_st_meta_at(m->st, i, key); }

/* Every operation runs with FTZ/DAZ on (vmath.h says why that is safe) and
 * gives the caller's floating-point mode back as it found it. */

/* Binary models see x >= 0.5 as 1; others see x as given. Returns the array
 * the family should read (a fresh copy for binary models, to be freed). */
static const float *prepare_input(const gm_model *m, int B, const float *pixels, float **owned) {
    *owned = NULL;
    if (!m->info.binary) return pixels;
    size_t n = (size_t)B * m->info.dim;
    float *x = malloc(n * sizeof *x);
    if (!x) return NULL;
    for (size_t i = 0; i < n; i++) x[i] = pixels[i] >= 0.5f ? 1.0f : 0.0f;
    *owned = x;
    return x;
}

int gm_model_sample(const gm_model *m, int B, gm_row *rows, float *pixels, double *logp) {
    if (!m->info.supports[GM_OP_SAMPLE]) return -1;
    unsigned fp = gm_fp_flush_begin();
    int rc = m->impl->sample(m->state, &m->info, B, rows, pixels, logp);
    gm_fp_flush_end(fp);
    return rc;
}

int gm_model_logp(const gm_model *m, int B, const float *pixels, int K, gm_row *rows, gm_logp_result *out) {
    if (!m->info.supports[GM_OP_LOGP]) return -1;
    float *owned;
    const float *x = prepare_input(m, B, pixels, &owned);
    unsigned fp = gm_fp_flush_begin();
    int rc = x ? m->impl->logp(m->state, &m->info, B, x, K, rows, out) : -1;
    gm_fp_flush_end(fp);
    free(owned);
    return rc;
}

int gm_model_encode(const gm_model *m, int B, const float *pixels, float *z, float *logvar) {
    if (!m->info.supports[GM_OP_ENCODE]) return -1;
    float *owned;
    const float *x = prepare_input(m, B, pixels, &owned);
    unsigned fp = gm_fp_flush_begin();
    int rc = x ? m->impl->encode(m->state, &m->info, B, x, z, logvar) : -1;
    gm_fp_flush_end(fp);
    free(owned);
    return rc;
}

int gm_model_decode_codes(const gm_model *m, int B, const float *z, const int *labels, const float *codes,
                          const int *cats, float *pixels) {
    if (!m->info.supports[GM_OP_DECODE]) return -1;
    unsigned fp = gm_fp_flush_begin();
    int rc = m->impl->decode(m->state, &m->info, B, z, labels, codes, cats, pixels);
    gm_fp_flush_end(fp);
    return rc;
}

int gm_model_decode(const gm_model *m, int B, const float *z, const int *labels, float *pixels) {
    return gm_model_decode_codes(m, B, z, labels, NULL, NULL, pixels);
}

int gm_model_discriminate(const gm_model *m, int B, const float *pixels, float *logits) {
    if (!m->info.supports[GM_OP_DISCRIMINATE]) return -1;
    unsigned fp = gm_fp_flush_begin();
    int rc = m->impl->discriminate(m->state, &m->info, B, pixels, logits);
    gm_fp_flush_end(fp);
    return rc;
}

int gm_model_reconstruct(const gm_model *m, int B, const float *pixels, float *out) {
    if (!m->info.supports[GM_OP_RECONSTRUCT]) return -1;
    float *owned;
    const float *x = prepare_input(m, B, pixels, &owned);
    unsigned fp = gm_fp_flush_begin();
    int rc = x ? m->impl->reconstruct(m->state, &m->info, B, x, out) : -1;
    gm_fp_flush_end(fp);
    free(owned);
    return rc;
}

int gm_model_complete(const gm_model *m, int B, const float *pixels, gm_row *rows, float *out, double *logp,
                      double *logp_rest) {
    if (!m->info.supports[GM_OP_COMPLETE]) return -1;
    for (int r = 0; r < B; r++)
        if (rows[r].given < 0 || rows[r].given > m->info.dim) return -1;
    float *owned;
    const float *x = prepare_input(m, B, pixels, &owned);
    unsigned fp = gm_fp_flush_begin();
    int rc = x ? m->impl->complete(m->state, &m->info, B, x, rows, out, logp, logp_rest) : -1;
    gm_fp_flush_end(fp);
    free(owned);
    return rc;
}

int gm_model_translate(const gm_model *m, int B, const float *pixels, const int *labels, bool reverse, float *out) {
    if (!m->info.supports[GM_OP_TRANSLATE] || (reverse && !m->info.reverse) || (m->info.num_classes > 0) != !!labels)
        return -1;
    for (int r = 0; labels && r < B; r++)
        if (labels[r] < 0 || labels[r] >= m->info.num_classes) return -1;
    unsigned fp = gm_fp_flush_begin();
    int rc = m->impl->translate(m->state, &m->info, B, pixels, labels, reverse, out);
    gm_fp_flush_end(fp);
    return rc;
}

/* ---- helpers for the families ---- */

gm_net *gm_family_net(const gm_st *st, const char *key, gm_shape in, int out_size, char err[GM_ERR_LEN]) {
    const char *json = gm_st_meta(st, key);
    if (!json) {
        gm_errorf(err, "%s: metadata \"%s\" (a layer list) is required", gm_st_label(st), key);
        return NULL;
    }
    gm_net *net = gm_net_build(st, key, json, in, err);
    if (net && gm_shape_size(gm_net_out_shape(net)) != out_size) {
        gm_errorf(err, "%s: %s ends with %d values per sample but %d are needed", gm_st_label(st), key,
                  gm_shape_size(gm_net_out_shape(net)), out_size);
        gm_net_free(net);
        return NULL;
    }
    return net;
}

gm_shape gm_image_shape(const gm_model_info *info) { return gm_shape3(info->channels, info->height, info->width); }

void gm_hwc_to_chw(const gm_model_info *info, int B, const float *src, float *dst) {
    int C = info->channels, P = info->height * info->width;
    for (int b = 0; b < B; b++)
        for (int p = 0; p < P; p++)
            for (int c = 0; c < C; c++) dst[((size_t)b * C + c) * P + p] = src[((size_t)b * P + p) * C + c];
}

void gm_chw_to_hwc(const gm_model_info *info, int B, const float *src, float *dst) {
    int C = info->channels, P = info->height * info->width;
    for (int b = 0; b < B; b++)
        for (int p = 0; p < P; p++)
            for (int c = 0; c < C; c++) dst[((size_t)b * P + p) * C + c] = src[((size_t)b * C + c) * P + p];
}

/* ---- the load-time self-test ---- */

#define SELFTEST_ROWS 2
#define SELFTEST_SEED 15u
#define SELFTEST_K 2

/* -1 with a message when one of n values is not finite (or, for pixels, not
 * in [0, 1]). */
static int check_values(const gm_model *m, gm_op op, const char *what, const float *v, size_t n, bool pixels,
                        char err[GM_ERR_LEN]) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]) || (pixels && !(v[i] >= 0.0f && v[i] <= 1.0f)))
            return gm_errorf(err,
                             "%s: self-test: %s of %d rows (seed %u) gave %s %g at index %zu (%s); the weights "
                             "overflow float range",
                             gm_st_label(m->st), gm_op_name(op), SELFTEST_ROWS, SELFTEST_SEED, what, (double)v[i], i,
                             pixels ? "pixels must be in [0, 1]" : "values must be finite");
    return 0;
}

static void selftest_rows(const gm_model *m, gm_row *rows) {
    for (int r = 0; r < SELFTEST_ROWS; r++) {
        rows[r] = (gm_row){.temperature = 1.0f, .label = m->info.num_classes ? r % m->info.num_classes : -1};
        gm_rng_seed(&rows[r].rng, SELFTEST_SEED, (uint64_t)r);
    }
}

int gm_model_selftest(const gm_model *m, char err[GM_ERR_LEN]) {
    const gm_model_info *in = &m->info;
    enum { B = SELFTEST_ROWS };
    int D = in->dim, E = in->encode_dim > in->latent_dim ? in->encode_dim : in->latent_dim, labels[B];
    gm_row rows[B];
    gm_logp_result lp[B];
    float *px = malloc((size_t)B * D * sizeof *px), *z = malloc((size_t)B * (E + 1) * sizeof *z),
          *lv = malloc((size_t)B * (E + 1) * sizeof *lv), *done = malloc((size_t)B * D * sizeof *done), logits[B];
    double whole[B], rest[B];
    int rc = -1;
    if (!px || !z || !lv || !done) {
        gm_errorf(err, "%s: out of memory for the self-test", gm_st_label(m->st));
        goto done;
    }
    for (int op = 0; op < GM_OP_COUNT; op++) {
        if (!in->supports[op]) continue;
        selftest_rows(m, rows);
        int ran = -1;
        switch ((gm_op)op) {
        case GM_OP_SAMPLE:
            if (!(ran = gm_model_sample(m, B, rows, px, NULL)) &&
                check_values(m, op, "pixel", px, (size_t)B * D, true, err))
                goto done;
            break;
        case GM_OP_LOGP: /* on the samples: a sampling model always has them */
            if ((ran = gm_model_logp(m, B, px, SELFTEST_K, rows, lp))) break;
            for (int r = 0; r < B; r++)
                if (!isfinite(lp[r].logp) || (!in->exact_logp && !(isfinite(lp[r].elbo) && isfinite(lp[r].se)))) {
                    gm_errorf(err,
                              "%s: self-test: logp of %d rows (seed %u, K = %d) gave logp %g, elbo %g, se %g "
                              "for row %d; the weights overflow float range",
                              gm_st_label(m->st), B, SELFTEST_SEED, SELFTEST_K, lp[r].logp, lp[r].elbo, lp[r].se, r);
                    goto done;
                }
            break;
        case GM_OP_ENCODE:
            if ((ran = gm_model_encode(m, B, px, z, in->family == GM_FAMILY_VAE ? lv : NULL))) break;
            if (check_values(m, op, "z", z, (size_t)B * in->encode_dim, false, err) ||
                (in->family == GM_FAMILY_VAE &&
                 check_values(m, op, "logvar", lv, (size_t)B * in->encode_dim, false, err)))
                goto done;
            break;
        case GM_OP_DECODE:
            for (int r = 0; r < B; r++) {
                for (int j = 0; j < in->latent_dim; j++)
                    z[(size_t)r * in->latent_dim + j] = (float)gm_rng_normal(&rows[r].rng);
                labels[r] = rows[r].label;
            }
            if (!(ran = gm_model_decode(m, B, z, in->num_classes ? labels : NULL, px)) &&
                check_values(m, op, "pixel", px, (size_t)B * D, true, err))
                goto done;
            break;
        case GM_OP_DISCRIMINATE:
            if (!(ran = gm_model_discriminate(m, B, px, logits)) && check_values(m, op, "logit", logits, B, false, err))
                goto done;
            break;
        case GM_OP_RECONSTRUCT: /* of the samples, as encode */
            if (!(ran = gm_model_reconstruct(m, B, px, px)) &&
                check_values(m, op, "pixel", px, (size_t)B * D, true, err))
                goto done;
            break;
        case GM_OP_COMPLETE: /* the samples' first half kept */
            for (int r = 0; r < B; r++) rows[r].given = D / 2;
            if ((ran = gm_model_complete(m, B, px, rows, done, whole, rest))) break;
            if (check_values(m, op, "pixel", done, (size_t)B * D, true, err)) goto done;
            for (int r = 0; r < B; r++)
                if (!isfinite(whole[r]) || !isfinite(rest[r])) {
                    gm_errorf(err,
                              "%s: self-test: complete of %d rows (seed %u) gave logp %g, logp of the "
                              "completion %g for row %d; the weights overflow float range",
                              gm_st_label(m->st), B, SELFTEST_SEED, whole[r], rest[r], r);
                    goto done;
                }
            break;
        case GM_OP_TRANSLATE: /* images of the rows' streams, in every direction */
            for (int r = 0; r < B; r++) {
                for (int j = 0; j < D; j++) px[(size_t)r * D + j] = (float)gm_rng_uniform(&rows[r].rng);
                labels[r] = rows[r].label;
            }
            for (int rev = 0; rev <= (int)in->reverse; rev++) {
                if ((ran = gm_model_translate(m, B, px, in->num_classes ? labels : NULL, rev, done))) break;
                if (check_values(m, op, "pixel", done, (size_t)B * D, true, err)) goto done;
            }
            break;
        case GM_OP_COUNT:
            break;
        }
        if (ran) {
            gm_errorf(err, "%s: self-test: %s of %d rows failed (out of memory)", gm_st_label(m->st),
                      gm_op_name((gm_op)op), B);
            goto done;
        }
    }
    rc = 0;
done:
    free(px);
    free(z);
    free(lv);
    free(done);
    return rc;
}
