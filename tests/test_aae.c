/*
 * test_aae.c - the adversarial autoencoder family against PyTorch.
 *
 * Two fixtures written by gmexport.save_aae (tests/make_fixtures.py) on
 * random weights: a conv AAE with a point encoder and a sigmoid decoder,
 * and an MLP AAE with a Gaussian head and a tanh decoder on RGB images
 * (the shape of the popular PyTorch GAN collections). Their reference
 * files hold PyTorch's codes, decoded images and reconstructions. Then:
 * a row's sample and reconstruction do not depend on its batch, and the
 * daemon serves reconstruct (pixels and PNG bodies in, PNG or JSON out),
 * lists it in /v1/models, and refuses logp with a 422 saying why.
 */
#include "gm/model.h"
#include "testutil.h"

#include "base64.h"
#include "daemon.h"
#include "pngio.h"

#define TOL 1e-4
static const char *const FIXTURES[] = {"aae_conv", "aae_gauss_rgb"};

static void test_parity_with_pytorch(void **state) {
    for (int f = 0; f < 2; f++) {
        char file[64], reff[64];
        snprintf(file, sizeof file, "%s.safetensors", FIXTURES[f]);
        snprintf(reff, sizeof reff, "%s.ref.safetensors", FIXTURES[f]);
        gm_model *m = load_model(file);
        gm_st *ref = load_ref(reff);
        const gm_model_info *in = gm_model_get_info(m);
        int n = (int)gm_st_tensor(ref, "x")->shape[0], D = in->dim, Z = in->latent_dim;
        assert_int_equal(in->family, GM_FAMILY_AAE);
        assert_int_equal(in->encode_dim, Z);
        assert_false(in->supports[GM_OP_LOGP]);
        assert_true(in->supports[GM_OP_RECONSTRUCT]);
        float *z = malloc((size_t)n * Z * sizeof *z), *px = malloc((size_t)n * D * sizeof *px);
        assert_int_equal(gm_model_encode(m, n, ref_f32(ref, "x"), z, NULL), 0);
        assert_close_f(file, z, ref_f32(ref, "code"), (size_t)n * Z, TOL);
        assert_int_equal(gm_model_decode(m, n, ref_f32(ref, "z"), NULL, px), 0);
        assert_close_f(file, px, ref_f32(ref, "decoded"), (size_t)n * D, TOL);
        assert_int_equal(gm_model_reconstruct(m, n, ref_f32(ref, "x"), px), 0);
        assert_close_f(file, px, ref_f32(ref, "reconstructed"), (size_t)n * D, TOL);
        gm_logp_result lp;
        gm_row *rows = seeded_rows(1, 1, 1.0f);
        assert_int_equal(gm_model_logp(m, 1, ref_f32(ref, "x"), 4, rows, &lp), -1); /* no density */
        free(rows);
        free(z);
        free(px);
        gm_st_free(ref);
        gm_model_free(m);
    }
}

/* Row `at` of a batch of B (its own seed among others) equals it alone. */
static void test_alone_vs_batched(void **state) {
    enum { B = 33, AT = 17 };
    for (int f = 0; f < 2; f++) {
        char file[64];
        snprintf(file, sizeof file, "%s.safetensors", FIXTURES[f]);
        gm_model *m = load_model(file);
        int D = gm_model_get_info(m)->dim;
        gm_row *batch = seeded_rows(B, 1000, 0.9f), *alone = seeded_rows(1, 1000, 0.9f);
        gm_rng_seed(&alone[0].rng, 1000, AT); /* the stream row AT has in the batch */
        float *pb = malloc((size_t)B * D * sizeof *pb), *p1 = malloc((size_t)D * sizeof *p1);
        assert_int_equal(gm_model_sample(m, B, batch, pb, NULL), 0);
        assert_int_equal(gm_model_sample(m, 1, alone, p1, NULL), 0);
        assert_close_f(file, p1, pb + (size_t)AT * D, D, 1e-5);
        float *x = malloc((size_t)B * D * sizeof *x);
        gm_rng g;
        gm_rng_seed(&g, 7, 0);
        for (size_t i = 0; i < (size_t)B * D; i++) x[i] = (float)gm_rng_uniform(&g);
        assert_int_equal(gm_model_reconstruct(m, B, x, pb), 0);
        assert_int_equal(gm_model_reconstruct(m, 1, x + (size_t)AT * D, p1), 0);
        assert_close_f(file, p1, pb + (size_t)AT * D, D, 1e-5);
        free(x);
        free(batch);
        free(alone);
        free(pb);
        free(p1);
        gm_model_free(m);
    }
}

/* The fixture aae_conv with metadata key set to value (NULL: removed),
 * written to a temporary file; loading must fail with a message holding
 * want. */
static void assert_refused_with(const char *key, const char *value, const char *want) {
    FILE *f = fopen(fixture("aae_conv.safetensors"), "rb");
    assert_non_null(f);
    uint8_t len8[8];
    assert_int_equal(fread(len8, 1, 8, f), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    char *head = malloc(n + 1);
    assert_int_equal(fread(head, 1, n, f), n);
    head[n] = 0;
    long at = ftell(f);
    fseek(f, 0, SEEK_END);
    size_t body_len = (size_t)(ftell(f) - at);
    fseek(f, at, SEEK_SET);
    uint8_t *body = malloc(body_len);
    assert_int_equal(fread(body, 1, body_len, f), body_len);
    fclose(f);
    json_t *h = json_loads(head, 0, NULL), *meta = json_object_get(h, "__metadata__");
    if (value) json_object_set_new(meta, key, json_string(value));
    else json_object_del(meta, key);
    char *text = json_dumps(h, JSON_COMPACT);
    char path[TEMP_PATH_LEN];
    st_write(path, "aae", text, body, body_len);
    char err[GM_ERR_LEN];
    gm_model *m = gm_model_load(path, err);
    unlink(path);
    if (m || !strstr(err, want)) {
        print_error("%s = %s: %s, want a refusal naming \"%s\"\n", key, value ? value : "(absent)", m ? "loaded" : err,
                    want);
        fail();
    }
    free(text);
    json_decref(h);
    free(body);
    free(head);
}

static void test_bad_metadata_is_refused(void **state) {
    assert_refused_with("gm.encoder_head", "sampled",
                        "\"gm.encoder_head\" = \"sampled\" must be \"point\" or \"gaussian\"");
    /* the file's encoder gives Z values: as a Gaussian head it lacks the log-variances */
    assert_refused_with("gm.encoder_head", "gaussian", "gm.encoder ends with 6 values per sample but 12 are needed");
    assert_refused_with("gm.output", "logits", "\"gm.output\" = \"logits\" must be \"sigmoid\" or \"tanh\"");
    assert_refused_with("gm.prior", "mixture", "standard normal prior only");
    assert_refused_with("gm.latent_dim", "5", "gm.encoder ends with 6 values per sample but 5 are needed");
    assert_refused_with("gm.decoder", NULL, "metadata \"gm.decoder\" (a layer list) is required");
}

/* A PNG as pixels in [0, 1], checked against PyTorch's within 8-bit rounding. */
static void assert_png_close(const char *what, const uint8_t *png, size_t len, const gm_model_info *in,
                             const float *want) {
    char err[GM_ERR_LEN];
    float *got = malloc((size_t)in->dim * sizeof *got);
    assert_int_equal(gm_png_decode(png, len, in->height, in->width, in->channels, got, err), GM_PNG_OK);
    assert_close_f(what, got, want, (size_t)in->dim, 0.5 / 255 + 1e-6);
    free(got);
}

static void test_daemon_reconstruct_and_logp(void **state) {
    const char *args[] = {"--model", "conv=tests/fixtures/aae_conv.safetensors", "--model",
                          "rgb=tests/fixtures/aae_gauss_rgb.safetensors", NULL};
    daemon_t d = daemon_start("aae", args);
    for (int f = 0; f < 2; f++) {
        char file[64], reff[64], path[96];
        snprintf(file, sizeof file, "%s.safetensors", FIXTURES[f]);
        snprintf(reff, sizeof reff, "%s.ref.safetensors", FIXTURES[f]);
        gm_model *m = load_model(file);
        gm_st *ref = load_ref(reff);
        const gm_model_info *in = gm_model_get_info(m);
        const float *x = ref_f32(ref, "x"), *want = ref_f32(ref, "reconstructed");
        const char *name = f ? "rgb" : "conv";
        /* two images as pixels, JSON out */
        size_t cap = (size_t)2 * in->dim * 16 + 64, len = 0;
        char *body = malloc(cap);
        len += (size_t)snprintf(body + len, cap - len, "{\"images\": [");
        for (int i = 0; i < 2; i++) {
            len += (size_t)snprintf(body + len, cap - len, "%s{\"pixels\": [", i ? ", " : "");
            for (int j = 0; j < in->dim; j++)
                len += (size_t)snprintf(body + len, cap - len, "%s%.9g", j ? "," : "", x[(size_t)i * in->dim + j]);
            len += (size_t)snprintf(body + len, cap - len, "]}");
        }
        snprintf(body + len, cap - len, "]}");
        snprintf(path, sizeof path, "/v1/models/%s/reconstruct", name);
        reply_t r = http_json(d.port, path, body);
        assert_int_equal(r.status, 200);
        json_t *j = body_json(&r), *images = json_object_get(j, "images");
        assert_int_equal(json_array_size(images), 2);
        uint8_t *png[2];
        size_t png_len[2];
        for (int i = 0; i < 2; i++) {
            const char *b64 = json_string_value(json_object_get(json_array_get(images, (size_t)i), "png"));
            assert_non_null(b64);
            png[i] = gm_base64_decode(b64, strlen(b64), &png_len[i]);
            assert_png_close(path, png[i], png_len[i], in, want + (size_t)i * in->dim);
        }
        json_decref(j);
        reply_free(&r);
        /* the first image as an image/png body, format=png: reconstructs the image the PNG holds */
        snprintf(path, sizeof path, "/reconstruct?model=%s&format=png", name);
        r = http(d.port, "POST", path, "Content-Type: image/png\r\n", png[0], png_len[0]);
        assert_int_equal(r.status, 200);
        float *again = malloc((size_t)in->dim * sizeof *again), *rec = malloc((size_t)in->dim * sizeof *rec);
        char err[GM_ERR_LEN];
        assert_int_equal(gm_png_decode(png[0], png_len[0], in->height, in->width, in->channels, again, err), GM_PNG_OK);
        assert_int_equal(gm_model_reconstruct(m, 1, again, rec), 0);
        assert_png_close(path, r.body, r.len, in, rec);
        reply_free(&r);
        /* the same through the Open Inference Protocol: images in, images out, unquantized */
        char *v2body = malloc(cap);
        len = (size_t)snprintf(v2body, cap,
                               "{\"inputs\": [{\"name\": \"images\", \"shape\": [2, %d, %d, %d], \"datatype\": "
                               "\"FP32\", \"data\": [",
                               in->height, in->width, in->channels);
        for (int q = 0; q < 2 * in->dim; q++)
            len += (size_t)snprintf(v2body + len, cap - len, "%s%.9g", q ? "," : "", x[q]);
        snprintf(v2body + len, cap - len, "]}], \"outputs\": [{\"name\": \"images\"}]}");
        snprintf(path, sizeof path, "/v2/models/%s/infer", name);
        r = http_json(d.port, path, v2body);
        free(v2body);
        assert_int_equal(r.status, 200);
        j = body_json(&r);
        json_t *data = json_object_get(json_array_get(json_object_get(j, "outputs"), 0), "data");
        assert_int_equal(json_array_size(data), 2 * in->dim);
        float *v2 = malloc((size_t)2 * in->dim * sizeof *v2);
        for (int k = 0; k < 2 * in->dim; k++) v2[k] = (float)json_number_value(json_array_get(data, (size_t)k));
        assert_close_f(path, v2, want, (size_t)2 * in->dim, TOL);
        free(v2);
        json_decref(j);
        reply_free(&r);
        /* logp: 422, saying why */
        snprintf(path, sizeof path, "/v1/models/%s/logp", name);
        r = http_json(d.port, path, body);
        assert_int_equal(r.status, 422);
        j = body_json(&r);
        const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        assert_non_null(msg);
        assert_non_null(strstr(msg, "defines no density"));
        assert_non_null(strstr(msg, "no likelihood term"));
        json_decref(j);
        reply_free(&r);
        /* /v1/models lists the operations from the tables, reconstruct's parameters among them */
        snprintf(path, sizeof path, "/v1/models/%s", name);
        r = http_get(d.port, path);
        assert_int_equal(r.status, 200);
        j = body_json(&r);
        char *ops = json_dumps(json_object_get(j, "operations"), JSON_COMPACT);
        assert_string_equal(ops, "[\"sample\",\"encode\",\"decode\",\"reconstruct\"]");
        free(ops);
        json_decref(j);
        reply_free(&r);
        free(rec);
        free(again);
        free(png[0]);
        free(png[1]);
        free(body);
        gm_st_free(ref);
        gm_model_free(m);
    }
    /* mode is a VAE's: refused on an AAE, not ignored */
    reply_t r = http_get(d.port, "/sample?model=conv&mode=sample");
    assert_int_equal(r.status, 422);
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_with_pytorch),
        cmocka_unit_test(test_alone_vs_batched),
        cmocka_unit_test(test_bad_metadata_is_refused),
        cmocka_unit_test(test_daemon_reconstruct_and_logp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
