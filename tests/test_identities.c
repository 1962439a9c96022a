/*
 * test_identities.c - mathematical truths the models must satisfy,
 * independent of any reference implementation.
 *
 * - A NADE's probabilities over all 2^D binary images sum to 1.
 * - NADE samples occur with the frequencies its probabilities give
 *   (chi-square), and each sample's returned log p is its exact log p.
 * - The VAE importance-sampled estimate rises with K and approaches a float64
 *   K = 5000 estimate computed independently in PyTorch.
 */
#include "gm/model.h"
#include "testutil.h"

/* All 2^D images of a tiny model, bit i of s = pixel i. */
static float *all_states(int D) {
    float *x = calloc(((size_t)1 << D) * D, sizeof *x);
    for (int s = 0; s < (1 << D); s++)
        for (int i = 0; i < D; i++) x[(size_t)s * D + i] = (float)((s >> i) & 1);
    return x;
}

static double *all_logp(gm_model *m, int D) {
    int S = 1 << D;
    float *x = all_states(D);
    gm_logp_result *r = malloc(S * sizeof *r);
    assert_int_equal(gm_model_logp(m, S, x, 1, NULL, r), 0);
    double *lp = malloc(S * sizeof *lp);
    for (int s = 0; s < S; s++) lp[s] = r[s].logp;
    free(x);
    free(r);
    return lp;
}

static void check_sums_to_one(const char *file) {
    gm_model *m = load_model(file);
    int D = gm_model_get_info(m)->dim;
    double *lp = all_logp(m, D), total = 0;
    for (int s = 0; s < (1 << D); s++) total += exp(lp[s]);
    if (fabs(total - 1.0) > 1e-5) {
        print_error("%s: probabilities of all %d images sum to %.9f, not 1\n", file, 1 << D, total);
        fail();
    }
    free(lp);
    gm_model_free(m);
}

static void test_nade_probabilities_sum_to_one(void **state) {
    check_sums_to_one("nade_tiny.safetensors");      /* sigmoid, D = 10 */
    check_sums_to_one("nade_tiny_relu.safetensors"); /* relu, permuted ordering, D = 9 */
}

static void test_nade_sampling_frequencies(void **state) {
    gm_model *m = load_model("nade_tiny_relu.safetensors");
    int D = gm_model_get_info(m)->dim, S = 1 << D, N = 40000;
    double *lp = all_logp(m, D);
    gm_row *rows = seeded_rows(N, 42, 1.0f);
    float *px = malloc((size_t)N * D * sizeof *px);
    double *slp = malloc(N * sizeof *slp);
    assert_int_equal(gm_model_sample(m, N, rows, px, slp), 0);
    long *count = calloc(S, sizeof *count);
    for (int r = 0; r < N; r++) {
        int s = 0;
        for (int i = 0; i < D; i++) s |= (px[(size_t)r * D + i] != 0) << i;
        count[s]++;
        if (fabs(slp[r] - lp[s]) > 1e-9) { /* same arithmetic: exact */
            print_error("sample %d: returned log p %.12f but the image's log p is %.12f\n", r, slp[r], lp[s]);
            fail();
        }
    }
    /* Pearson chi-square, pooling cells with expected count < 5 into one */
    double chi = 0, pool_obs = 0, pool_exp = 0;
    int cells = 0;
    for (int s = 0; s < S; s++) {
        double e = N * exp(lp[s]);
        if (e < 5) {
            pool_obs += count[s];
            pool_exp += e;
            continue;
        }
        chi += (count[s] - e) * (count[s] - e) / e;
        cells++;
    }
    if (pool_exp > 0) {
        chi += (pool_obs - pool_exp) * (pool_obs - pool_exp) / pool_exp;
        cells++;
    }
    int dof = cells - 1;
    /* mean dof, sd sqrt(2 dof): 6 sd above the mean has p < 1e-6 */
    double limit = dof + 6 * sqrt(2.0 * dof);
    print_message("chi-square %.1f with %d degrees of freedom (limit %.1f)\n", chi, dof, limit);
    assert_true(chi < limit);
    free(lp);
    free(rows);
    free(px);
    free(slp);
    free(count);
    gm_model_free(m);
}

/* Temperature -> 0 makes NADE sampling greedy; very high temperature makes
 * pixels fair coins. */
static void test_nade_temperature(void **state) {
    gm_model *m = load_model("nade_tiny.safetensors");
    int D = gm_model_get_info(m)->dim, N = 4000;
    gm_row *rows = seeded_rows(N, 7, 1000.0f);
    float *px = malloc((size_t)N * D * sizeof *px);
    assert_int_equal(gm_model_sample(m, N, rows, px, NULL), 0);
    double ones = 0;
    for (size_t i = 0; i < (size_t)N * D; i++) ones += px[i];
    assert_true(fabs(ones / ((double)N * D) - 0.5) < 0.02);
    for (int r = 0; r < N; r++) {
        rows[r].temperature = 1e-4f;
        gm_rng_seed(&rows[r].rng, 7, (uint64_t)r);
    }
    assert_int_equal(gm_model_sample(m, N, rows, px, NULL), 0);
    for (int r = 1; r < N; r++) assert_memory_equal(px, px + (size_t)r * D, D * sizeof *px);
    free(rows);
    free(px);
    gm_model_free(m);
}

static double mean_logp(gm_model *m, const float *x, int B, int K, uint64_t seed, double *se) {
    gm_row *rows = seeded_rows(B, seed, 1.0f);
    gm_logp_result *res = malloc(B * sizeof *res);
    assert_int_equal(gm_model_logp(m, B, x, K, rows, res), 0);
    double mean = 0, var = 0;
    for (int r = 0; r < B; r++) {
        mean += res[r].logp / B;
        if (se && K > 1) var += res[r].se * res[r].se / ((double)B * B);
    }
    if (se) *se = sqrt(var);
    free(rows);
    free(res);
    return mean;
}

static void test_vae_estimate_rises_with_k(void **state) {
    gm_model *m = load_model("vae_mlp.safetensors");
    gm_st *ref = load_ref("vae_mlp.ref.safetensors");
    const gm_tensor *x = gm_st_tensor(ref, "x");
    int B = (int)x->shape[0];
    size_t n;
    double *want = ref_doubles(ref, "logp", &n), *want_se = ref_doubles(ref, "logp_se", &n);
    double ref_mean = 0, ref_var = 0;
    for (int r = 0; r < B; r++) {
        ref_mean += want[r] / B;
        ref_var += want_se[r] * want_se[r] / ((double)B * B);
    }
    /* small K are averaged over 20 seeds, so that the comparison is about
     * the estimator's expectation, which rises with K */
    const int ks[] = {1, 10, 100, 5000}, reps[] = {20, 20, 20, 1};
    double est[4] = {0}, se5000 = 0;
    for (int i = 0; i < 4; i++) {
        for (int s = 0; s < reps[i]; s++)
            est[i] += mean_logp(m, x->f32, B, ks[i], 100 + s, ks[i] == 5000 ? &se5000 : NULL) / reps[i];
        print_message("K = %4d: mean log p %.4f\n", ks[i], est[i]);
    }
    print_message("PyTorch float64 K = 5000: %.4f (se %.4f); ours se %.4f\n", ref_mean, sqrt(ref_var), se5000);
    assert_true(est[0] < est[1] && est[1] < est[2]);
    assert_true(est[2] < est[3] + 4 * se5000);
    /* two independent K = 5000 estimates agree within their joint noise */
    double tol = 4 * sqrt(ref_var + se5000 * se5000) + 1e-3;
    if (fabs(est[3] - ref_mean) > tol) {
        print_error("K = 5000 mean %.4f vs PyTorch %.4f differ by more than %.4f\n", est[3], ref_mean, tol);
        fail();
    }
    free(want);
    free(want_se);
    gm_st_free(ref);
    gm_model_free(m);
}

/* The ELBO reported next to the estimate is a lower bound of it and matches
 * PyTorch's float64 ELBO (reconstruction term estimated, KL analytic). */
static void test_vae_elbo(void **state) {
    gm_model *m = load_model("vae_mlp.safetensors");
    gm_st *ref = load_ref("vae_mlp.ref.safetensors");
    const gm_tensor *x = gm_st_tensor(ref, "x");
    int B = (int)x->shape[0];
    size_t n;
    double *elbo = ref_doubles(ref, "elbo", &n);
    gm_row *rows = seeded_rows(B, 5, 1.0f);
    gm_logp_result *res = malloc(B * sizeof *res);
    assert_int_equal(gm_model_logp(m, B, x->f32, 5000, rows, res), 0);
    for (int r = 0; r < B; r++) {
        assert_true(res[r].elbo <= res[r].logp);
        /* a 5000-sample mean: agree within 1% of the magnitude */
        if (fabs(res[r].elbo - elbo[r]) > 0.01 * fabs(elbo[r])) {
            print_error("image %d: ELBO %.4f, PyTorch %.4f\n", r, res[r].elbo, elbo[r]);
            fail();
        }
    }
    free(elbo);
    free(rows);
    free(res);
    gm_st_free(ref);
    gm_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nade_probabilities_sum_to_one),
        cmocka_unit_test(test_nade_sampling_frequencies),
        cmocka_unit_test(test_nade_temperature),
        cmocka_unit_test(test_vae_estimate_rises_with_k),
        cmocka_unit_test(test_vae_elbo),
    };
    return cmocka_run_group_tests_name("identities", tests, NULL, NULL);
}
