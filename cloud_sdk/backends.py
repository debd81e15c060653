"""Where live registers, firmware logs and quotes come from: TDX, a TPM, or a saved bundle.

A :class:`Backend` answers four questions the same way whatever the root of
trust: which register convention it uses (``index_kind``), which banks it has,
what the registers hold now, and which firmware log(s) account for them. TDX
also signs a quote.

Register indexes follow DESIGN.md everywhere: TDX registers are CC MR indexes
(0 = MRTD, 1..4 = RTMR0..RTMR3), TPM registers are PCR numbers.

Real kernel interfaces, all relative to a ``root`` directory (``/`` on a live
system; tests point it at a prepared tree):

================================================================  ==========================
``sys/devices/virtual/misc/tdx_guest/measurements/<mr>:sha384``   TDX MRs (Linux 6.16+,
                                                                  ``tsm-mr``; also reached
                                                                  as ``sys/class/misc/...``)
``dev/tdx_guest``                                                 TDREPORT via the
                                                                  ``TDX_CMD_GET_REPORT0`` ioctl
``sys/kernel/config/tsm/report/<entry>/{inblob,outblob,generation,provider}``  quotes
``sys/firmware/acpi/tables/CCEL``, ``.../tables/data/CCEL``       CCEL table and log area
``dev/tpmrm0`` (else ``dev/tpm0``), or a swtpm unix socket        TPM
``sys/kernel/security/tpm0/binary_bios_measurements``             TPM firmware log
================================================================  ==========================

Every failure is a :class:`~cloud_sdk.errors.BackendError` whose message names
the file and, for permissions, what is needed.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from cloud_sdk.errors import BackendError, CvmchainError
from cloud_sdk.evidence import Evidence
from cloud_sdk.sysfs import read_file
from cloud_sdk.tpm_device import TpmDevice
from cloud_sdk.tsm_registers import TsmRegisters
from shared_spec import tdx_report
from shared_spec.algorithms import ALG_SHA256, ALG_SHA384, alg_name
from shared_spec.errors import SpecError
from shared_spec.registers import INDEX_CC_MR, INDEX_PCR
from shared_spec.tdx_quote import parse_quote

# ---------------------------------------------------------------- kernel paths (under a root)

TDX_MEASUREMENTS = "sys/devices/virtual/misc/tdx_guest/measurements"
TDX_MEASUREMENTS_CLASS = "sys/class/misc/tdx_guest/measurements"
TDX_DEVICE = "dev/tdx_guest"
TSM_REPORT = "sys/kernel/config/tsm/report"
CCEL_TABLE = "sys/firmware/acpi/tables/CCEL"
CCEL_DATA = "sys/firmware/acpi/tables/data/CCEL"
TPM_DEVICES = ("dev/tpmrm0", "dev/tpm0")
TPM_EVENTLOG = "sys/kernel/security/tpm0/binary_bios_measurements"

#: CC MR indexes of a TDX guest: 0 = MRTD, 1..4 = RTMR0..RTMR3
TDX_CC_MR_COUNT = 5
#: PCRs of a PC Client TPM
TPM_PCR_COUNT = 24

BACKEND_NAMES = ("tdx", "tpm", "offline")

IoctlFn = Callable[[int, int, bytearray], object]


@dataclass
class Blob:
    """Bytes read from a file, with the path they came from."""

    data: bytes
    source: str


@dataclass
class AttestationReport:
    """A signed (TDX quote) or local (TDREPORT) report binding ``report_data``."""

    kind: str  # "tdx-quote" or "tdreport"
    data: bytes
    report_data: bytes
    source: str
    provider: str = ""
    generation: int | None = None


@runtime_checkable
class Backend(Protocol):
    """A root of trust as seen from inside the machine (or from a saved bundle)."""

    @property
    def name(self) -> str:
        """"tdx", "tpm" or "offline"."""
        ...

    @property
    def index_kind(self) -> str:
        """"cc_mr" (TDX: 0 = MRTD, 1..4 = RTMR0..3) or "pcr" (TPM PCR numbers)."""
        ...

    @property
    def root(self) -> Path | None:
        """The directory under which OS files (/run, /sys, /proc) are read; None offline."""
        ...

    def algorithms(self) -> list[int]:
        """TPM_ALG_IDs of the register banks, default first."""
        ...

    def register_count(self) -> int:
        """How many registers there are (indexes 0 .. count-1)."""
        ...

    def read_registers(self) -> dict[int, dict[int, bytes]]:
        """``{index: {alg: value}}`` of every register in every bank, read now."""
        ...

    def firmware_blobs(self) -> dict[str, Blob]:
        """The firmware's event log(s), as evidence blob name -> :class:`Blob`."""
        ...

    def get_report(self, report_data: bytes) -> AttestationReport:
        """A report binding 64 bytes of ``report_data``; BackendError where there is none."""
        ...


# ---------------------------------------------------------------- file helpers


def read_optional(path: Path, what: str) -> Blob | None:
    """:func:`read_file`, or None when the file does not exist."""
    if not path.exists():
        return None
    return Blob(read_file(path, what), str(path))


def report_data_for(nonce: bytes | None = None, data: bytes | None = None) -> bytes:
    """The 64 bytes of REPORTDATA that bind ``nonce`` and ``data``: SHA-512(nonce || data).

    This is the CC Trusted API's rule; ``cvmchain quote verify --nonce`` accepts
    it. With neither, 64 zero bytes (a quote that binds no freshness).
    """
    if nonce is None and data is None:
        return bytes(tdx_report.REPORTDATA_SIZE)
    return hashlib.sha512((nonce or b"") + (data or b"")).digest()


def _check_report_data(report_data: bytes) -> bytes:
    if len(report_data) != tdx_report.REPORTDATA_SIZE:
        raise BackendError("report data must be %d bytes, got %d"
                           % (tdx_report.REPORTDATA_SIZE, len(report_data)))
    return bytes(report_data)


# ---------------------------------------------------------------- configfs-tsm


class ConcurrentReportError(BackendError):
    """Another writer used the configfs-tsm report entry while we did."""


def _generation(entry: Path) -> int:
    text = read_file(entry / "generation", "the report generation").decode("ascii", "replace")
    try:
        return int(text.strip())
    except ValueError:
        raise BackendError("%s/generation: %r is not a number" % (entry, text)) from None


def configfs_report(report_root: Path, report_data: bytes, entry_name: str | None = None
                    ) -> AttestationReport:
    """A quote from configfs-tsm (``Documentation/ABI/testing/configfs-tsm``).

    Without ``entry_name`` a private entry is created under ``report_root``
    and removed afterwards (needs root). With it, an existing entry is used,
    for example one an administrator created and handed to an unprivileged
    user. Either way ``generation`` is read before ``inblob`` is written and
    again after ``outblob`` is read: the kernel counts every write, so any
    value but one more means another writer interfered and
    :class:`ConcurrentReportError` is raised instead of returning its quote.
    """
    _check_report_data(report_data)
    if not report_root.is_dir():
        raise BackendError("%s is absent: no configfs-tsm (mount configfs on "
                           "/sys/kernel/config; Linux 6.7+ with a TSM report provider)"
                           % report_root)
    created = entry_name is None
    entry = report_root / (entry_name or "cvmchain-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8]))
    if created:
        try:
            entry.mkdir()
        except PermissionError as e:
            raise BackendError("%s: permission denied creating a report entry (needs root, "
                               "or an existing entry given by name)" % entry) from e
        except OSError as e:
            raise BackendError("%s: cannot create a report entry: %s"
                               % (entry, e.strerror or e)) from e
    elif not entry.is_dir():
        raise BackendError("%s: no such configfs-tsm report entry" % entry)
    try:
        before = _generation(entry)
        try:
            with open(entry / "inblob", "wb") as f:
                f.write(report_data)
        except PermissionError as e:
            raise BackendError("%s/inblob: permission denied (needs root or write access to "
                               "the entry)" % entry) from e
        except OSError as e:
            raise BackendError("%s/inblob: %s" % (entry, e.strerror or e)) from e
        outblob = read_file(entry / "outblob", "the report (outblob)")
        after = _generation(entry)
        if after != before + 1:
            raise ConcurrentReportError(
                "%s: generation went from %d to %d around our one write: another writer "
                "used this entry; ask again" % (entry, before, after))
        provider_path = entry / "provider"
        provider = (read_file(provider_path, "the provider").decode("ascii", "replace").strip()
                    if provider_path.exists() else "")
        return AttestationReport("tdx-quote", outblob, bytes(report_data), str(entry / "outblob"),
                                 provider, after)
    finally:
        if created:
            for _ in range(3):
                try:
                    entry.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


# ---------------------------------------------------------------- TDX


def get_tdreport(device: Path, report_data: bytes, ioctl: IoctlFn = fcntl.ioctl) -> bytes:
    """TDREPORT_STRUCT (1024 bytes) through ``TDX_CMD_GET_REPORT0`` on ``device``."""
    _check_report_data(report_data)
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except PermissionError:
        raise BackendError("open %s: permission denied (needs root)" % device) from None
    except FileNotFoundError:
        raise BackendError("open %s: no such device (not a TDX guest, or the tdx_guest "
                           "driver is not loaded)" % device) from None
    except OSError as e:
        raise BackendError("open %s: %s" % (device, e.strerror or e)) from None
    try:
        buf = bytearray(report_data) + bytearray(tdx_report.TDREPORT_SIZE)
        try:
            ioctl(fd, tdx_report.TDX_CMD_GET_REPORT0, buf)
        except OSError as e:
            hint = " (not the tdx_guest device)" if e.errno == errno.ENOTTY else ""
            raise BackendError("%s: TDX_CMD_GET_REPORT0 failed: %s%s"
                               % (device, e.strerror or e, hint)) from None
    finally:
        os.close(fd)
    return bytes(buf[tdx_report.REPORTDATA_SIZE:])


@dataclass
class TdxBackend:
    """Intel TDX: MRTD and RTMRs, the CCEL, quotes.

    Registers come from the kernel's measurement-register files when the
    kernel has them, else from a TDREPORT (``ioctl`` is the system call,
    replaceable for tests). ``tsm_entry`` names an existing configfs-tsm
    report entry to use instead of creating one. ``measurements`` names
    another TSM measurement-register directory to read instead of the
    ``tdx_guest`` one (under ``root``), e.g. the kernel's ``tsm_mr_sample``
    provider ``/sys/class/misc/tsm_mr_sample/measurements``.
    """

    root: Path = Path("/")
    tsm_entry: str | None = None
    measurements: str | Path | None = None
    ioctl: IoctlFn = fcntl.ioctl
    name: str = field(default="tdx", init=False)
    index_kind: str = field(default=INDEX_CC_MR, init=False)
    #: the TDREPORT the registers were last read from (None when from sysfs)
    last_tdreport: bytes | None = field(default=None, init=False, repr=False)

    @property
    def measurements_dir(self) -> Path | None:
        """The TSM measurement-register directory, when the kernel exposes it."""
        if self.measurements is not None:
            p = self.root / str(self.measurements).lstrip("/")
            return p if p.is_dir() else None
        for rel in (TDX_MEASUREMENTS, TDX_MEASUREMENTS_CLASS):
            p = self.root / rel
            if p.is_dir():
                return p
        return None

    @property
    def device(self) -> Path:
        return self.root / TDX_DEVICE

    def available(self) -> bool:
        return self.measurements_dir is not None or self.device.exists()

    def algorithms(self) -> list[int]:
        return [ALG_SHA384]

    def register_count(self) -> int:
        return TDX_CC_MR_COUNT

    def read_registers(self) -> dict[int, dict[int, bytes]]:
        """CC MR 0..4 (MRTD, RTMR0..3), SHA-384."""
        mdir = self.measurements_dir
        if mdir is not None:
            regs = TsmRegisters(directory=mdir).read_all()
            if not regs:
                raise BackendError("%s: no mrtd:sha384 or rtmr<n>:sha384 files" % mdir)
            self.last_tdreport = None
            return regs
        if not self.device.exists():
            raise BackendError("no TDX registers: neither %s nor %s exists (not a TDX guest, "
                               "or the tdx_guest driver is not loaded)"
                               % (self.root / TDX_MEASUREMENTS, self.device))
        raw = get_tdreport(self.device, bytes(tdx_report.REPORTDATA_SIZE), self.ioctl)
        try:
            rep = tdx_report.parse_tdreport(raw, source=str(self.device))
        except SpecError as e:
            raise BackendError("%s: the TDREPORT is malformed: %s" % (self.device, e.located())
                               ) from e
        self.last_tdreport = raw
        out = {0: {ALG_SHA384: bytes(rep.mrtd)}}
        for n, value in enumerate(rep.rtmrs):
            out[n + 1] = {ALG_SHA384: bytes(value)}
        return out

    def firmware_blobs(self) -> dict[str, Blob]:
        out: dict[str, Blob] = {}
        table = read_optional(self.root / CCEL_TABLE, "the ACPI CCEL table")
        data = read_optional(self.root / CCEL_DATA, "the CCEL log area")
        if table is not None:
            out["ccel_table"] = table
        if data is not None:
            out["ccel_data"] = data
        return out

    def get_report(self, report_data: bytes) -> AttestationReport:
        """A TDX quote through configfs-tsm; its body must carry ``report_data``."""
        rep = configfs_report(self.root / TSM_REPORT, report_data, self.tsm_entry)
        try:
            quote = parse_quote(rep.data, source=rep.source)
        except SpecError as e:
            raise BackendError("%s: not a TDX quote (provider %r): %s"
                               % (rep.source, rep.provider, e.located())) from e
        if bytes(quote.body.report_data) != rep.report_data:
            raise BackendError("%s: the quote's REPORTDATA is not the one written to inblob"
                               % rep.source)
        return rep

    def get_tdreport(self, report_data: bytes) -> AttestationReport:
        """A TDREPORT (MAC'd for this platform only, not remotely verifiable)."""
        raw = get_tdreport(self.device, report_data, self.ioctl)
        return AttestationReport("tdreport", raw, bytes(report_data), str(self.device))


# ---------------------------------------------------------------- TPM


class SocketPerCommand(TpmDevice):
    """A swtpm command socket, connected for each command (swtpm serves one client)."""

    def __init__(self, path: str) -> None:  # no super(): there is no descriptor to keep
        self.name = "swtpm socket " + path
        self._fd = None
        self._sock = None
        self._path = path

    def transact(self, command: bytes) -> bytes:
        with TpmDevice.unix_socket(self._path) as dev:
            return dev.transact(command)

    def close(self) -> None:
        return None


def open_tpm(path: str | Path) -> TpmDevice:
    """A TPM device node, or a swtpm unix command socket (connected per command)."""
    p = str(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise BackendError("open %s: no such device (no TPM, or its driver is not loaded)"
                           % p) from None
    except OSError as e:
        raise BackendError("open %s: %s" % (p, e.strerror or e)) from None
    if stat.S_ISSOCK(mode):
        return SocketPerCommand(p)
    return TpmDevice.open(p)


@dataclass
class TpmBackend:
    """A TPM 2.0 (or vTPM): every PCR of every active bank, and the firmware log.

    ``device`` is a device node or a swtpm socket; by default ``dev/tpmrm0``,
    else ``dev/tpm0`` under ``root``. ``opener`` overrides how it is opened.
    """

    root: Path = Path("/")
    device: str | None = None
    opener: Callable[[], TpmDevice] | None = None
    name: str = field(default="tpm", init=False)
    index_kind: str = field(default=INDEX_PCR, init=False)

    def _device_path(self) -> str:
        if self.device is not None:
            return self.device
        for rel in TPM_DEVICES:
            p = self.root / rel
            if p.exists():
                return str(p)
        raise BackendError("no TPM: neither %s exists (no TPM, or its driver is not loaded)"
                           % " nor ".join(str(self.root / r) for r in TPM_DEVICES))

    def available(self) -> bool:
        if self.opener is not None or self.device is not None:
            return True
        return any((self.root / rel).exists() for rel in TPM_DEVICES)

    def _open(self) -> TpmDevice:
        if self.opener is not None:
            return self.opener()
        return open_tpm(self._device_path())

    def _run(self, fn: Callable[[TpmDevice], object]) -> object:
        dev = self._open()
        try:
            return fn(dev)
        except SpecError as e:
            raise BackendError("%s: %s" % (dev.name, e.located())) from e
        finally:
            dev.close()

    def algorithms(self) -> list[int]:
        """Active banks; SHA-256 first when present (the cc-api default for a TPM)."""
        banks = self._run(lambda d: d.get_active_banks())
        assert isinstance(banks, list)
        return sorted(banks, key=lambda a: (a != ALG_SHA256, banks.index(a)))

    def register_count(self) -> int:
        return TPM_PCR_COUNT

    def read_registers(self) -> dict[int, dict[int, bytes]]:
        """PCR 0..23 of every active bank, read with one pcrUpdateCounter."""
        by_alg = self._run(lambda d: d.pcr_read(list(range(TPM_PCR_COUNT))))
        assert isinstance(by_alg, dict)
        out: dict[int, dict[int, bytes]] = {}
        for alg, pcrs in by_alg.items():
            for pcr, value in pcrs.items():
                out.setdefault(pcr, {})[alg] = value
        return out

    def firmware_blobs(self) -> dict[str, Blob]:
        log = read_optional(self.root / TPM_EVENTLOG, "the TPM firmware event log")
        return {} if log is None else {"tpm_eventlog": log}

    def get_report(self, report_data: bytes) -> AttestationReport:
        raise BackendError("TPM quotes need an attestation key, which this backend does not "
                           "manage (use tpm2_quote); registers and logs are still collected")


# ---------------------------------------------------------------- offline


@dataclass
class OfflineBackend:
    """A saved evidence bundle, answering as the machine it was collected on did."""

    evidence: Evidence
    source: str = "<bundle>"
    root: Path | None = field(default=None, init=False)
    name: str = field(default="offline", init=False)
    index_kind: str = field(default=INDEX_PCR, init=False)

    def __post_init__(self) -> None:
        if (self.evidence.registers.get(INDEX_CC_MR)
                or self.evidence.blob("ccel_data") is not None):
            self.index_kind = INDEX_CC_MR

    @classmethod
    def load(cls, path: str | Path) -> OfflineBackend:
        try:
            return cls(Evidence.load(path), str(path))
        except CvmchainError as e:
            raise BackendError(str(e)) from e

    def algorithms(self) -> list[int]:
        algs: dict[int, bool] = {}
        for banks in self.evidence.registers.get(self.index_kind, {}).values():
            for alg in banks:
                algs[alg] = True
        order = ALG_SHA384 if self.index_kind == INDEX_CC_MR else ALG_SHA256
        return sorted(algs, key=lambda a: (a != order, a))

    def register_count(self) -> int:
        return TDX_CC_MR_COUNT if self.index_kind == INDEX_CC_MR else TPM_PCR_COUNT

    def read_registers(self) -> dict[int, dict[int, bytes]]:
        return {i: dict(b) for i, b in self.evidence.registers.get(self.index_kind, {}).items()}

    def firmware_blobs(self) -> dict[str, Blob]:
        names = ("ccel_table", "ccel_data") if self.index_kind == INDEX_CC_MR \
            else ("tpm_eventlog",)
        return {n: Blob(self.evidence.blobs[n], self.evidence.sources.get(n, self.source))
                for n in names if n in self.evidence.blobs}

    def get_report(self, report_data: bytes) -> AttestationReport:
        """The bundle's quote, only when it binds exactly ``report_data``."""
        _check_report_data(report_data)
        raw = self.evidence.blob("quote")
        if raw is None:
            raise BackendError("%s: the bundle holds no quote" % self.source)
        try:
            have = bytes(parse_quote(raw, source=self.source).body.report_data)
        except SpecError as e:
            raise BackendError("%s: blobs.quote: %s" % (self.source, e.located())) from e
        if have != report_data:
            raise BackendError("%s: the bundle's quote binds REPORTDATA %s..., not the one "
                               "asked for; a saved bundle cannot make a new quote"
                               % (self.source, have.hex()[:16]))
        return AttestationReport("tdx-quote", raw, have,
                                 self.evidence.sources.get("quote", self.source))


# ---------------------------------------------------------------- choosing one


def detect_backend(prefer: str | None = None, root: str | Path = "/",
                   tpm_device: str | None = None, evidence: str | Path | None = None,
                   tsm_entry: str | None = None) -> Backend:
    """The backend to use: ``prefer`` ("tdx", "tpm", "offline"), else the first present.

    Automatic order: TDX when ``dev/tdx_guest`` or the TDX measurement
    directory exists under ``root``, else a TPM (``tpm_device`` or
    ``dev/tpmrm0`` / ``dev/tpm0``). ``evidence`` (a bundle path) selects the
    offline backend.
    """
    base = Path(root)
    if prefer in (None, "auto") and evidence is not None:
        prefer = "offline"
    if prefer == "offline":
        if evidence is None:
            raise BackendError("the offline backend needs an evidence bundle (--evidence)")
        return OfflineBackend.load(evidence)
    tdx = TdxBackend(root=base, tsm_entry=tsm_entry)
    tpm = TpmBackend(root=base, device=tpm_device)
    if prefer == "tdx":
        if not tdx.available():
            raise BackendError("no TDX guest interface: neither %s nor %s exists"
                               % (base / TDX_MEASUREMENTS, tdx.device))
        return tdx
    if prefer == "tpm":
        return tpm
    if prefer not in (None, "auto"):
        raise BackendError("unknown backend %r (choose from %s, auto)"
                           % (prefer, ", ".join(BACKEND_NAMES)))
    if tdx.available():
        return tdx
    if tpm.available():
        return tpm
    raise BackendError("no root of trust found: none of %s exists"
                       % ", ".join(str(base / r) for r in
                                   (TDX_DEVICE, TDX_MEASUREMENTS, *TPM_DEVICES)))


def backend_label(backend: Backend) -> str:
    """``tdx (cc_mr, sha384)`` and the like, for people."""
    try:
        algs = ", ".join(alg_name(a) for a in backend.algorithms())
    except CvmchainError:
        algs = "?"
    return "%s (%s, %s)" % (backend.name, backend.index_kind, algs)
