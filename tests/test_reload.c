/*
 * test_reload.c - model control without a restart, on the real daemon:
 * replacing a model through the admin route and through SIGHUP, a bad file
 * that leaves the old model serving, unloading, the API key the admin
 * routes need, settings that change live (a rotated key, a limit) and one
 * that needs a restart, and reloads under 64 concurrent clients that lose
 * no request.
 *
 * The truths checked: after a replacement a model's seeded samples are the
 * pixels another model serving the new file gives for the same seed (and
 * before it, those of the old file); every reply under load is 2xx and is
 * the output of one whole file, the old or the new; every daemon exits 0 on
 * SIGTERM, which under SAN=1 also means no sanitizer report and no leak.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

#include "base64.h"
#include "daemon.h"
#include "pngio.h"

#define FILE_A "tests/fixtures/gan_cond.safetensors" /* 16x16x1 */
#define FILE_B "tests/fixtures/gan_rgb.safetensors"  /* 6x6x3 */
#define NADE_FILE "tests/fixtures/nade_ref.safetensors"
#define KEY "Authorization: Bearer adm1n\r\n"

static char dir[64], cfg_file[128], model_file[128], bad_file[128];

/* Replaces path's content as Kubernetes updates a mounted ConfigMap: a new
 * file renamed over the old, so that no reader ever sees half of one. */
static void install_file(const char *from, const char *path) {
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    copy_file(from, tmp);
    assert_int_equal(rename(tmp, path), 0);
}

/* The daemons' settings: four models (m at a path the tests replace) and
 * what extra adds. A daemon reads them at start and at each reload. */
static void write_config(const char *extra) {
    char text[2048];
    snprintf(text, sizeof text,
             "{\"models\": {\"nade\": \"%s\", \"m\": \"%s\", \"a\": \"%s\", \"b\": \"%s\"}, "
             "\"default_model\": \"nade\", \"log_format\": \"off\"%s%s}",
             NADE_FILE, model_file, FILE_A, FILE_B, extra[0] ? ", " : "", extra);
    write_text(cfg_file, text);
}

static int scratch_up(void **state) {
    strcpy(dir, "/tmp/gm_reload_d_XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(cfg_file, sizeof cfg_file, "%s/gmserve.json", dir);
    snprintf(model_file, sizeof model_file, "%s/m.safetensors", dir);
    snprintf(bad_file, sizeof bad_file, "%s/bad.safetensors", dir);
    install_file(FILE_A, model_file);
    write_text(bad_file, "this is not a model file");
    write_config("\"api_keys\": [\"adm1n\"]");
    return 0;
}

static int scratch_down(void **state) {
    unlink(cfg_file);
    unlink(model_file);
    unlink(bad_file);
    rmdir(dir);
    return 0;
}

static daemon_t start(const char *name) {
    const char *args[] = {"--config", cfg_file, NULL};
    return daemon_start(name, args);
}

static void stop(daemon_t *d) { assert_int_equal(daemon_stop_reported(d), 0); }

static void expect_status(const reply_t *r, int status, const char *want, const char *what) {
    if (r->status != status || (want && (!r->body || !strstr((char *)r->body, want)))) {
        print_error("%s: status %d, want %d with \"%s\"; body: %.400s\n", what, r->status, status, want ? want : "",
                    r->body ? (char *)r->body : "");
        fail();
    }
}

static reply_t admin(int port, const char *method, const char *path, const char *json) {
    return http(port, method, path, KEY "Content-Type: application/json\r\n", json, json ? strlen(json) : 0);
}

/* The image shape model is served with now, as h*w*c (h, w, c filled). */
static int served_shape(int port, const char *model, int *h, int *w, int *c) {
    char path[128];
    snprintf(path, sizeof path, "/v1/models/%s", model);
    reply_t info = http(port, "GET", path, KEY, NULL, 0);
    expect_status(&info, 200, NULL, path);
    json_t *ij = json_loadb((const char *)info.body, info.len, 0, NULL), *img = json_object_get(ij, "image");
    *h = (int)json_integer_value(json_object_get(img, "height"));
    *w = (int)json_integer_value(json_object_get(img, "width"));
    *c = (int)json_integer_value(json_object_get(img, "channels"));
    json_decref(ij);
    reply_free(&info);
    return *h * *w * *c;
}

/* The pixels of a seeded one-image sample of model; its shape is read
 * before and after, and the sample taken again should a reload have changed
 * it in between. */
static float *sample_pixels(int port, const char *model, int seed, int *dim) {
    for (;;) {
        int h, w, c, h2, w2, c2;
        served_shape(port, model, &h, &w, &c);
        char path[128];
        snprintf(path, sizeof path, "/v1/models/%s/sample?seed=%d&format=json", model, seed);
        reply_t r = http(port, "GET", path, KEY, NULL, 0);
        expect_status(&r, 200, NULL, path);
        served_shape(port, model, &h2, &w2, &c2);
        if (h != h2 || w != w2 || c != c2) {
            reply_free(&r);
            continue;
        }
        json_t *j = json_loadb((const char *)r.body, r.len, 0, NULL);
        const char *b64 = json_string_value(json_object_get(json_array_get(json_object_get(j, "images"), 0), "png"));
        assert_non_null(b64);
        size_t len;
        uint8_t *png = gm_base64_decode(b64, strlen(b64), &len);
        *dim = h * w * c;
        float *px = malloc((size_t)*dim * sizeof *px);
        char err[GM_ERR_LEN];
        gm_png_status st = gm_png_decode(png, len, h, w, c, px, err);
        free(png);
        json_decref(j);
        reply_free(&r);
        if (st == GM_PNG_OK) return px;
        free(px); /* replaced twice over between the two looks at its shape: look again */
    }
}

/* model's seeded sample is the same image as reference's. */
static void assert_serves_like(int port, const char *model, const char *reference) {
    int dm, dr;
    float *got = sample_pixels(port, model, 5, &dm), *want = sample_pixels(port, reference, 5, &dr);
    assert_int_equal(dm, dr);
    assert_close_f(model, got, want, (size_t)dm, 0.0);
    free(got);
    free(want);
}

static json_t *model_info(int port, const char *model) {
    char path[128];
    snprintf(path, sizeof path, "/v1/models/%s", model);
    reply_t r = http(port, "GET", path, KEY, NULL, 0);
    json_t *j = r.status == 200 ? json_loadb((const char *)r.body, r.len, 0, NULL) : NULL;
    reply_free(&r);
    return j;
}

static void test_admin_routes(void **state) {
    daemon_t d = start("reload_admin");
    assert_serves_like(d.port, "m", "a");
    json_t *before = model_info(d.port, "m");
    assert_string_equal(json_string_value(json_object_get(before, "path")), model_file);
    assert_non_null(json_string_value(json_object_get(before, "loaded_at")));

    /* the admin routes need the key */
    reply_t r = http(d.port, "POST", "/v1/admin/reload", NULL, NULL, 0);
    expect_status(&r, 401, "Bearer", "reload without a key");
    reply_free(&r);
    char body[512];
    snprintf(body, sizeof body, "{\"name\": \"m\", \"path\": \"%s\"}", FILE_B);
    r = http(d.port, "POST", "/v1/admin/models", "Content-Type: application/json\r\n", body, strlen(body));
    expect_status(&r, 401, "Bearer", "load without a key");
    reply_free(&r);

    /* replace m with another file: its outputs become that file's */
    r = admin(d.port, "POST", "/v1/admin/models", body);
    expect_status(&r, 200, "\"replaced\":true", "replace m");
    reply_free(&r);
    assert_serves_like(d.port, "m", "b");
    json_t *after = model_info(d.port, "m");
    assert_string_equal(json_string_value(json_object_get(after, "path")), FILE_B);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(after, "image"), "channels")), 3);

    /* a bad file: 422 naming the file, and m goes on serving FILE_B */
    snprintf(body, sizeof body, "{\"name\": \"m\", \"path\": \"%s\"}", bad_file);
    r = admin(d.port, "POST", "/v1/admin/models", body);
    expect_status(&r, 422, "bad.safetensors", "a bad file");
    reply_free(&r);
    assert_serves_like(d.port, "m", "b");
    r = admin(d.port, "POST", "/v1/admin/models", "{\"name\": \"m\"}");
    expect_status(&r, 400, "path", "no path");
    reply_free(&r);
    static char big[8192];
    memset(big, ' ', sizeof big - 1);
    const char *small = "{\"name\": \"m\", \"path\": \"x\"}";
    memcpy(big, small, strlen(small)); /* then spaces: valid JSON, 8 KB */
    r = admin(d.port, "POST", "/v1/admin/models", big);
    expect_status(&r, 413, "4096", "an admin body of 8 KB");
    reply_free(&r);
    r = http(d.port, "POST", "/v1/admin/models", KEY "Content-Type: text/plain\r\n", body, strlen(body));
    expect_status(&r, 415, "application/json", "not JSON");
    reply_free(&r);
    r = admin(d.port, "GET", "/v1/admin/reload", NULL);
    expect_status(&r, 405, "POST", "GET on reload");
    reply_free(&r);
    r = http(d.port, "OPTIONS", "/v1/admin/models/x", NULL, NULL, 0);
    char allow[64] = "";
    assert_true(reply_header(&r, "Allow", allow, sizeof allow));
    assert_string_equal(allow, "DELETE, OPTIONS");
    reply_free(&r);
    r = admin(d.port, "POST", "/v1/admin/models", "{\"name\": \"m\", \"path\": \"x\", \"extra\": 1}");
    expect_status(&r, 400, "extra", "an unknown key");
    reply_free(&r);

    /* a new name, then unload it: 404 afterwards */
    snprintf(body, sizeof body, "{\"name\": \"fresh\", \"path\": \"%s\"}", FILE_A);
    r = admin(d.port, "POST", "/v1/admin/models", body);
    expect_status(&r, 200, "\"replaced\":false", "load fresh");
    reply_free(&r);
    assert_serves_like(d.port, "fresh", "a");
    r = admin(d.port, "DELETE", "/v1/admin/models/fresh", NULL);
    expect_status(&r, 200, "fresh", "unload fresh");
    reply_free(&r);
    r = http(d.port, "GET", "/v1/models/fresh/sample?seed=1", KEY, NULL, 0);
    expect_status(&r, 404, "fresh", "sample of an unloaded model");
    reply_free(&r);
    r = http(d.port, "GET", "/v1/models/fresh", KEY, NULL, 0);
    expect_status(&r, 404, "fresh", "info of an unloaded model");
    reply_free(&r);
    r = http(d.port, "GET", "/v2/models/fresh/ready", KEY, NULL, 0);
    expect_status(&r, 404, "fresh", "v2 readiness of an unloaded model");
    reply_free(&r);
    r = admin(d.port, "DELETE", "/v1/admin/models/fresh", NULL);
    expect_status(&r, 404, "fresh", "unload twice");
    reply_free(&r);
    r = admin(d.port, "DELETE", "/v1/admin/models/nade", NULL);
    expect_status(&r, 409, "default", "unload the default model");
    reply_free(&r);

    /* a reload serves the settings again: m is the config's file (FILE_A) */
    r = admin(d.port, "POST", "/v1/admin/reload", NULL);
    expect_status(&r, 200, "\"restart_required\"", "reload");
    reply_free(&r);
    assert_serves_like(d.port, "m", "a");
    r = http(d.port, "GET", "/metrics", KEY, NULL, 0); /* a model named after start-up has its series */
    expect_status(&r, 200, "model=\"fresh\"", "metrics of a model loaded by the admin route");
    reply_free(&r);

    /* settings change live (a rotated key, a lower max_n); workers needs a restart and says so */
    write_config("\"api_keys\": [\"r0tated\"], \"max_n\": 2, \"workers\": 5");
    r = admin(d.port, "POST", "/v1/admin/reload", NULL);
    expect_status(&r, 200, "workers (running 2, the settings say 5)", "reload with new settings");
    reply_free(&r);
    r = http(d.port, "GET", "/v1/models/m/sample?n=1&seed=1", KEY, NULL, 0);
    expect_status(&r, 401, "Bearer", "the old key after the rotation");
    reply_free(&r);
    r = http(d.port, "GET", "/v1/models/m/sample?n=3&seed=1", "Authorization: Bearer r0tated\r\n", NULL, 0);
    expect_status(&r, 422, "max_n", "n over the reloaded max_n");
    reply_free(&r);
    r = http(d.port, "GET", "/v1/models/m/sample?n=2&seed=1", "Authorization: Bearer r0tated\r\n", NULL, 0);
    expect_status(&r, 200, NULL, "the new key");
    reply_free(&r);
    json_decref(before);
    json_decref(after);
    stop(&d);
}

static void test_admin_without_keys(void **state) {
    write_config("");
    daemon_t d = start("reload_nokey");
    reply_t r = http(d.port, "POST", "/v1/admin/reload", NULL, NULL, 0);
    expect_status(&r, 403, "admin_loopback", "no api_keys: refused");
    reply_free(&r);
    stop(&d);
    const char *args[] = {"--config", cfg_file, "--admin-loopback", "1", NULL};
    d = daemon_start("reload_loopback", args);
    r = http(d.port, "POST", "/v1/admin/reload", NULL, NULL, 0); /* the test connects from 127.0.0.1 */
    expect_status(&r, 200, "\"models\"", "no api_keys, admin_loopback 1, from loopback");
    reply_free(&r);
    stop(&d);
}

/* Waits (up to 20 s) until m serves like reference. */
static void wait_serves_like(int port, const char *model, const char *reference) {
    int dr;
    float *want = sample_pixels(port, reference, 5, &dr);
    for (int i = 0; i < 200; i++) {
        int dm;
        float *got = sample_pixels(port, model, 5, &dm);
        bool same = dm == dr && !memcmp(got, want, (size_t)dm * sizeof *got);
        free(got);
        if (same) break;
        assert_true(i < 199);
        sleep_ms(100);
    }
    free(want);
}

static void test_sighup(void **state) {
    daemon_t d = start("reload_sighup");
    assert_serves_like(d.port, "m", "a");
    install_file(FILE_B, model_file);
    kill(d.pid, SIGHUP);
    wait_serves_like(d.port, "m", "b");
    json_t *info = model_info(d.port, "m");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(info, "image"), "channels")), 3);
    json_decref(info);
    /* a bad file at m's path: SIGHUP changes nothing, m goes on serving */
    install_file(bad_file, model_file);
    kill(d.pid, SIGHUP);
    sleep_ms(500);
    assert_serves_like(d.port, "m", "b");
    install_file(FILE_A, model_file);
    stop(&d);
    FILE *log = fopen(d.log, "r");
    char line[1024];
    bool named = false;
    while (log && fgets(line, sizeof line, log)) named |= strstr(line, "m.safetensors") && strstr(line, "not reloaded");
    if (log) fclose(log);
    assert_true(named); /* the log names the file that was refused */
}

/* ---- 64 clients while the models are reloaded ---- */

enum { CLIENTS = 64, SEEDS = 4 };

typedef struct {
    int port;
    atomic_bool stop;
    atomic_int ok, bad, wrong;
    char *want[2][SEEDS]; /* m's sample PNGs (base64) per file and seed */
    char logp_body[8192];
    double want_logp;
} load;

static char *png_of(const reply_t *r) {
    json_t *j = json_loadb((const char *)r->body, r->len, 0, NULL);
    const char *b64 = json_string_value(json_object_get(json_array_get(json_object_get(j, "images"), 0), "png"));
    char *copy = b64 ? strdup(b64) : NULL;
    json_decref(j);
    return copy;
}

static void *client(void *arg) {
    load *L = arg;
    for (unsigned i = (unsigned)(uintptr_t)pthread_self(); !atomic_load(&L->stop); i++) {
        reply_t r;
        bool sample = i % 2 == 0;
        int seed = (int)(i / 2 % SEEDS);
        if (sample) {
            char path[96];
            snprintf(path, sizeof path, "/v1/models/m/sample?seed=%d&format=json", seed);
            r = http(L->port, "GET", path, KEY, NULL, 0);
        } else
            r = http(L->port, "POST", "/v1/models/nade/logp", KEY "Content-Type: application/json\r\n", L->logp_body,
                     strlen(L->logp_body));
        if (r.status < 200 || r.status > 299) {
            if (atomic_fetch_add(&L->bad, 1) < 3)
                fprintf(stderr, "non-2xx under reload: %d %.200s\n", r.status, r.body ? (char *)r.body : "(none)");
        } else if (sample) {
            char *png = png_of(&r);
            bool known = png && (!strcmp(png, L->want[0][seed]) || !strcmp(png, L->want[1][seed]));
            atomic_fetch_add(known ? &L->ok : &L->wrong, 1);
            free(png);
        } else {
            json_t *j = json_loadb((const char *)r.body, r.len, 0, NULL);
            double lp = json_number_value(json_object_get(json_array_get(json_object_get(j, "results"), 0), "logp"));
            atomic_fetch_add(lp == L->want_logp ? &L->ok : &L->wrong, 1);
            json_decref(j);
        }
        reply_free(&r);
    }
    return NULL;
}

static void fetch_wants(load *L, int file) {
    for (int s = 0; s < SEEDS; s++) {
        char path[96];
        snprintf(path, sizeof path, "/v1/models/m/sample?seed=%d&format=json", s);
        reply_t r = http(L->port, "GET", path, KEY, NULL, 0);
        expect_status(&r, 200, NULL, path);
        L->want[file][s] = png_of(&r);
        reply_free(&r);
    }
}

static void test_reload_under_load_loses_nothing(void **state) {
    raise_nofile();
    daemon_t d = start("reload_load");
    static load L;
    memset(&L, 0, sizeof L);
    L.port = d.port;
    /* a 28x28 image as pixels: a diagonal stroke */
    size_t o = (size_t)snprintf(L.logp_body, sizeof L.logp_body, "{\"images\": [{\"pixels\": [");
    for (int i = 0; i < 784; i++)
        o += (size_t)snprintf(L.logp_body + o, sizeof L.logp_body - o, "%s%d", i ? "," : "", i % 29 == 0);
    snprintf(L.logp_body + o, sizeof L.logp_body - o, "]}]}");
    reply_t r = http(d.port, "POST", "/v1/models/nade/logp", KEY "Content-Type: application/json\r\n", L.logp_body,
                     strlen(L.logp_body));
    expect_status(&r, 200, "logp", "logp before the load");
    json_t *j = json_loadb((const char *)r.body, r.len, 0, NULL);
    L.want_logp = json_number_value(json_object_get(json_array_get(json_object_get(j, "results"), 0), "logp"));
    json_decref(j);
    reply_free(&r);
    fetch_wants(&L, 0);
    install_file(FILE_B, model_file);
    r = admin(d.port, "POST", "/v1/admin/reload", NULL);
    expect_status(&r, 200, NULL, "reload to B");
    reply_free(&r);
    fetch_wants(&L, 1);

    pthread_t th[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) assert_int_equal(pthread_create(&th[i], NULL, client, &L), 0);
    sleep_ms(300);
    for (int round = 0; round < 6; round++) { /* A, B, A, ... alternately by the admin route and SIGHUP */
        install_file(round % 2 ? FILE_B : FILE_A, model_file);
        if (round % 2 == 0) {
            r = admin(d.port, "POST", "/v1/admin/reload", NULL);
            expect_status(&r, 200, NULL, "reload under load");
            reply_free(&r);
        } else {
            kill(d.pid, SIGHUP);
        }
        sleep_ms(400);
    }
    atomic_store(&L.stop, true);
    for (int i = 0; i < CLIENTS; i++) pthread_join(th[i], NULL);
    fprintf(stderr, "under reload: %d replies as expected, %d non-2xx, %d of neither file\n", atomic_load(&L.ok),
            atomic_load(&L.bad), atomic_load(&L.wrong));
    assert_int_equal(atomic_load(&L.bad), 0);
    assert_int_equal(atomic_load(&L.wrong), 0);
    assert_true(atomic_load(&L.ok) > CLIENTS);
    for (int f = 0; f < 2; f++)
        for (int s = 0; s < SEEDS; s++) free(L.want[f][s]);
    stop(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_admin_routes, scratch_up, scratch_down),
        cmocka_unit_test_setup_teardown(test_admin_without_keys, scratch_up, scratch_down),
        cmocka_unit_test_setup_teardown(test_sighup, scratch_up, scratch_down),
        cmocka_unit_test_setup_teardown(test_reload_under_load_loses_nothing, scratch_up, scratch_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
