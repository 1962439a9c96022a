/*
 * safetensors.c - a loader that distrusts its input.
 *
 * Every rule of the format is checked before tensor bytes are read: the
 * header length against the file size and a 100 MB bound, the header as
 * UTF-8 JSON without duplicate keys, each entry's dtype, shape and offsets,
 * the byte size implied by the shape (with overflow checks), and that the
 * tensors tile the data section exactly: sorted by offset they start at 0,
 * never overlap, leave no gap and end at the end of the file. Only then is
 * each tensor copied out with memcpy (files from other writers need not be
 * aligned) and converted to F32 or I64. A message names the file, the tensor
 * and the rule, so a user can see which of their exports is wrong.
 */
#include "gm/safetensors.h"
#include "gm/sha256.h"

#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct gm_st {
    char *label;
    int count;
    gm_tensor *tensors;
    int meta_count;
    char **meta_keys;
    char **meta_values;
    char sha256[GM_SHA256_HEX]; /* of the file's bytes */
};

typedef struct {
    const char *name;
    int bytes; /* per element; 0 for dtypes the format knows but we refuse */
    bool supported;
    gm_dtype dtype;
} dtype_info;

/* Every dtype of the format, so that an unsupported one is told apart from
 * a misspelled one. Sub-byte dtypes (F4, F6) have bytes = 0 here. */
static const dtype_info DTYPES[] = {
    {"F32", 4, true, GM_DTYPE_F32},
    {"F16", 2, true, GM_DTYPE_F16},
    {"BF16", 2, true, GM_DTYPE_BF16},
    {"F64", 8, true, GM_DTYPE_F64},
    {"I32", 4, true, GM_DTYPE_I32},
    {"I64", 8, true, GM_DTYPE_I64},
    {"BOOL", 1, false, 0},
    {"U8", 1, false, 0},
    {"I8", 1, false, 0},
    {"I16", 2, false, 0},
    {"U16", 2, false, 0},
    {"U32", 4, false, 0},
    {"U64", 8, false, 0},
    {"C64", 8, false, 0},
    {"F8_E5M2", 1, false, 0},
    {"F8_E4M3", 1, false, 0},
    {"F8_E8M0", 1, false, 0},
    {"F8_E4M3FNUZ", 1, false, 0},
    {"F8_E5M2FNUZ", 1, false, 0},
    {"F4", 0, false, 0},
    {"F6_E2M3", 0, false, 0},
    {"F6_E3M2", 0, false, 0},
};

const char *gm_dtype_name(gm_dtype dt) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (DTYPES[i].supported && DTYPES[i].dtype == dt) return DTYPES[i].name;
    return "?";
}

static const dtype_info *find_dtype(const char *name) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (strcmp(DTYPES[i].name, name) == 0) return &DTYPES[i];
    return NULL;
}

/* IEEE half to float, exact for every value including subnormals. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Little-endian loads: the host is little-endian (x86-64, aarch64), but we
 * read byte by byte so that nothing depends on it. */
static uint64_t load_u64le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int convert(gm_tensor *t, const uint8_t *src) {
    int64_t n = t->numel;
    size_t cap = n > 0 ? (size_t)n : 1;
    if (t->dtype == GM_DTYPE_I32 || t->dtype == GM_DTYPE_I64) {
        int64_t *dst = malloc(cap * sizeof *dst);
        if (!dst) return -1;
        for (int64_t i = 0; i < n; i++) {
            if (t->dtype == GM_DTYPE_I64) {
                dst[i] = (int64_t)load_u64le(src + 8 * i);
            } else {
                uint32_t u = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 | (uint32_t)src[4 * i + 2] << 16 |
                             (uint32_t)src[4 * i + 3] << 24;
                dst[i] = (int32_t)u;
            }
        }
        t->i64 = dst;
        return 0;
    }
    float *dst = malloc(cap * sizeof *dst);
    if (!dst) return -1;
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case GM_DTYPE_F32:
            memcpy(&dst[i], src + 4 * i, 4);
            break;
        case GM_DTYPE_F16:
            dst[i] = half_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
            break;
        case GM_DTYPE_BF16:
            dst[i] = bf16_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
            break;
        case GM_DTYPE_F64: {
            double d;
            memcpy(&d, src + 8 * i, 8);
            /* a finite double beyond float range has no float value (the
             * conversion is undefined): it becomes the infinity it rounds to */
            dst[i] = fabs(d) > FLT_MAX && isfinite(d) ? (d > 0 ? INFINITY : -INFINITY) : (float)d;
            break;
        }
        default:
            break;
        }
    }
    t->f32 = dst;
    return 0;
}

typedef struct {
    uint64_t begin, end;
    int index;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Reads a JSON array of non-negative integers into out[0..n). */
static int read_uints(json_t *arr, uint64_t *out, size_t max, size_t *n) {
    if (!json_is_array(arr) || json_array_size(arr) > max) return -1;
    *n = json_array_size(arr);
    for (size_t i = 0; i < *n; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
        out[i] = (uint64_t)json_integer_value(v);
    }
    return 0;
}

static int parse_meta(gm_st *st, json_t *meta, char err[GM_ERR_LEN]) {
    if (!json_is_object(meta)) return gm_errorf(err, "%s: \"__metadata__\" must be an object of strings", st->label);
    size_t n = json_object_size(meta);
    st->meta_keys = calloc(n ? n : 1, sizeof(char *));
    st->meta_values = calloc(n ? n : 1, sizeof(char *));
    if (!st->meta_keys || !st->meta_values) return gm_errorf(err, "%s: out of memory", st->label);
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v) {
        if (!json_is_string(v))
            return gm_errorf(err, "%s: metadata \"%s\" must be a string (lists and objects are JSON text)", st->label,
                             key);
        st->meta_keys[st->meta_count] = strdup(key);
        st->meta_values[st->meta_count] = strdup(json_string_value(v));
        if (!st->meta_keys[st->meta_count] || !st->meta_values[st->meta_count])
            return gm_errorf(err, "%s: out of memory", st->label);
        st->meta_count++;
    }
    return 0;
}

/* Parses one tensor entry; fills t (name, dtype, shape, numel) and its span. */
static int parse_entry(const gm_st *st, const char *name, json_t *e, gm_tensor *t, span *s, char err[GM_ERR_LEN]) {
    const char *L = st->label;
    if (!json_is_object(e))
        return gm_errorf(err, "%s: tensor '%s': entry must be an object with dtype, shape, data_offsets", L, name);
    json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape"),
           *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd)) return gm_errorf(err, "%s: tensor '%s': \"dtype\" missing or not a string", L, name);
    const dtype_info *di = find_dtype(json_string_value(jd));
    if (!di) return gm_errorf(err, "%s: tensor '%s': unknown dtype \"%s\"", L, name, json_string_value(jd));
    if (!di->supported)
        return gm_errorf(err, "%s: tensor '%s': dtype %s is not supported (use F32, F16, BF16, F64, I32 or I64)", L,
                         name, di->name);
    uint64_t dims[GM_MAX_DIMS + 1], offs[3];
    size_t nd, no;
    if (read_uints(js, dims, GM_MAX_DIMS, &nd))
        return gm_errorf(err, "%s: tensor '%s': \"shape\" must be an array of at most %d non-negative integers", L,
                         name, GM_MAX_DIMS);
    if (read_uints(jo, offs, 2, &no) || no != 2)
        return gm_errorf(err, "%s: tensor '%s': \"data_offsets\" must be [begin, end] non-negative integers", L, name);
    if (offs[1] < offs[0])
        return gm_errorf(err, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", L, name,
                         (unsigned long long)offs[0], (unsigned long long)offs[1]);
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        if (dims[i] != 0 && numel > (UINT64_MAX / 8) / dims[i])
            return gm_errorf(err, "%s: tensor '%s': shape overflows the byte count", L, name);
        numel *= dims[i];
    }
    uint64_t nbytes = numel * (uint64_t)di->bytes;
    if (offs[1] - offs[0] != nbytes)
        return gm_errorf(err,
                         "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but dtype %s with "
                         "%llu elements needs %llu",
                         L, name, (unsigned long long)offs[0], (unsigned long long)offs[1],
                         (unsigned long long)(offs[1] - offs[0]), di->name, (unsigned long long)numel,
                         (unsigned long long)nbytes);
    t->dtype = di->dtype;
    t->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) t->shape[i] = (int64_t)dims[i];
    t->numel = (int64_t)numel;
    s->begin = offs[0];
    s->end = offs[1];
    return 0;
}

/* The tensors must tile [0, data_len) exactly. */
static int check_tiling(const gm_st *st, span *spans, int n, uint64_t data_len, char err[GM_ERR_LEN]) {
    qsort(spans, (size_t)n, sizeof *spans, span_cmp);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const char *name = st->tensors[spans[i].index].name;
        if (spans[i].begin < at)
            return gm_errorf(err,
                             "%s: tensor '%s': data_offsets begin at %llu, overlapping the previous tensor "
                             "(which ends at %llu)",
                             st->label, name, (unsigned long long)spans[i].begin, (unsigned long long)at);
        if (spans[i].begin > at)
            return gm_errorf(err, "%s: tensor '%s': data_offsets begin at %llu, leaving a gap after byte %llu",
                             st->label, name, (unsigned long long)spans[i].begin, (unsigned long long)at);
        at = spans[i].end;
    }
    if (at != data_len)
        return gm_errorf(err,
                         "%s: tensors cover %llu bytes of data but the file holds %llu after the header "
                         "(%s)",
                         st->label, (unsigned long long)at, (unsigned long long)data_len,
                         at > data_len ? "the file is truncated" : "trailing bytes are not allowed");
    return 0;
}

/* What torch.save writes: a zip archive (since PyTorch 1.6) or, with
 * _use_new_zipfile_serialization=False, a pickle (protocol 2 to 5). Asked
 * only once the first 8 bytes have failed as a header length, so that no
 * valid file is misnamed. */
static bool torch_checkpoint(const uint8_t *buf, size_t len) {
    return len >= 4 && ((buf[0] == 'P' && buf[1] == 'K' && buf[2] == 3 && buf[3] == 4) ||
                        (buf[0] == 0x80 && buf[1] >= 2 && buf[1] <= 5));
}

#define TORCH_HINT                                                                                                     \
    "this is a PyTorch checkpoint (torch.save), not a safetensors model file; export it with python3 -m "              \
    "gmexport (README: Serve your own PyTorch model)"

gm_st *gm_st_parse(const char *label, const uint8_t *buf, size_t len, char err[GM_ERR_LEN]) {
    gm_st *st = calloc(1, sizeof *st);
    json_t *root = NULL;
    span *spans = NULL;
    if (!st || !(st->label = strdup(label))) {
        gm_errorf(err, "%s: out of memory", label);
        goto fail;
    }
    gm_sha256_hex(buf, len, st->sha256);
    if (len < 8) {
        gm_errorf(err, "%s: file is %zu bytes, shorter than the 8-byte header length", label, len);
        goto fail;
    }
    uint64_t n = load_u64le(buf);
    if ((n > GM_ST_MAX_HEADER || n > len - 8) && torch_checkpoint(buf, len)) {
        gm_errorf(err, "%s: " TORCH_HINT, label);
        goto fail;
    }
    if (n > GM_ST_MAX_HEADER) {
        gm_errorf(err, "%s: header length %llu exceeds the limit of %u bytes", label, (unsigned long long)n,
                  GM_ST_MAX_HEADER);
        goto fail;
    }
    if (n > len - 8) {
        gm_errorf(err, "%s: header length %llu runs past the end of the %zu-byte file", label, (unsigned long long)n,
                  len);
        goto fail;
    }
    json_error_t jerr;
    root = json_loadb((const char *)buf + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        gm_errorf(err, "%s: header is not valid UTF-8 JSON without duplicate keys: %s (at byte %d)", label, jerr.text,
                  jerr.position);
        goto fail;
    }
    if (!json_is_object(root)) {
        gm_errorf(err, "%s: header must be a JSON object", label);
        goto fail;
    }
    size_t entries = json_object_size(root);
    st->tensors = calloc(entries ? entries : 1, sizeof *st->tensors);
    spans = calloc(entries ? entries : 1, sizeof *spans);
    if (!st->tensors || !spans) {
        gm_errorf(err, "%s: out of memory", label);
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (parse_meta(st, val, err)) goto fail;
            continue;
        }
        gm_tensor *t = &st->tensors[st->count];
        if (!(t->name = strdup(key))) {
            gm_errorf(err, "%s: out of memory", label);
            goto fail;
        }
        spans[st->count].index = st->count;
        st->count++; /* counted before parsing so that free sees the name */
        if (parse_entry(st, key, val, t, &spans[st->count - 1], err)) goto fail;
    }
    if (check_tiling(st, spans, st->count, (uint64_t)(len - 8 - n), err)) goto fail;
    const uint8_t *data = buf + 8 + n;
    for (int i = 0; i < st->count; i++) {
        if (convert(&st->tensors[spans[i].index], data + spans[i].begin)) {
            gm_errorf(err, "%s: out of memory", label);
            goto fail;
        }
    }
    free(spans);
    json_decref(root);
    return st;
fail:
    free(spans);
    json_decref(root);
    gm_st_free(st);
    return NULL;
}

gm_st *gm_st_load(const char *path, char err[GM_ERR_LEN]) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        gm_errorf(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    uint8_t *buf = NULL;
    gm_st *st = NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) || !S_ISREG(sb.st_mode)) {
        gm_errorf(err, "%s: not a regular file", path);
        goto done;
    }
    if ((uint64_t)sb.st_size > GM_ST_MAX_FILE) {
        gm_errorf(err, "%s: file is %lld bytes, over the %llu-byte limit for a model", path, (long long)sb.st_size,
                  (unsigned long long)GM_ST_MAX_FILE);
        goto done;
    }
    size_t size = (size_t)sb.st_size;
    buf = malloc(size ? size : 1);
    if (!buf) {
        gm_errorf(err, "%s: out of memory reading %zu bytes", path, size);
        goto done;
    }
    if (fread(buf, 1, size, f) != size) {
        gm_errorf(err, "%s: read error", path);
        goto done;
    }
    st = gm_st_parse(path, buf, size, err);
done:
    free(buf);
    fclose(f);
    return st;
}

void gm_st_free(gm_st *st) {
    if (!st) return;
    for (int i = 0; i < st->count; i++) {
        free((char *)st->tensors[i].name);
        free((float *)st->tensors[i].f32);
        free((int64_t *)st->tensors[i].i64);
    }
    for (int i = 0; i < st->meta_count; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    free(st->tensors);
    free(st->label);
    free(st);
}

const gm_tensor *gm_st_tensor(const gm_st *st, const char *name) {
    for (int i = 0; i < st->count; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

int gm_st_count(const gm_st *st) { return st->count; }
const gm_tensor *gm_st_at(const gm_st *st, int i) { return &st->tensors[i]; }

const char *gm_st_meta(const gm_st *st, const char *key) {
    for (int i = 0; i < st->meta_count; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

int gm_st_meta_count(const gm_st *st) { return st->meta_count; }

const char *gm_st_meta_at(const gm_st *st, int i, const char **key) {
    *key = st->meta_keys[i];
    return st->meta_values[i];
}

const char *gm_st_sha256(const gm_st *st) { return st->sha256; }
const char *gm_st_label(const gm_st *st) { return st->label; }

int64_t gm_tensor_nonfinite(const gm_tensor *t) {
    if (!t->f32) return -1;
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(t->f32[i])) return i;
    return -1;
}
