"""Add kernel arguments to an existing ``grub.cfg`` exactly where ``grub-mkconfig`` would.

``update-grub`` under emulation costs seconds (hundreds of ``exec`` calls of its shell
scripts). When the only change to the GRUB configuration is the rewriter's drop-in, which
appends to ``GRUB_CMDLINE_LINUX``, the new ``grub.cfg`` differs from the current one only
in the ``linux`` lines that ``/etc/grub.d/10_linux`` writes, each of the form::

    linux <kernel> root=<device> ro <args>

with ``<args>`` one of (``L``: ``GRUB_CMDLINE_LINUX``, ``D``: ``GRUB_CMDLINE_LINUX_DEFAULT``,
``R``: ``single`` or ``recovery``, optionally followed by `` nomodeset``)::

    L D                 (the default and the "advanced" entries)
    L D init=<path>     (entries for other installed init systems)
    R L                 (recovery entries)

:func:`remake_linux_lines` remakes those lines from the new ``L`` and ``D`` (the defaults
sourced as ``grub-mkconfig`` sources them, once without and once with the drop-in), and
changes nothing else. It refuses (:class:`GrubEditRefused`; the caller then runs
``grub-mkconfig``) whenever the file does not look exactly like what ``grub-mkconfig``
would have written for the defaults without the drop-in: no ``10_linux`` section, a
``linux`` line of another form or with other arguments (a stale file, a btrfs subvolume,
Ubuntu's ``$vt_handoff``, an older drop-in of the rewriter's), kernels in ``/boot`` without
an entry or entries for kernels that are gone, or another section that passes
``GRUB_CMDLINE_LINUX`` on (``20_linux_xen``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

SECTION_BEGIN = "### BEGIN /etc/grub.d/%s ###"
SECTION_END = "### END /etc/grub.d/%s ###"
LINUX_SECTION = "10_linux"
_SECTION = re.compile(r"^### BEGIN /etc/grub\.d/(\S+) ###$", re.M)
_LINUX_LINE = re.compile(r"^(\s*linux\t(\S+) root=\S* ro )(.*)$")
_LOADER_LINE = re.compile(r"^\s*(linux|linuxefi|linux16|module|module2|multiboot|multiboot2)\s")
RECOVERY_WORDS = ("single", "recovery", "single nomodeset", "recovery nomodeset")
#: separates the values :data:`DEFAULTS_SCRIPT` prints (never in a shell variable's value
#: that GRUB would accept on a kernel command line)
_US = "\x1f"
DEFAULTS_MARK = "--- cvmchain: grub defaults ---"

#: Sources the GRUB defaults as ``grub-mkconfig`` does, once without the rewriter's drop-in
#: (``@DROP_IN@``: what the current ``grub.cfg`` was generated from) and once with it, and
#: prints ``L`` and ``D`` of each after a marker line.
DEFAULTS_SCRIPT = r"""set +e
__cvmchain_defaults() {
  (
    if [ -f /etc/default/grub ]; then . /etc/default/grub; fi
    for __cvmchain_x in /etc/default/grub.d/*.cfg; do
      if [ "$__cvmchain_x" = "@DROP_IN@" ] && [ "$__cvmchain_with" != yes ]; then continue; fi
      if [ -e "$__cvmchain_x" ]; then . "$__cvmchain_x"; fi
    done
    printf '%s\n%s\037%s\037' '@MARK@' "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT"
  )
}
__cvmchain_with=no __cvmchain_defaults
__cvmchain_with=yes __cvmchain_defaults
"""


class GrubEditRefused(Exception):
    """The configuration cannot be edited safely; regenerate it with ``grub-mkconfig``."""


@dataclass(frozen=True)
class GrubDefaults:
    """``GRUB_CMDLINE_LINUX`` (``L``) and ``GRUB_CMDLINE_LINUX_DEFAULT`` (``D``)."""

    linux: str
    default: str


def defaults_script(drop_in: str) -> str:
    """:data:`DEFAULTS_SCRIPT` for the drop-in at guest path ``drop_in``."""
    return DEFAULTS_SCRIPT.replace("@DROP_IN@", drop_in).replace("@MARK@", DEFAULTS_MARK)


def parse_defaults(output: str) -> tuple[GrubDefaults, GrubDefaults]:
    """What :func:`defaults_script` printed: the defaults without and with the drop-in.
    Each pair follows a marker line; what the defaults files print themselves comes
    before it.

    Raises:
        GrubEditRefused: the output is not the script's.
    """
    chunks = output.split(DEFAULTS_MARK + "\n")
    pairs = [c.split(_US) for c in chunks[-2:]] if len(chunks) >= 3 else []
    if len(pairs) != 2 or any(len(f) < 3 for f in pairs) or pairs[1][2:] != [""]:
        raise GrubEditRefused("the GRUB defaults could not be read back (%r)" % output[-200:])
    return GrubDefaults(pairs[0][0], pairs[0][1]), GrubDefaults(pairs[1][0], pairs[1][1])


def _new_args(args: str, old: GrubDefaults, new: GrubDefaults) -> str | None:
    """``args`` of a ``10_linux`` line made from ``old``, remade from ``new``; None when it
    is of no known form."""
    normal = old.linux + " " + old.default
    if args == normal:
        return new.linux + " " + new.default
    if args.startswith(normal + " init=") and " " not in args[len(normal) + 1:]:
        return new.linux + " " + new.default + args[len(normal):]
    for words in RECOVERY_WORDS:
        if args == words + " " + old.linux:
            return words + " " + new.linux
    return None


def _kernel_version(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    if name.endswith(".efi.signed"):
        name = name[: -len(".efi.signed")]
    return name[len("vmlinuz-"):] if name.startswith("vmlinuz-") else ""


def remake_linux_lines(cfg: str, old: GrubDefaults, new: GrubDefaults,
                       kernels: Iterable[str]) -> str:
    """``cfg`` with every ``10_linux`` entry's arguments remade from ``new`` defaults.

    Args:
        cfg: the current ``/boot/grub/grub.cfg``.
        old: the defaults it must have been generated from.
        new: the defaults with the rewriter's drop-in (:func:`parse_defaults`).
        kernels: the versions of the kernels installed in ``/boot``.

    Raises:
        GrubEditRefused: see the module docstring; the message says why.
    """
    begin, end = SECTION_BEGIN % LINUX_SECTION, SECTION_END % LINUX_SECTION
    lines = cfg.split("\n")
    try:
        first = lines.index(begin)
        last = lines.index(end, first)
    except ValueError:
        raise GrubEditRefused("no %s section (not written by grub-mkconfig?)"
                              % LINUX_SECTION) from None
    section = None
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if m:
            section = m.group(1)
        elif line.startswith("### END "):
            section = None
        elif (section is not None and section != LINUX_SECTION and "linux" in section
              and _LOADER_LINE.match(line)):
            raise GrubEditRefused("section %s boots Linux too (line %d)" % (section, i + 1))
    seen: set[str] = set()
    for i in range(first + 1, last):
        line = lines[i]
        if not _LOADER_LINE.match(line):
            continue
        m = _LINUX_LINE.match(line)
        if m is None:
            raise GrubEditRefused("line %d of the %s section is not of the form 'linux KERNEL "
                                  "root=DEVICE ro ARGS'" % (i + 1, LINUX_SECTION))
        remade = _new_args(m.group(3), old, new)
        if remade is None:
            raise GrubEditRefused("line %d: its arguments %r are not what the GRUB defaults "
                                  "give (a stale grub.cfg?)" % (i + 1, m.group(3)))
        seen.add(_kernel_version(m.group(2)))
        lines[i] = m.group(1) + remade
    installed = set(kernels)
    if seen != installed:
        raise GrubEditRefused("the %s entries are for kernels %s, /boot has %s"
                              % (LINUX_SECTION, sorted(seen), sorted(installed)))
    return "\n".join(lines)
