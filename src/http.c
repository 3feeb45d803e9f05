/*
 * http.c -- the HTTP message model: method tokens, reason phrases and
 * header look-ups over a parsed struct http_msg.  No I/O, no allocation.
 */
#include <string.h>

#include "http.h"

/* ASCII-only case folding: locale independent, obs-text left alone. */
static inline unsigned char
http_lc(unsigned char c)
{

	return (c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c);
}

/* Case-insensitive equality of p[0..len) and lit[0..len). */
static bool
http_ieq(const char *p, const char *lit, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (http_lc((unsigned char)p[i]) !=
		    http_lc((unsigned char)lit[i]))
			return (false);
	return (true);
}

enum http_method
http_method_from(const char *p, size_t len)
{

#define M(lit, e) \
	if (len == sizeof(lit) - 1 && memcmp(p, lit, len) == 0) return (e)
	switch (len) {
	case 3:
		M("GET", HTTP_M_GET);
		M("PUT", HTTP_M_PUT);
		break;
	case 4:
		M("HEAD", HTTP_M_HEAD);
		M("POST", HTTP_M_POST);
		break;
	case 5:
		M("PATCH", HTTP_M_PATCH);
		M("TRACE", HTTP_M_TRACE);
		break;
	case 6:
		M("DELETE", HTTP_M_DELETE);
		break;
	case 7:
		M("OPTIONS", HTTP_M_OPTIONS);
		M("CONNECT", HTTP_M_CONNECT);
		break;
	default:
		break;
	}
#undef M
	return (HTTP_M_OTHER);
}

bool
http_method_idempotent(enum http_method m)
{

	switch (m) {
	case HTTP_M_GET:
	case HTTP_M_HEAD:
	case HTTP_M_PUT:
	case HTTP_M_DELETE:
	case HTTP_M_OPTIONS:
	case HTTP_M_TRACE:
		return (true);
	default:
		return (false);
	}
}

const char *
http_reason(int status)
{

	switch (status) {
	case 100: return ("Continue");
	case 101: return ("Switching Protocols");
	case 200: return ("OK");
	case 201: return ("Created");
	case 202: return ("Accepted");
	case 203: return ("Non-Authoritative Information");
	case 204: return ("No Content");
	case 205: return ("Reset Content");
	case 206: return ("Partial Content");
	case 300: return ("Multiple Choices");
	case 301: return ("Moved Permanently");
	case 302: return ("Found");
	case 303: return ("See Other");
	case 304: return ("Not Modified");
	case 305: return ("Use Proxy");
	case 307: return ("Temporary Redirect");
	case 308: return ("Permanent Redirect");
	case 400: return ("Bad Request");
	case 401: return ("Unauthorized");
	case 402: return ("Payment Required");
	case 403: return ("Forbidden");
	case 404: return ("Not Found");
	case 405: return ("Method Not Allowed");
	case 406: return ("Not Acceptable");
	case 407: return ("Proxy Authentication Required");
	case 408: return ("Request Timeout");
	case 409: return ("Conflict");
	case 410: return ("Gone");
	case 411: return ("Length Required");
	case 412: return ("Precondition Failed");
	case 413: return ("Content Too Large");
	case 414: return ("URI Too Long");
	case 415: return ("Unsupported Media Type");
	case 416: return ("Range Not Satisfiable");
	case 417: return ("Expectation Failed");
	case 418: return ("I'm a teapot");
	case 421: return ("Misdirected Request");
	case 422: return ("Unprocessable Content");
	case 425: return ("Too Early");
	case 426: return ("Upgrade Required");
	case 428: return ("Precondition Required");
	case 429: return ("Too Many Requests");
	case 431: return ("Request Header Fields Too Large");
	case 451: return ("Unavailable For Legal Reasons");
	case 500: return ("Internal Server Error");
	case 501: return ("Not Implemented");
	case 502: return ("Bad Gateway");
	case 503: return ("Service Unavailable");
	case 504: return ("Gateway Timeout");
	case 505: return ("HTTP Version Not Supported");
	default:  return ("Unknown");
	}
}

const struct http_header *
http_find(const struct http_msg *m, const char *name)
{
	size_t len = strlen(name);
	unsigned u;

	for (u = 0; u < m->nhdr; u++) {
		const struct http_header *h = &m->hdr[u];

		if (h->name_len == len && http_ieq(h->name, name, len))
			return (h);
	}
	return (NULL);
}

bool
http_list_has(const char *v, size_t len, const char *token)
{
	return (http_list_has_n(v, len, token, strlen(token)));
}

bool
http_list_next(const char *v, size_t len, size_t *pos, const char **el,
    size_t *ellen)
{
	size_t i = *pos, s, e;

	if (i >= len)
		return (false);
	/* element: [OWS] text [OWS], up to the next comma */
	while (i < len && (v[i] == ' ' || v[i] == '\t'))
		i++;
	s = i;
	while (i < len && v[i] != ',')
		i++;
	e = i;
	while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
		e--;
	*pos = i + 1;   /* past the comma */
	*el = v + s;
	*ellen = e - s;
	return (true);
}

bool
http_list_has_n(const char *v, size_t len, const char *token, size_t tlen)
{
	const char *el;
	size_t pos = 0, n;

	while (http_list_next(v, len, &pos, &el, &n))
		if (n == tlen && http_ieq(el, token, tlen))
			return (true);
	return (false);
}
