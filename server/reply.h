/*
 * reply.h - an HTTP reply as the API builds it, independent of the HTTP
 * library: a status, a body, its media type and a short list of headers.
 *
 * Every error reply is built by gm_reply_error from a kind of errors.h, so
 * they all have the same shape:
 *   {"error": {"status": <int>, "message": "<what was wrong and how to fix it>"}}
 * Headers (Allow, X-Seed, Retry-After, ...) go in a small list that http.c
 * copies out as is; building another body keeps them.
 */
#ifndef GM_REPLY_H
#define GM_REPLY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "gm/error.h"
#include "jsonw.h"

enum { GM_REPLY_HEADERS = 8, GM_HEADER_NAME_LEN = 32, GM_HEADER_VALUE_LEN = 128 };

typedef struct {
    char name[GM_HEADER_NAME_LEN];
    char value[GM_HEADER_VALUE_LEN];
} gm_header;

typedef struct {
    int status;  /* 0 until a body is built */
    bool failed; /* an error reply: kind says which */
    gm_error_kind kind;
    uint8_t *body; /* malloc'd */
    size_t len;
    const char *content_type; /* static */
    gm_header headers[GM_REPLY_HEADERS];
    int n_headers;
} gm_reply;

/* Sets a header (replacing one of the same name, in any case); false when
 * the list is full or the value does not fit. */
bool gm_reply_header(gm_reply *r, const char *name, const char *fmt, ...) GM_PRINTF(3, 4);
/* The value of a header, or NULL. */
const char *gm_reply_header_get(const gm_reply *r, const char *name);

/* Replaces the body with an error of this kind; fmt says what was wrong
 * and how to fix it. */
void gm_reply_error(gm_reply *r, gm_error_kind kind, const char *fmt, ...) GM_PRINTF(3, 4);
/* Replaces the body with v as compact JSON, status 200 (takes the
 * reference to v; a NULL v, from a failed json_pack, is a 500). */
void gm_reply_json(gm_reply *r, json_t *v);
/* Replaces the body with the JSON text of w (its buffer taken over), status
 * 200; a writer that ran out of memory is a 500. For replies of many
 * numbers, which a jansson tree would allocate and printf one by one. */
void gm_reply_jw(gm_reply *r, gm_jw *w);
/* Replaces the body with body (malloc'd, taken over), status 200. */
void gm_reply_bytes(gm_reply *r, const char *content_type, uint8_t *body, size_t len);
/* An empty 204. */
void gm_reply_no_content(gm_reply *r);
/* Frees the body (the headers stay). */
void gm_reply_free(gm_reply *r);

#endif
