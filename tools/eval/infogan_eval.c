/*
 * infogan_eval.c - `gmserve eval --infogan FILE --classifier FILE`: what an
 * InfoGAN (Chen et al. 2016), trained without labels, put in its codes.
 *
 * Categorical code, two views of how well its categories are the classes:
 *   Q       Q's argmax category of each test image against the image's true
 *           class: the 10x10 confusion, the one-to-one category -> class
 *           assignment that maximizes the matches (gm_best_assignment), and
 *           the share of test images it gets right
 *   samples the same with the classifier's labels of images sampled with a
 *           given category (equal numbers per category), and each
 *           category's purity (the share labelled its assigned class)
 * Continuous codes: each one swept from -2 to 2 in steps of 0.5, the other
 * codes at 0 and z and the category fixed per row over many rows; per value
 * the mean of each gm_image_stats statistic. A code's effect on a
 * statistic is the mean change from code -1 to +1 (the range it was
 * trained on) over the statistic's standard deviation across the rows at
 * code 0; the statistic it moves most is the largest in magnitude.
 */
#include "infogan_eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval_parts.h"
#include "gm/model.h"

#define SEED 1
#define SWEEP_STEPS 9   /* -2, -1.5, ..., 2 */
#define GRID_COLUMNS 10 /* -2 .. 2 in 9 equal steps */
#define MAX_SWEEP_ROWS 2000
#define CHUNK 500

const char *const GM_IMAGE_STAT_NAMES[GM_IMAGE_STATS] = {"brightness", "width", "height", "slant"};

double gm_best_assignment(const double *m, int n, int *assign) {
    if (n < 1 || n > GM_ASSIGN_MAX) return -1;
    /* Shortest augmenting paths with potentials u (rows), v (columns) on the
     * cost -m; index 0 is the virtual start, p[j] the row matched to column j. */
    double u[GM_ASSIGN_MAX + 1] = {0}, v[GM_ASSIGN_MAX + 1] = {0}, minv[GM_ASSIGN_MAX + 1];
    int p[GM_ASSIGN_MAX + 1] = {0}, way[GM_ASSIGN_MAX + 1] = {0};
    bool used[GM_ASSIGN_MAX + 1];
    for (int i = 1; i <= n; i++) {
        p[0] = i;
        int j0 = 0;
        for (int j = 0; j <= n; j++) minv[j] = INFINITY, used[j] = false;
        do {
            used[j0] = true;
            int i0 = p[j0], j1 = 0;
            double delta = INFINITY;
            for (int j = 1; j <= n; j++) {
                if (used[j]) continue;
                double cur = -m[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                if (cur < minv[j]) minv[j] = cur, way[j] = j0;
                if (minv[j] < delta) delta = minv[j], j1 = j;
            }
            for (int j = 0; j <= n; j++) {
                if (used[j]) u[p[j]] += delta, v[j] -= delta;
                else minv[j] -= delta;
            }
            j0 = j1;
        } while (p[j0] != 0);
        do {
            int j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
    double total = 0;
    for (int j = 1; j <= n; j++) {
        assign[p[j] - 1] = j - 1;
        total += m[(p[j] - 1) * n + (j - 1)];
    }
    return total;
}

void gm_image_stats_of(const float *px, int h, int w, gm_image_stats *out) {
    double sum = 0, sx = 0, sy = 0;
    int x0 = w, x1 = -1, y0 = h, y1 = -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double v = px[y * w + x];
            sum += v, sx += v * x, sy += v * y;
            if (v > 0.5) {
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
        }
    double mu11 = 0, mu02 = 0;
    if (sum > 0) {
        double cx = sx / sum, cy = sy / sum;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double v = px[y * w + x];
                mu11 += v * (x - cx) * (y - cy);
                mu02 += v * (y - cy) * (y - cy);
            }
    }
    out->brightness = sum / ((double)h * w);
    out->width = x1 >= 0 ? x1 - x0 + 1 : 0;
    out->height = y1 >= 0 ? y1 - y0 + 1 : 0;
    out->slant = mu02 > 0 ? -mu11 / mu02 : 0;
}

double gm_image_stat(const gm_image_stats *s, int i) {
    return i == 0 ? s->brightness : i == 1 ? s->width : i == 2 ? s->height : s->slant;
}

/* The best assignment of the K x C counts (row-major) padded to a square;
 * assign[k] = the class of category k, or -1 when it went to a padding
 * column. Returns the matched count, or -1 when too large. */
static double match_counts(const double *counts, int K, int C, int *assign) {
    int n = K > C ? K : C;
    double *sq = calloc((size_t)n * n, sizeof *sq);
    int full[GM_ASSIGN_MAX];
    if (!sq) return -1;
    for (int k = 0; k < K; k++) memcpy(sq + (size_t)k * n, counts + (size_t)k * C, sizeof(double) * C);
    double got = gm_best_assignment(sq, n, full);
    for (int k = 0; k < K && got >= 0; k++) assign[k] = full[k] < C ? full[k] : -1;
    free(sq);
    return got;
}

static json_t *int_array(const int *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *counts_json(const double *counts, int K, int C) {
    json_t *a = json_array();
    for (int k = 0; k < K; k++) {
        json_t *row = json_array();
        for (int c = 0; c < C; c++) json_array_append_new(row, json_integer((json_int_t)counts[k * C + c]));
        json_array_append_new(a, row);
    }
    return a;
}

/* Q's argmax category of every test image against its class. */
static int eval_q(const gm_model *m, const gm_dataset *test, int K, int C, json_t *r, char err[GM_ERR_LEN]) {
    const gm_model_info *in = gm_model_get_info(m);
    int E = in->encode_dim, assign[GM_ASSIGN_MAX];
    float *q = malloc(sizeof(float) * CHUNK * E);
    double *counts = calloc((size_t)K * C, sizeof *counts);
    int rc = -1;
    if (!q || !counts) goto oom;
    for (int first = 0; first < test->n; first += CHUNK) {
        int n = test->n - first < CHUNK ? test->n - first : CHUNK;
        if (gm_model_encode(m, n, test->images + (size_t)first * test->dim, q, NULL)) goto oom;
        for (int i = 0; i < n; i++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                if (q[i * E + k] > q[i * E + best]) best = k;
            counts[best * C + test->labels[first + i]]++;
        }
    }
    double got = match_counts(counts, K, C, assign);
    printf("infogan categories by Q on %d test images: best one-to-one match %.2f %%; category -> class", test->n,
           100 * got / test->n);
    for (int k = 0; k < K; k++) printf(" %d:%d", k, assign[k]);
    printf("\n");
    json_object_set_new(r, "q_match_accuracy", json_real(got / test->n));
    json_object_set_new(r, "q_assignment", int_array(assign, K));
    json_object_set_new(r, "q_confusion", counts_json(counts, K, C));
    rc = 0;
    goto done;
oom:
    gm_errorf(err, "infogan Q: out of memory");
done:
    free(q);
    free(counts);
    return rc;
}

/* The classifier's labels of images sampled per category; its classes are
 * those of the test set and any other it predicts. */
static int eval_sampled(const gm_model *m, int per, int K, int C, gm_classify_fn classify, void *ctx, json_t *r,
                        char err[GM_ERR_LEN]) {
    const gm_model_info *in = gm_model_get_info(m);
    int n = per * K, assign[GM_ASSIGN_MAX], rc = -1;
    float *px = malloc(sizeof(float) * (size_t)n * in->dim);
    int *pred = malloc(sizeof(int) * n);
    gm_row *rows = calloc((size_t)n, sizeof *rows);
    double *counts = NULL;
    if (!px || !pred || !rows) goto oom;
    for (int i = 0; i < n; i++) {
        gm_rng_seed(&rows[i].rng, SEED, (uint64_t)i);
        rows[i].temperature = 1.0f;
        rows[i].cat_given = true;
        rows[i].cat = i % K;
    }
    for (int first = 0; first < n; first += CHUNK) {
        int b = n - first < CHUNK ? n - first : CHUNK;
        if (gm_model_sample(m, b, rows + first, px + (size_t)first * in->dim, NULL)) goto oom;
    }
    if (classify(ctx, px, n, pred)) goto oom;
    for (int i = 0; i < n; i++)
        if (pred[i] + 1 > C) C = pred[i] + 1;
    if (C > GM_ASSIGN_MAX) {
        gm_errorf(err, "infogan samples: the classifier predicts %d classes; at most %d are matched", C, GM_ASSIGN_MAX);
        goto done;
    }
    if (!(counts = calloc((size_t)K * C, sizeof *counts))) goto oom;
    for (int i = 0; i < n; i++) counts[(i % K) * C + pred[i]]++;
    double got = match_counts(counts, K, C, assign);
    json_t *purity = json_array();
    printf("infogan categories by the classifier on %d samples: best one-to-one match %.2f %%; purity", n,
           100 * got / n);
    for (int k = 0; k < K; k++) {
        double pk = assign[k] >= 0 ? counts[k * C + assign[k]] / per : 0;
        printf(" %d:%.0f%%", k, 100 * pk);
        json_array_append_new(purity, json_real(pk));
    }
    printf("\n");
    json_object_set_new(r, "classifier_match_accuracy", json_real(got / n));
    json_object_set_new(r, "classifier_assignment", int_array(assign, K));
    json_object_set_new(r, "classifier_confusion", counts_json(counts, K, C));
    json_object_set_new(r, "category_purity", purity);
    json_object_set_new(r, "samples_per_category", json_integer(per));
    rc = 0;
    goto done;
oom:
    gm_errorf(err, "infogan samples: out of memory");
done:
    free(px);
    free(pred);
    free(rows);
    free(counts);
    return rc;
}

/* Decodes rows [z_r, category r % K, code] with code j at value v, the
 * others at 0; z (n, Z). */
static int decode_sweep(const gm_model *m, int n, const float *z, const int *cats, int j, float v, float *codes,
                        float *px) {
    const gm_model_info *in = gm_model_get_info(m);
    int L = in->code_dim;
    for (int i = 0; i < n; i++)
        for (int l = 0; l < L; l++) codes[i * L + l] = l == j ? v : 0.0f;
    return gm_model_decode_codes(m, n, z, NULL, codes, cats, px);
}

/* Each continuous code swept over many rows of fixed z and category. */
static int eval_codes(const gm_model *m, int rows, int K, json_t *r, char err[GM_ERR_LEN]) {
    const gm_model_info *in = gm_model_get_info(m);
    int Z = in->latent_dim, L = in->code_dim, D = in->dim, rc = -1;
    int n = rows < CHUNK ? rows : CHUNK;
    float *z = malloc(sizeof(float) * (size_t)rows * Z), *codes = malloc(sizeof(float) * (size_t)n * L);
    float *px = malloc(sizeof(float) * (size_t)n * D);
    int *cats = malloc(sizeof(int) * rows);
    json_t *all = json_array();
    if (!z || !codes || !px || !cats || !all) goto oom;
    for (int i = 0; i < rows; i++) {
        gm_rng g;
        gm_rng_seed(&g, SEED, (uint64_t)i);
        for (int k = 0; k < Z; k++) z[(size_t)i * Z + k] = (float)gm_rng_normal(&g);
        cats[i] = i % K;
    }
    for (int j = 0; j < L; j++) {
        double mean[SWEEP_STEPS][GM_IMAGE_STATS] = {{0}}, sq0[GM_IMAGE_STATS] = {0};
        for (int s = 0; s < SWEEP_STEPS; s++) {
            float v = -2.0f + 0.5f * (float)s;
            for (int first = 0; first < rows; first += n) {
                int b = rows - first < n ? rows - first : n;
                if (decode_sweep(m, b, z + (size_t)first * Z, cats + first, j, v, codes, px)) goto oom;
                for (int i = 0; i < b; i++) {
                    gm_image_stats st;
                    gm_image_stats_of(px + (size_t)i * D, in->height, in->width, &st);
                    for (int t = 0; t < GM_IMAGE_STATS; t++) {
                        double x = gm_image_stat(&st, t);
                        mean[s][t] += x;
                        if (v == 0.0f) sq0[t] += x * x;
                    }
                }
            }
            for (int t = 0; t < GM_IMAGE_STATS; t++) mean[s][t] /= rows;
        }
        const int lo = 2, mid = 4, hi = 6; /* the values -1, 0, 1 */
        json_t *c = json_pack("{s:i}", "code", j + 1), *vals = json_array(), *change = json_object(),
               *effect = json_object();
        for (int s = 0; s < SWEEP_STEPS; s++) json_array_append_new(vals, json_real(-2.0 + 0.5 * s));
        json_object_set_new(c, "values", vals);
        int most = 0;
        double best = -1, effects[GM_IMAGE_STATS];
        for (int t = 0; t < GM_IMAGE_STATS; t++) {
            json_t *profile = json_array();
            for (int s = 0; s < SWEEP_STEPS; s++) json_array_append_new(profile, json_real(mean[s][t]));
            json_object_set_new(c, GM_IMAGE_STAT_NAMES[t], profile);
            double sd = sqrt(fmax(sq0[t] / rows - mean[mid][t] * mean[mid][t], 0));
            double d = mean[hi][t] - mean[lo][t];
            effects[t] = sd > 0 ? d / sd : 0;
            json_object_set_new(change, GM_IMAGE_STAT_NAMES[t], json_real(d));
            json_object_set_new(effect, GM_IMAGE_STAT_NAMES[t], json_real(effects[t]));
            if (fabs(effects[t]) > best) best = fabs(effects[t]), most = t;
        }
        json_object_set_new(c, "change_minus1_to_1", change);
        json_object_set_new(c, "standardized_change", effect);
        json_object_set_new(c, "moves_most", json_string(GM_IMAGE_STAT_NAMES[most]));
        json_array_append_new(all, c);
        printf("infogan code %d over %d rows, -1 -> 1: moves %s most (%.2f -> %.2f, %+.2f sd);", j + 1, rows,
               GM_IMAGE_STAT_NAMES[most], mean[lo][most], mean[hi][most], effects[most]);
        for (int t = 0; t < GM_IMAGE_STATS; t++)
            printf(" %s %.3f -> %.3f (%+.2f sd)", GM_IMAGE_STAT_NAMES[t], mean[lo][t], mean[hi][t], effects[t]);
        printf("\n");
    }
    json_object_set_new(r, "codes", all);
    json_object_set_new(r, "sweep_rows", json_integer(rows));
    all = NULL;
    rc = 0;
    goto done;
oom:
    gm_errorf(err, "infogan codes: out of memory");
done:
    json_decref(all);
    free(z);
    free(codes);
    free(px);
    free(cats);
    return rc;
}

/* grids/infogan-code<j>.png: row k category k, column i code j at
 * -2 + 4 i / 9 (the other codes 0), one z for the whole grid. */
static int write_code_grid(const gm_model *m, int K, int j, const char *dir, char err[GM_ERR_LEN]) {
    const gm_model_info *in = gm_model_get_info(m);
    int Z = in->latent_dim, L = in->code_dim, n = K * GRID_COLUMNS, rc = -1;
    float *z = malloc(sizeof(float) * (size_t)n * Z), *codes = calloc((size_t)n * L, sizeof(float));
    float *px = malloc(sizeof(float) * (size_t)n * in->dim);
    int *cats = malloc(sizeof(int) * n);
    if (!z || !codes || !px || !cats) {
        gm_errorf(err, "infogan grid: out of memory");
        goto done;
    }
    gm_rng g;
    gm_rng_seed(&g, SEED, 0);
    for (int k = 0; k < Z; k++) z[k] = (float)gm_rng_normal(&g);
    for (int i = 0; i < n; i++) {
        if (i) memcpy(z + (size_t)i * Z, z, sizeof(float) * Z);
        cats[i] = i / GRID_COLUMNS;
        codes[i * L + j] = -2.0f + 4.0f * (float)(i % GRID_COLUMNS) / (GRID_COLUMNS - 1);
    }
    char name[32], desc[160];
    snprintf(name, sizeof name, "infogan-code%d", j + 1);
    snprintf(desc, sizeof desc, "gmserve eval: InfoGAN, rows categories 0..%d, columns code %d from -2 to 2, seed %d",
             K - 1, j + 1, SEED);
    if (gm_model_decode_codes(m, n, z, NULL, codes, cats, px)) {
        gm_errorf(err, "infogan grid: out of memory");
        goto done;
    }
    rc = gm_eval_write_png(dir, name, px, n, in->height, in->width, in->channels, desc, err);
done:
    free(z);
    free(codes);
    free(px);
    free(cats);
    return rc;
}

int gm_eval_infogan(const char *path, const gm_dataset *test, int samples, gm_classify_fn classify, void *ctx,
                    const char *grids, json_t *report, char err[GM_ERR_LEN]) {
    gm_model *m = gm_model_load(path, err);
    if (!m) return -1;
    const gm_model_info *in = gm_model_get_info(m);
    int K = in->cat_dim, C = 0, rc = -1;
    for (int i = 0; i < test->n; i++)
        if (test->labels[i] + 1 > C) C = test->labels[i] + 1;
    json_t *r = NULL;
    if (in->family != GM_FAMILY_GAN || K < 1 || !in->encode_q) {
        gm_errorf(err, "%s: not an InfoGAN (a GAN with gm.cat_dim and a Q network, gm.q_network)", path);
        goto done;
    }
    if (in->dim != test->dim || in->channels != 1) {
        gm_errorf(err, "%s: images of %dx%dx%d, the data has %dx%dx1", path, in->height, in->width, in->channels,
                  test->height, test->width);
        goto done;
    }
    if (K > GM_ASSIGN_MAX || C > GM_ASSIGN_MAX) {
        gm_errorf(err, "%s: %d categories and %d classes; at most %d each are matched", path, K, C, GM_ASSIGN_MAX);
        goto done;
    }
    int per = samples / K > 0 ? samples / K : 1, sweep = samples < MAX_SWEEP_ROWS ? samples : MAX_SWEEP_ROWS;
    r = json_pack("{s:s,s:i,s:i,s:i,s:i}", "file", path, "categories", K, "classes", C, "code_dim", in->code_dim,
                  "test_images", test->n);
    if (!r || eval_q(m, test, K, C, r, err) || eval_sampled(m, per, K, C, classify, ctx, r, err) ||
        (in->code_dim && eval_codes(m, sweep, K, r, err)))
        goto done;
    for (int j = 0; grids && j < in->code_dim; j++)
        if (write_code_grid(m, K, j, grids, err)) goto done;
    fflush(stdout);
    json_object_set_new(report, "infogan", r);
    r = NULL;
    rc = 0;
done:
    json_decref(r);
    gm_model_free(m);
    return rc;
}
