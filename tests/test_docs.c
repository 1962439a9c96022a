/*
 * test_docs.c - the documentation says what the code does: every table
 * between "<!-- generated: FLAG -->" and "<!-- end generated -->" in the
 * README and docs/ is exactly what `gmserve --FLAG` prints from the code's
 * own tables, and the README's curl lines run as written
 * (tests/readme_curl.sh: an empty directory, a real daemon, every status
 * 2xx).
 */
#include "testutil.h"

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

/* Checks every generated block of one file; returns how many it found. */
static int check_file(const char *path) {
    static const char OPEN[] = "<!-- generated: ", CLOSE[] = "<!-- end generated -->";
    char *text = read_text(path);
    int found = 0;
    for (char *p = strstr(text, OPEN); p; p = strstr(p + 1, OPEN)) {
        char flag[64] = "";
        sscanf(p + sizeof OPEN - 1, "%63[a-z-]", flag);
        char *body = strchr(p, '\n'), *end = body ? strstr(body, CLOSE) : NULL;
        assert_non_null(end);
        body++;
        static char want[1 << 16], cmd[512];
        snprintf(cmd, sizeof cmd, "%s --%s", gmserve_bin(), flag);
        assert_int_equal(run_command(cmd, want, sizeof want), 0);
        if (strlen(want) != (size_t)(end - body) || memcmp(want, body, strlen(want)) != 0) {
            print_error("%s: the table under \"%s%s -->\" is not what `gmserve --%s` prints; paste its output "
                        "there:\n%s\n",
                        path, OPEN, flag, flag, want);
            fail();
        }
        found++;
    }
    free(text);
    return found;
}

static void test_generated_tables_match_the_code(void **state) {
    assert_int_equal(check_file("README.md"), 1);        /* settings */
    assert_int_equal(check_file("docs/http-api.md"), 3); /* routes, parameters, errors */
}

static void test_readme_curl_lines_run(void **state) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "bash tests/readme_curl.sh %s", gmserve_bin());
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_tables_match_the_code),
        cmocka_unit_test(test_readme_curl_lines_run),
    };
    return cmocka_run_group_tests_name("docs", tests, NULL, NULL);
}
