"""Shared bits of the framework apps that test_examples.py runs behind the
conf/examples/*.conf configurations.

Every app (aiohttp_app.py, tornado_app.py, asgi_app.py, falcon_app.py,
quart_app.py) has the same API, the one the examples route:

    GET /           200 text/plain "hello from FRAMEWORK\n"
    GET /api/...    200 JSON {"framework", "port", "target", "n"}, where n
                    counts the requests this process saw for that exact
                    path?query (a cache HIT in stoa leaves it unchanged)
    WS  /ws         echoes every text and binary message

Every HTTP answer carries X-Backend: PORT (the process's own port).

    /usr/bin/python3 APP.py --port P      (P = 0: pick a free port)

prints "PORT <n>" on stdout once the socket listens, and exits on SIGTERM.
"""

import argparse
import json
import socket
import sys


def listening_socket():
    """Parse --port, bind and listen on 127.0.0.1, announce the port."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", args.port))
    s.listen(128)
    s.setblocking(False)
    return s


def announce(sock):
    sys.stdout.write("PORT %d\n" % sock.getsockname()[1])
    sys.stdout.flush()


class Counter:
    """Requests seen per exact target."""

    def __init__(self, framework, port):
        self.framework = framework
        self.port = port
        self.hits = {}

    def item(self, target):
        self.hits[target] = self.hits.get(target, 0) + 1
        return json.dumps({"framework": self.framework, "port": self.port,
                           "target": target, "n": self.hits[target]})

    def hello(self):
        return "hello from %s\n" % self.framework
