/*
 * test_policy.c -- cache policy: cacheable requests, keys, storable
 * responses and their TTL, freshness windows, Age, stored headers, tags.
 * Messages are real HTTP/1.1 text run through the http1 parser.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cache/cache.h"
#include "cache/policy.h"
#include "http1.h"

#define MAXH    16384
#define RTTL    30000           /* the route's ttl in these tests (ms) */

/* A parsed message and the bytes its views point into. */
struct pm {
	char            buf[4096];
	struct http_msg m;
};

static const struct http_msg *
parse_req(struct pm *p, const char *s)
{
	struct http1_err err;
	size_t n = strlen(s);

	assert_true(n < sizeof p->buf);
	memcpy(p->buf, s, n);
	assert_int_equal(http1_parse_request(p->buf, n, MAXH, &p->m, &err),
	    (ssize_t)n);
	return (&p->m);
}

/* A response with STATUS and HDRS (complete "Name: value\r\n" lines). */
static const struct http_msg *
parse_resp(struct pm *p, int status, const char *hdrs)
{
	struct http1_err err;
	int n;

	n = snprintf(p->buf, sizeof p->buf, "HTTP/1.1 %d X\r\n%s\r\n",
	    status, hdrs);
	assert_true(n > 0 && (size_t)n < sizeof p->buf);
	assert_int_equal(http1_parse_response(p->buf, (size_t)n, MAXH,
	    HTTP_M_GET, &p->m, &err), n);
	return (&p->m);
}

static bool
stor(int status, const char *hdrs, uint64_t route_ttl, uint64_t *ttl)
{
	struct pm p;

	*ttl = 0;
	return (policy_response_storable(parse_resp(&p, status, hdrs),
	    route_ttl, ttl));
}

/* Macros so that cmocka reports the line of the failing case. */
#define STORES(st, h, want) do {                                         \
	uint64_t t_;                                                      \
	assert_true(stor((st), (h), RTTL, &t_));                          \
	assert_int_equal(t_, (want));                                     \
} while (0)

#define REFUSES(st, h) do {                                              \
	uint64_t t_;                                                      \
	assert_false(stor((st), (h), RTTL, &t_));                         \
} while (0)

static bool
cacheable(const char *s)
{
	struct pm p;

	return (policy_request_cacheable(parse_req(&p, s)));
}

/*--------------------------------------------------------------------*/

static void
test_request_cacheable(void **state)
{

	assert_true(cacheable("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
	assert_true(cacheable("HEAD /x?y HTTP/1.1\r\nHost: a\r\n\r\n"));
	assert_false(cacheable("POST / HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 0\r\n\r\n"));
	assert_false(cacheable("PUT / HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 0\r\n\r\n"));
	assert_false(cacheable("DELETE / HTTP/1.1\r\nHost: a\r\n\r\n"));
	assert_false(cacheable("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"));
}

static void
test_request_authorization_bypasses(void **state)
{

	assert_false(cacheable("GET / HTTP/1.1\r\nHost: a\r\n"
	    "Authorization: Basic YTpi\r\n\r\n"));
	assert_false(cacheable("HEAD / HTTP/1.1\r\nHost: a\r\n"
	    "authorization: Bearer t\r\n\r\n"));
	/* only that exact header name counts */
	assert_true(cacheable("GET / HTTP/1.1\r\nHost: a\r\n"
	    "X-Authorization: x\r\n\r\n"));
}

/*--------------------------------------------------------------------*/

static ssize_t
key(const char *ns, const char *reqs, char *buf, size_t len)
{
	struct pm p;

	return (policy_key(ns, parse_req(&p, reqs), buf, len));
}

#define KEY_IS(ns, reqs, want) do {                                      \
	char kb_[512];                                                    \
	assert_int_equal(key((ns), (reqs), kb_, sizeof kb_),              \
	    (ssize_t)strlen(want));                                       \
	assert_string_equal(kb_, (want));                                 \
} while (0)

static void
test_key_format(void **state)
{

	KEY_IS("ns", "GET /a/B?x=1&y=%41 HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
	    "ns:GET:www.example.com:/a/B?x=1&y=%41");
	/* HEAD shares GET's key */
	KEY_IS("ns", "HEAD /a/B?x=1&y=%41 HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
	    "ns:GET:www.example.com:/a/B?x=1&y=%41");
	/* host lower-cased, port kept */
	KEY_IS("stoa", "GET / HTTP/1.1\r\nHost: WWW.Example.COM:8080\r\n\r\n",
	    "stoa:GET:www.example.com:8080:/");
	/* empty query kept as sent */
	KEY_IS("n", "GET /p? HTTP/1.1\r\nHost: h\r\n\r\n", "n:GET:h:/p?");
	/* no Host at all (HTTP/1.0): empty host */
	KEY_IS("n", "GET /p HTTP/1.0\r\n\r\n", "n:GET::/p");
	/* other methods (never cached) keep their own token */
	KEY_IS("n", "DELETE /p HTTP/1.1\r\nHost: h\r\n\r\n", "n:DELETE:h:/p");
	/* empty namespace */
	KEY_IS("", "GET /p HTTP/1.1\r\nHost: h\r\n\r\n", ":GET:h:/p");
}

static void
test_key_absolute_form(void **state)
{

	KEY_IS("ns", "GET http://Other.Example:81/p?q=1 HTTP/1.1\r\n"
	    "Host: ignored.example\r\n\r\n",
	    "ns:GET:other.example:81:/p?q=1");
	KEY_IS("ns", "HEAD http://A.B HTTP/1.1\r\nHost: x\r\n\r\n",
	    "ns:GET:a.b:/");
}

static void
test_key_too_small(void **state)
{
	static const char rq[] = "GET /abc HTTP/1.1\r\nHost: h:1\r\n\r\n";
	static const char want[] = "ns:GET:h:1:/abc";
	char buf[64];
	size_t n = strlen(want);

	/* exactly enough: the key and its NUL */
	memset(buf, 'Z', sizeof buf);
	assert_int_equal(key("ns", rq, buf, n + 1), (ssize_t)n);
	assert_string_equal(buf, want);

	/* one short, and nothing at all: -1, nothing past len written */
	memset(buf, 'Z', sizeof buf);
	assert_int_equal(key("ns", rq, buf, n), -1);
	assert_int_equal(buf[n], 'Z');
	assert_int_equal(key("ns", rq, buf, 0), -1);
	assert_int_equal(key("ns", rq, buf, 3), -1);
	assert_int_equal(buf[3], 'Z');
}

/*--------------------------------------------------------------------*/

static void
test_storable_statuses(void **state)
{
	static const int ok[] = { 200, 203, 204, 300, 301, 404, 410 };
	static const int no[] = { 201, 206, 302, 303, 304, 307, 308, 400,
	    401, 403, 500, 502, 503 };
	size_t i;

	for (i = 0; i < sizeof ok / sizeof ok[0]; i++)
		STORES(ok[i], "Content-Length: 0\r\n", RTTL);
	for (i = 0; i < sizeof no / sizeof no[0]; i++)
		REFUSES(no[i], "Content-Length: 0\r\n");
	/* a storable status alone is enough: route ttl */
	STORES(200, "", RTTL);
}

static void
test_cc_forbids(void **state)
{

	REFUSES(200, "Cache-Control: no-store\r\n");
	REFUSES(200, "Cache-Control: NO-STORE\r\n");
	REFUSES(200, "Cache-Control: Private\r\n");
	REFUSES(200, "Cache-Control: no-Cache\r\n");
	REFUSES(200, "Cache-Control: public, max-age=10, private\r\n");
	REFUSES(200, "Cache-Control: max-age=10,no-cache\r\n");
	REFUSES(200, "Cache-Control:max-age=10 ,  no-store  \r\n");
	REFUSES(200, "Cache-Control: private=\"Set-Cookie\"\r\n");
	REFUSES(200, "Cache-Control: no-cache=\"X-A, X-B\", max-age=9\r\n");
	/* in a second Cache-Control header */
	REFUSES(200, "Cache-Control: public, max-age=10\r\n"
	    "Content-Type: text/plain\r\n"
	    "cache-control: no-store\r\n");
	/* public alone, and names that merely look alike */
	STORES(200, "Cache-Control: public\r\n", RTTL);
	STORES(200, "Cache-Control: no-storage, privacy, no-cached\r\n",
	    RTTL);
	/* a directive name inside a quoted value is not a directive */
	STORES(200, "Cache-Control: ext=\"a, no-store, b\", max-age=5\r\n",
	    5000);
	STORES(200, "Cache-Control: ext=\"a\\\", no-store, b\", max-age=6\r\n",
	    6000);
}

static void
test_set_cookie_forbids(void **state)
{

	REFUSES(200, "Set-Cookie: a=b\r\n");
	REFUSES(200, "Cache-Control: public, max-age=60\r\n"
	    "set-cookie: a=b; Path=/\r\n");
	STORES(200, "Set-Cookie2-Not: a\r\n", RTTL);
}

static void
test_ttl_from_cache_control(void **state)
{

	STORES(200, "Cache-Control: max-age=10\r\n", 10000);
	STORES(200, "Cache-Control: s-maxage=20\r\n", 20000);
	/* s-maxage beats max-age, whatever the order or header */
	STORES(200, "Cache-Control: max-age=10, s-maxage=20\r\n", 20000);
	STORES(200, "Cache-Control: s-maxage=20, max-age=10\r\n", 20000);
	STORES(200, "Cache-Control: max-age=100\r\n"
	    "Cache-Control: s-maxage=3\r\n", 3000);
	/* case-insensitive names, quoted value accepted */
	STORES(200, "Cache-Control: Max-Age=7\r\n", 7000);
	STORES(200, "Cache-Control: max-age=\"30\"\r\n", 30000);
	/* first valid occurrence counts */
	STORES(200, "Cache-Control: max-age=5, max-age=50\r\n", 5000);
	STORES(200, "Cache-Control: s-maxage=6, s-maxage=60\r\n", 6000);
	/* the route ttl when neither is there */
	STORES(200, "Cache-Control: public, must-revalidate\r\n", RTTL);
}

static void
test_ttl_zero_not_storable(void **state)
{
	uint64_t t;

	REFUSES(200, "Cache-Control: max-age=0\r\n");
	REFUSES(200, "Cache-Control: s-maxage=0, max-age=60\r\n");
	REFUSES(200, "Cache-Control: max-age=000\r\n");
	assert_false(stor(200, "", 0, &t));
	/* route ttl 0 but the upstream gives one */
	assert_true(stor(200, "Cache-Control: max-age=2\r\n", 0, &t));
	assert_int_equal(t, 2000);
}

static void
test_ttl_invalid_ignored(void **state)
{

	STORES(200, "Cache-Control: max-age=abc\r\n", RTTL);
	STORES(200, "Cache-Control: max-age=\r\n", RTTL);
	STORES(200, "Cache-Control: max-age\r\n", RTTL);
	STORES(200, "Cache-Control: max-age=-1\r\n", RTTL);
	STORES(200, "Cache-Control: max-age=1.5\r\n", RTTL);
	STORES(200, "Cache-Control: max-age=12x\r\n", RTTL);
	STORES(200, "Cache-Control: max-age=\"\"\r\n", RTTL);
	/* more than 64 bits of seconds */
	STORES(200, "Cache-Control: max-age=99999999999999999999999\r\n",
	    RTTL);
	/* a bad s-maxage leaves max-age in charge */
	STORES(200, "Cache-Control: s-maxage=x, max-age=4\r\n", 4000);
	/* a bad first max-age, then a good one */
	STORES(200, "Cache-Control: max-age=z, max-age=8\r\n", 8000);
}

static void
test_ttl_capped(void **state)
{
	uint64_t t;

	STORES(200, "Cache-Control: max-age=999999999999\r\n",
	    POLICY_TTL_MAX);
	STORES(200, "Cache-Control: s-maxage=18446744073709551615\r\n",
	    POLICY_TTL_MAX);
	/* exactly one year is allowed as is */
	STORES(200, "Cache-Control: max-age=31536000\r\n", POLICY_TTL_MAX);
	STORES(200, "Cache-Control: max-age=31535999\r\n",
	    POLICY_TTL_MAX - 1000);
	assert_true(stor(200, "", UINT64_MAX, &t));
	assert_int_equal(t, POLICY_TTL_MAX);
}

static void
test_vary(void **state)
{

	REFUSES(200, "Vary: *\r\n");
	REFUSES(200, "Vary: Accept-Language\r\n");
	REFUSES(200, "Vary: Accept-Encoding, Cookie\r\n");
	REFUSES(200, "Vary: Accept-Encoding\r\nVary: User-Agent\r\n");
	STORES(200, "Vary: Accept-Encoding\r\n", RTTL);
	STORES(200, "vary: accept-encoding\r\n", RTTL);
	STORES(200, "Vary: Accept-Encoding, accept-encoding\r\n", RTTL);
	/* an encoded body varying on Accept-Encoding fits only some clients */
	REFUSES(200, "Vary: Accept-Encoding\r\nContent-Encoding: gzip\r\n");
	REFUSES(200, "Content-Encoding: br\r\nVary: Accept-Encoding\r\n");
	STORES(200, "Vary: Accept-Encoding\r\nContent-Encoding: identity\r\n",
	    RTTL);
	/* no Vary: the upstream's encoding is served as it chose */
	STORES(200, "Content-Encoding: gzip\r\n", RTTL);
}

/*--------------------------------------------------------------------*/

static struct cache_obj
obj(uint64_t stored_at, uint64_t ttl, uint64_t swr, uint64_t sie)
{
	struct cache_obj o;

	memset(&o, 0, sizeof o);
	o.status = 200;
	o.stored_at = stored_at;
	o.ttl = ttl;
	o.swr = swr;
	o.sie = sie;
	return (o);
}

static void
test_freshness_boundaries(void **state)
{
	const uint64_t s = 1700000000000ULL;
	struct cache_obj o = obj(s, 10000, 5000, 20000);

	assert_int_equal(policy_freshness(&o, s), CACHE_FRESH);
	assert_int_equal(policy_freshness(&o, s - 5), CACHE_FRESH);
	assert_int_equal(policy_freshness(&o, s + 9999), CACHE_FRESH);
	assert_int_equal(policy_freshness(&o, s + 10000), CACHE_STALE_SWR);
	assert_int_equal(policy_freshness(&o, s + 14999), CACHE_STALE_SWR);
	assert_int_equal(policy_freshness(&o, s + 15000), CACHE_STALE_SIE);
	assert_int_equal(policy_freshness(&o, s + 29999), CACHE_STALE_SIE);
	assert_int_equal(policy_freshness(&o, s + 30000), CACHE_EXPIRED);

	/* no stale windows: expired right at the TTL */
	o = obj(s, 10000, 0, 0);
	assert_int_equal(policy_freshness(&o, s + 9999), CACHE_FRESH);
	assert_int_equal(policy_freshness(&o, s + 10000), CACHE_EXPIRED);
}

static void
test_freshness_swr_vs_sie(void **state)
{
	const uint64_t s = 1000000;
	struct cache_obj o;

	/* swr >= sie: SWR covers the overlap, nothing SIE-only */
	o = obj(s, 1000, 20000, 5000);
	assert_int_equal(policy_freshness(&o, s + 1000), CACHE_STALE_SWR);
	assert_int_equal(policy_freshness(&o, s + 7000), CACHE_STALE_SWR);
	assert_int_equal(policy_freshness(&o, s + 20999), CACHE_STALE_SWR);
	assert_int_equal(policy_freshness(&o, s + 21000), CACHE_EXPIRED);

	/* sie only */
	o = obj(s, 1000, 0, 5000);
	assert_int_equal(policy_freshness(&o, s + 1000), CACHE_STALE_SIE);
	assert_int_equal(policy_freshness(&o, s + 5999), CACHE_STALE_SIE);
	assert_int_equal(policy_freshness(&o, s + 6000), CACHE_EXPIRED);

	/* windows reaching past the end of time do not wrap */
	o = obj(UINT64_MAX - 100, 50, UINT64_MAX, 0);
	assert_int_equal(policy_freshness(&o, UINT64_MAX - 51), CACHE_FRESH);
	assert_int_equal(policy_freshness(&o, UINT64_MAX - 50),
	    CACHE_STALE_SWR);
	assert_int_equal(policy_freshness(&o, UINT64_MAX - 1),
	    CACHE_STALE_SWR);
	o = obj(UINT64_MAX - 10, 100, 0, 0);
	assert_int_equal(policy_freshness(&o, UINT64_MAX - 1), CACHE_FRESH);
}

static void
test_age(void **state)
{
	const uint64_t s = 1700000000000ULL;
	struct cache_obj o = obj(s, 1000, 0, 0);

	assert_int_equal(policy_age(&o, s - 1), 0);
	assert_int_equal(policy_age(&o, 0), 0);
	assert_int_equal(policy_age(&o, s), 0);
	assert_int_equal(policy_age(&o, s + 999), 0);
	assert_int_equal(policy_age(&o, s + 1000), 1);
	assert_int_equal(policy_age(&o, s + 1999), 1);
	assert_int_equal(policy_age(&o, s + 61500), 61);
}

/*--------------------------------------------------------------------*/

static void
test_store_headers_filter(void **state)
{
	static const char want[] =
	    "Content-Type: text/plain\r\n"
	    "Cache-Control: max-age=10\r\n"
	    "ETag: \"v1\"\r\n"
	    "x-empty: \r\n"
	    "Vary: Accept-Encoding\r\n";
	struct pm p;
	const struct http_msg *m;
	char buf[1024];
	ssize_t n;

	m = parse_resp(&p, 200,
	    "Content-Type: text/plain\r\n"
	    "Connection: keep-alive, X-Hop\r\n"
	    "Keep-Alive: timeout=5\r\n"
	    "Cache-Control: max-age=10\r\n"
	    "x-hop: dropped because Connection names it\r\n"
	    "Content-Length: 3\r\n"
	    "Surrogate-Key: a b\r\n"
	    "Age: 10\r\n"
	    "X-Cache: HIT\r\n"
	    "Set-Cookie: s=1\r\n"
	    "ETag: \"v1\"\r\n"
	    "Proxy-Connection: keep-alive\r\n"
	    "TE: trailers\r\n"
	    "Trailer: X-T\r\n"
	    "Upgrade: h2c\r\n"
	    "x-empty:\r\n"
	    "Vary: Accept-Encoding\r\n");
	n = policy_store_headers(m, buf, sizeof buf);
	assert_int_equal(n, (ssize_t)strlen(want));
	assert_memory_equal(buf, want, strlen(want));
}

static void
test_store_headers_transfer_encoding(void **state)
{
	static const char want[] = "Server: s\r\n";
	struct pm p;
	const struct http_msg *m;
	char buf[256];
	ssize_t n;

	m = parse_resp(&p, 200,
	    "Transfer-Encoding: chunked\r\n"
	    "Server: s\r\n"
	    "connection: close\r\n");
	n = policy_store_headers(m, buf, sizeof buf);
	assert_int_equal(n, (ssize_t)strlen(want));
	assert_memory_equal(buf, want, strlen(want));
}

static void
test_store_headers_small_buffer(void **state)
{
	static const char want[] = "A: 1\r\nBb: 22\r\n";
	struct pm p;
	const struct http_msg *m;
	char buf[64];
	size_t n = strlen(want);

	m = parse_resp(&p, 200, "A: 1\r\nContent-Length: 0\r\nBb: 22\r\n");
	memset(buf, 'Z', sizeof buf);
	assert_int_equal(policy_store_headers(m, buf, n), (ssize_t)n);
	assert_memory_equal(buf, want, n);
	assert_int_equal(buf[n], 'Z');

	memset(buf, 'Z', sizeof buf);
	assert_int_equal(policy_store_headers(m, buf, n - 1), -1);
	assert_int_equal(buf[n - 1], 'Z');
	assert_int_equal(policy_store_headers(m, buf, 5), -1);
	assert_int_equal(policy_store_headers(m, buf, 0), -1);

	/* nothing to keep fits in nothing */
	m = parse_resp(&p, 200, "Content-Length: 0\r\nAge: 3\r\n");
	assert_int_equal(policy_store_headers(m, buf, 0), 0);
}

/*--------------------------------------------------------------------*/

#define TAG_IS(iov, s) do {                                              \
	assert_int_equal((iov).iov_len, strlen(s));                       \
	assert_memory_equal((iov).iov_base, (s), strlen(s));              \
} while (0)

static void
test_tags(void **state)
{
	struct pm p;
	const struct http_msg *m;
	struct iovec t[8];
	unsigned n;

	m = parse_resp(&p, 200,
	    "Surrogate-Key: a  bb\tc\r\n"
	    "X-Other: no\r\n"
	    "surrogate-key:    product-1    \r\n"
	    "Surrogate-Key:\r\n"
	    "SURROGATE-KEY: z\r\n");
	n = policy_tags(m, t, 8);
	assert_int_equal(n, 5);
	TAG_IS(t[0], "a");
	TAG_IS(t[1], "bb");
	TAG_IS(t[2], "c");
	TAG_IS(t[3], "product-1");
	TAG_IS(t[4], "z");
	/* views into the message, not copies */
	assert_true((const char *)t[0].iov_base >= p.buf &&
	    (const char *)t[0].iov_base < p.buf + sizeof p.buf);

	/* at most max */
	memset(t, 0, sizeof t);
	assert_int_equal(policy_tags(m, t, 2), 2);
	TAG_IS(t[0], "a");
	TAG_IS(t[1], "bb");
	assert_null(t[2].iov_base);
	assert_int_equal(policy_tags(m, t, 0), 0);

	m = parse_resp(&p, 200, "Content-Type: x\r\n");
	assert_int_equal(policy_tags(m, t, 8), 0);
}

static void
test_xcache(void **state)
{

	assert_null(policy_xcache(CACHE_ST_NONE));
	assert_string_equal(policy_xcache(CACHE_ST_HIT), "HIT");
	assert_string_equal(policy_xcache(CACHE_ST_MISS), "MISS");
	assert_string_equal(policy_xcache(CACHE_ST_EXPIRED), "EXPIRED");
	assert_string_equal(policy_xcache(CACHE_ST_STALE), "STALE");
	assert_string_equal(policy_xcache(CACHE_ST_BYPASS), "BYPASS");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_cacheable),
		cmocka_unit_test(test_request_authorization_bypasses),
		cmocka_unit_test(test_key_format),
		cmocka_unit_test(test_key_absolute_form),
		cmocka_unit_test(test_key_too_small),
		cmocka_unit_test(test_storable_statuses),
		cmocka_unit_test(test_cc_forbids),
		cmocka_unit_test(test_set_cookie_forbids),
		cmocka_unit_test(test_ttl_from_cache_control),
		cmocka_unit_test(test_ttl_zero_not_storable),
		cmocka_unit_test(test_ttl_invalid_ignored),
		cmocka_unit_test(test_ttl_capped),
		cmocka_unit_test(test_vary),
		cmocka_unit_test(test_freshness_boundaries),
		cmocka_unit_test(test_freshness_swr_vs_sie),
		cmocka_unit_test(test_age),
		cmocka_unit_test(test_store_headers_filter),
		cmocka_unit_test(test_store_headers_transfer_encoding),
		cmocka_unit_test(test_store_headers_small_buffer),
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_xcache),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
