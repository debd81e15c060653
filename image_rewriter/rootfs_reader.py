"""Read the guest's root file system on the host: its identity and its rootfs manifest.

The rewriter predicts what the agent measures at boot, from the rewritten raw disk image:

- :func:`read_identity`: what ``rootfs_mode=identity`` measures (fs type, UUID, label,
  partition UUID), computed with the agent's own superblock and partition-table parsers
  (``initrd_agent/agent/rootdev.py``), so the text is the agent's;
- :func:`native_manifest`: the ``tree`` manifest, read natively: as root through a read-only
  loop mount walked by :func:`image_rewriter.tree_manifest.tree_manifest`, else (ext2/3/4)
  with ``debugfs`` (:mod:`image_rewriter.debugfs_tree`), without root;
- :func:`appliance_manifest`: the same bytes through a launched libguestfs handle (about
  5 MB/s under TCG), when neither native way is possible.

Every reader walks the includes the agent walks (:func:`image_rewriter.rootfs_walk.top_includes`)
and refuses an include whose parent path leaves the root through a symlink.
Loop-mounting a file system runs the host kernel's driver on the image: prefer
``method="debugfs"`` for images from untrusted sources.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from image_rewriter.debugfs_tree import DebugfsReader
from image_rewriter.errors import NativeAccessError, PartitionTableError, RootfsReadError
from image_rewriter.partitions import Partition, read_partitions
from image_rewriter.rootfs_walk import check_include_path, top_includes
from image_rewriter.tar_tree import tar_entries
from image_rewriter.tree_manifest import TreeWalkError, tree_manifest
from initrd_agent.agent_module import load_agent_module
from shared_spec.agent_events import rootfs_identity_descriptor
from shared_spec.manifest import (
    DEFAULT_XATTRS,
    TYPE_ABSENT,
    TYPE_BLOCK,
    TYPE_CHAR,
    TYPE_DIR,
    TYPE_FILE,
    TYPE_SYMLINK,
    ManifestEntry,
    encode_manifest,
    is_excluded,
    split_rdev,
    type_of_mode,
)

EXT_TYPES = ("ext2", "ext3", "ext4")
#: mount options that keep a read-only mount from replaying a journal (which writes)
NO_REPLAY = {"ext3": "noload", "ext4": "noload", "xfs": "norecovery"}
EXT_INCOMPAT_RECOVER = 0x4
METHODS = ("auto", "mount", "debugfs")
#: Raised by :func:`native_manifest` when the appliance path must be used.


@dataclass(frozen=True)
class FilesystemInfo:
    """What ``blkid`` finds in a partition: fs type (``ext4``, ``vfat``...), UUID, label."""

    type: str
    uuid: str
    label: str


@dataclass(frozen=True)
class RootfsIdentity:
    """What the agent measures in ``rootfs_mode=identity``."""

    fstype: str
    uuid: str
    label: str
    partuuid: str

    def descriptor(self) -> str:
        """The agent's event text, ``cvmchain:rootfs:identity:...``."""
        return rootfs_identity_descriptor(self.fstype, self.uuid, self.label, self.partuuid)


def _rootdev() -> ModuleType:
    """The agent's ``rootdev`` module (plain functions on bytes; CPython runs them too)."""
    return load_agent_module("rootdev")


def _tool(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise NativeAccessError("%s (Debian package %s) is not installed" % (name, package))
    return path


def _udev_decode(text: str) -> str:
    """Undo blkid's ``\\xNN`` encoding of ``ID_FS_*_ENC`` values."""
    out = bytearray()
    i = 0
    raw = text.encode()
    while i < len(raw):
        if raw[i:i + 2] == b"\\x" and i + 4 <= len(raw):
            out.append(int(raw[i + 2:i + 4], 16))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


def identify_filesystem(raw: str | Path, partition: Partition) -> FilesystemInfo | None:
    """The file system in ``partition`` of the raw image, or None when blkid finds none."""
    proc = subprocess.run([_tool("blkid", "util-linux"), "-p", "-O", str(partition.start),
                           "-S", str(partition.size), "-o", "udev", str(raw)],
                          capture_output=True, text=True, check=False)
    if proc.returncode == 2:
        return None
    if proc.returncode != 0:
        raise RootfsReadError("blkid on %s partition %d (offset %d) failed: %s"
                              % (raw, partition.number, partition.start, proc.stderr.strip()))
    values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    if "ID_FS_TYPE" not in values:
        return None
    return FilesystemInfo(values["ID_FS_TYPE"], values.get("ID_FS_UUID", ""),
                          _udev_decode(values.get("ID_FS_LABEL_ENC", "")))


def find_partition_by_fs_uuid(raw: str | Path, uuid: str) -> Partition:
    """The partition whose file system has UUID ``uuid`` (as libguestfs/blkid print it).

    Raises:
        PartitionTableError: no partition, or more than one, holds that file system.
    """
    parts = read_partitions(raw)
    found = []
    for p in parts:
        info = identify_filesystem(raw, p)
        if info is not None and info.uuid.lower() == uuid.lower():
            found.append(p)
    if len(found) != 1:
        raise PartitionTableError("%s: %d partitions hold a file system with UUID %s "
                                  "(partitions: %s)" % (raw, len(found), uuid,
                                                        [p.number for p in parts]))
    return found[0]


def _reader(raw: str | Path, base: int, limit: int) -> Any:
    def read_at(offset: int, size: int) -> bytes:
        if offset < 0 or offset + size > limit:
            size = max(0, min(size, limit - offset))
        with open(raw, "rb") as f:
            f.seek(base + offset)
            return f.read(size)
    return read_at


def read_identity(raw: str | Path, partition: Partition) -> RootfsIdentity:
    """What the agent's ``identity`` mode measures for a root on ``partition``.

    The fs type is blkid's, the one initramfs-tools mounts the root with (``mount -t``), hence
    the one the agent reads from mountinfo. The sector size is taken as 512 bytes (the
    logical block size of virtio and SCSI disks under QEMU).
    """
    info = identify_filesystem(raw, partition)
    if info is None:
        raise RootfsReadError("%s partition %d (offset %d) holds no file system blkid knows"
                              % (raw, partition.number, partition.start))
    rootdev = _rootdev()
    try:
        uuid, label = rootdev.superblock_identity(
            _reader(raw, partition.start, partition.size), info.type)
        partuuid = rootdev.partition_uuid(_reader(raw, 0, os.path.getsize(raw)),
                                          partition.number, 512)
    except rootdev.RootDevError as e:
        raise RootfsReadError("%s partition %d: %s" % (raw, partition.number, e)) from e
    return RootfsIdentity(info.type, uuid, label, partuuid)


def _check_clean(raw: str | Path, partition: Partition, fstype: str) -> None:
    """Refuse an ext3/4 file system whose journal needs replaying (the view would differ)."""
    if fstype not in EXT_TYPES:
        return
    sb = _reader(raw, partition.start, partition.size)(1024, 256)
    if len(sb) < 0x64 or struct.unpack_from("<H", sb, 0x38)[0] != 0xEF53:
        raise RootfsReadError("%s partition %d: no ext2/3/4 superblock (offset %d)"
                              % (raw, partition.number, partition.start + 1024 + 0x38))
    if struct.unpack_from("<I", sb, 0x60)[0] & EXT_INCOMPAT_RECOVER:
        raise RootfsReadError("%s partition %d: the %s journal needs recovery (the image was "
                              "not shut down cleanly); run e2fsck on it first"
                              % (raw, partition.number, fstype))


@contextmanager
def _no_interrupt() -> Iterator[None]:
    """Hold off SIGINT while cleaning up (main thread only), so a mount is never left."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _run(argv: list[str], what: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NativeAccessError("%s failed: %s" % (what, (proc.stderr or proc.stdout).strip()))
    return proc.stdout


@contextmanager
def mounted_readonly(raw: str | Path, partition: Partition, fstype: str) -> Iterator[Path]:
    """Mount ``partition`` read-only on a read-only loop device; yields the mount point.

    The mount and the loop device are always undone, also on an error or Ctrl-C.

    Raises:
        NativeAccessError: not root, no loop device, or the mount fails.
    """
    if os.geteuid() != 0:
        raise NativeAccessError("loop mounting needs root")
    losetup = _tool("losetup", "mount")
    mount = _tool("mount", "mount")
    umount = _tool("umount", "mount")
    dev = _run([losetup, "--find", "--show", "--read-only", "--offset", str(partition.start),
                "--sizelimit", str(partition.size), str(raw)],
               "losetup of %s partition %d" % (raw, partition.number)).strip()
    mnt = None
    try:
        mnt = Path(tempfile.mkdtemp(prefix="cvmchain-rootfs-"))
        opts = "ro" + ("," + NO_REPLAY[fstype] if fstype in NO_REPLAY else "")
        _run([mount, "-t", fstype, "-o", opts, dev, str(mnt)],
             "mount -t %s -o %s %s (%s partition %d)" % (fstype, opts, dev, raw,
                                                          partition.number))
        try:
            yield mnt
        finally:
            with _no_interrupt():
                proc = subprocess.run([umount, str(mnt)], capture_output=True, check=False)
                if proc.returncode != 0:
                    subprocess.run([umount, "--lazy", str(mnt)], capture_output=True,
                                   check=False)
    finally:
        with _no_interrupt():
            subprocess.run([losetup, "--detach", dev], capture_output=True, check=False)
            if mnt is not None:
                try:
                    mnt.rmdir()
                except OSError:
                    pass


def _host_readlink(root: Path) -> Any:
    base = os.fsencode(str(root))

    def readlink(path: bytes) -> bytes | None:
        try:
            return os.readlink(base + path)
        except OSError:
            return None
    return readlink


def _mount_manifest(raw: str | Path, partition: Partition, fstype: str, includes: list[bytes],
                    excludes: list[str], xattrs: list[str]) -> bytes:
    with mounted_readonly(raw, partition, fstype) as mnt:
        for inc in includes:
            check_include_path(inc, _host_readlink(mnt))
        try:
            return tree_manifest(mnt, [os.fsdecode(i) for i in includes], excludes, xattrs)
        except (TreeWalkError, OSError) as e:
            raise RootfsReadError("%s partition %d: %s" % (raw, partition.number, e)) from e


def _clean_filesystem(raw: str | Path, partition: Partition, method: str) -> FilesystemInfo:
    """The file system in ``partition``, checked to be readable natively as it is."""
    if method not in METHODS:
        raise ValueError("method must be one of %s, not %r" % (METHODS, method))
    info = identify_filesystem(raw, partition)
    if info is None:
        raise RootfsReadError("%s partition %d (offset %d) holds no file system blkid knows"
                              % (raw, partition.number, partition.start))
    _check_clean(raw, partition, info.type)
    return info


def native_manifest(raw: str | Path, partition: Partition, includes: Iterable[str],
                    excludes: Iterable[str] = (), xattrs: Iterable[str] = DEFAULT_XATTRS,
                    method: str = "auto") -> bytes:
    """The rootfs manifest of the file system in ``partition``, as the agent writes it.

    Args:
        raw: the raw disk image (nothing may write to it meanwhile).
        partition: the root partition (:func:`find_partition_by_fs_uuid`).
        includes, excludes, xattrs: the agent configuration's lists.
        method: ``mount`` (root, loop device), ``debugfs`` (ext2/3/4, no root) or ``auto``
            (mount when root and it works, else debugfs).

    Raises:
        NativeAccessError: neither way works here: use :func:`appliance_manifest`.
        RootfsReadError: the file system cannot be read as the agent would (journal to
            replay, an include through a symlink out of the root, an unreadable file).
    """
    info = _clean_filesystem(raw, partition, method)
    incs = top_includes(includes)
    excl = list(excludes)
    names = list(xattrs)
    mount_error = None
    if method in ("auto", "mount"):
        try:
            return _mount_manifest(raw, partition, info.type, incs, excl, names)
        except NativeAccessError as e:
            if method == "mount":
                raise
            mount_error = e
    if info.type not in EXT_TYPES:
        raise NativeAccessError(
            "%s partition %d holds %s, which debugfs cannot read, and it cannot be loop "
            "mounted here (%s): use the libguestfs appliance (appliance_manifest)"
            % (raw, partition.number, info.type, mount_error or "method=debugfs"))
    reader = DebugfsReader(raw, partition.start, excl, names)
    return encode_manifest(reader.entries(incs))


def native_file_digests(raw: str | Path, partition: Partition, includes: Iterable[str],
                        excludes: Iterable[str] = (), hash_alg: str = "sha256",
                        method: str = "auto") -> list[tuple[str, str]]:
    """(guest path, hex digest) of every regular file under the includes, in byte order.

    The same walk as the manifest's (and :func:`image_rewriter.exports.hash_tree_files`),
    for exports that need another hash than the manifest's SHA-384 (Keylime's
    ``ima_hash``). ``method`` as in :func:`native_manifest`; ``auto`` tries debugfs first
    here (no root needed), then the loop mount.

    Raises:
        NativeAccessError, RootfsReadError: as :func:`native_manifest`.
    """
    from image_rewriter.exports import ExportError, hash_tree_files

    info = _clean_filesystem(raw, partition, method)
    incs, excl = top_includes(includes), list(excludes)
    if method in ("auto", "debugfs") and info.type in EXT_TYPES:
        reader = DebugfsReader(raw, partition.start, excl, (), hash_name=hash_alg)
        return [(os.fsdecode(p), d) for p, d in reader.file_digests(incs)]
    if method == "debugfs":
        raise NativeAccessError("%s partition %d holds %s, which debugfs cannot read"
                                % (raw, partition.number, info.type))
    with mounted_readonly(raw, partition, info.type) as mnt:
        try:
            return list(hash_tree_files(mnt, [os.fsdecode(i) for i in incs], excl, hash_alg))
        except ExportError as e:
            raise RootfsReadError(str(e)) from e


def _mountpoints(g: Any) -> list[str]:
    mps = g.mountpoints()
    if isinstance(mps, dict):
        return list(mps.values())
    return [mp for _, mp in mps]


def _guest_entry(g: Any, path: bytes, st: dict[str, int], names: list[str]) -> ManifestEntry:
    p = os.fsdecode(path)
    kind = type_of_mode(st["st_mode"])
    size = content = target = None
    if kind == TYPE_FILE:
        size = st["st_size"]
        content = str(g.checksum("sha384", p))
    elif kind in (TYPE_CHAR, TYPE_BLOCK):
        content = "%d:%d" % split_rdev(st["st_rdev"])
    elif kind == TYPE_SYMLINK:
        target = str(g.readlink(p)).encode("utf-8", "surrogateescape")
    present = {str(x["attrname"]): bytes(x["attrval"]) for x in g.lgetxattrs(p)}
    xattrs = [(name.encode(), present[name]) for name in names if name in present]
    return ManifestEntry(path, kind, st["st_mode"], st["st_uid"], st["st_gid"], size, content,
                         target, xattrs)


def appliance_manifest(g: Any, includes: Iterable[str], excludes: Iterable[str] = (),
                       xattrs: Iterable[str] = DEFAULT_XATTRS,
                       workdir: str | Path | None = None) -> bytes:
    """The rootfs manifest through libguestfs: same bytes as :func:`native_manifest`.

    ``g`` is a launched ``guestfs.GuestFS`` with the guest's root file system mounted at
    ``/`` (read-only is enough). Directory includes come over as ``tar_out`` archives
    (``--xattrs --numeric-owner``) read by :func:`image_rewriter.tar_tree.tar_entries`; other
    includes by ``lstatns``/``checksum``/``readlink``/``lgetxattr``. ``workdir`` holds the
    archive of one include at a time (default: the system temporary directory).

    Raises:
        RootfsReadError: another file system is mounted on or under an include (the agent sees
            only the root file system), an include leaves the root through a symlink, or
            libguestfs fails (the message names the path).
    """
    incs = top_includes(includes)
    excl = list(excludes)
    names = list(xattrs)
    others = [mp for mp in _mountpoints(g) if mp.rstrip("/")]
    for inc in incs:
        i = os.fsdecode(inc)
        for mp in others:
            if i == "/" or mp == i or mp.startswith(i + "/") or i.startswith(mp.rstrip("/") + "/"):
                raise RootfsReadError("%s is mounted in the appliance on or under the include "
                                      "%s: mount only the root file system (the agent sees "
                                      "only that one)" % (mp, i))

    def readlink(path: bytes) -> bytes | None:
        p = os.fsdecode(path)
        if not g.is_symlink(p):
            return None
        return str(g.readlink(p)).encode("utf-8", "surrogateescape")

    entries: list[ManifestEntry] = []
    try:
        for inc in incs:
            if is_excluded(inc, excl):
                continue
            check_include_path(inc, readlink)
            p = os.fsdecode(inc)
            if not g.is_symlink(p) and not g.exists(p):
                entries.append(ManifestEntry(inc, TYPE_ABSENT))
                continue
            st = g.lstatns(p)
            if type_of_mode(st["st_mode"]) != TYPE_DIR:
                entries.append(_guest_entry(g, inc, st, names))
                continue
            with tempfile.TemporaryDirectory(prefix="cvmchain-tar-", dir=workdir) as tmp:
                archive = os.path.join(tmp, "include.tar")
                g.tar_out(p, archive, numericowner=True, xattrs=True)
                entries.extend(tar_entries(archive, inc, excl, names))
    except RuntimeError as e:
        raise RootfsReadError("libguestfs: reading the rootfs manifest: %s" % e) from e
    return encode_manifest(entries)
