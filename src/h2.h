/*
 * h2.h -- HTTP/2 for clients (nghttp2), over TLS (ALPN "h2") or cleartext
 * with prior knowledge (h2c).
 *
 * Each stream becomes one HTTP/1.1 request on a struct conn without a
 * socket (two buffers h2.c owns; a bufferevent pair for WebSocket
 * streams, which become tunnels), so routing, limits, the cache, upstream
 * pools and retries are exactly those of HTTP/1.1; h2.c translates the
 * stream's headers and DATA into that request and the HTTP/1.1 response
 * back into HEADERS and DATA.  Flow control is wired to the splice
 * watermarks both ways: request DATA is acknowledged (WINDOW_UPDATE) only
 * as the conn consumes it, and response bytes are decoded only while the
 * client's window and our output buffer have room; past the high
 * watermark the proxy stops reading the upstream until they drain.
 *
 * Protections (nghttp2 plus ours): at most H2_MAX_STREAMS concurrent
 * streams, header lists bounded by limits.max_header_size, bounded
 * SETTINGS/PING/RST floods (nghttp2's own limits on outbound ACK queues and
 * SETTINGS entries, and its rapid-reset and CONTINUATION protections).
 */
#ifndef STOA_H2_H
#define STOA_H2_H

#include <stdbool.h>

struct bufferevent;
struct worker_env;

#define H2_MAX_STREAMS 100

/*
 * Take over a client bufferevent whose peer speaks HTTP/2 (bytes already
 * in its input, e.g. the connection preface, are processed).  peer_ip: for
 * X-Forwarded-For; tls: the connection is HTTPS.  Returns 0, or -1 with
 * the bufferevent freed.
 */
int h2_start(struct worker_env *env, struct bufferevent *bev,
    const char *peer_ip, bool tls);

/* Worker stops: GOAWAY to every HTTP/2 connection; they close when their
 * streams are done. */
void h2_drain(struct worker_env *env);

/* Close every HTTP/2 connection now (worker exit). */
void h2_close_all(struct worker_env *env);

#endif
