/*
 * vas.h -- assertions that stay on in release builds, and object magic.
 *
 * Two error channels (ARCHITECTURE.md, habit 3): a bug is an assert that
 * aborts the process (the master replaces a worker that aborts); a runtime
 * failure is a return status plus a static error string.  Bad input from a
 * peer must never reach an assert.
 */
#ifndef STOA_VAS_H
#define STOA_VAS_H

#include <stddef.h>

void vas_fail(const char *func, const char *file, int line,
    const char *cond) __attribute__((noreturn));

#define STOA_LIKELY(x)   __builtin_expect(!!(x), 1)
#define STOA_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define assert_always(c) do {                                            \
	if (STOA_UNLIKELY(!(c)))                                          \
		vas_fail(__func__, __FILE__, __LINE__, #c);               \
} while (0)

#define AN(x)   assert_always((x) != 0)      /* assert non-zero/non-NULL */
#define AZ(x)   assert_always((x) == 0)      /* assert zero */
#define WRONG(msg) vas_fail(__func__, __FILE__, __LINE__, msg)

/* Heap objects start with `unsigned magic;` set to a per-type constant. */
#define CHECK_OBJ(o, m)          assert_always((o)->magic == (m))
#define CHECK_OBJ_NOTNULL(o, m)  do { AN(o); CHECK_OBJ(o, m); } while (0)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
