"""Read and write the SVR4 "newc" cpio archives of Linux initramfs images.

Format (the kernel's ``Documentation/driver-api/early-userspace/buffer-format.rst``):
each member is a 110-byte ASCII header, magic ``070701`` (newc) or ``070702`` (crc,
whose ``check`` field is the 32-bit sum of the data bytes) then thirteen 8-digit
hexadecimal fields; the NUL-terminated name follows, padded so that the data starts on
a 4-byte boundary; the data is padded to 4 bytes too. A member named ``TRAILER!!!``
ends the archive. Hard links are members of one (dev, ino) with ``nlink`` > 1 whose
data is carried by one of them (GNU cpio: the last); the others have size 0.

The reader checks every length against the bytes that are there before using it and
raises :class:`~image_rewriter.errors.InitrdError` naming the offset. The writer is
deterministic: members sorted by name, missing parent directories added before their
contents, one fixed mtime, uid/gid 0, inode numbers assigned in order; modes, device
numbers and hard-link groups are kept.
"""

import os
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from image_rewriter.errors import InitrdError

MAGIC_NEWC = b"070701"
MAGIC_CRC = b"070702"
HEADER_SIZE = 110
TRAILER = "TRAILER!!!"
#: Longest name accepted, NUL included (the kernel's PATH_MAX).
MAX_NAME = 4096
DEFAULT_DIR_MODE = stat.S_IFDIR | 0o755

_HEX = b"0123456789abcdefABCDEF"
_FIELDS = struct.Struct(">13I")


@dataclass(frozen=True)
class CpioEntry:
    """One archive member. ``name`` is the path as stored, decoded with surrogateescape.

    ``data`` is the file content, or the target of a symbolic link; for a hard-link
    member that does not carry the group's data it is empty as stored (see
    :func:`resolve_hardlinks`). ``offset`` is where the header starts in the archive.
    """

    name: str
    mode: int
    data: bytes = b""
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    mtime: int = 0
    ino: int = 0
    devmajor: int = 0
    devminor: int = 0
    rdevmajor: int = 0
    rdevminor: int = 0
    offset: int = field(default=-1, compare=False)

    @property
    def path(self) -> str:
        """The name without a leading ``./`` or ``/`` (``.`` for the root directory)."""
        return normalize_path(self.name)

    def link_key(self) -> tuple[int, int, int] | None:
        """Hard-link group key (devmajor, devminor, ino), or None for a lone member."""
        if self.nlink > 1 and not stat.S_ISDIR(self.mode):
            return (self.devmajor, self.devminor, self.ino)
        return None


@dataclass(frozen=True)
class CpioArchive:
    """The members of one archive and the span ``[start, end)`` it took, trailer included.

    ``end`` is 4-byte aligned: the first byte after the trailer's padding.
    """

    entries: tuple[CpioEntry, ...] = field(repr=False)
    start: int
    end: int


def normalize_path(name: str) -> str:
    """``./a/b``, ``/a/b`` and ``a/b`` all become ``a/b``; the root is ``.``."""
    while name.startswith("./"):
        name = name[2:]
    name = name.lstrip("/")
    name = name.rstrip("/")
    return name or "."


def read_cpio(data: bytes, offset: int = 0) -> CpioArchive:
    """Parse the archive that starts at ``offset`` of ``data`` up to its trailer.

    Padding is counted from ``offset`` (the kernel counts from the start of its buffer,
    where every archive starts 4-byte aligned).

    Raises InitrdError (with the offset) on a bad magic, a non-hex field, a name or
    data length that runs past the end, a name without its NUL, a crc mismatch, or a
    missing trailer.
    """
    view = memoryview(data)
    size = len(data)
    pos = offset
    entries: list[CpioEntry] = []
    while True:
        if pos + HEADER_SIZE > size:
            raise InitrdError("cpio: truncated header (archive has no trailer)", pos)
        magic = bytes(view[pos : pos + 6])
        if magic != MAGIC_NEWC and magic != MAGIC_CRC:
            raise InitrdError("cpio: bad magic %r (want 070701 or 070702)" % magic, pos)
        hexfields = bytes(view[pos + 6 : pos + HEADER_SIZE])
        if hexfields.translate(None, _HEX):
            raise InitrdError("cpio: header field is not hexadecimal", pos)
        (ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
         rdevminor, namesize, check) = _FIELDS.unpack(bytes.fromhex(hexfields.decode()))
        if namesize < 1 or namesize > MAX_NAME:
            raise InitrdError("cpio: name size %d out of range 1..%d" % (namesize, MAX_NAME),
                              pos)
        name_start = pos + HEADER_SIZE
        name_end = name_start + namesize
        data_start = name_end + (-(name_end - offset) & 3)
        data_end = data_start + filesize
        if data_end > size:
            raise InitrdError("cpio: member of %d name and %d data bytes runs past the end "
                              "(%d bytes)" % (namesize, filesize, size), pos)
        raw_name = bytes(view[name_start:name_end])
        if raw_name[-1] != 0 or 0 in raw_name[:-1]:
            raise InitrdError("cpio: name is not a single NUL-terminated string", name_start)
        name = os.fsdecode(raw_name[:-1])
        if name == TRAILER:
            end = data_end + (-(data_end - offset) & 3)
            return CpioArchive(tuple(entries), offset, min(end, size))
        body = bytes(view[data_start:data_end])
        if magic == MAGIC_CRC and (sum(body) & 0xFFFFFFFF) != check:
            raise InitrdError("cpio: crc of %s does not match its header" % name, pos)
        entries.append(CpioEntry(name, mode, body, uid, gid, nlink, mtime, ino, devmajor,
                                 devminor, rdevmajor, rdevminor, pos))
        pos = data_end + (-(data_end - offset) & 3)


def resolve_hardlinks(entries: Iterable[CpioEntry]) -> list[CpioEntry]:
    """Give every member of a hard-link group the data that one of them carries."""
    entries = list(entries)
    carried: dict[tuple[int, int, int], bytes] = {}
    for e in entries:
        key = e.link_key()
        if key is not None and e.data:
            carried[key] = e.data
    out = []
    for e in entries:
        key = e.link_key()
        if key is not None and not e.data and carried.get(key):
            e = replace(e, data=carried[key])
        out.append(e)
    return out


def _header(magic: bytes, fields: tuple[int, ...]) -> bytes:
    return magic + ("%08X" * 13 % fields).encode()


def _pad(n: int) -> bytes:
    return b"\0" * (-n & 3)


def write_cpio(entries: Iterable[CpioEntry], mtime: int | None = None,
               magic: bytes = MAGIC_NEWC) -> bytes:
    """Encode ``entries`` as one archive with its trailer (see the module doc).

    Names are normalized (``./a`` and ``/a`` become ``a``); a later entry of the same
    path replaces an earlier one. ``mtime`` defaults to ``SOURCE_DATE_EPOCH`` or 0.
    Members that were hard links of one group (same dev/ino, ``nlink`` > 1) stay one
    group: same new inode, data on the last member only. Raises InitrdError on a name
    with a ``..`` component or a NUL, or a value that does not fit a field.
    """
    if magic not in (MAGIC_NEWC, MAGIC_CRC):
        raise InitrdError("cpio: unknown magic %r" % magic)
    if mtime is None:
        mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    by_path: dict[str, CpioEntry] = {}
    for e in entries:
        path = normalize_path(e.name)
        if path.split("/").count("..") or "\0" in path:
            raise InitrdError("cpio: refusing name %r" % e.name)
        by_path[path] = e
    for path in list(by_path):
        parent = path.rpartition("/")[0]
        while parent and parent not in by_path:
            by_path[parent] = CpioEntry(parent, DEFAULT_DIR_MODE)
            parent = parent.rpartition("/")[0]
    names = sorted(by_path, key=lambda p: (p != ".", os.fsencode(p)))  # the root first
    # Hard-link groups among the members written: new inode, size, the data carrier.
    groups: dict[tuple[int, int, int], list[str]] = {}
    for path in names:
        key = by_path[path].link_key()
        if key is not None:
            groups.setdefault(key, []).append(path)
    out: list[bytes] = []
    group_ino: dict[tuple[int, int, int], int] = {}
    ino = 0
    for path in names:
        e = by_path[path]
        key = e.link_key()
        members = groups.get(key, []) if key is not None else []
        nlink = 2 if stat.S_ISDIR(e.mode) else 1
        body = e.data
        if key is not None and len(members) > 1:
            nlink = len(members)
            if key not in group_ino:
                ino += 1
                group_ino[key] = ino
            entry_ino = group_ino[key]
            if path == members[-1]:
                body = next((by_path[m].data for m in members if by_path[m].data), b"")
            else:
                body = b""
        else:
            ino += 1
            entry_ino = ino
        raw_name = os.fsencode(path) + b"\0"
        if len(raw_name) > MAX_NAME:
            raise InitrdError("cpio: name of %d bytes is too long: %r" % (len(raw_name), path))
        check = (sum(body) & 0xFFFFFFFF) if magic == MAGIC_CRC else 0
        fields = (entry_ino, e.mode, 0, 0, nlink, mtime, len(body), 0, 0, e.rdevmajor,
                  e.rdevminor, len(raw_name), check)
        if any(f < 0 or f > 0xFFFFFFFF for f in fields):
            raise InitrdError("cpio: a header field of %r does not fit 32 bits" % path)
        out.append(_header(magic, fields))
        out.append(raw_name)
        out.append(_pad(HEADER_SIZE + len(raw_name)))
        out.append(body)
        out.append(_pad(len(body)))
    trailer = TRAILER.encode() + b"\0"
    out.append(_header(magic, (0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, len(trailer), 0)))
    out.append(trailer)
    out.append(_pad(HEADER_SIZE + len(trailer)))
    return b"".join(out)
