/*
 * upstream.h -- per-worker pools of keep-alive connections to upstream
 * servers.  Server *selection* and passive health live in balance.c; this
 * module owns sockets.
 *
 * An upconn is either owned by a request (owner != NULL; the owner installs
 * its own bufferevent callbacks) or idle in its upstream's pool (owned by
 * the pool, which closes it on any input, EOF or error from the server and
 * when it has been idle longer than UPSTREAM_IDLE_MS).  A pooled connection
 * keeps the timeouts its last request set: one whose read timeout passes
 * while idle is closed like one the server closed.  The next request sets
 * its own once (upstream_timeouts), which re-arms them from that moment:
 * one timer-heap update per pooled request instead of two.
 */
#ifndef STOA_UPSTREAM_H
#define STOA_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

struct bufferevent;
struct config;
struct event_base;
struct timeval;
struct upstream_pools;

/*
 * Idle connections older than this are not reused: most application
 * servers close idle keep-alive connections after 5 s (uvicorn, hypercorn),
 * and reusing one just as the server closes it costs a retry or a 502.
 */
#define UPSTREAM_IDLE_MS 4000

/* Idle connections beyond `keepalive` are closed once idle this long. */
#define UPSTREAM_SURPLUS_MS 1000

#define UPCONN_MAGIC 0x0c0ffee1u

struct upconn {
	unsigned                 magic;
	struct bufferevent      *bev;
	struct upstream_pools   *pools;
	unsigned                 up;        /* index into cfg->upstreams */
	unsigned                 srv;       /* index into its servers */
	bool                     reused;    /* came from the idle pool */
	bool                     connected;
	const struct timeval    *tmo_rd;    /* timeouts set on bev (NULL: none) */
	const struct timeval    *tmo_wr;
	uint64_t                 idle_since;
	TAILQ_ENTRY(upconn)      link;      /* in the idle list while pooled */
};

struct upstream_pools *upstream_pools_new(struct event_base *base,
    const struct config *cfg);
/* Closes every idle connection. Owned connections must be released first. */
void upstream_pools_free(struct upstream_pools *p);

/*
 * A connection to server `srv` of upstream `up`: an idle pooled one
 * (reused = true, connected = true) or a new one whose connect is under
 * way (the caller gets BEV_EVENT_CONNECTED or an error on its eventcb).
 * Returns NULL when a socket cannot be created (*err set).  The caller
 * must set callbacks and enable EV_READ|EV_WRITE on uc->bev.
 */
struct upconn *upstream_get(struct upstream_pools *p, unsigned up,
    unsigned srv, uint64_t now, const char **err);

/*
 * Set uc's read and write timeouts (NULL: none), unless they are the ones
 * already set: rd and wr point at the worker's timeouts, which live as long
 * as it does, so the pointers tell.  Setting them costs timer-heap work,
 * and a pooled connection's next request usually wants the same.
 */
void upstream_timeouts(struct upconn *uc, const struct timeval *rd,
    const struct timeval *wr);

/*
 * Release a connection: with reusable = true and room in the pool it is
 * kept idle for the next request to the same server; otherwise closed.
 * The caller must not touch uc afterwards.
 */
void upstream_put(struct upconn *uc, bool reusable, uint64_t now);

/*
 * Take the bufferevent out of an owned connection and free the wrapper
 * (the socket now belongs to the caller, e.g. a WebSocket tunnel).
 */
struct bufferevent *upstream_detach(struct upconn *uc);

/* "127.0.0.1:8000" as configured. */
const char *upconn_addr(const struct upconn *uc);

/*
 * Close pooled connections idle for UPSTREAM_IDLE_MS, and those beyond
 * each upstream's keepalive idle for UPSTREAM_SURPLUS_MS (least recently
 * used first).  Called about once a second.
 */
void upstream_trim(struct upstream_pools *p, uint64_t now);

/* Idle connections currently pooled (all upstreams). */
unsigned upstream_idle_count(const struct upstream_pools *p);

#endif
