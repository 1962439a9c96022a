/*
 * test_http_pool.c - the request heads libmicrohttpd's per-connection pool
 * (server/http.c, MEMORY_LIMIT) must hold: the largest target the server
 * takes (8 KiB, 256 query parameters) with 40 headers of 95 bytes beside it
 * is answered 200, and a head too large for the pool is answered 431 or
 * closed, at once, never left hanging.
 */
#include "testutil.h"

#include "daemon.h"

static daemon_t d;

static int start(void **state) {
    const char *args[] = {"--model", "nade=tests/fixtures/nade_ref.safetensors", NULL};
    d = daemon_start("http_pool", args);
    return 0;
}

static int stop(void **state) { return daemon_stop(&d) == 0 ? 0 : -1; }

/* GET /healthz with 256 parameters in a target of at most 8192 bytes and
 * `headers` headers of 95 bytes; returns the status, 0 when the server
 * closed without one, -1 when it did neither within 3 s. */
static int ask(int headers) {
    static char req[65536];
    char *p = req + sprintf(req, "GET /healthz?");
    for (int i = 0; i < 256; i++) p += sprintf(p, "%sp%03d=%.25s", i ? "&" : "", i, "vvvvvvvvvvvvvvvvvvvvvvvvv");
    assert_true(p - req - 4 <= 8192);
    p += sprintf(p, " HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (int i = 0; i < headers; i++) p += sprintf(p, "X-Header-%02d: %080d\r\n", i, 0);
    p += sprintf(p, "Connection: close\r\n\r\n");
    int fd = connect_to(d.port);
    reply_t r = {0};
    int ms = raw_exchange(fd, req, (size_t)(p - req), 3000, &r);
    close(fd);
    int status = r.status == 0 && ms >= 2900 ? -1 : r.status;
    reply_free(&r);
    return status;
}

static void test_largest_target_with_headers_is_served(void **state) {
    assert_int_equal(ask(0), 200);
    assert_int_equal(ask(40), 200);
}

static void test_oversized_head_is_refused_not_hung(void **state) {
    for (int h = 60; h <= 300; h += 40) {
        int status = ask(h);
        print_message("%d headers beside the largest target: %d\n", h, status);
        assert_true(status == 431 || status == 0 || status == 200);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_largest_target_with_headers_is_served),
        cmocka_unit_test(test_oversized_head_is_refused_not_hung),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
