/*
 * hbuf.h -- build a message head directly in an evbuffer's reserved space:
 * one reservation, plain memcpy for every piece, one commit.  A head built
 * with a series of evbuffer_add() calls runs the buffer's callbacks (and,
 * on a bufferevent's output, an event_add) once per piece; this runs them
 * once per head.
 *
 *	struct hbuf b;
 *	if (hb_open(&b, out, worst_case_size) == 0) {
 *		hb_add(&b, "HTTP/1.1 ", 9); ...
 *		rc = hb_close(&b);   // -1: worst_case_size was too small
 *	}
 */
#ifndef STOA_HBUF_H
#define STOA_HBUF_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <event2/buffer.h>

struct hbuf {
	struct evbuffer         *out;
	struct evbuffer_iovec    v;
	char                    *p;
	size_t                   n;
	size_t                   cap;
	bool                     overflow;
};

static inline int
hb_open(struct hbuf *b, struct evbuffer *out, size_t cap)
{
	b->out = out;
	b->n = 0;
	b->overflow = false;
	if (evbuffer_reserve_space(out, (ev_ssize_t)cap, &b->v, 1) != 1)
		return (-1);
	b->p = b->v.iov_base;
	b->cap = b->v.iov_len;
	return (0);
}

static inline void
hb_add(struct hbuf *b, const void *s, size_t len)
{
	if (len > b->cap - b->n) {
		b->overflow = true;
		return;
	}
	memcpy(b->p + b->n, s, len);
	b->n += len;
}

#define hb_lit(b, lit) hb_add((b), (lit), sizeof(lit) - 1)

static inline void
hb_str(struct hbuf *b, const char *s)
{
	hb_add(b, s, strlen(s));
}

/* Decimal digits of v. */
static inline void
hb_u64(struct hbuf *b, uint64_t v)
{
	char t[20];
	size_t i = sizeof t;

	do {
		t[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	hb_add(b, t + i, sizeof t - i);
}

/* "Name: value\r\n" */
static inline void
hb_hdr(struct hbuf *b, const char *name, size_t nlen, const char *val,
    size_t vlen)
{
	hb_add(b, name, nlen);
	hb_lit(b, ": ");
	hb_add(b, val, vlen);
	hb_lit(b, "\r\n");
}

/* Commit what was built; -1 (nothing committed) on overflow. */
static inline int
hb_close(struct hbuf *b)
{
	b->v.iov_len = b->overflow ? 0 : b->n;
	(void)evbuffer_commit_space(b->out, &b->v, 1);
	return (b->overflow ? -1 : 0);
}

#endif
