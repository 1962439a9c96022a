/*
 * test_openapi.c - GET /openapi.json against the tables it is made from.
 *
 * In process, under settings that differ from the defaults (max_n 77,
 * default_k 33, API keys on): every route of the route table is a path
 * with exactly its methods and a unique operationId; every parameter an
 * operation takes (parameter table) is in its query and JSON body with the
 * range, default and setting the table gives under those settings; every
 * error status refers to a response that exists and has the one error
 * schema; keyed routes need the bearer scheme and open ones do not. Over
 * HTTP, the daemon serves the same document for its own settings. The
 * document is checked against the OpenAPI 3.1 schema by real validators in
 * make test-openapi.
 */
#include "testutil.h"

#include <jansson.h>

#include "daemon.h"
#include "errors.h"
#include "formats.h"
#include "openapi.h"
#include "params.h"
#include "routes.h"

static gm_config cfg;
static const char *const METHODS[3] = {"get", "post", "delete"};
static json_t *doc;

static int build(void **state) {
    char *argv[] = {"gmserve",
                    "--config",
                    "build/test-logs/openapi-empty.json",
                    "--model",
                    "a=x.safetensors",
                    "--model",
                    "b=y.safetensors",
                    "--max-n",
                    "77",
                    "--default-k",
                    "33",
                    "--api-key",
                    "k1",
                    NULL};
    char err[GM_ERR_LEN];
    mkdir("build/test-logs", 0755);
    write_text("build/test-logs/openapi-empty.json", "{}\n");
    if (gm_config_load(&cfg, (int)(sizeof argv / sizeof argv[0]) - 1, argv, err) != GM_CONFIG_OK) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    const char *names[] = {"a", "b"};
    doc = gm_openapi_document(&cfg, names, 2);
    return doc ? 0 : -1;
}

static int teardown(void **state) {
    json_decref(doc);
    return 0;
}

/* The OpenAPI path of a route: its first "*" is {file} (web page) or
 * {name}, a second one (v2) {version}. */
static void template_of(const gm_route_def *r, char *out) {
    const char *names[2] = {r->route == GM_ROUTE_PAGE ? "{file}" : "{name}", "{version}"};
    int k = 0;
    for (const char *p = r->pattern; *p; p++)
        if (*p == '*') out += sprintf(out, "%s", names[k++]);
        else *out++ = *p;
    *out = 0;
}

static bool is_v2(const gm_route_def *r) { return !strncmp(r->pattern, "/v2", 3); }

static json_t *operation_of(const gm_route_def *r, const char *method) {
    char path[256];
    template_of(r, path);
    return json_object_get(json_object_get(json_object_get(doc, "paths"), path), method);
}

static void test_every_route_with_its_methods(void **state) {
    json_t *paths = json_object_get(doc, "paths"), *ids = json_object();
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    size_t methods = 0;
    for (int i = 0; i < gm_n_routes; i++) {
        const gm_route_def *r = &gm_routes[i];
        char path[256];
        template_of(r, path);
        json_t *item = json_object_get(paths, path);
        if (!item) print_error("route %s: no path %s\n", r->pattern, path);
        assert_non_null(item);
        bool get = r->methods & GM_METHOD_GET, post = r->methods & GM_METHOD_POST, del = r->methods & GM_METHOD_DELETE;
        assert_int_equal(json_object_get(item, "get") != NULL, get);
        assert_int_equal(json_object_get(item, "post") != NULL, post);
        assert_int_equal(json_object_get(item, "delete") != NULL, del);
        assert_int_equal(json_object_size(item), get + post + del);
        methods += get + post + del;
        for (int m = 0; m < 3; m++) {
            json_t *op = json_object_get(item, METHODS[m]);
            if (!op) continue;
            const char *id = json_string_value(json_object_get(op, "operationId"));
            assert_non_null(id);
            assert_null(json_object_get(ids, id)); /* unique */
            json_object_set_new(ids, id, json_true());
            assert_string_equal(json_string_value(json_object_get(op, "summary")), r->summary);
            /* API keys are on: keyed routes need the bearer scheme, open ones nothing */
            json_t *sec = json_object_get(op, "security");
            assert_int_equal(json_array_size(sec), r->open ? 0 : 1);
            if (!r->open) assert_non_null(json_object_get(json_array_get(sec, 0), "bearer"));
        }
    }
    assert_int_equal(json_object_size(paths), (size_t)gm_n_routes);
    assert_int_equal(json_object_size(ids), methods);
    assert_non_null(json_object_get(json_object_get(json_object_get(doc, "components"), "securitySchemes"), "bearer"));
    json_decref(ids);
}

static json_t *query_param(json_t *op, const char *name) {
    json_t *list = json_object_get(op, "parameters"), *p;
    size_t i;
    json_array_foreach(list, i, p) {
        if (!strcmp(json_string_value(json_object_get(p, "in")), "query") &&
            !strcmp(json_string_value(json_object_get(p, "name")), name))
            return json_object_get(p, "schema");
    }
    return NULL;
}

/* A numeric bound in the document equals want. */
static void assert_bound(json_t *schema, const char *key, double want, const char *what) {
    json_t *v = json_object_get(schema, key);
    if (!json_is_number(v) || json_number_value(v) != want) {
        print_error("%s: %s is %g, want %g\n", what, key, v ? json_number_value(v) : NAN, want);
        fail();
    }
}

/* The schema of one parameter against its row of the parameter table. */
static void check_schema(gm_param p, gm_op op, bool get, json_t *s, const char *what) {
    const gm_param_def *d = &gm_params[p];
    assert_non_null(s);
    if (d->max_setting)
        assert_string_equal(json_string_value(json_object_get(s, "x-gmserve-max-setting")), d->max_setting);
    if (d->dflt_setting)
        assert_string_equal(json_string_value(json_object_get(s, "x-gmserve-default-setting")), d->dflt_setting);
    if (p == GM_P_FORMAT) {
        json_t *e = json_object_get(s, "enum");
        unsigned formats = gm_formats_of(op);
        for (int f = 0; f < GM_FORMAT_COUNT; f++) {
            bool listed = false;
            for (size_t i = 0; i < json_array_size(e); i++)
                listed |= !strcmp(json_string_value(json_array_get(e, i)), gm_format_names[f]);
            assert_int_equal(listed, (formats >> f) & 1);
        }
        assert_string_equal(json_string_value(json_object_get(s, "default")),
                            gm_format_names[gm_format_default(op, get)]);
    } else if (d->choices[0]) {
        json_t *e = json_object_get(s, "enum");
        size_t n = 0;
        while (n < sizeof d->choices / sizeof d->choices[0] && d->choices[n]) {
            assert_string_equal(json_string_value(json_array_get(e, n)), d->choices[n]);
            n++;
        }
        assert_int_equal(json_array_size(e), n);
    } else if (p == GM_P_IMAGES || p == GM_P_LATENTS) {
        assert_bound(s, "minItems", d->min, what);
        assert_bound(s, "maxItems", gm_param_max(p, &cfg), what);
    } else if (p == GM_P_SEED) { /* integers to 2^63 - 1, larger ones as decimal strings */
        json_t *range = json_object_get(s, "x-gmserve-range");
        assert_true(json_number_value(json_array_get(range, 0)) == d->min);
        assert_true(strtod(json_string_value(json_array_get(range, 1)), NULL) == d->max);
    } else if (p == GM_P_LABEL) { /* an index from min, or a class name */
        json_t *alts = json_object_get(s, "oneOf");
        json_t *index = json_array_get(alts, 0);
        if (json_object_get(index, "oneOf")) index = json_array_get(json_object_get(index, "oneOf"), 0); /* decode */
        assert_bound(index, "minimum", d->min, what);
    } else if (p == GM_P_CAT) { /* a category from min (decode: or an array of them) */
        json_t *one = json_object_get(s, "oneOf") ? json_array_get(json_object_get(s, "oneOf"), 0) : s;
        assert_string_equal(json_string_value(json_object_get(one, "type")), "integer");
        assert_bound(one, "minimum", d->min, what);
    } else if (p == GM_P_CODE) { /* numbers within the table's bounds (as JSON text in a query) */
        json_t *arr = json_object_get(s, "oneOf") ? json_array_get(json_object_get(s, "oneOf"), 0) : s;
        if (!strcmp(json_string_value(json_object_get(arr, "type")), "array")) {
            assert_bound(json_object_get(arr, "items"), "minimum", d->min, what);
            assert_bound(json_object_get(arr, "items"), "maximum", d->max, what);
        }
    } else if (!strcmp(d->type, "integer") || !strcmp(d->type, "number")) {
        assert_string_equal(json_string_value(json_object_get(s, "type")), d->type);
        assert_bound(s, d->min_open ? "exclusiveMinimum" : "minimum", d->min, what);
        assert_bound(s, "maximum", gm_param_max(p, &cfg), what);
        if (json_object_get(s, "default")) assert_bound(s, "default", gm_param_default(p, &cfg), what);
    }
}

static void test_every_parameter_with_its_range(void **state) {
    int checked = 0;
    for (int i = 0; i < gm_n_routes; i++) {
        const gm_route_def *r = &gm_routes[i];
        if (r->op < 0) continue;
        for (int m = 0; m < 2; m++) {
            bool get = m == 0;
            if (!(r->methods & (get ? GM_METHOD_GET : GM_METHOD_POST))) continue;
            json_t *op = operation_of(r, get ? "get" : "post");
            json_t *body = json_object_get(
                json_object_get(
                    json_object_get(json_object_get(json_object_get(op, "requestBody"), "content"), "application/json"),
                    "schema"),
                "properties");
            int taken = 0;
            for (int p = 0; p < GM_P_COUNT; p++) {
                if (!gm_param_takes((gm_param)p, (gm_op)r->op)) continue;
                taken++;
                char what[160];
                snprintf(what, sizeof what, "%s %s %s", get ? "GET" : "POST", r->pattern, gm_params[p].name);
                bool array = !strcmp(gm_params[p].type, "array");
                if (!array) check_schema((gm_param)p, (gm_op)r->op, get, query_param(op, gm_params[p].name), what);
                else if (p != GM_P_CODE) assert_null(query_param(op, gm_params[p].name));
                if (!get)
                    check_schema((gm_param)p, (gm_op)r->op, false, json_object_get(body, gm_params[p].name), what);
                checked++;
            }
            if (!get) assert_int_equal(json_object_size(body), (size_t)taken); /* nothing the table lacks */
        }
    }
    assert_true(checked > 40);
    /* the settings, not the defaults, set the bounds */
    for (int i = 0; i < gm_n_routes; i++)
        if (gm_routes[i].op == GM_OP_SAMPLE) {
            assert_bound(query_param(operation_of(&gm_routes[i], "get"), "n"), "maximum", 77, "n");
            break;
        }
}

static void test_every_error_status_has_the_error_schema(void **state) {
    json_t *responses = json_object_get(json_object_get(doc, "components"), "responses");
    json_t *seen = json_object();
    for (int i = 0; i < gm_n_routes; i++)
        for (int m = 0; m < 3; m++) {
            json_t *op = operation_of(&gm_routes[i], METHODS[m]);
            if (!op) continue;
            /* the Open Inference Protocol's routes answer errors in its own shape */
            const char *prefix = is_v2(&gm_routes[i]) ? "oip" : "";
            const char *status;
            json_t *resp;
            json_object_foreach(json_object_get(op, "responses"), status, resp) {
                const char *ref = json_string_value(json_object_get(resp, "$ref"));
                if (atoi(status) < 400) {
                    assert_null(ref);
                    continue;
                }
                assert_non_null(ref);
                char want[64], name[16];
                snprintf(name, sizeof name, "%s%s", prefix, status);
                snprintf(want, sizeof want, "#/components/responses/%s", name);
                assert_string_equal(ref, want);
                assert_non_null(json_object_get(responses, name));
                json_object_set_new(seen, name, json_true());
            }
            assert_non_null(json_object_get(json_object_get(op, "responses"), "200"));
        }
    const char *status;
    json_t *resp;
    json_object_foreach(responses, status, resp) {
        assert_non_null(json_object_get(seen, status)); /* no unused response */
        const char *ref = json_string_value(json_object_get(
            json_object_get(json_object_get(json_object_get(resp, "content"), "application/json"), "schema"), "$ref"));
        assert_string_equal(ref,
                            strncmp(status, "oip", 3) ? "#/components/schemas/Error" : "#/components/schemas/OipError");
    }
    /* every status a client can receive from the error table is documented */
    for (int k = 0; k < GM_E_COUNT; k++) {
        if (k == GM_E_CLIENT_GONE || k == GM_E_METHOD) continue; /* never received / not an operation's reply */
        char s[8];
        snprintf(s, sizeof s, "%d", gm_errors[k].status);
        if (!json_object_get(seen, s)) print_error("status %s (%s) is in no operation\n", s, gm_errors[k].name);
        assert_non_null(json_object_get(seen, s));
    }
    json_decref(seen);
}

/* The daemon serves the document of its own settings. */
static void test_served_by_the_daemon(void **state) {
    const char *args[] = {"--model", "nade=tests/fixtures/nade_tiny.safetensors", "--max-images", "9", NULL};
    daemon_t d = daemon_start("openapi", args);
    reply_t r = http_get(d.port, "/openapi.json");
    assert_int_equal(r.status, 200);
    char type[64];
    assert_true(reply_header(&r, "Content-Type", type, sizeof type));
    assert_string_equal(type, "application/json");
    json_t *served = json_loadb((char *)r.body, r.len, 0, NULL);
    assert_non_null(served);
    json_t *logp = json_object_get(json_object_get(json_object_get(served, "paths"), "/v1/models/{name}/logp"), "post");
    json_t *images = json_object_get(
        json_object_get(
            json_object_get(
                json_object_get(json_object_get(json_object_get(logp, "requestBody"), "content"), "application/json"),
                "schema"),
            "properties"),
        "images");
    assert_bound(images, "maxItems", 9, "images");
    json_t *name = json_object_get(json_array_get(json_object_get(logp, "parameters"), 0), "schema");
    assert_string_equal(json_string_value(json_array_get(json_object_get(name, "enum"), 0)), "nade");
    assert_null(json_object_get(json_object_get(served, "components"), "securitySchemes")); /* no API keys */
    json_decref(served);
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route_with_its_methods),
        cmocka_unit_test(test_every_parameter_with_its_range),
        cmocka_unit_test(test_every_error_status_has_the_error_schema),
        cmocka_unit_test(test_served_by_the_daemon),
    };
    return cmocka_run_group_tests(tests, build, teardown);
}
