/*
 * fuzz_model.c - libFuzzer harness for model loading (gm_model_load) and a
 * forward pass of every operation the loaded model supports.
 *
 * Input: the bytes of one model file (safetensors with the gm.* metadata),
 * handed to gm_model_load through an in-memory file. The row count of the
 * forward passes is 1 or 2, from the input length's parity. A model that
 * loads runs sample, logp (K = 2), encode, decode, discriminate, complete
 * and translate (each direction) as its info says it supports them, on fixed inputs: pixels in [0, 1], latents in
 * [-2, 2], labels 0 .. num_classes-1. Images that come out must be in
 * [0, 1], as model.h promises (the PNG encoder relies on it).
 */
#include <math.h>

#include "fuzz_util.h"
#include "gm/model.h"

static void check_pixels(const float *p, size_t n, const char *op) {
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(p[i] >= 0.0f && p[i] <= 1.0f, "%s: pixel %zu = %g is outside [0, 1]", op, i, p[i]);
}

static void forward(const gm_model *m, int B) {
    const gm_model_info *in = gm_model_get_info(m);
    size_t D = (size_t)in->dim, Z = (size_t)in->latent_dim, E = (size_t)in->encode_dim;
    float *pixels = malloc((size_t)B * D * sizeof *pixels), *out = malloc((size_t)B * D * sizeof *out);
    float *z = calloc((size_t)B * (Z + E + 1), sizeof *z), *logvar = calloc((size_t)B * (E + 1), sizeof *logvar);
    int *labels = calloc((size_t)B, sizeof *labels);
    gm_row *rows = calloc((size_t)B, sizeof *rows);
    double logp[2];
    gm_logp_result lp[2];
    float logits[2];
    FUZZ_CHECK(pixels && out && z && logvar && labels && rows, "out of memory for %d rows of %zu", B, D);
    for (size_t i = 0; i < (size_t)B * D; i++) pixels[i] = (float)((i * 37) % 101) / 100.0f;
    for (int b = 0; b < B; b++) {
        gm_rng_seed(&rows[b].rng, 42, (uint64_t)b);
        rows[b].temperature = 1.0f;
        rows[b].label = in->num_classes ? b % in->num_classes : 0;
        rows[b].truncation = b ? 2.0f : 0.0f;
        rows[b].sample_pixels = b == 1;
        labels[b] = rows[b].label;
    }
    if (in->supports[GM_OP_SAMPLE] && gm_model_sample(m, B, rows, out, in->family == GM_FAMILY_NADE ? logp : NULL) == 0)
        check_pixels(out, (size_t)B * D, "sample");
    if (in->supports[GM_OP_LOGP]) (void)gm_model_logp(m, B, pixels, 2, rows, lp);
    if (in->supports[GM_OP_ENCODE]) (void)gm_model_encode(m, B, pixels, z, in->family == GM_FAMILY_VAE ? logvar : NULL);
    if (in->supports[GM_OP_DECODE]) {
        for (size_t i = 0; i < (size_t)B * Z; i++) z[i] = (float)((int)(i % 9) - 4) * 0.5f;
        if (gm_model_decode(m, B, z, in->num_classes ? labels : NULL, out) == 0)
            check_pixels(out, (size_t)B * D, "decode");
    }
    if (in->supports[GM_OP_DISCRIMINATE]) (void)gm_model_discriminate(m, B, pixels, logits);
    if (in->supports[GM_OP_COMPLETE]) {
        double rest[2];
        for (int b = 0; b < B; b++) rows[b].given = b ? (int)D : (int)D / 3;
        if (gm_model_complete(m, B, pixels, rows, out, logp, rest) == 0) check_pixels(out, (size_t)B * D, "complete");
    }
    for (int rev = 0; in->supports[GM_OP_TRANSLATE] && rev <= (int)in->reverse; rev++)
        if (gm_model_translate(m, B, pixels, in->num_classes ? labels : NULL, rev, out) == 0)
            check_pixels(out, (size_t)B * D, rev ? "translate reverse" : "translate");
    free(pixels);
    free(out);
    free(z);
    free(logvar);
    free(labels);
    free(rows);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64], err[GM_ERR_LEN];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    FUZZ_CHECK(fd >= 0, "memfd_create failed");
    gm_model *m = gm_model_load(path, err);
    close(fd);
    if (!m) {
        fuzz_check_err(err, sizeof err);
        return 0;
    }
    const gm_model_info *in = gm_model_get_info(m);
    FUZZ_CHECK(in->dim == in->height * in->width * in->channels && in->dim > 0, "dim %d for %dx%dx%d", in->dim,
               in->height, in->width, in->channels);
    FUZZ_CHECK(in->num_classes >= 0 && in->latent_dim >= 0 && in->encode_dim >= 0, "negative size in info");
    for (int k = 0; in->class_names && k < in->num_classes; k++)
        FUZZ_CHECK(in->class_names[k] != NULL, "class %d has no name", k);
    forward(m, 1 + (int)(size % 2));
    gm_model_free(m);
    return 0;
}
