#!/usr/bin/python3
"""Quart app under Hypercorn for test_examples.py (API in _serve.py)."""

import asyncio
import signal

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, Response, request, websocket

from _serve import Counter, announce, listening_socket


def make_app(port):
    c = Counter("quart", port)
    app = Quart("stoa_example")
    hdrs = {"X-Backend": str(port)}

    @app.route("/")
    async def index():
        return Response(c.hello(), content_type="text/plain", headers=hdrs)

    @app.route("/api/<path:tail>")
    async def api(tail):
        target = request.full_path if request.query_string else request.path
        return Response(c.item(target), content_type="application/json",
                        headers=hdrs)

    @app.websocket("/ws")
    async def ws():
        while True:
            await websocket.send(await websocket.receive())

    return app


async def main():
    sock = listening_socket()
    port = sock.getsockname()[1]
    config = Config()
    config.bind = ["fd://%d" % sock.fileno()]
    config.accesslog = None
    config.errorlog = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    announce(sock)
    await serve(make_app(port), config, shutdown_trigger=stop.wait)


if __name__ == "__main__":
    asyncio.run(main())
