#!/usr/bin/python3
"""aiohttp test backend for the stoa integration tests.

    /usr/bin/python3 aio_app.py --port P     (P = 0: pick a free port)

Prints "PORT <n>" on stdout once it accepts, then nothing else.  Exits 0 on
SIGTERM or SIGINT.  API (identical in tornado_app.py):

  GET  /hello            text "hello from aiohttp\\n"
  GET  /echo-headers     JSON {"headers": [[name, value], ...], "target": raw}
  *    /echo             body echoed with the request's Content-Type;
                         header X-Echo: JSON {"method", "bytes"}
  GET  /query            JSON {name: [values...]} (repeats kept, in order)
  GET  /items/{id}       JSON {"id": id}
  POST /json             the JSON body parsed and re-serialised
  GET  /big?n=BYTES      n pattern bytes (_common.py), chunked, generated
  POST /sink  (also PUT) body read streaming; JSON {"bytes", "crc32",
                         "chunked", "content_length"}
  GET  /slow?s=SECS      sleeps, then "slept"
  GET  /conn-count       JSON {"count": TCP connections accepted so far}
  GET  /whoami           JSON {"kind": "aiohttp", "port": P}
  GET  /status/{code}    answers with that status
  GET  /requests         JSON [[method, target], ...] seen so far (not
                         counting /requests and /conn-count)
  anything else          JSON {"kind", "port", "method", "target"}
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

from aiohttp import web  # noqa: E402

KIND = "aiohttp"


class State:
    port = 0
    conns = 0
    server = None
    seen = []


@web.middleware
async def record(request, handler):
    if request.path not in ("/requests", "/conn-count"):
        State.seen.append([request.method, request.raw_path])
    return await handler(request)


async def hello(request):
    return web.Response(text="hello from %s\n" % KIND)


async def echo_headers(request):
    hdrs = [[k.decode("latin-1"), v.decode("latin-1")]
            for k, v in request.raw_headers]
    return web.json_response({"headers": hdrs, "target": request.raw_path,
                              "method": request.method})


async def echo(request):
    body = await request.read()
    info = json.dumps({"method": request.method, "bytes": len(body)})
    resp = web.Response(body=body, headers={"X-Echo": info})
    ct = request.headers.get("Content-Type")
    if ct is not None:
        resp.headers["Content-Type"] = ct
    return resp


async def query(request):
    out = {}
    for k, v in request.query.items():
        out.setdefault(k, []).append(v)
    return web.json_response(out)


async def item(request):
    return web.json_response({"id": request.match_info["id"]})


async def json_rt(request):
    doc = await request.json()
    return web.json_response(doc)


async def big(request):
    n = int(request.query.get("n", "0"))
    resp = web.StreamResponse()
    resp.content_type = "application/octet-stream"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for chunk in pattern_chunks(n):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def sink(request):
    n = 0
    crc = 0
    async for data in request.content.iter_any():
        n += len(data)
        crc = zlib.crc32(data, crc)
    te = request.headers.get("Transfer-Encoding", "")
    return web.json_response({"bytes": n, "crc32": crc,
                              "chunked": "chunked" in te.lower(),
                              "content_length":
                                  request.headers.get("Content-Length")})


async def slow(request):
    await asyncio.sleep(float(request.query.get("s", "1")))
    return web.Response(text="slept\n")


async def conn_count(request):
    # open: connections the server holds now (this one included)
    return web.json_response({"count": State.conns,
                              "open": len(State.server.connections)})


async def whoami(request):
    return web.json_response({"kind": KIND, "port": State.port})


async def status(request):
    code = int(request.match_info["code"])
    if code in (204, 304) or code < 200:
        return web.Response(status=code)
    return web.Response(status=code, text="status %d\n" % code)


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
    r.add_get("/hello", hello)
    r.add_get("/echo-headers", echo_headers)
    for m in ("POST", "PUT", "PATCH", "DELETE"):
        r.add_route(m, "/echo", echo)
    r.add_get("/query", query)
    r.add_get("/items/{id}", item)
    r.add_post("/json", json_rt)
    r.add_get("/big", big)
    r.add_post("/sink", sink)
    r.add_put("/sink", sink)
    r.add_get("/slow", slow)
    r.add_get("/conn-count", conn_count)
    r.add_get("/whoami", whoami)
    r.add_get("/status/{code:[0-9]+}", status)
    r.add_get("/requests", requests_seen)
    r.add_route("*", "/{tail:.*}", fallback)
    return app


async def main(port):
    runner = web.AppRunner(make_app(), access_log=None,
                           handle_signals=False)
    await runner.setup()
    State.server = runner.server
    loop = asyncio.get_running_loop()

    def factory():
        State.conns += 1
        return runner.server()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(256)
    srv = await loop.create_server(factory, sock=sock, backlog=1024)
    State.port = sock.getsockname()[1]
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    sys.stdout.write("PORT %d\n" % State.port)
    sys.stdout.flush()
    await stop.wait()
    srv.close()
    try:
        await asyncio.wait_for(runner.shutdown(), 1.0)
    except Exception:
        pass


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    asyncio.run(main(args.port))
    sys.stdout.flush()
    os._exit(0)
