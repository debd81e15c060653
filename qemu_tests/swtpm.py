"""A software TPM 2.0 (swtpm) for one VM, as a context manager.

The TPM is started without ``--flags startup-clear``: OVMF sends ``TPM2_Startup`` itself (and
measures into the PCRs afterwards), and a second Startup would fail. QEMU connects through
the control socket (``-tpmdev emulator``) and sends the power-on ``CMD_INIT``; ``--terminate``
ends swtpm when QEMU closes that connection. The process is also killed on exit, on errors,
and by ``atexit`` as a last resort.

A TPM can be manufactured with endorsement key certificates, as a vendor does
(:func:`manufacture` with an :class:`EkCa`): ``swtpm_setup --create-ek-cert`` makes the
RSA 2048 and ECC P-384 EKs and stores their certificates in NV (0x01C00002, 0x01C00016),
signed by a private ``swtpm_localca`` CA (a root and an intermediate, made on first use in
the CA's directory, never the system's ``/var/lib/swtpm-localca``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .errors import CommandError, VMError, tail
from .procs import kill_group, run_command, set_parent_death_signal, track, untrack

__all__ = ["EkCa", "Swtpm", "manufacture"]

SOCKET_WAIT_SECONDS = 10.0
#: where :func:`manufacture` writes the EK certificates (DER, ``ek-rsa2048.crt``,
#: ``ek-secp384r1.crt``) that it also stores in the TPM's NV, inside the state directory
EK_CERT_DIR = "ek-certs"


@dataclass(frozen=True)
class EkCa:
    """A private ``swtpm_localca`` certificate authority that signs EK certificates.

    ``directory`` holds its configuration and, once :func:`manufacture` has used it, its
    keys, the self-signed root (:attr:`root_cert`) and the intermediate that signs the EK
    certificates (:attr:`issuer_cert`). One CA can serve any number of TPMs.
    """

    directory: Path

    @property
    def root_cert(self) -> Path:
        """The self-signed root certificate (PEM)."""
        return self.directory / "swtpm-localca-rootca-cert.pem"

    @property
    def issuer_cert(self) -> Path:
        """The intermediate certificate that signs the EK certificates (PEM)."""
        return self.directory / "issuercert.pem"

    def bundle(self) -> bytes:
        """The intermediate and the root, PEM: what a verifier passes as ``--ek-ca``.

        Raises:
            VMError: the CA has signed nothing yet (no certificates in its directory).
        """
        try:
            return self.issuer_cert.read_bytes() + self.root_cert.read_bytes()
        except OSError as e:
            raise VMError(f"EK CA {self.directory}: no certificates yet ({e.strerror or e}); "
                          "manufacture a TPM with it first") from None

    def setup_config(self) -> Path:
        """Write the ``swtpm_setup`` and ``swtpm_localca`` configuration files (idempotent)
        and return the one ``swtpm_setup --config`` takes."""
        self.directory.mkdir(parents=True, exist_ok=True)
        d = self.directory.resolve()
        localca = d / "swtpm-localca.conf"
        localca.write_text(f"statedir = {d}\nsigningkey = {d}/signkey.pem\n"
                           f"issuercert = {d}/issuercert.pem\ncertserial = {d}/certserial\n")
        tool = shutil.which("swtpm_localca")
        if tool is None:
            raise CommandError("swtpm_localca is not installed (Debian package swtpm-tools)",
                               ["swtpm_localca"])
        setup = d / "swtpm_setup.conf"
        setup.write_text(f"create_certs_tool = {tool}\ncreate_certs_tool_config = {localca}\n")
        return setup


def manufacture(state_dir: Path, pcr_banks: tuple[str, ...] | None = None,
                ek_ca: EkCa | None = None) -> None:
    """Manufacture a TPM 2.0 in ``state_dir`` with ``swtpm_setup`` (any old state is replaced).

    Args:
        state_dir: the swtpm state directory (created if absent).
        pcr_banks: banks to activate; ``None`` leaves every bank libtpms allocates active,
            as an unmanufactured swtpm has them.
        ek_ca: also create the EKs and store their certificates, signed by this CA, in NV;
            copies go to ``state_dir/ek-certs`` (DER).

    Raises:
        CommandError: ``swtpm_setup`` (or the CA tool) failed; the message has its output.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = ["swtpm_setup", "--tpm2", "--tpmstate", str(state_dir), "--overwrite",
            "--pcr-banks", ",".join(pcr_banks) if pcr_banks else "-"]
    what = "swtpm_setup (allocating PCR banks)"
    if ek_ca is not None:
        certs = state_dir / EK_CERT_DIR
        certs.mkdir(exist_ok=True)
        argv += ["--config", str(ek_ca.setup_config()), "--create-ek-cert",
                 "--write-ek-cert-files", str(certs)]
        what = f"swtpm_setup (EK certificates by the CA in {ek_ca.directory})"
    run_command(argv, what=what, timeout=120)


class Swtpm:
    """A ``swtpm socket --tpm2`` with its state in ``state_dir``.

    Args:
        state_dir: directory for the TPM state, the control socket and ``swtpm.log``; a VM
            that reboots with the same directory keeps its TPM (NV, seeds), like hardware.
        pcr_banks: if given (e.g. ``("sha256", "sha384")``), the TPM is first manufactured
            with ``swtpm_setup --pcr-banks`` so exactly these banks are active; otherwise
            libtpms' defaults apply.
        ek_ca: if given, the TPM is first manufactured with EK certificates signed by this
            CA (:func:`manufacture`); with ``pcr_banks`` unset every bank stays active.

    Without either option a state already in ``state_dir`` (e.g. from :func:`manufacture`)
    is used as it is, and an empty one is manufactured by swtpm itself on first start.
    """

    def __init__(self, state_dir: Path, pcr_banks: tuple[str, ...] | None = None,
                 ek_ca: EkCa | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.pcr_banks = pcr_banks
        self.ek_ca = ek_ca
        self.socket_path = self.state_dir / "swtpm-ctrl.sock"
        self.log_path = self.state_dir / "swtpm.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Swtpm:
        """Start swtpm and wait until its control socket exists."""
        if self._proc is not None:
            raise VMError("swtpm already started")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.pcr_banks or self.ek_ca is not None:
            manufacture(self.state_dir, self.pcr_banks, self.ek_ca)
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
