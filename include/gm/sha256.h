/*
 * sha256.h - SHA-256 (FIPS 180-4), for naming a model file by its content.
 *
 * The server identifies a loaded model by the SHA-256 of its file's bytes:
 * a seeded reply is a pure function of that hash and the request's
 * parameters, so the hash is what cache validators (ETag) are built from,
 * and what an operator compares to know which file is being served.
 *
 * Streaming use: gm_sha256_init, any number of gm_sha256_update calls, then
 * gm_sha256_final. The context is a plain value with no allocation.
 */
#ifndef GM_SHA256_H
#define GM_SHA256_H

#include <stddef.h>
#include <stdint.h>

enum { GM_SHA256_BYTES = 32, GM_SHA256_HEX = 2 * GM_SHA256_BYTES + 1 /* with the NUL */ };

typedef struct {
    uint32_t h[8];
    uint64_t bytes;    /* message length so far */
    uint8_t block[64]; /* a partial block */
    size_t fill;       /* bytes in block */
} gm_sha256;

void gm_sha256_init(gm_sha256 *s);
void gm_sha256_update(gm_sha256 *s, const void *data, size_t len);
void gm_sha256_final(gm_sha256 *s, uint8_t digest[GM_SHA256_BYTES]);

/* The digest of len bytes as 64 lowercase hex digits and a NUL. */
void gm_sha256_hex(const void *data, size_t len, char hex[GM_SHA256_HEX]);
/* A digest written as lowercase hex (64 digits and a NUL). */
void gm_sha256_to_hex(const uint8_t digest[GM_SHA256_BYTES], char hex[GM_SHA256_HEX]);

#endif
