"""The dracut guest image: the default Debian 12 guest with dracut in place of initramfs-tools.

Issues #3 and #6 ask for the agent on guests whose initrd dracut builds. This variant of
:data:`qemu_tests.recipe.DEFAULT_RECIPE` differs in one package: ``dracut`` (Debian 12's
dracut 059) instead of ``initramfs-tools``. Debian's dracut writes the initrd under the
same name initramfs-tools does (``/boot/initrd.img-<release>``, its kernel hook
``/etc/kernel/postinst.d/dracut``), so the GRUB configuration of the default image applies
unchanged.

The image's dracut configuration (:data:`DRACUT_CONF`, ``/etc/dracut.conf.d/``) makes a
generic initrd (``hostonly="no"``): the image is built in a chroot, where host-only mode
would look at the build machine's disks. A customize step writes it, regenerates the initrd
with it and fails the build unless the result is a dracut initrd with the systemd
``pre-pivot`` hook service the agent's module relies on.

Cached by recipe key like the default image, in ``<cache>/images/``; building needs root.

Command line: ``python -m qemu_tests.dracut_image [--force]``.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from .image_builder import Progress, build_guest_image, image_cli
from .recipe import DEFAULT_PACKAGES, GuestRecipe

#: where the image's dracut configuration goes
DRACUT_CONF_PATH = "/etc/dracut.conf.d/10-cvmchain-image.conf"
#: a generic initrd (built in a chroot, booted under QEMU); no resume device to wait for
DRACUT_CONF = ("# cvmchain dracut test image: a generic initrd (the image is built in a chroot)\n"
               'hostonly="no"\n'
               'omit_dracutmodules+=" resume "\n')

_REGENERATE = (
    "mkdir -p /etc/dracut.conf.d\n"
    "printf %%s %s > %s\n"
    "for v in $(ls /lib/modules); do\n"
    "  dracut -q --force /boot/initrd.img-$v $v\n"
    "  lsinitrd /boot/initrd.img-$v | grep -q 'dracut-pre-pivot.service$'\n"
    "done\n" % (shlex.quote(DRACUT_CONF), DRACUT_CONF_PATH)
)


def dracut_recipe() -> GuestRecipe:
    """The variant's recipe: the default packages with ``dracut`` for ``initramfs-tools``."""
    packages = tuple("dracut" if p == "initramfs-tools" else p for p in DEFAULT_PACKAGES)
    return GuestRecipe(packages=packages, variant="dracut", customize=(_REGENERATE,))


def build_dracut_image(cache_dir: Path | None = None, progress: Progress | None = None,
                       force: bool = False) -> Path:
    """The cached qcow2 of the dracut variant, built if needed."""
    return build_guest_image(dracut_recipe(), cache_dir, progress, force)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    return image_cli(argv, "python -m qemu_tests.dracut_image", "the dracut guest image",
                     build_dracut_image)


if __name__ == "__main__":
    raise SystemExit(main())
