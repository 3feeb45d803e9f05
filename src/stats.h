/*
 * stats.h -- counters in shared memory, aggregated across workers.
 *
 * The master creates the zone before forking (and keeps it across
 * reloads); workers add with relaxed atomics; whoever answers the admin
 * listener reads them.  Routes and upstream servers get named slots
 * ("/api/ api.example.com", "app 127.0.0.1:8000") found or
 * created once per config generation, so their counters survive a reload.
 *
 * Every function is safe to call with no zone attached (stats_attach(NULL)
 * or never called): writes are discarded and reads return 0 / false.
 * Out-of-range ids, status codes and slots (e.g. -1 from a full table)
 * are ignored the same way, so callers need not test them.
 */
#ifndef STOA_STATS_H
#define STOA_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum stats_id {
	STAT_CONNECTIONS = 0,   /* gauge: open client connections */
	STAT_REQUESTS,          /* requests answered */
	STAT_CACHE_HIT,
	STAT_CACHE_MISS,
	STAT_CACHE_EXPIRED,
	STAT_CACHE_STALE,
	STAT_CACHE_BYPASS,
	STAT_CACHE_ERRORS,
	STAT_CACHE_LOCK_WAITS,  /* requests that waited on a stampede lock */
	STAT_CACHE_COLLAPSED,   /* waiters served from another's fill */
	STAT_WS_TUNNELS,        /* gauge: open WebSocket tunnels */
	STAT_WS_TUNNELS_TOTAL,
	STAT_WS_BYTES_UP,       /* client → upstream through tunnels */
	STAT_WS_BYTES_DOWN,
	STAT__MAX
};

enum stats_slot_kind { STATS_SLOT_ROUTE = 0, STATS_SLOT_SERVER };

enum stats_slot_id {
	SLOT_REQUESTS = 0,
	SLOT_1XX, SLOT_2XX, SLOT_3XX, SLOT_4XX, SLOT_5XX,
	SLOT_FAILURES,          /* servers: connect/read failures */
	SLOT_DOWN_UNTIL,        /* servers: gauge, epoch ms while marked down */
	SLOT_WS_TUNNELS,        /* routes: gauge */
	SLOT_WS_BYTES_UP,
	SLOT_WS_BYTES_DOWN,
	SLOT__MAX
};

#define STATS_MAX_SLOTS 1024
#define STATS_NAME_MAX  128     /* slot name bytes, NUL included */

struct stats_zone;

/* Master, before fork. */
struct stats_zone *stats_zone_create(char *err, size_t errlen);
void stats_zone_destroy(struct stats_zone *z);

/* Each process: the zone its stats_* calls write to (NULL = discard). */
void stats_attach(struct stats_zone *z);

void stats_add(enum stats_id id, int64_t v);

/*
 * Gauges after a worker dies: the master claims a row for each worker
 * before it forks it (-1: none free, the worker's gauges are then not
 * corrected), the worker writes its share of the gauges (open
 * connections, tunnels, per-route tunnels) to it as well
 * (stats_row_use), and when the master has reaped the worker it takes
 * the row's values back out of the totals and frees the row.  So a worker
 * killed with connections open leaves no phantom ones in /stats.
 */
#define STATS_ROWS 256
int  stats_row_claim(void);             /* master, before fork */
void stats_row_use(int row);            /* worker, after stats_attach */
void stats_row_release(int row);        /* master, after waitpid */
/* One answered request with this status: counts STAT_REQUESTS and the
 * per-code counter (100..599; other values count in STAT_REQUESTS only).
 * Callers do not add STAT_REQUESTS themselves. */
void stats_status(int status);

/*
 * Find or create a named slot; -1 when the table is full or the name is
 * STATS_NAME_MAX bytes or longer.  Slots are never freed: a slot lives as
 * long as the zone, across reloads.  Names (stats_route_name(),
 * stats_server_name()) are what the proxy and the admin listener agree on.
 */
int  stats_slot(enum stats_slot_kind kind, const char *name);
/* Find only (never creates): the slot index, or -1. */
int  stats_slot_find(enum stats_slot_kind kind, const char *name);
void stats_slot_add(int slot, enum stats_slot_id id, int64_t v);
void stats_slot_set(int slot, enum stats_slot_id id, int64_t v);
/* One answered request on a route slot: SLOT_REQUESTS and its class
 * (SLOT_1XX..SLOT_5XX; other statuses count in SLOT_REQUESTS only). */
void stats_slot_status(int slot, int status);

/* Reading (admin). */
uint64_t stats_get(enum stats_id id);
uint64_t stats_get_status(int status);           /* 100..599 */
uint64_t stats_get_class(int cls);               /* 1..5: sum of 1xx..5xx */
uint64_t stats_started_at(void);                 /* epoch seconds */
unsigned stats_nslots(void);
/* Name and kind of slot i; false if unused. */
bool stats_slot_info(unsigned i, enum stats_slot_kind *kind, const char **name);
int64_t stats_slot_get(unsigned i, enum stats_slot_id id);

/*
 * Slot names, one definition for every user.  Route: "PREFIX HOST", or
 * "PREFIX *" when the route has no host (host NULL).  Server: "UPSTREAM
 * ADDR" with ADDR as written in the config (config_addr.text).  Return
 * the length, or -1 (buf = "") when it does not fit in len or in
 * STATS_NAME_MAX.
 */
int stats_route_name(char *buf, size_t len, const char *prefix,
    const char *host);
int stats_server_name(char *buf, size_t len, const char *upstream,
    const char *addr);

#endif
