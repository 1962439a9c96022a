/*
 * ops.h - the model operations: a request view in, a job for the queue,
 * the job's outputs out as a reply.
 *
 * An operation owns everything it allocates (the job, its input and
 * output buffers, the PNG bytes a worker decodes before the first piece)
 * from gm_operation_prepare to gm_operation_free. It never sees the HTTP
 * request: the router hands it the model, the operation and the merged
 * parameters, and the one image of an image/png body.
 */
#ifndef GM_OPS_H
#define GM_OPS_H

#include <jansson.h>

#include "reply.h"
#include "server.h"

typedef struct {
    gm_served *model;     /* the operation takes a reference of its own (registry.h) */
    const gm_config *cfg; /* the request's settings, held by the caller for the operation's life */
    gm_op op;
    json_t *params; /* query and JSON body merged ("model" removed); read and may be rewritten */
    bool get;       /* a GET: images reply as one PNG unless format says otherwise */
    /* One image sent as an image/png body (logp, encode, discriminate, reconstruct), or
     * NULL. When png_buffer is not NULL it holds png's malloc'd buffer, and
     * the operation takes it by setting *png_buffer to NULL; else it copies. */
    const uint8_t *png;
    size_t png_len;
    uint8_t **png_buffer;
} gm_op_request;

typedef struct gm_operation gm_operation;

/* Checks the parameters and inputs and prepares the job (admitted by cost,
 * cost.h). NULL with an error in *reply when the request is refused. */
gm_operation *gm_operation_prepare(gm_server *srv, const gm_op_request *rq, gm_reply *reply);

/* The job to queue; its owner, alive and done are the caller's to set. */
gm_job *gm_operation_job(gm_operation *o);

/* The seed the operation's rows were drawn from (given, or drawn for a
 * sample without one; 0 for operations that draw nothing). */
uint64_t gm_operation_seed(const gm_operation *o);

/* Builds the reply from the finished job (its status and outputs). */
void gm_operation_finish(gm_operation *o, gm_reply *reply);

/* Frees the operation and everything it holds. Accepts NULL. */
void gm_operation_free(gm_operation *o);

#endif
