/*
 * test_safetensors.c - the loader accepts well-formed files, converts every
 * supported dtype exactly, and refuses each malformed-file rule with a
 * message that names the file and the rule.
 */
#include "gm/safetensors.h"
#include "testutil.h"

static const float SIX[6] = {1, -2, 3.5f, 0, 1e-3f, -7};

static void test_loads_f32_and_metadata(void **state) {
    size_t len;
    uint8_t *buf = st_build("{\"__metadata__\":{\"gm.family\":\"nade\"},"
                            "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}",
                            SIX, sizeof SIX, &len);
    char err[GM_ERR_LEN] = "";
    gm_st *st = gm_st_parse("mem.safetensors", buf, len, err);
    assert_non_null(st);
    const gm_tensor *w = gm_st_tensor(st, "w");
    assert_non_null(w);
    assert_int_equal(w->ndim, 2);
    assert_int_equal(w->shape[0], 2);
    assert_int_equal(w->shape[1], 3);
    assert_memory_equal(w->f32, SIX, sizeof SIX);
    assert_string_equal(gm_st_meta(st, "gm.family"), "nade");
    assert_null(gm_st_meta(st, "gm.missing"));
    assert_null(gm_st_tensor(st, "nope"));
    gm_st_free(st);
    free(buf);
}

/* F16, BF16 and F64 widen (or narrow) to the same floats; I32 becomes I64.
 * The half values cover normal, subnormal, zero, negative and infinity. */
static void test_converts_dtypes(void **state) {
    uint8_t data[6 + 4 + 16 + 8 + 8];
    uint16_t half[3] = {0x3c00 /* 1 */, 0x0001 /* 2^-24 */, 0xfc00 /* -inf */};
    uint16_t bf[2] = {0xc040 /* -3 */, 0x3f80 /* 1 */};
    double f64[2] = {0.25, -1e10};
    int32_t i32[2] = {-5, 7};
    int64_t i64 = -(1LL << 40);
    memcpy(data, half, 6);
    memcpy(data + 6, bf, 4);
    memcpy(data + 10, f64, 16);
    memcpy(data + 26, i32, 8);
    memcpy(data + 34, &i64, 8);
    size_t len;
    uint8_t *buf = st_build("{\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]},"
                            "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[6,10]},"
                            "\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[10,26]},"
                            "\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[26,34]},"
                            "\"l\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[34,42]}}",
                            data, sizeof data, &len);
    char err[GM_ERR_LEN];
    gm_st *st = gm_st_parse("mem", buf, len, err);
    assert_non_null(st);
    const gm_tensor *h = gm_st_tensor(st, "h");
    assert_true(h->f32[0] == 1.0f);
    assert_true(h->f32[1] == ldexpf(1.0f, -24));
    assert_true(isinf(h->f32[2]) && h->f32[2] < 0);
    assert_true(gm_st_tensor(st, "b")->f32[0] == -3.0f);
    assert_true(gm_st_tensor(st, "b")->f32[1] == 1.0f);
    assert_true(gm_st_tensor(st, "d")->f32[0] == 0.25f);
    assert_true(gm_st_tensor(st, "d")->f32[1] == -1e10f);
    assert_int_equal(gm_st_tensor(st, "i")->i64[0], -5);
    assert_int_equal(gm_st_tensor(st, "i")->i64[1], 7);
    assert_null(gm_st_tensor(st, "i")->f32);
    const gm_tensor *l = gm_st_tensor(st, "l");
    assert_int_equal(l->ndim, 0);
    assert_int_equal(l->numel, 1);
    assert_true(l->i64[0] == i64);
    gm_st_free(st);
    free(buf);
}

/* Every half-precision bit pattern converts to the value the IEEE formula
 * gives (computed here independently with ldexp). */
static void test_every_half_value(void **state) {
    uint16_t *h = malloc(65536 * 2);
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    char header[128];
    snprintf(header, sizeof header, "{\"h\":{\"dtype\":\"F16\",\"shape\":[65536],\"data_offsets\":[0,131072]}}");
    size_t len;
    uint8_t *buf = st_build(header, h, 65536 * 2, &len);
    char err[GM_ERR_LEN];
    gm_st *st = gm_st_parse("mem", buf, len, err);
    assert_non_null(st);
    const float *f = gm_st_tensor(st, "h")->f32;
    for (int i = 0; i < 65536; i++) {
        int s = i >> 15, e = (i >> 10) & 31, m = i & 1023;
        double want = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
        if (s) want = -want;
        if (isnan(want)) {
            assert_true(isnan(f[i]));
        } else if ((double)f[i] != want) {
            print_error("half 0x%04x: got %g want %g\n", i, f[i], want);
            fail();
        }
    }
    gm_st_free(st);
    free(buf);
    free(h);
}

/* A malformed file: the header text, the data length, and a fragment the
 * error message must contain (the rule it names). */
typedef struct {
    const char *header;
    size_t data_len;
    const char *rule;
} bad_case;

static const bad_case BAD[] = {
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "not valid UTF-8 JSON"},
    {"[1,2]", 0, "must be a JSON object"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
     8, "duplicate"},
    {"{\"w\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype \"F33\""},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "dtype U8 is not supported"},
    {"{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "\"dtype\" missing"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "\"shape\" must be"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "at most 8"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "[begin, end]"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "end before they begin"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,8]}}", 8, "needs 24"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,8]}}", 8, "overflows"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     12, "overlapping"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
     20, "leaving a gap"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "truncated"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "trailing bytes"},
    {"{\"__metadata__\":{\"k\":3},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "must be a string"},
    {"{\"__metadata__\":[1],\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "must be an object of strings"},
    {"{\"w\":[1,2]}", 0, "entry must be an object"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}\xff", 8, "not valid UTF-8"},
};

static void expect_refused(const uint8_t *buf, size_t len, const char *rule) {
    char err[GM_ERR_LEN] = "";
    gm_st *st = gm_st_parse("bad.safetensors", buf, len, err);
    if (st || !strstr(err, "bad.safetensors") || !strstr(err, rule)) {
        print_error("expected refusal naming the file and \"%s\", got %s: \"%s\"\n", rule, st ? "success" : "error",
                    err);
        gm_st_free(st);
        fail();
    }
}

static void test_refuses_each_rule(void **state) {
    uint8_t zeros[64] = {0};
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        size_t len;
        uint8_t *buf = st_build(BAD[i].header, zeros, BAD[i].data_len, &len);
        expect_refused(buf, len, BAD[i].rule);
        free(buf);
    }
}

static void test_refuses_bad_header_lengths(void **state) {
    uint8_t tiny[5] = {1, 2, 3, 4, 5};
    expect_refused(tiny, sizeof tiny, "shorter than the 8-byte header length");
    /* a claimed 100 MB+ header in a small file */
    uint8_t big[16] = {0};
    uint64_t n = 100000001;
    for (int i = 0; i < 8; i++) big[i] = (uint8_t)(n >> (8 * i));
    expect_refused(big, sizeof big, "exceeds the limit");
    /* a header length that runs past the end, including one that would
     * overflow 8 + N */
    n = 1000;
    for (int i = 0; i < 8; i++) big[i] = (uint8_t)(n >> (8 * i));
    expect_refused(big, sizeof big, "runs past the end");
    memset(big, 0xff, 8);
    expect_refused(big, sizeof big, "exceeds the limit");
}

/* Every truncation of a valid file is refused cleanly (ASan watches for
 * over-reads); the whole file loads. */
static void test_every_truncation_refused(void **state) {
    size_t len;
    uint8_t *buf = st_build("{\"__metadata__\":{\"a\":\"b\"},"
                            "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}",
                            SIX, sizeof SIX, &len);
    char err[GM_ERR_LEN];
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *part = malloc(cut ? cut : 1);
        memcpy(part, buf, cut);
        gm_st *st = gm_st_parse("cut", part, cut, err);
        assert_null(st);
        free(part);
    }
    gm_st *st = gm_st_parse("whole", buf, len, err);
    assert_non_null(st);
    gm_st_free(st);
    free(buf);
}

static void test_load_from_disk(void **state) {
    char err[GM_ERR_LEN];
    assert_null(gm_st_load("/nonexistent/model.safetensors", err));
    assert_non_null(strstr(err, "/nonexistent/model.safetensors"));
    char path[TEMP_PATH_LEN];
    st_write(path, "st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]}}", SIX, sizeof SIX);
    gm_st *st = gm_st_load(path, err);
    assert_non_null(st);
    assert_memory_equal(gm_st_tensor(st, "w")->f32, SIX, sizeof SIX);
    gm_st_free(st);
    assert_null(gm_st_load("/tmp", err)); /* a directory */
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_f32_and_metadata),
        cmocka_unit_test(test_converts_dtypes),
        cmocka_unit_test(test_every_half_value),
        cmocka_unit_test(test_refuses_each_rule),
        cmocka_unit_test(test_refuses_bad_header_lengths),
        cmocka_unit_test(test_every_truncation_refused),
        cmocka_unit_test(test_load_from_disk),
    };
    return cmocka_run_group_tests_name("safetensors", tests, NULL, NULL);
}
