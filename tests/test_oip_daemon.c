/*
 * test_oip_daemon.c - the Open Inference Protocol v2 on the real daemon:
 * every /v2 endpoint answers the protocol's JSON; infer requests in JSON
 * and in the binary tensor data extension give the values the native /v1
 * routes give for the same seeds, images and latents (sample, logp,
 * encode, decode, discriminate), with binary replies parsed back by their
 * Inference-Header-Content-Length; errors (unknown model or version 404,
 * bad datatype, shape or byte count 400, a range /v1 answers 422 with 400)
 * come in the protocol's shape {"error": "..."}; infer requests are
 * counted in the metrics and join the same batches as /v1 requests. The daemon must exit 0 on SIGTERM (under
 * SAN=1: no sanitizer report, no leak).
 */
#include "testutil.h"

#include <jansson.h>
#include <pthread.h>
#include <strings.h>

#include "base64.h"
#include "daemon.h"
#include "pngio.h"

enum { D = 784 }; /* the bundled models' 28x28x1 */

static daemon_t d;

static int start(void **state) {
    const char *args[] = {"--model", "nade=models/nade.safetensors", "--model",      "vae=models/vae.safetensors",
                          "--model", "gan=models/gan.safetensors",   "--log-format", "off",
                          NULL};
    d = daemon_start("oip", args);
    return 0;
}

static int stop(void **state) { return daemon_stop_reported(&d); }

/* GET path: status 200 and its JSON. */
static json_t *get_json(const char *path) {
    reply_t r = http_get(d.port, path);
    json_t *j = expect_json(&r, 200, path);
    reply_free(&r);
    return j;
}

/* POST req (consumed) as JSON to path; status 200 and its JSON. */
static json_t *native(const char *path, json_t *req) {
    char *text = json_dumps(req, JSON_COMPACT);
    json_t *j = http_json_expect(d.port, path, text, 200);
    free(text);
    json_decref(req);
    return j;
}

/* A JSON infer request (consumed) to model; status 200 and its JSON. */
static json_t *infer(const char *model, json_t *req) {
    char path[128];
    snprintf(path, sizeof path, "/v2/models/%s/infer", model);
    return native(path, req);
}

/* The output tensor called name in an infer reply. */
static json_t *output(json_t *reply, const char *name) {
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(reply, "outputs"), i,
                       o) if (!strcmp(json_string_value(json_object_get(o, "name")), name)) return o;
    print_error("no output \"%s\" in the reply\n", name);
    fail();
    return NULL;
}

static double at(json_t *tensor, size_t i) {
    return json_number_value(json_array_get(json_object_get(tensor, "data"), i));
}

/* Compares got[i] with want[i] within tol, printing the first mismatch. */
static void near(const char *what, json_t *got_tensor, const double *want, size_t n, double tol) {
    for (size_t i = 0; i < n; i++)
        if (!(fabs(at(got_tensor, i) - want[i]) <= tol)) {
            print_error("%s[%zu]: got %.9g, want %.9g (tolerance %g)\n", what, i, at(got_tensor, i), want[i], tol);
            fail();
        }
}

/* A test image: a bright square on black, pixel values v/255 of UINT8 v. */
static void test_image(uint8_t *px, int shift) {
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++) px[y * 28 + x] = (x >= 6 + shift && x < 20 && y >= 8 && y < 22) ? 250 : 3;
}

static json_t *uint8_array(const uint8_t *px, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(px[i]));
    return a;
}

static json_t *pixels_of(const uint8_t *px) {
    json_t *a = json_array();
    for (int i = 0; i < D; i++) json_array_append_new(a, json_real(px[i] / 255.0f));
    return a;
}

static void test_endpoints(void **state) {
    json_t *s = get_json("/v2"), *slash = get_json("/v2/");
    assert_true(json_equal(s, slash));
    json_decref(slash);
    assert_string_equal(json_string_value(json_object_get(s, "name")), "gmserve");
    assert_non_null(json_string_value(json_object_get(s, "version")));
    bool binary = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(s, "extensions"), i, e) binary |=
        !strcmp(json_string_value(e), "binary_tensor_data");
    assert_true(binary);
    json_decref(s);
    json_t *live = get_json("/v2/health/live"), *ready = get_json("/v2/health/ready");
    assert_true(json_is_true(json_object_get(live, "live")));
    assert_true(json_is_true(json_object_get(ready, "ready")));
    json_decref(live);
    json_decref(ready);
    static const char *const MODEL_READY[] = {"/v2/models/vae/ready", "/v2/models/vae/versions/1/ready"};
    for (int k = 0; k < 2; k++) {
        json_t *mr = get_json(MODEL_READY[k]);
        assert_string_equal(json_string_value(json_object_get(mr, "name")), "vae");
        assert_true(json_is_true(json_object_get(mr, "ready")));
        json_decref(mr);
    }
    /* model metadata: typed inputs with -1 for the batch; the versioned path is the same document */
    json_t *m = get_json("/v2/models/vae"), *mv = get_json("/v2/models/vae/versions/1");
    assert_true(json_equal(m, mv));
    assert_string_equal(json_string_value(json_object_get(m, "name")), "vae");
    assert_string_equal(json_string_value(json_array_get(json_object_get(m, "versions"), 0)), "1");
    assert_non_null(json_string_value(json_object_get(m, "platform")));
    /* the top level is the default operation's (a VAE's logp: images in); decode takes latents */
    assert_string_equal(json_string_value(json_object_get(m, "default_operation")), "logp");
    assert_int_equal(json_array_size(json_object_get(m, "inputs")), 1);
    json_t *images = json_array_get(json_object_get(m, "inputs"), 0), *latents = NULL, *op;
    size_t k;
    json_array_foreach(json_object_get(m, "operations"), k,
                       op) if (!strcmp(json_string_value(json_object_get(op, "name")), "decode")) latents =
        json_array_get(json_object_get(op, "inputs"), 0);
    assert_string_equal(json_string_value(json_object_get(images, "name")), "images");
    assert_string_equal(json_string_value(json_object_get(images, "datatype")), "FP32");
    json_t *want_shape = json_pack("[i,i,i,i]", -1, 28, 28, 1), *want_latent = json_pack("[i,i]", -1, 32);
    assert_true(json_equal(json_object_get(images, "shape"), want_shape));
    assert_string_equal(json_string_value(json_object_get(latents, "name")), "latents");
    assert_true(json_equal(json_object_get(latents, "shape"), want_latent));
    json_decref(want_shape);
    json_decref(want_latent);
    json_decref(m);
    json_decref(mv);
}

static void expect_oip_error(reply_t r, int status, const char *needle, const char *what) {
    json_t *j = r.status ? json_loadb((const char *)r.body, r.len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(j, "error"));
    if (r.status != status || !msg || !strstr(msg, needle)) {
        print_error("%s: got %d %.300s; want %d with {\"error\": \"...%s...\"}\n", what, r.status,
                    r.body ? (char *)r.body : "", status, needle);
        fail();
    }
    json_decref(j);
    reply_free(&r);
}

static void test_errors(void **state) {
    expect_oip_error(http_get(d.port, "/v2/models/nope"), 404, "no model named \"nope\"", "unknown model");
    expect_oip_error(http_json(d.port, "/v2/models/nope/infer", "{\"inputs\":[]}"), 404, "nope", "unknown model infer");
    expect_oip_error(http_get(d.port, "/v2/models/vae/versions/2"), 404, "no version \"2\"", "unknown version");
    expect_oip_error(http_get(d.port, "/v2/models/vae/infer"), 405, "not allowed", "GET infer");
    expect_oip_error(http_json(d.port, "/v2/models/vae/infer", "{\"inputs\":"), 400, "not valid JSON", "bad JSON");
    expect_oip_error(http_json(d.port, "/v2/models/vae/infer",
                               "{\"inputs\":[{\"name\":\"images\",\"shape\":[1],\"datatype\":\"INT16\","
                               "\"data\":[0]}]}"),
                     400, "datatype INT16", "bad datatype");
    expect_oip_error(http_json(d.port, "/v2/models/vae/infer",
                               "{\"inputs\":[{\"name\":\"latents\",\"shape\":[1,31],\"datatype\":\"FP32\","
                               "\"data\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}"),
                     400, "model takes [n, 32]", "bad shape");
    /* a binary tensor whose byte count disagrees with its shape */
    char head[256];
    const char *json = "{\"inputs\":[{\"name\":\"latents\",\"shape\":[1,32],\"datatype\":\"FP32\","
                       "\"parameters\":{\"binary_data_size\":124}}]}";
    uint8_t body[512] = {0};
    memcpy(body, json, strlen(json));
    snprintf(head, sizeof head, "Inference-Header-Content-Length: %zu\r\nContent-Type: application/octet-stream\r\n",
             strlen(json));
    expect_oip_error(http(d.port, "POST", "/v2/models/vae/infer", head, body, strlen(json) + 124), 400,
                     "binary_data_size is 124 bytes", "wrong byte count");
    /* the right size, but the body holds fewer bytes */
    const char *json2 = "{\"inputs\":[{\"name\":\"latents\",\"shape\":[1,32],\"datatype\":\"FP32\","
                        "\"parameters\":{\"binary_data_size\":128}}]}";
    memcpy(body, json2, strlen(json2));
    snprintf(head, sizeof head, "Inference-Header-Content-Length: %zu\r\n", strlen(json2));
    expect_oip_error(http(d.port, "POST", "/v2/models/vae/infer", head, body, strlen(json2) + 100), 400,
                     "are not in the body", "short binary data");
    /* a range /v1 answers 422 is the protocol's 400 */
    expect_oip_error(
        http_json(d.port, "/v2/models/vae/infer",
                  "{\"inputs\":[{\"name\":\"n\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[100000]}]}"),
        400, "max_n", "n out of range");
    expect_oip_error(
        http_json(d.port, "/v2/models/nade/infer",
                  "{\"inputs\":[{\"name\":\"latents\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[0]}]}"),
        400, "cannot decode", "NADE has no decode");
}

/* Sample: the OIP images are the floats the native PNGs round to 8 bits. */
static void test_sample_matches_v1(void **state) {
    json_t *r = infer("gan", json_pack("{s:[{s:s,s:[i],s:s,s:[i]},{s:s,s:[i],s:s,s:[i]}]}", "inputs", "name", "n",
                                       "shape", 1, "datatype", "INT64", "data", 3, "name", "seed", "shape", 1,
                                       "datatype", "INT64", "data", 1234));
    json_t *v1 = native("/v1/models/gan/sample", json_pack("{s:i,s:i,s:s}", "n", 3, "seed", 1234, "format", "json"));
    json_t *images = output(r, "images"), *labels = output(r, "label");
    assert_string_equal(json_string_value(json_object_get(images, "datatype")), "FP32");
    json_t *want_shape = json_pack("[i,i,i,i]", 3, 28, 28, 1);
    assert_true(json_equal(json_object_get(images, "shape"), want_shape));
    json_decref(want_shape);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "parameters"), "seed")), 1234);
    for (int i = 0; i < 3; i++) {
        json_t *img = json_array_get(json_object_get(v1, "images"), (size_t)i);
        const char *b64 = json_string_value(json_object_get(img, "png"));
        size_t n;
        uint8_t *png = gm_base64_decode(b64, strlen(b64), &n);
        float px[D];
        char err[GM_ERR_LEN];
        assert_int_equal(gm_png_decode(png, n, 28, 28, 1, px, err), GM_PNG_OK);
        free(png);
        double want[D];
        for (int j = 0; j < D; j++) want[j] = px[j];
        /* 8-bit PNG: round(v * 255) / 255 is within half a step of v */
        for (int j = 0; j < D; j++)
            if (!(fabs(at(images, (size_t)i * D + j) - want[j]) <= 0.5 / 255 + 1e-6)) {
                print_error("image %d pixel %d: OIP %.9g, PNG %.9g\n", i, j, at(images, (size_t)i * D + j), want[j]);
                fail();
            }
        assert_int_equal((int)at(labels, (size_t)i), json_integer_value(json_object_get(img, "label")));
    }
    json_decref(r);
    json_decref(v1);

    /* NADE samples carry their exact log p, as on /v1 */
    json_t *nr = infer("nade", json_pack("{s:[{s:s,s:[i],s:s,s:[i]},{s:s,s:[i],s:s,s:[i]}],s:[{s:s}]}", "inputs",
                                         "name", "n", "shape", 1, "datatype", "INT32", "data", 2, "name", "seed",
                                         "shape", 1, "datatype", "INT64", "data", 5, "outputs", "name", "logp"));
    json_t *nv = native("/v1/models/nade/sample", json_pack("{s:i,s:i}", "n", 2, "seed", 5));
    double want[2];
    for (int i = 0; i < 2; i++)
        want[i] = json_number_value(json_object_get(json_array_get(json_object_get(nv, "images"), (size_t)i), "logp"));
    near("nade sample logp", output(nr, "logp"), want, 2, 1e-7 * fabs(want[0])); /* /v1 prints 10 digits */
    assert_int_equal(json_array_size(json_object_get(nr, "outputs")), 1);
    json_decref(nr);
    json_decref(nv);
}

/* logp and encode of UINT8 images equal /v1's on pixels v/255. */
static void test_logp_encode_match_v1(void **state) {
    uint8_t px[2 * D];
    test_image(px, 0);
    test_image(px + D, 3);
    json_t *v1_images = json_pack("[{s:o},{s:o}]", "pixels", pixels_of(px), "pixels", pixels_of(px + D));
    json_t *lr = infer("vae", json_pack("{s:s,s:[{s:s,s:[i,i,i,i],s:s,s:o},{s:s,s:[i],s:s,s:[i]}],s:{s:i}}", "id",
                                        "logp-1", "inputs", "name", "images", "shape", 2, 28, 28, 1, "datatype",
                                        "UINT8", "data", uint8_array(px, 2 * D), "name", "seed", "shape", 1, "datatype",
                                        "INT64", "data", 9, "parameters", "k", 20));
    json_t *lv = native("/v1/models/vae/logp", json_pack("{s:O,s:i,s:i}", "images", v1_images, "k", 20, "seed", 9));
    assert_string_equal(json_string_value(json_object_get(lr, "id")), "logp-1");
    static const char *const FIELDS[] = {"logp", "elbo", "se", "bits_per_dim"};
    for (int f = 0; f < 4; f++) {
        double want[2];
        for (int i = 0; i < 2; i++)
            want[i] = json_number_value(
                json_object_get(json_array_get(json_object_get(lv, "results"), (size_t)i), FIELDS[f]));
        near(FIELDS[f], output(lr, FIELDS[f]), want, 2, 1e-8 * (fabs(want[0]) + 1));
    }
    json_decref(lr);
    json_decref(lv);

    json_t *er = infer("vae", json_pack("{s:[{s:s,s:[i,i,i,i],s:s,s:o}],s:[{s:s},{s:s}]}", "inputs", "name", "images",
                                        "shape", 2, 28, 28, 1, "datatype", "UINT8", "data", uint8_array(px, 2 * D),
                                        "outputs", "name", "z", "name", "logvar"));
    json_t *ev = native("/v1/models/vae/encode", json_pack("{s:O}", "images", v1_images));
    static const char *const ENC[] = {"z", "logvar"};
    for (int f = 0; f < 2; f++) {
        double want[64];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 32; j++)
                want[i * 32 + j] = json_number_value(json_array_get(
                    json_object_get(json_array_get(json_object_get(ev, "results"), (size_t)i), ENC[f]), (size_t)j));
        near(ENC[f], output(er, ENC[f]), want, 64, 1e-6);
    }
    json_decref(er);
    json_decref(ev);
    json_decref(v1_images);
}

/* A binary request and a binary reply: the GAN's decode, and its
 * discriminator, against /v1. */
static void test_binary_decode_discriminate(void **state) {
    float z[2 * 64];
    for (int i = 0; i < 128; i++) z[i] = (float)sin(i * 0.7) * 1.5f;
    int64_t labels[2] = {3, 7};
    char json[512], head[256];
    int jl = snprintf(json, sizeof json,
                      "{\"inputs\":[{\"name\":\"latents\",\"shape\":[2,64],\"datatype\":\"FP32\","
                      "\"parameters\":{\"binary_data_size\":512}},{\"name\":\"label\",\"shape\":[2],"
                      "\"datatype\":\"INT64\",\"parameters\":{\"binary_data_size\":16}}],"
                      "\"outputs\":[{\"name\":\"images\",\"parameters\":{\"binary_data\":true}}]}");
    uint8_t body[1024];
    memcpy(body, json, (size_t)jl);
    memcpy(body + jl, z, sizeof z);
    memcpy(body + jl + sizeof z, labels, sizeof labels);
    snprintf(head, sizeof head, "Content-Type: application/octet-stream\r\nInference-Header-Content-Length: %d\r\n",
             jl);
    reply_t r = http(d.port, "POST", "/v2/models/gan/infer", head, body, (size_t)jl + sizeof z + sizeof labels);
    assert_int_equal(r.status, 200);
    char hl_text[32], type[64];
    assert_true(reply_header(&r, "Inference-Header-Content-Length", hl_text, sizeof hl_text));
    assert_true(reply_header(&r, "Content-Type", type, sizeof type));
    assert_string_equal(type, "application/octet-stream");
    size_t hl = (size_t)atol(hl_text);
    assert_true(hl < r.len);
    json_t *head_json = body_json_prefix(&r, hl), *images = output(head_json, "images");
    assert_null(json_object_get(images, "data"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(images, "parameters"), "binary_data_size")),
                     2 * D * 4);
    assert_int_equal(r.len - hl, 2 * D * 4);
    float got[2 * D];
    memcpy(got, r.body + hl, sizeof got);
    json_decref(head_json);
    reply_free(&r);

    json_t *lat = json_array();
    for (int i = 0; i < 2; i++) {
        json_t *row = json_array();
        for (int j = 0; j < 64; j++) json_array_append_new(row, json_real(z[i * 64 + j]));
        json_array_append_new(lat, row);
    }
    json_t *v1 = native("/v1/models/gan/decode",
                        json_pack("{s:o,s:[i,i],s:s}", "latents", lat, "label", 3, 7, "format", "json"));
    for (int i = 0; i < 2; i++) {
        const char *b64 =
            json_string_value(json_object_get(json_array_get(json_object_get(v1, "images"), (size_t)i), "png"));
        size_t n;
        uint8_t *png = gm_base64_decode(b64, strlen(b64), &n);
        float px[D];
        char err[GM_ERR_LEN];
        assert_int_equal(gm_png_decode(png, n, 28, 28, 1, px, err), GM_PNG_OK);
        free(png);
        for (int j = 0; j < D; j++)
            if (!(fabs(got[i * D + j] - px[j]) <= 0.5 / 255 + 1e-6)) {
                print_error("decode image %d pixel %d: OIP %.9g, PNG %.9g\n", i, j, got[i * D + j], px[j]);
                fail();
            }
    }
    json_decref(v1);

    /* the decoded images, sent back as binary FP32, to the discriminator */
    jl = snprintf(json, sizeof json,
                  "{\"inputs\":[{\"name\":\"images\",\"shape\":[2,28,28,1],\"datatype\":\"FP32\","
                  "\"parameters\":{\"binary_data_size\":%d}}],\"outputs\":[{\"name\":\"logit\"},"
                  "{\"name\":\"probability\"},{\"name\":\"realness\"}]}",
                  2 * D * 4);
    uint8_t *big = malloc((size_t)jl + sizeof got);
    memcpy(big, json, (size_t)jl);
    memcpy(big + jl, got, sizeof got);
    snprintf(head, sizeof head, "Inference-Header-Content-Length: %d\r\n", jl);
    reply_t dr = http(d.port, "POST", "/v2/models/gan/infer", head, big, (size_t)jl + sizeof got);
    free(big);
    assert_int_equal(dr.status, 200);
    json_t *dj = body_json(&dr);
    reply_free(&dr);
    json_t *pix = json_array();
    for (int i = 0; i < 2; i++) {
        json_t *row = json_array();
        for (int j = 0; j < D; j++) json_array_append_new(row, json_real(got[i * D + j]));
        json_array_append_new(pix, json_pack("{s:o}", "pixels", row));
    }
    json_t *dv = native("/v1/models/gan/discriminate", json_pack("{s:o}", "images", pix));
    double logit[2], prob[2], real[2];
    for (int i = 0; i < 2; i++) {
        json_t *res = json_array_get(json_object_get(dv, "results"), (size_t)i);
        logit[i] = json_number_value(json_object_get(res, "logit"));
        prob[i] = json_number_value(json_object_get(res, "probability"));
        real[i] = json_number_value(json_object_get(res, "realness"));
    }
    near("logit", output(dj, "logit"), logit, 2, 1e-5 * (fabs(logit[0]) + 1));
    near("probability", output(dj, "probability"), prob, 2, 1e-6);
    near("realness", output(dj, "realness"), real, 2, 1e-5 * (fabs(real[0]) + 1));
    json_decref(dj);
    json_decref(dv);
}

/* A JSON reply and a binary reply of the same request hold the same values. */
static void test_binary_reply_equals_json(void **state) {
    const char *json_req = "{\"inputs\":[{\"name\":\"n\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[2]},"
                           "{\"name\":\"seed\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[77]}]%s}";
    char a[512], b[512];
    snprintf(a, sizeof a, json_req, "");
    snprintf(b, sizeof b, json_req, ",\"parameters\":{\"binary_data_output\":true}");
    reply_t ja = http_json(d.port, "/v2/models/nade/infer", a), jb = http_json(d.port, "/v2/models/nade/infer", b);
    assert_int_equal(ja.status, 200);
    assert_int_equal(jb.status, 200);
    char hl_text[32];
    assert_false(reply_header(&ja, "Inference-Header-Content-Length", hl_text, sizeof hl_text));
    assert_true(reply_header(&jb, "Inference-Header-Content-Length", hl_text, sizeof hl_text));
    size_t hl = (size_t)atol(hl_text);
    json_t *ra = body_json(&ja), *rb = body_json_prefix(&jb, hl);
    /* binary tensors follow the JSON in the order of its outputs: images (FP32), then logp (FP64) */
    const uint8_t *p = jb.body + hl;
    json_t *img = output(ra, "images"), *lp = output(ra, "logp");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(output(rb, "images"), "parameters"), "binary_data_size")),
        2 * D * 4);
    for (size_t i = 0; i < 2 * D; i++, p += 4) {
        float f;
        memcpy(&f, p, 4);
        assert_true((double)f == at(img, i)); /* 9 digits: a float round-trips exactly */
    }
    for (size_t i = 0; i < 2; i++, p += 8) {
        double x;
        memcpy(&x, p, 8);
        assert_true(x == at(lp, i)); /* 17 digits: a double round-trips exactly */
    }
    assert_int_equal(p - jb.body, jb.len);
    json_decref(ra);
    json_decref(rb);
    reply_free(&ja);
    reply_free(&jb);
}

/* Infer requests are counted like any other, under their own route label. */
static void test_metrics(void **state) {
    reply_t r = http_get(d.port, "/metrics");
    assert_int_equal(r.status, 200);
    if (!strstr((char *)r.body, "route=\"v2_infer\"")) {
        print_error("no v2_infer requests in /metrics\n");
        fail();
    }
    reply_free(&r);
}

typedef struct {
    int port;
    const char *path, *body;
    reply_t r;
} exchange;

static void *post_thread(void *arg) {
    exchange *x = arg;
    x->r = http(x->port, "POST", x->path,
                "Content-Type: application/json\r\nAuthorization: Bearer k1\r\nOrigin: http://page.example\r\n",
                x->body, strlen(x->body));
    return NULL;
}

/* One worker that waits up to 1 s to fill a batch of 2 rows: a /v1 logp
 * and a /v2 infer of one image each form one batch (both replies say
 * "2 rows"), so an infer request is the same job as a native one. Were
 * their jobs apart, each would run alone after the wait, as "1 rows".
 * With an API key set, /v2 asks for it as /v1 does, except on its health
 * routes; with CORS on, a page may send and read the binary extension's
 * header. */
static void test_batched_with_v1(void **state) {
    const char *args[] = {"--model=nade=models/nade.safetensors",
                          "--workers=1",
                          "--max-batch=2",
                          "--max-delay-us=1000000",
                          "--api-key=k1",
                          "--cors-origin=*",
                          "--log-format=off",
                          NULL};
    daemon_t b = daemon_start("oip_batch", args);
    reply_t live = http_get(b.port, "/v2/health/live"), ready = http_get(b.port, "/v2/health/ready");
    assert_int_equal(live.status, 200);
    assert_int_equal(ready.status, 200);
    reply_free(&live);
    reply_free(&ready);
    expect_oip_error(http_get(b.port, "/v2/models/nade"), 401, "API key", "no API key");
    reply_t pre = http(b.port, "OPTIONS", "/v2/models/nade/infer", "Origin: http://page.example\r\n", NULL, 0);
    char allow_headers[256];
    assert_int_equal(pre.status, 204);
    assert_true(reply_header(&pre, "Access-Control-Allow-Headers", allow_headers, sizeof allow_headers));
    assert_non_null(strstr(allow_headers, "Inference-Header-Content-Length"));
    reply_free(&pre);
    uint8_t px[D];
    test_image(px, 1);
    json_t *v1 = json_pack("{s:[{s:o}]}", "images", "pixels", pixels_of(px));
    json_t *v2 = json_pack("{s:[{s:s,s:[i,i,i,i],s:s,s:o}]}", "inputs", "name", "images", "shape", 1, 28, 28, 1,
                           "datatype", "UINT8", "data", uint8_array(px, D));
    char *t1 = json_dumps(v1, JSON_COMPACT), *t2 = json_dumps(v2, JSON_COMPACT);
    exchange x[2] = {{.port = b.port, .path = "/v1/models/nade/logp", .body = t1},
                     {.port = b.port, .path = "/v2/models/nade/infer", .body = t2}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, post_thread, &x[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    double logp[2];
    for (int i = 0; i < 2; i++) {
        char timing[256], expose[256];
        assert_int_equal(x[i].r.status, 200);
        assert_true(reply_header(&x[i].r, "Access-Control-Expose-Headers", expose, sizeof expose));
        assert_non_null(strstr(expose, "Inference-Header-Content-Length"));
        assert_true(reply_header(&x[i].r, "Server-Timing", timing, sizeof timing));
        if (!strstr(timing, "batch;desc=\"2 rows\"")) {
            print_error("%s: Server-Timing %s; want a batch of 2 rows\n", x[i].path, timing);
            fail();
        }
        json_t *j = body_json(&x[i].r);
        logp[i] = i == 0 ? json_number_value(json_object_get(json_array_get(json_object_get(j, "results"), 0), "logp"))
                         : at(output(j, "logp"), 0);
        json_decref(j);
        reply_free(&x[i].r);
    }
    assert_true(fabs(logp[0] - logp[1]) <= 1e-7 * fabs(logp[0])); /* the same image, the same exact log p */
    free(t1);
    free(t2);
    json_decref(v1);
    json_decref(v2);
    assert_int_equal(daemon_stop(&b), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_sample_matches_v1),
        cmocka_unit_test(test_logp_encode_match_v1),
        cmocka_unit_test(test_binary_decode_discriminate),
        cmocka_unit_test(test_binary_reply_equals_json),
        cmocka_unit_test(test_metrics),
    };
    const struct CMUnitTest alone[] = {cmocka_unit_test(test_batched_with_v1)};
    return cmocka_run_group_tests(tests, start, stop) | cmocka_run_group_tests(alone, NULL, NULL);
}
