/*
 * oip_routes.c - the /v2 routes (see oip_routes.h).
 *
 * Every model has one version, "1": the /versions/<v> paths take it and
 * refuse any other with 404. The infer body is read as the protocol
 * defines it whatever its Content-Type says: clients send JSON as
 * application/json, binary requests as application/octet-stream, and some
 * (Python's urllib) application/x-www-form-urlencoded by default.
 */
#include <stdlib.h>
#include <string.h>

#include "oip.h"
#include "oip_routes.h"

struct gm_oip_call {
    gm_oip_plan plan;
    gm_served *served; /* held until freed: the reply names the model and reads its shapes */
    const char *model_name;
    const gm_model_info *info;
};

/* The server's version in its metadata. */
#define GMSERVE_VERSION "1.0"

bool gm_oip_path(const char *path) { return !strncmp(path, "/v2", 3) && (path[3] == 0 || path[3] == '/'); }

static gm_oip_limits limits_of(const gm_config *cfg) {
    gm_oip_limits lim = {.max_images = cfg->max_images, .default_k = cfg->default_k};
    for (int i = 0; i < gm_n_routes; i++) /* what /v1 serves, /v2 serves: but for completion, whose
                                              given rows the protocol's tensors have no binding for */
        if (gm_routes[i].op >= 0 && gm_routes[i].op != GM_OP_COMPLETE) lim.serves[gm_routes[i].op] = true;
    return lim;
}

/* The model of a /v2/models/<name>[/versions/<v>]... path, checking the
 * version, held (release it); NULL with a 404 in c->reply. (The route's
 * capture holds its last "*", the version when there is one, so the name
 * is read here.) */
static gm_served *model_of(gm_server *s, gm_call *c, const char *path) {
    char q[GM_QUOTE_LEN], qv[GM_QUOTE_LEN], name[GM_NAME_LEN];
    const char *seg = path + strlen("/v2/models/");
    size_t len = strcspn(seg, "/");
    gm_served *m = NULL;
    if (len < sizeof name) {
        memcpy(name, seg, len);
        name[len] = 0;
        m = gm_registry_acquire(s->models, name);
    }
    if (!m) {
        gm_reply_error(&c->reply, GM_E_NOT_FOUND, "no model named %s (GET /v1/models lists them)",
                       gm_quote(q, seg, len));
        return NULL;
    }
    const char *v = strstr(seg, "/versions/");
    if (v) {
        v += strlen("/versions/");
        size_t n = strcspn(v, "/");
        if (n != strlen(GM_OIP_VERSION) || strncmp(v, GM_OIP_VERSION, n) != 0) {
            gm_reply_error(&c->reply, GM_E_NOT_FOUND, "model %s has no version %s; its one version is \"%s\"",
                           gm_quote(q, name, len), gm_quote(qv, v, n), GM_OIP_VERSION);
            gm_served_release(m);
            return NULL;
        }
    }
    c->model = m->slot;
    return m;
}

/* The Inference-Header-Content-Length header: -1 when absent, -2 when not
 * a decimal byte count. */
static long long header_length(const char *h) {
    if (!h) return -1;
    if (!*h || strspn(h, "0123456789") != strlen(h) || strlen(h) > 18) return -2;
    return strtoll(h, NULL, 10);
}

static void handle_infer(gm_server *s, gm_call *c, const gm_http_request *req, gm_served *model) {
    char err[GM_ERR_LEN];
    gm_error_kind kind;
    if (atomic_load(&s->draining)) {
        gm_reply_header(&c->reply, "Retry-After", "1");
        return gm_reply_error(&c->reply, GM_E_DRAINING, "the server is shutting down; retry on another replica");
    }
    long long hl = header_length(req->inference_header_length);
    if (hl == -2)
        return gm_reply_error(&c->reply, GM_E_BAD_REQUEST,
                              "Inference-Header-Content-Length must be the JSON's length in bytes, a decimal number");
    const gm_model_info *in = gm_model_get_info(model->model);
    gm_oip_limits lim = limits_of(req->cfg);
    gm_oip_request *r =
        gm_oip_parse(req->body, req->body_len, hl, gm_oip_max_values(in, req->cfg->max_images), &kind, err);
    gm_oip_call *o = calloc(1, sizeof *o);
    if (!r || !o) {
        gm_oip_request_free(r);
        free(o);
        return gm_reply_error(&c->reply, r ? GM_E_INTERNAL : kind, "%s", r ? "out of memory" : err);
    }
    bool bound = gm_oip_bind(r, in, &lim, &o->plan, &kind, err);
    gm_oip_request_free(r); /* the plan holds its own references */
    if (!bound) {
        gm_oip_call_free(o);
        return gm_reply_error(&c->reply, kind, "%s", err);
    }
    o->served = gm_served_retain(model);
    o->model_name = model->name;
    o->info = in;
    gm_op_request rq = {.model = model, .cfg = req->cfg, .op = o->plan.op, .params = o->plan.params};
    c->op = gm_operation_prepare(s, &rq, &c->reply);
    if (!c->op) return gm_oip_call_free(o);
    c->oip = o;
}

void gm_oip_handle(gm_server *s, gm_call *c, const gm_http_request *req) {
    gm_served *m;
    switch (c->route) {
    case GM_ROUTE_V2:
        return gm_reply_json(&c->reply, gm_oip_server_metadata(GMSERVE_VERSION));
    case GM_ROUTE_V2_LIVE:
        return gm_reply_json(&c->reply, json_pack("{s:b}", "live", 1));
    case GM_ROUTE_V2_READY:
        if (atomic_load(&s->ready)) return gm_reply_json(&c->reply, json_pack("{s:b}", "ready", 1));
        gm_reply_header(&c->reply, "Retry-After", "1");
        return gm_reply_error(&c->reply, GM_E_NOT_READY, "%s",
                              atomic_load(&s->draining) ? "draining: the server is shutting down"
                                                        : "not ready: models are loading");
    case GM_ROUTE_V2_MODEL:
        if (!(m = model_of(s, c, req->path))) return;
        {
            gm_oip_limits lim = limits_of(req->cfg);
            gm_reply_json(&c->reply, gm_oip_model_metadata(m->name, gm_model_get_info(m->model), &lim));
        }
        return gm_served_release(m);
    case GM_ROUTE_V2_MODEL_READY:
        if (!(m = model_of(s, c, req->path))) return;
        if (atomic_load(&s->ready)) gm_reply_json(&c->reply, json_pack("{s:s,s:b}", "name", m->name, "ready", 1));
        else {
            gm_reply_header(&c->reply, "Retry-After", "1");
            gm_reply_error(&c->reply, GM_E_NOT_READY, "model \"%s\" is not ready: the server is %s", m->name,
                           atomic_load(&s->draining) ? "shutting down" : "loading");
        }
        return gm_served_release(m);
    case GM_ROUTE_V2_INFER:
        if (!(m = model_of(s, c, req->path))) return;
        handle_infer(s, c, req, m);
        return gm_served_release(m);
    default:
        return gm_reply_error(&c->reply, GM_E_INTERNAL, "route %d is not a /v2 route", (int)c->route);
    }
}

void gm_oip_finish(gm_call *c) {
    const gm_job *job = gm_operation_job(c->op);
    const gm_oip_call *o = c->oip;
    if (job->status != GM_JOB_OK) return gm_operation_finish(c->op, &c->reply); /* its error, reshaped when sent */
    int *labels = NULL;
    if (job->op == GM_OP_SAMPLE && o->info->num_classes) { /* each row's class, drawn or given */
        if (!(labels = malloc((size_t)job->n * sizeof *labels)))
            return gm_reply_error(&c->reply, GM_E_INTERNAL, "out of memory building the reply");
        for (int i = 0; i < job->n; i++) labels[i] = job->rows[i].label;
    }
    double *probs = NULL; /* a mixture AAE's encode: each code's posterior over the components */
    if (job->op == GM_OP_ENCODE && o->info->mixture_prior &&
        (!(probs = malloc((size_t)job->n * o->info->num_classes * sizeof *probs)) ||
         gm_model_component_probs(job->model, job->n, job->out_z, probs, NULL))) {
        free(labels);
        free(probs);
        return gm_reply_error(&c->reply, GM_E_INTERNAL, "out of memory building the reply");
    }
    gm_oip_results res = {
        .n = job->n,
        .pixels = job->out_pixels,
        .logp = job->out_logp,
        .labels = labels ? labels : job->labels,
        .lp = job->out_lp,
        .z = job->out_z,
        .logvar = job->out_logvar,
        .component_probs = probs,
        .logits = job->out_logits,
        .k = job->k,
        .has_seed = job->op == GM_OP_SAMPLE || (job->op == GM_OP_LOGP && !o->info->exact_logp),
        .seed = gm_operation_seed(c->op),
    };
    uint8_t *body;
    size_t len, json_len;
    bool ok = gm_oip_respond(&o->plan, o->model_name, o->info, &res, &body, &len, &json_len);
    free(labels);
    free(probs);
    if (!ok) return gm_reply_error(&c->reply, GM_E_INTERNAL, "out of memory building the reply");
    if (json_len < len) gm_reply_header(&c->reply, "Inference-Header-Content-Length", "%zu", json_len);
    gm_reply_bytes(&c->reply, json_len < len ? "application/octet-stream" : "application/json", body, len);
}

void gm_oip_call_free(gm_oip_call *o) {
    if (!o) return;
    gm_oip_plan_release(&o->plan);
    gm_served_release(o->served);
    free(o);
}

void gm_oip_error_reply(gm_reply *r) {
    json_t *old = json_loadb((const char *)r->body, r->len, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(old, "error"), "message"));
    json_t *shaped = json_pack("{s:s}", "error", msg ? msg : "error");
    char *text = shaped ? json_dumps(shaped, JSON_COMPACT) : NULL;
    json_decref(shaped);
    json_decref(old);
    if (!text) return; /* out of memory: the reply keeps the /v1 shape */
    free(r->body);
    r->body = (uint8_t *)text;
    r->len = strlen(text);
    if (r->status == 422) r->status = 400;
}
