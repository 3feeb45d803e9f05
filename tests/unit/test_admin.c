/*
 * Unit tests for admin.c: every endpoint over a real socket, with a fake
 * cache store (so purge keys, results and late callbacks are under the
 * test's control) and a real stats zone.  The client runs in a thread
 * doing blocking I/O while the test drives the event loop.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "admin.h"
#include "cache/cache.h"
#include "config.h"
#include "stats.h"

/*--------------------------------------------------------------------
 * A fake store: records what it was asked, answers now or later.
 */

struct fake {
	struct cache_store       store;
	char                     last_key[512];
	char                     last_tag[128];
	int                      ndel, ntag, nclear;
	enum cache_rc            rc;            /* what to answer */
	bool                     defer;         /* keep the callback */
	cache_done_cb           *cb;
	void                    *cb_arg;
};

static struct fake *
fake_of(struct cache_store *s)
{
	return ((struct fake *)s->priv);
}

static void
fake_answer(struct fake *f, cache_done_cb *cb, void *arg, uint64_t value)
{
	if (f->defer) {
		f->cb = cb;
		f->cb_arg = arg;
	} else if (cb != NULL)
		cb(arg, f->rc, value);
}

static void
fake_del(struct cache_store *s, const char *key, size_t klen,
    cache_done_cb *cb, void *arg)
{
	struct fake *f = fake_of(s);

	snprintf(f->last_key, sizeof f->last_key, "%.*s", (int)klen, key);
	f->ndel++;
	fake_answer(f, cb, arg, 0);
}

static void
fake_purge_tag(struct cache_store *s, const char *tag, size_t tlen,
    cache_done_cb *cb, void *arg)
{
	struct fake *f = fake_of(s);

	snprintf(f->last_tag, sizeof f->last_tag, "%.*s", (int)tlen, tag);
	f->ntag++;
	fake_answer(f, cb, arg, 3);
}

static void
fake_clear(struct cache_store *s, cache_done_cb *cb, void *arg)
{
	struct fake *f = fake_of(s);

	f->nclear++;
	fake_answer(f, cb, arg, 7);
}

static void
fake_stats(struct cache_store *s, struct cache_stats *out)
{
	(void)s;
	memset(out, 0, sizeof *out);
	out->entries = 42;
	out->bytes = 4096;
	out->evictions = 5;
}

static const struct cache_ops fake_ops = {
	.name = "fake",
	.del = fake_del,
	.purge_tag = fake_purge_tag,
	.clear = fake_clear,
	.stats = fake_stats,
};

/*--------------------------------------------------------------------
 * Fixture: a config with two routes and two upstreams, a stats zone, a
 * listening socket and the admin on it.
 */

static char up_app[] = "app";
static char up_q[] = "q\"x";
static char srv1[] = "127.0.0.1:8000";
static char srv2[] = "[::1]:8001";
static char srv3[] = "127.0.0.1:9000";
static char pfx_api[] = "/api/";
static char pfx_root[] = "/";
static char host_api[] = "api.example.com";
static char ns[] = "stoa";

static struct config_addr app_servers[] = {
	{ .text = srv1 }, { .text = srv2 },
};
static struct config_addr q_servers[] = { { .text = srv3 } };

static struct config_upstream upstreams[] = {
	{ .name = up_app, .nservers = 2, .servers = app_servers },
	{ .name = up_q, .nservers = 1, .servers = q_servers },
};

static struct config_route routes[] = {
	{ .prefix = pfx_api, .host = host_api, .upstream = 0, .cache = true },
	{ .prefix = pfx_root, .host = NULL, .upstream = 1 },
};

struct fx {
	struct config            cfg;
	struct stats_zone       *sz;
	struct event_base       *base;
	struct admin            *admin;
	struct fake              fake;
	int                      port;
};

static int
fx_start(void **state, bool with_store)
{
	struct fx *fx = calloc(1, sizeof *fx);
	struct sockaddr_in sin;
	socklen_t sl = sizeof sin;
	char err[256];
	int fd;

	if (fx == NULL)
		return (-1);
	fx->cfg.magic = CONFIG_MAGIC;
	fx->cfg.workers = 3;
	fx->cfg.cache.namespace = ns;
	fx->cfg.nupstreams = 2;
	fx->cfg.upstreams = upstreams;
	fx->cfg.nroutes = 2;
	fx->cfg.routes = routes;
	fx->sz = stats_zone_create(err, sizeof err);
	if (fx->sz == NULL)
		return (-1);
	stats_attach(fx->sz);
	fx->fake.store.ops = &fake_ops;
	fx->fake.store.priv = &fx->fake;
	fx->fake.rc = CACHE_OK;
	fx->base = event_base_new();
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fx->base == NULL || fd < 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
	    listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl) != 0)
		return (-1);
	fx->port = ntohs(sin.sin_port);
	fx->admin = admin_start(fx->base, fd, &fx->cfg,
	    with_store ? &fx->fake.store : NULL);
	if (fx->admin == NULL)
		return (-1);
	*state = fx;
	return (0);
}

static int
setup(void **state)
{
	return (fx_start(state, true));
}

static int
setup_nostore(void **state)
{
	return (fx_start(state, false));
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	admin_free(fx->admin);
	event_base_free(fx->base);
	stats_attach(NULL);
	stats_zone_destroy(fx->sz);
	free(fx);
	return (0);
}

/*--------------------------------------------------------------------
 * Client: one request in a thread, the loop turns until it is done.
 */

struct call {
	int                      port;
	const char              *req;
	bool                     close_early;   /* send, then hang up */
	char                     resp[65536];
	size_t                   len;
	volatile int             done;
};

static void *
client_main(void *arg)
{
	struct call *c = arg;
	struct sockaddr_in sin;
	struct timeval tv = { 5, 0 };
	ssize_t n;
	int fd;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)c->port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0) {
		if (c->req[0] != '\0')
			(void)send(fd, c->req, strlen(c->req), MSG_NOSIGNAL);
		while (!c->close_early && c->len < sizeof c->resp - 1 &&
		    (n = recv(fd, c->resp + c->len,
		    sizeof c->resp - 1 - c->len, 0)) > 0)
			c->len += (size_t)n;
	}
	c->resp[c->len] = '\0';
	close(fd);
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
	return (NULL);
}

/* Turn the loop until the client finished or ~6 s passed. */
static void
spin_until(struct fx *fx, volatile int *flag)
{
	for (int i = 0; i < 6000 && !__atomic_load_n(flag, __ATOMIC_ACQUIRE);
	    i++) {
		(void)event_base_loop(fx->base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	(void)event_base_loop(fx->base, EVLOOP_NONBLOCK);
}

static void
spin_ms(struct fx *fx, int ms)
{
	for (int i = 0; i < ms; i++) {
		(void)event_base_loop(fx->base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

static struct call *
call_start(struct fx *fx, const char *req, pthread_t *th)
{
	struct call *c = calloc(1, sizeof *c);

	assert_non_null(c);
	c->port = fx->port;
	c->req = req;
	assert_int_equal(pthread_create(th, NULL, client_main, c), 0);
	return (c);
}

/* Send req, return the status; the response stays in *out (free it). */
static int
do_call(struct fx *fx, const char *req, struct call **out)
{
	pthread_t th;
	struct call *c = call_start(fx, req, &th);
	int status = -1;

	spin_until(fx, &c->done);
	assert_int_equal(pthread_join(th, NULL), 0);
	if (sscanf(c->resp, "HTTP/1.1 %d ", &status) != 1)
		status = -1;
	*out = c;
	return (status);
}

static const char *
body_of(const struct call *c)
{
	const char *p = strstr(c->resp, "\r\n\r\n");

	return (p != NULL ? p + 4 : "");
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: admin\r\n\r\n"
#define POST(path) "POST " path " HTTP/1.1\r\nHost: admin\r\n" \
	"Content-Length: 0\r\n\r\n"

/*--------------------------------------------------------------------
 * Tests
 */

static void
test_health(void **state)
{
	struct call *c;

	assert_int_equal(do_call(*state, GET("/health"), &c), 200);
	assert_string_equal(body_of(c), "ok\n");
	assert_non_null(strstr(c->resp, "Content-Type: text/plain\r\n"));
	assert_non_null(strstr(c->resp, "Connection: close\r\n"));
	free(c);
}

static void
test_stats_json(void **state)
{
	struct fx *fx = *state;
	char name[STATS_NAME_MAX];
	struct timespec ts;
	struct call *c;
	const char *b;
	int s;

	stats_status(200);
	stats_status(200);
	stats_status(503);
	stats_add(STAT_CACHE_HIT, 3);
	stats_add(STAT_CACHE_MISS, 1);
	stats_route_name(name, sizeof name, pfx_api, host_api);
	s = stats_slot(STATS_SLOT_ROUTE, name);
	stats_slot_status(s, 200);
	stats_server_name(name, sizeof name, up_app, srv2);
	s = stats_slot(STATS_SLOT_SERVER, name);
	stats_slot_add(s, SLOT_FAILURES, 4);
	clock_gettime(CLOCK_REALTIME, &ts);
	stats_slot_set(s, SLOT_DOWN_UNTIL, (int64_t)ts.tv_sec * 1000 + 60000);

	assert_int_equal(do_call(fx, GET("/stats"), &c), 200);
	assert_non_null(strstr(c->resp, "Content-Type: application/json"));
	b = body_of(c);
	assert_non_null(strstr(b, "\"workers\":3"));
	assert_non_null(strstr(b, "\"requests\":{\"total\":3,\"1xx\":0,"
	    "\"2xx\":2,\"3xx\":0,\"4xx\":0,\"5xx\":1"));
	assert_non_null(strstr(b, "{\"route\":\"/api/\",\"host\":"
	    "\"api.example.com\",\"upstream\":\"app\",\"cache\":true,"
	    "\"requests\":1,\"1xx\":0,\"2xx\":1"));
	assert_non_null(strstr(b, "{\"route\":\"/\",\"host\":null,"
	    "\"upstream\":\"q\\\"x\""));
	assert_non_null(strstr(b, "{\"server\":\"127.0.0.1:8000\","
	    "\"state\":\"up\",\"requests\":0,\"failures\":0}"));
	assert_non_null(strstr(b, "{\"server\":\"[::1]:8001\","
	    "\"state\":\"down\",\"requests\":0,\"failures\":4}"));
	assert_non_null(strstr(b, "\"backend\":\"fake\",\"hits\":3,"
	    "\"misses\":1,\"expired\":0"));
	assert_non_null(strstr(b, "\"hit_ratio\":0.7500,\"entries\":42,"
	    "\"bytes\":4096"));
	assert_non_null(strstr(b, "\"evictions\":5"));
	free(c);
}

static void
test_stats_without_store(void **state)
{
	struct call *c;

	assert_int_equal(do_call(*state, GET("/stats"), &c), 200);
	assert_non_null(strstr(body_of(c), "\"cache\":{\"backend\":null,"));
	assert_non_null(strstr(body_of(c), "\"hit_ratio\":0.0000,"));
	free(c);
}

static void
test_metrics(void **state)
{
	char name[STATS_NAME_MAX];
	struct call *c;
	const char *b;

	stats_status(404);
	stats_server_name(name, sizeof name, up_app, srv1);
	stats_slot_add(stats_slot(STATS_SLOT_SERVER, name), SLOT_REQUESTS, 9);
	stats_add(STAT_WS_BYTES_DOWN, 77);
	assert_int_equal(do_call(*state, GET("/metrics"), &c), 200);
	assert_non_null(strstr(c->resp,
	    "Content-Type: text/plain; version=0.0.4"));
	b = body_of(c);
	assert_non_null(strstr(b, "# TYPE stoa_requests_total counter\n"));
	assert_non_null(strstr(b, "\nstoa_requests_total{code=\"404\"} 1\n"));
	assert_null(strstr(b, "code=\"200\""));
	assert_non_null(strstr(b, "\nstoa_upstream_requests_total"
	    "{upstream=\"app\",server=\"127.0.0.1:8000\"} 9\n"));
	assert_non_null(strstr(b, "\nstoa_upstream_up"
	    "{upstream=\"q\\\"x\",server=\"127.0.0.1:9000\"} 1\n"));
	assert_non_null(strstr(b, "\nstoa_route_requests_total"
	    "{route=\"/\",host=\"*\"} 0\n"));
	assert_non_null(strstr(b, "\nstoa_cache_entries 42\n"));
	assert_non_null(strstr(b, "\nstoa_cache_hits_total 0\n"));
	assert_non_null(strstr(b, "\nstoa_connections 0\n"));
	assert_non_null(strstr(b, "\nstoa_websocket_tunnels 0\n"));
	assert_non_null(strstr(b,
	    "\nstoa_websocket_bytes_total{direction=\"down\"} 77\n"));
	free(c);
}

static void
test_head_has_no_body(void **state)
{
	struct call *c;

	assert_int_equal(do_call(*state,
	    "HEAD /stats HTTP/1.1\r\nHost: a\r\n\r\n", &c), 200);
	assert_string_equal(body_of(c), "");
	assert_non_null(strstr(c->resp, "Content-Length: "));
	free(c);
}

static void
test_purge_url_builds_the_key(void **state)
{
	struct fx *fx = *state;
	struct call *c;

	assert_int_equal(do_call(fx, POST("/cache/purge?url="
	    "http%3A%2F%2FExample.COM%3A8080%2Fa%2Fb%3Fx%3D1%26y%3D%252F"),
	    &c), 204);
	assert_string_equal(fx->fake.last_key,
	    "stoa:GET:example.com:8080:/a/b?x=1&y=%2F");
	assert_string_equal(body_of(c), "");
	free(c);

	/* No path: "/"; query only: "/?q". */
	assert_int_equal(do_call(fx, POST("/cache/purge?url=http://h"), &c),
	    204);
	assert_string_equal(fx->fake.last_key, "stoa:GET:h:/");
	free(c);
	assert_int_equal(do_call(fx, POST("/cache/purge?url=https://h?q"),
	    &c), 204);
	assert_string_equal(fx->fake.last_key, "stoa:GET:h:/?q");
	free(c);
	assert_int_equal(fx->fake.ndel, 3);
}

static void
test_purge_url_absent_is_404(void **state)
{
	struct fx *fx = *state;
	struct call *c;

	fx->fake.rc = CACHE_MISS;
	assert_int_equal(do_call(fx, POST("/cache/purge?url=http://h/x"), &c),
	    404);
	assert_int_equal(fx->fake.ndel, 1);
	free(c);
}

static void
test_purge_store_error_is_503(void **state)
{
	struct fx *fx = *state;
	struct call *c;

	fx->fake.rc = CACHE_ERROR;
	assert_int_equal(do_call(fx, POST("/cache/purge?tag=t"), &c), 503);
	free(c);
}

static void
test_purge_tag_and_clear(void **state)
{
	struct fx *fx = *state;
	struct call *c;

	assert_int_equal(do_call(fx, POST("/cache/purge?tag=blue%20x"), &c),
	    204);
	assert_string_equal(fx->fake.last_tag, "blue x");
	assert_non_null(strstr(c->resp, "X-Purged-Entries: 3\r\n"));
	free(c);
	assert_int_equal(do_call(fx, POST("/cache/clear"), &c), 204);
	assert_int_equal(fx->fake.nclear, 1);
	assert_non_null(strstr(c->resp, "X-Purged-Entries: 7\r\n"));
	free(c);
}

static void
test_bad_requests(void **state)
{
	static const char *bad[] = {
		POST("/cache/purge"),
		POST("/cache/purge?url="),
		POST("/cache/purge?url=%zz"),
		POST("/cache/purge?url=%4"),
		POST("/cache/purge?url=ftp://h/"),
		POST("/cache/purge?url=/just/a/path"),
		POST("/cache/purge?url=http://user@h/"),
		POST("/cache/purge?url=http://h/%00"),
		POST("/cache/purge?url=http://h/&tag=t"),
		POST("/cache/purge?tag="),
		"GET /health HTTP/1.1\r\n\r\n",            /* no Host */
	};
	struct fx *fx = *state;
	struct call *c;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(do_call(fx, bad[i], &c), 400);
		assert_non_null(strstr(body_of(c), "{\"error\":"));
		free(c);
	}
	assert_int_equal(fx->fake.ndel + fx->fake.ntag, 0);
}

static void
test_wrong_method_405(void **state)
{
	struct fx *fx = *state;
	struct call *c;

	assert_int_equal(do_call(fx, GET("/cache/clear"), &c), 405);
	assert_non_null(strstr(c->resp, "\r\nAllow: POST\r\n"));
	free(c);
	assert_int_equal(do_call(fx, POST("/stats"), &c), 405);
	assert_non_null(strstr(c->resp, "\r\nAllow: GET, HEAD\r\n"));
	free(c);
	assert_int_equal(fx->fake.nclear, 0);
}

static void
test_unknown_path_404(void **state)
{
	struct call *c;

	assert_int_equal(do_call(*state, GET("/stats/"), &c), 404);
	free(c);
	assert_int_equal(do_call(*state, GET("/"), &c), 404);
	free(c);
	assert_int_equal(do_call(*state, GET("/cache/purgex"), &c), 404);
	free(c);
}

static void
test_head_too_large_431(void **state)
{
	static char req[20100];
	struct call *c;

	snprintf(req, sizeof req, "GET /health HTTP/1.1\r\nHost: a\r\nX: ");
	memset(req + strlen(req), 'a', 20000);
	assert_int_equal(do_call(*state, req, &c), 431);
	free(c);
}

static void
test_no_store_404(void **state)
{
	struct call *c;

	assert_int_equal(do_call(*state, POST("/cache/clear"), &c), 404);
	assert_string_equal(body_of(c), "{\"error\":\"no cache\"}\n");
	free(c);
	assert_int_equal(do_call(*state, POST("/cache/purge?tag=a"), &c), 404);
	free(c);
	/* Parameters are still checked first. */
	assert_int_equal(do_call(*state, POST("/cache/purge"), &c), 400);
	free(c);
}

static void
test_late_store_answer(void **state)
{
	struct fx *fx = *state;
	pthread_t th;
	struct call *c;

	fx->fake.defer = true;
	c = call_start(fx, POST("/cache/clear"), &th);
	spin_ms(fx, 200);
	assert_int_equal(fx->fake.nclear, 1);
	assert_non_null(fx->fake.cb);
	assert_false(__atomic_load_n(&c->done, __ATOMIC_ACQUIRE));
	fx->fake.cb(fx->fake.cb_arg, CACHE_OK, 2);
	spin_until(fx, &c->done);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_non_null(strstr(c->resp, "HTTP/1.1 204 "));
	assert_non_null(strstr(c->resp, "X-Purged-Entries: 2\r\n"));
	free(c);
}

static void
test_late_store_answer_after_admin_free(void **state)
{
	struct fx *fx = *state;
	pthread_t th;
	struct call *c;

	fx->fake.defer = true;
	c = call_start(fx, POST("/cache/purge?url=http://h/"), &th);
	spin_ms(fx, 200);
	assert_non_null(fx->fake.cb);
	/* The connection and the admin go away first; the answer that
	 * arrives afterwards is dropped (ASan checks it touches nothing). */
	admin_free(fx->admin);
	fx->admin = NULL;
	fx->fake.cb(fx->fake.cb_arg, CACHE_OK, 0);
	spin_until(fx, &c->done);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(c->len, 0);
	free(c);
}

static void
test_stop_closes_idle_connections(void **state)
{
	struct fx *fx = *state;
	pthread_t th;
	struct call *c;

	/* Connected, no request sent: idle. */
	c = call_start(fx, "", &th);
	spin_ms(fx, 200);
	assert_false(__atomic_load_n(&c->done, __ATOMIC_ACQUIRE));
	admin_stop(fx->admin);
	spin_until(fx, &c->done);
	assert_true(__atomic_load_n(&c->done, __ATOMIC_ACQUIRE));
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(c->len, 0);
	free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
#define TN(f) cmocka_unit_test_setup_teardown(f, setup_nostore, teardown)
		T(test_health),
		T(test_stats_json),
		TN(test_stats_without_store),
		T(test_metrics),
		T(test_head_has_no_body),
		T(test_purge_url_builds_the_key),
		T(test_purge_url_absent_is_404),
		T(test_purge_store_error_is_503),
		T(test_purge_tag_and_clear),
		T(test_bad_requests),
		T(test_wrong_method_405),
		T(test_unknown_path_404),
		T(test_head_too_large_431),
		TN(test_no_store_404),
		T(test_late_store_answer),
		T(test_late_store_answer_after_admin_free),
		T(test_stop_closes_idle_connections),
#undef T
#undef TN
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
