#!/bin/bash
# ws_bench.sh -- WebSocket passthrough benchmark: stoa against a direct
# connection to the origin, nginx and HAProxy.  Not a test; see README.md.
#
# Environment (all optional):
#   STOA_BIN      stoa binary (default: src/stoa of this tree)
#   NGINX_BIN     default /usr/sbin/nginx (installed with apt-get if absent)
#   HAPROXY_BIN   default /usr/sbin/haproxy (skipped if absent)
#   CONNS=1000 CONC=100 MSGS=100 SIZE=128   the seed workload
#   RUNS=3        runs per target; the best one is reported
#   IDLE=5000     tunnels held open for the RSS measurement (0: skip)
#   PROXY_CPU=0 CLIENT_CPU=1                CPUs for taskset
#   PORT_BASE=19400   ports PORT_BASE..PORT_BASE+3 are used
#   TARGETS="direct stoa nginx haproxy"
#   KEEP=1        keep the scratch directory (configs, logs)

set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
STOA_BIN=${STOA_BIN:-$root/src/stoa}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
HAPROXY_BIN=${HAPROXY_BIN:-/usr/sbin/haproxy}
CONNS=${CONNS:-1000}
CONC=${CONC:-100}
MSGS=${MSGS:-100}
SIZE=${SIZE:-128}
RUNS=${RUNS:-3}
IDLE=${IDLE:-5000}
PROXY_CPU=${PROXY_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT_BASE=${PORT_BASE:-19400}
TARGETS=${TARGETS:-direct stoa nginx haproxy}

ECHO_PORT=$PORT_BASE
STOA_PORT=$((PORT_BASE + 1))
NGINX_PORT=$((PORT_BASE + 2))
HAPROXY_PORT=$((PORT_BASE + 3))

die() { echo "ws_bench: $*" >&2; exit 1; }

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" ||
    die "cannot raise the open file limit"
[ "$(ulimit -n)" -ge $((3 * IDLE + 1000)) ] ||
    echo "ws_bench: warning: ulimit -n $(ulimit -n) is low for IDLE=$IDLE" >&2

NOFILE=$(ulimit -n)
MAXCONN=$(( (NOFILE - 100) / 2 ))

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stoa-wsbench.XXXXXX") || exit 1
chmod 755 "$tmp"
PIDS=()

# Stop every process this script started, by PID: TERM, then KILL.
cleanup() {
	local p i
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for i in $(seq 50); do
		local alive=0
		for p in "${PIDS[@]}"; do
			kill -0 "$p" 2>/dev/null && alive=1
		done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for p in "${PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "${KEEP:-0}" = 1 ]; then
		echo "ws_bench: scratch directory kept: $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# stop_pid PID: stop one process we started and forget it.
stop_pid() {
	local p=$1 i n=()
	kill -TERM "$p" 2>/dev/null
	for i in $(seq 100); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	for i in "${PIDS[@]}"; do
		[ "$i" != "$p" ] && n+=("$i")
	done
	PIDS=("${n[@]}")
}

wait_port() {
	local i
	for i in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

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

for p in $ECHO_PORT $STOA_PORT $NGINX_PORT $HAPROXY_PORT; do
	port_free "$p" || die "port $p is in use (set PORT_BASE)"
done

case " $TARGETS " in *" nginx "*)
	if [ ! -x "$NGINX_BIN" ]; then
		echo "ws_bench: installing nginx-light" >&2
		apt-get install -y nginx-light >/dev/null 2>&1 ||
		    echo "ws_bench: nginx not available, skipped" >&2
	fi;;
esac

# ------------------------------------------------------------------ origin
taskset -c "$CLIENT_CPU" "$tmp/ws_echo" -p "$ECHO_PORT" &
PIDS+=($!)
wait_port "$ECHO_PORT" || die "ws_echo did not start"

# ------------------------------------------------------------------ proxies
start_stoa() {
	[ -x "$STOA_BIN" ] || { echo "ws_bench: $STOA_BIN missing" >&2; return 1; }
	cat >"$tmp/stoa.conf" <<-EOF
	workers = 1
	listen = {"127.0.0.1:$STOA_PORT"}
	pid_file = "$tmp/stoa.pid"
	error_log = "$tmp/stoa-error.log"
	access_log = off
	log_level = warn
	shutdown_timeout = 1s
	timeouts { websocket_idle = 300s client_idle = 300s }
	limits { max_connections = $MAXCONN }
	upstream echo { server = {"127.0.0.1:$ECHO_PORT"} keepalive = 0 }
	route / { upstream = echo websocket = true }
	EOF
	"$STOA_BIN" -t -c "$tmp/stoa.conf" >/dev/null ||
	    { echo "ws_bench: stoa rejects its config" >&2; return 1; }
	taskset -c "$PROXY_CPU" "$STOA_BIN" -c "$tmp/stoa.conf" \
	    >"$tmp/stoa.out" 2>&1 &
	STOA_PID=$!
	PIDS+=($STOA_PID)
	wait_port "$STOA_PORT" || { echo "ws_bench: stoa did not start" >&2; return 1; }
	sleep 0.3
}

start_nginx() {
	[ -x "$NGINX_BIN" ] || return 1
	mkdir -p "$tmp/nginx"
	cat >"$tmp/nginx/nginx.conf" <<-EOF
	daemon off;
	master_process on;
	worker_processes 1;
	worker_rlimit_nofile $NOFILE;
	pid $tmp/nginx/nginx.pid;
	error_log $tmp/nginx/error.log warn;
	events { worker_connections $((NOFILE - 100)); }
	http {
	    access_log off;
	    client_body_temp_path $tmp/nginx/body;
	    proxy_temp_path $tmp/nginx/proxy;
	    fastcgi_temp_path $tmp/nginx/fastcgi;
	    uwsgi_temp_path $tmp/nginx/uwsgi;
	    scgi_temp_path $tmp/nginx/scgi;
	    upstream echo { server 127.0.0.1:$ECHO_PORT; }
	    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
	    server {
	        listen 127.0.0.1:$NGINX_PORT;
	        location / {
	            proxy_pass http://echo;
	            proxy_http_version 1.1;
	            proxy_set_header Upgrade \$http_upgrade;
	            proxy_set_header Connection \$connection_upgrade;
	            proxy_read_timeout 300s;
	            proxy_send_timeout 300s;
	        }
	    }
	}
	EOF
	taskset -c "$PROXY_CPU" "$NGINX_BIN" -p "$tmp/nginx" -e "$tmp/nginx/error.log" \
	    -c "$tmp/nginx/nginx.conf" >"$tmp/nginx/out" 2>&1 &
	NGINX_PID=$!
	PIDS+=($NGINX_PID)
	wait_port "$NGINX_PORT" || { echo "ws_bench: nginx did not start" >&2; return 1; }
	sleep 0.3
}

start_haproxy() {
	[ -x "$HAPROXY_BIN" ] || return 1
	cat >"$tmp/haproxy.cfg" <<-EOF
	global
	    nbthread 1
	    maxconn $MAXCONN
	defaults
	    mode http
	    timeout connect 5s
	    timeout client 300s
	    timeout server 300s
	    timeout tunnel 300s
	frontend fe
	    bind 127.0.0.1:$HAPROXY_PORT
	    default_backend be
	backend be
	    server echo 127.0.0.1:$ECHO_PORT
	EOF
	taskset -c "$PROXY_CPU" "$HAPROXY_BIN" -db -f "$tmp/haproxy.cfg" \
	    >"$tmp/haproxy.out" 2>&1 &
	HAPROXY_PID=$!
	PIDS+=($HAPROXY_PID)
	wait_port "$HAPROXY_PORT" || { echo "ws_bench: haproxy did not start" >&2; return 1; }
	sleep 0.3
}

# ---------------------------------------------------------------- workload
# load PORT -> best "msgs=... msgs_per_s=..." line of RUNS runs (after a
# warm-up), or "FAILED ..." .
load() {
	local port=$1 best="" bestr=0 out r i
	taskset -c "$CLIENT_CPU" "$tmp/ws_client" -p "$port" -n 50 -c 10 \
	    -m 10 -s "$SIZE" >/dev/null 2>&1
	for i in $(seq "$RUNS"); do
		out=$(taskset -c "$CLIENT_CPU" timeout 300 "$tmp/ws_client" \
		    -p "$port" -n "$CONNS" -c "$CONC" -m "$MSGS" -s "$SIZE" 2>&1)
		if [ $? -ne 0 ]; then
			echo "FAILED $out"
			return
		fi
		r=$(sed -n 's/.*msgs_per_s=\([0-9]*\).*/\1/p' <<<"$out")
		if [ "${r:-0}" -gt "$bestr" ]; then
			bestr=$r
			best=$out
		fi
	done
	echo "$best"
}

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

declare -A RATE P50 P99 IDLE_KB IDLE_DETAIL
declare -A PORT_OF=([direct]=$ECHO_PORT [stoa]=$STOA_PORT
    [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT)

echo "seed workload: $CONNS connections x $MSGS echo messages of $SIZE bytes," \
    "at most $CONC at once; best of $RUNS runs"
echo "proxy on CPU $PROXY_CPU; client and origin on CPU $CLIENT_CPU"
echo

for t in $TARGETS; do
	case $t in
	direct) ok=1;;
	stoa) start_stoa && ok=1 || ok=0;;
	nginx) start_nginx && ok=1 || ok=0;;
	haproxy) start_haproxy && ok=1 || ok=0;;
	*) die "unknown target $t";;
	esac
	if [ $ok = 0 ]; then
		RATE[$t]=skipped
		continue
	fi
	res=$(load "${PORT_OF[$t]}")
	case $res in
	FAILED*)
		RATE[$t]=failed
		echo "ws_bench: $t: $res" >&2;;
	*)
		RATE[$t]=$(field msgs_per_s "$res")
		P50[$t]=$(field p50_us "$res")
		P99[$t]=$(field p99_us "$res");;
	esac
	# Idle tunnels: proxy worker RSS before and after IDLE tunnels.
	if [ "$IDLE" -gt 0 ] && [ "$t" != direct ]; then
		case $t in
		stoa) master=$STOA_PID;;
		nginx) master=$NGINX_PID;;
		haproxy) master=$HAPROXY_PID;;
		esac
		workers=$(kids "$master")
		[ -n "$workers" ] || workers=$master	# haproxy -db: one process
		sleep 0.5
		before=$(sum_rss $workers)
		taskset -c "$CLIENT_CPU" "$tmp/ws_client" -p "${PORT_OF[$t]}" \
		    -i "$IDLE" >"$tmp/idle-$t.out" 2>&1 &
		cpid=$!
		PIDS+=($cpid)
		for i in $(seq 1200); do
			grep -q READY "$tmp/idle-$t.out" && break
			kill -0 $cpid 2>/dev/null || break
			sleep 0.1
		done
		sleep 1
		after=$(sum_rss $workers)
		ready=$(grep READY "$tmp/idle-$t.out")
		stop_pid $cpid
		if [ "$ready" = "READY $IDLE" ]; then
			IDLE_KB[$t]=$(awk -v a="$after" -v b="$before" -v n="$IDLE" \
			    'BEGIN { printf "%.2f", (a - b) / n }')
			IDLE_DETAIL[$t]="$before KB -> $after KB"
		else
			IDLE_KB[$t]="failed"
			IDLE_DETAIL[$t]="${ready:-no READY line}"
		fi
	fi
	case $t in
	stoa) stop_pid "$STOA_PID";;
	nginx) stop_pid "$NGINX_PID";;
	haproxy) stop_pid "$HAPROXY_PID";;
	esac
	sleep 0.5
done

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
exit 0
