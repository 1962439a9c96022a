/*
 * cost.h - what a request costs before it runs, and admission by cost.
 *
 * Every operation's cost is known from its parameters alone: rows times a
 * cost per row that depends on the model's family, its size and the
 * operation (times K for a VAE logp, whose K importance samples are K
 * decoder rows per image), plus the PNG work of n x image x scale^2 output
 * pixels. Costs are in microseconds of one core, measured on the
 * development machine for the bundled models (README: "Cost and limits");
 * other machines and models scale them, but a request's cost relative to
 * another's, and so the bound and the pieces, stay right.
 *
 * Admission bounds a request's total cost (max_request_cost_ms: 422 before
 * it is queued, naming the cost, the limit and what to lower) and cuts its
 * rows into pieces of about chunk_cost_ms (gm_job.chunk_rows), so that the
 * queue interleaves it with other work (queue.h).
 */
#ifndef GM_COST_H
#define GM_COST_H

#include "config.h"
#include "queue.h"
#include "reply.h"

/* Estimated compute of one row of op on the model, in microseconds; k is
 * the VAE logp's importance samples (ignored otherwise). */
double gm_cost_row_us(const gm_model_info *in, gm_op op, int k);

/* Estimated PNG encoding of n images upscaled by scale, in microseconds. */
double gm_cost_png_us(const gm_model_info *in, long n, int scale);

/* Called once the job is prepared (scale: the upscaling of its images):
 * false with a 422 reply when the request costs more than
 * max_request_cost_ms; else sets job->chunk_rows from chunk_cost_ms and
 * returns true. */
bool gm_cost_admit(const gm_config *cfg, gm_job *job, int scale, gm_reply *reply);

#endif
