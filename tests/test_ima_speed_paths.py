"""The CPython fast paths of shared_spec.ima against its portable code.

``ima.FAST_PATHS`` selects, on CPython, the inline ima-ng ascii decoder, the
one-unpack binary entry layout, hasher ``copy()`` in the batch replay and a GC
pause while entries are built. MicroPython runs the portable code, so every
fast path must give the same entries, the same errors (type, message, offset,
field, parsed count) and the same replay as the portable one; these tests
compare them on generated and mutated lists. The batch replay hook
(``ImaEntry.extend_run``) is compared with the per-event replay protocol, and
both with values computed independently by tests/ima_gen.py.
"""

import contextlib
import hashlib
from collections.abc import Callable, Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sdk.hashing import hashlib_provider
from shared_spec import ima
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512
from shared_spec.errors import FormatError, SpecError
from shared_spec.hashing import HashProvider
from shared_spec.replay import replay
from tests.ima_gen import (
    ascii_line,
    binary_record,
    expected_pcr,
    make_ima_ng_ascii,
    make_ima_ng_binary,
    make_ima_ng_records,
)
from tests.test_ima_properties import entries

H = hashlib_provider()
BANKS = [ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512]
_NAMES = {ALG_SHA1: "sha1", ALG_SHA256: "sha256", ALG_SHA384: "sha384", ALG_SHA512: "sha512"}


class _NoCopyHasher:
    """A hasher with update()/digest() only, as MicroPython's are (no copy())."""

    def __init__(self, name: str) -> None:
        self._h = hashlib.new(name)

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest()


NOCOPY = HashProvider({alg: (lambda n=name: _NoCopyHasher(n)) for alg, name in _NAMES.items()})


class _PerEvent:
    """An IMA entry behind the plain replay protocol (no batch hook): the per-event path."""

    extends = True

    def __init__(self, entry: ima.ImaEntry) -> None:
        self.entry = entry
        self.index = entry.index
        self.offset = entry.offset
        self.digests = entry.digests

    def digest_for(self, alg: int, hashes: HashProvider) -> bytes | None:
        return self.entry.digest_for(alg, hashes)


def test_fast_paths_are_on_under_cpython() -> None:
    assert ima.FAST_PATHS  # otherwise the comparisons below compare the portable path with itself


@contextlib.contextmanager
def portable() -> Iterator[None]:
    """Run shared_spec.ima as MicroPython does (no CPython-only path)."""
    saved = ima.FAST_PATHS
    ima.FAST_PATHS = False
    try:
        yield
    finally:
        ima.FAST_PATHS = saved


def _snapshot(es: list) -> list:
    return [(e.pcr, e.index, bytes(e.template_hash), e.template_hash_alg, e.template_name,
             e.template_data, e.offset, e.big_endian, e.ascii_tail) for e in es]


def _outcome(parse: Callable[[], list]) -> tuple:
    try:
        return ("entries", _snapshot(parse()))
    except SpecError as e:
        return ("error", type(e), e.message, e.offset, e.field, e.source, e.parsed_count)


def _both(parse: Callable[[], list]) -> tuple:
    fast = _outcome(parse)
    with portable():
        slow = _outcome(parse)
    assert fast == slow
    return fast


# -- ascii --------------------------------------------------------------------------------

_hexes = st.binary(max_size=66).map(lambda b: b.hex().encode())
_odd_hex = st.sampled_from([b"", b"0", b"abc", b"zz", b"00 11", b"0x00", b"\xc3\xa9", b"AbCd",
                            b"00\t11", b"0011\r"])


@st.composite
def ng_lines(draw: st.DrawFn) -> bytes:
    """ima-ng / ima-sig style lines, valid or nearly so, in the shapes the fast path sees."""
    pcr = draw(st.sampled_from([b"10", b" 2", b"  3", b"0", b"010", b"4294967295",
                                b"4294967296", b"+1", b"1a", b"", b"\xd9\xa1"]))
    th = draw(st.one_of(st.sampled_from([20, 32, 48, 64]).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)).map(lambda b: b.hex().encode()),
        st.just(b"00" * 20), _hexes, _odd_hex))
    if draw(st.booleans()):
        th = th.upper()
    name = draw(st.sampled_from([b"ima-ng", b"ima-sig", b"ima-ng", b"ima-sig", b"ima-sigv2",
                                 b"ima", b"d-ng|n-ng", b"ima-ng\t"]))
    algo = draw(st.sampled_from([b"sha256:", b"sha1:", b"", b"ima:sha256:", b"sm3:",
                                 b"a:b:", b":", b"sha\x00256:"]))
    digest = draw(st.one_of(_hexes, _odd_hex))
    path = draw(st.binary(max_size=30).filter(lambda b: b"\n" not in b))
    tail = draw(st.sampled_from([b"", b" ", b"  ", b" 00ab", b" sig", b"\r"]))
    parts = [pcr, th, name, algo + digest]
    if draw(st.booleans()):
        parts.append(path)
    return b" ".join(parts) + tail


@settings(max_examples=400)
@given(st.lists(ng_lines(), max_size=6), st.sampled_from([None, ALG_SHA1, ALG_SHA256]),
       st.booleans(), st.sampled_from([b"\n", b"\n\n", b"\n \n"]))
def test_ascii_fast_path_equals_portable_on_ng_lines(lines: list, alg: int | None, be: bool,
                                                     sep: bytes) -> None:
    text = sep.join(lines) + b"\n"
    _both(lambda: ima.parse_ima_ascii(text, "list.txt", be, alg))


@settings(max_examples=200)
@given(st.data(), st.sampled_from([None, ALG_SHA1]), st.booleans())
def test_ascii_fast_path_equals_portable_on_mutated_lists(data: st.DataObject, alg: int | None,
                                                          be: bool) -> None:
    es = data.draw(entries())
    raw = bytearray(ima.encode_ima_ascii(es))
    if raw:
        alphabet = st.sampled_from(b"0aF: \n\x00\t\rxz-|")
        for _ in range(data.draw(st.integers(0, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(alphabet)
    text = bytes(raw)
    got = _both(lambda: ima.parse_ima_ascii(text, None, be, alg))
    if not raw or got[0] == "error":
        return
    # unmutated or still valid: replay agrees between the paths too
    back = ima.parse_ima_ascii(text, None, be, alg)
    with portable():
        slow = ima.parse_ima_ascii(text, None, be, alg)
        want = replay(slow, H, "pcr", [ALG_SHA1, ALG_SHA256]).registers
    assert replay(back, H, "pcr", [ALG_SHA1, ALG_SHA256]).registers == want


def test_ascii_errors_name_line_and_offset() -> None:
    records = make_ima_ng_records(500, seed=3)
    lines = [ascii_line(*r) for r in records]
    for k, bad in ((0, b"zz"), (137, b"0"), (499, b"g" * 40)):
        broken = list(lines)
        broken[k] = broken[k][:3] + bad + broken[k][3 + 40:]
        offset = sum(len(x) for x in broken[:k])
        for fast in (True, False):
            with contextlib.nullcontext() if fast else portable():
                try:
                    ima.parse_ima_ascii(b"".join(broken), "ascii_runtime_measurements")
                except FormatError as e:
                    assert e.message.startswith("line %d: " % (k + 1))
                    assert e.offset == offset and e.field == "template_hash"
                    assert e.parsed_count == k and e.source == "ascii_runtime_measurements"
                else:
                    raise AssertionError("line %d was accepted" % (k + 1))


def test_ascii_ima_sig_without_signature_is_kernel_exact() -> None:
    """ima-sig, no signature: the line ends in a space; the rebuilt template data ends in
    an empty sig field, written out here from ima_template_lib.c independently."""
    fdig = hashlib.sha256(b"x").digest()
    path = b"/usr/bin/true"
    d_ng = b"sha256:\0" + fdig
    tdata = (len(d_ng).to_bytes(4, "little") + d_ng + (len(path) + 1).to_bytes(4, "little") +
             path + b"\0" + (0).to_bytes(4, "little"))
    th = hashlib.sha1(tdata).digest()
    line = b"10 %s ima-sig sha256:%s %s \n" % (th.hex().encode(), fdig.hex().encode(), path)
    (e,) = ima.parse_ima_ascii(line * 1)
    assert e.template_name == "ima-sig" and e.template_data == tdata
    assert ima.check_entries([e], H) == []
    assert e.encode_ascii() == line


# -- binary -------------------------------------------------------------------------------

@settings(max_examples=300)
@given(st.data(), st.sampled_from([ALG_SHA1, ALG_SHA256]), st.booleans())
def test_binary_fast_path_equals_portable(data: st.DataObject, alg: int, be: bool) -> None:
    es = data.draw(entries(alg))
    for e in es:  # make_entry wrote little-endian lengths: rewrite them in the list's order
        td = e.template_data
        if e.template_name == "ima":
            e.template_data = td[:20] + (len(td) - 24).to_bytes(4, "big" if be else "little") + \
                td[24:]
        else:
            e.template_data = ima.join_fields(ima.split_fields(td), be)
        e.big_endian = be
    raw = bytearray(ima.encode_ima_binary(es))
    if raw and data.draw(st.booleans()):
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for blob in (bytes(raw), bytes(raw[:cut]), bytes(raw) * 2):
        _both(lambda b=blob: ima.parse_ima_binary(b, "bin", alg, be))  # type: ignore[misc]


def test_binary_truncation_names_offset_and_count() -> None:
    records = make_ima_ng_records(300, seed=5)
    blobs = [binary_record(p, th, td) for p, th, td, _ in records]
    data = b"".join(blobs)
    starts = [sum(len(b) for b in blobs[:i]) for i in range(len(blobs) + 1)]
    for cut in (starts[200] + 3, starts[200] + 30, starts[299] + len(blobs[299]) - 1):
        complete = sum(1 for i in range(len(blobs)) if starts[i + 1] <= cut)
        for fast in (True, False):
            with contextlib.nullcontext() if fast else portable():
                try:
                    ima.parse_ima_binary(data[:cut], "bin")
                except SpecError as e:
                    assert e.parsed_count == complete and e.source == "bin"
                    assert e.offset is not None and starts[complete] <= e.offset <= cut
                else:
                    raise AssertionError("a list cut at %d was accepted" % cut)


# -- replay -------------------------------------------------------------------------------

@st.composite
def replay_lists(draw: st.DrawFn) -> list:
    """Valid entries, violations, 'ima' entries, unknown-template ascii entries, several
    registers; some as the plain protocol (breaking the batch runs)."""
    es = list(draw(entries()))
    for _ in range(draw(st.integers(0, 3))):
        size = draw(st.sampled_from([20, 32]))
        es.insert(draw(st.integers(0, len(es))), ima.ImaEntry(
            draw(st.sampled_from([10, 2])), b"\0" * size, "ima-ng", b"\0" * 10))
    for _ in range(draw(st.integers(0, 2))):  # no digest for other banks: findings
        es.insert(draw(st.integers(0, len(es))), ima.ImaEntry(
            draw(st.sampled_from([10, 11])), draw(st.binary(min_size=20, max_size=20)),
            "my-template", None, ascii_tail=b" abc"))
    out: list = []
    for e in es:
        if draw(st.booleans()):
            e.index = draw(st.sampled_from([e.index, 10, 11, 3]))
        out.append(_PerEvent(e) if draw(st.integers(0, 4)) == 0 else e)
    return out


def _replay_view(events: list, hashes: HashProvider, banks: list, initial: dict) -> tuple:
    res = replay(events, hashes, "pcr", banks, initial)
    expected = {}
    for index in res.registers:  # a value some prefix gives, and a value none does
        prefix = [ev for ev in events if ev.index == index][:1]
        pre = replay(prefix, hashes, "pcr", banks, initial)
        expected[index] = {alg: pre.value(index, alg) or b"\1" * 20 for alg in banks}
    return (res.registers, [f.to_dict() for f in res.findings], res.event_count,
            [m.to_dict() for m in res.compare(expected)])


@settings(max_examples=200)
@given(replay_lists(), st.lists(st.sampled_from(BANKS), min_size=1, max_size=4, unique=True),
       st.booleans())
def test_batch_replay_equals_per_event_replay(events: list, banks: list, init: bool) -> None:
    initial = {(10, ALG_SHA1): b"\x07" * 20} if init else {}
    plain = [ev if isinstance(ev, _PerEvent) else _PerEvent(ev) for ev in events]
    want = _replay_view(plain, H, banks, initial)
    assert _replay_view(events, H, banks, initial) == want
    assert _replay_view(events, NOCOPY, banks, initial) == want
    with portable():
        assert _replay_view(events, H, banks, initial) == want


def test_batch_replay_matches_independent_values_and_locates_divergence() -> None:
    n, seed, every = 3000, 11, 101
    blob = make_ima_ng_binary(n, seed, every)
    text = make_ima_ng_ascii(n, seed, every)
    for es in (ima.parse_ima_binary(blob), ima.parse_ima_ascii(text)):
        res = replay(es, H, "pcr", [ALG_SHA1, ALG_SHA256])
        assert res.value(10, ALG_SHA1) == expected_pcr(n, seed, every, "sha1")
        assert res.value(10, ALG_SHA256) == expected_pcr(n, seed, every, "sha256")
        # a register that saw only the first 1234 entries: entry #1234 is the first too many
        quoted = {10: {ALG_SHA256: expected_pcr(1234, seed, every, "sha256")}}
        (m,) = res.compare(quoted)
        assert not m.matches and m.first_divergent_event == 1234


class _Rehashed(ima.ImaEntry):
    """A subclass with its own digest_for: the batch hook must not bypass it."""

    def digest_for(self, alg: int, hashes: HashProvider) -> bytes | None:
        d = super().digest_for(alg, hashes)
        return None if d is None else hashes.digest(alg, b"x" + d)


def test_batch_replay_honours_a_subclass_digest_for() -> None:
    records = make_ima_ng_records(50, seed=9)
    es = [_Rehashed(p, th, "ima-ng", td) for p, th, td, _ in records]
    size = hashlib.sha256().digest_size
    want = b"\0" * size
    for _, _, td, _ in records:
        d = hashlib.sha256(b"x" + hashlib.sha256(td).digest()).digest()
        want = hashlib.sha256(want + d).digest()
    assert replay(es, H, "pcr", [ALG_SHA256]).value(10, ALG_SHA256) == want
