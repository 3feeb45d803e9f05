"""`make install` / `make uninstall` with DESTDIR, from the build tree.

Needs the build directory in STOA_BUILDDIR (make check sets it); skipped
without it.  One install into a scratch DESTDIR is shared by the tests of
this module; the last test uninstalls it and checks that no file is left
(automake leaves the empty directories, as every automake package does).

Paths are matched by their ending, so the checks hold for any --prefix
and --sysconfdir (make distcheck installs under its own prefix).
"""

import filecmp
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from helpers import SRCDIR

BUILDDIR = os.environ.get("STOA_BUILDDIR")

pytestmark = pytest.mark.skipif(
    not BUILDDIR or not os.path.exists(os.path.join(BUILDDIR or "",
                                                    "Makefile")),
    reason="STOA_BUILDDIR not set (make check sets it)")

# What the installation holds, by the end of each path.
EXPECTED = {
    "binary": "/sbin/stoa",
    "config": "/stoa/stoa.conf",
    "service": "/lib/systemd/system/stoa.service",
    "socket": "/lib/systemd/system/stoa.socket",
    "man8": "/share/man/man8/stoa.8",
    "man5": "/share/man/man5/stoa.conf.5",
    "logrotate": "/logrotate.d/stoa",
}


def make(target, destdir):
    env = dict(os.environ)
    # Not a sub-make of the make running the tests: no jobserver to share.
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(k, None)
    return subprocess.run(["make", "-C", BUILDDIR, target,
                           "DESTDIR=" + destdir],
                          capture_output=True, text=True, env=env,
                          timeout=300)


def files_under(root):
    out = []
    for d, _, fs in os.walk(root):
        for f in fs:
            out.append(os.path.join(d, f)[len(root):])
    return sorted(out)


@pytest.fixture(scope="module")
def installed():
    dest = tempfile.mkdtemp(prefix="stoa-destdir.")
    r = make("install", dest)
    if r.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        pytest.fail("make install failed:\n" + r.stdout[-3000:]
                    + r.stderr[-3000:])
    found = {}
    for rel in files_under(dest):
        for what, end in EXPECTED.items():
            if rel.endswith(end):
                assert what not in found, (what, found[what], rel)
                found[what] = rel
    yield dest, found
    shutil.rmtree(dest, ignore_errors=True)


def test_install_puts_every_file_in_place(installed):
    dest, found = installed
    assert set(found) == set(EXPECTED), (sorted(found), files_under(dest))
    assert sorted(found.values()) == files_under(dest)
    # One prefix: the binary, unit and man pages share it.
    prefix = found["binary"][:-len(EXPECTED["binary"])]
    for what in ("service", "socket", "man8", "man5"):
        assert found[what] == prefix + EXPECTED[what], found
    assert os.access(dest + found["binary"], os.X_OK)
    # Config and logrotate snippet share the sysconfdir.
    etc = found["config"][:-len(EXPECTED["config"])]
    assert found["logrotate"] == etc + EXPECTED["logrotate"], found


def test_installed_config_is_the_commented_default(installed):
    dest, found = installed
    path = dest + found["config"]
    assert filecmp.cmp(path, os.path.join(SRCDIR, "conf", "stoa.conf"),
                       shallow=False)
    with open(path) as f:
        text = f.read()
    assert text.count("\n#") > 20          # commented, key by key
    r = subprocess.run([dest + found["binary"], "-t", "-c", path],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_installed_binary_reads_the_installed_config(installed):
    dest, found = installed
    r = subprocess.run([dest + found["binary"], "-V"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0
    m = re.search(r"default config: (\S+)", r.stdout)
    assert m and m.group(1) == found["config"], (r.stdout, found["config"])


def test_installed_units_point_at_installed_files(installed):
    dest, found = installed
    with open(dest + found["service"]) as f:
        unit = f.read()
    assert not re.search(r"@[a-z_]+@", unit), "placeholder left in the unit"
    for key in ("ExecStartPre", "ExecStart"):
        m = re.search(r"(?m)^%s=(\S+)(?: -t)? -c (\S+)$" % key, unit)
        assert m, "%s= line" % key
        assert m.group(1) == found["binary"], (m.group(1), found["binary"])
        assert m.group(2) == found["config"], (m.group(2), found["config"])
    assert filecmp.cmp(dest + found["socket"],
                       os.path.join(SRCDIR, "systemd", "stoa.socket"),
                       shallow=False)


@pytest.mark.skipif(shutil.which("mandoc") is None,
                    reason="mandoc not installed")
@pytest.mark.parametrize("page", ["man8", "man5"])
def test_installed_man_pages_are_lint_clean(installed, page):
    dest, found = installed
    r = subprocess.run(["mandoc", "-Tlint", "-W", "warning",
                        dest + found[page]],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout + r.stderr == "", \
        r.stdout + r.stderr


def test_uninstall_leaves_no_file(installed):
    """Runs last in this module (pytest keeps file order)."""
    dest, _ = installed
    r = make("uninstall", dest)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert files_under(dest) == []
    links = [os.path.join(d, f) for d, ds, fs in os.walk(dest)
             for f in ds + fs if os.path.islink(os.path.join(d, f))]
    assert links == []
