"""IMA measurement list vectors (pytest and MicroPython).

Expected bytes are written out here from the kernel's layouts (ima_fs.c,
ima_template_lib.c, ima_crypto.c), never produced by the code under test.
"""

import json
import struct

from shared_spec import ima
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384
from shared_spec.errors import EncodeError, FormatError, LimitError, SpecError, TruncatedError
from shared_spec.ima_templates import field_from_ascii, field_to_ascii, template_fields
from shared_spec.registers import INDEX_CC_MR
from shared_spec.replay import replay
from shared_spec.tcg_log import parse_tcg_log
from tests.spec._compat import Skip, fixtures_dir, hash_provider, raises, read_bytes, require_alg


def _le(v):
    return struct.pack("<I", v)


def _tdata(*fields):
    return b"".join([_le(len(f)) + f for f in fields])


def _record(pcr, th, name, tdata):
    return _le(pcr) + th + _le(len(name)) + name + _le(len(tdata)) + tdata


FDIG = bytes(range(32))
D_NG = b"sha256:\x00" + FDIG
N_NG = b"/usr/bin/true\x00"


def test_ima_ng_binary_vector():
    h = hash_provider()
    tdata = _tdata(D_NG, N_NG)
    th = h.digest(ALG_SHA1, tdata)
    raw = _record(10, th, b"ima-ng", tdata)
    (e,) = ima.parse_ima_binary(raw)
    assert (e.pcr, e.index, e.template_name, e.template_hash) == (10, 10, "ima-ng", th)
    assert e.template_data == tdata and e.offset == 0 and e.extends
    assert [(f.name, f.data) for f in e.fields()] == [("d-ng", D_NG), ("n-ng", N_NG)]
    assert e.file_name() == "/usr/bin/true"
    assert e.file_digest() == ("sha256", FDIG)
    assert e.digests == [(ALG_SHA1, th)]
    assert e.digest_for(ALG_SHA256, h) == h.digest(ALG_SHA256, tdata)
    assert ima.encode_ima_binary([e]) == raw
    line = b"10 " + th.hex().encode() + b" ima-ng sha256:" + FDIG.hex().encode() + \
        b" /usr/bin/true\n"
    assert ima.encode_ima_ascii_line(e) == line
    (back,) = ima.parse_ima_ascii(line)
    assert back.template_data == tdata and back.template_hash == th
    assert ima.detect_ima(raw) == "binary" and ima.detect_ima(line) == "ascii"
    assert ima.check_entries([e, back], h) == []


def _kernel_line(pcr, th, name, texts):
    # ima_ascii_measurements_show: "%2d ", hash, " name", then " " + text per field
    return ("%2d " % pcr).encode() + th.hex().encode() + b" " + name + \
        b"".join([b" " + t for t in texts]) + b"\n"


def _round_trip(h, name, fields, texts, pcr=10):
    """binary <-> entry <-> ascii for one entry whose ascii texts are given."""
    tdata = _tdata(*fields)
    th = h.digest(ALG_SHA1, tdata)
    raw = _record(pcr, th, name, tdata)
    (e,) = ima.parse_ima_binary(raw)
    line = _kernel_line(pcr, th, name, texts)
    assert ima.encode_ima_ascii_line(e) == line, (ima.encode_ima_ascii_line(e), line)
    (a,) = ima.parse_ima_ascii(line)
    assert a.template_data == tdata, name
    assert ima.encode_ima_binary([a]) == raw
    assert ima.encode_ima_ascii_line(a) == line
    assert ima.check_entries([e, a], h) == []
    return e


def test_every_builtin_template_round_trips():
    h = hash_provider()
    sig = bytes([3, 2, 0, 0, 0, 0, 1, 0x80]) + b"\x55" * 16
    hexsig = sig.hex().encode()
    fd = FDIG.hex().encode()
    _round_trip(h, b"ima-sig", [D_NG, N_NG, sig], [b"sha256:" + fd, b"/usr/bin/true", hexsig])
    # an empty sig prints nothing after its space: the line ends with a space
    _round_trip(h, b"ima-sig", [D_NG, N_NG, b""], [b"sha256:" + fd, b"/usr/bin/true", b""])
    v2 = b"ima:sha256:\x00" + FDIG
    _round_trip(h, b"ima-ngv2", [v2, N_NG], [b"ima:sha256:" + fd, b"/usr/bin/true"])
    verity = b"verity:sha256:\x00" + FDIG
    _round_trip(h, b"ima-sigv2", [verity, N_NG, sig],
                [b"verity:sha256:" + fd, b"/usr/bin/true", hexsig])
    buf = b"BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro"
    e = _round_trip(h, b"ima-buf", [b"sha256:\x00" + FDIG, b"kexec-cmdline\x00", buf],
                    [b"sha256:" + fd, b"kexec-cmdline", buf.hex().encode()])
    assert e.fields()[2].to_dict() == {"field": "buf", "hex": buf.hex()}
    dmod = b"sha512:\x00" + b"\x07" * 64
    _round_trip(h, b"ima-modsig", [D_NG, N_NG, b"", dmod, sig],
                [b"sha256:" + fd, b"/usr/bin/true", b"", b"sha512:" + b"07" * 64, hexsig])
    _round_trip(h, b"ima-modsig", [D_NG, N_NG, sig, b"", b""],
                [b"sha256:" + fd, b"/usr/bin/true", hexsig, b"", b""])
    # evm-sig: uid/gid are u32, mode u16, printed in decimal
    _round_trip(h, b"evm-sig",
                [D_NG, N_NG, b"\x05\x02" + b"\x11" * 8, b"security.ima|security.selinux",
                 _le(0x12) + _le(0x20), b"\xaa" * 0x32, _le(1000), _le(100),
                 struct.pack("<H", 0o100755)],
                [b"sha256:" + fd, b"/usr/bin/true", b"0502" + b"11" * 8,
                 b"security.ima|security.selinux", b"1200000020000000", b"aa" * 0x32,
                 b"1000", b"100", b"33261"])
    # a template set with ima_template_fmt= is listed under its format
    _round_trip(h, b"d-ng|n-ng|sig", [D_NG, N_NG, sig], [b"sha256:" + fd, b"/usr/bin/true",
                                                           hexsig])


def test_ima_template_hashes_name_padded_to_256():
    h = hash_provider()
    digest = b"\x44" * 20
    name = b"/etc/passwd"
    hashed = digest + name + b"\x00" * (256 - len(name))
    th = h.digest(ALG_SHA1, hashed)
    # binary: digest without length, then u32 strlen + name without NUL
    raw = _le(10) + th + _le(3) + b"ima" + digest + _le(len(name)) + name
    (e,) = ima.parse_ima_binary(raw)
    assert e.hashed_data() == hashed and e.file_name() == "/etc/passwd"
    assert ima.encode_ima_binary([e]) == raw
    line = b"10 " + th.hex().encode() + b" ima " + digest.hex().encode() + b" /etc/passwd\n"
    assert ima.encode_ima_ascii_line(e) == line
    (a,) = ima.parse_ima_ascii(line)
    assert ima.encode_ima_binary([a]) == raw
    assert a.digest_for(ALG_SHA256, h) == h.digest(ALG_SHA256, hashed)
    assert ima.check_entries([e, a], h) == []


def test_pcr_field_printed_with_2d():
    h = hash_provider()
    tdata = _tdata(D_NG, N_NG)
    th = h.digest(ALG_SHA1, tdata)
    line = b" 2 " + th.hex().encode() + b" ima-ng sha256:" + FDIG.hex().encode() + \
        b" /usr/bin/true\n"
    (e,) = ima.parse_ima_ascii(line)
    assert e.pcr == 2 and e.template_data == tdata
    assert ima.encode_ima_ascii_line(e) == line
    e100 = ima.parse_ima_binary(_record(100, th, b"ima-ng", tdata))[0]
    assert ima.encode_ima_ascii_line(e100).startswith(b"100 ")


def test_violation_extends_ff_in_every_bank():
    h = hash_provider()
    # a violation's d-ng holds a zero digest, its template hash is zero
    tdata = _tdata(b"sha256:\x00" + b"\x00" * 32, b"/var/log/x\x00")
    raw = _record(10, b"\x00" * 20, b"ima-ng", tdata)
    (v,) = ima.parse_ima_binary(raw)
    assert v.is_violation
    res = replay([v], h, "pcr", [ALG_SHA1, ALG_SHA256])
    assert res.registers[10][ALG_SHA1] == h.digest(ALG_SHA1, b"\x00" * 20 + b"\xff" * 20)
    assert res.registers[10][ALG_SHA256] == h.digest(ALG_SHA256, b"\x00" * 32 + b"\xff" * 32)
    (f,) = ima.check_entries([v], h)
    assert f.code == "IMA_VIOLATION" and f.severity == "warning" and "/var/log/x" in f.message


def test_replay_rehashes_template_data():
    h = hash_provider()
    good = _tdata(D_NG, N_NG)
    forged = _tdata(b"sha256:\x00" + b"\x66" * 32, N_NG)
    th = h.digest(ALG_SHA1, good)
    # the logged hash is kept, the data altered: replay follows the data
    (e,) = ima.parse_ima_binary(_record(10, th, b"ima-ng", forged))
    res = replay([e], h, "pcr", [ALG_SHA1])
    assert res.registers[10][ALG_SHA1] == h.digest(ALG_SHA1, b"\x00" * 20 +
                                                   h.digest(ALG_SHA1, forged))
    (f,) = ima.check_entries([e], h)
    assert f.code == "IMA_TEMPLATE_HASH_MISMATCH" and f.event == 0
    assert "/usr/bin/true" in f.message and f.evidence["path"] == "/usr/bin/true"


def test_mismatch_names_entry_number_and_path():
    h = hash_provider()
    t1 = _tdata(D_NG, b"boot_aggregate\x00")
    t2 = _tdata(D_NG, b"/bin/sh\x00")
    first = _record(10, h.digest(ALG_SHA1, t1), b"ima-ng", t1)
    es = ima.parse_ima_binary(first + _record(10, b"\x01" * 20, b"ima-ng", t2))
    (f,) = ima.check_entries(es, h)
    assert f.code == "IMA_TEMPLATE_HASH_MISMATCH" and f.event == 1
    assert "#1" in f.message and "/bin/sh" in f.message
    assert f.offset == len(first) and f.evidence["computed"] == h.digest(ALG_SHA1, t2).hex()


def test_boot_aggregate_not_first():
    h = hash_provider()
    t1 = _tdata(D_NG, N_NG)
    t2 = _tdata(D_NG, b"boot_aggregate\x00")
    es = ima.parse_ima_binary(_record(10, h.digest(ALG_SHA1, t1), b"ima-ng", t1) +
                              _record(10, h.digest(ALG_SHA1, t2), b"ima-ng", t2))
    (f,) = ima.check_entries(es, h)
    assert f.code == "IMA_BOOT_AGGREGATE_NOT_FIRST" and f.event == 1
    assert ima.check_entries(es[1:] + es[:1], h) == []


def test_sha256_list_and_big_endian():
    h = hash_provider()
    tdata = _tdata(D_NG, N_NG)
    th = h.digest(ALG_SHA256, tdata)
    raw = _record(10, th, b"ima-ng", tdata)
    (e,) = ima.parse_ima_binary(raw, template_hash_alg=ALG_SHA256)
    assert e.template_hash_alg == ALG_SHA256 and ima.check_entries([e], h) == []
    assert ima.sniff_ima_binary(raw) == (ALG_SHA256, False)
    # a big-endian kernel without ima_canonical_fmt: every u32 big-endian, and the
    # template hash covers the big-endian field lengths
    be = lambda v: struct.pack(">I", v)  # noqa: E731
    tdata_be = be(len(D_NG)) + D_NG + be(len(N_NG)) + N_NG
    th_be = h.digest(ALG_SHA1, tdata_be)
    raw_be = be(10) + th_be + be(6) + b"ima-ng" + be(len(tdata_be)) + tdata_be
    (b,) = ima.parse_ima_binary(raw_be, big_endian=True)
    assert b.pcr == 10 and b.file_name() == "/usr/bin/true"
    assert ima.check_entries([b], h) == []
    assert ima.encode_ima_binary([b]) == raw_be
    raises(EncodeError, ima.encode_ima_binary, [b], False)
    assert ima.sniff_ima_binary(raw_be) == (ALG_SHA1, True)
    (a,) = ima.parse_ima_ascii(ima.encode_ima_ascii_line(b), big_endian=True)
    assert a.template_data == tdata_be


def test_unknown_templates_kept_raw():
    h = hash_provider()
    tdata = _tdata(b"\x01\x02", b"abc")
    raw = _record(11, h.digest(ALG_SHA1, tdata), b"ima-foo", tdata)
    (e,) = ima.parse_ima_binary(raw)
    assert [(f.name, f.data) for f in e.fields()] == [("field0", b"\x01\x02"),
                                                      ("field1", b"abc")]
    assert ima.encode_ima_binary([e]) == raw and ima.check_entries([e], h) == []
    raises(EncodeError, ima.encode_ima_ascii_line, e)
    th = h.digest(ALG_SHA1, b"x")
    line = b"11 " + th.hex().encode() + b" ima-foo some thing  else\n"
    (a,) = ima.parse_ima_ascii(line)
    assert a.template_data is None and ima.encode_ima_ascii_line(a) == line
    assert a.digest_for(ALG_SHA1, h) == th and a.digest_for(ALG_SHA256, h) is None
    assert [f.code for f in ima.check_entries([a], h)] == ["IMA_TEMPLATE_UNVERIFIABLE"]
    raises(EncodeError, ima.encode_ima_binary, [a])


def test_malformed_template_data_is_a_finding():
    h = hash_provider()
    tdata = _le(50) + b"short"
    (e,) = ima.parse_ima_binary(_record(10, h.digest(ALG_SHA1, tdata), b"ima-ng", tdata))
    assert [f.code for f in ima.check_entries([e], h)] == ["IMA_TEMPLATE_DATA_MALFORMED"]
    assert [f.name for f in e.fields()] == ["raw"]
    raises(EncodeError, ima.encode_ima_ascii_line, e)


def test_binary_errors_name_offsets():
    h = hash_provider()
    tdata = _tdata(D_NG, N_NG)
    good = _record(10, h.digest(ALG_SHA1, tdata), b"ima-ng", tdata)
    e = raises(LimitError, ima.parse_ima_binary, good + good[:-1])
    assert e.parsed_count == 1 and e.offset == len(good) + 34
    e = raises(TruncatedError, ima.parse_ima_binary, good + good[:30])
    assert e.parsed_count == 1 and e.offset == len(good) + 28
    big = _le(10) + b"\0" * 20 + _le(6) + b"ima-ng" + _le(0x7FFFFFFF)
    e = raises(LimitError, ima.parse_ima_binary, big)
    assert e.offset == 34 and e.field == "template_data_len"
    e = raises(LimitError, ima.parse_ima_binary, _le(10) + b"\0" * 20 + _le(0) + b"x" * 8)
    assert e.offset == 24
    e = raises(FormatError, ima.parse_ima_binary, _le(10) + b"\0" * 20 + _le(3) + b"i\nx" +
               _le(0))
    assert e.offset == 28
    assert ima.parse_ima_binary(b"") == []


def test_ascii_errors_name_line_and_offset():
    good = b"10 " + b"00" * 20 + b" ima-ng sha256:" + b"00" * 32 + b" /x\n"
    e = raises(FormatError, ima.parse_ima_ascii, good + b"\n10 zz ima-ng sha256:00 /x\n")
    assert "line 3" in e.message and e.offset == len(good) + 1 and e.parsed_count == 1
    e = raises(FormatError, ima.parse_ima_ascii, b"10 00\n")
    assert "line 1" in e.message and e.offset == 0
    raises(SpecError, ima.parse_ima_ascii, b"x0 " + good[3:])
    raises(SpecError, ima.parse_ima_ascii, good.replace(b"sha256:00", b"sha256:0g"))
    raises(SpecError, ima.parse_ima_ascii, good.replace(b"ima-ng", b"ima-ngv2"))
    assert ima.parse_ima_ascii(b"\n\n") == []


def test_field_codec():
    assert template_fields("ima-sigv2") == ("d-ngv2", "n-ng", "sig")
    assert template_fields("d-ng|n-ng|buf") == ("d-ng", "n-ng", "buf")
    assert template_fields("d-ng|bogus") is None and template_fields("ima-x") is None
    assert field_to_ascii("d-ng", b"sha1:\x00\x01\x02") == b"sha1:0102"
    assert field_from_ascii("d-ng", b"sha1:0102") == b"sha1:\x00\x01\x02"
    assert field_to_ascii("imode", struct.pack(">H", 0o644), True) == b"420"
    assert field_from_ascii("iuid", b"7") == _le(7)
    raises(FormatError, field_from_ascii, "d-ngv2", b"sha256:00")
    raises(FormatError, field_from_ascii, "sig", b"0 1")


def test_to_cc_mr():
    h = hash_provider()
    tdata = _tdata(D_NG, N_NG)
    th = h.digest(ALG_SHA1, tdata)
    es = ima.parse_ima_binary(_record(2, th, b"ima-ng", tdata) +
                              _record(10, th, b"ima-ng", tdata))
    assert [x.index for x in ima.to_cc_mr(es)] == [3, 3]
    assert [x.pcr for x in ima.to_cc_mr(es)] == [2, 10]
    assert [x.index for x in ima.to_cc_mr(es[:1], "pcr")] == [2]
    assert [x.index for x in ima.to_cc_mr(es[:1], "rtmr")] == [3]
    raises(SpecError, ima.to_cc_mr, es[1:], "rtmr")
    raises(SpecError, ima.to_cc_mr, ima.parse_ima_binary(_record(16, th, b"ima-ng", tdata)))


def test_boot_aggregate_definition():
    h = hash_provider()
    pcrs = {i: bytes([i]) * 32 for i in range(24)}
    want = h.digest(ALG_SHA256, b"".join([bytes([i]) * 32 for i in range(10)]))
    assert ima.boot_aggregate(pcrs, ALG_SHA256, h) == want
    assert ima.boot_aggregate(pcrs, ALG_SHA256, h, True) == want
    want8 = h.digest(ALG_SHA256, b"".join([bytes([i]) * 32 for i in range(8)]))
    assert ima.boot_aggregate(pcrs, ALG_SHA256, h, False) == want8
    sha1 = {i: bytes([i]) * 20 for i in range(10)}
    assert ima.boot_aggregate(sha1, ALG_SHA1, h) == \
        h.digest(ALG_SHA1, b"".join([bytes([i]) * 20 for i in range(8)]))
    raises(FormatError, ima.boot_aggregate, {0: b"\0" * 32}, ALG_SHA256, h)


def _tdx_dir():
    path = fixtures_dir() + "/tdx-cc-trusted-api"
    try:
        read_bytes(path + "/expected.json")
    except OSError:
        raise Skip("tdx-cc-trusted-api fixture absent") from None
    return path


def test_tdx_fixture_ima_over_rtmr2():
    require_alg(ALG_SHA384)
    path = _tdx_dir()
    h = hash_provider()
    expected = json.loads(read_bytes(path + "/expected.json"))
    (e,) = ima.parse_ima_ascii(read_bytes(path + "/ima_log.bin"))
    assert e.pcr == 2 and e.template_hash_alg == ALG_SHA384
    assert h.digest(ALG_SHA384, e.template_data) == e.template_hash
    assert ima.encode_ima_ascii_line(e) == read_bytes(path + "/ima_log.bin").rstrip(b"\n") + b"\n"
    ccel = parse_tcg_log(read_bytes(path + "/ccel_data.bin"))
    res = replay(ccel.events + ima.to_cc_mr([e]), h, INDEX_CC_MR, [ALG_SHA384])
    rtmrs = expected["quote"]["rtmr"]
    assert res.registers[3][ALG_SHA384].hex() == rtmrs[2]
