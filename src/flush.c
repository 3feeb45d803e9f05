/*
 * flush.c -- optimistic writes and direct reads; see flush.h.
 *
 * The dirty list holds bufferevents with output queued since the last
 * flush.  flush_detach() removes a bufferevent from it, so the list never
 * holds a freed one.  The list is a small array (a worker flushes what one
 * loop iteration queued).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>

#include "flush.h"
#include "vas.h"

static struct event *flush_ev;
static struct bufferevent **dirty;
static unsigned ndirty, dirty_cap;

static void read_attach(struct bufferevent *bev);
static void read_detach(struct bufferevent *bev);

static int
dirty_index(const struct bufferevent *bev)
{
	for (unsigned i = 0; i < ndirty; i++)
		if (dirty[i] == bev)
			return ((int)i);
	return (-1);
}

/* Write what bev has now; arm EV_WRITE for the rest. */
static void
flush_one(struct bufferevent *bev)
{
	struct evbuffer *out = bufferevent_get_output(bev);
	bufferevent_data_cb rcb, wcb;
	bufferevent_event_cb ecb;
	size_t low = 0, len;
	void *arg;
	int n, e;

	len = evbuffer_get_length(out);
	if (len == 0 || (bufferevent_get_enabled(bev) & EV_WRITE))
		return;
	/* a socket bufferevent freezes the start of its output so that
	 * only it drains it: thaw for the write, as its own writecb does */
	evbuffer_unfreeze(out, 1);
	n = evbuffer_write(out, bufferevent_getfd(bev));
	e = errno;
	evbuffer_freeze(out, 1);
	if (n < 0 && e != EAGAIN && e != EWOULDBLOCK && e != EINTR) {
		/* let the bufferevent meet the error and report it */
		bufferevent_enable(bev, EV_WRITE);
		return;
	}
	if (evbuffer_get_length(out) > 0) {
		bufferevent_enable(bev, EV_WRITE);
		return;
	}
	/* drained: what libevent's writecb would have said */
	bufferevent_getwatermark(bev, EV_WRITE, &low, NULL);
	bufferevent_getcb(bev, &rcb, &wcb, &ecb, &arg);
	(void)rcb;
	(void)ecb;
	if (wcb != NULL && evbuffer_get_length(out) <= low)
		wcb(bev, arg);
}

/* Write everything queued so far; callbacks run from here may queue more
 * and re-dirty. */
static void
flush_dirty(void)
{
	while (ndirty > 0) {
		struct bufferevent *bev = dirty[--ndirty];

		flush_one(bev);
	}
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	flush_dirty();
}

/* Queue bev for the posted flush. */
static void
mark_dirty(struct bufferevent *bev)
{
	if (dirty_index(bev) >= 0)
		return;
	if (ndirty == dirty_cap) {
		unsigned cap = dirty_cap ? 2 * dirty_cap : 64;
		struct bufferevent **d = realloc(dirty, cap * sizeof *d);

		if (d == NULL) {
			/* fall back to the bufferevent's own write event */
			bufferevent_enable(bev, EV_WRITE);
			return;
		}
		dirty = d;
		dirty_cap = cap;
	}
	dirty[ndirty++] = bev;
	event_active(flush_ev, EV_TIMEOUT, 0);
}

static void
out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct bufferevent *bev = arg;

	(void)buf;
	if (info->n_added > 0 && !(bufferevent_get_enabled(bev) & EV_WRITE))
		mark_dirty(bev);
}

int
flush_init(struct event_base *base)
{
	flush_ev = event_new(base, -1, 0, flush_cb, NULL);
	return (flush_ev != NULL ? 0 : -1);
}

void
flush_fini(void)
{
	if (flush_ev != NULL)
		event_free(flush_ev);
	flush_ev = NULL;
	free(dirty);
	dirty = NULL;
	ndirty = dirty_cap = 0;
}

void
flush_attach(struct bufferevent *bev)
{
	AN(flush_ev);
	read_attach(bev);
	if (bufferevent_get_enabled(bev) & EV_WRITE)
		bufferevent_disable(bev, EV_WRITE);
	(void)evbuffer_add_cb(bufferevent_get_output(bev), out_cb, bev);
	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		mark_dirty(bev);
}

void
flush_detach(struct bufferevent *bev)
{
	int i = dirty_index(bev);

	if (i >= 0)
		dirty[i] = dirty[--ndirty];
	read_detach(bev);
	(void)evbuffer_remove_cb(bufferevent_get_output(bev), out_cb, bev);
}

/*
 * Direct reads.  libevent 2.1's socket read callback asks the kernel how
 * much is queued (ioctl FIONREAD) before every read and then reads at most
 * 4096 bytes.  An attached bufferevent's read event runs read_direct()
 * instead: one readv(2) into the input's free space plus the scratch
 * buffer, whatever the amount.  What libevent's callback does besides
 * reading -- a read timeout, the read high-watermark reached -- is left to
 * libevent's callback itself (saved at the first attach); EOF and errors
 * are reported as it reports them: EV_READ disabled, then the event
 * callback with BEV_EVENT_READING and EOF or ERROR.  The callback is
 * swapped in the bufferevent's own read event (event2/bufferevent_struct.h
 * exposes it), so its timeouts, watermarks and enable/disable keep working
 * unchanged.
 */
static event_callback_fn libevent_readcb;
static unsigned char scratch[FLUSH_READ_MAX];

static void
read_direct(evutil_socket_t fd, short what, void *arg)
{
	struct bufferevent *bev = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t have = evbuffer_get_length(in), high = 0, room = FLUSH_READ_MAX;
	struct evbuffer_iovec v[2];
	struct iovec iov[3];
	size_t inbuf = 0, left;
	ssize_t r;
	int n, used, e;

	bufferevent_getwatermark(bev, EV_READ, NULL, &high);
	if (what == EV_TIMEOUT || (high > 0 && have >= high)) {
		libevent_readcb(fd, what, arg);
		return;
	}
	if (high > 0 && high - have < room)
		room = high - have;

	/* a socket bufferevent freezes the end of its input so that only it
	 * fills it: thaw for the read, as its own readcb does */
	evbuffer_unfreeze(in, 0);
	n = evbuffer_reserve_space(in,
	    (ev_ssize_t)(room < FLUSH_READ_CHAIN ? room : FLUSH_READ_CHAIN), v, 2);
	if (n < 0)
		n = 0;
	for (int i = 0; i < n; i++) {
		if (v[i].iov_len > room - inbuf)
			v[i].iov_len = room - inbuf;
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = v[i].iov_len;
		inbuf += v[i].iov_len;
	}
	iov[n].iov_base = scratch;
	iov[n].iov_len = room - inbuf;
	r = readv(fd, iov, iov[n].iov_len > 0 ? n + 1 : n);
	e = errno;
	left = r > 0 ? (size_t)r : 0;
	for (used = 0; used < n && left > 0; used++) {
		if (v[used].iov_len > left)
			v[used].iov_len = left;
		left -= v[used].iov_len;
	}
	(void)evbuffer_commit_space(in, v, used);
	if (left > 0 && evbuffer_add(in, scratch, left) != 0) {
		r = -1;
		e = ENOMEM;
	}
	evbuffer_freeze(in, 0);

	if (r > 0) {
		/* the callback may free the bufferevent: not used after */
		bufferevent_trigger(bev, EV_READ, 0);
		flush_dirty();
		return;
	}
	if (r < 0 && (e == EAGAIN || e == EWOULDBLOCK || e == EINTR))
		return;
	bufferevent_disable(bev, EV_READ);
	errno = e;
	bufferevent_trigger_event(bev,
	    BEV_EVENT_READING | (r == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), 0);
}

/* Point bev's read event at cb, keeping it enabled if it was. */
static void
set_readcb(struct bufferevent *bev, event_callback_fn cb)
{
	struct event *ev = &bev->ev_read;
	short on = bufferevent_get_enabled(bev) & EV_READ;

	if (on)
		bufferevent_disable(bev, EV_READ);
	(void)event_assign(ev, event_get_base(ev), event_get_fd(ev),
	    event_get_events(ev), cb, bev);
	if (on)
		bufferevent_enable(bev, EV_READ);
}

static void
read_attach(struct bufferevent *bev)
{
	event_callback_fn cb = event_get_callback(&bev->ev_read);

	if (cb == read_direct)
		return;
	if (libevent_readcb == NULL)
		libevent_readcb = cb;
	if (cb == libevent_readcb)
		set_readcb(bev, read_direct);
}

static void
read_detach(struct bufferevent *bev)
{
	if (event_get_callback(&bev->ev_read) == read_direct)
		set_readcb(bev, libevent_readcb);
}
