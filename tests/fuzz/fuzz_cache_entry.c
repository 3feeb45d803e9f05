/*
 * libFuzzer target: the Redis cache entry decoder (cache_redis_decode).
 * A value read back from Redis may have been written by anything: the
 * decoder must accept exactly the documented format and never read
 * outside the input; every view it returns must lie inside it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "cache/cache.h"
#include "cache/redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cache_obj o;
	const char *b = (const char *)data, *e = b + size;

	if (!cache_redis_decode(data, size, &o))
		return (0);
	if (o.headers_len > size || o.body_len > size ||
	    o.headers < b || o.headers + o.headers_len > e ||
	    o.body < b || o.body + o.body_len > e ||
	    o.status < 100 || o.status > 999)
		abort();
	return (0);
}
