/*
 * test_pixelcnn_api.c - a pixelcnn and a pixelrnn served by the daemon:
 * /v1/models lists each with its family; sample returns
 * each image's exact log p (like NADE), which the logp route gives back for
 * the same pixels (sent back as the PNGs the sample gave), with bits/dim =
 * -log p / (D ln 2).
 */
#include "testutil.h"

#include "daemon.h"

/* The model `name` (family `family`, D pixels): /v1/models lists it; its
 * samples' log p is what logp scores for their PNGs. */
static void check_sample_logp_is_the_score(const char *name, const char *family, const char *file, int D) {
    char spec[160], path[96];
    snprintf(spec, sizeof spec, "%s=%s", name, file);
    const char *args[] = {"--model", spec, NULL};
    daemon_t d = daemon_start("pixelcnn_api", args);
    reply_t r = http_get(d.port, "/v1/models");
    json_t *list = expect_json(&r, 200, "GET /v1/models");
    reply_free(&r);
    json_t *entry = json_array_get(json_object_get(list, "models"), 0);
    assert_string_equal(json_string_value(json_object_get(entry, "name")), name);
    assert_string_equal(json_string_value(json_object_get(entry, "family")), family);
    json_decref(list);
    snprintf(path, sizeof path, "/v1/models/%s/sample", name);
    json_t *s = http_json_expect(d.port, path, "{\"n\": 3, \"seed\": 5}", 200);
    json_t *images = json_object_get(s, "images");
    assert_int_equal(json_array_size(images), 3);
    char body[16384];
    size_t at = (size_t)snprintf(body, sizeof body, "{\"images\": [");
    for (size_t i = 0; i < 3; i++) { /* each sample's PNG, scored as it was sent */
        json_t *png = json_object_get(json_array_get(images, i), "png");
        assert_true(json_is_string(png));
        at +=
            (size_t)snprintf(body + at, sizeof body - at, "%s{\"png\": \"%s\"}", i ? "," : "", json_string_value(png));
    }
    snprintf(body + at, sizeof body - at, "]}");
    snprintf(path, sizeof path, "/v1/models/%s/logp", name);
    json_t *l = http_json_expect(d.port, path, body, 200);
    assert_string_equal(json_string_value(json_object_get(l, "method")), "exact");
    json_t *results = json_object_get(l, "results");
    for (size_t i = 0; i < 3; i++) {
        json_t *lp = json_object_get(json_array_get(images, i), "logp");
        if (!json_is_number(lp)) {
            print_error("sample image %zu has no logp\n", i);
            fail();
        }
        json_t *res = json_array_get(results, i);
        double sampled = json_number_value(lp), scored = json_number_value(json_object_get(res, "logp"));
        double bpd = json_number_value(json_object_get(res, "bits_per_dim"));
        assert_true(fabs(sampled - scored) <= 1e-4);
        assert_true(fabs(bpd + scored / (D * M_LN2)) <= 1e-9);
    }
    json_decref(s);
    json_decref(l);
    assert_int_equal(daemon_stop(&d), 0);
}

static void test_sample_logp_is_the_score(void **state) {
    check_sample_logp_is_the_score("pc", "pixelcnn", "tests/fixtures/pixelcnn_gated.safetensors", 63);   /* 9x7 */
    check_sample_logp_is_the_score("prnn", "pixelrnn", "tests/fixtures/pixelrnn_small.safetensors", 63); /* 7x9 */
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sample_logp_is_the_score)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
