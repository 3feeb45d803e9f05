/* Unit tests for mem.c: the size-class free lists under libevent. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdalign.h>
#include <string.h>

#include "mem.h"

static int
setup(void **state)
{
	(void)state;
	mem_set_lists(true);
	mem_release();
	return (0);
}

static void
test_freed_block_is_reused_for_its_class(void **state)
{
	unsigned char *a, *b, *c;

	(void)state;
	a = mem_alloc(3000);
	assert_non_null(a);
	memset(a, 0xab, 3000);
	mem_free(a);
	assert_int_equal(mem_cached(), 1);
	b = mem_alloc(2500);            /* same 4 KiB class */
	assert_ptr_equal(b, a);
	assert_int_equal(mem_cached(), 0);
	c = mem_alloc(2500);            /* list empty: a new block */
	assert_ptr_not_equal(c, b);
	mem_free(b);
	mem_free(c);
	assert_int_equal(mem_cached(), 2);
	b = mem_alloc(100);             /* another class: not those */
	assert_ptr_not_equal(b, a);
	assert_ptr_not_equal(b, c);
	mem_free(b);
	mem_release();
	assert_int_equal(mem_cached(), 0);
}

static void
test_blocks_are_aligned(void **state)
{
	(void)state;
	for (size_t n = 1; n < 70000; n = n * 3 + 1) {
		void *p = mem_alloc(n);

		assert_non_null(p);
		assert_int_equal((uintptr_t)p % alignof(max_align_t), 0);
		memset(p, 1, n);
		mem_free(p);
	}
	mem_release();
}

static void
test_realloc_keeps_contents(void **state)
{
	unsigned char *p, *q;

	(void)state;
	p = mem_alloc(1000);
	for (int i = 0; i < 1000; i++)
		p[i] = (unsigned char)i;
	q = mem_realloc(p, 1010);       /* fits the 1 KiB block: in place */
	assert_ptr_equal(q, p);
	q = mem_realloc(q, 50000);      /* moves to the 64 KiB class */
	assert_non_null(q);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(q[i], (unsigned char)i);
	assert_int_equal(mem_cached(), 1);      /* the old block, kept */
	q = mem_realloc(q, 200000);     /* beyond the classes: malloc */
	assert_non_null(q);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(q[i], (unsigned char)i);
	q = mem_realloc(q, 300000);     /* malloc'd block: realloc'd */
	assert_int_equal(q[999], (unsigned char)999);
	mem_free(q);
	assert_int_equal(mem_cached(), 2);      /* the big one went to free */
	q = mem_realloc(NULL, 10);      /* realloc(NULL) allocates */
	assert_non_null(q);
	mem_free(q);
	mem_release();
}

static void
test_lists_are_bounded(void **state)
{
	enum { N = 2000 };
	static void *p[N];

	(void)state;
	for (int i = 0; i < N; i++)
		assert_non_null(p[i] = mem_alloc(4000));
	for (int i = 0; i < N; i++)
		mem_free(p[i]);
	/* 1 MiB of 4 KiB blocks per class at most */
	assert_int_equal(mem_cached(), 256);
	mem_release();
}

static void
test_lists_off_go_straight_to_malloc(void **state)
{
	void *a;

	(void)state;
	mem_set_lists(false);
	a = mem_alloc(3000);
	mem_free(a);
	assert_int_equal(mem_cached(), 0);
	mem_set_lists(true);
}

/* Classes are powers of two: just over half a class and just under a
 * whole one (header included, at most 64 bytes) share a block; a byte
 * more than the class is the next class.  mem_zalloc zeroes a reused
 * block. */
static void
test_class_boundaries_and_zalloc(void **state)
{
	(void)state;
	for (unsigned k = 8; k <= 16; k++) {
		size_t half = ((size_t)1 << (k - 1)) + 1, whole = ((size_t)1 << k) - 64;
		unsigned char *a, *b, *c;

		a = mem_alloc(half);
		assert_non_null(a);
		mem_free(a);
		b = mem_alloc(whole);
		assert_ptr_equal(b, a);
		memset(b, 0xee, whole);
		mem_free(b);
		c = mem_alloc(((size_t)1 << k) + 1);    /* next class (or none) */
		assert_ptr_not_equal(c, a);
		mem_free(c);
		b = mem_zalloc(half);
		assert_ptr_equal(b, a);
		for (size_t i = 0; i < half; i++)
			assert_int_equal(b[i], 0);
		mem_free(b);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_freed_block_is_reused_for_its_class, setup),
		cmocka_unit_test_setup(test_blocks_are_aligned, setup),
		cmocka_unit_test_setup(test_realloc_keeps_contents, setup),
		cmocka_unit_test_setup(test_lists_are_bounded, setup),
		cmocka_unit_test_setup(test_lists_off_go_straight_to_malloc, setup),
		cmocka_unit_test_setup(test_class_boundaries_and_zalloc, setup),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
