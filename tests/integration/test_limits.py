"""Resource limits under hostile clients: slowloris, slow readers, a crowd
of idle connections, file-descriptor exhaustion.  Each scenario is listed
in tests/README.md.  The origin is backends/recorder.py (a big body for
the slow reader comes from a handler that streams it)."""

import errno
import os
import resource
import select
import socket
import stat
import threading
import time

import pytest

import conftest
from helpers import (RawConn, conf_route, conf_upstream, http_get,
                     wait_until)
from recorder import Recorder

BIG = 64 << 20
BLOCK = bytes(range(256)) * 4096             # 1 MiB


def big_or_small(req):
    if req.target.startswith(b"/big"):
        def gen():
            yield (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-"
                   b"stream\r\nContent-Length: %d\r\n\r\n" % BIG)
            for _ in range(BIG // len(BLOCK)):
                yield BLOCK
        return gen()
    body = b"small " + req.target + b"\n"
    return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))


@pytest.fixture
def origin():
    r = Recorder(handler=big_or_small).start()
    yield r
    r.stop()


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return 0
    fields = st[st.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12])       # utime + stime


def cpu_share(pids, seconds):
    """Fraction of one core the pids used together over `seconds`."""
    hz = os.sysconf("SC_CLK_TCK")
    before = sum(cpu_ticks(p) for p in pids)
    time.sleep(seconds)
    after = sum(cpu_ticks(p) for p in pids)
    return (after - before) / hz / seconds


def nfds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


class Prober(threading.Thread):
    """Normal client requests in a loop until stopped; records the time
    each took (None for a failure)."""

    def __init__(self, port, path=b"/probe"):
        super().__init__(daemon=True)
        self.port = port
        self.path = path.decode()
        self.times = []
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            t0 = time.monotonic()
            try:
                r = http_get(self.port, self.path, host="limits.test",
                             timeout=5)
                ok = r.status == 200 and r.body.startswith(b"small ")
            except Exception:
                ok = False
            self.times.append(time.monotonic() - t0 if ok else None)
            time.sleep(0.05)

    def finish(self):
        self.stop_ev.set()
        self.join(10)
        return self.times


def _stoa(stoa_factory, origin, **kw):
    return stoa_factory(conf_upstream("o", [origin.addr])
                        + conf_route("/", "o"), **kw)


# ------------------------------------------------------------- slowloris

def test_slowloris_cut_off_others_served(stoa_factory, origin):
    """20 clients drip a request head at one byte a second; client_header
    = 2s cuts each off (408 or close) within ~3 s, while a normal client
    keeps getting fast answers."""
    st = _stoa(stoa_factory, origin, timeouts={"client_header": "2s",
                                               "client_idle": "30s"})
    head = b"GET /drip HTTP/1.1\r\nHost: limits.test\r\nX-Pad: " + b"a" * 64
    drips = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", st.port), 5)
        s.setblocking(False)
        drips.append(s)
    prober = Prober(st.port)
    prober.start()
    t0 = time.monotonic()
    ended = {}
    got = {}
    tick = 0
    while len(ended) < len(drips) and time.monotonic() - t0 < 6.0:
        for n, s in enumerate(drips):
            if n in ended:
                continue
            try:
                data = s.recv(4096)
                if data:
                    got[n] = got.get(n, b"") + data
                else:
                    ended[n] = time.monotonic() - t0
                    continue
            except BlockingIOError:
                pass
            except ConnectionResetError:
                ended[n] = time.monotonic() - t0
                continue
            if tick % 4 == 0 and tick // 4 < len(head):
                try:
                    s.send(head[tick // 4:tick // 4 + 1])   # 1 byte/s
                except (BrokenPipeError, ConnectionResetError):
                    ended[n] = time.monotonic() - t0
                except BlockingIOError:
                    pass
        tick += 1
        time.sleep(0.25)
    times = prober.finish()
    for s in drips:
        s.close()
    assert len(ended) == len(drips), "drippers still connected after 6 s"
    assert max(ended.values()) < 4.0, ended
    assert min(ended.values()) > 1.5, ended
    for n, data in got.items():
        assert data.startswith(b"HTTP/1.1 408 "), data
    ok = [t for t in times if t is not None]
    assert ok and len(ok) == len(times), times
    assert max(ok) < 1.0, times
    assert not [r for r in origin.requests if r.target == b"/drip"]


# ------------------------------------------------------------- slow read

def test_slow_reader_cut_off_others_served(stoa_factory, origin):
    """A client asks for 64 MiB and then reads one byte a second: once no
    write progress is possible for client_idle = 2s stoa drops it (and the
    upstream connection), while a normal client is served throughout."""
    st = _stoa(stoa_factory, origin, timeouts={"client_idle": "2s",
                                               "upstream_read": "30s"})
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect(("127.0.0.1", st.port))
    s.sendall(b"GET /big HTTP/1.1\r\nHost: limits.test\r\n\r\n")
    first = s.recv(1)
    assert first == b"H"
    prober = Prober(st.port)
    prober.start()
    t0 = time.monotonic()
    s.setblocking(False)
    up_closed = None
    while time.monotonic() - t0 < 8.0:
        try:
            s.recv(1)
        except BlockingIOError:
            pass
        big_conns = [c for c in origin.conns if b"GET /big" in c.data]
        if big_conns and all(c.closed for c in big_conns):
            up_closed = time.monotonic() - t0
            break
        time.sleep(0.5)
    times = prober.finish()
    assert up_closed is not None, "the upstream of the slow reader is " \
        "still open after 8 s"
    assert up_closed < 6.0
    # the client connection ends (EOF or reset) long before 64 MiB
    s.setblocking(True)
    s.settimeout(5)
    total = 1
    try:
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            total += len(d)
    except ConnectionResetError:
        pass
    s.close()
    assert total < BIG // 2, total
    ok = [t for t in times if t is not None]
    assert ok and len(ok) == len(times), times
    assert max(ok) < 1.0, times


# ------------------------------------------------- 10,000 idle connections

IDLE = 10000


@pytest.fixture
def many_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE + 2000
    if hard != resource.RLIM_INFINITY and hard < want + 1000:
        pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, want + 1000))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want + 1000), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_10k_idle_connections_do_not_starve_new_ones(many_fds, stoa_factory,
                                                     origin):
    st = _stoa(stoa_factory, origin,
               timeouts={"client_idle": "60s", "client_header": "60s"},
               limits={"max_connections": IDLE + 1000})
    socks = []
    t0 = time.monotonic()
    try:
        for _ in range(IDLE):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", st.port))
            assert err in (0, errno.EINPROGRESS, errno.EAGAIN), err
            socks.append(s)
        opened = time.monotonic() - t0
        # every one established from the client side
        pending = list(socks)
        deadline = time.monotonic() + 20
        while pending and time.monotonic() < deadline:
            chunk, pending = pending[:1000], pending[1000:]
            p = select.poll()
            for s in chunk:
                p.register(s, select.POLLOUT)
            done = {fd for fd, ev in p.poll(1000) if ev & select.POLLOUT}
            pending += [s for s in chunk if s.fileno() not in done]
        assert not pending, "%d connects did not complete" % len(pending)
        # stoa holds them (not only the kernel's accept queue)
        wait_until(lambda: sum(nfds(p) for p in st.worker_pids()) >= IDLE,
                   20, 0.2, "workers to accept %d connections" % IDLE)
        # a newcomer is served at once
        t1 = time.monotonic()
        r = http_get(st.port, "/newcomer", host="limits.test", timeout=5)
        took = time.monotonic() - t1
        assert r.status == 200 and r.body == b"small /newcomer\n"
        assert took < 2.0, took
        # and so is a request on one of the idle connections
        s = socks[IDLE // 2]
        s.setblocking(True)
        s.settimeout(5)
        s.sendall(b"GET /old-idle HTTP/1.1\r\nHost: limits.test\r\n\r\n")
        r = RawConn(s, 5).read_response()
        assert r.status == 200 and r.body == b"small /old-idle\n"
        assert opened < 30
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------- fd exhaustion

@pytest.fixture
def low_fd_stoa(stoa_factory, tmpdir_short, origin, monkeypatch):
    """A stoa whose processes may open only 64 descriptors."""
    wrapper = os.path.join(tmpdir_short, "stoa-ulimit")
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\nulimit -n 64 || exit 99\nexec "%s" "$@"\n'
                % conftest.STOA_BIN)
    os.chmod(wrapper, stat.S_IRWXU)
    monkeypatch.setattr(conftest, "STOA_BIN", wrapper)
    return _stoa(stoa_factory, origin,
                 timeouts={"client_idle": "30s", "client_header": "30s"})


def test_fd_exhaustion_no_spin_no_crash_then_recovers(low_fd_stoa, origin):
    st = low_fd_stoa
    workers = st.worker_pids()
    with open("/proc/%d/limits" % workers[0]) as f:
        assert any(ln.startswith("Max open files") and " 64 " in ln
                   for ln in f), "ulimit -n 64 not in effect"
    socks = []
    try:
        for _ in range(200):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", st.port))
            socks.append(s)
        time.sleep(0.5)
        # requests on some of the crowd: served or refused, never a crash
        for s in socks[:10]:
            try:
                s.send(b"GET /crowd HTTP/1.1\r\nHost: limits.test\r\n\r\n")
            except OSError:
                pass
        share = cpu_share([st.pid] + workers, 2.0)
        assert share < 0.5, "stoa used %.0f%% of a core while out of " \
            "descriptors" % (share * 100)
        assert st.running()
        assert sorted(st.worker_pids()) == sorted(workers), \
            "a worker died while out of descriptors"
    finally:
        for s in socks:
            s.close()
    # descriptors come back: new clients are served again
    def served():
        try:
            r = http_get(st.port, "/after", host="limits.test", timeout=3)
            return r.status == 200 and r.body == b"small /after\n"
        except (OSError, AssertionError):
            return False
    wait_until(served, 10, 0.2, "stoa to serve again after the crowd left")
    for _ in range(20):
        assert served()
    assert sorted(st.worker_pids()) == sorted(workers)
