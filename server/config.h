/*
 * config.h - every setting of the daemon, from one table.
 *
 * Settings come from, in rising precedence: built-in defaults, the JSON
 * config file (--config FILE, default config/gmserve.json when it exists),
 * command-line flags, and GMSERVE_* environment variables (for containers).
 * Each setting has one name used in all three places: the JSON key
 * "max_batch" is the flag --max-batch and the variable GMSERVE_MAX_BATCH.
 * A list given at a higher level (models, API keys, CORS origins) replaces
 * the lower level's list. --help and the README's table are made from the
 * same table, so they cannot disagree with the code.
 */
#ifndef GM_CONFIG_H
#define GM_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "gm/error.h"

enum { GM_MAX_MODELS = 32, GM_MAX_KEYS = 32, GM_NAME_LEN = 64, GM_PATH_LEN = 1024, GM_KEY_LEN = 256 };

typedef struct {
    char name[GM_NAME_LEN];
    char path[GM_PATH_LEN];
} gm_model_entry;

typedef struct {
    char config_path[GM_PATH_LEN]; /* the file read, or "" */
    char listen[GM_KEY_LEN];       /* "HOST:PORT" */
    char host[GM_KEY_LEN];         /* parsed from listen */
    int port;
    gm_model_entry models[GM_MAX_MODELS];
    int n_models;
    char default_model[GM_NAME_LEN];
    char api_keys[GM_MAX_KEYS][GM_KEY_LEN];
    int n_api_keys;
    char cors_origins[GM_MAX_KEYS][GM_KEY_LEN];
    int n_cors_origins;
    char log_format[16]; /* text, json or off */
    char web_root[GM_PATH_LEN];
    long workers, blas_threads, http_threads;
    long max_batch, max_delay_us, queue_capacity;
    long max_body_bytes, max_n, max_images, max_k, default_k, max_scale;
    long deadline_ms, max_connections, idle_timeout_s, drain_timeout_s;
    long max_request_cost_ms, chunk_cost_ms; /* admission and pieces (cost.h) */
    long max_connections_per_ip, request_timeout_s, max_body_memory_bytes;
    long admin_loopback; /* admin routes without api_keys, from loopback clients */
} gm_config;

typedef enum { GM_CONFIG_OK, GM_CONFIG_HELP, GM_CONFIG_ERROR } gm_config_result;

/* Fills cfg from defaults, file, argv (argv[0] is skipped) and the
 * environment; validates ranges, names and the listen address. On an error
 * err names the source (file, flag or variable), the setting and the rule. */
gm_config_result gm_config_load(gm_config *cfg, int argc, char **argv, char err[GM_ERR_LEN]);

/* Prints usage with every setting, its default and its meaning. */
void gm_config_usage(FILE *f);

/* Prints the settings table in Markdown (for the README). */
void gm_config_markdown(FILE *f);

/* For a reload: each setting that only a restart can change (the listening
 * address, the threads, the queue, the connection limits) and that differs
 * between running and next is set back to running's value in next, so that
 * next says what the process really uses, and is described in changed
 * ("workers (running 2, the settings say 4)", comma-separated, at most n
 * bytes). Returns how many there were. */
int gm_config_keep_running(const gm_config *running, gm_config *next, char *changed, size_t n);
/* Whether the setting of this file key needs a restart to change. */
bool gm_config_restart_only(const char *key);

/* Whether s may name a model: letters, digits, '_', '.', '-', not empty
 * (and so safe in a path segment and a metrics label). */
bool gm_config_model_name_ok(const char *s);

/* The model's index for a name, or -1. */
int gm_config_model_index(const gm_config *cfg, const char *name);

#endif
