/*
 * tls.c -- OpenSSL 3 server contexts; see tls.h.
 *
 * One SSL_CTX per certificate.  Every SSL starts on the first one; the
 * servername callback moves it to the certificate SNI names.  All the
 * contexts share options, callbacks and session id context, so a session
 * or ticket made under one is accepted under another.
 *
 * An SSL made by tls_ssl_new() holds a reference on its tls_ctx through
 * ex_data, dropped by OpenSSL's ex_data free hook when the SSL is freed:
 * the callbacks find the tls_ctx there, and it cannot go away under a
 * connection still in its handshake.  Workers are single-threaded, so
 * the reference count is a plain integer.
 *
 * Ticket keys live in one MAP_SHARED page written only by the master and
 * read by the workers under a sequence counter (odd while a rotation is
 * being written): a reader copies the keys and retries if the counter
 * moved.  key[0] encrypts; key[0..nkeys-1] decrypt.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "log.h"
#include "tls.h"
#include "vas.h"

#define TLS_CTX_MAGIC		0x7150c7a1u
#define TLS_KEYS_MAGIC		0x7150ce75u

#define TLS_NKEYS		3	/* current + 2 previous */
#define TLS_SEQ_TRIES		1000	/* reader retries before giving up */

/* TLS 1.2 only; 1.3 keeps OpenSSL's default ciphersuites. */
#define TLS_CIPHERS_12 \
	"HIGH:!aNULL:!eNULL:!kRSA:!PSK:!SRP:!MD5:!RC4:!3DES:!DES:!IDEA"

static const unsigned char sid_ctx[] = "stoa";

/*--------------------------------------------------------------------
 * Ticket keys
 */

struct tls_key {
	unsigned char		name[16];
	unsigned char		aes[32];	/* AES-256-CBC */
	unsigned char		hmac[32];	/* HMAC-SHA256 */
};

struct tls_keys {
	unsigned		magic;
	_Atomic unsigned	seq;
	unsigned		nkeys;		/* 1..TLS_NKEYS */
	struct tls_key		key[TLS_NKEYS];
};

struct tls_keys *
tls_keys_create(char *err, size_t errlen)
{
	struct tls_keys *k;

	k = mmap(NULL, sizeof *k, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (k == MAP_FAILED) {
		(void)snprintf(err, errlen, "tls: cannot map ticket keys: %s",
		    strerror(errno));
		return (NULL);
	}
	memset(k, 0, sizeof *k);
	k->magic = TLS_KEYS_MAGIC;
	atomic_init(&k->seq, 0);
	if (RAND_bytes((unsigned char *)&k->key[0], sizeof k->key[0]) != 1) {
		(void)snprintf(err, errlen, "tls: cannot make a ticket key: "
		    "random number generator failed");
		AZ(munmap(k, sizeof *k));
		return (NULL);
	}
	k->nkeys = 1;
	return (k);
}

void
tls_keys_destroy(struct tls_keys *k)
{
	if (k == NULL)
		return;
	CHECK_OBJ(k, TLS_KEYS_MAGIC);
	OPENSSL_cleanse(k->key, sizeof k->key);
	k->magic = 0;
	AZ(munmap(k, sizeof *k));
}

void
tls_keys_rotate(struct tls_keys *k)
{
	struct tls_key nk;
	unsigned s;

	CHECK_OBJ_NOTNULL(k, TLS_KEYS_MAGIC);
	if (RAND_bytes((unsigned char *)&nk, sizeof nk) != 1) {
		log_err("tls: ticket key rotation failed: random number "
		    "generator failed; keeping the current keys");
		return;
	}
	s = atomic_load_explicit(&k->seq, memory_order_relaxed);
	atomic_store_explicit(&k->seq, s + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	memmove(&k->key[1], &k->key[0], sizeof k->key[0] * (TLS_NKEYS - 1));
	k->key[0] = nk;
	if (k->nkeys < TLS_NKEYS)
		k->nkeys++;
	atomic_store_explicit(&k->seq, s + 2, memory_order_release);
	OPENSSL_cleanse(&nk, sizeof nk);
}

/* Consistent copy of the keys; 0 keys when the writer never finishes. */
static unsigned
keys_snapshot(struct tls_keys *k, struct tls_key out[TLS_NKEYS])
{
	unsigned s1, s2, n, i;

	CHECK_OBJ(k, TLS_KEYS_MAGIC);
	for (i = 0; i < TLS_SEQ_TRIES; i++) {
		s1 = atomic_load_explicit(&k->seq, memory_order_acquire);
		if (s1 & 1)
			continue;
		n = k->nkeys;
		memcpy(out, k->key, sizeof k->key);
		atomic_thread_fence(memory_order_acquire);
		s2 = atomic_load_explicit(&k->seq, memory_order_relaxed);
		if (s1 == s2 && n >= 1 && n <= TLS_NKEYS)
			return (n);
	}
	return (0);
}

/*--------------------------------------------------------------------
 * Contexts
 */

struct tls_cert {
	SSL_CTX			*ctx;
	char			**names;	/* lower-case DNS names */
	unsigned		nnames;
};

struct tls_ctx {
	unsigned		magic;
	unsigned		refs;		/* owner + live SSLs */
	struct tls_keys		*keys;		/* NULL: OpenSSL's own */
	const unsigned char	*alpn;		/* our ALPN list, preference order */
	size_t			alpnlen;
	unsigned		ncerts;
	struct tls_cert		*certs;
};

static const unsigned char alpn_h2[] = "\x02h2\x08http/1.1";
static const unsigned char alpn_h1[] = "\x08http/1.1";

static int ssl_idx = -1;	/* SSL ex_data: struct tls_ctx * */

static void
tls_ctx_destroy(struct tls_ctx *t)
{
	unsigned i, j;

	for (i = 0; i < t->ncerts; i++) {
		SSL_CTX_free(t->certs[i].ctx);
		for (j = 0; j < t->certs[i].nnames; j++)
			free(t->certs[i].names[j]);
		free(t->certs[i].names);
	}
	free(t->certs);
	t->magic = 0;
	free(t);
}

static void
tls_ctx_unref(struct tls_ctx *t)
{
	CHECK_OBJ_NOTNULL(t, TLS_CTX_MAGIC);
	assert_always(t->refs > 0);
	if (--t->refs == 0)
		tls_ctx_destroy(t);
}

/* ex_data free hook: runs for every SSL freed, ptr NULL for foreign ones. */
static void
ssl_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	if (ptr != NULL)
		tls_ctx_unref(ptr);
}

/* "FILE: what: first OpenSSL error", and the error queue emptied. */
static void
ossl_err(char *err, size_t errlen, const char *file, const char *what)
{
	unsigned long e = ERR_peek_error();
	const char *reason, *lib;
	char rb[128];

	if (e == 0)
		(void)snprintf(rb, sizeof rb, "unknown error");
	else if (ERR_SYSTEM_ERROR(e))
		(void)snprintf(rb, sizeof rb, "%s",
		    strerror((int)ERR_GET_REASON(e)));
	else {
		reason = ERR_reason_error_string(e);
		lib = ERR_lib_error_string(e);
		if (reason == NULL)
			ERR_error_string_n(e, rb, sizeof rb);
		else if (lib != NULL)
			(void)snprintf(rb, sizeof rb, "%s: %s", lib, reason);
		else
			(void)snprintf(rb, sizeof rb, "%s", reason);
	}
	ERR_clear_error();
	(void)snprintf(err, errlen, "%s: %s: %s", file, what, rb);
}

/*
 * Session ticket keys (SSL_CTX_set_tlsext_ticket_key_evp_cb).
 * enc: 1 = ticket made; decrypt: 1 = current key, 2 = older key (the
 * client gets a new ticket), 0 = unknown key (full handshake).
 */
static int
ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv,
    EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	static char digest[] = "SHA256";
	struct tls_key keys[TLS_NKEYS];
	struct tls_key *key = NULL;
	struct tls_ctx *t;
	OSSL_PARAM params[3];
	unsigned n, i;
	int ret = -1;

	t = SSL_get_ex_data(ssl, ssl_idx);
	CHECK_OBJ_NOTNULL(t, TLS_CTX_MAGIC);
	AN(t->keys);
	n = keys_snapshot(t->keys, keys);
	if (n == 0)
		return (0);
	if (enc) {
		key = &keys[0];
		memcpy(name, key->name, sizeof key->name);
		if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(
		    EVP_aes_256_cbc())) != 1)
			goto out;
		if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key->aes,
		    iv) != 1)
			goto out;
		ret = 1;
	} else {
		for (i = 0; i < n; i++)
			if (memcmp(name, keys[i].name, sizeof keys[i].name) == 0)
				break;
		if (i == n) {
			ret = 0;
			goto out;
		}
		key = &keys[i];
		if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key->aes,
		    iv) != 1)
			goto out;
		ret = i == 0 ? 1 : 2;
	}
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY,
	    key->hmac, sizeof key->hmac);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    digest, 0);
	params[2] = OSSL_PARAM_construct_end();
	if (EVP_MAC_CTX_set_params(hctx, params) != 1)
		ret = -1;
  out:
	OPENSSL_cleanse(keys, sizeof keys);
	return (ret);
}

/* Server preference: the first of our protocols the client offers. */
static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	const struct tls_ctx *t = arg;
	const unsigned char *p, *q;

	CHECK_OBJ_NOTNULL(t, TLS_CTX_MAGIC);
	for (p = t->alpn; p < t->alpn + t->alpnlen; p += 1 + *p) {
		for (q = in; q < in + inlen; q += 1 + *q) {
			if (q + 1 + *q > in + inlen)
				break;		/* OpenSSL checks; be safe */
			if (*q == *p && memcmp(q + 1, p + 1, *p) == 0) {
				*out = p + 1;
				*outlen = *p;
				return (SSL_TLSEXT_ERR_OK);
			}
		}
	}
	return (SSL_TLSEXT_ERR_NOACK);
}

/* Index of the certificate for server name sn (lower-cased here). */
static unsigned
cert_pick(const struct tls_ctx *t, const char *sn)
{
	char name[256];
	const char *dot;
	size_t len, i;
	unsigned c, j;

	len = strlen(sn);
	if (len > 0 && sn[len - 1] == '.')
		len--;
	if (len == 0 || len >= sizeof name)
		return (0);
	for (i = 0; i < len; i++)
		name[i] = (sn[i] >= 'A' && sn[i] <= 'Z') ?
		    (char)(sn[i] - 'A' + 'a') : sn[i];
	name[len] = '\0';
	for (c = 0; c < t->ncerts; c++)
		for (j = 0; j < t->certs[c].nnames; j++)
			if (strcmp(t->certs[c].names[j], name) == 0)
				return (c);
	dot = strchr(name, '.');
	if (dot == NULL || dot == name || dot[1] == '\0')
		return (0);
	for (c = 0; c < t->ncerts; c++)
		for (j = 0; j < t->certs[c].nnames; j++)
			if (t->certs[c].names[j][0] == '*' &&
			    strcmp(t->certs[c].names[j] + 1, dot) == 0)
				return (c);
	return (0);
}

static int
servername_cb(SSL *ssl, int *alert, void *arg)
{
	const struct tls_ctx *t;
	const char *sn;
	unsigned c;

	t = SSL_get_ex_data(ssl, ssl_idx);
	CHECK_OBJ_NOTNULL(t, TLS_CTX_MAGIC);
	sn = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (sn == NULL)
		return (SSL_TLSEXT_ERR_OK);
	c = cert_pick(t, sn);
	if (c != 0 && SSL_set_SSL_CTX(ssl, t->certs[c].ctx) == NULL)
		return (SSL_TLSEXT_ERR_ALERT_FATAL);
	return (SSL_TLSEXT_ERR_OK);
}

/* Append a lower-cased copy of s[0..len) to tc->names (no NULs inside). */
static int
add_name(struct tls_cert *tc, const unsigned char *s, int len)
{
	char **nn, *p;
	int i;

	if (len <= 0 || memchr(s, '\0', (size_t)len) != NULL)
		return (0);
	nn = realloc(tc->names, (tc->nnames + 1) * sizeof *nn);
	if (nn == NULL)
		return (-1);
	tc->names = nn;
	p = malloc((size_t)len + 1);
	if (p == NULL)
		return (-1);
	for (i = 0; i < len; i++)
		p[i] = (s[i] >= 'A' && s[i] <= 'Z') ?
		    (char)(s[i] - 'A' + 'a') : (char)s[i];
	p[len] = '\0';
	tc->names[tc->nnames++] = p;
	return (0);
}

/* The DNS names of the leaf: subjectAltName DNS entries, else the CN. */
static int
cert_names(struct tls_cert *tc, X509 *x)
{
	GENERAL_NAMES *gens;
	const GENERAL_NAME *g;
	const X509_NAME *subj;
	const ASN1_STRING *as;
	unsigned char *utf8;
	int i, n, idx, len, r = 0;

	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	if (gens != NULL) {
		n = sk_GENERAL_NAME_num(gens);
		for (i = 0; i < n && r == 0; i++) {
			g = sk_GENERAL_NAME_value(gens, i);
			if (g->type != GEN_DNS)
				continue;
			as = g->d.dNSName;
			r = add_name(tc, ASN1_STRING_get0_data(as),
			    ASN1_STRING_length(as));
		}
		GENERAL_NAMES_free(gens);
		if (r != 0 || tc->nnames > 0)
			return (r);
	}
	subj = X509_get_subject_name(x);
	idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
	if (idx < 0)
		return (0);
	len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(
	    X509_NAME_get_entry(subj, idx)));
	if (len < 0)
		return (0);
	r = add_name(tc, utf8, len);
	OPENSSL_free(utf8);
	return (r);
}

/* One SSL_CTX for certificate chain cert and key file key. */
static int
cert_load(struct tls_ctx *t, struct tls_cert *tc, const char *cert,
    const char *key, char *err, size_t errlen)
{
	unsigned long e;
	SSL_CTX *ctx;
	X509 *x;

	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		ossl_err(err, errlen, cert, "cannot create a TLS context");
		return (-1);
	}
	tc->ctx = ctx;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12) != 1 ||
	    SSL_CTX_set_session_id_context(ctx, sid_ctx,
	    sizeof sid_ctx - 1) != 1) {
		ossl_err(err, errlen, cert, "cannot set up a TLS context");
		return (-1);
	}
	(void)SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE |
	    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	(void)SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	(void)SSL_CTX_set_dh_auto(ctx, 1);
	(void)SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, t);
	if (t->keys != NULL &&
	    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1) {
		ossl_err(err, errlen, cert, "cannot set up session tickets");
		return (-1);
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		ossl_err(err, errlen, cert, "cannot load certificate");
		return (-1);
	}
	/*
	 * Loading the key checks it against the certificate already; a key
	 * of another type goes to another slot, where the check finds no
	 * certificate.
	 */
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		e = ERR_peek_error();
		if (e == 0 || (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
		    ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH)) ||
		    (ERR_GET_LIB(e) == ERR_LIB_SSL &&
		    ERR_GET_REASON(e) == SSL_R_NO_CERTIFICATE_ASSIGNED)) {
			ERR_clear_error();
			(void)snprintf(err, errlen, "%s: key does not match "
			    "certificate %s", key, cert);
		} else
			ossl_err(err, errlen, key, "cannot load key");
		return (-1);
	}
	x = SSL_CTX_get0_certificate(ctx);
	AN(x);
	if (cert_names(tc, x) != 0) {
		(void)snprintf(err, errlen, "%s: out of memory", cert);
		return (-1);
	}
	if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
		log_warn("%s: certificate has expired", cert);
	return (0);
}

struct tls_ctx *
tls_ctx_new(const struct config *cfg, struct tls_keys *keys, bool allow_h2,
    char *err, size_t errlen)
{
	struct tls_ctx *t;
	unsigned i;

	CHECK_OBJ_NOTNULL(cfg, CONFIG_MAGIC);
	if (keys != NULL)
		CHECK_OBJ(keys, TLS_KEYS_MAGIC);
	if (cfg->tls.ncerts == 0) {
		(void)snprintf(err, errlen, "%s: tls: no certificate",
		    cfg->file != NULL ? cfg->file : "config");
		return (NULL);
	}
	if (ssl_idx < 0) {
		ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL,
		    ssl_ex_free);
		if (ssl_idx < 0) {
			ossl_err(err, errlen, cfg->tls.certificates[0],
			    "cannot set up TLS");
			return (NULL);
		}
	}
	t = calloc(1, sizeof *t);
	if (t == NULL ||
	    (t->certs = calloc(cfg->tls.ncerts, sizeof *t->certs)) == NULL) {
		free(t);
		(void)snprintf(err, errlen, "%s: out of memory",
		    cfg->tls.certificates[0]);
		return (NULL);
	}
	t->magic = TLS_CTX_MAGIC;
	t->refs = 1;
	t->keys = keys;
	if (allow_h2 && cfg->tls.http2) {
		t->alpn = alpn_h2;
		t->alpnlen = sizeof alpn_h2 - 1;
	} else {
		t->alpn = alpn_h1;
		t->alpnlen = sizeof alpn_h1 - 1;
	}
	for (i = 0; i < cfg->tls.ncerts; i++) {
		t->ncerts++;
		if (cert_load(t, &t->certs[i], cfg->tls.certificates[i],
		    cfg->tls.keys[i], err, errlen) != 0) {
			tls_ctx_destroy(t);
			return (NULL);
		}
	}
	SSL_CTX_set_tlsext_servername_callback(t->certs[0].ctx,
	    servername_cb);
	return (t);
}

void
tls_ctx_free(struct tls_ctx *t)
{
	if (t == NULL)
		return;
	tls_ctx_unref(t);
}

SSL *
tls_ssl_new(struct tls_ctx *t)
{
	SSL *ssl;

	CHECK_OBJ_NOTNULL(t, TLS_CTX_MAGIC);
	ssl = SSL_new(t->certs[0].ctx);
	if (ssl == NULL) {
		ERR_clear_error();
		return (NULL);
	}
	if (SSL_set_ex_data(ssl, ssl_idx, t) != 1) {
		ERR_clear_error();
		SSL_free(ssl);
		return (NULL);
	}
	t->refs++;
	SSL_set_accept_state(ssl);
	return (ssl);
}

bool
tls_alpn_h2(SSL *ssl)
{
	const unsigned char *p;
	unsigned len;

	AN(ssl);
	SSL_get0_alpn_selected(ssl, &p, &len);
	return (len == 2 && memcmp(p, "h2", 2) == 0);
}

const char *
tls_version(void)
{
	return (OpenSSL_version(OPENSSL_VERSION));
}
