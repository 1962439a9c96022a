/*
 * test_pixelcnn_api.c - a pixelcnn served by the daemon: sample returns
 * each image's exact log p (like NADE), which the logp route gives back for
 * the same pixels (sent back as the PNGs the sample gave), with bits/dim =
 * -log p / (D ln 2).
 */
#include "testutil.h"

#include "daemon.h"

static void test_sample_logp_is_the_score(void **state) {
    const char *args[] = {"--model", "pc=tests/fixtures/pixelcnn_gated.safetensors", NULL};
    daemon_t d = daemon_start("pixelcnn_api", args);
    json_t *s = http_json_expect(d.port, "/v1/models/pc/sample", "{\"n\": 3, \"seed\": 5}", 200);
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
    json_t *l = http_json_expect(d.port, "/v1/models/pc/logp", body, 200);
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
        assert_true(fabs(bpd + scored / (63 * M_LN2)) <= 1e-9); /* the fixture is 9x7 */
    }
    json_decref(s);
    json_decref(l);
    assert_int_equal(daemon_stop(&d), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sample_logp_is_the_score)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
