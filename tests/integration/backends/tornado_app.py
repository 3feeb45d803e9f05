#!/usr/bin/python3
"""Tornado test backend for the stoa integration tests.

    /usr/bin/python3 tornado_app.py --port P     (P = 0: pick a free port)

Same API and behaviour as aio_app.py (see its docstring), with
"kind": "tornado".  Prints "PORT <n>" once it accepts; exits 0 on SIGTERM.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import pattern_chunks  # noqa: E402

import tornado.httpserver  # noqa: E402
import tornado.web  # noqa: E402

KIND = "tornado"


class State:
    port = 0
    conns = 0
    seen = []


class CountingServer(tornado.httpserver.HTTPServer):
    def handle_stream(self, stream, address):
        State.conns += 1
        return super().handle_stream(stream, address)


class Base(tornado.web.RequestHandler):
    def prepare(self):
        if self.request.path not in ("/requests", "/conn-count"):
            State.seen.append([self.request.method, self.request.uri])

    def send_json(self, obj):
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(obj))

    def log_exception(self, typ, value, tb):
        pass


class Hello(Base):
    def get(self):
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("hello from %s\n" % KIND)

    def head(self):
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Content-Length", len("hello from %s\n" % KIND))
        self.finish()


class EchoHeaders(Base):
    def get(self):
        hdrs = [[k, v] for k, v in self.request.headers.get_all()]
        self.send_json({"headers": hdrs, "target": self.request.uri,
                        "method": self.request.method})


class Echo(Base):
    def _echo(self):
        body = self.request.body
        self.set_header("X-Echo", json.dumps(
            {"method": self.request.method, "bytes": len(body)}))
        ct = self.request.headers.get("Content-Type")
        if ct is not None:
            self.set_header("Content-Type", ct)
        else:
            self.clear_header("Content-Type")
        self.finish(body)

    post = put = patch = delete = _echo


class Query(Base):
    def get(self):
        out = {k: [v.decode() for v in vs]
               for k, vs in self.request.query_arguments.items()}
        self.send_json(out)


class Item(Base):
    def get(self, ident):
        self.send_json({"id": ident})


class Json(Base):
    def post(self):
        self.send_json(json.loads(self.request.body))


class Big(Base):
    async def get(self):
        n = int(self.get_query_argument("n", "0"))
        self.set_header("Content-Type", "application/octet-stream")
        for chunk in pattern_chunks(n):
            self.write(chunk)
            await self.flush()
        self.finish()


@tornado.web.stream_request_body
class Sink(Base):
    def prepare(self):
        super().prepare()
        self.n = 0
        self.crc = 0

    def data_received(self, data):
        self.n += len(data)
        self.crc = zlib.crc32(data, self.crc)

    def post(self):
        te = self.request.headers.get("Transfer-Encoding", "")
        self.send_json({"bytes": self.n, "crc32": self.crc,
                        "chunked": "chunked" in te.lower(),
                        "content_length":
                            self.request.headers.get("Content-Length")})

    put = post


class Slow(Base):
    async def get(self):
        await asyncio.sleep(float(self.get_query_argument("s", "1")))
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("slept\n")


class ConnCount(Base):
    def get(self):
        self.send_json({"count": State.conns})


class WhoAmI(Base):
    def get(self):
        self.send_json({"kind": KIND, "port": State.port})


class Status(Base):
    def get(self, code):
        code = int(code)
        self.set_status(code, reason="Test")
        if code in (204, 304) or code < 200:
            self.finish()
        else:
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("status %d\n" % code)


class Requests(Base):
    def get(self):
        self.send_json(State.seen)


class Fallback(Base):
    def _any(self, *args):
        self.send_json({"kind": KIND, "port": State.port,
                        "method": self.request.method,
                        "target": self.request.uri})

    get = post = put = patch = delete = options = _any

    def head(self, *args):
        self.finish()


def make_app():
    return tornado.web.Application([
        (r"/hello", Hello),
        (r"/echo-headers", EchoHeaders),
        (r"/echo", Echo),
        (r"/query", Query),
        (r"/items/([^/]+)", Item),
        (r"/json", Json),
        (r"/big", Big),
        (r"/sink", Sink),
        (r"/slow", Slow),
        (r"/conn-count", ConnCount),
        (r"/whoami", WhoAmI),
        (r"/status/([0-9]+)", Status),
        (r"/requests", Requests),
        (r"/.*", Fallback),
    ], log_function=lambda handler: None)


async def main(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(256)
    sock.setblocking(False)
    server = CountingServer(make_app(), max_body_size=1 << 42,
                            max_buffer_size=64 << 20)
    server.add_sockets([sock])
    State.port = sock.getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    sys.stdout.write("PORT %d\n" % State.port)
    sys.stdout.flush()
    await stop.wait()
    server.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    asyncio.run(main(args.port))
    sys.stdout.flush()
    os._exit(0)
