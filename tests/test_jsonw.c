/*
 * test_jsonw.c - the reply writer's text, read back by jansson's parser:
 * escaped strings come back as sent, float32 values as the identical
 * float, non-finite values as null, doubles to 10 significant digits, and
 * a buffer that starts too small grows without losing anything.
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
        cmocka_unit_test(test_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
