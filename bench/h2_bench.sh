#!/bin/bash
# h2_bench.sh -- HTTP/2 over TLS: stoa against nginx with h2load, one worker
# each on one CPU, the same certificate and the same origin.  Not a test.
#
# Usage: bench/h2_bench.sh [--quick]       (--quick: DUR=2 ROUNDS=1)
#
# Scenarios (1 KiB object, Cache-Control: max-age=3600 from the origin):
#   cache hit   GET /c/obj, cached by the proxy (the origin stays idle)
#   proxy pass  GET /p/obj, forwarded over keep-alive upstream connections
# Client: h2load -t1 -c$CONNS -m$STREAMS for DUR seconds after a warm-up,
# TLS 1.3 (both servers on OpenSSL's defaults), ALPN h2.  p99 is computed
# from h2load's --log-file (per request: stream opened to end of response).
#
# Environment (all optional):
#   STOA_BIN      stoa binary (default: src/stoa of this tree)
#   NGINX_BIN     default /usr/sbin/nginx     (peer and origin)
#   DUR=5         seconds per h2load run (plus 1 s of warm-up)
#   ROUNDS=3      interleaved rounds; the table shows the median
#   CONNS=20 STREAMS=10   h2load connections and streams per connection
#   PROXY_CPU=0 CLIENT_CPU=1   CPUs for taskset (origin and h2load share CLIENT_CPU)
#   NO_INSTALL=1  do not apt-get missing tools
#   KEEP=1        keep the scratch directory (configs, logs, raw output)
#
# Besides the table it prints "RESULT <scenario> <system> <metric> <value>"
# lines for bench/run: scenarios h2_hit and h2_pass.

set -u
. "$(dirname "$0")/lib.sh"

parse_args "$@"

DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-20}
STREAMS=${STREAMS:-10}

install_missing "$NGINX_BIN:nginx-light" h2load:nghttp2-client
require h2load curl openssl
[ -x "$STOA_BIN" ] || die "no stoa binary at $STOA_BIN (build first or set STOA_BIN)"
[ -x "$NGINX_BIN" ] || die "nginx is required ($NGINX_BIN)"
"$NGINX_BIN" -V 2>&1 | grep -q -- --with-http_v2_module ||
    die "$NGINX_BIN has no HTTP/2 module"

bench_init shm

# h2curl PORT ARGS...: curl over TLS + h2 to bench.test:PORT, certificate
# checked against the bench CA.
h2curl() {
	local port=$1
	shift
	curl -s -m 5 --http2 --cacert "$tmp/pki/ca.pem" \
	    --resolve "bench.test:$port:127.0.0.1" "$@"
}

# wait_https PORT PATH: up to 10 s for a 200 over h2.
wait_https() {
	for _ in $(seq 100); do
		[ "$(h2curl "$1" -o /dev/null -w '%{http_code}' \
		    "https://bench.test:$1$2")" = 200 ] && return 0
		sleep 0.1
	done
	return 1
}

# --- certificate: a throw-away CA and bench.test, shared by both ------

mkdir -p "$tmp/pki"
(
	cd "$tmp/pki" || exit 1
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout ca.key -out ca.pem -days 2 -subj "/CN=stoa bench CA" \
	    -addext basicConstraints=critical,CA:TRUE \
	    -addext keyUsage=critical,keyCertSign,cRLSign &&
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout key.pem -out req.csr -subj "/CN=bench.test" &&
	printf 'subjectAltName=DNS:bench.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext &&
	openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key \
	    -CAcreateserial -out cert.pem -days 2 -extfile ext
) >"$tmp/pki/log" 2>&1 || die "openssl: $(tail -n 3 "$tmp/pki/log")"
chmod 644 "$tmp/pki/"*.pem
CERT=$tmp/pki/cert.pem
KEY=$tmp/pki/key.pem

start_static_origin

# --- the two proxies --------------------------------------------------

declare -A PORT MAINPID

start_stoa() {
	local plain
	free_port plain		# stoa needs a plain listener too
	{
		cat <<EOF
tls {
  listen      = {"127.0.0.1:${PORT[stoa]}"}
  certificate = "$CERT"
  key         = "$KEY"
}
EOF
		stoa_cache_routes
	} | stoa_conf "$tmp/stoa" "$plain"
	launch_stoa "$tmp/stoa"
}

start_nginx() {
	nginx_conf "$tmp/nginx" <<EOF
$(nginx_cache_zone)
	ssl_certificate $CERT;
	ssl_certificate_key $KEY;
	ssl_protocols TLSv1.2 TLSv1.3;
	ssl_session_cache off;
$(nginx_upstream_origin)
	server {
		listen 127.0.0.1:${PORT[nginx]} ssl http2;
		server_name bench.test;
		proxy_http_version 1.1;
		proxy_set_header Connection "";
		proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
		proxy_set_header X-Forwarded-Proto \$scheme;
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

OK=()
ready() { wait_https "${PORT[$1]}" /p/obj; }
for s in stoa nginx; do
	start_system "$s" ready || continue
	OK+=("$s")
done
[ ${#OK[@]} -gt 0 ] || die "no proxy started"

# --- checks: h2 negotiated, right body, cache hits leave the origin alone

check() {
	local s=$1 p=${PORT[$1]} url="https://bench.test:${PORT[$1]}" h before after
	[ "$(h2curl "$p" -o "$tmp/$s.body" -w '%{http_version}' "$url/p/obj")" = 2 ] ||
	    { note "$s: HTTP/2 not negotiated"; return 1; }
	cmp -s "$tmp/$s.body" "$tmp/origin/www/p/obj" || { note "$s: wrong body"; return 1; }
	for _ in 1 2 3; do h2curl "$p" -o /dev/null "$url/c/obj"; done
	before=$(probes)
	h=$(h2curl "$p" -D - -o "$tmp/$s.body" -H 'X-Bench-Probe: 1' "$url/c/obj")
	after=$(probes)
	cmp -s "$tmp/$s.body" "$tmp/origin/www/c/obj" || { note "$s: wrong /c/ body"; return 1; }
	[ "$after" = "$before" ] || { note "$s: a cache hit reached the origin"; return 1; }
	case $s in
	stoa) grep -qi '^x-cache: HIT' <<<"$h" ;;
	nginx) grep -qi '^x-cache-status: HIT' <<<"$h" ;;
	esac || { note "$s: no cache-hit marker: $(tr -d '\r' <<<"$h" | tr '\n' '|')"; return 1; }
}
GOOD=()
for s in "${OK[@]}"; do
	check "$s" && GOOD+=("$s")
done
[ ${#GOOD[@]} -gt 0 ] || die "no proxy passed the checks"

# --- measurement ------------------------------------------------------

# p99_log FILE: the 99th percentile of the third column of h2load's
# --log-file (microseconds from the request to the end of its response),
# over the requests that succeeded.
p99_log() {
	awk -F'\t' '$2 != -1 { print $3 }' "$1" | sort -n |
	    awk '{ v[NR] = $1 } END { if (NR == 0) { print 0; exit }
	    i = int(NR * 0.99); if (i < NR * 0.99) i++; print v[i] }'
}

# run NAME SYSTEM PATH: one h2load run; appends "rps proxy% failed
# req_per_cpu_s p99_us" to $tmp/res/NAME and keeps the raw output.
run() {
	local name=$1 s=$2 path=$3 out a b ns0 ns1 rps failed p99
	out=$tmp/raw/$name.$round
	a=$(tree_ticks "${MAINPID[$s]}")
	ns0=$(date +%s%N)
	taskset -c "$CLIENT_CPU" timeout $((DUR + 60)) h2load -t1 -c"$CONNS" \
	    -m"$STREAMS" --warm-up-time=1 -D"$DUR" --log-file="$out.log" \
	    "https://127.0.0.1:${PORT[$s]}$path" >"$out" 2>&1
	ns1=$(date +%s%N)
	b=$(tree_ticks "${MAINPID[$s]}")
	rps=$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($i == "req/s,") print $(i - 1) }' "$out")
	failed=$(awk '/^requests:/ { f = 0; for (i = 1; i <= NF; i++)
	    if ($i ~ /^(failed|errored|timeout),?$/) f += $(i - 1); print f }' "$out")
	grep -q '^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx' "$out" || failed=$((${failed:-0} + 1))
	[ "${failed:-1}" = 0 ] || note "$name round $round: errors: $(grep -E '^(requests|status codes):' "$out" | tr '\n' ' ')"
	p99=$(p99_log "$out.log")
	[ "${KEEP:-0}" = 1 ] || rm -f "$out.log"
	# h2load's req/s covers DUR only, the CPU ticks the whole run (with the
	# warm-up and the handshakes): req/cpu-s assumes that rate throughout.
	echo "${rps:-0} $(( 100 * (b - a) * 1000000000 / CLK_TCK / (ns1 - ns0) )) ${failed:-1}" \
	    "$(awk -v r="${rps:-0}" -v t=$((b - a)) -v hz="$CLK_TCK" -v ns=$((ns1 - ns0)) \
	    'BEGIN { printf "%.0f", t ? r * ns / 1e9 / (t / hz) : 0 }')" "$p99" >> "$tmp/res/$name"
}

note "measuring: ${GOOD[*]}; $ROUNDS round(s) of ${DUR}s, h2load -c$CONNS -m$STREAMS"
for round in $(seq "$ROUNDS"); do
	for s in "${GOOD[@]}"; do
		run "hit.$s" "$s" /c/obj
		run "pass.$s" "$s" /p/obj
	done
done

# --- report -----------------------------------------------------------

tls_line=$(grep -h -E '^(TLS Protocol|Cipher):' "$tmp/raw/pass.${GOOD[0]}.1" | tr '\n' ' ')
echo
banner h2_bench stoa nginx h2load
echo "tls:      $tls_line"
echo "setup:    proxy on CPU $PROXY_CPU (1 worker, TLS + h2, same certificate);"
echo "          origin (nginx, 1 worker) and h2load -t1 -c$CONNS -m$STREAMS on CPU $CLIENT_CPU;"
echo "          ${DUR}s per run after 1 s warm-up, median of $ROUNDS interleaved round(s); 1 KiB object"
echo
printf '%-12s %-8s %12s %10s %8s %12s %8s\n' scenario system 'req/s' p99 'proxy%' 'req/cpu-s' errors
for sc in hit pass; do
	for s in "${GOOD[@]}"; do
		printf '%-12s %-8s %12.0f %10s %8s %12.0f %8s\n' \
		    "$([ $sc = hit ] && echo 'cache hit' || echo 'proxy pass')" "$s" \
		    "$(median "$sc.$s" 1)" "$(fmt_us "$(median "$sc.$s" 5)")" \
		    "$(median "$sc.$s" 2)" "$(median "$sc.$s" 4)" \
		    "$(awk '{ t += $3 } END { print t + 0 }' "$tmp/res/$sc.$s")"
	done
done
echo "p99: 99th percentile of h2load's per-request times (--log-file: request to end of response)."
echo "proxy%: CPU time of the proxy's processes / wall time (100 = all of CPU $PROXY_CPU);"
echo "req/cpu-s: requests per second of the proxy's own CPU time (robust to other load)."
case " ${GOOD[*]} " in *" stoa nginx "*)	# both passed the checks
	echo
	echo "stoa / nginx (target: req/s >= 1.00x):"
	for sc in hit pass; do
		awk -v sc="$sc" -v a="$(median "$sc.stoa" 1)" -v b="$(median "$sc.nginx" 1)" \
		    -v ca="$(median "$sc.stoa" 4)" -v cb="$(median "$sc.nginx" 4)" \
		    -v pa="$(median "$sc.stoa" 5)" -v pb="$(median "$sc.nginx" 5)" \
		    'BEGIN { printf "  %-5s req/s %5.2fx   req/cpu-s %5.2fx   p99 %5.2fx\n", sc,
		    b ? a / b : 0, cb ? ca / cb : 0, pb ? pa / pb : 0 }'
	done
	;;
esac
if [ -s "$tmp/stoa/error.log" ]; then
	echo
	echo "stoa error log (last lines):"
	tail -n 5 "$tmp/stoa/error.log"
fi

echo
for sc in hit pass; do
	for s in "${GOOD[@]}"; do
		result "h2_$sc" "$s" rate "$(median "$sc.$s" 1)"
		result "h2_$sc" "$s" p99_ms "$(us_to_ms "$(median "$sc.$s" 5)")"
	done
done
exit 0
