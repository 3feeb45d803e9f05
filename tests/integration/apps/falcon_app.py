#!/usr/bin/python3
"""Falcon ASGI app under uvicorn for test_examples.py (API in _serve.py;
the WebSocket echoes text messages only)."""

import falcon
import falcon.asgi
import uvicorn

from _serve import Counter, announce, listening_socket


def make_app(port):
    c = Counter("falcon", port)

    class Index:
        async def on_get(self, req, resp):
            resp.content_type = falcon.MEDIA_TEXT
            resp.set_header("X-Backend", str(port))
            resp.text = c.hello()

    class Api:
        async def on_get(self, req, resp, tail):
            target = req.path + ("?" + req.query_string
                                 if req.query_string else "")
            resp.content_type = falcon.MEDIA_JSON
            resp.set_header("X-Backend", str(port))
            resp.text = c.item(target)

    class Echo:
        async def on_websocket(self, req, ws):
            await ws.accept()
            try:
                while True:
                    await ws.send_text(await ws.receive_text())
            except falcon.WebSocketDisconnected:
                return

    app = falcon.asgi.App()
    app.add_route("/", Index())
    app.add_route("/api/{tail}", Api())
    app.add_route("/ws", Echo())
    return app


def main():
    sock = listening_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(make_app(port), log_level="warning",
                            access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    announce(sock)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
