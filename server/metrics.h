/*
 * metrics.h - counters, gauges and histograms for GET /metrics (Prometheus
 * text format 0.0.4).
 *
 * What users of other model servers keep asking them for: latency,
 * queue-wait and compute as histograms, not only sums; a pending gauge;
 * requests executed vs batches executed per model and operation, so that
 * the mean batch size is visible; rejections by reason. The status codes
 * and the rejection reasons are those of the error table (errors.h). All
 * updates are lock-free atomics, safe from any thread.
 */
#ifndef GM_METRICS_H
#define GM_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "gm/model.h"

typedef struct gm_metrics gm_metrics;

/* route_names: n_routes labels; model_names: n_models labels, of which
 * only the first *named are rendered (named may be NULL: all), so that a
 * model named by a later reload gets its series when it comes. The arrays
 * and the count must outlive the metrics. */
gm_metrics *gm_metrics_new(int n_routes, const char *const *route_names, int n_models, const char *const *model_names,
                           const atomic_int *named);
void gm_metrics_free(gm_metrics *m);

/* A finished HTTP request; model -1 when the route has none. */
void gm_metrics_request(gm_metrics *m, int route, int model, int status, int64_t latency_ns);
/* A job a worker computed: how long it waited in the queue. */
void gm_metrics_job(gm_metrics *m, int model, gm_op op, int64_t queue_wait_ns);
/* A batch a worker computed. */
void gm_metrics_batch(gm_metrics *m, int model, gm_op op, int rows, int64_t compute_ns);
/* A refusal of a kind that has a rejection reason (errors.h). */
void gm_metrics_reject(gm_metrics *m, gm_error_kind kind);
void gm_metrics_in_flight(gm_metrics *m, int delta);

/* The exposition text; malloc'd, caller frees. queue_depth, capacity and
 * ready are sampled by the caller at the moment of the scrape. */
char *gm_metrics_render(gm_metrics *m, int queue_depth, int queue_capacity, int ready, size_t *len);

#endif
