"""Shared bits of the test backends (aio_app.py, tornado_app.py).

Both backends expose the same API so that a test can run against either;
see the module docstrings of the two apps.  Bodies for /big follow a fixed
pattern whose period (PERIOD) is a prime, so the client can verify any
length with zlib.crc32 without the data ever being held whole.
"""

import zlib

PERIOD = 65521
PATTERN = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(PERIOD))
_DOUBLE = PATTERN * 2
CHUNK = 256 * 1024


def pattern_chunks(n, size=CHUNK):
    """Yield the first n bytes of the repeating pattern in pieces."""
    off = 0
    while off < n:
        want = min(size, n - off)
        parts = []
        got = 0
        while got < want:
            start = (off + got) % PERIOD
            take = min(want - got, PERIOD * 2 - start)
            parts.append(_DOUBLE[start:start + take])
            got += take
        yield b"".join(parts)
        off += want


def pattern_crc(n):
    crc = 0
    for c in pattern_chunks(n, 1 << 20):
        crc = zlib.crc32(c, crc)
    return crc
