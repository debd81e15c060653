"""The rewriter on a dracut guest, end to end (issues #3 and #6).

The dracut variant of the guest image (:mod:`qemu_tests.dracut_image`: Debian 12 with
dracut 059 instead of initramfs-tools) is rewritten with ``cvmchain rewrite`` as a user
runs it; the agent lands in its initrd as a dracut ``pre-pivot`` hook (merged on the
host). The rewritten image boots under QEMU + OVMF + swtpm: the agent runs from dracut's
pre-pivot stage, its logs survive switch_root in ``/run/cvmchain``, and the chain verifies
against the reference, with PCR 15 read back by ``tpm2_pcrread`` equal to the prediction.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cloud_sdk.verify import load_reference_manifest, verify
from image_rewriter.initrd import read_initrd
from qemu_tests.conftest import VMFactory
from qemu_tests.disk import make_overlay
from qemu_tests.dracut_image import build_dracut_image
from qemu_tests.errors import GuestTimeout
from qemu_tests.guest_evidence import collect_guest_evidence
from qemu_tests.guestfs_io import mounted
from qemu_tests.test_rewrite import AGENT_DONE, AGENT_TIMEOUT, Rewritten, run_rewrite
from shared_spec import agent_events as ae
from shared_spec.algorithms import ALG_SHA256

pytestmark = pytest.mark.qemu

HOOK_SRC = (Path(__file__).resolve().parent.parent / "initrd_agent" / "dracut" / "90cvmchain"
            / "cvmchain-pre-pivot.sh")
HOOK_IN_INITRD = "usr/lib/dracut/hooks/pre-pivot/90-cvmchain-pre-pivot.sh"


@pytest.fixture(scope="session")
def dracut_image() -> Path:
    """The cached dracut guest image, built on first use."""
    return build_dracut_image(progress=lambda m: print("dracut image: " + m, file=sys.stderr,
                                                       flush=True))


@pytest.fixture(scope="session")
def dracut_rewritten(dracut_image: Path, tmp_path_factory: pytest.TempPathFactory
                     ) -> Rewritten:
    """The dracut image rewritten once with the defaults."""
    return run_rewrite(dracut_image, tmp_path_factory.mktemp("dracut") / "cvm-dracut.qcow2")


def test_rewrite_puts_the_pre_pivot_hook_into_the_dracut_initrd(
        dracut_rewritten: Rewritten) -> None:
    guest = dracut_rewritten.report.get("guest", {})
    assert guest.get("initramfs") == "dracut"
    kernels = dracut_rewritten.report["kernels"]
    assert len(kernels) == 1
    with mounted(dracut_rewritten.image) as g:
        data = g.read_file("/boot/initrd.img-%s" % kernels[0])
    rd = read_initrd(data)
    assert rd.kind() == "dracut"
    hook = rd.entry(HOOK_IN_INITRD)
    assert hook is not None and hook.mode & 0o777 == 0o755
    assert hook.data == HOOK_SRC.read_bytes()
    # dracut's pre-pivot service is there to source it, and the agent and its runtime too
    assert rd.entry("usr/lib/systemd/system/dracut-pre-pivot.service") is not None
    assert rd.file("usr/lib/cvmchain/runtime/bin/micropython-run") is not None
    assert rd.file("etc/cvmchain/agent.conf") is not None
    assert rd.entry("scripts/local-bottom/cvmchain") is None


def test_dracut_guest_boots_measured_and_verifies(vm: VMFactory, artifacts_dir: Path,
                                                  dracut_rewritten: Rewritten) -> None:
    image = make_overlay(dracut_rewritten.image, artifacts_dir / "dracut.qcow2")
    machine = vm(overlay=image, login=False)
    machine.expect(AGENT_DONE, timeout=AGENT_TIMEOUT)
    machine.wait_for_login()
    evidence = collect_guest_evidence(machine)
    runs = machine.check("ls /run/cvmchain").split()
    machine.shutdown()
    console = machine.console_log.read_text(errors="replace")

    # the agent ran once, from dracut's pre-pivot stage, and the boot went on
    assert console.count(AGENT_DONE) == 1
    assert "measurement failed" not in console
    # its logs survived switch_root (dracut / systemd move /run into the real root)
    assert {"tpm.log", "rootfs.manifest"} <= set(runs)

    evidence.save(artifacts_dir / "evidence.json")
    ref = dracut_rewritten.reference
    verdict = verify(evidence, ref, load_reference_manifest(dracut_rewritten.reference_path,
                                                            ref))
    (artifacts_dir / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=1))
    assert verdict.verified, [f.to_dict() for f in verdict.findings]

    # PCR 15 as tpm2_pcrread reads it equals the reference's prediction, every bank
    live = evidence.registers["pcr"]
    assert ref.pcr_index == 15
    assert ALG_SHA256 in live[15]
    for alg, value in live[15].items():
        assert value == ref.pcr_values[alg], alg

    # the agent's events are the reference's, in order
    from shared_spec.tcg_log import parse_tcg_log

    log = parse_tcg_log(evidence.blobs["agent_tpm_log"])
    descs = [ae.decode_event_data(e.data) for e in log.events if e.event_type != 3]
    assert descs == [e.descriptor for e in ref.events]


def test_dracut_guest_without_root_of_trust_halts_for_real(
        vm: VMFactory, artifacts_dir: Path, dracut_rewritten: Rewritten) -> None:
    """No vTPM (and no TDX), on_error=halt: the hook stops the boot in the initrd. Under
    systemd dracut-pre-pivot.service ignores its script's failure, so the hook halts the
    machine itself and never returns: switch_root and the real root's systemd never run."""
    image = make_overlay(dracut_rewritten.image, artifacts_dir / "notpm.qcow2")
    machine = vm(overlay=image, tpm=False, login=False)
    machine.expect("cvmchain: no root of trust", timeout=AGENT_TIMEOUT)
    machine.expect("measurement failed (exit 1); boot halted", timeout=120)
    machine.expect("reboot: System halted", timeout=300)
    with pytest.raises(GuestTimeout):
        machine.expect("login:", timeout=30)
    console = machine.console_log.read_text(errors="replace")
    # the real root's systemd never started (it names the host; the initrd's says localhost)
    assert "Hostname set to <cvmchain-guest>" not in console


def test_dracut_appliance_initrd_mode_boots_and_verifies(
        vm: VMFactory, artifacts_dir: Path, dracut_image: Path, tmp_path: Path,
        dracut_rewritten: Rewritten) -> None:
    """--initrd-mode appliance on a dracut guest: the guest's own dracut rebuilds the initrd
    inside the appliance, through the 90cvmchain module the rewriter installed (not merged on
    the host), and that initrd runs the agent too, with the same reference events."""
    rw = run_rewrite(dracut_image, tmp_path / "appliance.qcow2", "--initrd-mode", "appliance")
    steps = {s["name"]: s for s in rw.report["steps"]}
    assert steps["initrd"]["detail"].startswith("dracut in the appliance")
    assert [e.descriptor for e in rw.reference.events] == \
        [e.descriptor for e in dracut_rewritten.reference.events]
    kernel = rw.report["kernels"][0]
    with mounted(rw.image) as g:
        built = read_initrd(g.read_file("/boot/initrd.img-%s" % kernel))
    with mounted(dracut_image) as g:
        stock = read_initrd(g.read_file("/boot/initrd.img-%s" % kernel))
    # a new initrd from dracut itself (the module's hook and the agent in it), not the
    # stock one with files appended
    assert built.kind() == "dracut"
    hook = built.entry(HOOK_IN_INITRD)
    assert hook is not None and hook.data == HOOK_SRC.read_bytes()
    assert built.file("usr/lib/cvmchain/runtime/bin/micropython-run") is not None
    assert stock.entry(HOOK_IN_INITRD) is None

    image = make_overlay(rw.image, artifacts_dir / "dracut-appliance.qcow2")
    machine = vm(overlay=image, login=False)
    machine.expect(AGENT_DONE, timeout=AGENT_TIMEOUT)
    machine.wait_for_login()
    evidence = collect_guest_evidence(machine)
    machine.shutdown()
    verdict = verify(evidence, rw.reference, load_reference_manifest(rw.reference_path,
                                                                     rw.reference))
    (artifacts_dir / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=1))
    assert verdict.verified, [f.to_dict() for f in verdict.findings]
    live = evidence.registers["pcr"][15]
    for alg, value in live.items():
        assert value == rw.reference.pcr_values[alg], alg
