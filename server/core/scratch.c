/* scratch.c - per-thread growing buffers; see scratch.h. */
#include "scratch.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct {
    float *p[GM_SCRATCH_SLOTS];
    size_t cap[GM_SCRATCH_SLOTS];
} workspace;

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void destroy(void *p) {
    workspace *w = p;
    for (int i = 0; i < GM_SCRATCH_SLOTS; i++) free(w->p[i]);
    free(w);
}

static void make_key(void) { pthread_key_create(&key, destroy); }

float *gm_scratch(int slot, size_t n) {
    pthread_once(&once, make_key);
    workspace *w = pthread_getspecific(key);
    if (!w) {
        if (!(w = calloc(1, sizeof *w))) return NULL;
        pthread_setspecific(key, w);
    }
    if (w->cap[slot] < n) {
        free(w->p[slot]);
        w->p[slot] = malloc((n ? n : 1) * sizeof(float));
        w->cap[slot] = w->p[slot] ? n : 0;
    }
    return w->p[slot];
}
