#!/usr/bin/python3
"""aiohttp app for test_examples.py (API in _serve.py)."""

from aiohttp import WSMsgType, web

from _serve import Counter, announce, listening_socket


def make_app(port):
    c = Counter("aiohttp", port)
    hdrs = {"X-Backend": str(port)}

    async def index(request):
        return web.Response(text=c.hello(), headers=hdrs)

    async def api(request):
        return web.Response(text=c.item(request.path_qs),
                            content_type="application/json", headers=hdrs)

    async def ws(request):
        w = web.WebSocketResponse()
        await w.prepare(request)
        async for msg in w:
            if msg.type == WSMsgType.TEXT:
                await w.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await w.send_bytes(msg.data)
        return w

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/api/{tail:.*}", api)
    app.router.add_get("/ws", ws)
    return app


def main():
    sock = listening_socket()
    port = sock.getsockname()[1]
    announce(sock)
    web.run_app(make_app(port), sock=sock, print=None, access_log=None,
                handle_signals=True)


if __name__ == "__main__":
    main()
