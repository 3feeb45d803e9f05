"""The listening sockets keep the master's backlog in the workers.

Regression: the workers once handed the inherited socket to libevent with
backlog -1, which made it call listen(fd, 128) again; a burst of connects
then overflowed the accept queue and the kernel completed the excess with
SYN cookies that never reached accept().  The backlog must be the master's
(4096, or net.core.somaxconn when that is smaller)."""

import shutil
import subprocess

import pytest

from helpers import conf_route, conf_upstream


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss not installed")
def test_listen_backlog_is_not_reset_by_workers(aio, stoa_factory):
    st = stoa_factory(conf_upstream("a", [aio.addr]) + conf_route("/", "a"))
    with open("/proc/sys/net/core/somaxconn") as f:
        want = min(4096, int(f.read()))
    out = subprocess.run(["ss", "-Hltn", "sport = :%d" % st.port],
                         capture_output=True, text=True, timeout=10).stdout
    lines = [ln.split() for ln in out.splitlines() if ln.strip()]
    assert lines, out
    # State Recv-Q Send-Q Local Peer: for a listener Send-Q is the backlog
    assert int(lines[0][2]) == want, out
