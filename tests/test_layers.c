/*
 * test_layers.c - the layer interpreter's build-time rewrites keep the math.
 *
 * gm_net_build folds a batch_norm into the linear before it and fuses an
 * activation into the linear before it. Each chain below is run by
 * gm_net_forward and, independently, layer by layer in float64 as docs/model-format.md
 * defines it, including orders where nothing may be folded (a batch_norm
 * after an activation; a second activation), at batch 1 (the
 * matrix-vector path, dense and sparse inputs) and batch 7.
 *
 * conv_transpose2d (computed as sgemm + an output-side col2im) is checked
 * against its float64 definition, every input pixel scattering its kernel,
 * over strides 1-3, paddings 0-2, output padding and non-square kernels.
 */
#include "gm/layers.h"
#include "testutil.h"

enum { IN = 4, OUT = 3, BATCH = 7 };

/* w [3, 4], then 3-vectors: bias, BN mean, var, gamma, beta */
static const float W[OUT * IN] = {0.5f, -1.2f, 0.3f, 2.0f, -0.7f, 0.1f, 1.5f, -0.4f, 0.9f, 0.8f, -2.1f, 0.25f};
static const float BIAS[OUT] = {0.3f, -0.6f, 0.05f}, MEAN[OUT] = {0.2f, -0.1f, 0.4f};
static const float VAR[OUT] = {0.5f, 2.0f, 1.3f}, GAMMA[OUT] = {1.5f, -0.8f, 0.6f}, BETA[OUT] = {-0.2f, 0.4f, 1.1f};
#define EPS 1e-5

static gm_st *tensors(void) {
    float data[OUT * IN + 5 * OUT];
    memcpy(data, W, sizeof W);
    const float *vecs[5] = {BIAS, MEAN, VAR, GAMMA, BETA};
    for (int v = 0; v < 5; v++) memcpy(data + OUT * IN + v * OUT, vecs[v], OUT * sizeof(float));
    char header[1024];
    int at = snprintf(header, sizeof header, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]}");
    const char *names[5] = {"bias", "mean", "var", "gamma", "beta"};
    for (int v = 0; v < 5; v++)
        at += snprintf(header + at, sizeof header - at,
                       ",\"%s\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[%d,%d]}", names[v], 48 + 12 * v,
                       60 + 12 * v);
    snprintf(header + at, sizeof header - at, "}");
    size_t len;
    uint8_t *buf = st_build(header, data, sizeof data, &len);
    char err[GM_ERR_LEN];
    gm_st *st = gm_st_parse("layers.safetensors", buf, len, err);
    free(buf);
    assert_non_null(st);
    return st;
}

#define LINEAR "{\"op\":\"linear\",\"weight\":\"w\",\"bias\":\"bias\"}"
#define BN "{\"op\":\"batch_norm\",\"mean\":\"mean\",\"var\":\"var\",\"weight\":\"gamma\",\"bias\":\"beta\"}"

typedef enum { L_LINEAR, L_BN, L_RELU, L_LEAKY, L_SIGMOID, L_TANH } ref_op;

/* The chain in float64, one layer at a time. */
static void reference(const ref_op *ops, int n, const float *x, double *y) {
    double v[IN];
    int size = IN;
    for (int i = 0; i < IN; i++) v[i] = x[i];
    for (int k = 0; k < n; k++) {
        double t[IN];
        for (int o = 0; o < size; o++) t[o] = v[o];
        switch (ops[k]) {
        case L_LINEAR:
            for (int o = 0; o < OUT; o++) {
                t[o] = BIAS[o];
                for (int i = 0; i < IN; i++) t[o] += (double)W[o * IN + i] * v[i];
            }
            size = OUT;
            break;
        case L_BN:
            for (int o = 0; o < OUT; o++) t[o] = (v[o] - MEAN[o]) / sqrt(VAR[o] + EPS) * GAMMA[o] + BETA[o];
            break;
        case L_RELU:
            for (int o = 0; o < size; o++) t[o] = v[o] > 0 ? v[o] : 0;
            break;
        case L_LEAKY:
            for (int o = 0; o < size; o++) t[o] = v[o] > 0 ? v[o] : 0.1 * v[o];
            break;
        case L_SIGMOID:
            for (int o = 0; o < size; o++) t[o] = 1 / (1 + exp(-v[o]));
            break;
        case L_TANH:
            for (int o = 0; o < size; o++) t[o] = tanh(v[o]);
            break;
        }
        for (int o = 0; o < size; o++) v[o] = t[o];
    }
    for (int o = 0; o < OUT; o++) y[o] = v[o];
}

static void check_chain(const char *json, const ref_op *ops, int n, int layers_left) {
    gm_st *st = tensors();
    char err[GM_ERR_LEN];
    gm_net *net = gm_net_build(st, "gm.decoder", json, gm_shape1(IN), err);
    if (!net) print_error("%s: %s\n", json, err);
    assert_non_null(net);
    assert_int_equal(gm_net_layers(net), layers_left);
    float x[BATCH * IN], got[BATCH * OUT], want[BATCH * OUT];
    /* dense inputs, then mostly zero ones (one sample's linear then reads
     * only the weight rows of its nonzero inputs) */
    for (int sparse = 0; sparse <= 1; sparse++) {
        for (int i = 0; i < BATCH * IN; i++)
            x[i] = sparse && i % IN != 1 ? 0.0f : (float)(((i * 37) % 17) - 8) * 0.3f + 0.1f;
        for (int b = 0; b < BATCH; b++) {
            double y[OUT];
            reference(ops, n, x + b * IN, y);
            for (int o = 0; o < OUT; o++) want[b * OUT + o] = (float)y[o];
        }
        for (int B = 1; B <= BATCH; B += BATCH - 1) {
            assert_int_equal(gm_net_forward(net, B, x, got), 0);
            assert_close_f(json, got, want, (size_t)B * OUT, 1e-6);
        }
    }
    gm_net_free(net);
    gm_st_free(st);
}

static void test_batch_norm_and_activation_fold(void **state) {
    const ref_op ops[] = {L_LINEAR, L_BN, L_LEAKY};
    check_chain("[" LINEAR "," BN ",{\"op\":\"leaky_relu\",\"slope\":0.1}]", ops, 3, 1);
}

static void test_batch_norm_after_activation_stays(void **state) {
    const ref_op ops[] = {L_LINEAR, L_RELU, L_BN};
    check_chain("[" LINEAR ",{\"op\":\"relu\"}," BN "]", ops, 3, 2);
}

static void test_second_activation_stays(void **state) {
    const ref_op ops[] = {L_LINEAR, L_SIGMOID, L_TANH};
    check_chain("[" LINEAR ",{\"op\":\"sigmoid\"},{\"op\":\"tanh\"}]", ops, 3, 2);
}

/* One conv_transpose2d case: Ci -> Co channels, kernel kh x kw. */
typedef struct {
    int ci, co, kh, kw, stride, pad, out_pad, h, w;
} convt_case;

static void check_conv_transpose(convt_case k) {
    int nw = k.ci * k.co * k.kh * k.kw, B = 3;
    int ho = (k.h - 1) * k.stride - 2 * k.pad + k.kh + k.out_pad,
        wo = (k.w - 1) * k.stride - 2 * k.pad + k.kw + k.out_pad;
    float *data = malloc((size_t)(nw + k.co) * sizeof(float));
    for (int i = 0; i < nw + k.co; i++) data[i] = (float)(((i * 53) % 29) - 14) * 0.07f;
    char header[512], json[256];
    snprintf(header, sizeof header,
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[%d,%d,%d,%d],\"data_offsets\":[0,%d]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%d,%d]}}",
             k.ci, k.co, k.kh, k.kw, 4 * nw, k.co, 4 * nw, 4 * (nw + k.co));
    snprintf(json, sizeof json,
             "[{\"op\":\"conv_transpose2d\",\"weight\":\"w\",\"bias\":\"b\",\"stride\":%d,\"padding\":%d,"
             "\"output_padding\":%d}]",
             k.stride, k.pad, k.out_pad);
    size_t len;
    uint8_t *buf = st_build(header, data, (size_t)(nw + k.co) * sizeof(float), &len);
    char err[GM_ERR_LEN];
    gm_st *st = gm_st_parse("convt.safetensors", buf, len, err);
    assert_non_null(st);
    gm_net *net = gm_net_build(st, "gm.generator", json, gm_shape3(k.ci, k.h, k.w), err);
    if (!net) print_error("%s\n", err);
    assert_non_null(net);
    size_t nin = (size_t)k.ci * k.h * k.w, nout = (size_t)k.co * ho * wo;
    float *x = malloc(B * nin * sizeof(float)), *got = malloc(B * nout * sizeof(float));
    float *want = malloc(B * nout * sizeof(float));
    double *ref = malloc(nout * sizeof(double));
    for (size_t i = 0; i < B * nin; i++) x[i] = (float)((int)(i * 31 % 23) - 11) * 0.1f;
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < k.co; c++)
            for (int p = 0; p < ho * wo; p++) ref[(size_t)c * ho * wo + p] = data[nw + c];
        for (int ci = 0; ci < k.ci; ci++)
            for (int iy = 0; iy < k.h; iy++)
                for (int ix = 0; ix < k.w; ix++)
                    for (int c = 0; c < k.co; c++)
                        for (int ky = 0; ky < k.kh; ky++)
                            for (int kx = 0; kx < k.kw; kx++) {
                                int oy = iy * k.stride - k.pad + ky, ox = ix * k.stride - k.pad + kx;
                                if (oy < 0 || oy >= ho || ox < 0 || ox >= wo) continue;
                                ref[((size_t)c * ho + oy) * wo + ox] +=
                                    (double)x[b * nin + ((size_t)ci * k.h + iy) * k.w + ix] *
                                    data[(((size_t)ci * k.co + c) * k.kh + ky) * k.kw + kx];
                            }
        for (size_t i = 0; i < nout; i++) want[b * nout + i] = (float)ref[i];
    }
    assert_int_equal(gm_net_forward(net, B, x, got), 0);
    assert_close_f(json, got, want, B * nout, 1e-5);
    free(data), free(buf), free(x), free(got), free(want), free(ref);
    gm_net_free(net);
    gm_st_free(st);
}

static void test_conv_transpose_matches_definition(void **state) {
    const convt_case cases[] = {
        {3, 2, 4, 4, 2, 1, 0, 5, 6}, {2, 3, 3, 3, 2, 1, 1, 4, 4}, {2, 2, 3, 2, 1, 0, 0, 3, 5},
        {1, 2, 5, 3, 3, 2, 2, 4, 3}, {2, 1, 2, 2, 2, 0, 1, 1, 1}, {4, 3, 1, 1, 2, 0, 0, 3, 3},
        {2, 2, 3, 3, 1, 2, 0, 4, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_conv_transpose(cases[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_norm_and_activation_fold),
        cmocka_unit_test(test_batch_norm_after_activation_stays),
        cmocka_unit_test(test_second_activation_stays),
        cmocka_unit_test(test_conv_transpose_matches_definition),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
