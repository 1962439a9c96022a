/*
 * openapi.h - the OpenAPI 3.1 description of the API, served at
 * GET /openapi.json.
 *
 * Made at run time from the route, parameter and error tables, under the
 * running settings: the ranges and defaults a setting gives (n up to
 * max_n, k's default default_k, ...) are the ones this server applies now
 * (a reload may change them), the model names are the ones it serves now, and the bearer scheme is there when
 * API keys are set.
 */
#ifndef GM_OPENAPI_H
#define GM_OPENAPI_H

#include <jansson.h>

#include "config.h"

/* The document (a new reference), or NULL when memory ran out, under the
 * settings cfg with the n_names models named in names served. */
json_t *gm_openapi_document(const gm_config *cfg, const char *const *names, int n_names);

#endif
