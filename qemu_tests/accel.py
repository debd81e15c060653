"""Choosing the QEMU accelerator: KVM where it really runs firmware, TCG otherwise.

Opening ``/dev/kvm`` is not enough: in some nested setups KVM starts but fails on the first
firmware instructions (``KVM internal error ... emulation failure``) or hangs. The probe
therefore runs OVMF for a moment under KVM and asks QEMU over QMP whether the VM is still
``running``. The answer is cached per process; ``CVMCHAIN_QEMU_ACCEL=kvm|tcg`` overrides it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .paths import ovmf_code, ovmf_vars_template

QEMU = "qemu-system-x86_64"
PROBE_RUN_SECONDS = 2.0
PROBE_TIMEOUT = 20.0


def _qmp_probe(code: Path, vars_copy: Path) -> bool:
    argv = [
        QEMU, "-accel", "kvm", "-machine", "q35", "-m", "256", "-display", "none",
        "-nodefaults", "-no-user-config", "-qmp", "stdio",
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
        "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
    ]
    commands = (
        '{"execute": "qmp_capabilities"}\n',
        '{"execute": "query-status"}\n',
        '{"execute": "quit"}\n',
    )
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, start_new_session=True,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(commands[0])
        proc.stdin.flush()
        time.sleep(PROBE_RUN_SECONDS)
        proc.stdin.write(commands[1] + commands[2])
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=PROBE_TIMEOUT)
    except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        ret = msg.get("return")
        if isinstance(ret, dict) and "status" in ret:
            return bool(ret.get("running")) and ret["status"] == "running"
    return False


@functools.lru_cache(maxsize=1)
def kvm_works() -> bool:
    """True if QEMU can run OVMF under KVM on this machine (probed once per process)."""
    forced = os.environ.get("CVMCHAIN_QEMU_ACCEL", "").lower()
    if forced in ("kvm", "tcg"):
        return forced == "kvm"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or shutil.which(QEMU) is None:
        return False
    with tempfile.TemporaryDirectory(prefix="cvmchain-kvm-probe-") as tmp:
        vars_copy = Path(tmp) / "vars.fd"
        shutil.copyfile(ovmf_vars_template(), vars_copy)
        return _qmp_probe(ovmf_code(), vars_copy)


def accel_args() -> list[str]:
    """QEMU arguments for the accelerator and a matching CPU model."""
    if kvm_works():
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg", "-cpu", "max"]
