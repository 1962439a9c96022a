/*
 * npy.c - the .npy writer (see npy.h).
 *
 * The values are written byte by byte as little-endian, so the file is the
 * same on any host; 64-byte alignment of the data is what numpy itself
 * writes, so that a reader can map the array in place.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"

int gm_npy_write_f32(const float *x, int ndim, const long *shape, uint8_t **out, size_t *len) {
    char dict[64 + 24 * GM_NPY_MAX_DIMS];
    size_t count = 1;
    int o = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim; i++) {
        o += snprintf(dict + o, sizeof dict - (size_t)o, "%ld%s", shape[i], ndim == 1 ? "," : i + 1 < ndim ? ", " : "");
        count *= (size_t)shape[i];
    }
    o += snprintf(dict + o, sizeof dict - (size_t)o, "), }");
    /* 10 bytes of preamble, the dict, spaces, "\n": a multiple of 64 */
    size_t header = ((10 + (size_t)o + 1 + 63) / 64) * 64;
    size_t total = header + 4 * count;
    uint8_t *b = malloc(total);
    if (!b) return -1;
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (uint8_t)((header - 10) & 0xff);
    b[9] = (uint8_t)((header - 10) >> 8);
    memcpy(b + 10, dict, (size_t)o);
    memset(b + 10 + o, ' ', header - 10 - (size_t)o - 1);
    b[header - 1] = '\n';
    uint8_t *d = b + header;
    for (size_t i = 0; i < count; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        d[4 * i] = (uint8_t)u, d[4 * i + 1] = (uint8_t)(u >> 8), d[4 * i + 2] = (uint8_t)(u >> 16),
              d[4 * i + 3] = (uint8_t)(u >> 24);
    }
    *out = b;
    *len = total;
    return 0;
}
