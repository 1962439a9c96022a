/*
 * jsonw.h - JSON text written straight into one growing buffer, for the
 * replies that carry large float arrays (latents, log p).
 *
 * Building such a reply as a jansson tree costs an allocation per number,
 * and json_dumps prints each with printf; here a reply is one buffer,
 * sized up front from what the caller expects, and float32 values are
 * written by gm_float_shortest. Writing never fails midway: running out
 * of memory marks the writer, and gm_jw_finish reports it once.
 */
#ifndef GM_JSONW_H
#define GM_JSONW_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *buf;
    size_t len, cap;
    bool failed; /* an allocation failed: the text is incomplete */
} gm_jw;

/* An empty writer with room for about `expect` bytes. */
void gm_jw_init(gm_jw *w, size_t expect);
/* n bytes of JSON text as they are (punctuation, keys known to need no escaping). */
void gm_jw_raw(gm_jw *w, const char *text, size_t n);
/* A string literal, and nothing else (the "" makes anything else a
 * compile error, where sizeof would quietly measure a pointer):
 * gm_jw_lit(w, "{\"model\":") */
#define gm_jw_lit(w, s) gm_jw_raw((w), "" s, sizeof("" s) - 1)
/* s (UTF-8) as a JSON string: quotes, backslashes and control characters escaped. */
void gm_jw_str(gm_jw *w, const char *s);
void gm_jw_int(gm_jw *w, long long v);
/* x with the fewest digits that read back as the same float32; null when not finite. */
void gm_jw_float(gm_jw *w, float x);
/* x with 10 significant digits (as jansson's JSON_REAL_PRECISION(10)); null when not finite. */
void gm_jw_double(gm_jw *w, double x);
/* [x0,x1,...] of gm_jw_float values. */
void gm_jw_floats(gm_jw *w, const float *x, size_t n);
/* The text (malloc'd, NUL-terminated, caller frees) and its length, or
 * NULL when memory ran out (the buffer is freed then). */
char *gm_jw_finish(gm_jw *w, size_t *len);

#endif
