/*
 * test_cost.c - no request can hold the workers: the truncated normal is
 * O(1) for any truncation and has the right distribution (checked against
 * erf and a float64 integral); heavy jobs are computed in pieces that
 * interleave with other work, give the same rows as computed whole, and stop
 * between pieces at their deadline or when their client leaves; the daemon
 * refuses a request over max_request_cost_ms, answers a small request
 * quickly while two heavy ones run, keeps deadline_ms during compute, and
 * still stops on SIGTERM after truncation = 1e-30.
 */
#include "testutil.h"

#include "batcher.h"
#include "queue.h"

#include <pthread.h>
#include <stdatomic.h>

#include "daemon.h"

/* ---- the truncated normal ---- */

/* Phi(x) from libm's erfc, the independent truth for the quantile. */
static double phi_cdf(double x) { return 0.5 * erfc(-x / M_SQRT2); }

static void test_quantile_inverts_erfc(void **state) {
    for (double e = -300; e <= -0.31; e += 0.37) {
        double p = pow(10, e), x = gm_normal_quantile(p);
        /* x's relative error, by one Newton step on Phi(x) = p */
        double rel = fabs(phi_cdf(x) - p) / (exp(-0.5 * x * x) / sqrt(2 * M_PI)) / fabs(x);
        if (!(rel < 1e-14)) {
            print_error("p = %g: Phi(quantile(p)) = %.17g, x off by %.3g relative\n", p, phi_cdf(x), rel);
            fail();
        }
        if (p >= 0.01) assert_true(fabs(gm_normal_quantile(1 - p) + x) <= 1e-13); /* 1 - p is exact enough */
    }
    assert_true(gm_normal_quantile(0.5) == 0.0);
}

/* E[(z/t)^2] of the truncated normal: int_0^1 u^2 w(u) du / int_0^1 w(u) du
 * with w(u) = exp(-(t u)^2 / 2), by Simpson's rule in double (well
 * conditioned for every t, unlike 1 - 2 t phi(t) / erf(t / sqrt 2)). */
static double second_moment_over_t2(double t) {
    enum { N = 200000 };
    double num = 0, den = 0;
    for (int i = 0; i <= N; i++) {
        double u = (double)i / N, w = exp(-0.5 * t * t * u * u), c = i == 0 || i == N ? 1 : i % 2 ? 4 : 2;
        num += c * u * u * w;
        den += c * w;
    }
    return num / den;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_truncated_normal_distribution(void **state) {
    const double ts[] = {1e-30, 1e-4, 0.5, 2, 100};
    enum { N = 20000 };
    double *z = malloc(N * sizeof *z);
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        double t = ts[k];
        gm_rng r;
        gm_rng_seed(&r, 42, k);
        double sum = 0, sum2 = 0, sum4 = 0;
        for (int i = 0; i < N; i++) {
            z[i] = gm_rng_truncated_normal(&r, t);
            assert_true(fabs(z[i]) <= t);
            double s = (z[i] / t) * (z[i] / t);
            sum += z[i] / t;
            sum2 += s;
            sum4 += s * s;
        }
        /* Kolmogorov-Smirnov against F(x) = (1 + erf(x/sqrt2) / erf(t/sqrt2)) / 2 */
        qsort(z, N, sizeof *z, cmp_double);
        double ks = 0, scale = erf(t / M_SQRT2);
        for (int i = 0; i < N; i++) {
            double f = 0.5 * (1 + erf(z[i] / M_SQRT2) / scale);
            ks = fmax(ks, fmax(fabs(f - (double)i / N), fabs(f - (double)(i + 1) / N)));
        }
        double m2 = sum2 / N, want = second_moment_over_t2(t), se = sqrt((sum4 / N - m2 * m2) / N);
        print_message("t = %g: KS %.4f (limit %.4f), E[(z/t)^2] %.5f vs %.5f (se %.5f), mean/t %.4f\n", t, ks,
                      1.95 / sqrt(N), m2, want, se, sum / N);
        assert_true(ks < 1.95 / sqrt(N));                /* alpha = 0.001 */
        assert_true(fabs(m2 - want) < 5 * se);           /* the variance */
        assert_true(fabs(sum / N) < 5 * sqrt(want / N)); /* symmetric */
    }
    free(z);
}

/* The GAN's sample with truncation 1e-30 and 1e-4 (the old redraw loop never
 * ended, or took seconds) is as quick as without. */
static void test_truncated_gan_sample_is_quick(void **state) {
    gm_model *m = load_model("gan_cond.safetensors");
    const gm_model_info *in = gm_model_get_info(m);
    enum { B = 256 };
    float *px = malloc((size_t)B * in->dim * sizeof *px);
    const double ts[] = {1e-30, 1e-4};
    for (int k = 0; k < 2; k++) {
        gm_row *rows = seeded_rows(B, 7, 1.0f);
        for (int i = 0; i < B; i++) {
            rows[i].truncation = (float)ts[k];
            rows[i].label = i % in->num_classes;
        }
        int64_t t0 = gm_now_ns();
        assert_int_equal(gm_model_sample(m, B, rows, px, NULL), 0);
        double s = (gm_now_ns() - t0) * 1e-9;
        print_message("truncation %g, n = %d: %.3f s\n", ts[k], B, s);
        assert_true(s < 5.0);
        free(rows);
    }
    free(px);
    gm_model_free(m);
}

/* ---- pieces through gm_queue and gm_batch_run ---- */

typedef struct {
    gm_job job;
    float *pix, *out;
    gm_row *rows;
    double *logp;
    gm_logp_result *lp;
} tjob;

static void make(tjob *t, const gm_model *m, gm_op op, int n, int k, uint64_t seed) {
    const gm_model_info *in = gm_model_get_info(m);
    memset(t, 0, sizeof *t);
    t->rows = seeded_rows(n, seed, 1.0f);
    for (int i = 0; i < n; i++) {
        t->rows[i].label = in->num_classes ? i % in->num_classes : -1;
        t->rows[i].truncation = in->family == GM_FAMILY_GAN ? 1.0f : 0.0f;
    }
    t->pix = malloc((size_t)n * in->dim * sizeof *t->pix);
    gm_rng r;
    gm_rng_seed(&r, seed, 12345);
    for (int i = 0; i < n * in->dim; i++) t->pix[i] = (float)gm_rng_uniform(&r);
    t->out = calloc((size_t)n * in->dim, sizeof *t->out);
    t->logp = calloc((size_t)n, sizeof *t->logp);
    t->lp = calloc((size_t)n, sizeof *t->lp);
    t->job = (gm_job){.model = m, .op = op, .n = n, .k = k, .rows = t->rows};
    if (op == GM_OP_SAMPLE) {
        t->job.out_pixels = t->out;
        if (in->family == GM_FAMILY_NADE) t->job.out_logp = t->logp;
    } else {
        t->job.pixels = t->pix;
        t->job.out_lp = t->lp;
    }
}

static void drop(tjob *t) {
    free(t->pix);
    free(t->out);
    free(t->rows);
    free(t->logp);
    free(t->lp);
}

/* Two jobs of one key, one cut into pieces of 3 rows, go through the queue
 * (pop, run, requeue) until both are done; each must equal the same job
 * computed whole and alone: bit for bit for NADE, to float rounding else. */
static void check_pieces(const char *file, gm_op op, int k, double tol) {
    gm_model *m = load_model(file);
    const gm_model_info *in = gm_model_get_info(m);
    enum { NA = 11, NB = 4 };
    tjob a, b, a1, b1;
    make(&a, m, op, NA, k, 5);
    make(&b, m, op, NB, k, 6);
    make(&a1, m, op, NA, k, 5);
    make(&b1, m, op, NB, k, 6);
    a.job.chunk_rows = b.job.chunk_rows = 3; /* one key, one cost per row: one piece size */
    gm_queue *q = gm_queue_new(8);
    gm_queue_push(q, &a.job);
    gm_queue_push(q, &b.job);
    gm_job *out[4];
    int batches = 0, finished = 0;
    while (finished < 2) {
        int nj = gm_queue_pop_batch(q, 16, 0, out, 4);
        assert_true(nj >= 1);
        int rows = 0;
        for (int i = 0; i < nj; i++) rows += out[i]->take;
        assert_true(rows <= 3); /* the lead's piece bounds the merged batch */
        assert_int_equal(gm_batch_run(out, nj), rows);
        batches++;
        for (int i = 0; i < nj; i++) {
            assert_int_equal(out[i]->status, GM_JOB_OK);
            if (out[i]->rows_done < out[i]->n) gm_queue_requeue(q, out[i]);
            else finished++;
        }
    }
    assert_true(batches >= 5); /* 11 + 4 rows in pieces of 3 */
    gm_queue_free(q);
    gm_job *one = &a1.job;
    assert_int_equal(gm_batch_run(&one, 1), NA);
    one = &b1.job;
    assert_int_equal(gm_batch_run(&one, 1), NB);
    tjob *got[2] = {&a, &b}, *want[2] = {&a1, &b1};
    for (int j = 0; j < 2; j++) {
        int n = want[j]->job.n;
        if (op == GM_OP_SAMPLE && tol == 0) {
            assert_memory_equal(got[j]->out, want[j]->out, (size_t)n * in->dim * sizeof(float));
            assert_memory_equal(got[j]->logp, want[j]->logp, (size_t)n * sizeof(double));
        } else if (op == GM_OP_SAMPLE) {
            assert_close_f(file, got[j]->out, want[j]->out, (size_t)n * in->dim, tol);
        } else {
            for (int i = 0; i < n; i++) {
                double g = got[j]->lp[i].logp, w = want[j]->lp[i].logp;
                if (tol == 0 ? g != w : fabs(g - w) > tol * fmax(1, fabs(w))) {
                    print_error("%s logp row %d: in pieces %.10f, whole %.10f\n", file, i, g, w);
                    fail();
                }
            }
        }
    }
    drop(&a);
    drop(&b);
    drop(&a1);
    drop(&b1);
    gm_model_free(m);
}

static void test_pieces_equal_whole(void **state) {
    check_pieces("nade_ref.safetensors", GM_OP_SAMPLE, 0, 0);
    check_pieces("nade_ref.safetensors", GM_OP_LOGP, 0, 0);
    check_pieces("vae_mlp.safetensors", GM_OP_LOGP, 50, 1e-5);
    check_pieces("vae_mlp.safetensors", GM_OP_SAMPLE, 0, 1e-5);
    check_pieces("gan_cond.safetensors", GM_OP_SAMPLE, 0, 1e-5);
}

/* A batcher with one worker: a heavy job in pieces of one row is running
 * when a small job arrives; the small one must be done first. */
static atomic_int done_seq, heavy_pieces;
static int heavy_done_at, small_done_at;
static gm_job *heavy_job;
static gm_queue *heavy_q;
static int pieces_until_stop;
static bool stop_by_deadline;
static tjob small_t;

static void on_done(gm_job *j) {
    int seq = atomic_fetch_add(&done_seq, 1);
    if (j == heavy_job) heavy_done_at = seq;
    else small_done_at = seq;
}

/* Called before every piece of the heavy job: after the first, the small
 * job arrives; at piece pieces_until_stop the client leaves or time is up. */
static bool heavy_alive(gm_job *j) {
    int piece = atomic_fetch_add(&heavy_pieces, 1) + 1;
    if (piece == 1 && small_t.job.model) assert_int_equal(gm_queue_push(heavy_q, &small_t.job), GM_PUSH_OK);
    if (piece == pieces_until_stop) {
        if (!stop_by_deadline) return false;
        j->deadline_ns = gm_now_ns() - 1;
    }
    return true;
}

static void run_heavy(int n, int stop_at, bool by_deadline, bool with_small) {
    gm_model *vae = load_model("vae_mlp.safetensors"), *nade = load_model("nade_ref.safetensors");
    tjob heavy;
    make(&heavy, vae, GM_OP_LOGP, n, 200, 1);
    heavy.job.chunk_rows = 1;
    heavy.job.alive = heavy_alive;
    heavy.job.done = on_done;
    heavy_job = &heavy.job;
    memset(&small_t, 0, sizeof small_t);
    if (with_small) {
        make(&small_t, nade, GM_OP_SAMPLE, 1, 0, 2);
        small_t.job.done = on_done;
    }
    atomic_store(&done_seq, 0);
    atomic_store(&heavy_pieces, 0);
    heavy_done_at = small_done_at = -1;
    pieces_until_stop = stop_at;
    stop_by_deadline = by_deadline;
    heavy_q = gm_queue_new(8);
    char err[GM_ERR_LEN];
    gm_batcher_config bc = {.workers = 1, .max_batch = 16};
    gm_batcher *b = gm_batcher_start(heavy_q, &bc, err);
    assert_non_null(b);
    assert_int_equal(gm_queue_push(heavy_q, &heavy.job), GM_PUSH_OK);
    while (atomic_load(&done_seq) < (with_small ? 2 : 1)) sleep_ms(1);
    gm_queue_close(heavy_q);
    gm_batcher_join(b);
    gm_queue_free(heavy_q);
    if (with_small) {
        assert_int_equal(small_t.job.status, GM_JOB_OK);
        assert_true(small_done_at < heavy_done_at); /* it did not wait for all of the heavy job */
        drop(&small_t);
        memset(&small_t, 0, sizeof small_t);
    }
    if (by_deadline) { /* piece stop_at computes; the next finds the deadline passed */
        assert_int_equal(heavy.job.status, GM_JOB_EXPIRED);
        assert_int_equal(heavy.job.rows_done, stop_at);
        assert_int_equal(atomic_load(&heavy_pieces), stop_at);
    } else if (stop_at) { /* the client left before piece stop_at */
        assert_int_equal(heavy.job.status, GM_JOB_CANCELLED);
        assert_int_equal(heavy.job.rows_done, stop_at - 1);
        assert_int_equal(atomic_load(&heavy_pieces), stop_at);
    } else {
        assert_int_equal(heavy.job.status, GM_JOB_OK);
        assert_int_equal(heavy.job.rows_done, n);
        assert_int_equal(atomic_load(&heavy_pieces), n);
    }
    drop(&heavy);
    gm_model_free(vae);
    gm_model_free(nade);
}

static void test_small_job_overtakes_heavy(void **state) { run_heavy(8, 0, false, true); }
static void test_deadline_stops_between_pieces(void **state) { run_heavy(8, 3, true, false); }
static void test_client_gone_stops_between_pieces(void **state) { run_heavy(8, 4, false, false); }

/* ---- the daemon ---- */

/* {"images": [n binary images of 784 pixels]} */
static char *images_json(int n) {
    size_t cap = (size_t)n * (784 * 2 + 32) + 64, len = 0;
    char *s = malloc(cap);
    len += (size_t)sprintf(s, "{\"images\": [");
    gm_rng r;
    gm_rng_seed(&r, 77, 0);
    for (int i = 0; i < n; i++) {
        len += (size_t)sprintf(s + len, "%s{\"pixels\": [", i ? ", " : "");
        for (int d = 0; d < 784; d++) len += (size_t)sprintf(s + len, "%s%d", d ? "," : "", (int)(gm_rng_next(&r) & 1));
        len += (size_t)sprintf(s + len, "]}");
    }
    sprintf(s + len, "]}");
    return s;
}

typedef struct {
    int port, n, k;
    reply_t reply;
    double seconds;
} heavy_req;

static void *send_heavy(void *arg) {
    heavy_req *h = arg;
    char *body = images_json(h->n), path[96];
    snprintf(path, sizeof path, "/v1/models/vae/logp?k=%d", h->k);
    int64_t t0 = gm_now_ns();
    h->reply = http_json(h->port, path, body);
    h->seconds = (gm_now_ns() - t0) * 1e-9;
    free(body);
    return NULL;
}

/* Two heavy VAE logp requests (about 1 s each unloaded, several times that
 * under load or the sanitizers, hence the long deadline) fill both workers;
 * a one-row NADE sample sent meanwhile is answered long before either. Then
 * a GAN sample with truncation = 1e-30 is answered at once and SIGTERM stops
 * the daemon. */
static void test_daemon_small_request_not_starved(void **state) {
    const char *args[] = {"--model",
                          "nade=models/nade.safetensors",
                          "--model",
                          "vae=models/vae.safetensors",
                          "--model",
                          "gan=models/gan.safetensors",
                          "--workers",
                          "2",
                          "--deadline-ms",
                          "120000",
                          NULL};
    daemon_t d = daemon_start("cost_starve", args);
    heavy_req h[2] = {{.port = d.port, .n = 16, .k = 5000}, {.port = d.port, .n = 16, .k = 5000}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, send_heavy, &h[i]);
    sleep_ms(500); /* both are computing */
    int64_t t0 = gm_now_ns();
    reply_t r = http_get(d.port, "/sample?model=nade&n=1&format=json");
    double small_s = (gm_now_ns() - t0) * 1e-9;
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    print_message("small NADE sample: %.3f s; heavy: %.3f s and %.3f s\n", small_s, h[0].seconds, h[1].seconds);
    assert_int_equal(r.status, 200);
    assert_int_equal(h[0].reply.status, 200);
    assert_int_equal(h[1].reply.status, 200);
    assert_true(small_s < 5.0);
    assert_true(small_s < 0.25 * fmin(h[0].seconds, h[1].seconds));
    reply_free(&r);
    reply_free(&h[0].reply);
    reply_free(&h[1].reply);

    t0 = gm_now_ns();
    r = http_get(d.port, "/sample?model=gan&n=256&truncation=1e-30");
    double s = (gm_now_ns() - t0) * 1e-9;
    print_message("truncation = 1e-30, n = 256: %d in %.3f s\n", r.status, s);
    assert_int_equal(r.status, 200);
    assert_true(s < 5.0);
    reply_free(&r);
    t0 = gm_now_ns();
    assert_int_equal(daemon_stop(&d), 0);
    assert_true((gm_now_ns() - t0) * 1e-9 < 10.0);
}

/* Admission by cost (max_request_cost_ms 600), and the deadline (250 ms)
 * during compute. */
static void test_daemon_cost_limit_and_deadline(void **state) {
    const char *args[] = {"--model",
                          "vae=models/vae.safetensors",
                          "--model",
                          "gan=models/gan.safetensors",
                          "--deadline-ms",
                          "250",
                          "--max-request-cost-ms",
                          "600",
                          NULL};
    daemon_t d = daemon_start("cost_limits", args);

    /* 32 images x k = 5000 cost about 1.9 s: refused before they are queued */
    heavy_req over = {.port = d.port, .n = 32, .k = 5000};
    send_heavy(&over);
    assert_int_equal(over.reply.status, 422);
    const char *msg = (const char *)over.reply.body;
    print_message("%s\n", msg);
    assert_non_null(strstr(msg, "max_request_cost_ms"));
    assert_non_null(strstr(msg, "600 ms"));
    assert_non_null(strstr(msg, "lower k or send fewer images"));
    assert_true(over.seconds < 2.0);
    reply_free(&over.reply);
    /* 256 images at scale 16 are 51 million pixels to encode */
    reply_t r = http_get(d.port, "/sample?model=gan&n=256&scale=16");
    assert_int_equal(r.status, 422);
    assert_non_null(strstr((const char *)r.body, "lower n or scale"));
    reply_free(&r);
    r = http_get(d.port, "/sample?model=gan&n=16");
    assert_int_equal(r.status, 200);
    reply_free(&r);

    /* 8 images x k = 5000 are admitted (about 0.5 s) but their 250 ms
     * deadline passes while they compute: 504, not a 200 after it */
    heavy_req late = {.port = d.port, .n = 8, .k = 5000};
    send_heavy(&late);
    print_message("a 0.5 s request with a 250 ms deadline: %d after %.3f s\n", late.reply.status, late.seconds);
    assert_int_equal(late.reply.status, 504);
    assert_true(late.seconds < 5.0);
    reply_free(&late.reply);
    assert_int_equal(daemon_stop(&d), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantile_inverts_erfc),
        cmocka_unit_test(test_truncated_normal_distribution),
        cmocka_unit_test(test_truncated_gan_sample_is_quick),
        cmocka_unit_test(test_pieces_equal_whole),
        cmocka_unit_test(test_small_job_overtakes_heavy),
        cmocka_unit_test(test_deadline_stops_between_pieces),
        cmocka_unit_test(test_client_gone_stops_between_pieces),
        cmocka_unit_test(test_daemon_small_request_not_starved),
        cmocka_unit_test(test_daemon_cost_limit_and_deadline),
    };
    alarm(120); /* a sampler that never returns fails the binary instead of hanging it */
    return cmocka_run_group_tests_name("cost", tests, NULL, NULL);
}
