/*
 * test_caching.c - a seeded GET sample is a pure function of the model file
 * and its parameters, so it carries a strong ETag and may be cached for
 * ever; If-None-Match with that tag is answered 304 without running the
 * model (the inference counter of /metrics does not move); a changed
 * parameter or model file gives another tag; unseeded replies, POSTs and
 * errors are never stored (Cache-Control: no-store, no ETag).
 */
#include "testutil.h"

#include <strings.h>

#include "daemon.h"

#define MODEL_COPY "build/test-logs/caching_model.safetensors"
#define IMMUTABLE "public, max-age=31536000, immutable"

static daemon_t d;

static void start_on(const char *fixture_file) {
    mkdir("build/test-logs", 0755);
    copy_file(fixture_file, MODEL_COPY);
    const char *args[] = {"--model", "gan=" MODEL_COPY, "--model", "nade=tests/fixtures/nade_tiny.safetensors", NULL};
    d = daemon_start("caching", args);
}

static void stop_daemon(void) { assert_int_equal(daemon_stop_reported(&d), 0); }

static int start(void **state) {
    start_on("tests/fixtures/gan_cond.safetensors");
    return 0;
}

static int stop(void **state) { return daemon_stop_reported(&d); }

static long metric(const char *series) {
    reply_t r = http_get(d.port, "/metrics");
    assert_int_equal(r.status, 200);
    const char *p = strstr((char *)r.body, series);
    long v = p ? atol(p + strlen(series) + 1) : -1;
    reply_free(&r);
    return v;
}

static reply_t get(const char *path, const char *headers) { return http(d.port, "GET", path, headers, NULL, 0); }

static void header(const reply_t *r, const char *name, char *out, size_t n) {
    if (!reply_header(r, name, out, n)) out[0] = 0;
}

/* The ETag of a 200 for path, checked to be strong and immutable. */
static void tag_of(const char *path, char tag[128]) {
    reply_t r = get(path, NULL);
    if (r.status != 200) print_error("GET %s: %d %.200s\n", path, r.status, r.body ? (char *)r.body : "");
    assert_int_equal(r.status, 200);
    char cc[128];
    header(&r, "ETag", tag, 128);
    header(&r, "Cache-Control", cc, sizeof cc);
    assert_string_equal(cc, IMMUTABLE);
    assert_true(tag[0] == '"' && strlen(tag) > 2 && tag[strlen(tag) - 1] == '"'); /* strong: no W/ */
    reply_free(&r);
}

static void test_seeded_get_has_a_stable_strong_tag(void **state) {
    char a[128], b[128], c[128];
    tag_of("/sample?model=gan&n=2&seed=42", a);
    tag_of("/sample?model=gan&n=2&seed=42", b);
    assert_string_equal(a, b);
    /* the same request with its defaults written out, in another order, on the long route */
    tag_of("/v1/models/gan/sample?scale=1&seed=42&temperature=1.0&n=2&format=png", c);
    assert_string_equal(a, c);
    /* and the bytes are the same every time */
    reply_t r1 = get("/sample?model=gan&n=2&seed=42", NULL), r2 = get("/sample?model=gan&n=2&seed=42", NULL);
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.body, r2.body, r1.len);
    reply_free(&r1);
    reply_free(&r2);
    /* HEAD has the tag of GET */
    reply_t h = http(d.port, "HEAD", "/sample?model=gan&n=2&seed=42", NULL, NULL, 0);
    assert_int_equal(h.status, 200);
    header(&h, "ETag", b, sizeof b);
    assert_string_equal(a, b);
    reply_free(&h);
}

static void test_if_none_match_is_304_without_running_the_model(void **state) {
    char tag[128], hdr[512], got[128], cc[128];
    tag_of("/sample?model=gan&n=3&seed=7&temperature=0.8", tag);
    const char *series = "gmserve_inference_requests_total{model=\"gan\",op=\"sample\"}";
    long before = metric(series);
    const char *forms[] = {"%s", "\"other\", %s", "W/%s", "*"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char value[300];
        snprintf(value, sizeof value, forms[i], tag);
        snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", value);
        reply_t r = get("/sample?model=gan&n=3&seed=7&temperature=0.8", hdr);
        if (r.status != 304) print_error("If-None-Match: %s gave %d\n", value, r.status);
        assert_int_equal(r.status, 304);
        assert_int_equal(r.len, 0);
        header(&r, "ETag", got, sizeof got);
        header(&r, "Cache-Control", cc, sizeof cc);
        assert_string_equal(got, tag);
        assert_string_equal(cc, IMMUTABLE);
        reply_free(&r);
    }
    assert_int_equal(metric(series), before); /* no job ran */
    /* a tag the client does not hold: 200, and the model runs */
    reply_t r = get("/sample?model=gan&n=3&seed=7&temperature=0.8", "If-None-Match: \"0000\"\r\n");
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(metric(series), before + 1);
    assert_true(metric("gmserve_requests_total{route=\"sample\",model=\"gan\",status=\"304\"}") >= 4);
}

static void test_a_changed_parameter_changes_the_tag(void **state) {
    static const char *const VARIANTS[] = {
        "/sample?model=gan&n=2&seed=43",
        "/sample?model=gan&n=3&seed=42",
        "/sample?model=gan&n=2&seed=42&temperature=0.5",
        "/sample?model=gan&n=2&seed=42&truncation=0.5",
        "/sample?model=gan&n=2&seed=42&label=1",
        "/sample?model=gan&n=2&seed=42&scale=2",
        "/sample?model=gan&n=2&seed=42&format=json",
        "/sample?model=gan&n=2&seed=42&format=npy",
        "/sample?model=nade&n=2&seed=42",
    };
    enum { NV = sizeof VARIANTS / sizeof VARIANTS[0] };
    char base[128], tags[NV][128], hdr[256];
    tag_of("/sample?model=gan&n=2&seed=42", base);
    for (int i = 0; i < NV; i++) {
        tag_of(VARIANTS[i], tags[i]);
        if (!strcmp(tags[i], base)) print_error("%s has the base request's tag\n", VARIANTS[i]);
        assert_string_not_equal(tags[i], base);
        for (int j = 0; j < i; j++) assert_string_not_equal(tags[i], tags[j]);
        /* the old tag does not validate the new request */
        snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", base);
        reply_t r = get(VARIANTS[i], hdr);
        assert_int_equal(r.status, 200);
        reply_free(&r);
    }
}

static void assert_no_store(const reply_t *r, const char *what) {
    char cc[128], tag[128];
    header(r, "Cache-Control", cc, sizeof cc);
    header(r, "ETag", tag, sizeof tag);
    if (strcmp(cc, "no-store") || tag[0]) {
        print_error("%s: Cache-Control \"%s\", ETag \"%s\"; want no-store and no tag\n", what, cc, tag);
        fail();
    }
}

static void test_unseeded_posts_and_errors_are_not_stored(void **state) {
    reply_t r = get("/sample?model=gan&n=2", NULL);
    assert_int_equal(r.status, 200);
    assert_no_store(&r, "unseeded GET");
    reply_free(&r);
    r = http_json(d.port, "/v1/models/gan/sample", "{\"n\": 2, \"seed\": 42}");
    assert_int_equal(r.status, 200);
    assert_no_store(&r, "seeded POST");
    reply_free(&r);
    /* an invalid seeded request is an error, whatever tag it is sent with */
    r = get("/sample?model=gan&n=0&seed=42", "If-None-Match: *\r\n");
    assert_int_equal(r.status, 422);
    assert_no_store(&r, "422");
    reply_free(&r);
    r = get("/sample?model=gan&n=100000000&seed=42", NULL);
    assert_int_equal(r.status, 422);
    assert_no_store(&r, "422 over max_n");
    reply_free(&r);
}

/* The tag names the model file's content: another file under the same
 * name gives other tags, and the first file again gives the first tags. */
static void test_the_model_file_is_in_the_tag(void **state) {
    char a[128], b[128], c[128];
    const char *path = "/sample?model=gan&n=2&seed=42";
    tag_of(path, a);
    /* /v1/models shows the hash the tags are made from: the file's, as sha256sum computes it */
    char cmd[256], sum[256];
    snprintf(cmd, sizeof cmd, "sha256sum %s", MODEL_COPY);
    assert_int_equal(run_command(cmd, sum, sizeof sum), 0);
    sum[64] = 0;
    reply_t m = get("/v1/models/gan", NULL);
    json_t *mj = json_loadb((char *)m.body, m.len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(mj, "sha256")), sum);
    json_decref(mj);
    reply_free(&m);
    stop_daemon();
    /* the same shapes and classes, other weights */
    start_on("tests/fixtures/gan_graph.safetensors");
    tag_of(path, b);
    assert_string_not_equal(a, b);
    stop_daemon();
    start_on("tests/fixtures/gan_cond.safetensors");
    tag_of(path, c);
    assert_string_equal(a, c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seeded_get_has_a_stable_strong_tag),
        cmocka_unit_test(test_if_none_match_is_304_without_running_the_model),
        cmocka_unit_test(test_a_changed_parameter_changes_the_tag),
        cmocka_unit_test(test_unseeded_posts_and_errors_are_not_stored),
        cmocka_unit_test(test_the_model_file_is_in_the_tag),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
