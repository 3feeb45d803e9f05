/*
 * test_router.c -- route precedence, host matching, path normalisation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "router.h"

struct rdef {
	const char *prefix;
	const char *host;
};

/*
 * Build a config holding the routes in defs (file order = array order)
 * and a router over it.  The config is freed before the router is used,
 * which also checks that the router keeps no pointer into it.
 */
static struct router *
mk(const struct rdef *defs, unsigned n)
{
	struct config cfg;
	struct config_route *routes;
	struct router *r;
	unsigned i;

	memset(&cfg, 0, sizeof cfg);
	cfg.magic = CONFIG_MAGIC;
	routes = calloc(n > 0 ? n : 1, sizeof *routes);
	assert_non_null(routes);
	for (i = 0; i < n; i++) {
		routes[i].prefix = strdup(defs[i].prefix);
		assert_non_null(routes[i].prefix);
		if (defs[i].host != NULL) {
			routes[i].host = strdup(defs[i].host);
			assert_non_null(routes[i].host);
		}
		routes[i].line = (int)i + 1;
	}
	cfg.nroutes = n;
	cfg.routes = routes;
	r = router_new(&cfg);
	assert_non_null(r);
	for (i = 0; i < n; i++) {
		free(routes[i].prefix);
		free(routes[i].host);
	}
	free(routes);
	return (r);
}

static int
m(const struct router *r, const char *host, const char *path)
{
	return (router_match(r, host, host != NULL ? strlen(host) : 0,
	    path, strlen(path)));
}

/*--------------------------------------------------------------------*/

static void
test_longest_prefix_wins(void **state)
{
	static const struct rdef d[] = {
		{ "/", NULL },
		{ "/api/", NULL },
		{ "/api/v1/", NULL },
		{ "/static", NULL },
	};
	struct router *r = mk(d, 4);

	assert_int_equal(m(r, "x", "/"), 0);
	assert_int_equal(m(r, "x", "/index.html"), 0);
	assert_int_equal(m(r, "x", "/api/"), 1);
	assert_int_equal(m(r, "x", "/api/users"), 1);
	assert_int_equal(m(r, "x", "/api/v1/users"), 2);
	assert_int_equal(m(r, "x", "/api/v1/"), 2);
	assert_int_equal(m(r, "x", "/api/v2/x"), 1);
	assert_int_equal(m(r, "x", "/static"), 3);
	assert_int_equal(m(r, "x", "/staticfoo"), 3);
	assert_int_equal(m(r, "x", "/static/a.css"), 3);
	assert_int_equal(m(r, "x", "/stati"), 0);
	router_free(r);
}

static void
test_api_slash_vs_no_slash(void **state)
{
	static const struct rdef d[] = {
		{ "/api/", NULL },
	};
	struct router *r = mk(d, 1);

	assert_int_equal(m(r, NULL, "/api/"), 0);
	assert_int_equal(m(r, NULL, "/api/x"), 0);
	assert_int_equal(m(r, NULL, "/api"), ROUTER_NO_MATCH);
	assert_int_equal(m(r, NULL, "/apix"), ROUTER_NO_MATCH);
	assert_int_equal(m(r, NULL, "/api?x=/api/"), ROUTER_NO_MATCH);
	router_free(r);
}

static void
test_no_match(void **state)
{
	static const struct rdef d[] = {
		{ "/a/", NULL },
		{ "/b/", "b.example.com" },
	};
	struct router *r = mk(d, 2);

	assert_int_equal(m(r, "x", "/c/"), ROUTER_NO_MATCH);
	assert_int_equal(m(r, "x", "/"), ROUTER_NO_MATCH);
	assert_int_equal(m(r, "other.example.com", "/b/x"), ROUTER_NO_MATCH);
	assert_int_equal(m(r, NULL, "/b/x"), ROUTER_NO_MATCH);
	assert_int_equal(m(r, "b.example.com", "/b/x"), 1);
	router_free(r);

	r = mk(NULL, 0);
	assert_int_equal(m(r, "x", "/"), ROUTER_NO_MATCH);
	router_free(r);
}

static void
test_host_beats_hostless(void **state)
{
	static const struct rdef d[] = {
		{ "/", NULL },
		{ "/api/", NULL },
		{ "/api/", "api.example.com" },
		{ "/", "www.example.com" },
	};
	struct router *r = mk(d, 4);

	assert_int_equal(m(r, "api.example.com", "/api/x"), 2);
	assert_int_equal(m(r, "other.example.com", "/api/x"), 1);
	assert_int_equal(m(r, NULL, "/api/x"), 1);
	assert_int_equal(m(r, "", "/api/x"), 1);
	/* a longer host-less prefix beats a shorter one with a host */
	assert_int_equal(m(r, "www.example.com", "/api/x"), 1);
	assert_int_equal(m(r, "www.example.com", "/x"), 3);
	/* the host route at /api/ does not catch other paths */
	assert_int_equal(m(r, "api.example.com", "/x"), 0);
	router_free(r);
}

static void
test_host_only_route_falls_back_to_shorter_prefix(void **state)
{
	static const struct rdef d[] = {
		{ "/", NULL },
		{ "/api/", "api.example.com" },
		{ "/api/v1/", "v1.example.com" },
	};
	struct router *r = mk(d, 3);

	assert_int_equal(m(r, "api.example.com", "/api/v1/x"), 1);
	assert_int_equal(m(r, "v1.example.com", "/api/v1/x"), 2);
	assert_int_equal(m(r, "other", "/api/v1/x"), 0);
	router_free(r);
}

static void
test_exact_beats_wildcard(void **state)
{
	static const struct rdef d[] = {
		{ "/", "*.example.com" },
		{ "/", "www.example.com" },
		{ "/", "*.eu.example.com" },
		{ "/", NULL },
	};
	struct router *r = mk(d, 4);

	assert_int_equal(m(r, "www.example.com", "/"), 1);
	assert_int_equal(m(r, "a.example.com", "/"), 0);
	assert_int_equal(m(r, "a.b.example.com", "/"), 0);
	/* the longer wildcard suffix is the more specific one */
	assert_int_equal(m(r, "a.eu.example.com", "/"), 2);
	assert_int_equal(m(r, "eu.example.com", "/"), 0);
	/* the bare domain is not matched by the wildcard */
	assert_int_equal(m(r, "example.com", "/"), 3);
	assert_int_equal(m(r, ".example.com", "/"), 3);
	assert_int_equal(m(r, "xexample.com", "/"), 3);
	router_free(r);
}

static void
test_host_case_port_trailing_dot(void **state)
{
	static const struct rdef d[] = {
		{ "/", NULL },
		{ "/", "api.example.com" },
		{ "/w/", "*.Example.COM." },
	};
	struct router *r = mk(d, 3);

	assert_int_equal(m(r, "API.Example.Com", "/"), 1);
	assert_int_equal(m(r, "api.example.com:8080", "/"), 1);
	assert_int_equal(m(r, "api.example.com.", "/"), 1);
	assert_int_equal(m(r, "API.EXAMPLE.COM.:443", "/"), 1);
	assert_int_equal(m(r, "api.example.co", "/"), 0);
	assert_int_equal(m(r, "api.example.comx", "/"), 0);
	assert_int_equal(m(r, "A.B.EXAMPLE.COM:80", "/w/x"), 2);
	assert_int_equal(m(r, "a.example.com.", "/w/x"), 2);
	router_free(r);
}

static void
test_host_ipv6(void **state)
{
	static const struct rdef d[] = {
		{ "/", NULL },
		{ "/", "[::1]" },
		{ "/", "FE80::2" },
	};
	struct router *r = mk(d, 3);

	assert_int_equal(m(r, "[::1]:8080", "/"), 1);
	assert_int_equal(m(r, "[::1]", "/"), 1);
	assert_int_equal(m(r, "[fe80::2]:80", "/"), 2);
	assert_int_equal(m(r, "[FE80::2]", "/"), 2);
	assert_int_equal(m(r, "[::2]:8080", "/"), 0);
	/* malformed: only host-less routes */
	assert_int_equal(m(r, "[::1", "/"), 0);
	assert_int_equal(m(r, "::1", "/"), 0);
	assert_int_equal(m(r, "[::1]x", "/"), 0);
	router_free(r);
}

static void
test_host_len_not_nul_terminated(void **state)
{
	static const struct rdef d[] = {
		{ "/", NULL },
		{ "/", "a.example.com" },
	};
	struct router *r = mk(d, 2);
	const char *h = "a.example.comXYZ";

	assert_int_equal(router_match(r, h, 13, "/", 1), 1);
	assert_int_equal(router_match(r, h, 14, "/", 1), 0);
	router_free(r);
}

static void
test_dot_segments(void **state)
{
	static const struct rdef d[] = {
		{ "/", NULL },
		{ "/api/", NULL },
		{ "/admin/", NULL },
		{ "/admin", "admin.example.com" },
	};
	struct router *r = mk(d, 4);

	assert_int_equal(m(r, "x", "/api/../admin/"), 2);
	assert_int_equal(m(r, "x", "/api/../admin"), 0);
	assert_int_equal(m(r, "admin.example.com", "/api/../admin"), 3);
	assert_int_equal(m(r, "x", "/api/./x"), 1);
	assert_int_equal(m(r, "x", "/./api/x"), 1);
	assert_int_equal(m(r, "x", "/api/x/../../admin/y"), 2);
	assert_int_equal(m(r, "x", "/api/x/.."), 1);
	assert_int_equal(m(r, "x", "/api/.."), 0);
	assert_int_equal(m(r, "x", "/api/."), 1);
	/* names that merely start with dots are ordinary segments */
	assert_int_equal(m(r, "x", "/api/.../x"), 1);
	assert_int_equal(m(r, "x", "/api/..x/y"), 1);
	router_free(r);
}

static void
test_encoded_dots_resolved(void **state)
{
	static const struct rdef d[] = {
		{ "/", NULL },
		{ "/api/", NULL },
		{ "/admin/", NULL },
	};
	struct router *r = mk(d, 3);

	assert_int_equal(m(r, "x", "/api/%2e%2e/admin/"), 2);
	assert_int_equal(m(r, "x", "/api/%2E%2E/admin/x"), 2);
	assert_int_equal(m(r, "x", "/api/.%2e/admin/x"), 2);
	assert_int_equal(m(r, "x", "/%61pi/x"), 1);
	assert_int_equal(m(r, "x", "/%2e%2e/admin/"), ROUTER_BAD_PATH);
	router_free(r);
}

static void
test_reserved_escapes_stay_encoded(void **state)
{
	static const struct rdef d[] = {
		{ "/", NULL },
		{ "/a/b/", NULL },
		{ "/a%2Fb/", NULL },
		{ "/c%3a/", NULL },
	};
	struct router *r = mk(d, 4);

	/* %2F is not a separator: no match for /a/b/ */
	assert_int_equal(m(r, "x", "/a%2Fb/x"), 2);
	assert_int_equal(m(r, "x", "/a%2fb/x"), 2);
	assert_int_equal(m(r, "x", "/a/b/x"), 1);
	/* %2F%2E%2E is not a dot segment either */
	assert_int_equal(m(r, "x", "/a/b/%2F%2E%2E/x"), 1);
	/* hex case in escapes does not matter, prefix normalised too */
	assert_int_equal(m(r, "x", "/c%3A/x"), 3);
	router_free(r);
}

static void
test_above_root(void **state)
{
	static const struct rdef d[] = {
		{ "/", NULL },
	};
	struct router *r = mk(d, 1);

	assert_int_equal(m(r, "x", "/.."), ROUTER_BAD_PATH);
	assert_int_equal(m(r, "x", "/../etc/passwd"), ROUTER_BAD_PATH);
	assert_int_equal(m(r, "x", "/a/../../b"), ROUTER_BAD_PATH);
	assert_int_equal(m(r, "x", "/a/%2e%2e/.."), ROUTER_BAD_PATH);
	assert_int_equal(m(r, "x", "/a/../b"), 0);
	router_free(r);
}

static void
test_slashes_merged(void **state)
{
	static const struct rdef d[] = {
		{ "/", NULL },
		{ "/api/x", NULL },
		{ "/b//c/", NULL },
	};
	struct router *r = mk(d, 3);

	assert_int_equal(m(r, "x", "//api//x"), 1);
	assert_int_equal(m(r, "x", "/api///x/y"), 1);
	assert_int_equal(m(r, "x", "///api/x"), 1);
	/* the prefix "/b//c/" is normalised to "/b/c/" */
	assert_int_equal(m(r, "x", "/b/c/d"), 2);
	assert_int_equal(m(r, "x", "/b//c/d"), 2);
	router_free(r);
}

static void
test_query_ignored(void **state)
{
	static const struct rdef d[] = {
		{ "/", NULL },
		{ "/api/", NULL },
	};
	struct router *r = mk(d, 2);

	assert_int_equal(m(r, "x", "/api/x?y=1"), 1);
	assert_int_equal(m(r, "x", "/x?/api/"), 0);
	assert_int_equal(m(r, "x", "/x?/../../.."), 0);
	assert_int_equal(m(r, "x", "/x?%zz"), 0);
	assert_int_equal(m(r, "x", "/x#/api/"), 0);
	assert_int_equal(m(r, "x", "/api?"), 0);
	router_free(r);
}

static void
test_bad_escape_and_bad_start(void **state)
{
	static const struct rdef d[] = {
		{ "/", NULL },
	};
	struct router *r = mk(d, 1);

	assert_int_equal(m(r, "x", "/a%zzb"), ROUTER_BAD_PATH);
	assert_int_equal(m(r, "x", "/a%2"), ROUTER_BAD_PATH);
	assert_int_equal(m(r, "x", "/a%"), ROUTER_BAD_PATH);
	assert_int_equal(m(r, "x", "/a%g0"), ROUTER_BAD_PATH);
	assert_int_equal(m(r, "x", "/a%20b"), 0);
	/* the escape is cut by the end of the buffer, not by a NUL */
	assert_int_equal(router_match(r, "x", 1, "/a%2F", 4), ROUTER_BAD_PATH);
	assert_int_equal(router_match(r, "x", 1, "/a%2F", 3), ROUTER_BAD_PATH);
	assert_int_equal(router_match(r, "x", 1, "/a%2F", 5), 0);
	assert_int_equal(m(r, "x", "a/b"), ROUTER_BAD_PATH);
	assert_int_equal(m(r, "x", "*"), ROUTER_BAD_PATH);
	assert_int_equal(m(r, "x", ""), ROUTER_BAD_PATH);
	assert_int_equal(m(r, "x", "?x"), ROUTER_BAD_PATH);
	router_free(r);
}

static void
test_long_path(void **state)
{
	static const struct rdef d[] = {
		{ "/", NULL },
		{ "/api/", NULL },
	};
	struct router *r = mk(d, 2);
	size_t n = ROUTER_PATH_MAX + 100;
	char *p = malloc(n + 1);

	assert_non_null(p);
	memcpy(p, "/api/", 5);
	memset(p + 5, 'a', n - 5);
	p[n] = '\0';
	assert_int_equal(m(r, "x", p), 1);
	/* a query does not count towards the length */
	p[100] = '?';
	assert_int_equal(m(r, "x", p), 1);
	p[100] = 'a';
	p[200] = '%';
	assert_int_equal(m(r, "x", p), ROUTER_BAD_PATH);
	p[200] = 'a';
	memcpy(p + 5, "../", 3);
	assert_int_equal(m(r, "x", p), ROUTER_BAD_PATH);
	memcpy(p + 5, "a//", 3);
	assert_int_equal(m(r, "x", p), ROUTER_BAD_PATH);
	/* exactly ROUTER_PATH_MAX is still normalised */
	p[ROUTER_PATH_MAX] = '\0';
	memcpy(p + 5, "../", 3);
	assert_int_equal(m(r, "x", p), 0);
	free(p);
	router_free(r);
}

static void
test_duplicate_after_normalisation_keeps_first(void **state)
{
	static const struct rdef d[] = {
		{ "/a/", "h" },
		{ "/a//", "H" },
		{ "/a/", NULL },
		{ "/a/./", NULL },
	};
	struct router *r = mk(d, 4);

	assert_int_equal(m(r, "h", "/a/x"), 0);
	assert_int_equal(m(r, "z", "/a/x"), 2);
	router_free(r);
}

/*
 * Many routes: compare with a straightforward reference over all of
 * them, so the binary search and parent chain agree with the rules.
 */
static int
ref_match(const struct rdef *d, unsigned n, const char *host,
    const char *path)
{
	int best = -1, bestrank = 0;
	size_t bestlen = 0, pl, hl;
	unsigned i;
	int rank;

	for (i = 0; i < n; i++) {
		pl = strlen(d[i].prefix);
		if (strncmp(path, d[i].prefix, pl) != 0)
			continue;
		if (d[i].host == NULL) {
			rank = 0;
		} else if (d[i].host[0] == '*') {
			hl = strlen(d[i].host + 1);
			if (host == NULL || strlen(host) <= hl ||
			    strcmp(host + strlen(host) - hl, d[i].host + 1) != 0)
				continue;
			rank = 1 + (int)hl;
		} else {
			if (host == NULL || strcmp(host, d[i].host) != 0)
				continue;
			rank = 1000;
		}
		if (best < 0 || pl > bestlen || (pl == bestlen && rank > bestrank)) {
			best = (int)i;
			bestlen = pl;
			bestrank = rank;
		}
	}
	return (best);
}

static void
test_many_routes_agree_with_reference(void **state)
{
	static const char *segs[] = { "a", "ab", "b", "abc", "a-", "z" };
	static const char *hosts[] = { NULL, "h1.ex", "h2.ex", "*.ex" };
	struct rdef d[200];
	char pbuf[200][32], path[64];
	unsigned n = 0, i, j, k, t;
	const char *qh;
	struct router *r;
	int got, want;

	srand(1);
	while (n < sizeof d / sizeof d[0]) {
		k = 1 + (unsigned)rand() % 3;
		strcpy(pbuf[n], "/");
		for (j = 0; j < k; j++) {
			strcat(pbuf[n], segs[rand() % 6]);
			if (rand() % 2)
				strcat(pbuf[n], "/");
		}
		d[n].prefix = pbuf[n];
		d[n].host = hosts[rand() % 4];
		/* config.c rejects the same prefix+host twice */
		for (j = 0; j < n; j++)
			if (strcmp(d[j].prefix, d[n].prefix) == 0 &&
			    (d[j].host == d[n].host))
				break;
		if (j == n)
			n++;
	}
	r = mk(d, n);
	for (t = 0; t < 5000; t++) {
		strcpy(path, "/");
		k = 1 + (unsigned)rand() % 4;
		for (j = 0; j < k; j++) {
			strcat(path, segs[rand() % 6]);
			if (rand() % 2)
				strcat(path, "/");
		}
		i = (unsigned)rand() % 5;
		qh = i == 0 ? NULL : i == 1 ? "h1.ex" : i == 2 ? "h2.ex" :
		    i == 3 ? "x.ex" : "other";
		got = m(r, qh, path);
		want = ref_match(d, n, qh, path);
		if (got != want)
			fail_msg("host %s path %s: got %d want %d",
			    qh ? qh : "(null)", path, got, want);
	}
	router_free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_longest_prefix_wins),
		cmocka_unit_test(test_api_slash_vs_no_slash),
		cmocka_unit_test(test_no_match),
		cmocka_unit_test(test_host_beats_hostless),
		cmocka_unit_test(test_host_only_route_falls_back_to_shorter_prefix),
		cmocka_unit_test(test_exact_beats_wildcard),
		cmocka_unit_test(test_host_case_port_trailing_dot),
		cmocka_unit_test(test_host_ipv6),
		cmocka_unit_test(test_host_len_not_nul_terminated),
		cmocka_unit_test(test_dot_segments),
		cmocka_unit_test(test_encoded_dots_resolved),
		cmocka_unit_test(test_reserved_escapes_stay_encoded),
		cmocka_unit_test(test_above_root),
		cmocka_unit_test(test_slashes_merged),
		cmocka_unit_test(test_query_ignored),
		cmocka_unit_test(test_bad_escape_and_bad_start),
		cmocka_unit_test(test_long_path),
		cmocka_unit_test(test_duplicate_after_normalisation_keeps_first),
		cmocka_unit_test(test_many_routes_agree_with_reference),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
