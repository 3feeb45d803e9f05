"""Cache poisoning and cache deception (SPEC.md "Cache").

The origin (a backends/recorder.py handler, `vulnerable_app`) behaves like
a careless application: it trusts the usual override headers
(X-Forwarded-Host, X-Original-URL, X-HTTP-Method-Override...), personalises
pages from cookies and Authorization without saying Cache-Control: private,
reads a body on GET, and maps "/account;.css" or "/account/..%2fx.css" to
the account page.  Whatever an attacker sends, a later clean request for
the same URL must not get a body built from the attacker's input, and a
private page must not be stored under a public key.  Each vector is listed
in tests/README.md.
"""

import itertools
import re
import shutil
import tempfile

import pytest

from conftest import Stoa
from helpers import conf_cache, conf_cache_route, conf_upstream, http_get
from recorder import Recorder

HOST = "cache.test"
_seq = itertools.count(1)


def _norm_path(target):
    """The application's idea of the path: ";params" dropped from every
    segment, nothing decoded, so "/c/account/..%2fx.css" is still under
    /c/account/ (prefix routing, as in many frameworks)."""
    path = target.split("?")[0]
    return "/".join(seg.split(";")[0] for seg in path.split("/"))


def vulnerable_app(req):
    h = lambda n: (req.header(n) or b"").decode("latin-1")  # noqa: E731
    target = req.target.decode("latin-1")
    target = h("X-Original-URL") or h("X-Rewrite-URL") or target
    path = _norm_path(target)
    fwd = re.search(r"host=([^;,\s]+)", h("Forwarded"))
    # the less common headers first: an application that trusts them
    # typically does so because its own proxy sets them
    host = (h("X-Host") or (fwd and fwd.group(1)) or h("X-Forwarded-Host")
            or h("Host"))
    scheme = h("X-Forwarded-Scheme") or h("X-Forwarded-Proto") or "http"
    port = h("X-Forwarded-Port") or "80"
    prefix = h("X-Forwarded-Prefix")
    method = (h("X-HTTP-Method-Override") or h("X-Method-Override")
              or req.method.decode())
    cookie = re.search(r"session=(\w+)", h("Cookie"))
    user = cookie.group(1) if cookie else ""
    auth = h("Authorization").split(" ")[-1]
    extra = b""
    if path.startswith("/c/account"):
        # the account page: personal, and the application says so
        body = "account of %s: card 4111-SECRET\n" % (user or "nobody")
        extra = b"Cache-Control: private\r\n"
    else:
        body = ("page path=%s url=%s://%s:%s%s%s method=%s user=%s auth=%s "
                "body=%s n=%d\n" % (path, scheme, host, port, prefix, path,
                                    method, user, auth,
                                    req.body.decode("latin-1"), next(_seq)))
    if "setcookie" in target:
        extra += b"Set-Cookie: session=fresh\r\n"
    if "varycookie" in target:
        extra += b"Vary: Cookie\r\n"
    body = body.encode("latin-1")
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n%s"
            b"Content-Length: %d\r\n\r\n%s" % (extra, len(body), body))


@pytest.fixture(scope="module")
def app():
    r = Recorder(handler=vulnerable_app).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def cst(app):
    tmp = tempfile.mkdtemp(prefix="stoa-poison.")
    st = Stoa(tmp, conf_upstream("app", [app.addr])
              + conf_cache_route("/c/", "app", ttl="30s"),
              extra=conf_cache(size="16m"))
    st.start()
    yield st
    try:
        st.finish()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_uniq = itertools.count(1)


def fresh(path):
    """A path no earlier test cached."""
    return "%s-%d" % (path, next(_uniq))


def get(st, target, headers=(), body=None):
    if body is None:
        return http_get(st.port, target, host=HOST, headers=headers)
    from helpers import http_request
    return http_request(st.port, "GET", target, host=HOST, headers=headers,
                        body=body)


def origin_count(app, path):
    return sum(1 for r in app.requests if r.target.decode() == path)


# ----------------------------------------------------- unkeyed headers

UNKEYED = [
    ("X-Forwarded-Host", "evil.test", "evil.test"),
    ("X-Host", "evil.test", "evil.test"),
    ("Forwarded", "for=1.2.3.4;host=evil.test", "evil.test"),
    ("X-Forwarded-Proto", "evilscheme", "evilscheme"),
    ("X-Forwarded-Scheme", "evilscheme", "evilscheme"),
    ("X-Forwarded-Port", "6666", "6666"),
    ("X-Forwarded-Prefix", "/evilprefix", "evilprefix"),
    ("X-Original-URL", "/c/evil-original", "evil-original"),
    ("X-Rewrite-URL", "/c/evil-rewrite", "evil-rewrite"),
    ("X-HTTP-Method-Override", "DELETE", "DELETE"),
]


@pytest.mark.parametrize("name,value,marker", UNKEYED,
                         ids=[u[0] for u in UNKEYED])
def test_unkeyed_header_never_changes_cached_body(cst, app, name, value,
                                                  marker):
    path = fresh("/c/unkeyed")
    attacker = get(cst, path, headers=[(name, value)])
    assert attacker.status == 200, attacker
    victim = get(cst, path)
    assert victim.status == 200
    assert marker.encode() not in victim.body, (
        "a request with %s: %s poisoned %s: %r (X-Cache %s)"
        % (name, value, path, victim.body, victim.header("X-Cache")))
    # and the clean entry is what a clean request would get
    assert b"path=%s " % path.encode() in victim.body
    assert b"://cache.test:80/" in victim.body


def test_unkeyed_header_after_clean_fill(cst, app):
    """The reverse order: a clean entry is not replaced by an attacker's
    request carrying override headers."""
    path = fresh("/c/unkeyed-after")
    clean = get(cst, path)
    assert clean.status == 200 and clean.header("X-Cache") == "MISS"
    for name, value, _ in UNKEYED:
        get(cst, path, headers=[(name, value)])
    again = get(cst, path)
    assert again.body == clean.body, again


def test_fat_get_body_never_changes_cached_body(cst, app):
    """A GET with a body ("fat GET"): the body is not part of the key, so
    it must not shape what others get."""
    path = fresh("/c/fatget")
    get(cst, path, body=b"x=evilbody")
    victim = get(cst, path)
    assert b"evilbody" not in victim.body, victim.body


# ----------------------------------------------- credentials and cookies

def test_authorization_response_not_served_to_others(cst, app):
    path = fresh("/c/authz")
    a = get(cst, path, headers=[("Authorization", "Bearer alicetoken")])
    assert a.status == 200 and b"auth=alicetoken" in a.body
    assert a.header("X-Cache") == "BYPASS"
    b = get(cst, path)
    assert b"alicetoken" not in b.body
    c = get(cst, path)
    assert b"alicetoken" not in c.body


def test_authorization_request_not_served_a_public_entry_key(cst, app):
    """An authorised request bypasses the cache in both directions."""
    path = fresh("/c/authz2")
    pub = get(cst, path)
    n = origin_count(app, path)
    a = get(cst, path, headers=[("Authorization", "Bearer bobtoken")])
    assert a.header("X-Cache") == "BYPASS" and b"auth=bobtoken" in a.body
    assert origin_count(app, path) == n + 1
    assert pub.body != a.body


def test_cookie_response_not_served_to_others(cst, app):
    """A page personalised from a cookie (and not marked private by the
    application) must not be served to a client without that cookie."""
    path = fresh("/c/me")
    a = get(cst, path, headers=[("Cookie", "session=alice")])
    assert a.status == 200 and b"user=alice" in a.body
    b = get(cst, path)
    assert b"alice" not in b.body, (
        "response to a request with Cookie served to another client "
        "(X-Cache %s): %r" % (b.header("X-Cache"), b.body))
    c = get(cst, path, headers=[("Cookie", "session=mallory")])
    assert b"alice" not in c.body


@pytest.mark.parametrize("flavour", ["setcookie", "varycookie"])
def test_cookie_marked_responses_not_stored(cst, app, flavour):
    """Set-Cookie, and a Vary on Cookie, keep a response out of the cache."""
    path = fresh("/c/%s" % flavour)
    a = get(cst, path, headers=[("Cookie", "session=carol")])
    assert b"user=carol" in a.body
    n = origin_count(app, path)
    b = get(cst, path)
    assert b"carol" not in b.body
    assert origin_count(app, path) == n + 1
    assert b.header("X-Cache") in ("MISS", "BYPASS")


# ------------------------------------------------------ path confusion

@pytest.mark.parametrize("suffix", [";.css", ";x=1.js", "/..%2fstatic.css",
                                    "%3b.css", "/.%2e/static.png",
                                    "/nonexistent.css"])
def test_path_confusion_does_not_store_private_page(cst, app, suffix):
    """Web cache deception: the victim is lured to /c/account<suffix>; the
    application serves the account page (Cache-Control: private); the
    attacker then asks for the same URL."""
    base = fresh("/c/account")
    target = base + suffix
    victim = get(cst, target, headers=[("Cookie", "session=victim")])
    assert victim.status == 200 and b"account of victim" in victim.body, \
        victim
    attacker = get(cst, target)
    assert b"victim" not in attacker.body, (
        "private page stored under %s: %r" % (target, attacker.body))
    assert attacker.header("X-Cache") in ("MISS", "BYPASS")


def test_dot_segments_do_not_alias_a_public_key(cst, app):
    """/c/account/..%2fstatic.css must not fill the entry of
    /c/static.css (or the other way round): keys are the raw target."""
    tag = next(_uniq)
    pub_path = "/c/static-%d.css" % tag
    get(cst, "/c/account-%d/..%%2fstatic-%d.css" % (tag, tag),
        headers=[("Cookie", "session=victim2")])
    pub = get(cst, pub_path)
    assert b"victim2" not in pub.body and b"account" not in pub.body
    assert pub.header("X-Cache") == "MISS"
