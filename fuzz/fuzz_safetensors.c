/*
 * fuzz_safetensors.c - libFuzzer harness for the safetensors parser
 * (gm_st_parse).
 *
 * Input: the bytes of one safetensors file, exactly as on disk (8-byte
 * little-endian header length, JSON header, tensor data). A file the parser
 * accepts is then read through every accessor: each tensor's values (so
 * that a wrong bound shows up under ASan), names, shapes and metadata, with
 * the invariants the header promises checked (numel is the product of the
 * shape, lookups by name find the same entry).
 */
#include "fuzz_util.h"
#include "gm/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[GM_ERR_LEN];
    gm_st *st = gm_st_parse("fuzz", data, size, err);
    if (!st) {
        fuzz_check_err(err, sizeof err);
        return 0;
    }
    volatile double sink = 0;
    for (int i = 0; i < gm_st_count(st); i++) {
        const gm_tensor *t = gm_st_at(st, i);
        FUZZ_CHECK(t->name != NULL, "tensor %d has no name", i);
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= GM_MAX_DIMS, "tensor %s: ndim %d", t->name, t->ndim);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            FUZZ_CHECK(t->shape[d] >= 0, "tensor %s: negative dimension", t->name);
            numel *= t->shape[d];
        }
        FUZZ_CHECK(numel == t->numel, "tensor %s: numel %lld, shape product %lld", t->name, (long long)t->numel,
                   (long long)numel);
        FUZZ_CHECK((t->f32 != NULL) + (t->i64 != NULL) == 1, "tensor %s: values as both or neither type", t->name);
        for (int64_t k = 0; k < t->numel; k++) sink += t->f32 ? t->f32[k] : (double)t->i64[k];
        FUZZ_CHECK(gm_st_tensor(st, t->name) != NULL, "tensor %s not found by name", t->name);
        (void)gm_dtype_name(t->dtype);
    }
    for (int i = 0; i < gm_st_meta_count(st); i++) {
        const char *key, *value = gm_st_meta_at(st, i, &key);
        FUZZ_CHECK(key && value, "metadata entry %d incomplete", i);
        FUZZ_CHECK(gm_st_meta(st, key) != NULL, "metadata key %s not found", key);
        sink += (double)strlen(value);
    }
    (void)sink;
    gm_st_free(st);
    return 0;
}
