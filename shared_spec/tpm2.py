"""TPM 2.0 commands the agent and the SDK need, marshalled by hand (TPM 2.0 Part 3).

Big-endian throughout. Commands: GetCapability(TPM_CAP_PCRS), PCR_Extend of
several banks at once with a password session, PCR_Read. A non-zero response
code raises :class:`TpmResponseError` with a readable decoding.
"""

import struct

from shared_spec.algorithms import alg_name, digest_size
from shared_spec.errors import FormatError, LimitError, SpecError, TruncatedError

TPM_ST_NO_SESSIONS = 0x8001
TPM_ST_SESSIONS = 0x8002
TPM_CC_PCR_EXTEND = 0x182
TPM_CC_PCR_READ = 0x17E
TPM_CC_GET_CAPABILITY = 0x17A
TPM_CC_STARTUP = 0x144
TPM_CAP_PCRS = 5
TPM_RS_PW = 0x40000009
TPM_SU_CLEAR = 0

RC_VER1 = 0x100
RC_FMT1 = 0x080
RC_WARN = 0x900

_FMT0 = {
    0x000: "TPM_RC_SUCCESS", 0x100: "TPM_RC_INITIALIZE", 0x101: "TPM_RC_FAILURE",
    0x103: "TPM_RC_SEQUENCE", 0x143: "TPM_RC_COMMAND_CODE", 0x144: "TPM_RC_AUTHSIZE",
    0x145: "TPM_RC_AUTH_CONTEXT", 0x149: "TPM_RC_AUTH_MISSING", 0x14B: "TPM_RC_PCR",
    0x14C: "TPM_RC_PCR_CHANGED", 0x142: "TPM_RC_COMMAND_SIZE", 0x153: "TPM_RC_AUTH_UNAVAILABLE",
}
_FMT1 = {
    0x001: "TPM_RC_ASYMMETRIC", 0x002: "TPM_RC_ATTRIBUTES", 0x003: "TPM_RC_HASH",
    0x004: "TPM_RC_VALUE", 0x005: "TPM_RC_HIERARCHY", 0x007: "TPM_RC_KEY_SIZE",
    0x00B: "TPM_RC_HANDLE", 0x00E: "TPM_RC_AUTH_FAIL", 0x015: "TPM_RC_SIZE",
    0x018: "TPM_RC_TAG", 0x019: "TPM_RC_SELECTOR", 0x01A: "TPM_RC_INSUFFICIENT",
    0x022: "TPM_RC_BAD_AUTH", 0x00F: "TPM_RC_MODE",
}
_WARN = {
    0x901: "TPM_RC_CONTEXT_GAP", 0x902: "TPM_RC_OBJECT_MEMORY", 0x903: "TPM_RC_SESSION_MEMORY",
    0x904: "TPM_RC_MEMORY", 0x908: "TPM_RC_YIELDED", 0x909: "TPM_RC_CANCELED",
    0x907: "TPM_RC_LOCALITY", 0x920: "TPM_RC_NV_RATE", 0x921: "TPM_RC_LOCKOUT",
    0x922: "TPM_RC_RETRY", 0x923: "TPM_RC_NV_UNAVAILABLE", 0x910: "TPM_RC_TESTING",
}


def describe_rc(rc: int) -> str:
    """``TPM_RC_VALUE (0x2c4): parameter 2`` style text for a response code."""
    if rc & RC_FMT1:
        base = rc & 0x3F
        name = _FMT1.get(base, "TPM_RC_FMT1_0x%03x" % base)
        n = (rc >> 8) & 0xF
        if rc & 0x40:
            where = ", parameter %d" % n
        elif n & 0x8:
            where = ", session %d" % (n & 0x7)
        elif n:
            where = ", handle %d" % n
        else:
            where = ""
        return "%s (0x%03x)%s" % (name, rc, where)
    if (rc & 0xF00) == RC_WARN:
        return "%s (0x%03x)" % (_WARN.get(rc, "TPM_RC_WARNING"), rc)
    return "%s (0x%03x)" % (_FMT0.get(rc, "TPM_RC_0x%03x" % rc), rc)


class TpmResponseError(SpecError):
    """The TPM answered a command with a non-zero response code."""

    def __init__(self, command: str, rc: int) -> None:
        super().__init__("%s failed: %s" % (command, describe_rc(rc)), None, "responseCode")
        self.rc = rc
        self.command = command


def _cmd(tag: int, cc: int, body: bytes) -> bytes:
    return struct.pack(">HII", tag, 10 + len(body), cc) + body


def _selection(banks: list, pcrs: list) -> bytes:
    out = [struct.pack(">I", len(banks))]
    for alg in banks:
        bits = bytearray(3)
        for p in pcrs:
            bits[p // 8] |= 1 << (p % 8)
        out.append(struct.pack(">HB", alg, 3) + bytes(bits))
    return b"".join(out)


def startup_clear() -> bytes:
    return _cmd(TPM_ST_NO_SESSIONS, TPM_CC_STARTUP, struct.pack(">H", TPM_SU_CLEAR))


def get_capability_pcrs() -> bytes:
    return _cmd(TPM_ST_NO_SESSIONS, TPM_CC_GET_CAPABILITY,
                struct.pack(">III", TPM_CAP_PCRS, 0, 1))


def pcr_extend(pcr: int, digests: list) -> bytes:
    """PCR_Extend of every (alg, digest) in one command, empty password session."""
    if not 0 <= pcr <= 23:
        raise FormatError("PCR %d out of range" % pcr, None, "pcrHandle")
    auth = struct.pack(">IHBH", TPM_RS_PW, 0, 0, 0)
    parts = [struct.pack(">II", pcr, len(auth)), auth, struct.pack(">I", len(digests))]
    for alg, d in digests:
        if digest_size(alg) != len(d):
            raise FormatError("%s digest of %d bytes" % (alg_name(alg), len(d)), None, "digest")
        parts.append(struct.pack(">H", alg) + bytes(d))
    return _cmd(TPM_ST_SESSIONS, TPM_CC_PCR_EXTEND, b"".join(parts))


def pcr_read(banks: list, pcrs: list) -> bytes:
    return _cmd(TPM_ST_NO_SESSIONS, TPM_CC_PCR_READ, _selection(banks, pcrs))


def check_response(resp: bytes, command: str) -> bytes:
    """The response parameters after the header; raises on errors and bad sizes."""
    if len(resp) < 10:
        raise TruncatedError("%s response of %d bytes" % (command, len(resp)), 0, "header")
    _, size, rc = struct.unpack_from(">HII", resp, 0)
    if size != len(resp):
        raise FormatError("%s response says %d bytes, got %d" % (command, size, len(resp)), 2,
                          "responseSize")
    if rc != 0:
        raise TpmResponseError(command, rc)
    return bytes(resp[10:])


def _parse_selection(data: bytes, pos: int) -> tuple:
    if len(data) - pos < 4:
        raise TruncatedError("TPML_PCR_SELECTION count missing", pos, "count")
    count = struct.unpack_from(">I", data, pos)[0]
    pos += 4
    if count > 16:
        raise LimitError("%d PCR selections" % count, pos - 4, "count")
    out = []
    for _ in range(count):
        if len(data) - pos < 3:
            raise TruncatedError("TPMS_PCR_SELECTION truncated", pos, "pcrSelections")
        alg, n = struct.unpack_from(">HB", data, pos)
        pos += 3
        if n > len(data) - pos or n > 8:
            raise LimitError("sizeofSelect %d" % n, pos - 1, "sizeofSelect")
        bits = data[pos:pos + n]
        pos += n
        pcrs = [i for i in range(8 * n) if bits[i // 8] & (1 << (i % 8))]
        out.append((alg, pcrs))
    return out, pos


def parse_get_capability_pcrs(resp: bytes) -> list:
    """[(alg, [pcrs])]: a bank is active when it selects any PCR."""
    params = check_response(resp, "TPM2_GetCapability(PCRS)")
    if len(params) < 5:
        raise TruncatedError("capability data missing", 10, "capabilityData")
    sel, _ = _parse_selection(params, 5)
    return sel


def parse_pcr_read(resp: bytes) -> dict:
    """{alg: {pcr: value}} of a PCR_Read response."""
    params = check_response(resp, "TPM2_PCR_Read")
    if len(params) < 4:
        raise TruncatedError("pcrUpdateCounter missing", 10, "pcrUpdateCounter")
    sel, pos = _parse_selection(params, 4)
    if len(params) - pos < 4:
        raise TruncatedError("TPML_DIGEST count missing", 10 + pos, "pcrValues")
    count = struct.unpack_from(">I", params, pos)[0]
    pos += 4
    values = []
    for _ in range(count):
        if len(params) - pos < 2:
            raise TruncatedError("TPM2B_DIGEST size missing", 10 + pos, "pcrValues")
        n = struct.unpack_from(">H", params, pos)[0]
        pos += 2
        if n > len(params) - pos:
            raise LimitError("digest of %d bytes" % n, 10 + pos - 2, "pcrValues")
        values.append(bytes(params[pos:pos + n]))
        pos += n
    out: dict = {}
    i = 0
    for alg, pcrs in sel:
        for p in pcrs:
            if i < len(values):
                out.setdefault(alg, {})[p] = values[i]
                i += 1
    return out
