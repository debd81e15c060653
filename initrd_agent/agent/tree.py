"""The rootfs ``tree`` walk under MicroPython: the same manifest as the host's.

Mirrors ``image_rewriter/tree_manifest.py`` (CPython): include paths, exclude
patterns, ``lstat`` (never follows symlinks), no crossing of mount points,
SHA-384 of regular files, hard links hashed once, the recorded ``security.*``
xattrs. MicroPython's ``os`` has no lstat/readlink/xattrs, so they come from
libc through ``ffi``; paths are passed as NUL-terminated bytes, so names need
not be UTF-8.

Speed (the walk must stay close to ``find | sort | xargs sha384sum``):

- files are hashed on worker threads (:mod:`filehash`; the unix port has no
  GIL, so read(2) and mbedtls run on every processor) while the calling thread
  walks, and hashes too when its window is full. Lines wait in that bounded
  window for their digests and leave it in path order: the same bytes as a
  sequential walk. One processor, no ``_thread`` or the pure-Python fallback
  hash: no threads, everything on the calling thread;
- a file that fits the buffer is read once and hashed with one
  ``mbedtls_sha512`` call (:mod:`filehash`);
- one ``llistxattr`` per entry instead of one ``lgetxattr`` per recorded
  name (most files have no xattrs at all), one stat buffer per walk; the
  lines come from the shared encoder (``ManifestEntry.encode``).
"""

import os
import struct

import libc
from filehash import (
    JOB_DIGEST,
    JOB_ERROR,
    JOB_SEEN,
    FileHasher,
    HashPool,
    TreeError,
    default_threads,
)

from shared_spec.manifest import (
    TYPE_ABSENT,
    TYPE_BLOCK,
    TYPE_CHAR,
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
ERANGE = libc.ERANGE
_lstat = libc.lstat
_readlink = libc.readlink
_lgetxattr = libc.lgetxattr
_llistxattr = libc.llistxattr

#: manifest lines that may wait for their file's digest (bounds memory)
WINDOW = 2048
_STAT_SIZE = 144
#: struct stat on x86_64: st_dev st_ino st_nlink st_mode st_uid st_gid (pad) st_rdev st_size
_STAT_FMT = "<QQQIII4xQq"
_XATTR_ABSENT = (ENODATA, EOPNOTSUPP, libc.EPERM)
_S_IFMT = 0o170000
_S_IFREG = 0o100000
_S_IFDIR = 0o040000


def _errno():
    return libc.errno()


def _z(path):
    return libc.z(path)


class Stat:
    __slots__ = ("dev", "gid", "ino", "mode", "nlink", "rdev", "size", "uid")


def _lstat_z(zpath, buf):
    """lstat(2) of a NUL-terminated path into ``buf``: the fields as a tuple
    (dev, ino, nlink, mode, uid, gid, rdev, size), or None when it does not exist."""
    if _lstat(zpath, buf) != 0:
        e = _errno()
        if e == ENOENT:
            return None
        raise TreeError("lstat %s: errno %d" % (zpath[:-1], e))
    return struct.unpack_from(_STAT_FMT, buf, 0)


def lstat(path):
    """lstat(2) -> Stat, or None when the path does not exist."""
    t = _lstat_z(_z(path), bytearray(_STAT_SIZE))
    if t is None:
        return None
    st = Stat()
    st.dev, st.ino, st.nlink, st.mode, st.uid, st.gid, st.rdev, st.size = t
    return st


def _readlink_z(zpath, buf):
    n = _readlink(zpath, buf, len(buf))
    if n < 0:
        raise TreeError("readlink %s: errno %d" % (zpath[:-1], _errno()))
    return bytes(buf[:n])


def readlink(path):
    return _readlink_z(_z(path), bytearray(4096))


def _getxattr_z(zpath, zname, buf):
    n = _lgetxattr(zpath, zname, buf, len(buf))
    if n < 0:
        e = _errno()
        if e in _XATTR_ABSENT:
            return None
        raise TreeError("lgetxattr %s %s: errno %d" % (zpath[:-1], zname[:-1], e))
    return bytes(buf[:n])


def getxattr(path, name):
    """The xattr's value, or None when absent or unsupported."""
    return _getxattr_z(_z(path), _z(name), bytearray(4096))


def _listxattr_z(zpath, buf):
    """The names of a path's xattrs (a list of bytes; empty when none or unsupported)."""
    n = _llistxattr(zpath, buf, len(buf))
    if n == 0:
        return ()
    if n < 0:
        e = _errno()
        if e in _XATTR_ABSENT:
            return ()
        if e != ERANGE:
            raise TreeError("llistxattr %s: errno %d" % (zpath[:-1], e))
        # more names than the buffer holds: ask for the size, then read them all
        while n < 0:
            need = _llistxattr(zpath, buf, 0)
            if need < 0:
                raise TreeError("llistxattr %s: errno %d" % (zpath[:-1], _errno()))
            big = bytearray(need + 256)
            n = _llistxattr(zpath, big, len(big))
            if n < 0 and _errno() != ERANGE:
                raise TreeError("llistxattr %s: errno %d" % (zpath[:-1], _errno()))
        return bytes(big[:n]).split(b"\x00")
    return bytes(buf[:n]).split(b"\x00")


def _listdir(path):
    return [entry[0] for entry in os.ilistdir(path)]


def _plan(items):
    """Sibling order that yields the global path-byte order of a depth-first walk.

    ``items``: [(path, st)]. A directory's own line sorts by its path, its
    subtree by path + "/", so "/a" < "/a-b" < "/a/x" comes out right.
    Sorting the tuples themselves compares the first field only: paths are
    unique and a directory's two keys differ.
    """
    keyed = []
    for path, st in items:
        keyed.append((path, 0, path, st))
        if st[3] & _S_IFMT == _S_IFDIR:
            keyed.append((path + b"/", 1, path, st))
    keyed.sort()
    return keyed


class Walker:
    """Streams manifest lines in path-byte order.

    Memory is bounded by the tree's depth and :data:`WINDOW` (lines waiting
    for digests). ``threads``: worker threads that hash files besides the calling thread
    (None: one per processor but one when the provider hashes in C, else
    none; 0: everything on the calling thread).
    """

    def __init__(self, root, excludes, xattr_names, hashes, emit, threads=None):
        self.root = bytes(root).rstrip(b"/")
        self.sbuf = bytearray(_STAT_SIZE)
        self.xbuf = bytearray(4096)
        st = _lstat_z((self.root or b"/") + b"\x00", self.sbuf)
        if st is None:
            raise TreeError("root %s does not exist" % self.root)
        self.root_dev = st[0]
        self.excludes = excludes
        self.names = [n.encode() if isinstance(n, str) else bytes(n) for n in xattr_names]
        self.wanted = set(self.names)
        self.hasher = FileHasher(hashes)
        self.links = {}
        self.emit = emit
        self.count = 0
        self.pending = []
        self.pool = None
        if threads is None:
            threads = default_threads(self.hasher)
        if threads > 0:
            import _thread

            self.pool = HashPool(_thread, hashes, self.hasher.alg, threads)
            if not self.pool.workers:
                self.pool = None

    @property
    def bytes_hashed(self):
        """Bytes read and hashed so far, on every thread."""
        n = self.hasher.bytes
        if self.pool is not None:
            n += self.pool.hashed_bytes()
        return n

    def xattrs(self, zfull):
        names = _listxattr_z(zfull, self.xbuf)
        if not names:
            return None
        out = []
        for name in names:
            if name in self.wanted:
                v = _getxattr_z(zfull, name + b"\x00", self.xbuf)
                if v is not None:
                    out.append((name, v))
        return out

    def _content(self, zfull, st):
        """The digest of a regular file, or the job that will produce it."""
        if st[2] > 1:
            key = (st[0], st[1])
            content = self.links.get(key)
            if content is None:
                content = self._hash(zfull, st[7])
                self.links[key] = content
            return content
        return self._hash(zfull, st[7])

    def _hash(self, zfull, size):
        if self.pool is None:
            return self.hasher.hash_z(zfull, size)
        return self.pool.submit(zfull, size)

    def entry(self, path, st):
        """Queue the manifest line of ``path`` (its lstat tuple ``st``)."""
        zfull = self.root + path + b"\x00"
        mode = st[3]
        fmt = mode & _S_IFMT
        size = None
        content = None
        target = None
        if fmt == _S_IFREG:
            kind = TYPE_FILE
            size = st[7]
            content = self._content(zfull, st)
        else:
            kind = type_of_mode(mode)
            if kind == TYPE_CHAR or kind == TYPE_BLOCK:
                major, minor = split_rdev(st[6])
                content = "%d:%d" % (major, minor)
            elif kind == TYPE_SYMLINK:
                target = _readlink_z(zfull, self.xbuf)
        xattrs = self.xattrs(zfull) if self.names else None
        e = ManifestEntry(path, kind, mode, st[4], st[5], size, None, target, xattrs)
        self.count += 1
        if isinstance(content, list):
            self.pending.append((e, content))
            self.drain(False)
        else:
            e.content = content
            if self.pending:
                self.pending.append((e, None))
                self.drain(False)
            else:
                self.emit(e.encode())

    def drain(self, block):
        """Emit the waiting lines whose digests are known, in order.

        ``block``: emit them all, waiting for digests. Otherwise stop at the
        first line still without one, unless the window is full: then wait
        until it is half empty.
        """
        pending = self.pending
        n = len(pending)
        limit = WINDOW // 2 if n >= WINDOW else WINDOW
        emit = self.emit
        i = 0
        pool = self.pool
        while i < n:
            e, job = pending[i]
            if job is not None:
                if job[JOB_SEEN] or pool.ready(job):
                    if job[JOB_ERROR] is not None:
                        raise job[JOB_ERROR]
                    e.content = job[JOB_DIGEST]
                elif block or n - i >= limit:
                    e.content = pool.wait(job, self.hasher)
                else:
                    break
            emit(e.encode())
            i += 1
        if i:
            del pending[:i]

    def children(self, path):
        base = path if path != b"/" else b""
        out = []
        prefix = self.root + base + b"/"
        excludes = self.excludes
        sbuf = self.sbuf
        for name in _listdir(self.root + path):
            if name == b"." or name == b"..":
                continue
            child = base + b"/" + name
            if excludes and is_excluded(child, excludes):
                continue
            cst = _lstat_z(prefix + name + b"\x00", sbuf)
            if cst is not None:
                out.append((child, cst))
        return out

    def walk_items(self, items):
        for _, kind, path, st in _plan(items):
            if kind == 0:
                self.entry(path, st)
            elif st[0] == self.root_dev:
                self.walk_items(self.children(path))

    def _absent(self, path):
        e = ManifestEntry(path, TYPE_ABSENT)
        self.count += 1
        if self.pending:
            self.pending.append((e, None))
        else:
            self.emit(e.encode())

    def run(self, includes):
        """Emit the lines of every include (nested includes are covered once)."""
        try:
            self._run(includes)
            self.drain(True)
        finally:
            if self.pool is not None:
                self.pool.close()

    def _run(self, includes):
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
            st = _lstat_z(self.root + rel + b"\x00", self.sbuf)
            if st is None:
                absent.append(rel)
            else:
                items.append((rel, st))
        # absent includes are "x" lines, merged into the order
        pending = sorted(absent)

        def emit_absent_before(key):
            while pending and pending[0] < key:
                self._absent(pending.pop(0))

        for key, kind, path, st in _plan(items):
            emit_absent_before(key)
            if kind == 0:
                self.entry(path, st)
            elif st[0] == self.root_dev:
                self.walk_items(self.children(path))
        emit_absent_before(b"\xff" * 4096)


def write_manifest(root, includes, excludes, xattr_names, hashes, path, alg=0x000C,
                   threads=None):
    """Walk, write the manifest to ``path`` and return (digest hex, entries, bytes hashed).

    ``threads``: see :class:`Walker`. The manifest is hashed and written in
    blocks of about 64 KiB.
    """
    from shared_spec.manifest import MANIFEST_HEADER

    h = hashes.new(alg)
    out = open(path, "wb")
    pending = [MANIFEST_HEADER]
    size = [len(MANIFEST_HEADER)]

    def flush():
        block = b"".join(pending)
        h.update(block)
        out.write(block)
        del pending[:]
        size[0] = 0

    def emit(line):
        pending.append(line)
        size[0] += len(line)
        if size[0] > 1 << 16:
            flush()

    try:
        w = Walker(root, excludes, xattr_names, hashes, emit, threads)
        w.run(includes)
        flush()
    finally:
        out.close()
    return h.digest().hex(), w.count, w.bytes_hashed


def walk(root, includes, excludes, xattr_names, hashes, threads=None):
    """All entries as a list (for tests and small trees); see :class:`Walker`."""
    from shared_spec.manifest import MANIFEST_HEADER, parse_manifest

    lines = []
    w = Walker(root, excludes, xattr_names, hashes, lines.append, threads)
    w.run(includes)
    return parse_manifest(MANIFEST_HEADER + b"".join(lines)), w.bytes_hashed
