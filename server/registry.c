/*
 * registry.c - named model slots with reference-counted models (see
 * registry.h).
 *
 * One mutex guards the slot table; it is held only to look a name up, bump
 * a count or swap a pointer, never while a model loads, runs or is freed, so
 * the HTTP threads that acquire models never wait behind a load.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "registry.h"

struct gm_registry {
    pthread_mutex_t mu;
    gm_served *live[GM_REGISTRY_SLOTS]; /* what each slot serves, or NULL */
    char names[GM_REGISTRY_SLOTS][GM_NAME_LEN];
    const char *name_ptrs[GM_REGISTRY_SLOTS];
    atomic_int slots; /* named slots; a name is complete before the count covers it */
};

gm_registry *gm_registry_new(void) {
    gm_registry *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    for (int i = 0; i < GM_REGISTRY_SLOTS; i++) r->name_ptrs[i] = r->names[i];
    return r;
}

void gm_registry_free(gm_registry *r) {
    if (!r) return;
    for (int i = 0; i < GM_REGISTRY_SLOTS; i++) gm_served_release(r->live[i]);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void gm_served_release(gm_served *s) {
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
    gm_model_free(s->model);
    free(s);
}

gm_served *gm_served_retain(gm_served *s) {
    atomic_fetch_add(&s->refs, 1);
    return s;
}

/* The slot named name, or -1. Names are written once, before the count
 * covers them, so this needs no lock. */
static int find_slot(const gm_registry *r, const char *name) {
    int n = atomic_load(&r->slots);
    for (int i = 0; i < n; i++)
        if (!strcmp(r->names[i], name)) return i;
    return -1;
}

static int served_count(const gm_registry *r) {
    int count = 0, n = atomic_load(&r->slots);
    for (int i = 0; i < n; i++) count += r->live[i] != NULL;
    return count;
}

int gm_registry_put(gm_registry *r, const char *name, const char *path, gm_model *m, double load_ms, bool *replaced,
                    char err[GM_ERR_LEN]) {
    gm_served *s = calloc(1, sizeof *s);
    if (!s || strlen(name) >= GM_NAME_LEN || strlen(path) >= GM_PATH_LEN) {
        gm_model_free(m);
        if (!s) return gm_errorf(err, "out of memory");
        free(s);
        return gm_errorf(err, "model \"%.64s...\": name or path too long", name);
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    s->model = m;
    s->load_ms = load_ms;
    s->loaded_unix_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    strcpy(s->name, name);
    strcpy(s->path, path);
    atomic_init(&s->refs, 1); /* the registry's */
    pthread_mutex_lock(&r->mu);
    int slot = find_slot(r, name), n = atomic_load(&r->slots);
    bool full = slot < 0 && n == GM_REGISTRY_SLOTS;
    if (slot < 0 && !full) {
        slot = n;
        strcpy(r->names[slot], name);
        atomic_store(&r->slots, n + 1); /* publishes the name */
    }
    gm_served *old = full ? NULL : r->live[slot];
    if (!full) {
        s->slot = slot;
        r->live[slot] = s;
    }
    pthread_mutex_unlock(&r->mu);
    if (full) {
        gm_served_release(s);
        return gm_errorf(err,
                         "cannot serve model \"%s\": %d model names were used since start-up, the most "
                         "one process keeps metrics for; restart to serve new names",
                         name, GM_REGISTRY_SLOTS);
    }
    if (replaced) *replaced = old != NULL;
    gm_served_release(old);
    return slot;
}

bool gm_registry_remove(gm_registry *r, const char *name) {
    pthread_mutex_lock(&r->mu);
    int slot = find_slot(r, name);
    gm_served *old = slot >= 0 ? r->live[slot] : NULL;
    if (old) r->live[slot] = NULL;
    pthread_mutex_unlock(&r->mu);
    gm_served_release(old);
    return old != NULL;
}

/* Takes a reference to what slot serves; with mu held. */
static gm_served *take(gm_registry *r, int slot) {
    gm_served *s = slot >= 0 && slot < atomic_load(&r->slots) ? r->live[slot] : NULL;
    if (s) atomic_fetch_add(&s->refs, 1);
    return s;
}

gm_served *gm_registry_acquire(gm_registry *r, const char *name) {
    pthread_mutex_lock(&r->mu);
    gm_served *s = take(r, find_slot(r, name));
    pthread_mutex_unlock(&r->mu);
    return s;
}

gm_served *gm_registry_acquire_slot(gm_registry *r, int slot) {
    pthread_mutex_lock(&r->mu);
    gm_served *s = take(r, slot);
    pthread_mutex_unlock(&r->mu);
    return s;
}

int gm_registry_list(gm_registry *r, gm_served **out, int max) {
    int count = 0;
    pthread_mutex_lock(&r->mu);
    int n = atomic_load(&r->slots);
    for (int i = 0; i < n && count < max; i++)
        if (r->live[i]) out[count++] = take(r, i);
    pthread_mutex_unlock(&r->mu);
    return count;
}

int gm_registry_count(gm_registry *r) {
    pthread_mutex_lock(&r->mu);
    int count = served_count(r);
    pthread_mutex_unlock(&r->mu);
    return count;
}

int gm_registry_find(const gm_registry *r, const char *name) { return find_slot(r, name); }

int gm_registry_slots(const gm_registry *r) { return atomic_load(&r->slots); }

const char *const *gm_registry_slot_names(const gm_registry *r) { return r->name_ptrs; }

const atomic_int *gm_registry_slot_count(const gm_registry *r) { return &r->slots; }
