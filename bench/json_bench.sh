#!/bin/bash
# json_bench.sh -- JSON round-trip: a 31 KB JSON POST to an aiohttp origin
# that parses it and answers it re-serialised, straight to the origin and
# through stoa, nginx and HAProxy (plain reverse proxies, keep-alive
# upstream, one worker each).  Not a test; see README.md.
#
# Usage: bench/json_bench.sh [--quick]      (--quick: DUR=2 ROUNDS=1)
#
# The origin (bench/json_origin.py) and wrk share CLIENT_CPU, the proxy has
# PROXY_CPU: through a proxy the origin and the client do the same work as
# without one, so the proxy's cost shows as the distance to "direct".
#
# Environment (all optional):
#   STOA_BIN      stoa binary (default: src/stoa of this tree)
#   NGINX_BIN     default /usr/sbin/nginx
#   HAPROXY_BIN   default /usr/sbin/haproxy
#   PYTHON3       default /usr/bin/python3 (needs aiohttp)
#   DUR=5         seconds per wrk run
#   ROUNDS=3      interleaved rounds; the table shows the median
#   CONNS=16      wrk connections (wrk -t1)
#   PROXY_CPU=0 CLIENT_CPU=1
#   SYSTEMS="stoa nginx haproxy"   (direct is always measured)
#   NO_INSTALL=1  do not apt-get missing peers (they are skipped instead)
#   KEEP=1        keep the scratch directory (configs, logs, raw wrk output)
#
# Besides the table it prints "RESULT json <system> <metric> <value>"
# lines for bench/run.  Target (issue 8): stoa >= 0.98 x direct.

set -u
. "$(dirname "$0")/lib.sh"

parse_args "$@"

PYTHON3=${PYTHON3:-/usr/bin/python3}
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
SYSTEMS=${SYSTEMS:-stoa nginx haproxy}

install_missing "$NGINX_BIN:nginx-light" "$HAPROXY_BIN:haproxy" wrk:wrk
require wrk curl cmp
"$PYTHON3" -c 'import aiohttp' 2>/dev/null ||
    die "$PYTHON3 has no aiohttp (set PYTHON3, or apt-get install python3-aiohttp)"

bench_init

# --- the body, the wrk script, the origin -----------------------------

BODY=$tmp/body.json
"$PYTHON3" "$here/json_origin.py" --body > "$BODY" || die "cannot generate the body"

# POST the body; count answers that are not 200 (thread-local counters,
# summed in done()).
cat > "$tmp/post.lua" <<EOF
local f = assert(io.open("$BODY", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

local threads = {}
function setup(thread)
	table.insert(threads, thread)
end
function init(args)
	bad = 0
end
function response(status, headers, body)
	if status ~= 200 then
		bad = bad + 1
	end
end
function done(summary, latency, requests)
	local n = 0
	for _, t in ipairs(threads) do
		n = n + t:get("bad")
	end
	io.write(string.format("not_200 %d\n", n))
end
EOF

free_port ORIGIN_PORT
spawn "$CLIENT_CPU" "$tmp/origin.out" "$PYTHON3" "$here/json_origin.py" --port "$ORIGIN_PORT"
ORIGIN_PID=$LAUNCHED
wait_port "$ORIGIN_PORT" 150 || die "the origin did not start: $(tail -n 5 "$tmp/origin.out")"

# --- proxies ----------------------------------------------------------

declare -A PORT MAINPID
PORT[direct]=$ORIGIN_PORT
MAINPID[direct]=

start_stoa() {
	stoa_conf "$tmp/stoa" "${PORT[stoa]}" <<EOF
upstream origin {
  server    = {"127.0.0.1:$ORIGIN_PORT"}
  keepalive = 32
}
route / { upstream = origin }
EOF
	launch_stoa "$tmp/stoa"
}

# nginx buffers a request body before it forwards it; a buffer larger than
# the body keeps it in memory (the default 16k would write it to a file).
start_nginx() {
	nginx_conf "$tmp/nginx" <<EOF
	client_body_buffer_size 64k;
$(nginx_upstream_origin)
	server {
		listen 127.0.0.1:${PORT[nginx]};
		location / {
			proxy_pass http://origin;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
		}
	}
EOF
	launch_nginx "$tmp/nginx"
}

start_haproxy() {
	haproxy_conf "$tmp/haproxy" <<EOF
frontend fe
	bind 127.0.0.1:${PORT[haproxy]}
	option forwardfor
	default_backend be

backend be
	http-reuse always
	server origin 127.0.0.1:$ORIGIN_PORT
EOF
	launch_haproxy "$tmp/haproxy"
}

# check SYSTEM: a POST of the body comes back 200, application/json, equal
# to what was sent.
check() {
	local s=$1 got
	got=$(curl -s -m 10 -o "$tmp/$s.echo" -w '%{http_code} %{content_type}' \
	    -H 'Content-Type: application/json' --data-binary "@$BODY" \
	    "http://127.0.0.1:${PORT[$s]}/echo")
	case $got in
	"200 application/json"*) ;;
	*) note "$s: POST /echo answered '$got'"; return 1 ;;
	esac
	cmp -s "$tmp/$s.echo" "$BODY" || { note "$s: the echoed JSON differs from the body"; return 1; }
}

check direct || die "the origin does not echo the body"
OK=(direct)
ready() { wait_port "${PORT[$1]}" && check "$1"; }
for s in $SYSTEMS; do
	start_system "$s" ready || continue
	OK+=("$s")
done

# --- measurement ------------------------------------------------------

# run SYSTEM: one wrk run (wrk_once); a run with answers other than 200 is
# reported.
run() {
	local s=$1 n
	wrk_once "json.$s" "http://127.0.0.1:${PORT[$s]}/echo" "${MAINPID[$s]}" \
	    -s "$tmp/post.lua"
	n=$(awk '$1 == "not_200" { print $2 }' "$tmp/raw/json.$s.$round")
	[ "${n:-x}" = 0 ] || note "$s round $round: ${n:-?} answers were not 200"
}

round=0
for s in "${OK[@]}"; do		# warm-up, not recorded
	taskset -c "$CLIENT_CPU" timeout 60 wrk -t1 -c"$CONNS" -d1s -s "$tmp/post.lua" \
	    "http://127.0.0.1:${PORT[$s]}/echo" >/dev/null 2>&1
done
IDLE_BUSY=$(busy_now)
note "measuring: ${OK[*]}; $ROUNDS round(s) of ${DUR}s, $CONNS connections"
for round in $(seq "$ROUNDS"); do
	for s in "${OK[@]}"; do
		run "$s"
	done
done
kill -0 "$ORIGIN_PID" 2>/dev/null || note "the origin died during the runs"

# --- report -----------------------------------------------------------

echo
banner json_bench stoa nginx haproxy wrk
echo "origin:   $("$PYTHON3" -c 'import sys, aiohttp; print("aiohttp", aiohttp.__version__, "on Python", sys.version.split()[0])') (json_origin.py)"
echo "setup:    proxy on CPU $PROXY_CPU (1 worker); origin (aiohttp, 1 process) and wrk -t1 -c$CONNS on CPU $CLIENT_CPU;"
echo "          POST /echo of $(wc -c < "$BODY") bytes of JSON, answered re-serialised;"
echo "          ${DUR}s per run, median of $ROUNDS interleaved round(s)"
echo "          CPU busy before the runs: $IDLE_BUSY; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-8s %10s %10s %10s %6s %6s\n' system 'req/s' p99 'x direct' 'proxy%' "cpu$CLIENT_CPU%"
d=$(median json.direct 1)
for s in "${OK[@]}"; do
	r=$(median "json.$s" 1)
	printf '%-8s %10.0f %10s %10s %6s %6s\n' "$s" "$r" "$(fmt_us "$(median "json.$s" 2)")" \
	    "$(awk -v a="$r" -v b="$d" 'BEGIN { printf "%.3f", b ? a / b : 0 }')" \
	    "$([ "$s" = direct ] && echo - || median "json.$s" 3)" "$(median "json.$s" 4)"
done
echo "proxy%: CPU time of the proxy's processes / wall time (100 = all of CPU $PROXY_CPU);"
echo "cpu$CLIENT_CPU%: how busy CPU $CLIENT_CPU (wrk and the origin) was."
case " ${OK[*]} " in *" stoa "*)
	echo
	awk -v a="$(median json.stoa 1)" -v b="$d" 'BEGIN {
	    printf "stoa / direct: %.3f   (target >= 0.98)\n", b ? a / b : 0 }'
	;;
esac

echo
for s in "${OK[@]}"; do
	result json "$s" rate "$(median "json.$s" 1)"
	result json "$s" p99_ms "$(us_to_ms "$(median "json.$s" 2)")"
done
exit 0
