/*
 * api.h - the HTTP API (README, "Using the server"), independent of the HTTP library.
 *
 * http.c hands over a parsed request (method, path, query, a few headers,
 * body); gm_api_handle routes it through one table, checks the API key and
 * either answers at once (service routes, errors) or prepares a gm_job for
 * the queue. When the job is done, gm_ops_finish turns its outputs into the
 * reply (PNG or JSON), on the worker's thread; a request's PNG inputs are
 * decoded there too, before its first piece (ops.c), so that no HTTP thread
 * spends time on them. Every error reply is built by
 * gm_reply_error, so they all have the same shape:
 *   {"error": {"status": <int>, "message": "<what was wrong and how to fix it>"}}
 */
#ifndef GM_API_H
#define GM_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "etag.h"
#include "formats.h"
#include "server.h"

typedef enum {
    GM_ROUTE_PAGE,
    GM_ROUTE_HEALTHZ,
    GM_ROUTE_READYZ,
    GM_ROUTE_METRICS,
    GM_ROUTE_MODELS,
    GM_ROUTE_SAMPLE,
    GM_ROUTE_LOGP,
    GM_ROUTE_ENCODE,
    GM_ROUTE_DECODE,
    GM_ROUTE_OTHER,
    GM_ROUTE_COUNT
} gm_route;

extern const char *const gm_route_names[GM_ROUTE_COUNT];

typedef struct {
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
    const char *raw_uri; /* the target as sent: path and query, percent-encoding intact */
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

/* Writes s (len bytes, untrusted) into out as a double-quoted string that
 * is valid UTF-8 whatever s holds: printable ASCII and valid UTF-8 as is,
 * '"' and '\\' escaped, other bytes as \xNN, and at most about
 * GM_QUOTE_LEN - 8 bytes of s (never cut inside a character; "..." marks the
 * cut). Returns out, for use as a "%s" argument of an error message. */
enum { GM_QUOTE_LEN = 160 };
const char *gm_quote(char out[GM_QUOTE_LEN], const char *s, size_t len);

typedef struct {
    int status;
    uint8_t *body; /* malloc'd */
    size_t len;
    const char *content_type;
    char allow[48];       /* Allow header of a 405 */
    char seed[24];        /* X-Seed */
    int retry_after;      /* seconds; 0 = no Retry-After */
    char etag[GM_ETAG_LEN]; /* a cacheable reply's ETag (etag.h), or "" for no-store */
} gm_reply;

/* One API request from parse to reply: the route, its parameters, the job
 * and the buffers the job reads and writes (all owned here). */
typedef struct {
    gm_server *srv;
    gm_route route;
    int model; /* index into srv->models, or -1 */
    gm_job job;
    gm_reply reply;
    /* parsed parameters */
    uint64_t seed;
    gm_format format;
    const char *npy_type; /* Content-Type of an npy reply */
    int scale;
    /* buffers of the job */
    float *in, *out, *out2;
    float *codes; /* sample: one code for every row; decode: (n, code_dim) */
    int *labels;
    gm_row *rows;
    double *logp;
    gm_logp_result *lp;
    /* PNG inputs that a worker decodes into in before the first piece, so
     * that decoding never runs on an HTTP thread: png[i] holds image i's
     * bytes (png_len[i] of them), or NULL for an image sent as pixels;
     * png_count: the entries of both arrays.
     * png_body: the one image was an image/png body (its errors name no
     * index). png_held: the bytes counted in srv->png_bytes. */
    uint8_t **png;
    size_t *png_len;
    long png_count;
    bool png_body;
    size_t png_held;
} gm_call;

/* Routes and handles req. Returns true when c->job must be queued, false
 * when c->reply is final. */
bool gm_api_handle(gm_call *c, const gm_http_request *req);

/* Frees what the call owns (buffers and the reply body). */
void gm_call_release(gm_call *c);

/* Replaces r with an error reply; fmt says what was wrong and how to fix it. */
void gm_reply_error(gm_reply *r, int status, const char *fmt, ...) GM_PRINTF(3, 4);

/* Replaces r with a JSON reply (takes the reference to v). */
void gm_reply_json(gm_reply *r, int status, json_t *v);

/* Model operations (ops.c): parse parameters and inputs into c->job, or
 * fill an error reply and return false. params merges query and body. */
bool gm_ops_prepare(gm_call *c, gm_op op, json_t *params, const gm_http_request *req);
/* Builds c->reply from the finished job (its status and outputs). */
void gm_ops_finish(gm_call *c);
/* Frees the PNG inputs a call still holds (gm_call_release calls it). */
void gm_ops_release(gm_call *c);

#endif
