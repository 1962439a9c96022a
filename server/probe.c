/*
 * probe.c - a minimal HTTP/1.0 GET for health checks (see probe.h).
 */
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "probe.h"

int gm_probe(const char *url, int timeout_ms) {
    char host[256], port[16] = "80", path[1024] = "/";
    if (!url) url = "http://127.0.0.1:8080/readyz";
    if (strncmp(url, "http://", 7) != 0) {
        fprintf(stderr, "gmserve probe: %s: only http:// URLs\n", url);
        return 1;
    }
    const char *h = url + 7, *slash = strchr(h, '/'), *end = slash ? slash : h + strlen(h);
    const char *colon = memchr(h, ':', (size_t)(end - h));
    size_t hl = (size_t)((colon ? colon : end) - h);
    if (hl == 0 || hl >= sizeof host || (colon && (size_t)(end - colon - 1) >= sizeof port) ||
        (slash && strlen(slash) >= sizeof path)) {
        fprintf(stderr, "gmserve probe: %s: cannot parse the URL\n", url);
        return 1;
    }
    memcpy(host, h, hl);
    host[hl] = 0;
    if (colon) {
        memcpy(port, colon + 1, (size_t)(end - colon - 1));
        port[end - colon - 1] = 0;
    }
    if (slash) strcpy(path, slash);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0) {
        fprintf(stderr, "gmserve probe: cannot resolve %s\n", host);
        return 1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rc = 1;
    char buf[256] = "";
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        fprintf(stderr, "gmserve probe: cannot connect to %s:%s\n", host, port);
    } else {
        char req[1400];
        int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, host);
        ssize_t got = send(fd, req, (size_t)n, MSG_NOSIGNAL) == n ? recv(fd, buf, sizeof buf - 1, 0) : -1;
        if (got > 12) buf[got] = 0;
        rc = got > 12 && strncmp(buf + 9, "200", 3) == 0 ? 0 : 1;
        if (rc)
            fprintf(stderr, "gmserve probe: %s: %.*s\n", url, (int)strcspn(buf, "\r\n"), got > 0 ? buf : "no reply");
    }
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    return rc;
}
