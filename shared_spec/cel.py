"""TCG Canonical Event Log (CEL v1.0): the TLV encoding and the CEL-JSON form.

TLV (CEL §5.1): ``u8 type | u32 length (big-endian) | value``. A record is four
top-level TLVs in this order:

- RECNUM (0): the record number, a big-endian unsigned integer;
- PCR (1) or NV_INDEX (2): the register, a big-endian unsigned integer
  (google/go-eventlog also writes 108 for a confidential-computing MR index,
  accepted here as :data:`CEL_CC_MR`);
- DIGESTS (3): nested TLVs whose type is the TPM_ALG_ID (all hash algorithm
  ids fit in the one-byte type) and whose value is the digest;
- the content, whose TLV type is the content type:
  CEL_MGT (4: nested cel_version (1: nested major (0) and minor (1)),
  firmware_end (2, empty), cel_timestamp (80), state_trans (81: 0 suspend,
  1 hibernate, 2 kexec)); PCCLIENT_STD (5: nested event_type (0) then
  event_data (1)); IMA_TEMPLATE (7: nested template_name (0) then
  template_data (1)); IMA_TLV (8: nested IMA fields). Other content types
  are kept as raw bytes.

Integers are read at any width of 1..8 bytes (4 for indexes); the width of
each record's integers is kept, so decode then encode is byte-exact. New
records use 8-byte record numbers and 1-byte PCR indexes (what
google/go-eventlog reads and writes), 4-byte NV indexes and event types.

CEL-JSON (CEL §5.3, and what ``systemd-pcrlock`` reads and writes): a list of
``{"recnum", "pcr" | "nv_index", "digests": [{"hashAlg", "digest"}],
"content_type", "content"}``. ``content_type`` is ``"pcclient_std"``
(``{"event_type", "event_data"}``: the type by name, data in hex),
``"ima_template"`` (``{"template_name", "template_data"}``), ``"cel"`` (the
management content, ``{"type", "data"}`` or a list of them) or ``"systemd"``
(systemd's own object, kept as is). systemd's ``.pcrlock`` files omit
recnum, content_type and content; such records replay but have no TLV form.
"""

import struct

from shared_spec.algorithms import alg_from_name, alg_name, digest_size
from shared_spec.errors import EncodeError, FormatError, LimitError, SpecError, TruncatedError
from shared_spec.event_types import EV_NO_ACTION, event_type_from_name, event_type_name
from shared_spec.hashing import HashProvider
from shared_spec.tcg_log import TcgEvent

CEL_RECNUM = 0
CEL_PCR = 1
CEL_NV_INDEX = 2
CEL_DIGESTS = 3
CEL_MGT = 4
CEL_PCCLIENT_STD = 5
CEL_IMA_TEMPLATE = 7
CEL_IMA_TLV = 8
#: Older name of CEL_IMA_TLV.
CEL_IMA_TP = CEL_IMA_TLV
#: Index type google/go-eventlog uses for a confidential-computing MR (not in the TCG spec).
CEL_CC_MR = 108

#: CEL_MGT content types (CEL §4.2.1).
MGT_CEL_VERSION = 1
MGT_FIRMWARE_END = 2
MGT_CEL_TIMESTAMP = 80
MGT_STATE_TRANS = 81
MGT_NAMES = {MGT_CEL_VERSION: "cel_version", MGT_FIRMWARE_END: "firmware_end",
             MGT_CEL_TIMESTAMP: "cel_timestamp", MGT_STATE_TRANS: "state_trans"}
STATE_TRANS_NAMES = {0: "suspend", 1: "hibernate", 2: "kexec"}

#: Content type -> CEL-JSON name. "cel" is the management content's name in CEL-JSON.
CONTENT_NAMES = {CEL_MGT: "cel", CEL_PCCLIENT_STD: "pcclient_std",
                 CEL_IMA_TEMPLATE: "ima_template", CEL_IMA_TLV: "ima_tlv"}
#: Content type of systemd's userspace records in CEL-JSON (no TLV form).
CONTENT_SYSTEMD = "systemd"
_CONTENT_BY_NAME = {"cel": CEL_MGT, "cel_mgt": CEL_MGT, "pcclient_std": CEL_PCCLIENT_STD,
                    "ima_template": CEL_IMA_TEMPLATE, "ima_tlv": CEL_IMA_TLV,
                    "ima_tp": CEL_IMA_TLV}
_NESTED = (CEL_MGT, CEL_PCCLIENT_STD, CEL_IMA_TEMPLATE, CEL_IMA_TLV)
_INDEX_TYPES = (CEL_PCR, CEL_NV_INDEX, CEL_CC_MR)
_INDEX_KEYS = {CEL_PCR: "pcr", CEL_NV_INDEX: "nv_index", CEL_CC_MR: "mr"}

_unpack = struct.unpack_from


def _tlv(t: int, value: bytes) -> bytes:
    return struct.pack(">BI", t, len(value)) + bytes(value)


def _uint(value: bytes) -> int:
    v = 0
    for b in value:
        v = (v << 8) | b
    return v


def _uint_bytes(v: int, size: int, field: str) -> bytes:
    if v < 0 or v >> (8 * size):
        raise EncodeError("%s = %d does not fit in %d bytes" % (field, v, size), None, field)
    out = bytearray(size)
    for i in range(size - 1, -1, -1):
        out[i] = v & 0xFF
        v >>= 8
    return bytes(out)


def nested_tlvs(data: bytes, base: int = 0, source: str | None = None,
                field: str = "tlv") -> list:
    """``[(type, value)]`` of a TLV sequence; errors carry absolute offsets (``base``)."""
    out = []
    pos = 0
    n = len(data)
    while pos < n:
        if n - pos < 5:
            raise TruncatedError("TLV header needs 5 bytes, %d left" % (n - pos), base + pos,
                                 field, source)
        size = _unpack(">I", data, pos + 1)[0]
        if size > n - pos - 5:
            raise LimitError("TLV length %d exceeds the %d bytes left" % (size, n - pos - 5),
                             base + pos + 1, field + ".length", source)
        out.append((data[pos], bytes(data[pos + 5:pos + 5 + size])))
        pos += 5 + size
    return out


class CelRecord:
    """One CEL record; follows the replay protocol.

    ``index_type`` is CEL_PCR, CEL_NV_INDEX or CEL_CC_MR; ``content`` the nested
    ``[(type, value)]`` of CEL_MGT / PCCLIENT_STD / IMA_TEMPLATE / IMA_TLV content,
    or the raw value bytes of another content type; ``content_type`` None (and
    ``json_content``) for CEL-JSON records without TLV form (systemd content,
    ``.pcrlock`` records).
    """

    __slots__ = ("_widths", "content", "content_type", "digests", "index", "index_type",
                 "json_content", "offset", "recnum")

    def __init__(self, recnum: int, index: int, digests: list, content_type: int | None,
                 content: list | bytes, index_is_nv: bool = False, offset: int | None = None,
                 index_type: int | None = None) -> None:
        self.recnum = recnum
        self.index = index
        self.index_type = index_type if index_type is not None else (
            CEL_NV_INDEX if index_is_nv else CEL_PCR)
        #: list of (alg, digest)
        self.digests = digests
        self.content_type = content_type
        self.content = content
        self.offset = offset
        self.json_content: object = None
        #: byte widths of (recnum, index) in the TLV form
        self._widths = (8, 4 if self.index_type == CEL_NV_INDEX else 1)

    @property
    def index_is_nv(self) -> bool:
        return self.index_type == CEL_NV_INDEX

    def _field(self, t: int) -> bytes | None:
        if isinstance(self.content, list):
            for ft, v in self.content:
                if ft == t:
                    return v
        return None

    @property
    def event_type(self) -> int | None:
        """The PC Client event type of PCCLIENT_STD content (None otherwise)."""
        if self.content_type != CEL_PCCLIENT_STD:
            return None
        v = self._field(0)
        return None if v is None else _uint(v)

    @property
    def data(self) -> bytes:
        """Event data (PCCLIENT_STD) or template data (IMA_TEMPLATE); b"" otherwise."""
        if self.content_type in (CEL_PCCLIENT_STD, CEL_IMA_TEMPLATE):
            return self._field(1) or b""
        return b""

    @property
    def template_name(self) -> str | None:
        if self.content_type != CEL_IMA_TEMPLATE:
            return None
        return bytes(self._field(0) or b"").decode()

    @property
    def extends(self) -> bool:
        """False for CEL_MGT records and for PCCLIENT_STD EV_NO_ACTION events."""
        if self.content_type == CEL_MGT:
            return False
        return not (self.content_type == CEL_PCCLIENT_STD and self.event_type == EV_NO_ACTION)

    def digest_for(self, alg: int, hashes: HashProvider) -> bytes | None:
        """The logged digest of bank ``alg`` (replay uses logged digests; checks compare)."""
        for a, d in self.digests:
            if a == alg:
                return d
        return None

    def mgt_entries(self) -> list:
        """CEL_MGT content as ``[{"type": name, "data": ...}]`` (empty for other content)."""
        if self.content_type != CEL_MGT or not isinstance(self.content, list):
            return []
        return [_mgt_entry(t, v) for t, v in self.content]

    def encode(self) -> bytes:
        """The record's TLV bytes."""
        if self.content_type is None:
            raise EncodeError("CEL-JSON record %d has no TLV content" % self.recnum, None,
                              "content")
        rw, iw = self._widths
        parts = [_tlv(CEL_RECNUM, _uint_bytes(self.recnum, rw, "RECNUM")),
                 _tlv(self.index_type, _uint_bytes(self.index, iw, "index"))]
        digs = []
        for a, d in self.digests:
            if a > 0xFF:
                raise EncodeError("TPM_ALG_ID 0x%04x does not fit a TLV type" % a, None,
                                  "DIGESTS")
            digs.append(_tlv(a, d))
        parts.append(_tlv(CEL_DIGESTS, b"".join(digs)))
        if isinstance(self.content, list):
            value = b"".join(_tlv(t, v) for t, v in self.content)
        else:
            value = bytes(self.content)
        parts.append(_tlv(self.content_type, value))
        return b"".join(parts)

    def to_tcg_event(self) -> TcgEvent:
        """A :class:`shared_spec.tcg_log.TcgEvent` for PCCLIENT_STD content."""
        if self.content_type != CEL_PCCLIENT_STD:
            raise FormatError("record %d is not PCCLIENT_STD content" % self.recnum,
                              self.offset, "content_type")
        return TcgEvent(self.index, self.event_type or 0, list(self.digests), self.data,
                        self.offset or 0)

    def to_dict(self) -> dict:
        return cel_json_record(self)

    def __repr__(self) -> str:
        return "CelRecord(recnum=%d, index=%d, content_type=%r)" % (self.recnum, self.index,
                                                                    self.content_type)


def _mgt_entry(t: int, v: bytes) -> dict:
    name = MGT_NAMES.get(t)
    if name is None:
        return {"type": t, "data": v.hex()}
    if t == MGT_CEL_VERSION:
        fields = {}
        try:
            for ft, fv in nested_tlvs(v, 0, None, "cel_version"):
                fields[ft] = _uint(fv)
        except SpecError:
            return {"type": name, "data": v.hex()}
        return {"type": name, "data": {"major": fields.get(0), "minor": fields.get(1)}}
    if t == MGT_FIRMWARE_END:
        return {"type": name}
    if t == MGT_STATE_TRANS:
        return {"type": name, "data": STATE_TRANS_NAMES.get(_uint(v), _uint(v))}
    return {"type": name, "data": _uint(v)}


def _int_tlv(value: bytes, off: int, max_width: int, field: str,
             source: str | None) -> int:
    if not value or len(value) > max_width:
        raise LimitError("%s value of %d bytes (1..%d allowed)" % (field, len(value), max_width),
                         off + 1, field, source)
    return _uint(value)


def _content(t: int, value: bytes, base: int, source: str | None) -> list | bytes:
    if t not in _NESTED:
        return value
    fields = nested_tlvs(value, base, source, "content")
    if t in (CEL_PCCLIENT_STD, CEL_IMA_TEMPLATE):
        what = "PCCLIENT_STD" if t == CEL_PCCLIENT_STD else "IMA_TEMPLATE"
        if [ft for ft, _ in fields] != [0, 1]:
            raise FormatError("%s content must hold fields 0 then 1, has %r"
                              % (what, [ft for ft, _ in fields]), base, what, source)
        if t == CEL_PCCLIENT_STD and not 1 <= len(fields[0][1]) <= 4:
            raise LimitError("event_type of %d bytes" % len(fields[0][1]), base + 1,
                             "PCCLIENT_STD.event_type", source)
    return fields


_EXPECTED = {"RECNUM": "RECNUM (0)", "index": "PCR (1) or NV_INDEX (2)",
             "DIGESTS": "DIGESTS (3)", "content": "a content type"}


def _type_fits(want: str, t: int) -> bool:
    if want == "RECNUM":
        return t == CEL_RECNUM
    if want == "index":
        return t in _INDEX_TYPES
    if want == "DIGESTS":
        return t == CEL_DIGESTS
    return t not in (CEL_RECNUM, CEL_PCR, CEL_NV_INDEX, CEL_DIGESTS)


def parse_cel(data: bytes, source: str | None = None) -> list:
    """Decode a CEL TLV stream into :class:`CelRecord` objects.

    Raises :class:`SpecError` (``parsed_count`` set) with the absolute offset of
    the bad TLV.
    """
    out: list = []
    mv = memoryview(data)
    n = len(data)
    pos = 0
    try:
        while pos < n:
            start = pos
            tl = []
            for want in ("RECNUM", "index", "DIGESTS", "content"):
                if n - pos < 5:
                    raise TruncatedError("record at %d ends inside its %s TLV" % (start, want),
                                         pos, want, source)
                t = mv[pos]
                if not _type_fits(want, t):
                    raise FormatError("expected %s, found TLV type %d" % (_EXPECTED[want], t),
                                      pos, want, source)
                size = _unpack(">I", mv, pos + 1)[0]
                if size > n - pos - 5:
                    raise LimitError("TLV length %d exceeds the %d bytes left"
                                     % (size, n - pos - 5), pos + 1, want + ".length", source)
                tl.append((t, bytes(mv[pos + 5:pos + 5 + size]), pos))
                pos += 5 + size
            (_, v0, o0), (t1, v1, o1), (_, v2, o2), (t3, v3, o3) = tl
            recnum = _int_tlv(v0, o0, 8, "RECNUM", source)
            index = _int_tlv(v1, o1, 4, "index", source)
            digests = nested_tlvs(v2, o2 + 5, source, "DIGESTS")
            dpos = o2 + 5
            for alg, d in digests:
                size = digest_size(alg)
                if size is not None and size != len(d):
                    raise FormatError("%s digest of %d bytes" % (alg_name(alg), len(d)), dpos,
                                      "DIGESTS", source)
                dpos += 5 + len(d)
            content = _content(t3, v3, o3 + 5, source)
            rec = CelRecord(recnum, index, digests, t3, content, False, start, t1)
            rec._widths = (len(v0), len(v1))
            out.append(rec)
    except SpecError as e:
        e.parsed_count = len(out)
        raise
    return out


def encode_cel(records: list) -> bytes:
    """The TLV stream of ``records`` (each encoded as decoded, or with default widths)."""
    return b"".join(r.encode() for r in records)


def detect_cel(data: bytes) -> bool:
    """True when ``data`` starts like a CEL TLV stream (RECNUM then PCR/NV_INDEX)."""
    if len(data) < 10 or data[0] != CEL_RECNUM:
        return False
    size = _unpack(">I", data, 1)[0]
    if size == 0 or size > 8 or 5 + size + 5 > len(data):
        return False
    return data[5 + size] in _INDEX_TYPES


def from_events(events: list, first_recnum: int = 0) -> list:
    """TCG events as PCCLIENT_STD records, IMA entries as IMA_TEMPLATE records.

    An event is IMA-like when it has ``template_name`` and ``template_data``.
    """
    out = []
    for n, ev in enumerate(events):
        if hasattr(ev, "template_name") and hasattr(ev, "template_data"):
            content = [(0, str(ev.template_name).encode()), (1, bytes(ev.template_data))]
            ctype = CEL_IMA_TEMPLATE
        else:
            content = [(0, struct.pack(">I", ev.event_type)), (1, bytes(ev.data))]
            ctype = CEL_PCCLIENT_STD
        out.append(CelRecord(first_recnum + n, ev.index, list(ev.digests), ctype, content))
    return out


def from_tcg_events(events: list) -> list:
    """TCG events (firmware log) as CEL PCCLIENT_STD records (see :func:`from_events`)."""
    return from_events(events)


def to_tcg_events(records: list) -> list:
    """PCCLIENT_STD records back as TcgEvents (other records are left out)."""
    return [r.to_tcg_event() for r in records if r.content_type == CEL_PCCLIENT_STD]


def mgt_record(recnum: int, index: int, entries: list, index_type: int = CEL_PCR) -> CelRecord:
    """A CEL_MGT record from ``[(MGT_* type, value)]``: value None (firmware_end), an int
    (cel_timestamp, state_trans), or (major, minor) for cel_version."""
    content = []
    for t, v in entries:
        if t == MGT_CEL_VERSION:
            major, minor = v
            body = _tlv(0, _min_uint(major)) + _tlv(1, _min_uint(minor))
        elif v is None:
            body = b""
        else:
            body = _min_uint(int(v))
        content.append((t, body))
    return CelRecord(recnum, index, [], CEL_MGT, content, index_type=index_type)


def _min_uint(v: int) -> bytes:
    size = 1
    while v >> (8 * size):
        size += 1
    return _uint_bytes(v, size, "integer")


# --- CEL-JSON --------------------------------------------------------------------------------


def _event_type_json(t: int) -> object:
    name = event_type_name(t)
    return t if name.startswith("EV_UNKNOWN") else name


def cel_json_record(ev: object, recnum: int = 0, index_kind: str = "pcr") -> dict:
    """One CEL-JSON record for a CelRecord, a TCG event or an IMA entry."""
    digests = [{"hashAlg": alg_name(a), "digest": bytes(d).hex()}
               for a, d in getattr(ev, "digests", [])]
    index = ev.index  # type: ignore[attr-defined]
    if isinstance(ev, CelRecord):
        key = _INDEX_KEYS.get(ev.index_type, "pcr")
        out: dict = {"recnum": ev.recnum, key: index, "digests": digests}
        if ev.content_type is None:
            if ev.json_content is not None:
                out["content_type"] = CONTENT_SYSTEMD
                out["content"] = ev.json_content
            return out
        if ev.content_type == CEL_PCCLIENT_STD:
            out["content_type"] = "pcclient_std"
            out["content"] = {"event_type": _event_type_json(ev.event_type or 0),
                              "event_data": bytes(ev.data).hex()}
        elif ev.content_type == CEL_IMA_TEMPLATE:
            out["content_type"] = "ima_template"
            out["content"] = {"template_name": ev.template_name,
                              "template_data": bytes(ev.data).hex()}
        elif ev.content_type == CEL_MGT:
            out["content_type"] = "cel"
            entries = ev.mgt_entries()
            out["content"] = entries[0] if len(entries) == 1 else entries
        elif isinstance(ev.content, list):
            out["content_type"] = CONTENT_NAMES.get(ev.content_type, ev.content_type)
            out["content"] = [{"type": t, "value": v.hex()} for t, v in ev.content]
        else:
            out["content_type"] = ev.content_type
            out["content"] = {"value": bytes(ev.content).hex()}
        return out
    out = {"recnum": recnum, "mr" if index_kind == "cc_mr" else "pcr": index,
           "digests": digests}
    if hasattr(ev, "template_name") and hasattr(ev, "template_data"):
        out["content_type"] = "ima_template"
        out["content"] = {"template_name": ev.template_name,
                          "template_data": bytes(ev.template_data).hex()}
    else:
        out["content_type"] = "pcclient_std"
        out["content"] = {"event_type": _event_type_json(ev.event_type),  # type: ignore
                          "event_data": bytes(ev.data).hex()}  # type: ignore[attr-defined]
    return out


def cel_json_records(events: list, index_kind: str = "pcr") -> list:
    """The CEL-JSON record list (plain dicts and lists) of ``events``.

    TCG events and IMA entries are numbered by position; CelRecords keep their
    record numbers. ``index_kind`` ``"cc_mr"`` names the register ``"mr"``.
    """
    out = []
    for n, ev in enumerate(events):
        rec = cel_json_record(ev, n, index_kind)
        if index_kind == "cc_mr" and "pcr" in rec:
            rec["mr"] = rec.pop("pcr")
        out.append(rec)
    return out


class _JsonError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _json_int(v: object, field: str, limit: int) -> int:
    if isinstance(v, bool):
        raise _JsonError(field, "expected an integer, got %r" % (v,))
    if isinstance(v, str):
        try:
            v = int(v, 16) if v[:2] in ("0x", "0X") else int(v)
        except ValueError:
            raise _JsonError(field, "expected an integer, got %r" % v) from None
    if not isinstance(v, int) or v < 0 or v > limit:
        raise _JsonError(field, "expected an integer in 0..%d, got %r" % (limit, v))
    return v


def _json_hex(v: object, field: str) -> bytes:
    if not isinstance(v, str) or len(v) % 2:
        raise _JsonError(field, "expected an even-length hex string")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise _JsonError(field, "not hex: %r" % v[:40]) from None


def _json_alg(v: object, field: str) -> int:
    if isinstance(v, str):
        alg = alg_from_name(v)
        if alg is not None:
            return alg
    return _json_int(v, field, 0xFFFF)


def _json_event_type(v: object, field: str) -> int:
    if isinstance(v, str):
        name = v.upper()
        t = event_type_from_name(name)
        if t is None and not name.startswith("EV_"):
            t = event_type_from_name("EV_" + name)
        if t is not None:
            return t
    return _json_int(v, field, 0xFFFFFFFF)


def _json_mgt(entry: object, field: str) -> tuple:
    if not isinstance(entry, dict):
        raise _JsonError(field, "expected an object")
    t = entry.get("type")
    for k, name in MGT_NAMES.items():
        if t == name:
            t = k
    t = _json_int(t, field + ".type", 0xFF)
    d = entry.get("data")
    if t == MGT_CEL_VERSION:
        if not isinstance(d, dict):
            raise _JsonError(field + ".data", "cel_version needs {major, minor}")
        major = _json_int(d.get("major"), field + ".data.major", 0xFFFFFFFF)
        minor = _json_int(d.get("minor"), field + ".data.minor", 0xFFFFFFFF)
        return (t, _tlv(0, _min_uint(major)) + _tlv(1, _min_uint(minor)))
    if t == MGT_FIRMWARE_END:
        return (t, b"")
    if t == MGT_STATE_TRANS:
        for k, name in STATE_TRANS_NAMES.items():
            if d == name:
                d = k
        return (t, _min_uint(_json_int(d, field + ".data", 0xFF)))
    if t == MGT_CEL_TIMESTAMP:
        return (t, _min_uint(_json_int(d, field + ".data", (1 << 64) - 1)))
    return (t, _json_hex(d, field + ".data"))


def _json_record(r: object, n: int) -> CelRecord:
    if not isinstance(r, dict):
        raise _JsonError("record", "expected an object")
    recnum = _json_int(r.get("recnum", n), "recnum", (1 << 64) - 1)
    index_type = CEL_PCR
    key = "pcr"
    for t, k in _INDEX_KEYS.items():
        if k in r:
            index_type, key = t, k
            break
    else:
        raise _JsonError("pcr", "no pcr, nv_index or mr member")
    index = _json_int(r[key], key, 0xFFFFFFFF)
    digests = []
    raw_digests = r.get("digests")
    if not isinstance(raw_digests, list):
        raise _JsonError("digests", "expected a list")
    for i, d in enumerate(raw_digests):
        where = "digests[%d]" % i
        if not isinstance(d, dict):
            raise _JsonError(where, "expected an object")
        alg = _json_alg(d.get("hashAlg"), where + ".hashAlg")
        value = _json_hex(d.get("digest"), where + ".digest")
        size = digest_size(alg)
        if size is not None and size != len(value):
            raise _JsonError(where + ".digest", "%s digest of %d bytes"
                             % (alg_name(alg), len(value)))
        digests.append((alg, value))
    ctype_raw = r.get("content_type")
    c = r.get("content")
    if ctype_raw is None and c is None:
        return CelRecord(recnum, index, digests, None, [], index_type=index_type)
    if ctype_raw == CONTENT_SYSTEMD:
        rec = CelRecord(recnum, index, digests, None, [], index_type=index_type)
        rec.json_content = c
        return rec
    ctype = _CONTENT_BY_NAME.get(ctype_raw) if isinstance(ctype_raw, str) else None
    if ctype is None:
        ctype = _json_int(ctype_raw, "content_type", 0xFF)
    content: list | bytes
    if ctype == CEL_PCCLIENT_STD:
        if not isinstance(c, dict):
            raise _JsonError("content", "expected an object")
        et = _json_event_type(c.get("event_type"), "content.event_type")
        content = [(0, struct.pack(">I", et)),
                   (1, _json_hex(c.get("event_data"), "content.event_data"))]
    elif ctype == CEL_IMA_TEMPLATE:
        if not isinstance(c, dict) or not isinstance(c.get("template_name"), str):
            raise _JsonError("content.template_name", "expected a string")
        content = [(0, c["template_name"].encode()),
                   (1, _json_hex(c.get("template_data"), "content.template_data"))]
    elif ctype == CEL_MGT:
        items = c if isinstance(c, list) else [c]
        content = [_json_mgt(e, "content[%d]" % i) for i, e in enumerate(items)]
    elif isinstance(c, list):
        content = [(_json_int(e.get("type") if isinstance(e, dict) else None,
                              "content[%d].type" % i, 0xFF),
                    _json_hex(e.get("value"), "content[%d].value" % i))
                   for i, e in enumerate(c)]
    elif isinstance(c, dict):
        content = _json_hex(c.get("value"), "content.value")
    else:
        raise _JsonError("content", "expected an object or a list")
    return CelRecord(recnum, index, digests, ctype, content, index_type=index_type)


def parse_cel_json(records: list, source: str | None = None) -> list:
    """CEL-JSON records (already decoded from JSON text) back into CelRecords.

    Accepts the forms written by systemd-pcrlock, tpm2-software's libcel and this
    module: event types by name (any case) or number, hashAlg by name or
    TPM_ALG_ID. A bad record raises :class:`FormatError` naming its position and
    field (``offset`` is None: JSON has no byte offsets here).
    """
    if not isinstance(records, list):
        raise FormatError("CEL-JSON must be a list of records", None, "records", source)
    out = []
    for n, r in enumerate(records):
        try:
            out.append(_json_record(r, n))
        except _JsonError as e:
            err = FormatError("CEL-JSON record %d: %s: %s" % (n, e.field, e.message), None,
                              "record[%d].%s" % (n, e.field), source)
            err.parsed_count = len(out)
            raise err from None
        except EncodeError as e:
            err = FormatError("CEL-JSON record %d: %s" % (n, e.message), None,
                              "record[%d]" % n, source)
            err.parsed_count = len(out)
            raise err from None
    return out
