"""Host reads of a disk image's root file system give the agent's manifest, byte for byte.

A small GPT disk image is built here (``mkfs.ext4 -d`` from a prepared tree, ``sfdisk``);
the native readers (loop mount as root, ``debugfs`` without) must equal the host walker on
the source tree, the real agent walker under MicroPython on the mounted tree, and the tar
reader of the appliance path on a GNU tar archive of the tree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from image_rewriter.errors import NativeAccessError, PartitionTableError, RootfsReadError
from image_rewriter.partitions import get_partition, read_partitions
from image_rewriter.rootfs_reader import (
    find_partition_by_fs_uuid,
    identify_filesystem,
    mounted_readonly,
    native_file_digests,
    native_manifest,
    read_identity,
)
from image_rewriter.tar_tree import tar_entries
from image_rewriter.tree_manifest import tree_manifest
from initrd_agent import runtime_bundle as rb
from shared_spec.manifest import encode_manifest
from tests.test_agent_tree import ROOT, SCRIPT

MiB = 1 << 20
INCLUDES = ["/usr", "/etc/os-release", "/etc/missing", "/usr/bin/tool"]
EXCLUDES = ["/usr/share/doc", "**/*.pyc"]
CONTENT = os.urandom(200_000) + "é".encode()
FS_UUID = str(uuid.uuid4())
LABEL = "root fs"
CAP = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw+ep, v2

for _tool in ("mkfs.ext4", "sfdisk", "debugfs", "blkid", "mkfs.vfat"):
    if shutil.which(_tool) is None and not Path("/usr/sbin", _tool).exists():
        pytest.skip("%s is not installed" % _tool, allow_module_level=True)

IS_ROOT = os.geteuid() == 0


def _make_tree(base: Path) -> None:
    usr = base / "usr"
    (usr / "bin").mkdir(parents=True)
    (usr / "share" / "doc").mkdir(parents=True)
    (usr / "lib" / "py").mkdir(parents=True)
    (base / "etc").mkdir()
    (base / "etc" / "os-release").write_text("ID=test\n")
    (usr / "bin" / "tool").write_bytes(CONTENT)
    os.link(usr / "bin" / "tool", usr / "bin" / "tool-hardlink")
    os.symlink("tool", usr / "bin" / "link")
    os.symlink("x" * 200, usr / "bin" / "slow-link")
    os.mkfifo(usr / "fifo")
    (usr / os.fsdecode("naïve \xff name".encode("latin-1"))).write_bytes(b"latin")
    (usr / "share" / "doc" / "excluded").write_text("not measured")
    (usr / "lib" / "py" / "m.pyc").write_text("not measured")
    (usr / "lib" / "setuid").write_bytes(b"#!/bin/sh\n")
    os.chmod(usr / "lib" / "setuid", 0o4755)
    (usr / "lib" / "owned").write_bytes(b"owned")
    if IS_ROOT:
        os.chown(usr / "lib" / "owned", 1234, 4321)
        os.mknod(usr / "null", 0o620 | 0o020000, os.makedev(1, 3))
        os.chmod(usr / "null", 0o620)
        os.setxattr(usr / "bin" / "tool", "security.capability", CAP)
        os.setxattr(usr / "lib" / "owned", "security.ima", b"\x04\x03\xaa\xbb")


def _run(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(raw GPT disk image: 1 = vfat ESP, 2 = ext4 root from the tree; the source tree)."""
    tmp = tmp_path_factory.mktemp("rootfs")
    src = tmp / "src"
    _make_tree(src)
    fs = tmp / "root.ext4"
    with open(fs, "wb") as f:
        f.truncate(32 * MiB)
    _run("mkfs.ext4", "-q", "-U", FS_UUID, "-L", LABEL, "-d", str(src), str(fs))
    esp = tmp / "esp.vfat"
    with open(esp, "wb") as f:
        f.truncate(8 * MiB)
    _run("mkfs.vfat", str(esp))
    raw = tmp / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(42 * MiB)
    _run("sfdisk", "-q", str(raw), stdin="label: gpt\n"
         "start=2048, size=16384, type=U, name=ESP\n"
         "start=18432, size=65536, type=L, name=root\n")
    with open(raw, "r+b") as out:
        for offset, part in ((MiB, esp), (9 * MiB, fs)):
            out.seek(offset)
            out.write(part.read_bytes())
    return raw, src


def test_partitions_match_sfdisk(disk: tuple[Path, Path]) -> None:
    raw, _ = disk
    parts = read_partitions(raw)
    assert [(p.number, p.start, p.size, p.name) for p in parts] == [
        (1, MiB, 8 * MiB, "ESP"), (2, 9 * MiB, 32 * MiB, "root")]
    for p in parts:
        assert p.uuid == _run("sfdisk", "--part-uuid", str(raw), str(p.number)).strip().lower()
        assert p.type_id == _run("sfdisk", "--part-type", str(raw),
                                 str(p.number)).strip().lower()


def test_identity(disk: tuple[Path, Path]) -> None:
    raw, _ = disk
    part = find_partition_by_fs_uuid(raw, FS_UUID.upper())
    assert part.number == 2
    ident = read_identity(raw, part)
    partuuid = _run("sfdisk", "--part-uuid", str(raw), "2").strip().lower()
    assert (ident.fstype, ident.uuid, ident.label, ident.partuuid) == \
        ("ext4", FS_UUID, LABEL, partuuid)
    assert ident.descriptor() == "cvmchain:rootfs:identity:ext4:%s:root fs:%s" % (FS_UUID,
                                                                                  partuuid)
    esp = identify_filesystem(raw, get_partition(raw, 1))
    assert esp is not None and esp.type == "vfat"


def test_debugfs_equals_source_tree(disk: tuple[Path, Path]) -> None:
    raw, src = disk
    part = get_partition(raw, 2)
    got = native_manifest(raw, part, INCLUDES, EXCLUDES, method="debugfs")
    assert got == tree_manifest(src, INCLUDES, EXCLUDES)
    text = got.decode()
    assert "/usr/bin/tool f 0644 0 0 %d %s - " % (len(CONTENT),
                                                 hashlib.sha384(CONTENT).hexdigest()) in text
    assert "/etc/missing x" in text and "/usr/share/doc" not in text and ".pyc" not in text
    assert "/usr/bin/slow-link l 0777 0 0 - - " + "x" * 200 in text
    assert "/usr/na%EFve%20%FF%20name f 0644 0 0 5 " in text
    if IS_ROOT:
        assert "/usr/lib/owned f 0644 1234 4321 5 " in text
        assert "security.capability=" + CAP.hex() in text
        assert "/usr/null c 0620 0 0 - 1:3 - -" in text


def test_debugfs_dumps_in_parallel_batches_give_the_same_manifest(
        disk: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Many small batches on several debugfs processes: the same bytes as the source tree."""
    from image_rewriter import debugfs_tree

    raw, src = disk
    monkeypatch.setattr(debugfs_tree, "DUMP_BATCH_BYTES", 1)
    monkeypatch.setattr(debugfs_tree, "DUMP_WORKERS", 3)
    got = native_manifest(raw, get_partition(raw, 2), INCLUDES, EXCLUDES, method="debugfs")
    assert got == tree_manifest(src, INCLUDES, EXCLUDES)


@pytest.mark.parametrize("hash_alg", ["sha256", "sha1"])
def test_file_digests_by_debugfs_equal_the_source_tree(disk: tuple[Path, Path],
                                                      hash_alg: str) -> None:
    """The Keylime export's digests read with debugfs (no root) equal the host walk of the
    tree the image was made from."""
    from image_rewriter.exports import hash_tree_files

    raw, src = disk
    got = native_file_digests(raw, get_partition(raw, 2), INCLUDES, EXCLUDES, hash_alg,
                              method="debugfs")
    assert got == list(hash_tree_files(src, INCLUDES, EXCLUDES, hash_alg))
    assert ("/usr/bin/tool", hashlib.new(hash_alg, CONTENT).hexdigest()) in got
    if IS_ROOT:
        assert got == native_file_digests(raw, get_partition(raw, 2), INCLUDES, EXCLUDES,
                                          hash_alg, method="mount")


@pytest.mark.skipif(not IS_ROOT, reason="loop mounting needs root")
def test_mount_equals_debugfs_and_source(disk: tuple[Path, Path]) -> None:
    raw, src = disk
    part = get_partition(raw, 2)
    mounted = native_manifest(raw, part, INCLUDES, EXCLUDES, method="mount")
    assert mounted == tree_manifest(src, INCLUDES, EXCLUDES)
    assert mounted == native_manifest(raw, part, INCLUDES, EXCLUDES, method="debugfs")
    assert not [ln for ln in _run("losetup", "-a").splitlines() if str(raw) in ln]


@pytest.mark.skipif(not IS_ROOT, reason="loop mounting needs root")
def test_agent_under_micropython_equals_native(disk: tuple[Path, Path], tmp_path: Path) -> None:
    try:
        bundle = rb.ensure_bundle()
    except rb.RuntimeBundleError as e:
        pytest.skip("MicroPython bundle unavailable: %s" % e)
    raw, _ = disk
    part = get_partition(raw, 2)
    out = tmp_path / "agent.manifest"
    script = tmp_path / "walk.py"
    with mounted_readonly(raw, part, "ext4") as mnt:
        script.write_text(SCRIPT % {"root": str(ROOT),
                                    "agent": str(ROOT / "initrd_agent" / "agent"),
                                    "tree": os.fsencode(str(mnt)), "inc": INCLUDES,
                                    "exc": EXCLUDES, "out": str(out)})
        subprocess.run([*bundle.interpreter, str(script)], check=True, timeout=300)
    assert out.read_bytes() == native_manifest(raw, part, INCLUDES, EXCLUDES, method="debugfs")


def test_tar_reader_equals_source_tree(disk: tuple[Path, Path], tmp_path: Path) -> None:
    """The appliance path's reader, on what its ``tar_out`` runs (GNU tar, --xattrs)."""
    _, src = disk
    archive = tmp_path / "usr.tar"
    subprocess.run(["tar", "--xattrs", "--numeric-owner", "-C", str(src / "usr"), "-cf",
                    str(archive), "."], check=True, capture_output=True)
    got = encode_manifest(tar_entries(archive, b"/usr", EXCLUDES,
                                      ["security.capability", "security.ima"]))
    assert got == tree_manifest(src, ["/usr"], EXCLUDES)


def test_not_a_disk_image(tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(PartitionTableError, match=r"junk\.img is not a partitioned disk image"):
        read_partitions(junk)
    with pytest.raises(PartitionTableError, match="cannot open"):
        read_partitions(tmp_path / "absent.img")


def test_damaged_gpt(disk: tuple[Path, Path], tmp_path: Path) -> None:
    raw, _ = disk
    bad = tmp_path / "bad.raw"
    data = bytearray(raw.read_bytes()[:2 * MiB])
    data[512 + 40] ^= 0xFF  # first usable LBA: header CRC no longer matches
    bad.write_bytes(bytes(data))
    with pytest.raises(PartitionTableError, match=r"header CRC32 mismatch.*offset 528"):
        read_partitions(bad)


def test_partition_not_found(disk: tuple[Path, Path]) -> None:
    raw, _ = disk
    with pytest.raises(PartitionTableError, match="has no partition 7"):
        get_partition(raw, 7)
    with pytest.raises(PartitionTableError, match="0 partitions hold"):
        find_partition_by_fs_uuid(raw, str(uuid.uuid4()))


def test_wrong_filesystem(disk: tuple[Path, Path]) -> None:
    raw, _ = disk
    with pytest.raises(NativeAccessError, match="holds vfat, which debugfs cannot read"):
        native_manifest(raw, get_partition(raw, 1), ["/usr"], method="debugfs")


def test_include_through_absolute_symlink(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "usr" / "lib").mkdir(parents=True)
    os.symlink("/usr/lib", src / "lib")
    fs = tmp_path / "fs.ext4"
    with open(fs, "wb") as f:
        f.truncate(8 * MiB)
    _run("mkfs.ext4", "-q", "-d", str(src), str(fs))
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(10 * MiB)
    _run("sfdisk", "-q", str(raw), stdin="label: dos\nstart=2048, size=16384, type=83\n")
    with open(raw, "r+b") as out:
        out.seek(MiB)
        out.write(fs.read_bytes())
    part = get_partition(raw, 1)
    disk_id = _run("sfdisk", "--disk-id", str(raw)).strip().lower().removeprefix("0x")
    assert part.uuid == "%s-01" % disk_id and part.table == "dos"
    assert read_identity(raw, part).partuuid == part.uuid
    with pytest.raises(RootfsReadError, match="symlink to the absolute path /usr/lib"):
        native_manifest(raw, part, ["/lib/modules"], method="debugfs")
    assert b"/lib l 0777" in native_manifest(raw, part, ["/lib"], method="debugfs")
