/*
 * cache/redis.c -- the Redis cache store (cache/redis.h).
 *
 * Keys (docs/redis-keys.md is the public description; keep them in step):
 *
 *	NS:GET:host:/path?q	an entry: the cache key itself, a string
 *				holding the value below, PX = ttl + max(swr, sie)
 *	NS:tag:TAG		a set of the entry keys tagged TAG; its expiry
 *				is raised (never lowered) to the longest entry
 *				added to it plus TAG_MARGIN
 *	NS:lock:KEY		a stampede lock on cache key KEY: a 16-hex-digit
 *				token, SET NX PX lease
 *
 * Value (all integers little-endian), version 1:
 *
 *	0   4  "STOA"
 *	4   1  version (1)
 *	5   1  flags (0; a reader rejects anything else)
 *	6   2  status
 *	8   8  stored_at (ms since the epoch)
 *	16  8  ttl (ms)
 *	24  8  stale_while_revalidate (ms)
 *	32  8  stale_if_error (ms)
 *	40  4  H = length of the headers
 *	44  H  headers ("Name: value\r\n" lines)
 *	44+H 4 B = length of the body
 *	48+H B body
 *
 * and nothing after it.  A value that does not decode exactly is a MISS
 * (and an error in the stats), never trusted.
 *
 * Connections.  RPOOL hiredis async contexts per store, each attached to
 * the store's event_base.  A connection is UP once its handshake ([AUTH],
 * [SELECT], PING) has been answered; operations go to the UP connection
 * with the fewest replies outstanding, so a large SET being written on one
 * does not hold up GETs.  A connection that is lost, refused, not
 * connected within max(timeout, 1 s), or that lets RDROP_AFTER operations
 * in a row time out is freed and reconnected after a backoff (100 ms
 * doubling to 5 s, reset once UP).  With no connection UP, operations fail
 * at once.
 *
 * Operations.  Each is a struct rop: its commands (one or more, pipelined
 * on one connection) carry the rop as hiredis privdata, and their kinds
 * are queued in rop.q, four bits each, in the order the replies come back.
 * The caller's callback is called exactly once: when the replies say so,
 * when its timer (timeout_ms; a SET gets one more ms per 16 KiB of value)
 * fires, or when the connection goes away (hiredis then hands every
 * pending reply back as NULL).  The rop itself lives until hiredis has
 * handed back every one of its replies, so a late reply finds it and is
 * dropped.  Spent rops are recycled through a per-store free list.
 *
 * hiredis rules relied on (0.14): a context must not be freed inside its
 * connect callback (we never do: failures there are left to hiredis, and
 * handshake failures are handled in reply callbacks, where redisAsyncFree()
 * is deferred until the callback returns); redisAsyncFree() runs the
 * disconnect callback too, so a context we free is first detached
 * (ac->data = NULL) and its disconnect callback ignores it; commands
 * issued on a context that is going away are refused (REDIS_ERR).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <xxhash.h>

#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "cache/cache.h"
#include "cache/redis.h"
#include "log.h"
#include "stats.h"
#include "util.h"
#include "vas.h"

#define RPOOL           2               /* connections per store */
#define RMAX_PENDING    1024u           /* replies outstanding per connection */
#define RDROP_AFTER     3u              /* timeouts in a row: reconnect */
#define RBACKOFF_MIN    100u            /* ms */
#define RBACKOFF_MAX    5000u
#define RCONNECT_MIN    1000u           /* connect + handshake, at least (ms) */
#define RLOG_EVERY      10000u          /* one error line per burst per 10 s */
#define RTIMEOUT_DEF    250u
#define RSCAN_COUNT     "500"
#define RFREE_OPS       64u             /* rops kept for reuse */
#define TAG_MARGIN      60000u          /* tag set outlives its entries (ms) */
#define LIFE_MAX        ((uint64_t)100 * 365 * 24 * 3600 * 1000)
#define VALUE_MAX       ((uint64_t)512 << 20)  /* Redis's string limit */
#define HEADERS_MAX     ((uint64_t)1 << 20)

#define VAL_VERSION     1u
#define VAL_FIXED       48u             /* everything but headers and body */

/* Lua, run by Redis.  Tag sets: add the entry key to each, and raise the
 * set's expiry to at least ARGV[2] ms (PTTL is -1 on a fresh set). */
static const char tags_lua[] =
    "local ms = tonumber(ARGV[2])\n"
    "for _, k in ipairs(KEYS) do\n"
    "  redis.call('SADD', k, ARGV[1])\n"
    "  if redis.call('PTTL', k) < ms then\n"
    "    redis.call('PEXPIRE', k, ms)\n"
    "  end\n"
    "end\n"
    "return #KEYS\n";

/* Purge a tag atomically (no entry tagged meanwhile is lost from the set
 * without being removed): UNLINK every member, then the set.  Returns the
 * number of entries that existed. */
static const char purge_lua[] =
    "local m = redis.call('SMEMBERS', KEYS[1])\n"
    "local n = 0\n"
    "for i = 1, #m, 256 do\n"
    "  n = n + redis.call('UNLINK', unpack(m, i, math.min(i + 255, #m)))\n"
    "end\n"
    "redis.call('UNLINK', KEYS[1])\n"
    "return n\n";

/* Release a stampede lock only if it still holds our token. */
static const char unlock_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n";

/* What a reply answers (four bits in rop.q; 0 is never used). */
enum rkind {
	K_GET = 1, K_SET, K_TAGS, K_DEL, K_EXISTS, K_SCAN, K_UNLINK_ENT,
	K_UNLINK_TAG, K_PURGE, K_LOCK, K_UNLOCK, K_AUTH, K_SELECT, K_PING,
};

enum rstate { RC_DOWN = 0, RC_CONNECTING, RC_HANDSHAKE, RC_UP, RC_CLOSING };

struct rstore;

struct rconn {
	unsigned                magic;
#define RCONN_MAGIC             0x72636f6eu
	struct rstore           *rs;
	redisAsyncContext       *ac;            /* NULL when DOWN */
	enum rstate             state;
	unsigned                pending;        /* replies outstanding on ac */
	unsigned                timeouts;       /* in a row */
	uint64_t                backoff;        /* next reconnect delay (ms) */
	struct event            *timer;         /* reconnect / connect deadline */
};

struct rop {
	unsigned                magic;
#define ROP_MAGIC               0x726f7021u
	struct rstore           *rs;
	struct rconn            *rc;
	redisAsyncContext       *ac;            /* where its commands went */
	struct event            *timer;
	struct rop              *next;          /* free list */
	cache_get_cb            *gcb;
	cache_done_cb           *dcb;
	void                    *arg;
	uint64_t                now;            /* get: the caller's clock */
	uint64_t                value;          /* for dcb */
	uint64_t                q;              /* enum rkind per reply due */
	uint64_t                tmo;            /* ms */
	enum cache_rc           res;            /* once every reply is in */
	unsigned                refs;           /* replies due */
	bool                    done;           /* the caller has been told */
	bool                    internal;       /* handshake: no caller */
	unsigned                affinity;       /* 1 + preferred connection, or 0 */
};

struct robj {
	unsigned                magic;
#define ROBJ_MAGIC              0x726f626au
	struct cache_obj        obj;
	unsigned char           data[];         /* the value as read */
};

struct rstore {
	struct cache_store      store;
	unsigned                magic;
#define RSTORE_MAGIC            0x72737472u
	struct event_base       *base;
	char                    *host;          /* NULL: unix socket */
	int                     port;
	char                    *path;
	char                    *user, *pass;   /* NULL when absent */
	unsigned                db;
	char                    where[160];     /* for logs; no secrets */
	char                    *ns;
	size_t                  nslen;
	char                    *pat;           /* SCAN MATCH: escaped ns + ":*" */
	uint64_t                timeout;
	uint64_t                max_obj;
	struct rconn            conn[RPOOL];
	unsigned                rr;
	bool                    closing;
	uint64_t                errors;
	uint64_t                tok_seed, tok_ctr;
	uint64_t                log_last;       /* util_now_ms() of the last line */
	uint64_t                suppressed;     /* errors not logged since */
	bool                    outage;         /* logged, recovery not yet */
	struct rop              *free_ops;
	unsigned                nfree_ops;
};

/* A failed operation: this store's count and the shared one. */
static void
rs_error(struct rstore *rs)
{
	rs->errors++;
	stats_add(STAT_CACHE_ERRORS, 1);
}

static void conn_connect(struct rconn *rc);
static void conn_drop(struct rconn *rc, const char *why);

/*--------------------------------------------------------------------
 * Small helpers
 */

static uint64_t
sat_add(uint64_t a, uint64_t b)
{
	return (a + b < a ? UINT64_MAX : a + b);
}

static void
put_le(unsigned char *p, uint64_t v, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
get_le(const unsigned char *p, unsigned n)
{
	uint64_t v = 0;
	unsigned i;

	for (i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return (v);
}

static uint64_t
splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return (x ^ (x >> 31));
}

static struct timeval
ms_tv(uint64_t ms)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	return (tv);
}

static struct rstore *
rstore_of(struct cache_store *s)
{
	struct rstore *rs;

	AN(s);
	rs = s->priv;
	CHECK_OBJ_NOTNULL(rs, RSTORE_MAGIC);
	return (rs);
}

/*
 * Error log: the first error of a burst is logged at once; later ones are
 * counted and summed up in the next line, at most every RLOG_EVERY ms.
 * Recovery is logged by conn_up().
 */
static void __attribute__((format(printf, 2, 3)))
rs_note(struct rstore *rs, const char *fmt, ...)
{
	char msg[256];
	uint64_t now = util_now_ms();
	va_list ap;

	if (rs->outage && now - rs->log_last < RLOG_EVERY) {
		rs->suppressed++;
		return;
	}
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (rs->suppressed > 0)
		log_warn("cache: redis %s: %s (%" PRIu64 " more problems "
		    "since the last report, %" PRIu64 " failed operations "
		    "in all)", rs->where, msg, rs->suppressed, rs->errors);
	else
		log_warn("cache: redis %s: %s", rs->where, msg);
	rs->log_last = now;
	rs->suppressed = 0;
	rs->outage = true;
}

/*--------------------------------------------------------------------
 * RESP command builder.  Commands are formatted here (binary-safe) and
 * handed to redisAsyncFormattedCommand(), which copies them.
 */

struct rcmd {
	char            *p;
	size_t          len, cap;
	bool            oom;
	char            sbuf[512];
};

static void
rcmd_reserve(struct rcmd *c, size_t more)
{
	size_t ncap;
	char *np;

	if (c->oom || c->cap - c->len >= more)
		return;
	ncap = c->cap * 2;
	if (ncap < c->len + more)
		ncap = c->len + more;
	if (c->p == c->sbuf) {
		np = malloc(ncap);
		if (np != NULL)
			memcpy(np, c->p, c->len);
	} else
		np = realloc(c->p, ncap);
	if (np == NULL) {
		c->oom = true;
		return;
	}
	c->p = np;
	c->cap = ncap;
}

static void
rcmd_raw(struct rcmd *c, const void *p, size_t n)
{
	rcmd_reserve(c, n);
	if (c->oom || n == 0)
		return;
	memcpy(c->p + c->len, p, n);
	c->len += n;
}

static void
rcmd_hdr(struct rcmd *c, char type, uint64_t n)
{
	char b[32];
	int l;

	l = snprintf(b, sizeof b, "%c%" PRIu64 "\r\n", type, n);
	assert_always(l > 0 && (size_t)l < sizeof b);
	rcmd_raw(c, b, (size_t)l);
}

/* Start a command of argc arguments; hint: its expected size. */
static void
rcmd_init(struct rcmd *c, unsigned argc, size_t hint)
{
	c->p = c->sbuf;
	c->len = 0;
	c->cap = sizeof c->sbuf;
	c->oom = false;
	rcmd_reserve(c, hint);
	rcmd_hdr(c, '*', argc);
}

static void
rcmd_free(struct rcmd *c)
{
	if (c->p != c->sbuf)
		free(c->p);
	c->p = NULL;
}

static void
rcmd_arg(struct rcmd *c, const void *p, size_t n)
{
	rcmd_hdr(c, '$', n);
	rcmd_raw(c, p, n);
	rcmd_raw(c, "\r\n", 2);
}

static void
rcmd_str(struct rcmd *c, const char *s)
{
	rcmd_arg(c, s, strlen(s));
}

static void
rcmd_u64(struct rcmd *c, uint64_t v)
{
	char b[24];
	int l;

	l = snprintf(b, sizeof b, "%" PRIu64, v);
	assert_always(l > 0 && (size_t)l < sizeof b);
	rcmd_arg(c, b, (size_t)l);
}

/* One argument made of three pieces (a key "NS" ":tag:" "TAG"). */
static void
rcmd_arg3(struct rcmd *c, const void *a, size_t al, const void *b, size_t bl,
    const void *d, size_t dl)
{
	rcmd_hdr(c, '$', (uint64_t)al + bl + dl);
	rcmd_raw(c, a, al);
	rcmd_raw(c, b, bl);
	rcmd_raw(c, d, dl);
	rcmd_raw(c, "\r\n", 2);
}

/*--------------------------------------------------------------------
 * Values
 */

static uint64_t
body_len(const struct cache_put *p)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i < p->nbody; i++)
		n = sat_add(n, p->body[i].iov_len);
	return (n);
}

/* The value as one bulk-string argument of c. */
static void
val_encode(struct rcmd *c, const struct cache_put *p, uint64_t blen)
{
	unsigned char h[44];
	unsigned i;

	rcmd_hdr(c, '$', VAL_FIXED + p->headers_len + blen);
	memcpy(h, "STOA", 4);
	h[4] = VAL_VERSION;
	h[5] = 0;
	put_le(h + 6, (uint64_t)p->status, 2);
	put_le(h + 8, p->stored_at, 8);
	put_le(h + 16, p->ttl, 8);
	put_le(h + 24, p->swr, 8);
	put_le(h + 32, p->sie, 8);
	put_le(h + 40, p->headers_len, 4);
	rcmd_raw(c, h, sizeof h);
	rcmd_raw(c, p->headers, p->headers_len);
	put_le(h, blen, 4);
	rcmd_raw(c, h, 4);
	for (i = 0; i < p->nbody; i++)
		rcmd_raw(c, p->body[i].iov_base, p->body[i].iov_len);
	rcmd_raw(c, "\r\n", 2);
}

/* Decode v[0..len) into o (pointing into v).  false: not ours/corrupt. */
static bool
val_decode(const unsigned char *v, size_t len, struct cache_obj *o)
{
	uint64_t hl, bl;

	if (len < VAL_FIXED || memcmp(v, "STOA", 4) != 0 ||
	    v[4] != VAL_VERSION || v[5] != 0)
		return (false);
	hl = get_le(v + 40, 4);
	if (hl > len - VAL_FIXED)
		return (false);
	bl = get_le(v + 44 + hl, 4);
	if (bl != len - VAL_FIXED - hl)
		return (false);
	o->status = (int)get_le(v + 6, 2);
	if (o->status < 100 || o->status > 999)
		return (false);
	o->stored_at = get_le(v + 8, 8);
	o->ttl = get_le(v + 16, 8);
	o->swr = get_le(v + 24, 8);
	o->sie = get_le(v + 32, 8);
	o->headers = (const char *)v + 44;
	o->headers_len = (size_t)hl;
	o->body = (const char *)v + 48 + hl;
	o->body_len = (size_t)bl;
	return (true);
}

bool
cache_redis_decode(const void *v, size_t len, struct cache_obj *o)
{
	return (val_decode(v, len, o));
}

static uint64_t
life_of(uint64_t ttl, uint64_t swr, uint64_t sie)
{
	uint64_t l = sat_add(ttl, swr > sie ? swr : sie);

	return (l > LIFE_MAX ? LIFE_MAX : l);
}

/*--------------------------------------------------------------------
 * Operations: allocation, sending, completion
 */

static void rop_timeout(evutil_socket_t fd, short what, void *arg);

static struct rop *
op_new(struct rstore *rs, cache_get_cb *gcb, cache_done_cb *dcb, void *arg)
{
	struct rop *op = rs->free_ops;

	if (op != NULL) {
		rs->free_ops = op->next;
		rs->nfree_ops--;
	} else {
		op = calloc(1, sizeof *op);
		if (op == NULL)
			return (NULL);
		op->timer = evtimer_new(rs->base, rop_timeout, op);
		if (op->timer == NULL) {
			free(op);
			return (NULL);
		}
	}
	op->magic = ROP_MAGIC;
	op->rs = rs;
	op->rc = NULL;
	op->ac = NULL;
	op->next = NULL;
	op->gcb = gcb;
	op->dcb = dcb;
	op->arg = arg;
	op->now = op->value = op->q = 0;
	op->tmo = rs->timeout;
	op->res = CACHE_OK;
	op->refs = 0;
	op->done = op->internal = false;
	op->affinity = 0;
	return (op);
}

static void
op_free(struct rop *op)
{
	struct rstore *rs = op->rs;

	CHECK_OBJ(op, ROP_MAGIC);
	AZ(op->refs);
	(void)evtimer_del(op->timer);
	if (rs->nfree_ops < RFREE_OPS && !rs->closing) {
		op->magic = 0;
		op->next = rs->free_ops;
		rs->free_ops = op;
		rs->nfree_ops++;
		return;
	}
	event_free(op->timer);
	op->magic = 0;
	free(op);
}

/* Tell the caller (once).  Ownership of obj passes to the caller. */
static void
op_finish(struct rop *op, enum cache_rc rc, uint64_t value,
    struct cache_obj *obj)
{
	AZ(op->done);
	op->done = true;
	(void)evtimer_del(op->timer);
	if (rc == CACHE_ERROR && !op->internal)
		rs_error(op->rs);
	if (op->gcb != NULL)
		op->gcb(op->arg, rc, obj);
	else if (op->dcb != NULL)
		op->dcb(op->arg, rc, value);
}

/* Fail an operation that has nothing outstanding, and free it. */
static void
op_fail_now(struct rop *op)
{
	AZ(op->refs);
	op_finish(op, CACHE_ERROR, 0, NULL);
	op_free(op);
}

/* Fail before any op exists (out of memory). */
static void
fail_early(struct rstore *rs, cache_get_cb *gcb, cache_done_cb *dcb,
    void *arg)
{
	rs_error(rs);
	if (gcb != NULL)
		gcb(arg, CACHE_ERROR, NULL);
	else if (dcb != NULL)
		dcb(arg, CACHE_ERROR, 0);
}

/* The UP connection with the fewest replies due (ties: round robin). */
static struct rconn *
conn_pick(struct rstore *rs)
{
	struct rconn *best = NULL, *rc;
	unsigned i;

	if (rs->closing)
		return (NULL);
	rs->rr++;
	for (i = 0; i < RPOOL; i++) {
		rc = &rs->conn[(rs->rr + i) % RPOOL];
		if (rc->state != RC_UP || rc->ac == NULL ||
		    rc->pending >= RMAX_PENDING)
			continue;
		if (best == NULL || rc->pending < best->pending)
			best = rc;
	}
	return (best);
}

static void rop_reply(redisAsyncContext *ac, void *r, void *priv);

/* The connection a key's SET, lock and unlock go to (1-based for rop). */
static unsigned
key_affinity(const char *key, size_t klen)
{
	return ((unsigned)(XXH3_64bits(key, klen) % RPOOL) + 1);
}

/* Queue one command of op on op->ac.  false if hiredis refused it. */
static bool
op_send(struct rop *op, enum rkind kind, const struct rcmd *c)
{
	struct rconn *rc = op->rc;

	if (c->oom || op->ac == NULL || op->refs >= 15)
		return (false);
	if (redisAsyncFormattedCommand(op->ac, rop_reply, op, c->p, c->len) !=
	    REDIS_OK)
		return (false);
	op->q |= (uint64_t)kind << (4 * op->refs);
	op->refs++;
	if (rc != NULL && rc->ac == op->ac)
		rc->pending++;
	return (true);
}

/*
 * Start op with its first command: pick a connection, send, arm the
 * timer.  On failure the caller is told CACHE_ERROR (before this returns)
 * and op is freed; false is returned and op must not be touched.
 */
static bool
op_start(struct rop *op, enum rkind kind, const struct rcmd *c)
{
	struct rconn *rc = NULL;
	struct timeval tv;

	if (op->affinity != 0) {
		/* commands on one key keep their order: one connection */
		rc = &op->rs->conn[op->affinity - 1];
		if (op->rs->closing || rc->state != RC_UP || rc->ac == NULL ||
		    rc->pending >= RMAX_PENDING)
			rc = NULL;
	}
	if (rc == NULL)
		rc = conn_pick(op->rs);

	if (rc == NULL) {
		op_fail_now(op);
		return (false);
	}
	op->rc = rc;
	op->ac = rc->ac;
	if (!op_send(op, kind, c)) {
		if (!c->oom)
			rs_note(op->rs, "command refused by the client");
		op_fail_now(op);
		return (false);
	}
	tv = ms_tv(op->tmo);
	(void)evtimer_add(op->timer, &tv);
	return (true);
}

/*
 * A further command of a started op: one with replies due, or one whose
 * reply is being handled (rop_reply() frees it after, when none are due).
 * On failure the op is finished with CACHE_ERROR.
 */
static bool
op_more(struct rop *op, enum rkind kind, const struct rcmd *c)
{
	if (op_send(op, kind, c))
		return (true);
	if (!op->done)
		op_finish(op, CACHE_ERROR, 0, NULL);
	return (false);
}

static void
rop_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct rop *op = arg;
	struct rconn *rc;
	redisAsyncContext *ac;

	CHECK_OBJ_NOTNULL(op, ROP_MAGIC);
	if (op->done)
		return;
	rc = op->rc;
	ac = op->ac;
	AN(op->refs);
	rs_note(op->rs, "no reply within %" PRIu64 " ms", op->tmo);
	op_finish(op, CACHE_ERROR, 0, NULL);
	/* op lives on until its replies come back (or the drop below). */
	if (rc != NULL && rc->ac == ac && ++rc->timeouts >= RDROP_AFTER)
		conn_drop(rc, "replies too slow, reconnecting");
}

/*--------------------------------------------------------------------
 * Replies
 */

static bool
is_status(const redisReply *r, const char *s)
{
	return (r->type == REDIS_REPLY_STATUS && r->str != NULL &&
	    strcmp(r->str, s) == 0);
}

static void
reply_get(struct rop *op, const redisReply *r)
{
	struct rstore *rs = op->rs;
	struct robj *ro;

	if (r->type == REDIS_REPLY_NIL) {
		op_finish(op, CACHE_MISS, 0, NULL);
		return;
	}
	if (r->type == REDIS_REPLY_ERROR && r->str != NULL &&
	    strncmp(r->str, "WRONGTYPE", 9) == 0) {
		/* Somebody else's key in our space: a miss (set replaces it). */
		rs_error(rs);
		rs_note(rs, "GET: %s", r->str);
		op_finish(op, CACHE_MISS, 0, NULL);
		return;
	}
	if (r->type != REDIS_REPLY_STRING) {
		rs_note(rs, "GET: unexpected reply %s",
		    r->type == REDIS_REPLY_ERROR && r->str != NULL ? r->str :
		    "type");
		op_finish(op, CACHE_ERROR, 0, NULL);
		return;
	}
	ro = malloc(sizeof *ro + r->len);
	if (ro == NULL) {
		rs_note(rs, "GET: out of memory");
		op_finish(op, CACHE_ERROR, 0, NULL);
		return;
	}
	memcpy(ro->data, r->str, r->len);
	memset(&ro->obj, 0, sizeof ro->obj);
	if (!val_decode(ro->data, r->len, &ro->obj)) {
		free(ro);
		rs_error(rs);
		rs_note(rs, "GET: a value that is not a stoa v%u entry "
		    "(%zu bytes): treated as a miss", VAL_VERSION, r->len);
		op_finish(op, CACHE_MISS, 0, NULL);
		return;
	}
	if (op->now >= sat_add(ro->obj.stored_at, life_of(ro->obj.ttl,
	    ro->obj.swr, ro->obj.sie))) {
		/* Past its windows by our clock (Redis has not expired it yet,
		 * or the clocks differ). */
		free(ro);
		op_finish(op, CACHE_MISS, 0, NULL);
		return;
	}
	ro->magic = ROBJ_MAGIC;
	ro->obj.priv = ro;
	op_finish(op, CACHE_OK, 0, &ro->obj);
}

/* Entries (not tag sets, not locks) removed by clear() are counted. */
static void
reply_scan(struct rop *op, const redisReply *r)
{
	struct rstore *rs = op->rs;
	const redisReply *cur, *keys, *k;
	struct rcmd ce, ct;
	size_t i, ne = 0, nt = 0, tplen = rs->nslen + 5, lplen = rs->nslen + 6;
	bool ok = true;
	struct timeval tv;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_ARRAY) {
		rs_note(rs, "SCAN: unexpected reply");
		op_finish(op, CACHE_ERROR, 0, NULL);
		return;
	}
	cur = r->element[0];
	keys = r->element[1];
	for (i = 0; i < keys->elements; i++) {
		k = keys->element[i];
		if (k->type != REDIS_REPLY_STRING || k->len <= rs->nslen ||
		    memcmp(k->str, rs->ns, rs->nslen) != 0 ||
		    k->str[rs->nslen] != ':')
			continue;
		if (k->len >= lplen &&
		    memcmp(k->str + rs->nslen, ":lock:", 6) == 0)
			continue;               /* leases expire by themselves */
		if (k->len >= tplen &&
		    memcmp(k->str + rs->nslen, ":tag:", 5) == 0)
			nt++;
		else
			ne++;
	}
	if (ne > 0)
		rcmd_init(&ce, (unsigned)ne + 1, 0);
	if (nt > 0)
		rcmd_init(&ct, (unsigned)nt + 1, 0);
	if (ne > 0)
		rcmd_str(&ce, "UNLINK");
	if (nt > 0)
		rcmd_str(&ct, "UNLINK");
	for (i = 0; i < keys->elements; i++) {
		k = keys->element[i];
		if (k->type != REDIS_REPLY_STRING || k->len <= rs->nslen ||
		    memcmp(k->str, rs->ns, rs->nslen) != 0 ||
		    k->str[rs->nslen] != ':')
			continue;
		if (k->len >= lplen &&
		    memcmp(k->str + rs->nslen, ":lock:", 6) == 0)
			continue;
		if (k->len >= tplen &&
		    memcmp(k->str + rs->nslen, ":tag:", 5) == 0)
			rcmd_arg(&ct, k->str, k->len);
		else
			rcmd_arg(&ce, k->str, k->len);
	}
	if (ne > 0) {
		ok = op_more(op, K_UNLINK_ENT, &ce);
		rcmd_free(&ce);
	}
	if (nt > 0) {
		if (ok)
			ok = op_more(op, K_UNLINK_TAG, &ct);
		rcmd_free(&ct);
	}
	if (!ok)
		return;
	if (cur->len == 1 && cur->str[0] == '0')
		return;                 /* done when the UNLINKs are in */
	rcmd_init(&ce, 6, 0);
	rcmd_str(&ce, "SCAN");
	rcmd_arg(&ce, cur->str, cur->len);
	rcmd_str(&ce, "MATCH");
	rcmd_str(&ce, rs->pat);
	rcmd_str(&ce, "COUNT");
	rcmd_str(&ce, RSCAN_COUNT);
	ok = op_more(op, K_SCAN, &ce);
	rcmd_free(&ce);
	if (ok) {
		/* The timeout bounds each round trip, not the whole walk. */
		tv = ms_tv(op->tmo);
		(void)evtimer_add(op->timer, &tv);
	}
}

static void conn_up(struct rconn *rc);

/* A reply for op (not yet done). */
static void
op_reply(struct rop *op, enum rkind kind, const redisReply *r)
{
	struct rstore *rs = op->rs;

	if (kind == K_GET) {
		reply_get(op, r);
		return;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		rs_note(rs, "%s", r->str != NULL ? r->str : "error reply");
		op_finish(op, CACHE_ERROR, 0, NULL);
		if (op->internal && op->rc != NULL && op->rc->ac == op->ac)
			conn_drop(op->rc, "handshake failed");
		return;
	}
	switch (kind) {
	case K_SET:
		if (is_status(r, "OK"))
			op->res = CACHE_OK;
		else if (r->type == REDIS_REPLY_NIL)
			op->res = CACHE_EXISTS;         /* SET NX: already there */
		else
			goto bad;
		return;
	case K_TAGS:
	case K_UNLINK_TAG:
	case K_UNLOCK:
		if (r->type != REDIS_REPLY_INTEGER)
			goto bad;
		return;
	case K_DEL:
	case K_EXISTS:
		if (r->type != REDIS_REPLY_INTEGER)
			goto bad;
		op_finish(op, r->integer > 0 ? CACHE_OK : CACHE_MISS, 0, NULL);
		return;
	case K_UNLINK_ENT:
		if (r->type != REDIS_REPLY_INTEGER || r->integer < 0)
			goto bad;
		op->value += (uint64_t)r->integer;
		return;
	case K_SCAN:
		reply_scan(op, r);
		return;
	case K_PURGE:
		if (r->type != REDIS_REPLY_INTEGER || r->integer < 0)
			goto bad;
		op_finish(op, CACHE_OK, (uint64_t)r->integer, NULL);
		return;
	case K_LOCK:
		if (is_status(r, "OK"))
			op_finish(op, CACHE_OK, op->value, NULL);
		else if (r->type == REDIS_REPLY_NIL)
			op_finish(op, CACHE_LOCKED, 0, NULL);
		else
			goto bad;
		return;
	case K_AUTH:
	case K_SELECT:
		if (!is_status(r, "OK"))
			goto bad;
		return;
	case K_PING:
		if (!is_status(r, "PONG"))
			goto bad;
		op_finish(op, CACHE_OK, 0, NULL);
		if (op->rc != NULL && op->rc->ac == op->ac)
			conn_up(op->rc);
		return;
	default:
		WRONG("reply kind");
	}
bad:
	rs_note(rs, "unexpected reply (type %d) to command kind %d", r->type,
	    (int)kind);
	op_finish(op, CACHE_ERROR, 0, NULL);
	if (op->internal && op->rc != NULL && op->rc->ac == op->ac)
		conn_drop(op->rc, "handshake failed");
}

/* hiredis's callback for every command we send. */
static void
rop_reply(redisAsyncContext *ac, void *r, void *priv)
{
	struct rop *op = priv;
	const redisReply *reply = r;
	struct rconn *rc;
	enum rkind kind;

	CHECK_OBJ_NOTNULL(op, ROP_MAGIC);
	AN(op->refs);
	kind = (enum rkind)(op->q & 15);
	op->q >>= 4;
	op->refs--;
	rc = op->rc;
	if (rc != NULL && rc->ac == ac) {
		AN(rc->pending);
		rc->pending--;
		if (reply != NULL)
			rc->timeouts = 0;
		else if (rc->state != RC_DOWN)
			rc->state = RC_CLOSING;  /* hiredis is tearing ac down */
	}
	if (!op->done) {
		if (reply == NULL) {
			if (!op->internal && !op->rs->closing)
				rs_note(op->rs, "connection lost");
			op_finish(op, CACHE_ERROR, 0, NULL);
		} else
			op_reply(op, kind, reply);
	}
	if (op->refs == 0) {
		if (!op->done)
			op_finish(op, op->res, op->value, NULL);
		op_free(op);
	}
}

/*--------------------------------------------------------------------
 * Connections
 */

static void
conn_retry(struct rconn *rc)
{
	struct timeval tv;

	if (rc->rs->closing)
		return;
	tv = ms_tv(rc->backoff);
	(void)evtimer_add(rc->timer, &tv);
	rc->backoff *= 2;
	if (rc->backoff > RBACKOFF_MAX)
		rc->backoff = RBACKOFF_MAX;
}

/* Detach and free rc's context (not from its connect callback). */
static void
conn_drop(struct rconn *rc, const char *why)
{
	redisAsyncContext *ac = rc->ac;

	if (ac == NULL)
		return;
	rc->ac = NULL;
	rc->state = RC_DOWN;
	rc->pending = 0;
	rc->timeouts = 0;
	ac->data = NULL;
	if (why != NULL)
		rs_note(rc->rs, "%s", why);
	conn_retry(rc);
	/* Pending replies come back NULL from here (deferred when we are in
	 * one of ac's callbacks). */
	redisAsyncFree(ac);
}

static void
conn_up(struct rconn *rc)
{
	struct rstore *rs = rc->rs;

	rc->state = RC_UP;
	rc->backoff = RBACKOFF_MIN;
	rc->timeouts = 0;
	(void)evtimer_del(rc->timer);
	if (rs->outage) {
		log_info("cache: redis %s: connected (%" PRIu64 " failed "
		    "operations so far)", rs->where, rs->errors);
		rs->outage = false;
		rs->suppressed = 0;
	}
}

/* Connected: [AUTH], [SELECT], PING; UP when PONG comes back. */
static void
conn_hello(struct rconn *rc)
{
	struct rstore *rs = rc->rs;
	struct rop *op;
	struct rcmd c;
	bool ok = true;
	struct timeval tv;

	rc->state = RC_HANDSHAKE;
	op = op_new(rs, NULL, NULL, NULL);
	if (op == NULL)
		goto fail;
	op->internal = true;
	op->rc = rc;
	op->ac = rc->ac;
	if (rs->pass != NULL) {
		rcmd_init(&c, rs->user != NULL ? 3 : 2, 0);
		rcmd_str(&c, "AUTH");
		if (rs->user != NULL)
			rcmd_str(&c, rs->user);
		rcmd_str(&c, rs->pass);
		ok = op_send(op, K_AUTH, &c);
		rcmd_free(&c);
	}
	if (ok && rs->db != 0) {
		rcmd_init(&c, 2, 0);
		rcmd_str(&c, "SELECT");
		rcmd_u64(&c, rs->db);
		ok = op_send(op, K_SELECT, &c);
		rcmd_free(&c);
	}
	if (ok) {
		rcmd_init(&c, 1, 0);
		rcmd_str(&c, "PING");
		ok = op_send(op, K_PING, &c);
		rcmd_free(&c);
	}
	if (ok)
		return;                 /* the connect deadline still runs */
	op->done = true;
	if (op->refs == 0)
		op_free(op);
fail:
	/* Not from here (inside hiredis's connect callback): let the
	 * deadline timer drop the connection right away. */
	tv = ms_tv(0);
	(void)evtimer_add(rc->timer, &tv);
}

static void
conn_on_connect(const redisAsyncContext *cac, int status)
{
	struct rconn *rc = cac->data;

	if (rc == NULL)
		return;
	CHECK_OBJ(rc, RCONN_MAGIC);
	if (status != REDIS_OK) {
		/* hiredis frees the context when we return. */
		rc->ac = NULL;
		rc->state = RC_DOWN;
		rc->pending = 0;
		rs_note(rc->rs, "connect: %s", cac->c.errstr);
		conn_retry(rc);
		return;
	}
	conn_hello(rc);
}

static void
conn_on_disconnect(const redisAsyncContext *cac, int status)
{
	struct rconn *rc = cac->data;

	if (rc == NULL)
		return;                 /* one we dropped ourselves */
	CHECK_OBJ(rc, RCONN_MAGIC);
	/* hiredis frees the context when we return. */
	rc->ac = NULL;
	rc->state = RC_DOWN;
	rc->pending = 0;
	rc->timeouts = 0;
	rs_note(rc->rs, "connection lost: %s", status == REDIS_OK ? "closed" :
	    cac->c.errstr);
	conn_retry(rc);
}

/* Reconnect timer (DOWN) or connect/handshake deadline (otherwise). */
static void
conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct rconn *rc = arg;

	CHECK_OBJ_NOTNULL(rc, RCONN_MAGIC);
	switch (rc->state) {
	case RC_DOWN:
		conn_connect(rc);
		break;
	case RC_CONNECTING:
	case RC_HANDSHAKE:
		conn_drop(rc, "no connection within the deadline");
		break;
	default:
		break;
	}
}

/*
 * Start a non-blocking connect.  Caveat (hiredis 0.14): a host name is
 * resolved with a blocking getaddrinfo(); use an address or a unix socket
 * where that matters.
 */
static void
conn_connect(struct rconn *rc)
{
	struct rstore *rs = rc->rs;
	redisAsyncContext *ac;
	struct timeval tv;
	uint64_t ms;

	AZ(rc->ac);
	if (rs->closing)
		return;
	if (rs->host != NULL)
		ac = redisAsyncConnect(rs->host, rs->port);
	else
		ac = redisAsyncConnectUnix(rs->path);
	if (ac == NULL) {
		rs_note(rs, "connect: out of memory");
		conn_retry(rc);
		return;
	}
	if (ac->err != 0) {
		rs_note(rs, "connect: %s", ac->c.errstr);
		redisAsyncFree(ac);
		conn_retry(rc);
		return;
	}
	if (redisLibeventAttach(ac, rs->base) != REDIS_OK) {
		rs_note(rs, "connect: cannot attach to the event loop");
		redisAsyncFree(ac);
		conn_retry(rc);
		return;
	}
	ac->data = rc;
	(void)redisAsyncSetConnectCallback(ac, conn_on_connect);
	(void)redisAsyncSetDisconnectCallback(ac, conn_on_disconnect);
	rc->ac = ac;
	rc->state = RC_CONNECTING;
	rc->pending = 0;
	rc->timeouts = 0;
	ms = rs->timeout > RCONNECT_MIN ? rs->timeout : RCONNECT_MIN;
	tv = ms_tv(ms);
	(void)evtimer_add(rc->timer, &tv);
}

/*--------------------------------------------------------------------
 * Store operations
 */

static void
r_get(struct cache_store *s, const char *key, size_t klen, uint64_t now,
    cache_get_cb *cb, void *arg)
{
	struct rstore *rs = rstore_of(s);
	struct rop *op;
	struct rcmd c;

	AN(cb);
	op = op_new(rs, cb, NULL, arg);
	if (op == NULL) {
		fail_early(rs, cb, NULL, arg);
		return;
	}
	op->now = now;
	rcmd_init(&c, 2, klen + 32);
	rcmd_str(&c, "GET");
	rcmd_arg(&c, key, klen);
	(void)op_start(op, K_GET, &c);
	rcmd_free(&c);
}

/* Objects are self-contained copies: the store is not needed (and may
 * already be gone). */
static void
r_release(struct cache_store *s, struct cache_obj *obj)
{
	struct robj *ro;

	AN(obj);
	ro = obj->priv;
	CHECK_OBJ_NOTNULL(ro, ROBJ_MAGIC);
	assert_always(&ro->obj == obj);
	ro->magic = 0;
	free(ro);
}

/*
 * Push a fill to Redis now rather than on the next loop turn: the client
 * gets the response at the end of this turn, and a request it sends next,
 * to another worker or host, must find the entry.  Nothing here touches
 * the op afterwards (a write error may finish it).
 */
static void
push_now(redisAsyncContext *ac)
{
	if (ac != NULL)
		redisAsyncHandleWrite(ac);
}

static void
r_put(struct cache_store *s, const char *key, size_t klen,
    const struct cache_put *p, bool nx, cache_done_cb *cb, void *arg)
{
	struct rstore *rs = rstore_of(s);
	uint64_t blen, vlen, life;
	struct rop *op;
	redisAsyncContext *ac;
	struct rcmd c;
	unsigned i, nt;

	AN(p);
	blen = body_len(p);
	vlen = sat_add(sat_add(VAL_FIXED, p->headers_len), blen);
	if ((rs->max_obj != 0 && blen > rs->max_obj) ||
	    p->headers_len > HEADERS_MAX || vlen > VALUE_MAX) {
		if (cb != NULL)
			cb(arg, CACHE_TOO_BIG, 0);
		return;
	}
	if (p->status < 100 || p->status > 999) {
		/* Not representable (val_decode() would refuse it). */
		fail_early(rs, NULL, cb, arg);
		return;
	}
	life = life_of(p->ttl, p->swr, p->sie);
	if (life == 0) {
		/* Expired as it is stored: nothing to write. */
		if (cb != NULL)
			cb(arg, CACHE_OK, 0);
		return;
	}
	op = op_new(rs, NULL, cb, arg);
	if (op == NULL) {
		fail_early(rs, NULL, cb, arg);
		return;
	}
	/* Writing vlen bytes takes time too: one more ms per 16 KiB. */
	op->tmo = rs->timeout + vlen / 16384;
	op->affinity = key_affinity(key, klen);
	rcmd_init(&c, nx ? 6 : 5, klen + (size_t)vlen + 96);
	rcmd_str(&c, "SET");
	rcmd_arg(&c, key, klen);
	val_encode(&c, p, blen);
	rcmd_str(&c, "PX");
	rcmd_u64(&c, life);
	if (nx)
		rcmd_str(&c, "NX");
	if (c.oom)
		rs_note(rs, "SET: out of memory");
	if (!op_start(op, K_SET, &c)) {
		rcmd_free(&c);
		return;
	}
	ac = op->ac;
	rcmd_free(&c);
	for (i = nt = 0; i < p->ntags; i++)
		if (p->tags[i].iov_len > 0)
			nt++;
	if (nt == 0) {
		push_now(ac);
		return;
	}
	rcmd_init(&c, nt + 5, 0);
	rcmd_str(&c, "EVAL");
	rcmd_str(&c, tags_lua);
	rcmd_u64(&c, nt);
	for (i = 0; i < p->ntags; i++) {
		if (p->tags[i].iov_len == 0)
			continue;
		rcmd_arg3(&c, rs->ns, rs->nslen, ":tag:", 5,
		    p->tags[i].iov_base, p->tags[i].iov_len);
	}
	rcmd_arg(&c, key, klen);
	rcmd_u64(&c, sat_add(life, TAG_MARGIN));
	(void)op_more(op, K_TAGS, &c);
	rcmd_free(&c);
	push_now(ac);
}


static void
r_set(struct cache_store *s, const char *key, size_t klen,
    const struct cache_put *p, cache_done_cb *cb, void *arg)
{
	r_put(s, key, klen, p, false, cb, arg);
}

/* add: SET NX; an entry Redis still holds is CACHE_EXISTS. */
static void
r_add(struct cache_store *s, const char *key, size_t klen,
    const struct cache_put *p, cache_done_cb *cb, void *arg)
{
	r_put(s, key, klen, p, true, cb, arg);
}

/* A one-command operation on KEY: CMD KEY. */
static void
r_keycmd(struct rstore *rs, const char *cmd, enum rkind kind, const char *key,
    size_t klen, cache_done_cb *cb, void *arg)
{
	struct rop *op;
	struct rcmd c;

	op = op_new(rs, NULL, cb, arg);
	if (op == NULL) {
		fail_early(rs, NULL, cb, arg);
		return;
	}
	rcmd_init(&c, 2, klen + 32);
	rcmd_str(&c, cmd);
	rcmd_arg(&c, key, klen);
	(void)op_start(op, kind, &c);
	rcmd_free(&c);
}

static void
r_del(struct cache_store *s, const char *key, size_t klen,
    cache_done_cb *cb, void *arg)
{
	r_keycmd(rstore_of(s), "UNLINK", K_DEL, key, klen, cb, arg);
}

/* Whether Redis still holds KEY (Redis expires entries; `now` is not
 * consulted, unlike get()). */
static void
r_exists(struct cache_store *s, const char *key, size_t klen, uint64_t now,
    cache_done_cb *cb, void *arg)
{
	AN(cb);
	r_keycmd(rstore_of(s), "EXISTS", K_EXISTS, key, klen, cb, arg);
}

/* SCAN MATCH "NS:*" in rounds of COUNT keys, UNLINKing what each round
 * finds (entries and tag sets; locks are left to their leases). */
static void
r_clear(struct cache_store *s, cache_done_cb *cb, void *arg)
{
	struct rstore *rs = rstore_of(s);
	struct rop *op;
	struct rcmd c;

	op = op_new(rs, NULL, cb, arg);
	if (op == NULL) {
		fail_early(rs, NULL, cb, arg);
		return;
	}
	rcmd_init(&c, 6, 0);
	rcmd_str(&c, "SCAN");
	rcmd_str(&c, "0");
	rcmd_str(&c, "MATCH");
	rcmd_str(&c, rs->pat);
	rcmd_str(&c, "COUNT");
	rcmd_str(&c, RSCAN_COUNT);
	(void)op_start(op, K_SCAN, &c);
	rcmd_free(&c);
}

static void
r_purge_tag(struct cache_store *s, const char *tag, size_t tlen,
    cache_done_cb *cb, void *arg)
{
	struct rstore *rs = rstore_of(s);
	struct rop *op;
	struct rcmd c;

	if (tlen == 0) {
		if (cb != NULL)
			cb(arg, CACHE_OK, 0);
		return;
	}
	op = op_new(rs, NULL, cb, arg);
	if (op == NULL) {
		fail_early(rs, NULL, cb, arg);
		return;
	}
	rcmd_init(&c, 4, tlen + sizeof purge_lua + 64);
	rcmd_str(&c, "EVAL");
	rcmd_str(&c, purge_lua);
	rcmd_str(&c, "1");
	rcmd_arg3(&c, rs->ns, rs->nslen, ":tag:", 5, tag, tlen);
	(void)op_start(op, K_PURGE, &c);
	rcmd_free(&c);
}

static void
token_hex(uint64_t token, char out[17])
{
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 15; i >= 0; i--, token >>= 4)
		out[i] = hex[token & 15];
	out[16] = '\0';
}

/* SET NS:lock:KEY TOKEN NX PX lease. */
static void
r_lock(struct cache_store *s, const char *key, size_t klen, uint64_t lease,
    uint64_t now, cache_done_cb *cb, void *arg)
{
	struct rstore *rs = rstore_of(s);
	struct rop *op;
	struct rcmd c;
	uint64_t token;
	char tok[17];

	AN(cb);
	op = op_new(rs, NULL, cb, arg);
	if (op == NULL) {
		fail_early(rs, NULL, cb, arg);
		return;
	}
	do
		token = splitmix64(rs->tok_seed + ++rs->tok_ctr);
	while (token == 0);
	op->value = token;
	op->affinity = key_affinity(key, klen);
	token_hex(token, tok);
	if (lease == 0)
		lease = 1;
	if (lease > LIFE_MAX)
		lease = LIFE_MAX;
	rcmd_init(&c, 6, klen + 96);
	rcmd_str(&c, "SET");
	rcmd_arg3(&c, rs->ns, rs->nslen, ":lock:", 6, key, klen);
	rcmd_arg(&c, tok, 16);
	rcmd_str(&c, "NX");
	rcmd_str(&c, "PX");
	rcmd_u64(&c, lease);
	(void)op_start(op, K_LOCK, &c);
	rcmd_free(&c);
}

/* Compare-and-delete on the server.  Without a connection nothing is
 * done: the lease ends the lock. */
static void
r_unlock(struct cache_store *s, const char *key, size_t klen, uint64_t token)
{
	struct rstore *rs = rstore_of(s);
	struct rop *op;
	struct rcmd c;
	char tok[17];

	if (token == 0)
		return;
	op = op_new(rs, NULL, NULL, NULL);
	if (op == NULL) {
		rs_error(rs);
		return;
	}
	op->affinity = key_affinity(key, klen);
	token_hex(token, tok);
	rcmd_init(&c, 5, klen + sizeof unlock_lua + 64);
	rcmd_str(&c, "EVAL");
	rcmd_str(&c, unlock_lua);
	rcmd_str(&c, "1");
	rcmd_arg3(&c, rs->ns, rs->nslen, ":lock:", 6, key, klen);
	rcmd_arg(&c, tok, 16);
	(void)op_start(op, K_UNLOCK, &c);
	rcmd_free(&c);
}

/* Entries and bytes live in Redis, shared by every host: not counted
 * here (0).  errors: this store's failed operations. */
static void
r_stats(struct cache_store *s, struct cache_stats *out)
{
	struct rstore *rs = rstore_of(s);

	AN(out);
	memset(out, 0, sizeof *out);
	/* this store's own count; the admin listener reports the shared
	 * STAT_CACHE_ERRORS, which every worker's store adds to */
	out->errors = rs->errors;
}

static const struct cache_ops redis_ops = {
	.name = "redis",
	.get = r_get,
	.release = r_release,
	.set = r_set,
	.add = r_add,
	.del = r_del,
	.exists = r_exists,
	.clear = r_clear,
	.purge_tag = r_purge_tag,
	.lock = r_lock,
	.unlock = r_unlock,
	.stats = r_stats,
};

/*--------------------------------------------------------------------
 * URL, creation, teardown
 */

/* Percent-decode s[0..n) into a new string; NULL on a bad escape, a NUL
 * byte or no memory (*bad tells which). */
static char *
pct_dup(const char *s, size_t n, bool *bad)
{
	char *d, *o;
	size_t i;
	int hi, lo;

	*bad = false;
	d = o = malloc(n + 1);
	if (d == NULL)
		return (NULL);
	for (i = 0; i < n; i++) {
		if (s[i] != '%') {
			*o++ = s[i];
			continue;
		}
		if (i + 2 >= n)
			goto bad;
		hi = util_hexval((unsigned char)s[i + 1]);
		lo = util_hexval((unsigned char)s[i + 2]);
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			goto bad;
		*o++ = (char)(hi * 16 + lo);
		i += 2;
	}
	*o = '\0';
	return (d);
bad:
	free(d);
	*bad = true;
	return (NULL);
}

static bool
all_digits(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 9)
		return (false);
	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return (false);
	return (true);
}

/* Parse url into rs.  0, or -1 with a static reason in *why. */
static int
url_parse(struct rstore *rs, const char *url, const char **why)
{
	const char *p, *e, *at, *hs, *he, *colon;
	size_t n;
	bool bad;

	*why = "out of memory";
	if (strncmp(url, "unix:", 5) == 0) {
		p = url + 5;
		if (strncmp(p, "//", 2) == 0)
			p += 2;
		n = strlen(p);
		if (n < 2 || p[0] != '/') {
			*why = "expected unix:/path/to/socket";
			return (-1);
		}
		if (n >= 108) {
			*why = "unix socket path too long";
			return (-1);
		}
		rs->path = strdup(p);
		if (rs->path == NULL)
			return (-1);
		(void)snprintf(rs->where, sizeof rs->where, "unix:%s", p);
		return (0);
	}
	if (strncmp(url, "redis://", 8) != 0) {
		*why = "expected redis://[[user]:password@]host[:port][/db] "
		    "or unix:/path";
		return (-1);
	}
	p = url + 8;
	e = p + strcspn(p, "/?#");
	if (*e == '?' || *e == '#') {
		*why = "query and fragment are not supported";
		return (-1);
	}
	at = memchr(p, '@', (size_t)(e - p));
	if (at != NULL) {
		/* Take the last '@': a password may contain one unencoded. */
		while ((hs = memchr(at + 1, '@', (size_t)(e - at - 1))) != NULL)
			at = hs;
		colon = memchr(p, ':', (size_t)(at - p));
		if (colon == NULL) {
			*why = "credentials must be :password@ or "
			    "user:password@";
			return (-1);
		}
		if (colon > p) {
			rs->user = pct_dup(p, (size_t)(colon - p), &bad);
			if (rs->user == NULL) {
				if (bad)
					*why = "bad %-escape in the user name";
				return (-1);
			}
		}
		rs->pass = pct_dup(colon + 1, (size_t)(at - colon - 1), &bad);
		if (rs->pass == NULL) {
			if (bad)
				*why = "bad %-escape in the password";
			return (-1);
		}
		p = at + 1;
	}
	/* host[:port] in [p, e) */
	if (*p == '[') {
		hs = p + 1;
		he = memchr(hs, ']', (size_t)(e - hs));
		if (he == NULL || he == hs) {
			*why = "bad [IPv6] host";
			return (-1);
		}
		colon = he + 1 < e ? he + 1 : NULL;
		if (colon != NULL && *colon != ':') {
			*why = "bad [IPv6] host";
			return (-1);
		}
	} else {
		hs = p;
		colon = memchr(p, ':', (size_t)(e - p));
		he = colon != NULL ? colon : e;
	}
	if (he == hs) {
		*why = "missing host";
		return (-1);
	}
	if (memchr(hs, '%', (size_t)(he - hs)) != NULL ||
	    memchr(hs, '@', (size_t)(he - hs)) != NULL) {
		*why = "bad host";
		return (-1);
	}
	rs->port = 6379;
	if (colon != NULL) {
		n = (size_t)(e - colon - 1);
		if (!all_digits(colon + 1, n) || atoi(colon + 1) < 1 ||
		    atoi(colon + 1) > 65535) {
			*why = "invalid port (expected 1-65535)";
			return (-1);
		}
		rs->port = atoi(colon + 1);
	}
	rs->host = strndup(hs, (size_t)(he - hs));
	if (rs->host == NULL)
		return (-1);
	if (*e == '/' && e[1] != '\0') {
		n = strlen(e + 1);
		if (!all_digits(e + 1, n) || atol(e + 1) > 1000000) {
			*why = "invalid database number";
			return (-1);
		}
		rs->db = (unsigned)atol(e + 1);
	}
	(void)snprintf(rs->where, sizeof rs->where, "%s%s%s:%d",
	    *p == '[' ? "[" : "", rs->host, *p == '[' ? "]" : "", rs->port);
	if (rs->db != 0) {
		n = strlen(rs->where);
		(void)snprintf(rs->where + n, sizeof rs->where - n, "/%u",
		    rs->db);
	}
	return (0);
}

static void
rstore_destroy(struct rstore *rs)
{
	struct rop *op;
	unsigned i;

	for (i = 0; i < RPOOL; i++)
		if (rs->conn[i].timer != NULL)
			event_free(rs->conn[i].timer);
	while ((op = rs->free_ops) != NULL) {
		rs->free_ops = op->next;
		event_free(op->timer);
		free(op);
	}
	free(rs->host);
	free(rs->path);
	if (rs->pass != NULL)
		explicit_bzero(rs->pass, strlen(rs->pass));
	free(rs->user);
	free(rs->pass);
	free(rs->ns);
	free(rs->pat);
	rs->magic = 0;
	free(rs);
}

static uint64_t
token_seed(void)
{
	uint64_t seed = 0;
	struct timespec ts;

	if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
		(void)clock_gettime(CLOCK_REALTIME, &ts);
		seed = splitmix64((uint64_t)ts.tv_nsec ^
		    ((uint64_t)ts.tv_sec << 20) ^ util_now_ms());
	}
	return (seed ^ ((uint64_t)getpid() << 32));
}

struct cache_store *
cache_redis_store(struct event_base *base, const char *url, const char *ns,
    uint64_t timeout_ms, uint64_t max_object_size, char *err, size_t errlen)
{
	struct rstore *rs;
	const char *why = "out of memory";
	struct timeval tv;
	size_t i, n;
	char *q;

	AN(base);
	AN(url);
	AN(ns);
	rs = calloc(1, sizeof *rs);
	if (rs == NULL)
		goto fail;
	rs->magic = RSTORE_MAGIC;
	rs->base = base;
	rs->timeout = timeout_ms != 0 ? timeout_ms : RTIMEOUT_DEF;
	rs->max_obj = max_object_size;
	rs->tok_seed = token_seed();
	if (url_parse(rs, url, &why) != 0)
		goto fail;
	why = "out of memory";
	rs->nslen = strlen(ns);
	rs->ns = strdup(ns);
	/* Glob-escape the namespace for SCAN MATCH. */
	rs->pat = malloc(2 * rs->nslen + 3);
	if (rs->ns == NULL || rs->pat == NULL)
		goto fail;
	for (i = 0, q = rs->pat; i < rs->nslen; i++) {
		if (strchr("*?[]\\", ns[i]) != NULL)
			*q++ = '\\';
		*q++ = ns[i];
	}
	memcpy(q, ":*", 3);
	for (n = 0; n < RPOOL; n++) {
		rs->conn[n].magic = RCONN_MAGIC;
		rs->conn[n].rs = rs;
		rs->conn[n].backoff = RBACKOFF_MIN;
		rs->conn[n].timer = evtimer_new(base, conn_timer, &rs->conn[n]);
		if (rs->conn[n].timer == NULL)
			goto fail;
	}
	rs->store.ops = &redis_ops;
	rs->store.priv = rs;
	/* Connect from the loop, not from here. */
	tv = ms_tv(0);
	for (n = 0; n < RPOOL; n++)
		(void)evtimer_add(rs->conn[n].timer, &tv);
	return (&rs->store);
fail:
	(void)snprintf(err, errlen, "cache.redis '%s': %s",
	    strncmp(url, "redis://", 8) == 0 && strchr(url, '@') != NULL ?
	    "redis://(credentials hidden)" : url, why);
	if (rs != NULL)
		rstore_destroy(rs);
	return (NULL);
}

void
cache_redis_store_free(struct cache_store *s)
{
	struct rstore *rs;
	unsigned i;

	if (s == NULL)
		return;
	rs = rstore_of(s);
	rs->closing = true;
	for (i = 0; i < RPOOL; i++) {
		(void)evtimer_del(rs->conn[i].timer);
		conn_drop(&rs->conn[i], NULL);
	}
	rstore_destroy(rs);
}
