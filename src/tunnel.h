/*
 * tunnel.h -- WebSocket (and any Upgrade) byte tunnel: once the upstream
 * answered 101, the client and upstream connections are spliced and bytes
 * are copied both ways by the worker's loop, no frame parsing.
 *
 * Backpressure (habit 6): a side stops being read while the other side has
 * STOA_HIGH_WATER bytes queued, and resumes at STOA_LOW_WATER, so memory
 * per tunnel is bounded whatever the peers do.  Half-close: EOF from one
 * side is passed on as shutdown(SHUT_WR) to the other once what it sent
 * has been flushed; the tunnel ends when both directions are finished,
 * on an error, or after websocket_idle without a byte either way.
 *
 * An idle tunnel holds no buffer memory of its own: the struct below plus
 * the two bufferevents (their evbuffers are empty).
 */
#ifndef STOA_TUNNEL_H
#define STOA_TUNNEL_H

#include <stdint.h>

struct bufferevent;
struct worker_env;

/*
 * Take ownership of two connected bufferevents (client, upstream); bytes
 * already in their input buffers are forwarded at once.  route_slot is the
 * stats slot of the route (-1 for none).  Returns 0, or -1 (both closed)
 * when out of memory.
 */
int tunnel_start(struct worker_env *env, struct bufferevent *client,
    struct bufferevent *upstream, int route_slot);

/* Close tunnels idle since before now - websocket_idle (ms, monotonic). */
void tunnel_sweep(struct worker_env *env, uint64_t now);

/* Close every tunnel now (worker exit). */
void tunnel_close_all(struct worker_env *env);

#endif
