/*
 * admin.h -- the admin listener (SPEC.md "Admin listener").
 *
 * Every worker runs one on the admin socket it inherited from the master
 * (one shared listening socket: whichever worker accepts, answers; the
 * numbers come from the shared stats zone, so every worker gives the same
 * answer).  The public listeners never answer these paths.
 *
 *   GET  /health                 200 "ok\n"
 *   GET  /stats                  200 JSON
 *   GET  /metrics                200 Prometheus text format 0.0.4
 *   POST /cache/purge?url=URL    204 removed, 404 not cached
 *   POST /cache/purge?tag=TAG    204
 *   POST /cache/clear            204
 *
 * HEAD is accepted wherever GET is.  Errors are JSON {"error": "..."}:
 * 400 bad or missing parameter, 404 unknown path, 405 wrong method (with
 * Allow), 404 {"error":"no cache"} for /cache/ when no store exists (the
 * config caches no route), 503 when the store failed (Redis down).
 *
 * One request per connection: every response carries Connection: close
 * (an admin port sees a scrape every few seconds, not traffic; no
 * keep-alive state to get wrong).  A request body, if any, is ignored
 * (read and discarded while the connection lingers).  Bounds: request
 * head 16 KiB (431 past it), 10 s to send it, 10 s to read the response,
 * 64 admin connections per worker (the listener pauses beyond that).
 *
 * Route and server numbers are read from the stats slots named by
 * stats_route_name() / stats_server_name() for the routes and servers of
 * the config this worker runs; a route or server that never counted
 * anything shows zeros.
 */
#ifndef STOA_ADMIN_H
#define STOA_ADMIN_H

struct admin;
struct cache_store;
struct config;
struct event_base;

/*
 * Start answering on fd, a listening socket (it is made non-blocking).
 * The admin takes ownership of fd: it is closed by admin_stop() or
 * admin_free(), and on failure.  cfg and store (NULL when no route
 * caches) must outlive the admin.  NULL when out of memory.
 */
struct admin *admin_start(struct event_base *base, int fd,
    const struct config *cfg, struct cache_store *store);

/* Stop accepting (closes fd) and close connections still waiting for a
 * request head; responses already being written finish. */
void admin_stop(struct admin *a);

/*
 * Close everything and free.  A store operation still pending (an
 * asynchronous store such as Redis) may call back later: that is safe,
 * its answer is dropped.
 */
void admin_free(struct admin *a);

#endif
