/*
 * test_negotiation.c - the header parsers behind the reply formats and the
 * cache validators, on hostile and odd input: Accept (media ranges, case,
 * parameters, q=0, empty members, near misses), If-None-Match (lists, weak
 * tags, "*", unterminated or unquoted tags, megabytes of commas), and the
 * .npy header for every rank, including empty arrays. The truth is the
 * grammar of the headers (RFC 9110: media ranges compare case-insensitively,
 * q=0 means "not acceptable", If-None-Match compares weakly) and of the
 * .npy format (data at a multiple of 64 bytes, a header ending in "\n").
 */
#include "testutil.h"

#include "etag.h"
#include "formats.h"
#include "npy.h"

static gm_format pick(const char *accept) {
    gm_format f;
    char err[GM_ERR_LEN];
    assert_int_equal(gm_format_choose(NULL, accept, GM_FORMATS_IMAGES, GM_FORMAT_PNG, &f, err), 0);
    return f;
}

static void test_accept(void **state) {
    static const struct {
        const char *accept;
        gm_format want;
    } CASES[] = {
        {NULL, GM_FORMAT_PNG},
        {"", GM_FORMAT_PNG},
        {"*/*", GM_FORMAT_PNG},
        {"image/png", GM_FORMAT_PNG},
        {"application/x-npy", GM_FORMAT_NPY},
        {"APPLICATION/X-NPY", GM_FORMAT_NPY},
        {"application/octet-stream", GM_FORMAT_NPY},
        {"text/html, application/x-npy;q=0.5", GM_FORMAT_NPY},
        {"application/x-npy ; q=0.9", GM_FORMAT_NPY},
        {"application/x-npy;q=0", GM_FORMAT_PNG},
        {"application/x-npy;q=0.000", GM_FORMAT_PNG},
        {"application/x-npy;Q=0", GM_FORMAT_PNG},
        {"application/x-npy;q=0, application/octet-stream", GM_FORMAT_NPY},
        {"application/x-npyx", GM_FORMAT_PNG},
        {"xapplication/x-npy", GM_FORMAT_PNG},
        {"application/x-np", GM_FORMAT_PNG},
        {",,, ,;;;q=,", GM_FORMAT_PNG},
        {";q=0", GM_FORMAT_PNG},
        {"application/x-npy;charset=x;q=abc", GM_FORMAT_PNG}, /* q that is not a number: 0 */
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        gm_format got = pick(CASES[i].accept);
        if (got != CASES[i].want)
            print_error("Accept: %s -> %s, want %s\n", CASES[i].accept ? CASES[i].accept : "(none)",
                        gm_format_names[got], gm_format_names[CASES[i].want]);
        assert_int_equal(got, CASES[i].want);
    }
    /* an operation without npy keeps its default whatever Accept says */
    gm_format f;
    char err[GM_ERR_LEN];
    assert_int_equal(
        gm_format_choose(NULL, "application/x-npy", GM_FORMAT_BIT(GM_FORMAT_JSON), GM_FORMAT_JSON, &f, err), 0);
    assert_int_equal(f, GM_FORMAT_JSON);
    /* the parameter names a format exactly, and wins over Accept */
    assert_int_equal(gm_format_choose("png", "application/x-npy", GM_FORMATS_IMAGES, GM_FORMAT_JSON, &f, err), 0);
    assert_int_equal(f, GM_FORMAT_PNG);
    assert_int_equal(gm_format_choose("NPY", NULL, GM_FORMATS_IMAGES, GM_FORMAT_JSON, &f, err), -1);
    assert_int_equal(gm_format_choose("", NULL, GM_FORMATS_IMAGES, GM_FORMAT_JSON, &f, err), -1);
    assert_int_equal(gm_format_choose("png", NULL, GM_FORMATS_NUMBERS, GM_FORMAT_JSON, &f, err), -1);
    assert_non_null(strstr(err, "\"json\", \"npy\""));
    /* the reply's type follows what was asked for */
    assert_string_equal(gm_format_npy_type("application/octet-stream"), "application/octet-stream");
    assert_string_equal(gm_format_npy_type("application/octet-stream, application/x-npy"), "application/x-npy");
    assert_string_equal(gm_format_npy_type(NULL), "application/x-npy");
}

static void test_if_none_match(void **state) {
    char tag[GM_ETAG_LEN], other[GM_ETAG_LEN], header[3 * GM_ETAG_LEN];
    gm_etag_make("00ff", "m", "sample", "n=1", tag);
    gm_etag_make("00ff", "m", "sample", "n=2", other);
    assert_int_equal(strlen(tag), GM_ETAG_LEN - 1);
    assert_true(tag[0] == '"' && tag[GM_ETAG_LEN - 2] == '"');
    assert_string_not_equal(tag, other);
    /* the parts are kept apart: moving text from one to the next changes the tag */
    gm_etag_make("00f", "fm", "sample", "n=1", other);
    assert_string_not_equal(tag, other);
    assert_true(gm_etag_matches(tag, tag));
    assert_true(gm_etag_matches("*", tag));
    assert_true(gm_etag_matches(" *", tag));
    snprintf(header, sizeof header, "W/%s", tag);
    assert_true(gm_etag_matches(header, tag));
    snprintf(header, sizeof header, "\"a\", W/\"b\" ,%s", tag);
    assert_true(gm_etag_matches(header, tag));
    snprintf(header, sizeof header, "%.*s", GM_ETAG_LEN - 2, tag); /* unterminated */
    assert_false(gm_etag_matches(header, tag));
    snprintf(header, sizeof header, "%s", tag + 1); /* unquoted */
    assert_false(gm_etag_matches(header, tag));
    assert_false(gm_etag_matches(NULL, tag));
    assert_false(gm_etag_matches("", tag));
    assert_false(gm_etag_matches(", , ,", tag));
    assert_false(gm_etag_matches("W/", tag));
    assert_false(gm_etag_matches("\"\"", tag));
    assert_false(gm_etag_matches(other, tag));
    /* a megabyte of list separators, then the tag: read through once, found */
    size_t n = 1 << 20;
    char *big = malloc(n + GM_ETAG_LEN);
    memset(big, ',', n);
    memcpy(big + n, tag, GM_ETAG_LEN);
    assert_true(gm_etag_matches(big, tag));
    free(big);
}

static void test_npy_headers(void **state) {
    float x[4] = {1.0f, -2.5f, 0.0f, 3.25f};
    for (int ndim = 1; ndim <= GM_NPY_MAX_DIMS; ndim++) {
        long shape[GM_NPY_MAX_DIMS];
        for (int i = 0; i < ndim; i++) shape[i] = i == 0 ? 4 : 1;
        uint8_t *b;
        size_t len;
        assert_int_equal(gm_npy_write_f32(x, ndim, shape, &b, &len), 0);
        size_t hlen = b[8] | (size_t)b[9] << 8;
        assert_int_equal((10 + hlen) % 64, 0);
        assert_int_equal(len, 10 + hlen + sizeof x);
        assert_int_equal(b[10 + hlen - 1], '\n');
        char dict[512];
        memcpy(dict, b + 10, hlen);
        dict[hlen] = 0;
        char want[128] = "'shape': (4";
        for (int i = 1; i < ndim; i++) strcat(want, ", 1");
        strcat(want, ndim == 1 ? ",)" : ")");
        if (!strstr(dict, want)) print_error("ndim %d: header %s lacks %s\n", ndim, dict, want);
        assert_non_null(strstr(dict, want));
        assert_memory_equal(b + 10 + hlen, "\x00\x00\x80\x3f", 4); /* 1.0f little-endian */
        free(b);
    }
    /* an empty array and the largest shapes still make a valid header */
    long empty[1] = {0}, wide[GM_NPY_MAX_DIMS] = {0,           2147483647L, 2147483647L, 2147483647L,
                                                  2147483647L, 2147483647L, 2147483647L, 2147483647L};
    uint8_t *b;
    size_t len;
    assert_int_equal(gm_npy_write_f32(x, 1, empty, &b, &len), 0);
    assert_int_equal(len % 64, 0);
    free(b);
    assert_int_equal(gm_npy_write_f32(x, GM_NPY_MAX_DIMS, wide, &b, &len), 0);
    size_t hlen = b[8] | (size_t)b[9] << 8;
    assert_int_equal(len, 10 + hlen);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept),
        cmocka_unit_test(test_if_none_match),
        cmocka_unit_test(test_npy_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
