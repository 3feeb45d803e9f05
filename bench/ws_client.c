/*
 * ws_client -- WebSocket load client for the stoa benchmark (libevent).
 *
 * Load mode:
 *	ws_client -p PORT [-a ADDR] [-P PATH] [-H HOST]
 *	    -n CONNS -c CONCURRENCY -m MESSAGES -s SIZE
 *   Opens CONNS connections in total, at most CONCURRENCY at once.  Each
 *   one does the Upgrade handshake, then sends MESSAGES masked binary
 *   messages of SIZE bytes, one at a time, waiting for (and checking) each
 *   echo before sending the next, then closes with a close frame.  Prints
 *   one line:
 *	msgs=N secs=S msgs_per_s=R p50_us=A p99_us=B errors=E
 *   Latency is per message, send to complete echo.  Exit status 1 when any
 *   connection failed.
 *
 * Idle mode:
 *	ws_client -p PORT [-a ADDR] [-P PATH] [-H HOST] -i K [-c OPENING]
 *   Opens K tunnels (at most OPENING handshakes in flight, default 200),
 *   does one 16-byte echo on each, prints "READY K" (or "READY n FAILED f")
 *   and holds them open until SIGTERM or SIGINT, then exits.
 *
 * Build: cc -O2 -o ws_client ws_client.c -levent
 */

#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

enum state { S_HANDSHAKE, S_ECHO, S_CLOSING, S_IDLE };

struct conn {
	struct bufferevent	*bev;
	enum state		 st;
	int			 sent;		/* messages sent so far */
	uint64_t		 t_sent;	/* ns, send time of the current one */
	unsigned char		 mask[4];
};

static struct {
	struct event_base	*base;
	struct sockaddr_in	 sin;
	const char		*path;
	const char		*host;
	int			 total;		/* connections to make */
	int			 conc;
	int			 msgs;
	size_t			 size;
	int			 idle;		/* idle mode: tunnels to hold */
	int			 started;
	int			 active;
	int			 done;
	int			 failed;
	int			 ready_printed;
	unsigned char		*payload;	/* SIZE bytes, unmasked */
	unsigned char		*frame;		/* one masked frame, rebuilt */
	unsigned char		*rx;
	uint32_t		*lat;		/* microseconds, msgs*total */
	size_t			 nlat;
} G;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

static void start_more(void);

static void conn_end(struct conn *c, int ok)
{
	bufferevent_free(c->bev);
	free(c);
	G.active--;
	if (ok)
		G.done++;
	else
		G.failed++;
	start_more();
}

/* Queue one masked frame with opcode op carrying len bytes of data. */
static void send_frame(struct conn *c, int op, const unsigned char *data,
    size_t len)
{
	unsigned char h[14];
	size_t hl, i;

	h[0] = (unsigned char)(0x80 | op);
	if (len < 126) {
		h[1] = (unsigned char)(0x80 | len);
		hl = 2;
	} else if (len < 65536) {
		h[1] = 0x80 | 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		hl = 4;
	} else {
		h[1] = 0x80 | 127;
		for (i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
		hl = 10;
	}
	memcpy(h + hl, c->mask, 4);
	hl += 4;
	for (i = 0; i < len; i++)
		G.frame[i] = data[i] ^ c->mask[i & 3];
	evbuffer_add(bufferevent_get_output(c->bev), h, hl);
	evbuffer_add(bufferevent_get_output(c->bev), G.frame, len);
}

static void send_message(struct conn *c)
{
	size_t len = G.idle ? 16 : G.size;

	c->t_sent = now_ns();
	send_frame(c, 0x2, G.payload, len);
}

/*
 * Take one complete server frame off the input.  Returns 1 with *op and
 * *len set and the payload in G.rx (truncated to the rx buffer), 0 when
 * incomplete, -1 when malformed.
 */
static int take_frame(struct evbuffer *in, int *op, size_t *len)
{
	unsigned char h[10];
	size_t avail = evbuffer_get_length(in), hl = 2, i, cap;
	uint64_t n;

	if (avail < 2)
		return (0);
	evbuffer_copyout(in, h, avail < sizeof h ? avail : sizeof h);
	if (h[1] & 0x80)
		return (-1);		/* server frames are not masked */
	n = h[1] & 0x7f;
	if (n == 126) {
		if (avail < 4)
			return (0);
		n = ((uint64_t)h[2] << 8) | h[3];
		hl = 4;
	} else if (n == 127) {
		if (avail < 10)
			return (0);
		for (n = 0, i = 0; i < 8; i++)
			n = (n << 8) | h[2 + i];
		hl = 10;
	}
	if (avail - hl < n)
		return (0);
	evbuffer_drain(in, hl);
	cap = G.size > 125 ? G.size : 125;
	if (n > cap) {
		evbuffer_drain(in, (size_t)n);
		*len = (size_t)n;
	} else {
		evbuffer_remove(in, G.rx, (size_t)n);
		*len = (size_t)n;
	}
	*op = h[0] & 0x0f;
	return (1);
}

static void maybe_ready(void)
{
	if (G.idle && !G.ready_printed && G.done + G.failed == G.idle) {
		G.ready_printed = 1;
		if (G.failed)
			printf("READY %d FAILED %d\n", G.done, G.failed);
		else
			printf("READY %d\n", G.done);
		fflush(stdout);
	}
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr p;
	char line[16] = { 0 };
	size_t len, want;
	int op, r;

	if (c->st == S_HANDSHAKE) {
		p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
		if (p.pos < 0) {
			if (evbuffer_get_length(in) > 16384)
				conn_end(c, 0);
			return;
		}
		evbuffer_copyout(in, line, 12);
		if (memcmp(line, "HTTP/1.1 101", 12) != 0) {
			conn_end(c, 0);
			if (G.idle)
				maybe_ready();
			return;
		}
		evbuffer_drain(in, (size_t)p.pos + 4);
		c->st = S_ECHO;
		send_message(c);
	}
	while ((r = take_frame(in, &op, &len)) == 1) {
		if (c->st == S_IDLE)
			continue;		/* held tunnel: ignore (pings) */
		if (c->st == S_CLOSING) {
			if (op == 0x8) {
				conn_end(c, 1);
				return;
			}
			continue;
		}
		want = G.idle ? 16 : G.size;
		if (c->st != S_ECHO || op != 0x2 || len != want ||
		    memcmp(G.rx, G.payload, len) != 0) {
			conn_end(c, 0);
			if (G.idle)
				maybe_ready();
			return;
		}
		if (G.idle) {
			c->st = S_IDLE;
			G.done++;
			G.active--;
			maybe_ready();
			start_more();
			continue;
		}
		if (G.nlat < (size_t)G.total * (size_t)G.msgs)
			G.lat[G.nlat++] = (uint32_t)((now_ns() - c->t_sent) / 1000);
		if (++c->sent < G.msgs) {
			send_message(c);
		} else {
			unsigned char code[2] = { 0x03, 0xe8 };	/* 1000 */

			c->st = S_CLOSING;
			send_frame(c, 0x8, code, 2);
		}
	}
	if (r < 0) {
		conn_end(c, 0);
		if (G.idle)
			maybe_ready();
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	char req[1024];
	int one = 1;

	if (what & BEV_EVENT_CONNECTED) {
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY,
		    &one, sizeof one);
		snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n"
		    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		    "Sec-WebSocket-Version: 13\r\n\r\n", G.path, G.host);
		bufferevent_write(bev, req, strlen(req));
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (c->st == S_IDLE) {
			/* a held tunnel was closed by the other side */
			bufferevent_free(c->bev);
			free(c);
			G.failed++;
			G.done--;
			return;
		}
		/* EOF right after our close frame is a clean end too */
		conn_end(c, c->st == S_CLOSING);
		if (G.idle)
			maybe_ready();
	}
}

static void start_one(void)
{
	struct conn *c;
	int i;

	c = calloc(1, sizeof *c);
	if (c == NULL)
		abort();
	for (i = 0; i < 4; i++)
		c->mask[i] = (unsigned char)(rand() | 1);
	c->bev = bufferevent_socket_new(G.base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		abort();
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	G.started++;
	G.active++;
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&G.sin,
	    sizeof G.sin) != 0) {
		conn_end(c, 0);
		return;
	}
}

static void start_more(void)
{
	int goal = G.idle ? G.idle : G.total;

	while (G.started < goal && G.active < G.conc)
		start_one();
	if (!G.idle && G.active == 0 && G.started >= goal)
		event_base_loopbreak(G.base);
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopbreak(arg);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x < y ? -1 : x > y);
}

static void usage(void)
{
	fprintf(stderr, "usage: ws_client -p PORT [-a ADDR] [-P PATH] "
	    "[-H HOST] (-n CONNS -c CONC -m MSGS -s SIZE | -i K [-c OPENING])\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct event *ev_int, *ev_term;
	const char *addr = "127.0.0.1";
	uint64_t t0, t1;
	double secs;
	size_t i;
	int ch, port = 0;

	G.path = "/ws";
	G.host = "bench.test";
	G.total = 1000;
	G.conc = 100;
	G.msgs = 100;
	G.size = 32;
	while ((ch = getopt(argc, argv, "a:p:P:H:n:c:m:s:i:")) != -1) {
		switch (ch) {
		case 'a': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'P': G.path = optarg; break;
		case 'H': G.host = optarg; break;
		case 'n': G.total = atoi(optarg); break;
		case 'c': G.conc = atoi(optarg); break;
		case 'm': G.msgs = atoi(optarg); break;
		case 's': G.size = (size_t)atol(optarg); break;
		case 'i': G.idle = atoi(optarg); break;
		default: usage();
		}
	}
	if (port <= 0 || port > 65535 || G.total <= 0 || G.conc <= 0 ||
	    G.msgs <= 0 || G.size > (64u << 20) || G.idle < 0)
		usage();
	if (G.idle && G.conc == 100)
		G.conc = 200;
	memset(&G.sin, 0, sizeof G.sin);
	G.sin.sin_family = AF_INET;
	G.sin.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, addr, &G.sin.sin_addr) != 1)
		usage();
	signal(SIGPIPE, SIG_IGN);
	srand((unsigned)getpid());

	if (G.size < 16)
		G.size = 16;
	G.payload = malloc(G.size);
	G.frame = malloc(G.size);
	G.rx = malloc(G.size > 125 ? G.size : 125);
	G.lat = calloc((size_t)G.total * (size_t)G.msgs, sizeof *G.lat);
	if (G.payload == NULL || G.frame == NULL || G.rx == NULL ||
	    G.lat == NULL)
		return (1);
	for (i = 0; i < G.size; i++)
		G.payload[i] = (unsigned char)(i * 7 + 3);

	G.base = event_base_new();
	if (G.base == NULL)
		return (1);
	ev_int = evsignal_new(G.base, SIGINT, stop_cb, G.base);
	ev_term = evsignal_new(G.base, SIGTERM, stop_cb, G.base);
	event_add(ev_int, NULL);
	event_add(ev_term, NULL);

	t0 = now_ns();
	start_more();
	event_base_dispatch(G.base);
	t1 = now_ns();

	if (G.idle) {
		maybe_ready();
		fprintf(stderr, "ws_client: held %d tunnels, %d failed\n",
		    G.done, G.failed);
		return (G.failed ? 1 : 0);
	}
	secs = (double)(t1 - t0) / 1e9;
	qsort(G.lat, G.nlat, sizeof *G.lat, cmp_u32);
	printf("msgs=%zu secs=%.3f msgs_per_s=%.0f p50_us=%u p99_us=%u "
	    "errors=%d\n", G.nlat, secs, (double)G.nlat / secs,
	    G.nlat ? G.lat[G.nlat / 2] : 0,
	    G.nlat ? G.lat[G.nlat * 99 / 100] : 0, G.failed);
	return (G.failed ? 1 : 0);
}
