/*
 * fuzz_http1_request.c -- libFuzzer target for http1_parse_request.
 *
 * Besides crashes it checks the contract: incremental calls on prefixes
 * agree with the call on the whole input (AGAIN until the head is
 * complete, the same error as early as it is decidable), and an accepted
 * head is unambiguous (one framing, a Host for 1.1, clean field values).
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *     tests/fuzz/fuzz_http1_request.c src/http1.c src/http.c src/util.c
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

static void
check_msg(const char *buf, size_t r, const struct http_msg *m)
{
	unsigned u;
	uint32_t i;

	CHECK(m->head_len == r && r >= 4);
	CHECK(memcmp(buf + r - 4, "\r\n\r\n", 4) == 0);
	CHECK(m->method >= buf && m->method + m->method_len < buf + r);
	CHECK(m->target > m->method && m->target + m->target_len < buf + r);
	CHECK(m->path != NULL && m->path_len > 0);
	CHECK(m->minor == 0 || m->minor == 1);
	CHECK(m->nhdr <= HTTP_MAX_HEADERS);
	for (u = 0; u < m->nhdr; u++) {
		const struct http_header *h = &m->hdr[u];

		CHECK(h->name >= buf && h->name + h->name_len < buf + r);
		CHECK(h->name_len > 0);
		for (i = 0; i < h->name_len; i++)
			CHECK(h->name[i] > ' ' && h->name[i] != ':' &&
			    h->name[i] < 0x7f);
		for (i = 0; i < h->value_len; i++) {
			uint8_t c = (uint8_t)h->value[i];
			CHECK(c >= 0x20 || c == '\t');
			CHECK(c != 0x7f);
		}
		if (h->value_len > 0) {
			CHECK(h->value[0] != ' ' && h->value[0] != '\t');
			CHECK(h->value[h->value_len - 1] != ' ' &&
			    h->value[h->value_len - 1] != '\t');
		}
	}
	switch (m->body) {
	case HTTP_BODY_NONE:
		CHECK(count(m, "content-length") == 0);
		CHECK(count(m, "transfer-encoding") == 0);
		break;
	case HTTP_BODY_LENGTH:
		CHECK(count(m, "content-length") == 1);
		CHECK(count(m, "transfer-encoding") == 0);
		break;
	case HTTP_BODY_CHUNKED:
		CHECK(count(m, "content-length") == 0);
		CHECK(count(m, "transfer-encoding") == 1);
		CHECK(m->minor == 1);
		break;
	default:
		CHECK(0);
	}
	CHECK(count(m, "host") <= 1);
	if (m->minor == 1)
		CHECK(m->host != NULL && count(m, "host") == 1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_msg m, m2;
	struct http1_err err, err2;
	size_t cuts[6], k;
	ssize_t r, r2;
	char *buf;

	/* an exact-size copy, so that ASan sees any read past the end */
	buf = malloc(size > 0 ? size : 1);
	if (buf == NULL)
		return (0);
	memcpy(buf, data, size);

	r = http1_parse_request(buf, size, MAXH, &m, &err);
	if (r > 0) {
		CHECK((size_t)r <= size && (size_t)r <= MAXH);
		check_msg(buf, (size_t)r, &m);
	} else if (r == HTTP1_ERROR) {
		CHECK(err.status == 400 || err.status == 431 ||
		    err.status == 501 || err.status == 505);
		CHECK(err.reason != NULL);
	} else
		CHECK(r == HTTP1_AGAIN && size < MAXH);

	cuts[0] = 0;
	cuts[1] = size / 2;
	cuts[2] = size > 0 ? size - 1 : 0;
	cuts[3] = r > 0 ? (size_t)r - 1 : size / 3;
	cuts[4] = r > 0 ? (size_t)r : size;
	cuts[5] = size > 0 ? (size_t)data[0] % (size + 1) : 0;
	for (k = 0; k < 6; k++) {
		r2 = http1_parse_request(buf, cuts[k], MAXH, &m2, &err2);
		if (r > 0 && cuts[k] < (size_t)r)
			CHECK(r2 == HTTP1_AGAIN);
		else if (r > 0) {
			CHECK(r2 == r);
			CHECK(m2.body == m.body && m2.nhdr == m.nhdr &&
			    m2.content_length == m.content_length &&
			    m2.keep_alive == m.keep_alive);
		} else if (r == HTTP1_AGAIN)
			CHECK(r2 == HTTP1_AGAIN);
		else if (r2 == HTTP1_ERROR)
			CHECK(err2.status == err.status);
		else
			CHECK(r2 == HTTP1_AGAIN);
	}
	free(buf);
	return (0);
}
