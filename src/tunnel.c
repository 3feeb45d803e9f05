/*
 * tunnel.c -- the WebSocket byte splice; see tunnel.h.
 *
 * Each side's bufferevent has a write low-watermark of STOA_LOW_WATER, so
 * its write callback tells us when a paused opposite side may be read
 * again.  Idle timeouts are checked by a per-worker sweep (tunnel_sweep)
 * rather than a timer per tunnel: an idle tunnel then costs no timer event
 * and no re-arming on every read.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config.h"
#include "conn.h"
#include "flush.h"
#include "log.h"
#include "stats.h"
#include "tunnel.h"
#include "util.h"
#include "vas.h"

#define TUNNEL_MAGIC 0x7a11e100u

struct side {
	struct bufferevent      *bev;
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

static void tunnel_readcb(struct bufferevent *bev, void *arg);
static void tunnel_writecb(struct bufferevent *bev, void *arg);
static void tunnel_eventcb(struct bufferevent *bev, short what, void *arg);

/* Half-close a side: shutdown(2) on a socket; on one end of a
 * bufferevent pair (an HTTP/2 stream, h2.c) an EOF to its partner. */
static void
side_shut(struct bufferevent *bev)
{
	evutil_socket_t fd = bufferevent_getfd(bev);

	if (fd >= 0)
		(void)shutdown(fd, SHUT_WR);
	else
		(void)bufferevent_flush(bev, EV_WRITE, BEV_FINISHED);
}

static int
side_of(const struct tunnel *t, const struct bufferevent *bev)
{
	return (bev == t->s[0].bev ? 0 : 1);
}

static void
tunnel_free(struct tunnel *t)
{
	struct worker_env *env = t->env;

	CHECK_OBJ_NOTNULL(t, TUNNEL_MAGIC);
	for (int i = 0; i < 2; i++) {
		bufferevent_setcb(t->s[i].bev, NULL, NULL, NULL, NULL);
		if (!t->s[i].shut && bufferevent_getfd(t->s[i].bev) < 0)
			side_shut(t->s[i].bev);   /* tell the h2 stream */
		flush_detach(t->s[i].bev);
		bufferevent_free(t->s[i].bev);
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
tunnel_finished(struct tunnel *t)
{
	for (int i = 0; i < 2; i++) {
		struct side *o = &t->s[!i];

		if (!t->s[i].eof || !o->shut)
			return (false);
	}
	return (true);
}

/* Side i sent EOF and all it sent is flushed to the other: pass it on. */
static void
tunnel_pass_eof(struct tunnel *t, int i)
{
	struct side *o = &t->s[!i];

	if (!t->s[i].eof || o->shut ||
	    evbuffer_get_length(bufferevent_get_output(o->bev)) != 0)
		return;
	side_shut(o->bev);
	o->shut = true;
}

/* Copy what side i has to the other side. */
static void
tunnel_pump(struct tunnel *t, int i)
{
	struct evbuffer *in = bufferevent_get_input(t->s[i].bev);
	struct evbuffer *out = bufferevent_get_output(t->s[!i].bev);
	size_t n = evbuffer_get_length(in);

	if (n > 0) {
		evbuffer_remove_buffer(in, out, n);
		t->last_active = util_now_ms();
		stats_add(i == 0 ? STAT_WS_BYTES_UP : STAT_WS_BYTES_DOWN, (int64_t)n);
		if (t->slot >= 0)
			stats_slot_add(t->slot, i == 0 ? SLOT_WS_BYTES_UP :
			    SLOT_WS_BYTES_DOWN, (int64_t)n);
	}
	if (evbuffer_get_length(out) >= STOA_HIGH_WATER)
		bufferevent_disable(t->s[i].bev, EV_READ);
}

static void
tunnel_readcb(struct bufferevent *bev, void *arg)
{
	struct tunnel *t = arg;

	CHECK_OBJ_NOTNULL(t, TUNNEL_MAGIC);
	tunnel_pump(t, side_of(t, bev));
}

/* bev drained to the low watermark: the other side may be read again. */
static void
tunnel_writecb(struct bufferevent *bev, void *arg)
{
	struct tunnel *t = arg;
	int i;

	CHECK_OBJ_NOTNULL(t, TUNNEL_MAGIC);
	i = side_of(t, bev);
	t->last_active = util_now_ms();
	if (!t->s[!i].eof) {
		bufferevent_enable(t->s[!i].bev, EV_READ);
		tunnel_pump(t, !i);
	}
	tunnel_pass_eof(t, !i);
	if (tunnel_finished(t))
		tunnel_free(t);
}

static void
tunnel_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct tunnel *t = arg;
	int i;

	CHECK_OBJ_NOTNULL(t, TUNNEL_MAGIC);
	i = side_of(t, bev);
	if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING)) {
		/* forward what is left, then the EOF once flushed */
		tunnel_pump(t, i);
		t->s[i].eof = true;
		bufferevent_disable(bev, EV_READ);
		bufferevent_setwatermark(t->s[!i].bev, EV_WRITE, 0, 0);
		tunnel_pass_eof(t, i);
		if (tunnel_finished(t))
			tunnel_free(t);
		return;
	}
	/* an error or reset on either side ends the tunnel */
	tunnel_free(t);
}

int
tunnel_start(struct worker_env *env, struct bufferevent *client,
    struct bufferevent *upstream, int route_slot)
{
	struct tunnel *t;

	t = calloc(1, sizeof *t);
	if (t == NULL) {
		flush_detach(client);
		flush_detach(upstream);
		bufferevent_free(client);
		bufferevent_free(upstream);
		return (-1);
	}
	t->magic = TUNNEL_MAGIC;
	t->env = env;
	t->s[0].bev = client;
	t->s[1].bev = upstream;
	t->slot = route_slot;
	t->last_active = util_now_ms();
	TAILQ_INSERT_TAIL(&env->tunnels, t, link);
	env->ntunnels++;
	stats_add(STAT_WS_TUNNELS, 1);
	stats_add(STAT_WS_TUNNELS_TOTAL, 1);
	if (route_slot >= 0)
		stats_slot_add(route_slot, SLOT_WS_TUNNELS, 1);
	for (int i = 0; i < 2; i++) {
		/* a tunnel writes through libevent's own write events */
		flush_detach(t->s[i].bev);
		bufferevent_setcb(t->s[i].bev, tunnel_readcb, tunnel_writecb,
		    tunnel_eventcb, t);
		/* libevent keeps an event's old timer when it is re-added
		 * without one: take both events out first, then no timeouts
		 * (the idle sweep is the tunnel's only timer) */
		bufferevent_disable(t->s[i].bev, EV_READ | EV_WRITE);
		bufferevent_set_timeouts(t->s[i].bev, NULL, NULL);
		bufferevent_setwatermark(t->s[i].bev, EV_READ, 0, 0);
		bufferevent_setwatermark(t->s[i].bev, EV_WRITE, STOA_LOW_WATER, 0);
		bufferevent_enable(t->s[i].bev, EV_READ | EV_WRITE);
	}
	/* bytes that arrived with the handshake */
	tunnel_pump(t, 0);
	tunnel_pump(t, 1);
	return (0);
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
