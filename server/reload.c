/*
 * reload.c - load first, verify, then switch (see reload.h).
 *
 * A settings reload loads every file the new settings name before it
 * touches anything: a failure frees what it loaded and leaves the old set
 * serving. The switch then puts each new model in its slot (old ones are
 * released as they are replaced), makes the new settings current, and only
 * then removes the names the new settings no longer list, so that while it
 * runs every settings snapshot a request can hold names a default model
 * that is served.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "gm/clock.h"
#include "reload.h"

#define fail_with(out, st, ...) ((out)->status = (st), snprintf((out)->message, sizeof(out)->message, __VA_ARGS__))

/* Loads one file with its probes and self-test, timed. Anything but a
 * regular file is refused before it is opened: opening a FIFO for reading
 * waits for a writer, which would stop every later change (and the drain,
 * which waits for the control thread). */
static gm_model *load_timed(const char *path, double *ms, char err[GM_ERR_LEN]) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        gm_errorf(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(sb.st_mode)) {
        gm_errorf(err, "%s: not a regular file", path);
        return NULL;
    }
    int64_t t0 = gm_now_ns();
    gm_model *m = gm_model_load(path, err);
    *ms = (gm_now_ns() - t0) * 1e-6;
    return m;
}

static void log_loaded(const char *verb, const char *name, const char *path, const gm_model *m, double ms) {
    const gm_model_info *in = gm_model_get_info(m);
    fprintf(stderr, "gmserve: %s %s = %s (%s, %dx%dx%d) in %.0f ms\n", verb, name, path, gm_family_name(in->family),
            in->height, in->width, in->channels, ms);
}

static json_t *model_change(const char *name, const char *path, bool replaced, double ms) {
    return json_pack("{s:s,s:s,s:b,s:f}", "name", name, "path", path, "replaced", replaced, "load_ms", ms);
}

int gm_reload_initial(gm_registry *models, const gm_config *cfg, char err[2 * GM_ERR_LEN]) {
    for (int i = 0; i < cfg->n_models; i++) {
        char why[GM_ERR_LEN];
        double ms;
        gm_model *m = load_timed(cfg->models[i].path, &ms, why);
        if (!m) return snprintf(err, 2 * GM_ERR_LEN, "model \"%s\": %s", cfg->models[i].name, why), -1;
        log_loaded("loaded", cfg->models[i].name, cfg->models[i].path, m, ms);
        if (gm_registry_put(models, cfg->models[i].name, cfg->models[i].path, m, ms, NULL, why) < 0)
            return snprintf(err, 2 * GM_ERR_LEN, "%s", why), -1;
    }
    return 0;
}

/* Names the registry does not know yet, which each need a slot. */
static int new_names(const gm_registry *r, const gm_config *cfg) {
    int n = 0;
    for (int i = 0; i < cfg->n_models; i++) n += gm_registry_find(r, cfg->models[i].name) < 0;
    return n;
}

void gm_reload_settings(const gm_reload_target *t, gm_reload_outcome *out) {
    static gm_config next; /* one caller at a time (reload.h); too large for a stack */
    char err[GM_ERR_LEN], restart[GM_ERR_LEN];
    out->result = NULL;
    if (gm_config_load(&next, t->argc, t->argv, err) != GM_CONFIG_OK) {
        fail_with(out, GM_RELOAD_BAD_SETTINGS,
                  "the settings were not reloaded: %s; the server goes on with the "
                  "running settings and models",
                  err);
        return;
    }
    if (new_names(t->models, &next) > GM_REGISTRY_SLOTS - gm_registry_slots(t->models)) {
        fail_with(out, GM_RELOAD_CONFLICT,
                  "the settings name more new models than this process has slots left "
                  "(%d names since start-up); restart to serve them",
                  GM_REGISTRY_SLOTS);
        return;
    }
    const gm_config *running = gm_settings_acquire(t->settings);
    int n_restart = gm_config_keep_running(running, &next, restart, sizeof restart);
    gm_settings_release(running);

    gm_model *loaded[GM_MAX_MODELS] = {0};
    double ms[GM_MAX_MODELS];
    for (int i = 0; i < next.n_models; i++)
        if (!(loaded[i] = load_timed(next.models[i].path, &ms[i], err))) {
            for (int j = 0; j < i; j++) gm_model_free(loaded[j]);
            fail_with(out, GM_RELOAD_BAD_FILE,
                      "model \"%s\" was not reloaded: %s; nothing changed: every model "
                      "goes on serving as before",
                      next.models[i].name, err);
            return;
        }

    json_t *changes = json_array(), *removed = json_array();
    for (int i = 0; i < next.n_models; i++) {
        bool replaced = false;
        log_loaded("reloaded", next.models[i].name, next.models[i].path, loaded[i], ms[i]);
        if (gm_registry_put(t->models, next.models[i].name, next.models[i].path, loaded[i], ms[i], &replaced, err) < 0)
            fprintf(stderr, "gmserve: reload: %s\n", err); /* not reached: the slots were counted above */
        else json_array_append_new(changes, model_change(next.models[i].name, next.models[i].path, replaced, ms[i]));
    }
    bool swapped = gm_settings_replace(t->settings, &next);
    gm_served *now[GM_REGISTRY_SLOTS]; /* the running settings may still name what they dropped */
    int n_now = swapped ? gm_registry_list(t->models, now, GM_REGISTRY_SLOTS) : 0;
    for (int i = 0; i < n_now; i++) {
        if (gm_config_model_index(&next, now[i]->name) < 0 && gm_registry_remove(t->models, now[i]->name)) {
            fprintf(stderr, "gmserve: reload: %s is no longer served\n", now[i]->name);
            json_array_append_new(removed, json_string(now[i]->name));
        }
        gm_served_release(now[i]);
    }
    if (n_restart)
        fprintf(stderr, "gmserve: reload: these settings need a restart and keep their running values: %s\n", restart);
    fprintf(stderr, "gmserve: reloaded the settings%s and %d model(s)\n", swapped ? "" : " (not: out of memory)",
            next.n_models);
    out->status = swapped ? GM_RELOAD_OK : GM_RELOAD_FAILED;
    if (!swapped)
        snprintf(out->message, sizeof out->message,
                 "out of memory swapping the settings; the models "
                 "were reloaded, the settings and the names they list were not");
    out->result = swapped ? json_pack("{s:o,s:o,s:s,s:s}", "models", changes, "unloaded", removed, "default_model",
                                      next.default_model, "restart_required", n_restart ? restart : "")
                          : NULL;
    if (!swapped) json_decref(changes), json_decref(removed);
}

void gm_reload_model(const gm_reload_target *t, const char *name, const char *path, gm_reload_outcome *out) {
    char err[GM_ERR_LEN];
    out->result = NULL;
    if (!gm_config_model_name_ok(name) || strlen(name) >= GM_NAME_LEN) {
        fail_with(out, GM_RELOAD_BAD_REQUEST, "\"name\" must be 1 to %d letters, digits, '_', '.' or '-'",
                  GM_NAME_LEN - 1);
        return;
    }
    size_t plen = strlen(path), printable = 0;
    for (size_t i = 0; i < plen; i++) printable += (unsigned char)path[i] >= 0x20 && path[i] != 0x7f;
    if (!plen || plen >= GM_PATH_LEN || printable != plen) {
        fail_with(out, GM_RELOAD_BAD_REQUEST,
                  "\"path\" must be a file path of 1 to %d bytes without control "
                  "characters",
                  GM_PATH_LEN - 1);
        return;
    }
    gm_served *old = gm_registry_acquire(t->models, name);
    bool is_new = old == NULL;
    gm_served_release(old);
    if (is_new && gm_registry_count(t->models) >= GM_MAX_MODELS) {
        fail_with(out, GM_RELOAD_CONFLICT, "%d models are served already, the most; unload one first", GM_MAX_MODELS);
        return;
    }
    double ms;
    gm_model *m = load_timed(path, &ms, err);
    if (!m) {
        fail_with(out, GM_RELOAD_BAD_FILE, "model \"%s\" was not %s: %s; %s", name, is_new ? "loaded" : "replaced", err,
                  is_new ? "nothing changed" : "it goes on serving its previous file");
        return;
    }
    log_loaded(is_new ? "loaded" : "replaced", name, path, m, ms);
    bool replaced = false;
    if (gm_registry_put(t->models, name, path, m, ms, &replaced, err) < 0) {
        fail_with(out, GM_RELOAD_CONFLICT, "%s", err);
        return;
    }
    out->status = replaced ? GM_RELOAD_OK : GM_RELOAD_CREATED;
    out->result = model_change(name, path, replaced, ms);
}

void gm_reload_unload(const gm_reload_target *t, const char *name, gm_reload_outcome *out) {
    out->result = NULL;
    if (!gm_config_model_name_ok(name) || strlen(name) >= GM_NAME_LEN) { /* echoed below only when safe */
        fail_with(out, GM_RELOAD_NOT_FOUND,
                  "no model has that name: model names are 1 to %d letters, digits, "
                  "'_', '.' or '-' (GET /v1/models lists them)",
                  GM_NAME_LEN - 1);
        return;
    }
    const gm_config *cfg = gm_settings_acquire(t->settings);
    bool is_default = !strcmp(cfg->default_model, name);
    gm_settings_release(cfg);
    if (is_default) {
        fail_with(out, GM_RELOAD_CONFLICT,
                  "model \"%s\" is the default model (the default_model setting) of "
                  "/sample, /logp, /encode and /decode; name another default in the "
                  "settings and reload first",
                  name);
        return;
    }
    if (!gm_registry_remove(t->models, name)) {
        fail_with(out, GM_RELOAD_NOT_FOUND, "no model named \"%s\" is served (GET /v1/models lists them)", name);
        return;
    }
    fprintf(stderr, "gmserve: unloaded %s\n", name);
    out->status = GM_RELOAD_OK;
    out->result = json_pack("{s:s}", "unloaded", name);
}
