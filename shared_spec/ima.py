"""IMA measurement lists, binary and ascii (Linux security/integrity/ima).

Binary entry (``binary_runtime_measurements``, host byte order, little-endian
unless ``big_endian`` is given for ``ima_canonical_fmt``)::

    u32 pcr | u8 template_hash[N] | u32 name_len | name
    | u32 template_data_len | template_data          (all templates but "ima")
    | u8 digest[20] | u32 filename_len | filename    ("ima" template)

``N`` is 20 (SHA-1) in ``binary_runtime_measurements`` and the size of the
list's algorithm in ``binary_runtime_measurements_<alg>``. Template data of
every template but ``ima`` is a sequence of u32-length-prefixed fields.

Ascii line: ``<pcr %2d> <template hash hex> <template name> <fields ...>``.

Replay (ima_calc_field_array_hash): each PCR bank is extended with that bank's
hash of the template data; for the ``ima`` template the hashed data is the
20-byte digest followed by the file name padded with zeros to 256 bytes. A
violation (template hash logged as zeros) extends all 0xFF.
"""

import struct

from shared_spec.algorithms import (
    ALG_SHA1,
    ALG_SHA256,
    ALG_SHA384,
    ALG_SHA512,
    alg_from_name,
    alg_name,
    digest_size,
)
from shared_spec.errors import FormatError, LimitError, SpecError, TruncatedError
from shared_spec.findings import SEVERITY_ERROR, SEVERITY_WARNING, Finding
from shared_spec.hashing import HashProvider
from shared_spec.registers import pcr_to_cc_mr

#: Field lists of the kernel's built-in templates (ima_template.c).
TEMPLATE_FIELDS = {
    "ima": ("d", "n"),
    "ima-ng": ("d-ng", "n-ng"),
    "ima-sig": ("d-ng", "n-ng", "sig"),
    "ima-ngv2": ("d-ngv2", "n-ng"),
    "ima-sigv2": ("d-ngv2", "n-ng", "sig"),
    "ima-buf": ("d-ng", "n-ng", "buf"),
    "ima-modsig": ("d-ng", "n-ng", "sig", "d-modsig", "modsig"),
}

IMA_EVENT_NAME_LEN_MAX = 255
MAX_TEMPLATE_NAME = 255
MAX_TEMPLATE_DATA = 1 << 24
_SIZE_TO_ALG = {20: ALG_SHA1, 32: ALG_SHA256, 48: ALG_SHA384, 64: ALG_SHA512}


class ImaField:
    """One template field: its name (``d-ng``) and raw bytes."""

    __slots__ = ("data", "name")

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data

    def to_dict(self) -> dict:
        out: dict = {"field": self.name}
        decoded = decode_field(self.name, self.data)
        if decoded is not None:
            out.update(decoded)
        else:
            out["hex"] = bytes(self.data).hex()
        return out


class ImaEntry:
    """One measurement: PCR field, logged template hash, template name and data."""

    __slots__ = (
        "_cache",
        "digests",
        "index",
        "offset",
        "pcr",
        "template_data",
        "template_hash",
        "template_hash_alg",
        "template_name",
    )

    extends = True

    def __init__(self, pcr: int, template_hash: bytes, template_name: str, template_data: bytes,
                 offset: int | None = None, template_hash_alg: int | None = None) -> None:
        self.pcr = pcr
        #: register index used by replay (``pcr``, or a CC MR index after to_cc_mr)
        self.index = pcr
        self.template_hash = template_hash
        self.template_hash_alg = (template_hash_alg if template_hash_alg is not None
                                  else _SIZE_TO_ALG.get(len(template_hash), ALG_SHA1))
        self.template_name = template_name
        self.template_data = template_data
        self.offset = offset
        self.digests = [(self.template_hash_alg, template_hash)]
        self._cache: dict = {}

    @property
    def is_violation(self) -> bool:
        return bytes(self.template_hash) == b"\x00" * len(self.template_hash)

    def hashed_data(self) -> bytes:
        """The bytes the kernel hashes into the template digest."""
        if self.template_name == "ima":
            fields = self.fields()
            digest = fields[0].data if fields else b""
            name = fields[1].data if len(fields) > 1 else b""
            name = bytes(name)[:IMA_EVENT_NAME_LEN_MAX + 1]
            return bytes(digest) + name + b"\x00" * (IMA_EVENT_NAME_LEN_MAX + 1 - len(name))
        return bytes(self.template_data)

    def digest_for(self, alg: int, hashes: HashProvider) -> bytes | None:
        """What the kernel extends into bank ``alg`` for this entry."""
        size = digest_size(alg)
        if size is None:
            return None
        if self.is_violation:
            return b"\xff" * size
        d = self._cache.get(alg)
        if d is None:
            if alg == self.template_hash_alg:
                d = bytes(self.template_hash)
            else:
                d = hashes.digest(alg, self.hashed_data())
            self._cache[alg] = d
        return d

    def fields(self) -> list:
        """The template fields (names from the template when it is known)."""
        names = TEMPLATE_FIELDS.get(self.template_name)
        if self.template_name == "ima":
            data = self.template_data
            if len(data) < 24:
                return []
            n = struct.unpack_from("<I", data, 20)[0]
            return [ImaField("d", bytes(data[:20])), ImaField("n", bytes(data[24:24 + n]))]
        try:
            raw = split_fields(self.template_data)
        except SpecError:
            return [ImaField("raw", bytes(self.template_data))]
        out = []
        for i, value in enumerate(raw):
            name = names[i] if names is not None and i < len(names) else "field%d" % i
            out.append(ImaField(name, value))
        return out

    def file_name(self) -> str:
        for f in self.fields():
            if f.name in ("n-ng", "n"):
                return bytes(f.data).rstrip(b"\x00").decode("utf-8", "replace")
        return ""

    def to_dict(self) -> dict:
        return {"pcr": self.pcr, "template_name": self.template_name,
                "template_hash": bytes(self.template_hash).hex(),
                "template_hash_alg": alg_name(self.template_hash_alg),
                "violation": self.is_violation, "filename": self.file_name(),
                "fields": [f.to_dict() for f in self.fields()]}

    def copy_with_index(self, index: int) -> "ImaEntry":
        e = ImaEntry(self.pcr, self.template_hash, self.template_name, self.template_data,
                     self.offset, self.template_hash_alg)
        e.index = index
        return e


def split_fields(data: bytes) -> list:
    """u32-length-prefixed fields of template data; FormatError when they do not add up."""
    out: list = []
    pos = 0
    n = len(data)
    while pos < n:
        if n - pos < 4:
            raise FormatError("template data ends inside a field length", pos, "field_len")
        size = struct.unpack_from("<I", data, pos)[0]
        pos += 4
        if size > n - pos:
            raise LimitError("field length %d exceeds the %d bytes left" % (size, n - pos),
                             pos - 4, "field_len")
        out.append(bytes(data[pos:pos + size]))
        pos += size
    return out


def join_fields(fields: list) -> bytes:
    return b"".join(struct.pack("<I", len(f)) + bytes(f) for f in fields)


def decode_field(name: str, data: bytes) -> dict | None:
    """A display dict for known field types."""
    data = bytes(data)
    if name in ("d-ng", "d-modsig", "d-ngv2"):
        sep = data.find(b":\x00")
        if sep < 0:
            return {"digest": data.hex()} if data else None
        head = data[:sep].decode("ascii", "replace")
        out: dict = {"digest": data[sep + 2:].hex()}
        if name == "d-ngv2" and ":" in head:
            out["digest_type"], out["algorithm"] = head.split(":", 1)
        else:
            out["algorithm"] = head
        return out
    if name in ("n-ng", "n"):
        return {"name": data.rstrip(b"\x00").decode("utf-8", "replace")}
    if name == "d":
        return {"digest": data.hex()}
    return None


def parse_ima_binary(data: bytes, source: str | None = None,
                     template_hash_alg: int = ALG_SHA1, big_endian: bool = False) -> list:
    """Decode a binary measurement list."""
    hsize = digest_size(template_hash_alg) or 20
    end = "<" if not big_endian else ">"
    fmt = end + "I"
    mv = memoryview(data)
    n = len(data)
    pos = 0
    out: list = []
    append = out.append
    try:
        while pos < n:
            start = pos
            if n - pos < 4 + hsize + 4:
                raise TruncatedError("entry header needs %d bytes, %d left" % (8 + hsize, n - pos),
                                     pos, "ima.entry", source)
            pcr = struct.unpack_from(fmt, mv, pos)[0]
            th = bytes(mv[pos + 4:pos + 4 + hsize])
            pos += 4 + hsize
            nlen = struct.unpack_from(fmt, mv, pos)[0]
            pos += 4
            if nlen == 0 or nlen > MAX_TEMPLATE_NAME or nlen > n - pos:
                raise LimitError("template name length %d is not plausible" % nlen, pos - 4,
                                 "template_name_len", source)
            name = bytes(mv[pos:pos + nlen]).decode("ascii", "replace")
            pos += nlen
            if name == "ima":
                if n - pos < 24:
                    raise TruncatedError("'ima' entry needs 24 bytes", pos, "ima.digest", source)
                flen = struct.unpack_from(fmt, mv, pos + 20)[0]
                if flen > IMA_EVENT_NAME_LEN_MAX + 1 or flen > n - pos - 24:
                    raise LimitError("file name length %d" % flen, pos + 20, "filename_len",
                                     source)
                tdata = bytes(mv[pos:pos + 20]) + struct.pack("<I", flen) + \
                    bytes(mv[pos + 24:pos + 24 + flen])
                pos += 24 + flen
            else:
                if n - pos < 4:
                    raise TruncatedError("entry ends before template_data_len", pos,
                                         "template_data_len", source)
                dlen = struct.unpack_from(fmt, mv, pos)[0]
                pos += 4
                if dlen > MAX_TEMPLATE_DATA or dlen > n - pos:
                    raise LimitError("template data length %d exceeds the %d bytes left"
                                     % (dlen, n - pos), pos - 4, "template_data_len", source)
                tdata = bytes(mv[pos:pos + dlen])
                pos += dlen
                if big_endian:
                    tdata = _fields_to_le(tdata, pos - dlen, source)
            append(ImaEntry(pcr, th, name, tdata, start, template_hash_alg))
    except SpecError as e:
        e.parsed_count = len(out)
        if e.source is None:
            e.source = source
        raise
    return out


def _fields_to_le(tdata: bytes, base: int, source: str | None) -> bytes:
    out: list = []
    pos = 0
    while pos < len(tdata):
        if len(tdata) - pos < 4:
            raise FormatError("template data ends inside a field length", base + pos,
                              "field_len", source)
        size = struct.unpack_from(">I", tdata, pos)[0]
        if size > len(tdata) - pos - 4:
            raise LimitError("field length %d" % size, base + pos, "field_len", source)
        out.append(tdata[pos + 4:pos + 4 + size])
        pos += 4 + size
    return join_fields(out)


def encode_ima_binary(entries: list) -> bytes:
    """The binary list of ``entries`` (little-endian)."""
    parts = []
    for e in entries:
        name = e.template_name.encode()
        parts.append(struct.pack("<I", e.pcr) + bytes(e.template_hash) +
                     struct.pack("<I", len(name)) + name)
        if e.template_name == "ima":
            parts.append(bytes(e.template_data))
        else:
            parts.append(struct.pack("<I", len(e.template_data)) + bytes(e.template_data))
    return b"".join(parts)


def _is_hex(text: str) -> bool:
    if len(text) % 2:
        return False
    for ch in text:
        if ch not in "0123456789abcdefABCDEF":
            return False
    return True


def _digest_field(text: str, v2: bool, where: str) -> bytes:
    """``sha256:<hex>`` (d-ng) or ``ima:sha256:<hex>`` (d-ngv2) -> field bytes."""
    head, _, hexpart = text.rpartition(":")
    if not _is_hex(hexpart):
        raise FormatError("%s: digest %r is not hex" % (where, hexpart), None, "digest")
    if not head:
        # d-ng of an md5/sha1 digest before kernel 3.13 style: no algorithm prefix
        return bytes.fromhex(hexpart)
    if v2 and head.count(":") != 1:
        raise FormatError("%s: d-ngv2 needs <type>:<algo>:<hex>" % where, None, "digest")
    return head.encode() + b":\x00" + bytes.fromhex(hexpart)


def entry_from_ascii_fields(pcr: int, template_hash: bytes, name: str, fields: list,
                            where: str = "") -> ImaEntry:
    """Rebuild an entry's binary template data from its ascii fields."""
    if name == "ima":
        if len(fields) < 2 or not _is_hex(fields[0]):
            raise FormatError("%s: 'ima' entry needs <digest> <name>" % where, None, "fields")
        fname = " ".join(fields[1:]).encode()
        tdata = bytes.fromhex(fields[0]) + struct.pack("<I", len(fname)) + fname
        return ImaEntry(pcr, template_hash, name, tdata)
    names = TEMPLATE_FIELDS.get(name)
    if names is None:
        raise FormatError("%s: unknown template %r: its ascii form cannot be rebuilt"
                          % (where, name), None, "template_name")
    if not fields:
        raise FormatError("%s: no fields" % where, None, "fields")
    raw: list = []
    rest = list(fields[1:])
    trailing = len(names) - 2  # fields after the name
    # The file name may contain spaces: the hex fields after it are taken from the end.
    tail: list = []
    if trailing:
        cand = rest[len(rest) - trailing:] if len(rest) > trailing else []
        if cand and all(_is_hex(c) or c == "" for c in cand) and len(rest) > trailing:
            tail = cand
            rest = rest[:len(rest) - trailing]
    raw.append(_digest_field(fields[0], names[0] == "d-ngv2", where))
    raw.append(" ".join(rest).encode() + b"\x00")
    for i, field_name in enumerate(names[2:]):
        value: str = tail[i] if i < len(tail) else ""
        if field_name == "d-modsig":
            raw.append(_digest_field(value, False, where) if value else b"")
        else:
            raw.append(bytes.fromhex(value) if value else b"")
    return ImaEntry(pcr, template_hash, name, join_fields(raw))


def parse_ima_ascii(data: bytes, source: str | None = None) -> list:
    """Decode an ascii measurement list (one entry per line)."""
    out: list = []
    pos = 0
    lineno = 0
    n = len(data)
    while pos < n:
        end = data.find(b"\n", pos)
        if end < 0:
            end = n
        lineno += 1
        line = bytes(data[pos:end])
        start = pos
        pos = end + 1
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeError:
            text = line.decode("latin-1")
        parts = text.split(" ")
        parts = [p for p in parts if p != ""] if parts[0] == "" else parts
        where = "line %d" % lineno
        if len(parts) < 4:
            err = FormatError("%s: %d fields, an entry has at least 4" % (where, len(parts)),
                              start, "line", source)
            err.parsed_count = len(out)
            raise err
        try:
            pcr = int(parts[0])
            if not _is_hex(parts[1]) or len(parts[1]) // 2 not in _SIZE_TO_ALG:
                raise FormatError("%s: template hash %r" % (where, parts[1]), None,
                                  "template_hash")
            entry = entry_from_ascii_fields(pcr, bytes.fromhex(parts[1]), parts[2], parts[3:],
                                            where)
        except (ValueError, SpecError) as e:
            err = FormatError(getattr(e, "message", None) or "%s: %s" % (where, e), start,
                              "line", source)
            err.parsed_count = len(out)
            raise err from None
        entry.offset = start
        out.append(entry)
    return out


def encode_ima_ascii_line(e: ImaEntry) -> bytes:
    """The kernel's ascii form of an entry (ima_ascii_measurements_show)."""
    fields = e.fields()
    parts = ["%2d" % e.pcr, bytes(e.template_hash).hex(), e.template_name]
    for f in fields:
        d = bytes(f.data)
        if f.name in ("d-ng", "d-modsig", "d-ngv2"):
            sep = d.find(b":\x00")
            parts.append(d.hex() if sep < 0 else d[:sep].decode() + ":" + d[sep + 2:].hex())
        elif f.name in ("n-ng", "n"):
            parts.append(d.rstrip(b"\x00").decode("utf-8", "replace"))
        elif f.name == "d":
            parts.append(d.hex())
        else:
            parts.append(d.hex())
    while len(parts) > 5 and parts[-1] == "":
        parts.pop()
    return (" ".join(parts) + "\n").encode()


def detect_ima(data: bytes) -> str | None:
    """``"ascii"``, ``"binary"`` or None, from the first entry."""
    head = bytes(data[:512])
    line = head.split(b"\n", 1)[0]
    parts = line.split()
    if len(parts) >= 4 and parts[0].isdigit() and parts[2].startswith(b"ima"):
        try:
            bytes.fromhex(parts[1].decode())
            return "ascii"
        except ValueError:
            pass
    if len(head) >= 32:
        pcr = struct.unpack_from("<I", head, 0)[0]
        nlen = struct.unpack_from("<I", head, 24)[0]
        if pcr < 64 and 3 <= nlen <= 32 and head[28:28 + nlen].startswith(b"ima"):
            return "binary"
    return None


def to_cc_mr(entries: list, pcr_field: str = "auto") -> list:
    """The entries re-indexed as CC MR indexes (for IMA over TDX RTMRs).

    ``pcr_field``: ``"rtmr"``: the field is an RTMR number (MR = field + 1, as
    IMA-over-RTMR kernels log it, e.g. ``2`` for RTMR2); ``"pcr"``: a PCR
    number, mapped by UEFI 2.10 (PCR 10 -> MR3); ``"auto"``: fields 0..3 are
    RTMRs, others PCRs.
    """
    out = []
    for e in entries:
        if pcr_field == "rtmr" or (pcr_field == "auto" and e.pcr <= 3):
            mr = e.pcr + 1
        else:
            mapped = pcr_to_cc_mr(e.pcr)
            mr = mapped if mapped is not None else e.pcr
        out.append(e.copy_with_index(mr))
    return out


def check_entries(entries: list, hashes: HashProvider) -> list:
    """Template hash mismatches, violations, and boot_aggregate placement."""
    findings = []
    for i, e in enumerate(entries):
        if e.is_violation:
            findings.append(Finding("IMA_VIOLATION", SEVERITY_WARNING,
                                    "IMA entry #%d (%s) is a violation (extends 0xFF)"
                                    % (i, e.file_name()), e.index, i, e.offset))
            continue
        if e.template_name != "ima":
            try:
                split_fields(e.template_data)
            except SpecError as err:
                findings.append(Finding(
                    "IMA_TEMPLATE_DATA_MALFORMED", SEVERITY_ERROR,
                    "IMA entry #%d: template data is not a field sequence: %s"
                    % (i, err.message), e.index, i, e.offset))
        if not hashes.supports(e.template_hash_alg):
            continue
        want = hashes.digest(e.template_hash_alg, e.hashed_data())
        if want != bytes(e.template_hash):
            findings.append(Finding(
                "IMA_TEMPLATE_HASH_MISMATCH", SEVERITY_ERROR,
                "IMA entry #%d (%s): template hash is not the %s of its template data"
                % (i, e.file_name(), alg_name(e.template_hash_alg)), e.index, i, e.offset,
                {"logged": bytes(e.template_hash).hex(), "computed": want.hex()}))
    names = [e.file_name() for e in entries]
    if "boot_aggregate" in names and names[0] != "boot_aggregate":
        findings.append(Finding("IMA_BOOT_AGGREGATE_NOT_FIRST", SEVERITY_ERROR,
                                "boot_aggregate is entry #%d, not the first"
                                % names.index("boot_aggregate")))
    return findings


def boot_aggregate(pcr_values: dict, alg: int, hashes: HashProvider,
                   include_8_9: bool | None = None) -> bytes:
    """H(PCR0 || ... || PCR7 [|| PCR8 || PCR9]) as ima_calc_boot_aggregate computes it.

    PCRs 8 and 9 are included for every bank but SHA-1 (kernel 5.8+), unless
    ``include_8_9`` says otherwise. ``pcr_values``: {pcr: value of bank ``alg``}.
    """
    if include_8_9 is None:
        include_8_9 = alg != ALG_SHA1
    regs = list(range(8)) + ([8, 9] if include_8_9 else [])
    size = digest_size(alg) or 0
    data = b"".join(bytes(pcr_values.get(i, b"\x00" * size)) for i in regs)
    return hashes.digest(alg, data)


def tdx_boot_aggregate(mrs: dict, hashes: HashProvider) -> bytes:
    """SHA-384(MRTD || RTMR0 || RTMR1 || RTMR2): {CC MR index: value}."""
    return hashes.digest(ALG_SHA384, b"".join(bytes(mrs[i]) for i in range(4)))


def template_hash_alg_from_name(name: str) -> int | None:
    return alg_from_name(name)


class PaddedSha1Entry:
    """An entry as the kernel extends it into a bank it has no hash implementation for.

    ima_calc_field_array_hash: "for unmapped TPM algorithms digest is still a
    padded SHA1" — when IMA starts before the bank's algorithm is available
    (e.g. SHA-384/512 built as modules), that bank receives the entry's SHA-1
    template digest followed by zeros.
    """

    extends = True

    def __init__(self, entry: ImaEntry) -> None:
        self.entry = entry
        self.index = entry.index
        self.digests = entry.digests
        self.offset = entry.offset

    def digest_for(self, alg: int, hashes: HashProvider) -> bytes | None:
        size = digest_size(alg)
        if size is None:
            return None
        if self.entry.is_violation:
            return b"\xff" * size
        sha1 = self.entry.digest_for(ALG_SHA1, hashes)
        if sha1 is None:
            return None
        return sha1 + b"\x00" * (size - len(sha1))
