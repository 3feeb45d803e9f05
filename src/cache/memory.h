/*
 * cache/memory.h -- the shared-memory cache store.
 *
 * The master creates the zone (one anonymous MAP_SHARED mapping) before it
 * forks, so every worker sees it at the same address; it survives reloads
 * because the master keeps it.  Inside, only offsets (habit 9): a hash
 * index, an allocator, an LRU list, a tag index and a lock table, guarded
 * by process-shared robust mutexes so a worker that dies holding one does
 * not wedge the others.
 */
#ifndef STOA_CACHE_MEMORY_H
#define STOA_CACHE_MEMORY_H

#include <stddef.h>
#include <stdint.h>

struct cache_store;
struct cache_zone;

/* Map and format a zone of `size` bytes (all metadata included).
 * NULL with a reason in err on failure. */
struct cache_zone *cache_zone_create(uint64_t size, char *err, size_t errlen);
void cache_zone_destroy(struct cache_zone *z);
uint64_t cache_zone_size(const struct cache_zone *z);

/* A store over the zone for this process (a worker, a test). */
struct cache_store *cache_memory_store(struct cache_zone *z);
void cache_memory_store_free(struct cache_store *s);

/*
 * For tests only.
 *
 * cache_zone_test_lock: take the zone lock and return holding it, so a
 * child process can _exit() inside a "critical section" and the parent can
 * check recovery.  damage 1: also empty the hash index and the LRU list
 * (recovery must rebuild them from the blocks); damage 2: also break the
 * allocator's first block header (recovery must wipe the zone).
 *
 * cache_zone_test_check: walk every structure of the zone under the lock
 * and check its invariants.  0 when consistent, else the (negative) line
 * number of the first failed check.
 */
void cache_zone_test_lock(struct cache_zone *z, int damage);
int cache_zone_test_check(struct cache_zone *z);

#endif
