/*
 * worker.c -- one worker process: an event loop over the inherited
 * listeners and the connections they accept.
 *
 * Connection limit: at max_connections the listeners are disabled (the
 * kernel queue holds new clients, other workers take them) and re-enabled
 * when a connection is freed.  Graceful stop (SIGQUIT): the listeners are
 * freed at once so queued connections go to the new generation, in-flight
 * requests finish, idle keep-alive connections get a short linger, and the
 * process exits when the last connection is gone or shutdown_timeout
 * passes.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>

#include "admin.h"
#include "balance.h"
#include "cache/cache.h"
#include "cache/memory.h"
#include "cache/redis.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "mem.h"
#include "flush.h"
#include "h2.h"
#include "router.h"
#include "stats.h"
#include "tls.h"
#include "tunnel.h"
#include "upstream.h"
#include "util.h"
#include "vas.h"
#include "worker.h"

struct worker {
	struct worker_env        env;
	const struct heritage   *h;
	struct evconnlistener  **listeners;
	unsigned                 nlisteners;
	bool                     paused;        /* at max_connections */
	struct event            *sig_quit, *sig_term, *sig_int, *sig_usr1, *sig_hup;
	struct event            *stop_timer;
	struct event            *sweep_timer;   /* idle tunnels, pool trim */
	struct admin            *admin;
	int                      exit_code;
};

static struct worker W;

static void
ms_to_tv(uint64_t ms, struct timeval *tv)
{
	tv->tv_sec = (time_t)(ms / 1000);
	tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

/* Connections counted against max_connections. */
static unsigned
worker_nconns(void)
{
	return (W.env.nconns + W.env.ntunnels + W.env.nh2conns);
}

static void
listeners_enable(bool on)
{
	for (unsigned i = 0; i < W.nlisteners; i++) {
		if (W.listeners[i] == NULL)
			continue;
		if (on)
			evconnlistener_enable(W.listeners[i]);
		else
			evconnlistener_disable(W.listeners[i]);
	}
}

static void
listeners_free(void)
{
	for (unsigned i = 0; i < W.nlisteners; i++) {
		if (W.listeners[i] != NULL)
			evconnlistener_free(W.listeners[i]);
		W.listeners[i] = NULL;
	}
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	(void)l;
	(void)arg;
	if (W.env.draining) {
		close(fd);
		return;
	}
	(void)conn_new(&W.env, fd, sa, salen);
	if (!W.paused && worker_nconns() >= W.env.cfg->limits.max_connections) {
		W.paused = true;
		listeners_enable(false);
	}
}

/* A connection on a TLS listener: the handshake runs in the bufferevent;
 * conn.c looks at ALPN when it completes. */
static void
accept_tls_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct bufferevent *bev;
	SSL *ssl;
	int one = 1;

	(void)l;
	(void)arg;
	if (W.env.draining || W.env.tls == NULL) {
		close(fd);
		return;
	}
	ssl = tls_ssl_new(W.env.tls);
	if (ssl == NULL) {
		close(fd);
		return;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	bev = bufferevent_openssl_socket_new(W.env.base, fd, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		close(fd);
		return;
	}
	(void)conn_new_tls(&W.env, bev, sa, salen);
	if (!W.paused && worker_nconns() >= W.env.cfg->limits.max_connections) {
		W.paused = true;
		listeners_enable(false);
	}
}

static void
listener_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	if (!W.env.draining)
		evconnlistener_enable(arg);
}

static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();

	(void)arg;
	/* EMFILE/ENFILE/ENOBUFS: back off instead of spinning; the
	 * connection stays queued in the kernel. */
	log_warn("accept failed: %s", strerror(e));
	if (!W.paused && W.env.nconns > 0) {
		W.paused = true;
		listeners_enable(false);
	} else if (W.env.nconns == 0) {
		/* nothing will free a descriptor: retry a little later */
		struct timeval tv = { 0, 100000 };

		evconnlistener_disable(l);
		event_base_once(W.env.base, -1, EV_TIMEOUT, listener_resume_cb,
		    l, &tv);
	}
}

static void
worker_exit_check(void)
{
	if (W.env.draining && W.env.nconns == 0 && W.env.ntunnels == 0 &&
	    W.env.nh2conns == 0 &&
	    TAILQ_EMPTY(&W.env.graveyard))
		event_base_loopexit(W.env.base, NULL);
}

static void
on_conn_freed(struct worker_env *env)
{
	(void)env;
	if (W.paused && !W.env.draining &&
	    worker_nconns() < W.env.cfg->limits.max_connections) {
		W.paused = false;
		listeners_enable(true);
	}
	worker_exit_check();
}

static void
reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_reap(arg);
}

static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now;

	(void)fd;
	(void)what;
	(void)arg;
	now = util_now_ms();
	tunnel_sweep(&W.env, now);
	upstream_trim(W.env.pools, now);
}

static void
stop_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_warn("shutdown_timeout passed with %u connection(s) and %u "
	    "tunnel(s) open; closing them", W.env.nconns, W.env.ntunnels);
	event_base_loopexit(W.env.base, NULL);
}

static void
worker_drain(void)
{
	struct conn *c, *next;
	struct timeval tv;

	if (W.env.draining)
		return;
	W.env.draining = true;
	listeners_free();
	if (W.admin != NULL)
		admin_stop(W.admin);
	h2_drain(&W.env);
	log_debug("worker %u draining %u connection(s)", W.h->id, W.env.nconns);
	for (c = TAILQ_FIRST(&W.env.conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		conn_drain(c);
	}
	ms_to_tv(W.env.cfg->shutdown_timeout, &tv);
	W.stop_timer = evtimer_new(W.env.base, stop_timeout_cb, NULL);
	if (W.stop_timer != NULL)
		evtimer_add(W.stop_timer, &tv);
	worker_exit_check();
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	switch (sig) {
	case SIGQUIT:
		worker_drain();
		break;
	case SIGTERM:
	case SIGINT:
		event_base_loopbreak(W.env.base);
		break;
	case SIGUSR1:
		(void)log_reopen();
		break;
	default:
		break;
	}
}

static bool
h_is_redis(const struct config *cfg)
{
	return (cfg->cache.backend == CACHE_BACKEND_REDIS);
}

static bool
cfg_caches(const struct config *cfg)
{
	for (unsigned i = 0; i < cfg->nroutes; i++)
		if (cfg->routes[i].cache)
			return (true);
	return (false);
}

/* Stats slots of this generation's routes and servers (found by name, so
 * counters carry over a reload). */
static int
slots_init(const struct config *cfg)
{
	char name[STATS_NAME_MAX];

	W.env.route_slots = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof (int));
	W.env.server_slots = calloc(cfg->nupstreams ? cfg->nupstreams : 1,
	    sizeof (int *));
	if (W.env.route_slots == NULL || W.env.server_slots == NULL)
		return (-1);
	for (unsigned i = 0; i < cfg->nroutes; i++) {
		W.env.route_slots[i] = -1;
		if (stats_route_name(name, sizeof name, cfg->routes[i].prefix,
		    cfg->routes[i].host) >= 0)
			W.env.route_slots[i] = stats_slot(STATS_SLOT_ROUTE, name);
	}
	for (unsigned u = 0; u < cfg->nupstreams; u++) {
		const struct config_upstream *up = &cfg->upstreams[u];

		W.env.server_slots[u] = calloc(up->nservers ? up->nservers : 1,
		    sizeof (int));
		if (W.env.server_slots[u] == NULL)
			return (-1);
		for (unsigned k = 0; k < up->nservers; k++) {
			W.env.server_slots[u][k] = -1;
			if (stats_server_name(name, sizeof name, up->name,
			    up->servers[k].text) >= 0)
				W.env.server_slots[u][k] =
				    stats_slot(STATS_SLOT_SERVER, name);
		}
	}
	return (0);
}

static void
slots_free(void)
{
	if (W.env.server_slots != NULL)
		for (unsigned u = 0; u < W.env.cfg->nupstreams; u++)
			free(W.env.server_slots[u]);
	free(W.env.server_slots);
	free(W.env.route_slots);
	W.env.server_slots = NULL;
	W.env.route_slots = NULL;
}

static void
worker_cleanup(void)
{
	struct conn *c;

	listeners_free();
	W.env.on_conn_freed = NULL;
	tunnel_close_all(&W.env);
	h2_close_all(&W.env);
	while ((c = TAILQ_FIRST(&W.env.conns)) != NULL)
		conn_close(c);
	/* a network store answers what is pending before it goes; then
	 * every closed conn can be freed */
	if (W.env.store != NULL) {
		if (h_is_redis(W.env.cfg))
			cache_redis_store_free(W.env.store);
		else
			cache_memory_store_free(W.env.store);
		W.env.store = NULL;
	}
	conn_reap(&W.env);
	if (W.admin != NULL)
		admin_free(W.admin);
	if (W.env.tls != NULL)
		tls_ctx_free(W.env.tls);
	upstream_pools_free(W.env.pools);
	slots_free();
	balance_free(W.env.bal);
	router_free(W.env.router);
	if (W.stop_timer != NULL)
		event_free(W.stop_timer);
	event_free(W.sweep_timer);
	event_free(W.env.reaper);
	flush_fini();
	event_free(W.sig_quit);
	event_free(W.sig_term);
	event_free(W.sig_int);
	event_free(W.sig_usr1);
	event_free(W.sig_hup);
	free(W.listeners);
	event_base_free(W.env.base);
}

void
worker_main(const struct heritage *h)
{
	const struct config *cfg = h->cfg;
	struct event_config *ec;

	CHECK_OBJ_NOTNULL(cfg, CONFIG_MAGIC);
	memset(&W, 0, sizeof W);
	W.h = h;
	(void)signal(SIGPIPE, SIG_IGN);

	ec = event_config_new();
	AN(ec);
	/* one process, one loop: no locking inside libevent */
	event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
	W.env.base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (W.env.base == NULL) {
		log_err("worker %u: cannot create the event loop", h->id);
		exit(1);
	}
	W.env.cfg = cfg;
	TAILQ_INIT(&W.env.conns);
	TAILQ_INIT(&W.env.graveyard);
	TAILQ_INIT(&W.env.tunnels);
	TAILQ_INIT(&W.env.h2conns);
	W.env.on_conn_freed = on_conn_freed;
	ms_to_tv(cfg->timeouts.client_header, &W.env.tv_client_header);
	ms_to_tv(cfg->timeouts.client_idle, &W.env.tv_client_idle);
	ms_to_tv(cfg->timeouts.upstream_connect, &W.env.tv_upstream_connect);
	ms_to_tv(cfg->timeouts.upstream_read, &W.env.tv_upstream_read);
	ms_to_tv(cfg->timeouts.client_idle < 1000 ? cfg->timeouts.client_idle : 1000,
	    &W.env.tv_drain_linger);
	ms_to_tv(2000, &W.env.tv_linger);
	stats_attach(h->stats_zone);
	stats_row_use(h->stats_row);
	if (h->cache_zone != NULL) {
		W.env.store = cache_memory_store(h->cache_zone);
		if (W.env.store == NULL) {
			log_err("worker %u: cannot attach the cache zone", h->id);
			exit(1);
		}
	} else if (cfg->cache.backend == CACHE_BACKEND_REDIS && cfg_caches(cfg)) {
		char err[512];

		/* connects in the background; until then lookups BYPASS */
		W.env.store = cache_redis_store(W.env.base, cfg->cache.redis,
		    cfg->cache.namespace, cfg->cache.redis_timeout,
		    cfg->cache.max_object_size, err, sizeof err);
		if (W.env.store == NULL) {
			log_err("worker %u: cache.redis: %s", h->id, err);
			exit(1);
		}
	}
	if (slots_init(cfg) != 0) {
		log_err("worker %u: out of memory at start", h->id);
		exit(1);
	}
	W.env.router = router_new(cfg);
	W.env.bal = balance_new(cfg);
	W.env.pools = upstream_pools_new(W.env.base, cfg);
	W.env.reaper = event_new(W.env.base, -1, 0, reaper_cb, &W.env);
	if (flush_init(W.env.base) != 0) {
		log_err("worker %u: out of memory at start", h->id);
		exit(1);
	}
	if (W.env.router == NULL || W.env.bal == NULL || W.env.pools == NULL ||
	    W.env.reaper == NULL) {
		log_err("worker %u: out of memory at start", h->id);
		exit(1);
	}

	{
		/* idle tunnels are found by a sweep (a quarter of
		 * websocket_idle, at most once a second), which also trims
		 * the upstream pools */
		uint64_t every = cfg->timeouts.websocket_idle / 4;
		struct timeval tv;

		ms_to_tv(every < 50 ? 50 : every > 1000 ? 1000 : every, &tv);
		W.sweep_timer = event_new(W.env.base, -1, EV_PERSIST, sweep_cb, NULL);
		AN(W.sweep_timer);
		evtimer_add(W.sweep_timer, &tv);
	}

	W.sig_quit = evsignal_new(W.env.base, SIGQUIT, signal_cb, NULL);
	W.sig_term = evsignal_new(W.env.base, SIGTERM, signal_cb, NULL);
	W.sig_int = evsignal_new(W.env.base, SIGINT, signal_cb, NULL);
	W.sig_usr1 = evsignal_new(W.env.base, SIGUSR1, signal_cb, NULL);
	W.sig_hup = evsignal_new(W.env.base, SIGHUP, signal_cb, NULL);
	AN(W.sig_quit && W.sig_term && W.sig_int && W.sig_usr1 && W.sig_hup);
	evsignal_add(W.sig_quit, NULL);
	evsignal_add(W.sig_term, NULL);
	evsignal_add(W.sig_int, NULL);
	evsignal_add(W.sig_usr1, NULL);
	evsignal_add(W.sig_hup, NULL);

	W.nlisteners = cfg->nlisten + (h->tls_fds != NULL ? cfg->tls.nlisten : 0);
	W.listeners = calloc(W.nlisteners ? W.nlisteners : 1, sizeof *W.listeners);
	AN(W.listeners);
	if (h->tls_fds != NULL && cfg->tls.nlisten > 0) {
		char err[512];

		W.env.tls = tls_ctx_new(cfg, h->tls_keys, true, err, sizeof err);
		if (W.env.tls == NULL) {
			log_err("worker %u: TLS: %s", h->id, err);
			exit(1);
		}
		for (unsigned i = 0; i < cfg->tls.nlisten; i++) {
			struct evconnlistener *l;

			l = evconnlistener_new(W.env.base, accept_tls_cb, NULL,
			    LEV_OPT_CLOSE_ON_FREE, 0, h->tls_fds[i]);
			if (l == NULL) {
				log_err("worker %u: cannot listen on %s", h->id,
				    cfg->tls.listen[i].text);
				exit(1);
			}
			evconnlistener_set_error_cb(l, accept_error_cb);
			W.listeners[cfg->nlisten + i] = l;
		}
	}
	for (unsigned i = 0; i < cfg->nlisten; i++) {
		/* backlog 0: the master's socket is listening already (with
		 * its own backlog); -1 would make libevent listen(fd, 128) */
		W.listeners[i] = evconnlistener_new(W.env.base, accept_cb, NULL,
		    LEV_OPT_CLOSE_ON_FREE, 0, h->listen_fds[i]);
		if (W.listeners[i] == NULL) {
			log_err("worker %u: cannot listen on %s", h->id,
			    cfg->listen[i].text);
			exit(1);
		}
		evconnlistener_set_error_cb(W.listeners[i], accept_error_cb);
	}
	if (h->admin_fd >= 0) {
		W.admin = admin_start(W.env.base, h->admin_fd, cfg, W.env.store);
		if (W.admin == NULL) {
			log_err("worker %u: cannot serve the admin listener", h->id);
			exit(1);
		}
	}
	/* Descriptors this worker does not use. */

	log_debug("worker %u started (generation %u)", h->id, h->generation);
	(void)event_base_dispatch(W.env.base);
	worker_cleanup();
	mem_release();
	log_close();
	exit(W.exit_code);
}
