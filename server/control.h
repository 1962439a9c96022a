/*
 * control.h - the thread that changes what the daemon serves (reload.h),
 * so that loading a model file never runs on an HTTP thread or a worker.
 *
 * Tasks (a reload, a load, an unload) come from the admin routes and from
 * SIGHUP and run one at a time, in arrival order: two changes never
 * interleave. A few may wait (GM_CONTROL_PENDING); beyond that a submit is
 * refused at once, as a full work queue refuses a job, so that a flood of
 * admin requests cannot hold memory or connections. Each task's done
 * callback runs on the control thread when it is finished.
 */
#ifndef GM_CONTROL_H
#define GM_CONTROL_H

#include "reload.h"

enum { GM_CONTROL_PENDING = 8 };

typedef enum { GM_CONTROL_RELOAD, GM_CONTROL_LOAD, GM_CONTROL_UNLOAD } gm_control_op;

typedef struct gm_control_task gm_control_task;
struct gm_control_task {
    gm_control_op op;
    char name[GM_NAME_LEN]; /* load, unload */
    char path[GM_PATH_LEN]; /* load */
    gm_reload_outcome outcome;
    /* Called once on the control thread with the outcome filled; the task
     * is the caller's again (it may free it). */
    void (*done)(gm_control_task *t);
    void *owner;
    gm_control_task *next;
};

typedef struct gm_control gm_control;

/* Starts the thread; the target must outlive it. NULL with err filled when
 * it cannot start. */
gm_control *gm_control_start(const gm_reload_target *target, char err[GM_ERR_LEN]);
/* Queues t; false when GM_CONTROL_PENDING tasks wait already or the thread
 * is stopping (t is untouched then). */
bool gm_control_submit(gm_control *c, gm_control_task *t);
/* Runs the tasks queued, then stops the thread and frees c. Accepts NULL. */
void gm_control_stop(gm_control *c);

#endif
