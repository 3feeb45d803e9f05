/*
 * util.c -- see util.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/random.h>
#include <unistd.h>

#include "util.h"
#include "vas.h"

void
vas_fail(const char *func, const char *file, int line, const char *cond)
{
	char buf[512];
	int n;

	n = snprintf(buf, sizeof buf, "stoa[%ld]: assertion failed in %s() at %s:%d: %s\n",
	    (long)getpid(), func, file, line, cond);
	if (n > 0)
		(void)util_write_all(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
	abort();
}

uint64_t
util_now_ms(void)
{
	struct timespec ts;

	AZ(clock_gettime(CLOCK_MONOTONIC, &ts));
	return ((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

uint64_t
util_epoch_ms(void)
{
	struct timespec ts;

	AZ(clock_gettime(CLOCK_REALTIME, &ts));
	return ((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

/* Leading decimal digits of s into *v; returns a pointer past them or NULL. */
static const char *
parse_u64(const char *s, uint64_t *v, const char **err)
{
	uint64_t n = 0;

	if (*s < '0' || *s > '9') {
		*err = "expected a number";
		return (NULL);
	}
	for (; *s >= '0' && *s <= '9'; s++) {
		if (n > (UINT64_MAX - 9) / 10) {
			*err = "number too large";
			return (NULL);
		}
		n = n * 10 + (uint64_t)(*s - '0');
	}
	*v = n;
	return (s);
}

static int
scale(uint64_t v, uint64_t mul, uint64_t *out, const char **err)
{
	if (mul != 0 && v > UINT64_MAX / 4 / mul) {
		*err = "value too large";
		return (-1);
	}
	*out = v * mul;
	return (0);
}

int
util_parse_duration(const char *s, uint64_t *ms, const char **err)
{
	uint64_t v, mul;
	const char *p;

	AN(s);
	p = parse_u64(s, &v, err);
	if (p == NULL) {
		*err = "invalid duration (use a number with ms, s, m or h)";
		return (-1);
	}
	if (*p == '\0' || strcmp(p, "s") == 0)
		mul = 1000;
	else if (strcmp(p, "ms") == 0)
		mul = 1;
	else if (strcmp(p, "m") == 0)
		mul = 60000;
	else if (strcmp(p, "h") == 0)
		mul = 3600000;
	else {
		*err = "invalid duration unit (use ms, s, m or h)";
		return (-1);
	}
	return (scale(v, mul, ms, err));
}

int
util_parse_size(const char *s, uint64_t *bytes, const char **err)
{
	uint64_t v, mul;
	const char *p;

	AN(s);
	p = parse_u64(s, &v, err);
	if (p == NULL) {
		*err = "invalid size (use a number with k, m or g)";
		return (-1);
	}
	if (*p == '\0')
		mul = 1;
	else if (p[1] == '\0' && (*p == 'k' || *p == 'K'))
		mul = 1024;
	else if (p[1] == '\0' && (*p == 'm' || *p == 'M'))
		mul = 1024 * 1024;
	else if (p[1] == '\0' && (*p == 'g' || *p == 'G'))
		mul = 1024 * 1024 * 1024;
	else {
		*err = "invalid size unit (use k, m or g)";
		return (-1);
	}
	return (scale(v, mul, bytes, err));
}

int
util_parse_hostport(const char *s, struct sockaddr_storage *ss,
    socklen_t *sslen, const char **err)
{
	char host[64];
	const char *colon, *hs, *he;
	uint64_t port;
	const char *perr;
	const char *pe;

	AN(s);
	memset(ss, 0, sizeof *ss);
	if (*s == '[') {
		he = strchr(s, ']');
		if (he == NULL || he[1] != ':') {
			*err = "invalid address (expected [IPv6]:port)";
			return (-1);
		}
		hs = s + 1;
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL) {
			*err = "invalid address (expected host:port, [IPv6]:port for IPv6)";
			return (-1);
		}
		hs = s;
		he = colon;
	}
	if ((size_t)(he - hs) >= sizeof host || he == hs) {
		*err = "invalid address (bad host part)";
		return (-1);
	}
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	pe = parse_u64(colon + 1, &port, &perr);
	if (pe == NULL || *pe != '\0' || port == 0 || port > 65535) {
		*err = "invalid port (expected 1-65535)";
		return (-1);
	}
	if (*s == '[') {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			*err = "invalid IPv6 address";
			return (-1);
		}
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*sslen = sizeof *sin6;
		return (0);
	}
	{
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (strcasecmp(host, "localhost") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
			*err = "invalid IPv4 address (numeric addresses only, or localhost)";
			return (-1);
		}
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*sslen = sizeof *sin;
	}
	return (0);
}

const char *
util_addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char h[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, h, sizeof h);
		snprintf(buf, len, "%s:%u", h, ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, h, sizeof h);
		snprintf(buf, len, "[%s]:%u", h, ntohs(sin6->sin6_port));
	} else
		snprintf(buf, len, "unix");
	return (buf);
}

void
util_random(void *buf, size_t len)
{
	unsigned char *p = buf;
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = getrandom(p + got, len - got, 0);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		break;
	}
	for (uint64_t x = util_now_ms() ^ ((uint64_t)getpid() << 32); got < len;
	    got++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		p[got] = (unsigned char)(x >> 56);
	}
}

int
util_hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return (ch - '0');
	if (ch >= 'a' && ch <= 'f')
		return (ch - 'a' + 10);
	if (ch >= 'A' && ch <= 'F')
		return (ch - 'A' + 10);
	return (-1);
}

int
util_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		p += n;
		len -= (size_t)n;
	}
	return (0);
}
