"""A raw recording origin for the hostile-input tests.

    rec = Recorder().start()     # in-process, one thread per connection
    ... rec.port, rec.addr ...
    rec.stop()

Every byte received on every accepted connection is appended, unchanged,
to that connection's record (Recorder.conns[i].data) before anything else
happens, so the tests can assert on exactly what stoa sent upstream.  The
recorder parses just enough to answer: a head up to CRLF CRLF, then a body
framed by Content-Length (the first one) or by chunked (when
Transfer-Encoding mentions it).  Each complete request is appended to
Recorder.requests as a Request and answered by the handler (default: a
small fixed 200 whose body is "rec N\\n", N the request number).  Anything
it cannot parse ends the connection; the bytes are still recorded.

Options:
  handler(req) -> answer    the raw response for a request: bytes, or an
                            iterable of bytes (sent as they come), numbers
                            (pause that many seconds), CLOSE (end the
                            connection) or RESET (end it with a TCP reset)
  close_after=True          close each connection after its first response
                            (without saying Connection: close)
  close_delay=SECS          ... that long after the response was sent
"""

import socket
import struct
import threading
import time


# Pieces a handler may yield besides bytes and pauses (seconds).
CLOSE = object()        # close the connection (FIN)
RESET = object()        # close it with a TCP reset (SO_LINGER 0)


class Request:
    def __init__(self, conn_no, method, target, version, headers, body):
        self.conn_no = conn_no
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers          # [(name, value)] as bytes
        self.body = body

    def header(self, name, default=None):
        name = name.lower().encode() if isinstance(name, str) else name.lower()
        for k, v in self.headers:
            if k.strip().lower() == name:
                return v.strip()
        return default

    def __repr__(self):
        return "<Request %r %r %r>" % (self.method, self.target,
                                       self.body[:80])


class ConnRecord:
    def __init__(self, no):
        self.no = no
        self.data = bytearray()
        self.closed = False
        self.t_open = time.monotonic()


def fixed_response(req, n):
    body = b"rec %d\n" % n
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


class _Incomplete(Exception):
    pass


class _Bad(Exception):
    pass


def _parse_chunked(buf):
    """(body, bytes used) of a complete chunked body at buf[0:]."""
    pos = 0
    out = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            raise _Incomplete()
        line = buf[pos:eol].split(b";")[0].strip()
        try:
            size = int(line, 16)
        except ValueError:
            raise _Bad()
        pos = eol + 2
        if size == 0:
            while True:                     # trailers up to an empty line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    raise _Incomplete()
                empty = eol == pos
                pos = eol + 2
                if empty:
                    return b"".join(out), pos
        if len(buf) < pos + size + 2:
            raise _Incomplete()
        out.append(bytes(buf[pos:pos + size]))
        pos += size + 2


def parse_one(buf):
    """(method, target, version, headers, body, used) of the first request
    in buf; raises _Incomplete or _Bad."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 1 << 20:
            raise _Bad()
        raise _Incomplete()
    lines = bytes(buf[:end]).split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise _Bad()
    method, target, version = parts
    headers = []
    for ln in lines[1:]:
        k, sep, v = ln.partition(b":")
        if not sep:
            raise _Bad()
        headers.append((k, v))
    rest = buf[end + 4:]
    te = b",".join(v for k, v in headers
                   if k.strip().lower() == b"transfer-encoding")
    cls = [v for k, v in headers if k.strip().lower() == b"content-length"]
    if b"chunked" in te.lower():
        body, used = _parse_chunked(rest)
    elif cls:
        try:
            n = int(cls[0].strip())
        except ValueError:
            raise _Bad()
        if len(rest) < n:
            raise _Incomplete()
        body, used = bytes(rest[:n]), n
    else:
        body, used = b"", 0
    return method, target, version, headers, body, end + 4 + used


class Recorder:
    def __init__(self, handler=None, close_after=False, close_delay=0.0):
        self.handler = handler
        self.close_after = close_after
        self.close_delay = close_delay
        self.lock = threading.Lock()
        self.conns = []
        self.requests = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        self.socks = []

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        return self

    def stop(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- what was received ----------------------------------------------
    def all_bytes(self):
        with self.lock:
            return b"".join(bytes(c.data) for c in self.conns)

    def nbytes(self):
        with self.lock:
            return sum(len(c.data) for c in self.conns)

    def mark(self):
        """A snapshot of how much each connection had received; see
        since()."""
        with self.lock:
            return [len(c.data) for c in self.conns]

    def since(self, mark):
        """[bytes] received after mark, one item per connection that got
        any (a connection opened later counts from its first byte)."""
        out = []
        with self.lock:
            for i, c in enumerate(self.conns):
                start = mark[i] if i < len(mark) else 0
                if len(c.data) > start:
                    out.append(bytes(c.data[start:]))
        return out

    def requests_since(self, n):
        with self.lock:
            return list(self.requests[n:])

    def nrequests(self):
        with self.lock:
            return len(self.requests)

    # -- serving ---------------------------------------------------------
    def _accept_loop(self):
        while not self.stopping:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                rec = ConnRecord(len(self.conns))
                self.conns.append(rec)
                self.socks.append(s)
            threading.Thread(target=self._serve, args=(s, rec),
                             daemon=True).start()

    def _answer(self, req):
        if self.handler is not None:
            return self.handler(req)
        return fixed_response(req, len(self.requests))

    def _send(self, s, answer):
        """Send a handler's answer; False when the connection must end."""
        if isinstance(answer, (bytes, bytearray)):
            s.sendall(answer)
            return True
        for piece in answer:
            if piece is CLOSE:
                return False
            if piece is RESET:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
                return False
            if isinstance(piece, (int, float)):
                time.sleep(piece)
            else:
                s.sendall(piece)
        return True

    def _serve(self, s, rec):
        buf = bytearray()
        s.settimeout(60)
        try:
            while True:
                try:
                    data = s.recv(65536)
                except (OSError, socket.timeout):
                    return
                if not data:
                    return
                with self.lock:
                    rec.data += data
                buf += data
                while buf:
                    try:
                        m, t, v, h, body, used = parse_one(buf)
                    except _Incomplete:
                        break
                    except _Bad:
                        return
                    del buf[:used]
                    req = Request(rec.no, m, t, v, h, body)
                    with self.lock:
                        self.requests.append(req)
                    try:
                        if not self._send(s, self._answer(req)):
                            return
                    except OSError:
                        return
                    if self.close_after:
                        time.sleep(self.close_delay)
                        return
        finally:
            rec.closed = True
            try:
                s.close()
            except OSError:
                pass
            with self.lock:
                if s in self.socks:
                    self.socks.remove(s)
