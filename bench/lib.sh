# lib.sh -- shared by the bench scripts; sourced, never run:
#
#	. "$(dirname "$0")/lib.sh"
#
# Sourcing only defines things: the common knobs, messages, process
# bookkeeping, free ports, installing peers, generated configs, wrk runs,
# medians and RESULT lines.  The script then calls bench_init, which
# checks the CPUs and makes the scratch directory $tmp; on exit every
# process in PIDS is stopped (TERM, then KILL) and $tmp is removed.
#
# Common knobs (environment): STOA_BIN, NGINX_BIN, HAPROXY_BIN,
# VARNISHD_BIN, PROXY_CPU (0: the proxy under test), CLIENT_CPU (1: the
# load generator and the origin), NO_INSTALL=1 (do not apt-get missing
# peers), KEEP=1 (keep the scratch directory).
#
# Set BENCH before sourcing to name the messages (default: $0 without .sh).

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
BENCH=${BENCH:-$(basename "$0" .sh)}

STOA_BIN=${STOA_BIN:-$root/src/stoa}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
HAPROXY_BIN=${HAPROXY_BIN:-/usr/sbin/haproxy}
VARNISHD_BIN=${VARNISHD_BIN:-/usr/sbin/varnishd}
PROXY_CPU=${PROXY_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
CLK_TCK=$(getconf CLK_TCK)

note() { echo "$BENCH: $*" >&2; }
die() { note "$*"; exit 1; }

# usage: the comment block at the top of $0, after the #! line.
usage() {
	awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
}

# parse_args ARG...: the options every scenario script takes (--quick:
# DUR=2 ROUNDS=1; -h/--help); --instr sets MODE=instr where allowed
# (ALLOW_INSTR=1).
parse_args() {
	local arg
	for arg in "$@"; do
		case $arg in
		--quick) DUR=2; ROUNDS=1 ;;
		--instr) [ "${ALLOW_INSTR:-0}" = 1 ] ||
			die "unknown argument: $arg"
			MODE=instr ;;
		-h|--help) usage; exit 0 ;;
		*) die "unknown argument: $arg" ;;
		esac
	done
}

# start_system SYSTEM READY: start SYSTEM with its start_SYSTEM function on
# a free port (PORT[SYSTEM]; MAINPID[SYSTEM] its main process) and wait
# with "READY SYSTEM" until it serves.  Returns 1, with a note, when it is
# skipped: its binary is missing, it did not start, or it never got ready.
start_system() {
	local s=$1 ready=$2 bin
	case $s in
	stoa) bin=$STOA_BIN ;;
	nginx) bin=$NGINX_BIN ;;
	haproxy) bin=$HAPROXY_BIN ;;
	varnish) bin=$VARNISHD_BIN ;;
	*) die "unknown system $s" ;;
	esac
	[ -x "$bin" ] || { note "skipping $s: $bin not found"; return 1; }
	free_port "PORT[$s]"
	"start_$s" || { note "skipping $s: it did not start"; return 1; }
	MAINPID[$s]=$LAUNCHED
	"$ready" "$s" && return 0
	note "skipping $s: not serving on port ${PORT[$s]}: $(log_tail "$tmp/$s")"
	return 1
}

# NGINX_KEEPALIVE: nginx's upstream "keepalive" in the generated configs.
# nginx closes an idle connection beyond it at once (a hard cap), so with
# a cap below the load's concurrency it opens and closes a connection for
# a good share of requests; it is sized to the benchmarks' concurrency so
# that nginx is measured as an operator would tune it.  stoa keeps its
# default (32): a burst's surplus stays pooled and is trimmed after 1 s.
NGINX_KEEPALIVE=${NGINX_KEEPALIVE:-256}

# --- processes ----------------------------------------------------------

PIDS=()		# every process started in the background; stopped on exit
WRAP=()		# command prefix of the proxies (valgrind in http_bench --instr)
tmp=
shm=

# stop_pids PID...: TERM, up to 5 s for them to go, KILL, reap.
stop_pids() {
	local p alive
	[ $# -gt 0 ] || return 0
	kill -TERM "$@" 2>/dev/null
	for _ in $(seq 50); do
		alive=0
		for p; do
			kill -0 "$p" 2>/dev/null && { alive=1; break; }
		done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for p; do
		kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
	done
	wait "$@" 2>/dev/null
	return 0
}

# forget_pid PID: take PID out of PIDS (it has ended).
forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[ "$p" != "$1" ] && keep+=("$p")
	done
	PIDS=(${keep[@]+"${keep[@]}"})
}

# stop_pid PID: stop one process this script started and forget it.
stop_pid() {
	stop_pids "$1"
	forget_pid "$1"
}

bench_cleanup() {
	stop_pids ${PIDS[@]+"${PIDS[@]}"}
	PIDS=()
	if [ -n "$tmp" ]; then
		if [ "${KEEP:-0}" = 1 ]; then
			note "scratch directory kept: $tmp"
		else
			rm -rf "$tmp"
		fi
	fi
	[ -n "$shm" ] && rm -rf "$shm"
}

# spawn CPU OUTFILE COMMAND...: start COMMAND in the background pinned to
# CPU, stdout and stderr to OUTFILE; its pid goes to PIDS and LAUNCHED.
# (taskset execs COMMAND: the pid is COMMAND's.)
spawn() {
	local cpu=$1 out=$2
	shift 2
	taskset -c "$cpu" "$@" >"$out" 2>&1 &
	LAUNCHED=$!
	PIDS+=("$LAUNCHED")
}

# bench_init [shm]: check taskset and the two CPUs, raise the descriptor
# limit as far as the hard limit allows, make $tmp (and with "shm" also
# $shm, a directory on tmpfs when there is one, for nginx's cache) and
# install the cleanup trap.
bench_init() {
	command -v taskset >/dev/null || die "taskset is required (util-linux)"
	taskset -c "$PROXY_CPU" true 2>/dev/null || die "PROXY_CPU=$PROXY_CPU: no such CPU"
	taskset -c "$CLIENT_CPU" true 2>/dev/null || die "CLIENT_CPU=$CLIENT_CPU: no such CPU"
	[ "$PROXY_CPU" != "$CLIENT_CPU" ] ||
	    note "warning: PROXY_CPU = CLIENT_CPU: proxy and load generator share a CPU"
	ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" ||
	    die "cannot raise the open file limit"
	trap bench_cleanup EXIT
	trap 'exit 1' HUP INT TERM
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/stoa-${BENCH//\//-}.XXXXXX") || exit 1
	chmod 755 "$tmp"
	if [ "${1:-}" = shm ]; then
		shm=$(mktemp -d "/dev/shm/stoa-${BENCH//\//-}.XXXXXX" 2>/dev/null) ||
		    shm=$tmp/shm
		mkdir -p "$shm"
		chmod 755 "$shm"
	fi
	mkdir -p "$tmp/res" "$tmp/raw"
}

# --- ports --------------------------------------------------------------

USED_PORTS=" "
# Ports are picked below the kernel's ephemeral range, so that no outgoing
# connection can hold one by the time a server binds it.
EPHEMERAL_LOW=
read -r EPHEMERAL_LOW _ < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
EPHEMERAL_LOW=${EPHEMERAL_LOW:-32768}
[ "$EPHEMERAL_LOW" -gt 12000 ] || EPHEMERAL_LOW=61000

# free_port VAR: set VAR (a name; 'PORT[stoa]' works) to a TCP port that
# no socket uses and that was not handed out before.  Not for $( ): the
# ports handed out are remembered in this shell.
free_port() {
	local _fp
	for _ in $(seq 200); do
		_fp=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
		case $USED_PORTS in *" $_fp "*) continue ;; esac
		if [ -z "$(ss -Htan "sport = :$_fp" 2>/dev/null)" ] &&
		    ! (exec 3<>"/dev/tcp/127.0.0.1/$_fp") 2>/dev/null; then
			USED_PORTS="$USED_PORTS$_fp "
			printf -v "$1" %s "$_fp"
			return 0
		fi
	done
	die "no free port found"
}

# wait_port PORT [TENTHS]: up to TENTHS/10 s (default 10 s) for something
# to accept connections on 127.0.0.1:PORT.
wait_port() {
	for _ in $(seq "${2:-100}"); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# wait_http PORT PATH [TENTHS]: up to TENTHS/10 s (default 10 s) for an
# HTTP 200 on PATH.
wait_http() {
	for _ in $(seq "${3:-100}"); do
		[ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' \
		    "http://127.0.0.1:$1$2")" = 200 ] && return 0
		sleep 0.1
	done
	return 1
}

# --- peers from Debian packages -----------------------------------------

# install_missing BIN:PACKAGE...: for every BIN (a path, or a command on
# PATH) that is missing, apt-get install its PACKAGE -- as root, unless
# NO_INSTALL=1 -- and stop the services those packages start (no systemd
# here: by pid file).  What is still missing is the caller's business:
# skip that peer, or die when it is essential.
install_missing() {
	local spec bin pkg pkgs=() svcs=() pidfs=() pidf
	for spec; do
		bin=${spec%%:*}
		pkg=${spec#*:}
		case $bin in
		*/*) [ -x "$bin" ] && continue ;;
		*) command -v "$bin" >/dev/null && continue ;;
		esac
		case " ${pkgs[*]} " in *" $pkg "*) continue ;; esac
		pkgs+=("$pkg")
		case $pkg in
		nginx*) svcs+=(nginx); pidfs+=(/run/nginx.pid) ;;
		haproxy) svcs+=(haproxy); pidfs+=(/run/haproxy.pid) ;;
		varnish) svcs+=(varnish varnishncsa)
			pidfs+=(/run/varnishd.pid /run/varnishncsa/varnishncsa.pid) ;;
		redis-server) svcs+=(redis-server); pidfs+=(/run/redis/redis-server.pid) ;;
		esac
	done
	[ ${#pkgs[@]} = 0 ] && return 0
	if [ "${NO_INSTALL:-0}" = 1 ] || [ "$(id -u)" != 0 ]; then
		note "missing ${pkgs[*]} (not installing: NO_INSTALL=1 or not root)"
		return 0
	fi
	note "installing ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! timeout 600 apt-get install -y "${pkgs[@]}" >/dev/null 2>&1; then
		timeout 600 apt-get update >/dev/null 2>&1 &&
		timeout 600 apt-get install -y "${pkgs[@]}" >/dev/null 2>&1 ||
		    note "apt-get install ${pkgs[*]} failed"
	fi
	[ ${#svcs[@]} = 0 ] && return 0
	timeout 30 systemctl stop "${svcs[@]}" >/dev/null 2>&1
	for pidf in "${pidfs[@]}"; do
		[ -s "$pidf" ] && kill -TERM "$(cat "$pidf")" 2>/dev/null
	done
	return 0
}

# require COMMAND...: die unless every COMMAND is on PATH.
require() {
	local c
	for c; do
		command -v "$c" >/dev/null || die "$c is required"
	done
}

# --- generated configs and launchers ------------------------------------

# nginx_conf DIR [WORKER_CONNECTIONS]: write DIR/nginx.conf, one worker in
# the foreground, logs and temp files in DIR, access log off, long
# keep-alive; the rest of the http block comes from stdin.
nginx_conf() {
	local d=$1
	mkdir -p "$d/tmp"
	chmod 777 "$d/tmp"	# nginx workers run as nobody when started as root
	{
		cat <<-EOF
		worker_processes 1;
		worker_rlimit_nofile $(ulimit -n);
		daemon off;
		pid $d/nginx.pid;
		error_log $d/error.log warn;
		events { worker_connections ${2:-4096}; }
		http {
			access_log off;
			keepalive_requests 10000000;
			keepalive_timeout 120s;
			client_body_temp_path $d/tmp/body;
			proxy_temp_path $d/tmp/proxy;
			fastcgi_temp_path $d/tmp/fastcgi;
			uwsgi_temp_path $d/tmp/uwsgi;
			scgi_temp_path $d/tmp/scgi;
		EOF
		cat
		echo "}"
	} > "$d/nginx.conf"
}

# haproxy_conf DIR: write DIR/haproxy.cfg, one thread, mode http, the
# frontends and backends from stdin.
haproxy_conf() {
	mkdir -p "$1"
	{
		cat <<-EOF
		global
			nbthread 1
			maxconn $(( ($(ulimit -n) - 100) / 2 ))

		defaults
			mode http
			timeout connect 2s
			timeout client 300s
			timeout server 300s
			timeout tunnel 300s
			timeout http-keep-alive 60s

		EOF
		cat
	} > "$1/haproxy.cfg"
}

# stoa_conf DIR PORT: write DIR/stoa.conf, one worker listening on
# 127.0.0.1:PORT, pid file and error log in DIR, access log off; the rest
# (upstreams, routes) comes from stdin.
stoa_conf() {
	mkdir -p "$1"
	{
		cat <<-EOF
		workers    = 1
		listen     = {"127.0.0.1:$2"}
		pid_file   = "$1/stoa.pid"
		error_log  = "$1/error.log"
		access_log = off
		log_level  = warn
		EOF
		cat
	} > "$1/stoa.conf"
}

# stoa_cache_routes [CACHE-SETTINGS]: the stoa config body of the cache
# scenarios (http, h2 and redis benches): the cache section (default a
# 64 MB zone), the origin at ORIGIN_PORT with stoa's default keepalive,
# /c/ cached for 60 s, /p/ passed through.
stoa_cache_routes() {
	cat <<EOF
cache { ${1:-size = 64m} }
upstream origin {
  server    = {"127.0.0.1:$ORIGIN_PORT"}
  keepalive = 32
}
route /c/ {
  upstream = origin
  cache { ttl = 60s }
}
route /p/ { upstream = origin }
EOF
}

# nginx_upstream_origin: the nginx peer's upstream block for the origin at
# ORIGIN_PORT (keep-alive, NGINX_KEEPALIVE idle connections).
nginx_upstream_origin() {
	printf '\tupstream origin {\n\t\tserver 127.0.0.1:%s;\n' "$ORIGIN_PORT"
	printf '\t\tkeepalive %s;\n\t\tkeepalive_requests 10000000;\n\t}\n' \
	    "$NGINX_KEEPALIVE"
}

# nginx_cache_zone: create the nginx peer's cache directory (in shm) and
# print its proxy_cache_path line (zone "bench", 64 MB).
nginx_cache_zone() {
	mkdir -p "$shm/nginx-cache"
	chmod 777 "$shm/nginx-cache"
	printf '\tproxy_cache_path %s levels=1:2 keys_zone=bench:10m max_size=64m;\n' \
	    "$shm/nginx-cache"
}

# launch_stoa DIR, launch_nginx DIR, launch_haproxy DIR: check the config
# written by the functions above where the program can, then spawn the
# program on PROXY_CPU behind WRAP; output in DIR/stderr, pid in LAUNCHED.
launch_stoa() {
	"$STOA_BIN" -t -c "$1/stoa.conf" >"$1/check" 2>&1 ||
	    { note "stoa -t: $(cat "$1/check")"; return 1; }
	spawn "$PROXY_CPU" "$1/stderr" ${WRAP[@]+"${WRAP[@]}"} \
	    "$STOA_BIN" -c "$1/stoa.conf"
}
launch_nginx() {
	spawn "$PROXY_CPU" "$1/stderr" ${WRAP[@]+"${WRAP[@]}"} \
	    "$NGINX_BIN" -e "$1/error.log" -c "$1/nginx.conf"
}
launch_haproxy() {
	"$HAPROXY_BIN" -c -f "$1/haproxy.cfg" >"$1/check" 2>&1 ||
	    { note "haproxy -c: $(cat "$1/check")"; return 1; }
	spawn "$PROXY_CPU" "$1/stderr" ${WRAP[@]+"${WRAP[@]}"} \
	    "$HAPROXY_BIN" -db -f "$1/haproxy.cfg"
}

# log_tail DIR: the last lines of the output and error log in DIR.
log_tail() {
	tail -q -n 5 "$1/stderr" "$1/error.log" 2>/dev/null | tr '\n' ' '
}

# start_static_origin: nginx (one worker, on CLIENT_CPU) on ORIGIN_PORT,
# serving /c/obj and /p/obj, 1024 bytes each, Cache-Control:
# max-age=3600, from $tmp/origin/www.  Requests that carry X-Bench-Probe
# are logged to $tmp/origin/probe.log (see probes), so that a cache check
# can tell whether a proxy went to the origin; the load is not logged.
# The origin is made as cheap per request as nginx allows -- open files
# cached, head and body in one writev rather than cork + sendfile + uncork
# -- because it shares CLIENT_CPU with wrk: with sendfile and no file cache
# it spent ten syscalls on every request and capped even `direct` at ~37k
# req/s, so that proxy pass measured the origin, not the proxies.
start_static_origin() {
	local d=$tmp/origin
	free_port ORIGIN_PORT
	mkdir -p "$d/www/c" "$d/www/p"
	head -c 1024 /dev/zero | tr '\0' 'x' > "$d/www/c/obj"
	cp "$d/www/c/obj" "$d/www/p/obj"
	chmod -R a+rX "$d"
	: > "$d/probe.log"
	chmod 666 "$d/probe.log"
	nginx_conf "$d" <<-EOF
		default_type text/plain;
		sendfile off;
		open_file_cache max=16 inactive=600s;
		open_file_cache_valid 600s;
		map \$http_x_bench_probe \$bench_probe { default 0; ~. 1; }
		server {
			listen 127.0.0.1:$ORIGIN_PORT;
			root $d/www;
			access_log $d/probe.log combined if=\$bench_probe;
			add_header Cache-Control "max-age=3600";
		}
	EOF
	spawn "$CLIENT_CPU" "$d/stderr" "$NGINX_BIN" -e "$d/error.log" -c "$d/nginx.conf"
	wait_http "$ORIGIN_PORT" /c/obj || die "origin did not start: $(log_tail "$d")"
}

# probes: how many probe requests reached the static origin so far.
probes() { wc -l < "$tmp/origin/probe.log"; }

# --- measuring ------------------------------------------------------------

# cpu_busy CPU: "busy total" jiffies of that CPU from /proc/stat.
cpu_busy() {
	awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i;
	    print t - $5 - $6, t }' /proc/stat
}

# busy_now: how busy PROXY_CPU and CLIENT_CPU are over one second, e.g.
# "cpu0 3%, cpu1 1%": the numbers mean little unless both are near 0
# before a run.
busy_now() {
	local a0 t0 a1 t1 b0 u0 b1 u1
	read -r a0 t0 < <(cpu_busy "$PROXY_CPU")
	read -r a1 t1 < <(cpu_busy "$CLIENT_CPU")
	sleep 1
	read -r b0 u0 < <(cpu_busy "$PROXY_CPU")
	read -r b1 u1 < <(cpu_busy "$CLIENT_CPU")
	echo "cpu$PROXY_CPU $(( 100 * (b0 - a0) / (u0 - t0 + 1) ))%, cpu$CLIENT_CPU $(( 100 * (b1 - a1) / (u1 - t1 + 1) ))%"
}

# tree_ticks PID: user+system clock ticks of PID and its descendants, two
# levels deep (nginx's workers, varnishd's manager and child; threads
# count in their process).  0 without a PID.
tree_ticks() {
	local p c g all=${1:-}
	[ -n "$all" ] || { echo 0; return; }
	for c in $(pgrep -P "$1"); do
		all="$all $c"
		for g in $(pgrep -P "$c"); do all="$all $g"; done
	done
	for p in $all; do cat "/proc/$p/stat" 2>/dev/null; done |
	    awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t + 0 }'
}

# wrk_once NAME URL PID [WRK ARGS...]: one `wrk -t1 -c$CONNS -d$DUR
# --latency` run on CLIENT_CPU, in the caller's round $round; appends "rps p99_us proxy% client% per_cpu_s"
# to $tmp/res/NAME and keeps the output in $tmp/raw/NAME.$round.  proxy%:
# CPU time of PID's process tree over the run (100 = one CPU; - without a
# PID); client%: how busy CLIENT_CPU was; per_cpu_s: requests per second
# of the proxy's own CPU time.
wrk_once() {
	local name=$1 url=$2 pid=$3 out=$tmp/raw/$1.$round
	local a0 a1 b0 b1 t1 u1 ns0 ns1 rps p99 bad
	shift 3
	a0=$(tree_ticks "$pid")
	read -r a1 t1 < <(cpu_busy "$CLIENT_CPU")
	ns0=$(date +%s%N)
	taskset -c "$CLIENT_CPU" timeout $((DUR + 60)) wrk -t1 -c"$CONNS" \
	    -d"${DUR}s" --latency "$@" "$url" > "$out" 2>&1
	ns1=$(date +%s%N)
	b0=$(tree_ticks "$pid")
	read -r b1 u1 < <(cpu_busy "$CLIENT_CPU")
	rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
	p99=$(wrk_p99_us "$out")
	bad=$(awk '/Non-2xx|Socket errors/' "$out")
	[ -n "$bad" ] && note "$name round $round: $(tr '\n' ' ' <<<"$bad")"
	[ -n "$rps" ] || { note "$name round $round: wrk failed: $(head -3 "$out")"; rps=0; p99=0; }
	echo "$rps ${p99:-0}" \
	    "$([ -n "$pid" ] && echo $(( 100 * (b0 - a0) * 1000000000 / CLK_TCK / (ns1 - ns0) )) || echo -)" \
	    "$(( 100 * (b1 - a1) / (u1 - t1 + 1) ))" \
	    "$(awk -v r="$rps" -v t=$((b0 - a0)) -v hz="$CLK_TCK" -v ns=$((ns1 - ns0)) \
	    'BEGIN { printf "%.0f", t ? r * ns / 1e9 / (t / hz) : 0 }')" >> "$tmp/res/$name"
}

# wrk_p99_us FILE: the 99% line of wrk --latency output, in microseconds.
wrk_p99_us() {
	awk '$1 == "99%" { v = $2; u = v; sub(/[a-z]+$/, "", v);
	    sub(/^[0-9.]+/, "", u);
	    if (u == "us") m = 1; else if (u == "ms") m = 1000;
	    else if (u == "s") m = 1000000; else m = 60000000;
	    printf "%.0f\n", v * m }' "$1"
}

# median NAME [FIELD]: median of column FIELD (default 1) of $tmp/res/NAME
# over the lines where it is a number; 0 when there is none.
median() {
	awk -v f="${2:-1}" '$f ~ /^[0-9.]+$/ { print $f }' "$tmp/res/$1" 2>/dev/null |
	    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print 0; exit }
	    if (NR % 2) print v[(NR + 1) / 2];
	    else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# fmt_us US: a latency for the human table (850us, 4.57ms, 13.2ms).
fmt_us() {
	awk -v u="$1" 'BEGIN { if (u >= 10000) printf "%.1fms", u / 1000;
	    else if (u >= 1000) printf "%.2fms", u / 1000; else printf "%dus", u }'
}

# --- reporting --------------------------------------------------------------

# result SCENARIO SYSTEM METRIC VALUE: the machine-readable line that
# bench/run collects (README.md, "bench/run"); nothing unless VALUE is a
# number.  The reference without a proxy is SYSTEM "direct".
result() {
	[[ ${4:-} =~ ^[0-9]+(\.[0-9]+)?$ ]] || return 0
	echo "RESULT $1 $2 $3 $4"
}

# us_to_ms US: microseconds as milliseconds, for RESULT ... p99_ms.
us_to_ms() { awk -v u="$1" 'BEGIN { printf "%.3f", u / 1000 }'; }

# banner TITLE PROGRAM...: the heading of a report: title and date, the
# version of each PROGRAM that is there, the host.
banner() {
	echo "== stoa $1  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	shift
	local p
	for p; do
		case $p in
		stoa) echo "stoa:     $("$STOA_BIN" -V 2>&1 | head -n 1) ($STOA_BIN)" ;;
		nginx) [ -x "$NGINX_BIN" ] &&
			echo "nginx:    $("$NGINX_BIN" -v 2>&1 | head -n 1)" ;;
		haproxy) [ -x "$HAPROXY_BIN" ] &&
			echo "haproxy:  $("$HAPROXY_BIN" -v 2>&1 | head -n 1)" ;;
		varnish) [ -x "$VARNISHD_BIN" ] &&
			echo "varnish:  $("$VARNISHD_BIN" -V 2>&1 | head -n 1)" ;;
		wrk) echo "wrk:      $(wrk -v 2>&1 | head -n 1)" ;;
		h2load) echo "h2load:   $(h2load --version 2>&1 | head -n 1)" ;;
		valgrind) echo "valgrind: $(valgrind --version 2>&1)" ;;
		esac
	done
	echo "host:     $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
}
