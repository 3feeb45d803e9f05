/*
 * balance.c -- see balance.h.
 *
 * Per upstream: a server table (active requests, failures, down-until),
 * a rotation cursor for round_robin and least_conn ties, and for
 * BALANCE_HASH a ring of BALANCE_VNODES points per server.  A server's
 * points are hashed from its address text, not its index, so adding or
 * removing a server moves only the keys of the points it gains or loses
 * (~1/N of them).
 *
 * Passive health follows nginx: failures count within a window of
 * fail_timeout that starts at the first one; the max_fails-th marks the
 * server down until now + fail_timeout.  When that has passed the server
 * is tried again, but stays "tripped": one more failure before a success
 * marks it down again at once, so a dead server gets one probe request
 * per fail_timeout rather than max_fails.  A success clears everything.
 */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "balance.h"
#include "config.h"
#include "vas.h"

#define BALANCE_MAGIC  0xba1a9ce5u
#define BALANCE_VNODES 160

struct bsrv {
	unsigned         active;        /* requests in flight (least_conn) */
	unsigned         fails;         /* in the current window */
	bool             tripped;       /* marked down since the last success */
	uint64_t         fail_start;    /* first failure of the window */
	uint64_t         down_until;    /* up when now >= down_until */
};

struct vnode {
	uint64_t         hash;
	unsigned         server;
};

struct bpool {
	enum config_balance how;
	unsigned         nservers;
	unsigned         max_fails;
	uint64_t         fail_timeout;
	unsigned         next;          /* rotation cursor */
	struct bsrv     *srv;
	unsigned         nring;
	struct vnode    *ring;          /* sorted by hash, then server */
};

struct balance {
	unsigned         magic;
	unsigned         npools;
	struct bpool    *pools;
};

/*--------------------------------------------------------------------*/

static int
vnode_cmp(const void *va, const void *vb)
{
	const struct vnode *a = va, *b = vb;

	if (a->hash != b->hash)
		return (a->hash < b->hash ? -1 : 1);
	return (a->server < b->server ? -1 : a->server > b->server);
}

/*
 * Ring points of server s are XXH3(address text) seeded with the point
 * number; a repeated address gets its own points by also mixing in how
 * many earlier servers share it.
 */
static int
ring_build(struct bpool *p, const struct config_upstream *cu)
{
	const char *text;
	unsigned s, v, k, dup;
	uint64_t seed;

	p->nring = p->nservers * BALANCE_VNODES;
	p->ring = calloc(p->nring, sizeof *p->ring);
	if (p->ring == NULL)
		return (-1);
	k = 0;
	for (s = 0; s < p->nservers; s++) {
		text = cu->servers[s].text;
		AN(text);
		for (dup = v = 0; v < s; v++)
			if (strcmp(cu->servers[v].text, text) == 0)
				dup++;
		for (v = 0; v < BALANCE_VNODES; v++) {
			seed = (uint64_t)dup << 32 | v;
			p->ring[k].hash = XXH3_64bits_withSeed(text,
			    strlen(text), seed);
			p->ring[k].server = s;
			k++;
		}
	}
	qsort(p->ring, p->nring, sizeof *p->ring, vnode_cmp);
	return (0);
}

struct balance *
balance_new(const struct config *cfg)
{
	struct balance *b;
	const struct config_upstream *cu;
	struct bpool *p;
	unsigned u;

	CHECK_OBJ_NOTNULL(cfg, CONFIG_MAGIC);
	b = calloc(1, sizeof *b);
	if (b == NULL)
		return (NULL);
	b->magic = BALANCE_MAGIC;
	b->pools = calloc(cfg->nupstreams + 1, sizeof *b->pools);
	if (b->pools == NULL)
		goto fail;
	for (u = 0; u < cfg->nupstreams; u++) {
		cu = &cfg->upstreams[u];
		p = &b->pools[u];
		b->npools = u + 1;
		assert_always(cu->nservers > 0);
		p->how = cu->balance;
		p->nservers = cu->nservers;
		p->max_fails = cu->max_fails;
		p->fail_timeout = cu->fail_timeout;
		p->srv = calloc(cu->nservers, sizeof *p->srv);
		if (p->srv == NULL)
			goto fail;
		if (p->how == BALANCE_HASH && ring_build(p, cu) != 0)
			goto fail;
	}
	return (b);

fail:
	balance_free(b);
	return (NULL);
}

void
balance_free(struct balance *b)
{
	unsigned u;

	if (b == NULL)
		return;
	CHECK_OBJ(b, BALANCE_MAGIC);
	for (u = 0; u < b->npools; u++) {
		free(b->pools[u].srv);
		free(b->pools[u].ring);
	}
	free(b->pools);
	b->magic = 0;
	free(b);
}

/*--------------------------------------------------------------------*/

static struct bpool *
pool_get(const struct balance *b, unsigned u)
{
	CHECK_OBJ_NOTNULL(b, BALANCE_MAGIC);
	assert_always(u < b->npools);
	return (&b->pools[u]);
}

static struct bsrv *
srv_get(const struct balance *b, unsigned u, unsigned s)
{
	struct bpool *p = pool_get(b, u);

	assert_always(s < p->nservers);
	return (&p->srv[s]);
}

static bool
srv_up(const struct bpool *p, const struct bsrv *sv, uint64_t now)
{
	return (p->max_fails == 0 || now >= sv->down_until);
}

static bool
eligible(const struct bpool *p, unsigned s, int exclude, uint64_t now)
{
	return ((int)s != exclude && srv_up(p, &p->srv[s], now));
}

static int
pick_rr(struct bpool *p, int exclude, uint64_t now)
{
	unsigned i, s;

	for (i = 0; i < p->nservers; i++) {
		s = (p->next + i) % p->nservers;
		if (eligible(p, s, exclude, now)) {
			p->next = (s + 1) % p->nservers;
			return ((int)s);
		}
	}
	return (-1);
}

/* Fewest active requests; ties go to the first from the cursor on. */
static int
pick_least(struct bpool *p, int exclude, uint64_t now)
{
	unsigned i, s;
	int best = -1;

	for (i = 0; i < p->nservers; i++) {
		s = (p->next + i) % p->nservers;
		if (!eligible(p, s, exclude, now))
			continue;
		if (best < 0 || p->srv[s].active < p->srv[best].active)
			best = (int)s;
	}
	if (best >= 0)
		p->next = ((unsigned)best + 1) % p->nservers;
	return (best);
}

/* The owner of the first point at or after hash(key), walking on past
 * points of ineligible servers. */
static int
pick_hash(const struct bpool *p, const char *key, size_t key_len,
    int exclude, uint64_t now)
{
	uint64_t h;
	unsigned lo, hi, mid, i, s;

	for (s = 0; s < p->nservers; s++)
		if (eligible(p, s, exclude, now))
			break;
	if (s == p->nservers)
		return (-1);
	h = XXH3_64bits(key != NULL ? key : "", key != NULL ? key_len : 0);
	lo = 0;
	hi = p->nring;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (p->ring[mid].hash < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (i = 0; i < p->nring; i++) {
		s = p->ring[(lo + i) % p->nring].server;
		if (eligible(p, s, exclude, now))
			return ((int)s);
	}
	WRONG("eligible server without a ring point");
}

int
balance_pick(struct balance *b, unsigned u, const char *key,
    size_t key_len, int exclude, uint64_t now)
{
	struct bpool *p = pool_get(b, u);

	switch (p->how) {
	case BALANCE_LEAST_CONN:
		return (pick_least(p, exclude, now));
	case BALANCE_HASH:
		return (pick_hash(p, key, key_len, exclude, now));
	case BALANCE_ROUND_ROBIN:
	default:
		return (pick_rr(p, exclude, now));
	}
}

void
balance_inc(struct balance *b, unsigned u, unsigned s)
{
	struct bsrv *sv = srv_get(b, u, s);

	sv->active++;
}

void
balance_dec(struct balance *b, unsigned u, unsigned s)
{
	struct bsrv *sv = srv_get(b, u, s);

	assert_always(sv->active > 0);
	sv->active--;
}

void
balance_fail(struct balance *b, unsigned u, unsigned s, uint64_t now)
{
	struct bpool *p = pool_get(b, u);
	struct bsrv *sv = srv_get(b, u, s);

	if (sv->tripped) {
		/* the probe after a down period failed, or a late failure */
		sv->down_until = now + p->fail_timeout;
		return;
	}
	if (sv->fails == 0 || now - sv->fail_start >= p->fail_timeout ||
	    now < sv->fail_start) {
		sv->fails = 0;
		sv->fail_start = now;
	}
	sv->fails++;
	if (p->max_fails > 0 && sv->fails >= p->max_fails) {
		sv->tripped = true;
		sv->down_until = now + p->fail_timeout;
	}
}

void
balance_ok(struct balance *b, unsigned u, unsigned s)
{
	struct bsrv *sv = srv_get(b, u, s);

	sv->fails = 0;
	sv->tripped = false;
	sv->down_until = 0;
}

bool
balance_is_up(const struct balance *b, unsigned u, unsigned s, uint64_t now)
{
	const struct bpool *p = pool_get(b, u);

	return (srv_up(p, srv_get(b, u, s), now));
}

unsigned
balance_failures(const struct balance *b, unsigned u, unsigned s)
{
	return (srv_get(b, u, s)->fails);
}
