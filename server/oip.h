/*
 * oip.h - the Open Inference Protocol v2 (KServe V2, Triton) as tensors in
 * and tensors out, independent of HTTP and of the queue (docs/oip.md).
 *
 * An infer request is a JSON object naming typed tensors, optionally
 * followed by their raw bytes (the binary tensor data extension: the
 * Inference-Header-Content-Length header says where the JSON ends).
 * gm_oip_parse checks the protocol's rules; gm_oip_bind checks the tensors
 * against one model's inputs, picks the operation from the input names and
 * the requested outputs, and turns them into that operation's native
 * parameters, the same JSON object a /v1 request would carry, so that an
 * infer request is validated, costed, queued and batched exactly like a
 * native one. gm_oip_respond turns the finished operation's arrays into the
 * reply: JSON, or JSON followed by binary tensors.
 *
 * Every function that reads a request returns false (or NULL) with a
 * message and the kind of error (errors.h): bad_request for what breaks
 * the protocol or does not fit the model, too_many_values for a JSON
 * header with more values than any request to the model could use,
 * internal when memory ran out.
 */
#ifndef GM_OIP_H
#define GM_OIP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "gm/error.h"
#include "gm/model.h"

/* The one version each model has: "1". */
#define GM_OIP_VERSION "1"

/* Output tensors, in the order an operation returns them by default. */
typedef enum {
    GM_OIP_OUT_IMAGES,
    GM_OIP_OUT_LOGP,
    GM_OIP_OUT_BITS_PER_DIM,
    GM_OIP_OUT_ELBO,
    GM_OIP_OUT_SE,
    GM_OIP_OUT_Z,
    GM_OIP_OUT_LOGVAR,
    GM_OIP_OUT_COMPONENT_PROBS,
    GM_OIP_OUT_LOGIT,
    GM_OIP_OUT_PROBABILITY,
    GM_OIP_OUT_REALNESS,
    GM_OIP_OUT_LABEL,
    GM_OIP_OUT_COUNT
} gm_oip_output;

/* What gm_oip_bind needs of the server: its limits and which operations
 * the native layer serves. */
typedef struct {
    long max_images; /* rows of images or latents per request */
    long default_k;  /* a VAE logp's k when the request gives none */
    bool serves[GM_OP_COUNT];
} gm_oip_limits;

typedef struct gm_oip_request gm_oip_request;

/* A request bound to a model: the operation, its native parameters and the
 * outputs to return. */
typedef struct {
    gm_op op;
    json_t *params; /* owned: the native parameters of op (README "Using the server") */
    int n_outputs;
    gm_oip_output outputs[GM_OIP_OUT_COUNT]; /* in reply order */
    bool binary[GM_OIP_OUT_COUNT];           /* outputs[i] travels as binary data */
    char *id;                                /* malloc'd copy of the request's "id", or NULL */
} gm_oip_plan;

/* Parses body (len bytes). header_len is the Inference-Header-Content-Length
 * value, or -1 when the header is absent (then all of body is JSON).
 * max_values bounds the JSON values of the header, checked before it is
 * parsed (about 40 bytes of memory each). The request refers into body,
 * which must outlive it. */
gm_oip_request *gm_oip_parse(const uint8_t *body, size_t len, long long header_len, size_t max_values,
                             gm_error_kind *kind, char err[GM_ERR_LEN]);
void gm_oip_request_free(gm_oip_request *r); /* accepts NULL */

/* Binds the request to model (named name, described by in). Fills plan
 * (release it with gm_oip_plan_release) or returns false. */
bool gm_oip_bind(const gm_oip_request *r, const gm_model_info *in, const gm_oip_limits *lim, gm_oip_plan *plan,
                 gm_error_kind *kind, char err[GM_ERR_LEN]);
void gm_oip_plan_release(gm_oip_plan *plan);

/* What a finished operation computed (n rows): the arrays its op fills,
 * NULL for the others. */
typedef struct {
    int n;
    const float *pixels;           /* sample, decode: (n, D) */
    const double *logp;            /* sample of a NADE: (n) */
    const int *labels;             /* conditional sample, decode: (n) */
    const gm_logp_result *lp;      /* logp: (n) */
    const float *z, *logvar;       /* encode: (n, encode_dim) each; logvar of a VAE */
    const double *component_probs; /* encode of a mixture AAE: (n, num_classes), gm_model_component_probs */
    const float *logits;           /* discriminate: (n) */
    int k;                         /* logp: importance samples; 0 = exact */
    bool has_seed;                 /* sample and a VAE logp report their seed */
    uint64_t seed;
} gm_oip_results;

/* Builds the infer reply: a malloc'd body of *len bytes whose first
 * *json_len bytes are the JSON object; *json_len < *len when binary
 * tensors follow it (then send Inference-Header-Content-Length: *json_len
 * and Content-Type application/octet-stream). False only when memory ran
 * out. */
bool gm_oip_respond(const gm_oip_plan *plan, const char *model_name, const gm_model_info *in, const gm_oip_results *res,
                    uint8_t **body, size_t *len, size_t *json_len);

/* The model metadata object: name, versions, platform, and the inputs and
 * outputs (-1 for the batch dimension) of the model's default operation
 * (logp, else decode, else sample: what runs when a client sends just those
 * inputs), named in default_operation; operations lists every operation
 * with its required and optional inputs, outputs and parameters. */
json_t *gm_oip_model_metadata(const char *model_name, const gm_model_info *in, const gm_oip_limits *lim);

/* The server metadata object. */
json_t *gm_oip_server_metadata(const char *version);

/* The most JSON values an infer request's header can usefully hold for the
 * model: three times its largest input times max_images (nested data
 * counts its brackets and commas too), plus the request's structure. */
size_t gm_oip_max_values(const gm_model_info *in, long max_images);

#endif
