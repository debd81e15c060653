"""TCG Canonical Event Log (CEL), TLV encoding, and its CEL-JSON form.

TLV (TCG CEL v1.0, §5): ``u8 type | u32 length (big-endian) | value``. A
record is a sequence of top-level TLVs: RECNUM (0), PCR (1) or NV_INDEX (2),
DIGESTS (3: nested TLVs typed by TPM_ALG_ID, value = digest), then one
content TLV: CEL_MGT (4), PCCLIENT_STD (5: nested event_type (0) and
event_data (1)), IMA_TEMPLATE (7: nested template_name (0) and template_data
(1)) or IMA_TP (8). Integers are big-endian of the TLV's length.

The JSON form is the record list systemd-pcrlock reads and writes:
``{"recnum", "pcr", "digests": [{"hashAlg", "digest"}], "content_type",
"content"}``.
"""

import struct

from shared_spec.algorithms import alg_from_name, alg_name
from shared_spec.errors import FormatError, LimitError, SpecError, TruncatedError
from shared_spec.hashing import HashProvider

CEL_RECNUM = 0
CEL_PCR = 1
CEL_NV_INDEX = 2
CEL_DIGESTS = 3
CEL_MGT = 4
CEL_PCCLIENT_STD = 5
CEL_IMA_TEMPLATE = 7
CEL_IMA_TP = 8

CONTENT_NAMES = {CEL_MGT: "cel_mgt", CEL_PCCLIENT_STD: "pcclient_std",
                 CEL_IMA_TEMPLATE: "ima_template", CEL_IMA_TP: "ima_tp"}
_CONTENT_BY_NAME = {v: k for k, v in CONTENT_NAMES.items()}


def _tlvs(data: bytes, base: int, source: str | None) -> list:
    """[(type, value, offset)] of a TLV sequence."""
    out = []
    pos = 0
    n = len(data)
    while pos < n:
        if n - pos < 5:
            raise TruncatedError("TLV header needs 5 bytes, %d left" % (n - pos), base + pos,
                                 "tlv", source)
        t = data[pos]
        size = struct.unpack_from(">I", data, pos + 1)[0]
        if size > n - pos - 5:
            raise LimitError("TLV length %d exceeds the %d bytes left" % (size, n - pos - 5),
                             base + pos + 1, "tlv.length", source)
        out.append((t, bytes(data[pos + 5:pos + 5 + size]), base + pos))
        pos += 5 + size
    return out


def _tlv(t: int, value: bytes) -> bytes:
    return struct.pack(">BI", t, len(value)) + bytes(value)


def _uint(value: bytes) -> int:
    v = 0
    for b in value:
        v = (v << 8) | b
    return v


def _uint_bytes(v: int, size: int) -> bytes:
    out = bytearray(size)
    for i in range(size - 1, -1, -1):
        out[i] = v & 0xFF
        v >>= 8
    return bytes(out)


class CelRecord:
    """One CEL record; follows the replay protocol."""

    __slots__ = (
        "_widths",
        "content",
        "content_type",
        "digests",
        "index",
        "index_is_nv",
        "offset",
        "recnum",
    )

    def __init__(self, recnum: int, index: int, digests: list, content_type: int,
                 content: list, index_is_nv: bool = False, offset: int | None = None) -> None:
        self.recnum = recnum
        self.index = index
        self.index_is_nv = index_is_nv
        #: list of (alg, digest)
        self.digests = digests
        self.content_type = content_type
        #: nested TLVs of the content: list of (type, value)
        self.content = content
        self.offset = offset
        self._widths = (8, 1)

    @property
    def extends(self) -> bool:
        return self.content_type != CEL_MGT

    def digest_for(self, alg: int, hashes: HashProvider) -> bytes | None:
        for a, d in self.digests:
            if a == alg:
                return d
        return None

    def encode(self) -> bytes:
        rw, iw = self._widths
        parts = [_tlv(CEL_RECNUM, _uint_bytes(self.recnum, rw)),
                 _tlv(CEL_NV_INDEX if self.index_is_nv else CEL_PCR,
                      _uint_bytes(self.index, iw))]
        parts.append(_tlv(CEL_DIGESTS, b"".join(_tlv(a, d) for a, d in self.digests)))
        parts.append(_tlv(self.content_type, b"".join(_tlv(t, v) for t, v in self.content)))
        return b"".join(parts)

    def to_dict(self) -> dict:
        return cel_json_record(self)


def parse_cel(data: bytes, source: str | None = None) -> list:
    """Decode a CEL TLV stream into records."""
    out = []
    try:
        tlvs = _tlvs(data, 0, source)
        i = 0
        while i < len(tlvs):
            t, v, off = tlvs[i]
            if t != CEL_RECNUM:
                raise FormatError("record must start with RECNUM, found type %d" % t, off,
                                  "RECNUM", source)
            if len(tlvs) - i < 4:
                raise TruncatedError("record %d is incomplete" % _uint(v), off, "record",
                                     source)
            recnum = _uint(v)
            t2, v2, off2 = tlvs[i + 1]
            if t2 not in (CEL_PCR, CEL_NV_INDEX):
                raise FormatError("expected PCR or NV_INDEX, found type %d" % t2, off2,
                                  "PCR", source)
            t3, v3, off3 = tlvs[i + 2]
            if t3 != CEL_DIGESTS:
                raise FormatError("expected DIGESTS, found type %d" % t3, off3, "DIGESTS",
                                  source)
            digests = [(a, d) for a, d, _ in _tlvs(v3, off3 + 5, source)]
            t4, v4, off4 = tlvs[i + 3]
            if t4 not in CONTENT_NAMES:
                raise FormatError("unknown content type %d" % t4, off4, "content", source)
            content = [(a, d) for a, d, _ in _tlvs(v4, off4 + 5, source)]
            rec = CelRecord(recnum, _uint(v2), digests, t4, content, t2 == CEL_NV_INDEX, off)
            rec._widths = (max(1, len(v)), max(1, len(v2)))
            out.append(rec)
            i += 4
    except SpecError as e:
        e.parsed_count = len(out)
        raise
    return out


def encode_cel(records: list) -> bytes:
    return b"".join(r.encode() for r in records)


def detect_cel(data: bytes) -> bool:
    """True when ``data`` starts like a CEL TLV stream (RECNUM then PCR/NV_INDEX)."""
    if len(data) < 10 or data[0] != CEL_RECNUM:
        return False
    size = struct.unpack_from(">I", data, 1)[0]
    if size == 0 or size > 8 or 5 + size + 5 > len(data):
        return False
    return data[5 + size] in (CEL_PCR, CEL_NV_INDEX)


def from_tcg_events(events: list) -> list:
    """TCG events (firmware log) as CEL PCCLIENT_STD records."""
    out = []
    for n, ev in enumerate(events):
        content = [(0, struct.pack(">I", ev.event_type)), (1, bytes(ev.data))]
        rec = CelRecord(n, ev.index, list(ev.digests), CEL_PCCLIENT_STD, content)
        rec._widths = (8, 1)
        out.append(rec)
    return out


def cel_json_record(ev: object, recnum: int = 0) -> dict:
    """One CEL-JSON record for a TCG event, an IMA entry or a CEL record."""
    digests = [{"hashAlg": alg_name(a), "digest": bytes(d).hex()}
               for a, d in getattr(ev, "digests", [])]
    out: dict = {"recnum": getattr(ev, "recnum", recnum), "pcr": ev.index,  # type: ignore
                 "digests": digests}
    if isinstance(ev, CelRecord):
        out["content_type"] = CONTENT_NAMES.get(ev.content_type, str(ev.content_type))
        if ev.content_type == CEL_PCCLIENT_STD:
            fields = dict(ev.content)
            out["content"] = {"event_type": _uint(fields.get(0, b"")),
                              "event_data": fields.get(1, b"").hex()}
        elif ev.content_type == CEL_IMA_TEMPLATE:
            fields = dict(ev.content)
            out["content"] = {"template_name": fields.get(0, b"").decode("ascii", "replace"),
                              "template_data": fields.get(1, b"").hex()}
        else:
            out["content"] = {"tlvs": [{"type": t, "value": v.hex()} for t, v in ev.content]}
    elif hasattr(ev, "template_name"):
        out["content_type"] = "ima_template"
        tname = getattr(ev, "template_name", "")
        tdata = getattr(ev, "template_data", b"")
        out["content"] = {"template_name": tname, "template_data": bytes(tdata).hex()}
    else:
        out["content_type"] = "pcclient_std"
        out["content"] = {"event_type": ev.event_type,  # type: ignore[attr-defined]
                          "event_data": bytes(ev.data).hex()}  # type: ignore[attr-defined]
    return out


def cel_json_records(events: list, index_kind: str = "pcr") -> list:
    """The CEL-JSON record list of ``events`` (recnum = position)."""
    out = []
    for n, ev in enumerate(events):
        rec = cel_json_record(ev, n)
        if not isinstance(ev, CelRecord):
            rec["recnum"] = n
        if index_kind == "cc_mr":
            rec["mr"] = rec.pop("pcr")
        out.append(rec)
    return out


def parse_cel_json(records: list) -> list:
    """CEL-JSON records (already decoded from JSON) back into CelRecords."""
    out = []
    for n, r in enumerate(records):
        try:
            digests = []
            for d in r["digests"]:
                alg = alg_from_name(d["hashAlg"])
                if alg is None:
                    raise ValueError("unknown hashAlg %r" % d["hashAlg"])
                digests.append((alg, bytes.fromhex(d["digest"])))
            ctype = _CONTENT_BY_NAME.get(r.get("content_type", "pcclient_std"))
            if ctype is None:
                raise ValueError("content_type %r" % r.get("content_type"))
            c = r.get("content") or {}
            if ctype == CEL_PCCLIENT_STD:
                content = [(0, struct.pack(">I", int(c["event_type"]))),
                           (1, bytes.fromhex(c["event_data"]))]
            elif ctype == CEL_IMA_TEMPLATE:
                content = [(0, str(c["template_name"]).encode()),
                           (1, bytes.fromhex(c["template_data"]))]
            else:
                content = [(int(x["type"]), bytes.fromhex(x["value"]))
                           for x in c.get("tlvs", [])]
            index = r["pcr"] if "pcr" in r else r["mr"]
            out.append(CelRecord(int(r.get("recnum", n)), int(index), digests, ctype, content))
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError("CEL-JSON record %d: %s" % (n, e), None, "record") from None
    return out
