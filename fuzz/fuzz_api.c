/*
 * fuzz_api.c - libFuzzer harness for request handling without a socket:
 * routing, authentication, parameters and inputs (gm_api_handle), and the
 * reply of a finished job (gm_call_finish).
 *
 * Input: one control byte, then fields separated by NUL bytes:
 *   method NUL path NUL query NUL content-type NUL authorization NUL body
 * The body is the rest of the input (it may hold NULs: a PNG). A field the
 * input ends before is absent (content-type and authorization NULL, the
 * others empty). The query is "k=v&k=v" with %XX and '+' decoded, as
 * libmicrohttpd hands it to the server. Control byte: bit 0 = the server is
 * draining, bit 1 = not ready, bits 2-3 = the status of the job's fake
 * completion (0 ok, 1 expired, 2 cancelled, 3 failed).
 *
 * The server holds four fixture models (nade, vae, gan: class-conditional,
 * rgb) under small limits, with one API key ("fuzzkey"). A request that
 * yields a job is not computed: its outputs are filled with in-contract
 * values and gm_call_finish builds the reply. Every reply must have a status
 * of 200..504 and a body, JSON replies must parse, and no reply may be a
 * 500 unless the job was made to fail. FUZZ_VERBOSE=1 in the environment
 * prints each reply's status, type and JSON.
 */
#include <ctype.h>
#include <math.h>
#include <stdatomic.h>

#include "api.h"
#include "fuzz_util.h"

#ifndef GM_FIXTURES
#define GM_FIXTURES "tests/fixtures"
#endif

static gm_config cfg;
static gm_server srv;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char path[64], err[GM_ERR_LEN];
    fuzz_clear_gmserve_env();
    if (fuzz_memfile((const uint8_t *)"{}", 2, path, sizeof path) < 0) abort(); /* no config file's settings */
    /* clang-format off */
    char *args[] = {"gmserve", "--config", path,
                    "--model", "nade=" GM_FIXTURES "/nade_tiny.safetensors",
                    "--model", "vae=" GM_FIXTURES "/vae_conv.safetensors",
                    "--model", "gan=" GM_FIXTURES "/gan_cond.safetensors",
                    "--model", "rgb=" GM_FIXTURES "/gan_rgb.safetensors",
                    "--api-key", "fuzzkey", "--max-n", "4", "--max-images", "4", "--max-k", "8",
                    "--default-k", "2", "--max-scale", "4", "--web-root", GM_FIXTURES "/../../web"};
    /* clang-format on */
    if (gm_config_load(&cfg, (int)(sizeof args / sizeof args[0]), args, err) != GM_CONFIG_OK) {
        fprintf(stderr, "fuzz_api: %s\n", err);
        abort();
    }
    srv.cfg = &cfg;
    char why[2 * GM_ERR_LEN];
    if (!(srv.models = gm_registry_new()) || !(srv.settings = gm_settings_new(&cfg)) ||
        gm_reload_initial(srv.models, &cfg, why)) {
        fprintf(stderr, "fuzz_api: %s\n", srv.models && srv.settings ? why : "out of memory");
        abort();
    }
    srv.metrics = gm_metrics_new(GM_ROUTE_COUNT, gm_route_names, GM_REGISTRY_SLOTS, gm_registry_slot_names(srv.models),
                                 gm_registry_slot_count(srv.models));
    srv.queue = gm_queue_new((int)cfg.queue_capacity);
    if (!srv.metrics || !srv.queue) abort();
    return 0;
}

static int hexval(int ch) { return isdigit(ch) ? ch - '0' : tolower(ch) - 'a' + 10; }

/* Decodes %XX and '+' in place. */
static void unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '+') *w++ = ' ';
        else if (*r == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
            *w++ = (char)(hexval((unsigned char)r[1]) * 16 + hexval((unsigned char)r[2]));
            r += 2;
        } else *w++ = *r;
    }
    *w = 0;
}

static json_t *parse_query(char *q) {
    json_t *o = json_object();
    char *save = NULL;
    for (char *kv = strtok_r(q, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq) *eq = 0;
        unescape(kv);
        if (eq) unescape(eq + 1);
        json_object_set_new(o, kv, json_string(eq ? eq + 1 : "")); /* invalid UTF-8 is dropped, as in http.c */
    }
    return o;
}

/* In-contract outputs of a computed job: pixels in [0, 1], any finite or
 * infinite log-likelihood, any latent. */
static void fake_outputs(gm_job *j) {
    const gm_model_info *in = gm_model_get_info(j->model);
    size_t n = (size_t)j->n;
    for (size_t i = 0; j->out_pixels && i < n * in->dim; i++) j->out_pixels[i] = (float)(i % 11) / 10.0f;
    for (size_t i = 0; j->out_logp && i < n; i++) j->out_logp[i] = i % 3 == 2 ? -INFINITY : -(double)i;
    for (size_t i = 0; j->out_lp && i < n; i++)
        j->out_lp[i] = (gm_logp_result){-1.0 - (double)i, -2.0, i % 2 ? NAN : 0.1};
    for (size_t i = 0; j->out_z && i < n * in->encode_dim; i++) j->out_z[i] = (float)i - 3.0f;
    for (size_t i = 0; j->out_logvar && i < n * in->encode_dim; i++) j->out_logvar[i] = -(float)i;
    for (size_t i = 0; j->out_logits && i < n; i++) j->out_logits[i] = i % 3 == 2 ? 1e30f : (float)i - 1.5f;
}

static void check_reply(const gm_reply *r, bool may_fail) {
    FUZZ_CHECK(r->status >= 200 && r->status <= 504, "status %d", r->status);
    FUZZ_CHECK((r->body && r->len > 0) || r->status == GM_STATUS_NO_CONTENT, "status %d without a body", r->status);
    FUZZ_CHECK(!r->failed || r->status == gm_error_status(r->kind), "status %d for kind %d", r->status, r->kind);
    FUZZ_CHECK(r->status != 500 || may_fail, "500: %.*s", (int)r->len, (const char *)r->body);
    if (r->content_type && !strcmp(r->content_type, "application/json")) {
        json_error_t je;
        json_t *v = json_loadb((const char *)r->body, r->len, 0, &je);
        FUZZ_CHECK(v != NULL, "reply is not JSON (%s): %.*s", je.text, (int)r->len, (const char *)r->body);
        json_decref(v);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t control = data[0];
    /* copy so that every field is NUL-terminated and the body is the tail */
    char *buf = malloc(size + 1);
    FUZZ_CHECK(buf, "out of memory");
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    char *field[5] = {NULL};
    char *p = buf, *end = buf + size - 1;
    int nf = 0;
    for (; nf < 5 && p <= end; nf++) {
        field[nf] = p;
        char *z = memchr(p, 0, (size_t)(end - p) + 1);
        p = z + 1;
    }
    /* the body in an allocation of its exact size, so that ASan sees a read past its end */
    size_t body_len = nf == 5 && p <= end ? (size_t)(end - p) : 0;
    uint8_t *body = malloc(body_len);
    FUZZ_CHECK(body || !body_len, "out of memory");
    if (body_len) memcpy(body, p, body_len);

    atomic_store(&srv.draining, (control & 1) != 0);
    atomic_store(&srv.ready, (control & 2) == 0);
    json_t *query = parse_query(field[2] ? field[2] : (char[]){0});
    const gm_config *snapshot = gm_settings_acquire(srv.settings);
    gm_http_request req = {
        .cfg = snapshot,
        .loopback = (control & 16) != 0,
        .method = field[0] ? field[0] : "",
        .path = field[1] ? field[1] : "",
        .query = query,
        .content_type = field[3],
        .authorization = field[4],
        .body = body,
        .body_len = body_len,
    };
    gm_call c = {0};
    bool queued = gm_api_handle(&srv, &req, &c);
    json_decref(query);
    bool may_fail = false;
    if (queued && c.task) { /* checked, not run: the fuzzer must not load the files it names */
        FUZZ_CHECK(c.task->op != GM_CONTROL_LOAD || (c.task->name[0] && c.task->path[0]),
                   "a load without a name or path");
        c.task->outcome = (gm_reload_outcome){.status = GM_RELOAD_NOT_FOUND, .message = "fuzz: not run"};
        gm_admin_finish(c.task, &c.reply);
    } else if (queued) {
        gm_job *j = gm_operation_job(c.op);
        gm_served *sv = gm_registry_acquire_slot(srv.models, c.model);
        FUZZ_CHECK(sv && j->model == sv->model && j->slot == c.model && j->n >= 1, "job of %d rows for slot %d", j->n,
                   c.model);
        gm_served_release(sv);
        if (j->prepare && !j->prepare(j)) j->status = GM_JOB_INVALID; /* the worker's PNG decode */
        fake_outputs(j);
        if (j->status != GM_JOB_INVALID) j->status = (gm_job_status)((control >> 2) & 3);
        may_fail = j->status == GM_JOB_FAILED;
        gm_call_finish(&c);
    }
    if (getenv("FUZZ_VERBOSE")) /* to see what a seed or a crash input does */
        fprintf(stderr, "%d %s %.*s\n", c.reply.status, c.reply.content_type ? c.reply.content_type : "-",
                c.reply.content_type && strstr(c.reply.content_type, "json")
                    ? (int)(c.reply.len < 300 ? c.reply.len : 300)
                    : 0,
                c.reply.body ? (const char *)c.reply.body : "");
    check_reply(&c.reply, may_fail);
    gm_metrics_request(srv.metrics, c.route, c.model, c.reply.status, 0);
    gm_call_release(&c);
    gm_settings_release(snapshot);
    free(body);
    free(buf);
    return 0;
}
