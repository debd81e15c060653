"""TDX at runtime: RTMRs from the kernel's TSM measurement registers, quotes via configfs-tsm.

Sources, in order of preference:

- registers: ``/sys/devices/virtual/misc/tdx_guest/measurements/<name>:sha384``
  (Linux 6.16+ TSM measurement-register core; any provider directory can be
  given, e.g. the ``tsm_mr_sample`` module's); the MRTD as ``mrtd:sha384``;
- quotes: ``/sys/kernel/config/tsm/report`` (configfs-tsm): write ``inblob``,
  read ``outblob``, and compare ``generation`` before and after so that a
  concurrent writer is detected rather than returning someone else's quote;
- the CCEL: ``/sys/firmware/acpi/tables/CCEL`` and ``.../data/CCEL``.

Register indexes are CC MR indexes (DESIGN.md): 0 = MRTD, n + 1 = RTMR n.
"""

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cloud_sdk.errors import BackendError
from shared_spec.algorithms import ALG_SHA384
from shared_spec.registers import cc_mr_label

TDX_MEASUREMENTS = Path("/sys/devices/virtual/misc/tdx_guest/measurements")
TSM_REPORT = Path("/sys/kernel/config/tsm/report")
CCEL_TABLE = Path("/sys/firmware/acpi/tables/CCEL")
CCEL_DATA = Path("/sys/firmware/acpi/tables/data/CCEL")


class ConcurrentReportError(BackendError):
    """Another writer changed the configfs-tsm report while we used it."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError as e:
        raise BackendError("%s: permission denied reading %s (needs root or a readable "
                           "attribute)" % (path, what)) from e
    except OSError as e:
        raise BackendError("%s: cannot read %s: %s" % (path, what, e.strerror)) from e


@dataclass
class TsmRegisters:
    """A directory of TSM measurement-register files (``<name>:sha384``)."""

    directory: Path = TDX_MEASUREMENTS
    #: file name for RTMR n; ``{n}`` is replaced
    rtmr_pattern: str = "rtmr{n}:sha384"
    mrtd_name: str = "mrtd:sha384"

    def available(self) -> bool:
        return self.directory.is_dir()

    def rtmr_path(self, rtmr: int) -> Path:
        return self.directory / self.rtmr_pattern.format(n=rtmr)

    def read_cc_mr(self, index: int) -> bytes:
        """The live value of CC MR ``index`` (0 = MRTD, n + 1 = RTMR n)."""
        path = self.directory / self.mrtd_name if index == 0 else self.rtmr_path(index - 1)
        value = _read(path, cc_mr_label(index))
        if len(value) != 48:
            raise BackendError("%s: %d bytes, expected 48 (SHA-384)" % (path, len(value)))
        return value

    def read_all(self) -> dict[int, dict[int, bytes]]:
        """Every CC MR the directory has, as {index: {sha384: value}}."""
        out: dict[int, dict[int, bytes]] = {}
        for index in range(5):
            path = (self.directory / self.mrtd_name if index == 0
                    else self.rtmr_path(index - 1))
            if path.exists():
                out[index] = {ALG_SHA384: self.read_cc_mr(index)}
        return out

    def extend(self, index: int, digest: bytes) -> None:
        """Extend RTMR (CC MR ``index`` >= 1) with a 48-byte digest: one write at offset 0."""
        if index < 1:
            raise BackendError("the MRTD (CC MR 0) cannot be extended")
        if len(digest) != 48:
            raise BackendError("an RTMR extend takes 48 bytes, got %d" % len(digest))
        path = self.rtmr_path(index - 1)
        try:
            fd = os.open(path, os.O_WRONLY)
        except OSError as e:
            raise BackendError("%s: cannot open for extend: %s" % (path, e.strerror)) from e
        try:
            written = os.write(fd, digest)
        except OSError as e:
            raise BackendError("%s: extend rejected: %s" % (path, e.strerror)) from e
        finally:
            os.close(fd)
        if written != 48:
            raise BackendError("%s: short write (%d of 48 bytes)" % (path, written))


@dataclass
class TsmReport:
    """A quote (or other attestation report) from configfs-tsm."""

    outblob: bytes
    provider: str
    generation: int
    auxblob: bytes | None = None


def get_tsm_report(report_data: bytes, root: Path = TSM_REPORT) -> TsmReport:
    """Request a report binding ``report_data`` (64 bytes) through configfs-tsm."""
    if len(report_data) != 64:
        raise BackendError("report data must be 64 bytes, got %d" % len(report_data))
    if not root.is_dir():
        raise BackendError("%s is absent: no configfs-tsm (mount configfs, kernel 6.7+ with "
                           "TSM reports)" % root)
    entry = root / ("cvmchain-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8]))
    try:
        entry.mkdir()
    except OSError as e:
        raise BackendError("%s: cannot create report entry: %s" % (entry, e.strerror)) from e
    try:
        try:
            (entry / "inblob").write_bytes(report_data)
        except OSError as e:
            raise BackendError("%s/inblob: %s" % (entry, e.strerror)) from e
        before = int(_read(entry / "generation", "generation").decode().strip())
        outblob = _read(entry / "outblob", "outblob")
        after = int(_read(entry / "generation", "generation").decode().strip())
        if after != before:
            raise ConcurrentReportError("%s: generation changed from %d to %d while reading "
                                        "outblob: another writer used this entry"
                                        % (entry, before, after))
        provider = _read(entry / "provider", "provider").decode().strip() \
            if (entry / "provider").exists() else ""
        aux = None
        if (entry / "auxblob").exists():
            try:
                aux = (entry / "auxblob").read_bytes()
            except OSError:
                aux = None
        return TsmReport(outblob, provider, after, aux)
    finally:
        for _ in range(3):
            try:
                entry.rmdir()
                break
            except OSError:
                time.sleep(0.05)


def read_ccel() -> tuple[bytes, bytes] | None:
    """(ACPI CCEL table, CCEL log area) when the firmware published them, else None."""
    if not CCEL_TABLE.exists() or not CCEL_DATA.exists():
        return None
    return _read(CCEL_TABLE, "the CCEL ACPI table"), _read(CCEL_DATA, "the CCEL log area")
