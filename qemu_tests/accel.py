"""Choosing the QEMU accelerator: KVM where it really runs firmware, TCG otherwise.

Opening ``/dev/kvm`` is not enough: in some nested setups KVM starts but fails on the first
firmware instructions (``KVM internal error ... emulation failure``) or hangs. The probe
therefore runs OVMF for a moment under KVM and asks QEMU over QMP whether the VM is still
``running``. The answer is cached per process; ``CVMCHAIN_QEMU_ACCEL=kvm|tcg`` overrides it.
"""

from __future__ import annotations

from image_rewriter.accel import QEMU
from image_rewriter.accel import kvm_works as _kvm_works

from .paths import ovmf_code, ovmf_vars_template

__all__ = ["QEMU", "accel_args", "kvm_works"]


def kvm_works() -> bool:
    """True if QEMU can run the configured OVMF under KVM on this machine (cached)."""
    return _kvm_works(ovmf_code(), ovmf_vars_template())


def accel_args() -> list[str]:
    """QEMU arguments for the accelerator and a matching CPU model."""
    if kvm_works():
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg", "-cpu", "max"]
