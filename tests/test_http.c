/*
 * test_http.c - the real daemon over real HTTP on loopback: every route and
 * every error status of the API with a body that explains it; values that
 * match the core computed in-process; 64 concurrent clients get what the
 * same requests get one by one; floods get 503 and the server lives on;
 * deadlines give 504; API keys and CORS; SIGTERM loses no accepted request;
 * a client that leaves has its job dropped. Each daemon is stopped with
 * SIGTERM and must exit 0, which under SAN=1 also means no sanitizer report
 * and no leak.
 */
#include "testutil.h"

#include <pthread.h>
#include <strings.h>

#include "base64.h"
#include "daemon.h"
#include "pngio.h"

#define NADE "nade=tests/fixtures/nade_ref.safetensors"
#define VAE "vae=tests/fixtures/vae_mlp.safetensors"
#define GAN "gan=tests/fixtures/gan_cond.safetensors"

static daemon_t main_d;

static int start_main(void **state) {
    const char *args[] = {FIXTURE_MODELS, NULL};
    main_d = daemon_start("main", args);
    return 0;
}

static int stop_main(void **state) { return daemon_stop_reported(&main_d); }

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

static reply_t post_png(int port, const char *path, const uint8_t *png, size_t len) {
    return http(port, "POST", path, "Content-Type: image/png\r\n", png, len);
}

static void test_every_error_status(void **state) {
    int p = main_d.port;
    reply_t png28 = http_get(p, "/sample?model=vae&seed=1"), png16 = http_get(p, "/sample?model=gan&seed=1");
    assert_int_equal(png28.status, 200);
    assert_int_equal(png16.status, 200);
    static const struct {
        const char *method, *path, *ctype, *body;
        int status;
        const char *want;
    } CASES[] = {
        {"GET", "/v1/models/nope", NULL, NULL, 404, "no model named \"nope\""},
        {"GET", "/nope", NULL, NULL, 404, "no route"},
        {"GET", "/sample?model=nope", NULL, NULL, 404, "no model named"},
        {"DELETE", "/v1/models/nade/sample", NULL, NULL, 405, "GET, HEAD, POST"},
        {"GET", "/v1/models/nade/logp", NULL, NULL, 405, "use POST"},
        {"POST", "/v1/models/nade/logp", "text/plain", "hello", 415, "image/png"},
        {"POST", "/logp?model=nade", "application/json", "{bad", 400, "not valid JSON"},
        {"POST", "/logp?model=nade", "application/json", "[1]", 400, "must be an object"},
        {"POST", "/logp?model=nade", "application/json", "{\"n\": \"\xff\xfe\"}", 400, "not valid JSON"},
        {"GET", "/sample?n=0", NULL, NULL, 422, "max_n"},
        {"GET", "/sample?n=100000", NULL, NULL, 422, "1 to 256"},
        {"GET", "/sample?n=abc", NULL, NULL, 400, "not an integer"},
        {"GET", "/sample?temperature=-1", NULL, NULL, 422, "temperature"},
        {"GET", "/sample?model=nade&label=1", NULL, NULL, 422, "not class-conditional"},
        {"GET", "/sample?model=gan&label=7", NULL, NULL, 422, "label"},
        {"GET", "/sample?model=gan&label=Bogus", NULL, NULL, 422, "class name"},
        {"GET", "/sample?model=nade&mode=sample", NULL, NULL, 422, "VAE models only"},
        {"GET", "/sample?model=vae&truncation=1", NULL, NULL, 422, "GAN models only"},
        {"GET", "/sample?bogus=1", NULL, NULL, 400, "unknown parameter \"bogus\""},
        {"GET", "/sample?seed=-5", NULL, NULL, 400, "seed"},
        {"GET", "/sample?scale=1000", NULL, NULL, 422, "max_scale"},
        {"GET", "/sample?format=gif", NULL, NULL, 422, "format"},
        {"POST", "/v1/models/nade/decode", "application/json", "{\"latents\": [[1]]}", 422, "no latent space"},
        {"POST", "/v1/models/vae/decode", "application/json", "{\"latents\": [[1, 2]]}", 422, "8 numbers"},
        {"POST", "/v1/models/gan/decode", "application/json", "{\"latents\": [[0,0,0,0,0,0,0,0]]}", 422,
         "label is required"},
        {"POST", "/v1/models/vae/logp", "application/json", "{\"images\": [{\"pixels\": [0.5]}]}", 422, "784"},
        {"POST", "/v1/models/vae/logp", "application/json", "{\"images\": [{\"png\": \"@@@\"}]}", 400, "base64"},
        {"POST", "/v1/models/vae/logp", "application/json", "{\"images\": [{\"png\": \"aGVsbG8=\"}]}", 400,
         "not a PNG"},
        {"POST", "/v1/models/vae/logp", "application/json", "{\"images\": []}", 422, "max_images"},
        {"POST", "/v1/models/vae/logp", "application/json", "{\"images\": [{}], \"k\": 0}", 422, "max_k"},
        {"POST", "/v1/models/vae/encode", "application/json", "{\"images\": [{\"pixels\": 3}]}", 400, "pixels"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char headers[128] = "";
        if (CASES[i].ctype) snprintf(headers, sizeof headers, "Content-Type: %s\r\n", CASES[i].ctype);
        const char *body = CASES[i].body ? CASES[i].body : "";
        reply_t r = http(p, CASES[i].method, CASES[i].path, headers, body, strlen(body));
        char what[256];
        snprintf(what, sizeof what, "%s %s", CASES[i].method, CASES[i].path);
        assert_error(&r, CASES[i].status, CASES[i].want, what);
        if (CASES[i].status == 405) {
            char allow[64];
            assert_true(reply_header(&r, "Allow", allow, sizeof allow));
        }
    }

    /* PNG inputs: another size, truncated, a forged 100000 x 100000 header */
    reply_t r = post_png(p, "/v1/models/vae/logp", png16.body, png16.len);
    assert_error(&r, 422, "28x28", "16x16 PNG to a 28x28 model");
    r = post_png(p, "/v1/models/vae/logp", png28.body, png28.len / 2);
    assert_error(&r, 400, "invalid PNG", "truncated PNG");
    uint8_t *huge = malloc(png28.len);
    memcpy(huge, png28.body, png28.len);
    for (int k = 0; k < 2; k++) { /* IHDR width and height: 100000 */
        uint8_t *f = huge + 16 + 4 * k;
        f[0] = 0, f[1] = 0x01, f[2] = 0x86, f[3] = 0xa0;
    }
    crc_fix(huge + 8, 13);
    r = post_png(p, "/v1/models/vae/logp", huge, png28.len);
    assert_true(r.status == 400 || r.status == 422);
    assert_error(&r, r.status, "PNG", "PNG claiming 100000x100000");
    free(huge);

    /* JSON nested 10000 deep, and a 10 MB body */
    size_t depth = 10000;
    char *deep = malloc(2 * depth + 16);
    strcpy(deep, "{\"images\":");
    size_t off = strlen(deep);
    for (size_t i = 0; i < depth; i++) deep[off++] = '[';
    for (size_t i = 0; i < depth; i++) deep[off++] = ']';
    strcpy(deep + off, "}");
    r = http_json(p, "/v1/models/vae/logp", deep);
    assert_error(&r, 400, "not valid JSON", "JSON nested 10000 deep");
    free(deep);
    size_t big = 10u << 20;
    char *ten = malloc(big);
    memset(ten, ' ', big);
    r = http(p, "POST", "/v1/models/vae/logp", "Content-Type: application/json\r\n", ten, big);
    assert_error(&r, 413, "max_body_bytes", "10 MB body");
    free(ten);
    reply_free(&png28);
    reply_free(&png16);

    r = http_get(p, "/healthz"); /* and the server is fine */
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

static int png_width(const reply_t *r) {
    assert_true(r->len > 24);
    return r->body[16] << 24 | r->body[17] << 16 | r->body[18] << 8 | r->body[19];
}

static void test_operations_agree_with_the_core(void **state) {
    int p = main_d.port;
    char hv[256];
    /* GET sample: a PNG grid, the seed echoed, the same bytes for the same seed */
    reply_t a = http_get(p, "/sample?model=gan&n=4&seed=42"), b = http_get(p, "/v1/models/gan/sample?n=4&seed=42");
    assert_int_equal(a.status, 200);
    assert_true(reply_header(&a, "Content-Type", hv, sizeof hv) && !strcmp(hv, "image/png"));
    assert_true(reply_header(&a, "X-Seed", hv, sizeof hv) && !strcmp(hv, "42"));
    assert_true(reply_header(&a, "Server-Timing", hv, sizeof hv));
    {
        /* the RFC's syntax: milliseconds with three decimals, then the batch */
        unsigned qi, qf, ci, cf;
        int rows, end = 0;
        int got = sscanf(hv, "queue;dur=%u.%3u, compute;dur=%u.%3u, batch;desc=\"%d rows\"%n", &qi, &qf, &ci, &cf,
                         &rows, &end);
        if (got != 5 || hv[end] || !strstr(hv, ".") || rows < 1) print_error("Server-Timing: %s\n", hv);
        assert_true(got == 5 && !hv[end] && rows >= 1);
        assert_true(strchr(hv, '.')[4] == ',' && strrchr(hv, '.')[4] == ','); /* exactly three decimals each */
    }
    assert_int_equal(png_width(&a), 2 * 16 + 1); /* 2 x 2 grid with a 1-pixel gutter */
    assert_true(a.len == b.len && memcmp(a.body, b.body, a.len) == 0);
    reply_free(&a);
    reply_free(&b);
    a = http_get(p, "/sample?model=vae&scale=3");
    assert_int_equal(png_width(&a), 28 * 3);
    assert_true(reply_header(&a, "X-Seed", hv, sizeof hv)); /* drawn and told */
    reply_free(&a);

    /* NADE: the log p a sample comes with equals the log p of scoring it, and
     * equals the core's own log p of the decoded PNG */
    a = http_json(p, "/v1/models/nade/sample", "{\"n\": 3, \"seed\": 7}");
    assert_int_equal(a.status, 200);
    json_t *s = body_json(&a), *images = json_object_get(s, "images");
    assert_int_equal(json_integer_value(json_object_get(s, "seed")), 7);
    assert_int_equal(json_array_size(images), 3);
    json_t *req = json_pack("{s:O}", "images", images);
    char *text = json_dumps(req, JSON_COMPACT);
    b = http_json(p, "/v1/models/nade/logp", text);
    assert_int_equal(b.status, 200);
    json_t *lp = body_json(&b);
    assert_string_equal(json_string_value(json_object_get(lp, "method")), "exact");
    gm_model *m = load_model("nade_ref.safetensors");
    for (size_t i = 0; i < 3; i++) {
        double sampled = json_number_value(json_object_get(json_array_get(images, i), "logp"));
        json_t *res = json_array_get(json_object_get(lp, "results"), i);
        double scored = json_number_value(json_object_get(res, "logp"));
        assert_true(fabs(sampled - scored) <= 1e-6 * fabs(scored));
        assert_true(fabs(json_number_value(json_object_get(res, "bits_per_dim")) + scored / (784 * M_LN2)) < 1e-6);
        /* the core, in this process, on the decoded PNG */
        const char *b64 = json_string_value(json_object_get(json_array_get(images, i), "png"));
        json_t *one = json_pack("{s:[{s:s}]}", "images", "png", b64);
        char *one_text = json_dumps(one, JSON_COMPACT);
        reply_t e = http_json(p, "/v1/models/nade/encode", one_text);
        assert_int_equal(e.status, 200);
        reply_free(&e);
        free(one_text);
        json_decref(one);
        float px[784];
        gm_row row = {0};
        gm_logp_result out;
        reply_t png = {0};
        size_t n;
        png.body = gm_base64_decode(b64, strlen(b64), &n);
        char err[GM_ERR_LEN];
        assert_int_equal(gm_png_decode(png.body, n, 28, 28, 1, px, err), GM_PNG_OK);
        assert_int_equal(gm_model_logp(m, 1, px, 1, &row, &out), 0);
        assert_true(fabs(out.logp - scored) <= 1e-6 * fabs(scored));
        reply_free(&png);
    }
    gm_model_free(m);
    json_decref(lp);
    json_decref(req);
    free(text);
    json_decref(s);
    reply_free(&a);
    reply_free(&b);

    /* VAE: encode, then decode the means; logp with K reports K and an ELBO below it */
    a = http_get(p, "/sample?model=vae&seed=5");
    b = post_png(p, "/v1/models/vae/encode", a.body, a.len);
    assert_int_equal(b.status, 200);
    json_t *enc = body_json(&b), *r0 = json_array_get(json_object_get(enc, "results"), 0);
    assert_int_equal(json_array_size(json_object_get(r0, "z")), 8);
    assert_int_equal(json_array_size(json_object_get(r0, "logvar")), 8);
    json_t *dec = json_pack("{s:[O],s:s,s:i}", "latents", json_object_get(r0, "z"), "format", "png", "scale", 2);
    text = json_dumps(dec, JSON_COMPACT);
    reply_t d = http_json(p, "/v1/models/vae/decode", text);
    assert_int_equal(d.status, 200);
    assert_int_equal(png_width(&d), 56);
    reply_free(&d);
    free(text);
    json_decref(dec);
    json_decref(enc);
    reply_free(&b);
    b = post_png(p, "/v1/models/vae/logp?k=64&seed=3", a.body, a.len);
    assert_int_equal(b.status, 200);
    json_t *v = body_json(&b);
    r0 = json_array_get(json_object_get(v, "results"), 0);
    assert_int_equal(json_integer_value(json_object_get(v, "k")), 64);
    assert_true(json_number_value(json_object_get(r0, "elbo")) <= json_number_value(json_object_get(r0, "logp")));
    json_decref(v);
    reply_free(&a);
    reply_free(&b);

    /* GAN: a class by name; decode with a label per latent */
    a = http_json(p, "/v1/models/gan/sample", "{\"n\": 2, \"seed\": 1, \"label\": 2}");
    assert_int_equal(a.status, 200);
    v = body_json(&a);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(v, "images"), 1), "label")), 2);
    json_decref(v);
    reply_free(&a);
    a = http_json(p, "/v1/models/gan/decode",
                  "{\"latents\": [[0,0,0,0,0,0,0,0],[1,1,1,1,1,1,1,1]], \"label\": [0, 1]}");
    assert_int_equal(a.status, 200);
    reply_free(&a);

    /* the container health check: gmserve probe URL */
    char cmd[512];
    const char *bin = gmserve_bin();
    snprintf(cmd, sizeof cmd, "%s probe http://127.0.0.1:%d/readyz", bin, p);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s probe http://127.0.0.1:%d/nope 2>/dev/null", bin, p);
    assert_int_not_equal(system(cmd), 0);

    /* service routes and headers */
    a = http(p, "GET", "/healthz", "X-Request-Id: trace-123\r\n", NULL, 0);
    assert_true(reply_header(&a, "X-Request-Id", hv, sizeof hv) && !strcmp(hv, "trace-123"));
    reply_free(&a);
    a = http_get(p, "/v1/models/gan");
    v = body_json(&a);
    assert_string_equal(json_string_value(json_object_get(v, "family")), "gan");
    assert_int_equal(json_integer_value(json_object_get(v, "num_classes")), 3);
    json_decref(v);
    reply_free(&a);
    a = http_get(p, "/metrics");
    assert_int_equal(a.status, 200);
    assert_non_null(strstr((char *)a.body, "gmserve_requests_total{route=\"sample\",model=\"gan\",status=\"200\"}"));
    assert_non_null(strstr((char *)a.body, "gmserve_batch_rows_bucket{model=\"gan\",op=\"sample\""));
    assert_non_null(strstr((char *)a.body, "gmserve_queue_depth 0"));
    reply_free(&a);
}

/* 64 concurrent clients, each with its own request, against the same
 * requests sent one at a time. */
enum { NCLIENTS = 64 };
typedef struct {
    int port, i;
    reply_t r;
} client;

static reply_t request_i(int port, int i) {
    char path[128], body[256];
    switch (i % 4) {
    case 0:
        snprintf(path, sizeof path, "/sample?model=gan&n=%d&seed=%d", 1 + i % 3, i);
        return http_get(port, path);
    case 1:
        snprintf(body, sizeof body, "{\"n\": 2, \"seed\": %d}", i);
        return http_json(port, "/v1/models/nade/sample", body);
    case 2:
        snprintf(body, sizeof body, "{\"n\": 1, \"seed\": %d, \"mode\": \"sample\"}", i);
        return http_json(port, "/v1/models/vae/sample", body);
    default:
        snprintf(body, sizeof body, "{\"latents\": [[%d,0,1,0,-1,0,0.5,0]]}", i % 7);
        return http_json(port, "/v1/models/vae/decode", body);
    }
}

static void *client_main(void *arg) {
    client *c = arg;
    c->r = request_i(c->port, c->i);
    return NULL;
}

/* The value of a series: the line that starts with it (not a # HELP line
 * that names it), or -1. */
static long metric(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *p = strstr(text, series); p; p = strstr(p + 1, series))
        if ((p == text || p[-1] == '\n') && p[n] == ' ') return atol(p + n + 1);
    return -1;
}

static void test_concurrent_equals_sequential(void **state) {
    int p = main_d.port;
    reply_t alone[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) alone[i] = request_i(p, i);
    reply_t m0 = http_get(p, "/metrics");
    long jobs0 = metric((char *)m0.body, "gmserve_inference_requests_total{model=\"gan\",op=\"sample\"}");
    long batches0 = metric((char *)m0.body, "gmserve_batches_total{model=\"gan\",op=\"sample\"}");
    reply_free(&m0);
    for (int round = 0; round < 3; round++) {
        client c[NCLIENTS];
        pthread_t t[NCLIENTS];
        for (int i = 0; i < NCLIENTS; i++) {
            c[i] = (client){.port = p, .i = i};
            pthread_create(&t[i], NULL, client_main, &c[i]);
        }
        for (int i = 0; i < NCLIENTS; i++) pthread_join(t[i], NULL);
        for (int i = 0; i < NCLIENTS; i++) {
            if (c[i].r.status != 200 || c[i].r.len != alone[i].len ||
                memcmp(c[i].r.body, alone[i].body, alone[i].len)) {
                print_error("client %d (round %d): status %d, %zu bytes; alone: %d, %zu bytes\n", i, round,
                            c[i].r.status, c[i].r.len, alone[i].status, alone[i].len);
                fail();
            }
            reply_free(&c[i].r);
        }
    }
    /* and the concurrent GAN samples were computed together */
    reply_t m1 = http_get(p, "/metrics");
    long jobs = metric((char *)m1.body, "gmserve_inference_requests_total{model=\"gan\",op=\"sample\"}") - jobs0;
    long batches = metric((char *)m1.body, "gmserve_batches_total{model=\"gan\",op=\"sample\"}") - batches0;
    reply_free(&m1);
    print_message("concurrent GAN samples: %ld requests in %ld batches\n", jobs, batches);
    assert_int_equal(jobs, 3 * NCLIENTS / 4);
    assert_true(batches < jobs);
    for (int i = 0; i < NCLIENTS; i++) reply_free(&alone[i]);
}

/* Slow requests (VAE log p with K = 5000) from many clients at once. */
typedef struct {
    int port, images, status;
    char retry_after[32];
} slow_client;

static void *slow_main(void *arg) {
    slow_client *c = arg;
    json_t *imgs = json_array();
    for (int i = 0; i < c->images; i++) {
        json_t *px = json_array();
        for (int d = 0; d < 784; d++) json_array_append_new(px, json_real(d % 3 ? 0.0 : 1.0));
        json_array_append_new(imgs, json_pack("{s:o}", "pixels", px));
    }
    json_t *req = json_pack("{s:i,s:o}", "k", 5000, "images", imgs);
    char *text = json_dumps(req, JSON_COMPACT);
    reply_t r = http_json(c->port, "/v1/models/vae/logp", text);
    c->status = r.status;
    reply_header(&r, "Retry-After", c->retry_after, sizeof c->retry_after);
    reply_free(&r);
    free(text);
    json_decref(req);
    return NULL;
}

static void run_slow_clients(int port, int n, int images, slow_client *c) {
    pthread_t *t = malloc((size_t)n * sizeof *t);
    for (int i = 0; i < n; i++) {
        c[i] = (slow_client){.port = port, .images = images};
        pthread_create(&t[i], NULL, slow_main, &c[i]);
    }
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    free(t);
}

static void test_flood_gets_503_and_server_lives(void **state) {
    const char *args[] = {"--model", VAE, "--workers", "1", "--max-batch", "1", "--queue-capacity", "4", NULL};
    daemon_t d = daemon_start("flood", args);
    slow_client c[64];
    run_slow_clients(d.port, 64, 1, c);
    int ok = 0, busy = 0;
    for (int i = 0; i < 64; i++) {
        if (c[i].status == 200) ok++;
        else if (c[i].status == 503) {
            busy++;
            assert_true(atoi(c[i].retry_after) >= 1);
        } else {
            print_error("flood client %d got %d\n", i, c[i].status);
            fail();
        }
    }
    print_message("flood of 64 on a queue of 4: %d served, %d told 503\n", ok, busy);
    assert_true(ok >= 1 && busy >= 1);
    reply_t r = http_get(d.port, "/sample?model=vae");
    assert_int_equal(r.status, 200);
    reply_free(&r);
    r = http_get(d.port, "/metrics");
    assert_true(metric((char *)r.body, "gmserve_rejections_total{reason=\"queue_full\"}") == busy);
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
}

static void test_deadline_gives_504(void **state) {
    const char *args[] = {"--model", VAE, "--workers", "1", "--max-batch", "1", "--deadline-ms", "30", NULL};
    daemon_t d = daemon_start("deadline", args);
    slow_client c[8];
    run_slow_clients(d.port, 8, 2, c);
    int late = 0;
    for (int i = 0; i < 8; i++) {
        assert_true(c[i].status == 200 || c[i].status == 504);
        late += c[i].status == 504;
    }
    assert_true(late >= 1);
    assert_int_equal(daemon_stop(&d), 0);
}

static void test_api_keys_and_cors(void **state) {
    const char *args[] = {"--model", GAN, "--api-key", "s3cret", "--cors-origin", "http://example.test", NULL};
    daemon_t d = daemon_start("auth", args);
    reply_t r = http_get(d.port, "/v1/models");
    assert_error(&r, 401, "Bearer", "no key");
    r = http(d.port, "GET", "/v1/models", "Authorization: Bearer wrong\r\n", NULL, 0);
    assert_error(&r, 401, "Bearer", "wrong key");
    r = http(d.port, "GET", "/sample", "Authorization: Bearer s3cret\r\n", NULL, 0);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    r = http_get(d.port, "/healthz");
    assert_int_equal(r.status, 200);
    reply_free(&r);
    char hv[128];
    r = http(d.port, "OPTIONS", "/v1/models/gan/sample",
             "Origin: http://example.test\r\nAccess-Control-Request-Method: POST\r\n", NULL, 0);
    assert_int_equal(r.status, 204);
    assert_true(reply_header(&r, "Access-Control-Allow-Origin", hv, sizeof hv) && !strcmp(hv, "http://example.test"));
    assert_true(reply_header(&r, "Access-Control-Allow-Headers", hv, sizeof hv) && strstr(hv, "Authorization"));
    reply_free(&r);
    r = http(d.port, "GET", "/healthz", "Origin: http://evil.test\r\n", NULL, 0);
    assert_false(reply_header(&r, "Access-Control-Allow-Origin", hv, sizeof hv));
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
}

typedef struct {
    daemon_t *d;
    slow_client *c;
    int n;
} drain_args;

static void *drain_load(void *arg) {
    drain_args *a = arg;
    run_slow_clients(a->d->port, a->n, 8, a->c); /* 8 images: ~0.1 s a request, so all N are in at once */
    return NULL;
}

static void test_sigterm_loses_no_accepted_request(void **state) {
    const char *args[] = {"--model", VAE, "--workers", "1", "--max-batch", "1", NULL};
    daemon_t d = daemon_start("drain", args);
    enum { N = 12 };
    slow_client c[N];
    drain_args a = {&d, c, N};
    pthread_t t;
    pthread_create(&t, NULL, drain_load, &a);
    /* Until the daemon has received every request (some may still be
     * uploading their bodies); polled, not timed, so that a loaded machine
     * only makes the test slower. */
    long in_flight = 0;
    for (int i = 0; i < 1000 && in_flight < N + 1; i++) {
        reply_t m = http_get(d.port, "/metrics");
        in_flight = m.body ? metric((char *)m.body, "gmserve_in_flight_requests") : 0;
        reply_free(&m);
        if (in_flight < N + 1) sleep_ms(20);
    }
    assert_true(in_flight >= N + 1);
    kill(d.pid, SIGTERM);
    int ready = 200; /* draining: not ready (or already gone), once the signal is seen */
    for (int i = 0; i < 500 && ready == 200; i++) {
        reply_t r = http_get(d.port, "/readyz");
        ready = r.status;
        reply_free(&r);
        if (ready == 200) sleep_ms(10);
    }
    assert_true(ready == 503 || ready == 0);
    pthread_join(t, NULL);
    assert_int_equal(daemon_stop(&d), 0);
    /* The daemon logs how many requests it had accepted when draining began:
     * each of those must be answered 200; a request still arriving then may
     * be told 503, and none may be dropped. */
    FILE *f = fopen(d.log, "r");
    assert_non_null(f);
    char line[512];
    int accepted = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "draining: ");
        if (p) accepted = atoi(p + strlen("draining: "));
    }
    fclose(f);
    assert_true(accepted >= 1);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        assert_true(c[i].status == 200 || c[i].status == 503);
        ok += c[i].status == 200;
    }
    print_message("drain: %d accepted when SIGTERM came, %d of %d answered 200\n", accepted, ok, N);
    assert_true(ok >= accepted);
}

/* A second SIGTERM while draining (an impatient operator, a supervisor that
 * repeats it) must not kill the process: it lands on a thread that does not
 * block it (OpenBLAS's pool, started before main) unless it is forwarded. */
static void *bundled_load(void *arg) {
    drain_args *a = arg;
    run_slow_clients(a->d->port, a->n, 1, a->c);
    return NULL;
}

static void test_second_sigterm_still_drains(void **state) {
    /* the bundled VAE: K = 5000 on it takes a few hundred ms a request */
    const char *args[] = {"--model", "vae=models/vae.safetensors", "--workers", "1", "--max-batch", "1", NULL};
    daemon_t d = daemon_start("drain2", args);
    enum { N = 4 };
    slow_client c[N];
    drain_args a = {&d, c, N};
    pthread_t t;
    pthread_create(&t, NULL, bundled_load, &a);
    sleep_ms(300);
    kill(d.pid, SIGTERM);
    for (int i = 0; i < 5; i++) { /* more while it drains: the main thread is no longer in sigwait */
        sleep_ms(20);
        kill(d.pid, SIGTERM);
    }
    pthread_join(t, NULL);
    for (int i = 0; i < N; i++) assert_int_equal(c[i].status, 200);
    assert_int_equal(daemon_stop(&d), 0);
}

static void test_client_that_leaves_is_dropped(void **state) {
    const char *args[] = {"--model", VAE, "--workers", "1", "--max-batch", "1", NULL};
    daemon_t d = daemon_start("gone", args);
    slow_client busy[8]; /* ~8 x 17 ms of K = 5000 keeps the single worker busy while the 3 hang up */
    drain_args a = {&d, busy, 8};
    pthread_t t;
    pthread_create(&t, NULL, drain_load, &a);
    sleep_ms(30);
    for (int i = 0; i < 3; i++) { /* send a request and hang up at once */
        int fd = connect_to(d.port);
        const char *req = "GET /sample?model=vae HTTP/1.1\r\nHost: x\r\n\r\n";
        send(fd, req, strlen(req), MSG_NOSIGNAL);
        sleep_ms(5);
        close(fd);
    }
    pthread_join(t, NULL);
    sleep_ms(100);
    reply_t r = http_get(d.port, "/metrics");
    long gone = metric((char *)r.body, "gmserve_rejections_total{reason=\"client_gone\"}");
    print_message("3 clients hung up while queued: %ld jobs dropped\n", gone);
    assert_true(gone >= 1);
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
}

/* Start-up refuses a bad setting or model file, naming it. */
static void test_startup_refusals(void **state) {
    const char *bin = gmserve_bin();
    write_text("build/test-logs/unknown-key.json", "{\"models\": {\"a\": \"x\"}, \"max_btach\": 3}\n");
    static const struct {
        const char *args;
        int status;
        const char *want;
    } CASES[] = {
        {"--model nade=tests/fixtures/missing.safetensors", 1, "tests/fixtures/missing.safetensors"},
        {"--model nade=tests/fixtures/nade_ref.ref.safetensors", 1, "model \"nade\""},
        {"--model nade=tests/fixtures/nade_ref.safetensors --max-batch 0", 2, "max_batch = 0 is out of range"},
        {"--model nade=tests/fixtures/nade_ref.safetensors --listen nowhere", 2, "HOST:PORT"},
        {"--model bad/name=x", 2, "model name"},
        {"--config build/test-logs/unknown-key.json", 2, "unknown setting \"max_btach\""},
        {"--config build/test-logs/does-not-exist.json", 2, "does-not-exist.json"},
        {"--bogus 1", 2, "unknown argument"},
        {"", 2, "no models to serve"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char cmd[1024], out[4096] = "";
        snprintf(cmd, sizeof cmd, "%s --config build/test-logs/empty.json %s 2>&1", bin, CASES[i].args);
        if (strstr(CASES[i].args, "--config")) snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin, CASES[i].args);
        FILE *p = popen(cmd, "r");
        size_t n = fread(out, 1, sizeof out - 1, p);
        out[n] = 0;
        int st = pclose(p);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != CASES[i].status || !strstr(out, CASES[i].want)) {
            print_error("gmserve %s: exit %d, output \"%s\"; want exit %d and \"%s\"\n", CASES[i].args,
                        WIFEXITED(st) ? WEXITSTATUS(st) : -1, out, CASES[i].status, CASES[i].want);
            fail();
        }
    }
}

int main(void) {
    const struct CMUnitTest with_main[] = {
        cmocka_unit_test(test_every_error_status),
        cmocka_unit_test(test_operations_agree_with_the_core),
        cmocka_unit_test(test_concurrent_equals_sequential),
    };
    const struct CMUnitTest own_daemon[] = {
        cmocka_unit_test(test_flood_gets_503_and_server_lives),
        cmocka_unit_test(test_deadline_gives_504),
        cmocka_unit_test(test_api_keys_and_cors),
        cmocka_unit_test(test_sigterm_loses_no_accepted_request),
        cmocka_unit_test(test_second_sigterm_still_drains),
        cmocka_unit_test(test_client_that_leaves_is_dropped),
        cmocka_unit_test(test_startup_refusals),
    };
    int failed = cmocka_run_group_tests(with_main, start_main, stop_main);
    return failed | cmocka_run_group_tests(own_daemon, NULL, NULL);
}
