/*
 * npy.h - NumPy's .npy file format (version 1.0) for float32 arrays, the
 * binary reply of format=npy.
 *
 * A .npy file is the 6 bytes "\x93NUMPY", the version (1, 0), a 2-byte
 * little-endian header length, then a Python dict literal
 * "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 28, 28, 1), }"
 * padded with spaces and ended by "\n" so that the data starts at a
 * multiple of 64 bytes, then the values as little-endian float32 in C
 * (row-major) order. numpy.load reads it as is; so does any reader that
 * parses that one line.
 */
#ifndef GM_NPY_H
#define GM_NPY_H

#include <stddef.h>
#include <stdint.h>

enum { GM_NPY_MAX_DIMS = 8 };

/* Writes x, a float32 array of ndim (1 to GM_NPY_MAX_DIMS) dimensions
 * shape[0] x ... x shape[ndim-1], as a .npy file into *out (malloc'd, the
 * caller frees it) of *len bytes. Returns 0, or -1 when memory ran out. */
int gm_npy_write_f32(const float *x, int ndim, const long *shape, uint8_t **out, size_t *len);

#endif
