/*
 * master.h -- the supervising master process.
 *
 * The master opens the logs and the listening sockets, writes the pid
 * file, forks the workers and then only supervises: it reaps and replaces
 * dead workers (with per-slot backoff), reloads on SIGHUP, reopens logs on
 * SIGUSR1, stops gracefully on SIGQUIT and fast on SIGTERM/SIGINT, and
 * talks to systemd (sd_notify, socket activation).  It never includes a
 * protocol header; what a worker gets from it is struct heritage (worker.h).
 */
#ifndef STOA_MASTER_H
#define STOA_MASTER_H

/* The build passes -DSTOA_VERSION='"$(PACKAGE_VERSION)"'. */
#ifndef STOA_VERSION
#define STOA_VERSION "0.1.0"
#endif

struct config;

/*
 * Run the master until it stops.  Takes ownership of cfg (a generation
 * loaded from conf_path, which SIGHUP re-reads; an absolute path when the
 * process has detached).
 *
 * ready_fd: -1 in the foreground; with -d, the write end of a pipe to the
 * waiting foreground parent.  On successful startup the master writes one
 * NUL byte to it once the workers are forked; on a startup failure it
 * writes the error line (no NUL, no newline) instead of printing it.  The
 * master closes ready_fd in both cases.
 *
 * Returns the process exit status: 0 after SIGQUIT/SIGTERM/SIGINT, 1 when
 * startup failed (one clear line on stderr or ready_fd; nothing left
 * running, the pid file not left behind).
 */
int master_run(struct config *cfg, const char *conf_path, int ready_fd);

#endif
