"""Running host commands and keeping track of long-lived child processes.

:func:`run_command` runs a command to completion and turns every failure into a
:class:`~qemu_tests.errors.CommandError` (or the subclass the caller asks for) that names the
command and carries its stderr tail.

Long-lived children (QEMU, swtpm) are started in their own session, so they and anything
they fork form one process group, with ``PR_SET_PDEATHSIG`` so the kernel kills them if the
test process dies, and they are registered with :func:`track` so :func:`kill_group` at exit
(``atexit``) ends whatever a failing test left behind.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

from .errors import CommandError, tail

_PR_SET_PDEATHSIG = 1
_tracked: set[int] = set()


def run_command(
    argv: Sequence[str],
    *,
    error: type[CommandError] = CommandError,
    what: str = "",
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    input_bytes: bytes | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` to completion, capturing stdout and stderr.

    Args:
        argv: the command.
        error: exception type raised on failure (a :class:`CommandError` subclass).
        what: a short description of the step for the error message.
        timeout: seconds before the command is killed and ``error`` raised.
        env: extra environment variables (added to the current environment).
        input_bytes: data for the command's standard input.
        cwd: working directory.

    Returns:
        The completed process (``stdout``/``stderr`` as bytes).
    """
    argv = [str(a) for a in argv]
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    label = what or argv[0]
    try:
        proc = subprocess.run(
            argv,
            input=input_bytes,
            stdin=None if input_bytes is not None else subprocess.DEVNULL,
            capture_output=True,
            env=full_env,
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError as exc:
        raise error(f"{label}: {argv[0]} is not installed", argv) from exc
    except subprocess.TimeoutExpired as exc:
        raise error(
            f"{label}: timed out after {timeout} s", argv, None, tail(exc.stderr or b"")
        ) from exc
    if proc.returncode != 0:
        raise error(f"{label} failed", argv, proc.returncode, tail(proc.stderr or proc.stdout))
    return proc


def set_parent_death_signal() -> None:
    """In a child between fork and exec: die with SIGKILL when the parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def track(pid: int) -> None:
    """Remember ``pid`` (a session leader) so its process group is killed at exit."""
    _tracked.add(pid)


def untrack(pid: int) -> None:
    """Forget ``pid`` once it has been reaped."""
    _tracked.discard(pid)


def kill_group(pid: int, grace: float = 3.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL it after ``grace`` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        untrack(pid)
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pid):
            untrack(pid)
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    untrack(pid)


def group_members(pgid: int) -> list[int]:
    """PIDs of the live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp ...
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(int(entry))
    return members


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process is left in process group ``pgid``."""
    return bool(group_members(pgid))


def _kill_all_tracked() -> None:
    for pid in list(_tracked):
        kill_group(pid, grace=1.0)


atexit.register(_kill_all_tracked)
