/*
 * test_rejection.c - malformed layer lists and model metadata are refused
 * with a message naming the file, the layer index, the tensor and both
 * shapes; nothing crashes. (Malformed safetensors containers are covered in
 * test_safetensors.c.)
 */
#include "gm/layers.h"
#include "gm/model.h"
#include "testutil.h"

/* w34: F32 [3, 4]; b3: F32 [3]; c4: F32 [4, 2, 3, 3]; i2: I64 [2] */
#define TENSORS                                                                                                        \
    "\"w34\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]},"                                             \
    "\"b3\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]},"                                               \
    "\"c4\":{\"dtype\":\"F32\",\"shape\":[4,2,3,3],\"data_offsets\":[60,348]},"                                        \
    "\"i2\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[348,364]}"
#define DATA_LEN 364

static gm_st *tensors(void) {
    static uint8_t zeros[DATA_LEN];
    size_t len;
    uint8_t *buf = st_build("{" TENSORS "}", zeros, DATA_LEN, &len);
    char err[GM_ERR_LEN];
    gm_st *st = gm_st_parse("chain.safetensors", buf, len, err);
    free(buf);
    assert_non_null(st);
    return st;
}

typedef struct {
    const char *json;
    gm_shape in;
    const char *must[4]; /* fragments the message must contain */
} chain_case;

static void test_layer_chain_mismatches(void **state) {
    const chain_case cases[] = {
        {"[{\"op\":\"linear\",\"weight\":\"w34\"}]", {1, {5}}, {"layer 0 (linear)", "'w34'", "[3, 4]", "[5]"}},
        {"[{\"op\":\"relu\"},{\"op\":\"linear\",\"weight\":\"w34\",\"bias\":\"c4\"}]",
         {1, {4}},
         {"layer 1 (linear)", "'c4'", "[4, 2, 3, 3]", "[3]"}},
        {"[{\"op\":\"conv2d\",\"weight\":\"c4\"}]", {1, {18}}, {"layer 0 (conv2d)", "[18]", "[C, H, W]"}},
        {"[{\"op\":\"relu\"},{\"op\":\"conv2d\",\"weight\":\"c4\"}]",
         {3, {3, 5, 5}},
         {"layer 1 (conv2d)", "'c4'", "[4, 2, 3, 3]", "[3, 5, 5]"}},
        {"[{\"op\":\"conv2d\",\"weight\":\"c4\"}]", {3, {2, 2, 2}}, {"layer 0 (conv2d)", "kernel 3x3", "[2, 2, 2]"}},
        {"[{\"op\":\"conv_transpose2d\",\"weight\":\"c4\",\"stride\":2,\"output_padding\":2}]",
         {3, {4, 3, 3}},
         {"layer 0 (conv_transpose2d)", "output_padding 2", "stride 2"}},
        {"[{\"op\":\"conv_transpose2d\",\"weight\":\"c4\"}]",
         {3, {2, 3, 3}},
         {"layer 0 (conv_transpose2d)", "'c4'", "[4, 2, 3, 3]", "[2, 3, 3]"}},
        {"[{\"op\":\"batch_norm\",\"mean\":\"b3\",\"var\":\"b3\"}]", {1, {4}}, {"layer 0 (batch_norm)", "'b3'", "[4]"}},
        {"[{\"op\":\"reshape\",\"shape\":[2,3,3]}]", {1, {17}}, {"layer 0 (reshape)", "[17]", "[2, 3, 3]"}},
        {"[{\"op\":\"dense\"}]", {1, {4}}, {"layer 0 (dense)", "unknown op"}},
        {"[{\"op\":\"linear\",\"weight\":\"nope\"}]", {1, {4}}, {"layer 0 (linear)", "'nope'", "not in the file"}},
        {"[{\"op\":\"linear\",\"weight\":\"i2\"}]", {1, {4}}, {"layer 0 (linear)", "'i2'", "I64"}},
        {"[{\"op\":\"linear\"}]", {1, {4}}, {"layer 0 (linear)", "\"weight\"", "missing"}},
        {"[{\"op\":\"conv2d\",\"weight\":\"c4\",\"stride\":0}]", {3, {2, 5, 5}}, {"\"stride\"", "integer"}},
        {"[{\"op\":\"leaky_relu\",\"slope\":\"x\"}]", {1, {4}}, {"\"slope\"", "number"}},
        {"[7]", {1, {4}}, {"layer 0", "\"op\""}},
        {"{\"op\":\"relu\"}", {1, {4}}, {"must be a JSON array"}},
        {"[{\"op\":\"relu\"}", {1, {4}}, {"not a valid JSON layer list"}},
    };
    gm_st *st = tensors();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[GM_ERR_LEN] = "";
        gm_net *net = gm_net_build(st, "gm.decoder", cases[i].json, cases[i].in, err);
        int ok = !net && strstr(err, "chain.safetensors") && strstr(err, "gm.decoder");
        for (int k = 0; k < 4 && cases[i].must[k]; k++) ok = ok && strstr(err, cases[i].must[k]);
        if (!ok) {
            print_error("case %zu %s: expected a refusal naming %s..., got %s: \"%s\"\n", i, cases[i].json,
                        cases[i].must[0], net ? "success" : "error", err);
            gm_net_free(net);
            fail();
        }
    }
    /* and a valid chain builds, folding the batch_norm into the linear */
    char err[GM_ERR_LEN];
    gm_net *net = gm_net_build(st, "gm.decoder",
                               "[{\"op\":\"linear\",\"weight\":\"w34\",\"bias\":\"b3\"},"
                               "{\"op\":\"batch_norm\",\"mean\":\"b3\",\"var\":\"b3\",\"weight\":\"b3\"},"
                               "{\"op\":\"reshape\",\"shape\":[3,1,1]},{\"op\":\"flatten\"},{\"op\":\"tanh\"}]",
                               gm_shape1(4), err);
    assert_non_null(net);
    assert_int_equal(gm_net_layers(net), 4);
    assert_int_equal(gm_shape_size(gm_net_out_shape(net)), 3);
    gm_net_free(net);
    gm_st_free(st);
}

/* Writes a model file with metadata `meta` (JSON object text) over the
 * TENSORS above and tries to load it. */
static void expect_model_refused(const char *meta, const char *must1, const char *must2) {
    static uint8_t zeros[DATA_LEN];
    char header[4096];
    snprintf(header, sizeof header, "{\"__metadata__\":%s," TENSORS "}", meta);
    char path[TEMP_PATH_LEN];
    st_write(path, "model", header, zeros, DATA_LEN);
    char err[GM_ERR_LEN] = "";
    gm_model *m = gm_model_load(path, err);
    unlink(path);
    if (m || !strstr(err, path) || !strstr(err, must1) || (must2 && !strstr(err, must2))) {
        print_error("metadata %s: expected a refusal naming \"%s\", got %s: \"%s\"\n", meta, must1,
                    m ? "success" : "error", err);
        gm_model_free(m);
        fail();
    }
}

static void test_model_metadata_refused(void **state) {
    expect_model_refused("{}", "gm.format", NULL);
    expect_model_refused("{\"gm.format\":\"1\",\"gm.family\":\"flow\"}", "gm.family", "flow");
    expect_model_refused("{\"gm.format\":\"1\",\"gm.family\":\"nade\"}", "gm.image", "required");
    expect_model_refused("{\"gm.format\":\"1\",\"gm.family\":\"nade\",\"gm.image\":\"28x28\"}", "gm.image", "HxWxC");
    expect_model_refused("{\"gm.format\":\"1\",\"gm.family\":\"nade\",\"gm.image\":\"99999x99999x1\"}", "gm.image",
                         NULL);
    expect_model_refused("{\"gm.format\":\"1\",\"gm.family\":\"nade\",\"gm.image\":\"2x2x1\"}", "'W'", "[H, D]");
    expect_model_refused("{\"gm.format\":\"1\",\"gm.family\":\"vae\",\"gm.image\":\"2x2x1\"}", "gm.latent_dim",
                         "required");
    expect_model_refused("{\"gm.format\":\"1\",\"gm.family\":\"vae\",\"gm.image\":\"2x2x1\",\"gm.latent_dim\":\"-3\"}",
                         "gm.latent_dim", NULL);
    expect_model_refused("{\"gm.format\":\"1\",\"gm.family\":\"vae\",\"gm.image\":\"2x2x1\",\"gm.latent_dim\":\"2\"}",
                         "gm.encoder", "required");
    /* encoder must end in 2Z values: w34 gives 3 */
    expect_model_refused("{\"gm.format\":\"1\",\"gm.family\":\"vae\",\"gm.image\":\"2x2x1\",\"gm.latent_dim\":\"2\","
                         "\"gm.encoder\":\"[{\\\"op\\\":\\\"linear\\\",\\\"weight\\\":\\\"w34\\\"}]\"}",
                         "gm.encoder ends with 3 values", "4 are needed");
    expect_model_refused("{\"gm.format\":\"1\",\"gm.family\":\"gan\",\"gm.image\":\"2x2x1\",\"gm.latent_dim\":\"4\","
                         "\"gm.generator\":\"[{\\\"op\\\":\\\"linear\\\",\\\"weight\\\":\\\"w34\\\"}]\"}",
                         "gm.generator ends with 3 values", "4 are needed");
    expect_model_refused("{\"gm.format\":\"1\",\"gm.family\":\"gan\",\"gm.image\":\"2x2x1\",\"gm.latent_dim\":\"4\","
                         "\"gm.num_classes\":\"2\",\"gm.class_names\":\"[\\\"a\\\"]\"}",
                         "gm.class_names", "2 strings");
    expect_model_refused("{\"gm.format\":\"1\",\"gm.family\":\"gan\",\"gm.image\":\"2x2x1\",\"gm.latent_dim\":\"4\","
                         "\"gm.output\":\"relu\"}",
                         "gm.output", "relu");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_chain_mismatches),
        cmocka_unit_test(test_model_metadata_refused),
    };
    return cmocka_run_group_tests_name("rejection", tests, NULL, NULL);
}
