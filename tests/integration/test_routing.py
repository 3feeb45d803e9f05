"""Routing (prefix, host, normalisation), balancing and the idempotent
retry.  Backends answer unknown paths with {"port", "target"}, which shows
which one a request reached."""

import collections
import socket

import pytest
import requests

from helpers import (RawConn, conf_route, conf_upstream, free_port,
                     raw_request)


def reached(st, target, host="h.test"):
    """Port of the backend that answered target (sent verbatim)."""
    r = raw_request(st.port, b"GET %s HTTP/1.1\r\nHost: %s\r\n"
                    b"Connection: close\r\n\r\n"
                    % (target.encode(), host.encode()))
    assert r is not None and r.status == 200, r
    return r.json()["port"]


@pytest.fixture
def three(backend_factory):
    return [backend_factory("aiohttp") for _ in range(3)]


def test_longest_prefix_wins(three, stoa_factory):
    a, b, c = three
    st = stoa_factory(
        conf_upstream("a", [a.addr]) + conf_upstream("b", [b.addr])
        + conf_upstream("c", [c.addr])
        + conf_route("/", "a") + conf_route("/api/", "b")
        + conf_route("/api/v2/", "c"))
    assert reached(st, "/api/v2/x") == c.port
    assert reached(st, "/api/v1/x") == b.port
    assert reached(st, "/api/") == b.port
    assert reached(st, "/apix") == a.port
    assert reached(st, "/other") == a.port


def test_host_route_beats_hostless_route(three, stoa_factory):
    a, b, _ = three
    st = stoa_factory(
        conf_upstream("a", [a.addr]) + conf_upstream("b", [b.addr])
        + conf_route("/", "a") + conf_route("/", "b", host="special.test"))
    assert reached(st, "/x", host="special.test") == b.port
    assert reached(st, "/x", host="other.test") == a.port


def test_host_match_ignores_case_and_port(three, stoa_factory):
    a, b, _ = three
    st = stoa_factory(
        conf_upstream("a", [a.addr]) + conf_upstream("b", [b.addr])
        + conf_route("/", "a") + conf_route("/", "b", host="special.test"))
    assert reached(st, "/x", host="Special.TEST:8080") == b.port


def test_wildcard_host_route(three, stoa_factory):
    a, b, _ = three
    st = stoa_factory(
        conf_upstream("a", [a.addr]) + conf_upstream("b", [b.addr])
        + conf_route("/", "a") + conf_route("/", "b", host="*.example.test"))
    assert reached(st, "/x", host="www.example.test") == b.port
    assert reached(st, "/x", host="example.test") == a.port


def test_no_route_is_404(aio, stoa_factory):
    st = stoa_factory(conf_upstream("a", [aio.addr])
                      + conf_route("/api/", "a"))
    r = requests.get(st.url("/elsewhere"), timeout=10)
    assert r.status_code == 404
    assert ["GET", "/elsewhere"] not in aio.seen()


@pytest.mark.parametrize("target", ["/api/../admin/x", "/api/%2e%2e/admin/x",
                                    "/api/./../admin/x", "//admin/x"])
def test_dot_segments_resolved_before_routing(three, stoa_factory, target):
    a, b, _ = three
    st = stoa_factory(
        conf_upstream("a", [a.addr]) + conf_upstream("b", [b.addr])
        + conf_route("/api/", "a") + conf_route("/admin/", "b"))
    assert reached(st, target) == b.port


def test_dot_segments_above_root_rejected(aio, stoa_factory):
    st = stoa_factory(conf_upstream("a", [aio.addr]) + conf_route("/", "a"))
    r = raw_request(st.port, b"GET /../etc/passwd HTTP/1.1\r\nHost: h\r\n"
                    b"Connection: close\r\n\r\n")
    assert r.status == 400
    assert not [t for _, t in aio.seen() if "passwd" in t]


def test_round_robin_alternates(backend_factory, stoa_factory):
    a, b = backend_factory("aiohttp"), backend_factory("tornado")
    st = stoa_factory(conf_upstream("app", [a.addr, b.addr],
                                    balance="round_robin")
                      + conf_route("/", "app"))
    seen = []
    with requests.Session() as s:         # one connection: one worker
        for _ in range(10):
            seen.append(s.get(st.url("/whoami"), timeout=10).json()["port"])
    assert collections.Counter(seen) == {a.port: 5, b.port: 5}
    assert all(x != y for x, y in zip(seen, seen[1:])), seen


def test_hash_same_uri_same_backend(backend_factory, stoa_factory):
    a, b = backend_factory("aiohttp"), backend_factory("aiohttp")
    st = stoa_factory(conf_upstream("app", [a.addr, b.addr], balance="hash")
                      + conf_route("/", "app"))
    where = {}
    for i in range(20):
        uri = "/h/%d?x=%d" % (i, i * 7)
        ports = {reached(st, uri) for _ in range(4)}   # new connection each
        assert len(ports) == 1, (uri, ports)
        where[uri] = ports.pop()
    assert set(where.values()) == {a.port, b.port}, \
        "20 URIs all hashed to one server"


def test_get_retried_on_other_server_when_one_is_dead(aio, stoa_factory):
    dead = free_port()
    st = stoa_factory(conf_upstream("app", ["127.0.0.1:%d" % dead, aio.addr],
                                    balance="round_robin", max_fails=0)
                      + conf_route("/", "app"))
    codes = []
    for i in range(20):
        codes.append(requests.get(st.url("/hello?r=%d" % i),
                                  timeout=10).status_code)
    assert codes == [200] * 20
    # A POST is not retried: it may fail, but it must get an answer.
    r = requests.post(st.url("/echo"), data=b"x", timeout=10)
    assert r.status_code in (200, 502)


def test_upstream_keepalive_reused_with_pipelined_client(aio, proxy_to):
    st = proxy_to(aio)
    before = aio.conn_count()
    with socket.create_connection(("127.0.0.1", st.port), 10) as s:
        s.sendall(b"".join(b"GET /items/%d HTTP/1.1\r\nHost: h\r\n\r\n" % i
                           for i in range(10)))
        rc = RawConn(s)
        for i in range(10):
            assert rc.read_response().json() == {"id": str(i)}
    assert aio.conn_count() - before - 1 <= 1
