/*
 * test_determinism.c - a row's result depends only on its own seed: the same
 * request computed alone or inside a batch of 64 others gives the same
 * output (bit for bit where no BLAS call sees the batch size; within float
 * rounding where sgemm's blocking changes with M). The batches run with 3
 * compute threads, so NADE's rows are split across threads (row 37 of 65
 * lands in the second range) while the lone row is not.
 */
#include "gm/model.h"
#include "testutil.h"

#define OTHERS 64

/* Rows 0..OTHERS with distinct seeds; the row under test is `at`, seed 99. */
static gm_row *make_rows(int B, int at, int num_classes) {
    gm_row *rows = malloc(B * sizeof *rows);
    for (int r = 0; r < B; r++) {
        rows[r] = (gm_row){.temperature = r == at ? 0.8f : 1.0f + r % 3,
                           .label = num_classes ? r % num_classes : -1,
                           .truncation = r == at ? 1.5f : 0.0f,
                           .sample_pixels = r % 2};
        gm_rng_seed(&rows[r].rng, r == at ? 99 : 1000 + r, 0);
    }
    return rows;
}

static void check_sample(const char *file, double tol) {
    gm_model *m = load_model(file);
    const gm_model_info *info = gm_model_get_info(m);
    int D = info->dim, B = OTHERS + 1, at = 37;
    gm_row *alone = make_rows(1, 0, info->num_classes), *batch = make_rows(B, at, info->num_classes);
    alone[0].label = batch[at].label;
    alone[0].sample_pixels = batch[at].sample_pixels;
    float *p1 = malloc(D * sizeof *p1), *pb = malloc((size_t)B * D * sizeof *pb);
    double lp1, *lpb = malloc(B * sizeof *lpb);
    int nade = info->family == GM_FAMILY_NADE;
    assert_int_equal(gm_model_sample(m, 1, alone, p1, nade ? &lp1 : NULL), 0);
    assert_int_equal(gm_model_sample(m, B, batch, pb, nade ? lpb : NULL), 0);
    if (tol == 0) {
        assert_memory_equal(p1, pb + (size_t)at * D, D * sizeof *p1);
        if (nade) assert_true(lp1 == lpb[at]);
    } else {
        assert_close_f(file, pb + (size_t)at * D, p1, D, tol);
    }
    free(alone);
    free(batch);
    free(p1);
    free(pb);
    free(lpb);
    gm_model_free(m);
}

static void test_sample_batch_invariant(void **state) {
    gm_set_compute_threads(3);
    check_sample("nade_ref.safetensors", 0);
    check_sample("vae_mlp.safetensors", 1e-5);
    check_sample("gan_cond.safetensors", 1e-5);
    gm_set_compute_threads(1);
}

static void test_logp_batch_invariant(void **state) {
    const char *files[] = {"nade_ref.safetensors", "vae_mlp.safetensors"};
    gm_set_compute_threads(3);
    for (int f = 0; f < 2; f++) {
        gm_model *m = load_model(files[f]);
        int D = gm_model_get_info(m)->dim, B = OTHERS + 1, at = 11;
        float *x = malloc((size_t)B * D * sizeof *x);
        gm_rng g;
        gm_rng_seed(&g, 3, 0);
        for (size_t i = 0; i < (size_t)B * D; i++) x[i] = (float)gm_rng_uniform(&g);
        gm_row *alone = make_rows(1, 0, 0), *batch = make_rows(B, at, 0);
        gm_logp_result r1, *rb = malloc(B * sizeof *rb);
        assert_int_equal(gm_model_logp(m, 1, x + (size_t)at * D, 16, alone, &r1), 0);
        assert_int_equal(gm_model_logp(m, B, x, 16, batch, rb), 0);
        if (fabs(r1.logp - rb[at].logp) > 1e-4 || (f == 0 && r1.logp != rb[at].logp)) {
            print_error("%s: alone %.8f, in a batch %.8f\n", files[f], r1.logp, rb[at].logp);
            fail();
        }
        free(x);
        free(alone);
        free(batch);
        free(rb);
        gm_model_free(m);
    }
    gm_set_compute_threads(1);
}

/* Row j of a request uses stream (seed, j): different seeds give different
 * images, the same seed the same ones. */
static void test_seeds_matter(void **state) {
    gm_model *m = load_model("gan_cond.safetensors");
    int D = gm_model_get_info(m)->dim;
    float a[256], b[256], c[256];
    gm_row r = {.temperature = 1.0f, .label = 1};
    gm_rng_seed(&r.rng, 1, 0);
    assert_int_equal(gm_model_sample(m, 1, &r, a, NULL), 0);
    gm_rng_seed(&r.rng, 2, 0);
    assert_int_equal(gm_model_sample(m, 1, &r, b, NULL), 0);
    gm_rng_seed(&r.rng, 1, 0);
    assert_int_equal(gm_model_sample(m, 1, &r, c, NULL), 0);
    assert_memory_not_equal(a, b, D * sizeof(float));
    assert_memory_equal(a, c, D * sizeof(float));
    gm_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_batch_invariant),
        cmocka_unit_test(test_logp_batch_invariant),
        cmocka_unit_test(test_seeds_matter),
    };
    return cmocka_run_group_tests_name("determinism", tests, NULL, NULL);
}
