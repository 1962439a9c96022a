/*
 * test_eval_aae.c - `gmserve eval --aae` on a case checked by hand.
 *
 * The fixture aae_half has a decoder with zero weights and bias followed by
 * a sigmoid, so every reconstruction is 0.5 in every pixel. On four test
 * images of one grey level each (0, 51, 204 and 255 of 255: 0, 0.2, 0.8 and
 * 1) the per-image mean squared errors are 0.25, 0.09, 0.09 and 0.25: their
 * mean is 0.17, and their standard error sqrt(var / n) with the sample
 * variance var = 4 (0.08^2) / 3 is 0.08 / sqrt(3) = 0.0461880.
 */
#include <zlib.h>

#include "testutil.h"

static const char DIR_[] = "build/test-logs/eval-aae";

/* idx files of 4 images of 28x28, image i all level[i], labels 0..3 */
static void write_split(const char *split, const uint8_t level[4]) {
    enum { N = 4, D = 28 * 28 };
    static uint8_t buf[16 + N * D];
    const uint8_t head[16] = {0, 0, 8, 3, 0, 0, 0, N, 0, 0, 0, 28, 0, 0, 0, 28};
    memcpy(buf, head, 16);
    for (int i = 0; i < N; i++) memset(buf + 16 + i * D, level[i], D);
    char name[96];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", split);
    write_gz(DIR_, name, buf, sizeof buf);
    const uint8_t labels[12] = {0, 0, 8, 1, 0, 0, 0, N, 0, 1, 2, 3};
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", split);
    write_gz(DIR_, name, labels, sizeof labels);
}

static void test_reconstruction_error_by_hand(void **state) {
    char cmd[1024], out[1 << 14], json_path[256];
    assert_int_equal(system("mkdir -p build/test-logs/eval-aae"), 0);
    /* training images apart from the test images, so that the floor distance is not 0 */
    write_split("train", (const uint8_t[4]){25, 100, 150, 230});
    write_split("t10k", (const uint8_t[4]){0, 51, 204, 255});
    snprintf(json_path, sizeof json_path, "%s/metrics.json", DIR_);
    const char *bin = gmserve_bin();
    snprintf(cmd, sizeof cmd,
             "%s eval --aae tests/fixtures/aae_half.safetensors --classifier models/classifier.safetensors "
             "--data %s --samples 4 --threads 1 --json %s 2>&1",
             bin, DIR_, json_path);
    if (run_command(cmd, out, sizeof out) != 0) {
        print_error("%s\n%s\n", cmd, out);
        fail();
    }
    json_t *j = json_load_file(json_path, 0, NULL), *a = json_object_get(j, "aae");
    assert_non_null(a);
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
    json_decref(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reconstruction_error_by_hand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
