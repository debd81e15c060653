"""The image's GRUB set-up survives `update-grub` run in a libguestfs appliance.

This is what the image rewriter does after adding /etc/default/grub.d/*.cfg drop-ins.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qemu_tests.guestfs_io import copy_into_guest, read_guest_file, run_in_guest
from qemu_tests.image_builder import GuestImageInfo

pytestmark = pytest.mark.qemu

DROP_IN = 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX cvmchain.test=update-grub"\n'


def test_update_grub_in_appliance_boots(
    vm, artifacts_dir: Path, guest_image_info: GuestImageInfo
) -> None:
    overlay = vm.overlay()
    copy_into_guest(overlay, {"/etc/default/grub.d/cvmchain-test.cfg": DROP_IN.encode()})
    out = run_in_guest(overlay, "update-grub 2>&1")
    (artifacts_dir / "update-grub.out").write_text(out)
    grub_cfg = read_guest_file(overlay, "/boot/grub/grub.cfg").decode()
    (artifacts_dir / "grub.cfg").write_text(grub_cfg)
    assert "cvmchain.test=update-grub" in grub_cfg
    assert f"root=UUID={guest_image_info.root_fs_uuid}" in grub_cfg

    machine = vm(overlay=overlay)
    cmdline = machine.check("cat /proc/cmdline").split()
    assert "cvmchain.test=update-grub" in cmdline
    assert f"root=UUID={guest_image_info.root_fs_uuid}" in cmdline
    assert "console=ttyS0,115200" in cmdline
