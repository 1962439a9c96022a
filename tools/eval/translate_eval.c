/*
 * translate_eval.c - `gmserve eval --stargan FILE` and `--cyclegan FILE
 * --cycle-classes A,B` (models/README.md gives the protocol).
 *
 * A translator should reach its target and keep its source. The target is
 * judged by the evaluation classifier: the share of translations it assigns
 * to the target class. What survives of the source is measured twice, per
 * image, then averaged over the images:
 *   l1_to_source     mean |y - x| over the pixels, both in [0, 1]: 0 is the
 *                    image unchanged, so lower keeps more (but a translation
 *                    must change something);
 *   silhouette_iou   |S(x) and S(y)| / |S(x) or S(y)| with S the pixels
 *                    above 0.5 (1 when both are empty): the garment's
 *                    outline kept, whatever its texture became.
 * These are the figures models/train/translate_net.py monitors in PyTorch.
 *
 * StarGAN: test image n of class y goes to class t = (y + 1 + n mod (C-1))
 * mod C, C the model's classes: never y itself, every other class equally
 * often per source class (over each C-1 consecutive images of a class),
 * one translation per image. CycleGAN: the test images of class A go
 * forward (A -> B; accuracy: the classifier says B) and back with the
 * reverse generator, those of class B in reverse (B -> A) and back; the
 * cycle-consistency error is the mean |F(G(x)) - x| (resp. |G(F(x)) - x|)
 * per pixel, in [0, 1].
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gm/clock.h"
#include "gm/model.h"
#include "translate_eval.h"

typedef struct {
    const gm_model *m;
    const float *x; /* (n, D) */
    const int *labels;
    bool reverse;
    float *out; /* (n, D) */
    int D;
} translate_job;

static int translate_chunk(void *ctx, int first, int count) {
    translate_job *j = ctx;
    size_t at = (size_t)first * j->D;
    return gm_model_translate(j->m, count, j->x + at, j->labels ? j->labels + first : NULL, j->reverse, j->out + at);
}

static int translate_all(const char *what, const gm_model *m, const float *x, const int *labels, bool reverse, int n,
                         int threads, float *out) {
    translate_job j = {m, x, labels, reverse, out, gm_model_get_info(m)->dim};
    return gm_eval_parallel(what, n, 50, threads, translate_chunk, &j);
}

typedef struct {
    double l1, iou; /* means over the images */
} survival;

/* How much of each source image x survives in its translation y (n, D). */
static survival source_survival(const float *x, const float *y, int n, int D) {
    double l1 = 0, iou = 0;
    for (int i = 0; i < n; i++) {
        const float *a = x + (size_t)i * D, *b = y + (size_t)i * D;
        double s = 0;
        int inter = 0, uni = 0;
        for (int k = 0; k < D; k++) {
            s += fabsf(b[k] - a[k]);
            inter += a[k] > 0.5f && b[k] > 0.5f;
            uni += a[k] > 0.5f || b[k] > 0.5f;
        }
        l1 += s / D;
        iou += uni ? (double)inter / uni : 1.0;
    }
    return (survival){n ? l1 / n : 0, n ? iou / n : 0};
}

static gm_model *load_translator(const char *path, const gm_dataset *test, char err[GM_ERR_LEN]) {
    gm_model *m = gm_model_load(path, err);
    if (!m) return NULL;
    const gm_model_info *in = gm_model_get_info(m);
    if (in->family != GM_FAMILY_TRANSLATOR)
        gm_errorf(err, "%s: a %s model, where a translator was expected", path, gm_family_name(in->family));
    else if (in->dim != test->dim || in->channels != 1)
        gm_errorf(err, "%s: images of %dx%dx%d, the data's are %dx%dx1", path, in->height, in->width, in->channels,
                  test->height, test->width);
    else return m;
    gm_model_free(m);
    return NULL;
}

int gm_eval_stargan(const char *path, const gm_classifier *c, const gm_dataset *test, int threads, const char *grids,
                    json_t *report, char err[GM_ERR_LEN]) {
    gm_model *m = load_translator(path, test, err);
    if (!m) return -1;
    const gm_model_info *in = gm_model_get_info(m);
    int C = in->num_classes, n = test->n, D = in->dim, rc = -1;
    if (C < 2 || C != c->classes) {
        gm_errorf(err, "%s: %d target classes; --stargan needs a multi-domain translator over the classifier's %d",
                  path, C, c->classes);
        gm_model_free(m);
        return -1;
    }
    int *target = malloc(sizeof(int) * n), *pred = malloc(sizeof(int) * n), *asked = calloc((size_t)C, sizeof(int)),
        *hit = calloc((size_t)C, sizeof(int));
    float *y = malloc(sizeof(float) * n * D), *features = malloc(sizeof(float) * n * c->fdim);
    if (!target || !pred || !asked || !hit || !y || !features) {
        gm_errorf(err, "stargan evaluation: out of memory");
        goto done;
    }
    double t0 = gm_now_s();
    for (int i = 0; i < n; i++) target[i] = (test->labels[i] + 1 + i % (C - 1)) % C;
    if (translate_all("stargan translations", m, test->images, target, false, n, threads, y) ||
        gm_classify(c, y, n, D, threads, "classifier on translations", features, pred)) {
        gm_errorf(err, "stargan evaluation: out of memory");
        goto done;
    }
    int right = 0;
    for (int i = 0; i < n; i++) {
        asked[target[i]]++;
        hit[target[i]] += pred[i] == target[i];
        right += pred[i] == target[i];
    }
    survival s = source_survival(test->images, y, n, D);
    printf("stargan target accuracy %.2f %% (%d test images, each to class (y + 1 + n %% %d) %% %d), L1 to the "
           "source %.4f per pixel, silhouette IoU %.4f\n      per target class:",
           100.0 * right / n, n, C - 1, C, s.l1, s.iou);
    json_t *pc = json_array();
    for (int k = 0; k < C; k++) {
        double acc = asked[k] ? (double)hit[k] / asked[k] : 0;
        printf(" %s %.1f", in->class_names ? in->class_names[k] : "", 100 * acc);
        json_array_append_new(pc, json_real(acc));
    }
    printf("\n");
    fflush(stdout);
    char rule[64];
    snprintf(rule, sizeof rule, "(y + 1 + n %% %d) %% %d", C - 1, C);
    json_object_set_new(report, "stargan",
                        json_pack("{s:s,s:i,s:s,s:f,s:o,s:f,s:f,s:f}", "file", path, "images", n, "target_rule", rule,
                                  "target_accuracy", (double)right / n, "target_accuracy_per_class", pc, "l1_to_source",
                                  s.l1, "silhouette_iou", s.iou, "seconds", gm_now_s() - t0));
    rc = 0;
    if (grids) { /* a column per class (its first test image), row r: that image translated to class (y + r) % C */
        float *g = calloc((size_t)C * C * D, sizeof *g);
        int *lab = malloc(sizeof(int) * C * C);
        if (!g || !lab) rc = gm_errorf(err, "stargan grid: out of memory");
        for (int k = 0; !rc && k < C; k++) {
            int first = 0;
            while (first < n && test->labels[first] != k) first++;
            for (int r = 0; r < C; r++) {
                if (first < n) memcpy(g + (size_t)(r * C + k) * D, test->images + (size_t)first * D, sizeof(float) * D);
                lab[r * C + k] = (k + r) % C;
            }
        }
        /* row 0 stays the source; the others are translated in place */
        if (!rc && gm_model_translate(m, C * (C - 1), g + (size_t)C * D, lab + C, false, g + (size_t)C * D))
            rc = gm_errorf(err, "stargan grid: out of memory");
        char desc[160];
        snprintf(desc, sizeof desc, "gmserve eval: %s; top row test images, row r translated to class (y + r) %% %d",
                 path, C);
        if (!rc) rc = gm_eval_write_png(grids, "stargan", g, C * C, in->height, in->width, 1, desc, err);
        free(g);
        free(lab);
    }
done:
    free(target);
    free(pred);
    free(asked);
    free(hit);
    free(y);
    free(features);
    gm_model_free(m);
    return rc;
}

/* One direction of a CycleGAN: the n images x (of the source class) to the
 * target class and back; into r its accuracy, survival and cycle error. */
static int one_way(const gm_model *m, const gm_classifier *c, const float *x, int n, bool reverse, int target,
                   int threads, json_t *r, double *accuracy, double *cycle) {
    int D = gm_model_get_info(m)->dim, rc = -1;
    float *y = malloc(sizeof(float) * n * D), *back = malloc(sizeof(float) * n * D),
          *features = malloc(sizeof(float) * n * c->fdim);
    int *pred = malloc(sizeof(int) * n);
    const char *way = reverse ? "reverse" : "forward";
    char what[64];
    snprintf(what, sizeof what, "cyclegan %s", way);
    if (y && back && features && pred && !translate_all(what, m, x, NULL, reverse, n, threads, y) &&
        !translate_all("cyclegan back", m, y, NULL, !reverse, n, threads, back) &&
        !gm_classify(c, y, n, D, threads, "classifier on translations", features, pred)) {
        int right = 0;
        for (int i = 0; i < n; i++) right += pred[i] == target;
        survival s = source_survival(x, y, n, D), cyc = source_survival(x, back, n, D);
        *accuracy = (double)right / n;
        *cycle = cyc.l1;
        json_object_set_new(r, way,
                            json_pack("{s:i,s:f,s:f,s:f,s:f}", "images", n, "target_accuracy", *accuracy,
                                      "l1_to_source", s.l1, "silhouette_iou", s.iou, "cycle_l1", cyc.l1));
        rc = 0;
    }
    free(y);
    free(back);
    free(features);
    free(pred);
    return rc;
}

int gm_eval_cyclegan(const char *path, int class_a, int class_b, const gm_classifier *c, const gm_dataset *test,
                     int threads, const char *grids, json_t *report, char err[GM_ERR_LEN]) {
    gm_model *m = load_translator(path, test, err);
    if (!m) return -1;
    const gm_model_info *in = gm_model_get_info(m);
    int n = test->n, D = in->dim, na = 0, nb = 0, rc = -1;
    float *xa = NULL, *xb = NULL;
    if (!in->reverse || in->num_classes) {
        gm_errorf(err, "%s: --cyclegan needs a two-domain translator with a reverse generator (gm.reverse)", path);
        goto done;
    }
    if (class_a == class_b || class_a < 0 || class_b < 0 || class_a >= c->classes || class_b >= c->classes) {
        gm_errorf(err, "--cycle-classes %d,%d: two different classes of the data, 0 to %d", class_a, class_b,
                  c->classes - 1);
        goto done;
    }
    if (!(xa = malloc(sizeof(float) * n * D)) || !(xb = malloc(sizeof(float) * n * D))) {
        gm_errorf(err, "cyclegan evaluation: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const float *img = test->images + (size_t)i * D;
        if (test->labels[i] == class_a) memcpy(xa + (size_t)na++ * D, img, sizeof(float) * D);
        if (test->labels[i] == class_b) memcpy(xb + (size_t)nb++ * D, img, sizeof(float) * D);
    }
    if (!na || !nb) {
        gm_errorf(err, "--cycle-classes %d,%d: the test set has %d and %d images of them", class_a, class_b, na, nb);
        goto done;
    }
    double t0 = gm_now_s(), acc_f, acc_r, cyc_f, cyc_r;
    json_t *r = json_pack("{s:s,s:[s,s],s:[i,i]}", "file", path, "domains", in->domains[0], in->domains[1], "classes",
                          class_a, class_b);
    if (one_way(m, c, xa, na, false, class_b, threads, r, &acc_f, &cyc_f) ||
        one_way(m, c, xb, nb, true, class_a, threads, r, &acc_r, &cyc_r)) {
        json_decref(r);
        gm_errorf(err, "cyclegan evaluation: out of memory");
        goto done;
    }
    double acc = (acc_f * na + acc_r * nb) / (na + nb), cyc = (cyc_f * na + cyc_r * nb) / (na + nb);
    json_object_set_new(r, "target_accuracy", json_real(acc));
    json_object_set_new(r, "cycle_l1", json_real(cyc));
    json_object_set_new(r, "seconds", json_real(gm_now_s() - t0));
    json_object_set_new(report, "cyclegan", r);
    printf("cyclegan target accuracy %.2f %% (%s -> %s %.2f %% of %d test images of class %d, %s -> %s %.2f %% of %d "
           "of class %d), cycle-consistency error %.4f per pixel (%.4f, %.4f)\n",
           100 * acc, in->domains[0], in->domains[1], 100 * acc_f, na, class_a, in->domains[1], in->domains[0],
           100 * acc_r, nb, class_b, cyc, cyc_f, cyc_r);
    fflush(stdout);
    rc = 0;
    if (grids) { /* 6 columns; rows: A, G(A), F(G(A)), B, F(B), G(F(B)) */
        enum { COLS = 6 };
        int ka = na < COLS ? na : COLS, kb = nb < COLS ? nb : COLS;
        float *g = calloc((size_t)6 * COLS * D, sizeof *g);
        if (!g) rc = gm_errorf(err, "cyclegan grid: out of memory");
        for (int half = 0; !rc && half < 2; half++) {
            float *row = g + (size_t)half * 3 * COLS * D;
            int k = half ? kb : ka;
            memcpy(row, half ? xb : xa, sizeof(float) * k * D);
            if (gm_model_translate(m, k, row, NULL, half, row + (size_t)COLS * D) ||
                gm_model_translate(m, k, row + (size_t)COLS * D, NULL, !half, row + (size_t)2 * COLS * D))
                rc = gm_errorf(err, "cyclegan grid: out of memory");
        }
        char desc[160];
        snprintf(desc, sizeof desc, "gmserve eval: %s; rows A, G(A), F(G(A)), B, F(B), G(F(B))", path);
        if (!rc) rc = gm_eval_write_png(grids, "cyclegan", g, 6 * COLS, in->height, in->width, 1, desc, err);
        free(g);
    }
done:
    free(xa);
    free(xb);
    gm_model_free(m);
    return rc;
}
