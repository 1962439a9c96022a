/*
 * etag.c - ETags of seeded replies and If-None-Match (see etag.h).
 *
 * REPRESENTATION names the way replies are encoded (PNG filter and
 * compression, JSON number precision, npy layout): bump it when that
 * changes, so that a client's stored tag no longer matches bytes the
 * server would now write differently.
 */
#include <string.h>

#include "etag.h"

#define REPRESENTATION "gmserve-reply-1"

void gm_etag_make(const char *model_sha256, const char *model_name, const char *op, const char *canonical,
                  char out[GM_ETAG_LEN]) {
    const char *parts[] = {REPRESENTATION, model_sha256, model_name, op, canonical};
    gm_sha256 s;
    uint8_t d[GM_SHA256_BYTES];
    gm_sha256_init(&s);
    /* each part with its terminating NUL, so no two splits of one text collide */
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) gm_sha256_update(&s, parts[i], strlen(parts[i]) + 1);
    gm_sha256_final(&s, d);
    out[0] = '"';
    gm_sha256_to_hex(d, out + 1);
    out[GM_ETAG_LEN - 2] = '"';
    out[GM_ETAG_LEN - 1] = 0;
}

bool gm_etag_matches(const char *if_none_match, const char *etag) {
    size_t n = strlen(etag);
    for (const char *p = if_none_match; p && *p;) {
        p += strspn(p, " \t,");
        if (*p == '*') return true;
        if (!strncmp(p, "W/", 2)) p += 2;
        if (*p != '"') return false; /* not an entity tag: the header is malformed, so nothing matches */
        const char *end = strchr(p + 1, '"');
        if (!end) return false;
        if ((size_t)(end + 1 - p) == n && !memcmp(p, etag, n)) return true;
        p = end + 1;
    }
    return false;
}
