/*
 * ops.c - the model operations of the API: parameters and inputs in, a
 * gm_job out; the job's outputs in, a PNG or JSON reply out (see api.h).
 *
 * Parameters come as JSON values whether they arrived in a query string
 * (strings) or a JSON body (numbers or strings), so one set of getters
 * serves GET and POST. Malformed values are 400, well-formed values out of
 * range are 422 naming the range and the setting that bounds it; a
 * parameter the operation does not take is 400 listing those it does, so
 * that a typo is never silently ignored. Whatever a message echoes from the
 * request goes through gm_quote, so the reply stays valid UTF-8.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "api.h"
#include "base64.h"
#include "cost.h"
#include "etag.h"
#include "npy.h"
#include "pngio.h"

enum { MAX_OUTPUT_PIXELS = 1 << 26 }; /* one reply's pixels after scaling */
#define MAX_TEMPERATURE 100.0f
#define MAX_LATENT_ABS 1e4

static const char *const ACCEPTED[GM_OP_COUNT] = {
    [GM_OP_SAMPLE] = "n, seed, temperature, label, truncation, code, mode, format, scale",
    [GM_OP_LOGP] = "images, k, seed, format",
    [GM_OP_ENCODE] = "images, format",
    [GM_OP_DECODE] = "latents, label, code, format, scale",
};

/* Fills the error reply and yields false, for `return fail(c, 422, ...)`. */
#define fail(c, status, ...) (gm_reply_error(&(c)->reply, (status), __VA_ARGS__), false)

/* Whether key is one of the names in the op's ", "-separated list. */
static bool accepted(gm_op op, const char *key) {
    size_t n = strlen(key);
    for (const char *p = ACCEPTED[op]; *p; p += strspn(p, ", ")) {
        size_t len = strcspn(p, ",");
        if (len == n && n > 0 && !memcmp(p, key, n)) return true;
        p += len;
    }
    return false;
}

/* An integer parameter in [lo, hi]; limit names the setting behind hi. */
static bool get_long(gm_call *c, json_t *p, const char *key, long dflt, long lo, long hi, const char *limit,
                     long *out) {
    json_t *v = json_object_get(p, key);
    char q[GM_QUOTE_LEN];
    *out = dflt;
    if (!v) return true;
    long long x;
    if (json_is_integer(v)) x = json_integer_value(v);
    else if (json_is_string(v)) {
        char *end;
        errno = 0;
        x = strtoll(json_string_value(v), &end, 10);
        if (errno || end == json_string_value(v) || *end)
            return fail(c, 400, "%s = %s is not an integer", key,
                        gm_quote(q, json_string_value(v), json_string_length(v)));
    } else return fail(c, 400, "%s must be an integer", key);
    if (x < lo || x > hi)
        return fail(c, 422, "%s = %lld is out of range: %ld to %ld%s%s%s", key, x, lo, hi, limit ? " (the server's " : "",
                    limit ? limit : "", limit ? " setting)" : "");
    *out = (long)x;
    return true;
}

/* A real parameter in (lo, hi] (lo_open) or [lo, hi]. The range is checked
 * on the float the model computes with, so a value such as 1e-320 that
 * passes "> 0" as a double but rounds to 0 as a float is refused. */
static bool get_float(gm_call *c, json_t *p, const char *key, float dflt, float lo, bool lo_open, float hi,
                      float *out) {
    json_t *v = json_object_get(p, key);
    char q[GM_QUOTE_LEN];
    *out = dflt;
    if (!v) return true;
    double x;
    if (json_is_number(v)) x = json_number_value(v);
    else if (json_is_string(v)) {
        char *end;
        x = strtod(json_string_value(v), &end);
        if (end == json_string_value(v) || *end)
            return fail(c, 400, "%s = %s is not a number", key,
                        gm_quote(q, json_string_value(v), json_string_length(v)));
    } else return fail(c, 400, "%s must be a number", key);
    float f = (float)x;
    if (!isfinite(f) || (lo_open ? f <= lo : f < lo) || f > hi)
        return fail(c, 422, "%s = %g is out of range: %s%g to %g (as a 32-bit float it is %g)", key, x,
                    lo_open ? "above " : "", lo, hi, f);
    *out = f;
    return true;
}

/* seed: a u64 as a JSON integer or a decimal string; drawn when absent. JSON
 * integers stop at 2^63 - 1; larger seeds travel as strings. */
static bool get_seed(gm_call *c, json_t *p, bool draw, uint64_t *out) {
    json_t *v = json_object_get(p, "seed");
    if (!v) {
        uint64_t s = 0;
        if (draw && getrandom(&s, sizeof s, 0) != sizeof s) s = (uint64_t)gm_now_ns();
        *out = s & ((UINT64_C(1) << 53) - 1); /* exact in a JavaScript number */
        return true;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return true;
    }
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    if (s && *s >= '0' && *s <= '9') {
        unsigned long long x = strtoull(s, &end, 10);
        if (!errno && !*end) {
            *out = x;
            return true;
        }
    }
    return fail(c, 400, "seed must be an integer from 0 to 18446744073709551615");
}

static bool get_choice(gm_call *c, json_t *p, const char *key, const char *a, const char *b, bool dflt_b,
                       bool *is_b) {
    json_t *v = json_object_get(p, key);
    *is_b = dflt_b;
    if (!v) return true;
    const char *s = json_string_value(v);
    if (s && !strcmp(s, a)) *is_b = false;
    else if (s && !strcmp(s, b)) *is_b = true;
    else return fail(c, 422, "%s must be \"%s\" or \"%s\"", key, a, b);
    return true;
}

/* A class label: an index or a class name. */
static bool parse_label(gm_call *c, const gm_model_info *in, json_t *v, int *out) {
    const char *s = json_string_value(v);
    if (s && in->class_names)
        for (int k = 0; k < in->num_classes; k++)
            if (!strcmp(s, in->class_names[k])) {
                *out = k;
                return true;
            }
    json_t *tmp = json_pack("{s:O}", "label", v);
    long x;
    bool ok = get_long(c, tmp, "label", 0, 0, in->num_classes - 1, NULL, &x);
    json_decref(tmp);
    if (ok) *out = (int)x;
    else if (s) {
        char q[GM_QUOTE_LEN];
        (void)fail(c, 422,
                   "label %s is neither a class name nor an index 0 to %d (GET /v1/models lists the classes)",
                   gm_quote(q, s, json_string_length(v)), in->num_classes - 1);
    }
    return ok;
}

static const char *model_name(const gm_call *c) { return c->srv->model_names[c->model]; }

/* One code: code_dim numbers within +-MAX_LATENT_ABS, as latents are
 * bounded; `what` names it in messages ("code", "code[3]"). */
static bool read_code(gm_call *c, const gm_model_info *in, json_t *v, const char *what, float *out) {
    if (!json_is_array(v) || json_array_size(v) != (size_t)in->code_dim)
        return fail(c, 422, "%s must be an array of %d numbers (model \"%s\" has code_dim %d)", what, in->code_dim,
                    model_name(c), in->code_dim);
    for (int j = 0; j < in->code_dim; j++) {
        json_t *x = json_array_get(v, (size_t)j);
        if (!json_is_number(x) || !(fabs(json_number_value(x)) <= MAX_LATENT_ABS))
            return fail(c, 422, "%s[%d] must be a number within +-%g", what, j, MAX_LATENT_ABS);
        out[j] = (float)json_number_value(x);
    }
    return true;
}

/* A code parameter on a model without codes is refused, not ignored. */
static bool code_allowed(gm_call *c, const gm_model_info *in, json_t *v) {
    if (v && !in->code_dim)
        return fail(c, 422, "code: model \"%s\" has no continuous code input (code_dim 0)", model_name(c));
    return true;
}

static bool check_params(gm_call *c, gm_op op, json_t *params) {
    const char *key;
    json_t *v;
    char q[GM_QUOTE_LEN];
    json_object_foreach(params, key, v) {
        if (!accepted(op, key))
            return fail(c, 400, "unknown parameter %s for %s; it takes: %s", gm_quote(q, key, strlen(key)),
                        gm_op_name(op), ACCEPTED[op]);
    }
    return true;
}

static bool needs(gm_call *c, const gm_model_info *in, gm_op op) {
    if (in->supports[op]) return true;
    static const char *const WHY[GM_OP_COUNT] = {
        [GM_OP_LOGP] = "a GAN defines no likelihood; use a nade or vae model",
        [GM_OP_ENCODE] = "this file has no encoder (gm.encoder)",
        [GM_OP_DECODE] = "a NADE has no latent space",
    };
    return fail(c, 422, "model \"%s\" (%s) cannot %s: %s", model_name(c), gm_family_name(in->family), gm_op_name(op),
                WHY[op] ? WHY[op] : "the file lacks it");
}

static bool check_output_size(gm_call *c, const gm_model_info *in, long n) {
    double pixels = (double)n * in->dim * c->scale * c->scale;
    if (pixels > MAX_OUTPUT_PIXELS)
        return fail(c, 422, "the reply would hold %.0f pixels (n x image x scale^2), over %d; lower n or scale",
                    pixels, MAX_OUTPUT_PIXELS);
    return true;
}

/* The reply format (formats.h): the format parameter, else Accept, else
 * dflt, among the formats the operation has. */
static bool choose_format(gm_call *c, json_t *p, const gm_http_request *req) {
    gm_op op = c->job.op;
    unsigned allowed = gm_formats_of(op);
    gm_format dflt = gm_format_default(op, strcmp(req->method, "POST") != 0);
    json_t *v = json_object_get(p, "format");
    char err[GM_ERR_LEN];
    if (v && !json_is_string(v)) return fail(c, 400, "format must be a string");
    if (gm_format_choose(v ? json_string_value(v) : NULL, req->accept, allowed, dflt, &c->format, err))
        return fail(c, 422, "%s", err);
    c->npy_type = gm_format_npy_type(req->accept);
    return true;
}

/* Images out: the format, and scale, which enlarges PNGs only (a float
 * format returns the model's own pixels). */
static bool prepare_output_format(gm_call *c, json_t *p, const gm_http_request *req) {
    long scale;
    if (!choose_format(c, p, req)) return false;
    if (!get_long(c, p, "scale", 1, 1, c->srv->cfg->max_scale, "max_scale", &scale)) return false;
    if (scale != 1 && (c->format == GM_FORMAT_PIXELS || c->format == GM_FORMAT_NPY))
        return fail(c, 422, "scale enlarges PNG images only; format %s returns the model's pixels unscaled",
                    gm_format_names[c->format]);
    c->scale = (int)scale;
    return true;
}

/* The ETag of a seeded sample (etag.h): its parameters as parsed, every
 * one of them, in name order; label is the one given, or -1 when each row
 * draws its own. */
static bool sample_etag(gm_call *c, const gm_model_info *in, int label) {
    const gm_row *r = &c->rows[0];
    size_t cap = 512 + 20 * (size_t)in->code_dim, o = 0;
    char *t = malloc(cap);
    if (!t) return fail(c, 500, "out of memory");
    o += (size_t)snprintf(t + o, cap - o, "code=");
    for (int j = 0; c->codes && j < in->code_dim; j++)
        o += (size_t)snprintf(t + o, cap - o, "%s%.9g", j ? "," : "", c->codes[j]);
    if (!c->codes) o += (size_t)snprintf(t + o, cap - o, "drawn");
    o += (size_t)snprintf(t + o, cap - o, "&format=%s%s%s&label=%d&mode=%s&n=%d&scale=%d&seed=%llu&temperature=%.9g"
                                          "&truncation=%.9g",
                          gm_format_names[c->format], c->format == GM_FORMAT_NPY ? ";" : "",
                          c->format == GM_FORMAT_NPY ? c->npy_type : "", label, r->sample_pixels ? "sample" : "mean",
                          c->job.n, c->scale, (unsigned long long)c->seed, r->temperature, r->truncation);
    gm_etag_make(in->sha256, model_name(c), gm_op_name(GM_OP_SAMPLE), t, c->reply.etag);
    free(t);
    return true;
}

static bool prepare_sample(gm_call *c, const gm_model_info *in, json_t *p, const gm_http_request *req) {
    const gm_config *cfg = c->srv->cfg;
    long n;
    float temperature, truncation;
    bool sample_pixels;
    if (!get_long(c, p, "n", 1, 1, cfg->max_n, "max_n", &n) || !get_seed(c, p, true, &c->seed) ||
        !get_float(c, p, "temperature", 1.0f, 0.0f, true, MAX_TEMPERATURE, &temperature) ||
        !prepare_output_format(c, p, req) || !check_output_size(c, in, n))
        return false;
    int label = -1;
    json_t *lv = json_object_get(p, "label");
    if (lv && !in->num_classes) return fail(c, 422, "label: model \"%s\" is not class-conditional", model_name(c));
    if (lv && !parse_label(c, in, lv, &label)) return false;
    if (json_object_get(p, "truncation") && in->family != GM_FAMILY_GAN)
        return fail(c, 422, "truncation applies to GAN models only");
    if (!get_float(c, p, "truncation", 0.0f, 0.0f, true, 100.0f, &truncation)) return false;
    if (json_object_get(p, "mode") && in->family != GM_FAMILY_VAE)
        return fail(c, 422, "mode applies to VAE models only");
    if (!get_choice(c, p, "mode", "mean", "sample", false, &sample_pixels)) return false;
    json_t *cv = json_object_get(p, "code");
    if (!code_allowed(c, in, cv)) return false;
    if (cv) { /* one code for every row; without it each row draws its own */
        if (json_is_string(cv)) { /* a query string: code=[0.5,-1] */
            /* at most code_dim values are parsed, whatever the text holds */
            size_t seps = 0;
            for (const char *t = json_string_value(cv); *t; t++) seps += *t == ',' || *t == '[' || *t == '{';
            if (seps > (size_t)in->code_dim + 1)
                return fail(c, 422, "code must be an array of %d numbers (model \"%s\" has code_dim %d)",
                            in->code_dim, model_name(c), in->code_dim);
            json_t *parsed = json_loads(json_string_value(cv), JSON_DECODE_ANY, NULL);
            if (!parsed) return fail(c, 400, "code must be a JSON array of %d numbers, e.g. code=[0.5,-1]", in->code_dim);
            json_object_set_new(p, "code", parsed);
            cv = parsed;
        }
        if (!(c->codes = malloc((size_t)in->code_dim * sizeof *c->codes))) return fail(c, 500, "out of memory");
        if (!read_code(c, in, cv, "code", c->codes)) return false;
    }

    c->rows = calloc((size_t)n, sizeof *c->rows);
    c->out = malloc((size_t)n * in->dim * sizeof *c->out);
    if (in->family == GM_FAMILY_NADE) c->logp = malloc((size_t)n * sizeof *c->logp);
    if (!c->rows || !c->out || (in->family == GM_FAMILY_NADE && !c->logp)) return fail(c, 500, "out of memory");
    for (long i = 0; i < n; i++) {
        gm_row *r = &c->rows[i];
        gm_rng_seed(&r->rng, c->seed, (uint64_t)i);
        r->temperature = temperature;
        r->truncation = truncation;
        r->sample_pixels = sample_pixels;
        r->label = label;
        r->code = c->codes;
        if (in->num_classes && label < 0) { /* a label of its own, from a stream apart from the row's */
            gm_rng pick;
            gm_rng_seed(&pick, c->seed ^ UINT64_C(0x6c6162656c5f5f5f), (uint64_t)i);
            r->label = (int)(gm_rng_next(&pick) % (uint64_t)in->num_classes);
        }
    }
    c->job.n = (int)n;
    c->job.rows = c->rows;
    c->job.out_pixels = c->out;
    c->job.out_logp = c->logp;
    bool seeded_get = json_object_get(p, "seed") && strcmp(req->method, "POST") != 0;
    return !seeded_get || sample_etag(c, in, label);
}

void gm_ops_release(gm_call *c) {
    for (long i = 0; c->png && i < c->png_count; i++) free(c->png[i]);
    free(c->png);
    free(c->png_len);
    c->png = NULL;
    c->png_len = NULL;
    c->png_count = 0;
    if (c->png_held) atomic_fetch_sub(&c->srv->png_bytes, (long long)c->png_held);
    c->png_held = 0;
}

/* The job's prepare callback, on the worker before its first piece: decodes
 * the kept PNGs into the job's pixels, or fills the 400 (malformed) or 422
 * (another size than the model's) reply that names the image. The job is
 * the one embedded in a gm_call. */
static bool decode_pngs(gm_job *job) {
    gm_call *c = (gm_call *)((char *)job - offsetof(gm_call, job));
    const gm_model_info *in = gm_model_get_info(job->model);
    char err[GM_ERR_LEN];
    bool ok = true;
    for (long i = 0; ok && i < c->png_count; i++) {
        if (!c->png[i]) continue;
        gm_png_status st = gm_png_decode(c->png[i], c->png_len[i], in->height, in->width, in->channels,
                                         c->in + (size_t)i * in->dim, err);
        ok = st == GM_PNG_OK;
        int status = st == GM_PNG_WRONG_SIZE ? 422 : 400;
        if (!ok && c->png_body) gm_reply_error(&c->reply, status, "%s", err);
        else if (!ok) gm_reply_error(&c->reply, status, "images[%ld]: %s", i, err);
    }
    gm_ops_release(c); /* the bytes are not needed any more */
    return ok;
}

/* Keeps image i's PNG bytes (malloc'd, taken over) for a worker to decode.
 * They wait in the queue, so together they are bounded like the bodies
 * being received: by max_body_memory_bytes, beyond which the request gets
 * 503 with Retry-After, as a body over the budget does. */
static bool keep_png(gm_call *c, size_t i, uint8_t *bytes, size_t len) {
    long long limit = c->srv->cfg->max_body_memory_bytes;
    if (atomic_fetch_add(&c->srv->png_bytes, (long long)len) + (long long)len > limit) {
        atomic_fetch_sub(&c->srv->png_bytes, (long long)len);
        free(bytes);
        c->reply.retry_after = 1;
        return fail(c, 503, "the server holds as many PNG bytes waiting to be decoded as it may (%lld bytes, the "
                            "max_body_memory_bytes setting); retry after 1 s", limit);
    }
    c->png_held += len;
    c->png[i] = bytes;
    c->png_len[i] = len;
    c->job.prepare = decode_pngs;
    return true;
}

/* Reads one input image, a {"png": base64} or {"pixels": [D numbers]}
 * object: pixels into out (D floats), a PNG's bytes for the worker. */
static bool read_image(gm_call *c, const gm_model_info *in, json_t *img, size_t i, float *out) {
    json_t *png = json_object_get(img, "png"), *pixels = json_object_get(img, "pixels");
    if (json_is_string(png)) {
        size_t len;
        uint8_t *bytes = gm_base64_decode(json_string_value(png), json_string_length(png), &len);
        if (!bytes) return fail(c, 400, "images[%zu].png is not base64", i);
        return keep_png(c, i, bytes, len);
    }
    if (json_is_array(pixels)) {
        if (json_array_size(pixels) != (size_t)in->dim)
            return fail(c, 422, "images[%zu].pixels has %zu values; the model takes %d (%dx%dx%d)", i,
                        json_array_size(pixels), in->dim, in->height, in->width, in->channels);
        for (int d = 0; d < in->dim; d++) {
            json_t *v = json_array_get(pixels, (size_t)d);
            double x = json_number_value(v);
            if (!json_is_number(v) || !(x >= 0 && x <= 1))
                return fail(c, 422, "images[%zu].pixels[%d] must be a number from 0 to 1", i, d);
            out[d] = (float)x;
        }
        return true;
    }
    return fail(c, 400, "images[%zu] must be {\"png\": \"<base64>\"} or {\"pixels\": [%d numbers]}", i, in->dim);
}

/* The images of logp and encode: an image/png body (one image) or a JSON
 * body {"images": [...]}. Pixels are read here; PNGs are only kept, for
 * decode_pngs on the worker. */
static bool read_images(gm_call *c, const gm_model_info *in, json_t *p, const gm_http_request *req, long *n) {
    bool body_png = req->body_len > 0 && gm_media_type_is(req->content_type, "image/png");
    json_t *images = json_object_get(p, "images");
    if (body_png) *n = 1;
    else if (!json_is_array(images)) return fail(c, 400, "the body needs \"images\": [{\"png\": \"<base64>\"}, ...]");
    else *n = (long)json_array_size(images);
    if (*n < 1 || *n > c->srv->cfg->max_images)
        return fail(c, 422, "images has %ld entries; send 1 to %ld (the server's max_images setting)", *n,
                    c->srv->cfg->max_images);
    c->in = malloc((size_t)*n * in->dim * sizeof *c->in);
    c->png = calloc((size_t)*n, sizeof *c->png);
    c->png_len = calloc((size_t)*n, sizeof *c->png_len);
    if (!c->in || !c->png || !c->png_len) return fail(c, 500, "out of memory");
    c->png_count = *n;
    if (body_png) {
        /* the caller frees the body once the job is queued: take it */
        uint8_t *bytes = req->body_buffer ? *req->body_buffer : malloc(req->body_len);
        if (!bytes) return fail(c, 500, "out of memory");
        if (req->body_buffer) *req->body_buffer = NULL;
        else memcpy(bytes, req->body, req->body_len);
        c->png_body = true;
        return keep_png(c, 0, bytes, req->body_len);
    }
    for (long i = 0; i < *n; i++)
        if (!read_image(c, in, json_array_get(images, (size_t)i), (size_t)i, c->in + (size_t)i * in->dim))
            return false;
    return true;
}

static bool prepare_logp(gm_call *c, const gm_model_info *in, json_t *p, const gm_http_request *req) {
    const gm_config *cfg = c->srv->cfg;
    long n, k;
    if (!get_long(c, p, "k", cfg->default_k, 1, cfg->max_k, "max_k", &k) || !get_seed(c, p, false, &c->seed) ||
        !choose_format(c, p, req) || !read_images(c, in, p, req, &n))
        return false;
    c->rows = calloc((size_t)n, sizeof *c->rows);
    c->lp = calloc((size_t)n, sizeof *c->lp);
    if (!c->rows || !c->lp) return fail(c, 500, "out of memory");
    for (long i = 0; i < n; i++) gm_rng_seed(&c->rows[i].rng, c->seed, (uint64_t)i);
    c->job.n = (int)n;
    c->job.k = in->exact_logp ? 0 : (int)k;
    c->job.pixels = c->in;
    c->job.rows = c->rows;
    c->job.out_lp = c->lp;
    return true;
}

static bool prepare_encode(gm_call *c, const gm_model_info *in, json_t *p, const gm_http_request *req) {
    long n;
    if (!choose_format(c, p, req) || !read_images(c, in, p, req, &n)) return false;
    c->out = malloc((size_t)n * in->encode_dim * sizeof *c->out);
    if (in->family == GM_FAMILY_VAE) c->out2 = malloc((size_t)n * in->encode_dim * sizeof *c->out2);
    if (!c->out || (in->family == GM_FAMILY_VAE && !c->out2)) return fail(c, 500, "out of memory");
    c->job.n = (int)n;
    c->job.pixels = c->in;
    c->job.out_z = c->out;
    c->job.out_logvar = c->out2;
    return true;
}

/* Decode's code: required when the model has codes (like label), one for
 * every latent or an array of one per latent. */
static bool prepare_decode_codes(gm_call *c, const gm_model_info *in, json_t *p, long n) {
    json_t *cv = json_object_get(p, "code");
    if (!code_allowed(c, in, cv)) return false;
    if (!in->code_dim) return true;
    if (!cv)
        return fail(c, 422, "code is required: model \"%s\" takes a continuous code of %d numbers (one array for "
                            "every latent, or an array of one per latent)",
                    model_name(c), in->code_dim);
    c->codes = malloc((size_t)n * in->code_dim * sizeof *c->codes);
    if (!c->codes) return fail(c, 500, "out of memory");
    bool each = json_is_array(cv) && json_array_size(cv) > 0 && json_is_array(json_array_get(cv, 0));
    if (each && json_array_size(cv) != (size_t)n)
        return fail(c, 422, "code has %zu entries for %ld latents", json_array_size(cv), n);
    char what[32];
    for (long i = 0; i < n; i++) {
        snprintf(what, sizeof what, each ? "code[%ld]" : "code", i);
        if (!read_code(c, in, each ? json_array_get(cv, (size_t)i) : cv, what, c->codes + (size_t)i * in->code_dim))
            return false;
    }
    return true;
}

static bool prepare_decode(gm_call *c, const gm_model_info *in, json_t *p, const gm_http_request *req) {
    json_t *latents = json_object_get(p, "latents");
    if (!json_is_array(latents)) return fail(c, 400, "the body needs \"latents\": [[%d numbers], ...]", in->latent_dim);
    long n = (long)json_array_size(latents);
    if (n < 1 || n > c->srv->cfg->max_images)
        return fail(c, 422, "latents has %ld entries; send 1 to %ld (the server's max_images setting)", n,
                    c->srv->cfg->max_images);
    if (!prepare_output_format(c, p, req) || !check_output_size(c, in, n)) return false;
    c->in = malloc((size_t)n * in->latent_dim * sizeof *c->in);
    c->out = malloc((size_t)n * in->dim * sizeof *c->out);
    if (!c->in || !c->out) return fail(c, 500, "out of memory");
    for (long i = 0; i < n; i++) {
        json_t *z = json_array_get(latents, (size_t)i);
        if (!json_is_array(z) || json_array_size(z) != (size_t)in->latent_dim)
            return fail(c, 422, "latents[%ld] must be an array of %d numbers (the model's latent size)", i,
                        in->latent_dim);
        for (int j = 0; j < in->latent_dim; j++) {
            json_t *v = json_array_get(z, (size_t)j);
            double x = json_number_value(v);
            if (!json_is_number(v) || !(fabs(x) <= MAX_LATENT_ABS))
                return fail(c, 422, "latents[%ld][%d] must be a number within +-%g", i, j, MAX_LATENT_ABS);
            c->in[(size_t)i * in->latent_dim + j] = (float)x;
        }
    }
    json_t *lv = json_object_get(p, "label");
    if (in->num_classes) {
        if (!lv) return fail(c, 422, "label is required: model \"%s\" is class-conditional (an index, a class name, "
                                     "or an array of one per latent)", model_name(c));
        c->labels = malloc((size_t)n * sizeof *c->labels);
        if (!c->labels) return fail(c, 500, "out of memory");
        if (json_is_array(lv) && json_array_size(lv) != (size_t)n)
            return fail(c, 422, "label has %zu entries for %ld latents", json_array_size(lv), n);
        for (long i = 0; i < n; i++)
            if (!parse_label(c, in, json_is_array(lv) ? json_array_get(lv, (size_t)i) : lv, &c->labels[i])) return false;
    } else if (lv) return fail(c, 422, "label: model \"%s\" is not class-conditional", model_name(c));
    if (!prepare_decode_codes(c, in, p, n)) return false;
    c->job.n = (int)n;
    c->job.z = c->in;
    c->job.labels = c->labels;
    c->job.codes = c->codes;
    c->job.out_pixels = c->out;
    return true;
}

static bool prepare_op(gm_call *c, gm_op op, json_t *params, const gm_http_request *req) {
    const gm_model_info *in = gm_model_get_info(c->srv->models[c->model]);
    c->job = (gm_job){.model = c->srv->models[c->model], .op = op, .owner = c};
    c->scale = 1;
    if (!check_params(c, op, params) || !needs(c, in, op)) return false;
    switch (op) {
    case GM_OP_SAMPLE: return prepare_sample(c, in, params, req);
    case GM_OP_LOGP: return prepare_logp(c, in, params, req);
    case GM_OP_ENCODE: return prepare_encode(c, in, params, req);
    case GM_OP_DECODE: return prepare_decode(c, in, params, req);
    default: return fail(c, 404, "no such operation");
    }
}

/* Every prepared job then passes admission by cost (cost.h). */
bool gm_ops_prepare(gm_call *c, gm_op op, json_t *params, const gm_http_request *req) {
    if (!prepare_op(c, op, params, req) || !gm_cost_admit(c)) return false;
    if (c->reply.etag[0] && gm_etag_matches(req->if_none_match, c->reply.etag)) {
        /* the client holds this very reply: 304, and the model does not run */
        free(c->reply.body);
        c->reply.body = NULL;
        c->reply.len = 0;
        c->reply.status = 304;
        c->reply.content_type = NULL;
        return false;
    }
    return true;
}

static json_t *number(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *float_array(const float *x, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, number(x[i]));
    return a;
}

/* A binary reply that takes body (malloc'd). */
static void reply_bytes(gm_call *c, uint8_t *body, size_t len, const char *type) {
    free(c->reply.body);
    c->reply.body = body;
    c->reply.len = len;
    c->reply.status = 200;
    c->reply.content_type = type;
}

/* An npy reply of x's float32 values in the given shape. */
static void reply_npy(gm_call *c, const float *x, int ndim, const long *shape) {
    uint8_t *b;
    size_t len;
    if (gm_npy_write_f32(x, ndim, shape, &b, &len)) return gm_reply_error(&c->reply, 500, "out of memory");
    reply_bytes(c, b, len, c->npy_type);
}

/* {"png": base64} of image i, or NULL with err filled. */
static json_t *png_image(gm_call *c, const gm_model_info *in, int i, const char *desc, char err[GM_ERR_LEN]) {
    uint8_t *png;
    size_t len;
    if (gm_png_encode(c->out + (size_t)i * in->dim, 1, in->height, in->width, in->channels, c->scale, desc, &png, &len,
                      err))
        return NULL;
    char *b64 = gm_base64_encode(png, len);
    free(png);
    json_t *o = b64 ? json_pack("{s:s}", "png", b64) : NULL;
    free(b64);
    if (!o) gm_errorf(err, "out of memory");
    return o;
}

/* Sample and decode replies: one PNG (a grid for n > 1), an npy array
 * (n, H, W, C), or JSON with one PNG or one array of pixels per image. */
static void finish_images(gm_call *c, const gm_model_info *in) {
    char err[GM_ERR_LEN], desc[160];
    int n = c->job.n;
    snprintf(desc, sizeof desc, "gmserve model=%s op=%s n=%d seed=%llu", model_name(c), gm_op_name(c->job.op), n,
             (unsigned long long)c->seed);
    if (c->job.op == GM_OP_SAMPLE) snprintf(c->reply.seed, sizeof c->reply.seed, "%llu", (unsigned long long)c->seed);
    if (c->format == GM_FORMAT_PNG) {
        uint8_t *png;
        size_t len;
        if (gm_png_encode(c->out, n, in->height, in->width, in->channels, c->scale, desc, &png, &len, err))
            return gm_reply_error(&c->reply, 500, "%s", err);
        return reply_bytes(c, png, len, "image/png");
    }
    if (c->format == GM_FORMAT_NPY)
        return reply_npy(c, c->out, 4, (const long[]){n, in->height, in->width, in->channels});
    json_t *images = json_array();
    for (int i = 0; i < n; i++) {
        json_t *o = c->format == GM_FORMAT_PIXELS
                        ? json_pack("{s:o}", "pixels", float_array(c->out + (size_t)i * in->dim, in->dim))
                        : png_image(c, in, i, desc, err);
        if (!o) {
            json_decref(images);
            return gm_reply_error(&c->reply, 500, "%s", c->format == GM_FORMAT_PIXELS ? "out of memory" : err);
        }
        if (c->logp) json_object_set_new(o, "logp", number(c->logp[i]));
        int label = c->rows ? c->rows[i].label : c->labels ? c->labels[i] : -1;
        if (in->num_classes && label >= 0) {
            json_object_set_new(o, "label", json_integer(label));
            if (in->class_names) json_object_set_new(o, "class", json_string(in->class_names[label]));
        }
        json_array_append_new(images, o);
    }
    json_t *r = json_pack("{s:s,s:o}", "model", model_name(c), "images", images);
    if (c->job.op == GM_OP_SAMPLE)
        json_object_set_new(r, "seed", c->seed <= INT64_MAX ? json_integer((json_int_t)c->seed) : json_string(c->reply.seed));
    gm_reply_json(&c->reply, 200, r);
}

static void finish_logp(gm_call *c, const gm_model_info *in) {
    if (c->format == GM_FORMAT_NPY) { /* log p alone, as float32 (n,) */
        float *x = malloc((size_t)c->job.n * sizeof *x);
        if (!x) return gm_reply_error(&c->reply, 500, "out of memory");
        for (int i = 0; i < c->job.n; i++) x[i] = (float)c->lp[i].logp;
        reply_npy(c, x, 1, (const long[]){c->job.n});
        free(x);
        return;
    }
    json_t *results = json_array();
    for (int i = 0; i < c->job.n; i++) {
        const gm_logp_result *r = &c->lp[i];
        json_t *o = json_pack("{s:o,s:o}", "logp", number(r->logp), "bits_per_dim",
                              number(-r->logp / (in->dim * M_LN2)));
        if (!in->exact_logp) {
            json_object_set_new(o, "elbo", number(r->elbo));
            if (isfinite(r->se)) json_object_set_new(o, "se", number(r->se));
        }
        json_array_append_new(results, o);
    }
    json_t *r = json_pack("{s:s,s:s,s:o}", "model", model_name(c), "method",
                          in->exact_logp ? "exact" : "importance_sampling", "results", results);
    if (!in->exact_logp) {
        json_object_set_new(r, "k", json_integer(c->job.k));
        json_object_set_new(r, "seed", c->seed <= INT64_MAX ? json_integer((json_int_t)c->seed) : json_null());
    }
    gm_reply_json(&c->reply, 200, r);
}

static void finish_encode(gm_call *c, const gm_model_info *in) {
    if (c->format == GM_FORMAT_NPY) /* z alone (a VAE's mean), (n, encode_dim) */
        return reply_npy(c, c->out, 2, (const long[]){c->job.n, in->encode_dim});
    json_t *results = json_array();
    for (int i = 0; i < c->job.n; i++) {
        json_t *o = json_pack("{s:o}", "z", float_array(c->out + (size_t)i * in->encode_dim, in->encode_dim));
        if (c->out2) json_object_set_new(o, "logvar", float_array(c->out2 + (size_t)i * in->encode_dim, in->encode_dim));
        json_array_append_new(results, o);
    }
    gm_reply_json(&c->reply, 200, json_pack("{s:s,s:o}", "model", model_name(c), "results", results));
}

void gm_ops_finish(gm_call *c) {
    const gm_model_info *in = gm_model_get_info(c->job.model);
    switch (c->job.status) {
    case GM_JOB_EXPIRED:
        return gm_reply_error(&c->reply, 504, "the request passed its deadline (%ld ms, the server's deadline_ms "
                                              "setting) waiting or computing; it was stopped: retry later, or ask "
                                              "for less (fewer rows, a lower k)",
                              c->srv->cfg->deadline_ms);
    case GM_JOB_CANCELLED: return gm_reply_error(&c->reply, 499, "the client closed the connection");
    case GM_JOB_FAILED: return gm_reply_error(&c->reply, 500, "out of memory computing the batch");
    case GM_JOB_INVALID: return; /* decode_pngs filled the reply */
    case GM_JOB_OK: break;
    }
    switch (c->job.op) {
    case GM_OP_SAMPLE:
    case GM_OP_DECODE: return finish_images(c, in);
    case GM_OP_LOGP: return finish_logp(c, in);
    case GM_OP_ENCODE: return finish_encode(c, in);
    default: return gm_reply_error(&c->reply, 500, "unknown operation");
    }
}
