#!/usr/bin/python3
"""Starlette (on uvicorn) WebSocket test backend for the stoa integration
tests.

    /usr/bin/python3 ws_starlette.py --port P     (P = 0: pick a free port)

Prints "PORT <n>" on stdout once it accepts; exits 0 on SIGTERM/SIGINT.
The API is the one documented in ws_aiohttp.py (WS /ws echo with the
close:/flood:/sink:/whoami commands, GET /ws/refuse, /last-close,
/ws-count, /requests, and a JSON fallback).  One difference: uvicorn's
ASGI disconnect event carries no close reason, so /last-close reports the
code and a null reason.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute

KIND = "starlette"
BLOCK = bytes(range(256)) * 256          # 64 KiB
QUIET = ("/last-close", "/ws-count", "/requests")


class State:
    port = 0
    seen = []
    last_close = {"code": None, "reason": None}
    open = 0
    total = 0


def note(scope):
    if scope["path"] not in QUIET:
        hdrs = dict(scope["headers"])
        up = hdrs.get(b"upgrade")
        method = scope.get("method", "GET")
        target = scope.get("raw_path") or scope["path"]
        if isinstance(target, str):         # uvicorn's WebSocket scope
            target = target.encode("latin-1")
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        State.seen.append([method, target.decode("latin-1"),
                           up.decode("latin-1") if up else None])


class Recorder:
    """ASGI middleware keeping the /requests log."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            note(scope)
        await self.app(scope, receive, send)


async def receive_msg(ws):
    """(kind, data): ("text", str), ("bytes", b) or ("close", code)."""
    m = await ws.receive()
    if m["type"] == "websocket.disconnect":
        return "close", m.get("code", 1005)
    if m.get("text") is not None:
        return "text", m["text"]
    return "bytes", m.get("bytes") or b""


async def ws_echo(ws):
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol="chat" if "chat" in offered else None)
    State.open += 1
    State.total += 1
    try:
        await serve(ws)
    finally:
        State.open -= 1


async def serve(ws):
    while True:
        kind, data = await receive_msg(ws)
        if kind == "close":
            State.last_close = {"code": data, "reason": None}
            return
        if kind == "bytes":
            await ws.send_bytes(data)
            continue
        if data.startswith("close:"):
            _, code, reason = data.split(":", 2)
            await ws.close(code=int(code), reason=reason)
            return
        if data.startswith("flood:"):
            n = int(data[6:]) * 16
            for _ in range(n):
                await ws.send_bytes(BLOCK)
            await ws.send_text("flood-done:%d" % (n * len(BLOCK)))
        elif data.startswith("sink:"):
            await asyncio.sleep(float(data[5:]))
            total = 0
            while True:
                k, d = await receive_msg(ws)
                if k == "close":
                    return
                if k == "text" and d == "sink-end":
                    break
                total += len(d)
            await ws.send_text("sunk:%d" % total)
        elif data == "whoami":
            await ws.send_text(json.dumps({"kind": KIND,
                                           "port": State.port}))
        else:
            await ws.send_text(data)


async def refuse(request):
    return PlainTextResponse("no upgrade here\n", status_code=400)


async def last_close(request):
    return JSONResponse(State.last_close)


async def ws_count(request):
    return JSONResponse({"open": State.open, "total": State.total})


async def requests_seen(request):
    return JSONResponse(State.seen)


async def fallback(request):
    await request.body()
    return JSONResponse({"kind": KIND, "port": State.port,
                         "method": request.method,
                         "target": request.url.path +
                         ("?" + request.url.query if request.url.query
                          else "")})


ALL = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

app = Recorder(Starlette(routes=[
    WebSocketRoute("/ws", ws_echo),
    Route("/ws/refuse", refuse),
    Route("/last-close", last_close),
    Route("/ws-count", ws_count),
    Route("/requests", requests_seen),
    Route("/{tail:path}", fallback, methods=ALL),
]))


async def main(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    State.port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="error", lifespan="off",
                            ws="websockets", ws_max_size=64 << 20,
                            access_log=False)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, os._exit, 0)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise SystemExit("uvicorn stopped at start")
        await asyncio.sleep(0.01)
    sys.stdout.write("PORT %d\n" % State.port)
    sys.stdout.flush()
    await task


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    asyncio.run(main(ap.parse_args().port))
