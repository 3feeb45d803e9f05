"""The process model: worker respawn, reload under load, graceful and fast
stop, systemd notification, log reopening."""

import os
import signal
import socket
import threading
import time

import pytest
import requests

from helpers import (RawConn, conf_route, conf_upstream, pid_alive,
                     raw_request, wait_until)


class Load(threading.Thread):
    """Sequential GET /whoami requests until stopped.

    mode "fresh": a new connection per request (Connection: close); every
    error or non-200 is a failure.
    mode "keepalive": one persistent connection.  When the server closes
    an idle connection before sending any byte of a response (allowed by
    RFC 9112 §9.6; a client retries an idempotent request) the request is
    retried once on a new connection and counted in `retries`; anything
    else is a failure.
    hook(load) runs between requests (never while one is in flight)."""

    def __init__(self, port, mode, hook=None):
        super().__init__(daemon=True)
        self.port = port
        self.mode = mode
        self.hook = hook
        self.stop = threading.Event()
        self.results = []       # (monotonic start time, backend port)
        self.failures = []
        self.retries = 0
        self.sock = None
        self.rc = None

    def _fresh(self):
        r = raw_request(self.port, b"GET /whoami HTTP/1.1\r\nHost: h\r\n"
                        b"Connection: close\r\n\r\n", timeout=10)
        return r

    def _ka_once(self):
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), 10)
            self.rc = RawConn(self.sock, 10)
        try:
            self.sock.sendall(b"GET /whoami HTTP/1.1\r\nHost: h\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return None
        return self.rc.read_response()

    def _ka_close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    def _keepalive(self):
        r = self._ka_once()
        if r is None:
            self._ka_close()
            self.retries += 1
            r = self._ka_once()
        if r is not None and (r.header("Connection") or "").lower() == "close":
            self._ka_close()
        return r

    def run(self):
        while not self.stop.is_set():
            if self.hook:
                self.hook(self)
            t0 = time.monotonic()
            try:
                r = self._fresh() if self.mode == "fresh" else self._keepalive()
            except Exception as e:              # noqa: BLE001
                self.failures.append((t0, repr(e)))
                self._ka_close()
                continue
            if r is None or r.status != 200:
                self.failures.append((t0, repr(r)))
                self._ka_close()
                continue
            self.results.append((t0, r.json()["port"]))
        self._ka_close()

    def finish(self):
        self.stop.set()
        self.join(30)
        assert not self.is_alive()


@pytest.fixture
def loads():
    started = []

    def make(*a, **kw):
        ld = Load(*a, **kw)
        started.append(ld)
        ld.start()
        return ld
    yield make
    for ld in started:
        ld.stop.set()
        ld.join(30)


def test_killed_worker_replaced_within_1s_without_failures(aio, proxy_to,
                                                           loads):
    st = proxy_to(aio)
    victim = st.worker_pids()[0]
    killed = {}

    def hook(ld):
        # Kill between two requests of a continuously running client, so
        # no request of ours is in flight on the victim at that instant.
        if not killed and len(ld.results) >= 20:
            os.kill(victim, signal.SIGKILL)
            killed["t"] = time.monotonic()
    ld = loads(st.port, "fresh", hook)
    wait_until(lambda: "t" in killed, 15.0, what="the kill")

    def replaced():
        pids = st.worker_pids()
        return victim not in pids and len(pids) == st.workers and pids
    new = wait_until(replaced, 3.0, 0.01, what="a replacement worker")
    took = time.monotonic() - killed["t"]
    time.sleep(1.0)
    ld.finish()
    assert took <= 1.0, "replacement took %.2fs" % took
    assert ld.failures == [], ld.failures[:5]
    assert [p for t, p in ld.results if t > killed["t"]], \
        "no request served after the kill"
    assert all(pid_alive(p) for p in new)


def test_reload_switches_backend_under_load_without_failures(
        backend_factory, stoa_factory, loads):
    a, b = backend_factory("aiohttp"), backend_factory("tornado")
    st = stoa_factory(conf_upstream("app", [a.addr]) + conf_route("/", "app"))
    fresh = loads(st.port, "fresh")
    ka = loads(st.port, "keepalive")
    time.sleep(0.5)
    st.reload(conf_upstream("app", [b.addr]) + conf_route("/", "app"))
    done = time.monotonic()
    time.sleep(0.7)
    fresh.finish()
    ka.finish()
    assert fresh.failures == [], fresh.failures[:5]
    assert ka.failures == [], ka.failures[:5]
    assert ka.retries <= 2, "keep-alive client retried %d times" % ka.retries
    for ld in (fresh, ka):
        ports = {p for _, p in ld.results}
        assert a.port in ports
        after = [p for t, p in ld.results if t > done]
        assert after and set(after) == {b.port}, (ld.mode, after[:10])
    for _ in range(10):
        assert requests.get(st.url("/whoami"),
                            timeout=10).json()["port"] == b.port


def test_invalid_reload_keeps_serving_and_logs_file_line(aio, proxy_to):
    st = proxy_to(aio)
    before = sorted(st.worker_pids())
    text = st.config_text() + "no_such_key = 1\n"
    line = text.count("\n")
    st.write_config(text)
    st.signal(signal.SIGHUP)
    wait_until(lambda: "%s:%d:" % (st.conf, line) in st.error_text(), 5.0,
               what="FILE:LINE in the error log")
    time.sleep(0.3)
    assert sorted(st.worker_pids()) == before
    for _ in range(5):
        assert requests.get(st.url("/hello"), timeout=10).status_code == 200
    assert st.running()


def test_valid_reload_after_invalid_one_applies(backend_factory,
                                                stoa_factory):
    a, b = backend_factory("aiohttp"), backend_factory("aiohttp")
    st = stoa_factory(conf_upstream("app", [a.addr]) + conf_route("/", "app"))
    st.write_config(st.config_text() + "route / { upstream = nowhere }\n")
    st.signal(signal.SIGHUP)
    wait_until(lambda: st.conf + ":" in st.error_text(), 5.0,
               what="the reload error")
    st.reload(conf_upstream("app", [b.addr]) + conf_route("/", "app"))
    assert requests.get(st.url("/whoami"), timeout=10).json()["port"] == b.port


def test_sigquit_finishes_inflight_request_then_exits_0(aio, proxy_to):
    st = proxy_to(aio)
    out = {}

    def client():
        try:
            out["r"] = requests.get(st.url("/slow?s=2"), timeout=15)
        except Exception as e:                  # noqa: BLE001
            out["e"] = e
    t = threading.Thread(target=client, daemon=True)
    t.start()
    wait_until(lambda: ["GET", "/slow?s=2"] in aio.seen(), 5.0,
               what="the slow request to reach the backend")
    st.signal(signal.SIGQUIT)
    t.join(15)
    assert not t.is_alive()
    assert "e" not in out, out.get("e")
    assert out["r"].status_code == 200 and out["r"].text == "slept\n"
    assert st.wait_exit(10) == 0
    assert not os.path.exists(st.pid_file)


def test_sigquit_stops_accepting(aio, proxy_to):
    st = proxy_to(aio)
    st.signal(signal.SIGQUIT)
    assert st.wait_exit(10) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", st.port), 2).close()


def test_sigterm_exits_0_and_workers_gone(aio, proxy_to):
    st = proxy_to(aio)
    workers = st.worker_pids()
    st.signal(signal.SIGTERM)
    assert st.wait_exit(10) == 0
    wait_until(lambda: not any(pid_alive(p) for p in workers), 5.0,
               what="workers to exit with the master")


def test_master_children_are_the_workers(aio, proxy_to):
    st = proxy_to(aio, workers=3)
    assert len(st.worker_pids()) == 3


class Notify:
    """An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.path = path
        self.seen = []          # every KEY=VALUE received, in order

    def wait_for(self, item, after=0, timeout=10.0):
        """Read datagrams until `item` ("KEY=VALUE") is among
        self.seen[after:]; return its index."""
        deadline = time.monotonic() + timeout
        while item not in self.seen[after:]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s from NOTIFY_SOCKET; got %r"
                                     % (item, self.seen))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.seen.extend(x for x in data.decode().split("\n") if x)
        return self.seen.index(item, after)

    def close(self):
        self.sock.close()


def test_sd_notify_ready_reload_stopping(aio, stoa_factory, tmpdir_short):
    n = Notify(os.path.join(tmpdir_short, "notify.sock"))
    try:
        st = stoa_factory(conf_upstream("a", [aio.addr]) + conf_route("/", "a"),
                          env={"NOTIFY_SOCKET": n.path})
        n.wait_for("READY=1")
        n.wait_for("MAINPID=%d" % st.pid)
        mark = len(n.seen)
        st.signal(signal.SIGHUP)
        i = n.wait_for("RELOADING=1", after=mark)
        n.wait_for("READY=1", after=i + 1)
        mark = len(n.seen)
        st.signal(signal.SIGQUIT)
        n.wait_for("STOPPING=1", after=mark)
        assert st.wait_exit(10) == 0
    finally:
        n.close()


def test_sigusr1_reopens_access_log(aio, proxy_to):
    st = proxy_to(aio)
    requests.get(st.url("/hello?before"), timeout=10)
    wait_until(lambda: "before" in st.access_text(), 5.0,
               what="the first access log line")
    os.rename(st.access_log, st.access_log + ".1")
    st.signal(signal.SIGUSR1)
    i = [0]

    def new_file_has_line():
        i[0] += 1
        requests.get(st.url("/hello?after%d" % i[0]), timeout=10)
        return "after" in st.access_text()
    wait_until(new_file_has_line, 5.0, 0.1, what="a line in the new log")
    with open(st.access_log + ".1") as f:
        assert "before" in f.read()
