/*
 * main.c -- command line: -c, -t, -d, -s, -V, -h; hands over to the master.
 *
 * Every failure here is one line on stderr and a non-zero exit, before
 * anything binds: 2 for a usage error, 1 for everything else.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <confuse.h>
#include <event2/event.h>

#include "config.h"
#include "master.h"
#include "mem.h"
#include "tls.h"
#include "util.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/usr/local/etc"
#endif
#define DEFAULT_CONF SYSCONFDIR "/stoa/stoa.conf"

#define SYNOPSIS "stoa [-c FILE] [-t] [-d] [-s SIGNAL] [-V] [-h]"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: " SYNOPSIS "\n"
	    "  -c FILE     config file (default: " DEFAULT_CONF ")\n"
	    "  -t          check the config and exit\n"
	    "  -d          detach (daemonize); default: stay in the foreground\n"
	    "  -s SIGNAL   send reload|reopen|quit|stop to the running master\n"
	    "  -V          print version and build options, exit\n"
	    "  -h          this help, exit\n");
}

static int
usage_error(const char *what, int c)
{
	fprintf(stderr, "stoa: %s -%c (usage: " SYNOPSIS ")\n", what, c);
	return (2);
}

static int
version(void)
{
	printf("stoa %s\n", STOA_VERSION);
	printf("libevent: %s (built with %s)\n", event_get_version(),
	    LIBEVENT_VERSION);
	printf("libconfuse: %s\n", confuse_version);
	printf("libsystemd: sd_notify, watchdog, socket activation\n");
#if defined(__clang__)
	printf("compiler: %s\n", __VERSION__);
#elif defined(__GNUC__)
	printf("compiler: gcc %s\n", __VERSION__);
#endif
#if defined(STOA_BUILD_SAN)
	printf("sanitizers: %s\n", STOA_BUILD_SAN[0] != '\0' ? STOA_BUILD_SAN : "none");
#elif defined(__SANITIZE_ADDRESS__)
	printf("sanitizers: address\n");
#elif defined(__SANITIZE_THREAD__)
	printf("sanitizers: thread\n");
#else
	printf("sanitizers: none\n");
#endif
	printf("default config: %s\n", DEFAULT_CONF);
	return (0);
}

static int
load(const char *path, struct config **cfg)
{
	char err[1024];

	if (config_load(path, cfg, err, sizeof err) != 0) {
		fprintf(stderr, "%s\n", err);
		return (-1);
	}
	return (0);
}

static int
check_config(const char *path)
{
	struct config *cfg;

	if (load(path, &cfg) != 0)
		return (1);
	if (cfg->tls.enabled) {
		/* certificates and keys must load, as they will at start */
		char err[1024];
		struct tls_ctx *t = tls_ctx_new(cfg, NULL, true, err, sizeof err);

		if (t == NULL) {
			fprintf(stderr, "%s\n", err);
			config_free(cfg);
			return (1);
		}
		tls_ctx_free(t);
	}
	config_free(cfg);
	printf("stoa: configuration %s is ok\n", path);
	return (0);
}

static const struct {
	const char *name;
	int         sig;
	const char *signame;
} signals[] = {
	{ "reload", SIGHUP,  "SIGHUP" },
	{ "reopen", SIGUSR1, "SIGUSR1" },
	{ "quit",   SIGQUIT, "SIGQUIT" },
	{ "stop",   SIGTERM, "SIGTERM" },
};

static int
send_signal(const char *path, const char *name)
{
	struct config *cfg;
	char buf[32], *end;
	unsigned i;
	ssize_t n;
	long pid;
	int fd, e;

	for (i = 0; i < sizeof signals / sizeof signals[0]; i++)
		if (strcmp(signals[i].name, name) == 0)
			break;
	if (i == sizeof signals / sizeof signals[0]) {
		fprintf(stderr, "stoa: unknown signal '%s' (use reload, "
		    "reopen, quit or stop)\n", name);
		return (1);
	}
	if (load(path, &cfg) != 0)
		return (1);

	fd = open(cfg->pid_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		fprintf(stderr, "stoa: cannot read pid file %s: %s%s\n",
		    cfg->pid_file, strerror(e),
		    e == ENOENT ? " (is stoa running?)" : "");
		config_free(cfg);
		return (1);
	}
	n = read(fd, buf, sizeof buf - 1);
	(void)close(fd);
	buf[n > 0 ? n : 0] = '\0';
	errno = 0;
	pid = strtol(buf, &end, 10);
	if (n <= 0 || errno != 0 || end == buf || pid <= 0 ||
	    pid > INT32_MAX || (*end != '\0' && *end != '\n')) {
		fprintf(stderr, "stoa: pid file %s does not hold a pid\n",
		    cfg->pid_file);
		config_free(cfg);
		return (1);
	}
	if (kill((pid_t)pid, signals[i].sig) < 0) {
		e = errno;
		if (e == ESRCH)
			fprintf(stderr, "stoa: no process with pid %ld (stale "
			    "pid file %s; is stoa running?)\n", pid,
			    cfg->pid_file);
		else
			fprintf(stderr, "stoa: cannot send %s to pid %ld: %s\n",
			    signals[i].signame, pid, strerror(e));
		config_free(cfg);
		return (1);
	}
	config_free(cfg);
	return (0);
}

/*
 * The foreground side of -d: wait for the daemon's verdict on rfd (one
 * NUL byte = ready, text = the startup error, EOF = it died).
 */
static int
wait_ready(int rfd, pid_t mid)
{
	char buf[1100];
	size_t len = 0;
	ssize_t n;
	int st;

	for (;;) {
		n = read(rfd, buf + len, sizeof buf - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (len == 0 && buf[0] == '\0')
			return (0);
		len += (size_t)n;
		if (len == sizeof buf - 1)
			break;
	}
	(void)waitpid(mid, &st, 0);
	if (len == 0) {
		fprintf(stderr, "stoa: the daemon exited during startup\n");
		return (1);
	}
	fprintf(stderr, "%.*s\n", (int)len, buf);
	return (1);
}

/*
 * Detach: fork (the parent waits for readiness and exits with its
 * verdict), setsid, fork again (never a session leader), chdir /, stdio
 * to /dev/null (stderr only when the error log is a file).  Returns the
 * write end of the readiness pipe in the daemon; never returns in the
 * parent.  -1 when detaching failed (message printed).
 */
static int
daemonize(const struct config *cfg)
{
	int p[2], fd;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0) {
		fprintf(stderr, "stoa: cannot detach: pipe: %s\n",
		    strerror(errno));
		return (-1);
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "stoa: cannot detach: fork: %s\n",
		    strerror(errno));
		return (-1);
	}
	if (pid > 0) {
		(void)close(p[1]);
		exit(wait_ready(p[0], pid));
	}
	(void)close(p[0]);
	if (setsid() < 0) {
		dprintf(p[1], "stoa: cannot detach: setsid: %s",
		    strerror(errno));
		_exit(1);
	}
	pid = fork();
	if (pid < 0) {
		dprintf(p[1], "stoa: cannot detach: fork: %s", strerror(errno));
		_exit(1);
	}
	if (pid > 0)
		_exit(0);
	if (chdir("/") < 0) {
		dprintf(p[1], "stoa: cannot detach: chdir /: %s",
		    strerror(errno));
		_exit(1);
	}
	fd = open("/dev/null", O_RDWR);
	if (fd < 0) {
		dprintf(p[1], "stoa: cannot open /dev/null: %s",
		    strerror(errno));
		_exit(1);
	}
	(void)dup2(fd, 0);
	(void)dup2(fd, 1);
	if (cfg->error_log != NULL && strcmp(cfg->error_log, "stderr") != 0 &&
	    (cfg->access_log == NULL || strcmp(cfg->access_log, "stderr") != 0))
		(void)dup2(fd, 2);
	if (fd > 2)
		(void)close(fd);
	return (p[1]);
}

int
main(int argc, char **argv)
{
	const char *conf = DEFAULT_CONF, *sig = NULL;
	char *abs = NULL;
	int c, test = 0, detach = 0, ready_fd = -1, rc;
	struct config *cfg;

	mem_install();          /* before any other libevent call */
	opterr = 0;
	while ((c = getopt(argc, argv, ":c:tds:Vh")) != -1) {
		switch (c) {
		case 'c': conf = optarg; break;
		case 't': test = 1; break;
		case 'd': detach = 1; break;
		case 's': sig = optarg; break;
		case 'V': return (version());
		case 'h': usage(stdout); return (0);
		case ':':
			return (usage_error("missing argument to option",
			    optopt));
		default:
			return (usage_error("unknown option", optopt));
		}
	}
	if (optind < argc) {
		fprintf(stderr, "stoa: unexpected argument '%s' (usage: "
		    SYNOPSIS ")\n", argv[optind]);
		return (2);
	}
	if (test)
		return (check_config(conf));
	if (sig != NULL)
		return (send_signal(conf, sig));

	if (load(conf, &cfg) != 0)
		return (1);
	/* SIGHUP re-reads the same file, also after chdir("/"). */
	if (conf[0] != '/') {
		abs = realpath(conf, NULL);
		if (abs != NULL)
			conf = abs;
	}
	if (detach) {
		ready_fd = daemonize(cfg);
		if (ready_fd < 0) {
			config_free(cfg);
			free(abs);
			return (1);
		}
	}
	rc = master_run(cfg, conf, ready_fd);
	free(abs);
	return (rc);
}
