/*
 * rng.h - one small, seedable random stream per request row.
 *
 * xoshiro256** (Blackman & Vigna) seeded through splitmix64 from a (seed,
 * stream) pair. Each output row of a request owns the stream (seed, row), so
 * what a row draws depends only on its request's seed and its index: never on
 * which batch it joined or what else was in it. Normals come from the
 * Box-Muller transform in double precision; the second value of each pair is
 * kept for the next call. A truncated normal inverts its CDF, so it costs
 * one uniform per draw however narrow the truncation: a redraw loop would
 * run for ever at t = 1e-30.
 */
#ifndef GM_RNG_H
#define GM_RNG_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
    double spare;
    bool has_spare;
} gm_rng;

void gm_rng_seed(gm_rng *r, uint64_t seed, uint64_t stream);
uint64_t gm_rng_next(gm_rng *r);
double gm_rng_uniform(gm_rng *r); /* [0, 1), 53 bits */
double gm_rng_normal(gm_rng *r);  /* N(0, 1) */
/* n draws of N(0, 1): the values n calls of gm_rng_normal give, in their
 * order and leaving the same spare, to a few units in the last place (the
 * log, sin and cos are computed a vector at a time, not by libm). */
void gm_rng_normals(gm_rng *r, double *out, int n);
/* N(0, 1) conditioned on |z| <= t, for any t > 0 (1e-300 to infinity). */
double gm_rng_truncated_normal(gm_rng *r, double t);

/* The standard normal quantile Phi^-1(p) for 0 < p < 1 (Wichura's AS241,
 * about 1e-16 relative error, tails included). */
double gm_normal_quantile(double p);

#endif
