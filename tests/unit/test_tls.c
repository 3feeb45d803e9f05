/*
 * test_tls.c -- tls_ctx_new() checks, and real in-process handshakes:
 * SNI certificate choice, ALPN, protocol versions, ticket resumption
 * across contexts and key rotations.
 *
 * The group setup makes a throw-away CA and certificates with the
 * openssl command in a fresh directory under $TMPDIR (or /tmp):
 *   a.pem   CN and SAN a.test
 *   b.pem   CN and SAN *.b.test, followed by the CA (a chain file)
 *   c.pem   CN c.test, no SAN (RSA)
 *   d.pem   CN d.test, SAN with an IP address only
 *   other.key  a key that matches no certificate
 *   garbage.pem, badchain.pem (a.pem then a broken certificate block)
 * Handshakes run over a socketpair with both ends non-blocking, pumped
 * in turn until both finish.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "tls.h"

static char dir[256];

static const char *const gen_files[] = {
	"cnf", "ca.key", "ca.pem", "a.key", "a.pem", "b.key", "b.leaf",
	"b.pem", "c.key", "c.pem", "other.key", "other.pem", "garbage.pem",
	"badchain.pem", "t.conf", "d.key", "d.pem", "x.key", "x.pem",
};

static const char cnf[] =
    "[req]\n"
    "distinguished_name = dn\n"
    "prompt = no\n"
    "[dn]\n"
    "CN = unused\n"
    "[leaf]\n"
    "basicConstraints = CA:FALSE\n"
    "keyUsage = critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "[ca]\n"
    "basicConstraints = critical,CA:TRUE\n"
    "keyUsage = critical,keyCertSign,cRLSign\n";

static const char *
path(const char *name)
{
	static char buf[8][512];
	static unsigned n;
	char *p = buf[n++ % 8];

	snprintf(p, sizeof buf[0], "%s/%s", dir, name);
	return (p);
}

static int
wtext(const char *name, const char *text)
{
	FILE *fp = fopen(path(name), "w");

	if (fp == NULL)
		return (-1);
	if (fputs(text, fp) < 0) {
		(void)fclose(fp);
		return (-1);
	}
	return (fclose(fp) == 0 ? 0 : -1);
}

static int
sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	return (system(cmd) == 0 ? 0 : -1);
}

#define EC	"-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
#define LEAF	"openssl req -config cnf -x509 -extensions leaf -days 2 " \
		"-CA ca.pem -CAkey ca.key "

static int
setup_group(void **state)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof dir, "%s/stoa-test-tls.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL)
		return (-1);
	if (wtext("cnf", cnf) != 0 ||
	    wtext("garbage.pem", "this is not a certificate\n") != 0)
		return (-1);
	if (sh("cd '%s' && exec 2>/dev/null && "
	    "openssl req -config cnf -x509 -extensions ca -days 2 " EC
	    " -keyout ca.key -out ca.pem -subj '/CN=stoa test CA' && "
	    LEAF EC " -keyout a.key -out a.pem -subj /CN=a.test"
	    " -addext subjectAltName=DNS:a.test && "
	    LEAF EC " -keyout b.key -out b.leaf -subj '/CN=*.b.test'"
	    " -addext 'subjectAltName=DNS:*.b.test' && "
	    "cat b.leaf ca.pem > b.pem && "
	    LEAF "-newkey rsa:2048 -nodes -keyout c.key -out c.pem"
	    " -subj /CN=c.test && "
	    LEAF EC " -keyout d.key -out d.pem -subj /CN=d.test"
	    " -addext subjectAltName=IP:127.0.0.1 && "
	    LEAF EC " -keyout other.key -out other.pem -subj /CN=other && "
	    "{ cat a.pem; echo '-----BEGIN CERTIFICATE-----'; echo 'AAAA';"
	    " echo '-----END CERTIFICATE-----'; } > badchain.pem", dir) != 0)
		return (-1);
	return (0);
}

static int
teardown_group(void **state)
{
	size_t i;

	for (i = 0; i < sizeof gen_files / sizeof gen_files[0]; i++)
		(void)unlink(path(gen_files[i]));
	(void)rmdir(dir);
	return (0);
}

/*--------------------------------------------------------------------
 * A struct config built by hand (only what tls_ctx_new reads)
 */

struct tcfg {
	struct config	c;
	char		file[32];
	char		cbuf[4][512], kbuf[4][512];
	char		*certs[4], *keys[4];
};

/* pairs: "cert", "key", ... NULL (names in the test directory). */
static void
tcfg_init(struct tcfg *tc, bool http2, ...)
{
	const char *cert, *key;
	va_list ap;
	unsigned n = 0;

	memset(tc, 0, sizeof *tc);
	tc->c.magic = CONFIG_MAGIC;
	snprintf(tc->file, sizeof tc->file, "test.conf");
	tc->c.file = tc->file;
	tc->c.tls.enabled = true;
	tc->c.tls.http2 = http2;
	va_start(ap, http2);
	while ((cert = va_arg(ap, const char *)) != NULL) {
		key = va_arg(ap, const char *);
		assert_true(n < 4);
		snprintf(tc->cbuf[n], sizeof tc->cbuf[n], "%s", path(cert));
		snprintf(tc->kbuf[n], sizeof tc->kbuf[n], "%s", path(key));
		tc->certs[n] = tc->cbuf[n];
		tc->keys[n] = tc->kbuf[n];
		n++;
	}
	va_end(ap);
	tc->c.tls.ncerts = n;
	tc->c.tls.certificates = tc->certs;
	tc->c.tls.keys = tc->keys;
	tc->c.tls.certificate = n > 0 ? tc->certs[0] : NULL;
	tc->c.tls.key = n > 0 ? tc->keys[0] : NULL;
}

static struct tls_ctx *
ctx_ok(const struct tcfg *tc, struct tls_keys *keys, bool allow_h2)
{
	struct tls_ctx *t;
	char err[512] = "";

	t = tls_ctx_new(&tc->c, keys, allow_h2, err, sizeof err);
	if (t == NULL)
		fail_msg("tls_ctx_new: %s", err);
	return (t);
}

/* tls_ctx_new must fail with exactly "PATH(name): reason...". */
static void
ctx_err(const struct tcfg *tc, const char *name, const char *reason)
{
	char err[512] = "", want[1024];

	assert_null(tls_ctx_new(&tc->c, NULL, true, err, sizeof err));
	if (getenv("TLS_TEST_VERBOSE") != NULL)
		fprintf(stderr, "%s\n", err);
	snprintf(want, sizeof want, "%s: %s", path(name), reason);
	if (strncmp(err, want, strlen(want)) != 0)
		fail_msg("error '%s' does not start with '%s'", err, want);
	assert_null(strchr(err, '\n'));
	assert_int_equal(ERR_peek_error(), 0);	/* queue left empty */
}

/*--------------------------------------------------------------------
 * Client side and handshakes
 */

enum cver { C_ANY, C_TLS12, C_TLS11 };

static SSL_CTX *
client_ctx(enum cver v, const char *alpn, size_t alpnlen)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());

	assert_non_null(c);
	assert_int_equal(SSL_CTX_load_verify_locations(c, path("ca.pem"),
	    NULL), 1);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	if (alpn != NULL)	/* 0 is success here */
		assert_int_equal(SSL_CTX_set_alpn_protos(c,
		    (const unsigned char *)alpn, (unsigned)alpnlen), 0);
	if (v == C_TLS12)
		assert_int_equal(SSL_CTX_set_max_proto_version(c,
		    TLS1_2_VERSION), 1);
	if (v == C_TLS11) {
		/* Let the client really offer TLS 1.1 only. */
		SSL_CTX_set_security_level(c, 0);
		assert_int_equal(SSL_CTX_set_min_proto_version(c,
		    TLS1_VERSION), 1);
		assert_int_equal(SSL_CTX_set_max_proto_version(c,
		    TLS1_1_VERSION), 1);
	}
	return (c);
}

#define ALPN_BOTH	"\x02h2\x08http/1.1"
#define ALPN_H1		"\x08http/1.1"

struct hs {
	int		rc;		/* 0, -1 client failed, -2 server failed */
	char		cn[128];	/* CN of the server certificate */
	char		alpn[32];	/* as the client saw it */
	bool		server_h2;	/* tls_alpn_h2() on the server */
	bool		reused;		/* client and server agree */
	int		version;
	SSL_SESSION	*sess;		/* the client's session; caller frees */
	X509		*peer;		/* caller frees */
};

static int server_reason;	/* reason code of the last server failure */

/* Run SSL_do_handshake on both ends in turn until both are done. */
static int
pump(SSL *c, SSL *s)
{
	bool cd = false, sd = false;
	int i, r, e;

	for (i = 0; i < 100 && !(cd && sd); i++) {
		if (!cd) {
			r = SSL_do_handshake(c);
			if (r == 1)
				cd = true;
			else if ((e = SSL_get_error(c, r)) !=
			    SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				return (-1);
		}
		if (!sd) {
			r = SSL_do_handshake(s);
			if (r == 1)
				sd = true;
			else if ((e = SSL_get_error(s, r)) !=
			    SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
				server_reason =
				    ERR_GET_REASON(ERR_peek_last_error());
				return (-2);
			}
		}
	}
	return (cd && sd ? 0 : -3);
}

/*
 * One connection from a client made with cctx to a server SSL from t.
 * sni may be NULL; resume: a session to present, or NULL.
 */
static void
handshake(struct tls_ctx *t, SSL_CTX *cctx, const char *sni,
    SSL_SESSION *resume, struct hs *h)
{
	const unsigned char *a;
	unsigned alen;
	SSL *c, *s;
	int sv[2];
	char buf[8];

	memset(h, 0, sizeof *h);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	s = tls_ssl_new(t);
	assert_non_null(s);
	assert_int_equal(SSL_set_fd(s, sv[0]), 1);
	c = SSL_new(cctx);
	assert_non_null(c);
	assert_int_equal(SSL_set_fd(c, sv[1]), 1);
	SSL_set_connect_state(c);
	if (sni != NULL)
		assert_int_equal(SSL_set_tlsext_host_name(c, sni), 1);
	if (resume != NULL)
		assert_int_equal(SSL_set_session(c, resume), 1);

	h->rc = pump(c, s);
	if (h->rc == 0) {
		assert_int_equal(SSL_get_verify_result(c), X509_V_OK);
		h->peer = SSL_get1_peer_certificate(c);
		assert_non_null(h->peer);
		assert_true(X509_NAME_get_text_by_NID(
		    X509_get_subject_name(h->peer), NID_commonName, h->cn,
		    sizeof h->cn) > 0);
		SSL_get0_alpn_selected(c, &a, &alen);
		assert_true(alen < sizeof h->alpn);
		if (alen > 0)
			memcpy(h->alpn, a, alen);
		h->alpn[alen] = '\0';
		h->server_h2 = tls_alpn_h2(s);
		assert_int_equal(SSL_session_reused(c), SSL_session_reused(s));
		h->reused = SSL_session_reused(c) == 1;
		h->version = SSL_version(c);
		/* Data after the handshake: the client also takes in the
		 * TLS 1.3 session tickets that precede it. */
		assert_int_equal(SSL_write(s, "ok", 2), 2);
		assert_int_equal(SSL_read(c, buf, sizeof buf), 2);
		assert_memory_equal(buf, "ok", 2);
		/* A session ended without close_notify is not resumable. */
		assert_true(SSL_shutdown(c) >= 0);
		assert_true(SSL_shutdown(s) >= 0);
		h->sess = SSL_get1_session(c);
		assert_non_null(h->sess);
	}
	SSL_free(c);
	SSL_free(s);
	(void)close(sv[0]);
	(void)close(sv[1]);
	ERR_clear_error();
}

static void
hs_clear(struct hs *h)
{
	SSL_SESSION_free(h->sess);
	X509_free(h->peer);
	h->sess = NULL;
	h->peer = NULL;
}

/* Handshake that must succeed and present the certificate named cn. */
static void
expect_cert(struct tls_ctx *t, SSL_CTX *cctx, const char *sni,
    const char *cn)
{
	struct hs h;

	handshake(t, cctx, sni, NULL, &h);
	assert_int_equal(h.rc, 0);
	if (strcmp(h.cn, cn) != 0)
		fail_msg("SNI %s: got certificate %s, want %s",
		    sni != NULL ? sni : "(none)", h.cn, cn);
	hs_clear(&h);
}

/*--------------------------------------------------------------------
 * Tests
 */

static void
test_one_cert(void **state)
{
	struct tcfg tc;
	struct tls_ctx *t;
	SSL_CTX *cctx = client_ctx(C_ANY, ALPN_BOTH, sizeof ALPN_BOTH - 1);

	tcfg_init(&tc, true, "a.pem", "a.key", NULL);
	t = ctx_ok(&tc, NULL, true);
	expect_cert(t, cctx, NULL, "a.test");
	expect_cert(t, cctx, "a.test", "a.test");
	expect_cert(t, cctx, "x.b.test", "a.test");
	tls_ctx_free(t);
	SSL_CTX_free(cctx);
}

static void
test_sni(void **state)
{
	struct tcfg tc;
	struct tls_ctx *t;
	SSL_CTX *cctx = client_ctx(C_ANY, ALPN_BOTH, sizeof ALPN_BOTH - 1);

	tcfg_init(&tc, true, "a.pem", "a.key", "b.pem", "b.key",
	    "c.pem", "c.key", "d.pem", "d.key", NULL);
	t = ctx_ok(&tc, NULL, true);
	expect_cert(t, cctx, "x.b.test", "*.b.test");
	expect_cert(t, cctx, "X.B.Test", "*.b.test");
	expect_cert(t, cctx, "a.test", "a.test");
	expect_cert(t, cctx, "c.test", "c.test");	/* CN, no SAN */
	expect_cert(t, cctx, "d.test", "d.test");	/* CN, no DNS SAN */
	/* No match, or the wildcard for anything but one label: first. */
	expect_cert(t, cctx, NULL, "a.test");
	expect_cert(t, cctx, "unknown.test", "a.test");
	expect_cert(t, cctx, "b.test", "a.test");
	expect_cert(t, cctx, "y.x.b.test", "a.test");
	expect_cert(t, cctx, ".b.test", "a.test");
	tls_ctx_free(t);

	/* The order of the list decides the fallback. */
	tcfg_init(&tc, true, "b.pem", "b.key", "a.pem", "a.key", NULL);
	t = ctx_ok(&tc, NULL, true);
	expect_cert(t, cctx, "unknown.test", "*.b.test");
	expect_cert(t, cctx, "a.test", "a.test");
	tls_ctx_free(t);
	SSL_CTX_free(cctx);
}

/* An exact name wins over a wildcard that comes earlier in the list. */
static void
test_sni_exact_before_wildcard(void **state)
{
	struct tcfg tc;
	struct tls_ctx *t;
	SSL_CTX *cctx = client_ctx(C_ANY, NULL, 0);

	assert_int_equal(sh("cd '%s' && exec 2>/dev/null && "
	    LEAF EC " -keyout x.key -out x.pem -subj /CN=x.b.test"
	    " -addext 'subjectAltName=DNS:x.b.test,DNS:alt.test'", dir), 0);
	tcfg_init(&tc, true, "b.pem", "b.key", "x.pem", "x.key", NULL);
	t = ctx_ok(&tc, NULL, true);
	expect_cert(t, cctx, "x.b.test", "x.b.test");
	expect_cert(t, cctx, "alt.test", "x.b.test");	/* second SAN */
	expect_cert(t, cctx, "y.b.test", "*.b.test");
	tls_ctx_free(t);
	SSL_CTX_free(cctx);
	(void)unlink(path("x.key"));
	(void)unlink(path("x.pem"));
}

static void
test_errors(void **state)
{
	struct tcfg tc;
	char err[512] = "";

	tcfg_init(&tc, true, "missing.pem", "a.key", NULL);
	ctx_err(&tc, "missing.pem",
	    "cannot load certificate: No such file or directory");
	tcfg_init(&tc, true, "garbage.pem", "a.key", NULL);
	ctx_err(&tc, "garbage.pem", "cannot load certificate: ");
	tcfg_init(&tc, true, "badchain.pem", "a.key", NULL);
	ctx_err(&tc, "badchain.pem", "cannot load certificate: ");
	tcfg_init(&tc, true, "a.pem", "missing.key", NULL);
	ctx_err(&tc, "missing.key",
	    "cannot load key: No such file or directory");
	tcfg_init(&tc, true, "a.pem", "garbage.pem", NULL);
	ctx_err(&tc, "garbage.pem", "cannot load key: ");
	tcfg_init(&tc, true, "a.pem", "other.key", NULL);
	snprintf(err, sizeof err, "key does not match certificate %s",
	    path("a.pem"));
	ctx_err(&tc, "other.key", err);
	tcfg_init(&tc, true, "a.pem", "c.key", NULL);	/* EC vs RSA */
	ctx_err(&tc, "c.key", err);
	/* A key file is not a certificate. */
	tcfg_init(&tc, true, "a.key", "a.key", NULL);
	ctx_err(&tc, "a.key", "cannot load certificate: ");
	/* The broken one of several is named. */
	tcfg_init(&tc, true, "a.pem", "a.key", "b.pem", "a.key", NULL);
	snprintf(err, sizeof err, "key does not match certificate %s",
	    path("b.pem"));
	ctx_err(&tc, "a.key", err);
	tcfg_init(&tc, true, "a.pem", "a.key", "garbage.pem", "b.key", NULL);
	ctx_err(&tc, "garbage.pem", "cannot load certificate: ");

	tcfg_init(&tc, true, NULL);
	assert_null(tls_ctx_new(&tc.c, NULL, true, err, sizeof err));
	assert_string_equal(err, "test.conf: tls: no certificate");
}

static void
test_alpn(void **state)
{
	struct tcfg tc;
	struct tls_ctx *t;
	SSL_CTX *both = client_ctx(C_ANY, ALPN_BOTH, sizeof ALPN_BOTH - 1);
	SSL_CTX *h1 = client_ctx(C_ANY, ALPN_H1, sizeof ALPN_H1 - 1);
	SSL_CTX *none = client_ctx(C_ANY, NULL, 0);
	SSL_CTX *h2only = client_ctx(C_ANY, "\x02h2", 3);
	struct hs h;

	/* http2 = true and h2 allowed. */
	tcfg_init(&tc, true, "a.pem", "a.key", NULL);
	t = ctx_ok(&tc, NULL, true);
	handshake(t, both, "a.test", NULL, &h);
	assert_int_equal(h.rc, 0);
	assert_string_equal(h.alpn, "h2");
	assert_true(h.server_h2);
	hs_clear(&h);
	handshake(t, h1, "a.test", NULL, &h);
	assert_int_equal(h.rc, 0);
	assert_string_equal(h.alpn, "http/1.1");
	assert_false(h.server_h2);
	hs_clear(&h);
	handshake(t, none, "a.test", NULL, &h);
	assert_int_equal(h.rc, 0);
	assert_string_equal(h.alpn, "");
	assert_false(h.server_h2);
	hs_clear(&h);
	tls_ctx_free(t);

	/* h2 not allowed by the caller. */
	t = ctx_ok(&tc, NULL, false);
	handshake(t, both, "a.test", NULL, &h);
	assert_int_equal(h.rc, 0);
	assert_string_equal(h.alpn, "http/1.1");
	assert_false(h.server_h2);
	hs_clear(&h);
	/* A client that wants h2 only gets no ALPN at all. */
	handshake(t, h2only, "a.test", NULL, &h);
	assert_int_equal(h.rc, 0);
	assert_string_equal(h.alpn, "");
	assert_false(h.server_h2);
	hs_clear(&h);
	tls_ctx_free(t);

	/* http2 = false in the config. */
	tcfg_init(&tc, false, "a.pem", "a.key", "b.pem", "b.key", NULL);
	t = ctx_ok(&tc, NULL, true);
	handshake(t, both, "x.b.test", NULL, &h);
	assert_int_equal(h.rc, 0);
	assert_string_equal(h.cn, "*.b.test");
	assert_string_equal(h.alpn, "http/1.1");
	assert_false(h.server_h2);
	hs_clear(&h);
	tls_ctx_free(t);

	/* After SNI moved the connection to the second certificate. */
	tcfg_init(&tc, true, "a.pem", "a.key", "b.pem", "b.key", NULL);
	t = ctx_ok(&tc, NULL, true);
	handshake(t, both, "x.b.test", NULL, &h);
	assert_int_equal(h.rc, 0);
	assert_string_equal(h.cn, "*.b.test");
	assert_string_equal(h.alpn, "h2");
	assert_true(h.server_h2);
	hs_clear(&h);
	tls_ctx_free(t);

	SSL_CTX_free(both);
	SSL_CTX_free(h1);
	SSL_CTX_free(none);
	SSL_CTX_free(h2only);
}

static void
test_versions(void **state)
{
	struct tcfg tc;
	struct tls_ctx *t;
	SSL_CTX *any = client_ctx(C_ANY, NULL, 0);
	SSL_CTX *v12 = client_ctx(C_TLS12, NULL, 0);
	SSL_CTX *v11 = client_ctx(C_TLS11, NULL, 0);
	struct hs h;

	tcfg_init(&tc, true, "a.pem", "a.key", "c.pem", "c.key", NULL);
	t = ctx_ok(&tc, NULL, true);
	handshake(t, any, "a.test", NULL, &h);
	assert_int_equal(h.rc, 0);
	assert_int_equal(h.version, TLS1_3_VERSION);
	hs_clear(&h);
	handshake(t, v12, "a.test", NULL, &h);
	assert_int_equal(h.rc, 0);
	assert_int_equal(h.version, TLS1_2_VERSION);
	hs_clear(&h);
	handshake(t, v12, "c.test", NULL, &h);	/* RSA certificate */
	assert_int_equal(h.rc, 0);
	assert_int_equal(h.version, TLS1_2_VERSION);
	assert_string_equal(h.cn, "c.test");
	hs_clear(&h);
	handshake(t, v11, "a.test", NULL, &h);
	assert_int_equal(h.rc, -2);		/* the server refused */
	assert_int_equal(server_reason, SSL_R_UNSUPPORTED_PROTOCOL);
	handshake(t, v11, "c.test", NULL, &h);
	assert_int_equal(h.rc, -2);
	assert_int_equal(server_reason, SSL_R_UNSUPPORTED_PROTOCOL);
	tls_ctx_free(t);
	SSL_CTX_free(any);
	SSL_CTX_free(v12);
	SSL_CTX_free(v11);
}

/* Resume sess against t: must (want) be resumed or not. */
static void
expect_resume(struct tls_ctx *t, SSL_CTX *cctx, const char *sni,
    SSL_SESSION *sess, bool want)
{
	struct hs h;

	handshake(t, cctx, sni, sess, &h);
	assert_int_equal(h.rc, 0);
	if (h.reused != want)
		fail_msg("session %sresumed", h.reused ? "" : "not ");
	hs_clear(&h);
}

static void
resumption(enum cver v)
{
	struct tcfg tc;
	struct tls_keys *keys;
	struct tls_ctx *w1, *w2;
	SSL_CTX *cctx = client_ctx(v, ALPN_BOTH, sizeof ALPN_BOTH - 1);
	char err[256] = "";
	struct hs h;

	keys = tls_keys_create(err, sizeof err);
	if (keys == NULL)
		fail_msg("tls_keys_create: %s", err);
	tcfg_init(&tc, true, "a.pem", "a.key", "b.pem", "b.key", NULL);
	w1 = ctx_ok(&tc, keys, true);		/* two workers */
	w2 = ctx_ok(&tc, keys, true);

	handshake(w1, cctx, "x.b.test", NULL, &h);
	assert_int_equal(h.rc, 0);
	assert_false(h.reused);
	assert_true(SSL_SESSION_is_resumable(h.sess));

	expect_resume(w1, cctx, "x.b.test", h.sess, true);
	expect_resume(w2, cctx, "x.b.test", h.sess, true);
	tls_keys_rotate(keys);
	expect_resume(w2, cctx, "x.b.test", h.sess, true);
	tls_keys_rotate(keys);
	expect_resume(w1, cctx, "x.b.test", h.sess, true);
	tls_keys_rotate(keys);
	expect_resume(w1, cctx, "x.b.test", h.sess, false);
	expect_resume(w2, cctx, "x.b.test", h.sess, false);
	hs_clear(&h);

	/* A ticket made under the newest key, after rotations. */
	handshake(w2, cctx, "a.test", NULL, &h);
	assert_int_equal(h.rc, 0);
	expect_resume(w1, cctx, "a.test", h.sess, true);
	hs_clear(&h);

	tls_ctx_free(w1);
	tls_ctx_free(w2);
	tls_keys_destroy(keys);
	SSL_CTX_free(cctx);
}

static void
test_resumption_tls13(void **state)
{
	resumption(C_ANY);
}

static void
test_resumption_tls12(void **state)
{
	resumption(C_TLS12);
}

/* A ticket under an older key is answered with a new one: a session
 * that keeps coming back outlives the rotations. */
static void
test_ticket_renewed_after_rotation(void **state)
{
	struct tcfg tc;
	struct tls_keys *keys;
	struct tls_ctx *t;
	SSL_CTX *cctx = client_ctx(C_TLS12, NULL, 0);
	char err[256] = "";
	struct hs h, h2;
	int i;

	keys = tls_keys_create(err, sizeof err);
	assert_non_null(keys);
	tcfg_init(&tc, true, "a.pem", "a.key", NULL);
	t = ctx_ok(&tc, keys, true);
	handshake(t, cctx, "a.test", NULL, &h);
	assert_int_equal(h.rc, 0);
	for (i = 0; i < 5; i++) {
		tls_keys_rotate(keys);
		handshake(t, cctx, "a.test", h.sess, &h2);
		assert_int_equal(h2.rc, 0);
		assert_true(h2.reused);
		hs_clear(&h);
		h = h2;
	}
	hs_clear(&h);
	tls_ctx_free(t);
	tls_keys_destroy(keys);
	SSL_CTX_free(cctx);
}

/* Without shared keys each context has its own: no resumption across. */
static void
test_resumption_without_shared_keys(void **state)
{
	struct tcfg tc;
	struct tls_ctx *w1, *w2;
	SSL_CTX *cctx = client_ctx(C_ANY, NULL, 0);
	struct hs h;

	tcfg_init(&tc, true, "a.pem", "a.key", NULL);
	w1 = ctx_ok(&tc, NULL, true);
	w2 = ctx_ok(&tc, NULL, true);
	handshake(w1, cctx, "a.test", NULL, &h);
	assert_int_equal(h.rc, 0);
	expect_resume(w1, cctx, "a.test", h.sess, true);
	expect_resume(w2, cctx, "a.test", h.sess, false);
	hs_clear(&h);
	tls_ctx_free(w1);
	tls_ctx_free(w2);
	SSL_CTX_free(cctx);
}

/* tls_ctx_free() while a connection is mid-handshake. */
static void
test_ctx_outlives_free(void **state)
{
	struct tcfg tc;
	struct tls_ctx *t;
	SSL_CTX *cctx = client_ctx(C_ANY, ALPN_BOTH, sizeof ALPN_BOTH - 1);
	SSL *c, *s;
	int sv[2];

	tcfg_init(&tc, true, "a.pem", "a.key", "b.pem", "b.key", NULL);
	t = ctx_ok(&tc, NULL, true);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	s = tls_ssl_new(t);
	assert_non_null(s);
	tls_ctx_free(t);	/* s keeps it */
	c = SSL_new(cctx);
	assert_non_null(c);
	assert_int_equal(SSL_set_tlsext_host_name(c, "x.b.test"), 1);
	SSL_set_fd(c, sv[1]);
	SSL_set_fd(s, sv[0]);
	SSL_set_connect_state(c);
	assert_int_equal(pump(c, s), 0);
	assert_true(tls_alpn_h2(s));
	SSL_free(c);
	SSL_free(s);		/* frees t (ASan checks) */
	(void)close(sv[0]);
	(void)close(sv[1]);
	SSL_CTX_free(cctx);
}

/* The list form of the config file, through config_load(). */
static void
test_config_lists(void **state)
{
	struct config *c = NULL;
	struct tls_ctx *t;
	SSL_CTX *cctx = client_ctx(C_ANY, NULL, 0);
	char text[4096], err[512] = "";

	snprintf(text, sizeof text,
	    "tls {\n"
	    "  listen      = {\"127.0.0.1:8443\"}\n"
	    "  certificate = {\"%s\", \"%s\"}\n"
	    "  key         = {\"%s\", \"%s\"}\n"
	    "}\n", path("a.pem"), path("b.pem"), path("a.key"),
	    path("b.key"));
	assert_int_equal(wtext("t.conf", text), 0);
	if (config_load(path("t.conf"), &c, err, sizeof err) != 0)
		fail_msg("config_load: %s", err);
	assert_int_equal(c->tls.ncerts, 2);
	t = tls_ctx_new(c, NULL, true, err, sizeof err);
	if (t == NULL)
		fail_msg("tls_ctx_new: %s", err);
	expect_cert(t, cctx, "x.b.test", "*.b.test");
	expect_cert(t, cctx, "a.test", "a.test");
	tls_ctx_free(t);
	config_free(c);
	SSL_CTX_free(cctx);
}

static void
test_keys_create_destroy(void **state)
{
	struct tls_keys *k;
	char err[256] = "";

	k = tls_keys_create(err, sizeof err);
	assert_non_null(k);
	tls_keys_rotate(k);
	tls_keys_destroy(k);
	tls_keys_destroy(NULL);
	tls_ctx_free(NULL);
}

static void
test_version(void **state)
{
	const char *v = tls_version();

	assert_non_null(v);
	assert_true(strncmp(v, "OpenSSL 3", 9) == 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_cert),
		cmocka_unit_test(test_sni),
		cmocka_unit_test(test_sni_exact_before_wildcard),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_alpn),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_resumption_tls13),
		cmocka_unit_test(test_resumption_tls12),
		cmocka_unit_test(test_ticket_renewed_after_rotation),
		cmocka_unit_test(test_resumption_without_shared_keys),
		cmocka_unit_test(test_ctx_outlives_free),
		cmocka_unit_test(test_config_lists),
		cmocka_unit_test(test_keys_create_destroy),
		cmocka_unit_test(test_version),
	};

	return (cmocka_run_group_tests(tests, setup_group, teardown_group));
}
