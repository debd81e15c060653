"""A manifest read before the rewriter writes, brought up to date by reading again only the
written paths, equals a full read of the final file system, byte for byte.

Two real ext4 file systems are made with ``mkfs.ext4 -d``: one from a tree, one from the
same tree after the changes an install makes (new directories several levels deep, a file
replaced, an owned directory removed, a written path outside the includes, an absent
include created). Both are read with the native debugfs reader.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from image_rewriter.manifest_delta import merge_reread, reread_roots
from image_rewriter.partitions import Partition
from image_rewriter.rootfs_reader import native_manifest
from image_rewriter.tree_manifest import tree_manifest
from shared_spec.manifest import ManifestEntry, encode_manifest, parse_manifest

MiB = 1 << 20
INCLUDES = ["/usr", "/etc/os-release", "/etc/cvmchain.conf"]
EXCLUDES = ["**/*.pyc"]

for _tool in ("mkfs.ext4", "debugfs", "blkid"):
    if shutil.which(_tool) is None and not Path("/usr/sbin", _tool).exists():
        pytest.skip("%s is not installed" % _tool, allow_module_level=True)


def _tree(base: Path) -> None:
    (base / "usr/bin").mkdir(parents=True)
    (base / "usr/lib/owned/sub").mkdir(parents=True)
    (base / "usr/share/hooks").mkdir(parents=True)
    (base / "etc").mkdir()
    (base / "etc/os-release").write_text("ID=test\n")
    (base / "usr/bin/tool").write_bytes(b"tool v1\n")
    (base / "usr/lib/owned/sub/old").write_bytes(b"old agent\n")
    (base / "usr/share/hooks/other").write_bytes(b"someone else's hook\n")
    (base / "usr/share/hooks/x.pyc").write_bytes(b"excluded\n")


def _install(base: Path) -> list[str]:
    """The changes an install makes to the tree; the paths it wrote or removed."""
    shutil.rmtree(base / "usr/lib/owned")
    (base / "usr/lib/owned/new/deeper").mkdir(parents=True)
    (base / "usr/lib/owned/new/deeper/agent").write_bytes(b"new agent\n")
    os.chmod(base / "usr/lib/owned/new/deeper/agent", 0o700)
    (base / "usr/local/fresh/a/b").mkdir(parents=True)
    (base / "usr/local/fresh/a/b/file").write_bytes(b"in new directories\n")
    (base / "usr/share/hooks/cvmchain").write_bytes(b"#!/bin/sh\n")
    (base / "usr/bin/tool").write_bytes(b"tool v2, longer\n")
    (base / "etc/cvmchain.conf").write_text("mode=tree\n")
    (base / "etc/unmeasured").mkdir()
    (base / "etc/unmeasured/file").write_text("not in the includes\n")
    return ["/usr/lib/owned", "/usr/lib/owned/new/deeper/agent", "/usr/local/fresh/a/b/file",
            "/usr/share/hooks/cvmchain", "/usr/bin/tool", "/etc/cvmchain.conf",
            "/etc/unmeasured/file", "/usr/lib/gone-before-and-after"]


def _fs(tmp: Path, name: str, src: Path) -> tuple[Path, Partition]:
    image = tmp / name
    with open(image, "wb") as f:
        f.truncate(16 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-d", str(src), str(image)], check=True)
    return image, Partition(1, 0, 16 * MiB, "", "", "", "gpt")


def _read(fs: tuple[Path, Partition], includes: list[str]) -> list[ManifestEntry]:
    return parse_manifest(native_manifest(fs[0], fs[1], includes, EXCLUDES, method="debugfs"))


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[tuple[Path, Partition], tuple[Path, Partition], Path, list[str]]:
    tmp = tmp_path_factory.mktemp("delta")
    src = tmp / "src"
    _tree(src)
    before = _fs(tmp, "before.ext4", src)
    written = _install(src)
    after = _fs(tmp, "after.ext4", src)
    return before, after, src, written


def test_reread_merge_equals_full_read(states: tuple) -> None:
    before_fs, after_fs, src, written = states
    before = _read(before_fs, INCLUDES)
    roots = reread_roots(before, written, INCLUDES)
    # new directories widen to the highest new one; paths outside the includes drop out
    assert roots == [b"/etc/cvmchain.conf", b"/usr/bin/tool", b"/usr/lib/gone-before-and-after",
                     b"/usr/lib/owned", b"/usr/local", b"/usr/share/hooks/cvmchain"]
    again = _read(after_fs, [r.decode() for r in roots])
    merged = encode_manifest(merge_reread(before, roots, again, INCLUDES))
    full = native_manifest(after_fs[0], after_fs[1], INCLUDES, EXCLUDES, method="debugfs")
    assert merged == full
    assert merged == tree_manifest(src, INCLUDES, EXCLUDES)
    assert b"/usr/lib/owned/sub/old" not in merged and b"/etc/unmeasured" not in merged
    assert b"/usr/lib/gone-before-and-after" not in merged  # no absent entry: not an include


def test_a_write_left_out_of_the_list_is_missed(states: tuple) -> None:
    """The method rests on the list being complete: leave one written path out and the
    result differs from the full read (so the test above can fail)."""
    before_fs, after_fs, _src, written = states
    before = _read(before_fs, INCLUDES)
    partial = [w for w in written if w != "/usr/bin/tool"]
    roots = reread_roots(before, partial, INCLUDES)
    again = _read(after_fs, [r.decode() for r in roots])
    merged = encode_manifest(merge_reread(before, roots, again, INCLUDES))
    full = native_manifest(after_fs[0], after_fs[1], INCLUDES, EXCLUDES, method="debugfs")
    assert merged != full


def test_a_written_directory_above_an_include_stands_for_it() -> None:
    before = [ManifestEntry(b"/etc/os-release", "f", 0o644, 0, 0, 3, "00" * 48)]
    assert reread_roots(before, ["/etc"], ["/usr", "/etc/os-release"]) == [b"/etc/os-release"]
    assert reread_roots(before, ["/var/lib/x"], ["/usr", "/etc/os-release"]) == []
    with pytest.raises(ValueError, match="not absolute"):
        reread_roots(before, ["usr/bin"], ["/usr"])


def test_absent_include_entries_survive_only_for_includes() -> None:
    before = [ManifestEntry(b"/usr", "d", 0o755)]
    again = [ManifestEntry(b"/etc/conf", "x"), ManifestEntry(b"/usr/lib/x", "x")]
    merged = merge_reread(before, [b"/etc/conf", b"/usr/lib/x"], again, ["/usr", "/etc/conf"])
    assert [e.path for e in merged] == [b"/usr", b"/etc/conf"]
