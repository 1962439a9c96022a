/*
 * errors.c - the table of error kinds (see errors.h).
 *
 * 499 is nginx's "client closed request": never seen by the client that
 * left, but it is what the access log and the metrics record for it.
 */
#include "errors.h"

const gm_error_def gm_errors[GM_E_COUNT] = {
    [GM_E_BAD_REQUEST] = {"bad_request", 400, NULL, "malformed framing, headers, query or JSON body"},
    [GM_E_BAD_PARAM] = {"bad_param", 400, NULL, "a parameter that is not of its type (an integer, a number, ...)"},
    [GM_E_UNKNOWN_PARAM] = {"unknown_param", 400, NULL,
                            "a parameter the operation does not take (the message lists those it does)"},
    [GM_E_UNAUTHORIZED] = {"unauthorized", 401, "unauthorized",
                           "API keys are set and the request has none, or a wrong one"},
    [GM_E_FORBIDDEN] = {"forbidden", 403, NULL,
                        "an admin route on a server without api_keys (docs/reload.md: admin_loopback)"},
    [GM_E_NOT_FOUND] = {"not_found", 404, NULL, "no such route, model or page file"},
    [GM_E_METHOD] = {"method_not_allowed", 405, NULL,
                     "the route does not take the method (the Allow header lists those it does)"},
    [GM_E_TOO_LARGE] = {"too_large", 413, "too_large", "the body is over max_body_bytes"},
    [GM_E_TOO_MANY_VALUES] = {"too_many_values", 413, NULL, "a JSON body with more values than the operation can use"},
    [GM_E_URI_TOO_LONG] = {"uri_too_long", 414, NULL,
                           "a request target over 8192 bytes or with over 256 query parameters"},
    [GM_E_MEDIA_TYPE] =
        {"unsupported_media_type", 415, NULL,
         "a body that is neither application/json nor (for logp, encode, discriminate, reconstruct, complete, "
         "translate) image/png"},
    [GM_E_CONFLICT] = {"conflict", 409, NULL,
                       "an admin change the settings forbid: unloading the default model, a model over the most"},
    [GM_E_OUT_OF_RANGE] = {"out_of_range", 422, NULL,
                           "a well-formed value out of its range (the message names the range and the setting)"},
    [GM_E_UNSUPPORTED_OP] = {"unsupported_operation", 422, NULL,
                             "the model cannot do the operation (a GAN or an AAE has no log p, ...)"},
    [GM_E_MODEL_MISMATCH] = {"model_mismatch", 422, NULL,
                             "an input that does not fit the model: another image or latent size, a label "
                             "for an unconditional model, a missing code"},
    [GM_E_TOO_COSTLY] = {"too_costly", 422, NULL, "the request would cost more than max_request_cost_ms of compute"},
    [GM_E_RELOAD_REFUSED] = {"reload_refused", 422, NULL,
                             "a reload or admin load whose model file or settings do not load or verify: nothing "
                             "changed"},
    [GM_E_CLIENT_GONE] = {"client_gone", 499, "client_gone",
                          "the client closed the connection while its request waited (recorded, never received)"},
    [GM_E_INTERNAL] = {"internal", 500, NULL, "out of memory"},
    [GM_E_NOT_IMPLEMENTED] = {"not_implemented", 501, NULL, "a Transfer-Encoding other than one \"chunked\""},
    [GM_E_BUSY] = {"busy", 503, NULL,
                   "the memory for request bodies or undecoded PNGs is spent for now, or 8 admin changes wait "
                   "already (Retry-After)"},
    [GM_E_QUEUE_FULL] = {"queue_full", 503, "queue_full", "the queue holds queue_capacity requests (Retry-After)"},
    [GM_E_DRAINING] = {"draining", 503, "draining", "the server is shutting down (Retry-After)"},
    [GM_E_NOT_READY] = {"not_ready", 503, NULL, "/readyz while models load or the server drains"},
    [GM_E_DEADLINE] = {"deadline", 504, "deadline", "the request passed deadline_ms waiting or computing"},
};

static int add_sorted(int *out, int n, int max, int status) {
    int i = 0;
    while (i < n && out[i] < status) i++;
    if ((i < n && out[i] == status) || n >= max) return n;
    for (int j = n; j > i; j--) out[j] = out[j - 1];
    out[i] = status;
    return n + 1;
}

int gm_status_list(int *out, int max) {
    static const int SUCCESS[] = {GM_STATUS_OK, GM_STATUS_NO_CONTENT, GM_STATUS_NOT_MODIFIED};
    int n = 0;
    for (int i = 0; i < (int)(sizeof SUCCESS / sizeof SUCCESS[0]); i++) n = add_sorted(out, n, max, SUCCESS[i]);
    for (int k = 0; k < GM_E_COUNT; k++) n = add_sorted(out, n, max, gm_errors[k].status);
    return n;
}

void gm_errors_markdown(FILE *f) {
    fprintf(f, "| Status | Kind | Rejection reason | When |\n|---|---|---|---|\n");
    int statuses[64], n = gm_status_list(statuses, 64);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < GM_E_COUNT; k++)
            if (gm_errors[k].status == statuses[i])
                fprintf(f, "| %d | `%s` | %s | %s |\n", gm_errors[k].status, gm_errors[k].name,
                        gm_errors[k].reason ? gm_errors[k].reason : "-", gm_errors[k].when);
}
