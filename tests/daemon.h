/*
 * daemon.h - what the integration tests need to drive a real gmserve: start
 * the binary ($GMSERVE_BIN, set by run_all.sh) on a free loopback port with
 * its log in build/, wait until /readyz says 200, speak HTTP/1.1 to it over
 * plain sockets, check its replies (JSON bodies, API error objects), and
 * stop it with SIGTERM, returning its exit status (a sanitizer report makes
 * that non-zero).
 */
#ifndef GM_TEST_DAEMON_H
#define GM_TEST_DAEMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "testutil.h"

/* The fixture models most daemon tests serve, as daemon_start arguments:
 * nade (nade_ref), vae (vae_mlp) and gan (gan_cond). */
#define FIXTURE_MODELS                                                                                                 \
    "--model", "nade=tests/fixtures/nade_ref.safetensors", "--model", "vae=tests/fixtures/vae_mlp.safetensors",        \
        "--model", "gan=tests/fixtures/gan_cond.safetensors"

typedef struct {
    pid_t pid;
    int port;
    char log[256];
} daemon_t;

typedef struct {
    int status; /* 0 when no reply came */
    char head[8192];
    uint8_t *body;
    size_t len;
} reply_t;

static inline void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static inline int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static inline int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {60, 0}; /* a hung server fails the test instead of hanging it */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static inline void reply_free(reply_t *r) {
    free(r->body);
    r->body = NULL;
}

/* The value of a reply header (case-insensitive name), copied to out. */
static inline bool reply_header(const reply_t *r, const char *name, char *out, size_t n) {
    size_t nl = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            line += nl + 1;
            while (*line == ' ') line++;
            size_t len = strcspn(line, "\r");
            if (len >= n) len = n - 1;
            memcpy(out, line, len);
            out[len] = 0;
            return true;
        }
    }
    return false;
}

/* Reads a whole reply (the request said Connection: close). */
static inline void read_reply(int fd, reply_t *r) {
    size_t cap = 65536, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (len == cap) buf = realloc(buf, cap *= 2);
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) break;
        len += (size_t)n;
    }
    memset(r, 0, sizeof *r);
    uint8_t *end = memmem(buf, len, "\r\n\r\n", 4);
    if (len > 12 && end) {
        size_t hl = (size_t)(end - buf);
        memcpy(r->head, buf, hl < sizeof r->head - 1 ? hl : sizeof r->head - 1);
        r->status = atoi((char *)buf + 9);
        r->len = len - hl - 4;
        r->body = malloc(r->len + 1);
        memcpy(r->body, end + 4, r->len);
        r->body[r->len] = 0;
    }
    free(buf);
}

/* One request on its own connection. headers: extra lines ending in \r\n, or
 * NULL. A body over 64 KiB is sent after the server's 100 Continue (or not at
 * all when the server answers first, as for a 413). */
static inline reply_t http(int port, const char *method, const char *path, const char *headers, const void *body,
                           size_t len) {
    reply_t r = {0};
    int fd = connect_to(port);
    if (fd < 0) return r;
    char head[4096];
    bool expect = len > 65536;
    int hn = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: %zu\r\n%s%s\r\n",
                      method, path, len, expect ? "Expect: 100-continue\r\n" : "", headers ? headers : "");
    send(fd, head, (size_t)hn, MSG_NOSIGNAL);
    if (expect) {
        char cont[64] = "";
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 5000) == 1) {
            ssize_t n = recv(fd, cont, 25, MSG_PEEK);
            if (n > 12 && strncmp(cont + 9, "100", 3) == 0) recv(fd, cont, 25, 0); /* "HTTP/1.1 100 Continue\r\n\r\n" */
            else goto read;
        }
    }
    for (size_t off = 0; off < len;) {
        ssize_t n = send(fd, (const char *)body + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += (size_t)n;
    }
read:
    read_reply(fd, &r);
    close(fd);
    return r;
}

static inline reply_t http_get(int port, const char *path) { return http(port, "GET", path, NULL, NULL, 0); }

static inline reply_t http_json(int port, const char *path, const char *json) {
    return http(port, "POST", path, "Content-Type: application/json\r\n", json, strlen(json));
}

/* ---- checking replies ---- */

/* The first len bytes of the reply's body parsed as JSON (the JSON head of a
 * binary reply; the caller decrefs). A body that is not JSON fails the test,
 * printing the status, jansson's complaint and the body. */
static inline json_t *body_json_prefix(const reply_t *r, size_t len) {
    json_error_t je;
    json_t *j = json_loadb((const char *)r->body, len, 0, &je);
    if (!j) {
        print_error("reply %d is not JSON (%s): %.300s\n", r->status, je.text, r->body ? (char *)r->body : "");
        fail();
    }
    return j;
}

/* The whole body as JSON (the caller decrefs); fails the test when it is not. */
static inline json_t *body_json(const reply_t *r) { return body_json_prefix(r, r->len); }

/* The reply has this status (else the test fails, printing what and the
 * body); its body as JSON (the caller decrefs). */
static inline json_t *expect_json(const reply_t *r, int status, const char *what) {
    if (r->status != status) {
        print_error("%s: status %d, want %d; body: %.300s\n", what, r->status, status, r->body ? (char *)r->body : "");
        fail();
    }
    return body_json(r);
}

/* POSTs the JSON body to path; the reply must have this status. Its body as
 * JSON (the caller decrefs). */
static inline json_t *http_json_expect(int port, const char *path, const char *json, int status) {
    char what[512];
    snprintf(what, sizeof what, "POST %s %.300s", path, json);
    reply_t r = http_json(port, path, json);
    json_t *j = expect_json(&r, status, what);
    reply_free(&r);
    return j;
}

/* The reply is an API error: this status, and a JSON body (so valid UTF-8:
 * jansson refuses anything else) {"error": {"status": status, "message":
 * ...}} whose message contains want (any message when want is NULL). what
 * names the request when it fails. Frees the reply's body. */
static inline void assert_error(reply_t *r, int status, const char *want, const char *what) {
    json_error_t je;
    json_t *j = json_loadb((const char *)r->body, r->len, 0, &je);
    json_t *e = json_object_get(j, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (r->status != status || json_integer_value(json_object_get(e, "status")) != status || !msg ||
        (want && !strstr(msg, want))) {
        print_error("%s: status %d, want %d with \"%s\"; body (%s): %.400s\n", what, r->status, status,
                    want ? want : "", j ? "JSON" : je.text, r->body ? (char *)r->body : "");
        fail();
    }
    json_decref(j);
    reply_free(r);
}

/* POSTs the JSON body to path; the reply must be assert_error's. */
static inline void assert_post_error(int port, const char *path, const char *json, int status, const char *want) {
    char what[512];
    snprintf(what, sizeof what, "POST %s %s", path, json);
    reply_t r = http_json(port, path, json);
    assert_error(&r, status, want, what);
}

/* Starts $GMSERVE_BIN with the given arguments (NULL-terminated) plus
 * --listen on a free port; waits up to 30 s for /readyz. */
static inline daemon_t daemon_start(const char *name, const char *const *args) {
    daemon_t d = {.port = free_port()};
    const char *bin = gmserve_bin();
    mkdir("build", 0755);
    mkdir("build/test-logs", 0755);
    snprintf(d.log, sizeof d.log, "build/test-logs/%s.log", name);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", d.port);
    /* an empty config file, so that config/gmserve.json does not apply: the flags say everything */
    write_text("build/test-logs/empty.json", "{}\n");
    const char *argv[64] = {bin, "--config", "build/test-logs/empty.json", "--listen", listen};
    int argc = 5;
    for (int i = 0; args[i] && argc < 62; i++) argv[argc++] = args[i];
    argv[argc] = NULL;
    d.pid = fork();
    if (d.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test that fails midway leaves no daemon holding its pipe */
        sigset_t none; /* start as from a shell: the test's threads may block signals, and exec keeps the mask */
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        FILE *log = freopen(d.log, "w", stderr);
        (void)log;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) {
        reply_t r = http_get(d.port, "/readyz");
        int st = r.status;
        reply_free(&r);
        if (st == 200) return d;
        int wst;
        if (waitpid(d.pid, &wst, WNOHANG) == d.pid) break;
        sleep_ms(100);
    }
    print_error("gmserve did not become ready; see %s\n", d.log);
    fail();
    return d;
}

/* SIGTERM, then the exit status (-1 if it did not exit within 60 s). */
static inline int daemon_stop(daemon_t *d) {
    kill(d->pid, SIGTERM);
    for (int i = 0; i < 600; i++) {
        int st;
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        sleep_ms(100);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    return -1;
}

/* daemon_stop, printing the exit status and the log's path when it is not
 * 0; returns the status (for a group teardown, where non-zero fails). */
static inline int daemon_stop_reported(daemon_t *d) {
    int rc = daemon_stop(d);
    if (rc != 0) print_error("gmserve exited %d; see %s\n", rc, d->log);
    return rc;
}

/* ---- raw connections, for tests of hostile clients ---- */

/* A connection from a chosen loopback source address (any of 127/8), so that
 * a test can be a different client than its attackers; -1 on failure. */
static inline int connect_from(int port, const char *src) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET}, to = {.sin_family = AF_INET,
                                                          .sin_port = htons((uint16_t)port),
                                                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    inet_pton(AF_INET, src, &a.sin_addr);
    struct timeval tv = {60, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || connect(fd, (struct sockaddr *)&to, sizeof to)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Milliseconds until the peer closes fd (EOF or reset), or -1 when it is
 * still open after timeout_ms. Whatever it sends meanwhile is read and
 * dropped. */
static inline int wait_closed(int fd, int timeout_ms) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        int ms = (int)((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
        if (ms >= timeout_ms) return -1;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms - ms) <= 0) continue;
        char buf[4096];
        if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) <= 0) return ms;
    }
}

/* Sends raw bytes on fd and reads the reply until the peer closes or
 * timeout_ms passes; returns the milliseconds it took (r->status is 0 when no
 * reply came). */
static inline int raw_exchange(int fd, const void *req, size_t len, int timeout_ms, reply_t *r) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (len) send(fd, req, len, MSG_NOSIGNAL);
    read_reply(fd, r);
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int)((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
}

/* Raises the open-file limit to the hard limit (tests that hold many sockets). */
static inline void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

#endif
