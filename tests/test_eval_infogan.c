/*
 * test_eval_infogan.c - `gmserve eval --infogan`: the category -> class
 * assignment and the image statistics on cases checked by hand, and the
 * command's report checked against its own confusion counts.
 */
#include <jansson.h>

#include "idxfile.h"
#include "infogan_eval.h"

static const char DIR_[] = "build/test-logs/eval-infogan";

/* Greedy takes 5 (row 0 -> column 0) and ends at 5 + 0 + 1 = 6; the best
 * assignment is row 0 -> 1, row 1 -> 0, row 2 -> 2: 4 + 4 + 1 = 9. */
static void test_assignment_beats_greedy(void **state) {
    const double m[9] = {5, 4, 0, 4, 0, 0, 0, 0, 1};
    int a[3];
    assert_true(gm_best_assignment(m, 3, a) == 9.0);
    assert_int_equal(a[0], 1);
    assert_int_equal(a[1], 0);
    assert_int_equal(a[2], 2);
}

/* A 10x10 confusion whose diagonal of the permutation k -> (3k + 7) % 10
 * holds 50 and every other entry at most 9: the permutation is found. */
static void test_assignment_finds_a_permutation(void **state) {
    double m[100];
    int a[10];
    for (int k = 0; k < 10; k++)
        for (int c = 0; c < 10; c++) m[k * 10 + c] = c == (3 * k + 7) % 10 ? 50 : (k * 7 + c * 3) % 10;
    assert_true(gm_best_assignment(m, 10, a) == 500.0);
    for (int k = 0; k < 10; k++) assert_int_equal(a[k], (3 * k + 7) % 10);
}

static double best_by_enumeration(const double *m, int n, int row, bool *used) {
    if (row == n) return 0;
    double best = -1;
    for (int c = 0; c < n; c++) {
        if (used[c]) continue;
        used[c] = true;
        double v = m[row * n + c] + best_by_enumeration(m, n, row + 1, used);
        used[c] = false;
        if (v > best) best = v;
    }
    return best;
}

/* Random 6x6 integer matrices: the sum equals the best of all 720
 * permutations, and the assignment is a permutation with that sum. */
static void test_assignment_against_enumeration(void **state) {
    uint32_t s = 12345;
    for (int trial = 0; trial < 200; trial++) {
        double m[36];
        for (int i = 0; i < 36; i++) m[i] = (s = s * 1103515245u + 12345u) >> 16 & 31;
        bool used[6] = {false}, seen[6] = {false};
        int a[6];
        double got = gm_best_assignment(m, 6, a), sum = 0;
        for (int k = 0; k < 6; k++) {
            assert_true(a[k] >= 0 && a[k] < 6 && !seen[a[k]]);
            seen[a[k]] = true;
            sum += m[k * 6 + a[k]];
        }
        assert_true(got == sum);
        assert_true(got == best_by_enumeration(m, 6, 0, used));
    }
    int a[1];
    assert_true(gm_best_assignment((const double[1]){0}, 0, a) == -1);
    assert_true(gm_best_assignment((const double[1]){0}, GM_ASSIGN_MAX + 1, a) == -1);
}

/* A rectangle of ones over columns 5..14 and rows 3..22 of 28x28: mean
 * 200 / 784, width 10, height 20, no slant (symmetric about its centroid). */
static void test_stats_of_a_rectangle(void **state) {
    float px[28 * 28] = {0};
    for (int y = 3; y <= 22; y++)
        for (int x = 5; x <= 14; x++) px[y * 28 + x] = 1;
    gm_image_stats s;
    gm_image_stats_of(px, 28, 28, &s);
    assert_true(fabs(s.brightness - 200.0 / 784) < 1e-12);
    assert_true(s.width == 10 && s.height == 20);
    assert_true(fabs(s.slant) < 1e-12);
}

/* Pixels at (x, y) = (4, 0), (2, 1), (0, 2) of a 3x5 image: centroid (2, 1),
 * mu11 = 2 (-1) + 0 + (-2) 1 = -4, mu02 = 1 + 0 + 1 = 2, slant -mu11 / mu02
 * = 2 (two columns right per row up); the mirror image leans left, -2. */
static void test_slant_by_hand(void **state) {
    float px[15] = {0}, mirror[15] = {0};
    px[0 * 5 + 4] = px[1 * 5 + 2] = px[2 * 5 + 0] = 1;
    mirror[0 * 5 + 0] = mirror[1 * 5 + 2] = mirror[2 * 5 + 4] = 1;
    gm_image_stats s, t;
    gm_image_stats_of(px, 3, 5, &s);
    gm_image_stats_of(mirror, 3, 5, &t);
    assert_true(fabs(s.slant - 2) < 1e-12 && fabs(t.slant + 2) < 1e-12);
    assert_true(s.width == 5 && s.height == 3 && fabs(s.brightness - 3.0 / 15) < 1e-12);
}

/* Width and height count pixels strictly above 0.5; an empty image is all 0. */
static void test_threshold_and_empty(void **state) {
    float px[16] = {0};
    px[0] = 0.5f;           /* (0, 0): at the threshold, not above */
    px[1 * 4 + 2] = 0.75f;  /* (2, 1) */
    px[3 * 4 + 3] = 0.625f; /* (3, 3) */
    gm_image_stats s;
    gm_image_stats_of(px, 4, 4, &s);
    assert_true(s.width == 2 && s.height == 3);
    assert_true(fabs(s.brightness - (0.5 + 0.75 + 0.625) / 16) < 1e-7);
    float zero[16] = {0};
    gm_image_stats_of(zero, 4, 4, &s);
    assert_true(s.brightness == 0 && s.width == 0 && s.height == 0 && s.slant == 0);
    for (int i = 0; i < GM_IMAGE_STATS; i++) assert_true(gm_image_stat(&s, i) == 0);
    assert_string_equal(GM_IMAGE_STAT_NAMES[3], "slant");
}

/* The bundled InfoGAN on 4 test images (labels 0..3): the reported match is
 * the best assignment of its own confusion counts (checked by enumeration),
 * the counts add up to the images and samples, and each code's moves_most is
 * the statistic of largest |standardized change|. */
static void test_report_is_consistent(void **state) {
    char cmd[1024], out[1 << 15], json_path[256];
    assert_int_equal(system("mkdir -p build/test-logs/eval-infogan"), 0);
    idx_write_split(DIR_, "t10k", (const uint8_t[4]){0, 51, 204, 255});
    snprintf(json_path, sizeof json_path, "%s/metrics.json", DIR_);
    snprintf(cmd, sizeof cmd,
             "%s eval --infogan models/infogan.safetensors --classifier models/classifier.safetensors "
             "--data %s --samples 40 --threads 1 --json %s 2>&1",
             gmserve_bin(), DIR_, json_path);
    if (run_command(cmd, out, sizeof out) != 0) {
        print_error("%s\n%s\n", cmd, out);
        fail();
    }
    json_t *j = json_load_file(json_path, 0, NULL), *r = json_object_get(j, "infogan");
    assert_non_null(r);
    int K = (int)json_integer_value(json_object_get(r, "categories"));
    int C = (int)json_integer_value(json_object_get(r, "classes"));
    assert_int_equal(K, 10);
    assert_int_equal(C, 4); /* the labels of the 4 test images */
    const char *views[2][3] = {{"q_confusion", "q_match_accuracy", "q_assignment"},
                               {"classifier_confusion", "classifier_match_accuracy", "classifier_assignment"}};
    for (int v = 0; v < 2; v++) {
        json_t *conf = json_object_get(r, views[v][0]);
        double sq[100] = {0}, total = 0;
        int cols = (int)json_array_size(json_array_get(conf, 0)); /* the classifier's may predict other classes */
        assert_true(cols >= C && cols <= K);
        for (int k = 0; k < K; k++)
            for (int c = 0; c < cols; c++)
                total += sq[k * K + c] = (double)json_integer_value(json_array_get(json_array_get(conf, k), c));
        bool used[10] = {false};
        double best = best_by_enumeration(sq, K, 0, used), acc = json_number_value(json_object_get(r, views[v][1]));
        assert_true(total == (v == 0 ? 4 : 40)); /* 40 samples: 4 per category */
        if (fabs(acc - best / total) > 1e-12) {
            print_error("%s: reported %.6f, the best assignment of its confusion gives %.6f\n", views[v][1], acc,
                        best / total);
            fail();
        }
        json_t *assign = json_object_get(r, views[v][2]);
        double sum = 0;
        for (int k = 0; k < K; k++) {
            int c = (int)json_integer_value(json_array_get(assign, k));
            if (c >= 0) sum += sq[k * K + c];
        }
        assert_true(sum == best);
    }
    json_t *codes = json_object_get(r, "codes");
    assert_int_equal(json_array_size(codes), 2);
    for (size_t i = 0; i < json_array_size(codes); i++) {
        json_t *c = json_array_get(codes, i), *eff = json_object_get(c, "standardized_change");
        const char *most = json_string_value(json_object_get(c, "moves_most"));
        assert_non_null(most);
        double top = fabs(json_number_value(json_object_get(eff, most)));
        for (int t = 0; t < GM_IMAGE_STATS; t++)
            assert_true(fabs(json_number_value(json_object_get(eff, GM_IMAGE_STAT_NAMES[t]))) <= top);
        assert_int_equal(json_array_size(json_object_get(c, "width")), 9); /* -2 .. 2 in steps of 0.5 */
    }
    json_decref(j);
}

/* A GAN without InfoGAN's codes is refused with a message naming what is
 * missing; --infogan without --classifier is a usage error. */
static void test_refuses_other_models(void **state) {
    char cmd[1024], out[1 << 15];
    assert_int_equal(system("mkdir -p build/test-logs/eval-infogan"), 0);
    idx_write_split(DIR_, "t10k", (const uint8_t[4]){0, 51, 204, 255});
    snprintf(cmd, sizeof cmd,
             "%s eval --infogan models/gan.safetensors --classifier models/classifier.safetensors --data %s "
             "--samples 40 --threads 1 2>&1",
             gmserve_bin(), DIR_);
    assert_int_equal(run_command(cmd, out, sizeof out), 1);
    assert_non_null(strstr(out, "not an InfoGAN"));
    snprintf(cmd, sizeof cmd, "%s eval --infogan models/infogan.safetensors --data %s 2>&1", gmserve_bin(), DIR_);
    assert_int_equal(run_command(cmd, out, sizeof out), 2);
    assert_non_null(strstr(out, "--infogan needs --classifier"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assignment_beats_greedy),
        cmocka_unit_test(test_assignment_finds_a_permutation),
        cmocka_unit_test(test_assignment_against_enumeration),
        cmocka_unit_test(test_stats_of_a_rectangle),
        cmocka_unit_test(test_slant_by_hand),
        cmocka_unit_test(test_threshold_and_empty),
        cmocka_unit_test(test_report_is_consistent),
        cmocka_unit_test(test_refuses_other_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
