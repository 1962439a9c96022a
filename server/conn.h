/*
 * conn.h - connection bookkeeping that libmicrohttpd does not do for us.
 *
 * MHD's connection timeout is an idle timeout: a client that trickles one
 * byte now and then keeps its connection (and a slot of max_connections)
 * forever. And in epoll mode MHD can miss the end of a connection whose
 * peer closed right after a partial request, leaving the socket in
 * CLOSE-WAIT until the idle timeout. A reaper thread fixes both: every
 * connection that is still receiving a request is closed
 * (shutdown(SHUT_RDWR), which MHD then sees as the end of the stream) when
 * its peer has hung up, or when the request is not complete within an
 * absolute deadline counted from the connection's opening or from its
 * previous reply; a deadline of 2 s once 7/8 of the connections are open.
 * Connections with a complete request (computing, or
 * sending the reply) are never touched here.
 *
 * It also keeps the budget of memory that request bodies may hold across
 * all connections.
 */
#ifndef GM_CONN_H
#define GM_CONN_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct gm_conns gm_conns;
typedef struct gm_conn gm_conn; /* one connection, MHD's socket context */

/* Starts the reaper; timeout_s: the request deadline; max_connections: MHD's
 * limit (for the pressure rule); body_budget: bytes all bodies in progress
 * may hold together. NULL when out of memory or threads. */
gm_conns *gm_conns_start(long timeout_s, long max_connections, size_t body_budget);
/* Stops the reaper. Call after MHD_stop_daemon (every connection closed). */
void gm_conns_stop(gm_conns *cs);

/* The MHD_OPTION_NOTIFY_CONNECTION callback (cls is the gm_conns). */
void gm_conns_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                     enum MHD_ConnectionNotificationCode code);
/* The record of a connection (from its socket context), or NULL. */
gm_conn *gm_conns_of(struct MHD_Connection *conn);
/* The request on c is complete (reaper leaves it alone), or its reply is
 * done (the deadline for the next request starts now). Accepts NULL. */
void gm_conn_set_busy(gm_conns *cs, gm_conn *c, bool busy);

/* Takes n bytes of the body budget; false (nothing taken) when that would
 * pass it. */
bool gm_conns_reserve(gm_conns *cs, size_t n);
void gm_conns_release(gm_conns *cs, size_t n);

#endif
