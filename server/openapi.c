/*
 * openapi.c - the OpenAPI 3.1 document of GET /openapi.json (see openapi.h).
 *
 * Nothing here lists a route, a parameter or a status of its own: paths
 * come from the route table (routes.h), their parameters, ranges and
 * defaults from the parameter table (params.h) read under the running
 * settings, the reply formats from formats.h and the error statuses from
 * the error table (errors.h). What is written here is only how each of
 * those is spelled in OpenAPI: JSON Schema 2020-12 for values, a response
 * per status, the reply bodies' shapes. So a route or a parameter added to
 * a table appears in the document without a change here, and the test
 * (tests/test_openapi.c) compares the document with the tables.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "errors.h"
#include "formats.h"
#include "openapi.h"
#include "params.h"
#include "routes.h"

/* Where an error kind can happen, for the statuses each operation lists. */
typedef enum { ANY_ROUTE, OPERATIONS, KEYED, NAMED, POST_BODY, READINESS, ADMIN, NOT_SEEN } error_scope;

static const error_scope SCOPE[GM_E_COUNT] = {
    [GM_E_BAD_PARAM] = OPERATIONS,      [GM_E_UNKNOWN_PARAM] = OPERATIONS, [GM_E_UNAUTHORIZED] = KEYED,
    [GM_E_NOT_FOUND] = NAMED,           [GM_E_METHOD] = NOT_SEEN,          [GM_E_TOO_MANY_VALUES] = POST_BODY,
    [GM_E_MEDIA_TYPE] = POST_BODY,      [GM_E_OUT_OF_RANGE] = OPERATIONS,  [GM_E_UNSUPPORTED_OP] = OPERATIONS,
    [GM_E_MODEL_MISMATCH] = OPERATIONS, [GM_E_TOO_COSTLY] = OPERATIONS,    [GM_E_CLIENT_GONE] = NOT_SEEN,
    [GM_E_QUEUE_FULL] = OPERATIONS,     [GM_E_DRAINING] = OPERATIONS,      [GM_E_NOT_READY] = READINESS,
    [GM_E_DEADLINE] = OPERATIONS,       [GM_E_FORBIDDEN] = ADMIN,          [GM_E_CONFLICT] = ADMIN,
    [GM_E_RELOAD_REFUSED] = ADMIN,
};

/* A $ref to a component. */
static json_t *ref(const char *kind, const char *name) {
    char path[96];
    snprintf(path, sizeof path, "#/components/%s/%s", kind, name);
    return json_pack("{s:s}", "$ref", path);
}

/* A bound as JSON: an integer where it is one, so integer parameters have
 * integer bounds. */
static json_t *num(double x) {
    return x == (double)(json_int_t)x && x > -9007199254740992.0 && x < 9007199254740992.0 ? json_integer((json_int_t)x)
                                                                                           : json_real(x);
}

static json_t *media(json_t *schema) { return json_pack("{s:o}", "schema", schema); }

static json_t *binary(const char *type) { return json_pack("{s:s,s:s}", "type", "string", "contentMediaType", type); }

static json_t *number_range(double lo, double hi) {
    return json_pack("{s:s,s:o,s:o}", "type", "number", "minimum", num(lo), "maximum", num(hi));
}

/* The Open Inference Protocol's routes (oip_routes.h) answer errors in
 * that protocol's shape, {"error": "<message>"}. */
static bool is_v2(const gm_route_def *r) { return !strncmp(r->pattern, "/v2", 3); }

/* Whether a route computes: a model operation, or a v2 infer that runs one. */
static bool computes(const gm_route_def *r) { return r->op >= 0 || r->route == GM_ROUTE_V2_INFER; }

/* The name of the path parameter under the k-th "*" of a pattern: a file
 * under /ui, else the model name, then (v2) its version. */
static const char *segment_name(const gm_route_def *r, int k) {
    return r->route == GM_ROUTE_PAGE ? "file" : k == 0 ? "name" : "version";
}

/* The path template of a route pattern: each "*" becomes {its name}. */
static void template_of(const gm_route_def *r, char *out, size_t n) {
    size_t o = 0;
    int k = 0;
    for (const char *p = r->pattern; *p && o + 12 < n; p++) {
        if (*p == '*') o += (size_t)snprintf(out + o, n - o, "{%s}", segment_name(r, k++));
        else out[o++] = *p;
    }
    out[o] = 0;
}

/* A unique operationId: the method and the pattern's words, e.g.
 * get_v1_models_name_sample ("/" is _index, a trailing "/" _slash). */
static void operation_id(const gm_route_def *r, const char *method, char *out, size_t n) {
    size_t o = (size_t)snprintf(out, n, "%s", method), len = strlen(r->pattern);
    bool word = false;
    int k = 0;
    for (const char *p = r->pattern; *p && o + 12 < n; p++) {
        bool alnum = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9');
        if (*p == '*') o += (size_t)snprintf(out + o, n - o, "_%s", segment_name(r, k++));
        else if (alnum) {
            if (!word) out[o++] = '_';
            out[o++] = *p;
        }
        word = alnum;
    }
    if (len == 1) o += (size_t)snprintf(out + o, n - o, "_index");
    else if (r->pattern[len - 1] == '/') o += (size_t)snprintf(out + o, n - o, "_slash");
    out[o] = 0;
}

/* The JSON Schema of parameter p for op; in_query: as a query string
 * carries it (code is then JSON text). */
static json_t *param_schema(gm_param p, gm_op op, bool get, bool in_query, const gm_config *cfg) {
    const gm_param_def *d = &gm_params[p];
    json_t *s;
    if (p == GM_P_SEED) { /* u64: JSON integers stop at 2^63 - 1, so larger seeds travel as decimal strings */
        s = json_pack("{s:[{s:s,s:o,s:I},{s:s,s:s}]}", "oneOf", "type", "integer", "minimum", num(d->min), "maximum",
                      (json_int_t)INT64_MAX, "type", "string", "pattern", "^[0-9]{1,20}$");
        json_object_set_new(s, "x-gmserve-range", json_pack("[o,s]", num(d->min), "18446744073709551615"));
    } else if (p == GM_P_LABEL) {
        json_t *one =
            json_pack("{s:[{s:s,s:o},{s:s}]}", "oneOf", "type", "integer", "minimum", num(d->min), "type", "string");
        s = (op == GM_OP_DECODE || op == GM_OP_TRANSLATE) && !in_query
                ? json_pack("{s:[o,{s:s,s:O}]}", "oneOf", one, "type", "array", "items", one)
                : one;
    } else if (p == GM_P_DIRECTION) { /* forward, reverse, or a model's own domain name: no enum */
        s = json_pack("{s:s,s:s,s:[s,s]}", "type", "string", "default", "forward", "examples", "forward", "reverse");
    } else if (p == GM_P_CAT) {
        json_t *one = json_pack("{s:s,s:o}", "type", "integer", "minimum", num(0));
        s = op == GM_OP_DECODE && !in_query
                ? json_pack("{s:[o,{s:s,s:O}]}", "oneOf", one, "type", "array", "items", one)
                : one;
    } else if (p == GM_P_CODE) {
        json_t *one = json_pack("{s:s,s:o}", "type", "array", "items", number_range(d->min, d->max));
        if (in_query) {
            json_decref(one);
            s = json_pack("{s:s,s:s}", "type", "string", "description", "the code as JSON text, e.g. [0.5,-1]");
        } else if (op == GM_OP_DECODE) s = json_pack("{s:[o,{s:s,s:O}]}", "oneOf", one, "type", "array", "items", one);
        else s = one;
    } else if (p == GM_P_IMAGES) {
        json_t *png = json_pack("{s:s,s:[s],s:{s:{s:s,s:s,s:s}},s:b}", "type", "object", "required", "png",
                                "properties", "png", "type", "string", "contentEncoding", "base64", "contentMediaType",
                                "image/png", "additionalProperties", 0);
        json_t *pixels =
            json_pack("{s:s,s:[s],s:{s:{s:s,s:o}},s:b}", "type", "object", "required", "pixels", "properties", "pixels",
                      "type", "array", "items", number_range(0, 1), "additionalProperties", 0);
        s = json_pack("{s:s,s:o,s:o,s:{s:[o,o]}}", "type", "array", "minItems", num(d->min), "maxItems",
                      num(gm_param_max(p, cfg)), "items", "oneOf", png, pixels);
    } else if (p == GM_P_LATENTS) {
        s = json_pack("{s:s,s:o,s:o,s:{s:s,s:o}}", "type", "array", "minItems", num(d->min), "maxItems",
                      num(gm_param_max(p, cfg)), "items", "type", "array", "items",
                      number_range(gm_params[GM_P_CODE].min, gm_params[GM_P_CODE].max));
    } else if (p == GM_P_FORMAT) {
        json_t *values = json_array();
        unsigned formats = gm_formats_of(op);
        for (int f = 0; f < GM_FORMAT_COUNT; f++)
            if (formats & GM_FORMAT_BIT(f)) json_array_append_new(values, json_string(gm_format_names[f]));
        s = json_pack("{s:s,s:o,s:s}", "type", "string", "enum", values, "default",
                      gm_format_names[gm_format_default(op, get)]);
    } else if (d->choices[0]) {
        json_t *values = json_array();
        for (int i = 0; i < (int)(sizeof d->choices / sizeof d->choices[0]) && d->choices[i]; i++)
            json_array_append_new(values, json_string(d->choices[i]));
        s = json_pack("{s:s,s:o,s:s}", "type", "string", "enum", values, "default", d->choices[0]);
    } else { /* an integer or a number with a range */
        s = json_pack("{s:s,s:o}", "type", d->type, "maximum", num(gm_param_max(p, cfg)));
        json_object_set_new(s, d->min_open ? "exclusiveMinimum" : "minimum", num(d->min));
        if (strcmp(d->dflt_text, "none") != 0) /* truncation's default is "off", not a value */
            json_object_set_new(s, "default", num(gm_param_default(p, cfg)));
    }
    json_object_set_new(s, "description", json_string(d->description));
    if (d->max_setting) json_object_set_new(s, "x-gmserve-max-setting", json_string(d->max_setting));
    if (d->dflt_setting) json_object_set_new(s, "x-gmserve-default-setting", json_string(d->dflt_setting));
    return s;
}

/* The names of the models served now, for the {name} and model enums. */
typedef struct {
    const char *const *names;
    int n;
} model_list;

static json_t *model_names(const model_list *ml) {
    json_t *a = json_array();
    for (int i = 0; i < ml->n; i++) json_array_append_new(a, json_string(ml->names[i]));
    return a;
}

/* The parameters of one operation: path, query and headers. */
static json_t *parameters(const gm_route_def *r, bool get, const gm_config *cfg, const model_list *ml) {
    json_t *list = json_array();
    if (strstr(r->pattern, "*/versions/*"))
        json_array_append_new(list, json_pack("{s:s,s:s,s:b,s:s,s:{s:s}}", "name", "version", "in", "path", "required",
                                              1, "description", "the model's version: each model has one, \"1\"",
                                              "schema", "type", "string"));
    if (strchr(r->pattern, '*')) {
        bool page = r->route == GM_ROUTE_PAGE;
        json_t *schema = page ? json_pack("{s:s,s:s}", "type", "string", "pattern", "^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
                              : json_pack("{s:s,s:o}", "type", "string", "enum", model_names(ml));
        json_array_append_new(
            list, json_pack("{s:s,s:s,s:b,s:s,s:o}", "name", page ? "file" : "name", "in", "path", "required", 1,
                            "description", page ? "a file of the web page" : "a model name (GET /v1/models lists them)",
                            "schema", schema));
    }
    if (r->op < 0) return list;
    if (!strchr(r->pattern, '*'))
        json_array_append_new(list,
                              json_pack("{s:s,s:s,s:s,s:{s:s,s:o,s:s}}", "name", "model", "in", "query", "description",
                                        "the model to use; without it, the default model", "schema", "type", "string",
                                        "enum", model_names(ml), "default", cfg->default_model));
    for (int p = 0; p < GM_P_COUNT; p++) {
        if (!gm_param_takes((gm_param)p, (gm_op)r->op) || (!strcmp(gm_params[p].type, "array") && p != GM_P_CODE))
            continue;
        json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:o}", "name", gm_params[p].name, "in", "query",
                                              "description", gm_params[p].description, "schema",
                                              param_schema((gm_param)p, (gm_op)r->op, get, true, cfg)));
    }
    json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:{s:s}}", "name", "Accept", "in", "header", "description",
                                          "application/x-npy or application/octet-stream asks for format=npy when "
                                          "no format is given",
                                          "schema", "type", "string"));
    if (get && r->op == GM_OP_SAMPLE)
        json_array_append_new(list,
                              json_pack("{s:s,s:s,s:s,s:{s:s}}", "name", "If-None-Match", "in", "header", "description",
                                        "the ETag of a seeded sample already held: 304 without computing it", "schema",
                                        "type", "string"));
    return list;
}

/* The JSON body of a POST: every parameter the operation takes. */
static json_t *request_body(const gm_route_def *r, const gm_config *cfg) {
    json_t *props = json_object(), *required = json_array();
    for (int p = 0; p < GM_P_COUNT; p++)
        if (gm_param_takes((gm_param)p, (gm_op)r->op))
            json_object_set_new(props, gm_params[p].name, param_schema((gm_param)p, (gm_op)r->op, false, false, cfg));
    if (json_object_get(props, "images")) json_array_append_new(required, json_string("images"));
    if (json_object_get(props, "latents")) json_array_append_new(required, json_string("latents"));
    json_t *content = json_pack("{s:o}", "application/json",
                                media(json_pack("{s:s,s:o,s:o,s:b}", "type", "object", "properties", props, "required",
                                                required, "additionalProperties", 0)));
    if (gm_param_takes(GM_P_IMAGES, (gm_op)r->op)) /* one image as the whole body; its parameters in the query */
        json_object_set_new(content, "image/png", media(binary("image/png")));
    return json_pack("{s:b,s:o}", "required", r->op == GM_OP_SAMPLE ? 0 : 1, "content", content);
}

/* A v2 infer body: the protocol's JSON request, or with the binary tensor
 * extension its JSON header followed by the tensors' bytes. */
static json_t *infer_body(void) {
    return json_pack("{s:b,s:{s:o,s:o}}", "required", 1, "content", "application/json",
                     media(ref("schemas", "InferRequest")), "application/octet-stream",
                     media(binary("application/octet-stream")));
}

static json_t *header_doc(const char *description) {
    return json_pack("{s:s,s:{s:s}}", "description", description, "schema", "type", "string");
}

/* The 200 of a route: its media types and schemas. */
static json_t *ok_response(const gm_route_def *r, bool get) {
    json_t *content = json_object(), *headers = json_object();
    const char *what = r->summary;
    if (r->op >= 0) {
        unsigned formats = gm_formats_of((gm_op)r->op);
        static const char *const REPLY[GM_OP_COUNT] = {[GM_OP_SAMPLE] = "ImagesReply",
                                                       [GM_OP_DECODE] = "ImagesReply",
                                                       [GM_OP_LOGP] = "LogpReply",
                                                       [GM_OP_ENCODE] = "EncodeReply",
                                                       [GM_OP_DISCRIMINATE] = "DiscriminateReply",
                                                       [GM_OP_RECONSTRUCT] = "ImagesReply",
                                                       [GM_OP_COMPLETE] = "ImagesReply",
                                                       [GM_OP_TRANSLATE] = "ImagesReply"};
        const char *name = REPLY[r->op];
        if (formats & (GM_FORMAT_BIT(GM_FORMAT_JSON) | GM_FORMAT_BIT(GM_FORMAT_PIXELS)))
            json_object_set_new(content, "application/json",
                                media(name ? ref("schemas", name) : json_pack("{s:s}", "type", "object")));
        if (formats & GM_FORMAT_BIT(GM_FORMAT_PNG))
            json_object_set_new(content, "image/png", media(binary("image/png")));
        if (formats & GM_FORMAT_BIT(GM_FORMAT_NPY)) {
            json_object_set_new(content, "application/x-npy", media(binary("application/x-npy")));
            json_object_set_new(content, "application/octet-stream", media(binary("application/octet-stream")));
        }
        json_object_set_new(headers, "Server-Timing", header_doc("queue wait and compute in ms, batch rows"));
        if (r->op == GM_OP_SAMPLE || r->op == GM_OP_COMPLETE)
            json_object_set_new(headers, "X-Seed", header_doc("the seed the images were drawn from"));
        if (r->op == GM_OP_SAMPLE && get) {
            json_object_set_new(headers, "ETag", header_doc("with an explicit seed: a strong tag of the reply"));
            json_object_set_new(headers, "Cache-Control",
                                header_doc("with an explicit seed: public (private with API keys), "
                                           "max-age=31536000, immutable; else no-store"));
        }
    } else if (r->route == GM_ROUTE_PAGE) {
        json_object_set_new(content, "text/html", media(json_pack("{s:s}", "type", "string")));
        json_object_set_new(content, "text/javascript", media(json_pack("{s:s}", "type", "string")));
        json_object_set_new(content, "text/css", media(json_pack("{s:s}", "type", "string")));
    } else if (r->route == GM_ROUTE_METRICS) {
        json_object_set_new(content, "text/plain", media(json_pack("{s:s}", "type", "string")));
    } else if (r->route == GM_ROUTE_V2_INFER) {
        json_object_set_new(content, "application/json", media(ref("schemas", "InferResponse")));
        json_object_set_new(content, "application/octet-stream", media(binary("application/octet-stream")));
    } else if (r->route == GM_ROUTE_MODELS) {
        json_object_set_new(content, "application/json",
                            media(ref("schemas", strchr(r->pattern, '*') ? "Model" : "ModelList")));
    } else {
        json_object_set_new(content, "application/json", media(json_pack("{s:s}", "type", "object")));
    }
    json_t *o = json_pack("{s:s,s:o}", "description", what, "content", content);
    if (json_object_size(headers)) json_object_set_new(o, "headers", headers);
    else json_decref(headers);
    return o;
}

static bool applies(error_scope scope, const gm_route_def *r, bool post, const gm_config *cfg) {
    switch (scope) {
    case ANY_ROUTE:
        return true;
    case OPERATIONS:
        return computes(r);
    case KEYED:
        return !r->open && cfg->n_api_keys > 0;
    case NAMED:
        return r->op >= 0 || strchr(r->pattern, '*');
    case POST_BODY:
        return (computes(r) || r->route == GM_ROUTE_ADMIN) && post;
    case ADMIN:
        return r->route == GM_ROUTE_ADMIN;
    case READINESS:
        return r->route == GM_ROUTE_READYZ || r->route == GM_ROUTE_V2_READY || r->route == GM_ROUTE_V2_MODEL_READY;
    default:
        return false;
    }
}

static json_t *responses(const gm_route_def *r, bool get, bool post, const gm_config *cfg) {
    json_t *o = json_pack("{s:o}", "200", ok_response(r, get));
    if (r->op == GM_OP_SAMPLE && get)
        json_object_set_new(o, "304",
                            json_pack("{s:s,s:{s:o}}", "description",
                                      "If-None-Match holds this reply's ETag: nothing was computed", "headers", "ETag",
                                      header_doc("the tag the client holds")));
    for (int k = 0; k < GM_E_COUNT; k++) {
        if (!applies(SCOPE[k], r, post, cfg)) continue;
        char status[8], name[16];
        snprintf(status, sizeof status, "%d", gm_errors[k].status);
        snprintf(name, sizeof name, "%s%d", is_v2(r) ? "oip" : "", gm_errors[k].status);
        if (!json_object_get(o, status)) json_object_set_new(o, status, ref("responses", name));
    }
    return o;
}

/* The JSON body of POST /v1/admin/models: the model to load (docs/reload.md). */
static json_t *admin_body(void) {
    return json_pack("{s:b,s:{s:{s:{s:s,s:[s,s],s:{s:{s:s,s:s},s:{s:s}},s:b}}}}", "required", 1, "content",
                     "application/json", "schema", "type", "object", "required", "name", "path", "properties", "name",
                     "type", "string", "pattern", "^[A-Za-z0-9_.-]+$", "path", "type", "string", "additionalProperties",
                     0);
}

/* One operation of a route; method is "get", "post" or "delete". */
static json_t *operation(const gm_route_def *r, const char *method, const gm_config *cfg, const model_list *ml) {
    char id[128];
    bool get = !strcmp(method, "get"), post = !strcmp(method, "post");
    operation_id(r, method, id, sizeof id);
    const char *tag = is_v2(r)                      ? "oip"
                      : r->route == GM_ROUTE_ADMIN  ? "admin"
                      : r->op >= 0                  ? "operations"
                      : r->route == GM_ROUTE_MODELS ? "models"
                      : r->route == GM_ROUTE_PAGE   ? "page"
                                                    : "service";
    json_t *o = json_pack("{s:s,s:s,s:[s],s:o,s:o}", "operationId", id, "summary", r->summary, "tags", tag,
                          "parameters", parameters(r, get, cfg, ml), "responses", responses(r, get, post, cfg));
    if (post && r->op >= 0) json_object_set_new(o, "requestBody", request_body(r, cfg));
    if (post && r->route == GM_ROUTE_V2_INFER) json_object_set_new(o, "requestBody", infer_body());
    if (post && r->route == GM_ROUTE_ADMIN && !strcmp(r->pattern, "/v1/admin/models"))
        json_object_set_new(o, "requestBody", admin_body());
    json_object_set_new(o, "security", !r->open && cfg->n_api_keys ? json_pack("[{s:[]}]", "bearer") : json_array());
    return o;
}

/* Whether some route (of v2 or not) lists the error status. */
static bool status_used(int status, bool v2, const gm_config *cfg) {
    for (int i = 0; i < gm_n_routes; i++)
        for (int k = 0; k < GM_E_COUNT; k++)
            if (gm_errors[k].status == status && is_v2(&gm_routes[i]) == v2 &&
                (((gm_routes[i].methods & (GM_METHOD_GET | GM_METHOD_DELETE)) &&
                  applies(SCOPE[k], &gm_routes[i], false, cfg)) ||
                 ((gm_routes[i].methods & GM_METHOD_POST) && applies(SCOPE[k], &gm_routes[i], true, cfg))))
                return true;
    return false;
}

/* The error responses, one per status that some route lists, with the one
 * error schema (the v2 routes': "oip<status>", with the protocol's); the
 * description lists the kinds behind the status. */
static json_t *error_responses(const gm_config *cfg) {
    json_t *o = json_object();
    int statuses[64], n = gm_status_list(statuses, 64);
    for (int i = 0; i < 2 * n; i++) {
        bool v2 = i >= n;
        int st = statuses[i % n];
        if (st < 400 || !status_used(st, v2, cfg)) continue;
        char text[1024] = "", status[16];
        size_t len = 0;
        for (int k = 0; k < GM_E_COUNT; k++)
            if (gm_errors[k].status == st && len < sizeof text)
                len += (size_t)snprintf(text + len, sizeof text - len, "%s%s: %s", len ? "; " : "", gm_errors[k].name,
                                        gm_errors[k].when);
        snprintf(status, sizeof status, "%s%d", v2 ? "oip" : "", st);
        json_t *resp = json_pack("{s:s,s:{s:o}}", "description", text, "content", "application/json",
                                 media(ref("schemas", v2 ? "OipError" : "Error")));
        if (st == 503)
            json_object_set_new(resp, "headers", json_pack("{s:o}", "Retry-After", header_doc("seconds to wait")));
        json_object_set_new(o, status, resp);
    }
    return o;
}

/* The reply bodies' shapes. */
static json_t *schemas(void) {
    json_t *num = json_pack("{s:[s,s]}", "type", "number", "null"); /* JSON has no NaN: a non-finite value is null */
    json_t *numbers = json_pack("{s:s,s:O}", "type", "array", "items", num);
    json_t *seed = json_pack("{s:[{s:s,s:i},{s:s}]}", "oneOf", "type", "integer", "minimum", 0, "type", "string");
    json_t *o = json_object();
    json_object_set_new(o, "Error",
                        json_pack("{s:s,s:[s],s:{s:{s:s,s:[s,s],s:{s:{s:s},s:{s:s}}}}}", "type", "object", "required",
                                  "error", "properties", "error", "type", "object", "required", "status", "message",
                                  "properties", "status", "type", "integer", "message", "type", "string"));
    json_object_set_new(
        o, "ImagesReply",
        json_pack("{s:s,s:[s,s],s:{s:{s:s},s:O,s:{s:s},s:{s:s,s:{s:s,s:{s:{s:s,s:s},s:O,s:O,s:O,s:{s:s},"
                  "s:{s:s}}}}}}",
                  "type", "object", "required", "model", "images", "properties", "model", "type", "string", "seed",
                  seed, "given", "type", "integer", "images", "type", "array", "items", "type", "object", "properties",
                  "png", "type", "string", "contentEncoding", "base64", "pixels", numbers, "logp", num,
                  "logp_completion", num, "label", "type", "integer", "class", "type", "string"));
    json_t *images_props = json_object_get(json_object_get(o, "ImagesReply"), "properties");
    json_object_set_new(images_props, "direction",
                        json_pack("{s:s,s:[s,s]}", "type", "string", "enum", "forward", "reverse"));
    json_object_set_new(images_props, "domain", json_pack("{s:s}", "type", "string"));
    json_object_set_new(o, "LogpReply",
                        json_pack("{s:s,s:[s,s,s],s:{s:{s:s},s:{s:s,s:[s,s]},s:{s:s},s:O,s:{s:s,s:{s:s,s:{s:O,s:O,"
                                  "s:O,s:O}}}}}",
                                  "type", "object", "required", "model", "method", "results", "properties", "model",
                                  "type", "string", "method", "type", "string", "enum", "exact", "importance_sampling",
                                  "k", "type", "integer", "seed", seed, "results", "type", "array", "items", "type",
                                  "object", "properties", "logp", num, "bits_per_dim", num, "elbo", num, "se", num));
    json_object_set_new(o, "EncodeReply",
                        json_pack("{s:s,s:[s,s],s:{s:{s:s},s:{s:s,s:{s:s,s:{s:O,s:O,s:O,s:{s:s},s:O}}}}}", "type",
                                  "object", "required", "model", "results", "properties", "model", "type", "string",
                                  "results", "type", "array", "items", "type", "object", "properties", "z", numbers,
                                  "logvar", numbers, "cat_probabilities", numbers, "cat", "type", "integer", "code",
                                  numbers));
    /* a mixture AAE's: the component the code falls in, its class, the posterior over all */
    json_t *encode_props = json_object_get(
        json_object_get(json_object_get(json_object_get(json_object_get(o, "EncodeReply"), "properties"), "results"),
                        "items"),
        "properties");
    json_object_set_new(encode_props, "component", json_pack("{s:s}", "type", "integer"));
    json_object_set_new(encode_props, "class", json_pack("{s:s}", "type", "string"));
    json_object_set_new(encode_props, "component_probs", json_incref(numbers));
    json_object_set_new(o, "DiscriminateReply",
                        json_pack("{s:s,s:[s,s],s:{s:{s:s},s:{s:s,s:{s:s,s:{s:O,s:O,s:O}}}}}", "type", "object",
                                  "required", "model", "results", "properties", "model", "type", "string", "results",
                                  "type", "array", "items", "type", "object", "properties", "logit", num, "probability",
                                  num, "realness", num));
    json_object_set_new(o, "Model",
                        json_pack("{s:s,s:[s,s],s:{s:{s:s},s:{s:s},s:{s:s},s:{s:s},s:{s:s,s:{s:s}},s:{s:s},"
                                  "s:{s:s,s:s}}}",
                                  "type", "object", "required", "name", "family", "properties", "name", "type",
                                  "string", "family", "type", "string", "image", "type", "object", "latent_dim", "type",
                                  "integer", "operations", "type", "array", "items", "type", "string", "metadata",
                                  "type", "object", "sha256", "type", "string", "pattern", "^[0-9a-f]{64}$"));
    json_object_set_new(o, "ModelList",
                        json_pack("{s:s,s:{s:{s:s,s:o},s:{s:s}}}", "type", "object", "properties", "models", "type",
                                  "array", "items", ref("schemas", "Model"), "default_model", "type", "string"));
    /* the Open Inference Protocol's own shapes (docs/oip.md) */
    json_object_set_new(o, "OipError",
                        json_pack("{s:s,s:[s],s:{s:{s:s}}}", "type", "object", "required", "error", "properties",
                                  "error", "type", "string"));
    json_t *tensor = json_pack("{s:s,s:[s,s,s],s:{s:{s:s},s:{s:s},s:{s:s,s:{s:s}},s:{s:s},s:{s:s}}}", "type", "object",
                               "required", "name", "datatype", "shape", "properties", "name", "type", "string",
                               "datatype", "type", "string", "shape", "type", "array", "items", "type", "integer",
                               "data", "type", "array", "parameters", "type", "object");
    json_object_set_new(o, "InferRequest",
                        json_pack("{s:s,s:[s],s:{s:{s:s},s:{s:s,s:O},s:{s:s},s:{s:s}}}", "type", "object", "required",
                                  "inputs", "properties", "id", "type", "string", "inputs", "type", "array", "items",
                                  tensor, "outputs", "type", "array", "parameters", "type", "object"));
    json_object_set_new(o, "InferResponse",
                        json_pack("{s:s,s:[s,s],s:{s:{s:s},s:{s:s},s:{s:s},s:{s:s,s:O}}}", "type", "object", "required",
                                  "model_name", "outputs", "properties", "model_name", "type", "string",
                                  "model_version", "type", "string", "id", "type", "string", "outputs", "type", "array",
                                  "items", tensor));
    json_decref(tensor);
    json_decref(seed);
    json_decref(num);
    json_decref(numbers);
    return o;
}

json_t *gm_openapi_document(const gm_config *cfg, const char *const *names, int n_names) {
    model_list ml = {names, n_names};
    json_t *paths = json_object();
    for (int i = 0; i < gm_n_routes; i++) {
        const gm_route_def *r = &gm_routes[i];
        char path[256];
        template_of(r, path, sizeof path);
        json_t *item = json_object();
        if (r->methods & GM_METHOD_GET) json_object_set_new(item, "get", operation(r, "get", cfg, &ml));
        if (r->methods & GM_METHOD_POST) json_object_set_new(item, "post", operation(r, "post", cfg, &ml));
        if (r->methods & GM_METHOD_DELETE) json_object_set_new(item, "delete", operation(r, "delete", cfg, &ml));
        json_object_set_new(paths, path, item);
    }
    json_t *components = json_pack("{s:o,s:o}", "schemas", schemas(), "responses", error_responses(cfg));
    if (cfg->n_api_keys)
        json_object_set_new(components, "securitySchemes",
                            json_pack("{s:{s:s,s:s}}", "bearer", "type", "http", "scheme", "bearer"));
    return json_pack(
        "{s:s,s:{s:s,s:s,s:s},s:[{s:s,s:s}],s:[{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s}],"
        "s:o,s:o}",
        "openapi", "3.1.0", "info", "title", "gmserve", "version", "1", "description",
        "Generative image models (NADE, VAE, GAN) served over HTTP: sample, log p, encode, decode, "
        "discriminate. Generated by the server from its route, parameter and error tables under its running "
        "settings.",
        "servers", "url", "/", "description", "this server", "tags", "name", "operations", "description",
        "the model operations", "name", "models", "description", "the loaded models", "name", "service", "description",
        "health, readiness, metrics, this document", "name", "page", "description", "the web page", "name", "admin",
        "description", "reload settings and models, load and unload models", "name", "oip", "description",
        "the Open Inference Protocol v2 (KServe, Triton) over the same operations", "paths", paths, "components",
        components);
}
