/*
 * Unit tests for flush.c: direct reads and optimistic writes on a real
 * socket bufferevent (one end of a socketpair; the test writes and reads
 * the other end with plain syscalls) in a real event loop.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "flush.h"

struct fx {
	struct event_base  *base;
	struct bufferevent *bev;
	int                 peer;           /* the test's end */
	unsigned            nread;          /* read callbacks */
	size_t              max_input;      /* largest input seen in readcb */
	bool                drain;          /* readcb drains the input */
	size_t              drained;
	short               events;         /* last event callback's flags */
	int                 nevents;
	int                 event_errno;
	int                 nwrite;         /* write callbacks */
};

static void
readcb(struct bufferevent *bev, void *arg)
{
	struct fx *f = arg;
	size_t n = evbuffer_get_length(bufferevent_get_input(bev));

	f->nread++;
	if (n > f->max_input)
		f->max_input = n;
	if (f->drain) {
		evbuffer_drain(bufferevent_get_input(bev), n);
		f->drained += n;
	}
}

static void
writecb(struct bufferevent *bev, void *arg)
{
	struct fx *f = arg;

	(void)bev;
	f->nwrite++;
}

static void
eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct fx *f = arg;

	(void)bev;
	f->events = what;
	f->event_errno = errno;
	f->nevents++;
}

static int
setup(void **state)
{
	static struct fx f;
	int sv[2];

	memset(&f, 0, sizeof f);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	/* room for the large-read test in one go */
	int sz = 1 << 20;
	(void)setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	(void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	assert_int_equal(evutil_make_socket_nonblocking(sv[0]), 0);
	f.base = event_base_new();
	assert_non_null(f.base);
	assert_int_equal(flush_init(f.base), 0);
	f.bev = bufferevent_socket_new(f.base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(f.bev);
	f.peer = sv[1];
	bufferevent_setcb(f.bev, readcb, writecb, eventcb, &f);
	bufferevent_enable(f.bev, EV_READ);
	flush_attach(f.bev);
	*state = &f;
	return (0);
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	if (f->bev != NULL) {
		flush_detach(f->bev);
		bufferevent_free(f->bev);
	}
	flush_fini();
	event_base_free(f->base);
	close(f->peer);
	return (0);
}

static void
loop_once(struct fx *f)
{
	event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* Write n bytes of a pattern to the peer end. */
static void
peer_write(struct fx *f, size_t n)
{
	static unsigned char buf[256 * 1024];
	size_t off = 0;

	assert_true(n <= sizeof buf);
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	while (off < n) {
		ssize_t w = write(f->peer, buf + off, n - off);

		assert_true(w > 0);
		off += (size_t)w;
	}
}

static void
check_pattern(struct evbuffer *in, size_t n)
{
	unsigned char *p;

	assert_int_equal(evbuffer_get_length(in), n);
	p = evbuffer_pullup(in, -1);
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(i * 7 + 3))
			fail_msg("byte %zu differs", i);
}

/* libevent alone would need at least 12 read events for 48 KB. */
static void
test_large_input_arrives_in_one_read(void **state)
{
	struct fx *f = *state;

	peer_write(f, 48 * 1024);
	loop_once(f);
	assert_int_equal(f->nread, 1);
	check_pattern(bufferevent_get_input(f->bev), 48 * 1024);
}

/* More than FLUSH_READ_MAX queued: a read event takes FLUSH_READ_MAX,
 * the next the rest; nothing lost, order kept. */
static void
test_input_beyond_read_max_is_complete_and_ordered(void **state)
{
	struct fx *f = *state;
	size_t n = FLUSH_READ_MAX + 10000;

	peer_write(f, n);
	for (int i = 0; i < 10 && evbuffer_get_length(
	    bufferevent_get_input(f->bev)) < n; i++)
		loop_once(f);
	assert_true(f->nread >= 2);
	check_pattern(bufferevent_get_input(f->bev), n);
}

/* The read high-watermark caps each read as libevent's own read does
 * (libevent calls a read callback that leaves the input at the
 * watermark again at once, so this one drains). */
static void
test_read_high_watermark_is_respected(void **state)
{
	struct fx *f = *state;

	f->drain = true;
	bufferevent_setwatermark(f->bev, EV_READ, 0, 10000);
	peer_write(f, 30000);
	for (int i = 0; i < 20 && f->drained < 30000; i++)
		loop_once(f);
	assert_int_equal(f->drained, 30000);
	assert_int_equal(f->max_input, 10000);
	assert_int_equal(f->nread, 3);
}

static void
test_eof_is_reported_as_reading_eof(void **state)
{
	struct fx *f = *state;

	peer_write(f, 100);
	shutdown(f->peer, SHUT_WR);
	for (int i = 0; i < 5 && f->nevents == 0; i++)
		loop_once(f);
	assert_int_equal(f->nevents, 1);
	assert_int_equal(f->events, BEV_EVENT_READING | BEV_EVENT_EOF);
	assert_int_equal(evbuffer_get_length(bufferevent_get_input(f->bev)),
	    100);
	/* reading is disabled, as libevent does after EOF */
	assert_false(bufferevent_get_enabled(f->bev) & EV_READ);
}

static void
test_reset_is_reported_as_reading_error(void **state)
{
	struct fx *f = *state;
	struct bufferevent *bev;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	struct linger lg = { 1, 0 };
	int lfd, cfd, sfd;

	/* a reset needs TCP: a loopback pair, closed with SO_LINGER 0 */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&ss, &sl), 0);
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(cfd, (struct sockaddr *)&ss, sl), 0);
	sfd = accept(lfd, NULL, NULL);
	assert_true(sfd >= 0);
	close(lfd);
	assert_int_equal(evutil_make_socket_nonblocking(sfd), 0);
	bev = bufferevent_socket_new(f->base, sfd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(bev, readcb, NULL, eventcb, f);
	bufferevent_enable(bev, EV_READ);
	flush_attach(bev);
	setsockopt(cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(cfd);
	for (int i = 0; i < 5 && f->nevents == 0; i++)
		loop_once(f);
	assert_int_equal(f->nevents, 1);
	assert_int_equal(f->events, BEV_EVENT_READING | BEV_EVENT_ERROR);
	assert_int_equal(f->event_errno, ECONNRESET);
	flush_detach(bev);
	bufferevent_free(bev);
}

/* A read timeout still fires (it is libevent's own callback's job). */
static void
test_read_timeout_is_reported(void **state)
{
	struct fx *f = *state;
	struct timeval tv = { 0, 20000 };

	bufferevent_set_timeouts(f->bev, &tv, NULL);
	for (int i = 0; i < 50 && f->nevents == 0; i++)
		event_base_loop(f->base, EVLOOP_ONCE);
	assert_int_equal(f->nevents, 1);
	assert_int_equal(f->events, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
}

/* After flush_detach the bufferevent reads as libevent does (at most
 * 4096 bytes per read event), so it can be handed elsewhere intact. */
static void
test_detach_restores_libevent_reads(void **state)
{
	struct fx *f = *state;

	flush_detach(f->bev);
	peer_write(f, 20000);
	loop_once(f);
	assert_int_equal(f->nread, 1);
	assert_true(evbuffer_get_length(bufferevent_get_input(f->bev)) <= 4096);
	for (int i = 0; i < 20 && evbuffer_get_length(
	    bufferevent_get_input(f->bev)) < 20000; i++)
		loop_once(f);
	check_pattern(bufferevent_get_input(f->bev), 20000);
	/* and reattaching works */
	evbuffer_drain(bufferevent_get_input(f->bev), 20000);
	flush_attach(f->bev);
	f->nread = 0;
	peer_write(f, 20000);
	loop_once(f);
	assert_int_equal(f->nread, 1);
	check_pattern(bufferevent_get_input(f->bev), 20000);
}

/* Output queued by a callback is written at the end of the loop turn,
 * and the write callback sees the drained buffer. */
static void
test_queued_output_is_written_in_the_same_turn(void **state)
{
	struct fx *f = *state;
	char buf[64];
	ssize_t r;

	assert_int_equal(bufferevent_write(f->bev, "hello", 5), 0);
	assert_false(bufferevent_get_enabled(f->bev) & EV_WRITE);
	loop_once(f);
	r = recv(f->peer, buf, sizeof buf, MSG_DONTWAIT);
	assert_int_equal(r, 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(f->nwrite, 1);
	assert_int_equal(evbuffer_get_length(bufferevent_get_output(f->bev)),
	    0);
}

/* Output a read callback queued is written when that callback returns,
 * not after the rest of the loop turn: an event made active before the
 * write finds it already in the peer's socket. */
struct order {
	struct fx          *f;
	struct event       *probe;
	size_t              pending_at_probe;
};

static void
order_probe(evutil_socket_t fd, short what, void *arg)
{
	struct order *o = arg;

	(void)fd;
	(void)what;
	o->pending_at_probe =
	    evbuffer_get_length(bufferevent_get_output(o->f->bev));
}

static void
order_readcb(struct bufferevent *bev, void *arg)
{
	struct order *o = arg;

	evbuffer_drain(bufferevent_get_input(bev),
	    evbuffer_get_length(bufferevent_get_input(bev)));
	event_active(o->probe, EV_TIMEOUT, 0);  /* queued before the write */
	assert_int_equal(bufferevent_write(bev, "pong", 4), 0);
}

static void
test_output_of_a_read_callback_is_written_when_it_returns(void **state)
{
	struct fx *f = *state;
	struct order o = { .f = f, .pending_at_probe = 99 };
	char buf[16];

	o.probe = event_new(f->base, -1, 0, order_probe, &o);
	assert_non_null(o.probe);
	bufferevent_setcb(f->bev, order_readcb, NULL, eventcb, &o);
	peer_write(f, 4);
	for (int i = 0; i < 5 && o.pending_at_probe == 99; i++)
		loop_once(f);
	assert_int_equal(o.pending_at_probe, 0);
	assert_int_equal(recv(f->peer, buf, sizeof buf, MSG_DONTWAIT), 4);
	assert_memory_equal(buf, "pong", 4);
	event_free(o.probe);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_large_input_arrives_in_one_read, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_input_beyond_read_max_is_complete_and_ordered, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_read_high_watermark_is_respected, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_eof_is_reported_as_reading_eof, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_reset_is_reported_as_reading_error, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_read_timeout_is_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_detach_restores_libevent_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_queued_output_is_written_in_the_same_turn, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_output_of_a_read_callback_is_written_when_it_returns,
		    setup, teardown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
