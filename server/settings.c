/*
 * settings.c - reference-counted settings snapshots (see settings.h).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "settings.h"

typedef struct {
    gm_config cfg; /* first, so that a held gm_config * is its snapshot's address */
    atomic_int refs;
} snapshot;

struct gm_settings {
    pthread_mutex_t mu; /* makes "read the pointer, take a reference" one step */
    snapshot *current;
};

static snapshot *snapshot_new(const gm_config *cfg) {
    snapshot *p = malloc(sizeof *p);
    if (!p) return NULL;
    p->cfg = *cfg;
    atomic_init(&p->refs, 1);
    return p;
}

gm_settings *gm_settings_new(const gm_config *cfg) {
    gm_settings *s = calloc(1, sizeof *s);
    if (s && !(s->current = snapshot_new(cfg))) {
        free(s);
        return NULL;
    }
    if (s) pthread_mutex_init(&s->mu, NULL);
    return s;
}

void gm_settings_release(const gm_config *cfg) {
    snapshot *p = (snapshot *)cfg;
    if (p && atomic_fetch_sub(&p->refs, 1) == 1) free(p);
}

void gm_settings_free(gm_settings *s) {
    if (!s) return;
    gm_settings_release(&s->current->cfg);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const gm_config *gm_settings_acquire(gm_settings *s) {
    pthread_mutex_lock(&s->mu);
    snapshot *p = s->current;
    atomic_fetch_add(&p->refs, 1);
    pthread_mutex_unlock(&s->mu);
    return &p->cfg;
}

bool gm_settings_replace(gm_settings *s, const gm_config *cfg) {
    snapshot *p = snapshot_new(cfg);
    if (!p) return false;
    pthread_mutex_lock(&s->mu);
    snapshot *old = s->current;
    s->current = p;
    pthread_mutex_unlock(&s->mu);
    gm_settings_release(&old->cfg);
    return true;
}
