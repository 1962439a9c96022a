/*
 * vmath.h - branch-free float math that the compiler can vectorize.
 *
 * NADE evaluates a sigmoid for every hidden unit at every pixel (D*H per
 * image), which makes libm's scalar expf the bottleneck. gm_expf is the
 * Cephes range reduction x = n ln2 + r with a degree-7 polynomial for e^r and
 * 2^n built in the exponent bits; it has no calls or branches, so loops over
 * it vectorize (AVX-512: 16 lanes). Relative error < 3e-7 against double exp
 * over the clamped range (tests/test_math.c); inputs are clamped to
 * [-87, 88] where float exp neither overflows nor goes subnormal; a NaN
 * clamps to -87 too (the comparison is written so that NaN fails it), since
 * converting NaN to an integer below is undefined behaviour.
 */
#ifndef GM_VMATH_H
#define GM_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE__)
#include <immintrin.h>
#endif

/* Flush-to-zero and denormals-are-zero for the span of one model call.
 *
 * A float below 2^-126 (1.18e-38) in magnitude is subnormal, and x86 cores
 * take a slow path for operations that produce or read one. Trained models
 * make them: a NADE hidden unit whose pre-activation is below -87.3 has
 * sigmoid e^a < 2^-126, and so do its products with the output weights.
 * FTZ (MXCSR bit 15) writes 0 for such a result and DAZ (bit 6) reads such
 * an input as 0. Why no result we promise can change:
 *  - each flushed value moves by less than 2^-126 in absolute terms;
 *  - a NADE logit sums H such terms times its output weights: the whole
 *    change is below H |V|max 2^-126, under 1e-28 for a million units with
 *    weights below 1e4 (trained ones are below 10), while log p is held to
 *    1e-4 nats and outputs to 1e-4 of their scale (at least 1);
 *  - probabilities that small enter a log-likelihood as log(1 - 1e-38),
 *    which is 0 in float and double alike; the log-domain terms themselves
 *    (NADE's log sigmoid of each logit, the VAE's softplus) come from the
 *    logit, never from a subnormal: NADE's are double, and the VAE's
 *    softplus loses below 2^-126 per pixel.
 * tests/test_ftz.c checks the references hold, including a NADE whose units
 * sit at pre-activations of -120.
 *
 * gm_fp_flush_begin() sets both bits and returns the previous mode bits;
 * gm_fp_flush_end() puts those back, leaving the exception flags alone, so
 * a model call never changes its caller's floating-point mode. The pool
 * threads of parallel.c run each range in its caller's mode. OpenBLAS's own
 * threads are OpenBLAS's and may run unflushed: GEMM inputs and outputs
 * are weights and activations of normal size, where that changes nothing. */
#define GM_MXCSR_FLUSH 0x8040u
static inline unsigned gm_fp_mode(void) {
#if defined(__SSE__)
    return _mm_getcsr() & GM_MXCSR_FLUSH;
#else
    return 0;
#endif
}
static inline void gm_fp_set_mode(unsigned mode) {
#if defined(__SSE__)
    _mm_setcsr((_mm_getcsr() & ~GM_MXCSR_FLUSH) | (mode & GM_MXCSR_FLUSH));
#else
    (void)mode;
#endif
}
static inline unsigned gm_fp_flush_begin(void) {
    unsigned old = gm_fp_mode();
    gm_fp_set_mode(GM_MXCSR_FLUSH);
    return old;
}
static inline void gm_fp_flush_end(unsigned old) { gm_fp_set_mode(old); }

static inline float gm_expf(float x) {
    x = x > -87.0f ? x : -87.0f;
    x = x > 88.0f ? 88.0f : x;
    /* round to nearest via the 1.5 * 2^23 trick: exact for |v| < 2^22 */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float gm_sigmoidf(float x) { return 1.0f / (1.0f + gm_expf(-x)); }

/* Sigmoids of a whole vector register, for the NADE's hot loop: the same
 * Cephes exp, then 1 / (1 + e) as a reciprocal estimate refined by one
 * Newton step y (2 - d y), which is exact to float rounding (the estimate's
 * 2^-14 (AVX-512) or 1.5 2^-12 (AVX2) relative error squares to below
 * 2^-24) and costs three pipelined instructions where a divide blocks its
 * unit for several cycles. The input is clamped to
 * [-88, 87] (the exponent to [-87, 88], as in gm_expf), so 1 + e stays
 * finite and the reciprocal is never of infinity. */
#if defined(__AVX512F__)
/* With AVX-512 the exponential is table-driven, which is a third faster
 * here (2.1 against 3.1 ns a vector, measured alone): e^t = 2^n 2^(j/32)
 * e^g with n + j/32 the nearest 32nd of t log2(e) (by the 1.5 * 2^18
 * trick, whose low mantissa bits then hold j), 2^(j/32) from a 32-entry
 * table held in two registers (vpermt2ps), g = t - (n + j/32) ln 2 with
 * ln 2 split in two as in gm_expf, |g| <= ln2 / 64, and e^g to third
 * order (remainder g^4 / 24 < 6e-10). scalef applies 2^floor(n + j/32). */
#define GM_SIG_LANES 16
typedef __m512 gm_vsig;
static inline __m512 gm_sigmoid_v(__m512 x) {
    const __m512 lo = _mm512_setr_ps(1.0f, 1.0218972f, 1.04427373f, 1.06714046f, 1.09050775f, 1.1143868f, 1.13878858f,
                                     1.1637249f, 1.18920708f, 1.21524739f, 1.24185777f, 1.26905096f, 1.29683959f,
                                     1.32523668f, 1.35425556f, 1.38390994f);
    const __m512 hi = _mm512_setr_ps(1.41421354f, 1.44518077f, 1.47682619f, 1.50916445f, 1.54221082f, 1.5759809f,
                                     1.61049032f, 1.64575553f, 1.68179286f, 1.71861935f, 1.75625217f, 1.79470909f,
                                     1.8340081f, 1.87416768f, 1.91520655f, 1.95714414f);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-88.0f)), _mm512_set1_ps(87.0f));
    __m512 ym = _mm512_fmadd_ps(x, _mm512_set1_ps(-1.44269504088896341f), _mm512_set1_ps(393216.0f));
    __m512 k = _mm512_sub_ps(ym, _mm512_set1_ps(393216.0f));         /* n + j/32 */
    __m512 g = _mm512_fnmsub_ps(k, _mm512_set1_ps(0.693359375f), x); /* t - k ln2, t = -x */
    g = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), g);
    __m512 t = _mm512_permutex2var_ps(lo, _mm512_castps_si512(ym), hi);
    __m512 p = _mm512_fmadd_ps(g, _mm512_set1_ps(1.0f / 6), _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(g, g), p, g); /* e^g - 1 */
    __m512 d = _mm512_add_ps(_mm512_scalef_ps(_mm512_fmadd_ps(t, p, t), k), _mm512_set1_ps(1.0f));
    __m512 y = _mm512_rcp14_ps(d);
    return _mm512_fmadd_ps(y, _mm512_fnmadd_ps(d, y, _mm512_set1_ps(1.0f)), y);
}
#elif defined(__AVX2__) && defined(__FMA__)
#define GM_SIG_LANES 8
typedef __m256 gm_vsig;
static inline __m256 gm_sigmoid_v(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.0f)), _mm256_set1_ps(87.0f));
    __m256 t = _mm256_sub_ps(_mm256_setzero_ps(), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), t);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 d = _mm256_fmadd_ps(p, _mm256_castsi256_ps(e), _mm256_set1_ps(1.0f));
    __m256 y = _mm256_rcp_ps(d);
    return _mm256_fmadd_ps(y, _mm256_fnmadd_ps(d, y, _mm256_set1_ps(1.0f)), y);
}
#endif

#ifdef GM_SIG_LANES
/* The gate tanh(a) sigmoid(g) of a vector register, tanh a = 2 sigmoid(2a)
 * - 1: no divide, where gm_gatef's costs a vector loop most of its time
 * (the gate of a gated PixelCNN). Absolute error < 5e-7 (tests/test_math.c). */
static inline gm_vsig gm_gate_v(gm_vsig a, gm_vsig g) {
    gm_vsig s = gm_sigmoid_v(a + a);
    return (s + s - 1.0f) * gm_sigmoid_v(g);
}
#endif

/* tanh x = sign(x) (1 - e^-2|x|) / (1 + e^-2|x|): absolute error < 2e-7. */
static inline float gm_tanhf(float x) {
    float e = gm_expf(-2.0f * (x < 0 ? -x : x)), t = (1.0f - e) / (1.0f + e);
    return x < 0 ? -t : t;
}

/* The gate of gated PixelCNNs and WaveNets, tanh(a) sigmoid(g), with one
 * divide: sign(a) (1 - e^-2|a|) / ((1 + e^-2|a|) (1 + e^-g)). The
 * denominator stays below 2 e^88 < FLT_MAX (gm_expf clamps at 88). */
static inline float gm_gatef(float a, float g) {
    float e = gm_expf(-2.0f * (a < 0 ? -a : a)), t = (1.0f - e) / ((1.0f + e) * (1.0f + gm_expf(-g)));
    return a < 0 ? -t : t;
}

/* log(1 + e^x) in double, stable for either sign: the exact per-pixel terms
 * of NADE's log p (a sum of 784 of them must hold 1e-4). The _e form takes
 * e = exp(-|x|) from a caller that needs it too (NADE's draw). */
static inline double gm_softplus_e(double x, double e) { return (x > 0 ? x : 0.0) + log1p(e); }
static inline double gm_softplus(double x) { return gm_softplus_e(x, exp(-fabs(x))); }

/* 2 atanh(z) = log((1 + z) / (1 - z)) by its odd series to z^27, in
 * double: remainder below 1e-14 relative for |z| <= 1/3. log1p(t) is
 * gm_atanh2(t / (2 + t)) and log(m) is gm_atanh2((m - 1) / (m + 1)). */
static inline double gm_atanh2(double z) {
    double z2 = z * z, q = 1.0 / 27;
    q = q * z2 + 1.0 / 25;
    q = q * z2 + 1.0 / 23;
    q = q * z2 + 1.0 / 21;
    q = q * z2 + 1.0 / 19;
    q = q * z2 + 1.0 / 17;
    q = q * z2 + 1.0 / 15;
    q = q * z2 + 1.0 / 13;
    q = q * z2 + 1.0 / 11;
    q = q * z2 + 1.0 / 9;
    q = q * z2 + 1.0 / 7;
    q = q * z2 + 1.0 / 5;
    q = q * z2 + 1.0 / 3;
    q = q * z2 + 1.0;
    return 2.0 * z * q;
}

/* sum_i softplus(s_i) = sum_i max(s_i, 0) + log1p(e^-|s_i|), in double, as
 * a loop the compiler vectorizes (8 lanes on AVX-512) where libm's scalar
 * exp and log1p cost NADE a third of its time. e^-|s| is Cephes's range
 * reduction with ln 2 split in two, a degree-11 Taylor polynomial on
 * |r| <= ln2 / 2 (remainder < 7e-15 relative) and 2^k in the exponent bits
 * (by the 1.5 * 2^52 trick, exact for |k| < 2^51); log1p(t) for t in (0, 1]
 * is 2 atanh(z), z = t / (2 + t) <= 1/3, by its odd series to z^27
 * (remainder < 1e-14). |s| is clamped at 50, where log1p(e^-50) < 2e-22.
 * Each term is within 1e-13 of libm's (tests/test_vector_math.c); NADE's log p
 * sums D of them and must hold 1e-4. +-inf give inf and 0, NaN gives NaN. */
static inline double gm_softplus_sum(const float *s, int n) {
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++) {
        double x = s[i], ax = x < 0 ? -x : x;
        ax = ax < 50.0 ? ax : 50.0;
        double k = (-ax * 1.4426950408889634 + 0x1.8p52) - 0x1.8p52;
        double r = -ax - k * 6.93147180369123816490e-01 - k * 1.90821492927058770002e-10;
        double p = 1.0 / 39916800;
        p = p * r + 1.0 / 3628800;
        p = p * r + 1.0 / 362880;
        p = p * r + 1.0 / 40320;
        p = p * r + 1.0 / 5040;
        p = p * r + 1.0 / 720;
        p = p * r + 1.0 / 120;
        p = p * r + 1.0 / 24;
        p = p * r + 1.0 / 6;
        p = p * r + 0.5;
        p = p * r + 1.0;
        p = p * r + 1.0;
        double kb = k + 0x1.8p52, scale;
        uint64_t bits;
        memcpy(&bits, &kb, sizeof bits);
        bits = (bits - 0x4338000000000000ull + 1023) << 52;
        memcpy(&scale, &bits, sizeof scale);
        double t = p * scale;
        sum += (x > 0 || x != x ? x : 0.0) + gm_atanh2(t / (2.0 + t)); /* a NaN logit gives a NaN sum */
    }
    return sum;
}

/* softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|), the log1p as
 * 2 atanh(u / (2 + u)) by its odd series (u <= 1, so s <= 1/3 and seven
 * terms reach float precision). Absolute error < 3e-7. */
static inline float gm_softplusf(float x) {
    float ax = x < 0 ? -x : x, u = gm_expf(-ax), s = u / (2.0f + u), s2 = s * s;
    float p = 2.0f / 13;
    p = p * s2 + 2.0f / 11;
    p = p * s2 + 2.0f / 9;
    p = p * s2 + 2.0f / 7;
    p = p * s2 + 2.0f / 5;
    p = p * s2 + 2.0f / 3;
    p = p * s2 + 2.0f;
    return (x > 0 ? x : 0.0f) + p * s;
}

#endif
