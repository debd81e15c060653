"""TPM 2.0 response codes (TPM 2.0 Library Part 2, §6.6 TPM_RC), decoded for people.

A response code is either format zero or format one (bit 7, ``RC_FMT1``):

- format zero: bits 0-6 error number, bit 8 ``RC_VER1`` (clear: a TPM 1.2
  code), bit 10 vendor defined, bit 11 severity (set: a warning, the command
  may succeed if sent again). ``TPM_RC_VER1 + n`` errors, ``RC_WARN + n``
  warnings.
- format one: bits 0-5 error number, bit 6 ``P`` (the number in bits 8-11 is
  a parameter number), bits 8-11 ``N``: with ``P`` clear, 1-7 is a handle
  number and 8-15 a session number (N - 8); 0 names none.

:func:`decode_rc` splits a code into those parts, :func:`describe_rc` makes
``TPM_RC_VALUE (0x2c4): value is out of range or wrong for the context,
parameter 2``. :class:`TpmResponseError` is what a parser raises for a
non-zero code.
"""

from shared_spec.errors import SpecError

TPM_RC_SUCCESS = 0x000
TPM_RC_BAD_TAG = 0x01E
RC_VER1 = 0x100
RC_FMT1 = 0x080
RC_WARN = 0x900
RC_P = 0x040
RC_VENDOR = 0x400
RC_SEVERITY = 0x800

# Format-zero errors (RC_VER1 + n).
TPM_RC_INITIALIZE = RC_VER1 + 0x000
TPM_RC_FAILURE = RC_VER1 + 0x001
TPM_RC_SEQUENCE = RC_VER1 + 0x003
TPM_RC_PRIVATE = RC_VER1 + 0x00B
TPM_RC_HMAC = RC_VER1 + 0x019
TPM_RC_DISABLED = RC_VER1 + 0x020
TPM_RC_EXCLUSIVE = RC_VER1 + 0x021
TPM_RC_AUTH_TYPE = RC_VER1 + 0x024
TPM_RC_AUTH_MISSING = RC_VER1 + 0x025
TPM_RC_POLICY = RC_VER1 + 0x026
TPM_RC_PCR = RC_VER1 + 0x027
TPM_RC_PCR_CHANGED = RC_VER1 + 0x028
TPM_RC_UPGRADE = RC_VER1 + 0x02D
TPM_RC_TOO_MANY_CONTEXTS = RC_VER1 + 0x02E
TPM_RC_AUTH_UNAVAILABLE = RC_VER1 + 0x02F
TPM_RC_REBOOT = RC_VER1 + 0x030
TPM_RC_UNBALANCED = RC_VER1 + 0x031
TPM_RC_COMMAND_SIZE = RC_VER1 + 0x042
TPM_RC_COMMAND_CODE = RC_VER1 + 0x043
TPM_RC_AUTHSIZE = RC_VER1 + 0x044
TPM_RC_AUTH_CONTEXT = RC_VER1 + 0x045
TPM_RC_NV_RANGE = RC_VER1 + 0x046
TPM_RC_NV_SIZE = RC_VER1 + 0x047
TPM_RC_NV_LOCKED = RC_VER1 + 0x048
TPM_RC_NV_AUTHORIZATION = RC_VER1 + 0x049
TPM_RC_NV_UNINITIALIZED = RC_VER1 + 0x04A
TPM_RC_NV_SPACE = RC_VER1 + 0x04B
TPM_RC_NV_DEFINED = RC_VER1 + 0x04C
TPM_RC_BAD_CONTEXT = RC_VER1 + 0x050
TPM_RC_CPHASH = RC_VER1 + 0x051
TPM_RC_PARENT = RC_VER1 + 0x052
TPM_RC_NEEDS_TEST = RC_VER1 + 0x053
TPM_RC_NO_RESULT = RC_VER1 + 0x054
TPM_RC_SENSITIVE = RC_VER1 + 0x055

# Format-one errors (RC_FMT1 + n); the parameter/handle/session bits come on top.
TPM_RC_ASYMMETRIC = RC_FMT1 + 0x001
TPM_RC_ATTRIBUTES = RC_FMT1 + 0x002
TPM_RC_HASH = RC_FMT1 + 0x003
TPM_RC_VALUE = RC_FMT1 + 0x004
TPM_RC_HIERARCHY = RC_FMT1 + 0x005
TPM_RC_KEY_SIZE = RC_FMT1 + 0x007
TPM_RC_MGF = RC_FMT1 + 0x008
TPM_RC_MODE = RC_FMT1 + 0x009
TPM_RC_TYPE = RC_FMT1 + 0x00A
TPM_RC_HANDLE = RC_FMT1 + 0x00B
TPM_RC_KDF = RC_FMT1 + 0x00C
TPM_RC_RANGE = RC_FMT1 + 0x00D
TPM_RC_AUTH_FAIL = RC_FMT1 + 0x00E
TPM_RC_NONCE = RC_FMT1 + 0x00F
TPM_RC_PP = RC_FMT1 + 0x010
TPM_RC_SCHEME = RC_FMT1 + 0x012
TPM_RC_SIZE = RC_FMT1 + 0x015
TPM_RC_SYMMETRIC = RC_FMT1 + 0x016
TPM_RC_TAG = RC_FMT1 + 0x017
TPM_RC_SELECTOR = RC_FMT1 + 0x018
TPM_RC_INSUFFICIENT = RC_FMT1 + 0x01A
TPM_RC_SIGNATURE = RC_FMT1 + 0x01B
TPM_RC_KEY = RC_FMT1 + 0x01C
TPM_RC_POLICY_FAIL = RC_FMT1 + 0x01D
TPM_RC_INTEGRITY = RC_FMT1 + 0x01F
TPM_RC_TICKET = RC_FMT1 + 0x020
TPM_RC_RESERVED_BITS = RC_FMT1 + 0x021
TPM_RC_BAD_AUTH = RC_FMT1 + 0x022
TPM_RC_EXPIRED = RC_FMT1 + 0x023
TPM_RC_POLICY_CC = RC_FMT1 + 0x024
TPM_RC_BINDING = RC_FMT1 + 0x025
TPM_RC_CURVE = RC_FMT1 + 0x026
TPM_RC_ECC_POINT = RC_FMT1 + 0x027

# Warnings (RC_WARN + n).
TPM_RC_CONTEXT_GAP = RC_WARN + 0x001
TPM_RC_OBJECT_MEMORY = RC_WARN + 0x002
TPM_RC_SESSION_MEMORY = RC_WARN + 0x003
TPM_RC_MEMORY = RC_WARN + 0x004
TPM_RC_SESSION_HANDLES = RC_WARN + 0x005
TPM_RC_OBJECT_HANDLES = RC_WARN + 0x006
TPM_RC_LOCALITY = RC_WARN + 0x007
TPM_RC_YIELDED = RC_WARN + 0x008
TPM_RC_CANCELED = RC_WARN + 0x009
TPM_RC_TESTING = RC_WARN + 0x00A
TPM_RC_NV_RATE = RC_WARN + 0x020
TPM_RC_LOCKOUT = RC_WARN + 0x021
TPM_RC_RETRY = RC_WARN + 0x022
TPM_RC_NV_UNAVAILABLE = RC_WARN + 0x023
TPM_RC_NOT_USED = RC_WARN + 0x07F

#: code -> (name, what it means); format-one codes without their number bits.
RC_NAMES = {
    TPM_RC_SUCCESS: ("TPM_RC_SUCCESS", "success"),
    TPM_RC_BAD_TAG: ("TPM_RC_BAD_TAG", "the command tag is not a TPM 2.0 tag"),
    TPM_RC_INITIALIZE: ("TPM_RC_INITIALIZE",
                        "TPM not initialized by TPM2_Startup, or already initialized"),
    TPM_RC_FAILURE: ("TPM_RC_FAILURE",
                     "the TPM is in failure mode and accepts no commands"),
    TPM_RC_SEQUENCE: ("TPM_RC_SEQUENCE", "improper use of a sequence handle"),
    TPM_RC_PRIVATE: ("TPM_RC_PRIVATE", "not currently used"),
    TPM_RC_HMAC: ("TPM_RC_HMAC", "not currently used"),
    TPM_RC_DISABLED: ("TPM_RC_DISABLED", "the command is disabled"),
    TPM_RC_EXCLUSIVE: ("TPM_RC_EXCLUSIVE",
                       "an audit sequence required exclusivity and lost it"),
    TPM_RC_AUTH_TYPE: ("TPM_RC_AUTH_TYPE", "the authorization handle is not correct"),
    TPM_RC_AUTH_MISSING: ("TPM_RC_AUTH_MISSING",
                          "the command requires an authorization session for a handle"),
    TPM_RC_POLICY: ("TPM_RC_POLICY", "policy failure in a math operation or an invalid "
                    "authPolicy value"),
    TPM_RC_PCR: ("TPM_RC_PCR", "the PCR check failed"),
    TPM_RC_PCR_CHANGED: ("TPM_RC_PCR_CHANGED",
                         "the PCRs have changed since the policy session checked them"),
    TPM_RC_UPGRADE: ("TPM_RC_UPGRADE",
                     "the TPM is in field upgrade mode and accepts only upgrade commands"),
    TPM_RC_TOO_MANY_CONTEXTS: ("TPM_RC_TOO_MANY_CONTEXTS",
                               "the context ID counter is at its maximum"),
    TPM_RC_AUTH_UNAVAILABLE: ("TPM_RC_AUTH_UNAVAILABLE",
                              "authValue or authPolicy is not available for the entity"),
    TPM_RC_REBOOT: ("TPM_RC_REBOOT",
                    "a _TPM_Init and TPM2_Startup(CLEAR) is required before the TPM works again"),
    TPM_RC_UNBALANCED: ("TPM_RC_UNBALANCED", "the protection algorithms (hash and symmetric) "
                        "are not reasonably balanced"),
    TPM_RC_COMMAND_SIZE: ("TPM_RC_COMMAND_SIZE", "the command size in the header does not "
                          "match the bytes sent or is out of range"),
    TPM_RC_COMMAND_CODE: ("TPM_RC_COMMAND_CODE", "the command code is not supported"),
    TPM_RC_AUTHSIZE: ("TPM_RC_AUTHSIZE", "the authorizationSize is out of range, or the "
                      "number of sessions is wrong"),
    TPM_RC_AUTH_CONTEXT: ("TPM_RC_AUTH_CONTEXT", "a command that cannot have an authorization "
                          "session was sent with one"),
    TPM_RC_NV_RANGE: ("TPM_RC_NV_RANGE", "the NV offset plus size is out of range"),
    TPM_RC_NV_SIZE: ("TPM_RC_NV_SIZE", "the requested allocation size is larger than allowed"),
    TPM_RC_NV_LOCKED: ("TPM_RC_NV_LOCKED", "NV access is locked"),
    TPM_RC_NV_AUTHORIZATION: ("TPM_RC_NV_AUTHORIZATION",
                              "NV access authorization failed in the command actions"),
    TPM_RC_NV_UNINITIALIZED: ("TPM_RC_NV_UNINITIALIZED", "an NV index is used before it was "
                              "written, or saved state could not be restored"),
    TPM_RC_NV_SPACE: ("TPM_RC_NV_SPACE", "insufficient space for the NV allocation"),
    TPM_RC_NV_DEFINED: ("TPM_RC_NV_DEFINED", "the NV index or persistent object is already "
                        "defined"),
    TPM_RC_BAD_CONTEXT: ("TPM_RC_BAD_CONTEXT", "the context in TPM2_ContextLoad is not valid"),
    TPM_RC_CPHASH: ("TPM_RC_CPHASH", "cpHash value already set or not correct for use"),
    TPM_RC_PARENT: ("TPM_RC_PARENT", "the handle for a parent is not a valid parent"),
    TPM_RC_NEEDS_TEST: ("TPM_RC_NEEDS_TEST", "a function needs testing and the self test "
                        "failed"),
    TPM_RC_NO_RESULT: ("TPM_RC_NO_RESULT", "an internal function cannot process a request "
                       "due to an unspecified problem"),
    TPM_RC_SENSITIVE: ("TPM_RC_SENSITIVE", "the sensitive area did not unmarshal correctly "
                       "after decryption"),
    TPM_RC_ASYMMETRIC: ("TPM_RC_ASYMMETRIC", "asymmetric algorithm not supported or not "
                        "correct"),
    TPM_RC_ATTRIBUTES: ("TPM_RC_ATTRIBUTES", "inconsistent attributes"),
    TPM_RC_HASH: ("TPM_RC_HASH", "hash algorithm not supported or not appropriate"),
    TPM_RC_VALUE: ("TPM_RC_VALUE", "value is out of range or not correct for the context"),
    TPM_RC_HIERARCHY: ("TPM_RC_HIERARCHY", "hierarchy is not enabled or not correct for use"),
    TPM_RC_KEY_SIZE: ("TPM_RC_KEY_SIZE", "key size is not supported"),
    TPM_RC_MGF: ("TPM_RC_MGF", "mask generation function not supported"),
    TPM_RC_MODE: ("TPM_RC_MODE", "mode of operation not supported"),
    TPM_RC_TYPE: ("TPM_RC_TYPE", "the type of the value is not appropriate for the use"),
    TPM_RC_HANDLE: ("TPM_RC_HANDLE", "the handle is not correct for the use"),
    TPM_RC_KDF: ("TPM_RC_KDF", "unsupported key derivation function or function not "
                 "appropriate for use"),
    TPM_RC_RANGE: ("TPM_RC_RANGE", "value was out of allowed range"),
    TPM_RC_AUTH_FAIL: ("TPM_RC_AUTH_FAIL", "the authorization HMAC check failed and the "
                       "dictionary-attack counter was incremented"),
    TPM_RC_NONCE: ("TPM_RC_NONCE", "invalid nonce size or nonce value mismatch"),
    TPM_RC_PP: ("TPM_RC_PP", "authorization requires assertion of physical presence"),
    TPM_RC_SCHEME: ("TPM_RC_SCHEME", "unsupported or incompatible scheme"),
    TPM_RC_SIZE: ("TPM_RC_SIZE", "structure is the wrong size"),
    TPM_RC_SYMMETRIC: ("TPM_RC_SYMMETRIC", "unsupported symmetric algorithm or key size, or "
                       "not appropriate for the instance"),
    TPM_RC_TAG: ("TPM_RC_TAG", "incorrect structure tag"),
    TPM_RC_SELECTOR: ("TPM_RC_SELECTOR", "union selector is incorrect"),
    TPM_RC_INSUFFICIENT: ("TPM_RC_INSUFFICIENT", "the TPM was unable to unmarshal a value "
                          "because there were not enough bytes in the input buffer"),
    TPM_RC_SIGNATURE: ("TPM_RC_SIGNATURE", "the signature is not valid"),
    TPM_RC_KEY: ("TPM_RC_KEY", "key fields are not compatible with the selected use"),
    TPM_RC_POLICY_FAIL: ("TPM_RC_POLICY_FAIL", "a policy check failed"),
    TPM_RC_INTEGRITY: ("TPM_RC_INTEGRITY", "integrity check failed"),
    TPM_RC_TICKET: ("TPM_RC_TICKET", "invalid ticket"),
    TPM_RC_RESERVED_BITS: ("TPM_RC_RESERVED_BITS", "reserved bits not set to zero as "
                           "required"),
    TPM_RC_BAD_AUTH: ("TPM_RC_BAD_AUTH", "authorization failure without dictionary-attack "
                      "implications"),
    TPM_RC_EXPIRED: ("TPM_RC_EXPIRED", "the policy has expired"),
    TPM_RC_POLICY_CC: ("TPM_RC_POLICY_CC", "the commandCode in the policy is not the "
                       "commandCode of the command, or the command code in a policy command "
                       "references a command that is not implemented"),
    TPM_RC_BINDING: ("TPM_RC_BINDING", "public and sensitive portions of an object are not "
                     "cryptographically bound"),
    TPM_RC_CURVE: ("TPM_RC_CURVE", "curve not supported"),
    TPM_RC_ECC_POINT: ("TPM_RC_ECC_POINT", "point is not on the required curve"),
    TPM_RC_CONTEXT_GAP: ("TPM_RC_CONTEXT_GAP", "the gap for context IDs is too large"),
    TPM_RC_OBJECT_MEMORY: ("TPM_RC_OBJECT_MEMORY", "out of memory for object contexts"),
    TPM_RC_SESSION_MEMORY: ("TPM_RC_SESSION_MEMORY", "out of memory for session contexts"),
    TPM_RC_MEMORY: ("TPM_RC_MEMORY", "out of shared object/session memory or need space for "
                    "internal operations"),
    TPM_RC_SESSION_HANDLES: ("TPM_RC_SESSION_HANDLES", "out of session handles; a session "
                             "must be flushed"),
    TPM_RC_OBJECT_HANDLES: ("TPM_RC_OBJECT_HANDLES", "out of object handles; an object must "
                            "be flushed"),
    TPM_RC_LOCALITY: ("TPM_RC_LOCALITY", "the command is not allowed at the current locality"),
    TPM_RC_YIELDED: ("TPM_RC_YIELDED", "the TPM suspended the command; it made progress and "
                     "the command may be sent again"),
    TPM_RC_CANCELED: ("TPM_RC_CANCELED", "the command was canceled"),
    TPM_RC_TESTING: ("TPM_RC_TESTING", "the TPM is performing self tests"),
    TPM_RC_NV_RATE: ("TPM_RC_NV_RATE", "the TPM is rate-limiting NV writes"),
    TPM_RC_LOCKOUT: ("TPM_RC_LOCKOUT", "the TPM is in dictionary-attack lockout and refuses "
                     "authorizations of DA-protected objects"),
    TPM_RC_RETRY: ("TPM_RC_RETRY", "the TPM was not able to start the command; send it again"),
    TPM_RC_NV_UNAVAILABLE: ("TPM_RC_NV_UNAVAILABLE", "the command may require writing NV and "
                            "NV is not accessible now"),
    TPM_RC_NOT_USED: ("TPM_RC_NOT_USED", "this value is reserved and shall not be returned "
                      "by the TPM"),
}

#: Warnings after which the same command may simply be sent again.
RETRYABLE = (TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING)


class RcInfo:
    """A response code split into its parts.

    ``base`` is the code without its number bits (the key of :data:`RC_NAMES`),
    ``kind`` one of ``"success"``, ``"error"``, ``"warning"``, ``"format1"``,
    ``"tpm1.2"``, ``"vendor"`` or ``"tss"`` (a software-stack code, layer in
    bits 16-23, not sent by a TPM); ``parameter``, ``handle`` and ``session``
    are the numbers a format-one code names (or None).
    """

    def __init__(self, rc: int, base: int, kind: str, parameter: int | None = None,
                 handle: int | None = None, session: int | None = None) -> None:
        self.rc = rc
        self.base = base
        self.kind = kind
        self.parameter = parameter
        self.handle = handle
        self.session = session

    @property
    def name(self) -> str:
        """``TPM_RC_VALUE``, or a synthetic name for a code this table does not know."""
        entry = RC_NAMES.get(self.base)
        if entry is not None and self.kind not in ("tss", "vendor", "tpm1.2"):
            return entry[0]
        if self.base == TPM_RC_BAD_TAG:
            return "TPM_RC_BAD_TAG"
        return "%s_0x%03x" % (_UNKNOWN_PREFIX.get(self.kind, "TPM_RC"), self.base)

    @property
    def meaning(self) -> str:
        """What the code means, in words."""
        entry = RC_NAMES.get(self.base)
        if entry is not None and self.kind not in ("tss", "vendor", "tpm1.2"):
            return entry[1]
        if self.base == TPM_RC_BAD_TAG:
            return RC_NAMES[TPM_RC_BAD_TAG][1]
        return _UNKNOWN_MEANING.get(self.kind, "unknown response code")

    @property
    def where(self) -> str:
        """``parameter 2``, ``handle 1``, ``session 1`` or ``""``."""
        if self.parameter is not None:
            return "parameter %d" % self.parameter
        if self.handle is not None:
            return "handle %d" % self.handle
        if self.session is not None:
            return "session %d" % self.session
        return ""

    @property
    def retryable(self) -> bool:
        """True for the warnings after which the same command may be sent again."""
        return self.rc in RETRYABLE


_UNKNOWN_PREFIX = {"format1": "TPM_RC_FMT1", "warning": "TPM_RC_WARN", "tpm1.2": "TPM_1_2_RC",
                   "vendor": "TPM_RC_VENDOR", "tss": "TSS2_RC"}
_UNKNOWN_MEANING = {
    "format1": "unknown format-one error",
    "warning": "unknown warning",
    "error": "unknown error",
    "tpm1.2": "a TPM 1.2 response code",
    "vendor": "a vendor-defined response code",
    "tss": "a TPM software stack error, not a TPM response",
}


def decode_rc(rc: int) -> RcInfo:
    """Split a TPM_RC into kind, base code and the parameter/handle/session it names."""
    if rc < 0 or rc > 0xFFFFFFFF:
        raise ValueError("response code %r is not a UINT32" % (rc,))
    if rc == TPM_RC_SUCCESS:
        return RcInfo(rc, rc, "success")
    if rc > 0xFFF:
        return RcInfo(rc, rc, "tss")
    if rc & RC_FMT1:
        base = rc & (RC_FMT1 | 0x3F)
        n = (rc >> 8) & 0xF
        if rc & RC_P:
            return RcInfo(rc, base, "format1", parameter=n)
        if n & 0x8:
            return RcInfo(rc, base, "format1", session=n & 0x7)
        return RcInfo(rc, base, "format1", handle=n if n else None)
    if not rc & RC_VER1:
        return RcInfo(rc, rc, "tpm1.2")
    if rc & RC_VENDOR:
        return RcInfo(rc, rc, "vendor")
    if rc & RC_SEVERITY:
        return RcInfo(rc, rc, "warning")
    return RcInfo(rc, rc, "error")


def describe_rc(rc: int) -> str:
    """``TPM_RC_LOCALITY (0x907): the command is not allowed at the current locality``."""
    info = decode_rc(rc)
    where = info.where
    return "%s (0x%03x): %s%s" % (info.name, rc, info.meaning, (", " + where) if where else "")


class TpmResponseError(SpecError):
    """The TPM answered a command with a non-zero response code.

    ``rc`` is the code as sent, ``info`` its :class:`RcInfo` (``info.name``,
    ``info.base``, ``info.parameter``...), ``command`` the command's name.
    The location (``offset`` 6, ``field`` ``responseCode``) is the code's place
    in the response; ``str()`` is the readable message only.
    """

    def __init__(self, command: str, rc: int) -> None:
        super().__init__("%s failed: %s" % (command, describe_rc(rc)), 6, "responseCode")
        self.command = command
        self.rc = rc
        self.info = decode_rc(rc)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def retryable(self) -> bool:
        return self.info.retryable

    def __str__(self) -> str:
        return self.message
