/*
 * conn.c -- the client side of a connection: accept, request heads,
 * keep-alive and pipelining, timeouts, stoa-generated responses, the access
 * log, and deferred freeing.  proxy.c takes over once a head is parsed.
 *
 * Pipelining: one request is processed at a time.  While it is in flight
 * client reading stays disabled once its body is complete, so pipelined
 * bytes wait in the kernel and in our input buffer, and a flood of them
 * cannot grow memory.  The next head is parsed from a deferred callback so
 * that a run of pipelined requests never recurses.
 */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>

#include "cache/policy.h"
#include "config.h"
#include "flush.h"
#include "conn.h"
#include "h2.h"
#include "http1.h"
#include "log.h"
#include "mem.h"
#include "stats.h"
#include "tls.h"
#include "util.h"
#include "vas.h"

static void conn_readcb(struct bufferevent *bev, void *arg);
static void conn_writecb(struct bufferevent *bev, void *arg);
static void conn_eventcb(struct bufferevent *bev, short what, void *arg);
static void conn_hdr_timeout(evutil_socket_t fd, short what, void *arg);
static void conn_access_log(struct conn *c);
static void conn_count(const struct conn *c);

/*
 * Lingering close (as nginx and Apache do): everything we wanted to send is
 * queued in the kernel; shut the write side and read and discard until the
 * client closes or tv_linger passes.  Closing at once while unread request
 * bytes sit in our receive queue would make the kernel send a reset that
 * can destroy the response before the client reads it.
 */
static void
conn_linger(struct conn *c)
{
	struct evbuffer *in = c->in;

	if (c->bev == NULL || bufferevent_getfd(c->bev) < 0) {
		conn_close(c);          /* a stream or a bufferevent pair:
					 * nothing to linger on */
		return;
	}
	c->state = CS_LINGER;
	(void)shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_disable(c->bev, EV_WRITE);
	bufferevent_set_timeouts(c->bev, &c->env->tv_linger, NULL);
	bufferevent_enable(c->bev, EV_READ);
}

static void
txn_reset(struct txn *t)
{
	struct evbuffer *replay = t->replay;

	memset(t, 0, sizeof *t);
	t->replay = replay;
	if (replay != NULL)
		evbuffer_drain(replay, evbuffer_get_length(replay));
	t->route = -1;
	t->server = -1;
	t->failed_server = -1;
	t->up_addr = "-";
}

/* Common part of every conn: state, lists; with a bufferevent, its
 * callbacks and buffers.  write: enable EV_WRITE (not for sockets flush.c
 * writes for). */
static void
conn_setup(struct worker_env *env, struct conn *c, bool write)
{
	txn_reset(&c->txn);
	c->state = CS_HEAD;
	TAILQ_INSERT_TAIL(&env->conns, c, link);
	env->nconns++;
	if (c->bev == NULL)
		return;
	c->in = bufferevent_get_input(c->bev);
	c->out = bufferevent_get_output(c->bev);
	bufferevent_setcb(c->bev, conn_readcb, conn_writecb, conn_eventcb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, STOA_LOW_WATER, 0);
	/* what a client may have queued (pipelining) while a request is in
	 * flight: a head and some */
	bufferevent_setwatermark(c->bev, EV_READ, 0,
	    (size_t)env->cfg->limits.max_header_size + STOA_LOW_WATER);
	bufferevent_enable(c->bev, write ? EV_READ | EV_WRITE : EV_READ);
}

static void
peer_ip_of(const struct sockaddr *sa, char *out, size_t len)
{
	char buf[64], *e;

	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) {
		snprintf(out, len, "unix");
		return;
	}
	util_addr_str(sa, buf, sizeof buf);
	/* strip the port (and IPv6 brackets) for X-Forwarded-For */
	e = strrchr(buf, ':');
	if (e != NULL)
		*e = '\0';
	if (buf[0] == '[') {
		buf[strlen(buf) - 1] = '\0';
		snprintf(out, len, "%s", buf + 1);
	} else
		snprintf(out, len, "%s", buf);
}

/* A conn owning bev (NULL: a stream's), with its timer and replay buffer;
 * NULL (bev freed) when out of memory.  The caller finishes it with
 * conn_setup(). */
static struct conn *
conn_alloc(struct worker_env *env, struct bufferevent *bev)
{
	struct conn *c;

	/* zeroed but for the request's header array (3 KB, most of the
	 * conn, and allocated per HTTP/2 stream): the parser writes the
	 * entries nhdr counts */
	c = mem_alloc(sizeof *c);
	if (c == NULL) {
		if (bev != NULL)
			bufferevent_free(bev);
		return (NULL);
	}
	static_assert(offsetof(struct http_msg, nhdr) ==
	    offsetof(struct http_msg, hdr) + sizeof c->req.hdr,
	    "nhdr follows hdr[]");
	memset(c, 0, offsetof(struct conn, req.hdr));
	memset(&c->req.nhdr, 0, sizeof *c - offsetof(struct conn, req.nhdr));
	c->magic = CONN_MAGIC;
	c->env = env;
	c->bev = bev;
	c->hdr_timer = evtimer_new(env->base, conn_hdr_timeout, c);
	c->txn.replay = evbuffer_new();
	if (c->hdr_timer == NULL || c->txn.replay == NULL) {
		if (bev != NULL)
			bufferevent_free(bev);
		if (c->hdr_timer != NULL)
			event_free(c->hdr_timer);
		if (c->txn.replay != NULL)
			evbuffer_free(c->txn.replay);
		mem_free(c);
		return (NULL);
	}
	return (c);
}

/* A conn around an existing client bufferevent (plain or TLS). */
static struct conn *
conn_new_bev(struct worker_env *env, struct bufferevent *bev,
    const struct sockaddr *sa, int salen, bool tls, bool flushed)
{
	struct conn *c;

	c = conn_alloc(env, bev);
	if (c == NULL)
		return (NULL);
	c->tls = tls;
	if (salen > 0 && (size_t)salen <= sizeof c->peer)
		memcpy(&c->peer, sa, (size_t)salen);
	peer_ip_of(sa, c->peer_ip, sizeof c->peer_ip);
	bufferevent_set_timeouts(c->bev,
	    env->draining ? &env->tv_drain_linger : &env->tv_client_idle,
	    &env->tv_client_idle);
	conn_setup(env, c, !flushed);
	if (flushed)
		flush_attach(bev);
	stats_add(STAT_CONNECTIONS, 1);
	return (c);
}

struct conn *
conn_new(struct worker_env *env, int fd, const struct sockaddr *sa, int salen)
{
	struct bufferevent *bev;
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	bev = bufferevent_socket_new(env->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		return (NULL);
	}
	return (conn_new_bev(env, bev, sa, salen, false, true));
}

struct conn *
conn_new_tls(struct worker_env *env, struct bufferevent *bev,
    const struct sockaddr *sa, int salen)
{
	return (conn_new_bev(env, bev, sa, salen, true, false));
}

static void
conn_set_peer_ip(struct conn *c, const char *peer_ip)
{
	size_t n = strnlen(peer_ip, sizeof c->peer_ip - 1);

	memcpy(c->peer_ip, peer_ip, n);
	c->peer_ip[n] = '\0';
}

/* An HTTP/2 stream's conn: over bev (a pair's end), or over in and out. */
static struct conn *
conn_new_h2(struct worker_env *env, struct bufferevent *bev,
    struct evbuffer *in, struct evbuffer *out, const char *peer_ip, bool tls,
    void (*on_close)(void *), void *arg)
{
	struct conn *c;

	c = conn_alloc(env, bev);
	if (c == NULL)
		return (NULL);
	c->in = in;             /* with a bev, conn_setup() sets its own */
	c->out = out;
	c->h2 = true;
	c->tls = tls;
	c->on_close = on_close;
	c->on_close_arg = arg;
	conn_set_peer_ip(c, peer_ip);
	conn_setup(env, c, true);
	return (c);
}

struct conn *
conn_new_stream(struct worker_env *env, struct bufferevent *bev,
    const char *peer_ip, bool tls, void (*on_close)(void *), void *arg)
{
	return (conn_new_h2(env, bev, NULL, NULL, peer_ip, tls, on_close, arg));
}

struct conn *
conn_new_h2stream(struct worker_env *env, struct evbuffer *in,
    struct evbuffer *out, const char *peer_ip, bool tls,
    void (*on_close)(void *), void *arg)
{
	return (conn_new_h2(env, NULL, in, out, peer_ip, tls, on_close, arg));
}

struct conn *
conn_new_internal(struct worker_env *env, struct bufferevent *bev,
    const char *peer_ip)
{
	struct conn *c;

	c = conn_alloc(env, bev);
	if (c == NULL)
		return (NULL);
	c->internal = true;
	conn_set_peer_ip(c, peer_ip);
	conn_setup(env, c, true);
	return (c);
}

void
conn_close(struct conn *c)
{
	struct worker_env *env;

	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	if (c->state == CS_DEAD)
		return;
	env = c->env;
	if (c->txn.uc != NULL)
		proxy_abort(c);
	pcache_txn_end(c);
	c->state = CS_DEAD;
	if (c->on_close != NULL) {
		void (*fn)(void *) = c->on_close;

		c->on_close = NULL;
		fn(c->on_close_arg);
	}
	if (c->bev != NULL) {
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
		bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	} else
		c->in = c->out = NULL;  /* the stream's: h2.c keeps them */
	evtimer_del(c->hdr_timer);
	TAILQ_REMOVE(&env->conns, c, link);
	TAILQ_INSERT_TAIL(&env->graveyard, c, link);
	env->nconns--;
	if (!c->internal && !c->h2)
		stats_add(STAT_CONNECTIONS, -1);
	event_active(env->reaper, EV_TIMEOUT, 0);
}

void
conn_reap(struct worker_env *env)
{
	struct conn *c;

	struct conn *next;

	for (c = TAILQ_FIRST(&env->graveyard); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->pending > 0)
			continue;       /* a store callback will still come */
		TAILQ_REMOVE(&env->graveyard, c, link);
		if (c->bev != NULL) {
			flush_detach(c->bev);
			bufferevent_free(c->bev);
		}
		if (c->partner != NULL)
			bufferevent_free(c->partner);
		event_free(c->hdr_timer);
		evbuffer_free(c->txn.replay);
		pcache_conn_free(c);
		free(c->head);
		c->magic = 0;
		mem_free(c);
	}
	if (env->on_conn_freed != NULL)
		env->on_conn_freed(env);
}

struct bufferevent *
conn_detach(struct conn *c)
{
	struct bufferevent *bev;

	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	AZ(c->txn.uc);
	conn_count(c);
	conn_access_log(c);
	bev = c->bev;
	conn_close(c);
	c->bev = NULL;
	c->in = c->out = NULL;
	return (bev);
}

/* The worker stops: finish what is in flight, close what is idle soon. */
void
conn_drain(struct conn *c)
{
	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	switch (c->state) {
	case CS_HEAD:
		if (c->bev != NULL && evbuffer_get_length(c->in) == 0 &&
		    !c->hdr_timing)
			bufferevent_set_timeouts(c->bev, &c->env->tv_drain_linger,
			    &c->env->tv_client_idle);
		break;
	case CS_PROXY:
		c->txn.close_after = true;
		break;
	default:
		break;
	}
}

/* Move every view in m from buffer `from` to buffer `to` (same layout). */
static void
msg_rebase(struct http_msg *m, const char *from, const char *to)
{
#define REBASE(p) do { if ((p) != NULL) (p) = to + ((p) - from); } while (0)
	REBASE(m->method);
	REBASE(m->target);
	REBASE(m->path);
	REBASE(m->authority);
	REBASE(m->reason);
	REBASE(m->host);
	for (unsigned i = 0; i < m->nhdr; i++) {
		REBASE(m->hdr[i].name);
		REBASE(m->hdr[i].value);
	}
#undef REBASE
}

/* The client speaks HTTP/2: hand its socket to h2.c. */
static void
conn_to_h2(struct conn *c)
{
	struct worker_env *env = c->env;
	struct bufferevent *bev = c->bev;
	char ip[sizeof c->peer_ip];
	bool tls = c->tls;

	memcpy(ip, c->peer_ip, sizeof ip);
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	c->bev = NULL;          /* conn_close() forgets in and out with it */
	conn_close(c);
	(void)h2_start(env, bev, ip, tls);
}

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static void
conn_parse_head(struct conn *c)
{
	struct worker_env *env = c->env;
	struct evbuffer *in = c->in;
	size_t len, n, max_head;
	struct http1_err err;
	const char *p;
	ssize_t rc;

	len = evbuffer_get_length(in);
	if (len == 0)
		return;
	if (!c->internal && !c->h2 && c->txn.t_start == 0) {
		/* h2c with prior knowledge: the first bytes of a connection */
		size_t k = len < sizeof h2_preface - 1 ? len : sizeof h2_preface - 1;
		const char *q = (const char *)evbuffer_pullup(in, (ssize_t)k);

		if (q != NULL && memcmp(q, h2_preface, k) == 0) {
			if (k == sizeof h2_preface - 1)
				conn_to_h2(c);
			return;
		}
	}
	max_head = (size_t)env->cfg->limits.max_header_size;
	n = len < max_head ? len : max_head;
	if (n < max_head && c->scanned > 0 && c->scanned < n) {
		/* The parser starts over on every call; a client trickling a
		 * head in tiny segments would make that quadratic.  A head can
		 * only complete (or fail on a line) at a LF, so re-parse only
		 * when one arrived since the last attempt. */
		struct evbuffer_ptr pos;

		evbuffer_ptr_set(in, &pos, c->scanned, EVBUFFER_PTR_SET);
		pos = evbuffer_search_range(in, "\n", 1, &pos, NULL);
		if (pos.pos < 0 || (size_t)pos.pos >= n) {
			c->scanned = n;
			goto again;
		}
	}
	p = (const char *)evbuffer_pullup(in, (ssize_t)n);
	if (p == NULL) {
		conn_close(c);
		return;
	}
	rc = http1_parse_request(p, n, max_head, &c->req, &err);
	if (rc == HTTP1_AGAIN) {
		c->scanned = n;
again:
		if (!c->hdr_timing) {
			c->hdr_timing = true;
			evtimer_add(c->hdr_timer, &env->tv_client_header);
		}
		return;
	}
	c->scanned = 0;
	if (c->hdr_timing) {
		c->hdr_timing = false;
		evtimer_del(c->hdr_timer);
	}
	if (c->internal) {
		/* a background refresh: it inherited the stampede lock */
		bool locked = c->txn.locked;
		uint64_t token = c->txn.lock_token;

		txn_reset(&c->txn);
		c->txn.locked = locked;
		c->txn.lock_token = token;
	} else
		txn_reset(&c->txn);
	c->txn.t_start = util_now_ms();
	if (rc < 0) {
		log_debug("client %s: bad request: %s", c->peer_ip, err.reason);
		c->req.method = NULL;
		conn_send_error(c, err.status, true);
		return;
	}
	if ((size_t)rc > c->head_cap) {
		size_t cap = c->head_cap ? c->head_cap : 1024;
		char *nh;

		while (cap < (size_t)rc)
			cap *= 2;
		nh = realloc(c->head, cap);
		if (nh == NULL) {
			conn_close(c);
			return;
		}
		c->head = nh;
		c->head_cap = cap;
	}
	memcpy(c->head, p, (size_t)rc);
	msg_rebase(&c->req, p, c->head);
	evbuffer_drain(in, (size_t)rc);
	c->keep_alive = c->req.keep_alive && !env->draining;
	c->state = CS_PROXY;
	c->rd_paused = false;
	/* Body reads and response writes: no progress for client_idle → close
	 * (already so, unless a drain shortened the idle wait). */
	if (env->draining && c->bev != NULL)
		bufferevent_set_timeouts(c->bev, &env->tv_client_idle,
		    &env->tv_client_idle);
	proxy_start(c);
}

static void
conn_readcb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	switch (c->state) {
	case CS_HEAD:
		conn_parse_head(c);
		break;
	case CS_PROXY:
		proxy_client_read(c);
		break;
	case CS_CLOSING:
	case CS_LINGER:
		evbuffer_drain(c->in, evbuffer_get_length(c->in));
		break;
	case CS_DEAD:
		break;
	}
}

void
conn_stream_input(struct conn *c)
{
	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	AZ(c->bev);
	if (c->state == CS_PROXY && c->rd_paused)
		return;         /* conn_read_resume() calls the proxy again */
	conn_readcb(NULL, c);
}

void
conn_read_pause(struct conn *c)
{
	c->rd_paused = true;
	if (c->bev != NULL)
		bufferevent_disable(c->bev, EV_READ);
}

void
conn_read_resume(struct conn *c)
{
	c->rd_paused = false;
	if (c->bev != NULL)
		bufferevent_enable(c->bev, EV_READ);
}

static void
conn_writecb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	switch (c->state) {
	case CS_PROXY:
		proxy_client_drained(c);
		break;
	case CS_CLOSING:
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			conn_linger(c);
		break;
	default:
		break;
	}
}

static void
conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	if (what & BEV_EVENT_CONNECTED) {
		/* TLS handshake done: ALPN decides the protocol */
		if (c->tls && tls_alpn_h2(bufferevent_openssl_get_ssl(c->bev)))
			conn_to_h2(c);
		return;
	}
	if (c->state == CS_HEAD && (what & BEV_EVENT_TIMEOUT) &&
	    evbuffer_get_length(c->in) != 0) {
		/* client_idle passed with a partial head: the header timer
		 * normally fires first; treat it the same. */
		conn_send_error(c, 408, true);
		return;
	}
	if (c->state == CS_PROXY && (what & BEV_EVENT_TIMEOUT) &&
	    (what & BEV_EVENT_READING) && c->txn.req_body.done) {
		/* silence from a client waiting for its response is fine:
		 * upstream_read bounds the wait */
		bufferevent_enable(c->bev, EV_READ);
		return;
	}
	if (c->state == CS_PROXY && (what & BEV_EVENT_TIMEOUT))
		log_info("client %s: timed out during request", c->peer_ip);
	conn_close(c);
}

static void
conn_hdr_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	c->hdr_timing = false;
	if (c->state != CS_HEAD)
		return;
	txn_reset(&c->txn);
	c->txn.t_start = util_now_ms();
	c->req.method = NULL;
	conn_send_error(c, 408, true);
}

/* ---- access log ------------------------------------------------------ */

/* Append s[0..len) to the line with '"', '\\', controls and non-ASCII
 * escaped as \xHH, so a log line is one line and fields stay quoted. */
static size_t
esc(char *o, size_t room, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	for (size_t i = 0; i < len && n + 4 < room; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
			o[n++] = '\\';
			o[n++] = 'x';
			o[n++] = hex[ch >> 4];
			o[n++] = hex[ch & 15];
		} else
			o[n++] = (char)ch;
	}
	return (n);
}

static size_t
esc_hdr(char *o, size_t room, const struct http_msg *m, const char *name)
{
	const struct http_header *h;

	if (m->method == NULL || (h = http_find(m, name)) == NULL) {
		if (room > 1)
			o[0] = '-';
		return (room > 1);
	}
	return (esc(o, room, h->value, h->value_len));
}

static void
conn_access_log(struct conn *c)
{
	static time_t last_sec;
	static char tbuf[40];
	char line[4096];
	const struct txn *t = &c->txn;
	const struct http_msg *m = &c->req;
	uint64_t now = util_now_ms();
	size_t n = 0, room = sizeof line;
	time_t sec = time(NULL);
	const char *xc;
	int r;

	if (!log_access_enabled())
		return;
	if (sec != last_sec) {
		struct tm tm;

		localtime_r(&sec, &tm);
		strftime(tbuf, sizeof tbuf, "%d/%b/%Y:%H:%M:%S %z", &tm);
		last_sec = sec;
	}
	r = snprintf(line, room, "%s - - [%s] \"", c->peer_ip, tbuf);
	n = (size_t)r;
	if (m->method != NULL) {
		n += esc(line + n, room - n, m->method, m->method_len);
		line[n++] = ' ';
		n += esc(line + n, room - 200 - n, m->target, m->target_len);
		r = snprintf(line + n, room - n, " HTTP/1.%d", m->minor);
		n += (size_t)r;
	} else
		line[n++] = '-';
	r = snprintf(line + n, room - n, "\" %d %llu \"", t->status,
	    (unsigned long long)t->bytes_out);
	n += (size_t)r;
	n += esc_hdr(line + n, room - 300 - n, m, "Referer");
	line[n++] = '"';
	line[n++] = ' ';
	line[n++] = '"';
	n += esc_hdr(line + n, room - 200 - n, m, "User-Agent");
	line[n++] = '"';
	if (t->t_upstream != 0) {
		uint64_t ut = (t->t_upstream_done ? t->t_upstream_done : now) - t->t_upstream;

		r = snprintf(line + n, room - n, " %s %llu.%03llu", t->up_addr,
		    (unsigned long long)(ut / 1000), (unsigned long long)(ut % 1000));
	} else
		r = snprintf(line + n, room - n, " - -");
	n += (size_t)r;
	xc = policy_xcache((enum cache_status)t->cache_st);
	r = snprintf(line + n, room - n, " %llu.%03llu %s\n",
	    (unsigned long long)((now - t->t_start) / 1000),
	    (unsigned long long)((now - t->t_start) % 1000), xc ? xc : "-");
	n += (size_t)r;
	if (n > room)
		n = room;
	log_access(line, n);
}

/* Request statistics: totals, per status code, per route. */
static void
conn_count(const struct conn *c)
{
	const struct txn *t = &c->txn;
	int slot;

	if (c->internal || t->status == 0)
		return;
	stats_status(t->status);        /* counts STAT_REQUESTS too */
	if (t->route < 0 || c->env->route_slots == NULL)
		return;
	slot = c->env->route_slots[t->route];
	if (slot < 0)
		return;
	stats_slot_add(slot, SLOT_REQUESTS, 1);
	if (t->status >= 100 && t->status < 600)
		stats_slot_add(slot, (enum stats_slot_id)(SLOT_1XX + t->status / 100 - 1), 1);
}

/* ---- responses generated by stoa ------------------------------------- */

void
conn_send_error(struct conn *c, int status, bool close_after)
{
	struct evbuffer *out = c->out;
	const char *reason = http_reason(status);
	char body[128];
	int blen;

	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	blen = snprintf(body, sizeof body, "%d %s\n", status, reason);
	if (close_after || c->env->draining)
		c->txn.close_after = true;
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n"
	    "Content-Type: text/plain\r\n"
	    "Content-Length: %d\r\n"
	    "%s"
	    "\r\n", status, reason, blen,
	    c->txn.close_after || !c->keep_alive ? "Connection: close\r\n" : "");
	if (c->req.method == NULL || c->req.meth != HTTP_M_HEAD) {
		evbuffer_add(out, body, (size_t)blen);
		c->txn.bytes_out = (uint64_t)blen;
	}
	c->txn.status = status;
	conn_request_done(c);
}

void
conn_request_done(struct conn *c)
{
	struct worker_env *env = c->env;
	struct evbuffer *in = c->in;

	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	AZ(c->txn.uc);
	pcache_txn_end(c);
	conn_count(c);
	conn_access_log(c);
	if (c->internal || c->bev == NULL) {
		/* nobody reads, or a stream: h2.c takes the response from
		 * its buffer; no flush, no linger */
		conn_close(c);
		return;
	}
	if (c->txn.close_after || !c->keep_alive || env->draining) {
		c->state = CS_CLOSING;
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		/* keep reading (and discarding) so a peer that is still
		 * sending does not get a reset that destroys our response */
		bufferevent_enable(c->bev, EV_READ);
		evbuffer_drain(in, evbuffer_get_length(in));
		if (evbuffer_get_length(c->out) == 0)
			conn_linger(c);
		return;
	}
	c->state = CS_HEAD;
	c->req.method = NULL;
	/* the timeouts are still client_idle both ways (set at accept) */
	bufferevent_enable(c->bev, EV_READ);
	if (evbuffer_get_length(in) != 0)
		bufferevent_trigger(c->bev, EV_READ,
		    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}
