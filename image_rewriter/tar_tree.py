"""Manifest entries from a GNU tar archive of one include directory (libguestfs ``tar_out``).

The appliance archives a directory with ``tar --xattrs --numeric-owner -C DIR -cf - .``; this
module reads that stream with :mod:`tarfile`, without extracting anything, so the host needs
neither root (for owners, device nodes, ``security.*`` xattrs) nor space for the tree.
Names, symlink targets and xattr values are decoded with ``surrogateescape`` and encoded back,
so non-UTF-8 bytes survive. A hard link's member carries no content: it takes its target's
size, digest and xattrs (same inode).

What tar cannot carry: sockets (GNU tar skips them with a warning), so a socket in the image
is missing here while the agent records an ``s`` line. An offline image has none in practice.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterable
from pathlib import Path

from image_rewriter.errors import RootfsReadError
from image_rewriter.rootfs_walk import ExcludeFilter
from shared_spec.manifest import (
    TYPE_BLOCK,
    TYPE_CHAR,
    TYPE_DIR,
    TYPE_FIFO,
    TYPE_FILE,
    TYPE_SYMLINK,
    ManifestEntry,
)

CHUNK = 1 << 20
XATTR_PREFIX = "SCHILY.xattr."
_TYPES = {
    tarfile.DIRTYPE: TYPE_DIR,
    tarfile.SYMTYPE: TYPE_SYMLINK,
    tarfile.CHRTYPE: TYPE_CHAR,
    tarfile.BLKTYPE: TYPE_BLOCK,
    tarfile.FIFOTYPE: TYPE_FIFO,
}


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _member_path(name: str, root: bytes) -> bytes:
    rel = _raw(name)
    if rel in (b".", b"./", b""):
        return root
    if rel.startswith(b"./"):
        rel = rel[2:]
    return (root if root != b"/" else b"") + b"/" + rel.rstrip(b"/")


def _xattrs(member: tarfile.TarInfo, names: list[str]) -> list[tuple[bytes, bytes]]:
    out = []
    for name in names:
        value = member.pax_headers.get(XATTR_PREFIX + name)
        if value is not None:
            out.append((name.encode(), _raw(value)))
    return out


def _digest(tf: tarfile.TarFile, member: tarfile.TarInfo, source: str) -> str:
    f = tf.extractfile(member)
    if f is None:
        raise RootfsReadError("%s: no content for %s" % (source, member.name))
    h = hashlib.sha384()
    with f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def tar_entries(archive: str | Path, root: bytes, excludes: Iterable[str],
                xattr_names: Iterable[str]) -> list[ManifestEntry]:
    """Entries of the directory ``root`` (a guest path) archived in ``archive``.

    Raises:
        RootfsReadError: the archive is unreadable or holds a member type the manifest has
            no letter for (the message names the archive and the member).
    """
    source = str(archive)
    names = list(xattr_names)
    skip = ExcludeFilter(excludes)
    entries: list[ManifestEntry] = []
    by_name: dict[str, ManifestEntry] = {}
    try:
        with tarfile.open(archive, "r:", encoding="utf-8", errors="surrogateescape") as tf:
            for member in tf:
                path = _member_path(member.name, root)
                if skip.skip(path, member.isdir(), root):
                    continue
                entry = _entry(tf, member, path, names, by_name, source)
                entries.append(entry)
                by_name[member.name] = entry
    except (tarfile.TarError, OSError, EOFError) as e:
        raise RootfsReadError("cannot read the tar archive %s of %s: %s"
                              % (source, root.decode(errors="replace"), e)) from e
    if not entries or entries[0].path != root:
        raise RootfsReadError("tar archive %s does not start with the directory %s"
                              % (source, root.decode(errors="replace")))
    return entries


def _entry(tf: tarfile.TarFile, member: tarfile.TarInfo, path: bytes, names: list[str],
           by_name: dict[str, ManifestEntry], source: str) -> ManifestEntry:
    mode, uid, gid = member.mode, member.uid, member.gid
    if member.islnk():
        target = by_name.get(member.linkname)
        if target is None:
            raise RootfsReadError("%s: hard link %s to %s, which the archive did not hold "
                                  "before it" % (source, member.name, member.linkname))
        return ManifestEntry(path, TYPE_FILE, mode, uid, gid, target.size, target.content,
                             None, list(target.xattrs))
    xattrs = _xattrs(member, names)
    if member.isreg():
        return ManifestEntry(path, TYPE_FILE, mode, uid, gid, member.size,
                             _digest(tf, member, source), None, xattrs)
    kind = _TYPES.get(member.type)
    if kind is None:
        raise RootfsReadError("%s: member %s has tar type %r, which has no manifest type"
                              % (source, member.name, member.type))
    content = None
    target_b = None
    if kind in (TYPE_CHAR, TYPE_BLOCK):
        content = "%d:%d" % (member.devmajor, member.devminor)
    elif kind == TYPE_SYMLINK:
        target_b = _raw(member.linkname)
    return ManifestEntry(path, kind, mode, uid, gid, None, content, target_b, xattrs)
