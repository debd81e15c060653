"""IMA ascii lists, block by block: the bulk ima-ng decoder against a reference (both
interpreters).

``shared_spec.ima`` decodes an ascii list in blocks of about ``ima.BULK_BLOCK``
bytes; on CPython a block of kernel-form ima-ng lines is decoded column by column
(``_bulk_ima_ng``), any other block line by line. MicroPython runs the portable
line loop only. Every test here holds on both: entries are compared with a
reference built from the generator's own field values (the kernel's layout written
out in this file, never the parser's output), errors with the line number and
offset computed from the text, whole lists with their lines parsed one at a time.
On CPython the fast and the portable paths are also compared directly, and a
hypothesis test does so on random, mostly kernel-form, lists.
"""

import struct

from shared_spec import ima
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512
from shared_spec.errors import SpecError
from shared_spec.replay import replay
from tests.spec._compat import IS_MICROPYTHON, hash_provider

_HASH_ALG = {20: ALG_SHA1, 32: ALG_SHA256, 48: ALG_SHA384, 64: ALG_SHA512}
#: byte sizes of the blocks the tests cut lists into (the default last)
_BLOCKS = (1, 90, 700, 1 << 18)


class _Rng:
    """xorshift32: the same numbers on CPython and MicroPython."""

    def __init__(self, seed):
        self.s = (seed * 2654435761) & 0xFFFFFFFF or 1

    def below(self, n):
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self.s = s
        return s % n

    def pick(self, seq):
        return seq[self.below(len(seq))]

    def raw(self, n):
        return bytes([self.below(256) for _ in range(n)])


# name bytes: anything the kernel prints but whitespace and NUL (colons and UTF-8 included)
_NAME_BYTES = bytes([c for c in range(1, 256) if c not in b" \t\n\r\x0b\x0c"])


def _tdata(algo, digest, name, be):
    """ima-ng template data, from ima_template_lib.c: d-ng = "<algo>:" NUL digest,
    n-ng = name NUL, each behind a u32 length in the kernel's byte order."""
    fmt = ">I" if be else "<I"
    d_ng = algo + b":\x00" + digest
    n_ng = name + b"\x00"
    return struct.pack(fmt, len(d_ng)) + d_ng + struct.pack(fmt, len(n_ng)) + n_ng


def _kernel_line(pcr, th, algo, digest, name):
    """``ima_ascii_measurements_show`` of an ima-ng entry (PCR printed with %2d)."""
    return ("%2d " % pcr).encode() + th.hex().encode() + b" ima-ng " + algo + b":" + \
        digest.hex().encode() + b" " + name


def _records(seed, n, uniform):
    """``n`` (pcr, template hash, algo, digest, name): one register, SHA-1 template hashes
    and sha256 digests when ``uniform`` (one bulk block), varied otherwise."""
    rnd = _Rng(seed)
    out = []
    for i in range(n):
        if uniform:
            pcr, hsize, algo, dsize = 10, 20, b"sha256", 32
        else:
            pcr = rnd.pick((10, 10, 10, 11, 2, 0, 23, 4294967295))
            hsize = rnd.pick((20, 20, 20, 32, 48, 64))
            algo, dsize = rnd.pick(((b"sha256", 32), (b"sha1", 20), (b"sha512", 64),
                                    (b"sm3", 32), (b"md5", 16), (b"verity:sha256", 32)))
        th = rnd.raw(hsize)
        name = ("/usr/lib/lib%d.so" % i).encode() if uniform and rnd.below(2) else \
            bytes([rnd.pick(_NAME_BYTES) for _ in range(1 + rnd.below(40))])
        out.append((pcr, th, algo, rnd.raw(dsize), name))
    return out


def _expected(records, be=False):
    """The entries of the list of ``records``, from the records: a snapshot each."""
    out = []
    offset = 0
    for pcr, th, algo, digest, name in records:
        out.append((pcr, pcr, th, _HASH_ALG[len(th)], "ima-ng",
                    _tdata(algo, digest, name, be), offset, be, None))
        offset += len(_kernel_line(pcr, th, algo, digest, name)) + 1
    return out


def _snapshot(entries):
    return [(e.pcr, e.index, bytes(e.template_hash), e.template_hash_alg, e.template_name,
             e.template_data, e.offset, e.big_endian, e.ascii_tail) for e in entries]


def _text(records):
    return b"".join([_kernel_line(*r) + b"\n" for r in records])


def _with_block(size, fn, *args):
    saved = ima.BULK_BLOCK
    ima.BULK_BLOCK = size
    try:
        return fn(*args)
    finally:
        ima.BULK_BLOCK = saved


def _outcome(*args):
    """The snapshot of ``parse_ima_ascii(*args)``, or what its error says."""
    try:
        return ("entries", _snapshot(ima.parse_ima_ascii(*args)))
    except SpecError as e:
        return ("error", type(e).__name__, e.message, e.offset, e.field, e.source,
                e.parsed_count)


def _portable(*args):
    """:func:`_outcome` on the portable path (the only one MicroPython has)."""
    saved = ima.FAST_PATHS
    ima.FAST_PATHS = False
    try:
        return _outcome(*args)
    finally:
        ima.FAST_PATHS = saved


def _paths(*args):
    """The outcome of ``parse_ima_ascii(*args)`` on every path this interpreter has, in
    blocks of every size in _BLOCKS (they must agree)."""
    outcomes = [_with_block(size, _outcome, *args) for size in _BLOCKS]
    outcomes.append(_portable(*args))
    for o in outcomes[1:]:
        assert o == outcomes[0]
    return outcomes[0]


def test_kernel_form_lists_decode_to_the_reference():
    for seed, n, uniform in ((1, 200, True), (2, 200, False), (3, 1, True), (4, 37, True)):
        records = _records(seed, n, uniform)
        text = _text(records)
        for be in (False, True):
            got = _paths(text, "list", be)
            assert got == ("entries", _expected(records, be))
        # no final newline, and the template hash algorithm given
        if uniform:
            got = _paths(text[:-1], None, False, ALG_SHA1)
            assert got == ("entries", _expected(records))


def test_d_ng_prefixes_of_one_length_stay_apart():
    """"sm3:" and "md5:" digests of one size in one block: each line keeps its own."""
    records = [(10, th, b"sm3" if i % 3 else b"md5", d, name)
               for i, (_, th, _, d, name) in enumerate(_records(11, 90, True))]
    assert _paths(_text(records)) == ("entries", _expected(records))


def test_every_line_with_a_leading_space():
    """PCRs 0..9 print as " 2": a list of such lines is one bulk block too."""
    records = [(2, th, algo, d, name) for _, th, algo, d, name in _records(5, 120, True)]
    text = _text(records)
    assert text.startswith(b" 2 ") and text.count(b"\n 2 ") == 119
    assert _paths(text) == ("entries", _expected(records))


def test_round_trip_is_byte_exact():
    for seed, uniform in ((6, True), (7, False)):
        text = _text(_records(seed, 150, uniform))
        assert ima.encode_ima_ascii(ima.parse_ima_ascii(text)) == text


# lines the bulk decoder does not take: each must decode as the line loop decodes it
_ODD_LINES = (
    b"10 " + b"ab" * 20 + b" ima-sig sha256:" + b"cd" * 32 + b" /usr/bin/true ",
    b"10 " + b"ab" * 20 + b" ima " + b"cd" * 20 + b" /etc/passwd",
    b"11 " + b"ab" * 20 + b" ima-foo some thing  else",
    b"10 " + b"ab" * 20 + b" ima-ng sha256:" + b"cd" * 32 + b" /a name/with spaces",
    b"  5 " + b"ab" * 20 + b" ima-ng sha1:" + b"cd" * 20 + b" /double-leading",
    b"010 " + b"AB" * 20 + b" ima-ng sha256:" + b"CD" * 32 + b" /zero-padded-pcr",
    b"10 " + b"ab" * 20 + b" ima-ng sha256:" + b"cd" * 32,
    b"10 " + b"ab" * 20 + b" ima-ng :" + b" /empty-algo",
    b"",
    b"   ",
)


def _one_by_one(lines, be):
    """The entries of a list whose lines are parsed one at a time (offsets moved)."""
    out = []
    offset = 0
    for line in lines:
        for e in ima.parse_ima_ascii(line + b"\n", None, be):
            e.offset += offset
            out.append(e)
        offset += len(line) + 1
    return _snapshot(out)


def test_mixed_lists_decode_line_by_line_alike():
    for seed in range(6):
        rnd = _Rng(100 + seed)
        lines = [_kernel_line(*r) for r in _records(seed, 60, seed % 2 == 0)]
        for _ in range(1 + rnd.below(6)):
            k = rnd.below(len(lines) + 1)
            lines.insert(k, rnd.pick(_ODD_LINES))
        text = b"\n".join(lines) + b"\n"
        for be in (False, True):
            assert _paths(text, None, be) == ("entries", _one_by_one(lines, be))


def test_errors_name_the_line_and_its_offset_across_blocks():
    records = _records(8, 120, True)
    lines = [_kernel_line(*r) for r in records]
    for k in (0, 1, 6, 7, 59, 60, 119):
        for bad, field in ((b"zz" * 20, "template_hash"), (b"ab" * 19, "template_hash")):
            broken = list(lines)
            broken[k] = broken[k][:3] + bad + broken[k][3 + 40:]
            text = b"\n".join(broken) + b"\n"
            offset = sum([len(x) + 1 for x in broken[:k]])
            got = _paths(text, "ascii_runtime_measurements")
            assert got[:2] == ("error", "FormatError")
            assert got[2].startswith("line %d: " % (k + 1))
            assert got[3:] == (offset, field, "ascii_runtime_measurements", k)
    # a NUL inside a name: the bulk decoder leaves it to the line loop, which refuses it
    broken = list(lines)
    broken[50] = broken[50] + b"\x00x"
    e = _paths(b"\n".join(broken))
    assert e[0] == "error" and e[2].startswith("line 51: ") and e[4] == "n-ng"


def test_replay_of_a_decoded_list_matches_an_independent_replay():
    h = hash_provider()
    records = _records(9, 300, True)
    entries = ima.parse_ima_ascii(_text(records))
    res = replay(entries, h, "pcr", [ALG_SHA1, ALG_SHA256])
    for alg, size in ((ALG_SHA1, 20), (ALG_SHA256, 32)):
        value = b"\x00" * size
        for _, _, algo, digest, name in records:
            value = h.digest(alg, value + h.digest(alg, _tdata(algo, digest, name, False)))
        assert res.value(10, alg) == value


def test_the_bulk_decoder_takes_kernel_form_blocks():
    """CPython: a kernel-form list never reaches the line loop; a block with an odd
    line does, and only that block."""
    if not ima.FAST_PATHS:
        return  # MicroPython: the line loop is the only path
    calls = []
    real = ima._ascii_lines_fast

    def spy(block, *args):
        calls.append(block.count(b"\n") + 1)
        return real(block, *args)

    ima._ascii_lines_fast = spy
    try:
        records = _records(10, 400, True)
        text = _text(records)
        assert _with_block(4000, _outcome, text) == ("entries", _expected(records))
        assert calls == []
        lines = text.split(b"\n")
        lines[200] = lines[200] + b" "  # an empty fifth field: not kernel form
        _with_block(4000, ima.parse_ima_ascii, b"\n".join(lines))
        assert len(calls) == 1 and 0 < calls[0] < 100
    finally:
        ima._ascii_lines_fast = real


if not IS_MICROPYTHON:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @st.composite
    def _lines(draw):
        """(line, its snapshot fields or None): mostly kernel-form ima-ng lines, some
        with one field bent out of shape."""
        pcr = draw(st.sampled_from([10, 10, 11, 2, 0, 4294967295]))
        th = draw(st.sampled_from([20, 20, 32, 48, 64]).flatmap(
            lambda n: st.binary(min_size=n, max_size=n)))
        algo = draw(st.sampled_from([b"sha256", b"sha1", b"sm3", b"a:b", b""]))
        digest = draw(st.binary(max_size=40))
        name = draw(st.binary(min_size=1, max_size=20).map(
            lambda b: bytes([_NAME_BYTES[c % len(_NAME_BYTES)] for c in b])))
        line = _kernel_line(pcr, th, algo, digest, name)
        record = (pcr, th, algo, digest, name)
        bend = draw(st.integers(0, 12))
        if bend == 1:
            line = line.replace(b" ", b"  ", 1)
        elif bend == 2:
            line += b" "
        elif bend == 3:
            line = line.replace(b" ima-ng ", b" ima-sig ")
        elif bend == 4:
            line = line.replace(b":", b"", 1)
        elif bend == 5:
            at = draw(st.integers(0, len(line) - 1))
            line = line[:at] + draw(st.sampled_from([b"\t", b"\x00", b"\r", b"g", b":", b"  "])) \
                + line[at + 1:]
        elif bend == 6:
            line = b" " + line
        if bend in (1, 2, 3, 4, 5, 6):
            record = None
        return line, record

    @settings(max_examples=300, deadline=None)
    @given(st.lists(_lines(), max_size=12), st.sampled_from([1, 60, 300, 1 << 18]),
           st.booleans(), st.sampled_from([None, ALG_SHA1]), st.booleans())
    def test_fast_path_equals_portable_and_reference(lines, block, be, alg, newline):
        text = b"\n".join([line for line, _ in lines]) + (b"\n" if newline else b"")
        fast = _with_block(block, _outcome, text, "l", be, alg)
        assert fast == _portable(text, "l", be, alg)
        records = [r for _, r in lines]
        if None not in records and (alg is None or all([len(r[1]) == 20 for r in records])):
            assert fast == ("entries", _expected(records, be))
