#!/bin/sh
# run.sh [TARGET...] -- build the libFuzzer targets with clang and run each
# for a bounded time (make fuzz; CI).
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 60)
#   CLANG           compiler (default clang)
#   FUZZ_ARTIFACTS  where crashing inputs are copied (default ./fuzz-artifacts)
#   FUZZ_JOBS       passed to libFuzzer as -jobs/-workers when > 1
#
# Every target first replays its seed corpus (tests/fuzz/corpus/NAME, NAME
# being the target without "fuzz_"), which holds the regression inputs of
# earlier findings, then fuzzes.  The corpus is copied to a scratch
# directory first: nothing is written into the source tree.  Exit status:
# 0 when every target ran clean, 1 otherwise (the failing targets and their
# artifacts are listed).

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
src="$top/src"
CLANG=${CLANG:-clang}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_ARTIFACTS=${FUZZ_ARTIFACTS:-$PWD/fuzz-artifacts}
CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -D_GNU_SOURCE -I$src"

# target: sources and libraries besides the target's own file
deps() {
	case $1 in
	fuzz_http1_request|fuzz_http1_response|fuzz_chunked)
		echo "$src/http1.c $src/http.c $src/util.c" ;;
	fuzz_config)
		echo "$src/config.c $src/util.c $src/log.c -lconfuse" ;;
	fuzz_cache_entry)
		echo "$src/cache/redis.c $src/stats.c $src/util.c $src/log.c -lhiredis -levent -lxxhash -lpthread" ;;
	*)
		return 1 ;;
	esac
}

if [ $# -gt 0 ]; then
	targets=$*
else
	targets=
	for f in "$here"/fuzz_*.c; do
		[ -e "$f" ] || continue
		targets="$targets $(basename "$f" .c)"
	done
fi

command -v "$CLANG" >/dev/null 2>&1 || {
	echo "run.sh: $CLANG not found (set CLANG)" >&2
	exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stoa-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

failed=
for t in $targets; do
	name=${t#fuzz_}
	d=$(deps "$t") || {
		echo "run.sh: no build rule for $t" >&2
		failed="$failed $t"
		continue
	}
	echo "== $t: build"
	# shellcheck disable=SC2086
	if ! "$CLANG" $CFLAGS -o "$tmp/$t" "$here/$t.c" $d; then
		echo "== $t: BUILD FAILED"
		failed="$failed $t"
		continue
	fi
	mkdir -p "$tmp/corpus-$name" "$tmp/art-$name"
	if [ -d "$here/corpus/$name" ]; then
		cp "$here/corpus/$name"/* "$tmp/corpus-$name"/ 2>/dev/null
	fi
	jobs=
	if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
		jobs="-jobs=$FUZZ_JOBS -workers=$FUZZ_JOBS"
	fi
	echo "== $t: ${FUZZ_SECONDS}s"
	# stdin from /dev/null: a config include of /dev/stdin must not block
	# shellcheck disable=SC2086
	(cd "$tmp" && "$tmp/$t" -max_total_time="$FUZZ_SECONDS" -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix="$tmp/art-$name/" $jobs \
	    "$tmp/corpus-$name" </dev/null >"$tmp/$t.log" 2>&1)
	rc=$?
	tail -n 3 "$tmp/$t.log"
	if [ $rc -ne 0 ] || [ -n "$(ls "$tmp/art-$name")" ]; then
		echo "== $t: FAILED (exit $rc)"
		grep -E "ERROR|SUMMARY|#[0-9]+ 0x" "$tmp/$t.log" | head -n 30
		mkdir -p "$FUZZ_ARTIFACTS/$name"
		cp "$tmp/art-$name"/* "$FUZZ_ARTIFACTS/$name"/ 2>/dev/null
		cp "$tmp/$t.log" "$FUZZ_ARTIFACTS/$name"/
		echo "== $t: artifacts in $FUZZ_ARTIFACTS/$name"
		failed="$failed $t"
	else
		echo "== $t: ok"
	fi
done

if [ -n "$failed" ]; then
	echo "fuzz: FAILED:$failed"
	exit 1
fi
echo "fuzz: all targets clean"
exit 0
