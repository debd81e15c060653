"""Boot a guest image under QEMU (q35, OVMF, optional swtpm) and drive its serial console.

:class:`QemuVM` starts QEMU with the serial console on a Unix socket (``wait=on``, so not a
byte of firmware output is lost) and talks to it with :mod:`pexpect`; the whole transcript is
written to ``console_log``. After the autologin marker it puts the root shell into a quiet,
script-friendly state and :meth:`QemuVM.run` executes commands framed by unique markers, so
the output and exit status are exact whatever else the console prints.

:func:`boot_vm` ties an overlay disk, a :class:`~qemu_tests.swtpm.Swtpm` and a :class:`QemuVM`
together and guarantees that nothing outlives the ``with`` block: QEMU and swtpm run in their
own process groups, die with the test process (``PR_SET_PDEATHSIG``) and are killed at exit.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import pexpect
import pexpect.fdpexpect

from .accel import accel_args, kvm_works
from .disk import make_overlay
from .errors import GuestCommandError, GuestPanic, GuestTimeout, VMError, tail
from .paths import ovmf_code, ovmf_vars_template
from .procs import kill_group, set_parent_death_signal, track, untrack
from .recipe import DEFAULT_RECIPE
from .swtpm import Swtpm

__all__ = ["QemuVM", "ReadOnlyDrive", "Swtpm", "boot_vm", "kvm_works"]

QEMU = "qemu-system-x86_64"
SOCKET_WAIT_SECONDS = 15.0
DEFAULT_LOGIN_TIMEOUT = 600.0
DEFAULT_COMMAND_TIMEOUT = 120.0
MAX_COMMAND_BYTES = 64 * 1024
#: the kernel's last words; watched for by every :meth:`QemuVM.expect`
KERNEL_PANIC = re.compile(rb"Kernel panic - not syncing:[^\r\n]*")
#: what the kernel prints (pr_info, shown without ``quiet``) right before it starts the
#: initrd's init: a panic before it happened in the kernel's own start-up, before any
#: code of the image's initrd ran
INIT_STARTED = b"Run /init as init process"

# Typed once after login: no echo and no CR insertion on output, no prompts, no kernel
# messages on the console, no bracketed paste.
_SHELL_SETUP = (
    "stty -echo -onlcr cols 1000; export TERM=dumb PS1='' PS2=''; "
    "unset PROMPT_COMMAND HISTFILE; dmesg -n 1; bind 'set enable-bracketed-paste off'"
)


@dataclass(frozen=True)
class ReadOnlyDrive:
    """A raw file attached read-only as a virtio disk whose serial number is ``serial``.

    The guest finds it by that serial (``/sys/block/vdX/serial``, or udev's
    ``/dev/disk/by-id/virtio-<serial>``), whatever letter it gets.
    """

    path: Path
    serial: str

    def qemu_args(self, drive_id: str) -> list[str]:
        """``-drive`` + ``-device`` arguments (commas in the path escaped as QEMU wants)."""
        if not self.serial or not self.serial.replace("-", "").replace("_", "").isalnum() \
                or len(self.serial) > 20:
            raise VMError(f"drive {self.path}: serial {self.serial!r} must be 1-20 characters "
                          "of letters, digits, '-' or '_' (virtio-blk's limit)")
        file = str(self.path).replace(",", ",,")
        return ["-drive", f"file={file},if=none,id={drive_id},format=raw,readonly=on",
                "-device", f"virtio-blk-pci,drive={drive_id},serial={self.serial}"]


class QemuVM:
    """One QEMU guest with its serial console under :mod:`pexpect`.

    Args:
        disk: the qcow2 the guest boots from and writes to (use an overlay).
        workdir: directory for the private OVMF variable store and the sockets.
        console_log: file that receives the whole console transcript.
        tpm: a started :class:`Swtpm` to attach, or ``None`` for a VM without TPM.
        tpm_device: ``tpm-tis`` (default) or ``tpm-crb``.
        secure_boot: boot with Secure Boot enabled (OVMF ``secboot`` code with SMM and the
            Microsoft-keyed variable store). Debian's signed GRUB only uses the kernel's EFI
            stub, which hands the firmware's TPM event log to Linux, when Secure Boot is on.
        memory_mib: guest RAM.
        smp: number of vCPUs.
        ready_marker: line the root login shell prints on the console.
        extra_args: additional QEMU arguments.
        reboot_exits: make a guest reboot end QEMU (``-no-reboot``).
        drives: raw files attached read-only as extra virtio disks (after the boot disk).
        early_panic_restarts: how many times a kernel panic *before* the initrd's init is
            answered by restarting the machine (fresh QEMU, the swtpm restarted on its
            state) instead of failing. Emulated SMP (TCG) occasionally trips the kernel's
            live code patching during start-up; no code under test has run by then. Each
            restart keeps the panicked transcript beside the console log
            (``console.panic-N.log``) and is listed in :attr:`early_panics`. A panic
            after init started always fails with :class:`GuestPanic`.
        uefi: boot through OVMF (the default); ``False`` leaves QEMU's legacy BIOS, for a
            direct kernel boot (``-kernel`` in ``extra_args``) that needs no firmware.
    """

    def __init__(
        self,
        disk: Path,
        workdir: Path,
        console_log: Path,
        *,
        tpm: Swtpm | None = None,
        tpm_device: str = "tpm-tis",
        secure_boot: bool = True,
        memory_mib: int = 2048,
        smp: int = 2,
        ready_marker: str = DEFAULT_RECIPE.ready_marker,
        extra_args: Sequence[str] = (),
        reboot_exits: bool = False,
        drives: Sequence[ReadOnlyDrive] = (),
        early_panic_restarts: int = 1,
        uefi: bool = True,
    ) -> None:
        self.disk = Path(disk)
        self.workdir = Path(workdir)
        self.console_log = Path(console_log)
        self.tpm = tpm
        self.tpm_device = tpm_device
        self.secure_boot = secure_boot
        self.memory_mib = memory_mib
        self.smp = smp
        self.ready_marker = ready_marker
        self.extra_args = list(extra_args)
        self.reboot_exits = reboot_exits
        self.drives = list(drives)
        self.early_panic_restarts = early_panic_restarts
        self.uefi = uefi
        self.early_panics: list[str] = []
        self.login_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._console: pexpect.fdpexpect.fdspawn | None = None
        self._log_file: BinaryIO | None = None
        self._started_at = 0.0
        self._shell_ready = False

    # -- life cycle ---------------------------------------------------------------------

    def command_line(self) -> list[str]:
        """The QEMU argument vector this VM runs with."""
        machine = "q35,smm=on" if self.secure_boot else "q35,smm=off"
        argv = [
            QEMU, "-name", "cvmchain-guest", "-machine", machine, *accel_args(),
            "-m", str(self.memory_mib), "-smp", str(self.smp),
            "-nodefaults", "-no-user-config", "-display", "none",
        ]
        if self.uefi and self.secure_boot:  # only SMM may write the variable store
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        if self.uefi:
            argv += [
                "-drive",
                f"if=pflash,format=raw,unit=0,readonly=on,file={ovmf_code(self.secure_boot)}",
                "-drive", f"if=pflash,format=raw,unit=1,file={self.vars_path}",
            ]
        argv += [
            "-drive", f"file={self.disk},if=virtio,format=qcow2,cache=unsafe",
            "-device", "virtio-rng-pci",
            "-chardev", f"socket,id=console,path={self.console_socket},server=on,wait=on",
            "-serial", "chardev:console",
            "-qmp", f"unix:{self.workdir / 'qmp.sock'},server=on,wait=off",
        ]
        for number, drive in enumerate(self.drives):
            argv += drive.qemu_args(f"extra{number}")
        if self.tpm is not None:
            argv += self.tpm.qemu_args(self.tpm_device)
        if self.reboot_exits:
            argv.append("-no-reboot")
        return argv + self.extra_args

    @property
    def vars_path(self) -> Path:
        """This VM's private copy of the OVMF variable store."""
        return self.workdir / "OVMF_VARS.fd"

    @property
    def console_socket(self) -> Path:
        """The Unix socket QEMU serves the serial console on."""
        return self.workdir / "console.sock"

    @property
    def qemu_log(self) -> Path:
        """QEMU's own stdout/stderr."""
        return self.workdir / "qemu.log"

    @property
    def pid(self) -> int | None:
        """QEMU's process id while it runs (also its process group id)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> QemuVM:
        """Start QEMU and connect to its console; the guest starts running on connect."""
        if self._proc is not None:
            raise VMError("VM already started")
        if shutil.which(QEMU) is None:
            raise VMError(f"{QEMU} is not installed (Debian package qemu-system-x86)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        if self.uefi and not self.vars_path.exists():
            shutil.copyfile(ovmf_vars_template(self.secure_boot), self.vars_path)
        self.console_socket.unlink(missing_ok=True)
        argv = self.command_line()
        (self.workdir / "qemu.cmdline").write_text(shlex.join(argv) + "\n")
        with open(self.qemu_log, "wb") as qemu_log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=set_parent_death_signal,
            )
        track(self._proc.pid)
        try:
            self._connect_console()
        except BaseException:
            self.kill()
            raise
        self._started_at = time.monotonic()
        return self

    def _connect_console(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + SOCKET_WAIT_SECONDS
        while True:
            if self._proc.poll() is not None:
                raise VMError(f"QEMU exited with status {self._proc.returncode} at start:\n"
                              + self._qemu_log_tail())
            if self.console_socket.exists():
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(str(self.console_socket))
                    break
                except OSError:
                    sock.close()
            if time.monotonic() > deadline:
                raise VMError(f"QEMU did not open its console socket {self.console_socket}:\n"
                              + self._qemu_log_tail())
            time.sleep(0.02)
        self._sock = sock
        self._log_file = open(self.console_log, "wb", buffering=0)
        self._console = pexpect.fdpexpect.fdspawn(
            sock.fileno(), timeout=DEFAULT_COMMAND_TIMEOUT, maxread=65536,
        )
        self._console.logfile_read = self._log_file

    def _qemu_log_tail(self) -> str:
        try:
            return tail(self.qemu_log.read_bytes(), 20)
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        """True while the QEMU process exists."""
        return self._proc is not None and self._proc.poll() is None

    def shutdown(self, timeout: float = 180.0) -> int | None:
        """Power the guest off, wait for QEMU to exit, kill it if it does not.

        Returns:
            QEMU's exit status (``None`` if it had to be killed).
        """
        if self._proc is None:
            return None
        status: int | None = None
        if self.running and self._console is not None:
            try:
                self._console.send(b"\n/sbin/poweroff\n" if self._shell_ready else b"")
                if self._shell_ready:
                    self._console.expect(pexpect.EOF, timeout=timeout)
                status = self._proc.wait(timeout=15)
            except (pexpect.TIMEOUT, pexpect.EOF, OSError, subprocess.TimeoutExpired):
                status = None
        if self.running:
            status = None
        self.kill()
        return status

    def kill(self) -> None:
        """Kill QEMU's process group and close the console (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                kill_group(proc.pid)
            else:
                kill_group(proc.pid, grace=0.5)  # anything QEMU left in its group
            proc.wait()
            untrack(proc.pid)
        if self._console is not None:
            try:
                # Drain what the console still holds so the transcript is complete.
                self._console.read_nonblocking(1 << 20, timeout=0)
            except (pexpect.EOF, pexpect.TIMEOUT, OSError, ValueError):
                pass
            self._console = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._shell_ready = False

    def __enter__(self) -> QemuVM:
        return self if self._proc is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.shutdown()
        else:
            self.kill()

    # -- console ------------------------------------------------------------------------

    def console_tail(self, lines: int = 40) -> str:
        """The last lines of the console transcript so far."""
        try:
            return tail(self.console_log.read_bytes(), lines)
        except OSError:
            return ""

    def _need_console(self) -> pexpect.fdpexpect.fdspawn:
        if self._console is None:
            raise VMError("VM is not running")
        return self._console

    def expect(self, marker: str | re.Pattern[bytes], timeout: float = 300.0) -> str:
        """Wait until ``marker`` (literal text, or a bytes regex) appears on the console.

        Returns:
            The console text from the previous match up to and including this one.

        Raises:
            GuestTimeout: not seen within ``timeout`` seconds, or QEMU exited.
            GuestPanic: the kernel panicked first (see ``early_panic_restarts``).
        """
        pattern = marker if isinstance(marker, re.Pattern) else re.compile(
            re.escape(marker.encode()))
        deadline = time.monotonic() + timeout
        while True:
            console = self._need_console()
            try:
                index = console.expect([pattern, KERNEL_PANIC],
                                       timeout=max(0.0, deadline - time.monotonic()))
            except pexpect.TIMEOUT as exc:
                raise GuestTimeout(f"{marker!r} not seen on the console within {timeout} s",
                                   self.console_tail()) from exc
            except pexpect.EOF as exc:
                raise GuestTimeout(f"QEMU exited before {marker!r} appeared on the console\n"
                                   + self._qemu_log_tail(), self.console_tail()) from exc
            if index == 0:
                break
            self._kernel_panicked(console, marker)
        before = console.before if isinstance(console.before, bytes) else b""
        after = console.after if isinstance(console.after, bytes) else b""
        return (before + after).decode("utf-8", errors="replace")

    def _kernel_panicked(self, console: pexpect.fdpexpect.fdspawn,
                         marker: str | re.Pattern[bytes]) -> None:
        """Restart after an early panic (see ``early_panic_restarts``), else raise."""
        after = console.after if isinstance(console.after, bytes) else b""
        message = after.decode("utf-8", errors="replace").strip()
        try:  # let the end of the trace reach the transcript
            console.expect([pexpect.EOF, rb"---\[ end Kernel panic[^\r\n]*"], timeout=5)
        except (pexpect.TIMEOUT, OSError):
            pass
        transcript = self.console_log.read_bytes() if self.console_log.exists() else b""
        if INIT_STARTED in transcript or len(self.early_panics) >= self.early_panic_restarts:
            raise GuestPanic(f"the guest kernel panicked while waiting for {marker!r}: "
                             f"{message}", self.console_tail(60))
        self.early_panics.append(message)
        self.kill()
        kept = self.console_log.with_name(
            f"{self.console_log.stem}.panic-{len(self.early_panics)}{self.console_log.suffix}")
        self.console_log.replace(kept)
        print(f"cvmchain harness: early kernel panic before init ({message}); transcript in "
              f"{kept}; restarting the machine", file=sys.stderr)
        if self.tpm is not None:
            self.tpm.stop()
            self.tpm.start()
        self.start()

    def send(self, text: str) -> None:
        """Type ``text`` on the serial console as is."""
        self._need_console().send(text.encode())

    def wait_for_login(self, timeout: float = DEFAULT_LOGIN_TIMEOUT) -> float:
        """Wait for the autologin marker and prepare the shell for :meth:`run`.

        Returns:
            Seconds from QEMU start to the marker (also kept in :attr:`login_seconds`).
        """
        self.expect(self.ready_marker, timeout=timeout)
        self.login_seconds = time.monotonic() - self._started_at
        self.send(_SHELL_SETUP + "\n")
        self._shell_ready = True
        output, status = self.run("true", timeout=60)
        if status != 0:
            raise VMError(f"shell set-up failed: {output!r}", self.console_tail())
        return self.login_seconds

    def run(self, command: str, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> tuple[str, int]:
        """Run a shell command as root in the guest.

        The command runs in a subshell with stdin from ``/dev/null`` (so ``cd``, ``exit`` or
        a reader of stdin cannot disturb the session); stdout and stderr are both returned.

        Returns:
            The output (exact bytes decoded as UTF-8) and the exit status.
        """
        console = self._need_console()
        if not self._shell_ready:
            raise VMError("the guest shell is not ready; call wait_for_login() first")
        token = secrets.token_hex(8)
        begin, end = f"@@CVMCHAIN-BEGIN-{token}@@", f"@@CVMCHAIN-END-{token}-"
        script = (
            f"printf '%s\\n' '{begin}'\n"
            f"(\n{command}\n) </dev/null\n"
            "__cvmchain_rc=$?\n"
            f"printf '\\n%s%s@@\\n' '{end}' \"$__cvmchain_rc\"\n"
        )
        encoded = base64.b64encode(script.encode()).decode()
        if len(encoded) > MAX_COMMAND_BYTES:
            raise VMError(f"command too long for the console ({len(encoded)} bytes encoded)")
        console.send(f"eval \"$(printf %s '{encoded}' | base64 -d)\"\n".encode())
        self.expect(re.compile(re.escape(begin.encode()) + rb"\r?\n"), timeout=timeout)
        console.searchwindowsize = 256
        try:
            self.expect(re.compile(rb"\r?\n" + re.escape(end.encode()) + rb"(\d+)@@"),
                        timeout=timeout)
        finally:
            console.searchwindowsize = None
        before = console.before if isinstance(console.before, bytes) else b""
        status_match = console.match
        assert status_match is not None and not isinstance(status_match, type)
        status = int(status_match.group(1))
        return before.decode("utf-8", errors="replace"), status

    def check(self, command: str, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> str:
        """Like :meth:`run`, but raise :class:`GuestCommandError` on a non-zero status."""
        output, status = self.run(command, timeout)
        if status != 0:
            raise GuestCommandError(command, status, output)
        return output

    def read_file(self, path: str, timeout: float = 300.0) -> bytes:
        """Read a guest file (also from /sys or /proc) as base64 over the console.

        The content is checked against ``sha256sum`` computed in the guest.
        """
        quoted = shlex.quote(path)
        for _attempt in range(2):
            encoded = self.check(f"base64 -w 76 {quoted}", timeout)
            data = base64.b64decode("".join(encoded.split()))
            digest = self.check(f"sha256sum < {quoted}", timeout).split()[0]
            if hashlib.sha256(data).hexdigest() == digest:
                return data
        raise VMError(f"reading {path} over the console gave corrupted data twice",
                      self.console_tail())


@contextmanager
def boot_vm(
    image: Path,
    workdir: Path,
    console_log: Path,
    *,
    tpm: bool = True,
    tpm_device: str = "tpm-tis",
    pcr_banks: tuple[str, ...] | None = None,
    overlay: Path | None = None,
    login: bool = True,
    login_timeout: float = DEFAULT_LOGIN_TIMEOUT,
    **vm_kwargs: Any,
) -> Iterator[QemuVM]:
    """Boot ``image`` (through a fresh overlay unless ``overlay`` is given) and yield the VM.

    Args:
        image: the base qcow2 (never written).
        workdir: directory for the overlay, the OVMF variables, the swtpm state, the sockets.
        console_log: where the console transcript goes.
        tpm: attach a fresh swtpm.
        tpm_device: ``tpm-tis`` or ``tpm-crb``.
        pcr_banks: active PCR banks of the swtpm (default: libtpms' default allocation).
        overlay: an existing overlay to boot instead of creating one (e.g. after
            :func:`qemu_tests.guestfs_io.copy_into_guest`).
        login: wait for the autologin marker before yielding.
        login_timeout: seconds to wait for it.
        vm_kwargs: passed to :class:`QemuVM` (e.g. ``drives=[ReadOnlyDrive(path, serial)]``).

    On a clean exit the guest is powered off; on an error (or Ctrl-C) QEMU is killed. Either
    way QEMU and swtpm are gone afterwards.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    disk = overlay if overlay is not None else make_overlay(image, workdir / "disk.qcow2")
    swtpm = Swtpm(workdir / "swtpm", pcr_banks=pcr_banks) if tpm else None
    vm: QemuVM | None = None
    try:
        if swtpm is not None:
            swtpm.start()
        vm = QemuVM(disk, workdir, console_log, tpm=swtpm, tpm_device=tpm_device, **vm_kwargs)
        vm.start()
        if login:
            vm.wait_for_login(login_timeout)
        yield vm
        vm.shutdown()
    finally:
        if vm is not None:
            vm.kill()
        if swtpm is not None:
            swtpm.stop()
