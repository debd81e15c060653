"""shared_spec._speedups (the optional C kernels) against shared_spec's Python.

The C module decodes blocks of kernel-form ima-ng ascii lines into ImaEntry
objects and extends every bank of a run of entries with OpenSSL. The Python
in shared_spec/ima.py defines both results: these tests run the same input
through both paths (``ima.SPEEDUPS`` set and None) on generated, mutated and
real lists and require the same entries, errors and register values; they
also check the kernels against values computed here with hashlib, that each
declines (changing nothing) outside its case, and that they keep reference
counts balanced.
"""

import contextlib
import hashlib
import os
import sys
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sdk.hashing import hashlib_provider
from shared_spec import ima
from shared_spec.algorithms import (
    ALG_SHA1,
    ALG_SHA3_256,
    ALG_SHA256,
    ALG_SHA384,
    ALG_SHA512,
    ALG_SM3_256,
)
from shared_spec.replay import replay
from tests.fixtures import fixtures_dir
from tests.ima_gen import ascii_line, expected_pcr, make_ima_ng_ascii, make_ima_ng_records
from tests.test_ima_speed_paths import _outcome, _snapshot, ng_lines, replay_lists

H = hashlib_provider()
NATIVE = ima.SPEEDUPS
needs_native = pytest.mark.skipif(NATIVE is None, reason="CVMCHAIN_PURE_PYTHON is set")


def test_the_c_kernels_are_built() -> None:
    """scripts/setup.sh installs what the build needs: a missing module is a defect."""
    if os.environ.get("CVMCHAIN_PURE_PYTHON"):
        pytest.skip("CVMCHAIN_PURE_PYTHON is set: the C kernels are off on purpose")
    assert NATIVE is not None, (
        "shared_spec._speedups is not built: install gcc, python3-dev and libssl-dev, then "
        "pip install -e . again (scripts/setup.sh does)")


@contextlib.contextmanager
def python_only() -> Iterator[None]:
    saved = ima.SPEEDUPS
    ima.SPEEDUPS = None
    try:
        yield
    finally:
        ima.SPEEDUPS = saved


def _both(parse: Callable[[], list]) -> tuple:
    native = _outcome(parse)
    with python_only():
        python = _outcome(parse)
    assert native == python
    return native


# -- the ascii block decoder ---------------------------------------------------------------

def _bulk(block: bytes, pos: int, be: bool, alg: int | None) -> tuple:
    out: list = []
    took = ima._bulk_ima_ng(block, pos, be, alg, out)
    assert all(type(e) is ima.ImaEntry for e in out)
    return took, _snapshot(out)


def _bulk_both(block: bytes, pos: int, be: bool, alg: int | None) -> tuple:
    native = _bulk(block, pos, be, alg)
    with python_only():
        python = _bulk(block, pos, be, alg)
    assert native == python
    return native


@st.composite
def kernel_lines(draw: st.DrawFn) -> list:
    """Kernel-form ima-ng lines (what the block decoder takes), some with one edit."""
    n = draw(st.integers(1, 8))
    records = make_ima_ng_records(n, seed=draw(st.integers(0, 1000)),
                                  violation_every=draw(st.sampled_from([0, 2])),
                                  pcr=draw(st.sampled_from([10, 2, 0, 4294967295])))
    lines = [ascii_line(*r).rstrip(b"\n") for r in records]
    if draw(st.booleans()):
        lines = [ln.upper() if draw(st.integers(0, 5)) == 0 else ln for ln in lines]
    return lines


_EDITS = st.sampled_from([b" ", b"  ", b"\t", b"\x00", b"\r", b"g", b"G", b":", b"0", b"a",
                          b"", b"ima-sig", b"sha1:", b"\xff", b"4294967296", b"-"])


@settings(max_examples=500)
@given(kernel_lines(), st.data(), st.booleans(), st.sampled_from([None, ALG_SHA1, ALG_SHA256]),
       st.integers(0, 1 << 20))
def test_block_decoder_equals_python(lines: list, data: st.DataObject, be: bool,
                                     alg: int | None, pos: int) -> None:
    block = bytearray(b"\n".join(lines))
    for _ in range(data.draw(st.integers(0, 3))):  # edits anywhere, kept or breaking
        at = data.draw(st.integers(0, len(block)))
        cut = data.draw(st.integers(0, 2))
        block[at:at + cut] = data.draw(_EDITS)
    _bulk_both(bytes(block), pos, be, alg)


@settings(max_examples=300)
@given(st.lists(ng_lines(), min_size=1, max_size=6), st.booleans(),
       st.sampled_from([None, ALG_SHA1, ALG_SHA256, ALG_SHA384]))
def test_block_decoder_equals_python_on_near_ima_ng_lines(lines: list, be: bool,
                                                          alg: int | None) -> None:
    _bulk_both(b"\n".join(lines), 7, be, alg)


def test_block_decoder_takes_kernel_lines() -> None:
    """The case the kernel prints: taken by C, with the offsets and bytes of the lines."""
    records = make_ima_ng_records(40, seed=5, violation_every=7, pcr=2)
    lines = [ascii_line(*r).rstrip(b"\n") for r in records]
    assert lines[0].startswith(b" 2 ")  # "%2d": the leading-space form
    took, snap = _bulk_both(b"\n".join(lines), 100, False, None)
    assert took
    offset = 100
    for (pcr, index, th, alg, name, tdata, off, be, tail), (p, want_th, want_td, _), ln in \
            zip(snap, records, lines, strict=True):
        assert (pcr, index, th, alg, name, tdata, off, be, tail) == (
            p, p, want_th, ALG_SHA1, "ima-ng", want_td, offset, False, None)
        offset += len(ln) + 1


@pytest.mark.parametrize("block", [
    b"10 " + b"ab" * 20 + b" ima-sig sha256:" + b"00" * 32 + b" /x",    # another template
    b"10 " + b"ab" * 20 + b" ima-ng sha256:" + b"00" * 32 + b" /x\n"    # hash sizes differ
    b"10 " + b"ab" * 32 + b" ima-ng sha256:" + b"00" * 32 + b" /y",
    b"10 " + b"ab" * 20 + b" ima-ng sha256:" + b"00" * 32 + b" /x\n"    # digest algos differ
    b"10 " + b"ab" * 20 + b" ima-ng sha512:" + b"00" * 32 + b" /y",
    b"10 " + b"ab" * 20 + b" ima-ng sha256:" + b"00" * 32 + b" /x y",   # a space in the name
    b"10 " + b"ab" * 19 + b"zz ima-ng sha256:" + b"00" * 32 + b" /x",   # not hex
    b"4294967296 " + b"ab" * 20 + b" ima-ng sha256:" + b"00" * 32 + b" /x",  # PCR > u32
    b"10 " + b"ab" * 21 + b" ima-ng sha256:" + b"00" * 32 + b" /x",     # 21 bytes: no alg
    b" 2 " + b"ab" * 20 + b" ima-ng sha256:" + b"00" * 32 + b" /x\n"    # lead on one line only
    b"10 " + b"ab" * 20 + b" ima-ng sha256:" + b"00" * 32 + b" /y",
    b"",
])
def test_block_decoder_declines_what_python_declines(block: bytes) -> None:
    assert _bulk_both(block, 0, False, None) == (False, [])


@settings(max_examples=150)
@given(st.lists(kernel_lines(), min_size=1, max_size=4), st.integers(64, 2048), st.booleans())
def test_whole_lists_equal_python_across_blocks(groups: list, block_size: int, be: bool) -> None:
    """parse_ima_ascii cut into small blocks: C blocks, Python blocks and errors agree on
    entries, offsets and line numbers."""
    text = b"\n".join(b"\n".join(g) for g in groups) + b"\n"
    if len(groups) > 1:  # one line the block decoder cannot take, to mix both paths
        text = text.replace(b" ima-ng ", b" ima-sig ", 1)
    saved = ima.BULK_BLOCK
    ima.BULK_BLOCK = block_size
    try:
        _both(lambda: ima.parse_ima_ascii(text, "list.txt", be))
        broken = text + b"10 zz ima-ng sha256:00 /bad\n"
        assert _both(lambda: ima.parse_ima_ascii(broken, "list.txt", be))[0] == "error"
    finally:
        ima.BULK_BLOCK = saved


# -- the bank extender ---------------------------------------------------------------------

ALL_BANKS = [ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512, ALG_SHA3_256]
if H.supports(ALG_SM3_256):
    ALL_BANKS.append(ALG_SM3_256)


def _replay_view(events: list, banks: list, initial: dict) -> tuple:
    res = replay(events, H, "pcr", banks, initial)
    return res.registers, [f.to_dict() for f in res.findings], res.event_count


@settings(max_examples=300)
@given(replay_lists(), st.lists(st.sampled_from(ALL_BANKS), min_size=1, max_size=5, unique=True),
       st.booleans())
def test_replay_equals_python(events: list, banks: list, init: bool) -> None:
    initial = {(10, ALG_SHA1): b"\x07" * 20} if init else {}
    saved = ima.NATIVE_RUN_MIN
    ima.NATIVE_RUN_MIN = 1  # these lists are short: let every run reach the C extender
    try:
        native = _replay_view(events, banks, initial)
    finally:
        ima.NATIVE_RUN_MIN = saved
    with python_only():
        assert _replay_view(events, banks, initial) == native


@needs_native
@pytest.mark.parametrize("banks", [["sha1"], ["sha256", "sha1"],
                                   ["sha1", "sha256", "sha384", "sha512"]])
def test_extender_gives_values_computed_with_hashlib(banks: list) -> None:
    """One thread per bank: every bank's value, from 5,000 entries with violations."""
    n, seed, every = 5000, 3, 97
    es = ima.parse_ima_ascii(make_ima_ng_ascii(n, seed, every))
    names = tuple(name.upper() for name in banks)
    values = tuple({10: b"\0" * hashlib.new(name).digest_size} for name in banks)
    assert NATIVE.extend_ima_run(es, ima.ImaEntry, names, values)
    for name, got in zip(banks, values, strict=True):
        assert got == {10: expected_pcr(n, seed, every, name)}


def _run(n: int = 30) -> list:
    return [ima.ImaEntry(10 if i % 3 else 11, th, "ima-ng", td)
            for i, (_, th, td, _) in enumerate(make_ima_ng_records(n, seed=8))]


class _Sub(ima.ImaEntry):
    pass


@needs_native
@pytest.mark.parametrize("spoil", [
    lambda es, vals: es.__setitem__(5, _Sub(10, es[5].template_hash, "ima-ng",
                                            es[5].template_data)),
    lambda es, vals: setattr(es[5], "template_name", "ima"),
    lambda es, vals: setattr(es[5], "template_data", None),
    lambda es, vals: setattr(es[5], "template_data", bytearray(es[5].template_data)),
    lambda es, vals: setattr(es[5], "index", "10"),
    lambda es, vals: vals[0].pop(11),
    lambda es, vals: vals[0].__setitem__(10, b"\0" * 19),
    lambda es, vals: vals[0].__setitem__(10, bytearray(20)),
])
def test_extender_declines_and_changes_nothing(spoil: Callable) -> None:
    es = _run()
    values = ({10: b"\0" * 20, 11: b"\1" * 20}, {10: b"\0" * 32, 11: b"\1" * 32})
    spoil(es, values)
    before = [dict(v) for v in values]
    assert NATIVE.extend_ima_run(es, ima.ImaEntry, ("SHA1", "SHA256"), values) is False
    assert [dict(v) for v in values] == before


@needs_native
def test_extender_declines_a_digest_openssl_lacks() -> None:
    values = ({10: b"\0" * 20, 11: b"\0" * 20},)
    assert NATIVE.extend_ima_run(_run(), ima.ImaEntry, ("NO-SUCH-DIGEST",), values) is False
    assert values == ({10: b"\0" * 20, 11: b"\0" * 20},)


@needs_native
def test_extender_skips_a_register_that_cannot_be_replayed() -> None:
    es = _run()
    values = ({10: None, 11: b"\0" * 32},)
    assert NATIVE.extend_ima_run(es, ima.ImaEntry, ("SHA256",), values)
    want = b"\0" * 32
    for e in es:
        if e.index == 11:
            want = hashlib.sha256(want + hashlib.sha256(e.template_data).digest()).digest()
    assert values == ({10: None, 11: want},)


@needs_native
def test_reference_counts_stay_balanced() -> None:
    """Each kernel, 300 times over: the objects it borrows and stores are not leaked."""
    es = _run(50)
    data = es[7].template_data
    name = "ima-ng"
    text = b"".join(ascii_line(*r) for r in make_ima_ng_records(20, seed=4)).rstrip(b"\n")
    by_size = {20: ALG_SHA1}
    counts = (sys.getrefcount(data), sys.getrefcount(ima.ImaEntry), sys.getrefcount(by_size),
              sys.getrefcount(ALG_SHA1))
    for _ in range(300):
        values = ({10: b"\0" * 20, 11: b"\0" * 20}, {10: b"\0" * 32, 11: b"\0" * 32})
        assert NATIVE.extend_ima_run(es, ima.ImaEntry, ("SHA1", "SHA256"), values)
        out = NATIVE.parse_ima_ng_block(text, 0, False, by_size, ima.ImaEntry, name)
        assert len(out) == 20
        assert NATIVE.parse_ima_ng_block(text + b"\nx", 0, False, by_size, ima.ImaEntry,
                                         name) is None
        del out
    assert counts == (sys.getrefcount(data), sys.getrefcount(ima.ImaEntry),
                      sys.getrefcount(by_size), sys.getrefcount(ALG_SHA1))


# -- real lists ----------------------------------------------------------------------------

def _ima_fixtures() -> list:
    root = fixtures_dir()  # skips when ../shared/fixtures is absent
    found = [p for p in sorted(root.rglob("*")) if p.is_file() and p.stat().st_size and
             ima.detect_ima(p.read_bytes()[:4096]) == "ascii"]
    if not found:
        pytest.skip("no ascii IMA list among the fixtures at %s" % root)
    return found


def test_real_ascii_lists_equal_python() -> None:
    for path in _ima_fixtures():
        data = path.read_bytes()
        got = _both(lambda d=data, p=path: ima.parse_ima_ascii(d, str(p)))
        if got[0] != "entries":
            continue
        es = ima.parse_ima_ascii(data)
        native = replay(es, H, "pcr", [ALG_SHA1, ALG_SHA256, ALG_SHA384]).registers
        with python_only():
            assert replay(es, H, "pcr", [ALG_SHA1, ALG_SHA256, ALG_SHA384]).registers == native
