/*
 * jsonw.c - JSON text into one growing buffer (see jsonw.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "floatfmt.h"
#include "jsonw.h"

void gm_jw_init(gm_jw *w, size_t expect) {
    w->len = 0;
    w->cap = expect < 64 ? 64 : expect;
    w->buf = malloc(w->cap);
    w->failed = !w->buf;
}

/* Room for n more bytes and a NUL; false (and failed) when there is none. */
static bool reserve(gm_jw *w, size_t n) {
    if (w->failed) return false;
    if (w->len + n + 1 <= w->cap) return true;
    size_t cap = w->cap * 2 > w->len + n + 1 ? w->cap * 2 : w->len + n + 1;
    char *b = realloc(w->buf, cap);
    if (!b) {
        w->failed = true;
        return false;
    }
    w->buf = b;
    w->cap = cap;
    return true;
}

void gm_jw_raw(gm_jw *w, const char *text, size_t n) {
    if (!reserve(w, n)) return;
    memcpy(w->buf + w->len, text, n);
    w->len += n;
}

void gm_jw_str(gm_jw *w, const char *s) {
    gm_jw_lit(w, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            gm_jw_raw(w, esc, 2);
        } else if (*p < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            gm_jw_raw(w, esc, 6);
        } else gm_jw_raw(w, (const char *)p, 1);
    }
    gm_jw_lit(w, "\"");
}

void gm_jw_int(gm_jw *w, long long v) {
    char t[24];
    int n = snprintf(t, sizeof t, "%lld", v);
    gm_jw_raw(w, t, (size_t)n);
}

void gm_jw_float(gm_jw *w, float x) {
    if (!isfinite(x)) return gm_jw_lit(w, "null");
    if (!reserve(w, GM_FLOAT_CHARS)) return;
    w->len += (size_t)gm_float_shortest(x, w->buf + w->len);
}

void gm_jw_double(gm_jw *w, double x) {
    if (!isfinite(x)) return gm_jw_lit(w, "null");
    char t[40];
    int n = snprintf(t, sizeof t, "%.10g", x);
    char *e = strchr(t, 'e');
    if (!e && !strchr(t, '.')) n += snprintf(t + n, sizeof t - (size_t)n, ".0"); /* a real stays a real */
    if (e) { /* as jansson: no '+' and no leading zeros in the exponent (1e-05 is 1e-5) */
        char *digits = e + 1 + (e[1] == '-'), *from = e + 1 + (e[1] == '-' || e[1] == '+');
        while (*from == '0' && from[1]) from++;
        memmove(digits, from, strlen(from) + 1);
        n = (int)strlen(t);
    }
    gm_jw_raw(w, t, (size_t)n);
}

void gm_jw_floats(gm_jw *w, const float *x, size_t n) {
    gm_jw_lit(w, "[");
    for (size_t i = 0; i < n; i++) {
        if (i) gm_jw_lit(w, ",");
        gm_jw_float(w, x[i]);
    }
    gm_jw_lit(w, "]");
}

char *gm_jw_finish(gm_jw *w, size_t *len) {
    if (w->failed) {
        free(w->buf);
        w->buf = NULL;
        return NULL;
    }
    w->buf[w->len] = 0;
    *len = w->len;
    return w->buf;
}
