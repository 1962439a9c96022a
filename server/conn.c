/*
 * conn.c - the connection reaper and the body memory budget (see conn.h).
 *
 * Safety with MHD: a record is added by MHD's "started" notification and
 * removed by its "closed" one, which MHD sends before it closes the socket.
 * The reaper only calls shutdown() (never close()) and only under the lock
 * that removal takes, so the descriptor it shuts down is still that
 * connection's. shutdown() wakes MHD's epoll for the socket, MHD reads end
 * of stream and closes the connection in its own thread as for any client
 * that went away.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "conn.h"
#include "gm/clock.h"

/* How soon a hung-up peer or a passed deadline is noticed; right after a pass
 * that closed some, the next comes sooner, for the connections MHD accepts
 * into the freed slots (a burst of half-closed ones arrives in waves). */
enum { PERIOD_MS = 100, BURST_MS = 10 };

/* Under pressure (7/8 of max_connections open) a request gets only this long:
 * otherwise clients from many addresses holding partial requests would lock
 * everyone else out for the whole request deadline. A real client sends its
 * headers within milliseconds of connecting; 500 ms keeps a new client's
 * wait for a slot under a second (2 s gave 2.0 s with 600 partial requests
 * from 50 addresses). */
enum { PRESSURE_TIMEOUT_MS = 500 };

struct gm_conn {
    gm_conn *prev, *next;
    MHD_socket fd;
    int64_t since_ns; /* when the current request's deadline started */
    bool busy;        /* the request is complete: not the reaper's */
    bool hung_up;     /* the peer's end was seen closed on the previous pass */
    bool reaped;
};

struct gm_conns {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_t thread;
    bool stop;
    gm_conn *head;
    size_t n;
    int64_t timeout_ns, pressure_timeout_ns;
    size_t pressure; /* open connections from which pressure_timeout_ns applies */
    atomic_size_t body_used;
    size_t body_budget;
};

/* One look at every receiving connection; the number closed or about to be. */
static size_t reap_pass(gm_conns *cs, struct pollfd **pfd, gm_conn ***who, size_t *cap) {
    if (cs->n > *cap) {
        size_t c = cs->n * 2;
        struct pollfd *p = realloc(*pfd, c * sizeof **pfd);
        if (p) *pfd = p;
        gm_conn **w = realloc(*who, c * sizeof **who);
        if (w) *who = w;
        if (!p || !w) return 0; /* try again next period */
        *cap = c;
    }
    int64_t now = gm_now_ns(), timeout = cs->n >= cs->pressure ? cs->pressure_timeout_ns : cs->timeout_ns;
    size_t k = 0, closed = 0;
    for (gm_conn *c = cs->head; c; c = c->next) {
        if (c->busy || c->reaped) continue;
        if (now - c->since_ns > timeout) {
            c->reaped = true;
            shutdown(c->fd, SHUT_RDWR);
            closed++;
            continue;
        }
        (*pfd)[k] = (struct pollfd){.fd = c->fd, .events = POLLRDHUP};
        (*who)[k++] = c;
    }
    if (!k || poll(*pfd, k, 0) <= 0) return closed;
    /* A client may send a whole request and then close its end; MHD reads
     * and answers that at once. So a hang-up counts only when it is still
     * there, the request still incomplete, on the next pass. */
    for (size_t i = 0; i < k; i++) {
        gm_conn *c = (*who)[i];
        bool hup = (*pfd)[i].revents & (POLLRDHUP | POLLHUP | POLLERR);
        if (hup && c->hung_up) {
            c->reaped = true;
            shutdown(c->fd, SHUT_RDWR);
        }
        closed += hup; /* a pass soon after, for the confirmation */
        c->hung_up = hup;
    }
    return closed;
}

static void *reaper(void *arg) {
    gm_conns *cs = arg;
    struct pollfd *pfd = NULL;
    gm_conn **who = NULL;
    size_t cap = 0;
    pthread_mutex_lock(&cs->mu);
    while (!cs->stop) {
        long wait_ms = reap_pass(cs, &pfd, &who, &cap) ? BURST_MS : PERIOD_MS;
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += wait_ms * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&cs->wake, &cs->mu, &t);
    }
    pthread_mutex_unlock(&cs->mu);
    free(pfd);
    free(who);
    return NULL;
}

gm_conns *gm_conns_start(long timeout_s, long max_connections, size_t body_budget) {
    gm_conns *cs = calloc(1, sizeof *cs);
    if (!cs) return NULL;
    pthread_mutex_init(&cs->mu, NULL);
    pthread_cond_init(&cs->wake, NULL);
    cs->timeout_ns = (int64_t)timeout_s * 1000000000;
    cs->pressure_timeout_ns = (int64_t)PRESSURE_TIMEOUT_MS * 1000000;
    if (cs->pressure_timeout_ns > cs->timeout_ns) cs->pressure_timeout_ns = cs->timeout_ns;
    cs->pressure = (size_t)(max_connections - max_connections / 8);
    cs->body_budget = body_budget;
    if (pthread_create(&cs->thread, NULL, reaper, cs)) {
        pthread_cond_destroy(&cs->wake);
        pthread_mutex_destroy(&cs->mu);
        free(cs);
        return NULL;
    }
    return cs;
}

void gm_conns_stop(gm_conns *cs) {
    if (!cs) return;
    pthread_mutex_lock(&cs->mu);
    cs->stop = true;
    pthread_cond_signal(&cs->wake);
    pthread_mutex_unlock(&cs->mu);
    pthread_join(cs->thread, NULL);
    pthread_cond_destroy(&cs->wake);
    pthread_mutex_destroy(&cs->mu);
    free(cs);
}

void gm_conns_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                     enum MHD_ConnectionNotificationCode code) {
    gm_conns *cs = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        gm_conn *c = ci ? calloc(1, sizeof *c) : NULL;
        *socket_context = c;
        if (!c) return; /* this connection simply goes without a deadline */
        c->fd = ci->connect_fd;
        c->since_ns = gm_now_ns();
        pthread_mutex_lock(&cs->mu);
        c->next = cs->head;
        if (cs->head) cs->head->prev = c;
        cs->head = c;
        cs->n++;
        pthread_mutex_unlock(&cs->mu);
        return;
    }
    gm_conn *c = *socket_context;
    if (!c) return;
    pthread_mutex_lock(&cs->mu);
    if (c->prev) c->prev->next = c->next;
    else cs->head = c->next;
    if (c->next) c->next->prev = c->prev;
    cs->n--;
    pthread_mutex_unlock(&cs->mu);
    *socket_context = NULL;
    free(c);
}

gm_conn *gm_conns_of(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void gm_conn_set_busy(gm_conns *cs, gm_conn *c, bool busy) {
    if (!c) return;
    pthread_mutex_lock(&cs->mu);
    c->busy = busy;
    if (!busy) c->since_ns = gm_now_ns();
    c->hung_up = false;
    pthread_mutex_unlock(&cs->mu);
}

bool gm_conns_reserve(gm_conns *cs, size_t n) {
    size_t used = atomic_load(&cs->body_used);
    do {
        if (n > cs->body_budget - used) return false;
    } while (!atomic_compare_exchange_weak(&cs->body_used, &used, used + n));
    return true;
}

void gm_conns_release(gm_conns *cs, size_t n) { atomic_fetch_sub(&cs->body_used, n); }
