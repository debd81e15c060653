"""The harness leaves no QEMU or swtpm behind, whatever happens inside the `with` block,
and a kernel panic ends a wait at once (restarting the machine only when it came before
the initrd's init)."""

from __future__ import annotations

import stat
import subprocess
import time
from pathlib import Path

import pytest

from image_rewriter.cpio import CpioEntry, write_cpio
from qemu_tests.errors import GuestPanic
from qemu_tests.harness import QemuVM, boot_vm
from qemu_tests.procs import group_alive
from qemu_tests.verity_boot import find_host_kernel

pytestmark = pytest.mark.qemu


def _pgrep(pid: int) -> bool:
    return subprocess.run(["pgrep", "-g", str(pid)], capture_output=True).returncode == 0


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_no_leaked_processes(guest_image: Path, tmp_path: Path, exc_type: type) -> None:
    pids: list[int] = []
    with pytest.raises(exc_type), boot_vm(
        guest_image, tmp_path / "vm", tmp_path / "console.log", login=False
    ) as machine:
        machine.expect("BdsDxe", timeout=120)  # firmware is running
        assert machine.pid is not None and machine.tpm is not None
        assert machine.tpm.pid is not None
        pids = [machine.pid, machine.tpm.pid]
        assert all(_pgrep(pid) for pid in pids)
        raise exc_type("simulated failure")
    assert pids
    for pid in pids:
        assert not _pgrep(pid), f"process group {pid} outlived the VM"
        assert not group_alive(pid)


def _kernel_vm(tmp_path: Path, append: str, initrd: bytes | None = None) -> QemuVM:
    """A one-vCPU VM that boots the host's Debian kernel directly (no UEFI firmware) with an
    empty disk, so the kernel's own start-up decides what happens."""
    kernel = find_host_kernel()
    if kernel is None:
        pytest.skip("no readable Debian kernel with modules in /boot (linux-image-cloud-amd64)")
    disk = tmp_path / "empty.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    extra = ["-kernel", str(kernel.vmlinuz), "-append", "console=ttyS0 panic=0 " + append]
    if initrd is not None:
        (tmp_path / "initrd.cpio").write_bytes(initrd)
        extra += ["-initrd", str(tmp_path / "initrd.cpio")]
    return QemuVM(disk, tmp_path / "vm", tmp_path / "console.log", secure_boot=False, uefi=False,
                  smp=1, memory_mib=512, extra_args=extra)


def test_early_kernel_panic_restarts_once_then_fails(tmp_path: Path) -> None:
    """A panic before the initrd's init (here: no initrd and no root device) restarts the
    machine once, keeping the first transcript; the second one fails as GuestPanic."""
    machine = _kernel_vm(tmp_path, "root=/dev/cvmchain-absent")
    with pytest.raises(GuestPanic, match="VFS: Unable to mount root fs"), machine:
        machine.expect("login:", timeout=300)
    assert len(machine.early_panics) == 1
    assert "VFS: Unable to mount root fs" in machine.early_panics[0]
    first = (tmp_path / "console.panic-1.log").read_bytes()
    assert b"Kernel panic - not syncing: VFS: Unable to mount root fs" in first
    assert b"Kernel panic - not syncing" in (tmp_path / "console.log").read_bytes()
    assert not machine.running


def test_kernel_panic_after_init_started_fails_at_once(tmp_path: Path) -> None:
    """A panic once the initrd's init ran (here: /init is not an executable) is never
    retried: GuestPanic names it, and the waiting test does not sit out its time-out."""
    initrd = write_cpio([CpioEntry("init", stat.S_IFREG | 0o755, b"not an executable\n")])
    start = time.monotonic()
    machine = _kernel_vm(tmp_path, "", initrd)
    with pytest.raises(GuestPanic, match="No working init found"), machine:
        machine.expect("login:", timeout=600)
    assert machine.early_panics == []
    assert time.monotonic() - start < 120
    assert not (tmp_path / "console.panic-1.log").exists()
