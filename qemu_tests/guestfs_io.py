"""Reading and writing files of a guest image on the host, with libguestfs.

Each call launches one libguestfs appliance (about 20 s under TCG), so batch work: pass
all files to :func:`copy_into_guest` at once. Big trees should not go through the appliance
(about 5 MB/s here); build them on the host instead. Writes are refused on the cached base
images: make an overlay first (:func:`qemu_tests.disk.make_overlay`).

Debian's binding (``python3-guestfs``) lives in ``/usr/lib/python3/dist-packages``; it is
found there when the running interpreter does not see it. The backend defaults to
``direct`` and to TCG when KVM does not work (``LIBGUESTFS_BACKEND`` and
``LIBGUESTFS_BACKEND_SETTINGS`` still win).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from image_rewriter import appliance
from image_rewriter.errors import ApplianceError

from .accel import kvm_works
from .errors import GuestfsError
from .paths import images_dir


def guestfs_module() -> ModuleType:
    """Import libguestfs' Python binding (Debian package python3-guestfs)."""
    try:
        return appliance.guestfs_module()
    except ApplianceError as exc:
        raise GuestfsError(str(exc)) from exc


def _refuse_base_image(image: Path) -> None:
    base = images_dir().resolve()
    if Path(image).resolve().parent == base:
        raise GuestfsError(f"refusing to modify the cached base image {image}; "
                           "make an overlay with qemu_tests.disk.make_overlay first")


@contextmanager
def mounted(image: Path, readonly: bool = True) -> Iterator[Any]:
    """Launch an appliance on ``image`` with the guest's file systems mounted at ``/``.

    Yields:
        The ``guestfs.GuestFS`` handle (file system calls take guest paths).
    """
    guestfs = guestfs_module()
    if not readonly:
        _refuse_base_image(image)
    g = guestfs.GuestFS(python_return_dict=True)
    try:
        if "LIBGUESTFS_BACKEND" not in os.environ:
            g.set_backend("direct")
        if "LIBGUESTFS_BACKEND_SETTINGS" not in os.environ and not kvm_works():
            g.set_backend_settings(["force_tcg"])
        g.set_smp(min(2, os.cpu_count() or 1))
        g.add_drive_opts(str(image), format="qcow2", readonly=readonly)
        g.launch()
        roots = g.inspect_os()
        if len(roots) != 1:
            raise GuestfsError(f"{image}: expected one operating system, found {roots}")
        mountpoints = g.inspect_get_mountpoints(roots[0])
        for mount_point in sorted(mountpoints, key=len):
            mount = g.mount_ro if readonly else g.mount
            mount(mountpoints[mount_point], mount_point)
        yield g
        if not readonly:
            g.shutdown()  # flushes; errors here mean the image may be incomplete
    except RuntimeError as exc:  # the binding raises RuntimeError for libguestfs errors
        raise GuestfsError(f"libguestfs on {image}: {exc}") from exc
    finally:
        g.close()


def read_guest_file(image: Path, path: str) -> bytes:
    """Return the content of ``path`` in the (powered-off) guest image ``image``."""
    with mounted(image) as g, tempfile.TemporaryDirectory(prefix="cvmchain-gfs-") as tmp:
        if not g.is_file(path):
            raise GuestfsError(f"{image}: {path} is not a regular file in the guest")
        local = Path(tmp) / "file"
        g.download(path, str(local))
        return local.read_bytes()


def copy_into_guest(
    image: Path, files: Mapping[str, bytes | Path], mode: int = 0o644
) -> None:
    """Write files into ``image`` (an overlay, never a cached base image).

    Args:
        image: the qcow2 to modify (the guest must not be running).
        files: guest path -> content (bytes, or a host file to copy).
        mode: permission bits of the written files; missing directories get 0755.
    """
    with mounted(image, readonly=False) as g, tempfile.TemporaryDirectory() as tmp:
        for i, (path, content) in enumerate(sorted(files.items())):
            parent = path.rsplit("/", 1)[0] or "/"
            if not g.is_dir(parent):
                g.mkdir_p(parent)
            if isinstance(content, bytes):
                local = Path(tmp) / f"f{i}"
                local.write_bytes(content)
            else:
                local = Path(content)
            g.upload(str(local), path)
            g.chmod(mode, path)


def run_in_guest(image: Path, script: str) -> str:
    """Run a shell script chrooted into the guest image inside the appliance.

    libguestfs bind-mounts ``/dev``, ``/proc`` and ``/sys`` into the guest for the
    command, so tools like ``update-grub`` or ``update-initramfs`` work. The appliance has
    no network.

    Returns:
        The script's standard output.
    """
    with mounted(image, readonly=False) as g:
        return str(g.sh(script))
