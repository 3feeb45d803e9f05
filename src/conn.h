/*
 * conn.h -- an accepted client connection and the worker environment it
 * lives in.  Shared by worker.c (creates connections), conn.c (client side:
 * reading heads, timeouts, errors, closing) and proxy.c (one request's
 * trip to the upstream and back).
 *
 * Ownership: a conn owns its client bufferevent, its head buffer and, while
 * a request is in flight, one upconn.  A conn is never freed inside its own
 * callback chain: conn_close() unhooks it and queues it on the worker's
 * graveyard, which is emptied on the next loop turn (habit 5).
 */
#ifndef STOA_CONN_H
#define STOA_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "http.h"
#include "http1.h"

struct bufferevent;
struct config;
struct event;
struct event_base;
struct evbuffer;
struct router;
struct balance;
struct upstream_pools;
struct upconn;
struct conn;
struct cache_store;
struct cache_obj;
struct tunnel;
struct h2conn;
struct tls_ctx;

TAILQ_HEAD(conn_list, conn);
TAILQ_HEAD(tunnel_list, tunnel);
TAILQ_HEAD(h2conn_list, h2conn);

/* Per-worker state every connection can see.  Owned by worker.c. */
struct worker_env {
	struct event_base       *base;
	const struct config     *cfg;
	struct router           *router;
	struct balance          *bal;
	struct upstream_pools   *pools;
	struct cache_store      *store;         /* NULL: no route caches */
	int                     *route_slots;   /* stats slot per route */
	int                    **server_slots;  /* [upstream][server] stats slot */
	struct conn_list         conns;         /* live connections */
	struct conn_list         graveyard;     /* closed, freed next turn */
	struct event            *reaper;
	unsigned                 nconns;
	struct tunnel_list       tunnels;       /* WebSocket tunnels */
	unsigned                 ntunnels;
	struct h2conn_list       h2conns;       /* HTTP/2 client connections */
	unsigned                 nh2conns;
	struct tls_ctx          *tls;           /* NULL: no TLS listeners */
	bool                     draining;
	struct timeval           tv_client_header;
	struct timeval           tv_client_idle;
	struct timeval           tv_upstream_connect;
	struct timeval           tv_upstream_read;
	struct timeval           tv_drain_linger;  /* idle conns while draining */
	struct timeval           tv_linger;        /* lingering close */
	/* called after a connection or tunnel is freed (listener re-enable,
	 * drain exit) */
	void                   (*on_conn_freed)(struct worker_env *);
};

/* Watermarks for every splice (habit 6): stop reading the fast side when
 * the slow side has this much queued, resume at half. */
#define STOA_HIGH_WATER  (256 * 1024)
#define STOA_LOW_WATER   (STOA_HIGH_WATER / 2)

/* Largest request (head + body) kept for the one retry on another server. */
#define STOA_REPLAY_MAX  (64 * 1024)

enum conn_state {
	CS_HEAD = 0,        /* waiting for / reading a request head */
	CS_PROXY,           /* a request is in flight (proxy.c drives) */
	CS_CLOSING,         /* flushing the last response, then linger */
	CS_LINGER,          /* write side shut; discarding input until EOF */
	CS_DEAD,            /* in the graveyard */
};

/* Body framing of a message on one leg. */
struct body_state {
	enum http_body           mode;
	uint64_t                 left;          /* HTTP_BODY_LENGTH */
	struct http1_chunked     chunk;         /* HTTP_BODY_CHUNKED */
	uint64_t                 total;         /* body bytes passed so far */
	bool                     done;
};

/* One request's trip through the proxy.  Embedded in the conn, reset per
 * request (no per-request allocation). */
struct txn {
	int                      route;         /* index into cfg->routes, -1 */
	int                      server;        /* server index, -1 */
	int                      failed_server; /* server that failed (retry), -1 */
	struct upconn           *uc;
	struct evbuffer         *replay;        /* head+body for the retry, or NULL */
	bool                     replayable;
	bool                     retried;       /* the one retry is used */
	unsigned                 stale_retries; /* closed pooled connections met */
	bool                     req_sent;      /* request head+body fully queued */
	bool                     resp_started;  /* a response byte arrived */
	bool                     head_sent;     /* response head queued to client */
	bool                     chunk_out;     /* client gets chunked encoding */
	bool                     close_after;   /* close the client after this response */
	bool                     up_keepalive;  /* upstream connection reusable after */
	bool                     ws;            /* WebSocket upgrade being forwarded */
	/* cache (proxy_cache.c) */
	int                      cache_st;      /* enum cache_status for X-Cache */
	bool                     cache_fill;    /* store this response if storable */
	bool                     filling;       /* copying the body into fill */
	bool                     locked;        /* we hold the stampede lock */
	uint64_t                 lock_token;
	uint64_t                 wait_deadline; /* ms, monotonic: lock wait ends */
	struct cache_obj        *stale;         /* kept for stale_if_error */
	size_t                   keylen;
	int                      status;        /* status sent to the client */
	enum http_method         meth;
	struct body_state        req_body;      /* client → upstream */
	struct body_state        resp_body;     /* upstream → client */
	uint64_t                 bytes_out;     /* body bytes sent to the client */
	uint64_t                 t_start;       /* ms, head complete */
	uint64_t                 t_upstream;    /* ms, upstream request sent */
	uint64_t                 t_upstream_done;
	const char              *up_addr;       /* server as configured, "-": none;
						 * the worker's config outlives it */
};

#define CONN_MAGIC 0xc0cc0001u

struct conn {
	unsigned                 magic;
	enum conn_state          state;
	struct worker_env       *env;
	struct bufferevent      *bev;           /* NULL: an HTTP/2 stream's
						 * conn (h2.c owns in and out) */
	struct evbuffer         *in;            /* request bytes: bev's input,
						 * or the stream's buffer */
	struct evbuffer         *out;           /* response bytes: bev's output,
						 * or the stream's buffer */
	bool                     rd_paused;     /* stream conn: the proxy stopped
						 * taking request body bytes */
	struct event            *hdr_timer;     /* client_header */
	struct sockaddr_storage  peer;
	char                     peer_ip[64];   /* for X-Forwarded-For and logs */
	bool                     keep_alive;    /* of the current request */
	bool                     hdr_timing;    /* hdr_timer armed */
	size_t                   scanned;       /* head bytes known to hold no LF */
	char                    *head;          /* copy of the request head */
	size_t                   head_cap;
	bool                     internal;      /* background refresh, no client */
	struct bufferevent      *partner;       /* internal: the pair's other end */
	bool                     tls;           /* client came over TLS */
	bool                     h2;            /* an HTTP/2 stream's request */
	void                   (*on_close)(void *arg);  /* h2 stream hook */
	void                    *on_close_arg;
	unsigned                 pending;       /* store callbacks outstanding:
						 * a closed conn waits for them
						 * in the graveyard */
	char                    *key;           /* cache key of the request */
	size_t                   key_cap;
	struct evbuffer         *fill;          /* response body being stored */
	char                    *fill_meta;     /* headers + tags to store */
	size_t                   fill_meta_cap;
	size_t                   fill_hdr_len;
	size_t                   fill_tags_len;
	int                      fill_status;
	uint64_t                 fill_ttl;
	struct event            *wait_timer;    /* stampede-lock polling */
	struct http_msg          req;
	struct txn               txn;
	TAILQ_ENTRY(conn)        link;
};

/* conn.c */
struct conn *conn_new(struct worker_env *env, int fd,
    const struct sockaddr *sa, int salen);
void conn_close(struct conn *c);
void conn_drain(struct conn *c);          /* worker is stopping */
void conn_reap(struct worker_env *env);   /* free the graveyard */
/* The request became a tunnel: log it, close the conn, hand back its
 * client bufferevent (callbacks cleared) to the caller. */
struct bufferevent *conn_detach(struct conn *c);
/* Stop / resume taking request body bytes from the client (backpressure:
 * the upstream's output is full / drained). */
void conn_read_pause(struct conn *c);
void conn_read_resume(struct conn *c);
/* Queue a stoa-generated response (error page) and finish the request. */
void conn_send_error(struct conn *c, int status, bool close_after);
/* The response in flight is complete; log it, then read the next request
 * or close. */
void conn_request_done(struct conn *c);
/* Client input callback for the body phase lives in proxy.c. */

/* A connection with no client socket: `bev` is one end of a bufferevent
 * pair holding a synthetic request (cache background refresh). */
struct conn *conn_new_internal(struct worker_env *env,
    struct bufferevent *bev, const char *peer_ip);
/* The same for one HTTP/2 stream's request (h2.c): counted like a client
 * request; on_close(arg) is called once when the conn closes. */
struct conn *conn_new_stream(struct worker_env *env, struct bufferevent *bev,
    const char *peer_ip, bool tls, void (*on_close)(void *), void *arg);
/* One HTTP/2 stream's request without a bufferevent: h2.c writes the
 * request (an HTTP/1.1 head, then the body) into `in` and calls
 * conn_stream_input(); the response is written to `out`, which h2.c
 * reads.  Both buffers stay h2.c's: the conn forgets them when it closes,
 * after on_close(arg). */
struct conn *conn_new_h2stream(struct worker_env *env, struct evbuffer *in,
    struct evbuffer *out, const char *peer_ip, bool tls,
    void (*on_close)(void *), void *arg);
/* h2.c added request bytes to a stream conn's `in`. */
void conn_stream_input(struct conn *c);
/* An accepted TLS connection (handshake under way on bev). */
struct conn *conn_new_tls(struct worker_env *env, struct bufferevent *bev,
    const struct sockaddr *sa, int salen);

/* proxy.c */
void proxy_start(struct conn *c);          /* head parsed into c->req */
void proxy_forward(struct conn *c);        /* send the request upstream */

/* proxy_cache.c */
void pcache_request(struct conn *c);       /* cached route: lookup first */
/* Response head from the upstream: 0 go on, 1 serve the stale entry instead */
int  pcache_response(struct conn *c, const struct http_msg *r);
/* Response body bytes about to move to the client */
void pcache_body(struct conn *c, struct evbuffer *in, size_t n);
void pcache_finish(struct conn *c, bool complete); /* store or discard */
bool pcache_fail(struct conn *c);          /* upstream failed: served stale? */
void pcache_txn_end(struct conn *c);       /* release what the txn holds */
void pcache_conn_free(struct conn *c);
void proxy_client_read(struct conn *c);    /* more request body bytes */
void proxy_client_drained(struct conn *c); /* client output below low water */
void proxy_abort(struct conn *c);          /* client gone: drop the upstream */

#endif
