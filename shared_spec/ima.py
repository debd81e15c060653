"""IMA measurement lists, binary and ascii (Linux security/integrity/ima).

Binary entry (``binary_runtime_measurements[_<alg>]``, ima_fs.c
``ima_measurements_show``)::

    u32 pcr | u8 template_hash[N] | u32 name_len | name
    | u32 template_data_len | template_data              (every template but "ima")
    | u8 digest[20] | u32 filename_len | filename         ("ima" template, no NUL)

``N`` is 20 (SHA-1) in ``binary_runtime_measurements`` and the digest size of
``<alg>`` in ``binary_runtime_measurements_<alg>`` (kernel 6.x writes one list
per bank); the caller names the algorithm. The u32s are in the kernel's byte
order, little-endian on x86 and with ``ima_canonical_fmt``; ``big_endian``
reads a big-endian host's list. Template data of every template but ``ima`` is
a sequence of u32-length-prefixed fields (see :mod:`shared_spec.ima_templates`).

Ascii line (``ascii_runtime_measurements``, ``ima_ascii_measurements_show``)::

    "%2d" pcr, " ", template hash hex, " ", template name, then " " + field text per field

The PCR is printed with ``%2d``, so PCR 2 reads `` 2``; an empty field prints
nothing after its space. An ascii line is replayed by rebuilding the binary
template data from its fields (:func:`parse_ima_ascii` does), which is exact
for every line the kernel prints.

Replay (ima_crypto.c ``ima_calc_field_array_hash``): the kernel computes one
template digest per PCR bank, that bank's hash over the template data, and
extends it. For the ``ima`` template the hashed bytes are the 20-byte digest and
the file name NUL-padded to IMA_EVENT_NAME_LEN_MAX + 1 = 256 bytes (no lengths).
A violation is logged with an all-zero template hash and extends all 0xFF in
every bank (``ima_add_template_entry``). :meth:`ImaEntry.digest_for` always
hashes the template data: the logged template hash is checked against it by
:func:`check_entries`, never trusted in its place.

Speed: on CPython (:data:`FAST_PATHS`) the parsers decode the common entry
shapes inline (an ascii list of kernel-form ima-ng lines block by block, in
C-level passes over its columns) and pause the cyclic GC while they build
entries, and :func:`shared_spec.replay.replay` extends runs of entries through
:meth:`ImaEntry.extend_banks` / :meth:`ImaEntry.extend_run`. Where the optional
C module ``shared_spec._speedups`` is built (:data:`SPEEDUPS`), it decodes those
ima-ng blocks and extends every bank of a run with OpenSSL, one thread per
bank, whenever the hash provider names OpenSSL's digests. MicroPython runs the
portable code; all paths give the same entries, errors and register values.

IMA over TDX RTMRs: kernels that extend IMA into an RTMR log the RTMR number in
the PCR field (the cc-trusted-api evidence logs ``2`` for RTMR2) with a SHA-384
template hash; :func:`to_cc_mr` maps entries into the CC MR index convention.
"""

import struct
import sys

try:  # annotations only; MicroPython has no typing module and ignores annotations
    from typing import Any
except ImportError:  # pragma: no cover - MicroPython
    pass

from shared_spec.algorithms import (
    ALG_SHA1,
    ALG_SHA256,
    ALG_SHA384,
    ALG_SHA512,
    alg_from_name,
    alg_name,
    digest_size,
)
from shared_spec.errors import (
    EncodeError,
    FormatError,
    LimitError,
    SpecError,
    TruncatedError,
    UnsupportedError,
)
from shared_spec.findings import SEVERITY_ERROR, SEVERITY_INFO, SEVERITY_WARNING, Finding
from shared_spec.hashing import HashProvider
from shared_spec.ima_templates import (
    IMA_DIGEST_SIZE,
    IMA_EVENT_NAME_LEN_MAX,
    TEMPLATES,
    describe_field,
    field_from_ascii,
    field_to_ascii,
    join_fields,
    split_fields,
    template_fields,
)
from shared_spec.registers import pcr_to_cc_mr

#: kept for callers of the first version of this module
TEMPLATE_FIELDS = TEMPLATES

#: Sanity bound on a template name (the kernel's longest is 71 bytes).
MAX_TEMPLATE_NAME = 255
#: Sanity bound on one entry's template data.
MAX_TEMPLATE_DATA = 1 << 26

BOOT_AGGREGATE_NAME = "boot_aggregate"

#: template hash size in an ascii list -> the algorithm it implies
_SIZE_TO_ALG = {20: ALG_SHA1, 32: ALG_SHA256, 48: ALG_SHA384, 64: ALG_SHA512}
_IMA_HASHED_NAME = IMA_EVENT_NAME_LEN_MAX + 1
_ZEROS = {20: b"\x00" * 20, 32: b"\x00" * 32, 48: b"\x00" * 48, 64: b"\x00" * 64}
_FFS: dict = {}


def _ffs(size: int) -> bytes:
    v = _FFS.get(size)
    if v is None:
        v = b"\xff" * size
        _FFS[size] = v
    return v


def _zeros(size: int) -> bytes:
    v = _ZEROS.get(size)
    return v if v is not None else b"\x00" * size


# CPython speedups: struct.Struct, binascii.unhexlify and hasher.copy() (MicroPython has
# no struct.Struct and hashers without copy()). The parsers and the batch replay take
# them only when FAST_PATHS is true; with it false they run the portable code, which
# gives the same entries, errors and digests (tests/test_ima_speed_paths.py and
# tests/spec/test_ima_fast.py compare them).
try:
    from binascii import unhexlify as _unhexlify
except ImportError:  # pragma: no cover - a MicroPython build without binascii
    _unhexlify = None  # type: ignore[assignment]

#: take the CPython-only fast paths (CPython with struct.Struct and binascii)
FAST_PATHS = (sys.implementation.name == "cpython" and _unhexlify is not None and
              getattr(struct, "Struct", None) is not None)

#: the optional C kernels (shared_spec/_speedups.c) when built and not turned off with
#: CVMCHAIN_PURE_PYTHON=1; tests set it to None to compare with the Python paths
SPEEDUPS: "Any" = None
#: the shortest run of entries worth the C extender's set-up (digest fetches, threads)
NATIVE_RUN_MIN = 32
if FAST_PATHS:
    import os as _os

    if not _os.environ.get("CVMCHAIN_PURE_PYTHON"):
        try:
            from shared_spec import _speedups as SPEEDUPS  # type: ignore[attr-defined,no-redef]
        except ImportError:  # not built (no C compiler at install): the Python paths
            SPEEDUPS = None

if FAST_PATHS:
    import gc as _gc
    from itertools import accumulate as _accumulate
    from itertools import repeat as _repeat
    from operator import add as _add

    #: every byte value but ASCII whitespace (what bytes.split() splits on) and NUL:
    #: translate() deletes these from a block and leaves its separators (and any NUL,
    #: which no field of a kernel line holds), to check in one comparison
    _NOT_SEPARATOR = bytes(c for c in range(256) if c not in b" \n\t\r\x0b\x0c\x00")
#: bytes of an ascii list decoded per block by the bulk ima-ng decoder (see
#: _bulk_ima_ng); a module global so tests can make blocks small
BULK_BLOCK = 1 << 18
#: the NUL ending an n-ng field, then an empty sig field (u32 0, either byte order)
_NUL_EMPTY_SIG = b"\x00" * 5


def _gc_pause() -> bool:
    """Pause CPython's cyclic GC while a parser builds 100,000s of entries (none of which
    can form a cycle); True when it was running, and the caller must re-enable it."""
    if not _gc.isenabled():
        return False
    _gc.disable()
    return True


class ImaField:
    """One template field: its id (``d-ng``) and its bytes as the kernel holds them."""

    __slots__ = ("big_endian", "data", "name")

    def __init__(self, name: str, data: bytes, big_endian: bool = False) -> None:
        self.name = name
        self.data = data
        self.big_endian = big_endian

    def ascii(self) -> bytes:
        """The field's text in an ascii list (empty for an empty field)."""
        if not self.data:
            return b""
        return field_to_ascii(self.name, self.data, self.big_endian)

    def to_dict(self) -> dict:
        return describe_field(self.name, self.data, self.big_endian)


class ImaEntry:
    """One measurement: PCR field, logged template hash, template name and data.

    ``template_data`` is the entry's template data exactly as the binary list
    holds it, in the entry's byte order (for the ``ima`` template: digest,
    u32 name length, name). It is None only for an ascii line of a template
    whose field types are unknown (``ascii_tail`` then keeps the line's text
    after the template name, so it still round-trips).

    Replay protocol: ``index`` (the PCR field, or a CC MR index after
    :func:`to_cc_mr`), ``extends`` (always True), ``digest_for(alg, hashes)``,
    ``digests`` ([(template hash algorithm, logged template hash)]) and ``offset``.
    """

    __slots__ = (
        "_calc",
        "_calc_alg",
        "_tail",
        "big_endian",
        "index",
        "offset",
        "pcr",
        "template_data",
        "template_hash",
        "template_hash_alg",
        "template_name",
    )

    extends = True

    def __init__(self, pcr: int, template_hash: bytes, template_name: str,
                 template_data: bytes | None, offset: int | None = None,
                 template_hash_alg: int | None = None, big_endian: bool = False,
                 ascii_tail: bytes | None = None) -> None:
        # lean on purpose: a list holds one entry per measurement (100,000s); the
        # digest cache (_calc_alg, _calc) and _tail are left unset until needed
        self.pcr = pcr
        self.index = pcr
        self.template_hash = template_hash
        if template_hash_alg is None:
            template_hash_alg = _SIZE_TO_ALG.get(len(template_hash), ALG_SHA1)
        self.template_hash_alg = template_hash_alg
        self.template_name = template_name
        self.template_data = template_data
        self.offset = offset
        self.big_endian = big_endian
        if ascii_tail is not None:
            self._tail: bytes | None = ascii_tail

    @property
    def ascii_tail(self) -> bytes | None:
        """The ascii line's text after the template name (only for unknown templates)."""
        return getattr(self, "_tail", None)

    @ascii_tail.setter
    def ascii_tail(self, value: bytes | None) -> None:
        self._tail = value

    # -- replay -----------------------------------------------------------------------------

    @property
    def digests(self) -> list:
        """[(template hash algorithm, logged template hash)]."""
        return [(self.template_hash_alg, self.template_hash)]

    @property
    def is_violation(self) -> bool:
        """True when the logged template hash is all zeros (a ToMToU/open-writers violation)."""
        th = self.template_hash
        z = _ZEROS.get(len(th))
        if z is None:
            z = b"\x00" * len(th)
        return bytes(th) == z

    def hashed_data(self) -> bytes | None:
        """The bytes the kernel hashes into the template digest (None: unknown ascii template)."""
        data = self.template_data
        if data is None:
            return None
        if self.template_name != "ima":
            return data
        d, name = _ima_template_parts(data, self.big_endian)
        return d + name + b"\x00" * (_IMA_HASHED_NAME - len(name))

    def template_digest(self, alg: int, hashes: HashProvider) -> bytes | None:
        """Bank ``alg``'s hash of the template data (None when unknown or not implemented)."""
        if getattr(self, "_calc_alg", 0) == alg:
            return self._calc
        data = self.hashed_data()
        if data is None or not hashes.supports(alg):
            return None
        d = hashes.oneshot(alg)(data)
        self._calc_alg: int = alg
        self._calc: bytes = d
        return d

    def digest_for(self, alg: int, hashes: HashProvider) -> bytes | None:
        """What the kernel extends into bank ``alg`` for this entry.

        All 0xFF for a violation; otherwise the bank's hash of the template data.
        For an ascii entry of an unknown template, whose template data cannot be
        rebuilt, the logged hash stands for its own bank and other banks get None.
        """
        size = digest_size(alg)
        if size is None:
            return None
        th = self.template_hash
        if th == _ZEROS.get(len(th)) or (len(th) not in _ZEROS and self.is_violation):
            return _ffs(size)
        if getattr(self, "_calc_alg", 0) == alg:
            return self._calc
        data = self.template_data
        if data is None:
            return bytes(th) if alg == self.template_hash_alg else None
        if self.template_name == "ima":
            data = self.hashed_data() or b""
        if not hashes.supports(alg):
            return None
        d = hashes.oneshot(alg)(data)
        self._calc_alg = alg
        self._calc = d
        return d

    @staticmethod
    def extend_run(entries: list, alg: int, hashes: HashProvider, values: dict) -> list:
        """Extend bank ``alg`` by a run of entries at once (the batch replay hook).

        :func:`shared_spec.replay.replay` calls it for consecutive ImaEntry objects:
        ``values`` maps every register the run touches to its current value in bank
        ``alg`` (None: no longer replayable) and is updated in place, exactly as
        extending ``digest_for(alg, hashes)`` entry by entry would. Returns the
        positions in ``entries`` whose digest was None (their register's value
        became None there).
        """
        return _extend_run(entries, alg, hashes, values)

    @staticmethod
    def extend_banks(entries: list, algs: list, hashes: HashProvider,
                     values: list) -> bool:
        """Extend every bank of ``algs`` by a run at once, when the C kernel can.

        ``values[k]`` is bank ``algs[k]``'s ``values`` of :meth:`extend_run`. True
        when done (every position had a digest); False, touching nothing, when the
        kernel is not built, the run is shorter than :data:`NATIVE_RUN_MIN` (the
        call's set-up would cost more than it saves), the provider has no OpenSSL
        name for a bank, or an entry is not of the common form: the caller then
        calls :meth:`extend_run` per bank, which defines the result.
        """
        if SPEEDUPS is None or not FAST_PATHS or len(entries) < NATIVE_RUN_MIN or not algs:
            return False
        names = []
        for alg in algs:
            name = hashes.native_name(alg)
            if name is None or digest_size(alg) is None:
                return False
            names.append(name)
        if not isinstance(entries, list):
            entries = list(entries)
        return SPEEDUPS.extend_ima_run(entries, ImaEntry, tuple(names), tuple(values))

    # -- fields -----------------------------------------------------------------------------

    def field_ids(self) -> tuple | None:
        """The field ids of this entry's template, or None when the template is unknown."""
        return template_fields(self.template_name)

    def template_problem(self) -> str | None:
        """Why the template data is not a valid instance of its template, or None."""
        data = self.template_data
        if data is None:
            return None
        if self.template_name == "ima":
            if len(data) < IMA_DIGEST_SIZE + 4:
                return "'ima' template data is %d bytes, less than 24" % len(data)
            n = struct.unpack_from(">I" if self.big_endian else "<I", data, IMA_DIGEST_SIZE)[0]
            if n != len(data) - IMA_DIGEST_SIZE - 4:
                return "'ima' name length %d does not match the %d bytes present" % (
                    n, len(data) - IMA_DIGEST_SIZE - 4)
            if n > IMA_EVENT_NAME_LEN_MAX:
                return "'ima' name of %d bytes exceeds %d" % (n, IMA_EVENT_NAME_LEN_MAX)
            return None
        try:
            raw = split_fields(data, self.big_endian)
        except SpecError as e:
            return "template data is not a sequence of fields: " + e.message
        ids = self.field_ids()
        if ids is not None and len(raw) != len(ids):
            return "template %s has %d fields, the data holds %d" % (
                self.template_name, len(ids), len(raw))
        return None

    def fields(self) -> list:
        """The template fields as :class:`ImaField` (``raw`` when the data is malformed).

        Field ids come from the template; an unknown template's fields are
        named ``field0``, ``field1``... An ascii entry of an unknown template
        has no fields (see ``ascii_tail``).
        """
        data = self.template_data
        if data is None:
            return []
        be = self.big_endian
        if self.template_problem() is not None:
            return [ImaField("raw", bytes(data), be)]
        if self.template_name == "ima":
            d, name = _ima_template_parts(data, be)
            return [ImaField("d", d, be), ImaField("n", name + b"\x00", be)]
        ids = self.field_ids()
        out = []
        for i, value in enumerate(split_fields(data, be)):
            out.append(ImaField(ids[i] if ids is not None else "field%d" % i, value, be))
        return out

    def file_name_bytes(self) -> bytes:
        """The event name (file path, ``boot_aggregate``, key ring...) as logged."""
        data = self.template_data
        if data is None:
            tail = self.ascii_tail or b""
            parts = tail.split(b" ")
            return parts[2] if len(parts) > 2 else b""
        if self.template_name == "ima" and self.template_problem() is None:
            return _ima_template_parts(data, self.big_endian)[1]
        for f in self.fields():
            if f.name == "n-ng" or f.name == "n":
                nul = f.data.find(b"\x00")
                return f.data if nul < 0 else f.data[:nul]
        return b""

    def file_name(self) -> str:
        return self.file_name_bytes().decode("utf-8", "replace")

    def file_digest(self) -> tuple | None:
        """``(algorithm name or None, digest)`` of the measured content, or None."""
        for f in self.fields():
            if f.name == "d":
                return (None, bytes(f.data))
            if f.name == "d-ng" or f.name == "d-ngv2":
                desc = describe_field(f.name, f.data, self.big_endian)
                return (desc.get("algorithm"), bytes.fromhex(desc["digest"]))
        return None

    def to_dict(self) -> dict:
        out = {"pcr": self.pcr, "template_name": self.template_name,
               "template_hash": bytes(self.template_hash).hex(),
               "template_hash_alg": alg_name(self.template_hash_alg),
               "violation": self.is_violation, "filename": self.file_name(),
               "fields": [f.to_dict() for f in self.fields()]}
        if self.template_data is None:
            out["ascii_fields"] = (self.ascii_tail or b"")[1:].decode("utf-8", "replace")
        problem = self.template_problem()
        if problem is not None:
            out["problem"] = problem
        return out

    def copy_with_index(self, index: int) -> "ImaEntry":
        """A copy of this entry with ``index`` (the register it extends) replaced."""
        e = ImaEntry(self.pcr, self.template_hash, self.template_name, self.template_data,
                     self.offset, self.template_hash_alg, self.big_endian,
                     getattr(self, "_tail", None))
        e.index = index
        return e

    # -- encoders ---------------------------------------------------------------------------

    def encode_binary(self, big_endian: bool | None = None) -> bytes:
        """This entry as a binary list record (in its own byte order unless told otherwise)."""
        return encode_ima_binary([self], big_endian)

    def encode_ascii(self) -> bytes:
        """This entry as the kernel prints it in an ascii list, newline included."""
        return encode_ima_ascii_line(self)


def _ima_template_parts(data: bytes, big_endian: bool) -> tuple:
    """(digest, name) of ``ima`` template data; tolerant of a short buffer."""
    d = bytes(data[:IMA_DIGEST_SIZE])
    if len(data) < IMA_DIGEST_SIZE + 4:
        return d, b""
    n = struct.unpack_from(">I" if big_endian else "<I", data, IMA_DIGEST_SIZE)[0]
    name = bytes(data[IMA_DIGEST_SIZE + 4:IMA_DIGEST_SIZE + 4 + min(n, _IMA_HASHED_NAME)])
    return d, name


_UNSET = object()


def _extend_run(entries: list, alg: int, hashes: HashProvider, values: dict) -> list:
    """:meth:`ImaEntry.extend_run`: one pass over the run, the per-entry digest inlined."""
    missing = []
    ext = hashes.oneshot(alg)
    size = digest_size(alg)
    if size is None or not hashes.supports(alg) or (entries and type(entries[0]) is not ImaEntry):
        # no digest of this bank for most entries, or a subclass (which may override
        # digest_for): the per-entry protocol, unchanged
        i = 0
        for e in entries:
            old = values[e.index]
            if old is not None:
                d = e.digest_for(alg, hashes)
                if d is None:
                    values[e.index] = None
                    missing.append(i)
                else:
                    values[e.index] = ext(old + d)
            i += 1
        return missing
    ff = _ffs(size)
    # CPython: one hasher per bank, copied per digest (no constructor lookup per call)
    copy = getattr(hashes.new(alg), "copy", None) if FAST_PATHS else None
    last = _UNSET
    cur = None
    i = -1
    for e in entries:
        i += 1
        idx = e.index
        if idx != last:  # most lists extend one register: keep its value in a local
            if last is not _UNSET:
                values[last] = cur
            last = idx
            cur = values[idx]
        if cur is None:
            continue
        th = e.template_hash
        if not th or (th[0] == 0 and bytes(th) == _zeros(len(th))):
            d = ff  # a violation (digest_for: all zeros logged, 0xFF extended)
        else:
            data = e.template_data
            if data is None:  # ascii line of an unknown template
                if alg != e.template_hash_alg:
                    cur = None
                    missing.append(i)
                    continue
                d = bytes(th)
            else:
                if e.template_name == "ima":
                    data = e.hashed_data()
                if copy is not None:
                    h = copy()
                    h.update(data)
                    d = h.digest()
                else:
                    d = ext(data)
        if copy is not None:
            h = copy()
            h.update(cur + d)
            cur = h.digest()
        else:
            cur = ext(cur + d)
    if last is not _UNSET:
        values[last] = cur
    return missing


def make_entry(pcr: int, template_name: str, fields: list, hashes: HashProvider,
               template_hash_alg: int = ALG_SHA1, big_endian: bool = False) -> ImaEntry:
    """An entry built from field bytes, with its template hash computed as the kernel does.

    For the ``ima`` template, ``fields`` is ``[digest (20 bytes), name]`` (name
    without NUL); for every other template, the bytes of each field.
    """
    if template_name == "ima":
        if len(fields) != 2 or len(fields[0]) != IMA_DIGEST_SIZE or \
                len(fields[1]) > IMA_EVENT_NAME_LEN_MAX:
            raise EncodeError("'ima' entry needs [20-byte digest, name of at most 255 bytes]",
                              None, "fields")
        name = bytes(fields[1])
        tdata = bytes(fields[0]) + struct.pack(">I" if big_endian else "<I", len(name)) + name
    else:
        tdata = join_fields(fields, big_endian)
    e = ImaEntry(pcr, b"", template_name, tdata, None, template_hash_alg, big_endian)
    e.template_hash = hashes.digest(template_hash_alg, e.hashed_data() or b"")
    return e


# -- binary ---------------------------------------------------------------------------------


def _template_name(raw: bytes, cache: dict, at: int, source: str | None) -> str:
    name = cache.get(raw)
    if name is None:
        for ch in raw:
            if ch < 0x21 or ch > 0x7E:
                raise FormatError("template name %r holds a byte outside printable ASCII"
                                  % raw[:40], at, "template_name", source)
        name = raw.decode()
        cache[raw] = name
    return name


def parse_ima_binary(data: bytes, source: str | None = None,
                     template_hash_alg: int = ALG_SHA1, big_endian: bool = False) -> list:
    """Decode a binary measurement list into :class:`ImaEntry` objects.

    ``template_hash_alg``: the list's algorithm (SHA-1 for
    ``binary_runtime_measurements``, the ``<alg>`` of ``..._<alg>``).
    Errors are :class:`SpecError` with the absolute ``offset`` and the number of
    complete entries before it in ``parsed_count``.
    """
    hsize = digest_size(template_hash_alg)
    if hsize is None:
        raise UnsupportedError("template hash algorithm %s has no known size"
                               % alg_name(template_hash_alg), None, "template_hash_alg", source)
    if not isinstance(data, bytes):
        data = bytes(data)
    if not FAST_PATHS:
        return _parse_binary(data, source, template_hash_alg, big_endian, hsize)
    paused = _gc_pause()
    try:
        return _parse_binary(data, source, template_hash_alg, big_endian, hsize)
    finally:
        if paused:
            _gc.enable()


def _parse_binary(data: bytes, source: str | None, template_hash_alg: int, big_endian: bool,
                  hsize: int) -> list:
    """:func:`parse_ima_binary` after its argument checks."""
    fmt = ">I" if big_endian else "<I"
    unpack = struct.unpack_from
    n = len(data)
    head = 8 + hsize
    pos = 0
    out: list = []
    append = out.append
    names: dict = {}
    # CPython: the layout of the previous entry (pcr, hash, name length, name, data
    # length) read in one unpack; taken only when the name bytes and lengths match, so
    # every other entry, and every error, goes through the checks below
    Struct = getattr(struct, "Struct", None) if FAST_PATHS else None
    new = object.__new__ if Struct is not None else None
    layouts: dict = {}
    lay_unpack = None
    lay_size = 0
    lay_nlen = 0
    lay_raw = b""
    lay_name = ""
    try:
        while pos < n:
            if lay_unpack is not None and n - pos >= lay_size:
                pcr, th, nlen, nraw, dlen = lay_unpack(data, pos)
                end = pos + lay_size + dlen
                if nlen == lay_nlen and nraw == lay_raw and dlen <= MAX_TEMPLATE_DATA and \
                        end <= n:
                    # a bare entry, then every attribute ImaEntry.__init__ sets
                    e = new(ImaEntry)  # type: ignore[misc]
                    e.pcr = e.index = pcr
                    e.template_hash = th
                    e.template_hash_alg = template_hash_alg
                    e.template_name = lay_name
                    e.template_data = data[pos + lay_size:end]
                    e.offset = pos
                    e.big_endian = big_endian
                    append(e)
                    pos = end
                    continue
            start = pos
            if n - pos < head:
                raise TruncatedError("entry header needs %d bytes, %d left" % (head, n - pos),
                                     pos, "ima.header", source)
            pcr = unpack(fmt, data, pos)[0]
            th = data[pos + 4:pos + 4 + hsize]
            pos += 4 + hsize
            nlen = unpack(fmt, data, pos)[0]
            if nlen == 0 or nlen > MAX_TEMPLATE_NAME:
                raise LimitError("template name length %d is outside 1..%d"
                                 % (nlen, MAX_TEMPLATE_NAME), pos, "template_name_len", source)
            pos += 4
            if nlen > n - pos:
                raise TruncatedError("template name of %d bytes, %d left" % (nlen, n - pos),
                                     pos, "template_name", source)
            name = _template_name(data[pos:pos + nlen], names, pos, source)
            pos += nlen
            if name == "ima":
                if n - pos < IMA_DIGEST_SIZE + 4:
                    raise TruncatedError("'ima' entry needs 24 bytes, %d left" % (n - pos),
                                         pos, "ima.digest", source)
                flen = unpack(fmt, data, pos + IMA_DIGEST_SIZE)[0]
                if flen > IMA_EVENT_NAME_LEN_MAX:
                    raise LimitError("'ima' file name length %d exceeds %d"
                                     % (flen, IMA_EVENT_NAME_LEN_MAX),
                                     pos + IMA_DIGEST_SIZE, "filename_len", source)
                end = pos + IMA_DIGEST_SIZE + 4 + flen
                if end > n:
                    raise TruncatedError("'ima' file name of %d bytes, %d left"
                                         % (flen, n - pos - IMA_DIGEST_SIZE - 4),
                                         pos + IMA_DIGEST_SIZE + 4, "filename", source)
                tdata = data[pos:end]
                pos = end
            else:
                if n - pos < 4:
                    raise TruncatedError("entry ends before template_data_len", pos,
                                         "template_data_len", source)
                dlen = unpack(fmt, data, pos)[0]
                if dlen > n - pos - 4 or dlen > MAX_TEMPLATE_DATA:
                    raise LimitError("template data length %d exceeds the %d bytes left"
                                     % (dlen, n - pos - 4), pos, "template_data_len", source)
                pos += 4
                tdata = data[pos:pos + dlen]
                pos += dlen
                if Struct is not None:
                    raw = data[start + head:start + head + nlen]
                    if raw != lay_raw:
                        lay = layouts.get(raw)
                        if lay is None:
                            st = Struct(fmt[0] + "I%dsI%dsI" % (hsize, nlen))
                            lay = (st.unpack_from, st.size, nlen, raw, name)
                            layouts[raw] = lay
                        lay_unpack, lay_size, lay_nlen, lay_raw, lay_name = lay
            append(ImaEntry(pcr, th, name, tdata, start, template_hash_alg, big_endian))
    except SpecError as e:
        e.parsed_count = len(out)
        if e.source is None:
            e.source = source
        raise
    return out


def encode_ima_binary(entries: list, big_endian: bool | None = None) -> bytes:
    """The binary list of ``entries``; byte-exact inverse of :func:`parse_ima_binary`.

    Each entry is written in its own byte order (``big_endian`` None), or in
    the one given; an entry whose template data is in the other order raises
    :class:`EncodeError` (its lengths are part of what its template hash covers).
    """
    parts = []
    for i, e in enumerate(entries):
        be = e.big_endian if big_endian is None else big_endian
        if e.template_data is None:
            raise EncodeError("entry #%d: template %r has unknown field types; its binary "
                              "template data cannot be rebuilt" % (i, e.template_name),
                              None, "template_data")
        if be != e.big_endian:
            raise EncodeError("entry #%d: template data is %s-endian, the list %s-endian"
                              % (i, "big" if e.big_endian else "little",
                                 "big" if be else "little"), None, "big_endian")
        fmt = ">I" if be else "<I"
        name = e.template_name.encode()
        if not name or len(name) > MAX_TEMPLATE_NAME:
            raise EncodeError("entry #%d: template name length %d" % (i, len(name)), None,
                              "template_name")
        parts.append(struct.pack(fmt, e.pcr) + bytes(e.template_hash) +
                     struct.pack(fmt, len(name)) + name)
        if e.template_name == "ima":
            parts.append(bytes(e.template_data))
        else:
            parts.append(struct.pack(fmt, len(e.template_data)))
            parts.append(bytes(e.template_data))
    return b"".join(parts)


def sniff_ima_binary(data: bytes) -> tuple | None:
    """``(template hash algorithm, big_endian)`` that make the first entry valid, or None.

    Tries SHA-1 first (``binary_runtime_measurements``), then SHA-256, SHA-384
    and SHA-512, little-endian before big-endian.
    """
    data = bytes(data[:4096])
    for be in (False, True):
        fmt = ">I" if be else "<I"
        for alg in (ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512):
            size = digest_size(alg) or 0
            if len(data) < 8 + size + 3:
                continue
            if struct.unpack_from(fmt, data, 0)[0] > 0xFFFF:
                continue
            nlen = struct.unpack_from(fmt, data, 4 + size)[0]
            if not 3 <= nlen <= MAX_TEMPLATE_NAME or len(data) < 8 + size + nlen:
                continue
            name = data[8 + size:8 + size + nlen]
            if not (name.startswith(b"ima") or name.startswith(b"evm") or b"|" in name):
                continue
            if not all(0x21 <= ch <= 0x7E for ch in name):
                continue
            return (alg, be)
    return None


# -- ascii ----------------------------------------------------------------------------------


def _fromhex(text: bytes) -> bytes | None:
    try:
        out = bytes.fromhex(text.decode())
    except (ValueError, UnicodeError):
        return None
    return out if 2 * len(out) == len(text) else None


def _is_number(text: bytes) -> bool:
    if not text:
        return False
    for ch in text:
        if ch < 0x30 or ch > 0x39:
            return False
    return True


def _ascii_fields(name: str, ids: tuple, rest: bytes, big_endian: bool) -> bytes:
    """Binary template data from the ascii text after a known template's name."""
    tokens = rest.split(b" ")
    k = len(ids)
    if len(tokens) > k:
        # a name with spaces (kernels before 4.x kept them): the extra tokens belong to
        # the first string field
        si = -1
        for i, fid in enumerate(ids):
            if fid == "n-ng" or fid == "n":
                si = i
                break
        if si < 0:
            raise FormatError("template %s has %d fields, the line %d" % (name, k, len(tokens)),
                              None, "fields")
        extra = len(tokens) - k
        tokens = tokens[:si] + [b" ".join(tokens[si:si + extra + 1])] + tokens[si + extra + 1:]
    while len(tokens) < k:  # trailing empty fields whose spaces were stripped
        tokens.append(b"")
    fields = []
    for i in range(k):
        fields.append(field_from_ascii(ids[i], tokens[i], big_endian))
    return join_fields(fields, big_endian)


def _ascii_entry(line: bytes, names: dict, big_endian: bool, hash_alg: int | None) -> ImaEntry:
    """One ascii line (no newline) -> entry; FormatError (offset None) when malformed."""
    if line[:1] == b" ":
        line = line.lstrip(b" ")
    parts = line.split(b" ", 3)
    if len(parts) < 4:
        raise FormatError("%d fields; an entry has pcr, template hash, template name and "
                          "template fields" % len(parts), None, "line")
    pcr_text, hash_text, name_raw, rest = parts
    if not _is_number(pcr_text):
        raise FormatError("PCR field %r is not a number" % pcr_text[:20], None, "pcr")
    pcr = int(pcr_text)
    if pcr > 0xFFFFFFFF:
        raise FormatError("PCR %d does not fit in 32 bits" % pcr, None, "pcr")
    th = _fromhex(hash_text)
    if th is None:
        raise FormatError("template hash %r is not hex" % hash_text[:40], None,
                          "template_hash")
    if hash_alg is None:
        alg = _SIZE_TO_ALG.get(len(th))
        if alg is None:
            raise FormatError("template hash of %d bytes matches no SHA size" % len(th), None,
                              "template_hash")
    else:
        alg = hash_alg
        if len(th) != digest_size(alg):
            raise FormatError("template hash of %d bytes, %s needs %s" % (
                len(th), alg_name(alg), digest_size(alg)), None, "template_hash")
    name = names.get(name_raw)
    if name is None:
        if not name_raw or len(name_raw) > MAX_TEMPLATE_NAME:
            raise FormatError("template name length %d" % len(name_raw), None, "template_name")
        for ch in name_raw:
            if ch < 0x21 or ch > 0x7E:
                raise FormatError("template name %r holds a byte outside printable ASCII"
                                  % name_raw[:40], None, "template_name")
        name = name_raw.decode()
        names[name_raw] = name
    fmt = ">I" if big_endian else "<I"
    if name == "ima-ng" or (name == "ima-sig" and rest.endswith(b" ") and rest.count(b" ") == 2):
        # the common case, inlined: "<algo>:<hex> <name>" (ima-sig: trailing empty sig)
        if name == "ima-sig":
            rest = rest[:-1]
        sp = rest.find(b" ")
        if sp < 0:
            dtext = rest
            ntext = b""
        else:
            dtext = rest[:sp]
            ntext = rest[sp + 1:]
        colon = dtext.rfind(b":")
        digest = _fromhex(dtext[colon + 1:])
        if digest is None:
            raise FormatError("d-ng digest %r is not hex" % dtext[colon + 1:][:80], None, "d-ng")
        if colon < 0:
            dfield = digest
        else:
            dfield = dtext[:colon + 1] + b"\x00" + digest
        if b"\x00" in ntext:
            raise FormatError("n-ng: NUL inside the name", None, "n-ng")
        nfield = ntext + b"\x00"
        tdata = struct.pack(fmt, len(dfield)) + dfield + struct.pack(fmt, len(nfield)) + nfield
        if name == "ima-sig":
            tdata += struct.pack(fmt, 0)
        return ImaEntry(pcr, th, name, tdata, None, alg, big_endian)
    if name == "ima":
        sp = rest.find(b" ")
        if sp < 0:
            raise FormatError("'ima' entry needs <digest> <name>", None, "n")
        d = _fromhex(rest[:sp])
        if d is None or len(d) != IMA_DIGEST_SIZE:
            raise FormatError("'ima' digest %r is not 20 bytes of hex" % rest[:sp][:60], None,
                              "d")
        fname = rest[sp + 1:]
        if len(fname) > IMA_EVENT_NAME_LEN_MAX or b"\x00" in fname:
            raise FormatError("'ima' name of %d bytes (at most %d, no NUL)"
                              % (len(fname), IMA_EVENT_NAME_LEN_MAX), None, "n")
        tdata = d + struct.pack(fmt, len(fname)) + fname
        return ImaEntry(pcr, th, name, tdata, None, alg, big_endian)
    ids = template_fields(name)
    if ids is None:
        return ImaEntry(pcr, th, name, None, None, alg, big_endian, b" " + rest)
    return ImaEntry(pcr, th, name, _ascii_fields(name, ids, rest, big_endian), None, alg,
                    big_endian)


def parse_ima_ascii(data: bytes, source: str | None = None, big_endian: bool = False,
                    template_hash_alg: int | None = None) -> list:
    """Decode an ascii measurement list (one entry per line) into :class:`ImaEntry` objects.

    Each line's binary template data is rebuilt from its fields, so entries
    replay and check like binary ones (``big_endian``: rebuild it for a
    big-endian host's kernel). ``template_hash_alg``: the list's algorithm;
    by default inferred from the template hash size (20 SHA-1, 32 SHA-256,
    48 SHA-384, 64 SHA-512). Blank lines are skipped. Errors are
    :class:`FormatError` whose message names the line number and whose
    ``offset`` is the byte offset of the line.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    if FAST_PATHS:
        paused = _gc_pause()
        try:
            return _parse_ascii_fast(data, source, big_endian, template_hash_alg)
        finally:
            if paused:
                _gc.enable()
    out: list = []
    append = out.append
    names: dict = {}
    pos = 0
    lineno = 0
    for line in data.split(b"\n"):
        lineno += 1
        start = pos
        pos += len(line) + 1
        if not line or line.isspace():
            continue
        try:
            e = _ascii_entry(line, names, big_endian, template_hash_alg)
        except SpecError as err:
            raise _line_error(err, lineno, start, source, len(out)) from None
        e.offset = start
        append(e)
    return out


def _line_error(err: SpecError, lineno: int, start: int, source: str | None,
                parsed: int) -> FormatError:
    exc = FormatError("line %d: %s" % (lineno, err.message), start, err.field or "line", source)
    exc.parsed_count = parsed
    return exc


def _parse_ascii_fast(data: bytes, source: str | None, big_endian: bool,
                      template_hash_alg: int | None) -> list:
    """:func:`parse_ima_ascii` on CPython: the same entries and errors, faster.

    The list is cut into blocks of about :data:`BULK_BLOCK` bytes at line ends.
    A block of kernel-form ima-ng lines is decoded whole by :func:`_bulk_ima_ng`
    (C-level passes over columns, no Python code per field); any other block
    goes line by line through :func:`_ascii_lines_fast`, which decodes ima-ng
    lines, and ima-sig lines without a signature, inline and every other line
    through :func:`_ascii_entry` as the portable loop does (errors included).
    """
    out: list = []
    caches: tuple = ({}, {}, {})  # template names, PCR fields, d-ng field heads
    n = len(data)
    pos = 0
    lineno = 0  # lines before pos
    while pos < n:
        nl = data.find(b"\n", pos + BULK_BLOCK)
        if nl < 0:
            nl = n - 1 if data[n - 1:] == b"\n" else n
        block = data[pos:nl] if pos or nl != n else data
        before = len(out)
        if _bulk_ima_ng(block, pos, big_endian, template_hash_alg, out):
            lineno += len(out) - before  # one entry per line
        else:
            _ascii_lines_fast(block, pos, lineno, out, source, big_endian, template_hash_alg,
                              caches)
            lineno += block.count(b"\n") + 1
        pos = nl + 1
    return out


def _bulk_ima_ng(block: bytes, pos: int, big_endian: bool, template_hash_alg: int | None,
                 out: list) -> bool:
    """Append the entries of ``block`` (whole lines at offset ``pos``, no final newline)
    when every line is a kernel-form ima-ng line; False, appending nothing, otherwise.

    Kernel form: ``<pcr> <hex> ima-ng <algo>:<hex> <name>``, fields split by single
    spaces (one leading space on every line or on none), no other whitespace and no
    NUL, the same template hash size, d-ng prefix and digest size on every line. The
    entries are those :func:`_ascii_lines_fast` builds from the same lines.
    """
    if SPEEDUPS is not None:
        return _bulk_ima_ng_native(block, pos, big_endian, template_hash_alg, out)
    text = block
    lead = 0
    if block[:1] == b" " or b"\n " in block:  # "%2d": PCRs 0..9 print with a space
        text = block.replace(b"\n ", b"\n")
        if text[:1] == b" ":
            text = text[1:]
        lead = 1
    seps = text.translate(None, _NOT_SEPARATOR)
    lines = seps.count(b"\n") + 1
    if seps != b"    \n" * (lines - 1) + b"    " or (lead and len(block) - len(text) != lines):
        return False
    # every line holds 4 single spaces and nothing else that splits: 5 tokens per line
    # unless a field is empty (a leading, trailing or doubled space), caught here
    tokens = text.split()
    if len(tokens) != 5 * lines or tokens[2::5].count(b"ima-ng") != lines:
        return False
    pcr_text = tokens[0::5]
    pcr_of: dict = {}
    for t in set(pcr_text):
        if not _is_number(t) or int(t) > 0xFFFFFFFF:
            return False
        pcr_of[t] = int(t)
    hash_text = tokens[1::5]
    sizes = set(map(len, hash_text))
    hlen = sizes.pop()
    if sizes or hlen & 1:
        return False
    if template_hash_alg is None:
        alg = _SIZE_TO_ALG.get(hlen >> 1)
    else:
        alg = template_hash_alg if hlen >> 1 == digest_size(template_hash_alg) else None
    if alg is None:
        return False
    dtext = tokens[3::5]
    sizes = set(map(len, dtext))
    dlen = sizes.pop()
    plen = dtext[0].rfind(b":") + 1
    prefix = dtext[0][:plen]
    # the same "<algo>:" on every line (hex holds no colon, so it is the text up to the
    # last colon, as _ascii_lines_fast reads it)
    if sizes or not plen or dlen == plen or \
            list(map(bytes.startswith, dtext, _repeat(prefix))).count(False):
        return False
    try:
        th = list(map(_unhexlify, hash_text))
        digests = list(map(_unhexlify, map(bytes.__getitem__, dtext, _repeat(slice(plen, None)))))
    except ValueError:
        return False
    names = tokens[4::5]
    nlens = list(map(len, names))
    pcr_lens = set(map(len, pcr_of))
    step = lead + 11 + hlen + dlen  # a line: 4 spaces, "ima-ng", its newline
    if len(pcr_lens) == 1:
        offsets = list(_accumulate(map((step + pcr_lens.pop()).__add__, nlens), initial=pos))
    else:
        offsets = list(_accumulate(map(_add, map(step.__add__, nlens), map(len, pcr_text)),
                                   initial=pos))
    if offsets[-1] != pos + len(block) + 1:  # a check on the arithmetic above
        return False
    pack = struct.Struct(">I" if big_endian else "<I").pack
    head = pack(plen + 1 + len(digests[0])) + prefix + b"\x00"
    nlen_field = {}  # name length -> the n-ng field's length prefix (name and its NUL)
    for k in set(nlens):
        nlen_field[k] = pack(k + 1)
    tdata = map(b"".join, zip(_repeat(head), digests, map(nlen_field.__getitem__, nlens), names,
                              _repeat(b"\x00")))
    new = object.__new__  # then every attribute ImaEntry.__init__ sets, set inline
    append = out.append
    for pcr, h, td, off in zip(map(pcr_of.__getitem__, pcr_text), th, tdata,  # noqa: B905
                               offsets):
        e = new(ImaEntry)
        e.pcr = e.index = pcr
        e.template_hash = h
        e.template_hash_alg = alg
        e.template_name = "ima-ng"
        e.template_data = td
        e.offset = off
        e.big_endian = big_endian
        append(e)
    return True


def _bulk_ima_ng_native(block: bytes, pos: int, big_endian: bool,
                        template_hash_alg: int | None, out: list) -> bool:
    """:func:`_bulk_ima_ng` through the C kernel: the same entries, or False."""
    by_size = _SIZE_TO_ALG
    if template_hash_alg is not None:
        size = digest_size(template_hash_alg)
        if size is None:
            return False
        by_size = {size: template_hash_alg}
    entries = SPEEDUPS.parse_ima_ng_block(block, pos, big_endian, by_size, ImaEntry, "ima-ng")
    if entries is None:
        return False
    out += entries
    return True


def _ascii_lines_fast(block: bytes, pos: int, lineno: int, out: list, source: str | None,
                      big_endian: bool, template_hash_alg: int | None, caches: tuple) -> None:
    """The lines of ``block`` (at offset ``pos``, after ``lineno`` lines), one by one.

    ima-ng lines, and ima-sig lines without a signature, are decoded inline
    (binascii hex, a cached d-ng field head); any other line, and any line the
    inline code does not take whole, goes through :func:`_ascii_entry` as in
    the portable loop, which decodes it or raises.
    """
    append = out.append
    names, pcrs, heads = caches
    unhex = _unhexlify
    pack = struct.Struct(">I" if big_endian else "<I").pack
    want_size = None if template_hash_alg is None else digest_size(template_hash_alg)
    size_to_alg = _SIZE_TO_ALG
    new = object.__new__  # then every attribute ImaEntry.__init__ sets, set inline
    for line in block.split(b"\n"):
        lineno += 1
        start = pos
        pos += len(line) + 1
        if line[:1] == b" ":
            line = line.lstrip(b" ")
        parts = line.split(b" ", 4)
        if len(parts) >= 4 and (parts[2] == b"ima-ng" or parts[2] == b"ima-sig"):
            pcr = pcrs.get(parts[0])
            if pcr is None:
                text = parts[0]
                if _is_number(text) and int(text) <= 0xFFFFFFFF:
                    pcr = int(text)
                    pcrs[text] = pcr
            dtext = parts[3]
            colon = dtext.rfind(b":")
            th = None
            if pcr is not None and colon >= 0:
                try:
                    th = unhex(parts[1])
                    digest = unhex(dtext[colon + 1:])
                except ValueError:
                    th = None
            if th is not None:
                if template_hash_alg is None:
                    alg = size_to_alg.get(len(th))
                elif len(th) == want_size:
                    alg = template_hash_alg
                else:
                    alg = None
                ntext = parts[4] if len(parts) == 5 else b""
                sig = parts[2] == b"ima-sig"
                if sig:  # only an empty signature: "<d-ng> <name> ", no space in the name
                    if ntext.endswith(b" ") and ntext.count(b" ") == 1:
                        ntext = ntext[:-1]
                    else:
                        alg = None
                if alg is not None and pcr is not None and b"\x00" not in ntext:
                    prefix = dtext[:colon + 1]
                    key = (prefix, len(digest))
                    head = heads.get(key)
                    if head is None:
                        head = pack(len(prefix) + 1 + len(digest)) + prefix + b"\x00"
                        heads[key] = head
                    tdata = b"".join((head, digest, pack(len(ntext) + 1), ntext,
                                      _NUL_EMPTY_SIG if sig else b"\x00"))
                    e = new(ImaEntry)
                    e.pcr = e.index = pcr
                    e.template_hash = th
                    e.template_hash_alg = alg
                    e.template_name = "ima-sig" if sig else "ima-ng"
                    e.template_data = tdata
                    e.offset = start
                    e.big_endian = big_endian
                    append(e)
                    continue
        if not line or line.isspace():
            continue
        try:
            e = _ascii_entry(line, names, big_endian, template_hash_alg)
        except SpecError as err:
            raise _line_error(err, lineno, start, source, len(out)) from None
        e.offset = start
        append(e)


def encode_ima_ascii_line(e: ImaEntry) -> bytes:
    """The kernel's ascii form of an entry (``ima_ascii_measurements_show``), newline included."""
    head = ("%2d " % e.pcr).encode() + bytes(e.template_hash).hex().encode() + b" " + \
        e.template_name.encode()
    if e.template_data is None:
        return head + (e.ascii_tail or b"") + b"\n"
    problem = e.template_problem()
    if problem is not None:
        raise EncodeError("entry at %s: %s" % (e.offset, problem), e.offset, "template_data")
    if e.field_ids() is None:
        raise EncodeError("template %r has unknown field types; the kernel's ascii form of "
                          "its fields is unknown" % e.template_name, e.offset, "template_name")
    parts = [head]
    for f in e.fields():
        parts.append(b" ")
        if f.data:
            parts.append(field_to_ascii(f.name, f.data, f.big_endian))
    parts.append(b"\n")
    return b"".join(parts)


def encode_ima_ascii(entries: list) -> bytes:
    """An ascii list of ``entries``."""
    return b"".join([encode_ima_ascii_line(e) for e in entries])


def detect_ima(data: bytes) -> str | None:
    """``"ascii"``, ``"binary"`` or None, from the first entry."""
    head = bytes(data[:4096])
    line = head.split(b"\n", 1)[0].lstrip(b" ")
    parts = line.split(b" ")
    if len(parts) >= 4 and _is_number(parts[0]):
        th = _fromhex(parts[1])
        if th is not None and len(th) in _SIZE_TO_ALG and parts[2] and \
                all(0x21 <= ch <= 0x7E for ch in parts[2]):
            return "ascii"
    if sniff_ima_binary(head) is not None:
        return "binary"
    return None


# -- register mapping -----------------------------------------------------------------------


def to_cc_mr(entries: list, pcr_field: str = "auto") -> list:
    """The entries re-indexed as CC MR indexes (``index``; ``pcr`` keeps the logged field).

    ``pcr_field`` says what the list's PCR field means:

    - ``"rtmr"``: an RTMR number, as IMA-over-RTMR kernels log it (``2`` for
      RTMR2): MR index = field + 1;
    - ``"pcr"``: a TPM PCR number, mapped as UEFI 2.10 §38.4.1 maps PCRs onto
      CC MRs (PCR 10 -> MR3, see :func:`shared_spec.registers.pcr_to_cc_mr`);
    - ``"auto"`` (default): fields 0..3 are RTMRs, anything else a PCR.

    A field with no CC MR (a PCR above 15, an RTMR above 3) raises
    :class:`UnsupportedError` rather than being placed silently.
    """
    if pcr_field not in ("auto", "rtmr", "pcr"):
        raise UnsupportedError("pcr_field must be auto, rtmr or pcr, not %r" % pcr_field, None,
                               "pcr_field")
    paused = _gc_pause() if FAST_PATHS else False
    try:
        out = []
        for i, e in enumerate(entries):
            if pcr_field == "rtmr" or (pcr_field == "auto" and e.pcr <= 3):
                mr = e.pcr + 1 if e.pcr <= 3 else None
            else:
                mr = pcr_to_cc_mr(e.pcr)
            if mr is None:
                raise UnsupportedError("IMA entry #%d: %s field %d has no CC MR" % (
                    i, "RTMR" if pcr_field == "rtmr" else "PCR", e.pcr), e.offset, "pcr")
            out.append(e.copy_with_index(mr))
        return out
    finally:
        if paused:
            _gc.enable()


# -- checks ---------------------------------------------------------------------------------


def _may_name_boot_aggregate(data: bytes | None) -> bool:
    """False when template data cannot name ``boot_aggregate`` (a cheap test before
    :meth:`ImaEntry.file_name_bytes`, which decodes the fields)."""
    if data is None:
        return False
    return not isinstance(data, bytes) or b"boot_aggregate" in data


def check_entries(entries: list, hashes: HashProvider) -> list:
    """Findings about a measurement list (never raises for content).

    - ``IMA_TEMPLATE_HASH_MISMATCH`` (error): the logged template hash is not
      the logged algorithm's hash of the template data (entry number and path named);
    - ``IMA_VIOLATION`` (warning): a violation entry (extends 0xFF);
    - ``IMA_TEMPLATE_DATA_MALFORMED`` (error): template data that its template
      cannot hold;
    - ``IMA_TEMPLATE_UNVERIFIABLE`` (warning): an ascii entry of a template
      whose fields are unknown, so its hash cannot be recomputed;
    - ``IMA_TEMPLATE_HASH_UNCHECKED`` (info, once per algorithm): no
      implementation of the list's algorithm here;
    - ``IMA_BOOT_AGGREGATE_NOT_FIRST`` (error): a ``boot_aggregate`` entry
      exists but the list does not start with one.
    """
    findings = []
    unchecked: dict = {}
    first_boot = -1
    for i, e in enumerate(entries):
        th = e.template_hash
        if first_boot < 0 and _may_name_boot_aggregate(e.template_data) and \
                e.file_name_bytes() == b"boot_aggregate":
            first_boot = i
        if e.is_violation:
            findings.append(Finding(
                "IMA_VIOLATION", SEVERITY_WARNING,
                "IMA entry #%d (%s) is a violation: logged with a zero template hash, "
                "extended as 0xFF" % (i, e.file_name()), e.index, i, e.offset,
                {"path": e.file_name()}))
            continue
        if e.template_data is None:
            findings.append(Finding(
                "IMA_TEMPLATE_UNVERIFIABLE", SEVERITY_WARNING,
                "IMA entry #%d: template %r has unknown fields; its template hash cannot be "
                "recomputed from the ascii line" % (i, e.template_name), e.index, i, e.offset,
                {"template": e.template_name}))
            continue
        problem = e.template_problem()
        if problem is not None:
            findings.append(Finding(
                "IMA_TEMPLATE_DATA_MALFORMED", SEVERITY_ERROR,
                "IMA entry #%d: %s" % (i, problem), e.index, i, e.offset,
                {"template": e.template_name}))
        alg = e.template_hash_alg
        want = e.template_digest(alg, hashes)
        if want is None:
            if alg not in unchecked:
                unchecked[alg] = True
                findings.append(Finding(
                    "IMA_TEMPLATE_HASH_UNCHECKED", SEVERITY_INFO,
                    "no %s implementation here: IMA template hashes not checked"
                    % alg_name(alg), e.index, i, e.offset))
            continue
        if want != th:
            path = e.file_name()
            findings.append(Finding(
                "IMA_TEMPLATE_HASH_MISMATCH", SEVERITY_ERROR,
                "IMA entry #%d (%s): template hash is not the %s of its template data"
                % (i, path, alg_name(alg)), e.index, i, e.offset,
                {"path": path, "logged": bytes(th).hex(), "computed": want.hex()}))
    if first_boot > 0:
        findings.append(Finding(
            "IMA_BOOT_AGGREGATE_NOT_FIRST", SEVERITY_ERROR,
            "boot_aggregate is entry #%d; the list starts with %r" % (
                first_boot, entries[0].file_name()), entries[first_boot].index, first_boot,
            entries[first_boot].offset))
    return findings


# -- boot aggregate -------------------------------------------------------------------------


def boot_aggregate(pcr_values: dict, alg: int, hashes: HashProvider,
                   include_8_9: bool | None = None) -> bytes:
    """H(PCR0 || ... || PCR7 [|| PCR8 || PCR9]) as ``ima_calc_boot_aggregate_tfm`` computes it.

    ``pcr_values``: {pcr: value in bank ``alg``}. Since Linux 5.8 PCRs 8 and 9
    are included for every bank but SHA-1; ``include_8_9`` None follows that
    rule, True/False forces it (older kernels hashed PCRs 0-7 only). The kernel
    picks the bank of its IMA hash algorithm if allocated, else SHA-256, else
    SHA-1; the d-ng field of the ``boot_aggregate`` entry names it.
    """
    if include_8_9 is None:
        include_8_9 = alg != ALG_SHA1
    size = digest_size(alg)
    regs = list(range(10 if include_8_9 else 8))
    parts = []
    for i in regs:
        v = pcr_values.get(i)
        if v is None:
            raise FormatError("boot_aggregate needs PCR %d" % i, None, "pcr_values")
        if size is not None and len(v) != size:
            raise FormatError("PCR %d value is %d bytes, %s needs %d" % (
                i, len(v), alg_name(alg), size), None, "pcr_values")
        parts.append(bytes(v))
    return hashes.digest(alg, b"".join(parts))


def tdx_boot_aggregate(mrs: dict, hashes: HashProvider) -> bytes:
    """SHA-384(MRTD || RTMR0 || RTMR1 || RTMR2), ``mrs`` keyed by CC MR index 0..3.

    The boot_aggregate of IMA-over-RTMR kernels (cc-trusted-api evidence):
    the register values before IMA's first extend.
    """
    parts = []
    for i in range(4):
        v = mrs.get(i)
        if v is None or len(v) != 48:
            raise FormatError("tdx boot_aggregate needs 48-byte CC MR %d" % i, None, "mrs")
        parts.append(bytes(v))
    return hashes.digest(ALG_SHA384, b"".join(parts))


def logged_boot_aggregate(entries: list) -> tuple | None:
    """``(alg id or None, digest)`` of the first ``boot_aggregate`` entry, or None.

    The alg id comes from the d-ng algorithm name (``ima``-template entries,
    always SHA-1, give ALG_SHA1).
    """
    for e in entries:
        if _may_name_boot_aggregate(e.template_data) and \
                e.file_name_bytes() == b"boot_aggregate":
            fd = e.file_digest()
            if fd is None:
                return None
            algo, digest = fd
            return (ALG_SHA1 if algo is None else alg_from_name(algo), digest)
    return None


def decode_field(name: str, data: bytes) -> dict | None:
    """A description of one field (see :func:`shared_spec.ima_templates.describe_field`)."""
    out = describe_field(name, data)
    del out["field"]
    return out or None


class PaddedSha1Entry:
    """An entry as the kernel extends it into a bank it has no hash implementation for.

    ima_calc_field_array_hash: "for unmapped TPM algorithms digest is still a
    padded SHA1" — when IMA starts before the bank's algorithm is available
    (e.g. SHA-384/512 built as modules), that bank receives the entry's SHA-1
    template digest followed by zeros. A violation still extends 0xFF over the
    whole bank (ima_init_digests fills the bank's full digest size for every
    algorithm the kernel can name; only for a TPM algorithm it has no name for
    would it be 20 bytes of 0xFF, padded).
    """

    extends = True

    def __init__(self, entry: ImaEntry) -> None:
        self.entry = entry
        self.index = entry.index
        self.digests = entry.digests
        self.offset = entry.offset

    def digest_for(self, alg: int, hashes: HashProvider) -> bytes | None:
        size = digest_size(alg)
        if size is None:
            return None
        if self.entry.is_violation:
            return _ffs(size)
        sha1 = self.entry.digest_for(ALG_SHA1, hashes)
        if sha1 is None:
            return None
        return sha1 + b"\x00" * (size - len(sha1))
