/*
 * clock.c - the monotonic clock (see gm/clock.h).
 */
#include <time.h>

#include "gm/clock.h"

int64_t gm_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double gm_now_s(void) { return gm_now_ns() * 1e-9; }
