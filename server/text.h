/*
 * text.h - untrusted bytes as text: UTF-8 checks, and quoting for messages.
 */
#ifndef GM_TEXT_H
#define GM_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The length of the UTF-8 character at s (n bytes available), or 0 when s
 * does not start with a complete, valid one (overlong forms, surrogates and
 * code points past U+10FFFF are invalid). */
size_t gm_utf8_char(const uint8_t *s, size_t n);

/* Whether s (len bytes) is valid UTF-8 throughout. */
bool gm_utf8_valid(const char *s, size_t len);

/* Writes s (len bytes, untrusted) into out as a double-quoted string that
 * is valid UTF-8 whatever s holds: printable ASCII and valid UTF-8 as is,
 * '"' and '\\' escaped, other bytes as \xNN, and at most about
 * GM_QUOTE_LEN - 8 bytes of s (never cut inside a character; "..." marks the
 * cut). Returns out, for use as a "%s" argument of an error message. */
enum { GM_QUOTE_LEN = 160 };
const char *gm_quote(char out[GM_QUOTE_LEN], const char *s, size_t len);

#endif
