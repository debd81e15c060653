"""A software TPM 2.0 (swtpm) for one VM, as a context manager.

The TPM is started without ``--flags startup-clear``: OVMF sends ``TPM2_Startup`` itself (and
measures into the PCRs afterwards), and a second Startup would fail. QEMU connects through
the control socket (``-tpmdev emulator``) and sends the power-on ``CMD_INIT``; ``--terminate``
ends swtpm when QEMU closes that connection. The process is also killed on exit, on errors,
and by ``atexit`` as a last resort.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

from .errors import CommandError, VMError, tail
from .procs import kill_group, run_command, set_parent_death_signal, track, untrack

SOCKET_WAIT_SECONDS = 10.0


class Swtpm:
    """A ``swtpm socket --tpm2`` with its state in ``state_dir``.

    Args:
        state_dir: directory for the TPM state, the control socket and ``swtpm.log``; a VM
            that reboots with the same directory keeps its TPM (NV, seeds), like hardware.
        pcr_banks: if given (e.g. ``("sha256", "sha384")``), the TPM is first manufactured
            with ``swtpm_setup --pcr-banks`` so exactly these banks are active; otherwise
            libtpms' defaults apply.
    """

    def __init__(self, state_dir: Path, pcr_banks: tuple[str, ...] | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.pcr_banks = pcr_banks
        self.socket_path = self.state_dir / "swtpm-ctrl.sock"
        self.log_path = self.state_dir / "swtpm.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Swtpm:
        """Start swtpm and wait until its control socket exists."""
        if self._proc is not None:
            raise VMError("swtpm already started")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.pcr_banks:
            self._manufacture()
        self.socket_path.unlink(missing_ok=True)
        argv = [
            "swtpm", "socket", "--tpm2",
            "--tpmstate", f"dir={self.state_dir}",
            "--ctrl", f"type=unixio,path={self.socket_path}",
            "--log", f"file={self.log_path},level=5",
            "--terminate",
        ]
        if shutil.which("swtpm") is None:
            raise CommandError("swtpm is not installed (Debian package swtpm)", argv)
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=set_parent_death_signal,
        )
        track(self._proc.pid)
        deadline = time.monotonic() + SOCKET_WAIT_SECONDS
        while not self.socket_path.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                err = self._proc.stderr.read() if self._proc.stderr else b""
                self.stop()
                raise CommandError("swtpm did not create its control socket", argv,
                                   self._proc.returncode, tail(err) or self.log_tail())
            time.sleep(0.02)
        return self

    def _manufacture(self) -> None:
        run_command(
            ["swtpm_setup", "--tpm2", "--tpmstate", str(self.state_dir), "--overwrite",
             "--pcr-banks", ",".join(self.pcr_banks or ())],
            what="swtpm_setup (allocating PCR banks)",
        )

    @property
    def pid(self) -> int | None:
        """The swtpm process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def qemu_args(self, device: str = "tpm-tis") -> list[str]:
        """QEMU arguments that attach this TPM as ``device`` (``tpm-tis`` or ``tpm-crb``)."""
        if device not in ("tpm-tis", "tpm-crb"):
            raise VMError(f"unknown TPM device model {device!r} (tpm-tis or tpm-crb)")
        return [
            "-chardev", f"socket,id=chrtpm,path={self.socket_path}",
            "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
            "-device", f"{device},tpmdev=tpm0",
        ]

    def log_tail(self, lines: int = 20) -> str:
        """The end of swtpm's log file."""
        try:
            return tail(self.log_path.read_bytes(), lines)
        except OSError:
            return ""

    def stop(self, grace: float = 3.0) -> None:
        """Stop swtpm (it normally exits by itself when QEMU does)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.wait(timeout=grace if proc.poll() is None else 0)
        except subprocess.TimeoutExpired:
            pass
        kill_group(proc.pid)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
        untrack(proc.pid)

    def __enter__(self) -> Swtpm:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
