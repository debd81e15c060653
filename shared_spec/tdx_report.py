"""TDREPORT_STRUCT (1024 bytes) and the tdx-guest ioctl encodings.

Layout (Intel TDX Module ABI; Linux ``include/uapi/linux/tdx-guest.h`` carries
it opaque in ``struct tdx_report_req { __u8 reportdata[64]; __u8 tdreport[1024]; }``)::

    REPORTMAC_STRUCT (256): report_type 4 | reserved 12 | cpusvn 16 | tee_tcb_info_hash 48
                            | tee_info_hash 48 | reportdata 64 | reserved 32 | mac 32
    TEE_TCB_INFO (239):     valid 8 | tee_tcb_svn 16 | mrseam 48 | mrsignerseam 48
                            | attributes 8 | tee_tcb_svn2 16 (TDX 1.5) | reserved 95
    reserved (17)
    TDINFO (512):           attributes 8 | xfam 8 | mrtd 48 | mrconfigid 48 | mrowner 48
                            | mrownerconfig 48 | rtmr[4] 192 | servtd_hash 48 (TDX 1.5)
                            | reserved 64

ioctl numbers follow the kernel's _IOC macro (asm-generic/ioctl.h):
dir << 30 | size << 16 | type << 8 | nr.
"""

from shared_spec.binary import Reader
from shared_spec.errors import FormatError

TDREPORT_SIZE = 1024

_IOC_WRITE = 1
_IOC_READ = 2

_LAYOUT = (
    ("report_type", 4), ("reserved_mac1", 12), ("cpusvn", 16), ("tee_tcb_info_hash", 48),
    ("tee_info_hash", 48), ("report_data", 64), ("reserved_mac2", 32), ("mac", 32),
    ("tcb_valid", 8), ("tee_tcb_svn", 16), ("mrseam", 48), ("mrsignerseam", 48),
    ("seam_attributes", 8), ("tee_tcb_svn2", 16), ("reserved_tcb", 95),
    ("reserved", 17),
    ("td_attributes", 8), ("xfam", 8), ("mrtd", 48), ("mrconfigid", 48), ("mrowner", 48),
    ("mrownerconfig", 48), ("rtmr0", 48), ("rtmr1", 48), ("rtmr2", 48), ("rtmr3", 48),
    ("servtd_hash", 48), ("reserved_td", 64),
)


def ioc(direction: int, type_char: str, nr: int, size: int) -> int:
    """The kernel's _IOC(dir, type, nr, size)."""
    return (direction << 30) | (size << 16) | (ord(type_char) << 8) | nr


#: _IOWR('T', 1, struct tdx_report_req) with sizeof = 64 + 1024
TDX_CMD_GET_REPORT0 = ioc(_IOC_READ | _IOC_WRITE, "T", 1, 64 + TDREPORT_SIZE)
#: legacy extend: struct { u8 data[48]; u8 index; } (49 bytes), both encodings seen in kernels
TDX_CMD_EXTEND_RTMR_IOW = ioc(_IOC_WRITE, "T", 3, 49)
TDX_CMD_EXTEND_RTMR_IOR = ioc(_IOC_READ, "T", 3, 49)


class TdReport:
    """A decoded TDREPORT_STRUCT; fields by name (bytes)."""

    def __init__(self, fields: dict) -> None:
        self.fields = fields

    @property
    def rtmrs(self) -> list:
        return [self.fields["rtmr%d" % i] for i in range(4)]

    @property
    def is_tdx15(self) -> bool:
        """TDX 1.5 modules fill tee_tcb_svn2 / servtd_hash; 1.0 leaves them zero."""
        return any(self.fields["servtd_hash"]) or any(self.fields["tee_tcb_svn2"])

    def encode(self) -> bytes:
        return b"".join(self.fields[name] for name, _ in _LAYOUT)

    def to_dict(self) -> dict:
        out: dict = {name: bytes(v).hex() for name, v in self.fields.items()
               if not name.startswith("reserved")}
        out["rtmrs"] = [bytes(v).hex() for v in self.rtmrs]
        return out


def parse_tdreport(data: bytes, source: str | None = None) -> TdReport:
    if len(data) != TDREPORT_SIZE:
        raise FormatError("TDREPORT is %d bytes, not %d" % (len(data), TDREPORT_SIZE), 0,
                          "TDREPORT", source)
    r = Reader(data, source=source)
    fields = {}
    for name, size in _LAYOUT:
        fields[name] = r.read(size, name)
    return TdReport(fields)


def extend_request(index: int, digest: bytes) -> bytes:
    """The legacy TDX_CMD_EXTEND_RTMR argument: 48 digest bytes then the RTMR index."""
    if len(digest) != 48 or not 0 <= index <= 3:
        raise FormatError("extend needs a 48-byte digest and RTMR 0..3", None, "extend")
    return bytes(digest) + bytes([index])
