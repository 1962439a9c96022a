/*
 * cost.c - the cost model and admission control (see cost.h).
 *
 * A NADE's completion runs its sampling recurrence, so it costs what
 * sample does. The per-row figures are medians of /sample, /logp, /encode and /decode on
 * the bundled models, timed through the core on one core in batches of 16
 * (README.md, "Cost and limits"; the AAE's, whose decoder has the GAN's
 * shape, as the GAN's scaled by their ratio timed in one run, its
 * reconstruct the sum of encode and decode). NADE's work is
 * O(D x H) per row, so its figures scale with both; the networks of a VAE
 * or GAN are not visible here, so theirs scale with the image size D, which
 * is what their first and last layers grow with.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>

#include "cost.h"

enum { REF_DIM = 784, REF_NADE_HIDDEN = 500 };

/* Microseconds per row for the bundled 28x28 models. */
static const double ROW_US[GM_FAMILY_COUNT][GM_OP_COUNT] = {
    [GM_FAMILY_NADE] = {[GM_OP_SAMPLE] = 75, [GM_OP_LOGP] = 85, [GM_OP_ENCODE] = 10, [GM_OP_COMPLETE] = 75},
    [GM_FAMILY_VAE] = {[GM_OP_SAMPLE] = 25, [GM_OP_LOGP] = 40, [GM_OP_ENCODE] = 16, [GM_OP_DECODE] = 20},
    [GM_FAMILY_GAN] = {[GM_OP_SAMPLE] = 125, [GM_OP_ENCODE] = 185, [GM_OP_DECODE] = 125, [GM_OP_DISCRIMINATE] = 185},
    [GM_FAMILY_AAE] = {[GM_OP_SAMPLE] = 120, [GM_OP_ENCODE] = 185, [GM_OP_DECODE] = 120, [GM_OP_RECONSTRUCT] = 305},
    /* the bundled gated PixelCNN (9 dilated layers of 64 channels): cached sampling is about one forward
     * pass done position by position, logp one batched pass; complete is costed as sample, which bounds it */
    [GM_FAMILY_PIXELCNN] = {[GM_OP_SAMPLE] = 32000, [GM_OP_LOGP] = 13000, [GM_OP_COMPLETE] = 32000},
    /* a StarGAN of the bundled recipe's size (ResNet generator, widths 16-32-64, 3 residual blocks at 7x7, the
     * image and 10 one-hot maps in): 1.8-2.1 ms per row (medians of 41 batches of 16, three runs, load ~13);
     * the CycleGAN of the same widths with 7x7 ends is within 20 % of it */
    [GM_FAMILY_TRANSLATOR] = {[GM_OP_TRANSLATE] = 2000},
    /* the bundled Row LSTM (4 layers of 48): sampling computes each pixel's column alone, logp one
     * batched pass */
    [GM_FAMILY_PIXELRNN] = {[GM_OP_SAMPLE] = 7500, [GM_OP_LOGP] = 6000, [GM_OP_COMPLETE] = 7500},
};
#define VAE_IMPORTANCE_SAMPLE_US 12.0 /* one of the K decoder rows of a VAE logp */
#define PNG_PIXEL_US 0.02             /* one output pixel: scaling, filtering, deflate */

double gm_cost_row_us(const gm_model_info *in, gm_op op, int k) {
    double us = ROW_US[in->family][op];
    if (in->family == GM_FAMILY_VAE && op == GM_OP_LOGP) us += VAE_IMPORTANCE_SAMPLE_US * (k > 0 ? k : 1);
    double size = (double)in->dim / REF_DIM;
    if (in->family == GM_FAMILY_NADE) size *= (double)in->encode_dim / REF_NADE_HIDDEN;
    return us * size;
}

double gm_cost_png_us(const gm_model_info *in, long n, int scale) {
    return PNG_PIXEL_US * (double)n * in->dim * scale * scale;
}

static const char *what_to_lower(const gm_model_info *in, gm_op op) {
    switch (op) {
    case GM_OP_SAMPLE:
    case GM_OP_COMPLETE:
        return "lower n or scale";
    case GM_OP_LOGP:
        return in->exact_logp ? "send fewer images" : "lower k or send fewer images";
    case GM_OP_DECODE:
        return "send fewer latents or lower scale";
    case GM_OP_RECONSTRUCT:
    case GM_OP_TRANSLATE:
        return "send fewer images or lower scale";
    default:
        return "send fewer images";
    }
}

bool gm_cost_admit(const gm_config *cfg, gm_job *job, int scale, gm_reply *reply) {
    const gm_model_info *in = gm_model_get_info(job->model);
    gm_op op = job->op;
    int n = job->n;
    double row_us = gm_cost_row_us(in, op, job->k);
    bool images_out = op == GM_OP_SAMPLE || op == GM_OP_DECODE || op == GM_OP_RECONSTRUCT || op == GM_OP_COMPLETE ||
                      op == GM_OP_TRANSLATE;
    double png_us = images_out ? gm_cost_png_us(in, n, scale) : 0;
    double total_ms = (n * row_us + png_us) * 1e-3;
    if (total_ms > (double)cfg->max_request_cost_ms) {
        char k[48] = "";
        if (op == GM_OP_LOGP && !in->exact_logp) snprintf(k, sizeof k, " at k = %d", job->k);
        gm_reply_error(reply, GM_E_TOO_COSTLY,
                       "this request would take about %.0f ms of compute (%d rows%s at %.3g ms each, plus %.0f ms "
                       "of PNG encoding), over the limit of %ld ms (the server's max_request_cost_ms setting); %s",
                       total_ms, n, k, row_us * 1e-3, png_us * 1e-3, cfg->max_request_cost_ms, what_to_lower(in, op));
        return false;
    }
    /* the same for every job of the key (row_us depends on model, op and K
     * only), so whichever leads a batch bounds it alike */
    double rows = floor((double)cfg->chunk_cost_ms * 1e3 / row_us);
    job->chunk_rows = rows < 1 ? 1 : rows > INT_MAX ? INT_MAX : (int)rows;
    return true;
}
