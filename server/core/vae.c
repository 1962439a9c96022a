/*
 * vae.c - variational autoencoder (docs/model-files.md).
 *
 * The encoder maps an image to (mean, logvar) of q(z|x); the decoder maps z
 * to the parameters of p(x|z), whose distribution gm.likelihood names
 * (likelihood.c: Bernoulli by default). Images reach the encoder binarized
 * at 0.5 (gm.input "binary", the default) or unchanged ("gray"). log p(x)
 * is estimated by importance sampling with q as the proposal:
 *
 *   log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K
 *
 * with z_k = mean + exp(logvar/2) eps_k. All B*K decoder rows of a batch go
 * through the decoder in chunks of ROWS, so BLAS sees large matrices whether
 * the batch is 64 images with K = 16 or one image with K = 5000. Image r
 * draws its K eps vectors from its own stream in order, so its estimate does
 * not depend on its batch. The standard error of the estimate comes from the
 * delta method on the mean importance weight.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "family.h"
#include "likelihood.h"

#define ROWS 1024             /* decoder rows per forward pass, at most */
#define ROWS_VALUES (1 << 24) /* and at most this many decoder values per pass (64 MiB) */

typedef struct {
    gm_net *enc, *dec;
    bool dec_chw; /* decoder output is [C, H, W] (or [2C, H, W]): convert to channels last */
    gm_lik lik;
    int values; /* decoder values per image: gm_lik_values * D */
} vae;

static void vae_free(void *p) {
    vae *m = p;
    if (!m) return;
    gm_net_free(m->enc);
    gm_net_free(m->dec);
    free(m);
}

/* A Bernoulli decoder whose last op is a sigmoid outputs probabilities:
 * read as logits, they would be squashed a second time (pixels in 0.5 to
 * 0.73). -1 when gm.decoder_output does not say so. */
static int sigmoid_twice(const gm_st *st, const gm_lik *lik, char err[GM_ERR_LEN]) {
    if (lik->probabilities || (lik->kind != GM_LIK_BERNOULLI && lik->kind != GM_LIK_CONTINUOUS_BERNOULLI)) return 0;
    const char *json = gm_st_meta(st, "gm.decoder");
    json_t *ops = json ? json_loads(json, 0, NULL) : NULL;
    size_t n = json_array_size(ops);
    const char *last = n ? json_string_value(json_object_get(json_array_get(ops, n - 1), "op")) : NULL;
    bool sigmoid = last && strcmp(last, "sigmoid") == 0;
    json_decref(ops);
    if (sigmoid)
        return gm_errorf(err,
                         "%s: gm.decoder ends in a sigmoid, so it outputs probabilities, but metadata "
                         "\"gm.decoder_output\" is %s: set it to \"probabilities\" (the sigmoid is then "
                         "never applied twice)",
                         gm_st_label(st), gm_st_meta(st, "gm.decoder_output") ? "\"logits\"" : "absent (logits)");
    return 0;
}

static void *vae_load(const gm_st *st, gm_model_info *info, char err[GM_ERR_LEN]) {
    const char *input = gm_st_meta(st, "gm.input");
    if (input && strcmp(input, "binary") != 0 && strcmp(input, "gray") != 0) {
        gm_errorf(err, "%s: metadata \"gm.input\" = \"%s\" must be binary or gray", gm_st_label(st), input);
        return NULL;
    }
    gm_lik lik;
    if (gm_lik_parse(st, &lik, err) || sigmoid_twice(st, &lik, err)) return NULL;
    vae *m = calloc(1, sizeof *m);
    if (!m) {
        gm_errorf(err, "out of memory");
        return NULL;
    }
    int Z = info->latent_dim;
    m->lik = lik;
    m->values = gm_lik_values(&lik) * info->dim; /* <= 2^23: fits an int */
    if (!(m->enc = gm_family_net(st, "gm.encoder", gm_image_shape(info), 2 * Z, err)) ||
        !(m->dec = gm_family_net(st, "gm.decoder", gm_shape1(Z), m->values, err))) {
        vae_free(m);
        return NULL;
    }
    m->dec_chw = gm_net_out_shape(m->dec).rank == 3 && info->channels > 1;
    info->encode_dim = Z;
    info->binary = !input || strcmp(input, "binary") == 0;
    info->supports[GM_OP_SAMPLE] = info->supports[GM_OP_LOGP] = true;
    info->supports[GM_OP_ENCODE] = info->supports[GM_OP_DECODE] = true;
    return m;
}

/* x: (B, D) channels last -> stats: (B, 2Z) */
static int run_encoder(const vae *m, const gm_model_info *info, int B, const float *x, float *stats) {
    const float *in = x;
    float *chw = NULL;
    if (info->channels > 1) {
        if (!(chw = malloc((size_t)B * info->dim * sizeof *chw))) return -1;
        gm_hwc_to_chw(info, B, x, chw);
        in = chw;
    }
    int rc = gm_net_forward(m->enc, B, in, stats);
    free(chw);
    return rc;
}

/* z: (B, Z) -> out: (B, values), each D-value part (location, log scale)
 * channels last */
static int run_decoder(const vae *m, const gm_model_info *info, int B, const float *z, float *out) {
    if (!m->dec_chw) return gm_net_forward(m->dec, B, z, out);
    float *chw = malloc((size_t)B * m->values * sizeof *chw);
    int rc = chw ? gm_net_forward(m->dec, B, z, chw) : -1;
    /* the parts are consecutive channel groups of [values / (H W), H, W] */
    for (int part = 0; !rc && part < m->values / info->dim; part++)
        for (int r = 0; r < B; r++) {
            size_t at = (size_t)r * m->values + (size_t)part * info->dim;
            gm_chw_to_hwc(info, 1, chw + at, out + at);
        }
    free(chw);
    return rc;
}

static int vae_encode(const void *p, const gm_model_info *info, int B, const float *x, float *z, float *logvar) {
    int Z = info->latent_dim;
    float *stats = malloc((size_t)B * 2 * Z * sizeof *stats);
    if (!stats || run_encoder(p, info, B, x, stats)) {
        free(stats);
        return -1;
    }
    for (int r = 0; r < B; r++) {
        memcpy(z + (size_t)r * Z, stats + (size_t)r * 2 * Z, (size_t)Z * sizeof *z);
        if (logvar) memcpy(logvar + (size_t)r * Z, stats + (size_t)r * 2 * Z + Z, (size_t)Z * sizeof *z);
    }
    free(stats);
    return 0;
}

/* z: (B, Z) -> pixels: (B, D), the likelihood's mean, or a draw for rows
 * that ask for one (rows may be NULL: means only) */
static int decode_pixels(const vae *m, const gm_model_info *info, int B, const float *z, gm_row *rows, float *pixels) {
    int D = info->dim;
    float *out = malloc((size_t)B * m->values * sizeof *out);
    if (!out || run_decoder(m, info, B, z, out)) {
        free(out);
        return -1;
    }
    for (int r = 0; r < B; r++) {
        bool draw = rows && rows[r].sample_pixels;
        gm_lik_pixels(&m->lik, out + (size_t)r * m->values, D, draw, draw ? &rows[r].rng : NULL,
                      pixels + (size_t)r * D);
    }
    free(out);
    return 0;
}

static int vae_decode(const void *p, const gm_model_info *info, int B, const float *z, const int *labels,
                      const float *codes, const int *cats, float *pixels) {
    return decode_pixels(p, info, B, z, NULL, pixels);
}

static int vae_sample(const void *p, const gm_model_info *info, int B, gm_row *rows, float *pixels, double *logp) {
    int Z = info->latent_dim;
    float *z = calloc((size_t)B * Z, sizeof *z);
    if (!z) return -1;
    for (int r = 0; r < B; r++)
        for (int j = 0; j < Z; j++) z[(size_t)r * Z + j] = (float)(rows[r].temperature * gm_rng_normal(&rows[r].rng));
    int rc = decode_pixels(p, info, B, z, rows, pixels);
    free(z);
    return rc;
}

static int vae_logp(const void *p, const gm_model_info *info, int B, const float *x, int K, gm_row *rows,
                    gm_logp_result *out) {
    const vae *m = p;
    /* V <= 2^22 (a net's output bound, layers.h), so rows_max >= 4 */
    int Z = info->latent_dim, D = info->dim, V = m->values;
    int rows_max = ROWS_VALUES / V < ROWS ? ROWS_VALUES / V : ROWS;
    float *stats = malloc((size_t)B * 2 * Z * sizeof *stats);
    float *z = malloc((size_t)rows_max * Z * sizeof *z);
    float *dec = malloc((size_t)rows_max * V * sizeof *dec);
    double *lw = malloc((size_t)B * K * sizeof *lw);       /* log importance weights */
    double *recon = calloc((size_t)B, sizeof *recon);      /* sum_k log p(x|z_k) */
    int *owner = malloc((size_t)rows_max * sizeof *owner); /* chunk row -> b*K + k */
    double *sd = malloc((size_t)Z * sizeof *sd);           /* exp(logvar / 2) of the current image */
    double *eps = malloc((size_t)Z * sizeof *eps);         /* one importance sample's normals */
    int rc = -1;
    if (!stats || !z || !dec || !lw || !recon || !owner || !sd || !eps || run_encoder(m, info, B, x, stats)) goto done;
    int n = 0;
    for (int r = 0; r < B; r++) {
        const float *mu = stats + (size_t)r * 2 * Z, *lv = mu + Z;
        double half_logdet = 0.0;
        for (int j = 0; j < Z; j++) {
            sd[j] = exp(0.5 * lv[j]);
            half_logdet += 0.5 * lv[j];
        }
        for (int k = 0; k < K; k++) {
            /* log p(z) - log q(z|x); the log(2 pi) terms cancel */
            double lpq = half_logdet;
            float *zr = z + (size_t)n * Z;
            gm_rng_normals(&rows[r].rng, eps, Z);
            for (int j = 0; j < Z; j++) {
                double zj = mu[j] + sd[j] * eps[j];
                zr[j] = (float)zj;
                lpq += -0.5 * zj * zj + 0.5 * eps[j] * eps[j];
            }
            lw[(size_t)r * K + k] = lpq;
            owner[n++] = r * K + k;
            if (n == rows_max || (r == B - 1 && k == K - 1)) {
                if (run_decoder(m, info, n, z, dec)) goto done;
                for (int i = 0; i < n; i++) {
                    int b = owner[i] / K;
                    double ll = gm_lik_logp(&m->lik, x + (size_t)b * D, dec + (size_t)i * V, D);
                    lw[owner[i]] += ll;
                    recon[b] += ll;
                }
                n = 0;
            }
        }
    }
    for (int r = 0; r < B; r++) {
        const double *w = lw + (size_t)r * K;
        const float *mu = stats + (size_t)r * 2 * Z, *lv = mu + Z;
        double mx = -INFINITY, sum = 0.0, sum2 = 0.0, kl = 0.0;
        for (int k = 0; k < K; k++) mx = w[k] > mx ? w[k] : mx;
        for (int k = 0; k < K; k++) {
            double e = exp(w[k] - mx);
            sum += e;
            sum2 += e * e;
        }
        for (int j = 0; j < Z; j++) kl += 0.5 * ((double)mu[j] * mu[j] + exp(lv[j]) - 1.0 - lv[j]);
        double mean = sum / K;
        out[r].logp = mx + log(mean);
        out[r].elbo = recon[r] / K - kl;
        /* delta method: se(log mean w) = sd(w) / (sqrt(K) mean(w)) */
        out[r].se = K > 1 ? sqrt(fmax(sum2 / K - mean * mean, 0.0) * K / (K - 1) / K) / mean : NAN;
    }
    rc = 0;
done:
    free(stats);
    free(z);
    free(dec);
    free(lw);
    free(recon);
    free(owner);
    free(sd);
    free(eps);
    return rc;
}

static const gm_net *vae_net(const void *p, const char *name) {
    const vae *m = p;
    return !strcmp(name, "encoder") ? m->enc : !strcmp(name, "decoder") ? m->dec : NULL;
}

const gm_family_impl gm_vae_family = {
    .load = vae_load,
    .net = vae_net,
    .free = vae_free,
    .sample = vae_sample,
    .logp = vae_logp,
    .encode = vae_encode,
    .decode = vae_decode,
};
