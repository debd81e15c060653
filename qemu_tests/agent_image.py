"""Put the cvmchain agent into a guest image's initrd, on the host.

The initrd is read out of the (overlay) image with libguestfs, the agent's
files are merged into its main cpio segment on the host (no emulated
``update-initramfs``), with initramfs-tools' local-bottom ORDER updated, and
the result is written back. This is the test bed's direct path; the image
rewriter wraps the same steps with validation and reference values.
"""

from pathlib import Path

from image_rewriter.initrd import FileSpec, add_files, read_initrd, updated_order
from initrd_agent.install import BOOT_SCRIPT, agent_files
from initrd_agent.runtime_bundle import ensure_bundle
from qemu_tests.guestfs_io import copy_into_guest, read_guest_file


def install_agent_in_initrd(overlay: Path, kernel_version: str, config_text: str,
                            ima_policy: bytes | None = None) -> dict[str, tuple[int, bytes]]:
    """Merge the agent into ``/boot/initrd.img-<kernel_version>`` of ``overlay``."""
    path = "/boot/initrd.img-%s" % kernel_version
    original = read_guest_file(overlay, path)
    files = agent_files(ensure_bundle(), config_text, ima_policy)
    initrd = read_initrd(original)
    order = updated_order(initrd, "cvmchain", files[BOOT_SCRIPT][1])
    specs = {name: FileSpec(content=data, mode=mode) for name, (mode, data) in files.items()}
    specs["scripts/local-bottom/ORDER"] = FileSpec(content=order, mode=0o644)
    new = add_files(initrd, specs, method="merge")
    copy_into_guest(overlay, {path: new})
    return files
