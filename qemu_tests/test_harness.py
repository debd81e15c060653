"""The harness leaves no QEMU or swtpm behind, whatever happens inside the `with` block."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from qemu_tests.harness import boot_vm
from qemu_tests.procs import group_alive

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
