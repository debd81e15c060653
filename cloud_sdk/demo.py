"""``cvmchain demo``: the whole chain on a built-in default, start to finish.

Builds (or reuses) the sample Debian guest image, rewrites it with ``cvmchain
rewrite`` (the agent, its MicroPython runtime, the IMA policy and the
initramfs-tools hook baked in; the reference values predicted from the image),
boots the result under QEMU with OVMF (Secure Boot) and a swtpm vTPM, where the
agent measures its configuration, the IMA policy and the root file system into
PCR 15 before switch_root; collects the evidence over the serial console, shuts
everything down, and verifies it on the host against the reference: every
register a log touches (firmware, agent, IMA) is replayed and compared with the
value read back from the vTPM, and the agent's events and PCR 15 with the
rewriter's predictions.
"""

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from cloud_sdk.reference import Reference
from cloud_sdk.render import print_findings, register_table, verdict_line
from cloud_sdk.verify import load_reference_manifest, verify


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="build a sample CVM image, rewrite it, boot it under QEMU, "
                                    "verify it against the reference")
    p.add_argument("--workdir", help="keep the rewritten image, reference, VM files and the "
                                     "console log here")
    p.add_argument("--evidence", metavar="FILE", help="also write the evidence bundle here")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    # Imported here: the QEMU harness needs pexpect and the Debian tools.
    from qemu_tests.disk import make_overlay
    from qemu_tests.guest_evidence import collect_guest_evidence
    from qemu_tests.harness import boot_vm
    from qemu_tests.image_builder import build_guest_image

    console = Console()
    timings: list[tuple[str, float]] = []

    def step(name: str, started: float) -> None:
        took = time.monotonic() - started
        timings.append((name, took))
        console.print("[bold]%s[/bold] %.1f s" % (name, took))

    t = time.monotonic()
    image = build_guest_image(progress=lambda msg: console.print("  " + msg, highlight=False))
    step("guest image ready", t)
    console.print("  %s" % image, highlight=False)

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="cvmchain-"))
    workdir.mkdir(parents=True, exist_ok=True)
    console_log = workdir / "console.log"
    t = time.monotonic()
    from image_rewriter.ima_policy import check_policy, kernel_cmdline_for, preset
    from image_rewriter.rewrite import RewriteOptions, rewrite

    policy = preset("exec-modules").encode()
    cvm = workdir / "cvm.qcow2"
    report = rewrite(RewriteOptions(
        input=image, output=cvm, ima_policy=policy, ima_policy_source="preset:exec-modules",
        cmdline_add=kernel_cmdline_for(check_policy(policy, "preset exec-modules")),
        force=True))
    step("image rewritten (cvmchain rewrite: %s)" % ", ".join(
        "%s %.1f s" % (st.name, st.seconds) for st in report.steps), t)
    console.print("  reference: %s" % report.reference, highlight=False)
    reference = Reference.load(report.reference)
    overlay = make_overlay(cvm, workdir / "boot.qcow2")
    t = time.monotonic()
    with boot_vm(image, workdir, console_log, overlay=overlay) as vm:
        step("booted to login under QEMU (OVMF, swtpm); agent ran in the initrd", t)
        for line in console_log.read_text(errors="replace").splitlines():
            if line.lstrip().startswith("cvmchain:") or "cvmchain: " in line:
                console.print("  " + line[line.index("cvmchain:"):], highlight=False)
        t = time.monotonic()
        evidence = collect_guest_evidence(vm)
        step("evidence collected over the serial console", t)
        t = time.monotonic()
    step("guest powered off", t)
    if args.evidence:
        evidence.save(args.evidence)

    t = time.monotonic()
    verdict = verify(evidence, reference, load_reference_manifest(report.reference, reference))
    step("chain replayed and compared with the reference", t)
    if args.json:
        import json

        print(json.dumps(verdict.to_dict(), indent=1))
    else:
        console.print(register_table(verdict.chain))
        print_findings(console, verdict.findings)
        console.print("console log: %s" % console_log, highlight=False)
        console.print("timings: " + ", ".join("%s %.1f s" % (n, s) for n, s in timings),
                      highlight=False)
        console.print(verdict_line(verdict.verified))
    return 0 if verdict.verified else 1
