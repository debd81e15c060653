"""The agent's event logs: TCG crypto-agile files, every record synced before its extend.

One log per root of trust, in the binary format of that root's firmware log
so it can be appended to it and replayed by standard tools:

- ``ccel.log``: CC MR indexed, SHA-384 only, Spec ID header with index 1
  (like the CCEL);
- ``tpm.log``: PCR indexed, one digest per active bank, Spec ID header with
  index 0 (like the TPM's TCG log).

Each write opens the file with ``O_APPEND``, writes the whole record with one
``write(2)``, ``fsync``\\ s and closes: when :meth:`LogFile.append` returns the
record is on disk (or in the initramfs ``/run``), and only then may the
caller extend.
"""

import libc

from shared_spec.algorithms import digest_size
from shared_spec.tcg_log import SpecIdEvent, encode_pcr_event2, encode_spec_id_header


class LogError(Exception):
    """A log cannot be written; the message names the file and the errno."""


class LogFile:
    """An agent log; created (truncated) with its Spec ID header."""

    def __init__(self, path, algorithms, header_index):
        self.path = path
        self.algorithms = list(algorithms)
        spec = SpecIdEvent(algorithms=[(a, digest_size(a)) for a in self.algorithms],
                           vendor_info=b"cvmchain")
        self._write(encode_spec_id_header(spec, header_index), libc.O_CREAT | libc.O_TRUNC)

    def _write(self, data, extra=0):
        fd = libc.open_(libc.z(self.path), libc.O_WRONLY | libc.O_APPEND | libc.O_CLOEXEC | extra,
                        0o644)
        if fd < 0:
            raise LogError("cannot open %s for writing: %s" % (self.path,
                                                                libc.describe(libc.errno())))
        try:
            n = libc.write(fd, data, len(data))
            if n != len(data):
                raise LogError("short write to %s (%d of %d bytes): %s"
                               % (self.path, n, len(data), libc.describe(libc.errno())))
            if libc.fsync(fd) != 0:
                raise LogError("fsync %s: %s" % (self.path, libc.describe(libc.errno())))
        finally:
            libc.close(fd)

    def append(self, index, event_type, digests, data):
        """Append one TCG_PCR_EVENT2 record; ``digests`` is [(alg, bytes)] in log order."""
        self._write(encode_pcr_event2(index, event_type, digests, data))
