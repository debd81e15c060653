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

EPERM = 1
ENOENT = 2
EACCES = 13
ENOTTY = 25
EINVAL = 22
ENODATA = 61
EOPNOTSUPP = 95

_errno_view = None


def errno():
    """The calling thread's errno after a failed call."""
    global _errno_view
    if _errno_view is None:
        import uctypes

        _errno_view = uctypes.struct(_errno_loc(), {"v": uctypes.INT32 | 0})
    return _errno_view.v


def describe(e):
    """``EACCES (13): Permission denied`` style text for an errno value."""
    names = {1: "EPERM", 2: "ENOENT", 5: "EIO", 9: "EBADF", 13: "EACCES", 16: "EBUSY",
             20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 25: "ENOTTY", 28: "ENOSPC",
             30: "EROFS", 61: "ENODATA", 95: "EOPNOTSUPP"}
    return "%s (%d): %s" % (names.get(e, "errno"), e, strerror(e))


def z(path):
    """A path as the NUL-terminated bytes libc takes."""
    if isinstance(path, str):
        path = path.encode()
    return bytes(path) + b"\x00"
