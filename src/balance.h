/*
 * balance.h -- server selection and passive health for upstream pools.
 * Pure (no I/O): one instance per worker per config generation; time is
 * passed in (`now`, milliseconds, monotonic) so tests move a clock.
 *
 * Passive health (nginx semantics): a server that fails max_fails times
 * within fail_timeout (a window that starts at the first failure) is marked
 * down for fail_timeout; after that it gets traffic again, and a success
 * resets its failure count.  Until that success, a single further failure
 * marks it down again at once (the first request after the down period is
 * a probe).  max_fails = 0 disables marking down.
 *
 * BALANCE_HASH places 160 points per server on a ring hashed (xxhash) from
 * the server's address text (config_addr.text, which must be set), so a
 * key keeps its server across reloads and adding or removing one of N
 * servers moves only ~1/N of the keys.  A down or excluded owner passes
 * the key on to the next eligible server on the ring.
 */
#ifndef STOA_BALANCE_H
#define STOA_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct balance;

/* Copies what it needs: cfg may be freed before b. */
struct balance *balance_new(const struct config *cfg);   /* NULL on ENOMEM */
void balance_free(struct balance *b);

/*
 * Pick a server of upstream `u` (index into cfg->upstreams) for a request.
 * key/key_len: the request URI (used by BALANCE_HASH, ignored otherwise).
 * exclude: a server index not to pick (the one that just failed, for the
 * single retry), or -1.  Returns a server index, or -1 when every eligible
 * server is down.
 */
int balance_pick(struct balance *b, unsigned u, const char *key,
    size_t key_len, int exclude, uint64_t now);

/* Active-request accounting for least_conn. */
void balance_inc(struct balance *b, unsigned u, unsigned s);
void balance_dec(struct balance *b, unsigned u, unsigned s);

/* Passive health. */
void balance_fail(struct balance *b, unsigned u, unsigned s, uint64_t now);
void balance_ok(struct balance *b, unsigned u, unsigned s);
bool balance_is_up(const struct balance *b, unsigned u, unsigned s,
    uint64_t now);
/* Failures since the last success in the latest window (for stats). */
unsigned balance_failures(const struct balance *b, unsigned u, unsigned s);

#endif
