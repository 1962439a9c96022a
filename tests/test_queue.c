/*
 * test_queue.c - the work queue and the batcher without HTTP: batches never
 * mix models, operations or K; jobs keep arrival order; capacity, cancel and
 * close; and a batch of merged jobs gives each job exactly the rows it would
 * get alone (checked against running each job by itself, for every
 * operation of every family).
 */
#include "testutil.h"

#include "batcher.h"
#include "queue.h"

#include <pthread.h>
#include <stdatomic.h>

/* Distinct non-NULL model pointers for key-only tests (never dereferenced). */
static const gm_model *const MA = (const gm_model *)(uintptr_t)0x1000, *const MB = (const gm_model *)(uintptr_t)0x2000;

static gm_job key_job(const gm_model *m, gm_op op, int k, int n) {
    return (gm_job){.model = m, .op = op, .k = k, .n = n};
}

static void test_batches_keep_keys_apart_and_order(void **state) {
    gm_queue *q = gm_queue_new(64);
    gm_job jobs[12];
    /* keys cycle through (MA,sample) (MB,sample) (MA,logp k=10) (MA,logp k=20) */
    for (int i = 0; i < 12; i++) {
        const gm_model *m = i % 4 == 1 ? MB : MA;
        gm_op op = i % 4 >= 2 ? GM_OP_LOGP : GM_OP_SAMPLE;
        jobs[i] = key_job(m, op, i % 4 == 2 ? 10 : i % 4 == 3 ? 20 : 0, 1);
        assert_int_equal(gm_queue_push(q, &jobs[i]), GM_PUSH_OK);
    }
    gm_job *out[16];
    int seen[12] = {0};
    for (int b = 0; b < 4; b++) {
        int n = gm_queue_pop_batch(q, 64, 0, out, 16);
        assert_int_equal(n, 3); /* each key has 3 jobs */
        for (int i = 0; i < n; i++) {
            int idx = (int)(out[i] - jobs);
            assert_int_equal(idx % 4, b);                /* oldest key first, then the next */
            if (i > 0) assert_true(out[i] > out[i - 1]); /* arrival order */
            assert_true(out[i]->model == out[0]->model && out[i]->op == out[0]->op && out[i]->k == out[0]->k);
            seen[idx]++;
        }
    }
    for (int i = 0; i < 12; i++) assert_int_equal(seen[i], 1);
    assert_int_equal(gm_queue_depth(q), 0);
    gm_queue_free(q);
}

static void test_max_rows_and_oversized_job(void **state) {
    gm_queue *q = gm_queue_new(64);
    gm_job a = key_job(MA, GM_OP_SAMPLE, 0, 3), b = key_job(MA, GM_OP_SAMPLE, 0, 3),
           big = key_job(MA, GM_OP_SAMPLE, 0, 100), c = key_job(MA, GM_OP_SAMPLE, 0, 1);
    gm_queue_push(q, &a);
    gm_queue_push(q, &b);
    gm_queue_push(q, &big);
    gm_queue_push(q, &c);
    gm_job *out[8];
    assert_int_equal(gm_queue_pop_batch(q, 8, 0, out, 8), 2); /* a + b = 6 rows; big does not fit */
    assert_ptr_equal(out[0], &a);
    assert_ptr_equal(out[1], &b);
    assert_int_equal(gm_queue_pop_batch(q, 8, 0, out, 8), 1); /* big alone, over max_rows */
    assert_ptr_equal(out[0], &big);
    assert_int_equal(gm_queue_pop_batch(q, 8, 0, out, 8), 1);
    assert_ptr_equal(out[0], &c);
    gm_queue_free(q);
}

static void test_capacity_cancel_close(void **state) {
    gm_queue *q = gm_queue_new(3);
    gm_job j[4];
    for (int i = 0; i < 4; i++) j[i] = key_job(MA, GM_OP_ENCODE, 0, 1);
    for (int i = 0; i < 3; i++) assert_int_equal(gm_queue_push(q, &j[i]), GM_PUSH_OK);
    assert_int_equal(gm_queue_push(q, &j[3]), GM_PUSH_FULL);
    assert_int_equal(gm_queue_depth(q), 3);
    assert_true(gm_queue_cancel(q, &j[1]));                /* queued: removed */
    assert_false(gm_queue_cancel(q, &j[1]));               /* not queued any more */
    assert_int_equal(gm_queue_push(q, &j[3]), GM_PUSH_OK); /* room again */
    gm_job *out[8];
    assert_int_equal(gm_queue_pop_batch(q, 64, 0, out, 8), 3);
    assert_ptr_equal(out[0], &j[0]);
    assert_ptr_equal(out[1], &j[2]);
    assert_ptr_equal(out[2], &j[3]);
    assert_false(gm_queue_cancel(q, &j[0])); /* a worker has it */
    gm_queue_push(q, &j[1]);
    gm_queue_close(q);
    assert_int_equal(gm_queue_push(q, &j[0]), GM_PUSH_CLOSED);
    assert_int_equal(gm_queue_pop_batch(q, 64, 1000000000, out, 8), 1); /* drains without waiting */
    assert_int_equal(gm_queue_pop_batch(q, 64, 0, out, 8), 0);
    gm_queue_free(q);
}

/* A worker waiting for its batch to fill takes the jobs pushed meanwhile. */
static gm_queue *late_q;
static gm_job late_jobs[3];
static void *push_late(void *arg) {
    for (int i = 1; i < 3; i++) gm_queue_push(late_q, &late_jobs[i]);
    return NULL;
}

static void test_delay_collects_late_jobs(void **state) {
    late_q = gm_queue_new(8);
    for (int i = 0; i < 3; i++) late_jobs[i] = key_job(MA, GM_OP_SAMPLE, 0, 1);
    gm_queue_push(late_q, &late_jobs[0]);
    pthread_t t;
    pthread_create(&t, NULL, push_late, NULL);
    gm_job *out[8];
    /* max_rows 3 and a 10 s delay: returns as soon as the batch is full */
    assert_int_equal(gm_queue_pop_batch(late_q, 3, 10000000000LL, out, 8), 3);
    pthread_join(t, NULL);
    gm_queue_free(late_q);
}

/* Jobs of one operation with different sizes and seeds, run merged and one by
 * one: every output row must be identical. */
typedef struct {
    gm_job job;
    float *pix, *z, *codes, *out, *out2;
    int *labels, *cats;
    gm_row *rows;
    double *logp;
    gm_logp_result *lp;
} test_job;

static void make_job(test_job *t, const gm_model *m, gm_op op, int n, uint64_t seed) {
    const gm_model_info *in = gm_model_get_info(m);
    memset(t, 0, sizeof *t);
    t->rows = seeded_rows(n, seed, 1.0f);
    t->pix = malloc((size_t)n * in->dim * sizeof(float));
    t->z = malloc((size_t)n * (in->latent_dim + 1) * sizeof(float));
    t->labels = malloc((size_t)n * sizeof(int));
    t->cats = malloc((size_t)n * sizeof(int));
    t->codes = malloc((size_t)n * (in->code_dim + 1) * sizeof(float));
    t->out = calloc((size_t)n * (in->dim + in->encode_dim), sizeof(float));
    t->out2 = calloc((size_t)n * in->encode_dim + 1, sizeof(float));
    t->logp = calloc((size_t)n, sizeof(double));
    t->lp = calloc((size_t)n, sizeof(gm_logp_result));
    gm_rng r;
    gm_rng_seed(&r, seed, 999);
    for (int i = 0; i < n * in->dim; i++) t->pix[i] = (float)gm_rng_uniform(&r);
    for (int i = 0; i < n * in->latent_dim; i++) t->z[i] = (float)gm_rng_normal(&r);
    for (int i = 0; i < n * in->code_dim; i++) t->codes[i] = (float)gm_rng_uniform(&r) * 2 - 1;
    for (int i = 0; i < n; i++) t->cats[i] = in->cat_dim ? (int)(gm_rng_next(&r) % (uint64_t)in->cat_dim) : 0;
    for (int i = 0; i < n; i++) {
        t->labels[i] = in->num_classes ? (int)(gm_rng_next(&r) % (uint64_t)in->num_classes) : -1;
        t->rows[i].label = t->labels[i];
    }
    t->job = (gm_job){.model = m, .op = op, .n = n, .k = op == GM_OP_LOGP ? 7 : 0};
    switch (op) {
    case GM_OP_SAMPLE:
        t->job.rows = t->rows;
        t->job.out_pixels = t->out;
        if (in->family == GM_FAMILY_NADE) t->job.out_logp = t->logp;
        break;
    case GM_OP_LOGP:
        t->job.pixels = t->pix;
        t->job.rows = t->rows;
        t->job.out_lp = t->lp;
        break;
    case GM_OP_ENCODE:
        t->job.pixels = t->pix;
        t->job.out_z = t->out;
        if (in->family == GM_FAMILY_VAE) t->job.out_logvar = t->out2;
        break;
    case GM_OP_DECODE:
        t->job.z = t->z;
        t->job.labels = in->num_classes ? t->labels : NULL;
        t->job.codes = in->code_dim ? t->codes : NULL;
        t->job.cats = in->cat_dim ? t->cats : NULL;
        t->job.out_pixels = t->out;
        break;
    default:
        fail();
    }
}

static void free_job(test_job *t) {
    free(t->pix);
    free(t->z);
    free(t->labels);
    free(t->cats);
    free(t->codes);
    free(t->out);
    free(t->out2);
    free(t->rows);
    free(t->logp);
    free(t->lp);
}

static void check_merged_equals_alone(const char *fixture_name, gm_op op) {
    gm_model *m = load_model(fixture_name);
    const gm_model_info *in = gm_model_get_info(m);
    enum { NJ = 4 };
    const int sizes[NJ] = {1, 5, 2, 9};
    test_job merged[NJ], alone[NJ];
    gm_job *ptrs[NJ];
    for (int i = 0; i < NJ; i++) {
        make_job(&merged[i], m, op, sizes[i], 100 + i);
        make_job(&alone[i], m, op, sizes[i], 100 + i);
        ptrs[i] = &merged[i].job;
    }
    assert_int_equal(gm_batch_run(ptrs, NJ), 17);
    for (int i = 0; i < NJ; i++) {
        gm_job *one = &alone[i].job;
        assert_int_equal(gm_batch_run(&one, 1), sizes[i]);
        assert_int_equal(merged[i].job.status, GM_JOB_OK);
        assert_int_equal(merged[i].job.batch_rows, 17);
        int n = sizes[i];
        char what[128];
        snprintf(what, sizeof what, "%s %s job %d", fixture_name, gm_op_name(op), i);
        /* NADE's own log p and sampling loops are bit-exact; whatever goes
         * through a linear layer (VAE, GAN, NADE encode) does not: sgemm blocks
         * differently for other batch sizes and one sparse row takes another
         * path, so those rows agree to float rounding */
        double tol = in->family == GM_FAMILY_NADE && op != GM_OP_ENCODE ? 0 : 1e-5;
        assert_close_f(what, merged[i].out, alone[i].out, (size_t)n * (in->dim + in->encode_dim), tol);
        assert_close_f(what, merged[i].out2, alone[i].out2, (size_t)n * in->encode_dim, tol);
        for (int r = 0; r < n; r++) {
            assert_true(fabs(merged[i].lp[r].logp - alone[i].lp[r].logp) <= tol * fmax(1, fabs(alone[i].lp[r].logp)));
            assert_true(merged[i].logp[r] == alone[i].logp[r]);
        }
        free_job(&merged[i]);
        free_job(&alone[i]);
    }
    gm_model_free(m);
}

static void test_batch_rows_go_back_to_their_jobs(void **state) {
    check_merged_equals_alone("nade_ref.safetensors", GM_OP_SAMPLE);
    check_merged_equals_alone("nade_ref.safetensors", GM_OP_LOGP);
    check_merged_equals_alone("nade_ref.safetensors", GM_OP_ENCODE);
    check_merged_equals_alone("vae_mlp.safetensors", GM_OP_SAMPLE);
    check_merged_equals_alone("vae_mlp.safetensors", GM_OP_LOGP);
    check_merged_equals_alone("vae_mlp.safetensors", GM_OP_ENCODE);
    check_merged_equals_alone("vae_mlp.safetensors", GM_OP_DECODE);
    check_merged_equals_alone("gan_cond.safetensors", GM_OP_SAMPLE);
    check_merged_equals_alone("gan_cond.safetensors", GM_OP_ENCODE);
    check_merged_equals_alone("gan_cond.safetensors", GM_OP_DECODE);
    /* an InfoGAN's categories and codes are per-row inputs too */
    check_merged_equals_alone("infogan_tiny.safetensors", GM_OP_DECODE);
    /* a mixture AAE's rows carry their components (gm_row.label) */
    check_merged_equals_alone("aae_mixture.safetensors", GM_OP_SAMPLE);
}

static bool never_alive(gm_job *j) { return false; }

static void test_expired_and_cancelled_jobs_are_not_computed(void **state) {
    gm_model *m = load_model("nade_ref.safetensors");
    test_job a, b, c;
    make_job(&a, m, GM_OP_LOGP, 2, 1);
    make_job(&b, m, GM_OP_LOGP, 3, 2);
    make_job(&c, m, GM_OP_LOGP, 4, 3);
    a.job.deadline_ns = 1; /* long past */
    b.job.alive = never_alive;
    gm_job *jobs[3] = {&a.job, &b.job, &c.job};
    assert_int_equal(gm_batch_run(jobs, 3), 4); /* only c's rows */
    assert_int_equal(a.job.status, GM_JOB_EXPIRED);
    assert_int_equal(b.job.status, GM_JOB_CANCELLED);
    assert_int_equal(c.job.status, GM_JOB_OK);
    assert_true(a.lp[0].logp == 0 && b.lp[0].logp == 0); /* untouched */
    assert_true(c.lp[0].logp < 0);
    free_job(&a);
    free_job(&b);
    free_job(&c);
    gm_model_free(m);
}

/* The worker pool end to end: every job is done exactly once, and close
 * drains the queue before the workers exit. */
static atomic_int done_count;
static void count_done(gm_job *j) { atomic_fetch_add(&done_count, 1); }

static void test_workers_finish_every_job(void **state) {
    gm_model *m = load_model("vae_mlp.safetensors");
    gm_queue *q = gm_queue_new(256);
    enum { NJ = 40 };
    test_job t[NJ];
    for (int i = 0; i < NJ; i++) {
        make_job(&t[i], m, i % 2 ? GM_OP_ENCODE : GM_OP_SAMPLE, 1 + i % 3, (uint64_t)i);
        t[i].job.done = count_done;
    }
    atomic_store(&done_count, 0);
    gm_batcher_config cfg = {.workers = 2, .max_batch = 8, .max_delay_ns = 100000};
    char err[GM_ERR_LEN];
    gm_batcher *b = gm_batcher_start(q, &cfg, err);
    assert_non_null(b);
    for (int i = 0; i < NJ; i++) assert_int_equal(gm_queue_push(q, &t[i].job), GM_PUSH_OK);
    gm_queue_close(q);
    gm_batcher_join(b);
    assert_int_equal(atomic_load(&done_count), NJ);
    for (int i = 0; i < NJ; i++) {
        assert_int_equal(t[i].job.status, GM_JOB_OK);
        assert_true(t[i].job.batch_rows >= t[i].job.n && t[i].job.batch_rows <= 8);
        free_job(&t[i]);
    }
    gm_queue_free(q);
    gm_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_keep_keys_apart_and_order),
        cmocka_unit_test(test_max_rows_and_oversized_job),
        cmocka_unit_test(test_capacity_cancel_close),
        cmocka_unit_test(test_delay_collects_late_jobs),
        cmocka_unit_test(test_batch_rows_go_back_to_their_jobs),
        cmocka_unit_test(test_expired_and_cancelled_jobs_are_not_computed),
        cmocka_unit_test(test_workers_finish_every_job),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
