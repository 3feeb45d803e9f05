"""HTTP/2 clients (SPEC "Proxying (HTTP/1.1 and HTTP/2 clients ...)"):
over TLS with ALPN h2, and h2c with prior knowledge on a plaintext
listener.  Each stream is routed, proxied and cached like an HTTP/1.1
request; request and response bodies are streamed with flow control.

Clients: curl, nghttp, h2load and helpers.H2Client (the h2 library over a
socket).  Certificates come from a throw-away CA (helpers.Pki).  Tools that
are not installed skip their tests; every wait is bounded.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import zlib

import pytest

pytest.importorskip("h2")                # python3-h2, for H2Client

from helpers import (Backend, CacheOrigin, H2Client, Pki, conf_cache_route,
                     conf_route, conf_tls, conf_upstream, curl, free_port,
                     pattern_chunks, pattern_crc, port_accepts, vm_rss_kb,
                     wait_until)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="openssl CLI not installed")


def needs(tool):
    return pytest.mark.skipif(shutil.which(tool) is None,
                              reason="%s not installed" % tool)


MB = 1 << 20


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="stoa-pki.")
    p = Pki(d)
    p.a = p.issue("a", ["a.test"])
    yield p
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def backend():
    b = Backend("aiohttp")
    yield b
    b.stop()


@pytest.fixture
def h2_stoa(stoa_factory, pki, backend):
    """make(body=None, **kw) -> Stoa with a plaintext listener (h2c) and a
    TLS one (attribute tls_port) in front of backend."""
    def make(body=None, **kw):
        port = free_port()
        if body is None:
            body = conf_upstream("app", [backend.addr]) + conf_route("/", "app")
        s = stoa_factory(body, extra=conf_tls(port, [pki.a]) + kw.pop(
            "extra", ""), **kw)
        s.tls_port = port
        wait_until(lambda: port_accepts(port), 5.0, what="the TLS listener")
        return s
    return make


def client(s, pki, tls):
    if tls:
        return H2Client(s.tls_port, pki.client_context(), "a.test")
    return H2Client(s.port, None, "a.test")


def https(s, path):
    return "https://a.test:%d%s" % (s.tls_port, path)


def resolve(s):
    return ["--resolve", "a.test:%d:127.0.0.1" % s.tls_port]


# -------------------------------------------------------------------- basics

@needs("curl")
def test_h2c_prior_knowledge_and_http11_share_the_port(h2_stoa):
    s = h2_stoa()
    cp = curl("--http2-prior-knowledge", "-w", "|%{http_version}",
              s.url("/hello"))
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == b"hello from aiohttp\n|2"
    cp = curl("--http1.1", "-w", "|%{http_version}", s.url("/hello"))
    assert cp.stdout == b"hello from aiohttp\n|1.1"


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_100_concurrent_streams_each_get_their_own_response(h2_stoa, pki,
                                                            tls):
    s = h2_stoa()
    c = client(s, pki, tls)
    try:
        sids = {c.start("/items/%d" % i): i for i in range(100)}
        got = c.wait(sids)
    finally:
        c.close()
    for sid, i in sids.items():
        status, _, body = got[sid]
        assert status == 200 and json.loads(body) == {"id": str(i)}, got[sid]


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_request_headers_and_body_reach_the_upstream(h2_stoa, pki, tls):
    s = h2_stoa()
    c = client(s, pki, tls)
    try:
        st, _, body = c.request("/echo-headers?q=1", headers=[
            ("x-test", "one"), ("cookie", "a=1"), ("cookie", "b=2")])
        assert st == 200
        info = json.loads(body)
        hdrs = {}
        for k, v in info["headers"]:
            hdrs.setdefault(k.lower(), []).append(v)
        assert info["target"] == "/echo-headers?q=1"
        assert hdrs["host"] == ["a.test:%d" % (s.tls_port if tls
                                              else s.port)]
        assert hdrs["x-test"] == ["one"]
        assert hdrs["cookie"] == ["a=1; b=2"]
        assert hdrs["x-forwarded-proto"] == ["https" if tls else "http"]
        assert hdrs["x-forwarded-for"] == ["127.0.0.1"]
        data = os.urandom(40000)
        st, h, body = c.request("/echo", method="POST", body=data,
                                headers=[("content-type", "app/x")])
        assert st == 200 and body == data
        assert h["content-type"] == "app/x"
        assert json.loads(h["x-echo"]) == {"method": "POST",
                                           "bytes": len(data)}
    finally:
        c.close()


def test_no_route_and_upstream_statuses_over_h2(h2_stoa, pki, backend):
    body = (conf_upstream("app", [backend.addr])
            + conf_route("/status/", "app") + conf_route("/hello", "app")
            + conf_upstream("dead", ["127.0.0.1:%d" % free_port()])
            + conf_route("/dead/", "dead"))
    s = h2_stoa(body=body)
    c = client(s, pki, True)
    try:
        assert c.request("/nowhere")[0] == 404
        assert c.request("/dead/x")[0] == 502
        assert c.request("/status/418")[0] == 418
        # the connection is still usable after error statuses
        assert c.request("/hello")[2] == b"hello from aiohttp\n"
    finally:
        c.close()


def test_sequential_streams_reuse_upstream_keepalive(h2_stoa, pki, backend):
    s = h2_stoa(workers=1)
    c = client(s, pki, True)
    try:
        assert c.request("/hello")[0] == 200
        before = backend.conn_count()
        for _ in range(30):
            assert c.request("/hello")[0] == 200
    finally:
        c.close()
    assert backend.conn_count() - before <= 1


# ------------------------------------------------------------------- tools

@needs("nghttp")
def test_nghttp_over_tls(h2_stoa):
    s = h2_stoa()
    cp = subprocess.run(
        ["nghttp", "-nv", "-t", "10", "https://127.0.0.1:%d/hello"
         % s.tls_port], capture_output=True, timeout=20)
    out = cp.stdout.decode()
    assert cp.returncode == 0, out + cp.stderr.decode()
    assert "The negotiated protocol: h2" in out
    assert ":status: 200" in out
    assert "recv DATA frame <length=19, flags=0x01" in out


@needs("h2load")
@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_h2load_5000_requests_without_errors(h2_stoa, tls):
    # 20 x 10 streams in flight = up to 200 upstream connects at once, past
    # the backend's accept backlog (asyncio listens with 100): a dropped
    # SYN is retried after 1 s, so the connect timeout must exceed that.
    s = h2_stoa(timeouts={"upstream_connect": "5s"})
    url = (("https://127.0.0.1:%d/hello" % s.tls_port) if tls
           else s.url("/hello"))
    cp = subprocess.run(
        ["h2load", "-n", "5000", "-c", "20", "-m", "10", "-T", "20", url],
        capture_output=True, timeout=60)
    out = cp.stdout.decode()
    bad = [ln for ln in s.access_text().splitlines() if '" 200 ' not in ln]
    out += "\nerror log:\n%s\nnot 200:\n%s" % (s.error_text()[-2000:],
                                               "\n".join(bad[:5]))
    assert cp.returncode == 0, out + cp.stderr.decode()
    assert ("requests: 5000 total, 5000 started, 5000 done, 5000 succeeded, "
            "0 failed, 0 errored, 0 timeout") in out, out
    assert "status codes: 5000 2xx, 0 3xx, 0 4xx, 0 5xx" in out, out
    if tls:
        assert "Application protocol: h2" in out, out


# ------------------------------------------------------------ big bodies

@needs("curl")
def test_50mb_upload_and_download_over_h2(h2_stoa, pki, tmpdir_short):
    n = 50 * MB
    s = h2_stoa(limits={"max_body_size": "64m"}, workers=1)
    src = os.path.join(tmpdir_short, "up.bin")
    with open(src, "wb") as f:
        for chunk in pattern_chunks(n, 1 << 20):
            f.write(chunk)
    want = pattern_crc(n)
    cp = curl("--http2", "--cacert", pki.ca, *resolve(s), "--data-binary", "@" + src,
              "-H", "Content-Type: application/octet-stream",
              "-w", "\n%{http_version}", https(s, "/sink"), timeout=60)
    assert cp.returncode == 0, cp.stderr
    body, _, ver = cp.stdout.decode().rpartition("\n")
    assert ver == "2"
    info = json.loads(body)
    assert info["bytes"] == n and info["crc32"] == want, info
    os.unlink(src)

    dst = os.path.join(tmpdir_short, "down.bin")
    cp = curl("--http2", "--cacert", pki.ca, *resolve(s), "-o", dst, "-w",
              "%{http_version} %{response_code}", https(s, "/big?n=%d" % n),
              timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == b"2 200"
    crc, size = 0, 0
    with open(dst, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            crc = zlib.crc32(b, crc)
            size += len(b)
    os.unlink(dst)
    assert size == n and crc == want


@needs("curl")
def test_body_over_max_body_size_is_413_over_h2(h2_stoa, pki, tmpdir_short):
    s = h2_stoa(limits={"max_body_size": "1m"})
    src = os.path.join(tmpdir_short, "up.bin")
    with open(src, "wb") as f:
        f.write(b"x" * (2 * MB))
    cp = curl("--http2", "--cacert", pki.ca, *resolve(s), "--data-binary", "@" + src,
              "-o", "/dev/null", "-w", "%{response_code}",
              https(s, "/sink"), timeout=20)
    assert cp.stdout == b"413", (cp.stdout, cp.stderr)


class StalledOrigin:
    """An origin that accepts connections and never reads from them (small
    receive buffers), in a thread; stop() closes everything."""

    def __init__(self):
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.srv.settimeout(0.1)
        self.addr = "127.0.0.1:%d" % self.srv.getsockname()[1]
        self.conns = []
        self.done = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.done.is_set():
            try:
                c, _ = self.srv.accept()
                self.conns.append(c)
            except socket.timeout:
                continue
            except OSError:
                return

    def stop(self):
        self.done.set()
        self.t.join(5)
        for c in self.conns + [self.srv]:
            c.close()


def test_upload_to_a_stalled_origin_is_flow_controlled(stoa_factory):
    """Request DATA is acknowledged only as the upstream takes it: a client
    honouring its window can push little more than the buffers hold."""
    origin = StalledOrigin()
    try:
        s = stoa_factory(conf_upstream("app", [origin.addr])
                         + conf_route("/", "app"), workers=1,
                         limits={"max_body_size": "1g"})
        worker = s.worker_pids()[0]
        rss0 = vm_rss_kb(worker)
        c = H2Client(s.port, None)
        try:
            sid = c.start("/upload", method="POST", more=True)
            sent, chunk = 0, b"u" * 16384
            t_end = time.monotonic() + 1.5
            while time.monotonic() < t_end:
                w = min(c.conn.local_flow_control_window(sid), len(chunk))
                if w > 0:
                    c.conn.send_data(sid, chunk[:w])
                    c.sock.sendall(c.conn.data_to_send())
                    sent += w
                    continue
                c.sock.settimeout(0.05)
                try:
                    d = c.sock.recv(65536)
                except socket.timeout:
                    continue
                assert d, "stoa closed the connection"
                c.conn.receive_data(d)
                c.sock.sendall(c.conn.data_to_send())
            rss1 = vm_rss_kb(worker)
        finally:
            c.close()
        print("upload to a stalled origin: %d bytes taken" % sent)
        assert origin.conns, "the request never reached the origin"
        # kernel buffers (a few MB on loopback) + stoa's own (< 2 MB)
        assert sent < 32 * MB, "stoa took %d bytes" % sent
        assert rss1 - rss0 < 64 * 1024
    finally:
        origin.stop()



def test_slow_h2_reader_gets_every_byte_in_order(h2_stoa, backend):
    """Response backpressure: a reader that acknowledges DATA in bursts
    with pauses makes stoa's buffers fill (the proxy stops reading the
    upstream) and drain again (it resumes), many times over; every byte
    arrives, in order, within the deadline."""
    import h2.config
    import h2.connection
    import h2.events
    n = 8 * MB
    s = h2_stoa(workers=1)
    sock = socket.create_connection(("127.0.0.1", s.port), 10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                            (":path", "/big?n=%d" % n),
                            (":authority", "a.test")], end_stream=True)
    sock.sendall(conn.data_to_send())
    crc, size, status, ended, unacked = 0, 0, None, False, 0
    deadline = time.monotonic() + 30
    try:
        while not ended:
            assert time.monotonic() < deadline, "stalled at %d bytes" % size
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            data = sock.recv(65536)
            assert data, "stoa closed the connection at %d bytes" % size
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers)[":status"]
                elif isinstance(ev, h2.events.DataReceived):
                    crc = zlib.crc32(ev.data, crc)
                    size += len(ev.data)
                    unacked += ev.flow_controlled_length
                    conn.acknowledge_received_data(
                        ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended = True
                elif isinstance(ev, h2.events.StreamReset):
                    raise AssertionError("stream reset at %d bytes" % size)
            if unacked >= 1 * MB:
                # stop reading for a while: stoa's buffers (256 KB of
                # decoded body, 256 KB behind it) fill, the upstream waits
                time.sleep(0.05)
                unacked = 0
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    assert status == "200"
    assert size == n and crc == pattern_crc(n), (size, n)


# ------------------------------------------------------------------- cache

@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_h2_cache_hits(stoa_factory, pki, tls):
    origin = CacheOrigin("aiohttp")
    try:
        port = free_port()
        body = (conf_upstream("app", [origin.addr])
                + conf_cache_route("/c/", "app", ttl="30s"))
        s = stoa_factory(body, extra=conf_tls(port, [pki.a]))
        s.tls_port = port
        wait_until(lambda: port_accepts(port), 5.0, what="the TLS listener")
        c = client(s, pki, tls)
        try:
            st1, h1, b1 = c.request("/c/x")
            st2, h2, b2 = c.request("/c/x")
            # concurrent streams on the same key: all from the cache
            sids = [c.start("/c/x") for _ in range(10)]
            many = c.wait(sids)
        finally:
            c.close()
        assert st1 == st2 == 200
        assert h1["x-cache"] == "MISS" and h2["x-cache"] == "HIT"
        assert b1 == b2
        for sid in sids:
            assert many[sid][0] == 200 and many[sid][1]["x-cache"] == "HIT"
            assert many[sid][2] == b1
        assert origin.hits(path="/c/x") == 1
        # the same entry serves HTTP/1.1 clients (same scheme and host)
        if tls:
            cp = curl("--http1.1", "--cacert", pki.ca, *resolve(s), "-D", "-",
                      https(s, "/c/x"))
        else:
            cp = curl("--http1.1", "-H", "Host: a.test:%d" % s.port, "-D",
                      "-", s.url("/c/x"))
        assert b"X-Cache: HIT" in cp.stdout and cp.stdout.endswith(b1)
    finally:
        origin.stop()


# ------------------------------------------------------------------ reload

@needs("curl")
def test_reload_lets_open_h2_streams_finish(h2_stoa, pki):
    # (curl, not H2Client: the h2 library rejects frames after a GOAWAY)
    s = h2_stoa(workers=1)
    old = s.worker_pids()
    cmd = ["curl", "-sS", "--max-time", "20", "--http2", "--cacert", pki.ca,
           "-w", "|%{http_version} %{response_code}"] + resolve(s) + [
        https(s, "/slow?s=1"), https(s, "/slow?s=0.1")]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.4)
        s.signal(signal.SIGHUP)
        out, err = p.communicate(timeout=25)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # the first stream finishes on the old worker; the second one (after
    # the GOAWAY) goes out on a new connection to the new worker
    assert p.returncode == 0, err
    assert out == b"slept\n|2 200slept\n|2 200", out
    wait_until(lambda: set(s.worker_pids()).isdisjoint(old)
               and len(s.worker_pids()) == 1, 10, what="new worker")
    c = client(s, pki, True)
    try:
        assert c.request("/hello")[0] == 200
    finally:
        c.close()
