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
# TLS 1.3 (both servers on OpenSSL's defaults), ALPN h2.
#
# Environment (all optional):
#   STOA_BIN      stoa binary (default: src/stoa of this tree)
#   NGINX_BIN     default /usr/sbin/nginx     (peer and origin)
#   DUR=5         seconds per h2load run (plus 1 s of warm-up)
#   ROUNDS=3      interleaved rounds; the table shows the median
#   CONNS=20 STREAMS=10   h2load connections and streams per connection
#   PROXY_CPU=0 CLIENT_CPU=1   CPUs for taskset (origin and h2load share CLIENT_CPU)
#   KEEP=1        keep the scratch directory (configs, logs, raw output)

set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

for arg in "$@"; do
	case $arg in
	--quick) DUR=2; ROUNDS=1 ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
		exit 0 ;;
	*) echo "h2_bench: unknown argument: $arg" >&2; exit 2 ;;
	esac
done

STOA_BIN=${STOA_BIN:-$root/src/stoa}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-20}
STREAMS=${STREAMS:-10}
PROXY_CPU=${PROXY_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

die() { echo "h2_bench: $*" >&2; exit 1; }
note() { echo "h2_bench: $*" >&2; }

for t in h2load curl openssl taskset; do
	command -v $t >/dev/null || die "$t is required (h2load: nghttp2-client)"
done
[ -x "$STOA_BIN" ] || die "no stoa binary at $STOA_BIN (build first or set STOA_BIN)"
[ -x "$NGINX_BIN" ] || die "nginx is required ($NGINX_BIN)"
"$NGINX_BIN" -V 2>&1 | grep -q -- --with-http_v2_module ||
    die "$NGINX_BIN has no HTTP/2 module"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stoa-h2bench.XXXXXX") || exit 1
chmod 755 "$tmp"
shm=$(mktemp -d /dev/shm/stoa-h2bench.XXXXXX 2>/dev/null) || shm=$tmp/shm
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
# free_port: print a TCP port below the ephemeral range that nothing uses.
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

# wait_https PORT PATH: up to 10 s for a 200 over h2 (certificate checked).
wait_https() {
	local _
	for _ in $(seq 100); do
		[ "$(curl -s --http2 --cacert "$tmp/pki/ca.pem" \
		    --resolve "bench.test:$1:127.0.0.1" -o /dev/null \
		    -w '%{http_code}' "https://bench.test:$1$2")" = 200 ] && return 0
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

# --- origin: nginx serving two 1 KiB files, max-age=3600 ---------------

ORIGIN_PORT=$(free_port)
mkdir -p "$tmp/origin/www/c" "$tmp/origin/www/p" "$tmp/origin/tmp"
head -c 1024 /dev/zero | tr '\0' 'x' > "$tmp/origin/www/c/obj"
cp "$tmp/origin/www/c/obj" "$tmp/origin/www/p/obj"
chmod -R a+rX "$tmp/origin"
# Requests carrying X-Bench-Probe are logged: the cache check counts them.
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
for _ in $(seq 100); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' \
	    "http://127.0.0.1:$ORIGIN_PORT/p/obj")" = 200 ] && break
	sleep 0.1
done

# --- the two proxies --------------------------------------------------

declare -A PORT MAINPID

start_stoa() {
	local d=$tmp/stoa
	mkdir -p "$d"
	cat > "$d/stoa.conf" <<EOF
workers    = 1
listen     = {"127.0.0.1:$(free_port)"}
pid_file   = "$d/stoa.pid"
error_log  = "$d/error.log"
access_log = off
log_level  = warn
tls {
  listen      = {"127.0.0.1:${PORT[stoa]}"}
  certificate = "$CERT"
  key         = "$KEY"
}
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
	taskset -c "$PROXY_CPU" "$STOA_BIN" -c "$d/stoa.conf" >"$d/stderr" 2>&1 &
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
	ssl_certificate $CERT;
	ssl_certificate_key $KEY;
	ssl_protocols TLSv1.2 TLSv1.3;
	ssl_session_cache off;
	upstream origin {
		server 127.0.0.1:$ORIGIN_PORT;
		keepalive 32;
		keepalive_requests 10000000;
	}
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
}
EOF
	taskset -c "$PROXY_CPU" "$NGINX_BIN" -e "$d/error.log" -c "$d/nginx.conf" \
	    >"$d/stderr" 2>&1 &
	PIDS+=($!)
}

OK=()
for s in stoa nginx; do
	PORT[$s]=$(free_port)
	"start_$s" || { note "skipping $s: it did not start"; continue; }
	MAINPID[$s]=${PIDS[-1]}
	if ! wait_https "${PORT[$s]}" /p/obj; then
		note "skipping $s: no answer: $(tail -n 5 "$tmp/$s/stderr" "$tmp/$s/error.log" 2>/dev/null)"
		continue
	fi
	OK+=("$s")
done
[ ${#OK[@]} -gt 0 ] || die "no proxy started"

# --- checks: h2 negotiated, right body, cache hits leave the origin alone

check() {
	local s=$1 url="https://bench.test:${PORT[$1]}" h before after
	local c=(curl -s --http2 --cacert "$tmp/pki/ca.pem" --resolve "bench.test:${PORT[$1]}:127.0.0.1")
	[ "$("${c[@]}" -o "$tmp/$s.body" -w '%{http_version}' "$url/p/obj")" = 2 ] ||
	    { note "$s: HTTP/2 not negotiated"; return 1; }
	cmp -s "$tmp/$s.body" "$tmp/origin/www/p/obj" || { note "$s: wrong body"; return 1; }
	for _ in 1 2 3; do "${c[@]}" -o /dev/null "$url/c/obj"; done
	before=$(wc -l < "$tmp/origin/probe.log")
	h=$("${c[@]}" -D - -o "$tmp/$s.body" -H 'X-Bench-Probe: 1' "$url/c/obj")
	after=$(wc -l < "$tmp/origin/probe.log")
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

# tree_ticks PID: user+system clock ticks of PID and its children.
tree_ticks() {
	local p all=$1
	for p in $(pgrep -P "$1"); do all="$all $p"; done
	for p in $all; do cat "/proc/$p/stat" 2>/dev/null; done |
	    awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t + 0 }'
}
CLK_TCK=$(getconf CLK_TCK)

# run NAME SYSTEM PATH: one h2load run; appends "rps proxy% failed
# req_per_cpu_s" to $tmp/res/NAME and keeps the raw output.
run() {
	local name=$1 s=$2 path=$3 out a b ns0 ns1 rps failed
	mkdir -p "$tmp/res" "$tmp/raw"
	out=$tmp/raw/$name.$round
	a=$(tree_ticks "${MAINPID[$s]}")
	ns0=$(date +%s%N)
	taskset -c "$CLIENT_CPU" h2load -t1 -c"$CONNS" -m"$STREAMS" \
	    --warm-up-time=1 -D"$DUR" "https://127.0.0.1:${PORT[$s]}$path" \
	    >"$out" 2>&1
	ns1=$(date +%s%N)
	b=$(tree_ticks "${MAINPID[$s]}")
	rps=$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($i == "req/s,") print $(i - 1) }' "$out")
	failed=$(awk '/^requests:/ { f = 0; for (i = 1; i <= NF; i++)
	    if ($i ~ /^(failed|errored|timeout),?$/) f += $(i - 1); print f }' "$out")
	grep -q '^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx' "$out" || failed=$((${failed:-0} + 1))
	[ "${failed:-1}" = 0 ] || note "$name round $round: errors: $(grep -E '^(requests|status codes):' "$out" | tr '\n' ' ')"
	# h2load's req/s covers DUR only, the CPU ticks the whole run (with the
	# warm-up and the handshakes): req/cpu-s assumes that rate throughout.
	echo "${rps:-0} $(( 100 * (b - a) * 1000000000 / CLK_TCK / (ns1 - ns0) )) ${failed:-1}" \
	    "$(awk -v r="${rps:-0}" -v t=$((b - a)) -v hz="$CLK_TCK" -v ns=$((ns1 - ns0)) \
	    'BEGIN { printf "%.0f", t ? r * ns / 1e9 / (t / hz) : 0 }')" >> "$tmp/res/$name"
}

median() {
	awk -v f="$2" '{ print $f }' "$tmp/res/$1" | sort -g |
	    awk '{ v[NR] = $1 } END { if (NR == 0) { print 0; exit }
	    if (NR % 2) print v[(NR + 1) / 2];
	    else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
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
echo "== stoa h2_bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "stoa:    $("$STOA_BIN" -V 2>&1 | head -n 1) ($STOA_BIN)"
echo "nginx:   $("$NGINX_BIN" -v 2>&1 | head -n 1)"
echo "h2load:  $(h2load --version 2>&1 | head -n 1); $tls_line"
echo "host:    $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
echo "setup:   proxy on CPU $PROXY_CPU (1 worker, TLS + h2, same certificate);"
echo "         origin (nginx, 1 worker) and h2load -t1 -c$CONNS -m$STREAMS on CPU $CLIENT_CPU;"
echo "         ${DUR}s per run after 1 s warm-up, median of $ROUNDS interleaved round(s); 1 KiB object"
echo
printf '%-12s %-8s %12s %8s %12s %8s\n' scenario system 'req/s' 'proxy%' 'req/cpu-s' errors
for sc in hit pass; do
	for s in "${GOOD[@]}"; do
		printf '%-12s %-8s %12.0f %8s %12.0f %8s\n' \
		    "$([ $sc = hit ] && echo 'cache hit' || echo 'proxy pass')" "$s" \
		    "$(median "$sc.$s" 1)" "$(median "$sc.$s" 2)" "$(median "$sc.$s" 4)" \
		    "$(awk '{ t += $3 } END { print t + 0 }' "$tmp/res/$sc.$s")"
	done
done
echo "proxy%: CPU time of the proxy's processes / wall time (100 = all of CPU $PROXY_CPU);"
echo "req/cpu-s: requests per second of the proxy's own CPU time (robust to other load)."
case " ${GOOD[*]} " in *" stoa "*" nginx "*)
	echo
	echo "stoa / nginx (target: req/s >= 1.00x):"
	for sc in hit pass; do
		awk -v sc="$sc" -v a="$(median "$sc.stoa" 1)" -v b="$(median "$sc.nginx" 1)" \
		    -v ca="$(median "$sc.stoa" 4)" -v cb="$(median "$sc.nginx" 4)" \
		    'BEGIN { printf "  %-5s req/s %5.2fx   req/cpu-s %5.2fx\n", sc,
		    b ? a / b : 0, cb ? ca / cb : 0 }'
	done
	;;
esac
if [ -s "$tmp/stoa/error.log" ]; then
	echo
	echo "stoa error log (last lines):"
	tail -n 5 "$tmp/stoa/error.log"
fi
exit 0
