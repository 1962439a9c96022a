/*
 * test_pixelcnn.c - the pixelcnn family (tests/pixelcnn_fixtures.py):
 * log p against PyTorch in float64 for networks written in five styles (and
 * the dilated one of the bundled model) and a conditional one, probabilities summing to 1 over every image
 * of a tiny model, the cached sampler against the naive loop bit for bit, a sample's
 * log p against its score, and refusal of a non-causal network.
 */
#include "gm/model.h"
#include "gm/pixelcnn.h"
#include "testutil.h"

static void test_logp_matches_float64(void **state) {
    check_logp_against_ref("pixelcnn_gated.safetensors", "pixelcnn_gated.ref.safetensors");
    check_logp_against_ref("pixelcnn_plain.safetensors", "pixelcnn_plain.ref.safetensors");
    check_logp_against_ref("pixelcnn_shifted.safetensors", "pixelcnn_shifted.ref.safetensors");
    check_logp_against_ref("pixelcnn_gated_cond.safetensors", "pixelcnn_gated_cond.ref.safetensors");
    check_logp_against_ref("pixelcnn_tiny.safetensors", "pixelcnn_tiny.ref.safetensors");
    check_logp_against_ref("pixelcnn_rgb.safetensors", "pixelcnn_rgb.ref.safetensors"); /* 3 channels */
    check_logp_against_ref("pixelcnn_dilated.safetensors", "pixelcnn_dilated.ref.safetensors");
    check_logp_against_ref("pixelcnn_datamasked.safetensors", "pixelcnn_datamasked.ref.safetensors");
    check_logp_against_ref("pixelcnn_pp.safetensors", "pixelcnn_pp.ref.safetensors");
    check_logp_against_ref("pixelcnn_wide.safetensors", "pixelcnn_wide.ref.safetensors");
}

/* A 2x3 model: p over all 64 binary images sums to 1. */
static void test_probabilities_sum_to_one(void **state) {
    check_probabilities_sum_to_one("pixelcnn_tiny.safetensors", 6);
}

/* Cached and naive sampling draw the same pixels and log p, bit for bit,
 * and each sample's log p is its score. */
static void check_cached_is_naive(const char *file, int B, float temperature) {
    gm_model *m = load_model(file);
    const gm_model_info *info = gm_model_get_info(m);
    int D = info->dim;
    float *a = malloc((size_t)B * D * sizeof *a), *b = malloc((size_t)B * D * sizeof *b);
    double *la = malloc((size_t)B * sizeof *la), *lb = malloc((size_t)B * sizeof *lb);
    gm_row *ra = seeded_rows(B, 77, temperature), *rb = seeded_rows(B, 77, temperature);
    for (int r = 0; r < B && info->num_classes; r++) ra[r].label = rb[r].label = r % info->num_classes;
    assert_int_equal(gm_pixelcnn_sample_mode(m, B, ra, a, la, true), 0);
    assert_int_equal(gm_pixelcnn_sample_mode(m, B, rb, b, lb, false), 0);
    assert_memory_equal(a, b, (size_t)B * D * sizeof *a);
    assert_memory_equal(la, lb, (size_t)B * sizeof *la);
    double sum = 0;
    for (size_t i = 0; i < (size_t)B * D; i++) sum += a[i];
    assert_true(sum > 0 && sum < (double)B * D);                     /* not all one value */
    if (!info->num_classes) assert_logp_is_score(m, B, a, la, file); /* a conditional model's score: the mixture */
    /* the model's own sample op is the cached sampler */
    gm_row *rc = seeded_rows(B, 77, temperature);
    for (int r = 0; r < B && info->num_classes; r++) rc[r].label = r % info->num_classes;
    assert_int_equal(gm_model_sample(m, B, rc, b, NULL), 0);
    assert_memory_equal(a, b, (size_t)B * D * sizeof *a);
    free(a);
    free(b);
    free(la);
    free(lb);
    free(ra);
    free(rb);
    free(rc);
    gm_model_free(m);
}

static void test_cached_equals_naive(void **state) {
    check_cached_is_naive("pixelcnn_gated.safetensors", 3, 1.0f);
    check_cached_is_naive("pixelcnn_gated.safetensors", 2, 0.6f);
    check_cached_is_naive("pixelcnn_plain.safetensors", 3, 1.0f);
    check_cached_is_naive("pixelcnn_shifted.safetensors", 3, 1.0f); /* crops: views at an offset */
    check_cached_is_naive("pixelcnn_gated_cond.safetensors", 3, 1.0f);
    check_cached_is_naive("pixelcnn_tiny.safetensors", 4, 1.3f);
    check_cached_is_naive("pixelcnn_rgb.safetensors", 3, 1.0f);        /* each pixel's cone computed per channel */
    check_cached_is_naive("pixelcnn_dilated.safetensors", 3, 1.0f);    /* dilated taps, some past the frame */
    check_cached_is_naive("pixelcnn_datamasked.safetensors", 3, 1.0f); /* batch_norm, prelu */
    check_cached_is_naive("pixelcnn_pp.safetensors", 3, 1.0f);         /* concat_elu's -x: a batch_norm */
    check_cached_is_naive("pixelcnn_wide.safetensors", 3, 1.0f);       /* channels past the register blocks */
}

/* The cached sampler computes each op about once per position: far fewer
 * positions than the naive loop (H * W times as many). */
static void test_cached_computes_one_pass(void **state) {
    gm_model *m = load_model("pixelcnn_gated.safetensors");
    long long c = gm_pixelcnn_positions(m, true), n = gm_pixelcnn_positions(m, false);
    const gm_model_info *info = gm_model_get_info(m);
    assert_true(c > 0);
    assert_true(c <= n / (info->height * info->width));
    gm_model_free(m);
}

static void test_noncausal_refused(void **state) {
    char err[GM_ERR_LEN];
    gm_model *m = gm_model_load(fixture("pixelcnn_noncausal.safetensors"), err);
    assert_null(m);
    assert_non_null(strstr(err, "not causal"));
    assert_non_null(strstr(err, "pixel (row 0, column 0) depends on input pixel (row 0, column 0)"));
    /* channels of the same pixel: the positions are fine, the numeric check is not */
    assert_null(gm_model_load(fixture("pixelcnn_rgb_noncausal.safetensors"), err));
    assert_non_null(strstr(err, "not causal"));
    assert_non_null(strstr(err, "input pixel (row 0, column 0, channel 0) is flipped"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logp_matches_float64), cmocka_unit_test(test_probabilities_sum_to_one),
        cmocka_unit_test(test_cached_equals_naive),  cmocka_unit_test(test_cached_computes_one_pass),
        cmocka_unit_test(test_noncausal_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
