/*
 * proxy_cache.c -- the cache on the request path (part of the proxy: the
 * only code that knows both the store and the upstream).
 *
 *   pcache_request   key, lookup: HIT / STALE (+ background refresh) /
 *                    EXPIRED / MISS; on a miss the stampede lock decides
 *                    who fetches and who waits (polling, bounded)
 *   pcache_response  is the upstream's answer storable? stale_if_error
 *   pcache_body      copy body bytes into the fill as they stream by
 *   pcache_finish    store the complete response, or drop a partial one
 *
 * The response always streams to the client while it is being stored;
 * only a complete body is ever handed to the store, so an aborted fill
 * leaves nothing behind.  A fill larger than max_object_size is abandoned
 * and the body keeps streaming.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "cache/cache.h"
#include "cache/policy.h"
#include "config.h"
#include "conn.h"
#include "hbuf.h"
#include "log.h"
#include "stats.h"
#include "util.h"
#include "vas.h"

#define LOCK_POLL_MS 10

/* The store of this worker: release() callbacks of zero-copy bodies need it. */
static struct cache_store *cur_store;

static void pcache_got(void *arg, enum cache_rc rc, struct cache_obj *obj);

/*
 * Store callbacks may come later (Redis) than the call that asked for
 * them: count them on the conn, and when one arrives for a conn that was
 * closed meanwhile, do nothing but let the graveyard have it.
 */
static void
op_start(struct conn *c)
{
	c->pending++;
}

/* True when the conn is gone and the callback must only clean up. */
static bool
op_done(struct conn *c)
{
	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	AN(c->pending);
	c->pending--;
	if (c->state != CS_DEAD)
		return (false);
	if (c->pending == 0)
		event_active(c->env->reaper, EV_TIMEOUT, 0);
	return (true);
}

static const struct config_route *
route_of(const struct conn *c)
{
	return (&c->env->cfg->routes[c->txn.route]);
}

static void
set_status(struct conn *c, enum cache_status st)
{
	static const enum stats_id ids[] = {
		[CACHE_ST_HIT] = STAT_CACHE_HIT,
		[CACHE_ST_MISS] = STAT_CACHE_MISS,
		[CACHE_ST_EXPIRED] = STAT_CACHE_EXPIRED,
		[CACHE_ST_STALE] = STAT_CACHE_STALE,
		[CACHE_ST_BYPASS] = STAT_CACHE_BYPASS,
	};

	c->txn.cache_st = (int)st;
	if (st != CACHE_ST_NONE && !c->internal)
		stats_add(ids[st], 1);
}

static void
obj_release(struct cache_obj *obj)
{
	cur_store->ops->release(cur_store, obj);
}

/* evbuffer_add_reference cleanup: the body has been sent (or dropped). */
static void
body_sent(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	obj_release(arg);
}

/* Serve a stored response with X-Cache: st; consumes the reference.
 * count: add st to the statistics (a collapsed waiter was counted when it
 * missed). */
static void
serve_obj(struct conn *c, struct cache_obj *obj, enum cache_status st,
    bool count)
{
	struct txn *t = &c->txn;
	struct evbuffer *out = c->out;
	uint64_t now = util_epoch_ms();
	struct hbuf b;

	if (count)
		set_status(c, st);
	else
		t->cache_st = (int)st;
	if (!t->req_body.done || !c->keep_alive || c->env->draining)
		t->close_after = true;
	if (hb_open(&b, out, obj->headers_len + 256) != 0) {
		obj_release(obj);
		conn_close(c);
		return;
	}
	hb_lit(&b, "HTTP/1.1 ");
	hb_u64(&b, (uint64_t)obj->status);
	hb_lit(&b, " ");
	hb_str(&b, http_reason(obj->status));
	hb_lit(&b, "\r\n");
	hb_add(&b, obj->headers, obj->headers_len);
	if (obj->status != 204) {
		hb_lit(&b, "Content-Length: ");
		hb_u64(&b, obj->body_len);
		hb_lit(&b, "\r\n");
	}
	hb_lit(&b, "Age: ");
	hb_u64(&b, policy_age(obj, now));
	hb_lit(&b, "\r\nX-Cache: ");
	hb_str(&b, policy_xcache(st));
	if (t->close_after)
		hb_lit(&b, "\r\nConnection: close\r\n\r\n");
	else if (c->req.minor == 0)
		hb_lit(&b, "\r\nConnection: keep-alive\r\n\r\n");
	else
		hb_lit(&b, "\r\n\r\n");
	(void)hb_close(&b);     /* sized from the stored headers: fits */
	t->status = obj->status;
	if (c->req.meth != HTTP_M_HEAD && obj->body_len > 0) {
		t->bytes_out = obj->body_len;
		/* zero copy: the client reads straight from the store */
		if (evbuffer_add_reference(out, obj->body, obj->body_len,
		    body_sent, obj) != 0) {
			evbuffer_add(out, obj->body, obj->body_len);
			obj_release(obj);
		}
	} else
		obj_release(obj);
	conn_request_done(c);
}

/* ---- background refresh (stale_while_revalidate) --------------------- */

static void
refresh_sink_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	(void)arg;
	evbuffer_drain(in, evbuffer_get_length(in));
}


/*
 * Fetch the entry again without a client (stale_while_revalidate): once
 * per entry, however many clients see it stale, by taking the stampede
 * lock first.  The lock may answer later than this request lives (Redis),
 * so what the refresh needs is copied into a context of its own: the
 * synthetic request (a GET of the same target with the same headers) and
 * the key.  The refresh goes through an internal connection whose
 * "client" is one end of a bufferevent pair; the other end throws the
 * response away.  The refresh owns the lock and releases it when its fill
 * ends.
 */
struct refresh {
	struct worker_env       *env;
	char                     peer_ip[64];
	size_t                   keylen;
	struct evbuffer         *req;
	char                     key[];
};

static void
refresh_free(struct refresh *r)
{
	evbuffer_free(r->req);
	free(r);
}

static void
refresh_locked(void *arg, enum cache_rc rc, uint64_t token)
{
	struct refresh *r = arg;
	struct worker_env *env = r->env;
	struct bufferevent *pair[2];
	struct conn *ic;

	if (rc != CACHE_OK) {
		refresh_free(r);
		return;
	}
	if (bufferevent_pair_new(env->base, BEV_OPT_CLOSE_ON_FREE |
	    BEV_OPT_DEFER_CALLBACKS, pair) != 0) {
		env->store->ops->unlock(env->store, r->key, r->keylen, token);
		refresh_free(r);
		return;
	}
	ic = conn_new_internal(env, pair[0], r->peer_ip);
	if (ic == NULL) {
		bufferevent_free(pair[1]);
		env->store->ops->unlock(env->store, r->key, r->keylen, token);
		refresh_free(r);
		return;
	}
	ic->txn.lock_token = token;
	ic->txn.locked = true;
	ic->partner = pair[1];          /* freed with the internal conn */
	bufferevent_setcb(pair[1], refresh_sink_read, NULL, NULL, NULL);
	bufferevent_enable(pair[1], EV_READ | EV_WRITE);
	evbuffer_add_buffer(bufferevent_get_output(pair[1]), r->req);
	refresh_free(r);
}

static void
start_refresh(struct conn *c)
{
	struct worker_env *env = c->env;
	const struct http_msg *m = &c->req;
	struct refresh *r;

	r = malloc(sizeof *r + c->txn.keylen + 1);
	if (r == NULL)
		return;
	r->env = env;
	snprintf(r->peer_ip, sizeof r->peer_ip, "%s", c->peer_ip);
	r->keylen = c->txn.keylen;
	memcpy(r->key, c->key, c->txn.keylen);
	r->key[r->keylen] = '\0';
	r->req = evbuffer_new();
	if (r->req == NULL) {
		free(r);
		return;
	}
	/* GET (a HEAD would not give us a body), same target and headers */
	evbuffer_add_printf(r->req, "GET %.*s HTTP/1.1\r\n", (int)m->target_len,
	    m->target);
	for (unsigned i = 0; i < m->nhdr; i++) {
		const struct http_header *h = &m->hdr[i];

		if (util_tok_eq(h->name, h->name_len, "Connection") ||
		    util_tok_eq(h->name, h->name_len, "Content-Length") ||
		    util_tok_eq(h->name, h->name_len, "Transfer-Encoding") ||
		    util_tok_eq(h->name, h->name_len, "Expect"))
			continue;
		evbuffer_add(r->req, h->name, h->name_len);
		evbuffer_add(r->req, ": ", 2);
		evbuffer_add(r->req, h->value, h->value_len);
		evbuffer_add(r->req, "\r\n", 2);
	}
	evbuffer_add(r->req, "Connection: close\r\n\r\n", 21);
	env->store->ops->lock(env->store, r->key, r->keylen,
	    env->cfg->timeouts.upstream_connect + env->cfg->timeouts.upstream_read,
	    util_epoch_ms(), refresh_locked, r);
}

/* ---- miss, lock and waiting ------------------------------------------ */

static void
miss_locked(void *arg, enum cache_rc rc, uint64_t token);

/* The second look after taking the lock: serve a fill that just landed,
 * else fetch (we hold the lock). */
static void
relock_got(void *arg, enum cache_rc rc, struct cache_obj *obj)
{
	struct conn *c = arg;

	if (op_done(c)) {
		if (rc == CACHE_OK)
			c->env->store->ops->release(c->env->store, obj);
		return;
	}
	if (rc == CACHE_OK) {
		if (policy_freshness(obj, util_epoch_ms()) == CACHE_FRESH) {
			stats_add(STAT_CACHE_COLLAPSED, 1);
			serve_obj(c, obj, CACHE_ST_HIT, false);
			return;
		}
		c->env->store->ops->release(c->env->store, obj);
	}
	proxy_forward(c);
}

static void
wait_poll(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct worker_env *env = c->env;

	(void)fd;
	(void)what;
	CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
	op_start(c);
	env->store->ops->get(env->store, c->key, c->txn.keylen,
	    util_epoch_ms(), pcache_got, c);
}

static void
wait_more(struct conn *c)
{
	struct timeval tv = { 0, LOCK_POLL_MS * 1000 };

	if (c->wait_timer == NULL) {
		c->wait_timer = evtimer_new(c->env->base, wait_poll, c);
		if (c->wait_timer == NULL) {
			proxy_forward(c);
			return;
		}
	}
	evtimer_add(c->wait_timer, &tv);
}

static void
lock_or_forward(struct conn *c)
{
	struct worker_env *env = c->env;
	const struct config *cfg = env->cfg;

	if (cfg->cache.lock && c->txn.cache_fill) {
		op_start(c);
		env->store->ops->lock(env->store, c->key, c->txn.keylen,
		    cfg->timeouts.upstream_connect + cfg->timeouts.upstream_read,
		    util_epoch_ms(), miss_locked, c);
	} else
		proxy_forward(c);
}

static void
miss_locked(void *arg, enum cache_rc rc, uint64_t token)
{
	struct conn *c = arg;
	struct txn *t = &c->txn;

	if (op_done(c)) {
		if (rc == CACHE_OK)
			c->env->store->ops->unlock(c->env->store, c->key,
			    t->keylen, token);
		return;
	}
	if (rc == CACHE_OK) {
		if (t->wait_deadline != 0) {
			/* The fill we waited for ended without an entry
			 * (not storable, or it failed): like nginx's
			 * proxy_cache_lock, the waiters now go to the
			 * upstream side by side instead of queueing behind
			 * one new filler after another. */
			c->env->store->ops->unlock(c->env->store, c->key,
			    t->keylen, token);
			/* ...unless the fill landed after our last look (a
			 * network store orders the filler's SET before its
			 * unlock, so a lookup now sees it) */
			op_start(c);
			c->env->store->ops->get(c->env->store, c->key,
			    t->keylen, util_epoch_ms(), relock_got, c);
			return;
		}
		t->locked = true;
		t->lock_token = token;
		/* another fill may have landed between our lookup and the
		 * lock (a network store answers them apart): look again */
		op_start(c);
		c->env->store->ops->get(c->env->store, c->key, t->keylen,
		    util_epoch_ms(), relock_got, c);
		return;
	}
	if (rc == CACHE_LOCKED && t->wait_deadline == 0) {
		/* somebody is fetching it: wait for their fill */
		stats_add(STAT_CACHE_LOCK_WAITS, 1);
		t->wait_deadline = util_now_ms() + c->env->cfg->cache.lock_timeout;
		wait_more(c);
		return;
	}
	if (rc == CACHE_LOCKED && util_now_ms() < t->wait_deadline) {
		wait_more(c);
		return;
	}
	/* lock_timeout passed, or the store failed: fetch ourselves */
	proxy_forward(c);
}

static void
go_miss(struct conn *c, enum cache_status st)
{
	struct txn *t = &c->txn;

	if (t->wait_deadline == 0)
		set_status(c, st);
	/* a HEAD response has no body: it must not become the GET entry */
	t->cache_fill = (c->req.meth == HTTP_M_GET);
	lock_or_forward(c);
}

/* A lookup (first, or a poll while waiting on the lock) answered. */
static void
pcache_got(void *arg, enum cache_rc rc, struct cache_obj *obj)
{
	struct conn *c = arg;
	struct worker_env *env = c->env;
	struct txn *t = &c->txn;
	bool waiting = t->wait_deadline != 0;
	uint64_t now = util_epoch_ms();

	if (op_done(c)) {
		if (rc == CACHE_OK)
			env->store->ops->release(env->store, obj);
		return;
	}
	if (rc == CACHE_ERROR) {
		/* the store counted it (STAT_CACHE_ERRORS) */
		if (!waiting)
			set_status(c, CACHE_ST_BYPASS);
		t->cache_fill = false;
		proxy_forward(c);
		return;
	}
	if (rc == CACHE_OK) {
		switch (policy_freshness(obj, now)) {
		case CACHE_FRESH:
			if (waiting) {
				/* served from another request's fill; it was
				 * counted as a MISS when it started waiting */
				stats_add(STAT_CACHE_COLLAPSED, 1);
				serve_obj(c, obj, CACHE_ST_HIT, false);
				return;
			}
			serve_obj(c, obj, CACHE_ST_HIT, true);
			return;
		case CACHE_STALE_SWR:
			if (!waiting) {
				start_refresh(c);
				serve_obj(c, obj, CACHE_ST_STALE, true);
				return;
			}
			break;
		case CACHE_STALE_SIE:
			if (!waiting && t->stale == NULL) {
				t->stale = obj;
				obj = NULL;
			}
			break;
		case CACHE_EXPIRED:
			break;
		}
		if (obj != NULL)
			env->store->ops->release(env->store, obj);
		if (waiting) {
			if (util_now_ms() >= t->wait_deadline)
				proxy_forward(c);
			else
				wait_more(c);
			return;
		}
		go_miss(c, CACHE_ST_EXPIRED);
		return;
	}
	/* MISS */
	if (waiting) {
		/* the filler gave up or failed: try to become the filler */
		lock_or_forward(c);
		return;
	}
	go_miss(c, CACHE_ST_MISS);
}

void
pcache_request(struct conn *c)
{
	struct worker_env *env = c->env;
	const struct config *cfg = env->cfg;
	struct txn *t = &c->txn;
	size_t need;
	ssize_t n;

	cur_store = env->store;
	if (!policy_request_cacheable(&c->req)) {
		set_status(c, CACHE_ST_BYPASS);
		proxy_forward(c);
		return;
	}
	need = strlen(cfg->cache.namespace) + c->req.path_len +
	    (c->req.authority ? c->req.authority_len : c->req.host_len) + 16;
	if (need > c->key_cap) {
		char *k = realloc(c->key, need);

		if (k == NULL) {
			set_status(c, CACHE_ST_BYPASS);
			proxy_forward(c);
			return;
		}
		c->key = k;
		c->key_cap = need;
	}
	n = policy_key(cfg->cache.namespace, &c->req, c->key, c->key_cap);
	if (n < 0) {
		set_status(c, CACHE_ST_BYPASS);
		proxy_forward(c);
		return;
	}
	t->keylen = (size_t)n;
	if (c->internal) {
		/* a background refresh: fetch and store, no lookup */
		t->cache_fill = true;
		proxy_forward(c);
		return;
	}
	/* a cacheable request has no body (policy_request_cacheable), so
	 * reading stays on while the store answers: only pipelined bytes,
	 * bounded by the input's high watermark, can arrive */
	op_start(c);
	env->store->ops->get(env->store, c->key, t->keylen, util_epoch_ms(),
	    pcache_got, c);
}

/* ---- the upstream's response ------------------------------------------ */

static void
fill_drop(struct conn *c)
{
	struct txn *t = &c->txn;

	t->filling = false;
	if (c->fill != NULL)
		evbuffer_drain(c->fill, evbuffer_get_length(c->fill));
}

static void
unlock(struct conn *c)
{
	struct txn *t = &c->txn;

	if (t->locked) {
		c->env->store->ops->unlock(c->env->store, c->key, t->keylen,
		    t->lock_token);
		t->locked = false;
	}
}

int
pcache_response(struct conn *c, const struct http_msg *r)
{
	struct txn *t = &c->txn;
	const struct config *cfg = c->env->cfg;
	uint64_t ttl;
	ssize_t hl;
	size_t cap, tl;
	struct iovec tags[64];
	unsigned ntags;

	if (t->stale != NULL && r->status >= 500 && r->status <= 504)
		return (1);
	if (!t->cache_fill)
		return (0);
	t->cache_fill = false;
	if (!policy_response_storable(r, route_of(c)->cache_ttl, &ttl) ||
	    (r->body == HTTP_BODY_LENGTH &&
	     r->content_length > cfg->cache.max_object_size)) {
		unlock(c);
		return (0);
	}
	/* headers and tags outlive the upstream's head bytes: copy them */
	ntags = policy_tags(r, tags, ARRAY_SIZE(tags));
	cap = r->head_len + 64;
	if (cap > c->fill_meta_cap) {
		char *p = realloc(c->fill_meta, cap);

		if (p == NULL) {
			unlock(c);
			return (0);
		}
		c->fill_meta = p;
		c->fill_meta_cap = cap;
	}
	hl = policy_store_headers(r, c->fill_meta, c->fill_meta_cap);
	if (hl < 0) {
		unlock(c);
		return (0);
	}
	tl = 0;
	for (unsigned i = 0; i < ntags; i++) {
		if ((size_t)hl + tl + tags[i].iov_len + 1 > c->fill_meta_cap)
			break;
		memcpy(c->fill_meta + hl + tl, tags[i].iov_base, tags[i].iov_len);
		tl += tags[i].iov_len;
		c->fill_meta[hl + tl++] = ' ';
	}
	if (c->fill == NULL && (c->fill = evbuffer_new()) == NULL) {
		unlock(c);
		return (0);
	}
	c->fill_hdr_len = (size_t)hl;
	c->fill_tags_len = tl;
	c->fill_status = r->status;
	c->fill_ttl = ttl;
	t->filling = true;
	return (0);
}

void
pcache_body(struct conn *c, struct evbuffer *in, size_t n)
{
	struct evbuffer_iovec v[16];
	size_t left = n;
	int nv;

	if (!c->txn.filling || n == 0)
		return;
	if (evbuffer_get_length(c->fill) + n > c->env->cfg->cache.max_object_size) {
		/* too big to store: keep streaming, stop copying */
		fill_drop(c);
		unlock(c);
		return;
	}
	nv = evbuffer_peek(in, (ssize_t)n, NULL, v, ARRAY_SIZE(v));
	for (int i = 0; i < nv && i < (int)ARRAY_SIZE(v) && left > 0; i++) {
		size_t k = v[i].iov_len < left ? v[i].iov_len : left;

		evbuffer_add(c->fill, v[i].iov_base, k);
		left -= k;
	}
	if (left > 0) {
		/* more pieces than v[] holds: copy the rest the slow way */
		size_t off = n - left;
		unsigned char *tmp = malloc(left);
		struct evbuffer_ptr p;

		if (tmp == NULL ||
		    evbuffer_ptr_set(in, &p, off, EVBUFFER_PTR_SET) != 0 ||
		    evbuffer_copyout_from(in, &p, tmp, left) != (ssize_t)left) {
			free(tmp);
			fill_drop(c);
			unlock(c);
			return;
		}
		evbuffer_add(c->fill, tmp, left);
		free(tmp);
	}
}

void
pcache_finish(struct conn *c, bool complete)
{
	struct worker_env *env = c->env;
	struct txn *t = &c->txn;
	struct cache_put p;
	struct evbuffer_iovec *v = NULL;
	struct iovec tags[64];
	int nv;

	if (t->filling && complete) {
		memset(&p, 0, sizeof p);
		p.status = c->fill_status;
		p.stored_at = util_epoch_ms();
		p.ttl = c->fill_ttl;
		p.swr = env->cfg->cache.stale_while_revalidate;
		p.sie = env->cfg->cache.stale_if_error;
		p.headers = c->fill_meta;
		p.headers_len = c->fill_hdr_len;
		nv = evbuffer_peek(c->fill, -1, NULL, NULL, 0);
		if (nv > 0) {
			v = calloc((size_t)nv, sizeof *v);
			if (v == NULL)
				nv = -1;
			else
				nv = evbuffer_peek(c->fill, -1, NULL, v, nv);
		}
		if (nv >= 0) {
			/* evbuffer_iovec and struct iovec share a layout */
			struct iovec *body = calloc(nv > 0 ? (size_t)nv : 1,
			    sizeof *body);

			if (body != NULL) {
				size_t off = c->fill_hdr_len, s = off;

				for (int i = 0; i < nv; i++) {
					body[i].iov_base = v[i].iov_base;
					body[i].iov_len = v[i].iov_len;
				}
				p.body = body;
				p.nbody = (unsigned)nv;
				/* tags: space-terminated pieces after the headers */
				for (size_t i = off; i < off + c->fill_tags_len &&
				    p.ntags < ARRAY_SIZE(tags); i++) {
					if (c->fill_meta[i] != ' ')
						continue;
					tags[p.ntags].iov_base = c->fill_meta + s;
					tags[p.ntags].iov_len = i - s;
					p.ntags++;
					s = i + 1;
				}
				p.tags = tags;
				env->store->ops->set(env->store, c->key, t->keylen,
				    &p, NULL, NULL);
				free(body);
			}
		}
		free(v);
	}
	fill_drop(c);
	unlock(c);
}

/* The upstream failed before a response head went out.  Serve the entry
 * kept for stale_if_error if there is one. */
bool
pcache_fail(struct conn *c)
{
	struct txn *t = &c->txn;
	struct cache_obj *obj = t->stale;

	pcache_finish(c, false);
	if (obj == NULL || t->head_sent)
		return (false);
	t->stale = NULL;
	/* it was counted as EXPIRED when the lookup found it */
	serve_obj(c, obj, CACHE_ST_STALE, false);
	return (true);
}

void
pcache_txn_end(struct conn *c)
{
	struct txn *t = &c->txn;

	if (c->wait_timer != NULL)
		evtimer_del(c->wait_timer);
	if (t->filling || t->locked)
		pcache_finish(c, false);
	if (t->stale != NULL) {
		c->env->store->ops->release(c->env->store, t->stale);
		t->stale = NULL;
	}
}

void
pcache_conn_free(struct conn *c)
{
	if (c->wait_timer != NULL)
		event_free(c->wait_timer);
	if (c->fill != NULL)
		evbuffer_free(c->fill);
	free(c->fill_meta);
	free(c->key);
}
