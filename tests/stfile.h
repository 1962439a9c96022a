/*
 * stfile.h - the files tests write: temporary files under /tmp, text,
 * copied and gzip files, and safetensors files built either from a header
 * text and data bytes or from metadata pairs and a list of tensors (header
 * made with jansson, F32 or F64 data). Hostile model files are written
 * this way, so no binary fixture is committed for them. Included by
 * testutil.h.
 */
#ifndef GM_TEST_STFILE_H
#define GM_TEST_STFILE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <zlib.h>

#define TEMP_PATH_LEN 64

/* Writes len bytes to a new file /tmp/gm_test_<tag>_XXXXXX, whose name is
 * put in path (TEMP_PATH_LEN bytes) and returned; the caller unlinks it. */
static inline const char *temp_file(char *path, const char *tag, const void *bytes, size_t len) {
    int n = snprintf(path, TEMP_PATH_LEN, "/tmp/gm_test_%s_XXXXXX", tag);
    assert_true(n > 0 && n < TEMP_PATH_LEN);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, len), (ssize_t)len);
    close(fd);
    return path;
}

/* Writes text to path (created or truncated). */
static inline void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* Copies the file from to the path to (created or truncated). */
static inline void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* Writes len bytes gzip-compressed to dir/name. */
static inline void write_gz(const char *dir, const char *name, const void *data, size_t len) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, data, (unsigned)len), (int)len);
    assert_int_equal(gzclose(f), Z_OK);
}

/* An in-memory safetensors file: 8-byte length, header text, data bytes. */
static inline uint8_t *st_build(const char *header, const void *data, size_t data_len, size_t *out_len) {
    size_t n = strlen(header);
    uint8_t *buf = malloc(8 + n + data_len + 1);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    if (data_len) memcpy(buf + 8 + n, data, data_len);
    *out_len = 8 + n + data_len;
    return buf;
}

/* st_build's file, written by temp_file (path as there). */
static inline const char *st_write(char *path, const char *tag, const char *header, const void *data, size_t data_len) {
    size_t len;
    uint8_t *buf = st_build(header, data, data_len, &len);
    temp_file(path, tag, buf, len);
    free(buf);
    return path;
}

/* One tensor of a file st_write_model writes: name, shape, dtype F32 (or
 * F64), and element k's value values[k], or when values is NULL 0 (or
 * 0.01 (k mod 7 - 3) when ramp is set); when poisoned, element poison_at is
 * poison instead. */
typedef struct {
    const char *name;
    bool f64;
    int ndim;
    int64_t shape[5];
    const float *values;
    bool ramp;
    bool poisoned;
    int64_t poison_at;
    double poison;
} st_tensor;

static inline int64_t st_numel(const st_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* Element k of the tensor, as its comment above says. */
static inline double st_value(const st_tensor *t, int64_t k) {
    if (t->poisoned && k == t->poison_at) return t->poison;
    return t->values ? t->values[k] : t->ramp ? 0.01 * (double)(k % 7 - 3) : 0.0;
}

/* A safetensors file of the metadata pairs meta[0..nmeta) (key, value, key,
 * value, ...) and the tensors ts[0..nt), their data packed in that order,
 * written by temp_file (path as there). */
static inline const char *st_write_model(char *path, const char *tag, const char *const *meta, int nmeta,
                                         const st_tensor *ts, int nt) {
    json_t *hdr = json_object(), *md = json_object();
    for (int i = 0; i + 1 < nmeta; i += 2) json_object_set_new(md, meta[i], json_string(meta[i + 1]));
    json_object_set_new(hdr, "__metadata__", md);
    size_t off = 0;
    for (int i = 0; i < nt; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < ts[i].ndim; d++) json_array_append_new(shape, json_integer(ts[i].shape[d]));
        size_t bytes = (size_t)st_numel(&ts[i]) * (ts[i].f64 ? 8 : 4);
        json_object_set_new(hdr, ts[i].name,
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype", ts[i].f64 ? "F64" : "F32", "shape", shape,
                                      "data_offsets", (json_int_t)off, (json_int_t)(off + bytes)));
        off += bytes;
    }
    char *text = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    assert_non_null(text);
    uint8_t *data = malloc(off ? off : 1);
    assert_non_null(data);
    size_t at = 0;
    for (int i = 0; i < nt; i++)
        for (int64_t k = 0; k < st_numel(&ts[i]); k++) {
            double v = st_value(&ts[i], k);
            if (ts[i].f64) {
                memcpy(data + at, &v, 8);
                at += 8;
            } else {
                float f = (float)v;
                memcpy(data + at, &f, 4);
                at += 4;
            }
        }
    st_write(path, tag, text, data, off);
    free(data);
    free(text);
    return path;
}

#endif
