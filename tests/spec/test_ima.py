"""IMA list codec vectors (pytest and MicroPython)."""

import struct

from shared_spec import ima
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256
from shared_spec.errors import FormatError, LimitError, SpecError
from shared_spec.replay import replay
from tests.spec._compat import hash_provider, raises


def _ng(h, path, content_digest, name="ima-ng", extra=()):
    d = b"sha256:\x00" + content_digest
    fields = [d, path + b"\x00"] + list(extra)
    tdata = ima.join_fields(fields)
    return ima.ImaEntry(10, h.digest(ALG_SHA1, tdata), name, tdata)


def test_ascii_binary_round_trip_and_replay():
    h = hash_provider()
    entries = [_ng(h, b"/usr/bin/ls", b"\x11" * 32), _ng(h, b"/a b/c", b"\x22" * 32),
               _ng(h, b"/sig", b"\x33" * 32, "ima-sig", [b"\x03\x02\x01"])]
    text = b"".join(ima.encode_ima_ascii_line(e) for e in entries)
    back = ima.parse_ima_ascii(text)
    assert [e.template_data for e in back] == [e.template_data for e in entries]
    binary = ima.encode_ima_binary(entries)
    assert ima.encode_ima_binary(ima.parse_ima_binary(binary)) == binary
    assert ima.detect_ima(text) == "ascii" and ima.detect_ima(binary) == "binary"
    res = replay(back, h, "pcr", [ALG_SHA1, ALG_SHA256])
    want = b"\x00" * 32
    for e in entries:
        want = h.digest(ALG_SHA256, want + h.digest(ALG_SHA256, e.template_data))
    assert res.registers[10][ALG_SHA256] == want
    assert ima.check_entries(back, h) == []


def test_violation_extends_ff():
    h = hash_provider()
    tdata = ima.join_fields([b"sha256:\x00" + b"\x00" * 32, b"/x\x00"])
    v = ima.ImaEntry(10, b"\x00" * 20, "ima-ng", tdata)
    res = replay([v], h, "pcr", [ALG_SHA1])
    assert res.registers[10][ALG_SHA1] == h.digest(ALG_SHA1, b"\x00" * 20 + b"\xff" * 20)
    assert [f.code for f in ima.check_entries([v], h)] == ["IMA_VIOLATION"]


def test_ima_template_hashes_padded_name():
    h = hash_provider()
    digest = b"\x44" * 20
    name = b"/etc/passwd"
    hashed = digest + name + b"\x00" * (256 - len(name))
    line = b"10 %s ima %s /etc/passwd\n" % (h.digest(ALG_SHA1, hashed).hex().encode(),
                                           digest.hex().encode())
    (e,) = ima.parse_ima_ascii(line)
    assert ima.check_entries([e], h) == []
    assert ima.parse_ima_binary(ima.encode_ima_binary([e]))[0].template_data == e.template_data


def test_mismatch_is_a_finding_naming_the_entry():
    h = hash_provider()
    e = _ng(h, b"/bin/sh", b"\x55" * 32)
    bad = ima.ImaEntry(10, b"\x01" * 20, e.template_name, e.template_data)
    (f,) = ima.check_entries([e, bad], h)
    assert f.code == "IMA_TEMPLATE_HASH_MISMATCH" and f.event == 1


def test_bad_input_errors():
    e = raises(SpecError, ima.parse_ima_ascii, b"10 zz ima-ng sha256:00 /x\n")
    assert "line 1" in e.message
    raises(FormatError, ima.parse_ima_ascii, b"10 00\n")
    big = struct.pack("<I", 10) + b"\0" * 20 + struct.pack("<I", 6) + b"ima-ng" + \
        struct.pack("<I", 0x7FFFFFFF)
    raises(LimitError, ima.parse_ima_binary, big)


def test_pcr_field_mapping_to_cc_mr():
    h = hash_provider()
    e = _ng(h, b"/x", b"\x00" * 32)
    e2 = ima.ImaEntry(2, e.template_hash, e.template_name, e.template_data)
    assert [x.index for x in ima.to_cc_mr([e, e2])] == [3, 3]
    assert [x.index for x in ima.to_cc_mr([e2], "pcr")] == [2]
