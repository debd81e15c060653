"""The partitions of a raw disk image, read on the host without root.

GPT (UEFI 2.10 §5.3) is read from the primary header at LBA 1 (512-byte sectors, then
4096-byte ones), with both CRC32s checked; a disk without a GPT falls back to the MBR
(primary entries, and logical partitions through the chain of extended boot records,
numbered from 5 as Linux does). A protective MBR (type 0xEE) without a valid GPT is an
error, not four bogus partitions.

Partition UUIDs are the ones Linux shows as ``PARTUUID``: the GPT unique partition GUID,
or ``<disk signature>-<number>`` (hex) on an MBR disk, the same text the agent's
``rootdev.partition_uuid`` computes at boot.
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from image_rewriter.errors import PartitionTableError

GPT_SIGNATURE = b"EFI PART"
GPT_HEADER_MIN = 92
MBR_SIGNATURE = b"\x55\xaa"
MBR_PROTECTIVE = 0xEE
MBR_EXTENDED = (0x05, 0x0F, 0x85)
SECTOR_SIZES = (512, 4096)
MAX_GPT_ENTRIES = 16384
MAX_LOGICAL = 256


@dataclass(frozen=True)
class Partition:
    """One partition of a disk image.

    Attributes:
        number: Linux partition number (1-based; MBR logical partitions from 5).
        start: byte offset of the first byte in the image.
        size: length in bytes.
        type_id: GPT partition type GUID (lower-case text), or ``0xNN`` for an MBR type.
        uuid: ``PARTUUID``: the GPT unique partition GUID, or ``<signature>-<NN>`` on MBR.
        name: the GPT partition name ('' on MBR).
        table: ``gpt`` or ``dos``.
    """

    number: int
    start: int
    size: int
    type_id: str
    uuid: str
    name: str
    table: str

    @property
    def end(self) -> int:
        """Byte offset just past the partition."""
        return self.start + self.size


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=bytes(raw)))


class _Image:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.f = open(path, "rb")
        except OSError as e:
            raise PartitionTableError("cannot open disk image %s: %s" % (path, e.strerror)) \
                from e
        self.size = os.fstat(self.f.fileno()).st_size

    def read(self, offset: int, size: int) -> bytes:
        self.f.seek(offset)
        data = self.f.read(size)
        if len(data) != size:
            raise PartitionTableError("%s: truncated: %d bytes wanted, %d read"
                                      % (self.path, size, len(data)), offset)
        return data

    def close(self) -> None:
        self.f.close()


def _gpt(img: _Image, sector: int) -> list[Partition] | None:
    """The GPT partitions with ``sector``-byte LBAs, or None when LBA 1 has no GPT header."""
    if img.size < 2 * sector:
        return None
    hdr = img.read(sector, sector)
    if hdr[:8] != GPT_SIGNATURE:
        return None
    where = "%s: GPT header" % img.path
    hsize = struct.unpack_from("<I", hdr, 12)[0]
    if not GPT_HEADER_MIN <= hsize <= sector:
        raise PartitionTableError("%s: header size %d" % (where, hsize), sector + 12)
    crc = struct.unpack_from("<I", hdr, 16)[0]
    if zlib.crc32(hdr[:16] + b"\0\0\0\0" + hdr[20:hsize]) != crc:
        raise PartitionTableError("%s: header CRC32 mismatch" % where, sector + 16)
    entries_lba, count, esize, ecrc = struct.unpack_from("<QIII", hdr, 72)
    if count > MAX_GPT_ENTRIES or esize < 128 or esize % 8:
        raise PartitionTableError("%s: %d entries of %d bytes" % (where, count, esize),
                                  sector + 80)
    table_off = entries_lba * sector
    if table_off + count * esize > img.size:
        raise PartitionTableError("%s: entry array beyond the end of the image (%d bytes)"
                                  % (where, img.size), sector + 72)
    table = img.read(table_off, count * esize)
    if zlib.crc32(table) != ecrc:
        raise PartitionTableError("%s: entry array CRC32 mismatch" % where, sector + 88)
    out = []
    for i in range(count):
        e = table[i * esize:(i + 1) * esize]
        if e[:16] == b"\0" * 16:
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        if last < first:
            raise PartitionTableError("%s: GPT entry %d ends (LBA %d) before it starts (LBA %d)"
                                      % (img.path, i + 1, last, first), table_off + i * esize)
        name = e[56:128].decode("utf-16-le", "replace").split("\0", 1)[0]
        out.append(Partition(i + 1, first * sector, (last - first + 1) * sector, _guid(e[:16]),
                             _guid(e[16:32]), name, "gpt"))
    return out


def _mbr_entries(sector: bytes) -> list[tuple[int, int, int]]:
    """(type, first LBA, sectors) of the four entries of a boot record."""
    out = []
    for i in range(4):
        ptype = sector[446 + 16 * i + 4]
        first, count = struct.unpack_from("<II", sector, 446 + 16 * i + 8)
        out.append((ptype, first, count))
    return out


def _mbr(img: _Image, mbr: bytes) -> list[Partition]:
    signature = struct.unpack_from("<I", mbr, 440)[0]

    def part(number: int, ptype: int, first_lba: int, count: int) -> Partition:
        return Partition(number, first_lba * 512, count * 512, "0x%02x" % ptype,
                         "%08x-%02x" % (signature, number), "", "dos")

    out = []
    extended = None
    for i, (ptype, first, count) in enumerate(_mbr_entries(mbr)):
        if ptype == 0 or count == 0:
            continue
        if ptype in MBR_EXTENDED:
            extended = first
        out.append(part(i + 1, ptype, first, count))
    if extended is not None:
        ebr_lba = extended
        number = 5
        while True:
            off = ebr_lba * 512
            ebr = img.read(off, 512)
            if ebr[510:512] != MBR_SIGNATURE:
                raise PartitionTableError("%s: extended boot record without signature"
                                          % img.path, off + 510)
            (ptype, first, count), (ntype, nfirst, _) = _mbr_entries(ebr)[:2]
            if ptype and count:
                out.append(part(number, ptype, ebr_lba + first, count))
                number += 1
            if ntype not in MBR_EXTENDED or nfirst == 0:
                break
            if number > MAX_LOGICAL:
                raise PartitionTableError("%s: more than %d logical partitions (a loop in "
                                          "the EBR chain?)" % (img.path, MAX_LOGICAL), off)
            ebr_lba = extended + nfirst
    for p in out:
        if p.end > img.size:
            raise PartitionTableError("%s: partition %d ends at byte %d, past the end of the "
                                      "image (%d bytes)" % (img.path, p.number, p.end, img.size),
                                      446)
    return out


def read_partitions(image: str | Path) -> list[Partition]:
    """The partitions of the raw disk image ``image``, by number.

    Raises:
        PartitionTableError: the file cannot be read, has neither a GPT nor an MBR, or its
            table is damaged (the message names the file and the offset).
    """
    path = Path(image)
    img = _Image(path)
    try:
        for sector in SECTOR_SIZES:
            parts = _gpt(img, sector)
            if parts is not None:
                return parts
        if img.size < 512:
            raise PartitionTableError("%s is not a disk image (%d bytes)" % (path, img.size))
        mbr = img.read(0, 512)
        if mbr[510:512] != MBR_SIGNATURE:
            raise PartitionTableError("%s is not a partitioned disk image: neither a GPT header "
                                      "at LBA 1 nor an MBR boot signature" % path, 510)
        if any(t == MBR_PROTECTIVE for t, _, _ in _mbr_entries(mbr)):
            raise PartitionTableError("%s: protective MBR but no valid GPT header at LBA 1"
                                      % path, 446)
        return sorted(_mbr(img, mbr), key=lambda p: p.number)
    finally:
        img.close()


def get_partition(image: str | Path, number: int) -> Partition:
    """Partition ``number`` of ``image``; :class:`PartitionTableError` if there is none."""
    parts = read_partitions(image)
    for p in parts:
        if p.number == number:
            return p
    raise PartitionTableError("%s has no partition %d (partitions: %s)"
                              % (image, number, ", ".join(str(p.number) for p in parts)
                                 or "none"))
