#!/usr/bin/python3
"""aiohttp origin for the cache tests: it counts its own hits.

    /usr/bin/python3 cache_app.py --port P     (P = 0: pick a free port)

Prints "PORT <n>" on stdout once it accepts; exits 0 on SIGTERM or SIGINT.
API (identical in cache_tornado.py):

  *    /c/{name}          the cacheable resource.  GET answers 200 with a
                          JSON body {"kind", "name", "seq", "id", "method"}:
                          seq counts every request this origin answered on
                          /c/ and id is a fresh uuid, so two equal bodies
                          mean the second came from the cache.  Header
                          X-Seq: seq.  HEAD: the same head, no body.
                          Query parameters (any combination):
      cc=VALUE            Cache-Control: VALUE (verbatim)
      cookie=1            adds Set-Cookie: s=SEQ
      tag=a+b             adds Surrogate-Key: a b
      vary=VALUE          adds Vary: VALUE
      hdr=NAME:VALUE      adds that header (repeatable)
      status=N            answers with status N (204 and 304 without body)
      sleep=SECS          waits that long before answering
      size=N              body: exactly N pattern bytes (_common.py)
                          instead of JSON; Content-Length unless chunked=1
      chunked=1           with size: send the body chunked
      fail=1              answers 503
  POST /fail?on=1|0       from now on every /c/ request answers 503 (on=1)
                          or behaves normally again (on=0); 204
  POST /reset            forget every count and the fail mode; 204
  GET  /hits?path=/c/x    JSON {"count": requests seen for that path (any
                          method, any query)}; without path: every /c/
                          request
  GET  /hits?target=T     JSON {"count": requests seen for that exact
                          path?query}
  GET  /log               JSON [[method, target, seq], ...] of /c/ requests
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

from aiohttp import web  # noqa: E402
from multidict import CIMultiDict  # noqa: E402

KIND = "aiohttp"


class State:
    port = 0
    seq = 0
    fail = False
    by_path = {}
    by_target = {}
    log = []


def count(request):
    State.seq += 1
    p = request.path
    t = request.raw_path
    State.by_path[p] = State.by_path.get(p, 0) + 1
    State.by_target[t] = State.by_target.get(t, 0) + 1
    State.log.append([request.method, t, State.seq])
    return State.seq


async def resource(request):
    seq = count(request)
    await request.read()
    q = request.query
    if "sleep" in q:
        await asyncio.sleep(float(q["sleep"]))
    if State.fail or q.get("fail") == "1":
        return web.Response(status=503, text="origin failing\n",
                            headers={"X-Seq": str(seq)})
    status = int(q.get("status", "200"))
    headers = {"X-Seq": str(seq)}
    if "cc" in q:
        headers["Cache-Control"] = q["cc"]
    if q.get("cookie") == "1":
        headers["Set-Cookie"] = "s=%d; Path=/" % seq
    if "tag" in q:
        headers["Surrogate-Key"] = q["tag"]
    if "vary" in q:
        headers["Vary"] = q["vary"]
    headers = CIMultiDict(headers)
    for h in q.getall("hdr", []):
        k, _, v = h.partition(":")
        headers.add(k.strip(), v.strip())
    if status in (204, 304):
        return web.Response(status=status, headers=headers)
    if "size" in q:
        n = int(q["size"])
        headers["Content-Type"] = "application/octet-stream"
        resp = web.StreamResponse(status=status, headers=headers)
        if q.get("chunked") == "1":
            resp.enable_chunked_encoding()
        else:
            resp.content_length = n
        await resp.prepare(request)
        if request.method != "HEAD":
            for chunk in pattern_chunks(n):
                await resp.write(chunk)
        await resp.write_eof()
        return resp
    body = json.dumps({"kind": KIND, "name": request.match_info["name"],
                       "seq": seq, "id": uuid.uuid4().hex,
                       "method": request.method})
    return web.Response(status=status, text=body + "\n",
                        content_type="application/json", headers=headers)


async def set_fail(request):
    State.fail = request.query.get("on", "1") == "1"
    return web.Response(status=204)


async def reset(request):
    State.seq = 0
    State.fail = False
    State.by_path = {}
    State.by_target = {}
    State.log = []
    return web.Response(status=204)


async def hits(request):
    q = request.query
    if "target" in q:
        n = State.by_target.get(q["target"], 0)
    elif "path" in q:
        n = State.by_path.get(q["path"], 0)
    else:
        n = State.seq
    return web.json_response({"count": n})


async def log(request):
    return web.json_response(State.log)


def make_app():
    app = web.Application()
    r = app.router
    r.add_route("*", "/c/{name}", resource)
    r.add_post("/fail", set_fail)
    r.add_post("/reset", reset)
    r.add_get("/hits", hits)
    r.add_get("/log", log)
    return app


async def main(port):
    runner = web.AppRunner(make_app(), access_log=None,
                           handle_signals=False)
    await runner.setup()
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(256)
    srv = await loop.create_server(runner.server, sock=sock, backlog=1024)
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
