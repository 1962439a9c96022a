/*
 * test_oip.c - the Open Inference Protocol v2 module on its own: infer
 * requests in JSON (flat and nested data) and with the binary tensor data
 * extension parse to the same native parameters; the operation follows the
 * input names and requested outputs; shapes, datatypes and byte counts that
 * break the protocol or the model are 400 (too many JSON values 413); the
 * reply's JSON and binary tensors parse back to the arrays given, with
 * IEEE 754 little-endian bytes checked against their known encodings; the
 * metadata names every input and output with -1 for the batch dimension.
 */
#include "testutil.h"

#include <float.h>
#include <jansson.h>

#include "oip.h"

/* A 2x2x1 VAE with a 3-number latent, and a conditional GAN with codes. */
static gm_model_info vae_info(void) {
    gm_model_info in = {
        .family = GM_FAMILY_VAE, .height = 2, .width = 2, .channels = 1, .dim = 4, .latent_dim = 3, .encode_dim = 3};
    in.supports[GM_OP_SAMPLE] = in.supports[GM_OP_LOGP] = in.supports[GM_OP_ENCODE] = in.supports[GM_OP_DECODE] = true;
    return in;
}

static gm_model_info gan_info(void) {
    gm_model_info in = {.family = GM_FAMILY_GAN,
                        .height = 2,
                        .width = 2,
                        .channels = 1,
                        .dim = 4,
                        .latent_dim = 3,
                        .encode_dim = 3,
                        .num_classes = 5,
                        .code_dim = 2};
    in.supports[GM_OP_SAMPLE] = in.supports[GM_OP_DECODE] = in.supports[GM_OP_DISCRIMINATE] = true;
    return in;
}

static gm_oip_limits limits(void) {
    gm_oip_limits lim = {.max_images = 8, .default_k = 100};
    for (int op = 0; op < GM_OP_COUNT; op++) lim.serves[op] = true;
    return lim;
}

typedef struct {
    bool ok;
    gm_error_kind kind;
    char err[GM_ERR_LEN];
    gm_oip_plan plan;
} bound;

/* Parses and binds body (header_len as the header gives it, -1 none). */
static bound bind_body(const gm_model_info *in, const void *body, size_t len, long long header_len) {
    bound b = {0};
    gm_oip_limits lim = limits();
    gm_oip_request *r = gm_oip_parse(body, len, header_len, gm_oip_max_values(in, lim.max_images), &b.kind, b.err);
    if (r) b.ok = gm_oip_bind(r, in, &lim, &b.plan, &b.kind, b.err);
    gm_oip_request_free(r);
    return b;
}

static bound bind_json(const gm_model_info *in, const char *json) { return bind_body(in, json, strlen(json), -1); }

/* The request must fail with status, its message containing needle. */
static void expect_error(const gm_model_info *in, const void *body, size_t len, long long header_len, int status,
                         const char *needle) {
    bound b = bind_body(in, body, len, header_len);
    if (b.ok || gm_error_status(b.kind) != status || !strstr(b.err, needle)) {
        print_error("%.*s\n  got %s %d \"%s\", want %d containing \"%s\"\n", (int)(len < 300 ? len : 300),
                    (const char *)body, b.ok ? "success" : "error", gm_error_status(b.kind), b.err, status, needle);
        fail();
    }
    gm_oip_plan_release(&b.plan);
}

static void expect_json_error(const gm_model_info *in, const char *json, int status, const char *needle) {
    expect_error(in, json, strlen(json), -1, status, needle);
}

/* The images of a bound plan, as native parameters: images[i].pixels[j]. */
static double pixel(const gm_oip_plan *p, size_t i, size_t j) {
    return json_number_value(
        json_array_get(json_object_get(json_array_get(json_object_get(p->params, "images"), i), "pixels"), j));
}

static void test_json_images_select_logp(void **state) {
    gm_model_info in = vae_info();
    bound b =
        bind_json(&in, "{\"id\":\"r1\",\"inputs\":[{\"name\":\"images\",\"shape\":[2,2,2,1],\"datatype\":\"FP32\","
                       "\"data\":[0,0.25,0.5,1, 1,0.75,0.5,0]}],\"parameters\":{\"k\":7}}");
    assert_true(b.ok);
    assert_int_equal(b.plan.op, GM_OP_LOGP);
    assert_string_equal(b.plan.id, "r1");
    assert_int_equal(json_integer_value(json_object_get(b.plan.params, "k")), 7);
    assert_int_equal(json_array_size(json_object_get(b.plan.params, "images")), 2);
    static const double want[8] = {0, 0.25, 0.5, 1, 1, 0.75, 0.5, 0};
    for (int i = 0; i < 8; i++) assert_true(pixel(&b.plan, (size_t)i / 4, (size_t)i % 4) == want[i]);
    /* a VAE's logp with k = 7 gives logp, bits_per_dim, elbo and se */
    assert_int_equal(b.plan.n_outputs, 4);
    assert_int_equal(b.plan.outputs[3], GM_OIP_OUT_SE);
    gm_oip_plan_release(&b.plan);

    /* the same data nested in the shape's own form */
    bound nested = bind_json(&in, "{\"inputs\":[{\"name\":\"images\",\"shape\":[2,2,2,1],\"datatype\":\"FP32\","
                                  "\"data\":[[[[0],[0.25]],[[0.5],[1]]],[[[1],[0.75]],[[0.5],[0]]]]}]}");
    assert_true(nested.ok);
    for (int i = 0; i < 8; i++) assert_true(pixel(&nested.plan, (size_t)i / 4, (size_t)i % 4) == want[i]);
    gm_oip_plan_release(&nested.plan);
}

/* Optional fields written as null, and the content_type parameter of
 * MLServer's and KServe's codecs, are taken as absent. */
static void test_null_fields_and_content_type(void **state) {
    gm_model_info in = vae_info();
    bound b = bind_json(&in, "{\"id\":null,\"parameters\":null,\"outputs\":null,\"inputs\":[{\"name\":\"images\","
                             "\"shape\":[1,2,2,1],\"datatype\":\"FP32\",\"parameters\":{\"content_type\":\"np\"},"
                             "\"data\":[0,0,0,0]}]}");
    assert_true(b.ok);
    assert_null(b.plan.id);
    assert_int_equal(b.plan.op, GM_OP_LOGP);
    gm_oip_plan_release(&b.plan);
    bound c = bind_json(&in, "{\"parameters\":{\"content_type\":\"np\"},\"inputs\":[{\"name\":\"n\",\"shape\":[1],"
                             "\"datatype\":\"INT64\",\"data\":[1],\"parameters\":null}],"
                             "\"outputs\":[{\"name\":\"images\",\"parameters\":{\"binary_data\":null}}]}");
    assert_true(c.ok);
    assert_false(c.plan.binary[0]);
    gm_oip_plan_release(&c.plan);
}

/* The most images a request may hold, nested in their shape's own form
 * (a bracket around every pixel of a 1-channel image), are not too many
 * JSON values; one more image is. */
static void test_nested_max_images_fit(void **state) {
    gm_model_info in = {.family = GM_FAMILY_NADE,
                        .height = 28,
                        .width = 28,
                        .channels = 1,
                        .dim = 784,
                        .encode_dim = 5,
                        .exact_logp = true};
    in.supports[GM_OP_LOGP] = true;
    gm_oip_limits lim = limits();
    lim.max_images = 64; /* enough images that the bound's margin for structure cannot hide a short factor */
    for (long n = lim.max_images; n <= lim.max_images + 1; n++) {
        size_t cap = (size_t)n * 784 * 6 + 1024, o = 0;
        char *j = malloc(cap);
        o += (size_t)snprintf(j, cap,
                              "{\"inputs\":[{\"name\":\"images\",\"shape\":[%ld,28,28,1],\"datatype\":"
                              "\"UINT8\",\"data\":[",
                              n);
        for (long i = 0; i < n; i++) {
            j[o++] = i ? ',' : '[';
            if (i) j[o++] = '[';
            for (int y = 0; y < 28; y++) {
                o += (size_t)snprintf(j + o, cap - o, "%s[", y ? "," : "");
                for (int x = 0; x < 28; x++) o += (size_t)snprintf(j + o, cap - o, "%s[7]", x ? "," : "");
                j[o++] = ']';
            }
            j[o++] = ']';
        }
        snprintf(j + o, cap - o, "]}]}");
        gm_error_kind kind;
        char err[GM_ERR_LEN];
        gm_oip_request *r =
            gm_oip_parse((uint8_t *)j, strlen(j), -1, gm_oip_max_values(&in, lim.max_images), &kind, err);
        if (n == lim.max_images && !r) {
            print_error("%ld nested images refused: %s\n", n, err);
            fail();
        }
        if (n > lim.max_images) assert_true(r != NULL || gm_error_status(kind) == 413);
        gm_oip_request_free(r);
        free(j);
    }
}

static void test_uint8_images_are_scaled_as_png(void **state) {
    gm_model_info in = vae_info();
    bound b = bind_json(&in, "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"UINT8\","
                             "\"data\":[0,1,128,255]}]}");
    assert_true(b.ok);
    static const int v[4] = {0, 1, 128, 255};
    for (int i = 0; i < 4; i++) assert_true(pixel(&b.plan, 0, (size_t)i) == (double)((float)v[i] / 255.0f));
    gm_oip_plan_release(&b.plan);
}

/* A request with one binary FP32 tensor: JSON, then the bytes. */
static size_t binary_request(uint8_t *out, const char *json, const float *x, int n, size_t *header_len) {
    size_t hl = strlen(json);
    memcpy(out, json, hl);
    memcpy(out + hl, x, (size_t)n * sizeof *x);
    *header_len = hl;
    return hl + (size_t)n * sizeof *x;
}

static void test_binary_images_equal_json(void **state) {
    gm_model_info in = vae_info();
    const float x[8] = {0, 0.25f, 0.5f, 1, 1, 0.75f, 0.5f, 0.1f};
    uint8_t body[1024];
    size_t hl, len = binary_request(body,
                                    "{\"inputs\":[{\"name\":\"images\",\"shape\":[2,2,2,1],\"datatype\":\"FP32\","
                                    "\"parameters\":{\"binary_data_size\":32}}],\"outputs\":[{\"name\":\"z\"}]}",
                                    x, 8, &hl);
    bound b = bind_body(&in, body, len, (long long)hl);
    assert_true(b.ok);
    assert_int_equal(b.plan.op, GM_OP_ENCODE); /* the output z belongs to encode */
    for (int i = 0; i < 8; i++) assert_true(pixel(&b.plan, (size_t)i / 4, (size_t)i % 4) == (double)x[i]);
    gm_oip_plan_release(&b.plan);

    /* byte counts that do not add up */
    expect_error(&in, body, len - 4, (long long)hl, 400, "binary data are not in the body");
    expect_error(&in, body, len, -1, 400, "not valid JSON");
    expect_error(&in, body, len, (long long)len + 1, 400, "Inference-Header-Content-Length is");
    uint8_t longer[1100];
    memcpy(longer, body, len);
    memset(longer + len, 0, 4);
    expect_error(&in, longer, len + 4, (long long)hl, 400, "4 bytes follow the JSON");
    const char *wrong = "{\"inputs\":[{\"name\":\"images\",\"shape\":[2,2,2,1],\"datatype\":\"FP32\","
                        "\"parameters\":{\"binary_data_size\":31}}]}";
    size_t wl = binary_request(body, wrong, x, 8, &hl);
    expect_error(&in, body, wl - 1, (long long)hl, 400, "binary_data_size is 31 bytes");
    /* a NaN in binary data cannot become a native parameter */
    float nan_x[8] = {0, 0, 0, NAN, 0, 0, 0, 0};
    len = binary_request(body,
                         "{\"inputs\":[{\"name\":\"images\",\"shape\":[2,2,2,1],\"datatype\":\"FP32\","
                         "\"parameters\":{\"binary_data_size\":32}}]}",
                         nan_x, 8, &hl);
    expect_error(&in, body, len, (long long)hl, 400, "element 3 is nan");
}

static void test_inputs_select_the_operation(void **state) {
    gm_model_info vae = vae_info(), gan = gan_info();
    bound d = bind_json(&vae, "{\"inputs\":[{\"name\":\"latents\",\"shape\":[1,3],\"datatype\":\"FP64\","
                              "\"data\":[0.5,-1,2]}]}");
    assert_true(d.ok);
    assert_int_equal(d.plan.op, GM_OP_DECODE);
    assert_true(json_number_value(json_array_get(json_array_get(json_object_get(d.plan.params, "latents"), 0), 2)) ==
                2);
    gm_oip_plan_release(&d.plan);

    bound s = bind_json(&vae, "{\"inputs\":[{\"name\":\"n\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[3]},"
                              "{\"name\":\"seed\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[42]}],"
                              "\"parameters\":{\"temperature\":0.5,\"binary_data_output\":true}}");
    assert_true(s.ok);
    assert_int_equal(s.plan.op, GM_OP_SAMPLE);
    assert_int_equal(json_integer_value(json_object_get(s.plan.params, "n")), 3);
    assert_int_equal(json_integer_value(json_object_get(s.plan.params, "seed")), 42);
    assert_true(json_real_value(json_object_get(s.plan.params, "temperature")) == 0.5);
    assert_int_equal(s.plan.n_outputs, 1);
    assert_true(s.plan.binary[0]);
    gm_oip_plan_release(&s.plan);

    /* an UINT64 seed past 2^63 travels as the native API's decimal string */
    uint8_t body[512];
    uint64_t big = UINT64_C(18446744073709551615);
    const char *json = "{\"inputs\":[{\"name\":\"seed\",\"shape\":[1],\"datatype\":\"UINT64\","
                       "\"parameters\":{\"binary_data_size\":8}}]}";
    size_t hl = strlen(json);
    memcpy(body, json, hl);
    memcpy(body + hl, &big, 8);
    bound u = bind_body(&vae, body, hl + 8, (long long)hl);
    assert_true(u.ok);
    assert_string_equal(json_string_value(json_object_get(u.plan.params, "seed")), "18446744073709551615");
    gm_oip_plan_release(&u.plan);

    /* a conditional GAN: per-latent labels, one code for all */
    bound g = bind_json(&gan, "{\"inputs\":[{\"name\":\"latents\",\"shape\":[2,3],\"datatype\":\"FP32\","
                              "\"data\":[0,0,0,1,1,1]},{\"name\":\"label\",\"shape\":[2],\"datatype\":\"INT32\","
                              "\"data\":[4,1]},{\"name\":\"code\",\"shape\":[1,2],\"datatype\":\"FP32\","
                              "\"data\":[0.5,-0.5]}]}");
    assert_true(g.ok);
    json_t *labels = json_object_get(g.plan.params, "label"), *code = json_object_get(g.plan.params, "code");
    assert_int_equal(json_array_size(labels), 2);
    assert_int_equal(json_integer_value(json_array_get(labels, 0)), 4);
    assert_int_equal(json_array_size(code), 2);
    assert_true(json_number_value(json_array_get(code, 1)) == -0.5);
    gm_oip_plan_release(&g.plan);

    /* images on a GAN without an encoder go to the discriminator */
    bound disc = bind_json(&gan, "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"FP32\","
                                 "\"data\":[0,0,0,0]}]}");
    assert_true(disc.ok);
    assert_int_equal(disc.plan.op, GM_OP_DISCRIMINATE);
    gm_oip_plan_release(&disc.plan);
}

static void test_refusals(void **state) {
    gm_model_info vae = vae_info(), gan = gan_info();
    expect_json_error(&vae, "[1]", 400, "must be a JSON object");
    expect_json_error(&vae, "{\"inputs\": 3}", 400, "needs \"inputs\"");
    expect_json_error(&vae, "{\"inputs\":[],\"extra\":1}", 400, "unknown field \"extra\"");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"INT8\","
                      "\"data\":[0,0,0,0]}]}",
                      400, "has datatype INT8; it takes FP32, UINT8, FP64");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"FP33\","
                      "\"data\":[0,0,0,0]}]}",
                      400, "\"datatype\" must be one of");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,4],\"datatype\":\"FP32\","
                      "\"data\":[0,0,0,0]}]}",
                      400, "has shape [1, 4]; model takes [n, 2, 2, 1]");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"FP32\","
                      "\"data\":[0,0,0]}]}",
                      400, "data holds 3 elements, but its shape makes 4");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"FP32\","
                      "\"data\":[0,0,0,\"x\"]}]}",
                      400, "data holds a string");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[9,2,2,1],\"datatype\":\"FP32\","
                      "\"data\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}",
                      400, "max_images");
    expect_json_error(&vae, "{\"inputs\":[{\"name\":\"pictures\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[0]}]}",
                      400, "unknown input \"pictures\"");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"n\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[1]},"
                      "{\"name\":\"n\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[1]}]}",
                      400, "given twice");
    expect_json_error(&vae, "{\"inputs\":[{\"name\":\"n\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[1.5]}]}", 400,
                      "is not an integer");
    expect_json_error(&vae, "{\"inputs\":[{\"name\":\"seed\",\"shape\":[1],\"datatype\":\"UINT64\",\"data\":[-1]}]}",
                      400, "not an integer that UINT64 holds");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"n\",\"shape\":[1],\"datatype\":\"INT32\",\"data\":[4294967297]}]}", 400,
                      "not an integer that INT32 holds");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"UINT8\","
                      "\"data\":[0,0,0.5,0]}]}",
                      400, "UINT8 elements are integers 0 to 255");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"UINT8\","
                      "\"data\":[0,0,256,0]}]}",
                      400, "element 2 is 256");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"FP32\","
                      "\"data\":[0,true,0,0]}]}",
                      400, "data holds a boolean");
    expect_json_error(&vae, "{\"inputs\":[{\"name\":\"n\",\"shape\":[2],\"datatype\":\"INT64\",\"data\":[1,2]}]}", 400,
                      "model takes [1]");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"FP32\","
                      "\"data\":[0,0,0,0]},{\"name\":\"latents\",\"shape\":[1,3],\"datatype\":\"FP32\","
                      "\"data\":[0,0,0]}]}",
                      400, "not both");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"FP32\","
                      "\"data\":[0,0,0,0]}],\"outputs\":[{\"name\":\"logp\"},{\"name\":\"z\"}]}",
                      400, "come from different operations");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"FP32\","
                      "\"data\":[0,0,0,0]}],\"parameters\":{\"k\":1},\"outputs\":[{\"name\":\"se\"}]}",
                      400, "se needs k of 2 or more");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"FP32\","
                      "\"data\":[0,0,0,0]}],\"parameters\":{\"temperature\":1}}",
                      400, "unknown parameter \"temperature\" for logp");
    expect_json_error(&vae, "{\"inputs\":[{\"name\":\"label\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[1]}]}",
                      400, "input \"label\" is not taken by sample");
    expect_json_error(&gan,
                      "{\"inputs\":[{\"name\":\"latents\",\"shape\":[1,3],\"datatype\":\"FP32\","
                      "\"data\":[0,0,0]}]}",
                      400, "needs the input \"label\"");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"FP32\","
                      "\"data\":[0,0,0,0],\"parameters\":{\"binary_data_size\":16}}]}",
                      400, "not both");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"FP16\","
                      "\"data\":[0,0,0,0]}]}",
                      400, "FP16 has no JSON form");
    expect_json_error(&vae,
                      "{\"inputs\":[{\"name\":\"images\",\"shape\":[1099511627776,1099511627776],"
                      "\"datatype\":\"FP32\",\"data\":[]}]}",
                      400, "more than 2^40 elements");
    /* more JSON values than any request to the model could use: 413 before parsing */
    char big[4096] = "{\"inputs\":[{\"name\":\"images\",\"shape\":[1,2,2,1],\"datatype\":\"FP32\",\"data\":[0";
    for (int i = 0; i < 600; i++) strcat(big, ",0");
    strcat(big, "]}]}");
    expect_json_error(&vae, big, 413, "send large tensors as binary data");
}

/* The reply, parsed back. */
static void test_reply_json_and_binary(void **state) {
    gm_model_info in = vae_info();
    gm_logp_result lp[2] = {{-1.5, -2.0, 0.25}, {-3.0, -4.0, 0.5}};
    gm_oip_results res = {.n = 2, .lp = lp, .k = 7, .has_seed = true, .seed = 9};
    gm_oip_plan plan = {
        .op = GM_OP_LOGP, .n_outputs = 2, .outputs = {GM_OIP_OUT_LOGP, GM_OIP_OUT_BITS_PER_DIM}, .id = "abc"};
    uint8_t *body;
    size_t len, jl;
    assert_true(gm_oip_respond(&plan, "vae", &in, &res, &body, &len, &jl));
    assert_int_equal(len, jl);
    json_t *r = json_loadb((char *)body, len, 0, NULL);
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "model_name")), "vae");
    assert_string_equal(json_string_value(json_object_get(r, "model_version")), "1");
    assert_string_equal(json_string_value(json_object_get(r, "id")), "abc");
    json_t *params = json_object_get(r, "parameters");
    assert_int_equal(json_integer_value(json_object_get(params, "seed")), 9);
    assert_string_equal(json_string_value(json_object_get(params, "operation")), "logp");
    assert_string_equal(json_string_value(json_object_get(params, "method")), "importance_sampling");
    assert_int_equal(json_integer_value(json_object_get(params, "k")), 7);
    json_t *o0 = json_array_get(json_object_get(r, "outputs"), 0),
           *o1 = json_array_get(json_object_get(r, "outputs"), 1);
    assert_string_equal(json_string_value(json_object_get(o0, "name")), "logp");
    assert_string_equal(json_string_value(json_object_get(o0, "datatype")), "FP64");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(o0, "shape"), 0)), 2);
    assert_true(json_number_value(json_array_get(json_object_get(o0, "data"), 1)) == -3.0);
    /* bits per dimension: -log p / (D ln 2) with D = 4 */
    assert_true(fabs(json_number_value(json_array_get(json_object_get(o1, "data"), 0)) - 1.5 / (4 * log(2))) < 1e-15);
    json_decref(r);
    free(body);

    /* images as binary: the JSON says the size, the bytes follow */
    const float px[8] = {1.0f, 0.5f, 0.0f, -2.0f, 0.25f, 0.75f, 0.125f, 1.0f};
    gm_oip_results img = {.n = 2, .pixels = px};
    gm_oip_plan ip = {.op = GM_OP_DECODE, .n_outputs = 1, .outputs = {GM_OIP_OUT_IMAGES}, .binary = {true}};
    assert_true(gm_oip_respond(&ip, "vae", &in, &img, &body, &len, &jl));
    assert_int_equal(len - jl, 32);
    r = json_loadb((char *)body, jl, 0, NULL);
    assert_non_null(r);
    json_t *o = json_array_get(json_object_get(r, "outputs"), 0);
    assert_null(json_object_get(o, "data"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "parameters"), "binary_data_size")), 32);
    assert_int_equal(json_array_size(json_object_get(o, "shape")), 4);
    /* IEEE 754 single precision, little-endian: 1.0 = 3f800000, 0.5 = 3f000000, -2.0 = c0000000 */
    static const uint8_t want[16] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0xc0};
    assert_memory_equal(body + jl, want, 16);
    json_decref(r);
    free(body);
}

/* FP32 data in JSON: every value reads back as the identical float, in
 * the fewest digits that do (0.1f is 0.1, where %.9g wrote 0.100000001). */
static void test_fp32_json_is_shortest_and_exact(void **state) {
    gm_model_info in = vae_info();
    enum { N = 700 };
    static float z[N * 3];
    const float edge[] = {0.1f, -0.0f,       0.0f,    FLT_TRUE_MIN, FLT_MIN,    FLT_MAX, -FLT_MAX,
                          1.0f, 16777216.0f, 3.3e-5f, 1e-5f,        123456.79f, 1e9f,    0.3f};
    uint32_t s = 17;
    for (int i = 0; i < N * 3; i++) {
        s = s * 1664525u + 1013904223u;
        uint32_t bits = s;
        memcpy(&z[i], &bits, 4);
        if (!isfinite(z[i])) z[i] = (float)i;
        if (i < (int)(sizeof edge / sizeof *edge)) z[i] = edge[i];
    }
    gm_oip_results res = {.n = N, .z = z};
    gm_oip_plan plan = {.op = GM_OP_ENCODE, .n_outputs = 1, .outputs = {GM_OIP_OUT_Z}};
    uint8_t *body;
    size_t len, jl;
    assert_true(gm_oip_respond(&plan, "vae", &in, &res, &body, &len, &jl));
    assert_int_equal(len, jl);
    assert_non_null(memmem(body, len, "\"data\":[0.1,-0.0,0.0,", 20));
    json_t *r = json_loadb((char *)body, len, 0, NULL);
    assert_non_null(r);
    json_t *data = json_object_get(json_array_get(json_object_get(r, "outputs"), 0), "data");
    assert_int_equal(json_array_size(data), N * 3);
    for (size_t i = 0; i < N * 3; i++) {
        float back = (float)json_number_value(json_array_get(data, i));
        if (memcmp(&back, &z[i], 4)) fail_msg("element %zu: %.9g read back as %.9g", i, (double)z[i], (double)back);
    }
    json_decref(r);
    free(body);
}

static void test_metadata(void **state) {
    gm_model_info gan = gan_info();
    gm_oip_limits lim = limits();
    json_t *m = gm_oip_model_metadata("gan", &gan, &lim);
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "name")), "gan");
    assert_string_equal(json_string_value(json_array_get(json_object_get(m, "versions"), 0)), "1");
    assert_non_null(json_string_value(json_object_get(m, "platform")));
    /* a GAN has no logp: the top level is decode's, what a client sending just those inputs runs */
    assert_string_equal(json_string_value(json_object_get(m, "default_operation")), "decode");
    json_t *inputs = json_object_get(m, "inputs"), *outputs = json_object_get(m, "outputs");
    static const char *const NAMES[] = {"latents", "label", "code"};
    assert_int_equal(json_array_size(inputs), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(inputs, i), "name")), NAMES[i]);
    json_t *latents = json_array_get(inputs, 0), *code = json_array_get(inputs, 2);
    assert_string_equal(json_string_value(json_object_get(latents, "datatype")), "FP32");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(latents, "shape"), 0)), -1);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(latents, "shape"), 1)), 3);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(code, "shape"), 1)), 2);
    assert_int_equal(json_array_size(outputs), 1);
    json_t *images = json_array_get(outputs, 0);
    assert_string_equal(json_string_value(json_object_get(images, "name")), "images");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(images, "shape"), 0)), -1);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(images, "shape"), 3)), 1);
    /* decode requires latents, label and code */
    json_t *ops = json_object_get(m, "operations"), *decode = NULL;
    for (size_t i = 0; i < json_array_size(ops); i++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(ops, i), "name")), "decode"))
            decode = json_array_get(ops, i);
    assert_non_null(decode);
    assert_int_equal(json_array_size(json_object_get(decode, "inputs")), 3);
    /* per operation, each input's own shape: decode takes a label per latent, sample one for all */
    json_t *sample = json_array_get(ops, 0), *dlabel = json_array_get(json_object_get(decode, "inputs"), 1);
    assert_string_equal(json_string_value(json_object_get(sample, "name")), "sample");
    json_t *slabel = json_array_get(json_object_get(sample, "optional_inputs"), 0);
    assert_string_equal(json_string_value(json_object_get(slabel, "name")), "label");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(slabel, "shape"), 0)), 1);
    assert_string_equal(json_string_value(json_object_get(dlabel, "name")), "label");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(dlabel, "shape"), 0)), -1);
    json_decref(m);

    json_t *s = gm_oip_server_metadata("1.0");
    assert_string_equal(json_string_value(json_object_get(s, "name")), "gmserve");
    assert_string_equal(json_string_value(json_array_get(json_object_get(s, "extensions"), 0)), "binary_tensor_data");
    json_decref(s);
}

/* An InfoGAN (4 categories, 2 codes, no classes): cat is bound as label is,
 * one per latent (or one for all) for decode, which needs it, and one for
 * all for sample; models without a categorical code refuse it. */
static void test_infogan_cat(void **state) {
    gm_model_info ig = gan_info(), vae = vae_info();
    ig.num_classes = 0;
    ig.cat_dim = 4;
    bound d = bind_json(&ig, "{\"inputs\":[{\"name\":\"latents\",\"shape\":[2,3],\"datatype\":\"FP32\","
                             "\"data\":[0,0,0,1,1,1]},{\"name\":\"cat\",\"shape\":[2],\"datatype\":\"INT64\","
                             "\"data\":[3,0]},{\"name\":\"code\",\"shape\":[1,2],\"datatype\":\"FP32\","
                             "\"data\":[1,-1]}]}");
    assert_true(d.ok);
    assert_int_equal(d.plan.op, GM_OP_DECODE);
    json_t *cats = json_object_get(d.plan.params, "cat");
    assert_int_equal(json_array_size(cats), 2);
    assert_int_equal(json_integer_value(json_array_get(cats, 0)), 3);
    assert_int_equal(json_integer_value(json_array_get(cats, 1)), 0);
    gm_oip_plan_release(&d.plan);
    bound one = bind_json(&ig, "{\"inputs\":[{\"name\":\"latents\",\"shape\":[2,3],\"datatype\":\"FP32\","
                               "\"data\":[0,0,0,1,1,1]},{\"name\":\"cat\",\"shape\":[1],\"datatype\":\"INT32\","
                               "\"data\":[2]},{\"name\":\"code\",\"shape\":[1,2],\"datatype\":\"FP32\","
                               "\"data\":[1,-1]}]}");
    assert_true(one.ok);
    assert_int_equal(json_integer_value(json_object_get(one.plan.params, "cat")), 2); /* one for every latent */
    gm_oip_plan_release(&one.plan);
    bound s = bind_json(&ig, "{\"inputs\":[{\"name\":\"n\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[3]},"
                             "{\"name\":\"cat\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[1]}]}");
    assert_true(s.ok);
    assert_int_equal(s.plan.op, GM_OP_SAMPLE);
    assert_int_equal(json_integer_value(json_object_get(s.plan.params, "cat")), 1);
    gm_oip_plan_release(&s.plan);
    expect_json_error(&ig,
                      "{\"inputs\":[{\"name\":\"latents\",\"shape\":[1,3],\"datatype\":\"FP32\",\"data\":[0,0,0]},"
                      "{\"name\":\"code\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[0,0]}]}",
                      400, "decode on this model needs the input \"cat\"");
    expect_json_error(&ig, "{\"inputs\":[{\"name\":\"cat\",\"shape\":[2],\"datatype\":\"INT64\",\"data\":[1,2]}]}", 400,
                      "input \"cat\" has shape [2]; model takes [1]");
    expect_json_error(&ig, "{\"inputs\":[{\"name\":\"cat\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}", 400,
                      "input \"cat\" has datatype FP32; it takes INT64, INT32");
    expect_json_error(&vae, "{\"inputs\":[{\"name\":\"cat\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[1]}]}", 400,
                      "input \"cat\" is not taken by sample on this model");
    /* the metadata: decode needs latents, code and cat; sample takes cat [1] */
    gm_oip_limits lim = limits();
    json_t *m = gm_oip_model_metadata("ig", &ig, &lim), *ops = json_object_get(m, "operations");
    bool decode_cat = false, sample_cat = false;
    for (size_t i = 0; i < json_array_size(ops); i++) {
        json_t *op = json_array_get(ops, i);
        const char *name = json_string_value(json_object_get(op, "name"));
        json_t *ins = json_object_get(op, !strcmp(name, "decode") ? "inputs" : "optional_inputs");
        for (size_t j = 0; j < json_array_size(ins); j++) {
            json_t *t = json_array_get(ins, j);
            if (strcmp(json_string_value(json_object_get(t, "name")), "cat")) continue;
            json_int_t rows = json_integer_value(json_array_get(json_object_get(t, "shape"), 0));
            assert_int_equal(json_array_size(json_object_get(t, "shape")), 1);
            if (!strcmp(name, "decode")) decode_cat = rows == -1;
            if (!strcmp(name, "sample")) sample_cat = rows == 1;
        }
    }
    assert_true(decode_cat && sample_cat);
    json_decref(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_images_select_logp),
        cmocka_unit_test(test_uint8_images_are_scaled_as_png),
        cmocka_unit_test(test_null_fields_and_content_type),
        cmocka_unit_test(test_nested_max_images_fit),
        cmocka_unit_test(test_binary_images_equal_json),
        cmocka_unit_test(test_inputs_select_the_operation),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_reply_json_and_binary),
        cmocka_unit_test(test_fp32_json_is_shortest_and_exact),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_infogan_cat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
