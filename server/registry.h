/*
 * registry.h - the models a running daemon serves, by name, replaceable
 * while requests run on them.
 *
 * Each loaded model is a gm_served: the model, the name and file it was
 * loaded under, when, and a reference count. The registry holds one
 * reference to the model each name serves; every request that uses a model
 * holds another, from gm_registry_acquire until gm_served_release. Putting a
 * new model under a name swaps the slot's pointer under a short lock and then
 * drops the registry's reference to the old one, so requests already holding
 * it finish on it and the last release frees it: a replacement never waits
 * for work in flight, and work in flight never sees a half-replaced model.
 * Removing a name does the same with no successor.
 *
 * A name keeps the slot number it was first given for the life of the
 * process, through replacement, removal and a later return, so that
 * per-model counters indexed by slot (metrics.c) keep counting under one
 * label. Slot names are written once and published in order (the count of
 * named slots is stored after the name), so that gm_registry_slot_name needs
 * no lock. GM_REGISTRY_SLOTS bounds the distinct names of one process.
 */
#ifndef GM_REGISTRY_H
#define GM_REGISTRY_H

#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "gm/model.h"

enum { GM_REGISTRY_SLOTS = 4 * GM_MAX_MODELS };

typedef struct {
    gm_model *model;
    int slot;
    char name[GM_NAME_LEN];
    char path[GM_PATH_LEN];
    int64_t loaded_unix_ms; /* wall-clock time of gm_registry_put */
    double load_ms;         /* how long the load took (the caller's measure) */
    atomic_int refs;
} gm_served;

typedef struct gm_registry gm_registry;

gm_registry *gm_registry_new(void); /* NULL when out of memory */
/* Drops the registry's references; models still acquired live on until
 * their last release. Accepts NULL. */
void gm_registry_free(gm_registry *r);

/* Serves m (taken over in every case: freed on failure) under name, loaded
 * from path in load_ms; what the name served before is released. Returns
 * the slot, or -1 with err filled when the name is new and all
 * GM_REGISTRY_SLOTS names were used already; replaced (may be NULL) is set
 * when the name served a model before. How many models may be served at
 * once (GM_MAX_MODELS) is the callers' rule: a reload briefly holds the old
 * and the new set. */
int gm_registry_put(gm_registry *r, const char *name, const char *path, gm_model *m, double load_ms, bool *replaced,
                    char err[GM_ERR_LEN]);

/* Stops serving name; false when it served nothing. */
bool gm_registry_remove(gm_registry *r, const char *name);

/* The model served under name (or slot), with a reference the caller must
 * release; NULL when none is. */
gm_served *gm_registry_acquire(gm_registry *r, const char *name);
gm_served *gm_registry_acquire_slot(gm_registry *r, int slot);
void gm_served_release(gm_served *s); /* accepts NULL; the last release frees the model */
/* Another reference to s, for a second holder (a job beside its router). */
gm_served *gm_served_retain(gm_served *s);

/* Every served model in slot order, each acquired, into out (at most max);
 * returns how many. */
int gm_registry_list(gm_registry *r, gm_served **out, int max);
int gm_registry_count(gm_registry *r); /* names served now */

/* The slot a name was given, served now or not, or -1 for a name never
 * put. */
int gm_registry_find(const gm_registry *r, const char *name);

/* Named slots so far (served or not), and their names: for metrics labels.
 * The names array has GM_REGISTRY_SLOTS entries and lives as long as r. */
int gm_registry_slots(const gm_registry *r);
const char *const *gm_registry_slot_names(const gm_registry *r);
/* The atomic count behind gm_registry_slots, for readers that keep a
 * pointer to it (metrics.c renders the named slots only). */
const atomic_int *gm_registry_slot_count(const gm_registry *r);

#endif
