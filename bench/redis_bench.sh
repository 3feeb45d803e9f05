#!/bin/bash
# redis_bench.sh -- cache-hit throughput of stoa with the Redis cache
# backend, against stoa's memory backend and nginx proxy_cache.  Not a
# test; see README.md, section "Redis cache hit".
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
#   NO_INSTALL=1  do not apt-get missing nginx, redis-server, wrk
#   KEEP=1        keep the scratch directory (configs, logs, raw output)
#
# Target (issue 5): redis-backed hits >= 0.5 x memory-backed hits.

set -u
. "$(dirname "$0")/lib.sh"

parse_args "$@"

REDIS_BIN=${REDIS_BIN:-$(command -v redis-server || echo /usr/bin/redis-server)}
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
REDIS_TIMEOUT=${REDIS_TIMEOUT:-250ms}

install_missing "$NGINX_BIN:nginx-light" "$REDIS_BIN:redis-server" wrk:wrk
require wrk curl ss
[ -x "$STOA_BIN" ] || die "no stoa binary at $STOA_BIN (build first or set STOA_BIN)"
[ -x "$NGINX_BIN" ] || die "nginx is required ($NGINX_BIN)"
[ -x "$REDIS_BIN" ] || die "redis-server is required ($REDIS_BIN)"

bench_init shm
start_static_origin

# --- redis-server: no persistence, on the client's CPU -------------------

free_port REDIS_PORT
mkdir -p "$tmp/redis"
spawn "$CLIENT_CPU" /dev/null "$REDIS_BIN" --port "$REDIS_PORT" --bind 127.0.0.1 \
    --save "" --appendonly no --daemonize no --dir "$tmp/redis" \
    --logfile "$tmp/redis/redis.log"
REDIS_PID=$LAUNCHED
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
	local name=$1
	free_port "PORT[$name]"
	free_port "ADMIN[$name]"
	{
		echo "admin      = \"127.0.0.1:${ADMIN[$name]}\""
		stoa_cache_routes "$2"
	} | stoa_conf "$tmp/$name" "${PORT[$name]}"
	launch_stoa "$tmp/$name" || return 1
	MAINPID[$name]=$LAUNCHED
}

start_nginx() {
	free_port "PORT[nginx]"
	nginx_conf "$tmp/nginx" <<EOF
$(nginx_cache_zone)
$(nginx_upstream_origin)
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
EOF
	launch_nginx "$tmp/nginx"
	MAINPID[nginx]=$LAUNCHED
}

SYSTEMS=(stoa-memory stoa-redis nginx)
start_stoa stoa-memory "backend = memory  size = 64m" || die "stoa (memory) did not start"
start_stoa stoa-redis "backend = redis  redis = \"redis://127.0.0.1:$REDIS_PORT/0\"  redis_timeout = $REDIS_TIMEOUT" ||
    die "stoa (redis) did not start"
start_nginx
for s in "${SYSTEMS[@]}"; do
	wait_http "${PORT[$s]}" /c/obj || die "$s: no answer: $(log_tail "$tmp/$s")"
done

# check_hit NAME: a hit marker, the right body, and no origin request.
check_hit() {
	local s=$1 url="http://127.0.0.1:${PORT[$1]}/c/obj" h before after
	for _ in $(seq 100); do		# stoa-redis connects in the background
		h=$(curl -s -m 5 -D - -o "$tmp/$s.body" -H 'X-Bench-Probe: 1' "$url")
		grep -qiE '^X-Cache(-Status)?: HIT' <<<"$h" && break
		sleep 0.1
	done
	before=$(probes)
	for _ in 1 2 3 4 5; do
		curl -s -m 5 -o /dev/null -H 'X-Bench-Probe: 1' "$url"
	done
	after=$(probes)
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
	curl -s -m 5 "http://127.0.0.1:${ADMIN[$1]}/stats" |
	    sed -n 's/.*"cache":{[^}]*"'"$2"'":\([0-9]*\).*/\1/p'
}

# --- measurement ------------------------------------------------------------

# run_wrk SYSTEM: one wrk run (wrk_once); for stoa, the hit and BYPASS
# counters of /stats around it must account for every request.
run_wrk() {
	local s=$1 h0 h1 b0 b1 n
	case $s in stoa-*) h0=$(stoa_stat "$s" hits); b0=$(stoa_stat "$s" bypass) ;; esac
	wrk_once "$s" "http://127.0.0.1:${PORT[$s]}/c/obj" "${MAINPID[$s]}"
	case $s in stoa-*)
		h1=$(stoa_stat "$s" hits); b1=$(stoa_stat "$s" bypass)
		n=$(awk '/requests in/ { print $1 }' "$tmp/raw/$s.$round")
		[ $((b1 - b0)) -gt 0 ] &&
		    note "$s round $round: $((b1 - b0)) BYPASS of ${n:-?} requests (Redis slower than $REDIS_TIMEOUT?)"
		[ -n "$n" ] && [ $((h1 - h0)) -lt "$n" ] &&
		    note "$s round $round: $((h1 - h0)) hits counted for $n requests"
		;;
	esac
}

for s in "${SYSTEMS[@]}"; do		# warm-up
	taskset -c "$CLIENT_CPU" timeout 60 wrk -t1 -c"$CONNS" -d1s \
	    "http://127.0.0.1:${PORT[$s]}/c/obj" >/dev/null 2>&1
done
note "measuring ${SYSTEMS[*]}: $ROUNDS round(s) of ${DUR}s, $CONNS connections"
for round in $(seq "$ROUNDS"); do
	for s in "${SYSTEMS[@]}"; do
		run_wrk "$s"
	done
done

# still hits after the load (a Redis that fell over would BYPASS now)
for s in "${SYSTEMS[@]}"; do
	curl -s -m 5 -D - -o /dev/null "http://127.0.0.1:${PORT[$s]}/c/obj" |
	    grep -qiE '^X-Cache(-Status)?: HIT' || note "$s: /c/obj is no longer a hit after the runs"
done
kill -0 "$REDIS_PID" 2>/dev/null || note "redis-server died during the runs"

mem=$(median stoa-memory)
red=$(median stoa-redis)
ngx=$(median nginx)
echo
banner redis_bench stoa nginx wrk
echo "redis:    $("$REDIS_BIN" --version | head -n 1)"
echo "setup:    proxy (1 worker) on CPU $PROXY_CPU; origin nginx, redis-server and wrk -t1 -c$CONNS on CPU $CLIENT_CPU;"
echo "          ${DUR}s per run, median of $ROUNDS interleaved round(s); 1 KiB object, max-age=3600, cache hits only"
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
