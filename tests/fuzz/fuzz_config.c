/*
 * fuzz_config.c -- libFuzzer target for config_load.
 *
 * The input is written to a file in a private temporary directory and
 * loaded.  The contract checked besides crashes: a load either succeeds
 * with a generation that passes the documented invariants, or fails with
 * exactly one non-empty line in errbuf.  Relative include()s resolve in
 * the temporary directory, which holds nothing but the input itself (an
 * include of it is a cycle).  Run it with stdin from /dev/null: an include
 * of /dev/stdin would otherwise wait for input.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc \
 *     tests/fuzz/fuzz_config.c src/config.c src/util.c src/log.c -lconfuse
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[4096];

static void
setup(void)
{
	char tmpl[4096];
	const char *t = getenv("TMPDIR");

	snprintf(tmpl, sizeof tmpl, "%s/stoa-fuzz-config.XXXXXX",
	    t != NULL && *t != '\0' ? t : "/tmp");
	CHECK(mkdtemp(tmpl) != NULL);
	snprintf(path, sizeof path, "%s/fuzz.conf", tmpl);
}

static void
check_cfg(const struct config *cfg)
{
	unsigned i;

	CHECK(cfg->magic == CONFIG_MAGIC);
	CHECK(cfg->workers >= 1);
	CHECK(cfg->nlisten >= 1 && cfg->listen != NULL);
	for (i = 0; i < cfg->nlisten; i++)
		CHECK(cfg->listen[i].sslen > 0 &&
		    cfg->listen[i].sslen <= sizeof cfg->listen[i].ss);
	for (i = 0; i < cfg->nupstreams; i++) {
		CHECK(cfg->upstreams[i].name != NULL);
		CHECK(cfg->upstreams[i].nservers >= 1);
		CHECK(config_upstream_find(cfg, cfg->upstreams[i].name) >= 0);
	}
	for (i = 0; i < cfg->nroutes; i++) {
		CHECK(cfg->routes[i].prefix != NULL &&
		    cfg->routes[i].prefix[0] == '/');
		CHECK(cfg->routes[i].upstream < cfg->nupstreams);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = NULL;
	char err[1024];
	int fd;

	if (path[0] == '\0')
		setup();
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	CHECK(size == 0 || write(fd, data, size) == (ssize_t)size);
	CHECK(close(fd) == 0);

	err[0] = '\0';
	if (config_load(path, &cfg, err, sizeof err) == 0) {
		CHECK(cfg != NULL);
		check_cfg(cfg);
		config_free(cfg);
	} else {
		CHECK(cfg == NULL);
		CHECK(err[0] != '\0');
		CHECK(strchr(err, '\n') == NULL);
	}
	return (0);
}
