/*
 * reload.h - changing what a running daemon serves: re-reading the settings
 * and every model file, loading or replacing one model, unloading one.
 *
 * Each change loads and verifies first and switches after, so a model being
 * replaced serves until its successor has loaded, recomputed its probes and
 * passed its self-test (gm_model_load does both); a file or a settings file
 * that fails leaves everything as it was, and the outcome names the file and
 * what was wrong. Requests in flight keep the model and the settings they
 * started with (registry.h, settings.h).
 *
 * A reload serves exactly the models the settings name: models loaded or
 * unloaded through gm_reload_model and gm_reload_unload since the last
 * reload are forgotten by the next one, as a restart would forget them.
 * Settings only a restart can change keep their running values and are
 * named in the outcome.
 *
 * The functions are not reentrant: one caller at a time (control.h runs
 * them on one thread). They log what they did to stderr.
 */
#ifndef GM_RELOAD_H
#define GM_RELOAD_H

#include <jansson.h>

#include "registry.h"
#include "settings.h"

typedef struct {
    gm_registry *models;
    gm_settings *settings;
    int argc; /* the command line, read again with the environment and the config file */
    char **argv;
} gm_reload_target;

typedef enum {
    GM_RELOAD_OK,           /* done: what changed is in result */
    GM_RELOAD_CREATED,      /* done, and a model name is served that was not */
    GM_RELOAD_BAD_REQUEST,  /* the name or path given cannot be used */
    GM_RELOAD_BAD_SETTINGS, /* the settings do not load: nothing changed */
    GM_RELOAD_BAD_FILE,     /* a model file does not load or verify: nothing changed */
    GM_RELOAD_NOT_FOUND,    /* no model of that name is served */
    GM_RELOAD_CONFLICT,     /* the change would break the settings (the default model, the most models) */
    GM_RELOAD_FAILED,       /* out of memory */
} gm_reload_status;

typedef struct {
    gm_reload_status status;
    char message[2 * GM_ERR_LEN]; /* not OK or CREATED: what was wrong and what to do */
    json_t *result;               /* OK or CREATED: what changed (the caller takes it) */
} gm_reload_outcome;

/* Reads the settings again (command line, environment, config file) and
 * loads every model they name. */
void gm_reload_settings(const gm_reload_target *t, gm_reload_outcome *out);

/* Serves the file at path under name, replacing what name served. */
void gm_reload_model(const gm_reload_target *t, const char *name, const char *path, gm_reload_outcome *out);

/* Stops serving name (not the default model). */
void gm_reload_unload(const gm_reload_target *t, const char *name, gm_reload_outcome *out);

/* Loads the models of cfg into an empty registry, for start-up: 0, or -1
 * with err naming the model, its file and the problem. */
int gm_reload_initial(gm_registry *models, const gm_config *cfg, char err[2 * GM_ERR_LEN]);

#endif
