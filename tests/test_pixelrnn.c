/*
 * test_pixelrnn.c - the pixelrnn family, the Row LSTM (tests/pixelrnn_fixtures.py):
 * log p against PyTorch in float64 for Row LSTMs of several shapes and a
 * conditional one, probabilities summing to 1 over all 512 images of a 3x3
 * model, a sample's log p against its score, a row sampled in a batch (over
 * several threads) against the row alone, and the refusal of every broken
 * copy of a valid file.
 */
#include "gm/model.h"
#include "testutil.h"

static void check_logp(const char *name) {
    char model_file[96], ref_file[96];
    snprintf(model_file, sizeof model_file, "%s.safetensors", name);
    snprintf(ref_file, sizeof ref_file, "%s.ref.safetensors", name);
    check_logp_against_ref(model_file, ref_file);
}

static void test_logp_matches_float64(void **state) {
    check_logp("pixelrnn_small"); /* 2 layers, kernels 3 */
    check_logp("pixelrnn_wide");  /* 3 layers, kernels 5, wider than the image's 11 columns / 2 */
    check_logp("pixelrnn_cond");  /* class-conditional: the mixture over 3 classes */
    check_logp("pixelrnn_one");   /* 1 layer, kernels 1: no pixel of the own row */
    check_logp("pixelrnn_tiny");
    check_logp("pixelrnn_big"); /* gates of 84, head of 70: the kernels' blocks and remainders */
}

/* A 3x3 model: p over all 512 binary images sums to 1. */
static void test_probabilities_sum_to_one(void **state) {
    check_probabilities_sum_to_one("pixelrnn_tiny.safetensors", 9);
}

/* Each sample's returned log p is its score (at temperature 1 whatever the
 * temperature it was drawn at), and the samples are not all one value. */
static void check_sample_logp(const char *file, int B, float temperature) {
    gm_model *m = load_model(file);
    int D = gm_model_get_info(m)->dim;
    float *a = malloc((size_t)B * D * sizeof *a);
    double *la = malloc((size_t)B * sizeof *la);
    gm_row *rows = seeded_rows(B, 77, temperature);
    assert_int_equal(gm_model_sample(m, B, rows, a, la), 0);
    double sum = 0;
    for (size_t i = 0; i < (size_t)B * D; i++) sum += a[i];
    assert_true(sum > 0 && sum < (double)B * D);
    assert_logp_is_score(m, B, a, la, file);
    free(a);
    free(la);
    free(rows);
    gm_model_free(m);
}

static void test_sample_logp_is_the_score(void **state) {
    check_sample_logp("pixelrnn_small.safetensors", 4, 1.0f);
    check_sample_logp("pixelrnn_small.safetensors", 3, 0.6f);
    check_sample_logp("pixelrnn_wide.safetensors", 3, 1.0f);
    check_sample_logp("pixelrnn_one.safetensors", 3, 1.3f);
    check_sample_logp("pixelrnn_big.safetensors", 5, 1.0f);
}

/* Rows sampled together (seeds, temperatures and labels of their own, over
 * 3 compute threads) equal each row sampled alone, bit for bit. */
static void check_batched_equals_alone(const char *file) {
    gm_model *m = load_model(file);
    const gm_model_info *in = gm_model_get_info(m);
    enum { B = 7 };
    int D = in->dim;
    float *all = malloc((size_t)B * D * sizeof *all), *one = malloc(D * sizeof *one);
    double lp[B], lp1;
    gm_row rows[B];
    for (int r = 0; r < B; r++) {
        rows[r] = (gm_row){.temperature = 0.5f + 0.25f * (r % 3), .label = in->num_classes ? r % in->num_classes : -1};
        gm_rng_seed(&rows[r].rng, 90 + r, (uint64_t)r);
    }
    gm_set_compute_threads(3);
    assert_int_equal(gm_model_sample(m, B, rows, all, lp), 0);
    gm_set_compute_threads(1);
    for (int r = 0; r < B; r++) {
        gm_row alone = {.temperature = 0.5f + 0.25f * (r % 3), .label = in->num_classes ? r % in->num_classes : -1};
        gm_rng_seed(&alone.rng, 90 + r, (uint64_t)r);
        assert_int_equal(gm_model_sample(m, 1, &alone, one, &lp1), 0);
        assert_memory_equal(one, all + (size_t)r * D, D * sizeof *one);
        assert_true(lp1 == lp[r]);
    }
    free(all);
    free(one);
    gm_model_free(m);
}

static void test_batched_equals_alone(void **state) {
    check_batched_equals_alone("pixelrnn_small.safetensors");
    check_batched_equals_alone("pixelrnn_cond.safetensors");
    check_batched_equals_alone("pixelrnn_big.safetensors"); /* four-row blocks in a batch, single rows alone */
}

/* Each broken copy of pixelrnn_small is refused with a message naming what. */
static void test_broken_files_refused(void **state) {
    static const struct {
        const char *file, *says;
    } BAD[] = {
        {"pixelrnn_bad_tap.safetensors", "is not causal: tap 1 (column offset +0) of gate 5"},
        {"pixelrnn_bad_field.safetensors", "unknown field \"gates\""},
        {"pixelrnn_bad_kernel.safetensors", "\"state_kernel\" must be an odd integer in 1..15"},
        {"pixelrnn_bad_json.safetensors", "\"gm.pixelrnn\" must be a JSON object"},
        {"pixelrnn_bad_missing.safetensors", "'layers.1.state_to_state.weight' [32, 8, 3] is missing"},
        {"pixelrnn_bad_shape.safetensors", "'out1.bias' must be a float tensor of shape [8]"},
        {"pixelrnn_bad_nan.safetensors", "'layers.1.input_to_state.bias' holds nan at flat index 3"},
        {"pixelrnn_bad_extra.safetensors", "tensor 'layers.2.input_to_state.bias' is not part of this pixelrnn"},
        {"pixelrnn_bad_probe.safetensors", "logit of pixel (row 2, column 3) is"},
        {"pixelrnn_bad_channels.safetensors", "binary images of one channel (found 3)"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        char err[GM_ERR_LEN] = "";
        gm_model *m = gm_model_load(fixture(BAD[i].file), err);
        if (m || !strstr(err, BAD[i].says)) {
            print_error("%s: %s; want a refusal saying \"%s\"\n", BAD[i].file, m ? "loaded" : err, BAD[i].says);
            gm_model_free(m);
            fail();
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logp_matches_float64),     cmocka_unit_test(test_probabilities_sum_to_one),
        cmocka_unit_test(test_sample_logp_is_the_score), cmocka_unit_test(test_batched_equals_alone),
        cmocka_unit_test(test_broken_files_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
