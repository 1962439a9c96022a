/*
 * admin.h - the admin routes (docs/reload.md): POST /v1/admin/reload,
 * POST /v1/admin/models {"name", "path"} and DELETE /v1/admin/models/{name}.
 *
 * A request becomes a control task (control.h), which the caller submits
 * to the control thread; when it is done, its outcome becomes the reply.
 * Who may ask: with api_keys, whoever has a key (checked before, as on
 * every closed route); without, nobody, unless admin_loopback lets clients
 * on the loopback address in: a server without keys is open to whoever
 * reaches its port, and an open reload would let anyone replace its models.
 */
#ifndef GM_ADMIN_H
#define GM_ADMIN_H

#include "control.h"
#include "reply.h"

typedef struct {
    const gm_config *cfg; /* the request's settings */
    bool loopback;        /* the client's address is a loopback one */
    bool draining;
    unsigned method; /* GM_METHOD_* */
    const char *path;
    const char *name; /* the {name} segment of DELETE, else "" */
    bool json_body;   /* Content-Type: application/json */
    const uint8_t *body;
    size_t body_len;
} gm_admin_request;

/* The task to submit (malloc'd; gm_admin_free frees it once done), or NULL
 * with the refusal in reply. */
gm_control_task *gm_admin_prepare(const gm_admin_request *rq, gm_reply *reply);
/* The reply of a finished task. */
void gm_admin_finish(gm_control_task *t, gm_reply *reply);
void gm_admin_free(gm_control_task *t); /* accepts NULL */

#endif
