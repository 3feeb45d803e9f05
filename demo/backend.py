#!/usr/bin/python3
"""A small aiohttp application to put behind stoa in the README quick start.

    /usr/bin/python3 demo/backend.py --port 8000

GET  /              short text
GET  /hello/{name}  JSON greeting
POST /echo          echoes the JSON request body
GET  /slow?s=N      sleeps N seconds (0..60, default 1), then answers
GET  /ws            WebSocket echo (text and binary)

Every response carries X-Backend: HOST:PORT so that balancing between
several instances is visible.  Stops cleanly on SIGTERM or SIGINT.
"""

import argparse
import asyncio
import json
import signal
import sys

from aiohttp import WSCloseCode, WSMsgType, web

MAX_SLOW = 60.0
SHUTDOWN_GRACE = 5.0    # seconds in-flight requests get on SIGTERM/SIGINT


async def index(request):
    return web.Response(text="hello from the stoa demo backend on %s\n"
                        % request.app["where"])


async def hello(request):
    return web.json_response({"hello": request.match_info["name"],
                              "backend": request.app["where"]})


async def echo(request):
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return web.json_response({"error": "body is not JSON"}, status=400)
    return web.json_response(body)


async def slow(request):
    try:
        secs = float(request.query.get("s", "1"))
    except ValueError:
        return web.json_response({"error": "s must be a number"}, status=400)
    if not 0 <= secs <= MAX_SLOW:
        return web.json_response(
            {"error": "s must be between 0 and %g" % MAX_SLOW}, status=400)
    await asyncio.sleep(secs)
    return web.json_response({"slept": secs})


async def ws_echo(request):
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    sockets = request.app["websockets"]
    sockets.add(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        sockets.discard(ws)
    return ws


async def close_websockets(app):
    # Without this an idle WebSocket client holds up the shutdown.
    for ws in list(app["websockets"]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"shutting down")


@web.middleware
async def tag_backend(request, handler):
    resp = await handler(request)
    resp.headers["X-Backend"] = request.app["where"]
    return resp


def make_app(where):
    app = web.Application(middlewares=[tag_backend])
    app["where"] = where
    app["websockets"] = set()
    app.on_shutdown.append(close_websockets)
    app.router.add_get("/", index)
    app.router.add_get("/hello/{name}", hello)
    app.router.add_post("/echo", echo)
    app.router.add_get("/slow", slow)
    app.router.add_get("/ws", ws_echo)
    return app


async def serve(host, port):
    where = "%s:%d" % (host, port)
    runner = web.AppRunner(make_app(where), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=SHUTDOWN_GRACE)
    await site.start()
    print("demo backend listening on http://%s/" % where, flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main():
    ap = argparse.ArgumentParser(description="stoa demo backend")
    ap.add_argument("--port", type=int, default=8000,
                    help="TCP port (default 8000)")
    ap.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1)")
    args = ap.parse_args()
    try:
        asyncio.run(serve(args.host, args.port))
    except OSError as e:
        print("demo backend: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
