"""Exception types of the QEMU test bed.

Every failure the test bed reports is a :class:`QemuTestsError`; the subclasses say which
stage failed, and the ones caused by a host command carry that command and the tail of its
standard error so a failing CI log is self-explanatory.
"""

from __future__ import annotations

from collections.abc import Sequence


def tail(text: str | bytes, lines: int = 30) -> str:
    """Return the last ``lines`` lines of ``text`` (bytes are decoded leniently)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


class QemuTestsError(Exception):
    """Base class of every error raised by :mod:`qemu_tests`."""


class CommandError(QemuTestsError):
    """A host command failed (non-zero exit, missing binary or time-out).

    Attributes:
        command: the argument vector that was run.
        returncode: its exit status, or ``None`` if it did not run or did not finish.
        stderr_tail: the last lines of what it wrote to standard error.
    """

    def __init__(
        self,
        message: str,
        command: Sequence[str] = (),
        returncode: int | None = None,
        stderr_tail: str = "",
    ) -> None:
        self.command = list(command)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        text = message
        if self.command:
            text += f"\n  command: {' '.join(self.command)}"
        if returncode is not None:
            text += f"\n  exit status: {returncode}"
        if stderr_tail:
            text += "\n  stderr (tail):\n    " + stderr_tail.replace("\n", "\n    ")
        super().__init__(text)


class ImageBuildError(CommandError):
    """Building the guest image failed; names the step, the command and its stderr tail."""


class GuestfsError(QemuTestsError):
    """A libguestfs operation on a guest image failed (names the image and the guest path)."""


class VMError(QemuTestsError):
    """QEMU or swtpm failed to start, died, or the guest did not behave as expected.

    Attributes:
        console_tail: the last lines of the serial console transcript, if any.
    """

    def __init__(self, message: str, console_tail: str = "") -> None:
        self.console_tail = console_tail
        text = message
        if console_tail:
            text += "\n  console (tail):\n    " + console_tail.replace("\n", "\n    ")
        super().__init__(text)


class GuestTimeout(VMError):
    """The guest did not print what was expected in time."""


class GuestPanic(VMError):
    """The guest kernel panicked (the message names the panic; the console tail has the
    trace). Not a :class:`GuestTimeout`: a test waiting for something *not* to appear
    must not pass because the kernel died instead."""


class GuestCommandError(VMError):
    """A command run on the guest shell exited non-zero where success was required.

    Attributes:
        command: the shell command.
        exit_status: its exit status.
        output: what it printed (stdout and stderr together).
    """

    def __init__(self, command: str, exit_status: int, output: str) -> None:
        self.command = command
        self.exit_status = exit_status
        self.output = output
        super().__init__(
            f"guest command failed with exit status {exit_status}: {command}\n"
            f"  output (tail):\n    " + tail(output, 20).replace("\n", "\n    ")
        )
