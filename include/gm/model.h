/*
 * model.h - a loaded generative model and every operation the API serves.
 *
 * gm_model_load reads a model file (docs/model-files.md) (safetensors + gm.* metadata), builds
 * the family's networks and checks every shape, or refuses the file with a
 * message naming it and the reason. A loaded model is immutable: any number
 * of threads may run operations on it at once.
 *
 * Every operation is batched: B rows in, B rows out. Images are (B, D) floats
 * in [0, 1], D = H*W*C in raster order, channels last. Rows that draw random
 * numbers take a gm_row each, whose rng is that row's own stream, so a row's
 * result never depends on the other rows in its batch.
 */
#ifndef GM_MODEL_H
#define GM_MODEL_H

#include <stdbool.h>

#include "gm/error.h"
#include "gm/rng.h"
#include "gm/sha256.h"

typedef enum {
    GM_FAMILY_NADE,
    GM_FAMILY_VAE,
    GM_FAMILY_GAN,
    GM_FAMILY_AAE,
    GM_FAMILY_PIXELCNN,
    GM_FAMILY_TRANSLATOR,
    GM_FAMILY_PIXELRNN,
    GM_FAMILY_COUNT
} gm_family;

typedef enum {
    GM_OP_SAMPLE,
    GM_OP_LOGP,
    GM_OP_ENCODE,
    GM_OP_DECODE,
    GM_OP_DISCRIMINATE,
    GM_OP_RECONSTRUCT,
    GM_OP_COMPLETE,
    GM_OP_TRANSLATE,
    GM_OP_COUNT
} gm_op;

const char *gm_family_name(gm_family f);
const char *gm_op_name(gm_op op);

typedef struct {
    gm_family family;
    int height, width, channels, dim; /* dim = D = height * width * channels */
    int latent_dim;                   /* Z, the input of decode (VAE, GAN, AAE); 0 for NADE */
    int encode_dim;                   /* values per encode result; NADE: hidden units */
    int num_classes;                  /* > 0 for class-conditional models */
    int code_dim;                     /* GAN: continuous code values (InfoGAN), 0 = none */
    int cat_dim;                      /* GAN: categories of InfoGAN's categorical code, 0 = none */
    bool encode_q;                    /* GAN: encode is InfoGAN's Q network (see gm_model_encode) */
    bool mixture_prior;               /* AAE: the classes are its prior's components; sample takes a
                                         label, decode does not; gm_model_component_probs says which
                                         component a code falls in */
    const char *const *class_names;   /* num_classes names, or NULL */
    bool reverse;                     /* translator: has a reverse generator (B -> A) */
    const char *const *domains;       /* translator with a reverse generator: the names of A and B, else NULL */
    bool supports[GM_OP_COUNT];
    bool binary;                /* inputs are binarized at 0.5 (NADE; a VAE with gm.input "binary") */
    bool exact_logp;            /* logp is exact (NADE, PixelCNN, PixelRNN), else an importance-sampled estimate */
    char sha256[GM_SHA256_HEX]; /* the SHA-256 of the model file's bytes, lowercase hex */
} gm_model_info;

/* Per-row parameters of sample and logp. */
typedef struct {
    gm_rng rng;         /* the row's own random stream */
    float temperature;  /* > 0: scales z (VAE, GAN), divides logits (NADE) */
    int label;          /* conditional GAN, an AAE's mixture component: 0 <= label < num_classes;
                           else ignored */
    float truncation;   /* GAN: z_j ~ N(0, 1) given |z_j| <= truncation; 0 = off */
    const float *code;  /* GAN with codes: the row's code_dim values, or NULL to draw
                           each from Uniform(-1, 1) on the row's stream, after z */
    bool cat_given;     /* GAN with a categorical code: cat holds the row's category; else
                           it is drawn uniformly from a stream apart from the row's */
    int cat;            /* 0 <= cat < cat_dim when cat_given */
    bool sample_pixels; /* VAE: draw pixels from p(x|z) instead of returning its mean */
    int given;          /* complete: the row's first `given` pixels (raster order) are kept */
} gm_row;

/* A row's log-likelihood. For NADE logp is exact and elbo, se are NAN. For a
 * VAE logp is the K-sample importance-sampled estimate, elbo the one-sample
 * bound's expectation (reconstruction estimated with the same K samples minus
 * the analytic KL), se the estimate's standard error (NAN for K = 1). */
typedef struct {
    double logp, elbo, se;
} gm_logp_result;

typedef struct gm_model gm_model;

/* Threads one operation may use for its work outside OpenBLAS (NADE's
 * recurrence), process-wide; default 1. The daemon sets it to blas_threads. */
void gm_set_compute_threads(int n);
int gm_compute_threads(void);

/* Loading recomputes the probes the file carries (gm.probe.<net>.in.<input>
 * and gm.probe.<net>.out: inputs and the exporting PyTorch module's outputs)
 * on the networks as built, refusing a file whose outputs differ beyond 1e-4
 * of the probe output's scale, and ends with gm_model_selftest: a file is
 * accepted only when every operation it serves has run once and given finite
 * outputs. Files without probes load as before. */
gm_model *gm_model_load(const char *path, char err[GM_ERR_LEN]);
void gm_model_free(gm_model *m); /* accepts NULL */

const gm_model_info *gm_model_get_info(const gm_model *m);
/* What the load-time probes verified, e.g. "encoder, decoder verified (4
 * probe inputs each)"; "" for a file without probes. */
const char *gm_model_probes(const gm_model *m);
/* The file's metadata: value for key, or NULL; and enumeration. */
const char *gm_model_meta(const gm_model *m, const char *key);
int gm_model_meta_count(const gm_model *m);
const char *gm_model_meta_at(const gm_model *m, int i, const char **key);

/* All operations return 0, or -1 if the model lacks the operation or memory
 * ran out. Output arrays are caller-owned. */

/* pixels: (B, D). logp: (B) exact log p of each sample at temperature 1
 * (NADE only; pass NULL otherwise or when not wanted). */
int gm_model_sample(const gm_model *m, int B, gm_row *rows, float *pixels, double *logp);

/* pixels: (B, D); K >= 1 importance samples (VAE; ignored by NADE). */
int gm_model_logp(const gm_model *m, int B, const float *pixels, int K, gm_row *rows, gm_logp_result *out);

/* z: (B, encode_dim); logvar: (B, encode_dim) for a VAE, else NULL. An
 * InfoGAN's encode is its Q network: per image cat_dim logits of the
 * categorical code, then code_dim continuous codes. */
int gm_model_encode(const gm_model *m, int B, const float *pixels, float *z, float *logvar);

/* z: (B, latent_dim); labels: (B) for conditional models (not an AAE,
 * whose classes are its prior's: decode ignores them), else NULL;
 * codes: (B, code_dim) for a GAN with codes, else NULL (zeros, the mean of
 * the codes' prior); cats: (B) categories 0..cat_dim-1 for a GAN with a
 * categorical code, else NULL (its prior's mean, 1/cat_dim each). */
int gm_model_decode_codes(const gm_model *m, int B, const float *z, const int *labels, const float *codes,
                          const int *cats, float *pixels);
/* gm_model_decode_codes with codes and cats NULL. */
int gm_model_decode(const gm_model *m, int B, const float *z, const int *labels, float *pixels);

/* Completion by an autoregressive model whose order is raster order
 * (row, column, channel): row r keeps the first rows[r].given values of
 * its input image (binarized for binary models) and draws the rest from the
 * model's conditionals given them, with its stream and temperature as
 * sample does. A row draws the same random numbers as sample, one pixel at
 * a time, including those of the kept pixels (which it discards), so that
 * completing the first pixels of a sample with the sample's seed gives the
 * sample back. pixels: (B, D) in, out: (B, D); logp: (B) log p of the whole
 * completed image; logp_rest: (B) log p of the drawn pixels given the kept
 * ones (0 when all are kept); both at temperature 1. */
int gm_model_complete(const gm_model *m, int B, const float *pixels, gm_row *rows, float *out, double *logp,
                      double *logp_rest);

/* GAN with a discriminator: logits (B). */
int gm_model_discriminate(const gm_model *m, int B, const float *pixels, float *logits);

/* AAE: each image encoded and decoded again, pixels (B, D) in, out (B, D)
 * out (out may be pixels itself); deterministic (the encoder's code, or
 * its mean, is decoded). */
int gm_model_reconstruct(const gm_model *m, int B, const float *pixels, float *out);

/* AAE with a mixture prior (info.mixture_prior): which component each of
 * B codes z (B, latent_dim) falls in, the posterior over the prior's
 * K = num_classes components with their equal weights,
 * p(k | z) = N(z; means[k], diag(stds[k]^2)) / sum_j N(z; means[j], ...),
 * into probs (B, K), in double by log-sum-exp (a code far from every
 * mean still gets a distribution summing to 1); best: (B) the most likely
 * component of each row, or NULL. -1 for any other model. */
int gm_model_component_probs(const gm_model *m, int B, const float *z, double *probs, int *best);

/* Image-to-image translation (translator family): each image mapped to
 * the target domain by the generator (A -> B, or to class labels[r] for a
 * multi-domain model), or by the reverse generator (B -> A) when reverse is
 * true (models with info.reverse only). labels: (B) classes
 * 0..num_classes-1 for a multi-domain model, else NULL. pixels (B, D) in,
 * out (B, D) out (out may be pixels itself); deterministic. */
int gm_model_translate(const gm_model *m, int B, const float *pixels, const int *labels, bool reverse, float *out);

/* One forward pass of every supported operation, in gm_op order, on 2 rows
 * with a fixed seed (temperature 1, labels 0 and 1 modulo num_classes, K = 2
 * for a VAE's logp, which scores the sampled images, as do encode and
 * discriminate; complete keeps their first half; translate maps
 * fixed images in [0, 1] in every direction the model has). 0 when every output is finite (pixels in [0, 1]); else -1
 * with a message naming the operation and the value. Finite weights can
 * still overflow float range inside a network; this catches it at load. */
int gm_model_selftest(const gm_model *m, char err[GM_ERR_LEN]);

#endif
