/*
 * family.h - what each model family implements for model.c (internal).
 *
 * model.c reads the metadata every family shares (image shape, latent size,
 * classes), then hands the file to the family's load, which builds its
 * networks and completes the info (encode_dim, supported operations). The
 * operations receive pixels already binarized for binary models and in
 * channels-last order; helpers convert to the NCHW order networks expect.
 */
#ifndef GM_FAMILY_H
#define GM_FAMILY_H

#include "gm/layers.h"
#include "gm/model.h"
#include "gm/safetensors.h"

typedef struct {
    void *(*load)(const gm_st *st, gm_model_info *info, char err[GM_ERR_LEN]);
    void (*free)(void *impl);
    /* The network called `name` ("encoder", "decoder", "generator",
     * "discriminator", "reverse", ...), or NULL when the model has none (or no nets at all:
     * then the hook itself is NULL). The load-time probes run it. */
    const gm_net *(*net)(const void *impl, const char *name);
    int (*sample)(const void *impl, const gm_model_info *info, int B, gm_row *rows, float *pixels, double *logp);
    int (*logp)(const void *impl, const gm_model_info *info, int B, const float *x, int K, gm_row *rows,
                gm_logp_result *out);
    int (*encode)(const void *impl, const gm_model_info *info, int B, const float *x, float *z, float *logvar);
    int (*decode)(const void *impl, const gm_model_info *info, int B, const float *z, const int *labels,
                  const float *codes, const int *cats, float *pixels); /* see gm_model_decode_codes */
    int (*discriminate)(const void *impl, const gm_model_info *info, int B, const float *x, float *logits);
    int (*reconstruct)(const void *impl, const gm_model_info *info, int B, const float *x, float *pixels);
    /* gm_model_complete on inputs x already binarized (binary models). */
    int (*complete)(const void *impl, const gm_model_info *info, int B, const float *x, gm_row *rows, float *pixels,
                    double *logp, double *logp_rest);
    /* gm_model_translate */
    int (*translate)(const void *impl, const gm_model_info *info, int B, const float *x, const int *labels,
                     bool reverse, float *pixels);
    /* A family without layer graphs (pixelrnn) that checked its own probes
     * at load: how many probe inputs it verified (0: none in the file). */
    int (*own_probes)(const void *impl);
} gm_family_impl;

extern const gm_family_impl gm_nade_family, gm_vae_family, gm_gan_family, gm_aae_family, gm_pixelcnn_family,
    gm_translator_family, gm_pixelrnn_family;

/* The family's state of a loaded model (its load's result). */
const void *gm_model_state(const gm_model *m);

/* Builds the net stored in metadata `key` with input `in`; checks that its
 * output has `out_size` values. NULL with a message when it fails. */
gm_net *gm_family_net(const gm_st *st, const char *key, gm_shape in, int out_size, char err[GM_ERR_LEN]);

/* Recomputes the file's probes (gm.probe.<net>.in.<input> /
 * gm.probe.<net>.out) on the loaded networks, verify.c. 0 when every probe
 * matches, with `summary` saying what was verified ("" when the file has
 * none); else -1 with a message naming the net, the output index and both
 * values. */
int gm_verify_probes(const gm_st *st, const gm_model_info *info, const gm_family_impl *impl, const void *state,
                     char *summary, size_t summary_len, char err[GM_ERR_LEN]);

/* The image as a network sees it: [C, H, W]. */
gm_shape gm_image_shape(const gm_model_info *info);

/* (B, H*W*C) channels-last <-> (B, C, H*W) channels-first. */
void gm_hwc_to_chw(const gm_model_info *info, int B, const float *src, float *dst);
void gm_chw_to_hwc(const gm_model_info *info, int B, const float *src, float *dst);

#endif
