"""The CC Trusted API calls, on any :class:`~cloud_sdk.backends.Backend`.

The names and arguments are those of the CC Trusted API (cc-api), so code
written for it ports by changing an import. The register numbering is not
cc-api's: it is the one of DESIGN.md, the same in every call, file and
output of cvmchain:

- TDX: the CC MR index of UEFI 2.10 §38.4.1 and of the CCEL:
  0 = MRTD, 1 = RTMR0, 2 = RTMR1, 3 = RTMR2, 4 = RTMR3;
- TPM: the PCR number.

cctrusted-base reports every index one lower than logged (PCR 0 becomes -1,
RTMR0 becomes 0); nothing here shifts an index, ever.

Every call takes an optional ``backend``; without one the backend is chosen
by :func:`~cloud_sdk.backends.detect_backend` (TDX, else a TPM).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from cloud_sdk.backends import AttestationReport, Backend, detect_backend, report_data_for
from cloud_sdk.chain import build_chain
from cloud_sdk.collect import collect_evidence
from cloud_sdk.errors import BackendError, InputError
from cloud_sdk.hashing import hashlib_provider
from shared_spec import agent_events
from shared_spec.algorithms import alg_name, digest_size
from shared_spec.registers import INDEX_CC_MR, INDEX_PCR, register_label
from shared_spec.replay import replay


@dataclass(frozen=True)
class Algorithm:
    """A hash algorithm: its TPM_ALG_ID and name (cc-api's ``TcgAlgorithmRegistry``)."""

    alg_id: int

    @property
    def name(self) -> str:
        return alg_name(self.alg_id)


@dataclass(frozen=True)
class Measurement:
    """One register bank's value (cc-api's ``TcgDigest``), with its index and label."""

    index_kind: str
    index: int
    alg_id: int
    hash: bytes

    @property
    def label(self) -> str:
        """``MR4 (RTMR3)`` or ``PCR 15``."""
        return register_label(self.index_kind, self.index)


@dataclass(frozen=True)
class CcReport:
    """An attestation report (cc-api's ``CcReport``): a TDX quote and the REPORTDATA it binds."""

    data: bytes
    report_data: bytes
    kind: str
    source: str

    @classmethod
    def from_report(cls, rep: AttestationReport) -> CcReport:
        return cls(rep.data, rep.report_data, rep.kind, rep.source)


def _backend(backend: Backend | None) -> Backend:
    return backend if backend is not None else detect_backend()


def _bytes_arg(value: bytes | str | None, name: str) -> bytes | None:
    """cc-api passes nonce and data as base64 strings; cvmchain also takes bytes."""
    if value is None or isinstance(value, bytes):
        return value
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InputError("%s: not base64 (%s); pass bytes or a base64 string" % (name, e)
                         ) from e


def get_default_algorithms(backend: Backend | None = None) -> Algorithm:
    """The default bank: SHA-384 on TDX (the only one), SHA-256 on a TPM when active.

    Register convention (DESIGN.md): TDX registers are CC MR indexes (0 = MRTD,
    1..4 = RTMR0..RTMR3), TPM registers are PCR numbers; never shifted by one.
    """
    algs = _backend(backend).algorithms()
    if not algs:
        raise BackendError("the backend reports no register bank")
    return Algorithm(algs[0])


def get_measurement_count(backend: Backend | None = None) -> int:
    """How many registers there are; valid indexes are 0 .. count - 1.

    TDX: 5 (CC MR 0 = MRTD and 1..4 = RTMR0..RTMR3; cc-api counts 4 RTMRs
    and numbers them 0..3, which is a different index space). TPM: 24 PCRs,
    index = PCR number.
    """
    return _backend(backend).register_count()


def get_cc_measurement(index: int, alg: int | None = None,
                       backend: Backend | None = None) -> Measurement:
    """The live value of register ``index`` in bank ``alg`` (default: the default bank).

    ``index`` is a CC MR index on TDX (0 = MRTD, 1 = RTMR0, ..., 4 = RTMR3) and
    a PCR number on a TPM: ``get_cc_measurement(4)`` on TDX is RTMR3, never
    RTMR4 or RTMR2. An index or bank that does not exist is an :class:`InputError`.
    """
    b = _backend(backend)
    count = b.register_count()
    if not 0 <= index < count:
        raise InputError("register index %d out of range: %s has %s 0..%d"
                         % (index, b.name, "CC MR indexes" if b.index_kind == INDEX_CC_MR
                            else "PCRs", count - 1))
    if alg is None:
        alg = get_default_algorithms(b).alg_id
    if digest_size(alg) is None:
        raise InputError("unknown hash algorithm 0x%04x" % alg)
    value = b.read_registers().get(index, {}).get(alg)
    if value is None:
        raise InputError("%s has no %s bank on %s"
                         % (register_label(b.index_kind, index), alg_name(alg), b.name))
    return Measurement(b.index_kind, index, alg, value)


def get_cc_report(nonce: bytes | str | None = None, data: bytes | str | None = None,
                  backend: Backend | None = None) -> CcReport:
    """A TDX quote whose REPORTDATA is SHA-512(nonce || data) (cc-api's binding).

    ``nonce`` and ``data`` are bytes, or base64 strings as cc-api passes them;
    with neither, REPORTDATA is 64 zero bytes. The quote's RTMRs are CC MR
    1..4 (RTMR n = CC MR n + 1) and its MRTD is CC MR 0. A TPM backend has no
    quote here (it needs an attestation key) and raises :class:`BackendError`.
    """
    b = _backend(backend)
    rd = report_data_for(_bytes_arg(nonce, "nonce"), _bytes_arg(data, "data"))
    return CcReport.from_report(b.get_report(rd))


def get_cc_eventlog(start: int | None = None, count: int | None = None,
                    backend: Backend | None = None) -> list:
    """The merged event log: firmware, then the cvmchain agent, then IMA.

    Each event's ``index`` is in the backend's convention: CC MR indexes on
    TDX (the CCEL's own numbering; IMA entries logged against RTMR n are
    given index n + 1), PCR numbers on a TPM. ``start`` (default 0) and
    ``count`` (default: to the end) select a slice; a start beyond the end
    or a negative count is an :class:`InputError`. The Spec ID header is not
    an event of the list.
    """
    b = _backend(backend)
    evidence = collect_evidence(b, include_quote=False)
    chain = build_chain(evidence)
    for f in chain.findings:
        if f.code == "LOG_UNPARSABLE":
            raise InputError(f.message)
    events = [ce.event for ce in chain.events.get(b.index_kind, [])]
    first = 0 if start is None else start
    if not 0 <= first <= len(events):
        raise InputError("start %d out of range: the event log has %d events"
                         % (first, len(events)))
    if count is not None and count < 0:
        raise InputError("count %d is negative" % count)
    return events[first:] if count is None else events[first:first + count]


def replay_cc_eventlog(events: Sequence, index_kind: str | None = None,
                       backend: Backend | None = None) -> dict[int, dict[int, bytes]]:
    """Replay ``events`` (as from :func:`get_cc_eventlog`): ``{index: {alg: value}}``.

    Indexes are those of the events, never shifted: CC MR indexes (0 = MRTD,
    1..4 = RTMR0..RTMR3) when ``index_kind`` is ``"cc_mr"``, PCR numbers when
    it is ``"pcr"``; by default the backend's kind. Every bank any event
    carries a digest for is replayed; a bank that some event of a register
    lacks is left out for that register rather than guessed. The agent's
    initial-value records set the start of a register that did not start
    at zero.
    """
    if index_kind is None:
        index_kind = _backend(backend).index_kind
    if index_kind not in (INDEX_CC_MR, INDEX_PCR):
        raise InputError("index_kind must be %r or %r, not %r" % (INDEX_CC_MR, INDEX_PCR,
                                                                  index_kind))
    evs = list(events)
    rep = replay(evs, hashlib_provider(), index_kind, None, agent_events.initial_values(evs))
    out: dict[int, dict[int, bytes]] = {}
    for index in sorted(rep.registers):
        bank = {alg: bytes(v) for alg, v in rep.registers[index].items() if v is not None}
        if bank:
            out[index] = bank
    return out
