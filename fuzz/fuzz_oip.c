/*
 * fuzz_oip.c - libFuzzer harness for the Open Inference Protocol v2
 * module: an infer request parsed (gm_oip_parse), bound to a model
 * (gm_oip_bind) and, when it binds, answered (gm_oip_respond) from
 * in-contract outputs of its operation.
 *
 * Input: one control byte, then the body. Control byte: bits 0-1 pick the
 * model (a 2x2x1 NADE, a VAE with a 3-number latent, a conditional GAN with
 * codes, a 3x2x3 colour VAE); bit 2 = the body has an
 * Inference-Header-Content-Length, given by the next two bytes
 * (little-endian, taken modulo the body's length + 1). A refused request
 * must name the problem and be a 400 or 413; a bound one must have native
 * parameters and at least one output, and its reply must start with the
 * JSON object it says it has, followed by exactly the binary bytes its
 * outputs declare.
 */
#include <jansson.h>
#include <math.h>

#include "fuzz_util.h"
#include "oip.h"

static gm_model_info model(int which) {
    gm_model_info in = {.height = 2, .width = 2, .channels = 1, .dim = 4, .latent_dim = 3, .encode_dim = 3};
    switch (which) {
    case 0:
        in.family = GM_FAMILY_NADE, in.latent_dim = 0, in.encode_dim = 5, in.exact_logp = in.binary = true;
        in.supports[GM_OP_SAMPLE] = in.supports[GM_OP_LOGP] = in.supports[GM_OP_ENCODE] = true;
        break;
    case 1:
    case 3:
        in.family = GM_FAMILY_VAE;
        in.supports[GM_OP_SAMPLE] = in.supports[GM_OP_LOGP] = in.supports[GM_OP_ENCODE] = true;
        in.supports[GM_OP_DECODE] = true;
        if (which == 3) in.height = 3, in.width = 2, in.channels = 3, in.dim = 18;
        break;
    default:
        in.family = GM_FAMILY_GAN, in.num_classes = 4, in.code_dim = 2;
        in.supports[GM_OP_SAMPLE] = in.supports[GM_OP_DECODE] = in.supports[GM_OP_DISCRIMINATE] = true;
    }
    return in;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t ctl = data[0];
    data++, size--;
    long long header_len = -1;
    if (ctl & 4) {
        if (size < 2) return 0;
        header_len = (data[0] | data[1] << 8) % (long long)(size - 2 + 1);
        data += 2, size -= 2;
    }
    gm_model_info in = model(ctl & 3);
    gm_oip_limits lim = {.max_images = 4, .default_k = 3};
    for (int op = 0; op < GM_OP_COUNT; op++) lim.serves[op] = true;
    gm_error_kind kind = GM_E_INTERNAL;
    char err[GM_ERR_LEN] = "";
    gm_oip_request *r = gm_oip_parse(data, size, header_len, gm_oip_max_values(&in, lim.max_images), &kind, err);
    gm_oip_plan plan;
    bool ok = r && gm_oip_bind(r, &in, &lim, &plan, &kind, err);
    gm_oip_request_free(r);
    if (!ok) {
        FUZZ_CHECK(err[0], "a refusal without a message");
        FUZZ_CHECK(gm_error_status(kind) == 400 || gm_error_status(kind) == 413, "status %d: %s", gm_error_status(kind),
                   err);
        if (r) gm_oip_plan_release(&plan);
        return 0;
    }
    FUZZ_CHECK(plan.params && json_is_object(plan.params), "a bound request without native parameters");
    FUZZ_CHECK(plan.n_outputs >= 1 && plan.n_outputs <= GM_OIP_OUT_COUNT, "%d outputs", plan.n_outputs);
    /* in-contract outputs for 3 rows */
    enum { N = 3 };
    float pixels[N * 18], z[N * 5], logits[N];
    double logp[N];
    int labels[N];
    gm_logp_result lp[N];
    for (int i = 0; i < N * 18; i++) pixels[i] = (float)(i % 5) / 4;
    for (int i = 0; i < N * 5; i++) z[i] = (float)i - 7;
    for (int i = 0; i < N; i++)
        logits[i] = (float)i, logp[i] = -i - 1, labels[i] = i, lp[i] = (gm_logp_result){-2, -3, NAN};
    gm_oip_results res = {.n = N,
                          .pixels = pixels,
                          .logp = logp,
                          .labels = labels,
                          .lp = lp,
                          .z = z,
                          .logvar = z,
                          .logits = logits,
                          .k = 3,
                          .has_seed = true,
                          .seed = UINT64_MAX};
    uint8_t *body;
    size_t len, json_len;
    FUZZ_CHECK(gm_oip_respond(&plan, "m", &in, &res, &body, &len, &json_len), "no reply");
    json_t *head = json_loadb((const char *)body, json_len, 0, NULL);
    FUZZ_CHECK(head, "the reply's JSON does not parse: %.*s", (int)(json_len < 400 ? json_len : 400), body);
    size_t binary = 0, i;
    json_t *o;
    json_array_foreach(json_object_get(head, "outputs"), i, o) {
        json_t *size_v = json_object_get(json_object_get(o, "parameters"), "binary_data_size");
        FUZZ_CHECK(!size_v != !json_object_get(o, "data"), "an output with both or neither of data and binary data");
        binary += size_v ? (size_t)json_integer_value(size_v) : 0;
    }
    FUZZ_CHECK(json_array_size(json_object_get(head, "outputs")) == (size_t)plan.n_outputs, "outputs missing");
    FUZZ_CHECK(json_len + binary == len, "JSON %zu + binary %zu != body %zu", json_len, binary, len);
    json_decref(head);
    free(body);
    gm_oip_plan_release(&plan);
    return 0;
}
