"""conf/examples/*.conf: one ready configuration per backend framework.

Every example must pass `stoa -t` and route the same three things, which
the framework apps in apps/ serve (API in apps/_serve.py): pages on /,
a cached JSON API on /api/ and a WebSocket endpoint on /ws.

The examples whose framework is packaged in Debian 12 also run end to end:
the test starts one process of the real app per `server` address of the
example (on free ports), copies the example with its addresses, log and
pid paths rewritten, starts stoa on it and checks a GET through every
server, a cached route (X-Cache MISS, then HIT with the same body) and a
WebSocket echo.  Sanic and BlackSheep are not packaged in Debian 12: their
examples get `stoa -t` only.  A framework missing on this machine skips
its end-to-end test.
"""

import asyncio
import importlib.util
import os
import re
import signal
import subprocess
import uuid

import pytest

from helpers import (HERE, PYTHON, SRCDIR, STOA_BIN, Backend, admin_request,
                     free_port, http_get, stop_process, sweep_group)

EXAMPLES = os.path.join(SRCDIR, "conf", "examples")
APPS = os.path.join(HERE, "apps")

# Every framework the README promises an example for.
FRAMEWORKS = ["aiohttp", "tornado", "uvicorn-starlette", "falcon",
              "quart-hypercorn", "sanic", "blacksheep"]

# example -> (app script in apps/, Python modules it needs)
END_TO_END = {
    "aiohttp": ("aiohttp_app.py", ["aiohttp"]),
    "tornado": ("tornado_app.py", ["tornado"]),
    "uvicorn-starlette": ("asgi_app.py", ["uvicorn", "starlette",
                                          "websockets"]),
    "falcon": ("falcon_app.py", ["falcon", "uvicorn", "websockets"]),
    "quart-hypercorn": ("quart_app.py", ["quart", "hypercorn"]),
}

ADDR = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}:\d+"


def example_path(name):
    return os.path.join(EXAMPLES, name + ".conf")


def read_example(name):
    with open(example_path(name)) as f:
        return f.read()


def server_addrs(text):
    """Every upstream server address of a config, in order, once each."""
    out = []
    for block in re.findall(r"(?m)^\s*server\s*=\s*\{([^}]*)\}", text):
        for a in re.findall(r'"(%s)"' % ADDR, block):
            if a not in out:
                out.append(a)
    return out


def adapt(text, port, admin_port, servers, tmp, workers):
    """The example rewritten to run here: listen on port, admin on
    admin_port, servers mapped through `servers` (old -> new address),
    pid file and logs in tmp, `workers` workers, no `user`."""
    def sub1(pattern, repl, s):
        s, n = re.subn(pattern, repl, s, flags=re.M)
        assert n == 1, "example: expected one match of %r" % pattern
        return s

    def map_block(m):
        return re.sub(r'"(%s)"' % ADDR, lambda a: '"%s"' % servers[a.group(1)],
                      m.group(0))
    text = re.sub(r"(?m)^\s*server\s*=\s*\{[^}]*\}", map_block, text)
    text = sub1(r"^workers\s*=.*$", "workers = %d" % workers, text)
    text = sub1(r"^listen\s*=\s*\{[^}]*\}.*$",
                'listen = {"127.0.0.1:%d"}' % port, text)
    text = sub1(r"^admin\s*=.*$", 'admin = "127.0.0.1:%d"' % admin_port, text)
    for key, name in (("pid_file", "stoa.pid"), ("error_log", "error.log"),
                      ("access_log", "access.log")):
        text = sub1(r"^%s\s*=.*$" % key,
                    '%s = "%s"' % (key, os.path.join(tmp, name)), text)
    return re.sub(r"(?m)^\s*user\s*=.*$", "", text)


def routes(text):
    """{prefix: section body} of the route sections (no nested braces
    other than one `cache { ... }`)."""
    out = {}
    for m in re.finditer(r"(?m)^route\s+(\S+)\s*\{((?:[^{}]|\{[^{}]*\})*)\}",
                         text):
        out[m.group(1)] = m.group(2)
    return out


# ------------------------------------------------------------ every example

def test_every_framework_has_an_example():
    have = sorted(f[:-5] for f in os.listdir(EXAMPLES) if f.endswith(".conf"))
    assert set(FRAMEWORKS) <= set(have), have


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_example_passes_stoa_t(name):
    path = example_path(name)
    r = subprocess.run([STOA_BIN, "-t", "-c", path], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "stoa: configuration %s is ok" % path, r


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_example_has_page_cache_and_websocket_routes(name):
    text = read_example(name)
    rs = routes(text)
    assert set(rs) >= {"/", "/api/", "/ws"}, sorted(rs)
    assert re.search(r"\bcache\s*\{", rs["/api/"]), rs["/api/"]
    assert re.search(r"\bwebsocket\s*=\s*true\b", rs["/ws"]), rs["/ws"]
    assert "cache" not in rs["/ws"] and "websocket" not in rs["/"]
    assert server_addrs(text), "no upstream server in %s" % name


def test_adapt_rewrites_every_address(tmp_path):
    """The rewriting the end-to-end tests rely on leaves none of the
    example's own addresses or paths behind."""
    text = read_example("uvicorn-starlette")
    old = server_addrs(text)
    assert len(old) >= 2
    new = {a: "127.0.0.1:%d" % (40000 + i) for i, a in enumerate(old)}
    out = adapt(text, 1111, 2222, new, str(tmp_path), 2)
    body = "\n".join(l for l in out.splitlines()
                     if not l.lstrip().startswith("#"))
    assert set(re.findall(ADDR, body)) == set(new.values()) | {
        "127.0.0.1:1111", "127.0.0.1:2222"}
    assert "/run/stoa" not in body and "workers = 2" in body
    conf = tmp_path / "adapted.conf"
    conf.write_text(out)
    r = subprocess.run([STOA_BIN, "-t", "-c", str(conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------- end to end

class App(Backend):
    """One process of a framework app from apps/ (port announced on
    stdout, see apps/_serve.py).  Started without waiting, so several
    start in parallel; wait() reads the port."""

    def __init__(self, script, errpath):
        self.kind = script
        self.port = None
        self.errpath = errpath
        with open(errpath, "wb") as err:
            self.proc = subprocess.Popen(
                [PYTHON, os.path.join(APPS, script), "--port", "0"],
                stdout=subprocess.PIPE, stderr=err,
                stdin=subprocess.DEVNULL, start_new_session=True, cwd=APPS)

    def wait(self):
        try:
            self.port = self._read_port(20.0)
        except AssertionError as e:
            with open(self.errpath, "rb") as f:
                raise AssertionError("%s\n%s" % (e, f.read()[-2000:]
                                                 .decode("utf-8", "replace")))
        return self

    def stop(self):
        rc, _ = stop_process(self.proc, signal.SIGTERM, 5.0)
        sweep_group(self.proc.pid)
        self.proc.stdout.close()
        return rc


@pytest.fixture
def apps():
    started = []
    yield started
    for a in started:               # SIGTERM all first: they stop in parallel
        if a.proc.poll() is None:
            a.proc.send_signal(signal.SIGTERM)
    for a in started:
        a.stop()


def ws_echo(port, messages, timeout=10.0):
    import websockets

    async def run():
        async with websockets.connect("ws://127.0.0.1:%d/ws" % port,
                                      open_timeout=timeout,
                                      close_timeout=2) as ws:
            got = []
            for m in messages:
                await ws.send(m)
                got.append(await asyncio.wait_for(ws.recv(), timeout))
            return got
    return asyncio.run(asyncio.wait_for(run(), timeout * 2))


def missing_modules(mods):
    return [m for m in mods if importlib.util.find_spec(m) is None]


@pytest.mark.parametrize("name", sorted(END_TO_END))
def test_example_end_to_end(name, apps, stoa_factory, tmpdir_short):
    script, mods = END_TO_END[name]
    missing = missing_modules(mods + ["websockets"])
    if missing:
        pytest.skip("Python modules not installed: %s" % ", ".join(missing))
    text = read_example(name)
    old = server_addrs(text)
    for i in range(len(old)):
        apps.append(App(script, os.path.join(tmpdir_short,
                                             "app%d.err" % i)))
    for a in apps:
        a.wait()
    servers = {o: a.addr for o, a in zip(old, apps)}

    st = stoa_factory("", start=False, workers=2)
    admin = {}

    def config_text(body=None):
        admin["port"] = free_port()
        return adapt(text, st.port, admin["port"], servers, st.tmp, 2)
    st.config_text = config_text
    st.start()
    framework = None

    # Pages: every server of the example is reached, none fails.
    seen = set()
    for _ in range(4 * len(apps)):
        r = http_get(st.port, "/", host="www.example.test")
        assert r.status == 200, r
        assert r.body.startswith(b"hello from "), r
        assert r.header("X-Cache") is None, r      # / is not a cached route
        seen.add(int(r.header("X-Backend")))
        if seen == {a.port for a in apps}:
            break
    assert seen == {a.port for a in apps}, (seen, servers)

    # Cached API route: MISS, then HIT with the stored body; the app saw
    # one request.
    target = "/api/items?q=%s" % uuid.uuid4().hex
    r1 = http_get(st.port, target, host="www.example.test")
    assert (r1.status, r1.header("X-Cache")) == (200, "MISS"), r1
    doc = r1.json()
    framework = doc["framework"]
    assert (doc["target"], doc["n"]) == (target, 1), doc
    r2 = http_get(st.port, target, host="www.example.test")
    assert (r2.status, r2.header("X-Cache")) == (200, "HIT"), r2
    assert r2.body == r1.body and r2.header("Age") is not None, r2

    # WebSocket echo through the tunnel.
    msgs = ["hello %s" % name, "x" * 70000, "bye"]
    assert ws_echo(st.port, msgs) == msgs

    r = admin_request(admin["port"], "GET", "/health")
    assert r.status == 200, r
    assert framework in {"aiohttp": ["aiohttp"], "tornado": ["tornado"],
                         "uvicorn-starlette": ["fastapi", "starlette"],
                         "falcon": ["falcon"],
                         "quart-hypercorn": ["quart"]}[name]
