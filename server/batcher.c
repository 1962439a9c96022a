/*
 * batcher.c - worker pool: pop a batch, merge rows, run the model once,
 * scatter rows back (see batcher.h).
 *
 * Merging is table-driven: every per-row array of gm_job is one entry of
 * FIELDS with its row size, so each operation batches the same way and a
 * lone job runs on its own buffers without a copy.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "batcher.h"

enum { MAX_JOBS_PER_BATCH = 1024 };

struct gm_batcher {
    gm_queue *q;
    gm_batcher_config cfg;
    pthread_t *threads;
    int started;
    _Atomic int64_t service_ns;
};

typedef enum {
    UNIT_PIXELS,
    UNIT_LATENT,
    UNIT_CODE,
    UNIT_ENCODED,
    UNIT_INT,
    UNIT_ROW,
    UNIT_DOUBLE,
    UNIT_LP,
    UNIT_FLOAT
} unit;

static const struct {
    size_t offset;
    bool input;
    unit unit;
} FIELDS[] = {
    {offsetof(gm_job, pixels), true, UNIT_PIXELS},
    {offsetof(gm_job, z), true, UNIT_LATENT},
    {offsetof(gm_job, labels), true, UNIT_INT},
    {offsetof(gm_job, rows), true, UNIT_ROW},
    {offsetof(gm_job, codes), true, UNIT_CODE},
    {offsetof(gm_job, cats), true, UNIT_INT},
    {offsetof(gm_job, out_pixels), false, UNIT_PIXELS},
    {offsetof(gm_job, out_logp), false, UNIT_DOUBLE},
    {offsetof(gm_job, out_logp_rest), false, UNIT_DOUBLE},
    {offsetof(gm_job, out_lp), false, UNIT_LP},
    {offsetof(gm_job, out_z), false, UNIT_ENCODED},
    {offsetof(gm_job, out_logvar), false, UNIT_ENCODED},
    {offsetof(gm_job, out_logits), false, UNIT_FLOAT},
};
enum { NFIELDS = sizeof FIELDS / sizeof FIELDS[0] };

static size_t row_bytes(const gm_model_info *in, unit u) {
    switch (u) {
    case UNIT_PIXELS:
        return (size_t)in->dim * sizeof(float);
    case UNIT_LATENT:
        return (size_t)in->latent_dim * sizeof(float);
    case UNIT_CODE:
        return (size_t)in->code_dim * sizeof(float);
    case UNIT_ENCODED:
        return (size_t)in->encode_dim * sizeof(float);
    case UNIT_INT:
        return sizeof(int);
    case UNIT_ROW:
        return sizeof(gm_row);
    case UNIT_DOUBLE:
        return sizeof(double);
    case UNIT_LP:
        return sizeof(gm_logp_result);
    case UNIT_FLOAT:
        return sizeof(float);
    }
    return 0;
}

static void **field(gm_job *j, int f) { return (void **)((char *)j + FIELDS[f].offset); }

/* The piece of j that its take selects, as a job of its own: every per-row
 * array starts at the piece's first row, so a piece needs no copy. */
static gm_job piece_of(gm_job *j, const gm_model_info *in) {
    gm_job p = *j;
    p.n = j->take;
    for (int f = 0; f < NFIELDS; f++) {
        char *base = *field(&p, f);
        if (base) *field(&p, f) = base + (size_t)j->rows_done * row_bytes(in, FIELDS[f].unit);
    }
    return p;
}

/* Runs one job (possibly a merged one) through the core. */
static int run_op(gm_job *j) {
    switch (j->op) {
    case GM_OP_SAMPLE:
        return gm_model_sample(j->model, j->n, j->rows, j->out_pixels, j->out_logp);
    case GM_OP_LOGP:
        return gm_model_logp(j->model, j->n, j->pixels, j->k, j->rows, j->out_lp);
    case GM_OP_ENCODE:
        return gm_model_encode(j->model, j->n, j->pixels, j->out_z, j->out_logvar);
    case GM_OP_DECODE:
        return gm_model_decode_codes(j->model, j->n, j->z, j->labels, j->codes, j->cats, j->out_pixels);
    case GM_OP_DISCRIMINATE:
        return gm_model_discriminate(j->model, j->n, j->pixels, j->out_logits);
    case GM_OP_RECONSTRUCT:
        return gm_model_reconstruct(j->model, j->n, j->pixels, j->out_pixels);
    case GM_OP_COMPLETE:
        return gm_model_complete(j->model, j->n, j->pixels, j->rows, j->out_pixels, j->out_logp, j->out_logp_rest);
    case GM_OP_TRANSLATE: /* k is the direction (1: reverse), a batching key: one direction a batch */
        return gm_model_translate(j->model, j->n, j->pixels, j->labels, j->k == 1, j->out_pixels);
    case GM_OP_COUNT:
        break;
    }
    return -1;
}

/* Merges the jobs' rows into one job, runs it, copies rows back. */
static int run_merged(gm_job *const *jobs, int count, int rows) {
    const gm_model_info *in = gm_model_get_info(jobs[0]->model);
    gm_job all = *jobs[0];
    all.n = rows;
    int rc = 0;
    for (int f = 0; f < NFIELDS; f++) {
        *field(&all, f) = NULL;
        bool any = false;
        for (int i = 0; i < count; i++) any |= *field(jobs[i], f) != NULL;
        if (!any) continue;
        size_t rb = row_bytes(in, FIELDS[f].unit);
        char *buf = calloc((size_t)rows, rb);
        if (!buf) rc = -1;
        *field(&all, f) = buf;
        if (!buf || !FIELDS[f].input) continue;
        for (int i = 0, r = 0; i < count; r += jobs[i]->n, i++)
            if (*field(jobs[i], f)) memcpy(buf + (size_t)r * rb, *field(jobs[i], f), (size_t)jobs[i]->n * rb);
    }
    if (rc == 0) rc = run_op(&all);
    for (int f = 0; f < NFIELDS; f++) {
        char *buf = *field(&all, f);
        if (rc == 0 && buf && !FIELDS[f].input) {
            size_t rb = row_bytes(in, FIELDS[f].unit);
            for (int i = 0, r = 0; i < count; r += jobs[i]->n, i++)
                if (*field(jobs[i], f)) memcpy(*field(jobs[i], f), buf + (size_t)r * rb, (size_t)jobs[i]->n * rb);
        }
        free(buf);
    }
    return rc;
}

/* Readies a job's inputs before its first piece: every job of a batch is
 * prepared before any rows are merged, and one whose inputs are refused
 * leaves the batch without touching the others. */
static bool prepare_once(gm_job *j) {
    bool ok = j->prepare(j);
    j->prepare = NULL;
    return ok;
}

int gm_batch_run(gm_job *const *jobs, int count) {
    gm_job *live[MAX_JOBS_PER_BATCH];
    int nlive = 0, rows = 0;
    int64_t start = gm_now_ns();
    for (int i = 0; i < count; i++) {
        gm_job *j = jobs[i];
        if (j->take <= 0 || j->take > j->n - j->rows_done) j->take = j->n - j->rows_done;
        if (j->rows_done == 0) j->started_ns = start;
        if (j->deadline_ns && start > j->deadline_ns) j->status = GM_JOB_EXPIRED;
        else if (j->alive && !j->alive(j)) j->status = GM_JOB_CANCELLED;
        else if (j->prepare && !prepare_once(j)) j->status = GM_JOB_INVALID;
        else if (nlive < MAX_JOBS_PER_BATCH) {
            live[nlive++] = j;
            rows += j->take;
        }
    }
    int rc = 0;
    const gm_model_info *in = nlive ? gm_model_get_info(live[0]->model) : NULL;
    if (nlive == 1) {
        gm_job p = piece_of(live[0], in);
        rc = run_op(&p);
    } else if (nlive > 1) {
        gm_job *pieces = malloc((size_t)nlive * sizeof *pieces), *ptrs[MAX_JOBS_PER_BATCH];
        if (!pieces) rc = -1;
        for (int i = 0; pieces && i < nlive; i++) {
            pieces[i] = piece_of(live[i], in);
            ptrs[i] = &pieces[i];
        }
        if (pieces) rc = run_merged(ptrs, nlive, rows);
        free(pieces);
    }
    int64_t end = gm_now_ns();
    for (int i = 0; i < nlive; i++) {
        live[i]->status = rc == 0 ? GM_JOB_OK : GM_JOB_FAILED;
        live[i]->finished_ns = end;
        live[i]->batch_rows = rows;
        live[i]->rows_done += live[i]->take;
    }
    for (int i = 0; i < count; i++) jobs[i]->take = 0;
    return rows;
}

static void *worker_main(void *arg) {
    gm_batcher *b = arg;
    gm_job *jobs[MAX_JOBS_PER_BATCH];
    int count;
    while ((count = gm_queue_pop_batch(b->q, b->cfg.max_batch, b->cfg.max_delay_ns, jobs, MAX_JOBS_PER_BATCH)) > 0) {
        int64_t t0 = gm_now_ns();
        int rows = gm_batch_run(jobs, count);
        int64_t dt = gm_now_ns() - t0;
        if (rows > 0) {
            int64_t old = atomic_load(&b->service_ns);
            atomic_store(&b->service_ns, old ? (old * 7 + dt) / 8 : dt);
            if (b->cfg.on_batch) b->cfg.on_batch(b->cfg.ctx, jobs, count, rows, dt);
        }
        for (int i = 0; i < count; i++) {
            gm_job *j = jobs[i];
            if (j->status == GM_JOB_OK && j->rows_done < j->n) gm_queue_requeue(b->q, j); /* others go first */
            else j->done(j);
        }
    }
    return NULL;
}

gm_batcher *gm_batcher_start(gm_queue *q, const gm_batcher_config *cfg, char err[GM_ERR_LEN]) {
    gm_batcher *b = calloc(1, sizeof *b);
    if (b) b->threads = calloc((size_t)cfg->workers, sizeof *b->threads);
    if (!b || !b->threads) {
        free(b);
        gm_errorf(err, "out of memory starting %d workers", cfg->workers);
        return NULL;
    }
    b->q = q;
    b->cfg = *cfg;
    for (; b->started < cfg->workers; b->started++)
        if (pthread_create(&b->threads[b->started], NULL, worker_main, b) != 0) {
            gm_errorf(err, "cannot start worker thread %d of %d", b->started + 1, cfg->workers);
            gm_queue_close(q);
            gm_batcher_join(b);
            return NULL;
        }
    return b;
}

void gm_batcher_join(gm_batcher *b) {
    if (!b) return;
    for (int i = 0; i < b->started; i++) pthread_join(b->threads[i], NULL);
    free(b->threads);
    free(b);
}

int64_t gm_batcher_service_ns(gm_batcher *b) { return atomic_load(&b->service_ns); }
