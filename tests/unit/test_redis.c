/*
 * Unit tests for cache/redis.c against a real redis-server, started here
 * on a free port (and a unix socket) with persistence off, and stopped by
 * its PID at the end.  Exit 77 (skipped) when redis-server is not
 * installed.  Each test drives a libevent base until its callbacks fired,
 * always bounded by a guard timer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "cache/cache.h"
#include "cache/redis.h"
#include "log.h"
#include "util.h"
#include "vas.h"
#include "store_cb.h"

#define TMO     200u            /* the stores' timeout_ms */
#define SLACK   250u            /* scheduling margin on top of it */

/*--------------------------------------------------------------------
 * The redis-server
 */

static struct {
	pid_t   pid;
	int     port;
	char    dir[256];
	char    sock[300];
	char    url[64];
	char    uurl[320];
} srv;

static const char *
redis_server_path(void)
{
	static char buf[512];
	const char *path = getenv("PATH"), *p, *e;

	if (path == NULL)
		path = "/usr/bin:/bin:/usr/sbin:/sbin";
	for (p = path; *p != '\0'; p = *e != '\0' ? e + 1 : e) {
		e = strchr(p, ':');
		if (e == NULL)
			e = p + strlen(p);
		snprintf(buf, sizeof buf, "%.*s/redis-server", (int)(e - p), p);
		if (access(buf, X_OK) == 0)
			return (buf);
	}
	if (access("/usr/sbin/redis-server", X_OK) == 0)
		return ("/usr/sbin/redis-server");
	return (NULL);
}

static int
free_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	int fd, port;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return (port);
}

static void
msleep(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		continue;
}

/* A synchronous client (the "other application"); NULL if not up. */
static redisContext *
sync_client(void)
{
	struct timeval tv = { 1, 0 };
	redisContext *c;

	c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
	if (c != NULL && c->err != 0) {
		redisFree(c);
		c = NULL;
	}
	return (c);
}

static void
server_start(void)
{
	const char *bin = redis_server_path();
	char port[16];
	redisContext *c;
	redisReply *r;
	int i, fd;

	assert_non_null(bin);
	snprintf(port, sizeof port, "%d", srv.port);
	srv.pid = fork();
	assert_true(srv.pid >= 0);
	if (srv.pid == 0) {
		/* Should this test crash, the server goes with it. */
		(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
		fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(bin, "redis-server", "--port", port, "--bind",
		    "127.0.0.1", "--save", "", "--appendonly", "no",
		    "--unixsocket", srv.sock, "--unixsocketperm", "700",
		    "--dir", srv.dir, "--daemonize", "no", (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 100; i++) {
		c = sync_client();
		if (c != NULL) {
			r = redisCommand(c, "PING");
			redisFree(c);
			if (r != NULL) {
				freeReplyObject(r);
				return;
			}
		}
		msleep(50);
	}
	fail_msg("redis-server did not come up on port %d", srv.port);
}

static void
server_stop(void)
{
	int st, i;

	if (srv.pid <= 0)
		return;
	(void)kill(srv.pid, SIGCONT);
	(void)kill(srv.pid, SIGTERM);
	for (i = 0; i < 100; i++) {
		if (waitpid(srv.pid, &st, WNOHANG) == srv.pid) {
			srv.pid = 0;
			return;
		}
		msleep(20);
	}
	(void)kill(srv.pid, SIGKILL);
	(void)waitpid(srv.pid, &st, 0);
	srv.pid = 0;
}

/* Run a command on a fresh synchronous connection; the reply (or NULL). */
static redisReply *
cmd(const char *fmt, ...)
{
	redisContext *c = sync_client();
	redisReply *r;
	va_list ap;

	assert_non_null(c);
	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	assert_non_null(r);
	return (r);
}

static long long
cmd_int(const char *fmt, ...)
{
	redisContext *c = sync_client();
	redisReply *r;
	long long v;
	va_list ap;

	assert_non_null(c);
	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	assert_non_null(r);
	if (r->type != REDIS_REPLY_INTEGER)
		fail_msg("expected an integer reply, got type %d (%s)",
		    r->type, r->str != NULL ? r->str : "");
	v = r->integer;
	freeReplyObject(r);
	return (v);
}

/*--------------------------------------------------------------------
 * Driving the loop
 */

struct fx {
	struct event_base       *base;
};

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Run base until *calls > 0 or max_ms passed.  Returns *calls. */
static int
run_until(struct event_base *base, const int *calls, uint64_t max_ms)
{
	struct timeval tv = { (time_t)(max_ms / 1000),
	    (suseconds_t)(max_ms % 1000) * 1000 };
	bool expired = false;
	struct event *guard;

	guard = evtimer_new(base, guard_cb, &expired);
	assert_non_null(guard);
	evtimer_add(guard, &tv);
	while (*calls == 0 && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(guard);
	return (*calls);
}

static void
run_for(struct event_base *base, uint64_t ms)
{
	int never = 0;

	(void)run_until(base, &never, ms);
}

static const char *
rc_name(enum cache_rc rc)
{
	static const char *n[] = { "OK", "MISS", "EXISTS", "LOCKED",
	    "TOO_BIG", "ERROR" };

	return ((unsigned)rc < 6 ? n[rc] : "?");
}

/* got is evaluated once: it is usually a call that talks to Redis */
#define expect_rc(got, want) do {                                       \
	enum cache_rc got_ = (got);                                     \
									\
	if (got_ != (want))                                             \
		fail_msg("rc %s, expected %s", rc_name(got_),           \
		    rc_name(want));                                     \
} while (0)

static enum cache_rc
do_get(struct fx *f, struct cache_store *s, const char *key, uint64_t now,
    struct cache_obj **obj)
{
	struct getres r = { 0, CACHE_ERROR, NULL };

	s->ops->get(s, key, strlen(key), now, get_cb, &r);
	assert_int_equal(run_until(f->base, &r.calls, 5000), 1);
	if (obj != NULL)
		*obj = r.obj;
	else if (r.obj != NULL)
		s->ops->release(s, r.obj);
	if (r.rc != CACHE_OK)
		assert_null(r.obj);
	return (r.rc);
}

static void
put_init(struct cache_put *p, const char *body, struct iovec *iov,
    struct iovec *tags, unsigned ntags)
{
	memset(p, 0, sizeof *p);
	p->status = 200;
	p->stored_at = util_epoch_ms();
	p->ttl = 60000;
	p->headers = "Content-Type: text/plain\r\n";
	p->headers_len = strlen(p->headers);
	iov->iov_base = (void *)(uintptr_t)body;
	iov->iov_len = strlen(body);
	p->body = iov;
	p->nbody = 1;
	p->tags = tags;
	p->ntags = ntags;
}

static enum cache_rc
do_put(struct fx *f, struct cache_store *s, const char *key,
    const struct cache_put *p, bool add)
{
	struct doneres r = { 0, CACHE_ERROR, 0 };

	if (add)
		s->ops->add(s, key, strlen(key), p, done_cb, &r);
	else
		s->ops->set(s, key, strlen(key), p, done_cb, &r);
	assert_int_equal(run_until(f->base, &r.calls, 5000), 1);
	return (r.rc);
}

static enum cache_rc
do_set(struct fx *f, struct cache_store *s, const char *key,
    const char *body, const char *tag)
{
	struct cache_put p;
	struct iovec iov, t;

	if (tag != NULL) {
		t.iov_base = (void *)(uintptr_t)tag;
		t.iov_len = strlen(tag);
	}
	put_init(&p, body, &iov, &t, tag != NULL ? 1 : 0);
	return (do_put(f, s, key, &p, false));
}

static enum cache_rc
do_done(struct fx *f, struct doneres *r)
{
	assert_int_equal(run_until(f->base, &r->calls, 5000), 1);
	return (r->rc);
}

static enum cache_rc
do_del(struct fx *f, struct cache_store *s, const char *key)
{
	struct doneres r = { 0, CACHE_ERROR, 0 };

	s->ops->del(s, key, strlen(key), done_cb, &r);
	return (do_done(f, &r));
}

static enum cache_rc
do_exists(struct fx *f, struct cache_store *s, const char *key)
{
	struct doneres r = { 0, CACHE_ERROR, 0 };

	s->ops->exists(s, key, strlen(key), util_epoch_ms(), done_cb, &r);
	return (do_done(f, &r));
}

static enum cache_rc
do_lock(struct fx *f, struct cache_store *s, const char *key, uint64_t lease,
    uint64_t *token)
{
	struct doneres r = { 0, CACHE_ERROR, 0 };

	s->ops->lock(s, key, strlen(key), lease, util_epoch_ms(), done_cb, &r);
	(void)do_done(f, &r);
	*token = r.value;
	return (r.rc);
}

/* Wait (bounded) until the store answers something other than ERROR. */
static bool
wait_ready(struct fx *f, struct cache_store *s, uint64_t max_ms)
{
	uint64_t t0 = util_now_ms();

	while (util_now_ms() - t0 < max_ms) {
		if (do_exists(f, s, "stoa:ready") != CACHE_ERROR)
			return (true);
		run_for(f->base, 20);
	}
	return (false);
}

static struct cache_store *
store_url(struct fx *f, const char *url, const char *ns, uint64_t max_obj)
{
	struct cache_store *s;
	char err[256] = "";

	s = cache_redis_store(f->base, url, ns, TMO, max_obj, err, sizeof err);
	if (s == NULL)
		fail_msg("cache_redis_store(%s): %s", url, err);
	assert_string_equal(s->ops->name, "redis");
	return (s);
}

static struct cache_store *
store_ready(struct fx *f, const char *ns)
{
	struct cache_store *s = store_url(f, srv.url, ns, 0);

	assert_true(wait_ready(f, s, 5000));
	return (s);
}

static uint64_t
errors_of(struct cache_store *s)
{
	struct cache_stats st;

	s->ops->stats(s, &st);
	return (st.errors);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	redisReply *r;

	if (f == NULL)
		return (-1);
	f->base = event_base_new();
	if (f->base == NULL)
		return (-1);
	if (srv.pid == 0)
		server_start();
	r = cmd("FLUSHALL");
	freeReplyObject(r);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	event_base_free(f->base);
	free(f);
	return (0);
}

/*--------------------------------------------------------------------
 * Tests
 */

static void
test_url_errors(void **state)
{
	struct fx *f = *state;
	static const char *bad[] = {
		"http://127.0.0.1:6379", "redis://", "redis://:6379",
		"redis://h:0", "redis://h:65536", "redis://h:x",
		"redis://h/abc", "redis://h/1?x=1", "redis://pw@h",
		"redis://:p%zz@h", "redis://[::1", "unix:", "unix:rel.sock",
	};
	static const char *good[] = {
		"redis://127.0.0.1", "redis://127.0.0.1:6380/2",
		"redis://:pw@localhost/1", "redis://u:p%40w@[::1]:6379/0",
		"unix:/tmp/stoa-none.sock", "unix:///tmp/stoa-none.sock",
	};
	struct cache_store *s;
	char err[256];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		err[0] = '\0';
		s = cache_redis_store(f->base, bad[i], "stoa", TMO, 0, err,
		    sizeof err);
		if (s != NULL)
			fail_msg("accepted '%s'", bad[i]);
		assert_non_null(strstr(err, "cache.redis"));
	}
	/* The password never shows in a message. */
	s = cache_redis_store(f->base, "redis://:secret@h:0", "stoa", TMO, 0,
	    err, sizeof err);
	assert_null(s);
	assert_null(strstr(err, "secret"));
	for (i = 0; i < ARRAY_SIZE(good); i++) {
		s = cache_redis_store(f->base, good[i], "stoa", TMO, 0, err,
		    sizeof err);
		if (s == NULL)
			fail_msg("refused '%s': %s", good[i], err);
		cache_redis_store_free(s);
	}
}

static void
test_roundtrip(void **state)
{
	struct fx *f = *state;
	struct cache_store *s = store_ready(f, "stoa");
	struct cache_put p;
	struct cache_obj *o;
	struct iovec body[3], tags[2];
	redisReply *r;
	long long pttl;
	uint64_t now = util_epoch_ms(), e0 = errors_of(s);

	memset(&p, 0, sizeof p);
	p.status = 203;
	p.stored_at = now;
	p.ttl = 10000;
	p.swr = 3000;
	p.sie = 20000;
	p.headers = "X-A: 1\r\nX-B: two\r\n";
	p.headers_len = strlen(p.headers);
	body[0].iov_base = (void *)(uintptr_t)"hello, ";
	body[0].iov_len = 7;
	body[1].iov_base = (void *)(uintptr_t)"";
	body[1].iov_len = 0;
	body[2].iov_base = (void *)(uintptr_t)"w\0rld";
	body[2].iov_len = 5;
	p.body = body;
	p.nbody = 3;
	tags[0].iov_base = (void *)(uintptr_t)"a";
	tags[0].iov_len = 1;
	tags[1].iov_base = (void *)(uintptr_t)"b";
	tags[1].iov_len = 1;
	p.tags = tags;
	p.ntags = 2;
	expect_rc(do_put(f, s, "stoa:GET:example.com:/p?q=1", &p, false),
	    CACHE_OK);

	expect_rc(do_get(f, s, "stoa:GET:example.com:/p?q=1", now + 1, &o),
	    CACHE_OK);
	assert_non_null(o);
	assert_int_equal(o->status, 203);
	assert_int_equal(o->stored_at, now);
	assert_int_equal(o->ttl, 10000);
	assert_int_equal(o->swr, 3000);
	assert_int_equal(o->sie, 20000);
	assert_int_equal(o->headers_len, p.headers_len);
	assert_memory_equal(o->headers, p.headers, p.headers_len);
	assert_int_equal(o->body_len, 12);
	assert_memory_equal(o->body, "hello, w\0rld", 12);
	s->ops->release(s, o);

	/* Redis expires it: PX = ttl + max(swr, sie). */
	pttl = cmd_int("PTTL %s", "stoa:GET:example.com:/p?q=1");
	assert_true(pttl > 30000 - 2000 && pttl <= 30000);
	/* The documented value layout. */
	r = cmd("GET %s", "stoa:GET:example.com:/p?q=1");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_int_equal(r->len, 48 + p.headers_len + 12);
	assert_memory_equal(r->str, "STOA\x01\x00\xcb\x00", 8);
	freeReplyObject(r);
	/* Tag sets hold the key and outlive the entry. */
	assert_int_equal(cmd_int("SISMEMBER %s %s", "stoa:tag:a",
	    "stoa:GET:example.com:/p?q=1"), 1);
	assert_int_equal(cmd_int("SISMEMBER %s %s", "stoa:tag:b",
	    "stoa:GET:example.com:/p?q=1"), 1);
	assert_true(cmd_int("PTTL stoa:tag:a") > 30000);

	/* Past ttl + max(swr, sie) by the caller's clock: a miss. */
	expect_rc(do_get(f, s, "stoa:GET:example.com:/p?q=1", now + 30000,
	    NULL), CACHE_MISS);
	expect_rc(do_get(f, s, "stoa:GET:example.com:/none", now, NULL),
	    CACHE_MISS);
	assert_int_equal(errors_of(s), e0);
	cache_redis_store_free(s);
}

/* A released object does not need the store. */
static void
test_release_after_free(void **state)
{
	struct fx *f = *state;
	struct cache_store *s = store_ready(f, "stoa");
	const struct cache_ops *ops = s->ops;
	struct cache_obj *o;

	expect_rc(do_set(f, s, "stoa:GET:h:/r", "body", NULL), CACHE_OK);
	expect_rc(do_get(f, s, "stoa:GET:h:/r", util_epoch_ms(), &o),
	    CACHE_OK);
	cache_redis_store_free(s);
	assert_memory_equal(o->body, "body", 4);
	ops->release(NULL, o);
}

static void
test_deleted_by_another_client(void **state)
{
	struct fx *f = *state;
	struct cache_store *s = store_ready(f, "stoa");

	expect_rc(do_set(f, s, "stoa:GET:h:/d", "x", NULL), CACHE_OK);
	expect_rc(do_get(f, s, "stoa:GET:h:/d", util_epoch_ms(), NULL),
	    CACHE_OK);
	/* What an application does with redis-py: r.delete(key). */
	assert_int_equal(cmd_int("DEL %s", "stoa:GET:h:/d"), 1);
	expect_rc(do_get(f, s, "stoa:GET:h:/d", util_epoch_ms(), NULL),
	    CACHE_MISS);
	cache_redis_store_free(s);
}

static void
test_add_exists(void **state)
{
	struct fx *f = *state;
	struct cache_store *s = store_ready(f, "stoa");
	struct cache_put p;
	struct cache_obj *o;
	struct iovec iov;

	put_init(&p, "first", &iov, NULL, 0);
	expect_rc(do_put(f, s, "stoa:GET:h:/a", &p, true), CACHE_OK);
	put_init(&p, "second", &iov, NULL, 0);
	expect_rc(do_put(f, s, "stoa:GET:h:/a", &p, true), CACHE_EXISTS);
	expect_rc(do_get(f, s, "stoa:GET:h:/a", util_epoch_ms(), &o),
	    CACHE_OK);
	assert_int_equal(o->body_len, 5);
	assert_memory_equal(o->body, "first", 5);
	s->ops->release(s, o);
	/* set replaces. */
	expect_rc(do_put(f, s, "stoa:GET:h:/a", &p, false), CACHE_OK);
	expect_rc(do_get(f, s, "stoa:GET:h:/a", util_epoch_ms(), &o),
	    CACHE_OK);
	assert_memory_equal(o->body, "second", 6);
	s->ops->release(s, o);
	cache_redis_store_free(s);
}

static void
test_del_exists(void **state)
{
	struct fx *f = *state;
	struct cache_store *s = store_ready(f, "stoa");

	expect_rc(do_exists(f, s, "stoa:GET:h:/e"), CACHE_MISS);
	expect_rc(do_del(f, s, "stoa:GET:h:/e"), CACHE_MISS);
	expect_rc(do_set(f, s, "stoa:GET:h:/e", "x", NULL), CACHE_OK);
	expect_rc(do_exists(f, s, "stoa:GET:h:/e"), CACHE_OK);
	expect_rc(do_del(f, s, "stoa:GET:h:/e"), CACHE_OK);
	expect_rc(do_exists(f, s, "stoa:GET:h:/e"), CACHE_MISS);
	assert_int_equal(cmd_int("EXISTS %s", "stoa:GET:h:/e"), 0);
	cache_redis_store_free(s);
}

static void
test_clear_only_namespace(void **state)
{
	struct fx *f = *state;
	struct cache_store *s = store_ready(f, "stoa");
	struct doneres r = { 0, CACHE_ERROR, 0 };
	uint64_t token;
	redisContext *c;
	redisReply *rr;
	char key[64];
	int i;

	c = sync_client();
	assert_non_null(c);
	for (i = 0; i < 1200; i++) {   /* several SCAN rounds */
		snprintf(key, sizeof key, "stoa:GET:h:/%d", i);
		assert_int_equal(redisAppendCommand(c, "SET %s v", key),
		    REDIS_OK);
	}
	for (i = 0; i < 1200; i++) {
		assert_int_equal(redisGetReply(c, (void **)&rr), REDIS_OK);
		freeReplyObject(rr);
	}
	redisFree(c);
	expect_rc(do_set(f, s, "stoa:GET:h:/tagged", "x", "t"), CACHE_OK);
	expect_rc(do_lock(f, s, "stoa:GET:h:/locked", 60000, &token),
	    CACHE_OK);
	freeReplyObject(cmd("SET other:x 1"));
	freeReplyObject(cmd("SET stoa2:GET:h:/ 1"));
	freeReplyObject(cmd("SET stoa 1"));
	s->ops->clear(s, done_cb, &r);
	expect_rc(do_done(f, &r), CACHE_OK);
	assert_int_equal(r.value, 1201);
	assert_int_equal(cmd_int("EXISTS stoa:GET:h:/0 stoa:GET:h:/1199 "
	    "stoa:GET:h:/tagged stoa:tag:t"), 0);
	assert_int_equal(cmd_int("EXISTS other:x stoa2:GET:h:/ stoa"), 3);
	/* A lock is left to its lease. */
	assert_int_equal(cmd_int("EXISTS %s",
	    "stoa:lock:stoa:GET:h:/locked"), 1);
	cache_redis_store_free(s);
}

/* Two stores on one Redis are two hosts: a purge on one reaches both. */
static void
test_purge_tag_across_hosts(void **state)
{
	struct fx *f = *state;
	struct cache_store *a = store_ready(f, "stoa");
	struct cache_store *b = store_ready(f, "stoa");
	struct doneres r = { 0, CACHE_ERROR, 0 };
	struct cache_put p;
	struct iovec iov, t;

	expect_rc(do_set(f, a, "stoa:GET:h:/1", "1", "news"), CACHE_OK);
	expect_rc(do_set(f, b, "stoa:GET:h:/2", "2", "news"), CACHE_OK);
	expect_rc(do_set(f, b, "stoa:GET:h:/3", "3", "sport"), CACHE_OK);
	expect_rc(do_get(f, b, "stoa:GET:h:/1", util_epoch_ms(), NULL),
	    CACHE_OK);
	b->ops->purge_tag(b, "news", 4, done_cb, &r);
	expect_rc(do_done(f, &r), CACHE_OK);
	assert_int_equal(r.value, 2);
	expect_rc(do_get(f, a, "stoa:GET:h:/1", util_epoch_ms(), NULL),
	    CACHE_MISS);
	expect_rc(do_get(f, a, "stoa:GET:h:/2", util_epoch_ms(), NULL),
	    CACHE_MISS);
	expect_rc(do_get(f, a, "stoa:GET:h:/3", util_epoch_ms(), NULL),
	    CACHE_OK);
	assert_int_equal(cmd_int("EXISTS stoa:tag:news"), 0);
	memset(&r, 0, sizeof r);
	a->ops->purge_tag(a, "none", 4, done_cb, &r);
	expect_rc(do_done(f, &r), CACHE_OK);
	assert_int_equal(r.value, 0);

	/* A tag set's expiry follows its longest entry, never shortened. */
	t.iov_base = (void *)(uintptr_t)"long";
	t.iov_len = 4;
	put_init(&p, "x", &iov, &t, 1);
	p.ttl = 3600000;
	expect_rc(do_put(f, a, "stoa:GET:h:/long", &p, false), CACHE_OK);
	p.ttl = 1000;
	expect_rc(do_put(f, b, "stoa:GET:h:/short", &p, false), CACHE_OK);
	assert_true(cmd_int("PTTL stoa:tag:long") > 3600000);
	cache_redis_store_free(a);
	cache_redis_store_free(b);
}

static bool
wait_key_gone(struct fx *f, const char *key, uint64_t max_ms)
{
	uint64_t t0 = util_now_ms();

	while (util_now_ms() - t0 < max_ms) {
		if (cmd_int("EXISTS %s", key) == 0)
			return (true);
		run_for(f->base, 10);
	}
	return (false);
}

static void
test_lock(void **state)
{
	struct fx *f = *state;
	struct cache_store *a = store_ready(f, "stoa");
	struct cache_store *b = store_ready(f, "stoa");
	const char *k = "stoa:GET:h:/lock";
	uint64_t ta, tb, t2, e0 = errors_of(a) + errors_of(b);
	redisReply *r;

	expect_rc(do_lock(f, a, k, 60000, &ta), CACHE_OK);
	assert_true(ta != 0);
	expect_rc(do_lock(f, b, k, 60000, &tb), CACHE_LOCKED);
	r = cmd("GET %s", "stoa:lock:stoa:GET:h:/lock");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_int_equal(r->len, 16);
	freeReplyObject(r);
	/* Not the owner's token: nothing happens. */
	b->ops->unlock(b, k, strlen(k), ta ^ 1);
	run_for(f->base, 100);
	assert_int_equal(cmd_int("EXISTS %s", "stoa:lock:stoa:GET:h:/lock"),
	    1);
	expect_rc(do_lock(f, b, k, 60000, &tb), CACHE_LOCKED);
	/* The owner releases it. */
	a->ops->unlock(a, k, strlen(k), ta);
	assert_true(wait_key_gone(f, "stoa:lock:stoa:GET:h:/lock", 2000));
	expect_rc(do_lock(f, b, k, 60000, &tb), CACHE_OK);
	assert_true(tb != ta);
	b->ops->unlock(b, k, strlen(k), tb);
	assert_true(wait_key_gone(f, "stoa:lock:stoa:GET:h:/lock", 2000));

	/* A crashed owner's lock ends with its lease. */
	expect_rc(do_lock(f, a, k, 150, &ta), CACHE_OK);
	expect_rc(do_lock(f, b, k, 150, &tb), CACHE_LOCKED);
	msleep(250);
	expect_rc(do_lock(f, b, k, 60000, &t2), CACHE_OK);
	/* The old owner's late unlock does not release the new holder. */
	a->ops->unlock(a, k, strlen(k), ta);
	run_for(f->base, 100);
	assert_int_equal(cmd_int("EXISTS %s", "stoa:lock:stoa:GET:h:/lock"),
	    1);
	assert_int_equal(errors_of(a) + errors_of(b), e0);
	cache_redis_store_free(a);
	cache_redis_store_free(b);
}

static void
test_corrupt_values(void **state)
{
	struct fx *f = *state;
	struct cache_store *s = store_ready(f, "stoa");
	uint64_t e0 = errors_of(s);
	redisReply *r;
	char *v;
	size_t n;

	freeReplyObject(cmd("SET stoa:GET:h:/junk garbage"));
	expect_rc(do_get(f, s, "stoa:GET:h:/junk", util_epoch_ms(), NULL),
	    CACHE_MISS);
	assert_int_equal(errors_of(s), e0 + 1);

	/* A good value cut short, lengthened, of another version. */
	expect_rc(do_set(f, s, "stoa:GET:h:/good", "0123456789", NULL),
	    CACHE_OK);
	r = cmd("GET stoa:GET:h:/good");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	n = r->len;
	v = malloc(n + 1);
	assert_non_null(v);
	memcpy(v, r->str, n);
	freeReplyObject(r);
	freeReplyObject(cmd("SET stoa:GET:h:/cut %b", v, n - 1));
	expect_rc(do_get(f, s, "stoa:GET:h:/cut", util_epoch_ms(), NULL),
	    CACHE_MISS);
	v[n] = 'x';
	freeReplyObject(cmd("SET stoa:GET:h:/long %b", v, n + 1));
	expect_rc(do_get(f, s, "stoa:GET:h:/long", util_epoch_ms(), NULL),
	    CACHE_MISS);
	v[4] = 2;
	freeReplyObject(cmd("SET stoa:GET:h:/v2 %b", v, n));
	expect_rc(do_get(f, s, "stoa:GET:h:/v2", util_epoch_ms(), NULL),
	    CACHE_MISS);
	v[4] = 1;
	v[40] = (char)0xff;     /* headers length past the end */
	v[43] = (char)0xff;
	freeReplyObject(cmd("SET stoa:GET:h:/hl %b", v, n));
	expect_rc(do_get(f, s, "stoa:GET:h:/hl", util_epoch_ms(), NULL),
	    CACHE_MISS);
	free(v);
	/* Not even a string. */
	freeReplyObject(cmd("SADD stoa:GET:h:/set x"));
	expect_rc(do_get(f, s, "stoa:GET:h:/set", util_epoch_ms(), NULL),
	    CACHE_MISS);
	assert_int_equal(errors_of(s), e0 + 6);
	expect_rc(do_get(f, s, "stoa:GET:h:/good", util_epoch_ms(), NULL),
	    CACHE_OK);
	cache_redis_store_free(s);
}

static void
test_too_big(void **state)
{
	struct fx *f = *state;
	struct cache_store *s = store_url(f, srv.url, "stoa", 1024);
	struct doneres r = { 0, CACHE_ERROR, 0 };
	struct cache_put p;
	struct iovec iov;
	char *big;

	assert_true(wait_ready(f, s, 5000));
	big = malloc(1025);
	assert_non_null(big);
	memset(big, 'b', 1024);
	big[1024] = '\0';
	put_init(&p, big, &iov, NULL, 0);
	expect_rc(do_put(f, s, "stoa:GET:h:/max", &p, false), CACHE_OK);
	iov.iov_len = 1025;
	big[1024] = 'b';
	/* Refused at once, nothing written. */
	s->ops->set(s, "stoa:GET:h:/big", 15, &p, done_cb, &r);
	assert_int_equal(r.calls, 1);
	expect_rc(r.rc, CACHE_TOO_BIG);
	assert_int_equal(cmd_int("EXISTS stoa:GET:h:/big"), 0);
	free(big);
	cache_redis_store_free(s);
}

/* An 8 MiB value goes through (written as the socket takes it, while
 * other requests are served on the other connection).  Its store has a
 * 5 s timeout: a GET's timer does not grow with the value as a SET's
 * does, and reading 8 MiB under ASan on a busy 2-CPU machine can take
 * longer than TMO (seen failing with CACHE_ERROR at 200 ms). */
static void
test_large_value(void **state)
{
	struct fx *f = *state;
	char err[256] = "";
	struct cache_store *s = cache_redis_store(f->base, srv.url, "stoa",
	    5000, 0, err, sizeof err);
	struct doneres r = { 0, CACHE_ERROR, 0 };
	struct cache_put p;
	struct cache_obj *o;
	struct iovec iov;
	size_t n = 8u << 20;
	char *big;

	if (s == NULL)
		fail_msg("cache_redis_store: %s", err);
	assert_true(wait_ready(f, s, 5000));
	big = malloc(n + 1);
	assert_non_null(big);
	memset(big, 'z', n);
	big[n] = '\0';
	put_init(&p, big, &iov, NULL, 0);
	s->ops->set(s, "stoa:GET:h:/huge", 16, &p, done_cb, &r);
	expect_rc(do_get(f, s, "stoa:GET:h:/other", util_epoch_ms(), NULL),
	    CACHE_MISS);
	expect_rc(do_done(f, &r), CACHE_OK);
	expect_rc(do_get(f, s, "stoa:GET:h:/huge", util_epoch_ms(), &o),
	    CACHE_OK);
	assert_int_equal(o->body_len, n);
	assert_int_equal(o->body[n - 1], 'z');
	s->ops->release(s, o);
	free(big);
	cache_redis_store_free(s);
}

static void
test_unix_socket(void **state)
{
	struct fx *f = *state;
	struct cache_store *s = store_url(f, srv.uurl, "stoa", 0);

	assert_true(wait_ready(f, s, 5000));
	expect_rc(do_set(f, s, "stoa:GET:h:/u", "unix", NULL), CACHE_OK);
	assert_int_equal(cmd_int("EXISTS stoa:GET:h:/u"), 1);
	cache_redis_store_free(s);
}

/* AUTH (password, user + password) and SELECT from the URL. */
static void
test_auth_and_db(void **state)
{
	struct fx *f = *state;
	struct cache_store *s;
	redisContext *c;
	redisReply *r;
	char url[128];

	c = sync_client();
	assert_non_null(c);
	r = redisCommand(c, "ACL SETUSER app on >s3cr@t ~* +@all");
	assert_non_null(r);
	freeReplyObject(r);
	r = redisCommand(c, "CONFIG SET requirepass pw");
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_STATUS);
	freeReplyObject(r);

	/* Without credentials: never UP, operations fail. */
	s = store_url(f, srv.url, "stoa", 0);
	run_for(f->base, 300);
	expect_rc(do_exists(f, s, "stoa:x"), CACHE_ERROR);
	cache_redis_store_free(s);

	snprintf(url, sizeof url, "redis://:pw@127.0.0.1:%d/3", srv.port);
	s = store_url(f, url, "stoa", 0);
	assert_true(wait_ready(f, s, 5000));
	expect_rc(do_set(f, s, "stoa:GET:h:/db3", "x", NULL), CACHE_OK);
	cache_redis_store_free(s);
	r = redisCommand(c, "SELECT 3");
	freeReplyObject(r);
	r = redisCommand(c, "EXISTS stoa:GET:h:/db3");
	assert_int_equal(r->integer, 1);
	freeReplyObject(r);
	r = redisCommand(c, "SELECT 0");
	freeReplyObject(r);
	r = redisCommand(c, "EXISTS stoa:GET:h:/db3");
	assert_int_equal(r->integer, 0);
	freeReplyObject(r);

	snprintf(url, sizeof url, "redis://app:s3cr%%40t@127.0.0.1:%d",
	    srv.port);
	s = store_url(f, url, "stoa", 0);
	assert_true(wait_ready(f, s, 5000));
	expect_rc(do_set(f, s, "stoa:GET:h:/acl", "x", NULL), CACHE_OK);
	cache_redis_store_free(s);

	r = redisCommand(c, "CONFIG SET requirepass %s", "");
	freeReplyObject(r);
	r = redisCommand(c, "ACL DELUSER app");
	freeReplyObject(r);
	redisFree(c);
	assert_int_equal(cmd_int("EXISTS stoa:GET:h:/acl"), 1);
}

/* A Redis that stops answering: every operation gets CACHE_ERROR within
 * about timeout_ms, exactly once; service comes back by itself. */
static void
test_slow_redis(void **state)
{
	struct fx *f = *state;
	struct cache_store *s = store_ready(f, "stoa");
	struct getres g[5];
	struct doneres d = { 0, CACHE_ERROR, 0 };
	uint64_t t0, el, e0;
	int i;

	expect_rc(do_set(f, s, "stoa:GET:h:/slow", "x", NULL), CACHE_OK);
	e0 = errors_of(s);
	/* Frozen: like DEBUG SLEEP, but for as long as we want. */
	assert_int_equal(kill(srv.pid, SIGSTOP), 0);
	for (i = 0; i < 5; i++) {
		memset(&g[i], 0, sizeof g[i]);
		t0 = util_now_ms();
		s->ops->get(s, "stoa:GET:h:/slow", 16, util_epoch_ms(), get_cb,
		    &g[i]);
		assert_int_equal(run_until(f->base, &g[i].calls, 5000), 1);
		el = util_now_ms() - t0;
		expect_rc(g[i].rc, CACHE_ERROR);
		if (el > TMO + SLACK)
			fail_msg("answered after %ju ms", (uintmax_t)el);
	}
	s->ops->set(s, "stoa:GET:h:/slow2", 17, &(struct cache_put){
	    .status = 200, .ttl = 1000 }, done_cb, &d);
	expect_rc(do_done(f, &d), CACHE_ERROR);
	assert_int_equal(errors_of(s), e0 + 6);
	/* Three timeouts in a row dropped each connection: nothing piles
	 * up behind a frozen Redis, operations now fail at once. */
	t0 = util_now_ms();
	expect_rc(do_get(f, s, "stoa:GET:h:/slow", util_epoch_ms(), NULL),
	    CACHE_ERROR);
	assert_true(util_now_ms() - t0 < 50);
	assert_int_equal(kill(srv.pid, SIGCONT), 0);
	/* Late replies are dropped: nobody is called twice. */
	run_for(f->base, 300);
	for (i = 0; i < 5; i++)
		assert_int_equal(g[i].calls, 1);
	assert_int_equal(d.calls, 1);
	assert_true(wait_ready(f, s, 5000));
	expect_rc(do_get(f, s, "stoa:GET:h:/slow", util_epoch_ms(), NULL),
	    CACHE_OK);
	cache_redis_store_free(s);
}

/* Freeing the store answers what is pending, before it returns. */
static void
test_free_with_pending(void **state)
{
	struct fx *f = *state;
	struct cache_store *s = store_ready(f, "stoa");
	struct getres g = { 0, CACHE_OK, NULL };
	struct doneres d = { 0, CACHE_OK, 0 };

	assert_int_equal(kill(srv.pid, SIGSTOP), 0);
	s->ops->get(s, "stoa:GET:h:/p", 13, util_epoch_ms(), get_cb, &g);
	s->ops->clear(s, done_cb, &d);
	run_for(f->base, 20);
	assert_int_equal(g.calls + d.calls, 0);
	cache_redis_store_free(s);
	assert_int_equal(g.calls, 1);
	expect_rc(g.rc, CACHE_ERROR);
	assert_int_equal(d.calls, 1);
	expect_rc(d.rc, CACHE_ERROR);
	assert_int_equal(kill(srv.pid, SIGCONT), 0);
	run_for(f->base, 50);
}

/* Redis goes away and comes back on the same port. */
static void
test_down_and_back(void **state)
{
	struct fx *f = *state;
	struct cache_store *s = store_ready(f, "stoa");
	struct getres g;
	uint64_t t0, el, token;
	int i;

	expect_rc(do_set(f, s, "stoa:GET:h:/x", "x", NULL), CACHE_OK);
	server_stop();
	for (i = 0; i < 5; i++) {
		memset(&g, 0, sizeof g);
		t0 = util_now_ms();
		s->ops->get(s, "stoa:GET:h:/x", 13, util_epoch_ms(), get_cb,
		    &g);
		assert_int_equal(run_until(f->base, &g.calls, 5000), 1);
		el = util_now_ms() - t0;
		expect_rc(g.rc, CACHE_ERROR);
		if (el > TMO + SLACK)
			fail_msg("answered after %ju ms", (uintmax_t)el);
		run_for(f->base, 50);
	}
	expect_rc(do_lock(f, s, "stoa:GET:h:/x", 1000, &token), CACHE_ERROR);
	s->ops->unlock(s, "stoa:GET:h:/x", 13, 42);     /* harmless */
	assert_true(errors_of(s) >= 6);
	server_start();
	t0 = util_now_ms();
	assert_true(wait_ready(f, s, 8000));
	el = util_now_ms() - t0;
	assert_true(el < 8000);
	/* A fresh Redis (no persistence): the entry is gone, not an error. */
	expect_rc(do_get(f, s, "stoa:GET:h:/x", util_epoch_ms(), NULL),
	    CACHE_MISS);
	expect_rc(do_set(f, s, "stoa:GET:h:/x", "x", NULL), CACHE_OK);
	expect_rc(do_get(f, s, "stoa:GET:h:/x", util_epoch_ms(), NULL),
	    CACHE_OK);
	cache_redis_store_free(s);
}

/* Nothing listening at all: creation works, operations fail fast. */
static void
test_never_up(void **state)
{
	struct fx *f = *state;
	struct cache_store *s;
	char url[64];
	uint64_t t0;

	snprintf(url, sizeof url, "redis://127.0.0.1:%d", free_port());
	s = store_url(f, url, "stoa", 0);
	run_for(f->base, 150);
	t0 = util_now_ms();
	expect_rc(do_exists(f, s, "stoa:x"), CACHE_ERROR);
	expect_rc(do_get(f, s, "stoa:x", util_epoch_ms(), NULL), CACHE_ERROR);
	assert_true(util_now_ms() - t0 < TMO);
	cache_redis_store_free(s);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_url_errors),
		T(test_roundtrip),
		T(test_release_after_free),
		T(test_deleted_by_another_client),
		T(test_add_exists),
		T(test_del_exists),
		T(test_clear_only_namespace),
		T(test_purge_tag_across_hosts),
		T(test_lock),
		T(test_corrupt_values),
		T(test_too_big),
		T(test_large_value),
		T(test_unix_socket),
		T(test_auth_and_db),
		T(test_slow_redis),
		T(test_free_with_pending),
		T(test_down_and_back),
		T(test_never_up),
	};
	char err[256];
	int rc;

	if (redis_server_path() == NULL) {
		fprintf(stderr, "redis-server not installed: skipped\n");
		return (77);
	}
	(void)signal(SIGPIPE, SIG_IGN);
	if (log_open("stderr", "off", LOG_LVL_ERROR, err, sizeof err) != 0) {
		fprintf(stderr, "log_open: %s\n", err);
		return (1);
	}
	snprintf(srv.dir, sizeof srv.dir, "%s/stoa-test-redis.XXXXXX",
	    getenv("TMPDIR") != NULL && *getenv("TMPDIR") != '\0' ?
	    getenv("TMPDIR") : "/tmp");
	if (mkdtemp(srv.dir) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	snprintf(srv.sock, sizeof srv.sock, "%s/redis.sock", srv.dir);
	srv.port = free_port();
	snprintf(srv.url, sizeof srv.url, "redis://127.0.0.1:%d", srv.port);
	snprintf(srv.uurl, sizeof srv.uurl, "unix:%s", srv.sock);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	server_stop();
	(void)unlink(srv.sock);
	(void)rmdir(srv.dir);
	return (rc);
}
