"""Each error status stoa produces, one test per cause."""

import socket
import threading
import time

import pytest
import requests

from helpers import RawConn, conf_route, conf_upstream, free_port


def send_raw(st, data, timeout=10.0):
    """Send bytes; return (first response or None, closed-afterwards)."""
    with socket.create_connection(("127.0.0.1", st.port), timeout) as s:
        s.sendall(data)
        rc = RawConn(s, timeout)
        resp = rc.read_response()
        closed = rc.closed_within(5.0) if resp is not None else True
    return resp, closed


def never_seen(be, marker):
    return not [t for _, t in be.seen() if marker in t]


@pytest.fixture
def st_aio(aio, proxy_to):
    return proxy_to(aio, timeouts={"client_header": "1s"},
                    limits={"max_body_size": "1k",
                            "max_header_size": "4k"}), aio


@pytest.mark.parametrize("name,head", [
    ("cl_and_te", b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n"),
    ("space_before_colon", b"X-Foo : bar\r\n"),
    ("two_content_lengths", b"Content-Length: 1\r\nContent-Length: 1\r\n"),
    ("bad_content_length", b"Content-Length: 1x\r\n"),
    ("obs_fold", b"X-Foo: a\r\n  b\r\n"),
    ("bare_cr", b"X-Foo: a\rb\r\n"),
    ("bad_header_name", b"X(Foo): a\r\n"),
])
def test_400_ambiguous_request_rejected_and_closed(st_aio, name, head):
    st, be = st_aio
    marker = "/bad-%s" % name
    resp, closed = send_raw(st, b"GET %s HTTP/1.1\r\nHost: a\r\n%s\r\n"
                            % (marker.encode(), head))
    assert resp is not None and resp.status == 400, resp
    assert closed, "connection left open after 400"
    assert never_seen(be, marker)


def test_400_missing_host(st_aio):
    st, be = st_aio
    resp, closed = send_raw(st, b"GET /nohost HTTP/1.1\r\n\r\n")
    assert resp.status == 400 and closed
    assert never_seen(be, "/nohost")


def test_400_garbage_request_line(st_aio):
    st, be = st_aio
    resp, closed = send_raw(st, b"HELLO\r\n\r\n")
    assert resp.status == 400 and closed


def test_404_no_route(aio, stoa_factory):
    st = stoa_factory(conf_upstream("a", [aio.addr])
                      + conf_route("/only/", "a"))
    assert requests.get(st.url("/x"), timeout=10).status_code == 404


def test_408_slow_request_head(st_aio):
    st, be = st_aio
    with socket.create_connection(("127.0.0.1", st.port), 10) as s:
        s.sendall(b"GET /slowhead HTTP/1.1\r\nHost: a\r\n")
        t0 = time.monotonic()
        rc = RawConn(s, 8.0)
        resp = rc.read_response()
        waited = time.monotonic() - t0
        closed = rc.closed_within(5.0)
    assert resp is not None and resp.status == 408, resp
    assert 0.8 <= waited < 4.0, waited
    assert closed
    assert never_seen(be, "/slowhead")


def test_408_slow_head_even_when_trickled(st_aio):
    """client_header bounds the whole head, not the gap between bytes."""
    st, be = st_aio
    with socket.create_connection(("127.0.0.1", st.port), 10) as s:
        s.sendall(b"GET /trickle HTTP/1.1\r\nHost: a\r\n")
        t0 = time.monotonic()
        resp = None
        s.settimeout(0.3)
        while time.monotonic() - t0 < 5.0:
            try:
                s.sendall(b"X-A: b\r\n")
            except OSError:
                break
            try:
                data = s.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            resp = data
            break
    assert resp is not None and resp.startswith(b"HTTP/1.1 408"), resp


def test_413_content_length_rejected_before_forwarding(st_aio):
    st, be = st_aio
    body = b"b" * 2048
    resp, _ = send_raw(st, b"POST /sink?too-big-cl HTTP/1.1\r\nHost: a\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert resp is not None and resp.status == 413, resp
    assert never_seen(be, "too-big-cl")


def test_413_chunked_body_over_limit(st_aio):
    st, be = st_aio
    chunk = b"c" * 512
    body = b"".join(b"200\r\n%s\r\n" % chunk for _ in range(4)) + b"0\r\n\r\n"
    resp, _ = send_raw(st, b"POST /sink?too-big-chunked HTTP/1.1\r\n"
                       b"Host: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       + body)
    assert resp is not None and resp.status == 413, resp


def test_body_at_limit_is_accepted(st_aio):
    st, be = st_aio
    r = requests.post(st.url("/sink"), data=b"a" * 1024, timeout=10)
    assert r.status_code == 200 and r.json()["bytes"] == 1024


def test_431_header_too_large(st_aio):
    st, be = st_aio
    resp, _ = send_raw(st, b"GET /bighdr HTTP/1.1\r\nHost: a\r\n"
                       b"X-Big: %s\r\n\r\n" % (b"v" * 8000))
    assert resp is not None and resp.status == 431, resp
    assert never_seen(be, "/bighdr")


def test_501_unknown_transfer_coding(st_aio):
    st, be = st_aio
    resp, closed = send_raw(st, b"POST /gz HTTP/1.1\r\nHost: a\r\n"
                            b"Transfer-Encoding: gzip\r\n\r\n")
    assert resp is not None and resp.status == 501, resp
    assert closed
    assert never_seen(be, "/gz")


def test_502_nothing_listening(stoa_factory):
    dead = free_port()
    st = stoa_factory(conf_upstream("a", ["127.0.0.1:%d" % dead])
                      + conf_route("/", "a"))
    assert requests.get(st.url("/x"), timeout=10).status_code == 502


class BadOrigin:
    """A raw TCP server answering every request with `reply`, then closing."""

    def __init__(self, reply):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with c:
                c.settimeout(2.0)
                try:
                    buf = b""
                    while b"\r\n\r\n" not in buf:
                        d = c.recv(4096)
                        if not d:
                            break
                        buf += d
                    c.sendall(self.reply)
                except OSError:
                    pass

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def bad_origin():
    made = []

    def make(reply):
        b = BadOrigin(reply)
        made.append(b)
        return b
    yield make
    for b in made:
        b.close()


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 abc Garbage\r\n\r\n",
    b"SPDY/9 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    b"",
], ids=["bad_status", "bad_version", "two_cl", "empty"])
def test_502_invalid_upstream_response(bad_origin, stoa_factory, reply):
    bo = bad_origin(reply)
    st = stoa_factory(conf_upstream("a", ["127.0.0.1:%d" % bo.port])
                      + conf_route("/", "a"))
    assert requests.get(st.url("/x"), timeout=10).status_code == 502


def test_503_all_servers_down(stoa_factory):
    dead = free_port()
    # One worker: passive health state is per worker.
    st = stoa_factory(conf_upstream("a", ["127.0.0.1:%d" % dead],
                                    max_fails=1, fail_timeout="30s")
                      + conf_route("/", "a"), workers=1)
    assert requests.get(st.url("/x"), timeout=10).status_code == 502
    assert requests.get(st.url("/x"), timeout=10).status_code == 503


def test_504_upstream_read_timeout(aio, proxy_to):
    st = proxy_to(aio, timeouts={"upstream_read": "1s"})
    t0 = time.monotonic()
    r = requests.get(st.url("/slow?s=3"), timeout=10)
    took = time.monotonic() - t0
    assert r.status_code == 504
    assert 0.8 <= took < 2.9, took


def test_a_pooled_connection_gets_the_whole_upstream_read(aio, proxy_to):
    """upstream_read counts from the request, not from the pooled
    connection's last read: one idle for 0.9 s, then asked for an answer
    that takes 0.6 s, is within a 1 s upstream_read (guards the
    timeouts a pooled connection keeps, upstream_timeouts)."""
    st = proxy_to(aio, workers=1, timeouts={"upstream_read": "1s"})
    with requests.Session() as s:
        assert s.get(st.url("/"), timeout=10).status_code == 200
        time.sleep(0.9)                 # the upstream connection idles
        r = s.get(st.url("/slow?s=0.6"), timeout=10)
        assert r.status_code == 200, r.status_code


def test_504_is_not_retried(backend_factory, stoa_factory):
    a, b = backend_factory("aiohttp"), backend_factory("aiohttp")
    st = stoa_factory(conf_upstream("app", [a.addr, b.addr])
                      + conf_route("/", "app"),
                      timeouts={"upstream_read": "1s"})
    r = requests.get(st.url("/slow?s=2&once"), timeout=10)
    assert r.status_code == 504
    hits = [t for be in (a, b) for _, t in be.seen() if "once" in t]
    assert len(hits) == 1, hits
