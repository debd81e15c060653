"""Bounds-checked little/big-endian reader used by every decoder.

:class:`Reader` never allocates from a length it has not checked against the
bytes that remain, and reports the absolute offset of any failure, so an
error message can name the byte in the file that is wrong.
"""

import struct

from shared_spec.errors import LimitError, SpecError, TruncatedError


class Reader:
    """Sequential reader over a bytes-like object.

    ``base`` is the absolute offset of ``data[0]`` in the original input, so
    a reader over a sub-slice still reports file offsets.
    """

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None,
                 base: int = 0, source: str | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end
        if self.end > len(data) or pos > self.end or pos < 0:
            raise SpecError("reader window outside the input", base + pos, None, source)
        self.base = base
        self.source = source

    @property
    def offset(self) -> int:
        """Absolute offset of the next byte."""
        return self.base + self.pos

    def remaining(self) -> int:
        return self.end - self.pos

    def at_end(self) -> bool:
        return self.pos >= self.end

    def _need(self, n: int, field: str) -> None:
        if n < 0:
            raise LimitError("negative length %d" % n, self.offset, field, self.source)
        if self.end - self.pos < n:
            raise TruncatedError(
                "need %d bytes, %d left" % (n, self.end - self.pos), self.offset, field, self.source
            )

    def read(self, n: int, field: str) -> bytes:
        """Read ``n`` bytes; ``n`` is checked against what remains first."""
        self._need(n, field)
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def peek(self, n: int) -> bytes:
        """Up to ``n`` bytes from the current position without consuming them."""
        return bytes(self.data[self.pos:min(self.pos + n, self.end)])

    def skip(self, n: int, field: str) -> None:
        self._need(n, field)
        self.pos += n

    def u8(self, field: str) -> int:
        self._need(1, field)
        v = self.data[self.pos]
        self.pos += 1
        return v

    def _unpack(self, fmt: str, size: int, field: str) -> int:
        self._need(size, field)
        v = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += size
        return v

    def u16(self, field: str) -> int:
        return self._unpack("<H", 2, field)

    def u32(self, field: str) -> int:
        return self._unpack("<I", 4, field)

    def u64(self, field: str) -> int:
        return self._unpack("<Q", 8, field)

    def u16be(self, field: str) -> int:
        return self._unpack(">H", 2, field)

    def u32be(self, field: str) -> int:
        return self._unpack(">I", 4, field)

    def u64be(self, field: str) -> int:
        return self._unpack(">Q", 8, field)

    def sized(self, size_field: str, field: str, width: int = 4) -> bytes:
        """A little-endian length of ``width`` bytes followed by that many bytes."""
        at = self.offset
        if width == 4:
            n = self.u32(size_field)
        elif width == 2:
            n = self.u16(size_field)
        elif width == 1:
            n = self.u8(size_field)
        else:
            n = self.u64(size_field)
        if n > self.remaining():
            raise LimitError(
                "%s = %d exceeds the %d bytes left" % (size_field, n, self.remaining()),
                at, size_field, self.source,
            )
        return self.read(n, field)

    def sub(self, n: int, field: str) -> "Reader":
        """A reader over the next ``n`` bytes; this reader moves past them."""
        self._need(n, field)
        r = Reader(self.data, self.pos, self.pos + n, self.base, self.source)
        self.pos += n
        return r

    def fail(self, cls: type, message: str, field: str | None = None,
             offset: int | None = None) -> SpecError:
        """Build an exception of ``cls`` located at ``offset`` (default: here)."""
        return cls(message, self.offset if offset is None else offset, field, self.source)

    # ``bytes`` is kept as an alias of ``read``; it comes last so that the
    # annotations above still mean the builtin type.
    bytes = read


def u8(v: int) -> bytes:
    return struct.pack("<B", v)


def u16(v: int) -> bytes:
    return struct.pack("<H", v)


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def u16be(v: int) -> bytes:
    return struct.pack(">H", v)


def u32be(v: int) -> bytes:
    return struct.pack(">I", v)


def u64be(v: int) -> bytes:
    return struct.pack(">Q", v)


def hexs(b: bytes) -> str:
    """Lower-case hex of ``b`` (works on bytes, bytearray and memoryview)."""
    return bytes(b).hex()
