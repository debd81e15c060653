"""TPM 2.0 commands the agent and the SDK need, marshalled by hand (TPM 2.0 Library Part 2/3).

Every command is a 10-byte header (tag UINT16, commandSize UINT32, commandCode
UINT32), the handles, for ``TPM_ST_SESSIONS`` an authorization area (UINT32
authorizationSize, then TPMS_AUTH_COMMAND structures), then the parameters.
Every response is a header (tag, responseSize, responseCode), then for a
success the handles, for ``TPM_ST_SESSIONS`` a UINT32 parameterSize, the
parameters, and the TPMS_AUTH_RESPONSE structures. Big-endian throughout.

Commands built here: TPM2_Startup, TPM2_GetCapability(TPM_CAP_PCRS) (the
allocated PCR banks), TPM2_PCR_Extend of every bank at once with the empty
password session, TPM2_PCR_Read, TPM2_GetRandom. Each has its response parser;
a non-zero response code raises :class:`~shared_spec.tpm2_rc.TpmResponseError`
with a readable decoding, malformed responses other :class:`SpecError`
subclasses naming the field and byte offset. Encoders of the responses and
decoders of the commands are here too (byte-exact round trips), for tests and
for stand-in TPMs.

No I/O: the caller writes a command to ``/dev/tpmrm0`` (or a swtpm socket) and
hands the response bytes back; :func:`read_pcrs` takes that as a function.
"""

import struct

try:  # annotations only; MicroPython has no typing module and ignores annotations
    from typing import Callable
except ImportError:  # pragma: no cover - MicroPython
    pass

from shared_spec.algorithms import alg_name, digest_size
from shared_spec.binary import Reader
from shared_spec.errors import EncodeError, FormatError, LimitError, TruncatedError
from shared_spec.tpm2_rc import TPM_RC_SUCCESS, TpmResponseError

# Re-exported: callers catch tpm2.TpmResponseError and print tpm2.describe_rc(code).
from shared_spec.tpm2_rc import decode_rc as decode_rc
from shared_spec.tpm2_rc import describe_rc as describe_rc

TPM_ST_RSP_COMMAND = 0x00C4  # tag of a response to a command with a TPM 1.2 tag
TPM_ST_NO_SESSIONS = 0x8001
TPM_ST_SESSIONS = 0x8002

TPM_CC_Startup = 0x144
TPM_CC_GetCapability = 0x17A
TPM_CC_GetRandom = 0x17B
TPM_CC_PCR_Read = 0x17E
TPM_CC_PCR_Extend = 0x182

TPM_CAP_PCRS = 5
TPM_RS_PW = 0x40000009
TPM_SU_CLEAR = 0x0000
TPM_SU_STATE = 0x0001

HEADER_SIZE = 10
#: sizeofSelect sent in a TPMS_PCR_SELECTION (PCR_SELECT_MIN for 24 PCRs).
PCR_SELECT_SIZE = 3
#: Largest sizeofSelect accepted in a response (64 PCRs).
PCR_SELECT_MAX = 8
#: At most this many digests come back from one TPM2_PCR_Read (a TPML_DIGEST).
PCR_READ_MAX_DIGESTS = 8
#: Largest TPM2B_DIGEST (sizeof(TPMU_HA), SHA-512).
MAX_DIGEST_SIZE = 64
#: Most banks a TPML_PCR_SELECTION or TPML_DIGEST_VALUES may list here.
MAX_BANKS = 16
#: What one read() of /dev/tpmrm0 should be offered.
MAX_RESPONSE_SIZE = 4096

COMMAND_NAMES = {
    TPM_CC_Startup: "TPM2_Startup",
    TPM_CC_GetCapability: "TPM2_GetCapability",
    TPM_CC_GetRandom: "TPM2_GetRandom",
    TPM_CC_PCR_Read: "TPM2_PCR_Read",
    TPM_CC_PCR_Extend: "TPM2_PCR_Extend",
}

class TpmProtocolError(FormatError):
    """The TPM's answers do not fit together (e.g. PCR_Read returned nothing that was asked)."""


# ---------------------------------------------------------------- structures


def normalize_selection(selection: list) -> list:
    """``[(alg, sorted PCR list)]`` from ``[(alg, iterable of PCRs)]``; duplicates refused."""
    out = []
    seen = set()
    for alg, pcrs in selection:
        if alg in seen:
            raise EncodeError("bank %s selected twice" % alg_name(alg), None, "pcrSelections.hash")
        seen.add(alg)
        out.append((alg, sorted(set(pcrs))))
    return out


def encode_pcr_selection(selection: list, size_of_select: int = PCR_SELECT_SIZE) -> bytes:
    """TPML_PCR_SELECTION of ``[(alg, PCRs)]``; every bank gets ``size_of_select`` bytes."""
    if len(selection) > MAX_BANKS:
        raise EncodeError("%d banks selected" % len(selection), None, "pcrSelections.count")
    if not 0 < size_of_select <= 255:
        raise EncodeError("sizeofSelect %d" % size_of_select, None, "pcrSelections.sizeofSelect")
    parts = [struct.pack(">I", len(selection))]
    seen = set()
    for alg, pcrs in selection:
        if not 0 <= alg <= 0xFFFF:
            raise EncodeError("hash algorithm %r" % (alg,), None, "pcrSelections.hash")
        if alg in seen:
            raise EncodeError("bank %s selected twice" % alg_name(alg), None, "pcrSelections.hash")
        seen.add(alg)
        bits = bytearray(size_of_select)
        for p in pcrs:
            if not 0 <= p < 8 * size_of_select:
                raise EncodeError("PCR %r does not fit a %d-byte pcrSelect" % (p, size_of_select),
                                  None, "pcrSelections.pcrSelect")
            bits[p >> 3] |= 1 << (p & 7)
        parts.append(struct.pack(">HB", alg, size_of_select))
        parts.append(bytes(bits))
    return b"".join(parts)


def decode_pcr_selection(r: Reader, field: str = "pcrSelections") -> list:
    """TPML_PCR_SELECTION -> ``[(alg, sorted PCR list)]``, in the order sent."""
    at = r.offset
    count = r.u32be(field + ".count")
    if count > MAX_BANKS:
        raise LimitError("%d PCR selections (at most %d)" % (count, MAX_BANKS), at,
                         field + ".count", r.source)
    out = []
    for _ in range(count):
        alg = r.u16be(field + ".hash")
        at = r.offset
        n = r.u8(field + ".sizeofSelect")
        if n > PCR_SELECT_MAX:
            raise LimitError("sizeofSelect %d (at most %d)" % (n, PCR_SELECT_MAX), at,
                             field + ".sizeofSelect", r.source)
        bits = r.read(n, field + ".pcrSelect")
        pcrs = []
        for i in range(8 * n):
            if bits[i >> 3] & (1 << (i & 7)):
                pcrs.append(i)
        out.append((alg, pcrs))
    return out


def encode_digest_values(digests: list) -> bytes:
    """TPML_DIGEST_VALUES of ``[(alg, digest)]``; each digest must have its algorithm's size."""
    if not digests:
        raise EncodeError("no digest to extend", None, "digests.count")
    if len(digests) > MAX_BANKS:
        raise EncodeError("%d digests" % len(digests), None, "digests.count")
    parts = [struct.pack(">I", len(digests))]
    seen = set()
    for alg, d in digests:
        size = digest_size(alg)
        if size is None:
            raise EncodeError("unknown hash algorithm 0x%04x" % alg, None, "digests.hashAlg")
        if alg in seen:
            raise EncodeError("two %s digests" % alg_name(alg), None, "digests.hashAlg")
        seen.add(alg)
        if len(d) != size:
            raise EncodeError("%s digest of %d bytes, not %d" % (alg_name(alg), len(d), size),
                              None, "digests.digest")
        parts.append(struct.pack(">H", alg))
        parts.append(bytes(d))
    return b"".join(parts)


def decode_digest_values(r: Reader, field: str = "digests") -> list:
    """TPML_DIGEST_VALUES -> ``[(alg, digest)]``; an unknown algorithm cannot be sized."""
    at = r.offset
    count = r.u32be(field + ".count")
    if count > MAX_BANKS:
        raise LimitError("%d digests (at most %d)" % (count, MAX_BANKS), at, field + ".count",
                         r.source)
    out = []
    for _ in range(count):
        at = r.offset
        alg = r.u16be(field + ".hashAlg")
        size = digest_size(alg)
        if size is None:
            raise FormatError("unknown hash algorithm 0x%04x" % alg, at, field + ".hashAlg",
                              r.source)
        out.append((alg, r.read(size, field + ".digest")))
    return out


def encode_tpm2b(data: bytes, field: str = "buffer", limit: int = MAX_DIGEST_SIZE) -> bytes:
    """A TPM2B: UINT16 size then the bytes."""
    if len(data) > limit:
        raise EncodeError("%d bytes (at most %d)" % (len(data), limit), None, field)
    return struct.pack(">H", len(data)) + bytes(data)


def decode_tpm2b(r: Reader, field: str, limit: int = MAX_DIGEST_SIZE) -> bytes:
    """A TPM2B whose size may not exceed ``limit`` nor the bytes left."""
    at = r.offset
    n = r.u16be(field + ".size")
    if n > limit:
        raise LimitError("%s of %d bytes (at most %d)" % (field, n, limit), at, field + ".size",
                         r.source)
    if n > r.remaining():
        raise TruncatedError("%s.size = %d, %d bytes left" % (field, n, r.remaining()), at,
                             field + ".size", r.source)
    return r.read(n, field + ".buffer")


def encode_password_auth(password: bytes = b"", attributes: int = 0) -> bytes:
    """TPMS_AUTH_COMMAND of the password session TPM_RS_PW (no nonce, ``password`` as hmac)."""
    return (struct.pack(">IH", TPM_RS_PW, 0) + struct.pack(">B", attributes)
            + encode_tpm2b(password, "hmac"))


# ------------------------------------------------------------------ commands


def encode_command(tag: int, cc: int, body: bytes) -> bytes:
    """Header (tag, commandSize, commandCode) followed by ``body``."""
    return struct.pack(">HII", tag, HEADER_SIZE + len(body), cc) + body


def parse_command(cmd: bytes) -> tuple:
    """``(tag, commandCode, Reader over the rest)`` of a command; commandSize checked."""
    r = Reader(cmd)
    tag = r.u16be("tag")
    size = r.u32be("commandSize")
    cc = r.u32be("commandCode")
    if tag not in (TPM_ST_NO_SESSIONS, TPM_ST_SESSIONS):
        raise FormatError("command tag 0x%04x" % tag, 0, "tag")
    if size != len(cmd):
        cls = TruncatedError if size > len(cmd) else FormatError
        raise cls("commandSize says %d bytes, the command has %d" % (size, len(cmd)), 2,
                  "commandSize")
    return tag, cc, r


def _expect_end(r: Reader, after: str) -> None:
    if not r.at_end():
        raise FormatError("%d bytes after %s" % (r.remaining(), after), r.offset, after)


def startup(startup_type: int = TPM_SU_CLEAR) -> bytes:
    """TPM2_Startup(startupType): the first command after power-on (raw swtpm, no firmware)."""
    return encode_command(TPM_ST_NO_SESSIONS, TPM_CC_Startup, struct.pack(">H", startup_type))


def startup_clear() -> bytes:
    """TPM2_Startup(TPM_SU_CLEAR)."""
    return startup(TPM_SU_CLEAR)


def get_capability(capability: int, prop: int, count: int) -> bytes:
    """TPM2_GetCapability(capability, property, propertyCount)."""
    return encode_command(TPM_ST_NO_SESSIONS, TPM_CC_GetCapability,
                          struct.pack(">III", capability, prop, count))


def get_capability_pcrs() -> bytes:
    """TPM2_GetCapability(TPM_CAP_PCRS): the PCR banks and which PCRs each has allocated."""
    return get_capability(TPM_CAP_PCRS, 0, 1)


def pcr_extend(pcr: int, digests: list) -> bytes:
    """TPM2_PCR_Extend of every ``(alg, digest)`` into PCR ``pcr`` in one command.

    Authorized with the password session TPM_RS_PW and the empty password (PCRs
    have an empty authValue). Whether ``pcr`` exists and may be extended at the
    current locality is the TPM's to say (TPM_RC_VALUE, TPM_RC_LOCALITY).
    """
    if not 0 <= pcr <= 0xFFFFFFFF:
        raise EncodeError("PCR handle %r" % (pcr,), None, "pcrHandle")
    auth = encode_password_auth()
    body = (struct.pack(">II", pcr, len(auth)) + auth + encode_digest_values(digests))
    return encode_command(TPM_ST_SESSIONS, TPM_CC_PCR_Extend, body)


def parse_pcr_extend_command(cmd: bytes) -> tuple:
    """``(pcr, [(alg, digest)], password)`` of a TPM2_PCR_Extend command."""
    tag, cc, r = parse_command(cmd)
    if cc != TPM_CC_PCR_Extend:
        raise FormatError("command code 0x%x, not TPM2_PCR_Extend" % cc, 6, "commandCode")
    if tag != TPM_ST_SESSIONS:
        raise FormatError("TPM2_PCR_Extend without sessions", 0, "tag")
    pcr = r.u32be("pcrHandle")
    at = r.offset
    auth = r.sub(r.u32be("authorizationSize"), "authorizationArea")
    handle = auth.u32be("sessionHandle")
    if handle != TPM_RS_PW:
        raise FormatError("session handle 0x%08x, not TPM_RS_PW" % handle, at + 4,
                          "sessionHandle")
    if decode_tpm2b(auth, "nonce"):
        raise FormatError("password session with a nonce", at + 8, "nonce")
    auth.u8("sessionAttributes")
    password = decode_tpm2b(auth, "hmac")
    _expect_end(auth, "hmac")
    digests = decode_digest_values(r)
    _expect_end(r, "digests")
    return pcr, digests, password


def pcr_read_selection(selection: list) -> bytes:
    """TPM2_PCR_Read of ``[(alg, PCRs)]`` (sizeofSelect 3)."""
    return encode_command(TPM_ST_NO_SESSIONS, TPM_CC_PCR_Read, encode_pcr_selection(selection))


def pcr_read(banks: list, pcrs: list) -> bytes:
    """TPM2_PCR_Read of the same ``pcrs`` in every bank of ``banks``."""
    return pcr_read_selection([(alg, pcrs) for alg in banks])


def parse_pcr_read_command(cmd: bytes) -> list:
    """The ``[(alg, PCRs)]`` a TPM2_PCR_Read command asks for."""
    tag, cc, r = parse_command(cmd)
    if cc != TPM_CC_PCR_Read or tag != TPM_ST_NO_SESSIONS:
        raise FormatError("not a TPM2_PCR_Read without sessions", 6, "commandCode")
    sel = decode_pcr_selection(r, "pcrSelectionIn")
    _expect_end(r, "pcrSelectionIn")
    return sel


def get_random(count: int) -> bytes:
    """TPM2_GetRandom(bytesRequested)."""
    if not 0 <= count <= 0xFFFF:
        raise EncodeError("bytesRequested %r" % (count,), None, "bytesRequested")
    return encode_command(TPM_ST_NO_SESSIONS, TPM_CC_GetRandom, struct.pack(">H", count))


# ----------------------------------------------------------------- responses


def parse_response_header(resp: bytes) -> tuple:
    """``(tag, responseSize, responseCode)``; responseSize must equal the bytes received."""
    r = Reader(resp)
    tag = r.u16be("tag")
    size = r.u32be("responseSize")
    rc = r.u32be("responseCode")
    if tag not in (TPM_ST_NO_SESSIONS, TPM_ST_SESSIONS, TPM_ST_RSP_COMMAND):
        raise FormatError("response tag 0x%04x" % tag, 0, "tag")
    if size > len(resp):
        raise TruncatedError("responseSize says %d bytes, %d received" % (size, len(resp)), 2,
                             "responseSize")
    if size < len(resp):
        raise FormatError("responseSize says %d bytes, %d received" % (size, len(resp)), 2,
                          "responseSize")
    return tag, size, rc


def _response(resp: bytes, command: str, sessions: bool) -> Reader:
    """Reader over a successful response after the header (and parameterSize)."""
    tag, _, rc = parse_response_header(resp)
    if rc != TPM_RC_SUCCESS:
        raise TpmResponseError(command, rc)
    want = TPM_ST_SESSIONS if sessions else TPM_ST_NO_SESSIONS
    if tag != want:
        raise FormatError("%s response tag 0x%04x, expected 0x%04x" % (command, tag, want), 0,
                          "tag")
    return Reader(resp, HEADER_SIZE)


def check_response(resp: bytes, command: str) -> bytes:
    """The bytes after the header of a successful response; raises on errors and bad sizes."""
    rc = parse_response_header(resp)[2]
    if rc != TPM_RC_SUCCESS:
        raise TpmResponseError(command, rc)
    return bytes(resp[HEADER_SIZE:])


def encode_response(rc: int, params: bytes = b"", tag: int = TPM_ST_NO_SESSIONS) -> bytes:
    """A response: header then ``params`` (an error response is the header alone)."""
    return struct.pack(">HII", tag, HEADER_SIZE + len(params), rc) + params


def parse_startup_response(resp: bytes) -> None:
    """Check a TPM2_Startup response (no parameters)."""
    _expect_end(_response(resp, "TPM2_Startup", False), "header")


def parse_get_capability_pcrs(resp: bytes) -> list:
    """``[(alg, set of PCRs)]`` of a GetCapability(TPM_CAP_PCRS) response.

    Every bank the TPM implements is listed; a bank is active (allocated) when
    its set is not empty: see :func:`active_banks`.
    """
    r = _response(resp, "TPM2_GetCapability(TPM_CAP_PCRS)", False)
    more = r.u8("moreData")
    if more > 1:
        raise FormatError("moreData = %d" % more, r.offset - 1, "moreData")
    at = r.offset
    cap = r.u32be("capabilityData.capability")
    if cap != TPM_CAP_PCRS:
        raise FormatError("capability %d, asked for TPM_CAP_PCRS (5)" % cap, at,
                          "capabilityData.capability")
    sel = decode_pcr_selection(r, "capabilityData.assignedPCR")
    _expect_end(r, "capabilityData")
    return [(alg, set(pcrs)) for alg, pcrs in sel]


def encode_get_capability_pcrs_response(selection: list, more_data: bool = False,
                                        size_of_select: int = PCR_SELECT_SIZE) -> bytes:
    """A successful GetCapability(TPM_CAP_PCRS) response listing ``[(alg, PCRs)]``."""
    params = (struct.pack(">BI", 1 if more_data else 0, TPM_CAP_PCRS)
              + encode_pcr_selection(selection, size_of_select))
    return encode_response(TPM_RC_SUCCESS, params)


def active_banks(selection: list) -> list:
    """The algorithms of the banks that have at least one PCR allocated, in TPM order."""
    return [alg for alg, pcrs in selection if pcrs]


def parse_pcr_read_response(resp: bytes) -> tuple:
    """``(pcrUpdateCounter, [(alg, PCRs)], {alg: {pcr: value}})`` of a PCR_Read response.

    The selection is what the TPM read (it may be less than what was asked: at
    most :data:`PCR_READ_MAX_DIGESTS` per call, see :func:`read_pcrs`). The
    values come in selection order, lowest PCR first; their count and sizes
    must match the selection.
    """
    r = _response(resp, "TPM2_PCR_Read", False)
    counter = r.u32be("pcrUpdateCounter")
    sel = decode_pcr_selection(r, "pcrSelectionOut")
    at = r.offset
    count = r.u32be("pcrValues.count")
    if count > PCR_READ_MAX_DIGESTS:
        raise LimitError("%d PCR values (at most %d)" % (count, PCR_READ_MAX_DIGESTS), at,
                         "pcrValues.count")
    selected = 0
    for _, pcrs in sel:
        selected += len(pcrs)
    if count != selected:
        raise FormatError("%d PCR values for %d selected PCRs" % (count, selected), at,
                          "pcrValues.count")
    values: dict = {}
    for alg, pcrs in sel:
        bank = values.setdefault(alg, {})
        size = digest_size(alg)
        for p in pcrs:
            at = r.offset
            v = decode_tpm2b(r, "pcrValues.digests")
            if size is not None and len(v) != size:
                raise FormatError("%s PCR %d value of %d bytes, not %d" % (
                    alg_name(alg), p, len(v), size), at, "pcrValues.digests.size")
            bank[p] = v
    _expect_end(r, "pcrValues")
    return counter, sel, values


def encode_pcr_read_response(counter: int, selection: list, values: dict,
                             size_of_select: int = PCR_SELECT_SIZE) -> bytes:
    """A successful PCR_Read response: ``values[alg][pcr]`` for every selected PCR."""
    parts = [struct.pack(">I", counter), encode_pcr_selection(selection, size_of_select)]
    digests = []
    for alg, pcrs in selection:
        for p in sorted(set(pcrs)):
            digests.append(encode_tpm2b(values[alg][p], "pcrValues.digests"))
    if len(digests) > PCR_READ_MAX_DIGESTS:
        raise EncodeError("%d PCR values (at most %d)" % (len(digests), PCR_READ_MAX_DIGESTS),
                          None, "pcrValues.count")
    parts.append(struct.pack(">I", len(digests)))
    parts.extend(digests)
    return encode_response(TPM_RC_SUCCESS, b"".join(parts))


def parse_pcr_read(resp: bytes) -> dict:
    """``{alg: {pcr: value}}`` of one PCR_Read response (see :func:`parse_pcr_read_response`)."""
    return parse_pcr_read_response(resp)[2]


def parse_pcr_extend_response(resp: bytes) -> int:
    """Check a PCR_Extend response; returns the session attributes the TPM sent back.

    A success carries parameterSize 0 (PCR_Extend returns no parameters) and
    one TPMS_AUTH_RESPONSE for the password session (empty nonce and hmac).
    """
    r = _response(resp, "TPM2_PCR_Extend", True)
    at = r.offset
    size = r.u32be("parameterSize")
    if size != 0:
        raise FormatError("parameterSize %d, PCR_Extend has no response parameters" % size,
                          at, "parameterSize")
    decode_tpm2b(r, "authResponse.nonce")
    attrs = r.u8("authResponse.sessionAttributes")
    decode_tpm2b(r, "authResponse.hmac")
    _expect_end(r, "authResponse")
    return attrs


def encode_pcr_extend_response(attributes: int = 1) -> bytes:
    """A successful PCR_Extend response with the password session's TPMS_AUTH_RESPONSE."""
    params = struct.pack(">IHBH", 0, 0, attributes, 0)
    return encode_response(TPM_RC_SUCCESS, params, TPM_ST_SESSIONS)


def parse_get_random_response(resp: bytes) -> bytes:
    """The randomBytes of a GetRandom response (may be fewer than asked)."""
    r = _response(resp, "TPM2_GetRandom", False)
    data = decode_tpm2b(r, "randomBytes")
    _expect_end(r, "randomBytes")
    return data


# ------------------------------------------------------------- PCR_Read loop


def missing_selection(selection: list, values: dict) -> list:
    """The part of ``[(alg, PCRs)]`` not yet in ``values`` (``{alg: {pcr: value}}``)."""
    out = []
    for alg, pcrs in selection:
        have = values.get(alg, {})
        rest = [p for p in sorted(set(pcrs)) if p not in have]
        if rest:
            out.append((alg, rest))
    return out


def read_pcrs(transact: "Callable[[bytes], bytes]", selection: list, attempts: int = 3) -> dict:
    """``{alg: {pcr: value}}`` of every PCR in ``selection``, over as many PCR_Read as needed.

    ``transact(command_bytes) -> response_bytes`` talks to the TPM. A TPM
    returns at most 8 values per call, so the command is re-issued for what is
    missing. All values come from one pcrUpdateCounter: when the counter moves
    between calls (someone extended meanwhile) the read starts over, up to
    ``attempts`` times. A call that returns none of what is still missing (a
    bank that is not allocated, a PCR the TPM does not have) raises
    :class:`TpmProtocolError`.
    """
    selection = normalize_selection(selection)
    total = 0
    for _, pcrs in selection:
        total += len(pcrs)
    for _ in range(attempts):
        values: dict = {}
        counter = None
        moved = False
        for _ in range(total + 1):
            missing = missing_selection(selection, values)
            if not missing:
                return values
            c, got_sel, got = parse_pcr_read_response(transact(pcr_read_selection(missing)))
            if counter is not None and c != counter:
                moved = True
                break
            counter = c
            progress = 0
            wanted = {}
            for alg, pcrs in missing:
                wanted[alg] = pcrs
            for alg, pcrs in got_sel:
                for p in pcrs:
                    if p not in wanted.get(alg, ()):
                        raise TpmProtocolError("PCR_Read returned %s PCR %d, not asked for" % (
                            alg_name(alg), p), None, "pcrSelectionOut")
                    values.setdefault(alg, {})[p] = got[alg][p]
                    progress += 1
            if not progress:
                raise TpmProtocolError("the TPM returned none of %s (bank not allocated?)" %
                                       format_selection(missing), None, "pcrSelectionOut")
        if not moved:
            break
    raise TpmProtocolError("PCRs kept changing while being read (%d attempts)" % attempts,
                           None, "pcrUpdateCounter")


def format_selection(selection: list) -> str:
    """``sha1:0,1,2+sha256:15``, the selection syntax of tpm2-tools."""
    parts = []
    for alg, pcrs in selection:
        parts.append("%s:%s" % (alg_name(alg), ",".join([str(p) for p in sorted(pcrs)])))
    return "+".join(parts)


def command_name(cc: int) -> str:
    """``TPM2_PCR_Extend`` for 0x182, else ``TPM_CC 0x...``."""
    return COMMAND_NAMES.get(cc, "TPM_CC 0x%x" % cc)
