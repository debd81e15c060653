"""The rootfs ``tree`` walk under MicroPython: the same manifest as the host's.

Mirrors ``image_rewriter/tree_manifest.py`` (CPython): include paths, exclude
patterns, ``lstat`` (never follows symlinks), no crossing of mount points,
SHA-384 of regular files streamed through one reusable buffer, hard links
hashed once, the recorded ``security.*`` xattrs read with ``lgetxattr``.
MicroPython's ``os`` has no lstat/readlink/xattrs, so they come from libc
through ``ffi``; paths are passed as NUL-terminated bytes, so names need not
be UTF-8.
"""

import os
import struct

import libc

from shared_spec.manifest import (
    TYPE_ABSENT,
    TYPE_BLOCK,
    TYPE_CHAR,
    TYPE_DIR,
    TYPE_FILE,
    TYPE_SYMLINK,
    ManifestEntry,
    is_excluded,
    split_rdev,
    type_of_mode,
)

ENOENT = libc.ENOENT
ENODATA = libc.ENODATA
EOPNOTSUPP = libc.EOPNOTSUPP
_lstat = libc.lstat
_readlink = libc.readlink
_lgetxattr = libc.lgetxattr
_read = libc.read
_close = libc.close

CHUNK = 1 << 20
_STAT_SIZE = 144


class TreeError(Exception):
    """A path cannot be read; the message names it."""


def _errno():
    return libc.errno()


def _z(path):
    return libc.z(path)


class Stat:
    __slots__ = ("dev", "gid", "ino", "mode", "nlink", "rdev", "size", "uid")


def lstat(path):
    """lstat(2) -> Stat, or None when the path does not exist."""
    buf = bytearray(_STAT_SIZE)
    if _lstat(_z(path), buf) != 0:
        e = _errno()
        if e == ENOENT:
            return None
        raise TreeError("lstat %s: errno %d" % (path, e))
    st = Stat()
    st.dev, st.ino, st.nlink = struct.unpack_from("<QQQ", buf, 0)
    st.mode, st.uid, st.gid = struct.unpack_from("<III", buf, 24)
    st.rdev, st.size = struct.unpack_from("<Qq", buf, 40)
    return st


def readlink(path):
    buf = bytearray(4096)
    n = _readlink(_z(path), buf, len(buf))
    if n < 0:
        raise TreeError("readlink %s: errno %d" % (path, _errno()))
    return bytes(buf[:n])


def getxattr(path, name):
    """The xattr's value, or None when absent or unsupported."""
    buf = bytearray(4096)
    n = _lgetxattr(_z(path), _z(name), buf, len(buf))
    if n < 0:
        e = _errno()
        if e in (ENODATA, EOPNOTSUPP, 1):
            return None
        raise TreeError("lgetxattr %s %s: errno %d" % (path, name, e))
    return bytes(buf[:n])


class FileHasher:
    """SHA-384 of files through one reusable buffer (read(2) straight into it)."""

    def __init__(self, hashes, alg=0x000C):
        self.hashes = hashes
        self.alg = alg
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.bytes = 0

    def hash(self, path):
        fd = libc.open_(_z(path), libc.O_RDONLY, 0)
        if fd < 0:
            raise TreeError("cannot open %s: errno %d" % (path, _errno()))
        h = self.hashes.new(self.alg)
        try:
            while True:
                n = _read(fd, self.buf, CHUNK)
                if n < 0:
                    raise TreeError("cannot read %s: errno %d" % (path, _errno()))
                if n == 0:
                    break
                self.bytes += n
                h.update(self.view[:n] if n < CHUNK else self.buf)
        finally:
            _close(fd)
        return h.digest().hex()


def _listdir(path):
    return [entry[0] for entry in os.ilistdir(path)]


def _plan(items):
    """Sibling order that yields the global path-byte order of a depth-first walk.

    ``items``: [(path, st)]. A directory's own line sorts by its path, its
    subtree by path + "/", so "/a" < "/a-b" < "/a/x" comes out right.
    """
    keyed = []
    for path, st in items:
        keyed.append((path, 0, path, st))
        if type_of_mode(st.mode) == TYPE_DIR:
            keyed.append((path + b"/", 1, path, st))
    keyed.sort(key=lambda k: k[0])
    return keyed


class Walker:
    """Streams manifest lines in path-byte order; memory bounded by the tree's depth."""

    def __init__(self, root, excludes, xattr_names, hashes, emit):
        self.root = bytes(root).rstrip(b"/")
        st = lstat(self.root or b"/")
        if st is None:
            raise TreeError("root %s does not exist" % self.root)
        self.root_dev = st.dev
        self.excludes = excludes
        self.names = [n.encode() if isinstance(n, str) else n for n in xattr_names]
        self.hasher = FileHasher(hashes)
        self.links = {}
        self.emit = emit
        self.count = 0

    def entry(self, path, st):
        full = self.root + path
        kind = type_of_mode(st.mode)
        size = None
        content = None
        target = None
        if kind == TYPE_FILE:
            size = st.size
            if st.nlink > 1:
                key = (st.dev, st.ino)
                content = self.links.get(key)
                if content is None:
                    content = self.hasher.hash(full)
                    self.links[key] = content
            else:
                content = self.hasher.hash(full)
        elif kind == TYPE_CHAR or kind == TYPE_BLOCK:
            major, minor = split_rdev(st.rdev)
            content = "%d:%d" % (major, minor)
        elif kind == TYPE_SYMLINK:
            target = readlink(full)
        xattrs = []
        for name in self.names:
            v = getxattr(full, name)
            if v is not None:
                xattrs.append((name, v))
        return ManifestEntry(path, kind, st.mode, st.uid, st.gid, size, content, target, xattrs)

    def children(self, path):
        base = path if path != b"/" else b""
        out = []
        for name in _listdir(self.root + path):
            if name in (b".", b".."):
                continue
            child = base + b"/" + name
            if is_excluded(child, self.excludes):
                continue
            cst = lstat(self.root + child)
            if cst is not None:
                out.append((child, cst))
        return out

    def walk_items(self, items):
        for _, kind, path, st in _plan(items):
            if kind == 0:
                self.emit(self.entry(path, st).encode())
                self.count += 1
            elif st.dev == self.root_dev:
                self.walk_items(self.children(path))

    def run(self, includes):
        """Emit the lines of every include (nested includes are covered once)."""
        incs = []
        for inc in includes:
            rel = inc.encode() if isinstance(inc, str) else bytes(inc)
            if not rel.startswith(b"/"):
                raise TreeError("include path %s is not absolute" % rel)
            incs.append(rel.rstrip(b"/") or b"/")
        incs.sort()
        top = []
        for rel in incs:
            if any(rel == t or rel.startswith(t + b"/") or t == b"/" for t in top):
                continue
            top.append(rel)
        items = []
        absent = []
        for rel in top:
            if is_excluded(rel, self.excludes):
                continue
            st = lstat(self.root + rel)
            if st is None:
                absent.append(rel)
            else:
                items.append((rel, st))
        # absent includes are "x" lines, merged into the order
        pending = sorted(absent)

        def emit_absent_before(key):
            while pending and pending[0] < key:
                self.emit(ManifestEntry(pending.pop(0), TYPE_ABSENT).encode())
                self.count += 1

        for key, kind, path, st in _plan(items):
            emit_absent_before(key)
            if kind == 0:
                self.emit(self.entry(path, st).encode())
                self.count += 1
            elif st.dev == self.root_dev:
                self.walk_items(self.children(path))
        emit_absent_before(b"\xff" * 4096)


def write_manifest(root, includes, excludes, xattr_names, hashes, path, alg=0x000C):
    """Walk, write the manifest to ``path`` and return (digest hex, entries, bytes hashed)."""
    from shared_spec.manifest import MANIFEST_HEADER

    h = hashes.new(alg)
    out = open(path, "wb")
    pending = []
    size = [0]

    def emit(line):
        h.update(line)
        pending.append(line)
        size[0] += len(line)
        if size[0] > 1 << 16:
            out.write(b"".join(pending))
            del pending[:]
            size[0] = 0

    try:
        emit(MANIFEST_HEADER)
        w = Walker(root, excludes, xattr_names, hashes, emit)
        w.run(includes)
        out.write(b"".join(pending))
    finally:
        out.close()
    return h.digest().hex(), w.count, w.hasher.bytes


def walk(root, includes, excludes, xattr_names, hashes):
    """All entries as a list (for tests and small trees); see :class:`Walker`."""
    from shared_spec.manifest import parse_manifest

    lines = []
    w = Walker(root, excludes, xattr_names, hashes, lines.append)
    w.run(includes)
    from shared_spec.manifest import MANIFEST_HEADER

    return parse_manifest(MANIFEST_HEADER + b"".join(lines)), w.hasher.bytes
