/*
 * vae.c - variational autoencoder with a Bernoulli decoder (SPEC.md §1.2).
 *
 * The encoder maps an image to (mean, logvar) of q(z|x); the decoder maps z
 * to D logits of p(x|z). log p(x) is estimated by importance sampling with
 * q as the proposal:
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
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "family.h"
#include "vmath.h"

#define ROWS 1024 /* decoder rows per forward pass, at most */
#define ROWS_VALUES (1 << 24) /* and at most this many logits per pass (64 MiB) */

typedef struct {
    gm_net *enc, *dec;
    bool dec_chw; /* decoder output is [C, H, W]: convert to channels last */
} vae;

static void vae_free(void *p) {
    vae *m = p;
    if (!m) return;
    gm_net_free(m->enc);
    gm_net_free(m->dec);
    free(m);
}

static void *vae_load(const gm_st *st, gm_model_info *info, char err[GM_ERR_LEN]) {
    const char *lik = gm_st_meta(st, "gm.likelihood");
    if (lik && strcmp(lik, "bernoulli") != 0) {
        gm_errorf(err, "%s: metadata \"gm.likelihood\" = \"%s\" is not supported (only bernoulli)",
                  gm_st_label(st), lik);
        return NULL;
    }
    vae *m = calloc(1, sizeof *m);
    if (!m) {
        gm_errorf(err, "out of memory");
        return NULL;
    }
    int Z = info->latent_dim;
    if (!(m->enc = gm_family_net(st, "gm.encoder", gm_image_shape(info), 2 * Z, err)) ||
        !(m->dec = gm_family_net(st, "gm.decoder", gm_shape1(Z), info->dim, err))) {
        vae_free(m);
        return NULL;
    }
    m->dec_chw = gm_net_out_shape(m->dec).rank == 3 && info->channels > 1;
    info->encode_dim = Z;
    info->binary = true;
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

/* z: (B, Z) -> logits: (B, D) channels last */
static int run_decoder(const vae *m, const gm_model_info *info, int B, const float *z, float *logits) {
    if (!m->dec_chw) return gm_net_forward(m->dec, B, z, logits);
    float *chw = malloc((size_t)B * info->dim * sizeof *chw);
    int rc = chw ? gm_net_forward(m->dec, B, z, chw) : -1;
    if (!rc) gm_chw_to_hwc(info, B, chw, logits);
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

static void sigmoid_inplace(float *v, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) v[i] = gm_sigmoidf(v[i]);
}

static int vae_decode(const void *p, const gm_model_info *info, int B, const float *z, const int *labels,
                      float *pixels) {
    if (run_decoder(p, info, B, z, pixels)) return -1;
    sigmoid_inplace(pixels, (size_t)B * info->dim);
    return 0;
}

static int vae_sample(const void *p, const gm_model_info *info, int B, gm_row *rows, float *pixels, double *logp) {
    int Z = info->latent_dim, D = info->dim;
    float *z = calloc((size_t)B * Z, sizeof *z);
    if (!z) return -1;
    for (int r = 0; r < B; r++)
        for (int j = 0; j < Z; j++) z[(size_t)r * Z + j] = (float)(rows[r].temperature * gm_rng_normal(&rows[r].rng));
    int rc = vae_decode(p, info, B, z, NULL, pixels);
    for (int r = 0; r < B && !rc; r++)
        if (rows[r].sample_pixels)
            for (int i = 0; i < D; i++) {
                float *px = &pixels[(size_t)r * D + i];
                *px = gm_rng_uniform(&rows[r].rng) < *px ? 1.0f : 0.0f;
            }
    free(z);
    return rc;
}

/* log p(x|z) for binary x: sum_i x_i l_i - softplus(l_i), vectorized */
static double bernoulli_loglik(const float *restrict x, const float *restrict logits, int D) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < D; i++) s += (double)(x[i] * logits[i] - gm_softplusf(logits[i]));
    return s;
}

static int vae_logp(const void *p, const gm_model_info *info, int B, const float *x, int K, gm_row *rows,
                    gm_logp_result *out) {
    const vae *m = p;
    /* D <= 2^22 (model.c), so rows_max >= 4 */
    int Z = info->latent_dim, D = info->dim, rows_max = ROWS_VALUES / D < ROWS ? ROWS_VALUES / D : ROWS;
    float *stats = malloc((size_t)B * 2 * Z * sizeof *stats);
    float *z = malloc((size_t)rows_max * Z * sizeof *z);
    float *logits = malloc((size_t)rows_max * D * sizeof *logits);
    double *lw = malloc((size_t)B * K * sizeof *lw);    /* log importance weights */
    double *recon = calloc((size_t)B, sizeof *recon);  /* sum_k log p(x|z_k) */
    int *owner = malloc((size_t)rows_max * sizeof *owner); /* chunk row -> b*K + k */
    double *sd = malloc((size_t)Z * sizeof *sd);       /* exp(logvar / 2) of the current image */
    int rc = -1;
    if (!stats || !z || !logits || !lw || !recon || !owner || !sd || run_encoder(m, info, B, x, stats)) goto done;
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
            for (int j = 0; j < Z; j++) {
                double eps = gm_rng_normal(&rows[r].rng);
                double zj = mu[j] + sd[j] * eps;
                zr[j] = (float)zj;
                lpq += -0.5 * zj * zj + 0.5 * eps * eps;
            }
            lw[(size_t)r * K + k] = lpq;
            owner[n++] = r * K + k;
            if (n == rows_max || (r == B - 1 && k == K - 1)) {
                if (run_decoder(m, info, n, z, logits)) goto done;
                for (int i = 0; i < n; i++) {
                    int b = owner[i] / K;
                    double ll = bernoulli_loglik(x + (size_t)b * D, logits + (size_t)i * D, D);
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
    free(logits);
    free(lw);
    free(recon);
    free(owner);
    free(sd);
    return rc;
}

const gm_family_impl gm_vae_family = {
    .load = vae_load,
    .free = vae_free,
    .sample = vae_sample,
    .logp = vae_logp,
    .encode = vae_encode,
    .decode = vae_decode,
};
