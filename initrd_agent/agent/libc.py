"""libc through MicroPython's ``ffi``: the system calls the agent needs and ``errno``.

MicroPython's ``os`` has no lstat, readlink, xattrs, fsync, ioctl, mount or
raw descriptors; the bundled C library (glibc 2.41, which exports ``lstat``
as a real symbol) has them. Paths are passed as NUL-terminated bytes.
"""

import ffi

_libc = ffi.open("libc.so.6")

open_ = _libc.func("i", "open", "pii")
read = _libc.func("l", "read", "ipL")
write = _libc.func("l", "write", "ipL")
close = _libc.func("i", "close", "i")
fsync = _libc.func("i", "fsync", "i")
lseek = _libc.func("l", "lseek", "ili")
lstat = _libc.func("i", "lstat", "pp")
readlink = _libc.func("l", "readlink", "ppL")
lgetxattr = _libc.func("l", "lgetxattr", "pppL")
llistxattr = _libc.func("l", "llistxattr", "ppL")
sysconf = _libc.func("l", "sysconf", "i")
sched_getaffinity = _libc.func("i", "sched_getaffinity", "iLp")
ioctl = _libc.func("i", "ioctl", "iLp")
mount = _libc.func("i", "mount", "ppsLp")
strerror = _libc.func("s", "strerror", "i")
_errno_loc = _libc.func("p", "__errno_location", "")

O_RDONLY = 0
O_WRONLY = 1
O_RDWR = 2
O_CREAT = 0o100
O_TRUNC = 0o1000
O_APPEND = 0o2000
O_CLOEXEC = 0o2000000

O_NOFOLLOW = 0o400000

_SC_NPROCESSORS_ONLN = 84

EPERM = 1
ENOENT = 2
EINTR = 4
EACCES = 13
ENOTTY = 25
EINVAL = 22
ERANGE = 34
ENODATA = 61
EOPNOTSUPP = 95

_uctypes = None


def errno():
    """The calling thread's errno after a failed call.

    errno is thread-local: its address (``__errno_location``) is asked on every
    call, so the agent's worker threads read their own.
    """
    global _uctypes
    if _uctypes is None:
        import uctypes

        _uctypes = uctypes
    return _uctypes.struct(_errno_loc(), {"v": _uctypes.INT32 | 0}).v


def describe(e):
    """``EACCES (13): Permission denied`` style text for an errno value."""
    names = {1: "EPERM", 2: "ENOENT", 5: "EIO", 9: "EBADF", 13: "EACCES", 16: "EBUSY",
             20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 25: "ENOTTY", 28: "ENOSPC",
             30: "EROFS", 34: "ERANGE", 61: "ENODATA", 95: "EOPNOTSUPP"}
    return "%s (%d): %s" % (names.get(e, "errno"), e, strerror(e))


def z(path):
    """A path as the NUL-terminated bytes libc takes."""
    if isinstance(path, str):
        path = path.encode()
    return bytes(path) + b"\x00"


def usable_cpus():
    """Processors this process may run on (its affinity mask), at least 1.

    Falls back to ``sysconf(_SC_NPROCESSORS_ONLN)`` when the mask cannot be read.
    """
    mask = bytearray(128)
    if sched_getaffinity(0, len(mask), mask) == 0:
        n = 0
        for b in mask:
            while b:
                n += b & 1
                b >>= 1
    else:
        n = sysconf(_SC_NPROCESSORS_ONLN)
    return n if n > 0 else 1
