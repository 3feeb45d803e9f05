"""Large bodies stream through stoa in both directions, byte-exact, with
flat worker memory.  The backend generates and consumes the data on the
fly (a fixed pattern, see backends/_common.py), so nothing is held whole
on either side.  STOA_SKIP_HUGE=1 skips the 1 GB transfers."""

import json
import os
import socket
import subprocess
import threading
import time
import zlib

import pytest
import requests

from helpers import RawConn, pattern_chunks, pattern_crc, vm_rss_kb

MB = 1 << 20
GB = 1 << 30
RSS_SLACK_KB = 64 * 1024

huge = pytest.mark.skipif(os.environ.get("STOA_SKIP_HUGE") == "1",
                          reason="STOA_SKIP_HUGE=1")


@pytest.fixture
def st(aio, proxy_to):
    return proxy_to(aio, timeouts={"upstream_read": "20s"},
                    limits={"max_body_size": "2g"})


class RssWatch:
    """Samples VmRSS of the given pids every 50 ms in a thread and keeps the
    largest growth over each pid's first sample."""

    def __init__(self, pids):
        self.base = {p: vm_rss_kb(p) for p in pids}
        self.peak = dict(self.base)
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop.wait(0.05):
            self.sample()

    def sample(self):
        for p in self.base:
            v = vm_rss_kb(p)
            if v is not None and self.base[p] is not None:
                self.peak[p] = max(self.peak[p], v)

    def growth_kb(self):
        self.stop.set()
        self.t.join(5)
        self.sample()
        return max((self.peak[p] - self.base[p]) for p in self.base
                   if self.base[p] is not None)


class SizedBody:
    """A pattern body of n bytes that requests sends with Content-Length."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __iter__(self):
        return pattern_chunks(self.n, MB)


def upload_raw(port, path, n, chunked=False, timeout=60.0):
    """Stream n pattern bytes as a request body on a raw socket; return the
    response."""
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        framing = (b"Transfer-Encoding: chunked" if chunked
                   else b"Content-Length: %d" % n)
        s.sendall(b"POST %s HTTP/1.1\r\nHost: h\r\n%s\r\n"
                  b"Content-Type: application/octet-stream\r\n\r\n"
                  % (path.encode(), framing))
        for c in pattern_chunks(n, MB):
            if chunked:
                s.sendall(b"%x\r\n" % len(c))
            s.sendall(c)
            if chunked:
                s.sendall(b"\r\n")
        if chunked:
            s.sendall(b"0\r\n\r\n")
        return RawConn(s, timeout).read_response()


def test_download_100mb_exact(st):
    n = 100 * MB + 12345
    crc = 0
    got = 0
    with requests.get(st.url("/big?n=%d" % n), stream=True,
                      timeout=(10, 30)) as r:
        assert r.status_code == 200
        for c in r.iter_content(MB):
            got += len(c)
            crc = zlib.crc32(c, crc)
    assert got == n
    assert crc == pattern_crc(n)


def test_upload_100mb_content_length_exact(st):
    n = 100 * MB + 777
    r = requests.post(st.url("/sink"), data=SizedBody(n), timeout=(10, 60))
    assert r.status_code == 200
    doc = r.json()
    assert doc["bytes"] == n and doc["crc32"] == pattern_crc(n)


def test_upload_100mb_chunked_exact(st):
    n = 100 * MB + 4321
    r = requests.post(st.url("/sink"), data=pattern_chunks(n, MB),
                      timeout=(10, 60))
    assert r.status_code == 200
    doc = r.json()
    assert doc["bytes"] == n and doc["crc32"] == pattern_crc(n)


def test_upload_100mb_chunked_with_curl(st, tmp_path):
    n = 100 * MB
    out_path = tmp_path / "curl.out"
    # Output to a file: communicate() would close curl's stdin under us.
    with open(out_path, "wb") as out:
        p = subprocess.Popen(["curl", "-sS", "--max-time", "60", "-T", "-",
                              "-X", "POST", "-H", "Expect:",
                              st.url("/sink")],
                             stdin=subprocess.PIPE, stdout=out,
                             stderr=subprocess.STDOUT)
    try:
        try:
            for c in pattern_chunks(n, MB):
                p.stdin.write(c)
        except BrokenPipeError:
            pass
        finally:
            try:
                p.stdin.close()
            except BrokenPipeError:
                pass
        rc = p.wait(90)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    text = out_path.read_bytes()
    assert rc == 0, text
    doc = json.loads(text)
    assert doc["bytes"] == n and doc["crc32"] == pattern_crc(n)


@huge
def test_download_1gb_flat_memory(st):
    watch = RssWatch(st.worker_pids())
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "120", "-o", "/dev/null", "-w",
         "%{http_code} %{size_download}", st.url("/big?n=%d" % GB)],
        capture_output=True, timeout=150)
    growth = watch.growth_kb()
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().split() == ["200", str(GB)]
    assert growth < RSS_SLACK_KB, "worker RSS grew by %d kB" % growth


@huge
def test_upload_1gb_flat_memory(st):
    watch = RssWatch(st.worker_pids())
    resp = upload_raw(st.port, "/sink", GB, timeout=120)
    growth = watch.growth_kb()
    assert resp is not None and resp.status == 200, resp
    assert resp.json()["bytes"] == GB
    assert growth < RSS_SLACK_KB, "worker RSS grew by %d kB" % growth


def test_slow_reader_gets_backpressure(st):
    """A client that stops reading must not make stoa buffer the body."""
    n = 512 * MB
    watch = RssWatch(st.worker_pids())
    with socket.create_connection(("127.0.0.1", st.port), 30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: h\r\n"
                  b"Connection: close\r\n\r\n" % n)
        got = len(s.recv(MB))
        time.sleep(2.0)             # the backend keeps producing meanwhile
        stalled_growth = watch.growth_kb()
        s.settimeout(60)
        while True:
            d = s.recv(4 * MB)
            if not d:
                break
            got += len(d)
    assert got > n                  # the body plus chunk framing and head
    assert stalled_growth < RSS_SLACK_KB, \
        "worker RSS grew by %d kB while the client did not read" \
        % stalled_growth
