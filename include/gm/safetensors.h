/*
 * safetensors.h - load a safetensors file, validating every rule of the
 * format before any byte of tensor data is trusted.
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON that map
 * tensor names to {dtype, shape, data_offsets} plus an optional
 * "__metadata__" string map, then the tensor bytes. The loader reads the
 * whole file, checks it (the format's rules: docs/model-files.md), and copies
 * each tensor out: float dtypes (F32, F16, BF16, F64) become F32, integer
 * dtypes (I32, I64) become I64. After loading, the file's bytes are gone; the
 * gm_st owns every tensor and string it hands out.
 */
#ifndef GM_SAFETENSORS_H
#define GM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "gm/error.h"

#define GM_MAX_DIMS 8
#define GM_ST_MAX_HEADER 100000000u /* the reference reader's bound */
#define GM_ST_MAX_FILE (4ull << 30) /* a model is read whole into memory */

typedef enum {
    GM_DTYPE_F32,
    GM_DTYPE_F16,
    GM_DTYPE_BF16,
    GM_DTYPE_F64,
    GM_DTYPE_I32,
    GM_DTYPE_I64,
} gm_dtype;

typedef struct {
    const char *name;
    gm_dtype dtype; /* as stored in the file */
    int ndim;
    int64_t shape[GM_MAX_DIMS];
    int64_t numel;
    const float *f32;   /* float dtypes, converted to F32; NULL otherwise */
    const int64_t *i64; /* integer dtypes, converted to I64; NULL otherwise */
} gm_tensor;

typedef struct gm_st gm_st;

/* Reads and validates `path`. On failure returns NULL and writes a message
 * naming the file and the broken rule into err. Free with gm_st_free. */
gm_st *gm_st_load(const char *path, char err[GM_ERR_LEN]);

/* Same checks on an in-memory file; `label` names it in messages. The buffer
 * is not kept. */
gm_st *gm_st_parse(const char *label, const uint8_t *buf, size_t len, char err[GM_ERR_LEN]);

void gm_st_free(gm_st *st); /* accepts NULL */

/* The tensor called `name`, or NULL. Valid until gm_st_free. */
const gm_tensor *gm_st_tensor(const gm_st *st, const char *name);

int gm_st_count(const gm_st *st);
const gm_tensor *gm_st_at(const gm_st *st, int i); /* 0 <= i < count */

/* The "__metadata__" value for `key`, or NULL. */
const char *gm_st_meta(const gm_st *st, const char *key);
int gm_st_meta_count(const gm_st *st);
/* i-th metadata entry; returns its value and stores its key in *key. */
const char *gm_st_meta_at(const gm_st *st, int i, const char **key);

const char *gm_dtype_name(gm_dtype dt);

/* The SHA-256 of the file's bytes, as 64 lowercase hex digits. */
const char *gm_st_sha256(const gm_st *st);

/* The file label given at load (the path), for messages. */
const char *gm_st_label(const gm_st *st);

/* The flat index of the first NaN or infinity in a float tensor, or -1 when
 * every value is finite (and for integer tensors). The format allows any
 * float, so users of weights call this: a non-finite weight makes every
 * output it touches NaN. */
int64_t gm_tensor_nonfinite(const gm_tensor *t);

#endif
