#!/bin/sh
# check_unit.sh [TEMPLATE [SOCKET]] -- substitute the placeholders of the
# systemd service template the way the Makefile does, point them at a
# scratch tree holding a dummy stoa executable, and run `systemd-analyze
# verify` on the result together with the socket unit (systemd/stoa.socket,
# which activates stoa.service).  Any diagnostic fails the check.
# Exit: 0 ok, 1 failure, 77 skipped (no systemd-analyze).

here=$(cd "$(dirname "$0")" && pwd)
srcdir=${STOA_SRCDIR:-$here/../..}
template=${1:-$srcdir/systemd/stoa.service.in}
socket=${2:-$srcdir/systemd/stoa.socket}

if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "check_unit: systemd-analyze not found, skipping"
	exit 77
fi
for f in "$template" "$socket"; do
	if [ ! -r "$f" ]; then
		echo "check_unit: cannot read $f" >&2
		exit 1
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stoa-unit.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

mkdir -p "$tmp/sbin" "$tmp/etc/stoa" "$tmp/unit" || exit 1
printf '#!/bin/sh\nexit 0\n' >"$tmp/sbin/stoa" && chmod 755 "$tmp/sbin/stoa" || exit 1
: >"$tmp/etc/stoa/stoa.conf"
sed -e "s|@sbindir[@]|$tmp/sbin|g" -e "s|@sysconfdir[@]|$tmp/etc|g" \
    "$template" >"$tmp/unit/stoa.service" || exit 1

cp "$socket" "$tmp/unit/stoa.socket" || exit 1

if grep -n '@[a-z_]*@' "$tmp/unit/stoa.service"; then
	echo "check_unit: unsubstituted placeholder left in $template" >&2
	exit 1
fi

# --man=no: the pages named in Documentation= are not installed yet.
out=$(cd "$tmp/unit" && systemd-analyze verify --man=no \
    "$tmp/unit/stoa.service" "$tmp/unit/stoa.socket" 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then
	printf '%s\n' "$out" >&2
	echo "check_unit: systemd-analyze verify failed (status $rc) for $template and $socket" >&2
	exit 1
fi
echo "check_unit: $template and $socket ok"
exit 0
