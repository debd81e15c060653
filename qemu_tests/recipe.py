"""What goes into the guest image: the recipe, its hash, and the configuration files.

A :class:`GuestRecipe` is a frozen description of a guest image (Debian suite, packages,
sizes, kernel command line, login marker). Its :meth:`GuestRecipe.key` hashes every input
that changes the image, including the configuration templates of this module and
:data:`BUILDER_VERSION`, so a changed recipe gets a new cache entry. The disk and file system
identifiers are derived from that key (:class:`DiskIdentity`), which keeps rebuilds of one
recipe reproducible in their UUIDs.

Bump :data:`BUILDER_VERSION` whenever a build step changes in a way the templates here do
not show (partitioning, mke2fs options, GRUB modules, ...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

BUILDER_VERSION = 2  # 2: grub.cfg from the guest's own update-grub (image_builder)

#: Debian packages on top of ``mmdebstrap --variant=minbase``.
DEFAULT_PACKAGES: tuple[str, ...] = (
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "busybox",
    "systemd",
    "systemd-sysv",
    "udev",
    "kmod",
    "e2fsprogs",
    "dosfstools",
    "grub-efi-amd64-bin",
    "grub-efi-amd64-signed",
    "shim-signed",
    "grub2-common",
    "python3",
    "python3-cryptography",
    "tpm2-tools",
    "libtss2-tcti-device0",
)

#: What the in-guest SDK (:mod:`qemu_tests.sdk_drive`) needs for ``cvmchain quote get`` and
#: the TPM quote in ``cvmchain evidence collect``: Debian 12's tpm2-pytss 1.2, which imports
#: next to the guest's python3-cryptography 38. Part of :data:`DEFAULT_RECIPE` only: the
#: variant images (dracut, TSM) start from :data:`DEFAULT_PACKAGES` and keep their keys.
TPM_QUOTE_PACKAGES: tuple[str, ...] = ("python3-tpm2-pytss",)

#: Units masked so an offline boot under TCG reaches the login prompt quickly and quietly.
DEFAULT_MASKED_UNITS: tuple[str, ...] = (
    "systemd-firstboot.service",
    "systemd-networkd-wait-online.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
)

#: Files of the ESP (path on the ESP -> path in the guest root), as a removable-path install
#: of Debian's signed boot chain: shim (signed by Microsoft's UEFI CA) loads GRUB (signed by
#: Debian), whose built-in prefix is /EFI/debian, where a stub grub.cfg sends it to the root FS.
ESP_FILES: tuple[tuple[str, str], ...] = (
    ("EFI/BOOT/BOOTX64.EFI", "usr/lib/shim/shimx64.efi.signed"),
    ("EFI/BOOT/grubx64.efi", "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"),
    ("EFI/BOOT/mmx64.efi", "usr/lib/shim/mmx64.efi.signed"),
)
#: Where the stub grub.cfg goes on the ESP (GRUB's prefix, and next to the binary as fallback).
ESP_GRUB_CFG_PATHS: tuple[str, ...] = ("EFI/debian/grub.cfg", "EFI/BOOT/grub.cfg")

ESP_TYPE_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_X86_64_TYPE_GUID = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"

_DEFAULT_GRUB = """\
# cvmchain test image. `update-grub` regenerates /boot/grub/grub.cfg from this file and from
# /etc/default/grub.d/*.cfg (which may append to GRUB_CMDLINE_LINUX).
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="{cmdline}"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GRUB_DISABLE_RECOVERY=true
"""

_ESP_GRUB_CFG = """\
search --no-floppy --fs-uuid --set=root {root_fs_uuid}
set prefix=($root)'/boot/grub'
configfile $prefix/grub.cfg
"""

_GRUB_CFG = """\
# Written by cvmchain qemu_tests.image_builder in the shape `update-grub` produces;
# running `update-grub` in the guest (or a libguestfs appliance) replaces it.
set default=0
set timeout=0
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
insmod part_gpt
insmod ext2
search --no-floppy --fs-uuid --set=root {root_fs_uuid}
menuentry 'Debian GNU/Linux' --id 'gnulinux-simple-{root_fs_uuid}' {{
    insmod gzio
    insmod part_gpt
    insmod ext2
    search --no-floppy --fs-uuid --set=root {root_fs_uuid}
    echo 'Loading Linux {kernel_version} ...'
    linux /boot/vmlinuz-{kernel_version} root=UUID={root_fs_uuid} ro {cmdline}
    echo 'Loading initial ramdisk ...'
    initrd /boot/initrd.img-{kernel_version}
}}
"""

_FSTAB = """\
# <file system> <mount point> <type> <options> <dump> <pass>
UUID={root_fs_uuid} / ext4 errors=remount-ro 0 1
UUID={esp_fs_uuid} /boot/efi vfat umask=0077 0 2
"""

_HOSTS = """\
127.0.0.1\tlocalhost
127.0.1.1\t{hostname}
::1\t\tlocalhost ip6-localhost ip6-loopback
"""

_AUTOLOGIN = """\
# cvmchain test image: root logs in on the serial console without a password.
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I $TERM
"""

_READY_PROFILE = """\
# cvmchain test image: tell the test harness that a root shell is ready on the serial console.
case "$(tty 2>/dev/null)" in
    /dev/ttyS0) printf '%s\\n' '{ready_marker}' ;;
esac
"""

_ROOT_INPUTRC = """\
$include /etc/inputrc
# No bracketed-paste escape sequences around input the test harness types.
set enable-bracketed-paste off
"""

_INITRAMFS_RESUME = "# no swap, no hibernation: do not wait for a resume device\nRESUME=none\n"

_TEMPLATES = {
    "default_grub": _DEFAULT_GRUB,
    "esp_grub_cfg": _ESP_GRUB_CFG,
    "grub_cfg": _GRUB_CFG,
    "fstab": _FSTAB,
    "hosts": _HOSTS,
    "autologin": _AUTOLOGIN,
    "ready_profile": _READY_PROFILE,
    "root_inputrc": _ROOT_INPUTRC,
    "initramfs_resume": _INITRAMFS_RESUME,
}


@dataclass(frozen=True)
class DiskIdentity:
    """Identifiers of the disk, its partitions and file systems, derived from the recipe key."""

    disk_guid: str
    esp_partuuid: str
    root_partuuid: str
    root_fs_uuid: str
    esp_volume_id: str  # 8 hex digits, as mkfs.vfat -i takes it

    @property
    def esp_fs_uuid(self) -> str:
        """The ESP's UUID as Linux shows it (``XXXX-XXXX``, upper case)."""
        v = self.esp_volume_id.upper()
        return f"{v[:4]}-{v[4:]}"


@dataclass(frozen=True)
class ConfigFile:
    """A file written into the guest root file system."""

    text: str
    mode: int = 0o644


@dataclass(frozen=True)
class LocalFile:
    """A host file that goes into the image: a ``.deb`` to install, or a file to place.

    Only :attr:`sha256`, :attr:`dest` and :attr:`mode` enter the recipe key, never the host
    path, so a cache in another directory gives the same key.

    Attributes:
        source: path of the file on the host.
        sha256: its SHA-256 (hex), checked before the build uses it.
        dest: path in the guest root (files only; unused for ``.deb`` files).
        mode: permission bits in the guest (files only).
    """

    source: str
    sha256: str
    dest: str = ""
    mode: int = 0o644


@dataclass(frozen=True)
class GuestRecipe:
    """Everything that determines a guest image.

    Attributes:
        suite: Debian suite for mmdebstrap.
        packages: packages installed on top of the ``minbase`` variant.
        hostname: the guest's fixed host name.
        ready_marker: line printed by the root login shell on ttyS0.
        kernel_cmdline: kernel parameters after ``root=UUID=... ro``.
        masked_units: systemd units masked for a quick offline boot.
        esp_size_mib: size of the EFI system partition.
        root_size_mib: size of the root partition (ext4).
        compress: write a compressed qcow2 (smaller, slower to build and read).
        source_date_epoch: timestamp used for reproducible file times.
        variant: short name of a variant image (in the file name), empty for the default.
        local_debs: ``.deb`` files from the host installed together with :attr:`packages`
            (e.g. a pinned kernel from a newer suite).
        local_files: host files copied into the root before any package is installed, so
            the packages' maintainer scripts (depmod, update-initramfs) see them.
        customize: shell commands run with ``chroot`` in the finished root, in order.

    The last four fields came after :data:`BUILDER_VERSION` 1: they enter :meth:`key` only
    when set, so the default recipe keeps its key (and its cached image).
    """

    suite: str = "bookworm"
    packages: tuple[str, ...] = DEFAULT_PACKAGES + TPM_QUOTE_PACKAGES
    hostname: str = "cvmchain-guest"
    ready_marker: str = "CVMCHAIN-GUEST-READY"
    kernel_cmdline: tuple[str, ...] = ("console=ttyS0,115200",)
    masked_units: tuple[str, ...] = DEFAULT_MASKED_UNITS
    esp_size_mib: int = 64
    root_size_mib: int = 3072
    compress: bool = False
    source_date_epoch: int = 1704067200  # 2024-01-01T00:00:00Z
    variant: str = ""
    local_debs: tuple[LocalFile, ...] = ()
    local_files: tuple[LocalFile, ...] = ()
    customize: tuple[str, ...] = ()

    def key(self) -> str:
        """A short hex digest of the recipe, the templates and the builder version."""
        recipe = dataclasses.asdict(self)
        doc: dict[str, Any] = {
            "builder_version": BUILDER_VERSION,
            "recipe": recipe,
            "templates": _TEMPLATES,
            "esp_files": ESP_FILES,
        }
        for name in _OPTIONAL_FIELDS:  # only when set: the default recipe keeps its key
            value = recipe.pop(name)
            if value:
                doc[name] = value
        for name in ("local_debs", "local_files"):
            for entry in doc.get(name, ()):
                del entry["source"]
        blob = json.dumps(doc, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def identity(self) -> DiskIdentity:
        """Disk, partition and file system identifiers derived from :meth:`key`."""
        seed = hashlib.sha256(b"cvmchain-disk-identity:" + self.key().encode()).digest()
        more = hashlib.sha256(seed).digest()

        def uuid4_like(raw: bytes) -> str:
            return str(uuid.UUID(bytes=raw[:16], version=4))

        return DiskIdentity(
            disk_guid=uuid4_like(seed[:16]),
            esp_partuuid=uuid4_like(seed[16:32]),
            root_partuuid=uuid4_like(more[:16]),
            root_fs_uuid=uuid4_like(more[16:32]),
            esp_volume_id=hashlib.sha256(more).hexdigest()[:8],
        )

    @property
    def cmdline(self) -> str:
        """The parameters from :attr:`kernel_cmdline` joined by spaces."""
        return " ".join(self.kernel_cmdline)

    @property
    def image_name(self) -> str:
        """File name of the cached qcow2 image for this recipe."""
        variant = f"-{self.variant}" if self.variant else ""
        return f"debian-{self.suite}{variant}-cvmchain-{self.key()}.qcow2"


#: GuestRecipe fields added after BUILDER_VERSION 1, hashed only when they are set
_OPTIONAL_FIELDS = ("variant", "local_debs", "local_files", "customize")

DEFAULT_RECIPE = GuestRecipe()


def early_files(recipe: GuestRecipe) -> dict[str, ConfigFile]:
    """Files written before the non-essential packages are installed (their hooks read them)."""
    return {
        "etc/initramfs-tools/conf.d/resume": ConfigFile(_INITRAMFS_RESUME),
    }


def config_files(recipe: GuestRecipe, ident: DiskIdentity) -> dict[str, ConfigFile]:
    """Files written into the root file system after installation (path relative to ``/``)."""
    values = {
        "cmdline": recipe.cmdline,
        "root_fs_uuid": ident.root_fs_uuid,
        "esp_fs_uuid": ident.esp_fs_uuid,
        "hostname": recipe.hostname,
        "ready_marker": recipe.ready_marker,
    }
    return {
        "etc/default/grub": ConfigFile(_DEFAULT_GRUB.format(**values)),
        "etc/fstab": ConfigFile(_FSTAB.format(**values)),
        "etc/hostname": ConfigFile(recipe.hostname + "\n"),
        "etc/hosts": ConfigFile(_HOSTS.format(**values)),
        "etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf": ConfigFile(_AUTOLOGIN),
        "etc/profile.d/zz-cvmchain-ready.sh": ConfigFile(_READY_PROFILE.format(**values)),
        "root/.inputrc": ConfigFile(_ROOT_INPUTRC),
    }


def esp_grub_cfg(ident: DiskIdentity) -> str:
    """The ESP's stub grub.cfg: find the root by UUID and load its /boot/grub/grub.cfg."""
    return _ESP_GRUB_CFG.format(root_fs_uuid=ident.root_fs_uuid)


def grub_cfg(recipe: GuestRecipe, ident: DiskIdentity, kernel_version: str) -> str:
    """The initial /boot/grub/grub.cfg for ``kernel_version``."""
    return _GRUB_CFG.format(
        root_fs_uuid=ident.root_fs_uuid, kernel_version=kernel_version, cmdline=recipe.cmdline
    )
