"""What the TSM sample cannot exercise: the tdx_guest ioctls, TDREPORT and configfs-tsm reports.

Every expected value here is derived from the kernel's own definitions, re-stated with
``ctypes`` and the ``_IOC`` macros, never taken from the code under test:

- ``include/uapi/asm-generic/ioctl.h`` (x86 uses it): ``_IOC`` bit widths and directions;
- ``include/uapi/linux/tdx-guest.h`` of Linux 7.2.12 (Debian ``linux-source-7.2``
  7.2.12-1): ``TDX_REPORTDATA_LEN 64``, ``TDX_REPORT_LEN 1024``, ``struct tdx_report_req``
  and ``TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req)``. The mainline header
  has no RTMR ioctl (mainline extends through the TSM measurement-register files);
- the out-of-tree TDX guest driver's ``include/uapi/linux/tdx-guest.h`` (Intel's TDX guest
  kernel tree): ``TDX_EXTEND_RTMR_DATA_LEN 48``, ``struct tdx_extend_rtmr_req { __u8
  data[48]; __u8 index; }`` and ``TDX_CMD_EXTEND_RTMR = _IOW('T', 3, ...)``; Intel's
  ``tdx_attest.c`` uses ``_IOR`` for the same request unless built with ``V3_DRIVER``;
- ``drivers/virt/coco/tdx-guest/tdx-guest.c`` of Linux 7.2.12: the driver's own TDREPORT
  field offsets (``TDREPORT_reportdata = 128``, ``TDREPORT_tee_tcb_info = 256``,
  ``TDREPORT_tdinfo = TDREPORT_tee_tcb_info + 256``, then 8, 8 and 48-byte steps), and its
  configfs-tsm provider's rule that ``inblob`` is exactly ``TDX_REPORTDATA_LEN`` bytes;
- the Intel TDX Module ABI structures REPORTMAC_STRUCT (256 bytes), TEE_TCB_INFO (239),
  TDINFO_STRUCT (512) that make up TDREPORT_STRUCT (1024, 17 reserved bytes after
  TEE_TCB_INFO);
- ``Documentation/ABI/testing/configfs-tsm-report`` of Linux 7.2.12: ``inblob``, ``outblob``,
  ``generation`` (counts every write), ``provider``.

The agent's ioctl constants are read from its source with :mod:`ast`: the agent module
itself imports MicroPython's ``ffi`` and cannot be imported by CPython.
"""

from __future__ import annotations

import ast
import ctypes
import errno
import os
from pathlib import Path

import pytest

from cloud_sdk import backends
from cloud_sdk.errors import BackendError
from shared_spec import tdx_report
from shared_spec.tdx_report import extend_request, parse_tdreport

AGENT_TDX = Path(__file__).resolve().parent.parent / "initrd_agent" / "agent" / "tdx.py"

# -- include/uapi/asm-generic/ioctl.h ---------------------------------------------------

_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS, _IOC_DIRBITS = 8, 8, 14, 2
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _IOC(direction: int, type_: str, nr: int, size: int) -> int:  # the kernel macro names
    assert size < 1 << _IOC_SIZEBITS
    return ((direction << _IOC_DIRSHIFT) | (ord(type_) << _IOC_TYPESHIFT)
            | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT))


def _IOW(type_: str, nr: int, struct: type[ctypes.Structure]) -> int:
    return _IOC(_IOC_WRITE, type_, nr, ctypes.sizeof(struct))


def _IOR(type_: str, nr: int, struct: type[ctypes.Structure]) -> int:
    return _IOC(_IOC_READ, type_, nr, ctypes.sizeof(struct))


def _IOWR(type_: str, nr: int, struct: type[ctypes.Structure]) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, type_, nr, ctypes.sizeof(struct))


# -- include/uapi/linux/tdx-guest.h ------------------------------------------------------

TDX_REPORTDATA_LEN = 64
TDX_REPORT_LEN = 1024
TDX_EXTEND_RTMR_DATA_LEN = 48  # out-of-tree header only


class TdxReportReq(ctypes.Structure):
    _fields_ = [("reportdata", ctypes.c_uint8 * TDX_REPORTDATA_LEN),
                ("tdreport", ctypes.c_uint8 * TDX_REPORT_LEN)]


class TdxExtendRtmrReq(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * TDX_EXTEND_RTMR_DATA_LEN),
                ("index", ctypes.c_uint8)]


# -- TDX Module ABI: TDREPORT_STRUCT --------------------------------------------------------

def _u8(n: int) -> type[ctypes.Array[ctypes.c_uint8]]:
    return ctypes.c_uint8 * n


class ReportMacStruct(ctypes.Structure):
    _fields_ = [("reporttype", _u8(4)), ("reserved1", _u8(12)), ("cpusvn", _u8(16)),
                ("tee_tcb_info_hash", _u8(48)), ("tee_info_hash", _u8(48)),
                ("reportdata", _u8(64)), ("reserved2", _u8(32)), ("mac", _u8(32))]


class TeeTcbInfo(ctypes.Structure):
    _fields_ = [("valid", _u8(8)), ("tee_tcb_svn", _u8(16)), ("mrseam", _u8(48)),
                ("mrsignerseam", _u8(48)), ("attributes", _u8(8)),
                ("tee_tcb_svn2", _u8(16)), ("reserved", _u8(95))]


class TdInfoStruct(ctypes.Structure):
    _fields_ = [("attributes", _u8(8)), ("xfam", _u8(8)), ("mrtd", _u8(48)),
                ("mrconfigid", _u8(48)), ("mrowner", _u8(48)), ("mrownerconfig", _u8(48)),
                ("rtmr", _u8(48) * 4), ("servtd_hash", _u8(48)), ("reserved", _u8(64))]


class TdReportStruct(ctypes.Structure):
    _fields_ = [("reportmacstruct", ReportMacStruct), ("tee_tcb_info", TeeTcbInfo),
                ("reserved", _u8(17)), ("tdinfo", TdInfoStruct)]


def _abi_offsets() -> dict[str, tuple[int, int]]:
    """shared_spec field name -> (offset, size) from the ctypes structures above."""
    mac = TdReportStruct.reportmacstruct.offset
    tcb = TdReportStruct.tee_tcb_info.offset
    td = TdReportStruct.tdinfo.offset

    def at(base: int, struct: type[ctypes.Structure], field: str) -> tuple[int, int]:
        descr = getattr(struct, field)
        return base + descr.offset, descr.size

    out = {
        "report_type": at(mac, ReportMacStruct, "reporttype"),
        "cpusvn": at(mac, ReportMacStruct, "cpusvn"),
        "tee_tcb_info_hash": at(mac, ReportMacStruct, "tee_tcb_info_hash"),
        "tee_info_hash": at(mac, ReportMacStruct, "tee_info_hash"),
        "report_data": at(mac, ReportMacStruct, "reportdata"),
        "mac": at(mac, ReportMacStruct, "mac"),
        "tcb_valid": at(tcb, TeeTcbInfo, "valid"),
        "tee_tcb_svn": at(tcb, TeeTcbInfo, "tee_tcb_svn"),
        "mrseam": at(tcb, TeeTcbInfo, "mrseam"),
        "mrsignerseam": at(tcb, TeeTcbInfo, "mrsignerseam"),
        "seam_attributes": at(tcb, TeeTcbInfo, "attributes"),
        "tee_tcb_svn2": at(tcb, TeeTcbInfo, "tee_tcb_svn2"),
        "td_attributes": at(td, TdInfoStruct, "attributes"),
        "xfam": at(td, TdInfoStruct, "xfam"),
        "mrtd": at(td, TdInfoStruct, "mrtd"),
        "mrconfigid": at(td, TdInfoStruct, "mrconfigid"),
        "mrowner": at(td, TdInfoStruct, "mrowner"),
        "mrownerconfig": at(td, TdInfoStruct, "mrownerconfig"),
        "servtd_hash": at(td, TdInfoStruct, "servtd_hash"),
    }
    rtmr = td + TdInfoStruct.rtmr.offset
    for n in range(4):
        out["rtmr%d" % n] = (rtmr + 48 * n, 48)
    return out


def _agent_constant(name: str) -> object:
    """The literal value assigned to ``name`` in the agent's tdx.py."""
    tree = ast.parse(AGENT_TDX.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("%s is not assigned in %s" % (name, AGENT_TDX))


# -- ioctls ---------------------------------------------------------------------------------


def test_get_report0_is_iowr_t_1_of_the_uapi_struct() -> None:
    assert ctypes.sizeof(TdxReportReq) == 64 + 1024
    assert TdxReportReq.tdreport.offset == TDX_REPORTDATA_LEN
    want = _IOWR("T", 1, TdxReportReq)
    assert want == 0xC4405401  # the value strace shows for this request on a TDX guest
    assert tdx_report.TDX_CMD_GET_REPORT0 == want
    assert tdx_report.TDX_REPORT_REQ_SIZE == ctypes.sizeof(TdxReportReq)


def test_extend_rtmr_encodings_of_the_sdk_and_the_agent() -> None:
    assert ctypes.sizeof(TdxExtendRtmrReq) == 49  # u8 members: no padding
    assert TdxExtendRtmrReq.index.offset == 48
    iow, ior = _IOW("T", 3, TdxExtendRtmrReq), _IOR("T", 3, TdxExtendRtmrReq)
    assert (tdx_report.TDX_CMD_EXTEND_RTMR_IOW, tdx_report.TDX_CMD_EXTEND_RTMR_IOR) == (iow, ior)
    # the agent tries the out-of-tree header's _IOW first, then tdx_attest's _IOR
    assert _agent_constant("TDX_CMD_EXTEND_RTMR") == (iow, ior)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_extend_request_is_the_uapi_struct(index: int) -> None:
    digest = bytes(range(100, 148))
    req = TdxExtendRtmrReq()
    ctypes.memmove(req.data, digest, 48)
    req.index = index
    assert extend_request(index, digest) == bytes(req)


# -- TDREPORT_STRUCT --------------------------------------------------------------------------


def test_tdreport_struct_sizes_follow_the_tdx_module_abi() -> None:
    assert ctypes.sizeof(ReportMacStruct) == 256
    assert ctypes.sizeof(TeeTcbInfo) == 239
    assert ctypes.sizeof(TdInfoStruct) == 512
    assert ctypes.sizeof(TdReportStruct) == TDX_REPORT_LEN == tdx_report.TDREPORT_SIZE


def test_tdreport_offsets_match_the_abi_structs() -> None:
    for name, (offset, _size) in _abi_offsets().items():
        assert tdx_report.OFFSETS[name] == offset, name


def test_tdreport_offsets_match_the_linux_7_2_driver() -> None:
    # drivers/virt/coco/tdx-guest/tdx-guest.c: enum of TDREPORT_* offsets
    sha384 = 48
    reportdata = 128
    tee_tcb_info = 256
    tdinfo = tee_tcb_info + 256
    attributes = tdinfo
    xfam = attributes + 8
    mrtd = xfam + 8
    mrconfigid = mrtd + sha384
    mrowner = mrconfigid + sha384
    mrownerconfig = mrowner + sha384
    rtmr0 = mrownerconfig + sha384
    servtd_hash = rtmr0 + 4 * sha384
    got = tdx_report.OFFSETS
    assert got["report_data"] == reportdata
    assert got["tcb_valid"] == tee_tcb_info
    assert got["td_attributes"] == attributes
    assert got["xfam"] == xfam
    assert got["mrtd"] == mrtd
    assert (got["mrconfigid"], got["mrowner"], got["mrownerconfig"]) == (
        mrconfigid, mrowner, mrownerconfig)
    assert [got["rtmr%d" % n] for n in range(4)] == [rtmr0 + sha384 * n for n in range(4)]
    assert got["servtd_hash"] == servtd_hash


def _patterned_report() -> tuple[bytes, dict[str, bytes]]:
    """A TDREPORT built with ctypes, each field a distinct byte pattern."""
    raw = bytearray(ctypes.sizeof(TdReportStruct))
    expected = {}
    for i, (name, (offset, size)) in enumerate(sorted(_abi_offsets().items())):
        value = bytes((i * 7 + k) & 0xFF for k in range(size))
        if name == "report_type":
            value = b"\x81\x00\x00\x00"  # TDX, subtype 0, version 0
        raw[offset:offset + size] = value
        expected[name] = value
    report = TdReportStruct.from_buffer_copy(bytes(raw))
    return bytes(report), expected


def test_parse_tdreport_reads_every_field_at_its_abi_offset() -> None:
    raw, expected = _patterned_report()
    rep = parse_tdreport(raw, source="ctypes")
    for name, value in expected.items():
        assert bytes(rep.fields[name]) == value, name
    assert bytes(rep.mrtd) == expected["mrtd"]
    assert [bytes(v) for v in rep.rtmrs] == [expected["rtmr%d" % n] for n in range(4)]
    assert rep.report_type == (0x81, 0, 0)


# -- get_tdreport through TDX_CMD_GET_REPORT0 (a mock of the TDX driver: no hardware) -------


class MockTdxGuestDriver:
    """Mock of the tdx_guest driver's ioctl (no TDX hardware here): checks the request
    against the UAPI and fills ``struct tdx_report_req.tdreport``."""

    def __init__(self, tdreport: bytes, fail: int | None = None) -> None:
        self.tdreport = tdreport
        self.fail = fail
        self.seen: list[tuple[int, bytes]] = []

    def __call__(self, fd: int, request: int, buf: bytearray) -> int:
        self.seen.append((request, bytes(buf[:TDX_REPORTDATA_LEN])))
        if self.fail is not None:
            raise OSError(self.fail, os.strerror(self.fail))
        if request != _IOWR("T", 1, TdxReportReq) or len(buf) != ctypes.sizeof(TdxReportReq):
            raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
        req = TdxReportReq.from_buffer(buf)
        ctypes.memmove(req.tdreport, self.tdreport, TDX_REPORT_LEN)
        return 0


def test_get_tdreport_sends_report_data_and_returns_the_report(tmp_path: Path) -> None:
    device = tmp_path / "tdx_guest"
    device.write_bytes(b"")
    raw, expected = _patterned_report()
    driver = MockTdxGuestDriver(raw)
    data = bytes(range(64))
    assert backends.get_tdreport(device, data, driver) == raw
    assert driver.seen == [(_IOWR("T", 1, TdxReportReq), data)]
    assert bytes(parse_tdreport(raw).mrtd) == expected["mrtd"]


def test_get_tdreport_errors_name_the_device_and_the_request(tmp_path: Path) -> None:
    device = tmp_path / "not-tdx"
    device.write_bytes(b"")
    with pytest.raises(BackendError) as e:
        backends.get_tdreport(device, bytes(64), MockTdxGuestDriver(b"", fail=errno.ENOTTY))
    assert str(e.value).startswith("%s: TDX_CMD_GET_REPORT0 failed" % device)
    assert "(not the tdx_guest device)" in str(e.value)
    with pytest.raises(BackendError, match="report data must be 64 bytes, got 63"):
        backends.get_tdreport(device, bytes(63), MockTdxGuestDriver(b""))


# -- configfs-tsm report entries (Documentation/ABI/testing/configfs-tsm-report) --------------


def _entry(root: Path, name: str, generation: str) -> Path:
    entry = root / name
    entry.mkdir(parents=True)
    (entry / "generation").write_text(generation)
    (entry / "outblob").write_bytes(b"quote")
    (entry / "provider").write_text("tdx_guest\n")
    return entry


@pytest.mark.parametrize("size", [0, 32, 63, 65])
def test_configfs_inblob_must_be_tdx_reportdata_len(tmp_path: Path, size: int) -> None:
    # tdx-guest.c refuses an inblob of another length with EINVAL; the SDK does not write it
    entry = _entry(tmp_path, "e", "0\n")
    with pytest.raises(BackendError, match="report data must be 64 bytes, got %d" % size):
        backends.configfs_report(tmp_path, bytes(size), "e")
    assert not (entry / "inblob").exists()


def test_configfs_generation_that_did_not_count_our_write_is_interference(
        tmp_path: Path) -> None:
    # a plain file never increments: as if another writer had reset the count under us
    _entry(tmp_path, "e", "7\n")
    with pytest.raises(backends.ConcurrentReportError, match="generation went from 7 to 7"):
        backends.configfs_report(tmp_path, bytes(64), "e")


def test_configfs_bad_generation_names_the_file(tmp_path: Path) -> None:
    entry = _entry(tmp_path, "e", "seven\n")
    with pytest.raises(BackendError) as e:
        backends.configfs_report(tmp_path, bytes(64), "e")
    assert str(e.value) == "%s/generation: 'seven\\n' is not a number" % entry


def test_configfs_private_entry_is_removed_when_the_provider_fails(tmp_path: Path) -> None:
    # mkdir in real configfs creates the attributes; in a plain directory they are absent,
    # which is what a report root without a provider looks like
    with pytest.raises(BackendError, match="generation: the report generation is absent"):
        backends.configfs_report(tmp_path, bytes(64))
    assert list(tmp_path.iterdir()) == []
