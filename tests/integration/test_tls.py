"""HTTPS listeners (SPEC `tls { }`): TLS 1.2/1.3 termination, SNI over a
list of certificates, ALPN h2 and http/1.1, X-Forwarded-Proto, WebSocket
over TLS, certificate checks in `stoa -t` and on reload, and session
resumption with the ticket keys shared by the workers.

The certificates come from a throw-away CA made with the openssl CLI when
the module starts (helpers.Pki): a.test (the first certificate, also the
default) and the wildcard *.b.test.  Every client is bounded by a timeout.
"""

import asyncio
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import warnings

import pytest

from helpers import (STOA_BIN, Backend, Pki, WsBackend, conf_route, conf_tls,
                     conf_upstream, curl, free_port, pid_alive,
                     server_side_pid, wait_until)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="openssl CLI not installed")

needs_curl = pytest.mark.skipif(shutil.which("curl") is None,
                                reason="curl not installed")


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="stoa-pki.")
    p = Pki(d)
    p.a = p.issue("a", ["a.test"])
    p.b = p.issue("b", ["*.b.test"], cn="b.test")
    yield p
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def backend():
    b = Backend("aiohttp")
    yield b
    b.stop()


@pytest.fixture
def tls_stoa(stoa_factory, pki, backend):
    """make(pairs=None, http2=None, body=None, **kw) -> Stoa with a tls
    section (attribute tls_port) in front of backend."""
    def make(pairs=None, http2=None, body=None, **kw):
        port = free_port()
        if body is None:
            body = conf_upstream("app", [backend.addr]) + conf_route("/", "app")
        extra = conf_tls(port, pairs or [pki.a, pki.b], http2)
        s = stoa_factory(body, extra=extra, **kw)
        s.tls_port = port
        wait_until(lambda: _accepts(port), 5.0, what="the TLS listener")
        return s
    return make


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


def https(s, host="a.test", path="/hello"):
    return "https://%s:%d%s" % (host, s.tls_port, path)


def resolve(s, host="a.test"):
    return ["--resolve", "%s:%d:127.0.0.1" % (host, s.tls_port)]


def peer_cert(port, server_name, ctx=None):
    """(DER certificate, negotiated version, ALPN) of a new connection;
    server_name None sends no SNI.  The certificate is not verified."""
    if ctx is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), 5) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            return (s.getpeercert(binary_form=True), s.version(),
                    s.selected_alpn_protocol())


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def fingerprint(der):
    return hashlib.sha256(der).hexdigest()


# ------------------------------------------------------------- HTTP over TLS

@needs_curl
def test_curl_http11_and_http2_over_tls(tls_stoa, pki):
    s = tls_stoa()
    for flag, want in (("--http1.1", "1.1"), ("--http2", "2")):
        cp = curl(flag, "--cacert", pki.ca, *resolve(s), "-w",
                  "\n%{http_version} %{response_code}", https(s))
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout.decode() == "hello from aiohttp\n\n%s 200" % want, \
            (flag, cp.stdout)


@needs_curl
def test_sni_picks_exact_then_wildcard_certificate(tls_stoa, pki):
    s = tls_stoa()
    # curl verifies the chain and the name against the CA: a success is
    # the right certificate; the subject printed by -v says which.
    for host, cn in (("a.test", "a.test"), ("x.b.test", "b.test")):
        cp = curl("-v", "--http1.1", "--cacert", pki.ca, *resolve(s, host),
                  "-o", "/dev/null", https(s, host))
        assert cp.returncode == 0, cp.stderr
        m = re.search(r"subject: (.*)", cp.stderr.decode())
        assert m and m.group(1).strip() == "CN=%s" % cn, cp.stderr
    a, b = der_of(pki.a[0]), der_of(pki.b[0])
    assert peer_cert(s.tls_port, "a.test")[0] == a
    assert peer_cert(s.tls_port, "x.b.test")[0] == b
    assert peer_cert(s.tls_port, "Y.B.Test")[0] == b     # DNS: any case
    # one label only for a wildcard; no match or no SNI: the first one
    assert peer_cert(s.tls_port, "x.y.b.test")[0] == a
    assert peer_cert(s.tls_port, "b.test")[0] == a
    assert peer_cert(s.tls_port, "other.test")[0] == a
    assert peer_cert(s.tls_port, None)[0] == a


def test_sni_order_of_certificates_sets_the_default(tls_stoa, pki):
    s = tls_stoa(pairs=[pki.b, pki.a])
    assert peer_cert(s.tls_port, None)[0] == der_of(pki.b[0])
    assert peer_cert(s.tls_port, "a.test")[0] == der_of(pki.a[0])


def test_tls_12_and_13_only(tls_stoa, pki):
    s = tls_stoa()
    for v, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                    (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        ctx = pki.client_context()
        ctx.minimum_version = ctx.maximum_version = v
        _, got, alpn = peer_cert(s.tls_port, "a.test", ctx)
        assert got == name and alpn == "h2"
    # TLS 1.1 at the lowest client security level: the server refuses.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):
        peer_cert(s.tls_port, "a.test", ctx)


@needs_curl
def test_x_forwarded_proto_is_https_on_tls_only(tls_stoa, pki):
    s = tls_stoa()

    def proto(args, url):
        cp = curl(*args, url)
        assert cp.returncode == 0, cp.stderr
        import json
        hdrs = json.loads(cp.stdout)["headers"]
        return [v for k, v in hdrs if k.lower() == "x-forwarded-proto"]

    for flag in ("--http1.1", "--http2"):
        assert proto([flag, "--cacert", pki.ca] + resolve(s),
                     https(s, path="/echo-headers")) == ["https"]
    # a client's own X-Forwarded-Proto does not survive
    assert proto(["--http2", "--cacert", pki.ca, "-H",
                  "X-Forwarded-Proto: http"] + resolve(s),
                 https(s, path="/echo-headers")) == ["https"]
    assert proto(["--http1.1", "-H", "X-Forwarded-Proto: https"],
                 s.url("/echo-headers")) == ["http"]


@needs_curl
def test_http2_false_offers_only_http11(tls_stoa, pki):
    s = tls_stoa(http2=False)
    cp = curl("--http2", "--cacert", pki.ca, *resolve(s), "-w",
              "\n%{http_version}", https(s))
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.decode() == "hello from aiohttp\n\n1.1"
    assert peer_cert(s.tls_port, "a.test", pki.client_context())[2] \
        == "http/1.1"


def test_plain_http_on_the_tls_port_is_refused(tls_stoa):
    s = tls_stoa()
    with socket.create_connection(("127.0.0.1", s.tls_port), 5) as c:
        c.settimeout(5)
        c.sendall(b"GET /hello HTTP/1.1\r\nHost: a.test\r\n\r\n")
        data = b""
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                data += d
        except ConnectionResetError:
            pass
    assert b"hello from" not in data
    # and the listener still works
    assert peer_cert(s.tls_port, "a.test")[0]


# ------------------------------------------------------------------ WebSocket

def test_websocket_over_tls(stoa_factory, pki):
    import websockets
    wsb = WsBackend("aiohttp")
    try:
        port = free_port()
        body = (conf_upstream("w", [wsb.addr])
                + conf_route("/ws", "w", websocket="true"))
        stoa_factory(body, extra=conf_tls(port, [pki.a, pki.b]))
        wait_until(lambda: _accepts(port), 5.0, what="the TLS listener")
        ctx = pki.client_context(alpn=("http/1.1",))

        async def go():
            async with websockets.connect(
                    "wss://a.test:%d/ws" % port, ssl=ctx,
                    host="127.0.0.1", port=port,
                    server_hostname="a.test", ping_interval=None,
                    open_timeout=10, close_timeout=5,
                    max_size=None) as ws:
                await ws.send("hello over tls")
                t = await ws.recv()
                blob = os.urandom(300000)
                await ws.send(blob)
                b = await ws.recv()
                await ws.send("whoami")
                who = await ws.recv()
                return t, b == blob, who
        t, same, who = asyncio.run(asyncio.wait_for(go(), 20))
        assert t == "hello over tls" and same
        assert '"aiohttp"' in who
    finally:
        wsb.stop()


# ------------------------------------------------------- certificates, reload

def _conf_for(tmp, pairs, port=None):
    port = port or free_port()
    path = os.path.join(tmp, "t.conf")
    with open(path, "w") as f:
        f.write('workers = 1\nlisten = {"127.0.0.1:%d"}\n' % free_port()
                + conf_tls(port, pairs)
                + conf_upstream("app", ["127.0.0.1:9"])
                + conf_route("/", "app"))
    return path


def test_check_config_names_a_broken_certificate(pki, tmpdir_short):
    ok = _conf_for(tmpdir_short, [pki.a, pki.b])
    cp = subprocess.run([STOA_BIN, "-t", "-c", ok], capture_output=True,
                        timeout=20)
    assert cp.returncode == 0, cp.stderr
    missing = os.path.join(tmpdir_short, "missing.pem")
    junk = os.path.join(tmpdir_short, "junk.pem")
    with open(junk, "w") as f:
        f.write("not a certificate\n")
    for pairs, name in (([pki.a, (missing, pki.b[1])], missing),
                        ([(junk, pki.a[1])], junk),
                        ([(pki.a[0], pki.b[1])], pki.b[1]),
                        ([(pki.a[0], missing)], missing)):
        conf = _conf_for(tmpdir_short, pairs)
        cp = subprocess.run([STOA_BIN, "-t", "-c", conf], capture_output=True,
                            timeout=20)
        err = cp.stderr.decode().strip()
        assert cp.returncode == 1, (pairs, cp)
        assert len(err.splitlines()) == 1 and name in err, err


def _copy_pair(pair, dst_dir, name):
    cert = os.path.join(dst_dir, name + ".pem")
    key = os.path.join(dst_dir, name + ".key")
    shutil.copyfile(pair[0], cert)
    shutil.copyfile(pair[1], key)
    return cert, key


def _replace(src, dst):
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    os.rename(tmp, dst)


def test_reload_with_broken_certificate_keeps_the_old_one(tls_stoa, pki):
    d = tempfile.mkdtemp(prefix="stoa-cert.")
    try:
        live = _copy_pair(pki.a, d, "live")
        s = tls_stoa(pairs=[live])
        before = peer_cert(s.tls_port, "a.test")[0]
        assert before == der_of(pki.a[0])
        workers = set(s.worker_pids())
        with open(live[0] + ".tmp", "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\ngarbage\n"
                    "-----END CERTIFICATE-----\n")
        os.rename(live[0] + ".tmp", live[0])
        s.signal(signal.SIGHUP)
        wait_until(lambda: live[0] in s.error_text(), 10.0,
                   what="the reload error naming the certificate")
        line = [ln for ln in s.error_text().splitlines() if live[0] in ln]
        assert "cannot load certificate" in line[0], line
        time.sleep(0.3)
        assert set(s.worker_pids()) == workers
        assert s.running()
        ctx = pki.client_context()
        der, _, alpn = peer_cert(s.tls_port, "a.test", ctx)
        assert der == before and alpn == "h2"
        cp = curl("--http2", "--cacert", pki.ca, *resolve(s), https(s))
        assert cp.returncode == 0 and cp.stdout == b"hello from aiohttp\n"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_reload_with_new_certificate_serves_it(tls_stoa, pki):
    d = tempfile.mkdtemp(prefix="stoa-cert.")
    try:
        live = _copy_pair(pki.a, d, "live")
        s = tls_stoa(pairs=[live])
        ctx = pki.client_context(alpn=("http/1.1",))
        assert peer_cert(s.tls_port, "a.test", ctx)[0] == der_of(pki.a[0])
        # a request in flight across the reload completes
        old = ctx.wrap_socket(socket.create_connection(
            ("127.0.0.1", s.tls_port), 5), server_hostname="a.test")
        old.sendall(b"GET /slow?s=0.8 HTTP/1.1\r\nHost: a.test\r\n"
                    b"Connection: close\r\n\r\n")
        time.sleep(0.2)
        new = pki.issue("a2", ["a.test", "also.a.test"])
        _replace(new[1], live[1])
        _replace(new[0], live[0])
        s.reload()
        got = peer_cert(s.tls_port, "a.test", ctx)[0]
        assert got == der_of(new[0])
        assert fingerprint(got) != fingerprint(der_of(pki.a[0]))
        old.settimeout(10)
        data = b""
        while True:
            c = old.recv(65536)
            if not c:
                break
            data += c
        old.close()
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"slept\n")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------- session resumption

def test_session_tickets_resume_on_every_worker(tls_stoa, pki):
    s = tls_stoa(workers=2)
    workers = s.worker_pids()
    ctx = pki.client_context(alpn=("http/1.1",))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2    # session after handshake

    def once(session=None):
        raw = socket.create_connection(("127.0.0.1", s.tls_port), 5)
        c = ctx.wrap_socket(raw, server_hostname="a.test", session=session)
        c.sendall(b"GET /hello HTTP/1.1\r\nHost: a.test\r\n\r\n")
        c.settimeout(5)
        assert c.recv(65536).startswith(b"HTTP/1.1 200")
        who = server_side_pid(s.tls_port, c, workers)
        out = (c.session, c.session_reused, who)
        c.close()
        return out

    sess, reused, _ = once()
    assert not reused and sess is not None and sess.has_ticket
    seen = set()
    for _ in range(40):
        _, reused, who = once(sess)
        assert reused
        seen.add(who)
        if seen == set(workers):
            break
    assert seen == set(workers), "only worker(s) %s were reached" % seen
    # TLS 1.3 resumes too (its ticket comes after the handshake)
    ctx13 = pki.client_context(alpn=("http/1.1",))
    raw = socket.create_connection(("127.0.0.1", s.tls_port), 5)
    c = ctx13.wrap_socket(raw, server_hostname="a.test")
    c.sendall(b"GET /hello HTTP/1.1\r\nHost: a.test\r\n\r\n")
    c.settimeout(5)
    assert c.recv(65536).startswith(b"HTTP/1.1 200")
    sess13 = c.session
    c.close()
    raw = socket.create_connection(("127.0.0.1", s.tls_port), 5)
    c = ctx13.wrap_socket(raw, server_hostname="a.test", session=sess13)
    assert c.version() == "TLSv1.3" and c.session_reused
    c.close()
    for p in workers:
        assert pid_alive(p)
