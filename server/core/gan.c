/*
 * gan.c - generative adversarial network generators (docs/model-files.md).
 *
 * The generator maps z (followed by a one-hot label for class-conditional
 * models) to an image in tanh range [-1, 1] or sigmoid range [0, 1]; pixels
 * are mapped to [0, 1] at the end. An optional discriminator (image -> one
 * logit) and encoder (image -> z, trained to invert the generator) see images
 * in the generator's range. A GAN defines no likelihood: logp is not
 * supported, by design.
 *
 * A generator whose file lists its forward() arguments in metadata
 * "gm.generator_inputs" receives them by name: "z" [Z], "label" (the class
 * index, one value), "onehot" [C], "code" [gm.code_dim] and "cat" (a one-hot
 * categorical code [gm.cat_dim]). Without the
 * key, a conditional generator gets z and the one-hot label concatenated as
 * one [Z + C] vector, as files have always been written.
 *
 * The code holds InfoGAN's continuous codes. Decode takes them from the
 * caller (zeros, the prior's mean, when it passes none); sample uses a
 * row's given code, or draws each value from Uniform(-1, 1), the prior
 * InfoGAN trains with, on the row's stream after z, so that a seed still
 * gives the same z as for a model without codes.
 *
 * The categorical code is InfoGAN's discrete one. Sample uses a row's given
 * category or draws one uniformly from a stream seeded from a copy of the
 * row's stream, so z and the continuous code are what they are without it;
 * decode feeds the prior's mean, 1/cat_dim in every entry. The optional Q
 * network (gm.q_network: image -> cat_dim logits, then code_dim values)
 * predicts the codes of an image.
 *
 * Truncation draws each z_j from the normal conditioned on |z_j| <= t (the
 * truncation trick), by inverse CDF in O(1) for every t, then temperature
 * scales z; both use only the row's own stream and leave the code alone.
 */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "family.h"

typedef enum { IN_Z, IN_LABEL, IN_ONEHOT, IN_CODE, IN_CAT, IN_KINDS } gen_input;

static const char *const INPUT_NAMES[IN_KINDS] = {"z", "label", "onehot", "code", "cat"};

typedef struct {
    gm_net *gen, *disc, *enc, *q;
    bool tanh_range;
    bool gen_chw;
    int n_inputs; /* 0: one [Z + C] vector, z then the one-hot label */
    gen_input inputs[GM_NET_MAX_INPUTS];
    int code_dim, cat_dim;
} gan;

static void gan_free(void *p) {
    gan *m = p;
    if (!m) return;
    gm_net_free(m->gen);
    gm_net_free(m->disc);
    gm_net_free(m->enc);
    gm_net_free(m->q);
    free(m);
}

/* gm.code_dim or gm.cat_dim: the size of a code input, 1..2^22. */
static int parse_code_dim(const gm_st *st, const char *key, const char *input, int *out, char err[GM_ERR_LEN]) {
    const char *v = gm_st_meta(st, key);
    char *end;
    errno = 0;
    long n = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || n < 1 || n > GM_NET_MAX_VALUES)
        return gm_errorf(err,
                         "%s: the generator takes \"%s\", so metadata \"%s\" must be an integer in 1..%d "
                         "(found %s%s%s)",
                         gm_st_label(st), input, key, GM_NET_MAX_VALUES, v ? "\"" : "", v ? v : "none", v ? "\"" : "");
    *out = (int)n;
    return 0;
}

static int build_generator(const gm_st *st, const gm_model_info *info, gan *m, char err[GM_ERR_LEN]) {
    char names[GM_NET_MAX_INPUTS][GM_NET_NAME_LEN];
    int n = gm_net_input_names(st, "gm.generator", names, err), Z = info->latent_dim, C = info->num_classes;
    if (n < 0) return -1;
    if (n == 0) return (m->gen = gm_family_net(st, "gm.generator", gm_shape1(Z + C), info->dim, err)) ? 0 : -1;
    gm_net_input in[GM_NET_MAX_INPUTS];
    for (int i = 0; i < n; i++) {
        int k = 0;
        while (k < IN_KINDS && strcmp(names[i], INPUT_NAMES[k]) != 0) k++;
        if (k == IN_KINDS)
            return gm_errorf(err,
                             "%s: metadata \"gm.generator_inputs\" names input '%s'; a generator takes z, label, "
                             "onehot, code and cat",
                             gm_st_label(st), names[i]);
        if ((k == IN_LABEL || k == IN_ONEHOT) && C == 0)
            return gm_errorf(err, "%s: the generator takes '%s' but the model has no classes (gm.num_classes)",
                             gm_st_label(st), names[i]);
        if (k == IN_CODE && parse_code_dim(st, "gm.code_dim", "code", &m->code_dim, err)) return -1;
        if (k == IN_CAT && parse_code_dim(st, "gm.cat_dim", "cat", &m->cat_dim, err)) return -1;
        m->inputs[i] = (gen_input)k;
        in[i].name = INPUT_NAMES[k];
        in[i].shape = k == IN_Z        ? gm_shape1(Z)
                      : k == IN_LABEL  ? gm_shape0()
                      : k == IN_ONEHOT ? gm_shape1(C)
                      : k == IN_CODE   ? gm_shape1(m->code_dim)
                                       : gm_shape1(m->cat_dim);
    }
    m->n_inputs = n;
    const char *json = gm_st_meta(st, "gm.generator");
    if (!json) return gm_errorf(err, "%s: metadata \"gm.generator\" (a layer list) is required", gm_st_label(st));
    if (!(m->gen = gm_net_build_inputs(st, "gm.generator", json, n, in, err))) return -1;
    if (gm_shape_size(gm_net_out_shape(m->gen)) != info->dim)
        return gm_errorf(err, "%s: gm.generator ends with %d values per sample but %d are needed", gm_st_label(st),
                         gm_shape_size(gm_net_out_shape(m->gen)), info->dim);
    return 0;
}

static void *gan_load(const gm_st *st, gm_model_info *info, char err[GM_ERR_LEN]) {
    const char *out = gm_st_meta(st, "gm.output");
    if (out && strcmp(out, "tanh") != 0 && strcmp(out, "sigmoid") != 0) {
        gm_errorf(err, "%s: metadata \"gm.output\" must be tanh or sigmoid (found \"%s\")", gm_st_label(st), out);
        return NULL;
    }
    gan *m = calloc(1, sizeof *m);
    if (!m) {
        gm_errorf(err, "out of memory");
        return NULL;
    }
    m->tanh_range = !out || strcmp(out, "tanh") == 0;
    int Z = info->latent_dim;
    if (build_generator(st, info, m, err)) goto fail;
    if (gm_st_meta(st, "gm.discriminator") &&
        !(m->disc = gm_family_net(st, "gm.discriminator", gm_image_shape(info), 1, err)))
        goto fail;
    if (gm_st_meta(st, "gm.encoder") && !(m->enc = gm_family_net(st, "gm.encoder", gm_image_shape(info), Z, err)))
        goto fail;
    if (gm_st_meta(st, "gm.q_network")) {
        if (!m->cat_dim && !m->code_dim) {
            gm_errorf(err,
                      "%s: metadata \"gm.q_network\" predicts InfoGAN's codes, but the generator takes no "
                      "\"cat\" or \"code\" input",
                      gm_st_label(st));
            goto fail;
        }
        if (m->enc) {
            gm_errorf(err, "%s: metadata \"gm.encoder\" and \"gm.q_network\" both define encode; keep one",
                      gm_st_label(st));
            goto fail;
        }
        if (!(m->q = gm_family_net(st, "gm.q_network", gm_image_shape(info), m->cat_dim + m->code_dim, err))) goto fail;
    }
    m->gen_chw = gm_net_out_shape(m->gen).rank == 3 && info->channels > 1;
    info->encode_dim = m->enc ? Z : m->q ? m->cat_dim + m->code_dim : 0;
    info->code_dim = m->code_dim;
    info->cat_dim = m->cat_dim;
    info->encode_q = m->q != NULL;
    info->supports[GM_OP_SAMPLE] = info->supports[GM_OP_DECODE] = true;
    info->supports[GM_OP_ENCODE] = m->enc || m->q;
    info->supports[GM_OP_DISCRIMINATE] = m->disc != NULL;
    return m;
fail:
    gan_free(m);
    return NULL;
}

/* The generator's inputs for B rows: z, the label as the file's generator
 * takes it, the codes (NULL: zeros) and the categories (NULL: 1/cat_dim each). */
static int run_generator(const gan *m, const gm_model_info *info, int B, const float *z, const int *labels,
                         const float *codes, const int *cats, float *y) {
    int Z = info->latent_dim, C = info->num_classes;
    for (int r = 0; r < B && C > 0; r++)
        assert(labels[r] >= 0 && labels[r] < C && "the caller validates labels (model.h)");
    if (m->n_inputs == 0 && C == 0) return gm_net_forward(m->gen, B, z, y);
    const float *in[GM_NET_MAX_INPUTS];
    float *owned[GM_NET_MAX_INPUTS] = {0};
    int rc = -1;
    for (int i = 0; i < (m->n_inputs ? m->n_inputs : 1); i++) {
        gen_input k = m->n_inputs ? m->inputs[i] : IN_ONEHOT;
        /* without gm.generator_inputs: z and the one-hot label as one vector */
        int width = k == IN_Z       ? 0
                    : k == IN_LABEL ? 1
                    : k == IN_CODE  ? m->code_dim
                    : k == IN_CAT   ? m->cat_dim
                                    : (m->n_inputs ? C : Z + C);
        if (k == IN_Z || (k == IN_CODE && codes)) {
            in[i] = k == IN_Z ? z : codes;
            continue;
        }
        float *v = owned[i] = calloc((size_t)B * width, sizeof *v);
        if (!v) goto done;
        for (int r = 0; r < B; r++) {
            float *row = v + (size_t)r * width;
            if (k == IN_LABEL) row[0] = (float)labels[r];
            if (k == IN_ONEHOT && !m->n_inputs) memcpy(row, z + (size_t)r * Z, (size_t)Z * sizeof *row);
            if (k == IN_ONEHOT) row[width - C + labels[r]] = 1.0f;
            for (int j = 0; k == IN_CAT && j < width; j++)
                row[j] = cats ? (j == cats[r] ? 1.0f : 0.0f) : 1.0f / (float)width;
        }
        in[i] = v;
    }
    rc = gm_net_forward_inputs(m->gen, B, in, y);
done:
    for (int i = 0; i < GM_NET_MAX_INPUTS; i++) free(owned[i]);
    return rc;
}

/* The generator's images in [0, 1], HWC. */
static int generate(const gan *m, const gm_model_info *info, int B, const float *z, const int *labels,
                    const float *codes, const int *cats, float *pixels) {
    int D = info->dim;
    float *chw = NULL;
    int rc = -1;
    float *y = pixels;
    if (m->gen_chw && !(y = chw = malloc((size_t)B * D * sizeof *chw))) goto done;
    if (run_generator(m, info, B, z, labels, codes, cats, y)) goto done;
    if (m->gen_chw) gm_chw_to_hwc(info, B, chw, pixels);
    for (size_t i = 0; i < (size_t)B * D; i++) {
        float v = m->tanh_range ? 0.5f * (pixels[i] + 1.0f) : pixels[i];
        pixels[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
    rc = 0;
done:
    free(chw);
    return rc;
}

static int gan_decode(const void *p, const gm_model_info *info, int B, const float *z, const int *labels,
                      const float *codes, const int *cats, float *pixels) {
    return generate(p, info, B, z, labels, codes, cats, pixels);
}

/* A row's category: given, or uniform on a stream seeded from a copy of the
 * row's stream, which leaves the row's own draws as they were. */
static int row_cat(gm_row *row, int K) {
    assert((!row->cat_given || (row->cat >= 0 && row->cat < K)) && "the caller validates cat (model.h)");
    if (row->cat_given) return row->cat;
    gm_rng copy = row->rng, apart;
    gm_rng_seed(&apart, gm_rng_next(&copy), UINT64_C(0x696e666f63617400)); /* "infocat" */
    int c = (int)(gm_rng_uniform(&apart) * K);
    return c < K ? c : K - 1;
}

static int gan_sample(const void *p, const gm_model_info *info, int B, gm_row *rows, float *pixels, double *logp) {
    int Z = info->latent_dim, K = info->code_dim;
    float *z = malloc((size_t)B * Z * sizeof *z), *codes = K ? malloc((size_t)B * K * sizeof *codes) : NULL;
    int *labels = malloc((size_t)B * sizeof *labels), *cats = malloc((size_t)B * sizeof *cats);
    int rc = -1;
    if (!z || !labels || !cats || (K && !codes)) goto done;
    for (int r = 0; r < B; r++) {
        if (info->cat_dim) cats[r] = row_cat(&rows[r], info->cat_dim);
        double t = rows[r].truncation;
        for (int j = 0; j < Z; j++) {
            double v = t > 0 ? gm_rng_truncated_normal(&rows[r].rng, t) : gm_rng_normal(&rows[r].rng);
            z[(size_t)r * Z + j] = (float)(rows[r].temperature * v);
        }
        for (int j = 0; j < K; j++)
            codes[(size_t)r * K + j] =
                rows[r].code ? rows[r].code[j] : (float)(2.0 * gm_rng_uniform(&rows[r].rng) - 1.0);
        labels[r] = rows[r].label;
    }
    rc = generate(p, info, B, z, labels, codes, info->cat_dim ? cats : NULL, pixels);
done:
    free(z);
    free(codes);
    free(labels);
    free(cats);
    return rc;
}

/* Runs an image-input net (discriminator or encoder) on pixels in [0, 1]. */
static int image_net(const gan *m, const gm_net *net, const gm_model_info *info, int B, const float *x, float *out) {
    size_t n = (size_t)B * info->dim;
    float *in = malloc(n * sizeof *in), *chw = NULL;
    int rc = -1;
    if (!in) return -1;
    for (size_t i = 0; i < n; i++) in[i] = m->tanh_range ? 2.0f * x[i] - 1.0f : x[i];
    if (info->channels > 1) {
        if (!(chw = malloc(n * sizeof *chw))) goto done;
        gm_hwc_to_chw(info, B, in, chw);
    }
    rc = gm_net_forward(net, B, chw ? chw : in, out);
done:
    free(in);
    free(chw);
    return rc;
}

static int gan_encode(const void *p, const gm_model_info *info, int B, const float *x, float *z, float *logvar) {
    const gan *m = p;
    return image_net(m, m->enc ? m->enc : m->q, info, B, x, z);
}

static int gan_discriminate(const void *p, const gm_model_info *info, int B, const float *x, float *logits) {
    const gan *m = p;
    return image_net(m, m->disc, info, B, x, logits);
}

static const gm_net *gan_net(const void *p, const char *name) {
    const gan *m = p;
    return !strcmp(name, "generator")       ? m->gen
           : !strcmp(name, "discriminator") ? m->disc
           : !strcmp(name, "encoder")       ? m->enc
           : !strcmp(name, "q_network")     ? m->q
                                            : NULL;
}

const gm_family_impl gm_gan_family = {
    .load = gan_load,
    .net = gan_net,
    .free = gan_free,
    .sample = gan_sample,
    .encode = gan_encode,
    .decode = gan_decode,
    .discriminate = gan_discriminate,
};
