/*
 * queue.h - the bounded work queue between HTTP handlers and workers.
 *
 * A request that needs a model becomes one gm_job: a model, an operation and
 * n rows of input, with room for n rows of output. Handlers push jobs and
 * never wait; a full queue refuses at once so that the caller can answer 503
 * instead of blocking a network thread. Workers pop batches: the oldest job
 * first, then every other queued job with the same batching key (model,
 * operation, K), in arrival order, while the rows fit in max_rows. A worker
 * that finds the oldest job's batch short of max_rows waits up to max_delay
 * (counted from that job's arrival) for more; with max_delay 0 (measured
 * best on 2 cores, see the README) a worker takes whatever queued while it
 * was busy, so batches grow with load and a lone request waits for nothing.
 * When other workers are idle, a worker takes only its fair share of the
 * ready rows, so that one batch never runs on one core while another idles.
 *
 * A heavy job is handed out in pieces: a job with chunk_rows > 0 leaves pop
 * with at most chunk_rows of its remaining rows (take), and the worker puts
 * it back at the tail (gm_queue_requeue) while rows remain, so that every job
 * queued meanwhile gets its turn before the next piece: a small request
 * waits behind a heavy one for about one piece, not for all of it. The
 * submitter sizes chunk_rows from the operation's cost (cost.h); jobs merged
 * behind a lead job share its key and so its cost per row, and the batch
 * holds at most the lead's chunk_rows.
 *
 * Jobs are owned by their submitter; the queue only links them. A job leaves
 * the queue by exactly one of pop (then a worker owns its completion, and
 * may requeue it) or a successful gm_queue_cancel (then the submitter does).
 */
#ifndef GM_QUEUE_H
#define GM_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "gm/clock.h"
#include "gm/model.h"

typedef enum {
    GM_JOB_OK,        /* outputs are filled */
    GM_JOB_EXPIRED,   /* its deadline passed before a worker reached it */
    GM_JOB_CANCELLED, /* the client went away before a worker reached it */
    GM_JOB_FAILED,    /* the model could not run it (out of memory) */
    GM_JOB_INVALID,   /* its prepare callback refused its inputs */
} gm_job_status;

typedef struct gm_job gm_job;
struct gm_job {
    /* Batching key and size, set by the submitter. */
    const gm_model *model;
    gm_op op;
    int k;          /* importance samples (logp); translate: 1 for the reverse direction; else 0 */
    int n;          /* rows */
    int chunk_rows; /* most rows computed in one piece; 0 = all at once */

    /* Inputs, n rows each, set by the submitter (those the op reads). */
    const float *pixels; /* logp, encode, discriminate, reconstruct, complete, translate: (n, D) in [0, 1] */
    const float *z;      /* decode: (n, latent_dim) */
    const int *labels;   /* decode of a conditional model, translate of a multi-domain one: (n) */
    const float *codes;  /* decode of a GAN with codes: (n, code_dim) */
    const int *cats;     /* decode of a GAN with a categorical code: (n), or NULL */
    gm_row *rows;        /* sample, logp, complete: (n) per-row parameters and streams */

    /* Outputs, allocated by the submitter for the op it asks. */
    float *out_pixels;      /* sample, decode, reconstruct, complete, translate: (n, D) */
    double *out_logp;       /* sample: (n) exact log p (NADE), or NULL; complete: (n) */
    double *out_logp_rest;  /* complete: (n) log p of the drawn pixels given the kept ones */
    gm_logp_result *out_lp; /* logp: (n) */
    float *out_z;           /* encode: (n, encode_dim) */
    float *out_logvar;      /* encode of a VAE: (n, encode_dim) */
    float *out_logits;      /* discriminate: (n) */

    /* Time in ns (CLOCK_MONOTONIC): set at the first push; deadline 0 =
     * none. The deadline is checked before every piece. */
    int64_t enqueued_ns, deadline_ns;
    /* Set by the worker before done: when its first piece started and its
     * last ended, and the rows of the last batch it joined. */
    int64_t started_ns, finished_ns;
    int batch_rows;
    gm_job_status status;
    /* Progress, kept by pop and the worker: rows computed so far, and the
     * rows of the piece being computed (0 = all that remain). */
    int rows_done, take;

    /* Called by the worker once, before the job's first piece, to turn
     * encoded inputs into the arrays above (e.g. decode PNGs off the HTTP
     * threads); false finishes the job as GM_JOB_INVALID, the submitter
     * having kept the reason. A job is prepared before any of its rows is
     * merged into a batch. NULL = the inputs are ready. */
    bool (*prepare)(gm_job *job);
    /* Called by the worker just before computing each piece: false drops
     * the job as cancelled (the client disconnected). NULL = always alive. */
    bool (*alive)(gm_job *job);
    /* Called by the worker exactly once when the job leaves its hands; the
     * job must not be touched by the worker afterwards. */
    void (*done)(gm_job *job);
    /* The submitter's record of the request, for alive and done: a struct
     * the submitter defines (http.c's request); the queue never reads it. */
    struct gm_job_owner *owner;
    int slot; /* the model's index in the server's list, for the metrics */

    gm_job *next, *prev; /* queue links */
};

typedef struct gm_queue gm_queue;

gm_queue *gm_queue_new(int capacity);
void gm_queue_free(gm_queue *q); /* accepts NULL; the queue must be empty */

typedef enum { GM_PUSH_OK, GM_PUSH_FULL, GM_PUSH_CLOSED } gm_push_result;
/* Appends job (stamping enqueued_ns) unless the queue is full or closed. */
gm_push_result gm_queue_push(gm_queue *q, gm_job *job);

/* Blocks until a batch is ready, writes up to max_jobs jobs to out in arrival
 * order and returns how many; 0 once the queue is closed and empty. A single
 * job with more than max_rows rows forms a batch of its own. Each job's take
 * says how many of its remaining rows this batch computes. */
int gm_queue_pop_batch(gm_queue *q, int max_rows, int64_t max_delay_ns, gm_job **out, int max_jobs);

/* Puts back at the tail a popped job that has rows left (rows_done < n).
 * It was admitted already, so neither capacity nor close refuses it. */
void gm_queue_requeue(gm_queue *q, gm_job *job);

/* Removes job if it is still queued: true if removed, false if a worker has
 * it already (its done callback will run). */
bool gm_queue_cancel(gm_queue *q, gm_job *job);

int gm_queue_depth(gm_queue *q); /* jobs waiting */
int gm_queue_capacity(const gm_queue *q);

/* No more pushes; workers drain what is queued, then pop returns 0. */
void gm_queue_close(gm_queue *q);

#endif
