"""The TDX register path end to end on a real kernel, through its TSM measurement registers.

The guest is :mod:`qemu_tests.tsm_image`: Debian 12 with Debian's newer cloud kernel and
the kernel's ``tsm_mr_sample`` provider loaded in the initrd (Secure Boot off: the module is
unsigned). ``cvmchain rewrite --roots tdx`` bakes the agent in, configured to extend the
sample's ``rtmr1:sha384`` (RTMR1, CC MR index 2) through ``tsm_dir``, the same code that
extends ``/sys/devices/virtual/misc/tdx_guest/measurements/rtmr3:sha384`` on TDX.

In the booted guest the SDK's :class:`~cloud_sdk.backends.TdxBackend` (the package copied
into the guest and run by Debian's python3) reads the register from the sample's directory
and collects the agent's CCEL-format log; on the host the chain replays from the initial
value the agent recorded to the live value, and verifies against the reference. A 48-byte
extend from user space with no log entry then makes the verification fail, naming
``MR2 (RTMR1)``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Generator
from pathlib import Path

import pytest

from cloud_sdk.evidence import Evidence
from cloud_sdk.reference import Reference
from cloud_sdk.verify import Verdict, load_reference_manifest, verify
from image_rewriter.rewrite import RewriteOptions, rewrite
from qemu_tests.conftest import VMFactory
from qemu_tests.disk import make_overlay
from qemu_tests.guestfs_io import copy_into_guest
from qemu_tests.harness import QemuVM
from qemu_tests.paths import REPO_ROOT
from qemu_tests.tsm_image import MEASUREMENTS_DIR, MODULE, SAMPLE_RTMR, build_tsm_image
from shared_spec import agent_events as ae
from shared_spec.algorithms import ALG_SHA384
from shared_spec.event_types import EV_EVENT_TAG, EV_NO_ACTION
from shared_spec.tcg_log import parse_tcg_log

pytestmark = pytest.mark.qemu

REGISTER = f"{MEASUREMENTS_DIR}/rtmr{SAMPLE_RTMR}:sha384"
CC_MR = SAMPLE_RTMR + 1
LABEL = f"MR{CC_MR} (RTMR{SAMPLE_RTMR})"
#: the sample's initializer (``.rtmr1 = "rtmr1"`` in samples/tsm-mr/tsm_mr_sample.c)
SAMPLE_INITIAL = b"rtmr1".ljust(48, b"\0")
INCLUDE = ["/usr/sbin", "/etc/os-release"]
SDK_DIR = "/opt/cvmchain-sdk"
AGENT_TIMEOUT = 600.0

#: run by Debian 12's python3 in the guest: the SDK's own collection through TdxBackend.
#: No quote (the sample has no report provider) and no IMA list: IMA extends the platform's
#: RTMR2 on TDX, never the sample's registers, so its entries would have no register here.
COLLECT = f"""
import sys
sys.path.insert(0, {SDK_DIR!r})
from cloud_sdk.backends import TdxBackend
from cloud_sdk.collect import collect_evidence
backend = TdxBackend(measurements={MEASUREMENTS_DIR!r})
collect_evidence(backend, include_quote=False, include_ima=False).save(sys.argv[1])
"""


def _progress(msg: str) -> None:
    print(f"tsm image: {msg}", file=sys.__stderr__, flush=True)


@pytest.fixture(scope="session")
def tsm_image() -> Path:
    """The cached tsm_mr_sample guest image (built on first use)."""
    return build_tsm_image(progress=_progress)


@pytest.fixture
def tsm_vm(tsm_image: Path, artifacts_dir: Path, tmp_path: Path,
           request: pytest.FixtureRequest) -> Generator[VMFactory, None, None]:
    """The ``vm`` factory of conftest, for the tsm_mr_sample image."""
    factory = VMFactory(tsm_image, artifacts_dir, tmp_path)
    try:
        yield factory
    finally:
        report = getattr(request.node, "cvmchain_report_call", None)
        factory.close(failed=report is None or report.failed)


def _sdk_files() -> dict[str, bytes]:
    out = {}
    for package in ("cloud_sdk", "shared_spec"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            out[f"{SDK_DIR}/{path.relative_to(REPO_ROOT)}"] = path.read_bytes()
    return out


def _collect(machine: QemuVM, name: str) -> Evidence:
    """Evidence collected in the guest by the SDK, read back over the console."""
    machine.check(f"python3 -c {_quote(COLLECT)} /run/{name}.json", timeout=300)
    doc = json.loads(machine.read_file(f"/run/{name}.json"))
    return Evidence.from_json(doc, source=f"guest:/run/{name}.json")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _errors(verdict: Verdict) -> list[dict]:
    return [f.to_dict() for f in verdict.findings if f.severity == "error"]


def test_agent_extends_the_sample_rtmr_and_the_chain_verifies(
        tsm_vm: VMFactory, artifacts_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tsm.qcow2"
    report = rewrite(RewriteOptions(
        input=tsm_vm.image, output=out, roots="tdx", tdx_rtmr=SAMPLE_RTMR,
        tsm_dir=MEASUREMENTS_DIR, tsm_register="rtmr{n}:sha384", include=list(INCLUDE)))
    reference = Reference.load(report.reference)
    assert reference.cc_mr_index == CC_MR
    ref_manifest = load_reference_manifest(report.reference, reference)
    disk = make_overlay(out, tmp_path / "boot.qcow2")
    copy_into_guest(disk, _sdk_files())

    machine = tsm_vm(overlay=disk, tpm=False, secure_boot=False, login=False)
    machine.expect("cvmchain: leave-initrd recorded", timeout=AGENT_TIMEOUT)
    machine.wait_for_login()
    console = machine.console_log.read_text(errors="replace")
    assert re.search(r"cvmchain: rootfs tree sha384:\S+ .*-> " + re.escape(LABEL), console)
    assert f"leave-initrd recorded -> {LABEL}" in console

    # the kernel's own view: the module is loaded, the register file is the agent's
    assert re.search(rf"^{MODULE} ", machine.check("cat /proc/modules"), re.M)
    live = machine.read_file(REGISTER)
    assert len(live) == 48 and live != SAMPLE_INITIAL

    # the agent's log, replayed here by hand: initial value first, then log-then-extend
    log = parse_tcg_log(machine.read_file("/run/cvmchain/ccel.log"))
    first = log.events[0]
    assert first.event_type == EV_NO_ACTION and first.index == CC_MR
    assert ae.decode_event_data(first.data) == (
        f"cvmchain:initial-value:sha384:{SAMPLE_INITIAL.hex()}")
    value = SAMPLE_INITIAL
    tagged = [e for e in log.events if e.event_type == EV_EVENT_TAG]
    assert [e.index for e in tagged] == [CC_MR] * len(tagged) and len(tagged) >= 3
    for e in tagged:
        value = hashlib.sha384(value + hashlib.sha384(e.data).digest()).digest()
    assert value == live

    # the SDK in the guest reads the same register through TdxBackend(measurements=...)
    evidence = _collect(machine, "evidence")
    evidence.save(artifacts_dir / "evidence.json")
    assert evidence.registers["cc_mr"] == {CC_MR: {ALG_SHA384: live}}
    verdict = verify(evidence, reference, ref_manifest)
    (artifacts_dir / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=1))
    assert verdict.verified, _errors(verdict)
    mr = [r for r in verdict.chain.registers if r.index == CC_MR]
    assert mr and all(r.matches for r in mr)

    # user space extends the register without a log entry: the kernel extends exactly ...
    data = hashlib.sha384(b"cvmchain test: an unlogged extend").digest()
    write = (f"import os; fd = os.open({REGISTER!r}, os.O_WRONLY); "
             f"print(os.write(fd, bytes.fromhex({data.hex()!r})))")
    assert machine.check(f"python3 -c {_quote(write)}").strip() == "48"
    partial = (f"import os; fd = os.open({REGISTER!r}, os.O_WRONLY)\n"
               f"try:\n    os.write(fd, bytes(47))\nexcept OSError as e:\n    print(e.errno)")
    assert machine.check(f"python3 -c {_quote(partial)}").strip() == "22"  # EINVAL
    after = machine.read_file(REGISTER)
    assert after == hashlib.sha384(live + data).digest()

    # ... and verification fails, naming the register
    tampered = _collect(machine, "evidence-after")
    tampered.save(artifacts_dir / "evidence-after.json")
    verdict = verify(tampered, reference, ref_manifest)
    (artifacts_dir / "verdict-after.json").write_text(json.dumps(verdict.to_dict(), indent=1))
    assert not verdict.verified
    codes = {f.code: f for f in verdict.findings if f.severity == "error"}
    assert "REGISTER_MISMATCH" in codes and LABEL in codes["REGISTER_MISMATCH"].message
    assert codes["REGISTER_MISMATCH"].register == CC_MR
    assert "AGENT_REGISTER_PREDICTION" in codes
