"""The error and access logs (SPEC.md "Logs") and their rotation.

Access log: one line per request, the combined log format followed by the
upstream address, the upstream time, the total time (seconds with
milliseconds) and the cache status ("-" for each that does not apply):

  127.0.0.1 - - [21/Nov/2026:07:30:00 +0000] "GET /hello HTTP/1.1" 200 18
      "REFERER" "USER-AGENT" 127.0.0.1:8000 0.003 0.004 MISS

Error log: one line per event, "TIME LEVEL [pid] message".

Rotation is the logrotate way: rename the files, then `stoa -s reopen`
(what conf/logrotate.d/stoa runs); no line is lost or written to the old
file afterwards.  The shipped logrotate snippet itself is run by the real
logrotate when it is installed.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from helpers import (SRCDIR, STOA_BIN, RawConn, conf_cache_route, conf_route,
                     conf_upstream, http_get, server_side_pid, wait_until)

ACCESS_RE = re.compile(
    r'^(?P<client>\S+) - - \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:'
    r'\d{2} [+-]\d{4})\] "(?P<request>(?:[^"\\]|\\x[0-9a-f]{2})*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)" (?P<upstream>\S+) (?P<up_time>\S+) '
    r'(?P<total>\d+\.\d{3}) (?P<cache>\S+)$')
ERROR_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)? "
                      r"(error|warn|info|debug) \[(\d+)\] \S.*$")
SECONDS = re.compile(r"^\d+\.\d{3}$")


def access_lines(text):
    lines = text.splitlines()
    for line in lines:
        assert ACCESS_RE.match(line), "bad access log line %r" % line
    return [ACCESS_RE.match(l).groupdict() for l in lines]


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def run(args):
    return subprocess.run([STOA_BIN] + args, capture_output=True, text=True,
                          timeout=30)


def body(backend):
    return (conf_upstream("app", [backend.addr])
            + conf_cache_route("/hello", "app", ttl="30s")
            + conf_route("/", "app"))


def get(port, target, headers=()):
    return http_get(port, target, host="logs.test", headers=headers)


# ------------------------------------------------------------------ access

def test_access_log_one_combined_line_per_request(aio, stoa_factory):
    st = stoa_factory(body(aio))
    port = aio.port
    first = get(st.port, "/whoami?x=1",
                headers=[("Referer", "http://ref.example/p"),
                         ("User-Agent", "probe/1.0 (test)")])
    assert first.status == 200
    slow_r = get(st.port, "/slow?s=0.3")
    assert slow_r.status == 200
    # Three requests on one keep-alive connection: three lines.
    with socket.create_connection(("127.0.0.1", st.port), 10) as s:
        conn = RawConn(s)
        for i in range(3):
            s.sendall(b"GET /items/%d HTTP/1.1\r\nHost: logs.test\r\n\r\n"
                      % i)
            assert conn.read_response().status == 200
    wait_until(lambda: len(st.access_text().splitlines()) >= 5, 5.0,
               what="five access log lines")
    time.sleep(0.2)
    lines = access_lines(st.access_text())
    assert len(lines) == 5, st.access_text()

    a = lines[0]
    assert a["client"] == "127.0.0.1"
    assert a["request"] == "GET /whoami?x=1 HTTP/1.1"
    assert a["status"] == "200"
    assert int(a["bytes"]) == len(first.body), a
    assert (a["referer"], a["agent"]) == ("http://ref.example/p",
                                          "probe/1.0 (test)")
    assert a["upstream"] == "127.0.0.1:%d" % port
    assert SECONDS.match(a["up_time"]) and SECONDS.match(a["total"]), a
    assert a["cache"] == "-", a                 # not a cached route

    slow = lines[1]
    assert slow["request"] == "GET /slow?s=0.3 HTTP/1.1"
    up, total = float(slow["up_time"]), float(slow["total"])
    assert 0.3 <= up <= total < 5, slow
    assert int(slow["bytes"]) == len(slow_r.body)

    assert [l["request"] for l in lines[2:]] == [
        "GET /items/%d HTTP/1.1" % i for i in range(3)]


def test_access_log_bytes_are_body_bytes(aio, stoa_factory):
    st = stoa_factory(body(aio))
    r = get(st.port, "/big?n=12345")
    assert r.status == 200 and len(r.body) == 12345
    wait_until(lambda: st.access_text(), 5.0, what="an access log line")
    (line,) = access_lines(st.access_text())
    assert line["bytes"] == "12345", line


def test_access_log_stoa_answers_have_no_upstream(aio, stoa_factory):
    st = stoa_factory(conf_upstream("app", [aio.addr])
                      + conf_route("/only/", "app"))
    assert get(st.port, "/nowhere").status == 404
    wait_until(lambda: st.access_text(), 5.0, what="an access log line")
    (line,) = access_lines(st.access_text())
    assert (line["status"], line["upstream"], line["up_time"],
            line["cache"]) == ("404", "-", "-", "-"), line
    assert SECONDS.match(line["total"])


def test_access_log_escapes_quotes_and_controls(aio, stoa_factory):
    st = stoa_factory(body(aio))
    r = get(st.port, "/whoami", headers=[("User-Agent", 'evil" agent\xe9'),
                                         ("Referer", "a\\b")])
    assert r.status == 200
    wait_until(lambda: st.access_text(), 5.0, what="an access log line")
    text = st.access_text()
    assert len(text.splitlines()) == 1
    (line,) = access_lines(text)
    assert line["agent"] == "evil\\x22 agent\\xe9", line
    assert line["referer"] == "a\\x5cb", line


def test_access_log_cache_status(aio, stoa_factory):
    """The last field is the X-Cache value the client got."""
    st = stoa_factory(body(aio))
    got = []
    for _ in range(2):
        r = get(st.port, "/hello")
        got.append(r.header("X-Cache"))
    r = http_get(st.port, "/hello", host="logs.test",
                 headers=[("Authorization", "Bearer x")])
    got.append(r.header("X-Cache"))
    get(st.port, "/whoami")
    got.append("-")
    assert got == ["MISS", "HIT", "BYPASS", "-"], got
    wait_until(lambda: len(st.access_text().splitlines()) >= 4, 5.0,
               what="four access log lines")
    lines = access_lines(st.access_text())
    assert [l["cache"] for l in lines] == got, st.access_text()
    # A hit never went upstream.
    assert (lines[1]["upstream"], lines[1]["up_time"]) == ("-", "-"), \
        lines[1]


# ------------------------------------------------------------------- error

def test_error_log_lines_are_time_level_pid_message(aio, stoa_factory):
    st = stoa_factory(body(aio))
    st.signal(signal.SIGHUP)
    wait_until(lambda: "reloaded" in st.error_text(), 10.0,
               what="the reload in the error log")
    st.signal(signal.SIGQUIT)
    assert st.wait_exit(10) == 0
    lines = st.error_text().splitlines()
    assert lines
    pids = set()
    for line in lines:
        m = ERROR_RE.match(line)
        assert m, "bad error log line %r" % line
        pids.add(int(m.group(2)))
    started = [l for l in lines if " started " in l and "[%d]" % st.pid in l]
    assert started, lines
    assert st.pid in pids


def test_error_log_level_filters(aio, stoa_factory):
    st = stoa_factory(body(aio))
    text = st.config_text().replace("log_level = info", "log_level = warn")
    st.reload(text=text)
    mark = len(st.error_text())
    st.reload(text=text)                        # info lines: not written
    assert " info [" not in st.error_text()[mark:], st.error_text()[mark:]
    st.signal(signal.SIGUSR1)
    time.sleep(0.2)
    assert " info [" not in st.error_text()[mark:], st.error_text()[mark:]


# -------------------------------------------------------------- rotation

def rotate_and_reopen(st):
    for p in (st.access_log, st.error_log):
        os.rename(p, p + ".1")
    r = run(["-c", st.conf, "-s", "reopen"])
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr


def test_reopen_after_rename_loses_no_line(aio, stoa_factory):
    """logrotate without copytruncate: rename, then `stoa -s reopen`.  New
    files appear, every worker writes to them, and each request is logged
    exactly once across old and new file."""
    st = stoa_factory(body(aio), workers=2)
    before = 6
    for i in range(before):
        assert get(st.port, "/whoami?before=%d" % i).status == 200
    wait_until(lambda: len(st.access_text().splitlines()) == before, 5.0,
               what="the first lines")
    rotate_and_reopen(st)
    wait_until(lambda: os.path.exists(st.error_log)
               and os.path.exists(st.access_log), 5.0,
               what="new log files")
    assert "reopening log files" in read(st.error_log + ".1")
    # Every worker must have reopened: keep sending until each worker has
    # served a request that was logged in the new file.
    workers = set(st.worker_pids())
    served = set()
    n = 0
    deadline = time.monotonic() + 10
    while served != workers:
        assert time.monotonic() < deadline, (served, workers)
        want = "after=%d " % n
        with socket.create_connection(("127.0.0.1", st.port), 5) as s:
            s.sendall(b"GET /whoami?%s HTTP/1.1\r\nHost: logs.test\r\n"
                      b"\r\n" % want.strip().encode())
            assert RawConn(s).read_response().status == 200
            pid = server_side_pid(st.port, s, workers)
        n += 1
        wait_until(lambda: want in read(st.access_log)
                   or want in read(st.access_log + ".1"), 5.0,
                   what="the line of %s" % want)
        if pid is not None and want in read(st.access_log):
            served.add(pid)
    old = access_lines(read(st.access_log + ".1"))
    new = access_lines(read(st.access_log))
    assert [l["request"] for l in old[:before]] == [
        "GET /whoami?before=%d HTTP/1.1" % i for i in range(before)]
    # Each request logged exactly once, in one file or the other (a worker
    # that had not handled its SIGUSR1 yet still wrote to the old one).
    after = sorted(l["request"] for l in old[before:] + new)
    assert after == sorted("GET /whoami?after=%d HTTP/1.1" % i
                           for i in range(n)), after
    # The error log went on in the new file, in the same format.
    for line in read(st.error_log).splitlines():
        assert ERROR_RE.match(line), line


def test_reopen_failure_is_logged_and_stoa_keeps_serving(aio,
                                                         stoa_factory):
    """The log directory is gone: reopen cannot create the file; stoa
    keeps running and says so (to the old file it still has)."""
    st = stoa_factory(body(aio))
    logdir = os.path.join(st.tmp, "logs")
    os.mkdir(logdir)
    text = st.config_text().replace(st.access_log,
                                    os.path.join(logdir, "access.log"))
    st.write_config(text)
    st.signal(signal.SIGHUP)
    wait_until(lambda: "reloaded" in st.error_text(), 10.0,
               what="the reload")
    time.sleep(0.3)
    shutil.rmtree(logdir)
    st.signal(signal.SIGUSR1)
    wait_until(lambda: "cannot reopen access log" in st.error_text(), 5.0,
               what="the reopen failure in the error log")
    assert get(st.port, "/whoami").status == 200
    assert st.running()


LOGROTATE = shutil.which("logrotate") or (
    "/usr/sbin/logrotate" if os.access("/usr/sbin/logrotate", os.X_OK)
    else None)


@pytest.mark.skipif(LOGROTATE is None, reason="logrotate not installed")
def test_shipped_logrotate_snippet(aio, stoa_factory, tmpdir_short):
    """conf/logrotate.d/stoa run by logrotate itself, with its paths
    pointed at this instance: the files are rotated, stoa reopens, and new
    requests are logged in the new files."""
    st = stoa_factory(body(aio))
    assert get(st.port, "/whoami?before").status == 200
    wait_until(lambda: "before" in st.access_text(), 5.0,
               what="the first access line")
    with open(os.path.join(SRCDIR, "conf", "logrotate.d", "stoa")) as f:
        snippet = f.read()
    assert "/var/log/stoa/*.log" in snippet
    assert "-s reopen" in snippet
    logdir = st.tmp
    snippet = snippet.replace("/var/log/stoa/*.log",
                              os.path.join(logdir, "*.log"))
    snippet = snippet.replace("/run/stoa/stoa.pid", st.pid_file)
    snippet = re.sub(r"/\S*/stoa -s reopen",
                     "%s -c %s -s reopen" % (STOA_BIN, st.conf), snippet)
    conf = os.path.join(tmpdir_short, "logrotate.conf")
    with open(conf, "w") as f:
        f.write(snippet)
    os.chmod(conf, 0o644)
    r = subprocess.run([LOGROTATE, "-f", "-s",
                        os.path.join(tmpdir_short, "logrotate.state"), conf],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.exists(st.access_log + ".1"), os.listdir(logdir)
    assert "before" in read(st.access_log + ".1")
    wait_until(lambda: os.path.exists(st.error_log), 5.0,
               what="a new error log")
    assert "reopening log files" in read(st.error_log + ".1")

    def logged_again():
        get(st.port, "/whoami?after")
        return "after" in read(st.access_log)
    wait_until(logged_again, 5.0, 0.1, what="a line in the new access log")
    assert "after" not in read(st.access_log + ".1")
