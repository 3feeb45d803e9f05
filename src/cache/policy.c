/*
 * cache/policy.c -- see policy.h.
 *
 * Everything here reads a parsed struct http_msg (views into the caller's
 * buffer) and writes, at most, into a buffer the caller passes.  No
 * allocation, no clock: `now` comes in.
 *
 * Decisions beyond SPEC.md "Cache", all erring on the side of not storing:
 *
 *  - Cache-Control no-cache (with or without a field list) is treated like
 *    no-store: we never revalidate, so "store but revalidate every time"
 *    would mean serving without revalidation.
 *  - s-maxage / max-age: the first valid occurrence of each counts (RFC
 *    9111 §4.2.1).  A value that is not 1*DIGIT (a quoted one is accepted,
 *    RFC 9111 §5.2), or does not fit 64 bits, is ignored as if absent.
 *    Every TTL is capped at POLICY_TTL_MAX.  A TTL of zero is not stored.
 *  - Vary: the key holds no request header, so a response that varies on
 *    one could be served to a client it does not fit.  Not storable,
 *    except when Vary lists only Accept-Encoding and the response has no
 *    Content-Encoding (or only "identity"): an unencoded body is fit for
 *    every client.  "Vary: *" is never storable.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "cache/cache.h"
#include "cache/policy.h"
#include "util.h"
#include "vas.h"

#define IS_OWS(c)   ((c) == ' ' || (c) == '\t')

static inline unsigned char
lc(unsigned char c)
{

	return (c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c);
}

/* Case-insensitive (ASCII) equality of two views. */
static bool
view_ieq(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t i;

	if (alen != blen)
		return (false);
	for (i = 0; i < alen; i++)
		if (lc((unsigned char)a[i]) != lc((unsigned char)b[i]))
			return (false);
	return (true);
}

static bool
hdr_is(const struct http_header *h, const char *lit)
{

	return (util_tok_eq(h->name, h->name_len, lit));
}

static uint64_t
sat_add(uint64_t a, uint64_t b)
{

	return (a > UINT64_MAX - b ? UINT64_MAX : a + b);
}

/*
 * Next element of a comma-separated list v[*pos..len): OWS trimmed, empty
 * elements skipped.  False when the list is exhausted.  (No quoted-string
 * handling: used for Connection, Vary and Content-Encoding, whose
 * elements are tokens.)
 */
static bool
list_next(const char *v, size_t len, size_t *pos, const char **e,
    size_t *elen)
{
	size_t i = *pos, s, t;

	for (;;) {
		while (i < len && (IS_OWS(v[i]) || v[i] == ','))
			i++;
		if (i >= len) {
			*pos = i;
			return (false);
		}
		s = i;
		while (i < len && v[i] != ',')
			i++;
		t = i;
		while (t > s && IS_OWS(v[t - 1]))
			t--;
		if (t > s)
			break;
	}
	*pos = i;
	*e = v + s;
	*elen = t - s;
	return (true);
}

/*--------------------------------------------------------------------
 * Cache-Control directives: token [ "=" ( token / quoted-string ) ],
 * comma-separated, OWS around.  Commas inside a quoted string do not
 * split.  Junk after a directive up to the next comma is ignored.
 */

struct cc_dir {
	const char      *name;
	size_t           nlen;
	const char      *val;       /* NULL when there is no "=" */
	size_t           vlen;      /* for a quoted value: between the quotes */
};

static bool
cc_next(const char *v, size_t len, size_t *pos, struct cc_dir *d)
{
	size_t i = *pos;

	memset(d, 0, sizeof *d);
	while (i < len && (IS_OWS(v[i]) || v[i] == ','))
		i++;
	if (i >= len) {
		*pos = i;
		return (false);
	}
	d->name = v + i;
	while (i < len && v[i] != ',' && v[i] != '=' && !IS_OWS(v[i]))
		i++;
	d->nlen = (size_t)(v + i - d->name);
	while (i < len && IS_OWS(v[i]))
		i++;
	if (i < len && v[i] == '=') {
		i++;
		while (i < len && IS_OWS(v[i]))
			i++;
		if (i < len && v[i] == '"') {
			d->val = v + ++i;
			while (i < len && v[i] != '"') {
				if (v[i] == '\\' && i + 1 < len)
					i++;
				i++;
			}
			d->vlen = (size_t)(v + i - d->val);
			if (i < len)
				i++;        /* closing quote */
		} else {
			d->val = v + i;
			while (i < len && v[i] != ',' && !IS_OWS(v[i]))
				i++;
			d->vlen = (size_t)(v + i - d->val);
		}
	}
	while (i < len && v[i] != ',')
		i++;
	*pos = i;
	return (true);
}

/* delta-seconds: 1*DIGIT that fits 64 bits. */
static bool
cc_seconds(const struct cc_dir *d, uint64_t *out)
{
	uint64_t n = 0;
	size_t i;
	unsigned dig;

	if (d->val == NULL || d->vlen == 0)
		return (false);
	for (i = 0; i < d->vlen; i++) {
		if (d->val[i] < '0' || d->val[i] > '9')
			return (false);
		dig = (unsigned)(d->val[i] - '0');
		if (n > (UINT64_MAX - dig) / 10)
			return (false);
		n = n * 10 + dig;
	}
	*out = n;
	return (true);
}

static uint64_t
secs_to_ttl(uint64_t s)
{

	if (s > POLICY_TTL_MAX / 1000)
		return (POLICY_TTL_MAX);
	return (s * 1000);
}

/*--------------------------------------------------------------------*/

const char *
policy_xcache(enum cache_status st)
{

	switch (st) {
	case CACHE_ST_HIT:      return ("HIT");
	case CACHE_ST_MISS:     return ("MISS");
	case CACHE_ST_EXPIRED:  return ("EXPIRED");
	case CACHE_ST_STALE:    return ("STALE");
	case CACHE_ST_BYPASS:   return ("BYPASS");
	case CACHE_ST_NONE:
	default:                return (NULL);
	}
}

bool
policy_request_cacheable(const struct http_msg *req)
{
	/*
	 * Request headers that common frameworks obey to change what they
	 * render (the URL, the method, the scheme, host or prefix of links)
	 * but that are not part of the key: a response made under one of
	 * them must neither be stored for nor served to other clients.
	 * X-Forwarded-For/-Proto/-Host are replaced by stoa, not listed.
	 */
	static const char *const unkeyed[] = {
		"Forwarded", "X-Host", "X-Forwarded-Server", "X-Forwarded-Scheme",
		"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Original-Host",
		"X-Original-URL", "X-Rewrite-URL", "X-HTTP-Method-Override",
		"X-HTTP-Method", "X-Method-Override",
	};

	AN(req);
	if (req->meth != HTTP_M_GET && req->meth != HTTP_M_HEAD)
		return (false);
	/* a "fat" GET: the body is not in the key either */
	if (req->body == HTTP_BODY_CHUNKED ||
	    (req->body == HTTP_BODY_LENGTH && req->content_length > 0))
		return (false);
	for (size_t i = 0; i < sizeof unkeyed / sizeof unkeyed[0]; i++)
		if (http_find(req, unkeyed[i]) != NULL)
			return (false);
	/* credentials: the answer may be personal (Varnish's default too) */
	return (http_find(req, "Authorization") == NULL &&
	    http_find(req, "Cookie") == NULL);
}

/* Take n bytes out of *left; false when they are not there. */
static bool
take(size_t *left, size_t n)
{

	if (n > *left)
		return (false);
	*left -= n;
	return (true);
}

ssize_t
policy_key(const char *ns, const struct http_msg *req, char *buf, size_t len)
{
	const char *m, *h;
	size_t nlen, mlen, hlen, left, off, i;

	AN(ns);
	AN(req);
	AN(buf);
	if (req->meth == HTTP_M_GET || req->meth == HTTP_M_HEAD) {
		m = "GET";
		mlen = 3;
	} else if (req->method != NULL && req->method_len > 0) {
		m = req->method;
		mlen = req->method_len;
	} else
		return (-1);
	if (req->authority != NULL) {
		h = req->authority;
		hlen = req->authority_len;
	} else if (req->host != NULL) {
		h = req->host;
		hlen = req->host_len;
	} else {
		h = "";
		hlen = 0;
	}
	if (req->path == NULL && req->path_len > 0)
		return (-1);
	nlen = strlen(ns);

	/* ns ":" m ":" host ":" path NUL */
	left = len;
	if (!take(&left, nlen) || !take(&left, mlen) || !take(&left, hlen) ||
	    !take(&left, req->path_len) || !take(&left, 4) ||
	    len - left - 1 > SSIZE_MAX)
		return (-1);

	off = 0;
	memcpy(buf + off, ns, nlen);
	off += nlen;
	buf[off++] = ':';
	memcpy(buf + off, m, mlen);
	off += mlen;
	buf[off++] = ':';
	for (i = 0; i < hlen; i++)
		buf[off++] = (char)lc((unsigned char)h[i]);
	buf[off++] = ':';
	if (req->path_len > 0)
		memcpy(buf + off, req->path, req->path_len);
	off += req->path_len;
	buf[off] = '\0';
	return ((ssize_t)off);
}

static bool
status_storable(int status)
{

	switch (status) {
	case 200: case 203: case 204: case 300: case 301: case 404: case 410:
		return (true);
	default:
		return (false);
	}
}

/* Does any Content-Encoding header name a coding other than identity? */
static bool
content_encoded(const struct http_msg *resp)
{
	const struct http_header *h;
	const char *e;
	size_t elen, pos;
	unsigned u;

	for (u = 0; u < resp->nhdr; u++) {
		h = &resp->hdr[u];
		if (!hdr_is(h, "Content-Encoding"))
			continue;
		pos = 0;
		while (list_next(h->value, h->value_len, &pos, &e, &elen))
			if (!util_tok_eq(e, elen, "identity"))
				return (true);
	}
	return (false);
}

/* A Vary header we can live with: only Accept-Encoding (or nothing). */
static bool
vary_ok(const struct http_header *h)
{
	const char *e;
	size_t elen, pos = 0;

	while (list_next(h->value, h->value_len, &pos, &e, &elen))
		if (!util_tok_eq(e, elen, "Accept-Encoding"))
			return (false);
	return (true);
}

bool
policy_response_storable(const struct http_msg *resp, uint64_t route_ttl,
    uint64_t *ttl)
{
	const struct http_header *h;
	struct cc_dir d;
	uint64_t smax = 0, max = 0, t;
	bool have_smax = false, have_max = false, vary = false;
	size_t pos;
	unsigned u;

	AN(resp);
	AN(ttl);
	if (!status_storable(resp->status))
		return (false);
	for (u = 0; u < resp->nhdr; u++) {
		h = &resp->hdr[u];
		if (hdr_is(h, "Set-Cookie"))
			return (false);
		if (hdr_is(h, "Vary")) {
			if (!vary_ok(h))
				return (false);
			vary = true;
			continue;
		}
		if (!hdr_is(h, "Cache-Control"))
			continue;
		pos = 0;
		while (cc_next(h->value, h->value_len, &pos, &d)) {
			if (util_tok_eq(d.name, d.nlen, "no-store") ||
			    util_tok_eq(d.name, d.nlen, "private") ||
			    util_tok_eq(d.name, d.nlen, "no-cache"))
				return (false);
			if (!have_smax &&
			    util_tok_eq(d.name, d.nlen, "s-maxage"))
				have_smax = cc_seconds(&d, &smax);
			else if (!have_max &&
			    util_tok_eq(d.name, d.nlen, "max-age"))
				have_max = cc_seconds(&d, &max);
		}
	}
	if (vary && content_encoded(resp))
		return (false);
	if (have_smax)
		t = secs_to_ttl(smax);
	else if (have_max)
		t = secs_to_ttl(max);
	else
		t = route_ttl < POLICY_TTL_MAX ? route_ttl : POLICY_TTL_MAX;
	if (t == 0)
		return (false);
	*ttl = t;
	return (true);
}

enum cache_fresh
policy_freshness(const struct cache_obj *o, uint64_t now)
{
	uint64_t end;

	AN(o);
	end = sat_add(o->stored_at, o->ttl);
	if (now < end)
		return (CACHE_FRESH);
	if (now < sat_add(end, o->swr))
		return (CACHE_STALE_SWR);
	if (now < sat_add(end, o->sie))
		return (CACHE_STALE_SIE);
	return (CACHE_EXPIRED);
}

uint64_t
policy_age(const struct cache_obj *o, uint64_t now)
{

	AN(o);
	if (now < o->stored_at)
		return (0);
	return ((now - o->stored_at) / 1000);
}

/* Is NAME listed in any Connection header of m? */
static bool
conn_named(const struct http_msg *m, const char *name, size_t nlen)
{
	const struct http_header *h;
	const char *e;
	size_t elen, pos;
	unsigned u;

	for (u = 0; u < m->nhdr; u++) {
		h = &m->hdr[u];
		if (!hdr_is(h, "Connection"))
			continue;
		pos = 0;
		while (list_next(h->value, h->value_len, &pos, &e, &elen))
			if (view_ieq(e, elen, name, nlen))
				return (true);
	}
	return (false);
}

static const char * const store_drop[] = {
	/* hop-by-hop (RFC 9110 §7.6.1) */
	"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
	"Transfer-Encoding", "Upgrade",
	/* framing is ours; tags are ours; per-delivery values; per-user */
	"Content-Length", "Surrogate-Key", "Age", "X-Cache", "Set-Cookie",
};

static bool
store_keep(const struct http_msg *m, const struct http_header *h)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(store_drop); i++)
		if (hdr_is(h, store_drop[i]))
			return (false);
	return (!conn_named(m, h->name, h->name_len));
}

ssize_t
policy_store_headers(const struct http_msg *resp, char *buf, size_t len)
{
	const struct http_header *h;
	size_t off = 0, need;
	unsigned u;

	AN(resp);
	AN(buf);
	for (u = 0; u < resp->nhdr; u++) {
		h = &resp->hdr[u];
		if (!store_keep(resp, h))
			continue;
		/* name_len, value_len are 32-bit: no size_t overflow */
		need = (size_t)h->name_len + h->value_len + 4;
		if (need > len - off)
			return (-1);
		memcpy(buf + off, h->name, h->name_len);
		off += h->name_len;
		buf[off++] = ':';
		buf[off++] = ' ';
		if (h->value_len > 0)
			memcpy(buf + off, h->value, h->value_len);
		off += h->value_len;
		buf[off++] = '\r';
		buf[off++] = '\n';
	}
	if (off > SSIZE_MAX)
		return (-1);
	return ((ssize_t)off);
}

/*
 * struct iovec has no read-only variant; the views stay read-only by
 * contract (cache_put copies them).  Through uintptr_t rather than a
 * qualifier-dropping cast.
 */
static void *
iov_ro(const char *p)
{

	return ((void *)(uintptr_t)p);
}

unsigned
policy_tags(const struct http_msg *resp, struct iovec *tags, unsigned max)
{
	const struct http_header *h;
	size_t i, s;
	unsigned u, n = 0;

	AN(resp);
	AN(tags != NULL || max == 0);
	for (u = 0; u < resp->nhdr && n < max; u++) {
		h = &resp->hdr[u];
		if (!hdr_is(h, "Surrogate-Key"))
			continue;
		i = 0;
		while (n < max) {
			while (i < h->value_len && IS_OWS(h->value[i]))
				i++;
			if (i >= h->value_len)
				break;
			s = i;
			while (i < h->value_len && !IS_OWS(h->value[i]))
				i++;
			tags[n].iov_base = iov_ro(h->value + s);
			tags[n].iov_len = i - s;
			n++;
		}
	}
	return (n);
}
