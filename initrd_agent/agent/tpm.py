"""The TPM root of trust: one PCR, every active bank extended in one command.

:class:`TpmBackend` speaks TPM 2.0 commands (marshalled by
``shared_spec.tpm2``) over a *transport*: any object with ``write(cmd)`` and
``read() -> bytes`` (one whole response). Transports:

- :class:`DeviceTransport`: the kernel's character device (``/dev/tpmrm0``,
  else ``/dev/tpm0``): one ``write(2)`` per command, one ``read(2)`` per
  response. This is what runs in a guest.
- :class:`UnixSocketTransport`: TEST TRANSPORT. A swtpm started with
  ``--server type=unixio,path=P`` takes raw TPM commands on a unix socket;
  when ``tpm_device`` names a socket the agent uses this, so host tests can
  extend a real software TPM. A guest's /dev never holds such a socket.

:class:`TpmRoot` reads the old value, extends, reads the new value, and
checks new == H(old || digest) in every bank.

This module imports ``libc`` (MicroPython ffi) only when a transport opens,
so it also loads on CPython (the shared vectors drive it with a simulated
transport).
"""

import struct

from shared_spec import tpm2
from shared_spec.algorithms import alg_name
from shared_spec.errors import SpecError


class TpmError(Exception):
    """The TPM could not be reached or did not do what it was asked."""


class DeviceTransport:
    """A TPM character device (``/dev/tpmrm0``): one write, one read per command."""

    def __init__(self, path):
        import libc

        self._libc = libc
        self.path = path
        self.fd = libc.open_(libc.z(path), libc.O_RDWR | libc.O_CLOEXEC, 0)
        if self.fd < 0:
            raise TpmError("cannot open %s: %s" % (path, libc.describe(libc.errno())))
        self.buf = bytearray(4096)

    def write(self, cmd):
        n = self._libc.write(self.fd, cmd, len(cmd))
        if n != len(cmd):
            raise TpmError("write to %s failed: %s" % (self.path,
                                                       self._libc.describe(self._libc.errno())))

    def read(self):
        n = self._libc.read(self.fd, self.buf, len(self.buf))
        if n < 0:
            raise TpmError("read from %s failed: %s" % (self.path,
                                                        self._libc.describe(self._libc.errno())))
        return bytes(self.buf[:n])

    def close(self):
        if self.fd >= 0:
            self._libc.close(self.fd)
            self.fd = -1


class UnixSocketTransport:
    """TEST TRANSPORT: raw TPM commands over a unix stream socket (swtpm ``unixio``)."""

    def __init__(self, path):
        import socket

        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr = path.encode() if isinstance(path, str) else path
        try:
            # MicroPython takes a raw sockaddr_un; CPython the path itself
            try:
                self.sock.connect(struct.pack("<H", socket.AF_UNIX) + addr + b"\0")
            except TypeError:
                self.sock.connect(path)
        except OSError as e:
            raise TpmError("cannot connect to the test TPM socket %s: %s" % (path, e)) from None

    def _recv(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise TpmError("test TPM socket %s closed mid-response" % self.path)
            out += chunk
        return out

    def write(self, cmd):
        sent = 0
        while sent < len(cmd):
            sent += self.sock.send(cmd[sent:])

    def read(self):
        head = self._recv(10)
        size = struct.unpack(">I", head[2:6])[0]
        if size < 10 or size > 65536:
            raise TpmError("test TPM socket %s: response size %d" % (self.path, size))
        return head + self._recv(size - 10)

    def close(self):
        self.sock.close()


def open_transport(path):
    """The transport for ``path``: a unix socket (tests) or a TPM character device."""
    import os

    try:
        mode = os.stat(path)[0]
    except OSError:
        raise TpmError("%s does not exist" % path) from None
    if mode & 0o170000 == 0o140000:
        return UnixSocketTransport(path)
    return DeviceTransport(path)


class TpmBackend:
    """TPM 2.0 commands over a transport; TPM error codes become :class:`TpmError`."""

    def __init__(self, transport, name):
        self.transport = transport
        self.name = name

    def _transact(self, cmd):
        self.transport.write(cmd)
        return self.transport.read()

    def active_banks(self):
        """[alg]: the banks that have any PCR allocated (GetCapability(TPM_CAP_PCRS))."""
        try:
            sel = tpm2.parse_get_capability_pcrs(self._transact(tpm2.get_capability_pcrs()))
        except SpecError as e:
            raise TpmError("%s: %s" % (self.name, e)) from None
        return [alg for alg, pcrs in sel if pcrs]

    def read(self, pcr, banks):
        """{alg: value} of ``pcr`` in ``banks`` (PCR_Read)."""
        try:
            values = tpm2.parse_pcr_read(self._transact(tpm2.pcr_read(banks, [pcr])))
        except SpecError as e:
            raise TpmError("%s: %s" % (self.name, e)) from None
        out = {}
        for alg in banks:
            v = values.get(alg, {}).get(pcr)
            if v is None:
                raise TpmError("%s: PCR_Read returned no %s value for PCR %d"
                               % (self.name, alg_name(alg), pcr))
            out[alg] = v
        return out

    def extend(self, pcr, digests):
        """PCR_Extend of [(alg, digest)] in one command (empty password session)."""
        try:
            tpm2.check_response(self._transact(tpm2.pcr_extend(pcr, digests)),
                                "TPM2_PCR_Extend")
        except SpecError as e:
            raise TpmError("%s: %s" % (self.name, e)) from None


class TpmRoot:
    """PCR ``tpm_pcr`` of the vTPM: every active bank, logged to ``tpm.log``."""

    log_name = "tpm.log"
    header_index = 0

    def __init__(self, conf, transport_factory=open_transport):
        self.index = int(conf["tpm_pcr"])
        self.devices = [conf["tpm_device"]]
        if conf["tpm_device"] == "/dev/tpmrm0":
            self.devices.append("/dev/tpm0")
        self.label = "PCR %d" % self.index
        self.algorithms = []
        self.device = None
        self.backend = None
        self.log = None
        self._factory = transport_factory

    def where(self):
        return ", ".join(self.devices)

    def probe(self):
        import os

        for d in self.devices:
            try:
                os.stat(d)
            except OSError:
                continue
            self.device = d
            return True
        return False

    def open(self, hashes):
        """Connect and learn the active banks; every bank must be one ``hashes`` supports."""
        self.backend = TpmBackend(self._factory(self.device), self.device)
        banks = self.backend.active_banks()
        if not banks:
            raise TpmError("%s reports no active PCR bank" % self.device)
        for alg in banks:
            if not hashes.supports(alg):
                raise TpmError("%s has an active %s bank this agent cannot hash"
                               % (self.device, alg_name(alg)))
        self.algorithms = banks

    def initial_values(self):
        return []

    def extend(self, digests, hashes):
        """Read, extend all banks at once, read again: new == H(old || digest) per bank."""
        banks = [alg for alg, _ in digests]
        before = self.backend.read(self.index, banks)
        self.backend.extend(self.index, digests)
        after = self.backend.read(self.index, banks)
        for alg, d in digests:
            if after[alg] != hashes.extend(alg, before[alg], d):
                raise TpmError("PCR %d %s bank did not take the extend (%s)"
                               % (self.index, alg_name(alg), self.device))
