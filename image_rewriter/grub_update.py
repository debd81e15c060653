"""``update-grub`` inside the libguestfs appliance, with ``grub-probe`` and ``udevadm`` memoised.

Under TCG most of ``update-grub``'s time is process start-up (about 20-50 ms per ``exec``
emulated, traced with the kernel's ``sched_process_exec`` event): ``grub-mkconfig`` and its
``/etc/grub.d`` scripts ask ``grub-probe`` the same questions (file system UUID,
abstraction, ...) several times, and every ``grub-probe`` runs ``udevadm`` about five
times. For the length of one run each of those guest binaries is bind-mounted over by a
small wrapper that runs the real binary once per distinct argument list (and working
directory) and replays its standard output and exit status after that. The wrapper uses
shell built-ins only, so a replayed answer costs no ``exec``. The wrappers, the real
binaries' copies and the answers live on a tmpfs mounted over the guest's ``/run`` (empty on
disk in a Debian image), so nothing of it reaches the guest's file system; every mount is
undone before the command returns, whatever happens.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from image_rewriter.errors import GuestError

#: where the wrappers, the real binaries' copies and the answers live (on the tmpfs)
PROBE_DIR = "/run/cvmchain-probe"
#: the guest binaries memoised during one ``update-grub`` run
MEMOISED = ("/usr/sbin/grub-probe", "/usr/bin/udevadm")

_US = "\x1f"  # unit separator: between the key's parts (arguments never contain it)


def probe_wrapper(directory: str = PROBE_DIR, name: str = "grub-probe") -> str:
    """The memoising wrapper of ``name`` (POSIX sh, built-ins only), which runs
    ``DIRECTORY/NAME.real`` once per distinct question and keeps its answers in
    ``DIRECTORY/NAME.memo``.

    The key is the working directory and the argument list; an argument holding a newline
    or the unit separator is never memoised (the real binary runs). Answers are written
    before their key, so a reader never sees half an entry; entries are named by the
    writer's PID. Standard error is not kept (it reaches the caller the first time only).
    """
    return (_WRAPPER.replace("@DIR@", directory).replace("@NAME@", name)
            .replace("@US@", _US))


_WRAPPER = r"""#!/bin/sh
# @NAME@ memoised by cvmchain rewrite for one update-grub run (tmpfs, gone after it)
real=@DIR@/@NAME@.real
memo=@DIR@/@NAME@.memo
nl='
'
key=$PWD
for a in "$@"; do
  case $a in *"$nl"*|*"@US@"*) exec "$real" "$@" ;; esac
  key=$key@US@$a
done
replay() {
  line=
  while IFS= read -r line; do printf '%s\n' "$line"; done < "$1.out"
  [ -z "$line" ] || printf '%s' "$line"
  IFS= read -r rc < "$1.rc"
  exit "$rc"
}
for k in "$memo"/*.key; do
  [ -f "$k" ] || break
  IFS= read -r seen < "$k"
  [ "$seen" = "$key" ] && replay "${k%.key}"
done
e=$memo/$$
rc=0
"$real" "$@" > "$e.out" || rc=$?
echo "$rc" > "$e.rc"
printf '%s\n' "$key" > "$e.key"
replay "$e"
"""

#: the configuration ``update-grub`` (``grub-mkconfig -o``) writes on Debian and Ubuntu
GRUB_CFG = "/boot/grub/grub.cfg"
_CFG_MARK = "--- cvmchain: generated grub.cfg, base64 ---"

_SCRIPT_HEAD = r"""set -e
mount -t tmpfs -o mode=0755,size=32m cvmchain-probe /run
trap 'for b in %(binaries)s; do umount "$b" 2>/dev/null || true; done; umount /run' EXIT
mkdir @DIR@
"""

_SCRIPT_BINARY = r"""if [ -f %(path)s ]; then
  cp %(path)s @DIR@/%(name)s.real
  mkdir @DIR@/%(name)s.memo
  cat > @DIR@/%(name)s <<'CVMCHAIN_EOF'
%(wrapper)s
CVMCHAIN_EOF
  chmod 0755 @DIR@/%(name)s
  mount --bind @DIR@/%(name)s %(path)s
fi
"""


def update_grub_script(binaries: tuple[str, ...] = MEMOISED,
                       command: str = "update-grub 2>&1") -> str:
    """The shell script :func:`run_update_grub` runs in the guest (chrooted by libguestfs).

    ``binaries`` are guest paths (after merged-``/usr``: ``/bin`` is ``/usr/bin``); one
    that the guest lacks is skipped. ``command`` runs with them memoised (``@DIR@`` in it
    is the tmpfs directory).
    """
    script = _SCRIPT_HEAD % {"binaries": " ".join(binaries)}
    for path in binaries:
        name = path.rsplit("/", 1)[1]
        script += _SCRIPT_BINARY % {"path": path, "name": name,
                                    "wrapper": probe_wrapper(PROBE_DIR, name).rstrip("\n")}
    script += command + "\n"
    return script.replace("@DIR@", PROBE_DIR)


@dataclass(frozen=True)
class GeneratedGrubCfg:
    """What the guest's ``grub-mkconfig`` generated, not yet installed."""

    content: bytes
    messages: str


def generate_grub_cfg(g: Any) -> GeneratedGrubCfg:
    """Run the guest's ``grub-mkconfig`` (``grub-probe`` and ``udevadm`` memoised) with its
    output on the tmpfs, and return what it generated; nothing is written to the guest.

    This is ``update-grub`` (``grub-mkconfig -o /boot/grub/grub.cfg``) minus its last
    step, so it also runs with the guest's file systems mounted read-only: the rewriter
    reads the root file system on the host meanwhile. :func:`install_grub_cfg` finishes
    the job. Errors are libguestfs' ``RuntimeError`` (the command failed) or
    :class:`GuestError` (its output cannot be read back).
    """
    out = str(g.sh(update_grub_script(
        command="grub-mkconfig -o @DIR@/grub.cfg 2>&1\necho '%s'\nbase64 @DIR@/grub.cfg"
        % _CFG_MARK)))
    messages, mark, encoded = out.partition(_CFG_MARK + "\n")
    if not mark:
        raise GuestError("grub-mkconfig in the guest: no configuration came back "
                              "(output: %s)" % out[-2000:])
    try:
        content = base64.b64decode(encoded, validate=False)
    except binascii.Error as e:
        raise GuestError("grub-mkconfig in the guest: its configuration does not "
                              "decode: %s" % e) from e
    return GeneratedGrubCfg(content, messages)


def install_grub_cfg(g: Any, cfg: GeneratedGrubCfg, path: str = GRUB_CFG) -> None:
    """Write ``cfg`` to the guest's ``path`` as ``grub-mkconfig -o`` does: an existing file
    keeps its mode and owner (``cat new > cfg``), a new one is created with mode 0600."""
    existed = bool(g.is_file(path))
    g.write(path, cfg.content)
    if not existed:
        g.chmod(0o600, path)


def run_update_grub(g: Any, memoise_probe: bool = True) -> str:
    """Run the guest's ``update-grub`` through libguestfs handle ``g``; its output.

    With ``memoise_probe`` (the default) ``grub-probe`` and ``udevadm`` are memoised as
    described above; the generated ``grub.cfg`` is the same, since every answer is the real
    binary's. Errors are libguestfs' ``RuntimeError`` with the command's output.
    """
    if not memoise_probe or not g.is_file("/usr/sbin/grub-probe"):
        return str(g.sh("update-grub 2>&1"))
    return str(g.sh(update_grub_script()))
