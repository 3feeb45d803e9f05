/*
 * admin.c -- the admin listener: health, stats, metrics, purge, clear;
 * see admin.h for the endpoints and bounds.
 *
 * Life of a connection: AC_HEAD (reading the request head) → the answer
 * is queued at once, or after a store callback (AC_WAIT) → AC_WRITE until
 * the output is flushed → AC_LINGER (write side shut, input discarded
 * until EOF or a short timeout) → AC_DEAD, freed on the next loop turn
 * (habit 5).  A store operation carries a small heap ticket rather than
 * the connection, so a connection may go away while its operation is
 * pending; the callback then only frees the ticket.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "admin.h"
#include "cache/cache.h"
#include "cache/policy.h"
#include "config.h"
#include "http1.h"
#include "log.h"
#include "stats.h"
#include "util.h"
#include "vas.h"

#ifndef STOA_VERSION
#define STOA_VERSION "unknown"
#endif

#define ADMIN_MAGIC     0xad310001u
#define ACONN_MAGIC     0xad310002u

#define ADMIN_MAX_HEAD  (16 * 1024)
#define ADMIN_MAX_CONNS 64
#define ADMIN_KEY_MAX   (ADMIN_MAX_HEAD + 512)

static const struct timeval admin_tv_io = { 10, 0 };
static const struct timeval admin_tv_linger = { 2, 0 };
static const struct timeval admin_tv_retry = { 0, 100000 };

enum aconn_state { AC_HEAD = 0, AC_WAIT, AC_WRITE, AC_LINGER, AC_DEAD };

struct admin_op;

struct aconn {
	unsigned                 magic;
	enum aconn_state         state;
	struct admin            *a;
	struct bufferevent      *bev;
	bool                     head_only;     /* HEAD request */
	struct admin_op         *op;            /* pending store operation */
	TAILQ_ENTRY(aconn)       link;
};

TAILQ_HEAD(aconn_list, aconn);

/* A store operation in flight; owned by the store callback. */
struct admin_op {
	struct aconn            *c;             /* NULL once the conn is gone */
	int                      kind;          /* OP_* */
};

enum { OP_DEL = 0, OP_TAG, OP_CLEAR };

struct admin {
	unsigned                 magic;
	struct event_base       *base;
	const struct config     *cfg;
	struct cache_store      *store;
	struct evconnlistener   *lis;
	struct event            *reaper;
	struct event            *retry;         /* accept back-off */
	struct aconn_list        conns;
	struct aconn_list        graveyard;
	unsigned                 nconns;
	bool                     stopped;
	bool                     paused;
	/* Scratch for one request at a time (the loop is single-threaded). */
	char                     arg[ADMIN_MAX_HEAD];
	char                     key[ADMIN_KEY_MAX];
};

static void aconn_readcb(struct bufferevent *bev, void *arg);
static void aconn_writecb(struct bufferevent *bev, void *arg);
static void aconn_eventcb(struct bufferevent *bev, short what, void *arg);

/*--------------------------------------------------------------------
 * Connections
 */

static void
admin_update_listener(struct admin *a)
{
	bool want;

	if (a->lis == NULL)
		return;
	want = a->nconns < ADMIN_MAX_CONNS;
	if (want && a->paused) {
		a->paused = false;
		evconnlistener_enable(a->lis);
	} else if (!want && !a->paused) {
		a->paused = true;
		evconnlistener_disable(a->lis);
	}
}

static void
aconn_close(struct aconn *c)
{
	struct admin *a;

	CHECK_OBJ_NOTNULL(c, ACONN_MAGIC);
	if (c->state == AC_DEAD)
		return;
	a = c->a;
	if (c->op != NULL) {
		c->op->c = NULL;
		c->op = NULL;
	}
	c->state = AC_DEAD;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	TAILQ_REMOVE(&a->conns, c, link);
	TAILQ_INSERT_TAIL(&a->graveyard, c, link);
	a->nconns--;
	event_active(a->reaper, EV_TIMEOUT, 0);
}

static void
admin_reap(struct admin *a)
{
	struct aconn *c;

	while ((c = TAILQ_FIRST(&a->graveyard)) != NULL) {
		TAILQ_REMOVE(&a->graveyard, c, link);
		bufferevent_free(c->bev);
		c->magic = 0;
		free(c);
	}
	if (!a->stopped)
		admin_update_listener(a);
}

static void
admin_reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;

	CHECK_OBJ_NOTNULL(a, ADMIN_MAGIC);
	admin_reap(a);
}

/* The response is queued: once flushed, linger. */
static void
aconn_respond_done(struct aconn *c)
{
	c->state = AC_WRITE;
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_enable(c->bev, EV_WRITE);
	bufferevent_set_timeouts(c->bev, NULL, &admin_tv_io);
}

/*
 * Queue a complete response.  body may be NULL (no body); its content is
 * moved.  extra: more header lines ("Name: value\r\n"), or NULL.
 */
static void
aconn_send(struct aconn *c, int status, const char *ctype,
    struct evbuffer *body, const char *extra)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t blen = body != NULL ? evbuffer_get_length(body) : 0;

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status,
	    http_reason(status));
	if (status != 204 && status >= 200) {
		evbuffer_add_printf(out, "Content-Type: %s\r\n",
		    ctype != NULL ? ctype : "text/plain");
		evbuffer_add_printf(out, "Content-Length: %zu\r\n", blen);
	}
	if (extra != NULL)
		evbuffer_add(out, extra, strlen(extra));
	evbuffer_add_printf(out, "Cache-Control: no-store\r\n"
	    "Connection: close\r\n\r\n");
	if (body != NULL) {
		if (!c->head_only && status != 204)
			evbuffer_add_buffer(out, body);
		else
			evbuffer_drain(body, blen);
	}
	aconn_respond_done(c);
}

/*--------------------------------------------------------------------
 * Rendering helpers
 */

static void
json_str(struct evbuffer *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (s == NULL) {
		evbuffer_add(b, "null", 4);
		return;
	}
	evbuffer_add(b, "\"", 1);
	for (; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			evbuffer_add_printf(b, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			evbuffer_add_printf(b, "\\u%04x", *p);
		else
			evbuffer_add(b, p, 1);
	}
	evbuffer_add(b, "\"", 1);
}

/* An error answer: {"error": msg}. */
static void
aconn_send_error(struct aconn *c, int status, const char *msg,
    const char *extra)
{
	struct evbuffer *b = evbuffer_new();

	if (b == NULL) {
		aconn_close(c);
		return;
	}
	evbuffer_add_printf(b, "{\"error\":");
	json_str(b, msg);
	evbuffer_add_printf(b, "}\n");
	aconn_send(c, status, "application/json", b, extra);
	evbuffer_free(b);
}

/* A Prometheus label value (text format 0.0.4): \\ \" \n escaped. */
static void
prom_label(struct evbuffer *b, const char *s)
{
	evbuffer_add(b, "\"", 1);
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			evbuffer_add(b, "\\\\", 2);
		else if (*s == '"')
			evbuffer_add(b, "\\\"", 2);
		else if (*s == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, s, 1);
	}
	evbuffer_add(b, "\"", 1);
}

static void
prom_head(struct evbuffer *b, const char *name, const char *type,
    const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

static void
prom_one(struct evbuffer *b, const char *name, const char *type,
    const char *help, uint64_t v)
{
	prom_head(b, name, type, help);
	evbuffer_add_printf(b, "%s %" PRIu64 "\n", name, v);
}

/* Slot of route i / server j of upstream u in the current config, or -1. */
static int
route_slot(const struct config *cfg, unsigned i)
{
	char name[STATS_NAME_MAX];

	if (stats_route_name(name, sizeof name, cfg->routes[i].prefix,
	    cfg->routes[i].host) < 0)
		return (-1);
	return (stats_slot_find(STATS_SLOT_ROUTE, name));
}

static int
server_slot(const struct config *cfg, unsigned u, unsigned j)
{
	char name[STATS_NAME_MAX];

	if (stats_server_name(name, sizeof name, cfg->upstreams[u].name,
	    cfg->upstreams[u].servers[j].text) < 0)
		return (-1);
	return (stats_slot_find(STATS_SLOT_SERVER, name));
}

/* Slot counters, 0 for a missing slot. */
static uint64_t
slot_u(int slot, enum stats_slot_id id)
{
	int64_t v;

	if (slot < 0)
		return (0);
	v = stats_slot_get((unsigned)slot, id);
	return (v < 0 ? 0 : (uint64_t)v);
}

static bool
server_up(int slot, uint64_t now_ms)
{
	return (slot < 0 ||
	    (uint64_t)stats_slot_get((unsigned)slot, SLOT_DOWN_UNTIL) <= now_ms);
}

static void
admin_cache_stats(const struct admin *a, struct cache_stats *cs)
{
	memset(cs, 0, sizeof *cs);
	if (a->store != NULL && a->store->ops->stats != NULL)
		a->store->ops->stats(a->store, cs);
}

static uint64_t
admin_uptime(void)
{
	uint64_t t0 = stats_started_at(), now = util_epoch_ms() / 1000;

	return (t0 == 0 || now < t0 ? 0 : now - t0);
}

/*--------------------------------------------------------------------
 * GET /stats
 */

/*
 * Failed cache operations of every worker: the Redis store adds each of
 * its failures to the shared STAT_CACHE_ERRORS; the memory store keeps
 * its own count in the shared zone.
 */
static uint64_t
cache_errors(const struct admin *a, const struct cache_stats *cs)
{
	return (stats_get(STAT_CACHE_ERRORS) +
	    (a->cfg->cache.backend == CACHE_BACKEND_MEMORY ? cs->errors : 0));
}

static void
render_stats(const struct admin *a, struct evbuffer *b)
{
	const struct config *cfg = a->cfg;
	struct cache_stats cs;
	uint64_t now = util_epoch_ms(), hits, misses, expired, looked;
	const char *sep;
	int s;

	evbuffer_add_printf(b, "{\"version\":");
	json_str(b, STOA_VERSION);
	evbuffer_add_printf(b, ",\"uptime\":%" PRIu64 ",\"workers\":%u"
	    ",\"connections\":%" PRIu64 ",\n", admin_uptime(), cfg->workers,
	    stats_get(STAT_CONNECTIONS));

	evbuffer_add_printf(b, "\"requests\":{\"total\":%" PRIu64,
	    stats_get(STAT_REQUESTS));
	for (int k = 1; k <= 5; k++)
		evbuffer_add_printf(b, ",\"%dxx\":%" PRIu64, k,
		    stats_get_class(k));
	evbuffer_add_printf(b, ",\"codes\":{");
	sep = "";
	for (int code = 100; code <= 599; code++) {
		uint64_t v = stats_get_status(code);

		if (v == 0)
			continue;
		evbuffer_add_printf(b, "%s\"%d\":%" PRIu64, sep, code, v);
		sep = ",";
	}
	evbuffer_add_printf(b, "}},\n\"routes\":[");

	for (unsigned i = 0; i < cfg->nroutes; i++) {
		const struct config_route *r = &cfg->routes[i];

		s = route_slot(cfg, i);
		evbuffer_add_printf(b, "%s\n {\"route\":", i ? "," : "");
		json_str(b, r->prefix);
		evbuffer_add_printf(b, ",\"host\":");
		json_str(b, r->host);
		evbuffer_add_printf(b, ",\"upstream\":");
		json_str(b, r->upstream < cfg->nupstreams ?
		    cfg->upstreams[r->upstream].name : NULL);
		evbuffer_add_printf(b, ",\"cache\":%s,\"requests\":%" PRIu64,
		    r->cache ? "true" : "false", slot_u(s, SLOT_REQUESTS));
		for (int k = 1; k <= 5; k++)
			evbuffer_add_printf(b, ",\"%dxx\":%" PRIu64, k,
			    slot_u(s, (enum stats_slot_id)(SLOT_1XX + k - 1)));
		evbuffer_add_printf(b, ",\"websocket_tunnels\":%" PRIu64
		    ",\"websocket_bytes_up\":%" PRIu64
		    ",\"websocket_bytes_down\":%" PRIu64 "}",
		    slot_u(s, SLOT_WS_TUNNELS), slot_u(s, SLOT_WS_BYTES_UP),
		    slot_u(s, SLOT_WS_BYTES_DOWN));
	}
	evbuffer_add_printf(b, "],\n\"upstreams\":[");

	for (unsigned u = 0; u < cfg->nupstreams; u++) {
		const struct config_upstream *up = &cfg->upstreams[u];

		evbuffer_add_printf(b, "%s\n {\"upstream\":", u ? "," : "");
		json_str(b, up->name);
		evbuffer_add_printf(b, ",\"servers\":[");
		for (unsigned j = 0; j < up->nservers; j++) {
			s = server_slot(cfg, u, j);
			evbuffer_add_printf(b, "%s{\"server\":", j ? "," : "");
			json_str(b, up->servers[j].text);
			evbuffer_add_printf(b, ",\"state\":\"%s\""
			    ",\"requests\":%" PRIu64 ",\"failures\":%" PRIu64
			    "}", server_up(s, now) ? "up" : "down",
			    slot_u(s, SLOT_REQUESTS), slot_u(s, SLOT_FAILURES));
		}
		evbuffer_add_printf(b, "]}");
	}
	evbuffer_add_printf(b, "],\n");

	admin_cache_stats(a, &cs);
	hits = stats_get(STAT_CACHE_HIT);
	misses = stats_get(STAT_CACHE_MISS);
	expired = stats_get(STAT_CACHE_EXPIRED);
	looked = hits + misses + expired;
	evbuffer_add_printf(b, "\"cache\":{\"backend\":");
	json_str(b, a->store != NULL ? a->store->ops->name : NULL);
	evbuffer_add_printf(b, ",\"hits\":%" PRIu64 ",\"misses\":%" PRIu64
	    ",\"expired\":%" PRIu64 ",\"stale\":%" PRIu64
	    ",\"bypass\":%" PRIu64 ",\"hit_ratio\":%.4f",
	    hits, misses, expired, stats_get(STAT_CACHE_STALE),
	    stats_get(STAT_CACHE_BYPASS),
	    looked ? (double)hits / (double)looked : 0.0);
	evbuffer_add_printf(b, ",\"entries\":%" PRIu64 ",\"bytes\":%" PRIu64
	    ",\"capacity\":%" PRIu64 ",\"evictions\":%" PRIu64
	    ",\"errors\":%" PRIu64 ",\"lock_waits\":%" PRIu64
	    ",\"collapsed\":%" PRIu64 "},\n", cs.entries, cs.bytes,
	    cs.capacity, cs.evictions, cache_errors(a, &cs),
	    stats_get(STAT_CACHE_LOCK_WAITS), stats_get(STAT_CACHE_COLLAPSED));

	evbuffer_add_printf(b, "\"websocket\":{\"tunnels\":%" PRIu64
	    ",\"tunnels_total\":%" PRIu64 ",\"bytes_up\":%" PRIu64
	    ",\"bytes_down\":%" PRIu64 "}}\n", stats_get(STAT_WS_TUNNELS),
	    stats_get(STAT_WS_TUNNELS_TOTAL), stats_get(STAT_WS_BYTES_UP),
	    stats_get(STAT_WS_BYTES_DOWN));
}

/*--------------------------------------------------------------------
 * GET /metrics
 */

static void
prom_route_labels(struct evbuffer *b, const struct config_route *r)
{
	evbuffer_add_printf(b, "{route=");
	prom_label(b, r->prefix);
	evbuffer_add_printf(b, ",host=");
	prom_label(b, r->host != NULL ? r->host : "*");
}

static void
prom_server_labels(struct evbuffer *b, const struct config_upstream *up,
    unsigned j)
{
	evbuffer_add_printf(b, "{upstream=");
	prom_label(b, up->name);
	evbuffer_add_printf(b, ",server=");
	prom_label(b, up->servers[j].text);
	evbuffer_add_printf(b, "}");
}

/* One line per server of every upstream: what(slot) as the value. */
static void
prom_servers(struct evbuffer *b, const struct config *cfg, const char *name,
    enum stats_slot_id id, uint64_t now)
{
	for (unsigned u = 0; u < cfg->nupstreams; u++) {
		const struct config_upstream *up = &cfg->upstreams[u];

		for (unsigned j = 0; j < up->nservers; j++) {
			int s = server_slot(cfg, u, j);
			uint64_t v = id == SLOT_DOWN_UNTIL ?
			    (server_up(s, now) ? 1 : 0) : slot_u(s, id);

			evbuffer_add_printf(b, "%s", name);
			prom_server_labels(b, up, j);
			evbuffer_add_printf(b, " %" PRIu64 "\n", v);
		}
	}
}

static void
render_metrics(const struct admin *a, struct evbuffer *b)
{
	const struct config *cfg = a->cfg;
	struct cache_stats cs;
	uint64_t now = util_epoch_ms();
	static const struct {
		enum stats_id id;
		const char *name, *help;
	} counters[] = {
		{ STAT_CACHE_HIT, "stoa_cache_hits_total",
		  "Cache lookups served from the cache (X-Cache: HIT)." },
		{ STAT_CACHE_MISS, "stoa_cache_misses_total",
		  "Cache lookups that found no entry (X-Cache: MISS)." },
		{ STAT_CACHE_EXPIRED, "stoa_cache_expired_total",
		  "Cache lookups that found an expired entry (X-Cache: EXPIRED)." },
		{ STAT_CACHE_STALE, "stoa_cache_stale_total",
		  "Responses served stale (X-Cache: STALE)." },
		{ STAT_CACHE_BYPASS, "stoa_cache_bypass_total",
		  "Requests on cached routes that bypassed the cache." },
		{ STAT_CACHE_LOCK_WAITS, "stoa_cache_lock_waits_total",
		  "Requests that waited on another request's cache fill." },
		{ STAT_CACHE_COLLAPSED, "stoa_cache_collapsed_total",
		  "Waiting requests served from another request's fill." },
	};

	prom_head(b, "stoa_requests_total", "counter",
	    "Requests answered, by status code.");
	for (int code = 100; code <= 599; code++) {
		uint64_t v = stats_get_status(code);

		if (v != 0)
			evbuffer_add_printf(b, "stoa_requests_total{code=\"%d\"} %"
			    PRIu64 "\n", code, v);
	}

	for (size_t i = 0; i < ARRAY_SIZE(counters); i++)
		prom_one(b, counters[i].name, "counter", counters[i].help,
		    stats_get(counters[i].id));

	admin_cache_stats(a, &cs);
	prom_one(b, "stoa_cache_errors_total", "counter",
	    "Failed cache store operations.",
	    cache_errors(a, &cs));
	prom_one(b, "stoa_cache_entries", "gauge", "Entries in the cache.",
	    cs.entries);
	prom_one(b, "stoa_cache_bytes", "gauge",
	    "Bytes used by cache entries.", cs.bytes);
	prom_one(b, "stoa_cache_capacity_bytes", "gauge",
	    "Bytes the cache may use (0: not applicable).", cs.capacity);
	prom_one(b, "stoa_cache_evictions_total", "counter",
	    "Entries evicted to make room (LRU).", cs.evictions);

	prom_head(b, "stoa_upstream_requests_total", "counter",
	    "Requests sent to an upstream server.");
	prom_servers(b, cfg, "stoa_upstream_requests_total", SLOT_REQUESTS, now);
	prom_head(b, "stoa_upstream_failures_total", "counter",
	    "Connect or read failures of an upstream server.");
	prom_servers(b, cfg, "stoa_upstream_failures_total", SLOT_FAILURES, now);
	prom_head(b, "stoa_upstream_up", "gauge",
	    "1 when the server is in use, 0 while marked down.");
	prom_servers(b, cfg, "stoa_upstream_up", SLOT_DOWN_UNTIL, now);

	prom_head(b, "stoa_route_requests_total", "counter",
	    "Requests answered on a route.");
	for (unsigned i = 0; i < cfg->nroutes; i++) {
		evbuffer_add_printf(b, "stoa_route_requests_total");
		prom_route_labels(b, &cfg->routes[i]);
		evbuffer_add_printf(b, "} %" PRIu64 "\n",
		    slot_u(route_slot(cfg, i), SLOT_REQUESTS));
	}
	prom_head(b, "stoa_route_responses_total", "counter",
	    "Responses on a route, by status class.");
	for (unsigned i = 0; i < cfg->nroutes; i++) {
		int s = route_slot(cfg, i);

		for (int k = 1; k <= 5; k++) {
			evbuffer_add_printf(b, "stoa_route_responses_total");
			prom_route_labels(b, &cfg->routes[i]);
			evbuffer_add_printf(b, ",class=\"%dxx\"} %" PRIu64 "\n",
			    k, slot_u(s, (enum stats_slot_id)(SLOT_1XX + k - 1)));
		}
	}

	prom_one(b, "stoa_connections", "gauge", "Open client connections.",
	    stats_get(STAT_CONNECTIONS));
	prom_one(b, "stoa_websocket_tunnels", "gauge",
	    "Open WebSocket tunnels.", stats_get(STAT_WS_TUNNELS));
	prom_one(b, "stoa_websocket_tunnels_opened_total", "counter",
	    "WebSocket tunnels opened.", stats_get(STAT_WS_TUNNELS_TOTAL));
	prom_head(b, "stoa_websocket_bytes_total", "counter",
	    "Bytes through WebSocket tunnels (up: client to upstream).");
	evbuffer_add_printf(b, "stoa_websocket_bytes_total{direction=\"up\"} %"
	    PRIu64 "\n", stats_get(STAT_WS_BYTES_UP));
	evbuffer_add_printf(b, "stoa_websocket_bytes_total{direction=\"down\"} %"
	    PRIu64 "\n", stats_get(STAT_WS_BYTES_DOWN));

	prom_one(b, "stoa_workers", "gauge", "Configured worker processes.",
	    cfg->workers);
	prom_one(b, "stoa_uptime_seconds", "gauge",
	    "Seconds since the master created the stats zone.",
	    admin_uptime());
	prom_head(b, "stoa_build_info", "gauge", "Version of the running stoa.");
	evbuffer_add_printf(b, "stoa_build_info{version=");
	prom_label(b, STOA_VERSION);
	evbuffer_add_printf(b, "} 1\n");
}

/*--------------------------------------------------------------------
 * POST /cache/...
 */

/*
 * Find parameter NAME in query q[0..qlen) and percent-decode its value
 * into out (NUL-terminated).  '+' stays '+' (a cache key may contain one;
 * a space cannot be in a request target anyway).  Returns the decoded
 * length, -1 when absent, -2 when malformed (bad %XX, a NUL, empty).
 */
static ssize_t
query_param(const char *q, size_t qlen, const char *name, char *out,
    size_t outlen)
{
	size_t nlen = strlen(name), i = 0, o;

	while (i < qlen) {
		size_t j = i;

		while (j < qlen && q[j] != '&')
			j++;
		if (j - i > nlen && memcmp(q + i, name, nlen) == 0 &&
		    q[i + nlen] == '=') {
			o = 0;
			for (size_t k = i + nlen + 1; k < j; k++) {
				int ch = (unsigned char)q[k];

				if (ch == '%') {
					int h, l;

					if (k + 2 >= j)
						return (-2);
					h = util_hexval((unsigned char)q[k + 1]);
					l = util_hexval((unsigned char)q[k + 2]);
					if (h < 0 || l < 0)
						return (-2);
					ch = h * 16 + l;
					k += 2;
				}
				if (ch == 0 || o + 1 >= outlen)
					return (-2);
				out[o++] = (char)ch;
			}
			out[o] = '\0';
			return (o == 0 ? -2 : (ssize_t)o);
		}
		i = j + 1;
	}
	return (-1);
}

/*
 * "http://HOST/PATH?QUERY" (or https) → the cache key, via policy_key()
 * so there is one definition of the key.  Returns its length or -1.
 */
static ssize_t
purge_url_key(struct admin *a, const char *u, size_t ulen)
{
	struct http_msg m;
	const char *host, *path, *end;
	char *tmp = NULL;
	ssize_t r;

	if (ulen >= 7 && strncasecmp(u, "http://", 7) == 0)
		host = u + 7;
	else if (ulen >= 8 && strncasecmp(u, "https://", 8) == 0)
		host = u + 8;
	else
		return (-1);
	end = u + ulen;
	/* A fragment is never part of a request target. */
	if ((path = memchr(host, '#', (size_t)(end - host))) != NULL)
		end = path;
	path = host;
	while (path < end && *path != '/' && *path != '?')
		path++;
	if (memchr(host, '@', (size_t)(path - host)) != NULL)
		return (-1);
	for (const char *p = host; p < end; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return (-1);

	memset(&m, 0, sizeof m);
	m.method = "GET";
	m.method_len = 3;
	m.meth = HTTP_M_GET;
	m.minor = 1;
	m.host = host;
	m.host_len = (size_t)(path - host);
	if (path == end) {
		m.path = "/";
		m.path_len = 1;
	} else if (*path == '?') {
		/* "http://h?q" is "/?q" on the wire. */
		size_t ql = (size_t)(end - path);

		tmp = malloc(ql + 2);
		if (tmp == NULL)
			return (-1);
		tmp[0] = '/';
		memcpy(tmp + 1, path, ql);
		m.path = tmp;
		m.path_len = ql + 1;
	} else {
		m.path = path;
		m.path_len = (size_t)(end - path);
	}
	m.target = m.path;
	m.target_len = m.path_len;
	r = policy_key(a->cfg->cache.namespace, &m, a->key, sizeof a->key);
	free(tmp);
	return (r);
}

static void
admin_op_cb(void *arg, enum cache_rc rc, uint64_t value)
{
	struct admin_op *op = arg;
	struct aconn *c = op->c;
	char extra[64];

	if (c != NULL) {
		CHECK_OBJ_NOTNULL(c, ACONN_MAGIC);
		assert_always(c->op == op);
		c->op = NULL;
		if (rc == CACHE_ERROR)
			aconn_send_error(c, 503, "cache store failed", NULL);
		else if (op->kind == OP_DEL && rc != CACHE_OK)
			aconn_send_error(c, 404, "not cached", NULL);
		else if (op->kind == OP_DEL)
			aconn_send(c, 204, NULL, NULL, NULL);
		else {
			snprintf(extra, sizeof extra,
			    "X-Purged-Entries: %" PRIu64 "\r\n", value);
			aconn_send(c, 204, NULL, NULL, extra);
		}
	}
	free(op);
}

static void
admin_cache(struct aconn *c, const struct http_msg *m, const char *q,
    size_t qlen, bool clear)
{
	struct admin *a = c->a;
	struct cache_store *st = a->store;
	struct admin_op *op;
	ssize_t ul, tl, kl = -1;

	if (m->meth != HTTP_M_POST) {
		aconn_send_error(c, 405, "method not allowed",
		    "Allow: POST\r\n");
		return;
	}
	ul = tl = -1;
	if (!clear) {
		/* url is decoded into a->arg and turned into a->key before
		 * tag reuses a->arg: only one of them may be given anyway. */
		ul = query_param(q, qlen, "url", a->arg, sizeof a->arg);
		if (ul >= 0)
			kl = purge_url_key(a, a->arg, (size_t)ul);
		tl = query_param(q, qlen, "tag", a->arg, sizeof a->arg);
		if (ul == -2 || tl == -2 || (ul >= 0) == (tl >= 0)) {
			aconn_send_error(c, 400, ul == -2 || tl == -2 ?
			    "bad parameter encoding" :
			    "want one parameter: url or tag", NULL);
			return;
		}
		if (ul >= 0 && kl < 0) {
			aconn_send_error(c, 400,
			    "bad url: want http://HOST/PATH?QUERY", NULL);
			return;
		}
	}
	if (st == NULL) {
		aconn_send_error(c, 404, "no cache", NULL);
		return;
	}
	op = calloc(1, sizeof *op);
	if (op == NULL) {
		aconn_send_error(c, 503, "out of memory", NULL);
		return;
	}
	op->c = c;
	c->op = op;
	c->state = AC_WAIT;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	/* The callback may run before these return (memory store). */
	if (clear) {
		op->kind = OP_CLEAR;
		st->ops->clear(st, admin_op_cb, op);
	} else if (ul >= 0) {
		op->kind = OP_DEL;
		st->ops->del(st, a->key, (size_t)kl, admin_op_cb, op);
	} else {
		op->kind = OP_TAG;
		st->ops->purge_tag(st, a->arg, (size_t)tl, admin_op_cb, op);
	}
}

/*--------------------------------------------------------------------
 * Dispatch
 */

static bool
path_is(const char *p, size_t len, const char *lit)
{
	return (strlen(lit) == len && memcmp(p, lit, len) == 0);
}

static void
admin_render(struct aconn *c, const struct http_msg *m,
    void (*render)(const struct admin *, struct evbuffer *),
    const char *ctype)
{
	struct evbuffer *b;

	if (m->meth != HTTP_M_GET && m->meth != HTTP_M_HEAD) {
		aconn_send_error(c, 405, "method not allowed",
		    "Allow: GET, HEAD\r\n");
		return;
	}
	b = evbuffer_new();
	if (b == NULL) {
		aconn_close(c);
		return;
	}
	if (render != NULL)
		render(c->a, b);
	else
		evbuffer_add(b, "ok\n", 3);
	aconn_send(c, 200, ctype, b, NULL);
	evbuffer_free(b);
}

static void
admin_dispatch(struct aconn *c, const struct http_msg *m)
{
	const char *p = m->path, *q;
	size_t plen = m->path_len, qlen = 0;

	c->head_only = m->meth == HTTP_M_HEAD;
	if (p == NULL || plen == 0 || p[0] != '/') {
		aconn_send_error(c, 404, "not found", NULL);
		return;
	}
	q = memchr(p, '?', plen);
	if (q != NULL) {
		qlen = plen - (size_t)(q - p) - 1;
		plen = (size_t)(q - p);
		q++;
	}
	if (path_is(p, plen, "/health"))
		admin_render(c, m, NULL, "text/plain");
	else if (path_is(p, plen, "/stats"))
		admin_render(c, m, render_stats, "application/json");
	else if (path_is(p, plen, "/metrics"))
		admin_render(c, m, render_metrics,
		    "text/plain; version=0.0.4; charset=utf-8");
	else if (path_is(p, plen, "/cache/purge"))
		admin_cache(c, m, q != NULL ? q : "", qlen, false);
	else if (path_is(p, plen, "/cache/clear"))
		admin_cache(c, m, q != NULL ? q : "", qlen, true);
	else
		aconn_send_error(c, 404, "not found", NULL);
}

static void
aconn_readcb(struct bufferevent *bev, void *arg)
{
	struct aconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct http_msg m;
	struct http1_err err;
	size_t len;
	const char *buf;
	ssize_t r;

	CHECK_OBJ_NOTNULL(c, ACONN_MAGIC);
	if (c->state == AC_LINGER) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	if (c->state != AC_HEAD)
		return;
	len = evbuffer_get_length(in);
	buf = (const char *)evbuffer_pullup(in, -1);
	if (buf == NULL && len > 0) {
		aconn_close(c);
		return;
	}
	r = http1_parse_request(buf, len, ADMIN_MAX_HEAD, &m, &err);
	if (r == HTTP1_AGAIN)
		return;
	if (r == HTTP1_ERROR) {
		c->head_only = false;
		aconn_send_error(c, err.status, err.reason != NULL ?
		    err.reason : "bad request", NULL);
	} else
		admin_dispatch(c, &m);
	/* Views into `in` are dead from here on. */
	if (c->state != AC_DEAD)
		evbuffer_drain(in, evbuffer_get_length(in));
}

static void
aconn_writecb(struct bufferevent *bev, void *arg)
{
	struct aconn *c = arg;

	CHECK_OBJ_NOTNULL(c, ACONN_MAGIC);
	if (c->state != AC_WRITE)
		return;
	/* Flushed: lingering close, so unread request bytes cannot make
	 * the kernel reset the connection under the response. */
	c->state = AC_LINGER;
	(void)shutdown(bufferevent_getfd(bev), SHUT_WR);
	bufferevent_disable(bev, EV_WRITE);
	bufferevent_set_timeouts(bev, &admin_tv_linger, NULL);
	bufferevent_enable(bev, EV_READ);
}

static void
aconn_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct aconn *c = arg;

	CHECK_OBJ_NOTNULL(c, ACONN_MAGIC);
	(void)bev;
	(void)what;
	/* EOF, error or timeout, in any state: nothing more to do. */
	aconn_close(c);
}

/*--------------------------------------------------------------------
 * Listener
 */

static void
admin_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct admin *a = arg;
	struct aconn *c;

	CHECK_OBJ_NOTNULL(a, ADMIN_MAGIC);
	(void)l;
	(void)sa;
	(void)salen;
	if (a->stopped) {
		close(fd);
		return;
	}
	c = calloc(1, sizeof *c);
	if (c == NULL) {
		close(fd);
		return;
	}
	c->magic = ACONN_MAGIC;
	c->a = a;
	c->bev = bufferevent_socket_new(a->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	c->state = AC_HEAD;
	bufferevent_setcb(c->bev, aconn_readcb, aconn_writecb, aconn_eventcb, c);
	/* Stop reading once the head cannot fit any more: the parser then
	 * answers 431 instead of the buffer growing. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, ADMIN_MAX_HEAD + 1);
	bufferevent_set_timeouts(c->bev, &admin_tv_io, &admin_tv_io);
	bufferevent_enable(c->bev, EV_READ);
	TAILQ_INSERT_TAIL(&a->conns, c, link);
	a->nconns++;
	admin_update_listener(a);
}

static void
admin_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;

	CHECK_OBJ_NOTNULL(a, ADMIN_MAGIC);
	a->paused = true;               /* let update decide */
	if (!a->stopped)
		admin_update_listener(a);
}

static void
admin_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct admin *a = arg;
	int e = EVUTIL_SOCKET_ERROR();

	CHECK_OBJ_NOTNULL(a, ADMIN_MAGIC);
	/* EMFILE and friends: back off instead of spinning. */
	log_warn("admin: accept failed: %s", strerror(e));
	evconnlistener_disable(l);
	a->paused = true;
	evtimer_add(a->retry, &admin_tv_retry);
}

struct admin *
admin_start(struct event_base *base, int fd, const struct config *cfg,
    struct cache_store *store)
{
	struct admin *a;

	AN(base);
	CHECK_OBJ_NOTNULL(cfg, CONFIG_MAGIC);
	a = calloc(1, sizeof *a);
	if (a == NULL) {
		close(fd);
		return (NULL);
	}
	a->magic = ADMIN_MAGIC;
	a->base = base;
	a->cfg = cfg;
	a->store = store;
	TAILQ_INIT(&a->conns);
	TAILQ_INIT(&a->graveyard);
	a->reaper = event_new(base, -1, 0, admin_reaper_cb, a);
	a->retry = evtimer_new(base, admin_retry_cb, a);
	/* backlog 0: the master already listens on fd.  libevent accepts
	 * until EAGAIN, so the socket must not block. */
	if (a->reaper != NULL && a->retry != NULL &&
	    evutil_make_socket_nonblocking(fd) == 0)
		a->lis = evconnlistener_new(base, admin_accept_cb, a,
		    LEV_OPT_CLOSE_ON_FREE, 0, fd);
	if (a->lis == NULL) {
		close(fd);
		if (a->reaper != NULL)
			event_free(a->reaper);
		if (a->retry != NULL)
			event_free(a->retry);
		free(a);
		return (NULL);
	}
	evconnlistener_set_error_cb(a->lis, admin_accept_error_cb);
	return (a);
}

void
admin_stop(struct admin *a)
{
	struct aconn *c, *c2;

	CHECK_OBJ_NOTNULL(a, ADMIN_MAGIC);
	if (a->stopped)
		return;
	a->stopped = true;
	evtimer_del(a->retry);
	evconnlistener_free(a->lis);
	a->lis = NULL;
	for (c = TAILQ_FIRST(&a->conns); c != NULL; c = c2) {
		c2 = TAILQ_NEXT(c, link);
		if (c->state == AC_HEAD)
			aconn_close(c);
	}
}

void
admin_free(struct admin *a)
{
	struct aconn *c;

	if (a == NULL)
		return;
	CHECK_OBJ_NOTNULL(a, ADMIN_MAGIC);
	admin_stop(a);
	while ((c = TAILQ_FIRST(&a->conns)) != NULL)
		aconn_close(c);
	admin_reap(a);
	event_free(a->reaper);
	event_free(a->retry);
	a->magic = 0;
	free(a);
}
