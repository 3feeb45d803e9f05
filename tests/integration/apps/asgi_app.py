#!/usr/bin/python3
"""FastAPI (or, without it, plain Starlette) app under uvicorn for
test_examples.py (API in _serve.py)."""

import uvicorn
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

try:
    from fastapi import FastAPI as App
    NAME = "fastapi"
except ImportError:
    from starlette.applications import Starlette as App
    NAME = "starlette"

from _serve import Counter, announce, listening_socket


def make_app(port):
    c = Counter(NAME, port)
    hdrs = {"X-Backend": str(port)}

    async def index(request):
        return PlainTextResponse(c.hello(), headers=hdrs)

    async def api(request):
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        return Response(c.item(target), media_type="application/json",
                        headers=hdrs)

    async def ws(websocket):
        await websocket.accept()
        try:
            while True:
                m = await websocket.receive()
                if m["type"] == "websocket.disconnect":
                    return
                if m.get("text") is not None:
                    await websocket.send_text(m["text"])
                else:
                    await websocket.send_bytes(m.get("bytes") or b"")
        except WebSocketDisconnect:
            return

    return App(routes=[Route("/", index), Route("/api/{tail:path}", api),
                       WebSocketRoute("/ws", ws)])


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
