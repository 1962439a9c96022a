/*
 * server.h - the state one running daemon shares between its HTTP threads
 * and its workers: the settings, the loaded models, the queue, the workers
 * and the metrics. Built by main.c, read-only afterwards except for the
 * atomics (draining, accepted) and what reloads swap under their own locks
 * (the settings snapshot, the models of the registry).
 */
#ifndef GM_SERVER_H
#define GM_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>

#include "batcher.h"
#include "config.h"
#include "control.h"
#include "metrics.h"
#include "queue.h"
#include "registry.h"
#include "settings.h"

typedef struct {
    const gm_config *cfg;  /* as started: what only a restart changes (listen, threads, queue) */
    gm_settings *settings; /* the settings now: each request holds the snapshot it started with */
    gm_registry *models;   /* the models served now, by name */
    gm_control *control;   /* runs reloads and admin changes, one at a time */
    gm_queue *queue;
    gm_batcher *batcher;
    gm_metrics *metrics;
    atomic_bool ready;    /* every model loaded, not draining */
    atomic_bool draining; /* SIGTERM seen: model requests get 503 */
    atomic_int accepted;  /* requests queued for a worker and not yet answered */
    /* bytes of request PNGs waiting for a worker to decode them (ops.c),
     * bounded by max_body_memory_bytes */
    atomic_llong png_bytes;
} gm_server;

#endif
