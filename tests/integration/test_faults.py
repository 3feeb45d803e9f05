"""Faults: an origin that resets mid-response or closes a pooled
connection just as it is reused, a 1 GB body to a slow reader, workers
killed during a cache fill and during WebSocket tunnels.  Nothing may hang
(every wait is bounded), nothing may leak (descriptors, upstream
connections, tunnels).  Each scenario is listed in tests/README.md."""

import os
import signal
import socket
import threading
import time

import pytest

from helpers import (RawConn, RawWs, WsBackend, conf_cache, conf_cache_route,
                     conf_route, conf_upstream, http_get, http_request,
                     server_side_pid, vm_rss_kb, wait_until)
from recorder import CLOSE, RESET, Recorder

MB = 1 << 20
BLOCK = bytes(range(256)) * 4096            # 1 MiB


def nfds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def small(req, tag=b"ok"):
    body = tag + b" " + req.target + b"\n"
    return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))


def _stoa(stoa_factory, origin, workers=1, **kw):
    return stoa_factory(conf_upstream("o", [origin.addr])
                        + conf_route("/", "o"), workers=workers, **kw)


@pytest.fixture
def recorders():
    made = []

    def make(**kw):
        r = Recorder(**kw).start()
        made.append(r)
        return r
    yield make
    for r in made:
        r.stop()


def fds_settle(pids, limit, timeout=5.0):
    wait_until(lambda: sum(nfds(p) for p in pids) <= limit, timeout, 0.1,
               "worker descriptors back to <= %d" % limit)


# ------------------------------------- hop-by-hop names in a response

def hop_handler(req):
    body = b"hop\n"
    return [b"HTTP/1.1 200 OK\r\n"
            b"Connection: keep-alive ,\tX-Hop-Resp, x-other-hop \r\n"
            b"X-Hop-Resp: 1\r\nX-Other-Hop: 2\r\nX-Hop-Resp2: kept\r\n"
            b"X-Kept: 3\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)]


def test_response_headers_named_by_connection_are_dropped(stoa_factory,
                                                          recorders):
    """An origin's Connection header names hop-by-hop fields (RFC 9110
    7.6.1): stoa drops them, and only them (a longer name with the same
    prefix stays), whatever the spacing and case of the list."""
    rec = recorders(handler=hop_handler)
    st = _stoa(stoa_factory, rec)
    r = http_get(st.port, "/hop", host="f.test")
    assert r.status == 200 and r.body == b"hop\n"
    names = {k.lower() for k, _ in r.headers}
    assert "x-hop-resp" not in names and "x-other-hop" not in names, r
    assert "x-hop-resp2" in names and "x-kept" in names, r


# ------------------------------------------------ reset mid-response

def reset_handler(req):
    if req.target == b"/reset-cl":
        return [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (4 * MB),
                BLOCK, 0.05, RESET]
    if req.target == b"/reset-chunked":
        return [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"%x\r\n" % len(BLOCK), BLOCK, b"\r\n", 0.05, RESET]
    if req.target == b"/reset-head":
        return [b"HTTP/1.1 200 OK\r\nContent-Le", 0.05, RESET]
    if req.target == b"/reset-before":
        return [RESET]
    return small(req)


@pytest.mark.parametrize("target", ["/reset-cl", "/reset-chunked"])
def test_origin_reset_mid_body_truncates_visibly(stoa_factory, recorders,
                                                 target):
    """The client sees the head, part of the body, then the connection
    closed: never a complete-looking response (no final chunk, no short
    Content-Length body passing as whole)."""
    rec = recorders(handler=reset_handler)
    st = _stoa(stoa_factory, rec)
    w = st.worker_pids()
    assert http_get(st.port, "/warm", host="f.test").status == 200
    base = sum(nfds(p) for p in w)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", st.port), 10) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: f.test\r\n\r\n"
                      % target.encode())
            rc = RawConn(s, 10)
            with pytest.raises(EOFError):
                rc.read_response()
        r = http_get(st.port, "/after-reset", host="f.test")
        assert r.status == 200 and r.body == b"ok /after-reset\n"
    fds_settle(w, base + 1)


@pytest.mark.parametrize("target,method", [("/reset-head", "GET"),
                                           ("/reset-before", "POST")])
def test_origin_reset_before_response_is_502(stoa_factory, recorders,
                                             target, method):
    rec = recorders(handler=reset_handler)
    st = _stoa(stoa_factory, rec)
    w = st.worker_pids()
    assert http_get(st.port, "/warm", host="f.test").status == 200
    base = sum(nfds(p) for p in w)
    for _ in range(3):
        r = http_request(st.port, method, target, host="f.test",
                         body=b"x" if method == "POST" else None)
        assert r.status == 502, r
        r = http_get(st.port, "/after-reset", host="f.test")
        assert r.status == 200 and r.body == b"ok /after-reset\n"
    fds_settle(w, base + 1)


# ------------------------------------ pooled connection closed at reuse

class CloseOnReuse:
    """Answers the first request of each connection; closes the connection
    when a second one arrives on it, without answering (a server whose
    keep-alive timeout fired just as the proxy reused the connection)."""

    def __init__(self):
        self.per_conn = {}
        self.lock = threading.Lock()

    def __call__(self, req):
        with self.lock:
            n = self.per_conn.get(req.conn_no, 0)
            self.per_conn[req.conn_no] = n + 1
        if n >= 1:
            return [CLOSE]
        return small(req)


def test_pooled_connection_closed_at_reuse_is_retried(stoa_factory,
                                                      recorders):
    rec = recorders(handler=CloseOnReuse())
    st = _stoa(stoa_factory, rec)
    for i in range(10):
        r = http_get(st.port, "/reuse-%d" % i, host="f.test")
        assert r.status == 200 and r.body == b"ok /reuse-%d\n" % i, r
    # stoa did reuse (and found each pooled connection dead)
    assert len(rec.conns) >= 10
    assert len(rec.requests) > 10
    # a request whose retry is not allowed (POST) fails cleanly instead
    r = http_request(st.port, "POST", "/reuse-post", host="f.test",
                     body=b"x")
    assert r.status in (200, 502), r
    r = http_get(st.port, "/after", host="f.test")
    assert r.status == 200


def test_origin_closes_pooled_connection_after_delay(stoa_factory,
                                                     recorders):
    """The origin closes each connection 0.2 s after its first response
    (no Connection: close).  Requests around that moment all succeed:
    either stoa saw the close on the idle connection, or it retries."""
    rec = recorders(close_after=True, close_delay=0.2)
    st = _stoa(stoa_factory, rec)
    w = st.worker_pids()
    for i, pause in enumerate([0.0, 0.19, 0.2, 0.21, 0.15, 0.25, 0.18,
                               0.22, 0.2, 0.1]):
        time.sleep(pause)
        r = http_get(st.port, "/delayed-%d" % i, host="f.test")
        assert r.status == 200 and r.body.startswith(b"rec "), r
    time.sleep(0.5)
    fds_settle(w, sum(nfds(p) for p in w))


# ----------------------------------------------- 1 GB to a slow reader

GB = 1 << 30


def gb_handler(req):
    if req.target != b"/gb":
        return small(req)

    def gen():
        yield (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream"
               b"\r\nContent-Length: %d\r\n\r\n" % GB)
        for _ in range(GB // len(BLOCK)):
            yield BLOCK
    return gen()


@pytest.mark.skipif(os.environ.get("STOA_SKIP_HUGE") == "1",
                    reason="STOA_SKIP_HUGE=1")
def test_one_gigabyte_to_slow_reader_memory_bounded(stoa_factory,
                                                    recorders):
    rec = recorders(handler=gb_handler)
    st = _stoa(stoa_factory, rec, timeouts={"client_idle": "30s",
                                            "upstream_read": "30s"})
    w = st.worker_pids()[0]
    assert http_get(st.port, "/warm", host="f.test").status == 200
    base = vm_rss_kb(w)
    peak = base
    s = socket.create_connection(("127.0.0.1", st.port), 30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(b"GET /gb HTTP/1.1\r\nHost: f.test\r\nConnection: close\r\n\r\n")
    buf = bytearray(1 << 20)
    head = b""
    while b"\r\n\r\n" not in head:
        n = s.recv_into(buf, 4096)
        assert n, "closed before the head"
        head += bytes(buf[:n])
    hend = head.index(b"\r\n\r\n") + 4
    assert head.startswith(b"HTTP/1.1 200 ")
    got = len(head) - hend
    t0 = time.monotonic()
    # slow: 64 KiB every 10 ms for 1.5 s, while the origin pushes
    while time.monotonic() - t0 < 1.5:
        got += s.recv_into(buf, 65536)
        time.sleep(0.01)
        peak = max(peak, vm_rss_kb(w) or 0)
    # then everything, as fast as we can
    last = time.monotonic()
    while True:
        n = s.recv_into(buf)
        if not n:
            break
        got += n
        if time.monotonic() - last > 0.1:
            peak = max(peak, vm_rss_kb(w) or 0)
            last = time.monotonic()
    s.close()
    assert got == GB, got
    growth_mb = (peak - base) / 1024
    assert growth_mb < 64, "worker RSS grew by %.0f MB" % growth_mb


# --------------------------------------------- worker killed mid-fill

def slow_fill(req):
    body = b"F" * (2 * MB)
    if req.target.startswith(b"/c/"):
        return [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body),
                body[:MB], 1.0, body[MB:]]
    return small(req)


def test_worker_killed_during_cache_fill(stoa_factory, recorders):
    rec = recorders(handler=slow_fill)
    st = stoa_factory(conf_upstream("o", [rec.addr])
                      + conf_cache_route("/c/", "o", ttl="30s")
                      + conf_route("/", "o"), workers=2,
                      extra=conf_cache(size="16m", lock_timeout="1s"))
    s = socket.create_connection(("127.0.0.1", st.port), 10)
    s.sendall(b"GET /c/fill HTTP/1.1\r\nHost: f.test\r\n\r\n")
    s.settimeout(10)
    assert s.recv(1) == b"H"                      # the fill is under way
    victim = server_side_pid(st.port, s, st.worker_pids())
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    s.settimeout(5)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    s.close()
    wait_until(lambda: len(st.worker_pids()) == 2
               and victim not in st.worker_pids(), 5, 0.05,
               "the killed worker to be replaced")
    # the key is not stuck behind a dead filler, and no half entry is
    # served: every answer is the whole body
    for i in range(4):
        t0 = time.monotonic()
        r = http_get(st.port, "/c/fill", host="f.test", timeout=10)
        assert time.monotonic() - t0 < 4.0
        assert r.status == 200 and r.body == b"F" * (2 * MB), \
            (r.status, len(r.body), r.header("X-Cache"))
    assert r.header("X-Cache") == "HIT"


# --------------------------------------- worker killed with tunnels open

@pytest.fixture
def wsback():
    b = WsBackend("aiohttp")
    yield b
    b.stop()


def test_worker_killed_with_open_tunnels(stoa_factory, wsback):
    st = stoa_factory(conf_upstream("a", [wsback.addr])
                      + conf_route("/ws", "a", websocket="true")
                      + conf_route("/", "a"), workers=2)
    tunnels = [RawWs(st.port, timeout=5) for _ in range(6)]
    for i, ws in enumerate(tunnels):
        assert ws.response.status == 101
        ws.send("hi %d" % i)
        assert ws.recv() == (1, b"hi %d" % i)
    wait_until(lambda: wsback.ws_count()["open"] == 6, 5, 0.05,
               "6 open tunnels at the backend")
    owners = {server_side_pid(st.port, ws.sock, st.worker_pids())
              for ws in tunnels}
    assert None not in owners
    victim = owners.pop()
    os.kill(victim, signal.SIGKILL)
    # the victim's tunnels end at once on both sides; the others live on
    survivors = []
    for ws in tunnels:
        ws.sock.settimeout(0.5)
        try:
            ws.send("ping")
            op, data = ws.recv()
            assert data == b"ping"
            survivors.append(ws)
        except (EOFError, OSError, socket.timeout):
            pass
    assert len(survivors) < 6
    wait_until(lambda: wsback.ws_count()["open"] == len(survivors), 5, 0.05,
               "the backend to see the killed worker's tunnels closed")
    wait_until(lambda: len(st.worker_pids()) == 2
               and victim not in st.worker_pids(), 5, 0.05,
               "the killed worker to be replaced")
    # new tunnels and plain requests work
    ws = RawWs(st.port, timeout=5)
    assert ws.response.status == 101
    ws.send("again")
    assert ws.recv() == (1, b"again")
    ws.close()
    for w in tunnels:
        w.close()
    wait_until(lambda: wsback.ws_count()["open"] == 0, 5, 0.05,
               "every tunnel closed at the backend")
