/*
 * api.c - routing, authentication and the service routes (see api.h).
 *
 * The whole API is the ROUTES table: a path pattern ("*" is one path
 * segment: a model name or a file), the methods it takes, and what it is. A
 * path that matches with another method gets 405 with the Allow header made
 * from the same table. Model operations go on to ops.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "api.h"

const char *const gm_route_names[GM_ROUTE_COUNT] = {"page",   "healthz", "readyz", "metrics", "models", "sample",
                                                    "logp",   "encode",  "decode", "other"};

enum { M_GET = 1, M_POST = 2 };
enum { MAX_PAGE_FILE = 4 << 20 };

typedef struct {
    const char *pattern;
    unsigned methods;
    gm_route route;
    bool open; /* no API key needed */
} route_def;

static const route_def ROUTES[] = {
    {"/", M_GET, GM_ROUTE_PAGE, true},
    {"/ui/*", M_GET, GM_ROUTE_PAGE, true},
    {"/healthz", M_GET, GM_ROUTE_HEALTHZ, true},
    {"/readyz", M_GET, GM_ROUTE_READYZ, true},
    {"/metrics", M_GET, GM_ROUTE_METRICS, false},
    {"/v1/models", M_GET, GM_ROUTE_MODELS, false},
    {"/v1/models/*", M_GET, GM_ROUTE_MODELS, false},
    {"/v1/models/*/sample", M_GET | M_POST, GM_ROUTE_SAMPLE, false},
    {"/v1/models/*/logp", M_POST, GM_ROUTE_LOGP, false},
    {"/v1/models/*/encode", M_POST, GM_ROUTE_ENCODE, false},
    {"/v1/models/*/decode", M_POST, GM_ROUTE_DECODE, false},
    {"/sample", M_GET | M_POST, GM_ROUTE_SAMPLE, false},
    {"/logp", M_POST, GM_ROUTE_LOGP, false},
    {"/encode", M_POST, GM_ROUTE_ENCODE, false},
    {"/decode", M_POST, GM_ROUTE_DECODE, false},
};
enum { NROUTES = sizeof ROUTES / sizeof ROUTES[0] };

static const gm_op ROUTE_OP[GM_ROUTE_COUNT] = {[GM_ROUTE_SAMPLE] = GM_OP_SAMPLE, [GM_ROUTE_LOGP] = GM_OP_LOGP,
                                               [GM_ROUTE_ENCODE] = GM_OP_ENCODE, [GM_ROUTE_DECODE] = GM_OP_DECODE};

void gm_reply_json(gm_reply *r, int status, json_t *v) {
    free(r->body);
    r->body = NULL;
    r->len = 0;
    r->status = status;
    r->content_type = "application/json";
    char *text = v ? json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(v);
    if (!text) {
        static const char OOM[] = "{\"error\":{\"status\":500,\"message\":\"out of memory\"}}";
        r->status = 500;
        r->body = (uint8_t *)strdup(OOM);
        r->len = r->body ? sizeof OOM - 1 : 0;
        return;
    }
    r->body = (uint8_t *)text;
    r->len = strlen(text);
}

/* The length of the UTF-8 character at s (n bytes available), or 0 when s
 * does not start with a complete, valid one (overlong forms, surrogates and
 * code points past U+10FFFF are invalid). */
static size_t utf8_char(const uint8_t *s, size_t n) {
    if (n == 0) return 0;
    if (s[0] < 0x80) return 1;
    size_t len = s[0] >= 0xc2 && s[0] <= 0xdf   ? 2
                 : s[0] >= 0xe0 && s[0] <= 0xef ? 3
                 : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
                                                : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (s[0] == 0xe0 && s[1] < 0xa0) return 0;  /* overlong */
    if (s[0] == 0xed && s[1] >= 0xa0) return 0; /* a UTF-16 surrogate */
    if (s[0] == 0xf0 && s[1] < 0x90) return 0;  /* overlong */
    if (s[0] == 0xf4 && s[1] >= 0x90) return 0; /* past U+10FFFF */
    return len;
}

static bool valid_utf8(const char *s, size_t len) {
    for (size_t i = 0, k; i < len; i += k)
        if (!(k = utf8_char((const uint8_t *)s + i, len - i))) return false;
    return true;
}

const char *gm_quote(char out[GM_QUOTE_LEN], const char *s, size_t len) {
    const uint8_t *u = (const uint8_t *)s;
    size_t o = 0, budget = GM_QUOTE_LEN - 8; /* room for the quotes, "..." and the NUL */
    out[o++] = '"';
    for (size_t i = 0; i < len;) {
        size_t k = utf8_char(u + i, len - i);
        bool plain = k > 1 || (k == 1 && u[i] >= 0x20 && u[i] < 0x7f && u[i] != '"' && u[i] != '\\');
        size_t need = plain ? k : k == 1 && (u[i] == '"' || u[i] == '\\') ? 2 : 4;
        if (o - 1 + need > budget) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (plain)
            memcpy(out + o, u + i, k);
        else if (need == 2)
            out[o] = '\\', out[o + 1] = (char)u[i];
        else
            snprintf(out + o, 5, "\\x%02x", u[i]);
        o += need;
        i += k ? k : 1;
    }
    out[o++] = '"';
    out[o] = 0;
    return out;
}

void gm_reply_error(gm_reply *r, int status, const char *fmt, ...) {
    char msg[1024], clean[4 * sizeof msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* JSON text must be UTF-8: should a message still hold a byte that is not
     * (a caller echoed raw input, or the cut above split a character), write
     * it as \xNN rather than lose the reply to json_pack's refusal */
    size_t n = strlen(msg), o = 0;
    for (size_t i = 0, k; i < n; i += k ? k : 1) {
        k = utf8_char((const uint8_t *)msg + i, n - i);
        if (k)
            memcpy(clean + o, msg + i, k), o += k;
        else
            o += (size_t)snprintf(clean + o, 5, "\\x%02x", (uint8_t)msg[i]);
    }
    clean[o] = 0;
    r->etag[0] = 0; /* an error is never cached */
    gm_reply_json(r, status, json_pack("{s:{s:i,s:s}}", "error", "status", status, "message", clean));
}

bool gm_media_type_is(const char *content_type, const char *type) {
    size_t n = strlen(type);
    if (!content_type || strncasecmp(content_type, type, n) != 0) return false;
    const char *rest = content_type + n;
    rest += strspn(rest, " \t");
    return *rest == 0 || *rest == ';';
}

void gm_query_add(gm_http_request *req, const char *key, size_t key_len, const char *value,
                  size_t value_len) {
    char q[GM_QUOTE_LEN], qv[GM_QUOTE_LEN];
    const char *problem = NULL;
    if (req->query_error[0]) return; /* the first problem is the one reported */
    if (key_len == 0 && !value) return; /* "&&": an empty segment holds no parameter (as URL parsers read it) */
    if (!value) value = "", value_len = 0;
    if (key_len == 0)
        problem = "has an empty name";
    else if (memchr(key, 0, key_len) || !valid_utf8(key, key_len))
        problem = "has a name with a NUL byte or bytes that are not UTF-8";
    else if (value_len == 0)
        problem = "has no value (write name=value)";
    else if (memchr(value, 0, value_len) || !valid_utf8(value, value_len))
        problem = "has a value with a NUL byte or bytes that are not UTF-8";
    else if (json_object_getn(req->query, key, key_len))
        problem = "is given twice";
    json_t *v = problem ? NULL : json_stringn(value, value_len);
    if (!problem && (!v || json_object_setn_new(req->query, key, key_len, v) != 0))
        problem = "could not be stored (out of memory)";
    if (problem)
        gm_errorf(req->query_error,
                  "the query parameter %s (value %s) %s; percent-encode names and values as UTF-8",
                  gm_quote(q, key, key_len), gm_quote(qv, value, value_len), problem);
}

/* Matches path against pattern; the segment under the first "*" goes to
 * capture (at most cap bytes, else no match). */
static bool match(const char *pattern, const char *path, char *capture, size_t cap) {
    capture[0] = 0;
    while (*pattern && *path) {
        if (*pattern == '*') {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= cap) return false;
            memcpy(capture, path, n);
            capture[n] = 0;
            path += n;
            pattern++;
            continue;
        }
        if (*pattern++ != *path++) return false;
    }
    return !*pattern && !*path;
}

static bool authorized(const gm_server *s, const char *auth) {
    if (s->cfg->n_api_keys == 0) return true;
    if (!auth || strncmp(auth, "Bearer ", 7) != 0) return false;
    const char *key = auth + 7;
    bool ok = false;
    for (int i = 0; i < s->cfg->n_api_keys; i++) {
        /* compare every byte of every key: the time taken does not tell how much of a key matched */
        const char *k = s->cfg->api_keys[i];
        size_t kl = strlen(k), ql = strlen(key);
        unsigned diff = kl != ql;
        for (size_t j = 0; j < kl; j++) diff |= (unsigned)(k[j] ^ (j < ql ? key[j] : 0));
        ok |= diff == 0;
    }
    return ok;
}

static json_t *model_json(const gm_server *s, int i) {
    const gm_model *m = s->models[i];
    const gm_model_info *in = gm_model_get_info(m);
    json_t *ops = json_array(), *meta = json_object();
    for (int op = 0; op < GM_OP_COUNT; op++)
        if (in->supports[op]) json_array_append_new(ops, json_string(gm_op_name((gm_op)op)));
    for (int k = 0; k < gm_model_meta_count(m); k++) {
        const char *key, *value = gm_model_meta_at(m, k, &key);
        /* layer lists are architecture, not facts a client needs; JSON-valued facts stay JSON */
        if (!strcmp(key, "gm.encoder") || !strcmp(key, "gm.decoder") || !strcmp(key, "gm.generator") ||
            !strcmp(key, "gm.discriminator"))
            continue;
        json_t *v = NULL;
        if (!strcmp(key, "gm.metrics") || !strcmp(key, "gm.training") || !strcmp(key, "gm.class_names"))
            v = json_loads(value, 0, NULL);
        json_object_set_new(meta, key, v ? v : json_string(value));
    }
    json_t *o = json_pack("{s:s,s:s,s:{s:i,s:i,s:i},s:i,s:i,s:i,s:o,s:b,s:b,s:o}", "name", s->model_names[i],
                          "family", gm_family_name(in->family), "image", "height", in->height, "width", in->width,
                          "channels", in->channels, "latent_dim", in->latent_dim, "encode_dim", in->encode_dim,
                          "code_dim", in->code_dim, "operations", ops,
                          "binary", in->binary, "exact_logp", in->exact_logp, "metadata", meta);
    if (o && in->num_classes) {
        json_t *names = json_array();
        for (int k = 0; k < in->num_classes; k++)
            json_array_append_new(names, json_string(in->class_names ? in->class_names[k] : ""));
        json_object_set_new(o, "num_classes", json_integer(in->num_classes));
        json_object_set_new(o, "class_names", names);
    }
    return o;
}

static void handle_models(gm_call *c, const char *name) {
    gm_server *s = c->srv;
    char q[GM_QUOTE_LEN];
    if (name[0]) {
        c->model = gm_config_model_index(s->cfg, name);
        if (c->model < 0)
            return gm_reply_error(&c->reply, 404, "no model named %s (GET /v1/models lists them)",
                                  gm_quote(q, name, strlen(name)));
        return gm_reply_json(&c->reply, 200, model_json(s, c->model));
    }
    json_t *list = json_array();
    for (int i = 0; i < s->n_models; i++) json_array_append_new(list, model_json(s, i));
    gm_reply_json(&c->reply, 200, json_pack("{s:o,s:s}", "models", list, "default_model", s->cfg->default_model));
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
static void handle_page(gm_call *c, const char *file) {
    if (!file[0]) file = "index.html";
    const char *type = page_type(file);
    bool safe = file[0] != '.' && strspn(file, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
                                      strlen(file);
    char q[GM_QUOTE_LEN];
    if (!type || !safe)
        return gm_reply_error(&c->reply, 404, "no page file %s", gm_quote(q, file, strlen(file)));
    char path[GM_PATH_LEN + 128];
    snprintf(path, sizeof path, "%s/%s", c->srv->cfg->web_root, file);
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_PAGE_FILE) {
        if (f) fclose(f);
        return gm_reply_error(&c->reply, 404, "the web page file %s is not installed (web_root = \"%s\")", file,
                              c->srv->cfg->web_root);
    }
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf || n != (size_t)st.st_size) {
        free(buf);
        return gm_reply_error(&c->reply, 500, "cannot read the web page file %s", file);
    }
    free(c->reply.body);
    c->reply = (gm_reply){.status = 200, .body = buf, .len = n, .content_type = type};
}

static void handle_metrics(gm_call *c) {
    gm_server *s = c->srv;
    size_t len;
    char *text = gm_metrics_render(s->metrics, gm_queue_depth(s->queue), gm_queue_capacity(s->queue),
                                   atomic_load(&s->ready), &len);
    if (!text) return gm_reply_error(&c->reply, 500, "out of memory rendering metrics");
    free(c->reply.body);
    c->reply = (gm_reply){.status = 200, .body = (uint8_t *)text, .len = len,
                          .content_type = "text/plain; version=0.0.4; charset=utf-8"};
}

/* An upper bound on the number of values in the JSON text b (n bytes):
 * every value but a container's first follows a comma, and each first one
 * is counted by its container's bracket. One pass, no allocation. */
static size_t json_value_bound(const uint8_t *b, size_t n) {
    size_t count = 1;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        if (in_string) {
            if (b[i] == '\\')
                i++;
            else if (b[i] == '"')
                in_string = false;
        } else if (b[i] == '"')
            in_string = true;
        else if (b[i] == ',' || b[i] == '[' || b[i] == '{')
            count++;
    }
    return count;
}

/* Parsing costs jansson about 40 bytes of memory per value, so a body of
 * millions of small values would cost hundreds of MB before any check
 * could refuse it. The most values an operation can use are its images'
 * pixels (or latents) times max_images, and a few parameters; a body with
 * more is refused before it is parsed. */
static bool json_body_affordable(gm_call *c, const gm_http_request *req) {
    enum { PARAM_VALUES = 64 };
    const gm_model_info *in = gm_model_get_info(c->srv->models[c->model]);
    size_t per_item = c->route == GM_ROUTE_LOGP || c->route == GM_ROUTE_ENCODE ? (size_t)in->dim + 2
                      : c->route == GM_ROUTE_DECODE ? (size_t)in->latent_dim + (size_t)in->code_dim + 3
                                                                               : 0;
    size_t limit = per_item * (size_t)c->srv->cfg->max_images + PARAM_VALUES +
                   (c->route == GM_ROUTE_SAMPLE ? (size_t)in->code_dim + 1 : 0); /* sample's one code */
    size_t values = json_value_bound(req->body, req->body_len);
    if (values <= limit) return true;
    gm_reply_error(&c->reply, 413,
                   "the JSON body holds about %zu values; a %s request to this model uses at most %zu "
                   "(%s)",
                   values, gm_route_names[c->route], limit,
                   per_item ? "max_images x the values of one image or latent, plus the parameters"
                            : "its parameters");
    return false;
}

/* The request's parameters: the query string, overlaid by a JSON object body
 * (a body that is not JSON is the operation's to read: a PNG). */
static json_t *merged_params(gm_call *c, const gm_http_request *req) {
    char q[GM_QUOTE_LEN];
    if (req->query_error[0]) {
        gm_reply_error(&c->reply, 400, "%s", req->query_error);
        return NULL;
    }
    json_t *params = json_copy(req->query);
    const char *ct = req->content_type;
    bool png_op = c->route == GM_ROUTE_LOGP || c->route == GM_ROUTE_ENCODE;
    if (req->body_len == 0 || (png_op && gm_media_type_is(ct, "image/png"))) return params;
    if (!gm_media_type_is(ct, "application/json")) {
        json_decref(params);
        gm_reply_error(&c->reply, 415,
                       "the body's Content-Type is %s; send the parameters as Content-Type: "
                       "application/json%s",
                       ct ? gm_quote(q, ct, strlen(ct)) : "missing",
                       png_op ? " (or one image as image/png)" : "");
        return NULL;
    }
    if (!json_body_affordable(c, req)) {
        json_decref(params);
        return NULL;
    }
    json_error_t je;
    json_t *body = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!body) {
        json_decref(params);
        gm_reply_error(&c->reply, 400, "the body is not valid JSON: %s at line %d column %d", je.text, je.line,
                       je.column);
        return NULL;
    }
    if (!json_is_object(body)) {
        json_decref(params);
        json_decref(body);
        gm_reply_error(&c->reply, 400, "the JSON body must be an object, e.g. {\"n\": 4}");
        return NULL;
    }
    json_object_update(params, body);
    json_decref(body);
    return params;
}

static void handle_operation(gm_call *c, const gm_http_request *req, const char *name, bool *queued) {
    gm_server *s = c->srv;
    const char *model = name;
    if (!model[0]) {
        json_t *m = json_object_get(req->query, "model");
        model = m ? json_string_value(m) : s->cfg->default_model;
    }
    c->model = gm_config_model_index(s->cfg, model);
    char q[GM_QUOTE_LEN];
    if (c->model < 0)
        return gm_reply_error(&c->reply, 404, "no model named %s (GET /v1/models lists them)",
                              gm_quote(q, model, strlen(model)));
    if (atomic_load(&s->draining)) {
        gm_metrics_reject(s->metrics, GM_REJECT_DRAINING);
        c->reply.retry_after = 1;
        return gm_reply_error(&c->reply, 503, "the server is shutting down; retry on another replica");
    }
    json_t *params = merged_params(c, req);
    if (!params) return;
    json_object_del(params, "model");
    *queued = gm_ops_prepare(c, ROUTE_OP[c->route], params, req);
    json_decref(params);
}

bool gm_api_handle(gm_call *c, const gm_http_request *req) {
    c->model = -1;
    c->route = GM_ROUTE_OTHER;
    unsigned method = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD") ? M_GET
                      : !strcmp(req->method, "POST")                              ? M_POST
                                                                                  : 0;
    char name[GM_NAME_LEN + 64], q[GM_QUOTE_LEN];
    const route_def *found = NULL;
    unsigned allowed = 0;
    for (int i = 0; i < NROUTES; i++) {
        if (!match(ROUTES[i].pattern, req->path, name, sizeof name)) continue;
        allowed |= ROUTES[i].methods;
        if (ROUTES[i].methods & method) {
            found = &ROUTES[i];
            break;
        }
    }
    if (!found && allowed) {
        snprintf(c->reply.allow, sizeof c->reply.allow, "%s%s%s", allowed & M_GET ? "GET, HEAD" : "",
                 allowed == (M_GET | M_POST) ? ", " : "", allowed & M_POST ? "POST" : "");
        gm_reply_error(&c->reply, 405, "%s is not allowed on %s; use %s", req->method,
                       gm_quote(q, req->path, strlen(req->path)), c->reply.allow);
        return false;
    }
    if (!found) {
        gm_reply_error(&c->reply, 404, "no route %s (see GET /v1/models and the README's API section)",
                       gm_quote(q, req->path, strlen(req->path)));
        return false;
    }
    c->route = found->route;
    if (!found->open && !authorized(c->srv, req->authorization)) {
        gm_metrics_reject(c->srv->metrics, GM_REJECT_UNAUTHORIZED);
        gm_reply_error(&c->reply, 401, "this route needs an API key: send Authorization: Bearer <key>");
        return false;
    }
    bool queued = false;
    switch (c->route) {
    case GM_ROUTE_PAGE: handle_page(c, name); break;
    case GM_ROUTE_HEALTHZ: gm_reply_json(&c->reply, 200, json_pack("{s:s}", "status", "ok")); break;
    case GM_ROUTE_READYZ:
        if (atomic_load(&c->srv->ready)) gm_reply_json(&c->reply, 200, json_pack("{s:b}", "ready", 1));
        else {
            c->reply.retry_after = 1;
            gm_reply_error(&c->reply, 503, "%s", atomic_load(&c->srv->draining) ? "draining: the server is shutting down"
                                                                                : "not ready: models are loading");
        }
        break;
    case GM_ROUTE_METRICS: handle_metrics(c); break;
    case GM_ROUTE_MODELS: handle_models(c, name); break;
    default: handle_operation(c, req, name, &queued); break;
    }
    return queued;
}

void gm_call_release(gm_call *c) {
    gm_ops_release(c);
    free(c->in);
    free(c->out);
    free(c->out2);
    free(c->codes);
    free(c->labels);
    free(c->rows);
    free(c->logp);
    free(c->lp);
    free(c->reply.body);
    c->in = c->out = c->out2 = c->codes = NULL;
    c->labels = NULL;
    c->rows = NULL;
    c->logp = NULL;
    c->lp = NULL;
    c->reply.body = NULL;
}
