"""libc through MicroPython's ``ffi``: the system calls the agent needs and ``errno``.

MicroPython's ``os`` has no lstat, readlink, xattrs, fsync or raw descriptors;
the bundled C library has them. Paths are passed as NUL-terminated bytes.
"""

import ffi

_libc = ffi.open("libc.so.6")

open_ = _libc.func("i", "open", "pii")
read = _libc.func("l", "read", "ipL")
write = _libc.func("l", "write", "ipL")
close = _libc.func("i", "close", "i")
fsync = _libc.func("i", "fsync", "i")
lstat = _libc.func("i", "lstat", "pp")
readlink = _libc.func("l", "readlink", "ppL")
lgetxattr = _libc.func("l", "lgetxattr", "pppL")
_errno_loc = _libc.func("p", "__errno_location", "")

O_RDONLY = 0
O_WRONLY = 1
O_RDWR = 2
O_CREAT = 0o100
O_TRUNC = 0o1000
O_APPEND = 0o2000

ENOENT = 2
ENODATA = 61
EOPNOTSUPP = 95


def errno():
    """The calling thread's errno after a failed call."""
    import uctypes

    return uctypes.struct(_errno_loc(), {"v": uctypes.INT32 | 0}).v


def z(path):
    """A path as the NUL-terminated bytes libc takes."""
    if isinstance(path, str):
        path = path.encode()
    return bytes(path) + b"\x00"
