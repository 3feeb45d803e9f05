"""The admin listener (SPEC.md "Admin listener"): health, stats, metrics,
and that none of it is reachable through the public listeners.

The cache endpoints (purge, clear) are exercised in test_cache.py; here
only their error answers.  Counters live in a shared stats zone, so the
numbers must be the sum over all workers whichever worker answers.
"""

import os
import signal
import socket

import pytest

from helpers import (CacheOrigin, RawConn, admin_request, admin_stats,
                     conf_cache_route, conf_route, conf_upstream, free_port,
                     http_get, http_request, prom_samples, server_side_pid, wait_until)

HOST = "admin.test"


@pytest.fixture
def origin():
    o = CacheOrigin("aiohttp")
    yield o
    o.stop()


@pytest.fixture
def with_admin(stoa_factory):
    """with_admin(body, **kw) -> Stoa with an admin listener on
    stoa.admin_port."""
    def make(body, **kw):
        port = free_port()
        extra = 'admin = "127.0.0.1:%d"' % port
        if kw.get("extra"):
            extra = kw.pop("extra") + "\n" + extra
        s = stoa_factory(body, extra=extra, **kw)
        s.admin_port = port
        return s
    return make


def cached_body(origin):
    return (conf_upstream("app", [origin.addr])
            + conf_cache_route("/c/", "app", ttl="30s"))


def metrics(port):
    r = admin_request(port, "GET", "/metrics")
    assert r.status == 200, r
    return r, prom_samples(r.body.decode())


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def spread_requests(stoa, target, n_min=20, n_max=120):
    """GET target on new keep-alive connections, held open, until both
    workers have served at least one (bounded).  Returns (responses,
    {worker pid: connections}, sockets); the caller closes the sockets."""
    pids = stoa.worker_pids()
    socks, resps, per = [], [], {}
    for i in range(n_max):
        sk = socket.create_connection(("127.0.0.1", stoa.port), 10)
        socks.append(sk)
        sk.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                    % (target, HOST)).encode())
        r = RawConn(sk, 10).read_response()
        assert r is not None
        resps.append(r)
        p = server_side_pid(stoa.port, sk, pids)
        per[p] = per.get(p, 0) + 1
        if i + 1 >= n_min and len([p for p in per if p in pids]) >= 2:
            break
    return resps, per, socks


# ----------------------------------------------------------------- health

def test_health(with_admin, origin):
    s = with_admin(cached_body(origin))
    r = admin_request(s.admin_port, "GET", "/health")
    assert (r.status, r.body) == (200, b"ok\n")
    h = admin_request(s.admin_port, "HEAD", "/health")
    assert h.status == 200 and h.body == b""


def test_unknown_admin_path_is_404(with_admin, origin):
    s = with_admin(cached_body(origin))
    r = admin_request(s.admin_port, "GET", "/nope")
    assert r.status == 404 and r.json().get("error"), r


def test_admin_wrong_method_is_405(with_admin, origin):
    s = with_admin(cached_body(origin))
    r = admin_request(s.admin_port, "POST", "/stats")
    assert r.status == 405 and "GET" in (r.header("Allow") or ""), r
    r = admin_request(s.admin_port, "GET", "/cache/clear")
    assert r.status == 405 and "POST" in (r.header("Allow") or ""), r


def test_purge_without_parameter_is_400(with_admin, origin):
    s = with_admin(cached_body(origin))
    r = admin_request(s.admin_port, "POST", "/cache/purge")
    assert r.status == 400, r


def test_cache_endpoints_without_cache_are_404(with_admin, origin):
    body = conf_upstream("app", [origin.addr]) + conf_route("/", "app")
    s = with_admin(body)
    r = admin_request(s.admin_port, "POST", "/cache/clear")
    assert r.status == 404 and r.json() == {"error": "no cache"}, r


# ------------------------------------------------------------------ stats

def test_stats_shape(with_admin, origin):
    s = with_admin(cached_body(origin))
    for i in range(4):
        assert http_get(s.port, "/c/a", host=HOST).status == 200
    st = wait_until(lambda: (lambda d: d["cache"]["hits"] == 3 and d)(
        admin_stats(s.admin_port)), 3.0, 0.05, "3 hits in /stats")
    for k in ("uptime", "workers", "connections", "requests", "routes",
              "upstreams", "cache"):
        assert k in st, k
    assert isinstance(st["uptime"], int) and st["uptime"] >= 0
    assert st["workers"] == 2
    assert isinstance(st["connections"], int)
    req = st["requests"]
    assert req["total"] == 4 and req["2xx"] == 4
    assert all(req[c] == 0 for c in ("1xx", "3xx", "4xx", "5xx"))
    assert req["codes"] == {"200": 4}
    (route,) = st["routes"]
    assert route["route"] == "/c/" and route["cache"] is True
    assert route["upstream"] == "app" and route["requests"] == 4
    (up,) = st["upstreams"]
    assert up["upstream"] == "app"
    (srv,) = up["servers"]
    assert srv["server"] == origin.addr
    assert (srv["state"], srv["failures"], srv["requests"]) == ("up", 0, 1)
    c = st["cache"]
    assert c["backend"] == "memory"
    assert (c["hits"], c["misses"], c["entries"]) == (3, 1, 1)
    assert abs(c["hit_ratio"] - 0.75) < 1e-6
    assert c["bytes"] > 0
    assert (c["evictions"], c["errors"]) == (0, 0)


def test_upstream_marked_down_shows_in_stats(with_admin):
    dead = "127.0.0.1:%d" % free_port()         # nobody listens there
    body = (conf_upstream("app", [dead], max_fails=1, fail_timeout="30s")
            + conf_route("/", "app"))
    s = with_admin(body)
    (srv,) = admin_stats(s.admin_port)["upstreams"][0]["servers"]
    assert srv["state"] == "up"
    r = http_get(s.port, "/x", host=HOST)
    assert r.status == 502, r
    (srv,) = admin_stats(s.admin_port)["upstreams"][0]["servers"]
    assert srv["server"] == dead
    assert srv["state"] == "down" and srv["failures"] >= 1, srv
    _, m = metrics(s.admin_port)
    assert sample(m, "stoa_upstream_up", upstream="app", server=dead) == 0


# ---------------------------------------------------------------- metrics

def test_metrics_names_and_values(with_admin, origin):
    s = with_admin(cached_body(origin))
    for i in range(3):
        http_get(s.port, "/c/m", host=HOST)
    r, m = metrics(s.admin_port)
    assert r.header("Content-Type", "").startswith("text/plain")
    assert "version=0.0.4" in r.header("Content-Type")
    assert sample(m, "stoa_requests_total", code="200") == 3
    assert sample(m, "stoa_cache_hits_total") == 2
    assert sample(m, "stoa_cache_misses_total") == 1
    assert sample(m, "stoa_cache_entries") == 1
    assert sample(m, "stoa_upstream_requests_total", upstream="app",
                  server=origin.addr) == 1
    assert sample(m, "stoa_connections") is not None
    assert sample(m, "stoa_websocket_tunnels") == 0
    text = r.body.decode()
    for name in ("stoa_requests_total", "stoa_cache_hits_total",
                 "stoa_cache_misses_total", "stoa_cache_entries",
                 "stoa_upstream_requests_total", "stoa_connections",
                 "stoa_websocket_tunnels"):
        assert "# TYPE %s " % name in text, name


def test_counters_aggregate_across_workers(with_admin, origin):
    body = conf_upstream("app", [origin.addr]) + conf_route("/", "app")
    s = with_admin(body)
    resps, per, socks = spread_requests(s, "/c/agg")
    try:
        pids = set(s.worker_pids())
        assert len(set(per) & pids) == 2, per   # both workers served
        n = len(resps)
        assert all(r.status == 200 for r in resps)
    finally:
        for sk in socks:
            sk.close()
    st = wait_until(lambda: (lambda d: d["requests"]["total"] == n and d)(
        admin_stats(s.admin_port)), 3.0, 0.05, "%d requests in /stats" % n)
    assert st["requests"]["codes"] == {"200": n}
    (srv,) = st["upstreams"][0]["servers"]
    assert srv["requests"] == n
    # every worker answers the admin port with the same sums
    for i in range(6):
        _, m = metrics(s.admin_port)
        assert sample(m, "stoa_requests_total", code="200") == n
        assert sample(m, "stoa_upstream_requests_total", upstream="app",
                      server=origin.addr) == n
    assert origin.hits("/c/agg") == n


def wait_connections(s, n, why=""):
    """Wait (bounded) until stoa_connections is n, then check that /stats
    says the same."""
    wait_until(lambda: sample(metrics(s.admin_port)[1],
                              "stoa_connections") == n, 3.0, 0.05,
               "stoa_connections == %d%s" % (n, why))
    assert admin_stats(s.admin_port)["connections"] == n


def test_connections_gauge_across_workers(with_admin, origin):
    body = conf_upstream("app", [origin.addr]) + conf_route("/", "app")
    s = with_admin(body)
    resps, per, socks = spread_requests(s, "/c/conn", n_min=4)
    try:
        assert len(set(per) & set(s.worker_pids())) == 2, per
        wait_connections(s, len(socks))
    finally:
        for sk in socks:
            sk.close()
    wait_connections(s, 0)


def test_connections_gauge_forgets_a_killed_worker(with_admin, origin):
    """A worker killed with connections open: its replacement starts, and
    the gauge drops to what the surviving worker holds (the master takes
    back the dead worker's share), instead of counting them for good."""
    body = conf_upstream("app", [origin.addr]) + conf_route("/", "app")
    s = with_admin(body)
    resps, per, socks = spread_requests(s, "/c/kill", n_min=4)
    try:
        pids = s.worker_pids()
        assert len(set(per) & set(pids)) == 2, per
        wait_connections(s, len(socks))
        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(s.worker_pids()) == 2
                   and victim not in s.worker_pids(), 5.0, 0.05,
                   "the killed worker to be replaced")
        wait_connections(s, len(socks) - per[victim], " (the survivor's)")
    finally:
        for sk in socks:
            sk.close()
    wait_connections(s, 0)


# -------------------------------------------- not on the public listeners

@pytest.mark.parametrize("path", ["/stats", "/health", "/metrics"])
def test_public_port_forwards_admin_paths(with_admin, backend_factory, path):
    b = backend_factory("aiohttp")
    body = conf_upstream("app", [b.addr]) + conf_route("/", "app")
    s = with_admin(body)
    r = http_get(s.port, path, host=HOST)
    assert r.status == 200, r
    doc = r.json()          # the backend's catch-all answer
    assert doc["kind"] == "aiohttp" and doc["target"] == path
    assert b.seen() == [["GET", path]]


def test_public_port_cache_clear_is_not_admin(with_admin, origin):
    s = with_admin(cached_body(origin))
    http_get(s.port, "/c/k", host=HOST)
    r = http_request(s.port, "POST", "/cache/clear", host=HOST, body=b"")
    assert r.status == 404, r               # no route for /cache/
    assert http_get(s.port, "/c/k", host=HOST).header("X-Cache") == "HIT"


@pytest.mark.parametrize("path", ["/stats", "/health", "/metrics"])
def test_public_port_without_route_is_404(with_admin, origin, path):
    s = with_admin(cached_body(origin))     # only /c/ is routed
    r = http_get(s.port, path, host=HOST)
    assert r.status == 404, r
    assert b"uptime" not in r.body and b"stoa_" not in r.body
    assert r.body != b"ok\n"
