"""Helpers for the stoa integration tests: ports, processes, raw HTTP.

Everything here is bounded: every socket has a timeout, every polling loop
a deadline.  Processes are started in their own session so that a final
sweep can reach every process a test started (master and workers) by the
group id of the process the test itself spawned.
"""

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("STOA_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
STOA_BIN = os.environ.get("STOA_BIN") or os.path.join(SRCDIR, "src", "stoa")
PYTHON = sys.executable or "/usr/bin/python3"
BACKENDS = os.path.join(HERE, "backends")
sys.path.insert(0, BACKENDS)
from _common import pattern_chunks, pattern_crc, PERIOD  # noqa: E402,F401

# Lines that must never appear in a stoa log or on its stderr: assertion
# failures, sanitizer reports, and a worker that crashed (the master would
# replace it silently; SIGKILL is left out, tests send it on purpose).
BAD_LOG = re.compile(r"assertion failed|AddressSanitizer|LeakSanitizer|"
                     r"UndefinedBehaviorSanitizer|runtime error:|"
                     r"signal (4|6|7|8|11)\b|SIGSEGV|SIGABRT|SIGBUS")

WORKERS = 2


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_accepts(port, timeout=0.5):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(pred, timeout, interval=0.02, what="condition"):
    """Poll pred() until it returns a true value; return it, or raise."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, what))
        time.sleep(interval)


def stop_process(proc, sig=signal.SIGTERM, timeout=10.0):
    """Send sig to proc, wait up to timeout, then SIGKILL.  Returns
    (returncode, killed) where killed says SIGKILL was needed."""
    if proc.poll() is not None:
        return proc.returncode, False
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout), False
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5), True


def sweep_group(pgid):
    """SIGKILL whatever is left in process group pgid (a group we created)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def group_members(pgid):
    """PIDs of live (non-zombie) processes whose process group is pgid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(d))
    return out


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def vm_rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return False
    return st[st.rfind(")") + 2:].split()[0] != "Z"


# ---------------------------------------------------------------- backends

class Backend:
    """A test backend (aiohttp or tornado) in a subprocess."""

    SCRIPTS = {"aiohttp": "aio_app.py", "tornado": "tornado_app.py"}

    def __init__(self, kind="aiohttp"):
        self.kind = kind
        script = os.path.join(BACKENDS, self.SCRIPTS[kind])
        self.proc = subprocess.Popen(
            [PYTHON, script, "--port", "0"], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            start_new_session=True)
        self.port = None
        try:
            self.port = self._read_port(15.0)
            wait_until(lambda: port_accepts(self.port), 5.0,
                       what="%s backend to accept" % kind)
        except BaseException:
            self.stop()
            raise

    def _read_port(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s backend did not start" % self.kind)
            r, _, _ = select.select([fd], [], [], left)
            if r:
                data = os.read(fd, 4096)
                if not data:
                    raise AssertionError("%s backend exited at start (rc %s)"
                                         % (self.kind, self.proc.poll()))
                buf += data
        m = re.match(rb"PORT (\d+)", buf)
        assert m, buf
        return int(m.group(1))

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def get_json(self, path):
        with socket.create_connection(("127.0.0.1", self.port), 5) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: direct\r\n"
                      b"Connection: close\r\n\r\n" % path.encode())
            resp = RawConn(s).read_response()
        assert resp is not None and resp.status == 200, resp
        return json.loads(resp.body)

    def conn_count(self):
        return self.get_json("/conn-count")["count"]

    def seen(self):
        """[[method, target], ...] of requests this backend received."""
        return self.get_json("/requests")

    def stop(self):
        rc, _ = stop_process(self.proc, signal.SIGTERM, 5.0)
        sweep_group(self.proc.pid)
        if self.proc.stdout:
            self.proc.stdout.close()
        return rc


# ------------------------------------------------------------------ raw HTTP

class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers          # [(name, value)] as received
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers,
                                        self.body[:200])


class RawConn:
    """Read HTTP/1.1 responses from a connected socket (with a timeout)."""

    def __init__(self, sock, timeout=10.0):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def _fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError("connection closed mid-line: %r" % self.buf)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("connection closed mid-body")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head_only=False, method="GET"):
        """One response; None when the peer closed before sending a byte."""
        while not self.buf:
            if not self._fill():
                return None
        while True:
            raw = []
            line = self._line()
            raw.append(line)
            m = re.match(rb"HTTP/1\.[01] (\d{3}) ?(.*)", line)
            if not m:
                raise ValueError("bad status line %r" % line)
            status = int(m.group(1))
            headers = []
            while True:
                line = self._line()
                raw.append(line)
                if not line:
                    break
                k, _, v = line.partition(b":")
                headers.append((k.decode("latin-1"),
                                v.strip().decode("latin-1")))
            if 100 <= status < 200 and status != 101:
                continue
            break
        resp = Response(status, m.group(2).decode("latin-1"), headers, b"",
                        b"\r\n".join(raw))
        if head_only or method == "HEAD" or status in (204, 304):
            return resp
        te = resp.header("Transfer-Encoding")
        cl = resp.header("Content-Length")
        if te is not None and "chunked" in te.lower():
            parts = []
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                parts.append(self._exact(size))
                self._exact(2)
            resp.body = b"".join(parts)
        elif cl is not None:
            resp.body = self._exact(int(cl))
        else:
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def closed_within(self, timeout):
        """True when the peer closes (EOF or reset) within timeout and sends
        no further bytes."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        if data:
            self.buf += data
            return False
        return True


def raw_request(port, data, timeout=10.0, method="GET"):
    """Send bytes on a new connection, read one response (None when closed
    without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.sendall(data)
        return RawConn(s, timeout).read_response(method=method)


def conf_upstream(name, servers, **opts):
    srv = ", ".join('"%s"' % s for s in servers)
    lines = ["upstream %s {" % name, "  server = {%s}" % srv]
    for k, v in opts.items():
        lines.append("  %s = %s" % (k, v))
    lines.append("}")
    return "\n".join(lines) + "\n"


def conf_route(prefix, upstream, host=None, **opts):
    lines = ["route %s {" % prefix]
    if host is not None:
        lines.append('  host = "%s"' % host)
    lines.append("  upstream = %s" % upstream)
    for k, v in opts.items():
        lines.append("  %s = %s" % (k, v))
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------- WebSocket

class WsBackend(Backend):
    """A WebSocket echo backend (backends/ws_*.py, API in ws_aiohttp.py):
    kind is "aiohttp", "tornado" or "starlette"."""

    SCRIPTS = {"aiohttp": "ws_aiohttp.py", "tornado": "ws_tornado.py",
               "starlette": "ws_starlette.py"}

    def ws_url(self, path="/ws"):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def last_close(self):
        return self.get_json("/last-close")

    def ws_count(self):
        return self.get_json("/ws-count")


WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="      # RFC 6455 §1.3 example


def ws_upgrade_request(path, host="stoa.test", key=WS_KEY, extra=""):
    """The bytes of a client Upgrade request (RFC 6455 §4.1)."""
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: 13\r\n%s\r\n"
            % (path, host, key, extra)).encode("latin-1")


def ws_frame(opcode, payload, fin=True, mask=b"\x11\x22\x33\x44"):
    """One client frame (masked unless mask is None)."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        head.append(bit | n)
    elif n < 65536:
        head.append(bit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(bit | 127)
        head += n.to_bytes(8, "big")
    if mask is None:
        return bytes(head) + payload
    m = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")
            ).to_bytes(n, "big") if n else b""
    return bytes(head) + mask + body


class RawWs:
    """A WebSocket client on a plain socket, for tests that must control
    exactly when it reads (backpressure) or send odd requests.  Only what
    the tests need: unfragmented frames from the server, no extensions."""

    def __init__(self, port, path="/ws", timeout=10.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.conn = RawConn(self.sock, timeout)
        self.sock.sendall(ws_upgrade_request(path))
        self.response = self.conn.read_response(head_only=True)

    def send(self, payload, opcode=None):
        if opcode is None:
            opcode = 1 if isinstance(payload, str) else 2
        if isinstance(payload, str):
            payload = payload.encode()
        self.sock.sendall(ws_frame(opcode, payload))

    def recv(self):
        """(opcode, payload) of the next frame."""
        b0, b1 = self.conn._exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self.conn._exact(2), "big")
        elif n == 127:
            n = int.from_bytes(self.conn._exact(8), "big")
        mask = self.conn._exact(4) if b1 & 0x80 else None
        data = self.conn._exact(n)
        if mask is not None:
            m = (mask * (n // 4 + 1))[:n]
            data = (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")
                    ).to_bytes(n, "big") if n else b""
        return b0 & 0x0F, data

    def close(self):
        self.sock.close()


# ------------------------------------------------------------ cache, admin

class CacheOrigin(Backend):
    """An origin that counts its own hits (backends/cache_app.py, API in
    its docstring): kind is "aiohttp" or "tornado"."""

    SCRIPTS = {"aiohttp": "cache_app.py", "tornado": "cache_tornado.py"}

    def hits(self, path=None, target=None):
        """Requests the origin saw for path (any query), for the exact
        target path?query, or (neither) on every /c/ path."""
        from urllib.parse import quote
        if target is not None:
            q = "?target=" + quote(target, safe="")
        elif path is not None:
            q = "?path=" + quote(path, safe="")
        else:
            q = ""
        return self.get_json("/hits" + q)["count"]

    def log(self):
        return self.get_json("/log")

    def _post(self, target):
        resp = raw_request(self.port, b"POST %s HTTP/1.1\r\n"
                           b"Host: direct\r\nContent-Length: 0\r\n"
                           b"Connection: close\r\n\r\n" % target.encode(),
                           5.0)
        assert resp is not None and resp.status == 204, resp

    def set_fail(self, on):
        """From now on every /c/ request answers 503 (on) or not."""
        self._post("/fail?on=%d" % (1 if on else 0))

    def reset(self):
        """Forget every count and the fail mode (a shared origin between
        two tests)."""
        self._post("/reset")

    def alive(self):
        return self.proc.poll() is None


def conf_cache_route(prefix, upstream, ttl=None, host=None, **opts):
    """A route section with a cache section (ttl: the route's ttl)."""
    lines = ["route %s {" % prefix]
    if host is not None:
        lines.append('  host = "%s"' % host)
    lines.append("  upstream = %s" % upstream)
    for k, v in opts.items():
        lines.append("  %s = %s" % (k, v))
    lines.append("  cache { %s}" % ("ttl = %s " % ttl if ttl else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def conf_cache(**opts):
    """The top-level cache section."""
    return "cache { %s }" % " ".join("%s = %s" % kv for kv in opts.items())


def http_request(port, method, target, host="cache.test", headers=(),
                 body=None, timeout=10.0):
    """One request on a new connection (Connection: close); the Response
    has an extra attribute `elapsed` (seconds until it was read whole)."""
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: %s" % host]
    lines += ["%s: %s" % kv for kv in headers]
    if body is not None:
        lines.append("Content-Length: %d" % len(body))
    lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
    t0 = time.monotonic()
    resp = raw_request(port, data, timeout, method=method)
    assert resp is not None, "%s %s: closed without a response" % (
        method, target)
    resp.elapsed = time.monotonic() - t0
    return resp


def http_get(port, target, **kw):
    return http_request(port, "GET", target, **kw)


def admin_request(port, method, target, timeout=10.0):
    return http_request(port, method, target, host="admin", timeout=timeout)


def admin_stats(port):
    resp = admin_request(port, "GET", "/stats")
    assert resp.status == 200, resp
    return resp.json()


def prom_samples(text):
    """{(name, frozenset(label items)): value} of a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$', line)
        assert m, "bad metrics line %r" % line
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]'
                                      r'|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def server_side_pid(server_port, client_sock, pids):
    """Which of pids holds the server end of client_sock, an established
    connection to 127.0.0.1:server_port (found via /proc/net/tcp and the
    processes' fd tables); None when none does."""
    lport = client_sock.getsockname()[1]
    want_local = "0100007F:%04X" % server_port
    want_rem = "0100007F:%04X" % lport
    inode = None
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == want_local and fields[2] == want_rem:
                inode = fields[9]
                break
    if inode is None:
        return None
    target = "socket:[%s]" % inode
    for pid in pids:
        d = "/proc/%d/fd" % pid
        try:
            fds = os.listdir(d)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(os.path.join(d, fd)) == target:
                    return pid
            except OSError:
                continue
    return None


# ------------------------------------------------------------- TLS, HTTP/2
# (test_tls.py, test_h2.py, test_h2_floods.py)

def run_openssl(*args, timeout=30.0, stdin=None):
    """Run the openssl CLI; return its CompletedProcess (never raises on a
    non-zero exit)."""
    return subprocess.run(["openssl"] + list(args), capture_output=True,
                          timeout=timeout, input=stdin)


class Pki:
    """A throw-away CA and server certificates made with the openssl CLI
    (EC P-256, valid two days) in directory; issue() adds certificates."""

    def __init__(self, directory):
        self.dir = directory
        self.ca = os.path.join(directory, "ca.pem")
        self.ca_key = os.path.join(directory, "ca.key")
        self._check(run_openssl(
            "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
            "-subj", "/CN=stoa test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign"))

    @staticmethod
    def _check(cp):
        if cp.returncode != 0:
            raise AssertionError("openssl failed: %s" % cp.stderr.decode(
                "utf-8", "replace"))

    def issue(self, name, dns, cn=None):
        """A server certificate for the DNS names dns (list), signed by the
        CA, written as name.pem and name.key; returns (cert, key)."""
        cert = os.path.join(self.dir, name + ".pem")
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        ext = os.path.join(self.dir, name + ".ext")
        self._check(run_openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", key, "-out", csr,
            "-subj", "/CN=%s" % (cn or dns[0])))
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n"
                    % ",".join("DNS:" + d for d in dns))
        self._check(run_openssl(
            "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
            "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext))
        return cert, key

    def client_context(self, alpn=("h2", "http/1.1")):
        """An ssl.SSLContext that trusts only this CA."""
        import ssl
        ctx = ssl.create_default_context(cafile=self.ca)
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        return ctx


def conf_tls(port, pairs, http2=None):
    """A tls section listening on 127.0.0.1:port; pairs: [(cert, key)]."""
    certs = ", ".join('"%s"' % c for c, _ in pairs)
    keys = ", ".join('"%s"' % k for _, k in pairs)
    s = ('tls {\n  listen = {"127.0.0.1:%d"}\n  certificate = {%s}\n'
         '  key = {%s}\n' % (port, certs, keys))
    if http2 is not None:
        s += "  http2 = %s\n" % ("true" if http2 else "false")
    return s + "}\n"


def curl(*args, timeout=30.0):
    """Run curl -sS with --max-time; returns the CompletedProcess."""
    return subprocess.run(["curl", "-sS", "--max-time", "%g" % timeout]
                          + list(args), capture_output=True,
                          timeout=timeout + 10)


class H2Client:
    """A blocking HTTP/2 client on the h2 library: cleartext prior
    knowledge (ctx None) or TLS with ALPN h2 (ctx from Pki.client_context,
    server_name for SNI).  Every read has a deadline."""

    def __init__(self, port, ctx=None, server_name="a.test", timeout=10.0,
                 authority=None):
        import h2.config
        import h2.connection
        self.timeout = timeout
        sock = socket.create_connection(("127.0.0.1", port), timeout)
        if ctx is not None:
            sock = ctx.wrap_socket(sock, server_hostname=server_name)
            assert sock.selected_alpn_protocol() == "h2", \
                sock.selected_alpn_protocol()
        self.sock = sock
        self.scheme = "https" if ctx is not None else "http"
        self.authority = authority or "%s:%d" % (server_name, port)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True,
                                      header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(16 << 20)
        self.sock.sendall(self.conn.data_to_send())
        self.closed = None           # ConnectionTerminated event, or "EOF"

    def start(self, path, method="GET", headers=(), body=None, more=False):
        """Open a stream; returns its id (the body is sent whole: keep it
        within the peer's window).  more: leave the stream open for
        DATA the caller sends itself (self.conn)."""
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", self.scheme),
                (":path", path), (":authority", self.authority)]
        hdrs += list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=body is None
                               and not more)
        if body is not None:
            step = self.conn.max_outbound_frame_size
            for off in range(0, len(body), step):
                self.conn.send_data(sid, body[off:off + step])
            self.conn.end_stream(sid)
        self.sock.sendall(self.conn.data_to_send())
        return sid

    def wait(self, sids):
        """{sid: (status, {header: value}, body) or ("reset", code)} once
        every stream in sids ended (AssertionError on timeout or close)."""
        import h2.events
        want = set(sids)
        out, heads, bodies = {}, {}, {}
        deadline = time.monotonic() + self.timeout
        while not want <= set(out):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("h2: streams %s unfinished"
                                     % sorted(want - set(out)))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = self.closed or "EOF"
                raise AssertionError("h2: connection closed (%s), streams %s "
                                     "unfinished" % (self.closed,
                                                     sorted(want - set(out))))
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    heads[ev.stream_id] = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    bodies.setdefault(ev.stream_id, []).append(ev.data)
                    self.conn.acknowledge_received_data(
                        ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    h = heads.get(ev.stream_id, {})
                    out[ev.stream_id] = (int(h.get(":status", 0)), h,
                                         b"".join(bodies.pop(ev.stream_id,
                                                             [])))
                elif isinstance(ev, h2.events.StreamReset):
                    out[ev.stream_id] = ("reset", ev.error_code)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.closed = ev
            pending = self.conn.data_to_send()
            if pending:
                self.sock.sendall(pending)
        return out

    def request(self, path, **kw):
        """(status, headers, body) of one request."""
        sid = self.start(path, **kw)
        return self.wait([sid])[sid]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
