"""The host prefetch finds the root file system, reads it and copies the initrds out of
a real GPT disk image (``mkfs.ext4 -d``, ``sfdisk``), and stands back when the disk has
no single root."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from image_rewriter.host_prefetch import HostPrefetch, find_root_candidate
from image_rewriter.partitions import get_partition
from image_rewriter.rootfs_reader import native_manifest

MiB = 1 << 20
FS_UUID = str(uuid.uuid4())
KERNEL = "6.1.0-99-test"

for _tool in ("mkfs.ext4", "sfdisk", "debugfs", "blkid"):
    if shutil.which(_tool) is None and not Path("/usr/sbin", _tool).exists():
        pytest.skip("%s is not installed" % _tool, allow_module_level=True)


def _root_tree(base: Path, initrd: bytes) -> None:
    (base / "etc").mkdir(parents=True)
    (base / "etc/fstab").write_text("UUID=%s / ext4 defaults 0 1\n" % FS_UUID)
    (base / "usr/bin").mkdir(parents=True)
    (base / "usr/bin/tool").write_bytes(b"tool\n")
    (base / "boot").mkdir()
    (base / "boot" / ("vmlinuz-" + KERNEL)).write_bytes(b"kernel")
    (base / "boot" / ("initrd.img-" + KERNEL)).write_bytes(initrd)
    (base / "boot/initrd.img-without-kernel").write_bytes(b"stray")


def _disk(tmp: Path, roots: int, initrd: bytes) -> Path:
    """A GPT disk: partition 1 ext4 with no root, then ``roots`` root file systems."""
    raw = tmp / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate((2 + 16 * (roots + 1)) * MiB)
    table = "label: gpt\n" + "".join("start=%d, size=%d, type=L\n" % ((1 + 16 * i) * 2048,
                                                                       16 * 2048)
                                     for i in range(roots + 1))
    subprocess.run(["sfdisk", "-q", str(raw)], input=table, text=True, check=True)
    for i in range(roots + 1):
        src = tmp / ("src%d" % i)
        if i == 0:
            (src / "data").mkdir(parents=True)
        else:
            _root_tree(src, initrd)
        fs = tmp / ("fs%d" % i)
        with open(fs, "wb") as f:
            f.truncate(16 * MiB)
        args = ["-U", FS_UUID] if i == 1 else []
        subprocess.run(["mkfs.ext4", "-q", *args, "-d", str(src), str(fs)], check=True)
        with open(raw, "r+b") as out:
            out.seek((1 + 16 * i) * MiB)
            out.write(fs.read_bytes())
    return raw


def test_prefetch_reads_root_and_initrds(tmp_path: Path) -> None:
    initrd = os.urandom(300_000)
    raw = _disk(tmp_path, 1, initrd)
    work = tmp_path / "work"
    work.mkdir()
    root = find_root_candidate(raw)
    assert root is not None and root.partition.number == 2 and root.fs_uuid == FS_UUID
    merged: list[list[Path]] = []

    def read(fs_uuid: str) -> bytes:
        assert fs_uuid == FS_UUID
        return native_manifest(raw, get_partition(raw, 2), ["/usr"], method="debugfs")

    def merge(files: list[Path]) -> float:
        merged.append(files)
        for f in files:
            f.write_bytes(f.read_bytes() + b"+agent")
        return 0.0

    prefetch = HostPrefetch().start(raw, work, read, merge)
    assert prefetch.wait_reads() >= 0.0
    assert prefetch.wait_done(60)
    assert prefetch.rootfs.wait() == read(FS_UUID)
    files = prefetch.initrds.wait()
    assert list(files) == ["/boot/initrd.img-" + KERNEL]  # the stray initrd has no kernel
    assert files["/boot/initrd.img-" + KERNEL].read_bytes() == initrd + b"+agent"
    assert merged == [list(files.values())]


def test_no_single_root_means_no_prefetch(tmp_path: Path) -> None:
    raw = _disk(tmp_path, 2, b"initrd")
    assert find_root_candidate(raw) is None
    prefetch = HostPrefetch().start(raw, tmp_path, lambda u: pytest.fail("read"),
                                    lambda f: pytest.fail("merged"))
    assert prefetch.wait_done(60)
    assert prefetch.rootfs.wait() is None and prefetch.initrds.wait() is None
    assert "no single ext2/3/4 root" in prefetch.rootfs.why_not()


def test_a_failing_read_is_reported_not_raised(tmp_path: Path) -> None:
    raw = _disk(tmp_path, 1, b"initrd")

    def read(fs_uuid: str) -> bytes:
        raise OSError("disk went away")

    prefetch = HostPrefetch().start(raw, tmp_path, read, None)
    assert prefetch.wait_done(60)
    assert prefetch.rootfs.wait() is None
    assert prefetch.rootfs.why_not() == "disk went away"
    assert prefetch.initrds.why_not() == "not wanted"
