"""Manifest entries of an ext2/3/4 file system read with e2fsprogs' ``debugfs``, without root.

``debugfs -c`` opens the file system read-only inside the raw disk image through the
``unix_io`` option ``IMAGE?offset=N`` and runs batches of commands (``-f``), each echoed on
stdout as ``debugfs: <command>``, which splits the output. Everything is addressed by inode
(``<ino>``), so file names never appear on a command line:

- ``ls -p <dir>``: ``/ino/mode/uid/gid/name/size/`` per entry (one run per tree level);
- ``stat <ino>``: device numbers and fast symlink targets;
- ``ea_list <ino>``: which recorded xattrs an inode has; ``ea_get -f FILE <ino> NAME``: the
  exact value;
- ``dump <ino> FILE``: a regular file's content (each inode once, hard links share it) or a
  slow symlink's target; files are hashed and removed batch by batch.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from image_rewriter.errors import NativeAccessError, RootfsReadError
from image_rewriter.rootfs_walk import check_include_path
from shared_spec.manifest import (
    TYPE_ABSENT,
    TYPE_BLOCK,
    TYPE_CHAR,
    TYPE_DIR,
    TYPE_FILE,
    TYPE_SYMLINK,
    ManifestEntry,
    is_excluded,
    type_of_mode,
)

ROOT_INO = 2
DUMP_BATCH_BYTES = 48 << 20
#: debugfs processes dumping at once (it is single-threaded; the host's cores, at most 4)
DUMP_WORKERS = max(1, min(4, os.cpu_count() or 1))
CHUNK = 1 << 20
_LS = re.compile(rb"/(\d+)/([0-7]+)/(\d+)/(\d+)/([^/]*)/(\d*)/\n")
_DEV = re.compile(rb"Device major/minor number: (\d+):(\d+)")
_FAST_LINK = b'Fast link dest: "'
_EA = re.compile(rb"^  (\S+) \((\d+)\)", re.M)
_NOISE = (b"debugfs ", b"catastrophic mode")


VFS_CAP_REVISION_MASK = 0xFF000000
VFS_CAP_REVISION_2 = 0x02000000
VFS_CAP_REVISION_3 = 0x03000000
VFS_CAP_FLAGS_EFFECTIVE = 0x000001


def kernel_view(name: bytes, value: bytes) -> bytes:
    """An xattr value as ``getxattr(2)`` returns it in the initial user namespace.

    The kernel (``cap_inode_getsecurity``) returns a v3 ``security.capability`` whose root
    id is 0 as the v2 form; every other value is returned as stored.
    """
    if name != b"security.capability" or len(value) != 24:
        return value
    magic, rootid = struct.unpack_from("<I", value, 0)[0], struct.unpack_from("<I", value, 20)[0]
    if magic & VFS_CAP_REVISION_MASK != VFS_CAP_REVISION_3 or rootid != 0:
        return value
    v2 = VFS_CAP_REVISION_2 | (magic & VFS_CAP_FLAGS_EFFECTIVE)
    return struct.pack("<I", v2) + value[4:20]


@dataclass
class _Node:
    path: bytes
    ino: int
    mode: int
    uid: int
    gid: int
    size: int


class Debugfs:
    """Runs command batches on one file system (``image`` from byte ``offset`` on)."""

    def __init__(self, image: str | Path, offset: int) -> None:
        self.exe = shutil.which("debugfs")
        if self.exe is None:
            raise NativeAccessError("debugfs (Debian package e2fsprogs) is not installed")
        if "?" in str(image):
            raise RootfsReadError("debugfs cannot open %s: '?' in the file name" % image)
        self.spec = "%s?offset=%d" % (image, offset)

    def run(self, commands: list[str]) -> list[bytes]:
        """The stdout section of each command, in order."""
        if not commands:
            return []
        with tempfile.NamedTemporaryFile("w", prefix="cvmchain-debugfs-", suffix=".cmd") as f:
            f.write("\n".join(commands) + "\n")
            f.flush()
            proc = subprocess.run([str(self.exe), "-c", "-f", f.name, self.spec],
                                  capture_output=True, check=False)
        errors = [line for line in proc.stderr.splitlines()
                  if line.strip() and not line.startswith(_NOISE)]
        if proc.returncode != 0 or errors:
            raise RootfsReadError("debugfs on %s failed (exit %d): %s"
                                  % (self.spec, proc.returncode,
                                     b"; ".join(errors[:5]).decode(errors="replace")))
        out = proc.stdout
        marks = []
        pos = 0
        for cmd in commands:
            mark = b"debugfs: " + cmd.encode() + b"\n"
            at = out.find(mark, pos)
            if at < 0:
                raise RootfsReadError("debugfs on %s: no output for %r" % (self.spec, cmd))
            marks.append((at, at + len(mark)))
            pos = at + len(mark)
        sections = []
        for i, (_, start) in enumerate(marks):
            end = marks[i + 1][0] if i + 1 < len(marks) else len(out)
            sections.append(out[start:end])
        return sections


def _ls(section: bytes, where: str) -> list[tuple[int, int, int, int, bytes, int]]:
    out = []
    pos = 0
    while pos < len(section):
        m = _LS.match(section, pos)
        if m is None:
            if not section[pos:].strip():
                break
            raise RootfsReadError("debugfs ls -p of %s: cannot parse %r"
                                  % (where, section[pos:pos + 80]))
        ino, mode, uid, gid, name, size = m.groups()
        out.append((int(ino), int(mode, 8), int(uid), int(gid), name, int(size) if size else 0))
        pos = m.end()
    return out


class DebugfsReader:
    """The manifest entries of include paths of one ext2/3/4 file system."""

    def __init__(self, image: str | Path, offset: int, excludes: Iterable[str],
                 xattr_names: Iterable[str], hash_name: str = "sha384") -> None:
        self.fs = Debugfs(image, offset)
        self.hash_name = hash_name  # of file contents: the manifest's SHA-384, or an export's
        self.excludes = list(excludes)
        self.names = list(xattr_names)
        self.dirs: dict[int, dict[bytes, tuple[int, int, int, int, int]]] = {}

    def listdirs(self, inos: list[int]) -> None:
        """Fill the directory cache for ``inos`` (one debugfs run)."""
        todo = [i for i in dict.fromkeys(inos) if i not in self.dirs]
        for ino, section in zip(todo, self.fs.run(["ls -p <%d>" % i for i in todo]),
                                strict=True):
            self.dirs[ino] = {name: (c, m, u, g, s)
                              for c, m, u, g, name, s in _ls(section, "<%d>" % ino)}

    def lookup(self, path: bytes) -> tuple[int, int, int, int, int] | None:
        """(ino, mode, uid, gid, size) of ``path`` (no symlink in its parents), or None."""
        ino, mode = ROOT_INO, 0o040000
        self.listdirs([ROOT_INO])
        found = self.dirs[ROOT_INO].get(b".")
        for name in [p for p in path.split(b"/") if p]:
            if type_of_mode(mode) != TYPE_DIR:
                return None
            self.listdirs([ino])
            found = self.dirs[ino].get(name)
            if found is None:
                return None
            ino, mode = found[0], found[1]
        return found

    def _readlink(self, path: bytes) -> bytes | None:
        found = self.lookup(path)
        if found is None or type_of_mode(found[1]) != TYPE_SYMLINK:
            return None
        return self.symlink_targets([(found[0], found[4])])[found[0]]

    def nodes(self, includes: list[bytes]) -> tuple[list[_Node], list[bytes]]:
        """Every node under the includes (breadth first) and the absent includes."""
        nodes: list[_Node] = []
        absent: list[bytes] = []
        level: list[_Node] = []
        for inc in includes:
            if is_excluded(inc, self.excludes):
                continue
            parent = check_include_path(inc, self._readlink)
            base = inc.rsplit(b"/", 1)[1]
            if inc == b"/":
                found = self.lookup(b"/")
            else:
                found = self.lookup(parent.rstrip(b"/") + b"/" + base)
            if found is None:
                absent.append(inc)
                continue
            node = _Node(inc, *found)
            nodes.append(node)
            if type_of_mode(node.mode) == TYPE_DIR:
                level.append(node)
        while level:
            self.listdirs([n.ino for n in level])
            nxt = []
            for d in level:
                for name, (ino, mode, uid, gid, size) in sorted(self.dirs[d.ino].items()):
                    if name in (b".", b".."):
                        continue
                    path = (d.path if d.path != b"/" else b"") + b"/" + name
                    if is_excluded(path, self.excludes):
                        continue
                    node = _Node(path, ino, mode, uid, gid, size)
                    nodes.append(node)
                    if type_of_mode(mode) == TYPE_DIR:
                        nxt.append(node)
            level = nxt
        return nodes, absent

    def symlink_targets(self, links: list[tuple[int, int]]) -> dict[int, bytes]:
        """Targets of symlinks given as (ino, size): fast ones from ``stat``, others dumped."""
        out: dict[int, bytes] = {}
        slow = []
        for (ino, size), section in zip(links, self.fs.run(["stat <%d>" % i for i, _ in links]),
                                        strict=True):
            at = section.find(_FAST_LINK)
            if at >= 0:
                out[ino] = section[at + len(_FAST_LINK):at + len(_FAST_LINK) + size]
            else:
                slow.append(ino)
        with tempfile.TemporaryDirectory(prefix="cvmchain-debugfs-") as tmp:
            self.fs.run(["dump <%d> %s/%d" % (i, tmp, i) for i in slow])
            for ino in slow:
                out[ino] = Path(tmp, str(ino)).read_bytes()
        return out

    def devices(self, inos: list[int]) -> dict[int, str]:
        out = {}
        for ino, section in zip(inos, self.fs.run(["stat <%d>" % i for i in inos]), strict=True):
            m = _DEV.search(section)
            if m is None:
                raise RootfsReadError("debugfs stat <%d>: no device number" % ino)
            out[ino] = "%d:%d" % (int(m.group(1)), int(m.group(2)))
        return out

    def xattrs(self, inos: list[int]) -> dict[int, list[tuple[bytes, bytes]]]:
        """The recorded xattrs of each inode that has any."""
        wanted = {n.encode() for n in self.names}
        present = []
        for ino, section in zip(inos, self.fs.run(["ea_list <%d>" % i for i in inos]),
                                strict=True):
            for m in _EA.finditer(section):
                if m.group(1) in wanted:
                    present.append((ino, m.group(1)))
        out: dict[int, list[tuple[bytes, bytes]]] = {}
        with tempfile.TemporaryDirectory(prefix="cvmchain-debugfs-") as tmp:
            self.fs.run(["ea_get -f %s/%d.%d <%d> %s" % (tmp, ino, k, ino, name.decode())
                         for k, (ino, name) in enumerate(present)])
            for k, (ino, name) in enumerate(present):
                value = Path(tmp, "%d.%d" % (ino, k)).read_bytes()
                out.setdefault(ino, []).append((name, kernel_view(name, value)))
        return out

    def digests(self, files: list[tuple[int, int]]) -> dict[int, str]:
        """SHA-384 of regular files given as (ino, size), dumped in batches.

        ``debugfs dump`` is single-threaded and does most of the work, so the batches run on
        :data:`DUMP_WORKERS` processes side by side (each hashes its own batch while the
        others dump; hashlib releases the GIL).
        """
        batches: list[list[int]] = []
        batch: list[int] = []
        total = 0
        for ino, size in files:
            batch.append(ino)
            total += size
            if total >= DUMP_BATCH_BYTES:
                batches.append(batch)
                batch, total = [], 0
        if batch:
            batches.append(batch)
        out: dict[int, str] = {}
        if len(batches) <= 1:
            for b in batches:
                out.update(self._dump_and_hash(b))
            return out
        with ThreadPoolExecutor(max_workers=min(DUMP_WORKERS, len(batches))) as pool:
            for part in pool.map(self._dump_and_hash, batches):
                out.update(part)
        return out

    def _dump_and_hash(self, inos: list[int]) -> dict[int, str]:
        out = {}
        with tempfile.TemporaryDirectory(prefix="cvmchain-debugfs-") as tmp:
            self.fs.run(["dump <%d> %s/%d" % (i, tmp, i) for i in inos])
            for ino in inos:
                h = hashlib.new(self.hash_name)
                p = os.path.join(tmp, str(ino))
                with open(p, "rb") as f:
                    while True:
                        chunk = f.read(CHUNK)
                        if not chunk:
                            break
                        h.update(chunk)
                os.unlink(p)
                out[ino] = h.hexdigest()
        return out

    def file_digests(self, includes: list[bytes]) -> list[tuple[bytes, str]]:
        """(path, hex digest with ``hash_name``) of every regular file under the includes,
        in path byte order (hard links dumped once)."""
        nodes, _ = self.nodes(includes)
        files = {n.ino: n.size for n in nodes if type_of_mode(n.mode) == TYPE_FILE}
        digests = self.digests(list(files.items()))
        return sorted((n.path, digests[n.ino]) for n in nodes
                      if type_of_mode(n.mode) == TYPE_FILE)

    def entries(self, includes: list[bytes]) -> list[ManifestEntry]:
        nodes, absent = self.nodes(includes)
        kinds = {n.ino: type_of_mode(n.mode) for n in nodes}
        sizes = {n.ino: n.size for n in nodes}
        files = [(i, sizes[i]) for i, k in kinds.items() if k == TYPE_FILE]
        links = [(i, sizes[i]) for i, k in kinds.items() if k == TYPE_SYMLINK]
        devs = [i for i, k in kinds.items() if k in (TYPE_CHAR, TYPE_BLOCK)]
        digests = self.digests(files)
        targets = self.symlink_targets(links) if links else {}
        numbers = self.devices(devs) if devs else {}
        xattrs = self.xattrs(list(kinds)) if self.names else {}
        out = [ManifestEntry(p, TYPE_ABSENT) for p in absent]
        for n in nodes:
            kind = kinds[n.ino]
            out.append(ManifestEntry(
                n.path, kind, n.mode, n.uid, n.gid, n.size if kind == TYPE_FILE else None,
                digests.get(n.ino) if kind == TYPE_FILE else numbers.get(n.ino),
                targets.get(n.ino), list(xattrs.get(n.ino, []))))
        return out
