/*
 * fuzz_http1_response.c -- libFuzzer target for http1_parse_response.
 * The first input byte picks the request method (HEAD, CONNECT, ...);
 * the rest is the response head.  Checks prefix consistency and that an
 * accepted head has one unambiguous framing.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *     tests/fuzz/fuzz_http1_response.c src/http1.c src/http.c src/util.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http1.h"

#define MAXH 2048
#define CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
count(const struct http_msg *m, const char *name)
{
	size_t len = strlen(name);
	unsigned u;
	int n = 0;

	for (u = 0; u < m->nhdr; u++)
		if (m->hdr[u].name_len == len &&
		    strncasecmp(m->hdr[u].name, name, len) == 0)
			n++;
	return (n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_msg m, m2;
	struct http1_err err, err2;
	enum http_method meth;
	size_t cuts[5], k;
	uint8_t sel;
	ssize_t r, r2;
	char *buf;

	if (size < 1)
		return (0);
	sel = data[0];
	meth = (enum http_method)(sel % (HTTP_M_TRACE + 1));
	data++;
	size--;
	buf = malloc(size > 0 ? size : 1);
	if (buf == NULL)
		return (0);
	memcpy(buf, data, size);

	r = http1_parse_response(buf, size, MAXH, meth, &m, &err);
	if (r > 0) {
		CHECK((size_t)r <= size && (size_t)r <= MAXH);
		CHECK(m.head_len == (size_t)r);
		CHECK(memcmp(buf + r - 2, "\r\n", 2) == 0);
		CHECK(m.status >= 100 && m.status <= 599);
		CHECK(m.nhdr <= HTTP_MAX_HEADERS);
		switch (m.body) {
		case HTTP_BODY_NONE:
			CHECK(meth == HTTP_M_HEAD || meth == HTTP_M_CONNECT ||
			    m.status < 200 || m.status == 204 ||
			    m.status == 304);
			break;
		case HTTP_BODY_LENGTH:
			CHECK(count(&m, "content-length") == 1);
			CHECK(count(&m, "transfer-encoding") == 0);
			break;
		case HTTP_BODY_CHUNKED:
			CHECK(count(&m, "content-length") == 0);
			CHECK(count(&m, "transfer-encoding") == 1);
			break;
		case HTTP_BODY_EOF:
			CHECK(count(&m, "content-length") == 0);
			CHECK(!m.keep_alive);
			break;
		}
	} else if (r == HTTP1_ERROR)
		CHECK(err.status == 502 && err.reason != NULL);
	else
		CHECK(r == HTTP1_AGAIN && size < MAXH);

	cuts[0] = size / 2;
	cuts[1] = size > 0 ? size - 1 : 0;
	cuts[2] = r > 0 ? (size_t)r - 1 : size / 3;
	cuts[3] = r > 0 ? (size_t)r : size;
	cuts[4] = (size_t)sel % (size + 1);
	for (k = 0; k < 5; k++) {
		r2 = http1_parse_response(buf, cuts[k], MAXH, meth, &m2, &err2);
		if (r > 0 && cuts[k] < (size_t)r)
			CHECK(r2 == HTTP1_AGAIN);
		else if (r > 0)
			CHECK(r2 == r && m2.body == m.body &&
			    m2.content_length == m.content_length);
		else if (r == HTTP1_AGAIN)
			CHECK(r2 == HTTP1_AGAIN);
		else
			CHECK(r2 == HTTP1_AGAIN || r2 == HTTP1_ERROR);
	}
	free(buf);
	return (0);
}
