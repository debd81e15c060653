"""The rootfs ``tree`` walk under MicroPython: the same manifest as the host's.

Mirrors ``image_rewriter/tree_manifest.py`` (CPython): include paths, exclude
patterns, ``lstat`` (never follows symlinks), no crossing of mount points,
SHA-384 of regular files, hard links hashed once, the recorded ``security.*``
xattrs. MicroPython's ``os`` has no lstat/readlink/xattrs, so they come from
libc through ``ffi``; paths are passed as NUL-terminated bytes, so names need
not be UTF-8.

Speed (the walk must stay close to ``find | sort | xargs sha384sum``):

- files are hashed on worker threads (``_thread``; the unix port has no GIL,
  so read(2) and mbedtls run on every processor) while the calling thread
  walks, and hashes too when its window is full. Lines wait in that bounded
  window for their digests and leave it in path order: the same bytes as a
  sequential walk. One processor, no ``_thread`` or the pure-Python fallback
  hash: no threads, everything on the calling thread;
- a file that fits the buffer is read once and hashed with one
  ``mbedtls_sha512`` call; larger ones are streamed in 1 MiB reads;
- one ``llistxattr`` per entry instead of one ``lgetxattr`` per recorded
  name (most files have no xattrs at all), one stat buffer per walk; the
  lines come from the shared encoder (``ManifestEntry.encode``).
"""

import os
import struct

import libc

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
EINTR = libc.EINTR
ERANGE = libc.ERANGE
_lstat = libc.lstat
_readlink = libc.readlink
_lgetxattr = libc.lgetxattr
_llistxattr = libc.llistxattr
_open = libc.open_
_read = libc.read
_close = libc.close
_O_READ = libc.O_RDONLY | libc.O_CLOEXEC

CHUNK = 1 << 20
#: manifest lines that may wait for their file's digest (bounds memory)
WINDOW = 2048
_STAT_SIZE = 144
#: struct stat on x86_64: st_dev st_ino st_nlink st_mode st_uid st_gid (pad) st_rdev st_size
_STAT_FMT = "<QQQIII4xQq"
_XATTR_ABSENT = (ENODATA, EOPNOTSUPP, libc.EPERM)
_S_IFMT = 0o170000
_S_IFREG = 0o100000
_S_IFDIR = 0o040000


class TreeError(Exception):
    """A path cannot be read; the message names it."""


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


class FileHasher:
    """SHA-384 of regular files through one reusable buffer (read(2) straight into it).

    With a provider that has ``digester(alg)`` (:mod:`mbedhash`) the hashing
    runs in C and a file that fits the buffer costs one read and one hash
    call; otherwise it streams through ``hashes.new(alg)``. One hasher per
    thread.
    """

    def __init__(self, hashes, alg=0x000C):
        self.hashes = hashes
        self.alg = alg
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.bytes = 0
        make = getattr(hashes, "digester", None)
        self.digester = make(alg) if make is not None else None

    def hash(self, path, size=-1):
        """Hex SHA-384 of the file at ``path`` (bytes or str); ``size``: its lstat size."""
        return self.hash_z(_z(path), size)

    def _fill(self, fd, zpath):
        while True:
            n = _read(fd, self.buf, CHUNK)
            if n >= 0:
                return n
            e = _errno()
            if e != EINTR:
                raise TreeError("cannot read %s: errno %d" % (zpath[:-1], e))

    def hash_z(self, zpath, size=-1):
        """As :meth:`hash`, for a NUL-terminated path."""
        fd = _open(zpath, _O_READ, 0)
        while fd < 0:
            e = _errno()
            if e != EINTR:
                raise TreeError("cannot open %s: errno %d" % (zpath[:-1], e))
            fd = _open(zpath, _O_READ, 0)
        try:
            n = self._fill(fd, zpath)
            total = n
            d = self.digester
            if d is not None:
                # a short read of the size lstat gave is the end of a regular file
                if n == size and n < CHUNK:
                    self.bytes += n
                    return d.hexdigest_of(self.buf, n)
                d.start()
                while n > 0:
                    d.update(self.buf, n)
                    n = self._fill(fd, zpath)
                    total += n
                self.bytes += total
                return d.finish()
            h = self.hashes.new(self.alg)
            while n > 0:
                h.update(self.view[:n] if n < CHUNK else self.buf)
                n = self._fill(fd, zpath)
                total += n
            self.bytes += total
            return h.digest().hex()
        finally:
            _close(fd)


# a queued file: [NUL-terminated path, lstat size, digest, error, done lock, seen]; a
# worker writes digest or error in place, then releases ``done``; ``seen`` is the main
# thread's own note that it has taken ``done`` back (a hard link's job is met again)
_PATH, _SIZE, _DIGEST, _ERROR, _DONE, _SEEN = range(6)


class _HashPool:
    """Worker threads that hash queued files (FIFO), each with its own :class:`FileHasher`.

    The unix port of MicroPython has no GIL: threads run Python in parallel
    and share nothing safely but locks. So the queue is guarded by ``qlock``,
    a job is a fixed-size list the worker writes in place before releasing the
    job's ``done`` lock, and each worker reports its end in its own slot of
    ``exited``. Only the main thread submits and waits. Idle workers sleep on
    ``gate``, which the main thread releases on submit; a worker that misses
    that wake-up only idles, since a waiting main thread hashes queued jobs
    itself.
    """

    def __init__(self, thread, hashes, alg, nworkers):
        self._lock = thread.allocate_lock
        self.queue = []
        self.qlock = thread.allocate_lock()
        self.gate = thread.allocate_lock()
        self.gate.acquire()
        self.stop = False
        self.hashers = [FileHasher(hashes, alg) for _ in range(nworkers)]
        self.exited = [True] * nworkers
        for i in range(nworkers):
            self.exited[i] = False
            try:
                thread.start_new_thread(self._work, (i, self.hashers[i]))
            except (OSError, RuntimeError, MemoryError):
                # no more threads (resource limits): the ones started will do
                self.exited[i] = True
                break
        #: worker threads running
        self.workers = self.exited.count(False)

    def submit(self, zpath, size):
        done = self._lock()
        done.acquire()
        job = [zpath, size, None, None, done, False]
        self.qlock.acquire()
        self.queue.append(job)
        self.qlock.release()
        if self.gate.locked():
            self.gate.release()
        return job

    def _take(self):
        self.qlock.acquire()
        job = self.queue.pop(0) if self.queue else None
        self.qlock.release()
        return job

    @staticmethod
    def run(job, hasher):
        try:
            job[_DIGEST] = hasher.hash_z(job[_PATH], job[_SIZE])
        except Exception as e:
            job[_ERROR] = e
        job[_DONE].release()

    def _work(self, i, hasher):
        try:
            while True:
                job = self._take()
                if job is not None:
                    self.run(job, hasher)
                elif self.stop:
                    break
                else:
                    self.gate.acquire()
        finally:
            self.exited[i] = True

    def ready(self, job):
        """True when ``job`` is done (never blocks)."""
        if not job[_SEEN] and job[_DONE].acquire(0):
            job[_SEEN] = True
        return job[_SEEN]

    def wait(self, job, hasher):
        """Block until ``job`` is done, hashing queued jobs meanwhile; its digest."""
        while not self.ready(job):
            j = self._take()
            if j is None:
                job[_DONE].acquire()  # a worker has it; released when it is done
                job[_SEEN] = True
                break
            self.run(j, hasher)
        if job[_ERROR] is not None:
            raise job[_ERROR]
        return job[_DIGEST]

    def close(self):
        """Drop queued jobs and stop the workers; returns once all have ended."""
        import time

        self.qlock.acquire()
        del self.queue[:]
        self.qlock.release()
        self.stop = True
        while not all(self.exited):
            if self.gate.locked():
                self.gate.release()
            time.sleep_ms(1)

    def hashed_bytes(self):
        return sum(h.bytes for h in self.hashers)


def _default_threads(hasher):
    """Worker threads for this machine: one per processor but the walker's own.

    The walking thread hashes too whenever its window of lines is full, so
    with N processors, N - 1 workers keep them all busy; more only contend.
    0 with the pure-Python fallback hash (kept on the plainest path) or
    without ``_thread``.
    """
    if hasher.digester is None:
        return 0
    try:
        import _thread  # noqa: F401
    except ImportError:
        return 0
    return libc.usable_cpus() - 1


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
            threads = _default_threads(self.hasher)
        if threads > 0:
            import _thread

            self.pool = _HashPool(_thread, hashes, self.hasher.alg, threads)
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
                if job[_SEEN] or pool.ready(job):
                    if job[_ERROR] is not None:
                        raise job[_ERROR]
                    e.content = job[_DIGEST]
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
