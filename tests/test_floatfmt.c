/*
 * test_floatfmt.c - gm_float_shortest against glibc's correctly rounded
 * strtof and printf: every text reads back as the identical float (bits,
 * so -0 and 0 differ), is never longer than the shortest "%.*g" that reads
 * back, is the nearest decimal of its length, and is a JSON number jansson parses to the same float. Over ~4
 * million random bit patterns and the edges: zeros, subnormals, powers of
 * two and of ten with their neighbours, integers, FLT_MAX.
 */
#include <float.h>
#include <jansson.h>

#include "testutil.h"

#include "floatfmt.h"

static uint64_t mix(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float from_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* The digits of a decimal's mantissa less leading and trailing zeros
 * ("100.0" has 1, "0.0125" 3). */
static int significant_digits(const char *s) {
    int first = -1, last = -1, i = 0;
    for (; *s && *s != 'e'; s++) {
        if (*s < '0' || *s > '9') continue;
        if (*s != '0') {
            if (first < 0) first = i;
            last = i;
        }
        i++;
    }
    return first < 0 ? 0 : last - first + 1;
}

/* The fewest digits p for which printf's "%.*g" (nearest p-digit decimal) reads back. */
static int printf_shortest(float x) {
    char t[64];
    for (int p = 1; p < 9; p++) {
        snprintf(t, sizeof t, "%.*g", p, (double)x);
        if (strtof(t, NULL) == x) return p;
    }
    return 9;
}

static long failures;

static void check(float x, bool deep) {
    if (!isfinite(x)) return;
    char out[GM_FLOAT_CHARS];
    int n = gm_float_shortest(x, out);
    char *end;
    float back = strtof(out, &end);
    bool ok = n == (int)strlen(out) && *end == 0 && memcmp(&back, &x, sizeof x) == 0;
    int digits = significant_digits(out);
    if (ok && deep) {
        int want = printf_shortest(x);
        char nearest[64];
        snprintf(nearest, sizeof nearest, "%.*g", want, (double)x);
        /* as short as printf's; as printf's when as long (the nearest decimal) */
        ok = digits < want || (digits == want && strtod(out, NULL) == strtod(nearest, NULL));
        json_error_t err;
        json_t *v = json_loads(out, JSON_DECODE_ANY, &err);
        ok = ok && json_is_real(v) && (float)json_real_value(v) == x;
        json_decref(v);
    }
    if (!ok && failures++ < 10) {
        uint32_t b;
        memcpy(&b, &x, sizeof b);
        print_error("0x%08x (%.9g): wrote \"%s\" (%d digits), reads back as %.9g; printf needs %d digits\n", b,
                    (double)x, out, digits, (double)back, printf_shortest(x));
    }
}

static void test_random_bits(void **state) {
    (void)state;
    uint64_t s = 42;
    failures = 0;
    for (long i = 0; i < 4000000; i++) {
        uint64_t r = mix(&s);
        check(from_bits((uint32_t)r), i % 16 == 0);
    }
    assert_int_equal(failures, 0);
}

static void test_edges(void **state) {
    (void)state;
    failures = 0;
    const float fixed[] = {0.0f,        -0.0f,  FLT_MIN,      FLT_MAX, -FLT_MAX,    FLT_TRUE_MIN, -FLT_TRUE_MIN,
                           1e38f,       1e-38f, 0.1f,         0.2f,    0.3f,        1.0f / 3,     16777216.0f,
                           16777217.0f, 1e9f,   999999999.0f, 1e-5f,   9.99999e-6f, 123456789.0f, 1.17549421e-38f};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) check(fixed[i], true);
    for (uint32_t b = 0; b < 1u << 23; b += 97) check(from_bits(b), true); /* subnormals */
    for (uint32_t b = 0; b < 64; b++) check(from_bits(b), true);
    for (uint32_t e = 0; e < 255; e++) /* powers of two and their neighbours: the lopsided intervals */
        for (int d = -2; d <= 2; d++) check(from_bits((e << 23) + (uint32_t)d), true);
    for (int k = -45; k <= 38; k++) { /* powers of ten and their neighbours */
        char t[16];
        snprintf(t, sizeof t, "1e%d", k);
        float p = strtof(t, NULL);
        check(p, true);
        check(nextafterf(p, 0), true);
        check(nextafterf(p, INFINITY), true);
    }
    for (int i = -100000; i <= 100000; i++) check((float)i, true);
    for (int i = 0; i < 100000; i++) check((float)i / 1000.0f, true);
    char out[GM_FLOAT_CHARS];
    gm_float_shortest(-0.0f, out);
    assert_string_equal(out, "-0.0");
    gm_float_shortest(0.1f, out);
    assert_string_equal(out, "0.1");
    gm_float_shortest(3.0f, out);
    assert_string_equal(out, "3.0");
    gm_float_shortest(1e-7f, out);
    assert_string_equal(out, "1e-7");
    gm_float_shortest(FLT_MAX, out);
    assert_string_equal(out, "3.4028235e38");
    gm_float_shortest(FLT_TRUE_MIN, out);
    assert_string_equal(out, "1e-45");
    assert_int_equal(failures, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_bits),
        cmocka_unit_test(test_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
