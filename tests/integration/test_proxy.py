"""Proxying through stoa to aiohttp and Tornado: methods, bodies, query
strings, forwarded headers, hop-by-hop removal, keep-alive, pipelining,
access log."""

import http.client
import json
import random
import re
import socket
import time

import pytest
import requests

from helpers import (RawConn, WORKERS, conf_route, conf_upstream,
                     raw_request, wait_until)


@pytest.fixture(params=["aiohttp", "tornado"])
def px(request, backend_factory, proxy_to):
    """(stoa, backend): stoa routes / to one backend of each kind."""
    be = backend_factory(request.param)
    return proxy_to(be), be


def backend_headers(st, extra_headers, host=None):
    """Send GET /echo-headers through stoa with http.client (exact header
    control); return [(lower-name, value)] as the backend received them."""
    c = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    try:
        c.putrequest("GET", "/echo-headers", skip_host=True,
                     skip_accept_encoding=True)
        c.putheader("Host", host or "front.test")
        for k, v in extra_headers:
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        assert r.status == 200
        doc = json.loads(r.read())
    finally:
        c.close()
    return [(k.lower(), v) for k, v in doc["headers"]]


def values(hdrs, name):
    return [v for k, v in hdrs if k == name]


def test_get_reaches_backend(px):
    st, be = px
    r = requests.get(st.url("/hello"), timeout=10)
    assert r.status_code == 200
    assert r.text == "hello from %s\n" % be.kind


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_method_and_body_echoed(px, method):
    st, be = px
    body = bytes(range(256)) * 40
    r = requests.request(method, st.url("/echo"), data=body, timeout=10,
                         headers={"Content-Type": "application/x-stoa-test"})
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["Content-Type"] == "application/x-stoa-test"
    assert json.loads(r.headers["X-Echo"]) == {"method": method,
                                               "bytes": len(body)}


def test_json_roundtrip_31k_exact(px):
    st, be = px
    rnd = random.Random(31)
    doc = {"items": [{"id": i, "name": "item-%05d" % i,
                      "tags": ["t%d" % rnd.randrange(100) for _ in range(3)],
                      "price": rnd.randrange(1, 10**6) / 100,
                      "text": "é€ ☃ \"quoted\" \\ slash"}
                     for i in range(237)]}
    payload = json.dumps(doc).encode()
    assert 30 * 1024 < len(payload) < 33 * 1024
    r = requests.post(st.url("/json"), data=payload, timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    assert r.json() == doc


def test_repeated_query_params_preserved(px):
    st, be = px
    r = requests.get(st.url("/query?a=1&a=2&b=x&a=3"), timeout=10)
    assert r.json() == {"a": ["1", "2", "3"], "b": ["x"]}


def test_query_string_forwarded_verbatim(px):
    st, be = px
    target = "/anything?b=2&a=1&a=%20x&empty=&flag"
    resp = raw_request(st.port, b"GET %s HTTP/1.1\r\nHost: h\r\n"
                       b"Connection: close\r\n\r\n" % target.encode())
    assert resp.status == 200
    assert resp.json()["target"] == target


def test_route_parameter(px):
    st, be = px
    assert requests.get(st.url("/items/item-7"), timeout=10).json() == \
        {"id": "item-7"}


def test_x_forwarded_for_appends_client_address(px):
    st, be = px
    hdrs = backend_headers(st, [("X-Forwarded-For", "203.0.113.7")])
    xff = [a.strip() for v in values(hdrs, "x-forwarded-for")
           for a in v.split(",")]
    assert xff == ["203.0.113.7", "127.0.0.1"]


def test_x_forwarded_for_set_without_one(px):
    st, be = px
    hdrs = backend_headers(st, [])
    assert values(hdrs, "x-forwarded-for") == ["127.0.0.1"]


def test_x_forwarded_proto_is_http(px):
    st, be = px
    hdrs = backend_headers(st, [])
    assert values(hdrs, "x-forwarded-proto") == ["http"]


def test_x_forwarded_proto_from_client_is_replaced(px):
    st, be = px
    hdrs = backend_headers(st, [("X-Forwarded-Proto", "https")])
    assert values(hdrs, "x-forwarded-proto") == ["http"]


def test_x_forwarded_host_is_host_as_sent(px):
    st, be = px
    hdrs = backend_headers(st, [], host="Front.Example:8080")
    assert values(hdrs, "x-forwarded-host") == ["Front.Example:8080"]


def test_host_passed_unchanged(px):
    st, be = px
    hdrs = backend_headers(st, [], host="Front.Example:8080")
    assert values(hdrs, "host") == ["Front.Example:8080"]


def test_hop_by_hop_headers_removed(px):
    st, be = px
    hdrs = backend_headers(st, [
        ("Connection", "keep-alive, X-Foo"),
        ("X-Foo", "1"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Proxy-Connection", "keep-alive"),
        ("X-Kept", "yes"),
    ])
    names = {k for k, _ in hdrs}
    for gone in ("x-foo", "keep-alive", "te", "trailer", "proxy-connection"):
        assert gone not in names, hdrs
    for v in values(hdrs, "connection"):
        assert "x-foo" not in v.lower()
    assert values(hdrs, "x-kept") == ["yes"]


def test_upstream_keepalive_reused_on_one_client_connection(px):
    st, be = px
    before = be.conn_count()
    with requests.Session() as s:
        for i in range(50):
            r = s.get(st.url("/hello?i=%d" % i), timeout=10)
            assert r.status_code == 200
    grew = be.conn_count() - before - 1     # -1: our own /conn-count query
    assert grew <= WORKERS, "50 requests opened %d upstream connections" % grew


def test_upstream_keepalive_reused_across_client_connections(px):
    st, be = px
    before = be.conn_count()
    for i in range(20):
        r = requests.get(st.url("/hello?n=%d" % i), timeout=10,
                         headers={"Connection": "close"})
        assert r.status_code == 200
    grew = be.conn_count() - before - 1
    assert grew <= WORKERS, "20 requests opened %d upstream connections" % grew


def test_keepalive_surplus_survives_bursts_then_is_trimmed(
        backend_factory, stoa_factory):
    """keepalive = 2 with waves of 8 concurrent requests: the connections
    a wave leaves idle beyond the 2 are reused by the next wave (no new
    connection per request, as a hard cap would cause), and once idle for
    a second or so the surplus is closed down to keepalive."""
    be = backend_factory("aiohttp")
    st = stoa_factory(conf_upstream("a", [be.addr], keepalive=2)
                      + conf_route("/", "a"), workers=1)

    def wave():
        socks = [socket.create_connection(("127.0.0.1", st.port), 10)
                 for _ in range(8)]
        for s in socks:
            s.sendall(b"GET /slow?s=0.2 HTTP/1.1\r\nHost: t\r\n\r\n")
        for s in socks:
            r = RawConn(s, 10).read_response()
            assert r.status == 200
            s.close()

    wave()
    opened = be.conn_count()
    for _ in range(4):
        wave()
    # +1 per query: /conn-count itself comes on its own connection
    assert be.conn_count() - opened <= 1, \
        "waves reopened upstream connections"
    wait_until(lambda: be.get_json("/conn-count")["open"] <= 2 + 1, 6, 0.1,
               "surplus idle connections closed down to keepalive")
    assert be.get_json("/conn-count")["open"] >= 2 + 1, "keepalive connections kept"


def test_pipelined_requests_answered_in_order(px):
    st, be = px
    with socket.create_connection(("127.0.0.1", st.port), 10) as s:
        s.sendall(b"GET /items/first HTTP/1.1\r\nHost: h\r\n\r\n"
                  b"GET /items/second HTTP/1.1\r\nHost: h\r\n\r\n")
        rc = RawConn(s)
        r1 = rc.read_response()
        r2 = rc.read_response()
    assert (r1.status, r1.json()) == (200, {"id": "first"})
    assert (r2.status, r2.json()) == (200, {"id": "second"})


def test_pipelined_post_then_get_in_order(px):
    st, be = px
    body = b"x" * 5000
    with socket.create_connection(("127.0.0.1", st.port), 10) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n"
                  b"Content-Type: text/plain\r\n\r\n%s"
                  b"GET /items/after HTTP/1.1\r\nHost: h\r\n\r\n"
                  % (len(body), body))
        rc = RawConn(s)
        r1 = rc.read_response()
        r2 = rc.read_response()
    assert r1.status == 200 and r1.body == body
    assert r2.status == 200 and r2.json() == {"id": "after"}


def test_head_request_has_no_body(px):
    st, be = px
    with socket.create_connection(("127.0.0.1", st.port), 10) as s:
        s.sendall(b"HEAD /hello HTTP/1.1\r\nHost: h\r\n\r\n"
                  b"GET /items/next HTTP/1.1\r\nHost: h\r\n\r\n")
        rc = RawConn(s)
        r1 = rc.read_response(method="HEAD")
        r2 = rc.read_response()
    assert r1.status == 200
    assert r2.status == 200 and r2.json() == {"id": "next"}


def test_upstream_status_passed_through(px):
    st, be = px
    for code in (201, 204, 404, 418, 500, 503):
        r = requests.get(st.url("/status/%d" % code), timeout=10)
        assert r.status_code == code


def test_access_log_line_per_request(aio, proxy_to):
    st = proxy_to(aio)
    tag = "t%d" % time.monotonic_ns()
    reqs = [("GET", "/hello?%s=1" % tag, 200),
            ("GET", "/status/418?%s=2" % tag, 418),
            ("POST", "/echo?%s=3" % tag, 200)]
    for method, path, _ in reqs:
        requests.request(method, st.url(path), data=b"z" if method == "POST"
                         else None, timeout=10)

    def lines():
        ls = [l for l in st.access_text().splitlines() if tag in l]
        return ls if len(ls) >= len(reqs) else None
    got = wait_until(lines, 5.0, what="access log lines")
    assert len(got) == len(reqs), got
    for method, path, status in reqs:
        mine = [l for l in got if path in l]
        assert len(mine) == 1, (path, got)
        line = mine[0]
        assert re.search(r'"%s %s HTTP/1\.1"' % (method, re.escape(path)),
                         line), line
        assert re.search(r'" %d ' % status, line), line
        assert aio.addr in line, line
