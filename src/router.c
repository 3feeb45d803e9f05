/*
 * router.c -- see router.h.
 *
 * Shape: the route prefixes are normalised like request paths and the
 * distinct ones sorted byte-wise into `groups`.  Each group knows its
 * parent, the longest other group that is a proper prefix of it, and
 * holds its routes split by host kind: exact names (sorted), wildcard
 * suffixes (".example.com", sorted) and at most one host-less route.
 *
 * Lookup of a normalised path s: binary-search the last group <= s.  Every
 * group between the longest prefix of s and s itself starts with that
 * prefix, so walking `parent` from the found group reaches the longest
 * prefix of s first, then every shorter one in order; at each one the
 * host is tried exact, then wildcard (longest suffix first), then
 * host-less.  No allocation; cost O(log groups + chain depth).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "router.h"
#include "util.h"
#include "vas.h"

#define ROUTER_MAGIC 0x7a3e1c55u
#define HOST_MAX     256        /* longest normalised host we compare */

enum hkind { HK_EXACT = 0, HK_WILD, HK_ANY };

struct rt_name {
	const char      *s;         /* exact name, or wildcard suffix ".x.y" */
	size_t           len;
	int              route;
};

struct rt_group {
	const char      *prefix;    /* normalised */
	size_t           plen;
	int              parent;    /* longest group that is a proper prefix, or -1 */
	int              any;       /* host-less route, or -1 */
	unsigned         nexact;
	unsigned         nwild;
	struct rt_name  *exact;
	struct rt_name  *wild;
};

struct router {
	unsigned         magic;
	unsigned         ngroups;
	struct rt_group *groups;
	struct rt_name  *names;
	char            *pool;      /* all strings above */
};

/* Build-time record of one live route. */
struct rt_tmp {
	const char      *prefix;
	size_t           plen;
	enum hkind       kind;
	const char      *host;
	size_t           hlen;
	int              route;
};

/*--------------------------------------------------------------------*/

static int
bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t n;
	int c;

	n = alen < blen ? alen : blen;
	c = n > 0 ? memcmp(a, b, n) : 0;
	if (c != 0)
		return (c);
	return (alen < blen ? -1 : alen > blen ? 1 : 0);
}

static int
unreserved(unsigned char c)
{
	return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	    c == '~');
}

/*
 * Length of the path part of a target: up to '?' or '#'.
 */
static size_t
path_part(const char *in, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (in[i] == '?' || in[i] == '#')
			break;
	return (i);
}

/*
 * Normalise the path in[0..len) (already cut at '?'/'#') into out, which
 * must hold len bytes (the output is never longer than the input).
 * Returns the output length, or -1 for a path that does not start with
 * '/', a bad %-escape, or a ".." above the root.
 */
static long
path_norm(const char *in, size_t len, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, o, seg, seglen;
	int hi, lo;
	unsigned char c;

	if (len == 0 || in[0] != '/')
		return (-1);
	assert_always(cap >= len);
	out[0] = '/';
	o = 1;
	i = 1;
	for (;;) {
		seg = o;
		while (i < len && in[i] != '/') {
			c = (unsigned char)in[i];
			if (c != '%') {
				out[o++] = (char)c;
				i++;
				continue;
			}
			if (len - i < 3)
				return (-1);
			hi = util_hexval((unsigned char)in[i + 1]);
			lo = util_hexval((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0)
				return (-1);
			c = (unsigned char)(hi << 4 | lo);
			if (unreserved(c)) {
				out[o++] = (char)c;
			} else {
				out[o++] = '%';
				out[o++] = hex[hi];
				out[o++] = hex[lo];
			}
			i += 3;
		}
		seglen = o - seg;
		if (seglen == 1 && out[seg] == '.') {
			o = seg;
		} else if (seglen == 2 && out[seg] == '.' && out[seg + 1] == '.') {
			o = seg;
			if (o == 1)
				return (-1);
			/* out[o - 1] is the '/' closing the previous segment */
			o--;
			while (out[o - 1] != '/')
				o--;
		} else if (seglen > 0 && i < len) {
			out[o++] = '/';
		}
		if (i >= len)
			break;
		i++;            /* the '/' */
	}
	return ((long)o);
}

/*
 * Normalise a host for comparison into out (HOST_MAX): strip ":port"
 * (after "]" for "[v6]"), strip one trailing '.', lower-case ASCII.
 * Returns the length, 0 for "no usable host" (empty, unbalanced bracket,
 * bare IPv6 without brackets, longer than HOST_MAX).
 */
static size_t
host_norm(const char *h, size_t len, char *out)
{
	const char *p;
	size_t n, i;

	if (h == NULL || len == 0)
		return (0);
	if (h[0] == '[') {
		p = memchr(h, ']', len);
		if (p == NULL)
			return (0);
		n = (size_t)(p - h) + 1;
		if (n < len && h[n] != ':')
			return (0);
	} else {
		p = memchr(h, ':', len);
		n = p == NULL ? len : (size_t)(p - h);
		if (p != NULL && memchr(p + 1, ':', len - n - 1) != NULL)
			return (0);
	}
	if (n > 1 && h[n - 1] == '.')
		n--;
	if (n == 0 || n > HOST_MAX)
		return (0);
	for (i = 0; i < n; i++) {
		out[i] = h[i];
		if (out[i] >= 'A' && out[i] <= 'Z')
			out[i] = (char)(out[i] - 'A' + 'a');
	}
	return (n);
}

/*--------------------------------------------------------------------*/

static int
tmp_cmp(const void *va, const void *vb)
{
	const struct rt_tmp *a = va, *b = vb;
	int c;

	c = bytes_cmp(a->prefix, a->plen, b->prefix, b->plen);
	if (c != 0)
		return (c);
	if (a->kind != b->kind)
		return (a->kind < b->kind ? -1 : 1);
	c = bytes_cmp(a->host, a->hlen, b->host, b->hlen);
	if (c != 0)
		return (c);
	return (a->route < b->route ? -1 : a->route > b->route);
}

/* Same prefix and host (both may differ only in file order). */
static int
tmp_same(const struct rt_tmp *a, const struct rt_tmp *b)
{
	return (a->kind == b->kind &&
	    bytes_cmp(a->prefix, a->plen, b->prefix, b->plen) == 0 &&
	    bytes_cmp(a->host, a->hlen, b->host, b->hlen) == 0);
}

/*
 * Fill t for route i, copying normalised strings into *pp.  Returns 0, or
 * -1 for a route that can never match (its host is unusable); such a
 * route is left out rather than widened to any host.
 */
static int
tmp_fill(struct rt_tmp *t, const struct config_route *cr, int i, char **pp)
{
	char hb[HOST_MAX + 2];
	const char *h;
	size_t len, n;
	long pl;

	t->route = i;
	len = strlen(cr->prefix);
	pl = path_norm(cr->prefix, path_part(cr->prefix, len), *pp, len);
	if (pl < 0) {
		/* cannot match any normalised path; keep it verbatim */
		memcpy(*pp, cr->prefix, len);
		pl = (long)len;
	}
	t->prefix = *pp;
	t->plen = (size_t)pl;
	*pp += pl;

	t->kind = HK_ANY;
	t->host = NULL;
	t->hlen = 0;
	if (cr->host == NULL)
		return (0);
	h = cr->host;
	len = strlen(h);
	if (len >= 2 && h[0] == '*' && h[1] == '.') {
		t->kind = HK_WILD;
		h++;
		len--;
	} else {
		t->kind = HK_EXACT;
		/* a bare IPv6 literal is compared in its bracketed form */
		if (h[0] != '[' && len <= HOST_MAX - 2 &&
		    strchr(h, ':') != strrchr(h, ':')) {
			hb[0] = '[';
			memcpy(hb + 1, h, len);
			hb[len + 1] = ']';
			h = hb;
			len += 2;
		}
	}
	n = host_norm(h, len, *pp);
	if (n == 0 || (t->kind == HK_WILD && n < 2))
		return (-1);
	t->host = *pp;
	t->hlen = n;
	*pp += n;
	return (0);
}

struct router *
router_new(const struct config *cfg)
{
	struct router *r;
	struct rt_tmp *t = NULL;
	struct rt_group *g;
	int *stack = NULL;
	size_t poolsz = 1, k;
	unsigned i, n, ng, sp;
	char *p;

	CHECK_OBJ_NOTNULL(cfg, CONFIG_MAGIC);
	r = calloc(1, sizeof *r);
	if (r == NULL)
		return (NULL);
	r->magic = ROUTER_MAGIC;
	for (i = 0; i < cfg->nroutes; i++) {
		AN(cfg->routes[i].prefix);
		poolsz += strlen(cfg->routes[i].prefix);
		if (cfg->routes[i].host != NULL)
			poolsz += strlen(cfg->routes[i].host) + 2;
	}
	r->pool = malloc(poolsz);
	t = calloc(cfg->nroutes + 1, sizeof *t);
	r->names = calloc(cfg->nroutes + 1, sizeof *r->names);
	r->groups = calloc(cfg->nroutes + 1, sizeof *r->groups);
	stack = calloc(cfg->nroutes + 1, sizeof *stack);
	if (r->pool == NULL || t == NULL || r->names == NULL ||
	    r->groups == NULL || stack == NULL)
		goto fail;

	p = r->pool;
	for (i = n = 0; i < cfg->nroutes; i++)
		if (tmp_fill(&t[n], &cfg->routes[i], (int)i, &p) == 0)
			n++;
	assert_always((size_t)(p - r->pool) < poolsz);
	qsort(t, n, sizeof *t, tmp_cmp);

	/*
	 * One group per distinct prefix; within it the order of tmp_cmp
	 * puts exact before wildcard before host-less, each sorted by host
	 * and then by file order, so the first of equal keys is kept.
	 */
	ng = 0;
	g = NULL;
	for (i = k = 0; i < n; i++) {
		if (g == NULL || bytes_cmp(g->prefix, g->plen, t[i].prefix,
		    t[i].plen) != 0) {
			g = &r->groups[ng++];
			g->prefix = t[i].prefix;
			g->plen = t[i].plen;
			g->any = -1;
			g->exact = g->wild = &r->names[k];
		}
		if (t[i].kind == HK_ANY) {
			if (g->any < 0)
				g->any = t[i].route;
			continue;
		}
		if (i > 0 && tmp_same(&t[i - 1], &t[i]))
			continue;       /* same prefix+host, later in file */
		r->names[k].s = t[i].host;
		r->names[k].len = t[i].hlen;
		r->names[k].route = t[i].route;
		k++;
		if (t[i].kind == HK_EXACT) {
			g->nexact++;
			g->wild = &r->names[k];
		} else {
			g->nwild++;
		}
	}
	r->ngroups = ng;

	/* parents: the stack holds the ancestor chain of the previous group */
	for (i = sp = 0; i < ng; i++) {
		g = &r->groups[i];
		while (sp > 0) {
			const struct rt_group *a = &r->groups[stack[sp - 1]];

			if (a->plen < g->plen &&
			    memcmp(a->prefix, g->prefix, a->plen) == 0)
				break;
			sp--;
		}
		g->parent = sp > 0 ? stack[sp - 1] : -1;
		stack[sp++] = (int)i;
	}
	free(stack);
	free(t);
	return (r);

fail:
	free(stack);
	free(t);
	router_free(r);
	return (NULL);
}

void
router_free(struct router *r)
{
	if (r == NULL)
		return;
	CHECK_OBJ(r, ROUTER_MAGIC);
	free(r->groups);
	free(r->names);
	free(r->pool);
	r->magic = 0;
	free(r);
}

/*--------------------------------------------------------------------*/

static int
names_find(const struct rt_name *v, unsigned n, const char *s, size_t len)
{
	unsigned lo = 0, hi = n, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = bytes_cmp(v[mid].s, v[mid].len, s, len);
		if (c == 0)
			return (v[mid].route);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (-1);
}

static int
group_match(const struct rt_group *g, const char *h, size_t hlen)
{
	size_t k;
	int rt;

	if (hlen > 0) {
		if (g->nexact > 0) {
			rt = names_find(g->exact, g->nexact, h, hlen);
			if (rt >= 0)
				return (rt);
		}
		if (g->nwild > 0) {
			/* longest suffix first; the label before it is non-empty */
			for (k = 1; k < hlen; k++) {
				if (h[k] != '.')
					continue;
				rt = names_find(g->wild, g->nwild, h + k, hlen - k);
				if (rt >= 0)
					return (rt);
			}
		}
	}
	return (g->any);
}

int
router_match(const struct router *r, const char *host, size_t host_len,
    const char *path, size_t path_len)
{
	char pb[ROUTER_PATH_MAX];
	char hb[HOST_MAX];
	const struct rt_group *g;
	const char *s;
	size_t slen, hlen;
	unsigned lo, hi, mid;
	int j, rt;
	long nl;

	CHECK_OBJ_NOTNULL(r, ROUTER_MAGIC);
	AN(path);

	slen = path_part(path, path_len);
	if (STOA_LIKELY(slen <= sizeof pb)) {
		nl = path_norm(path, slen, pb, sizeof pb);
		if (nl < 0)
			return (ROUTER_BAD_PATH);
		s = pb;
		slen = (size_t)nl;
	} else {
		/* too long to normalise: only an already-normal path passes */
		if (path[0] != '/' || memchr(path, '%', slen) != NULL ||
		    memmem(path, slen, "/.", 2) != NULL ||
		    memmem(path, slen, "//", 2) != NULL)
			return (ROUTER_BAD_PATH);
		s = path;
	}
	hlen = host_norm(host, host_len, hb);

	/* last group <= s */
	lo = 0;
	hi = r->ngroups;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		g = &r->groups[mid];
		if (bytes_cmp(g->prefix, g->plen, s, slen) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	j = (int)lo - 1;
	while (j >= 0) {
		g = &r->groups[j];
		if (g->plen <= slen && memcmp(g->prefix, s, g->plen) == 0)
			break;
		j = g->parent;
	}
	for (; j >= 0; j = r->groups[j].parent) {
		rt = group_match(&r->groups[j], hb, hlen);
		if (rt >= 0)
			return (rt);
	}
	return (ROUTER_NO_MATCH);
}
