/*
 * base64.c - RFC 4648 base64 (see base64.h).
 */
#include <stdlib.h>

#include "base64.h"

static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *gm_base64_encode(const uint8_t *data, size_t n) {
    char *out = malloc((n + 2) / 3 * 4 + 1), *p = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < n) v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < n) v |= data[i + 2];
        *p++ = ALPHABET[v >> 18 & 63];
        *p++ = ALPHABET[v >> 12 & 63];
        *p++ = i + 1 < n ? ALPHABET[v >> 6 & 63] : '=';
        *p++ = i + 2 < n ? ALPHABET[v & 63] : '=';
    }
    *p = 0;
    return out;
}

static int value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

uint8_t *gm_base64_decode(const char *text, size_t len, size_t *out_len) {
    while (len > 0 && text[len - 1] == '=') len--;
    if (len % 4 == 1) return NULL;
    uint8_t *out = malloc(len / 4 * 3 + 3), *p = out;
    if (!out) return NULL;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = value(text[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *p++ = (uint8_t)(acc >> bits);
        }
    }
    *out_len = (size_t)(p - out);
    return out;
}
