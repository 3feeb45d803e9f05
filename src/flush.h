/*
 * flush.h -- optimistic writes, and fuller reads, for socket bufferevents.
 *
 * A bufferevent arms its write event whenever data is queued and disarms
 * it once the buffer drained: two epoll_ctl calls and one more loop
 * iteration per response, on each side of the proxy.  Most writes fit in
 * the socket buffer at once, so for an attached bufferevent EV_WRITE stays
 * disabled; queued output is written from a posted event at the end of the
 * current loop iteration (after every callback that might add more), and
 * only what the kernel did not take arms EV_WRITE, as before.  When the
 * posted write leaves the buffer at or below the write low-watermark, the
 * bufferevent's write callback is called exactly as libevent would have.
 *
 * Only plain socket bufferevents may be attached (not TLS, not pairs).
 */
#ifndef STOA_FLUSH_H
#define STOA_FLUSH_H

struct bufferevent;
struct event_base;

int  flush_init(struct event_base *base);      /* per worker; 0 or -1 */
void flush_fini(void);
void flush_attach(struct bufferevent *bev);
/* Before bufferevent_free() or handing the bufferevent elsewhere. */
void flush_detach(struct bufferevent *bev);

/*
 * Reads: libevent 2.1 reads at most 4096 bytes per read event, so a 32 KB
 * request body took eight loop turns and went upstream in 4-8 KB pieces
 * (each one a read and a parser pass for an application server).  Called
 * at the top of a read callback, this reads what else the socket holds,
 * up to the bufferevent's read high-watermark or FLUSH_READ_MAX, with one
 * readv(2).  Only when the input holds at least 4096 bytes (the
 * bufferevent's read was probably cut short); EOF and errors are left for
 * the bufferevent's next read to report.  Plain socket bufferevents only.
 */
#define FLUSH_READ_MAX (64 * 1024)
void flush_read_more(struct bufferevent *bev);

#endif
