/*
 * ops.c - the model operations of the API: parameters and inputs in, a
 * gm_job out; the job's outputs in, a reply in the format asked for
 * (formats.h: PNG, JSON, JSON pixels or npy) out (see ops.h). A seeded GET
 * sample is a pure function of its model file and parameters: it gets an
 * ETag (etag.h) and is answered 304 when the client holds that tag.
 *
 * Parameters come as JSON values whether they arrived in a query string
 * (strings) or a JSON body (numbers or strings), so one set of getters
 * serves GET and POST; their ranges, defaults and the settings bounding
 * them come from the parameter table (params.h). Malformed values are 400,
 * well-formed values out of range are 422 naming the range and the setting
 * that bounds it; a parameter the operation does not take is 400 listing
 * those it does, so that a typo is never silently ignored. Whatever a message echoes from the
 * request goes through gm_quote, so the reply stays valid UTF-8.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "base64.h"
#include "cost.h"
#include "etag.h"
#include "formats.h"
#include "npy.h"
#include "ops.h"
#include "params.h"
#include "pngio.h"
#include "text.h"

enum { MAX_OUTPUT_PIXELS = 1 << 26 }; /* one reply's pixels after scaling */

struct gm_operation {
    gm_server *srv;
    const gm_config *cfg; /* the request's settings */
    gm_served *served;    /* the model, held until gm_operation_free: a replaced model outlives its jobs */
    gm_job job;
    gm_reply *reply; /* where prepare's errors go (the caller's, during prepare only) */
    /* parsed parameters */
    uint64_t seed;
    gm_format format;
    const char *npy_type; /* Content-Type of an npy reply */
    int scale;
    char etag[GM_ETAG_LEN]; /* a seeded GET sample's ETag (etag.h), or "" */
    /* buffers of the job */
    float *in, *out, *out2;
    float *codes; /* sample: one code for every row; decode: (n, code_dim) */
    int *cats;    /* decode of a model with a categorical code: (n) */
    int *labels;
    gm_row *rows;
    double *logp, *logp_rest;
    long given; /* complete: the values of the image kept */
    gm_logp_result *lp;
    /* PNG inputs that a worker decodes into in before the first piece, so
     * that decoding never runs on an HTTP thread: png[i] holds image i's
     * bytes (png_len[i] of them), or NULL for an image sent as pixels;
     * png_count: the entries of both arrays.
     * png_body: the one image was an image/png body (its errors name no
     * index). png_held: the bytes counted in srv->png_bytes. */
    uint8_t **png;
    size_t *png_len;
    long png_count;
    bool png_body;
    size_t png_held;
    /* why decode_pngs refused the job, for the reply */
    gm_error_kind invalid_kind;
    char invalid[GM_ERR_LEN + 32];
};

/* Fills the error reply and yields false, for `return fail(c, GM_E_..., ...)`. */
#define fail(c, kind, ...) (gm_reply_error((c)->reply, (kind), __VA_ARGS__), false)

/* An integer parameter in [lo, hi]; limit names the setting behind hi. */
static bool get_long_in(gm_operation *c, json_t *p, const char *key, long dflt, long lo, long hi, const char *limit,
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
            return fail(c, GM_E_BAD_PARAM, "%s = %s is not an integer", key,
                        gm_quote(q, json_string_value(v), json_string_length(v)));
    } else return fail(c, GM_E_BAD_PARAM, "%s must be an integer", key);
    if (x < lo || x > hi)
        return fail(c, GM_E_OUT_OF_RANGE, "%s = %lld is out of range: %ld to %ld%s%s%s", key, x, lo, hi,
                    limit ? " (the server's " : "", limit ? limit : "", limit ? " setting)" : "");
    *out = (long)x;
    return true;
}

/* An integer parameter of the table, in its range under the settings. */
static bool get_long(gm_operation *c, json_t *p, gm_param id, long *out) {
    const gm_param_def *d = &gm_params[id];
    const gm_config *cfg = c->cfg;
    return get_long_in(c, p, d->name, (long)gm_param_default(id, cfg), (long)d->min, (long)gm_param_max(id, cfg),
                       d->max_setting, out);
}

/* A real parameter of the table in (min, max] (min_open) or [min, max]. The
 * range is checked on the float the model computes with, so a value such as
 * 1e-320 that passes "> 0" as a double but rounds to 0 as a float is
 * refused. */
static bool get_float(gm_operation *c, json_t *p, gm_param id, float *out) {
    const gm_param_def *d = &gm_params[id];
    const char *key = d->name;
    float lo = (float)d->min, hi = (float)gm_param_max(id, c->cfg);
    bool lo_open = d->min_open;
    json_t *v = json_object_get(p, key);
    char q[GM_QUOTE_LEN];
    *out = (float)gm_param_default(id, c->cfg);
    if (!v) return true;
    double x;
    if (json_is_number(v)) x = json_number_value(v);
    else if (json_is_string(v)) {
        char *end;
        x = strtod(json_string_value(v), &end);
        if (end == json_string_value(v) || *end)
            return fail(c, GM_E_BAD_PARAM, "%s = %s is not a number", key,
                        gm_quote(q, json_string_value(v), json_string_length(v)));
    } else return fail(c, GM_E_BAD_PARAM, "%s must be a number", key);
    float f = (float)x;
    if (!isfinite(f) || (lo_open ? f <= lo : f < lo) || f > hi)
        return fail(c, GM_E_OUT_OF_RANGE, "%s = %g is out of range: %s%g to %g (as a 32-bit float it is %g)", key, x,
                    lo_open ? "above " : "", lo, hi, f);
    *out = f;
    return true;
}

/* seed: a u64 as a JSON integer or a decimal string; drawn when absent. JSON
 * integers stop at 2^63 - 1; larger seeds travel as strings. */
static bool get_seed(gm_operation *c, json_t *p, bool draw, uint64_t *out) {
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
    return fail(c, GM_E_BAD_PARAM, "seed must be an integer from 0 to 18446744073709551615");
}

/* A string parameter of the table with two choices: is_b when it is the
 * second. */
static bool get_choice(gm_operation *c, json_t *p, gm_param id, bool dflt_b, bool *is_b) {
    const char *key = gm_params[id].name, *a = gm_params[id].choices[0], *b = gm_params[id].choices[1];
    json_t *v = json_object_get(p, key);
    *is_b = dflt_b;
    if (!v) return true;
    const char *s = json_string_value(v);
    if (s && !strcmp(s, a)) *is_b = false;
    else if (s && !strcmp(s, b)) *is_b = true;
    else return fail(c, GM_E_OUT_OF_RANGE, "%s must be \"%s\" or \"%s\"", key, a, b);
    return true;
}

/* A class label: an index or a class name. */
static bool parse_label(gm_operation *c, const gm_model_info *in, json_t *v, int *out) {
    const char *s = json_string_value(v);
    if (s && in->class_names)
        for (int k = 0; k < in->num_classes; k++)
            if (!strcmp(s, in->class_names[k])) {
                *out = k;
                return true;
            }
    json_t *tmp = json_pack("{s:O}", "label", v);
    long x;
    bool ok = get_long_in(c, tmp, "label", 0, 0, in->num_classes - 1, NULL, &x);
    json_decref(tmp);
    if (ok) *out = (int)x;
    else if (s) {
        char q[GM_QUOTE_LEN];
        (void)fail(c, GM_E_OUT_OF_RANGE,
                   "label %s is neither a class name nor an index 0 to %d (GET /v1/models lists the classes)",
                   gm_quote(q, s, json_string_length(v)), in->num_classes - 1);
    }
    return ok;
}

static const char *model_name(const gm_operation *c) { return c->served->name; }

/* One code: code_dim numbers within the code parameter's bound, as latents
 * are bounded; `what` names it in messages ("code", "code[3]"). */
static bool read_code(gm_operation *c, const gm_model_info *in, json_t *v, const char *what, float *out) {
    double bound = gm_params[GM_P_CODE].max;
    if (!json_is_array(v) || json_array_size(v) != (size_t)in->code_dim)
        return fail(c, GM_E_MODEL_MISMATCH, "%s must be an array of %d numbers (model \"%s\" has code_dim %d)", what,
                    in->code_dim, model_name(c), in->code_dim);
    for (int j = 0; j < in->code_dim; j++) {
        json_t *x = json_array_get(v, (size_t)j);
        if (!json_is_number(x) || !(fabs(json_number_value(x)) <= bound))
            return fail(c, GM_E_OUT_OF_RANGE, "%s[%d] must be a number within +-%g", what, j, bound);
        out[j] = (float)json_number_value(x);
    }
    return true;
}

/* A code parameter on a model without codes is refused, not ignored. */
static bool code_allowed(gm_operation *c, const gm_model_info *in, json_t *v) {
    if (v && !in->code_dim)
        return fail(c, GM_E_MODEL_MISMATCH, "code: model \"%s\" has no continuous code input (code_dim 0)",
                    model_name(c));
    return true;
}

/* One category of an InfoGAN's categorical code, 0..cat_dim-1; a cat on a
 * model without one is refused, not ignored. `what` names it ("cat[2]"). */
static bool read_cat(gm_operation *c, const gm_model_info *in, json_t *v, const char *what, int *out) {
    if (!in->cat_dim)
        return fail(c, GM_E_MODEL_MISMATCH, "cat: model \"%s\" has no categorical code input (cat_dim 0)",
                    model_name(c));
    json_t *tmp = json_pack("{s:O}", what, v);
    long x;
    bool ok = tmp && get_long_in(c, tmp, what, 0, 0, in->cat_dim - 1, NULL, &x);
    json_decref(tmp);
    if (ok) *out = (int)x;
    return ok;
}

static bool check_params(gm_operation *c, gm_op op, json_t *params) {
    const char *key;
    json_t *v;
    char q[GM_QUOTE_LEN], takes[256];
    json_object_foreach(params, key, v) {
        if (gm_param_find(op, key) < 0) {
            gm_params_accepted(op, takes, sizeof takes);
            return fail(c, GM_E_UNKNOWN_PARAM, "unknown parameter %s for %s; it takes: %s",
                        gm_quote(q, key, strlen(key)), gm_op_name(op), takes);
        }
    }
    return true;
}

static bool needs(gm_operation *c, const gm_model_info *in, gm_op op) {
    if (in->supports[op]) return true;
    if (op == GM_OP_COMPLETE && in->family == GM_FAMILY_NADE)
        return fail(c, GM_E_UNSUPPORTED_OP,
                    "model \"%s\" (nade) cannot complete: its pixel order (tensor "
                    "'ordering') is not raster order, so the image's top rows are not the "
                    "first pixels it generates; export it without an ordering",
                    model_name(c));
    if (op == GM_OP_COMPLETE)
        return fail(c, GM_E_UNSUPPORTED_OP,
                    "model \"%s\" (%s) cannot complete: only an autoregressive model "
                    "(nade, pixelcnn, pixelrnn) has the exact conditionals of the missing pixels given the "
                    "others",
                    model_name(c), gm_family_name(in->family));
    static const char *const WHY[GM_OP_COUNT] = {
        [GM_OP_LOGP] = "a GAN defines no likelihood; use a nade or vae model",
        [GM_OP_ENCODE] = "this file has no encoder (gm.encoder)",
        [GM_OP_DECODE] = "a NADE has no latent space",
        [GM_OP_DISCRIMINATE] = "only a GAN file with a discriminator (gm.discriminator) has one",
        [GM_OP_RECONSTRUCT] = "only an adversarial autoencoder (aae) serves it",
        [GM_OP_TRANSLATE] = "only an image-to-image translator (translator) serves it",
    };
    /* an AAE's codes were matched to the prior by a discriminator: no term of its training is a likelihood */
    const char *why = op == GM_OP_LOGP && in->family == GM_FAMILY_AAE
                          ? "an adversarial autoencoder defines no density: its codes were matched to the prior "
                            "by a discriminator, with no likelihood term, so there is no log p to compute; use a "
                            "nade or vae model"
                      /* a translator maps images to images: its adversarial and cycle losses score no density */
                      : op == GM_OP_LOGP && in->family == GM_FAMILY_TRANSLATOR
                          ? "a translator defines no density: it maps an image to an image, trained against "
                            "discriminators and a cycle (reconstruction) loss, with no likelihood of images, so "
                            "there is no log p to compute; use a nade or vae model"
                      : in->family == GM_FAMILY_TRANSLATOR
                          ? "a translator maps images to images; it serves translate only"
                          : WHY[op];
    return fail(c, GM_E_UNSUPPORTED_OP, "model \"%s\" (%s) cannot %s: %s", model_name(c), gm_family_name(in->family),
                gm_op_name(op), why ? why : "the file lacks it");
}

static bool check_output_size(gm_operation *c, const gm_model_info *in, long n) {
    double pixels = (double)n * in->dim * c->scale * c->scale;
    if (pixels > MAX_OUTPUT_PIXELS)
        return fail(c, GM_E_TOO_COSTLY,
                    "the reply would hold %.0f pixels (n x image x scale^2), over %d; lower n or scale", pixels,
                    MAX_OUTPUT_PIXELS);
    return true;
}

/* The reply format (formats.h): the format parameter, else Accept, else
 * the operation's default, among the formats the operation has. */
static bool choose_format(gm_operation *c, json_t *p, const gm_op_request *rq) {
    json_t *v = json_object_get(p, "format");
    char err[GM_ERR_LEN];
    if (v && !json_is_string(v)) return fail(c, GM_E_BAD_PARAM, "format must be a string");
    if (gm_format_choose(v ? json_string_value(v) : NULL, rq->accept, gm_formats_of(rq->op),
                         gm_format_default(rq->op, rq->get), &c->format, err))
        return fail(c, GM_E_OUT_OF_RANGE, "%s", err);
    c->npy_type = gm_format_npy_type(rq->accept);
    return true;
}

/* Images out: the format, and scale, which enlarges PNGs only (a float
 * format returns the model's own pixels). */
static bool prepare_output_format(gm_operation *c, json_t *p, const gm_op_request *rq) {
    long scale;
    if (!choose_format(c, p, rq) || !get_long(c, p, GM_P_SCALE, &scale)) return false;
    if (scale != 1 && (c->format == GM_FORMAT_PIXELS || c->format == GM_FORMAT_NPY))
        return fail(c, GM_E_OUT_OF_RANGE,
                    "scale enlarges PNG images only; format %s returns the model's pixels unscaled",
                    gm_format_names[c->format]);
    c->scale = (int)scale;
    return true;
}

/* The one label of a sample or complete request, or -1 when none is given. */
static bool get_label(gm_operation *c, const gm_model_info *in, json_t *p, int *label) {
    json_t *lv = json_object_get(p, "label");
    *label = -1;
    if (lv && !in->num_classes)
        return fail(c, GM_E_MODEL_MISMATCH, "label: model \"%s\" is not class-conditional", model_name(c));
    return !lv || parse_label(c, in, lv, label);
}

/* Row i's label: the request's, or for a conditional model without one, a
 * label of its own from a stream apart from the row's. */
static int row_label(const gm_operation *c, const gm_model_info *in, int label, long i) {
    if (!in->num_classes || label >= 0) return label;
    gm_rng pick;
    gm_rng_seed(&pick, c->seed ^ UINT64_C(0x6c6162656c5f5f5f), (uint64_t)i);
    return (int)(gm_rng_next(&pick) % (uint64_t)in->num_classes);
}

/* The ETag of a seeded sample (etag.h): its parameters as parsed, every
 * one of them, in name order; label is the one given, or -1 when each row
 * draws its own. */
static bool sample_etag(gm_operation *c, const gm_model_info *in, int label) {
    const gm_row *r = &c->rows[0];
    size_t cap = 512 + 20 * (size_t)in->code_dim, o = 0;
    char *t = malloc(cap);
    if (!t) return fail(c, GM_E_INTERNAL, "out of memory");
    o += (size_t)snprintf(t + o, cap - o, "cat=%d&code=", r->cat_given ? r->cat : -1);
    for (int j = 0; c->codes && j < in->code_dim; j++)
        o += (size_t)snprintf(t + o, cap - o, "%s%.9g", j ? "," : "", c->codes[j]);
    if (!c->codes) o += (size_t)snprintf(t + o, cap - o, "drawn");
    snprintf(t + o, cap - o, "&format=%s%s%s&label=%d&mode=%s&n=%d&scale=%d&seed=%llu&temperature=%.9g&truncation=%.9g",
             gm_format_names[c->format], c->format == GM_FORMAT_NPY ? ";" : "",
             c->format == GM_FORMAT_NPY ? c->npy_type : "", label, r->sample_pixels ? "sample" : "mean", c->job.n,
             c->scale, (unsigned long long)c->seed, r->temperature, r->truncation);
    gm_etag_make(in->sha256, model_name(c), gm_op_name(GM_OP_SAMPLE), t, c->etag);
    free(t);
    return true;
}

/* The headers of a seeded sample's reply, 200 or 304: it may be stored for
 * good; a shared cache must not hand a reply that needed an API key to
 * clients without one. */
static void cache_headers(const gm_operation *c, gm_reply *reply) {
    gm_reply_header(reply, "ETag", "%s", c->etag);
    gm_reply_header(reply, "Cache-Control", "%s, max-age=31536000, immutable",
                    c->cfg->n_api_keys ? "private" : "public");
}

static bool prepare_sample(gm_operation *c, const gm_model_info *in, json_t *p, const gm_op_request *rq) {
    long n;
    float temperature, truncation;
    bool sample_pixels;
    if (!get_long(c, p, GM_P_N, &n) || !get_seed(c, p, true, &c->seed) ||
        !get_float(c, p, GM_P_TEMPERATURE, &temperature) || !prepare_output_format(c, p, rq) ||
        !check_output_size(c, in, n))
        return false;
    int label;
    if (!get_label(c, in, p, &label)) return false;
    if (json_object_get(p, "truncation") && in->family != GM_FAMILY_GAN)
        return fail(c, GM_E_MODEL_MISMATCH, "truncation applies to GAN models only");
    if (!get_float(c, p, GM_P_TRUNCATION, &truncation)) return false;
    if (json_object_get(p, "mode") && in->family != GM_FAMILY_VAE)
        return fail(c, GM_E_MODEL_MISMATCH, "mode applies to VAE models only");
    if (!get_choice(c, p, GM_P_MODE, false, &sample_pixels)) return false;
    json_t *cv = json_object_get(p, "code"), *catv = json_object_get(p, "cat");
    int cat = -1; /* one category for every row; without it each row draws its own */
    if (catv && !read_cat(c, in, catv, "cat", &cat)) return false;
    if (!code_allowed(c, in, cv)) return false;
    if (cv) {                     /* one code for every row; without it each row draws its own */
        if (json_is_string(cv)) { /* a query string: code=[0.5,-1] */
            /* at most code_dim values are parsed, whatever the text holds */
            size_t seps = 0;
            for (const char *t = json_string_value(cv); *t; t++) seps += *t == ',' || *t == '[' || *t == '{';
            if (seps > (size_t)in->code_dim + 1)
                return fail(c, GM_E_MODEL_MISMATCH,
                            "code must be an array of %d numbers (model \"%s\" has code_dim %d)", in->code_dim,
                            model_name(c), in->code_dim);
            json_t *parsed = json_loads(json_string_value(cv), JSON_DECODE_ANY, NULL);
            if (!parsed)
                return fail(c, GM_E_BAD_PARAM, "code must be a JSON array of %d numbers, e.g. code=[0.5,-1]",
                            in->code_dim);
            json_object_set_new(p, "code", parsed);
            cv = parsed;
        }
        if (!(c->codes = malloc((size_t)in->code_dim * sizeof *c->codes)))
            return fail(c, GM_E_INTERNAL, "out of memory");
        if (!read_code(c, in, cv, "code", c->codes)) return false;
    }

    c->rows = calloc((size_t)n, sizeof *c->rows);
    c->out = malloc((size_t)n * in->dim * sizeof *c->out);
    if (in->exact_logp) c->logp = malloc((size_t)n * sizeof *c->logp); /* NADE, PixelCNN: each sample's log p */
    if (!c->rows || !c->out || (in->exact_logp && !c->logp)) return fail(c, GM_E_INTERNAL, "out of memory");
    for (long i = 0; i < n; i++) {
        gm_row *r = &c->rows[i];
        gm_rng_seed(&r->rng, c->seed, (uint64_t)i);
        r->temperature = temperature;
        r->truncation = truncation;
        r->sample_pixels = sample_pixels;
        r->label = row_label(c, in, label, i);
        r->code = c->codes;
        r->cat_given = cat >= 0;
        r->cat = cat;
    }
    c->job.n = (int)n;
    c->job.rows = c->rows;
    c->job.out_pixels = c->out;
    c->job.out_logp = c->logp;
    return !(rq->get && json_object_get(p, "seed")) || sample_etag(c, in, label);
}

/* Frees the PNG inputs the operation still holds. */
static void release_pngs(gm_operation *c) {
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
 * the kept PNGs into the job's pixels, or keeps why not for the 400
 * (malformed) or 422 (another size than the model's) reply that names the
 * image. The job is the one embedded in its gm_operation. */
static bool decode_pngs(gm_job *job) {
    gm_operation *c = (gm_operation *)((char *)job - offsetof(gm_operation, job));
    const gm_model_info *in = gm_model_get_info(job->model);
    char err[GM_ERR_LEN];
    bool ok = true;
    for (long i = 0; ok && i < c->png_count; i++) {
        if (!c->png[i]) continue;
        gm_png_status st = gm_png_decode(c->png[i], c->png_len[i], in->height, in->width, in->channels,
                                         c->in + (size_t)i * in->dim, err);
        ok = st == GM_PNG_OK;
        c->invalid_kind = st == GM_PNG_WRONG_SIZE ? GM_E_MODEL_MISMATCH : GM_E_BAD_PARAM;
        if (!ok && c->png_body) snprintf(c->invalid, sizeof c->invalid, "%s", err);
        else if (!ok) snprintf(c->invalid, sizeof c->invalid, "images[%ld]: %s", i, err);
    }
    release_pngs(c); /* the bytes are not needed any more */
    return ok;
}

/* Keeps image i's PNG bytes (malloc'd, taken over) for a worker to decode.
 * They wait in the queue, so together they are bounded like the bodies
 * being received: by max_body_memory_bytes, beyond which the request gets
 * 503 with Retry-After, as a body over the budget does. */
static bool keep_png(gm_operation *c, size_t i, uint8_t *bytes, size_t len) {
    long long limit = c->cfg->max_body_memory_bytes;
    if (atomic_fetch_add(&c->srv->png_bytes, (long long)len) + (long long)len > limit) {
        atomic_fetch_sub(&c->srv->png_bytes, (long long)len);
        free(bytes);
        gm_reply_header(c->reply, "Retry-After", "1");
        return fail(c, GM_E_BUSY,
                    "the server holds as many PNG bytes waiting to be decoded as it may (%lld bytes, the "
                    "max_body_memory_bytes setting); retry after 1 s",
                    limit);
    }
    c->png_held += len;
    c->png[i] = bytes;
    c->png_len[i] = len;
    c->job.prepare = decode_pngs;
    return true;
}

/* The entries of an array parameter (images, latents) within its range. */
static bool count_in_range(gm_operation *c, gm_param id, long n) {
    const gm_param_def *d = &gm_params[id];
    long lo = (long)d->min, hi = (long)gm_param_max(id, c->cfg);
    if (n >= lo && n <= hi) return true;
    return fail(c, GM_E_OUT_OF_RANGE, "%s has %ld entries; send %ld to %ld (the server's %s setting)", d->name, n, lo,
                hi, d->max_setting);
}

/* Reads one input image, a {"png": base64} or {"pixels": [D numbers]}
 * object: pixels into out (D floats), a PNG's bytes for the worker. */
static bool read_image(gm_operation *c, const gm_model_info *in, json_t *img, size_t i, float *out) {
    json_t *png = json_object_get(img, "png"), *pixels = json_object_get(img, "pixels");
    if (json_is_string(png)) {
        size_t len;
        uint8_t *bytes = gm_base64_decode(json_string_value(png), json_string_length(png), &len);
        if (!bytes) return fail(c, GM_E_BAD_PARAM, "images[%zu].png is not base64", i);
        return keep_png(c, i, bytes, len);
    }
    if (json_is_array(pixels)) {
        if (json_array_size(pixels) != (size_t)in->dim)
            return fail(c, GM_E_MODEL_MISMATCH, "images[%zu].pixels has %zu values; the model takes %d (%dx%dx%d)", i,
                        json_array_size(pixels), in->dim, in->height, in->width, in->channels);
        for (int d = 0; d < in->dim; d++) {
            json_t *v = json_array_get(pixels, (size_t)d);
            double x = json_number_value(v);
            if (!json_is_number(v) || !(x >= 0 && x <= 1))
                return fail(c, GM_E_OUT_OF_RANGE, "images[%zu].pixels[%d] must be a number from 0 to 1", i, d);
            out[d] = (float)x;
        }
        return true;
    }
    return fail(c, GM_E_BAD_PARAM, "images[%zu] must be {\"png\": \"<base64>\"} or {\"pixels\": [%d numbers]}", i,
                in->dim);
}

/* The images of logp, encode, discriminate and reconstruct: an image/png body (one
 * image) or a JSON body {"images": [...]}. Pixels are read here; PNGs are
 * only kept, for decode_pngs on the worker. */
static bool read_images(gm_operation *c, const gm_model_info *in, json_t *p, const gm_op_request *rq, long *n) {
    bool body_png = rq->png != NULL;
    json_t *images = json_object_get(p, "images");
    if (body_png) *n = 1;
    else if (!json_is_array(images))
        return fail(c, GM_E_BAD_PARAM, "the body needs \"images\": [{\"png\": \"<base64>\"}, ...]");
    else *n = (long)json_array_size(images);
    if (!count_in_range(c, GM_P_IMAGES, *n)) return false;
    c->in = malloc((size_t)*n * in->dim * sizeof *c->in);
    c->png = calloc((size_t)*n, sizeof *c->png);
    c->png_len = calloc((size_t)*n, sizeof *c->png_len);
    if (!c->in || !c->png || !c->png_len) return fail(c, GM_E_INTERNAL, "out of memory");
    c->png_count = *n;
    if (body_png) {
        /* the caller frees the body once the job is queued: take it */
        uint8_t *bytes = rq->png_buffer ? *rq->png_buffer : malloc(rq->png_len);
        if (!bytes) return fail(c, GM_E_INTERNAL, "out of memory");
        if (rq->png_buffer) *rq->png_buffer = NULL;
        else memcpy(bytes, rq->png, rq->png_len);
        c->png_body = true;
        return keep_png(c, 0, bytes, rq->png_len);
    }
    for (long i = 0; i < *n; i++)
        if (!read_image(c, in, json_array_get(images, (size_t)i), (size_t)i, c->in + (size_t)i * in->dim)) return false;
    return true;
}

static bool prepare_logp(gm_operation *c, const gm_model_info *in, json_t *p, const gm_op_request *rq) {
    long n, k;
    if (!get_long(c, p, GM_P_K, &k) || !get_seed(c, p, false, &c->seed) || !choose_format(c, p, rq) ||
        !read_images(c, in, p, rq, &n))
        return false;
    c->rows = calloc((size_t)n, sizeof *c->rows);
    c->lp = calloc((size_t)n, sizeof *c->lp);
    if (!c->rows || !c->lp) return fail(c, GM_E_INTERNAL, "out of memory");
    for (long i = 0; i < n; i++) gm_rng_seed(&c->rows[i].rng, c->seed, (uint64_t)i);
    c->job.n = (int)n;
    c->job.k = in->exact_logp ? 0 : (int)k;
    c->job.pixels = c->in;
    c->job.rows = c->rows;
    c->job.out_lp = c->lp;
    return true;
}

static bool prepare_encode(gm_operation *c, const gm_model_info *in, json_t *p, const gm_op_request *rq) {
    long n;
    if (!choose_format(c, p, rq) || !read_images(c, in, p, rq, &n)) return false;
    c->out = malloc((size_t)n * in->encode_dim * sizeof *c->out);
    if (in->family == GM_FAMILY_VAE) c->out2 = malloc((size_t)n * in->encode_dim * sizeof *c->out2);
    if (!c->out || (in->family == GM_FAMILY_VAE && !c->out2)) return fail(c, GM_E_INTERNAL, "out of memory");
    c->job.n = (int)n;
    c->job.pixels = c->in;
    c->job.out_z = c->out;
    c->job.out_logvar = c->out2;
    return true;
}

static bool prepare_discriminate(gm_operation *c, const gm_model_info *in, json_t *p, const gm_op_request *rq) {
    long n;
    if (!read_images(c, in, p, rq, &n)) return false;
    c->out = malloc((size_t)n * sizeof *c->out);
    if (!c->out) return fail(c, GM_E_INTERNAL, "out of memory");
    c->job.n = (int)n;
    c->job.pixels = c->in;
    c->job.out_logits = c->out;
    return true;
}

/* Images in as for logp, images out as for decode. */
static bool prepare_reconstruct(gm_operation *c, const gm_model_info *in, json_t *p, const gm_op_request *rq) {
    long n;
    if (!prepare_output_format(c, p, rq) || !read_images(c, in, p, rq, &n) || !check_output_size(c, in, n))
        return false;
    c->out = malloc((size_t)n * in->dim * sizeof *c->out);
    if (!c->out) return fail(c, GM_E_INTERNAL, "out of memory");
    c->job.n = (int)n;
    c->job.pixels = c->in;
    c->job.out_pixels = c->out;
    return true;
}

/* The labels of decode and translate into c->labels: required when the
 * model has classes (`why` says what they are for), one for every input
 * (`per` names them: "latent", "image") or an array of one per input; a
 * label for a model without classes, or whose classes are its prior's
 * components (an AAE's decoder takes z alone), is refused. */
static bool read_labels(gm_operation *c, const gm_model_info *in, json_t *p, long n, const char *per, const char *why) {
    json_t *lv = json_object_get(p, "label");
    if (!in->num_classes || in->mixture_prior) {
        if (lv)
            return fail(c, GM_E_MODEL_MISMATCH,
                        in->mixture_prior ? "label: the classes of model \"%s\" are the components of its mixture "
                                            "prior, which sample draws from; its decoder takes a latent alone"
                                          : "label: model \"%s\" is not class-conditional",
                        model_name(c));
        return true;
    }
    if (!lv)
        return fail(c, GM_E_MODEL_MISMATCH,
                    "label is required: model \"%s\" %s (an index, a class name, or an array of one per %s)",
                    model_name(c), why, per);
    c->labels = malloc((size_t)n * sizeof *c->labels);
    if (!c->labels) return fail(c, GM_E_INTERNAL, "out of memory");
    if (json_is_array(lv) && json_array_size(lv) != (size_t)n)
        return fail(c, GM_E_MODEL_MISMATCH, "label has %zu entries for %ld %ss", json_array_size(lv), n, per);
    for (long i = 0; i < n; i++)
        if (!parse_label(c, in, json_is_array(lv) ? json_array_get(lv, (size_t)i) : lv, &c->labels[i])) return false;
    return true;
}

/* translate's direction: forward (the default), reverse, or the target
 * domain's name (B for forward, A for reverse); reverse only on a model
 * with a reverse generator. The direction is the job's batching key k (1:
 * reverse), so that only jobs of one direction run in one batch. */
static bool get_direction(gm_operation *c, const gm_model_info *in, json_t *p, bool *reverse) {
    json_t *v = json_object_get(p, "direction");
    const char *s = json_string_value(v);
    char q[GM_QUOTE_LEN];
    *reverse = false;
    if (!v) return true;
    if (!s) return fail(c, GM_E_BAD_PARAM, "direction must be a string");
    if (!strcmp(s, "forward") || (in->domains && !strcmp(s, in->domains[1]))) return true;
    if (strcmp(s, "reverse") && !(in->domains && !strcmp(s, in->domains[0]))) {
        if (in->domains)
            return fail(c, GM_E_OUT_OF_RANGE,
                        "direction %s: model \"%s\" translates forward (to \"%s\") or reverse (to \"%s\")",
                        gm_quote(q, s, json_string_length(v)), model_name(c), in->domains[1], in->domains[0]);
        return fail(c, GM_E_OUT_OF_RANGE, "direction %s must be \"forward\" or \"reverse\"",
                    gm_quote(q, s, json_string_length(v)));
    }
    if (!in->reverse)
        return fail(c, GM_E_MODEL_MISMATCH,
                    "direction reverse: model \"%s\" translates one way only (its file has no reverse "
                    "generator, gm.reverse)",
                    model_name(c));
    *reverse = true;
    return true;
}

/* Images in as for logp, images out as for decode, a target class (label)
 * for a multi-domain model and a direction for a two-domain one. */
static bool prepare_translate(gm_operation *c, const gm_model_info *in, json_t *p, const gm_op_request *rq) {
    long n;
    bool reverse;
    if (!get_direction(c, in, p, &reverse) || !prepare_output_format(c, p, rq) || !read_images(c, in, p, rq, &n) ||
        !check_output_size(c, in, n) || !read_labels(c, in, p, n, "image", "translates to a target class"))
        return false;
    c->out = malloc((size_t)n * in->dim * sizeof *c->out);
    if (!c->out) return fail(c, GM_E_INTERNAL, "out of memory");
    c->job.n = (int)n;
    c->job.k = reverse;
    c->job.pixels = c->in;
    c->job.labels = c->labels;
    c->job.out_pixels = c->out;
    return true;
}

/* Decode's code: required when the model has codes (like label), one for
 * every latent or an array of one per latent. */
static bool prepare_decode_codes(gm_operation *c, const gm_model_info *in, json_t *p, long n) {
    json_t *cv = json_object_get(p, "code");
    if (!code_allowed(c, in, cv)) return false;
    if (!in->code_dim) return true;
    if (!cv)
        return fail(c, GM_E_MODEL_MISMATCH,
                    "code is required: model \"%s\" takes a continuous code of %d numbers (one array for "
                    "every latent, or an array of one per latent)",
                    model_name(c), in->code_dim);
    c->codes = malloc((size_t)n * in->code_dim * sizeof *c->codes);
    if (!c->codes) return fail(c, GM_E_INTERNAL, "out of memory");
    bool each = json_is_array(cv) && json_array_size(cv) > 0 && json_is_array(json_array_get(cv, 0));
    if (each && json_array_size(cv) != (size_t)n)
        return fail(c, GM_E_MODEL_MISMATCH, "code has %zu entries for %ld latents", json_array_size(cv), n);
    char what[32];
    for (long i = 0; i < n; i++) {
        snprintf(what, sizeof what, each ? "code[%ld]" : "code", i);
        if (!read_code(c, in, each ? json_array_get(cv, (size_t)i) : cv, what, c->codes + (size_t)i * in->code_dim))
            return false;
    }
    return true;
}

/* Decode's category: required when the model has a categorical code (like
 * label), one for every latent or an array of one per latent. */
static bool prepare_decode_cats(gm_operation *c, const gm_model_info *in, json_t *p, long n) {
    json_t *v = json_object_get(p, "cat");
    if (!v && !in->cat_dim) return true;
    if (!v)
        return fail(c, GM_E_MODEL_MISMATCH,
                    "cat is required: model \"%s\" takes a categorical code 0 to %d (one for every latent, or an "
                    "array of one per latent)",
                    model_name(c), in->cat_dim - 1);
    bool each = json_is_array(v);
    if (each && json_array_size(v) != (size_t)n)
        return fail(c, GM_E_MODEL_MISMATCH, "cat has %zu entries for %ld latents", json_array_size(v), n);
    if (!(c->cats = malloc((size_t)n * sizeof *c->cats))) return fail(c, GM_E_INTERNAL, "out of memory");
    char what[32];
    for (long i = 0; i < n; i++) {
        snprintf(what, sizeof what, each ? "cat[%ld]" : "cat", i);
        if (!read_cat(c, in, each ? json_array_get(v, (size_t)i) : v, what, &c->cats[i])) return false;
    }
    return true;
}

/* Completion's inputs, on the worker: the one image (decoded when it came
 * as PNG) copied to every row. */
static bool complete_inputs(gm_job *job) {
    gm_operation *c = (gm_operation *)((char *)job - offsetof(gm_operation, job));
    size_t D = (size_t)gm_model_get_info(job->model)->dim;
    if (!decode_pngs(job)) return false;
    for (int i = 1; i < job->n; i++) memcpy(c->in + i * D, c->in, D * sizeof *c->in);
    return true;
}

/* How much of the image is kept: exactly one of rows (whole rows from the
 * top) or prefix (values in raster order), within the model's image. */
static bool get_given(gm_operation *c, const gm_model_info *in, json_t *p) {
    json_t *rv = json_object_get(p, "rows"), *pv = json_object_get(p, "prefix");
    if (!rv == !pv)
        return fail(c, GM_E_BAD_PARAM,
                    "%s: give exactly one of rows (whole rows kept from the top, 0 to %d) or "
                    "prefix (values kept in raster order, 0 to %d)",
                    rv ? "rows and prefix were both given" : "neither rows nor prefix was given", in->height, in->dim);
    const char *key = rv ? "rows" : "prefix";
    long v, hi = rv ? in->height : in->dim;
    if (!get_long_in(c, p, key, 0, LONG_MIN, LONG_MAX, NULL, &v)) return false;
    if (v < 0 || v > hi)
        return fail(c, GM_E_OUT_OF_RANGE, "%s = %ld is out of range: 0 to %ld (model \"%s\" has %s %ld)", key, v, hi,
                    model_name(c), rv ? "images of height" : "images of H*W*C =", hi);
    c->given = rv ? v * in->width * in->channels : v;
    return true;
}

static bool prepare_complete(gm_operation *c, const gm_model_info *in, json_t *p, const gm_op_request *rq) {
    long n, images;
    float temperature;
    int label;
    json_t *iv = json_object_get(p, "images");
    if (!get_given(c, in, p) || !get_long(c, p, GM_P_N, &n) || !get_seed(c, p, true, &c->seed) ||
        !get_float(c, p, GM_P_TEMPERATURE, &temperature) || !get_label(c, in, p, &label) ||
        !prepare_output_format(c, p, rq) || !check_output_size(c, in, n))
        return false;
    if (!rq->png && json_is_array(iv) && json_array_size(iv) != 1)
        return fail(c, GM_E_OUT_OF_RANGE,
                    "images has %zu entries; complete takes exactly one image (and n for "
                    "how many completions)",
                    json_array_size(iv));
    if (!read_images(c, in, p, rq, &images)) return false;
    float *all = realloc(c->in, (size_t)n * in->dim * sizeof *all);
    if (!all) return fail(c, GM_E_INTERNAL, "out of memory");
    c->in = all;
    c->rows = calloc((size_t)n, sizeof *c->rows);
    c->out = malloc((size_t)n * in->dim * sizeof *c->out);
    c->logp = malloc((size_t)n * sizeof *c->logp);
    c->logp_rest = malloc((size_t)n * sizeof *c->logp_rest);
    if (!c->rows || !c->out || !c->logp || !c->logp_rest) return fail(c, GM_E_INTERNAL, "out of memory");
    for (long i = 0; i < n; i++) { /* seeded and labelled as sample's rows */
        gm_rng_seed(&c->rows[i].rng, c->seed, (uint64_t)i);
        c->rows[i].temperature = temperature;
        c->rows[i].label = row_label(c, in, label, i);
        c->rows[i].given = (int)c->given;
    }
    c->job.n = (int)n;
    c->job.pixels = c->in;
    c->job.rows = c->rows;
    c->job.out_pixels = c->out;
    c->job.out_logp = c->logp;
    c->job.out_logp_rest = c->logp_rest;
    c->job.prepare = complete_inputs;
    return true;
}

static bool prepare_decode(gm_operation *c, const gm_model_info *in, json_t *p, const gm_op_request *rq) {
    double bound = gm_params[GM_P_CODE].max;
    json_t *latents = json_object_get(p, "latents");
    if (!json_is_array(latents))
        return fail(c, GM_E_BAD_PARAM, "the body needs \"latents\": [[%d numbers], ...]", in->latent_dim);
    long n = (long)json_array_size(latents);
    if (!count_in_range(c, GM_P_LATENTS, n)) return false;
    if (!prepare_output_format(c, p, rq) || !check_output_size(c, in, n)) return false;
    c->in = malloc((size_t)n * in->latent_dim * sizeof *c->in);
    c->out = malloc((size_t)n * in->dim * sizeof *c->out);
    if (!c->in || !c->out) return fail(c, GM_E_INTERNAL, "out of memory");
    for (long i = 0; i < n; i++) {
        json_t *z = json_array_get(latents, (size_t)i);
        if (!json_is_array(z) || json_array_size(z) != (size_t)in->latent_dim)
            return fail(c, GM_E_MODEL_MISMATCH, "latents[%ld] must be an array of %d numbers (the model's latent size)",
                        i, in->latent_dim);
        for (int j = 0; j < in->latent_dim; j++) {
            json_t *v = json_array_get(z, (size_t)j);
            double x = json_number_value(v);
            if (!json_is_number(v) || !(fabs(x) <= bound))
                return fail(c, GM_E_OUT_OF_RANGE, "latents[%ld][%d] must be a number within +-%g", i, j, bound);
            c->in[(size_t)i * in->latent_dim + j] = (float)x;
        }
    }
    if (!read_labels(c, in, p, n, "latent", "is class-conditional") || !prepare_decode_codes(c, in, p, n) ||
        !prepare_decode_cats(c, in, p, n))
        return false;
    c->job.n = (int)n;
    c->job.z = c->in;
    c->job.labels = c->labels;
    c->job.codes = c->codes;
    c->job.cats = c->cats;
    c->job.out_pixels = c->out;
    return true;
}

static bool prepare_op(gm_operation *c, const gm_op_request *rq) {
    const gm_model_info *in = gm_model_get_info(c->served->model);
    gm_op op = rq->op;
    c->job = (gm_job){.model = c->served->model, .op = op, .slot = c->served->slot};
    c->scale = 1;
    if (!check_params(c, op, rq->params) || !needs(c, in, op)) return false;
    switch (op) {
    case GM_OP_SAMPLE:
        return prepare_sample(c, in, rq->params, rq);
    case GM_OP_LOGP:
        return prepare_logp(c, in, rq->params, rq);
    case GM_OP_ENCODE:
        return prepare_encode(c, in, rq->params, rq);
    case GM_OP_DECODE:
        return prepare_decode(c, in, rq->params, rq);
    case GM_OP_DISCRIMINATE:
        return prepare_discriminate(c, in, rq->params, rq);
    case GM_OP_RECONSTRUCT:
        return prepare_reconstruct(c, in, rq->params, rq);
    case GM_OP_COMPLETE:
        return prepare_complete(c, in, rq->params, rq);
    case GM_OP_TRANSLATE:
        return prepare_translate(c, in, rq->params, rq);
    case GM_OP_COUNT:
        break;
    }
    return fail(c, GM_E_INTERNAL, "operation %d has no preparation", (int)op);
}

/* Every prepared job then passes admission by cost (cost.h). */
gm_operation *gm_operation_prepare(gm_server *srv, const gm_op_request *rq, gm_reply *reply) {
    gm_operation *c = calloc(1, sizeof *c);
    if (!c) {
        gm_reply_error(reply, GM_E_INTERNAL, "out of memory");
        return NULL;
    }
    c->srv = srv;
    c->cfg = rq->cfg;
    c->served = gm_served_retain(rq->model);
    c->reply = reply;
    bool ok = prepare_op(c, rq) && gm_cost_admit(c->cfg, &c->job, c->scale, reply);
    c->reply = NULL;
    if (ok && c->etag[0] && gm_etag_matches(rq->if_none_match, c->etag)) {
        /* the client holds this very reply: 304, and the model does not run */
        cache_headers(c, reply);
        gm_reply_header(reply, "Vary", "Accept");
        gm_reply_not_modified(reply);
        ok = false;
    }
    if (!ok) {
        gm_operation_free(c);
        return NULL;
    }
    return c;
}

gm_job *gm_operation_job(gm_operation *o) { return &o->job; }

void gm_operation_free(gm_operation *c) {
    if (!c) return;
    release_pngs(c);
    gm_served_release(c->served);
    free(c->in);
    free(c->out);
    free(c->out2);
    free(c->codes);
    free(c->cats);
    free(c->labels);
    free(c->rows);
    free(c->logp);
    free(c->logp_rest);
    free(c->lp);
    free(c);
}

static json_t *number(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* An npy reply of x's float32 values in the given shape. */
static void reply_npy(gm_operation *c, gm_reply *reply, const float *x, int ndim, const long *shape) {
    uint8_t *b;
    size_t len;
    if (gm_npy_write_f32(x, ndim, shape, &b, &len)) return gm_reply_error(reply, GM_E_INTERNAL, "out of memory");
    gm_reply_bytes(reply, c->npy_type, b, len);
}

/* "png":"base64" of image i into w; false with err filled. */
static bool png_image(gm_operation *c, const gm_model_info *in, int i, const char *desc, gm_jw *w,
                      char err[GM_ERR_LEN]) {
    uint8_t *png;
    size_t len;
    if (gm_png_encode(c->out + (size_t)i * in->dim, 1, in->height, in->width, in->channels, c->scale, desc, &png, &len,
                      err))
        return false;
    char *b64 = gm_base64_encode(png, len);
    free(png);
    if (!b64) return !gm_errorf(err, "out of memory");
    gm_jw_lit(w, "\"png\":\"");
    gm_jw_raw(w, b64, strlen(b64)); /* base64 needs no escaping */
    gm_jw_lit(w, "\"");
    free(b64);
    return true;
}

/* Sample, decode, reconstruct and complete replies: one PNG (a grid for
 * n > 1), an npy array (n, H, W, C), or JSON with one PNG or one array of
 * pixels per image. */
static void finish_images(gm_operation *c, const gm_model_info *in, gm_reply *reply) {
    char err[GM_ERR_LEN], desc[160];
    int n = c->job.n;
    snprintf(desc, sizeof desc, "gmserve model=%s op=%s n=%d seed=%llu", model_name(c), gm_op_name(c->job.op), n,
             (unsigned long long)c->seed);
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seed);
    bool seeded = c->job.op == GM_OP_SAMPLE || c->job.op == GM_OP_COMPLETE;
    if (seeded) gm_reply_header(reply, "X-Seed", "%s", seed);
    if (c->etag[0]) cache_headers(c, reply);
    if (c->format == GM_FORMAT_PNG) {
        uint8_t *png;
        size_t len;
        if (gm_png_encode(c->out, n, in->height, in->width, in->channels, c->scale, desc, &png, &len, err))
            return gm_reply_error(reply, GM_E_INTERNAL, "%s", err);
        return gm_reply_bytes(reply, "image/png", png, len);
    }
    if (c->format == GM_FORMAT_NPY)
        return reply_npy(c, reply, c->out, 4, (const long[]){n, in->height, in->width, in->channels});
    /* written as text (jsonw.h), as jansson wrote it: numbers at 10 digits */
    gm_jw w;
    gm_jw_init(&w, 160 + (size_t)n * (c->format == GM_FORMAT_PIXELS ? 16 * (size_t)in->dim : 1400));
    gm_jw_lit(&w, "{\"model\":");
    gm_jw_str(&w, model_name(c));
    gm_jw_lit(&w, ",\"images\":[");
    for (int i = 0; i < n; i++) {
        if (i) gm_jw_lit(&w, ",");
        gm_jw_lit(&w, "{");
        if (c->format != GM_FORMAT_PIXELS) {
            if (!png_image(c, in, i, desc, &w, err)) {
                free(w.buf);
                return gm_reply_error(reply, GM_E_INTERNAL, "%s", err);
            }
        } else {
            const float *x = c->out + (size_t)i * in->dim;
            gm_jw_lit(&w, "\"pixels\":[");
            for (int j = 0; j < in->dim; j++) {
                if (j) gm_jw_lit(&w, ",");
                gm_jw_double(&w, x[j]);
            }
            gm_jw_lit(&w, "]");
        }
        if (c->logp) {
            gm_jw_lit(&w, ",\"logp\":");
            gm_jw_double(&w, c->logp[i]);
        }
        if (c->logp_rest) {
            gm_jw_lit(&w, ",\"logp_completion\":");
            gm_jw_double(&w, c->logp_rest[i]);
        }
        int label = c->rows ? c->rows[i].label : c->labels ? c->labels[i] : -1;
        if (in->num_classes && label >= 0) {
            gm_jw_lit(&w, ",\"label\":");
            gm_jw_int(&w, label);
            if (in->class_names) {
                gm_jw_lit(&w, ",\"class\":");
                gm_jw_str(&w, in->class_names[label]);
            }
        }
        gm_jw_lit(&w, "}");
    }
    gm_jw_lit(&w, "]");
    if (seeded) {
        gm_jw_lit(&w, ",\"seed\":");
        if (c->seed <= INT64_MAX) gm_jw_int(&w, (long long)c->seed);
        else gm_jw_str(&w, seed);
    }
    if (c->job.op == GM_OP_COMPLETE) {
        gm_jw_lit(&w, ",\"given\":");
        gm_jw_int(&w, c->given);
    }
    if (c->job.op == GM_OP_TRANSLATE && in->domains) { /* which way, and the domain the images are in now */
        gm_jw_lit(&w, ",\"direction\":");
        gm_jw_str(&w, c->job.k ? "reverse" : "forward");
        gm_jw_lit(&w, ",\"domain\":");
        gm_jw_str(&w, in->domains[c->job.k ? 0 : 1]);
    }
    gm_jw_lit(&w, "}");
    gm_reply_jw(reply, &w);
}

/* The float replies (logp, encode) are written as text directly (jsonw.h):
 * at about 16 bytes a number, one buffer of the right size. */
static void finish_logp(gm_operation *c, const gm_model_info *in, gm_reply *reply) {
    if (c->format == GM_FORMAT_NPY) { /* log p alone, as float32 (n,) */
        float *x = malloc((size_t)c->job.n * sizeof *x);
        if (!x) return gm_reply_error(reply, GM_E_INTERNAL, "out of memory");
        for (int i = 0; i < c->job.n; i++) x[i] = (float)c->lp[i].logp;
        reply_npy(c, reply, x, 1, (const long[]){c->job.n});
        free(x);
        return;
    }
    int n = c->job.n;
    gm_jw w;
    gm_jw_init(&w, 160 + (size_t)n * 112);
    gm_jw_lit(&w, "{\"model\":");
    gm_jw_str(&w, model_name(c));
    if (in->exact_logp) gm_jw_lit(&w, ",\"method\":\"exact\",\"results\":[");
    else gm_jw_lit(&w, ",\"method\":\"importance_sampling\",\"results\":[");
    for (int i = 0; i < n; i++) {
        const gm_logp_result *r = &c->lp[i];
        if (i) gm_jw_lit(&w, ",");
        gm_jw_lit(&w, "{\"logp\":");
        gm_jw_double(&w, r->logp);
        gm_jw_lit(&w, ",\"bits_per_dim\":");
        gm_jw_double(&w, -r->logp / (in->dim * M_LN2));
        if (!in->exact_logp) {
            gm_jw_lit(&w, ",\"elbo\":");
            gm_jw_double(&w, r->elbo);
            if (isfinite(r->se)) {
                gm_jw_lit(&w, ",\"se\":");
                gm_jw_double(&w, r->se);
            }
        }
        gm_jw_lit(&w, "}");
    }
    gm_jw_lit(&w, "]");
    if (!in->exact_logp) {
        gm_jw_lit(&w, ",\"k\":");
        gm_jw_int(&w, c->job.k);
        gm_jw_lit(&w, ",\"seed\":");
        if (c->seed <= INT64_MAX) gm_jw_int(&w, (long long)c->seed);
        else gm_jw_lit(&w, "null");
    }
    gm_jw_lit(&w, "}");
    gm_reply_jw(reply, &w);
}

/* An InfoGAN's Q outputs, per image: the categorical code's distribution
 * (softmax of the logits, shifted by their maximum so that no logit
 * overflows), its most likely category, and the continuous codes. */
static void finish_encode_q(gm_operation *c, const gm_model_info *in, gm_reply *reply) {
    int K = in->cat_dim, L = in->code_dim;
    json_t *results = json_array();
    for (int i = 0; i < c->job.n; i++) {
        const float *q = c->out + (size_t)i * (K + L);
        json_t *r = json_object();
        if (K) {
            int best = 0;
            for (int k = 1; k < K; k++) best = q[k] > q[best] ? k : best;
            double sum = 0;
            for (int k = 0; k < K; k++) sum += exp((double)q[k] - q[best]);
            json_t *probs = json_array();
            for (int k = 0; k < K; k++) json_array_append_new(probs, number(exp((double)q[k] - q[best]) / sum));
            json_object_set_new(r, "cat_probabilities", probs);
            json_object_set_new(r, "cat", json_integer(best));
        }
        json_t *code = json_array();
        for (int j = 0; j < L; j++) json_array_append_new(code, number(q[K + j]));
        json_object_set_new(r, "code", code);
        json_array_append_new(results, r);
    }
    gm_reply_json(reply, json_pack("{s:s,s:o}", "model", model_name(c), "results", results));
}

static void finish_encode(gm_operation *c, const gm_model_info *in, gm_reply *reply) {
    if (c->format == GM_FORMAT_NPY) /* z alone (a VAE's mean), or Q's logits then codes: (n, encode_dim) */
        return reply_npy(c, reply, c->out, 2, (const long[]){c->job.n, in->encode_dim});
    if (in->encode_q) return finish_encode_q(c, in, reply);
    int n = c->job.n, K = in->num_classes;
    size_t e = (size_t)in->encode_dim;
    /* a mixture AAE: the component each code falls in, and the posterior over all K */
    double *probs = in->mixture_prior ? malloc((size_t)n * K * sizeof *probs) : NULL;
    int *best = in->mixture_prior ? malloc((size_t)n * sizeof *best) : NULL;
    if (in->mixture_prior && (!probs || !best || gm_model_component_probs(c->job.model, n, c->out, probs, best))) {
        free(probs);
        free(best);
        return gm_reply_error(reply, GM_E_INTERNAL, "out of memory building the reply");
    }
    gm_jw w;
    gm_jw_init(&w, 64 + (size_t)n * (32 + 2 * e * 16 + (probs ? 64 + (size_t)K * 18 : 0)));
    gm_jw_lit(&w, "{\"model\":");
    gm_jw_str(&w, model_name(c));
    gm_jw_lit(&w, ",\"results\":[");
    for (int i = 0; i < n; i++) {
        if (i) gm_jw_lit(&w, ",");
        gm_jw_lit(&w, "{\"z\":");
        gm_jw_floats(&w, c->out + (size_t)i * e, e);
        if (c->out2) {
            gm_jw_lit(&w, ",\"logvar\":");
            gm_jw_floats(&w, c->out2 + (size_t)i * e, e);
        }
        if (probs) {
            gm_jw_lit(&w, ",\"component\":");
            gm_jw_int(&w, best[i]);
            if (in->class_names) {
                gm_jw_lit(&w, ",\"class\":");
                gm_jw_str(&w, in->class_names[best[i]]);
            }
            gm_jw_lit(&w, ",\"component_probs\":[");
            for (int k = 0; k < K; k++) {
                if (k) gm_jw_lit(&w, ",");
                gm_jw_double(&w, probs[(size_t)i * K + k]);
            }
            gm_jw_lit(&w, "]");
        }
        gm_jw_lit(&w, "}");
    }
    gm_jw_lit(&w, "]}");
    free(probs);
    free(best);
    gm_reply_jw(reply, &w);
}

/* Per image: the logit, D(x) = sigmoid(logit), and log D(x) (the realness:
 * 0 for an image the discriminator is sure is real, very negative for a
 * fake), computed without overflow for logits of any size. */
static void finish_discriminate(gm_operation *c, gm_reply *reply) {
    json_t *results = json_array();
    for (int i = 0; i < c->job.n; i++) {
        double l = c->out[i], log_d = -(log1p(exp(-fabs(l))) + (l < 0 ? -l : 0));
        json_array_append_new(results, json_pack("{s:o,s:o,s:o}", "logit", number(l), "probability", number(exp(log_d)),
                                                 "realness", number(log_d)));
    }
    gm_reply_json(reply, json_pack("{s:s,s:o}", "model", model_name(c), "results", results));
}

uint64_t gm_operation_seed(const gm_operation *o) { return o->seed; }

void gm_operation_finish(gm_operation *c, gm_reply *reply) {
    const gm_model_info *in = gm_model_get_info(c->job.model);
    switch (c->job.status) {
    case GM_JOB_EXPIRED:
        return gm_reply_error(reply, GM_E_DEADLINE,
                              "the request passed its deadline (%ld ms, the server's deadline_ms "
                              "setting) waiting or computing; it was stopped: retry later, or ask "
                              "for less (fewer rows, a lower k)",
                              c->cfg->deadline_ms);
    case GM_JOB_CANCELLED:
        return gm_reply_error(reply, GM_E_CLIENT_GONE, "the client closed the connection");
    case GM_JOB_FAILED:
        return gm_reply_error(reply, GM_E_INTERNAL, "out of memory computing the batch");
    case GM_JOB_INVALID:
        return gm_reply_error(reply, c->invalid_kind, "%s", c->invalid);
    case GM_JOB_OK:
        break;
    }
    gm_reply_header(reply, "Vary", "Accept"); /* the format may follow Accept */
    switch (c->job.op) {
    case GM_OP_SAMPLE:
    case GM_OP_DECODE:
    case GM_OP_RECONSTRUCT:
    case GM_OP_TRANSLATE:
        return finish_images(c, in, reply);
    case GM_OP_COMPLETE:
        return finish_images(c, in, reply);
    case GM_OP_LOGP:
        return finish_logp(c, in, reply);
    case GM_OP_ENCODE:
        return finish_encode(c, in, reply);
    case GM_OP_DISCRIMINATE:
        return finish_discriminate(c, reply);
    case GM_OP_COUNT:
        break;
    }
    gm_reply_error(reply, GM_E_INTERNAL, "operation %d has no reply", (int)c->job.op);
}
