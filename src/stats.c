/*
 * stats.c -- counters in shared memory, aggregated across workers; see
 * stats.h.
 *
 * The zone is one anonymous MAP_SHARED mapping made by the master before
 * it forks, so every process sees it at the same address.  It holds no
 * pointers (habit 9): global counters, per-status counters and a fixed
 * table of named slots, all addressed by index.
 *
 * Counters are updated with relaxed atomics: readers want totals, not a
 * consistent snapshot across counters.  Creating a slot takes the zone's
 * process-shared robust mutex; finding one does not.  A slot is published
 * by a release store of its `used` flag after its kind and name are
 * written, and never unpublished, so a reader that sees used = 1 (acquire)
 * sees a complete name.  A process that dies while holding the mutex
 * leaves at most an unpublished slot, which the next creator overwrites.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "stats.h"
#include "vas.h"

#define STATS_MAGIC     0x57a75000u
#define STATUS_MIN      100
#define STATUS_MAX      599
#define NSTATUS         (STATUS_MAX - STATUS_MIN + 1)

struct stats_slot_rec {
	uint32_t         used;          /* 0, or 1 once published */
	uint32_t         kind;          /* enum stats_slot_kind */
	char             name[STATS_NAME_MAX];
	int64_t          v[SLOT__MAX];
};

/*
 * A worker's share of the gauges, so that the master can take back what a
 * worker that died (or was killed past shutdown_timeout) still held: its
 * open connections and tunnels.  The master claims a row before fork and
 * releases it when it reaps the worker; only that worker writes the row.
 */
#define NROWGAUGES      2               /* entries of gauge[] */

struct stats_row {
	uint32_t         used;          /* master only */
	int64_t          g[NROWGAUGES];
	int64_t          slot_tunnels[STATS_MAX_SLOTS];  /* SLOT_WS_TUNNELS */
};

struct stats_zone {
	unsigned                 magic;
	uint32_t                 nslots;        /* slots [0, nslots) were ever claimed */
	uint64_t                 started_at;    /* epoch seconds */
	size_t                   size;          /* of the mapping */
	pthread_mutex_t          mtx;           /* slot creation */
	uint64_t                 g[STAT__MAX];
	uint64_t                 status[NSTATUS];
	struct stats_slot_rec    slot[STATS_MAX_SLOTS];
	struct stats_row         row[STATS_ROWS];
};

static struct stats_zone *Z;
static int Row = -1;                    /* this worker's row, or -1 */

/* The gauges: counters that go down as well as up.  A row's g[k] is the
 * worker's share of gauge[k]. */
static const enum stats_id gauge[NROWGAUGES] = {
	STAT_CONNECTIONS, STAT_WS_TUNNELS
};

/* The index of id in gauge[], or -1 when id is a counter. */
static int
gauge_index(enum stats_id id)
{
	for (int k = 0; k < NROWGAUGES; k++)
		if (gauge[k] == id)
			return (k);
	return (-1);
}

static bool
is_gauge(enum stats_id id)
{
	return (gauge_index(id) >= 0);
}

struct stats_zone *
stats_zone_create(char *err, size_t errlen)
{
	struct stats_zone *z;
	pthread_mutexattr_t ma;
	struct timespec ts;
	size_t sz = sizeof *z;
	int e;

	z = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	if (z == MAP_FAILED) {
		snprintf(err, errlen, "stats zone: mmap(%zu): %s", sz,
		    strerror(errno));
		return (NULL);
	}
	/* An anonymous mapping is zero-filled: every counter starts at 0. */
	if ((e = pthread_mutexattr_init(&ma)) != 0 ||
	    (e = pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED)) != 0 ||
	    (e = pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST)) != 0 ||
	    (e = pthread_mutex_init(&z->mtx, &ma)) != 0) {
		snprintf(err, errlen, "stats zone: mutex: %s", strerror(e));
		(void)munmap(z, sz);
		return (NULL);
	}
	(void)pthread_mutexattr_destroy(&ma);
	AZ(clock_gettime(CLOCK_REALTIME, &ts));
	z->started_at = (uint64_t)ts.tv_sec;
	z->size = sz;
	z->magic = STATS_MAGIC;
	return (z);
}

void
stats_zone_destroy(struct stats_zone *z)
{
	if (z == NULL)
		return;
	CHECK_OBJ(z, STATS_MAGIC);
	if (Z == z) {
		Z = NULL;
		Row = -1;
	}
	(void)pthread_mutex_destroy(&z->mtx);
	z->magic = 0;
	AZ(munmap(z, z->size));
}

void
stats_attach(struct stats_zone *z)
{
	if (z != NULL)
		CHECK_OBJ(z, STATS_MAGIC);
	Z = z;
	Row = -1;
}

void
stats_add(enum stats_id id, int64_t v)
{
	int k;

	if (Z == NULL || (unsigned)id >= STAT__MAX)
		return;
	/* Unsigned wrap-around makes a negative v a subtraction. */
	(void)__atomic_fetch_add(&Z->g[id], (uint64_t)v, __ATOMIC_RELAXED);
	if (Row >= 0 && (k = gauge_index(id)) >= 0)
		(void)__atomic_fetch_add(&Z->row[Row].g[k], v,
		    __ATOMIC_RELAXED);
}

int
stats_row_claim(void)
{
	if (Z == NULL)
		return (-1);
	for (int i = 0; i < STATS_ROWS; i++)
		if (!Z->row[i].used) {
			Z->row[i].used = 1;
			return (i);
		}
	return (-1);
}

void
stats_row_use(int row)
{
	Row = Z != NULL && row >= 0 && row < STATS_ROWS ? row : -1;
}

void
stats_row_release(int row)
{
	struct stats_row *r;

	if (Z == NULL || row < 0 || row >= STATS_ROWS || !Z->row[row].used)
		return;
	r = &Z->row[row];
	for (unsigned k = 0; k < NROWGAUGES; k++) {
		int64_t v = __atomic_exchange_n(&r->g[k], 0, __ATOMIC_RELAXED);

		if (v != 0)
			(void)__atomic_fetch_sub(&Z->g[gauge[k]], (uint64_t)v,
			    __ATOMIC_RELAXED);
	}
	for (unsigned i = 0; i < STATS_MAX_SLOTS; i++) {
		int64_t v;

		if (r->slot_tunnels[i] == 0)
			continue;
		v = __atomic_exchange_n(&r->slot_tunnels[i], 0,
		    __ATOMIC_RELAXED);
		(void)__atomic_fetch_sub(&Z->slot[i].v[SLOT_WS_TUNNELS], v,
		    __ATOMIC_RELAXED);
	}
	r->used = 0;
}

void
stats_status(int status)
{
	if (Z == NULL)
		return;
	(void)__atomic_fetch_add(&Z->g[STAT_REQUESTS], 1, __ATOMIC_RELAXED);
	if (status >= STATUS_MIN && status <= STATUS_MAX)
		(void)__atomic_fetch_add(&Z->status[status - STATUS_MIN], 1,
		    __ATOMIC_RELAXED);
}

static bool
slot_match(const struct stats_slot_rec *s, enum stats_slot_kind kind,
    const char *name)
{
	return (__atomic_load_n(&s->used, __ATOMIC_ACQUIRE) != 0 &&
	    s->kind == (uint32_t)kind && strcmp(s->name, name) == 0);
}

static int
slot_scan(enum stats_slot_kind kind, const char *name)
{
	uint32_t n = __atomic_load_n(&Z->nslots, __ATOMIC_ACQUIRE);

	for (uint32_t i = 0; i < n && i < STATS_MAX_SLOTS; i++)
		if (slot_match(&Z->slot[i], kind, name))
			return ((int)i);
	return (-1);
}

int
stats_slot_find(enum stats_slot_kind kind, const char *name)
{
	if (Z == NULL || name == NULL)
		return (-1);
	return (slot_scan(kind, name));
}

int
stats_slot(enum stats_slot_kind kind, const char *name)
{
	struct stats_slot_rec *s;
	size_t len;
	uint32_t n;
	int i, e;

	if (Z == NULL || name == NULL)
		return (-1);
	len = strlen(name);
	if (len >= STATS_NAME_MAX)
		return (-1);
	if ((i = slot_scan(kind, name)) >= 0)
		return (i);

	e = pthread_mutex_lock(&Z->mtx);
	if (e == EOWNERDEAD)
		/* The dead holder left at most an unpublished slot. */
		AZ(pthread_mutex_consistent(&Z->mtx));
	else
		AZ(e);
	/* Somebody may have created it since the first scan. */
	if ((i = slot_scan(kind, name)) < 0) {
		n = Z->nslots;
		/* Reuse a claimed but unpublished slot (its creator died). */
		if (n > 0 && !__atomic_load_n(&Z->slot[n - 1].used,
		    __ATOMIC_ACQUIRE))
			n--;
		if (n < STATS_MAX_SLOTS) {
			s = &Z->slot[n];
			/* Claim first so a crash here is seen as above. */
			__atomic_store_n(&Z->nslots, n + 1, __ATOMIC_RELEASE);
			memset(s->v, 0, sizeof s->v);
			s->kind = (uint32_t)kind;
			memcpy(s->name, name, len + 1);
			__atomic_store_n(&s->used, 1, __ATOMIC_RELEASE);
			i = (int)n;
		}
	}
	AZ(pthread_mutex_unlock(&Z->mtx));
	return (i);
}

static int64_t *
slot_cell(int slot, enum stats_slot_id id)
{
	if (Z == NULL || slot < 0 || slot >= STATS_MAX_SLOTS ||
	    (unsigned)id >= SLOT__MAX)
		return (NULL);
	return (&Z->slot[slot].v[id]);
}

void
stats_slot_add(int slot, enum stats_slot_id id, int64_t v)
{
	int64_t *p = slot_cell(slot, id);

	if (p == NULL)
		return;
	(void)__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
	if (Row >= 0 && id == SLOT_WS_TUNNELS)
		(void)__atomic_fetch_add(&Z->row[Row].slot_tunnels[slot], v,
		    __ATOMIC_RELAXED);
}

void
stats_slot_set(int slot, enum stats_slot_id id, int64_t v)
{
	int64_t *p = slot_cell(slot, id);

	if (p != NULL)
		__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

void
stats_slot_status(int slot, int status)
{
	stats_slot_add(slot, SLOT_REQUESTS, 1);
	if (status >= STATUS_MIN && status <= STATUS_MAX)
		stats_slot_add(slot, (enum stats_slot_id)(SLOT_1XX +
		    status / 100 - 1), 1);
}

uint64_t
stats_get(enum stats_id id)
{
	uint64_t v;

	if (Z == NULL || (unsigned)id >= STAT__MAX)
		return (0);
	v = __atomic_load_n(&Z->g[id], __ATOMIC_RELAXED);
	/* A gauge read between another worker's -1 and its +1 ... or left
	 * behind by a dead worker: never report "negative" as 2^64-1. */
	if (is_gauge(id) && (int64_t)v < 0)
		v = 0;
	return (v);
}

uint64_t
stats_get_status(int status)
{
	if (Z == NULL || status < STATUS_MIN || status > STATUS_MAX)
		return (0);
	return (__atomic_load_n(&Z->status[status - STATUS_MIN],
	    __ATOMIC_RELAXED));
}

uint64_t
stats_get_class(int cls)
{
	uint64_t sum = 0;

	if (Z == NULL || cls < 1 || cls > 5)
		return (0);
	for (int s = cls * 100; s < cls * 100 + 100; s++)
		sum += __atomic_load_n(&Z->status[s - STATUS_MIN],
		    __ATOMIC_RELAXED);
	return (sum);
}

uint64_t
stats_started_at(void)
{
	return (Z == NULL ? 0 : Z->started_at);
}

unsigned
stats_nslots(void)
{
	uint32_t n;

	if (Z == NULL)
		return (0);
	n = __atomic_load_n(&Z->nslots, __ATOMIC_ACQUIRE);
	return (n > STATS_MAX_SLOTS ? STATS_MAX_SLOTS : n);
}

bool
stats_slot_info(unsigned i, enum stats_slot_kind *kind, const char **name)
{
	const struct stats_slot_rec *s;

	if (Z == NULL || i >= STATS_MAX_SLOTS)
		return (false);
	s = &Z->slot[i];
	if (!__atomic_load_n(&s->used, __ATOMIC_ACQUIRE))
		return (false);
	if (kind != NULL)
		*kind = (enum stats_slot_kind)s->kind;
	if (name != NULL)
		*name = s->name;
	return (true);
}

int64_t
stats_slot_get(unsigned i, enum stats_slot_id id)
{
	if (Z == NULL || i >= STATS_MAX_SLOTS || (unsigned)id >= SLOT__MAX)
		return (0);
	return (__atomic_load_n(&Z->slot[i].v[id], __ATOMIC_RELAXED));
}

static int
name2(char *buf, size_t len, const char *a, const char *b)
{
	int n;

	if (buf == NULL || len == 0 || a == NULL || b == NULL)
		return (-1);
	n = snprintf(buf, len, "%s %s", a, b);
	if (n < 0 || (size_t)n >= len || (size_t)n >= STATS_NAME_MAX) {
		buf[0] = '\0';
		return (-1);
	}
	return (n);
}

int
stats_route_name(char *buf, size_t len, const char *prefix, const char *host)
{
	return (name2(buf, len, prefix, host != NULL ? host : "*"));
}

int
stats_server_name(char *buf, size_t len, const char *upstream,
    const char *addr)
{
	return (name2(buf, len, upstream, addr));
}
