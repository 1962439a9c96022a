/*
 * test_jsonw.c - the reply writer's text, read back by jansson's parser:
 * escaped strings come back as sent, float32 values as the identical
 * float, non-finite values as null, doubles to 10 significant digits in
 * the very text jansson's JSON_REAL_PRECISION(10) writes (the replies the
 * writer took over from jansson keep their bytes), and a buffer that starts
 * too small grows without losing anything.
 */
#include <float.h>
#include <jansson.h>

#include "testutil.h"

#include "jsonw.h"

static json_t *parse(gm_jw *w) {
    size_t len;
    char *text = gm_jw_finish(w, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    json_error_t err;
    json_t *v = json_loadb(text, len, 0, &err);
    if (!v) print_error("jansson: %s at %d in %s\n", err.text, err.position, text);
    assert_non_null(v);
    free(text);
    return v;
}

static void test_values(void **state) {
    (void)state;
    const char *s = "a\"b\\c\n\t\x01 \xc3\xa9 /";
    const float f[] = {0.1f, -0.0f, FLT_TRUE_MIN, FLT_MAX, -3.0f, NAN, INFINITY, 16777216.0f};
    gm_jw w;
    gm_jw_init(&w, 16);
    gm_jw_lit(&w, "{\"s\":");
    gm_jw_str(&w, s);
    gm_jw_lit(&w, ",\"i\":");
    gm_jw_int(&w, -42);
    gm_jw_lit(&w, ",\"big\":");
    gm_jw_int(&w, 9007199254740993LL);
    gm_jw_lit(&w, ",\"f\":");
    gm_jw_floats(&w, f, sizeof f / sizeof *f);
    gm_jw_lit(&w, ",\"d\":");
    gm_jw_double(&w, 3.0);
    gm_jw_lit(&w, ",\"d2\":");
    gm_jw_double(&w, -123.456789012345);
    gm_jw_lit(&w, ",\"dn\":");
    gm_jw_double(&w, -INFINITY);
    gm_jw_lit(&w, "}");
    json_t *v = parse(&w);
    assert_string_equal(json_string_value(json_object_get(v, "s")), s);
    assert_int_equal(json_integer_value(json_object_get(v, "i")), -42);
    assert_true(json_integer_value(json_object_get(v, "big")) == 9007199254740993LL);
    json_t *a = json_object_get(v, "f");
    assert_int_equal(json_array_size(a), sizeof f / sizeof *f);
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        json_t *x = json_array_get(a, i);
        if (!isfinite(f[i])) {
            assert_true(json_is_null(x));
            continue;
        }
        assert_true(json_is_real(x));
        float back = (float)json_real_value(x);
        assert_memory_equal(&back, &f[i], sizeof back);
    }
    assert_true(json_is_real(json_object_get(v, "d")));
    assert_true(json_real_value(json_object_get(v, "d")) == 3.0);
    double d2 = json_real_value(json_object_get(v, "d2"));
    assert_true(fabs(d2 + 123.456789012345) <= 123.456789012345 * 1e-9);
    assert_true(json_is_null(json_object_get(v, "dn")));
    json_decref(v);
}

/* jansson drops an exponent's '+' and leading zeros: 1e-05 is "1e-5". */
static void test_doubles_as_jansson_writes_them(void **state) {
    (void)state;
    const double x[] = {0.0,
                        -0.0,
                        1.0,
                        3.0,
                        -2.5,
                        0.1,
                        1e-5,
                        3.2e-05,
                        -7.5e-10,
                        1e20,
                        1.5e+100,
                        5e-324,
                        DBL_MAX,
                        123456789012.0,
                        1234567890.0,
                        0.0001,
                        0.00001234,
                        9.999999999e-5,
                        -123.456789012345,
                        1.0 / 3.0,
                        2.220446049250313e-16,
                        4.5e15,
                        1e16};
    uint32_t s = 7;
    for (int i = 0; i < 2000 + (int)(sizeof x / sizeof *x); i++) {
        double v = i < (int)(sizeof x / sizeof *x) ? x[i] : 0;
        if (i >= (int)(sizeof x / sizeof *x)) { /* random magnitudes from 1e-30 to 1e30 */
            s = s * 1664525u + 1013904223u;
            v = ((double)(s >> 8) / 16777216.0 - 0.5) * pow(10.0, (double)(s % 61) - 30.0);
        }
        json_t *j = json_real(v);
        char *want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(10));
        gm_jw w;
        gm_jw_init(&w, 1);
        gm_jw_double(&w, v);
        size_t len;
        char *got = gm_jw_finish(&w, &len);
        if (strcmp(got, want)) fail_msg("%.17g: wrote %s, jansson writes %s", v, got, want);
        free(got);
        free(want);
        json_decref(j);
    }
}

static void test_growth(void **state) {
    (void)state;
    enum { N = 20000 };
    static float x[N];
    uint32_t s = 1;
    for (int i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = ((float)(s >> 8) - 8388608.0f) / 1048576.0f;
    }
    gm_jw w;
    gm_jw_init(&w, 1);
    gm_jw_floats(&w, x, N);
    json_t *v = parse(&w);
    assert_int_equal(json_array_size(v), N);
    for (int i = 0; i < N; i++) {
        float back = (float)json_number_value(json_array_get(v, (size_t)i));
        if (back != x[i]) print_error("[%d]: %.9g read back as %.9g\n", i, (double)x[i], (double)back);
        assert_true(back == x[i]);
    }
    json_decref(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_doubles_as_jansson_writes_them),
        cmocka_unit_test(test_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
