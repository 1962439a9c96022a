/* rng.c - xoshiro256** with splitmix64 seeding and Box-Muller normals. */
#include "gm/rng.h"

#include <math.h>

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
