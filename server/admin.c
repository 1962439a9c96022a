/*
 * admin.c - the admin routes: requests to control tasks, outcomes to
 * replies (see admin.h).
 */
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "routes.h"
#include "text.h"

static bool allowed(const gm_admin_request *rq, gm_reply *reply) {
    if (rq->cfg->n_api_keys || (rq->cfg->admin_loopback && rq->loopback)) return true;
    gm_reply_error(reply, GM_E_FORBIDDEN, "the admin routes need an API key: set api_keys%s",
                   rq->cfg->admin_loopback ? " (admin_loopback lets in only clients on the loopback address)"
                                           : ", or admin_loopback = 1 to let clients on this machine in without one");
    return false;
}

/* {"name": NAME, "path": FILE} and nothing else, into t. */
static bool read_load(const gm_admin_request *rq, gm_control_task *t, gm_reply *reply) {
    enum { MAX_BODY = 4096 }; /* a name, a path and the JSON around them */
    char q[GM_QUOTE_LEN];
    if (rq->body_len > MAX_BODY) {
        gm_reply_error(reply, GM_E_TOO_LARGE, "the body is %zu bytes; {\"name\": ..., \"path\": ...} takes at most %d",
                       rq->body_len, MAX_BODY);
        return false;
    }
    if (!rq->json_body) {
        gm_reply_error(reply, GM_E_MEDIA_TYPE, "send {\"name\": ..., \"path\": ...} as Content-Type: application/json");
        return false;
    }
    json_error_t je;
    json_t *body = json_loadb((const char *)rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &je), *v;
    const char *key;
    bool ok = json_is_object(body);
    if (!body)
        gm_reply_error(reply, GM_E_BAD_REQUEST, "the body is not valid JSON: %s at line %d column %d", je.text, je.line,
                       je.column);
    else if (!ok)
        gm_reply_error(reply, GM_E_BAD_REQUEST, "the body must be a JSON object {\"name\": ..., \"path\": ...}");
    json_object_foreach(body, key, v) {
        if (!ok) break;
        if (strcmp(key, "name") && strcmp(key, "path")) {
            gm_reply_error(reply, GM_E_BAD_REQUEST, "unknown key %s; the body takes name and path",
                           gm_quote(q, key, strlen(key)));
            ok = false;
        }
    }
    static const char *const FIELD[2] = {"name", "path"};
    char *dst[2] = {t->name, t->path};
    size_t cap[2] = {sizeof t->name, sizeof t->path};
    for (int i = 0; ok && i < 2; i++) {
        json_t *s = json_object_get(body, FIELD[i]);
        size_t len = json_string_length(s);
        if (!json_is_string(s) || len == 0 || len >= cap[i] || memchr(json_string_value(s), 0, len)) {
            gm_reply_error(reply, GM_E_BAD_REQUEST, "\"%s\" must be a string of 1 to %zu bytes (the model's %s)",
                           FIELD[i], cap[i] - 1, i ? "file" : "name");
            ok = false;
        } else memcpy(dst[i], json_string_value(s), len + 1);
    }
    json_decref(body);
    return ok;
}

gm_control_task *gm_admin_prepare(const gm_admin_request *rq, gm_reply *reply) {
    char q[GM_QUOTE_LEN];
    if (!allowed(rq, reply)) return NULL;
    if (rq->draining) {
        gm_reply_header(reply, "Retry-After", "1");
        gm_reply_error(reply, GM_E_DRAINING, "the server is shutting down");
        return NULL;
    }
    gm_control_task *t = calloc(1, sizeof *t);
    if (!t) {
        gm_reply_error(reply, GM_E_INTERNAL, "out of memory");
        return NULL;
    }
    t->op = GM_CONTROL_RELOAD;
    bool ok = true;
    if (rq->method == GM_METHOD_DELETE) {
        t->op = GM_CONTROL_UNLOAD;
        ok = strlen(rq->name) < sizeof t->name; /* never cut a name: the cut could name another model */
        if (ok) strcpy(t->name, rq->name);
        else gm_reply_error(reply, GM_E_NOT_FOUND, "no model named %s", gm_quote(q, rq->name, strlen(rq->name)));
    } else if (!strcmp(rq->path, "/v1/admin/models")) {
        t->op = GM_CONTROL_LOAD;
        ok = read_load(rq, t, reply);
    }
    if (!ok) {
        free(t);
        return NULL;
    }
    return t;
}

void gm_admin_finish(gm_control_task *t, gm_reply *reply) {
    static const gm_error_kind KIND[] = {
        [GM_RELOAD_BAD_REQUEST] = GM_E_BAD_REQUEST, [GM_RELOAD_BAD_SETTINGS] = GM_E_RELOAD_REFUSED,
        [GM_RELOAD_BAD_FILE] = GM_E_RELOAD_REFUSED, [GM_RELOAD_NOT_FOUND] = GM_E_NOT_FOUND,
        [GM_RELOAD_CONFLICT] = GM_E_CONFLICT,       [GM_RELOAD_FAILED] = GM_E_INTERNAL,
    };
    gm_reload_outcome *o = &t->outcome;
    if (o->status == GM_RELOAD_OK || o->status == GM_RELOAD_CREATED) gm_reply_json(reply, o->result);
    else gm_reply_error(reply, KIND[o->status], "%s", o->message);
    o->result = NULL; /* the reply took it */
}

void gm_admin_free(gm_control_task *t) {
    if (!t) return;
    json_decref(t->outcome.result);
    free(t);
}
