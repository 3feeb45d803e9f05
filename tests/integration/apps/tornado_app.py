#!/usr/bin/python3
"""Tornado app for test_examples.py (API in _serve.py)."""

import asyncio
import signal

import tornado.httpserver
import tornado.web
import tornado.websocket

from _serve import Counter, announce, listening_socket


def make_app(port):
    c = Counter("tornado", port)

    class Index(tornado.web.RequestHandler):
        def get(self):
            self.set_header("X-Backend", str(port))
            self.set_header("Content-Type", "text/plain")
            self.write(c.hello())

    class Api(tornado.web.RequestHandler):
        def get(self, _tail):
            self.set_header("X-Backend", str(port))
            self.set_header("Content-Type", "application/json")
            self.write(c.item(self.request.uri))

    class Echo(tornado.websocket.WebSocketHandler):
        def on_message(self, message):
            self.write_message(message, binary=isinstance(message, bytes))

    return tornado.web.Application([
        (r"/", Index), (r"/api/(.*)", Api), (r"/ws", Echo)])


async def main():
    sock = listening_socket()
    port = sock.getsockname()[1]
    server = tornado.httpserver.HTTPServer(make_app(port), xheaders=True)
    server.add_sockets([sock])
    announce(sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    server.stop()


if __name__ == "__main__":
    asyncio.run(main())
