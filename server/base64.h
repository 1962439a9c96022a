/*
 * base64.h - RFC 4648 base64 for PNGs inside JSON.
 */
#ifndef GM_BASE64_H
#define GM_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Encodes n bytes; returns a malloc'd NUL-terminated string or NULL. */
char *gm_base64_encode(const uint8_t *data, size_t n);

/* Decodes text (padding optional, no whitespace); returns a malloc'd buffer
 * and its length, or NULL if text is not base64 or memory ran out. */
uint8_t *gm_base64_decode(const char *text, size_t len, size_t *out_len);

#endif
