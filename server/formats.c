/*
 * formats.c - reply format negotiation (see formats.h).
 *
 * Accept is read as a list of media ranges with parameters; only the two
 * binary types matter and a range with q=0 means "not this", so a client
 * that writes "application/x-npy;q=0" is not sent npy.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "formats.h"

const char *const gm_format_names[GM_FORMAT_COUNT] = {"json", "png", "pixels", "npy"};

unsigned gm_formats_of(gm_op op) {
    switch (op) {
    case GM_OP_SAMPLE:
    case GM_OP_DECODE:
    case GM_OP_RECONSTRUCT:
    case GM_OP_COMPLETE:
    case GM_OP_TRANSLATE:
        return GM_FORMATS_IMAGES;
    case GM_OP_LOGP:
    case GM_OP_ENCODE:
        return GM_FORMATS_NUMBERS;
    default:
        return GM_FORMAT_BIT(GM_FORMAT_JSON);
    }
}

/* a GET is what a browser or <img> sends: a PNG; a POST is a program: JSON */
gm_format gm_format_default(gm_op op, bool get) {
    return (gm_formats_of(op) & GM_FORMAT_BIT(GM_FORMAT_PNG)) && get ? GM_FORMAT_PNG : GM_FORMAT_JSON;
}

/* Whether Accept lists type (as a whole media range, any case) with q > 0. */
static bool accepts(const char *accept, const char *type) {
    size_t n = strlen(type);
    for (const char *p = accept; p && *p;) {
        p += strspn(p, " \t,");
        size_t range = strcspn(p, ",");
        size_t name = strcspn(p, ";, \t");
        if (name == n && !strncasecmp(p, type, n)) {
            const char *q = p + name;
            bool zero = false;
            /* parameters up to the next range: look for q=0, q=0.0, ... */
            for (const char *e = p + range; q < e; q++)
                if ((*q == 'q' || *q == 'Q') && q[1] == '=' && (q[-1] == ';' || q[-1] == ' ' || q[-1] == '\t')) {
                    zero = strtod(q + 2, NULL) <= 0;
                    break;
                }
            if (!zero) return true;
        }
        p += range;
    }
    return false;
}

int gm_format_choose(const char *param, const char *accept, unsigned allowed, gm_format dflt, gm_format *out,
                     char err[GM_ERR_LEN]) {
    if (param) {
        for (int f = 0; f < GM_FORMAT_COUNT; f++)
            if ((allowed & GM_FORMAT_BIT(f)) && !strcmp(param, gm_format_names[f])) {
                *out = (gm_format)f;
                return 0;
            }
        char list[64] = "";
        for (int f = 0, o = 0; f < GM_FORMAT_COUNT; f++)
            if (allowed & GM_FORMAT_BIT(f))
                o += snprintf(list + o, sizeof list - (size_t)o, "%s\"%s\"", o ? ", " : "", gm_format_names[f]);
        return gm_errorf(err, "format must be one of %s", list);
    }
    bool binary = accepts(accept, "application/x-npy") || accepts(accept, "application/octet-stream");
    *out = binary && (allowed & GM_FORMAT_BIT(GM_FORMAT_NPY)) ? GM_FORMAT_NPY : dflt;
    return 0;
}

const char *gm_format_npy_type(const char *accept) {
    return accepts(accept, "application/octet-stream") && !accepts(accept, "application/x-npy")
               ? "application/octet-stream"
               : "application/x-npy";
}
