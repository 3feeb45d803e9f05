/*
 * mem.h -- size-class free lists under libevent's allocations.
 *
 * A keep-alive request allocates and frees the same few evbuffer chains
 * every time (the input chain that a read fills, the output chain a head
 * is built in), 1 to 64 KiB each: sizes glibc serves from its slower bins,
 * not its per-thread cache.  mem_install() hands libevent an allocator
 * that keeps freed blocks of those sizes on per-class free lists (powers
 * of two, each list bounded) and reuses them, so the steady state of a
 * worker makes no malloc/free calls per request.  Larger or odd requests
 * go straight to malloc.  A process is single-threaded with respect to
 * these lists (one libevent loop per worker, nothing else allocates
 * through libevent).
 *
 * Under AddressSanitizer the lists are off (every call goes to malloc and
 * free), so that a use after free of a libevent buffer is still caught.
 */
#ifndef STOA_MEM_H
#define STOA_MEM_H

#include <stdbool.h>
#include <stddef.h>

/* Before any other libevent call (libevent requires it). */
void mem_install(void);

/* Free what the lists hold (worker exit; keeps leak checkers quiet). */
void mem_release(void);

/* The allocator itself: libevent's, and stoa's own per-connection and
 * per-stream objects (struct conn is ~4 KB, past glibc's fast caches). */
void *mem_alloc(size_t n);
void *mem_zalloc(size_t n);                     /* zeroed */
void *mem_realloc(void *p, size_t n);
void  mem_free(void *p);

/* Blocks on the free lists now (unit tests, diagnostics). */
size_t mem_cached(void);

/* Lists on or off for blocks allocated from now on (unit tests; the
 * default is on, off under AddressSanitizer). */
void mem_set_lists(bool on);

#endif
