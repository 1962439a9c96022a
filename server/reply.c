/*
 * reply.c - the reply builders (see reply.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "reply.h"
#include "text.h"

bool gm_reply_header(gm_reply *r, const char *name, const char *fmt, ...) {
    int i = 0;
    while (i < r->n_headers && strcasecmp(r->headers[i].name, name) != 0) i++;
    if (i == GM_REPLY_HEADERS || strlen(name) >= GM_HEADER_NAME_LEN) return false;
    gm_header *h = &r->headers[i];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(h->value, sizeof h->value, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof h->value) {
        if (i < r->n_headers) r->headers[i] = r->headers[--r->n_headers]; /* a cut value is worse than none */
        return false;
    }
    snprintf(h->name, sizeof h->name, "%s", name);
    if (i == r->n_headers) r->n_headers++;
    return true;
}

const char *gm_reply_header_get(const gm_reply *r, const char *name) {
    for (int i = 0; i < r->n_headers; i++)
        if (!strcasecmp(r->headers[i].name, name)) return r->headers[i].value;
    return NULL;
}

void gm_reply_free(gm_reply *r) {
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

static void set_body(gm_reply *r, int status, const char *type, uint8_t *body, size_t len) {
    free(r->body);
    r->status = status;
    r->failed = false;
    r->content_type = type;
    r->body = body;
    r->len = len;
}

void gm_reply_bytes(gm_reply *r, const char *content_type, uint8_t *body, size_t len) {
    set_body(r, GM_STATUS_OK, content_type, body, len);
}

void gm_reply_no_content(gm_reply *r) { set_body(r, GM_STATUS_NO_CONTENT, NULL, NULL, 0); }
void gm_reply_not_modified(gm_reply *r) { set_body(r, GM_STATUS_NOT_MODIFIED, NULL, NULL, 0); }

/* text: malloc'd JSON (taken over), or NULL when memory ran out: a 500 */
static void text_body(gm_reply *r, int status, char *text, size_t len) {
    if (!text) {
        char oom[96];
        int n = snprintf(oom, sizeof oom, "{\"error\":{\"status\":%d,\"message\":\"out of memory\"}}",
                         gm_error_status(GM_E_INTERNAL));
        char *copy = strdup(oom);
        set_body(r, gm_error_status(GM_E_INTERNAL), "application/json", (uint8_t *)copy, copy ? (size_t)n : 0);
        r->failed = true;
        r->kind = GM_E_INTERNAL;
        return;
    }
    set_body(r, status, "application/json", (uint8_t *)text, len);
}

static void json_body(gm_reply *r, int status, json_t *v) {
    char *text = v ? json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(v);
    text_body(r, status, text, text ? strlen(text) : 0);
}

void gm_reply_jw(gm_reply *r, gm_jw *w) {
    size_t len = 0;
    char *text = gm_jw_finish(w, &len);
    text_body(r, GM_STATUS_OK, text, len);
}

void gm_reply_json(gm_reply *r, json_t *v) { json_body(r, GM_STATUS_OK, v); }

void gm_reply_error(gm_reply *r, gm_error_kind kind, const char *fmt, ...) {
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
        k = gm_utf8_char((const uint8_t *)msg + i, n - i);
        if (k) memcpy(clean + o, msg + i, k), o += k;
        else o += (size_t)snprintf(clean + o, 5, "\\x%02x", (uint8_t)msg[i]);
    }
    clean[o] = 0;
    int status = gm_error_status(kind);
    json_body(r, status, json_pack("{s:{s:i,s:s}}", "error", "status", status, "message", clean));
    if (r->status == status) {
        r->failed = true;
        r->kind = kind;
    }
}
