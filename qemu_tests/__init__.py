"""cvmchain's QEMU test bed: guest images, OVMF + swtpm boots, and their pytest fixtures.

- :mod:`qemu_tests.image_builder`: build and cache a bootable Debian guest image.
- :mod:`qemu_tests.harness`: boot it under QEMU (OVMF, swtpm vTPM) and drive its serial console.
- :mod:`qemu_tests.guestfs_io`: read and write guest image files with libguestfs.
"""

from .errors import (
    CommandError,
    GuestCommandError,
    GuestfsError,
    GuestTimeout,
    ImageBuildError,
    QemuTestsError,
    VMError,
)
from .recipe import DEFAULT_RECIPE, GuestRecipe

__all__ = [
    "DEFAULT_RECIPE",
    "CommandError",
    "GuestCommandError",
    "GuestRecipe",
    "GuestTimeout",
    "GuestfsError",
    "ImageBuildError",
    "QemuTestsError",
    "VMError",
]
