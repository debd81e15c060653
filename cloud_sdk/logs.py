"""Load measurement logs from files and tell their kinds apart.

Kinds: TCG crypto-agile, TCG SHA-1 legacy, CCEL log area (with or without
padding), TCG CEL TLV, IMA binary and IMA ascii measurement lists. The kind
decides the register convention (``pcr`` or ``cc_mr``) of the events.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path

from cloud_sdk.errors import InputError
from shared_spec import cel, ima
from shared_spec.ccel import CcelTable, parse_ccel_log
from shared_spec.errors import SpecError
from shared_spec.event_types import EV_NO_ACTION
from shared_spec.registers import INDEX_CC_MR, INDEX_PCR
from shared_spec.tcg_log import (
    SPEC_ID_SIGNATURE_00,
    SPEC_ID_SIGNATURE_03,
    TcgLog,
    parse_tcg_log,
)

KIND_TCG_AGILE = "tcg-crypto-agile"
KIND_TCG_SHA1 = "tcg-sha1"
KIND_CCEL = "ccel"
KIND_CEL = "cel-tlv"
KIND_IMA_BINARY = "ima-binary"
KIND_IMA_ASCII = "ima-ascii"

KINDS = (KIND_TCG_AGILE, KIND_TCG_SHA1, KIND_CCEL, KIND_CEL, KIND_IMA_BINARY, KIND_IMA_ASCII)

#: Upper bound on a log file read into memory (1 GiB); bigger is not a log.
MAX_LOG_BYTES = 1 << 30


@dataclass
class LoadedLog:
    """One log file, decoded."""

    path: str
    kind: str
    index_kind: str
    events: list
    algorithms: list[int]
    tcg: TcgLog | None = None
    notes: list[str] = field(default_factory=list)


def read_file(path: str | Path) -> bytes:
    """Read a log file, with an :class:`InputError` naming it on failure."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_LOG_BYTES:
            raise InputError("%s: %d bytes is too large for a measurement log" % (p, size))
        return p.read_bytes()
    except OSError as e:
        raise InputError("%s: cannot read: %s" % (p, e.strerror or e)) from e


def _tcg_header(data: bytes) -> tuple[int, bytes] | None:
    """(index, signature) of a TCG log's first record if it is a Spec ID event."""
    if len(data) < 48:
        return None
    import struct

    index, etype = struct.unpack_from("<II", data, 0)
    sig = data[32:48]
    if etype == EV_NO_ACTION and sig in (SPEC_ID_SIGNATURE_03, SPEC_ID_SIGNATURE_00):
        return index, sig
    return None


def detect_kind(data: bytes) -> str | None:
    """The kind of a log from its bytes, or None when it is none of the known ones."""
    head = _tcg_header(data)
    if head is not None:
        index, sig = head
        if sig == SPEC_ID_SIGNATURE_00:
            return KIND_TCG_SHA1
        if index == 1:
            return KIND_CCEL
        return KIND_TCG_AGILE
    imakind = ima.detect_ima(data)
    if imakind == "ascii":
        return KIND_IMA_ASCII
    if cel.detect_cel(data):
        return KIND_CEL
    if imakind == "binary":
        return KIND_IMA_BINARY
    try:
        log = parse_tcg_log(data[: 1 << 16], strict=False)
    except SpecError:
        return None
    if log.events and all(ev.index < 32 for ev in log.events[:8]):
        return KIND_TCG_SHA1
    return None


def load_log(path: str | Path, kind: str | None = None, ccel_table: CcelTable | None = None,
             index_kind: str | None = None, data: bytes | None = None) -> LoadedLog:
    """Decode one log file; ``kind`` overrides detection."""
    name = str(path)
    raw = read_file(path) if data is None else data
    if kind is None:
        kind = KIND_CCEL if ccel_table is not None else detect_kind(raw)
    if kind is None:
        raise InputError("%s: not a measurement log this tool knows (TCG, CCEL, CEL, IMA)" % name)
    if kind in (KIND_TCG_AGILE, KIND_TCG_SHA1, KIND_CCEL):
        if kind == KIND_CCEL:
            tcg = parse_ccel_log(raw, ccel_table, source=name)
        else:
            tcg = parse_tcg_log(raw, source=name)
        ik = INDEX_CC_MR if kind == KIND_CCEL else INDEX_PCR
        notes = []
        if tcg.trailer and kind != KIND_CCEL and tcg.trailer[:1] == b"\xff":
            ik = INDEX_CC_MR
            notes.append("0xFF padding after the last event: read as a CCEL log area")
        if index_kind is not None:
            ik = index_kind
        return LoadedLog(name, kind, ik, list(tcg.events), tcg.algorithms, tcg, notes)
    if kind == KIND_CEL:
        records = cel.parse_cel(raw, source=name)
        algs: dict[int, bool] = {}
        for r in records:
            for alg, _ in r.digests:
                algs[alg] = True
        return LoadedLog(name, kind, index_kind or INDEX_PCR, list(records), sorted(algs))
    if kind == KIND_IMA_ASCII:
        entries = ima.parse_ima_ascii(raw, source=name)
    elif kind == KIND_IMA_BINARY:
        sniffed = ima.sniff_ima_binary(raw)
        alg, big_endian = sniffed if sniffed is not None else (0x0004, False)
        entries = ima.parse_ima_binary(raw, source=name, template_hash_alg=alg,
                                       big_endian=big_endian)
    else:
        raise InputError("%s: unknown log kind %r (choose from %s)"
                         % (name, kind, ", ".join(KINDS)))
    # an ImaEntry's digests are [(template_hash_alg, template_hash)]: its banks in one pass
    ima_algs: list[int] = sorted(set(map(attrgetter("template_hash_alg"), entries)))
    return LoadedLog(name, kind, index_kind or INDEX_PCR, entries, ima_algs)


def combine(logs: Sequence[LoadedLog]) -> tuple[str, list, list[int]]:
    """Concatenate logs in the order given, in one register convention.

    TCG, CCEL and CEL logs fix the convention; IMA lists follow it (an IMA
    list replayed after a CCEL is mapped into CC MR indexes, see
    :func:`shared_spec.ima.to_cc_mr`). Returns (index_kind, events, banks).
    """
    kinds = {lg.index_kind for lg in logs if lg.kind not in (KIND_IMA_ASCII, KIND_IMA_BINARY)}
    if len(kinds) > 1:
        raise InputError("cannot replay PCR-indexed and CC MR-indexed logs together: "
                         + ", ".join("%s (%s)" % (lg.path, lg.index_kind) for lg in logs))
    index_kind = kinds.pop() if kinds else INDEX_PCR
    events: list = []
    banks: dict[int, bool] = {}
    firmware_banks = [lg for lg in logs if lg.kind not in (KIND_IMA_ASCII, KIND_IMA_BINARY)]
    for lg in logs:
        if lg.kind in (KIND_IMA_ASCII, KIND_IMA_BINARY) and index_kind == INDEX_CC_MR:
            events.extend(ima.to_cc_mr(lg.events))
        else:
            events.extend(lg.events)
        if lg in firmware_banks or not firmware_banks:
            for alg in lg.algorithms:
                banks[alg] = True
    return index_kind, events, sorted(banks)
