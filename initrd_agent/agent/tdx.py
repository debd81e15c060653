"""The TDX root of trust: one RTMR, extended with SHA-384 digests.

Two kernel interfaces, tried in this order:

1. the TSM measurement-register file (Linux 6.16+, ``tsm-mr``):
   ``<tsm_dir>/<tsm_register>``, e.g.
   ``/sys/devices/virtual/misc/tdx_guest/measurements/rtmr3:sha384``; a
   48-byte write extends, a read returns the current value. The agent reads
   it before the first extend and logs it as an EV_NO_ACTION
   ``cvmchain:initial-value`` record, since a register provider need not
   start at zero (the kernel's ``tsm_mr_sample`` registers do not);
2. the legacy ``TDX_CMD_EXTEND_RTMR`` ioctl on ``/dev/tdx_guest``
   (``struct { u8 data[48]; u8 index; }``; request 0x40315403, then the
   0x80315403 of older patch sets); it cannot read, so no initial value is
   logged (RTMRs start at zero on TDX).

Register numbering (DESIGN.md): RTMR n is CC MR index n + 1; labels show both.
"""

import os

import libc

from shared_spec.algorithms import ALG_SHA384
from shared_spec.registers import cc_mr_label, rtmr_to_cc_mr

#: _IOW('T', 3, 49-byte struct), then _IOR of the older out-of-tree patches
TDX_CMD_EXTEND_RTMR = (0x40315403, 0x80315403)


class ExtendError(Exception):
    """A register refused an extend (or could not be read); the message says which."""


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class TsmRegister:
    """A TSM measurement-register file (read = value, 48-byte write = extend)."""

    def __init__(self, path):
        self.path = path
        self.what = path

    def read(self):
        fd = libc.open_(libc.z(self.path), libc.O_RDONLY | libc.O_CLOEXEC, 0)
        if fd < 0:
            raise ExtendError("cannot open %s: %s" % (self.path, libc.describe(libc.errno())))
        buf = bytearray(64)
        try:
            n = libc.read(fd, buf, len(buf))
            if n < 0:
                raise ExtendError("cannot read %s: %s" % (self.path,
                                                          libc.describe(libc.errno())))
        finally:
            libc.close(fd)
        if n != 48:
            raise ExtendError("%s: read %d bytes, expected 48" % (self.path, n))
        return bytes(buf[:48])

    def extend(self, digest):
        fd = libc.open_(libc.z(self.path), libc.O_WRONLY | libc.O_CLOEXEC, 0)
        if fd < 0:
            raise ExtendError("cannot open %s: %s" % (self.path, libc.describe(libc.errno())))
        try:
            n = libc.write(fd, digest, 48)
            if n != 48:
                raise ExtendError("extend of %s rejected: %s"
                                  % (self.path, libc.describe(libc.errno())))
        finally:
            libc.close(fd)


class TdxGuestIoctl:
    """The legacy ``TDX_CMD_EXTEND_RTMR`` ioctl of ``/dev/tdx_guest`` (write-only)."""

    def __init__(self, device, rtmr):
        self.device = device
        self.rtmr = rtmr
        self.what = "%s TDX_CMD_EXTEND_RTMR" % device
        self.request = None

    def read(self):
        return None

    def extend(self, digest):
        req = bytearray(49)
        req[:48] = digest
        req[48] = self.rtmr
        fd = libc.open_(libc.z(self.device), libc.O_RDWR | libc.O_CLOEXEC, 0)
        if fd < 0:
            raise ExtendError("cannot open %s: %s" % (self.device, libc.describe(libc.errno())))
        try:
            requests = (self.request,) if self.request else TDX_CMD_EXTEND_RTMR
            err = 0
            for request in requests:
                if libc.ioctl(fd, request, req) == 0:
                    self.request = request
                    return
                err = libc.errno()
                if err not in (libc.ENOTTY, libc.EINVAL):
                    break
            raise ExtendError("%s: extend of RTMR%d rejected: %s"
                              % (self.device, self.rtmr, libc.describe(err)))
        finally:
            libc.close(fd)


class TdxRoot:
    """RTMR ``rtmr`` (CC MR index rtmr + 1): SHA-384 only, logged to ``ccel.log``."""

    log_name = "ccel.log"
    header_index = 1  # the CCEL's Spec ID event carries index 1

    def __init__(self, conf):
        self.rtmr = int(conf["tdx_rtmr"])
        self.index = rtmr_to_cc_mr(self.rtmr)
        self.label = cc_mr_label(self.index)
        self.algorithms = [ALG_SHA384]
        self.tsm_path = conf["tsm_dir"].rstrip("/") + "/" + conf["tsm_register"].replace(
            "{n}", str(self.rtmr))
        self.device = conf["tdx_device"]
        self.register = None
        self.log = None

    def where(self):
        return "%s or %s" % (self.tsm_path, self.device)

    def probe(self):
        """Pick the interface; False when the guest has neither."""
        if _exists(self.tsm_path):
            self.register = TsmRegister(self.tsm_path)
        elif _exists(self.device):
            self.register = TdxGuestIoctl(self.device, self.rtmr)
        return self.register is not None

    def initial_values(self):
        """[(alg, value)] read before the first extend (empty when unreadable by design)."""
        value = self.register.read()
        return [] if value is None else [(ALG_SHA384, value)]

    def extend(self, digests, hashes):
        """Extend the SHA-384 digest of ``digests`` ([(alg, bytes)])."""
        for alg, d in digests:
            if alg == ALG_SHA384:
                self.register.extend(d)
                return
        raise ExtendError("no SHA-384 digest to extend into %s" % self.label)
