/*
 * http.h - the libmicrohttpd side of the daemon.
 *
 * HTTP threads (epoll) read requests, hand them to the API and never wait
 * for compute: a request that needs a model is suspended
 * (MHD_suspend_connection) and queued; the worker that finishes it builds
 * the reply and resumes the connection, and an HTTP thread sends it
 * (libmicrohttpd's rules: suspend before the job can finish, resume only a
 * suspended connection, and never queue a reply from another thread; the
 * comment at the top of http.c says how).
 */
#ifndef GM_HTTP_H
#define GM_HTTP_H

#include "server.h"

typedef struct gm_http gm_http;

/* Listens on srv->cfg's address; NULL with err filled on failure. */
gm_http *gm_http_start(gm_server *srv, char err[GM_ERR_LEN]);
int gm_http_port(const gm_http *h); /* the bound port (useful with port 0) */
int gm_http_in_flight(gm_http *h);  /* requests received and not yet completed */
/* Stops accepting connections; requests in progress go on. */
void gm_http_quiesce(gm_http *h);
/* Closes every connection and stops the threads; no connection may be
 * suspended (every queued job finished). Accepts NULL. */
void gm_http_stop(gm_http *h);

#endif
