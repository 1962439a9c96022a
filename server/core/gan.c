/*
 * gan.c - generative adversarial network generators (SPEC.md §1.3).
 *
 * The generator maps z (followed by a one-hot label for class-conditional
 * models) to an image in tanh range [-1, 1] or sigmoid range [0, 1]; pixels
 * are mapped to [0, 1] at the end. An optional discriminator (image -> one
 * logit) and encoder (image -> z, trained to invert the generator) see images
 * in the generator's range. A GAN defines no likelihood: logp is not
 * supported, by design.
 *
 * Truncation draws each z_j from the normal conditioned on |z_j| <= t (the
 * truncation trick), by inverse CDF in O(1) for every t, then temperature
 * scales z; both use only the row's own stream.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "family.h"

typedef struct {
    gm_net *gen, *disc, *enc;
    bool tanh_range;
    bool gen_chw;
} gan;

static void gan_free(void *p) {
    gan *m = p;
    if (!m) return;
    gm_net_free(m->gen);
    gm_net_free(m->disc);
    gm_net_free(m->enc);
    free(m);
}

static void *gan_load(const gm_st *st, gm_model_info *info, char err[GM_ERR_LEN]) {
    const char *out = gm_st_meta(st, "gm.output");
    if (out && strcmp(out, "tanh") != 0 && strcmp(out, "sigmoid") != 0) {
        gm_errorf(err, "%s: metadata \"gm.output\" must be tanh or sigmoid (found \"%s\")", gm_st_label(st), out);
        return NULL;
    }
    gan *m = calloc(1, sizeof *m);
    if (!m) {
        gm_errorf(err, "out of memory");
        return NULL;
    }
    m->tanh_range = !out || strcmp(out, "tanh") == 0;
    int Z = info->latent_dim;
    if (!(m->gen = gm_family_net(st, "gm.generator", gm_shape1(Z + info->num_classes), info->dim, err))) goto fail;
    if (gm_st_meta(st, "gm.discriminator") &&
        !(m->disc = gm_family_net(st, "gm.discriminator", gm_image_shape(info), 1, err)))
        goto fail;
    if (gm_st_meta(st, "gm.encoder") && !(m->enc = gm_family_net(st, "gm.encoder", gm_image_shape(info), Z, err)))
        goto fail;
    m->gen_chw = gm_net_out_shape(m->gen).rank == 3 && info->channels > 1;
    info->encode_dim = m->enc ? Z : 0;
    info->supports[GM_OP_SAMPLE] = info->supports[GM_OP_DECODE] = true;
    info->supports[GM_OP_ENCODE] = m->enc != NULL;
    info->supports[GM_OP_DISCRIMINATE] = m->disc != NULL;
    return m;
fail:
    gan_free(m);
    return NULL;
}

static int gan_decode(const void *p, const gm_model_info *info, int B, const float *z, const int *labels,
                      float *pixels) {
    const gan *m = p;
    int Z = info->latent_dim, C = info->num_classes, D = info->dim;
    const float *in = z;
    float *zin = NULL, *chw = NULL;
    int rc = -1;
    if (C > 0) {
        if (!(zin = calloc((size_t)B * (Z + C), sizeof *zin))) goto done;
        for (int r = 0; r < B; r++) {
            memcpy(zin + (size_t)r * (Z + C), z + (size_t)r * Z, (size_t)Z * sizeof *zin);
            assert(labels[r] >= 0 && labels[r] < C && "the caller validates labels (model.h)");
            zin[(size_t)r * (Z + C) + Z + labels[r]] = 1.0f;
        }
        in = zin;
    }
    float *y = pixels;
    if (m->gen_chw && !(y = chw = malloc((size_t)B * D * sizeof *chw))) goto done;
    if (gm_net_forward(m->gen, B, in, y)) goto done;
    if (m->gen_chw) gm_chw_to_hwc(info, B, chw, pixels);
    for (size_t i = 0; i < (size_t)B * D; i++) {
        float v = m->tanh_range ? 0.5f * (pixels[i] + 1.0f) : pixels[i];
        pixels[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
    rc = 0;
done:
    free(zin);
    free(chw);
    return rc;
}

static int gan_sample(const void *p, const gm_model_info *info, int B, gm_row *rows, float *pixels, double *logp) {
    int Z = info->latent_dim;
    float *z = malloc((size_t)B * Z * sizeof *z);
    int *labels = malloc((size_t)B * sizeof *labels);
    int rc = -1;
    if (!z || !labels) goto done;
    for (int r = 0; r < B; r++) {
        double t = rows[r].truncation;
        for (int j = 0; j < Z; j++) {
            double v = t > 0 ? gm_rng_truncated_normal(&rows[r].rng, t) : gm_rng_normal(&rows[r].rng);
            z[(size_t)r * Z + j] = (float)(rows[r].temperature * v);
        }
        labels[r] = rows[r].label;
    }
    rc = gan_decode(p, info, B, z, labels, pixels);
done:
    free(z);
    free(labels);
    return rc;
}

/* Runs an image-input net (discriminator or encoder) on pixels in [0, 1]. */
static int image_net(const gan *m, const gm_net *net, const gm_model_info *info, int B, const float *x, float *out) {
    size_t n = (size_t)B * info->dim;
    float *in = malloc(n * sizeof *in), *chw = NULL;
    int rc = -1;
    if (!in) return -1;
    for (size_t i = 0; i < n; i++) in[i] = m->tanh_range ? 2.0f * x[i] - 1.0f : x[i];
    if (info->channels > 1) {
        if (!(chw = malloc(n * sizeof *chw))) goto done;
        gm_hwc_to_chw(info, B, in, chw);
    }
    rc = gm_net_forward(net, B, chw ? chw : in, out);
done:
    free(in);
    free(chw);
    return rc;
}

static int gan_encode(const void *p, const gm_model_info *info, int B, const float *x, float *z, float *logvar) {
    const gan *m = p;
    return image_net(m, m->enc, info, B, x, z);
}

static int gan_discriminate(const void *p, const gm_model_info *info, int B, const float *x, float *logits) {
    const gan *m = p;
    return image_net(m, m->disc, info, B, x, logits);
}

static const gm_net *gan_net(const void *p, const char *name) {
    const gan *m = p;
    return !strcmp(name, "generator") ? m->gen : !strcmp(name, "discriminator") ? m->disc
                                                : !strcmp(name, "encoder") ? m->enc : NULL;
}

const gm_family_impl gm_gan_family = {
    .load = gan_load,
    .net = gan_net,
    .free = gan_free,
    .sample = gan_sample,
    .encode = gan_encode,
    .decode = gan_decode,
    .discriminate = gan_discriminate,
};
