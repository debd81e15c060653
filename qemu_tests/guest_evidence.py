"""Collect measurement evidence from a booted guest over its serial console.

Used by the QEMU tests and by ``cvmchain demo``: the firmware event log is
read from securityfs, the agent's logs from ``/run/cvmchain`` when present,
and the live PCRs with Debian's ``tpm2_pcrread`` (an independent reader of
the vTPM).
"""

import re

from cloud_sdk.evidence import Evidence
from qemu_tests.harness import QemuVM
from shared_spec.algorithms import alg_from_name

EVENT_LOG = "/sys/kernel/security/tpm0/binary_bios_measurements"
IMA_BINARY = "/sys/kernel/security/ima/binary_runtime_measurements"
AGENT_FILES = {
    "agent_tpm_log": "/run/cvmchain/tpm.log",
    "agent_ccel_log": "/run/cvmchain/ccel.log",
    "rootfs_manifest": "/run/cvmchain/rootfs.manifest",
    "kernel_cmdline": "/proc/cmdline",
}


def parse_pcrread(text: str) -> dict[int, dict[int, bytes]]:
    """``tpm2_pcrread`` output -> {pcr: {alg id: value}}."""
    out: dict[int, dict[int, bytes]] = {}
    alg = None
    for line in text.splitlines():
        m = re.fullmatch(r"\s*(sha1|sha256|sha384|sha512|sm3_256):\s*", line)
        if m:
            alg = alg_from_name(m.group(1))
            continue
        m = re.fullmatch(r"\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*", line)
        if m and alg is not None:
            out.setdefault(int(m.group(1)), {})[alg] = bytes.fromhex(m.group(2))
    return out


def _exists(vm: QemuVM, path: str) -> bool:
    return vm.run("test -e %s" % path)[1] == 0


def collect_guest_evidence(vm: QemuVM, ima: bool = True) -> Evidence:
    """Evidence of a logged-in guest: PCRs, firmware log, agent logs, IMA list."""
    ev = Evidence(host="qemu-guest")
    if _exists(vm, "/dev/tpm0"):
        ev.registers["pcr"] = parse_pcrread(vm.check("tpm2_pcrread"))
    if _exists(vm, EVENT_LOG):
        ev.blobs["tpm_eventlog"] = vm.read_file(EVENT_LOG)
        ev.sources["tpm_eventlog"] = EVENT_LOG
    for name, path in AGENT_FILES.items():
        if _exists(vm, path):
            ev.blobs[name] = vm.read_file(path)
            ev.sources[name] = path
    if ima and _exists(vm, IMA_BINARY):
        ev.blobs["ima_binary"] = vm.read_file(IMA_BINARY)
        ev.sources["ima_binary"] = IMA_BINARY
    return ev
