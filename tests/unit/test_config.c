/*
 * test_config.c -- config_load(): the SPEC example, defaults, include(),
 * and every error with its exact "FILE:LINE: reason".
 *
 * Each test writes its files into a fresh directory under $TMPDIR (or
 * /tmp) and removes it afterwards.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

#define MAXFILES 16

struct tdir {
	char	dir[256];
	char	files[MAXFILES][512];
	int	nfiles;
};

static int
setup(void **state)
{
	struct tdir *t = calloc(1, sizeof *t);
	const char *tmp = getenv("TMPDIR");

	if (t == NULL)
		return (-1);
	snprintf(t->dir, sizeof t->dir, "%s/stoa-test-config.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(t->dir) == NULL) {
		free(t);
		return (-1);
	}
	*state = t;
	return (0);
}

static int
teardown(void **state)
{
	struct tdir *t = *state;

	for (int i = 0; i < t->nfiles; i++)
		(void)unlink(t->files[i]);
	(void)rmdir(t->dir);
	free(t);
	return (0);
}

/* Write NAME (relative to the test directory) and return its path. */
static const char *
wfile(void **state, const char *name, const char *text)
{
	struct tdir *t = *state;
	char path[sizeof t->files[0]];
	FILE *fp;
	int i;

	snprintf(path, sizeof path, "%s/%s", t->dir, name);
	for (i = 0; i < t->nfiles; i++)
		if (strcmp(t->files[i], path) == 0)
			break;
	if (i == t->nfiles) {
		assert_true(t->nfiles < MAXFILES);
		memcpy(t->files[t->nfiles++], path, sizeof path);
	}
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_true(fputs(text, fp) >= 0);
	assert_int_equal(fclose(fp), 0);
	return (t->files[i]);
}

static struct config *
load_ok(const char *path)
{
	struct config *c = NULL;
	char err[512] = "";

	if (config_load(path, &c, err, sizeof err) != 0)
		fail_msg("config_load(%s) failed: %s", path, err);
	assert_non_null(c);
	assert_int_equal(c->magic, CONFIG_MAGIC);
	return (c);
}

/* Load must fail with exactly "PATH:LINE: reason" (LINE 0: "PATH: "). */
static void
load_err_at(const char *path, const char *errpath, int line,
    const char *reason)
{
	struct config *c = (struct config *)(uintptr_t)0x1;
	char err[512] = "", want[1024];

	assert_int_equal(config_load(path, &c, err, sizeof err), -1);
	assert_ptr_equal(c, (struct config *)(uintptr_t)0x1);	/* untouched */
	if (line > 0)
		snprintf(want, sizeof want, "%s:%d: %s", errpath, line, reason);
	else
		snprintf(want, sizeof want, "%s: %s", errpath, reason);
	assert_string_equal(err, want);
	assert_null(strchr(err, '\n'));
}

static void
load_err(const char *path, int line, const char *reason)
{
	load_err_at(path, path, line, reason);
}

static void
check_err(void **state, const char *text, int line, const char *reason)
{
	load_err(wfile(state, "e.conf", text), line, reason);
}

static const char *
addr_str(const struct config_addr *a, char *buf, size_t len)
{
	const struct sockaddr_in *sin = (const void *)&a->ss;
	char h[INET_ADDRSTRLEN];

	assert_int_equal(a->ss.ss_family, AF_INET);
	assert_int_equal(a->sslen, sizeof *sin);
	inet_ntop(AF_INET, &sin->sin_addr, h, sizeof h);
	snprintf(buf, len, "%s:%u", h, ntohs(sin->sin_port));
	return (buf);
}

/* The example block of SPEC.md "Config file", unchanged. */
static const char spec_example[] =
"workers    = auto                  # number, or auto = one per CPU\n"
"listen     = {\"127.0.0.1:8080\"}    # one or more host:port, [::1]:8080 for IPv6\n"
"admin      = \"127.0.0.1:9901\"      # admin listener; absent means off\n"
"pid_file   = \"/run/stoa/stoa.pid\"\n"
"error_log  = stderr                # or a path\n"
"access_log = stderr                # or a path, or off\n"
"log_level  = info                  # error | warn | info | debug\n"
"user       = stoa                  # drop privileges after binding when started as root;\n"
"                                   # absent: no privilege drop\n"
"shutdown_timeout = 30s\n"
"\n"
"tls {                              # optional HTTPS listeners\n"
"  listen      = {\"0.0.0.0:8443\"}\n"
"  certificate = \"/etc/stoa/tls/cert.pem\"\n"
"  key         = \"/etc/stoa/tls/key.pem\"\n"
"  http2       = true               # ALPN h2 and http/1.1\n"
"}\n"
"\n"
"timeouts {\n"
"  client_header    = 10s           # whole request head must arrive in this time\n"
"  client_idle      = 60s           # idle keep-alive connection\n"
"  upstream_connect = 2s\n"
"  upstream_read    = 30s           # no byte from the upstream for this long: 504\n"
"  websocket_idle   = 300s          # no byte either way on a tunnel\n"
"}\n"
"\n"
"limits {\n"
"  max_header_size  = 16k           # 431 past it\n"
"  max_body_size    = 16m           # 413 past it\n"
"  max_connections  = 10000         # per worker\n"
"}\n"
"\n"
"cache {\n"
"  backend   = memory               # memory | redis\n"
"  size      = 256m                 # memory: one zone shared by all workers, LRU\n"
"  redis     = \"redis://127.0.0.1:6379/0\"\n"
"  namespace = stoa                 # prefix of every key\n"
"  ttl       = 30s                  # default TTL of a cached response\n"
"  max_object_size = 8m\n"
"  lock      = true                 # concurrent misses on one key: one upstream fetch\n"
"  lock_timeout = 5s                # a waiter goes to the upstream itself after this\n"
"  redis_timeout = 250ms            # a Redis reply slower than this = BYPASS\n"
"  stale_while_revalidate = 0s\n"
"  stale_if_error         = 0s\n"
"}\n"
"\n"
"upstream app {\n"
"  server    = {\"127.0.0.1:8000\", \"127.0.0.1:8001\"}\n"
"  balance   = round_robin          # round_robin | least_conn | hash (consistent, on the URI)\n"
"  keepalive = 32                   # idle upstream connections kept per worker\n"
"  max_fails = 3                    # passive health: mark down after this many\n"
"  fail_timeout = 10s               # ... failures, for this long\n"
"}\n"
"\n"
"route /api/ {                      # title: path prefix; longest prefix wins; the same\n"
"                                   # prefix may appear again with a different host\n"
"  host      = \"api.example.com\"    # optional; exact, or \"*.example.com\"\n"
"  upstream  = app\n"
"  websocket = false                # allow Upgrade: websocket on this route\n"
"  cache {                          # present: responses on this route are cached\n"
"    ttl     = 10s                  # overrides cache.ttl\n"
"  }\n"
"}\n"
"route / { upstream = app }\n";

static void
test_spec_example(void **state)
{
	struct config *c;
	const char *path;
	char b[64];

	path = wfile(state, "spec.conf", spec_example);
	c = load_ok(path);
	assert_string_equal(c->file, path);
	assert_int_equal(c->workers, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
	assert_int_equal(c->nlisten, 1);
	assert_string_equal(c->listen[0].text, "127.0.0.1:8080");
	assert_string_equal(addr_str(&c->listen[0], b, sizeof b),
	    "127.0.0.1:8080");
	assert_true(c->has_admin);
	assert_string_equal(c->admin.text, "127.0.0.1:9901");
	assert_string_equal(addr_str(&c->admin, b, sizeof b), "127.0.0.1:9901");
	assert_string_equal(c->pid_file, "/run/stoa/stoa.pid");
	assert_string_equal(c->error_log, "stderr");
	assert_string_equal(c->access_log, "stderr");
	assert_int_equal(c->log_level, LOG_LVL_INFO);
	assert_string_equal(c->user, "stoa");
	assert_int_equal(c->shutdown_timeout, 30000);

	assert_true(c->tls.enabled);
	assert_int_equal(c->tls.nlisten, 1);
	assert_string_equal(c->tls.listen[0].text, "0.0.0.0:8443");
	assert_string_equal(addr_str(&c->tls.listen[0], b, sizeof b),
	    "0.0.0.0:8443");
	assert_string_equal(c->tls.certificate, "/etc/stoa/tls/cert.pem");
	assert_string_equal(c->tls.key, "/etc/stoa/tls/key.pem");
	assert_int_equal(c->tls.ncerts, 1);
	assert_ptr_equal(c->tls.certificates[0], c->tls.certificate);
	assert_ptr_equal(c->tls.keys[0], c->tls.key);
	assert_true(c->tls.http2);

	assert_int_equal(c->timeouts.client_header, 10000);
	assert_int_equal(c->timeouts.client_idle, 60000);
	assert_int_equal(c->timeouts.upstream_connect, 2000);
	assert_int_equal(c->timeouts.upstream_read, 30000);
	assert_int_equal(c->timeouts.websocket_idle, 300000);
	assert_int_equal(c->limits.max_header_size, 16384);
	assert_int_equal(c->limits.max_body_size, 16 * 1024 * 1024);
	assert_int_equal(c->limits.max_connections, 10000);

	assert_int_equal(c->cache.backend, CACHE_BACKEND_MEMORY);
	assert_int_equal(c->cache.size, 256ull * 1024 * 1024);
	assert_string_equal(c->cache.redis, "redis://127.0.0.1:6379/0");
	assert_string_equal(c->cache.namespace, "stoa");
	assert_int_equal(c->cache.ttl, 30000);
	assert_int_equal(c->cache.max_object_size, 8 * 1024 * 1024);
	assert_true(c->cache.lock);
	assert_int_equal(c->cache.lock_timeout, 5000);
	assert_int_equal(c->cache.redis_timeout, 250);
	assert_int_equal(c->cache.stale_while_revalidate, 0);
	assert_int_equal(c->cache.stale_if_error, 0);

	assert_int_equal(c->nupstreams, 1);
	assert_string_equal(c->upstreams[0].name, "app");
	assert_int_equal(c->upstreams[0].nservers, 2);
	assert_string_equal(c->upstreams[0].servers[1].text, "127.0.0.1:8001");
	assert_string_equal(addr_str(&c->upstreams[0].servers[1], b, sizeof b),
	    "127.0.0.1:8001");
	assert_int_equal(c->upstreams[0].balance, BALANCE_ROUND_ROBIN);
	assert_int_equal(c->upstreams[0].keepalive, 32);
	assert_int_equal(c->upstreams[0].max_fails, 3);
	assert_int_equal(c->upstreams[0].fail_timeout, 10000);
	assert_int_equal(c->upstreams[0].line, 47);

	assert_int_equal(c->nroutes, 2);
	assert_string_equal(c->routes[0].prefix, "/api/");
	assert_string_equal(c->routes[0].host, "api.example.com");
	assert_int_equal(c->routes[0].upstream, 0);
	assert_false(c->routes[0].websocket);
	assert_true(c->routes[0].cache);
	assert_int_equal(c->routes[0].cache_ttl, 10000);
	assert_int_equal(c->routes[0].line, 55);
	assert_string_equal(c->routes[1].prefix, "/");
	assert_null(c->routes[1].host);
	assert_false(c->routes[1].cache);
	assert_int_equal(c->routes[1].line, 64);

	assert_int_equal(config_upstream_find(c, "app"), 0);
	assert_int_equal(config_upstream_find(c, "nope"), -1);
	config_free(c);
}

static void
test_defaults(void **state)
{
	struct config *c;

	c = load_ok(wfile(state, "d.conf", "# nothing but a comment\n"));
	assert_int_equal(c->workers, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
	assert_int_equal(c->nlisten, 1);
	assert_string_equal(c->listen[0].text, "127.0.0.1:8080");
	assert_false(c->has_admin);
	assert_null(c->admin.text);
	assert_string_equal(c->pid_file, "/run/stoa/stoa.pid");
	assert_string_equal(c->error_log, "stderr");
	assert_string_equal(c->access_log, "stderr");
	assert_int_equal(c->log_level, LOG_LVL_INFO);
	assert_null(c->user);
	assert_int_equal(c->shutdown_timeout, 30000);
	assert_false(c->tls.enabled);
	assert_true(c->tls.http2);
	assert_int_equal(c->timeouts.client_header, 10000);
	assert_int_equal(c->timeouts.client_idle, 60000);
	assert_int_equal(c->timeouts.upstream_connect, 2000);
	assert_int_equal(c->timeouts.upstream_read, 30000);
	assert_int_equal(c->timeouts.websocket_idle, 300000);
	assert_int_equal(c->limits.max_header_size, 16384);
	assert_int_equal(c->limits.max_body_size, 16 * 1024 * 1024);
	assert_int_equal(c->limits.max_connections, 10000);
	assert_int_equal(c->cache.backend, CACHE_BACKEND_MEMORY);
	assert_int_equal(c->cache.size, 256ull * 1024 * 1024);
	assert_string_equal(c->cache.redis, "redis://127.0.0.1:6379/0");
	assert_string_equal(c->cache.namespace, "stoa");
	assert_int_equal(c->cache.ttl, 30000);
	assert_int_equal(c->cache.max_object_size, 8 * 1024 * 1024);
	assert_true(c->cache.lock);
	assert_int_equal(c->cache.lock_timeout, 5000);
	assert_int_equal(c->cache.redis_timeout, 250);
	assert_int_equal(c->cache.stale_while_revalidate, 0);
	assert_int_equal(c->cache.stale_if_error, 0);
	assert_int_equal(c->nupstreams, 0);
	assert_int_equal(c->nroutes, 0);
	config_free(c);
}

static void
test_section_defaults_and_values(void **state)
{
	struct config *c;

	c = load_ok(wfile(state, "v.conf",
	    "workers = 3\n"
	    "access_log = off\n"
	    "log_level = debug\n"
	    "listen = {\"127.0.0.1:1\", \"[::1]:2\"}\n"
	    "cache { ttl = 2m\n backend = redis\n"
	    " stale_if_error = \"1h\"\n size = 1g\n }\n"
	    "upstream a { server = {\"127.0.0.1:1\"} }\n"
	    "upstream b { server = {\"127.0.0.1:2\"}\n"
	    " balance = hash keepalive = 0 max_fails = 0 fail_timeout = 500ms }\n"
	    "route /x/ { upstream = b\n host = \"*.Example.COM\"\n"
	    " websocket = true\n cache { }\n }\n"
	    "route /x/ { upstream = a }\n"
	    "route /x/ { upstream = a host = example.com }\n"));
	assert_int_equal(c->workers, 3);
	assert_null(c->access_log);
	assert_int_equal(c->log_level, LOG_LVL_DEBUG);
	assert_int_equal(c->nlisten, 2);
	assert_int_equal(c->listen[1].ss.ss_family, AF_INET6);
	assert_int_equal(c->cache.backend, CACHE_BACKEND_REDIS);
	assert_int_equal(c->cache.ttl, 120000);
	assert_int_equal(c->cache.stale_if_error, 3600000);
	assert_int_equal(c->cache.size, 1024ull * 1024 * 1024);
	assert_int_equal(c->nupstreams, 2);
	assert_int_equal(c->upstreams[0].balance, BALANCE_ROUND_ROBIN);
	assert_int_equal(c->upstreams[0].keepalive, 32);
	assert_int_equal(c->upstreams[1].balance, BALANCE_HASH);
	assert_int_equal(c->upstreams[1].keepalive, 0);
	assert_int_equal(c->upstreams[1].max_fails, 0);
	assert_int_equal(c->upstreams[1].fail_timeout, 500);
	/* The same prefix three times (different hosts), in file order. */
	assert_int_equal(c->nroutes, 3);
	assert_string_equal(c->routes[0].host, "*.example.com");
	assert_int_equal(c->routes[0].upstream, 1);
	assert_true(c->routes[0].websocket);
	assert_true(c->routes[0].cache);
	assert_int_equal(c->routes[0].cache_ttl, 120000);	/* cache.ttl */
	assert_int_equal(c->routes[0].line, 13);
	assert_null(c->routes[1].host);
	assert_int_equal(c->routes[1].upstream, 0);
	assert_false(c->routes[1].websocket);
	assert_false(c->routes[1].cache);
	assert_int_equal(c->routes[1].line, 18);
	assert_string_equal(c->routes[2].host, "example.com");
	assert_int_equal(c->routes[2].line, 19);
	config_free(c);
}

static void
test_include(void **state)
{
	struct config *c;
	const char *main_path, *part;

	part = wfile(state, "part.conf",
	    "# included\n"
	    "upstream app { server = {\"127.0.0.1:9000\"} }\n"
	    "workers = 5");	/* no final newline */
	main_path = wfile(state, "main.conf",
	    "workers = 2\n"
	    "include(\"part.conf\")\n"
	    "route / {\n"
	    "  upstream = app\n"
	    "}\n");
	(void)part;
	c = load_ok(main_path);
	assert_int_equal(c->workers, 5);
	assert_int_equal(c->nupstreams, 1);
	assert_string_equal(c->upstreams[0].name, "app");
	assert_int_equal(c->upstreams[0].line, 2);	/* line in part.conf */
	assert_int_equal(c->nroutes, 1);
	assert_int_equal(c->routes[0].line, 3);		/* line in main.conf */
	config_free(c);
}

static void
test_include_inside_section(void **state)
{
	struct config *c;
	const char *main_path;

	(void)wfile(state, "body.conf", "upstream = app\nwebsocket = true\n");
	main_path = wfile(state, "main.conf",
	    "upstream app { server = {\"127.0.0.1:9000\"} }\n"
	    "route /ws/ { include(\"body.conf\") }\n");
	c = load_ok(main_path);
	assert_int_equal(c->nroutes, 1);
	assert_true(c->routes[0].websocket);
	config_free(c);
}

static void
test_include_error_lines(void **state)
{
	const char *main_path, *part;

	part = wfile(state, "part.conf", "\n\nbogus = 1\n");
	main_path = wfile(state, "main.conf",
	    "workers = 2\n\ninclude(\"part.conf\")\nworkers = 3\n");
	load_err_at(main_path, part, 3, "unknown option 'bogus'");

	/* After the include, lines are the main file's again. */
	(void)wfile(state, "part.conf", "workers = 1\n");
	(void)wfile(state, "main.conf",
	    "include(\"part.conf\")\n\nnope = 1\n");
	load_err(main_path, 3, "unknown option 'nope'");
}

/*
 * libconfuse 3.3 leaks its include stack when an included file has an
 * error; after ten of those every include failed.  Reloads must not wear
 * out.
 */
static void
test_include_errors_do_not_accumulate(void **state)
{
	struct config *c;
	const char *main_path, *part;

	part = wfile(state, "part.conf", "bogus = 1\n");
	main_path = wfile(state, "main.conf", "include(\"part.conf\")\n");
	for (int i = 0; i < 15; i++)
		load_err_at(main_path, part, 1, "unknown option 'bogus'");
	(void)wfile(state, "part.conf", "workers = 4\n");
	c = load_ok(main_path);
	assert_int_equal(c->workers, 4);
	config_free(c);
}

static void
test_include_missing(void **state)
{
	struct tdir *t = *state;
	char want[600];
	const char *p;

	p = wfile(state, "m.conf", "workers = 1\n\ninclude(\"nope.conf\")\n");
	snprintf(want, sizeof want,
	    "cannot include '%s/nope.conf': No such file or directory", t->dir);
	load_err(p, 3, want);
}

static void
test_include_cycle(void **state)
{
	struct tdir *t = *state;
	const char *a, *b;
	char want[600];

	a = wfile(state, "a.conf", "include(\"b.conf\")\n");
	b = wfile(state, "b.conf", "workers = 1\ninclude(\"a.conf\")\n");
	snprintf(want, sizeof want,
	    "include cycle: '%s/a.conf' is already being read", t->dir);
	load_err_at(a, b, 2, want);

	a = wfile(state, "a.conf", "\ninclude(\"a.conf\")\n");
	snprintf(want, sizeof want,
	    "include cycle: '%s/a.conf' is already being read", t->dir);
	load_err(a, 2, want);
}

static void
test_missing_file(void **state)
{
	struct tdir *t = *state;
	char path[600];

	snprintf(path, sizeof path, "%s/does-not-exist.conf", t->dir);
	load_err(path, 0, "cannot open: No such file or directory");
}

static void
test_err_unknown_key(void **state)
{
	check_err(state, "workers = 1\n\nfoo = 1\n", 3, "unknown option 'foo'");
	check_err(state, "workers = 1\ntimeouts {\n  client_idle = 5s\n"
	    "  foo = 2\n}\n", 4, "unknown option 'foo'");
	check_err(state, "upstream a {\n server = {\"127.0.0.1:1\"}\n}\n"
	    "route / {\n upstream = a\n cache {\n\n  size = 1\n }\n}\n", 8,
	    "unknown option 'size'");
	check_err(state, "server {\n}\n", 1, "unknown option 'server'");
}

static void
test_err_bad_duration(void **state)
{
	check_err(state, "timeouts {\n\n  client_idle = 12x\n}\n", 3,
	    "timeouts.client_idle: invalid duration unit (use ms, s, m or h)");
	check_err(state, "shutdown_timeout = \"soon\"\n", 1,
	    "shutdown_timeout: invalid duration (use a number with ms, s, m "
	    "or h)");
}

static void
test_err_bad_size(void **state)
{
	check_err(state, "\nlimits {\n  max_body_size = 16mb\n}\n", 3,
	    "limits.max_body_size: invalid size unit (use k, m or g)");
	check_err(state, "cache { size = -1 }\n", 1,
	    "cache.size: invalid size (use a number with k, m or g)");
}

static void
test_err_unknown_upstream(void **state)
{
	check_err(state,
	    "upstream app { server = {\"127.0.0.1:1\"} }\n"
	    "route /api/ {\n"
	    "  host = a.example\n"
	    "  upstream = nope\n"
	    "}\n", 4, "route '/api/': unknown upstream 'nope'");
}

static void
test_err_duplicate_route(void **state)
{
	check_err(state,
	    "upstream app { server = {\"127.0.0.1:1\"} }\n"
	    "route /api/ { host = x.example upstream = app }\n"
	    "route /api/ { host = y.example upstream = app }\n"
	    "\n"
	    "route /api/ {\n host = X.Example\n upstream = app\n}\n", 5,
	    "duplicate route '/api/' for host 'x.example'");
	check_err(state,
	    "upstream app { server = {\"127.0.0.1:1\"} }\n"
	    "route / { upstream = app }\n"
	    "route / { upstream = app }\n", 3,
	    "duplicate route '/' (no host)");
}

static void
test_err_duplicate_upstream(void **state)
{
	check_err(state,
	    "upstream app { server = {\"127.0.0.1:1\"} }\n"
	    "\n"
	    "upstream app { server = {\"127.0.0.1:2\"} }\n", 3,
	    "duplicate upstream 'app'");
}

static void
test_err_duplicate_section(void **state)
{
	check_err(state, "timeouts { }\nlimits { }\ntimeouts {\n}\n", 3,
	    "duplicate section 'timeouts'");
}

static void
test_err_empty_listen(void **state)
{
	check_err(state, "workers = 1\nlisten = {}\n", 2,
	    "listen must name at least one address");
	check_err(state, "upstream a {\n server = {\n }\n}\n", 3,
	    "server must name at least one address");
}

static void
test_err_unclosed_section(void **state)
{
	check_err(state,
	    "upstream app { server = {\"127.0.0.1:1\"} }\n"
	    "route /api/ {\n"
	    "  upstream = app\n"
	    "\n", 2, "unclosed section 'route /api/'");
	check_err(state, "timeouts {\n client_idle = 1s\n", 1,
	    "unclosed section 'timeouts'");
	check_err(state, "workers = 1\n}\n", 2, "unexpected '}'");
}

/* The earliest error wins, even over what the preprocessor finds. */
static void
test_err_first_error_wins(void **state)
{
	check_err(state, "workers = 1\nbogus = 2\nroute / {\n", 2,
	    "unknown option 'bogus'");
	check_err(state, "workers = 0\n\ninclude(\"nope\")\n", 1,
	    "workers must be auto or a number from 1 to 1024");
}

static void
test_err_upstream_without_server(void **state)
{
	check_err(state, "workers = 1\nupstream app {\n  balance = hash\n}\n",
	    2, "upstream 'app' has no server");
}

static void
test_err_workers(void **state)
{
	check_err(state, "\nworkers = 0\n", 2,
	    "workers must be auto or a number from 1 to 1024");
	check_err(state, "workers = abc\n", 1,
	    "workers must be auto or a number from 1 to 1024");
	check_err(state, "workers = -2\n", 1,
	    "workers must be auto or a number from 1 to 1024");
	check_err(state, "workers = 3x\n", 1,
	    "workers must be auto or a number from 1 to 1024");
}

static void
test_err_bad_address(void **state)
{
	check_err(state, "listen = {\"127.0.0.1:8080\",\n  \"127.0.0.1\"}\n", 2,
	    "listen: invalid address (expected host:port, [IPv6]:port for "
	    "IPv6): '127.0.0.1'");
	check_err(state, "admin = \"example.com:80\"\n", 1,
	    "admin: invalid IPv4 address (numeric addresses only, or "
	    "localhost): 'example.com:80'");
	check_err(state, "upstream a {\n server = {\"127.0.0.1:0\"}\n}\n", 2,
	    "upstream.server: invalid port (expected 1-65535): '127.0.0.1:0'");
}

static void
test_err_enums(void **state)
{
	check_err(state, "upstream a {\n server = {\"127.0.0.1:1\"}\n"
	    " balance = random\n}\n", 3,
	    "unknown balance 'random' (use round_robin, least_conn or hash)");
	check_err(state, "log_level = verbose\n", 1,
	    "unknown log_level 'verbose' (use error, warn, info or debug)");
	check_err(state, "cache {\n backend = memcached\n}\n", 2,
	    "unknown cache backend 'memcached' (use memory or redis)");
	check_err(state, "tls {\n http2 = maybe\n}\n", 2,
	    "http2: invalid boolean (use true or false)");
}

/* cache.redis: redis:// URLs and unix:/path sockets; anything else fails. */
static void
test_cache_redis_url(void **state)
{
	struct config *c;

	c = load_ok(wfile(state, "r.conf",
	    "cache {\n backend = redis\n"
	    " redis = \"unix:/run/redis/redis.sock\"\n}\n"));
	assert_string_equal(c->cache.redis, "unix:/run/redis/redis.sock");
	config_free(c);
	c = load_ok(wfile(state, "r.conf",
	    "cache {\n redis = \"redis://:pw@10.0.0.1:6380/2\"\n}\n"));
	assert_string_equal(c->cache.redis, "redis://:pw@10.0.0.1:6380/2");
	config_free(c);
	check_err(state, "cache {\n redis = \"unix:redis.sock\"\n}\n", 2,
	    "cache.redis: expected a redis:// or unix:/path URL");
	check_err(state, "cache {\n redis = \"http://127.0.0.1:6379\"\n}\n", 2,
	    "cache.redis: expected a redis:// or unix:/path URL");
}

static void
test_err_route_title(void **state)
{
	check_err(state,
	    "upstream a { server = {\"127.0.0.1:1\"} }\n"
	    "route api {\n upstream = a\n}\n", 2,
	    "route 'api': the title must be a path prefix starting with '/' "
	    "(no blanks)");
}

static void
test_err_route_host(void **state)
{
	check_err(state, "route / {\n\n host = \"a.example:8080\"\n}\n", 3,
	    "route host 'a.example:8080': expected a host name or "
	    "\"*.domain\" (no port)");
	check_err(state, "route / { host = \"a b\" }\n", 1,
	    "route host 'a b': expected a host name or \"*.domain\" (no port)");
}

static void
test_err_route_without_upstream(void **state)
{
	check_err(state, "route / {\n host = a.example\n}\n", 1,
	    "route '/' has no upstream");
}

static void
test_err_tls_incomplete(void **state)
{
	check_err(state, "\ntls {\n listen = {\"0.0.0.0:8443\"}\n"
	    " key = \"k.pem\"\n}\n", 2, "tls: certificate is required");
}

static void
test_tls_lists(void **state)
{
	struct config *c;

	c = load_ok(wfile(state, "t.conf",
	    "tls {\n listen = {\"0.0.0.0:8443\"}\n"
	    " certificate = {\"a.pem\", \"b.pem\",\n  \"c.pem\"}\n"
	    " key = {\"a.key\", \"b.key\", \"c.key\"}\n"
	    " http2 = false\n}\n"));
	assert_true(c->tls.enabled);
	assert_int_equal(c->tls.ncerts, 3);
	assert_string_equal(c->tls.certificates[0], "a.pem");
	assert_string_equal(c->tls.certificates[1], "b.pem");
	assert_string_equal(c->tls.certificates[2], "c.pem");
	assert_string_equal(c->tls.keys[0], "a.key");
	assert_string_equal(c->tls.keys[1], "b.key");
	assert_string_equal(c->tls.keys[2], "c.key");
	assert_ptr_equal(c->tls.certificate, c->tls.certificates[0]);
	assert_ptr_equal(c->tls.key, c->tls.keys[0]);
	assert_false(c->tls.http2);
	config_free(c);
}

static void
test_err_tls_lists(void **state)
{
	check_err(state, "workers = 1\ntls {\n listen = {\"0.0.0.0:8443\"}\n"
	    " certificate = {\"a.pem\", \"b.pem\"}\n key = \"a.key\"\n}\n", 2,
	    "tls: certificate and key lists differ in length");
	check_err(state, "tls {\n listen = {\"0.0.0.0:8443\"}\n"
	    " certificate = \"a.pem\"\n key = {\"a.key\", \"b.key\"}\n}\n", 1,
	    "tls: certificate and key lists differ in length");
	check_err(state, "tls {\n listen = {\"0.0.0.0:8443\"}\n"
	    " certificate = {}\n key = \"a.key\"\n}\n", 3,
	    "certificate must name at least one file");
	check_err(state, "tls {\n listen = {\"0.0.0.0:8443\"}\n"
	    " certificate = {\"a.pem\",\n \"\"}\n key = {\"a\", \"b\"}\n}\n", 4,
	    "tls.certificate must not be empty");
	check_err(state, "tls {\n listen = {\"0.0.0.0:8443\"}\n"
	    " certificate = \"a.pem\"\n}\n", 1, "tls: key is required");
}

/* libconfuse 3.3 counts a line too many after a block comment. */
static void
test_block_comment_lines(void **state)
{
	check_err(state, "/* one\n two */ workers = 1\n/* x */\nbad = 1\n", 4,
	    "unknown option 'bad'");
}

static void
test_lexical_errors(void **state)
{
	check_err(state, "workers = 1\npid_file = \"abc\n\n", 2,
	    "unterminated string");
	check_err(state, "workers = 1\n/* never closed\n", 2,
	    "unterminated comment");
	check_err(state, "admin = *:9901\n", 1,
	    "unexpected '*' (quote values that contain it)");
	check_err(state, "workers =\n", 1, "unexpected end of file");
}

static void
test_reserved_keys(void **state)
{
	check_err(state, "timeouts { __sec += 1 }\n", 1,
	    "unknown option '__sec'");
}

/* No error may reach stderr: everything goes to errbuf. */
static void
test_nothing_on_stderr(void **state)
{
	struct tdir *t = *state;
	char path[600], buf[64];
	int fd, saved;
	ssize_t n;

	snprintf(path, sizeof path, "%s/stderr.txt", t->dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	fflush(stderr);
	saved = dup(2);
	assert_true(saved >= 0);
	assert_true(dup2(fd, 2) == 2);
	{
		static const char *const bad[] = {
			"timeouts {\n foo = 1\n}\n",
			"limits { max_connections = x }\n",
			"cache { lock = maybe }\n",
			"route / { cache { ttl = x } }\n",
			"upstream a { server = {\"x\"} }\n",
			"tls { http2 = 2 }\n",
			"x = \"\\8\"\n",
		};
		struct config *c = NULL;
		char err[512];

		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			err[0] = '\0';
			if (config_load(wfile(state, "q.conf", bad[i]), &c, err,
			    sizeof err) != -1 || err[0] == '\0')
				break;
		}
	}
	fflush(stderr);
	assert_true(dup2(saved, 2) == 2);
	close(saved);
	n = pread(fd, buf, sizeof buf, 0);
	close(fd);
	unlink(path);
	assert_int_equal(n, 0);
}

static void
test_shipped_config(void **state)
{
	const char *srcdir = getenv("srcdir");
	char cands[4][1024];
	struct config *c;
	char here[512], *slash;
	int n = 0;

	(void)state;
	if (srcdir != NULL) {
		snprintf(cands[n++], sizeof cands[0], "%s/conf/stoa.conf",
		    srcdir);
		snprintf(cands[n++], sizeof cands[0],
		    "%s/../../conf/stoa.conf", srcdir);
	}
	snprintf(here, sizeof here, "%s", __FILE__);
	slash = strrchr(here, '/');
	if (slash != NULL) {
		*slash = '\0';
		snprintf(cands[n++], sizeof cands[0], "%s/../../conf/stoa.conf",
		    here);
	} else
		snprintf(cands[n++], sizeof cands[0], "../../conf/stoa.conf");
	for (int i = 0; i < n; i++) {
		if (access(cands[i], R_OK) != 0)
			continue;
		c = load_ok(cands[i]);
		assert_int_equal(c->nlisten, 1);
		assert_string_equal(c->listen[0].text, "127.0.0.1:8080");
		assert_string_equal(c->pid_file, "/run/stoa/stoa.pid");
		assert_string_equal(c->error_log, "stderr");
		assert_string_equal(c->access_log, "stderr");
		assert_int_equal(c->cache.backend, CACHE_BACKEND_MEMORY);
		assert_int_equal(c->nupstreams, 1);
		assert_string_equal(c->upstreams[0].name, "demo");
		assert_string_equal(c->upstreams[0].servers[0].text,
		    "127.0.0.1:8000");
		assert_int_equal(c->nroutes, 1);
		assert_string_equal(c->routes[0].prefix, "/");
		config_free(c);
		return;
	}
	skip();
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_spec_example),
		T(test_defaults),
		T(test_section_defaults_and_values),
		T(test_include),
		T(test_include_inside_section),
		T(test_include_error_lines),
		T(test_include_errors_do_not_accumulate),
		T(test_include_missing),
		T(test_include_cycle),
		T(test_missing_file),
		T(test_err_unknown_key),
		T(test_err_bad_duration),
		T(test_err_bad_size),
		T(test_err_unknown_upstream),
		T(test_err_duplicate_route),
		T(test_err_duplicate_upstream),
		T(test_err_duplicate_section),
		T(test_err_empty_listen),
		T(test_err_unclosed_section),
		T(test_err_first_error_wins),
		T(test_err_upstream_without_server),
		T(test_err_workers),
		T(test_err_bad_address),
		T(test_err_enums),
		T(test_cache_redis_url),
		T(test_err_route_title),
		T(test_err_route_host),
		T(test_err_route_without_upstream),
		T(test_err_tls_incomplete),
		T(test_tls_lists),
		T(test_err_tls_lists),
		T(test_block_comment_lines),
		T(test_lexical_errors),
		T(test_reserved_keys),
		T(test_nothing_on_stderr),
		T(test_shipped_config),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
