"""Credential activation: prove that an attestation key (AK) lives in the TPM of an EK.

TPM 2.0 Part 1 §24 ("Credential Protection"). The verifier, holding only the
EK public area (vouched for by the EK certificate) and the AK's public area,
runs :func:`make_credential` (``cryptography`` only, no TPM): a random seed is
protected to the EK (RSA-OAEP with label ``"IDENTITY\\0"`` for an RSA EK; an
ephemeral ECDH and KDFe for an ECC EK), KDFa derives from it an AES key (bound
to the AK's Name) and an HMAC key, the secret is encrypted with AES-CFB, and
an outer HMAC covers the ciphertext and the AK's Name. Only a TPM holding the
EK's private key and a loaded object with exactly that Name can undo it
(TPM2_ActivateCredential, :func:`activate_credential`), so getting the
secret back proves the AK is in that TPM.

Files (JSON, hex for bytes):

- challenge, :data:`CHALLENGE_SCHEMA`: ``ek_template``, ``ek_public``
  (TPM2B_PUBLIC), ``ek_certificate_pem`` (or null), ``ak_public``
  (TPM2B_PUBLIC), ``ak_name``, ``credential_blob`` (TPM2B_ID_OBJECT),
  ``encrypted_secret`` (TPM2B_ENCRYPTED_SECRET), ``secret_sha256`` (the
  verifier keeps only the hash: the file may travel to the attester),
  ``created_at``;
- response, :data:`RESPONSE_SCHEMA`: ``ak_name``, ``ek_name``, ``secret``,
  ``tcti``, ``activated_at``.

:func:`verify_activation` compares them (codes ``ACTIVATION_SECRET``,
``ACTIVATION_AK_NAME``, ``ACTIVATION_EK``, ``ACTIVATION_AK_MISMATCH``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:  # cryptography >= 47 keeps CFB among the "decrepit" modes
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

from cloud_sdk import tpm_ek
from cloud_sdk.errors import BackendError, InputError
from cloud_sdk.tpm_public import (
    CURVES,
    DECRYPT,
    FIXED_PARENT,
    FIXED_TPM,
    RESTRICTED,
    SENSITIVE_DATA_ORIGIN,
    SIGN_ENCRYPT,
    TPM_ALG_AES,
    TPM_ALG_CFB,
    TpmPublic,
    parse_public,
)
from shared_spec.algorithms import alg_name

CHALLENGE_SCHEMA = "cvmchain-tpm-credential-challenge/1"
RESPONSE_SCHEMA = "cvmchain-tpm-credential-response/1"
IDENTITY = b"IDENTITY\0"
STORAGE = b"STORAGE\0"
INTEGRITY = b"INTEGRITY\0"
#: Size of the secret :func:`make_challenge` draws.
SECRET_SIZE = 32
#: The AK attributes a verifier requires: a restricted signing key fixed to its TPM.
AK_ATTRIBUTES = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN_ENCRYPT

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class CredentialRefused(BackendError):
    """The TPM would not activate the credential (wrong EK or AK Name, or altered bytes)."""


# ---------------------------------------------------------------- KDFs (Part 1 §11.4.10)


def _label(label: bytes) -> bytes:
    return label if label.endswith(b"\0") else label + b"\0"


def kdfa(hash_alg: int, key: bytes, label: bytes, context_u: bytes, context_v: bytes,
         bits: int) -> bytes:
    """KDFa: SP 800-108 counter mode with HMAC; the label gets its terminating zero octet."""
    name = alg_name(hash_alg)
    out = b""
    i = 1
    while len(out) * 8 < bits:
        out += hmac.new(key, struct.pack(">I", i) + _label(label) + context_u + context_v
                        + struct.pack(">I", bits), name).digest()
        i += 1
    return out[:(bits + 7) // 8]


def kdfe(hash_alg: int, z: bytes, label: bytes, party_u: bytes, party_v: bytes,
         bits: int) -> bytes:
    """KDFe: SP 800-56A concatenation KDF over the ECDH x-coordinate ``z``."""
    name = alg_name(hash_alg)
    out = b""
    i = 1
    while len(out) * 8 < bits:
        out += hashlib.new(name, struct.pack(">I", i) + z + _label(label) + party_u
                           + party_v).digest()
        i += 1
    return out[:(bits + 7) // 8]


# ---------------------------------------------------------------- MakeCredential


@dataclass
class Credential:
    """TPM2_MakeCredential's output: ``blob`` a TPM2B_ID_OBJECT, ``secret`` a
    TPM2B_ENCRYPTED_SECRET (both size-prefixed, as TPM2_ActivateCredential takes them)."""

    blob: bytes
    secret: bytes


def _b2(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def _protect_seed(ek: TpmPublic, ephemeral: ec.EllipticCurvePrivateKey | None,
                  seed: bytes | None) -> tuple[bytes, bytes]:
    """(seed, encrypted seed) for ``ek`` (Part 1 §24.4 and Annex B.10 / C.6)."""
    name = alg_name(ek.name_alg)
    size = hashlib.new(name).digest_size
    key = ek.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        seed = os.urandom(size) if seed is None else seed
        algo = _HASHES[name]()
        return seed, key.encrypt(seed, padding.OAEP(mgf=padding.MGF1(algo), algorithm=algo,
                                                    label=IDENTITY))
    curve, coord = CURVES[ek.curve]
    eph = ephemeral or ec.generate_private_key(curve())
    z = eph.exchange(ec.ECDH(), key)
    nums = eph.public_key().public_numbers()
    ex, ey = nums.x.to_bytes(coord, "big"), nums.y.to_bytes(coord, "big")
    seed = kdfe(ek.name_alg, z, IDENTITY, ex, ek.unique.rjust(coord, b"\0"), size * 8)
    return seed, _b2(ex) + _b2(ey)  # TPMS_ECC_POINT


def make_credential(ek: TpmPublic, ak_name: bytes, secret: bytes, *,
                    seed: bytes | None = None,
                    ephemeral: ec.EllipticCurvePrivateKey | None = None) -> Credential:
    """TPM2_MakeCredential in software: ``secret`` for the object named ``ak_name``,
    readable only by the TPM holding ``ek``'s private key.

    ``ek`` must be a restricted decryption key with an AES-CFB symmetric
    definition (every TCG EK template). ``seed`` (RSA) / ``ephemeral`` (ECC)
    fix the randomness, for tests. :class:`InputError` for an unusable EK,
    Name or secret.
    """
    if ek.attributes & (RESTRICTED | DECRYPT) != RESTRICTED | DECRYPT:
        raise InputError("EK: objectAttributes 0x%08x: not a restricted decryption key"
                         % ek.attributes)
    if ek.sym_alg != TPM_ALG_AES or ek.sym_mode != TPM_ALG_CFB:
        raise InputError("EK: symmetric 0x%04x mode 0x%04x: only AES-CFB is supported"
                         % (ek.sym_alg, ek.sym_mode))
    if not 1 <= len(secret) <= 64:
        raise InputError("credential secret of %d bytes: 1 to 64 (a TPM2B_DIGEST)" % len(secret))
    if len(ak_name) < 3 or ak_name[:2] == b"\0\0":
        raise InputError("AK Name %r is not nameAlg || digest" % ak_name.hex())
    name = alg_name(ek.name_alg)
    seed, encrypted = _protect_seed(ek, ephemeral, seed)
    sym_key = kdfa(ek.name_alg, seed, STORAGE, ak_name, b"", ek.sym_bits)
    enc = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).encryptor()
    enc_identity = enc.update(_b2(secret)) + enc.finalize()
    hmac_key = kdfa(ek.name_alg, seed, INTEGRITY, b"", b"", hashlib.new(name).digest_size * 8)
    outer = hmac.new(hmac_key, enc_identity + ak_name, name).digest()
    return Credential(blob=_b2(_b2(outer) + enc_identity), secret=_b2(encrypted))


def check_ak(ak: TpmPublic, source: str = "AK") -> None:
    """:class:`InputError` unless ``ak`` is a restricted signing key fixed to its TPM
    (the TPM will only activate for that exact public area, so the attributes are bound)."""
    if ak.attributes & AK_ATTRIBUTES != AK_ATTRIBUTES or ak.attributes & DECRYPT:
        raise InputError("%s: objectAttributes 0x%08x: not an attestation key (needs fixedTPM, "
                         "fixedParent, sensitiveDataOrigin, restricted, sign = 0x%08x; no "
                         "decrypt)" % (source, ak.attributes, AK_ATTRIBUTES))


# ---------------------------------------------------------------- files


def _hex(doc: dict[str, Any], key: str, source: str, optional: bool = False) -> bytes:
    value = doc.get(key)
    if value is None and optional:
        return b""
    try:
        return bytes.fromhex(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError("%s: %s: not hex" % (source, key)) from None


def _read_json(path: str | Path, schema: str) -> dict[str, Any]:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InputError("%s: cannot read: %s" % (path, e.strerror or e)) from e
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError("%s: not JSON: %s" % (path, e)) from None
    if not isinstance(doc, dict) or doc.get("schema") != schema:
        raise InputError("%s: not a %s document" % (path, schema))
    return doc


def _write(path: str | Path, doc: dict[str, Any]) -> None:
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        tmp.replace(p)
    except OSError as e:
        raise InputError("%s: cannot write: %s" % (p, e.strerror or e)) from e


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass
class Challenge:
    """A credential for one AK and one EK, and the hash of its secret."""

    ek_template: str
    ek_public: TpmPublic
    ak_public: TpmPublic
    credential: Credential
    secret_sha256: bytes
    ek_certificate_pem: str | None = None
    created_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"schema": CHALLENGE_SCHEMA, "ek_template": self.ek_template,
                "ek_public": self.ek_public.sized().hex(),
                "ek_certificate_pem": self.ek_certificate_pem,
                "ak_public": self.ak_public.sized().hex(),
                "ak_name": self.ak_public.name().hex(),
                "credential_blob": self.credential.blob.hex(),
                "encrypted_secret": self.credential.secret.hex(),
                "secret_sha256": self.secret_sha256.hex(), "created_at": _stamp(self.created_at)}

    def save(self, path: str | Path) -> None:
        _write(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Challenge:
        """Parse a :data:`CHALLENGE_SCHEMA` file; :class:`InputError` names the field."""
        src = str(path)
        doc = _read_json(path, CHALLENGE_SCHEMA)
        template = str(doc.get("ek_template", ""))
        tpm_ek.template(template)
        ek = parse_public(_hex(doc, "ek_public", src), "%s: ek_public" % src)
        ak = parse_public(_hex(doc, "ak_public", src), "%s: ak_public" % src)
        if _hex(doc, "ak_name", src) != ak.name():
            raise InputError("%s: ak_name is not the Name of ak_public" % src)
        secret_hash = _hex(doc, "secret_sha256", src)
        if len(secret_hash) != 32:
            raise InputError("%s: secret_sha256: %d bytes, not 32" % (src, len(secret_hash)))
        pem = doc.get("ek_certificate_pem")
        return cls(template, ek, ak, Credential(_hex(doc, "credential_blob", src),
                                                _hex(doc, "encrypted_secret", src)),
                   secret_hash, pem if isinstance(pem, str) else None)


def make_challenge(ek_public: TpmPublic, ak_public: TpmPublic, ek_template: str,
                   ek_certificate_pem: str | None = None, secret: bytes | None = None
                   ) -> tuple[Challenge, bytes]:
    """A :class:`Challenge` for ``ak_public`` under ``ek_public``, and its secret.

    :class:`InputError` when ``ak_public`` is not an attestation key.
    """
    check_ak(ak_public, "ak_public")
    secret = os.urandom(SECRET_SIZE) if secret is None else secret
    cred = make_credential(ek_public, ak_public.name(), secret)
    return Challenge(ek_template, ek_public, ak_public, cred, hashlib.sha256(secret).digest(),
                     ek_certificate_pem), secret


@dataclass
class Response:
    """What :func:`activate_credential` got back from the TPM."""

    secret: bytes
    ak_name: bytes
    ek_name: bytes
    tcti: str = ""
    activated_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"schema": RESPONSE_SCHEMA, "ak_name": self.ak_name.hex(),
                "ek_name": self.ek_name.hex(), "secret": self.secret.hex(), "tcti": self.tcti,
                "activated_at": _stamp(self.activated_at)}

    def save(self, path: str | Path) -> None:
        _write(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Response:
        src = str(path)
        doc = _read_json(path, RESPONSE_SCHEMA)
        return cls(_hex(doc, "secret", src), _hex(doc, "ak_name", src),
                   _hex(doc, "ek_name", src), str(doc.get("tcti", "")))


# ---------------------------------------------------------------- verification


@dataclass
class ActivationVerification:
    """The outcome of :func:`verify_activation`; findings in ``errors``."""

    secret_valid: bool = False
    ak_valid: bool = False
    ek_valid: bool | None = None
    errors: list[dict[str, str]] = field(default_factory=list)

    def error(self, code: str, message: str) -> None:
        self.errors.append({"code": code, "message": message})

    @property
    def passed(self) -> bool:
        return self.secret_valid and self.ak_valid and self.ek_valid is not False

    def to_dict(self) -> dict[str, Any]:
        return {"secret_valid": self.secret_valid, "ak_valid": self.ak_valid,
                "ek_valid": self.ek_valid, "passed": self.passed, "errors": self.errors}


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


def verify_activation(challenge: Challenge, response: Response,
                      ak_public_pem: str | bytes | None = None,
                      ak_public: bytes | None = None,
                      ek_key: Any = None) -> ActivationVerification:
    """Did the TPM return the challenge's secret, for the AK of the quote and the EK certified?

    ``ak_public_pem`` / ``ak_public`` (TPM2B_PUBLIC) are the quote's AK; both
    must be the challenge's AK. ``ek_key`` (the EK certificate's key) must be
    the key of the challenge's EK public area.
    """
    res = ActivationVerification()
    got = hashlib.sha256(response.secret).digest()
    res.secret_valid = hmac.compare_digest(got, challenge.secret_sha256)
    if not res.secret_valid:
        res.error("ACTIVATION_SECRET", "the response's secret hashes to %s, the challenge's "
                  "secret to %s: the TPM did not activate this credential"
                  % (got.hex(), challenge.secret_sha256.hex()))
    name = challenge.ak_public.name()
    res.ak_valid = True
    if response.ak_name != name:
        res.ak_valid = False
        res.error("ACTIVATION_AK_NAME", "the response is for the AK Name %s, the challenge "
                  "for %s" % (response.ak_name.hex(), name.hex()))
    if ak_public:
        quoted = parse_public(ak_public, "the quote's ak_public")
        if quoted.name() != name:
            res.ak_valid = False
            res.error("ACTIVATION_AK_MISMATCH", "the quote's AK (Name %s) is not the AK the "
                      "challenge was made for (Name %s)" % (quoted.name().hex(), name.hex()))
    if ak_public_pem is not None:
        from cloud_sdk.tpm_quote import load_public_key

        pem_key = load_public_key(ak_public_pem, "ak_public_pem")
        if _spki(pem_key) != _spki(challenge.ak_public.public_key()):
            res.ak_valid = False
            res.error("ACTIVATION_AK_MISMATCH", "the quote's AK public key is not the key of "
                      "the AK the challenge was made for (Name %s)" % name.hex())
    if ek_key is not None:
        res.ek_valid = _spki(ek_key) == _spki(challenge.ek_public.public_key())
        if not res.ek_valid:
            res.error("ACTIVATION_EK", "the challenge was made for the EK %s (Name %s), which is "
                      "not the certified EK" % (challenge.ek_public.describe(),
                                                challenge.ek_public.name().hex()))
    if response.ek_name != challenge.ek_public.name():
        res.ek_valid = False
        res.error("ACTIVATION_EK", "the response names the EK %s, the challenge %s"
                  % (response.ek_name.hex(), challenge.ek_public.name().hex()))
    return res


# ---------------------------------------------------------------- ActivateCredential (TPM)

#: TPM_RC format-one error numbers (Part 2 §6.6.3) that ActivateCredential gives for bad input
_RC_TEXT = {0x01F: "TPM_RC_INTEGRITY: the outer HMAC does not match (altered blob, or not made "
                   "for this EK and AK Name)",
            0x004: "TPM_RC_VALUE: the encrypted seed does not decrypt with this EK",
            0x027: "TPM_RC_ECC_POINT: the ephemeral point is not on the EK's curve",
            0x015: "TPM_RC_SIZE: a size inside the blob or the seed is wrong",
            0x007: "TPM_RC_KEY_SIZE: the encrypted seed is not the EK's size",
            0x012: "TPM_RC_SCHEME: the EK cannot decrypt this seed"}


def activate_credential(challenge: Challenge, tcti: str | None = None,
                        ak: Any = None) -> Response:
    """TPM2_ActivateCredential of ``challenge`` with this TPM's EK and AK (tpm2-pytss).

    The EK is recreated from the challenge's template and must be the
    challenge's; the AK (a :class:`cloud_sdk.tpm_quote.AttestationKey`, as for
    ``quote get``) must have the challenge's Name. The EK is authorized with
    its default policy: PolicySecret(TPM_RH_ENDORSEMENT), and in the high range
    PolicyOR over that and PolicyC. :class:`CredentialRefused` when the TPM
    refuses; :class:`cloud_sdk.tpm_quote.TpmQuoteUnavailable` without a TPM.
    """
    from cloud_sdk.tpm_quote import AttestationKey, TpmSession, default_tcti

    tcti = default_tcti(tcti)
    session = TpmSession(tcti)
    try:
        t, esys = session.t, session.esys
        ek = tpm_ek.read_ek(session, challenge.ek_template)
        if ek.public.name() != challenge.ek_public.name():
            raise CredentialRefused("%s: this TPM's %s EK (Name %s) is not the EK the challenge "
                                    "was made for (Name %s)" % (
                                        tcti, ek.template.name, ek.public.name().hex(),
                                        challenge.ek_public.name().hex()))
        handle, public, _ = session.load_ak(ak or AttestationKey())
        ak_name = parse_public(public, "the AK").name()
        if ak_name != challenge.ak_public.name():
            raise CredentialRefused("%s: the AK here (Name %s) is not the AK the challenge was "
                                    "made for (Name %s); use the same --ak-* options as for "
                                    "`quote get`" % (tcti, ak_name.hex(),
                                                     challenge.ak_public.name().hex()))
        policy = session.call("TPM2_StartAuthSession (policy)", esys.start_auth_session,
                              t.ESYS_TR.NONE, t.ESYS_TR.NONE, t.TPM2_SE.POLICY,
                              t.TPMT_SYM_DEF(algorithm=t.TPM2_ALG.NULL),
                              ek.public.name_alg)
        session.flush.append(policy)
        # every argument spelled out: tpm2-pytss 1.2 (Debian 12) has no defaults for them
        session.call("TPM2_PolicySecret(TPM_RH_ENDORSEMENT)", esys.policy_secret,
                     t.ESYS_TR.ENDORSEMENT, policy, t.TPM2B_NONCE(), t.TPM2B_DIGEST(),
                     t.TPM2B_NONCE(), 0)
        if ek.template.high:
            branches = [tpm_ek.policy_a(ek.public.name_alg), tpm_ek.POLICY_C[ek.public.name_alg]]
            session.call("TPM2_PolicyOR", esys.policy_or, policy,
                         t.TPML_DIGEST([t.TPM2B_DIGEST(b) for b in branches]))
        blob = t.TPM2B_ID_OBJECT.unmarshal(challenge.credential.blob)[0]
        secret = t.TPM2B_ENCRYPTED_SECRET.unmarshal(challenge.credential.secret)[0]
        try:
            got = esys.activate_credential(handle, ek.handle, blob, secret,
                                           session1=t.ESYS_TR.PASSWORD, session2=policy)
        except t.TSS2_Exception as e:
            rc = int(e.rc)
            why = _RC_TEXT.get(rc & 0x3F, "") if rc & 0x80 else ""
            raise CredentialRefused("%s: TPM2_ActivateCredential refused the challenge: %s"
                                    % (tcti, "%s (%s)" % (why, e) if why else e)) from None
        return Response(bytes(got), ak_name, ek.public.name(), tcti)
    finally:
        session.close()
