/*
 * tls.h -- HTTPS listeners: SSL_CTX per certificate, SNI, ALPN, tickets.
 *
 * OpenSSL types stay inside tls.c (ARCHITECTURE.md, habit 2); callers
 * that drive the handshake include <openssl/ssl.h> themselves.
 *
 * Life cycle: the master creates the ticket keys once, before it forks,
 * and rotates them; every config generation builds one tls_ctx (the
 * master for `stoa -t` and on reload, to validate; a worker for its
 * listeners).  A tls_ctx stays alive while an SSL made from it exists,
 * so tls_ctx_free() may come before the last SSL_free().
 */
#ifndef STOA_TLS_H
#define STOA_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct tls_ctx;          /* SSL_CTX per certificate + SNI selection; one per config generation */
struct tls_keys;         /* session ticket keys in shared memory (master creates before fork) */
typedef struct ssl_st SSL;   /* forward declaration matching OpenSSL's */

/*
 * Master: shared ticket keys (MAP_SHARED|MAP_ANONYMOUS), with a first
 * random key.  NULL with a reason in err on failure.
 */
struct tls_keys *tls_keys_create(char *err, size_t errlen);
void tls_keys_destroy(struct tls_keys *k);

/*
 * Master: rotate (call periodically, e.g. every hour): new encryption
 * key; the previous 2 keys stay valid for decryption, and a ticket under
 * one of them is renewed.  Workers read the keys without a lock (the
 * master is the only writer).  On a random number failure the keys stay
 * as they are and an error is logged.
 */
void tls_keys_rotate(struct tls_keys *k);

/*
 * Build the contexts from cfg->tls: every certificate chain and key is
 * loaded and checked (readable, key matches certificate).  TLS 1.2 and
 * 1.3 only, forward-secret ciphers for 1.2 and OpenSSL's default suites
 * for 1.3, server preference, no compression, no renegotiation.  ALPN:
 * "h2" (only when cfg->tls.http2 and allow_h2) and "http/1.1".  SNI
 * picks the certificate whose DNS names (subjectAltName, else the CN)
 * match the server name: an exact name first, then a "*.domain" wildcard
 * for one label; no match or no SNI: the first certificate.  Session
 * tickets only (no session cache), under keys when not NULL (then every
 * worker sharing keys resumes the sessions of the others), else under
 * OpenSSL's per-process keys.
 * Returns NULL with one line "FILE: reason" in err on failure, e.g.
 * "/etc/stoa/tls/cert.pem: cannot load certificate: No such file or
 * directory".  keys must outlive the returned context.
 */
struct tls_ctx *tls_ctx_new(const struct config *cfg, struct tls_keys *keys,
    bool allow_h2, char *err, size_t errlen);

/* Drop the caller's reference (SSL objects still alive keep theirs). */
void tls_ctx_free(struct tls_ctx *t);

/*
 * A new server-side SSL object (accept state) for an accepted
 * connection; the caller sets its fd or BIO and frees it with SSL_free().
 * NULL on ENOMEM.
 */
SSL *tls_ssl_new(struct tls_ctx *t);

/* After the handshake: did ALPN select h2? */
bool tls_alpn_h2(SSL *ssl);

/* OpenSSL version string for stoa -V. */
const char *tls_version(void);

#endif
