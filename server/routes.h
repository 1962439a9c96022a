/*
 * routes.h - every route of the HTTP API, in one table.
 *
 * A route is a path pattern ("*" stands for one path segment: a model name
 * or a file), the methods it takes, whether it needs the API key, and the
 * model operation it runs (if any). Routing (api.c), the Allow header of
 * 405 and OPTIONS replies, the metrics' route labels and the route list of
 * docs/http-api.md (gmserve --routes-markdown) are all made from it.
 */
#ifndef GM_ROUTES_H
#define GM_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "gm/model.h"

typedef enum {
    GM_ROUTE_PAGE,
    GM_ROUTE_HEALTHZ,
    GM_ROUTE_READYZ,
    GM_ROUTE_METRICS,
    GM_ROUTE_OPENAPI,
    GM_ROUTE_MODELS,
    GM_ROUTE_SAMPLE,
    GM_ROUTE_LOGP,
    GM_ROUTE_ENCODE,
    GM_ROUTE_DECODE,
    GM_ROUTE_DISCRIMINATE,
    GM_ROUTE_RECONSTRUCT,
    GM_ROUTE_COMPLETE,
    GM_ROUTE_TRANSLATE,
    GM_ROUTE_V2, /* the Open Inference Protocol v2 (oip_routes.h): server metadata */
    GM_ROUTE_V2_LIVE,
    GM_ROUTE_V2_READY,
    GM_ROUTE_V2_MODEL, /* model metadata */
    GM_ROUTE_V2_MODEL_READY,
    GM_ROUTE_V2_INFER,
    GM_ROUTE_ADMIN, /* reload, load, unload (admin.h) */
    GM_ROUTE_OTHER, /* no route, or OPTIONS */
    GM_ROUTE_COUNT
} gm_route;

/* The metrics label of each route. */
extern const char *const gm_route_names[GM_ROUTE_COUNT];

/* Method bits; GET includes HEAD. OPTIONS is answered on every route. */
enum { GM_METHOD_GET = 1, GM_METHOD_POST = 2, GM_METHOD_DELETE = 4 };

typedef struct {
    const char *pattern;
    unsigned methods;
    gm_route route;
    bool open;           /* no API key needed */
    int op;              /* the gm_op it runs, or -1 */
    const char *summary; /* one line for the docs */
} gm_route_def;

extern const gm_route_def gm_routes[];
extern const int gm_n_routes;

/* The method bit of an HTTP method name, 0 for any other method. */
unsigned gm_method_bit(const char *method);

/* The first route whose pattern matches path and that takes method (a
 * method bit, 0 for none), or NULL. *allowed gets the methods of every route
 * matching path (0: no route has this path). The segment under "*" goes
 * to capture (cap bytes; a longer one matches nothing). */
const gm_route_def *gm_route_find(unsigned method, const char *path, char *capture, size_t cap, unsigned *allowed);

/* The Allow header for a set of method bits: "GET, HEAD, POST, OPTIONS". */
void gm_route_allow(unsigned methods, char *out, size_t n);

/* The route list in Markdown, for docs/http-api.md. */
void gm_routes_markdown(FILE *f);

#endif
