"""WebSocket over HTTP/2 (RFC 8441 extended CONNECT), tunnelled to an
HTTP/1.1 upstream as an Upgrade: stoa advertises
SETTINGS_ENABLE_CONNECT_PROTOCOL, answers the CONNECT :protocol websocket
stream with 200 once the upstream switched protocols, and carries the
WebSocket frames as DATA both ways; END_STREAM from the client is passed on
as a half-close.  A route without websocket = true refuses it (403)."""

import os
import socket
import struct

import pytest

from helpers import WsBackend, conf_route, conf_upstream

h2 = pytest.importorskip("h2.connection")
import h2.config  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402


@pytest.fixture
def wsb():
    b = WsBackend("aiohttp")
    yield b
    b.stop()


def body(b):
    return (conf_upstream("a", [b.addr]) +
            conf_route("/ws", "a", websocket="true") + conf_route("/", "a"))


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), 10)
        self.c = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True))
        self.pending = []
        self.c.initiate_connection()
        self.flush()

    def flush(self):
        self.s.sendall(self.c.data_to_send())

    def until(self, kinds, rounds=100):
        """The next event of one of these kinds; events read past it in
        the same batch are kept for the next call."""
        for _ in range(rounds):
            while self.pending:
                e = self.pending.pop(0)
                if isinstance(e, kinds):
                    return e
            data = self.s.recv(65536)
            if not data:
                return None
            evs = self.c.receive_data(data)
            for e in evs:
                if isinstance(e, h2.events.DataReceived):
                    self.c.acknowledge_received_data(
                        e.flow_controlled_length, e.stream_id)
            self.flush()
            self.pending.extend(evs)
        return None

    def connect_ws(self, path):
        self.until(h2.events.RemoteSettingsChanged)
        sid = self.c.get_next_available_stream_id()
        self.c.send_headers(sid, [(":method", "CONNECT"),
                                  (":protocol", "websocket"),
                                  (":scheme", "http"), (":path", path),
                                  (":authority", "localhost"),
                                  ("sec-websocket-version", "13")])
        self.flush()
        return sid, self.until(h2.events.ResponseReceived)

    def close(self):
        self.s.close()


def frame(op, payload):
    """A masked client frame (RFC 6455 §5.2), payload < 126 bytes."""
    mask = os.urandom(4)
    return (bytes([0x80 | op, 0x80 | len(payload)]) + mask +
            bytes(x ^ mask[i % 4] for i, x in enumerate(payload)))


def test_settings_advertise_extended_connect(wsb, stoa_factory):
    st = stoa_factory(body(wsb))
    c = Client(st.port)
    try:
        c.until(h2.events.RemoteSettingsChanged)
        assert c.c.remote_settings.get(
            h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1
    finally:
        c.close()


def test_websocket_echo_over_h2_and_close(wsb, stoa_factory):
    st = stoa_factory(body(wsb))
    c = Client(st.port)
    try:
        sid, resp = c.connect_ws("/ws")
        assert resp is not None
        assert dict(resp.headers)[b":status"] == b"200"
        c.c.send_data(sid, frame(1, b"hello over h2"))
        c.flush()
        got = c.until(h2.events.DataReceived)
        assert got is not None and got.data == b"\x81\x0dhello over h2"
        c.c.send_data(sid, frame(2, b"\x00\x01\x02"))
        c.flush()
        got = c.until(h2.events.DataReceived)
        assert got.data == b"\x82\x03\x00\x01\x02"
        # a close frame, then END_STREAM: the server's close comes back
        # and the stream ends
        c.c.send_data(sid, frame(8, struct.pack("!H", 4002)), end_stream=True)
        c.flush()
        got = c.until((h2.events.DataReceived, h2.events.StreamEnded))
        assert got is not None
        ended = got if isinstance(got, h2.events.StreamEnded) else \
            c.until(h2.events.StreamEnded)
        assert ended is not None and ended.stream_id == sid
        assert wsb.last_close()["code"] == 4002
        # the connection outlives the tunnel: a plain request follows on it
        sid2 = c.c.get_next_available_stream_id()
        c.c.send_headers(sid2, [(":method", "GET"), (":scheme", "http"),
                                (":path", "/ws-count"),
                                (":authority", "localhost")],
                         end_stream=True)
        c.flush()
        resp = c.until(h2.events.ResponseReceived)
        assert resp is not None and resp.stream_id == sid2
        assert dict(resp.headers)[b":status"] == b"200"
    finally:
        c.close()


def test_websocket_over_h2_refused_on_plain_route(wsb, stoa_factory):
    st = stoa_factory(body(wsb))
    c = Client(st.port)
    try:
        sid, resp = c.connect_ws("/plain")
        assert resp is not None
        assert dict(resp.headers)[b":status"] == b"403"
    finally:
        c.close()
