/*
 * cache/memory.c -- the shared-memory cache store (cache/memory.h).
 *
 * Zone layout.  One anonymous MAP_SHARED mapping; everything in it is
 * addressed by its offset from the zone base (habit 9), offset 0 meaning
 * "none" (the header lives there, so no object can):
 *
 *	[struct zhdr][hash buckets][tag buckets][lock slots][data area]
 *
 * Index sizing: one hash bucket (8 bytes) per 2 KiB of zone, rounded up to
 * a power of two (>= 64); one tag bucket per four hash buckets; one
 * stampede-lock slot per 16 hash buckets (64 .. 65536, 8-way sets).
 * Metadata costs about 0.6 % of the zone; the rest is the data area.
 *
 * Allocator: variable-size blocks with boundary tags (header and footer
 * both hold size|used) and segregated free lists, one per power of two of
 * the block size (a bitmap tells which are non-empty).  Allocation looks at
 * up to 16 blocks of the request's own class (first fit), then takes the
 * head of the smallest larger non-empty class (any of its blocks fits) and
 * splits off the tail.  Free coalesces with both neighbours at once, so no
 * two free blocks are ever adjacent.  Both are O(1) but for the bounded
 * scan.
 *
 * Entries: one block each,
 *
 *	[struct ent][struct tlink x ntags][key][tag bytes][headers][body]
 *
 * linked into a hash chain (singly linked, bucket = XXH3(key)), the LRU
 * list (doubly linked, head = most recently used) and, per tag, a doubly
 * linked chain hanging off the tag's bucket (the tlink records are embedded
 * in the entry, so tagging allocates nothing and unlinking an entry drops
 * its tags in O(ntags)).  purge_tag walks one tag bucket.
 *
 * An object larger than half the data area (block size) is CACHE_TOO_BIG:
 * with the rest of the zone full of small entries, LRU eviction can always
 * free a contiguous run that large only if nothing is pinned, and half
 * keeps one huge object from flushing everything else.
 *
 * Reference counts: get() takes a reference under the lock, release()
 * drops it.  Deleting, evicting, expiring or replacing an entry unlinks it
 * at once (it is no longer found); its block is freed when the last
 * reference goes.  A worker that dies holding references leaks those
 * entries' memory until the next wipe (there is no per-process registry).
 *
 * Locking: one process-shared, robust mutex guards the whole zone.
 * Critical sections do no I/O and no allocation; the longest is set(),
 * which copies the body into the zone under the lock (bounded by
 * max_object_size; copying outside the lock would need a "reserved" state
 * that a dying writer could leak).  Callbacks run after the lock is
 * dropped, so they may call back into the store.
 *
 * Recovery (EOWNERDEAD: a process died holding the lock, possibly in the
 * middle of an update): the allocator's blocks are walked from the start
 * of the data area; if every boundary tag is sane, all indexes (hash, LRU,
 * tags, free lists, counters) are rebuilt from the blocks: linked and valid
 * entries are re-indexed (LRU order is lost), referenced unlinked ones are
 * kept, anything else is freed; the stampede-lock table is cleared.  If the
 * walk fails, the zone is wiped (it is a cache) and its epoch bumped;
 * objects handed out before a wipe must not be trusted by their holders
 * after it (their bytes may be reused), and releasing them is a no-op.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xxhash.h>

#include "cache/cache.h"
#include "cache/memory.h"
#include "log.h"
#include "vas.h"

#define ZONE_MAGIC      0x53544f41u     /* "STOA" */
#define ZONE_VERSION    1u
#define ZONE_MIN        (64u * 1024u)
#define ENT_MAGIC       0x454e5452u

#define NCLASS          64
#define BHDR            16u             /* block header: size|used, pad */
#define BFTR            8u              /* block footer: size|used */
#define BMIN            48u             /* header + free links + footer */
#define B_USED          1u
#define B_MASK          (~(uint64_t)15)
#define FL_SCAN         16              /* first-fit probes in own class */
#define LOCK_WAYS       8u

#define E_LINKED        1u

/* The zone header, at offset 0.  Everything below is under mtx. */
struct zhdr {
	uint32_t        magic;
	uint32_t        version;
	uint64_t        size;
	uint64_t        nbuckets, buckets;      /* count (power of 2), offset */
	uint64_t        ntagb, tagb;
	uint64_t        nlocks, locks;
	uint64_t        dbeg, dend;             /* data area */
	uint64_t        fl_map;                 /* bit c: fl[c] non-empty */
	uint64_t        fl[NCLASS];             /* free blocks by log2(size) */
	uint64_t        lru_head, lru_tail;     /* entry offsets */
	uint64_t        entries;                /* linked entries */
	uint64_t        bytes;                  /* block bytes of all entries */
	uint64_t        evictions;
	uint64_t        errors;                 /* atomic, may change unlocked */
	uint64_t        epoch;                  /* bumped by a wipe */
	uint64_t        token_seq;
	uint64_t        recoveries;
	pthread_mutex_t mtx;
};

/* A stampede lock: free when token == 0 or now >= expiry. */
struct lslot {
	uint64_t        hash;
	uint64_t        token;
	uint64_t        expiry;
};

/* An entry's head, at the payload of its block. */
struct ent {
	uint32_t        magic;
	uint32_t        flags;                  /* E_LINKED */
	uint32_t        refcnt;
	uint32_t        ntags;
	uint64_t        hash;                   /* XXH3(key) */
	uint64_t        hnext;                  /* hash chain */
	uint64_t        lprev, lnext;           /* LRU */
	uint64_t        stored_at, ttl, swr, sie;
	uint64_t        expires;                /* stored_at + ttl + max(swr, sie) */
	int32_t         status;
	uint32_t        klen;
	uint64_t        hlen, blen, tbytes;     /* headers, body, all tag bytes */
};

/* One tag of an entry, linked into its tag bucket's chain. */
struct tlink {
	uint64_t        next, prev;             /* tlink offsets */
	uint64_t        owner;                  /* entry offset */
	uint64_t        hash;                   /* XXH3(tag) */
	uint64_t        off;                    /* tag bytes, from the entry */
	uint64_t        len;
};

_Static_assert(sizeof(struct ent) % 8 == 0, "ent alignment");
_Static_assert(sizeof(struct tlink) % 8 == 0, "tlink alignment");

/* Per process: where the zone is mapped. */
struct cache_zone {
	unsigned        magic;
#define CACHE_ZONE_MAGIC        0x7a6f6e65u
	unsigned char   *base;
	uint64_t        size;
	struct zhdr     *h;
};

/* Per process: an object handed out by get(), recycled through a list. */
struct mobj {
	struct cache_obj        obj;
	uint64_t                off;            /* entry */
	uint64_t                epoch;
	struct mobj             *next;
};

struct mstore {
	struct cache_store      store;
	unsigned                magic;
#define MSTORE_MAGIC            0x6d73746fu
	struct cache_zone       *z;
	struct mobj             *free;
};

/*--------------------------------------------------------------------
 * Addressing
 */

static inline void *
zp(const struct cache_zone *z, uint64_t off)
{
	return (z->base + off);
}

#define U64(z, off)     ((uint64_t *)zp(z, off))
#define ENT(z, off)     ((struct ent *)zp(z, off))
#define TL(z, off)      ((struct tlink *)zp(z, off))
#define BUCKETS(z)      U64(z, (z)->h->buckets)
#define TAGB(z)         U64(z, (z)->h->tagb)
#define LSLOTS(z)       ((struct lslot *)zp(z, (z)->h->locks))

static inline uint64_t
tl_off(uint64_t e, unsigned i)
{
	return (e + sizeof(struct ent) + (uint64_t)i * sizeof(struct tlink));
}

static inline uint64_t
round16(uint64_t v)
{
	return ((v + 15) & B_MASK);
}

static uint64_t
pow2_at_least(uint64_t v)
{
	uint64_t p = 1;

	while (p < v)
		p <<= 1;
	return (p);
}

static uint64_t
sat_add(uint64_t a, uint64_t b)
{
	return (a + b < a ? UINT64_MAX : a + b);
}

static uint64_t
expires_of(uint64_t stored_at, uint64_t ttl, uint64_t swr, uint64_t sie)
{
	return (sat_add(sat_add(stored_at, ttl), swr > sie ? swr : sie));
}

static void
count_error(struct zhdr *h)
{
	__atomic_fetch_add(&h->errors, 1, __ATOMIC_RELAXED);
}

/*--------------------------------------------------------------------
 * Allocator.  Blocks tile [dbeg, dend).  A free block keeps its list
 * links in its payload: next at +16, prev at +24.  Caller holds the lock.
 */

static inline uint64_t
blk_size(const struct cache_zone *z, uint64_t b)
{
	return (*U64(z, b) & B_MASK);
}

static inline bool
blk_used(const struct cache_zone *z, uint64_t b)
{
	return ((*U64(z, b) & B_USED) != 0);
}

static inline unsigned
cls_of(uint64_t sz)
{
	return (63u - (unsigned)__builtin_clzll(sz));
}

static void
blk_set(struct cache_zone *z, uint64_t b, uint64_t sz, uint64_t used)
{
	*U64(z, b) = sz | used;
	*U64(z, b + 8) = 0;
	*U64(z, b + sz - BFTR) = sz | used;
}

static void
fl_push(struct cache_zone *z, uint64_t b)
{
	struct zhdr *h = z->h;
	unsigned c = cls_of(blk_size(z, b));
	uint64_t head = h->fl[c];

	*U64(z, b + 16) = head;
	*U64(z, b + 24) = 0;
	if (head != 0)
		*U64(z, head + 24) = b;
	h->fl[c] = b;
	h->fl_map |= (uint64_t)1 << c;
}

static void
fl_remove(struct cache_zone *z, uint64_t b)
{
	struct zhdr *h = z->h;
	unsigned c = cls_of(blk_size(z, b));
	uint64_t next = *U64(z, b + 16), prev = *U64(z, b + 24);

	if (prev != 0)
		*U64(z, prev + 16) = next;
	else
		h->fl[c] = next;
	if (next != 0)
		*U64(z, next + 24) = prev;
	if (h->fl[c] == 0)
		h->fl_map &= ~((uint64_t)1 << c);
}

/* A block of exactly `need` bytes (16-aligned, >= BMIN), or 0. */
static uint64_t
blk_alloc(struct cache_zone *z, uint64_t need)
{
	struct zhdr *h = z->h;
	unsigned c = cls_of(need);
	uint64_t b, sz, mask;
	int n;

	for (b = h->fl[c], n = 0; b != 0 && n < FL_SCAN;
	    b = *U64(z, b + 16), n++)
		if (blk_size(z, b) >= need)
			goto found;
	mask = c >= 63 ? 0 : h->fl_map & ~(((uint64_t)2 << c) - 1);
	if (mask == 0)
		return (0);
	b = h->fl[__builtin_ctzll(mask)];
found:
	fl_remove(z, b);
	sz = blk_size(z, b);
	if (sz - need >= BMIN) {
		blk_set(z, b + need, sz - need, 0);
		fl_push(z, b + need);
		sz = need;
	}
	blk_set(z, b, sz, B_USED);
	return (b);
}

static void
blk_free(struct cache_zone *z, uint64_t b)
{
	struct zhdr *h = z->h;
	uint64_t sz = blk_size(z, b), n, lf;

	n = b + sz;
	if (n < h->dend && !blk_used(z, n)) {
		fl_remove(z, n);
		sz += blk_size(z, n);
	}
	if (b > h->dbeg) {
		lf = *U64(z, b - BFTR);
		if ((lf & B_USED) == 0) {
			b -= lf & B_MASK;
			fl_remove(z, b);
			sz += lf & B_MASK;
		}
	}
	blk_set(z, b, sz, 0);
	fl_push(z, b);
}

/*--------------------------------------------------------------------
 * Entries.  Caller holds the lock.
 */

static bool
ent_match(const struct cache_zone *z, uint64_t e, uint64_t hash,
    const char *key, size_t klen)
{
	const struct ent *ep = ENT(z, e);

	return (ep->hash == hash && ep->klen == klen && (klen == 0 ||
	    memcmp(zp(z, tl_off(e, ep->ntags)), key, klen) == 0));
}

static uint64_t
ent_find(const struct cache_zone *z, uint64_t hash, const char *key,
    size_t klen)
{
	uint64_t e;

	for (e = BUCKETS(z)[hash & (z->h->nbuckets - 1)]; e != 0;
	    e = ENT(z, e)->hnext)
		if (ent_match(z, e, hash, key, klen))
			return (e);
	return (0);
}

static void
lru_remove(struct cache_zone *z, uint64_t e)
{
	struct ent *ep = ENT(z, e);

	if (ep->lprev != 0)
		ENT(z, ep->lprev)->lnext = ep->lnext;
	else
		z->h->lru_head = ep->lnext;
	if (ep->lnext != 0)
		ENT(z, ep->lnext)->lprev = ep->lprev;
	else
		z->h->lru_tail = ep->lprev;
	ep->lprev = ep->lnext = 0;
}

static void
lru_push_head(struct cache_zone *z, uint64_t e)
{
	struct ent *ep = ENT(z, e);

	ep->lprev = 0;
	ep->lnext = z->h->lru_head;
	if (ep->lnext != 0)
		ENT(z, ep->lnext)->lprev = e;
	else
		z->h->lru_tail = e;
	z->h->lru_head = e;
}

static void
lru_push_tail(struct cache_zone *z, uint64_t e)
{
	struct ent *ep = ENT(z, e);

	ep->lnext = 0;
	ep->lprev = z->h->lru_tail;
	if (ep->lprev != 0)
		ENT(z, ep->lprev)->lnext = e;
	else
		z->h->lru_head = e;
	z->h->lru_tail = e;
}

/* Into the hash chain, the LRU (head or tail) and the tag chains. */
static void
ent_link(struct cache_zone *z, uint64_t e, bool at_head)
{
	struct ent *ep = ENT(z, e);
	uint64_t *bk = &BUCKETS(z)[ep->hash & (z->h->nbuckets - 1)];
	uint64_t t, *tb;
	struct tlink *tl;
	unsigned i;

	ep->hnext = *bk;
	*bk = e;
	if (at_head)
		lru_push_head(z, e);
	else
		lru_push_tail(z, e);
	for (i = 0; i < ep->ntags; i++) {
		t = tl_off(e, i);
		tl = TL(z, t);
		tb = &TAGB(z)[tl->hash & (z->h->ntagb - 1)];
		tl->prev = 0;
		tl->next = *tb;
		if (tl->next != 0)
			TL(z, tl->next)->prev = t;
		*tb = t;
	}
	ep->flags |= E_LINKED;
	z->h->entries++;
}

static void
ent_free(struct cache_zone *z, uint64_t e)
{
	uint64_t b = e - BHDR;

	ENT(z, e)->magic = 0;
	z->h->bytes -= blk_size(z, b);
	blk_free(z, b);
}

/*
 * Out of every index; freed now unless referenced (then by the last
 * release()).
 */
static void
ent_unlink(struct cache_zone *z, uint64_t e)
{
	struct ent *ep = ENT(z, e);
	uint64_t *pp, t;
	struct tlink *tl;
	unsigned i;

	assert_always(ep->flags & E_LINKED);
	for (pp = &BUCKETS(z)[ep->hash & (z->h->nbuckets - 1)]; *pp != e;
	    pp = &ENT(z, *pp)->hnext)
		AN(*pp);
	*pp = ep->hnext;
	ep->hnext = 0;
	lru_remove(z, e);
	for (i = 0; i < ep->ntags; i++) {
		t = tl_off(e, i);
		tl = TL(z, t);
		if (tl->prev != 0)
			TL(z, tl->prev)->next = tl->next;
		else
			TAGB(z)[tl->hash & (z->h->ntagb - 1)] = tl->next;
		if (tl->next != 0)
			TL(z, tl->next)->prev = tl->prev;
		tl->next = tl->prev = 0;
	}
	ep->flags &= ~E_LINKED;
	z->h->entries--;
	if (ep->refcnt == 0)
		ent_free(z, e);
}

/*--------------------------------------------------------------------
 * Formatting, recovery
 */

/* Empty indexes, one free block, no locks: a fresh cache. */
static void
zone_wipe(struct cache_zone *z)
{
	struct zhdr *h = z->h;

	memset(BUCKETS(z), 0, h->nbuckets * sizeof(uint64_t));
	memset(TAGB(z), 0, h->ntagb * sizeof(uint64_t));
	memset(LSLOTS(z), 0, h->nlocks * sizeof(struct lslot));
	memset(h->fl, 0, sizeof h->fl);
	h->fl_map = 0;
	h->lru_head = h->lru_tail = 0;
	h->entries = h->bytes = 0;
	h->epoch++;
	blk_set(z, h->dbeg, h->dend - h->dbeg, 0);
	fl_push(z, h->dbeg);
}

/* Does the block walk tile the data area with sane boundary tags? */
static bool
zone_blocks_sane(const struct cache_zone *z)
{
	const struct zhdr *h = z->h;
	uint64_t b, sz;

	for (b = h->dbeg; b < h->dend; b += sz) {
		sz = blk_size(z, b);
		if (sz < BMIN || sz > h->dend - b ||
		    *U64(z, b) != *U64(z, b + sz - BFTR))
			return (false);
	}
	return (b == h->dend);
}

/* Is the used block at b a complete entry (all of it written)? */
static bool
ent_sane(const struct cache_zone *z, uint64_t b)
{
	uint64_t e = b + BHDR, room = blk_size(z, b) - BHDR - BFTR, need;
	const struct ent *ep = ENT(z, e);
	const struct tlink *tl;
	unsigned i;

	if (room < sizeof *ep || ep->magic != ENT_MAGIC)
		return (false);
	room -= sizeof *ep;
	if (ep->ntags > room / sizeof *tl || ep->klen > room ||
	    ep->hlen > room || ep->blen > room || ep->tbytes > room)
		return (false);
	need = (uint64_t)ep->ntags * sizeof *tl + ep->klen + ep->hlen +
	    ep->blen + ep->tbytes;
	if (need > room)
		return (false);
	need += sizeof *ep;
	for (i = 0; i < ep->ntags; i++) {
		tl = TL(z, tl_off(e, i));
		if (tl->off > need || tl->len > need - tl->off ||
		    tl->owner != e)
			return (false);
	}
	return (ep->hash == XXH3_64bits(zp(z, tl_off(e, ep->ntags)),
	    ep->klen));
}

/*
 * A process died holding the lock.  Rebuild every index from the blocks,
 * or wipe if the blocks themselves are damaged.  Lock held.
 */
static void
zone_recover(struct cache_zone *z)
{
	struct zhdr *h = z->h;
	uint64_t b, sz, e, run, next;
	struct ent *ep;
	bool keep;

	h->recoveries++;
	if (!zone_blocks_sane(z)) {
		zone_wipe(z);
		log_warn("cache: a process died holding the zone lock; "
		    "allocator damaged, cache wiped");
		return;
	}
	memset(BUCKETS(z), 0, h->nbuckets * sizeof(uint64_t));
	memset(TAGB(z), 0, h->ntagb * sizeof(uint64_t));
	memset(LSLOTS(z), 0, h->nlocks * sizeof(struct lslot));
	memset(h->fl, 0, sizeof h->fl);
	h->fl_map = 0;
	h->lru_head = h->lru_tail = 0;
	h->entries = h->bytes = 0;
	run = 0;
	for (b = h->dbeg; b < h->dend; b = next) {
		sz = blk_size(z, b);
		next = b + sz;
		keep = false;
		if (blk_used(z, b) && ent_sane(z, b)) {
			e = b + BHDR;
			ep = ENT(z, e);
			if ((ep->flags & E_LINKED) != 0) {
				ep->flags &= ~E_LINKED;
				if (ent_find(z, ep->hash, zp(z,
				    tl_off(e, ep->ntags)), ep->klen) == 0)
					ent_link(z, e, false);
			}
			keep = (ep->flags & E_LINKED) != 0 || ep->refcnt > 0;
			if (keep)
				h->bytes += sz;
		}
		if (keep && run != 0) {
			blk_set(z, run, b - run, 0);
			fl_push(z, run);
			run = 0;
		} else if (!keep && run == 0)
			run = b;
	}
	if (run != 0) {
		blk_set(z, run, h->dend - run, 0);
		fl_push(z, run);
	}
	log_warn("cache: a process died holding the zone lock; index rebuilt "
	    "(%llu entries kept)", (unsigned long long)h->entries);
}

static int
zone_lock(struct cache_zone *z)
{
	int r;

	r = pthread_mutex_lock(&z->h->mtx);
	if (r == EOWNERDEAD) {
		zone_recover(z);
		r = pthread_mutex_consistent(&z->h->mtx);
		if (r != 0) {
			log_err("cache: pthread_mutex_consistent: %s",
			    strerror(r));
			(void)pthread_mutex_unlock(&z->h->mtx);
		}
	} else if (r != 0)
		log_err("cache: zone lock: %s", strerror(r));
	if (r != 0) {
		count_error(z->h);
		return (-1);
	}
	return (0);
}

static void
zone_unlock(struct cache_zone *z)
{
	AZ(pthread_mutex_unlock(&z->h->mtx));
}

/*--------------------------------------------------------------------
 * Zone
 */

struct cache_zone *
cache_zone_create(uint64_t size, char *err, size_t errlen)
{
	struct cache_zone *z;
	struct zhdr *h;
	pthread_mutexattr_t ma;
	uint64_t off;
	void *base;
	int r;

	size &= B_MASK;
	if (size < ZONE_MIN || size > SIZE_MAX / 2) {
		snprintf(err, errlen, "cache zone size must be between %u "
		    "bytes and %zu bytes", ZONE_MIN, (size_t)(SIZE_MAX / 2));
		return (NULL);
	}
	z = calloc(1, sizeof *z);
	if (z == NULL) {
		snprintf(err, errlen, "out of memory");
		return (NULL);
	}
	base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		snprintf(err, errlen, "mmap of %llu bytes: %s",
		    (unsigned long long)size, strerror(errno));
		free(z);
		return (NULL);
	}
	z->magic = CACHE_ZONE_MAGIC;
	z->base = base;
	z->size = size;
	z->h = h = base;
	h->magic = ZONE_MAGIC;
	h->version = ZONE_VERSION;
	h->size = size;
	h->nbuckets = pow2_at_least(size / 2048);
	if (h->nbuckets < 64)
		h->nbuckets = 64;
	h->ntagb = h->nbuckets / 4 < 64 ? 64 : h->nbuckets / 4;
	h->nlocks = h->nbuckets / 16;
	if (h->nlocks < 64)
		h->nlocks = 64;
	if (h->nlocks > 65536)
		h->nlocks = 65536;
	off = round16(sizeof *h);
	h->buckets = off;
	off += round16(h->nbuckets * sizeof(uint64_t));
	h->tagb = off;
	off += round16(h->ntagb * sizeof(uint64_t));
	h->locks = off;
	off += round16(h->nlocks * sizeof(struct lslot));
	h->dbeg = off;
	h->dend = size;
	assert_always(h->dend > h->dbeg && h->dend - h->dbeg >= size / 2);

	r = pthread_mutexattr_init(&ma);
	if (r == 0)
		r = pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	if (r == 0)
		r = pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	if (r == 0)
		r = pthread_mutex_init(&h->mtx, &ma);
	(void)pthread_mutexattr_destroy(&ma);
	if (r != 0) {
		snprintf(err, errlen, "cache zone mutex: %s", strerror(r));
		(void)munmap(base, (size_t)size);
		free(z);
		return (NULL);
	}
	zone_wipe(z);
	return (z);
}

void
cache_zone_destroy(struct cache_zone *z)
{
	if (z == NULL)
		return;
	CHECK_OBJ(z, CACHE_ZONE_MAGIC);
	(void)pthread_mutex_destroy(&z->h->mtx);
	AZ(munmap(z->base, (size_t)z->size));
	z->magic = 0;
	free(z);
}

uint64_t
cache_zone_size(const struct cache_zone *z)
{
	CHECK_OBJ_NOTNULL(z, CACHE_ZONE_MAGIC);
	return (z->size);
}

/*--------------------------------------------------------------------
 * Store operations
 */

static struct mstore *
mstore_of(struct cache_store *s)
{
	struct mstore *m;

	AN(s);
	m = s->priv;
	CHECK_OBJ_NOTNULL(m, MSTORE_MAGIC);
	return (m);
}

static struct mobj *
mobj_get(struct mstore *m)
{
	struct mobj *mo = m->free;

	if (mo != NULL)
		m->free = mo->next;
	else
		mo = malloc(sizeof *mo);
	return (mo);
}

static void
mobj_put(struct mstore *m, struct mobj *mo)
{
	mo->next = m->free;
	m->free = mo;
}

static void
m_get(struct cache_store *s, const char *key, size_t klen, uint64_t now,
    cache_get_cb *cb, void *arg)
{
	struct mstore *m = mstore_of(s);
	struct cache_zone *z = m->z;
	struct mobj *mo;
	struct ent *ep;
	uint64_t hash, e, p;

	AN(cb);
	mo = mobj_get(m);
	if (mo == NULL) {
		count_error(z->h);
		cb(arg, CACHE_ERROR, NULL);
		return;
	}
	hash = XXH3_64bits(key, klen);
	if (zone_lock(z) != 0) {
		mobj_put(m, mo);
		cb(arg, CACHE_ERROR, NULL);
		return;
	}
	e = ent_find(z, hash, key, klen);
	if (e != 0 && now >= ENT(z, e)->expires) {
		ent_unlink(z, e);
		e = 0;
	}
	if (e != 0) {
		ep = ENT(z, e);
		lru_remove(z, e);
		lru_push_head(z, e);
		ep->refcnt++;
		p = tl_off(e, ep->ntags) + ep->klen + ep->tbytes;
		mo->obj.status = ep->status;
		mo->obj.stored_at = ep->stored_at;
		mo->obj.ttl = ep->ttl;
		mo->obj.swr = ep->swr;
		mo->obj.sie = ep->sie;
		mo->obj.headers = zp(z, p);
		mo->obj.headers_len = (size_t)ep->hlen;
		mo->obj.body = zp(z, p + ep->hlen);
		mo->obj.body_len = (size_t)ep->blen;
		mo->obj.priv = mo;
		mo->off = e;
		mo->epoch = z->h->epoch;
	}
	zone_unlock(z);
	if (e == 0) {
		mobj_put(m, mo);
		cb(arg, CACHE_MISS, NULL);
	} else
		cb(arg, CACHE_OK, &mo->obj);
}

static void
m_release(struct cache_store *s, struct cache_obj *obj)
{
	struct mstore *m = mstore_of(s);
	struct cache_zone *z = m->z;
	struct mobj *mo;
	struct ent *ep;

	AN(obj);
	mo = obj->priv;
	AN(mo);
	assert_always(&mo->obj == obj);
	if (zone_lock(z) == 0) {
		if (mo->epoch == z->h->epoch) {
			ep = ENT(z, mo->off);
			if (ep->magic == ENT_MAGIC && ep->refcnt > 0) {
				if (--ep->refcnt == 0 &&
				    (ep->flags & E_LINKED) == 0)
					ent_free(z, mo->off);
			} else {
				count_error(z->h);
				log_err("cache: release of a bad entry");
			}
		}
		zone_unlock(z);
	}
	memset(&mo->obj, 0, sizeof mo->obj);
	mobj_put(m, mo);
}

/*
 * Block size for an entry (0 when over `limit`); *tbytes = tag bytes,
 * *ntags = non-empty tags.
 */
static uint64_t
put_size(const struct cache_put *p, size_t klen, uint64_t limit,
    uint64_t *tbytes, unsigned *ntags)
{
	uint64_t t, tb = 0;
	unsigned i, n = 0;

	t = BHDR + sizeof(struct ent) + BFTR;
#define ADD(v) do {                                                     \
	if ((uint64_t)(v) > limit || t + (uint64_t)(v) > limit)         \
		return (0);                                             \
	t += (uint64_t)(v);                                             \
} while (0)
	ADD(klen);
	if (klen > UINT32_MAX || p->ntags > limit)
		return (0);
	ADD(p->headers_len);
	for (i = 0; i < p->nbody; i++)
		ADD(p->body[i].iov_len);
	for (i = 0; i < p->ntags; i++) {
		if (p->tags[i].iov_len == 0)
			continue;
		ADD(p->tags[i].iov_len);
		ADD(sizeof(struct tlink));
		tb += p->tags[i].iov_len;
		n++;
	}
#undef ADD
	t = round16(t);
	if (t > limit)
		return (0);
	*tbytes = tb;
	*ntags = n;
	return (t < BMIN ? BMIN : t);
}

/* Write the entry into the block at b.  Lock held. */
static uint64_t
ent_fill(struct cache_zone *z, uint64_t b, uint64_t hash, const char *key,
    size_t klen, const struct cache_put *p, uint64_t tbytes, unsigned ntags)
{
	uint64_t e = b + BHDR, o;
	struct ent *ep = ENT(z, e);
	struct tlink *tl;
	unsigned i, n;

	memset(ep, 0, sizeof *ep);
	ep->ntags = ntags;
	ep->hash = hash;
	ep->stored_at = p->stored_at;
	ep->ttl = p->ttl;
	ep->swr = p->swr;
	ep->sie = p->sie;
	ep->expires = expires_of(p->stored_at, p->ttl, p->swr, p->sie);
	ep->status = p->status;
	ep->klen = (uint32_t)klen;
	ep->hlen = p->headers_len;
	ep->tbytes = tbytes;
	o = tl_off(e, ntags);
	if (klen > 0)
		memcpy(zp(z, o), key, klen);
	o += klen;
	for (i = n = 0; i < p->ntags; i++) {
		if (p->tags[i].iov_len == 0)
			continue;
		tl = TL(z, tl_off(e, n++));
		memset(tl, 0, sizeof *tl);
		tl->owner = e;
		tl->hash = XXH3_64bits(p->tags[i].iov_base, p->tags[i].iov_len);
		tl->off = o - e;
		tl->len = p->tags[i].iov_len;
		memcpy(zp(z, o), p->tags[i].iov_base, p->tags[i].iov_len);
		o += p->tags[i].iov_len;
	}
	if (p->headers_len > 0)
		memcpy(zp(z, o), p->headers, p->headers_len);
	o += p->headers_len;
	for (i = 0; i < p->nbody; i++) {
		if (p->body[i].iov_len == 0)
			continue;
		memcpy(zp(z, o), p->body[i].iov_base, p->body[i].iov_len);
		o += p->body[i].iov_len;
		ep->blen += p->body[i].iov_len;
	}
	ep->magic = ENT_MAGIC;
	return (e);
}

static void
m_put(struct cache_store *s, const char *key, size_t klen,
    const struct cache_put *p, bool add, cache_done_cb *cb, void *arg)
{
	struct mstore *m = mstore_of(s);
	struct cache_zone *z = m->z;
	struct zhdr *h = z->h;
	enum cache_rc rc = CACHE_OK;
	uint64_t need, hash, tbytes = 0, e, b;
	unsigned ntags = 0;

	AN(p);
	need = put_size(p, klen, (h->dend - h->dbeg) / 2, &tbytes, &ntags);
	if (need == 0) {
		if (cb != NULL)
			cb(arg, CACHE_TOO_BIG, 0);
		return;
	}
	hash = XXH3_64bits(key, klen);
	if (zone_lock(z) != 0) {
		if (cb != NULL)
			cb(arg, CACHE_ERROR, 0);
		return;
	}
	e = ent_find(z, hash, key, klen);
	if (e != 0 && add && p->stored_at < ENT(z, e)->expires)
		rc = CACHE_EXISTS;
	else {
		if (e != 0)
			ent_unlink(z, e);
		while ((b = blk_alloc(z, need)) == 0 && h->lru_tail != 0) {
			ent_unlink(z, h->lru_tail);
			h->evictions++;
		}
		if (b == 0) {
			/* Everything left is pinned by references. */
			rc = CACHE_ERROR;
			count_error(h);
		} else {
			h->bytes += blk_size(z, b);
			e = ent_fill(z, b, hash, key, klen, p, tbytes, ntags);
			ent_link(z, e, true);
		}
	}
	zone_unlock(z);
	if (cb != NULL)
		cb(arg, rc, 0);
}

static void
m_set(struct cache_store *s, const char *key, size_t klen,
    const struct cache_put *p, cache_done_cb *cb, void *arg)
{
	m_put(s, key, klen, p, false, cb, arg);
}

/* add: "live" is judged at p->stored_at (the caller's now). */
static void
m_add(struct cache_store *s, const char *key, size_t klen,
    const struct cache_put *p, cache_done_cb *cb, void *arg)
{
	m_put(s, key, klen, p, true, cb, arg);
}

/* OK when an entry was there (even one past its expiry, not yet reaped). */
static void
m_del(struct cache_store *s, const char *key, size_t klen,
    cache_done_cb *cb, void *arg)
{
	struct mstore *m = mstore_of(s);
	struct cache_zone *z = m->z;
	enum cache_rc rc;
	uint64_t hash, e;

	hash = XXH3_64bits(key, klen);
	if (zone_lock(z) != 0)
		rc = CACHE_ERROR;
	else {
		e = ent_find(z, hash, key, klen);
		if (e != 0)
			ent_unlink(z, e);
		zone_unlock(z);
		rc = e != 0 ? CACHE_OK : CACHE_MISS;
	}
	if (cb != NULL)
		cb(arg, rc, 0);
}

static void
m_exists(struct cache_store *s, const char *key, size_t klen, uint64_t now,
    cache_done_cb *cb, void *arg)
{
	struct mstore *m = mstore_of(s);
	struct cache_zone *z = m->z;
	enum cache_rc rc;
	uint64_t hash, e;

	AN(cb);
	hash = XXH3_64bits(key, klen);
	if (zone_lock(z) != 0)
		rc = CACHE_ERROR;
	else {
		e = ent_find(z, hash, key, klen);
		if (e != 0 && now >= ENT(z, e)->expires) {
			ent_unlink(z, e);
			e = 0;
		}
		zone_unlock(z);
		rc = e != 0 ? CACHE_OK : CACHE_MISS;
	}
	cb(arg, rc, 0);
}

/* Every entry of the zone (the zone serves one namespace). */
static void
m_clear(struct cache_store *s, cache_done_cb *cb, void *arg)
{
	struct mstore *m = mstore_of(s);
	struct cache_zone *z = m->z;
	uint64_t n = 0;

	if (zone_lock(z) != 0) {
		if (cb != NULL)
			cb(arg, CACHE_ERROR, 0);
		return;
	}
	while (z->h->lru_head != 0) {
		ent_unlink(z, z->h->lru_head);
		n++;
	}
	zone_unlock(z);
	if (cb != NULL)
		cb(arg, CACHE_OK, n);
}

static void
m_purge_tag(struct cache_store *s, const char *tag, size_t tlen,
    cache_done_cb *cb, void *arg)
{
	struct mstore *m = mstore_of(s);
	struct cache_zone *z = m->z;
	struct tlink *tl;
	uint64_t hash, t, nx, owner, n = 0;

	hash = XXH3_64bits(tag, tlen);
	if (zone_lock(z) != 0) {
		if (cb != NULL)
			cb(arg, CACHE_ERROR, 0);
		return;
	}
	t = tlen == 0 ? 0 : TAGB(z)[hash & (z->h->ntagb - 1)];
	while (t != 0) {
		tl = TL(z, t);
		if (tl->hash != hash || tl->len != tlen ||
		    memcmp(zp(z, tl->owner + tl->off), tag, tlen) != 0) {
			t = tl->next;
			continue;
		}
		/* Unlinking the owner drops all its tlinks: skip them. */
		owner = tl->owner;
		for (nx = tl->next; nx != 0 && TL(z, nx)->owner == owner;
		    nx = TL(z, nx)->next)
			continue;
		ent_unlink(z, owner);
		n++;
		t = nx;
	}
	zone_unlock(z);
	if (cb != NULL)
		cb(arg, CACHE_OK, n);
}

/*
 * Stampede locks live in 8-way sets keyed by XXH3(key); the 64-bit hash
 * stands for the key (a collision would make two keys share a lock: one
 * extra wait, no wrong data).  No free slot in the set: CACHE_ERROR (the
 * caller fetches without the lock).
 */
static void
m_lock(struct cache_store *s, const char *key, size_t klen, uint64_t lease,
    uint64_t now, cache_done_cb *cb, void *arg)
{
	struct mstore *m = mstore_of(s);
	struct cache_zone *z = m->z;
	struct lslot *set, *ls, *fr = NULL;
	enum cache_rc rc = CACHE_OK;
	uint64_t hash, seed, token = 0;
	unsigned i;

	AN(cb);
	hash = XXH3_64bits(key, klen);
	if (zone_lock(z) != 0) {
		cb(arg, CACHE_ERROR, 0);
		return;
	}
	set = LSLOTS(z) + ((hash & (z->h->nlocks - 1)) & ~(uint64_t)(LOCK_WAYS - 1));
	for (i = 0; i < LOCK_WAYS; i++) {
		ls = &set[i];
		if (ls->token != 0 && ls->hash == hash) {
			if (now < ls->expiry)
				rc = CACHE_LOCKED;
			fr = ls;
			break;
		}
		if (fr == NULL && (ls->token == 0 || now >= ls->expiry))
			fr = ls;
	}
	if (rc == CACHE_OK && fr == NULL) {
		rc = CACHE_ERROR;
		count_error(z->h);
	} else if (rc == CACHE_OK) {
		seed = (uint64_t)getpid() ^ now;
		z->h->token_seq++;
		token = XXH3_64bits_withSeed(&z->h->token_seq,
		    sizeof z->h->token_seq, seed);
		if (token == 0)
			token = 1;
		fr->hash = hash;
		fr->token = token;
		fr->expiry = sat_add(now, lease);
	}
	zone_unlock(z);
	cb(arg, rc, token);
}

static void
m_unlock(struct cache_store *s, const char *key, size_t klen, uint64_t token)
{
	struct mstore *m = mstore_of(s);
	struct cache_zone *z = m->z;
	struct lslot *set;
	uint64_t hash;
	unsigned i;

	if (token == 0)
		return;
	hash = XXH3_64bits(key, klen);
	if (zone_lock(z) != 0)
		return;
	set = LSLOTS(z) + ((hash & (z->h->nlocks - 1)) & ~(uint64_t)(LOCK_WAYS - 1));
	for (i = 0; i < LOCK_WAYS; i++)
		if (set[i].hash == hash && set[i].token == token) {
			memset(&set[i], 0, sizeof set[i]);
			break;
		}
	zone_unlock(z);
}

static void
m_stats(struct cache_store *s, struct cache_stats *out)
{
	struct mstore *m = mstore_of(s);
	struct cache_zone *z = m->z;
	struct zhdr *h = z->h;
	bool locked;

	AN(out);
	locked = zone_lock(z) == 0;
	out->entries = h->entries;
	out->bytes = h->bytes;
	out->capacity = h->dend - h->dbeg;
	out->evictions = h->evictions;
	out->errors = __atomic_load_n(&h->errors, __ATOMIC_RELAXED);
	if (locked)
		zone_unlock(z);
}

static const struct cache_ops memory_ops = {
	.name = "memory",
	.get = m_get,
	.release = m_release,
	.set = m_set,
	.add = m_add,
	.del = m_del,
	.exists = m_exists,
	.clear = m_clear,
	.purge_tag = m_purge_tag,
	.lock = m_lock,
	.unlock = m_unlock,
	.stats = m_stats,
};

struct cache_store *
cache_memory_store(struct cache_zone *z)
{
	struct mstore *m;

	CHECK_OBJ_NOTNULL(z, CACHE_ZONE_MAGIC);
	m = calloc(1, sizeof *m);
	if (m == NULL)
		return (NULL);
	m->magic = MSTORE_MAGIC;
	m->z = z;
	m->store.ops = &memory_ops;
	m->store.priv = m;
	return (&m->store);
}

/* Objects still held are the caller's bug; their mobjs are not freed. */
void
cache_memory_store_free(struct cache_store *s)
{
	struct mstore *m;
	struct mobj *mo;

	if (s == NULL)
		return;
	m = mstore_of(s);
	while ((mo = m->free) != NULL) {
		m->free = mo->next;
		free(mo);
	}
	m->magic = 0;
	free(m);
}

/*--------------------------------------------------------------------
 * Test hooks (memory.h)
 */

void
cache_zone_test_lock(struct cache_zone *z, int damage)
{
	CHECK_OBJ_NOTNULL(z, CACHE_ZONE_MAGIC);
	AZ(zone_lock(z));
	if (damage == 1) {
		memset(BUCKETS(z), 0, z->h->nbuckets * sizeof(uint64_t));
		z->h->lru_head = z->h->lru_tail = 0;
	} else if (damage == 2)
		*U64(z, z->h->dbeg) = 0x13;
}

#define CHK(c) do { if (!(c)) { r = -__LINE__; goto out; } } while (0)

int
cache_zone_test_check(struct cache_zone *z)
{
	struct zhdr *h;
	const struct ent *ep;
	uint64_t b, sz, e, t, nfree = 0, nlisted = 0, bytes = 0, nlinked = 0;
	uint64_t nlru = 0, nchain = 0, prev_e;
	unsigned c, i;
	bool prev_free = false;
	int r = 0;

	CHECK_OBJ_NOTNULL(z, CACHE_ZONE_MAGIC);
	h = z->h;
	if (zone_lock(z) != 0)
		return (-__LINE__);
	CHK(h->magic == ZONE_MAGIC && h->version == ZONE_VERSION);
	CHK(zone_blocks_sane(z));
	for (b = h->dbeg; b < h->dend; b += sz) {
		sz = blk_size(z, b);
		if (!blk_used(z, b)) {
			CHK(!prev_free);        /* coalesced */
			nfree++;
			prev_free = true;
			continue;
		}
		prev_free = false;
		CHK(ent_sane(z, b));
		ep = ENT(z, b + BHDR);
		CHK((ep->flags & E_LINKED) != 0 || ep->refcnt > 0);
		bytes += sz;
		if (ep->flags & E_LINKED)
			nlinked++;
	}
	CHK(bytes == h->bytes);
	CHK(nlinked == h->entries);
	for (c = 0; c < NCLASS; c++) {
		CHK(((h->fl_map >> c) & 1) == (h->fl[c] != 0));
		for (t = h->fl[c], prev_e = 0; t != 0; t = *U64(z, t + 16)) {
			CHK(!blk_used(z, t) && cls_of(blk_size(z, t)) == c);
			CHK(*U64(z, t + 24) == prev_e);
			prev_e = t;
			nlisted++;
		}
	}
	CHK(nlisted == nfree);
	for (e = h->lru_head, prev_e = 0; e != 0; e = ENT(z, e)->lnext) {
		CHK(ENT(z, e)->lprev == prev_e);
		CHK(ENT(z, e)->flags & E_LINKED);
		prev_e = e;
		nlru++;
	}
	CHK(prev_e == h->lru_tail && nlru == h->entries);
	for (i = 0; i < h->nbuckets; i++)
		for (e = BUCKETS(z)[i]; e != 0; e = ENT(z, e)->hnext) {
			CHK((ENT(z, e)->hash & (h->nbuckets - 1)) == i);
			CHK(ENT(z, e)->flags & E_LINKED);
			nchain++;
		}
	CHK(nchain == h->entries);
	for (i = 0; i < h->ntagb; i++)
		for (t = TAGB(z)[i], prev_e = 0; t != 0; t = TL(z, t)->next) {
			CHK(TL(z, t)->prev == prev_e);
			CHK((TL(z, t)->hash & (h->ntagb - 1)) == i);
			CHK(ENT(z, TL(z, t)->owner)->flags & E_LINKED);
			prev_e = t;
		}
out:
	zone_unlock(z);
	return (r);
}
