"""TDREPORT_STRUCT (1024 bytes) and the tdx-guest ioctl request encodings.

Layout of TDREPORT_STRUCT, offsets in bytes (Intel TDX Module ABI spec,
"TDREPORT_STRUCT", with TDX 1.5 additions; cross-checked against the Linux
UAPI ``include/uapi/linux/tdx-guest.h``, which carries it opaque as
``struct tdx_report_req { __u8 reportdata[64]; __u8 tdreport[1024]; }``, and
against the field lists of the Rust ``tdx-types`` (mushroom) and Intel
``td-shim`` TdReport definitions)::

      0  REPORTMAC_STRUCT (256)
           0 report_type 4 (type 0x81 = TDX, subtype, version, reserved)
           4 reserved 12 | 16 cpusvn 16 | 32 tee_tcb_info_hash 48
          80 tee_info_hash 48 | 128 reportdata 64 | 192 reserved 32 | 224 mac 32
    256  TEE_TCB_INFO (239)
         256 valid 8 | 264 tee_tcb_svn 16 | 280 mrseam 48 | 328 mrsignerseam 48
         376 attributes 8 | 384 tee_tcb_svn2 16 (TDX 1.5) | 400 reserved 95
    495  reserved 17
    512  TDINFO_STRUCT (512)
         512 attributes 8 | 520 xfam 8 | 528 mrtd 48 | 576 mrconfigid 48
         624 mrowner 48 | 672 mrownerconfig 48 | 720 rtmr[4] 4 x 48
         912 servtd_hash 48 (TDX 1.5) | 960 reserved 64

ioctl numbers follow the kernel's ``_IOC`` macro (``include/uapi/asm-generic/ioctl.h``,
x86): ``dir << 30 | size << 16 | type << 8 | nr`` with ``_IOC_WRITE = 1`` and
``_IOC_READ = 2``. ``TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req)``
(upstream UAPI). The legacy ``TDX_CMD_EXTEND_RTMR`` of the out-of-tree
tdx-guest driver takes ``struct tdx_extend_rtmr_req { __u8 data[48]; __u8 index; }``
(49 bytes) and was defined as ``_IOW`` in some trees and ``_IOR`` in others
(Intel's ``tdx_attest.c`` selects by ``V3_DRIVER``), so both encodings are given.
"""

from shared_spec.binary import Reader
from shared_spec.errors import EncodeError, FormatError, UnsupportedError

TDREPORT_SIZE = 1024
REPORTDATA_SIZE = 64
TDX_REPORT_TYPE = 0x81
RTMR_SIZE = 48

_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2

#: (name, size) in layout order; names starting with "reserved" are kept for byte-exact encoding
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


def _offsets() -> dict:
    out = {}
    at = 0
    for name, size in _LAYOUT:
        out[name] = at
        at += size
    return out


#: byte offset of every field in TDREPORT_STRUCT
OFFSETS = _offsets()


def ioc(direction: int, type_char: str, nr: int, size: int) -> int:
    """The kernel's ``_IOC(dir, type, nr, size)`` (x86 / asm-generic layout)."""
    if not 0 <= direction <= 3 or not 0 <= nr <= 0xFF or not 0 <= size <= 0x3FFF:
        raise EncodeError("ioctl dir/nr/size out of range", None, "ioc")
    return (direction << 30) | (size << 16) | (ord(type_char) << 8) | nr


#: sizeof(struct tdx_report_req) = 64 + 1024
TDX_REPORT_REQ_SIZE = REPORTDATA_SIZE + TDREPORT_SIZE
#: sizeof(struct tdx_extend_rtmr_req) = 48 + 1
TDX_EXTEND_RTMR_REQ_SIZE = RTMR_SIZE + 1

#: _IOWR('T', 1, struct tdx_report_req) = 0xc4405401
TDX_CMD_GET_REPORT0 = ioc(_IOC_READ | _IOC_WRITE, "T", 1, TDX_REPORT_REQ_SIZE)
#: legacy _IOW('T', 3, struct tdx_extend_rtmr_req) = 0x40315403
TDX_CMD_EXTEND_RTMR_IOW = ioc(_IOC_WRITE, "T", 3, TDX_EXTEND_RTMR_REQ_SIZE)
#: legacy _IOR('T', 3, struct tdx_extend_rtmr_req) = 0x80315403
TDX_CMD_EXTEND_RTMR_IOR = ioc(_IOC_READ, "T", 3, TDX_EXTEND_RTMR_REQ_SIZE)


class TdReport:
    """A decoded TDREPORT_STRUCT: ``fields`` maps every layout name to its bytes."""

    def __init__(self, fields: dict) -> None:
        self.fields = fields

    @property
    def report_data(self) -> bytes:
        return self.fields["report_data"]

    @property
    def mrtd(self) -> bytes:
        return self.fields["mrtd"]

    @property
    def rtmrs(self) -> list:
        """RTMR0..RTMR3 (CC MR indexes 1..4)."""
        f = self.fields
        return [f["rtmr0"], f["rtmr1"], f["rtmr2"], f["rtmr3"]]

    @property
    def report_type(self) -> tuple:
        """(type, subtype, version) of REPORTMAC_STRUCT.REPORTTYPE."""
        t = self.fields["report_type"]
        return (t[0], t[1], t[2])

    @property
    def is_tdx15(self) -> bool:
        """TDX 1.5 modules fill tee_tcb_svn2 / servtd_hash; 1.0 leaves them zero."""
        return any(self.fields["servtd_hash"]) or any(self.fields["tee_tcb_svn2"])

    def encode(self) -> bytes:
        """The 1024 bytes; absent fields are zero, a wrong size is an :class:`EncodeError`."""
        return encode_tdreport(self.fields)

    def to_dict(self) -> dict:
        """Hex of every non-reserved field, plus ``rtmrs`` as a list."""
        out: dict = {}
        for name, _ in _LAYOUT:
            if not name.startswith("reserved"):
                out[name] = bytes(self.fields[name]).hex()
        out["rtmrs"] = [bytes(v).hex() for v in self.rtmrs]
        return out


def encode_tdreport(fields: dict) -> bytes:
    """Build a TDREPORT_STRUCT from named fields (see ``_LAYOUT``); missing ones are zero."""
    out = []
    for name, size in _LAYOUT:
        v = fields.get(name)
        if v is None:
            v = bytes(size)
        if len(v) != size:
            raise EncodeError("%s must be %d bytes, not %d" % (name, size, len(v)),
                              OFFSETS[name], name)
        out.append(bytes(v))
    return b"".join(out)


def parse_tdreport(data: bytes, source: str | None = None) -> TdReport:
    """Decode a TDREPORT_STRUCT (exactly 1024 bytes, REPORTTYPE.type 0x81)."""
    if len(data) != TDREPORT_SIZE:
        raise FormatError("TDREPORT is %d bytes, not %d" % (len(data), TDREPORT_SIZE), 0,
                          "TDREPORT", source)
    r = Reader(data, source=source)
    fields = {}
    for name, size in _LAYOUT:
        fields[name] = r.read(size, name)
    if fields["report_type"][0] != TDX_REPORT_TYPE:
        raise UnsupportedError("REPORTTYPE.type 0x%02x is not TDX (0x81)"
                               % fields["report_type"][0], 0, "report_type.type", source)
    return TdReport(fields)


def extend_request(index: int, digest: bytes) -> bytes:
    """The legacy ``TDX_CMD_EXTEND_RTMR`` argument: 48 digest bytes, then the RTMR index."""
    if len(digest) != RTMR_SIZE:
        raise EncodeError("extend digest is %d bytes, not 48" % len(digest), 0, "data")
    if not 0 <= index <= 3:
        raise EncodeError("RTMR index %d is not 0..3" % index, RTMR_SIZE, "index")
    return bytes(digest) + bytes((index,))


def parse_extend_request(data: bytes, source: str | None = None) -> tuple:
    """Decode a ``struct tdx_extend_rtmr_req``: (index, digest)."""
    if len(data) != TDX_EXTEND_RTMR_REQ_SIZE:
        raise FormatError("extend request is %d bytes, not 49" % len(data), 0,
                          "tdx_extend_rtmr_req", source)
    r = Reader(data, source=source)
    digest = r.read(RTMR_SIZE, "data")
    index = r.u8("index")
    if index > 3:
        raise FormatError("RTMR index %d is not 0..3" % index, RTMR_SIZE, "index", source)
    return index, digest
