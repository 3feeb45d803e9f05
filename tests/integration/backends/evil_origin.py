"""Malicious origin responses, served through recorder.Recorder:

    rec = Recorder(handler=evil_origin.handler).start()

GET /evil/NAME answers the raw response EVIL[NAME]["resp"]; any other
target gets a normal 200 whose body is normal_body(target), so a client
that receives another request's answer (a desynchronised upstream
connection) sees the wrong body.  Most evil responses carry, after what a
correct parser would consume, a complete injected response whose body
contains "EVIL": it must never reach any client.

EVIL[NAME] also says what a client of stoa must see: "status" (None: the
response may be cut off, or 200/502), "body" (when present, exactly that),
"method" (the request method, default GET), "same_body_ok" (the injected
bytes may be part of this response's own body) and "wait" (seconds the test
waits before reusing connections, for responses that arrive in pieces).
"""

from recorder import CLOSE

INJECT = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"


def normal_body(target):
    return b"ok " + target + b"\n"


def normal(req):
    body = normal_body(req.target)
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def _h(head, body=b""):
    """A response with the given head lines (after the status line)."""
    return head + b"\r\n" + body


OK = b"HTTP/1.1 200 OK\r\n"

EVIL = {
    # invalid framing: 502, connection dropped
    "double_cl": dict(status=502, resp=_h(
        OK + b"Content-Length: 5\r\nContent-Length: 45\r\n", b"hello"
        + INJECT)),
    "cl_list": dict(status=502, resp=_h(OK + b"Content-Length: 5, 5\r\n",
                                        b"hello" + INJECT)),
    "cl_plus": dict(status=502, resp=_h(OK + b"Content-Length: +5\r\n",
                                        b"hello" + INJECT)),
    "cl_overflow": dict(status=502, resp=_h(
        OK + b"Content-Length: 99999999999999999999999\r\n", b"hello")),
    "te_and_cl": dict(status=502, resp=_h(
        OK + b"Transfer-Encoding: chunked\r\nContent-Length: 45\r\n",
        b"5\r\nhello\r\n0\r\n\r\n" + INJECT)),
    "te_gzip_chunked": dict(status=502, resp=_h(
        OK + b"Transfer-Encoding: gzip, chunked\r\n",
        b"5\r\nhello\r\n0\r\n\r\n" + INJECT)),
    # RFC 9112 §6.3: close-delimited, so the bytes are this response's
    # body (stoa may also refuse it: the coding cannot be passed on)
    "te_unknown": dict(status=None, same_body_ok=True, resp=[_h(
        OK + b"Transfer-Encoding: xchunked\r\n", b"hello" + INJECT), CLOSE]),
    # garbage heads
    "status_not_digits": dict(status=502, resp=_h(
        b"HTTP/1.1 2OO OK\r\nContent-Length: 5\r\n", b"hello" + INJECT)),
    "status_https": dict(status=502, resp=_h(
        b"HTTPS/1.1 200 OK\r\nContent-Length: 5\r\n", b"hello" + INJECT)),
    "status_icy": dict(status=502, resp=_h(
        b"ICY 200 OK\r\nContent-Length: 5\r\n", b"hello" + INJECT)),
    "status_http2": dict(status=502, resp=_h(
        b"HTTP/2.0 200 OK\r\nContent-Length: 5\r\n", b"hello" + INJECT)),
    "no_head": dict(status=502, resp=[b"EVIL body without a head\r\n\r\n",
                                      CLOSE]),
    "bare_lf_head": dict(status=502, resp=(
        b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello" + INJECT)),
    "bare_cr_head": dict(status=502, resp=_h(
        OK + b"X-A: a\rContent-Length: 5\r\n", b"hello" + INJECT)),
    "nul_in_header": dict(status=502, resp=_h(
        OK + b"X-A: a\x00b\r\nContent-Length: 5\r\n", b"hello" + INJECT)),
    "ctl_in_reason": dict(status=502, resp=_h(
        b"HTTP/1.1 200 O\x01K\r\nContent-Length: 5\r\n", b"hello" + INJECT)),
    "obs_fold": dict(status=502, resp=_h(
        OK + b"X-A: a\r\n b\r\nContent-Length: 5\r\n", b"hello" + INJECT)),
    "space_before_colon": dict(status=502, resp=_h(
        OK + b"Content-Length : 5\r\n", b"hello" + INJECT)),
    "oversized_headers": dict(status=502, resp=_h(
        OK + b"X-Big: " + b"x" * 20000 + b"\r\nContent-Length: 5\r\n",
        b"hello" + INJECT)),
    "too_many_headers": dict(status=502, resp=_h(
        OK + b"".join(b"X-%d: y\r\n" % i for i in range(400))
        + b"Content-Length: 5\r\n", b"hello" + INJECT)),
    "unsolicited_101": dict(status=502, resp=_h(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\n", INJECT)),
    # well-framed prefix, extra bytes after it: the prefix is served, the
    # connection is not reused
    "body_longer_than_cl": dict(status=200, body=b"hello", resp=_h(
        OK + b"Content-Length: 5\r\n", b"hello" + INJECT)),
    "body_longer_delayed": dict(status=200, body=b"hello", wait=0.5, resp=[
        _h(OK + b"Content-Length: 5\r\n", b"hello"), 0.15, INJECT]),
    "chunked_then_extra": dict(status=200, body=b"hello", resp=_h(
        OK + b"Transfer-Encoding: chunked\r\n",
        b"5\r\nhello\r\n0\r\n\r\n" + INJECT)),
    "no_content_with_body": dict(status=204, body=b"", resp=_h(
        b"HTTP/1.1 204 No Content\r\n", INJECT)),
    "not_modified_with_body": dict(status=304, body=b"", resp=_h(
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n",
        b"hello" + INJECT)),
    "head_with_body": dict(status=200, body=b"", method="HEAD", resp=_h(
        OK + b"Content-Length: 5\r\n", b"hello" + INJECT)),
    "interim_then_final": dict(status=200, body=b"hello", resp=(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
        b"Link: </a>\r\n\r\n" + _h(OK + b"Content-Length: 5\r\n", b"hello"))),
    "eof_body_claims_keepalive": dict(status=200, body=b"hello", resp=[
        _h(OK + b"Connection: keep-alive\r\n", b"hello"), CLOSE]),
    # broken bodies after a good head: the client is cut off
    "chunk_size_garbage": dict(status=None, resp=_h(
        OK + b"Transfer-Encoding: chunked\r\n", b"zz\r\n" + INJECT)),
    "chunk_size_overflow": dict(status=None, resp=_h(
        OK + b"Transfer-Encoding: chunked\r\n",
        b"fffffffffffffffffff\r\n" + INJECT)),
    "body_shorter_then_close": dict(status=None, resp=[_h(
        OK + b"Content-Length: 100\r\n", b"hello"), CLOSE]),
}


def handler(req):
    t = req.target
    if t.startswith(b"/evil/"):
        return EVIL[t[6:].decode()]["resp"]
    return normal(req)
