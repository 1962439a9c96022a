/*
 * text.c - UTF-8 checks and message quoting (see text.h).
 */
#include <stdio.h>
#include <string.h>

#include "text.h"

size_t gm_utf8_char(const uint8_t *s, size_t n) {
    if (n == 0) return 0;
    if (s[0] < 0x80) return 1;
    size_t len = s[0] >= 0xc2 && s[0] <= 0xdf   ? 2
                 : s[0] >= 0xe0 && s[0] <= 0xef ? 3
                 : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
                                                : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (s[0] == 0xe0 && s[1] < 0xa0) return 0;  /* overlong */
    if (s[0] == 0xed && s[1] >= 0xa0) return 0; /* a UTF-16 surrogate */
    if (s[0] == 0xf0 && s[1] < 0x90) return 0;  /* overlong */
    if (s[0] == 0xf4 && s[1] >= 0x90) return 0; /* past U+10FFFF */
    return len;
}

bool gm_utf8_valid(const char *s, size_t len) {
    for (size_t i = 0, k; i < len; i += k)
        if (!(k = gm_utf8_char((const uint8_t *)s + i, len - i))) return false;
    return true;
}

const char *gm_quote(char out[GM_QUOTE_LEN], const char *s, size_t len) {
    const uint8_t *u = (const uint8_t *)s;
    size_t o = 0, budget = GM_QUOTE_LEN - 8; /* room for the quotes, "..." and the NUL */
    out[o++] = '"';
    for (size_t i = 0; i < len;) {
        size_t k = gm_utf8_char(u + i, len - i);
        bool plain = k > 1 || (k == 1 && u[i] >= 0x20 && u[i] < 0x7f && u[i] != '"' && u[i] != '\\');
        size_t need = plain ? k : k == 1 && (u[i] == '"' || u[i] == '\\') ? 2 : 4;
        if (o - 1 + need > budget) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (plain) memcpy(out + o, u + i, k);
        else if (need == 2) out[o] = '\\', out[o + 1] = (char)u[i];
        else snprintf(out + o, 5, "\\x%02x", u[i]);
        o += need;
        i += k ? k : 1;
    }
    out[o++] = '"';
    out[o] = 0;
    return out;
}
