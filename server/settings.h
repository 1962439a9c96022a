/*
 * settings.h - the settings a running daemon uses now, replaceable while
 * requests read them.
 *
 * A reload builds a whole new gm_config and swaps it in; a request takes the
 * current one when it starts (gm_settings_acquire) and reads that same
 * snapshot to its end, so that no request sees half of one reload's limits
 * and half of another's, and no field changes under a reader. Snapshots are
 * reference-counted like models (registry.h): the last release of a
 * replaced one frees it.
 */
#ifndef GM_SETTINGS_H
#define GM_SETTINGS_H

#include "config.h"

typedef struct gm_settings gm_settings;

/* Starts with a copy of cfg; NULL when out of memory. */
gm_settings *gm_settings_new(const gm_config *cfg);
/* Drops the current snapshot; those still acquired live on until released.
 * Accepts NULL. */
void gm_settings_free(gm_settings *s);

/* The current snapshot, held until gm_settings_release. */
const gm_config *gm_settings_acquire(gm_settings *s);
void gm_settings_release(const gm_config *cfg); /* accepts NULL */

/* Makes a copy of cfg the current snapshot; false when out of memory (then
 * nothing changed). */
bool gm_settings_replace(gm_settings *s, const gm_config *cfg);

#endif
