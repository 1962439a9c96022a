/*
 * fuzz_config.c - libFuzzer harness for the settings loader
 * (gm_config_load): the JSON config file and the command-line flags.
 *
 * Input: the config file's text, then optionally a NUL byte and the
 * command-line arguments, each ended by a NUL (the last one by the end of
 * the input). The file goes to gm_config_load as an in-memory file through
 * --config; arguments that start with "--config" are dropped, so that the
 * input cannot name a file of this machine to read. GMSERVE_* variables of
 * the environment are removed first. An accepted configuration must satisfy
 * what the daemon relies on: a model, a default model among them, a port,
 * terminated strings.
 */
#include "config.h"
#include "fuzz_util.h"

enum { MAX_ARGS = 64 };

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_clear_gmserve_env();
    return 0;
}

static void check_str(const char *s, size_t cap, const char *what) {
    FUZZ_CHECK(memchr(s, 0, cap) != NULL, "%s not terminated", what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t file_len = nul ? (size_t)(nul - data) : size;
    char path[64], err[GM_ERR_LEN];
    int fd = fuzz_memfile(data, file_len, path, sizeof path);
    FUZZ_CHECK(fd >= 0, "memfd_create failed");

    /* argv strings: a NUL-terminated copy of the rest of the input */
    size_t rest = nul ? size - file_len - 1 : 0;
    char *args = malloc(rest + 1);
    FUZZ_CHECK(args, "out of memory");
    memcpy(args, nul ? nul + 1 : data, rest);
    args[rest] = 0;
    char *argv[MAX_ARGS + 4] = {"gmserve", "--config", path};
    int argc = 3;
    for (char *a = args; nul && a < args + rest && argc < MAX_ARGS; a += strlen(a) + 1)
        if (strncmp(a, "--config", 8) != 0) argv[argc++] = a;
    argv[argc] = NULL;

    static gm_config cfg;
    gm_config_result r = gm_config_load(&cfg, argc, argv, err);
    if (r == GM_CONFIG_ERROR) fuzz_check_err(err, sizeof err);
    if (r == GM_CONFIG_OK) {
        FUZZ_CHECK(cfg.n_models >= 1 && cfg.n_models <= GM_MAX_MODELS, "n_models %d", cfg.n_models);
        for (int i = 0; i < cfg.n_models; i++) {
            check_str(cfg.models[i].name, GM_NAME_LEN, "model name");
            check_str(cfg.models[i].path, GM_PATH_LEN, "model path");
            FUZZ_CHECK(cfg.models[i].name[0] && cfg.models[i].path[0], "model %d: empty name or path", i);
        }
        check_str(cfg.default_model, GM_NAME_LEN, "default_model");
        FUZZ_CHECK(gm_config_model_index(&cfg, cfg.default_model) >= 0, "default_model %s unknown", cfg.default_model);
        check_str(cfg.host, GM_KEY_LEN, "host");
        FUZZ_CHECK(cfg.port >= 0 && cfg.port <= 65535, "port %d", cfg.port);
        FUZZ_CHECK(cfg.n_api_keys >= 0 && cfg.n_api_keys <= GM_MAX_KEYS, "n_api_keys %d", cfg.n_api_keys);
        FUZZ_CHECK(cfg.n_cors_origins >= 0 && cfg.n_cors_origins <= GM_MAX_KEYS, "n_cors_origins %d",
                   cfg.n_cors_origins);
        FUZZ_CHECK(cfg.default_k <= cfg.max_k, "default_k %ld > max_k %ld", cfg.default_k, cfg.max_k);
        FUZZ_CHECK(cfg.workers >= 1 && cfg.max_batch >= 1 && cfg.queue_capacity >= 1, "a count below 1");
    }
    close(fd);
    free(args);
    return 0;
}
