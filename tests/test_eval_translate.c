/*
 * test_eval_translate.c - `gmserve eval --stargan` and `--cyclegan` on
 * cases checked by hand.
 *
 * The fixtures translator_half_cond (10 target classes) and translator_half
 * (a forward and a reverse generator) end in a convolution with zero
 * weights and bias before a sigmoid: every translation is 0.5 in every
 * pixel. The four test images are one grey level each, 0, 51, 204 and 255
 * of 255 (0, 0.2, 0.8 and 1), labelled 0 to 3.
 *
 * StarGAN: image n of class y goes to (y + 1 + n % 9) % 10, so the targets
 * are 1, 3, 5 and 7. The L1 distances to the source are 0.5, 0.3, 0.3 and
 * 0.5 (mean 0.4). Silhouettes are the pixels above 0.5: none in the first
 * two images and none in any translation (IoU 1 by definition), all in the
 * last two (IoU 0): mean 0.5. The four translations are one image, so the
 * classifier gives them one class: the accuracy is 1/4 if that class is one
 * of the targets, else 0, and each target class scores 1 or 0 accordingly.
 *
 * CycleGAN with --cycle-classes 0,2: A is the black image, B the 0.8 one.
 * There and back gives 0.5 again: cycle errors 0.5 (A) and 0.3 (B), 0.4
 * over both; L1 to the source 0.5 and 0.3, IoU 1 and 0. G(A) and F(B) are
 * the same image, so at most one direction reaches its target.
 */
#include "idxfile.h"
#include "testutil.h"

static const char DIR_[] = "build/test-logs/eval-translate";

static json_t *run_eval(const char *args, int want_rc, char *out, size_t n) {
    char cmd[1024], json_path[256];
    snprintf(json_path, sizeof json_path, "%s/metrics.json", DIR_);
    unlink(json_path);
    const char *bin = gmserve_bin();
    snprintf(cmd, sizeof cmd,
             "%s eval %s --classifier models/classifier.safetensors --data %s --threads 1 --json %s 2>&1", bin, args,
             DIR_, json_path);
    int rc = run_command(cmd, out, n);
    if ((want_rc == 0) != (rc == 0)) {
        print_error("%s: exit %d\n%s\n", cmd, rc, out);
        fail();
    }
    return rc ? NULL : json_load_file(json_path, 0, NULL);
}

static void assert_near(const char *what, double got, double want) {
    if (!(fabs(got - want) <= 1e-6)) {
        print_error("%s: %.8f, want %.8f\n", what, got, want);
        fail();
    }
}

static double num(json_t *o, const char *key) { return json_number_value(json_object_get(o, key)); }

static int setup(void **state) {
    assert_int_equal(system("mkdir -p build/test-logs/eval-translate"), 0);
    idx_write_split(DIR_, "t10k", (const uint8_t[4]){0, 51, 204, 255});
    return 0;
}

static void test_stargan_by_hand(void **state) {
    static char out[1 << 16];
    json_t *j = run_eval("--stargan tests/fixtures/translator_half_cond.safetensors", 0, out, sizeof out);
    json_t *s = json_object_get(j, "stargan");
    assert_non_null(s);
    assert_int_equal(json_integer_value(json_object_get(s, "images")), 4);
    assert_string_equal(json_string_value(json_object_get(s, "target_rule")), "(y + 1 + n % 9) % 10");
    assert_near("l1_to_source", num(s, "l1_to_source"), 0.4);
    assert_near("silhouette_iou", num(s, "silhouette_iou"), 0.5);
    double acc = num(s, "target_accuracy");
    json_t *pc = json_object_get(s, "target_accuracy_per_class");
    assert_int_equal(json_array_size(pc), 10);
    int ones = 0;
    for (int k = 0; k < 10; k++) {
        double v = json_number_value(json_array_get(pc, (size_t)k));
        assert_true(v == 0.0 || v == 1.0);
        if (k != 1 && k != 3 && k != 5 && k != 7) assert_true(v == 0.0); /* never a target */
        ones += v == 1.0;
    }
    assert_true(ones <= 1);
    assert_near("target_accuracy", acc, ones / 4.0);
    json_decref(j);
    /* a model without classes, or without the classifier's, is refused by name */
    run_eval("--stargan tests/fixtures/translator_half.safetensors", 1, out, sizeof out);
    assert_non_null(strstr(out, "needs a multi-domain translator"));
}

static void test_cyclegan_by_hand(void **state) {
    static char out[1 << 16];
    json_t *j =
        run_eval("--cyclegan tests/fixtures/translator_half.safetensors --cycle-classes 0,2", 0, out, sizeof out);
    json_t *c = json_object_get(j, "cyclegan"), *f = json_object_get(c, "forward"), *r = json_object_get(c, "reverse");
    assert_non_null(f);
    assert_non_null(r);
    assert_near("cycle_l1", num(c, "cycle_l1"), 0.4);
    assert_near("forward cycle_l1", num(f, "cycle_l1"), 0.5);
    assert_near("reverse cycle_l1", num(r, "cycle_l1"), 0.3);
    assert_near("forward l1_to_source", num(f, "l1_to_source"), 0.5);
    assert_near("reverse l1_to_source", num(r, "l1_to_source"), 0.3);
    assert_near("forward silhouette_iou", num(f, "silhouette_iou"), 1.0);
    assert_near("reverse silhouette_iou", num(r, "silhouette_iou"), 0.0);
    double af = num(f, "target_accuracy"), ar = num(r, "target_accuracy");
    assert_true((af == 0.0 || af == 1.0) && (ar == 0.0 || ar == 1.0) && af + ar <= 1.0);
    assert_near("target_accuracy", num(c, "target_accuracy"), (af + ar) / 2);
    assert_int_equal(json_integer_value(json_object_get(f, "images")), 1);
    char *domains = json_dumps(json_object_get(c, "domains"), JSON_COMPACT);
    assert_string_equal(domains, "[\"A\",\"B\"]");
    free(domains);
    json_decref(j);
    /* a one-way model, the same class twice, a missing --cycle-classes: refused */
    run_eval("--cyclegan tests/fixtures/translator_half_cond.safetensors --cycle-classes 0,2", 1, out, sizeof out);
    assert_non_null(strstr(out, "a reverse generator"));
    run_eval("--cyclegan tests/fixtures/translator_half.safetensors --cycle-classes 2,2", 1, out, sizeof out);
    assert_non_null(strstr(out, "two different classes"));
    run_eval("--cyclegan tests/fixtures/translator_half.safetensors", 1, out, sizeof out);
    assert_non_null(strstr(out, "--cycle-classes A,B"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stargan_by_hand),
        cmocka_unit_test(test_cyclegan_by_hand),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
