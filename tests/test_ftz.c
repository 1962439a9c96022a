/*
 * test_ftz.c - model calls run with flush-to-zero and denormals-are-zero
 * (server/core/vmath.h): the float64 and PyTorch references still hold
 * their tolerances, whatever mode the calling thread was in, and the
 * caller gets its own mode back.
 *
 * The second half builds a NADE whose hidden units sit far below the
 * sigmoid's subnormal threshold (pre-activations down to -120, where
 * sigmoid(a) = e^a < 2^-126), the case flushing changes, and checks its
 * log p, sampled log p and features against a float64 evaluation written
 * here, with no flushing anywhere. Last, the pool threads that split a
 * call's rows run in the caller's mode.
 */
#include <float.h>
#include <stdbool.h>
#include <xmmintrin.h>

#include "core/parallel.h"
#include "gm/model.h"
#include "testutil.h"

#define MXCSR_FLUSH 0x8040u /* FTZ (bit 15) | DAZ (bit 6) */

static void set_caller_mode(bool flush) { _mm_setcsr((_mm_getcsr() & ~MXCSR_FLUSH) | (flush ? MXCSR_FLUSH : 0)); }
static unsigned caller_mode(void) { return _mm_getcsr() & MXCSR_FLUSH; }

/* The NADE fixtures' log p against their float64 references (1e-4 nats,
 * the format's tolerance) and the GAN's pixels against PyTorch (1e-4 of
 * the output's scale), from a caller in mode `flush`; the caller's mode
 * must come back unchanged. */
static void check_references(bool flush) {
    const char *nades[] = {"nade_ref", "nade_tiny", "nade_tiny_relu"};
    for (int f = 0; f < 3; f++) {
        char mf[64], rf[64];
        snprintf(mf, sizeof mf, "%s.safetensors", nades[f]);
        snprintf(rf, sizeof rf, "%s.ref.safetensors", nades[f]);
        gm_model *m = load_model(mf);
        gm_st *ref = load_ref(rf);
        const gm_tensor *x = gm_st_tensor(ref, "x");
        int B = (int)x->shape[0];
        size_t n;
        double *want = ref_doubles(ref, "logp", &n);
        gm_logp_result *got = calloc(B, sizeof *got);
        set_caller_mode(flush);
        assert_int_equal(gm_model_logp(m, B, x->f32, 1, NULL, got), 0);
        assert_int_equal(caller_mode(), flush ? MXCSR_FLUSH : 0);
        set_caller_mode(false);
        for (int r = 0; r < B; r++)
            if (!(fabs(got[r].logp - want[r]) <= 1e-4)) {
                print_error("%s image %d (caller flush %d): log p %.8f, float64 reference %.8f\n", mf, r, flush,
                            got[r].logp, want[r]);
                fail();
            }
        free(got);
        free(want);
        gm_st_free(ref);
        gm_model_free(m);
    }
    gm_model *m = load_model("gan_cond.safetensors");
    gm_st *ref = load_ref("gan_cond.ref.safetensors");
    const gm_model_info *info = gm_model_get_info(m);
    const gm_tensor *z = gm_st_tensor(ref, "z"), *lt = gm_st_tensor(ref, "labels");
    int B = (int)z->shape[0];
    int *labels = malloc(B * sizeof *labels);
    for (int r = 0; r < B; r++) labels[r] = (int)lt->i64[r];
    float *px = malloc((size_t)B * info->dim * sizeof *px);
    set_caller_mode(flush);
    assert_int_equal(gm_model_decode(m, B, z->f32, labels, px), 0);
    assert_int_equal(caller_mode(), flush ? MXCSR_FLUSH : 0);
    set_caller_mode(false);
    assert_close_f("gan pixels", px, ref_f32(ref, "pixels"), (size_t)B * info->dim, 1e-4);
    free(labels);
    free(px);
    gm_st_free(ref);
    gm_model_free(m);
}

static void test_references_hold_from_either_caller_mode(void **state) {
    check_references(false);
    check_references(true);
}

/* ---- a NADE in the subnormal range ---- */

enum { D = 12, H = 40, B = 8 };
static float W[H * D], C[H], V[D * H], BIAS[D];
static char model_path[TEMP_PATH_LEN];

/* Half the units start at -120 and stay below -88 whatever the image (their
 * weights are small), so their sigmoids are e^a ~ 1e-52 .. 1e-39: subnormal
 * or below float's range. Their output weights are large (up to 50), so a
 * unit flushed wrongly to something sizeable would show. */
static float centered(void) { return (float)((double)rand() / RAND_MAX - 0.5); }

static int write_model(void **state) {
    srand(18);
    for (int h = 0; h < H; h++) {
        bool deep = h % 2 == 0;
        C[h] = deep ? -120.0f + 4.0f * (float)h / H : 0.5f * centered();
        for (int i = 0; i < D; i++) {
            W[h * D + i] = (deep ? 2.0f : 1.0f) * centered();
            V[i * H + h] = (deep ? 100.0f : 1.0f) * centered();
        }
    }
    for (int i = 0; i < D; i++) BIAS[i] = 0.3f * centered();
    char header[1024];
    size_t w = sizeof W, c = w + sizeof C, v = c + sizeof V, b = v + sizeof BIAS;
    snprintf(header, sizeof header,
             "{\"__metadata__\":{\"gm.format\":\"1\",\"gm.family\":\"nade\",\"gm.image\":\"3x4x1\"},"
             "\"W\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[0,%zu]},"
             "\"c\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]},"
             "\"V\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}}",
             H, D, w, H, w, c, D, H, c, v, D, v, b);
    uint8_t data[sizeof W + sizeof C + sizeof V + sizeof BIAS];
    memcpy(data, W, sizeof W);
    memcpy(data + w, C, sizeof C);
    memcpy(data + c, V, sizeof V);
    memcpy(data + v, BIAS, sizeof BIAS);
    st_write(model_path, "ftz", header, data, sizeof data);
    return 0;
}

static int remove_model(void **state) {
    unlink(model_path);
    return 0;
}

/* log p(x) in float64 from the definition, the sigmoid unflushed;
 * deepest receives the lowest pre-activation met. */
static double logp64(const float *x, double *deepest) {
    double a[H], lp = 0.0;
    for (int h = 0; h < H; h++) a[h] = C[h];
    for (int i = 0; i < D; i++) {
        double logit = BIAS[i];
        for (int h = 0; h < H; h++) {
            logit += V[i * H + h] / (1.0 + exp(-a[h]));
            if (a[h] < *deepest) *deepest = a[h];
        }
        lp += x[i] != 0.0f ? -log1p(exp(-logit)) : -log1p(exp(logit));
        for (int h = 0; h < H; h++) a[h] += W[h * D + i] * x[i];
    }
    return lp;
}

static void test_subnormal_nade_matches_float64(void **state) {
    char err[GM_ERR_LEN];
    gm_model *m = gm_model_load(model_path, err);
    if (!m) {
        print_error("%s\n", err);
        fail();
    }
    float x[B * D], drawn[B * D];
    gm_rng g;
    gm_rng_seed(&g, 3, 0);
    for (int i = 0; i < B * D; i++) x[i] = gm_rng_uniform(&g) < 0.5 ? 1.0f : 0.0f;
    gm_logp_result got[B];
    double deepest = 0.0;
    assert_int_equal(gm_model_logp(m, B, x, 1, NULL, got), 0);
    for (int r = 0; r < B; r++) {
        double want = logp64(x + r * D, &deepest);
        if (!(fabs(got[r].logp - want) <= 1e-4)) {
            print_error("image %d: log p %.8f, float64 %.8f\n", r, got[r].logp, want);
            fail();
        }
    }
    assert_true(deepest < -100.0); /* the test reaches the range it is about */
    /* sampling: the log p returned with each draw is the model's at it */
    gm_row *rows = seeded_rows(B, 5, 1.0f);
    double slp[B];
    assert_int_equal(gm_model_sample(m, B, rows, drawn, slp), 0);
    for (int r = 0; r < B; r++) {
        double want = logp64(drawn + r * D, &deepest);
        if (!(fabs(slp[r] - want) <= 1e-4)) {
            print_error("sample %d: log p %.8f, float64 %.8f\n", r, slp[r], want);
            fail();
        }
    }
    /* features act(c + W x): the deep units are below float's normal range
     * and may read 0; every feature is within 1e-5 of float64 */
    float feat[B * H];
    assert_int_equal(gm_model_encode(m, B, x, feat, NULL), 0);
    for (int r = 0; r < B; r++)
        for (int h = 0; h < H; h++) {
            double a = C[h];
            for (int i = 0; i < D; i++) a += (double)W[h * D + i] * x[r * D + i];
            double want = 1.0 / (1.0 + exp(-a));
            if (!(fabs(feat[r * H + h] - want) <= 1e-5)) {
                print_error("feature %d of image %d: %.8g, float64 %.8g\n", h, r, feat[r * H + h], want);
                fail();
            }
        }
    free(rows);
    gm_model_free(m);
}

/* The pool threads run each range in the caller's mode, so a row's result
 * never depends on the thread that computed it. */
static int record_mode(void *ctx, int r0, int r1) {
    unsigned *modes = ctx;
    for (int r = r0; r < r1; r++) modes[r] = caller_mode();
    return 0;
}

static void test_pool_threads_take_the_callers_mode(void **state) {
    gm_set_compute_threads(4);
    for (int flush = 0; flush < 2; flush++) {
        unsigned modes[B];
        set_caller_mode(flush);
        assert_int_equal(gm_parallel_rows(B, 1, record_mode, modes), 0);
        set_caller_mode(false);
        for (int r = 0; r < B; r++) assert_int_equal(modes[r], flush ? MXCSR_FLUSH : 0);
    }
    gm_set_compute_threads(1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_references_hold_from_either_caller_mode),
        cmocka_unit_test(test_subnormal_nade_matches_float64),
        cmocka_unit_test(test_pool_threads_take_the_callers_mode),
    };
    return cmocka_run_group_tests(tests, write_model, remove_model);
}
