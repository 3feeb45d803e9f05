/*
 * proxy.c -- the request lifecycle; the only module that knows both the
 * client connection and the upstream.
 *
 *   proxy_start        route, limits, pick a server, queue the head
 *   proxy_client_read  request body: client input → upstream output
 *   up_readcb          response head, then body: upstream → client
 *   up_eventcb         connect, timeouts, failures (retry / 502 / 504)
 *
 * Bodies are re-framed, never passed through blindly: Content-Length
 * bodies are moved byte-exact, chunked bodies are decoded and re-encoded,
 * so nothing the peer put between chunks reaches the other side.  Data
 * moves between evbuffers with evbuffer_remove_buffer (chain moves, no
 * copies when whole chains go).  Backpressure: when the receiving side has
 * STOA_HIGH_WATER queued, reading from the sending side stops until the
 * write callback reports it drained to STOA_LOW_WATER.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "balance.h"
#include "cache/policy.h"
#include "config.h"
#include "conn.h"
#include "flush.h"
#include "hbuf.h"
#include "http1.h"
#include "log.h"
#include "proxy.h"
#include "router.h"
#include "stats.h"
#include "tunnel.h"
#include "upstream.h"
#include "util.h"
#include "vas.h"

#define MAX_STALE_RETRIES 2

static void proxy_connect(struct conn *c);
static void up_readcb(struct bufferevent *bev, void *arg);
static void up_writecb(struct bufferevent *bev, void *arg);
static void up_eventcb(struct bufferevent *bev, short what, void *arg);

static const struct config_route *
txn_route(const struct conn *c)
{
	return (&c->env->cfg->routes[c->txn.route]);
}

/* Is the decoder waiting for chunk data (c->left bytes)?  While a size
 * line is being parsed c->left holds the partial size, so ask the decoder. */
static bool
chunk_in_data(struct http1_chunked *c)
{
	size_t used;

	/* with no bytes the decoder only reports its state */
	return (http1_chunked_frame(c, "", 0, &used) == HTTP1_CHUNK_DATA);
}

/* ---- request head ---------------------------------------------------- */

/*
 * The Connection headers of a message (the hop-by-hop header names they
 * list), gathered once per message: before, each forwarded header looked
 * for them among all the headers again.  lens has bit L set when some
 * listed name is L bytes long (bit 63: 63 or longer), so most headers are
 * ruled out by their length alone.
 */
struct conn_opts {
	unsigned                  n;
	uint64_t                  lens;
	const struct http_header *v[HTTP_MAX_HEADERS];
};

static void
conn_opts_of(const struct http_msg *m, struct conn_opts *o)
{
	o->n = 0;
	o->lens = 0;
	for (unsigned i = 0; i < m->nhdr; i++) {
		const struct http_header *h = &m->hdr[i];
		const char *el;
		size_t pos = 0, n;

		if (h->name_len != 10 || strncasecmp(h->name, "Connection", 10))
			continue;
		o->v[o->n++] = h;
		while (http_list_next(h->value, h->value_len, &pos, &el, &n))
			o->lens |= (uint64_t)1 << (n < 63 ? n : 63);
	}
}

/* Is header h named by one of the Connection headers in o (hop-by-hop)? */
static bool
conn_named(const struct conn_opts *o, const struct http_header *h)
{
	if (!(o->lens & ((uint64_t)1 << (h->name_len < 63 ? h->name_len : 63))))
		return (false);
	for (unsigned i = 0; i < o->n; i++)
		if (http_list_has_n(o->v[i]->value, o->v[i]->value_len,
		    h->name, h->name_len))
			return (true);
	return (false);
}

#define NAME_IS(h, lit) ((h)->name_len == sizeof(lit) - 1 && \
	strncasecmp((h)->name, lit, sizeof(lit) - 1) == 0)

/* Headers never forwarded as received, in either direction. */
static bool
hop_by_hop(const struct http_header *h)
{
	switch (h->name_len) {
	case 2:
		return (NAME_IS(h, "TE"));
	case 7:
		return (NAME_IS(h, "Trailer") || NAME_IS(h, "Upgrade"));
	case 10:
		return (NAME_IS(h, "Connection") || NAME_IS(h, "Keep-Alive"));
	case 14:
		return (NAME_IS(h, "Content-Length"));
	case 16:
		return (NAME_IS(h, "Proxy-Connection"));
	case 17:
		return (NAME_IS(h, "Transfer-Encoding"));
	default:
		return (false);
	}
}

/*
 * Serialize the upstream request head into `out`.  Origin-form target;
 * hop-by-hop headers dropped; Host kept (or taken from an absolute-form
 * target); X-Forwarded-* set; body framing re-declared.  Returns -1 only
 * if the head cannot be reserved (out of memory).
 */
static int
build_request(struct conn *c, struct evbuffer *out)
{
	const struct http_msg *m = &c->req;
	struct conn_opts co;
	const char *xff[16];
	size_t xfflen[16];
	unsigned nxff = 0;
	bool have_host = false;
	struct hbuf b;

	/* the received head bounds everything we copy from it */
	if (hb_open(&b, out, m->head_len + strlen(c->peer_ip) + 512) != 0)
		return (-1);
	hb_add(&b, m->method, m->method_len);
	hb_lit(&b, " ");
	hb_add(&b, m->path, m->path_len);
	hb_lit(&b, " HTTP/1.1\r\n");
	conn_opts_of(m, &co);
	for (unsigned i = 0; i < m->nhdr; i++) {
		const struct http_header *h = &m->hdr[i];

		if (hop_by_hop(h))
			continue;
		switch (h->name_len) {
		case 4:
			if (NAME_IS(h, "Host")) {
				if (m->authority != NULL)
					continue;
				have_host = true;
			}
			break;
		case 6:
			if (NAME_IS(h, "Expect"))
				continue;       /* we answered 100-continue ourselves */
			break;
		case 15:
			if (NAME_IS(h, "X-Forwarded-For")) {
				if (nxff < ARRAY_SIZE(xff)) {
					xff[nxff] = h->value;
					xfflen[nxff++] = h->value_len;
				}
				continue;
			}
			break;
		case 16:
			if (NAME_IS(h, "X-Forwarded-Host"))
				continue;
			break;
		case 17:
			if (NAME_IS(h, "X-Forwarded-Proto"))
				continue;
			break;
		default:
			break;
		}
		if (co.n > 0 && conn_named(&co, h))
			continue;
		hb_hdr(&b, h->name, h->name_len, h->value, h->value_len);
	}
	if (m->authority != NULL) {
		hb_hdr(&b, "Host", 4, m->authority, m->authority_len);
		have_host = true;
	}
	if (!have_host) {
		/* HTTP/1.0 client without Host: name the upstream server */
		const char *a = c->env->cfg->upstreams[txn_route(c)->upstream].servers[0].text;

		hb_hdr(&b, "Host", 4, a, strlen(a));
	}
	if (c->txn.ws) {
		const struct http_header *u = http_find(m, "Upgrade");

		hb_lit(&b, "Connection: Upgrade\r\n");
		hb_hdr(&b, "Upgrade", 7, u->value, u->value_len);
	}
	hb_lit(&b, "X-Forwarded-For: ");
	for (unsigned i = 0; i < nxff; i++) {
		hb_add(&b, xff[i], xfflen[i]);
		hb_lit(&b, ", ");
	}
	hb_str(&b, c->peer_ip);
	if (c->tls)
		hb_lit(&b, "\r\nX-Forwarded-Proto: https\r\n");
	else
		hb_lit(&b, "\r\nX-Forwarded-Proto: http\r\n");
	if (m->host != NULL)
		hb_hdr(&b, "X-Forwarded-Host", 16, m->host, m->host_len);
	switch (m->body) {
	case HTTP_BODY_LENGTH:
		hb_lit(&b, "Content-Length: ");
		hb_u64(&b, m->content_length);
		hb_lit(&b, "\r\n");
		break;
	case HTTP_BODY_CHUNKED:
		hb_lit(&b, "Transfer-Encoding: chunked\r\n");
		break;
	default:
		break;
	}
	hb_lit(&b, "\r\n");
	/* cannot overflow: every piece is bounded by head_len or above */
	return (hb_close(&b));
}

/* ---- failures -------------------------------------------------------- */

static int
server_slot(const struct conn *c, const struct upconn *uc)
{
	return (c->env->server_slots != NULL ?
	    c->env->server_slots[uc->up][uc->srv] : -1);
}

/* Passive health: count a failure of uc's server, publish its state. */
static void
proxy_server_failed(struct conn *c, const struct upconn *uc)
{
	struct worker_env *env = c->env;
	int slot = server_slot(c, uc);

	balance_fail(env->bal, uc->up, uc->srv, util_now_ms());
	if (slot < 0)
		return;
	stats_slot_add(slot, SLOT_FAILURES, 1);
	if (!balance_is_up(env->bal, uc->up, uc->srv, util_now_ms()))
		stats_slot_set(slot, SLOT_DOWN_UNTIL, (int64_t)(util_epoch_ms() +
		    env->cfg->upstreams[uc->up].fail_timeout));
}

static void
proxy_server_ok(struct conn *c, const struct upconn *uc)
{
	int slot = server_slot(c, uc);

	balance_ok(c->env->bal, uc->up, uc->srv);
	if (slot >= 0)
		stats_slot_set(slot, SLOT_DOWN_UNTIL, 0);
}

/* Drop the upstream connection of the request (not reusable). */
static void
txn_release_upstream(struct conn *c, bool reusable)
{
	struct txn *t = &c->txn;
	struct upconn *uc = t->uc;

	if (uc == NULL)
		return;
	t->uc = NULL;
	t->t_upstream_done = util_now_ms();
	balance_dec(c->env->bal, uc->up, uc->srv);
	upstream_put(uc, reusable, t->t_upstream_done);
}

/*
 * The request cannot be completed.  Before the response head went out the
 * client gets `status`; after it, the only honest signal is to close the
 * connection without finishing the body.
 */
static void
txn_fail(struct conn *c, int status)
{
	struct txn *t = &c->txn;

	txn_release_upstream(c, false);
	if (pcache_fail(c))
		return;
	if (t->head_sent) {
		t->status = t->status ? t->status : status;
		t->close_after = true;
		c->state = CS_CLOSING;
		/* log, then close once what we have is flushed */
		conn_request_done(c);
		return;
	}
	conn_send_error(c, status, !t->req_body.done);
}

/* ---- request body: client → upstream ---------------------------------- */

/* Move n body bytes from the client to the upstream (and the replay copy). */
static void
move_req_bytes(struct conn *c, struct evbuffer *in, struct evbuffer *out,
    size_t n)
{
	struct txn *t = &c->txn;

	if (t->replayable) {
		if (evbuffer_get_length(t->replay) + n <= STOA_REPLAY_MAX) {
			const unsigned char *p = evbuffer_pullup(in, (ssize_t)n);

			if (p != NULL)
				evbuffer_add(t->replay, p, n);
			else
				t->replayable = false;
		} else
			t->replayable = false;
		if (!t->replayable)
			evbuffer_drain(t->replay, evbuffer_get_length(t->replay));
	}
	evbuffer_remove_buffer(in, out, n);
}

/* Queue framing bytes to the upstream (and the replay copy). */
static void
add_req_frame(struct conn *c, struct evbuffer *out, const char *p, size_t n)
{
	evbuffer_add(out, p, n);
	if (c->txn.replayable)
		evbuffer_add(c->txn.replay, p, n);
}

/* Request body fully queued: stop reading the client, arm upstream_read. */
static void
req_body_complete(struct conn *c)
{
	struct txn *t = &c->txn;

	t->req_body.done = true;
	t->req_sent = true;
	/* Client reading stays on (an EOF aborts the request, as nginx
	 * does); pipelined bytes wait in the input buffer, bounded by its
	 * high watermark (conn_setup). */
	if (t->uc != NULL && t->uc->connected)
		upstream_timeouts(t->uc, &c->env->tv_upstream_read,
		    &c->env->tv_upstream_read);
}

void
proxy_client_read(struct conn *c)
{
	struct txn *t = &c->txn;
	struct body_state *b = &t->req_body;
	struct evbuffer *in = c->in;
	struct evbuffer *out;
	uint64_t max_body = c->env->cfg->limits.max_body_size;
	size_t len, n, used;
	char hdr[32];
	int rc;

	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	if (c->state != CS_PROXY || b->done || t->uc == NULL)
		return;
	out = bufferevent_get_output(t->uc->bev);
	while (!b->done && (len = evbuffer_get_length(in)) > 0) {
		if (b->mode == HTTP_BODY_LENGTH) {
			n = len < b->left ? len : (size_t)b->left;
			move_req_bytes(c, in, out, n);
			b->left -= n;
			b->total += n;
			if (b->left == 0)
				b->done = true;
		} else if (chunk_in_data(&b->chunk)) {
			n = len < b->chunk.left ? len : (size_t)b->chunk.left;
			if (b->total + n > max_body) {
				txn_fail(c, 413);
				return;
			}
			move_req_bytes(c, in, out, n);
			http1_chunked_data(&b->chunk, n);
			b->total += n;
			if (b->chunk.left == 0)
				add_req_frame(c, out, "\r\n", 2);
		} else {
			const char *p;

			n = len < 4200 ? len : 4200;
			p = (const char *)evbuffer_pullup(in, (ssize_t)n);
			rc = http1_chunked_frame(&b->chunk, p, n, &used);
			evbuffer_drain(in, used);
			switch (rc) {
			case HTTP1_CHUNK_DATA:
				if (b->total + b->chunk.left > max_body) {
					txn_fail(c, 413);
					return;
				}
				add_req_frame(c, out, hdr, (size_t)snprintf(hdr,
				    sizeof hdr, "%llx\r\n",
				    (unsigned long long)b->chunk.left));
				break;
			case HTTP1_CHUNK_DONE:
				add_req_frame(c, out, "0\r\n\r\n", 5);
				b->done = true;
				break;
			case HTTP1_CHUNK_ERROR:
				log_debug("client %s: bad chunked body", c->peer_ip);
				txn_fail(c, 400);
				return;
			default:
				break;
			}
		}
	}
	if (b->done) {
		req_body_complete(c);
		return;
	}
	if (evbuffer_get_length(out) >= STOA_HIGH_WATER)
		conn_read_pause(c);
}

/* ---- start ----------------------------------------------------------- */

void
proxy_start(struct conn *c)
{
	struct worker_env *env = c->env;
	const struct config *cfg = env->cfg;
	const struct http_msg *m = &c->req;
	struct txn *t = &c->txn;
	const char *host;
	size_t host_len;
	int r;

	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	t->meth = m->meth;
	t->req_body.mode = m->body;
	t->req_body.done = (m->body == HTTP_BODY_NONE ||
	    (m->body == HTTP_BODY_LENGTH && m->content_length == 0));
	t->req_body.left = m->content_length;
	http1_chunked_init(&t->req_body.chunk);

	host = m->authority != NULL ? m->authority : m->host;
	host_len = m->authority != NULL ? m->authority_len : m->host_len;
	r = router_match(env->router, host, host_len, m->path, m->path_len);
	if (r == ROUTER_BAD_PATH) {
		conn_send_error(c, 400, true);
		return;
	}
	if (r < 0) {
		conn_send_error(c, 404, !t->req_body.done);
		return;
	}
	t->route = r;
	if (m->upgrade) {
		const struct http_header *u = http_find(m, "Upgrade");

		if (u != NULL && http_list_has_n(u->value, u->value_len, "websocket", 9)) {
			if (!cfg->routes[r].websocket) {
				conn_send_error(c, 403, !t->req_body.done);
				return;
			}
			if (m->body != HTTP_BODY_NONE) {
				/* a handshake has no body (RFC 6455 §4.1) */
				conn_send_error(c, 400, true);
				return;
			}
			t->ws = true;
		}
	}
	if (m->body == HTTP_BODY_LENGTH && m->content_length > cfg->limits.max_body_size) {
		conn_send_error(c, 413, true);
		return;
	}
	/* an upgrade is tunnelled, never answered from or stored in the cache */
	if (cfg->routes[r].cache && env->store != NULL && !t->ws) {
		pcache_request(c);
		return;
	}
	proxy_forward(c);
}

/* Send the request (head, then its body as it arrives) upstream. */
void
proxy_forward(struct conn *c)
{
	const struct http_msg *m = &c->req;
	struct txn *t = &c->txn;

	if (m->expect_continue && !t->req_body.done && m->minor == 1)
		evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	t->replayable = http_method_idempotent(m->meth) &&
	    (m->body != HTTP_BODY_LENGTH || m->content_length <= STOA_REPLAY_MAX);
	if (build_request(c, t->replay) != 0) {
		conn_send_error(c, 500, true);
		return;
	}
	proxy_connect(c);
}

/* Pick a server, get a connection, queue what we have of the request. */
static void
proxy_connect(struct conn *c)
{
	struct worker_env *env = c->env;
	struct txn *t = &c->txn;
	const struct config_route *rt = txn_route(c);
	struct upconn *uc;
	struct evbuffer *out;
	const char *err = NULL;
	uint64_t now = util_now_ms();
	int s;

	s = balance_pick(env->bal, rt->upstream, c->req.path, c->req.path_len,
	    t->failed_server, now);
	if (s < 0) {
		txn_fail(c, t->retried ? 502 : 503);
		return;
	}
	uc = upstream_get(env->pools, rt->upstream, (unsigned)s, now, &err);
	if (uc == NULL) {
		log_err("upstream %s: %s",
		    env->cfg->upstreams[rt->upstream].servers[s].text, err);
		txn_fail(c, 502);
		return;
	}
	t->uc = uc;
	t->server = s;
	t->resp_started = false;
	balance_inc(env->bal, uc->up, uc->srv);
	if (server_slot(c, uc) >= 0)
		stats_slot_add(server_slot(c, uc), SLOT_REQUESTS, 1);
	t->up_addr = upconn_addr(uc);
	bufferevent_setcb(uc->bev, up_readcb, up_writecb, up_eventcb, c);
	bufferevent_setwatermark(uc->bev, EV_WRITE, STOA_LOW_WATER, 0);
	if (uc->connected) {
		/* with the body complete, req_body_complete() sets them */
		if (!t->req_body.done)
			upstream_timeouts(uc, NULL, &env->tv_upstream_read);
	} else
		upstream_timeouts(uc, NULL, &env->tv_upstream_connect);
	/* a connected one is flush-attached (see up_eventcb): its writes
	 * need no write event; a connecting one waits on it.  A pooled one
	 * reads already (upstream_put): enabling it again would only re-arm
	 * its read event. */
	if (!uc->connected)
		bufferevent_enable(uc->bev, EV_READ | EV_WRITE);
	else if (!(bufferevent_get_enabled(uc->bev) & EV_READ))
		bufferevent_enable(uc->bev, EV_READ);

	out = bufferevent_get_output(uc->bev);
	if (t->replayable) {
		/* keep our copy for a retry */
		size_t n = evbuffer_get_length(t->replay);

		evbuffer_add(out, evbuffer_pullup(t->replay, (ssize_t)n), n);
	} else
		evbuffer_add_buffer(out, t->replay);
	if (t->t_upstream == 0)
		t->t_upstream = now;
	if (t->req_body.done)
		req_body_complete(c);
	else {
		conn_read_resume(c);
		proxy_client_read(c);
	}
}

/*
 * The upstream connection failed before any response byte.  Retry an
 * idempotent request once on another server; a pooled connection that
 * the server had closed is retried without using up that one retry.
 */
static void
proxy_retry_or_fail(struct conn *c, bool stale, int status)
{
	struct txn *t = &c->txn;
	struct upconn *uc = t->uc;

	if (!t->replayable || (!stale && t->retried) ||
	    (stale && t->stale_retries >= MAX_STALE_RETRIES)) {
		txn_fail(c, status);
		return;
	}
	if (stale)
		t->stale_retries++;
	else {
		t->retried = true;
		t->failed_server = (int)uc->srv;
	}
	log_info("upstream %s failed before responding; retrying %.*s",
	    upconn_addr(uc), (int)c->req.path_len, c->req.path);
	txn_release_upstream(c, false);
	proxy_connect(c);
}

/* ---- response: upstream → client -------------------------------------- */

static int
build_response(struct conn *c, const struct http_msg *r, struct evbuffer *out)
{
	struct txn *t = &c->txn;
	struct conn_opts co;
	struct hbuf b;

	if (hb_open(&b, out, r->head_len + 256) != 0)
		return (-1);
	conn_opts_of(r, &co);
	hb_lit(&b, "HTTP/1.1 ");
	hb_u64(&b, (uint64_t)r->status);
	hb_lit(&b, " ");
	if (r->reason_len > 0)
		hb_add(&b, r->reason, r->reason_len);
	else
		hb_str(&b, http_reason(r->status));
	hb_lit(&b, "\r\n");
	for (unsigned i = 0; i < r->nhdr; i++) {
		const struct http_header *h = &r->hdr[i];

		if (hop_by_hop(h) && !NAME_IS(h, "Content-Length"))
			continue;
		if (NAME_IS(h, "Content-Length") && r->body != HTTP_BODY_LENGTH &&
		    r->body != HTTP_BODY_NONE)
			continue;
		if (co.n > 0 && conn_named(&co, h))
			continue;
		if (t->cache_st != CACHE_ST_NONE && (NAME_IS(h, "Surrogate-Key") ||
		    NAME_IS(h, "X-Cache")))
			continue;
		hb_hdr(&b, h->name, h->name_len, h->value, h->value_len);
	}
	if (t->cache_st != CACHE_ST_NONE) {
		hb_lit(&b, "X-Cache: ");
		hb_str(&b, policy_xcache((enum cache_status)t->cache_st));
		hb_lit(&b, "\r\n");
	}
	if (r->status == 101) {
		const struct http_header *u = http_find(r, "Upgrade");

		hb_hdr(&b, "Upgrade", 7, u->value, u->value_len);
		hb_lit(&b, "Connection: Upgrade\r\n\r\n");
		return (hb_close(&b));
	}
	if (t->chunk_out)
		hb_lit(&b, "Transfer-Encoding: chunked\r\n");
	if (t->close_after || !c->keep_alive || c->env->draining)
		hb_lit(&b, "Connection: close\r\n\r\n");
	else if (c->req.minor == 0)
		hb_lit(&b, "Connection: keep-alive\r\n\r\n");
	else
		hb_lit(&b, "\r\n");
	return (hb_close(&b));
}

/* The response is complete: give back the upstream, finish the request. */
static void
proxy_finish(struct conn *c, bool up_reusable)
{
	struct txn *t = &c->txn;

	if (!t->req_body.done) {
		/* The upstream answered before the body was all sent (e.g.
		 * its own 413): the rest of the body is unread, so neither
		 * connection can carry another request. */
		up_reusable = false;
		t->close_after = true;
	}
	proxy_server_ok(c, t->uc);
	txn_release_upstream(c, up_reusable);
	pcache_finish(c, true);
	conn_request_done(c);
}

/* Move response body bytes; returns true when the body is complete. */
static bool
proxy_resp_body(struct conn *c, struct evbuffer *in, struct evbuffer *out,
    int *err)
{
	struct txn *t = &c->txn;
	struct body_state *b = &t->resp_body;
	size_t len, n, used;
	char hdr[32];
	int rc;

	*err = 0;
	while (!b->done && (len = evbuffer_get_length(in)) > 0) {
		switch (b->mode) {
		case HTTP_BODY_LENGTH:
			n = len < b->left ? len : (size_t)b->left;
			pcache_body(c, in, n);
			evbuffer_remove_buffer(in, out, n);
			b->left -= n;
			b->total += n;
			if (b->left == 0)
				b->done = true;
			break;
		case HTTP_BODY_EOF:
			pcache_body(c, in, len);
			if (t->chunk_out) {
				evbuffer_add_printf(out, "%zx\r\n", len);
				evbuffer_remove_buffer(in, out, len);
				evbuffer_add(out, "\r\n", 2);
			} else
				evbuffer_remove_buffer(in, out, len);
			b->total += len;
			break;
		case HTTP_BODY_CHUNKED:
			if (chunk_in_data(&b->chunk)) {
				n = len < b->chunk.left ? len : (size_t)b->chunk.left;
				pcache_body(c, in, n);
				evbuffer_remove_buffer(in, out, n);
				http1_chunked_data(&b->chunk, n);
				b->total += n;
				if (b->chunk.left == 0 && t->chunk_out)
					evbuffer_add(out, "\r\n", 2);
				break;
			} else {
				const char *p;

				n = len < 4200 ? len : 4200;
				p = (const char *)evbuffer_pullup(in, (ssize_t)n);
				rc = http1_chunked_frame(&b->chunk, p, n, &used);
				evbuffer_drain(in, used);
				if (rc == HTTP1_CHUNK_DATA && t->chunk_out)
					evbuffer_add(out, hdr, (size_t)snprintf(hdr,
					    sizeof hdr, "%llx\r\n",
					    (unsigned long long)b->chunk.left));
				else if (rc == HTTP1_CHUNK_DONE)
					b->done = true;
				else if (rc == HTTP1_CHUNK_ERROR) {
					*err = 1;
					return (false);
				}
			}
			break;
		default:
			b->done = true;
			break;
		}
	}
	if (b->done && t->chunk_out && b->mode != HTTP_BODY_LENGTH)
		evbuffer_add(out, "0\r\n\r\n", 5);
	t->bytes_out = b->total;
	return (b->done);
}

/* Parse the response head.  Returns 1 when done, 0 for more, -1 failed. */
static int
proxy_resp_head(struct conn *c, struct evbuffer *in)
{
	struct txn *t = &c->txn;
	struct http_msg r;
	struct http1_err err;
	size_t len, n, max_head = (size_t)c->env->cfg->limits.max_header_size;
	const char *p;
	ssize_t rc;

	for (;;) {
		len = evbuffer_get_length(in);
		if (len == 0)
			return (0);
		t->resp_started = true;
		n = len < max_head ? len : max_head;
		p = (const char *)evbuffer_pullup(in, (ssize_t)n);
		rc = http1_parse_response(p, n, max_head, t->meth, &r, &err);
		if (rc == HTTP1_AGAIN)
			return (0);
		if (rc < 0) {
			log_warn("upstream %s: invalid response: %s", t->up_addr,
			    err.reason);
			return (-1);
		}
		if (r.status >= 100 && r.status < 200) {
			if (r.status == 101) {
				if (!t->ws || http_find(&r, "Upgrade") == NULL) {
					log_warn("upstream %s: unexpected 101",
					    t->up_addr);
					return (-1);
				}
				t->status = 101;
				if (build_response(c, &r, c->out) != 0)
					return (-1);
				evbuffer_drain(in, (size_t)rc);
				t->head_sent = true;
				return (2);
			}
			evbuffer_drain(in, (size_t)rc);
			continue;       /* interim response: skip it */
		}
		break;
	}
	if (r.body == HTTP_BODY_CHUNKED) {
		const struct http_header *te = http_find(&r, "Transfer-Encoding");

		/* We re-frame the body; a coding under "chunked" (gzip,
		 * chunked) would reach the client undeclared. */
		if (te != NULL && !util_tok_eq(te->value, te->value_len, "chunked")) {
			log_warn("upstream %s: unsupported transfer coding '%.*s'",
			    t->up_addr, (int)te->value_len, te->value);
			return (-1);
		}
	}
	if (pcache_response(c, &r) == 1) {
		/* a 5xx while we hold an entry for stale_if_error */
		log_info("upstream %s answered %d: serving the stale entry",
		    t->up_addr, r.status);
		return (-2);
	}
	t->status = r.status;
	t->resp_body.mode = r.body;
	t->resp_body.left = r.content_length;
	http1_chunked_init(&t->resp_body.chunk);
	t->up_keepalive = r.keep_alive && r.body != HTTP_BODY_EOF;
	switch (r.body) {
	case HTTP_BODY_NONE:
		t->resp_body.done = true;
		break;
	case HTTP_BODY_LENGTH:
		t->resp_body.done = (r.content_length == 0);
		break;
	case HTTP_BODY_CHUNKED:
	case HTTP_BODY_EOF:
		if (c->req.minor == 1)
			t->chunk_out = true;
		else
			t->close_after = true;
		break;
	}
	if (build_response(c, &r, c->out) != 0)
		return (-1);
	evbuffer_drain(in, (size_t)rc);
	t->head_sent = true;
	return (1);
}

/*
 * The upstream switched protocols: the 101 is queued to the client; hand
 * both sockets to a tunnel and retire the connection and the upconn.
 */
static void
proxy_tunnel(struct conn *c)
{
	struct worker_env *env = c->env;
	struct txn *t = &c->txn;
	struct upconn *uc = t->uc;
	struct bufferevent *up, *cl;

	proxy_server_ok(c, uc);
	balance_dec(env->bal, uc->up, uc->srv);
	t->uc = NULL;
	t->t_upstream_done = util_now_ms();
	bufferevent_setcb(uc->bev, NULL, NULL, NULL, NULL);
	up = upstream_detach(uc);
	cl = conn_detach(c);
	(void)tunnel_start(env, cl, up, env->route_slots != NULL ?
	    env->route_slots[t->route] : -1);
}

static void
up_readcb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct txn *t = &c->txn;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer *out;
	int rc, err;

	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	if (!t->head_sent) {
		rc = proxy_resp_head(c, in);
		if (rc == 0)
			return;
		if (rc == 2) {
			proxy_tunnel(c);
			return;
		}
		if (rc == -2) {
			txn_fail(c, 502);       /* pcache_fail serves the entry */
			return;
		}
		if (rc < 0) {
			proxy_server_failed(c, t->uc);
			txn_fail(c, 502);
			return;
		}
	}
	out = c->out;
	if (proxy_resp_body(c, in, out, &err)) {
		proxy_finish(c, t->up_keepalive && evbuffer_get_length(in) == 0);
		return;
	}
	if (err) {
		log_warn("upstream %s: invalid chunked body", t->up_addr);
		txn_fail(c, 502);
		return;
	}
	if (evbuffer_get_length(out) >= STOA_HIGH_WATER)
		bufferevent_disable(bev, EV_READ);
}

/* Upstream output drained: resume reading the request body. */
static void
up_writecb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	if (c->state == CS_PROXY && !c->txn.req_body.done) {
		conn_read_resume(c);
		proxy_client_read(c);
	}
}

/* Client output drained: resume reading the response body. */
void
proxy_client_drained(struct conn *c)
{
	struct txn *t = &c->txn;

	if (t->uc == NULL || !t->head_sent)
		return;
	bufferevent_enable(t->uc->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_input(t->uc->bev)) > 0)
		up_readcb(t->uc->bev, c);
}

static void
up_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	struct worker_env *env = c->env;
	struct txn *t = &c->txn;
	struct upconn *uc = t->uc;
	int err;

	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	CHECK_OBJ_NOTNULL(uc, UPCONN_MAGIC);
	if (what & BEV_EVENT_CONNECTED) {
		uc->connected = true;
		upstream_timeouts(uc,
		    t->req_body.done ? &env->tv_upstream_read : NULL,
		    &env->tv_upstream_read);
		/* from now on for its whole life (pooled too): writes go
		 * out at the end of the loop turn, EPOLLOUT only for what
		 * the socket refuses */
		flush_attach(bev);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		log_warn("upstream %s: %s timed out", t->up_addr,
		    !uc->connected ? "connect" : "read");
		proxy_server_failed(c, uc);
		txn_fail(c, 504);
		return;
	}
	/* EOF or error */
	if (t->head_sent && t->resp_body.mode == HTTP_BODY_EOF) {
		/* end of a close-delimited body: flush what is left */
		(void)proxy_resp_body(c, bufferevent_get_input(bev), c->out,
		    &err);
		t->resp_body.done = true;
		if (t->chunk_out)
			evbuffer_add(c->out, "0\r\n\r\n", 5);
		proxy_finish(c, false);
		return;
	}
	if (t->head_sent) {
		/* pass on what arrived, then cut the client off */
		(void)proxy_resp_body(c, bufferevent_get_input(bev), c->out,
		    &err);
		if (t->resp_body.done) {
			proxy_finish(c, false);
			return;
		}
		log_warn("upstream %s closed the connection mid-response",
		    t->up_addr);
		txn_fail(c, 502);
		return;
	}
	if (!t->resp_started &&
	    evbuffer_get_length(bufferevent_get_input(bev)) == 0) {
		bool stale = uc->reused && uc->connected;

		if (!stale) {
			log_warn("upstream %s: %s", t->up_addr, uc->connected ?
			    "connection closed before the response" :
			    "connection failed");
			proxy_server_failed(c, uc);
		}
		proxy_retry_or_fail(c, stale, 502);
		return;
	}
	log_warn("upstream %s: connection closed inside the response head",
	    t->up_addr);
	proxy_server_failed(c, uc);
	txn_fail(c, 502);
}

void
proxy_abort(struct conn *c)
{
	txn_release_upstream(c, false);
}
