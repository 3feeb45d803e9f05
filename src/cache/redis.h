/*
 * cache/redis.h -- the Redis cache store (cache/cache.h ops over hiredis's
 * asynchronous API on a worker's libevent loop).
 *
 * One store per worker (per event_base).  It keeps a small pool of
 * connections to one Redis, reconnects by itself with backoff, and never
 * blocks the loop on Redis: every operation answers through its callback,
 * at the latest timeout_ms after it was issued (CACHE_ERROR when Redis is
 * down, slow or failing, which the caller treats as BYPASS).  While no
 * connection is up, operations fail at once (the callback runs before the
 * call returns, as with the memory store).
 *
 * The key scheme and the value format are a stable, documented contract
 * (docs/redis-keys.md): an entry is the Redis key equal to the cache key
 * itself ("NS:GET:host:/path?query"), so applications can delete entries
 * with any Redis client.
 *
 * Callbacks may call into the store again (issue new operations), but
 * must not free it: cache_redis_store_free() is for the owner, outside the
 * store's callbacks.  Objects from get() are independent copies: release()
 * may be called at any time, even after the store is freed.
 */
#ifndef STOA_CACHE_REDIS_H
#define STOA_CACHE_REDIS_H

#include <stdbool.h>

#include <stddef.h>
#include <stdint.h>

struct cache_store;
struct event_base;

/*
 * A store on `base` for the Redis at `url`:
 *
 *	redis://[[user]:password@]host[:port][/db]	(port 6379, db 0)
 *	unix:/path/to/redis.sock
 *
 * host is an IPv4/IPv6 address ("[::1]") or a name; password and user may
 * be percent-encoded.  `ns` is the namespace (the keys' prefix before the
 * first ':'), used by clear() and for tag and lock keys.  timeout_ms bounds
 * every reply (0 = 250 ms); bodies over max_object_size are CACHE_TOO_BIG
 * (0 = no limit of ours; Redis's 512 MiB string limit still applies).
 *
 * Returns NULL with a reason in err on a bad URL (or out of memory).  An
 * unreachable Redis is not an error here: the store connects in the
 * background and its operations answer CACHE_ERROR until it is up.
 */
struct cache_store *cache_redis_store(struct event_base *base, const char *url,
    const char *ns, uint64_t timeout_ms, uint64_t max_object_size,
    char *err, size_t errlen);

/*
 * Close the connections.  Every operation still pending gets its callback
 * with CACHE_ERROR before this returns.  Not from inside a callback of
 * this store.  NULL is a no-op.
 */
void cache_redis_store_free(struct cache_store *s);

/*
 * Decode a stored value (the format of docs/redis-keys.md) into o, whose
 * views point into v.  false for anything that is not a complete, valid
 * value of this version.  Pure; for the fuzz target and for tools.
 */
struct cache_obj;
bool cache_redis_decode(const void *v, size_t len, struct cache_obj *o);

#endif
