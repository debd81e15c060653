"""Property tests: IMA and CEL decoders round-trip and fail only with SpecError."""

import struct

from hypothesis import given
from hypothesis import strategies as st

from cloud_sdk.hashing import hashlib_provider
from shared_spec import cel, ima
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256
from shared_spec.errors import SpecError
from shared_spec.replay import replay
from shared_spec.uefi_events import decode_event_data

H = hashlib_provider()
names = st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b"\0" not in b
                                                  and b" " not in b)


@st.composite
def entries(draw: st.DrawFn) -> list:
    out = []
    for _ in range(draw(st.integers(0, 8))):
        path = b"/" + draw(names).replace(b"\r", b"")
        digest = draw(st.binary(min_size=32, max_size=32))
        template = draw(st.sampled_from(["ima-ng", "ima-sig", "ima-buf"]))
        fields = [b"sha256:\x00" + digest, path + b"\x00"]
        if template != "ima-ng":
            fields.append(draw(st.binary(min_size=1, max_size=20)))
        tdata = ima.join_fields(fields)
        out.append(ima.ImaEntry(10, H.digest(ALG_SHA1, tdata), template, tdata))
    return out


@given(entries())
def test_ima_binary_round_trip(es: list) -> None:
    data = ima.encode_ima_binary(es)
    back = ima.parse_ima_binary(data)
    assert ima.encode_ima_binary(back) == data
    assert ima.check_entries(back, H) == []
    a = replay(es, H, "pcr", [ALG_SHA1, ALG_SHA256])
    b = replay(back, H, "pcr", [ALG_SHA1, ALG_SHA256])
    assert a.registers == b.registers


@given(st.binary(max_size=400), st.binary(max_size=400))
def test_random_bytes_fail_only_with_spec_error(raw: bytes, text: bytes) -> None:
    for fn in (ima.parse_ima_binary, ima.parse_ima_ascii, cel.parse_cel):
        for data in (raw, text, b"10 " + text):
            try:
                fn(data)
            except SpecError:
                pass


@given(st.data())
def test_mutated_ima_binary(data: st.DataObject) -> None:
    es = data.draw(entries())
    raw = bytearray(ima.encode_ima_binary(es))
    if not raw:
        return
    for _ in range(data.draw(st.integers(1, 5))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        parsed = ima.parse_ima_binary(bytes(raw))
    except SpecError:
        return
    ima.check_entries(parsed, H)
    replay(parsed, H, "pcr", [ALG_SHA1, ALG_SHA256])


@given(st.integers(0, 0xFFFFFFFF), st.binary(max_size=300))
def test_decode_event_data_never_raises(event_type: int, data: bytes) -> None:
    for t in (event_type, 0x80000001, 0x80000003, 0x80000006, 0x8000000A, 0x8000000B, 4, 3, 6):
        out = decode_event_data(t, data)
        assert out is None or isinstance(out, dict)


def test_cel_record_with_nv_index_round_trips() -> None:
    rec = cel.CelRecord(5, 0x01C10000, [(ALG_SHA256, b"\x09" * 32)], cel.CEL_IMA_TEMPLATE,
                        [(0, b"ima-ng"), (1, struct.pack("<I", 0))], index_is_nv=True)
    rec._widths = (8, 4)
    (back,) = cel.parse_cel(rec.encode())
    assert back.index_is_nv and back.index == 0x01C10000 and back.encode() == rec.encode()
