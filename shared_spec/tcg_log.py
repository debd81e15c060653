"""TCG PC Client firmware event logs: TCG_PCR_EVENT, TCG_PCR_EVENT2, Spec ID.

Layouts (TCG PC Client Platform Firmware Profile, v1.06, §10):

``TCG_PCR_EVENT`` (SHA-1 format, the header of every log and every record
of a legacy TCG 1.2-style log)::

    u32 PCRIndex | u32 EventType | u8 Digest[20] | u32 EventSize | u8 Event[EventSize]

``TCG_PCR_EVENT2`` (crypto-agile records)::

    u32 PCRIndex | u32 EventType | u32 count | count x (u16 alg, u8 digest[size(alg)])
    | u32 EventSize | u8 Event[EventSize]

A crypto-agile log starts with a ``TCG_PCR_EVENT`` of type EV_NO_ACTION whose
event is a ``TCG_EfiSpecIDEvent`` ("Spec ID Event03") listing the algorithms
and their digest sizes; the sizes in a record come from that table, never from
the record itself.

The same format serves the CCEL (whose Spec ID event may carry index 1 and
whose log area ends with 0xFF padding) and the cvmchain agent's logs. The
``index`` of an event is what the log holds: a PCR number, or a CC MR index.
"""

import struct

from shared_spec.algorithms import ALG_SHA1, alg_name, digest_size
from shared_spec.binary import Reader
from shared_spec.errors import EncodeError, FormatError, LimitError, SpecError, TruncatedError
from shared_spec.event_types import EV_NO_ACTION

SPEC_ID_SIGNATURE_03 = b"Spec ID Event03\x00"
SPEC_ID_SIGNATURE_00 = b"Spec ID Event00\x00"
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\x00"

#: Upper bound on digests per TCG_PCR_EVENT2; the registry has fewer hash algorithms.
MAX_DIGESTS = 16
#: Upper bound on algorithms in a Spec ID event.
MAX_SPEC_ALGORITHMS = 16

FORMAT_CRYPTO_AGILE = "crypto_agile"
FORMAT_SHA1 = "sha1"

_HDR = struct.calcsize("<II")


class SpecIdEvent:
    """TCG_EfiSpecIDEvent ("Spec ID Event03") or the legacy "Spec ID Event00"."""

    def __init__(self, signature: bytes = SPEC_ID_SIGNATURE_03, platform_class: int = 0,
                 version_minor: int = 0, version_major: int = 2, errata: int = 0,
                 uintn_size: int = 2, algorithms: list | None = None,
                 vendor_info: bytes = b"") -> None:
        self.signature = signature
        self.platform_class = platform_class
        self.version_minor = version_minor
        self.version_major = version_major
        self.errata = errata
        self.uintn_size = uintn_size
        #: list of (alg id, digest size) in log order
        self.algorithms = list(algorithms or [])
        self.vendor_info = vendor_info

    @property
    def is_crypto_agile(self) -> bool:
        return self.signature == SPEC_ID_SIGNATURE_03

    def digest_sizes(self) -> dict:
        """alg id -> digest size as declared by the log."""
        out = {}
        for alg, size in self.algorithms:
            out[alg] = size
        return out

    @classmethod
    def decode(cls, data: bytes, base: int = 0, source: str | None = None) -> "SpecIdEvent":
        r = Reader(data, base=base, source=source)
        sig = r.read(16, "SpecIdEvent.signature")
        if sig not in (SPEC_ID_SIGNATURE_03, SPEC_ID_SIGNATURE_00):
            raise FormatError("not a Spec ID event signature: %r" % sig, base, "signature", source)
        platform_class = r.u32("SpecIdEvent.platformClass")
        minor = r.u8("SpecIdEvent.specVersionMinor")
        major = r.u8("SpecIdEvent.specVersionMajor")
        errata = r.u8("SpecIdEvent.specErrata")
        uintn = r.u8("SpecIdEvent.uintnSize")
        algs = []
        if sig == SPEC_ID_SIGNATURE_03:
            at = r.offset
            n = r.u32("SpecIdEvent.numberOfAlgorithms")
            if n == 0 or n > MAX_SPEC_ALGORITHMS or n * 4 > r.remaining():
                raise LimitError("numberOfAlgorithms = %d is not plausible" % n, at,
                                 "SpecIdEvent.numberOfAlgorithms", source)
            for _ in range(n):
                alg_at = r.offset
                alg = r.u16("SpecIdEvent.digestSizes.algorithmId")
                size = r.u16("SpecIdEvent.digestSizes.digestSize")
                known = digest_size(alg)
                if known is not None and known != size:
                    raise FormatError("%s declared with digest size %d, registry says %d"
                                      % (alg_name(alg), size, known), alg_at,
                                      "SpecIdEvent.digestSizes.digestSize", source)
                if size == 0 or size > 128:
                    raise LimitError("digest size %d for alg 0x%04x" % (size, alg), alg_at,
                                     "SpecIdEvent.digestSizes.digestSize", source)
                algs.append((alg, size))
        vendor = r.sized("SpecIdEvent.vendorInfoSize", "SpecIdEvent.vendorInfo", 1)
        if not r.at_end():
            raise FormatError("%d trailing bytes after vendorInfo" % r.remaining(), r.offset,
                              "SpecIdEvent", source)
        return cls(sig, platform_class, minor, major, errata, uintn, algs, vendor)

    def encode(self) -> bytes:
        out = [self.signature, struct.pack("<IBBBB", self.platform_class, self.version_minor,
                                           self.version_major, self.errata, self.uintn_size)]
        if self.signature == SPEC_ID_SIGNATURE_03:
            out.append(struct.pack("<I", len(self.algorithms)))
            for alg, size in self.algorithms:
                out.append(struct.pack("<HH", alg, size))
        if len(self.vendor_info) > 255:
            raise EncodeError("vendorInfo longer than 255 bytes", None, "vendorInfo")
        out.append(struct.pack("<B", len(self.vendor_info)))
        out.append(self.vendor_info)
        return b"".join(out)


class TcgEvent:
    """One record of a TCG log (either format).

    ``digests`` is a list of ``(alg id, digest bytes)`` in record order;
    ``offset`` the absolute offset of the record; ``legacy`` is True for a
    TCG_PCR_EVENT (SHA-1 format) record.
    """

    __slots__ = ("data", "digests", "event_type", "index", "legacy", "offset", "size")

    def __init__(self, index: int, event_type: int, digests: list, data: bytes,
                 offset: int = 0, legacy: bool = False, size: int = 0) -> None:
        self.index = index
        self.event_type = event_type
        self.digests = digests
        self.data = data
        self.offset = offset
        self.legacy = legacy
        self.size = size

    def digest(self, alg: int) -> bytes | None:
        """This record's digest for ``alg``, or None when it has none."""
        for a, d in self.digests:
            if a == alg:
                return d
        return None

    @property
    def extends(self) -> bool:
        """False for EV_NO_ACTION, which is logged but never extended."""
        return self.event_type != EV_NO_ACTION

    def digest_for(self, alg: int, hashes: object) -> bytes | None:
        """The value this event extends into bank ``alg`` (replay protocol)."""
        for a, d in self.digests:
            if a == alg:
                return d
        return None

    def encode(self) -> bytes:
        """The record's exact bytes (TCG_PCR_EVENT or TCG_PCR_EVENT2)."""
        if self.legacy:
            return encode_pcr_event(self.index, self.event_type, self.digest(ALG_SHA1) or b"",
                                    self.data)
        return encode_pcr_event2(self.index, self.event_type, self.digests, self.data)

    def __repr__(self) -> str:
        return "TcgEvent(index=%d, type=0x%x, offset=%d)" % (self.index, self.event_type,
                                                              self.offset)


class TcgLog:
    """A decoded TCG log.

    ``header`` is the TCG_PCR_EVENT carrying the Spec ID event (None for a
    legacy log that has none); ``events`` the records after it; ``trailer``
    the bytes after the last record (0xFF or zero padding), kept for a
    byte-exact round trip; ``error`` a :class:`SpecError` when the log was
    parsed leniently and ended in a bad record.
    """

    def __init__(self, fmt: str, header: TcgEvent | None, spec_id: SpecIdEvent | None,
                 events: list, trailer: bytes = b"", error: SpecError | None = None,
                 source: str | None = None) -> None:
        self.format = fmt
        self.header = header
        self.spec_id = spec_id
        self.events = events
        self.trailer = trailer
        self.error = error
        self.source = source

    @property
    def algorithms(self) -> list[int]:
        """The banks this log carries, in Spec ID order (SHA-1 for a legacy log)."""
        if self.spec_id is not None and self.spec_id.is_crypto_agile:
            return [a for a, _ in self.spec_id.algorithms]
        return [ALG_SHA1]

    def encode(self) -> bytes:
        parts = []
        if self.header is not None:
            parts.append(self.header.encode())
        for ev in self.events:
            parts.append(ev.encode())
        parts.append(self.trailer)
        return b"".join(parts)


def encode_pcr_event(index: int, event_type: int, sha1: bytes, data: bytes) -> bytes:
    """A TCG_PCR_EVENT record."""
    if len(sha1) != 20:
        raise EncodeError("TCG_PCR_EVENT digest must be 20 bytes, got %d" % len(sha1), None,
                          "Digest")
    return struct.pack("<II", index, event_type) + bytes(sha1) + struct.pack("<I", len(data)) + \
        bytes(data)


def encode_pcr_event2(index: int, event_type: int, digests: list, data: bytes) -> bytes:
    """A TCG_PCR_EVENT2 record; ``digests`` is a list of (alg, bytes)."""
    parts = [struct.pack("<III", index, event_type, len(digests))]
    for alg, d in digests:
        size = digest_size(alg)
        if size is not None and size != len(d):
            raise EncodeError("%s digest must be %d bytes, got %d" % (alg_name(alg), size, len(d)),
                              None, "Digests")
        parts.append(struct.pack("<H", alg))
        parts.append(bytes(d))
    parts.append(struct.pack("<I", len(data)))
    parts.append(bytes(data))
    return b"".join(parts)


def encode_spec_id_header(spec_id: SpecIdEvent, index: int = 0) -> bytes:
    """The first record of a crypto-agile log: a TCG_PCR_EVENT holding ``spec_id``."""
    return encode_pcr_event(index, EV_NO_ACTION, b"\x00" * 20, spec_id.encode())


def _is_padding(data: bytes | memoryview, pos: int, end: int) -> bool:
    """True when the rest of the log is 0xFF or 0x00 filler (CCEL, fixed-size buffers)."""
    head = bytes(data[pos:min(pos + 8, end)])
    if head != b"\xff" * len(head) and head != b"\x00" * len(head):
        return False
    fill = head[0:1]
    # Checking the whole tail keeps a zero-filled *record* from passing as padding.
    step = 4096
    p = pos
    while p < end:
        chunk = bytes(data[p:min(p + step, end)])
        if chunk != fill * len(chunk):
            return False
        p += step
    return True


def parse_tcg_log(data: bytes, source: str | None = None, strict: bool = True,
                  end: int | None = None, base: int = 0) -> TcgLog:
    """Decode a TCG log, crypto-agile or legacy SHA-1, from ``data``.

    ``end`` bounds the log area (the CCEL's LAML). The log ends at ``end``, or
    where only 0xFF / 0x00 filler remains. With ``strict`` a malformed record
    raises :class:`SpecError` (with ``parsed_count`` set); otherwise parsing
    stops there and the error is kept in ``TcgLog.error``.
    """
    mv = memoryview(data)
    stop = len(data) if end is None else end
    if stop > len(data):
        raise TruncatedError("log area of %d bytes exceeds the %d bytes given" % (stop, len(data)),
                             base, "LAML", source)
    events: list = []
    pos = 0
    header = None
    spec_id = None
    fmt = FORMAT_SHA1
    try:
        first = _parse_legacy_record(mv, pos, stop, base, source)
        if first.event_type == EV_NO_ACTION and bytes(first.data[:16]) in (
                SPEC_ID_SIGNATURE_03, SPEC_ID_SIGNATURE_00):
            spec_id = SpecIdEvent.decode(first.data, first.offset + 32, source)
            header = first
            pos = first.size
            if spec_id.is_crypto_agile:
                fmt = FORMAT_CRYPTO_AGILE
        if fmt == FORMAT_CRYPTO_AGILE:
            assert spec_id is not None
            pos = _parse_agile_records(mv, pos, stop, base, source, spec_id.digest_sizes(),
                                       events)
        else:
            while pos < stop:
                if _is_padding(mv, pos, stop):
                    break
                ev = _parse_legacy_record(mv, pos, stop, base, source)
                events.append(ev)
                pos += ev.size
    except SpecError as e:
        e.parsed_count = len(events)
        if strict or (header is None and not events):
            raise
        return TcgLog(fmt, header, spec_id, events, b"", e, source)
    return TcgLog(fmt, header, spec_id, events, bytes(mv[pos:len(data)]), None, source)


def _parse_legacy_record(mv: memoryview, pos: int, stop: int, base: int,
                         source: str | None) -> TcgEvent:
    if stop - pos < 32:
        raise TruncatedError("TCG_PCR_EVENT needs 32 header bytes, %d left" % (stop - pos),
                             base + pos, "TCG_PCR_EVENT", source)
    index, etype = struct.unpack_from("<II", mv, pos)
    digest = bytes(mv[pos + 8:pos + 28])
    size = struct.unpack_from("<I", mv, pos + 28)[0]
    if size > stop - pos - 32:
        raise LimitError("EventSize = %d exceeds the %d bytes left" % (size, stop - pos - 32),
                         base + pos + 28, "TCG_PCR_EVENT.EventSize", source)
    data = bytes(mv[pos + 32:pos + 32 + size])
    return TcgEvent(index, etype, [(ALG_SHA1, digest)], data, base + pos, True, 32 + size)


def _parse_agile_records(mv: memoryview, pos: int, stop: int, base: int, source: str | None,
                         sizes: dict, events: list) -> int:
    """Decode TCG_PCR_EVENT2 records into ``events``; returns the end position.

    The hot loop of every log parser: struct calls inline, every length
    checked against ``stop`` before any slice is taken.
    """
    unpack = struct.unpack_from
    append = events.append
    while pos < stop:
        if stop - pos < 12:
            if _is_padding(mv, pos, stop):
                break
            raise TruncatedError("TCG_PCR_EVENT2 needs 12 header bytes, %d left" % (stop - pos),
                                 base + pos, "TCG_PCR_EVENT2", source)
        index, etype, count = unpack("<III", mv, pos)
        if index == 0xFFFFFFFF or (index == 0 and etype == 0 and count == 0):
            if _is_padding(mv, pos, stop):
                break
        if count > MAX_DIGESTS or count > len(sizes):
            raise LimitError("digest count %d exceeds the %d algorithms of the Spec ID event"
                             % (count, len(sizes)), base + pos + 8,
                             "TCG_PCR_EVENT2.Digests.count", source)
        p = pos + 12
        digests = []
        for _ in range(count):
            if stop - p < 2:
                raise TruncatedError("log ends inside a digest", base + p,
                                     "TCG_PCR_EVENT2.Digests.hashAlg", source)
            alg = unpack("<H", mv, p)[0]
            size = sizes.get(alg)
            if size is None:
                raise FormatError("digest algorithm 0x%04x is not in the Spec ID event" % alg,
                                  base + p, "TCG_PCR_EVENT2.Digests.hashAlg", source)
            p += 2
            if stop - p < size:
                raise TruncatedError("log ends inside a %s digest" % alg_name(alg), base + p,
                                     "TCG_PCR_EVENT2.Digests.digest", source)
            digests.append((alg, bytes(mv[p:p + size])))
            p += size
        if stop - p < 4:
            raise TruncatedError("log ends before EventSize", base + p,
                                 "TCG_PCR_EVENT2.EventSize", source)
        esize = unpack("<I", mv, p)[0]
        p += 4
        if esize > stop - p:
            raise LimitError("EventSize = %d exceeds the %d bytes left" % (esize, stop - p),
                             base + p - 4, "TCG_PCR_EVENT2.EventSize", source)
        append(TcgEvent(index, etype, digests, bytes(mv[p:p + esize]), base + pos, False,
                        p + esize - pos))
        pos = p + esize
    return pos


def parse_startup_locality(data: bytes) -> int | None:
    """The locality of a StartupLocality EV_NO_ACTION event's data, else None."""
    if len(data) == 17 and bytes(data[:16]) == STARTUP_LOCALITY_SIGNATURE:
        return data[16]
    return None


def encode_startup_locality(locality: int) -> bytes:
    return STARTUP_LOCALITY_SIGNATURE + struct.pack("<B", locality)
