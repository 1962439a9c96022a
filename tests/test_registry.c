/*
 * test_registry.c - serving models and settings that change while requests
 * run, without HTTP: the registry (named slots, swaps, reference counts),
 * settings snapshots, the settings a reload cannot change, the reload
 * operations on real fixture files, and the control thread that runs them
 * one at a time.
 *
 * The truths checked: a model acquired before its replacement still
 * computes what its own file computes (the same file loaded on its own gives
 * the same pixels) and is freed by its last release (ASan's leak check under
 * SAN=1); threads acquiring while another replaces always get one whole
 * model, whose outputs match one of the two files; a slot keeps its number
 * through removal; a bad file or bad settings change nothing.
 */
#include "testutil.h"

#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#include "control.h"
#include "reload.h"

#define NADE_FILE "tests/fixtures/nade_tiny.safetensors"
#define VAE_FILE "tests/fixtures/vae_mlp.safetensors"

/* Pixels of one seeded sample row from m (D floats), malloc'd. */
static float *sample_one(const gm_model *m, uint64_t seed) {
    const gm_model_info *in = gm_model_get_info(m);
    gm_row *rows = seeded_rows(1, seed, 1.0f);
    float *px = malloc((size_t)in->dim * sizeof *px);
    assert_int_equal(gm_model_sample(m, 1, rows, px, NULL), 0);
    free(rows);
    return px;
}

static gm_model *load_file(const char *path) {
    char err[GM_ERR_LEN];
    gm_model *m = gm_model_load(path, err);
    if (!m) print_error("%s\n", err);
    assert_non_null(m);
    return m;
}

static void assert_same_pixels(const gm_model *got_m, const char *path, uint64_t seed) {
    gm_model *want_m = load_file(path);
    const gm_model_info *a = gm_model_get_info(got_m), *b = gm_model_get_info(want_m);
    assert_int_equal(a->dim, b->dim);
    float *got = sample_one(got_m, seed), *want = sample_one(want_m, seed);
    assert_close_f(path, got, want, (size_t)a->dim, 0.0); /* the same file, seed and row: bit for bit */
    free(got);
    free(want);
    gm_model_free(want_m);
}

static void test_replace_keeps_acquired_model(void **state) {
    gm_registry *r = gm_registry_new();
    char err[GM_ERR_LEN];
    bool replaced = true;
    assert_int_equal(gm_registry_put(r, "m", NADE_FILE, load_file(NADE_FILE), 1.0, &replaced, err), 0);
    assert_false(replaced);
    gm_served *held = gm_registry_acquire(r, "m");
    assert_non_null(held);
    assert_string_equal(held->path, NADE_FILE);
    assert_int_equal(gm_registry_put(r, "m", VAE_FILE, load_file(VAE_FILE), 1.0, &replaced, err), 0);
    assert_true(replaced);
    assert_int_equal(atomic_load(&held->refs), 1); /* the registry let go; the holder keeps it alive */
    assert_same_pixels(held->model, NADE_FILE, 7); /* still the old file's model */
    gm_served *now = gm_registry_acquire(r, "m");
    assert_string_equal(now->path, VAE_FILE);
    assert_int_equal(gm_model_get_info(now->model)->family, GM_FAMILY_VAE);
    assert_same_pixels(now->model, VAE_FILE, 7);
    gm_served_release(held); /* the last reference: frees the NADE (a leak would fail SAN=1) */
    gm_served_release(now);
    assert_int_equal(gm_registry_count(r), 1);
    gm_registry_free(r);
}

static void test_slots_are_stable(void **state) {
    gm_registry *r = gm_registry_new();
    char err[GM_ERR_LEN];
    /* the registry never looks inside a model, so NULL stands in for one */
    assert_int_equal(gm_registry_put(r, "a", "a.st", NULL, 0, NULL, err), 0);
    assert_int_equal(gm_registry_put(r, "b", "b.st", NULL, 0, NULL, err), 1);
    assert_true(gm_registry_remove(r, "a"));
    assert_false(gm_registry_remove(r, "a"));
    assert_null(gm_registry_acquire(r, "a"));
    assert_int_equal(gm_registry_find(r, "a"), 0); /* the name keeps its slot */
    assert_int_equal(gm_registry_put(r, "c", "c.st", NULL, 0, NULL, err), 2);
    assert_int_equal(gm_registry_put(r, "a", "a2.st", NULL, 0, NULL, err), 0);
    assert_int_equal(gm_registry_slots(r), 3);
    assert_string_equal(gm_registry_slot_names(r)[2], "c");
    gm_served *list[8];
    int n = gm_registry_list(r, list, 8);
    assert_int_equal(n, 3);
    assert_string_equal(list[0]->path, "a2.st"); /* slot order */
    for (int i = 0; i < n; i++) gm_served_release(list[i]);
    gm_served *s = gm_registry_acquire_slot(r, 1);
    assert_string_equal(s->name, "b");
    gm_served_release(s);
    assert_null(gm_registry_acquire_slot(r, 3));
    assert_null(gm_registry_acquire_slot(r, -1));
    gm_registry_free(r);
}

static void test_slots_run_out(void **state) {
    gm_registry *r = gm_registry_new();
    char err[GM_ERR_LEN], name[16];
    for (int i = 0; i < GM_REGISTRY_SLOTS; i++) {
        snprintf(name, sizeof name, "m%d", i);
        assert_int_equal(gm_registry_put(r, name, "x", NULL, 0, NULL, err), i);
        assert_true(gm_registry_remove(r, name));
    }
    assert_int_equal(gm_registry_put(r, "new", "x", NULL, 0, NULL, err), -1);
    assert_non_null(strstr(err, "restart"));
    assert_int_equal(gm_registry_put(r, "m5", "x", NULL, 0, NULL, err), 5); /* old names still fit */
    char longname[GM_NAME_LEN + 8];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert_int_equal(gm_registry_put(r, longname, "x", NULL, 0, NULL, err), -1);
    gm_registry_free(r);
}

typedef struct {
    gm_registry *r;
    atomic_bool stop;
    atomic_int runs, wrong;
} race;

static float *want_nade, *want_vae;

static void *use_models(void *arg) {
    race *x = arg;
    while (!atomic_load(&x->stop)) {
        gm_served *s = gm_registry_acquire(x->r, "m");
        if (!s) {
            atomic_fetch_add(&x->wrong, 1);
            continue;
        }
        const gm_model_info *in = gm_model_get_info(s->model);
        float *px = malloc((size_t)in->dim * sizeof *px);
        gm_row *rows = seeded_rows(1, 11, 1.0f);
        gm_model_sample(s->model, 1, rows, px, NULL);
        const float *want = !strcmp(s->path, NADE_FILE) ? want_nade : want_vae;
        if (memcmp(px, want, (size_t)in->dim * sizeof *px)) atomic_fetch_add(&x->wrong, 1);
        free(rows);
        free(px);
        gm_served_release(s);
        atomic_fetch_add(&x->runs, 1);
    }
    return NULL;
}

static void test_concurrent_replace(void **state) {
    race x = {.r = gm_registry_new()};
    char err[GM_ERR_LEN];
    gm_model *a = load_file(NADE_FILE), *b = load_file(VAE_FILE);
    want_nade = sample_one(a, 11);
    want_vae = sample_one(b, 11);
    gm_model_free(a);
    gm_model_free(b);
    assert_int_equal(gm_registry_put(x.r, "m", NADE_FILE, load_file(NADE_FILE), 0, NULL, err), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, use_models, &x);
    for (int i = 0; i < 20; i++) {
        const char *path = i % 2 ? NADE_FILE : VAE_FILE;
        assert_int_equal(gm_registry_put(x.r, "m", path, load_file(path), 0, NULL, err), 0);
    }
    while (atomic_load(&x.runs) < 200) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&x.stop, true);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&x.wrong), 0);
    free(want_nade);
    free(want_vae);
    gm_registry_free(x.r);
}

static void test_settings_snapshots(void **state) {
    static gm_config a, b;
    a.max_n = 10;
    b.max_n = 20;
    gm_settings *s = gm_settings_new(&a);
    const gm_config *held = gm_settings_acquire(s);
    assert_true(gm_settings_replace(s, &b));
    assert_int_equal(held->max_n, 10); /* a request keeps the snapshot it started with */
    const gm_config *now = gm_settings_acquire(s);
    assert_int_equal(now->max_n, 20);
    gm_settings_release(held);
    gm_settings_release(now);
    gm_settings_free(s);
}

/* ---- reload, on files in a scratch folder ---- */

static char dir[64], cfg_file[128], model_file[128];

static void write_config(const char *extra) {
    char text[1024];
    snprintf(text, sizeof text, "{\"models\": {\"m\": \"%s\", \"nade\": \"%s\"}, \"default_model\": \"nade\"%s}",
             model_file, NADE_FILE, extra);
    write_text(cfg_file, text);
}

typedef struct {
    gm_reload_target t;
    char *argv[4];
} reload_env;

static reload_env *env_new(void) {
    reload_env *e = calloc(1, sizeof *e);
    e->argv[0] = "gmserve";
    e->argv[1] = "--config";
    e->argv[2] = cfg_file;
    static gm_config cfg;
    char err[GM_ERR_LEN], err2[2 * GM_ERR_LEN];
    assert_int_equal(gm_config_load(&cfg, 3, e->argv, err), GM_CONFIG_OK);
    e->t = (gm_reload_target){gm_registry_new(), gm_settings_new(&cfg), 3, e->argv};
    assert_int_equal(gm_reload_initial(e->t.models, &cfg, err2), 0);
    return e;
}

static void env_free(reload_env *e) {
    gm_registry_free(e->t.models);
    gm_settings_free(e->t.settings);
    free(e);
}

static int scratch_up(void **state) {
    strcpy(dir, "/tmp/gm_reload_XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(cfg_file, sizeof cfg_file, "%s/gmserve.json", dir);
    snprintf(model_file, sizeof model_file, "%s/m.safetensors", dir);
    copy_file(NADE_FILE, model_file);
    write_config("");
    return 0;
}

static int scratch_down(void **state) {
    unlink(cfg_file);
    unlink(model_file);
    rmdir(dir);
    return 0;
}

static gm_family family_of(reload_env *e, const char *name) {
    gm_served *s = gm_registry_acquire(e->t.models, name);
    assert_non_null(s);
    gm_family f = gm_model_get_info(s->model)->family;
    gm_served_release(s);
    return f;
}

static void expect(gm_reload_outcome *o, gm_reload_status want, const char *in_message) {
    if (o->status != want || (in_message && !strstr(o->message, in_message))) {
        print_error("outcome %d, want %d; message: %s (want it to contain \"%s\")\n", o->status, want, o->message,
                    in_message ? in_message : "");
        fail();
    }
    json_decref(o->result);
    o->result = NULL;
}

static void test_reload_settings_and_files(void **state) {
    reload_env *e = env_new();
    gm_reload_outcome o;
    assert_int_equal(family_of(e, "m"), GM_FAMILY_NADE);
    gm_served *before = gm_registry_acquire(e->t.models, "m");

    copy_file(VAE_FILE, model_file); /* the same path, a new file: a ConfigMap or volume update */
    gm_reload_settings(&e->t, &o);
    assert_int_equal(o.status, GM_RELOAD_OK);
    json_t *first = json_array_get(json_object_get(o.result, "models"), 0);
    assert_true(json_is_true(json_object_get(first, "replaced")));
    expect(&o, GM_RELOAD_OK, NULL);
    assert_int_equal(family_of(e, "m"), GM_FAMILY_VAE);
    gm_served *after = gm_registry_acquire(e->t.models, "m");
    assert_same_pixels(after->model, VAE_FILE, 3);
    assert_same_pixels(before->model, NADE_FILE, 3); /* held across the reload: still the old file's */
    gm_served_release(before);
    gm_served_release(after);

    write_text(model_file, "not a model"); /* a bad file: the VAE goes on serving */
    gm_reload_settings(&e->t, &o);
    expect(&o, GM_RELOAD_BAD_FILE, model_file);
    assert_int_equal(family_of(e, "m"), GM_FAMILY_VAE);

    unlink(cfg_file);
    assert_int_equal(mkfifo(cfg_file, 0600), 0); /* a settings file that is a FIFO: refused, not waited on */
    gm_reload_settings(&e->t, &o);
    expect(&o, GM_RELOAD_BAD_SETTINGS, "not a regular file");
    unlink(cfg_file);

    copy_file(VAE_FILE, model_file);
    write_text(cfg_file, "{\"models\": ");
    gm_reload_settings(&e->t, &o);
    expect(&o, GM_RELOAD_BAD_SETTINGS, cfg_file);

    /* workers needs a restart: reported and kept; max_n applies now */
    write_config(", \"workers\": 7, \"max_n\": 9");
    gm_reload_settings(&e->t, &o);
    const char *restart = json_string_value(json_object_get(o.result, "restart_required"));
    assert_non_null(restart);
    assert_non_null(strstr(restart, "workers (running 2, the settings say 7)"));
    expect(&o, GM_RELOAD_OK, NULL);
    const gm_config *cfg = gm_settings_acquire(e->t.settings);
    assert_int_equal(cfg->workers, 2);
    assert_int_equal(cfg->max_n, 9);
    gm_settings_release(cfg);
    env_free(e);
    write_config("");
}

static void test_load_replace_unload(void **state) {
    reload_env *e = env_new();
    gm_reload_outcome o;
    gm_reload_model(&e->t, "extra", VAE_FILE, &o);
    expect(&o, GM_RELOAD_CREATED, NULL);
    assert_int_equal(family_of(e, "extra"), GM_FAMILY_VAE);
    gm_reload_model(&e->t, "extra", NADE_FILE, &o);
    expect(&o, GM_RELOAD_OK, NULL);
    assert_int_equal(family_of(e, "extra"), GM_FAMILY_NADE);
    gm_reload_model(&e->t, "extra", "tests/fixtures/no_such.safetensors", &o);
    expect(&o, GM_RELOAD_BAD_FILE, "no_such.safetensors");
    assert_int_equal(family_of(e, "extra"), GM_FAMILY_NADE); /* goes on serving */
    char fifo[160];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0); /* opening one for reading waits for a writer: never do */
    gm_reload_model(&e->t, "extra", fifo, &o);
    expect(&o, GM_RELOAD_BAD_FILE, "not a regular file");
    unlink(fifo);
    gm_reload_model(&e->t, "bad/name", NADE_FILE, &o);
    expect(&o, GM_RELOAD_BAD_REQUEST, "name");
    gm_reload_model(&e->t, "x", "", &o);
    expect(&o, GM_RELOAD_BAD_REQUEST, "path");
    gm_reload_model(&e->t, "x", "a\nb", &o);
    expect(&o, GM_RELOAD_BAD_REQUEST, "control");
    gm_reload_unload(&e->t, "nade", &o);
    expect(&o, GM_RELOAD_CONFLICT, "default");
    gm_reload_unload(&e->t, "extra", &o);
    expect(&o, GM_RELOAD_OK, NULL);
    assert_null(gm_registry_acquire(e->t.models, "extra"));
    gm_reload_unload(&e->t, "extra", &o);
    expect(&o, GM_RELOAD_NOT_FOUND, "extra");
    gm_reload_unload(&e->t, "\x01../x", &o);
    expect(&o, GM_RELOAD_NOT_FOUND, "no model has that name");

    /* a reload serves what the settings name: an admin-loaded model is dropped */
    gm_reload_model(&e->t, "extra", VAE_FILE, &o);
    expect(&o, GM_RELOAD_CREATED, NULL);
    gm_reload_settings(&e->t, &o);
    json_t *gone = json_object_get(o.result, "unloaded");
    assert_int_equal(json_array_size(gone), 1);
    assert_string_equal(json_string_value(json_array_get(gone, 0)), "extra");
    expect(&o, GM_RELOAD_OK, NULL);
    assert_null(gm_registry_acquire(e->t.models, "extra"));
    assert_int_equal(gm_registry_count(e->t.models), 2);
    env_free(e);
}

/* ---- the control thread ---- */

static atomic_int done_count;
static atomic_bool hold_first;

static void task_done(gm_control_task *t) {
    while (t->owner && atomic_load(&hold_first)) { /* the first task holds the thread, so the rest queue up */
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    json_decref(t->outcome.result);
    atomic_fetch_add(&done_count, 1);
}

static void test_control_runs_in_order_and_bounds(void **state) {
    reload_env *e = env_new();
    char err[GM_ERR_LEN];
    gm_control *c = gm_control_start(&e->t, err);
    assert_non_null(c);
    static gm_control_task tasks[GM_CONTROL_PENDING + 2];
    atomic_store(&hold_first, true);
    tasks[0] = (gm_control_task){.op = GM_CONTROL_LOAD, .done = task_done, .owner = &tasks[0]};
    strcpy(tasks[0].name, "extra");
    strcpy(tasks[0].path, VAE_FILE);
    assert_true(gm_control_submit(c, &tasks[0]));
    while (gm_registry_count(e->t.models) < 3) { /* the first task ran; its done callback holds the thread */
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    for (int i = 1; i <= GM_CONTROL_PENDING; i++) {
        tasks[i] = (gm_control_task){.op = GM_CONTROL_UNLOAD, .done = task_done};
        strcpy(tasks[i].name, "extra");
        assert_true(gm_control_submit(c, &tasks[i]));
    }
    tasks[GM_CONTROL_PENDING + 1] = (gm_control_task){.op = GM_CONTROL_RELOAD, .done = task_done};
    assert_false(gm_control_submit(c, &tasks[GM_CONTROL_PENDING + 1])); /* the mailbox is full */
    atomic_store(&hold_first, false);
    gm_control_stop(c); /* runs what is queued first */
    assert_int_equal(atomic_load(&done_count), GM_CONTROL_PENDING + 1);
    assert_int_equal(tasks[0].outcome.status, GM_RELOAD_CREATED);
    assert_int_equal(tasks[1].outcome.status, GM_RELOAD_OK); /* in order: the first unload found it */
    for (int i = 2; i <= GM_CONTROL_PENDING; i++) assert_int_equal(tasks[i].outcome.status, GM_RELOAD_NOT_FOUND);
    env_free(e);
}

int main(void) {
    unsetenv("GMSERVE_CONFIG");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replace_keeps_acquired_model),
        cmocka_unit_test(test_slots_are_stable),
        cmocka_unit_test(test_slots_run_out),
        cmocka_unit_test(test_concurrent_replace),
        cmocka_unit_test(test_settings_snapshots),
        cmocka_unit_test_setup_teardown(test_reload_settings_and_files, scratch_up, scratch_down),
        cmocka_unit_test_setup_teardown(test_load_replace_unload, scratch_up, scratch_down),
        cmocka_unit_test_setup_teardown(test_control_runs_in_order_and_bounds, scratch_up, scratch_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
