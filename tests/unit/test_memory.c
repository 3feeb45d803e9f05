/* Unit tests for cache/memory.c: the shared-memory store. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/memory.h"
#include "store_cb.h"

/*--------------------------------------------------------------------
 * Helpers
 */

struct fixture {
	struct cache_zone       *z;
	struct cache_store      *s;
};

static int
setup_size(void **state, uint64_t size)
{
	struct fixture *f;
	char err[256];

	f = calloc(1, sizeof *f);
	assert_non_null(f);
	f->z = cache_zone_create(size, err, sizeof err);
	assert_non_null(f->z);
	f->s = cache_memory_store(f->z);
	assert_non_null(f->s);
	*state = f;
	return (0);
}

static int
setup_4m(void **state)
{
	return (setup_size(state, 4u << 20));
}

static int
setup_256k(void **state)
{
	return (setup_size(state, 256u << 10));
}

static int
setup_1m(void **state)
{
	return (setup_size(state, 1u << 20));
}

static int
setup_16m(void **state)
{
	return (setup_size(state, 16u << 20));
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(cache_zone_test_check(f->z), 0);
	cache_memory_store_free(f->s);
	cache_zone_destroy(f->z);
	free(f);
	return (0);
}

/* A put with one body piece and the given tags (NUL strings). */
static void
put_init(struct cache_put *p, struct iovec *body, const char *b, size_t blen,
    struct iovec *tags, const char *const *tagv, unsigned ntags)
{
	unsigned i;

	memset(p, 0, sizeof *p);
	p->status = 200;
	p->stored_at = 1000;
	p->ttl = 60000;
	body->iov_base = (void *)(uintptr_t)b;
	body->iov_len = blen;
	p->body = body;
	p->nbody = 1;
	for (i = 0; i < ntags; i++) {
		tags[i].iov_base = (void *)(uintptr_t)tagv[i];
		tags[i].iov_len = strlen(tagv[i]);
	}
	p->tags = tags;
	p->ntags = ntags;
}

static enum cache_rc
do_set(struct cache_store *s, const char *key, const char *body,
    const char *const *tagv, unsigned ntags)
{
	struct cache_put p;
	struct iovec iov, tags[8];
	struct doneres r = { 0 };

	put_init(&p, &iov, body, strlen(body), tags, tagv, ntags);
	s->ops->set(s, key, strlen(key), &p, done_cb, &r);
	assert_int_equal(r.calls, 1);
	return (r.rc);
}

static enum cache_rc
do_get(struct cache_store *s, const char *key, uint64_t now,
    struct cache_obj **obj)
{
	struct getres r = { 0 };

	s->ops->get(s, key, strlen(key), now, get_cb, &r);
	assert_int_equal(r.calls, 1);
	if (r.rc == CACHE_OK)
		assert_non_null(r.obj);
	else
		assert_null(r.obj);
	if (obj != NULL)
		*obj = r.obj;
	else if (r.obj != NULL)
		s->ops->release(s, r.obj);
	return (r.rc);
}

static enum cache_rc
do_exists(struct cache_store *s, const char *key, uint64_t now)
{
	struct doneres r = { 0 };

	s->ops->exists(s, key, strlen(key), now, done_cb, &r);
	assert_int_equal(r.calls, 1);
	return (r.rc);
}

static enum cache_rc
do_del(struct cache_store *s, const char *key)
{
	struct doneres r = { 0 };

	s->ops->del(s, key, strlen(key), done_cb, &r);
	assert_int_equal(r.calls, 1);
	return (r.rc);
}

static uint64_t
do_purge(struct cache_store *s, const char *tag)
{
	struct doneres r = { 0 };

	s->ops->purge_tag(s, tag, strlen(tag), done_cb, &r);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.rc, CACHE_OK);
	return (r.value);
}

static struct cache_stats
stats_of(struct cache_store *s)
{
	struct cache_stats st;

	memset(&st, 0xff, sizeof st);
	s->ops->stats(s, &st);
	return (st);
}

/*--------------------------------------------------------------------
 * Basic operations
 */

static void
test_set_get_round_trip(void **state)
{
	struct fixture *f = *state;
	struct cache_store *s = f->s;
	static const char hdr[] = "Content-Type: text/plain\r\nX-A: 1\r\n";
	struct iovec body[3] = {
		{ .iov_base = (void *)(uintptr_t)"hello ", .iov_len = 6 },
		{ .iov_base = NULL, .iov_len = 0 },
		{ .iov_base = (void *)(uintptr_t)"world", .iov_len = 5 },
	};
	struct cache_put p;
	struct doneres dr = { 0 };
	struct cache_obj *o;
	struct cache_stats st;

	memset(&p, 0, sizeof p);
	p.status = 203;
	p.stored_at = 1700000000000ull;
	p.ttl = 10000;
	p.swr = 2000;
	p.sie = 3000;
	p.headers = hdr;
	p.headers_len = strlen(hdr);
	p.body = body;
	p.nbody = 3;
	s->ops->set(s, "ns:GET:h:/a", 11, &p, done_cb, &dr);
	assert_int_equal(dr.calls, 1);
	assert_int_equal(dr.rc, CACHE_OK);

	assert_int_equal(do_get(s, "ns:GET:h:/a", p.stored_at + 5, &o), CACHE_OK);
	assert_int_equal(o->status, 203);
	assert_int_equal(o->stored_at, 1700000000000ull);
	assert_int_equal(o->ttl, 10000);
	assert_int_equal(o->swr, 2000);
	assert_int_equal(o->sie, 3000);
	assert_int_equal(o->headers_len, strlen(hdr));
	assert_memory_equal(o->headers, hdr, strlen(hdr));
	assert_int_equal(o->body_len, 11);
	assert_memory_equal(o->body, "hello world", 11);
	s->ops->release(s, o);

	st = stats_of(s);
	assert_int_equal(st.entries, 1);
	assert_true(st.bytes > 11 + strlen(hdr));
	assert_true(st.capacity > (4u << 20) / 2 && st.capacity < (4u << 20));
	assert_int_equal(st.evictions, 0);
	assert_int_equal(st.errors, 0);

	/* A set without a callback still stores; a key prefix is not the key. */
	s->ops->set(s, "ns:GET:h:/b", 11, &p, NULL, NULL);
	assert_int_equal(do_get(s, "ns:GET:h:/b", p.stored_at, NULL), CACHE_OK);
	assert_int_equal(do_get(s, "ns:GET:h:/", p.stored_at, NULL), CACHE_MISS);
}

static void
test_get_unknown_is_miss(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(do_get(f->s, "nope", 0, NULL), CACHE_MISS);
	assert_int_equal(do_exists(f->s, "nope", 0), CACHE_MISS);
	assert_int_equal(stats_of(f->s).errors, 0);
}

static void
test_set_replaces(void **state)
{
	struct fixture *f = *state;
	struct cache_obj *o;

	assert_int_equal(do_set(f->s, "k", "one", NULL, 0), CACHE_OK);
	assert_int_equal(do_set(f->s, "k", "two!", NULL, 0), CACHE_OK);
	assert_int_equal(do_get(f->s, "k", 1000, &o), CACHE_OK);
	assert_int_equal(o->body_len, 4);
	assert_memory_equal(o->body, "two!", 4);
	f->s->ops->release(f->s, o);
	assert_int_equal(stats_of(f->s).entries, 1);
}

static void
test_expiry_at_ttl_plus_max_stale(void **state)
{
	struct fixture *f = *state;
	struct cache_store *s = f->s;
	struct cache_put p;
	struct iovec iov;

	/* expires = 1000 + 100 + max(50, 200) = 1300 */
	put_init(&p, &iov, "b", 1, NULL, NULL, 0);
	p.stored_at = 1000;
	p.ttl = 100;
	p.swr = 50;
	p.sie = 200;
	s->ops->set(s, "k1", 2, &p, NULL, NULL);
	/* expires = 1000 + 100 + max(300, 0) = 1400 */
	p.swr = 300;
	p.sie = 0;
	s->ops->set(s, "k2", 2, &p, NULL, NULL);

	assert_int_equal(do_get(s, "k1", 1100, NULL), CACHE_OK); /* stale, kept */
	assert_int_equal(do_get(s, "k1", 1299, NULL), CACHE_OK);
	assert_int_equal(do_exists(s, "k1", 1299), CACHE_OK);
	assert_int_equal(do_exists(s, "k2", 1399), CACHE_OK);
	assert_int_equal(stats_of(s).entries, 2);

	assert_int_equal(do_get(s, "k1", 1300, NULL), CACHE_MISS);
	assert_int_equal(stats_of(s).entries, 1);       /* removed */
	assert_int_equal(do_get(s, "k1", 1000, NULL), CACHE_MISS);
	assert_int_equal(do_exists(s, "k2", 1400), CACHE_MISS);
	assert_int_equal(stats_of(s).entries, 0);
	assert_int_equal(stats_of(s).bytes, 0);
}

static void
test_add_vs_existing(void **state)
{
	struct fixture *f = *state;
	struct cache_store *s = f->s;
	struct cache_put p;
	struct iovec iov;
	struct doneres r = { 0 };
	struct cache_obj *o;

	put_init(&p, &iov, "first", 5, NULL, NULL, 0);
	s->ops->add(s, "k", 1, &p, done_cb, &r);
	assert_int_equal(r.rc, CACHE_OK);

	put_init(&p, &iov, "second", 6, NULL, NULL, 0);
	s->ops->add(s, "k", 1, &p, done_cb, &r);
	assert_int_equal(r.calls, 2);
	assert_int_equal(r.rc, CACHE_EXISTS);
	assert_int_equal(do_get(s, "k", 1000, &o), CACHE_OK);
	assert_memory_equal(o->body, "first", 5);
	s->ops->release(s, o);

	/* Judged at the new entry's stored_at: the old one has expired. */
	p.stored_at = 1000 + 60000;
	s->ops->add(s, "k", 1, &p, done_cb, &r);
	assert_int_equal(r.rc, CACHE_OK);
	assert_int_equal(do_get(s, "k", p.stored_at, &o), CACHE_OK);
	assert_memory_equal(o->body, "second", 6);
	s->ops->release(s, o);
	assert_int_equal(stats_of(s).entries, 1);
}

static void
test_del(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(do_set(f->s, "a", "x", NULL, 0), CACHE_OK);
	assert_int_equal(do_set(f->s, "b", "y", NULL, 0), CACHE_OK);
	assert_int_equal(do_del(f->s, "a"), CACHE_OK);
	assert_int_equal(do_get(f->s, "a", 1000, NULL), CACHE_MISS);
	assert_int_equal(do_get(f->s, "b", 1000, NULL), CACHE_OK);
	assert_int_equal(do_del(f->s, "a"), CACHE_MISS);
	f->s->ops->del(f->s, "b", 1, NULL, NULL);
	assert_int_equal(do_get(f->s, "b", 1000, NULL), CACHE_MISS);
	assert_int_equal(stats_of(f->s).entries, 0);
	assert_int_equal(stats_of(f->s).bytes, 0);
}

static void
test_exists(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(do_exists(f->s, "a", 1000), CACHE_MISS);
	assert_int_equal(do_set(f->s, "a", "x", NULL, 0), CACHE_OK);
	assert_int_equal(do_exists(f->s, "a", 1000), CACHE_OK);
	assert_int_equal(do_exists(f->s, "b", 1000), CACHE_MISS);
}

static void
test_clear(void **state)
{
	struct fixture *f = *state;
	struct doneres r = { 0 };
	char key[32];
	int i;

	for (i = 0; i < 10; i++) {
		snprintf(key, sizeof key, "key%d", i);
		assert_int_equal(do_set(f->s, key, "body", NULL, 0), CACHE_OK);
	}
	f->s->ops->clear(f->s, done_cb, &r);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.rc, CACHE_OK);
	assert_int_equal(r.value, 10);
	for (i = 0; i < 10; i++) {
		snprintf(key, sizeof key, "key%d", i);
		assert_int_equal(do_get(f->s, key, 1000, NULL), CACHE_MISS);
	}
	assert_int_equal(stats_of(f->s).entries, 0);
	assert_int_equal(stats_of(f->s).bytes, 0);
	f->s->ops->clear(f->s, NULL, NULL);
	assert_int_equal(do_set(f->s, "after", "x", NULL, 0), CACHE_OK);
}

static void
test_purge_tag(void **state)
{
	struct fixture *f = *state;
	struct cache_store *s = f->s;
	static const char *const t_ab[] = { "a", "b" };
	static const char *const t_b[] = { "b" };
	static const char *const t_c[] = { "c" };
	static const char *const t_aa[] = { "a", "a", "" };
	static const char *const t_ba[] = { "bb", "ab" };
	static const char *const t_a[] = { "a" };

	assert_int_equal(do_set(s, "e0", "0", t_a, 1), CACHE_OK);
	assert_int_equal(do_set(s, "e1", "1", t_ab, 2), CACHE_OK);
	assert_int_equal(do_set(s, "e2", "2", t_b, 1), CACHE_OK);
	assert_int_equal(do_set(s, "e3", "3", t_c, 1), CACHE_OK);
	assert_int_equal(do_set(s, "e4", "4", NULL, 0), CACHE_OK);
	assert_int_equal(do_set(s, "e5", "5", t_aa, 3), CACHE_OK);
	assert_int_equal(do_set(s, "e6", "6", t_ba, 2), CACHE_OK);
	assert_int_equal(cache_zone_test_check(f->z), 0);

	assert_int_equal(do_purge(s, "zz"), 0);
	assert_int_equal(do_purge(s, ""), 0);
	assert_int_equal(do_purge(s, "b"), 2);          /* shared: e1, e2 */
	assert_int_equal(do_get(s, "e1", 1000, NULL), CACHE_MISS);
	assert_int_equal(do_get(s, "e2", 1000, NULL), CACHE_MISS);
	assert_int_equal(do_get(s, "e5", 1000, NULL), CACHE_OK);
	assert_int_equal(do_get(s, "e6", 1000, NULL), CACHE_OK);
	assert_int_equal(cache_zone_test_check(f->z), 0);

	assert_int_equal(do_purge(s, "a"), 2);  /* e5 (tagged twice), e0 */
	assert_int_equal(do_purge(s, "a"), 0);
	assert_int_equal(do_purge(s, "c"), 1);
	assert_int_equal(do_get(s, "e4", 1000, NULL), CACHE_OK);
	assert_int_equal(do_get(s, "e6", 1000, NULL), CACHE_OK);
	assert_int_equal(stats_of(s).entries, 2);

	/* A replaced entry loses its old tags. */
	assert_int_equal(do_set(s, "e6", "6", t_c, 1), CACHE_OK);
	assert_int_equal(do_purge(s, "bb"), 0);
	assert_int_equal(do_purge(s, "c"), 1);
	assert_int_equal(stats_of(s).entries, 1);
}

static void
test_purge_many_entries_one_tag(void **state)
{
	struct fixture *f = *state;
	static const char *const t[] = { "x", "common", "y" };
	char key[32];
	int i;

	for (i = 0; i < 500; i++) {
		snprintf(key, sizeof key, "k%d", i);
		assert_int_equal(do_set(f->s, key, "b", t, 3), CACHE_OK);
	}
	assert_int_equal(do_purge(f->s, "common"), 500);
	assert_int_equal(stats_of(f->s).entries, 0);
	assert_int_equal(stats_of(f->s).bytes, 0);
}

/*--------------------------------------------------------------------
 * Eviction, size limits, references
 */

static void
test_lru_eviction_order(void **state)
{
	struct fixture *f = *state;
	struct cache_store *s = f->s;
	struct cache_stats st;
	char key[32], body[4000];
	uint64_t ev;
	int i, n, more = 10;

	memset(body, 'x', sizeof body - 1);
	body[sizeof body - 1] = '\0';
	st = stats_of(s);
	n = (int)(st.capacity / (sizeof body + 200)) - 1;
	assert_true(n > 20);
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof key, "key%04d", i);
		assert_int_equal(do_set(s, key, body, NULL, 0), CACHE_OK);
	}
	assert_int_equal(stats_of(s).evictions, 0);
	assert_int_equal(stats_of(s).entries, (uint64_t)n);

	/* Touch the oldest. */
	assert_int_equal(do_get(s, "key0000", 1000, NULL), CACHE_OK);
	for (i = n; i < n + more; i++) {
		snprintf(key, sizeof key, "key%04d", i);
		assert_int_equal(do_set(s, key, body, NULL, 0), CACHE_OK);
	}
	st = stats_of(s);
	ev = st.evictions;
	assert_true(ev >= (uint64_t)more - 2 && ev <= (uint64_t)more);
	assert_int_equal(st.entries, (uint64_t)(n + more) - ev);

	assert_int_equal(do_exists(s, "key0000", 1000), CACHE_OK);
	for (i = 1; i < n + more; i++) {
		snprintf(key, sizeof key, "key%04d", i);
		assert_int_equal(do_exists(s, key, 1000),
		    (uint64_t)i <= ev ? CACHE_MISS : CACHE_OK);
	}
}

static void
test_too_big(void **state)
{
	struct fixture *f = *state;
	struct cache_store *s = f->s;
	struct cache_put p;
	struct iovec iov;
	struct doneres r = { 0 };
	uint64_t cap = stats_of(s).capacity;
	char *big;

	big = calloc(1, (size_t)cap);
	assert_non_null(big);
	put_init(&p, &iov, big, (size_t)cap / 2, NULL, NULL, 0);
	s->ops->set(s, "big", 3, &p, done_cb, &r);
	assert_int_equal(r.rc, CACHE_TOO_BIG);
	s->ops->add(s, "big", 3, &p, done_cb, &r);
	assert_int_equal(r.rc, CACHE_TOO_BIG);
	iov.iov_len = (size_t)cap + 12345;       /* never read */
	s->ops->set(s, "big", 3, &p, done_cb, &r);
	assert_int_equal(r.rc, CACHE_TOO_BIG);
	iov.iov_len = (size_t)cap / 2 - 512;
	s->ops->set(s, "big", 3, &p, done_cb, &r);
	assert_int_equal(r.rc, CACHE_OK);
	assert_int_equal(r.calls, 4);
	assert_int_equal(stats_of(s).entries, 1);
	free(big);
}

static void
test_referenced_entry_outlives_delete(void **state)
{
	struct fixture *f = *state;
	struct cache_store *s = f->s;
	struct cache_obj *o, *o2;
	uint64_t b1;

	assert_int_equal(do_set(s, "k", "old body", NULL, 0), CACHE_OK);
	assert_int_equal(do_get(s, "k", 1000, &o), CACHE_OK);
	b1 = stats_of(s).bytes;
	assert_int_equal(do_del(s, "k"), CACHE_OK);
	assert_int_equal(do_get(s, "k", 1000, NULL), CACHE_MISS);
	assert_int_equal(stats_of(s).entries, 0);
	assert_int_equal(stats_of(s).bytes, b1);        /* not freed yet */

	/* Reusable memory must not be this entry's: fill some. */
	assert_int_equal(do_set(s, "k", "new body!", NULL, 0), CACHE_OK);
	assert_int_equal(do_set(s, "other", "zzzzzzzzzzzzzzzzzzzz", NULL, 0),
	    CACHE_OK);
	assert_int_equal(o->body_len, 8);
	assert_memory_equal(o->body, "old body", 8);
	assert_int_equal(cache_zone_test_check(f->z), 0);

	/* Replacing while referenced: the same. */
	assert_int_equal(do_get(s, "k", 1000, &o2), CACHE_OK);
	assert_int_equal(do_set(s, "k", "third", NULL, 0), CACHE_OK);
	assert_memory_equal(o2->body, "new body!", 9);

	b1 = stats_of(s).bytes;
	s->ops->release(s, o);
	assert_true(stats_of(s).bytes < b1);
	b1 = stats_of(s).bytes;
	s->ops->release(s, o2);
	assert_true(stats_of(s).bytes < b1);
	assert_int_equal(stats_of(s).entries, 2);
	assert_int_equal(do_del(s, "k"), CACHE_OK);
	assert_int_equal(do_del(s, "other"), CACHE_OK);
	assert_int_equal(stats_of(s).bytes, 0);
}

static void
test_release_after_eviction_frees(void **state)
{
	struct fixture *f = *state;
	struct cache_store *s = f->s;
	struct cache_obj *o;
	char key[32], body[8000];
	int i;

	memset(body, 'y', sizeof body - 1);
	body[sizeof body - 1] = '\0';
	assert_int_equal(do_set(s, "pinned", "pinned body", NULL, 0), CACHE_OK);
	assert_int_equal(do_get(s, "pinned", 1000, &o), CACHE_OK);
	for (i = 0; i < 200; i++) {         /* well over the zone */
		snprintf(key, sizeof key, "fill%d", i);
		assert_int_equal(do_set(s, key, body, NULL, 0), CACHE_OK);
	}
	assert_true(stats_of(s).evictions > 0);
	assert_int_equal(do_get(s, "pinned", 1000, NULL), CACHE_MISS);
	assert_memory_equal(o->body, "pinned body", 11);
	assert_int_equal(cache_zone_test_check(f->z), 0);
	s->ops->release(s, o);
	assert_int_equal(cache_zone_test_check(f->z), 0);
}

/*--------------------------------------------------------------------
 * Stampede lock
 */

static void
test_lock_semantics(void **state)
{
	struct fixture *f = *state;
	struct cache_store *s = f->s;
	struct doneres r = { 0 };
	uint64_t t1, t2;

	s->ops->lock(s, "k", 1, 1000, 0, done_cb, &r);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.rc, CACHE_OK);
	t1 = r.value;
	assert_true(t1 != 0);

	s->ops->lock(s, "k", 1, 1000, 500, done_cb, &r);
	assert_int_equal(r.rc, CACHE_LOCKED);
	s->ops->unlock(s, "k", 1, t1 + 1);               /* wrong token */
	s->ops->lock(s, "k", 1, 1000, 600, done_cb, &r);
	assert_int_equal(r.rc, CACHE_LOCKED);

	s->ops->lock(s, "other", 5, 1000, 600, done_cb, &r);
	assert_int_equal(r.rc, CACHE_OK);
	assert_true(r.value != t1);

	/* Lease over: the next taker gets it with a new token. */
	s->ops->lock(s, "k", 1, 1000, 999, done_cb, &r);
	assert_int_equal(r.rc, CACHE_LOCKED);
	s->ops->lock(s, "k", 1, 1000, 1000, done_cb, &r);
	assert_int_equal(r.rc, CACHE_OK);
	t2 = r.value;
	assert_true(t2 != 0 && t2 != t1);
	s->ops->unlock(s, "k", 1, t1);                   /* stale holder */
	s->ops->lock(s, "k", 1, 1000, 1001, done_cb, &r);
	assert_int_equal(r.rc, CACHE_LOCKED);
	s->ops->unlock(s, "k", 1, t2);
	s->ops->lock(s, "k", 1, 1000, 1001, done_cb, &r);
	assert_int_equal(r.rc, CACHE_OK);
	assert_int_equal(r.calls, 8);
}

static void
test_lock_table_full_is_error(void **state)
{
	struct fixture *f = *state;
	struct cache_store *s = f->s;
	struct doneres r = { 0 };
	char key[32];
	int i, ok = 0, err = 0;

	/* Far more live locks than slots: some sets fill up. */
	for (i = 0; i < 5000; i++) {
		snprintf(key, sizeof key, "lk%d", i);
		s->ops->lock(s, key, strlen(key), 100000, 0, done_cb, &r);
		if (r.rc == CACHE_OK)
			ok++;
		else if (r.rc == CACHE_ERROR)
			err++;
	}
	assert_int_equal(ok + err, 5000);
	assert_true(err > 0 && ok > 0);
	/* All expired: every key can be taken (and given back) again. */
	for (i = 0; i < 5000; i++) {
		snprintf(key, sizeof key, "lk%d", i);
		s->ops->lock(s, key, strlen(key), 10, 100000, done_cb, &r);
		assert_int_equal(r.rc, CACHE_OK);
		s->ops->unlock(s, key, strlen(key), r.value);
	}
}

/*--------------------------------------------------------------------
 * Processes
 */

#define MP_KEYS 1000

/* Body of key id: length and bytes follow from (id, ver). */
static size_t
mp_fill(char *buf, unsigned id, unsigned ver)
{
	size_t len = 1 + (id * 37u + ver * 101u) % 6000u, i;

	for (i = 0; i < len; i++)
		buf[i] = (char)((id * 131u + i * 7u + ver) & 0xff);
	return (len);
}

static int
mp_check(const struct cache_obj *o, unsigned id)
{
	char hdr[64], buf[8192];
	unsigned hid, ver;
	size_t len;

	if (o->headers_len >= sizeof hdr)
		return (-1);
	memcpy(hdr, o->headers, o->headers_len);
	hdr[o->headers_len] = '\0';
	if (sscanf(hdr, "X-Id: %u\r\nX-Ver: %u\r\n", &hid, &ver) != 2 ||
	    hid != id)
		return (-1);
	len = mp_fill(buf, id, ver);
	if (o->body_len != len || memcmp(o->body, buf, len) != 0)
		return (-1);
	return (0);
}

static int
mp_child(struct cache_zone *z, int startfd, unsigned seed, int ops)
{
	struct cache_store *s = cache_memory_store(z);
	struct cache_put p;
	struct iovec iov[2];
	struct getres gr;
	char key[32], hdr[64], buf[8192];
	unsigned id, ver;
	size_t len;
	int i, bad = 0, hits = 0, n;

	if (s == NULL)
		return (1);
	srand(seed);
	while (read(startfd, buf, 1) > 0)     /* all start together */
		continue;
	for (i = 0; i < ops; i++) {
		id = (unsigned)rand() % MP_KEYS;
		snprintf(key, sizeof key, "mp:%u", id);
		switch (rand() % 10) {
		case 0: case 1: case 2: case 3:
			ver = (unsigned)rand() % 1000;
			len = mp_fill(buf, id, ver);
			n = snprintf(hdr, sizeof hdr, "X-Id: %u\r\nX-Ver: %u\r\n",
			    id, ver);
			memset(&p, 0, sizeof p);
			p.status = 200;
			p.stored_at = 1000;
			p.ttl = 1000000;
			p.headers = hdr;
			p.headers_len = (size_t)n;
			iov[0].iov_base = buf;
			iov[0].iov_len = len / 2;
			iov[1].iov_base = buf + len / 2;
			iov[1].iov_len = len - len / 2;
			p.body = iov;
			p.nbody = 2;
			s->ops->set(s, key, strlen(key), &p, NULL, NULL);
			break;
		case 4:
			s->ops->del(s, key, strlen(key), NULL, NULL);
			break;
		default:
			memset(&gr, 0, sizeof gr);
			s->ops->get(s, key, strlen(key), 2000, get_cb, &gr);
			if (gr.calls != 1)
				bad++;
			if (gr.rc == CACHE_OK) {
				if (mp_check(gr.obj, id) != 0)
					bad++;
				hits++;
				s->ops->release(s, gr.obj);
			} else if (gr.rc != CACHE_MISS)
				bad++;
		}
	}
	cache_memory_store_free(s);
	return (bad != 0 || hits == 0);
}

static void
test_multiprocess_integrity(void **state)
{
	struct fixture *f = *state;
	pid_t pids[4];
	struct cache_stats st;
	unsigned i;
	int status, pfd[2];

	assert_int_equal(pipe(pfd), 0);
	for (i = 0; i < sizeof pids / sizeof pids[0]; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			close(pfd[1]);
			_exit(mp_child(f->z, pfd[0], 1234 + i, 10000));
		}
	}
	close(pfd[0]);
	close(pfd[1]);
	for (i = 0; i < sizeof pids / sizeof pids[0]; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_int_equal(cache_zone_test_check(f->z), 0);
	st = stats_of(f->s);
	assert_true(st.evictions > 0);  /* the zone was too small: evicting */
	assert_true(st.entries > 0);
	assert_int_equal(st.errors, 0);
}

static void
test_robust_lock_recovered_by_rebuild(void **state)
{
	struct fixture *f = *state;
	struct cache_store *s = f->s;
	struct cache_obj *held;
	pid_t pid;
	int status;

	assert_int_equal(do_set(s, "kept", "kept body", NULL, 0), CACHE_OK);
	assert_int_equal(do_set(s, "held", "held body", NULL, 0), CACHE_OK);
	assert_int_equal(do_get(s, "held", 1000, &held), CACHE_OK);
	assert_int_equal(do_del(s, "held"), CACHE_OK);  /* unlinked, referenced */

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		cache_zone_test_lock(f->z, 1);  /* and empties the index */
		_exit(0);               /* dies holding the zone lock */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);

	alarm(10);                      /* a wedged lock fails the test */
	assert_int_equal(do_get(s, "kept", 1000, NULL), CACHE_OK);
	alarm(0);
	assert_int_equal(do_get(s, "held", 1000, NULL), CACHE_MISS);
	assert_int_equal(cache_zone_test_check(f->z), 0);
	assert_memory_equal(held->body, "held body", 9);
	assert_int_equal(stats_of(s).entries, 1);
	s->ops->release(s, held);
	assert_int_equal(cache_zone_test_check(f->z), 0);
	assert_int_equal(do_set(s, "new", "x", NULL, 0), CACHE_OK);
	assert_int_equal(stats_of(s).entries, 2);
	assert_int_equal(stats_of(s).errors, 0);
}

static void
test_robust_lock_recovered_by_wipe(void **state)
{
	struct fixture *f = *state;
	struct cache_store *s = f->s;
	struct cache_obj *held;
	pid_t pid;
	int status;

	assert_int_equal(do_set(s, "a", "aaa", NULL, 0), CACHE_OK);
	assert_int_equal(do_set(s, "b", "bbb", NULL, 0), CACHE_OK);
	assert_int_equal(do_get(s, "a", 1000, &held), CACHE_OK);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		cache_zone_test_lock(f->z, 2);  /* and damages a block */
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);

	alarm(10);
	assert_int_equal(do_get(s, "b", 1000, NULL), CACHE_MISS); /* wiped */
	alarm(0);
	assert_int_equal(stats_of(s).entries, 0);
	assert_int_equal(stats_of(s).bytes, 0);
	s->ops->release(s, held);       /* pre-wipe object: no-op */
	assert_int_equal(stats_of(s).bytes, 0);
	assert_int_equal(do_set(s, "c", "ccc", NULL, 0), CACHE_OK);
	assert_int_equal(do_get(s, "c", 1000, NULL), CACHE_OK);
	assert_int_equal(cache_zone_test_check(f->z), 0);
}

/*--------------------------------------------------------------------
 * Randomised, against a model
 */

#define RM_KEYS 200

struct rm_model {
	bool            present;
	uint64_t        expires;
	unsigned        ver;
	unsigned        tag;            /* tags "t<tag % 5>" and "u<tag % 7>" */
};

static void
test_random_against_model(void **state)
{
	struct fixture *f = *state;
	struct cache_store *s = f->s;
	struct rm_model *m;
	struct cache_put p;
	struct iovec iov, tags[2];
	struct doneres dr;
	struct cache_obj *o;
	char key[32], hdr[64], buf[8192], t1[8], t2[8];
	const char *tv[2] = { t1, t2 };
	uint64_t now = 1000000, n, expect;
	unsigned id, ver, tg, j;
	size_t len;
	int i, op;
	enum cache_rc rc;

	m = calloc(RM_KEYS, sizeof *m);
	assert_non_null(m);
	srand(42);
	for (i = 0; i < 30000; i++) {
		id = (unsigned)rand() % RM_KEYS;
		snprintf(key, sizeof key, "rm:%u", id);
		op = rand() % 12;
		if (m[id].present && now >= m[id].expires)
			m[id].present = false;  /* as the store sees it */
		switch (op) {
		case 0: case 1: case 2: case 3:         /* set / add */
			ver = (unsigned)rand() % 1000;
			tg = (unsigned)rand();
			snprintf(t1, sizeof t1, "t%u", tg % 5);
			snprintf(t2, sizeof t2, "u%u", tg % 7);
			len = mp_fill(buf, id, ver);
			put_init(&p, &iov, buf, len, tags, tv, 2);
			snprintf(hdr, sizeof hdr, "X-Id: %u\r\nX-Ver: %u\r\n",
			    id, ver);
			p.headers = hdr;
			p.headers_len = strlen(hdr);
			p.stored_at = now;
			p.ttl = (uint64_t)(rand() % 5000);
			p.swr = (uint64_t)(rand() % 3) * 1000;
			memset(&dr, 0, sizeof dr);
			if (op == 3) {
				s->ops->add(s, key, strlen(key), &p, done_cb, &dr);
				assert_int_equal(dr.rc, m[id].present ?
				    CACHE_EXISTS : CACHE_OK);
				if (m[id].present)
					break;
			} else {
				s->ops->set(s, key, strlen(key), &p, done_cb, &dr);
				assert_int_equal(dr.rc, CACHE_OK);
			}
			m[id].present = true;
			m[id].ver = ver;
			m[id].tag = tg;
			m[id].expires = now + p.ttl + p.swr;
			break;
		case 4:
			rc = do_del(s, key);
			/* del also removes an expired, unreaped entry */
			if (m[id].present)
				assert_int_equal(rc, CACHE_OK);
			m[id].present = false;
			break;
		case 5:
			assert_int_equal(do_exists(s, key, now),
			    m[id].present ? CACHE_OK : CACHE_MISS);
			break;
		case 6:
			tg = (unsigned)rand() % 12;
			if (tg < 5)
				snprintf(t1, sizeof t1, "t%u", tg);
			else
				snprintf(t1, sizeof t1, "u%u", tg - 5);
			for (j = 0, expect = 0; j < RM_KEYS; j++) {
				if (m[j].present && now >= m[j].expires)
					m[j].present = false;
				if (m[j].present && (tg < 5 ?
				    m[j].tag % 5 == tg : m[j].tag % 7 == tg - 5)) {
					m[j].present = false;
					expect++;
				}
			}
			n = do_purge(s, t1);
			/* expired entries not yet reaped may be counted too */
			assert_true(n >= expect);
			break;
		case 7:
			now += (uint64_t)(rand() % 500);
			break;
		default:
			rc = do_get(s, key, now, &o);
			assert_int_equal(rc, m[id].present ? CACHE_OK : CACHE_MISS);
			if (rc == CACHE_OK) {
				assert_int_equal(mp_check(o, id), 0);
				snprintf(hdr, sizeof hdr, "X-Id: %u\r\nX-Ver: %u\r\n",
				    id, m[id].ver);
				assert_int_equal(o->headers_len, strlen(hdr));
				assert_memory_equal(o->headers, hdr, strlen(hdr));
				s->ops->release(s, o);
			}
		}
		if (i % 1000 == 0)
			assert_int_equal(cache_zone_test_check(f->z), 0);
	}
	assert_int_equal(stats_of(s).evictions, 0);
	assert_int_equal(stats_of(s).errors, 0);
	free(m);
}

static void
test_zone_create_rejects_tiny(void **state)
{
	char err[128] = "";
	struct cache_zone *z;

	(void)state;
	z = cache_zone_create(1024, err, sizeof err);
	assert_null(z);
	assert_true(err[0] != '\0');
	z = cache_zone_create(64 * 1024, err, sizeof err);
	assert_non_null(z);
	assert_int_equal(cache_zone_size(z), 64 * 1024);
	assert_int_equal(cache_zone_test_check(z), 0);
	cache_zone_destroy(z);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_set_get_round_trip, setup_4m, teardown),
		cmocka_unit_test_setup_teardown(test_get_unknown_is_miss, setup_4m, teardown),
		cmocka_unit_test_setup_teardown(test_set_replaces, setup_4m, teardown),
		cmocka_unit_test_setup_teardown(test_expiry_at_ttl_plus_max_stale, setup_4m, teardown),
		cmocka_unit_test_setup_teardown(test_add_vs_existing, setup_4m, teardown),
		cmocka_unit_test_setup_teardown(test_del, setup_4m, teardown),
		cmocka_unit_test_setup_teardown(test_exists, setup_4m, teardown),
		cmocka_unit_test_setup_teardown(test_clear, setup_4m, teardown),
		cmocka_unit_test_setup_teardown(test_purge_tag, setup_4m, teardown),
		cmocka_unit_test_setup_teardown(test_purge_many_entries_one_tag, setup_4m, teardown),
		cmocka_unit_test_setup_teardown(test_lru_eviction_order, setup_256k, teardown),
		cmocka_unit_test_setup_teardown(test_too_big, setup_256k, teardown),
		cmocka_unit_test_setup_teardown(test_referenced_entry_outlives_delete, setup_4m, teardown),
		cmocka_unit_test_setup_teardown(test_release_after_eviction_frees, setup_256k, teardown),
		cmocka_unit_test_setup_teardown(test_lock_semantics, setup_4m, teardown),
		cmocka_unit_test_setup_teardown(test_lock_table_full_is_error, setup_256k, teardown),
		cmocka_unit_test_setup_teardown(test_multiprocess_integrity, setup_1m, teardown),
		cmocka_unit_test_setup_teardown(test_robust_lock_recovered_by_rebuild, setup_4m, teardown),
		cmocka_unit_test_setup_teardown(test_robust_lock_recovered_by_wipe, setup_4m, teardown),
		cmocka_unit_test_setup_teardown(test_random_against_model, setup_16m, teardown),
		cmocka_unit_test(test_zone_create_rejects_tiny),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
