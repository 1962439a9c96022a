/*
 * test_hostile_params.c - parameters, bodies and images built to hurt the
 * server, against the real daemon: an empty parameter name; bytes that are
 * not UTF-8 (or a multi-byte name cut at the message limit) echoed in an
 * error; %00 and invalid UTF-8 in query names and values; JSON bodies sent
 * without (or with a look-alike of) application/json; a positive double
 * that is 0 as a float; a 44-byte PNG declaring a 2 GB text chunk; a JSON
 * body of millions of tiny values. Every error must keep its 4xx status
 * and a valid JSON body, and the daemon must exit 0 (under SAN=1: no
 * sanitizer report, no leak). In-process: the PNG bombs' memory, a
 * 256-image grid at scale 16 against the scale-1 grid, and the UTF-8
 * checks against jansson's.
 */
#include "testutil.h"

#include <png.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "base64.h"
#include "daemon.h"
#include "gm/rng.h"
#include "pngio.h"
#include "queue.h" /* gm_now_s */

static daemon_t d;

static int start(void **state) {
    const char *args[] = {FIXTURE_MODELS, NULL};
    d = daemon_start("hostile_params", args);
    return 0;
}

static int stop(void **state) { return daemon_stop_reported(&d); }

static void get_error(const char *path, int status, const char *want) {
    reply_t r = http_get(d.port, path);
    assert_error(&r, status, want, path);
}

static reply_t post(const char *path, const char *ctype, const void *body, size_t len) {
    char headers[256] = "";
    if (ctype) snprintf(headers, sizeof headers, "Content-Type: %s\r\n", ctype);
    return http(d.port, "POST", path, headers, body, len);
}

static void expect_status(reply_t *r, int status, const char *what) {
    if (r->status != status) {
        print_error("%s: status %d, want %d; body %.300s\n", what, r->status, status, r->body ? (char *)r->body : "");
        fail();
    }
    reply_free(r);
}

/* Peak resident memory of a process, in kB, from /proc/PID/status. */
static long peak_rss_kb(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atol(line + 6);
    if (f) fclose(f);
    assert_true(kb > 0);
    return kb;
}

static char *repeat(const char *unit, int times, const char *prefix) {
    size_t n = strlen(unit), p = strlen(prefix);
    char *s = malloc(p + n * (size_t)times + 1);
    memcpy(s, prefix, p);
    for (int i = 0; i < times; i++) memcpy(s + p + n * (size_t)i, unit, n);
    s[p + n * (size_t)times] = 0;
    return s;
}

static void test_empty_parameter_name(void **state) {
    get_error("/sample?model=nade&=5", 400, "empty name");
    get_error("/sample?model=nade&=", 400, "empty name");
    get_error("/sample?model=nade&=x&n=2", 400, "empty name");
    reply_t ok = http_get(d.port, "/sample?&model=nade&&n=2&"); /* empty segments hold no parameter */
    expect_status(&ok, 200, "empty segments between &s");
    const char *body = "{\"\": 1}";
    reply_t r = post("/sample?model=nade", "application/json", body, strlen(body));
    assert_error(&r, 400, "unknown parameter \"\"", "JSON body {\"\": 1}");
}

/* Whatever bytes a request holds, its error is valid UTF-8 with its 4xx. */
static void test_errors_echo_untrusted_bytes_as_utf8(void **state) {
    get_error("/%ff", 404, "\\xff");
    get_error("/v1/models/%ff%fe", 404, "no model named \"\\xff\\xfe\"");
    get_error("/v1/models/%ff/sample", 404, "no model named");
    get_error("/sample?model=%c3", 400, "\"model\" (value \"\\xc3\")"); /* a lone lead byte */
    /* 600 two-byte characters: far past the message limit, so any cut of the
     * echoed text lands inside the string */
    char *path = repeat("%C3%A9", 600, "/");
    get_error(path, 404, "no route");
    free(path);
    char *model = repeat("%C3%A9", 600, "/sample?model=");
    get_error(model, 404, "no model named");
    free(model);
    char *label = repeat("%C3%A9", 600, "/v1/models/gan/sample?label=");
    get_error(label, 422, "is neither a class name");
    free(label);
    char *label_text = repeat("\xc3\xa9", 600, ""), json[2048];
    snprintf(json, sizeof json, "{\"label\": \"%s\"}", label_text);
    free(label_text);
    reply_t r = post("/v1/models/gan/sample", "application/json", json, strlen(json));
    assert_error(&r, 422, "is neither a class name", "a 600-character label in JSON");
    char *n = repeat("%C3%A9", 600, "/sample?n=");
    get_error(n, 400, "is not an integer");
    free(n);
}

/* MHD decodes the query string; what it decodes to must reach the checks
 * whole: %00 no longer cuts a name or value short, and a name or value that
 * is not UTF-8 is a 400 naming it instead of vanishing. */
static void test_query_bytes_are_checked(void **state) {
    get_error("/sample?model=nade&n%00x=1", 400, "\"n\\x00x\"");
    get_error("/sample?model=nade&n=1%002", 400, "\"1\\x002\"");
    get_error("/sample?model=nade&nn%ff=1", 400, "\"nn\\xff\"");
    get_error("/sample?model=nade&n=%ff", 400, "\"\\xff\"");
    get_error("/sample?model=nade&n=%ed%a0%80", 400, "not UTF-8"); /* a UTF-16 surrogate */
    get_error("/sample?model=nade&n=%c0%b1", 400, "not UTF-8");    /* an overlong '1' */
    get_error("/sample?model=nade&n", 400, "no value");
    get_error("/sample?model=nade&n=2&n=3", 400, "given twice");
    reply_t r = http_get(d.port, "/sample?model=nade&n=2&seed=5"); /* and plain parameters still work */
    expect_status(&r, 200, "n=2");
}

static void test_bodies_need_a_known_media_type(void **state) {
    const char *body = "{\"n\": 2, \"seed\": 1}";
    size_t len = strlen(body);
    static const char *const REFUSED[] = {NULL, "application/jsonx", "text/plain", "application/x-www-form-urlencoded",
                                          "image/png"};
    for (size_t i = 0; i < sizeof REFUSED / sizeof REFUSED[0]; i++) {
        reply_t r = post("/sample?model=nade", REFUSED[i], body, len);
        char what[128];
        snprintf(what, sizeof what, "a JSON body sent as %s", REFUSED[i] ? REFUSED[i] : "no Content-Type");
        assert_error(&r, 415, REFUSED[i] ? REFUSED[i] : "missing", what);
    }
    static const char *const TAKEN[] = {"application/json", "application/json; charset=utf-8", "Application/JSON",
                                        "application/json ;charset=UTF-8"};
    for (size_t i = 0; i < sizeof TAKEN / sizeof TAKEN[0]; i++) {
        reply_t r = post("/sample?model=nade", TAKEN[i], body, len);
        json_t *j = r.status == 200 ? json_loadb((const char *)r.body, r.len, 0, NULL) : NULL;
        if (json_array_size(json_object_get(j, "images")) != 2) {
            print_error("%s: status %d, want 200 with 2 images: %.300s\n", TAKEN[i], r.status, (char *)r.body);
            fail();
        }
        json_decref(j);
        reply_free(&r);
    }
    reply_t r = post("/sample?model=nade", NULL, "", 0); /* no body: the defaults */
    expect_status(&r, 200, "POST without a body");
}

/* temperature and truncation are floats in the models: a double that is
 * positive but rounds to 0 as a float is out of range. */
static void test_float_parameters_are_checked_as_floats(void **state) {
    get_error("/sample?model=nade&temperature=1e-320", 422, "temperature");
    get_error("/sample?model=nade&temperature=1e-46", 422, "as a 32-bit float it is 0");
    get_error("/sample?model=gan&truncation=1e-300", 422, "truncation");
    const char *body = "{\"temperature\": 1e-320}";
    reply_t r = post("/sample?model=nade", "application/json", body, strlen(body));
    assert_error(&r, 422, "temperature", "JSON temperature 1e-320");
    r = http_get(d.port, "/sample?model=vae&temperature=1e-30&seed=1"); /* tiny but a positive float */
    expect_status(&r, 200, "temperature=1e-30");
}

static void crc_fix(uint8_t *chunk, size_t data_len) { /* chunk points at the length field */
    uint32_t c = 0xffffffffu;
    for (size_t i = 4; i < 8 + data_len; i++) {
        c ^= chunk[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    c ^= 0xffffffffu;
    uint8_t *crc = chunk + 8 + data_len;
    crc[0] = (uint8_t)(c >> 24), crc[1] = (uint8_t)(c >> 16), crc[2] = (uint8_t)(c >> 8), crc[3] = (uint8_t)c;
}

/* A 28x28 gray PNG header followed by a chunk of this type declaring
 * 2^31 - 1 bytes, with extra bytes after its header: 41 + extra bytes. */
static size_t png_bomb(uint8_t *b, const char *type, size_t extra) {
    static const uint8_t HEAD[] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10, 0,  0, 0, 13, 'I', 'H', 'D',
                                   'R',  0,   0,   0,   28, 0,  0,  0,  28, 8, 0, 0,  0,   0};
    memcpy(b, HEAD, sizeof HEAD);
    crc_fix(b + 8, 13);
    uint8_t *t = b + 33;
    t[0] = 0x7f, t[1] = t[2] = t[3] = 0xff;
    memcpy(t + 4, type, 4);
    memset(t + 8, 'a', extra);
    return 41 + extra;
}

/* In a child, so that the old 2 GB allocation could not hurt the runner:
 * decoding each bomb grows the peak resident memory by under 16 MB. */
static void test_png_bomb_decodes_without_allocating(void **state) {
    static const char *const TYPES[] = {"tEXt", "zTXt", "iTXt", "iCCP", "abCd"};
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        for (size_t extra = 3; extra <= 64; extra += 61) {
            pid_t pid = fork();
            if (pid == 0) {
                uint8_t b[128];
                size_t len = png_bomb(b, TYPES[i], extra);
                float out[784];
                char err[GM_ERR_LEN];
                long before = peak_rss_kb(getpid());
                gm_png_status st = gm_png_decode(b, len, 28, 28, 1, out, err);
                long grown = peak_rss_kb(getpid()) - before;
                if (st != GM_PNG_MALFORMED || grown > 16 * 1024) {
                    fprintf(stderr, "%s bomb of %zu bytes: status %d (%s), peak memory grew %ld kB\n", TYPES[i], len,
                            st, err, grown);
                    _exit(1);
                }
                _exit(0);
            }
            int wst;
            assert_int_equal(waitpid(pid, &wst, 0), pid);
            assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
        }
}

/* The same over HTTP, as an image/png body and base64 in JSON: 400, and
 * the daemon's peak memory grows by less than 64 MB over all of them. */
static void test_png_bomb_over_http(void **state) {
    long before = peak_rss_kb(d.pid);
    static const char *const TYPES[] = {"tEXt", "zTXt", "iTXt"};
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++) {
        uint8_t b[128];
        size_t len = png_bomb(b, TYPES[i], 3);
        assert_int_equal(len, 44);
        reply_t r = post("/v1/models/vae/logp", "image/png", b, len);
        assert_error(&r, 400, "PNG", "a 44-byte PNG bomb");
        len = png_bomb(b, TYPES[i], 64);
        char *b64 = gm_base64_encode(b, len), json[512];
        snprintf(json, sizeof json, "{\"images\": [{\"png\": \"%s\"}]}", b64);
        free(b64);
        r = post("/v1/models/vae/encode", "application/json", json, strlen(json));
        assert_error(&r, 400, "declares 2147483647 bytes", "a PNG bomb in JSON");
    }
    long grown = peak_rss_kb(d.pid) - before;
    if (grown > 64 * 1024) {
        print_error("the daemon's peak memory grew by %ld kB over 6 PNG bombs\n", grown);
        fail();
    }
}

/* A body of millions of values is refused before jansson builds them: 413
 * in well under 5 s (measured: a few ms), the daemon's peak memory growing
 * by less than 64 MB. A body of max_images images as pixel arrays (the
 * most the operation can use) is still taken. */
static void test_json_body_cost_is_bounded(void **state) {
    size_t count = 4000000;
    char *body = malloc(2 * count + 32);
    size_t off = (size_t)sprintf(body, "{\"images\": [");
    for (size_t i = 0; i < count; i++) body[off++] = '0', body[off++] = ',';
    strcpy(body + off - 1, "]}");
    long before = peak_rss_kb(d.pid);
    double t0 = gm_now_s();
    reply_t r = post("/v1/models/vae/encode", "application/json", body, strlen(body));
    double secs = gm_now_s() - t0;
    assert_error(&r, 413, "max_images", "an 8 MB JSON array");
    long grown = peak_rss_kb(d.pid) - before;
    print_message("an 8 MB array of 4M values: 413 in %.3f s, peak memory +%ld kB\n", secs, grown);
    assert_true(secs < 5.0);
    assert_true(grown < 64 * 1024);
    free(body);

    size_t images = 256, dim = 784; /* the daemon's default max_images; the VAE's 28 x 28 */
    body = malloc(images * (dim * 4 + 32) + 32);
    off = (size_t)sprintf(body, "{\"images\": [");
    for (size_t i = 0; i < images; i++) {
        off += (size_t)sprintf(body + off, "%s{\"pixels\": [", i ? "," : "");
        for (size_t k = 0; k < dim; k++) off += (size_t)sprintf(body + off, "%s0.5", k ? "," : "");
        off += (size_t)sprintf(body + off, "]}");
    }
    strcpy(body + off, "]}");
    r = post("/v1/models/vae/encode", "application/json", body, strlen(body));
    expect_status(&r, 200, "256 images as pixel arrays");
    free(body);
}

/* Decodes a PNG of any size with libpng's simplified API (8-bit gray). */
static uint8_t *decode_gray(const uint8_t *png, size_t len, int *w, int *h) {
    png_image im = {.version = PNG_IMAGE_VERSION};
    assert_true(png_image_begin_read_from_memory(&im, png, len));
    im.format = PNG_FORMAT_GRAY;
    uint8_t *px = malloc(PNG_IMAGE_SIZE(im));
    assert_true(png_image_finish_read(&im, NULL, px, 0, NULL));
    *w = (int)im.width, *h = (int)im.height;
    return px;
}

/* The 256-image grid at scale 16 (7183 x 7183 pixels) is the scale-1 grid
 * with every pixel repeated 16 x 16, and encodes in well under 5 s (measured
 * here: 0.1 s; libpng's default filters and zlib level took 0.4 s). */
static void test_upscaled_grid_is_exact_and_quick(void **state) {
    int n = 256, dim = 784;
    float *px = malloc(sizeof *px * (size_t)n * dim);
    gm_rng rng;
    gm_rng_seed(&rng, 7, 0);
    for (int i = 0; i < n * dim; i++) px[i] = (float)(gm_rng_next(&rng) % 1001) / 1000.0f;
    px[3] = NAN, px[4] = -1, px[5] = 2; /* clamped: NaN and below 0 to 0, above 1 to 1 */
    uint8_t *p1, *p16;
    size_t l1, l16;
    char err[GM_ERR_LEN];
    assert_int_equal(gm_png_encode(px, n, 28, 28, 1, 1, "one", &p1, &l1, err), 0);
    double t0 = gm_now_s();
    assert_int_equal(gm_png_encode(px, n, 28, 28, 1, 16, "sixteen", &p16, &l16, err), 0);
    double secs = gm_now_s() - t0;
    print_message("256 images at scale 16: %zu bytes in %.3f s\n", l16, secs);
    assert_true(secs < 5.0);
    int w1, h1, w16, h16;
    uint8_t *g1 = decode_gray(p1, l1, &w1, &h1), *g16 = decode_gray(p16, l16, &w16, &h16);
    assert_int_equal(w16, 16 * w1);
    assert_int_equal(h16, 16 * h1);
    assert_int_equal(g1[3], 0);
    assert_int_equal(g1[4], 0);
    assert_int_equal(g1[5], 255);
    for (int y = 0; y < h16; y++)
        for (int x = 0; x < w16; x++)
            if (g16[(size_t)y * w16 + x] != g1[(size_t)(y / 16) * w1 + x / 16]) {
                print_error("pixel (%d, %d) is %d; the scale-1 grid has %d\n", x, y, g16[(size_t)y * w16 + x],
                            g1[(size_t)(y / 16) * w1 + x / 16]);
                fail();
            }
    free(g1);
    free(g16);
    free(p1);
    free(p16);
    free(px);
}

/* gm_quote and the query checks against jansson's own UTF-8 validation,
 * on random strings of pieces: ASCII, single boundary bytes, and
 * sequences at the edges of validity (the last code point before the
 * surrogates, the first after, U+10FFFF and one past it, overlong forms).
 * A quoted string is always valid UTF-8 and bounded, and a value is
 * accepted exactly when jansson takes it as a string (and holds no NUL). */
static void test_utf8_checks_agree_with_jansson(void **state) {
    static const char *const PIECES[] = {"a",
                                         "a",
                                         "\"",
                                         "\\",
                                         "\x01",
                                         "\x7f",
                                         "\x80",
                                         "\xbf",
                                         "\xc0\xaf",
                                         "\xc1\xbf",
                                         "\xc2\x80",
                                         "\xdf\xbf",
                                         "\xc3\xa9",
                                         "\xe0\x9f\xbf",
                                         "\xe0\xa0\x80",
                                         "\xed\x9f\xbf",
                                         "\xed\xa0\x80",
                                         "\xee\x80\x80",
                                         "\xef\xbf\xbf",
                                         "\xf0\x8f\xbf\xbf",
                                         "\xf0\x90\x80\x80",
                                         "\xf4\x8f\xbf\xbf",
                                         "\xf4\x90\x80\x80",
                                         "\xf5\x80\x80\x80",
                                         "\xff",
                                         "\xe2\x82",
                                         "\xf0\x9f\x98"};
    enum { NP = sizeof PIECES / sizeof PIECES[0] };
    gm_rng rng;
    gm_rng_seed(&rng, 11, 0);
    int accepted = 0;
    for (int t = 0; t < 20000; t++) {
        char s[400];
        size_t len = 0, pieces = gm_rng_next(&rng) % (t < 19000 ? 4 : 90);
        for (size_t i = 0; i < pieces; i++) {
            const char *p = PIECES[gm_rng_next(&rng) % NP];
            memcpy(s + len, p, strlen(p));
            len += strlen(p);
        }
        if (t % 100 == 0 && len) s[gm_rng_next(&rng) % len] = 0; /* now and then a NUL */
        char q[GM_QUOTE_LEN];
        gm_quote(q, s, len);
        json_t *j = json_string(q);
        if (!j || strlen(q) >= GM_QUOTE_LEN) {
            print_error("gm_quote of %zu bytes gave %zu bytes that jansson %s\n", len, strlen(q),
                        j ? "takes" : "refuses");
            fail();
        }
        json_decref(j);
        gm_http_request req = {.query = json_object()};
        gm_query_add(&req, "v", 1, s, len);
        json_t *want = len > 0 && !memchr(s, 0, len) ? json_stringn(s, len) : NULL;
        if ((want != NULL) != (req.query_error[0] == 0)) {
            print_error("a value of %zu bytes: jansson %s it, gm_query_add says \"%s\"\n", len,
                        want ? "takes" : "refuses", req.query_error);
            fail();
        }
        accepted += want != NULL;
        json_decref(want);
        json_decref(req.query);
    }
    print_message("%d of 20000 random values are valid UTF-8\n", accepted);
    assert_true(accepted > 2000 && accepted < 18000); /* the comparison saw both answers often */
}

int main(void) {
    const struct CMUnitTest daemon_tests[] = {
        cmocka_unit_test(test_empty_parameter_name),
        cmocka_unit_test(test_errors_echo_untrusted_bytes_as_utf8),
        cmocka_unit_test(test_query_bytes_are_checked),
        cmocka_unit_test(test_bodies_need_a_known_media_type),
        cmocka_unit_test(test_float_parameters_are_checked_as_floats),
        cmocka_unit_test(test_png_bomb_over_http),
        cmocka_unit_test(test_json_body_cost_is_bounded),
    };
    const struct CMUnitTest unit_tests[] = {
        cmocka_unit_test(test_png_bomb_decodes_without_allocating),
        cmocka_unit_test(test_upscaled_grid_is_exact_and_quick),
        cmocka_unit_test(test_utf8_checks_agree_with_jansson),
    };
    int failed = cmocka_run_group_tests_name("in-process", unit_tests, NULL, NULL);
    return failed | cmocka_run_group_tests_name("hostile requests", daemon_tests, start, stop);
}
