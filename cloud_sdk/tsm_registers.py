"""TDX measurement registers through the kernel's TSM measurement-register files.

``/sys/devices/virtual/misc/tdx_guest/measurements/<name>:sha384`` (Linux 6.16+ TSM
measurement-register core; any provider directory can be given, e.g. the
``tsm_mr_sample`` module's); the MRTD as ``mrtd:sha384``. Register indexes are CC MR
indexes (DESIGN.md): 0 = MRTD, n + 1 = RTMR n. Quotes, the TDREPORT and the CCEL are
read by :mod:`cloud_sdk.backends`.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from cloud_sdk.errors import BackendError
from cloud_sdk.sysfs import read_file
from shared_spec.algorithms import ALG_SHA384
from shared_spec.registers import cc_mr_label

TDX_MEASUREMENTS = Path("/sys/devices/virtual/misc/tdx_guest/measurements")


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
        value = read_file(path, cc_mr_label(index))
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
