/*
 * config.c -- libconfuse -> one immutable struct config; see config.h.
 *
 * Loading runs in two passes.
 *
 * 1. A small preprocessor of our own reads FILE and every include()d file
 *    and writes one buffer for libconfuse: comments become blanks,
 *    include("x") is replaced by the text of x, and each section's "{" is
 *    followed by an injected "__sec += N", N being the buffer line of that
 *    "{".  A line map turns buffer lines back into FILE:LINE.  The
 *    preprocessor also checks the statement structure, so it catches what
 *    libconfuse 3.3 lets through or gets wrong:
 *      - a section left open at end of file (libconfuse accepts it),
 *      - include cycles, missing include files, and errors inside included
 *        files (libconfuse leaks its global include stack on those, and
 *        after ten such failures every later include in the process fails),
 *      - block comments (libconfuse counts one line too many after each),
 *      - empty address lists (libconfuse calls no validator for "{}").
 *    A preprocessor error is held back: libconfuse still parses the
 *    complete statements before it, so an earlier error in the file wins.
 *
 * 2. libconfuse parses the buffer.  Values are validated while parsing
 *    (validate callbacks, so the error carries the line being read);
 *    route sections are copied out when they close, because libconfuse
 *    replaces an earlier section that has the same title and a prefix may
 *    appear once per host.  What needs the whole file (upstream names
 *    used by routes, route cache ttl defaulting to cache.ttl) is checked
 *    afterwards, with lines from the "__sec" values.
 *
 * Include paths that are relative are taken relative to the directory of
 * the file that includes them.
 *
 * Not reentrant: libconfuse keeps its lexer in globals, and its error
 * callback has no user pointer, so the load in progress is a static.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <confuse.h>

#include "config.h"
#include "log.h"
#include "util.h"
#include "vas.h"

#define MAX_INCLUDE_DEPTH	16
#define MAX_NESTING		32
#define MAX_FILES		1000	/* include()s per load, repeats counted */
#define MAX_FILE_SIZE		(4u * 1024 * 1024)
#define MAX_TOTAL_SIZE		(16u * 1024 * 1024)
#define MAX_WORKERS		1024
#define SEC_KEY			"__sec"
#define STOP_KEY		"__stop"

/*--------------------------------------------------------------------
 * Load context
 */

struct lmap {
	unsigned		file;	/* index into ctx.files */
	unsigned		line;
};

struct frame {
	unsigned		file;
	unsigned		line;
	const char		*name;	/* points into the file's buffer */
	size_t			namelen;
	const char		*title;	/* NULL when untitled */
	size_t			titlelen;
};

struct route_tmp {
	struct config_route	r;
	char			*upname;
	unsigned		upline;		/* buffer line */
	bool			ttl_set;
	unsigned		seq;		/* buffer line of "{" */
};

struct incl {
	dev_t			dev;
	ino_t			ino;
};

struct ctx {
	char			**files;
	unsigned		nfiles, filecap;

	char			*out;		/* the buffer for libconfuse */
	size_t			outlen, outcap;
	struct lmap		*map;		/* map[k] = origin of buffer line k */
	unsigned		nmap, mapcap;

	struct frame		*frames;
	unsigned		nframes, framecap;
	struct incl		incl[MAX_INCLUDE_DEPTH + 1];
	unsigned		nincl;
	size_t			stmt_end;	/* out offset after the last statement */

	char			pperr[512];	/* held-back preprocessor error */
	bool			has_pperr;
	bool			stopped;	/* libconfuse reached STOP_KEY */

	char			*errbuf;
	size_t			errlen;
	bool			failed;

	struct route_tmp	*routes;
	unsigned		nroutes, routecap;
	unsigned		upline;		/* line of the last route upstream key */
	bool			oom;
};

static struct ctx *cur;		/* the load in progress (see top) */

static void *
xrealloc(struct ctx *ctx, void *p, size_t n, size_t sz)
{
	void *q;

	if (n != 0 && sz > SIZE_MAX / n) {
		ctx->oom = true;
		return (NULL);
	}
	q = realloc(p, n * sz);
	if (q == NULL)
		ctx->oom = true;
	return (q);
}

static char *
xstrdup(struct ctx *ctx, const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		ctx->oom = true;
	return (p);
}

/* Format "FILE:LINE: reason" (or "FILE: reason" for line 0). */
static void
vseterr_fl(struct ctx *ctx, unsigned file, unsigned line, const char *fmt,
    va_list ap)
{
	char msg[512];
	char *nl;

	if (ctx->failed)
		return;
	ctx->failed = true;
	(void)vsnprintf(msg, sizeof msg, fmt, ap);
	while ((nl = strchr(msg, '\n')) != NULL)
		*nl = ' ';
	if (line > 0)
		(void)snprintf(ctx->errbuf, ctx->errlen, "%s:%u: %s",
		    ctx->files[file], line, msg);
	else
		(void)snprintf(ctx->errbuf, ctx->errlen, "%s: %s",
		    ctx->files[file], msg);
}

/* Error at a line of the libconfuse buffer. */
static void
vseterr_buf(struct ctx *ctx, unsigned bline, const char *fmt, va_list ap)
{
	struct lmap m = { 0, 0 };

	if (ctx->nmap > 1) {
		if (bline >= ctx->nmap)
			bline = ctx->nmap - 1;
		if (bline > 0)
			m = ctx->map[bline];
	}
	vseterr_fl(ctx, m.file, m.line, fmt, ap);
}

static void __attribute__((format(printf, 3, 4)))
seterr_buf(struct ctx *ctx, unsigned bline, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vseterr_buf(ctx, bline, fmt, ap);
	va_end(ap);
}

static void __attribute__((format(printf, 3, 4)))
seterr_file(struct ctx *ctx, unsigned file, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vseterr_fl(ctx, file, 0, fmt, ap);
	va_end(ap);
}

/* Hold back a preprocessor error (see top). */
static int __attribute__((format(printf, 4, 5)))
pperr(struct ctx *ctx, unsigned file, unsigned line, const char *fmt, ...)
{
	char msg[384];
	va_list ap;

	if (ctx->has_pperr)
		return (-1);
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	(void)snprintf(ctx->pperr, sizeof ctx->pperr, "%s:%u: %s",
	    ctx->files[file], line, msg);
	ctx->has_pperr = true;
	return (-1);
}

/*
 * libconfuse error callback.  Rewrites the messages of libconfuse 3.3
 * that we want worded differently; others pass as they are.
 */
static void
confuse_err(cfg_t *cfg, const char *fmt, va_list ap)
{
	struct ctx *ctx = cur;
	const char *arg;
	va_list aq;

	if (ctx == NULL || ctx->failed)
		return;
	if (strcmp(fmt, "no such option '%s'") == 0) {
		va_copy(aq, ap);
		arg = va_arg(aq, const char *);
		va_end(aq);
		if (ctx->has_pperr && strcmp(arg, STOP_KEY) == 0) {
			ctx->stopped = true;
			return;
		}
		seterr_buf(ctx, (unsigned)cfg->line, "unknown option '%s'", arg);
	} else if (strcmp(fmt, "found duplicate title '%s'") == 0) {
		va_copy(aq, ap);
		arg = va_arg(aq, const char *);
		va_end(aq);
		seterr_buf(ctx, (unsigned)cfg->line, "duplicate upstream '%s'",
		    arg);
	} else if (strcmp(fmt, "invalid boolean value for option '%s'") == 0) {
		va_copy(aq, ap);
		arg = va_arg(aq, const char *);
		va_end(aq);
		seterr_buf(ctx, (unsigned)cfg->line,
		    "%s: invalid boolean (use true or false)", arg);
	} else
		vseterr_buf(ctx, cfg->line > 0 ? (unsigned)cfg->line : 0, fmt,
		    ap);
}

/*--------------------------------------------------------------------
 * Preprocessor: output buffer and line map
 */

static int
out_reserve(struct ctx *ctx, size_t n)
{
	size_t cap;
	char *p;

	if (ctx->outlen + n + 1 <= ctx->outcap)
		return (0);
	if (ctx->outlen + n + 1 > MAX_TOTAL_SIZE)
		return (-1);
	cap = ctx->outcap ? ctx->outcap : 4096;
	while (cap < ctx->outlen + n + 1)
		cap *= 2;
	p = xrealloc(ctx, ctx->out, cap, 1);
	if (p == NULL)
		return (-1);
	ctx->out = p;
	ctx->outcap = cap;
	return (0);
}

static int
map_push(struct ctx *ctx, unsigned file, unsigned line)
{
	struct lmap *m;

	if (ctx->nmap == ctx->mapcap) {
		m = xrealloc(ctx, ctx->map, ctx->mapcap ? ctx->mapcap * 2 : 256,
		    sizeof *m);
		if (m == NULL)
			return (-1);
		ctx->map = m;
		ctx->mapcap = ctx->mapcap ? ctx->mapcap * 2 : 256;
	}
	ctx->map[ctx->nmap].file = file;
	ctx->map[ctx->nmap].line = line;
	ctx->nmap++;
	return (0);
}

/*--------------------------------------------------------------------
 * Preprocessor: lexer
 *
 * Tokens as libconfuse 3.3 reads them: punctuation { } ( ) = += ,
 * double- and single-quoted strings, ${VAR}, and unquoted words.  The
 * text between tokens (blanks and comments) reaches libconfuse as
 * spaces and newlines only.
 */

enum tok {
	T_EOF, T_WORD, T_STR, T_LBRACE, T_RBRACE, T_LPAREN, T_RPAREN,
	T_EQ, T_PLUSEQ, T_COMMA
};

struct token {
	enum tok		type;
	size_t			start, end;
	unsigned		line;
};

struct lexer {
	const char		*buf;
	size_t			len;
	size_t			pos;		/* scan position */
	unsigned		line;		/* line at pos */
	size_t			epos;		/* emitted up to here */
	unsigned		eline;		/* line at epos */
	unsigned		file;
};

static bool
is_word_char(unsigned char c)
{
	if (c < 0x20 || c == 0x7f)
		return (false);
	return (strchr(" #\"'={}()+,*", c) == NULL);
}

/* Dollar-brace at p: length through the closing brace, or 0. */
static size_t
envref_len(struct ctx *ctx, struct lexer *lx, size_t p, int *err)
{
	const char *e;

	*err = 0;
	if (p + 1 >= lx->len || lx->buf[p] != '$' || lx->buf[p + 1] != '{')
		return (0);
	e = memchr(lx->buf + p + 2, '}', lx->len - p - 2);
	if (e == NULL)
		return (0);
	if (memchr(lx->buf + p, '\n', (size_t)(e - (lx->buf + p))) != NULL) {
		*err = pperr(ctx, lx->file, lx->line,
		    "line break inside ${...}");
		return (0);
	}
	return ((size_t)(e - (lx->buf + p)) + 1);
}

static int
lex_quoted(struct ctx *ctx, struct lexer *lx, unsigned sline)
{
	char q = lx->buf[lx->pos++];
	size_t n;
	int err;

	while (lx->pos < lx->len) {
		char c = lx->buf[lx->pos];

		if (c == '\0')
			return (pperr(ctx, lx->file, lx->line, "NUL byte"));
		if (c == '\\') {
			if (lx->pos + 1 >= lx->len)
				break;
			if (lx->buf[lx->pos + 1] == '\n')
				lx->line++;
			lx->pos += 2;
			continue;
		}
		if (c == q) {
			lx->pos++;
			return (0);
		}
		if (c == '\n')
			lx->line++;
		if (q == '"' && c == '$') {
			n = envref_len(ctx, lx, lx->pos, &err);
			if (err)
				return (-1);
			if (n > 0) {
				lx->pos += n;
				continue;
			}
		}
		lx->pos++;
	}
	return (pperr(ctx, lx->file, sline, "unterminated string"));
}

static int
lex(struct ctx *ctx, struct lexer *lx, struct token *t)
{
	const char *b = lx->buf;
	unsigned char c;
	unsigned sline;
	size_t n;
	int err;

	while (lx->pos < lx->len) {
		c = (unsigned char)b[lx->pos];
		if (c == '\n') {
			lx->line++;
			lx->pos++;
		} else if (c == ' ' || c == '\t' || c == '\r') {
			lx->pos++;
		} else if (c == '#' || (c == '/' && lx->pos + 1 < lx->len &&
		    b[lx->pos + 1] == '/')) {
			while (lx->pos < lx->len && b[lx->pos] != '\n')
				lx->pos++;
		} else if (c == '/' && lx->pos + 1 < lx->len &&
		    b[lx->pos + 1] == '*') {
			sline = lx->line;
			lx->pos += 2;
			for (;;) {
				if (lx->pos + 1 >= lx->len)
					return (pperr(ctx, lx->file, sline,
					    "unterminated comment"));
				if (b[lx->pos] == '*' && b[lx->pos + 1] == '/')
					break;
				if (b[lx->pos] == '\n')
					lx->line++;
				lx->pos++;
			}
			lx->pos += 2;
		} else
			break;
	}
	t->start = lx->pos;
	t->line = lx->line;
	if (lx->pos >= lx->len) {
		t->type = T_EOF;
		t->end = lx->pos;
		return (0);
	}
	c = (unsigned char)b[lx->pos];
	switch (c) {
	case '{': t->type = T_LBRACE; lx->pos++; break;
	case '}': t->type = T_RBRACE; lx->pos++; break;
	case '(': t->type = T_LPAREN; lx->pos++; break;
	case ')': t->type = T_RPAREN; lx->pos++; break;
	case '=': t->type = T_EQ; lx->pos++; break;
	case ',': t->type = T_COMMA; lx->pos++; break;
	case '+':
		if (lx->pos + 1 < lx->len && b[lx->pos + 1] == '=') {
			t->type = T_PLUSEQ;
			lx->pos += 2;
			break;
		}
		return (pperr(ctx, lx->file, lx->line,
		    "unexpected '+' (quote values that contain it)"));
	case '*':
		return (pperr(ctx, lx->file, lx->line,
		    "unexpected '*' (quote values that contain it)"));
	case '"':
	case '\'':
		if (lex_quoted(ctx, lx, lx->line) != 0)
			return (-1);
		t->type = T_STR;
		break;
	default:
		n = envref_len(ctx, lx, lx->pos, &err);
		if (err)
			return (-1);
		if (n > 0) {
			lx->pos += n;
			t->type = T_STR;
			break;
		}
		if (c == '\0')
			return (pperr(ctx, lx->file, lx->line, "NUL byte"));
		if (!is_word_char(c))
			return (pperr(ctx, lx->file, lx->line,
			    "invalid character 0x%02x", c));
		while (lx->pos < lx->len &&
		    is_word_char((unsigned char)b[lx->pos]))
			lx->pos++;
		t->type = T_WORD;
		break;
	}
	t->end = lx->pos;
	return (0);
}

/* Copy source text up to `to`: verbatim, or blanked (newlines kept). */
static int
emit_to(struct ctx *ctx, struct lexer *lx, size_t to, bool verbatim)
{
	size_t i;
	char c;

	if (out_reserve(ctx, to - lx->epos) != 0)
		return (-1);
	for (i = lx->epos; i < to; i++) {
		c = lx->buf[i];
		if (c == '\n') {
			lx->eline++;
			if (map_push(ctx, lx->file, lx->eline) != 0)
				return (-1);
		} else if (!verbatim)
			c = ' ';
		ctx->out[ctx->outlen++] = c;
	}
	lx->epos = to;
	return (0);
}

static int
emit_tok(struct ctx *ctx, struct lexer *lx, const struct token *t)
{
	if (emit_to(ctx, lx, t->start, false) != 0 ||
	    emit_to(ctx, lx, t->end, true) != 0)
		return (-1);
	return (0);
}

/* Drop source text up to `to` (keeping the line count). */
static void
skip_to(struct lexer *lx, size_t to)
{
	for (; lx->epos < to; lx->epos++)
		if (lx->buf[lx->epos] == '\n')
			lx->eline++;
}

static int
emit_str(struct ctx *ctx, const char *s)
{
	size_t n = strlen(s);

	if (out_reserve(ctx, n) != 0)
		return (-1);
	memcpy(ctx->out + ctx->outlen, s, n);
	ctx->outlen += n;
	return (0);
}

static int
emit_newline(struct ctx *ctx, unsigned file, unsigned line)
{
	if (emit_str(ctx, "\n") != 0)
		return (-1);
	return (map_push(ctx, file, line));
}

/*--------------------------------------------------------------------
 * Preprocessor: files and statements
 */

static void
tok_text(const struct lexer *lx, const struct token *t, char *buf,
    size_t len)
{
	size_t n;

	if (t->type == T_EOF) {
		(void)snprintf(buf, len, "end of file");
		return;
	}
	n = t->end - t->start;
	if (n > 40)
		n = 40;
	(void)snprintf(buf, len, "'%.*s%s'", (int)n, lx->buf + t->start,
	    n < t->end - t->start ? "..." : "");
}

/* A token's text without surrounding quotes (no unescaping). */
static void
tok_bare(const char *buf, const struct token *t, const char **p, size_t *n)
{
	*p = buf + t->start;
	*n = t->end - t->start;
	if (*n >= 2 && (**p == '"' || **p == '\'')) {
		(*p)++;
		*n -= 2;
	}
}

static int pp_file(struct ctx *ctx, unsigned file, const char *buf,
    size_t len);

/* Read a whole file; rejects oversized files. */
static int
read_file(const char *path, char **bufp, size_t *lenp, struct stat *st)
{
	size_t len = 0, cap = 0;
	char *buf = NULL, *p;
	ssize_t r;
	int fd, e;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return (-1);
	if (fstat(fd, st) != 0 || S_ISDIR(st->st_mode)) {
		e = S_ISDIR(st->st_mode) ? EISDIR : errno;
		(void)close(fd);
		errno = e;
		return (-1);
	}
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 8192;
			if (cap > MAX_FILE_SIZE + 1)
				cap = MAX_FILE_SIZE + 1;
			if (len == cap) {
				free(buf);
				(void)close(fd);
				errno = EFBIG;
				return (-1);
			}
			p = realloc(buf, cap);
			if (p == NULL) {
				free(buf);
				(void)close(fd);
				errno = ENOMEM;
				return (-1);
			}
			buf = p;
		}
		r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			e = errno;
			free(buf);
			(void)close(fd);
			errno = e;
			return (-1);
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	(void)close(fd);
	*bufp = buf;
	*lenp = len;
	return (0);
}

static int
add_file(struct ctx *ctx, char *path)
{
	char **f;

	if (ctx->nfiles == ctx->filecap) {
		f = xrealloc(ctx, ctx->files, ctx->filecap + 16, sizeof *f);
		if (f == NULL) {
			free(path);
			return (-1);
		}
		ctx->files = f;
		ctx->filecap += 16;
	}
	ctx->files[ctx->nfiles++] = path;
	return (0);
}

/*
 * include(ARG) found in file lx->file; t is the ARG token.  Splices the
 * named file into the buffer between two newlines.
 */
static int
pp_include(struct ctx *ctx, struct lexer *lx, const struct token *arg,
    unsigned line)
{
	const char *from = ctx->files[lx->file], *slash, *s;
	char *path, *buf = NULL;
	size_t n, dlen, len;
	struct stat st;
	unsigned i, nf;
	int rc;

	tok_bare(lx->buf, arg, &s, &n);
	if (ctx->nfiles >= MAX_FILES)
		return (pperr(ctx, lx->file, line,
		    "too many include()s (at most %u per configuration)",
		    MAX_FILES));
	if (n == 0)
		return (pperr(ctx, lx->file, line, "include: empty file name"));
	slash = strrchr(from, '/');
	dlen = (*s == '/' || slash == NULL) ? 0 : (size_t)(slash - from) + 1;
	path = malloc(dlen + n + 1);
	if (path == NULL) {
		ctx->oom = true;
		return (-1);
	}
	memcpy(path, from, dlen);
	memcpy(path + dlen, s, n);
	path[dlen + n] = '\0';
	if (memchr(path, '\0', dlen + n) != NULL ||
	    memchr(path, '\\', dlen + n) != NULL) {
		free(path);
		return (pperr(ctx, lx->file, line,
		    "include: unsupported character in file name"));
	}
	if (read_file(path, &buf, &len, &st) != 0) {
		rc = pperr(ctx, lx->file, line, "cannot include '%s': %s",
		    path, strerror(errno));
		free(path);
		return (rc);
	}
	for (i = 0; i < ctx->nincl; i++)
		if (ctx->incl[i].dev == st.st_dev &&
		    ctx->incl[i].ino == st.st_ino) {
			rc = pperr(ctx, lx->file, line,
			    "include cycle: '%s' is already being read", path);
			free(path);
			free(buf);
			return (rc);
		}
	if (ctx->nincl > MAX_INCLUDE_DEPTH) {
		free(path);
		free(buf);
		return (pperr(ctx, lx->file, line,
		    "includes nested too deeply"));
	}
	if (add_file(ctx, path) != 0) {
		free(buf);
		return (-1);
	}
	nf = ctx->nfiles - 1;
	ctx->incl[ctx->nincl].dev = st.st_dev;
	ctx->incl[ctx->nincl].ino = st.st_ino;
	ctx->nincl++;
	rc = emit_newline(ctx, nf, 1);
	if (rc == 0)
		rc = pp_file(ctx, nf, buf, len);
	ctx->nincl--;
	free(buf);
	if (rc == 0)
		rc = emit_newline(ctx, lx->file, lx->eline);
	return (rc);
}

static int
push_frame(struct ctx *ctx, const struct lexer *lx, const struct token *name,
    const struct token *title)
{
	struct frame *f;

	if (ctx->nframes >= MAX_NESTING)
		return (pperr(ctx, lx->file, name->line,
		    "sections nested too deeply"));
	if (ctx->nframes == ctx->framecap) {
		f = xrealloc(ctx, ctx->frames, ctx->framecap + 8, sizeof *f);
		if (f == NULL)
			return (-1);
		ctx->frames = f;
		ctx->framecap += 8;	/* at most MAX_NESTING */
	}
	f = &ctx->frames[ctx->nframes++];
	f->file = lx->file;
	f->line = name->line;
	tok_bare(lx->buf, name, &f->name, &f->namelen);
	f->title = NULL;
	f->titlelen = 0;
	if (title != NULL)
		tok_bare(lx->buf, title, &f->title, &f->titlelen);
	return (0);
}

static bool
tok_is(const struct lexer *lx, const struct token *t, const char *s)
{
	return (t->type == T_WORD && t->end - t->start == strlen(s) &&
	    memcmp(lx->buf + t->start, s, t->end - t->start) == 0);
}

enum pstate {
	S_NAME, S_AFTER_NAME, S_AFTER_TITLE, S_VALUE, S_LIST_FIRST,
	S_LIST_SEP, S_LIST_ELEM, S_ARGS, S_INC_OPEN, S_INC_ARG, S_INC_CLOSE
};

/*
 * One file: check the statement structure, emit it.  Each file must be
 * complete: statements and sections may not run across an include.
 */
static int
pp_file(struct ctx *ctx, unsigned file, const char *buf, size_t len)
{
	struct lexer lx;
	struct token t, name, title, incarg;
	enum pstate st = S_NAME;
	unsigned base = ctx->nframes;
	char tb[64], inj[48];
	const struct frame *f;
	unsigned lastline = 1;

	memset(&lx, 0, sizeof lx);
	memset(&name, 0, sizeof name);
	memset(&incarg, 0, sizeof incarg);
	lx.buf = buf;
	lx.len = len;
	lx.line = lx.eline = 1;
	lx.file = file;
	if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
		lx.pos = lx.epos = 3;	/* UTF-8 byte order mark */
	if (memchr(buf, '\0', len) != NULL) {
		const char *z = memchr(buf, '\0', len);
		unsigned l = 1;

		for (const char *q = buf; q < z; q++)
			l += (*q == '\n');
		return (pperr(ctx, file, l, "NUL byte"));
	}
	for (;;) {
		if (lex(ctx, &lx, &t) != 0)
			return (-1);
		if (t.type == T_EOF)
			break;
		lastline = t.line;
		tok_text(&lx, &t, tb, sizeof tb);
		switch (st) {
		case S_NAME:
			if (t.type == T_WORD || t.type == T_STR) {
				if (tok_is(&lx, &t, SEC_KEY) ||
				    tok_is(&lx, &t, STOP_KEY))
					return (pperr(ctx, file, t.line,
					    "unknown option '%.*s'",
					    (int)(t.end - t.start), buf + t.start));
				name = t;	/* emitted with what follows */
				st = S_AFTER_NAME;
				break;
			}
			if (t.type == T_RBRACE) {
				if (ctx->nframes == base)
					return (pperr(ctx, file, t.line,
					    "unexpected '}'"));
				ctx->nframes--;
				if (emit_tok(ctx, &lx, &t) != 0)
					return (-1);
				ctx->stmt_end = ctx->outlen;
				break;
			}
			return (pperr(ctx, file, t.line,
			    "unexpected %s, expected an option name", tb));
		case S_AFTER_NAME:
			if (t.type == T_LPAREN && tok_is(&lx, &name, "include")) {
				if (emit_to(ctx, &lx, name.start, false) != 0)
					return (-1);
				st = S_INC_ARG;
				break;
			}
			if (emit_tok(ctx, &lx, &name) != 0)
				return (-1);
			if (t.type == T_EQ || t.type == T_PLUSEQ) {
				st = S_VALUE;
			} else if (t.type == T_LBRACE) {
				if (push_frame(ctx, &lx, &name, NULL) != 0)
					return (-1);
				st = S_NAME;
			} else if (t.type == T_WORD || t.type == T_STR) {
				title = t;
				st = S_AFTER_TITLE;
			} else if (t.type == T_LPAREN) {
				st = S_ARGS;
			} else {
				return (pperr(ctx, file, t.line,
				    "unexpected %s after '%.*s'", tb,
				    (int)(name.end - name.start > 40 ? 40 :
				    name.end - name.start),
				    buf + name.start));
			}
			if (emit_tok(ctx, &lx, &t) != 0)
				return (-1);
			if (t.type == T_LBRACE) {
				(void)snprintf(inj, sizeof inj, " %s += %u ",
				    SEC_KEY, ctx->nmap - 1);
				if (emit_str(ctx, inj) != 0)
					return (-1);
				ctx->stmt_end = ctx->outlen;
			}
			break;
		case S_AFTER_TITLE:
			if (t.type != T_LBRACE)
				return (pperr(ctx, file, name.line,
				    "unexpected %s after '%.*s %.*s' (missing "
				    "'=' or '{'?)", tb,
				    (int)(name.end - name.start > 40 ? 40 :
				    name.end - name.start), buf + name.start,
				    (int)(title.end - title.start > 40 ? 40 :
				    title.end - title.start), buf + title.start));
			if (push_frame(ctx, &lx, &name, &title) != 0 ||
			    emit_tok(ctx, &lx, &t) != 0)
				return (-1);
			(void)snprintf(inj, sizeof inj, " %s += %u ", SEC_KEY,
			    ctx->nmap - 1);
			if (emit_str(ctx, inj) != 0)
				return (-1);
			ctx->stmt_end = ctx->outlen;
			st = S_NAME;
			break;
		case S_VALUE:
			if (t.type == T_WORD || t.type == T_STR)
				st = S_NAME;
			else if (t.type == T_LBRACE)
				st = S_LIST_FIRST;
			else
				return (pperr(ctx, file, t.line,
				    "unexpected %s, expected a value", tb));
			if (emit_tok(ctx, &lx, &t) != 0)
				return (-1);
			if (st == S_NAME)
				ctx->stmt_end = ctx->outlen;
			break;
		case S_LIST_FIRST:
			if (t.type == T_RBRACE)
				/* Address lists, but for tls files. */
				return (pperr(ctx, file, t.line,
				    "%.*s must name at least one %s",
				    (int)(name.end - name.start > 40 ? 40 :
				    name.end - name.start), buf + name.start,
				    tok_is(&lx, &name, "certificate") ||
				    tok_is(&lx, &name, "key") ? "file" :
				    "address"));
			/* FALLTHROUGH */
		case S_LIST_ELEM:
			if (t.type != T_WORD && t.type != T_STR)
				return (pperr(ctx, file, t.line,
				    "unexpected %s in a list", tb));
			if (emit_tok(ctx, &lx, &t) != 0)
				return (-1);
			st = S_LIST_SEP;
			break;
		case S_LIST_SEP:
			if (t.type == T_COMMA)
				st = S_LIST_ELEM;
			else if (t.type == T_RBRACE)
				st = S_NAME;
			else
				return (pperr(ctx, file, t.line,
				    "unexpected %s in a list, expected ',' "
				    "or '}'", tb));
			if (emit_tok(ctx, &lx, &t) != 0)
				return (-1);
			if (st == S_NAME)
				ctx->stmt_end = ctx->outlen;
			break;
		case S_ARGS:
			if (emit_tok(ctx, &lx, &t) != 0)
				return (-1);
			if (t.type == T_RPAREN) {
				st = S_NAME;
				ctx->stmt_end = ctx->outlen;
			}
			break;
		case S_INC_ARG:
			if (t.type != T_WORD && t.type != T_STR)
				return (pperr(ctx, file, t.line,
				    "include: expected a file name"));
			incarg = t;
			st = S_INC_CLOSE;
			break;
		case S_INC_CLOSE:
			if (t.type != T_RPAREN)
				return (pperr(ctx, file, t.line,
				    "include takes one file name"));
			skip_to(&lx, t.end);
			if (pp_include(ctx, &lx, &incarg, incarg.line) != 0)
				return (-1);
			ctx->stmt_end = ctx->outlen;
			st = S_NAME;
			break;
		default:
			WRONG("pp state");
		}
	}
	if (ctx->nframes > base) {
		f = &ctx->frames[ctx->nframes - 1];
		if (f->title != NULL)
			return (pperr(ctx, file, f->line,
			    "unclosed section '%.*s %.*s'", (int)f->namelen,
			    f->name, (int)(f->titlelen > 60 ? 60 : f->titlelen),
			    f->title));
		return (pperr(ctx, file, f->line, "unclosed section '%.*s'",
		    (int)f->namelen, f->name));
	}
	if (st != S_NAME)
		return (pperr(ctx, file, lastline, "unexpected end of file"));
	return (emit_to(ctx, &lx, len, false));
}

/*--------------------------------------------------------------------
 * libconfuse schema and validators
 */

static const char *
last_str(cfg_opt_t *opt)
{
	unsigned n = cfg_opt_size(opt);

	return (n > 0 ? cfg_opt_getnstr(opt, n - 1) : NULL);
}

/* "section.option", or "option" at the top level. */
static const char *
opt_path(cfg_t *sec, cfg_opt_t *opt, char *buf, size_t len)
{
	if (strcmp(cfg_name(sec), "root") == 0)
		(void)snprintf(buf, len, "%s", cfg_opt_name(opt));
	else
		(void)snprintf(buf, len, "%s.%s", cfg_name(sec),
		    cfg_opt_name(opt));
	return (buf);
}

static int
vcb_duration(cfg_t *sec, cfg_opt_t *opt)
{
	const char *s = last_str(opt), *err;
	char pb[64];
	uint64_t v;

	if (s == NULL || util_parse_duration(s, &v, &err) == 0)
		return (0);
	cfg_error(sec, "%s: %s", opt_path(sec, opt, pb, sizeof pb), err);
	return (-1);
}

static int
vcb_size(cfg_t *sec, cfg_opt_t *opt)
{
	const char *s = last_str(opt), *err;
	char pb[64];
	uint64_t v;

	if (s == NULL || util_parse_size(s, &v, &err) == 0)
		return (0);
	cfg_error(sec, "%s: %s", opt_path(sec, opt, pb, sizeof pb), err);
	return (-1);
}

/* Decimal integer in [min, max]; the whole string. */
static int
parse_count(const char *s, unsigned min, unsigned max, unsigned *out)
{
	unsigned long v = 0;

	if (*s == '\0')
		return (-1);
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return (-1);
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > max)
			return (-1);
	}
	if (v < min)
		return (-1);
	*out = (unsigned)v;
	return (0);
}

static int
vcb_count(cfg_t *sec, cfg_opt_t *opt, unsigned min, unsigned max)
{
	const char *s = last_str(opt);
	char pb[64];
	unsigned v;

	if (s == NULL || parse_count(s, min, max, &v) == 0)
		return (0);
	cfg_error(sec, "%s: expected a number from %u to %u",
	    opt_path(sec, opt, pb, sizeof pb), min, max);
	return (-1);
}

static int
vcb_count0(cfg_t *sec, cfg_opt_t *opt)
{
	return (vcb_count(sec, opt, 0, 1000000));
}

static int
vcb_count1(cfg_t *sec, cfg_opt_t *opt)
{
	return (vcb_count(sec, opt, 1, 10000000));
}

static int
vcb_workers(cfg_t *sec, cfg_opt_t *opt)
{
	const char *s = last_str(opt);
	unsigned v;

	if (s == NULL || strcmp(s, "auto") == 0 ||
	    parse_count(s, 1, MAX_WORKERS, &v) == 0)
		return (0);
	cfg_error(sec, "workers must be auto or a number from 1 to %u",
	    MAX_WORKERS);
	return (-1);
}

static int
vcb_addr(cfg_t *sec, cfg_opt_t *opt)
{
	const char *s = last_str(opt), *err;
	struct sockaddr_storage ss;
	socklen_t sl;
	char pb[64];

	if (s == NULL || util_parse_hostport(s, &ss, &sl, &err) == 0)
		return (0);
	cfg_error(sec, "%s: %s: '%s'", opt_path(sec, opt, pb, sizeof pb), err,
	    s);
	return (-1);
}

static int
vcb_nonempty(cfg_t *sec, cfg_opt_t *opt)
{
	const char *s = last_str(opt);
	char pb[64];

	if (s == NULL || *s != '\0')
		return (0);
	cfg_error(sec, "%s must not be empty",
	    opt_path(sec, opt, pb, sizeof pb));
	return (-1);
}

static int
parse_balance(const char *s)
{
	if (strcmp(s, "round_robin") == 0)
		return (BALANCE_ROUND_ROBIN);
	if (strcmp(s, "least_conn") == 0)
		return (BALANCE_LEAST_CONN);
	if (strcmp(s, "hash") == 0)
		return (BALANCE_HASH);
	return (-1);
}

static int
vcb_balance(cfg_t *sec, cfg_opt_t *opt)
{
	const char *s = last_str(opt);

	if (s == NULL || parse_balance(s) >= 0)
		return (0);
	cfg_error(sec, "unknown balance '%s' (use round_robin, least_conn "
	    "or hash)", s);
	return (-1);
}

static int
vcb_log_level(cfg_t *sec, cfg_opt_t *opt)
{
	const char *s = last_str(opt);

	if (s == NULL || log_level_parse(s) >= 0)
		return (0);
	cfg_error(sec, "unknown log_level '%s' (use error, warn, info or "
	    "debug)", s);
	return (-1);
}

static int
parse_backend(const char *s)
{
	if (strcmp(s, "memory") == 0)
		return (CACHE_BACKEND_MEMORY);
	if (strcmp(s, "redis") == 0)
		return (CACHE_BACKEND_REDIS);
	return (-1);
}

static int
vcb_backend(cfg_t *sec, cfg_opt_t *opt)
{
	const char *s = last_str(opt);

	if (s == NULL || parse_backend(s) >= 0)
		return (0);
	cfg_error(sec, "unknown cache backend '%s' (use memory or redis)", s);
	return (-1);
}

static int
vcb_redis(cfg_t *sec, cfg_opt_t *opt)
{
	const char *s = last_str(opt);

	if (s == NULL || strncmp(s, "redis://", 8) == 0 ||
	    strncmp(s, "unix:/", 6) == 0)
		return (0);
	cfg_error(sec, "cache.redis: expected a redis:// or unix:/path URL");
	return (-1);
}

static int
vcb_namespace(cfg_t *sec, cfg_opt_t *opt)
{
	const char *s = last_str(opt), *p;

	if (s == NULL)
		return (0);
	for (p = s; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			break;
	if (*s != '\0' && *p == '\0')
		return (0);
	cfg_error(sec, "cache.namespace: must be non-empty, without blanks");
	return (-1);
}

/* A plain host name, or "*.domain"; no port. */
static bool
host_ok(const char *s)
{
	const char *p = s;
	char prev = '.';

	if (p[0] == '*' && p[1] == '.')
		p += 2;
	if (*p == '\0')
		return (false);
	for (; *p != '\0'; p++) {
		if (*p == '.') {
			if (prev == '.')
				return (false);
		} else if (!((*p >= 'a' && *p <= 'z') ||
		    (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '_'))
			return (false);
		prev = *p;
	}
	return (prev != '.');
}

static int
vcb_host(cfg_t *sec, cfg_opt_t *opt)
{
	const char *s = last_str(opt);

	if (s == NULL || host_ok(s))
		return (0);
	cfg_error(sec, "route host '%s': expected a host name or "
	    "\"*.domain\" (no port)", s);
	return (-1);
}

static int
vcb_route_upstream(cfg_t *sec, cfg_opt_t *opt)
{
	cur->upline = (unsigned)sec->line;
	return (vcb_nonempty(sec, opt));
}

/* "__sec": the buffer line of this section's "{". */
static int
vcb_sec(cfg_t *sec, cfg_opt_t *opt)
{
	if (cfg_opt_size(opt) > 1) {
		cfg_error(sec, "duplicate section '%s'", cfg_name(sec));
		return (-1);
	}
	return (0);
}

static unsigned
sec_line(cfg_t *sec)
{
	if (sec == NULL || cfg_size(sec, SEC_KEY) == 0)
		return (0);
	return ((unsigned)cfg_getnint(sec, SEC_KEY, 0));
}

/* The most recently opened section of opt (the one that just closed). */
static cfg_t *
newest_sec(cfg_opt_t *opt)
{
	cfg_t *best = NULL, *s;
	unsigned i, n = cfg_opt_size(opt), l, bl = 0;

	for (i = 0; i < n; i++) {
		s = cfg_opt_getnsec(opt, i);
		l = sec_line(s);
		if (best == NULL || l > bl) {
			best = s;
			bl = l;
		}
	}
	return (best);
}

static int
vcb_upstream_sec(cfg_t *root, cfg_opt_t *opt)
{
	cfg_t *s = newest_sec(opt);

	AN(s);
	if (cfg_title(s) == NULL || *cfg_title(s) == '\0') {
		seterr_buf(cur, sec_line(s), "upstream name must not be empty");
		return (-1);
	}
	if (cfg_size(s, "server") == 0) {
		seterr_buf(cur, sec_line(s), "upstream '%s' has no server",
		    cfg_title(s));
		return (-1);
	}
	return (0);
}

static bool
has_blank(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return (true);
	return (false);
}

/* A route section closed: copy it out (see top). */
static int
vcb_route_sec(cfg_t *root, cfg_opt_t *opt)
{
	struct ctx *ctx = cur;
	struct route_tmp *rt, *o;
	cfg_t *s = newest_sec(opt), *c;
	const char *title, *host, *ttl, *err;
	unsigned i, line;
	char *p;

	AN(s);
	line = sec_line(s);
	title = cfg_title(s);
	if (title == NULL || title[0] != '/' || has_blank(title)) {
		seterr_buf(ctx, line, "route '%s': the title must be a path "
		    "prefix starting with '/' (no blanks)", title ? title : "");
		return (-1);
	}
	if (cfg_size(s, "upstream") == 0) {
		seterr_buf(ctx, line, "route '%s' has no upstream", title);
		return (-1);
	}
	host = cfg_size(s, "host") > 0 ? cfg_getstr(s, "host") : NULL;
	for (i = 0; i < ctx->nroutes; i++) {
		o = &ctx->routes[i];
		if (strcmp(o->r.prefix, title) != 0)
			continue;
		if (host == NULL && o->r.host == NULL) {
			seterr_buf(ctx, line, "duplicate route '%s' (no host)",
			    title);
			return (-1);
		}
		if (host != NULL && o->r.host != NULL &&
		    strcasecmp(host, o->r.host) == 0) {
			seterr_buf(ctx, line, "duplicate route '%s' for host "
			    "'%s'", title, o->r.host);
			return (-1);
		}
	}
	if (ctx->nroutes == ctx->routecap) {
		rt = xrealloc(ctx, ctx->routes, ctx->routecap * 2 + 16,
		    sizeof *rt);
		if (rt == NULL)
			return (-1);
		ctx->routes = rt;
		ctx->routecap = ctx->routecap * 2 + 16;
	}
	rt = &ctx->routes[ctx->nroutes++];
	memset(rt, 0, sizeof *rt);
	rt->seq = line;
	rt->r.line = (int)line;
	rt->r.prefix = xstrdup(ctx, title);
	rt->upname = xstrdup(ctx, cfg_getstr(s, "upstream"));
	rt->upline = ctx->upline;
	if (host != NULL) {
		rt->r.host = xstrdup(ctx, host);
		if (rt->r.host != NULL)
			for (p = rt->r.host; *p != '\0'; p++)
				if (*p >= 'A' && *p <= 'Z')
					*p = (char)(*p - 'A' + 'a');
	}
	rt->r.websocket = cfg_getbool(s, "websocket") == cfg_true;
	if (cfg_size(s, "cache") > 0) {
		c = cfg_getsec(s, "cache");
		rt->r.cache = true;
		if (cfg_size(c, "ttl") > 0) {
			ttl = cfg_getstr(c, "ttl");
			AZ(util_parse_duration(ttl, &rt->r.cache_ttl, &err));
			rt->ttl_set = true;
		}
	}
	return (ctx->oom ? -1 : 0);
}

static cfg_opt_t tls_opts[] = {
	CFG_STR_LIST("listen", 0, CFGF_NODEFAULT),
	CFG_STR_LIST("certificate", 0, CFGF_NODEFAULT),
	CFG_STR_LIST("key", 0, CFGF_NODEFAULT),
	CFG_BOOL("http2", cfg_true, CFGF_NONE),
	CFG_INT_LIST(SEC_KEY, 0, CFGF_NODEFAULT),
	CFG_END()
};

static cfg_opt_t timeouts_opts[] = {
	CFG_STR("client_header", "10s", CFGF_NONE),
	CFG_STR("client_idle", "60s", CFGF_NONE),
	CFG_STR("upstream_connect", "2s", CFGF_NONE),
	CFG_STR("upstream_read", "30s", CFGF_NONE),
	CFG_STR("websocket_idle", "300s", CFGF_NONE),
	CFG_INT_LIST(SEC_KEY, 0, CFGF_NODEFAULT),
	CFG_END()
};

static cfg_opt_t limits_opts[] = {
	CFG_STR("max_header_size", "16k", CFGF_NONE),
	CFG_STR("max_body_size", "16m", CFGF_NONE),
	CFG_STR("max_connections", "10000", CFGF_NONE),
	CFG_INT_LIST(SEC_KEY, 0, CFGF_NODEFAULT),
	CFG_END()
};

static cfg_opt_t cache_opts[] = {
	CFG_STR("backend", "memory", CFGF_NONE),
	CFG_STR("size", "256m", CFGF_NONE),
	CFG_STR("redis", "redis://127.0.0.1:6379/0", CFGF_NONE),
	CFG_STR("namespace", "stoa", CFGF_NONE),
	CFG_STR("ttl", "30s", CFGF_NONE),
	CFG_STR("max_object_size", "8m", CFGF_NONE),
	CFG_BOOL("lock", cfg_true, CFGF_NONE),
	CFG_STR("lock_timeout", "5s", CFGF_NONE),
	CFG_STR("redis_timeout", "250ms", CFGF_NONE),
	CFG_STR("stale_while_revalidate", "0s", CFGF_NONE),
	CFG_STR("stale_if_error", "0s", CFGF_NONE),
	CFG_INT_LIST(SEC_KEY, 0, CFGF_NODEFAULT),
	CFG_END()
};

static cfg_opt_t upstream_opts[] = {
	CFG_STR_LIST("server", 0, CFGF_NODEFAULT),
	CFG_STR("balance", "round_robin", CFGF_NONE),
	CFG_STR("keepalive", "32", CFGF_NONE),
	CFG_STR("max_fails", "3", CFGF_NONE),
	CFG_STR("fail_timeout", "10s", CFGF_NONE),
	CFG_INT_LIST(SEC_KEY, 0, CFGF_NODEFAULT),
	CFG_END()
};

static cfg_opt_t route_cache_opts[] = {
	CFG_STR("ttl", 0, CFGF_NODEFAULT),
	CFG_INT_LIST(SEC_KEY, 0, CFGF_NODEFAULT),
	CFG_END()
};

static cfg_opt_t route_opts[] = {
	CFG_STR("host", 0, CFGF_NODEFAULT),
	CFG_STR("upstream", 0, CFGF_NODEFAULT),
	CFG_BOOL("websocket", cfg_false, CFGF_NONE),
	CFG_SEC("cache", route_cache_opts, CFGF_NODEFAULT),
	CFG_INT_LIST(SEC_KEY, 0, CFGF_NODEFAULT),
	CFG_END()
};

/* CFG_STR_LIST takes a non-const default: keep it in writable storage. */
static char listen_default[] = "{\"127.0.0.1:8080\"}";

static cfg_opt_t root_opts[] = {
	CFG_STR("workers", "auto", CFGF_NONE),
	CFG_STR_LIST("listen", listen_default, CFGF_NONE),
	CFG_STR("admin", 0, CFGF_NODEFAULT),
	CFG_STR("pid_file", "/run/stoa/stoa.pid", CFGF_NONE),
	CFG_STR("error_log", "stderr", CFGF_NONE),
	CFG_STR("access_log", "stderr", CFGF_NONE),
	CFG_STR("log_level", "info", CFGF_NONE),
	CFG_STR("user", 0, CFGF_NODEFAULT),
	CFG_STR("shutdown_timeout", "30s", CFGF_NONE),
	CFG_SEC("tls", tls_opts, CFGF_NODEFAULT),
	CFG_SEC("timeouts", timeouts_opts, CFGF_NONE),
	CFG_SEC("limits", limits_opts, CFGF_NONE),
	CFG_SEC("cache", cache_opts, CFGF_NONE),
	CFG_SEC("upstream", upstream_opts,
	    CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_SEC("route", route_opts, CFGF_MULTI | CFGF_TITLE),
	CFG_END()
};

static const struct {
	const char		*path;
	cfg_validate_callback_t	cb;
} validators[] = {
	{ "workers", vcb_workers },
	{ "listen", vcb_addr },
	{ "admin", vcb_addr },
	{ "pid_file", vcb_nonempty },
	{ "error_log", vcb_nonempty },
	{ "access_log", vcb_nonempty },
	{ "log_level", vcb_log_level },
	{ "user", vcb_nonempty },
	{ "shutdown_timeout", vcb_duration },
	{ "tls|listen", vcb_addr },
	{ "tls|certificate", vcb_nonempty },
	{ "tls|key", vcb_nonempty },
	{ "tls|" SEC_KEY, vcb_sec },
	{ "timeouts|client_header", vcb_duration },
	{ "timeouts|client_idle", vcb_duration },
	{ "timeouts|upstream_connect", vcb_duration },
	{ "timeouts|upstream_read", vcb_duration },
	{ "timeouts|websocket_idle", vcb_duration },
	{ "timeouts|" SEC_KEY, vcb_sec },
	{ "limits|max_header_size", vcb_size },
	{ "limits|max_body_size", vcb_size },
	{ "limits|max_connections", vcb_count1 },
	{ "limits|" SEC_KEY, vcb_sec },
	{ "cache|backend", vcb_backend },
	{ "cache|size", vcb_size },
	{ "cache|redis", vcb_redis },
	{ "cache|namespace", vcb_namespace },
	{ "cache|ttl", vcb_duration },
	{ "cache|max_object_size", vcb_size },
	{ "cache|lock_timeout", vcb_duration },
	{ "cache|redis_timeout", vcb_duration },
	{ "cache|stale_while_revalidate", vcb_duration },
	{ "cache|stale_if_error", vcb_duration },
	{ "cache|" SEC_KEY, vcb_sec },
	{ "upstream", vcb_upstream_sec },
	{ "upstream|server", vcb_addr },
	{ "upstream|balance", vcb_balance },
	{ "upstream|keepalive", vcb_count0 },
	{ "upstream|max_fails", vcb_count0 },
	{ "upstream|fail_timeout", vcb_duration },
	{ "route", vcb_route_sec },
	{ "route|host", vcb_host },
	{ "route|upstream", vcb_route_upstream },
	{ "route|cache|ttl", vcb_duration },
	{ "route|cache|" SEC_KEY, vcb_sec },
};

/*--------------------------------------------------------------------
 * Building struct config
 */

static uint64_t
get_duration(cfg_t *sec, const char *name)
{
	const char *err;
	uint64_t v;

	AZ(util_parse_duration(cfg_getstr(sec, name), &v, &err));
	return (v);
}

static uint64_t
get_size(cfg_t *sec, const char *name)
{
	const char *err;
	uint64_t v;

	AZ(util_parse_size(cfg_getstr(sec, name), &v, &err));
	return (v);
}

static unsigned
get_count(cfg_t *sec, const char *name)
{
	unsigned v;

	AZ(parse_count(cfg_getstr(sec, name), 0, UINT_MAX / 10, &v));
	return (v);
}

static char *
dup_opt(struct ctx *ctx, cfg_t *sec, const char *name)
{
	if (cfg_size(sec, name) == 0)
		return (NULL);
	return (xstrdup(ctx, cfg_getstr(sec, name)));
}

/* Addresses of list option name (validated while parsing). */
static int
get_addrs(struct ctx *ctx, cfg_t *sec, const char *name,
    struct config_addr **out, unsigned *nout)
{
	unsigned i, n = cfg_size(sec, name);
	struct config_addr *a;
	const char *err;

	*nout = 0;
	*out = NULL;
	if (n == 0)
		return (0);
	a = calloc(n, sizeof *a);
	if (a == NULL) {
		ctx->oom = true;
		return (-1);
	}
	*out = a;
	*nout = n;
	for (i = 0; i < n; i++) {
		const char *s = cfg_getnstr(sec, name, i);

		AZ(util_parse_hostport(s, &a[i].ss, &a[i].sslen, &err));
		a[i].text = xstrdup(ctx, s);
		if (a[i].text == NULL)
			return (-1);
	}
	return (0);
}

/*
 * Copies of the strings of list option name.  *out is an array of *nout
 * strings (NULL when the option is unset); on ENOMEM the array holds
 * what was copied so far, counted in *nout, for the caller to free.
 */
static int
get_strs(struct ctx *ctx, cfg_t *sec, const char *name, char ***out,
    unsigned *nout)
{
	unsigned i, n = cfg_size(sec, name);
	char **a;

	*nout = 0;
	*out = NULL;
	if (n == 0)
		return (0);
	a = calloc(n, sizeof *a);
	if (a == NULL) {
		ctx->oom = true;
		return (-1);
	}
	*out = a;
	for (i = 0; i < n; i++) {
		a[i] = xstrdup(ctx, cfg_getnstr(sec, name, i));
		if (a[i] == NULL)
			return (-1);
		(*nout)++;
	}
	return (0);
}

static void
free_strs(char **a, unsigned n)
{
	unsigned i;

	if (a == NULL)
		return;
	for (i = 0; i < n; i++)
		free(a[i]);
	free(a);
}

static unsigned
nproc(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return (1);
	if (n > MAX_WORKERS)
		return (MAX_WORKERS);
	return ((unsigned)n);
}

static int
build(struct ctx *ctx, cfg_t *cfg, struct config *c)
{
	const char *s, *err;
	cfg_t *sec, *us;
	char **keys;
	unsigned i, n;
	int idx;

	s = cfg_getstr(cfg, "workers");
	if (strcmp(s, "auto") == 0)
		c->workers = nproc();
	else
		AZ(parse_count(s, 1, MAX_WORKERS, &c->workers));
	if (get_addrs(ctx, cfg, "listen", &c->listen, &c->nlisten) != 0)
		return (-1);
	if (c->nlisten == 0) {
		/* Only when "listen" was never set: empty lists are caught
		 * by the preprocessor. */
		seterr_file(ctx, 0, "listen must name at least one address");
		return (-1);
	}
	if (cfg_size(cfg, "admin") > 0) {
		s = cfg_getstr(cfg, "admin");
		AZ(util_parse_hostport(s, &c->admin.ss, &c->admin.sslen, &err));
		c->admin.text = xstrdup(ctx, s);
		c->has_admin = true;
	}
	c->pid_file = dup_opt(ctx, cfg, "pid_file");
	c->error_log = dup_opt(ctx, cfg, "error_log");
	s = cfg_getstr(cfg, "access_log");
	c->access_log = strcmp(s, "off") == 0 ? NULL : xstrdup(ctx, s);
	c->log_level = log_level_parse(cfg_getstr(cfg, "log_level"));
	assert_always(c->log_level >= 0);
	c->user = dup_opt(ctx, cfg, "user");
	c->shutdown_timeout = get_duration(cfg, "shutdown_timeout");

	if (cfg_size(cfg, "tls") > 0) {
		sec = cfg_getsec(cfg, "tls");
		c->tls.enabled = true;
		if (get_addrs(ctx, sec, "listen", &c->tls.listen,
		    &c->tls.nlisten) != 0)
			return (-1);
		if (get_strs(ctx, sec, "certificate", &c->tls.certificates,
		    &c->tls.ncerts) != 0)
			return (-1);
		/* keys[] is owned by c only when it is as long as
		 * certificates[]: config_free() counts it with ncerts. */
		if (get_strs(ctx, sec, "key", &keys, &n) != 0) {
			free_strs(keys, n);
			return (-1);
		}
		c->tls.http2 = cfg_getbool(sec, "http2") == cfg_true;
		if (c->tls.nlisten == 0 || c->tls.ncerts == 0 || n == 0) {
			free_strs(keys, n);
			seterr_buf(ctx, sec_line(sec), "tls: %s is required",
			    c->tls.nlisten == 0 ? "listen" :
			    c->tls.ncerts == 0 ? "certificate" : "key");
			return (-1);
		}
		if (n != c->tls.ncerts) {
			free_strs(keys, n);
			seterr_buf(ctx, sec_line(sec), "tls: certificate and "
			    "key lists differ in length");
			return (-1);
		}
		c->tls.keys = keys;
		/* Aliases of the first elements, not freed on their own. */
		c->tls.certificate = c->tls.certificates[0];
		c->tls.key = c->tls.keys[0];
	} else
		c->tls.http2 = true;

	sec = cfg_getsec(cfg, "timeouts");
	c->timeouts.client_header = get_duration(sec, "client_header");
	c->timeouts.client_idle = get_duration(sec, "client_idle");
	c->timeouts.upstream_connect = get_duration(sec, "upstream_connect");
	c->timeouts.upstream_read = get_duration(sec, "upstream_read");
	c->timeouts.websocket_idle = get_duration(sec, "websocket_idle");

	sec = cfg_getsec(cfg, "limits");
	c->limits.max_header_size = get_size(sec, "max_header_size");
	c->limits.max_body_size = get_size(sec, "max_body_size");
	c->limits.max_connections = get_count(sec, "max_connections");

	sec = cfg_getsec(cfg, "cache");
	c->cache.backend = (enum config_cache_backend)parse_backend(
	    cfg_getstr(sec, "backend"));
	c->cache.size = get_size(sec, "size");
	c->cache.redis = dup_opt(ctx, sec, "redis");
	c->cache.namespace = dup_opt(ctx, sec, "namespace");
	c->cache.ttl = get_duration(sec, "ttl");
	c->cache.max_object_size = get_size(sec, "max_object_size");
	c->cache.lock = cfg_getbool(sec, "lock") == cfg_true;
	c->cache.lock_timeout = get_duration(sec, "lock_timeout");
	c->cache.redis_timeout = get_duration(sec, "redis_timeout");
	c->cache.stale_while_revalidate =
	    get_duration(sec, "stale_while_revalidate");
	c->cache.stale_if_error = get_duration(sec, "stale_if_error");

	n = cfg_size(cfg, "upstream");
	if (n > 0) {
		c->upstreams = calloc(n, sizeof *c->upstreams);
		if (c->upstreams == NULL) {
			ctx->oom = true;
			return (-1);
		}
	}
	for (i = 0; i < n; i++) {
		struct config_upstream *u = &c->upstreams[i];

		c->nupstreams++;
		us = cfg_getnsec(cfg, "upstream", i);
		u->name = xstrdup(ctx, cfg_title(us));
		if (get_addrs(ctx, us, "server", &u->servers,
		    &u->nservers) != 0)
			return (-1);
		u->balance = (enum config_balance)parse_balance(
		    cfg_getstr(us, "balance"));
		u->keepalive = get_count(us, "keepalive");
		u->max_fails = get_count(us, "max_fails");
		u->fail_timeout = get_duration(us, "fail_timeout");
		u->line = (int)sec_line(us);
	}
	if (ctx->oom)
		return (-1);

	if (ctx->nroutes > 0) {
		c->routes = calloc(ctx->nroutes, sizeof *c->routes);
		if (c->routes == NULL) {
			ctx->oom = true;
			return (-1);
		}
	}
	for (i = 0; i < ctx->nroutes; i++) {
		struct route_tmp *rt = &ctx->routes[i];

		idx = config_upstream_find(c, rt->upname);
		if (idx < 0) {
			seterr_buf(ctx, rt->upline, "route '%s': unknown "
			    "upstream '%s'", rt->r.prefix, rt->upname);
			return (-1);
		}
		rt->r.upstream = (unsigned)idx;
		if (rt->r.cache && !rt->ttl_set)
			rt->r.cache_ttl = c->cache.ttl;
		/* Lines in struct config are lines of their own file. */
		rt->r.line = (int)ctx->map[rt->seq].line;
		c->routes[i] = rt->r;
		memset(&rt->r, 0, sizeof rt->r);	/* moved */
		c->nroutes++;
	}
	for (i = 0; i < c->nupstreams; i++)
		if (c->upstreams[i].line > 0)
			c->upstreams[i].line =
			    (int)ctx->map[c->upstreams[i].line].line;
	return (ctx->oom ? -1 : 0);
}

/*--------------------------------------------------------------------
 * Public
 */

static void
ctx_free(struct ctx *ctx)
{
	unsigned i;

	for (i = 0; i < ctx->nfiles; i++)
		free(ctx->files[i]);
	free(ctx->files);
	free(ctx->out);
	free(ctx->map);
	free(ctx->frames);
	for (i = 0; i < ctx->nroutes; i++) {
		free(ctx->routes[i].r.prefix);
		free(ctx->routes[i].r.host);
		free(ctx->routes[i].upname);
	}
	free(ctx->routes);
}

static void
free_addrs(struct config_addr *a, unsigned n)
{
	unsigned i;

	if (a == NULL)
		return;
	for (i = 0; i < n; i++)
		free(a[i].text);
	free(a);
}

void
config_free(struct config *c)
{
	unsigned i;

	if (c == NULL)
		return;
	CHECK_OBJ(c, CONFIG_MAGIC);
	free(c->file);
	free_addrs(c->listen, c->nlisten);
	free(c->admin.text);
	free(c->pid_file);
	free(c->error_log);
	free(c->access_log);
	free(c->user);
	free_addrs(c->tls.listen, c->tls.nlisten);
	/* tls.certificate and tls.key alias the first elements. */
	free_strs(c->tls.certificates, c->tls.ncerts);
	free_strs(c->tls.keys, c->tls.ncerts);
	free(c->cache.redis);
	free(c->cache.namespace);
	for (i = 0; i < c->nupstreams; i++) {
		free(c->upstreams[i].name);
		free_addrs(c->upstreams[i].servers, c->upstreams[i].nservers);
	}
	free(c->upstreams);
	for (i = 0; i < c->nroutes; i++) {
		free(c->routes[i].prefix);
		free(c->routes[i].host);
	}
	free(c->routes);
	c->magic = 0;
	free(c);
}

int
config_upstream_find(const struct config *c, const char *name)
{
	unsigned i;

	CHECK_OBJ_NOTNULL(c, CONFIG_MAGIC);
	AN(name);
	for (i = 0; i < c->nupstreams; i++)
		if (strcmp(c->upstreams[i].name, name) == 0)
			return ((int)i);
	return (-1);
}

/* Preprocess FILE into ctx->out; 0, or -1 with the error in errbuf. */
static int
preprocess(struct ctx *ctx, const char *file)
{
	struct stat st;
	char *buf;
	size_t len;
	int rc;

	if (add_file(ctx, xstrdup(ctx, file)) != 0 || ctx->files[0] == NULL)
		return (-1);
	if (read_file(file, &buf, &len, &st) != 0) {
		seterr_file(ctx, 0, "cannot open: %s", strerror(errno));
		return (-1);
	}
	ctx->incl[0].dev = st.st_dev;
	ctx->incl[0].ino = st.st_ino;
	ctx->nincl = 1;
	if (map_push(ctx, 0, 0) != 0 || map_push(ctx, 0, 1) != 0 ||
	    out_reserve(ctx, 0) != 0) {
		free(buf);
		return (-1);
	}
	rc = pp_file(ctx, 0, buf, len);
	free(buf);
	if (rc != 0 && ctx->oom)
		return (-1);
	if (rc != 0 && !ctx->has_pperr) {
		/* Only out_reserve() fails without saying why. */
		(void)snprintf(ctx->pperr, sizeof ctx->pperr,
		    "%s: configuration too large (over %u bytes with includes)",
		    file, MAX_TOTAL_SIZE);
		ctx->has_pperr = true;
	}
	if (rc != 0) {
		/*
		 * Parse what came before, up to a key libconfuse rejects;
		 * without it libconfuse would close the open sections at
		 * end of input and run their checks.
		 */
		ctx->outlen = ctx->stmt_end;
		if (emit_str(ctx, " " STOP_KEY " ") != 0) {
			ctx->oom = true;
			return (-1);
		}
	}
	ctx->out[ctx->outlen] = '\0';
	return (0);
}

int
config_load(const char *file, struct config **out, char *errbuf,
    size_t errlen)
{
	struct ctx ctx;
	struct config *c = NULL;
	cfg_t *cfg = NULL;
	const char *sections[] = { "timeouts", "limits", "cache" };
	unsigned i;
	int rc = -1;

	AN(file);
	AN(out);
	AN(errbuf);
	assert_always(errlen > 0);
	AZ(cur);
	memset(&ctx, 0, sizeof ctx);
	ctx.errbuf = errbuf;
	ctx.errlen = errlen;
	errbuf[0] = '\0';
	cur = &ctx;

	if (preprocess(&ctx, file) != 0)
		goto done;

	cfg = cfg_init(root_opts, CFGF_NONE);
	if (cfg == NULL) {
		ctx.oom = true;
		goto done;
	}
	(void)cfg_set_error_function(cfg, confuse_err);
	/*
	 * The default sections were made by cfg_init(), before the error
	 * function was set.  libconfuse 3.3 copies it to a section when it
	 * parses one, but nothing else would keep their errors off stderr.
	 */
	for (i = 0; i < ARRAY_SIZE(sections); i++)
		(void)cfg_set_error_function(cfg_getsec(cfg, sections[i]),
		    confuse_err);
	for (i = 0; i < ARRAY_SIZE(validators); i++)
		(void)cfg_set_validate_func(cfg, validators[i].path,
		    validators[i].cb);

	if (cfg_parse_buf(cfg, ctx.out) != CFG_SUCCESS || ctx.failed ||
	    ctx.oom || ctx.has_pperr) {
		if (ctx.failed || ctx.oom)
			goto done;
		if (!ctx.has_pperr) {
			seterr_file(&ctx, 0, "syntax error");
			goto done;
		}
		(void)snprintf(errbuf, errlen, "%s", ctx.pperr);
		ctx.failed = true;
		goto done;
	}

	c = calloc(1, sizeof *c);
	if (c == NULL) {
		ctx.oom = true;
		goto done;
	}
	c->magic = CONFIG_MAGIC;
	c->file = xstrdup(&ctx, file);
	if (build(&ctx, cfg, c) != 0 || ctx.oom)
		goto done;
	*out = c;
	c = NULL;
	rc = 0;
done:
	if (rc != 0 && !ctx.failed)
		(void)snprintf(errbuf, errlen, "%s: %s", file,
		    ctx.oom ? "out of memory" : "cannot load");
	if (rc != 0) {
		/* one line, whatever a quoted token from the file held */
		for (char *p = errbuf; *p != '\0'; p++)
			if (*p == '\n' || *p == '\r' || *p == '\t')
				*p = ' ';
	}
	if (c != NULL)
		config_free(c);
	if (cfg != NULL)
		(void)cfg_free(cfg);
	ctx_free(&ctx);
	cur = NULL;
	return (rc);
}
