/*
 * test_routes.c - what the route table promises over real HTTP: OPTIONS
 * answers each route's own methods (a POST-only route does not offer GET)
 * and 404 on a path no route matches; every operation /v1/models lists is
 * served (discriminate included, checked against the PyTorch discriminator
 * of the fixture); /metrics labels every status the server sends (204 from
 * OPTIONS, 499 for a client that left) by its number.
 */
#include "testutil.h"

#include <math.h>
#include <strings.h>

#include "daemon.h"
#include "metrics.h"

#define GAN "gan=tests/fixtures/gan_cond.safetensors"
#define NADE "nade=tests/fixtures/nade_tiny.safetensors"

static daemon_t d;

static int start(void **state) {
    const char *args[] = {"--model", GAN, "--model", NADE, NULL};
    d = daemon_start("routes", args);
    return 0;
}

static int stop(void **state) { return daemon_stop(&d); }

/* The Allow header of an OPTIONS reply, as the API section documents it. */
static void check_options(const char *path, const char *want_allow) {
    reply_t r = http(d.port, "OPTIONS", path, NULL, NULL, 0);
    char allow[128] = "";
    bool has = reply_header(&r, "Allow", allow, sizeof allow);
    if (r.status != 204 || !has || strcmp(allow, want_allow) != 0) {
        print_error("OPTIONS %s: status %d, Allow \"%s\"; want 204 with \"%s\"\n", path, r.status, allow, want_allow);
        fail();
    }
    reply_free(&r);
}

static void test_options_matches_each_route(void **state) {
    check_options("/v1/models/gan/logp", "POST, OPTIONS");
    check_options("/v1/models/gan/encode", "POST, OPTIONS");
    check_options("/v1/models/gan/discriminate", "POST, OPTIONS");
    check_options("/logp", "POST, OPTIONS");
    check_options("/v1/models/gan/sample", "GET, HEAD, POST, OPTIONS");
    check_options("/v1/models", "GET, HEAD, OPTIONS");
    check_options("/healthz", "GET, HEAD, OPTIONS");
    /* a GET on a POST-only route is the 405 whose Allow OPTIONS must agree with */
    reply_t r = http_get(d.port, "/v1/models/gan/logp");
    char allow[128] = "";
    assert_int_equal(r.status, 405);
    assert_true(reply_header(&r, "Allow", allow, sizeof allow));
    assert_null(strstr(allow, "GET"));
    reply_free(&r);
    r = http(d.port, "OPTIONS", "/no/such/route", NULL, NULL, 0);
    assert_int_equal(r.status, 404);
    assert_non_null(r.body);
    assert_non_null(strstr((char *)r.body, "no route"));
    reply_free(&r);
}

/* Every operation a model lists answers something else than 404 (a model
 * operation with no body is a 400 or 422 naming what is missing). */
static void test_listed_operations_are_served(void **state) {
    reply_t r = http_get(d.port, "/v1/models");
    assert_int_equal(r.status, 200);
    json_t *v = body_json(&r), *m;
    size_t i, j;
    json_array_foreach(json_object_get(v, "models"), i, m) {
        json_t *op;
        json_array_foreach(json_object_get(m, "operations"), j, op) {
            char path[128];
            snprintf(path, sizeof path, "/v1/models/%s/%s", json_string_value(json_object_get(m, "name")),
                     json_string_value(op));
            reply_t o = http_json(d.port, path, "{}");
            if (o.status == 404) {
                print_error("%s is listed but answers 404: %s\n", path, o.body ? (char *)o.body : "");
                fail();
            }
            reply_free(&o);
            /* each parameter listed for it is taken (a bad value of it is
             * refused as a value, not as an unknown parameter), and the 400
             * for an unknown one lists the same names */
            json_t *names = json_object_get(json_object_get(m, "parameters"), json_string_value(op)), *pn;
            size_t k;
            char body[128], takes[256] = "";
            assert_true(json_array_size(names) > 0);
            json_array_foreach(names, k, pn) {
                snprintf(body, sizeof body, "{\"%s\": {\"not\": \"valid\"}}", json_string_value(pn));
                o = http_json(d.port, path, body);
                assert_true(o.status == 400 || o.status == 422);
                assert_null(strstr((char *)o.body, "unknown parameter"));
                reply_free(&o);
                snprintf(takes + strlen(takes), sizeof takes - strlen(takes), "%s%s", k ? ", " : "",
                         json_string_value(pn));
            }
            o = http_json(d.port, path, "{\"no_such_parameter\": 1}");
            assert_int_equal(o.status, 400);
            char want[300];
            snprintf(want, sizeof want, "it takes: %s\"", takes);
            if (!strstr((char *)o.body, want)) {
                print_error("%s: %s lacks %s\n", path, (char *)o.body, want);
                fail();
            }
            reply_free(&o);
        }
    }
    json_decref(v);
    reply_free(&r);
}

static void test_discriminate_matches_pytorch(void **state) {
    gm_st *ref = load_ref("gan_cond.ref.safetensors");
    const gm_tensor *x = gm_st_tensor(ref, "x");
    const float *want = ref_f32(ref, "disc");
    int n = (int)x->shape[0],
        dim = (int)(x->shape[1] * (x->ndim > 2 ? x->shape[2] : 1) * (x->ndim > 3 ? x->shape[3] : 1));
    size_t cap = (size_t)n * dim * 24 + 256, len = 0;
    char *body = malloc(cap);
    len += (size_t)snprintf(body + len, cap - len, "{\"images\": [");
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(body + len, cap - len, "%s{\"pixels\": [", i ? ", " : "");
        for (int k = 0; k < dim; k++) {
            float p = x->f32[(size_t)i * dim + k];
            assert_true(p >= 0 && p <= 1);
            len += (size_t)snprintf(body + len, cap - len, "%s%.9g", k ? "," : "", p);
        }
        len += (size_t)snprintf(body + len, cap - len, "]}");
    }
    snprintf(body + len, cap - len, "]}");
    reply_t r = http_json(d.port, "/v1/models/gan/discriminate", body);
    free(body);
    if (r.status != 200) print_error("discriminate: %d %s\n", r.status, r.body ? (char *)r.body : "");
    assert_int_equal(r.status, 200);
    json_t *v = body_json(&r), *results = json_object_get(v, "results");
    assert_int_equal(json_array_size(results), n);
    for (int i = 0; i < n; i++) {
        json_t *o = json_array_get(results, (size_t)i);
        double logit = json_number_value(json_object_get(o, "logit"));
        double p = json_number_value(json_object_get(o, "probability"));
        double realness = json_number_value(json_object_get(o, "realness"));
        double w = want[i], pw = 1.0 / (1.0 + exp(-w));
        assert_true(fabs(logit - w) <= 1e-4 * (1 + fabs(w)));
        assert_true(fabs(p - pw) <= 1e-4);
        assert_true(fabs(realness - log(pw)) <= 1e-4 * (1 + fabs(log(pw)))); /* log D(x) */
    }
    json_decref(v);
    reply_free(&r);
    gm_st_free(ref);
    /* a model without a discriminator says so */
    r = http_json(d.port, "/v1/models/nade/discriminate", "{\"images\": [{\"pixels\": [0]}]}");
    assert_int_equal(r.status, 422);
    reply_free(&r);
}

static void test_metrics_label_204(void **state) {
    reply_t r = http(d.port, "OPTIONS", "/healthz", NULL, NULL, 0);
    assert_int_equal(r.status, 204);
    reply_free(&r);
    r = http_get(d.port, "/metrics");
    assert_non_null(strstr((char *)r.body, "status=\"204\""));
    assert_null(strstr((char *)r.body, "status=\"other_"));
    reply_free(&r);
}

/* The statuses the server sends without a route's help, counted in-process:
 * each must render under its own number, not as "other". */
static void test_metrics_render_every_sent_status(void **state) {
    static const char *const ROUTES[] = {"r"}, *const MODELS[] = {"m"};
    static const int SENT[] = {204, 400, 401, 404, 405, 413, 414, 415, 422, 499, 500, 501, 503, 504};
    for (size_t i = 0; i < sizeof SENT / sizeof SENT[0]; i++) {
        gm_metrics *m = gm_metrics_new(1, ROUTES, 1, MODELS, NULL);
        gm_metrics_request(m, 0, 0, SENT[i], 1000);
        size_t len;
        char *text = gm_metrics_render(m, 0, 1, 1, &len), want[64];
        snprintf(want, sizeof want, "status=\"%d\"} 1", SENT[i]);
        if (!strstr(text, want)) {
            print_error("status %d is not rendered as %s\n", SENT[i], want);
            fail();
        }
        free(text);
        gm_metrics_free(m);
    }
}

/* And every status the error table can produce, whatever is added to it. */
static void test_metrics_label_every_error_kind(void **state) {
    static const char *const ROUTES[] = {"r"}, *const MODELS[] = {"m"};
    gm_metrics *m = gm_metrics_new(1, ROUTES, 1, MODELS, NULL);
    for (int k = 0; k < GM_E_COUNT; k++) gm_metrics_request(m, 0, -1, gm_errors[k].status, 1000);
    size_t len;
    char *text = gm_metrics_render(m, 0, 1, 1, &len);
    for (int k = 0; k < GM_E_COUNT; k++) {
        char want[64];
        snprintf(want, sizeof want, "status=\"%d\"}", gm_errors[k].status);
        if (!strstr(text, want)) {
            print_error("kind %s (status %d) is not labelled by its status\n", gm_errors[k].name, gm_errors[k].status);
            fail();
        }
        if (gm_errors[k].reason) { /* and its reason is a rejection series */
            snprintf(want, sizeof want, "gmserve_rejections_total{reason=\"%s\"}", gm_errors[k].reason);
            assert_non_null(strstr(text, want));
        }
    }
    assert_null(strstr(text, "other_"));
    free(text);
    gm_metrics_free(m);
}

int main(void) {
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_metrics_render_every_sent_status),
        cmocka_unit_test(test_metrics_label_every_error_kind),
    };
    const struct CMUnitTest live[] = {
        cmocka_unit_test(test_options_matches_each_route),
        cmocka_unit_test(test_listed_operations_are_served),
        cmocka_unit_test(test_discriminate_matches_pytorch),
        cmocka_unit_test(test_metrics_label_204),
    };
    int failed = cmocka_run_group_tests_name("metrics", unit, NULL, NULL);
    return failed | cmocka_run_group_tests_name("routes", live, start, stop);
}
