/*
 * http1.c -- strict, incremental HTTP/1.1 head parser and chunked decoder
 * (RFC 9112).  Pure: no I/O, no allocation, no locale.
 *
 * The head parsers are stateless: every call parses buf[0..len) from the
 * start in one pass over table-driven character classes, stopping at
 * min(len, max_head).  A call returns an error as soon as the bytes seen so
 * far cannot begin a valid head, so garbage fails on the first read rather
 * than after max_head bytes.  Every ambiguity that could let two parsers
 * disagree on where a message ends (request smuggling, response splitting)
 * is an error, never a guess.
 */
#include <string.h>

#include "http1.h"
#include "vas.h"

#define H1_MAX_LENGTH     (UINT64_C(1) << 62)  /* largest CL / chunk size */
#define H1_MAX_EMPTY      4     /* empty lines tolerated before a request */
#define H1_CHUNK_LINE_MAX 4096  /* chunk-size line incl. extensions */
#define H1_CHUNK_HEX_MAX  16    /* hex digits in a chunk-size */
#define H1_TRAILER_MAX    16384 /* trailer section bytes */

/* Character classes (RFC 9110 §5.6.2, §5.5, RFC 3986 §3.2.2). */
#define C_TCHAR   0x01  /* token character */
#define C_VALUE   0x02  /* field-value byte: VCHAR, obs-text, SP, HTAB */
#define C_TARGET  0x04  /* request-target byte: VCHAR except '#' */
#define C_HOST    0x08  /* reg-name: unreserved, sub-delims, '%' */
#define C_HEX     0x10
#define C_DIGIT   0x20
#define C_OWS     0x40  /* SP, HTAB */

static const uint8_t h1_cls[256] = {
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,	/* 00 */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,	/* 10 */
	0x42, 0x0f, 0x06, 0x03, 0x0f, 0x0f, 0x0f, 0x0f, 0x0e, 0x0e, 0x0f, 0x0f, 0x0e, 0x0f, 0x0f, 0x06,	/* 20 */
	0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x06, 0x0e, 0x06, 0x0e, 0x06, 0x06,	/* 30 */
	0x06, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f,	/* 40 */
	0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x06, 0x06, 0x06, 0x07, 0x0f,	/* 50 */
	0x07, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f,	/* 60 */
	0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x06, 0x07, 0x06, 0x0f, 0x00,	/* 70 */
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,	/* 80 */
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,	/* 90 */
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,	/* a0 */
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,	/* b0 */
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,	/* c0 */
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,	/* d0 */
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,	/* e0 */
	0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,	/* f0 */
};

#define IS(c, cls)  (h1_cls[(uint8_t)(c)] & (cls))

#define FAIL(st, why) do {                                               \
	err->status = (st);                                               \
	err->reason = (why);                                              \
	return (HTTP1_ERROR);                                             \
} while (0)

/* What the field lines tell about framing and persistence. */
struct h1_scan {
	const uint8_t *cl;      /* first Content-Length value */
	size_t         cl_len;
	const uint8_t *te;      /* first Transfer-Encoding value */
	size_t         te_len;
	unsigned       n_cl, n_te, n_host;
	bool           c_close, c_keep, c_upgrade;  /* Connection tokens */
	bool           has_upgrade;                 /* Upgrade field seen */
	bool           expect;                      /* Expect: 100-continue */
};

static inline unsigned
h1_lc(uint8_t c)
{

	return (c >= 'A' && c <= 'Z' ? c | 0x20u : c);
}

/* Case-insensitive compare of p[0..n) with the lower-case literal lit. */
static bool
h1_ieq(const uint8_t *p, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (lit[i] == '\0' || h1_lc(p[i]) != (uint8_t)lit[i])
			return (false);
	return (lit[n] == '\0');
}

static unsigned
h1_hexval(uint8_t c)
{

	if (c <= '9')
		return (c - '0');
	return (h1_lc(c) - 'a' + 10);
}

static void
h1_msg_init(struct http_msg *m)
{

	m->method = NULL;
	m->method_len = 0;
	m->meth = HTTP_M_OTHER;
	m->target = NULL;
	m->target_len = 0;
	m->path = NULL;
	m->path_len = 0;
	m->authority = NULL;
	m->authority_len = 0;
	m->status = 0;
	m->reason = NULL;
	m->reason_len = 0;
	m->minor = 1;
	m->nhdr = 0;
	m->body = HTTP_BODY_NONE;
	m->content_length = 0;
	m->host = NULL;
	m->host_len = 0;
	m->keep_alive = false;
	m->conn_close = false;
	m->upgrade = false;
	m->expect_continue = false;
	m->head_len = 0;
}

/*
 * Check p[0..n) against "HTTP/<digit>.<digit>" (8 bytes).  Returns 1 when
 * all 8 bytes match, 0 when the n < 8 bytes seen so far are a valid
 * prefix, -1 on a mismatch.  Case-sensitive (RFC 9112 §2.3).
 */
static int
h1_version(const uint8_t *p, size_t n)
{
	static const char tpl[] = "HTTP/0.0";
	size_t i;

	for (i = 0; i < 8 && i < n; i++) {
		if (i == 5 || i == 7) {
			if (!IS(p[i], C_DIGIT))
				return (-1);
		} else if (p[i] != (uint8_t)tpl[i])
			return (-1);
	}
	return (n >= 8 ? 1 : 0);
}

/*
 * authority = host [ ":" port ] with host = "[" v6 "]" / IPv4 / reg-name
 * (RFC 3986 §3.2; userinfo is not allowed).  The port has at most five
 * digits.  An empty value is valid only when allow_empty (Host: with no
 * authority, RFC 9110 §7.2); an empty host with a port never is.
 */
#define H1_AUTH_EMPTY  0x1
#define H1_AUTH_PORT   0x2      /* the port is required (CONNECT) */

static bool
h1_authority_ok(const uint8_t *p, size_t n, unsigned flags)
{
	size_t i = 0, d;

	if (n == 0)
		return ((flags & H1_AUTH_EMPTY) != 0);
	if (p[0] == '[') {
		for (i = 1; i < n && p[i] != ']'; i++)
			if (!IS(p[i], C_HEX) && p[i] != ':' && p[i] != '.')
				return (false);
		if (i == n || i < 3)
			return (false);
		i++;
	} else {
		for (; i < n && IS(p[i], C_HOST); i++) {
			if (p[i] != '%')
				continue;
			if (n - i < 3 || !IS(p[i + 1], C_HEX) ||
			    !IS(p[i + 2], C_HEX))
				return (false);
			i += 2;
		}
		if (i == 0)
			return (false);
	}
	if (i == n)
		return ((flags & H1_AUTH_PORT) == 0);
	if (p[i++] != ':')
		return (false);
	d = n - i;
	if (d > 5 || (d == 0 && (flags & H1_AUTH_PORT)))
		return (false);
	for (; i < n; i++)
		if (!IS(p[i], C_DIGIT))
			return (false);
	return (true);
}

/* Content-Length = 1*DIGIT, at most H1_MAX_LENGTH. */
static bool
h1_content_length(const uint8_t *v, size_t n, uint64_t *out)
{
	uint64_t x = 0;
	unsigned d;
	size_t i;

	if (n == 0)
		return (false);
	for (i = 0; i < n; i++) {
		if (!IS(v[i], C_DIGIT))
			return (false);
		d = v[i] - '0';
		if (x > (H1_MAX_LENGTH - d) / 10)
			return (false);
		x = x * 10 + d;
	}
	*out = x;
	return (true);
}

/* Classification of a Transfer-Encoding value (RFC 9112 §6.1). */
enum h1_te {
	TE_BAD,                 /* syntax error, empty, or chunked twice */
	TE_CHUNKED,             /* exactly "chunked" */
	TE_OTHER_CHUNKED,       /* other codings, then chunked last */
	TE_NOT_LAST,            /* chunked present but not the final coding */
	TE_NO_CHUNKED,          /* only codings other than chunked */
};

static size_t
h1_skip_ows(const uint8_t *v, size_t i, size_t n)
{

	while (i < n && IS(v[i], C_OWS))
		i++;
	return (i);
}

static size_t
h1_skip_token(const uint8_t *v, size_t i, size_t n)
{

	while (i < n && IS(v[i], C_TCHAR))
		i++;
	return (i);
}

/*
 * transfer-coding = token *( OWS ";" OWS token BWS "=" BWS token ), in a
 * comma list whose empty elements are ignored (RFC 9110 §5.6.1).  Quoted
 * parameter values are not supported (TE_BAD); chunked takes no parameters.
 */
static enum h1_te
h1_te(const uint8_t *v, size_t n)
{
	size_t i = 0, s;
	unsigned nchunked = 0, nother = 0;
	bool last_chunked = false, params, chunked;

	while (i < n) {
		if (v[i] == ',' || IS(v[i], C_OWS)) {
			i++;
			continue;
		}
		s = i;
		i = h1_skip_token(v, i, n);
		if (i == s)
			return (TE_BAD);
		chunked = h1_ieq(v + s, i - s, "chunked");
		params = false;
		i = h1_skip_ows(v, i, n);
		while (i < n && v[i] == ';') {
			params = true;
			i = h1_skip_ows(v, i + 1, n);
			s = i;
			i = h1_skip_token(v, i, n);
			if (i == s)
				return (TE_BAD);
			i = h1_skip_ows(v, i, n);
			if (i == n || v[i] != '=')
				return (TE_BAD);
			i = h1_skip_ows(v, i + 1, n);
			s = i;
			i = h1_skip_token(v, i, n);
			if (i == s)
				return (TE_BAD);
			i = h1_skip_ows(v, i, n);
		}
		if (i < n && v[i] != ',')
			return (TE_BAD);
		if (chunked) {
			if (params || nchunked > 0)
				return (TE_BAD);
			nchunked++;
		} else
			nother++;
		last_chunked = chunked;
	}
	if (nchunked + nother == 0)
		return (TE_BAD);
	if (nchunked == 0)
		return (TE_NO_CHUNKED);
	if (!last_chunked)
		return (TE_NOT_LAST);
	return (nother > 0 ? TE_OTHER_CHUNKED : TE_CHUNKED);
}

/* Note the close / keep-alive / upgrade options of a Connection value. */
static void
h1_connection(const uint8_t *v, size_t n, struct h1_scan *sc)
{
	size_t i = 0, s, e;

	while (i < n) {
		i = h1_skip_ows(v, i, n);
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		while (e > s && IS(v[e - 1], C_OWS))
			e--;
		switch (e - s) {
		case 5:
			if (h1_ieq(v + s, 5, "close"))
				sc->c_close = true;
			break;
		case 7:
			if (h1_ieq(v + s, 7, "upgrade"))
				sc->c_upgrade = true;
			break;
		case 10:
			if (h1_ieq(v + s, 10, "keep-alive"))
				sc->c_keep = true;
			break;
		default:
			break;
		}
		i++;
	}
}

/*
 * Record a complete field line that matters for framing or persistence.
 * Requests fail early on a repeated Content-Length / Transfer-Encoding /
 * Host line; responses only count them (a bodiless response ignores them).
 */
static ssize_t
h1_note(const uint8_t *name, size_t nlen, const uint8_t *v, size_t vlen,
    bool is_req, struct http_msg *m, struct h1_scan *sc,
    struct http1_err *err)
{

	switch (nlen) {
	case 4:
		if (!is_req || !h1_ieq(name, 4, "host"))
			break;
		if (sc->n_host++ > 0)
			FAIL(400, "several Host header fields");
		if (!h1_authority_ok(v, vlen, H1_AUTH_EMPTY))
			FAIL(400, "invalid Host header field");
		m->host = (const char *)v;
		m->host_len = vlen;
		break;
	case 6:
		if (h1_ieq(name, 6, "expect") && h1_ieq(v, vlen, "100-continue"))
			sc->expect = true;
		break;
	case 7:
		if (h1_ieq(name, 7, "upgrade"))
			sc->has_upgrade = true;
		break;
	case 10:
		if (h1_ieq(name, 10, "connection"))
			h1_connection(v, vlen, sc);
		break;
	case 14:
		if (!h1_ieq(name, 14, "content-length"))
			break;
		if (sc->n_cl++ > 0) {
			if (is_req)
				FAIL(400, "several Content-Length fields");
			break;
		}
		sc->cl = v;
		sc->cl_len = vlen;
		break;
	case 17:
		if (!h1_ieq(name, 17, "transfer-encoding"))
			break;
		if (sc->n_te++ > 0) {
			if (is_req)
				FAIL(400, "several Transfer-Encoding fields");
			break;
		}
		sc->te = v;
		sc->te_len = vlen;
		break;
	default:
		break;
	}
	return (0);
}

/*
 * Parse field lines from buf[pos..end) up to and including the empty line.
 * Returns the offset just past that empty line, HTTP1_AGAIN when the bytes
 * run out first, or HTTP1_ERROR.  Statuses are the request ones; the
 * response parser maps them to 502.
 */
static ssize_t
h1_fields(const char *buf, size_t pos, size_t end, bool is_req,
    struct http_msg *m, struct h1_scan *sc, struct http1_err *err)
{
	const uint8_t *b = (const uint8_t *)buf;
	const uint8_t *p = b + pos, *e = b + end;
	const uint8_t *name, *v, *ve;
	struct http_header *h;
	size_t nlen;

	for (;;) {
		if (p == e)
			return (HTTP1_AGAIN);
		if (*p == '\r') {
			if (p + 1 == e)
				return (HTTP1_AGAIN);
			if (p[1] != '\n')
				FAIL(400, "bare CR");
			return ((ssize_t)(p + 2 - b));
		}
		name = p;
		while (e - p >= 4 &&
		    (h1_cls[p[0]] & h1_cls[p[1]] & h1_cls[p[2]] & h1_cls[p[3]] &
		    C_TCHAR))
			p += 4;
		while (p < e && IS(*p, C_TCHAR))
			p++;
		if (p == e)
			return (HTTP1_AGAIN);
		if (*p != ':') {
			if (p == name && IS(*p, C_OWS))
				FAIL(400, "obs-fold or whitespace before a field");
			if (IS(*p, C_OWS))
				FAIL(400, "whitespace between field name and colon");
			if (*p == '\n')
				FAIL(400, "bare LF");
			FAIL(400, "invalid character in field name");
		}
		if (p == name)
			FAIL(400, "empty field name");
		if (m->nhdr == HTTP_MAX_HEADERS)
			FAIL(431, "too many header fields");
		nlen = (size_t)(p - name);
		p++;
		while (p < e && IS(*p, C_OWS))
			p++;
		v = p;
		while (e - p >= 4 &&
		    (h1_cls[p[0]] & h1_cls[p[1]] & h1_cls[p[2]] & h1_cls[p[3]] &
		    C_VALUE))
			p += 4;
		while (p < e && IS(*p, C_VALUE))
			p++;
		if (p == e)
			return (HTTP1_AGAIN);
		if (*p != '\r')
			FAIL(400, *p == '\n' ? "bare LF" :
			    "control character in field value");
		if (p + 1 == e)
			return (HTTP1_AGAIN);
		if (p[1] != '\n')
			FAIL(400, "bare CR");
		ve = p;
		while (ve > v && IS(ve[-1], C_OWS))
			ve--;
		h = &m->hdr[m->nhdr++];
		h->name = (const char *)name;
		h->name_len = (uint32_t)nlen;
		h->value = (const char *)v;
		h->value_len = (uint32_t)(ve - v);
		if (h1_note(name, nlen, v, (size_t)(ve - v), is_req, m, sc,
		    err) != 0)
			return (HTTP1_ERROR);
		p += 2;
	}
}

/*
 * Classify the request-target (RFC 9112 §3.2).  path is what to send
 * upstream as the target: the origin-form itself, the path of an
 * absolute-form ("/" when empty), and the target itself for the
 * asterisk-form (OPTIONS) and the authority-form (CONNECT).
 */
static ssize_t
h1_target(struct http_msg *m, struct http1_err *err)
{
	const uint8_t *t = (const uint8_t *)m->target;
	size_t n = m->target_len, i, off;

	if (m->meth == HTTP_M_CONNECT) {
		if (!h1_authority_ok(t, n, H1_AUTH_PORT))
			FAIL(400, "CONNECT needs an authority-form target");
		m->authority = m->target;
		m->authority_len = n;
		m->path = m->target;
		m->path_len = n;
		return (0);
	}
	if (t[0] == '/') {
		m->path = m->target;
		m->path_len = n;
		return (0);
	}
	if (n == 1 && t[0] == '*') {
		if (m->meth != HTTP_M_OPTIONS)
			FAIL(400, "asterisk-form target outside OPTIONS");
		m->path = m->target;
		m->path_len = n;
		return (0);
	}
	if (n > 7 && h1_ieq(t, 7, "http://"))
		off = 7;
	else if (n > 8 && h1_ieq(t, 8, "https://"))
		off = 8;
	else
		FAIL(400, "invalid request-target");
	for (i = off; i < n && t[i] != '/' && t[i] != '?'; i++)
		continue;
	if (!h1_authority_ok(t + off, i - off, 0))
		FAIL(400, "invalid authority in request-target");
	m->authority = m->target + off;
	m->authority_len = i - off;
	if (i == n) {
		m->path = "/";
		m->path_len = 1;
	} else if (t[i] == '?')
		FAIL(400, "absolute-form target without a path");
	else {
		m->path = m->target + i;
		m->path_len = n - i;
	}
	return (0);
}

ssize_t
http1_parse_request(const char *buf, size_t len, size_t max_head,
    struct http_msg *m, struct http1_err *err)
{
	const uint8_t *b = (const uint8_t *)buf;
	struct h1_scan sc;
	size_t end, pos = 0, s, n;
	unsigned empty;
	ssize_t r;
	int v;

	AN(buf);
	AN(m);
	AN(err);
	if (max_head > UINT32_MAX)
		max_head = UINT32_MAX;
	end = len < max_head ? len : max_head;
	h1_msg_init(m);

	/* Empty lines before the request-line (RFC 9112 §2.2). */
	for (empty = 0;; empty++) {
		if (pos == end)
			goto again;
		if (b[pos] == '\n')
			FAIL(400, "bare LF");
		if (b[pos] != '\r')
			break;
		if (pos + 1 == end)
			goto again;
		if (b[pos + 1] != '\n')
			FAIL(400, "bare CR");
		if (empty == H1_MAX_EMPTY)
			FAIL(400, "too many empty lines before the request");
		pos += 2;
	}

	/* method SP */
	s = pos;
	while (pos < end && IS(b[pos], C_TCHAR))
		pos++;
	if (pos == end)
		goto again;
	if (b[pos] != ' ' || pos == s)
		FAIL(400, "invalid method");
	m->method = buf + s;
	m->method_len = pos - s;
	m->meth = http_method_from(m->method, m->method_len);
	pos++;

	/* request-target SP */
	s = pos;
	while (end - pos >= 4 &&
	    (h1_cls[b[pos]] & h1_cls[b[pos + 1]] & h1_cls[b[pos + 2]] &
	    h1_cls[b[pos + 3]] & C_TARGET))
		pos += 4;
	while (pos < end && IS(b[pos], C_TARGET))
		pos++;
	if (pos == end)
		goto again;
	if (b[pos] != ' ' || pos == s)
		FAIL(400, "invalid request-target");
	m->target = buf + s;
	m->target_len = pos - s;
	if (h1_target(m, err) != 0)
		return (HTTP1_ERROR);
	pos++;

	/* HTTP-version CRLF */
	n = end - pos;
	v = h1_version(b + pos, n);
	if (v < 0)
		FAIL(400, "invalid HTTP version");
	if (n > 8 && b[pos + 8] != '\r')
		FAIL(400, "invalid HTTP version");
	if (n > 9 && b[pos + 9] != '\n')
		FAIL(400, "bare CR");
	if (n < 10)
		goto again;
	if (b[pos + 5] == '0')
		FAIL(400, "HTTP/0.x request");
	if (b[pos + 5] != '1')
		FAIL(505, "HTTP major version not supported");
	/* a higher 1.x minor is treated as 1.1 (RFC 9110 §6.2) */
	m->minor = b[pos + 7] == '0' ? 0 : 1;
	pos += 10;

	memset(&sc, 0, sizeof sc);
	r = h1_fields(buf, pos, end, true, m, &sc, err);
	if (r == HTTP1_ERROR)
		return (r);
	if (r == HTTP1_AGAIN)
		goto again;

	/* framing (RFC 9112 §6) and Host (§3.2) */
	if (m->minor == 1 && sc.n_host == 0)
		FAIL(400, "missing Host header field");
	if (sc.n_te > 0) {
		if (m->minor == 0)
			FAIL(400, "Transfer-Encoding in an HTTP/1.0 request");
		if (sc.n_cl > 0)
			FAIL(400, "both Content-Length and Transfer-Encoding");
		switch (h1_te(sc.te, sc.te_len)) {
		case TE_CHUNKED:
			break;
		case TE_BAD:
			FAIL(400, "invalid Transfer-Encoding");
		case TE_NOT_LAST:
			FAIL(400, "chunked is not the final transfer coding");
		default:
			FAIL(501, "unsupported transfer coding");
		}
		m->body = HTTP_BODY_CHUNKED;
	} else if (sc.n_cl > 0) {
		if (!h1_content_length(sc.cl, sc.cl_len, &m->content_length))
			FAIL(400, "invalid Content-Length");
		m->body = HTTP_BODY_LENGTH;
	}

	m->conn_close = sc.c_close;
	if (m->minor == 1) {
		m->keep_alive = !sc.c_close;
		m->upgrade = sc.c_upgrade && sc.has_upgrade;
		m->expect_continue = sc.expect;
	} else
		m->keep_alive = sc.c_keep && !sc.c_close;
	m->head_len = (size_t)r;
	return (r);

again:
	if (len >= max_head)
		FAIL(431, "request head too large");
	return (HTTP1_AGAIN);
}

/* The response parser proper; every error status is rewritten to 502. */
static ssize_t
h1_response(const char *buf, size_t len, size_t max_head,
    enum http_method req_meth, struct http_msg *m, struct http1_err *err)
{
	const uint8_t *b = (const uint8_t *)buf;
	struct h1_scan sc;
	size_t end, pos, s, i;
	ssize_t r;
	int v, st;

	if (max_head > UINT32_MAX)
		max_head = UINT32_MAX;
	end = len < max_head ? len : max_head;
	h1_msg_init(m);

	/* HTTP-version SP 3DIGIT [ SP reason-phrase ] CRLF */
	v = h1_version(b, end);
	if (v < 0)
		FAIL(502, "invalid status-line");
	if (v == 0)
		goto again;
	if (b[5] != '1')
		FAIL(502, "unsupported HTTP version in response");
	m->minor = b[7] == '0' ? 0 : 1;
	for (i = 8; i < 12 && i < end; i++)
		if (i == 8 ? b[i] != ' ' : !IS(b[i], C_DIGIT))
			FAIL(502, "invalid status-line");
	if (end < 12)
		goto again;
	st = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
	if (st < 100 || st > 599)
		FAIL(502, "invalid status code");
	m->status = st;
	pos = 12;
	if (pos == end)
		goto again;
	if (b[pos] == ' ')
		pos++;
	else if (b[pos] != '\r')
		FAIL(502, "invalid status-line");
	s = pos;
	while (pos < end && IS(b[pos], C_VALUE))
		pos++;
	if (pos == end)
		goto again;
	if (b[pos] != '\r')
		FAIL(502, "invalid reason-phrase");
	if (pos + 1 == end)
		goto again;
	if (b[pos + 1] != '\n')
		FAIL(502, "bare CR");
	m->reason = buf + s;
	m->reason_len = pos - s;
	pos += 2;

	memset(&sc, 0, sizeof sc);
	r = h1_fields(buf, pos, end, false, m, &sc, err);
	if (r == HTTP1_ERROR)
		return (r);
	if (r == HTTP1_AGAIN)
		goto again;

	m->conn_close = sc.c_close;
	m->upgrade = sc.c_upgrade && sc.has_upgrade;
	if (m->minor == 1)
		m->keep_alive = !sc.c_close;
	else
		m->keep_alive = sc.c_keep && !sc.c_close;

	/* message body length, RFC 9112 §6.3 */
	if (req_meth == HTTP_M_HEAD || st < 200 || st == 204 || st == 304 ||
	    (req_meth == HTTP_M_CONNECT && st < 300))
		m->body = HTTP_BODY_NONE;
	else if (sc.n_te > 0) {
		if (m->minor == 0)
			FAIL(502, "Transfer-Encoding in an HTTP/1.0 response");
		if (sc.n_cl > 0)
			FAIL(502, "both Content-Length and Transfer-Encoding");
		if (sc.n_te > 1)
			FAIL(502, "several Transfer-Encoding fields");
		switch (h1_te(sc.te, sc.te_len)) {
		case TE_BAD:
			FAIL(502, "invalid Transfer-Encoding");
		case TE_CHUNKED:
		case TE_OTHER_CHUNKED:
			m->body = HTTP_BODY_CHUNKED;
			break;
		default:
			m->body = HTTP_BODY_EOF;
			break;
		}
	} else if (sc.n_cl > 0) {
		if (sc.n_cl > 1)
			FAIL(502, "several Content-Length fields");
		if (!h1_content_length(sc.cl, sc.cl_len, &m->content_length))
			FAIL(502, "invalid Content-Length");
		m->body = HTTP_BODY_LENGTH;
	} else
		m->body = HTTP_BODY_EOF;
	if (m->body == HTTP_BODY_EOF)
		m->keep_alive = false;
	m->head_len = (size_t)r;
	return (r);

again:
	if (len >= max_head)
		FAIL(502, "response head too large");
	return (HTTP1_AGAIN);
}

ssize_t
http1_parse_response(const char *buf, size_t len, size_t max_head,
    enum http_method req_meth, struct http_msg *m, struct http1_err *err)
{
	ssize_t r;

	AN(buf);
	AN(m);
	AN(err);
	r = h1_response(buf, len, max_head, req_meth, m, err);
	if (r == HTTP1_ERROR)
		err->status = 502;
	return (r);
}

/* ---- chunked decoder ------------------------------------------------ */

enum {
	CH_SIZE0 = 0,   /* first byte of a chunk-size line */
	CH_SIZE,        /* in the hex digits */
	CH_EXT_BWS,     /* BWS after the size, before ';' */
	CH_EXT,         /* in chunk-ext, outside quotes */
	CH_EXT_Q,       /* in a quoted-string */
	CH_EXT_QP,      /* after a backslash in a quoted-string */
	CH_SIZE_LF,     /* CR seen, LF expected */
	CH_DATA,        /* c->left data bytes, consumed by the caller */
	CH_DATA_CR,     /* CRLF after the data */
	CH_DATA_LF,
	CH_TRL,         /* start of a trailer line; c->left counts bytes */
	CH_TRL_NAME,
	CH_TRL_VAL,
	CH_TRL_LF,
	CH_END_LF,      /* CR of the final empty line seen */
	CH_DONE,
	CH_ERROR,
};

void
http1_chunked_init(struct http1_chunked *c)
{

	AN(c);
	c->state = CH_SIZE0;
	c->left = 0;
	c->line_len = 0;
}

int
http1_chunked_frame(struct http1_chunked *c, const char *p, size_t len,
    size_t *used)
{
	const uint8_t *b = (const uint8_t *)p;
	size_t i;
	uint8_t ch;

	AN(c);
	AN(used);
	*used = 0;
	switch (c->state) {
	case CH_DATA:
		return (HTTP1_CHUNK_DATA);
	case CH_DONE:
		return (HTTP1_CHUNK_DONE);
	case CH_ERROR:
		return (HTTP1_CHUNK_ERROR);
	default:
		break;
	}
	for (i = 0; i < len; i++) {
		ch = b[i];
		if (c->state <= CH_SIZE_LF &&
		    ++c->line_len > H1_CHUNK_LINE_MAX)
			goto bad;
		if (c->state >= CH_TRL && ++c->left > H1_TRAILER_MAX)
			goto bad;
		switch (c->state) {
		case CH_SIZE0:
			if (!IS(ch, C_HEX))
				goto bad;
			c->left = h1_hexval(ch);
			c->state = CH_SIZE;
			break;
		case CH_SIZE:
			if (IS(ch, C_HEX)) {
				/* line_len counts the digits so far */
				if (c->line_len > H1_CHUNK_HEX_MAX ||
				    c->left > (H1_MAX_LENGTH >> 4))
					goto bad;
				c->left = (c->left << 4) | h1_hexval(ch);
				if (c->left > H1_MAX_LENGTH)
					goto bad;
			} else if (ch == ';')
				c->state = CH_EXT;
			else if (IS(ch, C_OWS))
				c->state = CH_EXT_BWS;
			else if (ch == '\r')
				c->state = CH_SIZE_LF;
			else
				goto bad;
			break;
		case CH_EXT_BWS:
			if (ch == ';')
				c->state = CH_EXT;
			else if (!IS(ch, C_OWS))
				goto bad;
			break;
		case CH_EXT:
			if (ch == '\r')
				c->state = CH_SIZE_LF;
			else if (ch == '"')
				c->state = CH_EXT_Q;
			else if (!IS(ch, C_TCHAR | C_OWS) && ch != ';' &&
			    ch != '=')
				goto bad;
			break;
		case CH_EXT_Q:
			if (ch == '"')
				c->state = CH_EXT;
			else if (ch == '\\')
				c->state = CH_EXT_QP;
			else if (!IS(ch, C_VALUE))
				goto bad;
			break;
		case CH_EXT_QP:
			if (!IS(ch, C_VALUE))
				goto bad;
			c->state = CH_EXT_Q;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				goto bad;
			if (c->left == 0) {
				c->state = CH_TRL;
				break;
			}
			c->state = CH_DATA;
			*used = i + 1;
			return (HTTP1_CHUNK_DATA);
		case CH_DATA_CR:
			if (ch != '\r')
				goto bad;
			c->state = CH_DATA_LF;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				goto bad;
			c->state = CH_SIZE0;
			c->line_len = 0;
			break;
		case CH_TRL:
			if (ch == '\r')
				c->state = CH_END_LF;
			else if (IS(ch, C_TCHAR))
				c->state = CH_TRL_NAME;
			else
				goto bad;
			break;
		case CH_TRL_NAME:
			if (ch == ':')
				c->state = CH_TRL_VAL;
			else if (!IS(ch, C_TCHAR))
				goto bad;
			break;
		case CH_TRL_VAL:
			if (ch == '\r')
				c->state = CH_TRL_LF;
			else if (!IS(ch, C_VALUE))
				goto bad;
			break;
		case CH_TRL_LF:
			if (ch != '\n')
				goto bad;
			c->state = CH_TRL;
			break;
		case CH_END_LF:
			if (ch != '\n')
				goto bad;
			c->state = CH_DONE;
			*used = i + 1;
			return (HTTP1_CHUNK_DONE);
		default:
			WRONG("chunked state");
		}
	}
	*used = len;
	return (HTTP1_CHUNK_AGAIN);

bad:
	c->state = CH_ERROR;
	*used = i;
	return (HTTP1_CHUNK_ERROR);
}

void
http1_chunked_data(struct http1_chunked *c, uint64_t n)
{

	AN(c);
	assert_always(c->state == CH_DATA);
	assert_always(n <= c->left);
	c->left -= n;
	if (c->left == 0)
		c->state = CH_DATA_CR;
}
