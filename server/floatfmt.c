/*
 * floatfmt.c - shortest round-trip text of a float32 (see floatfmt.h).
 *
 * Every float32 x is exactly a double, and so are the ends of the interval
 * of reals that round to it (halfway to each neighbour; the one below a
 * power of two is nearer). Scaled by 10^s so that x has 9 digits before
 * the point (t = x * 10^s in [1e8, 1e9)), that interval is at least 4.5
 * units wide, so the integer nearest t reads back as x: 9 digits always
 * do. The shortest text is then the multiple of the largest power of ten
 * 10^j inside the interval (each j tried in turn: if no multiple of 10^j
 * is inside, none of 10^(j+1) is), the one nearest t when both neighbours
 * of t are inside, a tie going to the even digit as printf rounds.
 *
 * The scaled values carry double rounding errors of about 1e-16 relative,
 * against an interval 6e-8 wide: a candidate that close to an end is
 * decided exactly, by strtof on its text (a decimal exactly halfway between
 * two floats reads back as the even one, which only strtof knows here).
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "floatfmt.h"

enum { POW_MIN = -60, POW_MAX = 60 };
/* 10^k as the nearest double (exact up to 10^22) */
static const double POW10[POW_MAX - POW_MIN + 1] = {
    1e-60, 1e-59, 1e-58, 1e-57, 1e-56, 1e-55, 1e-54, 1e-53, 1e-52, 1e-51, 1e-50, 1e-49, 1e-48, 1e-47, 1e-46, 1e-45,
    1e-44, 1e-43, 1e-42, 1e-41, 1e-40, 1e-39, 1e-38, 1e-37, 1e-36, 1e-35, 1e-34, 1e-33, 1e-32, 1e-31, 1e-30, 1e-29,
    1e-28, 1e-27, 1e-26, 1e-25, 1e-24, 1e-23, 1e-22, 1e-21, 1e-20, 1e-19, 1e-18, 1e-17, 1e-16, 1e-15, 1e-14, 1e-13,
    1e-12, 1e-11, 1e-10, 1e-9,  1e-8,  1e-7,  1e-6,  1e-5,  1e-4,  1e-3,  1e-2,  1e-1,  1e0,   1e1,   1e2,   1e3,
    1e4,   1e5,   1e6,   1e7,   1e8,   1e9,   1e10,  1e11,  1e12,  1e13,  1e14,  1e15,  1e16,  1e17,  1e18,  1e19,
    1e20,  1e21,  1e22,  1e23,  1e24,  1e25,  1e26,  1e27,  1e28,  1e29,  1e30,  1e31,  1e32,  1e33,  1e34,  1e35,
    1e36,  1e37,  1e38,  1e39,  1e40,  1e41,  1e42,  1e43,  1e44,  1e45,  1e46,  1e47,  1e48,  1e49,  1e50,  1e51,
    1e52,  1e53,  1e54,  1e55,  1e56,  1e57,  1e58,  1e59,  1e60,
};

static double pow10_of(int k) { return POW10[k - POW_MIN]; }

/* Whether c * 10^-s (c integral) reads back as x, whose interval scaled by
 * 10^s is (lo, hi). */
static bool reads_back(double c, int s, double lo, double hi, float x) {
    double margin = hi * 2e-15;
    if (c <= lo - margin || c >= hi + margin) return false;
    if (c > lo + margin && c < hi - margin) return true;
    char text[40];
    snprintf(text, sizeof text, "%.0fe%d", c, -s);
    float back = strtof(text, NULL);
    return memcmp(&back, &x, sizeof x) == 0;
}

/* Of the two multiples of m around t, the nearer one (a tie to the even
 * multiple) that reads back, as a count of m; 0 when neither does. */
static double multiple(double t, double m, int s, double lo, double hi, float x) {
    double q = floor(t / m), frac = t / m - q;
    double first = frac < 0.5 || (frac == 0.5 && ((uint64_t)q & 1) == 0) ? q : q + 1, second = first == q ? q + 1 : q;
    if (first > 0 && reads_back(first * m, s, lo, hi, x)) return first;
    if (second > 0 && reads_back(second * m, s, lo, hi, x)) return second;
    return 0;
}

static const char PAIRS[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                            "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                            "8081828384858687888990919293949596979899";

/* The decimal digits of d > 0 into dig; returns their count. */
static int digits_of(uint64_t d, char dig[24]) {
    char tmp[24], *p = tmp + sizeof tmp;
    for (; d >= 100; d /= 100) memcpy(p -= 2, PAIRS + 2 * (d % 100), 2);
    if (d >= 10) memcpy(p -= 2, PAIRS + 2 * d, 2);
    else *--p = (char)('0' + d);
    int n = (int)(tmp + sizeof tmp - p);
    memcpy(dig, p, (size_t)n);
    return n;
}

int gm_float_shortest(float x, char out[GM_FLOAT_CHARS]) {
    char *o = out;
    if (signbit(x)) *o++ = '-';
    x = fabsf(x);
    if (x == 0.0f) {
        memcpy(o, "0.0", 4);
        return (int)(o - out) + 3;
    }
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    uint32_t down = bits - 1, up = bits + 1;
    float below, above;
    memcpy(&below, &down, sizeof below);
    memcpy(&above, &up, sizeof above);
    double xd = x, lo = (xd + below) / 2, hi = isinf(above) ? xd + (xd - below) / 2 : (xd + above) / 2;

    uint64_t dbits;
    memcpy(&dbits, &xd, sizeof dbits);
    int e2 = (int)(dbits >> 52) - 1023; /* xd in [2^e2, 2^(e2+1)): floor(e2 log10 2) is floor(log10 xd) or one less */
    int s = 8 - (int)floor(e2 * 0.30102999566398120);
    double t = xd * pow10_of(s);
    if (t >= 1e9) t = xd * pow10_of(--s);
    double scale = pow10_of(s);
    lo *= scale;
    hi *= scale;

    /* 9 digits: the integer nearest t, inside the interval by 1.5 units or more */
    double q = floor(t), frac = t - q;
    double d = frac > 0.5 || (frac == 0.5 && ((uint64_t)q & 1)) ? q + 1 : q;
    int j = 0;
    for (double m = 10; j < 9; m *= 10, j++) {
        double dm = multiple(t, m, s, lo, hi, x);
        if (dm == 0) break;
        d = dm;
    }
    s -= j;

    char dig[24];
    int n = digits_of((uint64_t)d, dig);
    int k = n - 1 - s; /* the power of ten of the first digit */
    if (k >= -5 && k < 9) {
        if (k < 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -k - 1; i++) *o++ = '0';
            memcpy(o, dig, (size_t)n);
            o += n;
        } else if (n <= k + 1) {
            memcpy(o, dig, (size_t)n);
            o += n;
            for (int i = 0; i < k + 1 - n; i++) *o++ = '0';
            *o++ = '.';
            *o++ = '0';
        } else {
            memcpy(o, dig, (size_t)k + 1);
            o += k + 1;
            *o++ = '.';
            memcpy(o, dig + k + 1, (size_t)(n - k - 1));
            o += n - k - 1;
        }
    } else {
        *o++ = dig[0];
        if (n > 1) {
            *o++ = '.';
            memcpy(o, dig + 1, (size_t)n - 1);
            o += n - 1;
        }
        *o++ = 'e';
        if (k < 0) *o++ = '-';
        if (abs(k) >= 10) *o++ = (char)('0' + abs(k) / 10);
        *o++ = (char)('0' + abs(k) % 10);
    }
    *o = 0;
    return (int)(o - out);
}
