/*
 * test_model_files.c - hostile model files are refused at load, with a
 * message naming the file and the layer or tensor, instead of crashing the
 * daemon on its first request; `gmserve check` and the daemon apply the same
 * checks, including one forward pass of every operation.
 *
 * Each file is written here (safetensors header built with jansson, F32 or
 * F64 data), so no binary fixture is committed. Every hole below was
 * accepted by the loader before it was closed.
 */
#include <float.h>

#include "gm/layers.h"
#include "gm/model.h"
#include "testutil.h"

#include <jansson.h>

/* One tensor (stfile.h's st_tensor) of this shape, valued by the ramp
 * 0.01 (k mod 7 - 3). */
#define T(n, nd, ...)                                                                                                  \
    { .name = n, .ndim = nd, .shape = {__VA_ARGS__}, .ramp = true }

/* Writes a model file: metadata pairs (key, value, ..., NULL) and tensors.
 * Returns its path (a temporary file the caller unlinks; static buffer). */
static const char *write_model(const char *const *meta, const st_tensor *ts, int nt) {
    static char path[TEMP_PATH_LEN];
    int nmeta = 0;
    while (meta[nmeta]) nmeta++;
    return st_write_model(path, "mf", meta, nmeta, ts, nt);
}

/* The file must be refused with a message holding its path and each of
 * the fragments (up to 3; NULL ends the list). */
static void expect_refused(const char *const *meta, const st_tensor *ts, int nt, const char *f1, const char *f2,
                           const char *f3) {
    const char *path = write_model(meta, ts, nt);
    char err[GM_ERR_LEN] = "";
    gm_model *m = gm_model_load(path, err);
    unlink(path);
    const char *must[3] = {f1, f2, f3};
    bool ok = !m && strstr(err, path);
    for (int i = 0; i < 3 && must[i]; i++) ok = ok && strstr(err, must[i]);
    if (!ok) {
        print_error("expected a refusal naming \"%s\", \"%s\", \"%s\"; got %s: \"%s\"\n", f1, f2 ? f2 : "",
                    f3 ? f3 : "", m ? "success" : "error", err);
        gm_model_free(m);
        fail();
    }
}

#define N(a) (int)(sizeof(a) / sizeof((a)[0]))

/* conv2d on a 1x1 input padded to a 2048x2048 output (2^22 values, within
 * the activation limit) with a 64x64 kernel: im2col needs 2^22 * 4096 =
 * 2^34 values per sample. In int that wrapped to 0: the buffer was sized
 * for nothing and im2col wrote 64 GB past it (SIGSEGV on the first
 * request). */
static void test_conv2d_im2col_overflow(void **state) {
    const char *meta[] = {"gm.format",
                          "1",
                          "gm.family",
                          "gan",
                          "gm.image",
                          "1x1x1",
                          "gm.latent_dim",
                          "1",
                          "gm.generator",
                          "[{\"op\":\"reshape\",\"shape\":[1,1,1]},"
                          "{\"op\":\"conv2d\",\"weight\":\"k64\",\"padding\":1055},"
                          "{\"op\":\"conv2d\",\"weight\":\"k1\",\"stride\":4096}]",
                          NULL};
    st_tensor ts[] = {T("k64", 4, 1, 1, 64, 64), T("k1", 4, 1, 1, 1, 1)};
    expect_refused(meta, ts, N(ts), "gm.generator layer 1 (conv2d)", "im2col", "17179869184");
}

/* reshape to [2761926, 1764119, 3785993]: every dim is allowed, and the
 * product is 2^64 + 26, which wrapped to exactly the input's 26 values, so
 * the chain checked out; a later layer dividing by the wrapped sizes died
 * of SIGFPE. */
static void test_reshape_dims_overflow(void **state) {
    const char *meta[] = {"gm.format",
                          "1",
                          "gm.family",
                          "gan",
                          "gm.image",
                          "2x13x1",
                          "gm.latent_dim",
                          "26",
                          "gm.generator",
                          "[{\"op\":\"reshape\",\"shape\":[2761926,1764119,3785993]},{\"op\":\"flatten\"}]",
                          NULL};
    expect_refused(meta, NULL, 0, "gm.generator layer 0 (reshape)", "[2761926,1764119,3785993]", "per sample");
}

/* A layer whose output has more values per sample than the documented
 * limit (2049 x 2049 > 2^22) is refused: a batch of it would need
 * unbounded memory. */
static void test_activation_limit(void **state) {
    const char *meta[] = {"gm.format",
                          "1",
                          "gm.family",
                          "gan",
                          "gm.image",
                          "1x1x1",
                          "gm.latent_dim",
                          "4",
                          "gm.generator",
                          "[{\"op\":\"reshape\",\"shape\":[1,2,2]},"
                          "{\"op\":\"conv_transpose2d\",\"weight\":\"k1\",\"stride\":2048},"
                          "{\"op\":\"conv2d\",\"weight\":\"k1\",\"stride\":4096}]",
                          NULL};
    st_tensor ts[] = {T("k1", 4, 1, 1, 1, 1)};
    char limit[32];
    snprintf(limit, sizeof limit, "at most %d values", GM_NET_MAX_VALUES);
    expect_refused(meta, ts, N(ts), "gm.generator layer 1 (conv_transpose2d)", "2049x2049", limit);
}

static const char *const VAE_META[] = {"gm.format",
                                       "1",
                                       "gm.family",
                                       "vae",
                                       "gm.image",
                                       "2x2x1",
                                       "gm.latent_dim",
                                       "1",
                                       "gm.encoder",
                                       "[{\"op\":\"linear\",\"weight\":\"enc.w\",\"bias\":\"enc.b\"}]",
                                       "gm.decoder",
                                       "[{\"op\":\"linear\",\"weight\":\"dec.w\"},{\"op\":\"leaky_relu\"}]",
                                       NULL};

/* NaN and infinite weights (F32, and an F64 beyond float range, whose
 * conversion to float was undefined) are refused naming the tensor; before,
 * the sanitizer build aborted in gm_expf on the first request. */
static void test_nonfinite_weights(void **state) {
    st_tensor ts[] = {T("enc.w", 2, 2, 4), T("enc.b", 1, 2), T("dec.w", 2, 4, 1)};
    ts[0].poisoned = true, ts[0].poison_at = 5, ts[0].poison = NAN;
    expect_refused(VAE_META, ts, N(ts), "gm.encoder layer 0 (linear)", "'enc.w'", "nan at flat index 5");
    ts[0].poisoned = false;
    ts[1].poisoned = true, ts[1].poison_at = 1, ts[1].poison = -INFINITY;
    expect_refused(VAE_META, ts, N(ts), "gm.encoder layer 0 (linear)", "'enc.b'", "-inf at flat index 1");
    ts[1].poisoned = false;
    ts[2].f64 = true, ts[2].poisoned = true, ts[2].poison_at = 2, ts[2].poison = 1e300;
    expect_refused(VAE_META, ts, N(ts), "gm.decoder layer 0 (linear)", "'dec.w'", "inf at flat index 2");
    /* and the same file without poison loads */
    ts[2].poisoned = false;
    const char *path = write_model(VAE_META, ts, N(ts));
    char err[GM_ERR_LEN] = "";
    gm_model *m = gm_model_load(path, err);
    unlink(path);
    if (!m) print_error("%s\n", err);
    assert_non_null(m);
    gm_model_free(m);
}

static void test_nade_nonfinite(void **state) {
    const char *meta[] = {"gm.format", "1", "gm.family", "nade", "gm.image", "2x2x1", NULL};
    st_tensor ts[] = {T("W", 2, 3, 4), T("c", 1, 3), T("V", 2, 4, 3), T("b", 1, 4)};
    ts[2].poisoned = true, ts[2].poison_at = 7, ts[2].poison = NAN;
    expect_refused(meta, ts, N(ts), "NADE tensor 'V'", "nan at flat index 7", NULL);
}

/* Field values and batch_norm folding must stay within float range: a slope
 * of 1e300 or a batch_norm scale of 1e45 has no float (the conversion was
 * undefined behaviour), and folding a large scale into large weights
 * overflows them to infinity. */
static void test_float_range_fields(void **state) {
    const char *slope[] = {"gm.format",
                           "1",
                           "gm.family",
                           "gan",
                           "gm.image",
                           "1x1x1",
                           "gm.latent_dim",
                           "1",
                           "gm.generator",
                           "[{\"op\":\"leaky_relu\",\"slope\":1e300}]",
                           NULL};
    expect_refused(slope, NULL, 0, "gm.generator layer 0 (leaky_relu)", "\"slope\"", "float range");
    const char *bn[] = {"gm.format",
                        "1",
                        "gm.family",
                        "gan",
                        "gm.image",
                        "1x1x1",
                        "gm.latent_dim",
                        "1",
                        "gm.generator",
                        "[{\"op\":\"relu\"},{\"op\":\"batch_norm\",\"weight\":\"g\",\"mean\":\"m\",\"var\":\"v\","
                        "\"eps\":0}]",
                        NULL};
    const float g = 1e30f, mean = 0, var = 1e-30f, w = 1e30f, s10 = 1e10f, one = 1;
    st_tensor tbn[] = {{.name = "g", .ndim = 1, .shape = {1}, .values = &g},
                       {.name = "m", .ndim = 1, .shape = {1}, .values = &mean},
                       {.name = "v", .ndim = 1, .shape = {1}, .values = &var}};
    expect_refused(bn, tbn, N(tbn), "gm.generator layer 1 (batch_norm)", "'v'", "beyond float range");
    const char *fold[] = {
        "gm.format",
        "1",
        "gm.family",
        "gan",
        "gm.image",
        "1x1x1",
        "gm.latent_dim",
        "1",
        "gm.generator",
        "[{\"op\":\"linear\",\"weight\":\"w\"},{\"op\":\"batch_norm\",\"weight\":\"g\",\"mean\":\"m\","
        "\"var\":\"v\"}]",
        NULL};
    st_tensor tf[] = {{.name = "w", .ndim = 2, .shape = {1, 1}, .values = &w},
                      {.name = "g", .ndim = 1, .shape = {1}, .values = &s10},
                      {.name = "m", .ndim = 1, .shape = {1}, .values = &mean},
                      {.name = "v", .ndim = 1, .shape = {1}, .values = &one}};
    expect_refused(fold, tf, N(tf), "gm.generator layer 1 (batch_norm)", "folded into the layer before",
                   "beyond float range");
}

/* Finite weights can still overflow inside the network: whatever z, layer 0
 * gives 3e38 (its bias), layer 1 multiplies that by 3e38 and -3e38 (inf and
 * -inf) and layer 2 adds them: NaN pixels. The load-time self-test runs
 * sample on two rows and refuses the file, naming the operation. */
static const float ZERO = 0, BIG = 3e38f, PM[2] = {3e38f, -3e38f}, ONES[2] = {1, 1};

static void test_selftest_catches_overflow(void **state) {
    const char *meta[] = {"gm.format",
                          "1",
                          "gm.family",
                          "gan",
                          "gm.image",
                          "1x1x1",
                          "gm.latent_dim",
                          "1",
                          "gm.generator",
                          "[{\"op\":\"linear\",\"weight\":\"w0\",\"bias\":\"b0\"},"
                          "{\"op\":\"linear\",\"weight\":\"w1\"},{\"op\":\"linear\",\"weight\":\"w2\"}]",
                          NULL};
    st_tensor ts[] = {{.name = "w0", .ndim = 2, .shape = {1, 1}, .values = &ZERO},
                      {.name = "b0", .ndim = 1, .shape = {1}, .values = &BIG},
                      {.name = "w1", .ndim = 2, .shape = {2, 1}, .values = PM},
                      {.name = "w2", .ndim = 2, .shape = {1, 2}, .values = ONES}};
    expect_refused(meta, ts, N(ts), "self-test: sample of 2 rows", "nan", "float range");
}

/* A batch larger than one pass (GM_NET_PASS_VALUES activation values) is
 * split, and every row still equals x * w + b computed here in double. */
static void test_forward_splits_large_batch(void **state) {
    enum { OUT = 1 << 20, B = GM_NET_PASS_VALUES / OUT + 1 }; /* the last row is a pass of its own */
    st_tensor ts[] = {T("w", 2, OUT, 1), T("b", 1, OUT)};
    const char *meta[] = {"k", "v", NULL};
    const char *path = write_model(meta, ts, N(ts));
    char err[GM_ERR_LEN];
    gm_st *st = gm_st_load(path, err);
    unlink(path);
    assert_non_null(st);
    gm_net *net = gm_net_build(st, "net", "[{\"op\":\"linear\",\"weight\":\"w\",\"bias\":\"b\"}]", gm_shape1(1), err);
    assert_non_null(net);
    float x[B], *y = malloc((size_t)B * OUT * sizeof *y);
    for (int r = 0; r < B; r++) x[r] = 0.5f + r;
    assert_int_equal(gm_net_forward(net, B, x, y), 0);
    const float *w = gm_st_tensor(st, "w")->f32, *b = gm_st_tensor(st, "b")->f32;
    for (int r = 0; r < B; r++)
        for (int o = 0; o < OUT; o += 4099) {
            double want = (double)x[r] * w[o] + b[o];
            if (!(fabs(y[(size_t)r * OUT + o] - want) <= 1e-6 * fmax(1.0, fabs(want)))) {
                print_error("row %d output %d: got %.9g want %.9g\n", r, o, y[(size_t)r * OUT + o], want);
                fail();
            }
        }
    free(y);
    gm_net_free(net);
    gm_st_free(st);
}

/* A layer list may name one small tensor in every layer: the cost is
 * bounded per net, not by the file's size. 3x3 convolutions of 64 channels
 * on 64x64 pixels cost 4096 * 576 * 64 multiply-adds per sample each; the
 * layer that takes the sum past GM_NET_MAX_MACS is refused. */
static void test_compute_limit(void **state) {
    char list[16384] = "[{\"op\":\"conv2d\",\"weight\":\"c0\",\"padding\":1}";
    for (int i = 1; i < 80; i++) strcat(list, ",{\"op\":\"conv2d\",\"weight\":\"c\",\"padding\":1}");
    strcat(list, "]");
    long long sum = 4096LL * 4 * 9 * 64;
    int over = 1;
    while ((sum += 4096LL * 64 * 9 * 64) <= GM_NET_MAX_MACS) over++;
    char where[64];
    snprintf(where, sizeof where, "gm.discriminator layer %d (conv2d)", over);
    const char *meta[] = {"gm.format",
                          "1",
                          "gm.family",
                          "gan",
                          "gm.image",
                          "64x64x4",
                          "gm.latent_dim",
                          "1",
                          "gm.generator",
                          "[{\"op\":\"linear\",\"weight\":\"g\"}]",
                          "gm.discriminator",
                          list,
                          NULL};
    st_tensor ts[] = {T("g", 2, 16384, 1), T("c0", 4, 64, 4, 3, 3), T("c", 4, 64, 64, 3, 3)};
    expect_refused(meta, ts, N(ts), where, "multiply-adds", NULL);
}

/* The same for the weights every layer copies: 65 linear layers naming one
 * 1024x1024 tensor hold 2^26 + 2^20 values, over GM_NET_MAX_WEIGHTS (2^26):
 * layer 64 is refused. */
static void test_weight_limit(void **state) {
    char list[8192] = "[";
    for (int i = 0; i < 65; i++)
        strcat(list, i ? ",{\"op\":\"linear\",\"weight\":\"w\"}" : "{\"op\":\"linear\",\"weight\":\"w\"}");
    strcat(list, "]");
    const char *meta[] = {"gm.format",     "1",    "gm.family",    "gan", "gm.image", "32x32x1",
                          "gm.latent_dim", "1024", "gm.generator", list,  NULL};
    st_tensor ts[] = {T("w", 2, 1024, 1024)};
    assert_int_equal(GM_NET_MAX_WEIGHTS, 1 << 26);
    expect_refused(meta, ts, N(ts), "gm.generator layer 64 (linear)", "weight values", NULL);
}

/* Guards, not holes: the header and metadata text is checked by jansson
 * (valid UTF-8 without NUL or lone surrogates, nesting depth), so nothing
 * that /v1/models echoes can be invalid; layer lists too. */
static void test_text_guards(void **state) {
    static const char *const HEADERS[] = {
        "{\"__metadata__\":{\"gm.description\":\"\\ud800\"}}",
        "{\"__metadata__\":{\"gm.description\":\"\xc0\xaf\"}}",
        "{\"__metadata__\":{\"gm.description\":\"a\\u0000b\"}}",
    };
    for (int i = 0; i < 3; i++) {
        size_t len;
        uint8_t *buf = st_build(HEADERS[i], NULL, 0, &len);
        char err[GM_ERR_LEN] = "";
        gm_st *st = gm_st_parse("text.safetensors", buf, len, err);
        free(buf);
        if (st || !strstr(err, "not valid UTF-8 JSON")) {
            print_error("header %d: %s \"%s\"\n", i, st ? "accepted" : "refused with", err);
            gm_st_free(st);
            fail();
        }
    }
    char *deep = malloc(200002);
    memset(deep, '[', 200000);
    strcpy(deep + 200000, "]");
    const char *meta[] = {"gm.format",     "1", "gm.family",    "gan", "gm.image", "1x1x1",
                          "gm.latent_dim", "1", "gm.generator", deep,  NULL};
    expect_refused(meta, NULL, 0, "gm.generator", "not a valid JSON layer list", "depth");
    free(deep);
}

/* `gmserve check` says which operations it ran; it refuses a hostile file
 * with the loader's message and exit status 1, and so does the daemon at
 * start-up (the same load). */
static void test_check_and_daemon(void **state) {
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "%s check %s 2>&1", gmserve_bin(), fixture("vae_mlp.safetensors"));
    int rc = run_command(cmd, out, sizeof out);
    if (rc != 0 || !strstr(out, "self-test ran sample, logp, encode, decode on 2 rows") || !strstr(out, "finite")) {
        print_error("check on a good file: rc %d, output: %s\n", rc, out);
        fail();
    }
    st_tensor ts[] = {T("enc.w", 2, 2, 4), T("enc.b", 1, 2), T("dec.w", 2, 4, 1)};
    ts[0].poisoned = true, ts[0].poison_at = 0, ts[0].poison = NAN;
    const char *path = write_model(VAE_META, ts, N(ts));
    snprintf(cmd, sizeof cmd, "%s check %s 2>&1", gmserve_bin(), path);
    rc = run_command(cmd, out, sizeof out);
    if (rc != 1 || !strstr(out, path) || !strstr(out, "'enc.w'")) {
        print_error("check on a NaN file: rc %d, output: %s\n", rc, out);
        fail();
    }
    char config[TEMP_PATH_LEN];
    temp_file(config, "mf_config", "{}\n", 3); /* empty: only the flags apply */
    snprintf(cmd, sizeof cmd, "%s --config %s --listen 127.0.0.1:0 --model bad=%s 2>&1", gmserve_bin(), config, path);
    rc = run_command(cmd, out, sizeof out);
    unlink(config);
    unlink(path);
    if (rc == 0 || !strstr(out, "'enc.w'")) {
        print_error("daemon with a NaN file: rc %d, output: %s\n", rc, out);
        fail();
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d_im2col_overflow),
        cmocka_unit_test(test_reshape_dims_overflow),
        cmocka_unit_test(test_activation_limit),
        cmocka_unit_test(test_nonfinite_weights),
        cmocka_unit_test(test_nade_nonfinite),
        cmocka_unit_test(test_float_range_fields),
        cmocka_unit_test(test_selftest_catches_overflow),
        cmocka_unit_test(test_compute_limit),
        cmocka_unit_test(test_weight_limit),
        cmocka_unit_test(test_text_guards),
        cmocka_unit_test(test_forward_splits_large_batch),
        cmocka_unit_test(test_check_and_daemon),
    };
    return cmocka_run_group_tests_name("model_files", tests, NULL, NULL);
}
