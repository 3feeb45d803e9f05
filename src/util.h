/*
 * util.h -- monotonic time, bounded parsing of config values and addresses.
 * Pure libc; no allocation unless stated.
 */
#ifndef STOA_UTIL_H
#define STOA_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Monotonic clock in milliseconds (CLOCK_MONOTONIC). */
uint64_t util_now_ms(void);

/* Wall clock in milliseconds since the Unix epoch (CLOCK_REALTIME): for
 * cache entries, which must mean the same to every process and host. */
uint64_t util_epoch_ms(void);

/*
 * Parse a duration: a non-negative integer followed by an optional unit
 * ms, s, m or h.  A bare number is seconds.  Result in milliseconds.
 * Returns 0 on success, -1 with *err set to a static reason otherwise.
 */
int util_parse_duration(const char *s, uint64_t *ms, const char **err);

/*
 * Parse a size: a non-negative integer followed by an optional unit
 * k, m or g (1024-based, either case).  A bare number is bytes.
 * Returns 0 on success, -1 with *err set to a static reason otherwise.
 */
int util_parse_size(const char *s, uint64_t *bytes, const char **err);

/*
 * Parse "host:port", "[v6]:port" or "*:port" into a socket address.
 * host must be a numeric IPv4/IPv6 address, "*" or "localhost"
 * (no DNS lookups: the config is validated before anything resolves).
 * Returns 0 on success, -1 with *err set to a static reason.
 */
int util_parse_hostport(const char *s, struct sockaddr_storage *ss,
    socklen_t *sslen, const char **err);

/* Format a socket address as "1.2.3.4:80" / "[::1]:80" into buf. */
const char *util_addr_str(const struct sockaddr *sa, char *buf, size_t len);

/* Fill buf with random bytes (getrandom; never fails silently: falls back
 * to a time/pid mix only if the kernel refuses). */
void util_random(void *buf, size_t len);

/* Value of a hex digit, or -1. */
int util_hexval(int ch);

/* Case-insensitive compare of a (ptr,len) token with a NUL string.
 * Inline: with a literal, strlen() is folded and most calls end at the
 * length test (the hot callers filter header names against lists). */
static inline bool
util_tok_eq(const char *p, size_t len, const char *lit)
{
	return (strlen(lit) == len && strncasecmp(p, lit, len) == 0);
}

/* Write the whole buffer (retrying on EINTR/partial writes). 0 or -1. */
int util_write_all(int fd, const void *buf, size_t len);

#endif
