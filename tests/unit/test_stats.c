/* Unit tests for stats.c: shared counters, gauges, named slots. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stats.h"

#define NCHILD  4
#define NADD    10000

static int
setup(void **state)
{
	char err[256];
	struct stats_zone *z = stats_zone_create(err, sizeof err);

	if (z == NULL) {
		fprintf(stderr, "%s\n", err);
		return (-1);
	}
	stats_attach(z);
	*state = z;
	return (0);
}

static int
teardown(void **state)
{
	stats_attach(NULL);
	stats_zone_destroy(*state);
	return (0);
}

/* Run fn(i) in NCHILD forked children at once; all must exit 0. */
static void
run_children(void (*fn)(int))
{
	pid_t pid[NCHILD];
	int st;

	for (int i = 0; i < NCHILD; i++) {
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0) {
			fn(i);
			_exit(0);
		}
	}
	for (int i = 0; i < NCHILD; i++) {
		assert_int_equal(waitpid(pid[i], &st, 0), pid[i]);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
}

static void
child_add(int i)
{
	(void)i;
	for (int n = 0; n < NADD; n++) {
		stats_add(STAT_CACHE_HIT, 1);
		stats_add(STAT_WS_BYTES_UP, 3);
		stats_status(200);
	}
}

static void
test_counters_add_up_across_processes(void **state)
{
	(void)state;
	run_children(child_add);
	assert_int_equal(stats_get(STAT_CACHE_HIT), NCHILD * NADD);
	assert_int_equal(stats_get(STAT_WS_BYTES_UP), 3 * NCHILD * NADD);
	assert_int_equal(stats_get_status(200), NCHILD * NADD);
	assert_int_equal(stats_get(STAT_REQUESTS), NCHILD * NADD);
	assert_int_equal(stats_get(STAT_CACHE_MISS), 0);
}

static void
child_gauge(int i)
{
	(void)i;
	for (int n = 0; n < NADD; n++) {
		stats_add(STAT_CONNECTIONS, 1);
		stats_add(STAT_CONNECTIONS, -1);
	}
	stats_add(STAT_CONNECTIONS, 1);        /* one stays open */
}

static void
test_gauge_goes_up_and_down(void **state)
{
	(void)state;
	run_children(child_gauge);
	assert_int_equal(stats_get(STAT_CONNECTIONS), NCHILD);
	stats_add(STAT_CONNECTIONS, -NCHILD);
	assert_int_equal(stats_get(STAT_CONNECTIONS), 0);
}

static void
test_gauge_below_zero_reads_zero(void **state)
{
	(void)state;
	stats_add(STAT_WS_TUNNELS, -1);
	assert_int_equal(stats_get(STAT_WS_TUNNELS), 0);
	stats_add(STAT_WS_TUNNELS, 2);
	assert_int_equal(stats_get(STAT_WS_TUNNELS), 1);
}

/*
 * A worker that dies with connections and tunnels open: once the master
 * releases its row, the totals hold only what the live workers hold,
 * while counters (requests, bytes) keep what the dead one counted.
 */
static void
test_dead_workers_gauges_are_taken_back(void **state)
{
	int live, dead, slot;
	pid_t pid[2];
	int st;

	(void)state;
	slot = stats_slot(STATS_SLOT_ROUTE, "/ws/ *");
	assert_true(slot >= 0);
	live = stats_row_claim();
	dead = stats_row_claim();
	assert_true(live >= 0 && dead >= 0 && live != dead);
	for (int w = 0; w < 2; w++) {
		pid[w] = fork();
		assert_true(pid[w] >= 0);
		if (pid[w] == 0) {
			stats_row_use(w == 0 ? live : dead);
			stats_add(STAT_CONNECTIONS, w == 0 ? 2 : 5);
			stats_add(STAT_WS_TUNNELS, w == 0 ? 1 : 3);
			stats_slot_add(slot, SLOT_WS_TUNNELS, w == 0 ? 1 : 3);
			stats_add(STAT_REQUESTS, 7);
			_exit(0);
		}
		assert_int_equal(waitpid(pid[w], &st, 0), pid[w]);
	}
	assert_int_equal(stats_get(STAT_CONNECTIONS), 7);
	assert_int_equal(stats_get(STAT_WS_TUNNELS), 4);
	assert_int_equal(stats_slot_get((unsigned)slot, SLOT_WS_TUNNELS), 4);

	stats_row_release(dead);
	assert_int_equal(stats_get(STAT_CONNECTIONS), 2);
	assert_int_equal(stats_get(STAT_WS_TUNNELS), 1);
	assert_int_equal(stats_slot_get((unsigned)slot, SLOT_WS_TUNNELS), 1);
	assert_int_equal(stats_get(STAT_REQUESTS), 14);
	/* released once: a second release changes nothing */
	stats_row_release(dead);
	assert_int_equal(stats_get(STAT_CONNECTIONS), 2);
	/* the freed row is claimed again, empty */
	assert_int_equal(stats_row_claim(), dead);
	stats_row_release(dead);
	assert_int_equal(stats_get(STAT_CONNECTIONS), 2);
	stats_row_release(live);
	assert_int_equal(stats_get(STAT_CONNECTIONS), 0);
	assert_int_equal(stats_slot_get((unsigned)slot, SLOT_WS_TUNNELS), 0);
}

static void
test_rows_run_out_cleanly(void **state)
{
	int n = 0;

	(void)state;
	while (stats_row_claim() >= 0)
		n++;
	assert_int_equal(n, STATS_ROWS);
	stats_row_use(-1);              /* no row: gauges still count */
	stats_add(STAT_CONNECTIONS, 1);
	assert_int_equal(stats_get(STAT_CONNECTIONS), 1);
	stats_row_release(-1);          /* and releasing "none" is harmless */
	assert_int_equal(stats_get(STAT_CONNECTIONS), 1);
}

static void
test_status_codes_and_classes(void **state)
{
	static const int codes[] = { 101, 200, 200, 204, 302, 404, 404, 404,
	    503, 599, 600, 99, -1 };

	(void)state;
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
		stats_status(codes[i]);
	assert_int_equal(stats_get(STAT_REQUESTS), 13);
	assert_int_equal(stats_get_status(200), 2);
	assert_int_equal(stats_get_status(404), 3);
	assert_int_equal(stats_get_status(201), 0);
	assert_int_equal(stats_get_status(600), 0);
	assert_int_equal(stats_get_status(99), 0);
	assert_int_equal(stats_get_class(1), 1);
	assert_int_equal(stats_get_class(2), 3);
	assert_int_equal(stats_get_class(3), 1);
	assert_int_equal(stats_get_class(4), 3);
	assert_int_equal(stats_get_class(5), 2);
	assert_int_equal(stats_get_class(0), 0);
	assert_int_equal(stats_get_class(6), 0);
}

static void
test_slot_found_by_name(void **state)
{
	enum stats_slot_kind kind;
	const char *name;
	int a, b, c;

	(void)state;
	assert_int_equal(stats_slot_find(STATS_SLOT_ROUTE, "/api/ *"), -1);
	a = stats_slot(STATS_SLOT_ROUTE, "/api/ *");
	b = stats_slot(STATS_SLOT_ROUTE, "/ *");
	assert_true(a >= 0);
	assert_true(b >= 0);
	assert_int_not_equal(a, b);
	assert_int_equal(stats_slot(STATS_SLOT_ROUTE, "/api/ *"), a);
	assert_int_equal(stats_slot_find(STATS_SLOT_ROUTE, "/api/ *"), a);
	/* Same name, other kind: another slot. */
	c = stats_slot(STATS_SLOT_SERVER, "/api/ *");
	assert_true(c >= 0);
	assert_int_not_equal(c, a);
	assert_int_equal(stats_nslots(), 3);
	assert_true(stats_slot_info((unsigned)c, &kind, &name));
	assert_int_equal(kind, STATS_SLOT_SERVER);
	assert_string_equal(name, "/api/ *");
	assert_false(stats_slot_info(3, &kind, &name));
}

static void
test_slot_counters(void **state)
{
	int s;

	(void)state;
	s = stats_slot(STATS_SLOT_ROUTE, "/ *");
	stats_slot_status(s, 200);
	stats_slot_status(s, 201);
	stats_slot_status(s, 502);
	stats_slot_status(s, 42);
	stats_slot_add(s, SLOT_WS_BYTES_DOWN, 1000);
	stats_slot_set(s, SLOT_DOWN_UNTIL, 1234567890123);
	assert_int_equal(stats_slot_get((unsigned)s, SLOT_REQUESTS), 4);
	assert_int_equal(stats_slot_get((unsigned)s, SLOT_2XX), 2);
	assert_int_equal(stats_slot_get((unsigned)s, SLOT_5XX), 1);
	assert_int_equal(stats_slot_get((unsigned)s, SLOT_4XX), 0);
	assert_int_equal(stats_slot_get((unsigned)s, SLOT_WS_BYTES_DOWN), 1000);
	assert_int_equal(stats_slot_get((unsigned)s, SLOT_DOWN_UNTIL),
	    1234567890123);
	stats_slot_set(s, SLOT_DOWN_UNTIL, 0);
	assert_int_equal(stats_slot_get((unsigned)s, SLOT_DOWN_UNTIL), 0);
	/* -1 (full table) and out-of-range ids are ignored. */
	stats_slot_add(-1, SLOT_REQUESTS, 1);
	stats_slot_status(-1, 200);
	stats_slot_add(STATS_MAX_SLOTS, SLOT_REQUESTS, 1);
	stats_slot_add(s, SLOT__MAX, 1);
	assert_int_equal(stats_slot_get((unsigned)s, SLOT_REQUESTS), 4);
}

static void
child_slots(int i)
{
	char name[32];

	/* Every child creates the same 50 names, in a different order. */
	for (int n = 0; n < 50; n++) {
		snprintf(name, sizeof name, "app 10.0.0.%d:80",
		    (n + i * 13) % 50);
		if (stats_slot(STATS_SLOT_SERVER, name) < 0)
			_exit(1);
		stats_slot_add(stats_slot(STATS_SLOT_SERVER, name),
		    SLOT_REQUESTS, 1);
	}
}

static void
test_slots_created_once_across_processes(void **state)
{
	char name[32];
	int s;

	(void)state;
	run_children(child_slots);
	assert_int_equal(stats_nslots(), 50);
	for (int n = 0; n < 50; n++) {
		snprintf(name, sizeof name, "app 10.0.0.%d:80", n);
		s = stats_slot_find(STATS_SLOT_SERVER, name);
		assert_true(s >= 0);
		assert_int_equal(stats_slot_get((unsigned)s, SLOT_REQUESTS),
		    NCHILD);
	}
}

static void
test_slot_table_full(void **state)
{
	char name[32];
	int s;

	(void)state;
	for (int n = 0; n < STATS_MAX_SLOTS; n++) {
		snprintf(name, sizeof name, "r%d", n);
		s = stats_slot(STATS_SLOT_ROUTE, name);
		assert_int_equal(s, n);
	}
	assert_int_equal(stats_slot(STATS_SLOT_ROUTE, "one too many"), -1);
	assert_int_equal(stats_slot(STATS_SLOT_SERVER, "r0"), -1);
	/* Existing names are still found. */
	assert_int_equal(stats_slot(STATS_SLOT_ROUTE, "r0"), 0);
	assert_int_equal(stats_slot(STATS_SLOT_ROUTE, "r1023"), 1023);
	assert_int_equal(stats_nslots(), STATS_MAX_SLOTS);
}

static void
test_slot_name_too_long(void **state)
{
	char name[STATS_NAME_MAX + 1];

	(void)state;
	memset(name, 'a', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	assert_int_equal(stats_slot(STATS_SLOT_ROUTE, name), -1);
	name[STATS_NAME_MAX - 1] = '\0';        /* longest that fits */
	assert_int_equal(stats_slot(STATS_SLOT_ROUTE, name), 0);
	assert_int_equal(stats_nslots(), 1);
}

static void
test_detached_is_a_noop(void **state)
{
	(void)state;
	stats_add(STAT_CACHE_MISS, 5);
	stats_attach(NULL);
	stats_add(STAT_CACHE_MISS, 5);
	stats_status(200);
	assert_int_equal(stats_slot(STATS_SLOT_ROUTE, "/ *"), -1);
	assert_int_equal(stats_get(STAT_CACHE_MISS), 0);
	assert_int_equal(stats_get_status(200), 0);
	assert_int_equal(stats_started_at(), 0);
	assert_int_equal(stats_nslots(), 0);
	stats_attach(*state);
	assert_int_equal(stats_get(STAT_CACHE_MISS), 5);
	assert_int_equal(stats_get_status(200), 0);
}

static void
test_started_at_is_now(void **state)
{
	time_t now = time(NULL);

	(void)state;
	assert_true(stats_started_at() <= (uint64_t)now);
	assert_true(stats_started_at() + 5 >= (uint64_t)now);
}

static void
test_slot_names(void **state)
{
	char buf[STATS_NAME_MAX];
	char small[8];
	char big[300], out[300];

	(void)state;
	assert_int_equal(stats_route_name(buf, sizeof buf, "/api/",
	    "api.example.com"), 21);
	assert_string_equal(buf, "/api/ api.example.com");
	assert_int_equal(stats_route_name(buf, sizeof buf, "/", NULL), 3);
	assert_string_equal(buf, "/ *");
	assert_int_equal(stats_server_name(buf, sizeof buf, "app",
	    "127.0.0.1:8000"), 18);
	assert_string_equal(buf, "app 127.0.0.1:8000");
	assert_int_equal(stats_server_name(buf, sizeof buf, "app",
	    "[::1]:80"), 12);
	assert_string_equal(buf, "app [::1]:80");
	assert_int_equal(stats_route_name(small, sizeof small, "/api/",
	    "x.example"), -1);
	assert_string_equal(small, "");
	/* Fits the caller's buffer but not a slot. */
	memset(big, 'p', 200);
	big[200] = '\0';
	assert_int_equal(stats_route_name(out, sizeof out, big, NULL), -1);
	assert_string_equal(out, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_counters_add_up_across_processes),
		T(test_gauge_goes_up_and_down),
		T(test_gauge_below_zero_reads_zero),
		T(test_dead_workers_gauges_are_taken_back),
		T(test_rows_run_out_cleanly),
		T(test_status_codes_and_classes),
		T(test_slot_found_by_name),
		T(test_slot_counters),
		T(test_slots_created_once_across_processes),
		T(test_slot_table_full),
		T(test_slot_name_too_long),
		T(test_detached_is_a_noop),
		T(test_started_at_is_now),
		T(test_slot_names),
#undef T
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
