"""Property tests for shared_spec.ima: round trips, SpecError-only failures, replay, speed."""

import hashlib
import struct
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sdk.hashing import hashlib_provider
from shared_spec import ima
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384, digest_size
from shared_spec.errors import SpecError
from shared_spec.ima_templates import TEMPLATES, UINT_WIDTHS, template_fields
from shared_spec.replay import replay
from tests.ima_gen import expected_pcr, make_ima_ng_ascii, make_ima_ng_binary

H = hashlib_provider()
ALGOS = [b"sha1", b"sha256", b"sha384", b"sha512", b"md5", b"sm3", b"sha3-256"]
# kernel names: no NUL, no newline (spaces are allowed: older kernels kept them); a
# boot_aggregate anywhere but first is a finding, so none is drawn
names = st.binary(min_size=0, max_size=60).filter(
    lambda b: b"\n" not in b and b"\0" not in b and b != b"boot_aggregate")


@st.composite
def field_value(draw: st.DrawFn, fid: str) -> bytes:
    if fid in ("d-ng", "d-modsig"):
        if fid == "d-modsig" and draw(st.booleans()):
            return b""
        return draw(st.sampled_from(ALGOS)) + b":\0" + draw(st.binary(min_size=16, max_size=64))
    if fid == "d-ngv2":
        kind = draw(st.sampled_from([b"ima", b"verity"]))
        return kind + b":" + draw(st.sampled_from(ALGOS)) + b":\0" + \
            draw(st.binary(min_size=20, max_size=64))
    if fid == "n-ng":
        return draw(names) + b"\0"
    if fid == "xattrnames":
        return draw(st.binary(max_size=40).filter(lambda b: not set(b) & {0, 10, 32}))
    if fid in UINT_WIDTHS:
        if draw(st.booleans()):
            return b""
        return draw(st.binary(min_size=UINT_WIDTHS[fid], max_size=UINT_WIDTHS[fid]))
    return draw(st.binary(max_size=80))


@st.composite
def entries(draw: st.DrawFn, hash_alg: int = ALG_SHA1) -> list:
    out = []
    for _ in range(draw(st.integers(0, 6))):
        template = draw(st.sampled_from([*sorted(TEMPLATES), "d-ng|n-ng|buf"]))
        pcr = draw(st.sampled_from([10, 2, 11, 0, 123]))
        if template == "ima":
            fields = [draw(st.binary(min_size=20, max_size=20)),
                      draw(names.filter(lambda b: len(b) <= 255))]
        else:
            fields = [draw(field_value(fid)) for fid in template_fields(template) or ()]
        e = ima.make_entry(pcr, template, fields, H, hash_alg)
        out.append(e)
    return out


@given(entries())
def test_binary_and_ascii_round_trip(es: list) -> None:
    data = ima.encode_ima_binary(es)
    back = ima.parse_ima_binary(data)
    assert ima.encode_ima_binary(back) == data
    assert ima.check_entries(back, H) == []
    text = ima.encode_ima_ascii(back)
    again = ima.parse_ima_ascii(text)
    assert [e.template_data for e in again] == [e.template_data for e in es]
    assert ima.encode_ima_ascii(again) == text
    assert ima.encode_ima_binary(again) == data
    algs = [ALG_SHA1, ALG_SHA256]
    assert replay(es, H, "pcr", algs).registers == replay(again, H, "pcr", algs).registers


@given(entries(ALG_SHA384))
def test_sha384_list_round_trip(es: list) -> None:
    data = ima.encode_ima_binary(es)
    back = ima.parse_ima_binary(data, template_hash_alg=ALG_SHA384)
    assert ima.encode_ima_binary(back) == data and ima.check_entries(back, H) == []
    again = ima.parse_ima_ascii(ima.encode_ima_ascii(back))
    assert [e.template_hash_alg for e in again] == [ALG_SHA384] * len(es)
    if data:
        assert ima.detect_ima(data) == "binary"


def _exercise(parsed: list) -> None:
    """Everything a caller may do with parsed entries; none of it may raise but SpecError."""
    ima.check_entries(parsed, H)
    replay(parsed, H, "pcr", [ALG_SHA1, ALG_SHA256])
    for e in parsed:
        e.to_dict()
        e.file_digest()
        try:
            e.encode_ascii()
        except SpecError:
            pass


@settings(max_examples=300)
@given(st.binary(max_size=400), st.sampled_from([ALG_SHA1, ALG_SHA256]), st.booleans())
def test_random_bytes_fail_only_with_spec_error(raw: bytes, alg: int, be: bool) -> None:
    for data in (raw, b"10 " + raw, b" 2 " + b"00" * 20 + b" ima-ng " + raw):
        for parse in (lambda d: ima.parse_ima_binary(d, template_hash_alg=alg, big_endian=be),
                      ima.parse_ima_ascii):
            try:
                parsed = parse(data)
            except SpecError:
                continue
            _exercise(parsed)
        ima.detect_ima(data)


@settings(max_examples=200)
@given(st.data())
def test_mutated_lists_fail_only_with_spec_error(data: st.DataObject) -> None:
    es = data.draw(entries())
    for as_text in (False, True):
        raw = bytearray(ima.encode_ima_ascii(es) if as_text else ima.encode_ima_binary(es))
        if not raw:
            continue
        for _ in range(data.draw(st.integers(1, 6))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(raw)))
        for blob in (bytes(raw), bytes(raw[:cut])):
            try:
                parsed = ima.parse_ima_ascii(blob) if as_text else ima.parse_ima_binary(blob)
            except SpecError:
                continue
            if not as_text:
                assert ima.encode_ima_binary(parsed) == blob
            _exercise(parsed)


@given(st.sampled_from([ALG_SHA1, ALG_SHA256, ALG_SHA384]), st.integers(0, 23), st.data())
def test_violation_replays_as_ff(bank: int, pcr: int, data: st.DataObject) -> None:
    es = data.draw(entries())
    size = digest_size(bank) or 0
    tdata = struct.pack("<I", 40) + b"sha256:\0" + b"\0" * 32 + struct.pack("<I", 3) + b"/x\0"
    v = ima.ImaEntry(pcr, b"\0" * 20, "ima-ng", tdata)
    res = replay([v], H, "pcr", [bank])
    start = b"\xff" * size if 17 <= pcr <= 22 else b"\0" * size
    assert res.registers[pcr][bank] == hashlib.new(
        {ALG_SHA1: "sha1", ALG_SHA256: "sha256", ALG_SHA384: "sha384"}[bank],
        start + b"\xff" * size).digest()
    (line,) = ima.parse_ima_ascii(ima.encode_ima_ascii_line(v))
    assert line.is_violation and line.digest_for(bank, H) == b"\xff" * size
    assert [f.code for f in ima.check_entries([v], H)] == ["IMA_VIOLATION"]
    # a violation among other entries: replay from the ascii form matches
    mixed = [*es, v, *es]
    text = ima.encode_ima_ascii(mixed)
    assert replay(ima.parse_ima_ascii(text), H, "pcr", [bank]).registers == \
        replay(mixed, H, "pcr", [bank]).registers


def test_generated_lists_replay_to_independent_value() -> None:
    n, seed, every = 2000, 7, 97
    want1 = expected_pcr(n, seed, every, "sha1")
    want256 = expected_pcr(n, seed, every, "sha256")
    for es in (ima.parse_ima_ascii(make_ima_ng_ascii(n, seed, every)),
               ima.parse_ima_binary(make_ima_ng_binary(n, seed, every))):
        res = replay(es, H, "pcr", [ALG_SHA1, ALG_SHA256])
        assert res.registers[10][ALG_SHA1] == want1
        assert res.registers[10][ALG_SHA256] == want256
        codes = [f.code for f in ima.check_entries(es, H)]
        assert codes == ["IMA_VIOLATION"] * ((n - 1) // every)
    assert ima.encode_ima_ascii(ima.parse_ima_binary(make_ima_ng_binary(n, seed, every))) == \
        make_ima_ng_ascii(n, seed, every)


def _best_of(runs: int, fn) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def test_speed_100k_entries() -> None:
    """parse + replay (SHA-1 bank) of 100,000 ima-ng entries; generous bounds, see the report."""
    n = 100_000
    text = make_ima_ng_ascii(n, 1)
    blob = make_ima_ng_binary(n, 1)
    want = expected_pcr(n, 1)

    def run_ascii() -> None:
        res = replay(ima.parse_ima_ascii(text), H, "pcr", [ALG_SHA1])
        assert res.registers[10][ALG_SHA1] == want

    def run_binary() -> None:
        res = replay(ima.parse_ima_binary(blob), H, "pcr", [ALG_SHA1])
        assert res.registers[10][ALG_SHA1] == want

    t_ascii = _best_of(3, run_ascii)
    t_binary = _best_of(3, run_binary)
    print("100k ima-ng: ascii %.3f s, binary %.3f s (parse + replay SHA-1)" % (t_ascii, t_binary))
    assert t_binary < 3.0 and t_ascii < 4.0
