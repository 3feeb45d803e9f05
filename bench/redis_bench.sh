#!/bin/bash
# redis_bench.sh -- cache-hit throughput of stoa with the Redis cache
# backend, against stoa's memory backend and nginx proxy_cache.  Not a
# test; see README.md, section "Redis cache backend".
#
# Usage: bench/redis_bench.sh [--quick]      (--quick: DUR=2 ROUNDS=1)
#
# Each proxy runs one worker on PROXY_CPU; the origin (nginx), wrk and the
# redis-server share CLIENT_CPU, so that Redis costs the client CPU, not the
# proxy's.  One 1 KiB object with max-age=3600, wrk -t1 -c64.  Every
# system's hit path is checked first (hit marker, no origin request); for
# stoa, /stats is read around each run, and a run whose requests were not
# all cache hits (BYPASS when Redis is slow) is reported.
#
# Environment (all optional):
#   STOA_BIN      stoa binary (default: src/stoa of this tree)
#   NGINX_BIN     default /usr/sbin/nginx     (peer and origin)
#   REDIS_BIN     default: redis-server on PATH
#   DUR=5 ROUNDS=3 CONNS=64    seconds per run, interleaved rounds (the
#                 table shows the median), wrk connections
#   PROXY_CPU=0 CLIENT_CPU=1
#   REDIS_TIMEOUT=250ms        stoa's cache.redis_timeout
#   KEEP=1        keep the scratch directory (configs, logs, raw output)
#
# Target (issue 5): redis-backed hits >= 0.5 x memory-backed hits.

set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

for arg in "$@"; do
	case $arg in
	--quick) DUR=2; ROUNDS=1 ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
		exit 0 ;;
	*) echo "redis_bench: unknown argument: $arg" >&2; exit 2 ;;
	esac
done

STOA_BIN=${STOA_BIN:-$root/src/stoa}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
REDIS_BIN=${REDIS_BIN:-$(command -v redis-server || echo /usr/bin/redis-server)}
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
REDIS_TIMEOUT=${REDIS_TIMEOUT:-250ms}

die() { echo "redis_bench: $*" >&2; exit 1; }
note() { echo "redis_bench: $*" >&2; }

for c in wrk curl taskset ss; do
	command -v $c >/dev/null || die "$c is required"
done
[ -x "$STOA_BIN" ] || die "no stoa binary at $STOA_BIN (build first or set STOA_BIN)"
[ -x "$NGINX_BIN" ] || die "nginx is required ($NGINX_BIN)"
[ -x "$REDIS_BIN" ] || die "redis-server is required ($REDIS_BIN)"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stoa-redisbench.XXXXXX") || exit 1
chmod 755 "$tmp"
shm=$(mktemp -d /dev/shm/stoa-redisbench.XXXXXX 2>/dev/null) || shm=$tmp/shm
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
read -r EPHEMERAL_LOW _ < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
EPHEMERAL_LOW=${EPHEMERAL_LOW:-32768}
[ "$EPHEMERAL_LOW" -gt 12000 ] || EPHEMERAL_LOW=61000
# free_port: a TCP port below the ephemeral range that nothing uses.
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
		case $USED_PORTS in *" $p "*) continue ;; esac
		if [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]; then
			USED_PORTS="$USED_PORTS$p "
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# wait_http PORT PATH [TENTHS]: until an HTTP 200 on PATH (10 s default).
wait_http() {
	for _ in $(seq "${3:-100}"); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' \
		    "http://127.0.0.1:$1$2")" = 200 ] && return 0
		sleep 0.1
	done
	return 1
}

# --- origin: nginx serving a 1 KiB file with max-age=3600 ---------------

ORIGIN_PORT=$(free_port)
mkdir -p "$tmp/origin/www/c" "$tmp/origin/tmp"
head -c 1024 /dev/zero | tr '\0' 'x' > "$tmp/origin/www/c/obj"
chmod -R a+rX "$tmp/origin"
# Requests with X-Bench-Probe are logged: the hit check counts them.
cat > "$tmp/origin/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/origin/nginx.pid;
error_log $tmp/origin/error.log warn;
events { worker_connections 4096; }
http {
	default_type text/plain;
	access_log off;
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

# --- redis-server: no persistence, on the client's CPU -------------------

REDIS_PORT=$(free_port)
mkdir -p "$tmp/redis"
taskset -c "$CLIENT_CPU" "$REDIS_BIN" --port "$REDIS_PORT" --bind 127.0.0.1 \
    --save "" --appendonly no --daemonize no --dir "$tmp/redis" \
    --logfile "$tmp/redis/redis.log" >/dev/null 2>&1 &
PIDS+=($!)
REDIS_PID=$!
# PING over bash's /dev/tcp (no redis-cli needed)
redis_ping() {
	local r
	{ exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT"; } 2>/dev/null || return 1
	printf 'PING\r\n' >&3
	read -r -t 1 r <&3
	exec 3<&-
	[ "${r%$'\r'}" = "+PONG" ]
}
for _ in $(seq 100); do redis_ping && break; sleep 0.1; done
redis_ping || die "redis-server did not start: $(tail -5 "$tmp/redis/redis.log")"

# --- the proxies ----------------------------------------------------------

declare -A PORT ADMIN MAINPID

# start_stoa NAME BACKEND-LINES: one worker on PROXY_CPU, an admin listener.
start_stoa() {
	local name=$1 d=$tmp/$1
	mkdir -p "$d"
	PORT[$name]=$(free_port)
	ADMIN[$name]=$(free_port)
	cat > "$d/stoa.conf" <<EOF
workers    = 1
listen     = {"127.0.0.1:${PORT[$name]}"}
admin      = "127.0.0.1:${ADMIN[$name]}"
pid_file   = "$d/stoa.pid"
error_log  = "$d/error.log"
access_log = off
log_level  = warn
cache { $2 }
upstream origin {
  server    = {"127.0.0.1:$ORIGIN_PORT"}
  keepalive = 32
}
route /c/ {
  upstream = origin
  cache { ttl = 60s }
}
EOF
	"$STOA_BIN" -t -c "$d/stoa.conf" >"$d/check" 2>&1 ||
	    { note "stoa -t: $(cat "$d/check")"; return 1; }
	taskset -c "$PROXY_CPU" "$STOA_BIN" -c "$d/stoa.conf" >"$d/stderr" 2>&1 &
	PIDS+=($!)
	MAINPID[$name]=$!
}

start_nginx() {
	local d=$tmp/nginx
	mkdir -p "$d/tmp" "$shm/nginx-cache"
	chmod 777 "$d/tmp" "$shm/nginx-cache"
	PORT[nginx]=$(free_port)
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
	}
	server {
		listen 127.0.0.1:${PORT[nginx]};
		proxy_http_version 1.1;
		proxy_set_header Connection "";
		location /c/ {
			proxy_pass http://origin;
			proxy_cache bench;
			proxy_cache_valid 200 60s;
			add_header X-Cache-Status \$upstream_cache_status;
		}
	}
}
EOF
	taskset -c "$PROXY_CPU" "$NGINX_BIN" -e "$d/error.log" -c "$d/nginx.conf" \
	    >"$d/stderr" 2>&1 &
	PIDS+=($!)
	MAINPID[nginx]=$!
}

SYSTEMS=(stoa-memory stoa-redis nginx)
start_stoa stoa-memory "backend = memory  size = 64m" || die "stoa (memory) did not start"
start_stoa stoa-redis "backend = redis  redis = \"redis://127.0.0.1:$REDIS_PORT/0\"  redis_timeout = $REDIS_TIMEOUT" ||
    die "stoa (redis) did not start"
start_nginx
for s in "${SYSTEMS[@]}"; do
	wait_http "${PORT[$s]}" /c/obj || die "$s: no answer: $(tail -n 5 "$tmp/$s/stderr" "$tmp/$s/error.log" 2>/dev/null)"
done

# check_hit NAME: a hit marker, the right body, and no origin request.
check_hit() {
	local s=$1 url="http://127.0.0.1:${PORT[$1]}/c/obj" h before after
	for _ in $(seq 100); do		# stoa-redis connects in the background
		h=$(curl -s -D - -o "$tmp/$s.body" -H 'X-Bench-Probe: 1' "$url")
		grep -qiE '^X-Cache(-Status)?: HIT' <<<"$h" && break
		sleep 0.1
	done
	before=$(wc -l < "$tmp/origin/probe.log")
	for _ in 1 2 3 4 5; do
		curl -s -o /dev/null -H 'X-Bench-Probe: 1' "$url"
	done
	after=$(wc -l < "$tmp/origin/probe.log")
	cmp -s "$tmp/$s.body" "$tmp/origin/www/c/obj" || { note "$s: wrong body"; return 1; }
	[ "$after" = "$before" ] || { note "$s: hits reached the origin"; return 1; }
	grep -qiE '^X-Cache(-Status)?: HIT' <<<"$h" ||
	    { note "$s: no cache-hit marker in: $(tr -d '\r' <<<"$h" | tr '\n' '|')"; return 1; }
}
for s in "${SYSTEMS[@]}"; do
	check_hit "$s" || die "$s does not serve cache hits"
done

# stoa_stat NAME FIELD: a number from the cache object of /stats.
stoa_stat() {
	curl -s "http://127.0.0.1:${ADMIN[$1]}/stats" |
	    sed -n 's/.*"cache":{[^}]*"'"$2"'":\([0-9]*\).*/\1/p'
}

# --- measurement ------------------------------------------------------------

mkdir -p "$tmp/res" "$tmp/raw"
run_wrk() {
	local s=$1 out=$tmp/raw/$1.$round rps bad h0 h1 b0 b1 n
	case $s in stoa-*) h0=$(stoa_stat "$s" hits); b0=$(stoa_stat "$s" bypass) ;; esac
	taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" \
	    "http://127.0.0.1:${PORT[$s]}/c/obj" > "$out" 2>&1
	rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
	bad=$(awk '/Non-2xx|Socket errors/' "$out")
	[ -n "$bad" ] && note "$s round $round: $(tr '\n' ' ' <<<"$bad")"
	[ -n "$rps" ] || { note "$s round $round: wrk failed: $(head -3 "$out")"; rps=0; }
	case $s in stoa-*)
		h1=$(stoa_stat "$s" hits); b1=$(stoa_stat "$s" bypass)
		n=$(awk '/requests in/ { print $1 }' "$out")
		[ $((b1 - b0)) -gt 0 ] &&
		    note "$s round $round: $((b1 - b0)) BYPASS of ${n:-?} requests (Redis slower than $REDIS_TIMEOUT?)"
		[ -n "$n" ] && [ $((h1 - h0)) -lt "$n" ] &&
		    note "$s round $round: $((h1 - h0)) hits counted for $n requests"
		;;
	esac
	echo "$rps" >> "$tmp/res/$s"
}
median() {
	sort -g "$tmp/res/$1" | awk '{ v[NR] = $1 } END { if (NR == 0) { print 0; exit }
	    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

for s in "${SYSTEMS[@]}"; do		# warm-up
	taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:${PORT[$s]}/c/obj" >/dev/null 2>&1
done
note "measuring ${SYSTEMS[*]}: $ROUNDS round(s) of ${DUR}s, $CONNS connections"
for round in $(seq "$ROUNDS"); do
	for s in "${SYSTEMS[@]}"; do
		run_wrk "$s"
	done
done

# still hits after the load (a Redis that fell over would BYPASS now)
for s in "${SYSTEMS[@]}"; do
	curl -s -D - -o /dev/null "http://127.0.0.1:${PORT[$s]}/c/obj" |
	    grep -qiE '^X-Cache(-Status)?: HIT' || note "$s: /c/obj is no longer a hit after the runs"
done
kill -0 "$REDIS_PID" 2>/dev/null || note "redis-server died during the runs"

mem=$(median stoa-memory)
red=$(median stoa-redis)
ngx=$(median nginx)
echo
echo "== stoa redis_bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "stoa:    $("$STOA_BIN" -V 2>&1 | head -n 1) ($STOA_BIN)"
echo "nginx:   $("$NGINX_BIN" -v 2>&1 | head -n 1)"
echo "redis:   $("$REDIS_BIN" --version | head -n 1)"
echo "wrk:     $(wrk -v 2>&1 | head -n 1)"
echo "host:    $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
echo "setup:   proxy (1 worker) on CPU $PROXY_CPU; origin nginx, redis-server and wrk -t1 -c$CONNS on CPU $CLIENT_CPU;"
echo "         ${DUR}s per run, median of $ROUNDS interleaved round(s); 1 KiB object, max-age=3600, cache hits only"
echo
printf '%-22s %12s %14s\n' system 'req/s' 'vs stoa-memory'
printf '%-22s %12.0f %14s\n' "stoa, memory backend" "$mem" 1.00
printf '%-22s %12.0f %14s\n' "stoa, redis backend" "$red" \
    "$(awk -v a="$red" -v b="$mem" 'BEGIN { printf "%.2f", b ? a / b : 0 }')"
printf '%-22s %12.0f %14s\n' "nginx proxy_cache" "$ngx" \
    "$(awk -v a="$ngx" -v b="$mem" 'BEGIN { printf "%.2f", b ? a / b : 0 }')"
echo "stoa redis / nginx proxy_cache: $(awk -v a="$red" -v b="$ngx" 'BEGIN { printf "%.2f", b ? a / b : 0 }')"
if awk -v a="$red" -v b="$mem" 'BEGIN { exit !(b > 0 && a >= 0.5 * b) }'; then
	echo "target (redis >= 0.5 x memory): met"
else
	echo "target (redis >= 0.5 x memory): NOT met"
fi
