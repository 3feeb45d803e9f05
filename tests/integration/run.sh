#!/bin/sh
# run.sh [PYTEST ARGS] -- run the stoa integration suite (called by make check).
# Environment: STOA_BIN (stoa binary), STOA_SRCDIR (source tree), PYTHON3
# (interpreter with pytest, aiohttp, tornado, requests; default
# /usr/bin/python3), STOA_SKIP_HUGE=1 skips the 1 GB transfers.
# Runs from a scratch directory so nothing is written into the source tree
# (read-only under make distcheck).  Exit status is pytest's.

here=$(cd "$(dirname "$0")" && pwd)
STOA_SRCDIR=${STOA_SRCDIR:-$(cd "$here/../.." && pwd)}
STOA_BIN=${STOA_BIN:-$STOA_SRCDIR/src/stoa}
export STOA_SRCDIR STOA_BIN
# Under AddressSanitizer, freed memory sits in a 256 MB quarantine that
# shows up as RSS; keep it small so the flat-memory tests measure stoa.
export ASAN_OPTIONS="quarantine_size_mb=8:${ASAN_OPTIONS:-}"
# No __pycache__ in the (possibly read-only) source tree.
export PYTHONDONTWRITEBYTECODE=1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stoa-pytest.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
cd "$tmp" || exit 1

"${PYTHON3:-/usr/bin/python3}" -m pytest -q -p no:cacheprovider \
    --rootdir="$STOA_SRCDIR/tests/integration" \
    "$STOA_SRCDIR/tests/integration" "$@"
exit $?
