"""CEL TLV and CEL-JSON vectors (pytest and MicroPython).

Byte layouts are built here from the CEL v1.0 TLV definition (u8 type, u32
big-endian length, value; RECNUM 0, PCR 1, NV_INDEX 2, DIGESTS 3, CEL_MGT 4,
PCCLIENT_STD 5, IMA_TEMPLATE 7); the JSON record is the CEL v1.0 §5.3 example.
"""

import struct

from shared_spec import cel
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256
from shared_spec.errors import EncodeError, FormatError, LimitError, SpecError, TruncatedError
from shared_spec.event_types import EV_COMPACT_HASH, EV_NO_ACTION, EV_SEPARATOR
from shared_spec.replay import replay
from shared_spec.tcg_log import TcgEvent, parse_tcg_log
from tests.spec._compat import fixtures_dir, hash_provider, raises, read_bytes


def _tlv(t, value):
    return struct.pack(">BI", t, len(value)) + value


def _events(h):
    out = []
    for i, (index, data) in enumerate(((0, b"\0\0\0\0"), (7, b"\0\0\0\0"), (0, b"x"))):
        out.append(TcgEvent(index, EV_SEPARATOR + i, [(ALG_SHA256, h.digest(ALG_SHA256, data))],
                            data))
    return out


def test_tlv_layout():
    rec = cel.CelRecord(1, 7, [(ALG_SHA256, b"\x01" * 32)], cel.CEL_PCCLIENT_STD,
                        [(0, b"\x00\x00\x00\x04"), (1, b"ab")])
    rec._widths = (1, 1)
    data = rec.encode()
    want = (_tlv(0, b"\x01") + _tlv(1, b"\x07") + _tlv(3, _tlv(ALG_SHA256, b"\x01" * 32))
            + _tlv(5, _tlv(0, b"\x00\x00\x00\x04") + _tlv(1, b"ab")))
    assert data == want
    assert cel.detect_cel(data)
    (back,) = cel.parse_cel(data)
    assert back.encode() == data and back.index == 7 and back.recnum == 1
    assert back.event_type == 4 and back.data == b"ab" and back.extends


def test_minimal_width_integers_and_management_record():
    # recnum 1234 in two bytes, PCR 3, no digests, CEL_MGT content with firmware_end (2),
    # cel_version 1.0 (nested major 0 / minor 1), cel_timestamp 0x1234 and state_trans kexec
    mgt = (_tlv(2, b"") + _tlv(1, _tlv(0, b"\x01") + _tlv(1, b"\x00"))
           + _tlv(80, b"\x12\x34") + _tlv(81, b"\x02"))
    data = _tlv(0, b"\x04\xd2") + _tlv(1, b"\x03") + _tlv(3, b"") + _tlv(4, mgt)
    (rec,) = cel.parse_cel(data)
    assert rec.recnum == 1234 and rec.index == 3 and rec.digests == []
    assert rec.content_type == cel.CEL_MGT and not rec.extends
    assert rec.mgt_entries() == [{"type": "firmware_end"},
                                 {"type": "cel_version", "data": {"major": 1, "minor": 0}},
                                 {"type": "cel_timestamp", "data": 0x1234},
                                 {"type": "state_trans", "data": "kexec"}]
    assert cel.encode_cel([rec]) == data
    js = cel.cel_json_records([rec])
    assert js[0]["content_type"] == "cel" and js[0]["recnum"] == 1234
    back = cel.parse_cel_json(js)
    assert back[0].mgt_entries() == rec.mgt_entries()
    built = cel.mgt_record(1234, 3, [(cel.MGT_FIRMWARE_END, None), (cel.MGT_CEL_VERSION, (1, 0)),
                                     (cel.MGT_CEL_TIMESTAMP, 0x1234), (cel.MGT_STATE_TRANS, 2)])
    built._widths = (2, 1)
    assert built.encode() == data


def test_nv_index_and_cc_mr_records():
    nv = _tlv(0, b"\x05") + _tlv(2, b"\x01\xc1\x00\x00") + _tlv(3, b"") + _tlv(
        7, _tlv(0, b"ima-ng") + _tlv(1, b"\x00"))
    (rec,) = cel.parse_cel(nv)
    assert rec.index_is_nv and rec.index == 0x01C10000 and rec.template_name == "ima-ng"
    assert rec.encode() == nv
    assert "nv_index" in cel.cel_json_records([rec])[0]
    mr = _tlv(0, b"\0" * 8) + _tlv(108, b"\x04") + _tlv(3, _tlv(4, b"\x11" * 20)) + _tlv(
        80, _tlv(0, b"\x01"))
    (rec,) = cel.parse_cel(mr)
    assert rec.index_type == cel.CEL_CC_MR and rec.index == 4 and rec.encode() == mr
    assert rec.content == _tlv(0, b"\x01")  # unknown content type kept raw
    back = cel.parse_cel_json(cel.cel_json_records([rec]))
    assert back[0].encode() == mr


def test_tcg_to_cel_replays_the_same():
    h = hash_provider()
    evs = _events(h)
    records = cel.from_tcg_events(evs)
    data = cel.encode_cel(records)
    back = cel.parse_cel(data)
    assert cel.encode_cel(back) == data
    a = replay(evs, h, "pcr", [ALG_SHA256])
    b = replay(back, h, "pcr", [ALG_SHA256])
    assert a.registers == b.registers
    again = cel.to_tcg_events(back)
    assert [e.encode() for e in again] == [e.encode() for e in evs]


def test_startup_locality_survives_cel():
    h = hash_provider()
    loc = TcgEvent(0, EV_NO_ACTION, [(ALG_SHA256, b"\0" * 32)], b"StartupLocality\0\x03")
    sep = TcgEvent(0, EV_SEPARATOR, [(ALG_SHA256, h.digest(ALG_SHA256, b"\0" * 4))], b"\0" * 4)
    back = cel.parse_cel(cel.encode_cel(cel.from_events([loc, sep])))
    assert not back[0].extends
    want = replay([loc, sep], h, "pcr", [ALG_SHA256]).registers
    assert replay(back, h, "pcr", [ALG_SHA256]).registers == want
    assert want[0][ALG_SHA256] != replay([sep], h, "pcr", [ALG_SHA256]).registers[0][ALG_SHA256]


def test_fixture_logs_through_cel_tlv_and_json():
    h = hash_provider()
    base = fixtures_dir()
    for path in ("/tpm2-tools/event-gce-ubuntu-2104-log.bin", "/tpm2-tools/event-arch-linux.bin",
                 "/tdx-cc-trusted-api/ccel_data.bin"):
        log = parse_tcg_log(read_bytes(base + path))
        algs = [a for a in log.algorithms if h.supports(a)]
        data = cel.encode_cel(cel.from_events(log.events))
        back = cel.parse_cel(data)
        assert cel.encode_cel(back) == data
        assert replay(back, h, "pcr", algs).registers == replay(log.events, h, "pcr",
                                                                 algs).registers
        js = cel.cel_json_records(back)
        assert cel.encode_cel(cel.parse_cel_json(js)) == data
        assert [e.encode() for e in cel.to_tcg_events(back)] == [e.encode() for e in log.events]


def test_json_round_trip():
    h = hash_provider()
    records = cel.from_tcg_events(_events(h))
    js = cel.cel_json_records(records)
    assert js[0]["content_type"] == "pcclient_std"
    assert js[0]["content"]["event_type"] == "EV_SEPARATOR"
    assert js[1]["digests"][0]["hashAlg"] == "sha256"
    back = cel.parse_cel_json(js)
    assert cel.encode_cel(back) == cel.encode_cel(records)
    assert cel.cel_json_records(back) == js


def test_json_spec_example_record():
    example = {"content": {"event_type": "EV_COMPACT_HASH",
                           "event_data": "44656c6c20436f6e66696775726174696f6e20496e666f726d6174"
                                         "696f6e2032"},
               "content_type": "pcclient_std", "pcr": 6, "recnum": 2,
               "digests": [{"hashAlg": "sha1",
                            "digest": "bac9a8935b720760bcdea2faae75152f5d1e4bea"},
                           {"hashAlg": "sha256",
                            "digest": "d18bf8d221a3a3b08774c8d077328c4b2ca205e4f1618ad4bac2b57"
                                      "86f453bc7"}]}
    (rec,) = cel.parse_cel_json([example])
    assert rec.recnum == 2 and rec.index == 6 and rec.event_type == EV_COMPACT_HASH
    assert rec.data == b"Dell Configuration Information 2"
    assert [a for a, _ in rec.digests] == [ALG_SHA1, ALG_SHA256]
    assert cel.cel_json_records([rec])[0] == example
    # the same record as libcel writes it: lower-case names, numeric hashAlg
    other = dict(example)
    other["content"] = {"event_type": "ev_compact_hash", "event_data": "00"}
    other["digests"] = [{"hashAlg": "0x000B", "digest": "00" * 32}]
    (rec2,) = cel.parse_cel_json([other])
    assert rec2.event_type == EV_COMPACT_HASH and rec2.digests[0][0] == ALG_SHA256


def test_json_pcrlock_and_systemd_records():
    h = hash_provider()
    d = h.digest(ALG_SHA256, b"x")
    recs = cel.parse_cel_json([
        {"pcr": 11, "digests": [{"hashAlg": "sha256", "digest": d.hex()}]},
        {"recnum": 7, "pcr": 11, "digests": [{"hashAlg": "sha256", "digest": d.hex()}],
         "content_type": "systemd", "content": {"string": "enter-initrd", "eventType": "phase"}},
    ])
    assert recs[0].recnum == 0 and recs[0].extends and recs[1].json_content["string"] == \
        "enter-initrd"
    js = cel.cel_json_records(recs)
    assert js[1]["content_type"] == "systemd" and "content_type" not in js[0]
    value = replay(recs, h, "pcr", [ALG_SHA256]).registers[11][ALG_SHA256]
    assert value == h.digest(ALG_SHA256, h.digest(ALG_SHA256, b"\0" * 32 + d) + d)
    raises(EncodeError, recs[0].encode)


def test_json_errors_name_the_record():
    good = {"pcr": 1, "digests": []}
    e = raises(FormatError, cel.parse_cel_json, [good, {"pcr": 1}])
    assert "record 1" in str(e) and e.parsed_count == 1
    e = raises(FormatError, cel.parse_cel_json,
               [good, good, {"pcr": 1, "digests": [{"hashAlg": "sha256", "digest": "00"}]}])
    assert "record 2" in str(e) and "digests[0]" in e.field
    raises(FormatError, cel.parse_cel_json,
           [{"pcr": 1, "digests": [], "content_type": "pcclient_std",
             "content": {"event_type": "EV_NOPE", "event_data": "00"}}])
    raises(FormatError, cel.parse_cel_json, {"pcr": 1})


def test_bad_tlv():
    raises(LimitError, cel.parse_cel, b"\x00\x00\x00\x00\xff\x01")
    raises(FormatError, cel.parse_cel, b"\x01\x00\x00\x00\x01\x00")
    rec = _tlv(0, b"\x01") + _tlv(1, b"\x00") + _tlv(3, b"") + _tlv(5, _tlv(0, b"\0") + _tlv(
        1, b""))
    e = raises(TruncatedError, cel.parse_cel, rec + rec[:7])
    assert e.offset == len(rec) + 6 and e.parsed_count == 1
    # a digest whose length does not match its algorithm, located at the digest TLV
    bad = _tlv(0, b"\x01") + _tlv(1, b"\x00") + _tlv(3, _tlv(4, b"\0" * 19)) + _tlv(
        5, _tlv(0, b"\0") + _tlv(1, b""))
    e = raises(FormatError, cel.parse_cel, bad)
    assert e.offset == 17
    # PCCLIENT_STD content without its event_type field
    bad = _tlv(0, b"\x01") + _tlv(1, b"\x00") + _tlv(3, b"") + _tlv(5, _tlv(1, b""))
    raises(FormatError, cel.parse_cel, bad)
    # a nine-byte record number
    raises(LimitError, cel.parse_cel, _tlv(0, b"\x01" * 9) + rec[6:])
    for cut in range(1, len(rec)):
        try:
            cel.parse_cel(rec[:cut])
        except SpecError:
            continue
        raise AssertionError("truncation at %d accepted" % cut)
