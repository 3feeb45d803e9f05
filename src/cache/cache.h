/*
 * cache/cache.h -- the cache store interface (aiocache-like: get, set, add,
 * delete, exists, clear, plus tags and a stampede lock), implemented by
 * cache/memory.c (a shared-memory zone used by every worker) and later by
 * cache/redis.c.  Backends live behind `struct cache_ops` (habit 10).
 *
 * Calls are asynchronous in form so a network store fits: every operation
 * reports through a callback that is called exactly once.  The memory
 * store calls it synchronously, before the operation returns.
 *
 * Times are wall-clock milliseconds since the Unix epoch (CLOCK_REALTIME),
 * passed in by the caller (`now`), so entries written by one host mean the
 * same to another and tests move a clock instead of sleeping.
 *
 * Keys are opaque byte strings built by cache/policy.c
 * ("NAMESPACE:GET:host:/path?query"); tags are opaque byte strings.
 */
#ifndef STOA_CACHE_H
#define STOA_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum cache_rc {
	CACHE_OK = 0,
	CACHE_MISS,         /* no such (live) entry */
	CACHE_EXISTS,       /* add: an entry is already there */
	CACHE_LOCKED,       /* lock: somebody else holds it */
	CACHE_TOO_BIG,      /* set/add: larger than the store accepts */
	CACHE_ERROR,        /* store unavailable or failed: treat as BYPASS */
};

/*
 * A stored response as the store hands it out: read-only, valid until
 * release().  For the memory store the pointers point into the shared
 * zone (no copy); the entry cannot be freed while referenced.
 */
struct cache_obj {
	int             status;
	uint64_t        stored_at;      /* ms, epoch */
	uint64_t        ttl;            /* ms: fresh while now < stored_at + ttl */
	uint64_t        swr;            /* ms: stale_while_revalidate window after ttl */
	uint64_t        sie;            /* ms: stale_if_error window after ttl */
	const char     *headers;        /* "Name: value\r\n" lines, already filtered */
	size_t          headers_len;
	const char     *body;
	size_t          body_len;
	void           *priv;           /* the store's */
};

/* What to store.  The store copies everything; the caller keeps ownership. */
struct cache_put {
	int                  status;
	uint64_t             stored_at, ttl, swr, sie;
	const char          *headers;
	size_t               headers_len;
	const struct iovec  *body;      /* body in pieces (e.g. evbuffer_peek) */
	unsigned             nbody;
	const struct iovec  *tags;      /* Surrogate-Key values, may be 0 */
	unsigned             ntags;
};

struct cache_stats {
	uint64_t entries;
	uint64_t bytes;                 /* bytes in use by entries */
	uint64_t capacity;              /* bytes the store may use (0 = n/a) */
	uint64_t evictions;             /* entries removed to make room (LRU) */
	uint64_t errors;                /* failed operations */
};

struct cache_store;

typedef void cache_get_cb(void *arg, enum cache_rc rc, struct cache_obj *obj);
typedef void cache_done_cb(void *arg, enum cache_rc rc, uint64_t value);

struct cache_ops {
	const char *name;               /* "memory", "redis" */

	/*
	 * Look KEY up.  cb gets CACHE_OK with a referenced obj (the caller
	 * must release() it), CACHE_MISS, or CACHE_ERROR.  An entry past
	 * stored_at + ttl + max(swr, sie) is a MISS (and may be removed);
	 * inside that window it is returned and the caller decides
	 * (cache/policy.c) whether it is fresh, stale or expired.
	 */
	void (*get)(struct cache_store *s, const char *key, size_t klen,
	    uint64_t now, cache_get_cb *cb, void *arg);
	void (*release)(struct cache_store *s, struct cache_obj *obj);

	/* Store (replace) / store only if absent (CACHE_EXISTS).  The entry
	 * lives until stored_at + ttl + max(swr, sie).  cb may be NULL. */
	void (*set)(struct cache_store *s, const char *key, size_t klen,
	    const struct cache_put *p, cache_done_cb *cb, void *arg);
	void (*add)(struct cache_store *s, const char *key, size_t klen,
	    const struct cache_put *p, cache_done_cb *cb, void *arg);

	/* Remove KEY: CACHE_OK or CACHE_MISS.  cb may be NULL. */
	void (*del)(struct cache_store *s, const char *key, size_t klen,
	    cache_done_cb *cb, void *arg);
	/* CACHE_OK if a live entry exists, else CACHE_MISS. */
	void (*exists)(struct cache_store *s, const char *key, size_t klen,
	    uint64_t now, cache_done_cb *cb, void *arg);
	/* Remove every entry (of this namespace). value = entries removed. */
	void (*clear)(struct cache_store *s, cache_done_cb *cb, void *arg);
	/* Remove every entry tagged TAG. value = entries removed. */
	void (*purge_tag)(struct cache_store *s, const char *tag, size_t tlen,
	    cache_done_cb *cb, void *arg);

	/*
	 * Stampede lock on KEY, across all workers (and hosts, for Redis).
	 * CACHE_OK: acquired, value = token to unlock with.  CACHE_LOCKED:
	 * held by someone else.  A holder that dies without unlocking loses
	 * the lock when lease (ms) has passed.  Waiters poll get() (the
	 * caller's business).
	 */
	void (*lock)(struct cache_store *s, const char *key, size_t klen,
	    uint64_t lease, uint64_t now, cache_done_cb *cb, void *arg);
	/* Release if still held with this token (otherwise nothing). */
	void (*unlock)(struct cache_store *s, const char *key, size_t klen,
	    uint64_t token);

	void (*stats)(struct cache_store *s, struct cache_stats *out);
};

/* A store instance: its ops and its private state. */
struct cache_store {
	const struct cache_ops *ops;
	void                   *priv;
};

#endif
