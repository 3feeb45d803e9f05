"""The test backends themselves, without stoa: when one of these fails, a
failure elsewhere in the suite says nothing about stoa."""

import json
import socket
import zlib

import pytest
import requests

from helpers import RawConn, pattern_chunks, pattern_crc

pytestmark = pytest.mark.nostoa


@pytest.fixture(params=["aiohttp", "tornado"])
def be(request, backend_factory):
    return backend_factory(request.param)


def test_backend_hello(be):
    r = requests.get(be.url("/hello"), timeout=5)
    assert r.status_code == 200 and r.text == "hello from %s\n" % be.kind


def test_backend_echo_headers_keeps_hop_by_hop(be):
    r = requests.get(be.url("/echo-headers"), timeout=5,
                     headers={"X-Foo": "1", "Connection": "X-Foo"})
    names = [k.lower() for k, _ in r.json()["headers"]]
    assert "x-foo" in names and "connection" in names


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_backend_echo(be, method):
    r = requests.request(method, be.url("/echo"), data=b"abc\x00",
                         headers={"Content-Type": "application/x-t"},
                         timeout=5)
    assert r.content == b"abc\x00"
    assert r.headers["Content-Type"] == "application/x-t"
    assert json.loads(r.headers["X-Echo"]) == {"method": method, "bytes": 4}


def test_backend_query_route_json(be):
    assert requests.get(be.url("/query?a=1&a=2&b=x"), timeout=5).json() \
        == {"a": ["1", "2"], "b": ["x"]}
    assert requests.get(be.url("/items/42"), timeout=5).json() == {"id": "42"}
    doc = {"k": [1, 2, {"x": "y"}]}
    assert requests.post(be.url("/json"), json=doc, timeout=5).json() == doc


def test_backend_big_is_chunked_pattern(be):
    n = 1_000_003
    r = requests.get(be.url("/big?n=%d" % n), timeout=10)
    assert r.headers.get("Transfer-Encoding") == "chunked"
    assert r.content == b"".join(pattern_chunks(n))


@pytest.mark.parametrize("chunked", [False, True])
def test_backend_sink(be, chunked):
    n = 3_000_000
    data = b"".join(pattern_chunks(n))
    body = (iter([data[:1000], data[1000:]]) if chunked else data)
    r = requests.post(be.url("/sink"), data=body, timeout=10).json()
    assert r["bytes"] == n and r["crc32"] == zlib.crc32(data)
    assert r["crc32"] == pattern_crc(n)
    assert r["chunked"] is chunked


def test_backend_conn_count_and_whoami(be):
    c0 = be.conn_count()
    with requests.Session() as s:
        for _ in range(5):
            assert s.get(be.url("/whoami"), timeout=5).json() == \
                {"kind": be.kind, "port": be.port}
    assert be.conn_count() - c0 == 2   # the session's one + our own query


def test_backend_status_and_seen(be):
    assert requests.get(be.url("/status/418"), timeout=5).status_code == 418
    assert requests.get(be.url("/status/204"), timeout=5).status_code == 204
    assert ["GET", "/status/418"] in be.seen()
    with socket.create_connection(("127.0.0.1", be.port), 5) as s:
        s.sendall(b"GET /x/../y?q=1 HTTP/1.1\r\nHost: h\r\n\r\n")
        assert RawConn(s).read_response().json()["target"] == "/x/../y?q=1"
