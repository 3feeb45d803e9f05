/*
 * upstream.c -- keep-alive pools of upstream connections; see upstream.h.
 *
 * One idle list per configured upstream, most recently used first.  The
 * upstream's `keepalive` is the number of idle connections kept for good;
 * a burst may leave more idle for a moment, and upstream_trim() closes the
 * surplus, least recently used first, once it has been idle for
 * UPSTREAM_SURPLUS_MS.  Closing at once instead (a hard cap) churns
 * connections whenever the number of requests in flight hovers around the
 * cap: every response over it closes a connection and the next request
 * opens one.  Checkout takes the most recently used connection to the
 * wanted server.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config.h"
#include "flush.h"
#include "log.h"
#include "upstream.h"
#include "vas.h"

TAILQ_HEAD(upconn_list, upconn);

struct pool {
	struct upconn_list       idle;
	unsigned                 nidle;
	unsigned                 max;
};

struct upstream_pools {
	struct event_base       *base;
	const struct config     *cfg;
	unsigned                 npools;
	unsigned                 nidle;
	struct pool             *pools;
};

struct upstream_pools *
upstream_pools_new(struct event_base *base, const struct config *cfg)
{
	struct upstream_pools *p;

	p = calloc(1, sizeof *p);
	if (p == NULL)
		return (NULL);
	p->base = base;
	p->cfg = cfg;
	p->npools = cfg->nupstreams;
	p->pools = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof *p->pools);
	if (p->pools == NULL) {
		free(p);
		return (NULL);
	}
	for (unsigned i = 0; i < p->npools; i++) {
		TAILQ_INIT(&p->pools[i].idle);
		p->pools[i].max = cfg->upstreams[i].keepalive;
	}
	return (p);
}

static void
upconn_free(struct upconn *uc)
{
	CHECK_OBJ_NOTNULL(uc, UPCONN_MAGIC);
	flush_detach(uc->bev);
	bufferevent_free(uc->bev);      /* closes the socket (BEV_OPT_CLOSE_ON_FREE) */
	uc->magic = 0;
	free(uc);
}

static void
pool_remove(struct upstream_pools *p, struct upconn *uc)
{
	struct pool *pl = &p->pools[uc->up];

	TAILQ_REMOVE(&pl->idle, uc, link);
	pl->nidle--;
	p->nidle--;
}

void
upstream_pools_free(struct upstream_pools *p)
{
	struct upconn *uc;

	if (p == NULL)
		return;
	for (unsigned i = 0; i < p->npools; i++) {
		while ((uc = TAILQ_FIRST(&p->pools[i].idle)) != NULL) {
			pool_remove(p, uc);
			upconn_free(uc);
		}
	}
	free(p->pools);
	free(p);
}

/* An idle connection heard from its server: data, EOF or error.  Either
 * way it can no longer carry a request safely. */
static void
idle_readcb(struct bufferevent *bev, void *arg)
{
	struct upconn *uc = arg;

	(void)bev;
	CHECK_OBJ_NOTNULL(uc, UPCONN_MAGIC);
	pool_remove(uc->pools, uc);
	upconn_free(uc);
}

static void
idle_eventcb(struct bufferevent *bev, short what, void *arg)
{
	(void)what;
	idle_readcb(bev, arg);
}

struct upconn *
upstream_get(struct upstream_pools *p, unsigned up, unsigned srv,
    uint64_t now, const char **err)
{
	struct pool *pl;
	struct upconn *uc, *next;
	const struct config_addr *a;
	struct bufferevent *bev;

	assert_always(up < p->npools);
	pl = &p->pools[up];
	for (uc = TAILQ_FIRST(&pl->idle); uc != NULL; uc = next) {
		next = TAILQ_NEXT(uc, link);
		if (uc->srv != srv)
			continue;
		pool_remove(p, uc);
		if (now - uc->idle_since >= UPSTREAM_IDLE_MS) {
			upconn_free(uc);
			continue;
		}
		uc->reused = true;
		bufferevent_setcb(uc->bev, NULL, NULL, NULL, NULL);
		/* its timers ran while it was idle: the request's timeouts
		 * start afresh (upstream_timeouts sets them again) */
		uc->tmo_rd = uc->tmo_wr = NULL;
		return (uc);
	}

	a = &p->cfg->upstreams[up].servers[srv];
	bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		*err = "cannot create upstream connection";
		return (NULL);
	}
	if (bufferevent_socket_connect(bev, (const struct sockaddr *)&a->ss,
	    (int)a->sslen) < 0) {
		/* Immediate failures (EMFILE, ENETUNREACH...) */
		bufferevent_free(bev);
		*err = "connect failed";
		return (NULL);
	}
	{
		int one = 1;
		evutil_socket_t fd = bufferevent_getfd(bev);

		if (fd >= 0)
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	uc = calloc(1, sizeof *uc);
	if (uc == NULL) {
		bufferevent_free(bev);
		*err = "out of memory";
		return (NULL);
	}
	uc->magic = UPCONN_MAGIC;
	uc->bev = bev;          /* flush_attach() once connected (proxy.c) */
	uc->pools = p;
	uc->up = up;
	uc->srv = srv;
	return (uc);
}

void
upstream_put(struct upconn *uc, bool reusable, uint64_t now)
{
	struct upstream_pools *p;
	struct pool *pl;

	CHECK_OBJ_NOTNULL(uc, UPCONN_MAGIC);
	p = uc->pools;
	pl = &p->pools[uc->up];
	if (!reusable || !uc->connected || pl->max == 0 ||
	    evbuffer_get_length(bufferevent_get_input(uc->bev)) != 0 ||
	    evbuffer_get_length(bufferevent_get_output(uc->bev)) != 0) {
		upconn_free(uc);
		return;
	}
	uc->idle_since = now;
	/* its timeouts stay (see upstream.h): one that fires closes it */
	bufferevent_setcb(uc->bev, idle_readcb, NULL, idle_eventcb, uc);
	/* EV_WRITE only: the proxy never sets a read watermark upstream, and
	 * resetting one re-arms the read event (as does enabling it again) */
	bufferevent_setwatermark(uc->bev, EV_WRITE, 0, 0);
	if (!(bufferevent_get_enabled(uc->bev) & EV_READ))
		bufferevent_enable(uc->bev, EV_READ);
	TAILQ_INSERT_HEAD(&pl->idle, uc, link);
	pl->nidle++;
	p->nidle++;
}

void
upstream_trim(struct upstream_pools *p, uint64_t now)
{
	for (unsigned i = 0; i < p->npools; i++) {
		struct pool *pl = &p->pools[i];
		struct upconn *uc;

		while ((uc = TAILQ_LAST(&pl->idle, upconn_list)) != NULL) {
			uint64_t idle = now - uc->idle_since;

			if (idle < UPSTREAM_IDLE_MS &&
			    (pl->nidle <= pl->max || idle < UPSTREAM_SURPLUS_MS))
				break;
			pool_remove(p, uc);
			upconn_free(uc);
		}
	}
}

struct bufferevent *
upstream_detach(struct upconn *uc)
{
	struct bufferevent *bev;

	CHECK_OBJ_NOTNULL(uc, UPCONN_MAGIC);
	bev = uc->bev;
	uc->magic = 0;
	free(uc);
	return (bev);
}

void
upstream_timeouts(struct upconn *uc, const struct timeval *rd,
    const struct timeval *wr)
{
	CHECK_OBJ_NOTNULL(uc, UPCONN_MAGIC);
	if (uc->tmo_rd == rd && uc->tmo_wr == wr)
		return;
	bufferevent_set_timeouts(uc->bev, rd, wr);
	uc->tmo_rd = rd;
	uc->tmo_wr = wr;
}

const char *
upconn_addr(const struct upconn *uc)
{
	return (uc->pools->cfg->upstreams[uc->up].servers[uc->srv].text);
}

unsigned
upstream_idle_count(const struct upstream_pools *p)
{
	return (p->nidle);
}
