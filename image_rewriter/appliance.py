"""The libguestfs appliance: import the binding, launch on an image, translate its errors.

Debian's binding (``python3-guestfs``) lives in ``/usr/lib/python3/dist-packages``; it is
found there when the running interpreter does not see it. The backend defaults to
``direct`` and to TCG when KVM does not really work here (``LIBGUESTFS_BACKEND`` and
``LIBGUESTFS_BACKEND_SETTINGS`` in the environment still win).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from image_rewriter.accel import kvm_works
from image_rewriter.errors import ApplianceError

DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"


def guestfs_module() -> ModuleType:
    """Import libguestfs' Python binding (Debian package python3-guestfs)."""
    try:
        return importlib.import_module("guestfs")
    except ImportError:
        if DEBIAN_DIST_PACKAGES not in sys.path:
            sys.path.append(DEBIAN_DIST_PACKAGES)
        try:
            return importlib.import_module("guestfs")
        except ImportError as exc:
            raise ApplianceError(
                "libguestfs' Python binding is not importable (install python3-guestfs and "
                "use a Python %d.%d that can load it from %s)"
                % (sys.version_info.major, sys.version_info.minor, DEBIAN_DIST_PACKAGES)
            ) from exc


def new_handle(image: Path, fmt: str, readonly: bool, scratch: bool = False) -> Any:
    """A configured, not yet launched ``guestfs.GuestFS`` with ``image`` added.

    ``scratch``: ``image`` is a private work copy that is thrown away or synced by the
    caller, so the guest's flushes need not reach the disk (``cachemode=unsafe``; the
    writes still reach the host's page cache, where the host reads them). Without it a
    guest ``sync`` waits for every dirty page of the copy the host just wrote.
    """
    guestfs = guestfs_module()
    g = guestfs.GuestFS(python_return_dict=True)
    if "LIBGUESTFS_BACKEND" not in os.environ:
        g.set_backend("direct")
    if "LIBGUESTFS_BACKEND_SETTINGS" not in os.environ and not kvm_works():
        g.set_backend_settings(["force_tcg"])
    g.set_smp(min(2, os.cpu_count() or 1))
    g.set_memsize(max(g.get_memsize(), 1024))
    if scratch:
        g.add_drive_opts(str(image), format=fmt, readonly=readonly, cachemode="unsafe")
    else:
        g.add_drive_opts(str(image), format=fmt, readonly=readonly)
    return g


@contextmanager
def launched(image: Path, fmt: str = "qcow2", readonly: bool = True,
             scratch: bool = False) -> Iterator[Any]:
    """Launch an appliance on ``image``; yields the handle, closes it afterwards.

    libguestfs errors (``RuntimeError`` from the binding) become :class:`ApplianceError`
    naming the image. A writable handle is shut down cleanly (flushing every write)
    before it is closed, and only when the block raised nothing.
    """
    g = new_handle(image, fmt, readonly, scratch)
    try:
        g.launch()
        yield g
        if not readonly:
            g.shutdown()
    except RuntimeError as exc:
        raise ApplianceError("libguestfs on %s: %s" % (image, exc)) from exc
    finally:
        g.close()


def mount_guest(g: Any, root: str, readonly: bool) -> dict[str, str]:
    """Mount the inspected OS ``root``'s file systems at their mount points; returns them."""
    mountpoints: dict[str, str] = g.inspect_get_mountpoints(root)
    for mount_point in sorted(mountpoints, key=len):
        try:
            (g.mount_ro if readonly else g.mount)(mountpoints[mount_point], mount_point)
        except RuntimeError as exc:
            raise ApplianceError("mount %s on %s: %s" % (mountpoints[mount_point], mount_point,
                                                         exc)) from exc
    return mountpoints
