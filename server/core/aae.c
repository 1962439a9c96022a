/*
 * aae.c - adversarial autoencoder (docs/model-files.md).
 *
 * An encoder maps an image to a code z, a decoder maps z back to an image,
 * and during training a discriminator on the codes pushed their
 * distribution towards the prior, N(0, I) or a mixture (below): so
 * decoding prior draws gives images, as a VAE's decoder does. Nothing in the file defines a density
 * of images (there is no likelihood term and no posterior), which is why
 * the family serves no logp.
 *
 * The encoder ends in Z values (gm.encoder_head "point", the default) or
 * in 2Z, a Gaussian head's mean and log-variance ("gaussian"), of which
 * encode, decode and reconstruct use the mean: serving is deterministic
 * except for sample, which draws z ~ N(0, temperature^2 I) from the row's
 * stream. The decoder ends in a sigmoid (gm.output "sigmoid", the
 * default: images in [0, 1]) or a tanh ("tanh": images in [-1, 1], and
 * the encoder reads images in [-1, 1] too).
 *
 * The paper's label-conditioned prior (gm.prior "mixture") is a mixture of
 * K = gm.num_classes Gaussians with equal weights, one per class:
 * component k is N(prior.means[k], diag(prior.stds[k]^2)). The row's label
 * is its component (given, or drawn by the caller as a conditional GAN's
 * is), and z = mean_k + std_k * temperature * eps with eps ~ N(0, I) from
 * the row's stream, the draws of the normal prior: a seed gives the same
 * eps whichever component it lands in. The decoder takes z alone. The
 * mixture makes the AAE a classifier: gm_model_component_probs gives a
 * code's posterior over the components (the paper's point in giving the
 * prior one component per class).
 */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "family.h"

typedef struct {
    gm_net *enc, *dec;
    bool gaussian;   /* the encoder gives (mean, logvar) */
    bool tanh_range; /* images in [-1, 1] at the networks */
    bool dec_chw;    /* decoder output is [C, H, W] with C > 1: convert to channels last */
    float *means;    /* mixture prior: [K, Z], else NULL */
    float *stds;     /* mixture prior: [K, Z] (a [K] file's std repeated), else NULL */
} aae;

static void aae_free(void *p) {
    aae *m = p;
    if (!m) return;
    gm_net_free(m->enc);
    gm_net_free(m->dec);
    free(m->means);
    free(m->stds);
    free(m);
}

/* Metadata `key` is absent (dflt) or one of a, b: is_b tells which. */
static int choice(const gm_st *st, const char *key, const char *a, const char *b, bool *is_b, char err[GM_ERR_LEN]) {
    const char *v = gm_st_meta(st, key);
    *is_b = v && !strcmp(v, b);
    if (v && strcmp(v, a) && strcmp(v, b))
        return gm_errorf(err, "%s: metadata \"%s\" = \"%s\" must be \"%s\" or \"%s\"", gm_st_label(st), key, v, a, b);
    return 0;
}

/* A float tensor of the mixture prior: [K, Z], or [K] when allows_k;
 * finite, and positive when `positive`. Copied into a new *out [K, Z], a
 * [K] tensor's value repeated along Z. */
static int prior_tensor(const gm_st *st, const char *name, int K, int Z, bool allows_k, bool positive, float **out,
                        char err[GM_ERR_LEN]) {
    const gm_tensor *t = gm_st_tensor(st, name);
    const char *L = gm_st_label(st);
    if (!t) return gm_errorf(err, "%s: gm.prior \"mixture\" needs the tensor '%s'", L, name);
    bool per_k = allows_k && t->ndim == 1 && t->shape[0] == K;
    if (!t->f32 || !(per_k || (t->ndim == 2 && t->shape[0] == K && t->shape[1] == Z))) {
        char shapes[64];
        snprintf(shapes, sizeof shapes, allows_k ? "[%d, %d] or [%d]" : "[%d, %d]", K, Z, K);
        return gm_errorf(err,
                         "%s: tensor '%s' must be a float tensor of shape %s (gm.num_classes = %d, gm.latent_dim = %d)",
                         L, name, shapes, K, Z);
    }
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(t->f32[i]) || (positive && !(t->f32[i] > 0.0f)))
            return gm_errorf(err, "%s: tensor '%s' holds %g at flat index %lld; its values must be %s", L, name,
                             (double)t->f32[i], (long long)i, positive ? "finite and above 0" : "finite");
    float *v = *out = malloc((size_t)K * Z * sizeof *v);
    if (!v) return gm_errorf(err, "out of memory");
    for (int k = 0; k < K; k++)
        for (int j = 0; j < Z; j++) v[(size_t)k * Z + j] = t->f32[per_k ? (size_t)k : (size_t)k * Z + j];
    return 0;
}

/* gm.prior: "normal" (default), or "mixture" with its tensors into m. */
static int load_prior(const gm_st *st, const gm_model_info *info, aae *m, char err[GM_ERR_LEN]) {
    const char *prior = gm_st_meta(st, "gm.prior"), *L = gm_st_label(st);
    int K = info->num_classes, Z = info->latent_dim;
    bool mixture;
    if (choice(st, "gm.prior", "normal", "mixture", &mixture, err)) return -1;
    if (!mixture) {
        if (K)
            return gm_errorf(err,
                             "%s: metadata \"gm.num_classes\" = %d: an AAE's classes are the components of its "
                             "mixture prior, and \"gm.prior\" is \"%s\" (set it to \"mixture\", with tensors "
                             "prior.means and prior.stds)",
                             L, K, prior ? prior : "normal");
        if (gm_st_tensor(st, "prior.means") || gm_st_tensor(st, "prior.stds"))
            return gm_errorf(err,
                             "%s: tensors prior.means and prior.stds belong to gm.prior \"mixture\"; this "
                             "file's prior is \"normal\"",
                             L);
        return 0;
    }
    if (K < 1)
        return gm_errorf(err,
                         "%s: gm.prior \"mixture\" needs metadata \"gm.num_classes\" = K >= 1, its components "
                         "(found %d)",
                         L, K);
    return prior_tensor(st, "prior.means", K, Z, false, false, &m->means, err) ||
                   prior_tensor(st, "prior.stds", K, Z, true, true, &m->stds, err)
               ? -1
               : 0;
}

static void *aae_load(const gm_st *st, gm_model_info *info, char err[GM_ERR_LEN]) {
    bool gaussian, tanh_range;
    if (choice(st, "gm.encoder_head", "point", "gaussian", &gaussian, err) ||
        choice(st, "gm.output", "sigmoid", "tanh", &tanh_range, err))
        return NULL;
    aae *m = calloc(1, sizeof *m);
    if (!m) {
        gm_errorf(err, "out of memory");
        return NULL;
    }
    int Z = info->latent_dim;
    m->gaussian = gaussian;
    m->tanh_range = tanh_range;
    if (load_prior(st, info, m, err) ||
        !(m->enc = gm_family_net(st, "gm.encoder", gm_image_shape(info), gaussian ? 2 * Z : Z, err)) ||
        !(m->dec = gm_family_net(st, "gm.decoder", gm_shape1(Z), info->dim, err))) {
        aae_free(m);
        return NULL;
    }
    m->dec_chw = gm_net_out_shape(m->dec).rank == 3 && info->channels > 1;
    info->encode_dim = Z;
    info->mixture_prior = m->means != NULL;
    info->binary = false;
    info->supports[GM_OP_SAMPLE] = info->supports[GM_OP_ENCODE] = true;
    info->supports[GM_OP_DECODE] = info->supports[GM_OP_RECONSTRUCT] = true;
    return m;
}

/* x: (B, D) channels last in [0, 1] -> z: (B, Z), the code or the mean */
static int aae_encode(const void *p, const gm_model_info *info, int B, const float *x, float *z, float *logvar) {
    const aae *m = p;
    int Z = info->latent_dim, E = m->gaussian ? 2 * Z : Z;
    size_t n = (size_t)B * info->dim;
    float *in = calloc(n, sizeof *in), *chw = info->channels > 1 ? malloc(n * sizeof *chw) : NULL;
    float *out = m->gaussian ? malloc((size_t)B * E * sizeof *out) : z;
    int rc = -1;
    if (!in || (info->channels > 1 && !chw) || !out) goto done;
    for (size_t i = 0; i < n; i++) in[i] = m->tanh_range ? 2.0f * x[i] - 1.0f : x[i];
    if (chw) gm_hwc_to_chw(info, B, in, chw);
    if (gm_net_forward(m->enc, B, chw ? chw : in, out)) goto done;
    if (m->gaussian)
        for (int r = 0; r < B; r++) memcpy(z + (size_t)r * Z, out + (size_t)r * E, (size_t)Z * sizeof *z);
    rc = 0;
done:
    free(in);
    free(chw);
    if (out != z) free(out);
    return rc;
}

/* z: (B, Z) -> pixels: (B, D) channels last in [0, 1] */
static int aae_decode(const void *p, const gm_model_info *info, int B, const float *z, const int *labels,
                      const float *codes, const int *cats, float *pixels) {
    const aae *m = p;
    size_t n = (size_t)B * info->dim;
    float *chw = m->dec_chw ? malloc(n * sizeof *chw) : NULL;
    if (m->dec_chw && !chw) return -1;
    int rc = gm_net_forward(m->dec, B, z, chw ? chw : pixels);
    if (!rc && chw) gm_chw_to_hwc(info, B, chw, pixels);
    free(chw);
    for (size_t i = 0; !rc && i < n; i++) {
        float v = m->tanh_range ? 0.5f * (pixels[i] + 1.0f) : pixels[i];
        pixels[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
    return rc;
}

static int aae_sample(const void *p, const gm_model_info *info, int B, gm_row *rows, float *pixels, double *logp) {
    const aae *m = p;
    int Z = info->latent_dim;
    float *z = malloc((size_t)B * Z * sizeof *z);
    if (!z) return -1;
    for (int r = 0; r < B; r++) {
        int k = rows[r].label;
        assert((!m->means || (k >= 0 && k < info->num_classes)) && "the caller validates labels (model.h)");
        const float *mean = m->means ? m->means + (size_t)k * Z : NULL, *std = m->stds ? m->stds + (size_t)k * Z : NULL;
        for (int j = 0; j < Z; j++) {
            double eps = rows[r].temperature * gm_rng_normal(&rows[r].rng);
            z[(size_t)r * Z + j] = mean ? (float)(mean[j] + std[j] * eps) : (float)eps;
        }
    }
    int rc = aae_decode(p, info, B, z, NULL, NULL, NULL, pixels);
    free(z);
    return rc;
}

/* Encodes all of x before decoding, so pixels may be x itself. */
static int aae_reconstruct(const void *p, const gm_model_info *info, int B, const float *x, float *pixels) {
    float *z = malloc((size_t)B * info->latent_dim * sizeof *z);
    int rc = z && !aae_encode(p, info, B, x, z, NULL) ? aae_decode(p, info, B, z, NULL, NULL, NULL, pixels) : -1;
    free(z);
    return rc;
}

static const gm_net *aae_net(const void *p, const char *name) {
    const aae *m = p;
    return !strcmp(name, "encoder") ? m->enc : !strcmp(name, "decoder") ? m->dec : NULL;
}

int gm_model_component_probs(const gm_model *model, int B, const float *z, double *probs, int *best) {
    const gm_model_info *info = gm_model_get_info(model);
    if (info->family != GM_FAMILY_AAE || !info->mixture_prior) return -1;
    const aae *m = gm_model_state(model);
    int K = info->num_classes, Z = info->latent_dim;
    for (int r = 0; r < B; r++) {
        const float *zr = z + (size_t)r * Z;
        double *lp = probs + (size_t)r * K, top = -INFINITY;
        int arg = 0;
        /* log N(z; mean_k, diag(std_k^2)) less the constant -Z/2 log 2 pi, which cancels */
        for (int k = 0; k < K; k++) {
            const float *mean = m->means + (size_t)k * Z, *std = m->stds + (size_t)k * Z;
            double s = 0;
            for (int j = 0; j < Z; j++) {
                double u = ((double)zr[j] - mean[j]) / std[j];
                s += -0.5 * u * u - log(std[j]);
            }
            lp[k] = s;
            if (s > top) top = s, arg = k;
        }
        double sum = 0; /* log-sum-exp: shifted by the largest, so the best term is exp(0) = 1 */
        for (int k = 0; k < K; k++) sum += lp[k] = exp(lp[k] - top);
        for (int k = 0; k < K; k++) lp[k] /= sum;
        if (best) best[r] = arg;
    }
    return 0;
}

const gm_family_impl gm_aae_family = {
    .load = aae_load,
    .net = aae_net,
    .free = aae_free,
    .sample = aae_sample,
    .encode = aae_encode,
    .decode = aae_decode,
    .reconstruct = aae_reconstruct,
};
