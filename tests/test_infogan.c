/*
 * test_infogan.c - InfoGAN's categorical code and Q network against PyTorch.
 *
 * The fixture infogan_tiny (tests/make_fixtures.py, through
 * gmexport.save_gan) is a generator forward(z, cat, code) with 4
 * categories and 2 continuous codes, and a Q network (image -> 4 logits,
 * then 2 codes), on random weights. Its reference file holds PyTorch's
 * images for given z, one-hot categories and codes, its images with the
 * categorical prior's mean (1/4 each) and Q's outputs for random images.
 * Then: sample's categories are uniform, drawn apart from z, and a row's
 * sample does not depend on its batch; files that get the code wrong are
 * refused at load; over HTTP, decode and encode match PyTorch, sample
 * matches the library's rows, and cat is refused where it does not apply.
 */
#include "gm/model.h"
#include "testutil.h"

#include "daemon.h"

#define TOL 1e-4
enum { K = 4, L = 2 };

static void test_parity_with_pytorch(void **state) {
    gm_model *m = load_model("infogan_tiny.safetensors");
    gm_st *ref = load_ref("infogan_tiny.ref.safetensors");
    const gm_model_info *in = gm_model_get_info(m);
    assert_int_equal(in->cat_dim, K);
    assert_int_equal(in->code_dim, L);
    assert_int_equal(in->encode_dim, K + L);
    assert_true(in->supports[GM_OP_ENCODE]);
    int n = (int)gm_st_tensor(ref, "z")->shape[0], D = in->dim, cats[8];
    const gm_tensor *ct = gm_st_tensor(ref, "cats");
    for (int r = 0; r < n; r++) cats[r] = (int)ct->i64[r];
    float *px = malloc((size_t)n * D * sizeof *px), *q = malloc((size_t)n * (K + L) * sizeof *q);
    assert_int_equal(gm_model_decode_codes(m, n, ref_f32(ref, "z"), NULL, ref_f32(ref, "codes"), cats, px), 0);
    assert_close_f("decode with categories", px, ref_f32(ref, "pixels"), (size_t)n * D, TOL);
    assert_int_equal(gm_model_decode_codes(m, n, ref_f32(ref, "z"), NULL, ref_f32(ref, "codes"), NULL, px), 0);
    assert_close_f("decode with the prior's mean", px, ref_f32(ref, "prior_pixels"), (size_t)n * D, TOL);
    assert_int_equal(gm_model_encode(m, n, ref_f32(ref, "x"), q, NULL), 0);
    assert_close_f("Q network", q, ref_f32(ref, "q"), (size_t)n * (K + L), TOL);
    free(px);
    free(q);
    gm_st_free(ref);
    gm_model_free(m);
}

/* A drawn category is one of the K: the drawn sample equals the sample with
 * that category given (z and codes are the same either way), and over many
 * seeds each category comes up about equally often. */
static void test_drawn_categories(void **state) {
    enum { SEEDS = 2000 };
    gm_model *m = load_model("infogan_tiny.safetensors");
    int D = gm_model_get_info(m)->dim, count[K] = {0};
    float *drawn = malloc((size_t)D * sizeof *drawn), *given = malloc((size_t)K * D * sizeof *given);
    for (int s = 0; s < SEEDS; s++) {
        gm_row *rows = seeded_rows(1, (uint64_t)s, 1.0f);
        assert_int_equal(gm_model_sample(m, 1, rows, drawn, NULL), 0);
        free(rows);
        int match = -1;
        for (int c = 0; c < K; c++) {
            rows = seeded_rows(1, (uint64_t)s, 1.0f);
            rows[0].cat_given = true;
            rows[0].cat = c;
            assert_int_equal(gm_model_sample(m, 1, rows, given + (size_t)c * D, NULL), 0);
            free(rows);
            if (!memcmp(drawn, given + (size_t)c * D, (size_t)D * sizeof *drawn)) match = c;
        }
        assert_true(match >= 0);
        count[match]++;
        if (s < 8) /* the category matters: two categories give two images */
            assert_true(memcmp(given, given + D, (size_t)D * sizeof *given) != 0);
    }
    for (int c = 0; c < K; c++) /* 500 expected; 5 standard deviations is about 97 */
        assert_true(count[c] > 400 && count[c] < 600);
    free(drawn);
    free(given);
    gm_model_free(m);
}

/* Row AT of a batch of B (its own stream among others) equals it alone,
 * with categories drawn and with a category given. */
static void test_alone_vs_batched(void **state) {
    enum { B = 21, AT = 13 };
    gm_model *m = load_model("infogan_tiny.safetensors");
    int D = gm_model_get_info(m)->dim;
    float *pb = malloc((size_t)B * D * sizeof *pb), *p1 = malloc((size_t)D * sizeof *p1);
    for (int given = 0; given < 2; given++) {
        gm_row *batch = seeded_rows(B, 99, 0.8f), *alone = seeded_rows(1, 99, 0.8f);
        gm_rng_seed(&alone[0].rng, 99, AT);
        for (int r = 0; r < B && given; r++)
            batch[r] = (gm_row){.rng = batch[r].rng, .temperature = 0.8f, .label = -1, .cat_given = true, .cat = r % K};
        alone[0].cat_given = given;
        alone[0].cat = AT % K;
        assert_int_equal(gm_model_sample(m, B, batch, pb, NULL), 0);
        assert_int_equal(gm_model_sample(m, 1, alone, p1, NULL), 0);
        assert_close_f("alone vs batched", p1, pb + (size_t)AT * D, D, 1e-5);
        free(batch);
        free(alone);
    }
    free(pb);
    free(p1);
    gm_model_free(m);
}

/* The fixture's bytes with its metadata text `from` replaced by `to` (same
 * length, so offsets stay), written to a temporary file: its load error. */
static void load_error(const char *from, const char *to, char err[GM_ERR_LEN]) {
    FILE *f = fopen(fixture("infogan_tiny.safetensors"), "rb");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_int_equal(strlen(from), strlen(to));
    char *at = memmem(buf, len, from, strlen(from));
    assert_non_null(at);
    memcpy(at, to, strlen(to));
    char path[TEMP_PATH_LEN];
    temp_file(path, "infogan", buf, len);
    gm_model *m = gm_model_load(path, err);
    unlink(path);
    assert_null(m);
}

static void test_refusals(void **state) {
    char err[GM_ERR_LEN];
    load_error("\"gm.cat_dim\":\"4\"", "\"gm.cat_dim\":\"0\"", err);
    assert_non_null(strstr(err, "gm.cat_dim"));
    load_error("\"gm.cat_dim\":\"4\"", "\"gm.cat_dim\":\"5\"", err); /* the generator's weights take 4 */
    assert_non_null(strstr(err, "generator"));
    /* Q's LeakyReLU slope changed: its PyTorch probe no longer matches */
    load_error("0.2},{\\\"op\\\":\\\"linear\\\",\\\"weight\\\":\\\"q_network.6",
               "0.3},{\\\"op\\\":\\\"linear\\\",\\\"weight\\\":\\\"q_network.6", err);
    assert_non_null(strstr(err, "q_network"));
}

/* ---- over HTTP ---- */

/* A format=pixels reply's images as floats: (n, D); returns n. */
static int reply_pixels(const reply_t *r, float *px, int D, int max) {
    assert_int_equal(r->status, 200);
    json_t *j = body_json(r), *images = json_object_get(j, "images");
    int n = (int)json_array_size(images);
    assert_true(n >= 1 && n <= max);
    for (int i = 0; i < n; i++) {
        json_t *v = json_object_get(json_array_get(images, (size_t)i), "pixels");
        assert_int_equal(json_array_size(v), D);
        for (int k = 0; k < D; k++) px[i * D + k] = (float)json_number_value(json_array_get(v, (size_t)k));
    }
    json_decref(j);
    return n;
}

/* "[a,b,...]" of n floats (or ints) into out. */
static void json_list(char *out, size_t cap, const float *v, const int *iv, int n) {
    size_t o = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < n; i++)
        o += iv ? (size_t)snprintf(out + o, cap - o, "%s%d", i ? "," : "", iv[i])
                : (size_t)snprintf(out + o, cap - o, "%s%.9g", i ? "," : "", v[i]);
    snprintf(out + o, cap - o, "]");
}

static void test_http(void **state) {
    const char *args[] = {"--model", "info=tests/fixtures/infogan_tiny.safetensors", "--model",
                          "plain=tests/fixtures/gan_cond.safetensors", NULL};
    daemon_t d = daemon_start("infogan", args);
    int p = d.port;
    gm_model *m = load_model("infogan_tiny.safetensors");
    gm_st *ref = load_ref("infogan_tiny.ref.safetensors");
    int n = (int)gm_st_tensor(ref, "z")->shape[0], D = gm_model_get_info(m)->dim, cats[8];
    for (int r = 0; r < n; r++) cats[r] = (int)gm_st_tensor(ref, "cats")->i64[r];

    /* /v1/models: cat_dim, and cat among sample's and decode's parameters (the table's) */
    reply_t r = http_get(p, "/v1/models/info");
    json_t *j = body_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "cat_dim")), K);
    for (int op = 0; op < 2; op++) {
        json_t *names = json_object_get(json_object_get(j, "parameters"), op ? "decode" : "sample");
        bool found = false;
        for (size_t i = 0; i < json_array_size(names); i++)
            found |= !strcmp(json_string_value(json_array_get(names, i)), "cat");
        assert_true(found);
    }
    json_decref(j);
    reply_free(&r);

    /* decode: categories and codes per latent, against PyTorch */
    size_t cap = 4096;
    char *body = malloc(cap), lat[1024], code[512], cat[64], one[128];
    size_t o = (size_t)snprintf(lat, sizeof lat, "[");
    for (int i = 0; i < n; i++) {
        json_list(one, sizeof one, ref_f32(ref, "z") + i * 3, NULL, 3);
        o += (size_t)snprintf(lat + o, sizeof lat - o, "%s%s", i ? "," : "", one);
    }
    snprintf(lat + o, sizeof lat - o, "]");
    o = (size_t)snprintf(code, sizeof code, "[");
    for (int i = 0; i < n; i++) {
        json_list(one, sizeof one, ref_f32(ref, "codes") + i * L, NULL, L);
        o += (size_t)snprintf(code + o, sizeof code - o, "%s%s", i ? "," : "", one);
    }
    snprintf(code + o, sizeof code - o, "]");
    json_list(cat, sizeof cat, NULL, cats, n);
    float *px = malloc((size_t)n * D * sizeof *px), *want = malloc((size_t)n * D * sizeof *want);
    snprintf(body, cap, "{\"latents\":%s,\"code\":%s,\"cat\":%s,\"format\":\"pixels\"}", lat, code, cat);
    r = http_json(p, "/v1/models/info/decode", body);
    assert_int_equal(reply_pixels(&r, px, D, n), n);
    reply_free(&r);
    assert_close_f("HTTP decode", px, ref_f32(ref, "pixels"), (size_t)n * D, TOL);

    /* encode: Q's softmax, argmax and codes */
    o = (size_t)snprintf(body, cap, "{\"images\":[");
    for (int i = 0; i < n; i++) {
        char *img = malloc(2048);
        json_list(img, 2048, ref_f32(ref, "x") + i * D, NULL, D);
        body = realloc(body, cap += 2048);
        o += (size_t)snprintf(body + o, cap - o, "%s{\"pixels\":%s}", i ? "," : "", img);
        free(img);
    }
    snprintf(body + o, cap - o, "]}");
    r = http_json(p, "/v1/models/info/encode", body);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    const float *q = ref_f32(ref, "q");
    for (int i = 0; i < n; i++) {
        json_t *res = json_array_get(json_object_get(j, "results"), (size_t)i);
        const float *qi = q + i * (K + L);
        double mx = qi[0], sum = 0;
        int best = 0;
        for (int k = 1; k < K; k++)
            if (qi[k] > mx) mx = qi[best = k];
        for (int k = 0; k < K; k++) sum += exp(qi[k] - mx);
        assert_int_equal(json_integer_value(json_object_get(res, "cat")), best);
        for (int k = 0; k < K; k++) {
            double got = json_number_value(json_array_get(json_object_get(res, "cat_probabilities"), (size_t)k));
            assert_true(fabs(got - exp(qi[k] - mx) / sum) <= TOL);
        }
        for (int k = 0; k < L; k++)
            assert_true(fabs(json_number_value(json_array_get(json_object_get(res, "code"), (size_t)k)) - qi[K + k]) <=
                        TOL * fmax(1.0, fabs(qi[K + k])));
    }
    json_decref(j);
    reply_free(&r);

    /* sample: the library's rows for the request's seed, with cat given and drawn */
    enum { NS = 3 };
    float lib[NS * 64], got[NS * 64];
    for (int given = 0; given < 2; given++) {
        gm_row *rows = seeded_rows(NS, 5, 1.0f);
        for (int i = 0; i < NS; i++) rows[i].cat_given = given, rows[i].cat = 2;
        assert_int_equal(gm_model_sample(m, NS, rows, lib, NULL), 0);
        free(rows);
        r = http_json(p, "/v1/models/info/sample",
                      given ? "{\"n\":3,\"seed\":5,\"cat\":2,\"format\":\"pixels\"}"
                            : "{\"n\":3,\"seed\":5,\"format\":\"pixels\"}");
        assert_int_equal(reply_pixels(&r, got, D, NS), NS);
        reply_free(&r);
        assert_close_f(given ? "HTTP sample, cat given" : "HTTP sample, cat drawn", got, lib, (size_t)NS * D, 1e-6);
    }
    r = http_get(p, "/v1/models/info/sample?n=3&seed=5&cat=2&format=pixels"); /* a GET takes it as text */
    assert_int_equal(reply_pixels(&r, got, D, NS), NS);
    reply_free(&r);

    /* refusals */
    assert_post_error(p, "/v1/models/plain/sample", "{\"cat\":1,\"label\":0}", 422, "no categorical code");
    assert_post_error(p, "/v1/models/info/sample", "{\"cat\":4}", 422, "out of range");
    assert_post_error(p, "/v1/models/info/sample", "{\"cat\":-1}", 422, "out of range");
    assert_post_error(p, "/v1/models/info/sample", "{\"cat\":\"two\"}", 400, "integer");
    snprintf(body, cap, "{\"latents\":%s,\"code\":%s}", lat, code);
    assert_post_error(p, "/v1/models/info/decode", body, 422, "cat is required");
    snprintf(body, cap, "{\"latents\":%s,\"code\":%s,\"cat\":[1,2]}", lat, code);
    assert_post_error(p, "/v1/models/info/decode", body, 422, "cat has 2 entries");
    snprintf(body, cap, "{\"latents\":%s,\"code\":%s,\"cat\":[0,1,2,3,9]}", lat, code);
    assert_post_error(p, "/v1/models/info/decode", body, 422, "cat[4] = 9 is out of range");
    free(body);
    free(px);
    free(want);
    gm_st_free(ref);
    gm_model_free(m);
    assert_int_equal(daemon_stop(&d), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_with_pytorch),
        cmocka_unit_test(test_drawn_categories),
        cmocka_unit_test(test_alone_vs_batched),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_http),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
