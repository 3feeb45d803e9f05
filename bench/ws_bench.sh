#!/bin/bash
# ws_bench.sh -- WebSocket passthrough benchmark: stoa against a direct
# connection to the origin, nginx and HAProxy.  Not a test; see README.md.
#
# Environment (all optional):
#   STOA_BIN      stoa binary (default: src/stoa of this tree)
#   NGINX_BIN     default /usr/sbin/nginx (installed with apt-get if absent)
#   HAPROXY_BIN   default /usr/sbin/haproxy (installed with apt-get if absent)
#   CONNS=1000 CONC=100 MSGS=100 SIZE=128   the seed workload
#   RUNS=3        interleaved runs per target; the best one is reported
#   IDLE=5000     tunnels held open for the RSS measurement (0: skip)
#   PROXY_CPU=0 CLIENT_CPU=1                CPUs for taskset
#   TARGETS="direct stoa nginx haproxy"
#   NO_INSTALL=1  do not apt-get missing peers (they are skipped instead)
#   KEEP=1        keep the scratch directory (configs, logs)
#
# Besides the table it prints "RESULT <scenario> <system> <metric> <value>"
# lines for bench/run: ws_echo (rate in messages/s, p99_ms) and
# idle_tunnel (kb per tunnel).

set -u
. "$(dirname "$0")/lib.sh"

case ${1:-} in
-h|--help) usage; exit 0 ;;
?*) die "unknown argument: $1" ;;
esac

CONNS=${CONNS:-1000}
CONC=${CONC:-100}
MSGS=${MSGS:-100}
SIZE=${SIZE:-128}
RUNS=${RUNS:-3}
IDLE=${IDLE:-5000}
TARGETS=${TARGETS:-direct stoa nginx haproxy}

case " $TARGETS " in *" nginx "*) install_missing "$NGINX_BIN:nginx-light" ;; esac
case " $TARGETS " in *" haproxy "*) install_missing "$HAPROXY_BIN:haproxy" ;; esac

bench_init
[ "$(ulimit -n)" -ge $((3 * IDLE + 1000)) ] ||
    note "warning: ulimit -n $(ulimit -n) is low for IDLE=$IDLE"
NOFILE=$(ulimit -n)
MAXCONN=$(( (NOFILE - 100) / 2 ))

rss_kb() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null
}

# Children of a master (its workers), space separated.
kids() {
	cat "/proc/$1/task/$1/children" 2>/dev/null
}

sum_rss() {
	local t=0 p v
	for p in "$@"; do
		v=$(rss_kb "$p")
		t=$((t + ${v:-0}))
	done
	echo $t
}

# ------------------------------------------------------------------- build
command -v cc >/dev/null || die "no cc"
cc -std=c11 -O2 -Wall -Wextra -D_GNU_SOURCE -o "$tmp/ws_echo" \
    "$here/ws_echo.c" -levent -lcrypto || die "building ws_echo failed"
cc -std=c11 -O2 -Wall -Wextra -D_GNU_SOURCE -o "$tmp/ws_client" \
    "$here/ws_client.c" -levent || die "building ws_client failed"

# ------------------------------------------------------------------ origin
declare -A PORT MAINPID
free_port "PORT[direct]"
spawn "$CLIENT_CPU" "$tmp/ws_echo.out" "$tmp/ws_echo" -p "${PORT[direct]}"
wait_port "${PORT[direct]}" || die "ws_echo did not start"

# ------------------------------------------------------------------ proxies
start_stoa() {
	stoa_conf "$tmp/stoa" "${PORT[stoa]}" <<EOF
shutdown_timeout = 1s
timeouts { websocket_idle = 300s client_idle = 300s }
limits { max_connections = $MAXCONN }
upstream echo { server = {"127.0.0.1:${PORT[direct]}"} keepalive = 0 }
route / { upstream = echo websocket = true }
EOF
	launch_stoa "$tmp/stoa"
}

start_nginx() {
	nginx_conf "$tmp/nginx" $((NOFILE - 100)) <<EOF
	upstream echo { server 127.0.0.1:${PORT[direct]}; }
	map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
	server {
		listen 127.0.0.1:${PORT[nginx]};
		location / {
			proxy_pass http://echo;
			proxy_http_version 1.1;
			proxy_set_header Upgrade \$http_upgrade;
			proxy_set_header Connection \$connection_upgrade;
			proxy_read_timeout 300s;
			proxy_send_timeout 300s;
		}
	}
EOF
	launch_nginx "$tmp/nginx"
}

start_haproxy() {
	haproxy_conf "$tmp/haproxy" <<EOF
frontend fe
	bind 127.0.0.1:${PORT[haproxy]}
	default_backend be

backend be
	server echo 127.0.0.1:${PORT[direct]}
EOF
	launch_haproxy "$tmp/haproxy"
}

# ---------------------------------------------------------------- workload
# load PORT: one run of the seed workload; prints ws_client's
# "msgs=... msgs_per_s=..." line, or "FAILED ...".
load() {
	local out
	out=$(taskset -c "$CLIENT_CPU" timeout 300 "$tmp/ws_client" \
	    -p "$1" -n "$CONNS" -c "$CONC" -m "$MSGS" -s "$SIZE" 2>&1) ||
	    { echo "FAILED $out"; return; }
	echo "$out"
}

# warm_up PORT: a short load, not recorded.
warm_up() {
	taskset -c "$CLIENT_CPU" timeout 60 "$tmp/ws_client" -p "$1" -n 50 \
	    -c 10 -m 10 -s "$SIZE" >/dev/null 2>&1
}

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

# idle TARGET: proxy worker RSS before and after IDLE tunnels; sets
# IDLE_KB and IDLE_DETAIL for TARGET.
idle() {
	local t=$1 workers before after ready cpid
	workers=$(kids "${MAINPID[$t]}")
	[ -n "$workers" ] || workers=${MAINPID[$t]}	# haproxy -db: one process
	sleep 0.5
	before=$(sum_rss $workers)
	spawn "$CLIENT_CPU" "$tmp/idle-$t.out" "$tmp/ws_client" -p "${PORT[$t]}" -i "$IDLE"
	cpid=$LAUNCHED
	for _ in $(seq 1200); do
		grep -q READY "$tmp/idle-$t.out" && break
		kill -0 "$cpid" 2>/dev/null || break
		sleep 0.1
	done
	sleep 1
	after=$(sum_rss $workers)
	ready=$(grep READY "$tmp/idle-$t.out")
	stop_pid "$cpid"
	if [ "$ready" = "READY $IDLE" ]; then
		IDLE_KB[$t]=$(awk -v a="$after" -v b="$before" -v n="$IDLE" \
		    'BEGIN { printf "%.2f", (a - b) / n }')
		IDLE_DETAIL[$t]="$before KB -> $after KB"
	else
		IDLE_KB[$t]="failed"
		IDLE_DETAIL[$t]="${ready:-no READY line}"
	fi
}

declare -A RATE P50 P99 IDLE_KB IDLE_DETAIL

echo "seed workload: $CONNS connections x $MSGS echo messages of $SIZE bytes," \
    "at most $CONC at once; best of $RUNS interleaved runs"
echo "proxy on CPU $PROXY_CPU; client and origin on CPU $CLIENT_CPU"
echo

# All proxies run side by side (idle ones cost nothing), so that the runs
# can be interleaved: run 1 of every target, then run 2, ...
UP=()
ready() { wait_port "${PORT[$1]}"; }
for t in $TARGETS; do
	if [ "$t" = direct ]; then
		UP+=(direct)
	elif start_system "$t" ready; then
		UP+=("$t")
	else
		RATE[$t]=skipped
	fi
done
sleep 0.3
for t in "${UP[@]}"; do
	warm_up "${PORT[$t]}"
done
for _ in $(seq "$RUNS"); do
	for t in "${UP[@]}"; do
		[ "${RATE[$t]:-}" = failed ] && continue
		res=$(load "${PORT[$t]}")
		case $res in
		FAILED*)
			RATE[$t]=failed
			note "$t: $res"
			continue ;;
		esac
		r=$(field msgs_per_s "$res")
		if [ "${r:-0}" -gt "${RATE[$t]:-0}" ]; then
			RATE[$t]=$r
			P50[$t]=$(field p50_us "$res")
			P99[$t]=$(field p99_us "$res")
		fi
	done
done
if [ "$IDLE" -gt 0 ]; then
	for t in "${UP[@]}"; do
		[ "$t" != direct ] && idle "$t"
	done
fi

# ------------------------------------------------------------------ report
num() { [[ ${1:-} =~ ^[0-9.]+$ ]]; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

printf "%-9s %12s %9s %9s %10s %14s\n" target msgs/s p50_us p99_us \
    "x direct" "KB/idle tunnel"
for t in $TARGETS; do
	r=${RATE[$t]:-skipped}
	x=-
	if num "$r" && num "${RATE[direct]:-}"; then
		x=$(ratio "$r" "${RATE[direct]}")
	fi
	printf "%-9s %12s %9s %9s %10s %14s\n" "$t" "$r" "${P50[$t]:--}" \
	    "${P99[$t]:--}" "$x" "${IDLE_KB[$t]:--}"
done
echo
for t in $TARGETS; do
	[ -n "${IDLE_DETAIL[$t]:-}" ] &&
	    echo "idle RSS $t ($IDLE tunnels, worker VmRSS): ${IDLE_DETAIL[$t]}"
done

if num "${RATE[stoa]:-}"; then
	best=0 bestname=""
	for t in nginx haproxy; do
		if num "${RATE[$t]:-}" &&
		    awk -v a="${RATE[$t]}" -v b="$best" 'BEGIN { exit !(a > b) }'; then
			best=${RATE[$t]}
			bestname=$t
		fi
	done
	echo
	if num "${RATE[direct]:-}"; then
		echo "stoa / direct:          $(ratio "${RATE[stoa]}" "${RATE[direct]}")   (target >= 0.95)"
	fi
	for t in nginx haproxy; do
		num "${RATE[$t]:-}" &&
		    echo "stoa / $t: $(printf '%*s' $((15 - ${#t})) '')$(ratio "${RATE[stoa]}" "${RATE[$t]}")"
	done
	if [ -n "$bestname" ]; then
		echo "stoa / best of others:  $(ratio "${RATE[stoa]}" "$best")   (target >= 1.05, best: $bestname)"
	fi
	if num "${IDLE_KB[stoa]:-}"; then
		echo "stoa RSS per idle tunnel: ${IDLE_KB[stoa]} KB   (target <= 2 KB)"
	fi
fi

echo
for t in $TARGETS; do
	result ws_echo "$t" rate "${RATE[$t]:-}"
	num "${P99[$t]:-}" && result ws_echo "$t" p99_ms "$(us_to_ms "${P99[$t]}")"
	result idle_tunnel "$t" kb "${IDLE_KB[$t]:-}"
done
exit 0
