#!/usr/bin/python3
"""Tornado WebSocket test backend for the stoa integration tests.

    /usr/bin/python3 ws_tornado.py --port P     (P = 0: pick a free port)

Prints "PORT <n>" on stdout once it accepts; exits 0 on SIGTERM/SIGINT.
The API is the one documented in ws_aiohttp.py (WS /ws echo with the
close:/flood:/sink:/whoami commands, GET /ws/refuse, /last-close,
/ws-count, /requests, and a JSON fallback).
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import sys

import tornado.httpserver
import tornado.web
import tornado.websocket

KIND = "tornado"
BLOCK = bytes(range(256)) * 256          # 64 KiB
QUIET = ("/last-close", "/ws-count", "/requests")


class State:
    port = 0
    seen = []
    last_close = {"code": None, "reason": None}
    open = 0
    total = 0


class Recorder:
    def prepare(self):
        r = self.request
        if r.path not in QUIET:
            State.seen.append([r.method, r.uri, r.headers.get("Upgrade")])


class Echo(Recorder, tornado.websocket.WebSocketHandler):
    def initialize(self):
        self.server_closed = False
        self.sinking = None             # byte count while in sink mode

    def select_subprotocol(self, subprotocols):
        return "chat" if "chat" in subprotocols else None

    def open(self):
        State.open += 1
        State.total += 1

    async def on_message(self, msg):
        # A coroutine: the next message is not read before it returns,
        # which is what sink: relies on.
        if self.sinking is not None:
            if msg == "sink-end":
                n, self.sinking = self.sinking, None
                await self.write_message("sunk:%d" % n)
            else:
                self.sinking += len(msg)
            return
        if isinstance(msg, bytes):
            await self.write_message(msg, binary=True)
            return
        if msg.startswith("close:"):
            _, code, reason = msg.split(":", 2)
            self.server_closed = True
            self.close(int(code), reason)
        elif msg.startswith("flood:"):
            n = int(msg[6:]) * 16
            for _ in range(n):
                await self.write_message(BLOCK, binary=True)
            await self.write_message("flood-done:%d" % (n * len(BLOCK)))
        elif msg.startswith("sink:"):
            await asyncio.sleep(float(msg[5:]))
            self.sinking = 0
        elif msg == "whoami":
            await self.write_message(json.dumps({"kind": KIND,
                                                 "port": State.port}))
        else:
            await self.write_message(msg)

    def on_close(self):
        State.open -= 1
        if not self.server_closed:
            State.last_close = {"code": self.close_code,
                                "reason": self.close_reason}


class Refuse(Recorder, tornado.web.RequestHandler):
    def get(self):
        self.set_status(400)
        self.finish("no upgrade here\n")


class LastClose(Recorder, tornado.web.RequestHandler):
    def get(self):
        self.finish(State.last_close)


class WsCount(Recorder, tornado.web.RequestHandler):
    def get(self):
        self.finish({"open": State.open, "total": State.total})


class Seen(Recorder, tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(State.seen))


class Fallback(Recorder, tornado.web.RequestHandler):
    def _any(self, *args):
        self.finish({"kind": KIND, "port": State.port,
                     "method": self.request.method,
                     "target": self.request.uri})
    get = post = put = delete = patch = head = options = _any


async def main(port):
    app = tornado.web.Application([
        (r"/ws", Echo),
        (r"/ws/refuse", Refuse),
        (r"/last-close", LastClose),
        (r"/ws-count", WsCount),
        (r"/requests", Seen),
        (r".*", Fallback),
    ], websocket_max_message_size=64 << 20)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    State.port = sock.getsockname()[1]
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, os._exit, 0)
    sys.stdout.write("PORT %d\n" % State.port)
    sys.stdout.flush()
    await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    asyncio.run(main(ap.parse_args().port))
