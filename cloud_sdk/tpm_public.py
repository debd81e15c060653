"""TPM 2.0 public areas (TPMT_PUBLIC, Part 2 §12.2.4): parse, encode, Name, public key.

Verifier-side and independent of tpm2-pytss: an attestation key's Name
(``nameAlg || H_nameAlg(TPMT_PUBLIC)``) is what a credential is bound to, and an
endorsement key's public area is what :mod:`cloud_sdk.tpm_credential` encrypts
to. Only RSA and ECC keys are decoded (the only ones EKs and AKs are); any
other type, or malformed bytes, raise :class:`~cloud_sdk.errors.InputError`
naming the source, the byte offset and the field.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cloud_sdk.errors import InputError
from shared_spec.algorithms import alg_name, digest_size
from shared_spec.binary import Reader
from shared_spec.errors import SpecError

TPM_ALG_RSA = 0x0001
TPM_ALG_AES = 0x0006
TPM_ALG_NULL = 0x0010
TPM_ALG_ECC = 0x0023
TPM_ALG_CFB = 0x0043

#: TPMA_OBJECT bits (Part 2 §8.3)
FIXED_TPM = 0x00000002
FIXED_PARENT = 0x00000010
SENSITIVE_DATA_ORIGIN = 0x00000020
USER_WITH_AUTH = 0x00000040
ADMIN_WITH_POLICY = 0x00000080
RESTRICTED = 0x00010000
DECRYPT = 0x00020000
SIGN_ENCRYPT = 0x00040000

#: TPM_ECC_CURVE -> (cryptography curve, coordinate size)
CURVES: dict[int, tuple[type[ec.EllipticCurve], int]] = {
    0x0003: (ec.SECP256R1, 32), 0x0004: (ec.SECP384R1, 48), 0x0005: (ec.SECP521R1, 66),
}
CURVE_IDS = {"secp256r1": 0x0003, "secp384r1": 0x0004, "secp521r1": 0x0005}

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass
class TpmPublic:
    """A decoded RSA or ECC TPMT_PUBLIC; ``raw`` is its exact TPM encoding (no size prefix).

    ``sym_alg`` / ``sym_bits`` / ``sym_mode`` are the object's symmetric definition
    (TPM_ALG_NULL for a signing key), ``scheme`` / ``scheme_hash`` its asymmetric
    scheme. RSA: ``key_bits``, ``exponent`` (0 means 65537), ``unique`` = modulus.
    ECC: ``curve``, ``kdf``, ``unique`` = x, ``unique_y`` = y.
    """

    type: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    sym_alg: int
    sym_bits: int
    sym_mode: int
    scheme: int
    scheme_hash: int
    unique: bytes
    raw: bytes
    key_bits: int = 0
    exponent: int = 0
    curve: int = 0
    kdf: int = TPM_ALG_NULL
    unique_y: bytes = b""

    @property
    def is_rsa(self) -> bool:
        return self.type == TPM_ALG_RSA

    def name(self) -> bytes:
        """The object's Name: nameAlg (2 bytes) || H_nameAlg(TPMT_PUBLIC) (Part 1 §16)."""
        return struct.pack(">H", self.name_alg) + hashlib.new(alg_name(self.name_alg),
                                                              self.raw).digest()

    def sized(self) -> bytes:
        """The TPM2B_PUBLIC encoding (size-prefixed)."""
        return struct.pack(">H", len(self.raw)) + self.raw

    def public_key(self) -> PublicKey:
        """The key as a ``cryptography`` public key; :class:`InputError` if it is not one."""
        try:
            if self.is_rsa:
                e = self.exponent or 65537
                return rsa.RSAPublicNumbers(e, int.from_bytes(self.unique, "big")).public_key()
            curve = CURVES[self.curve][0]()
            return ec.EllipticCurvePublicNumbers(int.from_bytes(self.unique, "big"),
                                                 int.from_bytes(self.unique_y, "big"),
                                                 curve).public_key()
        except ValueError as e:
            raise InputError("TPMT_PUBLIC: unique is not a valid %s public key: %s"
                             % (self.describe(), e)) from None

    def describe(self) -> str:
        """E.g. ``rsa2048`` or ``ecc-secp384r1``."""
        if self.is_rsa:
            return "rsa%d" % self.key_bits
        return "ecc-%s" % CURVES[self.curve][0].name


def _sym(r: Reader) -> tuple[int, int, int]:
    alg = r.u16be("symmetric.algorithm")
    if alg == TPM_ALG_NULL:
        return alg, 0, TPM_ALG_NULL
    return alg, r.u16be("symmetric.keyBits"), r.u16be("symmetric.mode")


def _scheme(r: Reader) -> tuple[int, int]:
    scheme = r.u16be("scheme.scheme")
    if scheme == TPM_ALG_NULL:
        return scheme, 0
    return scheme, r.u16be("scheme.details.hashAlg")


def _b2(r: Reader, field: str) -> bytes:
    n = r.u16be(field + ".size")
    return r.read(n, field)


def parse_public(data: bytes, source: str = "TPM2B_PUBLIC", sized: bool = True) -> TpmPublic:
    """Decode a TPM2B_PUBLIC (``sized``) or a bare TPMT_PUBLIC; the whole input must be used."""
    r = Reader(data, source=source)
    try:
        if sized:
            n = r.u16be("size")
            if n != r.remaining():
                raise r.fail(SpecError, "size %d, but %d bytes follow" % (n, r.remaining()),
                             "size", 0)
        start = r.pos
        kind = r.u16be("type")
        if kind not in (TPM_ALG_RSA, TPM_ALG_ECC):
            raise r.fail(SpecError, "type 0x%04x is neither RSA nor ECC" % kind, "type",
                         r.offset - 2)
        name_alg = r.u16be("nameAlg")
        if digest_size(name_alg) is None or alg_name(name_alg) not in hashlib.algorithms_available:
            raise r.fail(SpecError, "nameAlg 0x%04x is not a hash this SDK knows" % name_alg,
                         "nameAlg", r.offset - 2)
        attributes = r.u32be("objectAttributes")
        policy = _b2(r, "authPolicy")
        sym_alg, sym_bits, sym_mode = _sym(r)
        scheme, scheme_hash = _scheme(r)
        if kind == TPM_ALG_RSA:
            bits = r.u16be("parameters.keyBits")
            exponent = r.u32be("parameters.exponent")
            unique = _b2(r, "unique.rsa")
            out = TpmPublic(kind, name_alg, attributes, policy, sym_alg, sym_bits, sym_mode,
                            scheme, scheme_hash, unique, b"", key_bits=bits, exponent=exponent)
        else:
            curve = r.u16be("parameters.curveID")
            if curve not in CURVES:
                raise r.fail(SpecError, "curve 0x%04x is not supported" % curve,
                             "parameters.curveID", r.offset - 2)
            kdf = r.u16be("parameters.kdf.scheme")
            if kdf != TPM_ALG_NULL:
                r.u16be("parameters.kdf.details.hashAlg")
            x = _b2(r, "unique.ecc.x")
            y = _b2(r, "unique.ecc.y")
            out = TpmPublic(kind, name_alg, attributes, policy, sym_alg, sym_bits, sym_mode,
                            scheme, scheme_hash, x, b"", curve=curve, kdf=kdf, unique_y=y)
        if not r.at_end():
            raise r.fail(SpecError, "%d bytes after the public area" % r.remaining(), "unique")
        out.raw = bytes(data[start:r.pos])
        return out
    except SpecError as e:
        raise InputError(e.located()) from None


# ---------------------------------------------------------------- encoding


def encode_public(p: TpmPublic) -> bytes:
    """The TPMT_PUBLIC bytes of ``p``'s fields (``p.raw`` is ignored)."""
    out = struct.pack(">HHI", p.type, p.name_alg, p.attributes)
    out += struct.pack(">H", len(p.auth_policy)) + p.auth_policy
    out += struct.pack(">H", p.sym_alg)
    if p.sym_alg != TPM_ALG_NULL:
        out += struct.pack(">HH", p.sym_bits, p.sym_mode)
    out += struct.pack(">H", p.scheme)
    if p.scheme != TPM_ALG_NULL:
        out += struct.pack(">H", p.scheme_hash)
    if p.is_rsa:
        out += struct.pack(">HI", p.key_bits, p.exponent)
        return out + struct.pack(">H", len(p.unique)) + p.unique
    out += struct.pack(">HH", p.curve, p.kdf)
    return (out + struct.pack(">H", len(p.unique)) + p.unique
            + struct.pack(">H", len(p.unique_y)) + p.unique_y)


def with_key(template: TpmPublic, key: PublicKey) -> TpmPublic:
    """``template`` with ``key`` as its unique field: the public area a TPM would report.

    :class:`InputError` when the key's type or size is not the template's.
    """
    out = TpmPublic(**{k: getattr(template, k) for k in template.__dataclass_fields__})
    if isinstance(key, rsa.RSAPublicKey):
        nums = key.public_numbers()
        if not template.is_rsa or key.key_size != template.key_bits:
            raise InputError("an RSA %d key does not fit the %s template"
                             % (key.key_size, template.describe()))
        if nums.e != (template.exponent or 65537):
            raise InputError("RSA exponent %d, the template's is %d"
                             % (nums.e, template.exponent or 65537))
        out.unique = nums.n.to_bytes(key.key_size // 8, "big")
    else:
        size = CURVES.get(template.curve, (None, 0))[1]
        if template.is_rsa or CURVE_IDS.get(key.curve.name) != template.curve:
            raise InputError("an EC %s key does not fit the %s template"
                             % (key.curve.name, template.describe()))
        pn = key.public_numbers()
        out.unique = pn.x.to_bytes(size, "big")
        out.unique_y = pn.y.to_bytes(size, "big")
    out.raw = encode_public(out)
    return out
