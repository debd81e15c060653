"""``update-grub`` inside the libguestfs appliance, with ``grub-probe`` memoised.

Under TCG most of ``update-grub``'s time is ``grub-probe``: each ``--device`` call takes
about 0.7 s emulated, and ``grub-mkconfig`` and its ``/etc/grub.d`` scripts ask the same
questions (file system UUID, abstraction, ...) several times. For the length of one run the
guest's ``/usr/sbin/grub-probe`` is bind-mounted over by a small wrapper that runs the real
binary once per distinct argument list and replays its output and exit status after that.
The wrapper and the real binary's copy live on a tmpfs mounted over the guest's ``/run``
(empty on disk in a Debian image), so nothing of it reaches the guest's file system; both
mounts are undone before the command returns, whatever happens.
"""

from __future__ import annotations

from typing import Any

#: where the wrapper, the real binary's copy and the answers live (on the tmpfs)
PROBE_DIR = "/run/cvmchain-probe"


def probe_wrapper(directory: str = PROBE_DIR) -> str:
    """The memoising wrapper (POSIX sh; coreutils' sha256sum and cut, in every guest), which
    runs ``DIRECTORY/grub-probe.real`` and keeps its answers in ``directory``."""
    return _WRAPPER.replace("@DIR@", directory)


_WRAPPER = r"""#!/bin/sh
# grub-probe memoised by cvmchain rewrite for one update-grub run (tmpfs, gone after it)
k=@DIR@/$(printf '%s\037' "$PWD" "$@" | sha256sum | cut -c1-64)
if [ -f "$k.rc" ]; then cat "$k.out"; exit "$(cat "$k.rc")"; fi
rc=0
@DIR@/grub-probe.real "$@" > "$k.out" || rc=$?
echo "$rc" > "$k.rc"
cat "$k.out"
exit "$rc"
"""

_SCRIPT = r"""set -e
mount -t tmpfs -o mode=0755,size=32m cvmchain-probe /run
trap 'umount /usr/sbin/grub-probe 2>/dev/null || true; umount /run' EXIT
mkdir @DIR@
cp /usr/sbin/grub-probe @DIR@/grub-probe.real
cat > @DIR@/wrapper <<'CVMCHAIN_EOF'
%s
CVMCHAIN_EOF
chmod 0755 @DIR@/wrapper
mount --bind @DIR@/wrapper /usr/sbin/grub-probe
update-grub 2>&1
"""


def update_grub_script() -> str:
    """The shell script :func:`run_update_grub` runs in the guest (chrooted by libguestfs)."""
    return (_SCRIPT % probe_wrapper().rstrip("\n")).replace("@DIR@", PROBE_DIR)


def run_update_grub(g: Any, memoise_probe: bool = True) -> str:
    """Run the guest's ``update-grub`` through libguestfs handle ``g``; its output.

    With ``memoise_probe`` (the default) ``grub-probe`` is memoised as described above; the
    generated ``grub.cfg`` is the same, since every answer is the real binary's. Errors are
    libguestfs' ``RuntimeError`` with the command's output.
    """
    if not memoise_probe or not g.is_file("/usr/sbin/grub-probe"):
        return str(g.sh("update-grub 2>&1"))
    return str(g.sh(update_grub_script()))
