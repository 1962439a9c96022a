/*
 * test_eval_aae.c - `gmserve eval --aae` on cases checked by hand.
 *
 * The fixture aae_half has a decoder with zero weights and bias followed by
 * a sigmoid, so every reconstruction is 0.5 in every pixel. On four test
 * images of one grey level each (0, 51, 204 and 255 of 255: 0, 0.2, 0.8 and
 * 1) the per-image mean squared errors are 0.25, 0.09, 0.09 and 0.25: their
 * mean is 0.17, and their standard error sqrt(var / n) with the sample
 * variance var = 4 (0.08^2) / 3 is 0.08 / sqrt(3) = 0.0461880.
 *
 * The fixture aae_mixture_mean has a mixture prior of four components with
 * means 0, 0.25, 0.5 and 1 and equal stds, and a code that is the image's
 * mean pixel: the same four images (labels 0, 1, 2, 3, idxfile.h) have
 * codes 0, 0.2, 0.8 and 1, whose nearest means, and so most likely
 * components, are 0, 1, 3 and 3: three of four right, and per class 1, 1,
 * 0, 1.
 */
#include "idxfile.h"
#include "testutil.h"

static const char DIR_[] = "build/test-logs/eval-aae";

/* `gmserve eval --aae tests/fixtures/FIXTURE` on the four images above;
 * returns the report's "aae" object (the caller frees *report), its
 * output in out. */
static json_t *eval_aae(const char *fixture, json_t **report, char *out, size_t out_len) {
    char cmd[1024], json_path[256];
    assert_int_equal(system("mkdir -p build/test-logs/eval-aae"), 0);
    /* training images apart from the test images, so that the floor distance is not 0 */
    idx_write_split(DIR_, "train", (const uint8_t[4]){25, 100, 150, 230});
    idx_write_split(DIR_, "t10k", (const uint8_t[4]){0, 51, 204, 255});
    snprintf(json_path, sizeof json_path, "%s/metrics.json", DIR_);
    snprintf(cmd, sizeof cmd,
             "%s eval --aae tests/fixtures/%s --classifier models/classifier.safetensors "
             "--data %s --samples 4 --threads 1 --json %s 2>&1",
             gmserve_bin(), fixture, DIR_, json_path);
    if (run_command(cmd, out, out_len) != 0) {
        print_error("%s\n%s\n", cmd, out);
        fail();
    }
    *report = json_load_file(json_path, 0, NULL);
    json_t *a = json_object_get(*report, "aae");
    assert_non_null(a);
    return a;
}

static void test_reconstruction_error_by_hand(void **state) {
    char out[1 << 14];
    json_t *j, *a = eval_aae("aae_half.safetensors", &j, out, sizeof out);
    double mse = json_number_value(json_object_get(a, "reconstruction_mse"));
    double se = json_number_value(json_object_get(a, "reconstruction_mse_se"));
    double acc = json_number_value(json_object_get(a, "reconstruction_accuracy"));
    if (fabs(mse - 0.17) > 1e-6 || fabs(se - 0.08 / sqrt(3.0)) > 1e-6) {
        print_error("reconstruction mse %.8f (want 0.17), se %.8f (want %.8f)\n", mse, se, 0.08 / sqrt(3.0));
        fail();
    }
    /* four identical reconstructions get one class: at most the one image of that label is right */
    assert_true(acc == 0.0 || acc == 0.25);
    assert_int_equal(json_integer_value(json_object_get(a, "reconstruction_images")), 4);
    /* a normal prior has no components */
    assert_null(json_object_get(a, "component_accuracy"));
    assert_null(json_object_get(a, "component_accuracy_per_class"));
    assert_null(strstr(out, "components as a classifier"));
    json_decref(j);
}

static void test_component_accuracy_by_hand(void **state) {
    char out[1 << 14];
    json_t *j, *a = eval_aae("aae_mixture_mean.safetensors", &j, out, sizeof out);
    double acc = json_number_value(json_object_get(a, "component_accuracy"));
    json_t *pc = json_object_get(a, "component_accuracy_per_class");
    const double want[4] = {1, 1, 0, 1};
    if (acc != 0.75 || json_array_size(pc) != 4) {
        print_error("component accuracy %.6f over %zu classes, want 0.75 over 4\n%s\n", acc, json_array_size(pc), out);
        fail();
    }
    for (int k = 0; k < 4; k++) {
        if (json_number_value(json_array_get(pc, k)) != want[k]) {
            print_error("class %d: component accuracy %.6f, want %.0f\n", k, json_number_value(json_array_get(pc, k)),
                        want[k]);
            fail();
        }
    }
    if (!strstr(out, "components as a classifier: accuracy 75.00 % on 4 test images; per class:  100.0  100.0  0.0  "
                     "100.0")) {
        print_error("no components line as expected in:\n%s\n", out);
        fail();
    }
    /* the reconstructions are 0.5 everywhere here too */
    assert_true(fabs(json_number_value(json_object_get(a, "reconstruction_mse")) - 0.17) < 1e-6);
    json_decref(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reconstruction_error_by_hand),
        cmocka_unit_test(test_component_accuracy_by_hand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
