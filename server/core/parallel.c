/* parallel.c - row ranges on a persistent pool of threads (see parallel.h).
 *
 * Starting a thread per range cost 72 us on a busy 2-core machine, more
 * than many of the passes it split. The workers here start once, on first
 * need, and sleep on a condition variable between jobs: a hand-off is a
 * wake-up, 9.5 us there (on an idle VM either costs ~50 us: waking the
 * halted virtual CPU dominates). They sleep rather than spin because
 * OpenBLAS's own threads want the same cores between our passes. One job
 * uses the pool at a time; a caller that finds it busy (two batches
 * computed at once) runs its rows itself, which changes no result.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "gm/model.h"
#include "parallel.h"
#include "vmath.h"

#define MAX_THREADS 64

static atomic_int compute_threads = 1;

void gm_set_compute_threads(int n) { atomic_store(&compute_threads, n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n); }
int gm_compute_threads(void) { return atomic_load(&compute_threads); }

typedef struct {
    int (*fn)(void *, int, int);
    void *ctx;
    int r0, r1, rc;
    unsigned fp_mode; /* the caller's FTZ/DAZ bits (vmath.h): a row's result must not depend on its thread */
} range;

static struct {
    pthread_mutex_t in_use; /* held by the caller whose job the pool runs */
    pthread_mutex_t lock;   /* guards everything below */
    pthread_cond_t go, done;
    range ranges[MAX_THREADS]; /* range i runs on worker i (range 0: the caller) */
    int count;                 /* ranges in the current job */
    int pending;               /* worker ranges not yet finished */
    unsigned long job;         /* bumped for every job */
    int workers;               /* started so far: workers 1..workers */
} pool = {.in_use = PTHREAD_MUTEX_INITIALIZER,
          .lock = PTHREAD_MUTEX_INITIALIZER,
          .go = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.job == seen) pthread_cond_wait(&pool.go, &pool.lock);
        seen = pool.job;
        if (id >= pool.count) continue; /* this job needs fewer workers */
        range *r = &pool.ranges[id];
        pthread_mutex_unlock(&pool.lock);
        gm_fp_set_mode(r->fp_mode);
        r->rc = r->fn(r->ctx, r->r0, r->r1);
        pthread_mutex_lock(&pool.lock);
        if (--pool.pending == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

/* Starts workers up to n - 1 (with pool.in_use held); returns how many run. */
static int ensure_workers(int n) {
    while (pool.workers < n - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, worker, (void *)(intptr_t)(pool.workers + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        pool.workers++;
    }
    return pool.workers;
}

int gm_parallel_rows(int B, int min_rows, int (*fn)(void *ctx, int r0, int r1), void *ctx) {
    int n = gm_compute_threads();
    if (min_rows < 1) min_rows = 1;
    if (n > B / min_rows) n = B / min_rows;
    if (n <= 1 || pthread_mutex_trylock(&pool.in_use) != 0) return fn(ctx, 0, B);
    int workers = ensure_workers(n);
    if (n > workers + 1) n = workers + 1;
    unsigned fp_mode = gm_fp_mode();
    pthread_mutex_lock(&pool.lock);
    for (int i = 0; i < n; i++)
        pool.ranges[i] = (range){fn, ctx, (int)((long)B * i / n), (int)((long)B * (i + 1) / n), 0, fp_mode};
    pool.count = n;
    pool.pending = n - 1;
    pool.job++;
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.lock);
    int rc = fn(ctx, pool.ranges[0].r0, pool.ranges[0].r1) ? -1 : 0;
    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0) pthread_cond_wait(&pool.done, &pool.lock);
    for (int i = 1; i < n; i++)
        if (pool.ranges[i].rc) rc = -1;
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.in_use);
    return rc;
}
