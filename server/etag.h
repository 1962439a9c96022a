/*
 * etag.h - validators for cacheable replies.
 *
 * A sample with an explicit seed is a pure function of the model file, the
 * model's name (it is written into the reply), the operation and the
 * parameters once parsed. Its ETag is a strong validator made of exactly
 * those: SHA-256 over the file's SHA-256, the name, the operation and the
 * canonical parameters (every parameter the operation takes, sorted by
 * name, defaults filled in, numbers as the model computes with them), so
 * "n=1&seed=7" and "seed=7&temperature=1.0" share one tag, and a changed
 * model file changes every tag.
 */
#ifndef GM_ETAG_H
#define GM_ETAG_H

#include <stdbool.h>

#include "gm/sha256.h"

enum { GM_ETAG_LEN = GM_SHA256_HEX + 2 /* quotes */ };

/* The ETag header value ("<64 hex digits>", quotes included) of a reply. */
void gm_etag_make(const char *model_sha256, const char *model_name, const char *op, const char *canonical,
                  char out[GM_ETAG_LEN]);

/* Whether If-None-Match (a header value, or NULL) holds etag: "*", or a
 * comma-separated list of entity tags one of which has etag's opaque part
 * (If-None-Match compares weakly, so W/"..." matches too). */
bool gm_etag_matches(const char *if_none_match, const char *etag);

#endif
