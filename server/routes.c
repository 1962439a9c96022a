/*
 * routes.c - the route table and its matching (see routes.h).
 */
#include <string.h>

#include "routes.h"

const char *const gm_route_names[GM_ROUTE_COUNT] = {
    "page",     "healthz",  "readyz",         "metrics",     "openapi",  "models",    "sample", "logp",
    "encode",   "decode",   "discriminate",   "reconstruct", "complete", "translate", "v2",     "v2_live",
    "v2_ready", "v2_model", "v2_model_ready", "v2_infer",    "admin",    "other"};

enum { G = GM_METHOD_GET, P = GM_METHOD_POST, D = GM_METHOD_DELETE };

const gm_route_def gm_routes[] = {
    {"/", G, GM_ROUTE_PAGE, true, -1, "the web page (index.html of web_root)"},
    {"/ui/*", G, GM_ROUTE_PAGE, true, -1, "a file of the web page"},
    {"/healthz", G, GM_ROUTE_HEALTHZ, true, -1, "liveness: 200 while the process runs"},
    {"/readyz", G, GM_ROUTE_READYZ, true, -1, "readiness: 200 once every model is loaded, 503 while draining"},
    {"/metrics", G, GM_ROUTE_METRICS, false, -1, "Prometheus metrics"},
    {"/openapi.json", G, GM_ROUTE_OPENAPI, false, -1, "this API as an OpenAPI 3.1 document, made from these tables"},
    {"/v1/models", G, GM_ROUTE_MODELS, false, -1, "every model: family, shapes, operations, metadata"},
    {"/v1/models/*", G, GM_ROUTE_MODELS, false, -1, "one model"},
    {"/v1/models/*/sample", G | P, GM_ROUTE_SAMPLE, false, GM_OP_SAMPLE, "draw images (PNG, JSON, pixels or npy)"},
    {"/v1/models/*/logp", P, GM_ROUTE_LOGP, false, GM_OP_LOGP,
     "log-likelihood of images (exact or importance-sampled)"},
    {"/v1/models/*/encode", P, GM_ROUTE_ENCODE, false, GM_OP_ENCODE, "latent codes of images"},
    {"/v1/models/*/decode", P, GM_ROUTE_DECODE, false, GM_OP_DECODE, "images from latents"},
    {"/v1/models/*/discriminate", P, GM_ROUTE_DISCRIMINATE, false, GM_OP_DISCRIMINATE,
     "a GAN discriminator's verdict on images: logit, D(x), log D(x)"},
    {"/v1/models/*/reconstruct", P, GM_ROUTE_RECONSTRUCT, false, GM_OP_RECONSTRUCT,
     "an AAE's images encoded and decoded again (PNG, or JSON with format=json)"},
    {"/v1/models/*/complete", P, GM_ROUTE_COMPLETE, false, GM_OP_COMPLETE,
     "an autoregressive model's completions of an image's top rows or first pixels, with their log p"},
    {"/v1/models/*/translate", P, GM_ROUTE_TRANSLATE, false, GM_OP_TRANSLATE,
     "a translator's images mapped to the target class or domain (PNG, JSON, pixels or npy)"},
    {"/sample", G | P, GM_ROUTE_SAMPLE, false, GM_OP_SAMPLE, "sample on the model named by ?model= (or the default)"},
    {"/logp", P, GM_ROUTE_LOGP, false, GM_OP_LOGP, "logp on ?model= (or the default)"},
    {"/encode", P, GM_ROUTE_ENCODE, false, GM_OP_ENCODE, "encode on ?model= (or the default)"},
    {"/decode", P, GM_ROUTE_DECODE, false, GM_OP_DECODE, "decode on ?model= (or the default)"},
    {"/discriminate", P, GM_ROUTE_DISCRIMINATE, false, GM_OP_DISCRIMINATE, "discriminate on ?model= (or the default)"},
    {"/reconstruct", P, GM_ROUTE_RECONSTRUCT, false, GM_OP_RECONSTRUCT, "reconstruct on ?model= (or the default)"},
    {"/complete", P, GM_ROUTE_COMPLETE, false, GM_OP_COMPLETE, "complete on ?model= (or the default)"},
    {"/translate", P, GM_ROUTE_TRANSLATE, false, GM_OP_TRANSLATE, "translate on ?model= (or the default)"},
    {"/v2", G, GM_ROUTE_V2, false, -1, "Open Inference Protocol v2 (docs/oip.md): server metadata"},
    {"/v2/", G, GM_ROUTE_V2, false, -1, "the same (the protocol's OpenAPI file names this path)"},
    {"/v2/health/live", G, GM_ROUTE_V2_LIVE, true, -1, "v2 liveness: {\"live\": true}"},
    {"/v2/health/ready", G, GM_ROUTE_V2_READY, true, -1, "v2 readiness: 200 once every model is loaded"},
    {"/v2/models/*", G, GM_ROUTE_V2_MODEL, false, -1, "v2 model metadata: typed inputs, outputs, operations"},
    {"/v2/models/*/ready", G, GM_ROUTE_V2_MODEL_READY, false, -1, "v2 model readiness"},
    {"/v2/models/*/infer", P, GM_ROUTE_V2_INFER, false, -1, "v2 inference: tensors in (JSON or binary), tensors out"},
    {"/v2/models/*/versions/*", G, GM_ROUTE_V2_MODEL, false, -1, "v2 model metadata, version 1"},
    {"/v2/models/*/versions/*/ready", G, GM_ROUTE_V2_MODEL_READY, false, -1, "v2 model readiness, version 1"},
    {"/v2/models/*/versions/*/infer", P, GM_ROUTE_V2_INFER, false, -1, "v2 inference, version 1"},
    {"/v1/admin/reload", P, GM_ROUTE_ADMIN, false, -1, "read the settings and every model file again (docs/reload.md)"},
    {"/v1/admin/models", P, GM_ROUTE_ADMIN, false, -1, "load or replace one model: {\"name\": ..., \"path\": ...}"},
    {"/v1/admin/models/*", D, GM_ROUTE_ADMIN, false, -1, "stop serving a model"},
};
const int gm_n_routes = sizeof gm_routes / sizeof gm_routes[0];

unsigned gm_method_bit(const char *method) {
    return !strcmp(method, "GET") || !strcmp(method, "HEAD") ? GM_METHOD_GET
           : !strcmp(method, "POST")                         ? GM_METHOD_POST
           : !strcmp(method, "DELETE")                       ? GM_METHOD_DELETE
                                                             : 0;
}

static bool match(const char *pattern, const char *path, char *capture, size_t cap) {
    capture[0] = 0;
    while (*pattern && *path) {
        if (*pattern == '*') {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= cap) return false;
            memcpy(capture, path, n);
            capture[n] = 0;
            path += n;
            pattern++;
            continue;
        }
        if (*pattern++ != *path++) return false;
    }
    return !*pattern && !*path;
}

const gm_route_def *gm_route_find(unsigned method, const char *path, char *capture, size_t cap, unsigned *allowed) {
    *allowed = 0;
    for (int i = 0; i < gm_n_routes; i++) {
        if (!match(gm_routes[i].pattern, path, capture, cap)) continue;
        *allowed |= gm_routes[i].methods;
        if (gm_routes[i].methods & method) return &gm_routes[i];
    }
    return NULL;
}

void gm_route_allow(unsigned methods, char *out, size_t n) {
    snprintf(out, n, "%s%s%sOPTIONS", methods & GM_METHOD_GET ? "GET, HEAD, " : "",
             methods & GM_METHOD_POST ? "POST, " : "", methods & GM_METHOD_DELETE ? "DELETE, " : "");
}

void gm_routes_markdown(FILE *f) {
    fprintf(f, "| Methods | Path | API key | Operation | What it does |\n|---|---|---|---|---|\n");
    for (int i = 0; i < gm_n_routes; i++) {
        const gm_route_def *r = &gm_routes[i];
        char allow[64];
        gm_route_allow(r->methods, allow, sizeof allow);
        fprintf(f, "| %s | `", allow);
        for (const char *c = r->pattern; *c; c++) /* "*" as the segment it stands for */
            fputs(*c != '*'                                               ? (char[]){*c, 0}
                  : !strncmp(r->pattern, "/ui/", 4)                       ? "{file}"
                  : c - r->pattern > 9 && !strncmp(c - 9, "versions/", 9) ? "{version}"
                                                                          : "{name}",
                  f);
        fprintf(f, "` | %s | %s | %s |\n", r->open ? "no" : "yes", r->op >= 0 ? gm_op_name((gm_op)r->op) : "-",
                r->summary);
    }
}
