/*
 * cache/policy.h -- what may be cached, under which key, for how long, and
 * what the client is told (X-Cache, Age).  Pure: no I/O, no allocation;
 * time comes in as `now` (ms since the epoch).  SPEC.md "Cache".
 */
#ifndef STOA_CACHE_POLICY_H
#define STOA_CACHE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "http.h"

struct cache_obj;

/* Longest TTL policy_response_storable() hands out (ms): one year. */
#define POLICY_TTL_MAX  ((uint64_t)365 * 24 * 3600 * 1000)

/* The X-Cache values. */
enum cache_status {
	CACHE_ST_NONE = 0,      /* route not cached: no X-Cache header */
	CACHE_ST_HIT,
	CACHE_ST_MISS,
	CACHE_ST_EXPIRED,       /* an entry existed but was past its TTL */
	CACHE_ST_STALE,         /* served past TTL (swr or sie window) */
	CACHE_ST_BYPASS,        /* not cacheable, or the store failed */
};

const char *policy_xcache(enum cache_status st);   /* "HIT"... ; NULL for NONE */

/* GET or HEAD, no body, no Authorization or Cookie header (as Varnish's
 * built-in policy: the answer may be personal), and none of the request
 * headers frameworks use to override the URL, method, host or scheme
 * (X-Original-URL, X-HTTP-Method-Override, Forwarded... see policy.c):
 * those requests BYPASS the cache. */
bool policy_request_cacheable(const struct http_msg *req);

/*
 * The key "NS:GET:host:path?query" into buf.  HEAD uses GET's key; host
 * is the Host header as received, lower-cased, port kept when sent (for an
 * absolute-form target, its authority); path?query exactly as received
 * (origin-form).  Returns the length, or -1 if it does not fit in len.
 * buf is also NUL-terminated, so len must leave room for that byte.
 * Methods other than GET/HEAD use their own token (never cached; for
 * completeness).  No host at all gives an empty host ("NS:GET::/p").
 */
ssize_t policy_key(const char *ns, const struct http_msg *req, char *buf,
    size_t len);

/*
 * May this response be stored?  Status 200, 203, 204, 300, 301, 404 or 410;
 * no Cache-Control no-store, private or no-cache; no Set-Cookie; and a TTL
 * above zero.  The TTL is Cache-Control s-maxage, else max-age (seconds),
 * else route_ttl (ms).  On true, *ttl is set (ms).
 *
 * Also not storable (see policy.c): Vary other than Accept-Encoding
 * alone, and Vary: Accept-Encoding with an encoded body.  Invalid s-maxage/max-age values are ignored; every TTL is capped
 * at POLICY_TTL_MAX.
 */
bool policy_response_storable(const struct http_msg *resp, uint64_t route_ttl,
    uint64_t *ttl);

enum cache_fresh {
	CACHE_FRESH = 0,        /* now < stored_at + ttl */
	CACHE_STALE_SWR,        /* within stale_while_revalidate after ttl */
	CACHE_STALE_SIE,        /* only within stale_if_error after ttl */
	CACHE_EXPIRED,          /* past every window */
};

enum cache_fresh policy_freshness(const struct cache_obj *o, uint64_t now);

/* Age in whole seconds (floor), never negative. */
uint64_t policy_age(const struct cache_obj *o, uint64_t now);

/*
 * Serialize the response headers worth storing into buf as
 * "Name: value\r\n" lines: everything except hop-by-hop headers (and
 * those named by Connection), Content-Length, Transfer-Encoding,
 * Surrogate-Key, Age, X-Cache and Set-Cookie.  Returns the length, or -1
 * if buf is too small.
 */
ssize_t policy_store_headers(const struct http_msg *resp, char *buf,
    size_t len);

/*
 * Surrogate-Key tags of a response (space-separated values, all such
 * headers).  Fills up to max views into the header values; returns the
 * count.
 */
unsigned policy_tags(const struct http_msg *resp, struct iovec *tags,
    unsigned max);

#endif
