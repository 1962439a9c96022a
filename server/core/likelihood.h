/*
 * likelihood.h - the VAE decoder's distribution p(x|z) over pixels in [0, 1]
 * (internal; docs/likelihoods.md gives the definitions).
 *
 * The decoder gives one value per pixel (bernoulli, continuous_bernoulli,
 * and gaussian / discretized_logistic with a fixed scale) or two (a learned
 * scale: D locations, then D log scales). Bernoulli kinds read logits, or
 * probabilities when the decoder ends in a sigmoid, which are turned into
 * logits once, never squashed twice. Log densities are summed in double.
 */
#ifndef GM_LIKELIHOOD_H
#define GM_LIKELIHOOD_H

#include <stdbool.h>

#include "gm/error.h"
#include "gm/rng.h"
#include "gm/safetensors.h"

typedef enum {
    GM_LIK_BERNOULLI,
    GM_LIK_CONTINUOUS_BERNOULLI,
    GM_LIK_GAUSSIAN,
    GM_LIK_DISCRETIZED_LOGISTIC,
} gm_lik_kind;

typedef struct {
    gm_lik_kind kind;
    bool probabilities; /* bernoulli kinds: the decoder outputs probabilities */
    bool learned;       /* gaussian, logistic: D locations then D log scales */
    double scale;       /* the fixed scale otherwise (sigma, or the logistic's s) */
} gm_lik;

/* Reads gm.likelihood, gm.likelihood_scale and gm.decoder_output; refuses
 * unknown or inconsistent values with a message naming the key and value. */
int gm_lik_parse(const gm_st *st, gm_lik *lik, char err[GM_ERR_LEN]);

const char *gm_lik_name(gm_lik_kind kind);

/* Decoder values per pixel: 2 with a learned scale, else 1. */
int gm_lik_values(const gm_lik *lik);

/* log p(x|out) of one image: x (D) in [0, 1], out (values * D). */
double gm_lik_logp(const gm_lik *lik, const float *x, const float *out, int D);

/* The distribution's mean (draw = false) or one draw from the row's stream
 * (draw = true), per pixel, clamped to [0, 1]: pixels (D) from out. */
void gm_lik_pixels(const gm_lik *lik, const float *out, int D, bool draw, gm_rng *rng, float *pixels);

#endif
