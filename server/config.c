/*
 * config.c - the settings table and the four layers that fill it (see
 * config.h).
 *
 * Every setting is one row of OPTIONS: its JSON key (from which the flag and
 * the environment variable are derived), type, place in gm_config, range,
 * default and help. Defaults go through the same parser as user input, so a
 * default is validated exactly like a value from a file.
 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define DEFAULT_CONFIG "config/gmserve.json"

typedef enum { T_LONG, T_STRING, T_MODELS, T_KEYS, T_ORIGINS } opt_type;

typedef struct {
    const char *key;
    const char *flag; /* NULL: "--" + key with '-' for '_' */
    opt_type type;
    size_t offset, size;
    long min, max;
    const char *dflt;
    const char *help;
} option;

#define LONG(k, lo, hi, d, h)                                                                                          \
    { #k, NULL, T_LONG, offsetof(gm_config, k), 0, lo, hi, #d, h }
#define STR(k, d, h)                                                                                                   \
    { #k, NULL, T_STRING, offsetof(gm_config, k), sizeof(((gm_config *)0)->k), 0, 0, d, h }

static const option OPTIONS[] = {
    STR(listen, "127.0.0.1:8080", "address and port to listen on, HOST:PORT ([V6]:PORT for IPv6; port 0 picks one)"),
    {"models", "model", T_MODELS, 0, 0, 0, 0, "",
     "models to serve, NAME=PATH (flag repeated; variable and file: comma list / JSON object)"},
    STR(default_model, "",
        "model of the shortcut routes /sample /logp /encode /decode (default: the first; a level that replaces the "
        "models without naming one falls back to its first)"),
    {"api_keys", "api-key", T_KEYS, 0, 0, 0, 0, "",
     "accepted Authorization: Bearer keys; none = no authentication (health routes stay open)"},
    {"cors_origins", "cors-origin", T_ORIGINS, 0, 0, 0, 0, "",
     "origins allowed by CORS, or * for any; none = CORS off"},
    STR(log_format, "text", "access log on stderr: text, json or off"),
    STR(web_root, "web", "folder of the web page served at /"),
    LONG(workers, 1, 64, 2, "worker threads computing batches"),
    LONG(blas_threads, 1, 64, 1,
         "threads per operation: OpenBLAS's, and NADE's row split (process-wide; 1 is best with 2 workers on 2 cores)"),
    LONG(http_threads, 1, 64, 2, "HTTP threads (epoll; requests never wait for compute on them)"),
    LONG(max_batch, 1, 4096, 16, "most rows (images) computed together in one batch"),
    LONG(max_delay_us, 0, 1000000, 0,
         "longest a request waits for more to join its batch, microseconds (0: take what queued meanwhile)"),
    LONG(queue_capacity, 1, 65536, 256, "requests waiting for a worker; beyond it 503 with Retry-After"),
    LONG(max_body_bytes, 1024, 1073741824, 8388608, "largest request body; beyond it 413"),
    LONG(max_n, 1, 65536, 256, "most images one sample request, or completions one complete request, may ask for"),
    LONG(max_images, 1, 65536, 256, "most images or latents in one logp, encode or decode request"),
    LONG(max_k, 1, 1000000, 5000, "most importance samples K per image of a VAE logp"),
    LONG(default_k, 1, 1000000, 100, "K when a VAE logp request gives none"),
    LONG(max_scale, 1, 64, 16, "largest PNG upscaling factor"),
    LONG(deadline_ms, 1, 3600000, 30000, "a request not computed within this many ms gets 504"),
    LONG(max_connections, 4, 100000, 512, "simultaneous HTTP connections"),
    LONG(idle_timeout_s, 1, 86400, 60,
         "a connection with no traffic either way is closed after this many seconds (between requests, "
         "request_timeout_s comes first)"),
    LONG(drain_timeout_s, 0, 3600, 30, "on SIGTERM, longest wait for accepted requests to finish"),
    LONG(max_request_cost_ms, 1, 86400000, 10000,
         "most estimated compute one request may cost, ms of one core (n x cost per row, x K for a VAE logp, plus PNG "
         "work); beyond it 422"),
    LONG(chunk_cost_ms, 1, 60000, 50,
         "a request is computed in pieces of about this many ms of compute, so others wait at most about one piece"),
    LONG(max_connections_per_ip, 0, 100000, 0,
         "simultaneous HTTP connections from one client address, more are closed as they arrive (0: no limit, the "
         "default: clients behind one proxy or NAT share an address, and the deadlines already free slots held by "
         "partial requests)"),
    LONG(request_timeout_s, 1, 86400, 20,
         "a request's headers and body must arrive within this many seconds of the connection opening or its previous "
         "reply, however slowly they trickle"),
    LONG(max_body_memory_bytes, 1048576, 68719476736, 268435456,
         "memory all request bodies being received may hold together; beyond it 503 with Retry-After"),
    LONG(admin_loopback, 0, 1, 0,
         "1: with no api_keys, clients on the loopback address (127.0.0.0/8, ::1) may use the admin routes "
         "/v1/admin/...; 0: without api_keys the admin routes are refused (403). With api_keys they always need a key"),
};
enum { NOPTIONS = sizeof OPTIONS / sizeof OPTIONS[0] };

/* What a reload cannot change: the listening socket, the threads and the
 * queue are made once at start-up, and so are the connection limits and
 * budgets libmicrohttpd and the reaper were started with. */
static const char *const RESTART_ONLY[] = {
    "listen",         "workers",           "blas_threads",           "http_threads",
    "max_batch",      "max_delay_us",      "queue_capacity",         "max_connections",
    "idle_timeout_s", "request_timeout_s", "max_connections_per_ip", "max_body_memory_bytes",
};
enum { NRESTART = sizeof RESTART_ONLY / sizeof RESTART_ONLY[0] };

static void flag_name(const option *o, char *out, size_t n) {
    snprintf(out, n, "--%s", o->flag ? o->flag : o->key);
    for (char *p = out + 2; *p; p++)
        if (*p == '_') *p = '-';
}

static void env_name(const option *o, char *out, size_t n) {
    snprintf(out, n, "GMSERVE_%s", o->key);
    for (char *p = out; *p; p++) *p = (char)toupper((unsigned char)*p);
}

bool gm_config_model_name_ok(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_.-", *s)) return false;
    return true;
}

/* Appends one list element (a model "NAME=PATH", a key or an origin). */
static int list_add(gm_config *cfg, const option *o, const char *item, const char *src, char *err) {
    size_t len = strlen(item);
    if (o->type == T_MODELS) {
        const char *eq = strchr(item, '=');
        if (!eq || eq == item || !eq[1]) return gm_errorf(err, "%s: model \"%s\" must be NAME=PATH", src, item);
        if (cfg->n_models == GM_MAX_MODELS) return gm_errorf(err, "%s: more than %d models", src, GM_MAX_MODELS);
        gm_model_entry *m = &cfg->models[cfg->n_models];
        size_t nlen = (size_t)(eq - item);
        if (nlen >= GM_NAME_LEN || strlen(eq + 1) >= GM_PATH_LEN)
            return gm_errorf(err, "%s: model \"%s\": name or path too long", src, item);
        memcpy(m->name, item, nlen);
        m->name[nlen] = 0;
        strcpy(m->path, eq + 1);
        if (!gm_config_model_name_ok(m->name))
            return gm_errorf(err, "%s: model name \"%s\" may only use letters, digits, '_', '.', '-'", src, m->name);
        for (int i = 0; i < cfg->n_models; i++)
            if (strcmp(cfg->models[i].name, m->name) == 0)
                return gm_errorf(err, "%s: model \"%s\" is named twice", src, m->name);
        cfg->n_models++;
        return 0;
    }
    char(*list)[GM_KEY_LEN] = o->type == T_KEYS ? cfg->api_keys : cfg->cors_origins;
    int *count = o->type == T_KEYS ? &cfg->n_api_keys : &cfg->n_cors_origins;
    if (!len) return gm_errorf(err, "%s: empty %s entry", src, o->key);
    if (len >= GM_KEY_LEN) return gm_errorf(err, "%s: a %s entry is over %d bytes", src, o->key, GM_KEY_LEN - 1);
    if (*count == GM_MAX_KEYS) return gm_errorf(err, "%s: more than %d %s", src, GM_MAX_KEYS, o->key);
    strcpy(list[(*count)++], item);
    return 0;
}

static void list_clear(gm_config *cfg, const option *o) {
    if (o->type == T_MODELS) cfg->n_models = 0;
    if (o->type == T_KEYS) cfg->n_api_keys = 0;
    if (o->type == T_ORIGINS) cfg->n_cors_origins = 0;
}

/* What one level (file, flags or environment) set of the two settings that
 * hang together: default_model names a model of the list it came with. */
typedef struct {
    bool models, default_model;
} level_seen;

static void level_note(level_seen *seen, const option *o) {
    if (o->type == T_MODELS) seen->models = true;
    if (o->type == T_STRING && o->offset == offsetof(gm_config, default_model)) seen->default_model = true;
}

/* A level that replaced the models list without naming a default drops the
 * lower level's default, which named a model of the old list: the default
 * becomes the first model of the new list, as with no default at all. */
static void level_end(gm_config *cfg, const level_seen *seen) {
    if (seen->models && !seen->default_model) cfg->default_model[0] = 0;
}

static int set_long(gm_config *cfg, const option *o, long v, const char *src, char *err) {
    if (v < o->min || v > o->max)
        return gm_errorf(err, "%s: %s = %ld is out of range [%ld, %ld]", src, o->key, v, o->min, o->max);
    *(long *)((char *)cfg + o->offset) = v;
    return 0;
}

/* Sets a setting from text: a number, a string, or a comma-separated list
 * that replaces the list (the flag form adds one element instead). */
static int set_text(gm_config *cfg, const option *o, const char *text, const char *src, char *err) {
    if (o->type == T_LONG) {
        char *end;
        errno = 0;
        long v = strtol(text, &end, 10);
        if (errno || end == text || *end) return gm_errorf(err, "%s: %s = \"%s\" is not an integer", src, o->key, text);
        return set_long(cfg, o, v, src, err);
    }
    if (o->type == T_STRING) {
        if (strlen(text) >= o->size) return gm_errorf(err, "%s: %s is longer than %zu bytes", src, o->key, o->size - 1);
        strcpy((char *)cfg + o->offset, text);
        return 0;
    }
    list_clear(cfg, o);
    char buf[8192];
    if (strlen(text) >= sizeof buf) return gm_errorf(err, "%s: %s is too long", src, o->key);
    strcpy(buf, text);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (list_add(cfg, o, tok, src, err)) return -1;
    return 0;
}

static const option *find_key(const char *key) {
    for (int i = 0; i < NOPTIONS; i++)
        if (strcmp(OPTIONS[i].key, key) == 0) return &OPTIONS[i];
    return NULL;
}

static int set_json(gm_config *cfg, const option *o, json_t *v, const char *src, char *err) {
    switch (o->type) {
    case T_LONG:
        if (!json_is_integer(v)) return gm_errorf(err, "%s: \"%s\" must be an integer", src, o->key);
        if (json_integer_value(v) < LONG_MIN || json_integer_value(v) > LONG_MAX) break;
        return set_long(cfg, o, (long)json_integer_value(v), src, err);
    case T_STRING:
        if (!json_is_string(v)) return gm_errorf(err, "%s: \"%s\" must be a string", src, o->key);
        return set_text(cfg, o, json_string_value(v), src, err);
    case T_MODELS: {
        if (!json_is_object(v))
            return gm_errorf(err, "%s: \"models\" must be an object {\"NAME\": \"PATH\", ...}", src);
        list_clear(cfg, o);
        const char *name;
        json_t *path;
        json_object_foreach(v, name, path) {
            char item[GM_NAME_LEN + GM_PATH_LEN + 2];
            if (!json_is_string(path)) return gm_errorf(err, "%s: models.%s must be a file path string", src, name);
            if (snprintf(item, sizeof item, "%s=%s", name, json_string_value(path)) >= (int)sizeof item)
                return gm_errorf(err, "%s: models.%s: name or path too long", src, name);
            if (list_add(cfg, o, item, src, err)) return -1;
        }
        return 0;
    }
    case T_KEYS:
    case T_ORIGINS: {
        if (!json_is_array(v)) return gm_errorf(err, "%s: \"%s\" must be an array of strings", src, o->key);
        list_clear(cfg, o);
        size_t i;
        json_t *s;
        json_array_foreach(v, i, s) {
            if (!json_is_string(s)) return gm_errorf(err, "%s: %s[%zu] must be a string", src, o->key, i);
            if (list_add(cfg, o, json_string_value(s), src, err)) return -1;
        }
        return 0;
    }
    }
    return gm_errorf(err, "%s: \"%s\" is out of range", src, o->key);
}

static int load_file(gm_config *cfg, const char *path, char *err) {
    struct stat sb; /* opening a FIFO would wait for a writer: at start-up, or on the reload thread */
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) return gm_errorf(err, "%s: not a regular file", path);
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return gm_errorf(err, "%s:%d: %s", path, je.line, je.text);
    int rc = 0;
    if (!json_is_object(root)) rc = gm_errorf(err, "%s: the config must be a JSON object", path);
    const char *key;
    json_t *v;
    level_seen seen = {false, false};
    json_object_foreach(root, key, v) {
        if (rc) break;
        const option *o = find_key(key);
        if (!o) rc = gm_errorf(err, "%s: unknown setting \"%s\" (gmserve --help lists them)", path, key);
        else rc = set_json(cfg, o, v, path, err);
        if (o) level_note(&seen, o);
    }
    json_decref(root);
    level_end(cfg, &seen);
    if (rc == 0) snprintf(cfg->config_path, sizeof cfg->config_path, "%s", path);
    return rc;
}

/* Finds the option of a flag: "--max-batch" or "--max-batch=64". */
static const option *find_flag(const char *arg, const char **inline_value) {
    for (int i = 0; i < NOPTIONS; i++) {
        char name[96];
        flag_name(&OPTIONS[i], name, sizeof name);
        size_t n = strlen(name);
        if (strncmp(arg, name, n) == 0 && (arg[n] == 0 || arg[n] == '=')) {
            *inline_value = arg[n] == '=' ? arg + n + 1 : NULL;
            return &OPTIONS[i];
        }
    }
    return NULL;
}

static int apply_flags(gm_config *cfg, int argc, char **argv, char *err) {
    bool list_seen[NOPTIONS] = {false};
    level_seen seen = {false, false};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value;
        if (strcmp(arg, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(arg, "--config=", 9) == 0) continue;
        const option *o = find_flag(arg, &value);
        if (!o) return gm_errorf(err, "unknown argument \"%s\" (gmserve --help lists the options)", arg);
        if (!value) {
            if (i + 1 >= argc) return gm_errorf(err, "%s needs a value", arg);
            value = argv[++i];
        }
        level_note(&seen, o);
        char src[128];
        snprintf(src, sizeof src, "flag --%s", o->flag ? o->flag : o->key);
        if (o->type == T_LONG || o->type == T_STRING) {
            if (set_text(cfg, o, value, src, err)) return -1;
            continue;
        }
        int idx = (int)(o - OPTIONS);
        if (!list_seen[idx]) list_clear(cfg, o);
        list_seen[idx] = true;
        if (list_add(cfg, o, value, src, err)) return -1;
    }
    level_end(cfg, &seen);
    return 0;
}

static int apply_env(gm_config *cfg, char *err) {
    level_seen seen = {false, false};
    for (int i = 0; i < NOPTIONS; i++) {
        char name[96];
        env_name(&OPTIONS[i], name, sizeof name);
        const char *v = getenv(name);
        if (!v) continue;
        if (set_text(cfg, &OPTIONS[i], v, name, err)) return -1;
        level_note(&seen, &OPTIONS[i]);
    }
    level_end(cfg, &seen);
    return 0;
}

static int parse_listen(gm_config *cfg, char *err) {
    const char *s = cfg->listen, *colon;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return gm_errorf(err, "listen \"%s\": use [IPV6]:PORT", s);
        hlen = (size_t)(close - s - 1);
        memcpy(cfg->host, s + 1, hlen);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return gm_errorf(err, "listen \"%s\": use HOST:PORT, e.g. 127.0.0.1:8080", s);
        hlen = (size_t)(colon - s);
        memcpy(cfg->host, s, hlen);
    }
    cfg->host[hlen] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 0 || port > 65535)
        return gm_errorf(err, "listen \"%s\": the port must be 0..65535", s);
    cfg->port = (int)port;
    return 0;
}

static int validate(gm_config *cfg, char *err) {
    if (cfg->n_models == 0)
        return gm_errorf(err, "no models to serve: give --model NAME=PATH, GMSERVE_MODELS or a config file "
                              "with \"models\" (gmserve --help)");
    if (!cfg->default_model[0]) strcpy(cfg->default_model, cfg->models[0].name);
    else if (gm_config_model_index(cfg, cfg->default_model) < 0)
        return gm_errorf(err, "default_model \"%s\" is not one of the configured models", cfg->default_model);
    if (cfg->default_k > cfg->max_k)
        return gm_errorf(err, "default_k = %ld exceeds max_k = %ld", cfg->default_k, cfg->max_k);
    if (strcmp(cfg->log_format, "text") && strcmp(cfg->log_format, "json") && strcmp(cfg->log_format, "off"))
        return gm_errorf(err, "log_format \"%s\": use text, json or off", cfg->log_format);
    return parse_listen(cfg, err);
}

/* The config file: GMSERVE_CONFIG, else --config, else the default when it
 * exists. explicit is set when the user named it (then it must exist). */
static const char *config_file(int argc, char **argv, bool *explicit) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) path = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0) path = argv[i] + 9;
    }
    if (getenv("GMSERVE_CONFIG")) path = getenv("GMSERVE_CONFIG");
    *explicit = path != NULL;
    if (!path && access(DEFAULT_CONFIG, R_OK) == 0) path = DEFAULT_CONFIG;
    return path;
}

gm_config_result gm_config_load(gm_config *cfg, int argc, char **argv, char err[GM_ERR_LEN]) {
    memset(cfg, 0, sizeof *cfg);
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return GM_CONFIG_HELP;
    for (int i = 0; i < NOPTIONS; i++)
        if (set_text(cfg, &OPTIONS[i], OPTIONS[i].dflt, "default", err)) return GM_CONFIG_ERROR;
    bool explicit;
    const char *path = config_file(argc, argv, &explicit);
    if (path && load_file(cfg, path, err)) return GM_CONFIG_ERROR;
    if (apply_flags(cfg, argc, argv, err) || apply_env(cfg, err) || validate(cfg, err)) return GM_CONFIG_ERROR;
    return GM_CONFIG_OK;
}

static const option *restart_option(int i) { return find_key(RESTART_ONLY[i]); }

int gm_config_keep_running(const gm_config *running, gm_config *next, char *changed, size_t n) {
    int count = 0;
    size_t used = 0;
    changed[0] = 0;
    for (int i = 0; i < NRESTART; i++) {
        const option *o = restart_option(i);
        char *a = (char *)running + o->offset, *b = (char *)next + o->offset, was[64], asked[64];
        bool same = o->type == T_LONG ? *(long *)a == *(long *)b : !strcmp(a, b);
        if (same) continue;
        if (o->type == T_LONG) {
            snprintf(was, sizeof was, "%ld", *(long *)a);
            snprintf(asked, sizeof asked, "%ld", *(long *)b);
            *(long *)b = *(long *)a;
        } else {
            snprintf(was, sizeof was, "%s", a);
            snprintf(asked, sizeof asked, "%s", b);
            memcpy(b, a, o->size);
        }
        if (used < n)
            used += (size_t)snprintf(changed + used, n - used, "%s%s (running %s, the settings say %s)",
                                     count ? ", " : "", o->key, was, asked);
        count++;
    }
    /* the parsed form of listen goes with it */
    memcpy(next->host, running->host, sizeof next->host);
    next->port = running->port;
    return count;
}

bool gm_config_restart_only(const char *key) {
    for (int i = 0; i < NRESTART; i++)
        if (!strcmp(RESTART_ONLY[i], key)) return true;
    return false;
}

int gm_config_model_index(const gm_config *cfg, const char *name) {
    for (int i = 0; i < cfg->n_models; i++)
        if (strcmp(cfg->models[i].name, name) == 0) return i;
    return -1;
}

void gm_config_usage(FILE *f) {
    fprintf(f, "usage: gmserve [--config FILE] [OPTION VALUE]...\n"
               "       gmserve check MODEL.safetensors...\n"
               "       gmserve probe [URL]   (exit 0 if URL, default http://127.0.0.1:8080/readyz, answers 200)\n\n"
               "Serves generative models over HTTP (README: \"Using the server\"). Settings come from defaults, then\n"
               "the config file (--config FILE or GMSERVE_CONFIG; default " DEFAULT_CONFIG " if present),\n"
               "then flags, then GMSERVE_* variables. `gmserve check` validates model files and exits.\n\n");
    for (int i = 0; i < NOPTIONS; i++) {
        char flag[96], env[96];
        flag_name(&OPTIONS[i], flag, sizeof flag);
        env_name(&OPTIONS[i], env, sizeof env);
        fprintf(f, "  %-22s %s", flag, OPTIONS[i].help);
        if (OPTIONS[i].dflt[0]) fprintf(f, " [%s]", OPTIONS[i].dflt);
        fprintf(f, "\n  %-22s   (file: \"%s\", env: %s%s)\n", "", OPTIONS[i].key, env,
                gm_config_restart_only(OPTIONS[i].key) ? "; a reload cannot change it: restart" : "");
    }
    fprintf(f, "\nSIGHUP or POST /v1/admin/reload re-reads the settings and the model files.\n");
}

void gm_config_markdown(FILE *f) {
    fprintf(f, "| file key | flag | variable | default | meaning |\n|---|---|---|---|---|\n");
    for (int i = 0; i < NOPTIONS; i++) {
        char flag[96], env[96];
        flag_name(&OPTIONS[i], flag, sizeof flag);
        env_name(&OPTIONS[i], env, sizeof env);
        fprintf(f, "| `%s` | `%s` | `%s` | %s%s%s | %s |\n", OPTIONS[i].key, flag, env, OPTIONS[i].dflt[0] ? "`" : "",
                OPTIONS[i].dflt[0] ? OPTIONS[i].dflt : "none", OPTIONS[i].dflt[0] ? "`" : "", OPTIONS[i].help);
    }
    fprintf(f, "\nA reload (SIGHUP or `POST /v1/admin/reload`) applies every setting except these, which need a "
               "restart (a reload that changes one says so and keeps the running value):");
    for (int i = 0; i < NRESTART; i++) fprintf(f, "%s `%s`", i ? "," : "", RESTART_ONLY[i]);
    fprintf(f, ".\n");
}
