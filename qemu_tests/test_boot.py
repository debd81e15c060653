"""Boot the plain guest image under OVMF with a swtpm and check what the firmware measured."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from qemu_tests.image_builder import GuestImageInfo

pytestmark = pytest.mark.qemu

ZERO32 = "00" * 32
EVENT_LOG = "/sys/kernel/security/tpm0/binary_bios_measurements"


def parse_pcrread(text: str) -> dict[str, dict[int, str]]:
    """``tpm2_pcrread`` / ``tpm2_eventlog`` YAML-ish output -> {bank: {pcr: hex}}."""
    banks: dict[str, dict[int, str]] = {}
    bank = None
    for line in text.splitlines():
        if m := re.fullmatch(r"\s*(sha1|sha256|sha384|sha512|sm3_256):\s*", line):
            bank = m.group(1)
            banks.setdefault(bank, {})
        elif bank and (m := re.fullmatch(r"\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*", line)):
            banks[bank][int(m.group(1))] = m.group(2).lower()
    return banks


def test_boot_with_swtpm(vm, artifacts_dir: Path, guest_image_info: GuestImageInfo) -> None:
    machine = vm()
    assert machine.login_seconds is not None

    pcrs = parse_pcrread(machine.check("tpm2_pcrread sha256:0,7,15"))["sha256"]
    assert pcrs[15] == ZERO32, "PCR 15 must be untouched by firmware and boot loader"
    assert pcrs[0] != ZERO32, "firmware did not measure into PCR 0"
    assert pcrs[7] != ZERO32, "firmware did not measure the Secure Boot state into PCR 7"

    listing = machine.check(f"ls -l {EVENT_LOG}")
    assert listing.startswith("-r--r-----"), listing

    cmdline = machine.check("cat /proc/cmdline").strip()
    assert f"root=UUID={guest_image_info.root_fs_uuid}" in cmdline.split()
    assert {"ro", "console=ttyS0,115200"} <= set(cmdline.split())

    # The firmware event log, for replay by the SDK tests, with the PCRs it must replay to.
    log = machine.read_file(EVENT_LOG)
    assert len(log) > 1000
    assert b"Spec ID Event03\0" in log[:128], "not a crypto-agile (TCG2) event log"
    (artifacts_dir / "binary_bios_measurements").write_bytes(log)
    all_pcrs = machine.check("tpm2_pcrread")
    (artifacts_dir / "pcrs.yaml").write_text(all_pcrs)

    # tpm2-tools replays the log; its sha256 PCR 0..7 must match the TPM's.
    replayed = parse_pcrread(machine.check(f"tpm2_eventlog {EVENT_LOG} | sed -n '/^pcrs:/,$p'"))
    actual = parse_pcrread(all_pcrs)["sha256"]
    for index in range(8):
        assert replayed["sha256"][index] == actual[index], f"PCR {index} does not replay"

    (artifacts_dir / "timings.json").write_text(json.dumps({
        "boot_to_login_seconds": round(machine.login_seconds, 1),
        "image_build_seconds": guest_image_info.build_seconds,
        "kernel": guest_image_info.kernel_version,
    }, indent=2) + "\n")
    print(f"boot to login: {machine.login_seconds:.1f} s")


def test_boot_without_tpm_or_secure_boot(vm) -> None:
    machine = vm(tpm=False, secure_boot=False)
    assert machine.check("findmnt -n -o FSTYPE /boot/efi").strip() == "vfat"
    assert machine.check("systemctl --failed --no-legend --plain").strip() == ""
    assert machine.run("test -e /dev/tpm0")[1] != 0
    assert machine.check("cat /proc/sys/kernel/hostname").strip() == "cvmchain-guest"
    output, status = machine.run("echo out; echo err >&2; printf 'no newline'; exit 7")
    assert (output, status) == ("out\nerr\nno newline", 7)


def test_firmware_and_ima_chain_replays_to_live_pcrs(vm, artifacts_dir: Path) -> None:
    """cvmchain's replay of the real firmware log (+ IMA list) equals every live PCR bank."""
    from cloud_sdk.chain import build_chain
    from qemu_tests.guest_evidence import collect_guest_evidence

    machine = vm()
    evidence = collect_guest_evidence(machine)
    evidence.save(artifacts_dir / "evidence.json")
    assert "tpm_eventlog" in evidence.blobs
    result = build_chain(evidence)
    (artifacts_dir / "chain.json").write_text(
        json.dumps([r.to_dict() for r in result.registers], indent=1))
    bad = [r.to_dict() for r in result.registers if not r.matches]
    assert not bad, bad
    banks = {r.alg for r in result.registers}
    assert len(banks) >= 2, "swtpm should expose several PCR banks"
    replayed = {r.index for r in result.registers
                if r.matches and r.replayed is not None and any(r.replayed)}
    assert set(range(8)) <= replayed, "PCRs 0-7 must be replayed from the firmware log"
