/* parallel.c - row ranges on short-lived threads (see parallel.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "gm/model.h"
#include "parallel.h"

#define MAX_THREADS 64

static atomic_int compute_threads = 1;

void gm_set_compute_threads(int n) { atomic_store(&compute_threads, n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n); }
int gm_compute_threads(void) { return atomic_load(&compute_threads); }

typedef struct {
    int (*fn)(void *, int, int);
    void *ctx;
    int r0, r1, rc;
    bool threaded;
    pthread_t thread;
} range;

static void *run_range(void *p) {
    range *r = p;
    r->rc = r->fn(r->ctx, r->r0, r->r1);
    return NULL;
}

int gm_parallel_rows(int B, int min_rows, int (*fn)(void *ctx, int r0, int r1), void *ctx) {
    int n = gm_compute_threads();
    if (min_rows < 1) min_rows = 1;
    if (n > B / min_rows) n = B / min_rows;
    if (n <= 1) return fn(ctx, 0, B);
    range rs[MAX_THREADS];
    for (int i = 0; i < n; i++) {
        rs[i] = (range){fn, ctx, (int)((long)B * i / n), (int)((long)B * (i + 1) / n), 0, false, 0};
        rs[i].threaded = i > 0 && pthread_create(&rs[i].thread, NULL, run_range, &rs[i]) == 0;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) { /* range 0, and any whose thread did not start, run here */
        if (rs[i].threaded) continue;
        run_range(&rs[i]);
    }
    for (int i = 0; i < n; i++) {
        if (rs[i].threaded) pthread_join(rs[i].thread, NULL);
        if (rs[i].rc) rc = -1;
    }
    return rc;
}
