/*
 * queue.c - bounded FIFO of jobs with batch-forming pop (see queue.h).
 *
 * One mutex guards a doubly linked list, so that pop (which takes jobs of
 * one key from anywhere in the queue) and cancel unlink without shifting;
 * both scan at most the queue's capacity. Pushes signal a condition variable; a worker
 * waiting for a batch to fill sleeps until the oldest job's delay runs out or
 * another push arrives, whichever is first.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "queue.h"

struct gm_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gm_job *head, *tail;
    int depth, capacity;
    int idle; /* workers inside pop_batch */
    bool closed;
};

gm_queue *gm_queue_new(int capacity) {
    gm_queue *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, &ca);
    pthread_condattr_destroy(&ca);
    q->capacity = capacity;
    return q;
}

void gm_queue_free(gm_queue *q) {
    if (!q) return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

static void unlink_job(gm_queue *q, gm_job *j) {
    if (j->prev) j->prev->next = j->next;
    else q->head = j->next;
    if (j->next) j->next->prev = j->prev;
    else q->tail = j->prev;
    j->next = j->prev = NULL;
    q->depth--;
}

static void append(gm_queue *q, gm_job *job) {
    job->next = NULL;
    job->prev = q->tail;
    if (q->tail) q->tail->next = job;
    else q->head = job;
    q->tail = job;
    q->depth++;
    pthread_cond_broadcast(&q->cv);
}

gm_push_result gm_queue_push(gm_queue *q, gm_job *job) {
    pthread_mutex_lock(&q->mu);
    gm_push_result r = GM_PUSH_OK;
    if (q->closed) r = GM_PUSH_CLOSED;
    else if (q->depth >= q->capacity) r = GM_PUSH_FULL;
    else {
        job->enqueued_ns = gm_now_ns();
        job->rows_done = job->take = 0;
        append(q, job);
    }
    pthread_mutex_unlock(&q->mu);
    return r;
}

void gm_queue_requeue(gm_queue *q, gm_job *job) {
    pthread_mutex_lock(&q->mu);
    append(q, job);
    pthread_mutex_unlock(&q->mu);
}

static bool same_key(const gm_job *a, const gm_job *b) {
    return a->model == b->model && a->op == b->op && a->k == b->k;
}

/* The rows of j that its next piece computes. */
static int piece_rows(const gm_job *j) {
    int left = j->n - j->rows_done;
    return j->chunk_rows > 0 && j->chunk_rows < left ? j->chunk_rows : left;
}

/* The most rows of a batch led by lead: max_rows, and no more than one of
 * the lead's pieces, so that merging never makes a batch heavier than that. */
static int batch_cap(const gm_job *lead, int max_rows) {
    return lead->chunk_rows > 0 && lead->chunk_rows < max_rows ? lead->chunk_rows : max_rows;
}

/* Rows that a batch led by the head job would hold now. */
static int batch_rows_ready(const gm_queue *q, int max_rows) {
    int rows = 0;
    max_rows = batch_cap(q->head, max_rows);
    for (const gm_job *j = q->head; j; j = j->next) {
        if (!same_key(j, q->head)) continue;
        int n = piece_rows(j);
        if (rows > 0 && rows + n > max_rows) break;
        rows += n;
        if (rows >= max_rows) break;
    }
    return rows;
}

int gm_queue_pop_batch(gm_queue *q, int max_rows, int64_t max_delay_ns, gm_job **out, int max_jobs) {
    pthread_mutex_lock(&q->mu);
    q->idle++;
    for (;;) {
        if (!q->head) {
            if (q->closed) {
                q->idle--;
                pthread_mutex_unlock(&q->mu);
                return 0;
            }
            pthread_cond_wait(&q->cv, &q->mu);
            continue;
        }
        int64_t due = q->head->enqueued_ns + max_delay_ns;
        if (q->closed || batch_rows_ready(q, max_rows) >= max_rows || gm_now_ns() >= due) break;
        struct timespec ts = {.tv_sec = due / 1000000000, .tv_nsec = due % 1000000000};
        int rc = pthread_cond_timedwait(&q->cv, &q->mu, &ts);
        (void)rc; /* timeout or a push: either way look again */
    }
    /* Leave a fair share to the other idle workers: one batch on one core
     * while another core idles would halve the throughput. */
    int ready = batch_rows_ready(q, max_rows);
    int share = (ready + q->idle - 1) / q->idle;
    if (share < max_rows) max_rows = share;
    q->idle--;
    gm_job *lead = q->head;
    max_rows = batch_cap(lead, max_rows);
    int count = 0, rows = 0;
    for (gm_job *j = lead, *next; j && count < max_jobs; j = next) {
        next = j->next;
        if (j != lead && !same_key(j, lead)) continue;
        int n = piece_rows(j);
        if (count > 0 && rows + n > max_rows) break;
        rows += n;
        j->take = n;
        unlink_job(q, j);
        out[count++] = j;
        if (rows >= max_rows) break;
    }
    pthread_mutex_unlock(&q->mu);
    return count;
}

bool gm_queue_cancel(gm_queue *q, gm_job *job) {
    pthread_mutex_lock(&q->mu);
    bool queued = false;
    for (gm_job *j = q->head; j; j = j->next)
        if (j == job) {
            queued = true;
            break;
        }
    if (queued) unlink_job(q, job);
    pthread_mutex_unlock(&q->mu);
    return queued;
}

int gm_queue_depth(gm_queue *q) {
    pthread_mutex_lock(&q->mu);
    int d = q->depth;
    pthread_mutex_unlock(&q->mu);
    return d;
}

int gm_queue_capacity(const gm_queue *q) { return q->capacity; }

void gm_queue_close(gm_queue *q) {
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}
