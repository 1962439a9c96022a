/*
 * params.h - every parameter of the model operations, in one table.
 *
 * Each parameter has its name, its JSON type, its range and default (a
 * setting may bound the maximum or give the default: its value is read
 * from the running configuration), the operations that take it and one
 * line of description. The operations' getters (ops.c), their 400/422
 * messages, the list of parameters an operation takes, /v1/models and the
 * docs' table (gmserve --params-markdown) are all made from it.
 */
#ifndef GM_PARAMS_H
#define GM_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "gm/model.h"

typedef enum {
    GM_P_IMAGES,
    GM_P_LATENTS,
    GM_P_N,
    GM_P_K,
    GM_P_SEED,
    GM_P_TEMPERATURE,
    GM_P_LABEL,
    GM_P_TRUNCATION,
    GM_P_CODE,
    GM_P_CAT,
    GM_P_MODE,
    GM_P_FORMAT,
    GM_P_SCALE,
    GM_P_ROWS,
    GM_P_PREFIX,
    GM_P_DIRECTION,
    GM_P_COUNT
} gm_param;

typedef struct {
    const char *name;
    const char *type;         /* as JSON Schema names it: "integer", "number", "string", "array" */
    double min, max;          /* for integers and numbers; max is overridden by max_setting */
    bool min_open;            /* the range is (min, max] */
    const char *max_setting;  /* the setting whose value is the maximum, or NULL */
    size_t max_offset;        /* its offset in gm_config */
    double dflt;              /* the default of an integer or number */
    const char *dflt_setting; /* the setting whose value is the default, or NULL */
    size_t dflt_offset;
    const char *dflt_text;  /* the default as the docs say it */
    const char *range_text; /* the range as the docs say it, when it is the model's (else made from min, max) */
    const char *choices[5]; /* the values of a string parameter, NULL-terminated */
    unsigned ops;           /* bit 1 << op of each operation that takes it */
    const char *description;
} gm_param_def;

extern const gm_param_def gm_params[GM_P_COUNT];

static inline bool gm_param_takes(gm_param p, gm_op op) { return (gm_params[p].ops >> op) & 1; }

/* The maximum and default under cfg (a setting's value where one is named). */
double gm_param_max(gm_param p, const gm_config *cfg);
double gm_param_default(gm_param p, const gm_config *cfg);

/* The parameter called name that op takes, or -1. */
int gm_param_find(gm_op op, const char *name);

/* The parameters op takes, ", "-separated, in table order. */
void gm_params_accepted(gm_op op, char *out, size_t n);

/* The table in Markdown, for docs/http-api.md. */
void gm_params_markdown(FILE *f);

#endif
