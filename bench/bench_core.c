/*
 * bench_core.c - images/s of each core operation at batch 1, 16, 64, 256,
 * next to PyTorch on the same weights (bench/torch_core.py, same run), and
 * for GEMM-bound operations the GFLOP/s reached against the GFLOP/s that raw
 * cblas_sgemm reaches on exactly the same matrix shapes in this binary.
 *
 * PixelCNN sampling, at batch 1 and 64, three ways: the cached sampler
 * (gm_model_sample), the naive loop (a whole forward pass per pixel: timed
 * as H * W times gmserve's forward pass at that batch, which is what every
 * step of it costs) and PyTorch's naive loop (its first row timed, scaled).
 */
#include <cblas.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gm/model.h"
#include "gm/pixelcnn.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef void (*run_fn)(void *ctx);

/* median seconds per call: >= 3 calls and >= 0.4 s, at most 2000 calls
 * (bench/torch_core.py times PyTorch by the same rule) */
#define MAX_CALLS 2000
static double median_time(run_fn fn, void *ctx) {
    static double t[MAX_CALLS];
    int n = 0;
    fn(ctx);
    double start = now();
    while (n < 3 || (now() - start < 0.4 && n < MAX_CALLS)) {
        double t0 = now();
        fn(ctx);
        t[n++] = now() - t0;
    }
    qsort(t, n, sizeof *t, cmp_double);
    return t[n / 2];
}

/* Inputs rotate through a pool of distinct images, so that a small batch is
 * not timed on the same image over and over (which the branch predictor and
 * caches could learn). */
#define POOL 256

typedef struct {
    const gm_model *m;
    int B, next, dim;
    float *x, *out, *aux;
    gm_row *rows;
    gm_logp_result *lp;
    double *dlp;
} op_ctx;

static void reseed(op_ctx *c) {
    for (int r = 0; r < c->B; r++) {
        c->rows[r] = (gm_row){.temperature = 1.0f, .label = -1};
        gm_rng_seed(&c->rows[r].rng, 1, (uint64_t)r);
    }
}
static const float *next_input(op_ctx *c) {
    if (c->next + c->B > POOL) c->next = 0;
    const float *x = c->x + (size_t)c->next * c->dim;
    c->next += c->B;
    return x;
}
static void run_logp(void *p) {
    op_ctx *c = p;
    gm_model_logp(c->m, c->B, next_input(c), 1, NULL, c->lp);
}
static void run_sample(void *p) {
    op_ctx *c = p;
    reseed(c);
    gm_model_sample(c->m, c->B, c->rows, c->out, c->dlp);
}
static void run_encode(void *p) {
    op_ctx *c = p;
    gm_model_encode(c->m, c->B, next_input(c), c->out, c->aux);
}

/* The sgemm shapes (M, N, K) an operation performs at batch B. */
typedef struct {
    int M, N, K;
    int trans_a, trans_b;
} gemm_shape;

static int shapes_for(const char *op, int B, gemm_shape *s) {
    if (strcmp(op, "vae_encode") == 0) {
        s[0] = (gemm_shape){B, 512, 784, 0, 1};
        s[1] = (gemm_shape){B, 256, 512, 0, 1};
        s[2] = (gemm_shape){B, 64, 256, 0, 1};
        return 3;
    }
    if (strcmp(op, "gan_sample") == 0) {
        s[0] = (gemm_shape){B, 6272, 64, 0, 1};
        s[1] = (gemm_shape){B * 49, 64 * 16, 128, 1, 0};
        s[2] = (gemm_shape){B * 196, 16, 64, 1, 0};
        return 3;
    }
    return 0;
}

typedef struct {
    gemm_shape s[4];
    int n;
    float *a, *b, *c;
} gemm_ctx;

static void run_gemms(void *p) {
    gemm_ctx *g = p;
    for (int i = 0; i < g->n; i++) {
        gemm_shape s = g->s[i];
        cblas_sgemm(CblasRowMajor, s.trans_a ? CblasTrans : CblasNoTrans, s.trans_b ? CblasTrans : CblasNoTrans, s.M,
                    s.N, s.K, 1.0f, g->a, s.trans_a ? s.M : s.K, g->b, s.trans_b ? s.K : s.N, 0.0f, g->c, s.N);
    }
}

static double torch_rate(json_t *torch, const char *op, int B) {
    char key[64];
    snprintf(key, sizeof key, "%s/%d", op, B);
    json_t *v = json_object_get(torch, key);
    return v ? json_number_value(v) : 0;
}

/* Images/s of the cached sampler, of the naive loop (H * W forward passes)
 * and of PyTorch's naive loop. */
static void pixelcnn_sampling(const gm_model *m, json_t *torch) {
    const gm_model_info *info = gm_model_get_info(m);
    int P = info->height * info->width;
    printf("\n%-15s %5s %12s %12s %12s %9s %9s   (images/s; positions per image: cached %lld, naive %lld)\n",
           "operation", "batch", "cached", "naive", "pytorch", "vs naive", "vs torch", gm_pixelcnn_positions(m, true),
           gm_pixelcnn_positions(m, false));
    const int batches[] = {1, 64};
    for (int bi = 0; bi < 2; bi++) {
        int B = batches[bi];
        op_ctx c = {.m = m, .B = B, .dim = info->dim};
        c.x = calloc((size_t)POOL * info->dim, sizeof(float));
        c.out = malloc((size_t)B * info->dim * sizeof(float));
        c.rows = malloc(B * sizeof(gm_row));
        c.lp = malloc(B * sizeof(gm_logp_result));
        c.dlp = malloc(B * sizeof(double));
        reseed(&c);
        double cached = B / median_time(run_sample, &c), naive = B / (P * median_time(run_logp, &c));
        double tr = torch ? torch_rate(torch, "pixelcnn_sample", B) : 0;
        printf("%-15s %5d %12.2f %12.4f ", "pixelcnn_sample", B, cached, naive);
        if (tr > 0)
            printf("%12.4f %8.0fx %8.0fx\n", tr, cached / naive, cached / tr);
        else
            printf("%12s %8.0fx %9s\n", "-", cached / naive, "-");
        fflush(stdout);
        free(c.x), free(c.out), free(c.rows), free(c.lp), free(c.dlp);
    }
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "build/bench";
    gm_set_compute_threads(openblas_get_num_threads()); /* NADE splits rows like OpenBLAS splits GEMMs */
    char path[512], err[GM_ERR_LEN];
    snprintf(path, sizeof path, "%s/torch.json", dir);
    json_t *torch = json_load_file(path, 0, NULL);
    if (!torch) fprintf(stderr, "bench_core: no %s; PyTorch columns will be empty\n", path);
    const char *names[4] = {"nade", "vae", "gan", "pixelcnn"};
    gm_model *models[4];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, names[i]);
        if (!(models[i] = gm_model_load(path, err))) {
            fprintf(stderr, "bench_core: %s\n", err);
            return 1;
        }
    }
    struct {
        const char *op;
        int model;
        run_fn fn;
    } ops[] = {
        {"nade_logp", 0, run_logp},
        {"nade_sample", 0, run_sample},
        {"vae_encode", 1, run_encode},
        {"gan_sample", 2, run_sample},
        {"pixelcnn_logp", 3, run_logp},
    };
    const int batches[] = {1, 16, 64, 256};
    printf("\n%-12s %5s %12s %12s %8s %10s %10s %7s\n", "operation", "batch", "gmserve/s", "pytorch/s", "ratio",
           "GFLOP/s", "sgemm", "of sgemm");
    size_t big = (size_t)256 * 196 * 1024;
    float *ga = calloc(big, 4), *gb = calloc(big, 4), *gc = calloc(big, 4);
    for (size_t i = 0; i < big; i++) ga[i] = gb[i] = 0.01f * (float)(i % 97);
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        for (int bi = 0; bi < 4; bi++) {
            int B = batches[bi];
            const gm_model_info *info = gm_model_get_info(models[ops[o].model]);
            op_ctx c = {.m = models[ops[o].model], .B = B, .dim = info->dim};
            c.x = malloc((size_t)POOL * info->dim * sizeof(float));
            c.out = malloc((size_t)B * (info->dim > 1024 ? info->dim : 1024) * sizeof(float));
            c.aux = malloc((size_t)B * 1024 * sizeof(float));
            c.rows = malloc(B * sizeof(gm_row));
            c.lp = malloc(B * sizeof(gm_logp_result));
            c.dlp = malloc(B * sizeof(double));
            gm_rng g;
            gm_rng_seed(&g, 9, 0);
            for (size_t i = 0; i < (size_t)POOL * info->dim; i++) c.x[i] = gm_rng_uniform(&g) < 0.3 ? 1.0f : 0.0f;
            reseed(&c);
            double t = median_time(ops[o].fn, &c), rate = B / t, tr = torch ? torch_rate(torch, ops[o].op, B) : 0;
            printf("%-12s %5d %12.0f ", ops[o].op, B, rate);
            if (tr > 0)
                printf("%12.0f %7.1fx ", tr, rate / tr);
            else
                printf("%12s %8s ", "-", "-");
            gemm_ctx gctx = {.a = ga, .b = gb, .c = gc};
            gctx.n = shapes_for(ops[o].op, B, gctx.s);
            if (gctx.n) {
                double flops = 0;
                for (int i = 0; i < gctx.n; i++) flops += 2.0 * gctx.s[i].M * gctx.s[i].N * gctx.s[i].K;
                double tg = median_time(run_gemms, &gctx);
                printf("%10.1f %10.1f %6.0f%%", flops / t * 1e-9, flops / tg * 1e-9, 100 * tg / t);
            }
            printf("\n");
            fflush(stdout);
            free(c.x), free(c.out), free(c.aux), free(c.rows), free(c.lp), free(c.dlp);
        }
    }
    free(ga), free(gb), free(gc);
    pixelcnn_sampling(models[3], torch);
    for (int i = 0; i < 4; i++) gm_model_free(models[i]);
    json_decref(torch);
    return 0;
}
