#!/usr/bin/python3
"""aiohttp WebSocket test backend for the stoa integration tests.

    /usr/bin/python3 ws_aiohttp.py --port P     (P = 0: pick a free port)

Prints "PORT <n>" on stdout once it accepts, then nothing else.  Exits 0 on
SIGTERM or SIGINT.  API (identical in ws_tornado.py and ws_starlette.py):

  WS  /ws          echo server; text and binary messages come back as they
                   were sent.  The subprotocol "chat" is selected when the
                   client offers it.  Text commands (not echoed):
                     close:CODE:REASON  the server closes with CODE, REASON
                     flood:N            N MiB in 64 KiB binary messages,
                                        then the text "flood-done:BYTES"
                     sink:S             stop reading for S seconds, then
                                        count the bytes of every message up
                                        to the text "sink-end", answer
                                        "sunk:BYTES"
                     whoami             JSON {"kind", "port"}
  GET /ws/refuse   plain 400 "no upgrade here", even to an Upgrade request
  GET /last-close  JSON {"code", "reason"} of the last close the client
                   started (nulls before the first one)
  GET /ws-count    JSON {"open": open WebSockets, "total": accepted so far}
  GET /requests    JSON [[method, target, Upgrade header or null], ...] of
                   the requests seen (not counting the three above)
  anything else    JSON {"kind", "port", "method", "target"}
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import sys

from aiohttp import WSMsgType, web

KIND = "aiohttp"
BLOCK = bytes(range(256)) * 256          # 64 KiB


class State:
    port = 0
    seen = []
    last_close = {"code": None, "reason": None}
    open = 0
    total = 0


QUIET = ("/last-close", "/ws-count", "/requests")


@web.middleware
async def record(request, handler):
    if request.path not in QUIET:
        State.seen.append([request.method, request.raw_path,
                           request.headers.get("Upgrade")])
    return await handler(request)


async def ws_echo(request):
    ws = web.WebSocketResponse(protocols=("chat",), max_msg_size=0,
                               autoping=True)
    await ws.prepare(request)
    State.open += 1
    State.total += 1
    try:
        await serve(ws)
    finally:
        State.open -= 1
    return ws


async def serve(ws):
    while True:
        msg = await ws.receive()
        if msg.type == WSMsgType.CLOSE:
            State.last_close = {"code": msg.data, "reason": msg.extra}
            await ws.close()
            return
        if msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING,
                        WSMsgType.ERROR):
            return
        if msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
            continue
        text = msg.data
        if text.startswith("close:"):
            _, code, reason = text.split(":", 2)
            await ws.close(code=int(code), message=reason.encode())
            return
        if text.startswith("flood:"):
            n = int(text[6:]) * 16
            for _ in range(n):
                await ws.send_bytes(BLOCK)
            await ws.send_str("flood-done:%d" % (n * len(BLOCK)))
        elif text.startswith("sink:"):
            await asyncio.sleep(float(text[5:]))
            total = 0
            while True:
                m = await ws.receive()
                if m.type == WSMsgType.TEXT and m.data == "sink-end":
                    break
                if m.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    return
                total += len(m.data)
            await ws.send_str("sunk:%d" % total)
        elif text == "whoami":
            await ws.send_str(json.dumps({"kind": KIND, "port": State.port}))
        else:
            await ws.send_str(text)


async def refuse(request):
    return web.Response(status=400, text="no upgrade here\n")


async def last_close(request):
    return web.json_response(State.last_close)


async def ws_count(request):
    return web.json_response({"open": State.open, "total": State.total})


async def requests_seen(request):
    return web.json_response(State.seen)


async def fallback(request):
    await request.read()
    return web.json_response({"kind": KIND, "port": State.port,
                              "method": request.method,
                              "target": request.raw_path})


def make_app():
    app = web.Application(middlewares=[record])
    r = app.router
    r.add_get("/ws", ws_echo)
    r.add_get("/ws/refuse", refuse)
    r.add_get("/last-close", last_close)
    r.add_get("/ws-count", ws_count)
    r.add_get("/requests", requests_seen)
    r.add_route("*", "/{tail:.*}", fallback)
    return app


async def main(port):
    runner = web.AppRunner(make_app(), access_log=None,
                           handle_signals=False)
    await runner.setup()
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    await loop.create_server(runner.server, sock=sock, backlog=1024)
    State.port = sock.getsockname()[1]
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, os._exit, 0)
    sys.stdout.write("PORT %d\n" % State.port)
    sys.stdout.flush()
    await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    asyncio.run(main(ap.parse_args().port))
