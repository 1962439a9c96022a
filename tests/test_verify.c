/*
 * test_verify.c - self-verifying model files, the VAE's inputs and
 * likelihoods, and the refusals that say what a file is.
 *
 * Every file is written here (a safetensors header built with jansson), in
 * the hostile-file style of test_model_files.c. Probe outputs and log
 * densities are computed in the test, in double or long double, from the
 * definitions (docs/likelihoods.md), independently of the server's code.
 */
#include <float.h>
#include <sys/wait.h>

#include "gm/model.h"
#include "gm/safetensors.h"
#include "testutil.h"

#include <jansson.h>

/* ---- building files ---- */

typedef struct {
    const char *meta[64]; /* key, value pairs */
    int nmeta;
    st_tensor t[24];
    int nt;
} file;

static void meta_set(file *f, const char *key, const char *value) {
    for (int i = 0; i < f->nmeta; i += 2)
        if (!strcmp(f->meta[i], key)) {
            if (value) {
                f->meta[i + 1] = value;
            } else { /* remove */
                memmove(&f->meta[i], &f->meta[i + 2], (size_t)(f->nmeta - i - 2) * sizeof f->meta[0]);
                f->nmeta -= 2;
            }
            return;
        }
    if (!value) return;
    assert_true(f->nmeta + 2 <= 64);
    f->meta[f->nmeta++] = key;
    f->meta[f->nmeta++] = value;
}

static st_tensor *tensor(file *f, const char *name) {
    for (int i = 0; i < f->nt; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

/* Adds (or replaces) tensor `name` of shape dims[0..ndim). */
static st_tensor *tensor_set(file *f, const char *name, const float *values, int ndim, const int64_t *dims) {
    st_tensor *t = tensor(f, name);
    if (!t) {
        assert_true(f->nt < 24);
        t = &f->t[f->nt++];
    }
    *t = (st_tensor){.name = name, .ndim = ndim, .values = values};
    memcpy(t->shape, dims, (size_t)ndim * sizeof *dims);
    return t;
}
#define TSET(f, name, values, ...)                                                                                     \
    tensor_set(f, name, values, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})

static void tensor_remove(file *f, const char *name) {
    st_tensor *t = tensor(f, name);
    if (!t) return;
    *t = f->t[--f->nt];
}

/* Writes f to a temporary file (the caller unlinks it); static path. */
static const char *write_file(const file *f) {
    static char path[TEMP_PATH_LEN];
    return st_write_model(path, "verify", f->meta, f->nmeta, f->t, f->nt);
}

static gm_model *load(const file *f) {
    const char *path = write_file(f);
    char err[GM_ERR_LEN] = "";
    gm_model *m = gm_model_load(path, err);
    unlink(path);
    if (!m) {
        print_error("expected the file to load; got: %s\n", err);
        fail();
    }
    return m;
}

/* The file must be refused with a message holding each fragment (NULL ends). */
static void expect_refused(const file *f, const char *f1, const char *f2, const char *f3) {
    const char *path = write_file(f);
    char err[GM_ERR_LEN] = "";
    gm_model *m = gm_model_load(path, err);
    unlink(path);
    const char *must[3] = {f1, f2, f3};
    bool ok = !m;
    for (int i = 0; i < 3 && must[i]; i++) ok = ok && strstr(err, must[i]);
    if (!ok) {
        print_error("expected a refusal naming \"%s\", \"%s\", \"%s\"; got %s: \"%s\"\n", f1, f2 ? f2 : "",
                    f3 ? f3 : "", m ? "success" : "error", err);
        gm_model_free(m);
        fail();
    }
}

/* out (P, O) = in (P, I) W^T + b, in double */
static void linear_ref(const float *W, const float *b, const float *in, int P, int I, int O, float *out) {
    for (int p = 0; p < P; p++)
        for (int o = 0; o < O; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < I; i++) s += (double)W[o * I + i] * in[p * I + i];
            out[p * O + o] = (float)s;
        }
}

static void fill(float *v, int n, int mul, int mod, double step, double shift) {
    for (int i = 0; i < n; i++) v[i] = (float)(step * ((i * mul) % mod) + shift);
}

/* ---- self-verifying files ---- */

enum { PD = 6, PZ = 2, PP = 3 }; /* image 2x3x1, latent 2, 3 probe inputs */

typedef struct {
    float enc_w[2 * PZ * PD], enc_b[2 * PZ], dec_w[PD * PZ], dec_b[PD];
    float img[PP * PD], enc_out[PP * 2 * PZ], z[PP * PZ], dec_out[PP * PD];
} vae_probes;

/* A linear VAE whose file carries probes of both networks, computed here. */
static void vae_probe_file(file *f, vae_probes *d) {
    memset(f, 0, sizeof *f);
    fill(d->enc_w, 2 * PZ * PD, 7, 11, 0.1, -0.5);
    fill(d->enc_b, 2 * PZ, 3, 5, 0.2, -0.4);
    fill(d->dec_w, PD * PZ, 5, 9, 0.3, -1.2);
    fill(d->dec_b, PD, 2, 7, 0.5, -1.5);
    fill(d->img, PP * PD, 5, 9, 0.125, 0.0);
    fill(d->z, PP * PZ, 1, 5, 0.5, -1.0);
    linear_ref(d->enc_w, d->enc_b, d->img, PP, PD, 2 * PZ, d->enc_out);
    linear_ref(d->dec_w, d->dec_b, d->z, PP, PZ, PD, d->dec_out);
    meta_set(f, "gm.format", "1");
    meta_set(f, "gm.family", "vae");
    meta_set(f, "gm.image", "2x3x1");
    meta_set(f, "gm.latent_dim", "2");
    meta_set(f, "gm.encoder", "[{\"op\":\"linear\",\"weight\":\"enc.w\",\"bias\":\"enc.b\"}]");
    meta_set(f, "gm.decoder", "[{\"op\":\"linear\",\"weight\":\"dec.w\",\"bias\":\"dec.b\"}]");
    TSET(f, "enc.w", d->enc_w, 2 * PZ, PD);
    TSET(f, "enc.b", d->enc_b, 2 * PZ);
    TSET(f, "dec.w", d->dec_w, PD, PZ);
    TSET(f, "dec.b", d->dec_b, PD);
    TSET(f, "gm.probe.encoder.in.image", d->img, PP, 1, 2, 3);
    TSET(f, "gm.probe.encoder.out", d->enc_out, PP, 2 * PZ);
    TSET(f, "gm.probe.decoder.in.z", d->z, PP, PZ);
    TSET(f, "gm.probe.decoder.out", d->dec_out, PP, PD);
}

/* Probes of both networks are recomputed at load and reported; a file
 * without probes loads as before. */
static void test_probes_verified(void **state) {
    file f;
    vae_probes d;
    vae_probe_file(&f, &d);
    gm_model *m = load(&f);
    assert_string_equal(gm_model_probes(m), "encoder, decoder verified (3 probe inputs each)");
    gm_model_free(m);
    tensor_remove(&f, "gm.probe.encoder.in.image");
    tensor_remove(&f, "gm.probe.encoder.out");
    m = load(&f);
    assert_string_equal(gm_model_probes(m), "decoder verified (3 probe inputs)");
    gm_model_free(m);
    tensor_remove(&f, "gm.probe.decoder.in.z");
    tensor_remove(&f, "gm.probe.decoder.out");
    m = load(&f);
    assert_string_equal(gm_model_probes(m), "");
    gm_model_free(m);
}

/* One output off by 2e-4 of the output's scale (the tolerance is 1e-4) is
 * refused, naming the network, the output index and both values. */
static void test_probe_mismatch(void **state) {
    file f;
    vae_probes d;
    vae_probe_file(&f, &d);
    double scale = 1.0;
    for (int i = 0; i < PP * PD; i++) scale = fmax(scale, fabs(d.dec_out[i]));
    float right = d.dec_out[PD + 4];
    d.dec_out[PD + 4] = (float)(right + 2e-4 * scale);
    char want[64];
    snprintf(want, sizeof want, "but %.9g in", (double)d.dec_out[PD + 4]);
    expect_refused(&f, "probe of network \"decoder\" does not match: output 10 (probe 1, value 4)", want, NULL);
    /* and the value computed here, to float precision */
    const char *path = write_file(&f);
    char err[GM_ERR_LEN] = "";
    assert_null(gm_model_load(path, err));
    unlink(path);
    const char *is = strstr(err, "value 4) is ");
    assert_non_null(is);
    assert_true(fabs(strtod(is + strlen("value 4) is "), NULL) - right) <= 1e-6 * scale);
    /* within the tolerance it loads */
    d.dec_out[PD + 4] = (float)(right + 0.5e-4 * scale);
    gm_model_free(load(&f));
}

/* Hostile probe tensors: each is refused, naming the tensor and the rule. */
static void test_probe_hostile(void **state) {
    file f;
    vae_probes d;
    float nan_img[PP * PD], many[17 * PD] = {0};
    vae_probe_file(&f, &d);
    TSET(&f, "gm.probe.encoder.in.image", d.img, PP, PD); /* flat, not [3, 1, 2, 3] */
    expect_refused(&f, "'gm.probe.encoder.in.image'", "must have shape [3, 1, 2, 3]", NULL);

    vae_probe_file(&f, &d);
    TSET(&f, "gm.probe.decoder.out", d.dec_out, PP, PD - 1);
    expect_refused(&f, "'gm.probe.decoder.out'", "must have shape [3, 6]", NULL);

    vae_probe_file(&f, &d);
    TSET(&f, "gm.probe.decoder.in.z", d.z, PP - 1, PZ); /* 2 inputs for 3 outputs */
    expect_refused(&f, "'gm.probe.decoder.in.z'", "must have shape [3, 2]", NULL);

    vae_probe_file(&f, &d);
    tensor_remove(&f, "gm.probe.decoder.out");
    expect_refused(&f, "network \"decoder\" has probe inputs but no tensor 'gm.probe.decoder.out'", NULL, NULL);

    vae_probe_file(&f, &d);
    tensor_remove(&f, "gm.probe.decoder.in.z");
    expect_refused(&f, "tensor 'gm.probe.decoder.in.z' (input \"z\") is missing", NULL, NULL);

    vae_probe_file(&f, &d);
    TSET(&f, "gm.probe.mixer.out", d.z, PP, PZ);
    expect_refused(&f, "'gm.probe.mixer.out'", "a probe must be named", NULL);

    vae_probe_file(&f, &d);
    TSET(&f, "gm.probe.decoder.output", d.z, PP, PZ);
    expect_refused(&f, "'gm.probe.decoder.output'", "a probe must be named", NULL);

    vae_probe_file(&f, &d);
    TSET(&f, "gm.probe.generator.out", d.z, PP, PZ);
    expect_refused(&f, "'gm.probe.generator.out'", "network \"generator\", which this vae file does not have", NULL);

    vae_probe_file(&f, &d);
    tensor(&f, "gm.probe.decoder.in.z")->f64 = true;
    expect_refused(&f, "'gm.probe.decoder.in.z'", "must be F32 (found F64)", NULL);

    vae_probe_file(&f, &d);
    memcpy(nan_img, d.img, sizeof nan_img);
    nan_img[7] = NAN;
    TSET(&f, "gm.probe.encoder.in.image", nan_img, PP, 1, 2, 3);
    expect_refused(&f, "'gm.probe.encoder.in.image'", "holds nan at index 7", NULL);

    vae_probe_file(&f, &d);
    TSET(&f, "gm.probe.decoder.in.z", many, 17, PZ);
    TSET(&f, "gm.probe.decoder.out", many, 17, PD);
    expect_refused(&f, "'gm.probe.decoder.out'", "1..16 probes", NULL);

    vae_probe_file(&f, &d);
    /* the probes follow the network's own input names */
    meta_set(&f, "gm.decoder_inputs", "[\"w\"]");
    expect_refused(&f, "tensor 'gm.probe.decoder.in.w' (input \"w\") is missing", NULL, NULL);

    meta_set(&f, "gm.decoder_inputs", "[\"z\",\"z\"]");
    expect_refused(&f, "\"gm.decoder_inputs\"", "distinct", NULL);

    meta_set(&f, "gm.decoder_inputs", "{\"z\":1}");
    expect_refused(&f, "\"gm.decoder_inputs\"", "JSON array", NULL);

    vae_probe_file(&f, &d);
    TSET(&f, "gm.probe.decoder.in.code", d.z, PP, 1);
    expect_refused(&f, "'gm.probe.decoder.in.code' is a probe input that network \"decoder\" does not take",
                   "(its inputs: z)", NULL);
}

/* A class-conditional GAN's generator without gm.generator_inputs takes one
 * input, z and the one-hot label side by side; with named inputs it takes
 * each by name (here a label through an identity embedding, the same
 * function). Its probe output is the network's own, before the server maps
 * tanh range to pixels. Label values must be class indices. */
static void test_probe_conditional_gan(void **state) {
    enum { Z = 2, C = 3, D = 4, P = 2 };
    float w[D * (Z + C)], b[D], z[P * Z] = {0.5f, -1.0f, 2.0f, 0.25f}, onehot[P * C] = {0, 0, 1, 1, 0, 0};
    float in[P * (Z + C)], out[P * D], label[P] = {2, 0}, eye[C * C] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    fill(w, D * (Z + C), 3, 7, 0.4, -1.1);
    fill(b, D, 1, 4, 0.3, -0.2);
    for (int p = 0; p < P; p++) {
        memcpy(in + p * (Z + C), z + p * Z, Z * sizeof *in);
        memcpy(in + p * (Z + C) + Z, onehot + p * C, C * sizeof *in);
    }
    linear_ref(w, b, in, P, Z + C, D, out);
    file f = {0};
    meta_set(&f, "gm.format", "1");
    meta_set(&f, "gm.family", "gan");
    meta_set(&f, "gm.image", "2x2x1");
    meta_set(&f, "gm.latent_dim", "2");
    meta_set(&f, "gm.num_classes", "3");
    meta_set(&f, "gm.generator", "[{\"op\":\"linear\",\"weight\":\"g.w\",\"bias\":\"g.b\"},{\"op\":\"tanh\"}]");
    TSET(&f, "g.w", w, D, Z + C);
    TSET(&f, "g.b", b, D);
    TSET(&f, "gm.probe.generator.in.z", in, P, Z + C);
    float tanh_out[P * D];
    for (int i = 0; i < P * D; i++) tanh_out[i] = (float)tanh((double)out[i]);
    TSET(&f, "gm.probe.generator.out", tanh_out, P, D);
    gm_model *m = load(&f);
    assert_string_equal(gm_model_probes(m), "generator verified (2 probe inputs)");
    gm_model_free(m);
    /* a probe output that already went through the pixel mapping is wrong */
    for (int i = 0; i < P * D; i++) tanh_out[i] = 0.5f * (tanh_out[i] + 1.0f);
    expect_refused(&f, "probe of network \"generator\" does not match: output ", NULL, NULL);
    for (int i = 0; i < P * D; i++) tanh_out[i] = (float)tanh((double)out[i]);
    /* named inputs: z and the label, each its own probe tensor */
    meta_set(&f, "gm.generator_inputs", "[\"z\",\"label\"]");
    meta_set(&f, "gm.generator",
             "[{\"op\":\"embedding\",\"weight\":\"g.e\",\"inputs\":[\"label\"],\"name\":\"e\"},"
             "{\"op\":\"concat\",\"inputs\":[\"z\",\"e\"],\"dim\":0},"
             "{\"op\":\"linear\",\"weight\":\"g.w\",\"bias\":\"g.b\"},{\"op\":\"tanh\"}]");
    TSET(&f, "g.e", eye, C, C);
    TSET(&f, "gm.probe.generator.in.z", z, P, Z);
    TSET(&f, "gm.probe.generator.in.label", label, P);
    m = load(&f);
    assert_string_equal(gm_model_probes(m), "generator verified (2 probe inputs)");
    gm_model_free(m);
    /* a label input must hold class indices */
    label[1] = 3;
    TSET(&f, "gm.probe.generator.in.label", label, P);
    expect_refused(&f, "'gm.probe.generator.in.label' value 1 is 3, not a class index in 0..2", NULL, NULL);
    /* a probe input the network does not take */
    TSET(&f, "gm.probe.generator.in.onehot", onehot, P, C);
    label[1] = 0;
    TSET(&f, "gm.probe.generator.in.label", label, P);
    expect_refused(&f, "'gm.probe.generator.in.onehot' is a probe input that network \"generator\" does not take",
                   "(its inputs: z, label)", NULL);
}

/* ---- inputs and likelihoods ---- */

/* gm.input "gray": pixels reach the encoder unchanged (they were binarized
 * at 0.5 before); the default still binarizes. */
static void test_gray_input(void **state) {
    enum { D = 8, Z = 2 };
    float ew[2 * Z * D], eb[2 * Z] = {0.1f, -0.2f, 0.3f, 0.0f}, dw[D * Z] = {0}, x[D], bin[D], want[2 * Z];
    fill(ew, 2 * Z * D, 5, 11, 0.2, -1.0);
    fill(x, D, 3, 8, 0.13, 0.02);
    file f = {0};
    meta_set(&f, "gm.format", "1");
    meta_set(&f, "gm.family", "vae");
    meta_set(&f, "gm.image", "2x4x1");
    meta_set(&f, "gm.latent_dim", "2");
    meta_set(&f, "gm.encoder", "[{\"op\":\"linear\",\"weight\":\"e.w\",\"bias\":\"e.b\"}]");
    meta_set(&f, "gm.decoder", "[{\"op\":\"linear\",\"weight\":\"d.w\"}]");
    meta_set(&f, "gm.input", "gray");
    TSET(&f, "e.w", ew, 2 * Z, D);
    TSET(&f, "e.b", eb, 2 * Z);
    TSET(&f, "d.w", dw, D, Z);
    float z[Z], lv[Z];
    for (int pass = 0; pass < 2; pass++) {
        if (pass) meta_set(&f, "gm.input", NULL);
        for (int i = 0; i < D; i++) bin[i] = x[i] >= 0.5f ? 1.0f : 0.0f;
        linear_ref(ew, eb, pass ? bin : x, 1, D, 2 * Z, want);
        gm_model *m = load(&f);
        assert_int_equal(gm_model_get_info(m)->binary, pass == 1);
        assert_int_equal(gm_model_encode(m, 1, x, z, lv), 0);
        assert_close_f(pass ? "binary encode mean" : "gray encode mean", z, want, Z, 1e-6);
        assert_close_f(pass ? "binary encode logvar" : "gray encode logvar", lv, want + Z, Z, 1e-6);
        gm_model_free(m);
    }
    meta_set(&f, "gm.input", "grey");
    expect_refused(&f, "\"gm.input\" = \"grey\" must be binary or gray", NULL, NULL);
}

enum { LD = 8 }; /* pixels of the likelihood models */

typedef struct {
    const char *likelihood, *scale, *output;
    bool rgb;       /* 2x2x2 with a [V/4, 2, 2] decoder output (channel groups) */
    bool sigmoid;   /* the decoder ends in a sigmoid (implied by output "probabilities") */
    float bias[16]; /* the decoder's output, in the network's order */
    float x[LD];
} lik_case;

/* q(z|x) = N(0, 1) = p(z) whatever x (encoder weights and bias 0) and a
 * decoder with zero weights whose bias is its output: then every importance
 * weight is p(x|z) = p(x|bias), and logp = elbo = that log density, exactly. */
static gm_model *lik_model(const lik_case *c, char err[GM_ERR_LEN]) {
    static float zeros[64];
    int V = c->scale && !strcmp(c->scale, "learned") ? 2 * LD : LD;
    static char dec[256];
    snprintf(dec, sizeof dec, "[{\"op\":\"linear\",\"weight\":\"d.w\",\"bias\":\"d.b\"}%s%s]",
             c->rgb ? (V == 16 ? ",{\"op\":\"reshape\",\"shape\":[4,2,2]}" : ",{\"op\":\"reshape\",\"shape\":[2,2,2]}")
                    : "",
             c->sigmoid || (c->output && !strcmp(c->output, "probabilities")) ? ",{\"op\":\"sigmoid\"}" : "");
    file f = {0};
    meta_set(&f, "gm.format", "1");
    meta_set(&f, "gm.family", "vae");
    meta_set(&f, "gm.image", c->rgb ? "2x2x2" : "2x4x1");
    meta_set(&f, "gm.latent_dim", "1");
    meta_set(&f, "gm.input", "gray");
    meta_set(&f, "gm.likelihood", c->likelihood);
    meta_set(&f, "gm.likelihood_scale", c->scale);
    meta_set(&f, "gm.decoder_output", c->output);
    meta_set(&f, "gm.encoder", "[{\"op\":\"linear\",\"weight\":\"e.w\",\"bias\":\"e.b\"}]");
    meta_set(&f, "gm.decoder", dec);
    TSET(&f, "e.w", zeros, 2, LD);
    TSET(&f, "e.b", zeros, 2);
    TSET(&f, "d.w", zeros, V, 1);
    TSET(&f, "d.b", c->bias, V);
    const char *path = write_file(&f);
    gm_model *m = gm_model_load(path, err);
    unlink(path);
    return m;
}

/* Pixel i's (location, log scale) or logit, channels last, from the bias in
 * the network's order ([C, H, W] groups for rgb). */
static void lik_params(const lik_case *c, int i, long double *loc, long double *log_scale) {
    int at = i, C = 2, HW = 4;
    if (c->rgb) at = (i % C) * HW + i / C; /* HWC index -> CHW index */
    *loc = c->bias[at];
    bool learned = c->scale && !strcmp(c->scale, "learned");
    if (learned) *log_scale = c->bias[(c->rgb ? C * HW : LD) + at];
    else *log_scale = c->scale ? logl(strtold(c->scale, NULL)) : 0;
}

/* F of the logistic and its complement, in long double */
static long double lcdf(long double t) { return 1.0L / (1.0L + expl(-t)); }
static long double lccdf(long double t) { return 1.0L / (1.0L + expl(t)); }

/* P(level k) of the discretized logistic, from CDF differences (the
 * complement above the location, where F is near 1) */
static long double dlogistic_mass(int k, long double mu, long double s) {
    long double lo = (k - 0.5L) / 255, hi = (k + 0.5L) / 255;
    if (k == 0) return lcdf((hi - mu) / s);
    if (k == 255) return lccdf((lo - mu) / s);
    if ((long double)k / 255 > mu) return lccdf((lo - mu) / s) - lccdf((hi - mu) / s);
    return lcdf((hi - mu) / s) - lcdf((lo - mu) / s);
}

/* The continuous Bernoulli's log normalizer in lambda form,
 * log(2 atanh(1 - 2 lambda) / (1 - 2 lambda)), its series near 1/2. */
static long double cb_log_c(long double lambda, long double one_minus) {
    long double t = one_minus - lambda;
    if (fabsl(t) < 1e-6L) return logl(2.0L * (1.0L + t * t / 3.0L));
    return logl(2.0L * atanhl(t) / t);
}

/* log p(x | decoder output) and the mean of pixel i, from the definitions */
static long double ref_pixel(const lik_case *c, int i, long double *mean) {
    long double loc, ls, x = c->x[i];
    lik_params(c, i, &loc, &ls);
    if (!strcmp(c->likelihood, "bernoulli") || !strcmp(c->likelihood, "continuous_bernoulli")) {
        long double lambda = 1.0L / (1.0L + expl(-loc)), om = 1.0L / (1.0L + expl(loc));
        long double ll = x * -log1pl(expl(-loc)) + (1 - x) * -log1pl(expl(loc));
        if (!strcmp(c->likelihood, "bernoulli")) {
            *mean = lambda;
            return ll;
        }
        long double t = om - lambda;
        *mean = fabsl(t) < 1e-6L ? 0.5L - t / 6.0L : lambda / (2 * lambda - 1) + 1.0L / (2.0L * atanhl(t));
        return ll + cb_log_c(lambda, om);
    }
    long double s = expl(ls);
    if (!strcmp(c->likelihood, "gaussian")) {
        *mean = fminl(fmaxl(loc, 0), 1);
        long double u = (x - loc) / s;
        return -0.5L * u * u - ls - 0.5L * logl(2.0L * 3.14159265358979323846264338327950288L);
    }
    *mean = 0;
    for (int k = 0; k <= 255; k++) *mean += (long double)k / 255 * dlogistic_mass(k, loc, s);
    return logl(dlogistic_mass((int)lrintl(x * 255), loc, s));
}

static void check_case(const lik_case *c, const char *what, double tol_mean) {
    char err[GM_ERR_LEN] = "";
    gm_model *m = lik_model(c, err);
    if (!m) {
        print_error("%s: expected the file to load; got: %s\n", what, err);
        fail();
    }
    long double want = 0;
    float mean_want[LD], mean_got[LD], z = 0.0f;
    for (int i = 0; i < LD; i++) {
        long double mn;
        want += ref_pixel(c, i, &mn);
        mean_want[i] = (float)mn;
    }
    gm_row row = {.temperature = 1.0f};
    gm_rng_seed(&row.rng, 7, 0);
    gm_logp_result r;
    assert_int_equal(gm_model_logp(m, 1, c->x, 4, &row, &r), 0);
    if (!(fabs(r.logp - (double)want) <= 1e-4 && fabs(r.elbo - (double)want) <= 1e-4)) {
        print_error("%s: logp %.9g, elbo %.9g; the float64 reference gives %.9Lg (tolerance 1e-4 nats)\n", what, r.logp,
                    r.elbo, want);
        fail();
    }
    assert_int_equal(gm_model_decode(m, 1, &z, NULL, mean_got), 0);
    assert_close_f(what, mean_got, mean_want, LD, tol_mean);
    gm_model_free(m);
}

/* Every likelihood's log p and ELBO against a long double evaluation of its
 * definition (the Bernoulli kinds in lambda form, logits from -30 to 25,
 * lambda = 1/2 among them), and decode's mean. Before, only bernoulli loaded,
 * and gray pixels were binarized first. */
static void test_likelihoods_exact(void **state) {
    const float logits[LD] = {-30.0f, -4.0f, -1e-5f, 0.0f, 3e-7f, 0.7f, 6.0f, 25.0f};
    const float gray[LD] = {0.0f, 0.1f, 0.25f, 0.5f, 0.5f, 0.8f, 1.0f, 0.97f};
    lik_case c = {.likelihood = "bernoulli"};
    memcpy(c.bias, logits, sizeof logits);
    memcpy(c.x, gray, sizeof gray);
    check_case(&c, "bernoulli on gray pixels", 1e-6);
    c.likelihood = "continuous_bernoulli";
    check_case(&c, "continuous_bernoulli", 1e-6);

    /* a decoder that ends in a sigmoid: its probabilities are not squashed
     * again (moderate logits: float's sigmoid keeps them to 1e-6 here) */
    const float moderate[LD] = {-3.0f, -1.0f, -1e-3f, 0.0f, 0.2f, 0.7f, 2.0f, 3.0f};
    memcpy(c.bias, moderate, sizeof moderate);
    c.output = "probabilities";
    check_case(&c, "continuous_bernoulli from probabilities", 1e-6);
    c.likelihood = "bernoulli";
    check_case(&c, "bernoulli from probabilities", 1e-6);
    /* the same decoder without gm.decoder_output, or with "logits", was read
     * as logits and squashed twice; now it is refused */
    const char *as_logits[] = {NULL, "logits"};
    for (int i = 0; i < 2; i++) {
        lik_case twice = c;
        twice.output = as_logits[i];
        twice.sigmoid = true;
        char err[GM_ERR_LEN] = "";
        gm_model *m = lik_model(&twice, err);
        if (m || !strstr(err, "gm.decoder ends in a sigmoid") || !strstr(err, "set it to \"probabilities\"")) {
            print_error("a sigmoid decoder read as logits: %s\n", m ? "accepted" : err);
            gm_model_free(m);
            fail();
        }
    }

    const float loc[LD] = {-0.2f, 0.0f, 0.1f, 0.5f, 0.45f, 0.8f, 1.3f, 0.97f};
    c = (lik_case){.likelihood = "gaussian", .scale = "0.1"};
    memcpy(c.bias, loc, sizeof loc);
    memcpy(c.x, gray, sizeof gray);
    check_case(&c, "gaussian, fixed sigma", 1e-6);

    /* learned log sigma, 2 channels: the decoder's [4, 2, 2] output holds
     * the location's 2 channels, then log sigma's */
    c = (lik_case){.likelihood = "gaussian", .scale = "learned", .rgb = true};
    fill(c.bias, 8, 3, 8, 0.15, -0.05);
    fill(c.bias + 8, 8, 5, 8, 0.4, -2.5);
    memcpy(c.x, gray, sizeof gray);
    check_case(&c, "gaussian, learned sigma, 2 channels", 1e-6);

    const int levels[LD] = {0, 1, 37, 128, 200, 254, 255, 100};
    const float mu[LD] = {0.0f, 0.5f, 0.145f, 0.5f, 0.9f, 1.2f, 0.98f, -0.3f};
    c = (lik_case){.likelihood = "discretized_logistic", .scale = "0.05"};
    memcpy(c.bias, mu, sizeof mu);
    for (int i = 0; i < LD; i++) c.x[i] = (float)(levels[i] / 255.0);
    check_case(&c, "discretized_logistic, fixed scale", 1e-6);
    const float log_s[LD] = {-6.0f, -3.0f, -2.0f, -4.0f, -1.0f, -2.5f, -5.0f, -3.0f};
    c.scale = "learned";
    memcpy(c.bias + LD, log_s, sizeof log_s);
    check_case(&c, "discretized_logistic, learned scale", 1e-6);
}

/* The same against PyTorch: torch.distributions' Bernoulli,
 * ContinuousBernoulli and Normal, and PixelCNN++'s discretized logistic
 * loss on its [-1, 1] scale, in float64 (tests/make_fixtures.py). */
static void test_likelihoods_torch(void **state) {
    const struct {
        const char *kind, *likelihood, *scale;
    } cases[] = {
        {"bernoulli", "bernoulli", NULL},
        {"continuous_bernoulli", "continuous_bernoulli", NULL},
        {"gaussian", "gaussian", "0.1"},
        {"gaussian_learned", "gaussian", "learned"},
        {"discretized_logistic", "discretized_logistic", "learned"},
    };
    gm_st *ref = load_ref("likelihoods.ref.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char key[96], err[GM_ERR_LEN] = "";
        lik_case c = {.likelihood = cases[i].likelihood, .scale = cases[i].scale};
        snprintf(key, sizeof key, "%s.params", cases[i].kind);
        const gm_tensor *params = gm_st_tensor(ref, key);
        assert_non_null(params);
        memcpy(c.bias, params->f32, (size_t)params->numel * sizeof(float));
        snprintf(key, sizeof key, "%s.x", cases[i].kind);
        memcpy(c.x, ref_f32(ref, key), sizeof c.x);
        gm_model *m = lik_model(&c, err);
        if (!m) {
            print_error("%s: %s\n", cases[i].kind, err);
            fail();
        }
        snprintf(key, sizeof key, "%s.logp", cases[i].kind);
        json_t *want = json_loads(gm_st_meta(ref, key), 0, NULL);
        gm_row row = {.temperature = 1.0f};
        gm_rng_seed(&row.rng, 3, 0);
        gm_logp_result r;
        assert_int_equal(gm_model_logp(m, 1, c.x, 2, &row, &r), 0);
        double w = json_real_value(json_array_get(want, 0));
        if (!(fabs(r.logp - w) <= 1e-4 && fabs(r.elbo - w) <= 1e-4)) {
            print_error("%s: logp %.9g, elbo %.9g; PyTorch gives %.9g (tolerance 1e-4 nats)\n", cases[i].kind, r.logp,
                        r.elbo, w);
            fail();
        }
        json_decref(want);
        snprintf(key, sizeof key, "%s.mean", cases[i].kind);
        json_t *mean = gm_st_meta(ref, key) ? json_loads(gm_st_meta(ref, key), 0, NULL) : NULL;
        if (mean) {
            float got[LD], wantm[LD], z = 0.0f;
            for (int k = 0; k < LD; k++) wantm[k] = (float)json_real_value(json_array_get(mean, (size_t)k));
            assert_int_equal(gm_model_decode(m, 1, &z, NULL, got), 0);
            assert_close_f(cases[i].kind, got, wantm, LD, 1e-6);
            json_decref(mean);
        }
        gm_model_free(m);
    }
    gm_st_free(ref);
}

/* E[min(max(X, 0), 1)] for X ~ N(mu, s^2) */
static long double clamped_gaussian_mean(long double mu, long double s) {
    long double a = -mu / s, b = (1 - mu) / s, r2 = sqrtl(2.0L), pi = 3.14159265358979323846264338327950288L;
    long double Pa = 0.5L * erfcl(-a / r2), Pb = 0.5L * erfcl(-b / r2);
    long double pa = expl(-a * a / 2) / sqrtl(2 * pi), pb = expl(-b * b / 2) / sqrtl(2 * pi);
    return mu * (Pb - Pa) + s * (pa - pb) + (1 - Pb);
}

/* sample with mode = sample draws from the likelihood: the draws' mean
 * matches the distribution's mean (4000 draws: within 5 standard errors of
 * a pixel in [0, 1]), the continuous Bernoulli's CDF at 1/2 too, and the
 * discretized logistic's draws sit on its 256 levels. */
static void test_draws(void **state) {
    enum { N = 4000 };
    static float px[N * LD];
    static gm_row rows[N];
    const lik_case cases[] = {
        {.likelihood = "continuous_bernoulli", .bias = {-6.0f, -1.0f, 0.0f, 1e-7f, 0.5f, 2.0f, 6.0f, 40.0f}},
        {.likelihood = "gaussian", .scale = "0.2", .bias = {0.1f, 0.3f, 0.5f, 0.7f, 0.9f, 0.2f, 0.4f, 0.6f}},
        {.likelihood = "discretized_logistic",
         .scale = "0.03",
         .bias = {0.0f, 0.1f, 0.33f, 0.5f, 0.62f, 0.9f, 1.0f, 0.75f}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const lik_case *c = &cases[k];
        char err[GM_ERR_LEN] = "";
        gm_model *m = lik_model(c, err);
        assert_non_null(m);
        for (int r = 0; r < N; r++) {
            rows[r] = (gm_row){.temperature = 1.0f, .sample_pixels = true};
            gm_rng_seed(&rows[r].rng, 11, (uint64_t)r);
        }
        assert_int_equal(gm_model_sample(m, N, rows, px, NULL), 0);
        for (int i = 0; i < LD; i++) {
            long double want_mean, loc, ls;
            ref_pixel(c, i, &want_mean);
            lik_params(c, i, &loc, &ls);
            double sum = 0, below = 0;
            for (int r = 0; r < N; r++) {
                float v = px[r * LD + i];
                assert_true(v >= 0.0f && v <= 1.0f);
                if (!strcmp(c->likelihood, "discretized_logistic"))
                    assert_true(fabsf(v * 255.0f - rintf(v * 255.0f)) < 1e-3f);
                sum += v;
                below += v < 0.5f;
            }
            /* the gaussian's draws are clamped to [0, 1] */
            if (!strcmp(c->likelihood, "gaussian")) want_mean = clamped_gaussian_mean(loc, expl(ls));
            double tol = 5 * 0.5 / sqrt(N);
            if (!(fabs(sum / N - (double)want_mean) <= tol)) {
                print_error("%s pixel %d: mean of %d draws %.5f, the distribution's %.5Lf (tolerance %.4f)\n",
                            c->likelihood, i, N, sum / N, want_mean, tol);
                fail();
            }
            if (!strcmp(c->likelihood, "continuous_bernoulli")) {
                /* F(1/2) = (e^(l/2) - 1) / (e^l - 1) */
                long double F = fabsl(loc) < 1e-6L ? 0.5L : expm1l(loc / 2) / expm1l(loc);
                if (!(fabs(below / N - (double)F) <= tol)) {
                    print_error("continuous_bernoulli pixel %d: %.5f of the draws below 1/2, CDF %.5Lf\n", i, below / N,
                                F);
                    fail();
                }
            }
        }
        gm_model_free(m);
    }
}

/* Likelihood metadata that does not say one thing is refused, naming the
 * key and the value. */
static void test_likelihood_metadata_refused(void **state) {
    const struct {
        const char *likelihood, *scale, *output, *fragment;
    } bad[] = {
        {"poisson", NULL, NULL, "\"gm.likelihood\" = \"poisson\" is not one of bernoulli, continuous_bernoulli"},
        {"gaussian", NULL, NULL, "\"gm.likelihood_scale\" is required for gm.likelihood gaussian"},
        {"discretized_logistic", "-0.1", NULL, "\"gm.likelihood_scale\" = \"-0.1\" must be \"learned\" or a number"},
        {"gaussian", "0.1x", NULL, "\"gm.likelihood_scale\" = \"0.1x\""},
        {"gaussian", "nan", NULL, "\"gm.likelihood_scale\" = \"nan\""},
        {"bernoulli", "0.1", NULL, "\"gm.likelihood_scale\" = \"0.1\" has no meaning for gm.likelihood bernoulli"},
        {"bernoulli", NULL, "tanh", "\"gm.decoder_output\" = \"tanh\" must be logits or probabilities"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lik_case c = {.likelihood = bad[i].likelihood, .scale = bad[i].scale, .output = bad[i].output};
        char err[GM_ERR_LEN] = "";
        gm_model *m = lik_model(&c, err);
        if (m || !strstr(err, bad[i].fragment)) {
            print_error("case %zu: expected a refusal naming \"%s\"; got %s: \"%s\"\n", i, bad[i].fragment,
                        m ? "success" : "error", err);
            gm_model_free(m);
            fail();
        }
    }
}

/* ---- what a file is ---- */

static void expect_load_error(const char *path, const char *f1, const char *f2) {
    char err[GM_ERR_LEN] = "";
    gm_model *m = gm_model_load(path, err);
    if (m || !strstr(err, path) || !strstr(err, f1) || !strstr(err, f2)) {
        print_error("expected a refusal naming \"%s\" and \"%s\"; got %s: \"%s\"\n", f1, f2, m ? "success" : "error",
                    err);
        gm_model_free(m);
        fail();
    }
}

/* torch.save's zip and legacy pickle checkpoints and a plain state_dict
 * safetensors file are named as what they are, with what to run instead.
 * Before: "header length 578712552184433488 exceeds the limit" and
 * "gm.format must be \"1\" (found none)". */
static void test_refusals_say_what_to_run(void **state) {
    /* the first bytes of torch.save({'w': torch.zeros(3)}) in both formats */
    const uint8_t zip[32] = {'P', 'K', 3, 4, 0, 0, 8, 8, [28] = 16};
    const uint8_t pickle[32] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    const uint8_t *files[] = {zip, pickle};
    for (int i = 0; i < 2; i++) {
        char path[TEMP_PATH_LEN];
        temp_file(path, "verify", files[i], 32);
        expect_load_error(path, "this is a PyTorch checkpoint (torch.save)", "python3 -m gmexport");
        unlink(path);
    }
    /* what safetensors.torch.save_file writes: no gm.* keys at all */
    file f = {0};
    float w[3] = {0};
    meta_set(&f, "format", "pt");
    TSET(&f, "fc.weight", w, 3);
    const char *path = write_file(&f);
    expect_load_error(path, "without gm.* metadata", "python3 -m gmexport");
    unlink(path);
}

/* `gmserve check` says what each file is: the evaluation classifier is
 * described, not failed; a file with probes says what they verified; the
 * bundled models all pass (exit 0). */
static void test_check_says_what_files_are(void **state) {
    float fw[12], hw[6];
    fill(fw, 12, 1, 5, 0.1, 0.0);
    fill(hw, 6, 1, 3, 0.1, 0.0);
    file c = {0};
    meta_set(&c, "gm.format", "1");
    meta_set(&c, "gm.family", "classifier");
    meta_set(&c, "gm.image", "2x2x1");
    meta_set(&c, "gm.features", "[{\"op\":\"linear\",\"weight\":\"f.w\"}]");
    meta_set(&c, "gm.head", "[{\"op\":\"linear\",\"weight\":\"h.w\"}]");
    TSET(&c, "f.w", fw, 3, 4);
    TSET(&c, "h.w", hw, 2, 3);
    char classifier[TEMP_PATH_LEN], probed[TEMP_PATH_LEN], cmd[1024], out[16384];
    strcpy(classifier, write_file(&c));
    file v;
    vae_probes d;
    vae_probe_file(&v, &d);
    strcpy(probed, write_file(&v));
    const char *bin = gmserve_bin();
    snprintf(cmd, sizeof cmd, "%s check %s %s models/*.safetensors 2>&1", bin, classifier, probed);
    int rc = run_command(cmd, out, sizeof out);
    char want_c[160], want_p[160];
    snprintf(want_c, sizeof want_c, "%s: the evaluation classifier (gm.family classifier)", classifier);
    snprintf(want_p, sizeof want_p, "%s: probes: encoder, decoder verified (3 probe inputs each)", probed);
    if (rc != 0 || !strstr(out, want_c) || !strstr(out, "3 features, 2 classes") || !strstr(out, want_p) ||
        !strstr(out, "models/classifier.safetensors: the evaluation classifier") ||
        !strstr(out, "models/vae.safetensors: a served model, family vae")) {
        print_error("check: rc %d, output:\n%s\n", rc, out);
        fail();
    }
    /* a classifier whose networks do not build still fails */
    meta_set(&c, "gm.head", "[{\"op\":\"linear\",\"weight\":\"missing\"}]");
    const char *broken = write_file(&c);
    snprintf(cmd, sizeof cmd, "%s check %s 2>&1", bin, broken);
    rc = run_command(cmd, out, sizeof out);
    unlink(broken);
    unlink(classifier);
    unlink(probed);
    if (rc != 1 || !strstr(out, "gm.head")) {
        print_error("check on a broken classifier: rc %d, output:\n%s\n", rc, out);
        fail();
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probes_verified),
        cmocka_unit_test(test_probe_mismatch),
        cmocka_unit_test(test_probe_hostile),
        cmocka_unit_test(test_probe_conditional_gan),
        cmocka_unit_test(test_gray_input),
        cmocka_unit_test(test_likelihoods_exact),
        cmocka_unit_test(test_likelihoods_torch),
        cmocka_unit_test(test_draws),
        cmocka_unit_test(test_likelihood_metadata_refused),
        cmocka_unit_test(test_refusals_say_what_to_run),
        cmocka_unit_test(test_check_says_what_files_are),
    };
    return cmocka_run_group_tests_name("verify", tests, NULL, NULL);
}
