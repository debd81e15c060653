"""Replay: recompute register values from a sequence of logged events.

Works on anything that follows the replay protocol, so TCG records, CEL
records and IMA entries replay through the same code:

- ``index``: the register (PCR number or CC MR index, per ``index_kind``);
- ``extends``: False for records that are logged but not extended
  (EV_NO_ACTION);
- ``digest_for(alg, hashes)``: the digest this record extends into bank
  ``alg``, or None when it carries none for that bank (the bank of that
  register then cannot be replayed and is reported, not guessed).

Optionally, an event class may offer a batch form: a static method
``extend_run(events, alg, hashes, values)`` that extends bank ``alg`` by a run of
consecutive events of that class (all of which extend), updating ``values``
({register: value or None}) in place, and returns the positions in the run whose
digest was None. It must give exactly what the per-event protocol gives;
:class:`shared_spec.ima.ImaEntry` has one, so an IMA list replays in one tight
loop per bank. A class with ``extend_run`` may also offer
``extend_banks(events, algs, hashes, values_per_bank)``: every bank at once,
returning True when done with no digest missing, or False having changed
nothing (``extend_run`` then runs per bank).

Initial values follow the platform: zeros, except PCR 0 whose last byte is the
locality of a StartupLocality event (PC Client PFP §10.4.5.3) and PCRs 17-22
which reset to all ones (PC Client PTP). A caller may override any initial
value, as the agent's log does for a TSM register that does not start at zero.
"""

from shared_spec.algorithms import alg_name, digest_size
from shared_spec.event_types import EV_NO_ACTION
from shared_spec.findings import SEVERITY_ERROR, SEVERITY_WARNING, Finding
from shared_spec.hashing import HashProvider
from shared_spec.registers import INDEX_PCR, register_label
from shared_spec.tcg_log import parse_startup_locality

try:  # CPython: find a run's end and registers in C-level passes (see _run_extent)
    from itertools import repeat as _repeat
    from operator import attrgetter as _attrgetter
    from operator import is_not as _is_not

    _C_SCAN = True
except ImportError:  # pragma: no cover - MicroPython: the portable loop
    _C_SCAN = False


def initial_value(index_kind: str, index: int, alg: int, locality: int = 0) -> bytes:
    """The reset value of a register's bank."""
    size = digest_size(alg)
    if size is None:
        size = 0
    if index_kind == INDEX_PCR:
        if index == 0 and locality:
            return b"\x00" * (size - 1) + bytes([locality & 0xFF])
        if 17 <= index <= 22:
            return b"\xff" * size
    return b"\x00" * size


class RegisterMatch:
    """The comparison of one replayed register bank with an expected value.

    ``first_divergent_event`` is the sequence number (in the replayed event
    list) of the first event that the expected value does not account for, or
    None when the value matches or no event can be singled out.
    """

    def __init__(self, register: int, alg: int, expected: bytes, replayed: bytes | None,
                 first_divergent_event: int | None, reason: str, label: str) -> None:
        self.register = register
        self.alg = alg
        self.expected = expected
        self.replayed = replayed
        self.first_divergent_event = first_divergent_event
        self.reason = reason
        self.label = label

    @property
    def matches(self) -> bool:
        return self.replayed is not None and self.replayed == self.expected

    def to_dict(self) -> dict:
        return {
            "register": self.register,
            "label": self.label,
            "alg": alg_name(self.alg),
            "expected": bytes(self.expected).hex(),
            "replayed": None if self.replayed is None else bytes(self.replayed).hex(),
            "matches": self.matches,
            "first_divergent_event": self.first_divergent_event,
            "reason": self.reason,
        }


class ReplayResult:
    """Final register values of a replay, per register and bank."""

    def __init__(self, index_kind: str, registers: dict, event_count: int, findings: list,
                 events: list, hashes: HashProvider, initial: dict, algorithms: list) -> None:
        self.index_kind = index_kind
        #: index -> {alg: bytes or None (bank could not be replayed)}
        self.registers = registers
        self.event_count = event_count
        self.findings = findings
        self.algorithms = algorithms
        self._events = events
        self._hashes = hashes
        self._initial = initial

    def value(self, index: int, alg: int) -> bytes | None:
        bank = self.registers.get(index)
        if bank is None:
            return None
        return bank.get(alg)

    def to_dict(self) -> dict:
        """``{"index_kind", "registers": {"<index>": {"<alg>": "<hex>"}}, "events"}``."""
        regs: dict = {}
        for index in sorted(self.registers):
            bank = {}
            for alg in sorted(self.registers[index]):
                v = self.registers[index][alg]
                if v is not None:
                    bank[alg_name(alg)] = bytes(v).hex()
            regs[str(index)] = bank
        return {"index_kind": self.index_kind, "registers": regs, "events": self.event_count,
                "findings": [f.to_dict() for f in self.findings]}

    def compare(self, expected: dict) -> list:
        """Compare with ``expected`` ({index: {alg: bytes}}); one RegisterMatch per bank.

        A mismatch is located: when the expected value equals the register after
        some prefix of its events, the first event past that prefix is named
        (the log holds events the register never saw); when the register's
        events are fewer than the value needs, or no prefix matches, the
        first event of that register whose digest was already flagged is
        named if there is one.
        """
        out = []
        for index in sorted(expected):
            for alg in sorted(expected[index]):
                want = bytes(expected[index][alg])
                got = self.value(index, alg)
                label = register_label(self.index_kind, index)
                if got is not None and got == want:
                    out.append(RegisterMatch(index, alg, want, got, None, "match", label))
                    continue
                out.append(self._locate(index, alg, want, got, label))
        return out

    def _locate(self, index: int, alg: int, want: bytes, got: bytes | None,
                label: str) -> RegisterMatch:
        seqs = [i for i, ev in enumerate(self._events) if ev.index == index and ev.extends]
        if got is None:
            return RegisterMatch(index, alg, want, None, None,
                                 "bank %s of %s cannot be replayed: events lack its digest"
                                 % (alg_name(alg), label), label)
        value = self._initial_for(index, alg)
        if value == want:
            first = seqs[0] if seqs else None
            return RegisterMatch(index, alg, want, got, first,
                                 "register still holds its initial value; no logged event "
                                 "reached it", label)
        hash_fn = self._hashes.oneshot(alg)
        for n, seq in enumerate(seqs):
            d = self._events[seq].digest_for(alg, self._hashes)
            if d is None:
                break
            value = hash_fn(value + d)
            if value == want and n + 1 < len(seqs):
                return RegisterMatch(index, alg, want, got, seqs[n + 1],
                                     "register matches after %d of %d events; event #%d and "
                                     "later were logged but not extended" % (n + 1, len(seqs),
                                                                            seqs[n + 1]), label)
        flagged = [f.event for f in self.findings
                   if f.register == index and f.event is not None and f.severity == SEVERITY_ERROR]
        if flagged:
            return RegisterMatch(index, alg, want, got, flagged[0],
                                 "no prefix of the log gives the register value; event #%d "
                                 "is the first with a bad digest" % flagged[0], label)
        return RegisterMatch(index, alg, want, got, None,
                             "no prefix of the %d logged events gives the register value: "
                             "extends are missing from the log or an event was altered"
                             % len(seqs), label)

    def _initial_for(self, index: int, alg: int) -> bytes:
        v = self._initial.get((index, alg))
        if v is not None:
            return v
        return initial_value(self.index_kind, index, alg, 0)


def replay(events: list, hashes: HashProvider, index_kind: str = INDEX_PCR,
           algorithms: list | None = None, initial: dict | None = None) -> ReplayResult:
    """Replay ``events`` in order; returns the final value of every register touched.

    ``algorithms``: banks to compute (default: every algorithm any event carries
    a digest for). ``initial``: {(index, alg): bytes} overriding reset values.
    ``hashes``: a :class:`shared_spec.hashing.HashProvider`.
    """
    if not isinstance(events, list):
        events = list(events)
    if algorithms is None:
        seen: dict = {}
        for ev in events:
            for alg, _ in getattr(ev, "digests", ()):
                seen[alg] = True
        algorithms = sorted(seen)
    fns = {}
    for alg in algorithms:
        fns[alg] = hashes.oneshot(alg)
    init = dict(initial or {})
    locality = 0
    registers: dict = {}
    findings: list = []
    missing_reported: dict = {}
    hook_class = None
    hook = None
    n_events = len(events)
    seq = -1
    while seq + 1 < n_events:
        seq += 1
        ev = events[seq]
        cls = type(ev)
        if cls is not hook_class:
            hook_class = cls
            hook = getattr(cls, "extend_run", None)
        if hook is not None:
            seq = _replay_run(events, seq, hook, index_kind, algorithms, hashes, init,
                              locality, registers, findings, missing_reported)
            continue
        index = ev.index
        if not ev.extends:
            if index_kind == INDEX_PCR and index == 0 and getattr(ev, "event_type", None) == \
                    EV_NO_ACTION:
                loc = parse_startup_locality(getattr(ev, "data", b""))
                if loc is not None:
                    if 0 in registers:
                        findings.append(Finding(
                            "STARTUP_LOCALITY_LATE", SEVERITY_WARNING,
                            "StartupLocality event after PCR 0 was extended", 0, seq,
                            getattr(ev, "offset", None)))
                    else:
                        locality = loc
            continue
        bank = registers.get(index)
        if bank is None:
            bank = registers[index] = _new_bank(index_kind, index, algorithms, init, locality)
        for alg in algorithms:
            old = bank[alg]
            if old is None:
                continue
            d = ev.digest_for(alg, hashes)
            if d is None:
                bank[alg] = None
                key = (index, alg)
                if key not in missing_reported:
                    missing_reported[key] = True
                    findings.append(Finding(
                        "REPLAY_BANK_INCOMPLETE", SEVERITY_WARNING,
                        "%s bank %s: event #%d has no %s digest; bank not replayed"
                        % (register_label(index_kind, index), alg_name(alg), seq, alg_name(alg)),
                        index, seq, getattr(ev, "offset", None)))
                continue
            bank[alg] = fns[alg](old + d)
    for index in registers:
        for alg in algorithms:
            if (index, alg) not in init:
                init[(index, alg)] = initial_value(index_kind, index, alg,
                                                   locality if index == 0 else 0)
    return ReplayResult(index_kind, registers, len(events), findings, list(events), hashes, init,
                        list(algorithms))


def _new_bank(index_kind: str, index: int, algorithms: list, init: dict,
              locality: int) -> dict:
    """{alg: value} of a register before its first extend: ``init``'s or its reset value."""
    bank = {}
    for alg in algorithms:
        v = init.get((index, alg))
        bank[alg] = v if v is not None else initial_value(index_kind, index, alg, locality)
    return bank


def _run_extent(events: list, start: int, cls: type) -> tuple:
    """(end, registers): where the run of ``cls`` events from ``start`` ends, and the
    registers it extends in the order it first reaches them."""
    n = len(events)
    if _C_SCAN:  # windows doubling from 64 events: work in proportion to the run's length
        end = start
        step = 64
        while end < n:
            other = list(map(_is_not, map(type, events[end:end + step]), _repeat(cls)))
            if True in other:
                end += other.index(True)
                break
            end += len(other)
            step += step
        run = events if start == 0 and end == n else events[start:end]
        return end, list(dict.fromkeys(map(_attrgetter("index"), run)))
    end = start
    last = None
    reached: list = []
    seen: dict = {}
    while end < n:
        ev = events[end]
        kind = type(ev)
        if kind is not cls:
            break
        index = ev.index
        if index != last:
            last = index
            if index not in seen:
                seen[index] = True
                reached.append(index)
        end += 1
    return end, reached


def _replay_run(events: list, start: int, hook: "object", index_kind: str, algorithms: list,
                hashes: HashProvider, init: dict, locality: int, registers: dict,
                findings: list, missing_reported: dict) -> int:
    """Replay the run of events of ``type(events[start])`` through the class's ``extend_run``.

    Same registers, values and findings (in the same order) as the per-event loop
    in :func:`replay`. Returns the sequence number of the run's last event.
    """
    cls = type(events[start])
    n = len(events)
    end, reached = _run_extent(events, start, cls)
    for index in reached:  # banks of the registers the run reaches first, in order
        if index not in registers:
            registers[index] = _new_bank(index_kind, index, algorithms, init, locality)
    run = events if start == 0 and end == n else events[start:end]
    missing: list = []
    banks = getattr(cls, "extend_banks", None)
    if banks is not None:  # every bank in one call, when the class can
        values_per_bank = []
        for alg in algorithms:
            values = {}
            for index in registers:
                values[index] = registers[index][alg]
            values_per_bank.append(values)
        if banks(run, algorithms, hashes, values_per_bank):
            for apos, alg in enumerate(algorithms):
                values = values_per_bank[apos]
                for index in values:
                    registers[index][alg] = values[index]
            return end - 1
    for apos, alg in enumerate(algorithms):
        values = {}
        for index in registers:
            values[index] = registers[index][alg]
        for pos in hook(run, alg, hashes, values):  # type: ignore[operator]
            missing.append((start + pos, apos))
        for index in values:
            registers[index][alg] = values[index]
    missing.sort()
    for seq, apos in missing:
        alg = algorithms[apos]
        ev = events[seq]
        key = (ev.index, alg)
        if key not in missing_reported:
            missing_reported[key] = True
            findings.append(Finding(
                "REPLAY_BANK_INCOMPLETE", SEVERITY_WARNING,
                "%s bank %s: event #%d has no %s digest; bank not replayed"
                % (register_label(index_kind, ev.index), alg_name(alg), seq, alg_name(alg)),
                ev.index, seq, getattr(ev, "offset", None)))
    return end - 1

