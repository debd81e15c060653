"""CEL TLV codec vectors (pytest and MicroPython)."""

from shared_spec import cel
from shared_spec.algorithms import ALG_SHA256
from shared_spec.errors import FormatError, LimitError
from shared_spec.event_types import EV_SEPARATOR
from shared_spec.replay import replay
from shared_spec.tcg_log import TcgEvent
from tests.spec._compat import hash_provider, raises


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
    # RECNUM: type 0, length 1 (big-endian u32), value 1
    assert data[:6] == b"\x00\x00\x00\x00\x01\x01"
    assert data[6:12] == b"\x01\x00\x00\x00\x01\x07"
    assert data[12] == cel.CEL_DIGESTS
    assert cel.detect_cel(data)
    (back,) = cel.parse_cel(data)
    assert back.encode() == data and back.index == 7 and back.recnum == 1


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


def test_json_round_trip():
    h = hash_provider()
    records = cel.from_tcg_events(_events(h))
    js = cel.cel_json_records(records)
    assert js[0]["content_type"] == "pcclient_std"
    assert js[1]["digests"][0]["hashAlg"] == "sha256"
    back = cel.parse_cel_json(js)
    assert cel.encode_cel(back) == cel.encode_cel(records)
    raises(FormatError, cel.parse_cel_json, [{"pcr": 1}])


def test_bad_tlv():
    raises(LimitError, cel.parse_cel, b"\x00\x00\x00\x00\xff\x01")
    raises(FormatError, cel.parse_cel, b"\x01\x00\x00\x00\x01\x00")
