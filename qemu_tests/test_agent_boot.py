"""The agent runs in a real initrd under QEMU, extends the swtpm's PCR 15, and its log
replays to the value read back from the vTPM."""

import hashlib
import json
from pathlib import Path

import pytest

from cloud_sdk.verify import verify
from qemu_tests.agent_image import install_agent_in_initrd
from qemu_tests.guest_evidence import collect_guest_evidence
from qemu_tests.image_builder import GuestImageInfo
from shared_spec import agent_events as ae
from shared_spec.algorithms import ALG_SHA256
from shared_spec.tcg_log import parse_tcg_log

pytestmark = pytest.mark.qemu

CONFIG = "roots=tpm\ntpm_pcr=15\ninclude=/usr/sbin /etc/os-release\n"


def test_agent_extends_pcr15_and_the_chain_verifies(vm, artifacts_dir: Path,
                                                     guest_image_info: GuestImageInfo) -> None:
    overlay = vm.overlay("agent")
    install_agent_in_initrd(overlay, guest_image_info.kernel_version, CONFIG)
    machine = vm(overlay=overlay, login=False)
    machine.expect("cvmchain: rootfs tree sha384:", timeout=300)
    machine.expect("cvmchain: leave-initrd recorded", timeout=120)
    machine.wait_for_login()

    evidence = collect_guest_evidence(machine)
    evidence.save(artifacts_dir / "evidence.json")
    assert "agent_tpm_log" in evidence.blobs and "rootfs_manifest" in evidence.blobs
    log = parse_tcg_log(evidence.blobs["agent_tpm_log"])
    descs = [ae.decode_event_data(e.data) for e in log.events]
    assert descs[0] == ae.config_descriptor(hashlib.sha384(CONFIG.encode()).hexdigest())
    assert descs[1] == ae.IMA_POLICY_NONE
    manifest = evidence.blobs["rootfs_manifest"]
    assert descs[2] == ae.rootfs_tree_descriptor(hashlib.sha384(manifest).hexdigest())
    assert descs[3] == ae.LEAVE_INITRD
    assert b"/usr/sbin/init " in manifest or b"/usr/sbin/init l" in manifest

    # PCR 15 as tpm2_pcrread reads it equals H(H(0 || d1) || d2 ...) of the logged digests
    live = evidence.registers["pcr"][15][ALG_SHA256]
    value = b"\0" * 32
    for e in log.events:
        value = hashlib.sha256(value + hashlib.sha256(e.data).digest()).digest()
    assert live == value

    verdict = verify(evidence)
    (artifacts_dir / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=1))
    assert verdict.verified, [f.to_dict() for f in verdict.findings]
    pcr15 = [r for r in verdict.chain.registers if r.index == 15]
    assert pcr15 and all(r.matches for r in pcr15)
