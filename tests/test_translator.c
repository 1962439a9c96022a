/*
 * test_translator.c - the translator family against PyTorch.
 *
 * Three fixtures written by gmexport.save_translator
 * (tests/translator_fixtures.py) on random weights: CycleGAN's
 * ResnetGenerator pair on RGB images (forward and reverse), StarGAN's
 * Generator (the target class as one-hot maps) and a label-input
 * translator with a sigmoid whose image is its second input. Their
 * reference files hold PyTorch's translations as gmserve returns them. Then:
 * a row's translation does not depend on its batch, the library refuses
 * what the model lacks, and the daemon serves translate (pixels and PNG
 * bodies in, PNG, JSON pixels or npy out; label and direction), lists it in
 * /v1/models, and answers 422 for logp, a label out of range or given to a
 * single-domain model, and reverse on a one-way model.
 */
#include "gm/model.h"
#include "testutil.h"

#include "base64.h"
#include "daemon.h"
#include "npy.h"
#include "pngio.h"

#define TOL 1e-4
static const char *const FIXTURES[] = {"translator_cyclegan", "translator_stargan", "translator_label"};
enum { N_FIXTURES = 3 };

/* The reference labels (I64) as ints, or NULL for a model without classes. */
static int *ref_labels(const gm_st *ref, int n) {
    const gm_tensor *t = gm_st_tensor(ref, "label");
    if (!t) return NULL;
    assert_int_equal(t->dtype, GM_DTYPE_I64);
    int *labels = malloc((size_t)n * sizeof *labels);
    for (int i = 0; i < n; i++) labels[i] = (int)t->i64[i];
    return labels;
}

static void test_parity_with_pytorch(void **state) {
    for (int f = 0; f < N_FIXTURES; f++) {
        char file[64], reff[64];
        snprintf(file, sizeof file, "%s.safetensors", FIXTURES[f]);
        snprintf(reff, sizeof reff, "%s.ref.safetensors", FIXTURES[f]);
        gm_model *m = load_model(file);
        gm_st *ref = load_ref(reff);
        const gm_model_info *in = gm_model_get_info(m);
        int n = (int)gm_st_tensor(ref, "x")->shape[0], D = in->dim, *labels = ref_labels(ref, n);
        assert_int_equal(in->family, GM_FAMILY_TRANSLATOR);
        for (int op = 0; op < GM_OP_COUNT; op++) assert_int_equal(in->supports[op], op == GM_OP_TRANSLATE);
        assert_int_equal(in->reverse, gm_st_tensor(ref, "reverse") != NULL);
        assert_int_equal(in->num_classes > 0, labels != NULL);
        float *px = malloc((size_t)n * D * sizeof *px);
        assert_int_equal(gm_model_translate(m, n, ref_f32(ref, "x"), labels, false, px), 0);
        assert_close_f(file, px, ref_f32(ref, "forward"), (size_t)n * D, TOL);
        if (in->reverse) {
            assert_string_equal(in->domains[0], "summer");
            assert_string_equal(in->domains[1], "winter");
            assert_int_equal(gm_model_translate(m, n, ref_f32(ref, "x"), labels, true, px), 0);
            assert_close_f(file, px, ref_f32(ref, "reverse"), (size_t)n * D, TOL);
        } else {
            assert_null(in->domains);
            assert_int_equal(gm_model_translate(m, n, ref_f32(ref, "x"), labels, true, px), -1); /* one way only */
        }
        if (labels) {
            assert_int_equal(gm_model_translate(m, n, ref_f32(ref, "x"), NULL, false, px), -1); /* a class needed */
            int bad = labels[0];
            labels[0] = in->num_classes;
            assert_int_equal(gm_model_translate(m, n, ref_f32(ref, "x"), labels, false, px), -1);
            labels[0] = -1;
            assert_int_equal(gm_model_translate(m, n, ref_f32(ref, "x"), labels, false, px), -1);
            labels[0] = bad;
        } else {
            int none[1] = {0};
            assert_int_equal(gm_model_translate(m, 1, ref_f32(ref, "x"), none, false, px), -1); /* no classes */
        }
        gm_logp_result lp;
        gm_row *rows = seeded_rows(1, 1, 1.0f);
        assert_int_equal(gm_model_logp(m, 1, ref_f32(ref, "x"), 4, rows, &lp), -1); /* no density */
        assert_int_equal(gm_model_sample(m, 1, rows, px, NULL), -1);
        free(rows);
        free(labels);
        free(px);
        gm_st_free(ref);
        gm_model_free(m);
    }
}

/* Row `at` of a batch of B equals it alone, in every direction; and the
 * output may be the input itself. */
static void test_alone_vs_batched(void **state) {
    enum { B = 33, AT = 17 };
    for (int f = 0; f < N_FIXTURES; f++) {
        char file[64];
        snprintf(file, sizeof file, "%s.safetensors", FIXTURES[f]);
        gm_model *m = load_model(file);
        const gm_model_info *in = gm_model_get_info(m);
        int D = in->dim, labels[B];
        float *x = malloc((size_t)B * D * sizeof *x), *pb = malloc((size_t)B * D * sizeof *pb),
              *p1 = malloc((size_t)D * sizeof *p1);
        gm_rng g;
        gm_rng_seed(&g, 7, 0);
        for (size_t i = 0; i < (size_t)B * D; i++) x[i] = (float)gm_rng_uniform(&g);
        for (int r = 0; r < B; r++) labels[r] = in->num_classes ? (r * 7 + 3) % in->num_classes : 0;
        const int *lab = in->num_classes ? labels : NULL;
        for (int rev = 0; rev <= (int)in->reverse; rev++) {
            assert_int_equal(gm_model_translate(m, B, x, lab, rev, pb), 0);
            assert_int_equal(gm_model_translate(m, 1, x + (size_t)AT * D, lab ? lab + AT : NULL, rev, p1), 0);
            assert_close_f(file, p1, pb + (size_t)AT * D, D, 1e-5);
            /* in place: the first row translated over its own pixels */
            memcpy(p1, x, (size_t)D * sizeof *p1);
            assert_int_equal(gm_model_translate(m, 1, p1, lab, rev, p1), 0);
            assert_close_f(file, p1, pb, D, 1e-5);
        }
        free(x);
        free(pb);
        free(p1);
        gm_model_free(m);
    }
}

/* {"images": [{"pixels": [...]}, ...]} of n images, with extra members
 * (e.g. "label") from extra; the caller frees the text. */
static char *images_body(const float *x, int n, int D, json_t *extra) {
    json_t *images = json_array();
    for (int i = 0; i < n; i++) {
        json_t *px = json_array();
        for (int j = 0; j < D; j++) json_array_append_new(px, json_real(x[(size_t)i * D + j]));
        json_array_append_new(images, json_pack("{s:o}", "pixels", px));
    }
    json_t *b = extra ? extra : json_object();
    json_object_set_new(b, "images", images);
    char *text = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    return text;
}

/* The reply's images as pixels (format=pixels), n of D each. */
static float *reply_pixels(json_t *j, int n, int D) {
    json_t *images = json_object_get(j, "images");
    assert_int_equal(json_array_size(images), n);
    float *out = malloc((size_t)n * D * sizeof *out);
    for (int i = 0; i < n; i++) {
        json_t *px = json_object_get(json_array_get(images, (size_t)i), "pixels");
        assert_int_equal(json_array_size(px), D);
        for (int k = 0; k < D; k++) out[(size_t)i * D + k] = (float)json_number_value(json_array_get(px, (size_t)k));
    }
    return out;
}

static void test_daemon_translate(void **state) {
    const char *args[] = {"--model",
                          "cyc=tests/fixtures/translator_cyclegan.safetensors",
                          "--model",
                          "star=tests/fixtures/translator_stargan.safetensors",
                          "--model",
                          "lab=tests/fixtures/translator_label.safetensors",
                          "--max-request-cost-ms",
                          "100",
                          NULL};
    daemon_t d = daemon_start("translator", args);
    char err[GM_ERR_LEN];

    /* StarGAN: two images, one target class each, pixels out at the tolerance of the library */
    gm_st *ref = load_ref("translator_stargan.ref.safetensors");
    const float *x = ref_f32(ref, "x"), *want = ref_f32(ref, "forward");
    int n = (int)gm_st_tensor(ref, "x")->shape[0], D = 784, *labels = ref_labels(ref, n);
    char *body = images_body(x, 2, D, json_pack("{s:[i,i]}", "label", labels[0], labels[1]));
    reply_t r = http_json(d.port, "/v1/models/star/translate?format=pixels", body);
    json_t *j = expect_json(&r, 200, "star translate");
    float *got = reply_pixels(j, 2, D);
    assert_close_f("star translate, pixels", got, want, (size_t)2 * D, TOL);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(j, "images"), 1), "label")),
                     labels[1]);
    free(got);
    json_decref(j);
    reply_free(&r);
    free(body);
    /* one label for every image, the first image as an image/png body: what the library gives on the PNG's pixels */
    uint8_t *png;
    size_t png_len;
    assert_int_equal(gm_png_encode(x, 1, 28, 28, 1, 1, "test", &png, &png_len, err), 0);
    float *px = malloc((size_t)D * sizeof *px), *lib = malloc((size_t)D * sizeof *lib);
    assert_int_equal(gm_png_decode(png, png_len, 28, 28, 1, px, err), GM_PNG_OK);
    gm_model *m = load_model("translator_stargan.safetensors");
    int three = 3;
    assert_int_equal(gm_model_translate(m, 1, px, &three, false, lib), 0);
    r = http(d.port, "POST", "/translate?model=star&label=3&format=npy", "Content-Type: image/png\r\n", png, png_len);
    assert_int_equal(r.status, 200);
    /* npy: a 128-byte header (version 1) and float32 values (1, 28, 28, 1) */
    assert_true(r.len == 128 + (size_t)D * 4);
    assert_non_null(memmem(r.body, 128, "'shape': (1, 28, 28, 1)", 23));
    assert_close_f("star translate, png body, npy", (const float *)(r.body + 128), lib, D, 1e-6);
    reply_free(&r);
    /* the PNG reply of the same holds the library's pixels within 8-bit rounding */
    r = http(d.port, "POST", "/v1/models/star/translate?label=3&format=png", "Content-Type: image/png\r\n", png,
             png_len);
    assert_int_equal(r.status, 200);
    assert_int_equal(gm_png_decode(r.body, r.len, 28, 28, 1, px, err), GM_PNG_OK);
    assert_close_f("star translate, png", px, lib, D, 0.5 / 255 + 1e-6);
    reply_free(&r);
    gm_model_free(m);
    free(png);
    free(lib);
    free(px);
    /* the 422s: no density, a label out of range or missing, reverse on a one-way model */
    body = images_body(x, 1, D, NULL);
    assert_post_error(d.port, "/v1/models/star/logp", body, 422, "a translator defines no density");
    assert_post_error(d.port, "/v1/models/star/translate?label=10", body, 422,
                      "neither a class name nor an index 0 to 9");
    char *body10 = images_body(x, 1, D, json_pack("{s:i}", "label", 10));
    assert_post_error(d.port, "/v1/models/star/translate", body10, 422, "label = 10 is out of range: 0 to 9");
    free(body10);
    assert_post_error(d.port, "/v1/models/star/translate", body, 422, "label is required");
    assert_post_error(d.port, "/v1/models/star/translate?label=1&direction=reverse", body, 422,
                      "translates one way only");
    free(body);
    /* the cost model: 64 images at 2 ms a row are over a limit of 100 ms */
    float *many = malloc((size_t)64 * D * sizeof *many);
    for (int i = 0; i < 64 * D; i++) many[i] = x[i % (n * D)];
    body = images_body(many, 64, D, json_pack("{s:i}", "label", 1));
    assert_post_error(d.port, "/v1/models/star/translate", body, 422, "over the limit of 100 ms");
    free(body);
    free(many);
    free(labels);
    gm_st_free(ref);

    /* CycleGAN: forward by default, reverse by name or by the target domain */
    ref = load_ref("translator_cyclegan.ref.safetensors");
    x = ref_f32(ref, "x");
    D = 16 * 16 * 3;
    body = images_body(x, 3, D, NULL);
    static const struct {
        const char *query;
        const char *want, *direction, *domain;
    } WAYS[] = {{"", "forward", "forward", "winter"},
                {"&direction=winter", "forward", "forward", "winter"},
                {"&direction=reverse", "reverse", "reverse", "summer"},
                {"&direction=summer", "reverse", "reverse", "summer"}};
    for (int w = 0; w < 4; w++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/models/cyc/translate?format=pixels%s", WAYS[w].query);
        r = http_json(d.port, path, body);
        j = expect_json(&r, 200, path);
        got = reply_pixels(j, 3, D);
        assert_close_f(path, got, ref_f32(ref, WAYS[w].want), (size_t)3 * D, TOL);
        assert_string_equal(json_string_value(json_object_get(j, "direction")), WAYS[w].direction);
        assert_string_equal(json_string_value(json_object_get(j, "domain")), WAYS[w].domain);
        free(got);
        json_decref(j);
        reply_free(&r);
    }
    /* the same through the Open Inference Protocol: images in, images out, unquantized, the direction a parameter */
    json_t *data = json_array();
    for (int k = 0; k < 3 * D; k++) json_array_append_new(data, json_real(x[k]));
    json_t *req = json_pack("{s:[{s:s,s:[i,i,i,i],s:s,s:o}],s:{s:s}}", "inputs", "name", "images", "shape", 3, 16, 16,
                            3, "datatype", "FP32", "data", data, "parameters", "direction", "reverse");
    char *v2 = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    r = http_json(d.port, "/v2/models/cyc/infer", v2);
    j = expect_json(&r, 200, "/v2/models/cyc/infer");
    json_t *out = json_object_get(json_array_get(json_object_get(j, "outputs"), 0), "data");
    assert_int_equal(json_array_size(out), 3 * D);
    got = malloc((size_t)3 * D * sizeof *got);
    for (int k = 0; k < 3 * D; k++) got[k] = (float)json_number_value(json_array_get(out, (size_t)k));
    assert_close_f("/v2 cyc reverse", got, ref_f32(ref, "reverse"), (size_t)3 * D, TOL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "parameters"), "operation")), "translate");
    free(got);
    free(v2);
    json_decref(j);
    reply_free(&r);
    assert_post_error(d.port, "/v1/models/cyc/translate?label=0", body, 422, "is not class-conditional");
    assert_post_error(d.port, "/v1/models/cyc/translate?direction=autumn", body, 422,
                      "translates forward (to \"winter\") or reverse (to \"summer\")");
    assert_post_error(d.port, "/v1/models/cyc/logp", body, 422, "defines no density");
    free(body);
    gm_st_free(ref);

    /* /v1/models: the operations from the tables, translate's parameters and the domains */
    r = http_get(d.port, "/v1/models/cyc");
    j = expect_json(&r, 200, "/v1/models/cyc");
    char *ops = json_dumps(json_object_get(j, "operations"), JSON_COMPACT),
         *params = json_dumps(json_object_get(json_object_get(j, "parameters"), "translate"), JSON_COMPACT),
         *domains = json_dumps(json_object_get(j, "domains"), JSON_COMPACT);
    assert_string_equal(ops, "[\"translate\"]");
    assert_string_equal(params, "[\"images\",\"label\",\"format\",\"scale\",\"direction\"]");
    assert_string_equal(domains, "[\"summer\",\"winter\"]");
    free(ops);
    free(params);
    free(domains);
    json_decref(j);
    reply_free(&r);
    /* a translator samples nothing */
    r = http_get(d.port, "/sample?model=lab");
    assert_int_equal(r.status, 422);
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_with_pytorch),
        cmocka_unit_test(test_alone_vs_batched),
        cmocka_unit_test(test_daemon_translate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
