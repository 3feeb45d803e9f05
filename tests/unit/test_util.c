/* Unit tests for util.c: durations, sizes, addresses. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "util.h"

static void
test_duration_units(void **state)
{
	uint64_t ms;
	const char *err;

	(void)state;
	assert_int_equal(util_parse_duration("250ms", &ms, &err), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(util_parse_duration("30s", &ms, &err), 0);
	assert_int_equal(ms, 30000);
	assert_int_equal(util_parse_duration("5m", &ms, &err), 0);
	assert_int_equal(ms, 300000);
	assert_int_equal(util_parse_duration("2h", &ms, &err), 0);
	assert_int_equal(ms, 7200000);
}

static void
test_duration_bare_number_is_seconds(void **state)
{
	uint64_t ms;
	const char *err;

	(void)state;
	assert_int_equal(util_parse_duration("7", &ms, &err), 0);
	assert_int_equal(ms, 7000);
}

static void
test_duration_rejects_garbage(void **state)
{
	uint64_t ms;
	const char *err = NULL;

	(void)state;
	assert_int_equal(util_parse_duration("10x", &ms, &err), -1);
	assert_non_null(err);
	assert_int_equal(util_parse_duration("", &ms, &err), -1);
	assert_int_equal(util_parse_duration("-1s", &ms, &err), -1);
	assert_int_equal(util_parse_duration("1.5s", &ms, &err), -1);
	assert_int_equal(util_parse_duration("99999999999999999999s", &ms, &err), -1);
}

static void
test_size_units_are_1024_based(void **state)
{
	uint64_t b;
	const char *err;

	(void)state;
	assert_int_equal(util_parse_size("16k", &b, &err), 0);
	assert_int_equal(b, 16384);
	assert_int_equal(util_parse_size("256m", &b, &err), 0);
	assert_int_equal(b, 256ull << 20);
	assert_int_equal(util_parse_size("1g", &b, &err), 0);
	assert_int_equal(b, 1ull << 30);
	assert_int_equal(util_parse_size("123", &b, &err), 0);
	assert_int_equal(b, 123);
	assert_int_equal(util_parse_size("1kb", &b, &err), -1);
	assert_int_equal(util_parse_size("k", &b, &err), -1);
}

static void
test_hostport_ipv4_ipv6(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const char *err;
	char buf[64];

	(void)state;
	assert_int_equal(util_parse_hostport("127.0.0.1:8080", &ss, &len, &err), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_string_equal(util_addr_str((struct sockaddr *)&ss, buf, sizeof buf),
	    "127.0.0.1:8080");
	assert_int_equal(util_parse_hostport("[::1]:9000", &ss, &len, &err), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_string_equal(util_addr_str((struct sockaddr *)&ss, buf, sizeof buf),
	    "[::1]:9000");
	assert_int_equal(util_parse_hostport("*:80", &ss, &len, &err), 0);
	assert_string_equal(util_addr_str((struct sockaddr *)&ss, buf, sizeof buf),
	    "0.0.0.0:80");
}

static void
test_hostport_rejects_bad(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const char *err;

	(void)state;
	assert_int_equal(util_parse_hostport("127.0.0.1", &ss, &len, &err), -1);
	assert_int_equal(util_parse_hostport("127.0.0.1:0", &ss, &len, &err), -1);
	assert_int_equal(util_parse_hostport("127.0.0.1:70000", &ss, &len, &err), -1);
	assert_int_equal(util_parse_hostport("::1:80", &ss, &len, &err), -1);
	assert_int_equal(util_parse_hostport("[::1]80", &ss, &len, &err), -1);
	assert_int_equal(util_parse_hostport("example.com:80", &ss, &len, &err), -1);
	assert_int_equal(util_parse_hostport("1.2.3.4:8x", &ss, &len, &err), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_units),
		cmocka_unit_test(test_duration_bare_number_is_seconds),
		cmocka_unit_test(test_duration_rejects_garbage),
		cmocka_unit_test(test_size_units_are_1024_based),
		cmocka_unit_test(test_hostport_ipv4_ipv6),
		cmocka_unit_test(test_hostport_rejects_bad),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
