/*
 * bench_core.c - each core operation against the machine's limits and
 * against PyTorch on the same weights (make bench-core, bench/bench_core.sh).
 *
 *   bench_core DIR ROUND   times every (operation, batch) cell once and writes
 *                          DIR/gm.ROUND.json
 *   bench_core DIR         reads every DIR/gm.*.json and DIR/torch.*.json and
 *                          prints medians over the rounds with their ranges
 *
 * Rates are images per CPU-second of the whole process
 * (CLOCK_PROCESS_CPUTIME_ID, so every thread counts and time the machine
 * gives to other processes does not), which holds up on a shared machine
 * where wall-clock rates swing. Next to each operation this binary times
 * the limits it is measured against, in the same round: raw cblas_sgemm on
 * exactly the matrix shapes the operation performs (the GEMM-bound ones)
 * and the FMA peak, a loop of independent vector FMAs. bench_core.sh runs
 * the rounds A B A B (PyTorch, then this), so that load from other
 * processes lands on both sides alike.
 *
 * BENCH_OPS, a comma-separated list of operation names (pixelcnn_logp,
 * ...), times those only, as bench/torch_core.py does.
 *
 * PixelCNN sampling is the cached sampler (gm_model_sample); its naive loop
 * (pixelcnn_naive: a whole forward pass per pixel) is timed as one batched
 * forward pass and its rate divided by H * W, what each of its steps costs.
 * PyTorch's pixelcnn_sample is its naive loop, and so is its
 * pixelrnn_sample (the Row LSTM of models/train/pixelrnn_net.py at
 * train_pixelrnn.py's default recipe's size); gmserve's computes each row's state
 * terms once and then each pixel's column alone.
 */
#include <cblas.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "gm/model.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef void (*run_fn)(void *ctx);

/* median CPU seconds per call: >= 3 calls and >= 0.15 s, at most 1000 calls
 * (bench/torch_core.py times PyTorch by the same rule) */
#define MAX_CALLS 1000
static double median_time(run_fn fn, void *ctx) {
    static double t[MAX_CALLS];
    int n = 0;
    fn(ctx);
    double start = cpu_now();
    while (n < 3 || (cpu_now() - start < 0.15 && n < MAX_CALLS)) {
        double t0 = cpu_now();
        fn(ctx);
        t[n++] = cpu_now() - t0;
    }
    qsort(t, n, sizeof *t, cmp_double);
    return t[n / 2];
}

/* ---- the FMA peak: 10 independent accumulators hide the FMA latency ---- */

#if defined(__AVX512F__)
#define VBYTES 64
#else
#define VBYTES 32
#endif
typedef float vf __attribute__((vector_size(VBYTES)));
#define LANES (VBYTES / 4)
#define FMA_ITERS 200000

static volatile float fma_sink;
static void run_fma(void *p) {
    vf acc[10], m, a;
    for (int i = 0; i < LANES; i++) m[i] = 0.999999f, a[i] = 1e-7f;
    for (int k = 0; k < 10; k++)
        for (int i = 0; i < LANES; i++) acc[k][i] = (float)k;
    for (int it = 0; it < FMA_ITERS; it++)
#pragma GCC unroll 10
        for (int k = 0; k < 10; k++) acc[k] = acc[k] * m + a;
    float s = 0;
    for (int k = 0; k < 10; k++) s += acc[k][0];
    fma_sink = s;
}
#define FMA_FLOPS (2.0 * 10 * LANES * FMA_ITERS)

/* ---- operations ---- */

/* Inputs rotate through a pool of distinct images, so that a small batch is
 * not timed on the same image over and over. */
#define POOL 256
#define VAE_K 100

typedef struct {
    const gm_model *m;
    int B, next, dim, K;
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
    reseed(c);
    gm_model_logp(c->m, c->B, next_input(c), c->K, c->rows, c->lp);
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
    if (strcmp(op, "vae_encode") == 0 || strcmp(op, "vae_logp") == 0) {
        s[0] = (gemm_shape){B, 512, 784, 0, 1};
        s[1] = (gemm_shape){B, 256, 512, 0, 1};
        s[2] = (gemm_shape){B, 64, 256, 0, 1};
        if (op[4] == 'e') return 3;
        int M = B * VAE_K; /* the decoder on every importance sample */
        s[3] = (gemm_shape){M, 256, 32, 0, 1};
        s[4] = (gemm_shape){M, 512, 256, 0, 1};
        s[5] = (gemm_shape){M, 784, 512, 0, 1};
        return 6;
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
    gemm_shape s[6];
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

/* NADE's arithmetic, counted as FLOPs: the logit's dot product (2 H per
 * pixel) and, after each on pixel, the update a += w (H). The sigmoids are
 * not counted: the FMA-peak column says how far the kernel is from doing
 * only the multiply-adds the model needs. */
static double nade_flops(int B, double on) { return B * 784.0 * 500 * (2.0 + on); }

enum { NADE, NADE_BUNDLED, VAE, GAN, PIXELCNN, PIXELRNN, MODELS };
static const struct {
    const char *op;
    int model;
    run_fn fn;
    int K;
    int per_pixel; /* the rate is of one of H * W passes (the naive loop) */
} OPS[] = {
    {"nade_logp", NADE, run_logp, 1, 0},
    {"nade_sample", NADE, run_sample, 1, 0},
    {"nade_bundled_logp", NADE_BUNDLED, run_logp, 1, 0},
    {"vae_encode", VAE, run_encode, 1, 0},
    {"vae_logp", VAE, run_logp, VAE_K, 0},
    {"gan_sample", GAN, run_sample, 1, 0},
    {"pixelcnn_logp", PIXELCNN, run_logp, 1, 0},
    {"pixelcnn_sample", PIXELCNN, run_sample, 1, 0},
    {"pixelcnn_naive", PIXELCNN, run_logp, 1, 1},
    {"pixelrnn_logp", PIXELRNN, run_logp, 1, 0},
    {"pixelrnn_sample", PIXELRNN, run_sample, 1, 0},
};
#define N_OPS (int)(sizeof OPS / sizeof OPS[0])
static const int BATCHES[] = {1, 16, 64, 256};
#define N_BATCHES 4

/* Inputs: random binary images with 30 % on for the bench models (what
 * bench/torch_core.py scores); for the bundled NADE, the first Fashion-MNIST
 * test images (real images are where its pre-activations go below -88 and
 * its sigmoids subnormal), or its own samples without the dataset. */
#define FASHION "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
static void fill_inputs(const gm_model *m, int bundled, float *x, int dim) {
    unsigned char head[16], px[POOL * 784];
    gzFile f = bundled && dim == 784 ? gzopen(FASHION, "rb") : NULL;
    int ok = f && gzread(f, head, 16) == 16 && gzread(f, px, sizeof px) == (int)sizeof px;
    if (f) gzclose(f);
    if (ok) {
        for (size_t i = 0; i < sizeof px; i++) x[i] = px[i] / 255.0f;
        return;
    }
    if (bundled) {
        gm_row rows[POOL];
        for (int r = 0; r < POOL; r++) {
            rows[r] = (gm_row){.temperature = 1.0f, .label = -1};
            gm_rng_seed(&rows[r].rng, 7, (uint64_t)r);
        }
        gm_model_sample(m, POOL, rows, x, NULL);
        return;
    }
    gm_rng g;
    gm_rng_seed(&g, 9, 0);
    for (size_t i = 0; i < (size_t)POOL * dim; i++) x[i] = gm_rng_uniform(&g) < 0.3 ? 1.0f : 0.0f;
}

/* op is in BENCH_OPS, or BENCH_OPS is unset or empty */
static int wanted(const char *op) {
    const char *list = getenv("BENCH_OPS");
    size_t n = strlen(op);
    if (!list || !*list) return 1;
    for (const char *p = list; *p; p += strcspn(p, ","), p += *p == ',')
        if (strcspn(p, ",") == n && strncmp(p, op, n) == 0) return 1;
    return 0;
}

static int run_round(const char *dir, const char *round) {
    char path[512], err[GM_ERR_LEN];
    gm_set_compute_threads(openblas_get_num_threads()); /* NADE splits rows like OpenBLAS splits GEMMs */
    const char *files[MODELS] = {"nade", "models/nade", "vae", "gan", "pixelcnn", "pixelrnn"};
    gm_model *models[MODELS];
    for (int i = 0; i < MODELS; i++) {
        if (i == NADE_BUNDLED) snprintf(path, sizeof path, "%s.safetensors", files[i]);
        else snprintf(path, sizeof path, "%s/%s.safetensors", dir, files[i]);
        if (!(models[i] = gm_model_load(path, err))) {
            fprintf(stderr, "bench_core: %s\n", err);
            return 1;
        }
    }
    json_t *res = json_object();
    json_object_set_new(res, "fma_gflops", json_real(FMA_FLOPS / median_time(run_fma, NULL) * 1e-9));
    size_t big = (size_t)256 * VAE_K * 784;
    float *ga = calloc(big, 4), *gb = calloc(big, 4), *gc = calloc(big, 4);
    for (size_t i = 0; i < big; i++) ga[i] = gb[i] = 0.01f * (float)(i % 97);
    for (int o = 0; o < N_OPS; o++) {
        if (!wanted(OPS[o].op)) continue;
        const gm_model_info *info = gm_model_get_info(models[OPS[o].model]);
        float *pool = malloc((size_t)POOL * info->dim * sizeof(float));
        fill_inputs(models[OPS[o].model], OPS[o].model == NADE_BUNDLED, pool, info->dim);
        double on = 0;
        for (size_t i = 0; i < (size_t)POOL * info->dim; i++) on += pool[i] >= 0.5f;
        on /= (double)POOL * info->dim;
        for (int bi = 0; bi < N_BATCHES; bi++) {
            int B = BATCHES[bi];
            op_ctx c = {.m = models[OPS[o].model], .B = B, .dim = info->dim, .K = OPS[o].K, .x = pool};
            c.out = malloc((size_t)B * (info->dim > 1024 ? info->dim : 1024) * sizeof(float));
            c.aux = malloc((size_t)B * 1024 * sizeof(float));
            c.rows = malloc(B * sizeof(gm_row));
            c.lp = malloc(B * sizeof(gm_logp_result));
            c.dlp = malloc(B * sizeof(double));
            double t = median_time(OPS[o].fn, &c);
            json_t *cell = json_object();
            int steps = OPS[o].per_pixel ? info->height * info->width : 1;
            json_object_set_new(cell, "rate", json_real(B / (t * steps)));
            gemm_ctx g = {.a = ga, .b = gb, .c = gc};
            g.n = shapes_for(OPS[o].op, B, g.s);
            double flops = 0;
            for (int i = 0; i < g.n; i++) flops += 2.0 * g.s[i].M * g.s[i].N * g.s[i].K;
            if (g.n) {
                json_object_set_new(cell, "gflops", json_real(flops / t * 1e-9));
                json_object_set_new(cell, "sgemm_gflops", json_real(flops / median_time(run_gemms, &g) * 1e-9));
            } else if (strncmp(OPS[o].op, "nade", 4) == 0) {
                json_object_set_new(cell, "gflops", json_real(nade_flops(B, on) / t * 1e-9));
            }
            char key[64];
            snprintf(key, sizeof key, "%s/%d", OPS[o].op, B);
            json_object_set_new(res, key, cell);
            free(c.out), free(c.aux), free(c.rows), free(c.lp), free(c.dlp);
        }
        free(pool);
    }
    free(ga), free(gb), free(gc);
    for (int i = 0; i < MODELS; i++) gm_model_free(models[i]);
    snprintf(path, sizeof path, "%s/gm.%s.json", dir, round);
    int rc = json_dump_file(res, path, JSON_INDENT(1));
    json_decref(res);
    return rc ? 1 : 0;
}

/* ---- the table: medians over rounds, with ranges ---- */

#define MAX_ROUNDS 64
typedef struct {
    double v[MAX_ROUNDS];
    int n;
} series;

static void add(series *s, json_t *v) {
    if (json_is_number(v) && s->n < MAX_ROUNDS) s->v[s->n++] = json_number_value(v);
}
static double med(series *s) {
    if (!s->n) return 0;
    qsort(s->v, s->n, sizeof s->v[0], cmp_double);
    return s->n % 2 ? s->v[s->n / 2] : 0.5 * (s->v[s->n / 2 - 1] + s->v[s->n / 2]);
}
/* "median (min-max)" into buf; s must have been sorted by med() */
static const char *fmt(char *buf, size_t len, series *s, const char *f) {
    if (!s->n) return "-";
    char a[32], b[32], c[32];
    snprintf(a, sizeof a, f, med(s));
    snprintf(b, sizeof b, f, s->v[0]);
    snprintf(c, sizeof c, f, s->v[s->n - 1]);
    snprintf(buf, len, "%s (%s-%s)", a, b, c);
    return buf;
}

static int load_rounds(const char *dir, const char *prefix, json_t **out, int max) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    char path[1024];
    while (d && (e = readdir(d)) && n < max) {
        size_t len = strlen(e->d_name);
        size_t pl = strlen(prefix); /* PREFIX ROUND .json, ROUND not empty */
        if (strncmp(e->d_name, prefix, pl) || len <= pl + 5 || strcmp(e->d_name + len - 5, ".json")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if ((out[n] = json_load_file(path, 0, NULL))) n++;
    }
    if (d) closedir(d);
    return n;
}

static int print_table(const char *dir) {
    json_t *gm[MAX_ROUNDS], *pt[MAX_ROUNDS];
    int ng = load_rounds(dir, "gm.", gm, MAX_ROUNDS), np = load_rounds(dir, "torch.", pt, MAX_ROUNDS);
    if (!ng) {
        fprintf(stderr, "bench_core: no %s/gm.*.json: run bench/bench_core.sh\n", dir);
        return 1;
    }
    series peak = {0};
    for (int i = 0; i < ng; i++) add(&peak, json_object_get(gm[i], "fma_gflops"));
    char b1[128], b2[128], b3[128];
    double pk = med(&peak);
    printf("\n%d interleaved rounds (gmserve %d, PyTorch %d); images per CPU-second, median (min-max) over "
           "rounds.\n",
           ng > np ? ng : np, ng, np);
    printf("FMA peak: %s GFLOP/s per CPU-second\n\n", fmt(b1, sizeof b1, &peak, "%.0f"));
    printf("| operation | batch | gmserve img/CPU-s | PyTorch img/CPU-s | ratio | GFLOP/s | sgemm GFLOP/s | "
           "of sgemm | "
           "of FMA peak |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int o = 0; o < N_OPS; o++)
        for (int bi = 0; bi < N_BATCHES; bi++) {
            char key[64];
            snprintf(key, sizeof key, "%s/%d", OPS[o].op, BATCHES[bi]);
            series rate = {0}, gf = {0}, sg = {0}, torch = {0}, ofs = {0};
            for (int i = 0; i < ng; i++) {
                json_t *cell = json_object_get(gm[i], key);
                add(&rate, json_object_get(cell, "rate"));
                add(&gf, json_object_get(cell, "gflops"));
                add(&sg, json_object_get(cell, "sgemm_gflops"));
                json_t *g = json_object_get(cell, "gflops"), *s = json_object_get(cell, "sgemm_gflops");
                if (g && s) {
                    json_t *f = json_real(100 * json_number_value(g) / json_number_value(s));
                    add(&ofs, f);
                    json_decref(f);
                }
            }
            for (int i = 0; i < np; i++) add(&torch, json_object_get(pt[i], key));
            if (!rate.n) continue;
            double r = med(&rate), t = med(&torch), g = med(&gf);
            printf("| %s | %d | %s | %s | ", OPS[o].op, BATCHES[bi],
                   fmt(b1, sizeof b1, &rate, r < 10 ? "%.3f" : "%.0f"),
                   fmt(b2, sizeof b2, &torch, t < 10 ? "%.3f" : "%.0f")); /* naive loops: below 1 image/s */
            if (t > 0) printf("%.1fx | ", r / t);
            else printf("- | ");
            printf("%s | ", gf.n ? fmt(b1, sizeof b1, &gf, "%.1f") : "-");
            printf("%s | ", sg.n ? fmt(b2, sizeof b2, &sg, "%.1f") : "-");
            printf("%s | ", ofs.n ? fmt(b3, sizeof b3, &ofs, "%.0f%%") : "-");
            if (gf.n && pk > 0) printf("%.0f%% |\n", 100 * g / pk);
            else printf("- |\n");
        }
    for (int i = 0; i < ng; i++) json_decref(gm[i]);
    for (int i = 0; i < np; i++) json_decref(pt[i]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: bench_core DIR [ROUND]\n");
        return 2;
    }
    return argc == 3 ? run_round(argv[1], argv[2]) : print_table(argv[1]);
}
