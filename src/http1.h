/*
 * http1.h -- strict, incremental HTTP/1.1 parser (RFC 9112) and the chunked
 * codec.  Pure: works on contiguous byte ranges; no I/O, no allocation.
 * Fuzz targets in tests/fuzz/ call these directly.
 *
 * Incremental means: call the head parser again with more bytes whenever
 * data arrives (the buffer starts at the first byte of the message and
 * grows); it returns HTTP1_AGAIN until the head is complete, and reports an
 * error as soon as the bytes seen so far cannot begin a valid message.
 */
#ifndef STOA_HTTP1_H
#define STOA_HTTP1_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http.h"

#define HTTP1_AGAIN 0           /* need more bytes */
#define HTTP1_ERROR (-1)        /* see struct http1_err */

struct http1_err {
	int         status;         /* 400, 431, 501, 505 (requests); 502 for responses */
	const char *reason;         /* static string, for the error log */
};

/*
 * Parse a request head from buf[0..len).  max_head bounds the head size
 * (431 when exceeded, including while still incomplete).  Returns the head
 * length (> 0) with *m filled, HTTP1_AGAIN, or HTTP1_ERROR with *err set.
 *
 * Rejected (400 unless noted): invalid method/target/version tokens,
 * HTTP/2+ or HTTP/0.9 in a 1.x request line (505 for HTTP/2.0..9),
 * bare CR or bare LF anywhere in the head, obs-fold, whitespace between a
 * field name and the colon, invalid field-name characters, control bytes
 * (NUL etc.) in values, both Content-Length and Transfer-Encoding,
 * several or invalid Content-Length values (even if equal: "1, 1" and two
 * lines are rejected), a Transfer-Encoding other than exactly "chunked"
 * as the final coding (unknown coding → 501; "chunked" not last → 400;
 * chunked listed twice → 400), Transfer-Encoding in an HTTP/1.0 request,
 * a missing Host in HTTP/1.1 or several Host headers, more than
 * HTTP_MAX_HEADERS fields (431), a head over max_head bytes (431).
 * Leading empty lines before the request line (RFC 9112 §2.2) are skipped
 * and counted in the returned length.
 * Also rejected with 400: several Transfer-Encoding lines (not combined),
 * transfer-parameters on chunked, a '#' in the target, userinfo in an
 * authority, an absolute-form target whose path is empty but has a query
 * ("http://h?q"), more than 4 leading empty lines.  An empty Host value is
 * accepted (RFC 9110 §7.2).
 */
ssize_t http1_parse_request(const char *buf, size_t len, size_t max_head,
    struct http_msg *m, struct http1_err *err);

/*
 * Parse a response head from an upstream.  req_meth is the method of the
 * request it answers (a HEAD response has no body).  The same strictness
 * applies; any error maps to status 502.  1xx responses parse with
 * body = NONE; the caller skips them (except 101).  A response with
 * neither Content-Length nor chunked (and a status that allows a body)
 * gets body = HTTP_BODY_EOF.
 */
ssize_t http1_parse_response(const char *buf, size_t len, size_t max_head,
    enum http_method req_meth, struct http_msg *m, struct http1_err *err);

/*
 * Chunked decoder (RFC 9112 §7.1).  The caller alternates between framing
 * and data:
 *
 *   rc = http1_chunked_frame(&c, p, len, &used);
 *     consumes framing bytes (chunk-size line, extensions, the CRLF after
 *     chunk data, trailer section).  Returns
 *       HTTP1_CHUNK_DATA  : c.left data bytes follow at p + used
 *       HTTP1_CHUNK_AGAIN : all of p[0..len) was consumed, need more
 *       HTTP1_CHUNK_DONE  : last chunk and trailers consumed (used bytes)
 *       HTTP1_CHUNK_ERROR : invalid framing (bad hex, overflow, missing
 *                           CRLF, bare LF, over-long line, bad trailers)
 *   then the caller copies up to c.left data bytes itself and calls
 *   http1_chunked_data(&c, n) for the n bytes it took.
 *
 * Chunk extensions are validated and discarded; trailer fields are
 * validated and discarded.  Sizes above 2^62 are an overflow error.
 */
enum { HTTP1_CHUNK_AGAIN = 0, HTTP1_CHUNK_DATA, HTTP1_CHUNK_DONE,
       HTTP1_CHUNK_ERROR };

struct http1_chunked {
	int       state;        /* private */
	uint64_t  left;         /* data bytes remaining in the current chunk */
	uint32_t  line_len;     /* private: length of the current framing line */
};

void http1_chunked_init(struct http1_chunked *c);
int  http1_chunked_frame(struct http1_chunked *c, const char *p, size_t len,
    size_t *used);
void http1_chunked_data(struct http1_chunked *c, uint64_t n);

#endif
