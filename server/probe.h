/*
 * probe.h - `gmserve probe [URL]`: a health check with nothing but the
 * binary, for container HEALTHCHECKs in images without curl.
 */
#ifndef GM_PROBE_H
#define GM_PROBE_H

/* GETs url (http://HOST:PORT/PATH; default http://127.0.0.1:8080/readyz)
 * within timeout_ms; returns 0 on a 200, else 1 with the reason on stderr. */
int gm_probe(const char *url, int timeout_ms);

#endif
