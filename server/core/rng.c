/* rng.c - xoshiro256** with splitmix64 seeding, Box-Muller normals and
 * truncated normals by inverse CDF. */
#include "gm/rng.h"

#include <math.h>
#include <string.h>

#include "vmath.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void gm_rng_seed(gm_rng *r, uint64_t seed, uint64_t stream) {
    /* Hash the stream index first so that nearby (seed, stream) pairs start
     * far apart; xoshiro's state must not be all zero, which splitmix64's
     * outputs never are together. */
    uint64_t h = stream;
    uint64_t x = seed ^ splitmix64(&h);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    r->has_spare = false;
    r->spare = 0;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t gm_rng_next(gm_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double gm_rng_uniform(gm_rng *r) { return (double)(gm_rng_next(r) >> 11) * 0x1.0p-53; }

double gm_rng_normal(gm_rng *r) {
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    double u1 = 1.0 - gm_rng_uniform(r); /* (0, 1]: log is finite */
    double u2 = gm_rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1)), ang = 2.0 * M_PI * u2;
    r->spare = rad * sin(ang);
    r->has_spare = true;
    return rad * cos(ang);
}

/* Box-Muller on pairs of uniforms, a vector of pairs at a time: cos and
 * sin of 2 pi u2 times sqrt(-2 log u1), for u1 in (0, 1] and u2 in [0, 1).
 * log: u1 = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s),
 * s = (m - 1) / (m + 1), |s| < 0.172 (vmath.h's series), and e ln 2 with
 * ln 2 in two parts. sin and cos: 4 u2 is
 * exact, so its nearest integer q (the quadrant) and the rest f in
 * [-1/2, 1/2] are too, and r = f pi / 2 in [-pi/4, pi/4] takes Taylor
 * series to r^17 and r^18 (remainders below 1e-19). Each value is within a
 * few units in the last place of libm's (tests/test_math.c). */
static const double INV_FACTORIAL[19] = {
    1.0,
    1.0,
    1.0 / 2,
    1.0 / 6,
    1.0 / 24,
    1.0 / 120,
    1.0 / 720,
    1.0 / 5040,
    1.0 / 40320,
    1.0 / 362880,
    1.0 / 3628800,
    1.0 / 39916800,
    1.0 / 479001600,
    1.0 / 6227020800.0,
    1.0 / 87178291200.0,
    1.0 / 1307674368000.0,
    1.0 / 20922789888000.0,
    1.0 / 355687428096000.0,
    1.0 / 6402373705728000.0,
};

static void box_muller(const double *u1, const double *u2, double *c, double *s, int n) {
#pragma omp simd
    for (int i = 0; i < n; i++) {
        uint64_t bits;
        double u = u1[i], m;
        memcpy(&bits, &u, sizeof bits);
        int e = (int)(bits >> 52) - 1023;
        bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
        memcpy(&m, &bits, sizeof m);
        int above = m > 1.4142135623730951; /* no branch: the loop stays one vector */
        m = above ? 0.5 * m : m;
        e += above;
        double log_u =
            e * 6.93147180369123816490e-01 + (e * 1.90821492927058770002e-10 + gm_atanh2((m - 1.0) / (m + 1.0)));
        double rad = sqrt(-2.0 * log_u);

        double q4 = 4.0 * u2[i], q = (q4 + 0x1.8p52) - 0x1.8p52; /* nearest, ties to even */
        double r = (q4 - q) * 1.5707963267948966, r2 = r * r;
        double sn = INV_FACTORIAL[17], cs = INV_FACTORIAL[18]; /* both series by Horner, side by side */
#pragma GCC unroll 8
        for (int k = 15; k >= 1; k -= 2) {
            sn = sn * -r2 + INV_FACTORIAL[k];
            cs = cs * -r2 + INV_FACTORIAL[k + 1];
        }
        sn *= r;
        cs = cs * -r2 + 1.0;
        int quadrant = (int)q & 3;
        double sin_a = quadrant & 1 ? cs : sn, cos_a = quadrant & 1 ? sn : cs;
        s[i] = rad * (quadrant & 2 ? -sin_a : sin_a);
        c[i] = rad * ((quadrant + 1) & 2 ? -cos_a : cos_a);
    }
}

void gm_rng_normals(gm_rng *r, double *out, int n) {
    enum { PAIRS = 32 };
    int i = 0;
    if (n > 0 && r->has_spare) {
        out[i++] = r->spare;
        r->has_spare = false;
    }
    while (i < n) {
        double u1[PAIRS], u2[PAIRS], c[PAIRS], s[PAIRS];
        int pairs = (n - i + 1) / 2 < PAIRS ? (n - i + 1) / 2 : PAIRS;
        for (int k = 0; k < pairs; k++) { /* the order gm_rng_normal draws them in */
            u1[k] = 1.0 - gm_rng_uniform(r);
            u2[k] = gm_rng_uniform(r);
        }
        box_muller(u1, u2, c, s, pairs);
        for (int k = 0; k < pairs; k++) {
            out[i++] = c[k];
            if (i < n) out[i++] = s[k];
            else {
                r->spare = s[k];
                r->has_spare = true;
            }
        }
    }
}

/* AS241 (PPND16, Wichura 1988) given q = p - 0.5 and tail = min(p, 1 - p),
 * both computed by the caller without cancellation, so that the central
 * branch is accurate relative to q (however small) and the tail branches
 * relative to tail (however small). */
static double as241(double q, double tail) {
    if (fabs(q) <= 0.425) {
        double r = 0.180625 - q * q;
        double num =
            (((((((2.5090809287301226727e+3 * r + 3.3430575583588128105e+4) * r + 6.7265770927008700853e+4) * r +
                 4.5921953931549871457e+4) *
                    r +
                1.3731693765509461125e+4) *
                   r +
               1.9715909503065514427e+3) *
                  r +
              1.3314166789178437745e+2) *
                 r +
             3.3871328727963666080e+0);
        double den =
            (((((((5.2264952788528545610e+3 * r + 2.8729085735721942674e+4) * r + 3.9307895800092710610e+4) * r +
                 2.1213794301586595867e+4) *
                    r +
                5.3941960214247511077e+3) *
                   r +
               6.8718700749205790830e+2) *
                  r +
              4.2313330701600911252e+1) *
                 r +
             1.0);
        return q * num / den;
    }
    double r = sqrt(-log(tail)), num, den;
    if (r <= 5.0) {
        r -= 1.6;
        num = (((((((7.74545014278341407640e-4 * r + 2.27238449892691845833e-2) * r + 2.41780725177450611770e-1) * r +
                   1.27045825245236838258e+0) *
                      r +
                  3.64784832476320460504e+0) *
                     r +
                 5.76949722146069140550e+0) *
                    r +
                4.63033784615654529590e+0) *
                   r +
               1.42343711074968357734e+0);
        den = (((((((1.05075007164441684324e-9 * r + 5.47593808499534494600e-4) * r + 1.51986665636164571966e-2) * r +
                   1.48103976427480074590e-1) *
                      r +
                  6.89767334985100004550e-1) *
                     r +
                 1.67638483018380384940e+0) *
                    r +
                2.05319162663775882187e+0) *
                   r +
               1.0);
    } else {
        r -= 5.0;
        num = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r + 1.24266094738807843860e-3) * r +
                   2.65321895265761230930e-2) *
                      r +
                  2.96560571828504891230e-1) *
                     r +
                 1.78482653991729133580e+0) *
                    r +
                5.46378491116411436990e+0) *
                   r +
               6.65790464350110377720e+0);
        den = (((((((2.04426310338993978564e-15 * r + 1.42151175831644588870e-7) * r + 1.84631831751005468180e-5) * r +
                   7.86869131145613259100e-4) *
                      r +
                  1.48753612908506148525e-2) *
                     r +
                 1.36929880922735805310e-1) *
                    r +
                5.99832206555887937690e-1) *
                   r +
               1.0);
    }
    double x = num / den;
    return q < 0 ? -x : x;
}

double gm_normal_quantile(double p) { return as241(p - 0.5, p < 0.5 ? p : 1.0 - p); }

double gm_rng_truncated_normal(gm_rng *r, double t) {
    /* |z| has CDF P(0 <= Z <= x) / P(0 <= Z <= t): draw that probability
     * mass d = v * P(0 <= Z <= t), v uniform in [0, 1), and invert. erf keeps
     * d accurate for tiny t (where |z| tends to v * t); near the top of a wide
     * truncation 0.5 - d is formed from erfc instead of by subtraction. One
     * bit the mantissa does not use gives the sign. */
    uint64_t bits = gm_rng_next(r);
    double v = (double)(bits >> 11) * 0x1.0p-53;
    double d = v * 0.5 * erf(t / M_SQRT2);
    double x = d <= 0.425 ? as241(d, 0.5 - d) : -as241(-d, 0.5 * (1.0 - v) + v * 0.5 * erfc(t / M_SQRT2));
    if (x > t) x = t; /* rounding at the edge */
    return (bits & 1) ? -x : x;
}
