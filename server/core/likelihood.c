/*
 * likelihood.c - log densities, means and draws of the VAE decoder's
 * distributions, each exact to its definition (docs/likelihoods.md).
 *
 * Bernoulli kinds work on the logit l: a decoder that outputs probabilities
 * p has them clamped to [eps, 1 - eps] (eps = 2^-23, float's epsilon, as
 * torch.distributions does) and turned into l = log p - log1p(-p). With l the
 * continuous Bernoulli is the exponential density l e^(l x) / (e^l - 1)
 * on [0, 1], so its normalizer C = l / tanh(l / 2) has no cancellation
 * near lambda = 1/2 (l = 0, where C -> 2) apart from the removable 0/0,
 * which the series log C = log 2 + l^2 / 12 covers for |l| < 1e-4 (next
 * term -7 l^4 / 1440: below 1e-18). The mean has the series 1/2 + l / 12
 * (next term -l^3 / 720).
 *
 * The discretized logistic puts pixel x on the nearest of 256 levels k / 255;
 * level k takes the logistic's mass between the bin edges (k -+ 1/2) / 255,
 * and the first and last levels also take the tails below and above (the
 * edge bins are open, as in PixelCNN++), so the 256 masses sum to 1.
 */
#include "likelihood.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vmath.h"

#define MAX_SCALE 1e30 /* a fixed scale beyond this is a typo, not a model */
#define LEVELS 255     /* the discretized levels are k / LEVELS, k = 0..255 */

static const char *const KIND_NAMES[] = {"bernoulli", "continuous_bernoulli", "gaussian", "discretized_logistic"};
#define KINDS (int)(sizeof KIND_NAMES / sizeof KIND_NAMES[0])

const char *gm_lik_name(gm_lik_kind kind) { return (int)kind < KINDS ? KIND_NAMES[kind] : "?"; }

int gm_lik_parse(const gm_st *st, gm_lik *lik, char err[GM_ERR_LEN]) {
    const char *L = gm_st_label(st), *name = gm_st_meta(st, "gm.likelihood"),
               *scale = gm_st_meta(st, "gm.likelihood_scale"), *out = gm_st_meta(st, "gm.decoder_output");
    memset(lik, 0, sizeof *lik);
    int k = 0;
    while (name && k < KINDS && strcmp(name, KIND_NAMES[k]) != 0) k++;
    if (k == KINDS)
        return gm_errorf(err,
                         "%s: metadata \"gm.likelihood\" = \"%s\" is not one of bernoulli, continuous_bernoulli, "
                         "gaussian, discretized_logistic",
                         L, name);
    lik->kind = (gm_lik_kind)k;
    if (out && strcmp(out, "logits") != 0 && strcmp(out, "probabilities") != 0)
        return gm_errorf(err, "%s: metadata \"gm.decoder_output\" = \"%s\" must be logits or probabilities", L, out);
    lik->probabilities = out && strcmp(out, "probabilities") == 0;
    bool located = lik->kind == GM_LIK_GAUSSIAN || lik->kind == GM_LIK_DISCRETIZED_LOGISTIC;
    if (!located) {
        if (scale)
            return gm_errorf(err, "%s: metadata \"gm.likelihood_scale\" = \"%s\" has no meaning for gm.likelihood %s",
                             L, scale, KIND_NAMES[k]);
        return 0;
    }
    if (!scale)
        return gm_errorf(err,
                         "%s: metadata \"gm.likelihood_scale\" is required for gm.likelihood %s: a fixed scale "
                         "(e.g. \"0.1\") or \"learned\"",
                         L, KIND_NAMES[k]);
    if (strcmp(scale, "learned") == 0) {
        lik->learned = true;
        return 0;
    }
    char *end;
    errno = 0;
    double s = strtod(scale, &end);
    if (errno || end == scale || *end || !(s > 0.0 && s <= MAX_SCALE))
        return gm_errorf(err,
                         "%s: metadata \"gm.likelihood_scale\" = \"%s\" must be \"learned\" or a number in "
                         "(0, %g]",
                         L, scale, MAX_SCALE);
    lik->scale = s;
    return 0;
}

int gm_lik_values(const gm_lik *lik) { return lik->learned ? 2 : 1; }

/* The logit of a Bernoulli kind's output value. */
static double logit_of(const gm_lik *lik, float v) {
    if (!lik->probabilities) return v;
    double p = fmin(fmax((double)v, FLT_EPSILON), 1.0 - FLT_EPSILON);
    return log(p) - log1p(-p);
}

static float unit(double v) { return (float)(v > 0.0 ? (v < 1.0 ? v : 1.0) : 0.0); }

/* log sigmoid(t) = -softplus(-t) */
static double log_sigmoid(double t) { return -gm_softplus(-t); }

/* log C(l) of the continuous Bernoulli: log(l / tanh(l / 2)). */
static double cb_log_norm(double l) {
    if (fabs(l) < 1e-4) return M_LN2 + l * l / 12.0;
    return log(l / tanh(0.5 * l));
}

/* The continuous Bernoulli's mean e^l / (e^l - 1) - 1 / l, without overflow
 * for either sign of l. */
static double cb_mean(double l) {
    if (fabs(l) < 1e-4) return 0.5 + l / 12.0;
    return (l > 0 ? 1.0 / -expm1(-l) : exp(l) / expm1(l)) - 1.0 / l;
}

/* Inverse CDF of l e^(l x) / (e^l - 1) at u in [0, 1). */
static double cb_draw(double l, double u) {
    if (fabs(l) < 1e-6) return u;
    if (l > 0) return 1.0 + log(u + (1.0 - u) * exp(-l)) / l;
    return log1p(u * expm1(l)) / l;
}

/* log of the mass of level k under the logistic (mu, s). */
static double dlogistic_logp(int k, double mu, double s) {
    double c = (double)k / LEVELS, a = (c + 0.5 / LEVELS - mu) / s, b = (c - 0.5 / LEVELS - mu) / s;
    if (k == 0) return log_sigmoid(a);
    if (k == LEVELS) return log_sigmoid(-b);
    /* log(sigmoid(a) - sigmoid(b)) without cancellation in either tail */
    double la = log_sigmoid(a);
    return la + log(-expm1(log_sigmoid(b) - la));
}

/* The nearest level of pixel x in [0, 1] (NaN and beyond-range included). */
static int level_of(double x) {
    double v = x * LEVELS;
    return v > 0.0 ? (v < LEVELS ? (int)lrint(v) : LEVELS) : 0;
}

/* log p(x|z) for Bernoulli logits: sum_i x_i l_i - softplus(l_i) (exact for
 * x in [0, 1], not only binary x), vectorized */
static double bernoulli_logits(const float *restrict x, const float *restrict logits, int D) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < D; i++) s += (double)(x[i] * logits[i] - gm_softplusf(logits[i]));
    return s;
}

double gm_lik_logp(const gm_lik *lik, const float *x, const float *out, int D) {
    if (lik->kind == GM_LIK_BERNOULLI && !lik->probabilities) return bernoulli_logits(x, out, D);
    double s = 0.0;
    for (int i = 0; i < D; i++) {
        double xi = x[i], mu = out[i];
        switch (lik->kind) {
        case GM_LIK_BERNOULLI:
        case GM_LIK_CONTINUOUS_BERNOULLI: {
            double l = logit_of(lik, out[i]);
            s += xi * l - gm_softplus(l) + (lik->kind == GM_LIK_CONTINUOUS_BERNOULLI ? cb_log_norm(l) : 0.0);
            break;
        }
        case GM_LIK_GAUSSIAN: {
            double log_sd = lik->learned ? (double)out[D + i] : log(lik->scale), t = (xi - mu) * exp(-log_sd);
            s += -0.5 * t * t - log_sd - 0.5 * log(2.0 * M_PI);
            break;
        }
        case GM_LIK_DISCRETIZED_LOGISTIC:
            s += dlogistic_logp(level_of(xi), mu, lik->learned ? exp((double)out[D + i]) : lik->scale);
            break;
        }
    }
    return s;
}

/* Mean of the discretized logistic: sum over levels k >= 1 of
 * P(X >= k / 255) / 255, P(X >= k / 255) = sigmoid(-(edge below k - mu) / s). */
static double dlogistic_mean(double mu, double s) {
    double m = 0.0;
    for (int k = 1; k <= LEVELS; k++) m += 1.0 / (1.0 + exp(((k - 0.5) / LEVELS - mu) / s));
    return m / LEVELS;
}

void gm_lik_pixels(const gm_lik *lik, const float *out, int D, bool draw, gm_rng *rng, float *pixels) {
    if (lik->kind == GM_LIK_BERNOULLI && !lik->probabilities && !draw) {
#pragma omp simd
        for (int i = 0; i < D; i++) pixels[i] = gm_sigmoidf(out[i]);
        return;
    }
    for (int i = 0; i < D; i++) {
        double mu = out[i], v = 0.0;
        double scale = lik->learned ? exp((double)out[D + i]) : lik->scale;
        switch (lik->kind) {
        case GM_LIK_BERNOULLI: {
            double p = lik->probabilities ? (double)unit(mu) : (double)gm_sigmoidf(out[i]);
            v = draw ? (gm_rng_uniform(rng) < p ? 1.0 : 0.0) : p;
            break;
        }
        case GM_LIK_CONTINUOUS_BERNOULLI: {
            double l = logit_of(lik, out[i]);
            v = draw ? cb_draw(l, gm_rng_uniform(rng)) : cb_mean(l);
            break;
        }
        case GM_LIK_GAUSSIAN:
            v = draw ? mu + scale * gm_rng_normal(rng) : mu;
            break;
        case GM_LIK_DISCRETIZED_LOGISTIC:
            if (draw) {
                /* a logistic draw put on its level: u = 0 gives -inf, level 0 */
                double u = gm_rng_uniform(rng);
                v = (double)level_of(mu + scale * (log(u) - log1p(-u))) / LEVELS;
            } else {
                v = dlogistic_mean(mu, scale);
            }
            break;
        }
        pixels[i] = unit(v);
    }
}
