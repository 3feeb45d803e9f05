#!/bin/sh
# soak.sh -- run a mixed load through stoa for a bounded time and check
# that memory and descriptors do not grow.
#
#   bench/soak.sh                     (SOAK_SECONDS=60 by default)
#   SOAK_SECONDS=600 STOA_BIN=build/src/stoa bench/soak.sh
#
# Load, from concurrent client threads: cache hits, cache misses, uploads
# (POST 256 KiB), downloads, WebSocket sessions (open, echo, close),
# and errors (404, 400, 413, 502 from a dead upstream, a client that
# disconnects mid-response).  Origins are the integration-test backends
# (tests/integration/backends: cache_app.py, aio_app.py, ws_aiohttp.py).
#
# RSS (private resident memory, RssAnon, summed over master and workers)
# and open descriptors are sampled after a
# warm-up round and again after the load, once connections have settled.
# Exit 0 when RSS grew by less than SOAK_RSS_SLACK_KB (default 16384) and
# descriptors by at most SOAK_FD_SLACK (default 4); 1 otherwise; 2 when
# the setup failed.  Environment: STOA_BIN, PYTHON3 (default
# /usr/bin/python3), SOAK_SECONDS, SOAK_CLIENTS (threads per kind,
# default 4).

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
STOA_BIN=${STOA_BIN:-$top/src/stoa}
PYTHON3=${PYTHON3:-/usr/bin/python3}
export STOA_BIN SOAK_TOP="$top"
export SOAK_SECONDS=${SOAK_SECONDS:-60}
export SOAK_CLIENTS=${SOAK_CLIENTS:-4}
export SOAK_RSS_SLACK_KB=${SOAK_RSS_SLACK_KB:-16384}
export SOAK_FD_SLACK=${SOAK_FD_SLACK:-4}
export PYTHONDONTWRITEBYTECODE=1
export ASAN_OPTIONS="quarantine_size_mb=8:${ASAN_OPTIONS:-}"

[ -x "$STOA_BIN" ] || { echo "soak: $STOA_BIN not executable" >&2; exit 2; }

exec "$PYTHON3" - <<'EOF'
import os, shutil, signal, socket, sys, tempfile, threading, time

top = os.environ["SOAK_TOP"]
sys.path.insert(0, os.path.join(top, "tests", "integration"))
from helpers import (Backend, CacheOrigin, RawConn, RawWs, WsBackend,  # noqa
                     conf_cache, conf_cache_route, conf_route, conf_upstream,
                     free_port, http_request, children, vm_rss_kb,
                     wait_until, port_accepts, stop_process, sweep_group)
import subprocess

SECONDS = float(os.environ["SOAK_SECONDS"])
CLIENTS = int(os.environ["SOAK_CLIENTS"])
RSS_SLACK = int(os.environ["SOAK_RSS_SLACK_KB"])
FD_SLACK = int(os.environ["SOAK_FD_SLACK"])
HOST = "soak.test"

tmp = tempfile.mkdtemp(prefix="stoa-soak.")
procs = []
stoa = None


def cleanup():
    if stoa is not None:
        stop_process(stoa, signal.SIGTERM, 10)
        sweep_group(stoa.pid)
    for b in procs:
        b.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def setup():
    global stoa
    origin = CacheOrigin("aiohttp")
    procs.append(origin)
    app = Backend("aiohttp")
    procs.append(app)
    ws = WsBackend("aiohttp")
    procs.append(ws)
    port = free_port()
    dead = free_port()
    conf = os.path.join(tmp, "stoa.conf")
    with open(conf, "w") as f:
        f.write("\n".join([
            "workers = 2",
            'listen = {"127.0.0.1:%d"}' % port,
            'pid_file = "%s/stoa.pid"' % tmp,
            'error_log = "%s/error.log"' % tmp,
            "access_log = off",
            "log_level = warn",
            "timeouts { client_header = 5s client_idle = 5s "
            "upstream_connect = 1s upstream_read = 10s }",
            "limits { max_body_size = 1m }",
            conf_cache(size="32m"),
            conf_upstream("origin", [origin.addr]),
            conf_upstream("app", [app.addr]),
            conf_upstream("ws", [ws.addr]),
            conf_upstream("dead", ["127.0.0.1:%d" % dead], max_fails=0),
            conf_cache_route("/c/", "origin", ttl="2s"),
            conf_route("/ws", "ws", websocket="true"),
            conf_route("/dead/", "dead"),
            conf_route("/", "app"),
        ]) + "\n")
    out = open(os.path.join(tmp, "stoa.out"), "wb")
    stoa = subprocess.Popen([os.environ["STOA_BIN"], "-c", conf], stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    wait_until(lambda: port_accepts(port) and len(children(stoa.pid)) == 2,
               15, 0.05, "stoa to start")
    return port


def nfds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def rss_anon_kb(pid):
    """Private resident memory: the shared cache zone fills up under the
    miss load, and its pages would otherwise count as growth."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return vm_rss_kb(pid) or 0


def sample():
    pids = [stoa.pid] + children(stoa.pid)
    return (sum(rss_anon_kb(p) for p in pids),
            sum(nfds(p) for p in pids), pids)


counts = {}
errors = {}
lock = threading.Lock()


def count(kind, ok):
    with lock:
        d = counts if ok else errors
        d[kind] = d.get(kind, 0) + 1


def req(port, method, target, body=None, want=200):
    r = http_request(port, method, target, host=HOST, body=body, timeout=15)
    return r.status == want, r


def hit(port, i):
    ok, r = req(port, "GET", "/c/hot%d" % (i % 8))
    return ok


def miss(port, i):
    # unique across threads (they count i alike): a repeated key is a HIT
    ok, r = req(port, "GET", "/c/miss?n=%d-%s" % (i, os.urandom(8).hex()))
    return ok and r.header("X-Cache") == "MISS"


def upload(port, i):
    body = os.urandom(256 * 1024)
    ok, r = req(port, "POST", "/sink", body=body)
    return ok and r.json()["bytes"] == len(body)


def download(port, i):
    ok, r = req(port, "GET", "/big?n=%d" % (512 * 1024))
    return ok and len(r.body) == 512 * 1024


def websocket(port, i):
    w = RawWs(port, timeout=10)
    try:
        if w.response.status != 101:
            return False
        for j in range(5):
            w.send("m%d-%d" % (i, j))
            if w.recv() != (1, b"m%d-%d" % (i, j)):
                return False
        return True
    finally:
        w.close()


def errors_mix(port, i):
    k = i % 5
    if k == 0:
        return req(port, "GET", "/status/404", want=404)[0]
    if k == 1:
        with socket.create_connection(("127.0.0.1", port), 5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            r = RawConn(s, 5).read_response()
            return r is not None and r.status == 400
    if k == 2:
        return req(port, "POST", "/sink", body=b"x" * (2 << 20), want=413)[0]
    if k == 3:
        return req(port, "GET", "/dead/x", want=502)[0]
    # a client that goes away mid-response
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (8 << 20))
        s.recv(1000)
    return True


KINDS = [hit, miss, upload, download, websocket, errors_mix]


def worker(port, fn, deadline):
    i = 0
    while time.monotonic() < deadline:
        try:
            ok = fn(port, i)
        except Exception as e:                 # noqa: BLE001
            ok = False
            key = "exc:%s:%s" % (fn.__name__, type(e).__name__)
            with lock:
                errors[key] = errors.get(key, 0) + 1
        count(fn.__name__, ok)
        i += 1


def run(port, seconds):
    deadline = time.monotonic() + seconds
    ts = [threading.Thread(target=worker, args=(port, fn, deadline),
                           daemon=True)
          for fn in KINDS for _ in range(CLIENTS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 60)


def settle():
    time.sleep(6)          # client_idle 5s: idle keep-alives are gone


try:
    try:
        port = setup()
    except Exception as e:                     # noqa: BLE001
        print("soak: setup failed: %s" % e)
        cleanup()
        sys.exit(2)
    run(port, min(5.0, SECONDS))               # warm-up: pools, caches, arenas
    settle()
    rss0, fd0, pids0 = sample()
    print("soak: before: rss %d KB, fds %d (pids %s)" % (rss0, fd0, pids0))
    counts.clear()
    errors.clear()
    t0 = time.monotonic()
    run(port, SECONDS)
    took = time.monotonic() - t0
    settle()
    rss1, fd1, pids1 = sample()
    print("soak: after %.0fs: rss %d KB, fds %d (pids %s)"
          % (took, rss1, fd1, pids1))
    print("soak: done %s" % sorted(counts.items()))
    print("soak: failed %s" % sorted(errors.items()))
    bad = []
    if pids1 != pids0:
        bad.append("the set of stoa processes changed (a worker died)")
    if rss1 - rss0 >= RSS_SLACK:
        bad.append("RSS grew by %d KB (slack %d)" % (rss1 - rss0, RSS_SLACK))
    if fd1 - fd0 > FD_SLACK:
        bad.append("descriptors grew by %d (slack %d)" % (fd1 - fd0, FD_SLACK))
    total = sum(counts.values())
    failed = sum(errors.values())
    if total == 0 or failed > total // 100:
        bad.append("%d of %d operations failed" % (failed, total + failed))
    if stoa.poll() is not None:
        bad.append("stoa exited with %s" % stoa.returncode)
    log = b""
    for name in ("error.log", "stoa.out"):
        try:
            with open(os.path.join(tmp, name), "rb") as f:
                log += f.read()
        except OSError:
            pass
    for pat in (b"AddressSanitizer", b"runtime error:", b"assertion failed"):
        if pat in log:
            bad.append("error log contains %r" % pat.decode())
    if bad:
        print("soak: FAIL: " + "; ".join(bad))
        sys.exit(1)
    print("soak: ok (rss %+d KB, fds %+d)" % (rss1 - rss0, fd1 - fd0))
    sys.exit(0)
finally:
    cleanup()
EOF
