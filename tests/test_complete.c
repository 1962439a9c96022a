/*
 * test_complete.c - completion by autoregressive models, in the core and
 * over HTTP (POST /v1/models/{name}/complete).
 *
 * The truths it checks against: the kept pixels are the input's; a
 * completion's log p is what logp scores for the returned image; the log p
 * of the completion is log p(x) - log p(kept), with p(kept) summed over
 * every possible rest of a tiny model (2^(D - given) images); a completion
 * draws the same random numbers as sample, so completing any prefix of a
 * sample with its seed gives the sample back (prefix 0 is sample itself);
 * a row's completion does not depend on the rows batched with it.
 */
#include <pthread.h>

#include "base64.h"
#include "gm/model.h"
#include "pngio.h"
#include "testutil.h"

#include "daemon.h"

#define NADE "models/nade.safetensors" /* raster order, 28x28 */

static gm_model *load_path(const char *path) {
    char err[GM_ERR_LEN];
    gm_model *m = gm_model_load(path, err);
    if (!m) {
        print_error("%s\n", err);
        fail();
    }
    return m;
}

/* ---- the core ---- */

/* For every given count of a tiny model (D <= 12): the kept pixels stay,
 * the returned log p is logp's, and the completion's log p is log p(x)
 * minus the log of the sum of p over all 2^(D - given) images that share
 * the kept pixels. */
static void check_kept_logp_and_marginal(const char *path) {
    gm_model *m = load_path(path);
    const gm_model_info *in = gm_model_get_info(m);
    enum { B = 3, MAX_D = 12 };
    int D = in->dim;
    assert_true(in->supports[GM_OP_COMPLETE] && D <= MAX_D);
    float x[MAX_D], xs[B * MAX_D], out[B * MAX_D], all[(1 << MAX_D) * MAX_D];
    double lp[B], rest[B];
    static gm_logp_result scored[1 << MAX_D];
    for (int i = 0; i < D; i++) x[i] = (float)((i * 7 + 3) % 10) / 9.0f; /* binarized at 0.5 */
    for (int given = 0; given <= D; given++) {
        gm_row *rows = seeded_rows(B, 1234 + (uint64_t)given, 1.0f);
        for (int r = 0; r < B; r++) {
            rows[r].given = given;
            memcpy(xs + r * D, x, D * sizeof *x);
        }
        assert_int_equal(gm_model_complete(m, B, xs, rows, out, lp, rest), 0);
        assert_int_equal(gm_model_logp(m, B, out, 1, rows, scored), 0);
        int count = 1 << (D - given);
        for (int r = 0; r < B; r++) {
            for (int i = 0; i < given; i++) assert_true(out[r * D + i] == (x[i] >= 0.5f ? 1.0f : 0.0f));
            for (int i = 0; i < D; i++) assert_true(out[r * D + i] == 0.0f || out[r * D + i] == 1.0f);
            assert_true(fabs(lp[r] - scored[r].logp) <= 1e-4);
        }
        /* p(kept) = sum over every rest */
        for (int k = 0; k < count; k++)
            for (int i = 0; i < D; i++)
                all[k * D + i] = i < given ? (x[i] >= 0.5f ? 1.0f : 0.0f) : (float)((k >> (i - given)) & 1);
        gm_row *any = seeded_rows(count, 0, 1.0f);
        assert_int_equal(gm_model_logp(m, count, all, 1, any, scored), 0);
        double kept = 0;
        for (int k = 0; k < count; k++) kept += exp(scored[k].logp);
        for (int r = 0; r < B; r++) {
            if (given == D) assert_true(rest[r] == 0.0);
            assert_true(fabs(rest[r] - (lp[r] - log(kept))) <= 1e-6);
        }
        free(any);
        free(rows);
    }
    gm_model_free(m);
}

static void test_core_kept_logp_and_marginal(void **state) {
    check_kept_logp_and_marginal("tests/fixtures/nade_tiny.safetensors");     /* 2x5 */
    check_kept_logp_and_marginal("tests/fixtures/pixelcnn_tiny.safetensors"); /* 2x3 */
    check_kept_logp_and_marginal("tests/fixtures/pixelrnn_tiny.safetensors"); /* 3x3 */
}

/* Completing the first p pixels of a sample with the sample's seed,
 * temperature (and label) gives the sample back, pixels and log p bit for
 * bit; p = 0 is sample itself. */
static void check_sample_given_back(const char *path) {
    gm_model *m = load_path(path);
    const gm_model_info *in = gm_model_get_info(m);
    int D = in->dim, label = in->num_classes ? in->num_classes - 1 : -1;
    const float temps[] = {1.0f, 0.6f};
    float *s = malloc(D * sizeof *s), *c = malloc(D * sizeof *c);
    for (int t = 0; t < 2; t++) {
        gm_row *rows = seeded_rows(1, 77, temps[t]);
        rows[0].label = label;
        double lp, lpc, rest;
        assert_int_equal(gm_model_sample(m, 1, rows, s, &lp), 0);
        const int prefixes[] = {0, 1, D / 3, D / 2, D - 1, D};
        for (int k = 0; k < 6; k++) {
            free(rows);
            rows = seeded_rows(1, 77, temps[t]);
            rows[0].label = label;
            rows[0].given = prefixes[k];
            assert_int_equal(gm_model_complete(m, 1, s, rows, c, &lpc, &rest), 0);
            assert_memory_equal(c, s, D * sizeof *c);
            assert_true(lpc == lp);
        }
        free(rows);
    }
    free(s);
    free(c);
    gm_model_free(m);
}

static void test_core_completing_a_sample_gives_it_back(void **state) {
    check_sample_given_back(NADE);
    check_sample_given_back("tests/fixtures/pixelcnn_gated.safetensors");
    check_sample_given_back("tests/fixtures/pixelcnn_gated_cond.safetensors"); /* a label */
    check_sample_given_back("tests/fixtures/pixelcnn_shifted.safetensors");
    check_sample_given_back("tests/fixtures/pixelcnn_rgb.safetensors"); /* 3 channels a pixel */
    check_sample_given_back("tests/fixtures/pixelrnn_small.safetensors");
    check_sample_given_back("tests/fixtures/pixelrnn_cond.safetensors"); /* a label */
}

/* A row completed among others (different given counts, seeds and
 * temperatures, split over 3 compute threads) equals the row alone. */
static void check_batched_equals_alone(const char *path) {
    gm_model *m = load_path(path);
    enum { B = 9 };
    int D = gm_model_get_info(m)->dim;
    float *x = malloc((size_t)B * D * sizeof *x), *out = malloc((size_t)B * D * sizeof *out),
          *one = malloc(D * sizeof *one);
    double lp[B], rest[B], lp1, rest1;
    gm_row rows[B], alone;
    gm_rng fill;
    gm_rng_seed(&fill, 5, 0);
    for (int i = 0; i < B * D; i++) x[i] = (float)(gm_rng_uniform(&fill) < 0.3);
    for (int r = 0; r < B; r++) {
        rows[r] = (gm_row){.temperature = 0.5f + 0.25f * (r % 3), .label = -1, .given = r * D / 8};
        gm_rng_seed(&rows[r].rng, 40 + r, (uint64_t)r);
    }
    gm_set_compute_threads(3);
    assert_int_equal(gm_model_complete(m, B, x, rows, out, lp, rest), 0);
    gm_set_compute_threads(1);
    for (int r = 0; r < B; r++) {
        alone = (gm_row){.temperature = 0.5f + 0.25f * (r % 3), .label = -1, .given = r * D / 8};
        gm_rng_seed(&alone.rng, 40 + r, (uint64_t)r);
        assert_int_equal(gm_model_complete(m, 1, x + (size_t)r * D, &alone, one, &lp1, &rest1), 0);
        assert_memory_equal(one, out + (size_t)r * D, D * sizeof *one);
        assert_true(lp1 == lp[r] && rest1 == rest[r]);
    }
    free(x);
    free(out);
    free(one);
    gm_model_free(m);
}

static void test_core_batched_equals_alone(void **state) {
    check_batched_equals_alone(NADE);
    check_batched_equals_alone("tests/fixtures/pixelcnn_gated.safetensors");
    check_batched_equals_alone("tests/fixtures/pixelcnn_rgb.safetensors");
    check_batched_equals_alone("tests/fixtures/pixelrnn_wide.safetensors");
}

/* A NADE in another order and a VAE cannot complete; the call says so. */
static void test_core_unsupported(void **state) {
    const char *files[] = {"nade_ref.safetensors", "vae_mlp.safetensors"};
    for (int f = 0; f < 2; f++) {
        gm_model *m = load_model(files[f]);
        const gm_model_info *in = gm_model_get_info(m);
        assert_false(in->supports[GM_OP_COMPLETE]);
        float *x = calloc((size_t)in->dim, sizeof *x), *o = malloc(in->dim * sizeof *o);
        double lp, rest;
        gm_row *rows = seeded_rows(1, 1, 1.0f);
        assert_int_equal(gm_model_complete(m, 1, x, rows, o, &lp, &rest), -1);
        free(rows);
        free(x);
        free(o);
        gm_model_free(m);
    }
}

/* ---- over HTTP ---- */

/* The autoregressive models the daemon serves: name, image height, width. */
typedef struct {
    const char *name;
    int h, w;
} served;

static const served AR[] = {{"nade", 28, 28}, {"pc", 9, 7}, {"prnn", 7, 9}};
enum { N_AR = sizeof AR / sizeof AR[0], MAX_PIXELS = 28 * 28 };

static daemon_t d;

static int start(void **state) {
    const char *args[] = {"--model", "nade=" NADE,
                          "--model", "ordered=tests/fixtures/nade_ref.safetensors",
                          "--model", "vae=tests/fixtures/vae_mlp.safetensors",
                          "--model", "pc=tests/fixtures/pixelcnn_gated.safetensors",
                          "--model", "prnn=tests/fixtures/pixelrnn_small.safetensors",
                          "--max-n", "64",
                          NULL};
    d = daemon_start("complete", args);
    return 0;
}

static int stop(void **state) {
    assert_int_equal(daemon_stop(&d), 0);
    return 0;
}

static json_t *post_to(const served *m, const char *op, const char *body, int want) {
    char path[128];
    snprintf(path, sizeof path, "/v1/models/%s/%s", m->name, op);
    return http_json_expect(d.port, path, body, want);
}

/* The pixels of images[i].png of a reply (h * w floats). */
static void pixels_of(const served *m, json_t *reply, size_t i, float *out) {
    json_t *png = json_object_get(json_array_get(json_object_get(reply, "images"), i), "png");
    assert_true(json_is_string(png));
    size_t len;
    uint8_t *bytes = gm_base64_decode(json_string_value(png), json_string_length(png), &len);
    char err[GM_ERR_LEN];
    assert_int_equal(gm_png_decode(bytes, len, m->h, m->w, 1, out, err), GM_PNG_OK);
    free(bytes);
}

static double field(json_t *reply, const char *list, size_t i, const char *key) {
    json_t *v = json_object_get(json_array_get(json_object_get(reply, list), i), key);
    assert_true(json_is_number(v));
    return json_number_value(v);
}

/* /logp of the reply's images, each sent back as the PNG it came as. */
static json_t *scored(const served *m, json_t *reply) {
    json_t *images = json_array(), *img;
    size_t i;
    json_array_foreach(json_object_get(reply, "images"), i, img)
        json_array_append_new(images, json_pack("{s:O}", "png", json_object_get(img, "png")));
    json_t *req = json_pack("{s:o}", "images", images);
    char *body = json_dumps(req, 0);
    json_t *r = post_to(m, "logp", body, 200);
    free(body);
    json_decref(req);
    return r;
}

/* A sample of the model as a JSON image object {"png": ...}. */
static json_t *sampled(const served *m, uint64_t seed) {
    char body[128];
    snprintf(body, sizeof body, "{\"seed\": %llu, \"format\": \"json\"}", (unsigned long long)seed);
    json_t *r = post_to(m, "sample", body, 200), *img = json_array_get(json_object_get(r, "images"), 0);
    json_t *out = json_pack("{s:O}", "png", json_object_get(img, "png"));
    json_decref(r);
    return out;
}

static json_t *complete(const served *m, json_t *image, const char *params, int want) {
    char *img = json_dumps(image, 0), body[1 << 14];
    snprintf(body, sizeof body, "{\"images\": [%s], %s}", img, params);
    free(img);
    return post_to(m, "complete", body, want);
}

/* rows = a third of the height: every completion keeps those rows, and its
 * log p is what /logp says of the returned image. */
static void test_http_kept_and_logp(void **state) {
    for (int a = 0; a < N_AR; a++) {
        const served *m = &AR[a];
        int rows = m->h / 3, kept = rows * m->w, D = m->h * m->w;
        char params[96];
        snprintf(params, sizeof params, "\"rows\": %d, \"n\": 5, \"seed\": 3", rows);
        json_t *image = sampled(m, 7), *r = complete(m, image, params, 200), *s = scored(m, r);
        float given[MAX_PIXELS], got[MAX_PIXELS];
        json_t *fake = json_pack("{s:[O]}", "images", image);
        pixels_of(m, fake, 0, given);
        assert_int_equal(json_integer_value(json_object_get(r, "given")), kept);
        assert_int_equal(json_array_size(json_object_get(r, "images")), 5);
        int differ = 0;
        for (size_t i = 0; i < 5; i++) {
            pixels_of(m, r, i, got);
            assert_memory_equal(got, given, kept * sizeof *got);
            differ += memcmp(got + kept, given + kept, (D - kept) * sizeof *got) != 0;
            assert_true(fabs(field(r, "images", i, "logp") - field(s, "results", i, "logp")) <= 1e-4);
            assert_true(field(r, "images", i, "logp_completion") <= 0);
        }
        assert_true(differ > 0); /* the rest was drawn, not copied */
        json_decref(fake);
        json_decref(s);
        json_decref(r);
        json_decref(image);
    }
}

/* prefix = D keeps everything: n copies of the image, each with the
 * image's log p and a completion of log p 0. */
static void test_http_whole_prefix(void **state) {
    for (int a = 0; a < N_AR; a++) {
        const served *m = &AR[a];
        int D = m->h * m->w;
        char params[64];
        snprintf(params, sizeof params, "\"prefix\": %d, \"n\": 3", D);
        json_t *image = sampled(m, 8), *r = complete(m, image, params, 200);
        json_t *fake = json_pack("{s:[O]}", "images", image), *s = scored(m, fake);
        float given[MAX_PIXELS], got[MAX_PIXELS];
        pixels_of(m, fake, 0, given);
        for (size_t i = 0; i < 3; i++) {
            pixels_of(m, r, i, got);
            assert_memory_equal(got, given, D * sizeof *got);
            assert_true(fabs(field(r, "images", i, "logp") - field(s, "results", 0, "logp")) <= 1e-4);
            assert_true(field(r, "images", i, "logp_completion") == 0.0);
        }
        json_decref(s);
        json_decref(fake);
        json_decref(r);
        json_decref(image);
    }
}

/* prefix 0 is sample with the same seed (any image), and completing the
 * first rows of a sample with its seed gives the sample back. */
static void test_http_sample_identities(void **state) {
    for (int a = 0; a < N_AR; a++) {
        const served *m = &AR[a];
        int D = m->h * m->w;
        json_t *samples = post_to(m, "sample", "{\"seed\": 11, \"n\": 4, \"temperature\": 0.8}", 200);
        json_t *other = sampled(m, 99),
               *zero = complete(m, other, "\"prefix\": 0, \"n\": 4, \"seed\": 11, \"temperature\": 0.8", 200);
        float x[MAX_PIXELS], y[MAX_PIXELS];
        for (size_t i = 0; i < 4; i++) {
            pixels_of(m, samples, i, x);
            pixels_of(m, zero, i, y);
            assert_memory_equal(x, y, D * sizeof *x);
            assert_true(field(samples, "images", i, "logp") == field(zero, "images", i, "logp"));
        }
        json_t *first =
            json_pack("{s:O}", "png", json_object_get(json_array_get(json_object_get(samples, "images"), 0), "png"));
        char params[96];
        snprintf(params, sizeof params, "\"rows\": %d, \"seed\": 11, \"temperature\": 0.8", m->h / 2);
        json_t *back = complete(m, first, params, 200);
        pixels_of(m, samples, 0, x);
        pixels_of(m, back, 0, y);
        assert_memory_equal(x, y, D * sizeof *x);
        assert_true(field(samples, "images", 0, "logp") == field(back, "images", 0, "logp"));
        json_decref(back);
        json_decref(first);
        json_decref(zero);
        json_decref(other);
        json_decref(samples);
    }
}

/* The same seed gives the same completions: again, as row 0 of a larger n
 * (n = 1 alone), and while other requests run at the same time. */
typedef struct {
    json_t *image, *reply;
    uint64_t seed;
} job_t;

static void *run_job(void *arg) {
    job_t *j = arg;
    char params[96];
    snprintf(params, sizeof params, "\"rows\": 9, \"n\": 6, \"seed\": %llu", (unsigned long long)j->seed);
    j->reply = complete(&AR[0], j->image, params, 200);
    return NULL;
}

static void test_http_same_seed_alone_and_batched(void **state) {
    const served *m = &AR[0];
    json_t *image = sampled(m, 21);
    json_t *alone = complete(m, image, "\"rows\": 9, \"n\": 6, \"seed\": 500", 200);
    json_t *one = complete(m, image, "\"rows\": 9, \"n\": 1, \"seed\": 500", 200);
    float a[MAX_PIXELS], b[MAX_PIXELS];
    pixels_of(m, alone, 0, a);
    pixels_of(m, one, 0, b);
    assert_memory_equal(a, b, sizeof a);
    enum { T = 6 };
    job_t jobs[T];
    pthread_t th[T];
    for (int t = 0; t < T; t++) {
        jobs[t] = (job_t){image, NULL, 500 + (uint64_t)t};
        pthread_create(&th[t], NULL, run_job, &jobs[t]);
    }
    for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
    for (size_t i = 0; i < 6; i++) {
        pixels_of(m, alone, i, a);
        pixels_of(m, jobs[0].reply, i, b);
        assert_memory_equal(a, b, sizeof a);
        assert_true(field(alone, "images", i, "logp") == field(jobs[0].reply, "images", i, "logp"));
    }
    for (int t = 0; t < T; t++) json_decref(jobs[t].reply);
    json_decref(one);
    json_decref(alone);
    json_decref(image);
}

/* An image/png body works as for logp; the reply is one PNG grid. */
static void test_http_png_in_and_out(void **state) {
    reply_t s = http_get(d.port, "/v1/models/nade/sample?seed=4");
    assert_int_equal(s.status, 200);
    reply_t r = http(d.port, "POST", "/v1/models/nade/complete?rows=14&n=4&seed=4&format=png",
                     "Content-Type: image/png\r\n", s.body, s.len);
    assert_int_equal(r.status, 200);
    assert_true(strstr(r.head, "image/png") != NULL);
    float grid[59 * 59]; /* 2x2 cells of 28 with a one-pixel gutter */
    char err[GM_ERR_LEN];
    assert_int_equal(gm_png_decode(r.body, r.len, 57, 57, 1, grid, err), GM_PNG_OK);
    reply_free(&r);
    reply_free(&s);
}

static void test_http_errors(void **state) {
    const char *img = "{\"images\": [{\"pixels\": [0]}]"; /* never read: the error comes first */
    char body[4096];
    snprintf(body, sizeof body, "%s, \"rows\": 3, \"prefix\": 5}", img);
    assert_post_error(d.port, "/v1/models/nade/complete", body, 400, "both");
    snprintf(body, sizeof body, "%s}", img);
    assert_post_error(d.port, "/v1/models/nade/complete", body, 400, "neither");
    snprintf(body, sizeof body, "%s, \"rows\": 29}", img);
    assert_post_error(d.port, "/v1/models/nade/complete", body, 422, "0 to 28");
    snprintf(body, sizeof body, "%s, \"prefix\": 785}", img);
    assert_post_error(d.port, "/v1/models/nade/complete", body, 422, "0 to 784");
    snprintf(body, sizeof body, "%s, \"prefix\": -1}", img);
    assert_post_error(d.port, "/v1/models/nade/complete", body, 422, "0 to 784");
    snprintf(body, sizeof body, "%s, \"rows\": \"two\"}", img);
    assert_post_error(d.port, "/v1/models/nade/complete", body, 400, "not an integer");
    snprintf(body, sizeof body, "%s, \"rows\": 2, \"n\": 65}", img);
    assert_post_error(d.port, "/v1/models/nade/complete", body, 422, "max_n");
    snprintf(body, sizeof body, "%s, \"rows\": 2, \"k\": 5}", img);
    assert_post_error(d.port, "/v1/models/nade/complete", body, 400, "rows, prefix");
    snprintf(body, sizeof body, "%s, \"rows\": 2, \"label\": 1}", img);
    assert_post_error(d.port, "/v1/models/nade/complete", body, 422, "not class-conditional");
    snprintf(body, sizeof body, "%s, \"rows\": 2}", img);
    assert_post_error(d.port, "/v1/models/vae/complete", body, 422, "autoregressive");
    assert_post_error(d.port, "/v1/models/ordered/complete", body, 422, "ordering");
    assert_post_error(d.port, "/v1/models/nade/complete", body, 422, "784"); /* one pixel, not 784 */
    assert_post_error(d.port, "/v1/models/nade/complete",
                      "{\"rows\": 2, \"images\": [{\"pixels\": []}, {\"pixels\": []}]}", 422, "exactly one image");
}

/* /v1/models lists complete for the NADE in raster order, the PixelCNN and the PixelRNN only; OPTIONS
 * offers POST. */
static void test_http_listed(void **state) {
    reply_t r = http_get(d.port, "/v1/models");
    json_t *j = json_loadb((const char *)r.body, r.len, 0, NULL), *m;
    size_t i;
    json_array_foreach(json_object_get(j, "models"), i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        bool listed = false;
        json_t *op;
        size_t k;
        json_array_foreach(json_object_get(m, "operations"), k, op) listed |=
            !strcmp(json_string_value(op), "complete");
        assert_int_equal(listed, !strcmp(name, "nade") || !strcmp(name, "pc") || !strcmp(name, "prnn"));
        if (listed) assert_non_null(json_object_get(json_object_get(m, "parameters"), "complete"));
    }
    json_decref(j);
    reply_free(&r);
    r = http(d.port, "OPTIONS", "/v1/models/nade/complete", NULL, NULL, 0);
    char allow[64];
    assert_int_equal(r.status, 204);
    assert_true(reply_header(&r, "Allow", allow, sizeof allow));
    assert_string_equal(allow, "POST, OPTIONS");
    reply_free(&r);
}

int main(void) {
    const struct CMUnitTest core[] = {
        cmocka_unit_test(test_core_kept_logp_and_marginal),
        cmocka_unit_test(test_core_completing_a_sample_gives_it_back),
        cmocka_unit_test(test_core_batched_equals_alone),
        cmocka_unit_test(test_core_unsupported),
    };
    const struct CMUnitTest http_tests[] = {
        cmocka_unit_test(test_http_kept_and_logp),
        cmocka_unit_test(test_http_whole_prefix),
        cmocka_unit_test(test_http_sample_identities),
        cmocka_unit_test(test_http_same_seed_alone_and_batched),
        cmocka_unit_test(test_http_png_in_and_out),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_http_listed),
    };
    int failed = cmocka_run_group_tests_name("complete core", core, NULL, NULL);
    return failed | cmocka_run_group_tests_name("complete http", http_tests, start, stop);
}
