/*
 * router.h -- host + path → route.  Pure; built once per config generation.
 *
 * Rules (SPEC "Config file"): the longest matching path prefix wins; among
 * routes with the same prefix, one whose host matches beats one without a
 * host; a route with a host that does not match the request is skipped.
 * Host matching is case-insensitive, ignores a ":port" suffix, and
 * "*.example.com" matches any name ending in ".example.com" (not the bare
 * "example.com").  An exact host beats a wildcard host at the same prefix.
 *
 * A trailing '.' on either name is ignored ("example.com." = "example.com");
 * an IPv6 literal is written "[::1]" (the config may also say "::1").  A
 * Host that cannot be used (unbalanced '[', a bare IPv6 literal, longer
 * than 256 bytes) matches only host-less routes.
 *
 * The path is matched after normalisation so that "/api/../admin" cannot
 * reach the /api/ route: the query ('?') and fragment ('#') are ignored,
 * percent-encoded unreserved characters (ALPHA DIGIT - . _ ~) are decoded
 * and every other escape is kept encoded with upper-case hex (so "%2F"
 * stays "%2F"), "//" is merged and "." / ".." segments are resolved
 * (RFC 3986 §5.2.4).  A path that does not start with '/', a bad escape
 * ('%' not followed by two hex digits) or a ".." above the root is an
 * error → the caller answers 400.  The request is still forwarded with
 * its original target.  Route prefixes are normalised the same way when
 * the router is built.
 *
 * A path longer than ROUTER_PATH_MAX (up to '?') is not normalised: it is
 * matched as is when it is already normal (no '%', "/." or "//"), else it
 * is ROUTER_BAD_PATH.
 *
 * Prefix matching is byte-wise on the normalised path (nginx semantics):
 * route "/api/" matches "/api/" and "/api/x" but not "/api"; route "/api"
 * matches "/api", "/api/x" and "/apix"; route "/" matches every path.
 */
#ifndef STOA_ROUTER_H
#define STOA_ROUTER_H

#include <stddef.h>

struct config;
struct router;

#define ROUTER_NO_MATCH  (-1)   /* → 404 */
#define ROUTER_BAD_PATH  (-2)   /* → 400 */

#define ROUTER_PATH_MAX  8192   /* longest path normalised (stack buffer) */

/* The router copies what it needs: cfg may be freed before it. */
struct router *router_new(const struct config *cfg);   /* NULL on ENOMEM */
void router_free(struct router *r);

/*
 * host may be NULL (no Host header).  path is the origin-form target
 * ("/a/b?x=1").  Returns an index into cfg->routes, ROUTER_NO_MATCH or
 * ROUTER_BAD_PATH.
 */
int router_match(const struct router *r, const char *host, size_t host_len,
    const char *path, size_t path_len);

#endif
