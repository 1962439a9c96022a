/*
 * test_aae.c - the adversarial autoencoder family against PyTorch.
 *
 * Three fixtures written by gmexport.save_aae (tests/make_fixtures.py) on
 * random weights: a conv AAE with a point encoder and a sigmoid decoder,
 * an MLP AAE with a Gaussian head and a tanh decoder on RGB images (the
 * shape of the popular PyTorch GAN collections), and an MLP AAE with the
 * paper's label-conditioned mixture prior (three Gaussians in 2-D, named
 * classes). Their reference files hold PyTorch's codes, decoded images and
 * reconstructions. Then: a row's sample and reconstruction do not depend
 * on its batch; a mixture sample of class k is the decoding of
 * mean_k + std_k * temperature * eps, eps the normal prior's draws of the
 * row's stream, recomputed here from the file's tensors; a code's posterior
 * over the components is the one recomputed here in double; malformed priors
 * are refused at load naming the key; and the daemon serves reconstruct
 * (pixels and PNG bodies in, PNG or JSON out), lists it in /v1/models,
 * refuses logp with a 422 saying why, samples a mixture's classes by
 * index or name, and encodes a mixture's images with their components
 * (/v1 and /v2).
 */
#include "gm/model.h"
#include "testutil.h"

#include "base64.h"
#include "daemon.h"
#include "pngio.h"

#define TOL 1e-4
static const char *const FIXTURES[] = {"aae_conv", "aae_gauss_rgb", "aae_mixture"};
enum { NFIXTURES = 3, NRECONSTRUCT = 2 }; /* the daemon's reconstruct checks run on the first two */

static void test_parity_with_pytorch(void **state) {
    for (int f = 0; f < NFIXTURES; f++) {
        char file[64], reff[64];
        snprintf(file, sizeof file, "%s.safetensors", FIXTURES[f]);
        snprintf(reff, sizeof reff, "%s.ref.safetensors", FIXTURES[f]);
        gm_model *m = load_model(file);
        gm_st *ref = load_ref(reff);
        const gm_model_info *in = gm_model_get_info(m);
        int n = (int)gm_st_tensor(ref, "x")->shape[0], D = in->dim, Z = in->latent_dim;
        assert_int_equal(in->family, GM_FAMILY_AAE);
        assert_int_equal(in->encode_dim, Z);
        assert_false(in->supports[GM_OP_LOGP]);
        assert_true(in->supports[GM_OP_RECONSTRUCT]);
        float *z = malloc((size_t)n * Z * sizeof *z), *px = malloc((size_t)n * D * sizeof *px);
        assert_int_equal(gm_model_encode(m, n, ref_f32(ref, "x"), z, NULL), 0);
        assert_close_f(file, z, ref_f32(ref, "code"), (size_t)n * Z, TOL);
        assert_int_equal(gm_model_decode(m, n, ref_f32(ref, "z"), NULL, px), 0);
        assert_close_f(file, px, ref_f32(ref, "decoded"), (size_t)n * D, TOL);
        assert_int_equal(gm_model_reconstruct(m, n, ref_f32(ref, "x"), px), 0);
        assert_close_f(file, px, ref_f32(ref, "reconstructed"), (size_t)n * D, TOL);
        gm_logp_result lp;
        gm_row *rows = seeded_rows(1, 1, 1.0f);
        assert_int_equal(gm_model_logp(m, 1, ref_f32(ref, "x"), 4, rows, &lp), -1); /* no density */
        free(rows);
        free(z);
        free(px);
        gm_st_free(ref);
        gm_model_free(m);
    }
}

/* Row `at` of a batch of B (its own seed among others) equals it alone. */
static void test_alone_vs_batched(void **state) {
    enum { B = 33, AT = 17 };
    for (int f = 0; f < NFIXTURES; f++) {
        char file[64];
        snprintf(file, sizeof file, "%s.safetensors", FIXTURES[f]);
        gm_model *m = load_model(file);
        int D = gm_model_get_info(m)->dim, K = gm_model_get_info(m)->num_classes;
        gm_row *batch = seeded_rows(B, 1000, 0.9f), *alone = seeded_rows(1, 1000, 0.9f);
        gm_rng_seed(&alone[0].rng, 1000, AT);                    /* the stream row AT has in the batch */
        for (int r = 0; r < B && K; r++) batch[r].label = r % K; /* a mixture: every component in the batch */
        alone[0].label = K ? AT % K : -1;
        float *pb = malloc((size_t)B * D * sizeof *pb), *p1 = malloc((size_t)D * sizeof *p1);
        assert_int_equal(gm_model_sample(m, B, batch, pb, NULL), 0);
        assert_int_equal(gm_model_sample(m, 1, alone, p1, NULL), 0);
        assert_close_f(file, p1, pb + (size_t)AT * D, D, 1e-5);
        float *x = malloc((size_t)B * D * sizeof *x);
        gm_rng g;
        gm_rng_seed(&g, 7, 0);
        for (size_t i = 0; i < (size_t)B * D; i++) x[i] = (float)gm_rng_uniform(&g);
        assert_int_equal(gm_model_reconstruct(m, B, x, pb), 0);
        assert_int_equal(gm_model_reconstruct(m, 1, x + (size_t)AT * D, p1), 0);
        assert_close_f(file, p1, pb + (size_t)AT * D, D, 1e-5);
        free(x);
        free(batch);
        free(alone);
        free(pb);
        free(p1);
        gm_model_free(m);
    }
}

/* The fixture aae_conv with the metadata pairs meta[0..nmeta) set (key,
 * value, ...; a NULL value removes the key) and the F32 tensors ts[0..nt)
 * added after its own, written to a temporary file (path as temp_file's). */
static const char *aae_conv_variant(char *path, const char *const *meta, int nmeta, const st_tensor *ts, int nt) {
    FILE *f = fopen(fixture("aae_conv.safetensors"), "rb");
    assert_non_null(f);
    uint8_t len8[8];
    assert_int_equal(fread(len8, 1, 8, f), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    char *head = malloc(n + 1);
    assert_int_equal(fread(head, 1, n, f), n);
    head[n] = 0;
    long at = ftell(f);
    fseek(f, 0, SEEK_END);
    size_t body_len = (size_t)(ftell(f) - at), extra = 0;
    fseek(f, at, SEEK_SET);
    for (int i = 0; i < nt; i++) extra += (size_t)st_numel(&ts[i]) * sizeof(float);
    uint8_t *body = malloc(body_len + extra);
    assert_int_equal(fread(body, 1, body_len, f), body_len);
    fclose(f);
    json_t *h = json_loads(head, 0, NULL), *md = json_object_get(h, "__metadata__");
    for (int i = 0; i + 1 < nmeta; i += 2)
        if (meta[i + 1]) json_object_set_new(md, meta[i], json_string(meta[i + 1]));
        else json_object_del(md, meta[i]);
    size_t off = body_len;
    for (int i = 0; i < nt; i++) {
        assert_false(ts[i].f64);
        json_t *shape = json_array();
        for (int d = 0; d < ts[i].ndim; d++) json_array_append_new(shape, json_integer(ts[i].shape[d]));
        for (int64_t k = 0; k < st_numel(&ts[i]); k++, off += sizeof(float)) {
            float v = (float)st_value(&ts[i], k);
            memcpy(body + off, &v, sizeof v);
        }
        size_t bytes = (size_t)st_numel(&ts[i]) * sizeof(float);
        json_object_set_new(h, ts[i].name,
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype", "F32", "shape", shape, "data_offsets",
                                      (json_int_t)(off - bytes), (json_int_t)off));
    }
    char *text = json_dumps(h, JSON_COMPACT);
    st_write(path, "aae", text, body, body_len + extra);
    free(text);
    json_decref(h);
    free(body);
    free(head);
    return path;
}

/* aae_conv_variant's file must be refused with a message holding want. */
static void assert_variant_refused(const char *const *meta, int nmeta, const st_tensor *ts, int nt, const char *want) {
    char path[TEMP_PATH_LEN], err[GM_ERR_LEN];
    gm_model *m = gm_model_load(aae_conv_variant(path, meta, nmeta, ts, nt), err);
    unlink(path);
    if (m || !strstr(err, want)) {
        print_error("%s = %s...: %s, want a refusal naming \"%s\"\n", meta[0], meta[1] ? meta[1] : "(absent)",
                    m ? "loaded" : err, want);
        fail();
    }
}

/* The fixture aae_conv with metadata key set to value (NULL: removed);
 * loading must fail with a message holding want. */
static void assert_refused_with(const char *key, const char *value, const char *want) {
    assert_variant_refused((const char *[]){key, value}, 2, NULL, 0, want);
}

static void test_bad_metadata_is_refused(void **state) {
    assert_refused_with("gm.encoder_head", "sampled",
                        "\"gm.encoder_head\" = \"sampled\" must be \"point\" or \"gaussian\"");
    /* the file's encoder gives Z values: as a Gaussian head it lacks the log-variances */
    assert_refused_with("gm.encoder_head", "gaussian", "gm.encoder ends with 6 values per sample but 12 are needed");
    assert_refused_with("gm.output", "logits", "\"gm.output\" = \"logits\" must be \"sigmoid\" or \"tanh\"");
    assert_refused_with("gm.prior", "vampprior", "\"gm.prior\" = \"vampprior\" must be \"normal\" or \"mixture\"");
    assert_refused_with("gm.latent_dim", "5", "gm.encoder ends with 6 values per sample but 5 are needed");
    assert_refused_with("gm.decoder", NULL, "metadata \"gm.decoder\" (a layer list) is required");
}

/* A PNG as pixels in [0, 1], checked against PyTorch's within 8-bit rounding. */
static void assert_png_close(const char *what, const uint8_t *png, size_t len, const gm_model_info *in,
                             const float *want) {
    char err[GM_ERR_LEN];
    float *got = malloc((size_t)in->dim * sizeof *got);
    assert_int_equal(gm_png_decode(png, len, in->height, in->width, in->channels, got, err), GM_PNG_OK);
    assert_close_f(what, got, want, (size_t)in->dim, 0.5 / 255 + 1e-6);
    free(got);
}

/* {"images": [{"pixels": [...]}, ...]} of n images of D values (malloc'd). */
static char *pixels_body(const float *x, int n, int D) {
    size_t cap = (size_t)n * D * 16 + 64, len = 0;
    char *body = malloc(cap);
    len += (size_t)snprintf(body + len, cap - len, "{\"images\": [");
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(body + len, cap - len, "%s{\"pixels\": [", i ? ", " : "");
        for (int j = 0; j < D; j++)
            len += (size_t)snprintf(body + len, cap - len, "%s%.9g", j ? "," : "", x[(size_t)i * D + j]);
        len += (size_t)snprintf(body + len, cap - len, "]}");
    }
    snprintf(body + len, cap - len, "]}");
    return body;
}

/* An infer request of n images of model `in` (the tensor images [n, H, W, C])
 * asking for the one output `output` (malloc'd). */
static char *v2_images_body(const float *x, int n, const gm_model_info *in, const char *output) {
    size_t cap = (size_t)n * in->dim * 16 + 256;
    char *body = malloc(cap);
    size_t len = (size_t)snprintf(body, cap,
                                  "{\"inputs\": [{\"name\": \"images\", \"shape\": [%d, %d, %d, %d], \"datatype\": "
                                  "\"FP32\", \"data\": [",
                                  n, in->height, in->width, in->channels);
    for (size_t q = 0; q < (size_t)n * in->dim; q++)
        len += (size_t)snprintf(body + len, cap - len, "%s%.9g", q ? "," : "", x[q]);
    snprintf(body + len, cap - len, "]}], \"outputs\": [{\"name\": \"%s\"}]}", output);
    return body;
}

/* The value at keys[0], then keys[1] in it, ... (NULL-terminated), or NULL. */
static json_t *json_path(json_t *j, const char *const *keys) {
    for (; j && *keys; keys++) j = json_object_get(j, *keys);
    return j;
}

static void test_daemon_reconstruct_and_logp(void **state) {
    const char *args[] = {"--model", "conv=tests/fixtures/aae_conv.safetensors", "--model",
                          "rgb=tests/fixtures/aae_gauss_rgb.safetensors", NULL};
    daemon_t d = daemon_start("aae", args);
    for (int f = 0; f < NRECONSTRUCT; f++) {
        char file[64], reff[64], path[96];
        snprintf(file, sizeof file, "%s.safetensors", FIXTURES[f]);
        snprintf(reff, sizeof reff, "%s.ref.safetensors", FIXTURES[f]);
        gm_model *m = load_model(file);
        gm_st *ref = load_ref(reff);
        const gm_model_info *in = gm_model_get_info(m);
        const float *x = ref_f32(ref, "x"), *want = ref_f32(ref, "reconstructed");
        const char *name = f ? "rgb" : "conv";
        /* two images as pixels, JSON out */
        char *body = pixels_body(x, 2, in->dim);
        snprintf(path, sizeof path, "/v1/models/%s/reconstruct", name);
        reply_t r = http_json(d.port, path, body);
        assert_int_equal(r.status, 200);
        json_t *j = body_json(&r), *images = json_object_get(j, "images");
        assert_int_equal(json_array_size(images), 2);
        uint8_t *png[2];
        size_t png_len[2];
        for (int i = 0; i < 2; i++) {
            const char *b64 = json_string_value(json_object_get(json_array_get(images, (size_t)i), "png"));
            assert_non_null(b64);
            png[i] = gm_base64_decode(b64, strlen(b64), &png_len[i]);
            assert_png_close(path, png[i], png_len[i], in, want + (size_t)i * in->dim);
        }
        json_decref(j);
        reply_free(&r);
        /* the first image as an image/png body, format=png: reconstructs the image the PNG holds */
        snprintf(path, sizeof path, "/reconstruct?model=%s&format=png", name);
        r = http(d.port, "POST", path, "Content-Type: image/png\r\n", png[0], png_len[0]);
        assert_int_equal(r.status, 200);
        float *again = malloc((size_t)in->dim * sizeof *again), *rec = malloc((size_t)in->dim * sizeof *rec);
        char err[GM_ERR_LEN];
        assert_int_equal(gm_png_decode(png[0], png_len[0], in->height, in->width, in->channels, again, err), GM_PNG_OK);
        assert_int_equal(gm_model_reconstruct(m, 1, again, rec), 0);
        assert_png_close(path, r.body, r.len, in, rec);
        reply_free(&r);
        /* the same through the Open Inference Protocol: images in, images out, unquantized */
        char *v2body = v2_images_body(x, 2, in, "images");
        snprintf(path, sizeof path, "/v2/models/%s/infer", name);
        r = http_json(d.port, path, v2body);
        free(v2body);
        assert_int_equal(r.status, 200);
        j = body_json(&r);
        json_t *data = json_object_get(json_array_get(json_object_get(j, "outputs"), 0), "data");
        assert_int_equal(json_array_size(data), 2 * in->dim);
        float *v2 = malloc((size_t)2 * in->dim * sizeof *v2);
        for (int k = 0; k < 2 * in->dim; k++) v2[k] = (float)json_number_value(json_array_get(data, (size_t)k));
        assert_close_f(path, v2, want, (size_t)2 * in->dim, TOL);
        free(v2);
        json_decref(j);
        reply_free(&r);
        /* encode: the code alone, no component (the normal prior has one) */
        snprintf(path, sizeof path, "/v1/models/%s/encode", name);
        j = http_json_expect(d.port, path, body, 200);
        json_t *res0 = json_array_get(json_object_get(j, "results"), 0);
        assert_int_equal(json_array_size(json_object_get(res0, "z")), in->latent_dim);
        assert_null(json_object_get(res0, "component"));
        assert_null(json_object_get(res0, "class"));
        assert_null(json_object_get(res0, "component_probs"));
        json_decref(j);
        /* logp: 422, saying why */
        snprintf(path, sizeof path, "/v1/models/%s/logp", name);
        r = http_json(d.port, path, body);
        assert_int_equal(r.status, 422);
        j = body_json(&r);
        const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        assert_non_null(msg);
        assert_non_null(strstr(msg, "defines no density"));
        assert_non_null(strstr(msg, "no likelihood term"));
        json_decref(j);
        reply_free(&r);
        /* /v1/models lists the operations from the tables, reconstruct's parameters among them */
        snprintf(path, sizeof path, "/v1/models/%s", name);
        r = http_get(d.port, path);
        assert_int_equal(r.status, 200);
        j = body_json(&r);
        char *ops = json_dumps(json_object_get(j, "operations"), JSON_COMPACT);
        assert_string_equal(ops, "[\"sample\",\"encode\",\"decode\",\"reconstruct\"]");
        free(ops);
        json_decref(j);
        reply_free(&r);
        free(rec);
        free(again);
        free(png[0]);
        free(png[1]);
        free(body);
        gm_st_free(ref);
        gm_model_free(m);
    }
    /* mode is a VAE's: refused on an AAE, not ignored */
    reply_t r = http_get(d.port, "/sample?model=conv&mode=sample");
    assert_int_equal(r.status, 422);
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
}

/* aae_conv (Z = 6) with a mixture prior of K components: means [K, 6],
 * stds [K, 6], or [K] when std_per_k. */
static gm_model *mixture_conv(int K, const float *means, const float *stds, bool std_per_k) {
    char path[TEMP_PATH_LEN], err[GM_ERR_LEN], k[16];
    snprintf(k, sizeof k, "%d", K);
    const st_tensor ts[] = {{.name = "prior.means", .ndim = 2, .shape = {K, 6}, .values = means},
                            {.name = "prior.stds", .ndim = std_per_k ? 1 : 2, .shape = {K, 6}, .values = stds}};
    gm_model *m = gm_model_load(
        aae_conv_variant(path, (const char *[]){"gm.prior", "mixture", "gm.num_classes", k}, 4, ts, 2), err);
    unlink(path);
    if (!m) print_error("%s\n", err);
    assert_non_null(m);
    return m;
}

/* The decoding of z_r = mean[k_r] + std[k_r] * T * eps_r for n rows, eps_r
 * the N(0, I) draws of stream (seed, r), k_r = labels[r]; means [K, Z] and
 * stds [K, Z] (std_per_k: [K]) as the file holds them. */
static void mixture_expected(const gm_model *m, int n, uint64_t seed, float T, const int *labels, const float *means,
                             const float *stds, bool std_per_k, float *pixels) {
    int Z = gm_model_get_info(m)->latent_dim;
    float *z = malloc((size_t)n * Z * sizeof *z);
    for (int r = 0; r < n; r++) {
        gm_rng g;
        gm_rng_seed(&g, seed, (uint64_t)r);
        int k = labels[r];
        for (int j = 0; j < Z; j++) {
            double eps = (double)T * gm_rng_normal(&g);
            z[(size_t)r * Z + j] = (float)(means[(size_t)k * Z + j] + stds[std_per_k ? k : k * Z + j] * eps);
        }
    }
    assert_int_equal(gm_model_decode(m, n, z, NULL, pixels), 0);
    free(z);
}

/* Sampling n rows of stream seed at temperature T, row r of class r % K,
 * equals mixture_expected. */
static void check_mixture_sample(const char *what, const gm_model *m, const float *means, const float *stds,
                                 bool std_per_k) {
    enum { N = 7 };
    const float T = 0.8f;
    const gm_model_info *in = gm_model_get_info(m);
    gm_row *rows = seeded_rows(N, 42, T);
    int labels[N];
    for (int r = 0; r < N; r++) rows[r].label = labels[r] = r % in->num_classes;
    float *got = malloc((size_t)N * in->dim * sizeof *got), *want = malloc((size_t)N * in->dim * sizeof *want);
    assert_int_equal(gm_model_sample(m, N, rows, got, NULL), 0);
    mixture_expected(m, N, 42, T, labels, means, stds, std_per_k, want);
    assert_close_f(what, got, want, (size_t)N * in->dim, 1e-6);
    free(got);
    free(want);
    free(rows);
}

static void test_mixture_sample_is_mean_plus_std_eps(void **state) {
    /* the exporter's file: stds [K], named classes */
    gm_model *m = load_model("aae_mixture.safetensors");
    gm_st *st = load_ref("aae_mixture.safetensors");
    const gm_model_info *in = gm_model_get_info(m);
    assert_true(in->mixture_prior);
    assert_int_equal(in->num_classes, 3);
    assert_string_equal(in->class_names[2], "up");
    check_mixture_sample("aae_mixture", m, ref_f32(st, "prior.means"), ref_f32(st, "prior.stds"), true);
    gm_st_free(st);
    gm_model_free(m);
    /* stds [K, Z] on aae_conv (Z = 6): one std per code value */
    enum { K = 2, Z = 6 };
    float means[K * Z], stds[K * Z];
    for (int i = 0; i < K * Z; i++) means[i] = (float)(i % 5) - 2.0f, stds[i] = 0.1f + 0.2f * (float)i;
    m = mixture_conv(K, means, stds, false);
    check_mixture_sample("aae_conv with stds [K, Z]", m, means, stds, false);
    gm_model_free(m);
    /* the normal prior draws the same eps: component 0 of N(0, I) */
    m = load_model("aae_conv.safetensors");
    const float zero[Z] = {0}, one[1] = {1.0f};
    gm_row *rows = seeded_rows(3, 42, 0.8f);
    float got[3 * 784], want[3 * 784];
    assert_int_equal(gm_model_sample(m, 3, rows, got, NULL), 0);
    mixture_expected(m, 3, 42, 0.8f, (const int[]){0, 0, 0}, zero, one, true, want);
    assert_close_f("aae_conv, normal prior", got, want, 3 * 784, 1e-6);
    free(rows);
    gm_model_free(m);
}

/* p(k | z) for the n codes z of a model with K components in Z
 * dimensions, from means [K, Z] and stds as the file holds them ([K, Z],
 * or [K] when std_per_k): each log density with its constant, and
 * p_k = 1 / sum_j exp(l_j - l_k), which neither underflows nor overflows
 * into a NaN. */
static void posterior_expected(int n, int K, int Z, const float *z, const float *means, const float *stds,
                               bool std_per_k, double *p) {
    double *l = malloc((size_t)K * sizeof *l);
    for (int r = 0; r < n; r++) {
        for (int k = 0; k < K; k++) {
            l[k] = 0;
            for (int j = 0; j < Z; j++) {
                double s = stds[std_per_k ? k : k * Z + j], d = (double)z[(size_t)r * Z + j] - means[(size_t)k * Z + j];
                l[k] += -0.5 * log(2 * M_PI) - log(s) - d * d / (2 * s * s);
            }
        }
        for (int k = 0; k < K; k++) {
            double sum = 0;
            for (int j = 0; j < K; j++) sum += exp(l[j] - l[k]);
            p[(size_t)r * K + k] = 1 / sum;
        }
    }
    free(l);
}

/* gm_model_component_probs on K codes placed at the means, codes spread
 * around them and codes far from every mean: the posterior recomputed
 * from the file's tensors, summing to 1, its argmax reported, and each
 * code at means[k] put in component k. */
static void check_component_probs(const char *what, const gm_model *m, const float *means, const float *stds,
                                  bool std_per_k) {
    const gm_model_info *in = gm_model_get_info(m);
    int K = in->num_classes, Z = in->latent_dim, n = K + 12 + 3;
    float *z = malloc((size_t)n * Z * sizeof *z);
    memcpy(z, means, (size_t)K * Z * sizeof *z);
    gm_rng g;
    gm_rng_seed(&g, 11, 0);
    for (int i = K * Z; i < (K + 12) * Z; i++) z[i] = (float)(10 * gm_rng_uniform(&g) - 5);
    for (int i = (K + 12) * Z; i < n * Z; i++) z[i] = i % 2 ? 1e4f : -3e3f * (float)(i % 3); /* exp(-1e8): underflows */
    double *got = malloc((size_t)n * K * sizeof *got), *want = malloc((size_t)n * K * sizeof *want);
    int *best = malloc((size_t)n * sizeof *best);
    assert_int_equal(gm_model_component_probs(m, n, z, got, best), 0);
    posterior_expected(n, K, Z, z, means, stds, std_per_k, want);
    for (int r = 0; r < n; r++) {
        double sum = 0;
        int argmax = 0;
        for (int k = 0; k < K; k++) {
            double pg = got[(size_t)r * K + k], w = want[(size_t)r * K + k];
            if (!(fabs(pg - w) <= 1e-9)) {
                print_error("%s: row %d component %d: p = %.17g, want %.17g\n", what, r, k, pg, w);
                fail();
            }
            sum += pg;
            argmax = w > want[(size_t)r * K + argmax] ? k : argmax;
        }
        assert_true(fabs(sum - 1) < 1e-12);
        assert_int_equal(best[r], argmax);
        if (r < K) assert_int_equal(best[r], r); /* a code at means[k] */
    }
    /* a row's posterior is its own: row 5 alone */
    double one[8];
    assert_int_equal(gm_model_component_probs(m, 1, z + 5 * Z, one, NULL), 0);
    for (int k = 0; k < K; k++) assert_true(one[k] == got[5 * K + k]);
    free(z);
    free(got);
    free(want);
    free(best);
}

static void test_component_probs(void **state) {
    /* the exporter's file: stds [K] */
    gm_model *m = load_model("aae_mixture.safetensors");
    gm_st *st = load_ref("aae_mixture.safetensors");
    check_component_probs("aae_mixture", m, ref_f32(st, "prior.means"), ref_f32(st, "prior.stds"), true);
    gm_st_free(st);
    gm_model_free(m);
    /* stds [K, Z], unequal per code value */
    enum { K = 3, Z = 6 };
    float means[K * Z], stds[K * Z];
    for (int i = 0; i < K * Z; i++) means[i] = 3.0f * (float)(i % 5) - 4.0f, stds[i] = 0.3f + 0.1f * (float)(i % 7);
    m = mixture_conv(K, means, stds, false);
    check_component_probs("aae_conv with stds [K, Z]", m, means, stds, false);
    gm_model_free(m);
    /* a normal prior has no components, nor has another family */
    float z[Z] = {0};
    double p[K];
    m = load_model("aae_conv.safetensors");
    assert_int_equal(gm_model_component_probs(m, 1, z, p, NULL), -1);
    gm_model_free(m);
    m = load_model("vae_mlp.safetensors");
    assert_int_equal(gm_model_component_probs(m, 1, z, p, NULL), -1);
    gm_model_free(m);
}

static void test_bad_mixture_prior_is_refused(void **state) {
    enum { K = 3, Z = 6 };
    float means[K * Z] = {0}, stds[K] = {1.0f, 0.5f, 2.0f};
    const char *mix[] = {"gm.prior", "mixture", "gm.num_classes", "3"};
    const st_tensor good_means = {.name = "prior.means", .ndim = 2, .shape = {K, Z}, .values = means},
                    good_stds = {.name = "prior.stds", .ndim = 1, .shape = {K}, .values = stds};
    assert_variant_refused((const char *[]){"gm.prior", "mixture"}, 2, (st_tensor[]){good_means, good_stds}, 2,
                           "gm.prior \"mixture\" needs metadata \"gm.num_classes\" = K >= 1");
    assert_variant_refused(mix, 4, (st_tensor[]){good_stds}, 1, "needs the tensor 'prior.means'");
    assert_variant_refused(mix, 4, (st_tensor[]){good_means}, 1, "needs the tensor 'prior.stds'");
    assert_variant_refused(mix, 4, (st_tensor[]){{.name = "prior.means", .ndim = 2, .shape = {K, Z - 1}}, good_stds}, 2,
                           "tensor 'prior.means' must be a float tensor of shape [3, 6] (gm.num_classes = 3, "
                           "gm.latent_dim = 6)");
    assert_variant_refused(mix, 4, (st_tensor[]){{.name = "prior.means", .ndim = 1, .shape = {K}}, good_stds}, 2,
                           "tensor 'prior.means' must be a float tensor of shape [3, 6]");
    assert_variant_refused(mix, 4, (st_tensor[]){good_means, {.name = "prior.stds", .ndim = 1, .shape = {K - 1}}}, 2,
                           "tensor 'prior.stds' must be a float tensor of shape [3, 6] or [3]");
    assert_variant_refused(
        mix, 4,
        (st_tensor[]){
            {.name = "prior.means", .ndim = 2, .shape = {K, Z}, .poisoned = true, .poison_at = 7, .poison = NAN},
            good_stds},
        2, "tensor 'prior.means' holds nan at flat index 7; its values must be finite");
    float zero_std[K] = {1.0f, 0.0f, 1.0f}, neg_std[K] = {1.0f, 1.0f, -0.5f};
    assert_variant_refused(
        mix, 4, (st_tensor[]){good_means, {.name = "prior.stds", .ndim = 1, .shape = {K}, .values = zero_std}}, 2,
        "tensor 'prior.stds' holds 0 at flat index 1; its values must be finite and above 0");
    assert_variant_refused(
        mix, 4, (st_tensor[]){good_means, {.name = "prior.stds", .ndim = 1, .shape = {K}, .values = neg_std}}, 2,
        "tensor 'prior.stds' holds -0.5 at flat index 2");
    assert_variant_refused(mix, 4,
                           (st_tensor[]){good_means,
                                         {.name = "prior.stds",
                                          .ndim = 1,
                                          .shape = {K},
                                          .values = stds,
                                          .poisoned = true,
                                          .poison_at = 0,
                                          .poison = INFINITY}},
                           2, "tensor 'prior.stds' holds inf at flat index 0");
    assert_variant_refused((const char *[]){"gm.prior", "mixture", "gm.num_classes", "3", "gm.class_names", "[\"a\"]"},
                           6, (st_tensor[]){good_means, good_stds}, 2, "\"gm.class_names\" must be a JSON array");
    /* classes or prior tensors on a normal prior would do nothing: refused */
    assert_variant_refused((const char *[]){"gm.num_classes", "3"}, 2, NULL, 0,
                           "\"gm.num_classes\" = 3: an AAE's classes are the components of its mixture prior");
    assert_variant_refused((const char *[]){"gm.prior", "normal"}, 2, (st_tensor[]){good_means, good_stds}, 2,
                           "tensors prior.means and prior.stds belong to gm.prior \"mixture\"");
}

/* Image i of a sample reply with format=pixels: its pixels into px, its label returned. */
static int reply_image(json_t *j, size_t i, int D, float *px, const char *class_name) {
    json_t *img = json_array_get(json_object_get(j, "images"), i), *pixels = json_object_get(img, "pixels");
    assert_int_equal(json_array_size(pixels), D);
    for (int k = 0; k < D; k++) px[k] = (float)json_number_value(json_array_get(pixels, (size_t)k));
    if (class_name) assert_string_equal(json_string_value(json_object_get(img, "class")), class_name);
    return (int)json_integer_value(json_object_get(img, "label"));
}

static void test_daemon_mixture_sample(void **state) {
    const char *args[] = {"--model", "mix=tests/fixtures/aae_mixture.safetensors", NULL};
    daemon_t d = daemon_start("aaemix", args);
    gm_model *m = load_model("aae_mixture.safetensors");
    gm_st *st = load_ref("aae_mixture.safetensors");
    const float *means = ref_f32(st, "prior.means"), *stds = ref_f32(st, "prior.stds");
    enum { N = 6, D = 64 };
    float got[N * D], want[N * D];
    int labels[N];
    /* by name, one for all rows */
    json_t *j = http_json_expect(d.port, "/v1/models/mix/sample",
                                 "{\"n\": 6, \"seed\": 77, \"temperature\": 0.8, \"label\": \"up\", \"format\": "
                                 "\"pixels\"}",
                                 200);
    for (int i = 0; i < N; i++) labels[i] = reply_image(j, (size_t)i, D, got + i * D, "up");
    for (int i = 0; i < N; i++) assert_int_equal(labels[i], 2);
    mixture_expected(m, N, 77, 0.8f, labels, means, stds, true, want);
    assert_close_f("sample label=up", got, want, N * D, 1e-6);
    json_decref(j);
    /* without a label each row draws its component: the reply names it, and
     * the row is what it is alone (row 0 is n=1's row) */
    j = http_json_expect(d.port, "/v1/models/mix/sample", "{\"n\": 6, \"seed\": 5, \"format\": \"pixels\"}", 200);
    for (int i = 0; i < N; i++) {
        labels[i] = reply_image(j, (size_t)i, D, got + i * D, NULL);
        assert_in_range(labels[i], 0, 2);
    }
    bool mixed = false; /* seed 5's rows land in more than one component */
    for (int i = 1; i < N; i++) mixed |= labels[i] != labels[0];
    assert_true(mixed);
    mixture_expected(m, N, 5, 1.0f, labels, means, stds, true, want);
    assert_close_f("sample, drawn labels", got, want, N * D, 1e-6);
    json_decref(j);
    float one[D];
    j = http_json_expect(d.port, "/v1/models/mix/sample", "{\"n\": 1, \"seed\": 5, \"format\": \"pixels\"}", 200);
    assert_int_equal(reply_image(j, 0, D, one, NULL), labels[0]);
    assert_close_f("sample n=1 vs row 0 of n=6", one, got, D, 1e-6);
    json_decref(j);
    /* by index, as a GET */
    reply_t r = http_get(d.port, "/sample?model=mix&label=1&seed=9&format=pixels");
    j = expect_json(&r, 200, "GET sample label=1");
    assert_int_equal(reply_image(j, 0, D, got, "right"), 1);
    mixture_expected(m, 1, 9, 1.0f, (const int[]){1}, means, stds, true, want);
    assert_close_f("GET sample label=1", got, want, D, 1e-6);
    json_decref(j);
    reply_free(&r);
    /* a label out of range or no class's name: 422, as for a conditional GAN */
    r = http_json(d.port, "/v1/models/mix/sample", "{\"label\": 3}");
    assert_error(&r, 422, "label = 3 is out of range: 0 to 2", "sample label=3");
    r = http_json(d.port, "/v1/models/mix/sample", "{\"label\": \"down\"}");
    assert_error(&r, 422, "label \"down\" is neither a class name nor an index 0 to 2", "sample label=down");
    /* decode takes a latent alone: a label is refused, not ignored */
    r = http_json(d.port, "/v1/models/mix/decode", "{\"latents\": [[0.5, -1]], \"label\": 0}");
    assert_error(&r, 422, "are the components of its mixture prior", "decode with a label");
    j = http_json_expect(d.port, "/v1/models/mix/decode", "{\"latents\": [[0.5, -1]], \"format\": \"pixels\"}", 200);
    json_decref(j);
    j = http_json_expect(d.port, "/v2/models/mix/infer",
                         "{\"inputs\": [{\"name\": \"latents\", \"shape\": [1, 2], \"datatype\": \"FP32\", \"data\": "
                         "[0.5, -1]}]}",
                         200);
    json_decref(j);
    r = http_json(d.port, "/v2/models/mix/infer",
                  "{\"inputs\": [{\"name\": \"latents\", \"shape\": [1, 2], \"datatype\": \"FP32\", \"data\": [0.5, "
                  "-1]}, {\"name\": \"label\", \"shape\": [1], \"datatype\": \"INT64\", \"data\": [0]}]}");
    assert_int_equal(r.status, 400); /* the protocol's error shape: {"error": "message"} */
    assert_non_null(strstr((const char *)r.body, "input \\\"label\\\" is not taken by decode"));
    reply_free(&r);
    j = http_json_expect(d.port, "/v2/models/mix/infer",
                         "{\"inputs\": [{\"name\": \"n\", \"shape\": [1], \"datatype\": \"INT64\", \"data\": [2]}, "
                         "{\"name\": \"label\", \"shape\": [1], \"datatype\": \"INT64\", \"data\": [1]}], "
                         "\"outputs\": [{\"name\": \"label\"}]}",
                         200);
    char *v2labels = json_dumps(json_object_get(json_array_get(json_object_get(j, "outputs"), 0), "data"), 0);
    assert_string_equal(v2labels, "[1, 1]");
    free(v2labels);
    json_decref(j);
    /* encode: each code's component, class and posterior, recomputed from
     * the reply's own z; /v2 gives the same posterior as component_probs
     * [n, K]; /openapi.json lists every field of the reply */
    gm_st *ref = load_ref("aae_mixture.ref.safetensors");
    char *body = pixels_body(ref_f32(ref, "x"), 3, D);
    j = http_json_expect(d.port, "/v1/models/mix/encode", body, 200);
    json_t *results = json_object_get(j, "results");
    assert_int_equal(json_array_size(results), 3);
    float zs[3 * 2];
    double probs[3 * 3], want_p[3 * 3];
    for (size_t q = 0; q < 3; q++) {
        json_t *res = json_array_get(results, q), *zj = json_object_get(res, "z"),
               *pj = json_object_get(res, "component_probs");
        assert_int_equal(json_array_size(zj), 2);
        assert_int_equal(json_array_size(pj), 3);
        for (size_t k = 0; k < 2; k++) zs[q * 2 + k] = (float)json_number_value(json_array_get(zj, k));
        for (size_t k = 0; k < 3; k++) probs[q * 3 + k] = json_number_value(json_array_get(pj, k));
    }
    posterior_expected(3, 3, 2, zs, means, stds, true, want_p);
    for (size_t q = 0; q < 3; q++) {
        json_t *res = json_array_get(results, q);
        int best = 0;
        for (int k = 0; k < 3; k++) {
            assert_true(fabs(probs[q * 3 + k] - want_p[q * 3 + k]) < 1e-9); /* 10 significant digits */
            best = want_p[q * 3 + k] > want_p[q * 3 + best] ? k : best;
        }
        assert_int_equal(json_integer_value(json_object_get(res, "component")), best);
        assert_string_equal(json_string_value(json_object_get(res, "class")), gm_model_get_info(m)->class_names[best]);
    }
    r = http_get(d.port, "/openapi.json");
    json_t *api = expect_json(&r, 200, "GET /openapi.json");
    json_t *props = json_path(api, (const char *[]){"components", "schemas", "EncodeReply", "properties", "results",
                                                    "items", "properties", NULL});
    const char *key;
    json_t *val;
    json_object_foreach(json_array_get(results, 0), key, val) {
        if (!json_object_get(props, key)) print_error("EncodeReply lacks \"%s\"\n", key);
        assert_non_null(json_object_get(props, key));
    }
    json_decref(api);
    reply_free(&r);
    json_decref(j);
    free(body);
    char *v2body = v2_images_body(ref_f32(ref, "x"), 3, gm_model_get_info(m), "component_probs");
    j = http_json_expect(d.port, "/v2/models/mix/infer", v2body, 200);
    free(v2body);
    json_t *out = json_array_get(json_object_get(j, "outputs"), 0);
    assert_string_equal(json_string_value(json_object_get(out, "name")), "component_probs");
    assert_string_equal(json_string_value(json_object_get(out, "datatype")), "FP64");
    char *shape = json_dumps(json_object_get(out, "shape"), JSON_COMPACT);
    assert_string_equal(shape, "[3,3]");
    free(shape);
    json_t *data = json_object_get(out, "data");
    assert_int_equal(json_array_size(data), 9);
    for (size_t q = 0; q < 9; q++) assert_true(fabs(json_number_value(json_array_get(data, q)) - want_p[q]) < 1e-12);
    json_decref(j);
    gm_st_free(ref);
    /* /v1/models: the classes, and label among sample's parameters */
    r = http_get(d.port, "/v1/models/mix");
    j = expect_json(&r, 200, "GET /v1/models/mix");
    assert_int_equal(json_integer_value(json_object_get(j, "num_classes")), 3);
    char *names = json_dumps(json_object_get(j, "class_names"), JSON_COMPACT);
    assert_string_equal(names, "[\"left\",\"right\",\"up\"]");
    free(names);
    json_t *p;
    size_t i;
    bool takes_label = false;
    json_array_foreach(json_object_get(json_object_get(j, "parameters"), "sample"), i, p) takes_label |=
        !strcmp(json_string_value(p), "label");
    assert_true(takes_label);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "metadata"), "gm.prior")), "mixture");
    json_decref(j);
    reply_free(&r);
    gm_st_free(st);
    gm_model_free(m);
    assert_int_equal(daemon_stop(&d), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_with_pytorch),          cmocka_unit_test(test_alone_vs_batched),
        cmocka_unit_test(test_bad_metadata_is_refused),      cmocka_unit_test(test_mixture_sample_is_mean_plus_std_eps),
        cmocka_unit_test(test_bad_mixture_prior_is_refused), cmocka_unit_test(test_component_probs),
        cmocka_unit_test(test_daemon_mixture_sample),        cmocka_unit_test(test_daemon_reconstruct_and_logp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
