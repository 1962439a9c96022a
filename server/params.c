/*
 * params.c - the parameter table (see params.h).
 *
 * Latents and codes are bounded (+-1e4) so that a decoder never sees
 * values that overflow its float arithmetic; temperature and truncation by
 * 100, past which sampling is noise.
 */
#include <stddef.h>
#include <string.h>

#include "params.h"

#define OP(o) (1u << (o))
#define SAMPLE OP(GM_OP_SAMPLE)
#define LOGP OP(GM_OP_LOGP)
#define ENCODE OP(GM_OP_ENCODE)
#define DECODE OP(GM_OP_DECODE)
#define DISC OP(GM_OP_DISCRIMINATE)
#define RECON OP(GM_OP_RECONSTRUCT)
#define COMPLETE OP(GM_OP_COMPLETE)
#define TRANSLATE OP(GM_OP_TRANSLATE)
#define MAX_SETTING(s) .max_setting = #s, .max_offset = offsetof(gm_config, s)
#define DEFAULT_SETTING(s) .dflt_setting = #s, .dflt_offset = offsetof(gm_config, s)

/* one parameter a line or two, as clang-format would not keep it */
/* clang-format off */
const gm_param_def gm_params[GM_P_COUNT] = {
    [GM_P_IMAGES] = {.name = "images", .type = "array", .min = 1, MAX_SETTING(max_images), .dflt_text = "-",
        .ops = LOGP | ENCODE | DISC | RECON | COMPLETE | TRANSLATE,
        .description = "the input images, each {\"png\": base64} or {\"pixels\": [H*W*C numbers in 0..1]}; "
                       "or send one image as an image/png body (complete: exactly one image)"},
    [GM_P_LATENTS] = {.name = "latents", .type = "array", .min = 1, MAX_SETTING(max_images), .dflt_text = "-",
        .ops = DECODE, .description = "the latents to decode, each latent_dim numbers within +-1e4"},
    [GM_P_N] = {.name = "n", .type = "integer", .min = 1, MAX_SETTING(max_n), .dflt = 1, .dflt_text = "1",
        .ops = SAMPLE | COMPLETE,
        .description = "images to draw, or completions (one PNG grid, or one entry each with format=json)"},
    [GM_P_K] = {.name = "k", .type = "integer", .min = 1, MAX_SETTING(max_k), DEFAULT_SETTING(default_k),
        .dflt_text = "default_k", .ops = LOGP,
        .description = "importance samples per image for a VAE's log p (ignored by exact models)"},
    [GM_P_SEED] = {.name = "seed", .type = "integer", .min = 0, .max = 18446744073709551615.0,
        .dflt_text = "drawn (sample, complete), 0 (logp)", .ops = SAMPLE | LOGP | COMPLETE,
        .description = "the random stream: the same seed gives the same reply (an integer, or a decimal string "
                       "past 2^63 - 1)"},
    [GM_P_TEMPERATURE] = {.name = "temperature", .type = "number", .min = 0, .min_open = true, .max = 100,
        .dflt = 1, .dflt_text = "1", .ops = SAMPLE | COMPLETE, .description = "scales the sampling noise"},
    [GM_P_LABEL] = {.name = "label", .type = "integer", .dflt_text = "random (sample, complete)",
        .ops = SAMPLE | DECODE | COMPLETE | TRANSLATE,
        .description = "the class of a class-conditional model: an index 0..num_classes-1 or a class name; "
                       "decode takes one per latent too; an AAE with a mixture prior: the component sample "
                       "draws z from (its decode takes none); translate: the target class of a multi-domain "
                       "translator (required), one for every image or one per image"},
    [GM_P_TRUNCATION] = {.name = "truncation", .type = "number", .min = 0, .min_open = true, .max = 100,
        .dflt_text = "none", .ops = SAMPLE, .description = "GAN only: redraw latent values beyond +-truncation"},
    [GM_P_CODE] = {.name = "code", .type = "array", .min = -1e4, .max = 1e4, .dflt_text = "random (sample)",
        .ops = SAMPLE | DECODE,
        .description = "a GAN's continuous code: code_dim numbers (decode: one for every latent, or one per "
                       "latent)"},
    [GM_P_CAT] = {.name = "cat", .type = "integer", .dflt_text = "random (sample)", .range_text = "0 to cat_dim - 1",
        .ops = SAMPLE | DECODE,
        .description = "an InfoGAN's categorical code: a category index (decode: one for every latent, or an "
                       "array of one per latent)"},
    [GM_P_MODE] = {.name = "mode", .type = "string", .dflt_text = "mean", .choices = {"mean", "sample"},
        .ops = SAMPLE, .description = "VAE only: the decoder's mean image, or pixels drawn from it"},
    [GM_P_FORMAT] = {.name = "format", .type = "string", .dflt_text = "png for a GET sample, else json",
        .choices = {"png", "json", "pixels", "npy"},
        .ops = SAMPLE | DECODE | LOGP | ENCODE | RECON | COMPLETE | TRANSLATE,
        .description = "the reply: png (one PNG, a grid for n > 1), json (a base64 PNG per image), pixels (JSON "
                       "floats per image), npy (a float32 NumPy array; logp and encode take json or npy); without "
                       "it, Accept: application/x-npy or application/octet-stream asks for npy"},
    [GM_P_SCALE] = {.name = "scale", .type = "integer", .min = 1, MAX_SETTING(max_scale), .dflt = 1,
        .dflt_text = "1", .ops = SAMPLE | DECODE | RECON | COMPLETE | TRANSLATE,
        .description = "upscales each image by this factor (nearest neighbour)"},
    [GM_P_ROWS] = {.name = "rows", .type = "integer", .min = 0, .max = 4096, .dflt_text = "-",
        .range_text = "0 to the image's height", .ops = COMPLETE,
        .description = "the whole rows of the image, from the top, that are kept (give rows or prefix)"},
    [GM_P_PREFIX] = {.name = "prefix", .type = "integer", .min = 0, .max = 4096.0 * 4096 * 4, .dflt_text = "-",
        .range_text = "0 to H*W*C", .ops = COMPLETE,
        .description = "the values of the image kept, in raster order (row, column, channel) (give rows or "
                       "prefix)"},
    [GM_P_DIRECTION] = {.name = "direction", .type = "string", .dflt_text = "forward",
        .range_text = "`forward`, `reverse`, or the target domain's name", .choices = {"forward", "reverse"},
        .ops = TRANSLATE,
        .description = "a two-domain translator (CycleGAN): forward maps domain A to B, reverse (models with a "
                       "reverse generator only) B to A; the target domain's name (GET /v1/models lists domains) "
                       "says the same"},
};
/* clang-format on */

static long setting(const gm_config *cfg, size_t offset) { return *(const long *)((const char *)cfg + offset); }

double gm_param_max(gm_param p, const gm_config *cfg) {
    const gm_param_def *d = &gm_params[p];
    return d->max_setting ? (double)setting(cfg, d->max_offset) : d->max;
}

double gm_param_default(gm_param p, const gm_config *cfg) {
    const gm_param_def *d = &gm_params[p];
    return d->dflt_setting ? (double)setting(cfg, d->dflt_offset) : d->dflt;
}

int gm_param_find(gm_op op, const char *name) {
    for (int p = 0; p < GM_P_COUNT; p++)
        if (gm_param_takes((gm_param)p, op) && !strcmp(gm_params[p].name, name)) return p;
    return -1;
}

void gm_params_accepted(gm_op op, char *out, size_t n) {
    size_t len = 0;
    out[0] = 0;
    for (int p = 0; p < GM_P_COUNT && len < n; p++)
        if (gm_param_takes((gm_param)p, op))
            len += (size_t)snprintf(out + len, n - len, "%s%s", len ? ", " : "", gm_params[p].name);
}

void gm_params_markdown(FILE *f) {
    fprintf(f, "| Parameter | Type | Range | Default | Operations | Meaning |\n|---|---|---|---|---|---|\n");
    for (int p = 0; p < GM_P_COUNT; p++) {
        const gm_param_def *d = &gm_params[p];
        char range[96] = "", ops[96] = "";
        int nc = 0;
        while (nc < (int)(sizeof d->choices / sizeof d->choices[0]) && d->choices[nc]) nc++;
        if (d->range_text) snprintf(range, sizeof range, "%s", d->range_text);
        else if (nc)
            for (int i = 0, o = 0; i < nc; i++) /* `a`, `b` or `c` */
                o += snprintf(range + o, sizeof range - (size_t)o, "%s`%s`",
                              !i           ? ""
                              : i + 1 < nc ? ", "
                                           : " or ",
                              d->choices[i]);
        else if (!strcmp(d->name, "label")) snprintf(range, sizeof range, "0 to num_classes - 1, or a class name");
        else if (!strcmp(d->type, "array") && d->max_setting)
            snprintf(range, sizeof range, "%g to %s entries", d->min, d->max_setting);
        else if (!strcmp(d->type, "array")) snprintf(range, sizeof range, "code_dim numbers within +-%g", d->max);
        else if (d->max_setting) snprintf(range, sizeof range, "%g to %s", d->min, d->max_setting);
        else if (!strcmp(d->name, "seed")) snprintf(range, sizeof range, "0 to 2^64 - 1");
        else snprintf(range, sizeof range, "%s %g, at most %g", d->min_open ? "above" : "at least", d->min, d->max);
        for (int op = 0; op < GM_OP_COUNT; op++)
            if (gm_param_takes((gm_param)p, (gm_op)op))
                snprintf(ops + strlen(ops), sizeof ops - strlen(ops), "%s%s", ops[0] ? ", " : "",
                         gm_op_name((gm_op)op));
        fprintf(f, "| `%s` | %s | %s | %s | %s | %s |\n", d->name, d->type, range, d->dflt_text, ops, d->description);
    }
}
