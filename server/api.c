/*
 * api.c - routing, authentication and the service routes (see api.h).
 *
 * The whole API is the route table (routes.c). A path that matches with
 * another method gets 405, and OPTIONS on a path gets 204, both with the
 * Allow header of that path's routes; a path no route has is 404 whatever
 * the method. Model operations go on to ops.c, the /v2 routes of the Open
 * Inference Protocol to oip_routes.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "api.h"
#include "oip_routes.h"
#include "openapi.h"
#include "params.h"

enum { MAX_PAGE_FILE = 4 << 20 };

bool gm_media_type_is(const char *content_type, const char *type) {
    size_t n = strlen(type);
    if (!content_type || strncasecmp(content_type, type, n) != 0) return false;
    const char *rest = content_type + n;
    rest += strspn(rest, " \t");
    return *rest == 0 || *rest == ';';
}

void gm_query_add(gm_http_request *req, const char *key, size_t key_len, const char *value, size_t value_len) {
    char q[GM_QUOTE_LEN], qv[GM_QUOTE_LEN];
    const char *problem = NULL;
    if (req->query_error[0]) return;    /* the first problem is the one reported */
    if (key_len == 0 && !value) return; /* "&&": an empty segment holds no parameter (as URL parsers read it) */
    if (!value) value = "", value_len = 0;
    if (key_len == 0) problem = "has an empty name";
    else if (memchr(key, 0, key_len) || !gm_utf8_valid(key, key_len))
        problem = "has a name with a NUL byte or bytes that are not UTF-8";
    else if (value_len == 0) problem = "has no value (write name=value)";
    else if (memchr(value, 0, value_len) || !gm_utf8_valid(value, value_len))
        problem = "has a value with a NUL byte or bytes that are not UTF-8";
    else if (json_object_getn(req->query, key, key_len)) problem = "is given twice";
    json_t *v = problem ? NULL : json_stringn(value, value_len);
    if (!problem && (!v || json_object_setn_new(req->query, key, key_len, v) != 0))
        problem = "could not be stored (out of memory)";
    if (problem)
        gm_errorf(req->query_error, "the query parameter %s (value %s) %s; percent-encode names and values as UTF-8",
                  gm_quote(q, key, key_len), gm_quote(qv, value, value_len), problem);
}

static bool authorized(const gm_config *cfg, const char *auth) {
    if (cfg->n_api_keys == 0) return true;
    if (!auth || strncmp(auth, "Bearer ", 7) != 0) return false;
    const char *key = auth + 7;
    bool ok = false;
    for (int i = 0; i < cfg->n_api_keys; i++) {
        /* compare every byte of every key: the time taken does not tell how much of a key matched */
        const char *k = cfg->api_keys[i];
        size_t kl = strlen(k), ql = strlen(key);
        unsigned diff = kl != ql;
        for (size_t j = 0; j < kl; j++) diff |= (unsigned)(k[j] ^ (j < ql ? key[j] : 0));
        ok |= diff == 0;
    }
    return ok;
}

static json_t *model_json(const gm_served *sv) {
    const gm_model *m = sv->model;
    const gm_model_info *in = gm_model_get_info(m);
    json_t *ops = json_array(), *meta = json_object(), *params = json_object();
    for (int op = 0; op < GM_OP_COUNT; op++) {
        if (!in->supports[op]) continue;
        json_array_append_new(ops, json_string(gm_op_name((gm_op)op)));
        json_t *names = json_array(); /* the parameter table's, as the 400 for an unknown one lists them */
        for (int p = 0; p < GM_P_COUNT; p++)
            if (gm_param_takes((gm_param)p, (gm_op)op)) json_array_append_new(names, json_string(gm_params[p].name));
        json_object_set_new(params, gm_op_name((gm_op)op), names);
    }
    for (int k = 0; k < gm_model_meta_count(m); k++) {
        const char *key, *value = gm_model_meta_at(m, k, &key);
        /* layer lists are architecture, not facts a client needs; JSON-valued facts stay JSON */
        if (!strcmp(key, "gm.encoder") || !strcmp(key, "gm.decoder") || !strcmp(key, "gm.generator") ||
            !strcmp(key, "gm.discriminator") || !strcmp(key, "gm.q_network") || !strcmp(key, "gm.reverse"))
            continue;
        json_t *v = NULL;
        if (!strcmp(key, "gm.metrics") || !strcmp(key, "gm.training") || !strcmp(key, "gm.class_names") ||
            !strcmp(key, "gm.domains"))
            v = json_loads(value, 0, NULL);
        json_object_set_new(meta, key, v ? v : json_string(value));
    }
    json_t *o = json_pack("{s:s,s:s,s:{s:i,s:i,s:i},s:i,s:i,s:i,s:i,s:o,s:o,s:b,s:b,s:o}", "name", sv->name, "family",
                          gm_family_name(in->family), "image", "height", in->height, "width", in->width, "channels",
                          in->channels, "latent_dim", in->latent_dim, "encode_dim", in->encode_dim, "code_dim",
                          in->code_dim, "cat_dim", in->cat_dim, "operations", ops, "parameters", params, "binary",
                          in->binary, "exact_logp", in->exact_logp, "metadata", meta);
    if (o && in->num_classes) {
        json_t *names = json_array();
        for (int k = 0; k < in->num_classes; k++)
            json_array_append_new(names, json_string(in->class_names ? in->class_names[k] : ""));
        json_object_set_new(o, "num_classes", json_integer(in->num_classes));
        json_object_set_new(o, "class_names", names);
    }
    if (o && in->domains) /* a two-domain translator: forward maps A to B, reverse B to A */
        json_object_set_new(o, "domains", json_pack("[s,s]", in->domains[0], in->domains[1]));
    if (o) { /* where it came from and when: what a reload changes */
        char when[40];
        time_t secs = (time_t)(sv->loaded_unix_ms / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(when + n, sizeof when - n, ".%03dZ", (int)(sv->loaded_unix_ms % 1000));
        json_object_set_new(o, "path", json_string(sv->path));
        json_object_set_new(o, "loaded_at", json_string(when));
        json_object_set_new(o, "load_ms", json_real(sv->load_ms));
        json_object_set_new(o, "sha256", json_string(in->sha256)); /* the file's content, as ETags use it */
    }
    return o;
}

static void handle_models(gm_server *s, gm_call *c, const gm_http_request *req, const char *name) {
    char q[GM_QUOTE_LEN];
    if (name[0]) {
        gm_served *sv = gm_registry_acquire(s->models, name);
        if (!sv)
            return gm_reply_error(&c->reply, GM_E_NOT_FOUND, "no model named %s (GET /v1/models lists them)",
                                  gm_quote(q, name, strlen(name)));
        c->model = sv->slot;
        gm_reply_json(&c->reply, model_json(sv));
        return gm_served_release(sv);
    }
    json_t *list = json_array();
    gm_served *all[GM_REGISTRY_SLOTS];
    int n = gm_registry_list(s->models, all, GM_REGISTRY_SLOTS);
    for (int i = 0; i < n; i++) {
        json_array_append_new(list, model_json(all[i]));
        gm_served_release(all[i]);
    }
    gm_reply_json(&c->reply, json_pack("{s:o,s:s}", "models", list, "default_model", req->cfg->default_model));
}

/* GET /openapi.json: the document under this request's settings, for the
 * models served now. */
static void handle_openapi(gm_server *s, gm_call *c, const gm_http_request *req) {
    gm_served *all[GM_REGISTRY_SLOTS];
    const char *names[GM_REGISTRY_SLOTS];
    int n = gm_registry_list(s->models, all, GM_REGISTRY_SLOTS);
    for (int i = 0; i < n; i++) names[i] = all[i]->name;
    gm_reply_json(&c->reply, gm_openapi_document(req->cfg, names, n));
    for (int i = 0; i < n; i++) gm_served_release(all[i]);
}

static const char *page_type(const char *file) {
    static const char *const TYPES[][2] = {{".html", "text/html; charset=utf-8"},
                                           {".js", "text/javascript; charset=utf-8"},
                                           {".css", "text/css; charset=utf-8"},
                                           {".svg", "image/svg+xml"},
                                           {".png", "image/png"},
                                           {".ico", "image/x-icon"}};
    const char *dot = strrchr(file, '.');
    for (size_t i = 0; dot && i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (!strcmp(dot, TYPES[i][0])) return TYPES[i][1];
    return NULL;
}

/* Serves a file of the web page; names are one path segment of safe
 * characters with a known extension, so nothing outside web_root is reachable. */
static void handle_page(const gm_config *cfg, gm_call *c, const char *file) {
    if (!file[0]) file = "index.html";
    const char *type = page_type(file);
    bool safe = file[0] != '.' &&
                strspn(file, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == strlen(file);
    char q[GM_QUOTE_LEN];
    if (!type || !safe)
        return gm_reply_error(&c->reply, GM_E_NOT_FOUND, "no page file %s", gm_quote(q, file, strlen(file)));
    char path[GM_PATH_LEN + 128];
    snprintf(path, sizeof path, "%s/%s", cfg->web_root, file);
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_PAGE_FILE) {
        if (f) fclose(f);
        return gm_reply_error(&c->reply, GM_E_NOT_FOUND, "the web page file %s is not installed (web_root = \"%s\")",
                              file, cfg->web_root);
    }
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf || n != (size_t)st.st_size) {
        free(buf);
        return gm_reply_error(&c->reply, GM_E_INTERNAL, "cannot read the web page file %s", file);
    }
    gm_reply_bytes(&c->reply, type, buf, n);
}

static void handle_metrics(gm_server *s, gm_call *c) {
    size_t len;
    char *text = gm_metrics_render(s->metrics, gm_queue_depth(s->queue), gm_queue_capacity(s->queue),
                                   atomic_load(&s->ready), &len);
    if (!text) return gm_reply_error(&c->reply, GM_E_INTERNAL, "out of memory rendering metrics");
    gm_reply_bytes(&c->reply, "text/plain; version=0.0.4; charset=utf-8", (uint8_t *)text, len);
}

/* Whether op reads images (JSON or one image/png body). */
static bool images_in(gm_op op) {
    return op == GM_OP_LOGP || op == GM_OP_ENCODE || op == GM_OP_DISCRIMINATE || op == GM_OP_RECONSTRUCT ||
           op == GM_OP_COMPLETE || op == GM_OP_TRANSLATE;
}

/* An upper bound on the number of values in the JSON text b (n bytes):
 * every value but a container's first follows a comma, and each first one
 * is counted by its container's bracket. One pass, no allocation. */
static size_t json_value_bound(const uint8_t *b, size_t n) {
    size_t count = 1;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        if (in_string) {
            if (b[i] == '\\') i++;
            else if (b[i] == '"') in_string = false;
        } else if (b[i] == '"') in_string = true;
        else if (b[i] == ',' || b[i] == '[' || b[i] == '{') count++;
    }
    return count;
}

/* Parsing costs jansson about 40 bytes of memory per value, so a body of
 * millions of small values would cost hundreds of MB before any check
 * could refuse it. The most values an operation can use are its images'
 * pixels (or latents) times max_images, and a few parameters; a body with
 * more is refused before it is parsed. */
static bool json_body_affordable(const gm_model *m, gm_call *c, gm_op op, const gm_http_request *req) {
    enum { PARAM_VALUES = 64 };
    const gm_model_info *in = gm_model_get_info(m);
    size_t per_item = images_in(op)        ? (size_t)in->dim + 2
                      : op == GM_OP_DECODE ? (size_t)in->latent_dim + (size_t)in->code_dim + 4
                                           : 0;
    size_t limit = per_item * (size_t)req->cfg->max_images + PARAM_VALUES +
                   (c->route == GM_ROUTE_SAMPLE ? (size_t)in->code_dim + 1 : 0); /* sample's one code */
    size_t values = json_value_bound(req->body, req->body_len);
    if (values <= limit) return true;
    gm_reply_error(&c->reply, GM_E_TOO_MANY_VALUES,
                   "the JSON body holds about %zu values; a %s request to this model uses at most %zu "
                   "(%s)",
                   values, gm_route_names[c->route], limit,
                   per_item ? "max_images x the values of one image or latent, plus the parameters" : "its parameters");
    return false;
}

/* The request's parameters: the query string, overlaid by a JSON object body
 * (a body that is not JSON is the operation's to read: a PNG). */
static json_t *merged_params(const gm_model *m, gm_call *c, gm_op op, const gm_http_request *req) {
    char q[GM_QUOTE_LEN];
    if (req->query_error[0]) {
        gm_reply_error(&c->reply, GM_E_BAD_PARAM, "%s", req->query_error);
        return NULL;
    }
    json_t *params = json_copy(req->query);
    const char *ct = req->content_type;
    bool png_op = images_in(op);
    if (req->body_len == 0 || (png_op && gm_media_type_is(ct, "image/png"))) return params;
    if (!gm_media_type_is(ct, "application/json")) {
        json_decref(params);
        gm_reply_error(&c->reply, GM_E_MEDIA_TYPE,
                       "the body's Content-Type is %s; send the parameters as Content-Type: "
                       "application/json%s",
                       ct ? gm_quote(q, ct, strlen(ct)) : "missing", png_op ? " (or one image as image/png)" : "");
        return NULL;
    }
    if (!json_body_affordable(m, c, op, req)) {
        json_decref(params);
        return NULL;
    }
    json_error_t je;
    json_t *body = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!body) {
        json_decref(params);
        gm_reply_error(&c->reply, GM_E_BAD_REQUEST, "the body is not valid JSON: %s at line %d column %d", je.text,
                       je.line, je.column);
        return NULL;
    }
    if (!json_is_object(body)) {
        json_decref(params);
        json_decref(body);
        gm_reply_error(&c->reply, GM_E_BAD_REQUEST, "the JSON body must be an object, e.g. {\"n\": 4}");
        return NULL;
    }
    json_object_update(params, body);
    json_decref(body);
    return params;
}

static void handle_operation(gm_server *s, gm_call *c, gm_op op, const gm_http_request *req, const char *name) {
    const char *model = name;
    if (!model[0]) {
        json_t *m = json_object_get(req->query, "model");
        model = m ? json_string_value(m) : req->cfg->default_model;
    }
    gm_served *sv = gm_registry_acquire(s->models, model); /* held until the operation holds it too */
    char q[GM_QUOTE_LEN];
    if (!sv)
        return gm_reply_error(&c->reply, GM_E_NOT_FOUND, "no model named %s (GET /v1/models lists them)",
                              gm_quote(q, model, strlen(model)));
    c->model = sv->slot;
    if (atomic_load(&s->draining)) {
        gm_served_release(sv);
        gm_reply_header(&c->reply, "Retry-After", "1");
        return gm_reply_error(&c->reply, GM_E_DRAINING, "the server is shutting down; retry on another replica");
    }
    json_t *params = merged_params(sv->model, c, op, req);
    if (!params) return gm_served_release(sv);
    json_object_del(params, "model");
    bool png_body = images_in(op) && req->body_len > 0 && gm_media_type_is(req->content_type, "image/png");
    gm_op_request rq = {
        .model = sv,
        .cfg = req->cfg,
        .op = op,
        .params = params,
        .get = strcmp(req->method, "POST") != 0,
        .png = png_body ? req->body : NULL,
        .png_len = png_body ? req->body_len : 0,
        .png_buffer = png_body ? req->body_buffer : NULL,
        .accept = req->accept,
        .if_none_match = req->if_none_match,
    };
    c->op = gm_operation_prepare(s, &rq, &c->reply);
    json_decref(params);
    gm_served_release(sv);
}

static void handle_admin(gm_server *s, gm_call *c, const gm_http_request *req, const char *name) {
    gm_admin_request rq = {
        .cfg = req->cfg,
        .loopback = req->loopback,
        .draining = atomic_load(&s->draining),
        .method = gm_method_bit(req->method),
        .path = req->path,
        .name = name,
        .json_body = gm_media_type_is(req->content_type, "application/json"),
        .body = req->body,
        .body_len = req->body_len,
    };
    c->task = gm_admin_prepare(&rq, &c->reply);
}

/* OPTIONS: the methods of the path's routes, or 404 when it has none. A
 * CORS preflight carries no credentials, so no API key is asked. */
static void handle_options(gm_call *c, const gm_http_request *req) {
    char name[GM_NAME_LEN + 64], q[GM_QUOTE_LEN], allow[64];
    unsigned allowed;
    gm_route_find(0, req->path, name, sizeof name, &allowed);
    if (!allowed)
        return gm_reply_error(&c->reply, GM_E_NOT_FOUND, "no route %s (see docs/http-api.md)",
                              gm_quote(q, req->path, strlen(req->path)));
    gm_route_allow(allowed, allow, sizeof allow);
    gm_reply_header(&c->reply, "Allow", "%s", allow);
    gm_reply_no_content(&c->reply);
}

bool gm_api_handle(gm_server *s, const gm_http_request *req, gm_call *c) {
    c->model = -1;
    c->route = GM_ROUTE_OTHER;
    c->op = NULL;
    c->oip = NULL;
    if (!strcmp(req->method, "OPTIONS")) {
        handle_options(c, req);
        return false;
    }
    char name[GM_NAME_LEN + 64], q[GM_QUOTE_LEN], allow[64];
    unsigned allowed;
    const gm_route_def *found = gm_route_find(gm_method_bit(req->method), req->path, name, sizeof name, &allowed);
    if (!found && allowed) {
        gm_route_allow(allowed, allow, sizeof allow);
        gm_reply_header(&c->reply, "Allow", "%s", allow);
        gm_reply_error(&c->reply, GM_E_METHOD, "%s is not allowed on %s; use %s", req->method,
                       gm_quote(q, req->path, strlen(req->path)), allow);
        return false;
    }
    if (!found) {
        gm_reply_error(&c->reply, GM_E_NOT_FOUND, "no route %s (see GET /v1/models and docs/http-api.md)",
                       gm_quote(q, req->path, strlen(req->path)));
        return false;
    }
    c->route = found->route;
    if (!found->open && !authorized(req->cfg, req->authorization)) {
        gm_reply_error(&c->reply, GM_E_UNAUTHORIZED, "this route needs an API key: send Authorization: Bearer <key>");
        return false;
    }
    if (found->op >= 0) {
        handle_operation(s, c, (gm_op)found->op, req, name);
        return c->op != NULL;
    }
    switch (c->route) {
    case GM_ROUTE_PAGE:
        handle_page(req->cfg, c, name);
        break;
    case GM_ROUTE_HEALTHZ:
        gm_reply_json(&c->reply, json_pack("{s:s}", "status", "ok"));
        break;
    case GM_ROUTE_READYZ:
        if (atomic_load(&s->ready)) gm_reply_json(&c->reply, json_pack("{s:b}", "ready", 1));
        else {
            gm_reply_header(&c->reply, "Retry-After", "1");
            gm_reply_error(&c->reply, GM_E_NOT_READY, "%s",
                           atomic_load(&s->draining) ? "draining: the server is shutting down"
                                                     : "not ready: models are loading");
        }
        break;
    case GM_ROUTE_METRICS:
        handle_metrics(s, c);
        break;
    case GM_ROUTE_OPENAPI:
        handle_openapi(s, c, req);
        break;
    case GM_ROUTE_MODELS:
        handle_models(s, c, req, name);
        break;
    case GM_ROUTE_ADMIN:
        handle_admin(s, c, req, name);
        return c->task != NULL;
    case GM_ROUTE_V2:
    case GM_ROUTE_V2_LIVE:
    case GM_ROUTE_V2_READY:
    case GM_ROUTE_V2_MODEL:
    case GM_ROUTE_V2_MODEL_READY:
    case GM_ROUTE_V2_INFER:
        gm_oip_handle(s, c, req);
        return c->op != NULL;
    default:
        gm_reply_error(&c->reply, GM_E_INTERNAL, "route %s has no handler", found->pattern);
        break;
    }
    return false;
}

void gm_call_finish(gm_call *c) {
    if (c->oip) gm_oip_finish(c);
    else gm_operation_finish(c->op, &c->reply);
}

void gm_call_release(gm_call *c) {
    gm_oip_call_free(c->oip);
    c->oip = NULL;
    gm_operation_free(c->op);
    c->op = NULL;
    gm_admin_free(c->task);
    c->task = NULL;
    gm_reply_free(&c->reply);
}
