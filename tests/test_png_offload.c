/*
 * test_png_offload.c - request PNGs are decoded by the workers, not by the
 * HTTP threads, against the real daemon (one HTTP thread, one worker):
 * a bad PNG still gets its 400 (malformed) or 422 (another size) with the
 * decoder's own message, naming images[i] in a JSON body; /healthz is
 * answered promptly while 64 PNGs of 8 MB of chunks wait to be decoded;
 * and logp of PNGs, batched across concurrent requests (some of them with
 * a bad PNG), equals logp of the same pixels sent as numbers; the PNG bytes
 * waiting for a worker are bounded by max_body_memory_bytes.
 */
#include "testutil.h"

#include <pthread.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

#include "base64.h"
#include "daemon.h"
#include "gm/rng.h"
#include "pngio.h"
#include "queue.h" /* gm_now_s */

#define NADE "nade=tests/fixtures/nade_ref.safetensors"
#define VAE "vae=tests/fixtures/vae_mlp.safetensors"

enum { SIDE = 28, DIM = SIDE * SIDE, FLOOD = 64 };

static daemon_t d;

static int start(void **state) {
    /* one HTTP thread, so that a decode on it would delay every other
     * connection; room for the flood's bodies (64 x 8 MB) */
    const char *args[] = {
        "--model",    NADE, "--model", VAE, "--http-threads", "1", "--workers", "1", "--max-body-memory-bytes",
        "2147483648", NULL};
    d = daemon_start("png_offload", args);
    return 0;
}

static int stop(void **state) { return daemon_stop_reported(&d); }

static reply_t post(const char *path, const char *ctype, const void *body, size_t len) {
    char headers[256];
    snprintf(headers, sizeof headers, "Content-Type: %s\r\n", ctype);
    return http(d.port, "POST", path, headers, body, len);
}

/* The reply is an error object with this status and exactly this message. */
static void expect_message(reply_t *r, int status, const char *want, const char *what) {
    json_t *j = json_loadb((const char *)r->body, r->len, 0, NULL);
    json_t *e = json_object_get(j, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (r->status != status || json_integer_value(json_object_get(e, "status")) != status || !msg ||
        strcmp(msg, want)) {
        print_error("%s: status %d, want %d with message \"%s\"; body %.400s\n", what, r->status, status, want,
                    r->body ? (char *)r->body : "");
        fail();
    }
    json_decref(j);
    reply_free(r);
}

/* An h x w gray PNG of random 8-bit pixels (stream i of seed 7). */
static uint8_t *random_png(int h, int w, uint64_t i, size_t *len) {
    float *px = malloc((size_t)h * w * sizeof *px);
    gm_rng rng;
    gm_rng_seed(&rng, 7, i);
    for (int k = 0; k < h * w; k++) px[k] = (float)(gm_rng_next(&rng) % 256) / 255.0f;
    uint8_t *png;
    char err[GM_ERR_LEN];
    assert_int_equal(gm_png_encode(px, 1, h, w, 1, 1, NULL, &png, len, err), 0);
    free(px);
    return png;
}

/* What the decoder says of these bytes for the models' 28x28x1 input. */
static gm_png_status decoder_says(const uint8_t *png, size_t len, char err[GM_ERR_LEN]) {
    float px[DIM];
    err[0] = 0;
    return gm_png_decode(png, len, SIDE, SIDE, 1, px, err);
}

static char *images_json(uint8_t *const *pngs, const size_t *lens, int n, const char *extra) {
    size_t cap = 64 + strlen(extra);
    for (int i = 0; i < n; i++) cap += lens[i] * 4 / 3 + 32;
    char *s = malloc(cap), *o = s;
    o += sprintf(o, "{%s\"images\": [", extra);
    for (int i = 0; i < n; i++) {
        char *b64 = gm_base64_encode(pngs[i], lens[i]);
        o += sprintf(o, "%s{\"png\": \"%s\"}", i ? ", " : "", b64);
        free(b64);
    }
    strcpy(o, "]}");
    return s;
}

/* (a) The status and message of a bad PNG are the decoder's: 400 for bytes
 * that are no PNG or are cut short, 422 for a PNG of another size; in a
 * JSON body the message names the image. */
static void test_bad_png_same_status_and_message(void **state) {
    size_t good_len, small_len;
    uint8_t *good = random_png(SIDE, SIDE, 0, &good_len), *small = random_png(SIDE - 1, SIDE, 1, &small_len);
    const struct {
        const uint8_t *bytes;
        size_t len;
        int status;
    } BAD[] = {
        {(const uint8_t *)"this is not a PNG at all", 24, 400},
        {good, good_len / 2, 400},
        {small, small_len, 422},
    };
    for (size_t b = 0; b < sizeof BAD / sizeof BAD[0]; b++) {
        char err[GM_ERR_LEN], want[GM_ERR_LEN + 32];
        gm_png_status st = decoder_says(BAD[b].bytes, BAD[b].len, err);
        assert_int_equal(st == GM_PNG_WRONG_SIZE ? 422 : 400, BAD[b].status);
        reply_t r = post("/v1/models/vae/logp", "image/png", BAD[b].bytes, BAD[b].len);
        expect_message(&r, BAD[b].status, err, "an image/png body");
        uint8_t *pngs[3] = {good, (uint8_t *)BAD[b].bytes, good};
        size_t lens[3] = {good_len, BAD[b].len, good_len};
        char *json = images_json(pngs, lens, 3, "");
        snprintf(want, sizeof want, "images[1]: %s", err);
        r = post("/v1/models/vae/encode", "application/json", json, strlen(json));
        expect_message(&r, BAD[b].status, want, "images[1] of a JSON body");
        free(json);
    }
    const char *b64 = "{\"images\": [{\"png\": \"*\"}]}";
    reply_t r = post("/v1/models/vae/logp", "application/json", b64, strlen(b64));
    expect_message(&r, 400, "images[0].png is not base64", "bad base64");
    free(good);
    free(small);
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static size_t chunk(uint8_t *b, size_t off, const char *type, const uint8_t *data, uint32_t len) {
    put32(b + off, len);
    memcpy(b + off + 4, type, 4);
    if (len) memcpy(b + off + 8, data, len);
    put32(b + off + 8 + len, (uint32_t)crc32(crc32(0, NULL, 0), b + off + 4, len + 4));
    return off + 12 + len;
}

/* A valid 28x28 gray PNG (every pixel 128) of about total bytes: empty
 * ancillary chunks before its IDAT, the slowest valid file per byte that we
 * found (about 25 ms for 8 MB here), since each chunk costs a CRC and a
 * call into libpng. */
static uint8_t *chunk_spam_png(size_t total, size_t *len) {
    static const uint8_t SIG[8] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10};
    uint8_t *b = malloc(total), ihdr[13] = {0, 0, 0, SIDE, 0, 0, 0, SIDE, 8, 0, 0, 0, 0};
    memcpy(b, SIG, 8);
    size_t off = chunk(b, 8, "IHDR", ihdr, 13);
    while (off + 12 + 2048 <= total) off = chunk(b, off, "abCd", NULL, 0);
    uint8_t raw[SIDE * (SIDE + 1)], z[2048];
    for (int y = 0; y < SIDE; y++) {
        raw[y * (SIDE + 1)] = 0;
        memset(raw + y * (SIDE + 1) + 1, 128, SIDE);
    }
    uLongf zl = sizeof z;
    assert_int_equal(compress(z, &zl, raw, sizeof raw), Z_OK);
    off = chunk(b, off, "IDAT", z, (uint32_t)zl);
    *len = chunk(b, off, "IEND", NULL, 0);
    return b;
}

/* Sends FLOOD requests of the PNG to path so that they become complete at
 * the same moment (all but their last byte sent first), then /healthz on
 * another connection; returns the seconds /healthz took. Every flood
 * request must get status. */
static double healthz_behind_flood(const char *path, const uint8_t *png, size_t len, int status) {
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      "Content-Type: image/png\r\nContent-Length: %zu\r\n\r\n",
                      path, len);
    int fds[FLOOD];
    for (int i = 0; i < FLOOD; i++) {
        fds[i] = connect_to(d.port);
        assert_true(fds[i] >= 0);
        send(fds[i], head, (size_t)hn, MSG_NOSIGNAL);
        for (size_t off = 0; off < len - 1;) {
            ssize_t n = send(fds[i], png + off, len - 1 - off, MSG_NOSIGNAL);
            assert_true(n > 0);
            off += (size_t)n;
        }
    }
    sleep_ms(300); /* let the server read what is in the socket buffers */
    for (int i = 0; i < FLOOD; i++) send(fds[i], png + len - 1, 1, MSG_NOSIGNAL);
    int hfd = connect_to(d.port);
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    reply_t r;
    double t0 = gm_now_s();
    raw_exchange(hfd, req, strlen(req), 30000, &r);
    double secs = gm_now_s() - t0;
    close(hfd);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    int right = 0;
    for (int i = 0; i < FLOOD; i++) {
        raw_exchange(fds[i], NULL, 0, 60000, &r);
        right += r.status == status;
        if (r.status != status)
            print_error("%s %d: status %d, want %d: %.200s\n", path, i, r.status, status, r.body ? (char *)r.body : "");
        reply_free(&r);
        close(fds[i]);
    }
    assert_int_equal(right, FLOOD);
    return secs;
}

/* (b) /healthz behind FLOOD logp requests of 8 MB PNGs, against the same
 * flood refused before the image is looked at (an unknown parameter: 400):
 * what the PNGs add must stay under a third of the
 * time decoding them takes (measured here in-process), all of which it
 * added when the HTTP thread decoded them. Every logp still gets its 200. */
static void test_healthz_during_png_flood(void **state) {
    size_t len;
    uint8_t *png = chunk_spam_png(8 << 20, &len);
    double decode_s = 1e9;
    char err[GM_ERR_LEN];
    for (int i = 0; i < 3; i++) {
        double t0 = gm_now_s();
        assert_int_equal(decoder_says(png, len, err), GM_PNG_OK);
        if (gm_now_s() - t0 < decode_s) decode_s = gm_now_s() - t0;
    }
    double base_s = healthz_behind_flood("/v1/models/nade/logp?bogus=1", png, len, 400);
    double png_s = healthz_behind_flood("/v1/models/nade/logp", png, len, 200);
    double bound = FLOOD * decode_s / 3;
    print_message("healthz behind %d PNGs of %zu bytes: %.3f s refused undecoded, %.3f s for logp (decoding them "
                  "takes %.3f s; the PNGs may add %.3f s)\n",
                  FLOOD, len, base_s, png_s, FLOOD * decode_s, bound);
    assert_true(png_s - base_s < bound);
    free(png);
}

/* (c) logp of PNGs, from concurrent requests that the worker batches
 * together (every third one also carrying a bad PNG, which must fail alone),
 * equals logp of the very floats the decoder yields, sent as numbers. */
enum { CLIENTS = 12, PER = 4 };

typedef struct {
    const char *path;
    char *body;
    reply_t r;
    int port; /* 0: the shared daemon */
} call_t;

static void *do_call(void *arg) {
    call_t *c = arg;
    c->r = http_json(c->port ? c->port : d.port, c->path, c->body);
    return NULL;
}

static char *pixels_json(const float *px, int n, const char *extra) {
    char *s = malloc((size_t)n * DIM * 18 + 64 + strlen(extra)), *o = s;
    o += sprintf(o, "{%s\"images\": [", extra);
    for (int i = 0; i < n; i++) {
        o += sprintf(o, "%s{\"pixels\": [", i ? ", " : "");
        for (int k = 0; k < DIM; k++) o += sprintf(o, "%s%.9g", k ? "," : "", px[(size_t)i * DIM + k]);
        o += sprintf(o, "]}");
    }
    strcpy(o, "]}");
    return s;
}

/* Whether two logp result arrays agree: every number within tol relative
 * (0: bit for bit). The VAE's rows come out to float rounding alike
 * whatever batch they ran in (its sgemm blocks differ), as in test_cost. */
static bool same_results(json_t *a, json_t *b, double tol) {
    if (!json_is_array(a) || json_array_size(a) != json_array_size(b) || json_array_size(b) != PER) return false;
    for (size_t i = 0; i < PER; i++) {
        json_t *oa = json_array_get(a, i), *ob = json_array_get(b, i), *vb;
        const char *key;
        if (json_object_size(oa) != json_object_size(ob)) return false;
        json_object_foreach(ob, key, vb) {
            double x = json_number_value(json_object_get(oa, key)), y = json_number_value(vb);
            if (tol == 0 ? x != y : !(fabs(x - y) <= tol * fmax(1, fabs(y)))) {
                print_error("results[%zu].%s: %.10g from PNGs, %.10g from pixels\n", i, key, x, y);
                return false;
            }
        }
    }
    return true;
}

static void test_batched_png_logp_equals_pixels(void **state) {
    static const char *const PATHS[] = {"/v1/models/nade/logp", "/v1/models/vae/logp"};
    for (size_t m = 0; m < 2; m++) {
        call_t png_calls[CLIENTS], px_calls[CLIENTS];
        pthread_t th[2 * CLIENTS];
        for (int c = 0; c < CLIENTS; c++) {
            uint8_t *pngs[PER + 1];
            size_t lens[PER + 1];
            float *px = malloc((size_t)PER * DIM * sizeof *px);
            char err[GM_ERR_LEN], extra[64];
            for (int i = 0; i < PER; i++) {
                pngs[i] = random_png(SIDE, SIDE, (uint64_t)(c * PER + i), &lens[i]);
                assert_int_equal(gm_png_decode(pngs[i], lens[i], SIDE, SIDE, 1, px + (size_t)i * DIM, err), GM_PNG_OK);
            }
            bool bad = c % 3 == 2;
            pngs[PER] = (uint8_t *)"not a PNG";
            lens[PER] = 9;
            snprintf(extra, sizeof extra, "\"seed\": %d, \"k\": 16, ", 100 + c);
            png_calls[c] = (call_t){.path = PATHS[m], .body = images_json(pngs, lens, PER + bad, extra)};
            px_calls[c] = (call_t){.path = PATHS[m], .body = pixels_json(px, PER, extra)};
            for (int i = 0; i < PER; i++) free(pngs[i]);
            free(px);
        }
        for (int c = 0; c < CLIENTS; c++) {
            pthread_create(&th[2 * c], NULL, do_call, &png_calls[c]);
            pthread_create(&th[2 * c + 1], NULL, do_call, &px_calls[c]);
        }
        for (int t = 0; t < 2 * CLIENTS; t++) pthread_join(th[t], NULL);
        for (int c = 0; c < CLIENTS; c++) {
            reply_t *a = &png_calls[c].r, *b = &px_calls[c].r;
            assert_int_equal(b->status, 200);
            if (c % 3 == 2) {
                char want[64];
                snprintf(want, sizeof want, "images[%d]: ", PER);
                if (a->status != 400 || !strstr((char *)a->body, want)) {
                    print_error("%s client %d: status %d %.300s\n", PATHS[m], c, a->status, (char *)a->body);
                    fail();
                }
            } else {
                json_t *ja = json_loadb((char *)a->body, a->len, 0, NULL),
                       *jb = json_loadb((char *)b->body, b->len, 0, NULL);
                if (a->status != 200 ||
                    !same_results(json_object_get(ja, "results"), json_object_get(jb, "results"), m == 0 ? 0 : 1e-5)) {
                    print_error("%s client %d: PNG reply %d %.300s\n  pixels reply %.300s\n", PATHS[m], c, a->status,
                                (char *)a->body, (char *)b->body);
                    fail();
                }
                json_decref(ja);
                json_decref(jb);
            }
            reply_free(a);
            reply_free(b);
            free(png_calls[c].body);
            free(px_calls[c].body);
        }
    }
}

/* PNG bytes waiting for a worker are bounded: with the one worker busy on
 * a heavy logp, a queued PNG request holds its 600 kB, and a second one
 * would pass max_body_memory_bytes (1 MiB): 503 with Retry-After. The
 * first is then computed as usual. */
static void test_waiting_png_bytes_are_bounded(void **state) {
    const char *args[] = {"--model", VAE, "--workers", "1", "--chunk-cost-ms", "60000", "--max-body-memory-bytes",
                          "1048576", NULL};
    daemon_t d2 = daemon_start("png_offload_budget", args);
    enum { HEAVY = 100 }; /* about 1.5 s of compute, in one piece */
    float *px = malloc(HEAVY * DIM * sizeof *px);
    for (int i = 0; i < HEAVY * DIM; i++) px[i] = (float)(i % 2);
    call_t heavy = {.path = "/v1/models/vae/logp", .body = pixels_json(px, HEAVY, "\"k\": 5000, "), .port = d2.port};
    free(px);
    pthread_t th;
    pthread_create(&th, NULL, do_call, &heavy);
    sleep_ms(300); /* the worker is on it */
    size_t len;
    uint8_t *png = chunk_spam_png(600000, &len);
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "POST /v1/models/vae/logp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      "Content-Type: image/png\r\nContent-Length: %zu\r\n\r\n",
                      len);
    int fd = connect_to(d2.port);
    send(fd, head, (size_t)hn, MSG_NOSIGNAL);
    for (size_t off = 0; off < len;) {
        ssize_t n = send(fd, png + off, len - off, MSG_NOSIGNAL);
        assert_true(n > 0);
        off += (size_t)n;
    }
    sleep_ms(200); /* queued, its bytes held */
    char headers[64] = "Content-Type: image/png\r\n", retry[16] = "";
    reply_t r = http(d2.port, "POST", "/v1/models/vae/logp", headers, png, len);
    reply_header(&r, "Retry-After", retry, sizeof retry);
    assert_string_equal(retry, "1");
    expect_message(&r, 503,
                   "the server holds as many PNG bytes waiting to be decoded as it may (1048576 bytes, "
                   "the max_body_memory_bytes setting); retry after 1 s",
                   "a second waiting PNG");
    raw_exchange(fd, NULL, 0, 60000, &r);
    close(fd);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    pthread_join(th, NULL);
    assert_int_equal(heavy.r.status, 200);
    reply_free(&heavy.r);
    free(heavy.body);
    free(png);
    assert_int_equal(daemon_stop(&d2), 0);
}

int main(void) {
    raise_nofile();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_png_same_status_and_message),
        cmocka_unit_test(test_batched_png_logp_equals_pixels),
        cmocka_unit_test(test_healthz_during_png_flood),
        cmocka_unit_test(test_waiting_png_bytes_are_bounded),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
