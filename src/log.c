/*
 * log.c -- error and access logs; see log.h.
 *
 * State is process-global: the master opens the logs, workers inherit the
 * descriptors across fork, and every process reopens on SIGUSR1.  Each line
 * is formatted into a stack buffer and written with one write(2) to an
 * O_APPEND descriptor.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

int log_cur_level = LOG_LVL_INFO;

static int err_fd = 2;
static int acc_fd = -1;
static char *err_path;          /* NULL = stderr */
static char *acc_path;          /* NULL = stderr or off (see acc_fd) */

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int
log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, level_names[i]) == 0)
			return (i);
	return (-1);
}

static int
open_path(const char *path, char *errbuf, size_t errlen)
{
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0 && errbuf != NULL)
		snprintf(errbuf, errlen, "cannot open log file %s: %s", path,
		    strerror(errno));
	return (fd);
}

static void
close_fd(int fd)
{
	if (fd > 2)
		(void)close(fd);
}

int
log_open(const char *error_path, const char *access_path, int level,
    char *errbuf, size_t errlen)
{
	int efd = 2, afd = -1;
	char *ep = NULL, *ap = NULL;

	if (error_path != NULL && strcmp(error_path, "stderr") != 0) {
		efd = open_path(error_path, errbuf, errlen);
		if (efd < 0)
			return (-1);
		ep = strdup(error_path);
	}
	if (access_path != NULL && strcmp(access_path, "off") != 0) {
		if (strcmp(access_path, "stderr") == 0)
			afd = 2;
		else {
			afd = open_path(access_path, errbuf, errlen);
			if (afd < 0) {
				close_fd(efd);
				free(ep);
				return (-1);
			}
			ap = strdup(access_path);
		}
	}
	if (err_fd != efd)
		close_fd(err_fd);
	if (acc_fd != afd)
		close_fd(acc_fd);
	free(err_path);
	free(acc_path);
	err_fd = efd;
	acc_fd = afd;
	err_path = ep;
	acc_path = ap;
	if (level >= LOG_LVL_ERROR && level <= LOG_LVL_DEBUG)
		log_cur_level = level;
	return (0);
}

static int
reopen_one(int *fdp, const char *path)
{
	int fd;

	if (path == NULL)
		return (0);
	fd = open_path(path, NULL, 0);
	if (fd < 0)
		return (-1);
	if (*fdp > 2) {
		/* Keep the descriptor number stable for anyone holding it. */
		if (dup3(fd, *fdp, O_CLOEXEC) < 0) {
			close(fd);
			return (-1);
		}
		close(fd);
	} else
		*fdp = fd;
	return (0);
}

int
log_reopen(void)
{
	int rc = 0;

	if (reopen_one(&err_fd, err_path) < 0) {
		rc = -1;
		log_err("cannot reopen error log %s: %s", err_path, strerror(errno));
	}
	if (reopen_one(&acc_fd, acc_path) < 0) {
		rc = -1;
		log_err("cannot reopen access log %s: %s", acc_path, strerror(errno));
	}
	return (rc);
}

void
log_chown(unsigned uid, unsigned gid)
{
	if (err_fd > 2 && fchown(err_fd, (uid_t)uid, (gid_t)gid) < 0)
		log_warn("cannot give the error log to uid %u: %s", uid,
		    strerror(errno));
	if (acc_fd > 2 && fchown(acc_fd, (uid_t)uid, (gid_t)gid) < 0)
		log_warn("cannot give the access log to uid %u: %s", uid,
		    strerror(errno));
}

void
log_close(void)
{
	close_fd(err_fd);
	close_fd(acc_fd);
	err_fd = 2;
	acc_fd = -1;
	free(err_path);
	free(acc_path);
	err_path = acc_path = NULL;
}

void
log_vmsg(int level, const char *fmt, va_list ap)
{
	char buf[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;
	int r;

	if (level > log_cur_level)
		return;
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(buf + n, sizeof buf - n, ".%03ld %s [%ld] ",
	    (long)(tv.tv_usec / 1000), level_names[level], (long)getpid());
	if (r > 0)
		n += (size_t)r;
	r = vsnprintf(buf + n, sizeof buf - n, fmt, ap);
	if (r > 0)
		n += (size_t)r;
	if (n > sizeof buf - 2)
		n = sizeof buf - 2;
	buf[n++] = '\n';
	(void)util_write_all(err_fd, buf, n);
}

void
log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

int
log_access_enabled(void)
{
	return (acc_fd >= 0);
}

void
log_access(const char *line, size_t len)
{
	if (acc_fd >= 0)
		(void)util_write_all(acc_fd, line, len);
}
