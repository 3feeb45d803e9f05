/*
 * master.c -- listeners, prefork, respawn with backoff, reload, drain,
 * pid file and sd_notify; see master.h.
 *
 * Signals are handled synchronously: the master blocks the ones it cares
 * about and collects them with sigtimedwait(), so nothing runs in a signal
 * handler.  A child restores the default dispositions and an empty mask
 * before it enters worker_main().
 *
 * Ownership:
 *  - The listening-socket pool (mstr.ls) owns every listening descriptor
 *    the master holds, keyed by address.  After a reload it keeps only
 *    what the current generation uses; workers of older generations hold
 *    their own inherited copies while they drain.
 *  - A generation (struct gen) owns one config and the fd arrays its
 *    workers inherit (the fds in them belong to the pool).  It is freed
 *    when it is no longer current and its last worker has been reaped.
 *  - Slots (mstr.slots) are the current generation's worker places; each
 *    has its own restart backoff.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "config.h"
#include "cache/memory.h"
#include "log.h"
#include "master.h"
#include "stats.h"
#include "tls.h"
#include "util.h"
#include "vas.h"
#include "worker.h"

#define LISTEN_BACKLOG          4096
#define KILL_GRACE_MS           5000    /* past shutdown_timeout on SIGQUIT */
#define FAST_STOP_MS            2000    /* SIGTERM, then SIGKILL after this */
#define BACKOFF_MIN_MS          100
#define BACKOFF_MAX_MS          10000
#define CRASH_LIFETIME_MS       1000    /* died sooner: crash loop */
#define HEALTHY_LIFETIME_MS     10000   /* lived longer: backoff reset */
#define FORK_RETRY_MS           1000
#define TICK_MS                 1000

struct lsock {
	struct sockaddr_storage  ss;
	socklen_t                sslen;
	int                      fd;
};

#define GEN_MAGIC 0x6e4e7a11u

struct gen {
	unsigned                 magic;
	unsigned                 num;           /* 1.. */
	struct config           *cfg;           /* owned */
	int                     *listen_fds;    /* cfg->nlisten */
	int                     *tls_fds;       /* cfg->tls.nlisten, or NULL */
	int                      admin_fd;
	bool                     drop;          /* setuid to uid/gid in workers */
	uid_t                    uid;
	gid_t                    gid;
	gid_t                   *groups;
	int                      ngroups;
	unsigned                 nchildren;     /* live worker processes */
	struct gen              *next;
};

struct child {
	pid_t                    pid;
	struct gen              *gen;
	unsigned                 slot;
	uint64_t                 started;       /* ms, monotonic */
	uint64_t                 kill_at;       /* SIGKILL deadline; 0 = none */
	bool                     draining;      /* told to stop */
	int                      stats_row;     /* stats_row_claim(), or -1 */
};

struct slot {
	pid_t                    pid;           /* 0 = no live worker */
	uint64_t                 backoff;       /* ms; 0 = restart at once */
	bool                     pending;       /* restart scheduled */
	uint64_t                 restart_at;
};

enum mstate { M_RUNNING, M_STOP_GRACEFUL, M_STOP_FAST };

static struct {
	const char              *conf_path;
	char                    *pid_path;      /* the one we wrote; owned */
	bool                     pid_written;
	pid_t                    pid;
	int                      ready_fd;

	struct lsock            *ls;
	unsigned                 nls;

	int                     *act_fds;       /* socket activation leftovers */
	int                      nact;

	struct gen              *cur;
	struct gen              *gens;          /* every live generation */
	unsigned                 gen_counter;

	struct child            *children;
	unsigned                 nchildren;
	unsigned                 children_cap;

	struct slot             *slots;         /* cur->cfg->workers */
	unsigned                 nslots;

	enum mstate              state;
	uint64_t                 wd_interval;   /* ms; 0 = no watchdog */
	uint64_t                 wd_next;
	bool                     warned_user;
	bool                     log_is_file;   /* error log is not stderr */
} mstr;

static void logs_give_to_workers(void);

/*
 * Shared memory the workers inherit: created before the first fork and
 * kept by the master across reloads (the cache survives a reload).
 */
static struct stats_zone *szone;
static struct cache_zone *czone;
static struct tls_keys *tkeys;          /* session tickets, all workers */
static uint64_t tkeys_rotate_at;

#define TLS_KEY_ROTATE_MS (3600 * 1000)

static bool
cfg_uses_memory_cache(const struct config *cfg)
{
	if (cfg->cache.backend != CACHE_BACKEND_MEMORY)
		return (false);
	for (unsigned i = 0; i < cfg->nroutes; i++)
		if (cfg->routes[i].cache)
			return (true);
	return (false);
}

/* Create what a generation needs and does not exist yet.  0 or -1. */
static int
zones_prepare(const struct config *cfg, char *err, size_t errlen)
{
	if (szone == NULL) {
		szone = stats_zone_create(err, errlen);
		if (szone == NULL)
			return (-1);
		stats_attach(szone);
	}
	if (cfg->tls.enabled) {
		struct tls_ctx *t;

		if (tkeys == NULL) {
			tkeys = tls_keys_create(err, errlen);
			if (tkeys == NULL)
				return (-1);
			tkeys_rotate_at = util_now_ms() + TLS_KEY_ROTATE_MS;
		}
		/* certificates are (re-)read here: a broken one keeps the
		 * old generation on reload and fails a start */
		t = tls_ctx_new(cfg, tkeys, true, err, errlen);
		if (t == NULL)
			return (-1);
		tls_ctx_free(t);
	}
	if (cfg_uses_memory_cache(cfg)) {
		if (czone == NULL) {
			czone = cache_zone_create(cfg->cache.size, err, errlen);
			if (czone == NULL)
				return (-1);
		} else if (cache_zone_size(czone) != cfg->cache.size)
			log_warn("cache.size changed to %llu bytes: the memory "
			    "cache keeps its %llu bytes until a restart",
			    (unsigned long long)cfg->cache.size,
			    (unsigned long long)cache_zone_size(czone));
	}
	return (0);
}

static sigset_t master_sigs;

/*--------------------------------------------------------------------
 * Small helpers
 */

static bool
addr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	const struct sockaddr_in *a4, *b4;
	const struct sockaddr_in6 *a6, *b6;

	if (a->ss_family != b->ss_family)
		return (false);
	if (a->ss_family == AF_INET) {
		a4 = (const struct sockaddr_in *)a;
		b4 = (const struct sockaddr_in *)b;
		return (a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr);
	}
	if (a->ss_family == AF_INET6) {
		a6 = (const struct sockaddr_in6 *)a;
		b6 = (const struct sockaddr_in6 *)b;
		return (a6->sin6_port == b6->sin6_port &&
		    a6->sin6_scope_id == b6->sin6_scope_id &&
		    memcmp(&a6->sin6_addr, &b6->sin6_addr,
		    sizeof a6->sin6_addr) == 0);
	}
	return (false);
}

static void
notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
notify(const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	/* A no-op returning 0 when NOTIFY_SOCKET is unset. */
	if (sd_notify(0, buf) < 0)
		log_debug("sd_notify failed");
}

static unsigned long long
mono_usec(void)
{
	struct timespec ts;

	AZ(clock_gettime(CLOCK_MONOTONIC, &ts));
	return ((unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL);
}

static void
status_str(int st, char *buf, size_t len)
{
	if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d%s", WTERMSIG(st),
		    WCOREDUMP(st) ? " (core dumped)" : "");
	else if (WIFEXITED(st))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
	else
		snprintf(buf, len, "ended (wait status %#x)", (unsigned)st);
}

/*
 * Startup failure: one line "stoa: reason" on stderr, or through the -d
 * pipe to the waiting parent.  Also into the error log when that is a
 * file, so the operator finds it there too.
 */
static void
startup_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
startup_fail(const char *fmt, ...)
{
	char buf[1024];
	char line[1100];
	va_list ap;
	int n;

	va_start(ap, fmt);
	(void)vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (mstr.log_is_file)
		log_err("%s", buf);
	n = snprintf(line, sizeof line, "stoa: %s%s", buf,
	    mstr.ready_fd >= 0 ? "" : "\n");
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line)
		n = (int)sizeof line - 1;
	(void)util_write_all(mstr.ready_fd >= 0 ? mstr.ready_fd : 2, line,
	    (size_t)n);
}

/*--------------------------------------------------------------------
 * Listening sockets
 */

/* Open a listening socket on a; -1 with errno on failure. */
static int
listener_open(const struct config_addr *a)
{
	int fd, one = 1, e;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0)
		return (-1);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
		goto fail;
	if (a->ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&a->ss, a->sslen) < 0)
		goto fail;
	if (listen(fd, LISTEN_BACKLOG) < 0)
		goto fail;
	return (fd);
fail:
	e = errno;
	(void)close(fd);
	errno = e;
	return (-1);
}

/* A socket passed by systemd (LISTEN_FDS) bound to a, or -1. */
static int
activation_take(const struct config_addr *a)
{
	int i, fd, fl;

	for (i = 0; i < mstr.nact; i++) {
		fd = mstr.act_fds[i];
		if (fd < 0)
			continue;
		if (sd_is_socket_sockaddr(fd, SOCK_STREAM,
		    (const struct sockaddr *)&a->ss, a->sslen, 1) <= 0)
			continue;
		mstr.act_fds[i] = -1;
		fl = fcntl(fd, F_GETFL);
		if (fl >= 0)
			(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		log_info("using socket-activated listener %s (fd %d)",
		    a->text, fd);
		return (fd);
	}
	return (-1);
}

static void
activation_init(void)
{
	int n, i;

	n = sd_listen_fds(1);
	if (n < 0) {
		log_warn("ignoring LISTEN_FDS: %s", strerror(-n));
		return;
	}
	if (n == 0)
		return;
	mstr.act_fds = calloc((size_t)n, sizeof *mstr.act_fds);
	AN(mstr.act_fds);
	for (i = 0; i < n; i++)
		mstr.act_fds[i] = SD_LISTEN_FDS_START + i;
	mstr.nact = n;
}

/* Close what socket activation passed but no listen address matched. */
static void
activation_done(void)
{
	int i;

	for (i = 0; i < mstr.nact; i++) {
		if (mstr.act_fds[i] < 0)
			continue;
		log_warn("socket-activated fd %d matches no listen address; "
		    "closing it", mstr.act_fds[i]);
		(void)close(mstr.act_fds[i]);
	}
	free(mstr.act_fds);
	mstr.act_fds = NULL;
	mstr.nact = 0;
}

/* One address of a generation and the fd slot it fills. */
struct bindreq {
	const struct config_addr *a;
	int                      *fdp;
};

/*
 * Give every address of g a listening fd: the pool's socket when the
 * address is already open (so its kernel backlog survives a reload), a
 * socket-activated one, or a new one.  On failure nothing is left open
 * that was not open before, and err holds "cannot listen on ADDR: why".
 */
static int
gen_bind(struct gen *g, char *err, size_t errlen)
{
	const struct config *cfg = g->cfg;
	struct bindreq *rq;
	unsigned n = 0, i, j, nls0 = mstr.nls;
	struct lsock *nls;
	int fd, rc = -1;

	rq = calloc((size_t)cfg->nlisten + cfg->tls.nlisten + 1, sizeof *rq);
	AN(rq);
	for (i = 0; i < cfg->nlisten; i++) {
		rq[n].a = &cfg->listen[i];
		rq[n++].fdp = &g->listen_fds[i];
	}
	for (i = 0; i < cfg->tls.nlisten; i++) {
		rq[n].a = &cfg->tls.listen[i];
		rq[n++].fdp = &g->tls_fds[i];
	}
	if (cfg->has_admin) {
		rq[n].a = &cfg->admin;
		rq[n++].fdp = &g->admin_fd;
	}

	for (i = 0; i < n; i++)
		for (j = 0; j < i; j++)
			if (addr_eq(&rq[i].a->ss, &rq[j].a->ss)) {
				snprintf(err, errlen, "cannot listen on %s: "
				    "address is configured twice", rq[i].a->text);
				goto out;
			}

	for (i = 0; i < n; i++) {
		for (j = 0; j < mstr.nls; j++)
			if (addr_eq(&mstr.ls[j].ss, &rq[i].a->ss))
				break;
		if (j < mstr.nls) {
			*rq[i].fdp = mstr.ls[j].fd;
			continue;
		}
		fd = activation_take(rq[i].a);
		if (fd < 0)
			fd = listener_open(rq[i].a);
		if (fd < 0) {
			snprintf(err, errlen, "cannot listen on %s: %s",
			    rq[i].a->text, strerror(errno));
			goto out;
		}
		nls = realloc(mstr.ls, (mstr.nls + 1) * sizeof *nls);
		AN(nls);
		mstr.ls = nls;
		mstr.ls[mstr.nls].ss = rq[i].a->ss;
		mstr.ls[mstr.nls].sslen = rq[i].a->sslen;
		mstr.ls[mstr.nls].fd = fd;
		mstr.nls++;
		*rq[i].fdp = fd;
	}
	rc = 0;
out:
	if (rc != 0) {
		/* Only what this call opened; never an activation socket. */
		for (j = nls0; j < mstr.nls; j++)
			(void)close(mstr.ls[j].fd);
		mstr.nls = nls0;
	}
	free(rq);
	return (rc);
}

static bool
gen_uses_fd(const struct gen *g, int fd)
{
	unsigned i;

	for (i = 0; i < g->cfg->nlisten; i++)
		if (g->listen_fds[i] == fd)
			return (true);
	for (i = 0; i < g->cfg->tls.nlisten; i++)
		if (g->tls_fds[i] == fd)
			return (true);
	return (g->admin_fd == fd);
}

/* Close the pool's sockets that g does not use. */
static void
pool_prune(const struct gen *g)
{
	unsigned i, k = 0;

	for (i = 0; i < mstr.nls; i++) {
		if (gen_uses_fd(g, mstr.ls[i].fd))
			mstr.ls[k++] = mstr.ls[i];
		else
			(void)close(mstr.ls[i].fd);
	}
	mstr.nls = k;
}

static void
pool_close(void)
{
	unsigned i;

	for (i = 0; i < mstr.nls; i++)
		(void)close(mstr.ls[i].fd);
	free(mstr.ls);
	mstr.ls = NULL;
	mstr.nls = 0;
}

/*--------------------------------------------------------------------
 * Generations
 */

/*
 * Wrap cfg (ownership passes to the generation, also on failure) and
 * resolve its user.  NULL with err set when the user is unknown.
 */
static struct gen *
gen_new(struct config *cfg, char *err, size_t errlen)
{
	struct gen *g;
	struct passwd *pw;
	unsigned i;
	int ng;

	CHECK_OBJ_NOTNULL(cfg, CONFIG_MAGIC);
	g = calloc(1, sizeof *g);
	AN(g);
	g->magic = GEN_MAGIC;
	g->cfg = cfg;
	g->admin_fd = -1;
	g->listen_fds = calloc(cfg->nlisten ? cfg->nlisten : 1,
	    sizeof *g->listen_fds);
	AN(g->listen_fds);
	for (i = 0; i < cfg->nlisten; i++)
		g->listen_fds[i] = -1;
	if (cfg->tls.nlisten > 0) {
		g->tls_fds = calloc(cfg->tls.nlisten, sizeof *g->tls_fds);
		AN(g->tls_fds);
		for (i = 0; i < cfg->tls.nlisten; i++)
			g->tls_fds[i] = -1;
	}

	if (cfg->user == NULL)
		return (g);
	if (geteuid() != 0) {
		if (!mstr.warned_user)
			log_warn("not running as root: user = %s ignored, "
			    "workers run as uid %ld", cfg->user, (long)geteuid());
		mstr.warned_user = true;
		return (g);
	}
	errno = 0;
	pw = getpwnam(cfg->user);
	if (pw == NULL) {
		snprintf(err, errlen, "unknown user '%s'%s%s", cfg->user,
		    errno != 0 ? ": " : "", errno != 0 ? strerror(errno) : "");
		goto fail;
	}
	g->drop = true;
	g->uid = pw->pw_uid;
	g->gid = pw->pw_gid;
	ng = 32;
	for (;;) {
		g->groups = realloc(g->groups, (size_t)ng * sizeof *g->groups);
		AN(g->groups);
		i = (unsigned)ng;
		if (getgrouplist(cfg->user, pw->pw_gid, g->groups, &ng) >= 0)
			break;
		if ((unsigned)ng <= i) {
			snprintf(err, errlen, "cannot read the groups of "
			    "user '%s'", cfg->user);
			goto fail;
		}
	}
	g->ngroups = ng;
	return (g);
fail:
	free(g->groups);
	free(g->tls_fds);
	free(g->listen_fds);
	config_free(cfg);
	free(g);
	return (NULL);
}

/* Free g (not yet linked, or unlinked here).  Its fds belong to the pool. */
static void
gen_free(struct gen *g)
{
	struct gen **gp;

	CHECK_OBJ_NOTNULL(g, GEN_MAGIC);
	assert_always(g->nchildren == 0);
	for (gp = &mstr.gens; *gp != NULL; gp = &(*gp)->next)
		if (*gp == g) {
			*gp = g->next;
			break;
		}
	config_free(g->cfg);
	free(g->groups);
	free(g->tls_fds);
	free(g->listen_fds);
	g->magic = 0;
	free(g);
}

static void
gen_release_if_idle(struct gen *g)
{
	if (g != mstr.cur && g->nchildren == 0) {
		log_debug("generation %u released", g->num);
		gen_free(g);
	}
}

/*--------------------------------------------------------------------
 * Workers
 */

static void __attribute__((noreturn))
child_main(struct gen *g, unsigned id, int stats_row)
{
	struct heritage h;
	struct sigaction sa;
	sigset_t none;
	unsigned i;
	int s;

	/* Nothing the worker does not inherit by contract. */
	for (i = 0; i < mstr.nls; i++)
		if (!gen_uses_fd(g, mstr.ls[i].fd))
			(void)close(mstr.ls[i].fd);
	if (mstr.ready_fd >= 0)
		(void)close(mstr.ready_fd);

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	(void)sigemptyset(&sa.sa_mask);
	for (s = 1; s < NSIG; s++)
		if (sigismember(&master_sigs, s) == 1)
			(void)sigaction(s, &sa, NULL);

	if (g->drop) {
		if (setgroups((size_t)g->ngroups, g->groups) < 0 ||
		    setgid(g->gid) < 0 || setuid(g->uid) < 0) {
			log_err("worker %u: cannot switch to user %s: %s", id,
			    g->cfg->user, strerror(errno));
			_exit(2);
		}
	}
	/* After setuid: a credential change clears the death signal. */
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != mstr.pid)
		_exit(0);

	/* Only the master talks to systemd. */
	(void)unsetenv("NOTIFY_SOCKET");
	(void)unsetenv("WATCHDOG_USEC");
	(void)unsetenv("WATCHDOG_PID");

	(void)sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);

	h.cfg = g->cfg;
	h.listen_fds = g->listen_fds;
	h.tls_fds = g->tls_fds;
	h.admin_fd = g->admin_fd;
	h.stats_zone = szone;
	h.cache_zone = czone;
	h.tls_keys = tkeys;
	h.id = id;
	h.generation = g->num;
	h.stats_row = stats_row;
	worker_main(&h);
}

static struct child *
child_find(pid_t pid)
{
	unsigned i;

	for (i = 0; i < mstr.nchildren; i++)
		if (mstr.children[i].pid == pid)
			return (&mstr.children[i]);
	return (NULL);
}

/* Fork the worker of slot id of the current generation.  0 or -1. */
static int
spawn(unsigned id)
{
	struct gen *g = mstr.cur;
	struct child *c;
	struct slot *sl;
	pid_t pid;
	int row;

	assert_always(id < mstr.nslots);
	sl = &mstr.slots[id];
	sl->pending = false;
	if (mstr.nchildren == mstr.children_cap) {
		mstr.children_cap = mstr.children_cap ? 2 * mstr.children_cap : 8;
		mstr.children = realloc(mstr.children,
		    mstr.children_cap * sizeof *mstr.children);
		AN(mstr.children);
	}
	row = stats_row_claim();
	pid = fork();
	if (pid < 0) {
		log_err("cannot fork worker %u: %s", id, strerror(errno));
		stats_row_release(row);
		return (-1);
	}
	if (pid == 0)
		child_main(g, id, row);
	c = &mstr.children[mstr.nchildren++];
	memset(c, 0, sizeof *c);
	c->pid = pid;
	c->stats_row = row;
	c->gen = g;
	c->slot = id;
	c->started = util_now_ms();
	g->nchildren++;
	sl->pid = pid;
	log_debug("worker %u (pid %ld, generation %u) started", id, (long)pid,
	    g->num);
	return (0);
}

static void
spawn_or_retry(unsigned id)
{
	struct slot *sl = &mstr.slots[id];

	if (spawn(id) == 0)
		return;
	sl->pending = true;
	sl->restart_at = util_now_ms() + FORK_RETRY_MS;
}

/* New slot table for the current generation. */
static void
slots_reset(void)
{
	free(mstr.slots);
	mstr.nslots = mstr.cur->cfg->workers;
	mstr.slots = calloc(mstr.nslots, sizeof *mstr.slots);
	AN(mstr.slots);
}

/* Tell c to stop: sig is SIGQUIT (drain) or SIGTERM (now). */
static void
child_stop(struct child *c, int sig, uint64_t now)
{
	uint64_t deadline;

	if (sig == SIGQUIT)
		deadline = now + c->gen->cfg->shutdown_timeout + KILL_GRACE_MS;
	else
		deadline = now + FAST_STOP_MS;
	if (c->kill_at == 0 || deadline < c->kill_at)
		c->kill_at = deadline;
	c->draining = true;
	if (kill(c->pid, sig) < 0 && errno != ESRCH)
		log_warn("cannot signal worker %u (pid %ld): %s", c->slot,
		    (long)c->pid, strerror(errno));
}

static void
child_exited(pid_t pid, int st)
{
	struct child *c;
	struct slot *sl;
	struct gen *g;
	uint64_t now, lived;
	char why[64];
	bool clean;

	c = child_find(pid);
	if (c == NULL)
		return;
	g = c->gen;
	now = util_now_ms();
	lived = now - c->started;
	status_str(st, why, sizeof why);
	clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;

	if (g == mstr.cur && !c->draining && mstr.state == M_RUNNING) {
		sl = &mstr.slots[c->slot];
		AN(sl->pid == pid);
		sl->pid = 0;
		if (lived < CRASH_LIFETIME_MS) {
			sl->backoff = sl->backoff == 0 ? BACKOFF_MIN_MS :
			    sl->backoff * 2;
			if (sl->backoff > BACKOFF_MAX_MS)
				sl->backoff = BACKOFF_MAX_MS;
		} else if (lived >= HEALTHY_LIFETIME_MS)
			sl->backoff = 0;
		sl->pending = true;
		sl->restart_at = now + sl->backoff;
		if (sl->backoff == 0)
			log_err("worker %u (pid %ld) %s; restarting", c->slot,
			    (long)pid, why);
		else
			log_err("worker %u (pid %ld) %s after %llu ms; "
			    "restarting in %llu ms (crash loop backoff)",
			    c->slot, (long)pid, why, (unsigned long long)lived,
			    (unsigned long long)sl->backoff);
	} else {
		if (g == mstr.cur && c->slot < mstr.nslots &&
		    mstr.slots[c->slot].pid == pid)
			mstr.slots[c->slot].pid = 0;
		if (clean)
			log_info("worker %u (pid %ld, generation %u) exited",
			    c->slot, (long)pid, g->num);
		else
			log_warn("worker %u (pid %ld, generation %u) %s",
			    c->slot, (long)pid, g->num, why);
	}

	/* what it still counted as open is not open any more */
	stats_row_release(c->stats_row);
	*c = mstr.children[--mstr.nchildren];
	assert_always(g->nchildren > 0);
	g->nchildren--;
	gen_release_if_idle(g);
}

static void
reap(void)
{
	pid_t pid;
	int st;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
		child_exited(pid, st);
}

static bool
all_slots_alive(void)
{
	unsigned i;

	for (i = 0; i < mstr.nslots; i++)
		if (mstr.slots[i].pid == 0)
			return (false);
	return (true);
}

/*--------------------------------------------------------------------
 * Pid file
 */

static bool
pid_is_ours(pid_t pid)
{
	char path[64], a[64] = "", b[64] = "";
	FILE *f;

	/* Same command name as ours; unreadable means "assume it is". */
	snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return (true);
	if (fgets(a, sizeof a, f) == NULL)
		a[0] = '\0';
	fclose(f);
	f = fopen("/proc/self/comm", "r");
	if (f == NULL)
		return (true);
	if (fgets(b, sizeof b, f) == NULL)
		b[0] = '\0';
	fclose(f);
	return (strcmp(a, b) == 0);
}

/* The pid in path, or 0 when there is none (or it is not a number). */
static pid_t
pidfile_read(const char *path)
{
	char buf[32], *end;
	ssize_t n;
	long v;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return (0);
	n = read(fd, buf, sizeof buf - 1);
	(void)close(fd);
	if (n <= 0)
		return (0);
	buf[n] = '\0';
	errno = 0;
	v = strtol(buf, &end, 10);
	if (errno != 0 || end == buf || v <= 0 || v > INT32_MAX ||
	    (*end != '\0' && *end != '\n'))
		return (0);
	return ((pid_t)v);
}

static int
pidfile_check(const char *path, char *err, size_t errlen)
{
	pid_t pid;

	pid = pidfile_read(path);
	if (pid <= 0 || pid == getpid())
		return (0);
	if (kill(pid, 0) < 0 && errno != EPERM)
		return (0);
	if (!pid_is_ours(pid))
		return (0);
	snprintf(err, errlen, "already running (pid %ld, pid file %s)",
	    (long)pid, path);
	return (-1);
}

/* Write our pid atomically (temp file + rename); creates one missing
 * parent directory level. */
static int
pidfile_write(const char *path, char *err, size_t errlen)
{
	char tmp[4096], dir[4096], buf[32];
	const char *slash;
	int fd, n;

	slash = strrchr(path, '/');
	if (slash != NULL && slash != path &&
	    (size_t)(slash - path) < sizeof dir) {
		memcpy(dir, path, (size_t)(slash - path));
		dir[slash - path] = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "cannot create pid file "
			    "directory %.*s: %s", (int)(slash - path), path,
			    strerror(errno));
			return (-1);
		}
	}
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
		snprintf(err, errlen, "pid file path too long");
		return (-1);
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "cannot write pid file %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
	if (util_write_all(fd, buf, (size_t)n) < 0 || close(fd) < 0 ||
	    rename(tmp, path) < 0) {
		snprintf(err, errlen, "cannot write pid file %s: %s", path,
		    strerror(errno));
		(void)unlink(tmp);
		return (-1);
	}
	mstr.pid_written = true;
	return (0);
}

/* Remove the pid file if it still names us. */
static void
pidfile_remove(void)
{
	if (!mstr.pid_written)
		return;
	mstr.pid_written = false;
	if (pidfile_read(mstr.pid_path) == getpid() &&
	    unlink(mstr.pid_path) < 0)
		log_warn("cannot remove pid file %s: %s", mstr.pid_path,
		    strerror(errno));
}

/*--------------------------------------------------------------------
 * Reload, stop, reopen
 */

static void
master_reload(void)
{
	struct config *ncfg;
	struct gen *g, *old;
	char err[1024];
	unsigned i;
	uint64_t now;

	log_info("reloading configuration from %s", mstr.conf_path);
	notify("RELOADING=1\nMONOTONIC_USEC=%llu", mono_usec());
	if (config_load(mstr.conf_path, &ncfg, err, sizeof err) != 0)
		goto fail;
	if (zones_prepare(ncfg, err, sizeof err) != 0) {
		config_free(ncfg);
		goto fail;
	}
	g = gen_new(ncfg, err, sizeof err);
	if (g == NULL)
		goto fail;
	if (gen_bind(g, err, sizeof err) != 0)
		goto fail_gen;
	if (log_open(ncfg->error_log, ncfg->access_log, ncfg->log_level,
	    err, sizeof err) != 0) {
		pool_prune(mstr.cur);   /* closes what gen_bind opened */
		goto fail_gen;
	}
	if (strcmp(ncfg->pid_file, mstr.pid_path) != 0)
		log_warn("pid_file changed to %s: takes effect on restart; "
		    "keeping %s", ncfg->pid_file, mstr.pid_path);

	/* Commit: new workers first, then drain the old ones. */
	old = mstr.cur;
	g->num = ++mstr.gen_counter;
	g->next = mstr.gens;
	mstr.gens = g;
	mstr.cur = g;
	logs_give_to_workers();
	slots_reset();
	for (i = 0; i < mstr.nslots; i++)
		spawn_or_retry(i);
	now = util_now_ms();
	for (i = 0; i < mstr.nchildren; i++)
		if (mstr.children[i].gen != g && !mstr.children[i].draining)
			child_stop(&mstr.children[i], SIGQUIT, now);
	pool_prune(g);
	gen_release_if_idle(old);
	log_info("configuration reloaded (generation %u, %u workers)", g->num,
	    g->cfg->workers);
	notify("READY=1\nSTATUS=generation %u, %u workers", g->num,
	    g->cfg->workers);
	return;

fail_gen:
	gen_free(g);
fail:
	log_err("reload failed, keeping the current configuration: %s", err);
	notify("READY=1");
}

static void
master_stop(enum mstate how)
{
	uint64_t now = util_now_ms();
	unsigned i;
	int sig;

	if (how <= mstr.state)
		return;
	if (mstr.state == M_RUNNING)
		notify("STOPPING=1");
	if (how == M_STOP_GRACEFUL) {
		log_info("graceful stop: draining %u workers", mstr.nchildren);
		sig = SIGQUIT;
	} else {
		log_info("fast stop: terminating %u workers", mstr.nchildren);
		sig = SIGTERM;
	}
	mstr.state = how;
	for (i = 0; i < mstr.nslots; i++)
		mstr.slots[i].pending = false;
	for (i = 0; i < mstr.nchildren; i++)
		child_stop(&mstr.children[i], sig, now);
}

/* Workers that dropped privileges must be able to reopen the log files
 * the master (root) creates; see log_chown(). */
static void
logs_give_to_workers(void)
{
	if (mstr.cur != NULL && mstr.cur->drop)
		log_chown((unsigned)mstr.cur->uid, (unsigned)mstr.cur->gid);
}

static void
master_reopen(void)
{
	unsigned i;

	log_info("reopening log files");
	if (log_reopen() == 0)
		log_info("log files reopened");
	logs_give_to_workers();
	for (i = 0; i < mstr.nchildren; i++)
		(void)kill(mstr.children[i].pid, SIGUSR1);
}

/*--------------------------------------------------------------------
 * Main loop
 */

/* Deadlines due now: SIGKILL laggards, restart slots, ping the watchdog. */
static void
run_timers(uint64_t now)
{
	struct child *c;
	unsigned i;

	for (i = 0; i < mstr.nchildren; i++) {
		c = &mstr.children[i];
		if (c->kill_at == 0 || now < c->kill_at)
			continue;
		log_warn("worker %u (pid %ld) did not stop in time; killing it",
		    c->slot, (long)c->pid);
		(void)kill(c->pid, SIGKILL);
		c->kill_at = 0;
	}
	if (mstr.state == M_RUNNING)
		for (i = 0; i < mstr.nslots; i++)
			if (mstr.slots[i].pending &&
			    now >= mstr.slots[i].restart_at)
				spawn_or_retry(i);
	if (tkeys != NULL && now >= tkeys_rotate_at) {
		tls_keys_rotate(tkeys);
		tkeys_rotate_at = now + TLS_KEY_ROTATE_MS;
	}
	if (mstr.wd_interval > 0 && now >= mstr.wd_next) {
		mstr.wd_next = now + mstr.wd_interval;
		if (mstr.state == M_RUNNING && all_slots_alive())
			notify("WATCHDOG=1");
	}
}

static uint64_t
next_deadline(uint64_t now)
{
	uint64_t next = now + TICK_MS;
	unsigned i;

	for (i = 0; i < mstr.nchildren; i++)
		if (mstr.children[i].kill_at != 0 &&
		    mstr.children[i].kill_at < next)
			next = mstr.children[i].kill_at;
	if (mstr.state == M_RUNNING)
		for (i = 0; i < mstr.nslots; i++)
			if (mstr.slots[i].pending &&
			    mstr.slots[i].restart_at < next)
				next = mstr.slots[i].restart_at;
	if (mstr.wd_interval > 0 && mstr.wd_next < next)
		next = mstr.wd_next;
	return (next < now ? now : next);
}

static void
master_loop(void)
{
	bool hup, quit, term, usr1;
	struct timespec ts;
	uint64_t now, wait;
	int s;

	for (;;) {
		if (mstr.state != M_RUNNING && mstr.nchildren == 0)
			return;
		now = util_now_ms();
		wait = next_deadline(now) - now;
		ts.tv_sec = (time_t)(wait / 1000);
		ts.tv_nsec = (long)(wait % 1000) * 1000000L;

		/* Collect everything pending, then act: stop beats reload. */
		hup = quit = term = usr1 = false;
		for (;;) {
			s = sigtimedwait(&master_sigs, NULL, &ts);
			if (s < 0)
				break;
			switch (s) {
			case SIGHUP:  hup = true; break;
			case SIGQUIT: quit = true; break;
			case SIGTERM:
			case SIGINT:  term = true; break;
			case SIGUSR1: usr1 = true; break;
			default: break;     /* SIGCHLD: reaped below */
			}
			ts.tv_sec = 0;
			ts.tv_nsec = 0;
		}

		if (term)
			master_stop(M_STOP_FAST);
		else if (quit)
			master_stop(M_STOP_GRACEFUL);
		reap();
		if (usr1)
			master_reopen();
		if (hup && mstr.state == M_RUNNING)
			master_reload();
		run_timers(util_now_ms());
	}
}

/*--------------------------------------------------------------------
 * Startup
 */

static void
describe_listeners(const struct config *cfg, char *buf, size_t len)
{
	size_t n = 0;
	unsigned i;
	int r;

#define APPEND(...) do {                                                \
	r = snprintf(buf + n, len - n, __VA_ARGS__);                    \
	if (r > 0 && (size_t)r < len - n)                               \
		n += (size_t)r;                                         \
} while (0)
	buf[0] = '\0';
	for (i = 0; i < cfg->nlisten; i++)
		APPEND("%s%s", i ? ", " : "", cfg->listen[i].text);
	for (i = 0; i < cfg->tls.nlisten; i++)
		APPEND(", %s (tls)", cfg->tls.listen[i].text);
	if (cfg->has_admin)
		APPEND(", admin %s", cfg->admin.text);
#undef APPEND
}

static void
signals_init(void)
{
	struct sigaction sa;
	int s;

	(void)sigemptyset(&master_sigs);
	(void)sigaddset(&master_sigs, SIGHUP);
	(void)sigaddset(&master_sigs, SIGQUIT);
	(void)sigaddset(&master_sigs, SIGTERM);
	(void)sigaddset(&master_sigs, SIGINT);
	(void)sigaddset(&master_sigs, SIGUSR1);
	(void)sigaddset(&master_sigs, SIGCHLD);
	AZ(sigprocmask(SIG_BLOCK, &master_sigs, NULL));

	/* Inherited SIG_IGN would discard them (SIGCHLD: auto-reap). */
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	(void)sigemptyset(&sa.sa_mask);
	for (s = 1; s < NSIG; s++)
		if (sigismember(&master_sigs, s) == 1)
			(void)sigaction(s, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGPIPE, &sa, NULL);
}

static void
master_cleanup(void)
{
	struct gen *g;

	pidfile_remove();
	free(mstr.pid_path);
	mstr.pid_path = NULL;
	while ((g = mstr.gens) != NULL) {
		g->nchildren = 0;
		gen_free(g);
	}
	mstr.cur = NULL;
	pool_close();
	if (czone != NULL)
		cache_zone_destroy(czone);
	czone = NULL;
	if (tkeys != NULL)
		tls_keys_destroy(tkeys);
	tkeys = NULL;
	stats_attach(NULL);
	if (szone != NULL)
		stats_zone_destroy(szone);
	szone = NULL;
	activation_done();
	free(mstr.children);
	free(mstr.slots);
	mstr.children = NULL;
	mstr.slots = NULL;
	mstr.nchildren = mstr.nslots = 0;
}

/* Startup failed after some workers were forked: take them down. */
static void
kill_children(void)
{
	unsigned i;
	int st;

	for (i = 0; i < mstr.nchildren; i++)
		(void)kill(mstr.children[i].pid, SIGKILL);
	for (i = 0; i < mstr.nchildren; i++)
		(void)waitpid(mstr.children[i].pid, &st, 0);
	mstr.nchildren = 0;
}

int
master_run(struct config *cfg, const char *conf_path, int ready_fd)
{
	char err[1024], where[1024];
	struct gen *g;
	uint64_t usec;
	unsigned i;
	int e;

	CHECK_OBJ_NOTNULL(cfg, CONFIG_MAGIC);
	AN(cfg->pid_file);
	AN(conf_path);
	memset(&mstr, 0, sizeof mstr);
	mstr.conf_path = conf_path;
	mstr.ready_fd = ready_fd;
	mstr.pid = getpid();
	signals_init();

	if (log_open(cfg->error_log, cfg->access_log, cfg->log_level, err,
	    sizeof err) != 0) {
		startup_fail("%s", err);
		config_free(cfg);
		goto fail;
	}
	mstr.log_is_file = cfg->error_log != NULL &&
	    strcmp(cfg->error_log, "stderr") != 0;
	mstr.pid_path = strdup(cfg->pid_file);
	AN(mstr.pid_path);

	/* gen_new() owns cfg from here on, even when it fails. */
	g = gen_new(cfg, err, sizeof err);
	if (g == NULL) {
		startup_fail("%s", err);
		goto fail;
	}
	g->num = ++mstr.gen_counter;
	mstr.gens = mstr.cur = g;
	logs_give_to_workers();

	if (pidfile_check(mstr.pid_path, err, sizeof err) != 0) {
		startup_fail("%s", err);
		goto fail;
	}
	if (zones_prepare(cfg, err, sizeof err) != 0) {
		startup_fail("%s", err);
		goto fail;
	}
	activation_init();
	if (gen_bind(g, err, sizeof err) != 0) {
		startup_fail("%s", err);
		goto fail;
	}
	activation_done();
	if (pidfile_write(mstr.pid_path, err, sizeof err) != 0) {
		startup_fail("%s", err);
		goto fail;
	}

	slots_reset();
	for (i = 0; i < mstr.nslots; i++)
		if (spawn(i) != 0) {
			e = errno;
			kill_children();
			startup_fail("cannot fork workers: %s", strerror(e));
			goto fail;
		}

	describe_listeners(cfg, where, sizeof where);
	log_info("stoa %s started (pid %ld), %u workers, listening on %s",
	    STOA_VERSION, (long)mstr.pid, mstr.nslots, where);
	notify("READY=1\nMAINPID=%lu\nSTATUS=generation %u, %u workers",
	    (unsigned long)mstr.pid, g->num, mstr.nslots);
	if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000) {
		mstr.wd_interval = usec / 2000;
		mstr.wd_next = util_now_ms();
	}
	if (mstr.ready_fd >= 0) {
		(void)util_write_all(mstr.ready_fd, "", 1);
		(void)close(mstr.ready_fd);
		mstr.ready_fd = -1;
	}

	master_loop();

	log_info("stoa stopped");
	master_cleanup();
	log_close();
	return (0);

fail:
	master_cleanup();
	if (mstr.ready_fd >= 0) {
		(void)close(mstr.ready_fd);
		mstr.ready_fd = -1;
	}
	log_close();
	return (1);
}
