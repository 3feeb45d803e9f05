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
#
# Besides the table it prints "RESULT <scenario> <system> <metric> <value>"
# lines for bench/run: scenarios cache_hit, proxy_pass (system "direct":
# wrk straight to the origin), instr_hit, instr_pass, and for stoa and
# nginx instr_h2_hit, instr_h2_pass (HTTP/2 without TLS, h2load).

set -u
. "$(dirname "$0")/lib.sh"

ALLOW_INSTR=1 parse_args "$@"

MODE=${MODE:-wrk}
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
SYSTEMS=${SYSTEMS:-stoa nginx haproxy varnish}

install_missing "$NGINX_BIN:nginx-light" "$HAPROXY_BIN:haproxy" \
    "$VARNISHD_BIN:varnish" wrk:wrk
require wrk curl
[ -x "$STOA_BIN" ] || die "no stoa binary at $STOA_BIN (build first or set STOA_BIN)"
[ -x "$NGINX_BIN" ] || die "nginx is required for the origin ($NGINX_BIN)"

bench_init shm
start_static_origin

# --- proxies ----------------------------------------------------------

declare -A PORT MAINPID
STARTED=()

start_stoa() {
	stoa_cache_routes | stoa_conf "$tmp/stoa" "${PORT[stoa]}"
	launch_stoa "$tmp/stoa"
}

start_nginx() {
	nginx_conf "$tmp/nginx" <<EOF
$(nginx_cache_zone)
$(nginx_upstream_origin)
	server {
		listen 127.0.0.1:${PORT[nginx]};
		${NGINX_H2C_PORT:+listen 127.0.0.1:$NGINX_H2C_PORT http2;}
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
EOF
	launch_nginx "$tmp/nginx"
}

start_haproxy() {
	haproxy_conf "$tmp/haproxy" <<EOF
cache bench
	total-max-size 64
	max-object-size 65536
	max-age 3600

frontend fe
	bind 127.0.0.1:${PORT[haproxy]}
	option forwardfor
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
	launch_haproxy "$tmp/haproxy"
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
	spawn "$PROXY_CPU" "$d/stderr" "$VARNISHD_BIN" -F -n "$d/n" \
	    -f "$d/default.vcl" -a "127.0.0.1:${PORT[varnish]}" -T none \
	    -s malloc,64m -p thread_pools=1
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

# h2c_client PORT PATH COUNT: COUNT GETs of PATH one after the other on one
# HTTP/2 connection (prior knowledge), probe-marked; fails unless all are
# 200.
h2c_client() {
	local out
	out=$(timeout 600 h2load -c1 -m1 -n "$3" -H 'X-Bench-Probe: 1' \
	    "http://127.0.0.1:$1$2" 2>&1)
	grep -q "status codes: $3 2xx" <<<"$out"
}

# instr_run SYSTEM PATH COUNT TAG [h2c]: start SYSTEM under callgrind, send
# COUNT requests for PATH (over HTTP/1.1, or HTTP/2 in cleartext: stoa takes
# it on its one port, nginx on a second, http2 one), stop it, and set
# INSTR_TOTAL to the instruction total of its busiest process (the worker:
# stoa and nginx fork theirs, HAProxy is one process).  Runs in this shell,
# so that PIDS stays complete.
instr_run() {
	local s=$1 path=$2 count=$3 tag=$4 proto=${5:-h1} m f t best=0 ok
	INSTR_TOTAL=0
	free_port "PORT[$s]"
	NGINX_H2C_PORT=
	[ "$s" = nginx ] && free_port NGINX_H2C_PORT
	mkdir -p "$tmp/cg"
	chmod 1777 "$tmp/cg"	# nginx workers write theirs as nobody
	WRAP=(valgrind --tool=callgrind "--callgrind-out-file=$tmp/cg/$s.$tag.%p")
	"start_$s" || return 1
	m=$LAUNCHED
	wait_http "${PORT[$s]}" /p/obj 600 || { stop_pid "$m"; return 1; }
	if [ "$proto" = h2c ]; then
		h2c_client "${NGINX_H2C_PORT:-${PORT[$s]}}" "$path" "$count"
	else
		timeout 600 "$PYTHON" "$tmp/kaclient.py" "${PORT[$s]}" "$path" "$count"
	fi
	ok=$?
	if [ "$ok" != 0 ]; then
		note "$s: bad responses on $path ($proto) under callgrind"
		stop_pid "$m"
		return 1
	fi
	stop_pid "$m"
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
	local s path a b lines0 lines1 v base=1000 n=${INSTR_N:-20000}
	local results=()
	require valgrind
	PYTHON=${PYTHON:-python3}
	write_client
	banner "http_bench --instr" stoa nginx haproxy valgrind
	echo "user-space instructions of the proxy's worker per request,"
	echo "sequential keep-alive client, (total($((base + n))) - total($base)) / $n"
	echo
	printf '%-8s %12s %12s %12s %12s\n' system 'cache hit' 'proxy pass' \
	    'h2c hit' 'h2c pass'
	for s in $SYSTEMS; do
		case $s in
		varnish) note "--instr: varnish is not measured (threads, VCL compiler)"; continue ;;
		haproxy) [ -x "$HAPROXY_BIN" ] || { note "skipping haproxy: $HAPROXY_BIN not found"; continue; } ;;
		esac
		printf '%-8s' "$s"
		for run in "h1 /c/obj instr_hit" "h1 /p/obj instr_pass" \
		    "h2c /c/obj instr_h2_hit" "h2c /p/obj instr_h2_pass"; do
			read -r proto path sc <<<"$run"
			if [ "$proto" = h2c ] && { [ "$s" = haproxy ] ||
			    ! command -v h2load >/dev/null; }; then
				printf ' %12s' -	# HTTP/2: stoa and nginx only
				continue
			fi
			lines0=$(probes)
			instr_run "$s" "$path" "$base" "$sc.a" "$proto" &&
			a=$INSTR_TOTAL &&
			instr_run "$s" "$path" $((base + n)) "$sc.b" "$proto" &&
			b=$INSTR_TOTAL ||
			    { printf ' %12s' failed; continue; }
			lines1=$(probes)
			# /c/obj: only the first request of each run may reach the origin.
			if [ "$path" = /c/obj ] && [ $((lines1 - lines0)) -gt 2 ]; then
				printf ' %12s' "no-cache($((lines1 - lines0)))"
				continue
			fi
			v=$(( (b - a) / n ))
			printf ' %12s' "$v"
			results+=("$(result "$sc" "$s" instr "$v")")
		done
		echo
	done
	echo
	printf '%s\n' ${results[@]+"${results[@]}"}
	exit 0
}

[ "$MODE" = instr ] && instr_mode	# does not return

ready() { wait_http "${PORT[$1]}" /p/obj; }
for s in $SYSTEMS; do
	start_system "$s" ready || continue
	STARTED+=("$s")
done
[ ${#STARTED[@]} -gt 0 ] || die "no proxy started"

# --- cache check ------------------------------------------------------

# check_hit SYSTEM: warm /c/obj, then make sure a repeated request is
# answered from the cache: the body is right, the system's own marker says
# so where it has one, and no probe request reached the origin.
check_hit() {
	local s=$1 url="http://127.0.0.1:${PORT[$1]}/c/obj" h before after
	for _ in 1 2 3; do curl -s -m 5 -o /dev/null "$url"; done
	sleep 1.1	# so that Age > 0 where a proxy reports it
	h=$(curl -s -m 5 -D - -o "$tmp/$s.body" -H 'X-Bench-Probe: 1' "$url")
	before=$(probes)
	for _ in 1 2 3 4 5; do
		curl -s -m 5 -o /dev/null -H 'X-Bench-Probe: 1' "$url"
	done
	after=$(probes)
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
cmp -s <(curl -s -m 5 "http://127.0.0.1:$ORIGIN_PORT/p/obj") "$tmp/origin/www/p/obj" ||
    die "origin serves a wrong body"
for s in "${OK[@]}"; do
	cmp -s <(curl -s -m 5 "http://127.0.0.1:${PORT[$s]}/p/obj") "$tmp/origin/www/p/obj" ||
	    die "$s: wrong body for /p/obj"
done

# --- measurement ------------------------------------------------------

# Warm-up: every system, both paths, one short run (not recorded).
for s in "${OK[@]}"; do
	for path in /c/obj /p/obj; do
		taskset -c "$CLIENT_CPU" timeout 60 wrk -t1 -c"$CONNS" -d1s \
		    "http://127.0.0.1:${PORT[$s]}$path" >/dev/null 2>&1
	done
done

# The numbers mean little if something else runs on these two CPUs.
IDLE_BUSY=$(busy_now)
note "busy before the runs (should be ~0): $IDLE_BUSY"

note "measuring: ${OK[*]}; $ROUNDS round(s) of ${DUR}s runs, $CONNS connections"
for round in $(seq "$ROUNDS"); do
	for s in "${OK[@]}"; do
		wrk_once "hit.$s" "http://127.0.0.1:${PORT[$s]}/c/obj" "${MAINPID[$s]}"
	done
	wrk_once "pass.direct" "http://127.0.0.1:$ORIGIN_PORT/p/obj" ""
	for s in "${OK[@]}"; do
		wrk_once "pass.$s" "http://127.0.0.1:${PORT[$s]}/p/obj" "${MAINPID[$s]}"
	done
done

# Every cached run must have left the origin alone: one probe per system.
for s in "${OK[@]}"; do
	before=$(probes)
	curl -s -m 5 -o /dev/null -H 'X-Bench-Probe: 1' "http://127.0.0.1:${PORT[$s]}/c/obj"
	after=$(probes)
	[ "$after" = "$before" ] || note "$s: after the runs, /c/obj is no longer a hit"
done

# --- report -----------------------------------------------------------

echo
banner http_bench stoa nginx haproxy varnish wrk
echo "setup:    proxy on CPU $PROXY_CPU (1 worker); origin (nginx, 1 worker) and wrk -t1 -c$CONNS on CPU $CLIENT_CPU;"
echo "          ${DUR}s per run, median of $ROUNDS interleaved round(s); 1 KiB object, max-age=3600"
echo "          CPU busy before the runs: $IDLE_BUSY; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-14s %-8s %12s %10s %6s %6s %12s\n' scenario system 'req/s' 'p99' 'proxy%' "cpu$CLIENT_CPU%" 'req/cpu-s'
row() {
	printf '%-14s %-8s %12.0f %10s %6s %6s %12s\n' "$1" "$2" "$(median "$3" 1)" \
	    "$(fmt_us "$(median "$3" 2)")" "$([ "$2" = origin ] && echo - || median "$3" 3)" \
	    "$(median "$3" 4)" "$([ "$2" = origin ] && echo - || printf '%.0f' "$(median "$3" 5)")"
}
for s in "${OK[@]}"; do row "cache hit" "$s" "hit.$s"; done
row "proxy pass" origin pass.direct
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
	awk -v a="$(median pass.stoa 1)" -v b="$(median pass.direct 1)" 'BEGIN {
		printf "  pass  vs origin   req/s %5.2fx\n", b ? a / b : 0 }'
	;;
esac
if [ -s "$tmp/stoa/error.log" ]; then
	echo
	echo "stoa error log (last lines):"
	tail -n 5 "$tmp/stoa/error.log"
fi

echo
for s in "${OK[@]}"; do
	result cache_hit "$s" rate "$(median "hit.$s" 1)"
	result cache_hit "$s" p99_ms "$(us_to_ms "$(median "hit.$s" 2)")"
done
for s in direct "${OK[@]}"; do
	result proxy_pass "$s" rate "$(median "pass.$s" 1)"
	result proxy_pass "$s" p99_ms "$(us_to_ms "$(median "pass.$s" 2)")"
done
exit 0
