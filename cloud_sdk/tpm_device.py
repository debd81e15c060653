"""Talk to a TPM 2.0: the kernel's character device or a swtpm command socket.

The bytes of every command and response come from :mod:`shared_spec.tpm2`;
this module only moves them. ``/dev/tpmrm0`` (the kernel resource manager,
preferred) and ``/dev/tpm0`` take one whole command per ``write()`` and give
one whole response per ``read()``. A swtpm started with ``--server
type=unixio,path=P`` (or ``type=tcp,port=N``) speaks raw TPM 2.0 commands on
that socket; its responses are read up to their ``responseSize``.

Transport failures raise :class:`~cloud_sdk.errors.BackendError` naming the
device and what is needed; a TPM that refuses a command raises
:class:`shared_spec.tpm2_rc.TpmResponseError`; a malformed response another
:class:`shared_spec.errors.SpecError`.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from types import TracebackType

from cloud_sdk.errors import BackendError
from shared_spec import tpm2
from shared_spec.errors import SpecError

DEFAULT_DEVICES = ("/dev/tpmrm0", "/dev/tpm0")

#: How often a command answered with TPM_RC_RETRY / YIELDED / TESTING is sent again.
RETRIES = 5
RETRY_DELAY_SECONDS = 0.05


def _access_hint(path: str) -> str:
    if os.path.basename(path).startswith("tpmrm"):
        return "needs group tss or root"
    return "needs user tss or root"


class TpmDevice:
    """One open TPM: ``with TpmDevice.open() as tpm: tpm.pcr_read(...)``.

    Build it with :meth:`open` (a device node), :meth:`unix_socket` or
    :meth:`tcp` (a swtpm command channel). ``name`` is what error messages
    call it.
    """

    def __init__(self, name: str, fd: int | None = None,
                 sock: socket.socket | None = None) -> None:
        if (fd is None) == (sock is None):
            raise ValueError("a TpmDevice has either a file descriptor or a socket")
        self.name = name
        self._fd = fd
        self._sock = sock

    # ----------------------------------------------------------- opening

    @classmethod
    def open(cls, path: str | None = None) -> TpmDevice:
        """Open ``path``, else ``/dev/tpmrm0``, else ``/dev/tpm0``."""
        if path is None:
            for candidate in DEFAULT_DEVICES:
                if os.path.exists(candidate):
                    path = candidate
                    break
            else:
                raise BackendError("no TPM: neither %s exists (no TPM, or its driver is not "
                                   "loaded)" % " nor ".join(DEFAULT_DEVICES))
        try:
            fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        except PermissionError:
            raise BackendError("open %s: permission denied (%s)" % (path, _access_hint(path))
                               ) from None
        except FileNotFoundError:
            raise BackendError("open %s: no such device (no TPM, or its driver is not loaded)"
                               % path) from None
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise BackendError("open %s: device busy (another program, e.g. tpm2-abrmd, "
                                   "holds it; use /dev/tpmrm0)" % path) from None
            raise BackendError("open %s: %s" % (path, e.strerror or e)) from None
        return cls(path, fd=fd)

    @classmethod
    def unix_socket(cls, path: str, timeout: float = 10.0) -> TpmDevice:
        """Connect to a swtpm command channel ``--server type=unixio,path=PATH``."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            raise BackendError("connect to swtpm socket %s: %s" % (path, e.strerror or e)
                               ) from None
        return cls("swtpm socket " + path, sock=sock)

    @classmethod
    def tcp(cls, host: str, port: int, timeout: float = 10.0) -> TpmDevice:
        """Connect to a swtpm command channel ``--server type=tcp,port=PORT``."""
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise BackendError("connect to swtpm %s:%d: %s" % (host, port, e.strerror or e)
                               ) from None
        return cls("swtpm %s:%d" % (host, port), sock=sock)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> TpmDevice:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------ moving bytes

    def transact(self, command: bytes) -> bytes:
        """Send one command, return its whole response (unchecked bytes)."""
        if self._fd is not None:
            return self._transact_fd(self._fd, command)
        if self._sock is not None:
            return self._transact_sock(self._sock, command)
        raise BackendError("%s is closed" % self.name)

    def _transact_fd(self, fd: int, command: bytes) -> bytes:
        try:
            n = os.write(fd, command)
        except OSError as e:
            raise BackendError("write to %s: %s" % (self.name, e.strerror or e)) from None
        if n != len(command):
            raise BackendError("write to %s: %d of %d bytes taken" % (self.name, n, len(command)))
        try:
            return os.read(fd, tpm2.MAX_RESPONSE_SIZE)
        except OSError as e:
            raise BackendError("read from %s: %s" % (self.name, e.strerror or e)) from None

    def _transact_sock(self, sock: socket.socket, command: bytes) -> bytes:
        try:
            sock.sendall(command)
            head = self._recv_exact(sock, tpm2.HEADER_SIZE)
            size = struct.unpack_from(">I", head, 2)[0]
            if size < tpm2.HEADER_SIZE or size > 1 << 20:
                raise BackendError("%s answered with responseSize %d" % (self.name, size))
            return head + self._recv_exact(sock, size - tpm2.HEADER_SIZE)
        except OSError as e:
            raise BackendError("%s: %s" % (self.name, e.strerror or e)) from None

    def _recv_exact(self, sock: socket.socket, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise BackendError("%s closed the connection after %d of %d bytes"
                                   % (self.name, len(buf), n))
            buf += chunk
        return bytes(buf)

    def command(self, command: bytes) -> bytes:
        """:meth:`transact`, sending again after TPM_RC_RETRY, TPM_RC_YIELDED or TPM_RC_TESTING."""
        for _ in range(RETRIES):
            resp = self.transact(command)
            try:
                rc = tpm2.parse_response_header(resp)[2]
            except SpecError:
                return resp  # the caller's parser reports it, located
            if not tpm2.decode_rc(rc).retryable:
                return resp
            time.sleep(RETRY_DELAY_SECONDS)
        return resp

    # ------------------------------------------------------------ commands

    def startup_clear(self) -> None:
        """TPM2_Startup(TPM_SU_CLEAR): only for a TPM that no firmware started (raw swtpm)."""
        tpm2.parse_startup_response(self.command(tpm2.startup_clear()))

    def pcr_banks(self) -> list[tuple[int, set[int]]]:
        """``[(alg, allocated PCRs)]`` of every bank the TPM implements."""
        return tpm2.parse_get_capability_pcrs(self.command(tpm2.get_capability_pcrs()))

    def get_active_banks(self) -> list[int]:
        """The TPM_ALG_IDs of the allocated PCR banks, in the TPM's order."""
        return tpm2.active_banks(self.pcr_banks())

    def pcr_read(self, pcrs: list[int], banks: list[int] | None = None
                 ) -> dict[int, dict[int, bytes]]:
        """``{alg: {pcr: value}}`` of ``pcrs`` in ``banks`` (default: every active bank).

        All values share one pcrUpdateCounter (see :func:`shared_spec.tpm2.read_pcrs`).
        """
        if banks is None:
            banks = self.get_active_banks()
        return tpm2.read_pcrs(self.command, [(alg, pcrs) for alg in banks])

    def pcr_extend(self, pcr: int, digests: dict[int, bytes] | list[tuple[int, bytes]]) -> None:
        """Extend ``pcr`` with every ``alg -> digest`` in one TPM2_PCR_Extend."""
        pairs = list(digests.items()) if isinstance(digests, dict) else list(digests)
        tpm2.parse_pcr_extend_response(self.command(tpm2.pcr_extend(pcr, pairs)))

    def get_random(self, count: int) -> bytes:
        """Up to ``count`` random bytes from the TPM (at most 64 per call in practice)."""
        return tpm2.parse_get_random_response(self.command(tpm2.get_random(count)))
