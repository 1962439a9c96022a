/*
 * test_hostile_conn.c - the real daemon against hostile clients at the
 * connection and framing level: connections that hold partial headers,
 * trickle bytes, or close half-way in bursts must not lock out a client
 * from another address; bodies in progress share a memory budget (503 with
 * Retry-After past it); a query MHD cannot hold gets 414 rather than a hung
 * connection; framing and credentials that a proxy could read differently
 * (repeated Content-Length, Content-Length with chunked, a chunk of 2^64-1
 * bytes, repeated or NUL-cut Authorization) are refused; CORS answers * for
 * the wildcard and always sends Vary: Origin; %2F is never a path separator;
 * and the access log escapes control bytes. Attacker counts are small and
 * the daemons are started with small limits to match.
 */
#include "testutil.h"

#include <jansson.h>
#include <strings.h>

#include "daemon.h"

#define NADE "nade=tests/fixtures/nade_ref.safetensors"

static const char PARTIAL[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
static const char HEALTHZ[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* GET /healthz from 127.0.0.2 (not the attackers' address); its status and,
 * in *ms, how long the answer took. */
static int healthz_from_other(int port, int *ms) {
    int64_t t0 = now_ms();
    int fd = connect_from(port, "127.0.0.2");
    if (fd < 0) return -1;
    reply_t r;
    raw_exchange(fd, HEALTHZ, strlen(HEALTHZ), 5000, &r);
    close(fd);
    *ms = (int)(now_ms() - t0);
    int st = r.status;
    reply_free(&r);
    return st;
}

/* One raw request (with Connection: close among its headers) and its reply. */
static reply_t raw(int port, const void *req, size_t len) {
    reply_t r = {0};
    int fd = connect_to(port);
    if (fd < 0) return r;
    raw_exchange(fd, req, len, 5000, &r);
    close(fd);
    return r;
}

static reply_t raw_str(int port, const char *req) { return raw(port, req, strlen(req)); }

static int raw_status(int port, const char *req) {
    reply_t r = raw_str(port, req);
    int st = r.status;
    reply_free(&r);
    return st;
}

static void test_partial_headers_leave_room_for_others(void **state) {
    raise_nofile();
    const char *args[] = {
        "--model", NADE, "--max-connections", "32", "--max-connections-per-ip", "8", "--request-timeout-s", "60", NULL};
    daemon_t d = daemon_start("hostile_partial", args);
    enum { N = 48 }; /* more than max_connections */
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = connect_to(d.port);
        if (fds[i] >= 0) send(fds[i], PARTIAL, strlen(PARTIAL), MSG_NOSIGNAL);
    }
    sleep_ms(200);
    int ms = 0, st = healthz_from_other(d.port, &ms);
    print_message("%d connections holding partial headers: another client answered %d in %d ms\n", N, st, ms);
    assert_int_equal(st, 200);
    assert_true(ms < 5000);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0) close(fds[i]);
    assert_int_equal(daemon_stop(&d), 0);
}

static void test_many_addresses_holding_partial_headers(void **state) {
    raise_nofile();
    /* no per-address limit, and a long deadline: what frees the slots is the
     * short deadline that applies when nearly all of them are taken */
    const char *args[] = {
        "--model", NADE, "--max-connections", "32", "--max-connections-per-ip", "0", "--request-timeout-s", "60", NULL};
    daemon_t d = daemon_start("hostile_pressure", args);
    enum { N = 40 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = connect_to(d.port);
        if (fds[i] >= 0) send(fds[i], PARTIAL, strlen(PARTIAL), MSG_NOSIGNAL);
    }
    sleep_ms(200);
    int ms = 0, st = healthz_from_other(d.port, &ms);
    print_message("%d partial requests, no per-address limit: another client answered %d in %d ms\n", N, st, ms);
    assert_int_equal(st, 200);
    assert_true(ms < 5000);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0) close(fds[i]);
    assert_int_equal(daemon_stop(&d), 0);
}

static void test_trickle_is_cut_at_the_deadline(void **state) {
    const char *args[] = {"--model", NADE, "--request-timeout-s", "2", "--idle-timeout-s", "60", NULL};
    daemon_t d = daemon_start("hostile_trickle", args);
    int fd = connect_to(d.port);
    assert_true(fd >= 0);
    int64_t t0 = now_ms();
    send(fd, PARTIAL, strlen(PARTIAL), MSG_NOSIGNAL);
    int closed_ms = -1;
    while (now_ms() - t0 < 8000 && closed_ms < 0) {
        if (send(fd, "x", 1, MSG_NOSIGNAL) != 1 || wait_closed(fd, 300) >= 0) closed_ms = (int)(now_ms() - t0);
    }
    close(fd);
    print_message("a header trickled a byte per 300 ms: cut after %d ms (request_timeout_s 2)\n", closed_ms);
    assert_true(closed_ms >= 1500 && closed_ms < 5000);
    /* a prompt request on a fresh connection is unaffected */
    assert_int_equal(raw_status(d.port, HEALTHZ), 200);
    assert_int_equal(daemon_stop(&d), 0);
}

static void test_half_closed_burst_is_reclaimed(void **state) {
    raise_nofile();
    const char *args[] = {"--model", NADE, "--max-connections", "32", "--max-connections-per-ip", "0", NULL};
    daemon_t d = daemon_start("hostile_halfclose", args);
    enum { N = 400 };
    for (int i = 0; i < N; i++) {
        int fd = connect_to(d.port);
        if (fd < 0) continue;
        send(fd, PARTIAL, strlen(PARTIAL), MSG_NOSIGNAL);
        close(fd);
    }
    int ms = 0, st = healthz_from_other(d.port, &ms);
    print_message("after %d connect+partial+close on max_connections 32: answered %d in %d ms\n", N, st, ms);
    assert_int_equal(st, 200);
    assert_true(ms < 5000);
    /* a whole request followed by closing the sending side is still answered */
    int fd = connect_to(d.port);
    send(fd, HEALTHZ, strlen(HEALTHZ), MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    reply_t r;
    raw_exchange(fd, NULL, 0, 5000, &r);
    close(fd);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
}

static void test_body_budget_gives_503(void **state) {
    const char *args[] = {"--model", NADE, "--max-body-bytes", "1048576", "--max-body-memory-bytes", "1048576", NULL};
    daemon_t d = daemon_start("hostile_bodies", args);
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "POST /v1/models/nade/logp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      "image/png\r\nContent-Length: 700000\r\n\r\n");
    static char part[1000];
    int a = connect_to(d.port);
    assert_true(a >= 0);
    send(a, head, (size_t)hn, MSG_NOSIGNAL);
    send(a, part, sizeof part, MSG_NOSIGNAL); /* A holds 700 kB of the 1 MiB budget, unfinished */
    sleep_ms(200);
    int b = connect_to(d.port);
    reply_t r;
    int ms = raw_exchange(b, head, (size_t)hn, 5000, &r);
    close(b);
    char retry[32] = "";
    reply_header(&r, "Retry-After", retry, sizeof retry);
    print_message("a second 700 kB body past the 1 MiB budget: %d in %d ms, Retry-After %s\n", r.status, ms, retry);
    assert_int_equal(r.status, 503);
    assert_true(atoi(retry) >= 1);
    assert_non_null(strstr((char *)r.body, "max_body_memory_bytes"));
    reply_free(&r);
    close(a); /* A's share comes back once the server has seen it leave */
    char head_c[300], got[16] = "";
    hn = snprintf(head_c, sizeof head_c, "%.*sExpect: 100-continue\r\n\r\n", hn - 2, head);
    for (int tries = 0; tries < 20 && memcmp(got, "HTTP/1.1 100", 12); tries++) {
        sleep_ms(250);
        int c = connect_to(d.port);
        send(c, head_c, (size_t)hn, MSG_NOSIGNAL);
        struct pollfd p = {c, POLLIN, 0};
        if (poll(&p, 1, 5000) == 1) recv(c, got, 12, 0);
        close(c);
    }
    assert_memory_equal(got, "HTTP/1.1 100", 12);
    assert_int_equal(daemon_stop(&d), 0);
}

static daemon_t plain;

static int start_plain(void **state) {
    const char *args[] = {"--model", NADE, "--max-body-bytes", "65536", NULL};
    plain = daemon_start("hostile_plain", args);
    return 0;
}

static int stop_plain(void **state) { return daemon_stop(&plain) == 0 ? 0 : -1; }

static void test_too_many_query_params_get_414(void **state) {
    size_t n = 3000;
    char *req = malloc(16384);
    char *p = req + sprintf(req, "GET /healthz?");
    for (size_t i = 0; i < n; i++) p += sprintf(p, i ? "&a" : "a");
    sprintf(p, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    int64_t t0 = now_ms();
    reply_t r = raw(plain.port, req, strlen(req));
    print_message("3000 query parameters: %d in %d ms\n", r.status, (int)(now_ms() - t0));
    assert_int_equal(r.status, 414);
    assert_non_null(strstr((char *)r.body, "parameters"));
    reply_free(&r);
    /* one parameter, but a target longer than the server takes */
    p = req + sprintf(req, "GET /healthz?a=");
    memset(p, 'b', 9000);
    sprintf(p + 9000, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert_int_equal(raw_status(plain.port, req), 414);
    free(req);
    assert_int_equal(raw_status(plain.port, HEALTHZ), 200);
}

static void test_framing_disagreements_are_refused(void **state) {
    /* two lengths: a proxy could use the other one and see "hello" as a second request */
    assert_int_equal(raw_status(plain.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                                            "Content-Length: 0\r\nContent-Length: 5\r\n\r\nhello"),
                     400);
    assert_int_equal(raw_status(plain.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                                            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                     400);
    assert_int_equal(raw_status(plain.port, "POST /sample HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                                            "Transfer-Encoding: gzip\r\n\r\n"),
                     501);
    /* the same length twice is still one length too many, and one is fine */
    assert_int_equal(raw_status(plain.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                                            "Content-Length: 0\r\n\r\n"),
                     200);
}

static void test_endless_chunk_is_cut(void **state) {
    int fd = connect_to(plain.port);
    const char *head = "POST /sample HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       "Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n";
    send(fd, head, strlen(head), MSG_NOSIGNAL);
    static char junk[65536];
    memset(junk, ' ', sizeof junk);
    size_t sent = 0;
    int64_t t0 = now_ms();
    while (sent < (64u << 20) && now_ms() - t0 < 5000) { /* the limit is 64 KiB: 1000x that */
        struct pollfd p = {fd, POLLOUT, 0};
        if (poll(&p, 1, 1000) != 1 || (p.revents & (POLLERR | POLLHUP))) break;
        ssize_t n = send(fd, junk, sizeof junk, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN) break;
        if (n > 0) sent += (size_t)n;
    }
    int closed = wait_closed(fd, 3000);
    close(fd);
    print_message("a chunk of 2^64-1 bytes: %zu bytes taken before the connection was closed\n", sent);
    assert_true(closed >= 0);
    assert_true(sent < (64u << 20));
}

static void test_encoded_slash_is_not_a_separator(void **state) {
    reply_t r =
        raw_str(plain.port, "GET /v1/models/nade%2Fsample HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert_int_equal(r.status, 404);
    reply_free(&r);
    assert_int_equal(raw_status(plain.port, "GET /v1/models/nade%2fsample?n=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                            "Connection: close\r\n\r\n"),
                     404);
    assert_int_equal(raw_status(plain.port, "GET /v1/models/nade/sample?n=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                            "Connection: close\r\n\r\n"),
                     200);
}

/* The log line of the request with X-Request-Id id (polls: it is written as
 * the request completes, just after the reply). */
static char *log_line(const daemon_t *d, const char *id) {
    for (int tries = 0; tries < 50; tries++) {
        FILE *f = fopen(d->log, "rb");
        char line[8192];
        while (f && fgets(line, sizeof line, f))
            if (strstr(line, id)) {
                fclose(f);
                return strdup(line);
            }
        if (f) fclose(f);
        sleep_ms(50);
    }
    return NULL;
}

static bool log_has(const daemon_t *d, const char *needle, size_t n) {
    FILE *f = fopen(d->log, "rb");
    static char buf[1 << 20];
    size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    return memmem(buf, len, needle, n) != NULL;
}

static void test_text_log_escapes_control_bytes(void **state) {
    assert_int_equal(raw_status(plain.port,
                                "GET /healthz%0a2026-01-01T00:00:00Z%20FORGED%1b[31m HTTP/1.1\r\n"
                                "Host: 127.0.0.1\r\nX-Request-Id: logtest-text\r\nConnection: close\r\n\r\n"),
                     404);
    char *line = log_line(&plain, "logtest-text");
    assert_non_null(line);
    print_message("logged as: %s", line);
    assert_non_null(strstr(line, "\\x0a2026-01-01T00:00:00Z FORGED\\x1b[31m"));
    free(line);
    assert_false(log_has(&plain, "\n2026-01-01T00:00:00Z FORGED", 28));
    assert_false(log_has(&plain, "\x1b", 1));
}

static void test_json_log_keeps_invalid_utf8_lines(void **state) {
    const char *args[] = {"--model", NADE, "--log-format", "json", NULL};
    daemon_t d = daemon_start("hostile_jsonlog", args);
    assert_true(raw_status(d.port, "GET /healthz%ff%0a HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: logtest-json\r\n"
                                   "Connection: close\r\n\r\n") > 0);
    char *line = log_line(&d, "logtest-json");
    assert_non_null(line);
    json_t *j = json_loads(line, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/healthz\\xff\\x0a");
    json_decref(j);
    free(line);
    assert_int_equal(daemon_stop(&d), 0);
}

static void test_authorization_must_be_single_and_whole(void **state) {
    const char *args[] = {"--model", NADE, "--api-key", "K3y", NULL};
    daemon_t d = daemon_start("hostile_auth", args);
#define MODELS "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    assert_int_equal(raw_status(d.port, MODELS "Authorization: Bearer K3y\r\n\r\n"), 200);
    assert_int_equal(raw_status(d.port, MODELS "Authorization: Bearer K3y\r\nAuthorization: Bearer nope\r\n\r\n"), 400);
    assert_int_equal(raw_status(d.port, MODELS "Authorization: Bearer nope\r\nAuthorization: Bearer K3y\r\n\r\n"), 400);
    static const char nul[] = MODELS "Authorization: Bearer K3y\0junk\r\nAccept: */*\r\n\r\n";
    reply_t r = raw(d.port, nul, sizeof nul - 1);
    assert_int_equal(r.status, 400);
    reply_free(&r);
    static const char nul_last[] = MODELS "Authorization: Bearer K3y\0\x01\r\n\r\n";
    r = raw(d.port, nul_last, sizeof nul_last - 1);
    assert_int_equal(r.status, 400);
    reply_free(&r);
    /* bare LF line ends are not mistaken for a NUL */
    assert_int_equal(raw_status(d.port, "GET /v1/models HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer K3y\n"
                                        "Connection: close\n\n"),
                     200);
    assert_int_equal(daemon_stop(&d), 0);
}

static void test_cors_wildcard_and_vary(void **state) {
    const char *any[] = {"--model", NADE, "--cors-origin", "*", NULL};
    daemon_t d = daemon_start("hostile_cors_any", any);
    char v[256];
    const char *origins[] = {"null", "https://a.example"};
    for (int i = 0; i < 2; i++) {
        char req[256];
        snprintf(req, sizeof req, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: %s\r\nConnection: close\r\n\r\n",
                 origins[i]);
        reply_t r = raw(d.port, req, strlen(req));
        assert_int_equal(r.status, 200);
        assert_true(reply_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
        assert_string_equal(v, "*");
        assert_true(reply_header(&r, "Vary", v, sizeof v));
        reply_free(&r);
    }
    assert_int_equal(daemon_stop(&d), 0);
    const char *one[] = {"--model", NADE, "--cors-origin", "https://ok.example", NULL};
    d = daemon_start("hostile_cors_one", one);
    reply_t r = raw_str(d.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\n"
                                "Connection: close\r\n\r\n");
    assert_int_equal(r.status, 200);
    assert_false(reply_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    assert_true(reply_header(&r, "Vary", v, sizeof v));
    assert_string_equal(v, "Origin");
    reply_free(&r);
    r = raw(d.port, HEALTHZ, strlen(HEALTHZ));
    assert_true(reply_header(&r, "Vary", v, sizeof v));
    reply_free(&r);
    r = raw_str(d.port,
                "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://ok.example\r\nConnection: close\r\n\r\n");
    assert_true(reply_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    assert_string_equal(v, "https://ok.example");
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
}

int main(void) {
    const struct CMUnitTest conn[] = {
        cmocka_unit_test(test_partial_headers_leave_room_for_others),
        cmocka_unit_test(test_many_addresses_holding_partial_headers),
        cmocka_unit_test(test_trickle_is_cut_at_the_deadline),
        cmocka_unit_test(test_half_closed_burst_is_reclaimed),
        cmocka_unit_test(test_body_budget_gives_503),
        cmocka_unit_test(test_json_log_keeps_invalid_utf8_lines),
        cmocka_unit_test(test_authorization_must_be_single_and_whole),
        cmocka_unit_test(test_cors_wildcard_and_vary),
    };
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_too_many_query_params_get_414),  cmocka_unit_test(test_framing_disagreements_are_refused),
        cmocka_unit_test(test_endless_chunk_is_cut),           cmocka_unit_test(test_encoded_slash_is_not_a_separator),
        cmocka_unit_test(test_text_log_escapes_control_bytes),
    };
    int failed = cmocka_run_group_tests_name("hostile connections", conn, NULL, NULL);
    return failed + cmocka_run_group_tests_name("hostile requests (one daemon)", shared, start_plain, stop_plain);
}
