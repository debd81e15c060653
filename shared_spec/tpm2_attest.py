"""TPMS_ATTEST and TPMT_SIGNATURE: what TPM2_Quote returns (TPM 2.0 Library Part 2).

A quote is the TPM's signature over a TPMS_ATTEST structure (Part 2
§10.12.12), big-endian throughout::

    magic            UINT32         TPM_GENERATED_VALUE (0xFF544347)
    type             TPMI_ST_ATTEST TPM_ST_ATTEST_QUOTE (0x8018) for a quote
    qualifiedSigner  TPM2B_NAME     the signing key's Name (nameAlg || H(TPMT_PUBLIC))
    extraData        TPM2B_DATA     the caller's qualifying data (the nonce)
    clockInfo        TPMS_CLOCK_INFO  clock UINT64, resetCount UINT32,
                                      restartCount UINT32, safe BYTE
    firmwareVersion  UINT64
    attested         TPMU_ATTEST    for a quote, TPMS_QUOTE_INFO:
                                      pcrSelect TPML_PCR_SELECTION, pcrDigest TPM2B_DIGEST

``pcrDigest`` is the hash, with the signing scheme's hash algorithm, of the
concatenated values of the selected PCRs: selections in the order listed, and
in each the PCRs in ascending order (Part 3 §18.4, PCRComputeCurrentDigest).

TPMT_SIGNATURE (Part 2 §11.3.4): sigAlg UINT16, then for ECDSA/ECSCHNORR/SM2
TPMS_SIGNATURE_ECC (hash UINT16, signatureR TPM2B, signatureS TPM2B), for
RSASSA/RSAPSS TPMS_SIGNATURE_RSA (hash UINT16, sig TPM2B), for TPM_ALG_NULL
nothing.

Decoders check structure only and report the byte offset and field of any
error; whether the magic, type or digest are right is the verifier's
question (:func:`check_quote` answers the ones that need no cryptography).
No hashing here: the caller passes a :class:`shared_spec.hashing.HashProvider`.
"""

import struct

from shared_spec.algorithms import alg_name, digest_size
from shared_spec.binary import Reader
from shared_spec.errors import EncodeError, FormatError, UnsupportedError
from shared_spec.hashing import HashProvider
from shared_spec.tpm2 import decode_pcr_selection, encode_pcr_selection

TPM_GENERATED_VALUE = 0xFF544347

TPM_ST_ATTEST_NV = 0x8014
TPM_ST_ATTEST_COMMAND_AUDIT = 0x8015
TPM_ST_ATTEST_SESSION_AUDIT = 0x8016
TPM_ST_ATTEST_CERTIFY = 0x8017
TPM_ST_ATTEST_QUOTE = 0x8018
TPM_ST_ATTEST_TIME = 0x8019
TPM_ST_ATTEST_CREATION = 0x801A
TPM_ST_ATTEST_NV_DIGEST = 0x801C

ATTEST_TYPE_NAMES = {
    TPM_ST_ATTEST_NV: "TPM_ST_ATTEST_NV",
    TPM_ST_ATTEST_COMMAND_AUDIT: "TPM_ST_ATTEST_COMMAND_AUDIT",
    TPM_ST_ATTEST_SESSION_AUDIT: "TPM_ST_ATTEST_SESSION_AUDIT",
    TPM_ST_ATTEST_CERTIFY: "TPM_ST_ATTEST_CERTIFY",
    TPM_ST_ATTEST_QUOTE: "TPM_ST_ATTEST_QUOTE",
    TPM_ST_ATTEST_TIME: "TPM_ST_ATTEST_TIME",
    TPM_ST_ATTEST_CREATION: "TPM_ST_ATTEST_CREATION",
    TPM_ST_ATTEST_NV_DIGEST: "TPM_ST_ATTEST_NV_DIGEST",
}

TPM_ALG_RSASSA = 0x0014
TPM_ALG_RSAPSS = 0x0016
TPM_ALG_ECDSA = 0x0018
TPM_ALG_SM2 = 0x001B
TPM_ALG_ECSCHNORR = 0x001C
TPM_ALG_NULL = 0x0010

SIG_ALG_NAMES = {
    TPM_ALG_RSASSA: "rsassa", TPM_ALG_RSAPSS: "rsapss", TPM_ALG_ECDSA: "ecdsa",
    TPM_ALG_SM2: "sm2", TPM_ALG_ECSCHNORR: "ecschnorr", TPM_ALG_NULL: "null",
}
_ECC_SIGS = (TPM_ALG_ECDSA, TPM_ALG_SM2, TPM_ALG_ECSCHNORR)
_RSA_SIGS = (TPM_ALG_RSASSA, TPM_ALG_RSAPSS)

#: Largest TPM2B_NAME (nameAlg + SHA-512 digest).
MAX_NAME_SIZE = 2 + 64
#: Largest TPM2B_DATA (sizeof(TPMT_HA): the hash algorithm + SHA-512 digest).
MAX_DATA_SIZE = 2 + 64
#: Largest TPM2B_DIGEST.
MAX_DIGEST_SIZE = 64
#: Largest ECC parameter (P-521: 66 bytes) and RSA signature (RSA-16384) accepted.
MAX_ECC_PARAMETER = 128
MAX_RSA_SIGNATURE = 2048
#: Largest TPMS_ATTEST accepted (TPM2B_ATTEST's buffer is sizeof(TPMS_ATTEST)).
MAX_ATTEST_SIZE = 4096


def attest_type_name(value: int) -> str:
    """``TPM_ST_ATTEST_QUOTE`` and the like, or ``0x....`` for another value."""
    return ATTEST_TYPE_NAMES.get(value, "0x%04x" % value)


def sig_alg_name(value: int) -> str:
    """``ecdsa``, ``rsassa``, ... or ``alg_0x....``."""
    return SIG_ALG_NAMES.get(value, "alg_0x%04x" % value)


class ClockInfo:
    """TPMS_CLOCK_INFO: milliseconds of TPM time, reset and restart counts, ``safe``."""

    def __init__(self, clock: int = 0, reset_count: int = 0, restart_count: int = 0,
                 safe: int = 1) -> None:
        self.clock = clock
        self.reset_count = reset_count
        self.restart_count = restart_count
        self.safe = safe

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClockInfo) and self.__dict__ == other.__dict__

    def to_dict(self) -> dict:
        return {"clock": self.clock, "reset_count": self.reset_count,
                "restart_count": self.restart_count, "safe": bool(self.safe)}


class Attest:
    """A decoded TPMS_ATTEST.

    ``pcr_select`` (``[(alg, [PCR, ...])]``, in the order listed) and
    ``pcr_digest`` are set for a quote (``type == TPM_ST_ATTEST_QUOTE``);
    for another type ``attested`` holds the raw TPMU_ATTEST bytes. ``offsets``
    maps each field name to its byte offset in the input.
    """

    def __init__(self, magic: int = TPM_GENERATED_VALUE, type: int = TPM_ST_ATTEST_QUOTE,
                 qualified_signer: bytes = b"", extra_data: bytes = b"",
                 clock_info: "ClockInfo | None" = None, firmware_version: int = 0,
                 pcr_select: "list | None" = None, pcr_digest: bytes = b"",
                 attested: bytes = b"") -> None:
        self.magic = magic
        self.type = type
        self.qualified_signer = qualified_signer
        self.extra_data = extra_data
        self.clock_info = clock_info if clock_info is not None else ClockInfo()
        self.firmware_version = firmware_version
        self.pcr_select = pcr_select if pcr_select is not None else []
        self.pcr_digest = pcr_digest
        self.attested = attested
        self.offsets = {}  # type: dict

    @property
    def is_quote(self) -> bool:
        return self.type == TPM_ST_ATTEST_QUOTE

    def to_dict(self) -> dict:
        out = {
            "magic": "0x%08x" % self.magic,
            "type": attest_type_name(self.type),
            "qualified_signer": bytes(self.qualified_signer).hex(),
            "extra_data": bytes(self.extra_data).hex(),
            "clock_info": self.clock_info.to_dict(),
            "firmware_version": "0x%016x" % self.firmware_version,
        }
        if self.is_quote:
            out["pcr_select"] = [{"alg": alg_name(a), "pcrs": list(p)} for a, p in self.pcr_select]
            out["pcr_digest"] = bytes(self.pcr_digest).hex()
        else:
            out["attested"] = bytes(self.attested).hex()
        return out


class Signature:
    """A decoded TPMT_SIGNATURE: ``r``/``s`` for ECC schemes, ``sig`` for RSA schemes."""

    def __init__(self, sig_alg: int = TPM_ALG_ECDSA, hash_alg: int = 0, r: bytes = b"",
                 s: bytes = b"", sig: bytes = b"") -> None:
        self.sig_alg = sig_alg
        self.hash_alg = hash_alg
        self.r = r
        self.s = s
        self.sig = sig

    @property
    def is_ecc(self) -> bool:
        return self.sig_alg in _ECC_SIGS

    @property
    def is_rsa(self) -> bool:
        return self.sig_alg in _RSA_SIGS

    def to_dict(self) -> dict:
        out = {"sig_alg": sig_alg_name(self.sig_alg), "hash": alg_name(self.hash_alg)}
        if self.is_ecc:
            out["r"] = bytes(self.r).hex()
            out["s"] = bytes(self.s).hex()
        elif self.is_rsa:
            out["sig"] = bytes(self.sig).hex()
        return out


# ---------------------------------------------------------------- TPM2B helpers


def _tpm2b(r: Reader, field: str, limit: int) -> bytes:
    at = r.offset
    n = r.u16be(field + ".size")
    if n > limit:
        raise r.fail(FormatError, "%s of %d bytes (at most %d)" % (field, n, limit),
                     field + ".size", at)
    return r.read(n, field)


def _put2b(data: bytes, field: str, limit: int) -> bytes:
    if len(data) > limit:
        raise EncodeError("%d bytes (at most %d)" % (len(data), limit), None, field)
    return struct.pack(">H", len(data)) + bytes(data)


# ---------------------------------------------------------------- TPMS_ATTEST


def parse_attest(data: bytes, source: "str | None" = None) -> Attest:
    """Decode a whole TPMS_ATTEST (no TPM2B size in front); trailing bytes are an error."""
    if len(data) > MAX_ATTEST_SIZE:
        raise FormatError("TPMS_ATTEST of %d bytes (at most %d)" % (len(data), MAX_ATTEST_SIZE),
                          0, "TPMS_ATTEST", source)
    r = Reader(data, source=source)
    a = Attest()
    off = a.offsets
    off["magic"] = r.offset
    a.magic = r.u32be("magic")
    off["type"] = r.offset
    a.type = r.u16be("type")
    off["qualifiedSigner"] = r.offset
    a.qualified_signer = _tpm2b(r, "qualifiedSigner", MAX_NAME_SIZE)
    off["extraData"] = r.offset
    a.extra_data = _tpm2b(r, "extraData", MAX_DATA_SIZE)
    off["clockInfo"] = r.offset
    clock = r.u64be("clockInfo.clock")
    reset = r.u32be("clockInfo.resetCount")
    restart = r.u32be("clockInfo.restartCount")
    at = r.offset
    safe = r.u8("clockInfo.safe")
    if safe > 1:
        raise r.fail(FormatError, "safe is %d (TPMI_YES_NO is 0 or 1)" % safe,
                     "clockInfo.safe", at)
    a.clock_info = ClockInfo(clock, reset, restart, safe)
    off["firmwareVersion"] = r.offset
    a.firmware_version = r.u64be("firmwareVersion")
    off["attested"] = r.offset
    if a.type == TPM_ST_ATTEST_QUOTE:
        off["attested.quote.pcrSelect"] = r.offset
        a.pcr_select = decode_pcr_selection(r, "attested.quote.pcrSelect")
        off["attested.quote.pcrDigest"] = r.offset
        a.pcr_digest = _tpm2b(r, "attested.quote.pcrDigest", MAX_DIGEST_SIZE)
        if not r.at_end():
            raise r.fail(FormatError, "%d bytes after TPMS_QUOTE_INFO" % r.remaining(),
                         "TPMS_ATTEST")
    else:
        a.attested = r.read(r.remaining(), "attested")
    return a


def encode_attest(a: Attest) -> bytes:
    """The TPMS_ATTEST bytes of ``a`` (a quote's TPMS_QUOTE_INFO, else ``a.attested``)."""
    c = a.clock_info
    parts = [
        struct.pack(">IH", a.magic, a.type),
        _put2b(a.qualified_signer, "qualifiedSigner", MAX_NAME_SIZE),
        _put2b(a.extra_data, "extraData", MAX_DATA_SIZE),
        struct.pack(">QIIBQ", c.clock, c.reset_count, c.restart_count, c.safe,
                    a.firmware_version),
    ]
    if a.type == TPM_ST_ATTEST_QUOTE:
        parts.append(encode_pcr_selection(a.pcr_select))
        parts.append(_put2b(a.pcr_digest, "attested.quote.pcrDigest", MAX_DIGEST_SIZE))
    else:
        parts.append(bytes(a.attested))
    return b"".join(parts)


# ---------------------------------------------------------------- TPMT_SIGNATURE


def parse_signature(data: bytes, source: "str | None" = None) -> Signature:
    """Decode a whole TPMT_SIGNATURE of an ECC or RSA scheme (or TPM_ALG_NULL)."""
    r = Reader(data, source=source)
    at = r.offset
    s = Signature(r.u16be("sigAlg"))
    if s.sig_alg == TPM_ALG_NULL:
        pass
    elif s.is_ecc:
        s.hash_alg = r.u16be("signature.ecdsa.hash")
        s.r = _tpm2b(r, "signature.ecdsa.signatureR", MAX_ECC_PARAMETER)
        s.s = _tpm2b(r, "signature.ecdsa.signatureS", MAX_ECC_PARAMETER)
    elif s.is_rsa:
        s.hash_alg = r.u16be("signature.rsa.hash")
        s.sig = _tpm2b(r, "signature.rsa.sig", MAX_RSA_SIGNATURE)
    else:
        raise UnsupportedError("signature algorithm 0x%04x (not ECDSA, SM2, ECSCHNORR, "
                               "RSASSA, RSAPSS or NULL)" % s.sig_alg, at, "sigAlg", source)
    if not r.at_end():
        raise r.fail(FormatError, "%d bytes after TPMT_SIGNATURE" % r.remaining(),
                     "TPMT_SIGNATURE")
    return s


def encode_signature(s: Signature) -> bytes:
    """The TPMT_SIGNATURE bytes of ``s``."""
    out = struct.pack(">H", s.sig_alg)
    if s.sig_alg == TPM_ALG_NULL:
        return out
    if s.is_ecc:
        return (out + struct.pack(">H", s.hash_alg)
                + _put2b(s.r, "signature.ecdsa.signatureR", MAX_ECC_PARAMETER)
                + _put2b(s.s, "signature.ecdsa.signatureS", MAX_ECC_PARAMETER))
    if s.is_rsa:
        return (out + struct.pack(">H", s.hash_alg)
                + _put2b(s.sig, "signature.rsa.sig", MAX_RSA_SIGNATURE))
    raise EncodeError("signature algorithm 0x%04x" % s.sig_alg, None, "sigAlg")


# ---------------------------------------------------------------- the PCR digest


def selected_values(selection: list, values: dict) -> list:
    """The PCR values a quote over ``selection`` covers, in the TPM's order.

    ``values`` is ``{alg: {pcr: value}}``. Raises :class:`FormatError` (field
    ``pcrs.<alg>.<pcr>``) for a selected PCR that ``values`` lacks or whose
    length is not its bank's digest size.
    """
    out = []
    for alg, pcrs in selection:
        bank = values.get(alg, {})
        size = digest_size(alg)
        for pcr in sorted(pcrs):
            v = bank.get(pcr)
            where = "pcrs.%s.%d" % (alg_name(alg), pcr)
            if v is None:
                raise FormatError("the quote selects %s PCR %d, no value was given"
                                  % (alg_name(alg), pcr), None, where)
            if size is not None and len(v) != size:
                raise FormatError("%d bytes, a %s PCR has %d" % (len(v), alg_name(alg), size),
                                  None, where)
            out.append(bytes(v))
    return out


def pcr_digest(provider: HashProvider, hash_alg: int, selection: list, values: dict) -> bytes:
    """pcrDigest of a quote: ``hash_alg`` over the selected values in selection order."""
    h = provider.new(hash_alg)
    for v in selected_values(selection, values):
        h.update(v)
    return h.digest()


def check_quote(attest: Attest, nonce: "bytes | None" = None) -> list:
    """The structural checks of a quote that need no key: ``[(code, message)]`` of failures.

    Codes: ``TPM_ATTEST_MAGIC`` (not TPM_GENERATED_VALUE: not made by a TPM),
    ``TPM_ATTEST_TYPE`` (not a quote), ``TPM_QUOTE_NONCE`` (extraData is not
    ``nonce``; skipped when ``nonce`` is None).
    """
    out = []
    if attest.magic != TPM_GENERATED_VALUE:
        out.append(("TPM_ATTEST_MAGIC", "magic is 0x%08x, not TPM_GENERATED_VALUE 0x%08x"
                    % (attest.magic, TPM_GENERATED_VALUE)))
    if attest.type != TPM_ST_ATTEST_QUOTE:
        out.append(("TPM_ATTEST_TYPE", "type is %s, not TPM_ST_ATTEST_QUOTE"
                    % attest_type_name(attest.type)))
    if nonce is not None and bytes(attest.extra_data) != bytes(nonce):
        out.append(("TPM_QUOTE_NONCE", "extraData is %s, the nonce is %s"
                    % (bytes(attest.extra_data).hex() or "empty", bytes(nonce).hex() or "empty")))
    return out
