/*
 * log.h -- error log and access log.
 *
 * Error log line: "TIME LEVEL [pid] message\n", one write(2) per line on an
 * O_APPEND descriptor, so lines from several processes never interleave.
 * The access log gets preformatted lines from the worker (log_access).
 */
#ifndef STOA_LOG_H
#define STOA_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Parse "error|warn|info|debug"; -1 when unknown. */
int log_level_parse(const char *s);

/*
 * Open (or re-point) the logs.  error_path: NULL or "stderr" = fd 2.
 * access_path: NULL or "off" = no access log, "stderr" = fd 2.
 * Returns 0, or -1 with a message in errbuf (nothing changed).
 */
int log_open(const char *error_path, const char *access_path, int level,
    char *errbuf, size_t errlen);

/* Reopen the files at the same paths (logrotate, SIGUSR1). 0 or -1. */
int log_reopen(void);

/*
 * Give the open log files to uid/gid (the master runs as root, workers
 * as `user`: a worker must be able to reopen a file the master created
 * after logrotate moved the old one).  Files only; stderr is left alone.
 */
void log_chown(unsigned uid, unsigned gid);

/* Close files (fd 2 is never closed). */
void log_close(void);

/* Current level; callers may test it to skip formatting. */
extern int log_cur_level;

void log_msg(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vmsg(int level, const char *fmt, va_list ap);

#define log_err(...)   log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_cur_level >= LOG_LVL_DEBUG) \
	log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

/* True when an access log is open. */
int log_access_enabled(void);
/* Write one complete access log line (must end with '\n'). */
void log_access(const char *line, size_t len);

#endif
