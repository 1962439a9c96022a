/*
 * test_config_levels.c - how the settings levels (file, flags, environment)
 * combine for the two settings that depend on each other: the models list
 * and default_model, which names one of them.
 *
 * The truth checked: a default_model belongs to the models list of its own
 * level. A higher level that replaces the list without naming a default gets
 * the documented default, the first model of its own list; one that names a
 * default keeps it whatever the order of the keys or flags; one that does
 * not touch the list keeps the lower level's default. A default that names
 * no model of the final list is still an error.
 */
#include "config.h"
#include "testutil.h"

static char cfg_path[TEMP_PATH_LEN];

/* The shipped shape: three models and default_model "nade". */
static int write_config(void **state) {
    const char *text = "{\"models\": {\"nade\": \"n.st\", \"vae\": \"v.st\", \"gan\": \"g.st\"},"
                       " \"default_model\": \"nade\"}";
    temp_file(cfg_path, "levels", text, strlen(text));
    setenv("GMSERVE_CONFIG", cfg_path, 1);
    unsetenv("GMSERVE_MODELS");
    unsetenv("GMSERVE_DEFAULT_MODEL");
    return 0;
}

static int remove_config(void **state) {
    unlink(cfg_path);
    unsetenv("GMSERVE_CONFIG");
    unsetenv("GMSERVE_MODELS");
    unsetenv("GMSERVE_DEFAULT_MODEL");
    return 0;
}

/* Loads with argv (NULL-terminated, argv[0] added) and returns the result. */
static gm_config_result load(gm_config *cfg, char *err, const char *const *args) {
    char *argv[16] = {"gmserve"};
    int argc = 1;
    for (; args[argc - 1]; argc++) argv[argc] = (char *)args[argc - 1];
    return gm_config_load(cfg, argc, argv, err);
}

static void file_alone_keeps_its_default(void **state) {
    gm_config cfg;
    char err[GM_ERR_LEN] = "";
    assert_int_equal(load(&cfg, err, (const char *[]){NULL}), GM_CONFIG_OK);
    assert_int_equal(cfg.n_models, 3);
    assert_string_equal(cfg.default_model, "nade");
}

static void flag_models_replace_the_file_default(void **state) {
    gm_config cfg;
    char err[GM_ERR_LEN] = "";
    gm_config_result r = load(&cfg, err, (const char *[]){"--model", "mine=m.st", "--model", "b=b.st", NULL});
    if (r != GM_CONFIG_OK) fail_msg("--model over a file with default_model: %s", err);
    assert_int_equal(cfg.n_models, 2);
    assert_string_equal(cfg.default_model, "mine");
}

static void env_models_replace_the_file_default(void **state) {
    gm_config cfg;
    char err[GM_ERR_LEN] = "";
    setenv("GMSERVE_MODELS", "mine=m.st,other=o.st", 1);
    gm_config_result r = load(&cfg, err, (const char *[]){NULL});
    if (r != GM_CONFIG_OK) fail_msg("GMSERVE_MODELS over a file with default_model: %s", err);
    assert_string_equal(cfg.default_model, "mine");
}

/* Flags then environment: the environment's list wins, and with it its first model. */
static void env_models_replace_a_flag_default(void **state) {
    gm_config cfg;
    char err[GM_ERR_LEN] = "";
    setenv("GMSERVE_MODELS", "x=x.st,y=y.st", 1);
    gm_config_result r = load(&cfg, err, (const char *[]){"--model", "a=a.st", "--default-model", "a", NULL});
    if (r != GM_CONFIG_OK) fail_msg("GMSERVE_MODELS over --default-model: %s", err);
    assert_string_equal(cfg.default_model, "x");
}

/* A level naming its default keeps it, before or after its list. */
static void a_level_keeps_the_default_it_names(void **state) {
    gm_config cfg;
    char err[GM_ERR_LEN] = "";
    assert_int_equal(
        load(&cfg, err, (const char *[]){"--default-model", "b", "--model", "a=a.st", "--model", "b=b.st", NULL}),
        GM_CONFIG_OK);
    assert_string_equal(cfg.default_model, "b");
    assert_int_equal(
        load(&cfg, err, (const char *[]){"--model", "a=a.st", "--model", "b=b.st", "--default-model", "b", NULL}),
        GM_CONFIG_OK);
    assert_string_equal(cfg.default_model, "b");
    setenv("GMSERVE_MODELS", "mine=m.st,other=o.st", 1);
    setenv("GMSERVE_DEFAULT_MODEL", "other", 1);
    assert_int_equal(load(&cfg, err, (const char *[]){NULL}), GM_CONFIG_OK);
    assert_string_equal(cfg.default_model, "other");
}

/* A default alone at a higher level picks from the lower level's list. */
static void a_default_alone_picks_from_the_lower_list(void **state) {
    gm_config cfg;
    char err[GM_ERR_LEN] = "";
    setenv("GMSERVE_DEFAULT_MODEL", "gan", 1);
    assert_int_equal(load(&cfg, err, (const char *[]){NULL}), GM_CONFIG_OK);
    assert_int_equal(cfg.n_models, 3);
    assert_string_equal(cfg.default_model, "gan");
}

/* A default that names no model of the final list stays an error, naming it. */
static void a_default_outside_the_list_is_refused(void **state) {
    gm_config cfg;
    char err[GM_ERR_LEN] = "";
    setenv("GMSERVE_MODELS", "mine=m.st", 1);
    setenv("GMSERVE_DEFAULT_MODEL", "nade", 1);
    assert_int_equal(load(&cfg, err, (const char *[]){NULL}), GM_CONFIG_ERROR);
    assert_non_null(strstr(err, "\"nade\""));
    unsetenv("GMSERVE_MODELS");
    unsetenv("GMSERVE_DEFAULT_MODEL");
    assert_int_equal(load(&cfg, err, (const char *[]){"--default-model", "nope", NULL}), GM_CONFIG_ERROR);
    assert_non_null(strstr(err, "\"nope\""));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(file_alone_keeps_its_default, write_config, remove_config),
        cmocka_unit_test_setup_teardown(flag_models_replace_the_file_default, write_config, remove_config),
        cmocka_unit_test_setup_teardown(env_models_replace_the_file_default, write_config, remove_config),
        cmocka_unit_test_setup_teardown(env_models_replace_a_flag_default, write_config, remove_config),
        cmocka_unit_test_setup_teardown(a_level_keeps_the_default_it_names, write_config, remove_config),
        cmocka_unit_test_setup_teardown(a_default_alone_picks_from_the_lower_list, write_config, remove_config),
        cmocka_unit_test_setup_teardown(a_default_outside_the_list_is_refused, write_config, remove_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
