/*
 * store_cb.h -- recorders for the cache store callbacks (cache/cache.h),
 * shared by the store unit tests (test_memory.c, test_redis.c): each
 * callback counts its calls and keeps what it was given.
 */
#ifndef STOA_TEST_STORE_CB_H
#define STOA_TEST_STORE_CB_H

#include <stdint.h>

#include "cache/cache.h"

struct getres {
	int                     calls;
	enum cache_rc           rc;
	struct cache_obj        *obj;
};

struct doneres {
	int                     calls;
	enum cache_rc           rc;
	uint64_t                value;
};

static void
get_cb(void *arg, enum cache_rc rc, struct cache_obj *obj)
{
	struct getres *r = arg;

	r->calls++;
	r->rc = rc;
	r->obj = obj;
}

static void
done_cb(void *arg, enum cache_rc rc, uint64_t value)
{
	struct doneres *r = arg;

	r->calls++;
	r->rc = rc;
	r->value = value;
}

#endif
