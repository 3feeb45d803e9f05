"""Fixtures of the stoa integration suite: backends and stoa instances.

Every process a test starts is stopped in a finalizer: the stoa master with
SIGTERM, then SIGKILL after a bounded wait, then a sweep of its process
group.  After each test the finalizer also checks that the master did not
crash (exit status 0 or still running) and that neither the error log nor
stoa's stderr holds an assertion failure or a sanitizer report.
"""

import os
import shutil
import signal
import subprocess
import tempfile

import pytest

from helpers import (BAD_LOG, STOA_BIN, WORKERS, Backend, children,
                     free_port, port_accepts, pid_alive, stop_process,
                     sweep_group, wait_until)

START_TIMEOUT = 15.0


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class Stoa:
    """One stoa master started in the foreground with a generated config."""

    def __init__(self, tmp, body, workers=WORKERS, timeouts=None,
                 limits=None, extra="", env=None, port=None):
        self.tmp = tmp
        self.body = body
        self.workers = workers
        self.timeouts = dict(client_header="5s", client_idle="10s",
                             upstream_connect="1s", upstream_read="10s")
        self.timeouts.update(timeouts or {})
        self.limits = dict(limits or {})
        self.extra = extra
        self.env = env
        self.conf = os.path.join(tmp, "stoa.conf")
        self.pid_file = os.path.join(tmp, "stoa.pid")
        self.error_log = os.path.join(tmp, "error.log")
        self.access_log = os.path.join(tmp, "access.log")
        self.out_path = os.path.join(tmp, "stoa.out")
        self.proc = None
        self.expect_rc = 0          # a test that ends stoa itself may change it
        self.port = port or free_port()

    # -- config --------------------------------------------------------
    def config_text(self, body=None):
        t = " ".join("%s = %s" % kv for kv in self.timeouts.items())
        lines = [
            "workers = %d" % self.workers,
            'listen = {"127.0.0.1:%d"}' % self.port,
            'pid_file = "%s"' % self.pid_file,
            'error_log = "%s"' % self.error_log,
            'access_log = "%s"' % self.access_log,
            "log_level = info",
            "shutdown_timeout = 5s",
            "timeouts { %s }" % t,
        ]
        if self.limits:
            lines.append("limits { %s }" % " ".join(
                "%s = %s" % kv for kv in self.limits.items()))
        if self.extra:
            lines.append(self.extra)
        return "\n".join(lines) + "\n" + (self.body if body is None else body)

    def write_config(self, text):
        tmpname = self.conf + ".new"
        with open(tmpname, "w") as f:
            f.write(text)
        os.rename(tmpname, self.conf)

    # -- life cycle ----------------------------------------------------
    def start(self):
        for attempt in range(3):
            self.write_config(self.config_text())
            env = dict(os.environ)
            env.update(self.env or {})
            out = open(self.out_path, "ab")
            self.proc = subprocess.Popen(
                [STOA_BIN, "-c", self.conf], stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True)
            out.close()
            self.pid = self.proc.pid
            try:
                self.wait_ready()
                return self
            except AssertionError:
                rc = self.proc.poll()
                text = self.output() + self.error_text()
                if (rc is not None and attempt < 2
                        and "in use" in text.lower()):
                    self.port = free_port()     # lost a race for the port
                    continue
                self.finish(check=False)
                raise AssertionError(
                    "stoa did not start (rc %s); output:\n%s\nerror log:\n%s"
                    % (rc, self.output(), self.error_text()))

    def wait_ready(self, timeout=START_TIMEOUT):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("stoa exited")
            return (port_accepts(self.port)
                    and len(self.worker_pids()) == self.workers)
        wait_until(ready, timeout, 0.05, "stoa to accept with %d workers"
                   % self.workers)

    def finish(self, check=True):
        """Stop the master (SIGTERM, then SIGKILL) and sweep its group.
        With check, raise when it crashed or a bad line was logged."""
        problems = []
        if self.proc is None:
            return
        was_running = self.proc.poll() is None
        rc, killed = stop_process(self.proc, signal.SIGTERM, 10.0)
        sweep_group(self.proc.pid)
        if not check:
            return
        if killed:
            problems.append("master did not exit within 10s of SIGTERM")
        elif not was_running and rc != self.expect_rc:
            problems.append("master exited with status %s during the test"
                            % rc)
        elif was_running and rc != 0:
            problems.append("master exited with status %s on SIGTERM" % rc)
        for name, text in (("error log", self.error_text()),
                           ("stderr", self.output())):
            m = BAD_LOG.search(text)
            if m:
                problems.append("%s contains %r:\n%s" % (name, m.group(0),
                                                         text[-4000:]))
        if problems:
            raise AssertionError("; ".join(problems))

    # -- helpers -------------------------------------------------------
    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def signal(self, sig):
        os.kill(self.pid, sig)

    def worker_pids(self):
        return children(self.pid)

    def running(self):
        return self.proc.poll() is None

    def output(self):
        return _read(self.out_path)

    def error_text(self):
        return _read(self.error_log)

    def access_text(self):
        return _read(self.access_log)

    def reload(self, body=None, text=None, timeout=15.0):
        """Rewrite the config (body replaces the upstream/route part, or
        text the whole file), send SIGHUP and wait until every old worker
        has exited and `workers` new ones run.  Returns the new pids."""
        old = set(self.worker_pids())
        self.write_config(text if text is not None
                          else self.config_text(body))
        self.signal(signal.SIGHUP)

        def done():
            cur = set(self.worker_pids())
            still = [p for p in old if pid_alive(p)]
            return (not still and len(cur) == self.workers
                    and not (cur & old)) and cur
        return wait_until(done, timeout, 0.05, "reload to replace workers")

    def wait_exit(self, timeout=10.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("stoa master still running after %.0fs"
                                 % timeout)


@pytest.fixture
def tmpdir_short():
    """A short private directory (AF_UNIX paths must stay < 108 bytes)."""
    d = tempfile.mkdtemp(prefix="stoa-it.")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def backend_factory():
    started = []

    def make(kind="aiohttp"):
        b = Backend(kind)
        started.append(b)
        return b
    yield make
    for b in started:
        b.stop()


@pytest.fixture
def aio(backend_factory):
    return backend_factory("aiohttp")


@pytest.fixture
def stoa_factory(tmpdir_short):
    """make(body, **kw) -> started Stoa.  body: upstream and route
    sections.  kw: workers, timeouts={}, limits={}, extra, env, start."""
    made = []

    def make(body, start=True, **kw):
        sub = tempfile.mkdtemp(prefix="s%d." % len(made), dir=tmpdir_short)
        s = Stoa(sub, body, **kw)
        made.append(s)
        if start:
            s.start()
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
def proxy_to(stoa_factory):
    """proxy_to(backend, **kw) -> Stoa routing / to that one backend."""
    from helpers import conf_route, conf_upstream

    def make(backend, **kw):
        body = conf_upstream("app", [backend.addr]) + conf_route("/", "app")
        return stoa_factory(body, **kw)
    return make


def pytest_report_header(config):
    return "stoa binary: %s (exists: %s)" % (STOA_BIN,
                                             os.path.exists(STOA_BIN))


# A missing binary is an error (make check always builds it first); with
# STOA_ALLOW_MISSING=1 the tests that need it are skipped instead, so the
# backends and helpers (marked nostoa) can be checked on their own.
def pytest_collection_modifyitems(session, config, items):
    if os.access(STOA_BIN, os.X_OK):
        return
    if not os.environ.get("STOA_ALLOW_MISSING"):
        pytest.exit("stoa binary %s not found or not executable" % STOA_BIN,
                    returncode=1)
    mark = pytest.mark.skip(reason="stoa binary %s not found" % STOA_BIN)
    for it in items:
        if "nostoa" not in it.keywords:
            it.add_marker(mark)


def pytest_configure(config):
    config.addinivalue_line("markers",
                            "nostoa: test does not need the stoa binary")
