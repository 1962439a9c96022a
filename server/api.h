/*
 * api.h - the HTTP API (docs/http-api.md), independent of the HTTP library.
 *
 * http.c hands over a parsed request (method, path, query, a few headers,
 * body); gm_api_handle finds its route in the route table (routes.h),
 * checks the API key and either answers at once (service routes, OPTIONS,
 * errors) or hands the model operation a small view of the request
 * (ops.h) and returns the prepared operation, whose job the caller queues.
 * When the job is done, gm_operation_finish builds the reply on the
 * worker's thread; a request's PNG inputs are decoded there too, before
 * its first piece, so that no HTTP thread spends time on them.
 */
#ifndef GM_API_H
#define GM_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "admin.h"
#include "ops.h"
#include "reply.h"
#include "routes.h"
#include "server.h"
#include "text.h"

typedef struct {
    const gm_config *cfg; /* the settings this request reads (a snapshot the caller holds, settings.h) */
    bool loopback;        /* the client's address is a loopback one (127.0.0.0/8, ::1) */
    const char *method, *path;
    json_t *query;                /* object: query-string key -> string value, filled by gm_query_add */
    char query_error[GM_ERR_LEN]; /* the first bad query parameter, or "" */
    const char *content_type, *authorization;
    const char *accept;        /* Accept: may ask for a binary (npy) reply */
    const char *if_none_match; /* If-None-Match: the ETags a client holds */
    const uint8_t *body;
    size_t body_len;
    /* Where the caller keeps body's malloc'd buffer, or NULL. An operation
     * that needs the body after gm_api_handle (an image/png body, decoded
     * later on a worker) takes the buffer by setting *body_buffer to NULL;
     * without one it copies the body. */
    uint8_t **body_buffer;
    const char *raw_uri;                 /* the target as sent: path and query, percent-encoding intact */
    const char *inference_header_length; /* the Inference-Header-Content-Length header (/v2 infer), or NULL */
} gm_http_request;

/* Adds one decoded query parameter (key_len and value_len bytes; value NULL
 * when the parameter had no "=") to req->query; an empty segment (no name,
 * no "=", as between "&&") is skipped. A name or value that is
 * empty, holds a NUL byte or is not UTF-8, or a name given twice, is not
 * added: the first such problem goes to req->query_error, and a model
 * operation answers it with 400. */
void gm_query_add(gm_http_request *req, const char *key, size_t key_len, const char *value, size_t value_len);

/* Whether a Content-Type header names this media type (e.g.
 * "application/json"): the same type, in any case, optionally followed by
 * parameters such as "; charset=utf-8". */
bool gm_media_type_is(const char *content_type, const char *type);

typedef struct gm_oip_call gm_oip_call;

/* One API request as routed: its route and model (for the metrics and the
 * log), the reply, and the operation to compute, if any. */
typedef struct {
    gm_route route;
    int model;             /* the model's slot (registry.h), or -1 */
    gm_reply reply;        /* final unless op or task is set */
    gm_operation *op;      /* queue gm_operation_job(op); NULL when reply is final */
    gm_oip_call *oip;      /* a /v2 infer request: what its reply needs (oip_routes.h), else NULL */
    gm_control_task *task; /* an admin change: submit it to the control thread, then gm_admin_finish */
} gm_call;

/* Routes and handles req into c (zeroed by the caller). Returns true when
 * c->op must be queued or c->task submitted, false when c->reply is final. */
bool gm_api_handle(gm_server *srv, const gm_http_request *req, gm_call *c);

/* Builds c->reply from c->op's finished job (on the worker's thread). */
void gm_call_finish(gm_call *c);

/* Frees what the call owns (the operation, the task and the reply body). */
void gm_call_release(gm_call *c);

#endif
