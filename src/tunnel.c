/*
 * tunnel.c -- the WebSocket byte splice; see tunnel.h.
 *
 * A side is either a raw socket (a plain TCP client or upstream: the usual
 * case) or a bufferevent (a TLS client, or one end of the pair behind an
 * HTTP/2 stream, h2.c).  A raw side is spliced with read(2) into a
 * per-worker scratch buffer and an immediate write(2) to the other side:
 * one read and one write per message, no epoll_ctl while the kernel takes
 * what is written, no buffer of our own.  Only bytes the kernel refused go
 * to a per-side evbuffer (allocated then, freed once written), which is
 * when the write event is armed.  An idle tunnel therefore holds the struct
 * below and nothing else.
 *
 * A bufferevent side keeps libevent's own reading and writing; its write
 * low-watermark (STOA_LOW_WATER) tells when a paused opposite side may be
 * read again.  Idle timeouts are checked by a per-worker sweep
 * (tunnel_sweep) rather than a timer per tunnel: an idle tunnel then costs
 * no timer event and no re-arming on every read.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "config.h"
#include "conn.h"
#include "flush.h"
#include "log.h"
#include "stats.h"
#include "tunnel.h"
#include "util.h"
#include "vas.h"

#define TUNNEL_MAGIC 0x7a11e100u

/* Reads per callback before the loop serves others (64 KiB each). */
#define TUNNEL_READS 16

struct tunnel;

struct side {
	struct tunnel           *t;
	struct bufferevent      *bev;           /* NULL: a raw socket */
	evutil_socket_t          fd;            /* the raw socket */
	struct evbuffer         *pend;          /* raw: refused by the kernel */
	struct event             ev;            /* raw: read/write interest */
	short                    armed;         /* raw: flags of ev, 0: none */
	bool                     paused;        /* not read: other side full */
	bool                     eof;           /* peer sent EOF */
	bool                     shut;          /* we shut its write side */
};

struct tunnel {
	unsigned                 magic;
	struct worker_env       *env;
	struct side              s[2];          /* 0 = client, 1 = upstream */
	int                      slot;
	uint64_t                 last_active;   /* ms, monotonic */
	TAILQ_ENTRY(tunnel)      link;
};

static unsigned char scratch[65536];

static void raw_cb(evutil_socket_t fd, short what, void *arg);
static void bev_readcb(struct bufferevent *bev, void *arg);
static void bev_writecb(struct bufferevent *bev, void *arg);
static void bev_eventcb(struct bufferevent *bev, short what, void *arg);

static int
side_index(const struct side *s)
{
	return (s == &s->t->s[0] ? 0 : 1);
}

/* Bytes queued toward side s and not yet taken by it. */
static size_t
side_backlog(const struct side *s)
{
	if (s->bev != NULL)
		return (evbuffer_get_length(bufferevent_get_output(s->bev)));
	return (s->pend != NULL ? evbuffer_get_length(s->pend) : 0);
}

/* Raw side: make the event's interest match what the side needs now. */
static void
side_arm(struct side *s)
{
	short want = 0;

	if (s->bev != NULL)
		return;
	if (!s->eof && !s->paused)
		want |= EV_READ;
	if (side_backlog(s) > 0)
		want |= EV_WRITE;
	if (want == s->armed)
		return;
	if (s->armed != 0)
		(void)event_del(&s->ev);
	s->armed = want;
	if (want == 0)
		return;
	(void)event_assign(&s->ev, s->t->env->base, s->fd, want | EV_PERSIST,
	    raw_cb, s);
	(void)event_add(&s->ev, NULL);
}

/* Reading side s stops (true) or resumes (false). */
static void
side_pause(struct side *s, bool paused)
{
	s->paused = paused;
	if (s->bev != NULL) {
		if (paused || s->eof)
			bufferevent_disable(s->bev, EV_READ);
		else
			bufferevent_enable(s->bev, EV_READ);
	}
	side_arm(s);
}

/* Half-close side s: shutdown(2) on a socket; on one end of a bufferevent
 * pair (an HTTP/2 stream, h2.c) an EOF to its partner. */
static void
side_shut(struct side *s)
{
	evutil_socket_t fd = s->bev != NULL ? bufferevent_getfd(s->bev) : s->fd;

	if (fd >= 0)
		(void)shutdown(fd, SHUT_WR);
	else
		(void)bufferevent_flush(s->bev, EV_WRITE, BEV_FINISHED);
	s->shut = true;
}

/*
 * Raw side s: write what is pending, then n bytes of data (either may be
 * empty); what the kernel does not take is kept in s->pend.  Returns 0, or
 * -1 on a write error (the peer is gone).
 */
static int
raw_send(struct side *s, const void *data, size_t n)
{
	ssize_t w = 0;

	if (s->pend != NULL && evbuffer_get_length(s->pend) > 0) {
		if (evbuffer_write(s->pend, s->fd) < 0 &&
		    errno != EAGAIN && errno != EINTR)
			return (-1);
		if (evbuffer_get_length(s->pend) > 0) {
			if (n > 0 && evbuffer_add(s->pend, data, n) != 0)
				return (-1);
			return (0);
		}
	}
	if (n > 0) {
		w = send(s->fd, data, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return (-1);
			w = 0;
		}
	}
	if ((size_t)w < n) {
		if (s->pend == NULL && (s->pend = evbuffer_new()) == NULL)
			return (-1);
		if (evbuffer_add(s->pend, (const char *)data + w, n - (size_t)w))
			return (-1);
	} else if (s->pend != NULL) {
		evbuffer_free(s->pend);         /* idle tunnels hold no buffer */
		s->pend = NULL;
	}
	return (0);
}

/* Hand n bytes (from data, or all of buf when data is NULL) to side o. */
static int
side_send(struct side *o, const void *data, size_t n, struct evbuffer *buf)
{
	if (o->bev != NULL) {
		struct evbuffer *out = bufferevent_get_output(o->bev);

		return (data != NULL ? evbuffer_add(out, data, n) :
		    evbuffer_add_buffer(out, buf));
	}
	if (data != NULL)
		return (raw_send(o, data, n));
	if (o->pend == NULL || evbuffer_get_length(o->pend) == 0) {
		if (evbuffer_write(buf, o->fd) < 0 &&
		    errno != EAGAIN && errno != EINTR)
			return (-1);
		if (evbuffer_get_length(buf) == 0)
			return (0);
	}
	if (o->pend == NULL && (o->pend = evbuffer_new()) == NULL)
		return (-1);
	return (evbuffer_add_buffer(o->pend, buf));
}

static void
tunnel_free(struct tunnel *t)
{
	struct worker_env *env = t->env;

	CHECK_OBJ_NOTNULL(t, TUNNEL_MAGIC);
	for (int i = 0; i < 2; i++) {
		struct side *s = &t->s[i];

		if (s->bev != NULL) {
			bufferevent_setcb(s->bev, NULL, NULL, NULL, NULL);
			if (!s->shut && bufferevent_getfd(s->bev) < 0)
				side_shut(s);   /* tell the h2 stream */
			bufferevent_free(s->bev);
			continue;
		}
		if (s->armed != 0)
			(void)event_del(&s->ev);
		if (s->pend != NULL)
			evbuffer_free(s->pend);
		if (s->fd >= 0)
			(void)close(s->fd);
	}
	TAILQ_REMOVE(&env->tunnels, t, link);
	env->ntunnels--;
	stats_add(STAT_WS_TUNNELS, -1);
	if (t->slot >= 0)
		stats_slot_add(t->slot, SLOT_WS_TUNNELS, -1);
	t->magic = 0;
	free(t);
	if (env->on_conn_freed != NULL)
		env->on_conn_freed(env);
}

/* Both directions finished and flushed?  Then the tunnel is done. */
static bool
tunnel_finished(const struct tunnel *t)
{
	return (t->s[0].eof && t->s[1].eof && t->s[0].shut && t->s[1].shut);
}

/* Side i sent EOF and all it sent is flushed to the other: pass it on. */
static void
tunnel_pass_eof(struct tunnel *t, int i)
{
	struct side *o = &t->s[!i];

	if (!t->s[i].eof || o->shut || side_backlog(o) != 0)
		return;
	side_shut(o);
}

static void
tunnel_count(struct tunnel *t, int i, size_t n)
{
	t->last_active = util_now_ms();
	stats_add(i == 0 ? STAT_WS_BYTES_UP : STAT_WS_BYTES_DOWN, (int64_t)n);
	if (t->slot >= 0)
		stats_slot_add(t->slot, i == 0 ? SLOT_WS_BYTES_UP :
		    SLOT_WS_BYTES_DOWN, (int64_t)n);
}

/* Side i's peer closed its sending half. */
static void
tunnel_eof(struct tunnel *t, int i)
{
	struct side *s = &t->s[i];

	s->eof = true;
	if (s->bev != NULL)
		bufferevent_disable(s->bev, EV_READ);
	if (t->s[!i].bev != NULL)       /* be told when it drained */
		bufferevent_setwatermark(t->s[!i].bev, EV_WRITE, 0, 0);
	side_arm(s);
	tunnel_pass_eof(t, i);
}

/*
 * Copy what side i has to the other side, until it has no more, it sent
 * EOF, or the other side is full.  Returns -1 when the tunnel is over
 * (freed: a read or write error).
 */
static int
tunnel_pump(struct tunnel *t, int i)
{
	struct side *s = &t->s[i], *o = &t->s[!i];

	for (int round = 0; round < TUNNEL_READS && !s->eof && !s->paused;
	    round++) {
		size_t n;

		if (s->bev != NULL) {
			struct evbuffer *in = bufferevent_get_input(s->bev);

			if ((n = evbuffer_get_length(in)) == 0)
				break;
			if (side_send(o, NULL, 0, in) != 0)
				goto fail;
		} else {
			ssize_t r = read(s->fd, scratch, sizeof scratch);

			if (r == 0) {
				tunnel_eof(t, i);
				break;
			}
			if (r < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				goto fail;
			}
			n = (size_t)r;
			if (side_send(o, scratch, n, NULL) != 0)
				goto fail;
		}
		tunnel_count(t, i, n);
		if (side_backlog(o) >= STOA_HIGH_WATER)
			side_pause(s, true);
		if (s->bev != NULL || n < sizeof scratch)
			break;          /* drained: no read to see EAGAIN */
	}
	side_arm(o);
	return (0);
fail:
	tunnel_free(t);
	return (-1);
}

/* Side i drained (to the low watermark): resume the other, pass EOFs.
 * Returns -1 when the tunnel is over (freed). */
static int
tunnel_drained(struct tunnel *t, int i)
{
	struct side *o = &t->s[!i];

	t->last_active = util_now_ms();
	if (o->paused && side_backlog(&t->s[i]) <= STOA_LOW_WATER) {
		side_pause(o, false);
		if (tunnel_pump(t, !i) != 0)
			return (-1);
	}
	tunnel_pass_eof(t, !i);
	if (tunnel_finished(t)) {
		tunnel_free(t);
		return (-1);
	}
	return (0);
}

static void
raw_cb(evutil_socket_t fd, short what, void *arg)
{
	struct side *s = arg;
	struct tunnel *t = s->t;
	int i = side_index(s);

	(void)fd;
	CHECK_OBJ_NOTNULL(t, TUNNEL_MAGIC);
	if (what & EV_WRITE) {
		if (raw_send(s, NULL, 0) != 0) {
			tunnel_free(t);
			return;
		}
		side_arm(s);
		if (side_backlog(s) <= STOA_LOW_WATER &&
		    tunnel_drained(t, i) != 0)
			return;
	}
	if ((what & EV_READ) && !s->eof && !s->paused) {
		if (tunnel_pump(t, i) != 0)
			return;
		if (tunnel_finished(t))
			tunnel_free(t);
	}
}

/* Which side a bufferevent callback is about. */
static int
bev_side(const struct tunnel *t, const struct bufferevent *bev)
{
	return (bev == t->s[0].bev ? 0 : 1);
}

static void
bev_readcb(struct bufferevent *bev, void *arg)
{
	struct tunnel *t = arg;

	CHECK_OBJ_NOTNULL(t, TUNNEL_MAGIC);
	(void)tunnel_pump(t, bev_side(t, bev));
}

/* bev drained to the low watermark: the other side may be read again. */
static void
bev_writecb(struct bufferevent *bev, void *arg)
{
	struct tunnel *t = arg;

	CHECK_OBJ_NOTNULL(t, TUNNEL_MAGIC);
	(void)tunnel_drained(t, bev_side(t, bev));
}

static void
bev_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct tunnel *t = arg;
	int i;

	CHECK_OBJ_NOTNULL(t, TUNNEL_MAGIC);
	i = bev_side(t, bev);
	if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING)) {
		/* forward what is left, then the EOF once flushed */
		if (tunnel_pump(t, i) != 0)
			return;
		tunnel_eof(t, i);
		if (tunnel_finished(t))
			tunnel_free(t);
		return;
	}
	/* an error or reset on either side ends the tunnel */
	tunnel_free(t);
}

/* A plain socket bufferevent?  (Not TLS, not one end of a pair.) */
static bool
bev_is_plain(struct bufferevent *bev)
{
	return (bufferevent_getfd(bev) >= 0 &&
	    bufferevent_openssl_get_ssl(bev) == NULL);
}

int
tunnel_start(struct worker_env *env, struct bufferevent *client,
    struct bufferevent *upstream, int route_slot)
{
	struct bufferevent *bev[2] = { client, upstream };
	struct tunnel *t;

	t = calloc(1, sizeof *t);
	if (t == NULL) {
		for (int i = 0; i < 2; i++) {
			flush_detach(bev[i]);
			bufferevent_free(bev[i]);
		}
		return (-1);
	}
	t->magic = TUNNEL_MAGIC;
	t->env = env;
	t->slot = route_slot;
	t->last_active = util_now_ms();
	TAILQ_INSERT_TAIL(&env->tunnels, t, link);
	env->ntunnels++;
	stats_add(STAT_WS_TUNNELS, 1);
	stats_add(STAT_WS_TUNNELS_TOTAL, 1);
	if (route_slot >= 0)
		stats_slot_add(route_slot, SLOT_WS_TUNNELS, 1);
	for (int i = 0; i < 2; i++) {
		struct side *s = &t->s[i];

		s->t = t;
		s->fd = -1;
		flush_detach(bev[i]);
		/* libevent keeps an event's old timer when it is re-added
		 * without one: take both events out first (the idle sweep is
		 * the tunnel's only timer) */
		bufferevent_disable(bev[i], EV_READ | EV_WRITE);
		if (!bev_is_plain(bev[i])) {
			s->bev = bev[i];
			bufferevent_setcb(s->bev, bev_readcb, bev_writecb,
			    bev_eventcb, t);
			bufferevent_set_timeouts(s->bev, NULL, NULL);
			bufferevent_setwatermark(s->bev, EV_READ, 0, 0);
			bufferevent_setwatermark(s->bev, EV_WRITE,
			    STOA_LOW_WATER, 0);
			bufferevent_enable(s->bev, EV_READ | EV_WRITE);
		}
	}
	/*
	 * A raw side takes the socket from its bufferevent.  What a bufferevent
	 * still had to write (the 101 to the client) goes out first, then what
	 * the other side had read; then the bufferevent lets go of the socket.
	 */
	for (int i = 0; i < 2; i++) {
		struct side *s = &t->s[i];
		struct evbuffer *out;

		if (s->bev != NULL)
			continue;
		s->fd = bufferevent_getfd(bev[i]);
		/* the bufferevent lets go of the socket (and unfreezes the
		 * head of its output, which only it may drain otherwise) */
		bufferevent_setcb(bev[i], NULL, NULL, NULL, NULL);
		(void)bufferevent_setfd(bev[i], -1);
		out = bufferevent_get_output(bev[i]);
		if (evbuffer_get_length(out) > 0 &&
		    ((s->pend = evbuffer_new()) == NULL ||
		    evbuffer_add_buffer(s->pend, out) != 0))
			goto fail;
	}
	for (int i = 0; i < 2; i++) {
		struct evbuffer *in;
		size_t n;

		if (t->s[i].bev != NULL)
			continue;
		in = bufferevent_get_input(bev[i]);
		if ((n = evbuffer_get_length(in)) > 0) {
			if (side_send(&t->s[!i], NULL, 0, in) != 0)
				goto fail;
			tunnel_count(t, i, n);
		}
	}
	for (int i = 0; i < 2; i++) {
		if (t->s[i].bev != NULL)
			continue;
		bufferevent_free(bev[i]);
		bev[i] = NULL;
		if (raw_send(&t->s[i], NULL, 0) != 0)
			goto fail;
		side_arm(&t->s[i]);
	}
	/* bytes that arrived with the handshake on a bufferevent side */
	for (int i = 0; i < 2; i++)
		if (t->s[i].bev != NULL && tunnel_pump(t, i) != 0)
			return (-1);
	return (0);
fail:
	/* a raw side's bufferevent not yet freed (the socket is the side's) */
	for (int i = 0; i < 2; i++)
		if (t->s[i].bev == NULL && bev[i] != NULL)
			bufferevent_free(bev[i]);
	tunnel_free(t);
	return (-1);
}

void
tunnel_sweep(struct worker_env *env, uint64_t now)
{
	uint64_t idle = env->cfg->timeouts.websocket_idle;
	struct tunnel *t, *next;

	for (t = TAILQ_FIRST(&env->tunnels); t != NULL; t = next) {
		next = TAILQ_NEXT(t, link);
		if (now - t->last_active >= idle) {
			log_debug("websocket tunnel idle for %llu ms: closing",
			    (unsigned long long)(now - t->last_active));
			tunnel_free(t);
		}
	}
}

void
tunnel_close_all(struct worker_env *env)
{
	struct tunnel *t;

	while ((t = TAILQ_FIRST(&env->tunnels)) != NULL)
		tunnel_free(t);
}
