/*
 * fuzz_util.h - what the libFuzzer harnesses share: a file made from the
 * input without touching the disk, and a check that aborts (a finding) with
 * the broken invariant.
 */
#ifndef GM_FUZZ_UTIL_H
#define GM_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A broken invariant is a crash for libFuzzer, like a sanitizer report. */
#define FUZZ_CHECK(cond, ...)                                                                                          \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, #cond);                               \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

/* Writes len bytes to an anonymous in-memory file and returns its fd (or
 * -1); *path gets a name that fopen() opens, for loaders that take a path. */
static inline int fuzz_memfile(const uint8_t *data, size_t len, char *path, size_t path_len) {
    int fd = memfd_create("fuzz", 0);
    if (fd < 0) return -1;
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    snprintf(path, path_len, "/proc/self/fd/%d", fd);
    return fd;
}

/* An error message is a terminated string that says something. */
static inline void fuzz_check_err(const char *err, size_t cap) {
    FUZZ_CHECK(memchr(err, 0, cap) != NULL, "error message not terminated");
    FUZZ_CHECK(err[0] != 0, "failure without an error message");
}

/* Removes the GMSERVE_* variables, which gm_config_load would read over
 * what the harness passes. */
static inline void fuzz_clear_gmserve_env(void) {
    extern char **environ;
    for (char **e = environ; *e;) {
        if (strncmp(*e, "GMSERVE_", 8) != 0) {
            e++;
            continue;
        }
        char name[256], *before = *e;
        snprintf(name, sizeof name, "%.*s", (int)strcspn(*e, "="), *e);
        unsetenv(name);        /* moves the later entries down: look at *e again */
        if (*e == before) e++; /* not removed (a name over 255 bytes): skip it */
    }
}

#endif
