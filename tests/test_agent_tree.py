"""The agent's tree walk under the real MicroPython equals the host encoder byte for byte."""

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from image_rewriter.tree_manifest import tree_manifest
from initrd_agent import runtime_bundle as rb

ROOT = Path(__file__).resolve().parent.parent
INCLUDES = ["/usr", "/etc/os-release", "/etc/missing"]
EXCLUDES = ["**/__pycache__", "/usr/share/doc"]

SCRIPT = """
import sys
sys.path.insert(0, %(root)r)
sys.path.insert(0, %(agent)r)
import tree, mbedhash
from shared_spec.manifest import encode_manifest
entries, nbytes = tree.walk(%(tree)r, %(inc)r, %(exc)r,
                            ['security.capability', 'security.ima'], mbedhash.provider())
open(%(out)r, 'wb').write(encode_manifest(entries))
"""


@pytest.fixture(scope="module")
def bundle() -> rb.RuntimeBundle:
    try:
        return rb.ensure_bundle()
    except rb.RuntimeBundleError as e:
        pytest.skip("MicroPython bundle unavailable: %s" % e)


def _make_tree(base: Path) -> None:
    usr = base / "usr"
    (usr / "bin").mkdir(parents=True)
    (base / "etc").mkdir()
    (base / "etc" / "os-release").write_text("ID=test\n")
    (usr / "bin" / "a").write_bytes(b"abc")
    os.link(usr / "bin" / "a", usr / "bin" / "hardlink")
    os.symlink("a", usr / "bin" / "link")
    os.symlink("loop2", usr / "loop1")
    os.symlink("loop1", usr / "loop2")
    os.symlink("/nonexistent", usr / "dangling")
    os.mkfifo(usr / "fifo")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(usr / "sock"))
    s.close()
    (usr / os.fsdecode(b"bad\xff\xfe name")).write_bytes(b"x" * 5000)
    with open(usr / "sparse", "wb") as f:
        f.truncate(300 << 20)
    (usr / "big").write_bytes(os.urandom((1 << 20) * 3 + 17))
    (usr / "share" / "doc").mkdir(parents=True)
    (usr / "share" / "doc" / "excluded").write_text("not measured")
    (usr / "lib" / "__pycache__").mkdir(parents=True)
    (usr / "lib" / "__pycache__" / "x.pyc").write_text("not measured")
    (usr / "setuid").write_bytes(b"#!/bin/sh\n")
    os.chmod(usr / "setuid", 0o4755)
    if os.geteuid() == 0:
        os.mknod(usr / "null", 0o600 | 0o020000, os.makedev(1, 3))
        os.chown(usr / "bin" / "a", 1234, 5678, follow_symlinks=False)
    if shutil.which("setfattr"):
        subprocess.run(["setfattr", "-n", "security.ima", "-v", "0x0403aabb",
                        str(usr / "bin" / "a")], check=False)


def test_agent_tree_manifest_is_byte_identical(bundle: rb.RuntimeBundle, tmp_path: Path) -> None:
    tree = tmp_path / "root"
    _make_tree(tree)
    out = tmp_path / "agent.manifest"
    script = tmp_path / "walk.py"
    script.write_text(SCRIPT % {"root": str(ROOT), "agent": str(ROOT / "initrd_agent" / "agent"),
                                "tree": os.fsencode(tree), "inc": INCLUDES, "exc": EXCLUDES,
                                "out": str(out)})
    subprocess.run([*bundle.interpreter, str(script)], check=True, timeout=300)
    host = tree_manifest(tree, INCLUDES, EXCLUDES)
    agent = out.read_bytes()
    assert agent == host
    text = host.decode("ascii")
    assert "/usr/bad%FF%FE%20name f" in text
    assert "/usr/loop1 l 0777" in text and "/etc/missing x" in text
    assert "/usr/share/doc" not in text and "__pycache__" not in text
    assert "/usr/setuid f 4755" in text
    if os.geteuid() == 0:
        assert "/usr/null c 0600 0 0 - 1:3" in text
