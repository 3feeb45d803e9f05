#!/bin/bash
# http_bench.sh -- cache-hit and proxy-pass benchmark: stoa against nginx,
# HAProxy and Varnish, each with one worker on one CPU.  Not a test; see
# README.md, section "HTTP: cache hit and proxy pass".
#
# Usage: bench/http_bench.sh [--quick]      (--quick: DUR=2 ROUNDS=1)
#        bench/http_bench.sh --instr      instructions per request (callgrind)
#
# Environment (all optional):
#   STOA_BIN      stoa binary (default: src/stoa of this tree)
#   NGINX_BIN     default /usr/sbin/nginx     (peer and origin)
#   HAPROXY_BIN   default /usr/sbin/haproxy
#   VARNISHD_BIN  default /usr/sbin/varnishd
#   DUR=5         seconds per wrk run
#   ROUNDS=3      interleaved rounds; the table shows the median
#   CONNS=64      wrk connections
#   PROXY_CPU=0 CLIENT_CPU=1   CPUs for taskset (origin and wrk share CLIENT_CPU)
#   SYSTEMS="stoa nginx haproxy varnish"
#   NO_INSTALL=1  do not apt-get missing peers (they are skipped instead)
#   KEEP=1        keep the scratch directory (configs, logs, raw wrk output)
#   INSTR_N=20000 requests counted per system and path in --instr mode

set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

for arg in "$@"; do
	case $arg in
	--quick) DUR=2; ROUNDS=1 ;;
	--instr) MODE=instr ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
		exit 0 ;;
	*) echo "http_bench: unknown argument: $arg" >&2; exit 2 ;;
	esac
done

MODE=${MODE:-wrk}
STOA_BIN=${STOA_BIN:-$root/src/stoa}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
HAPROXY_BIN=${HAPROXY_BIN:-/usr/sbin/haproxy}
VARNISHD_BIN=${VARNISHD_BIN:-/usr/sbin/varnishd}
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SYSTEMS=${SYSTEMS:-stoa nginx haproxy varnish}

die() { echo "http_bench: $*" >&2; exit 1; }
note() { echo "http_bench: $*" >&2; }

# --- peers: install from Debian packages when missing -----------------

# install_missing: apt-get the packages whose binary is absent, then stop
# whatever service the packages started (no systemd here: by pid file).
install_missing() {
	local pkgs=() pidf
	[ -x "$NGINX_BIN" ] || pkgs+=(nginx-light)
	[ -x "$HAPROXY_BIN" ] || pkgs+=(haproxy)
	[ -x "$VARNISHD_BIN" ] || pkgs+=(varnish)
	command -v wrk >/dev/null || pkgs+=(wrk)
	[ ${#pkgs[@]} = 0 ] && return 0
	if [ "${NO_INSTALL:-0}" = 1 ] || [ "$(id -u)" != 0 ]; then
		note "missing ${pkgs[*]} (not installing: NO_INSTALL or not root)"
		return 0
	fi
	note "installing ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y "${pkgs[@]}" >/dev/null; then
		apt-get update >/dev/null && apt-get install -y "${pkgs[@]}" >/dev/null ||
		    note "apt-get install ${pkgs[*]} failed"
	fi
	systemctl stop nginx haproxy varnish varnishncsa 2>/dev/null || true
	for pidf in /run/nginx.pid /run/haproxy.pid /run/varnishd.pid \
	    /run/varnishncsa/varnishncsa.pid; do
		[ -s "$pidf" ] && kill -TERM "$(cat "$pidf")" 2>/dev/null
	done
	return 0
}
install_missing
command -v wrk >/dev/null || die "wrk is required"
command -v curl >/dev/null || die "curl is required"
command -v taskset >/dev/null || die "taskset is required (util-linux)"
[ -x "$STOA_BIN" ] || die "no stoa binary at $STOA_BIN (build first or set STOA_BIN)"
[ -x "$NGINX_BIN" ] || die "nginx is required for the origin ($NGINX_BIN)"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stoa-httpbench.XXXXXX") || exit 1
chmod 755 "$tmp"
# nginx's cache directory lives on tmpfs when there is one.
shm=$(mktemp -d /dev/shm/stoa-httpbench.XXXXXX 2>/dev/null) || shm=$tmp/shm
mkdir -p "$shm"
chmod 755 "$shm"
PIDS=()

# Stop every process this script started, by PID: TERM, then KILL.
cleanup() {
	local p alive
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for _ in $(seq 50); do
		alive=0
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
		note "scratch directory kept: $tmp"
	else
		rm -rf "$tmp"
	fi
	rm -rf "$shm"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# --- ports ------------------------------------------------------------

USED_PORTS=" "
# Ports are picked below the kernel's ephemeral range, so that no outgoing
# connection can hold one by the time a server binds it.
read -r EPHEMERAL_LOW _ < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
EPHEMERAL_LOW=${EPHEMERAL_LOW:-32768}
[ "$EPHEMERAL_LOW" -gt 12000 ] || EPHEMERAL_LOW=61000
# free_port: print a TCP port no socket uses and not handed out before.
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
		case $USED_PORTS in *" $p "*) continue ;; esac
		if [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] &&
		    ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			USED_PORTS="$USED_PORTS$p "
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# wait_http PORT PATH [TENTHS]: wait up to TENTHS/10 s (default 10 s) for
# an HTTP 200 on PATH.
wait_http() {
	local _
	for _ in $(seq "${3:-100}"); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' \
		    "http://127.0.0.1:$1$2")" = 200 ] && return 0
		sleep 0.1
	done
	return 1
}

ORIGIN_PORT=$(free_port)

# --- origin: nginx serving two 1 KiB files, max-age=3600 ---------------

mkdir -p "$tmp/origin/www/c" "$tmp/origin/www/p" "$tmp/origin/tmp"
head -c 1024 /dev/zero | tr '\0' 'x' > "$tmp/origin/www/c/obj"
cp "$tmp/origin/www/c/obj" "$tmp/origin/www/p/obj"
chmod -R a+rX "$tmp/origin"
# Requests carrying X-Bench-Probe are logged, so that the cache check can
# tell whether a proxy went to the origin; the load itself is not logged.
cat > "$tmp/origin/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/origin/nginx.pid;
error_log $tmp/origin/error.log warn;
events { worker_connections 4096; }
http {
	default_type text/plain;
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 10000000;
	keepalive_timeout 120s;
	client_body_temp_path $tmp/origin/tmp/body;
	proxy_temp_path $tmp/origin/tmp/proxy;
	fastcgi_temp_path $tmp/origin/tmp/fastcgi;
	uwsgi_temp_path $tmp/origin/tmp/uwsgi;
	scgi_temp_path $tmp/origin/tmp/scgi;
	map \$http_x_bench_probe \$bench_probe { default 0; ~. 1; }
	server {
		listen 127.0.0.1:$ORIGIN_PORT;
		root $tmp/origin/www;
		access_log $tmp/origin/probe.log combined if=\$bench_probe;
		add_header Cache-Control "max-age=3600";
	}
}
EOF
: > "$tmp/origin/probe.log"
chmod 666 "$tmp/origin/probe.log"
taskset -c "$CLIENT_CPU" "$NGINX_BIN" -e "$tmp/origin/error.log" \
    -c "$tmp/origin/nginx.conf" >"$tmp/origin/stderr" 2>&1 &
PIDS+=($!)
wait_http "$ORIGIN_PORT" /c/obj || die "origin did not start: $(cat "$tmp/origin/stderr" "$tmp/origin/error.log" 2>/dev/null)"

# --- proxies ----------------------------------------------------------

declare -A PORT MAINPID
CLK_TCK=$(getconf CLK_TCK)
STARTED=()
WRAP=()		# command prefix of the proxies (valgrind in --instr mode)

start_stoa() {
	local d=$tmp/stoa
	mkdir -p "$d"
	cat > "$d/stoa.conf" <<EOF
workers    = 1
listen     = {"127.0.0.1:${PORT[stoa]}"}
pid_file   = "$d/stoa.pid"
error_log  = "$d/error.log"
access_log = off
log_level  = warn
cache { size = 64m }
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
	"$STOA_BIN" -t -c "$d/stoa.conf" >"$d/check" 2>&1 ||
	    { note "stoa -t: $(cat "$d/check")"; return 1; }
	taskset -c "$PROXY_CPU" "${WRAP[@]}" "$STOA_BIN" -c "$d/stoa.conf" >"$d/stderr" 2>&1 &
	PIDS+=($!)
}

start_nginx() {
	local d=$tmp/nginx
	mkdir -p "$d/tmp" "$shm/nginx-cache"
	chmod 777 "$d/tmp" "$shm/nginx-cache"
	cat > "$d/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_requests 10000000;
	keepalive_timeout 120s;
	client_body_temp_path $d/tmp/body;
	proxy_temp_path $d/tmp/proxy;
	fastcgi_temp_path $d/tmp/fastcgi;
	uwsgi_temp_path $d/tmp/uwsgi;
	scgi_temp_path $d/tmp/scgi;
	proxy_cache_path $shm/nginx-cache levels=1:2 keys_zone=bench:10m max_size=64m;
	upstream origin {
		server 127.0.0.1:$ORIGIN_PORT;
		keepalive 32;
		keepalive_requests 10000000;
	}
	server {
		listen 127.0.0.1:${PORT[nginx]};
		proxy_http_version 1.1;
		proxy_set_header Connection "";
		proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
		location /c/ {
			proxy_pass http://origin;
			proxy_cache bench;
			proxy_cache_valid 200 60s;
			add_header X-Cache-Status \$upstream_cache_status;
		}
		location /p/ {
			proxy_pass http://origin;
		}
	}
}
EOF
	taskset -c "$PROXY_CPU" "${WRAP[@]}" "$NGINX_BIN" -e "$d/error.log" -c "$d/nginx.conf" \
	    >"$d/stderr" 2>&1 &
	PIDS+=($!)
}

start_haproxy() {
	local d=$tmp/haproxy
	mkdir -p "$d"
	cat > "$d/haproxy.cfg" <<EOF
global
	nbthread 1
	maxconn $(( ($(ulimit -n) - 100) / 2 ))
	stats socket $d/stats.sock mode 600 level admin

defaults
	mode http
	option forwardfor
	timeout connect 2s
	timeout client 60s
	timeout server 30s
	timeout http-keep-alive 60s

cache bench
	total-max-size 64
	max-object-size 65536
	max-age 3600

frontend fe
	bind 127.0.0.1:${PORT[haproxy]}
	use_backend be_cache if { path_beg /c/ }
	default_backend be_pass

backend be_cache
	http-reuse always
	http-request cache-use bench
	http-response cache-store bench
	server origin 127.0.0.1:$ORIGIN_PORT

backend be_pass
	http-reuse always
	server origin 127.0.0.1:$ORIGIN_PORT
EOF
	"$HAPROXY_BIN" -c -f "$d/haproxy.cfg" >"$d/check" 2>&1 ||
	    { note "haproxy -c: $(cat "$d/check")"; return 1; }
	taskset -c "$PROXY_CPU" "${WRAP[@]}" "$HAPROXY_BIN" -db -f "$d/haproxy.cfg" \
	    >"$d/stderr" 2>&1 &
	PIDS+=($!)
}

start_varnish() {
	local d=$tmp/varnish
	mkdir -p "$d/n"
	chmod 755 "$d" "$d/n"
	cat > "$d/default.vcl" <<EOF
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$ORIGIN_PORT"; }
sub vcl_recv {
	if (req.url ~ "^/p/") { return (pass); }
}
EOF
	chmod 644 "$d/default.vcl"
	taskset -c "$PROXY_CPU" "$VARNISHD_BIN" -F -n "$d/n" -f "$d/default.vcl" \
	    -a "127.0.0.1:${PORT[varnish]}" -T none -s malloc,64m \
	    -p thread_pools=1 >"$d/stderr" 2>&1 &
	PIDS+=($!)
}

# --- --instr: user-space instructions per request, counted by callgrind -

# A sequential keep-alive client: COUNT GETs of PATH on one connection, each
# marked as a probe so that the origin logs the ones that reach it.
write_client() {
	cat > "$tmp/kaclient.py" <<'EOF_PY'
import http.client, sys
port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
bad = 0
for _ in range(count):
    conn.request("GET", path, headers={"X-Bench-Probe": "1"})
    resp = conn.getresponse()
    if resp.status != 200 or len(resp.read()) != 1024:
        bad += 1
conn.close()
sys.exit(1 if bad else 0)
EOF_PY
}

# instr_run SYSTEM PATH COUNT TAG: start SYSTEM under callgrind, send COUNT
# requests for PATH, stop it, and set INSTR_TOTAL to the instruction total of
# its busiest process (the worker: stoa and nginx fork theirs, HAProxy is
# one process).  Runs in this shell, so that PIDS stays complete.
instr_run() {
	local s=$1 path=$2 count=$3 tag=$4 m f t best=0
	INSTR_TOTAL=0
	PORT[$s]=$(free_port)
	mkdir -p "$tmp/cg"
	chmod 1777 "$tmp/cg"	# nginx workers write theirs as nobody
	WRAP=(valgrind --tool=callgrind "--callgrind-out-file=$tmp/cg/$s.$tag.%p")
	"start_$s" || return 1
	m=${PIDS[-1]}
	wait_http "${PORT[$s]}" /p/obj 600 || return 1
	"$PYTHON" "$tmp/kaclient.py" "${PORT[$s]}" "$path" "$count" ||
	    { note "$s: bad responses on $path under callgrind"; return 1; }
	kill -TERM "$m"
	wait "$m" 2>/dev/null
	for f in "$tmp/cg/$s.$tag".*; do
		t=$(awk '/^(totals|summary):/ { print $2; exit }' "$f")
		[ "${t:-0}" -gt "$best" ] && best=$t
	done
	INSTR_TOTAL=$best
	[ "$best" -gt 0 ]
}

# instr_mode: for each system and path, two runs that differ only in the
# number of requests (BASE and BASE + INSTR_N); the difference of the
# worker's totals divided by INSTR_N is the cost of one request, without
# start-up, the first (missing) request and shutdown.
instr_mode() {
	local s path a b lines0 lines1 base=1000 n=${INSTR_N:-20000}
	command -v valgrind >/dev/null || die "--instr needs valgrind"
	PYTHON=${PYTHON:-python3}
	write_client
	echo "== stoa http_bench --instr  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "stoa:    $("$STOA_BIN" -V 2>&1 | head -n 1) ($STOA_BIN)"
	echo "nginx:   $("$NGINX_BIN" -v 2>&1 | head -n 1)"
	[ -x "$HAPROXY_BIN" ] && echo "haproxy: $("$HAPROXY_BIN" -v 2>&1 | head -n 1)"
	echo "valgrind: $(valgrind --version)"
	echo "user-space instructions of the proxy's worker per request,"
	echo "sequential keep-alive client, (total($((base + n))) - total($base)) / $n"
	echo
	printf '%-8s %18s %18s\n' system 'cache hit' 'proxy pass'
	for s in $SYSTEMS; do
		case $s in
		varnish) note "--instr: varnish is not measured (threads, VCL compiler)"; continue ;;
		haproxy) [ -x "$HAPROXY_BIN" ] || continue ;;
		esac
		printf '%-8s' "$s"
		for path in /c/obj /p/obj; do
			lines0=$(wc -l < "$tmp/origin/probe.log")
			instr_run "$s" "$path" "$base" "${path:1:1}a" &&
			a=$INSTR_TOTAL &&
			instr_run "$s" "$path" $((base + n)) "${path:1:1}b" &&
			b=$INSTR_TOTAL ||
			    { printf ' %18s' failed; continue; }
			lines1=$(wc -l < "$tmp/origin/probe.log")
			# /c/obj: only the first request of each run may reach the origin.
			if [ "$path" = /c/obj ] && [ $((lines1 - lines0)) -gt 2 ]; then
				printf ' %18s' "no-cache($((lines1 - lines0)))"
				continue
			fi
			printf ' %18s' $(( (b - a) / n ))
		done
		echo
	done
	exit 0
}

[ "$MODE" = instr ] && instr_mode	# does not return

for s in $SYSTEMS; do
	case $s in
	stoa) bin=$STOA_BIN ;;
	nginx) bin=$NGINX_BIN ;;
	haproxy) bin=$HAPROXY_BIN ;;
	varnish) bin=$VARNISHD_BIN ;;
	*) die "unknown system $s" ;;
	esac
	[ -x "$bin" ] || { note "skipping $s: $bin not found"; continue; }
	PORT[$s]=$(free_port)
	"start_$s" || { note "skipping $s: it did not start"; continue; }
	MAINPID[$s]=${PIDS[-1]}
	if ! wait_http "${PORT[$s]}" /p/obj; then
		note "skipping $s: no answer on port ${PORT[$s]}: $(tail -n 5 "$tmp/$s/stderr" "$tmp/$s/error.log" 2>/dev/null)"
		continue
	fi
	STARTED+=("$s")
done
[ ${#STARTED[@]} -gt 0 ] || die "no proxy started"

# --- cache check ------------------------------------------------------

# check_hit SYSTEM: warm /c/obj, then make sure a repeated request is
# answered from the cache: the body is right, the system's own marker says
# so where it has one, and no probe request reached the origin.
check_hit() {
	local s=$1 url="http://127.0.0.1:${PORT[$1]}/c/obj" h before after
	for _ in 1 2 3; do curl -s -o /dev/null "$url"; done
	sleep 1.1	# so that Age > 0 where a proxy reports it
	h=$(curl -s -D - -o "$tmp/$s.body" -H 'X-Bench-Probe: 1' "$url")
	before=$(wc -l < "$tmp/origin/probe.log")
	for _ in 1 2 3 4 5; do
		curl -s -o /dev/null -H 'X-Bench-Probe: 1' "$url"
	done
	after=$(wc -l < "$tmp/origin/probe.log")
	cmp -s "$tmp/$s.body" "$tmp/origin/www/c/obj" ||
	    { note "$s: wrong body for /c/obj"; return 1; }
	[ "$after" = "$before" ] ||
	    { note "$s: cache hits reached the origin ($before -> $after)"; return 1; }
	case $s in
	stoa) grep -qi '^X-Cache: HIT' <<<"$h" ;;
	nginx) grep -qi '^X-Cache-Status: HIT' <<<"$h" ;;
	varnish) grep -qiE '^X-Varnish: [0-9]+ [0-9]+' <<<"$h" ;;
	haproxy) true ;;
	esac || { note "$s: no cache-hit marker in: $(tr -d '\r' <<<"$h" | tr '\n' '|')"; return 1; }
	return 0
}

OK=()
for s in "${STARTED[@]}"; do
	if check_hit "$s"; then
		OK+=("$s")
	else
		note "$s: excluded (no verified cache hit)"
	fi
done
[ ${#OK[@]} -gt 0 ] || die "no system serves cache hits"
cmp -s <(curl -s "http://127.0.0.1:$ORIGIN_PORT/p/obj") "$tmp/origin/www/p/obj" ||
    die "origin serves a wrong body"
for s in "${OK[@]}"; do
	cmp -s <(curl -s "http://127.0.0.1:${PORT[$s]}/p/obj") "$tmp/origin/www/p/obj" ||
	    die "$s: wrong body for /p/obj"
done

# --- measurement ------------------------------------------------------

# cpu_busy CPU: print "busy total" jiffies of that CPU from /proc/stat.
cpu_busy() {
	awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i;
	    print t - $5 - $6, t }' /proc/stat
}

# tree_ticks PID: user+system clock ticks of PID and its descendants (two
# levels: varnishd's manager and child; threads are counted in their process).
tree_ticks() {
	local p c g all=$1
	[ -n "$1" ] || { echo 0; return; }
	for c in $(pgrep -P "$1"); do
		all="$all $c"
		for g in $(pgrep -P "$c"); do all="$all $g"; done
	done
	for p in $all; do cat "/proc/$p/stat" 2>/dev/null; done |
	    awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t + 0 }'
}

# run_wrk NAME PORT PATH [PID]: one wrk run; appends "rps p99_us proxy%
# cpu1% per_cpu_s" to $tmp/res/NAME (proxy%: CPU time of PID's process tree
# over the run, 100 = one CPU; cpu1%: how busy the client CPU was;
# per_cpu_s: requests per CPU second of the proxy) and keeps the raw output.
run_wrk() {
	local name=$1 port=$2 path=$3 pid=${4:-} out a0 a1 b0 b1 rps p99 bad
	local t1 u1 ns0 ns1
	mkdir -p "$tmp/res" "$tmp/raw"
	out="$tmp/raw/$name.$round"
	a0=$(tree_ticks "$pid")
	read -r a1 t1 < <(cpu_busy "$CLIENT_CPU")
	ns0=$(date +%s%N)
	taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency \
	    "http://127.0.0.1:$port$path" > "$out" 2>&1
	ns1=$(date +%s%N)
	b0=$(tree_ticks "$pid")
	read -r b1 u1 < <(cpu_busy "$CLIENT_CPU")
	rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
	p99=$(awk '$1 == "99%" { v = $2; u = v; sub(/[a-z]+$/, "", v);
	    sub(/^[0-9.]+/, "", u);
	    if (u == "us") m = 1; else if (u == "ms") m = 1000;
	    else if (u == "s") m = 1000000; else m = 60000000;
	    printf "%.0f\n", v * m }' "$out")
	bad=$(awk '/Non-2xx|Socket errors/' "$out")
	[ -n "$bad" ] && note "$name round $round: $(tr '\n' ' ' <<<"$bad")"
	[ -n "$rps" ] || { note "$name round $round: wrk failed: $(head -3 "$out")"; rps=0; p99=0; }
	echo "$rps ${p99:-0} $(( 100 * (b0 - a0) * 1000000000 / CLK_TCK / (ns1 - ns0) )) $(( 100 * (b1 - a1) / (u1 - t1 + 1) ))" \
	    "$(awk -v r="$rps" -v t=$((b0 - a0)) -v hz="$CLK_TCK" -v ns=$((ns1 - ns0)) \
	    'BEGIN { printf "%.0f", t ? r * ns / 1e9 / (t / hz) : 0 }')" >> "$tmp/res/$name"
}

# median NAME FIELD: median of one column of $tmp/res/NAME.
median() {
	awk -v f="$2" '{ print $f }' "$tmp/res/$1" | sort -g |
	    awk '{ v[NR] = $1 } END { if (NR == 0) { print 0; exit }
	    if (NR % 2) print v[(NR + 1) / 2];
	    else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Warm-up: every system, both paths, one short run (not recorded).
for s in "${OK[@]}"; do
	for path in /c/obj /p/obj; do
		taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s \
		    "http://127.0.0.1:${PORT[$s]}$path" >/dev/null 2>&1
	done
done

# The numbers mean little if something else runs on these two CPUs.
read -r a0 t0 < <(cpu_busy "$PROXY_CPU"); read -r a1 t1 < <(cpu_busy "$CLIENT_CPU")
sleep 1
read -r b0 u0 < <(cpu_busy "$PROXY_CPU"); read -r b1 u1 < <(cpu_busy "$CLIENT_CPU")
IDLE_BUSY="cpu$PROXY_CPU $(( 100 * (b0 - a0) / (u0 - t0 + 1) ))%, cpu$CLIENT_CPU $(( 100 * (b1 - a1) / (u1 - t1 + 1) ))%"
note "busy before the runs (should be ~0): $IDLE_BUSY"

note "measuring: ${OK[*]}; $ROUNDS round(s) of ${DUR}s runs, $CONNS connections"
for round in $(seq "$ROUNDS"); do
	for s in "${OK[@]}"; do
		run_wrk "hit.$s" "${PORT[$s]}" /c/obj "${MAINPID[$s]}"
	done
	run_wrk "pass.origin" "$ORIGIN_PORT" /p/obj
	for s in "${OK[@]}"; do
		run_wrk "pass.$s" "${PORT[$s]}" /p/obj "${MAINPID[$s]}"
	done
done

# Every cached run must have left the origin alone: one probe per system.
for s in "${OK[@]}"; do
	before=$(wc -l < "$tmp/origin/probe.log")
	curl -s -o /dev/null -H 'X-Bench-Probe: 1' "http://127.0.0.1:${PORT[$s]}/c/obj"
	after=$(wc -l < "$tmp/origin/probe.log")
	[ "$after" = "$before" ] || note "$s: after the runs, /c/obj is no longer a hit"
done

# --- report -----------------------------------------------------------

echo
echo "== stoa http_bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "stoa:    $("$STOA_BIN" -V 2>&1 | head -n 1) ($STOA_BIN)"
echo "nginx:   $("$NGINX_BIN" -v 2>&1 | head -n 1)"
[ -x "$HAPROXY_BIN" ] && echo "haproxy: $("$HAPROXY_BIN" -v 2>&1 | head -n 1)"
[ -x "$VARNISHD_BIN" ] && echo "varnish: $("$VARNISHD_BIN" -V 2>&1 | head -n 1)"
echo "wrk:     $(wrk -v 2>&1 | head -n 1)"
echo "host:    $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
echo "setup:   proxy on CPU $PROXY_CPU (1 worker); origin (nginx, 1 worker) and wrk -t1 -c$CONNS on CPU $CLIENT_CPU;"
echo "         ${DUR}s per run, median of $ROUNDS interleaved round(s); 1 KiB object, max-age=3600"
echo "         CPU busy before the runs: $IDLE_BUSY; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-14s %-8s %12s %10s %6s %6s %12s\n' scenario system 'req/s' 'p99' 'proxy%' "cpu$CLIENT_CPU%" 'req/cpu-s'
fmt_p99() { awk -v u="$1" 'BEGIN { if (u >= 10000) printf "%.1fms", u / 1000;
    else if (u >= 1000) printf "%.2fms", u / 1000; else printf "%dus", u }'; }
row() {
	printf '%-14s %-8s %12.0f %10s %6s %6s %12.0f\n' "$1" "$2" "$(median "$3" 1)" \
	    "$(fmt_p99 "$(median "$3" 2)")" "$(median "$3" 3)" "$(median "$3" 4)" \
	    "$(median "$3" 5)"
}
for s in "${OK[@]}"; do row "cache hit" "$s" "hit.$s"; done
printf '%-14s %-8s %12.0f %10s %6s %6s %12s\n' "proxy pass" origin \
    "$(median pass.origin 1)" "$(fmt_p99 "$(median pass.origin 2)")" - \
    "$(median pass.origin 4)" -
echo "               (origin direct: wrk straight to the origin, both on CPU $CLIENT_CPU)"
for s in "${OK[@]}"; do row "proxy pass" "$s" "pass.$s"; done
echo "proxy%: CPU time of the proxy's processes / wall time (100 = all of CPU $PROXY_CPU);"
echo "cpu$CLIENT_CPU%: how busy CPU $CLIENT_CPU (wrk, and the origin in proxy pass) was."
echo "req/cpu-s: requests per second of the proxy's own CPU time (robust to other load)."

case " ${OK[*]} " in *" stoa "*)
	echo
	echo "stoa / peer: req/s and req/cpu-s (higher is better for stoa), p99 (lower is better):"
	for sc in hit pass; do
		for s in "${OK[@]}"; do
			[ "$s" = stoa ] && continue
			awk -v sc="$sc" -v s="$s" -v a="$(median "$sc.stoa" 1)" \
			    -v b="$(median "$sc.$s" 1)" -v pa="$(median "$sc.stoa" 2)" \
			    -v pb="$(median "$sc.$s" 2)" -v ca="$(median "$sc.stoa" 5)" \
			    -v cb="$(median "$sc.$s" 5)" 'BEGIN {
				printf "  %-5s vs %-8s req/s %5.2fx   req/cpu-s %5.2fx   p99 %5.2fx\n",
				    sc, s, b ? a / b : 0, cb ? ca / cb : 0, pb ? pa / pb : 0 }'
		done
	done
	awk -v a="$(median pass.stoa 1)" -v b="$(median pass.origin 1)" 'BEGIN {
		printf "  pass  vs origin   req/s %5.2fx\n", b ? a / b : 0 }'
	;;
esac
if [ -s "$tmp/stoa/error.log" ]; then
	echo
	echo "stoa error log (last lines):"
	tail -n 5 "$tmp/stoa/error.log"
fi
exit 0
