/*
 * h2.c -- HTTP/2 client connections (nghttp2), as a gateway onto the
 * HTTP/1.1 path; see h2.h.
 *
 * Per stream:  HEADERS → an HTTP/1.1 request head written into st->cin,
 * the input of a struct conn without a socket (conn_new_h2stream: it
 * parses the head strictly, routes, caches and proxies like any client
 * request); DATA → the request body (chunked unless content-length was
 * given) into the same buffer.  The conn writes its HTTP/1.1 response into
 * st->resp; from the connection's pump event (once per loop turn, however
 * many pieces were written) it is parsed (http1.c) into :status + headers
 * and its body decoded into st->body, which DATA frames take from without
 * copying (NGHTTP2_DATA_FLAG_NO_COPY).
 *
 * WebSocket streams (RFC 8441) become a byte tunnel, and a tunnel needs a
 * bufferevent: for them the conn's side is one end of a bufferevent pair
 * and ours is st->pair, whose input takes st->resp's role.
 *
 * Lifetimes: an h2conn is freed from a zero-timeout event, never inside
 * nghttp2's callbacks.  A stream is freed in on_stream_close; its conn
 * tells us when it closes through conn->on_close, after which the stream
 * only drains what is already in its buffers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config.h"
#include "conn.h"
#include "flush.h"
#include "h2.h"
#include "http1.h"
#include "log.h"
#include "mem.h"
#include "stats.h"
#include "util.h"
#include "vas.h"

#define H2CONN_MAGIC   0x4832c0e1u
#define H2STREAM_MAGIC 0x48325173u

/* Largest TLS record payload (RFC 8446 §5.1): the unit output is built in. */
#define H2_RECORD 16384

struct h2stream {
	unsigned                 magic;
	struct h2conn           *h;
	int32_t                  id;
	struct bufferevent      *pair;          /* WebSocket: our end of the pair */
	struct conn             *ic;            /* NULL once it closed */
	struct evbuffer         *req;           /* regular request fields */
	struct evbuffer         *cin;           /* request bytes for the conn */
	struct evbuffer         *resp;          /* its HTTP/1.1 response */
	/* pseudo-header values held from nghttp2 until the head is built */
	nghttp2_rcbuf           *method, *path, *authority, *protocol;
	struct evbuffer         *cookie;        /* cookie crumbs, joined; lazy */
	enum http_method         meth;
	bool                     have_cl;       /* content-length was sent */
	bool                     ws;            /* RFC 8441 CONNECT :protocol websocket */
	bool                     tunnel;        /* 101 seen: bytes flow both ways */
	bool                     pair_eof;      /* the other end finished */
	bool                     req_chunked;   /* we chunk the request body */
	bool                     req_started;   /* head handed to the conn */
	bool                     req_ended;
	size_t                   unconsumed;    /* DATA bytes not yet acknowledged */
	/* response */
	bool                     resp_head;     /* HEADERS submitted */
	bool                     resp_done;     /* body complete in st->body */
	bool                     deferred;      /* data provider waits for bytes */
	bool                     resp_sent;     /* END_STREAM of the response queued */
	bool                     paused;        /* body full: decoding stopped */
	bool                     resp_high;     /* resp reached the high watermark
						 * (the proxy stopped reading) */
	bool                     dirty;         /* on h->dirty */
	bool                     fed;           /* cin has bytes for the conn */
	TAILQ_ENTRY(h2stream)    dlink;
	enum http_body           mode;
	uint64_t                 left;
	struct http1_chunked     chunk;
	struct evbuffer         *body;          /* decoded response body */
	TAILQ_ENTRY(h2stream)    link;
};

struct h2conn {
	unsigned                 magic;
	struct worker_env       *env;
	struct bufferevent      *bev;
	nghttp2_session         *s;
	char                     peer_ip[64];
	bool                     tls;
	bool                     closing;       /* free scheduled */
	bool                     goaway;        /* draining */
	unsigned                 nstreams;
	TAILQ_HEAD(, h2stream)   streams;
	TAILQ_HEAD(, h2stream)   dirty;         /* streams to pump */
	struct event            *pump;          /* runs them, then flushes */
	char                    *scratch;       /* lower-cased header names */
	size_t                   scratch_cap;
	TAILQ_ENTRY(h2conn)      link;
};

static void h2_flush(struct h2conn *h);
static void stream_pump(struct h2stream *st);

/* Pump st (and flush) from the loop, once however often it is asked. */
static void
stream_schedule(struct h2stream *st)
{
	struct h2conn *h = st->h;

	if (st->dirty || h->closing)
		return;
	st->dirty = true;
	TAILQ_INSERT_TAIL(&h->dirty, st, dlink);
	event_active(h->pump, EV_TIMEOUT, 0);
}

static void
h2_pump(evutil_socket_t fd, short what, void *arg)
{
	struct h2conn *h = arg;
	struct h2stream *st;

	(void)fd;
	(void)what;
	CHECK_OBJ_NOTNULL(h, H2CONN_MAGIC);
	while ((st = TAILQ_FIRST(&h->dirty)) != NULL) {
		TAILQ_REMOVE(&h->dirty, st, dlink);
		st->dirty = false;
		if (h->closing)
			continue;       /* no request of a closing connection
					 * starts: h2conn_free() ends them */
		if (st->fed) {
			st->fed = false;
			if (st->ic != NULL)
				conn_stream_input(st->ic);
		}
		stream_pump(st);
	}
	h2_flush(h);
}

/* The response side of st: where the conn's HTTP/1.1 bytes arrive. */
static struct evbuffer *
stream_resp(const struct h2stream *st)
{
	return (st->pair != NULL ? bufferevent_get_input(st->pair) : st->resp);
}

/* The request side of st: where its HTTP/1.1 bytes go to the conn. */
static struct evbuffer *
stream_cin(const struct h2stream *st)
{
	return (st->pair != NULL ? bufferevent_get_output(st->pair) : st->cin);
}

/*
 * Request bytes were added: a conn without a socket reads them from the
 * pump, not inside nghttp2's callbacks.  So a stream reset in the same
 * read as its HEADERS (rapid reset) is freed before its conn ever parsed
 * the head: it costs no upstream request.  The pump also takes every DATA
 * frame of one read at once.
 */
static void
stream_fed(struct h2stream *st)
{
	if (st->pair != NULL || st->ic == NULL)
		return;
	st->fed = true;
	stream_schedule(st);
}

/* ---- teardown --------------------------------------------------------- */

static void
stream_drop_pseudo(struct h2stream *st)
{
	nghttp2_rcbuf **all[] = { &st->method, &st->path, &st->authority,
	    &st->protocol };

	for (unsigned i = 0; i < ARRAY_SIZE(all); i++)
		if (*all[i] != NULL) {
			nghttp2_rcbuf_decref(*all[i]);
			*all[i] = NULL;
		}
}

static void
stream_free(struct h2stream *st)
{
	struct h2conn *h = st->h;

	CHECK_OBJ_NOTNULL(st, H2STREAM_MAGIC);
	if (st->ic != NULL) {
		st->ic->on_close = NULL;
		conn_close(st->ic);
		st->ic = NULL;
	}
	if (st->pair != NULL) {
		bufferevent_setcb(st->pair, NULL, NULL, NULL, NULL);
		bufferevent_free(st->pair);
	}
	if (st->dirty)
		TAILQ_REMOVE(&h->dirty, st, dlink);
	if (st->cin != NULL)
		evbuffer_free(st->cin);
	if (st->resp != NULL)
		evbuffer_free(st->resp);
	evbuffer_free(st->req);
	stream_drop_pseudo(st);
	if (st->cookie != NULL)
		evbuffer_free(st->cookie);
	evbuffer_free(st->body);
	TAILQ_REMOVE(&h->streams, st, link);
	h->nstreams--;
	st->magic = 0;
	mem_free(st);
}

static void
h2conn_free(evutil_socket_t fd, short what, void *arg)
{
	struct h2conn *h = arg;
	struct worker_env *env = h->env;
	struct h2stream *st;

	(void)fd;
	(void)what;
	CHECK_OBJ_NOTNULL(h, H2CONN_MAGIC);
	while ((st = TAILQ_FIRST(&h->streams)) != NULL)
		stream_free(st);
	nghttp2_session_del(h->s);
	event_free(h->pump);
	flush_detach(h->bev);
	bufferevent_free(h->bev);
	free(h->scratch);
	TAILQ_REMOVE(&env->h2conns, h, link);
	env->nh2conns--;
	stats_add(STAT_CONNECTIONS, -1);
	h->magic = 0;
	free(h);
	if (env->on_conn_freed != NULL)
		env->on_conn_freed(env);
}

/* Close the connection: stop I/O now, free on the next loop turn. */
static void
h2conn_close(struct h2conn *h)
{
	struct timeval tv = { 0, 0 };

	if (h->closing)
		return;
	h->closing = true;
	bufferevent_disable(h->bev, EV_READ | EV_WRITE);
	if (event_base_once(h->env->base, -1, EV_TIMEOUT, h2conn_free, h,
	    &tv) != 0)
		WRONG("event_base_once");
}

/* ---- nghttp2 I/O ------------------------------------------------------ */

static ssize_t
send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
    void *arg)
{
	struct h2conn *h = arg;
	struct evbuffer *out = bufferevent_get_output(h->bev);

	(void)s;
	(void)flags;
	if (evbuffer_get_length(out) >= STOA_HIGH_WATER)
		return (NGHTTP2_ERR_WOULDBLOCK);
	if (evbuffer_add(out, data, len) != 0)
		return (NGHTTP2_ERR_CALLBACK_FAILURE);
	return ((ssize_t)len);
}

/* DATA frame payload straight from the stream's body buffer. */
static int
send_data_cb(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *fh,
    size_t len, nghttp2_data_source *src, void *arg)
{
	struct h2conn *h = arg;
	struct h2stream *st = src->ptr;
	struct evbuffer *out = bufferevent_get_output(h->bev);

	(void)s;
	(void)frame;
	if (evbuffer_get_length(out) >= STOA_HIGH_WATER)
		return (NGHTTP2_ERR_WOULDBLOCK);
	if (len <= H2_RECORD) {
		/* copied behind the frame header: over TLS every chain of
		 * the output becomes a record of its own, and a record costs
		 * far more than copying a small body */
		struct evbuffer_iovec v;

		if (evbuffer_reserve_space(out, (ev_ssize_t)(9 + len), &v, 1) < 1)
			return (NGHTTP2_ERR_CALLBACK_FAILURE);
		memcpy(v.iov_base, fh, 9);
		(void)evbuffer_remove(st->body, (char *)v.iov_base + 9, len);
		v.iov_len = 9 + len;
		(void)evbuffer_commit_space(out, &v, 1);
	} else {
		evbuffer_add(out, fh, 9);
		evbuffer_remove_buffer(st->body, out, len);
	}
	if (st->paused && evbuffer_get_length(st->body) < STOA_LOW_WATER) {
		st->paused = false;
		if (st->pair != NULL)
			bufferevent_enable(st->pair, EV_READ);
		else
			stream_schedule(st);
	}
	return (0);
}

static ssize_t
data_read_cb(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
    uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct h2stream *st = src->ptr;
	size_t have = evbuffer_get_length(st->body);
	size_t n = have < len ? have : len;

	(void)s;
	(void)id;
	(void)buf;
	(void)arg;
	if (n == 0 && !st->resp_done) {
		st->deferred = true;
		return (NGHTTP2_ERR_DEFERRED);
	}
	if (n == 0) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		st->resp_sent = true;
		return (0);
	}
	*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	if (st->resp_done && n == have) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		st->resp_sent = true;
	}
	return ((ssize_t)n);
}

/* ---- requests: HEADERS and DATA → HTTP/1.1 ------------------------------ */

static struct h2stream *
stream_of(struct h2conn *h, int32_t id)
{
	struct h2stream *st = nghttp2_session_get_stream_user_data(h->s, id);

	if (st != NULL)
		CHECK_OBJ(st, H2STREAM_MAGIC);
	return (st);
}

static int
on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *arg)
{
	struct h2conn *h = arg;
	struct h2stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return (0);
	if (h->goaway)
		return (NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE);
	st = mem_zalloc(sizeof *st);
	if (st == NULL)
		return (NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE);
	st->magic = H2STREAM_MAGIC;
	st->h = h;
	st->id = frame->hd.stream_id;
	st->req = evbuffer_new();
	st->body = evbuffer_new();
	if (st->req == NULL || st->body == NULL) {
		if (st->req != NULL)
			evbuffer_free(st->req);
		if (st->body != NULL)
			evbuffer_free(st->body);
		mem_free(st);
		return (NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE);
	}
	TAILQ_INSERT_TAIL(&h->streams, st, link);
	h->nstreams++;
	nghttp2_session_set_stream_user_data(s, st->id, st);
	return (0);
}

/* Append the n pieces of v to b in one buffer operation (a head line is
 * built from a few short pieces; an evbuffer_add each costs more than the
 * copying). */
static int
add_pieces(struct evbuffer *b, const struct iovec *v, int n)
{
	struct evbuffer_iovec out;
	size_t len = 0;
	char *p;

	for (int i = 0; i < n; i++)
		len += v[i].iov_len;
	if (evbuffer_reserve_space(b, (ev_ssize_t)len, &out, 1) < 1)
		return (-1);
	p = out.iov_base;
	for (int i = 0; i < n; i++) {
		memcpy(p, v[i].iov_base, v[i].iov_len);
		p += v[i].iov_len;
	}
	out.iov_len = len;
	return (evbuffer_commit_space(b, &out, 1));
}

#define PIECE(p, l) { (void *)(uintptr_t)(p), (l) }

#define IS(lit) (nlen == sizeof(lit) - 1 && memcmp(name, lit, nlen) == 0)

/* Keep a pseudo-header's value (the first one: nghttp2 checked them). */
static void
hold(nghttp2_rcbuf **slot, nghttp2_rcbuf *v)
{
	if (*slot != NULL)
		return;
	nghttp2_rcbuf_incref(v);
	*slot = v;
}

/* One header field of a request (trailers are dropped). */
static int
on_header(nghttp2_session *s, const nghttp2_frame *frame,
    nghttp2_rcbuf *nrc, nghttp2_rcbuf *vrc, uint8_t flags, void *arg)
{
	struct h2conn *h = arg;
	struct h2stream *st;
	nghttp2_vec nv = nghttp2_rcbuf_get_buf(nrc);
	nghttp2_vec vv = nghttp2_rcbuf_get_buf(vrc);
	const char *name = (const char *)nv.base;
	size_t nlen = nv.len;

	(void)s;
	(void)flags;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return (0);
	st = stream_of(h, frame->hd.stream_id);
	if (st == NULL || st->req_started)
		return (0);
	if (nlen > 0 && name[0] == ':') {
		if (IS(":method")) {
			hold(&st->method, vrc);
			st->meth = http_method_from((const char *)vv.base,
			    vv.len);
		} else if (IS(":path"))
			hold(&st->path, vrc);
		else if (IS(":authority"))
			hold(&st->authority, vrc);
		else if (IS(":protocol"))
			hold(&st->protocol, vrc);
		return (0);             /* and :scheme */
	}
	if (IS("cookie")) {
		/* RFC 9113 §8.2.3: crumbs are joined with "; " for HTTP/1.1 */
		if (st->cookie == NULL && (st->cookie = evbuffer_new()) == NULL)
			return (NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE);
		if (evbuffer_get_length(st->cookie) > 0)
			evbuffer_add(st->cookie, "; ", 2);
		evbuffer_add(st->cookie, vv.base, vv.len);
	} else if (IS("host"))
		hold(&st->authority, vrc);      /* :authority comes first */
	else if (!IS("expect")) {       /* we answer 100-continue ourselves */
		if (IS("content-length"))
			st->have_cl = true;
		const struct iovec line[] = { PIECE(name, nlen),
		    PIECE(": ", 2), PIECE(vv.base, vv.len), PIECE("\r\n", 2) };

		if (add_pieces(st->req, line, ARRAY_SIZE(line)) != 0)
			return (NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE);
	}
	return (0);
}

#undef IS

static void stream_conn_closed(void *arg);
static void pair_eventcb(struct bufferevent *bev, short what, void *arg);
static void pair_readcb(struct bufferevent *bev, void *arg);
static void pair_writecb(struct bufferevent *bev, void *arg);
static void stream_consumed(struct h2stream *st, size_t queued);

/* The conn wrote response bytes: decode them from the loop. */
static void
resp_cb(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
	(void)b;
	if (info->n_added > 0)
		stream_schedule(arg);
}

/* The conn took request bytes: acknowledge the DATA they came in. */
static void
cin_cb(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
	if (info->n_deleted > 0)
		stream_consumed(arg, evbuffer_get_length(b));
}

/* The conn's side of a WebSocket stream: a bufferevent pair (a tunnel
 * splices bufferevents); out is set to the pair's request side. */
static int
stream_pair(struct h2conn *h, struct h2stream *st)
{
	struct bufferevent *pair[2];

	if (bufferevent_pair_new(h->env->base, BEV_OPT_CLOSE_ON_FREE |
	    BEV_OPT_DEFER_CALLBACKS, pair) != 0)
		return (-1);
	st->pair = pair[1];
	st->ic = conn_new_stream(h->env, pair[0], h->peer_ip, h->tls,
	    stream_conn_closed, st);
	if (st->ic == NULL)
		return (-1);
	bufferevent_setcb(st->pair, pair_readcb, pair_writecb, pair_eventcb, st);
	/* response bytes wait in the conn while our body buffer is full */
	bufferevent_setwatermark(st->pair, EV_READ, 0, STOA_HIGH_WATER);
	bufferevent_setwatermark(st->pair, EV_WRITE, STOA_LOW_WATER, 0);
	bufferevent_enable(st->pair, EV_READ | EV_WRITE);
	return (0);
}

/* The conn's side of a request stream: two buffers, no socket. */
static int
stream_direct(struct h2conn *h, struct h2stream *st)
{
	st->cin = evbuffer_new();
	st->resp = evbuffer_new();
	if (st->cin == NULL || st->resp == NULL)
		return (-1);
	st->ic = conn_new_h2stream(h->env, st->cin, st->resp, h->peer_ip,
	    h->tls, stream_conn_closed, st);
	if (st->ic == NULL)
		return (-1);
	evbuffer_add_cb(st->resp, resp_cb, st);
	return (0);
}

/* The request head is complete: start the stream's conn. */
static int
stream_start(struct h2conn *h, struct h2stream *st, bool end_stream)
{
	struct evbuffer *out;
	nghttp2_vec m, pv, a;

	if (st->method == NULL || st->path == NULL)
		return (-1);    /* a CONNECT without :protocol */
	m = nghttp2_rcbuf_get_buf(st->method);
	pv = nghttp2_rcbuf_get_buf(st->path);
	if (st->meth == HTTP_M_CONNECT) {
		/* RFC 8441: only the websocket protocol, as an HTTP/1.1
		 * Upgrade (RFC 6455) on the route it names */
		unsigned char key[16];
		char key64[32];
		nghttp2_vec pr = { NULL, 0 };

		if (st->protocol != NULL)
			pr = nghttp2_rcbuf_get_buf(st->protocol);
		if (pr.len != 9 || strncasecmp((const char *)pr.base,
		    "websocket", 9) != 0)
			return (-1);
		st->ws = true;
		util_random(key, sizeof key);
		EVP_EncodeBlock((unsigned char *)key64, key, sizeof key);
		m.base = (uint8_t *)(uintptr_t)"GET";
		m.len = 3;
		evbuffer_add_printf(st->req, "Connection: Upgrade\r\n"
		    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
		    "Sec-WebSocket-Key: %s\r\n", key64);
		st->meth = HTTP_M_GET;
	}

	if ((st->ws ? stream_pair(h, st) : stream_direct(h, st)) != 0)
		return (-1);
	st->req_started = true;
	st->req_ended = end_stream;

	/* the HTTP/1.1 head, straight into the conn's input */
	out = stream_cin(st);
	{
		const struct iovec line[] = { PIECE(m.base, m.len),
		    PIECE(" ", 1), PIECE(pv.base, pv.len),
		    PIECE(" HTTP/1.1\r\n", 11) };

		if (add_pieces(out, line, ARRAY_SIZE(line)) != 0)
			return (-1);
	}
	if (st->authority != NULL) {
		a = nghttp2_rcbuf_get_buf(st->authority);
		const struct iovec host[] = { PIECE("Host: ", 6),
		    PIECE(a.base, a.len), PIECE("\r\n", 2) };

		if (add_pieces(out, host, ARRAY_SIZE(host)) != 0)
			return (-1);
	}
	stream_drop_pseudo(st);         /* m, pv, a point into these */
	evbuffer_add_buffer(out, st->req);
	if (st->cookie != NULL && evbuffer_get_length(st->cookie) > 0) {
		evbuffer_add(out, "Cookie: ", 8);
		evbuffer_add_buffer(out, st->cookie);
		evbuffer_add(out, "\r\n", 2);
	}
	if (st->ws)
		evbuffer_add(out, "\r\n", 2);        /* the tunnel follows */
	else {
		if (!end_stream && !st->have_cl) {
			st->req_chunked = true;
			evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
		}
		evbuffer_add(out, "Connection: close\r\n\r\n", 21);
	}
	if (st->req_ended && st->req_chunked)
		evbuffer_add(out, "0\r\n\r\n", 5);
	/* from here on, the conn's taking body bytes is acknowledged */
	if (st->pair == NULL)
		evbuffer_add_cb(st->cin, cin_cb, st);
	stream_fed(st);
	return (0);
}

static int
on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *arg)
{
	struct h2conn *h = arg;
	struct h2stream *st;
	bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		st = stream_of(h, frame->hd.stream_id);
		if (st == NULL)
			return (0);
		if (!st->req_started) {
			if (stream_start(h, st, end) != 0)
				nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE,
				    st->id, NGHTTP2_INTERNAL_ERROR);
			return (0);
		}
		/* trailers: they end the body */
		/* FALLTHROUGH */
	case NGHTTP2_DATA:
		st = stream_of(h, frame->hd.stream_id);
		if (st == NULL || !end || st->req_ended)
			return (0);
		st->req_ended = true;
		if (st->req_chunked) {
			evbuffer_add(stream_cin(st), "0\r\n\r\n", 5);
			stream_fed(st);
		}
		if (st->tunnel && st->pair != NULL)
			(void)bufferevent_flush(st->pair, EV_WRITE, BEV_FINISHED);
		return (0);
	default:
		return (0);
	}
}

static int
on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id,
    const uint8_t *data, size_t len, void *arg)
{
	struct h2conn *h = arg;
	struct h2stream *st = stream_of(h, id);
	struct evbuffer *out;

	(void)flags;
	if (st == NULL || !st->req_started || (st->ic == NULL && !st->tunnel)) {
		/* nobody will read it: acknowledge at once */
		nghttp2_session_consume(s, id, len);
		if (st != NULL && st->resp_sent && !st->req_ended) {
			/* answered before the upload ended (e.g. 413): ask the
			 * client to stop sending (RFC 9113 §8.1) */
			st->req_ended = true;
			nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id,
			    NGHTTP2_NO_ERROR);
		}
		return (0);
	}
	out = stream_cin(st);
	if (st->req_chunked)
		evbuffer_add_printf(out, "%zx\r\n", len);
	evbuffer_add(out, data, len);
	if (st->req_chunked)
		evbuffer_add(out, "\r\n", 2);
	/* WINDOW_UPDATE only once the conn took it (stream_consumed) */
	st->unconsumed += len;
	stream_fed(st);
	return (0);
}

static int
on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *arg)
{
	struct h2conn *h = arg;
	struct h2stream *st = stream_of(h, id);

	(void)code;
	if (st == NULL)
		return (0);
	nghttp2_session_set_stream_user_data(s, id, NULL);
	stream_free(st);
	if (h->goaway && h->nstreams == 0)
		nghttp2_session_terminate_session(s, NGHTTP2_NO_ERROR);
	return (0);
}

/* ---- responses: HTTP/1.1 → HEADERS and DATA ---------------------------- */

/* The conn took request body bytes: `queued` are left for it (framing
 * included).  Acknowledge the rest to the peer (WINDOW_UPDATE). */
static void
stream_consumed(struct h2stream *st, size_t queued)
{
	struct h2conn *h = st->h;

	if (st->unconsumed <= queued)
		return;
	nghttp2_session_consume(h->s, st->id, st->unconsumed - queued);
	st->unconsumed = queued;
	if (st->pair != NULL)
		h2_flush(h);
	else
		stream_schedule(st);    /* we are inside the conn's reading */
}

static void
pair_writecb(struct bufferevent *bev, void *arg)
{
	struct h2stream *st = arg;

	CHECK_OBJ_NOTNULL(st, H2STREAM_MAGIC);
	stream_consumed(st, evbuffer_get_length(bufferevent_get_output(bev)));
}

static bool
hop_by_hop(const char *n, size_t l)
{
	return (util_tok_eq(n, l, "connection") || util_tok_eq(n, l, "keep-alive") ||
	    util_tok_eq(n, l, "proxy-connection") ||
	    util_tok_eq(n, l, "transfer-encoding") || util_tok_eq(n, l, "upgrade") ||
	    util_tok_eq(n, l, "te") || util_tok_eq(n, l, "trailer") ||
	    util_tok_eq(n, l, "sec-websocket-accept"));
}

/* Submit the response HEADERS for a parsed HTTP/1.1 head. */
static int
submit_head(struct h2stream *st, const struct http_msg *r)
{
	struct h2conn *h = st->h;
	nghttp2_nv nv[HTTP_MAX_HEADERS + 1];
	nghttp2_data_provider prd;
	char status[4];
	size_t nn = 0, off = 0, need = 0;

	for (unsigned i = 0; i < r->nhdr; i++)
		need += r->hdr[i].name_len;
	if (need > h->scratch_cap) {
		char *p = realloc(h->scratch, need);

		if (p == NULL)
			return (-1);
		h->scratch = p;
		h->scratch_cap = need;
	}
	status[0] = (char)('0' + r->status / 100 % 10);  /* 100..999 */
	status[1] = (char)('0' + r->status / 10 % 10);
	status[2] = (char)('0' + r->status % 10);
	nv[nn++] = (nghttp2_nv){ (uint8_t *)(uintptr_t)":status",
	    (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE };
	for (unsigned i = 0; i < r->nhdr; i++) {
		const struct http_header *hd = &r->hdr[i];
		char *lc = h->scratch + off;

		if (hop_by_hop(hd->name, hd->name_len))
			continue;
		for (size_t k = 0; k < hd->name_len; k++) {
			char ch = hd->name[k];

			lc[k] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
		}
		off += hd->name_len;
		nv[nn++] = (nghttp2_nv){ (uint8_t *)lc,
		    (uint8_t *)(uintptr_t)hd->value, hd->name_len,
		    hd->value_len, NGHTTP2_NV_FLAG_NONE };
	}
	st->resp_head = true;
	if (r->body == HTTP_BODY_NONE) {
		st->resp_done = true;
		st->resp_sent = true;
		return (nghttp2_submit_response(h->s, st->id, nv, nn, NULL));
	}
	prd.source.ptr = st;
	prd.read_callback = data_read_cb;
	return (nghttp2_submit_response(h->s, st->id, nv, nn, &prd));
}

/* Decode what the conn sent back into :status/headers and st->body. */
static int
stream_decode(struct h2stream *st)
{
	struct evbuffer *in = stream_resp(st);
	size_t max_head = (size_t)st->h->env->cfg->limits.max_header_size;
	struct http_msg r;
	struct http1_err err;
	size_t len, n, used;
	const char *p;
	ssize_t rc;
	int crc;

	while (!st->resp_head) {
		len = evbuffer_get_length(in);
		if (len == 0)
			return (0);
		n = len < max_head ? len : max_head;
		p = (const char *)evbuffer_pullup(in, (ssize_t)n);
		rc = http1_parse_response(p, n, max_head, st->meth, &r, &err);
		if (rc == HTTP1_AGAIN)
			return (0);
		if (rc < 0)
			return (-1);
		if (r.status == 101 && st->ws) {
			/* RFC 8441: the tunnel is open; 200 on the stream */
			r.status = 200;
			r.body = HTTP_BODY_EOF;
			st->tunnel = true;
		} else if (r.status < 200) {
			evbuffer_drain(in, (size_t)rc);
			continue;       /* our own 100 Continue */
		}
		st->mode = r.body;
		st->left = r.content_length;
		http1_chunked_init(&st->chunk);
		if (r.body == HTTP_BODY_LENGTH && r.content_length == 0)
			r.body = HTTP_BODY_NONE;
		if (submit_head(st, &r) != 0)
			return (-1);
		evbuffer_drain(in, (size_t)rc);
	}
	while (!st->resp_done && (len = evbuffer_get_length(in)) > 0) {
		/* without a pair nothing else bounds the body buffer */
		if (st->pair == NULL &&
		    evbuffer_get_length(st->body) >= STOA_HIGH_WATER)
			break;
		switch (st->mode) {
		case HTTP_BODY_LENGTH:
			n = len < st->left ? len : (size_t)st->left;
			evbuffer_remove_buffer(in, st->body, n);
			st->left -= n;
			st->resp_done = (st->left == 0);
			break;
		case HTTP_BODY_CHUNKED:
			crc = http1_chunked_frame(&st->chunk, "", 0, &used);
			if (crc == HTTP1_CHUNK_DATA) {
				n = len < st->chunk.left ? len : (size_t)st->chunk.left;
				evbuffer_remove_buffer(in, st->body, n);
				http1_chunked_data(&st->chunk, n);
				break;
			}
			n = len < 4200 ? len : 4200;
			p = (const char *)evbuffer_pullup(in, (ssize_t)n);
			crc = http1_chunked_frame(&st->chunk, p, n, &used);
			evbuffer_drain(in, used);
			if (crc == HTTP1_CHUNK_DONE)
				st->resp_done = true;
			else if (crc == HTTP1_CHUNK_ERROR)
				return (-1);
			break;
		default:
			/* tunnel bytes (the conn never sends close-delimited
			 * bodies to an HTTP/1.1 request) */
			evbuffer_add_buffer(st->body, in);
			break;
		}
	}
	if (st->tunnel && st->pair_eof && evbuffer_get_length(in) == 0)
		st->resp_done = true;
	return (0);
}

static void
stream_pump(struct h2stream *st)
{
	struct h2conn *h = st->h;
	struct evbuffer *resp;

	if (!st->req_started || h->closing)
		return;
	resp = stream_resp(st);
	if (st->pair == NULL && evbuffer_get_length(resp) >= STOA_HIGH_WATER)
		st->resp_high = true;   /* the proxy stopped reading upstream */
	if (stream_decode(st) != 0) {
		log_warn("h2 stream %d: bad response from the proxy path", st->id);
		nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id,
		    NGHTTP2_INTERNAL_ERROR);
		return;
	}
	if (st->ic == NULL && !st->resp_done && !st->tunnel &&
	    evbuffer_get_length(resp) == 0) {
		/* the conn closed without finishing the response */
		if (!st->resp_head) {
			static const char bad[] = "HTTP/1.1 502 Bad Gateway\r\n"
			    "Content-Length: 0\r\n\r\n";

			evbuffer_add(resp, bad, sizeof bad - 1);
			stream_pump(st);
			return;
		}
		nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id,
		    NGHTTP2_INTERNAL_ERROR);
		return;
	}
	if (evbuffer_get_length(st->body) >= STOA_HIGH_WATER && !st->paused) {
		st->paused = true;
		if (st->pair != NULL)
			bufferevent_disable(st->pair, EV_READ);
	}
	if (st->deferred && (evbuffer_get_length(st->body) > 0 || st->resp_done)) {
		st->deferred = false;
		nghttp2_session_resume_data(h->s, st->id);
	}
	if (st->resp_high && st->ic != NULL &&
	    evbuffer_get_length(resp) < STOA_LOW_WATER) {
		/* last: the proxy may write (and finish) at once */
		st->resp_high = false;
		proxy_client_drained(st->ic);
	}
}

static void
pair_readcb(struct bufferevent *bev, void *arg)
{
	struct h2stream *st = arg;
	struct h2conn *h = st->h;

	(void)bev;
	CHECK_OBJ_NOTNULL(st, H2STREAM_MAGIC);
	stream_pump(st);
	h2_flush(h);
}

/* Our end of the pair: the tunnel behind it finished or failed. */
static void
pair_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct h2stream *st = arg;
	struct h2conn *h = st->h;

	(void)bev;
	(void)what;
	CHECK_OBJ_NOTNULL(st, H2STREAM_MAGIC);
	st->pair_eof = true;
	if (!st->tunnel)
		return;
	stream_pump(st);
	h2_flush(h);
}

/* conn->on_close: the internal conn is gone (its last bytes are ours). */
static void
stream_conn_closed(void *arg)
{
	struct h2stream *st = arg;

	CHECK_OBJ_NOTNULL(st, H2STREAM_MAGIC);
	st->ic = NULL;
	/* from the loop: we are inside conn_close() */
	stream_schedule(st);
}

/* ---- the client connection --------------------------------------------- */

/* Send what nghttp2 has; close when the session is over. */
static void
h2_flush(struct h2conn *h)
{
	if (h->closing)
		return;
	/* what one flush produces goes to one chain: one TLS record */
	if (h->tls && nghttp2_session_want_write(h->s))
		(void)evbuffer_expand(bufferevent_get_output(h->bev), H2_RECORD);
	if (nghttp2_session_send(h->s) != 0) {
		h2conn_close(h);
		return;
	}
	if (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s) &&
	    evbuffer_get_length(bufferevent_get_output(h->bev)) == 0)
		h2conn_close(h);
}

static void
client_readcb(struct bufferevent *bev, void *arg)
{
	struct h2conn *h = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v[8];
	int nv;
	ssize_t rv;

	CHECK_OBJ_NOTNULL(h, H2CONN_MAGIC);
	while (!h->closing && evbuffer_get_length(in) > 0) {
		nv = evbuffer_peek(in, -1, NULL, v, ARRAY_SIZE(v));
		if (nv > (int)ARRAY_SIZE(v))
			nv = ARRAY_SIZE(v);
		for (int i = 0; i < nv; i++) {
			rv = nghttp2_session_mem_recv(h->s, v[i].iov_base,
			    v[i].iov_len);
			if (rv < 0) {
				log_debug("h2 client %s: %s", h->peer_ip,
				    nghttp2_strerror((int)rv));
				h2conn_close(h);
				return;
			}
		}
		for (int i = 0; i < nv; i++)
			evbuffer_drain(in, v[i].iov_len);
	}
	h2_flush(h);
}

static void
client_writecb(struct bufferevent *bev, void *arg)
{
	struct h2conn *h = arg;

	(void)bev;
	CHECK_OBJ_NOTNULL(h, H2CONN_MAGIC);
	h2_flush(h);
}

static void
client_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct h2conn *h = arg;

	CHECK_OBJ_NOTNULL(h, H2CONN_MAGIC);
	if ((what & BEV_EVENT_TIMEOUT) && h->nstreams > 0) {
		/* idle only counts without streams in flight */
		bufferevent_enable(bev, EV_READ);
		return;
	}
	h2conn_close(h);
}

/* GOAWAY: no new streams; close once the open ones are done. */
static void
h2_drain_one(struct h2conn *h)
{
	if (h->goaway || h->closing)
		return;
	h->goaway = true;
	(void)nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE,
	    nghttp2_session_get_last_proc_stream_id(h->s), NGHTTP2_NO_ERROR,
	    NULL, 0);
	if (h->nstreams == 0)
		(void)nghttp2_session_terminate_session(h->s, NGHTTP2_NO_ERROR);
}

void
h2_drain(struct worker_env *env)
{
	struct h2conn *h;

	TAILQ_FOREACH(h, &env->h2conns, link) {
		h2_drain_one(h);
		h2_flush(h);
	}
}

void
h2_close_all(struct worker_env *env)
{
	struct h2conn *h;

	while ((h = TAILQ_FIRST(&env->h2conns)) != NULL) {
		h->closing = true;
		h2conn_free(-1, 0, h);
	}
}

/* nghttp2's allocations (streams, header buffers, frames: several per
 * stream) through the worker's size-class lists, as libevent's are. */
static void *
h2_malloc(size_t n, void *ud)
{
	(void)ud;
	return (mem_alloc(n));
}

static void
h2_free(void *p, void *ud)
{
	(void)ud;
	mem_free(p);
}

static void *
h2_calloc(size_t nmemb, size_t size, void *ud)
{
	(void)ud;
	if (size != 0 && nmemb > SIZE_MAX / size)
		return (NULL);
	return (mem_zalloc(nmemb * size));
}

static void *
h2_realloc(void *p, size_t n, void *ud)
{
	(void)ud;
	return (mem_realloc(p, n));
}

static nghttp2_mem h2_mem = {
	.malloc = h2_malloc,
	.free = h2_free,
	.calloc = h2_calloc,
	.realloc = h2_realloc,
};

int
h2_start(struct worker_env *env, struct bufferevent *bev, const char *peer_ip,
    bool tls)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	struct h2conn *h;
	nghttp2_settings_entry iv[4];
	int rv;

	h = calloc(1, sizeof *h);
	if (h == NULL) {
		flush_detach(bev);
		bufferevent_free(bev);
		return (-1);
	}
	h->magic = H2CONN_MAGIC;
	h->env = env;
	h->bev = bev;
	h->tls = tls;
	snprintf(h->peer_ip, sizeof h->peer_ip, "%s", peer_ip);
	TAILQ_INIT(&h->streams);
	TAILQ_INIT(&h->dirty);
	if (nghttp2_session_callbacks_new(&cbs) != 0) {
		flush_detach(bev);
		bufferevent_free(bev);
		free(h);
		return (-1);
	}
	nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
	nghttp2_session_callbacks_set_send_data_callback(cbs, send_data_cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs,
	    on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback2(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
	    on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
	    on_stream_close);
	if (nghttp2_option_new(&opt) != 0) {
		nghttp2_session_callbacks_del(cbs);
		flush_detach(bev);
		bufferevent_free(bev);
		free(h);
		return (-1);
	}
	/* flow control follows our buffers (stream_consumed) */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	/* flood limits: queued SETTINGS/PING ACKs, SETTINGS entries */
	nghttp2_option_set_max_outbound_ack(opt, 1000);
	nghttp2_option_set_max_settings(opt, 32);
	nghttp2_option_set_max_send_header_block_length(opt, 64 * 1024);
	rv = nghttp2_session_server_new3(&h->s, cbs, h, opt, &h2_mem);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	if (rv == 0 && (h->pump = event_new(env->base, -1, 0, h2_pump, h)) == NULL) {
		nghttp2_session_del(h->s);
		rv = -1;
	}
	if (rv != 0) {
		flush_detach(bev);
		bufferevent_free(bev);
		free(h);
		return (-1);
	}
	iv[0] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
	    H2_MAX_STREAMS };
	iv[1] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
	    STOA_HIGH_WATER };
	iv[2] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
	    (uint32_t)env->cfg->limits.max_header_size };
	/* RFC 8441: WebSocket over HTTP/2 */
	iv[3] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL,
	    1 };
	(void)nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, ARRAY_SIZE(iv));
	/* a connection window to match several streams in flight */
	(void)nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0,
	    4 * STOA_HIGH_WATER);
	TAILQ_INSERT_TAIL(&env->h2conns, h, link);
	env->nh2conns++;
	stats_add(STAT_CONNECTIONS, 1);
	if (env->draining)
		h2_drain_one(h);
	bufferevent_setcb(bev, client_readcb, client_writecb, client_eventcb, h);
	bufferevent_setwatermark(bev, EV_WRITE, STOA_LOW_WATER, 0);
	bufferevent_set_timeouts(bev, &env->tv_client_idle, &env->tv_client_idle);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
		client_readcb(bev, h);
	else
		h2_flush(h);
	return (0);
}
