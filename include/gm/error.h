/*
 * error.h - how gmserve reports errors caused by outside input.
 *
 * Functions that can fail on a file, a request or a config take a caller
 * buffer `char err[GM_ERR_LEN]` and fill it with one line that names the
 * input and what was wrong. Programmer errors are asserts instead.
 */
#ifndef GM_ERROR_H
#define GM_ERROR_H

#define GM_ERR_LEN 512

#if defined(__GNUC__)
#define GM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define GM_PRINTF(a, b)
#endif

/* snprintf into err (which may be NULL); always returns -1 so that callers
 * can write `return gm_errorf(err, ...);`. */
int gm_errorf(char err[GM_ERR_LEN], const char *fmt, ...) GM_PRINTF(2, 3);

#endif
