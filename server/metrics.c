/*
 * metrics.c - fixed-shape metric families over atomics (see metrics.h).
 *
 * Every label combination is an array slot allocated at start-up (routes x
 * models x status codes; models x operations), so an update is one atomic
 * add and never allocates. Histograms keep per-bucket counts and render
 * them cumulatively, as Prometheus expects; sums are kept in integer
 * nanoseconds to stay atomic.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static const double SECONDS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const double ROWS[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};
enum { NSEC = sizeof SECONDS / sizeof SECONDS[0], NROWS = sizeof ROWS / sizeof ROWS[0], MAXB = 16 };

/* the statuses of errors.h, and one slot for any other (0: no reply) */
enum { MAX_STATUSES = GM_E_COUNT + 3, NSTATUS = MAX_STATUSES + 1 };

typedef struct {
    _Atomic uint64_t bucket[MAXB + 1]; /* the last is +Inf */
    _Atomic uint64_t count, sum;       /* sum in ns (seconds) or rows */
} histogram;

struct gm_metrics {
    int n_routes, n_models;
    const char *const *route_names, *const *model_names;
    const atomic_int *named;                      /* models named so far (reloads add names); NULL: all n_models */
    _Atomic uint64_t *requests;                   /* [route][model + 1][status] */
    histogram *latency;                           /* [route][model + 1] */
    histogram *queue_wait, *compute, *batch_rows; /* [model][op] */
    _Atomic uint64_t *jobs, *batches;             /* [model][op] */
    _Atomic uint64_t rejects[GM_E_COUNT];
    _Atomic int64_t in_flight;
    int statuses[MAX_STATUSES], n_statuses;
};

gm_metrics *gm_metrics_new(int n_routes, const char *const *route_names, int n_models, const char *const *model_names,
                           const atomic_int *named) {
    gm_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    size_t rm = (size_t)n_routes * (n_models + 1), mo = (size_t)n_models * GM_OP_COUNT;
    m->n_statuses = gm_status_list(m->statuses, MAX_STATUSES);
    m->n_routes = n_routes;
    m->n_models = n_models;
    m->route_names = route_names;
    m->model_names = model_names;
    m->named = named;
    m->requests = calloc(rm * NSTATUS, sizeof *m->requests);
    m->latency = calloc(rm, sizeof *m->latency);
    m->queue_wait = calloc(mo, sizeof *m->queue_wait);
    m->compute = calloc(mo, sizeof *m->compute);
    m->batch_rows = calloc(mo, sizeof *m->batch_rows);
    m->jobs = calloc(mo, sizeof *m->jobs);
    m->batches = calloc(mo, sizeof *m->batches);
    if (!m->requests || !m->latency || !m->queue_wait || !m->compute || !m->batch_rows || !m->jobs || !m->batches) {
        gm_metrics_free(m);
        return NULL;
    }
    return m;
}

void gm_metrics_free(gm_metrics *m) {
    if (!m) return;
    free(m->requests);
    free(m->latency);
    free(m->queue_wait);
    free(m->compute);
    free(m->batch_rows);
    free(m->jobs);
    free(m->batches);
    free(m);
}

static void observe(histogram *h, const double *bounds, int nb, double value, uint64_t sum_units) {
    int b = 0;
    while (b < nb && value > bounds[b]) b++;
    atomic_fetch_add(&h->bucket[b], 1);
    atomic_fetch_add(&h->count, 1);
    atomic_fetch_add(&h->sum, sum_units);
}

static int status_index(const gm_metrics *m, int status) {
    for (int i = 0; i < m->n_statuses; i++)
        if (m->statuses[i] == status) return i;
    return NSTATUS - 1;
}

void gm_metrics_request(gm_metrics *m, int route, int model, int status, int64_t latency_ns) {
    size_t rm = (size_t)route * (m->n_models + 1) + (size_t)(model + 1);
    atomic_fetch_add(&m->requests[rm * NSTATUS + status_index(m, status)], 1);
    observe(&m->latency[rm], SECONDS, NSEC, latency_ns * 1e-9, (uint64_t)latency_ns);
}

void gm_metrics_job(gm_metrics *m, int model, gm_op op, int64_t queue_wait_ns) {
    size_t mo = (size_t)model * GM_OP_COUNT + op;
    atomic_fetch_add(&m->jobs[mo], 1);
    observe(&m->queue_wait[mo], SECONDS, NSEC, queue_wait_ns * 1e-9, (uint64_t)queue_wait_ns);
}

void gm_metrics_batch(gm_metrics *m, int model, gm_op op, int rows, int64_t compute_ns) {
    size_t mo = (size_t)model * GM_OP_COUNT + op;
    atomic_fetch_add(&m->batches[mo], 1);
    observe(&m->compute[mo], SECONDS, NSEC, compute_ns * 1e-9, (uint64_t)compute_ns);
    observe(&m->batch_rows[mo], ROWS, NROWS, rows, (uint64_t)rows);
}

void gm_metrics_reject(gm_metrics *m, gm_error_kind kind) { atomic_fetch_add(&m->rejects[kind], 1); }

void gm_metrics_in_flight(gm_metrics *m, int delta) { atomic_fetch_add(&m->in_flight, delta); }

typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} text;

static void put(text *t, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->failed = 1;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

static void put_histogram(text *t, const char *name, const char *labels, const histogram *h, const double *bounds,
                          int nb, double sum_scale) {
    uint64_t count = atomic_load(&h->count);
    if (!count) return;
    uint64_t cum = 0;
    for (int b = 0; b < nb; b++) {
        cum += atomic_load(&h->bucket[b]);
        put(t, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, bounds[b], (unsigned long long)cum);
    }
    put(t, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)count);
    put(t, "%s_sum{%s} %.9g\n", name, labels, atomic_load(&h->sum) * sum_scale);
    put(t, "%s_count{%s} %llu\n", name, labels, (unsigned long long)count);
}

static const char *model_label(const gm_metrics *m, int model) { return model < 0 ? "" : m->model_names[model]; }

char *gm_metrics_render(gm_metrics *m, int queue_depth, int queue_capacity, int ready, size_t *len) {
    int n_models = m->named ? atomic_load(m->named) : m->n_models; /* the names written so far */
    if (n_models > m->n_models) n_models = m->n_models;
    text t = {malloc(16384), 0, 16384, 0};
    if (!t.buf) return NULL;
    char labels[256];
    put(&t, "# HELP gmserve_requests_total HTTP requests answered, by route, model and status.\n"
            "# TYPE gmserve_requests_total counter\n");
    for (int r = 0; r < m->n_routes; r++)
        for (int md = -1; md < n_models; md++)
            for (int s = 0; s < NSTATUS; s++) {
                uint64_t v = atomic_load(&m->requests[((size_t)r * (m->n_models + 1) + md + 1) * NSTATUS + s]);
                if (!v || (s >= m->n_statuses && s != NSTATUS - 1)) continue;
                put(&t, "gmserve_requests_total{route=\"%s\",model=\"%s\",status=\"%s%d\"} %llu\n", m->route_names[r],
                    model_label(m, md), s == NSTATUS - 1 ? "other_" : "", s == NSTATUS - 1 ? 0 : m->statuses[s],
                    (unsigned long long)v);
            }
    put(&t, "# HELP gmserve_request_duration_seconds Time from request headers to response, by route and model.\n"
            "# TYPE gmserve_request_duration_seconds histogram\n");
    for (int r = 0; r < m->n_routes; r++)
        for (int md = -1; md < n_models; md++) {
            snprintf(labels, sizeof labels, "route=\"%s\",model=\"%s\"", m->route_names[r], model_label(m, md));
            put_histogram(&t, "gmserve_request_duration_seconds", labels,
                          &m->latency[(size_t)r * (m->n_models + 1) + md + 1], SECONDS, NSEC, 1e-9);
        }
    static const struct {
        const char *name, *help, *type;
    } FAM[] = {
        {"gmserve_queue_wait_seconds", "Time a computed request waited in the queue.", "histogram"},
        {"gmserve_compute_seconds", "Time to compute one batch.", "histogram"},
        {"gmserve_batch_rows", "Rows (images) per executed batch.", "histogram"},
        {"gmserve_inference_requests_total", "Requests computed (executed batches count them once each).", "counter"},
        {"gmserve_batches_total", "Batches executed; requests / batches is the mean batch size.", "counter"},
    };
    for (int f = 0; f < 5; f++) {
        put(&t, "# HELP %s %s\n# TYPE %s %s\n", FAM[f].name, FAM[f].help, FAM[f].name, FAM[f].type);
        for (int md = 0; md < n_models; md++)
            for (int op = 0; op < GM_OP_COUNT; op++) {
                size_t mo = (size_t)md * GM_OP_COUNT + op;
                snprintf(labels, sizeof labels, "model=\"%s\",op=\"%s\"", m->model_names[md], gm_op_name((gm_op)op));
                if (f == 0) put_histogram(&t, FAM[f].name, labels, &m->queue_wait[mo], SECONDS, NSEC, 1e-9);
                if (f == 1) put_histogram(&t, FAM[f].name, labels, &m->compute[mo], SECONDS, NSEC, 1e-9);
                if (f == 2) put_histogram(&t, FAM[f].name, labels, &m->batch_rows[mo], ROWS, NROWS, 1);
                uint64_t v = f == 3 ? atomic_load(&m->jobs[mo]) : f == 4 ? atomic_load(&m->batches[mo]) : 0;
                if (v) put(&t, "%s{%s} %llu\n", FAM[f].name, labels, (unsigned long long)v);
            }
    }
    put(&t, "# HELP gmserve_rejections_total Requests refused or dropped, by reason.\n"
            "# TYPE gmserve_rejections_total counter\n");
    for (int k = 0; k < GM_E_COUNT; k++)
        if (gm_errors[k].reason)
            put(&t, "gmserve_rejections_total{reason=\"%s\"} %llu\n", gm_errors[k].reason,
                (unsigned long long)atomic_load(&m->rejects[k]));
    put(&t,
        "# HELP gmserve_queue_depth Requests waiting for a worker.\n# TYPE gmserve_queue_depth gauge\n"
        "gmserve_queue_depth %d\n"
        "# HELP gmserve_queue_capacity Requests the queue holds before answering 503.\n"
        "# TYPE gmserve_queue_capacity gauge\ngmserve_queue_capacity %d\n"
        "# HELP gmserve_in_flight_requests Requests received and not yet answered.\n"
        "# TYPE gmserve_in_flight_requests gauge\ngmserve_in_flight_requests %lld\n"
        "# HELP gmserve_ready 1 when every model is loaded and the server is not draining.\n"
        "# TYPE gmserve_ready gauge\ngmserve_ready %d\n",
        queue_depth, queue_capacity, (long long)atomic_load(&m->in_flight), ready);
    if (t.failed) {
        free(t.buf);
        return NULL;
    }
    *len = t.len;
    return t.buf;
}
