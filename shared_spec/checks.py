"""Integrity checks a verifier runs on a TCG / CCEL log before trusting a replay.

Each problem is a :class:`shared_spec.findings.Finding` with a stable code:

- ``DIGEST_MISMATCH`` (error): a digest differs from H(event data) for an
  event type whose digest the PC Client PFP defines over its data (see
  :func:`shared_spec.uefi_events.digest_check_kind`);
- ``SEPARATOR_DUPLICATE`` (error): more separators in a register than the
  firmware measures into it;
- ``SEPARATOR_ERROR`` (error): a separator with the error value 0x00000001
  (PFP §3.3.2.2: firmware could not measure);
- ``EVENT_AFTER_SEPARATOR`` (warning): a pre-OS register extended after its
  separator by an event type the PFP does not expect there;
- ``NO_ACTION_DIGEST_NONZERO`` (warning): an EV_NO_ACTION record with a
  non-zero digest (it is never extended, so a digest there is meaningless).
"""

import struct

from shared_spec.algorithms import alg_name
from shared_spec.event_types import (
    EV_EFI_ACTION,
    EV_EFI_BOOT_SERVICES_APPLICATION,
    EV_EFI_BOOT_SERVICES_DRIVER,
    EV_EFI_GPT_EVENT,
    EV_EFI_SPDM_DEVICE_AUTHORITY,
    EV_EFI_VARIABLE_AUTHORITY,
    EV_EFI_VARIABLE_BOOT,
    EV_EVENT_TAG,
    EV_IPL,
    EV_NO_ACTION,
    EV_SEPARATOR,
    event_type_name,
)
from shared_spec.findings import SEVERITY_ERROR, SEVERITY_WARNING, Finding
from shared_spec.hashing import HashProvider
from shared_spec.registers import INDEX_CC_MR, INDEX_PCR, cc_mr_to_pcrs, register_label
from shared_spec.uefi_events import digest_check_kind

# Event types a register may legitimately receive after its separator
# (PC Client PFP §3.3.4: boot applications, GPT, ExitBootServices actions and
# the db entries that authorised them).
_AFTER_SEPARATOR_OK = {
    4: (EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_BOOT_SERVICES_DRIVER, EV_EFI_ACTION,
        EV_EVENT_TAG),
    5: (EV_EFI_ACTION, EV_EFI_GPT_EVENT, EV_EFI_VARIABLE_BOOT, EV_EVENT_TAG),
    7: (EV_EFI_VARIABLE_AUTHORITY, EV_EFI_SPDM_DEVICE_AUTHORITY, EV_EVENT_TAG),
}


def _variable_data(data: bytes) -> bytes | None:
    """VariableData of a UEFI_VARIABLE_DATA structure, None if malformed."""
    if len(data) < 32:
        return None
    name_len, data_len = struct.unpack_from("<QQ", data, 16)
    start = 32 + 2 * name_len
    if name_len > len(data) or start + data_len != len(data):
        return None
    return bytes(data[start:start + data_len])


def check_tcg_events(events: list, hashes: HashProvider, index_kind: str = INDEX_PCR) -> list:
    """Run the integrity checks over TCG / CCEL events (in log order)."""
    findings = []
    separators: dict = {}
    for seq, ev in enumerate(events):
        etype = ev.event_type
        index = ev.index
        label = register_label(index_kind, index)
        if etype == EV_NO_ACTION:
            for alg, d in ev.digests:
                if bytes(d) != b"\x00" * len(d):
                    findings.append(Finding(
                        "NO_ACTION_DIGEST_NONZERO", SEVERITY_WARNING,
                        "event #%d (EV_NO_ACTION, %s) has a non-zero %s digest"
                        % (seq, label, alg_name(alg)), index, seq, ev.offset))
                    break
            continue
        kind = digest_check_kind(etype, index, ev.data)
        if kind is not None:
            candidates = [bytes(ev.data)]
            if kind == "variable_boot":
                vd = _variable_data(ev.data)
                if vd is not None:
                    candidates.append(vd)
            for alg, d in ev.digests:
                if not hashes.supports(alg):
                    continue
                computed = [hashes.digest(alg, c) for c in candidates]
                want = computed[-1]
                if bytes(d) not in computed:
                    findings.append(Finding(
                        "DIGEST_MISMATCH", SEVERITY_ERROR,
                        "event #%d (%s, %s): %s digest is not the hash of its %s"
                        % (seq, event_type_name(etype), label, alg_name(alg),
                           "event data" if kind == "event_data" else "data"),
                        index, seq, ev.offset,
                        {"alg": alg_name(alg), "logged": bytes(d).hex(),
                         "computed": want.hex()}))
        if etype == EV_SEPARATOR:
            n = separators.get(index, 0) + 1
            separators[index] = n
            allowed = 1 if index_kind == INDEX_PCR else max(1, len(cc_mr_to_pcrs(index)))
            if n > allowed:
                findings.append(Finding(
                    "SEPARATOR_DUPLICATE", SEVERITY_ERROR,
                    "event #%d: separator %d in %s (at most %d expected)"
                    % (seq, n, label, allowed), index, seq, ev.offset))
            if bytes(ev.data) == b"\x01\x00\x00\x00":
                findings.append(Finding(
                    "SEPARATOR_ERROR", SEVERITY_ERROR,
                    "event #%d: error separator in %s: firmware reported a measurement failure"
                    % (seq, label), index, seq, ev.offset))
            continue
        if index_kind == INDEX_PCR and index <= 7 and separators.get(index):
            ok = _AFTER_SEPARATOR_OK.get(index, ())
            if etype not in ok and not (etype == EV_IPL and index in (4, 5)):
                findings.append(Finding(
                    "EVENT_AFTER_SEPARATOR", SEVERITY_WARNING,
                    "event #%d (%s) extends %s after its separator"
                    % (seq, event_type_name(etype), label), index, seq, ev.offset))
    return findings


__all__ = ["INDEX_CC_MR", "INDEX_PCR", "check_tcg_events"]
