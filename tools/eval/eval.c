/*
 * eval.c - `gmserve eval`: the quality of the bundled models, measured by
 * gmserve's own code on Fashion-MNIST (models/README.md gives the protocol).
 *
 *   NADE        exact test NLL on the fixed binarization (GM_BINARIZE_SEED)
 *   PixelCNN    the same, and its paired difference with the NADE's
 *   VAE         importance-sampled test NLL with K samples (its standard
 *               error across images and the mean Monte-Carlo error), ELBO
 *   GAN         Fréchet distance between samples and the test set in the
 *               classifier's penultimate features, next to the train-vs-test
 *               floor (same count); conditional accuracy (the classifier
 *               assigns the requested label)
 *   AAE         the same distance for its samples; test reconstruction
 *               error (mean squared error per pixel, grayscale) and the
 *               classifier's accuracy on the reconstructions; with a
 *               mixture prior, its components' accuracy as a classifier
 *   translators a StarGAN's and a CycleGAN's target accuracy, what survives
 *               of the source, and the cycle-consistency error
 *               (translate_eval.c)
 *   InfoGAN     its categories matched one-to-one to the classes (by Q on
 *               the test set, by the classifier on samples per category),
 *               and what each continuous code changes (infogan_eval.c)
 *   classifier  test accuracy
 *
 * Rows are split across threads (each OpenBLAS call single-threaded), with
 * progress on stderr. The results go to stdout as a table and, with --json,
 * to a file that models/train/stamp_metrics.py writes into gm.metrics.
 * --grids DIR writes a sample grid PNG per model.
 */
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "eval.h"
#include "eval_parts.h"
#include "frechet.h"
#include "gm/clock.h"
#include "gm/layers.h"
#include "gm/model.h"
#include "infogan_eval.h"
#include "pngio.h"
#include "translate_eval.h"

#define SAMPLE_SEED 1

typedef struct {
    const char *nade, *vae, *pixelcnn, *pixelrnn, *gan, *aae, *infogan, *stargan, *cyclegan, *cycle_classes,
        *classifier, *data, *json, *grids;
    int k, vae_images, samples, threads;
} options;

/* ---- a parallel loop over chunks of rows, with progress ---- */

typedef struct {
    int (*fn)(void *ctx, int first, int count);
    void *ctx;
    int n, chunk;
    atomic_int next, done, failed;
    const char *what;
    double t0;
} loop;

static void *loop_thread(void *arg) {
    loop *l = arg;
    for (;;) {
        int first = atomic_fetch_add(&l->next, l->chunk);
        if (first >= l->n || atomic_load(&l->failed)) return NULL;
        int count = first + l->chunk <= l->n ? l->chunk : l->n - first;
        if (l->fn(l->ctx, first, count)) atomic_store(&l->failed, 1);
        int d = atomic_fetch_add(&l->done, count) + count;
        int step = l->n / 20 > 0 ? l->n / 20 : 1;
        if (d / step != (d - count) / step || d == l->n)
            fprintf(stderr, "\r  %s: %d/%d (%.0f s)   ", l->what, d, l->n, gm_now_s() - l->t0);
    }
}

int gm_eval_parallel(const char *what, int n, int chunk, int threads, int (*fn)(void *, int, int), void *ctx) {
    loop l = {.fn = fn, .ctx = ctx, .n = n, .chunk = chunk, .what = what, .t0 = gm_now_s()};
    pthread_t t[64];
    int started = 0;
    for (; started < threads - 1 && started < 64; started++)
        if (pthread_create(&t[started], NULL, loop_thread, &l)) break;
    loop_thread(&l);
    for (int i = 0; i < started; i++) pthread_join(t[i], NULL);
    fprintf(stderr, "\n");
    return atomic_load(&l.failed) ? -1 : 0;
}

/* ---- the classifier: two layer lists, features and head ---- */

static int classifier_load(gm_classifier *c, const char *path, int h, int w, char err[GM_ERR_LEN]) {
    memset(c, 0, sizeof *c);
    gm_st *st = gm_st_load(path, err);
    if (!st) return -1;
    const char *fam = gm_st_meta(st, "gm.family"), *fj = gm_st_meta(st, "gm.features"), *hj = gm_st_meta(st, "gm.head");
    int rc = -1;
    if (!fam || strcmp(fam, "classifier") || !fj || !hj) {
        gm_errorf(err, "%s: not a classifier file (gm.family \"classifier\" with gm.features and gm.head)", path);
        goto done;
    }
    c->features = gm_net_build(st, "gm.features", fj, gm_shape3(1, h, w), err);
    if (!c->features) goto done;
    c->fdim = gm_shape_size(gm_net_out_shape(c->features));
    c->head = gm_net_build(st, "gm.head", hj, gm_shape1(c->fdim), err);
    if (!c->head) goto done;
    c->classes = gm_shape_size(gm_net_out_shape(c->head));
    rc = 0;
done:
    gm_st_free(st);
    return rc;
}

static void classifier_free(gm_classifier *c) {
    gm_net_free(c->features);
    gm_net_free(c->head);
}

typedef struct {
    const gm_classifier *c;
    const float *pixels; /* (n, D) in [0, 1] */
    int D;
    float *features; /* (n, fdim) */
    int *predicted;  /* (n) */
} classify_job;

static int classify_chunk(void *ctx, int first, int count) {
    classify_job *j = ctx;
    float *f = j->features + (size_t)first * j->c->fdim;
    float *logits = malloc(sizeof(float) * count * j->c->classes);
    int rc = -1;
    if (logits && !gm_net_forward(j->c->features, count, j->pixels + (size_t)first * j->D, f) &&
        !gm_net_forward(j->c->head, count, f, logits)) {
        for (int r = 0; r < count; r++) {
            int best = 0;
            for (int k = 1; k < j->c->classes; k++)
                if (logits[r * j->c->classes + k] > logits[r * j->c->classes + best]) best = k;
            j->predicted[first + r] = best;
        }
        rc = 0;
    }
    free(logits);
    return rc;
}

int gm_classify(const gm_classifier *c, const float *pixels, int n, int D, int threads, const char *what,
                float *features, int *predicted) {
    classify_job j = {c, pixels, D, features, predicted};
    return gm_eval_parallel(what, n, 250, threads, classify_chunk, &j);
}

typedef struct {
    const gm_classifier *c;
    int D, threads;
} classify_ctx;

/* gm_classify_fn over classify(): the labels only. */
static int classify_labels(void *ctx, const float *pixels, int n, int *predicted) {
    const classify_ctx *k = ctx;
    float *f = malloc(sizeof(float) * (size_t)n * k->c->fdim);
    int rc = !f || gm_classify(k->c, pixels, n, k->D, k->threads, "classifier on infogan samples", f, predicted);
    free(f);
    return rc ? -1 : 0;
}

/* ---- likelihoods ---- */

typedef struct {
    const gm_model *m;
    const float *x;
    int D, K;
    gm_logp_result *out;
} logp_job;

static int logp_chunk(void *ctx, int first, int count) {
    logp_job *j = ctx;
    gm_row *rows = calloc((size_t)count, sizeof *rows);
    if (!rows) return -1;
    for (int r = 0; r < count; r++) gm_rng_seed(&rows[r].rng, SAMPLE_SEED, (uint64_t)(first + r));
    int rc = gm_model_logp(j->m, count, j->x + (size_t)first * j->D, j->K, rows, j->out + first);
    free(rows);
    return rc;
}

typedef struct {
    double mean, se; /* of -log p over images */
} stat;

static stat nll_stat(const gm_logp_result *r, int n, int use_elbo) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) {
        double v = -(use_elbo ? r[i].elbo : r[i].logp);
        s += v;
        s2 += v * v;
    }
    double mean = s / n;
    return (stat){mean, sqrt(fmax(s2 / n - mean * mean, 0) / (n - 1))};
}

static gm_model *load_model(const char *path, gm_family want, char err[GM_ERR_LEN]) {
    gm_model *m = gm_model_load(path, err);
    if (m && gm_model_get_info(m)->family != want) {
        gm_errorf(err, "%s: a %s model, where %s was expected", path, gm_family_name(gm_model_get_info(m)->family),
                  gm_family_name(want));
        gm_model_free(m);
        return NULL;
    }
    return m;
}

/* Writes n samples of m (rows seeded SAMPLE_SEED, labels round-robin for a
 * conditional model) as a grid PNG. */
static int write_grid(const gm_model *m, const char *dir, const char *name, int n, char err[GM_ERR_LEN]) {
    const gm_model_info *in = gm_model_get_info(m);
    gm_row *rows = calloc((size_t)n, sizeof *rows);
    float *px = malloc(sizeof(float) * n * in->dim);
    int rc = -1;
    if (!rows || !px) goto done;
    for (int r = 0; r < n; r++) {
        gm_rng_seed(&rows[r].rng, SAMPLE_SEED, (uint64_t)r);
        rows[r].temperature = 1.0f;
        rows[r].label = in->num_classes ? (r % in->num_classes) : 0;
    }
    if (gm_model_sample(m, n, rows, px, NULL)) goto done;
    if (in->num_classes) { /* one row of the grid per class: transpose */
        float *t = malloc(sizeof(float) * n * in->dim);
        if (!t) goto done;
        int per = n / in->num_classes;
        for (int r = 0; r < n; r++)
            memcpy(t + (size_t)((r % in->num_classes) * per + r / in->num_classes) * in->dim, px + (size_t)r * in->dim,
                   sizeof(float) * in->dim);
        free(px);
        px = t;
    }
    char desc[128];
    snprintf(desc, sizeof desc, "gmserve eval: %d samples of %s, seed %d", n, name, SAMPLE_SEED);
    rc = gm_eval_write_png(dir, name, px, n, in->height, in->width, in->channels, desc, err);
done:
    free(rows);
    free(px);
    return rc;
}

int gm_eval_write_png(const char *dir, const char *name, const float *px, int n, int h, int w, int c, const char *desc,
                      char err[GM_ERR_LEN]) {
    char path[4096];
    uint8_t *png = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/%s.png", dir, name);
    if (gm_png_encode(px, n, h, w, c, 2, desc, &png, &len, err)) return -1;
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(png, 1, len, f) == len;
    if (f && fclose(f)) ok = false;
    free(png);
    if (!ok) return gm_errorf(err, "%s: cannot write", path);
    fprintf(stderr, "  wrote %s\n", path);
    return 0;
}

/* Scores the fixed binarized test set; *kept receives the per-image results
 * (caller frees) for the paired comparison of two models. */
static int eval_likelihood(const options *o, const char *path, gm_family fam, const gm_dataset *test,
                           const float *test_bin, json_t *report, gm_logp_result **kept, int *kept_n,
                           char err[GM_ERR_LEN]) {
    gm_model *m = load_model(path, fam, err);
    if (!m) return -1;
    const gm_model_info *in = gm_model_get_info(m);
    int n = fam == GM_FAMILY_VAE && o->vae_images < test->n ? o->vae_images : test->n;
    int K = fam == GM_FAMILY_VAE ? o->k : 1;
    gm_logp_result *res = calloc((size_t)n, sizeof *res);
    int rc = -1;
    if (in->dim != test->dim) {
        gm_errorf(err, "%s: image of %d pixels, the data has %d", path, in->dim, test->dim);
        goto done;
    }
    logp_job j = {m, test_bin, in->dim, K, res};
    char what[64];
    snprintf(what, sizeof what, "%s log p%s", gm_family_name(fam), fam == GM_FAMILY_VAE ? " (K samples)" : "");
    double t0 = gm_now_s();
    if (!res || gm_eval_parallel(what, n, fam == GM_FAMILY_VAE ? 2 : 100, o->threads, logp_chunk, &j)) {
        gm_errorf(err, "%s: out of memory", path);
        goto done;
    }
    stat nll = nll_stat(res, n, 0);
    double bpd = nll.mean / (in->dim * log(2.0));
    json_t *r = json_pack("{s:s,s:f,s:f,s:f,s:i,s:i,s:i,s:f}", "file", path, "test_nll_nats", nll.mean, "test_nll_se",
                          nll.se, "bits_per_dim", bpd, "test_images", n, "binarization_seed", (int)GM_BINARIZE_SEED,
                          "k", K, "seconds", gm_now_s() - t0);
    printf("%-5s test NLL %.2f nats (+- %.2f over %d images), %.4f bits/dim", gm_family_name(fam), nll.mean, nll.se, n,
           bpd);
    if (fam == GM_FAMILY_VAE) {
        stat elbo = nll_stat(res, n, 1);
        double mc = 0;
        for (int i = 0; i < n; i++) mc += res[i].se;
        json_object_set_new(r, "test_neg_elbo_nats", json_real(elbo.mean));
        json_object_set_new(r, "mean_monte_carlo_se", json_real(mc / n));
        printf(", K = %d (mean Monte-Carlo se %.3f); -ELBO %.2f", K, mc / n, elbo.mean);
    }
    printf("\n");
    fflush(stdout);
    json_object_set_new(report, gm_family_name(fam), r);
    rc = o->grids ? write_grid(m, o->grids, gm_family_name(fam), 64, err) : 0;
    *kept = res;
    *kept_n = n;
    res = NULL;
done:
    free(res);
    gm_model_free(m);
    return rc;
}

/* Model a minus model b log p (the VAE or the PixelCNN minus the NADE),
 * image by image: the standard error of a paired difference is far smaller
 * than either model's spread over images. */
static void compare(const char *name_a, const gm_logp_result *a, const char *name_b, const gm_logp_result *b, int n,
                    json_t *report) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) {
        double d = a[i].logp - b[i].logp;
        s += d;
        s2 += d * d;
    }
    double mean = s / n, se = sqrt(fmax(s2 / n - mean * mean, 0) / (n - 1));
    char key[64];
    snprintf(key, sizeof key, "%s_minus_%s", name_a, name_b);
    printf("%s - %s log p: %+.3f nats per image (paired standard error %.3f, %d images): the %s is better\n", name_a,
           name_b, mean, se, n, mean > 0 ? name_a : name_b);
    json_object_set_new(report, key, json_pack("{s:f,s:f,s:i}", "logp_nats", mean, "paired_se", se, "images", n));
}

typedef struct {
    double distance, mean_term; /* mean_term: the |mu_a - mu_b|^2 part */
    double spread;              /* tr(S_a) / tr(S_b): below 1, a has less variety than b */
} frechet_parts;

/* The Fréchet distance between Gaussians fitted to the feature sets a and b,
 * split so that a shift of the whole set shows apart from a lack of variety.
 * Returns 0, or -1 when out of memory. */
static int frechet_of(const float *a, int na, const float *b, int nb, int d, frechet_parts *out) {
    double *m1 = malloc(sizeof(double) * d), *m2 = malloc(sizeof(double) * d);
    double *s1 = malloc(sizeof(double) * d * d), *s2 = malloc(sizeof(double) * d * d);
    int rc = -1;
    if (m1 && m2 && s1 && s2 && !gm_gaussian_fit(a, na, d, m1, s1) && !gm_gaussian_fit(b, nb, d, m2, s2)) {
        out->distance = gm_frechet_distance(m1, s1, m2, s2, d);
        double tr1 = 0, tr2 = 0;
        out->mean_term = 0;
        for (int i = 0; i < d; i++) {
            out->mean_term += (m1[i] - m2[i]) * (m1[i] - m2[i]);
            tr1 += s1[i * d + i];
            tr2 += s2[i * d + i];
        }
        out->spread = tr2 > 0 ? tr1 / tr2 : 0;
        rc = out->distance < 0 ? -1 : 0;
    }
    free(m1);
    free(m2);
    free(s1);
    free(s2);
    return rc;
}

/* The rows of x (n, d) whose label is k, copied to out; labels NULL means
 * row r has label r % classes (the round-robin labels of the samples).
 * Returns how many. */
static int rows_of_class(const float *x, int n, int d, const int *labels, int classes, int k, float *out) {
    int m = 0;
    for (int r = 0; r < n; r++)
        if ((labels ? labels[r] : r % classes) == k)
            memcpy(out + (size_t)m++ * d, x + (size_t)r * d, sizeof(float) * d);
    return m;
}

typedef struct {
    const gm_model *m;
    float *pixels;
    int D, classes;
} sample_job;

static int sample_chunk(void *ctx, int first, int count) {
    sample_job *j = ctx;
    gm_row *rows = calloc((size_t)count, sizeof *rows);
    if (!rows) return -1;
    for (int r = 0; r < count; r++) {
        gm_rng_seed(&rows[r].rng, SAMPLE_SEED, (uint64_t)(first + r));
        rows[r].temperature = 1.0f;
        rows[r].label = j->classes ? (first + r) % j->classes : 0;
    }
    int rc = gm_model_sample(j->m, count, rows, j->pixels + (size_t)first * j->D, NULL);
    free(rows);
    return rc;
}

/* The distance class by class, samples of label k against test images of
 * label k: which classes lack variety (spread < 1) or sit apart (mean term).
 * scratch holds n * d floats. Skipped when a class has under two rows. */
static int per_class_frechet(const float *fs, int n, const float *ft, int nt, int d, const int *test_labels,
                             int classes, const char *const *names, float *scratch, json_t *report) {
    float *real = malloc(sizeof(float) * nt * d);
    json_t *dist = json_array(), *spread = json_array();
    int rc = -1;
    if (!real || !dist || !spread) goto done;
    printf("\n      per class, Fréchet distance (feature spread of samples / test):");
    for (int k = 0; k < classes; k++) {
        int ns = rows_of_class(fs, n, d, NULL, classes, k, scratch);
        int nr = rows_of_class(ft, nt, d, test_labels, classes, k, real);
        frechet_parts p;
        if (ns < 2 || nr < 2) {
            printf(" (too few rows)");
            rc = 0;
            goto done;
        }
        if (frechet_of(scratch, ns, real, nr, d, &p)) goto done;
        printf(" %s %.1f (%.2f)", names ? names[k] : "", p.distance, p.spread);
        json_array_append_new(dist, json_real(p.distance));
        json_array_append_new(spread, json_real(p.spread));
    }
    json_object_set(report, "frechet_per_class", dist);
    json_object_set(report, "feature_spread_per_class", spread);
    rc = 0;
done:
    json_decref(dist);
    json_decref(spread);
    free(real);
    return rc;
}

typedef struct {
    const gm_model *m;
    const float *x;
    float *out;
    int D;
} reconstruct_job;

static int reconstruct_chunk(void *ctx, int first, int count) {
    reconstruct_job *j = ctx;
    size_t at = (size_t)first * j->D;
    return gm_model_reconstruct(j->m, count, j->x + at, j->out + at);
}

/* The first n test images of an AAE through encoder and decoder: the mean
 * squared error per pixel (with its standard error over images), how many
 * reconstructions the classifier still assigns to the image's class, and
 * the Fréchet distance of the reconstructions to the test images (ft, their
 * features): what the decoder loses even where the codes are right, a
 * floor for the samples' distance. scratch: n * D floats, features: n *
 * fdim, pred: n. */
static int eval_reconstruction(const options *o, const gm_model *m, const gm_classifier *c, const gm_dataset *test,
                               int n, const float *ft, float *scratch, float *features, int *pred, json_t *r) {
    int D = test->dim;
    reconstruct_job rj = {m, test->images, scratch, D};
    if (gm_eval_parallel("aae reconstructions", n, 100, o->threads, reconstruct_chunk, &rj) ||
        gm_classify(c, scratch, n, D, o->threads, "classifier on reconstructions", features, pred))
        return -1;
    double s = 0, s2 = 0;
    int right = 0;
    for (int i = 0; i < n; i++) {
        double e = 0;
        for (int j = 0; j < D; j++) {
            double d = (double)scratch[(size_t)i * D + j] - test->images[(size_t)i * D + j];
            e += d * d;
        }
        e /= D;
        s += e;
        s2 += e * e;
        right += pred[i] == test->labels[i];
    }
    double mse = s / n, se = sqrt(fmax(s2 / n - mse * mse, 0) / (n - 1));
    frechet_parts fd;
    if (frechet_of(features, n, ft, n, c->fdim, &fd)) return -1;
    printf("\n      test reconstruction: mean squared error %.5f per pixel (+- %.5f over %d images), classifier "
           "accuracy on the reconstructions %.2f %%, Fréchet distance of the reconstructions %.3f",
           mse, se, n, 100.0 * right / n, fd.distance);
    json_object_set_new(r, "reconstruction_frechet_distance", json_real(fd.distance));
    json_object_set_new(r, "reconstruction_mse", json_real(mse));
    json_object_set_new(r, "reconstruction_mse_se", json_real(se));
    json_object_set_new(r, "reconstruction_accuracy", json_real((double)right / n));
    json_object_set_new(r, "reconstruction_images", json_integer(n));
    return 0;
}

typedef struct {
    const gm_model *m;
    const float *x;
    int D, Z, K;
    int *best;
} component_job;

static int component_chunk(void *ctx, int first, int count) {
    component_job *j = ctx;
    float *z = malloc(sizeof(float) * count * j->Z);
    double *probs = malloc(sizeof(double) * count * j->K);
    int rc = -1;
    if (z && probs && !gm_model_encode(j->m, count, j->x + (size_t)first * j->D, z, NULL) &&
        !gm_model_component_probs(j->m, count, z, probs, j->best + first))
        rc = 0;
    free(z);
    free(probs);
    return rc;
}

/* A mixture-prior AAE's components as a classifier (the paper's point in
 * giving the prior one component per class: the encoder classifies): the
 * share of the first n test images whose code's most likely component is
 * their label, overall and per class. best: n ints. */
static int eval_components(const options *o, const gm_model *m, const gm_dataset *test, int n, int *best, json_t *r) {
    const gm_model_info *in = gm_model_get_info(m);
    int K = in->num_classes;
    component_job j = {m, test->images, test->dim, in->latent_dim, K, best};
    if (gm_eval_parallel("aae components", n, 100, o->threads, component_chunk, &j)) return -1;
    int right = 0, hit[1024] = {0}, seen[1024] = {0};
    for (int i = 0; i < n; i++) {
        int y = test->labels[i];
        right += best[i] == y;
        if (y < 1024) seen[y]++, hit[y] += best[i] == y;
    }
    printf("\n      components as a classifier: accuracy %.2f %% on %d test images; per class:", 100.0 * right / n, n);
    json_t *pc = json_array();
    for (int k = 0; k < K && k < 1024; k++) {
        double acc = seen[k] ? (double)hit[k] / seen[k] : 0;
        printf(" %s %.1f", in->class_names ? in->class_names[k] : "", 100 * acc);
        json_array_append_new(pc, json_real(acc));
    }
    json_object_set_new(r, "component_accuracy", json_real((double)right / n));
    json_object_set_new(r, "component_accuracy_per_class", pc);
    return 0;
}

/* A sampling model's Fréchet distance (and, for a GAN, its conditional
 * accuracy; for an AAE, its reconstructions and a mixture prior's
 * components as a classifier), under report[name]. */
static int eval_samples(const options *o, const char *path, gm_family fam, const gm_classifier *c,
                        const gm_dataset *train, const gm_dataset *test, json_t *report, char err[GM_ERR_LEN]) {
    const char *name = gm_family_name(fam);
    gm_model *m = load_model(path, fam, err);
    if (!m) return -1;
    const gm_model_info *in = gm_model_get_info(m);
    int n = o->samples, D = in->dim, F = c->fdim, rc = -1;
    int nt = n < test->n ? n : test->n, nr = n < train->n ? n : train->n;
    float *px = malloc(sizeof(float) * n * D), *fs = malloc(sizeof(float) * n * F);
    float *ft = malloc(sizeof(float) * nt * F), *fr = malloc(sizeof(float) * nr * F);
    int *pred = malloc(sizeof(int) * (n > train->n ? n : train->n));
    if (!px || !fs || !ft || !fr || !pred) {
        gm_errorf(err, "%s evaluation: out of memory", name);
        goto done;
    }
    if (D != test->dim) {
        gm_errorf(err, "%s: image of %d pixels, the data has %d", path, D, test->dim);
        goto done;
    }
    sample_job sj = {m, px, D, in->num_classes};
    if (gm_eval_parallel(fam == GM_FAMILY_GAN ? "gan samples" : "aae samples", n, 100, o->threads, sample_chunk, &sj) ||
        gm_classify(c, px, n, D, o->threads, "classifier on samples", fs, pred))
        goto oom;
    int right = 0, per_class[1024] = {0}, classes = in->num_classes < 1024 ? in->num_classes : 0;
    for (int r = 0; r < n && classes; r++)
        if (pred[r] == r % classes) right++, per_class[r % classes]++;
    if (gm_classify(c, test->images, nt, D, o->threads, "classifier on test", ft, pred)) goto oom;
    if (gm_classify(c, train->images, nr, D, o->threads, "classifier on train", fr, pred)) goto oom;
    frechet_parts fd, floor;
    if (frechet_of(fs, n, ft, nt, F, &fd) || frechet_of(fr, nr, ft, nt, F, &floor)) goto oom;
    printf("%-5s Fréchet distance %.3f to %d test images (train-vs-test floor %.3f, ratio %.1fx), %d samples", name,
           fd.distance, nt, floor.distance, fd.distance / floor.distance, n);
    json_t *r = json_pack("{s:s,s:f,s:f,s:f,s:f,s:f,s:i,s:i,s:s}", "file", path, "frechet_distance", fd.distance,
                          "frechet_mean_term", fd.mean_term, "feature_spread", fd.spread, "frechet_floor_train_vs_test",
                          floor.distance, "frechet_ratio", fd.distance / floor.distance, "samples", n, "feature_dim", F,
                          "features", "classifier penultimate layer (models/classifier.safetensors)");
    if (classes) {
        printf(", conditional accuracy %.2f %%\n      per class:", 100.0 * right / n);
        json_t *pc = json_array();
        for (int k = 0; k < classes; k++) {
            int asked = n / classes + (k < n % classes); /* labels are round-robin */
            double acc = asked ? (double)per_class[k] / asked : 0;
            printf(" %s %.1f", in->class_names ? in->class_names[k] : "", 100 * acc);
            json_array_append_new(pc, json_real(acc));
        }
        json_object_set_new(r, "conditional_accuracy", json_real((double)right / n));
        json_object_set_new(r, "conditional_accuracy_per_class", pc);
        if (per_class_frechet(fs, n, ft, nt, F, test->labels, classes, in->class_names, px, r)) {
            json_decref(r);
            goto oom;
        }
    }
    if (fam == GM_FAMILY_AAE && (eval_reconstruction(o, m, c, test, nt, ft, px, fs, pred, r) ||
                                 (in->mixture_prior && eval_components(o, m, test, nt, pred, r)))) {
        json_decref(r);
        goto oom;
    }
    printf("\n");
    fflush(stdout);
    json_object_set_new(report, name, r);
    rc = o->grids ? write_grid(m, o->grids, name, 100, err) : 0;
    goto done;
oom:
    gm_errorf(err, "%s evaluation: out of memory", name);
done:
    free(px);
    free(fs);
    free(ft);
    free(fr);
    free(pred);
    gm_model_free(m);
    return rc;
}

static int usage(void) {
    fprintf(stderr,
            "usage: gmserve eval [--nade FILE] [--vae FILE] [--pixelcnn FILE] [--pixelrnn FILE]\n"
            "                    [--gan FILE --classifier FILE]\n"
            "                    [--aae FILE --classifier FILE] [--infogan FILE --classifier FILE]\n"
            "                    [--stargan FILE --classifier FILE]\n"
            "                    [--cyclegan FILE --cycle-classes A,B --classifier FILE] [--classifier FILE]\n"
            "                    [--k 1000] [--vae-images N] [--samples 10000] [--threads 2]\n"
            "                    [--data %s] [--json OUT] [--grids DIR]\n",
            GM_DATASET_DIR);
    return 2;
}

int gm_eval_main(int argc, char **argv) {
    options o = {.data = GM_DATASET_DIR, .k = 1000, .vae_images = 10000, .samples = 10000, .threads = 2};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage();
        const char **s = !strcmp(a, "--nade")            ? &o.nade
                         : !strcmp(a, "--vae")           ? &o.vae
                         : !strcmp(a, "--pixelcnn")      ? &o.pixelcnn
                         : !strcmp(a, "--pixelrnn")      ? &o.pixelrnn
                         : !strcmp(a, "--gan")           ? &o.gan
                         : !strcmp(a, "--aae")           ? &o.aae
                         : !strcmp(a, "--infogan")       ? &o.infogan
                         : !strcmp(a, "--stargan")       ? &o.stargan
                         : !strcmp(a, "--cyclegan")      ? &o.cyclegan
                         : !strcmp(a, "--cycle-classes") ? &o.cycle_classes
                         : !strcmp(a, "--classifier")    ? &o.classifier
                         : !strcmp(a, "--data")          ? &o.data
                         : !strcmp(a, "--json")          ? &o.json
                         : !strcmp(a, "--grids")         ? &o.grids
                                                         : NULL;
        int *n = !strcmp(a, "--k")            ? &o.k
                 : !strcmp(a, "--vae-images") ? &o.vae_images
                 : !strcmp(a, "--samples")    ? &o.samples
                 : !strcmp(a, "--threads")    ? &o.threads
                                              : NULL;
        if (s) *s = v;
        else if (n) {
            char *end;
            long x = strtol(v, &end, 10);
            if (*end || x < 1 || x > 10000000) return usage();
            *n = (int)x;
        } else return usage();
        i++;
    }
    if ((o.gan || o.aae) && !o.classifier) {
        fprintf(stderr, "gmserve eval: --gan and --aae need --classifier (the features of the Fréchet distance)\n");
        return 2;
    }
    if (o.infogan && !o.classifier) {
        fprintf(stderr, "gmserve eval: --infogan needs --classifier (it labels the samples of each category)\n");
        return 2;
    }
    if ((o.stargan || o.cyclegan) && !o.classifier) {
        fprintf(stderr, "gmserve eval: --stargan and --cyclegan need --classifier (it judges the target class)\n");
        return 2;
    }
    int class_a = -1, class_b = -1, used = 0;
    if (!o.cyclegan != !o.cycle_classes ||
        (o.cycle_classes &&
         (sscanf(o.cycle_classes, "%d,%d%n", &class_a, &class_b, &used) != 2 || o.cycle_classes[used] != 0))) {
        fprintf(stderr, "gmserve eval: --cyclegan FILE takes --cycle-classes A,B: its domains' dataset classes, e.g. "
                        "7,9\n");
        return 2;
    }
    if (o.samples < 2 || o.threads > 64) return usage();
    openblas_set_num_threads(1);
    char err[GM_ERR_LEN];
    gm_dataset train = {0}, test = {0};
    float *test_bin = NULL;
    gm_classifier c = {0};
    gm_logp_result *nade_res = NULL, *vae_res = NULL, *pcnn_res = NULL, *prnn_res = NULL;
    int nade_n = 0, vae_n = 0, pcnn_n = 0, prnn_n = 0;
    json_t *report = json_object();
    int rc = 1;
    if (gm_dataset_load(&test, o.data, "t10k", err)) goto fail;
    if ((o.gan || o.aae) && gm_dataset_load(&train, o.data, "train", err)) goto fail;
    if (!(test_bin = malloc(sizeof(float) * test.n * test.dim))) goto oom;
    gm_binarize(&test, 0, test.n, GM_BINARIZE_SEED, test_bin);
    if (o.nade && eval_likelihood(&o, o.nade, GM_FAMILY_NADE, &test, test_bin, report, &nade_res, &nade_n, err))
        goto fail;
    if (o.vae && eval_likelihood(&o, o.vae, GM_FAMILY_VAE, &test, test_bin, report, &vae_res, &vae_n, err)) goto fail;
    if (nade_res && vae_res) compare("vae", vae_res, "nade", nade_res, vae_n < nade_n ? vae_n : nade_n, report);
    if (o.pixelcnn &&
        eval_likelihood(&o, o.pixelcnn, GM_FAMILY_PIXELCNN, &test, test_bin, report, &pcnn_res, &pcnn_n, err))
        goto fail;
    if (nade_res && pcnn_res)
        compare("pixelcnn", pcnn_res, "nade", nade_res, pcnn_n < nade_n ? pcnn_n : nade_n, report);
    if (o.pixelrnn &&
        eval_likelihood(&o, o.pixelrnn, GM_FAMILY_PIXELRNN, &test, test_bin, report, &prnn_res, &prnn_n, err))
        goto fail;
    if (nade_res && prnn_res)
        compare("pixelrnn", prnn_res, "nade", nade_res, prnn_n < nade_n ? prnn_n : nade_n, report);
    if (o.classifier) {
        if (classifier_load(&c, o.classifier, test.height, test.width, err)) goto fail;
        float *f = malloc(sizeof(float) * test.n * c.fdim);
        int *pred = malloc(sizeof(int) * test.n);
        if (!f || !pred || gm_classify(&c, test.images, test.n, test.dim, o.threads, "classifier on test", f, pred)) {
            free(f);
            free(pred);
            goto oom;
        }
        int right = 0, hit[1024] = {0}, seen[1024] = {0};
        for (int i = 0; i < test.n; i++) {
            right += pred[i] == test.labels[i];
            if (test.labels[i] < 1024) seen[test.labels[i]]++, hit[test.labels[i]] += pred[i] == test.labels[i];
        }
        free(f);
        free(pred);
        printf("classifier test accuracy %.2f %% (%d images, %d features)\n      per class:", 100.0 * right / test.n,
               test.n, c.fdim);
        json_t *pc = json_array();
        for (int k = 0; k < c.classes && k < 1024; k++) {
            double acc = seen[k] ? (double)hit[k] / seen[k] : 0;
            printf(" %.1f", 100 * acc);
            json_array_append_new(pc, json_real(acc));
        }
        printf("\n");
        fflush(stdout);
        json_object_set_new(report, "classifier",
                            json_pack("{s:s,s:f,s:o,s:i}", "file", o.classifier, "test_accuracy",
                                      (double)right / test.n, "test_accuracy_per_class", pc, "feature_dim", c.fdim));
    }
    if (o.gan && eval_samples(&o, o.gan, GM_FAMILY_GAN, &c, &train, &test, report, err)) goto fail;
    if (o.aae && eval_samples(&o, o.aae, GM_FAMILY_AAE, &c, &train, &test, report, err)) goto fail;
    classify_ctx cc = {&c, test.dim, o.threads};
    if (o.infogan && gm_eval_infogan(o.infogan, &test, o.samples, classify_labels, &cc, o.grids, report, err))
        goto fail;
    if (o.stargan && gm_eval_stargan(o.stargan, &c, &test, o.threads, o.grids, report, err)) goto fail;
    if (o.cyclegan && gm_eval_cyclegan(o.cyclegan, class_a, class_b, &c, &test, o.threads, o.grids, report, err))
        goto fail;
    if (o.json && json_dump_file(report, o.json, JSON_INDENT(2))) {
        gm_errorf(err, "%s: cannot write", o.json);
        goto fail;
    }
    rc = 0;
    goto done;
oom:
    gm_errorf(err, "out of memory");
fail:
    fprintf(stderr, "gmserve eval: %s\n", err);
done:
    json_decref(report);
    free(nade_res);
    free(vae_res);
    free(pcnn_res);
    free(prnn_res);
    classifier_free(&c);
    free(test_bin);
    gm_dataset_free(&train);
    gm_dataset_free(&test);
    return rc;
}
