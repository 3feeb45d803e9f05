/*
 * worker.h -- what a worker inherits from the master (the heritage), and
 * the worker entry point.  The master includes this header and nothing
 * below it on the data path.
 *
 * Signals a worker obeys: SIGQUIT = graceful stop (stop accepting, finish
 * in-flight requests, close idle keep-alive connections, exit 0 when done
 * or after shutdown_timeout); SIGTERM/SIGINT = exit now; SIGUSR1 = reopen
 * logs; SIGHUP ignored (reload is the master's business).
 */
#ifndef STOA_WORKER_H
#define STOA_WORKER_H

struct cache_zone;
struct config;
struct stats_zone;
struct tls_keys;

struct heritage {
	const struct config *cfg;
	const int           *listen_fds;   /* cfg->nlisten fds, parallel to cfg->listen */
	const int           *tls_fds;      /* cfg->tls.nlisten fds, or NULL */
	int                  admin_fd;     /* -1 when no admin listener */
	struct stats_zone   *stats_zone;   /* shared counters */
	struct cache_zone   *cache_zone;   /* memory cache, or NULL */
	struct tls_keys     *tls_keys;     /* shared session ticket keys, or NULL */
	unsigned             id;           /* worker slot 0..workers-1 */
	unsigned             generation;   /* config generation, 1.. */
	int                  stats_row;    /* stats_row_use(); -1: none */
};

/* Run the worker's event loop; exits the process (0 on a clean stop). */
void worker_main(const struct heritage *h) __attribute__((noreturn));

#endif
