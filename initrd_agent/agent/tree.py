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

import ffi

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

ENOENT = 2
ENODATA = 61
EOPNOTSUPP = 95

_libc = ffi.open("libc.so.6")
_lstat = _libc.func("i", "lstat", "pp")
_readlink = _libc.func("l", "readlink", "ppL")
_lgetxattr = _libc.func("l", "lgetxattr", "pppL")
_open = _libc.func("i", "open", "pi")
_read = _libc.func("l", "read", "ipL")
_close = _libc.func("i", "close", "i")
_errno_loc = _libc.func("p", "__errno_location", "")

CHUNK = 1 << 20
_STAT_SIZE = 144


class TreeError(Exception):
    """A path cannot be read; the message names it."""


def _errno():
    import uctypes

    return uctypes.struct(_errno_loc(), {"v": uctypes.INT32 | 0}).v


def _z(path):
    return bytes(path) + b"\x00"


class Stat:
    __slots__ = ("dev", "gid", "ino", "mode", "rdev", "size", "uid")


def lstat(path):
    """lstat(2) -> Stat, or None when the path does not exist."""
    buf = bytearray(_STAT_SIZE)
    if _lstat(_z(path), buf) != 0:
        e = _errno()
        if e == ENOENT:
            return None
        raise TreeError("lstat %s: errno %d" % (path, e))
    st = Stat()
    st.dev, st.ino = struct.unpack_from("<QQ", buf, 0)
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
        fd = _open(_z(path), 0)
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


def walk(root, includes, excludes, xattr_names, hashes):
    """Manifest entries for ``includes`` inside ``root`` (bytes paths)."""
    root = bytes(root).rstrip(b"/")
    root_st = lstat(root or b"/")
    if root_st is None:
        raise TreeError("root %s does not exist" % root)
    hasher = FileHasher(hashes)
    hashed = {}
    names = [n.encode() if isinstance(n, str) else n for n in xattr_names]
    entries = []
    for inc in includes:
        rel = inc.encode() if isinstance(inc, str) else bytes(inc)
        if not rel.startswith(b"/"):
            raise TreeError("include path %s is not absolute" % rel)
        rel = rel.rstrip(b"/") or b"/"
        if is_excluded(rel, excludes):
            continue
        st = lstat(root + rel)
        if st is None:
            entries.append(ManifestEntry(rel, TYPE_ABSENT))
            continue
        stack = [(rel, st)]
        while stack:
            path, st = stack.pop()
            full = root + path
            kind = type_of_mode(st.mode)
            size = None
            content = None
            target = None
            if kind == TYPE_FILE:
                size = st.size
                key = (st.dev, st.ino)
                content = hashed.get(key)
                if content is None:
                    content = hasher.hash(full)
                    hashed[key] = content
            elif kind == TYPE_CHAR or kind == TYPE_BLOCK:
                major, minor = split_rdev(st.rdev)
                content = "%d:%d" % (major, minor)
            elif kind == TYPE_SYMLINK:
                target = readlink(full)
            xattrs = []
            for name in names:
                v = getxattr(full, name)
                if v is not None:
                    xattrs.append((name, v))
            entries.append(ManifestEntry(path, kind, st.mode, st.uid, st.gid, size, content,
                                         target, xattrs))
            if kind == TYPE_DIR and st.dev == root_st.dev:
                base = path if path != b"/" else b""
                for name in _listdir(full):
                    if name in (b".", b".."):
                        continue
                    child = base + b"/" + name
                    if is_excluded(child, excludes):
                        continue
                    cst = lstat(root + child)
                    if cst is not None:
                        stack.append((child, cst))
    return entries, hasher.bytes
