/*
 * test_outputs.c - the float reply formats: format=npy (and Accept:
 * application/x-npy or application/octet-stream) and format=pixels.
 *
 * The .npy replies are read back by a reader written here from the format's
 * description (magic, version 1.0, a little-endian header length, a Python
 * dict literal padded so the data starts at a multiple of 64, little-endian
 * float32), and compared with what the same request gives in the formats
 * that existed before: pixels as JSON numbers (equal as float32, since ten
 * significant digits carry a float exactly), the 8-bit PNG of the same seed
 * (within half a grey level), encode's JSON z and logp's JSON log p.
 */
#include "testutil.h"

#include <strings.h>

#include "base64.h"
#include "daemon.h"
#include "pngio.h"

static daemon_t d;

static int start(void **state) {
    const char *args[] = {FIXTURE_MODELS, NULL};
    d = daemon_start("outputs", args);
    return 0;
}

static int stop(void **state) { return daemon_stop_reported(&d); }

typedef struct {
    int ndim;
    long shape[8];
    size_t count;
    float *data; /* malloc'd */
} npy_t;

/* Parses a .npy file of float32 as the format describes it; fails the test
 * on anything else. */
static npy_t npy_read(const uint8_t *b, size_t len) {
    npy_t a = {0};
    assert_true(len >= 10);
    assert_memory_equal(b, "\x93NUMPY", 6);
    assert_int_equal(b[6], 1);
    assert_int_equal(b[7], 0);
    size_t hlen = b[8] | (size_t)b[9] << 8;
    assert_true(10 + hlen <= len);
    assert_int_equal((10 + hlen) % 64, 0);
    char dict[4096];
    assert_true(hlen < sizeof dict);
    memcpy(dict, b + 10, hlen);
    dict[hlen] = 0;
    assert_int_equal(dict[hlen - 1], '\n');
    assert_non_null(strstr(dict, "'descr': '<f4'"));
    assert_non_null(strstr(dict, "'fortran_order': False"));
    const char *s = strstr(dict, "'shape': (");
    assert_non_null(s);
    s += strlen("'shape': (");
    a.count = 1;
    while (*s != ')') {
        char *end;
        long v = strtol(s, &end, 10);
        assert_true(end > s && v >= 0);
        a.shape[a.ndim++] = v;
        a.count *= (size_t)v;
        s = end + strspn(end, ", ");
    }
    assert_int_equal(len - 10 - hlen, 4 * a.count);
    a.data = malloc(4 * a.count + 1);
    const uint8_t *p = b + 10 + hlen;
    for (size_t i = 0; i < a.count; i++) {
        uint32_t u =
            p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
        memcpy(&a.data[i], &u, 4);
    }
    return a;
}

static void assert_header(const reply_t *r, const char *name, const char *want) {
    char v[256] = "";
    if (!reply_header(r, name, v, sizeof v) || strcasecmp(v, want)) {
        print_error("%s: \"%s\", want \"%s\"\n", name, v, want);
        fail();
    }
}

static reply_t get_ok(const char *path, const char *headers) {
    reply_t r = http(d.port, "GET", path, headers, NULL, 0);
    if (r.status != 200) print_error("GET %s: %d %.300s\n", path, r.status, r.body ? (char *)r.body : "");
    assert_int_equal(r.status, 200);
    return r;
}

static reply_t post_ok(const char *path, const char *json) {
    reply_t r = http_json(d.port, path, json);
    if (r.status != 200) print_error("POST %s: %d %.300s\n", path, r.status, r.body ? (char *)r.body : "");
    assert_int_equal(r.status, 200);
    return r;
}

/* format=npy against format=pixels and against the PNG of the same seed,
 * for a binary model (NADE), a gray one (VAE) and a conditional GAN. */
static void test_sample_npy_matches_pixels_and_png(void **state) {
    static const char *const MODELS[] = {"nade", "vae", "gan"};
    for (size_t m = 0; m < 3; m++) {
        char path[256];
        snprintf(path, sizeof path, "/v1/models/%s/sample?n=3&seed=99&format=npy", MODELS[m]);
        reply_t rn = get_ok(path, NULL);
        assert_header(&rn, "Content-Type", "application/x-npy");
        npy_t a = npy_read(rn.body, rn.len);
        snprintf(path, sizeof path, "/v1/models/%s", MODELS[m]);
        reply_t info = get_ok(path, NULL);
        json_t *ij = json_loadb((char *)info.body, info.len, 0, NULL);
        json_t *img = json_object_get(ij, "image");
        int h = (int)json_integer_value(json_object_get(img, "height")),
            w = (int)json_integer_value(json_object_get(img, "width")),
            c = (int)json_integer_value(json_object_get(img, "channels"));
        assert_int_equal(a.ndim, 4);
        assert_int_equal(a.shape[0], 3);
        assert_int_equal(a.shape[1], h);
        assert_int_equal(a.shape[2], w);
        assert_int_equal(a.shape[3], c);
        size_t dim = (size_t)h * w * c;

        snprintf(path, sizeof path, "/v1/models/%s/sample?n=3&seed=99&format=pixels", MODELS[m]);
        reply_t rp = get_ok(path, NULL);
        json_t *pj = json_loadb((char *)rp.body, rp.len, 0, NULL);
        json_t *images = json_object_get(pj, "images");
        assert_int_equal(json_array_size(images), 3);
        for (size_t i = 0; i < 3; i++) {
            json_t *px = json_object_get(json_array_get(images, i), "pixels");
            assert_int_equal(json_array_size(px), dim);
            for (size_t k = 0; k < dim; k++) {
                float want = (float)json_number_value(json_array_get(px, k));
                if (a.data[i * dim + k] != want) {
                    print_error("%s image %zu pixel %zu: npy %.9g, pixels %.9g\n", MODELS[m], i, k, a.data[i * dim + k],
                                want);
                    fail();
                }
            }
        }
        /* format=json holds one PNG per image: the same pixels in 8 bits */
        snprintf(path, sizeof path, "/v1/models/%s/sample?n=3&seed=99&format=json", MODELS[m]);
        reply_t rj = get_ok(path, NULL);
        json_t *jj = json_loadb((char *)rj.body, rj.len, 0, NULL);
        float *dec = malloc(dim * sizeof *dec);
        char err[GM_ERR_LEN];
        for (size_t i = 0; i < 3; i++) {
            const char *b64 =
                json_string_value(json_object_get(json_array_get(json_object_get(jj, "images"), i), "png"));
            size_t len;
            uint8_t *png = gm_base64_decode(b64, strlen(b64), &len);
            assert_int_equal(gm_png_decode(png, len, h, w, c, dec, err), GM_PNG_OK);
            for (size_t k = 0; k < dim; k++)
                if (!(fabsf(dec[k] - a.data[i * dim + k]) <= 0.5f / 255 + 1e-6f)) {
                    print_error("%s image %zu pixel %zu: PNG %g, npy %g\n", MODELS[m], i, k, dec[k],
                                a.data[i * dim + k]);
                    fail();
                }
            free(png);
        }
        free(dec);
        free(a.data);
        json_decref(ij);
        json_decref(pj);
        json_decref(jj);
        reply_free(&rn);
        reply_free(&rp);
        reply_free(&rj);
        reply_free(&info);
    }
}

/* Accept picks npy when no format is given; the format parameter wins; q=0
 * refuses a type. */
static void test_accept_negotiation(void **state) {
    reply_t r = get_ok("/sample?model=gan&n=2&seed=5", "Accept: application/octet-stream\r\n");
    assert_header(&r, "Content-Type", "application/octet-stream");
    npy_t a = npy_read(r.body, r.len);
    assert_int_equal(a.ndim, 4);
    assert_int_equal(a.shape[0], 2);
    free(a.data);
    reply_free(&r);
    r = get_ok("/sample?model=gan&n=2&seed=5", "Accept: text/html, application/x-npy;q=0.5\r\n");
    assert_header(&r, "Content-Type", "application/x-npy");
    reply_free(&r);
    r = get_ok("/sample?model=gan&n=2&seed=5", "Accept: application/x-npy;q=0\r\n");
    assert_header(&r, "Content-Type", "image/png");
    reply_free(&r);
    r = get_ok("/sample?model=gan&n=2&seed=5&format=png", "Accept: application/x-npy\r\n");
    assert_header(&r, "Content-Type", "image/png");
    assert_header(&r, "Vary", "Accept");
    reply_free(&r);
    r = get_ok("/sample?model=gan&n=2&seed=5", "Accept: */*\r\n");
    assert_header(&r, "Content-Type", "image/png");
    reply_free(&r);
}

/* encode: npy (n, d) is the JSON z; logp: npy (n,) is the JSON log p. */
static void test_encode_and_logp_npy(void **state) {
    reply_t s = get_ok("/sample?model=vae&n=4&seed=3&format=pixels", NULL);
    json_t *sj = json_loadb((char *)s.body, s.len, 0, NULL);
    json_t *images = json_object_get(sj, "images");
    for (int model = 0; model < 2; model++) {
        const char *name = model ? "nade" : "vae";
        char *imgs = json_dumps(images, JSON_COMPACT), body[1 << 16], path[64];
        snprintf(body, sizeof body, "{\"images\": %s, \"format\": \"npy\"}", imgs);
        snprintf(path, sizeof path, "/v1/models/%s/encode", name);
        reply_t rn = post_ok(path, body);
        snprintf(body, sizeof body, "{\"images\": %s}", imgs);
        reply_t rj = post_ok(path, body);
        npy_t a = npy_read(rn.body, rn.len);
        json_t *jj = json_loadb((char *)rj.body, rj.len, 0, NULL);
        json_t *res = json_object_get(jj, "results");
        size_t dz = json_array_size(json_object_get(json_array_get(res, 0), "z"));
        assert_int_equal(a.ndim, 2);
        assert_int_equal(a.shape[0], 4);
        assert_int_equal(a.shape[1], dz);
        for (size_t i = 0; i < 4; i++)
            for (size_t k = 0; k < dz; k++)
                assert_true(a.data[i * dz + k] ==
                            (float)json_number_value(json_array_get(json_object_get(json_array_get(res, i), "z"), k)));
        free(a.data);
        json_decref(jj);
        reply_free(&rn);
        reply_free(&rj);

        snprintf(path, sizeof path, "/v1/models/%s/logp", name);
        snprintf(body, sizeof body, "{\"images\": %s, \"format\": \"npy\", \"k\": 20}", imgs);
        rn = post_ok(path, body);
        snprintf(body, sizeof body, "{\"images\": %s, \"k\": 20}", imgs);
        rj = post_ok(path, body);
        a = npy_read(rn.body, rn.len);
        jj = json_loadb((char *)rj.body, rj.len, 0, NULL);
        res = json_object_get(jj, "results");
        assert_int_equal(a.ndim, 1);
        assert_int_equal(a.shape[0], 4);
        for (size_t i = 0; i < 4; i++) {
            double want = json_number_value(json_object_get(json_array_get(res, i), "logp"));
            /* the JSON value has ten significant digits of the double; npy holds its float32 */
            if (!(fabs(a.data[i] - want) <= 1e-6 * fabs(want) + 1e-6)) {
                print_error("%s logp[%zu]: npy %.9g, JSON %.10g\n", name, i, a.data[i], want);
                fail();
            }
        }
        free(a.data);
        free(imgs);
        json_decref(jj);
        reply_free(&rn);
        reply_free(&rj);
    }
    json_decref(sj);
    reply_free(&s);
}

/* decode with format npy is decode with format pixels. */
static void test_decode_npy(void **state) {
    char z[2048] = "[", body[4096];
    for (int j = 0, o = 1; j < 64; j++)
        o += snprintf(z + o, sizeof z - (size_t)o, "%s%g", j ? "," : "", 0.1 * (j % 7) - 0.3);
    strcat(z, "]");
    reply_t info = get_ok("/v1/models/gan", NULL);
    json_t *ij = json_loadb((char *)info.body, info.len, 0, NULL);
    int zd = (int)json_integer_value(json_object_get(ij, "latent_dim"));
    json_decref(ij);
    reply_free(&info);
    z[0] = '[';
    /* keep the first zd numbers */
    char *p = z;
    for (int j = 0; j < zd; j++) p = strchr(p + 1, ',');
    if (p) *p = ']', p[1] = 0;
    snprintf(body, sizeof body, "{\"latents\": [%s, %s], \"label\": [0, 1], \"format\": \"npy\"}", z, z);
    reply_t rn = post_ok("/v1/models/gan/decode", body);
    snprintf(body, sizeof body, "{\"latents\": [%s, %s], \"label\": [0, 1], \"format\": \"pixels\"}", z, z);
    reply_t rp = post_ok("/v1/models/gan/decode", body);
    npy_t a = npy_read(rn.body, rn.len);
    json_t *pj = json_loadb((char *)rp.body, rp.len, 0, NULL);
    assert_int_equal(a.shape[0], 2);
    size_t dim = a.count / 2;
    for (size_t i = 0; i < 2; i++) {
        json_t *px = json_object_get(json_array_get(json_object_get(pj, "images"), i), "pixels");
        assert_int_equal(json_array_size(px), dim);
        for (size_t k = 0; k < dim; k++)
            assert_true(a.data[i * dim + k] == (float)json_number_value(json_array_get(px, k)));
    }
    free(a.data);
    json_decref(pj);
    reply_free(&rn);
    reply_free(&rp);
}

static void assert_status(int status, const char *method, const char *path, const char *body, const char *want) {
    reply_t r = body ? http_json(d.port, path, body) : http(d.port, method, path, NULL, NULL, 0);
    if (r.status != status || !strstr((char *)r.body, want)) {
        print_error("%s %s: %d %.300s, want %d with \"%s\"\n", method, path, r.status, r.body ? (char *)r.body : "",
                    status, want);
        fail();
    }
    reply_free(&r);
}

static void test_format_errors(void **state) {
    assert_status(422, "GET", "/sample?model=nade&format=npy&scale=2", NULL, "scale enlarges PNG images only");
    assert_status(422, "GET", "/sample?model=nade&format=tiff", NULL,
                  "format must be one of \\\"json\\\", \\\"png\\\", \\\"pixels\\\", \\\"npy\\\"");
    assert_status(422, "POST", "/v1/models/nade/logp", "{\"images\": [], \"format\": \"png\"}",
                  "format must be one of \\\"json\\\", \\\"npy\\\"");
    assert_status(400, "POST", "/v1/models/vae/encode", "{\"images\": [], \"format\": 3}", "format must be a string");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_npy_matches_pixels_and_png),
        cmocka_unit_test(test_accept_negotiation),
        cmocka_unit_test(test_encode_and_logp_npy),
        cmocka_unit_test(test_decode_npy),
        cmocka_unit_test(test_format_errors),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
