/*
 * test_layers.c - the layer interpreter's build-time rewrites keep the math.
 *
 * gm_net_build folds a batch_norm into the linear before it and fuses an
 * activation into the linear before it. Each chain below is run by
 * gm_net_forward and, independently, layer by layer in float64 as SPEC §1.4
 * defines it, including orders where nothing may be folded (a batch_norm
 * after an activation; a second activation), at batch 1 (the
 * matrix-vector path) and batch 7.
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
    for (int i = 0; i < BATCH * IN; i++) x[i] = (float)(((i * 37) % 17) - 8) * 0.3f;
    for (int b = 0; b < BATCH; b++) {
        double y[OUT];
        reference(ops, n, x + b * IN, y);
        for (int o = 0; o < OUT; o++) want[b * OUT + o] = (float)y[o];
    }
    for (int B = 1; B <= BATCH; B += BATCH - 1) {
        assert_int_equal(gm_net_forward(net, B, x, got), 0);
        assert_close_f(json, got, want, (size_t)B * OUT, 1e-6);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_norm_and_activation_fold),
        cmocka_unit_test(test_batch_norm_after_activation_stays),
        cmocka_unit_test(test_second_activation_stays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
