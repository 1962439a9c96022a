/*
 * errors.h - every way a request can fail, in one table.
 *
 * A handler fails by naming a kind; the kind decides the HTTP status, and,
 * for the refusals operators watch, the reason label of the rejection
 * metric. The metrics take their list of statuses from here, and the docs
 * their table (gm_errors_markdown), so no status is chosen anywhere else.
 * The success statuses are the three GM_STATUS_* below.
 */
#ifndef GM_ERRORS_H
#define GM_ERRORS_H

#include <stdio.h>

enum { GM_STATUS_OK = 200, GM_STATUS_NO_CONTENT = 204, GM_STATUS_NOT_MODIFIED = 304 };

typedef enum {
    GM_E_BAD_REQUEST,     /* malformed framing, headers or body */
    GM_E_BAD_PARAM,       /* a parameter that is not of its type */
    GM_E_UNKNOWN_PARAM,   /* a parameter the operation does not take */
    GM_E_UNAUTHORIZED,    /* no or a wrong API key */
    GM_E_FORBIDDEN,       /* an admin route where no API key could allow it */
    GM_E_NOT_FOUND,       /* no such route, model or page file */
    GM_E_METHOD,          /* the route exists, the method is not one of it */
    GM_E_TOO_LARGE,       /* the body is over max_body_bytes */
    GM_E_TOO_MANY_VALUES, /* a JSON body with more values than the operation can use */
    GM_E_URI_TOO_LONG,    /* a request target MHD cannot hold */
    GM_E_MEDIA_TYPE,      /* a body of a media type the route does not read */
    GM_E_CONFLICT,        /* an admin change the settings forbid (the default model, the most models) */
    GM_E_OUT_OF_RANGE,    /* a well-formed value out of its range */
    GM_E_UNSUPPORTED_OP,  /* the model cannot do the operation */
    GM_E_MODEL_MISMATCH,  /* an input that does not fit the model (size, label, code) */
    GM_E_TOO_COSTLY,      /* over max_request_cost_ms */
    GM_E_RELOAD_REFUSED,  /* a model or settings file that does not load: nothing changed */
    GM_E_CLIENT_GONE,     /* the client closed the connection before its reply */
    GM_E_INTERNAL,        /* out of memory, or a reply that could not be built */
    GM_E_NOT_IMPLEMENTED, /* a Transfer-Encoding other than chunked */
    GM_E_BUSY,            /* a memory budget is spent for now */
    GM_E_QUEUE_FULL,      /* the queue holds queue_capacity requests */
    GM_E_DRAINING,        /* shutting down */
    GM_E_NOT_READY,       /* /readyz before the models are loaded, or while draining */
    GM_E_DEADLINE,        /* past deadline_ms waiting or computing */
    GM_E_COUNT
} gm_error_kind;

typedef struct {
    const char *name;   /* e.g. "out_of_range" */
    int status;         /* HTTP status */
    const char *reason; /* the gmserve_rejections_total reason, or NULL: not counted as a rejection */
    const char *when;   /* one line for the docs */
} gm_error_def;

extern const gm_error_def gm_errors[GM_E_COUNT];

static inline int gm_error_status(gm_error_kind k) { return gm_errors[k].status; }

/* Every status the server can send, success first, each once and in
 * rising order within each group; returns how many (at most max). */
int gm_status_list(int *out, int max);

/* The table in Markdown, for docs/http-api.md. */
void gm_errors_markdown(FILE *f);

#endif
