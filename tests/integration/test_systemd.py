"""stoa run the way systemd runs systemd/stoa.service.in.

No systemd here: the test plays its part.  It reads the unit template,
substitutes the placeholders (the stoa under test, a scratch sysconfdir),
runs ExecStartPre and ExecStart exactly as written, with NOTIFY_SOCKET
pointing at a datagram socket of its own, runs ExecReload with $MAINPID,
stops with the unit's KillSignal, and checks the sd_notify messages
(READY/MAINPID, RELOADING/MONOTONIC_USEC, STOPPING), the exit statuses,
the watchdog (WATCHDOG_USEC/WATCHDOG_PID -> WATCHDOG=1 every
WATCHDOG_USEC/2 while every worker slot is alive) and socket activation
(LISTEN_FDS/LISTEN_PID with a socket the test bound itself as fd 3).

systemd sets WATCHDOG_PID and LISTEN_PID to the pid of the process it
execs; the test gets the same by starting stoa through
`sh -c 'VAR=$$ exec stoa ...'`, so the variables hold the pid stoa runs as.
"""

import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import Stoa
from helpers import (SRCDIR, STOA_BIN, children, conf_route, conf_upstream,
                     http_get, pid_alive, wait_until)

UNIT = os.path.join(SRCDIR, "systemd", "stoa.service.in")
SOCKET_UNIT = os.path.join(SRCDIR, "systemd", "stoa.socket")
WD_USEC = 500000                    # pings expected every 250 ms


def unit_settings(path=UNIT):
    """{key: [values]} of a unit file (comments and sections dropped)."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[":
                continue
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def unit_cmd(line, sysconfdir, mainpid=None):
    """argv of an Exec*= line with the Makefile's substitutions made and
    the stoa under test in place of @sbindir@/stoa."""
    line = line.replace("@sbindir@/stoa", STOA_BIN)
    line = line.replace("@sysconfdir@", sysconfdir)
    if mainpid is not None:
        line = line.replace("$MAINPID", str(mainpid))
    assert "@" not in line and "$" not in line, line
    return shlex.split(line)


class Notify:
    """The test's NOTIFY_SOCKET: every datagram with its arrival time."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.path = path
        self.msgs = []          # (monotonic time, {KEY: VALUE}, text)

    def _recv(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return False
        text = data.decode()
        kv = dict(x.split("=", 1) for x in text.split("\n") if "=" in x)
        self.msgs.append((time.monotonic(), kv, text))
        return True

    def wait_for(self, key, value=None, after=0, timeout=10.0):
        """Index of the first message from `after` on with KEY (=value)."""
        deadline = time.monotonic() + timeout
        i = after
        while True:
            while i < len(self.msgs):
                kv = self.msgs[i][1]
                if key in kv and (value is None or kv[key] == value):
                    return i
                i += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s=%s on NOTIFY_SOCKET; got %r" % (
                    key, value, [m[2] for m in self.msgs[after:]]))
            self._recv(left)

    def collect(self, seconds):
        """Read everything that arrives within `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._recv(left)

    def pings(self, after=0):
        return [t for t, kv, _ in self.msgs[after:]
                if kv.get("WATCHDOG") == "1"]

    def close(self):
        self.sock.close()


class UnitStoa(Stoa):
    """A Stoa whose master is started by the unit's ExecStart= line
    through `sh -c 'ASSIGN exec "$@"'`, with systemd's environment."""

    def __init__(self, tmp, body, **kw):
        super().__init__(tmp, body, **kw)
        self.sysconfdir = os.path.join(tmp, "etc")
        os.makedirs(os.path.join(self.sysconfdir, "stoa"))
        self.conf = os.path.join(self.sysconfdir, "stoa", "stoa.conf")
        self.units = unit_settings()

    def exec_line(self, key):
        (line,) = self.units[key]
        return unit_cmd(line, self.sysconfdir)

    def start_unit(self, env, assign="", listen_sock=None, wait=True):
        self.write_config(self.config_text())
        full = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                  "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            full.pop(k, None)
        full.update(env)
        kw = {}
        if listen_sock is not None:
            fd = listen_sock.fileno()
            kw = dict(pass_fds=(3,), preexec_fn=lambda: os.dup2(fd, 3))
        out = open(self.out_path, "ab")
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", '%s exec "$@"' % assign, "sh"]
            + self.exec_line("ExecStart"), stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full,
            start_new_session=True, **kw)
        out.close()
        self.pid = self.proc.pid
        if wait:
            self.wait_ready()
        return self


@pytest.fixture
def unit_stoa(tmpdir_short):
    made = []

    def make(body, **kw):
        sub = tempfile.mkdtemp(prefix="u%d." % len(made), dir=tmpdir_short)
        s = UnitStoa(sub, body, **kw)
        made.append(s)
        return s
    yield make
    errors = []
    for s in made:
        try:
            s.finish()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("stoa teardown: " + " | ".join(errors), pytrace=False)


@pytest.fixture
def notify(tmpdir_short):
    n = Notify(os.path.join(tmpdir_short, "notify.sock"))
    yield n
    n.close()


def proxy_body(backend):
    return conf_upstream("app", [backend.addr]) + conf_route("/", "app")


def mono_usec():
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)


# ------------------------------------------------------------------ the unit

def test_unit_template_settings():
    """What the tests below rely on, as written in the unit."""
    u = unit_settings()
    assert u["Type"] == ["notify"]
    assert u["NotifyAccess"] == ["main"]
    assert u["KillSignal"] == ["SIGQUIT"] and u["KillMode"] == ["mixed"]
    assert u["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert "ExecStop" not in u
    (start,) = u["ExecStart"]
    assert "-d" not in shlex.split(start)            # foreground
    (wd,) = u["WatchdogSec"]
    assert re.fullmatch(r"\d+s", wd) and int(wd[:-1]) >= 10, wd
    s = unit_settings(SOCKET_UNIT)
    assert s["Service"] == ["stoa.service"]
    # The socket unit's address is the shipped config's default listen.
    with open(os.path.join(SRCDIR, "conf", "stoa.conf")) as f:
        m = re.search(r'(?m)^listen\s*=\s*\{"([^"]+)"\}', f.read())
    assert s["ListenStream"] == [m.group(1)]


def test_exec_start_pre_checks_the_config(aio, unit_stoa):
    st = unit_stoa(proxy_body(aio))
    st.write_config(st.config_text())
    r = subprocess.run(st.exec_line("ExecStartPre"), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "stoa: configuration %s is ok" % st.conf
    st.write_config(st.config_text() + "route /x { upstream = nope }\n")
    r = subprocess.run(st.exec_line("ExecStartPre"), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert re.match(r"%s:\d+: .*nope" % re.escape(st.conf), r.stderr), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_start_reload_stop_as_the_unit_does(aio, unit_stoa, notify):
    st = unit_stoa(proxy_body(aio))
    st.start_unit({"NOTIFY_SOCKET": notify.path})
    i = notify.wait_for("READY", "1")
    kv = notify.msgs[i][1]
    # Type=notify with NotifyAccess=main: the pid systemd started is the
    # master (no fork into the background), and it says so.
    assert kv.get("MAINPID") == str(st.pid), kv
    assert "STATUS" in kv, kv
    with open(st.pid_file) as f:
        assert int(f.read()) == st.pid
    assert http_get(st.port, "/").status == 200
    # The workers accepted already when READY=1 came: no request waited.
    assert len(st.worker_pids()) == st.workers

    # ExecReload: RELOADING=1 with the CLOCK_MONOTONIC time, then READY=1.
    mark = len(notify.msgs)
    old = set(st.worker_pids())
    t0 = mono_usec()
    r = subprocess.run(unit_cmd(st.units["ExecReload"][0], st.sysconfdir,
                                mainpid=st.pid), timeout=10)
    assert r.returncode == 0
    i = notify.wait_for("RELOADING", "1", after=mark)
    usec = int(notify.msgs[i][1]["MONOTONIC_USEC"])
    assert t0 <= usec <= mono_usec(), (t0, usec)
    notify.wait_for("READY", "1", after=i)
    wait_until(lambda: not (set(st.worker_pids()) & old)
               and len(st.worker_pids()) == st.workers, 10.0,
               what="new workers after the reload")
    assert http_get(st.port, "/").status == 200

    # A reload with a broken file: still RELOADING=1 then READY=1 (systemd
    # must not hang in "reloading"), the old workers keep serving.
    st.write_config(st.config_text() + "bogus_key = 1\n")
    mark = len(notify.msgs)
    before = set(st.worker_pids())
    st.signal(signal.SIGHUP)
    i = notify.wait_for("RELOADING", "1", after=mark)
    notify.wait_for("READY", "1", after=i)
    assert set(st.worker_pids()) == before
    assert http_get(st.port, "/").status == 200
    wait_until(lambda: "reload failed" in st.error_text(), 5.0,
               what="the reload failure in the error log")

    # The unit's KillSignal (SIGQUIT, to the master only): STOPPING=1,
    # graceful stop, exit status 0, no worker left, pid file removed.
    workers = st.worker_pids()
    mark = len(notify.msgs)
    st.signal(getattr(signal, st.units["KillSignal"][0]))
    notify.wait_for("STOPPING", "1", after=mark)
    assert st.wait_exit(15) == 0
    assert not [p for p in workers if pid_alive(p)]
    assert not os.path.exists(st.pid_file)


def test_sigterm_notifies_stopping_and_exits_0(aio, unit_stoa, notify):
    st = unit_stoa(proxy_body(aio))
    st.start_unit({"NOTIFY_SOCKET": notify.path})
    notify.wait_for("READY", "1")
    mark = len(notify.msgs)
    st.signal(signal.SIGTERM)
    notify.wait_for("STOPPING", "1", after=mark)
    assert st.wait_exit(10) == 0


def test_startup_failure_exits_1_without_ready(aio, unit_stoa, notify):
    """Port taken: one line naming the address, status 1, never READY=1
    (systemd then marks the start failed instead of waiting)."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        st = unit_stoa(proxy_body(aio), port=busy.getsockname()[1])
        st.expect_rc = 1
        st.start_unit({"NOTIFY_SOCKET": notify.path}, wait=False)
        assert st.wait_exit(10) == 1
        out = st.output()
        assert "cannot listen on 127.0.0.1:%d" % st.port in out, out
        assert "in use" in out, out
        notify.collect(0.2)
        assert not [m for m in notify.msgs if "READY" in m[1]], notify.msgs
    finally:
        busy.close()


# ------------------------------------------------------------------ watchdog

def gaps(times):
    return [b - a for a, b in zip(times, times[1:])]


def test_watchdog_pings_every_half_interval(aio, unit_stoa, notify):
    st = unit_stoa(proxy_body(aio))
    st.start_unit({"NOTIFY_SOCKET": notify.path,
                   "WATCHDOG_USEC": str(WD_USEC)}, assign="WATCHDOG_PID=$$")
    r = notify.wait_for("READY", "1")
    mark = len(notify.msgs)
    notify.collect(1.0)
    for _ in range(5):                      # pings go on while serving
        assert http_get(st.port, "/").status == 200
    notify.collect(0.5)
    pings = notify.pings(after=mark)
    assert len(pings) >= 5, notify.msgs
    assert max(gaps(pings)) < 0.45, gaps(pings)     # every 250 ms
    first = next(i for i, m in enumerate(notify.msgs)
                 if m[1].get("WATCHDOG") == "1")
    assert first > r                        # only once READY=1 was sent


def test_watchdog_for_another_pid_is_ignored(aio, unit_stoa, notify):
    """WATCHDOG_PID names another process (systemd set it for the shell
    that would have exec'd us): stoa must not ping."""
    st = unit_stoa(proxy_body(aio))
    st.start_unit({"NOTIFY_SOCKET": notify.path,
                   "WATCHDOG_USEC": str(WD_USEC), "WATCHDOG_PID": "1"})
    notify.wait_for("READY", "1")
    notify.collect(0.8)
    assert notify.pings() == []


def test_watchdog_pauses_while_a_worker_slot_is_empty(aio, unit_stoa, notify):
    """A worker that keeps dying is restarted with a growing backoff; while
    its slot is empty the master is not healthy and does not ping.  Pings
    resume once the slot has a worker again."""
    st = unit_stoa(proxy_body(aio), workers=1)
    st.start_unit({"NOTIFY_SOCKET": notify.path,
                   "WATCHDOG_USEC": str(WD_USEC)}, assign="WATCHDOG_PID=$$")
    notify.wait_for("READY", "1")
    notify.wait_for("WATCHDOG", "1")
    mark = len(notify.msgs)
    # Kill each replacement as soon as it appears: 5 deaths within their
    # first second give a backoff of at least 800 ms before the last restart.
    for _ in range(5):
        (pid,) = wait_until(lambda: children(st.pid) or None, 10.0, 0.005,
                            "a worker")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: pid not in children(st.pid), 5.0, 0.005,
                   "worker %d reaped" % pid)
        notify.collect(0)
    killed_at = time.monotonic()
    wait_until(lambda: children(st.pid), 15.0, 0.01, "the last restart")
    restarted_at = time.monotonic()
    notify.collect(1.0)
    pings = notify.pings(after=mark)
    assert restarted_at - killed_at >= 0.6, restarted_at - killed_at
    # No ping while the slot was empty (a ping may slip in right at the
    # kill, before the master has reaped the worker) ...
    assert not [t for t in pings if killed_at + 0.05 < t < restarted_at - 0.1], \
        (killed_at, restarted_at, pings)
    # ... and regular ones again afterwards.
    after = [t for t in pings if t > restarted_at]
    assert len(after) >= 3 and max(gaps(after)) < 0.45, after
    assert "crash loop backoff" in st.error_text()


# ------------------------------------------------------- socket activation

def listening_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


def socket_inode(sock):
    return os.fstat(sock.fileno()).st_ino


def fd_inodes(pid):
    out = set()
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            link = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", link)
        if m:
            out.add(int(m.group(1)))
    return out


def test_socket_activation_serves_on_the_passed_socket(aio, unit_stoa,
                                                        notify):
    """The test holds the listening socket (as systemd does), so stoa could
    not bind the port itself: requests are answered only if stoa uses
    fd 3.  The master holds that very socket."""
    ls = listening_socket()
    try:
        st = unit_stoa(proxy_body(aio), port=ls.getsockname()[1])
        st.start_unit({"NOTIFY_SOCKET": notify.path, "LISTEN_FDS": "1"},
                      assign="LISTEN_PID=$$", listen_sock=ls)
        notify.wait_for("READY", "1")
        r = http_get(st.port, "/")
        assert r.status == 200, r
        assert socket_inode(ls) in fd_inodes(st.pid)
        for w in st.worker_pids():
            assert socket_inode(ls) in fd_inodes(w)
        log = st.error_text()
        assert "using socket-activated listener 127.0.0.1:%d" % st.port \
            in log, log
        # A reload keeps the passed socket.
        mark = len(notify.msgs)
        st.signal(signal.SIGHUP)
        notify.wait_for("READY", "1", after=mark)
        assert http_get(st.port, "/").status == 200
        assert socket_inode(ls) in fd_inodes(st.pid)
        st.signal(signal.SIGQUIT)
        assert st.wait_exit(15) == 0
        # systemd's copy stays open: connections queue for the next start.
        c = socket.create_connection(("127.0.0.1", st.port), 2)
        c.close()
    finally:
        ls.close()


def test_socket_activation_for_another_pid_is_ignored(aio, unit_stoa,
                                                      notify):
    """LISTEN_PID names another process: the fds are not ours, stoa binds
    by itself and, the port being taken, fails with one line, status 1."""
    ls = listening_socket()
    try:
        st = unit_stoa(proxy_body(aio), port=ls.getsockname()[1])
        st.expect_rc = 1
        st.start_unit({"NOTIFY_SOCKET": notify.path, "LISTEN_FDS": "1",
                       "LISTEN_PID": "1"}, listen_sock=ls, wait=False)
        assert st.wait_exit(10) == 1
        out = st.output()
        assert "cannot listen on 127.0.0.1:%d" % st.port in out, out
    finally:
        ls.close()


def test_socket_activation_unmatched_socket_is_closed(aio, unit_stoa,
                                                      notify):
    """A passed socket for an address the config does not listen on is
    closed with a warning; stoa binds its own listen address."""
    other = listening_socket()
    try:
        st = unit_stoa(proxy_body(aio))
        st.start_unit({"NOTIFY_SOCKET": notify.path, "LISTEN_FDS": "1"},
                      assign="LISTEN_PID=$$", listen_sock=other)
        notify.wait_for("READY", "1")
        assert http_get(st.port, "/").status == 200
        assert socket_inode(other) not in fd_inodes(st.pid)
        assert "matches no listen address" in st.error_text()
    finally:
        other.close()
