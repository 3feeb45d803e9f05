/*
 * http.h -- the HTTP message model shared by http1.c, h2.c, proxy.c and
 * the cache.  No I/O.  Strings are (pointer, length) views into a buffer
 * owned by the caller (zero copy); nothing here allocates.
 */
#ifndef STOA_HTTP_H
#define STOA_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 128

enum http_method {
	HTTP_M_OTHER = 0,
	HTTP_M_GET, HTTP_M_HEAD, HTTP_M_POST, HTTP_M_PUT, HTTP_M_DELETE,
	HTTP_M_OPTIONS, HTTP_M_PATCH, HTTP_M_CONNECT, HTTP_M_TRACE,
};

/* How the body of a message is delimited (RFC 9112 §6.3). */
enum http_body {
	HTTP_BODY_NONE = 0,     /* no body (request without CL/TE, HEAD resp, 1xx/204/304) */
	HTTP_BODY_LENGTH,       /* Content-Length: content_length bytes (may be 0) */
	HTTP_BODY_CHUNKED,      /* Transfer-Encoding: chunked */
	HTTP_BODY_EOF,          /* response only: read until the connection closes */
};

struct http_header {
	const char *name;
	const char *value;      /* leading/trailing OWS already stripped */
	uint32_t    name_len;
	uint32_t    value_len;
};

struct http_msg {
	/* request line (requests only) */
	const char       *method;
	size_t            method_len;
	enum http_method  meth;
	const char       *target;       /* request-target as sent */
	size_t            target_len;
	const char       *path;         /* origin-form path+query ("/..."), also for absolute-form */
	size_t            path_len;     /* ("/" when that path is empty); the target
					 * itself for "*" (OPTIONS) and CONNECT */
	const char       *authority;    /* absolute-form only: host[:port] of the target, else NULL */
	size_t            authority_len;

	/* status line (responses only) */
	int               status;
	const char       *reason;
	size_t            reason_len;

	int               minor;        /* HTTP/1.<minor>: 0 or 1 */

	struct http_header hdr[HTTP_MAX_HEADERS];
	unsigned          nhdr;

	/* derived from the headers by the parser */
	enum http_body    body;
	uint64_t          content_length;   /* valid when body == HTTP_BODY_LENGTH */
	const char       *host;             /* Host header value, NULL when absent */
	size_t            host_len;
	bool              keep_alive;       /* persistence per RFC 9112 §9.3 */
	bool              conn_close;       /* "Connection: close" was present */
	bool              upgrade;          /* Connection: upgrade + Upgrade header present */
	bool              expect_continue;  /* Expect: 100-continue */
	size_t            head_len;         /* bytes of the head incl. final CRLF
					     * (and leading empty lines) */
};

/* Method token → enum (exact, case-sensitive, RFC 9110 §9.1). */
enum http_method http_method_from(const char *p, size_t len);

/* Idempotent per RFC 9110 §9.2.2. */
bool http_method_idempotent(enum http_method m);

/* Standard reason phrase, "Unknown" when none. */
const char *http_reason(int status);

/* First header named NAME (case-insensitive), or NULL. */
const struct http_header *http_find(const struct http_msg *m, const char *name);

/*
 * Does a comma-separated header list value contain TOKEN (case-insensitive,
 * OWS around elements ignored)?  e.g. Connection: keep-alive, Upgrade
 */
bool http_list_has(const char *v, size_t len, const char *token);
/* The same with a (pointer, length) token, e.g. a header name. */
bool http_list_has_n(const char *v, size_t len, const char *token,
    size_t tlen);
/*
 * The elements of such a list one by one: from *pos (0 to start), the next
 * element without its OWS in *el, *ellen (possibly empty: "a,,b"); false
 * when the value is used up.
 */
bool http_list_next(const char *v, size_t len, size_t *pos, const char **el,
    size_t *ellen);

#endif
