/*
 * ws_echo -- a minimal WebSocket echo origin for the stoa benchmark.
 *
 *	ws_echo [-a ADDR] -p PORT
 *
 * One thread, one libevent loop.  Every connection must start with an HTTP
 * Upgrade request (any path); the answer is a 101 with the RFC 6455
 * Sec-WebSocket-Accept.  After that each client frame is echoed back with
 * the same FIN bit and opcode, unmasked; ping gets pong, close gets the
 * same close payload back and the connection is closed once it is flushed.
 * Frames are not reassembled and extensions are not negotiated, which is
 * all a benchmark origin needs.  Output is capped: past 1 MB queued, the
 * connection stops reading until the client catches up.
 *
 * Build: cc -O2 -o ws_echo ws_echo.c -levent -lcrypto
 */

#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define MAX_HEAD	8192
#define OUT_HIGH	(1024 * 1024)
#define OUT_LOW		(256 * 1024)
#define WS_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct conn {
	struct bufferevent	*bev;
	int			 upgraded;
	int			 closing;	/* close echoed: free once flushed */
	int			 paused;	/* reading off: output over OUT_HIGH */
};

static unsigned char scratch[65536];

static void conn_free(struct conn *c)
{
	bufferevent_free(c->bev);
	free(c);
}

/*
 * Find header `name` in the request head `h` (NUL-terminated, lines ending
 * in CRLF); copy its trimmed value into out.  Returns 0, or -1 if absent.
 */
static int find_header(const char *h, const char *name, char *out, size_t outsz)
{
	size_t nl = strlen(name);
	const char *p = strstr(h, "\r\n");

	while (p != NULL && p[2] != '\r') {
		const char *line = p + 2;
		const char *end = strstr(line, "\r\n");

		if (end == NULL)
			return (-1);
		if ((size_t)(end - line) > nl && line[nl] == ':' &&
		    strncasecmp(line, name, nl) == 0) {
			const char *v = line + nl + 1;
			size_t len;

			while (v < end && (*v == ' ' || *v == '\t'))
				v++;
			len = (size_t)(end - v);
			while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
				len--;
			if (len >= outsz)
				return (-1);
			memcpy(out, v, len);
			out[len] = '\0';
			return (0);
		}
		p = end;
	}
	return (-1);
}

/* Returns 1 when the handshake is done, 0 when more bytes are needed, -1
 * on a bad request (an error response has been queued). */
static int handshake(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct evbuffer_ptr p;
	char head[MAX_HEAD + 1], key[128], cat[256];
	unsigned char sha[SHA_DIGEST_LENGTH], acc[64];
	size_t n;

	p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (p.pos < 0) {
		if (evbuffer_get_length(in) > MAX_HEAD)
			goto bad;
		return (0);
	}
	n = (size_t)p.pos + 4;
	if (n > MAX_HEAD)
		goto bad;
	evbuffer_remove(in, head, n);
	head[n] = '\0';
	if (find_header(head, "Sec-WebSocket-Key", key, sizeof key) != 0)
		goto bad;
	snprintf(cat, sizeof cat, "%s%s", key, WS_GUID);
	SHA1((const unsigned char *)cat, strlen(cat), sha);
	EVP_EncodeBlock(acc, sha, SHA_DIGEST_LENGTH);
	evbuffer_add_printf(out, "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n\r\n", (const char *)acc);
	c->upgraded = 1;
	return (1);
bad:
	evbuffer_add_printf(out, "HTTP/1.1 400 Bad Request\r\n"
	    "Content-Length: 0\r\nConnection: close\r\n\r\n");
	c->closing = 1;
	return (-1);
}

/* Echo every complete frame in the input.  Returns -1 on a protocol error
 * (the caller drops the connection). */
static int echo_frames(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	unsigned char h[14], oh[10], mask[4];
	size_t avail, hl, i, take;
	uint64_t len, left, off;
	int op, fin;

	for (;;) {
		if (c->closing || evbuffer_get_length(out) > OUT_HIGH)
			return (0);
		avail = evbuffer_get_length(in);
		if (avail < 2)
			return (0);
		evbuffer_copyout(in, h, avail < sizeof h ? avail : sizeof h);
		fin = h[0] & 0x80;
		op = h[0] & 0x0f;
		if (!(h[1] & 0x80))
			return (-1);		/* client frames are masked */
		len = h[1] & 0x7f;
		hl = 2;
		if (len == 126) {
			if (avail < 4)
				return (0);
			len = ((uint64_t)h[2] << 8) | h[3];
			hl = 4;
		} else if (len == 127) {
			if (avail < 10)
				return (0);
			len = 0;
			for (i = 0; i < 8; i++)
				len = (len << 8) | h[2 + i];
			hl = 10;
		}
		if (avail < hl + 4 || avail - hl - 4 < len)
			return (0);
		memcpy(mask, h + hl, 4);
		evbuffer_drain(in, hl + 4);

		if (op == 0x9)
			op = 0xA;			/* ping -> pong */
		oh[0] = (unsigned char)((fin ? 0x80 : 0) | op);
		if (len < 126) {
			oh[1] = (unsigned char)len;
			hl = 2;
		} else if (len < 65536) {
			oh[1] = 126;
			oh[2] = (unsigned char)(len >> 8);
			oh[3] = (unsigned char)len;
			hl = 4;
		} else {
			oh[1] = 127;
			for (i = 0; i < 8; i++)
				oh[2 + i] = (unsigned char)(len >> (56 - 8 * i));
			hl = 10;
		}
		evbuffer_add(out, oh, hl);
		for (left = len, off = 0; left > 0; left -= take) {
			take = left < sizeof scratch ? (size_t)left : sizeof scratch;
			evbuffer_remove(in, scratch, take);
			for (i = 0; i < take; i++)
				scratch[i] ^= mask[(off + i) & 3];
			off += take;
			evbuffer_add(out, scratch, take);
		}
		if (op == 0x8) {
			c->closing = 1;
			bufferevent_disable(c->bev, EV_READ);
			return (0);
		}
	}
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	int r;

	if (!c->upgraded) {
		r = handshake(c);
		if (r < 0)
			bufferevent_disable(bev, EV_READ);
		if (r <= 0)
			return;
	}
	if (echo_frames(c) < 0) {
		conn_free(c);
		return;
	}
	if (!c->closing &&
	    evbuffer_get_length(bufferevent_get_output(bev)) > OUT_HIGH) {
		c->paused = 1;
		bufferevent_disable(bev, EV_READ);
		bufferevent_setwatermark(bev, EV_WRITE, OUT_LOW, 0);
	}
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->closing) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			conn_free(c);
		return;
	}
	if (c->paused) {
		c->paused = 0;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		bufferevent_enable(bev, EV_READ);
		read_cb(bev, c);
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_free(c);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct event_base *base = arg;
	struct conn *c;
	int one = 1;

	(void)l;
	(void)sa;
	(void)salen;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c = calloc(1, sizeof *c);
	if (c == NULL) {
		close(fd);
		return;
	}
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
	struct event_base *base;
	struct evconnlistener *l;
	struct sockaddr_in sin;
	struct event *ev_int, *ev_term;
	const char *addr = "127.0.0.1";
	int ch, port = 0;

	while ((ch = getopt(argc, argv, "a:p:")) != -1) {
		switch (ch) {
		case 'a':
			addr = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: ws_echo [-a ADDR] -p PORT\n");
			return (2);
		}
	}
	if (port <= 0 || port > 65535) {
		fprintf(stderr, "usage: ws_echo [-a ADDR] -p PORT\n");
		return (2);
	}
	signal(SIGPIPE, SIG_IGN);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1) {
		fprintf(stderr, "ws_echo: bad address %s\n", addr);
		return (2);
	}
	base = event_base_new();
	if (base == NULL)
		return (1);
	l = evconnlistener_new_bind(base, accept_cb, base,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 4096,
	    (struct sockaddr *)&sin, sizeof sin);
	if (l == NULL) {
		fprintf(stderr, "ws_echo: cannot listen on %s:%d: %s\n", addr,
		    port, strerror(errno));
		return (1);
	}
	ev_int = evsignal_new(base, SIGINT, stop_cb, base);
	ev_term = evsignal_new(base, SIGTERM, stop_cb, base);
	event_add(ev_int, NULL);
	event_add(ev_term, NULL);
	event_base_dispatch(base);
	event_free(ev_int);
	event_free(ev_term);
	evconnlistener_free(l);
	event_base_free(base);
	return (0);
}
