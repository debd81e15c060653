"""TDREPORT layout and tdx-guest ioctl encodings (pytest and MicroPython).

ioctl numbers are checked against the kernel's include/uapi/linux/tdx-guest.h:
TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req) with
struct tdx_report_req { __u8 reportdata[64]; __u8 tdreport[1024]; }, and the
legacy TDX_CMD_EXTEND_RTMR on a 49-byte struct { __u8 data[48]; __u8 index; },
defined as _IOW in some trees and _IOR in others.
"""

from shared_spec.errors import FormatError
from shared_spec.tdx_report import (
    TDX_CMD_EXTEND_RTMR_IOR,
    TDX_CMD_EXTEND_RTMR_IOW,
    TDX_CMD_GET_REPORT0,
    extend_request,
    ioc,
    parse_tdreport,
)
from tests.spec._compat import raises


def test_ioctl_numbers():
    assert TDX_CMD_GET_REPORT0 == 0xC4405401
    assert TDX_CMD_EXTEND_RTMR_IOW == 0x40315403
    assert TDX_CMD_EXTEND_RTMR_IOR == 0x80315403
    assert ioc(0, "T", 0, 0) == 0x5400


def test_tdreport_offsets():
    raw = bytearray(1024)
    raw[128:192] = b"\x11" * 64          # REPORTMAC.reportdata
    # REPORTMAC_STRUCT 256 + TEE_TCB_INFO 239 + reserved 17: TDINFO_STRUCT at 512
    raw[512:520] = b"\x22" * 8           # TDINFO.attributes
    raw[528:576] = b"\x33" * 48          # TDINFO.mrtd (after attributes and xfam)
    raw[720 + 3 * 48:720 + 4 * 48] = b"\x44" * 48  # RTMR3 (rtmr[] at 512 + 208)
    r = parse_tdreport(bytes(raw))
    assert r.fields["report_data"] == b"\x11" * 64
    assert r.fields["td_attributes"] == b"\x22" * 8
    assert r.fields["mrtd"] == b"\x33" * 48
    assert r.rtmrs[3] == b"\x44" * 48
    assert r.encode() == bytes(raw)
    raises(FormatError, parse_tdreport, bytes(1023))


def test_extend_request_layout():
    req = extend_request(3, b"\x55" * 48)
    assert len(req) == 49 and req[48] == 3
    raises(FormatError, extend_request, 4, b"\x00" * 48)
