/*
 * mem.c -- size-class free lists under libevent's allocations; see mem.h.
 *
 * Every block carries a header naming its class (MEM_NONE: a plain malloc
 * block of any size).  Class c holds blocks of 1 << c bytes, header
 * included, for c in [MEM_MIN, MEM_MAX]; a freed block goes on its class's
 * list unless the list already holds MEM_KEEP_BYTES, then back to free().
 */
#include <limits.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "mem.h"

#if defined(__SANITIZE_ADDRESS__)
#define MEM_LISTS_DEFAULT false
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MEM_LISTS_DEFAULT false
#endif
#endif
#ifndef MEM_LISTS_DEFAULT
#define MEM_LISTS_DEFAULT true
#endif

#define MEM_MIN         6               /* 64 bytes */
#define MEM_MAX         16              /* 64 KiB */
#define MEM_NONE        0xffu
#define MEM_KEEP_BYTES  (1u << 20)      /* per class */

/* The header keeps the payload aligned like malloc's. */
union hdr {
	struct {
		unsigned        cls;
		union hdr      *next;           /* on a free list */
	} h;
	max_align_t      align;
};

static bool       use_lists = MEM_LISTS_DEFAULT;
static union hdr *lists[MEM_MAX + 1];
static size_t     nbytes[MEM_MAX + 1];
static size_t     ncached;

/* The class of a block for n payload bytes, or MEM_NONE: the smallest
 * power of two that holds n and the header (ceil(log2) from the leading
 * zeros), at least MEM_MIN. */
static unsigned
class_of(size_t n)
{
	unsigned long long total;
	unsigned c;

	if (n > ((size_t)1 << MEM_MAX) - sizeof(union hdr))
		return (MEM_NONE);
	total = (unsigned long long)(n + sizeof(union hdr));
	c = (unsigned)(sizeof total * CHAR_BIT) -
	    (unsigned)__builtin_clzll(total - 1);
	return (c < MEM_MIN ? MEM_MIN : c);
}

void *
mem_alloc(size_t n)
{
	unsigned c = use_lists ? class_of(n) : MEM_NONE;
	union hdr *b;

	if (c == MEM_NONE) {
		b = malloc(sizeof *b + n);
		if (b == NULL)
			return (NULL);
	} else if ((b = lists[c]) != NULL) {
		lists[c] = b->h.next;
		nbytes[c] -= (size_t)1 << c;
		ncached--;
	} else if ((b = malloc((size_t)1 << c)) == NULL)
		return (NULL);
	b->h.cls = c;
	b->h.next = NULL;
	return (b + 1);
}

void *
mem_zalloc(size_t n)
{
	void *p = mem_alloc(n);

	if (p != NULL)
		memset(p, 0, n);
	return (p);
}

void
mem_free(void *p)
{
	union hdr *b;
	unsigned c;

	if (p == NULL)
		return;
	b = (union hdr *)p - 1;
	c = b->h.cls;
	if (c == MEM_NONE || nbytes[c] + ((size_t)1 << c) > MEM_KEEP_BYTES) {
		free(b);
		return;
	}
	b->h.next = lists[c];
	lists[c] = b;
	nbytes[c] += (size_t)1 << c;
	ncached++;
}

void *
mem_realloc(void *p, size_t n)
{
	union hdr *b;
	void *q;
	size_t have;

	if (p == NULL)
		return (mem_alloc(n));
	b = (union hdr *)p - 1;
	if (b->h.cls == MEM_NONE) {
		b = realloc(b, sizeof *b + n);
		return (b != NULL ? b + 1 : NULL);
	}
	have = ((size_t)1 << b->h.cls) - sizeof *b;
	if (n <= have)
		return (p);
	if ((q = mem_alloc(n)) == NULL)
		return (NULL);
	memcpy(q, p, have);
	mem_free(p);
	return (q);
}

void
mem_set_lists(bool on)
{
	use_lists = on;
}

size_t
mem_cached(void)
{
	return (ncached);
}

void
mem_release(void)
{
	for (unsigned c = 0; c <= MEM_MAX; c++) {
		union hdr *b;

		while ((b = lists[c]) != NULL) {
			lists[c] = b->h.next;
			free(b);
		}
		nbytes[c] = 0;
	}
	ncached = 0;
}

void
mem_install(void)
{
	event_set_mem_functions(mem_alloc, mem_realloc, mem_free);
}
