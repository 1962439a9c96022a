/*
 * http.c - requests in, replies out, over libmicrohttpd (see http.h).
 *
 * A request's life: the URI log callback makes its context as soon as the
 * request line is in, and checks the raw target; the first handler call
 * (headers only) fills it in and refuses, at once, a target or framing it
 * does not take, an oversized Content-Length, or a body the memory budget
 * cannot hold; the next calls copy body chunks (capped at max_body_bytes);
 * the last call routes it. conn.c's reaper closes connections whose request
 * is not complete in time or whose peer hung up. A model
 * operation then suspends the connection *before* pushing the job, so that a
 * worker's resume can never reach a connection that is not suspended; the
 * worker writes the reply into the context and resumes as the very last
 * thing it does, and the next handler call queues that reply from the HTTP
 * thread. A client that disconnects while its job waits is noticed by the
 * worker (a zero-byte peek on the socket) and its job is dropped. An admin
 * change (admin.h) is suspended and resumed the same way, by the control
 * thread. Each request takes the current settings snapshot when its
 * headers are in and reads that one to its end, whatever a reload swaps in
 * meanwhile.
 *
 * Every reply gets X-Request-Id (the client's, when sane, else a new one);
 * replies computed by a worker add Server-Timing with the queue wait, the
 * compute time and the rows of the batch the request joined. When the
 * request completes, one access-log line and the request metrics are
 * written, and the context is freed.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "conn.h"
#include "http.h"
#include "oip_routes.h"

/* MHD keeps the request line, headers and one record per query parameter
 * (56 bytes each) in a per-connection pool of MEMORY_LIMIT bytes, half of
 * it the read buffer. When the records overflow it, MHD 0.9.75 neither
 * answers nor closes, so longer targets and more parameters than these are
 * refused (414) before MHD parses them. MHD zeroes the whole pool before
 * every request of a keep-alive connection: 64 KiB cost 1.3 us a request,
 * 32 KiB 0.5 us (perf, VAE /encode at concurrency 64). 32 KiB still holds
 * the largest target we take, 8 KiB with 256 parameters, with about 4.5 KiB
 * of headers besides; a longer request head gets 431 (test_http_pool). */
enum { MEMORY_LIMIT = 32 * 1024, ID_LEN = 64, MAX_URI = 8192, MAX_QUERY_PARAMS = 256 };

struct gm_http {
    gm_server *srv;
    struct MHD_Daemon *d;
    atomic_int in_flight;
    atomic_ullong next_id;
    int port;
    MHD_socket listen_fd; /* returned by quiesce; closed after stop, as MHD requires */
    gm_conns *conns;
};

typedef enum { ST_RECEIVING, ST_QUEUED, ST_DONE } req_state;

/* Why a request target is refused before anything else looks at it. */
typedef enum { TARGET_OK, TARGET_TOO_LONG, TARGET_TOO_MANY_PARAMS, TARGET_ENCODED_SLASH } target_check;

/* A request from its target to its completion; the job's owner (queue.h). */
typedef struct gm_job_owner request;
struct gm_job_owner {
    gm_call call;
    const gm_config *cfg; /* the settings this request reads, held to its end (settings.h) */
    gm_http *h;
    struct MHD_Connection *conn;
    gm_conn *rec; /* the reaper's record of the connection */
    req_state st;
    bool started; /* the headers were seen (new_request ran) */
    target_check target;
    char *raw_uri; /* the target as sent: percent-encoding intact */
    int64_t t0;
    char method[16];
    char *path;
    char id[ID_LEN + 1];
    char client[INET6_ADDRSTRLEN];
    uint8_t *body;
    size_t len, cap;
    size_t reserved; /* bytes of the body budget this request holds */
    size_t dropped;  /* bytes of a refused body read and thrown away */
    bool too_large, no_memory, accepted, replied, counted, loopback;
    int status;
    size_t bytes;
};

static bool sane_id(const char *s) {
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= ID_LEN && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") == n;
}

/* The client's address as text; returns whether it is a loopback address
 * (127.0.0.0/8, ::1, or 127.0.0.0/8 mapped into IPv6). */
static bool client_address(struct MHD_Connection *conn, char *out, size_t n) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, n, "-");
    if (!ci || !ci->client_addr) return false;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct in_addr *a = &((const struct sockaddr_in *)sa)->sin_addr;
        inet_ntop(AF_INET, a, out, (socklen_t)n);
        return ntohl(a->s_addr) >> 24 == 127;
    }
    if (sa->sa_family != AF_INET6) return false;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    inet_ntop(AF_INET6, a, out, (socklen_t)n);
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

/* The Access-Control-Allow-Origin value for a request's Origin, or NULL.
 * With * configured the answer is *, never the echoed origin: echoing would
 * vouch for any page, including the opaque origin "null". */
static const char *cors_allow(const gm_config *cfg, const char *origin) {
    if (!origin) return NULL;
    for (int i = 0; i < cfg->n_cors_origins; i++)
        if (!strcmp(cfg->cors_origins[i], "*")) return "*";
    for (int i = 0; i < cfg->n_cors_origins; i++)
        if (!strcmp(cfg->cors_origins[i], origin)) return origin;
    return NULL;
}

/* The job of a request that had one, or NULL. */
static const gm_job *job_of(const request *r) { return r->call.op ? gm_operation_job(r->call.op) : NULL; }

/* A refusal counts in gmserve_rejections_total once, by its kind's reason:
 * when its reply is sent, or at completion for a client that left first. */
static void count_rejection(request *r) {
    const gm_reply *rep = &r->call.reply;
    if (r->counted || !rep->failed) return;
    r->counted = true;
    if (gm_errors[rep->kind].reason) gm_metrics_reject(r->h->srv->metrics, rep->kind);
}

/* The decimal digits of v at o; returns the end. */
static char *put_uint(char *o, uint64_t v) {
    char tmp[20], *t = tmp + sizeof tmp;
    do *--t = (char)('0' + v % 10);
    while (v /= 10);
    size_t n = (size_t)(tmp + sizeof tmp - t);
    memcpy(o, t, n);
    return o + n;
}

/* ns as milliseconds with three decimals ("12.345"), without printf's
 * float machinery: this runs on every reply. */
static char *put_ms(char *o, uint64_t ns) {
    uint64_t us = (ns + 500) / 1000;
    o = put_uint(o, us / 1000);
    *o++ = '.';
    unsigned f = (unsigned)(us % 1000);
    *o++ = (char)('0' + f / 100);
    *o++ = (char)('0' + f / 10 % 10);
    *o++ = (char)('0' + f % 10);
    return o;
}

static void add_headers(request *r, struct MHD_Response *resp) {
    gm_server *s = r->h->srv;
    gm_reply *rep = &r->call.reply;
    const gm_job *job = job_of(r);
    char buf[256];
    if (rep->content_type) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rep->content_type);
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    for (int i = 0; i < rep->n_headers; i++) MHD_add_response_header(resp, rep->headers[i].name, rep->headers[i].value);
    if (r->call.route != GM_ROUTE_PAGE && !gm_reply_header_get(rep, MHD_HTTP_HEADER_CACHE_CONTROL))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (job && job->started_ns) {
        char *o = buf;
        o = stpcpy(o, "queue;dur=");
        o = put_ms(o, job->started_ns - job->enqueued_ns);
        o = stpcpy(o, ", compute;dur=");
        o = put_ms(o, job->finished_ns > job->started_ns ? job->finished_ns - job->started_ns : 0);
        o = stpcpy(o, ", batch;desc=\"");
        o = put_uint(o, job->batch_rows > 0 ? (uint64_t)job->batch_rows : 0);
        stpcpy(o, " rows\"");
        MHD_add_response_header(resp, "Server-Timing", buf);
    }
    const char *allow = cors_allow(r->cfg, MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin"));
    /* the reply depends on Origin whenever CORS is on, so caches must key on it even for refused origins */
    if (r->cfg->n_cors_origins) MHD_add_response_header(resp, "Vary", "Origin");
    if (allow) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", allow);
        MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                                "X-Seed, X-Request-Id, Server-Timing, Retry-After, Inference-Header-Content-Length");
        if (!strcmp(r->method, "OPTIONS")) { /* a preflight */
            const char *methods = gm_reply_header_get(rep, MHD_HTTP_HEADER_ALLOW);
            MHD_add_response_header(resp, "Access-Control-Allow-Methods", methods ? methods : "OPTIONS");
            MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                    "Authorization, Content-Type, X-Request-Id, Inference-Header-Content-Length");
            MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
        }
    }
    if (atomic_load(&s->draining)) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
}

static enum MHD_Result send_reply(request *r) {
    gm_reply *rep = &r->call.reply;
    if (rep->failed && r->path && gm_oip_path(r->path)) gm_oip_error_reply(rep); /* the protocol's error shape */
    struct MHD_Response *resp = MHD_create_response_from_buffer(rep->len, rep->body, MHD_RESPMEM_MUST_FREE);
    if (!resp) return MHD_NO;
    rep->body = NULL; /* the response owns it now */
    add_headers(r, resp);
    count_rejection(r);
    r->status = rep->status;
    r->bytes = rep->len;
    r->replied = true;
    gm_conn_set_busy(r->h->conns, r->rec, true);
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)rep->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* With lengths: a decoded %00 stays visible, for gm_query_add to refuse. */
static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_len,
                                   const char *value, size_t value_len) {
    gm_query_add(cls, key, key_len, value, value_len);
    return MHD_YES;
}

/* Worker side: is the client still connected? A peek that reads 0 bytes means
 * the peer closed its end; EAGAIN means it is waiting for us. */
static bool client_alive(gm_job *job) {
    const request *r = job->owner;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return true;
    char b;
    return recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) != 0;
}

/* Worker side: the job is finished; build the reply, then resume (last). */
static void job_done(gm_job *job) {
    request *r = job->owner;
    gm_call_finish(&r->call);
    r->st = ST_DONE;
    MHD_resume_connection(r->conn);
}

/* Control side: the admin change is done; build the reply, then resume (last). */
static void control_done(gm_control_task *t) {
    request *r = t->owner;
    gm_admin_finish(t, &r->call.reply);
    r->st = ST_DONE;
    MHD_resume_connection(r->conn);
}

/* Hands an admin change to the control thread, suspended like a job: the
 * thread resumes the connection when the change is done. */
static enum MHD_Result submit_control(request *r) {
    gm_control_task *t = r->call.task;
    t->done = control_done;
    t->owner = r;
    r->st = ST_QUEUED;
    MHD_suspend_connection(r->conn);
    if (gm_control_submit(r->h->srv->control, t)) return MHD_YES; /* the control thread owns r until it resumes */
    gm_reply_header(&r->call.reply, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    gm_reply_error(&r->call.reply, GM_E_BUSY, "%d admin changes are waiting already; retry after 1 s",
                   GM_CONTROL_PENDING);
    r->st = ST_DONE;
    MHD_resume_connection(r->conn);
    return MHD_YES;
}

static int retry_after_s(gm_server *s) {
    double batches_ahead = (double)gm_queue_depth(s->queue) / (double)s->cfg->workers + 1.0;
    int secs = (int)(batches_ahead * gm_batcher_service_ns(s->batcher) * 1e-9 + 0.999);
    return secs < 1 ? 1 : secs;
}

static enum MHD_Result enqueue(request *r) {
    gm_server *s = r->h->srv;
    gm_job *job = gm_operation_job(r->call.op);
    job->alive = client_alive;
    job->done = job_done;
    job->owner = r;
    job->deadline_ns = gm_now_ns() + (int64_t)r->cfg->deadline_ms * 1000000;
    r->st = ST_QUEUED;
    r->accepted = true;
    atomic_fetch_add(&s->accepted, 1);
    MHD_suspend_connection(r->conn);
    gm_push_result pr = gm_queue_push(s->queue, job);
    if (pr == GM_PUSH_OK) return MHD_YES; /* the worker owns r until it resumes */
    atomic_fetch_sub(&s->accepted, 1);
    r->accepted = false;
    int retry = retry_after_s(s);
    gm_reply_header(&r->call.reply, MHD_HTTP_HEADER_RETRY_AFTER, "%d", retry);
    if (pr == GM_PUSH_FULL)
        gm_reply_error(&r->call.reply, GM_E_QUEUE_FULL,
                       "the queue is full (%d requests waiting, the server's "
                       "queue_capacity setting); retry after %d s",
                       gm_queue_capacity(s->queue), retry);
    else gm_reply_error(&r->call.reply, GM_E_DRAINING, "the server is shutting down; retry on another replica");
    r->st = ST_DONE;
    MHD_resume_connection(r->conn);
    return MHD_YES;
}

/* MHD's URI log callback: it runs once the request line is read, before MHD
 * splits off the query or percent-decodes the path, so it sees the target as
 * the client sent it. What it returns becomes the request's context. */
static void *on_target(void *cls, const char *uri, struct MHD_Connection *conn) {
    request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->t0 = gm_now_ns();
    size_t len = strlen(uri);
    const char *q = strchr(uri, '?');
    size_t path_len = q ? (size_t)(q - uri) : len, params = q && q[1];
    for (const char *p = q; p && *p; p++) params += *p == '&';
    if (len > MAX_URI) r->target = TARGET_TOO_LONG;
    else if (params > MAX_QUERY_PARAMS) r->target = TARGET_TOO_MANY_PARAMS;
    for (size_t i = 0; r->target == TARGET_OK && i + 2 < path_len; i++)
        if (uri[i] == '%' && uri[i + 1] == '2' && (uri[i + 2] | 0x20) == 'f') r->target = TARGET_ENCODED_SLASH;
    r->raw_uri = strndup(uri, len > MAX_URI ? MAX_URI : len);
    /* MHD parses the query out of this same buffer right after we return;
     * emptying it keeps a refused query's parameters out of the pool */
    if (q && (r->target == TARGET_TOO_LONG || r->target == TARGET_TOO_MANY_PARAMS)) ((char *)q)[1] = 0;
    return r;
}

/* Fills in the request once its headers are in (the first handler call). */
static bool new_request(gm_http *h, request *r, struct MHD_Connection *conn, const char *url, const char *method) {
    r->path = strdup(url);
    if (!r->path) return false;
    r->started = true;
    r->h = h;
    r->conn = conn;
    r->rec = gm_conns_of(conn);
    if (!r->t0) r->t0 = gm_now_ns();
    r->call.model = -1;
    r->call.route = GM_ROUTE_OTHER;
    r->cfg = gm_settings_acquire(h->srv->settings); /* this request's settings, to its end */
    snprintf(r->method, sizeof r->method, "%s", method);
    const char *id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (sane_id(id)) snprintf(r->id, sizeof r->id, "%s", id);
    else snprintf(r->id, sizeof r->id, "%016llx", (unsigned long long)atomic_fetch_add(&h->next_id, 1));
    r->loopback = client_address(conn, r->client, sizeof r->client);
    atomic_fetch_add(&h->in_flight, 1);
    gm_metrics_in_flight(h->srv->metrics, 1);
    return true;
}

/* The headers that decide how a request is framed and who sent it. */
typedef struct {
    int content_length, transfer_encoding, authorization;
    bool te_chunked, auth_nul;
    const char *auth_end; /* just past the terminator of the Authorization value last seen */
} header_scan;

/* MHD keeps header values as C strings, so "Bearer KEY\0junk" would read as
 * "Bearer KEY". The line itself stays in MHD's read buffer with its end
 * overwritten by NULs: right after a value's terminator comes another NUL
 * (CRLF) or the next header's name (bare LF). Anything else there is the
 * rest of a line that a NUL cut short. */
static void check_nul(header_scan *sc, const char *next_key) {
    if (sc->auth_end && *sc->auth_end && sc->auth_end != next_key) sc->auth_nul = true;
    sc->auth_end = NULL;
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    header_scan *sc = cls;
    check_nul(sc, key);
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) sc->content_length++;
    if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        sc->transfer_encoding++;
        sc->te_chunked = value && !strcasecmp(value, "chunked");
    }
    if (!strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION)) {
        sc->authorization++;
        if (value) sc->auth_end = value + strlen(value) + 1;
    }
    return MHD_YES;
}

/* Requests refused on their target or headers alone: a target MHD cannot
 * hold, an encoded slash (never a path separator: no name has one), and
 * framing or credentials that a proxy in front could read differently from
 * us. True when r's reply is set. */
static bool refuse_head(request *r, struct MHD_Connection *conn) {
    gm_reply *rep = &r->call.reply;
    switch (r->target) {
    case TARGET_OK:
        break;
    case TARGET_TOO_LONG:
        gm_reply_error(rep, GM_E_URI_TOO_LONG, "the request target is over %d bytes", MAX_URI);
        return true;
    case TARGET_TOO_MANY_PARAMS:
        gm_reply_error(rep, GM_E_URI_TOO_LONG, "the query has more than %d parameters", MAX_QUERY_PARAMS);
        return true;
    case TARGET_ENCODED_SLASH:
        gm_reply_error(rep, GM_E_NOT_FOUND,
                       "no such route: the path has an encoded slash (%%2F), and no model or file name "
                       "contains '/'");
        return true;
    }
    header_scan sc = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, scan_header, &sc);
    check_nul(&sc, NULL);
    if (sc.content_length > 1)
        gm_reply_error(rep, GM_E_BAD_REQUEST, "Content-Length is given %d times; send it once", sc.content_length);
    else if (sc.content_length && sc.transfer_encoding)
        gm_reply_error(rep, GM_E_BAD_REQUEST, "both Content-Length and Transfer-Encoding are given; send one of them");
    else if (sc.transfer_encoding > 1 || (sc.transfer_encoding && !sc.te_chunked))
        gm_reply_error(rep, GM_E_NOT_IMPLEMENTED, "the only Transfer-Encoding accepted is a single \"chunked\"");
    else if (sc.authorization > 1)
        gm_reply_error(rep, GM_E_BAD_REQUEST, "Authorization is given %d times; send it once", sc.authorization);
    else if (sc.auth_nul) gm_reply_error(rep, GM_E_BAD_REQUEST, "the Authorization header contains a NUL byte");
    else return false;
    return true;
}

static void release_body(request *r) {
    free(r->body);
    r->body = NULL;
    r->len = r->cap = 0;
    gm_conns_release(r->h->conns, r->reserved);
    r->reserved = 0;
}

static enum MHD_Result reply_no_memory(request *r) {
    const gm_config *cfg = r->h->srv->cfg;
    gm_reply_header(&r->call.reply, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    gm_reply_error(&r->call.reply, GM_E_BUSY,
                   "the server holds as many request bodies as it may (%ld bytes, the "
                   "max_body_memory_bytes setting); retry after 1 s",
                   cfg->max_body_memory_bytes);
    return send_reply(r);
}

/* The first handler call: the headers are in, the body (if any) is not. */
static enum MHD_Result on_headers(request *r, struct MHD_Connection *conn) {
    if (refuse_head(r, conn)) return send_reply(r);
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
    if (declared > (unsigned long long)r->cfg->max_body_bytes) {
        gm_reply_error(&r->call.reply, GM_E_TOO_LARGE,
                       "the body is %s bytes; the limit is %ld (the server's max_body_bytes "
                       "setting)",
                       cl, r->cfg->max_body_bytes);
        return send_reply(r);
    }
    /* a declared body takes its whole size from the budget now, before 100 Continue */
    if (declared && !gm_conns_reserve(r->h->conns, (size_t)declared)) return reply_no_memory(r);
    r->reserved = (size_t)declared;
    return MHD_YES;
}

/* A body chunk: copied, or dropped when the body is being refused. */
static enum MHD_Result on_body(request *r, const char *data, size_t n) {
    size_t max = (size_t)r->cfg->max_body_bytes;
    if (r->too_large || r->no_memory) {
        /* Only a chunked body gets here (a declared one was refused before
         * it was sent). It is read and dropped so that the 413 or 503 can
         * follow it, but at most max_body_bytes of it: past that the
         * connection is closed, so that a chunk size like 2^64-1 cannot keep
         * it reading forever. */
        r->dropped += n;
        return r->dropped > max ? MHD_NO : MHD_YES;
    }
    if (n > max - r->len) {
        r->too_large = true;
        release_body(r);
        r->dropped = n;
        return MHD_YES;
    }
    if (r->len + n > r->cap) {
        size_t cap = r->reserved; /* a declared body: all of it, reserved already */
        if (!cap) {
            cap = r->cap ? r->cap : 16384;
            while (cap < r->len + n) cap *= 2;
            if (cap > max) cap = max;
            if (!gm_conns_reserve(r->h->conns, cap - r->cap)) {
                r->no_memory = true;
                release_body(r);
                r->dropped = n;
                return MHD_YES;
            }
        }
        uint8_t *b = realloc(r->body, cap);
        if (!b) return MHD_NO;
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    gm_http *h = cls;
    gm_server *s = h->srv;
    request *r = *con_cls;
    if (!r && !(*con_cls = r = calloc(1, sizeof *r))) return MHD_NO; /* on_target ran out of memory */
    if (!r->started) {
        if (!new_request(h, r, conn, url, method)) return MHD_NO;
        return on_headers(r, conn);
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        return on_body(r, upload_data, n);
    }
    if (r->st == ST_DONE) return send_reply(r);
    if (r->st == ST_QUEUED) return MHD_YES;   /* not reached: suspended connections get no calls */
    gm_conn_set_busy(h->conns, r->rec, true); /* the whole request is in */
    if (r->too_large) {
        gm_reply_error(&r->call.reply, GM_E_TOO_LARGE,
                       "the body is over %ld bytes (the server's max_body_bytes setting)", r->cfg->max_body_bytes);
        return send_reply(r);
    }
    if (r->no_memory) return reply_no_memory(r);
    json_t *query = json_object();
    if (!query) return MHD_NO;
    gm_http_request req = {
        .cfg = r->cfg,
        .loopback = r->loopback,
        .method = method,
        .path = url,
        .raw_uri = r->raw_uri ? r->raw_uri : url,
        .query = query,
        .content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
        .authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        .accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT),
        .if_none_match = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH),
        .body = r->body,
        .body_len = r->len,
        .body_buffer = &r->body,
        .inference_header_length =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Inference-Header-Content-Length"),
    };
    MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &req);
    bool hand_on = gm_api_handle(s, &req, &r->call);
    json_decref(query);
    release_body(r); /* the call has copied what it needs */
    return !hand_on ? send_reply(r) : r->call.task ? submit_control(r) : enqueue(r);
}

/* A copy of s that is safe in a log line: bytes outside printable ASCII,
 * '"' and '\\' become \xHH, so a client cannot forge a line (%0a), send
 * terminal escapes, or make a JSON line invalid UTF-8. Free it. */
static char *log_safe(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(4 * n + 1), *o = out;
    if (!out) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') *o++ = (char)*p;
        else o += sprintf(o, "\\x%02x", *p);
    }
    *o = 0;
    return out;
}

static void access_log(const request *r, int64_t end) {
    const char *fmt = r->cfg->log_format;
    if (!strcmp(fmt, "off")) return;
    const gm_job *job = job_of(r);
    double ms = (end - r->t0) * 1e-6;
    double queue_ms = job && job->started_ns ? (job->started_ns - job->enqueued_ns) * 1e-6 : 0;
    double compute_ms = job && job->finished_ns > job->started_ns ? (job->finished_ns - job->started_ns) * 1e-6 : 0;
    int batch = job ? job->batch_rows : 0;
    char ts[32];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *model = r->call.model >= 0 ? gm_registry_slot_names(r->h->srv->models)[r->call.model] : "-";
    char *method = log_safe(r->method), *path = log_safe(r->path);
    if (!method || !path) goto out;
    if (!strcmp(fmt, "json")) {
        json_t *line =
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:I,s:f,s:f,s:f,s:i,s:s}", "time", ts, "client", r->client, "method",
                      method, "path", path, "model", model, "status", r->status, "bytes", (json_int_t)r->bytes, "ms",
                      ms, "queue_ms", queue_ms, "compute_ms", compute_ms, "batch", batch, "id", r->id);
        char *text = line ? json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
        if (text) fprintf(stderr, "%s\n", text);
        free(text);
        json_decref(line);
        goto out;
    }
    fprintf(stderr, "%s %s \"%s %s\" %d %zuB %.2fms queue=%.2fms compute=%.2fms batch=%d model=%s id=%s\n", ts,
            r->client, method, path, r->status, r->bytes, ms, queue_ms, compute_ms, batch, model, r->id);
out:
    free(method);
    free(path);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    gm_http *h = cls;
    request *r = *con_cls;
    gm_conn_set_busy(h->conns, gm_conns_of(conn), false); /* the next request's deadline starts now */
    if (!r) return;
    *con_cls = NULL;
    if (!r->started) { /* the connection ended before the headers were in */
        free(r->raw_uri);
        free(r);
        return;
    }
    int64_t end = gm_now_ns();
    /* closed before any reply: 499 when its job was dropped for that, else 0 */
    if (!r->replied)
        r->status = r->call.reply.failed && r->call.reply.kind == GM_E_CLIENT_GONE ? r->call.reply.status : 0;
    count_rejection(r);
    gm_metrics_request(h->srv->metrics, r->call.route, r->call.model, r->status, end - r->t0);
    access_log(r, end);
    if (r->accepted) atomic_fetch_sub(&h->srv->accepted, 1);
    gm_metrics_in_flight(h->srv->metrics, -1);
    atomic_fetch_sub(&h->in_flight, 1);
    gm_call_release(&r->call);
    release_body(r);
    gm_settings_release(r->cfg);
    free(r->raw_uri);
    free(r->path);
    free(r);
}

gm_http *gm_http_start(gm_server *srv, char err[GM_ERR_LEN]) {
    const gm_config *cfg = srv->cfg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    int gai = getaddrinfo(cfg->host[0] ? cfg->host : NULL, port, &hints, &ai);
    if (gai) {
        gm_errorf(err, "listen \"%s\": %s", cfg->listen, gai_strerror(gai));
        return NULL;
    }
    gm_http *h = calloc(1, sizeof *h);
    if (!h) {
        freeaddrinfo(ai);
        gm_errorf(err, "out of memory");
        return NULL;
    }
    h->srv = srv;
    h->listen_fd = MHD_INVALID_SOCKET;
    if (!(h->conns =
              gm_conns_start(cfg->request_timeout_s, cfg->max_connections, (size_t)cfg->max_body_memory_bytes))) {
        freeaddrinfo(ai);
        free(h);
        gm_errorf(err, "cannot start the connection reaper (out of memory or threads)");
        return NULL;
    }
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = (uint64_t)gm_now_ns();
    atomic_store(&h->next_id, seed);
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_OptionItem ops[] = {
        {MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)cfg->max_connections, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)cfg->idle_timeout_s, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, MEMORY_LIMIT, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, h},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)gm_conns_notify, h->conns},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_target, h},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)cfg->max_connections_per_ip, NULL},
        {MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL},
        {cfg->http_threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)cfg->http_threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    h->d =
        MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, h, MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d) {
        gm_errorf(err, "cannot listen on %s (address in use, or not this machine's?)", cfg->listen);
        gm_conns_stop(h->conns);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : cfg->port;
    return h;
}

int gm_http_port(const gm_http *h) { return h->port; }

int gm_http_in_flight(gm_http *h) { return atomic_load(&h->in_flight); }

void gm_http_quiesce(gm_http *h) { h->listen_fd = MHD_quiesce_daemon(h->d); }

void gm_http_stop(gm_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->d);
    gm_conns_stop(h->conns);
    if (h->listen_fd != MHD_INVALID_SOCKET) close(h->listen_fd);
    free(h);
}
