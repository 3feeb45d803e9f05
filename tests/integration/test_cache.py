"""The response cache seen from outside (SPEC.md "Cache").

The origins (backends/cache_app.py, cache_tornado.py) count the requests
they answer and put a per-request sequence number and uuid in every body,
so a HIT is an identical body and an origin count that did not move.  The
tests that depend on no origin particularity run against both origins.

Every request goes out on a new connection with Host: cache.test, so the
cache key of /c/a is "stoa:GET:cache.test:/c/a" and its purge URL is
http://cache.test/c/a.
"""

import re
import socket
import threading
import time
import zlib
from urllib.parse import quote

import pytest

from helpers import (CacheOrigin, RawConn, admin_request, admin_stats,
                     conf_cache, conf_cache_route, conf_route,
                     conf_upstream, free_port, http_get, http_request,
                     pattern_crc, server_side_pid, wait_until)

HOST = "cache.test"


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def shared_origins():
    """One origin of each kind for the whole module (starting one costs
    more than most tests here); each test resets it before use."""
    started = {}
    yield started
    for o in started.values():
        o.stop()


def _shared(shared_origins, kind):
    o = shared_origins.get(kind)
    if o is None or not o.alive():
        o = shared_origins[kind] = CacheOrigin(kind)
    o.reset()
    return o


@pytest.fixture(params=["aiohttp", "tornado"])
def origin(request, shared_origins):
    """The core tests run against both origins."""
    return _shared(shared_origins, request.param)


@pytest.fixture
def aorigin(shared_origins):
    """The aiohttp origin only (tests about timing or processes)."""
    return _shared(shared_origins, "aiohttp")


@pytest.fixture
def own_origin():
    """An aiohttp origin of this test alone (the test stops it)."""
    o = CacheOrigin("aiohttp")
    yield o
    o.stop()


@pytest.fixture
def cached(stoa_factory):
    """cached(origin, ttl="30s", workers=2, **cache_opts) -> Stoa whose
    route /c/ caches (route ttl = ttl) in front of origin, with an admin
    listener on stoa.admin_port; cache_opts go into the top-level cache
    section."""
    def make(origin, ttl="30s", workers=2, timeouts=None, **cache_opts):
        admin_port = free_port()
        body = (conf_upstream("app", [origin.addr])
                + conf_cache_route("/c/", "app", ttl=ttl))
        extra = 'admin = "127.0.0.1:%d"' % admin_port
        if cache_opts:
            extra = conf_cache(**cache_opts) + "\n" + extra
        s = stoa_factory(body, workers=workers, extra=extra,
                         timeouts=timeouts)
        s.admin_port = admin_port
        s.origin = origin
        return s
    return make


def get(stoa, target, **kw):
    return http_get(stoa.port, target, host=kw.pop("host", HOST), **kw)


def xcache(resp):
    return resp.header("X-Cache")


def purge_url(target, host=HOST):
    return "/cache/purge?url=" + quote("http://%s%s" % (host, target),
                                       safe="")


def concurrently(n, fn):
    """Run fn(i) in n threads released together; return the results in
    order.  Fails when a thread raised or is still running after 30 s."""
    barrier = threading.Barrier(n, timeout=10)
    out = [None] * n

    def run(i):
        try:
            barrier.wait()
            out[i] = fn(i)
        except BaseException as e:      # reported by the caller
            out[i] = e
    threads = [threading.Thread(target=run, args=(i,), daemon=True)
               for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a request hung"
    errors = [r for r in out if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    return out


# ----------------------------------------------------------- hit and miss

def test_miss_then_hit_with_age(cached, origin):
    s = cached(origin)
    r1 = get(s, "/c/a")
    assert (r1.status, xcache(r1)) == (200, "MISS")
    assert r1.header("Age") is None
    r2 = get(s, "/c/a")
    assert (r2.status, xcache(r2)) == (200, "HIT")
    assert r2.body == r1.body
    assert re.fullmatch(r"\d+", r2.header("Age") or ""), r2.headers
    time.sleep(1.1)
    r3 = get(s, "/c/a")
    assert xcache(r3) == "HIT" and r3.body == r1.body
    assert int(r3.header("Age")) >= 1
    assert origin.hits("/c/a") == 1


def test_hit_keeps_origin_headers(cached, origin):
    s = cached(origin, ttl="30s")
    r1 = get(s, "/c/h")
    r2 = get(s, "/c/h")
    assert xcache(r2) == "HIT"
    assert r2.header("X-Seq") == r1.header("X-Seq")
    assert r2.header("Content-Type") == r1.header("Content-Type")
    assert int(r2.header("Content-Length")) == len(r1.body)


def test_expiry_at_ttl(cached, origin):
    s = cached(origin, ttl="1s")
    r1 = get(s, "/c/e")
    assert xcache(r1) == "MISS"
    assert xcache(get(s, "/c/e")) == "HIT"
    time.sleep(1.2)
    # no stale window: the entry is gone, not EXPIRED
    r3 = get(s, "/c/e")
    assert xcache(r3) == "MISS"
    assert r3.body != r1.body
    assert origin.hits("/c/e") == 2


def test_max_age_overrides_route_ttl(cached, aorigin):
    s = cached(aorigin, ttl="1s")
    t = "/c/m?cc=" + quote("max-age=5")
    r1 = get(s, t)
    assert xcache(r1) == "MISS"
    time.sleep(1.5)
    r2 = get(s, t)
    assert xcache(r2) == "HIT" and r2.body == r1.body
    assert aorigin.hits("/c/m") == 1


def test_s_maxage_beats_max_age(cached, aorigin):
    s = cached(aorigin, ttl="30s")
    short = "/c/s1?cc=" + quote("max-age=5, s-maxage=1")
    long_ = "/c/s5?cc=" + quote("s-maxage=5, max-age=1")
    get(s, short)
    b = get(s, long_).body
    time.sleep(1.5)
    assert xcache(get(s, short)) == "MISS"       # s-maxage=1 won
    r = get(s, long_)
    assert xcache(r) == "HIT" and r.body == b    # s-maxage=5 won
    assert aorigin.hits("/c/s1") == 2 and aorigin.hits("/c/s5") == 1


NOT_STORED = {
    "no-store": "cc=no-store",
    "private": "cc=private",
    "no-cache": "cc=no-cache",
    "private-among-others": "cc=" + quote("max-age=60, private"),
    "set-cookie": "cookie=1",
    "vary-star": "vary=*",
    "vary-user-agent": "vary=User-Agent",
    "vary-ae-and-more": "vary=" + quote("Accept-Encoding, Cookie"),
    "status-500": "status=500",
    "status-302": "status=302",
    "status-403": "status=403",
    "max-age-0": "cc=max-age%3D0",
}


@pytest.mark.parametrize("query", NOT_STORED.values(), ids=NOT_STORED.keys())
def test_response_not_stored(cached, origin, query):
    s = cached(origin)
    t = "/c/n?" + query
    r1 = get(s, t)
    r2 = get(s, t)
    assert (xcache(r1), xcache(r2)) == ("MISS", "MISS"), (r1, r2)
    assert r1.header("X-Seq") != r2.header("X-Seq")
    assert origin.hits("/c/n") == 2


STORED = {
    "status-203": "status=203",
    "status-204": "status=204",
    "status-300": "status=300",
    "status-301": "status=301",
    "status-404": "status=404",
    "status-410": "status=410",
    "vary-accept-encoding": "vary=Accept-Encoding",
    "public-max-age": "cc=" + quote("public, max-age=60"),
}


@pytest.mark.parametrize("query", STORED.values(), ids=STORED.keys())
def test_response_stored(cached, origin, query):
    s = cached(origin)
    t = "/c/y?" + query
    r1 = get(s, t)
    r2 = get(s, t)
    assert (xcache(r1), xcache(r2)) == ("MISS", "HIT"), (r1, r2)
    assert r2.status == r1.status and r2.body == r1.body
    assert origin.hits("/c/y") == 1


def test_set_cookie_never_served_from_cache(cached, origin):
    # a cookie on the fill makes the response unstorable, so no client
    # ever gets another client's cookie from the cache
    s = cached(origin)
    r1 = get(s, "/c/k?cookie=1")
    r2 = get(s, "/c/k?cookie=1")
    assert r1.header("Set-Cookie") != r2.header("Set-Cookie")
    assert xcache(r2) == "MISS"


# ----------------------------------------------------- requests that bypass

def test_authorization_bypasses(cached, origin):
    s = cached(origin)
    get(s, "/c/auth")                       # fill without credentials
    auth = [("Authorization", "Basic dXNlcjpwYXNz")]
    r1 = get(s, "/c/auth", headers=auth)
    r2 = get(s, "/c/auth", headers=auth)
    assert (xcache(r1), xcache(r2)) == ("BYPASS", "BYPASS")
    assert r1.body != r2.body
    assert origin.hits("/c/auth") == 3


def test_post_bypasses_and_is_never_cached(cached, origin):
    s = cached(origin)
    r1 = http_request(s.port, "POST", "/c/p", host=HOST, body=b"x=1")
    r2 = http_request(s.port, "POST", "/c/p", host=HOST, body=b"x=1")
    assert (r1.status, r2.status) == (200, 200)
    assert (xcache(r1), xcache(r2)) == ("BYPASS", "BYPASS")
    assert r1.json()["method"] == "POST" and r1.body != r2.body
    r3 = get(s, "/c/p")
    assert xcache(r3) == "MISS" and r3.json()["method"] == "GET"
    assert origin.hits("/c/p") == 3


def test_post_does_not_serve_cached_get(cached, origin):
    s = cached(origin)
    get(s, "/c/pg")
    assert xcache(get(s, "/c/pg")) == "HIT"
    r = http_request(s.port, "POST", "/c/pg", host=HOST, body=b"")
    assert xcache(r) == "BYPASS" and r.json()["method"] == "POST"
    assert origin.hits("/c/pg") == 2


def test_uncached_route_has_no_x_cache(stoa_factory, origin):
    body = (conf_upstream("app", [origin.addr])
            + conf_route("/c/", "app"))
    s = stoa_factory(body)
    r1 = get(s, "/c/u")
    r2 = get(s, "/c/u")
    assert r1.header("X-Cache") is None and r2.header("X-Cache") is None
    assert origin.hits("/c/u") == 2


# ------------------------------------------------------------- HEAD, key

def head_exchange(port, target):
    """HEAD on a new connection: (response, bytes that followed the head
    before the server closed)."""
    with socket.create_connection(("127.0.0.1", port), 10) as sk:
        sk.sendall(("HEAD %s HTTP/1.1\r\nHost: %s\r\nConnection: close"
                    "\r\n\r\n" % (target, HOST)).encode())
        conn = RawConn(sk, 10)
        resp = conn.read_response(method="HEAD")
        while conn._fill():
            pass
        return resp, conn.buf


def test_head_after_get_is_hit_without_body(cached, origin):
    s = cached(origin)
    g = get(s, "/c/hd")
    h, rest = head_exchange(s.port, "/c/hd")
    assert (h.status, xcache(h)) == (200, "HIT")
    assert rest == b""
    assert h.header("Content-Length") == str(len(g.body))
    assert origin.hits("/c/hd") == 1


def test_head_miss_is_not_stored(cached, origin):
    s = cached(origin)
    h, rest = head_exchange(s.port, "/c/hm")
    assert xcache(h) == "MISS" and rest == b""
    g1 = get(s, "/c/hm")
    assert xcache(g1) == "MISS" and g1.body     # the HEAD stored nothing
    g2 = get(s, "/c/hm")
    assert xcache(g2) == "HIT" and g2.body == g1.body
    assert origin.hits("/c/hm") == 2


def test_query_is_part_of_the_key(cached, origin):
    s = cached(origin)
    a1 = get(s, "/c/q?x=1")
    b1 = get(s, "/c/q?x=2")
    assert (xcache(a1), xcache(b1)) == ("MISS", "MISS")
    assert a1.body != b1.body
    a2 = get(s, "/c/q?x=1")
    b2 = get(s, "/c/q?x=2")
    assert (xcache(a2), xcache(b2)) == ("HIT", "HIT")
    assert (a2.body, b2.body) == (a1.body, b1.body)
    assert origin.hits("/c/q") == 2


def test_host_is_part_of_the_key(cached, origin):
    s = cached(origin)
    a1 = get(s, "/c/hk", host="a.test")
    b1 = get(s, "/c/hk", host="b.test")
    assert (xcache(a1), xcache(b1)) == ("MISS", "MISS")
    a2 = get(s, "/c/hk", host="A.TEST")         # lower-cased in the key
    assert xcache(a2) == "HIT" and a2.body == a1.body
    assert origin.hits("/c/hk") == 2


def test_absolute_form_target_uses_its_authority(cached, origin):
    s = cached(origin)
    r1 = http_request(s.port, "GET", "http://abs.test/c/abs",
                      host="other.test")
    assert xcache(r1) == "MISS"
    r2 = get(s, "/c/abs", host="abs.test")
    assert xcache(r2) == "HIT" and r2.body == r1.body


def test_upstream_x_cache_and_age_not_passed_on(cached, origin):
    # an upstream that is itself a cache sends X-Cache and Age; the client
    # sees stoa's X-Cache only, and on a hit stoa's Age only
    s = cached(origin)
    t = "/c/up?hdr=X-Cache:HIT&hdr=" + quote("Age:100")
    r1 = get(s, t)
    r2 = get(s, t)
    for r, want in ((r1, "MISS"), (r2, "HIT")):
        vals = [v for k, v in r.headers if k.lower() == "x-cache"]
        assert vals == [want], r.headers
    ages = [v for k, v in r2.headers if k.lower() == "age"]
    assert ages == ["0"], r2.headers


# ----------------------------------------------------- purge, tags, clear

def test_purge_by_url(cached, origin):
    s = cached(origin)
    get(s, "/c/pu?v=1")
    get(s, "/c/other")
    assert xcache(get(s, "/c/pu?v=1")) == "HIT"
    r = admin_request(s.admin_port, "POST", purge_url("/c/pu?v=1"))
    assert r.status == 204, r
    assert xcache(get(s, "/c/pu?v=1")) == "MISS"
    assert xcache(get(s, "/c/other")) == "HIT"      # only that entry
    assert admin_request(s.admin_port, "POST",
                         purge_url("/c/absent")).status == 404


def test_purge_by_url_twice_is_404(cached, origin):
    s = cached(origin)
    get(s, "/c/p2")
    assert admin_request(s.admin_port, "POST",
                         purge_url("/c/p2")).status == 204
    assert admin_request(s.admin_port, "POST",
                         purge_url("/c/p2")).status == 404


def test_purge_by_url_host_with_port_any_case(cached, origin):
    s = cached(origin)
    get(s, "/c/hp", host="Cache.Test:8080")
    assert admin_request(s.admin_port, "POST", purge_url(
        "/c/hp", host="cache.test")).status == 404     # the port is kept
    assert admin_request(s.admin_port, "POST", purge_url(
        "/c/hp", host="CACHE.test:8080")).status == 204
    assert xcache(get(s, "/c/hp", host="cache.test:8080")) == "MISS"


def test_purge_by_url_with_encoded_path_and_query(cached, origin):
    s = cached(origin)
    t = "/c/e%20x?a=1&b=%2F"
    get(s, t)
    assert admin_request(s.admin_port, "POST", purge_url(t)).status == 204
    assert xcache(get(s, t)) == "MISS"


def test_purge_by_tag(cached, origin):
    s = cached(origin)
    a = "/c/ta?tag=t1"
    b = "/c/tb?tag=" + quote("x t1")
    c = "/c/tc?tag=t2"
    for t in (a, b, c):
        assert xcache(get(s, t)) == "MISS"
        assert xcache(get(s, t)) == "HIT"
    r = admin_request(s.admin_port, "POST", "/cache/purge?tag=t1")
    assert r.status == 204, r
    assert xcache(get(s, a)) == "MISS"
    assert xcache(get(s, b)) == "MISS"
    assert xcache(get(s, c)) == "HIT"
    assert origin.hits("/c/tc") == 1


def test_surrogate_key_hidden_from_client(cached, origin):
    s = cached(origin)
    t = "/c/sk?tag=" + quote("a b")
    r1 = get(s, t)
    r2 = get(s, t)
    assert (xcache(r1), xcache(r2)) == ("MISS", "HIT")
    for r in (r1, r2):
        assert r.header("Surrogate-Key") is None, r.headers


def test_clear(cached, origin):
    s = cached(origin)
    targets = ["/c/x1", "/c/x2?q=1", "/c/x3?tag=t"]
    for t in targets:
        get(s, t)
        assert xcache(get(s, t)) == "HIT"
    r = admin_request(s.admin_port, "POST", "/cache/clear")
    assert r.status == 204, r
    assert [xcache(get(s, t)) for t in targets] == ["MISS"] * 3
    assert admin_stats(s.admin_port)["cache"]["entries"] == 3


# ------------------------------------------------- stampede and the lock

def test_stampede_one_origin_request(cached, origin):
    s = cached(origin)
    t = "/c/slow?sleep=0.5"
    n = 50
    res = concurrently(n, lambda i: get(s, t, timeout=15))
    assert [r.status for r in res] == [200] * n
    assert len({r.body for r in res}) == 1
    assert {xcache(r) for r in res} <= {"MISS", "HIT"}
    assert origin.hits("/c/slow") == 1


def test_lock_timeout_waiters_fetch_themselves(cached, aorigin):
    s = cached(aorigin, lock_timeout="500ms")
    t = "/c/lt?sleep=2"

    def one(i):
        if i > 0:
            time.sleep(0.2)         # the first request holds the lock
        return get(s, t, timeout=15)
    t0 = time.monotonic()
    res = concurrently(4, one)
    assert [r.status for r in res] == [200] * 4
    assert time.monotonic() - t0 < 6
    # with a longer lock_timeout the three waiters would be served by the
    # fill (test_lock_waiters_served_from_fill)
    assert aorigin.hits("/c/lt") > 1, [(xcache(r), r.body[:60]) for r in res]


def test_lock_waiters_served_from_fill(cached, aorigin):
    # the counterpart of the test above: a lock_timeout longer than the
    # fetch keeps the waiters off the origin
    s = cached(aorigin, lock_timeout="5s")
    t = "/c/lw?sleep=1"

    def one(i):
        if i > 0:
            time.sleep(0.2)
        return get(s, t, timeout=15)
    res = concurrently(4, one)
    assert len({r.body for r in res}) == 1
    assert aorigin.hits("/c/lw") == 1


def test_uncacheable_slow_url_not_serialised(cached, aorigin):
    """Concurrent misses on a URL whose answer turns out not storable
    (here no-store, 0.5 s) may wait for the first fetch, but must not then
    queue behind each other one origin fetch at a time: ten requests
    finish within a few origin round trips, not in ten."""
    s = cached(aorigin)
    t = "/c/nsl?sleep=0.5&cc=no-store"
    t0 = time.monotonic()
    res = concurrently(10, lambda i: get(s, t, timeout=20))
    took = time.monotonic() - t0
    assert [r.status for r in res] == [200] * 10
    assert took < 2.0, "all done after %.1f s; each finished after: %s" % (
        took, " ".join("%.2f" % r.elapsed for r in
                       sorted(res, key=lambda r: r.elapsed)))


# ---------------------------------------------------- workers and reload

def keepalive_get(sock, target):
    sock.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                  % (target, HOST)).encode())
    resp = RawConn(sock, 10).read_response()
    assert resp is not None
    return resp


def test_hit_across_workers(cached, aorigin):
    s = cached(aorigin, workers=2)
    pids = s.worker_pids()
    assert len(pids) == 2
    t = "/c/w"
    socks = []
    try:
        fill = socket.create_connection(("127.0.0.1", s.port), 10)
        socks.append(fill)
        r0 = keepalive_get(fill, t)
        assert xcache(r0) == "MISS"
        filler = server_side_pid(s.port, fill, pids)
        assert filler in pids
        served = []
        # new connections until one lands on the other worker (bounded)
        for _ in range(120):
            sk = socket.create_connection(("127.0.0.1", s.port), 10)
            socks.append(sk)
            r = keepalive_get(sk, t)
            served.append((server_side_pid(s.port, sk, pids), r))
            if len(served) >= 20 and any(p != filler for p, _ in served):
                break
        others = [r for p, r in served if p != filler]
        assert others, "every connection went to worker %d" % filler
        assert all(xcache(r) == "HIT" and r.body == r0.body
                   for _, r in served), [xcache(r) for _, r in served]
    finally:
        for sk in socks:
            sk.close()
    st = admin_stats(s.admin_port)["cache"]
    assert st["hits"] >= len(served) and st["misses"] == 1
    assert aorigin.hits(t) == 1


def test_cache_survives_reload(cached, aorigin):
    s = cached(aorigin)
    r1 = get(s, "/c/rl")
    assert xcache(get(s, "/c/rl")) == "HIT"
    body = (conf_upstream("app", [aorigin.addr])
            + conf_cache_route("/c/", "app", ttl="30s")
            + conf_route("/other/", "app"))
    old = set(s.worker_pids())
    new = s.reload(body=body)
    assert not (set(new) & old)
    r2 = get(s, "/c/rl")
    assert xcache(r2) == "HIT" and r2.body == r1.body
    assert aorigin.hits("/c/rl") == 1


# ---------------------------------------------------------- object size

@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_large_object_streamed_uncached(cached, origin, chunked):
    s = cached(origin, max_object_size="64k")
    n = 1 << 20
    t = "/c/big?size=%d%s" % (n, "&chunked=1" if chunked else "")
    for i in range(2):
        r = get(s, t, timeout=20)
        assert (r.status, xcache(r)) == (200, "MISS"), r
        assert len(r.body) == n
        assert zlib.crc32(r.body) == pattern_crc(n)
    assert origin.hits("/c/big") == 2


def test_object_under_max_size_cached(cached, origin):
    s = cached(origin, max_object_size="64k")
    n = 60 * 1024
    t = "/c/mid?size=%d&chunked=1" % n
    r1 = get(s, t)
    r2 = get(s, t)
    assert (xcache(r1), xcache(r2)) == ("MISS", "HIT")
    assert len(r2.body) == n and zlib.crc32(r2.body) == pattern_crc(n)
    assert origin.hits("/c/mid") == 1


def test_lru_eviction_keeps_recently_used(cached, aorigin):
    # about 20 entries of 50 kB fit in a 1 MB zone; /c/l0 is read after
    # every new fill, so it stays while the others age out in order
    s = cached(aorigin, size="1m", max_object_size="64k")
    t = "/c/l%d?size=50000"
    for i in range(40):
        assert xcache(get(s, t % i)) == "MISS"
        if i > 0:
            assert xcache(get(s, t % 0)) == "HIT", i
    st = admin_stats(s.admin_port)["cache"]
    assert st["evictions"] > 0 and st["bytes"] <= 1 << 20, st
    assert xcache(get(s, t % 39)) == "HIT"
    assert xcache(get(s, t % 1)) == "MISS"


# ---------------------------------------------------------- stale windows

def test_stale_while_revalidate(cached, aorigin):
    s = cached(aorigin, ttl="1s", stale_while_revalidate="5s")
    t = "/c/swr?sleep=0.8"
    r1 = get(s, t)
    assert xcache(r1) == "MISS"
    time.sleep(1.2)
    r2 = get(s, t)
    # served at once from the old entry, not after the 0.8 s the origin takes
    assert (r2.status, xcache(r2)) == (200, "STALE")
    assert r2.body == r1.body and r2.elapsed < 0.6, r2.elapsed
    wait_until(lambda: aorigin.hits("/c/swr") == 2, 3.0, 0.02,
               "the background refresh")

    def fresh():
        r = get(s, t)
        return xcache(r) == "HIT" and r
    r3 = wait_until(fresh, 3.0, 0.05, "the refreshed entry")
    assert r3.body != r1.body
    assert r3.json()["seq"] == r1.json()["seq"] + 1
    assert aorigin.hits("/c/swr") == 2


def test_stale_if_error_on_503(cached, origin):
    s = cached(origin, ttl="1s", stale_if_error="10s")
    t = "/c/sie"
    r1 = get(s, t)
    assert xcache(r1) == "MISS"
    origin.set_fail(True)
    time.sleep(1.2)
    r2 = get(s, t)
    assert (r2.status, xcache(r2)) == (200, "STALE"), r2
    assert r2.body == r1.body
    assert origin.hits("/c/sie") == 2        # it was asked, and failed


def test_stale_if_error_on_origin_down(cached, own_origin):
    s = cached(own_origin, ttl="1s", stale_if_error="10s")
    t = "/c/sie"
    r1 = get(s, t)
    own_origin.stop()
    time.sleep(1.2)
    r2 = get(s, t)
    assert (r2.status, xcache(r2)) == (200, "STALE"), r2
    assert r2.body == r1.body


def test_stale_if_error_not_used_when_origin_fine(cached, aorigin):
    s = cached(aorigin, ttl="1s", stale_if_error="10s")
    t = "/c/exp"
    r1 = get(s, t)
    time.sleep(1.2)
    r2 = get(s, t)
    assert (r2.status, xcache(r2)) == (200, "EXPIRED")
    assert r2.body != r1.body
    r3 = get(s, t)
    assert xcache(r3) == "HIT" and r3.body == r2.body
    assert aorigin.hits("/c/exp") == 2


def test_no_stale_without_window(cached, aorigin):
    s = cached(aorigin, ttl="1s")
    get(s, "/c/ns")
    aorigin.set_fail(True)
    time.sleep(1.2)
    r = get(s, "/c/ns")
    assert r.status == 503 and xcache(r) == "MISS", r
