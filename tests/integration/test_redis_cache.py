"""The response cache with `backend = redis` (SPEC.md "Cache",
docs/redis-keys.md).

Every test runs against a redis-server of this suite's own (no
persistence, a free port, DEBUG enabled), stopped by PID at the end.

The core behaviours are the memory-store tests of test_cache.py, imported
from there and run again here: pytest collects them in this module, where
the `cached` fixture below puts `backend = redis` in the cache section and
empties the Redis first (FLUSHALL), so a test starts cold whatever ran
before it.  Only the aiohttp origin is used here (the store does not care
which origin filled it; test_cache.py covers both).  Left out: the LRU
test (no LRU of ours in Redis) and test_clear, whose `entries` count is a
memory-zone figure; test_clear_namespace_only below replaces it.

Then what only Redis has: the documented key and value, its PTTL, two stoa
instances sharing one Redis, an application deleting or spoiling a key,
and Redis failing (killed, restarted, slow, absent at start) with no
request failing.
"""

import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
from urllib.parse import quote

import pytest

from helpers import (admin_request, admin_stats, conf_cache,
                     conf_cache_route, conf_upstream, free_port, http_get,
                     stop_process, wait_until)

redis = pytest.importorskip("redis")

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
if not os.access(REDIS_SERVER, os.X_OK):
    pytest.skip("redis-server not installed", allow_module_level=True)

# The core tests, re-collected here against Redis (their fixtures too: the
# ones defined below in this module take precedence over test_cache's).
from test_cache import (  # noqa: E402,F401
    HOST, aorigin, concurrently, get, own_origin, purge_url,
    shared_origins, xcache,
    test_absolute_form_target_uses_its_authority,
    test_authorization_bypasses,
    test_cache_survives_reload,
    test_expiry_at_ttl,
    test_head_after_get_is_hit_without_body,
    test_head_miss_is_not_stored,
    test_hit_across_workers,
    test_hit_keeps_origin_headers,
    test_host_is_part_of_the_key,
    test_large_object_streamed_uncached,
    test_lock_timeout_waiters_fetch_themselves,
    test_lock_waiters_served_from_fill,
    test_max_age_overrides_route_ttl,
    test_miss_then_hit_with_age,
    test_no_stale_without_window,
    test_object_under_max_size_cached,
    test_post_bypasses_and_is_never_cached,
    test_post_does_not_serve_cached_get,
    test_purge_by_tag,
    test_purge_by_url,
    test_purge_by_url_host_with_port_any_case,
    test_purge_by_url_twice_is_404,
    test_purge_by_url_with_encoded_path_and_query,
    test_query_is_part_of_the_key,
    test_response_not_stored,
    test_response_stored,
    test_s_maxage_beats_max_age,
    test_set_cookie_never_served_from_cache,
    test_stale_if_error_not_used_when_origin_fine,
    test_stale_if_error_on_503,
    test_stale_if_error_on_origin_down,
    test_stale_while_revalidate,
    test_stampede_one_origin_request,
    test_surrogate_key_hidden_from_client,
    test_uncacheable_slow_url_not_serialised,
    test_upstream_x_cache_and_age_not_passed_on,
)

NS = "stoa"


def entry_key(target, host=HOST, ns=NS):
    return "%s:GET:%s:%s" % (ns, host, target)


# ------------------------------------------------------------ redis-server

class RedisServer:
    """A redis-server on 127.0.0.1:port in its own session, without
    persistence, with DEBUG allowed.  kill() and start() again reuse the
    port (Redis listens with SO_REUSEADDR)."""

    def __init__(self, directory, port=None):
        self.dir = directory
        self.port = port or free_port()
        self.proc = None
        self.log = os.path.join(directory, "redis.log")

    def start(self, timeout=10.0):
        for attempt in range(3):
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port),
                 "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--enable-debug-command", "yes", "--daemonize", "no",
                 "--dir", self.dir, "--logfile", self.log],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                wait_until(self._ping, timeout, 0.02,
                           "redis-server on port %d" % self.port)
                return self
            except AssertionError:
                exited = self.proc.poll() is not None
                self.stop()
                if not exited or attempt == 2:
                    raise
                self.port = free_port()     # lost the port to someone

    def _ping(self):
        if self.proc.poll() is not None:
            raise AssertionError("redis-server exited: %s" % self.log_text())
        try:
            return self.client(timeout=1.0).ping()
        except redis.RedisError:
            return False

    def client(self, timeout=5.0):
        return redis.Redis(host="127.0.0.1", port=self.port,
                           socket_timeout=timeout,
                           socket_connect_timeout=timeout)

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def kill(self):
        """SIGKILL, as a crash would end it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, 5.0)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()[-2000:]
        except OSError:
            return ""


@pytest.fixture(scope="module")
def module_redis():
    """One Redis for the tests that only read and write (emptied before
    each test by `cached`)."""
    d = tempfile.mkdtemp(prefix="stoa-redis.")
    r = RedisServer(d).start()
    yield r
    r.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def own_redis():
    """A Redis of this test alone (it may be killed, slowed, restarted)."""
    d = tempfile.mkdtemp(prefix="stoa-redis.")
    r = RedisServer(d)
    yield r
    r.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def rds(module_redis):
    """A redis-py client on the (emptied) module Redis."""
    c = module_redis.client()
    c.flushall()
    return c


@pytest.fixture
def origin(shared_origins):
    """test_cache's core tests take `origin` (both kinds there): aiohttp
    only here."""
    from test_cache import _shared
    return _shared(shared_origins, "aiohttp")


def _make_cached(stoa_factory, server, origin, ttl="30s", workers=2,
                 timeouts=None, **cache_opts):
    admin_port = free_port()
    body = (conf_upstream("app", [origin.addr])
            + conf_cache_route("/c/", "app", ttl=ttl))
    opts = dict(backend="redis", redis='"%s"' % server.url)
    opts.update(cache_opts)
    extra = conf_cache(**opts) + '\nadmin = "127.0.0.1:%d"' % admin_port
    s = stoa_factory(body, workers=workers, extra=extra, timeouts=timeouts)
    s.admin_port = admin_port
    s.origin = origin
    s.redis = server
    return s


def stoa_value(body, status=200, ttl_ms=600000, headers=b""):
    """An entry value in the documented format (version 1)."""
    return (struct.pack("<4sBBHQQQQI", b"STOA", 1, 0, status,
                        int(time.time() * 1000), ttl_ms, 0, 0, len(headers))
            + headers + struct.pack("<I", len(body)) + body)


def wait_redis_ready(s, client, ns=NS, timeout=10.0):
    """Until the workers of s talk to Redis: a store on Redis connects in
    the background (BYPASS until then).  An entry written here with
    redis-py (so no MISS is counted) is asked for until ten HITs in a
    row came back (so both workers very likely answered one)."""
    host = "ready.test"
    key = "%s:GET:%s:/c/__ready" % (ns, host)
    client.set(key, stoa_value(b"ready\n",
                               headers=b"Content-Type: text/plain\r\n"))
    got = []

    def ok():
        r = http_get(s.port, "/c/__ready", host=host)
        assert r.status == 200, r
        got.append(xcache(r))
        if got[-1] == "HIT":
            assert r.body == b"ready\n", r
        return got[-10:] == ["HIT"] * 10
    wait_until(ok, timeout, 0.02, "stoa's workers to reach Redis (%s)"
               % got[-10:])
    client.delete(key)


@pytest.fixture
def cached(stoa_factory, module_redis, rds):
    """Same signature as test_cache.cached, with backend = redis on the
    module Redis, emptied before stoa starts; returns once the workers
    are connected."""
    def make(origin, **kw):
        s = _make_cached(stoa_factory, module_redis, origin, **kw)
        wait_redis_ready(s, rds, kw.get("namespace", NS))
        return s
    return make


@pytest.fixture
def cached_on(stoa_factory):
    """cached_on(server, origin, **kw): like `cached` on any RedisServer,
    without waiting for the connection."""
    def make(server, origin, **kw):
        return _make_cached(stoa_factory, server, origin, **kw)
    return make


# ------------------------------------------------------- key, value, PTTL

def stored(client, key, timeout=2.0):
    """Wait until key exists.  stoa writes an entry after the response
    went out (asynchronously), so a test that reads Redis itself right
    after a fill waits for it; the HTTP-level tests do not."""
    wait_until(lambda: client.exists(key), timeout, 0.005,
               "%s in Redis (have %s)" % (key, sorted(client.keys("*"))))

def test_entry_is_the_documented_key_and_value(cached, aorigin, rds):
    s = cached(aorigin)
    t = "/c/doc?x=1&a=%2F"
    r1 = get(s, t, host="Cache.Test:8080")
    assert xcache(r1) == "MISS"
    key = entry_key(t, host="cache.test:8080")
    stored(rds, key)
    v = rds.get(key)
    magic, ver, flags, status, at, ttl, swr, sie, hlen = struct.unpack(
        "<4sBBHQQQQI", v[:44])
    assert (magic, ver, flags, status) == (b"STOA", 1, 0, 200)
    assert abs(at - time.time() * 1000) < 5000
    assert (ttl, swr, sie) == (30000, 0, 0)
    heads = v[44:44 + hlen]
    (blen,) = struct.unpack("<I", v[44 + hlen:48 + hlen])
    assert len(v) == 48 + hlen + blen
    assert v[48 + hlen:] == r1.body
    assert b"content-type:" in heads.lower()
    for h in (b"set-cookie", b"x-cache", b"age:", b"content-length",
              b"connection:"):
        assert h not in heads.lower(), heads


def test_tag_set_holds_entry_keys(cached, aorigin, rds):
    s = cached(aorigin)
    t = "/c/tg?tag=" + quote("p1 p2")
    get(s, t)
    stored(rds, entry_key(t))
    for tag in ("p1", "p2"):
        stored(rds, "stoa:tag:" + tag)
        assert rds.smembers("stoa:tag:" + tag) == {entry_key(t).encode()}
        # outlives the entry it names (entry lifetime + 60 s)
        assert rds.pttl("stoa:tag:" + tag) > 30000 + 59000


@pytest.mark.parametrize("opts, t, life", [
    ({}, "/c/pt", 30000),
    ({"stale_while_revalidate": "10s"}, "/c/pt", 40000),
    ({"stale_while_revalidate": "10s", "stale_if_error": "20s"}, "/c/pt",
     50000),
    ({}, "/c/pt?cc=" + quote("max-age=5"), 5000),
], ids=["ttl", "ttl+swr", "ttl+longer-window", "max-age"])
def test_pttl_matches_ttl(cached, aorigin, rds, opts, t, life):
    s = cached(aorigin, ttl="30s", **opts)
    assert xcache(get(s, t)) == "MISS"
    stored(rds, entry_key(t))
    pttl = rds.pttl(entry_key(t))
    assert life - 1500 <= pttl <= life, pttl


def test_application_delete_is_a_miss(cached, aorigin, rds):
    s = cached(aorigin)
    t = "/c/del?page=2"
    r1 = get(s, t)
    assert xcache(get(s, t)) == "HIT"
    assert rds.delete(entry_key(t)) == 1        # what docs/redis-keys.md says
    r3 = get(s, t)
    assert xcache(r3) == "MISS" and r3.body != r1.body
    r4 = get(s, t)
    assert xcache(r4) == "HIT" and r4.body == r3.body
    assert aorigin.hits("/c/del") == 2


def test_foreign_value_is_a_miss_and_replaced(cached, aorigin, rds):
    # one worker: each worker's store counts its own decode errors and
    # /stats shows only those of the worker that serves the admin
    # listener (reported as a stoa bug), so with two the count may not move
    s = cached(aorigin, workers=1)
    t = "/c/junk"
    get(s, t)
    stored(rds, entry_key(t))
    rds.set(entry_key(t), b"STOA\x01\x00 not a stoa value")
    errs = admin_stats(s.admin_port)["cache"]["errors"]
    r2 = get(s, t)
    assert (r2.status, xcache(r2)) == (200, "MISS")
    assert admin_stats(s.admin_port)["cache"]["errors"] > errs
    wait_until(lambda: (rds.get(entry_key(t)) or b"").startswith(
        b"STOA\x01\x00\xc8\x00"), 2.0, 0.005, "the entry stored again")
    assert xcache(get(s, t)) == "HIT"
    rds.delete(entry_key(t))
    rds.sadd(entry_key(t), "a set, not a string")
    assert get(s, t).status == 200


def test_large_object_not_in_redis(cached, aorigin, rds):
    s = cached(aorigin, max_object_size="64k")
    t = "/c/big?size=%d" % (200 * 1024)
    r = get(s, t)
    assert xcache(r) == "MISS" and len(r.body) == 200 * 1024
    assert not rds.exists(entry_key(t))


def test_clear_namespace_only(cached, aorigin, rds):
    s = cached(aorigin)
    targets = ["/c/x1", "/c/x2?q=1", "/c/x3?tag=t"]
    for t in targets:
        get(s, t)
        assert xcache(get(s, t)) == "HIT"
    rds.set("other:key", "kept")
    rds.set("stoaX:GET:cache.test:/c/x1", "kept")   # a prefix, not our ns
    assert rds.exists("stoa:tag:t")
    r = admin_request(s.admin_port, "POST", "/cache/clear")
    assert r.status == 204, r
    assert not rds.exists("stoa:tag:t")
    assert not any(rds.exists(entry_key(t)) for t in targets)
    assert rds.get("other:key") == b"kept"
    assert rds.get("stoaX:GET:cache.test:/c/x1") == b"kept"
    assert [xcache(get(s, t)) for t in targets] == ["MISS"] * 3


# ---------------------------------------------------- two stoa instances

@pytest.fixture
def pair(cached, aorigin):
    """Two stoa instances (A, B) on one Redis, one origin."""
    return cached(aorigin), cached(aorigin)


def test_two_instances_share_entries(pair, aorigin):
    a, b = pair
    r1 = get(a, "/c/sh")
    assert xcache(r1) == "MISS"
    r2 = get(b, "/c/sh")
    assert xcache(r2) == "HIT" and r2.body == r1.body
    assert aorigin.hits("/c/sh") == 1


def test_purge_url_via_a_seen_by_b(pair, aorigin):
    a, b = pair
    get(a, "/c/pa")
    assert xcache(get(b, "/c/pa")) == "HIT"
    assert admin_request(a.admin_port, "POST",
                         purge_url("/c/pa")).status == 204
    assert xcache(get(b, "/c/pa")) == "MISS"
    # and B's refill serves A
    assert xcache(get(a, "/c/pa")) == "HIT"
    assert aorigin.hits("/c/pa") == 2


def test_purge_tag_via_a_seen_by_b(pair, aorigin):
    a, b = pair
    t1, t2 = "/c/g1?tag=grp", "/c/g2?tag=" + quote("x grp")
    keep = "/c/g3?tag=other"
    for t in (t1, t2, keep):
        get(a, t)
        assert xcache(get(b, t)) == "HIT"
    assert admin_request(a.admin_port, "POST",
                         "/cache/purge?tag=grp").status == 204
    assert [xcache(get(b, t)) for t in (t1, t2, keep)] == [
        "MISS", "MISS", "HIT"]


def test_other_namespace_not_shared(cached, aorigin, rds):
    a = cached(aorigin)
    b = cached(aorigin, namespace="other")
    get(a, "/c/ns")
    assert xcache(get(b, "/c/ns")) == "MISS"
    stored(rds, "other:GET:cache.test:/c/ns")
    assert admin_request(b.admin_port, "POST", "/cache/clear").status == 204
    assert xcache(get(a, "/c/ns")) == "HIT"


def test_stampede_across_two_instances(pair, aorigin):
    a, b = pair
    t = "/c/st2?sleep=0.5"
    n = 40
    res = concurrently(n, lambda i: get((a, b)[i % 2], t, timeout=15))
    assert [r.status for r in res] == [200] * n
    assert len({r.body for r in res}) == 1
    assert {xcache(r) for r in res} <= {"MISS", "HIT"}
    assert aorigin.hits("/c/st2") == 1


# ------------------------------------------------------- Redis failing

class Load:
    """A client thread doing requests on s one after the other (each on a
    new connection) until stop(); records (time, status or exception,
    X-Cache)."""

    def __init__(self, s, targets):
        self.s = s
        self.targets = targets
        self.results = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        i = 0
        while not self._stop.is_set():
            t = self.targets[i % len(self.targets)]
            i += 1
            try:
                r = get(self.s, t, timeout=5)
                self.results.append((time.monotonic(), r.status, xcache(r)))
            except Exception as e:        # counted as a failure
                self.results.append((time.monotonic(), repr(e), None))

    def since(self, t0):
        return [x for x in self.results if x[0] >= t0]

    def stop(self):
        self._stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the load thread hung"


def test_redis_killed_then_restarted(cached_on, own_redis, aorigin):
    own_redis.start()
    s = cached_on(own_redis, aorigin)
    wait_redis_ready(s, own_redis.client())
    targets = ["/c/k%d" % i for i in range(4)]
    load = Load(s, targets)
    try:
        wait_until(lambda: [x[2] for x in load.results[-8:]] == ["HIT"] * 8,
                   10.0, 0.02, "HITs before the kill")
        t_kill = time.monotonic()
        own_redis.kill()
        wait_until(lambda: len(load.since(t_kill)) >= 40, 10.0, 0.02,
                   "requests with Redis down")
        down = load.since(t_kill)
        assert "BYPASS" in {x[2] for x in down}, down[-5:]

        t_up = time.monotonic()
        own_redis.start()
        # reconnects with backoff (at most 5 s), then fills and hits again

        def hits_again():
            after = load.since(t_up)
            return [x[2] for x in after[-8:]] == ["HIT"] * 8
        wait_until(hits_again, 12.0, 0.05, "HITs after the restart")
    finally:
        load.stop()
    bad = [x for x in load.results if x[1] != 200]
    assert not bad, "%d of %d requests failed: %s" % (
        len(bad), len(load.results), bad[:5])
    assert len(load.results) > 100
    assert admin_stats(s.admin_port)["cache"]["errors"] > 0


def test_redis_down_at_start(cached_on, own_redis, aorigin):
    own_redis.port = free_port()
    s = cached_on(own_redis, aorigin)         # nothing listens there yet
    for _ in range(3):
        r = get(s, "/c/late")
        assert (r.status, xcache(r)) == (200, "BYPASS"), r
    own_redis.start()

    def hit():
        return xcache(get(s, "/c/late")) == "HIT"
    wait_until(hit, 12.0, 0.05, "HITs once Redis is up")


def test_stats_count_each_failure_once(cached_on, own_redis, aorigin):
    own_redis.port = free_port()              # nothing listens there
    s = cached_on(own_redis, aorigin, workers=1)
    for _ in range(10):
        assert xcache(get(s, "/c/cnt")) == "BYPASS"
    st = admin_stats(s.admin_port)["cache"]
    assert (st["bypass"], st["errors"]) == (10, 10), st


def test_slow_redis_bypasses_within_timeout(cached_on, own_redis, aorigin):
    own_redis.start()
    s = cached_on(own_redis, aorigin, redis_timeout="250ms")
    wait_redis_ready(s, own_redis.client())
    t = "/c/sr"
    get(s, t)
    assert xcache(get(s, t)) == "HIT"
    base = aorigin.hits("/c/sr")

    sleeper = threading.Thread(
        target=lambda: own_redis.client(10).execute_command("DEBUG", "SLEEP",
                                                            "2"),
        daemon=True)
    t0 = time.monotonic()
    sleeper.start()
    time.sleep(0.1)             # the DEBUG SLEEP is running
    seen = []
    while time.monotonic() - t0 < 1.6:
        r = get(s, t, timeout=5)
        seen.append((r.status, xcache(r), round(r.elapsed, 3)))
        assert r.status == 200
        assert r.elapsed < 1.5, seen
        assert xcache(r) in ("BYPASS", "MISS"), seen
    assert len(seen) >= 4, seen
    sleeper.join(5)
    assert not sleeper.is_alive()
    assert aorigin.hits("/c/sr") == base + len(seen)
    # the late replies are dropped; caching goes on
    wait_until(lambda: xcache(get(s, t)) == "HIT", 5.0, 0.05,
               "HITs after the sleep")
