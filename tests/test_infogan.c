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
 * refused at load.
 */
#include "gm/model.h"
#include "testutil.h"

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
        for (int r = 0; r < B && given; r++) batch[r] = (gm_row){.rng = batch[r].rng, .temperature = 0.8f,
                                                                  .label = -1, .cat_given = true, .cat = r % K};
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
    char path[] = "/tmp/gm_test_infogan_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_with_pytorch),
        cmocka_unit_test(test_drawn_categories),
        cmocka_unit_test(test_alone_vs_batched),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
