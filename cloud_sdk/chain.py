"""The measurement chain: firmware log + agent log + IMA log, replayed per register.

Logs are merged per root of trust in boot order (firmware, then the agent in
the initrd, then IMA at runtime); the replay of each register is compared
with its live value, and a mismatch names the first event that the live
value does not account for, when one can be singled out.
"""

from dataclasses import dataclass, field

from cloud_sdk.evidence import Evidence
from cloud_sdk.hashing import hashlib_provider
from shared_spec import agent_events, ima
from shared_spec.algorithms import alg_name
from shared_spec.ccel import CcelTable, parse_ccel_log
from shared_spec.checks import check_tcg_events
from shared_spec.errors import SpecError
from shared_spec.findings import SEVERITY_ERROR, SEVERITY_INFO, SEVERITY_WARNING, Finding
from shared_spec.registers import INDEX_CC_MR, INDEX_PCR, register_label
from shared_spec.replay import ReplayResult, initial_value, replay
from shared_spec.tcg_log import parse_tcg_log

SOURCE_FIRMWARE = "firmware"
SOURCE_AGENT = "agent"
SOURCE_IMA = "ima"


@dataclass
class ChainEvent:
    """An event of the merged chain, with where it came from."""

    source: str
    seq_in_source: int
    event: object


@dataclass
class RegisterStatus:
    """One register bank: live value, replayed value, and where they part."""

    index_kind: str
    index: int
    alg: int
    live: bytes | None
    replayed: bytes | None
    first_divergent: ChainEvent | None = None
    reason: str = ""

    @property
    def label(self) -> str:
        return register_label(self.index_kind, self.index)

    @property
    def matches(self) -> bool:
        return self.live is not None and self.replayed is not None and self.live == self.replayed

    def to_dict(self) -> dict:
        out: dict = {
            "register": self.label, "index_kind": self.index_kind, "index": self.index,
            "alg": alg_name(self.alg),
            "live": None if self.live is None else self.live.hex(),
            "replayed": None if self.replayed is None else self.replayed.hex(),
            "matches": self.matches, "reason": self.reason,
        }
        if self.first_divergent is not None:
            out["first_divergent_event"] = {"source": self.first_divergent.source,
                                            "seq": self.first_divergent.seq_in_source}
        return out


@dataclass
class ChainResult:
    """Per-register status for each root of trust, and the findings."""

    registers: list[RegisterStatus] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    replays: dict[str, ReplayResult] = field(default_factory=dict)
    events: dict[str, list[ChainEvent]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.matches for r in self.registers) and not any(
            f.severity == SEVERITY_ERROR for f in self.findings)


def _parse(name: str, data: bytes, findings: list[Finding], index_kind: str,
           table: CcelTable | None = None) -> list:
    try:
        if table is not None or name == "ccel_data":
            log = parse_ccel_log(data, table, source=name)
        else:
            log = parse_tcg_log(data, source=name)
    except SpecError as e:
        findings.append(Finding("LOG_UNPARSABLE", SEVERITY_ERROR,
                                "%s cannot be parsed: %s" % (name, e.located()),
                                evidence={"blob": name, "offset": e.offset}))
        return []
    for f in check_tcg_events(log.events, hashlib_provider(), index_kind):
        f.evidence["log"] = name
        findings.append(f)
    return list(log.events)


def _ima_entries(evidence: Evidence, findings: list[Finding]) -> list:
    for name in ("ima_binary", "ima_ascii"):
        data = evidence.blob(name)
        if data is None:
            continue
        try:
            if name == "ima_binary":
                sniffed = ima.sniff_ima_binary(data)
                alg, big_endian = sniffed if sniffed is not None else (0x0004, False)
                entries = ima.parse_ima_binary(data, source=name, template_hash_alg=alg,
                                               big_endian=big_endian)
            else:
                entries = ima.parse_ima_ascii(data, source=name)
        except SpecError as e:
            findings.append(Finding("LOG_UNPARSABLE", SEVERITY_ERROR,
                                    "%s cannot be parsed: %s" % (name, e.located()),
                                    evidence={"blob": name}))
            continue
        for f in ima.check_entries(entries, hashlib_provider()):
            f.evidence["log"] = name
            findings.append(f)
        return list(entries)
    return []


def build_chain(evidence: Evidence) -> ChainResult:
    """Merge, replay and compare every root of trust present in ``evidence``."""
    result = ChainResult()
    hashes = hashlib_provider()
    ima_entries = _ima_entries(evidence, result.findings)
    roots: list[tuple[str, str, str, CcelTable | None]] = []
    if evidence.blob("tpm_eventlog") is not None or evidence.registers.get(INDEX_PCR):
        roots.append((INDEX_PCR, "tpm_eventlog", "agent_tpm_log", None))
    if evidence.blob("ccel_data") is not None or evidence.registers.get(INDEX_CC_MR):
        table = None
        raw_table = evidence.blob("ccel_table")
        if raw_table is not None:
            table = CcelTable.decode(raw_table, source="ccel_table")
        roots.append((INDEX_CC_MR, "ccel_data", "agent_ccel_log", table))
    for index_kind, fw_name, agent_name, table in roots:
        chain: list[ChainEvent] = []
        fw = evidence.blob(fw_name)
        if fw is not None:
            for i, ev in enumerate(_parse(fw_name, fw, result.findings, index_kind, table)):
                chain.append(ChainEvent(SOURCE_FIRMWARE, i, ev))
        agent = evidence.blob(agent_name)
        agent_events_list: list = []
        if agent is not None:
            agent_events_list = _parse(agent_name, agent, result.findings, index_kind)
            for i, ev in enumerate(agent_events_list):
                chain.append(ChainEvent(SOURCE_AGENT, i, ev))
        if ima_entries:
            mapped = ima.to_cc_mr(ima_entries) if index_kind == INDEX_CC_MR else ima_entries
            if index_kind == INDEX_PCR or fw_name == "ccel_data":
                for i, ev in enumerate(mapped):
                    chain.append(ChainEvent(SOURCE_IMA, i, ev))
        live = evidence.registers.get(index_kind, {})
        banks = sorted({alg for regs in live.values() for alg in regs})
        if not banks:
            banks = sorted({alg for ce in chain for alg, _ in getattr(ce.event, "digests", [])})
        initial = agent_events.initial_values(agent_events_list)
        rep = replay([ce.event for ce in chain], hashes, index_kind, banks, initial)
        result.replays[index_kind] = rep
        result.events[index_kind] = chain
        result.findings.extend(rep.findings)
        _compare(index_kind, rep, chain, live, initial, result)
    return result


_LOG_SOURCES = {"tpm_eventlog": SOURCE_FIRMWARE, "ccel_data": SOURCE_FIRMWARE,
                "agent_tpm_log": SOURCE_AGENT, "agent_ccel_log": SOURCE_AGENT,
                "ima_binary": SOURCE_IMA, "ima_ascii": SOURCE_IMA}


def _padded_sha1_match(chain: list[ChainEvent], index: int, alg: int, live: bytes,
                       rep: ReplayResult, initial: dict) -> str | None:
    """Replay ``index`` with IMA entries as padded SHA-1 digests; a reason if it matches."""
    if not any(ce.source == SOURCE_IMA and getattr(ce.event, "index", None) == index
               for ce in chain):
        return None
    events = [ima.PaddedSha1Entry(ce.event)
              if ce.source == SOURCE_IMA and isinstance(ce.event, ima.ImaEntry) else ce.event
              for ce in chain if getattr(ce.event, "index", None) == index]
    alt = replay(events, hashlib_provider(), rep.index_kind, [alg], initial)
    if alt.value(index, alg) == live:
        return "IMA entries extended as zero-padded SHA-1"
    (m,) = alt.compare({index: {alg: live}})
    if m.reason.startswith("register matches after") and m.first_divergent_event is not None:
        rest = events[m.first_divergent_event:]
        if all(isinstance(e, ima.PaddedSha1Entry) for e in rest):
            return "IMA entries extended as zero-padded SHA-1; later entries not yet in it"
    return None


def _ima_log_ahead(chain: list[ChainEvent], index: int, first: int | None,
                   reason: str) -> bool:
    """True when the register equals a prefix of the chain and only IMA entries follow."""
    if first is None or not reason.startswith("register matches after"):
        return False
    rest = [ce for ce in chain[first:] if getattr(ce.event, "index", None) == index]
    return bool(rest) and all(ce.source == SOURCE_IMA for ce in rest)


def _first_flagged(chain: list[ChainEvent], index: int,
                   findings: list[Finding]) -> ChainEvent | None:
    """The first chain event of register ``index`` that an integrity check flagged."""
    flagged = set()
    for f in findings:
        if f.severity == SEVERITY_ERROR and f.event is not None and f.register == index:
            flagged.add((_LOG_SOURCES.get(str(f.evidence.get("log")), ""), f.event))
    for ce in chain:
        if (ce.source, ce.seq_in_source) in flagged:
            return ce
    return None


def _compare(index_kind: str, rep: ReplayResult, chain: list[ChainEvent],
             live: dict[int, dict[int, bytes]], initial: dict, result: ChainResult) -> None:
    indexes = sorted(set(rep.registers) | set(live))
    for index in indexes:
        if index_kind == INDEX_CC_MR and index == 0:
            continue  # MRTD is measured by the TDX module, not replayed from a log
        for alg in rep.algorithms:
            have = live.get(index, {}).get(alg)
            replayed = rep.value(index, alg)
            if replayed is None and index not in rep.registers:
                replayed = initial.get((index, alg)) or initial_value(index_kind, index, alg)
            status = RegisterStatus(index_kind, index, alg, have, replayed)
            if have is None:
                status.reason = "no live value"
                if index in live:
                    result.findings.append(Finding(
                        "REGISTER_UNREADABLE", SEVERITY_WARNING,
                        "%s bank %s was not read" % (status.label, alg_name(alg)), index))
            elif status.matches:
                status.reason = "match"
            else:
                (m,) = rep.compare({index: {alg: have}}) if index in rep.registers else (None,)
                if m is not None:
                    status.reason = m.reason
                    if m.first_divergent_event is not None:
                        status.first_divergent = chain[m.first_divergent_event]
                    padded = _padded_sha1_match(chain, index, alg, have, rep, initial)
                    if padded is not None:
                        status.replayed = have
                        status.first_divergent = None
                        status.reason = "match (%s)" % padded
                        result.findings.append(Finding(
                            "IMA_BANK_PADDED_SHA1", SEVERITY_INFO,
                            "%s bank %s: the kernel extended zero-padded SHA-1 template "
                            "digests (it had no %s implementation when IMA started)"
                            % (status.label, alg_name(alg), alg_name(alg)), index))
                        result.registers.append(status)
                        continue
                    if _ima_log_ahead(chain, index, m.first_divergent_event, m.reason):
                        # IMA keeps measuring while evidence is read: a list longer than
                        # the register is expected; the register must match a prefix.
                        status.replayed = have
                        status.first_divergent = None
                        status.reason = "match (IMA list has later entries: %s)" % m.reason
                        result.findings.append(Finding(
                            "IMA_LOG_AHEAD", SEVERITY_INFO,
                            "%s matches the IMA list up to entry #%d; later entries were "
                            "measured after the register was read"
                            % (status.label, chain[m.first_divergent_event].seq_in_source),
                            index))
                        result.registers.append(status)
                        continue
                else:
                    status.reason = "extended, but no logged event touches it"
                if status.first_divergent is None:
                    flagged = _first_flagged(chain, index, result.findings)
                    if flagged is not None:
                        status.first_divergent = flagged
                        status.reason += "; event #%d of the %s log has a bad digest" % (
                            flagged.seq_in_source, flagged.source)
                result.findings.append(Finding(
                    "REGISTER_MISMATCH", SEVERITY_ERROR,
                    "%s (%s): live value differs from the replayed log: %s"
                    % (status.label, alg_name(alg), status.reason), index,
                    evidence={"live": have.hex(),
                              "replayed": None if replayed is None else replayed.hex()}))
            result.registers.append(status)
