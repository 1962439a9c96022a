/*
 * oip_routes.h - the /v2 routes: the Open Inference Protocol v2 (KServe,
 * Triton) on top of the model operations (docs/oip.md).
 *
 * Server and model metadata, liveness and readiness are answered at once;
 * an infer request is parsed and bound by oip.h into the native parameters
 * of one operation and prepared by ops.h like a /v1 request, so it waits
 * in the same queue, joins the same batches and meets the same limits and
 * metrics. Only the reply differs: gm_oip_finish writes the protocol's
 * tensors from the finished job, and every error on a /v2 path takes the
 * protocol's shape {"error": "<message>"}.
 */
#ifndef GM_OIP_ROUTES_H
#define GM_OIP_ROUTES_H

#include <stdbool.h>

#include "api.h"

/* Whether path is one of the protocol's (/v2 or under it). */
bool gm_oip_path(const char *path);

/* Handles the /v2 route c->route for req: c->reply is final, or c->op is
 * prepared and c->oip holds what its reply needs. */
void gm_oip_handle(gm_server *s, gm_call *c, const gm_http_request *req);

/* Builds c->reply from c->op's finished job (a call gm_oip_handle set up). */
void gm_oip_finish(gm_call *c);

/* Frees what gm_oip_handle kept for the reply. Accepts NULL. */
void gm_oip_call_free(gm_oip_call *o);

/* Rewrites an error reply into the protocol's shape, {"error": "<message>"},
 * with 400 where /v1 answers 422 (the protocol's status for a request the
 * model cannot take); other statuses stay. */
void gm_oip_error_reply(gm_reply *r);

#endif
