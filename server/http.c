/*
 * http.c - requests in, replies out, over libmicrohttpd (see http.h).
 *
 * A request's life: the first handler call (headers only) makes its context
 * and refuses an oversized Content-Length at once; the next calls copy body
 * chunks (capped at max_body_bytes); the last call routes it. A model
 * operation then suspends the connection *before* pushing the job, so that a
 * worker's resume can never reach a connection that is not suspended; the
 * worker writes the reply into the context and resumes as the very last
 * thing it does, and the next handler call queues that reply from the HTTP
 * thread. A client that disconnects while its job waits is noticed by the
 * worker (a zero-byte peek on the socket) and its job is dropped.
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
#include "http.h"

enum { MEMORY_LIMIT = 64 * 1024, ID_LEN = 64 };

struct gm_http {
    gm_server *srv;
    struct MHD_Daemon *d;
    atomic_int in_flight;
    atomic_ullong next_id;
    int port;
    MHD_socket listen_fd; /* returned by quiesce; closed after stop, as MHD requires */
};

typedef enum { ST_RECEIVING, ST_QUEUED, ST_DONE } req_state;

typedef struct {
    gm_call call;
    gm_http *h;
    struct MHD_Connection *conn;
    req_state st;
    int64_t t0;
    char method[16];
    char *path;
    char id[ID_LEN + 1];
    char client[INET6_ADDRSTRLEN];
    uint8_t *body;
    size_t len, cap;
    bool too_large, accepted, replied;
    int status;
    size_t bytes;
} request;

static bool sane_id(const char *s) {
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= ID_LEN &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") == n;
}

static void client_address(struct MHD_Connection *conn, char *out, size_t n) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, n, "-");
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)n);
    if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)n);
}

static bool cors_allowed(const gm_config *cfg, const char *origin) {
    for (int i = 0; origin && i < cfg->n_cors_origins; i++)
        if (!strcmp(cfg->cors_origins[i], "*") || !strcmp(cfg->cors_origins[i], origin)) return true;
    return false;
}

static void add_headers(request *r, struct MHD_Response *resp) {
    gm_server *s = r->h->srv;
    gm_reply *rep = &r->call.reply;
    gm_job *job = &r->call.job;
    char buf[256];
    if (rep->content_type) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rep->content_type);
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    if (r->call.route != GM_ROUTE_PAGE) MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (job->started_ns) {
        snprintf(buf, sizeof buf, "queue;dur=%.3f, compute;dur=%.3f, batch;desc=\"%d rows\"",
                 (job->started_ns - job->enqueued_ns) * 1e-6,
                 job->finished_ns > job->started_ns ? (job->finished_ns - job->started_ns) * 1e-6 : 0.0,
                 job->batch_rows);
        MHD_add_response_header(resp, "Server-Timing", buf);
    }
    if (rep->seed[0]) MHD_add_response_header(resp, "X-Seed", rep->seed);
    if (rep->allow[0]) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, rep->allow);
    if (rep->retry_after > 0) {
        snprintf(buf, sizeof buf, "%d", rep->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, buf);
    }
    const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
    if (cors_allowed(s->cfg, origin)) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(resp, "Vary", "Origin");
        MHD_add_response_header(resp, "Access-Control-Expose-Headers", "X-Seed, X-Request-Id, Server-Timing, Retry-After");
        if (!strcmp(r->method, "OPTIONS")) { /* a preflight */
            MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS");
            MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id");
            MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
        }
    }
    if (atomic_load(&s->draining)) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
}

static enum MHD_Result send_reply(request *r) {
    gm_reply *rep = &r->call.reply;
    struct MHD_Response *resp = MHD_create_response_from_buffer(rep->len, rep->body, MHD_RESPMEM_MUST_FREE);
    if (!resp) return MHD_NO;
    rep->body = NULL; /* the response owns it now */
    add_headers(r, resp);
    r->status = rep->status;
    r->bytes = rep->len;
    r->replied = true;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)rep->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_options(request *r) {
    gm_reply *rep = &r->call.reply;
    rep->status = 204;
    snprintf(rep->allow, sizeof rep->allow, "GET, HEAD, POST, OPTIONS");
    return send_reply(r);
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
    request *r = job->owner;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return true;
    char b;
    return recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) != 0;
}

/* Worker side: the job is finished; build the reply, then resume (last). */
static void job_done(gm_job *job) {
    request *r = job->owner;
    if (job->status == GM_JOB_EXPIRED) gm_metrics_reject(r->h->srv->metrics, GM_REJECT_DEADLINE);
    if (job->status == GM_JOB_CANCELLED) gm_metrics_reject(r->h->srv->metrics, GM_REJECT_CANCELLED);
    gm_ops_finish(&r->call);
    r->st = ST_DONE;
    MHD_resume_connection(r->conn);
}

static int retry_after_s(gm_server *s) {
    double batches_ahead = (double)gm_queue_depth(s->queue) / (double)s->cfg->workers + 1.0;
    int secs = (int)(batches_ahead * gm_batcher_service_ns(s->batcher) * 1e-9 + 0.999);
    return secs < 1 ? 1 : secs;
}

static enum MHD_Result enqueue(request *r) {
    gm_server *s = r->h->srv;
    gm_job *job = &r->call.job;
    job->alive = client_alive;
    job->done = job_done;
    job->owner = r;
    job->deadline_ns = gm_now_ns() + (int64_t)s->cfg->deadline_ms * 1000000;
    r->st = ST_QUEUED;
    r->accepted = true;
    atomic_fetch_add(&s->accepted, 1);
    MHD_suspend_connection(r->conn);
    gm_push_result pr = gm_queue_push(s->queue, job);
    if (pr == GM_PUSH_OK) return MHD_YES; /* the worker owns r until it resumes */
    atomic_fetch_sub(&s->accepted, 1);
    r->accepted = false;
    r->call.reply.retry_after = retry_after_s(s);
    if (pr == GM_PUSH_FULL) {
        gm_metrics_reject(s->metrics, GM_REJECT_QUEUE_FULL);
        gm_reply_error(&r->call.reply, 503, "the queue is full (%d requests waiting, the server's queue_capacity "
                                            "setting); retry after %d s", gm_queue_capacity(s->queue),
                       r->call.reply.retry_after);
    } else {
        gm_metrics_reject(s->metrics, GM_REJECT_DRAINING);
        gm_reply_error(&r->call.reply, 503, "the server is shutting down; retry on another replica");
    }
    r->st = ST_DONE;
    MHD_resume_connection(r->conn);
    return MHD_YES;
}

static request *new_request(gm_http *h, struct MHD_Connection *conn, const char *url, const char *method) {
    request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->path = strdup(url);
    if (!r->path) {
        free(r);
        return NULL;
    }
    r->h = h;
    r->conn = conn;
    r->t0 = gm_now_ns();
    r->call.srv = h->srv;
    r->call.model = -1;
    r->call.route = GM_ROUTE_OTHER;
    snprintf(r->method, sizeof r->method, "%s", method);
    const char *id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (sane_id(id)) snprintf(r->id, sizeof r->id, "%s", id);
    else snprintf(r->id, sizeof r->id, "%016llx", (unsigned long long)atomic_fetch_add(&h->next_id, 1));
    client_address(conn, r->client, sizeof r->client);
    atomic_fetch_add(&h->in_flight, 1);
    gm_metrics_in_flight(h->srv->metrics, 1);
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    gm_http *h = cls;
    gm_server *s = h->srv;
    request *r = *con_cls;
    if (!r) {
        if (!(r = new_request(h, conn, url, method))) return MHD_NO;
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > (unsigned long long)s->cfg->max_body_bytes) {
            gm_metrics_reject(s->metrics, GM_REJECT_TOO_LARGE);
            gm_reply_error(&r->call.reply, 413, "the body is %s bytes; the limit is %ld (the server's max_body_bytes "
                                                "setting)", cl, s->cfg->max_body_bytes);
            return send_reply(r);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->too_large) return MHD_YES;
        if (n > (size_t)s->cfg->max_body_bytes - r->len) {
            r->too_large = true; /* keep reading (and dropping) so the 413 can be sent at the end */
            return MHD_YES;
        }
        if (r->len + n > r->cap) {
            size_t cap = r->cap ? r->cap : 16384;
            while (cap < r->len + n) cap *= 2;
            uint8_t *b = realloc(r->body, cap);
            if (!b) return MHD_NO;
            r->body = b;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        return MHD_YES;
    }
    if (r->st == ST_DONE) return send_reply(r);
    if (r->st == ST_QUEUED) return MHD_YES; /* not reached: suspended connections get no calls */
    if (!strcmp(method, "OPTIONS")) return reply_options(r);
    if (r->too_large) {
        gm_metrics_reject(s->metrics, GM_REJECT_TOO_LARGE);
        gm_reply_error(&r->call.reply, 413, "the body is over %ld bytes (the server's max_body_bytes setting)",
                       s->cfg->max_body_bytes);
        return send_reply(r);
    }
    json_t *query = json_object();
    if (!query) return MHD_NO;
    gm_http_request req = {
        .method = method,
        .path = url,
        .query = query,
        .content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
        .authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        .body = r->body,
        .body_len = r->len,
    };
    MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &req);
    bool queue_it = gm_api_handle(&r->call, &req);
    json_decref(query);
    free(r->body); /* the call has copied what it needs */
    r->body = NULL;
    r->len = r->cap = 0;
    return queue_it ? enqueue(r) : send_reply(r);
}

static void access_log(const request *r, int64_t end) {
    const char *fmt = r->h->srv->cfg->log_format;
    if (!strcmp(fmt, "off")) return;
    const gm_job *job = &r->call.job;
    double ms = (end - r->t0) * 1e-6;
    double queue_ms = job->started_ns ? (job->started_ns - job->enqueued_ns) * 1e-6 : 0;
    double compute_ms = job->finished_ns > job->started_ns ? (job->finished_ns - job->started_ns) * 1e-6 : 0;
    char ts[32];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *model = r->call.model >= 0 ? r->h->srv->model_names[r->call.model] : "-";
    if (!strcmp(fmt, "json")) {
        json_t *line = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:I,s:f,s:f,s:f,s:i,s:s}", "time", ts, "client", r->client,
                                 "method", r->method, "path", r->path, "model", model, "status", r->status, "bytes",
                                 (json_int_t)r->bytes, "ms", ms, "queue_ms", queue_ms, "compute_ms", compute_ms,
                                 "batch", job->batch_rows, "id", r->id);
        char *text = line ? json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
        if (text) fprintf(stderr, "%s\n", text);
        free(text);
        json_decref(line);
        return;
    }
    fprintf(stderr, "%s %s \"%s %s\" %d %zuB %.2fms queue=%.2fms compute=%.2fms batch=%d model=%s id=%s\n", ts,
            r->client, r->method, r->path, r->status, r->bytes, ms, queue_ms, compute_ms, job->batch_rows, model, r->id);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    gm_http *h = cls;
    request *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    int64_t end = gm_now_ns();
    if (!r->replied) r->status = 0; /* closed before any reply */
    gm_metrics_request(h->srv->metrics, r->call.route, r->call.model, r->status, end - r->t0);
    access_log(r, end);
    if (r->accepted) atomic_fetch_sub(&h->srv->accepted, 1);
    gm_metrics_in_flight(h->srv->metrics, -1);
    atomic_fetch_sub(&h->in_flight, 1);
    gm_call_release(&r->call);
    free(r->body);
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
        {MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL},
        {cfg->http_threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)cfg->http_threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    h->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, h, MHD_OPTION_ARRAY, ops,
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d) {
        gm_errorf(err, "cannot listen on %s (address in use, or not this machine's?)", cfg->listen);
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
    if (h->listen_fd != MHD_INVALID_SOCKET) close(h->listen_fd);
    free(h);
}
