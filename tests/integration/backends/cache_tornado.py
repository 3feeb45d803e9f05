#!/usr/bin/python3
"""Tornado origin for the cache tests: it counts its own hits.

    /usr/bin/python3 cache_tornado.py --port P     (P = 0: pick a free port)

Same API and behaviour as cache_app.py (see its docstring), with
"kind": "tornado".  Prints "PORT <n>" once it accepts; exits 0 on SIGTERM.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import pattern_chunks  # noqa: E402

import tornado.httpserver  # noqa: E402
import tornado.web  # noqa: E402

KIND = "tornado"


class State:
    port = 0
    seq = 0
    fail = False
    by_path = {}
    by_target = {}
    log = []


class Base(tornado.web.RequestHandler):
    def send_json(self, obj):
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(obj))

    def log_exception(self, typ, value, tb):
        pass


class Resource(Base):
    async def _any(self, name):
        State.seq += 1
        seq = self.seq = State.seq
        r = self.request
        State.by_path[r.path] = State.by_path.get(r.path, 0) + 1
        State.by_target[r.uri] = State.by_target.get(r.uri, 0) + 1
        State.log.append([r.method, r.uri, seq])
        arg = self.get_query_argument
        # tornado adds Content-Type and Date itself; keep Date, drop the
        # default Content-Type so each answer sets its own
        self.clear_header("Content-Type")
        if arg("sleep", None) is not None:
            await asyncio.sleep(float(arg("sleep")))
        self.set_header("X-Seq", str(seq))
        if State.fail or arg("fail", None) == "1":
            self.set_status(503)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("origin failing\n")
            return
        status = int(arg("status", "200"))
        self.set_status(status)
        if arg("cc", None) is not None:
            self.set_header("Cache-Control", arg("cc"))
        if arg("cookie", None) == "1":
            self.set_header("Set-Cookie", "s=%d; Path=/" % seq)
        if arg("tag", None) is not None:
            self.set_header("Surrogate-Key", arg("tag"))
        if arg("vary", None) is not None:
            self.set_header("Vary", arg("vary"))
        for h in self.get_query_arguments("hdr"):
            k, _, v = h.partition(":")
            self.add_header(k.strip(), v.strip())
        if status in (204, 304):
            self.finish()
            return
        if arg("size", None) is not None:
            n = int(arg("size"))
            self.set_header("Content-Type", "application/octet-stream")
            if arg("chunked", None) != "1":
                self.set_header("Content-Length", str(n))
            for chunk in pattern_chunks(n):
                self.write(chunk)
                await self.flush()
            self.finish()
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"kind": KIND, "name": name, "seq": seq,
                                "id": uuid.uuid4().hex,
                                "method": r.method}) + "\n")

    get = head = post = put = patch = delete = options = _any


class Fail(Base):
    def post(self):
        State.fail = self.get_query_argument("on", "1") == "1"
        self.set_status(204)
        self.finish()


class Reset(Base):
    def post(self):
        State.seq = 0
        State.fail = False
        State.by_path = {}
        State.by_target = {}
        State.log = []
        self.set_status(204)
        self.finish()


class Hits(Base):
    def get(self):
        arg = self.get_query_argument
        if arg("target", None) is not None:
            n = State.by_target.get(arg("target"), 0)
        elif arg("path", None) is not None:
            n = State.by_path.get(arg("path"), 0)
        else:
            n = State.seq
        self.send_json({"count": n})


class Log(Base):
    def get(self):
        self.send_json(State.log)


def make_app():
    return tornado.web.Application([
        (r"/c/([^/]+)", Resource),
        (r"/fail", Fail),
        (r"/reset", Reset),
        (r"/hits", Hits),
        (r"/log", Log),
    ], log_function=lambda handler: None)


async def main(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(256)
    sock.setblocking(False)
    server = tornado.httpserver.HTTPServer(make_app())
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
