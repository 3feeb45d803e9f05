/*
 * fuzz_chunked.c -- libFuzzer target for the chunked decoder.
 * The first input byte picks a feed size; the rest is the body.  The
 * input is decoded in one piece, in pieces of that size and byte by byte;
 * all three must agree on the outcome, the bytes consumed and the data.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *     tests/fuzz/fuzz_chunked.c src/http1.c src/http.c src/util.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decode in[0..len) arriving in pieces of step bytes. */
static int
decode(const char *in, size_t len, size_t step, char *out, size_t *outlen,
    size_t *consumed)
{
	struct http1_chunked c;
	size_t pos = 0, arrived, used, n;
	int rc;

	http1_chunked_init(&c);
	*outlen = 0;
	arrived = step < len ? step : len;
	for (;;) {
		rc = http1_chunked_frame(&c, in + pos, arrived - pos, &used);
		CHECK(used <= arrived - pos);
		pos += used;
		if (rc == HTTP1_CHUNK_ERROR || rc == HTTP1_CHUNK_DONE)
			break;
		if (rc == HTTP1_CHUNK_AGAIN) {
			CHECK(pos == arrived);
			if (arrived == len)
				break;
			arrived = arrived + step < len ? arrived + step : len;
			continue;
		}
		CHECK(rc == HTTP1_CHUNK_DATA && c.left > 0);
		CHECK(c.left <= (UINT64_C(1) << 62));
		while (c.left > 0) {
			if (pos == arrived) {
				if (arrived == len) {
					rc = HTTP1_CHUNK_AGAIN;
					goto out;
				}
				arrived = arrived + step < len ?
				    arrived + step : len;
			}
			n = arrived - pos;
			if (n > c.left)
				n = (size_t)c.left;
			memcpy(out + *outlen, in + pos, n);
			*outlen += n;
			pos += n;
			http1_chunked_data(&c, n);
		}
	}
out:
	*consumed = pos;
	return (rc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t step, ol[3], used[3];
	char *in, *out[3];
	int rc[3], k;

	if (size < 1)
		return (0);
	step = (size_t)data[0] % 17 + 1;
	data++;
	size--;
	in = malloc(size + 1);
	for (k = 0; k < 3; k++)
		out[k] = malloc(size + 1);
	memcpy(in, data, size);

	rc[0] = decode(in, size, size > 0 ? size : 1, out[0], &ol[0], &used[0]);
	rc[1] = decode(in, size, step, out[1], &ol[1], &used[1]);
	rc[2] = decode(in, size, 1, out[2], &ol[2], &used[2]);
	for (k = 1; k < 3; k++) {
		CHECK(rc[k] == rc[0]);
		CHECK(ol[k] == ol[0]);
		CHECK(memcmp(out[k], out[0], ol[0]) == 0);
		CHECK(used[k] == used[0]);
	}
	CHECK(used[0] <= size && ol[0] <= size);
	free(in);
	for (k = 0; k < 3; k++)
		free(out[k]);
	return (0);
}
