"""``cvmchain demo``: the whole chain on a built-in default, start to finish.

Builds (or reuses) the sample Debian guest image, merges the cvmchain agent
(MicroPython) into a copy's initrd on the host, boots it under QEMU with OVMF
(Secure Boot) and a swtpm vTPM, where the agent measures its configuration,
the IMA policy and the root file system into PCR 15 before switch_root;
collects the evidence over the serial console, shuts everything down, and
verifies the chain on the host: every register that a log touches (firmware,
agent, IMA) is replayed and compared with the value read back from the vTPM.
"""

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from cloud_sdk.render import print_findings, register_table, verdict_line
from cloud_sdk.verify import verify

#: What the demo's agent measures: the system's executables and libraries' core,
#: enough to show the tree measurement without minutes of emulated hashing.
DEMO_INCLUDE = "/usr/bin /usr/sbin /usr/lib/systemd /etc/os-release /etc/fstab /etc/passwd"


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="build a sample CVM image, boot it under QEMU, verify it")
    p.add_argument("--workdir", help="keep VM files and the console log here")
    p.add_argument("--evidence", metavar="FILE", help="also write the evidence bundle here")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.add_argument("--include", default=DEMO_INCLUDE,
                   help="paths the agent measures (space-separated; default: %(default)s)")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    # Imported here: the QEMU harness needs pexpect and the Debian tools.
    from qemu_tests.agent_image import install_agent_in_initrd
    from qemu_tests.disk import make_overlay
    from qemu_tests.guest_evidence import collect_guest_evidence
    from qemu_tests.harness import boot_vm
    from qemu_tests.image_builder import build_guest_image, load_image_info

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
    overlay = make_overlay(image, workdir / "demo.qcow2")
    config = "roots=tpm\ntpm_pcr=15\ninclude=%s\n" % args.include
    install_agent_in_initrd(overlay, load_image_info(image).kernel_version, config)
    step("agent merged into a copy's initrd (host-side)", t)
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
    verdict = verify(evidence)
    step("chain replayed and compared", t)
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
