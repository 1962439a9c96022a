/*
 * clock.h - the one clock of gmserve: CLOCK_MONOTONIC, for deadlines,
 * latencies and progress lines.
 */
#ifndef GM_CLOCK_H
#define GM_CLOCK_H

#include <stdint.h>

int64_t gm_now_ns(void); /* CLOCK_MONOTONIC in ns */
double gm_now_s(void);   /* the same clock in seconds */

#endif
