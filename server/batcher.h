/*
 * batcher.h - worker threads that turn queued jobs into model batches.
 *
 * Each worker pops a batch of jobs that share a model, operation and K
 * (queue.h), concatenates their rows, runs the operation once through the
 * core, copies each job's rows back into its own outputs and calls its done
 * callback. A job the queue hands out in pieces (chunk_rows) goes back to
 * the queue after each piece until its last. Before every piece, a job past
 * its deadline or whose client left is finished without computing more.
 * Before its first piece, a job with a prepare callback (queue.h) has its
 * inputs made ready, e.g. its PNGs decoded, so that this work runs on a
 * worker and not on an HTTP thread; a job it refuses is finished at once.
 * Because every row carries its own random stream, a job's results do not
 * depend on the batch it joined nor on how it was cut into pieces.
 */
#ifndef GM_BATCHER_H
#define GM_BATCHER_H

#include "queue.h"

typedef struct {
    int workers;          /* threads */
    int max_batch;        /* rows per batch */
    int64_t max_delay_ns; /* longest wait for a batch to fill */
    /* Called by a worker after each executed batch (jobs computed, their
     * rows, compute time), e.g. for metrics; may be NULL. */
    void (*on_batch)(void *ctx, gm_job *const *jobs, int count, int rows, int64_t compute_ns);
    void *ctx;
} gm_batcher_config;

typedef struct gm_batcher gm_batcher;

/* Starts the workers on q; NULL with err filled if a thread cannot start. */
gm_batcher *gm_batcher_start(gm_queue *q, const gm_batcher_config *cfg, char err[GM_ERR_LEN]);
/* Call after gm_queue_close: waits until the workers have drained the queue
 * and exited, then frees the batcher. Accepts NULL. */
void gm_batcher_join(gm_batcher *b);

/* Mean compute time of a batch, an exponentially weighted average in ns
 * (0 before the first batch): what Retry-After estimates are made from. */
int64_t gm_batcher_service_ns(gm_batcher *b);

/* Runs one piece of each of count jobs of one batching key as one batch:
 * rows rows_done .. rows_done + take - 1 of each (take 0: all that remain).
 * Sets each job's status, times and batch_rows and advances rows_done; does
 * not call done. A job with status GM_JOB_OK and rows_done < n has rows
 * left. Returns the rows computed (jobs expired, cancelled or
 * refused by prepare are skipped).
 * For tests and workers. */
int gm_batch_run(gm_job *const *jobs, int count);

#endif
