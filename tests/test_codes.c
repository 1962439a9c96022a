/*
 * test_codes.c - InfoGAN's continuous codes: a generator with a "code"
 * input receives the codes given to decode and sample, draws them from
 * Uniform(-1, 1) on the row's stream after z when sample gets none, and the
 * API takes, bounds and refuses them as documented.
 *
 * The model is written here: 2x2x1 images, Z = 3, code_dim = 2, classes a
 * and b, the generator tanh(W [z; onehot; code] + bias) with W and the bias
 * drawn at random. The truth is that formula in float64; pixels are
 * 0.5 (tanh + 1), and over HTTP they come back as 8-bit PNG, so replies are
 * compared within half a grey level.
 */
#include "testutil.h"

#include <strings.h>

#include "base64.h"
#include "daemon.h"
#include "pngio.h"

enum { Z = 3, K = 2, C = 2, D = 4, IN = Z + C + K };

static float W[D * IN], BIAS[D];
static char model_path[TEMP_PATH_LEN] = "";

/* The reference: pixels of one row in float64. */
static void reference(const float *z, int label, const float *code, double *px) {
    double in[IN] = {0};
    for (int j = 0; j < Z; j++) in[j] = z[j];
    in[Z + label] = 1.0;
    for (int j = 0; j < K; j++) in[Z + C + j] = code[j];
    for (int d = 0; d < D; d++) {
        double s = BIAS[d];
        for (int j = 0; j < IN; j++) s += (double)W[d * IN + j] * in[j];
        px[d] = 0.5 * (tanh(s) + 1.0);
    }
}

static void assert_pixels(const char *what, const float *got, const double *want, int n, double tol) {
    for (int i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= tol)) {
            print_error("%s: pixel %d is %.7g, want %.7g (tolerance %g)\n", what, i, got[i], want[i], tol);
            fail();
        }
}

/* Writes the model file once, to a temporary path. */
static int write_model(void **state) {
    srand(16);
    for (int i = 0; i < D * IN; i++) W[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < D; i++) BIAS[i] = 0.2f * ((float)rand() / RAND_MAX - 0.5f);
    char header[2048];
    snprintf(
        header, sizeof header,
        "{\"__metadata__\":{\"gm.format\":\"1\",\"gm.family\":\"gan\",\"gm.image\":\"2x2x1\","
        "\"gm.latent_dim\":\"%d\",\"gm.num_classes\":\"%d\",\"gm.class_names\":\"[\\\"a\\\",\\\"b\\\"]\","
        "\"gm.code_dim\":\"%d\",\"gm.generator_inputs\":\"[\\\"z\\\",\\\"onehot\\\",\\\"code\\\"]\","
        "\"gm.generator\":\"[{\\\"op\\\":\\\"concat\\\",\\\"inputs\\\":[\\\"z\\\",\\\"onehot\\\",\\\"code\\\"]},"
        "{\\\"op\\\":\\\"linear\\\",\\\"weight\\\":\\\"w\\\",\\\"bias\\\":\\\"b\\\"},{\\\"op\\\":\\\"tanh\\\"}]\"},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[0,%zu]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}}",
        Z, C, K, D, IN, sizeof W, D, sizeof W, sizeof W + sizeof BIAS);
    uint8_t data[sizeof W + sizeof BIAS];
    memcpy(data, W, sizeof W);
    memcpy(data + sizeof W, BIAS, sizeof BIAS);
    st_write(model_path, "codes", header, data, sizeof data);
    return 0;
}

static int remove_model(void **state) {
    unlink(model_path);
    return 0;
}

static gm_model *load(void) {
    char err[GM_ERR_LEN] = "";
    gm_model *m = gm_model_load(model_path, err);
    if (!m) print_error("%s\n", err);
    assert_non_null(m);
    return m;
}

/* Decode feeds the given codes (one per row), and zeros without them. */
static void test_decode_feeds_codes(void **state) {
    gm_model *m = load();
    assert_int_equal(gm_model_get_info(m)->code_dim, K);
    enum { B = 3 };
    float z[B * Z], codes[B * K], zeros[K] = {0}, px[B * D];
    int labels[B] = {1, 0, 1};
    double want[D];
    for (int i = 0; i < B * Z; i++) z[i] = 2.0f * ((float)rand() / RAND_MAX) - 1.0f;
    for (int i = 0; i < B * K; i++) codes[i] = 3.0f * ((float)rand() / RAND_MAX) - 1.5f;
    assert_int_equal(gm_model_decode_codes(m, B, z, labels, codes, NULL, px), 0);
    for (int r = 0; r < B; r++) {
        reference(z + r * Z, labels[r], codes + r * K, want);
        assert_pixels("decode with codes", px + r * D, want, D, 1e-5);
    }
    assert_int_equal(gm_model_decode(m, B, z, labels, px), 0);
    for (int r = 0; r < B; r++) {
        reference(z + r * Z, labels[r], zeros, want);
        assert_pixels("decode without codes (zeros)", px + r * D, want, D, 1e-5);
    }
    gm_model_free(m);
}

/* Sample draws z from the row's stream, then each code from Uniform(-1, 1)
 * on the same stream; a row's given code replaces the draw (and z stays). */
static void test_sample_draws_or_takes_codes(void **state) {
    gm_model *m = load();
    enum { B = 4 };
    const float given[K] = {0.75f, -0.25f};
    for (int pass = 0; pass < 2; pass++) {
        gm_row rows[B];
        float px[B * D];
        for (int r = 0; r < B; r++) {
            rows[r] = (gm_row){.temperature = 1.0f, .label = r % C, .code = pass ? given : NULL};
            gm_rng_seed(&rows[r].rng, 99, (uint64_t)r);
        }
        assert_int_equal(gm_model_sample(m, B, rows, px, NULL), 0);
        for (int r = 0; r < B; r++) {
            gm_rng rng;
            gm_rng_seed(&rng, 99, (uint64_t)r);
            float z[Z], code[K];
            double want[D];
            for (int j = 0; j < Z; j++) z[j] = (float)gm_rng_normal(&rng);
            for (int j = 0; j < K; j++) code[j] = pass ? given[j] : (float)(2.0 * gm_rng_uniform(&rng) - 1.0);
            for (int j = 0; j < K; j++) assert_true(code[j] >= -1.0f && code[j] <= 1.0f);
            reference(z, r % C, code, want);
            assert_pixels(pass ? "sample with a given code" : "sample with drawn codes", px + r * D, want, D, 1e-5);
        }
    }
    gm_model_free(m);
}

/* ---- over HTTP ---- */

/* The images of a format=json reply, decoded to floats: (n, D). */
static int reply_pixels(const reply_t *r, float *px, int max) {
    assert_int_equal(r->status, 200);
    json_t *j = body_json(r), *images = json_object_get(j, "images");
    int n = (int)json_array_size(images);
    assert_true(n >= 1 && n <= max);
    for (int i = 0; i < n; i++) {
        json_t *png = json_object_get(json_array_get(images, (size_t)i), "png");
        size_t len;
        uint8_t *bytes = gm_base64_decode(json_string_value(png), json_string_length(png), &len);
        char err[GM_ERR_LEN];
        assert_non_null(bytes);
        assert_int_equal(gm_png_decode(bytes, len, 2, 2, 1, px + i * D, err), GM_PNG_OK);
        free(bytes);
    }
    json_decref(j);
    return n;
}

#define GREY (0.5 / 255 + 1e-6) /* 8-bit PNG rounding */

static void test_http_codes(void **state) {
    char arg[128];
    snprintf(arg, sizeof arg, "info=%s", model_path);
    const char *args[] = {"--model", arg, "--model", "plain=tests/fixtures/gan_cond.safetensors", NULL};
    daemon_t d = daemon_start("codes", args);
    int p = d.port;

    /* /v1/models lists code_dim */
    reply_t r = http_get(p, "/v1/models/info");
    json_t *j = body_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "code_dim")), K);
    json_decref(j);
    reply_free(&r);
    r = http_get(p, "/v1/models/plain");
    j = body_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "code_dim")), 0);
    json_decref(j);
    reply_free(&r);

    /* decode: one code for all latents, and one per latent */
    const float z[2][Z] = {{0.5f, -1.0f, 0.25f}, {-0.75f, 0.125f, 1.5f}};
    const float c[2][K] = {{0.5f, -0.5f}, {-1.0f, 0.875f}};
    const char *lat = "\"latents\":[[0.5,-1,0.25],[-0.75,0.125,1.5]],\"label\":[1,\"a\"],\"format\":\"json\"";
    char body[512];
    float px[4 * D];
    double want[D];
    snprintf(body, sizeof body, "{%s,\"code\":[0.5,-0.5]}", lat);
    r = http_json(p, "/v1/models/info/decode", body);
    assert_int_equal(reply_pixels(&r, px, 4), 2);
    reply_free(&r);
    for (int i = 0; i < 2; i++) {
        reference(z[i], 1 - i, c[0], want);
        assert_pixels("HTTP decode, one code", px + i * D, want, D, GREY);
    }
    snprintf(body, sizeof body, "{%s,\"code\":[[0.5,-0.5],[-1,0.875]]}", lat);
    r = http_json(p, "/v1/models/info/decode", body);
    assert_int_equal(reply_pixels(&r, px, 4), 2);
    reply_free(&r);
    for (int i = 0; i < 2; i++) {
        reference(z[i], 1 - i, c[i], want);
        assert_pixels("HTTP decode, a code per latent", px + i * D, want, D, GREY);
    }

    /* sample: a given code for every row, and drawn codes, both per seed */
    const float given[K] = {0.3f, -0.7f};
    for (int pass = 0; pass < 2; pass++) {
        r = http_json(p, "/v1/models/info/sample",
                      pass ? "{\"n\":3,\"seed\":7,\"label\":\"b\",\"format\":\"json\",\"code\":[0.3,-0.7]}"
                           : "{\"n\":3,\"seed\":7,\"label\":\"b\",\"format\":\"json\"}");
        assert_int_equal(reply_pixels(&r, px, 4), 3);
        reply_free(&r);
        for (int i = 0; i < 3; i++) {
            gm_rng rng;
            gm_rng_seed(&rng, 7, (uint64_t)i);
            float zz[Z], code[K];
            for (int k = 0; k < Z; k++) zz[k] = (float)gm_rng_normal(&rng);
            for (int k = 0; k < K; k++) code[k] = pass ? given[k] : (float)(2.0 * gm_rng_uniform(&rng) - 1.0);
            reference(zz, 1, code, want);
            assert_pixels(pass ? "HTTP sample, given code" : "HTTP sample, drawn codes", px + i * D, want, D, GREY);
        }
    }
    /* a GET takes the code as JSON text in the query */
    r = http_get(p, "/v1/models/info/sample?n=3&seed=7&label=b&format=json&code=%5B0.3,-0.7%5D");
    assert_int_equal(reply_pixels(&r, px, 4), 3);
    reply_free(&r);
    {
        gm_rng rng;
        gm_rng_seed(&rng, 7, 0);
        float zz[Z];
        for (int k = 0; k < Z; k++) zz[k] = (float)gm_rng_normal(&rng);
        reference(zz, 1, given, want);
        assert_pixels("HTTP GET sample, given code", px, want, D, GREY);
    }

    /* refusals */
    assert_post_error(p, "/v1/models/info/decode", "{\"latents\":[[0,0,0]],\"label\":0}", 422, "code is required");
    assert_post_error(p, "/v1/models/info/decode", "{\"latents\":[[0,0,0]],\"label\":0,\"code\":[1,2,3]}", 422,
                      "code must be an array of 2 numbers");
    assert_post_error(p, "/v1/models/info/decode", "{\"latents\":[[0,0,0],[0,0,0]],\"label\":0,\"code\":[[1,2]]}", 422,
                      "code has 1 entries for 2 latents");
    assert_post_error(p, "/v1/models/info/decode", "{\"latents\":[[0,0,0],[0,0,0]],\"label\":0,\"code\":[[1,2],[3]]}",
                      422, "code[1] must be an array of 2 numbers");
    assert_post_error(p, "/v1/models/info/decode", "{\"latents\":[[0,0,0]],\"label\":0,\"code\":[1,1e5]}", 422,
                      "code[1] must be a number within");
    assert_post_error(p, "/v1/models/info/decode", "{\"latents\":[[0,0,0]],\"label\":0,\"code\":[1,\"x\"]}", 422,
                      "code[1] must be a number within");
    assert_post_error(p, "/v1/models/info/sample", "{\"code\":[0.1]}", 422, "code must be an array of 2 numbers");
    assert_post_error(p, "/v1/models/info/sample", "{\"code\":\"[0.1,\"}", 400, "code must be a JSON array");
    /* code text is not parsed beyond code_dim values */
    assert_post_error(p, "/v1/models/info/sample", "{\"code\":\"[[[[[[[[1]]]]]]]]\"}", 422,
                      "code must be an array of 2 numbers");
    assert_post_error(p, "/v1/models/info/sample", "{\"code\":\"[1,2,3,4,5,6]\"}", 422,
                      "code must be an array of 2 numbers");
    assert_post_error(p, "/v1/models/plain/sample", "{\"code\":[0.1]}", 422, "no continuous code input");
    assert_post_error(p, "/v1/models/plain/decode", "{\"latents\":[[0,0,0,0,0,0,0,0]],\"label\":0,\"code\":[0.1]}", 422,
                      "no continuous code input");

    assert_int_equal(daemon_stop_reported(&d), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_feeds_codes),
        cmocka_unit_test(test_sample_draws_or_takes_codes),
        cmocka_unit_test(test_http_codes),
    };
    return cmocka_run_group_tests(tests, write_model, remove_model);
}
