/*
 * test_models.c - every family and op against PyTorch (tests/make_fixtures.py).
 *
 * Tolerances are the format's (docs/model-files.md): NADE log p within 1e-4 nats of a float64
 * evaluation; network outputs within 1e-4 relative to the output's scale
 * (float32 in both, different summation orders).
 */
#include "gm/model.h"
#include "testutil.h"

static void check_nade(const char *model_file, const char *ref_file) {
    gm_model *m = load_model(model_file);
    gm_st *ref = load_ref(ref_file);
    const gm_model_info *info = gm_model_get_info(m);
    const gm_tensor *x = gm_st_tensor(ref, "x");
    int B = (int)x->shape[0];
    assert_int_equal(x->shape[1], info->dim);
    size_t n;
    double *want = ref_doubles(ref, "logp", &n);
    assert_int_equal(n, B);
    gm_logp_result *got = calloc(B, sizeof *got);
    assert_int_equal(gm_model_logp(m, B, x->f32, 1, NULL, got), 0);
    for (int r = 0; r < B; r++) {
        if (fabs(got[r].logp - want[r]) > 1e-4) { /* docs/model-files.md: 1e-4 nats per image */
            print_error("%s image %d: log p %.8f, float64 reference %.8f\n", model_file, r, got[r].logp, want[r]);
            fail();
        }
    }
    float *feat = malloc((size_t)B * info->encode_dim * sizeof *feat);
    assert_int_equal(gm_model_encode(m, B, x->f32, feat, NULL), 0);
    assert_close_f("nade features", feat, ref_f32(ref, "features"), (size_t)B * info->encode_dim, 1e-5);
    free(feat);
    free(got);
    free(want);
    gm_st_free(ref);
    gm_model_free(m);
}

static void test_nade_logp_matches_float64(void **state) {
    check_nade("nade_ref.safetensors", "nade_ref.ref.safetensors");
    check_nade("nade_tiny.safetensors", "nade_tiny.ref.safetensors");
    check_nade("nade_tiny_relu.safetensors", "nade_tiny_relu.ref.safetensors");
}

static void check_vae(const char *model_file, const char *ref_file) {
    gm_model *m = load_model(model_file);
    gm_st *ref = load_ref(ref_file);
    const gm_model_info *info = gm_model_get_info(m);
    const gm_tensor *x = gm_st_tensor(ref, "x");
    int B = (int)x->shape[0], Z = info->latent_dim;
    assert_int_equal(info->encode_dim, Z);
    float *mu = malloc((size_t)B * Z * sizeof *mu), *lv = malloc((size_t)B * Z * sizeof *lv);
    assert_int_equal(gm_model_encode(m, B, x->f32, mu, lv), 0);
    assert_close_f("vae mean", mu, ref_f32(ref, "mu"), (size_t)B * Z, 1e-4);
    assert_close_f("vae logvar", lv, ref_f32(ref, "logvar"), (size_t)B * Z, 1e-4);
    float *px = malloc((size_t)B * info->dim * sizeof *px);
    assert_int_equal(gm_model_decode(m, B, ref_f32(ref, "z"), NULL, px), 0);
    assert_close_f("vae decoded probabilities", px, ref_f32(ref, "probs"), (size_t)B * info->dim, 1e-4);
    free(mu);
    free(lv);
    free(px);
    gm_st_free(ref);
    gm_model_free(m);
}

static void test_vae_matches_pytorch(void **state) {
    check_vae("vae_mlp.safetensors", "vae_mlp.ref.safetensors");
    check_vae("vae_conv.safetensors", "vae_conv.ref.safetensors"); /* 3 channels, every conv op */
}

static void check_gan(const char *model_file, const char *ref_file) {
    gm_model *m = load_model(model_file);
    gm_st *ref = load_ref(ref_file);
    const gm_model_info *info = gm_model_get_info(m);
    const gm_tensor *z = gm_st_tensor(ref, "z");
    int B = (int)z->shape[0];
    int *labels = NULL;
    if (info->num_classes) {
        const gm_tensor *lt = gm_st_tensor(ref, "labels");
        labels = malloc(B * sizeof *labels);
        for (int r = 0; r < B; r++) labels[r] = (int)lt->i64[r];
    }
    float *px = malloc((size_t)B * info->dim * sizeof *px);
    assert_int_equal(gm_model_decode(m, B, z->f32, labels, px), 0);
    assert_close_f("gan pixels", px, ref_f32(ref, "pixels"), (size_t)B * info->dim, 1e-4);
    const gm_tensor *x = gm_st_tensor(ref, "x");
    int nx = (int)x->shape[0];
    if (info->supports[GM_OP_DISCRIMINATE]) {
        float logits[16];
        assert_int_equal(gm_model_discriminate(m, nx, x->f32, logits), 0);
        assert_close_f("gan discriminator", logits, ref_f32(ref, "disc"), (size_t)nx, 1e-4);
    }
    if (info->supports[GM_OP_ENCODE]) {
        float *zz = malloc((size_t)nx * info->encode_dim * sizeof *zz);
        assert_int_equal(gm_model_encode(m, nx, x->f32, zz, NULL), 0);
        assert_close_f("gan encoder", zz, ref_f32(ref, "enc"), (size_t)nx * info->encode_dim, 1e-4);
        free(zz);
    }
    free(labels);
    free(px);
    gm_st_free(ref);
    gm_model_free(m);
}

static void test_gan_matches_pytorch(void **state) {
    check_gan("gan_cond.safetensors", "gan_cond.ref.safetensors"); /* F16, conditional, disc + encoder */
    check_gan("gan_rgb.safetensors", "gan_rgb.ref.safetensors");   /* BF16, 3 channels, sigmoid output */
}

static void test_model_info(void **state) {
    gm_model *m = load_model("gan_cond.safetensors");
    const gm_model_info *info = gm_model_get_info(m);
    assert_int_equal(info->family, GM_FAMILY_GAN);
    assert_int_equal(info->num_classes, 3);
    assert_string_equal(info->class_names[1], "shoe");
    assert_false(info->supports[GM_OP_LOGP]);
    assert_true(info->supports[GM_OP_DISCRIMINATE]);
    assert_int_equal(info->dim, 256);
    /* an operation the model lacks is refused, not crashed */
    gm_logp_result r;
    float px[256] = {0};
    assert_int_equal(gm_model_logp(m, 1, px, 1, NULL, &r), -1);
    gm_model_free(m);
    m = load_model("nade_tiny.safetensors");
    info = gm_model_get_info(m);
    assert_int_equal(info->family, GM_FAMILY_NADE);
    assert_true(info->exact_logp);
    assert_false(info->supports[GM_OP_DECODE]);
    assert_string_equal(gm_model_meta(m, "gm.description"), "fixture nade_tiny");
    gm_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nade_logp_matches_float64),
        cmocka_unit_test(test_vae_matches_pytorch),
        cmocka_unit_test(test_gan_matches_pytorch),
        cmocka_unit_test(test_model_info),
    };
    return cmocka_run_group_tests_name("models vs pytorch", tests, NULL, NULL);
}
