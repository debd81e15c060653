"""Build the rootfs manifest of a directory tree on the host (CPython).

The same walk as the agent's (``initrd_agent/agent/tree.py``): include paths,
exclude patterns, no symlink following, no crossing of mount points, content
hashed with SHA-384, hard links hashed once. The output bytes come from
:mod:`shared_spec.manifest`, the encoder the agent uses.
"""

import errno
import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from image_rewriter.rootfs_walk import top_includes
from shared_spec.manifest import (
    DEFAULT_XATTRS,
    TYPE_ABSENT,
    TYPE_BLOCK,
    TYPE_CHAR,
    TYPE_DIR,
    TYPE_FILE,
    ManifestEntry,
    encode_manifest,
    is_excluded,
    split_rdev,
    type_of_mode,
)

CHUNK = 1 << 20


class TreeWalkError(Exception):
    """A path of the tree cannot be read; names it."""


def _hash_file(path: bytes) -> str:
    h = hashlib.sha384()
    try:
        with open(path, "rb", buffering=0) as f:
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(view[:n])
    except OSError as e:
        raise TreeWalkError("cannot read %s: %s" % (os.fsdecode(path), e.strerror)) from e
    return h.hexdigest()


def _xattrs(path: bytes, names: Iterable[str]) -> list[tuple[bytes, bytes]]:
    out = []
    for name in names:
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                continue
            raise TreeWalkError("cannot read xattr %s of %s: %s"
                                % (name, os.fsdecode(path), e.strerror)) from e
        out.append((name.encode(), value))
    return out


def walk_tree(root: str | Path, includes: Iterable[str], excludes: Iterable[str] = (),
              xattr_names: Iterable[str] = DEFAULT_XATTRS) -> list[ManifestEntry]:
    """Manifest entries for ``includes`` (absolute paths inside ``root``).

    ``includes`` is materialised once (it may be an iterator).
    """
    includes = list(includes)
    root_b = os.fsencode(str(root)).rstrip(b"/")
    excl = list(excludes)
    names = list(xattr_names)
    root_dev = os.lstat(root_b or b"/").st_dev
    entries: list[ManifestEntry] = []
    hashed: dict[tuple[int, int], str] = {}
    for inc in includes:
        if not os.fsencode(inc).startswith(b"/"):
            raise TreeWalkError("include path %r is not absolute" % inc)
    # as the agent: an include inside another include is walked once, as part of it
    for rel in top_includes(includes):
        if is_excluded(rel, excl):
            continue
        try:
            st = os.lstat(root_b + rel)
        except FileNotFoundError:
            entries.append(ManifestEntry(rel, TYPE_ABSENT))
            continue
        stack = [(rel, st)]
        while stack:
            path, st = stack.pop()
            entry = _entry(root_b, path, st, names, hashed)
            entries.append(entry)
            if entry.type == TYPE_DIR and st.st_dev == root_dev:
                full = root_b + path
                try:
                    children = os.listdir(full)
                except OSError as e:
                    raise TreeWalkError("cannot list %s: %s" % (os.fsdecode(full), e.strerror)) \
                        from e
                for name in children:
                    child = (path if path != b"/" else b"") + b"/" + name
                    if is_excluded(child, excl):
                        continue
                    stack.append((child, os.lstat(root_b + child)))
    return entries


def _entry(root_b: bytes, path: bytes, st: os.stat_result, names: list[str],
           hashed: dict[tuple[int, int], str]) -> ManifestEntry:
    full = root_b + path
    kind = type_of_mode(st.st_mode)
    size = None
    content = None
    target = None
    if kind == TYPE_FILE:
        size = st.st_size
        key = (st.st_dev, st.st_ino)
        content = hashed.get(key)
        if content is None:
            content = _hash_file(full)
            hashed[key] = content
    elif kind in (TYPE_CHAR, TYPE_BLOCK):
        major, minor = split_rdev(st.st_rdev)
        content = "%d:%d" % (major, minor)
    elif stat.S_ISLNK(st.st_mode):
        target = os.readlink(full)
    return ManifestEntry(path, kind, st.st_mode, st.st_uid, st.st_gid, size, content, target,
                         _xattrs(full, names))


def tree_manifest(root: str | Path, includes: Iterable[str], excludes: Iterable[str] = (),
                  xattr_names: Iterable[str] = DEFAULT_XATTRS) -> bytes:
    """The encoded manifest of ``root`` (what the agent writes to rootfs.manifest)."""
    return encode_manifest(walk_tree(root, includes, excludes, xattr_names))
