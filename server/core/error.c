/* error.c - the one helper behind every error message (see gm/error.h). */
#include "gm/error.h"

#include <stdarg.h>
#include <stdio.h>

int gm_errorf(char err[GM_ERR_LEN], const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, GM_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}
