/*
 * nade_train.c - trains the bundled NADE (docs/model-files.md, sigmoid, raster
 * order) on dynamically binarized Fashion-MNIST, with a hand-written
 * gradient in O(D H) per image.
 *
 *   build/nade_train OUT.safetensors [--hidden 500] [--epochs 40] [--seed 1]
 *                    [--data DIR] [--threads 2]
 *
 * The gradient is gm_nade_nll_grad (nade_grad.c, beside this file), O(D H) per
 * image, no B*D*H tensor.
 * Threads split each mini-batch and keep their own gradients; Adam
 * (1e-3, cosine decay to 1e-5) updates once per batch of 100.
 *
 * Prints one line per epoch (train NLL, test NLL on the fixed binarization of
 * models/README.md every few epochs, seconds) and writes a model file (docs/model-files.md).
 */
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "gm/clock.h"
#include "gm/rng.h"
#include "nade_grad.h"

#define BATCH 100
#define MAX_THREADS 16

typedef struct {
    const gm_nade_params *p;
    const float *x; /* (n, D) binary */
    int n;
    float *scratch;      /* 3 n H floats */
    gm_nade_params grad; /* this thread's gradient */
    double nll;          /* sum over its images */
    pthread_t thread;
} worker;

static void *grad_thread(void *arg) {
    worker *w = arg;
    w->nll = gm_nade_nll_grad(w->p, w->n, w->x, w->scratch, &w->grad);
    return NULL;
}

static void *eval_thread(void *arg) {
    worker *w = arg;
    w->nll = gm_nade_nll_grad(w->p, w->n, w->x, w->scratch, NULL);
    return NULL;
}

/* Runs fn over n images of x split across the workers; returns the NLL sum. */
static double run_split(worker *ws, int threads, const float *x, int n, void *(*fn)(void *)) {
    int D = ws[0].p->D;
    int per = (n + threads - 1) / threads;
    for (int t = 0; t < threads; t++) {
        int lo = t * per, hi = lo + per < n ? lo + per : n;
        ws[t].x = x + (size_t)lo * D;
        ws[t].n = hi > lo ? hi - lo : 0;
        if (t) pthread_create(&ws[t].thread, NULL, fn, &ws[t]);
    }
    fn(&ws[0]);
    double total = ws[0].nll;
    for (int t = 1; t < threads; t++) {
        pthread_join(ws[t].thread, NULL);
        total += ws[t].nll;
    }
    return total;
}

static void adam(float *restrict w, const float *restrict g, float *restrict m, float *restrict v, size_t n, float lr,
                 float scale, int t) {
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * scale;
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        w[i] -= lr * (m[i] / c1) / (sqrtf(v[i] / c2) + eps);
    }
}

/* Writes the model as a gmserve safetensors file (W stored [H, D]). */
static int write_model(const char *path, const gm_nade_params *p, json_t *meta) {
    int D = p->D, H = p->H;
    float *W = malloc((size_t)D * H * sizeof(float));
    if (!W) return -1;
    for (int k = 0; k < D; k++)
        for (int j = 0; j < H; j++) W[(size_t)j * D + k] = p->WT[(size_t)k * H + j];
    struct {
        const char *name;
        const float *data;
        int d0, d1;
    } t[] = {{"W", W, H, D}, {"V", p->V, D, H}, {"b", p->b, D, 0}, {"c", p->c, H, 0}};
    json_t *head = json_object();
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        size_t bytes = (size_t)t[i].d0 * (t[i].d1 ? t[i].d1 : 1) * sizeof(float);
        json_t *shape = t[i].d1 ? json_pack("[ii]", t[i].d0, t[i].d1) : json_pack("[i]", t[i].d0);
        json_object_set_new(head, t[i].name,
                            json_pack("{s:s,s:o,s:[II]}", "dtype", "F32", "shape", shape, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + bytes)));
        off += bytes;
    }
    json_object_set(head, "__metadata__", meta);
    char *text = json_dumps(head, JSON_COMPACT);
    json_decref(head);
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    int rc = -1;
    if (f) {
        uint64_t n = padded;
        uint8_t le[8];
        for (int i = 0; i < 8; i++) le[i] = (uint8_t)(n >> (8 * i));
        fwrite(le, 1, 8, f);
        fwrite(text, 1, len, f);
        for (size_t i = len; i < padded; i++) fputc(' ', f);
        for (int i = 0; i < 4; i++) fwrite(t[i].data, sizeof(float), (size_t)t[i].d0 * (t[i].d1 ? t[i].d1 : 1), f);
        rc = fclose(f) ? -1 : 0;
    }
    free(text);
    free(W);
    return rc;
}

static void usage(void) {
    fprintf(stderr, "usage: nade_train OUT.safetensors [--hidden H] [--epochs N] [--seed S] [--data DIR] "
                    "[--threads T]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *out = NULL, *dir = GM_DATASET_DIR;
    int H = 500, epochs = 40, threads = 2;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-') {
            if (out) usage();
            out = a;
            continue;
        }
        if (!v) usage();
        if (!strcmp(a, "--hidden")) H = atoi(v);
        else if (!strcmp(a, "--epochs")) epochs = atoi(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--data")) dir = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else usage();
        i++;
    }
    if (!out || H < 1 || H > 100000 || epochs < 0 || threads < 1 || threads > MAX_THREADS) usage();
    openblas_set_num_threads(1);

    char err[GM_ERR_LEN];
    gm_dataset train, test;
    if (gm_dataset_load(&train, dir, "train", err) || gm_dataset_load(&test, dir, "t10k", err)) {
        fprintf(stderr, "nade_train: %s\n", err);
        return 1;
    }
    int D = train.dim, N = train.n;
    float *test_x = malloc((size_t)test.n * D * sizeof(float));
    float *batch = malloc((size_t)BATCH * D * sizeof(float));
    int *perm = malloc((size_t)N * sizeof(int));
    gm_nade_params p, m, v;
    worker ws[MAX_THREADS] = {0};
    if (!test_x || !batch || !perm || gm_nade_params_alloc(&p, D, H) || gm_nade_params_alloc(&m, D, H) ||
        gm_nade_params_alloc(&v, D, H))
        goto oom;
    int block = (test.n + threads - 1) / threads; /* evaluation blocks are the largest */
    for (int t = 0; t < threads; t++) {
        ws[t].p = &p;
        ws[t].scratch = malloc((size_t)3 * block * H * sizeof(float));
        if (!ws[t].scratch || gm_nade_params_alloc(&ws[t].grad, D, H)) goto oom;
    }
    gm_binarize(&test, 0, test.n, GM_BINARIZE_SEED, test_x);

    /* Init: small uniform weights; b the logit of each pixel's mean intensity. */
    gm_rng rng;
    gm_rng_seed(&rng, seed, 0);
    float scale_w = 1.0f / sqrtf((float)D), scale_v = 1.0f / sqrtf((float)H);
    for (size_t i = 0; i < (size_t)D * H; i++) {
        p.WT[i] = (float)(gm_rng_uniform(&rng) * 2 - 1) * scale_w;
        p.V[i] = (float)(gm_rng_uniform(&rng) * 2 - 1) * scale_v;
    }
    for (int k = 0; k < D; k++) {
        double mean = 0;
        for (int r = 0; r < N; r++) mean += train.images[(size_t)r * D + k];
        mean = (mean / N) * 0.98 + 0.01;
        p.b[k] = (float)log(mean / (1 - mean));
    }
    for (int i = 0; i < N; i++) perm[i] = i;

    int steps = epochs * (N / BATCH), t = 0;
    double t0 = gm_now_s();
    printf("[nade] H=%d, %d train images, %d epochs, batch %d, %d threads\n", H, N, epochs, BATCH, threads);
    fflush(stdout);
    for (int e = 0; e < epochs; e++) {
        double te = gm_now_s(), train_nll = 0;
        for (int i = N - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)(gm_rng_next(&rng) % (uint64_t)(i + 1)), tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        for (int s = 0; s + BATCH <= N; s += BATCH) {
            for (int r = 0; r < BATCH; r++) {
                const float *src = train.images + (size_t)perm[s + r] * D;
                for (int j = 0; j < D; j++) batch[(size_t)r * D + j] = gm_rng_uniform(&rng) < src[j] ? 1.0f : 0.0f;
            }
            for (int w = 0; w < threads; w++) gm_nade_params_zero(&ws[w].grad);
            train_nll += run_split(ws, threads, batch, BATCH, grad_thread);
            for (int w = 1; w < threads; w++) { /* sum into thread 0's gradient */
                for (size_t i = 0; i < (size_t)D * H; i++) {
                    ws[0].grad.WT[i] += ws[w].grad.WT[i];
                    ws[0].grad.V[i] += ws[w].grad.V[i];
                }
                for (int j = 0; j < H; j++) ws[0].grad.c[j] += ws[w].grad.c[j];
                for (int k = 0; k < D; k++) ws[0].grad.b[k] += ws[w].grad.b[k];
            }
            t++;
            float lr = 1e-5f + 0.5f * (1e-3f - 1e-5f) * (1.0f + cosf((float)M_PI * t / steps));
            float sc = 1.0f / BATCH;
            adam(p.WT, ws[0].grad.WT, m.WT, v.WT, (size_t)D * H, lr, sc, t);
            adam(p.V, ws[0].grad.V, m.V, v.V, (size_t)D * H, lr, sc, t);
            adam(p.c, ws[0].grad.c, m.c, v.c, (size_t)H, lr, sc, t);
            adam(p.b, ws[0].grad.b, m.b, v.b, (size_t)D, lr, sc, t);
        }
        int last = e == epochs - 1;
        char test_txt[48] = "";
        if (last || e % 5 == 4)
            snprintf(test_txt, sizeof test_txt, "  test nll %.2f",
                     run_split(ws, threads, test_x, test.n, eval_thread) / test.n);
        printf("[nade] epoch %d/%d  train nll %.2f%s  %.1f s  (total %.1f min)\n", e + 1, epochs,
               train_nll / (N / BATCH * BATCH), test_txt, gm_now_s() - te, (gm_now_s() - t0) / 60);
        fflush(stdout);
    }

    char cmd[1024] = "build/nade_train";
    for (int i = 1; i < argc; i++) {
        strncat(cmd, " ", sizeof cmd - strlen(cmd) - 1);
        strncat(cmd, argv[i], sizeof cmd - strlen(cmd) - 1);
    }
    json_t *meta = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "gm.format", "1", "gm.family", "nade", "gm.image", "28x28x1",
                             "gm.activation", "sigmoid", "gm.dataset",
                             "Fashion-MNIST (Debian dataset-fashion-mnist), dynamically binarized", "gm.description",
                             "NADE, sigmoid hidden units, raster order");
    char desc[160];
    snprintf(desc, sizeof desc, "NADE H=%d, sigmoid hidden units, raster order", H);
    json_object_set_new(meta, "gm.description", json_string(desc));
    char device[64];
    snprintf(device, sizeof device, "cpu, C (nade_train), %d threads", threads);
    json_t *training = json_pack("{s:s,s:I,s:i,s:s,s:s,s:f}", "command", cmd, "seed", (json_int_t)seed, "epochs",
                                 epochs, "optimizer", "Adam 1e-3, cosine to 1e-5, batch 100", "device", device,
                                 "minutes", round((gm_now_s() - t0) / 6) / 10);
    char *tj = json_dumps(training, JSON_COMPACT);
    json_object_set_new(meta, "gm.training", json_string(tj));
    free(tj);
    json_decref(training);
    int rc = write_model(out, &p, meta);
    json_decref(meta);
    if (rc) {
        fprintf(stderr, "nade_train: cannot write %s\n", out);
        return 1;
    }
    printf("[nade] wrote %s\n", out);
    for (int w = 0; w < threads; w++) {
        free(ws[w].scratch);
        gm_nade_params_free(&ws[w].grad);
    }
    gm_nade_params_free(&p);
    gm_nade_params_free(&m);
    gm_nade_params_free(&v);
    free(test_x);
    free(batch);
    free(perm);
    gm_dataset_free(&train);
    gm_dataset_free(&test);
    return 0;
oom:
    fprintf(stderr, "nade_train: out of memory\n");
    return 1;
}
