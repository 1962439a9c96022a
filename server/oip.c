/*
 * oip.c - the Open Inference Protocol v2 request and reply (see oip.h).
 *
 * A model's tensors are the native API's names: the inputs images
 * [n, H, W, C], latents [n, Z], label [n], code [n, code_dim], cat [n] (an
 * InfoGAN's category), seed [1] and n [1]; the outputs images, logp, bits_per_dim, elbo, se, z, logvar,
 * component_probs (a mixture AAE's posterior over its components), logit, probability, realness and label. Which
 * operation runs follows from the inputs: images go to logp, encode, discriminate, reconstruct or translate (whichever
 * the requested outputs belong to, logp by default, a translator's translate), latents to decode, neither to sample.
 * The request's "parameters" carry the operation's scalars (k, temperature, truncation, mode, direction). docs/oip.md
 * has the table per family.
 *
 * Parsing keeps the JSON header's tree and points into the body for binary
 * tensors, so nothing is copied before the model's shapes are checked;
 * binding then writes the native parameter object, the one thing the
 * operation layer reads, so an infer request meets exactly the checks,
 * limits and batching of /v1. The reply is written as text directly (no
 * tree), with FP32 numbers in the fewest digits that round-trip (at most
 * 9, by floatfmt.h) and FP64 ones at 17.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "floatfmt.h"
#include "oip.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "binary tensors are little-endian; this file copies them as the host stores them"
#endif

enum { MAX_TENSORS = 16, MAX_DIMS = 8, MAX_NAME = 64 };
#define MAX_ELEMENTS ((uint64_t)1 << 40) /* far past any body; keeps count x size from overflowing */

/* ---- data types ---- */

typedef enum {
    DT_BOOL,
    DT_UINT8,
    DT_UINT16,
    DT_UINT32,
    DT_UINT64,
    DT_INT8,
    DT_INT16,
    DT_INT32,
    DT_INT64,
    DT_FP16,
    DT_BF16,
    DT_FP32,
    DT_FP64,
    DT_BYTES,
    DT_COUNT
} dtype;

static const struct {
    const char *name;
    size_t size; /* bytes per element; 0 = variable (BYTES) */
} DTYPES[DT_COUNT] = {
    [DT_BOOL] = {"BOOL", 1},     [DT_UINT8] = {"UINT8", 1}, [DT_UINT16] = {"UINT16", 2}, [DT_UINT32] = {"UINT32", 4},
    [DT_UINT64] = {"UINT64", 8}, [DT_INT8] = {"INT8", 1},   [DT_INT16] = {"INT16", 2},   [DT_INT32] = {"INT32", 4},
    [DT_INT64] = {"INT64", 8},   [DT_FP16] = {"FP16", 2},   [DT_BF16] = {"BF16", 2},     [DT_FP32] = {"FP32", 4},
    [DT_FP64] = {"FP64", 8},     [DT_BYTES] = {"BYTES", 0},
};

static int dtype_of(const char *s) {
    for (int d = 0; d < DT_COUNT; d++)
        if (!strcmp(s, DTYPES[d].name)) return d;
    return -1;
}

/* ---- the parsed request ---- */

typedef struct {
    const char *name;
    dtype dt;
    int ndim;
    uint64_t shape[MAX_DIMS];
    uint64_t count;
    json_t **leaves;    /* JSON data: count values in row-major order (malloc'd), or NULL */
    const uint8_t *raw; /* binary data: count x size bytes inside the body, or NULL */
} tensor;

typedef struct {
    const char *name;
    int binary; /* its "binary_data" parameter: -1 not given, 0, 1 */
} wanted;

struct gm_oip_request {
    json_t *root;
    const char *id;
    json_t *params; /* the request's "parameters" object, or NULL */
    bool binary_output;
    int n_inputs, n_outputs;
    tensor inputs[MAX_TENSORS];
    wanted outputs[MAX_TENSORS];
};

#define fail(kind_, ...) (*kind = (kind_), gm_errorf(err, __VA_ARGS__), false)

/* An upper bound on the values in the JSON text b (n bytes): every value
 * but a container's first follows a comma, and each first one is counted
 * by its container's bracket. */
static size_t json_value_bound(const uint8_t *b, size_t n) {
    size_t count = 1;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        if (in_string) {
            if (b[i] == '\\') i++;
            else if (b[i] == '"') in_string = false;
        } else if (b[i] == '"') in_string = true;
        else if (b[i] == ',' || b[i] == '[' || b[i] == '{') count++;
    }
    return count;
}

/* Whether every key of object o is in the NULL-terminated list; else the
 * first that is not goes to *bad. */
static bool keys_known(json_t *o, const char *const *known, const char **bad) {
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        bool ok = false;
        for (int i = 0; known[i] && !ok; i++) ok = !strcmp(key, known[i]);
        if (!ok) {
            *bad = key;
            return false;
        }
    }
    return true;
}

/* An optional field: NULL when absent or JSON null (some clients write
 * every optional field, unset ones as null). */
static json_t *field(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

/* Walks the leaves of nested JSON arrays (at most depth levels) in
 * row-major order: counts them into *at, and stores them in out when it is
 * not NULL (room for *at's final value, counted by a first walk). */
static bool flatten(json_t *a, int depth, const tensor *t, json_t **out, uint64_t *at, gm_error_kind *kind,
                    char err[GM_ERR_LEN], const char *what) {
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        if (json_is_array(v)) {
            if (depth <= 1)
                return fail(GM_E_BAD_REQUEST, "%s: data nests deeper than its %d-dimensional shape", what, t->ndim);
            if (!flatten(v, depth - 1, t, out, at, kind, err, what)) return false;
            continue;
        }
        if (t->dt == DT_BOOL ? !json_is_boolean(v) : !json_is_number(v))
            return fail(GM_E_BAD_REQUEST, "%s: data holds a %s; every element of a %s tensor must be a %s", what,
                        json_is_string(v)    ? "string"
                        : json_is_object(v)  ? "object"
                        : json_is_boolean(v) ? "boolean"
                        : json_is_number(v)  ? "number"
                                             : "null",
                        DTYPES[t->dt].name, t->dt == DT_BOOL ? "boolean" : "number");
        if (out) out[*at] = v;
        ++*at;
    }
    return true;
}

static bool parse_shape(json_t *shape, tensor *t, gm_error_kind *kind, char err[GM_ERR_LEN], const char *what) {
    if (!json_is_array(shape) || json_array_size(shape) > MAX_DIMS)
        return fail(GM_E_BAD_REQUEST, "%s: \"shape\" must be an array of at most %d non-negative integers", what,
                    MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    t->count = 1;
    for (int d = 0; d < t->ndim; d++) {
        json_t *v = json_array_get(shape, (size_t)d);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return fail(GM_E_BAD_REQUEST, "%s: shape[%d] must be a non-negative integer", what, d);
        t->shape[d] = (uint64_t)json_integer_value(v);
        if (t->shape[d] > MAX_ELEMENTS || (t->shape[d] && t->count > MAX_ELEMENTS / t->shape[d]))
            return fail(GM_E_BAD_REQUEST, "%s: the shape holds more than 2^40 elements", what);
        t->count *= t->shape[d];
    }
    return true;
}

/* One $request_input; binary data is taken from *bin (left bytes after the
 * JSON), advancing it. */
static bool parse_input(json_t *o, int i, tensor *t, const uint8_t **bin, size_t *bin_left, gm_error_kind *kind,
                        char err[GM_ERR_LEN]) {
    static const char *const KNOWN[] = {"name", "shape", "datatype", "parameters", "data", NULL};
    /* content_type: how MLServer's and KServe's codecs label a numeric tensor; nothing to do here */
    static const char *const KNOWN_PARAMS[] = {"binary_data_size", "content_type", NULL};
    char what[MAX_NAME + 32];
    const char *bad;
    snprintf(what, sizeof what, "inputs[%d]", i);
    if (!json_is_object(o))
        return fail(GM_E_BAD_REQUEST, "%s must be an object {\"name\", \"shape\", \"datatype\", \"data\"}", what);
    json_t *name = json_object_get(o, "name"), *dt = json_object_get(o, "datatype"), *params = field(o, "parameters"),
           *data = json_object_get(o, "data");
    if (!json_is_string(name) || json_string_length(name) == 0 || json_string_length(name) > MAX_NAME)
        return fail(GM_E_BAD_REQUEST, "%s: \"name\" must be a string of 1 to %d bytes", what, MAX_NAME);
    t->name = json_string_value(name);
    snprintf(what, sizeof what, "input \"%s\"", t->name);
    if (!keys_known(o, KNOWN, &bad))
        return fail(GM_E_BAD_REQUEST,
                    "%s: unknown field \"%.64s\" (an input has name, shape, datatype, parameters, data)", what, bad);
    int d = json_is_string(dt) ? dtype_of(json_string_value(dt)) : -1;
    if (d < 0)
        return fail(GM_E_BAD_REQUEST,
                    "%s: \"datatype\" must be one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, "
                    "INT64, FP16, BF16, FP32, FP64, BYTES",
                    what);
    t->dt = (dtype)d;
    if (t->dt == DT_BYTES) return fail(GM_E_BAD_REQUEST, "%s: no input of this server takes BYTES (strings)", what);
    if (!parse_shape(json_object_get(o, "shape"), t, kind, err, what)) return false;
    json_t *size = NULL;
    if (params) {
        if (!json_is_object(params)) return fail(GM_E_BAD_REQUEST, "%s: \"parameters\" must be an object", what);
        if (!keys_known(params, KNOWN_PARAMS, &bad))
            return fail(GM_E_BAD_REQUEST,
                        "%s: unknown parameter \"%.64s\" (an input takes binary_data_size and content_type)", what,
                        bad);
        size = field(params, "binary_data_size");
    }
    uint64_t bytes = t->count * DTYPES[t->dt].size;
    if (size) {
        if (data)
            return fail(GM_E_BAD_REQUEST, "%s: give either \"data\" or the binary_data_size parameter, not both", what);
        if (!json_is_integer(size) || json_integer_value(size) < 0)
            return fail(GM_E_BAD_REQUEST, "%s: binary_data_size must be a non-negative integer", what);
        if ((uint64_t)json_integer_value(size) != bytes)
            return fail(GM_E_BAD_REQUEST,
                        "%s: binary_data_size is %" JSON_INTEGER_FORMAT " bytes, but shape and datatype %s make "
                        "%" PRIu64 " elements of %zu bytes = %" PRIu64 " bytes",
                        what, json_integer_value(size), DTYPES[t->dt].name, t->count, DTYPES[t->dt].size, bytes);
        if (bytes > *bin_left)
            return fail(GM_E_BAD_REQUEST,
                        "%s: its %" PRIu64 " bytes of binary data are not in the body (%zu bytes follow the JSON "
                        "for it and the inputs after it; Inference-Header-Content-Length says where the JSON ends)",
                        what, bytes, *bin_left);
        t->raw = *bin;
        *bin += bytes;
        *bin_left -= (size_t)bytes;
        return true;
    }
    if (!json_is_array(data))
        return fail(GM_E_BAD_REQUEST,
                    "%s: \"data\" must be an array (row-major, flat or nested), or send the tensor as binary "
                    "data with the binary_data_size parameter",
                    what);
    if (t->dt == DT_FP16 || t->dt == DT_BF16)
        return fail(GM_E_BAD_REQUEST, "%s: %s has no JSON form; send it as binary data", what, DTYPES[t->dt].name);
    uint64_t at = 0;
    if (!flatten(data, t->ndim > 0 ? t->ndim : 1, t, NULL, &at, kind, err, what)) return false;
    if (at != t->count)
        return fail(GM_E_BAD_REQUEST, "%s: data holds %" PRIu64 " elements, but its shape makes %" PRIu64, what, at,
                    t->count);
    if (!(t->leaves = malloc((size_t)(at ? at : 1) * sizeof *t->leaves))) return fail(GM_E_INTERNAL, "out of memory");
    at = 0;
    flatten(data, t->ndim > 0 ? t->ndim : 1, t, t->leaves, &at, kind, err, what);
    return true;
}

static bool parse_output(json_t *o, int i, wanted *w, gm_error_kind *kind, char err[GM_ERR_LEN]) {
    static const char *const KNOWN[] = {"name", "parameters", NULL};
    static const char *const KNOWN_PARAMS[] = {"binary_data", "content_type", NULL};
    const char *bad;
    json_t *name = json_object_get(o, "name"), *params = field(o, "parameters");
    if (!json_is_object(o) || !json_is_string(name))
        return fail(GM_E_BAD_REQUEST, "outputs[%d] must be an object with a \"name\" string", i);
    w->name = json_string_value(name);
    w->binary = -1;
    if (!keys_known(o, KNOWN, &bad))
        return fail(GM_E_BAD_REQUEST, "outputs[%d]: unknown field \"%.64s\" (an output has name and parameters)", i,
                    bad);
    if (params) {
        if (!json_is_object(params)) return fail(GM_E_BAD_REQUEST, "outputs[%d]: \"parameters\" must be an object", i);
        if (!keys_known(params, KNOWN_PARAMS, &bad))
            return fail(GM_E_BAD_REQUEST,
                        "outputs[%d]: unknown parameter \"%.64s\" (an output takes binary_data and content_type)", i,
                        bad);
        json_t *b = field(params, "binary_data");
        if (b && !json_is_boolean(b))
            return fail(GM_E_BAD_REQUEST, "outputs[%d]: binary_data must be true or false", i);
        if (b) w->binary = json_is_true(b);
    }
    return true;
}

static bool parse_tree(gm_oip_request *r, const uint8_t *bin, size_t bin_len, gm_error_kind *kind,
                       char err[GM_ERR_LEN]) {
    static const char *const KNOWN[] = {"id", "parameters", "inputs", "outputs", "model_name", "model_version", NULL};
    const char *bad;
    json_t *root = r->root, *id = field(root, "id"), *inputs = json_object_get(root, "inputs"),
           *outputs = field(root, "outputs");
    if (!keys_known(root, KNOWN, &bad))
        return fail(GM_E_BAD_REQUEST, "unknown field \"%.64s\" in the request (it has id, parameters, inputs, outputs)",
                    bad);
    if (id && !json_is_string(id)) return fail(GM_E_BAD_REQUEST, "\"id\" must be a string");
    r->id = id ? json_string_value(id) : NULL;
    r->params = field(root, "parameters");
    if (r->params) {
        if (!json_is_object(r->params)) return fail(GM_E_BAD_REQUEST, "\"parameters\" must be an object");
        const char *key;
        json_t *v;
        json_object_foreach(
            r->params, key,
            v) if (!json_is_string(v) && !json_is_number(v) &&
                   !json_is_boolean(v)) return fail(GM_E_BAD_REQUEST,
                                                    "parameter \"%.64s\" must be a string, number or boolean", key);
        json_t *b = field(r->params, "binary_data_output");
        if (b && !json_is_boolean(b)) return fail(GM_E_BAD_REQUEST, "binary_data_output must be true or false");
        r->binary_output = json_is_true(b);
    }
    if (!json_is_array(inputs) || json_array_size(inputs) > MAX_TENSORS)
        return fail(GM_E_BAD_REQUEST, "the request needs \"inputs\": an array of at most %d tensors", MAX_TENSORS);
    if (outputs && (!json_is_array(outputs) || json_array_size(outputs) > MAX_TENSORS))
        return fail(GM_E_BAD_REQUEST, "\"outputs\" must be an array of at most %d entries", MAX_TENSORS);
    for (size_t i = 0; i < json_array_size(inputs); i++) {
        tensor *t = &r->inputs[r->n_inputs++];
        if (!parse_input(json_array_get(inputs, i), (int)i, t, &bin, &bin_len, kind, err)) return false;
        for (int j = 0; j < r->n_inputs - 1; j++)
            if (!strcmp(r->inputs[j].name, t->name))
                return fail(GM_E_BAD_REQUEST, "input \"%s\" is given twice", t->name);
    }
    if (bin_len)
        return fail(GM_E_BAD_REQUEST,
                    "%zu bytes follow the JSON and the binary inputs it declares; Inference-Header-Content-Length "
                    "must give the JSON's length, and each binary input its binary_data_size",
                    bin_len);
    for (size_t i = 0; outputs && i < json_array_size(outputs); i++) {
        wanted *w = &r->outputs[r->n_outputs++];
        if (!parse_output(json_array_get(outputs, i), (int)i, w, kind, err)) return false;
        for (int j = 0; j < r->n_outputs - 1; j++)
            if (!strcmp(r->outputs[j].name, w->name))
                return fail(GM_E_BAD_REQUEST, "output \"%.64s\" is asked twice", w->name);
    }
    return true;
}

gm_oip_request *gm_oip_parse(const uint8_t *body, size_t len, long long header_len, size_t max_values,
                             gm_error_kind *kind, char err[GM_ERR_LEN]) {
    size_t json_len = len;
    if (header_len >= 0) {
        if ((unsigned long long)header_len > len) {
            (void)fail(GM_E_BAD_REQUEST, "Inference-Header-Content-Length is %lld, but the body has %zu bytes",
                       header_len, len);
            return NULL;
        }
        json_len = (size_t)header_len;
    }
    size_t values = json_value_bound(body, json_len);
    if (values > max_values) {
        (void)fail(GM_E_TOO_MANY_VALUES,
                   "the JSON holds about %zu values; an infer request to this model uses at most %zu (3 x "
                   "max_images "
                   "x the values of its largest input, room for nested data, plus the request's structure); send "
                   "large tensors as binary data",
                   values, max_values);
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadb((const char *)body, json_len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        (void)fail(GM_E_BAD_REQUEST, "the request is not valid JSON: %s at line %d column %d%s", je.text, je.line,
                   je.column,
                   header_len < 0 ? " (binary tensors need the Inference-Header-Content-Length header)" : "");
        return NULL;
    }
    gm_oip_request *r = calloc(1, sizeof *r);
    if (!r) {
        json_decref(root);
        (void)fail(GM_E_INTERNAL, "out of memory");
        return NULL;
    }
    r->root = root;
    if (!json_is_object(root)) {
        (void)fail(GM_E_BAD_REQUEST, "the request must be a JSON object {\"inputs\": [...]}");
    } else if (parse_tree(r, body + json_len, len - json_len, kind, err)) return r;
    gm_oip_request_free(r);
    return NULL;
}

void gm_oip_request_free(gm_oip_request *r) {
    if (!r) return;
    for (int i = 0; i < r->n_inputs; i++) free(r->inputs[i].leaves);
    json_decref(r->root);
    free(r);
}

/* ---- a model's tensors ---- */

typedef enum { IN_IMAGES, IN_LATENTS, IN_LABEL, IN_CODE, IN_CAT, IN_SEED, IN_N, IN_COUNT } in_name;

static const struct {
    const char *name;
    dtype dts[3]; /* accepted, the first the one metadata names */
    int n_dts;
} INPUTS[IN_COUNT] = {
    [IN_IMAGES] = {"images", {DT_FP32, DT_UINT8, DT_FP64}, 3},
    [IN_LATENTS] = {"latents", {DT_FP32, DT_FP64}, 2},
    [IN_LABEL] = {"label", {DT_INT64, DT_INT32}, 2},
    [IN_CODE] = {"code", {DT_FP32, DT_FP64}, 2},
    [IN_CAT] = {"cat", {DT_INT64, DT_INT32}, 2},
    [IN_SEED] = {"seed", {DT_INT64, DT_UINT64}, 2},
    [IN_N] = {"n", {DT_INT64, DT_INT32}, 2},
};

static const struct {
    const char *name;
    dtype dt;
} OUTPUTS[GM_OIP_OUT_COUNT] = {
    [GM_OIP_OUT_IMAGES] = {"images", DT_FP32},
    [GM_OIP_OUT_LOGP] = {"logp", DT_FP64},
    [GM_OIP_OUT_BITS_PER_DIM] = {"bits_per_dim", DT_FP64},
    [GM_OIP_OUT_ELBO] = {"elbo", DT_FP64},
    [GM_OIP_OUT_SE] = {"se", DT_FP64},
    [GM_OIP_OUT_Z] = {"z", DT_FP32},
    [GM_OIP_OUT_LOGVAR] = {"logvar", DT_FP32},
    [GM_OIP_OUT_COMPONENT_PROBS] = {"component_probs", DT_FP64},
    [GM_OIP_OUT_LOGIT] = {"logit", DT_FP32},
    [GM_OIP_OUT_PROBABILITY] = {"probability", DT_FP32},
    [GM_OIP_OUT_REALNESS] = {"realness", DT_FP32},
    [GM_OIP_OUT_LABEL] = {"label", DT_INT64},
};

/* The request parameters of op on this model (besides binary_data_output),
 * NULL-terminated in out (room for 4). */
static void op_params(const gm_model_info *in, gm_op op, const char *out[4]) {
    int n = 0;
    if (op == GM_OP_SAMPLE) {
        out[n++] = "temperature";
        if (in->family == GM_FAMILY_GAN) out[n++] = "truncation";
        if (in->family == GM_FAMILY_VAE) out[n++] = "mode";
    }
    if (op == GM_OP_LOGP && !in->exact_logp) out[n++] = "k";
    if (op == GM_OP_TRANSLATE && in->reverse) out[n++] = "direction";
    out[n] = NULL;
}

#define BIT(x) (1u << (x))

/* The inputs op takes on this model: required ones in *req. */
static unsigned op_inputs(const gm_model_info *in, gm_op op, unsigned *req) {
    unsigned cond = (in->num_classes ? BIT(IN_LABEL) : 0) | (in->cat_dim ? BIT(IN_CAT) : 0);
    unsigned code = in->code_dim ? BIT(IN_CODE) : 0;
    *req = 0;
    switch (op) {
    case GM_OP_SAMPLE:
        return BIT(IN_N) | BIT(IN_SEED) | cond | code;
    case GM_OP_LOGP:
        *req = BIT(IN_IMAGES);
        return BIT(IN_IMAGES) | (in->exact_logp ? 0 : BIT(IN_SEED));
    case GM_OP_ENCODE:
    case GM_OP_DISCRIMINATE:
    case GM_OP_RECONSTRUCT:
        *req = BIT(IN_IMAGES);
        return BIT(IN_IMAGES);
    case GM_OP_DECODE: /* an AAE's classes are its prior's: its decoder takes no label */
        *req = BIT(IN_LATENTS) | (in->mixture_prior ? cond & ~BIT(IN_LABEL) : cond) | code;
        return *req;
    case GM_OP_TRANSLATE: /* a multi-domain translator's label is the target class */
        *req = BIT(IN_IMAGES) | cond;
        return *req;
    default:
        return 0;
    }
}

/* The outputs op gives on this model; k decides whether se exists (a
 * one-sample estimate has no standard error). */
static unsigned op_outputs(const gm_model_info *in, gm_op op, long k) {
    switch (op) {
    case GM_OP_SAMPLE:
        return BIT(GM_OIP_OUT_IMAGES) | (in->family == GM_FAMILY_NADE ? BIT(GM_OIP_OUT_LOGP) : 0) |
               (in->num_classes ? BIT(GM_OIP_OUT_LABEL) : 0);
    case GM_OP_DECODE:
    case GM_OP_RECONSTRUCT:
        return BIT(GM_OIP_OUT_IMAGES);
    case GM_OP_TRANSLATE:
        return BIT(GM_OIP_OUT_IMAGES) | (in->num_classes ? BIT(GM_OIP_OUT_LABEL) : 0);
    case GM_OP_LOGP:
        return BIT(GM_OIP_OUT_LOGP) | BIT(GM_OIP_OUT_BITS_PER_DIM) |
               (in->exact_logp ? 0 : BIT(GM_OIP_OUT_ELBO) | (k > 1 ? BIT(GM_OIP_OUT_SE) : 0));
    case GM_OP_ENCODE:
        return BIT(GM_OIP_OUT_Z) | (in->family == GM_FAMILY_VAE ? BIT(GM_OIP_OUT_LOGVAR) : 0) |
               (in->mixture_prior ? BIT(GM_OIP_OUT_COMPONENT_PROBS) : 0);
    case GM_OP_DISCRIMINATE:
        return BIT(GM_OIP_OUT_LOGIT) | BIT(GM_OIP_OUT_PROBABILITY) | BIT(GM_OIP_OUT_REALNESS);
    default:
        return 0;
    }
}

static bool op_available(const gm_model_info *in, const gm_oip_limits *lim, gm_op op) {
    return in->supports[op] && lim->serves[op];
}

/* The per-row shape of an input ([H, W, C] for images), into dims; returns
 * its rank. */
static int row_shape(const gm_model_info *in, in_name k, int64_t dims[3]) {
    switch (k) {
    case IN_IMAGES:
        dims[0] = in->height, dims[1] = in->width, dims[2] = in->channels;
        return 3;
    case IN_LATENTS:
        dims[0] = in->latent_dim;
        return 1;
    case IN_CODE:
        dims[0] = in->code_dim;
        return 1;
    default:
        return 0;
    }
}

static int output_shape(const gm_model_info *in, gm_oip_output o, int64_t n, int64_t dims[4]) {
    dims[0] = n;
    switch (o) {
    case GM_OIP_OUT_IMAGES:
        dims[1] = in->height, dims[2] = in->width, dims[3] = in->channels;
        return 4;
    case GM_OIP_OUT_Z:
    case GM_OIP_OUT_LOGVAR:
        dims[1] = in->encode_dim;
        return 2;
    case GM_OIP_OUT_COMPONENT_PROBS:
        dims[1] = in->num_classes;
        return 2;
    default:
        return 1;
    }
}

static void shape_text(const uint64_t *shape, int ndim, char *out, size_t cap) {
    size_t o = (size_t)snprintf(out, cap, "[");
    for (int d = 0; d < ndim && o < cap; d++)
        o += (size_t)snprintf(out + o, cap - o, "%s%" PRIu64, d ? ", " : "", shape[d]);
    if (o < cap) snprintf(out + o, cap - o, "]");
}

/* ---- reading elements ---- */

static double elem_real(const tensor *t, uint64_t i) {
    if (t->leaves) return json_number_value(t->leaves[i]);
    const uint8_t *p = t->raw + i * DTYPES[t->dt].size;
    switch (t->dt) {
    case DT_FP32: {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    case DT_FP64: {
        double d;
        memcpy(&d, p, 8);
        return d;
    }
    case DT_UINT8:
        return *p;
    default:
        return NAN; /* not an accepted type of a real input */
    }
}

/* An integer element: *v, and *u as unsigned (a UINT64 past 2^63 - 1 has
 * *v = -1). False when a JSON element is not an integer its datatype holds. */
static bool elem_int(const tensor *t, uint64_t i, int64_t *v, uint64_t *u) {
    if (t->leaves) {
        if (!json_is_integer(t->leaves[i])) return false;
        *v = json_integer_value(t->leaves[i]);
        *u = (uint64_t)*v;
        if (t->dt == DT_INT32) return *v >= INT32_MIN && *v <= INT32_MAX;
        return t->dt != DT_UINT64 || *v >= 0;
    }
    const uint8_t *p = t->raw + i * DTYPES[t->dt].size;
    if (t->dt == DT_INT32) {
        int32_t x;
        memcpy(&x, p, 4);
        *v = x;
    } else if (t->dt == DT_INT64) memcpy(v, p, 8);
    else memcpy(u, p, 8), *v = *u > INT64_MAX ? -1 : (int64_t)*u;
    if (t->dt != DT_UINT64) *u = (uint64_t)*v;
    return true;
}

/* ---- binding ---- */

typedef struct {
    const gm_oip_request *r;
    const gm_model_info *in;
    const tensor *given[IN_COUNT];
    gm_error_kind *kind;
    char *err;
} binder;

/* Checks an input's datatype and shape: rows x the model's row shape, with
 * rows from {n, 1} (broadcast) when n > 0, or any (the request's n) when
 * n == 0. */
static bool check_tensor(binder *b, in_name k, uint64_t n, bool broadcast, bool scalar) {
    const tensor *t = b->given[k];
    const gm_model_info *in = b->in;
    gm_error_kind *kind = b->kind;
    char *err = b->err, shape[160], want[160];
    bool dt_ok = false;
    for (int d = 0; d < INPUTS[k].n_dts; d++) dt_ok |= t->dt == INPUTS[k].dts[d];
    if (!dt_ok) {
        char list[64] = "";
        for (int d = 0; d < INPUTS[k].n_dts; d++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", d ? ", " : "",
                     DTYPES[INPUTS[k].dts[d]].name);
        return fail(GM_E_BAD_REQUEST, "input \"%s\" has datatype %s; it takes %s", t->name, DTYPES[t->dt].name, list);
    }
    int64_t row[3];
    int rank = scalar ? 0 : row_shape(in, k, row);
    bool ok = t->ndim == rank + 1 &&
              (scalar ? t->shape[0] == 1 : n == 0 || t->shape[0] == n || (broadcast && t->shape[0] == 1));
    for (int d = 0; ok && d < rank; d++) ok = t->shape[d + 1] == (uint64_t)row[d];
    if (ok) return true;
    shape_text(t->shape, t->ndim, shape, sizeof shape);
    size_t o = (size_t)snprintf(want, sizeof want, "[%s", scalar ? "1" : n == 0 ? "n" : "");
    if (!scalar && n) o += (size_t)snprintf(want + o, sizeof want - o, broadcast ? "%" PRIu64 " or 1" : "%" PRIu64, n);
    for (int d = 0; d < rank; d++) o += (size_t)snprintf(want + o, sizeof want - o, ", %" PRId64, row[d]);
    snprintf(want + o, sizeof want - o, "]");
    return fail(GM_E_BAD_REQUEST, "input \"%s\" has shape %s; model takes %s", t->name, shape, want);
}

/* A JSON array of the tensor's reals, rows of width w from element `from`;
 * the reals must be finite, UINT8 ones become v / 255 (as a PNG's). */
static json_t *reals(binder *b, const tensor *t, uint64_t from, uint64_t w) {
    gm_error_kind *kind = b->kind;
    char *err = b->err;
    json_t *a = json_array();
    for (uint64_t j = 0; a && j < w; j++) {
        double x = elem_real(t, from + j);
        if (t->dt == DT_UINT8 && t->leaves && !(json_is_integer(t->leaves[from + j]) && x >= 0 && x <= 255)) {
            json_decref(a);
            (void)fail(GM_E_BAD_REQUEST,
                       "input \"%s\": element %" PRIu64 " is %g; UINT8 elements are integers 0 to 255", t->name,
                       from + j, x);
            return NULL;
        }
        float f = t->dt == DT_UINT8 ? (float)x / 255.0f : (float)x;
        if (!isfinite(f)) {
            json_decref(a);
            (void)fail(GM_E_BAD_REQUEST,
                       "input \"%s\": element %" PRIu64 " is %g; elements must be finite numbers (as 32-bit floats)",
                       t->name, from + j, x);
            return NULL;
        }
        if (json_array_append_new(a, json_real(f))) {
            json_decref(a);
            (void)fail(GM_E_INTERNAL, "out of memory");
            return NULL;
        }
    }
    if (!a) (void)fail(GM_E_INTERNAL, "out of memory");
    return a;
}

/* rows x w reals as an array of rows; one row alone (rows == 1, flat)
 * stays flat: the native form of one code for every latent. */
static bool put_rows(binder *b, json_t *params, const char *key, in_name k, bool flat) {
    const tensor *t = b->given[k];
    uint64_t rows = t->shape[0], w = rows ? t->count / rows : 0;
    json_t *all = flat ? reals(b, t, 0, w) : json_array();
    for (uint64_t i = 0; !flat && all && i < rows; i++) {
        json_t *row = reals(b, t, i * w, w);
        if (!row) {
            json_decref(all);
            return false;
        }
        json_array_append_new(all, row);
    }
    if (!all) return false;
    if (k == IN_IMAGES) { /* the native form of an image: {"pixels": [...]} */
        json_t *images = json_array();
        size_t i;
        json_t *px;
        json_array_foreach(all, i, px) json_array_append_new(images, json_pack("{s:O}", "pixels", px));
        json_decref(all);
        all = images;
    }
    json_object_set_new(params, key, all);
    return true;
}

/* Integers (label, cat, seed, n): one as a number, or an array of all. */
static bool put_ints(binder *b, json_t *params, const char *key, in_name k, bool array) {
    const tensor *t = b->given[k];
    gm_error_kind *kind = b->kind;
    char *err = b->err;
    json_t *a = json_array();
    for (uint64_t i = 0; a && i < t->count; i++) {
        int64_t v;
        uint64_t u;
        if (!elem_int(t, i, &v, &u)) {
            json_decref(a);
            return fail(GM_E_BAD_REQUEST, "input \"%s\": element %" PRIu64 " is not an integer that %s holds", t->name,
                        i, DTYPES[t->dt].name);
        }
        if (k == IN_SEED && v < 0 && t->dt != DT_UINT64) {
            json_decref(a);
            return fail(GM_E_BAD_REQUEST, "input \"seed\" must be from 0 to 18446744073709551615");
        }
        char text[24];
        snprintf(text, sizeof text, "%" PRIu64, u);
        /* seeds past 2^63 - 1 travel as strings, as on /v1 */
        json_array_append_new(a, v < 0 && k == IN_SEED ? json_string(text) : json_integer(v));
    }
    if (!a) return fail(GM_E_INTERNAL, "out of memory");
    json_object_set_new(params, key, array ? a : json_incref(json_array_get(a, 0)));
    if (!array) json_decref(a);
    return true;
}

/* The operation the inputs and the requested outputs select. */
static bool choose_op(binder *b, const gm_oip_limits *lim, gm_op *op) {
    const gm_oip_request *r = b->r;
    gm_error_kind *kind = b->kind;
    char *err = b->err;
    if (b->given[IN_IMAGES] && b->given[IN_LATENTS])
        return fail(GM_E_BAD_REQUEST,
                    "send images (for logp, encode, discriminate, reconstruct or translate) or latents (for decode), "
                    "not both");
    if (b->given[IN_LATENTS]) return *op = GM_OP_DECODE, true;
    if (!b->given[IN_IMAGES]) return *op = GM_OP_SAMPLE, true;
    static const gm_op IMAGE_OPS[] = {GM_OP_LOGP, GM_OP_ENCODE, GM_OP_DISCRIMINATE, GM_OP_RECONSTRUCT, GM_OP_TRANSLATE};
    enum { N_IMAGE_OPS = sizeof IMAGE_OPS / sizeof IMAGE_OPS[0] };
    int chosen = -1;
    for (int i = 0; i < r->n_outputs; i++) {
        int owner = -1;
        /* a translator's outputs are translate's; no other model's are */
        bool translator = op_available(b->in, lim, GM_OP_TRANSLATE);
        for (int j = 0; j < N_IMAGE_OPS && owner < 0; j++)
            for (int o = 0; o < GM_OIP_OUT_COUNT; o++)
                if (op_outputs(b->in, IMAGE_OPS[j], 2) & BIT(o) && !strcmp(OUTPUTS[o].name, r->outputs[i].name) &&
                    (IMAGE_OPS[j] == GM_OP_TRANSLATE) == translator)
                    owner = j;
        if (owner < 0) continue; /* not an output of images: bind names it */
        if (chosen >= 0 && chosen != owner)
            return fail(GM_E_BAD_REQUEST,
                        "outputs \"%s\" and \"%s\" come from different operations (%s and %s); ask for one "
                        "operation's outputs per request",
                        r->outputs[0].name, r->outputs[i].name, gm_op_name(IMAGE_OPS[chosen]),
                        gm_op_name(IMAGE_OPS[owner]));
        chosen = owner;
    }
    for (int j = 0; chosen < 0 && j < N_IMAGE_OPS; j++)
        if (op_available(b->in, lim, IMAGE_OPS[j])) chosen = j;
    if (chosen < 0)
        return fail(GM_E_BAD_REQUEST,
                    "this model takes no images (it has no logp, encode, discriminate, reconstruct or translate)");
    *op = IMAGE_OPS[chosen];
    return true;
}

static bool bind_outputs(binder *b, gm_op op, long k, gm_oip_plan *plan) {
    const gm_oip_request *r = b->r;
    gm_error_kind *kind = b->kind;
    char *err = b->err;
    unsigned have = op_outputs(b->in, op, k);
    if (r->n_outputs == 0)
        for (int o = 0; o < GM_OIP_OUT_COUNT; o++)
            if (have & BIT(o)) plan->binary[plan->n_outputs] = r->binary_output, plan->outputs[plan->n_outputs++] = o;
    for (int i = 0; i < r->n_outputs; i++) {
        int found = -1;
        for (int o = 0; o < GM_OIP_OUT_COUNT && found < 0; o++)
            if (have & BIT(o) && !strcmp(OUTPUTS[o].name, r->outputs[i].name)) found = o;
        if (found < 0) {
            char list[160] = "";
            for (int o = 0; o < GM_OIP_OUT_COUNT; o++)
                if (have & BIT(o))
                    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "",
                             OUTPUTS[o].name);
            return fail(GM_E_BAD_REQUEST, "output \"%.64s\" is not one of %s on this model: it gives %s%s",
                        r->outputs[i].name, gm_op_name(op), list,
                        !strcmp(r->outputs[i].name, "se") && op == GM_OP_LOGP ? " (se needs k of 2 or more)" : "");
        }
        plan->outputs[plan->n_outputs] = (gm_oip_output)found;
        plan->binary[plan->n_outputs++] = r->outputs[i].binary >= 0 ? r->outputs[i].binary : r->binary_output;
    }
    return true;
}

static bool bind_params(binder *b, gm_op op, json_t *params, long *k) {
    const gm_oip_request *r = b->r;
    gm_error_kind *kind = b->kind;
    char *err = b->err;
    const char *key, *names[4];
    json_t *v;
    op_params(b->in, op, names);
    json_object_foreach(r->params, key, v) {
        if (!strcmp(key, "binary_data_output") || !strcmp(key, "content_type")) continue;
        bool ok = false;
        for (int i = 0; names[i] && !ok; i++) ok = !strcmp(key, names[i]);
        if (!ok) {
            char list[96] = "";
            for (int i = 0; names[i]; i++) snprintf(list + strlen(list), sizeof list - strlen(list), "%s, ", names[i]);
            return fail(GM_E_BAD_REQUEST,
                        "unknown parameter \"%.64s\" for %s on this model; it takes %sbinary_data_output", key,
                        gm_op_name(op), list);
        }
        json_object_set(params, key, v);
    }
    json_t *kv = json_object_get(params, "k");
    if (json_is_integer(kv)) *k = (long)json_integer_value(kv);
    return true;
}

bool gm_oip_bind(const gm_oip_request *r, const gm_model_info *in, const gm_oip_limits *lim, gm_oip_plan *plan,
                 gm_error_kind *kind, char err[GM_ERR_LEN]) {
    binder b = {.r = r, .in = in, .kind = kind, .err = err};
    *plan = (gm_oip_plan){0};
    for (int i = 0; i < r->n_inputs; i++) {
        int k = -1;
        for (int j = 0; j < IN_COUNT && k < 0; j++)
            if (!strcmp(r->inputs[i].name, INPUTS[j].name)) k = j;
        if (k < 0)
            return fail(GM_E_BAD_REQUEST,
                        "unknown input \"%s\"; this server's inputs are images, latents, label, code, cat, seed and n "
                        "(GET /v2/models/<name> lists the model's)",
                        r->inputs[i].name);
        b.given[k] = &r->inputs[i];
    }
    gm_op op;
    if (!choose_op(&b, lim, &op)) return false;
    if (!op_available(in, lim, op))
        return fail(GM_E_BAD_REQUEST, "this model cannot %s (its operations are listed by GET /v2/models/<name>)",
                    gm_op_name(op));
    unsigned req, allowed = op_inputs(in, op, &req);
    for (int k = 0; k < IN_COUNT; k++) {
        if (b.given[k] && !(allowed & BIT(k)))
            return fail(GM_E_BAD_REQUEST, "input \"%s\" is not taken by %s on this model", INPUTS[k].name,
                        gm_op_name(op));
        if (!b.given[k] && req & BIT(k))
            return fail(GM_E_BAD_REQUEST, "%s on this model needs the input \"%s\"", gm_op_name(op), INPUTS[k].name);
    }
    json_t *params = json_object();
    if (!params) return fail(GM_E_INTERNAL, "out of memory");
    plan->params = params;
    plan->op = op;
    long k = lim->default_k;
    const tensor *rows_from = b.given[IN_IMAGES] ? b.given[IN_IMAGES] : b.given[IN_LATENTS];
    uint64_t n = 0;
    if (rows_from) {
        in_name rows_kind = b.given[IN_IMAGES] ? IN_IMAGES : IN_LATENTS;
        if (!check_tensor(&b, rows_kind, 0, false, false)) return false;
        n = rows_from->shape[0];
        if (n < 1 || n > (uint64_t)lim->max_images)
            return fail(GM_E_BAD_REQUEST,
                        "input \"%s\" has %" PRIu64 " rows; send 1 to %ld (the server's max_images setting)",
                        rows_from->name, n, lim->max_images);
        if (!put_rows(&b, params, rows_kind == IN_IMAGES ? "images" : "latents", rows_kind, false)) return false;
    }
    bool decode = op == GM_OP_DECODE || op == GM_OP_TRANSLATE; /* a label per row (or one for all) */
    if (b.given[IN_LABEL] &&
        (!check_tensor(&b, IN_LABEL, n, decode, !decode) ||
         !put_ints(&b, params, "label", IN_LABEL, decode && b.given[IN_LABEL]->shape[0] == n && n > 1)))
        return false;
    if (b.given[IN_CAT] && (!check_tensor(&b, IN_CAT, n, decode, !decode) ||
                            !put_ints(&b, params, "cat", IN_CAT, decode && b.given[IN_CAT]->shape[0] == n && n > 1)))
        return false;
    if (b.given[IN_CODE] && (!check_tensor(&b, IN_CODE, decode ? n : 1, decode, false) ||
                             !put_rows(&b, params, "code", IN_CODE, b.given[IN_CODE]->shape[0] == 1)))
        return false;
    if (b.given[IN_SEED] &&
        (!check_tensor(&b, IN_SEED, 1, false, true) || !put_ints(&b, params, "seed", IN_SEED, false)))
        return false;
    if (b.given[IN_N] && (!check_tensor(&b, IN_N, 1, false, true) || !put_ints(&b, params, "n", IN_N, false)))
        return false;
    if (!bind_params(&b, op, params, &k) || !bind_outputs(&b, op, k, plan)) return false;
    if (r->id && !(plan->id = strdup(r->id))) return fail(GM_E_INTERNAL, "out of memory");
    return true;
}

void gm_oip_plan_release(gm_oip_plan *plan) {
    json_decref(plan->params);
    free(plan->id);
    plan->params = NULL;
    plan->id = NULL;
}

/* ---- the reply ---- */

typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} text;

static void grow(text *t, size_t more) {
    if (t->oom || t->len + more <= t->cap) return;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + more) cap *= 2;
    char *s = realloc(t->s, cap);
    if (!s) {
        t->oom = true;
        return;
    }
    t->s = s;
    t->cap = cap;
}

static void put(text *t, const char *fmt, ...) GM_PRINTF(2, 3);
static void put(text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    grow(t, (size_t)n + 1);
    if (t->oom) return;
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* A JSON string, escaped by jansson (valid UTF-8 in, as jansson parsed it). */
static void put_string(text *t, const char *s) {
    json_t *v = json_string(s);
    char *q = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
    if (q) put(t, "%s", q);
    else t->oom = true;
    free(q);
    json_decref(v);
}

static void put_bytes(text *t, const void *p, size_t n) {
    if (n == 0) return;
    grow(t, n);
    if (t->oom) return;
    memcpy(t->s + t->len, p, n);
    t->len += n;
}

/* Element i of output o as a double (reals) or int64 (label). */
static double out_real(const gm_oip_results *res, const gm_model_info *in, gm_oip_output o, size_t i) {
    switch (o) {
    case GM_OIP_OUT_IMAGES:
        return res->pixels[i];
    case GM_OIP_OUT_LOGP:
        return res->lp ? res->lp[i].logp : res->logp[i];
    case GM_OIP_OUT_BITS_PER_DIM:
        return -res->lp[i].logp / (in->dim * M_LN2);
    case GM_OIP_OUT_ELBO:
        return res->lp[i].elbo;
    case GM_OIP_OUT_SE:
        return res->lp[i].se;
    case GM_OIP_OUT_Z:
        return res->z[i];
    case GM_OIP_OUT_LOGVAR:
        return res->logvar[i];
    case GM_OIP_OUT_COMPONENT_PROBS:
        return res->component_probs[i];
    case GM_OIP_OUT_LOGIT:
        return res->logits[i];
    case GM_OIP_OUT_PROBABILITY: /* D(x) = sigmoid(logit) */
        return 1.0 / (1.0 + exp(-(double)res->logits[i]));
    case GM_OIP_OUT_REALNESS: { /* log D(x) = -softplus(-logit), without overflow */
        double l = res->logits[i];
        return -(log1p(exp(-fabs(l))) + (l < 0 ? -l : 0));
    }
    default:
        return res->labels[i];
    }
}

/* FP32 values as /v1 writes them (floatfmt.h): the fewest digits that read
 * back as the same float, without printf's cost a number. */
static void put_element(text *t, dtype dt, double x, bool first) {
    char s[GM_FLOAT_CHARS + 32];
    int n = 0;
    if (!first) s[n++] = ',';
    if (dt == DT_INT64) n += snprintf(s + n, sizeof s - (size_t)n, "%" PRId64, (int64_t)x);
    else if (!isfinite(x)) n += snprintf(s + n, sizeof s - (size_t)n, "null"); /* JSON has no NaN or infinity */
    else if (dt == DT_FP32) n += gm_float_shortest((float)x, s + n);
    else n += snprintf(s + n, sizeof s - (size_t)n, "%.17g", x);
    put_bytes(t, s, (size_t)n);
}

static void put_binary(text *t, dtype dt, double x) {
    if (dt == DT_FP32) {
        float f = (float)x;
        put_bytes(t, &f, 4);
    } else if (dt == DT_FP64) put_bytes(t, &x, 8);
    else {
        int64_t v = (int64_t)x;
        put_bytes(t, &v, 8);
    }
}

bool gm_oip_respond(const gm_oip_plan *plan, const char *model_name, const gm_model_info *in, const gm_oip_results *res,
                    uint8_t **body, size_t *len, size_t *json_len) {
    text t = {0}, bin = {0};
    put(&t, "{\"model_name\":");
    put_string(&t, model_name);
    put(&t, ",\"model_version\":\"" GM_OIP_VERSION "\"");
    if (plan->id) {
        put(&t, ",\"id\":");
        put_string(&t, plan->id);
    }
    put(&t, ",\"parameters\":{\"operation\":\"%s\"", gm_op_name(plan->op));
    if (plan->op == GM_OP_LOGP) {
        put(&t, ",\"method\":\"%s\"", in->exact_logp ? "exact" : "importance_sampling");
        if (!in->exact_logp) put(&t, ",\"k\":%d", res->k);
    }
    if (res->has_seed) {
        /* a seed past 2^53 would lose digits in a JavaScript number: a string then */
        if (res->seed < (UINT64_C(1) << 53)) put(&t, ",\"seed\":%" PRIu64, res->seed);
        else put(&t, ",\"seed\":\"%" PRIu64 "\"", res->seed);
    }
    put(&t, "},\"outputs\":[");
    for (int i = 0; i < plan->n_outputs; i++) {
        gm_oip_output o = plan->outputs[i];
        dtype dt = OUTPUTS[o].dt;
        int64_t dims[4];
        int rank = output_shape(in, o, res->n, dims);
        size_t count = 1;
        put(&t, "%s{\"name\":\"%s\",\"datatype\":\"%s\",\"shape\":[", i ? "," : "", OUTPUTS[o].name, DTYPES[dt].name);
        for (int d = 0; d < rank; d++) put(&t, "%s%" PRId64, d ? "," : "", dims[d]), count *= (size_t)dims[d];
        if (plan->binary[i]) {
            put(&t, "],\"parameters\":{\"binary_data_size\":%zu}}", count * DTYPES[dt].size);
            for (size_t e = 0; e < count; e++) put_binary(&bin, dt, out_real(res, in, o, e));
            continue;
        }
        put(&t, "],\"data\":[");
        for (size_t e = 0; e < count; e++) put_element(&t, dt, out_real(res, in, o, e), e == 0);
        put(&t, "]}");
    }
    put(&t, "]}");
    *json_len = t.len;
    put_bytes(&t, bin.s, bin.len);
    free(bin.s);
    if (t.oom || bin.oom) {
        free(t.s);
        return false;
    }
    *body = (uint8_t *)t.s;
    *len = t.len;
    return true;
}

/* ---- metadata ---- */

static json_t *tensor_meta(const char *name, dtype dt, const int64_t *dims, int rank) {
    json_t *shape = json_array();
    for (int d = 0; d < rank; d++) json_array_append_new(shape, json_integer(dims[d]));
    return json_pack("{s:s,s:s,s:o}", "name", name, "datatype", DTYPES[dt].name, "shape", shape);
}

/* An input's shape in op's requests: rows of the model's row shape, -1
 * (any number) where op takes one per image, 1 where it takes one for all
 * (sample's label, code and cat; seed and n). */
static int input_shape(const gm_model_info *in, gm_op op, in_name k, int64_t dims[4]) {
    int64_t row[3];
    int rank = row_shape(in, k, row);
    dims[0] = k == IN_SEED || k == IN_N || op == GM_OP_SAMPLE ? 1 : -1;
    memcpy(dims + 1, row, (size_t)rank * sizeof *row);
    return rank + 1;
}

/* The inputs in mask, with their shapes in op's requests, or the outputs
 * in mask, as metadata tensors. */
static json_t *tensors_of(const gm_model_info *in, gm_op op, unsigned mask, bool inputs) {
    json_t *a = json_array();
    for (int i = 0; i < (inputs ? IN_COUNT : GM_OIP_OUT_COUNT); i++) {
        if (!(mask & BIT(i))) continue;
        int64_t dims[4];
        int rank = inputs ? input_shape(in, op, (in_name)i, dims) : output_shape(in, (gm_oip_output)i, -1, dims);
        json_array_append_new(a, tensor_meta(inputs ? INPUTS[i].name : OUTPUTS[i].name,
                                             inputs ? INPUTS[i].dts[0] : OUTPUTS[i].dt, dims, rank));
    }
    return a;
}

/* The operation the top-level inputs and outputs of the metadata describe:
 * what runs when a client sends just those inputs. */
static gm_op default_op(const gm_model_info *in, const gm_oip_limits *lim) {
    static const gm_op ORDER[] = {GM_OP_LOGP,   GM_OP_DECODE,       GM_OP_SAMPLE,
                                  GM_OP_ENCODE, GM_OP_DISCRIMINATE, GM_OP_TRANSLATE};
    for (size_t i = 0; i < sizeof ORDER / sizeof ORDER[0]; i++)
        if (op_available(in, lim, ORDER[i])) return ORDER[i];
    return GM_OP_SAMPLE;
}

json_t *gm_oip_model_metadata(const char *model_name, const gm_model_info *in, const gm_oip_limits *lim) {
    json_t *ops = json_array();
    for (int op = 0; op < GM_OP_COUNT; op++) {
        if (!op_available(in, lim, (gm_op)op)) continue;
        unsigned req, take = op_inputs(in, (gm_op)op, &req), give = op_outputs(in, (gm_op)op, lim->default_k);
        const char *names[4];
        op_params(in, (gm_op)op, names);
        json_t *params = json_array();
        for (int i = 0; names[i]; i++) json_array_append_new(params, json_string(names[i]));
        json_array_append_new(ops, json_pack("{s:s,s:o,s:o,s:o,s:o}", "name", gm_op_name((gm_op)op), "inputs",
                                             tensors_of(in, (gm_op)op, req, true), "optional_inputs",
                                             tensors_of(in, (gm_op)op, take & ~req, true), "outputs",
                                             tensors_of(in, (gm_op)op, give, false), "parameters", params));
    }
    gm_op def = default_op(in, lim);
    unsigned req;
    op_inputs(in, def, &req);
    return json_pack("{s:s,s:[s],s:s,s:o,s:o,s:s,s:o}", "name", model_name, "versions", GM_OIP_VERSION, "platform",
                     "gmserve_safetensors", "inputs", tensors_of(in, def, req, true), "outputs",
                     tensors_of(in, def, op_outputs(in, def, lim->default_k), false), "default_operation",
                     gm_op_name(def), "operations", ops);
}

json_t *gm_oip_server_metadata(const char *version) {
    return json_pack("{s:s,s:s,s:[s]}", "name", "gmserve", "version", version, "extensions", "binary_tensor_data");
}

size_t gm_oip_max_values(const gm_model_info *in, long max_images) {
    enum { STRUCTURE_VALUES = 256 }; /* names, shapes, parameters, outputs */
    size_t row = (size_t)in->dim;
    size_t decode_row = (size_t)in->latent_dim + (size_t)in->code_dim + 2; /* z, code, label, cat */
    if (decode_row > row) row = decode_row;
    /* three times: data nested in its shape's form adds a comma and a
     * bracket per value of a 1-channel [n, H, W, 1] image, and its rows'
     * brackets and commas */
    return 3 * row * (size_t)max_images + STRUCTURE_VALUES;
}
