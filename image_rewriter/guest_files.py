"""The files the rewriter puts into the guest's root file system, and the GRUB drop-in.

Guest layout (paths without the leading slash)::

    usr/lib/cvmchain/{runtime,agent,shared_spec}/      the agent and its MicroPython runtime
    etc/cvmchain/agent.conf, etc/cvmchain/ima-policy   configuration and policy
    usr/share/initramfs-tools/hooks/cvmchain           copies the above into every initrd
    usr/share/initramfs-tools/scripts/local-bottom/cvmchain   runs the agent before switch_root
    usr/lib/dracut/modules.d/90cvmchain/               instead of the two above, on a dracut
                                                       guest: module-setup.sh and the
                                                       pre-pivot hook
    etc/default/grub.d/cvmchain.cfg                    kernel arguments the policy needs

Everything under ``usr/`` is inside the default measured tree, so the agent measures
itself. The directories the rewriter owns (:data:`OWNED_DIRS`) are replaced whole on
every rewrite, which makes a second rewrite give the same files as the first.
"""

from __future__ import annotations

import io
import re
import shlex
import tarfile

from initrd_agent.install import (
    BOOT_SCRIPT,
    DRACUT_MODULE,
    HOOK,
    FileMap,
    dracut_module_files,
    hook_file,
)

GUEST_BOOT_SCRIPT = "usr/share/initramfs-tools/" + BOOT_SCRIPT
GRUB_DROP_IN = "etc/default/grub.d/cvmchain.cfg"
OWNED_DIRS = ("usr/lib/cvmchain", "etc/cvmchain", DRACUT_MODULE)
#: Files the rewriter owns outside :data:`OWNED_DIRS`.
OWNED_FILES = (HOOK, GUEST_BOOT_SCRIPT, GRUB_DROP_IN)
#: The guest's initrd builders (``GuestOS.initramfs``) the rewriter installs into.
INITRAMFS_TOOLS = ("initramfs-tools", "dracut")
_ARG = re.compile(r"^[A-Za-z0-9_.\-]+(=[^\s\"'$`\\]*)?$")


class CmdlineError(ValueError):
    """A kernel argument the rewriter was asked to add cannot be written safely."""


def guest_files(initrd_files: FileMap, cmdline_add: list[str],
                initramfs: str = "initramfs-tools") -> FileMap:
    """The guest's files, from the agent's initrd files (``install.agent_files``).

    ``initramfs`` is the guest's initrd builder (:data:`INITRAMFS_TOOLS`): the
    initramfs-tools hook and boot script, or the dracut module, so that the guest's own
    ``update-initramfs`` / ``dracut`` puts the agent into the initrds it builds later.
    """
    if initramfs not in INITRAMFS_TOOLS:
        raise ValueError("initramfs %r: one of %s" % (initramfs, ", ".join(INITRAMFS_TOOLS)))
    out: FileMap = {}
    for name, entry in initrd_files.items():
        if name != BOOT_SCRIPT:
            out[name] = entry
        elif initramfs == "initramfs-tools":
            out[GUEST_BOOT_SCRIPT] = entry
    if initramfs == "initramfs-tools":
        out[HOOK] = (0o755, hook_file())
    else:
        out.update(dracut_module_files())
    if cmdline_add:
        out[GRUB_DROP_IN] = (0o644, grub_drop_in(cmdline_add))
    return out


def check_kernel_args(args: list[str]) -> None:
    """Refuse arguments that would need quoting in a GRUB shell variable."""
    for a in args:
        if not _ARG.match(a):
            raise CmdlineError("kernel argument %r: only name or name=value without spaces, "
                               "quotes, $, ` or \\ can be added" % a)


def grub_drop_in(args: list[str]) -> bytes:
    """``/etc/default/grub.d/cvmchain.cfg`` adding ``args`` to GRUB_CMDLINE_LINUX."""
    check_kernel_args(args)
    return ("# Written by cvmchain rewrite; replaced on every rewrite.\n"
            "# Kernel arguments the measured boot needs (IMA template and hash).\n"
            'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX %s"\n' % " ".join(args)).encode()


def grub_args_present(default_grub: str) -> set[str]:
    """Arguments already set in GRUB_CMDLINE_LINUX(_DEFAULT) of an /etc/default/grub text."""
    found: set[str] = set()
    for m in re.finditer(r'^\s*GRUB_CMDLINE_LINUX(?:_DEFAULT)?=(.*)$', default_grub, re.M):
        try:
            words = shlex.split(m.group(1), comments=True)
        except ValueError:
            continue
        for w in words:
            found.update(t for t in w.split() if not t.startswith("$"))
    return found


def linux_cmdlines(grub_cfg: str) -> list[list[str]]:
    """The argument lists of every ``linux`` line of a generated grub.cfg."""
    out = []
    for line in grub_cfg.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("linux", "linuxefi"):
            out.append(words[2:])
    return out


def tar_of(files: FileMap) -> bytes:
    """An uncompressed tar of ``files`` (owner root, fixed times) with the owned directories.

    Only directories under :data:`OWNED_DIRS` get entries of their own, so unpacking it
    at ``/`` never changes the mode or owner of an existing system directory.
    """
    dirs: set[str] = set()
    for name in files:
        for owned in OWNED_DIRS:
            if name.startswith(owned + "/"):
                parts = name.split("/")
                base = len(owned.split("/"))
                for i in range(base, len(parts)):
                    dirs.add("/".join(parts[:i]))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, (mode, data) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
