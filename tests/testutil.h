/*
 * testutil.h - small helpers shared by the cmocka tests: writing
 * temporary and safetensors files (stfile.h), locating and loading fixtures,
 * comparing arrays with a stated tolerance and printing the first mismatch
 * (index, got, want).
 */
#ifndef GM_TESTUTIL_H
#define GM_TESTUTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sys/wait.h>

#include "stfile.h"

/* Runs a shell command; returns its exit status and its output in out. */
static inline int run_command(const char *cmd, char *out, size_t n) {
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A small linear congruential generator (Numerical Recipes' constants):
 * reproducible test data, 24 random bits a call. */
static inline uint32_t rnd(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* The gmserve binary tests run: $GMSERVE_BIN (run_all.sh sets it), else
 * build/gmserve. */
static inline const char *gmserve_bin(void) {
    const char *bin = getenv("GMSERVE_BIN");
    return bin ? bin : "build/gmserve";
}

/* Path of a committed fixture (tests run from the repository root). */
static inline const char *fixture(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "tests/fixtures/%s", name);
    return path;
}

/* max |got-want| / (scale) over n values must be <= tol, where scale is
 * max(1, max |want|) (the tolerance of docs/model-format.md: relative to the output's scale). Prints the
 * first element that breaks it. */
static inline void assert_close_f(const char *what, const float *got, const float *want, size_t n, double tol) {
    double scale = 1.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)want[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]) / scale;
        if (!(d <= tol)) {
            print_error("%s: first mismatch at index %zu: got %.8g, want %.8g (|diff|/scale %.3g > tol %.3g)\n", what,
                        i, got[i], want[i], d, tol);
            fail();
        }
    }
}

#include <jansson.h>

#include "gm/model.h"
#include "gm/safetensors.h"

/* Loads a committed fixture file or fails the test with the loader's message. */
static inline gm_st *load_ref(const char *name) {
    char err[GM_ERR_LEN];
    gm_st *st = gm_st_load(fixture(name), err);
    if (!st) {
        print_error("%s\n", err);
        fail();
    }
    return st;
}

static inline const float *ref_f32(const gm_st *st, const char *name) {
    const gm_tensor *t = gm_st_tensor(st, name);
    assert_non_null(t);
    assert_non_null(t->f32);
    return t->f32;
}

/* A float64 array stored as JSON text in the reference file's metadata. */
static inline double *ref_doubles(const gm_st *st, const char *key, size_t *n) {
    const char *text = gm_st_meta(st, key);
    assert_non_null(text);
    json_t *arr = json_loads(text, 0, NULL);
    assert_true(json_is_array(arr));
    *n = json_array_size(arr);
    double *v = malloc(*n * sizeof *v);
    for (size_t i = 0; i < *n; i++) v[i] = json_number_value(json_array_get(arr, i));
    json_decref(arr);
    return v;
}

/* Loads a committed fixture model or fails the test with the loader's message. */
static inline gm_model *load_model(const char *name) {
    char err[GM_ERR_LEN];
    gm_model *m = gm_model_load(fixture(name), err);
    if (!m) {
        print_error("%s\n", err);
        fail();
    }
    return m;
}

/* B request rows at one temperature, no label, row r on stream (seed, r):
 * the layout the server gives the rows of one request. Caller frees. */
static inline gm_row *seeded_rows(int B, uint64_t seed, float temperature) {
    gm_row *rows = malloc((size_t)B * sizeof *rows);
    assert_non_null(rows);
    for (int r = 0; r < B; r++) {
        rows[r] = (gm_row){.temperature = temperature, .label = -1};
        gm_rng_seed(&rows[r].rng, seed, (uint64_t)r);
    }
    return rows;
}

/* gm_model_logp of a fixture's reference images ("x" of ref_file) against
 * their float64 log p (its metadata "logp"): 1e-4 nats per image. */
static inline void check_logp_against_ref(const char *model_file, const char *ref_file) {
    gm_model *m = load_model(model_file);
    gm_st *ref = load_ref(ref_file);
    const gm_tensor *x = gm_st_tensor(ref, "x");
    int B = (int)x->shape[0];
    assert_int_equal(x->numel / B, gm_model_get_info(m)->dim);
    size_t n;
    double *want = ref_doubles(ref, "logp", &n);
    assert_int_equal(n, B);
    gm_logp_result *got = calloc(B, sizeof *got);
    assert_int_equal(gm_model_logp(m, B, x->f32, 1, NULL, got), 0);
    for (int r = 0; r < B; r++)
        if (!(fabs(got[r].logp - want[r]) <= 1e-4)) { /* 1e-4 nats per image */
            print_error("%s image %d: log p %.8f, float64 reference %.8f\n", model_file, r, got[r].logp, want[r]);
            fail();
        }
    free(got);
    free(want);
    gm_st_free(ref);
    gm_model_free(m);
}

/* A tiny binary model of D pixels: p over all 2^D images sums to 1 (1e-6). */
static inline void check_probabilities_sum_to_one(const char *model_file, int D) {
    gm_model *m = load_model(model_file);
    int N = 1 << D;
    assert_int_equal(gm_model_get_info(m)->dim, D);
    float *x = malloc((size_t)N * D * sizeof *x);
    gm_logp_result *lp = calloc(N, sizeof *lp);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) x[i * D + j] = (float)((i >> j) & 1);
    assert_int_equal(gm_model_logp(m, N, x, 1, NULL, lp), 0);
    double total = 0.0;
    for (int i = 0; i < N; i++) total += exp(lp[i].logp);
    if (!(fabs(total - 1.0) <= 1e-6)) {
        print_error("%s: sum of p over all %d images: %.9f\n", model_file, N, total);
        fail();
    }
    free(x);
    free(lp);
    gm_model_free(m);
}

/* The log p a sampler returned for each of B images x equals what
 * gm_model_logp scores for them, within 1e-4 nats. */
static inline void assert_logp_is_score(gm_model *m, int B, const float *x, const double *lp, const char *what) {
    gm_logp_result *s = calloc(B, sizeof *s);
    assert_int_equal(gm_model_logp(m, B, x, 1, NULL, s), 0);
    for (int r = 0; r < B; r++)
        if (!(fabs(s[r].logp - lp[r]) <= 1e-4)) {
            print_error("%s sample %d: returned log p %.8f, scored %.8f\n", what, r, lp[r], s[r].logp);
            fail();
        }
    free(s);
}

#endif
