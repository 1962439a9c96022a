/*
 * test_sha256.c - SHA-256 against the test vectors of FIPS 180-4 (NIST's
 * example values: "abc", the empty message, the 448-bit and 896-bit
 * two-block messages, a million 'a'), fed whole and in every split, and a
 * loaded model's sha256 against coreutils' sha256sum of the same file.
 */
#include "testutil.h"

#include "gm/model.h"
#include "gm/sha256.h"

typedef struct {
    const char *msg;
    const char *digest;
} vector;

static const vector VECTORS[] = {
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrs"
     "tnopqrstu",
     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
};

static void test_fips_vectors(void **state) {
    char hex[GM_SHA256_HEX];
    for (size_t v = 0; v < sizeof VECTORS / sizeof VECTORS[0]; v++) {
        gm_sha256_hex(VECTORS[v].msg, strlen(VECTORS[v].msg), hex);
        assert_string_equal(hex, VECTORS[v].digest);
    }
}

/* Every way of cutting a message in two (and three) gives the same digest:
 * the block buffering across updates is right at every offset. */
static void test_split_updates(void **state) {
    const char *msg = VECTORS[3].msg;
    size_t n = strlen(msg);
    char hex[GM_SHA256_HEX];
    uint8_t d[GM_SHA256_BYTES];
    for (size_t i = 0; i <= n; i++)
        for (size_t j = i; j <= n; j += 7) {
            gm_sha256 s;
            gm_sha256_init(&s);
            gm_sha256_update(&s, msg, i);
            gm_sha256_update(&s, msg + i, j - i);
            gm_sha256_update(&s, msg + j, n - j);
            gm_sha256_final(&s, d);
            gm_sha256_to_hex(d, hex);
            assert_string_equal(hex, VECTORS[3].digest);
        }
}

static void test_million_a(void **state) {
    char chunk[1000], hex[GM_SHA256_HEX];
    memset(chunk, 'a', sizeof chunk);
    gm_sha256 s;
    uint8_t d[GM_SHA256_BYTES];
    gm_sha256_init(&s);
    for (int i = 0; i < 1000; i++) gm_sha256_update(&s, chunk, sizeof chunk);
    gm_sha256_final(&s, d);
    gm_sha256_to_hex(d, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

/* The hash a loaded model reports is the file's, as sha256sum computes it. */
static void test_model_file_hash(void **state) {
    const char *files[] = {"tests/fixtures/nade_tiny.safetensors", "tests/fixtures/vae_conv.safetensors",
                           "tests/fixtures/gan_cond.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char err[GM_ERR_LEN], cmd[256], out[256];
        gm_model *m = gm_model_load(files[i], err);
        if (!m) print_error("%s\n", err);
        assert_non_null(m);
        snprintf(cmd, sizeof cmd, "sha256sum %s", files[i]);
        assert_int_equal(run_command(cmd, out, sizeof out), 0);
        out[64] = 0;
        assert_string_equal(gm_model_get_info(m)->sha256, out);
        gm_model_free(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fips_vectors),
        cmocka_unit_test(test_split_updates),
        cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_model_file_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
