"""Hashing the files of the rootfs ``tree`` walk (MicroPython): one reusable buffer per
thread, and a pool of worker threads.

- a file that fits the buffer is read once and hashed with one
  ``mbedtls_sha512`` call; larger ones are streamed in 1 MiB reads;
- :class:`HashPool` hashes queued files on worker threads (``_thread``; the
  unix port has no GIL, so read(2) and mbedtls run on every processor) while
  the walker (:mod:`tree`) goes on; the walker keeps lines in path order.
"""

import libc

CHUNK = 1 << 20
_O_READ = libc.O_RDONLY | libc.O_CLOEXEC
EINTR = libc.EINTR


class TreeError(Exception):
    """A path cannot be read; the message names it."""


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
        return self.hash_z(libc.z(path), size)

    def _fill(self, fd, zpath):
        while True:
            n = libc.read(fd, self.buf, CHUNK)
            if n >= 0:
                return n
            e = libc.errno()
            if e != EINTR:
                raise TreeError("cannot read %s: errno %d" % (zpath[:-1], e))

    def hash_z(self, zpath, size=-1):
        """As :meth:`hash`, for a NUL-terminated path."""
        fd = libc.open_(zpath, _O_READ, 0)
        while fd < 0:
            e = libc.errno()
            if e != EINTR:
                raise TreeError("cannot open %s: errno %d" % (zpath[:-1], e))
            fd = libc.open_(zpath, _O_READ, 0)
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
            libc.close(fd)


# a queued file: [NUL-terminated path, lstat size, digest, error, done lock, seen]; a
# worker writes digest or error in place, then releases ``done``; ``seen`` is the main
# thread's own note that it has taken ``done`` back (a hard link's job is met again)
JOB_PATH, JOB_SIZE, JOB_DIGEST, JOB_ERROR, JOB_DONE, JOB_SEEN = range(6)


class HashPool:
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
            job[JOB_DIGEST] = hasher.hash_z(job[JOB_PATH], job[JOB_SIZE])
        except Exception as e:
            job[JOB_ERROR] = e
        job[JOB_DONE].release()

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
        if not job[JOB_SEEN] and job[JOB_DONE].acquire(0):
            job[JOB_SEEN] = True
        return job[JOB_SEEN]

    def wait(self, job, hasher):
        """Block until ``job`` is done, hashing queued jobs meanwhile; its digest."""
        while not self.ready(job):
            j = self._take()
            if j is None:
                job[JOB_DONE].acquire()  # a worker has it; released when it is done
                job[JOB_SEEN] = True
                break
            self.run(j, hasher)
        if job[JOB_ERROR] is not None:
            raise job[JOB_ERROR]
        return job[JOB_DIGEST]

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


def default_threads(hasher):
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
