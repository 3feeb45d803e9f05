/*
 * config.h -- one immutable configuration generation.
 *
 * config_load() parses a file with libconfuse, validates everything
 * (addresses, durations, sizes, references between sections) and returns
 * one heap object that nothing modifies afterwards.  The master loads a
 * new generation on SIGHUP and hands it to new workers; the old one stays
 * valid for old workers until they exit (ARCHITECTURE.md, habit 8).
 *
 * All durations are milliseconds, all sizes bytes.
 */
#ifndef STOA_CONFIG_H
#define STOA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CONFIG_MAGIC 0x57a0c0f1u

struct config_addr {
	char                    *text;      /* as written, e.g. "[::1]:8080" */
	struct sockaddr_storage  ss;
	socklen_t                sslen;
};

enum config_balance {
	BALANCE_ROUND_ROBIN = 0,
	BALANCE_LEAST_CONN,
	BALANCE_HASH,            /* consistent hashing on the request URI */
};

struct config_upstream {
	char                    *name;
	unsigned                 nservers;
	struct config_addr      *servers;
	enum config_balance      balance;
	unsigned                 keepalive;     /* idle conns kept per worker (default 32) */
	unsigned                 max_fails;     /* default 3; 0 = never mark down */
	uint64_t                 fail_timeout;  /* ms, default 10s */
	int                      line;
};

struct config_route {
	char                    *prefix;        /* section title, starts with '/' */
	char                    *host;          /* NULL = any host; lower-case */
	unsigned                 upstream;      /* index into config.upstreams */
	bool                     websocket;     /* default false */
	bool                     cache;         /* a cache { } section is present */
	uint64_t                 cache_ttl;     /* ms; route ttl, else cache.ttl */
	int                      line;
};

enum config_cache_backend { CACHE_BACKEND_MEMORY = 0, CACHE_BACKEND_REDIS };

struct config {
	unsigned                 magic;
	char                    *file;          /* path it was loaded from */

	unsigned                 workers;       /* >= 1; "auto" resolved to nproc */
	unsigned                 nlisten;       /* >= 1 */
	struct config_addr      *listen;
	bool                     has_admin;
	struct config_addr       admin;
	char                    *pid_file;      /* default "/run/stoa/stoa.pid" */
	char                    *error_log;     /* "stderr" or a path */
	char                    *access_log;    /* "stderr", a path, or NULL = off */
	int                      log_level;     /* enum log_level, default info */
	char                    *user;          /* NULL = no privilege drop */
	uint64_t                 shutdown_timeout;  /* default 30s */

	struct {
		bool                 enabled;       /* a tls { } section is present */
		unsigned             nlisten;
		struct config_addr  *listen;
		char                *certificate;   /* first of certificates[] */
		char                *key;           /* first of keys[] */
		unsigned             ncerts;        /* >= 1 when enabled */
		char               **certificates;  /* chain files, SNI picks one */
		char               **keys;          /* parallel to certificates */
		bool                 http2;         /* default true */
	} tls;

	struct {
		uint64_t client_header;     /* 10s */
		uint64_t client_idle;       /* 60s */
		uint64_t upstream_connect;  /* 2s */
		uint64_t upstream_read;     /* 30s */
		uint64_t websocket_idle;    /* 300s */
	} timeouts;

	struct {
		uint64_t max_header_size;   /* 16k */
		uint64_t max_body_size;     /* 16m */
		unsigned max_connections;   /* 10000 per worker */
	} limits;

	struct {
		enum config_cache_backend backend;  /* memory */
		uint64_t size;              /* 256m */
		char    *redis;             /* "redis://127.0.0.1:6379/0" */
		char    *namespace;         /* "stoa" */
		uint64_t ttl;               /* 30s */
		uint64_t max_object_size;   /* 8m */
		bool     lock;              /* true */
		uint64_t lock_timeout;      /* 5s */
		uint64_t redis_timeout;     /* 250ms */
		uint64_t stale_while_revalidate;  /* 0 */
		uint64_t stale_if_error;          /* 0 */
	} cache;

	unsigned                 nupstreams;
	struct config_upstream  *upstreams;
	unsigned                 nroutes;
	struct config_route     *routes;        /* in file order */
};

/*
 * Load and validate FILE.  On success returns 0 and *out owns a new
 * generation.  On failure returns -1, *out is untouched, and errbuf holds
 * exactly one line "FILE:LINE: reason" (the first error; LINE is the line
 * of the offending key or section; "FILE: reason" when no line applies,
 * e.g. an unreadable file).
 */
int config_load(const char *file, struct config **out, char *errbuf,
    size_t errlen);

void config_free(struct config *cfg);

/* Index of upstream NAME, or -1. */
int config_upstream_find(const struct config *cfg, const char *name);

#endif
