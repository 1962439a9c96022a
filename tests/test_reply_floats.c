/*
 * test_reply_floats.c - the float arrays of JSON replies, written by the
 * shortest round-trip writer (floatfmt.h), read back over real HTTP as the
 * very floats the core computes: VAE encode's z and logvar bit for bit
 * against gm_model_encode in this process on the same pixels (one image a
 * request, so both run the same batch-1 path), and NADE log p to the 10
 * significant digits the reply promises.
 */
#include "testutil.h"

#include "daemon.h"
#include "gm/model.h"

#define VAE_FILE "tests/fixtures/vae_mlp.safetensors"
#define NADE_FILE "tests/fixtures/nade_ref.safetensors"

static daemon_t d;

static int start(void **state) {
    const char *args[] = {"--model", "vae=" VAE_FILE, "--model", "nade=" NADE_FILE, NULL};
    d = daemon_start("reply_floats", args);
    return 0;
}

static int stop(void **state) { return daemon_stop(&d) == 0 ? 0 : -1; }

/* {"images":[{"pixels":[...]}]} of one image */
static char *pixels_body(const float *px, int n) {
    char *s = malloc((size_t)n * 4 + 64), *p = s;
    p += sprintf(p, "{\"images\":[{\"pixels\":[");
    for (int i = 0; i < n; i++) p += sprintf(p, i ? ",%d" : "%d", px[i] > 0.5f);
    sprintf(p, "]}]}");
    return s;
}

static void assert_floats_exact(const char *what, json_t *arr, const float *want, int n) {
    assert_int_equal(json_array_size(arr), n);
    for (int i = 0; i < n; i++) {
        float got = (float)json_number_value(json_array_get(arr, (size_t)i));
        if (memcmp(&got, &want[i], sizeof got)) {
            print_error("%s[%d]: read back %.9g, the core computed %.9g\n", what, i, (double)got, (double)want[i]);
            fail();
        }
    }
}

static void test_encode_floats_are_the_cores(void **state) {
    char err[GM_ERR_LEN];
    gm_model *m = gm_model_load(VAE_FILE, err);
    assert_non_null(m);
    const gm_model_info *in = gm_model_get_info(m);
    int D = in->dim, Z = in->encode_dim;
    float *px = malloc((size_t)D * sizeof *px), *z = malloc((size_t)Z * sizeof *z),
          *lv = malloc((size_t)Z * sizeof *lv);
    uint32_t s = 7;
    for (int img = 0; img < 6; img++) {
        for (int i = 0; i < D; i++) {
            s = s * 1664525u + 1013904223u;
            px[i] = (s >> 24) < 77 ? 1.0f : 0.0f;
        }
        assert_int_equal(gm_model_encode(m, 1, px, z, lv), 0);
        char *body = pixels_body(px, D);
        json_t *v = http_json_expect(d.port, "/v1/models/vae/encode", body, 200);
        json_t *r0 = json_array_get(json_object_get(v, "results"), 0);
        assert_floats_exact("z", json_object_get(r0, "z"), z, Z);
        assert_floats_exact("logvar", json_object_get(r0, "logvar"), lv, Z);
        json_decref(v);
        free(body);
    }
    free(px);
    free(z);
    free(lv);
    gm_model_free(m);
}

static void test_logp_has_ten_digits(void **state) {
    char err[GM_ERR_LEN];
    gm_model *m = gm_model_load(NADE_FILE, err);
    assert_non_null(m);
    int D = gm_model_get_info(m)->dim;
    float *px = malloc((size_t)D * sizeof *px);
    for (int i = 0; i < D; i++) px[i] = (float)((i * 7 + 3) % 5 < 2);
    gm_row row = {0};
    gm_logp_result want;
    assert_int_equal(gm_model_logp(m, 1, px, 1, &row, &want), 0);
    char *body = pixels_body(px, D);
    json_t *v = http_json_expect(d.port, "/v1/models/nade/logp", body, 200);
    double got = json_number_value(json_object_get(json_array_get(json_object_get(v, "results"), 0), "logp"));
    print_message("NADE log p: reply %.12g, core %.12g\n", got, want.logp);
    assert_true(fabs(got - want.logp) <= 5e-10 * fabs(want.logp));
    json_decref(v);
    free(body);
    free(px);
    gm_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_floats_are_the_cores),
        cmocka_unit_test(test_logp_has_ten_digits),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
