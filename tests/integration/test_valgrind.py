"""No leaks and no memory errors under valgrind for a start-serve-stop cycle.

Runs the release build of stoa (one worker) under memcheck, which follows
the fork into the worker, serves a mix of requests (keep-alive, POST, 404,
a 502 from a dead upstream; the same over HTTP/2, plus a stream reset
before its answer), stops it gracefully with SIGQUIT, and reads
each process's valgrind report.  Skipped for a sanitizer build (ASan and
valgrind cannot share a process) or when valgrind is not installed.
"""

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest
import requests

from helpers import (STOA_BIN, Backend, H2Client, free_port, port_accepts,
                     wait_until)


def _sanitized():
    out = subprocess.run([STOA_BIN, "-V"], capture_output=True, text=True,
                         timeout=10).stdout
    m = re.search(r"^sanitizers: (.*)$", out, re.M)
    return m is not None and m.group(1).strip() not in ("", "none")


pytestmark = [
    pytest.mark.skipif(shutil.which("valgrind") is None,
                       reason="valgrind is not installed"),
    pytest.mark.skipif(_sanitized(), reason="sanitizer build: valgrind "
                       "cannot run an ASan binary"),
]


def test_start_serve_stop_has_no_leaks_under_valgrind():
    backend = Backend("aiohttp")
    tmp = tempfile.mkdtemp(prefix="stoa-vg-")
    port, dead = free_port(), free_port()
    conf = os.path.join(tmp, "stoa.conf")
    with open(conf, "w") as f:
        f.write("""workers = 1
listen = {"127.0.0.1:%d"}
pid_file = "%s/stoa.pid"
error_log = "%s/error.log"
access_log = "%s/access.log"
upstream app { server = {"%s"} }
upstream dead { server = {"127.0.0.1:%d"} }
route /dead/ { upstream = dead }
route / { upstream = app }
""" % (port, tmp, tmp, tmp, backend.addr, dead))
    proc = subprocess.Popen(
        ["valgrind", "-q", "--leak-check=full", "--show-leak-kinds=definite",
         "--errors-for-leak-kinds=definite", "--track-fds=no",
         "--log-file=%s/vg.%%p" % tmp, STOA_BIN, "-c", conf],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: port_accepts(port), 60.0, what="stoa under valgrind")
        with requests.Session() as s:
            for i in range(10):
                r = s.get("http://127.0.0.1:%d/hello" % port, timeout=30)
                assert r.status_code == 200
            r = s.post("http://127.0.0.1:%d/echo" % port, data=b"x" * 70000,
                       timeout=30)
            assert r.status_code == 200 and len(r.content) == 70000
            r = s.get("http://127.0.0.1:%d/dead/x" % port, timeout=30)
            assert r.status_code == 502
        # HTTP/2 (h2c): streams are conns without a socket; a GET, a POST
        # with a body, a 502, and a stream reset before its answer
        h2 = H2Client(port, None, timeout=30)
        try:
            got = h2.wait([h2.start("/hello"),
                           h2.start("/echo", method="POST",
                                    body=b"y" * 30000),
                           h2.start("/dead/x")])
            assert sorted(v[0] for v in got.values()) == [200, 200, 502]
            sid = h2.start("/slow?s=0.3")
            h2.conn.reset_stream(sid)
            h2.sock.sendall(h2.conn.data_to_send())
            assert h2.request("/hello")[0] == 200
        finally:
            h2.close()
        with socket.create_connection(("127.0.0.1", port), 30) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            assert c.recv(100).startswith(b"HTTP/1.1 400")
        # one connection left open mid-head: the drain must free it too
        idle = socket.create_connection(("127.0.0.1", port), 30)
        idle.sendall(b"GET /hel")
        proc.send_signal(signal.SIGQUIT)
        assert proc.wait(90) == 0
        idle.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        backend.stop()
    reports = glob.glob(os.path.join(tmp, "vg.*"))
    assert len(reports) >= 2, "expected master and worker reports"
    bad = {}
    for path in reports:
        with open(path) as f:
            text = f.read()
        if text.strip():
            bad[os.path.basename(path)] = text
    shutil.rmtree(tmp, ignore_errors=True)
    assert not bad, "valgrind reported:\n" + "\n".join(
        "%s:\n%s" % kv for kv in bad.items())
