/*
 * main.c - gmserve's entry point: settings, models, workers, HTTP, and the
 * signal-driven shutdown.
 *
 * Signals are blocked in every thread and taken by the main thread with
 * sigwait, so shutdown runs as ordinary code. Threads started before main
 * (OpenBLAS starts its pool when the library loads) do not block them: a
 * handler forwards a signal that lands on one of those to the main thread,
 * where it waits for sigwait, instead of the default action killing the
 * process mid-drain. SIGTERM (or SIGINT) drains:
 * /readyz turns 503 and new model requests get 503 with Connection: close,
 * while every request already queued is computed and answered (waiting at
 * most drain_timeout_s); then the listening socket closes, the workers
 * finish what is left, and the process exits 0. SIGHUP reloads the settings
 * and the model files on the control thread (reload.h, control.h), as POST
 * /v1/admin/reload does.
 *
 * `gmserve check FILE...` loads model files exactly as the daemon would
 * (which recomputes the file's probes and runs every operation once,
 * gm_model_selftest) and prints what each serves or why it is refused; the
 * evaluation classifier, which the daemon does not serve, is recognised and
 * its networks built instead; `gmserve probe [URL]` is a
 * health check for container images without curl; `gmserve eval ...`
 * measures model quality on Fashion-MNIST (tools/eval/eval.c). The flags
 * --settings-markdown, --routes-markdown, --params-markdown and
 * --errors-markdown print the tables of docs/ from the code's own tables.
 */
#include <cblas.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errors.h"
#include "eval.h"
#include "gm/layers.h"
#include "gm/safetensors.h"
#include "http.h"
#include "params.h"
#include "probe.h"
#include "routes.h"

static void describe(const char *path, const gm_model *m) {
    const gm_model_info *in = gm_model_get_info(m);
    printf("%s: a served model, family %s, image %dx%dx%d", path, gm_family_name(in->family), in->height, in->width,
           in->channels);
    if (in->latent_dim) printf(", latent %d", in->latent_dim);
    if (in->mixture_prior) printf(", prior a mixture of %d Gaussians (one per class)", in->num_classes);
    else if (in->num_classes) printf(", %d classes", in->num_classes);
    if (in->family == GM_FAMILY_AAE && !in->mixture_prior) printf(", prior N(0, I)");
    if (in->domains) printf(", domains %s -> %s (forward) and back (reverse)", in->domains[0], in->domains[1]);
    if (in->family == GM_FAMILY_VAE) {
        const char *lik = gm_model_meta(m, "gm.likelihood"), *scale = gm_model_meta(m, "gm.likelihood_scale");
        printf(", input %s, likelihood %s", in->binary ? "binary" : "gray", lik ? lik : "bernoulli");
        if (scale) printf(" (scale %s)", scale);
        if (gm_model_meta(m, "gm.decoder_output")) printf(", decoder output %s", gm_model_meta(m, "gm.decoder_output"));
    }
    printf(", operations:");
    for (int op = 0; op < GM_OP_COUNT; op++)
        if (in->supports[op]) printf(" %s", gm_op_name((gm_op)op));
    printf("\n%s: self-test ran", path); /* gm_model_load runs it: the daemon's load is the same */
    for (int op = 0, first = 1; op < GM_OP_COUNT; op++)
        if (in->supports[op]) printf("%s %s", first ? "" : ",", gm_op_name((gm_op)op)), first = 0;
    printf(" on 2 rows with a fixed seed: all outputs finite\n");
    const char *probes = gm_model_probes(m);
    if (*probes) printf("%s: probes: %s\n", path, probes);
    else printf("%s: probes: none (the file carries no probe tensors to recompute)\n", path);
}

/* A side "HxWxC" of gm.image, as model.c reads it: 1..4096, then `sep`. */
static long image_side(const char **p, char sep) {
    char *end;
    long n = **p >= '0' && **p <= '9' ? strtol(*p, &end, 10) : -1;
    if (n < 1 || n > 4096 || *end != sep) return -1;
    *p = sep ? end + 1 : end;
    return n;
}

/* The evaluation classifier (gm.family "classifier": gm.features from the
 * image to features, gm.head to class logits; tools/eval/eval.c) is no served model:
 * check builds its two networks as gmserve eval does. -1 when the file is
 * not one; else 0, or 1 (printed) when its networks do not build. */
static int check_classifier(const char *path) {
    char err[GM_ERR_LEN];
    gm_st *st = gm_st_load(path, err);
    const char *fam = st ? gm_st_meta(st, "gm.family") : NULL;
    if (!fam || strcmp(fam, "classifier") != 0) {
        gm_st_free(st);
        return -1;
    }
    const char *img = gm_st_meta(st, "gm.image"), *p = img, *fj = gm_st_meta(st, "gm.features"),
               *hj = gm_st_meta(st, "gm.head");
    long h = p ? image_side(&p, 'x') : -1, w = h > 0 ? image_side(&p, 'x') : -1, c = w > 0 ? image_side(&p, 0) : -1;
    gm_net *features = NULL, *head = NULL;
    int rc = 1;
    if (c < 1 || c > 4 || !fj || !hj)
        gm_errorf(err, "%s: a classifier file needs gm.image (\"HxWxC\"), gm.features and gm.head", path);
    else if ((features = gm_net_build(st, "gm.features", fj, gm_shape3((int)c, (int)h, (int)w), err)) &&
             (head = gm_net_build(st, "gm.head", hj, gm_shape1(gm_shape_size(gm_net_out_shape(features))), err)))
        rc = 0;
    if (rc) fprintf(stderr, "gmserve: %s\n", err);
    else
        printf("%s: the evaluation classifier (gm.family classifier), read by gmserve eval --classifier, not a "
               "served model: image %s, %d features, %d classes; its networks build\n",
               path, img, gm_shape_size(gm_net_out_shape(features)), gm_shape_size(gm_net_out_shape(head)));
    gm_net_free(features);
    gm_net_free(head);
    gm_st_free(st);
    return rc;
}

static int check_files(int n, char **paths) {
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char err[GM_ERR_LEN];
        gm_model *m = gm_model_load(paths[i], err);
        if (!m) {
            int classifier = check_classifier(paths[i]);
            if (classifier < 0) fprintf(stderr, "gmserve: %s\n", err);
            rc |= classifier != 0;
            continue;
        }
        describe(paths[i], m);
        gm_model_free(m);
    }
    return rc;
}

/* Workers report each executed batch here, for the metrics. */
static void on_batch(void *ctx, gm_job *const *jobs, int count, int rows, int64_t compute_ns) {
    gm_server *s = ctx;
    int model = jobs[0]->slot; /* a batch shares its model */
    for (int i = 0; i < count; i++)
        if (jobs[i]->status == GM_JOB_OK && jobs[i]->rows_done == jobs[i]->n) /* its last piece */
            gm_metrics_job(s->metrics, model, jobs[i]->op, jobs[i]->started_ns - jobs[i]->enqueued_ns);
    gm_metrics_batch(s->metrics, model, jobs[0]->op, rows, compute_ns);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Waits until cond() holds or timeout_ms passes; true if it holds. */
static bool wait_until(bool (*cond)(void *), void *arg, int64_t timeout_ms) {
    int64_t end = gm_now_ns() + timeout_ms * 1000000;
    while (!cond(arg)) {
        if (gm_now_ns() >= end) return false;
        sleep_ms(10);
    }
    return true;
}

static bool none_accepted(void *s) { return atomic_load(&((gm_server *)s)->accepted) == 0; }
static bool none_in_flight(void *h) { return gm_http_in_flight(h) == 0; }

/* A SIGHUP's reload has finished on the control thread: log how it went. */
static void sighup_done(gm_control_task *t) {
    if (t->outcome.status == GM_RELOAD_OK) fprintf(stderr, "gmserve: SIGHUP: reload done\n");
    else fprintf(stderr, "gmserve: SIGHUP: %s\n", t->outcome.message);
    json_decref(t->outcome.result);
    free(t);
}

/* SIGHUP reloads on the control thread, as POST /v1/admin/reload does; the
 * main thread goes back to waiting for signals at once. */
static void sighup(gm_server *s) {
    gm_control_task *t = calloc(1, sizeof *t);
    if (t) *t = (gm_control_task){.op = GM_CONTROL_RELOAD, .done = sighup_done};
    if (!t || !gm_control_submit(s->control, t)) {
        fprintf(stderr, "gmserve: SIGHUP ignored: %s\n",
                t ? "the control thread has as many changes waiting as it "
                    "takes; send it again later"
                  : "out of memory");
        free(t);
    }
}

static pthread_t main_thread;

/* Runs only on threads that did not inherit the blocked mask. */
static void forward_to_main(int sig) { pthread_kill(main_thread, sig); }

static int serve(const gm_config *cfg, int argc, char **argv) {
    static gm_server s;
    s.cfg = cfg;
    char err[2 * GM_ERR_LEN];
    openblas_set_num_threads((int)cfg->blas_threads);
    gm_set_compute_threads((int)cfg->blas_threads);
    json_object_seed(0);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* before any thread starts, so all inherit it */
    main_thread = pthread_self();
    struct sigaction fwd = {.sa_handler = forward_to_main};
    sigfillset(&fwd.sa_mask);
    sigaction(SIGTERM, &fwd, NULL);
    sigaction(SIGINT, &fwd, NULL);
    sigaction(SIGHUP, &fwd, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    gm_http *http = NULL;
    s.models = gm_registry_new();
    s.settings = gm_settings_new(cfg);
    if (!s.models || !s.settings) {
        fprintf(stderr, "gmserve: out of memory\n");
        goto out;
    }
    if (gm_reload_initial(s.models, cfg, err)) {
        fprintf(stderr, "gmserve: %s\n", err);
        goto out;
    }
    s.metrics = gm_metrics_new(GM_ROUTE_COUNT, gm_route_names, GM_REGISTRY_SLOTS, gm_registry_slot_names(s.models),
                               gm_registry_slot_count(s.models));
    s.queue = gm_queue_new((int)cfg->queue_capacity);
    if (!s.metrics || !s.queue) {
        fprintf(stderr, "gmserve: out of memory\n");
        goto out;
    }
    gm_reload_target target = {s.models, s.settings, argc, argv};
    if (!(s.control = gm_control_start(&target, err))) {
        fprintf(stderr, "gmserve: %s\n", err);
        goto out;
    }
    gm_batcher_config bc = {(int)cfg->workers, (int)cfg->max_batch, cfg->max_delay_us * 1000, on_batch, &s};
    if (!(s.batcher = gm_batcher_start(s.queue, &bc, err)) || !(http = gm_http_start(&s, err))) {
        fprintf(stderr, "gmserve: %s\n", err);
        goto out;
    }
    atomic_store(&s.ready, true);
    fprintf(stderr,
            "gmserve: serving %d model(s) on http://%s:%d (default %s; %ld workers, max_batch %ld, "
            "max_delay %ld us)\n",
            gm_registry_count(s.models), cfg->host, gm_http_port(http), cfg->default_model, cfg->workers,
            cfg->max_batch, cfg->max_delay_us);
    for (;;) {
        int sig;
        sigwait(&sigs, &sig);
        if (sig != SIGHUP) break;
        sighup(&s);
    }
    fprintf(stderr, "gmserve: draining: %d request(s) accepted, new ones get 503\n", atomic_load(&s.accepted));
    atomic_store(&s.ready, false);
    atomic_store(&s.draining, true);
    const gm_config *now = gm_settings_acquire(s.settings); /* drain_timeout_s as last reloaded */
    long drain_s = now->drain_timeout_s;
    gm_settings_release(now);
    if (!wait_until(none_accepted, &s, drain_s * 1000))
        fprintf(stderr, "gmserve: drain timeout (%ld s) with %d request(s) unanswered\n", drain_s,
                atomic_load(&s.accepted));
    gm_http_quiesce(http);
    gm_queue_close(s.queue);
    gm_batcher_join(s.batcher); /* computes and resumes whatever is still queued */
    s.batcher = NULL;
    gm_control_stop(s.control); /* finishes the admin changes waiting, which resumes their connections */
    s.control = NULL;
    wait_until(none_in_flight, http, 5000); /* let resumed replies reach their clients */
    rc = 0;
out:
    gm_http_stop(http);
    if (s.queue) gm_queue_close(s.queue);
    gm_batcher_join(s.batcher);
    gm_control_stop(s.control);
    gm_queue_free(s.queue);
    gm_metrics_free(s.metrics);
    gm_registry_free(s.models);
    gm_settings_free(s.settings);
    if (rc == 0) fprintf(stderr, "gmserve: stopped\n");
    return rc;
}

int main(int argc, char **argv) {
    static const struct {
        const char *flag;
        void (*print)(FILE *);
    } TABLES[] = {
        {"--settings-markdown", gm_config_markdown}, /* the README's settings table */
        {"--routes-markdown", gm_routes_markdown},   /* docs/http-api.md's tables */
        {"--params-markdown", gm_params_markdown},
        {"--errors-markdown", gm_errors_markdown},
    };
    for (size_t i = 0; argc == 2 && i < sizeof TABLES / sizeof TABLES[0]; i++)
        if (!strcmp(argv[1], TABLES[i].flag)) {
            TABLES[i].print(stdout);
            return 0;
        }
    if (argc >= 2 && !strcmp(argv[1], "eval")) return gm_eval_main(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "probe")) return gm_probe(argc > 2 ? argv[2] : NULL, 3000);
    if (argc >= 2 && !strcmp(argv[1], "check")) {
        if (argc == 2) fprintf(stderr, "usage: gmserve check MODEL.safetensors...\n");
        return argc == 2 ? 2 : check_files(argc - 2, argv + 2);
    }
    static gm_config cfg;
    char err[GM_ERR_LEN];
    switch (gm_config_load(&cfg, argc, argv, err)) {
    case GM_CONFIG_HELP:
        gm_config_usage(stdout);
        return 0;
    case GM_CONFIG_ERROR:
        fprintf(stderr, "gmserve: %s\n", err);
        return 2;
    case GM_CONFIG_OK:
        break;
    }
    return serve(&cfg, argc, argv);
}
