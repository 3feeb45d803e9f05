/*
 * flush.h -- optimistic writes, and direct reads, for socket bufferevents.
 *
 * A bufferevent arms its write event whenever data is queued and disarms
 * it once the buffer drained: two epoll_ctl calls and one more loop
 * iteration per response, on each side of the proxy.  Most writes fit in
 * the socket buffer at once, so for an attached bufferevent EV_WRITE stays
 * disabled; queued output is written when the read callback that queued
 * it returns (an attached bufferevent's read event, see below), or else
 * from a posted event at the end of the current loop iteration, and only
 * what the kernel did not take arms EV_WRITE, as before.  Writing at the
 * end of each read event rather than of the whole loop turn keeps one
 * write per response and does not hold every response of a busy turn
 * (tens of events) back until the last is handled: proxy-pass p99 went
 * from 1.6-2.2 ms to 1.6-1.8 ms.  When a write leaves the buffer at or
 * below the write low-watermark, the bufferevent's write callback is
 * called exactly as libevent would have.
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
 * Reads: libevent 2.1 asks the kernel how much is queued (an ioctl) before
 * every read and then reads at most 4096 bytes, so a 32 KB request body
 * took eight loop turns and went upstream in 4-8 KB pieces.  An attached
 * bufferevent reads with one readv(2) per read event instead, up to its
 * read high-watermark or FLUSH_READ_MAX: into the input's free space (at
 * most FLUSH_READ_CHAIN of it) and a scratch buffer for the rest.  Read
 * timeouts, watermarks, EOF and errors behave as libevent's own.
 */
#define FLUSH_READ_MAX   (64 * 1024)
#define FLUSH_READ_CHAIN 4096

#endif
