/*
 * control.c - one thread, a short FIFO of tasks (see control.h).
 */
#include <pthread.h>
#include <stdlib.h>

#include "control.h"

struct gm_control {
    gm_reload_target target;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gm_control_task *head, *tail;
    int pending;
    bool stopping;
};

static void run(const gm_reload_target *t, gm_control_task *task) {
    switch (task->op) {
    case GM_CONTROL_RELOAD:
        gm_reload_settings(t, &task->outcome);
        break;
    case GM_CONTROL_LOAD:
        gm_reload_model(t, task->name, task->path, &task->outcome);
        break;
    case GM_CONTROL_UNLOAD:
        gm_reload_unload(t, task->name, &task->outcome);
        break;
    }
}

static void *control_main(void *arg) {
    gm_control *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->head && !c->stopping) pthread_cond_wait(&c->cv, &c->mu);
        gm_control_task *t = c->head;
        if (!t) break; /* stopping, and nothing left */
        c->head = t->next;
        if (!c->head) c->tail = NULL;
        c->pending--;
        pthread_mutex_unlock(&c->mu);
        run(&c->target, t);
        t->done(t);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

gm_control *gm_control_start(const gm_reload_target *target, char err[GM_ERR_LEN]) {
    gm_control *c = calloc(1, sizeof *c);
    if (!c) {
        gm_errorf(err, "out of memory starting the control thread");
        return NULL;
    }
    c->target = *target;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->thread, NULL, control_main, c) != 0) {
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        free(c);
        gm_errorf(err, "cannot start the control thread");
        return NULL;
    }
    return c;
}

bool gm_control_submit(gm_control *c, gm_control_task *t) {
    pthread_mutex_lock(&c->mu);
    bool ok = !c->stopping && c->pending < GM_CONTROL_PENDING;
    if (ok) {
        t->next = NULL;
        if (c->tail) c->tail->next = t;
        else c->head = t;
        c->tail = t;
        c->pending++;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

void gm_control_stop(gm_control *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
