"""WebSocket passthrough (SPEC "WebSocket"): on a route with
`websocket = true` stoa forwards the Upgrade request, relays the 101 and
splices the two connections; elsewhere the upgrade gets 403 and is never
forwarded.  The backends are real WebSocket servers (aiohttp, Tornado,
Starlette on uvicorn: backends/ws_*.py, API in ws_aiohttp.py); the client
is the `websockets` library (asyncio API, 10.x) or, where a test must
control exactly when bytes are read, helpers.RawWs on a plain socket.
Every wait is bounded."""

import asyncio
import json
import signal
import socket
import threading
import time

import pytest
import websockets

from helpers import (RawConn, RawWs, WsBackend, conf_route, conf_upstream,
                     pid_alive, vm_rss_kb, wait_until, ws_frame,
                     ws_upgrade_request)

KINDS = ("aiohttp", "tornado", "starlette")
MB = 1 << 20
RSS_SLACK_KB = 64 * 1024


# ------------------------------------------------------------------ helpers

def run(coro, timeout=30.0):
    """Run a coroutine to completion within timeout seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def connect(port, path="/ws", **kw):
    kw.setdefault("ping_interval", None)     # no traffic unless a test sends
    kw.setdefault("max_size", None)
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 5)
    return websockets.connect("ws://127.0.0.1:%d%s" % (port, path), **kw)


def ws_body(backend, plain_route=True):
    body = (conf_upstream("a", [backend.addr]) +
            conf_route("/ws", "a", websocket="true"))
    if plain_route:
        body += conf_route("/", "a")
    return body


class RssPeak:
    """Samples VmRSS of pids every 50 ms in a thread; growth_kb() is the
    largest rise of any pid over its first sample."""

    def __init__(self, pids):
        self.base = {p: vm_rss_kb(p) for p in pids}
        self.peak = dict(self.base)
        self.done = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.done.wait(0.05):
            self._sample()

    def _sample(self):
        for p, b in self.base.items():
            v = vm_rss_kb(p)
            if v is not None and b is not None:
                self.peak[p] = max(self.peak[p], v)

    def growth_kb(self):
        self.done.set()
        self.t.join(5)
        self._sample()
        return max(self.peak[p] - b for p, b in self.base.items()
                   if b is not None)


@pytest.fixture
def ws_factory():
    started = []

    def make(kind="aiohttp"):
        b = WsBackend(kind)
        started.append(b)
        return b
    yield make
    for b in started:
        b.stop()


@pytest.fixture(params=KINDS)
def wsb(request, ws_factory):
    """One WebSocket backend of each kind in turn."""
    return ws_factory(request.param)


@pytest.fixture
def aiows(ws_factory):
    return ws_factory("aiohttp")


# -------------------------------------------------------------- echo, close

def test_text_and_binary_echo(wsb, stoa_factory):
    st = stoa_factory(ws_body(wsb))

    async def go():
        async with connect(st.port, subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"      # Sec-WebSocket-Protocol kept
            for msg in ("hello", "", "ünïcødé ✓", b"\x00\x01\xff",
                        bytes(range(256)) * 3, "x" * 70000):
                await ws.send(msg)
                got = await asyncio.wait_for(ws.recv(), 10)
                assert type(got) is type(msg) and got == msg
            await asyncio.wait_for(await ws.ping(b"p1"), 10)   # control
    run(go())
    ups = [s for s in wsb.seen() if s[1] == "/ws"]
    assert ups and ups[0][0] == "GET" and ups[0][2].lower() == "websocket"


def test_one_megabyte_messages(wsb, stoa_factory):
    st = stoa_factory(ws_body(wsb))
    blob = bytes((i * 31 + (i >> 9)) & 0xFF for i in range(MB))
    text = "".join(chr(0x41 + i % 26) for i in range(MB))

    async def go():
        async with connect(st.port) as ws:
            for msg in (blob, text, blob):
                await ws.send(msg)
                got = await asyncio.wait_for(ws.recv(), 20)
                assert len(got) == len(msg) and got == msg
    run(go(), 60)


def test_server_close_code_and_reason_reach_client(wsb, stoa_factory):
    st = stoa_factory(ws_body(wsb))

    async def go():
        async with connect(st.port) as ws:
            await ws.send("ping")
            assert await asyncio.wait_for(ws.recv(), 10) == "ping"
            await ws.send("close:4001:bye")
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            await asyncio.wait_for(ws.wait_closed(), 10)
            return ws.close_code, ws.close_reason
    assert run(go()) == (4001, "bye")


def test_client_close_code_reaches_server(wsb, stoa_factory):
    st = stoa_factory(ws_body(wsb))

    async def go():
        async with connect(st.port) as ws:
            await ws.send("ping")
            assert await asyncio.wait_for(ws.recv(), 10) == "ping"
            await ws.close(4002, "client bye")
            # The server's answer made it back (any code: aiohttp answers
            # 1000, others echo 4002), so the close handshake completed.
            return ws.close_code
    assert run(go()) != 1006            # not an abrupt end
    last = wait_until(lambda: wsb.last_close()["code"] is not None and
                      wsb.last_close(), 5, 0.05, "the backend to see close")
    assert last["code"] == 4002
    if wsb.kind != "starlette":         # uvicorn does not report the reason
        assert last["reason"] == "client bye"


def test_pending_bytes_flushed_before_server_close(aiows, stoa_factory):
    """The backend sends 8 MiB and then closes; a client that starts
    reading late still gets every byte, then the close frame, then EOF."""
    st = stoa_factory(ws_body(aiows))
    ws = RawWs(st.port, rcvbuf=64 * 1024)
    try:
        assert ws.response.status == 101, ws.response
        ws.send("flood:8")
        ws.send("close:4003:done")
        time.sleep(1.0)
        total = 0
        while True:
            op, data = ws.recv()
            if op == 2:
                total += len(data)
                continue
            break
        assert (op, data) == (1, b"flood-done:%d" % (8 * MB))
        assert total == 8 * MB
        op, data = ws.recv()
        assert op == 8 and data[:2] == (4003).to_bytes(2, "big")
        assert data[2:] == b"done"
        ws.sock.sendall(b"\x88\x82abcd" + bytes(
            x ^ y for x, y in zip(data[:2], b"ab")))
        # The backend closes TCP after the close handshake; stoa must then
        # close the client side too.
        assert ws.conn.closed_within(5.0)
    finally:
        ws.close()


def test_frame_sent_with_the_upgrade_request_reaches_backend(
        aiows, stoa_factory):
    """A client that sends its first frame in the same write as the
    Upgrade request (before the 101): the frame waits in stoa and goes
    to the backend once the tunnel opens, after the handshake."""
    st = stoa_factory(ws_body(aiows))
    sock = socket.create_connection(("127.0.0.1", st.port), 10)
    try:
        sock.sendall(ws_upgrade_request("/ws") + ws_frame(1, b"early bird"))
        conn = RawConn(sock, 10)
        resp = conn.read_response(head_only=True)
        assert resp is not None and resp.status == 101, resp
        b0, b1 = conn._exact(2)
        assert (b0, b1 & 0x7F) == (0x81, len(b"early bird"))
        assert conn._exact(len(b"early bird")) == b"early bird"
    finally:
        sock.close()


def test_client_disconnect_closes_upstream_side(aiows, stoa_factory):
    st = stoa_factory(ws_body(aiows))
    ws = RawWs(st.port)
    assert ws.response.status == 101
    ws.send("hi")
    assert ws.recv() == (1, b"hi")
    assert aiows.ws_count()["open"] == 1
    ws.close()                              # no close frame, just EOF
    wait_until(lambda: aiows.ws_count()["open"] == 0, 5, 0.05,
               "the backend's WebSocket to be closed")


# -------------------------------------------------------- routing, refusal

def test_upgrade_on_route_without_websocket_is_403_not_forwarded(
        aiows, stoa_factory):
    st = stoa_factory(ws_body(aiows))
    with socket.create_connection(("127.0.0.1", st.port), 10) as s:
        s.sendall(ws_upgrade_request("/plain"))
        resp = RawConn(s).read_response()
    assert resp is not None and resp.status == 403
    # The same path without Upgrade goes through, so the log below works.
    with socket.create_connection(("127.0.0.1", st.port), 10) as s:
        s.sendall(b"GET /plain-check HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        ok = RawConn(s).read_response()
    assert ok.status == 200 and ok.json()["target"] == "/plain-check"
    targets = [t for _, t, _ in aiows.seen()]
    assert "/plain-check" in targets
    assert "/plain" not in targets


def test_websockets_client_gets_403_on_plain_route(aiows, stoa_factory):
    st = stoa_factory(ws_body(aiows))

    async def go():
        with pytest.raises(websockets.InvalidStatusCode) as ei:
            async with connect(st.port, "/other"):
                pass
        return ei.value.status_code
    assert run(go()) == 403
    assert not [s for s in aiows.seen() if s[2] is not None]


def test_non_101_answer_is_relayed_as_normal_response(aiows, stoa_factory):
    st = stoa_factory(ws_body(aiows))
    with socket.create_connection(("127.0.0.1", st.port), 10) as s:
        s.sendall(ws_upgrade_request("/ws/refuse"))
        conn = RawConn(s)
        resp = conn.read_response()
        assert resp is not None and resp.status == 400
        assert resp.body == b"no upgrade here\n"
        # Not a tunnel: the connection still speaks HTTP (or is closed).
        s.sendall(b"GET /after HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        try:
            nxt = conn.read_response()
        except (EOFError, OSError):
            nxt = None
        if nxt is not None:
            assert nxt.status == 200 and nxt.json()["target"] == "/after"
    assert ["GET", "/ws/refuse", "websocket"] in aiows.seen()


# ----------------------------------------------------------------- timeouts

def test_idle_tunnel_closed_after_websocket_idle(aiows, stoa_factory):
    st = stoa_factory(ws_body(aiows), timeouts={"websocket_idle": "2s"})

    async def go():
        async with connect(st.port) as ws:
            await ws.send("ping")
            assert await asyncio.wait_for(ws.recv(), 10) == "ping"
            t0 = time.monotonic()
            await asyncio.wait_for(ws.wait_closed(), 8)
            return time.monotonic() - t0
    elapsed = run(go())
    assert 1.5 <= elapsed <= 5.5, elapsed
    wait_until(lambda: aiows.ws_count()["open"] == 0, 5, 0.05,
               "the upstream side of the idle tunnel to close")


def test_traffic_keeps_tunnel_open_past_websocket_idle(aiows, stoa_factory):
    st = stoa_factory(ws_body(aiows), timeouts={"websocket_idle": "2s"})

    async def go():
        async with connect(st.port) as ws:
            t0 = time.monotonic()
            i = 0
            while time.monotonic() - t0 < 5.0:     # 2.5 idle periods
                await ws.send("m%d" % i)
                assert await asyncio.wait_for(ws.recv(), 5) == "m%d" % i
                i += 1
                await asyncio.sleep(0.8)
            # Only the server talks: still traffic on the tunnel.
            for _ in range(3):
                await asyncio.sleep(0.8)
                await ws.send("whoami")
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))
    run(go())


# --------------------------------------------------------------------- load

def test_200_concurrent_tunnels_20_messages_each(aiows, stoa_factory):
    # 200 connects at once overflow the Python backend's listen backlog;
    # the kernel retries a dropped SYN after 1 s, so the suite's default
    # upstream_connect = 1s would turn that into 504s.
    st = stoa_factory(ws_body(aiows), timeouts={"websocket_idle": "60s",
                                                "upstream_connect": "5s"})
    n, m = 200, 20

    async def go():
        opened = 0
        all_open = asyncio.Event()

        async def one(i):
            nonlocal opened
            async with connect(st.port, open_timeout=30) as ws:
                opened += 1
                if opened == n:
                    all_open.set()
                await asyncio.wait_for(all_open.wait(), 40)
                for j in range(m):
                    msg = ("c%d-m%d-" % (i, j)) * (1 + j)
                    if j % 2:
                        msg = msg.encode()
                    await ws.send(msg)
                    assert await asyncio.wait_for(ws.recv(), 20) == msg
                return True
        res = await asyncio.gather(*(one(i) for i in range(n)))
        return sum(res)
    assert run(go(), 90) == n
    assert aiows.ws_count()["total"] >= n


# ------------------------------------------------------------------- reload

def test_reload_keeps_open_tunnels_until_shutdown_timeout(ws_factory,
                                                          stoa_factory):
    a, b = ws_factory("aiohttp"), ws_factory("aiohttp")
    st = stoa_factory(ws_body(a), start=False,
                      timeouts={"websocket_idle": "60s"})
    plain_text = st.config_text
    st.config_text = lambda body=None: plain_text(body).replace(
        "shutdown_timeout = 5s", "shutdown_timeout = 3s")
    st.start()

    async def whoami(ws):
        await ws.send("whoami")
        return json.loads(await asyncio.wait_for(ws.recv(), 5))["port"]

    async def go():
        old = [await connect(st.port) for _ in range(10)]
        try:
            for ws in old:
                assert await whoami(ws) == a.port
            old_workers = set(st.worker_pids())
            st.write_config(st.config_text(ws_body(b)))
            t0 = time.monotonic()
            st.signal(signal.SIGHUP)
            while True:
                new = set(st.worker_pids()) - old_workers
                if len(new) == st.workers:
                    break
                assert time.monotonic() - t0 < 10, "no new workers"
                await asyncio.sleep(0.05)
            # New connections go to the new workers (and config) once the
            # old ones have stopped accepting, which follows the new ones'
            # start by a signal: bounded retry.
            while True:
                async with connect(st.port) as ws:
                    if await whoami(ws) == b.port:
                        break
                assert time.monotonic() - t0 < 2.0, \
                    "new connections still reach the old config"
                await asyncio.sleep(0.05)
            # Old tunnels still work after the reload, well into the
            # shutdown_timeout window.
            for ws in old:
                assert await whoami(ws) == a.port
            await asyncio.sleep(max(0, 2.0 - (time.monotonic() - t0)))
            for ws in old:
                assert await whoami(ws) == a.port
            # Past shutdown_timeout the old workers close them and exit.
            for ws in old:
                await asyncio.wait_for(ws.wait_closed(),
                                       max(0.1, t0 + 8 - time.monotonic()))
            closed_at = time.monotonic() - t0
            assert closed_at >= 2.5, closed_at
            while any(pid_alive(p) for p in old_workers):
                assert time.monotonic() - t0 < 10, "old workers still alive"
                await asyncio.sleep(0.05)
            async with connect(st.port) as ws:
                assert await whoami(ws) == b.port
        finally:
            for ws in old:
                ws.transport.abort()
    run(go(), 60)


# ------------------------------------------------------------ backpressure

def test_memory_flat_while_client_does_not_read(aiows, stoa_factory):
    """The backend floods 160 MiB at a client that reads nothing for 3 s:
    stoa must stop reading the backend instead of buffering."""
    st = stoa_factory(ws_body(aiows), timeouts={"websocket_idle": "60s"})
    ws = RawWs(st.port, rcvbuf=64 * 1024, timeout=30)
    try:
        assert ws.response.status == 101
        ws.send("hi")
        assert ws.recv() == (1, b"hi")
        watch = RssPeak(st.worker_pids())
        ws.send("flood:160")
        time.sleep(3.0)
        growth = watch.growth_kb()
        assert growth < RSS_SLACK_KB, "worker RSS grew %d KB" % growth
        total = 0
        while True:
            op, data = ws.recv()
            if op != 2:
                break
            total += len(data)
        assert (op, data) == (1, b"flood-done:%d" % (160 * MB))
        assert total == 160 * MB
        ws.send("still here")
        assert ws.recv() == (1, b"still here")
    finally:
        ws.close()


def test_memory_flat_while_backend_does_not_read(aiows, stoa_factory):
    """The backend stops reading for 4 s while the client writes as fast as
    it can for 3 s: the client must be held back (bounded bytes accepted)
    and the worker RSS stay flat; then every byte arrives."""
    st = stoa_factory(ws_body(aiows), timeouts={"websocket_idle": "60s"})
    ws = RawWs(st.port, timeout=30)
    try:
        assert ws.response.status == 101
        ws.send("sink:4")
        frame = ws_frame(2, bytes(range(256)) * 256)
        payload = 64 * 1024
        watch = RssPeak(st.worker_pids())
        ws.sock.setblocking(False)
        sent_frames, off = 0, 0
        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end:
            try:
                k = ws.sock.send(frame[off:])
            except BlockingIOError:
                time.sleep(0.01)
                continue
            off += k
            if off == len(frame):
                sent_frames, off = sent_frames + 1, 0
        ws.sock.setblocking(True)
        ws.sock.settimeout(30)
        growth = watch.growth_kb()
        accepted = sent_frames * len(frame) + off
        if off:
            ws.sock.sendall(frame[off:])
            sent_frames += 1
        assert accepted < 64 * MB, "stoa accepted %d bytes" % accepted
        assert growth < RSS_SLACK_KB, "worker RSS grew %d KB" % growth
        ws.send("sink-end")
        assert ws.recv() == (1, b"sunk:%d" % (sent_frames * payload))
    finally:
        ws.close()
