"""``python -m bench.verify``: verify an evidence bundle whose IMA list has 100,000 entries.

Target (issue #4): ``cloud_sdk.verify.verify(bundle, reference)`` in under 2 s.

The bundle is what ``cvmchain evidence collect`` writes on a vTPM guest that
the rewriter baked the agent into, built here from scratch:

* a reference from :func:`image_rewriter.reference_builder.build_reference`
  (agent on PCR 15, the ``exec-modules`` IMA policy preset, a ``tree`` rootfs
  manifest of synthetic entries);
* a firmware log (PCRs 0-7), the agent's log of exactly the reference's
  events, the rootfs manifest, and a binary IMA list of ``--entries`` ima-ng
  records (``tests/ima_gen.py``) on PCR 10;
* live PCRs (SHA-1 and SHA-256 banks) computed independently here with
  hashlib, new = H(old || H(event data)), so a verified verdict means the
  verifier replayed every record of every log.

The median of ``--runs`` calls is printed against the 2 s target and, side by
side, as a ratio of a baseline on the same IMA list: what ``cvmchain eventlog
replay`` does with it alone (detect, parse, replay both banks), in process.
Also shown: the end-to-end time of loading the bundle's JSON file first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cloud_sdk.evidence import Evidence
from cloud_sdk.hashing import hashlib_provider
from cloud_sdk.logs import combine, load_log
from cloud_sdk.reference import Reference
from cloud_sdk.verify import verify
from image_rewriter.ima_policy import preset
from image_rewriter.reference_builder import build_reference
from initrd_agent.config import AgentConfig
from shared_spec import agent_events
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, alg_name
from shared_spec.event_types import EV_EFI_ACTION, EV_EVENT_TAG, EV_SEPARATOR
from shared_spec.manifest import ManifestEntry, encode_manifest
from shared_spec.replay import replay
from shared_spec.tcg_log import SpecIdEvent, encode_pcr_event2, encode_spec_id_header
from tests.ima_gen import expected_pcr, make_ima_ng_binary

TARGET_SECONDS = 2.0
BANKS = (ALG_SHA1, ALG_SHA256)
AGENT_PCR = 15
IMA_PCR = 10


def _h(alg: int, data: bytes) -> bytes:
    return hashlib.new(alg_name(alg), data).digest()


def _zero(alg: int) -> bytes:
    return bytes(hashlib.new(alg_name(alg)).digest_size)


def _header() -> bytes:
    spec = SpecIdEvent(algorithms=[(a, len(_zero(a))) for a in BANKS])
    return encode_spec_id_header(spec)


def _record(pcr: int, event_type: int, data: bytes, regs: dict[int, dict[int, bytes]]) -> bytes:
    """One TCG_PCR_EVENT2 whose digests are each bank's hash of ``data``; extends ``regs``."""
    digests = [(a, _h(a, data)) for a in BANKS]
    for a, d in digests:
        regs[pcr][a] = _h(a, regs[pcr][a] + d)
    return encode_pcr_event2(pcr, event_type, digests, data)


def build_inputs(entries: int, manifest_entries: int = 2000) -> tuple[Evidence, Reference]:
    """The bundle and the reference it should verify against."""
    manifest = encode_manifest([
        ManifestEntry(b"/usr/lib/x86_64-linux-gnu/lib%06d.so" % i, "f", 0o644, 0, 0, 4096 + i,
                      hashlib.sha384(b"file %d" % i).hexdigest())
        for i in range(manifest_entries)])
    digest = hashlib.sha384(manifest).hexdigest()
    policy = preset("exec-modules").encode()
    reference = build_reference(
        AgentConfig(roots="tpm"), policy,
        {"mode": "tree", "manifest_sha384": digest, "entries": manifest_entries},
        agent_events.rootfs_tree_descriptor(digest), {"output": "bench.qcow2"})

    # reset values: zeros, but the DRTM PCRs 17-22 are all ones until a DRTM launch
    regs = {pcr: {a: (b"\xff" if 17 <= pcr <= 22 else b"\0") * len(_zero(a)) for a in BANKS}
            for pcr in range(24)}
    firmware = [_header()]
    for pcr in range(8):
        firmware.append(_record(pcr, EV_EFI_ACTION, b"bench firmware step for PCR %d" % pcr,
                                regs))
        firmware.append(_record(pcr, EV_SEPARATOR, b"\0\0\0\0", regs))
    agent = [_header()]
    for ev in reference.events:
        agent.append(_record(AGENT_PCR, EV_EVENT_TAG, ev.event_data, regs))
    ima = make_ima_ng_binary(entries, seed=4)
    regs[IMA_PCR] = {a: expected_pcr(entries, seed=4, hash_name=alg_name(a)) for a in BANKS}

    evidence = Evidence(host="bench", nonce=b"bench")
    evidence.registers["pcr"] = regs
    for name, blob in (("tpm_eventlog", b"".join(firmware)), ("agent_tpm_log", b"".join(agent)),
                       ("rootfs_manifest", manifest), ("ima_binary", ima)):
        evidence.blobs[name] = blob
        evidence.sources[name] = "bench:" + name
    return evidence, reference


def _median(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.verify", description=__doc__.split(
        "\n\n")[0])
    ap.add_argument("--entries", type=int, default=100_000, help="IMA list length")
    ap.add_argument("--runs", type=int, default=3, help="runs per contender (median)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)

    t = time.perf_counter()
    evidence, reference = build_inputs(args.entries)
    built = time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="cvmchain-bench-verify-") as tmp:
        return _run(args, evidence, reference, built, Path(tmp))


def _run(args: argparse.Namespace, evidence: Evidence, reference: Reference, built: float,
         work: Path) -> int:
    bundle_path = work / "bundle.json"
    evidence.save(bundle_path)
    ima_path = work / "ima.bin"
    ima_path.write_bytes(evidence.blobs["ima_binary"])
    print("bundle: %d IMA entries (%.1f MB), %d agent events, built in %.1f s: %s"
          % (args.entries, len(evidence.blobs["ima_binary"]) / 1e6, len(reference.events),
             built, bundle_path))

    verdict = verify(evidence, reference)
    if not verdict.verified:
        for f in verdict.findings:
            print("  finding: %s" % json.dumps(f.to_dict()), file=sys.stderr)
        print("FAILED: the bundle does not verify; the timing would mean nothing",
              file=sys.stderr)
        return 1
    ima_reg = [r for r in verdict.chain.registers if r.index == IMA_PCR]
    assert ima_reg and all(r.matches for r in ima_reg), "PCR 10 was not replayed"

    ima_data = ima_path.read_bytes()

    def baseline() -> None:  # `cvmchain eventlog replay ima.bin`, both banks, in process
        lg = load_log(str(ima_path), data=ima_data)
        kind, events, _ = combine([lg])
        replay(events, hashlib_provider(), kind, list(BANKS))

    def from_file() -> None:
        verify(Evidence.load(bundle_path), reference)

    ours = _median(lambda: verify(evidence, reference), args.runs)
    base = _median(baseline, args.runs)
    e2e = _median(from_file, args.runs)
    status = "PASS" if ours < TARGET_SECONDS else "MISS"
    print("%-48s %8s  %s" % ("contender (median of %d)" % args.runs, "seconds", "vs baseline"))
    print("%-48s %8.3f  %.2fx   target < %.1f s: %s" % (
        "cvmchain verify(bundle, reference)", ours, ours / base, TARGET_SECONDS, status))
    print("%-48s %8.3f  %.2fx" % ("  + Evidence.load of the %.0f MB JSON file"
                                  % (bundle_path.stat().st_size / 1e6), e2e, e2e / base))
    print("%-48s %8.3f  1.00x" % ("baseline: eventlog replay of the IMA list alone", base))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "entries": args.entries, "runs": args.runs, "verify_seconds": ours,
            "verify_from_file_seconds": e2e, "baseline_seconds": base,
            "target_seconds": TARGET_SECONDS, "met": ours < TARGET_SECONDS}, indent=1))
    return 0 if ours < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
