/*
 * test_graph.c - layer graphs: named values, several inputs, the ops that
 * combine values, and the rewrites that must respect who reads what.
 *
 * Each op is checked against its definition written here as a float64
 * loop over indices (the reference), on random inputs, at batch 1 and 5;
 * the cases of tests/fixtures/graph_ops.safetensors are checked against
 * PyTorch's float32 outputs (tests/make_fixtures.py). Tolerance 1e-4
 * relative to the output's scale, as for every network.
 */
#include "gm/layers.h"
#include "gm/model.h"
#include "testutil.h"

/* ---- an in-memory file of named float tensors ---- */

typedef struct {
    const char *name;
    int ndim, shape[4];
    const float *data;
} tdef;

/* The file's bytes; `meta` is the text of a JSON object of metadata
 * strings, or NULL. */
static uint8_t *make_file(const tdef *t, int n, const char *meta, size_t *len) {
    char header[8192];
    size_t at = (size_t)snprintf(header, sizeof header, "{"), off = 0, total = 0;
    if (meta) at += (size_t)snprintf(header + at, sizeof header - at, "\"__metadata__\":%s%s", meta, n ? "," : "");
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        total += numel;
    }
    float *data = calloc(total ? total : 1, sizeof *data);
    assert_non_null(data);
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        at += (size_t)snprintf(header + at, sizeof header - at, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[", i ? "," : "",
                               t[i].name);
        for (int d = 0; d < t[i].ndim; d++) {
            numel *= (size_t)t[i].shape[d];
            at += (size_t)snprintf(header + at, sizeof header - at, "%s%d", d ? "," : "", t[i].shape[d]);
        }
        at += (size_t)snprintf(header + at, sizeof header - at, "],\"data_offsets\":[%zu,%zu]}", off * 4,
                               (off + numel) * 4);
        memcpy(data + off, t[i].data, numel * sizeof *data);
        off += numel;
    }
    snprintf(header + at, sizeof header - at, "}");
    uint8_t *buf = st_build(header, data, total * sizeof *data, len);
    free(data);
    return buf;
}

static gm_st *make_st(const tdef *t, int n) {
    size_t len;
    uint8_t *buf = make_file(t, n, NULL, &len);
    char err[GM_ERR_LEN];
    gm_st *st = gm_st_parse("graph.safetensors", buf, len, err);
    free(buf);
    if (!st) print_error("%s\n", err);
    assert_non_null(st);
    return st;
}

static unsigned rng_state = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) / 8388608.0 - 1.0);
}
static float *rand_floats(size_t n) {
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

static gm_net *build(const gm_st *st, const char *json, int n, const gm_net_input *in) {
    char err[GM_ERR_LEN] = "";
    gm_net *net = gm_net_build_inputs(st, "gm.test", json, n, in, err);
    if (!net) print_error("%s\n", err);
    assert_non_null(net);
    return net;
}

/* Runs net on in[] (B samples) and compares with want (float64). */
static void check_forward(const char *what, const gm_net *net, int B, const float *const *in, const double *want) {
    size_t n = (size_t)B * gm_shape_size(gm_net_out_shape(net));
    float *got = malloc(n * sizeof *got), *w = malloc(n * sizeof *w);
    assert_non_null(got);
    assert_non_null(w);
    assert_int_equal(gm_net_forward_inputs(net, B, in, got), 0);
    for (size_t i = 0; i < n; i++) w[i] = (float)want[i];
    assert_close_f(what, got, w, n, 1e-4);
    free(got);
    free(w);
}

/* ---- add / mul broadcasting, concat, split, expand ---- */

enum { C = 3, H = 4, W = 5, P = H * W, BMAX = 5 };

static void test_add_mul_broadcast(void **state) {
    gm_st *st = make_st(NULL, 0);
    /* x [C,H,W] with: a same-shape y, a [C] vector, a [C,1,1] map, a [1] */
    gm_net_input in[4] = {
        {"x", gm_shape3(C, H, W)}, {"y", gm_shape3(C, H, W)}, {"v", gm_shape1(C)}, {"s", gm_shape1(1)}};
    const char *json = "[{\"op\":\"add\",\"inputs\":[\"x\",\"y\"],\"name\":\"a\"},"
                       "{\"op\":\"mul\",\"inputs\":[\"v\",\"a\"],\"name\":\"b\"},"
                       "{\"op\":\"reshape\",\"inputs\":[\"v\"],\"shape\":[3,1,1],\"name\":\"v3\"},"
                       "{\"op\":\"add\",\"inputs\":[\"b\",\"v3\"],\"name\":\"c\"},"
                       "{\"op\":\"mul\",\"inputs\":[\"c\",\"s\"]}]";
    gm_net *net = build(st, json, 4, in);
    for (int B = 1; B <= BMAX; B += BMAX - 1) {
        float *x = rand_floats((size_t)B * C * P), *y = rand_floats((size_t)B * C * P), *v = rand_floats((size_t)B * C),
              *s = rand_floats((size_t)B);
        double *want = malloc((size_t)B * C * P * sizeof *want);
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++)
                for (int p = 0; p < P; p++) {
                    size_t i = ((size_t)b * C + c) * P + p;
                    double vc = v[b * C + c];
                    want[i] = (vc * ((double)x[i] + y[i]) + vc) * s[b];
                }
        const float *ins[4] = {x, y, v, s};
        check_forward("add/mul broadcast", net, B, ins, want);
        free(x), free(y), free(v), free(s), free(want);
    }
    gm_net_free(net);
    gm_st_free(st);
}

static void test_concat_split_expand(void **state) {
    gm_st *st = make_st(NULL, 0);
    /* x [C,H,W] split on W into 2 + 3, the halves swapped back together;
     * a [2] vector expanded to [2,H,W] and concatenated on channels; then
     * split on channels into three and the middle one kept */
    gm_net_input in[2] = {{"x", gm_shape3(C, H, W)}, {"v", gm_shape1(2)}};
    const char *json = "[{\"op\":\"split\",\"sizes\":[2,3],\"dim\":2,\"names\":[\"l\",\"r\"]},"
                       "{\"op\":\"concat\",\"inputs\":[\"r\",\"l\"],\"dim\":-1,\"name\":\"sw\"},"
                       "{\"op\":\"expand\",\"inputs\":[\"v\"],\"shape\":[2,4,5],\"name\":\"m\"},"
                       "{\"op\":\"concat\",\"inputs\":[\"sw\",\"m\"]},"
                       "{\"op\":\"split\",\"sizes\":[1,3,1],\"names\":[\"p\",\"q\",\"t\"]},"
                       "{\"op\":\"flatten\",\"inputs\":[\"q\"]}]";
    gm_net *net = build(st, json, 2, in);
    assert_int_equal(gm_shape_size(gm_net_out_shape(net)), 3 * P);
    for (int B = 1; B <= BMAX; B += BMAX - 1) {
        float *x = rand_floats((size_t)B * C * P), *v = rand_floats((size_t)B * 2);
        double *want = malloc((size_t)B * 3 * P * sizeof *want);
        for (int b = 0; b < B; b++)
            for (int c = 1; c < 4; c++) /* channels 1..3 of the 5-channel concat */
                for (int h = 0; h < H; h++)
                    for (int w = 0; w < W; w++) {
                        double val;
                        if (c < C) {
                            int src = w < 3 ? w + 2 : w - 3; /* [r (cols 2..4), l (cols 0..1)] */
                            val = x[(((size_t)b * C + c) * H + h) * W + src];
                        } else {
                            val = v[b * 2 + (c - C)];
                        }
                        want[(((size_t)b * 3 + c - 1) * H + h) * W + w] = val;
                    }
        const float *ins[2] = {x, v};
        check_forward("concat/split/expand", net, B, ins, want);
        free(x), free(v), free(want);
    }
    gm_net_free(net);
    gm_st_free(st);
}

/* ---- embedding: a label (one float holding an integer) to a row ---- */

static void test_embedding(void **state) {
    enum { NUM = 4, DIM = 3 };
    float *table = rand_floats(NUM * DIM);
    tdef t[1] = {{"emb", 2, {NUM, DIM}, table}};
    gm_st *st = make_st(t, 1);
    gm_net_input in[2] = {{"z", gm_shape1(2)}, {"label", gm_shape0()}};
    gm_net *net = build(st,
                        "[{\"op\":\"embedding\",\"weight\":\"emb\",\"inputs\":[\"label\"],\"name\":\"e\"},"
                        "{\"op\":\"concat\",\"inputs\":[\"e\",\"z\"]}]",
                        2, in);
    float z[2 * NUM], label[NUM];
    double want[NUM * (DIM + 2)];
    for (int b = 0; b < NUM; b++) {
        label[b] = (float)(NUM - 1 - b);
        z[2 * b] = frand(), z[2 * b + 1] = frand();
        for (int d = 0; d < DIM; d++) want[b * (DIM + 2) + d] = table[(NUM - 1 - b) * DIM + d];
        want[b * (DIM + 2) + DIM] = z[2 * b], want[b * (DIM + 2) + DIM + 1] = z[2 * b + 1];
    }
    const float *ins[2] = {z, label};
    check_forward("embedding", net, NUM, ins, want);
    /* an index outside the table, or not an integer, has no embedding */
    float bad[3] = {-1.0f, (float)NUM, 0.5f}, out[3 * (DIM + 2)];
    const float *bins[2] = {z, bad};
    assert_int_equal(gm_net_forward_inputs(net, 3, bins, out), 0);
    for (int b = 0; b < 3; b++) assert_true(isnan(out[b * (DIM + 2)]));
    gm_net_free(net);
    gm_st_free(st);
    free(table);
}

/* ---- folding and fusion only where nothing else reads the value ---- */

static void test_fold_respects_readers(void **state) {
    enum { N = 4 };
    float *w = rand_floats(N * N), *bias = rand_floats(N), *mean = rand_floats(N), var[N];
    for (int i = 0; i < N; i++) var[i] = 0.5f + (float)i;
    tdef t[4] = {{"w", 2, {N, N}, w}, {"b", 1, {N}, bias}, {"m", 1, {N}, mean}, {"v", 1, {N}, var}};
    gm_st *st = make_st(t, 4);
    gm_net_input in = {"x", gm_shape1(N)};
    /* h = linear(x) is read by the batch_norm and by the add: the BN must
     * stay; its own output, read only by the relu, takes the relu's place
     * nowhere (a BN has no fused activation), so 4 ops remain */
    gm_net *net = build(st,
                        "[{\"op\":\"linear\",\"weight\":\"w\",\"bias\":\"b\",\"name\":\"h\"},"
                        "{\"op\":\"batch_norm\",\"mean\":\"m\",\"var\":\"v\"},{\"op\":\"relu\",\"name\":\"r\"},"
                        "{\"op\":\"add\",\"inputs\":[\"h\",\"r\"]}]",
                        1, &in);
    assert_int_equal(gm_net_layers(net), 4);
    /* the same chain without the skip folds the BN and fuses the relu */
    gm_net *chain = build(st,
                          "[{\"op\":\"linear\",\"weight\":\"w\",\"bias\":\"b\",\"name\":\"h\"},{\"op\":\"dropout\"},"
                          "{\"op\":\"batch_norm\",\"mean\":\"m\",\"var\":\"v\"},{\"op\":\"relu\",\"name\":\"r\"}]",
                          1, &in);
    assert_int_equal(gm_net_layers(chain), 1);
    for (int B = 1; B <= BMAX; B += BMAX - 1) {
        float *x = rand_floats((size_t)B * N);
        double want[BMAX * N], want_chain[BMAX * N];
        for (int b = 0; b < B; b++)
            for (int o = 0; o < N; o++) {
                double h = bias[o];
                for (int i = 0; i < N; i++) h += (double)w[o * N + i] * x[b * N + i];
                double r = (h - mean[o]) / sqrt(var[o] + 1e-5);
                r = r > 0 ? r : 0;
                want[b * N + o] = h + r;
                want_chain[b * N + o] = r;
            }
        const float *ins[1] = {x};
        check_forward("residual after linear", net, B, ins, want);
        check_forward("folded chain", chain, B, ins, want_chain);
        free(x);
    }
    gm_net_free(net);
    gm_net_free(chain);
    gm_st_free(st);
    free(w), free(bias), free(mean);
}

/* Many values alive at once: each keeps its own buffer until its last
 * reader, however the buffers are reused. */
static void test_many_live_values(void **state) {
    gm_st *st = make_st(NULL, 0);
    gm_net_input in = {"x", gm_shape1(2)};
    gm_net *net = build(st,
                        "[{\"op\":\"tanh\",\"name\":\"a\"},{\"op\":\"sigmoid\",\"name\":\"b\"},"
                        "{\"op\":\"relu\",\"inputs\":[\"x\"],\"name\":\"c\"},"
                        "{\"op\":\"mul\",\"inputs\":[\"a\",\"x\"],\"name\":\"d\"},"
                        "{\"op\":\"add\",\"inputs\":[\"d\",\"c\"],\"name\":\"e\"},"
                        "{\"op\":\"concat\",\"inputs\":[\"e\",\"a\",\"b\",\"c\",\"d\",\"x\"]}]",
                        1, &in);
    for (int B = 1; B <= BMAX; B += BMAX - 1) {
        float *x = rand_floats((size_t)B * 2);
        double want[BMAX * 12];
        for (int b = 0; b < B; b++)
            for (int j = 0; j < 2; j++) {
                double v = x[b * 2 + j], a = tanh(v), bb = 1 / (1 + exp(-a)), c = v > 0 ? v : 0, d = a * v;
                double vals[6] = {d + c, a, bb, c, d, v};
                for (int k = 0; k < 6; k++) want[b * 12 + k * 2 + j] = vals[k];
            }
        const float *ins[1] = {x};
        check_forward("many live values", net, B, ins, want);
        free(x);
    }
    gm_net_free(net);
    gm_st_free(st);
}

/* ---- refusals name the op, the values and both shapes ---- */

static void test_graph_refusals(void **state) {
    float w[12] = {0};
    tdef t[1] = {{"w", 2, {3, 4}, w}};
    gm_st *st = make_st(t, 1);
    gm_net_input in[2] = {{"x", gm_shape3(2, 3, 4)}, {"v", gm_shape1(4)}};
    struct {
        const char *json;
        const char *must[4];
    } cases[] = {
        {"[{\"op\":\"add\",\"inputs\":[\"x\",\"v\"]}]", {"layer 0 (add)", "'x' [2, 3, 4]", "'v' [4]", "broadcast"}},
        {"[{\"op\":\"relu\",\"inputs\":[\"nope\"]}]", {"layer 0 (relu)", "'nope'", "earlier op"}},
        {"[{\"op\":\"relu\",\"name\":\"x\"}]", {"layer 0 (relu)", "'x'", "already taken"}},
        {"[{\"op\":\"add\"}]", {"layer 0 (add)", "\"inputs\"", "2"}},
        {"[{\"op\":\"relu\",\"inputs\":[\"x\",\"v\"]}]", {"layer 0 (relu)", "\"inputs\"", "1"}},
        {"[{\"op\":\"concat\",\"inputs\":[\"x\",\"v\"]}]", {"layer 0 (concat)", "'v' [4]", "'x' [2, 3, 4]"}},
        {"[{\"op\":\"concat\",\"inputs\":[\"x\",\"x\"],\"dim\":3}]", {"layer 0 (concat)", "\"dim\"", "[2, 3, 4]"}},
        {"[{\"op\":\"split\",\"sizes\":[1,2],\"names\":[\"a\",\"b\"]},{\"op\":\"relu\"}]",
         {"layer 0 (split)", "add up to 3", "[2, 3, 4]"}},
        {"[{\"op\":\"split\",\"sizes\":[1],\"names\":[\"a\",\"b\"]},{\"op\":\"relu\"}]",
         {"layer 0 (split)", "\"sizes\"", "one size per name"}},
        {"[{\"op\":\"relu\"},{\"op\":\"split\",\"sizes\":[1,1],\"names\":[\"a\",\"b\"]}]",
         {"layer 1 (split)", "one output"}},
        {"[{\"op\":\"expand\",\"inputs\":[\"v\"],\"shape\":[3,2,2]}]", {"layer 0 (expand)", "[4]", "entry 0"}},
        {"[{\"op\":\"embedding\",\"weight\":\"w\",\"inputs\":[\"v\"]}]", {"layer 0 (embedding)", "[4]", "one index"}},
        {"[{\"op\":\"relu\",\"name\":\"\"}]", {"layer 0 (relu)", "\"name\"", "1 to 63"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[GM_ERR_LEN] = "";
        gm_net *net = gm_net_build_inputs(st, "gm.test", cases[i].json, 2, in, err);
        int ok = !net && strstr(err, "gm.test");
        for (int k = 0; k < 4 && cases[i].must[k]; k++) ok = ok && strstr(err, cases[i].must[k]);
        if (!ok) {
            print_error("case %zu %s: expected a refusal naming %s..., got %s: \"%s\"\n", i, cases[i].json,
                        cases[i].must[0], net ? "success" : "error", err);
            gm_net_free(net);
            fail();
        }
    }
    gm_st_free(st);
}

/* ---- convolutions: groups, dilation, non-square, "same" ---- */

typedef struct {
    bool transposed;
    int ci, co, h, w, kh, kw, sh, sw, ph, pw, dh, dw, g, oph, opw;
    bool same, bn; /* padding "same"; a batch_norm after it (folded) */
} conv_case;

/* The definition: every (output, input, tap) triple that lines up. */
static void conv_reference(const conv_case *k, const float *x, const float *wt, const float *bias, double *y, int ho,
                           int wo) {
    int cig = k->ci / k->g, cog = k->co / k->g;
    int pt = k->same ? k->dh * (k->kh - 1) / 2 : k->ph, pl = k->same ? k->dw * (k->kw - 1) / 2 : k->pw;
    for (int i = 0; i < k->co * ho * wo; i++) y[i] = bias[i / (ho * wo)];
    for (int ci = 0; ci < k->ci; ci++)
        for (int j = 0; j < cog; j++) {
            int co = ci / cig * cog + j;
            for (int ky = 0; ky < k->kh; ky++)
                for (int kx = 0; kx < k->kw; kx++)
                    if (k->transposed) {
                        double wv = wt[((ci * cog + j) * k->kh + ky) * k->kw + kx];
                        for (int iy = 0; iy < k->h; iy++)
                            for (int ix = 0; ix < k->w; ix++) {
                                int oy = iy * k->sh - k->ph + ky * k->dh, ox = ix * k->sw - k->pw + kx * k->dw;
                                if (oy >= 0 && oy < ho && ox >= 0 && ox < wo)
                                    y[(co * ho + oy) * wo + ox] += wv * x[(ci * k->h + iy) * k->w + ix];
                            }
                    } else {
                        double wv = wt[((co * cig + ci % cig) * k->kh + ky) * k->kw + kx];
                        for (int oy = 0; oy < ho; oy++)
                            for (int ox = 0; ox < wo; ox++) {
                                int iy = oy * k->sh - pt + ky * k->dh, ix = ox * k->sw - pl + kx * k->dw;
                                if (iy >= 0 && iy < k->h && ix >= 0 && ix < k->w)
                                    y[(co * ho + oy) * wo + ox] += wv * x[(ci * k->h + iy) * k->w + ix];
                            }
                    }
        }
}

static void check_conv(const conv_case *k) {
    int wn = k->transposed ? k->ci * (k->co / k->g) * k->kh * k->kw : k->co * (k->ci / k->g) * k->kh * k->kw;
    float *wt = rand_floats((size_t)wn), *bias = rand_floats((size_t)k->co), *mean = rand_floats((size_t)k->co);
    float var[64];
    for (int c = 0; c < k->co; c++) var[c] = 0.3f + 0.1f * (float)c;
    tdef t[4] = {
        {"w", 4, {k->transposed ? k->ci : k->co, k->transposed ? k->co / k->g : k->ci / k->g, k->kh, k->kw}, wt},
        {"b", 1, {k->co}, bias},
        {"m", 1, {k->co}, mean},
        {"v", 1, {k->co}, var}};
    gm_st *st = make_st(t, 4);
    char json[512], pad[64];
    if (k->same) snprintf(pad, sizeof pad, "\"same\"");
    else snprintf(pad, sizeof pad, "[%d,%d]", k->ph, k->pw);
    int at = snprintf(json, sizeof json,
                      "[{\"op\":\"%s\",\"weight\":\"w\",\"bias\":\"b\",\"stride\":[%d,%d],\"padding\":%s,"
                      "\"dilation\":[%d,%d],\"groups\":%d",
                      k->transposed ? "conv_transpose2d" : "conv2d", k->sh, k->sw, pad, k->dh, k->dw, k->g);
    if (k->transposed) at += snprintf(json + at, sizeof json - at, ",\"output_padding\":[%d,%d]", k->oph, k->opw);
    snprintf(json + at, sizeof json - at, "}%s]", k->bn ? ",{\"op\":\"batch_norm\",\"mean\":\"m\",\"var\":\"v\"}" : "");
    gm_net_input in = {"image", gm_shape3(k->ci, k->h, k->w)};
    gm_net *net = build(st, json, 1, &in);
    assert_int_equal(gm_net_layers(net), 1);
    gm_shape os = gm_net_out_shape(net);
    int ho = os.dim[1], wo = os.dim[2], n_in = k->ci * k->h * k->w, n_out = k->co * ho * wo;
    int want_ho = k->transposed ? (k->h - 1) * k->sh - 2 * k->ph + k->dh * (k->kh - 1) + k->oph + 1
                  : k->same     ? k->h
                                : (k->h + 2 * k->ph - k->dh * (k->kh - 1) - 1) / k->sh + 1;
    assert_int_equal(ho, want_ho);
    for (int B = 1; B <= 3; B += 2) {
        float *x = rand_floats((size_t)B * n_in);
        double *want = malloc((size_t)B * n_out * sizeof *want);
        for (int b = 0; b < B; b++) {
            conv_reference(k, x + (size_t)b * n_in, wt, bias, want + (size_t)b * n_out, ho, wo);
            for (int i = 0; k->bn && i < n_out; i++) {
                int c = i / (ho * wo);
                want[(size_t)b * n_out + i] = (want[(size_t)b * n_out + i] - mean[c]) / sqrt(var[c] + 1e-5);
            }
        }
        const float *ins[1] = {x};
        check_forward(json, net, B, ins, want);
        free(x);
        free(want);
    }
    gm_net_free(net);
    gm_st_free(st);
    free(wt), free(bias), free(mean);
}

static void test_conv_general(void **state) {
    const conv_case cases[] = {
        /* conv2d: groups, dilation, non-square kernel / stride / padding, same */
        {false, 4, 6, 7, 6, 3, 2, 2, 1, 1, 0, 1, 1, 2, 0, 0, false, true},
        {false, 3, 3, 8, 7, 3, 3, 1, 2, 2, 1, 2, 1, 3, 0, 0, false, false}, /* depthwise, dilated */
        {false, 2, 4, 6, 5, 4, 3, 1, 1, 0, 0, 1, 2, 1, 0, 0, true, true},   /* "same", even kernel: odd pad after */
        {false, 4, 2, 5, 5, 1, 1, 1, 1, 0, 0, 1, 1, 2, 0, 0, false, false}, /* grouped 1x1 */
        /* conv_transpose2d: groups, dilation, non-square, output padding */
        {true, 4, 6, 3, 4, 3, 2, 2, 3, 1, 0, 1, 1, 2, 1, 2, false, true},
        {true, 3, 3, 4, 3, 2, 3, 1, 2, 0, 1, 2, 2, 3, 0, 1, false, false},
        {true, 2, 5, 3, 3, 4, 4, 2, 2, 1, 1, 1, 1, 1, 0, 0, false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_conv(&cases[i]);
}

/* Two grouped conv_transpose2d in a row hand over channels-last. */
static void test_conv_t_chain_groups(void **state) {
    float *w1 = rand_floats(4 * 3 * 2 * 2), *w2 = rand_floats(6 * 1 * 3 * 3), *b1 = rand_floats(6),
          *b2 = rand_floats(2);
    tdef t[4] = {{"w1", 4, {4, 3, 2, 2}, w1}, {"w2", 4, {6, 1, 3, 3}, w2}, {"b1", 1, {6}, b1}, {"b2", 1, {2}, b2}};
    gm_st *st = make_st(t, 4);
    gm_net_input in = {"z", gm_shape3(4, 3, 2)};
    gm_net *net = build(st,
                        "[{\"op\":\"conv_transpose2d\",\"weight\":\"w1\",\"bias\":\"b1\",\"stride\":2,\"groups\":2},"
                        "{\"op\":\"conv_transpose2d\",\"weight\":\"w2\",\"bias\":\"b2\",\"padding\":1,\"groups\":2}]",
                        1, &in);
    conv_case k1 = {true, 4, 6, 3, 2, 2, 2, 2, 2, 0, 0, 1, 1, 2, 0, 0, false, false};
    conv_case k2 = {true, 6, 2, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2, 0, 0, false, false};
    float *x = rand_floats(2 * 24);
    double mid[6 * 6 * 4], want[2 * 2 * 6 * 4];
    float midf[6 * 6 * 4];
    for (int b = 0; b < 2; b++) {
        conv_reference(&k1, x + b * 24, w1, b1, mid, 6, 4);
        for (int i = 0; i < 6 * 6 * 4; i++) midf[i] = (float)mid[i];
        conv_reference(&k2, midf, w2, b2, want + b * 48, 6, 4);
    }
    const float *ins[1] = {x};
    check_forward("conv_transpose2d chain with groups", net, 2, ins, want);
    gm_net_free(net);
    gm_st_free(st);
    free(w1), free(w2), free(b1), free(b2), free(x);
}

/* ---- pad and upsample ---- */

static void test_pad_modes(void **state) {
    gm_st *st = make_st(NULL, 0);
    gm_net_input in = {"x", gm_shape3(2, 3, 4)};
    const char *modes[3] = {"zero", "reflect", "replicate"};
    for (int m = 0; m < 3; m++) {
        char json[256];
        snprintf(json, sizeof json, "[{\"op\":\"pad\",\"pad\":[3,1,2,0],\"mode\":\"%s\",\"value\":0.5}]", modes[m]);
        gm_net *net = build(st, json, 1, &in);
        gm_shape os = gm_net_out_shape(net);
        assert_int_equal(os.dim[1], 5);
        assert_int_equal(os.dim[2], 8);
        float *x = rand_floats(2 * 24);
        double want[2 * 5 * 8];
        for (int c = 0; c < 2; c++)
            for (int y = 0; y < 5; y++)
                for (int xx = 0; xx < 8; xx++) {
                    int sy = y - 2, sx = xx - 3;
                    bool inside = sy >= 0 && sy < 3 && sx >= 0 && sx < 4;
                    if (m == 1) { /* reflect: mirror about the edge, edge not repeated */
                        sy = sy < 0 ? -sy : sy > 2 ? 4 - sy : sy;
                        sx = sx < 0 ? -sx : sx > 3 ? 6 - sx : sx;
                    } else if (m == 2) {
                        sy = sy < 0 ? 0 : sy > 2 ? 2 : sy;
                        sx = sx < 0 ? 0 : sx > 3 ? 3 : sx;
                    }
                    want[(c * 5 + y) * 8 + xx] = m == 0 && !inside ? 0.5 : x[(c * 3 + sy) * 4 + sx];
                }
        const float *ins[1] = {x};
        check_forward(json, net, 1, ins, want);
        gm_net_free(net);
        free(x);
    }
    char err[GM_ERR_LEN] = "";
    assert_null(
        gm_net_build_inputs(st, "gm.test", "[{\"op\":\"pad\",\"pad\":[4,0],\"mode\":\"reflect\"}]", 1, &in, err));
    assert_non_null(strstr(err, "layer 0 (pad)"));
    assert_null(
        gm_net_build_inputs(st, "gm.test", "[{\"op\":\"pad\",\"pad\":[1,1],\"mode\":\"circular\"}]", 1, &in, err));
    assert_non_null(strstr(err, "\"mode\""));
    gm_st_free(st);
}

/* PyTorch's source coordinate of output pixel i (align_corners false:
 * half-pixel centres, clamped at 0). */
static double up_src(int i, int n_in, int n_out, bool align) {
    if (align) return n_out > 1 ? i * (double)(n_in - 1) / (n_out - 1) : 0;
    double s = (i + 0.5) * n_in / n_out - 0.5;
    return s < 0 ? 0 : s;
}

static void test_upsample(void **state) {
    gm_st *st = make_st(NULL, 0);
    gm_net_input in = {"x", gm_shape3(2, 3, 4)};
    const char *jsons[4] = {"[{\"op\":\"upsample\",\"scale_factor\":[2,3]}]",
                            "[{\"op\":\"upsample\",\"size\":[7,5],\"mode\":\"nearest\"}]",
                            "[{\"op\":\"upsample\",\"scale_factor\":2.0,\"mode\":\"bilinear\"}]",
                            "[{\"op\":\"upsample\",\"size\":[5,9],\"mode\":\"bilinear\",\"align_corners\":true}]"};
    for (int j = 0; j < 4; j++) {
        gm_net *net = build(st, jsons[j], 1, &in);
        gm_shape os = gm_net_out_shape(net);
        int Ho = os.dim[1], Wo = os.dim[2];
        float *x = rand_floats(2 * 12);
        double *want = malloc((size_t)2 * Ho * Wo * sizeof *want);
        bool bilinear = j >= 2, align = j == 3;
        for (int c = 0; c < 2; c++)
            for (int y = 0; y < Ho; y++)
                for (int xx = 0; xx < Wo; xx++) {
                    double v;
                    if (!bilinear) {
                        int sy = (int)floor(y * 3.0 / Ho), sx = (int)floor(xx * 4.0 / Wo);
                        v = x[(c * 3 + sy) * 4 + sx];
                    } else {
                        double fy = up_src(y, 3, Ho, align), fx = up_src(xx, 4, Wo, align);
                        int y0 = (int)fy, x0 = (int)fx, y1 = y0 < 2 ? y0 + 1 : 2, x1 = x0 < 3 ? x0 + 1 : 3;
                        double ty = fy - y0, tx = fx - x0;
                        const float *p = x + c * 12;
                        v = (1 - ty) * ((1 - tx) * p[y0 * 4 + x0] + tx * p[y0 * 4 + x1]) +
                            ty * ((1 - tx) * p[y1 * 4 + x0] + tx * p[y1 * 4 + x1]);
                    }
                    want[(c * Ho + y) * Wo + xx] = v;
                }
        const float *ins[1] = {x};
        check_forward(jsons[j], net, 1, ins, want);
        gm_net_free(net);
        free(x);
        free(want);
    }
    gm_st_free(st);
}

/* ---- activations, standalone and fused into the linear before ---- */

static double act_ref(int k, double x) {
    switch (k) {
    case 0:
        return x > 0 ? x : 0.7 * expm1(x); /* elu alpha 0.7 */
    case 1:
        return 0.5 * x * (1 + erf(x / sqrt(2.0))); /* gelu */
    case 2:
        return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); /* gelu tanh */
    case 3:
        return x / (1 + exp(-x)); /* silu */
    case 4:
        return 2 * x > 1.5 ? x : log1p(exp(2 * x)) / 2; /* softplus beta 2, threshold 1.5 */
    default:
        return x < -0.5 ? -0.5 : x > 0.25 ? 0.25 : x; /* hardtanh [-0.5, 0.25] */
    }
}

static void test_activations(void **state) {
    static const char *const ops[6] = {"{\"op\":\"elu\",\"alpha\":0.7}",
                                       "{\"op\":\"gelu\"}",
                                       "{\"op\":\"gelu\",\"approximate\":\"tanh\"}",
                                       "{\"op\":\"silu\"}",
                                       "{\"op\":\"softplus\",\"beta\":2,\"threshold\":1.5}",
                                       "{\"op\":\"hardtanh\",\"min\":-0.5,\"max\":0.25}"};
    enum { N = 6 };
    float *w = rand_floats(N * N), *bias = rand_floats(N);
    for (int i = 0; i < N * N; i++) w[i] *= 3; /* reach both sides of every threshold */
    tdef t[2] = {{"w", 2, {N, N}, w}, {"b", 1, {N}, bias}};
    gm_st *st = make_st(t, 2);
    gm_net_input in = {"x", gm_shape1(N)};
    for (int k = 0; k < 6; k++)
        for (int fused = 0; fused < 2; fused++) {
            char json[256];
            snprintf(json, sizeof json, "[%s%s]", fused ? "{\"op\":\"linear\",\"weight\":\"w\",\"bias\":\"b\"}," : "",
                     ops[k]);
            gm_net *net = build(st, json, 1, &in);
            assert_int_equal(gm_net_layers(net), 1);
            float *x = rand_floats(BMAX * N);
            for (int i = 0; i < BMAX * N; i++) x[i] *= 3;
            double want[BMAX * N];
            for (int b = 0; b < BMAX; b++)
                for (int o = 0; o < N; o++) {
                    double v = x[b * N + o];
                    if (fused) {
                        v = bias[o];
                        for (int i = 0; i < N; i++) v += (double)w[o * N + i] * x[b * N + i];
                    }
                    want[b * N + o] = act_ref(k, v);
                }
            const float *ins[1] = {x};
            check_forward(json, net, BMAX, ins, want);
            gm_net_free(net);
            free(x);
        }
    gm_st_free(st);
    free(w), free(bias);
}

/* ---- prelu, softmax, instance / group / layer norm on [C, H, W] ---- */

static void test_norms(void **state) {
    float *g = rand_floats(C), *bt = rand_floats(C), *lg = rand_floats(H * W), *lb = rand_floats(H * W),
          *slopes = rand_floats(C);
    float mean[C] = {0.1f, -0.2f, 0.3f}, var[C] = {0.5f, 1.5f, 2.0f}, one = 0.2f;
    tdef t[8] = {{"g", 1, {C}, g},    {"b", 1, {C}, bt},  {"lg", 2, {H, W}, lg},      {"lb", 2, {H, W}, lb},
                 {"m", 1, {C}, mean}, {"v", 1, {C}, var}, {"slopes", 1, {C}, slopes}, {"one", 1, {1}, &one}};
    gm_st *st = make_st(t, 8);
    gm_net_input in = {"x", gm_shape3(C, H, W)};
    const char *jsons[] = {
        "[{\"op\":\"instance_norm\",\"weight\":\"g\",\"bias\":\"b\",\"eps\":0.001}]",
        "[{\"op\":\"instance_norm\"}]",
        "[{\"op\":\"instance_norm\",\"weight\":\"g\",\"bias\":\"b\",\"mean\":\"m\",\"var\":\"v\"}]",
        "[{\"op\":\"group_norm\",\"groups\":1,\"weight\":\"g\",\"bias\":\"b\"}]",
        "[{\"op\":\"layer_norm\",\"normalized_shape\":[4,5],\"weight\":\"lg\",\"bias\":\"lb\"}]",
        "[{\"op\":\"layer_norm\",\"normalized_shape\":[5]}]",
        "[{\"op\":\"prelu\",\"weight\":\"slopes\"}]",
        "[{\"op\":\"prelu\",\"weight\":\"one\"}]",
        "[{\"op\":\"softmax\",\"dim\":0}]",
        "[{\"op\":\"softmax\",\"dim\":-1}]",
    };
    for (int j = 0; j < 10; j++) {
        gm_net *net = build(st, jsons[j], 1, &in);
        for (int B = 1; B <= 2; B++) {
            float *x = rand_floats((size_t)B * C * P);
            double want[2 * C * P];
            for (int b = 0; b < B; b++) {
                const float *xb = x + b * C * P;
                double *yb = want + b * C * P;
                for (int i = 0; i < C * P; i++) {
                    int c = i / P, h = i / W % H, w = i % W;
                    double v = xb[i], s = 0, sq = 0, n = 0;
                    if (j <= 1 || j == 3 || j == 4 || j == 5) { /* statistics over the block of i */
                        for (int k = 0; k < C * P; k++) {
                            bool same = j <= 1 ? k / P == c : j == 3 ? true : j == 4 ? k / P == c : k / W == i / W;
                            if (same) s += xb[k], n++;
                        }
                        for (int k = 0; k < C * P; k++) {
                            bool same = j <= 1 ? k / P == c : j == 3 ? true : j == 4 ? k / P == c : k / W == i / W;
                            if (same) sq += (xb[k] - s / n) * (xb[k] - s / n);
                        }
                        v = (v - s / n) / sqrt(sq / n + (j == 0 ? 1e-3 : 1e-5));
                    }
                    if (j == 0 || j == 3) v = v * g[c] + bt[c];
                    if (j == 2) v = (v - mean[c]) / sqrt(var[c] + 1e-5) * g[c] + bt[c];
                    if (j == 4) v = v * lg[h * W + w] + lb[h * W + w];
                    if (j == 6) v = v > 0 ? v : v * slopes[c];
                    if (j == 7) v = v > 0 ? v : v * 0.2f;
                    if (j >= 8) { /* softmax over channels (dim 0) or over a row (dim -1) */
                        double mx = -1e300, sum = 0;
                        for (int k = 0; k < (j == 8 ? C : W); k++) {
                            double e = xb[j == 8 ? (k * H + h) * W + w : (c * H + h) * W + k];
                            mx = e > mx ? e : mx;
                        }
                        for (int k = 0; k < (j == 8 ? C : W); k++)
                            sum += exp(xb[j == 8 ? (k * H + h) * W + w : (c * H + h) * W + k] - mx);
                        v = exp(v - mx) / sum;
                    }
                    yb[i] = v;
                }
            }
            const float *ins[1] = {x};
            check_forward(jsons[j], net, B, ins, want);
            free(x);
        }
        gm_net_free(net);
    }
    /* instance_norm with running statistics folds into the conv before */
    float k1[C * C] = {0};
    for (int c = 0; c < C; c++) k1[c * C + c] = 1.0f;
    tdef t2[5] = {
        {"k", 4, {C, C, 1, 1}, k1}, {"g", 1, {C}, g}, {"b", 1, {C}, bt}, {"m", 1, {C}, mean}, {"v", 1, {C}, var}};
    gm_st *st2 = make_st(t2, 5);
    gm_net *net = build(st2,
                        "[{\"op\":\"conv2d\",\"weight\":\"k\"},{\"op\":\"instance_norm\",\"weight\":\"g\","
                        "\"bias\":\"b\",\"mean\":\"m\",\"var\":\"v\"},{\"op\":\"silu\"}]",
                        1, &in);
    assert_int_equal(gm_net_layers(net), 1);
    gm_net_free(net);
    gm_st_free(st2);
    /* refusals */
    char err[GM_ERR_LEN] = "";
    assert_null(gm_net_build_inputs(st, "gm.test", "[{\"op\":\"group_norm\",\"groups\":2}]", 1, &in, err));
    assert_non_null(strstr(err, "layer 0 (group_norm)"));
    assert_non_null(strstr(err, "[3, 4, 5]"));
    assert_null(gm_net_build_inputs(st, "gm.test", "[{\"op\":\"layer_norm\",\"normalized_shape\":[4]}]", 1, &in, err));
    assert_non_null(strstr(err, "trailing"));
    assert_null(gm_net_build_inputs(
        st, "gm.test", "[{\"op\":\"layer_norm\",\"normalized_shape\":[5],\"weight\":\"g\"}]", 1, &in, err));
    assert_non_null(strstr(err, "'g'"));
    assert_null(gm_net_build_inputs(st, "gm.test", "[{\"op\":\"gelu\",\"approximate\":\"fast\"}]", 1, &in, err));
    assert_non_null(strstr(err, "\"approximate\""));
    assert_null(gm_net_build_inputs(st, "gm.test", "[{\"op\":\"hardtanh\",\"min\":1,\"max\":0}]", 1, &in, err));
    assert_non_null(strstr(err, "layer 0 (hardtanh)"));
    gm_st_free(st);
    free(g), free(bt), free(lg), free(lb), free(slopes);
}

/* ---- pooling and pixel_shuffle ---- */

typedef struct {
    bool avg, include_pad;
    int kh, kw, sh, sw, ph, pw, dh, dw;
} pool_case;

static void test_pools(void **state) {
    enum { PH = 7, PW = 6 };
    gm_st *st = make_st(NULL, 0);
    gm_net_input in = {"x", gm_shape3(2, PH, PW)};
    const pool_case cases[] = {
        {false, false, 2, 2, 2, 2, 0, 0, 1, 1}, {false, false, 3, 2, 2, 1, 1, 1, 1, 1},
        {false, false, 3, 3, 1, 2, 1, 0, 2, 1}, {true, true, 3, 2, 2, 1, 1, 1, 1, 1},
        {true, false, 3, 3, 2, 2, 1, 1, 1, 1},  {true, true, 2, 3, 1, 3, 0, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const pool_case *k = &cases[i];
        char json[256];
        snprintf(json, sizeof json,
                 "[{\"op\":\"%s\",\"kernel_size\":[%d,%d],\"stride\":[%d,%d],\"padding\":[%d,%d]%s%s}]",
                 k->avg ? "avg_pool2d" : "max_pool2d", k->kh, k->kw, k->sh, k->sw, k->ph, k->pw,
                 k->avg ? (k->include_pad ? "" : ",\"count_include_pad\":false") : "",
                 k->avg ? "" : (k->dh > 1 ? ",\"dilation\":[2,1]" : ""));
        gm_net *net = build(st, json, 1, &in);
        int ho = (PH + 2 * k->ph - k->dh * (k->kh - 1) - 1) / k->sh + 1;
        int wo = (PW + 2 * k->pw - k->dw * (k->kw - 1) - 1) / k->sw + 1;
        assert_int_equal(gm_net_out_shape(net).dim[1], ho);
        assert_int_equal(gm_net_out_shape(net).dim[2], wo);
        float *x = rand_floats(2 * PH * PW);
        double *want = malloc((size_t)2 * ho * wo * sizeof *want);
        for (int c = 0; c < 2; c++)
            for (int oy = 0; oy < ho; oy++)
                for (int ox = 0; ox < wo; ox++) {
                    double mx = -INFINITY, sum = 0;
                    int n = 0;
                    for (int ky = 0; ky < k->kh; ky++)
                        for (int kx = 0; kx < k->kw; kx++) {
                            int iy = oy * k->sh - k->ph + ky * k->dh, ix = ox * k->sw - k->pw + kx * k->dw;
                            bool inside = iy >= 0 && iy < PH && ix >= 0 && ix < PW;
                            /* with padding counted, the window stops at the padded edge */
                            if (inside || (k->include_pad && iy < PH + k->ph && ix < PW + k->pw)) n++;
                            if (!inside) continue;
                            double v = x[(c * PH + iy) * PW + ix];
                            mx = v > mx ? v : mx;
                            sum += v;
                        }
                    want[(c * ho + oy) * wo + ox] = k->avg ? sum / n : mx;
                }
        const float *ins[1] = {x};
        check_forward(json, net, 1, ins, want);
        gm_net_free(net);
        free(x);
        free(want);
    }
    /* pixel_shuffle: [C r^2, H, W] -> [C, H r, W r] */
    gm_net_input in2 = {"x", gm_shape3(8, 2, 3)};
    gm_net *net = build(st, "[{\"op\":\"pixel_shuffle\",\"upscale_factor\":2}]", 1, &in2);
    float *x = rand_floats(48);
    double want[48];
    for (int c = 0; c < 2; c++)
        for (int y = 0; y < 4; y++)
            for (int xx = 0; xx < 6; xx++)
                want[(c * 4 + y) * 6 + xx] = x[((c * 4 + (y % 2) * 2 + xx % 2) * 2 + y / 2) * 3 + xx / 2];
    const float *ins[1] = {x};
    check_forward("pixel_shuffle", net, 1, ins, want);
    gm_net_free(net);
    free(x);
    char err[GM_ERR_LEN] = "";
    assert_null(gm_net_build_inputs(st, "gm.test", "[{\"op\":\"max_pool2d\",\"kernel_size\":2,\"ceil_mode\":true}]", 1,
                                    &in, err));
    assert_non_null(strstr(err, "\"ceil_mode\""));
    assert_null(
        gm_net_build_inputs(st, "gm.test", "[{\"op\":\"avg_pool2d\",\"kernel_size\":2,\"padding\":2}]", 1, &in, err));
    assert_non_null(strstr(err, "layer 0 (avg_pool2d)"));
    assert_null(gm_net_build_inputs(st, "gm.test", "[{\"op\":\"pixel_shuffle\",\"upscale_factor\":3}]", 1, &in2, err));
    assert_non_null(strstr(err, "[8, 2, 3]"));
    gm_st_free(st);
}

/* ---- the PyTorch cases ---- */

static void check_pytorch_cases(const char *file) {
    gm_st *st = load_ref(file);
    json_t *cases = json_loads(gm_st_meta(st, "cases"), 0, NULL);
    assert_true(json_array_size(cases) > 0);
    for (size_t c = 0; c < json_array_size(cases); c++) {
        const char *name = json_string_value(json_array_get(cases, c));
        char key[256];
        snprintf(key, sizeof key, "%s.inputs", name);
        json_t *names = json_loads(gm_st_meta(st, key), 0, NULL);
        gm_net_input in[GM_NET_MAX_INPUTS];
        const float *x[GM_NET_MAX_INPUTS];
        char keys[GM_NET_MAX_INPUTS][256];
        int B = 0, n = (int)json_array_size(names);
        for (int i = 0; i < n; i++) {
            snprintf(keys[i], sizeof keys[i], "%s.in.%s", name, json_string_value(json_array_get(names, i)));
            const gm_tensor *t = gm_st_tensor(st, keys[i]);
            assert_non_null(t);
            B = (int)t->shape[0];
            in[i].name = json_string_value(json_array_get(names, i));
            in[i].shape = (gm_shape){t->ndim - 1, {0, 0, 0}};
            for (int d = 1; d < t->ndim; d++) in[i].shape.dim[d - 1] = (int)t->shape[d];
            x[i] = t->f32;
        }
        snprintf(key, sizeof key, "%s.graph", name);
        char err[GM_ERR_LEN] = "";
        gm_net *net = gm_net_build_inputs(st, name, gm_st_meta(st, key), n, in, err);
        if (!net) print_error("%s\n", err);
        assert_non_null(net);
        snprintf(key, sizeof key, "%s.out", name);
        const gm_tensor *want = gm_st_tensor(st, key);
        assert_non_null(want);
        assert_int_equal((int64_t)B * gm_shape_size(gm_net_out_shape(net)), want->numel);
        float *got = malloc((size_t)want->numel * sizeof *got);
        assert_int_equal(gm_net_forward_inputs(net, B, x, got), 0);
        assert_close_f(name, got, want->f32, (size_t)want->numel, 1e-4);
        free(got);
        gm_net_free(net);
        json_decref(names);
    }
    json_decref(cases);
    gm_st_free(st);
}

static void test_pytorch_cases(void **state) {
    check_pytorch_cases("graph_ops.safetensors");    /* written by hand */
    check_pytorch_cases("graph_random.safetensors"); /* random op sequences */
}

/* A GAN generator whose file names its inputs (label, z, onehot, code)
 * receives each by name, in its own order. */
static void test_gan_named_inputs(void **state) {
    gm_model *m = load_model("gan_graph.safetensors");
    gm_st *ref = load_ref("gan_graph.ref.safetensors");
    const gm_model_info *info = gm_model_get_info(m);
    const gm_tensor *z = gm_st_tensor(ref, "z"), *lt = gm_st_tensor(ref, "labels");
    int B = (int)z->shape[0], labels[8];
    for (int r = 0; r < B; r++) labels[r] = (int)lt->i64[r];
    float px[8 * 16];
    assert_int_equal(info->dim, 16);
    assert_int_equal(gm_model_decode(m, B, z->f32, labels, px), 0);
    assert_close_f("gan_graph pixels", px, ref_f32(ref, "pixels"), (size_t)B * info->dim, 1e-4);
    gm_st_free(ref);
    gm_model_free(m);
}

/* Loads a GAN model file of one linear generator [4x1x1 image] with extra
 * metadata; NULL with the message in err when refused. */
static gm_model *load_gan(const float *w, int in, const char *extra, char err[GM_ERR_LEN]) {
    char meta[1024];
    snprintf(meta, sizeof meta,
             "{\"gm.format\":\"1\",\"gm.family\":\"gan\",\"gm.image\":\"2x2x1\",\"gm.latent_dim\":\"3\"%s,"
             "\"gm.generator\":\"[{\\\"op\\\":\\\"linear\\\",\\\"weight\\\":\\\"w\\\"}]\"}",
             extra);
    tdef t[1] = {{"w", 2, {4, in}, w}};
    size_t len;
    uint8_t *buf = make_file(t, 1, meta, &len);
    char path[TEMP_PATH_LEN];
    temp_file(path, "graph", buf, len);
    free(buf);
    gm_model *m = gm_model_load(path, err);
    unlink(path);
    return m;
}

/* Named inputs z and onehot concatenated in the graph give what a file
 * without gm.generator_inputs gives (the same [Z + C] vector); names the
 * model cannot feed are refused. */
static void test_gan_inputs_by_name(void **state) {
    float *w = rand_floats(4 * 5);
    char err[GM_ERR_LEN] = "";
    const char *classes = ",\"gm.num_classes\":\"2\",\"gm.class_names\":\"[\\\"a\\\",\\\"b\\\"]\"";
    char extra[512];
    gm_model *legacy = load_gan(w, 5, classes, err);
    if (!legacy) print_error("%s\n", err);
    assert_non_null(legacy);
    snprintf(extra, sizeof extra, "%s,\"gm.generator_inputs\":\"[\\\"z\\\",\\\"onehot\\\"]\"", classes);
    /* the graph: concat [z, onehot] then the same linear */
    char meta[1024];
    snprintf(meta, sizeof meta,
             "{\"gm.format\":\"1\",\"gm.family\":\"gan\",\"gm.image\":\"2x2x1\",\"gm.latent_dim\":\"3\"%s,"
             "\"gm.generator\":\"[{\\\"op\\\":\\\"concat\\\",\\\"inputs\\\":[\\\"z\\\",\\\"onehot\\\"]},"
             "{\\\"op\\\":\\\"linear\\\",\\\"weight\\\":\\\"w\\\"}]\"}",
             extra);
    tdef t[1] = {{"w", 2, {4, 5}, w}};
    size_t len;
    uint8_t *buf = make_file(t, 1, meta, &len);
    char path[TEMP_PATH_LEN];
    temp_file(path, "graph", buf, len);
    free(buf);
    gm_model *named = gm_model_load(path, err);
    unlink(path);
    if (!named) print_error("%s\n", err);
    assert_non_null(named);
    float z[4 * 3], a[4 * 4], b[4 * 4];
    int labels[4] = {0, 1, 1, 0};
    for (int i = 0; i < 12; i++) z[i] = frand();
    assert_int_equal(gm_model_decode(legacy, 4, z, labels, a), 0);
    assert_int_equal(gm_model_decode(named, 4, z, labels, b), 0);
    assert_memory_equal(a, b, sizeof a);
    gm_model_free(legacy);
    gm_model_free(named);
    struct {
        const char *extra, *must;
    } bad[] = {
        {",\"gm.generator_inputs\":\"[\\\"z\\\",\\\"lbl\\\"]\"", "'lbl'"},
        {",\"gm.generator_inputs\":\"[\\\"z\\\",\\\"label\\\"]\"", "no classes"},
        {",\"gm.generator_inputs\":\"[\\\"z\\\",\\\"code\\\"]\"", "gm.code_dim"},
        {",\"gm.generator_inputs\":\"[\\\"z\\\",\\\"code\\\"]\",\"gm.code_dim\":\"0\"", "gm.code_dim"},
        {",\"gm.generator_inputs\":\"z\"", "gm.generator_inputs"},
        {",\"gm.generator_inputs\":\"[\\\"z\\\",\\\"z\\\"]\"", "distinct"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gm_model *m = load_gan(w, 3, bad[i].extra, err);
        if (m || !strstr(err, bad[i].must)) {
            print_error("case %zu: expected a refusal naming %s, got %s: \"%s\"\n", i, bad[i].must,
                        m ? "success" : "error", err);
            gm_model_free(m);
            fail();
        }
    }
    free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_mul_broadcast),
        cmocka_unit_test(test_concat_split_expand),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_fold_respects_readers),
        cmocka_unit_test(test_many_live_values),
        cmocka_unit_test(test_graph_refusals),
        cmocka_unit_test(test_conv_general),
        cmocka_unit_test(test_conv_t_chain_groups),
        cmocka_unit_test(test_pad_modes),
        cmocka_unit_test(test_upsample),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_norms),
        cmocka_unit_test(test_pools),
        cmocka_unit_test(test_pytorch_cases),
        cmocka_unit_test(test_gan_named_inputs),
        cmocka_unit_test(test_gan_inputs_by_name),
    };
    return cmocka_run_group_tests_name("layer graphs", tests, NULL, NULL);
}
