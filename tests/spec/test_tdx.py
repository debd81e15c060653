"""TDREPORT, tdx-guest ioctls and TDX quotes v4 / v5 (pytest and MicroPython).

Expected offsets come from the layout tables of the specifications (Intel
TDX Module ABI TDREPORT_STRUCT; Intel TDX DCAP quote format, appendix A) and
expected ioctl numbers from the kernel headers (include/uapi/linux/tdx-guest.h:
TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req), 64 + 1024 bytes;
the legacy TDX_CMD_EXTEND_RTMR on struct { __u8 data[48]; __u8 index; }, _IOW
in some trees and _IOR in others), never from the code under test.
Round trips are built from the encoders; the real v4 quote of
../shared/fixtures is checked against that project's expected.json.
"""

import struct

from shared_spec.errors import EncodeError, FormatError, LimitError, SpecError, UnsupportedError
from shared_spec.tdx_quote import (
    BODY_TYPE_TD10,
    BODY_TYPE_TD15,
    CERT_PCK_CHAIN,
    CERT_QE_REPORT,
    CertificationData,
    QeReport,
    TdReportBody,
    TdxQuote,
    parse_quote,
)
from shared_spec.tdx_report import (
    TDX_CMD_EXTEND_RTMR_IOR,
    TDX_CMD_EXTEND_RTMR_IOW,
    TDX_CMD_GET_REPORT0,
    encode_tdreport,
    extend_request,
    ioc,
    parse_extend_request,
    parse_tdreport,
)
from tests.spec._compat import Skip, fixtures_dir, raises, read_bytes

# -- ioctls --------------------------------------------------------------------


def test_ioctl_numbers():
    # _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr; 'T' = 0x54
    assert ioc(3, "T", 1, 1088) == 0xC4405401
    assert TDX_CMD_GET_REPORT0 == 0xC4405401
    assert TDX_CMD_EXTEND_RTMR_IOW == 0x40315403 == ioc(1, "T", 3, 49)
    assert TDX_CMD_EXTEND_RTMR_IOR == 0x80315403 == ioc(2, "T", 3, 49)
    assert ioc(0, "T", 0, 0) == 0x5400
    raises(EncodeError, ioc, 4, "T", 1, 0)
    raises(EncodeError, ioc, 1, "T", 1, 0x4000)


def test_extend_request_round_trip():
    req = extend_request(3, b"\x55" * 48)
    assert len(req) == 49 and req[:48] == b"\x55" * 48 and req[48] == 3
    assert parse_extend_request(req) == (3, b"\x55" * 48)
    raises(EncodeError, extend_request, 4, b"\x00" * 48)
    raises(EncodeError, extend_request, 0, b"\x00" * 32)
    raises(FormatError, parse_extend_request, req[:48])
    raises(FormatError, parse_extend_request, req[:48] + b"\x04")


# -- TDREPORT --------------------------------------------------------------------

# (field, spec offset, size) from the TDREPORT_STRUCT tables
_TDREPORT_SPOTS = (
    ("report_type", 0, 4), ("cpusvn", 16, 16), ("tee_tcb_info_hash", 32, 48),
    ("tee_info_hash", 80, 48), ("report_data", 128, 64), ("mac", 224, 32),
    ("tcb_valid", 256, 8), ("tee_tcb_svn", 264, 16), ("mrseam", 280, 48),
    ("mrsignerseam", 328, 48), ("seam_attributes", 376, 8), ("tee_tcb_svn2", 384, 16),
    ("td_attributes", 512, 8), ("xfam", 520, 8), ("mrtd", 528, 48), ("mrconfigid", 576, 48),
    ("mrowner", 624, 48), ("mrownerconfig", 672, 48), ("rtmr0", 720, 48), ("rtmr1", 768, 48),
    ("rtmr2", 816, 48), ("rtmr3", 864, 48), ("servtd_hash", 912, 48),
)


def test_tdreport_offsets_and_round_trip():
    raw = bytearray(1024)
    fields = {}
    for i, (name, at, size) in enumerate(_TDREPORT_SPOTS):
        value = bytes([0x81]) + bytes(size - 1) if name == "report_type" else bytes([i + 1]) * size
        raw[at:at + size] = value
        fields[name] = value
    assert encode_tdreport(fields) == bytes(raw)
    r = parse_tdreport(bytes(raw))
    for name, at, size in _TDREPORT_SPOTS:
        assert r.fields[name] == bytes(raw[at:at + size]), name
    assert r.rtmrs == [bytes(raw[720 + 48 * i:768 + 48 * i]) for i in range(4)]
    assert r.report_data == bytes(raw[128:192]) and r.mrtd == bytes(raw[528:576])
    assert r.report_type == (0x81, 0, 0) and r.is_tdx15
    assert r.encode() == bytes(raw)
    d = r.to_dict()
    assert d["mrtd"] == bytes(raw[528:576]).hex() and len(d["rtmrs"]) == 4
    assert "reserved" not in d


def test_tdreport_errors():
    raises(FormatError, parse_tdreport, bytes(1023))
    raises(FormatError, parse_tdreport, bytes(1025))
    e = raises(UnsupportedError, parse_tdreport, bytes(1024))  # REPORTTYPE.type 0
    assert e.field == "report_type.type" and e.offset == 0
    e = raises(EncodeError, encode_tdreport, {"mrtd": bytes(47)})
    assert e.field == "mrtd" and e.offset == 528


# -- quotes built by the encoders ------------------------------------------------


_BODY_LAYOUT = (
    ("tee_tcb_svn", 16), ("mrseam", 48), ("mrsignerseam", 48), ("seam_attributes", 8),
    ("td_attributes", 8), ("xfam", 8), ("mrtd", 48), ("mrconfigid", 48), ("mrowner", 48),
    ("mrownerconfig", 48), ("rtmr0", 48), ("rtmr1", 48), ("rtmr2", 48), ("rtmr3", 48),
    ("report_data", 64),
)
_BODY15_EXTRA = (("tee_tcb_svn2", 16), ("mrservicetd", 48))


def _body(td15):
    layout = _BODY_LAYOUT + (_BODY15_EXTRA if td15 else ())
    return TdReportBody({n: bytes([i + 1]) * s for i, (n, s) in enumerate(layout)}, td15)


def _quote(version, td15=False, pem=b"-----BEGIN CERTIFICATE-----\n\x00", auth=b"\xaa" * 32):
    q = TdxQuote()
    q.version = version
    q.body_type = BODY_TYPE_TD15 if td15 else BODY_TYPE_TD10
    q.reserved1 = 7
    q.reserved2 = 13
    q.qe_vendor_id = b"\x93" * 16
    q.user_data = b"\x33" * 20
    q.body = _body(td15)
    q.signature = b"\x51" * 64
    q.attestation_key = b"\x52" * 64
    qe = QeReport({"cpusvn": b"\x01" * 16, "miscselect": b"\x02\x00\x00\x00",
                   "attributes": b"\x03" * 16, "mrenclave": b"\x04" * 32,
                   "mrsigner": b"\x05" * 32, "isvprodid": b"\x02\x00", "isvsvn": b"\x08\x00",
                   "report_data": b"\x06" * 64})
    q.certification = CertificationData.qe_report_data(
        qe.encode(), b"\x53" * 64, auth, CertificationData(CERT_PCK_CHAIN, pem))
    return q


def test_quote_v4_layout_and_round_trip():
    q = _quote(4)
    data = q.encode()
    pem = b"-----BEGIN CERTIFICATE-----\n\x00"
    # header, body 584, u32 sig len, sig 64, key 64, cert (6 + 384 + 64 + 2 + 32 + 6 + pem)
    cert_len = 384 + 64 + 2 + 32 + 6 + len(pem)
    assert len(data) == 48 + 584 + 4 + 128 + 6 + cert_len
    assert struct.unpack_from("<HHIHH", data, 0) == (4, 2, 0x81, 7, 13)
    assert data[12:28] == b"\x93" * 16 and data[28:48] == b"\x33" * 20
    # body offsets (header 48 + the TD report body table)
    assert data[48:64] == b"\x01" * 16              # tee_tcb_svn
    assert data[48 + 136:48 + 184] == b"\x07" * 48  # mrtd
    assert data[48 + 328:48 + 376] == b"\x0b" * 48  # rtmr0
    assert data[48 + 520:48 + 584] == b"\x0f" * 64  # report_data
    assert struct.unpack_from("<I", data, 632)[0] == len(data) - 636
    assert struct.unpack_from("<HI", data, 636 + 128) == (CERT_QE_REPORT, cert_len)
    qe_at = 636 + 128 + 6
    assert data[qe_at + 320:qe_at + 384] == b"\x06" * 64          # QE REPORTDATA at 320
    assert data[qe_at + 256:qe_at + 258] == b"\x02\x00"           # ISVPRODID at 256
    assert struct.unpack_from("<H", data, qe_at + 448)[0] == 32   # QE auth data size
    assert struct.unpack_from("<HI", data, qe_at + 482) == (CERT_PCK_CHAIN, len(pem))

    back = parse_quote(data)
    assert back.encode() == data
    assert back.version == 4 and back.tee_type == 0x81 and back.body_type == BODY_TYPE_TD10
    assert back.body.mrtd == b"\x07" * 48 and back.body.report_data == b"\x0f" * 64
    assert back.body.rtmrs == [bytes([i]) * 48 for i in (11, 12, 13, 14)]
    assert back.signature == b"\x51" * 64 and back.attestation_key == b"\x52" * 64
    assert back.qe_report_signature == b"\x53" * 64 and back.qe_auth_data == b"\xaa" * 32
    assert back.pck_chain_pem == pem
    qe = back.qe_report_body()
    assert qe.isvprodid == 2 and qe.isvsvn == 8 and qe.miscselect == 2
    assert qe.report_data == b"\x06" * 64
    d = back.to_dict()
    assert d["rtmrs"][3] == "0e" * 48 and d["tee_type"] == "0x81"
    assert d["certification_data_type"] == 6 and d["inner_certification_data_type"] == 5


def test_quote_v5_td15_round_trip():
    q = _quote(5, td15=True)
    data = q.encode()
    assert struct.unpack_from("<HI", data, 48) == (BODY_TYPE_TD15, 648)
    assert data[54 + 584:54 + 600] == b"\x10" * 16   # tee_tcb_svn2 after report_data
    assert data[54 + 600:54 + 648] == b"\x11" * 48   # mrservicetd
    assert struct.unpack_from("<I", data, 54 + 648)[0] == len(data) - (54 + 648 + 4)
    back = parse_quote(data)
    assert back.version == 5 and back.body.is_td15 and back.body_type == BODY_TYPE_TD15
    assert back.body.fields["mrservicetd"] == b"\x11" * 48
    assert back.encode() == data
    assert back.signed_bytes() == data[:54 + 648]


def test_quote_v5_td10_round_trip():
    data = _quote(5).encode()
    assert struct.unpack_from("<HI", data, 48) == (BODY_TYPE_TD10, 584)
    back = parse_quote(data)
    assert not back.body.is_td15 and back.encode() == data
    assert back.to_dict()["mrservicetd"] is None


def test_quote_trailer_is_kept():
    data = _quote(4).encode() + bytes(70)
    back = parse_quote(data)
    assert back.trailer == bytes(70) and back.encode() == data


def test_quote_truncations_fail_with_located_errors():
    data = _quote(5, td15=True).encode()
    for cut in (0, 1, 47, 48, 53, 54, 300, 702, 705, 706, 900, 1300, len(data) - 1):
        e = raises(SpecError, parse_quote, data[:cut])
        assert e.offset is not None and e.field, (cut, e)


def test_quote_length_fields_are_checked():
    data = bytearray(_quote(4).encode())
    bad = bytearray(data)
    struct.pack_into("<I", bad, 632, len(data))           # signature_data_len too big
    e = raises(LimitError, parse_quote, bytes(bad))
    assert e.offset == 632 and e.field == "signature_data_len"
    bad = bytearray(data)
    struct.pack_into("<I", bad, 636 + 130, 0xFFFFFFF0)    # certification data size
    e = raises(LimitError, parse_quote, bytes(bad))
    assert e.offset == 636 + 130 and e.field == "certification_data.size"
    bad = bytearray(data)
    struct.pack_into("<H", bad, 636 + 134 + 448, 0xFFFF)  # QE auth data size
    e = raises(LimitError, parse_quote, bytes(bad))
    assert e.offset == 636 + 134 + 448 and e.field == "qe_auth_data.size"
    bad = bytearray(data)
    struct.pack_into("<I", bad, 632, len(data) - 636 - 1)  # one byte short
    assert raises(SpecError, parse_quote, bytes(bad)).offset is not None


def test_quote_unsupported_values():
    data = _quote(5, td15=True).encode()
    for at, fmt, value, exc, fld in (
            (0, "<H", 3, UnsupportedError, "header.version"),
            (2, "<H", 3, UnsupportedError, "header.att_key_type"),
            (4, "<I", 0, UnsupportedError, "header.tee_type"),
            (48, "<H", 1, UnsupportedError, "body_descriptor.type"),
            (50, "<I", 584, FormatError, "body_descriptor.size")):
        bad = bytearray(data)
        struct.pack_into(fmt, bad, at, value)
        e = raises(exc, parse_quote, bytes(bad))
        assert e.field == fld and e.offset == at, (fld, e)


def test_quote_nesting_is_bounded():
    q = _quote(4)
    inner = q.certification
    q.certification = CertificationData.qe_report_data(
        inner.qe_report, inner.qe_report_signature, b"", inner)   # type 6 inside type 6
    e = raises(LimitError, parse_quote, q.encode())
    assert e.field == "certification_data"


def test_quote_encoder_rejects_bad_values():
    q = _quote(4)
    q.signature = bytes(63)
    raises(EncodeError, q.encode)
    q = _quote(4)
    q.body = _body(True)   # a TD 1.5 body in a v4 quote
    raises(EncodeError, q.encode)
    q = _quote(5, td15=True)
    q.body_type = BODY_TYPE_TD10
    raises(EncodeError, q.encode)
    q = _quote(4)
    q.reserved1 = 0x10000
    raises(EncodeError, q.encode)
    q = _quote(4)
    q.certification.inner = None
    raises(EncodeError, q.encode)


# -- the real quote ------------------------------------------------------------------


def _fixture():
    base = fixtures_dir() + "/tdx-cc-trusted-api"
    try:
        data = read_bytes(base + "/quote.bin")
        import json

        with open(base + "/expected.json") as f:
            expected = json.load(f)["quote"]
    except OSError as e:
        raise Skip("tdx-cc-trusted-api fixture incomplete: %s" % e) from e
    return data, expected


def test_fixture_quote_matches_expected_and_round_trips():
    data, expected = _fixture()
    q = parse_quote(data, source="quote.bin")
    assert q.encode() == data
    assert q.version == expected["version"] and q.att_key_type == expected["att_key_type"]
    assert "0x%02x" % q.tee_type == expected["tee_type"]
    assert q.body.mrtd.hex() == expected["mrtd"]
    assert [r.hex() for r in q.body.rtmrs] == expected["rtmr"]
    assert q.body.report_data.hex() == expected["reportdata"]
    assert q.body.fields["td_attributes"].hex() == expected["td_attributes"]
    assert q.body.fields["xfam"].hex() == expected["xfam"]
    assert q.certification.cert_type == CERT_QE_REPORT
    assert q.certification.inner.cert_type == CERT_PCK_CHAIN
    assert q.pck_chain_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    d = q.to_dict()
    assert d["mrtd"] == expected["mrtd"] and d["rtmrs"] == expected["rtmr"]
    assert d["report_data"] == expected["reportdata"]
