"""The host reads of the real guest image equal the libguestfs appliance's, byte for byte."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from image_rewriter import appliance
from image_rewriter.rootfs_reader import (
    appliance_manifest,
    find_partition_by_fs_uuid,
    native_manifest,
    read_identity,
)
from initrd_agent.config import DEFAULT_INCLUDE
from qemu_tests.image_builder import load_image_info
from shared_spec.manifest import parse_manifest

pytestmark = pytest.mark.qemu

EXCLUDES = ["/usr/share/doc", "**/__pycache__"]


def test_native_equals_appliance(guest_image: Path, tmp_path: Path) -> None:
    info = load_image_info(guest_image)
    raw = tmp_path / "guest.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(guest_image), str(raw)], check=True)
    part = find_partition_by_fs_uuid(raw, info.root_fs_uuid)
    ident = read_identity(raw, part)
    assert ident.uuid == info.root_fs_uuid and ident.fstype == "ext4"

    timings = {}
    t = time.monotonic()
    native = native_manifest(raw, part, DEFAULT_INCLUDE)
    timings["native (auto)"] = time.monotonic() - t
    t = time.monotonic()
    native_debugfs = native_manifest(raw, part, DEFAULT_INCLUDE, EXCLUDES, method="debugfs")
    timings["native (debugfs, with excludes)"] = time.monotonic() - t
    native_excl = native_manifest(raw, part, DEFAULT_INCLUDE, EXCLUDES)

    t = time.monotonic()
    with appliance.launched(raw, fmt="raw", readonly=True) as g:
        roots = g.inspect_os()
        assert len(roots) == 1
        appliance.mount_guest(g, roots[0], readonly=True)
        timings["appliance launch"] = time.monotonic() - t
        t = time.monotonic()
        via_appliance = appliance_manifest(g, DEFAULT_INCLUDE, workdir=tmp_path)
        timings["appliance manifest"] = time.monotonic() - t
        appliance_excl = appliance_manifest(g, DEFAULT_INCLUDE, EXCLUDES, workdir=tmp_path)
        os_release = g.read_file("/usr/lib/os-release")

    for name, seconds in timings.items():
        print("%-34s %6.1f s" % (name, seconds))
    entries = parse_manifest(native)
    print("manifest: %d entries, %d bytes" % (len(entries), len(native)))
    assert native == via_appliance
    assert native_excl == appliance_excl == native_debugfs
    assert native_excl != native
    by_path = {e.path: e for e in entries}
    import hashlib

    assert by_path[b"/usr/lib/os-release"].content == hashlib.sha384(os_release).hexdigest()
    assert by_path[b"/usr"].type == "d"
