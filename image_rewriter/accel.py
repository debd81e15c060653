"""Whether KVM really works here: QEMU (and the libguestfs appliance) use it, else TCG.

Opening ``/dev/kvm`` is not enough: in some nested set-ups KVM starts but fails on the
first firmware instructions (``KVM internal error ... emulation failure``) or hangs. The
probe runs firmware for a moment under KVM and asks QEMU over QMP whether the VM is still
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
from collections.abc import Sequence
from pathlib import Path

QEMU = "qemu-system-x86_64"
PROBE_RUN_SECONDS = 2.0
PROBE_TIMEOUT = 20.0
_COMMANDS = ('{"execute": "qmp_capabilities"}\n',
             '{"execute": "query-status"}\n{"execute": "quit"}\n')


def qmp_kvm_probe(firmware_args: Sequence[str] = ()) -> bool:
    """Run QEMU under KVM for :data:`PROBE_RUN_SECONDS`; True if it is still running then.

    ``firmware_args`` selects the firmware (for example OVMF pflash drives); without
    them QEMU runs its default BIOS.
    """
    argv = [QEMU, "-accel", "kvm", "-machine", "q35", "-m", "256", "-display", "none",
            "-nodefaults", "-no-user-config", "-qmp", "stdio", *firmware_args]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    assert proc.stdin is not None
    try:
        proc.stdin.write(_COMMANDS[0])
        proc.stdin.flush()
        time.sleep(PROBE_RUN_SECONDS)
        proc.stdin.write(_COMMANDS[1])
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


def forced_accel() -> str | None:
    """``kvm`` or ``tcg`` when ``CVMCHAIN_QEMU_ACCEL`` forces one, else None."""
    forced = os.environ.get("CVMCHAIN_QEMU_ACCEL", "").lower()
    return forced if forced in ("kvm", "tcg") else None


def kvm_usable() -> bool:
    """True if ``/dev/kvm`` can be opened and QEMU is installed (a probe may still fail)."""
    return os.access("/dev/kvm", os.R_OK | os.W_OK) and shutil.which(QEMU) is not None


#: OVMF of Debian's ``ovmf`` package: the probe runs it, as the VMs here do.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


@functools.lru_cache(maxsize=4)
def kvm_works(code: Path = OVMF_CODE, vars_template: Path = OVMF_VARS) -> bool:
    """True if QEMU runs OVMF under KVM here (probed once per process and firmware).

    A BIOS-only probe is not enough: where KVM is broken, SeaBIOS may still run while
    OVMF and the libguestfs appliance hang. Without OVMF installed, QEMU's default
    firmware is probed.
    """
    forced = forced_accel()
    if forced is not None:
        return forced == "kvm"
    if not kvm_usable():
        return False
    if not (code.is_file() and vars_template.is_file()):
        return qmp_kvm_probe()
    with tempfile.TemporaryDirectory(prefix="cvmchain-kvm-probe-") as tmp:
        vars_copy = Path(tmp) / "vars.fd"
        shutil.copyfile(vars_template, vars_copy)
        return qmp_kvm_probe([
            "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=%s" % code,
            "-drive", "if=pflash,format=raw,unit=1,file=%s" % vars_copy,
        ])
