"""What the guest inside an image is, from libguestfs inspection, and whether it can be rewritten.

:func:`inspect_guest` refuses, with the reason: no operating system found, more than
one, not Linux, not x86_64, no initramfs-tools and no dracut, no kernel with an initrd
in ``/boot``, too little free space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from image_rewriter.errors import GuestError, ImageError

#: Free space the rewrite needs on the root file system (runtime, agent, new initrds).
MIN_FREE_BYTES = 64 << 20


@dataclass(frozen=True)
class Kernel:
    """One installed kernel and its initrd (guest paths)."""

    version: str
    vmlinuz: str
    initrd: str


@dataclass
class GuestOS:
    """The inspected guest."""

    root: str
    distro: str
    version: str
    product: str
    arch: str
    mountpoints: dict[str, str]
    root_fs_type: str
    root_fs_uuid: str
    initramfs: str
    kernels: list[Kernel] = field(default_factory=list)
    free_bytes: int = 0
    has_update_grub: bool = False

    def to_json(self) -> dict[str, object]:
        return {"distro": self.distro, "version": self.version, "product": self.product,
                "arch": self.arch, "root_device": self.mountpoints.get("/", self.root),
                "root_fs_type": self.root_fs_type, "root_fs_uuid": self.root_fs_uuid,
                "initramfs": self.initramfs,
                "kernels": [k.version for k in self.kernels], "free_bytes": self.free_bytes}


def find_os_root(g: Any, image: str) -> str:
    """The one operating system libguestfs finds in the launched ``g``."""
    roots = g.inspect_os()
    if not roots:
        raise ImageError("%s: no Linux found (libguestfs inspection finds no operating "
                         "system on any partition)" % image)
    if len(roots) > 1:
        raise ImageError("%s: %d operating systems found (%s); the rewriter takes one"
                         % (image, len(roots), ", ".join(roots)))
    root: str = roots[0]
    kind = g.inspect_get_type(root)
    if kind != "linux":
        raise ImageError("%s: the operating system is %s, not Linux" % (image, kind))
    return root


def _initramfs_tool(g: Any) -> str:
    if g.is_file("/usr/sbin/update-initramfs") and g.is_dir("/usr/share/initramfs-tools"):
        return "initramfs-tools"
    if g.is_file("/usr/bin/dracut") or g.is_file("/usr/sbin/dracut"):
        return "dracut"
    return ""


#: Initrd names per tool, first match wins: Debian's dracut kernel hook
#: (``/etc/kernel/postinst.d/dracut``) writes ``initrd.img-<version>`` like initramfs-tools;
#: dracut's own default (Fedora, RHEL, SUSE) is ``initramfs-<version>.img``.
INITRD_NAMES = {"initramfs-tools": ("/boot/initrd.img-%s",),
                "dracut": ("/boot/initrd.img-%s", "/boot/initramfs-%s.img")}


def _kernels(g: Any, tool: str) -> list[Kernel]:
    out = []
    for name in sorted(g.ls("/boot")):
        if not name.startswith("vmlinuz-"):
            continue
        version = name[len("vmlinuz-"):]
        for pattern in INITRD_NAMES[tool]:
            initrd = pattern % version
            if g.is_file(initrd):
                out.append(Kernel(version, "/boot/" + name, initrd))
                break
    return out


@dataclass
class QuickRoot:
    """The guest's root found from the host's view of the disk (no libguestfs inspection)."""

    root: str
    mountpoints: dict[str, str]
    distro: str
    version: str
    product: str
    arch: str


LINUX_FS = ("ext2", "ext3", "ext4", "xfs", "btrfs")
ELF_MACHINES = {0x3E: "x86_64", 0xB7: "aarch64", 0x03: "i386", 0xF3: "riscv64",
                0x28: "arm", 0x15: "ppc64"}
_NOT_MOUNTED = ("swap", "none", "tmpfs", "proc", "sysfs", "devpts", "nfs", "nfs4", "cifs")


def _os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip("\"'")
    return out


def quick_root(g: Any, raw: Any) -> QuickRoot | None:
    """Find the root file system like inspection does, in a fraction of its time.

    The partitions and their file systems are read on the host (``raw`` is the disk the
    appliance has as its only drive); the appliance only mounts each Linux file system
    to look for ``/etc/os-release`` and ``/etc/fstab``, and the fstab's UUID=, LABEL=
    and PARTUUID= entries are mapped to partitions. Anything unusual (no partition
    table, LVM, several roots, an fstab entry that is not a partition) returns None,
    and the caller falls back to full libguestfs inspection.
    """
    from image_rewriter.errors import RewriteError
    from image_rewriter.partitions import read_partitions
    from image_rewriter.rootfs_reader import identify_filesystem

    try:
        parts = read_partitions(raw)
        infos = [(p, identify_filesystem(raw, p)) for p in parts]
    except (RewriteError, OSError):
        return None
    devices = set(g.list_partitions())
    by_spec: dict[str, str] = {}
    roots = []
    for p, info in infos:
        dev = "/dev/sda%d" % p.number
        if dev not in devices:
            return None
        if info is None:
            continue
        by_spec["UUID=" + info.uuid.lower()] = dev
        if info.label:
            by_spec["LABEL=" + info.label] = dev
        by_spec["PARTUUID=" + p.uuid.lower()] = dev
        if info.type not in LINUX_FS:
            continue
        g.mount_ro(dev, "/")
        try:
            if g.is_file("/etc/os-release", followsymlinks=True) and g.is_file("/etc/fstab"):
                shell = "/usr/bin/sh" if g.exists("/usr/bin/sh") else "/bin/sh"
                elf = (g.pread(shell, 20, 0) if g.is_file(shell, followsymlinks=True)
                       else b"")
                roots.append((dev, g.cat("/etc/os-release"), g.cat("/etc/fstab"), elf))
        finally:
            g.umount_all()
    if len(roots) != 1:
        return None
    dev, release, fstab, elf = roots[0]
    mountpoints = {"/": dev}
    for line in fstab.splitlines():
        words = line.split()
        if len(words) < 3 or words[0].startswith("#") or words[2] in _NOT_MOUNTED:
            continue
        if words[1] == "/" or not words[1].startswith("/"):
            continue
        kind, sep, value = words[0].partition("=")
        key = kind + sep + (value.lower() if kind in ("UUID", "PARTUUID") else value)
        target = by_spec.get(key)
        if target is None:
            return None
        mountpoints[words[1]] = target
    if len(elf) < 20 or elf[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(elf[18:20], "little")
    osr = _os_release(release)
    return QuickRoot(root=dev, mountpoints=mountpoints, distro=osr.get("ID", "unknown"),
                     version=osr.get("VERSION_ID", ""),
                     product=osr.get("PRETTY_NAME", ""),
                     arch=ELF_MACHINES.get(machine, "elf-machine-0x%x" % machine))


def inspect_guest(g: Any, image: str, raw: Any = None) -> GuestOS:
    """Inspect the guest of launched ``g`` and mount it read-write; refuse what cannot work.

    With ``raw`` (the disk image the appliance runs on, raw format) the root is found
    by :func:`quick_root`; libguestfs inspection is the fallback.
    """
    from image_rewriter.appliance import mount_guest

    quick = quick_root(g, raw) if raw is not None else None
    if quick is not None:
        root, arch = quick.root, quick.arch
    else:
        root = find_os_root(g, image)
        arch = g.inspect_get_arch(root)
    if arch != "x86_64":
        raise GuestError("%s: the guest is %s; the agent's runtime bundle is x86_64 only"
                         % (image, arch))
    if quick is not None:
        mountpoints = quick.mountpoints
        for mp in sorted(mountpoints, key=len):
            g.mount(mountpoints[mp], mp)
    else:
        mountpoints = mount_guest(g, root, readonly=False)
    tool = _initramfs_tool(g)
    if not tool:
        raise GuestError("%s: neither initramfs-tools (/usr/sbin/update-initramfs) nor dracut "
                         "is installed in the guest; the agent runs from the initrd they build"
                         % image)
    kernels = _kernels(g, tool)
    if not kernels:
        raise GuestError("%s: no kernel with an initrd in /boot (vmlinuz-* with %s)"
                         % (image, " or ".join(p.replace("/boot/", "").replace("%s", "*")
                                               for p in INITRD_NAMES[tool])))
    device = mountpoints["/"]
    fs_type = g.vfs_type(device)
    fs_uuid = g.vfs_uuid(device)
    st = g.statvfs("/")
    free = int(st["bavail"]) * int(st["frsize"])
    if free < MIN_FREE_BYTES:
        raise GuestError("%s: only %d MiB free on the guest's root file system; the rewrite "
                         "needs %d MiB" % (image, free >> 20, MIN_FREE_BYTES >> 20))
    if quick is not None:
        distro, version, product = quick.distro, quick.version, quick.product
    else:
        distro = g.inspect_get_distro(root)
        version = "%d.%d" % (g.inspect_get_major_version(root),
                             g.inspect_get_minor_version(root))
        product = g.inspect_get_product_name(root)
    return GuestOS(root=root, distro=distro, version=version, product=product, arch=arch,
                   mountpoints=mountpoints, root_fs_type=fs_type, root_fs_uuid=fs_uuid,
                   initramfs=tool, kernels=kernels, free_bytes=free,
                   has_update_grub=bool(g.is_file("/usr/sbin/update-grub")))
