/*
 * test_balance.c -- server selection and passive health with a moved clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "config.h"

#define MAXS 8

/* Upstream 0 of a hand-built config; addresses 10.0.0.<first + i>:80. */
struct fixture {
	struct config           cfg;
	struct config_upstream  up[2];
	struct config_addr      srv[2][MAXS];
	char                    text[2][MAXS][32];
};

static char app_name[] = "app";

static void
fx_upstream(struct fixture *fx, unsigned u, unsigned n, unsigned first,
    enum config_balance how, unsigned max_fails, uint64_t fail_timeout)
{
	unsigned i;

	assert_true(n <= MAXS);
	for (i = 0; i < n; i++) {
		snprintf(fx->text[u][i], sizeof fx->text[u][i], "10.0.0.%u:80",
		    first + i);
		fx->srv[u][i].text = fx->text[u][i];
	}
	fx->up[u].name = app_name;
	fx->up[u].nservers = n;
	fx->up[u].servers = fx->srv[u];
	fx->up[u].balance = how;
	fx->up[u].keepalive = 32;
	fx->up[u].max_fails = max_fails;
	fx->up[u].fail_timeout = fail_timeout;
}

static struct balance *
mk(struct fixture *fx, unsigned n, enum config_balance how,
    unsigned max_fails, uint64_t fail_timeout)
{
	struct balance *b;

	memset(fx, 0, sizeof *fx);
	fx->cfg.magic = CONFIG_MAGIC;
	fx_upstream(fx, 0, n, 1, how, max_fails, fail_timeout);
	fx->cfg.nupstreams = 1;
	fx->cfg.upstreams = fx->up;
	b = balance_new(&fx->cfg);
	assert_non_null(b);
	return (b);
}

/* Mark server s of upstream 0 down (max_fails failures at `now`). */
static void
knock_down(struct balance *b, struct fixture *fx, unsigned s, uint64_t now)
{
	unsigned i;

	for (i = 0; i < fx->up[0].max_fails; i++)
		balance_fail(b, 0, s, now);
	assert_false(balance_is_up(b, 0, s, now));
}

/*--------------------------------------------------------------------*/

static void
test_rr_order(void **state)
{
	struct fixture fx;
	struct balance *b = mk(&fx, 3, BALANCE_ROUND_ROBIN, 3, 10000);
	unsigned i;

	for (i = 0; i < 9; i++)
		assert_int_equal(balance_pick(b, 0, NULL, 0, -1, 0), (int)(i % 3));
	balance_free(b);
}

static void
test_rr_skips_down(void **state)
{
	struct fixture fx;
	struct balance *b = mk(&fx, 3, BALANCE_ROUND_ROBIN, 1, 10000);
	unsigned i;
	int s;

	knock_down(b, &fx, 1, 0);
	for (i = 0; i < 6; i++) {
		s = balance_pick(b, 0, NULL, 0, -1, 5);
		assert_int_equal(s, i % 2 == 0 ? 0 : 2);
	}
	balance_free(b);
}

static void
test_rr_exclude(void **state)
{
	struct fixture fx;
	struct balance *b = mk(&fx, 3, BALANCE_ROUND_ROBIN, 1, 10000);
	unsigned i;

	for (i = 0; i < 6; i++)
		assert_int_not_equal(balance_pick(b, 0, NULL, 0, 1, 0), 1);
	/* the excluded one is the only one up: no retry target */
	knock_down(b, &fx, 0, 0);
	knock_down(b, &fx, 2, 0);
	assert_int_equal(balance_pick(b, 0, NULL, 0, -1, 1), 1);
	assert_int_equal(balance_pick(b, 0, NULL, 0, 1, 1), -1);
	balance_free(b);
}

static void
test_all_down(void **state)
{
	static const enum config_balance hows[] = {
		BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONN, BALANCE_HASH,
	};
	struct fixture fx;
	struct balance *b;
	unsigned h, s;

	for (h = 0; h < 3; h++) {
		b = mk(&fx, 3, hows[h], 2, 1000);
		for (s = 0; s < 3; s++)
			knock_down(b, &fx, s, 100);
		assert_int_equal(balance_pick(b, 0, "/k", 2, -1, 100), -1);
		assert_int_equal(balance_pick(b, 0, "/k", 2, -1, 1099), -1);
		assert_int_equal(balance_pick(b, 0, "/k", 2, 0, 500), -1);
		/* after fail_timeout they get traffic again */
		assert_int_not_equal(balance_pick(b, 0, "/k", 2, -1, 1100), -1);
		balance_free(b);
	}
}

static void
test_single_server_exclude(void **state)
{
	struct fixture fx;
	struct balance *b = mk(&fx, 1, BALANCE_HASH, 3, 1000);

	assert_int_equal(balance_pick(b, 0, "/x", 2, -1, 0), 0);
	assert_int_equal(balance_pick(b, 0, "/x", 2, 0, 0), -1);
	balance_free(b);
}

static void
test_least_conn(void **state)
{
	struct fixture fx;
	struct balance *b = mk(&fx, 3, BALANCE_LEAST_CONN, 1, 10000);
	int s;

	balance_inc(b, 0, 0);
	balance_inc(b, 0, 0);
	balance_inc(b, 0, 1);
	balance_inc(b, 0, 2);
	balance_inc(b, 0, 2);
	balance_inc(b, 0, 2);
	/* loads 2, 1, 3 */
	assert_int_equal(balance_pick(b, 0, NULL, 0, -1, 0), 1);
	assert_int_equal(balance_pick(b, 0, NULL, 0, -1, 0), 1);
	balance_inc(b, 0, 1);
	balance_inc(b, 0, 1);
	/* loads 2, 3, 3 */
	assert_int_equal(balance_pick(b, 0, NULL, 0, -1, 0), 0);
	assert_int_equal(balance_pick(b, 0, NULL, 0, 0, 0), 1);
	balance_dec(b, 0, 2);
	balance_dec(b, 0, 2);
	/* loads 2, 3, 1 */
	assert_int_equal(balance_pick(b, 0, NULL, 0, -1, 0), 2);
	/* the least loaded is down: next least */
	knock_down(b, &fx, 2, 0);
	s = balance_pick(b, 0, NULL, 0, -1, 1);
	assert_int_equal(s, 0);
	balance_free(b);
}

static void
test_least_conn_ties_rotate(void **state)
{
	struct fixture fx;
	struct balance *b = mk(&fx, 3, BALANCE_LEAST_CONN, 1, 10000);
	unsigned i, seen[3] = { 0, 0, 0 };
	int s;

	for (i = 0; i < 9; i++) {
		s = balance_pick(b, 0, NULL, 0, -1, 0);
		assert_true(s >= 0 && s < 3);
		seen[s]++;
	}
	assert_int_equal(seen[0], 3);
	assert_int_equal(seen[1], 3);
	assert_int_equal(seen[2], 3);
	balance_free(b);
}

static void
test_hash_stable(void **state)
{
	struct fixture fx;
	struct balance *b = mk(&fx, 5, BALANCE_HASH, 1, 10000);
	char key[32];
	unsigned i, used[5] = { 0 };
	int s;

	for (i = 0; i < 1000; i++) {
		snprintf(key, sizeof key, "/obj/%u", i);
		s = balance_pick(b, 0, key, strlen(key), -1, 0);
		assert_true(s >= 0 && s < 5);
		assert_int_equal(balance_pick(b, 0, key, strlen(key), -1, 0), s);
		assert_int_equal(balance_pick(b, 0, key, strlen(key), -1, 0), s);
		used[s]++;
	}
	/* every server gets a fair share (1000/5 = 200) */
	for (i = 0; i < 5; i++)
		assert_true(used[i] > 100 && used[i] < 300);
	balance_free(b);
}

static void
test_hash_down_and_exclude_walk_on(void **state)
{
	struct fixture fx;
	struct balance *b = mk(&fx, 4, BALANCE_HASH, 1, 10000);
	char key[32];
	unsigned i, moved = 0;
	int s, t;

	for (i = 0; i < 200; i++) {
		snprintf(key, sizeof key, "/k/%u", i);
		s = balance_pick(b, 0, key, strlen(key), -1, 0);
		t = balance_pick(b, 0, key, strlen(key), s, 0);
		assert_true(t >= 0);
		assert_int_not_equal(t, s);
	}
	/* with server 2 down, only its keys move */
	knock_down(b, &fx, 2, 0);
	for (i = 0; i < 200; i++) {
		snprintf(key, sizeof key, "/k/%u", i);
		balance_ok(b, 0, 2);
		s = balance_pick(b, 0, key, strlen(key), -1, 0);
		knock_down(b, &fx, 2, 0);
		t = balance_pick(b, 0, key, strlen(key), -1, 0);
		assert_int_not_equal(t, 2);
		if (s != 2)
			assert_int_equal(t, s);
		else
			moved++;
	}
	assert_true(moved > 0);
	balance_free(b);
}

/*
 * 4 → 5 servers (the fifth has a new address): a key either stays where
 * it was or moves to the new server, and about 1/5 of them move.
 */
static void
test_hash_remap_fraction(void **state)
{
	struct fixture fx4, fx5;
	struct balance *b4 = mk(&fx4, 4, BALANCE_HASH, 1, 10000);
	struct balance *b5 = mk(&fx5, 5, BALANCE_HASH, 1, 10000);
	char key[32];
	unsigned i, changed = 0;
	int s4, s5;

	for (i = 0; i < 10000; i++) {
		snprintf(key, sizeof key, "/item/%u?v=%u", i, i * 7);
		s4 = balance_pick(b4, 0, key, strlen(key), -1, 0);
		s5 = balance_pick(b5, 0, key, strlen(key), -1, 0);
		if (s4 != s5) {
			changed++;
			assert_int_equal(s5, 4);
		}
	}
	assert_true(changed > 1000);
	assert_true(changed <= 3500);
	balance_free(b4);
	balance_free(b5);
}

/* Same addresses in another order: every key keeps its server address. */
static void
test_hash_follows_address_not_index(void **state)
{
	struct fixture fx;
	struct balance *b1, *b2;
	char key[32];
	unsigned i;
	int s1, s2;

	memset(&fx, 0, sizeof fx);
	fx.cfg.magic = CONFIG_MAGIC;
	fx_upstream(&fx, 0, 3, 1, BALANCE_HASH, 1, 1000);
	fx_upstream(&fx, 1, 3, 1, BALANCE_HASH, 1, 1000);
	fx.srv[1][0].text = fx.text[0][2];
	fx.srv[1][2].text = fx.text[0][0];
	fx.cfg.nupstreams = 2;
	fx.cfg.upstreams = fx.up;
	b1 = balance_new(&fx.cfg);
	assert_non_null(b1);
	b2 = balance_new(&fx.cfg);
	assert_non_null(b2);
	for (i = 0; i < 500; i++) {
		snprintf(key, sizeof key, "/p/%u", i);
		s1 = balance_pick(b1, 0, key, strlen(key), -1, 0);
		s2 = balance_pick(b2, 1, key, strlen(key), -1, 0);
		assert_string_equal(fx.srv[0][s1].text, fx.srv[1][s2].text);
	}
	balance_free(b1);
	balance_free(b2);
}

static void
test_health_down_then_up(void **state)
{
	struct fixture fx;
	struct balance *b = mk(&fx, 2, BALANCE_ROUND_ROBIN, 3, 10000);
	unsigned i;

	balance_fail(b, 0, 0, 1000);
	balance_fail(b, 0, 0, 2000);
	assert_true(balance_is_up(b, 0, 0, 2000));
	assert_int_equal(balance_failures(b, 0, 0), 2);
	balance_fail(b, 0, 0, 3000);
	assert_int_equal(balance_failures(b, 0, 0), 3);
	assert_false(balance_is_up(b, 0, 0, 3000));
	assert_false(balance_is_up(b, 0, 0, 12999));
	for (i = 0; i < 4; i++)
		assert_int_equal(balance_pick(b, 0, NULL, 0, -1, 12999), 1);
	assert_true(balance_is_up(b, 0, 0, 13000));
	assert_true(balance_is_up(b, 0, 1, 13000));
	assert_int_equal(balance_pick(b, 0, NULL, 0, 1, 13000), 0);
	balance_free(b);
}

static void
test_health_spread_failures_do_not_mark_down(void **state)
{
	struct fixture fx;
	struct balance *b = mk(&fx, 2, BALANCE_ROUND_ROBIN, 3, 10000);
	uint64_t t;

	/* 2 per window, windows back to back: never 3 within 10s */
	for (t = 0; t < 100000; t += 5000) {
		balance_fail(b, 0, 0, t);
		assert_true(balance_is_up(b, 0, 0, t));
	}
	/* the window starts at the first failure, not the latest */
	balance_ok(b, 0, 0);
	balance_fail(b, 0, 0, 200000);
	balance_fail(b, 0, 0, 209000);
	balance_fail(b, 0, 0, 210000);
	assert_true(balance_is_up(b, 0, 0, 210000));
	assert_int_equal(balance_failures(b, 0, 0), 1);
	balance_free(b);
}

static void
test_health_ok_resets(void **state)
{
	struct fixture fx;
	struct balance *b = mk(&fx, 2, BALANCE_ROUND_ROBIN, 3, 10000);

	balance_fail(b, 0, 0, 0);
	balance_fail(b, 0, 0, 1);
	balance_ok(b, 0, 0);
	assert_int_equal(balance_failures(b, 0, 0), 0);
	balance_fail(b, 0, 0, 2);
	balance_fail(b, 0, 0, 3);
	assert_true(balance_is_up(b, 0, 0, 3));
	balance_fail(b, 0, 0, 4);
	assert_false(balance_is_up(b, 0, 0, 4));
	/* a success (a request in flight when it went down) revives it */
	balance_ok(b, 0, 0);
	assert_true(balance_is_up(b, 0, 0, 5));
	assert_int_equal(balance_failures(b, 0, 0), 0);
	balance_free(b);
}

static void
test_health_failed_probe_marks_down_again(void **state)
{
	struct fixture fx;
	struct balance *b = mk(&fx, 2, BALANCE_ROUND_ROBIN, 3, 10000);

	knock_down(b, &fx, 0, 0);
	assert_true(balance_is_up(b, 0, 0, 10000));
	/* one failure of the first request after the down period */
	balance_fail(b, 0, 0, 10000);
	assert_false(balance_is_up(b, 0, 0, 10000));
	assert_false(balance_is_up(b, 0, 0, 19999));
	assert_true(balance_is_up(b, 0, 0, 20000));
	/* a success in between clears it: max_fails again */
	balance_ok(b, 0, 0);
	balance_fail(b, 0, 0, 20000);
	balance_fail(b, 0, 0, 20001);
	assert_true(balance_is_up(b, 0, 0, 20001));
	balance_free(b);
}

static void
test_health_max_fails_zero(void **state)
{
	struct fixture fx;
	struct balance *b = mk(&fx, 2, BALANCE_ROUND_ROBIN, 0, 10000);
	unsigned i;

	for (i = 0; i < 100; i++)
		balance_fail(b, 0, 0, 1000);
	assert_true(balance_is_up(b, 0, 0, 1000));
	assert_int_equal(balance_pick(b, 0, NULL, 0, 1, 1000), 0);
	balance_free(b);
}

static void
test_pools_independent(void **state)
{
	struct fixture fx;
	struct balance *b;

	memset(&fx, 0, sizeof fx);
	fx.cfg.magic = CONFIG_MAGIC;
	fx_upstream(&fx, 0, 2, 1, BALANCE_ROUND_ROBIN, 1, 1000);
	fx_upstream(&fx, 1, 2, 1, BALANCE_ROUND_ROBIN, 1, 1000);
	fx.cfg.nupstreams = 2;
	fx.cfg.upstreams = fx.up;
	b = balance_new(&fx.cfg);
	assert_non_null(b);
	balance_fail(b, 0, 0, 0);
	assert_false(balance_is_up(b, 0, 0, 0));
	assert_true(balance_is_up(b, 1, 0, 0));
	assert_int_equal(balance_pick(b, 1, NULL, 0, -1, 0), 0);
	assert_int_equal(balance_pick(b, 0, NULL, 0, -1, 0), 1);
	balance_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rr_order),
		cmocka_unit_test(test_rr_skips_down),
		cmocka_unit_test(test_rr_exclude),
		cmocka_unit_test(test_all_down),
		cmocka_unit_test(test_single_server_exclude),
		cmocka_unit_test(test_least_conn),
		cmocka_unit_test(test_least_conn_ties_rotate),
		cmocka_unit_test(test_hash_stable),
		cmocka_unit_test(test_hash_down_and_exclude_walk_on),
		cmocka_unit_test(test_hash_remap_fraction),
		cmocka_unit_test(test_hash_follows_address_not_index),
		cmocka_unit_test(test_health_down_then_up),
		cmocka_unit_test(test_health_spread_failures_do_not_mark_down),
		cmocka_unit_test(test_health_ok_resets),
		cmocka_unit_test(test_health_failed_probe_marks_down_again),
		cmocka_unit_test(test_health_max_fails_zero),
		cmocka_unit_test(test_pools_independent),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
