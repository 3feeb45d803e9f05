"""The command line: -t, -V, -h, bad options, -s, -d, and start-up
failures (one clear line, non-zero exit, nothing left running)."""

import os
import re
import signal
import socket
import subprocess

import pytest
import requests

from helpers import (STOA_BIN, SRCDIR, children, conf_route, conf_upstream, free_port,
                     group_members, pid_alive, stop_process, sweep_group,
                     wait_until)


def run(args, timeout=20, **kw):
    return subprocess.run([STOA_BIN] + args, capture_output=True,
                          timeout=timeout, text=True,
                          stdin=subprocess.DEVNULL, **kw)


def good_config(tmp, port=None, extra=""):
    return ("workers = 2\n"
            'listen = {"127.0.0.1:%d"}\n' % (port or free_port()) +
            'pid_file = "%s/stoa.pid"\n' % tmp +
            'error_log = "%s/error.log"\n' % tmp +
            "access_log = off\n" + extra +
            conf_upstream("app", ["127.0.0.1:%d" % free_port()]) +
            conf_route("/", "app"))


def write(tmp, name, text):
    p = os.path.join(tmp, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def test_check_good_config_ok(tmp_path):
    conf = write(str(tmp_path), "good.conf", good_config(tmp_path))
    r = run(["-t", "-c", conf])
    assert r.returncode == 0, r.stderr
    lines = (r.stdout + r.stderr).splitlines()
    assert lines == ["stoa: configuration %s is ok" % conf], lines


def test_check_does_not_bind(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        conf = write(str(tmp_path), "good.conf", good_config(tmp_path, port))
        r = run(["-t", "-c", conf])
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(os.path.join(str(tmp_path), "stoa.pid"))


# (name, config text, line of the error).  Every case is a complete config
# with one error.  Sections are written on one line where the line of the
# section and the line of the key inside it could differ.
W = "workers = 2\n"
L = 'listen = {"127.0.0.1:1"}\n'
U = 'upstream a { server = {"127.0.0.1:2"} }\n'
R = "route / { upstream = a }\n"
BAD = [
    ("unknown_key", W + L + "bogus = 1\n" + U + R, 3),
    ("unknown_key_in_section",
     W + L + U + "route / { upstream = a  colour = blue }\n", 4),
    ("bad_duration", W + L + "\ntimeouts { client_header = 10x }\n" + U + R,
     4),
    ("bad_size", W + L + "limits { max_body_size = 12q }\n" + U + R, 3),
    ("unknown_upstream", W + L + U + "route / { upstream = nope }\n", 4),
    ("duplicate_host_prefix",
     W + L + U + 'route /api/ { host = "x.test"  upstream = a }\n' + R
     + 'route /api/ { host = "x.test"  upstream = a }\n', 6),
    ("duplicate_prefix", W + L + U + R + R, 5),
    ("empty_listen", W + "listen = {}\n" + U + R, 2),
    ("workers_zero", "workers = 0\n" + L + U + R, 1),
    ("workers_not_a_number", L + "workers = many\n" + U + R, 2),
    ("upstream_without_server",
     W + L + "upstream a { balance = round_robin }\n" + R, 3),
    ("bad_balance",
     W + L + 'upstream a { server = {"127.0.0.1:2"}  balance = random }\n'
     + R, 3),
    ("bad_listen_address", W + 'listen = {"127.0.0.1:notaport"}\n' + U + R,
     2),
]


@pytest.mark.parametrize("name,text,line", BAD, ids=[b[0] for b in BAD])
def test_check_bad_config_one_line_with_file_and_line(tmp_path, name, text,
                                                      line):
    conf = write(str(tmp_path), name + ".conf", text)
    r = run(["-t", "-c", conf])
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("%s:%d: " % (conf, line)), lines[0]
    assert len(lines[0]) > len("%s:%d: " % (conf, line)), "no reason given"


def test_check_unclosed_section(tmp_path):
    text = ('workers = 2\nlisten = {"127.0.0.1:1"}\n'
            'upstream a {\n  server = {"127.0.0.1:2"}\n'
            'route / { upstream = a }\n')
    conf = write(str(tmp_path), "unclosed.conf", text)
    r = run(["-t", "-c", conf])
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    m = re.match(re.escape(conf) + r":(\d+): .", lines[0])
    assert m, lines[0]
    # The opening line of the section, or where the file ended.
    assert int(m.group(1)) in (3, 5, 6), lines[0]


def test_check_unreadable_file(tmp_path):
    conf = os.path.join(str(tmp_path), "missing.conf")
    r = run(["-t", "-c", conf])
    assert r.returncode != 0
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and conf in lines[0], r.stderr


def test_version(tmp_path):
    with open(os.path.join(SRCDIR, "configure.ac")) as f:
        m = re.search(r"AC_INIT\(\[stoa\],\s*\[([^\]]+)\]", f.read())
    r = run(["-V"])
    assert r.returncode == 0
    assert m.group(1) in r.stdout + r.stderr


def test_help(tmp_path):
    r = run(["-h"])
    assert r.returncode == 0
    out = r.stdout + r.stderr
    assert "usage" in out.lower() and "-c" in out


def test_bad_option(tmp_path):
    r = run(["-Z"])
    assert r.returncode != 0
    assert r.stderr.strip(), "no message for a bad option"


def test_missing_option_argument(tmp_path):
    r = run(["-c"])
    assert r.returncode != 0
    assert r.stderr.strip()


def test_signal_bad_name(tmp_path):
    conf = write(str(tmp_path), "good.conf", good_config(tmp_path))
    r = run(["-c", conf, "-s", "explode"])
    assert r.returncode != 0
    assert r.stderr.strip()


def test_signal_without_running_master(tmp_path):
    conf = write(str(tmp_path), "good.conf", good_config(tmp_path))
    r = run(["-c", conf, "-s", "reload"])
    assert r.returncode != 0
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr


def test_signal_reload_via_pid_file(backend_factory, stoa_factory):
    a, b = backend_factory("aiohttp"), backend_factory("aiohttp")
    st = stoa_factory(conf_upstream("app", [a.addr]) + conf_route("/", "app"))
    old = set(st.worker_pids())
    st.write_config(st.config_text(conf_upstream("app", [b.addr])
                                   + conf_route("/", "app")))
    r = run(["-c", st.conf, "-s", "reload"])
    assert r.returncode == 0, r.stderr
    wait_until(lambda: not (set(st.worker_pids()) & old)
               and len(st.worker_pids()) == st.workers, 15.0,
               what="workers replaced after -s reload")
    assert requests.get(st.url("/whoami"), timeout=10).json()["port"] == b.port


def test_signal_quit_via_pid_file(aio, stoa_factory):
    st = stoa_factory(conf_upstream("app", [aio.addr]) + conf_route("/", "app"))
    r = run(["-c", st.conf, "-s", "quit"])
    assert r.returncode == 0, r.stderr
    assert st.wait_exit(10) == 0


def test_signal_reopen_via_pid_file(aio, stoa_factory):
    st = stoa_factory(conf_upstream("app", [aio.addr]) + conf_route("/", "app"))
    requests.get(st.url("/hello"), timeout=10)
    wait_until(lambda: st.access_text(), 5.0, what="an access log line")
    os.rename(st.access_log, st.access_log + ".1")
    r = run(["-c", st.conf, "-s", "reopen"])
    assert r.returncode == 0, r.stderr

    def reopened():
        requests.get(st.url("/hello?again"), timeout=10)
        return "again" in st.access_text()
    wait_until(reopened, 5.0, 0.1, what="the reopened access log")


def test_port_in_use_fails_cleanly(tmp_path):
    tmp = str(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        conf = write(tmp, "busy.conf", good_config(tmp, port).replace(
            'error_log = "%s/error.log"' % tmp,
            "error_log = stderr\nlog_level = error"))
        p = subprocess.Popen([STOA_BIN, "-c", conf], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            stop_process(p, signal.SIGTERM, 5)
            sweep_group(p.pid)
            pytest.fail("stoa kept running on a port already in use")
        left = group_members(p.pid)
        sweep_group(p.pid)
    assert p.returncode != 0
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert str(port) in lines[0], lines[0]
    assert left == [], "processes left running: %r" % left
    assert not os.path.exists(os.path.join(tmp, "stoa.pid"))


def test_invalid_config_does_not_start(tmp_path):
    tmp = str(tmp_path)
    port = free_port()
    conf = write(tmp, "bad.conf", good_config(tmp, port) + "junk = 1\n")
    p = subprocess.Popen([STOA_BIN, "-c", conf], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        stop_process(p, signal.SIGTERM, 5)
        sweep_group(p.pid)
        pytest.fail("stoa started with an invalid config")
    sweep_group(p.pid)
    assert p.returncode != 0
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(conf + ":"), err
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), 1).close()


def test_detach_runs_in_background(aio, tmp_path):
    tmp = str(tmp_path)
    port = free_port()
    text = ("workers = 2\n"
            'listen = {"127.0.0.1:%d"}\n' % port +
            'pid_file = "%s/stoa.pid"\n' % tmp +
            'error_log = "%s/error.log"\n' % tmp +
            "access_log = off\n" +
            conf_upstream("app", [aio.addr]) + conf_route("/", "app"))
    conf = write(tmp, "d.conf", text)
    pid_file = os.path.join(tmp, "stoa.pid")
    # Files, not pipes: a daemon that kept our pipes open would hang us.
    with open(os.path.join(tmp, "d.out"), "wb") as out:
        p = subprocess.Popen([STOA_BIN, "-d", "-c", conf], stdout=out,
                             stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    master = None
    workers = []
    try:
        try:
            rc = p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
            pytest.fail("stoa -d did not return")
        assert rc == 0, open(os.path.join(tmp, "d.out")).read()
        master = int(wait_until(lambda: os.path.exists(pid_file)
                                and open(pid_file).read().strip(), 10.0,
                                what="the pid file"))
        assert master != p.pid and pid_alive(master)
        wait_until(lambda: _get_ok(port), 10.0, 0.1, what="stoa -d to serve")
    finally:
        if master is not None and pid_alive(master):
            workers = children(master)
            os.kill(master, signal.SIGTERM)
            try:
                wait_until(lambda: not pid_alive(master), 10.0,
                           what="the detached master to exit")
            finally:
                for q in [master] + workers:
                    if pid_alive(q):
                        os.kill(q, signal.SIGKILL)


def _get_ok(port):
    try:
        return requests.get("http://127.0.0.1:%d/hello" % port,
                            timeout=2).status_code == 200
    except requests.RequestException:
        return False
