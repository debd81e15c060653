"""Verify evidence against the rewriter's reference values.

Every conclusion is a :class:`shared_spec.findings.Finding` with a stable code:

=============================  =====================================================
``REGISTER_MISMATCH``          a live register differs from its replayed log
``AGENT_LOG_MISSING``          the reference expects agent events, the log is absent
``AGENT_EVENT_MISMATCH``       event N differs from the reference (names both)
``AGENT_EVENT_MISSING``        the log has fewer agent events than the reference
``AGENT_EVENT_UNEXPECTED``     the log has more agent events than the reference
``AGENT_SEQUENCE_INCOMPLETE``  the log does not end with ``cvmchain:leave-initrd``
``AGENT_ERROR_EVENT``          the agent logged a failed step (on_error=continue)
``AGENT_REGISTER_PREDICTION``  the agent register's live value is not the prediction
``ROOTFS_DIGEST_MISMATCH``     the rootfs measurement differs; lists changed files
``ROOTFS_MANIFEST_MISMATCH``   the manifest in the evidence does not hash to the log
``IMA_POLICY_MISMATCH``        the IMA policy measured differs from the reference
``AGENT_CONFIG_MISMATCH``      the agent configuration differs from the reference
``KERNEL_CMDLINE_MISSING_ARG``  the booted command line lacks an argument the rewriter added
``TPM_QUOTE_*``                the bundle's TPM quote fails a check (signature, magic,
                               type, nonce, PCR digest; see :mod:`cloud_sdk.tpm_quote`)
``TPM_QUOTE_REGISTERS``        a PCR the quote attests differs from the bundle's value
                               (a warning for the IMA PCR, which moves while IMA measures)
``TPM_QUOTE_VERIFIED``         (info) the TPM quote verifies and attests the registers
=============================  =====================================================
"""

import gzip
from dataclasses import dataclass, field
from pathlib import Path

from cloud_sdk.chain import ChainResult, build_chain
from cloud_sdk.evidence import Evidence
from cloud_sdk.hashing import hashlib_provider
from cloud_sdk.reference import Reference
from shared_spec import agent_events
from shared_spec.algorithms import ALG_SHA384, alg_name
from shared_spec.errors import SpecError
from shared_spec.event_types import EV_EVENT_TAG
from shared_spec.findings import SEVERITY_ERROR, SEVERITY_INFO, SEVERITY_WARNING, Finding
from shared_spec.manifest import diff_manifests, parse_manifest
from shared_spec.registers import INDEX_CC_MR, INDEX_PCR, register_label

#: How many changed paths a ROOTFS_DIGEST_MISMATCH finding lists.
MAX_LISTED_PATHS = 50


@dataclass
class Verdict:
    """The outcome of a verification: the chain and the findings."""

    chain: ChainResult
    findings: list[Finding] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not any(f.severity == SEVERITY_ERROR for f in self.findings)

    def to_dict(self) -> dict:
        return {
            "verified": self.verified,
            "registers": [r.to_dict() for r in self.chain.registers],
            "findings": [f.to_dict() for f in self.findings],
        }


def _agent_events(chain: ChainResult, index_kind: str) -> list:
    return [ce.event for ce in chain.events.get(index_kind, [])
            if ce.source == "agent" and getattr(ce.event, "event_type", None) == EV_EVENT_TAG]


def verify(evidence: Evidence, reference: Reference | None = None,
           reference_manifest: bytes | None = None) -> Verdict:
    """Replay the chain in ``evidence`` and, given a reference, compare the agent's part."""
    chain = build_chain(evidence)
    verdict = Verdict(chain, list(chain.findings))
    _check_tpm_quote(evidence, verdict.findings)
    if reference is None:
        return verdict
    roots = []
    if reference.pcr_index is not None and INDEX_PCR in evidence.registers:
        roots.append(INDEX_PCR)
    if reference.cc_mr_index is not None and INDEX_CC_MR in evidence.registers:
        roots.append(INDEX_CC_MR)
    if not roots:
        verdict.findings.append(Finding(
            "AGENT_LOG_MISSING", SEVERITY_ERROR,
            "the evidence has no register values of a root of trust the reference predicts"))
    for kind in roots:
        _check_agent_log(kind, evidence, reference, chain, verdict.findings)
    _check_rootfs(evidence, reference, chain, roots, reference_manifest, verdict.findings)
    _check_cmdline(evidence, reference, verdict.findings)
    return verdict


#: the PCR IMA extends: it may move between the register read and the quote
IMA_PCR = 10


def _check_tpm_quote(evidence: Evidence, findings: list[Finding]) -> None:
    """A ``tpm_quote`` blob verifies (AK signature, nonce = the bundle's nonce, PCR digest)
    and attests the same PCR values the bundle holds."""
    from cloud_sdk.errors import InputError
    from cloud_sdk.tpm_quote import TpmQuote, verify_tpm_quote

    blob = evidence.blob("tpm_quote")
    if blob is None:
        return
    try:
        quote = TpmQuote.loads(blob, source="the bundle's tpm_quote")
        res = verify_tpm_quote(quote, nonce=evidence.nonce if evidence.nonce else b"")
    except InputError as e:
        findings.append(Finding("TPM_QUOTE_MALFORMED", SEVERITY_ERROR, str(e)))
        return
    for err in res.errors:
        findings.append(Finding(err["code"], SEVERITY_ERROR, "TPM quote: " + err["message"]))
    live = evidence.registers.get(INDEX_PCR, {})
    differ = 0
    for alg, bank in sorted(quote.pcrs.items()):
        for pcr, value in sorted(bank.items()):
            have = live.get(pcr, {}).get(alg)
            if have is None or have == value:
                continue
            differ += 1
            findings.append(Finding(
                "TPM_QUOTE_REGISTERS", SEVERITY_WARNING if pcr == IMA_PCR else SEVERITY_ERROR,
                "PCR %d %s: the quote attests %s, the bundle holds %s%s"
                % (pcr, alg_name(alg), value.hex(), have.hex(),
                   " (IMA measured between the two reads)" if pcr == IMA_PCR else ""),
                pcr))
    if res.passed and not differ:
        n = sum(len(b) for b in quote.pcrs.values())
        findings.append(Finding("TPM_QUOTE_VERIFIED", SEVERITY_INFO,
                                "the TPM quote by AK %s verifies and attests %d PCR values "
                                "of the bundle" % (quote.ak or "(from the file)", n)))


def _check_cmdline(evidence: Evidence, reference: Reference, findings: list[Finding]) -> None:
    """The arguments the rewriter added (IMA template, hash) are on the booted cmdline."""
    blob = evidence.blob("kernel_cmdline")
    wanted = reference.image.get("kernel_cmdline_add") or []
    if blob is None or not wanted:
        return
    words = blob.decode("utf-8", "replace").split()
    for arg in wanted:
        if arg not in words:
            findings.append(Finding(
                "KERNEL_CMDLINE_MISSING_ARG", SEVERITY_ERROR,
                "the kernel booted without %s, which the reference's image adds" % arg,
                evidence={"cmdline": " ".join(words), "missing": arg}))


def _check_agent_log(kind: str, evidence: Evidence, reference: Reference, chain: ChainResult,
                     findings: list[Finding]) -> None:
    blob = "agent_tpm_log" if kind == INDEX_PCR else "agent_ccel_log"
    if evidence.blob(blob) is None:
        findings.append(Finding("AGENT_LOG_MISSING", SEVERITY_ERROR,
                                "no agent log (%s) in the evidence" % blob))
        return
    index = reference.pcr_index if kind == INDEX_PCR else reference.cc_mr_index
    assert index is not None
    label = register_label(kind, index)
    logged = _agent_events(chain, kind)
    descs = [agent_events.decode_event_data(ev.data) for ev in logged]
    for i, desc in enumerate(descs):
        if desc is not None and desc.startswith("cvmchain:error:"):
            findings.append(Finding("AGENT_ERROR_EVENT", SEVERITY_ERROR,
                                    "the agent reported a failed step: %s" % desc, index, i))
    if not descs or descs[-1] != agent_events.LEAVE_INITRD:
        findings.append(Finding("AGENT_SEQUENCE_INCOMPLETE", SEVERITY_ERROR,
                                "the agent log in %s does not end with %s (last: %s)"
                                % (label, agent_events.LEAVE_INITRD,
                                   descs[-1] if descs else "no events"), index))
    for i, ref_ev in enumerate(reference.events):
        if i >= len(logged):
            findings.append(Finding("AGENT_EVENT_MISSING", SEVERITY_ERROR,
                                    "agent event #%d missing: expected %s"
                                    % (i, ref_ev.descriptor), index, i))
            continue
        ev = logged[i]
        if bytes(ev.data) != ref_ev.event_data or ev.index != index:
            code = _mismatch_code(descs[i] or "", ref_ev.descriptor)
            if code is None:
                continue  # reported with the file names by _check_rootfs
            findings.append(Finding(
                code, SEVERITY_ERROR,
                "agent event #%d in %s is %s, the reference expects %s"
                % (i, register_label(kind, ev.index), descs[i], ref_ev.descriptor), ev.index, i,
                getattr(ev, "offset", None),
                {"logged": descs[i], "expected": ref_ev.descriptor}))
            continue
        for alg, want in ref_ev.digests.items():
            got = ev.digest(alg)
            if got is not None and got != want:
                findings.append(Finding(
                    "AGENT_EVENT_MISMATCH", SEVERITY_ERROR,
                    "agent event #%d (%s): %s digest differs from the reference"
                    % (i, ref_ev.descriptor, alg_name(alg)), index, i))
    for i in range(len(reference.events), len(logged)):
        findings.append(Finding("AGENT_EVENT_UNEXPECTED", SEVERITY_ERROR,
                                "agent event #%d (%s) is not in the reference" % (i, descs[i]),
                                index, i))
    live = evidence.registers.get(kind, {}).get(index, {})
    if kind == INDEX_PCR:
        predicted = reference.pcr_values
    else:
        predicted = {ALG_SHA384: reference.cc_mr_value} if reference.cc_mr_value else {}
    initial = agent_events.initial_values(
        [ce.event for ce in chain.events.get(kind, []) if ce.source == "agent"])
    for alg, want in predicted.items():
        have = live.get(alg)
        if have is None or want is None:
            continue
        if (index, alg) in initial and initial[(index, alg)] != b"\0" * len(want):
            # The register did not start at zero (a TSM sample provider): predict from
            # the recorded initial value with the reference's events.
            value = initial[(index, alg)]
            h = hashlib_provider()
            for ref_ev in reference.events:
                value = h.extend(alg, value, ref_ev.digests[alg])
            want = value
        if have != want:
            findings.append(Finding(
                "AGENT_REGISTER_PREDICTION", SEVERITY_ERROR,
                "%s (%s) is %s, the reference predicts %s"
                % (label, alg_name(alg), have.hex()[:16] + "...", want.hex()[:16] + "..."),
                index, evidence={"live": have.hex(), "predicted": want.hex()}))


def _mismatch_code(logged: str, expected: str) -> str | None:
    """The finding code for a differing agent event, by what the event measures."""
    for prefix, code in (("cvmchain:ima-policy:", "IMA_POLICY_MISMATCH"),
                         ("cvmchain:agent-config:", "AGENT_CONFIG_MISMATCH"),
                         ("cvmchain:rootfs:tree:", None)):
        if logged.startswith(prefix) and expected.startswith(prefix):
            return code
    return "AGENT_EVENT_MISMATCH"


def _check_rootfs(evidence: Evidence, reference: Reference, chain: ChainResult, roots: list,
                  reference_manifest: bytes | None, findings: list[Finding]) -> None:
    expected = reference.rootfs.get("manifest_sha384")
    if not roots or expected is None:
        return
    logged = _agent_events(chain, roots[0])
    descs = [agent_events.decode_event_data(ev.data) or "" for ev in logged]
    tree = [d for d in descs if d.startswith("cvmchain:rootfs:tree:sha384:")]
    if not tree:
        return
    measured = tree[0].rsplit(":", 1)[1]
    manifest = evidence.blob("rootfs_manifest")
    if manifest is not None:
        digest = hashlib_provider().digest(ALG_SHA384, manifest).hex()
        if digest != measured:
            findings.append(Finding(
                "ROOTFS_MANIFEST_MISMATCH", SEVERITY_ERROR,
                "the rootfs manifest in the evidence hashes to %s..., the agent logged %s..."
                % (digest[:16], measured[:16])))
    if measured == expected:
        return
    finding = Finding("ROOTFS_DIGEST_MISMATCH", SEVERITY_ERROR,
                      "the root file system differs from the reference (tree digest %s..., "
                      "expected %s...)" % (measured[:16], expected[:16]),
                      evidence={"measured": measured, "expected": expected})
    findings.append(finding)
    if manifest is None or reference_manifest is None:
        finding.message += "; no manifests to name the files"
        return
    try:
        added, removed, changed = diff_manifests(parse_manifest(reference_manifest),
                                                 parse_manifest(manifest))
    except SpecError as e:
        finding.message += "; manifests unreadable: %s" % e.located()
        return
    names = ([("added", p) for p in added] + [("removed", p) for p in removed]
             + [("changed", p) for p, _ in changed])
    finding.evidence["added"] = [p.decode("utf-8", "replace") for p in added[:MAX_LISTED_PATHS]]
    finding.evidence["removed"] = [p.decode("utf-8", "replace")
                                   for p in removed[:MAX_LISTED_PATHS]]
    finding.evidence["changed"] = [{"path": p.decode("utf-8", "replace"), "fields": f}
                                   for p, f in changed[:MAX_LISTED_PATHS]]
    listed = ", ".join("%s %s" % (what, p.decode("utf-8", "replace"))
                       for what, p in names[:5])
    finding.message += ": " + listed + (" and %d more" % (len(names) - 5) if len(names) > 5
                                        else "")
    for what, p in names[:MAX_LISTED_PATHS]:
        findings.append(Finding("ROOTFS_FILE_" + what.upper(), SEVERITY_INFO,
                                "%s: %s" % (what, p.decode("utf-8", "replace"))))


def load_reference_manifest(reference_path: str | Path, reference: Reference) -> bytes | None:
    """The manifest the rewriter wrote next to the reference, if present."""
    name = reference.rootfs.get("manifest_file")
    if not name:
        return None
    p = Path(reference_path).parent / str(name)
    if not p.exists():
        return None
    data = p.read_bytes()
    return gzip.decompress(data) if p.suffix == ".gz" else data
