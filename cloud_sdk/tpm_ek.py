"""TPM endorsement keys (EK): TCG default templates, EK certificates, and their checks.

The TCG EK Credential Profile for TPM Family 2.0 (v2.5, §2.2) fixes where a
manufacturer stores the EK certificate (an NV index per key type) and the
template the certified EK is made from, so anyone can recreate the same EK
with TPM2_CreatePrimary and compare it with the certificate. :data:`TEMPLATES`
are those templates, written out here from the profile (the verifier needs no
tpm2-pytss): the low range (``rsa2048`` L-1 at 0x01C00002, ``ecc256`` L-2 at
0x01C0000A, policy A = PolicySecret(TPM_RH_ENDORSEMENT)) and the high range
(H-1 .. H-7, policy B = PolicyOR(A, C), with userWithAuth).

Verifier side (``cryptography`` only): :func:`verify_ek_certificate` builds the
path from the EK certificate through a CA bundle the user trusts to a
self-signed root in it, checks it with
:func:`cloud_sdk.quote_verify.verify_chain`, and, given the EK public area,
that it is the certified key in a TCG EK shape (restricted decryption key,
fixedTPM). Findings have stable codes: ``EK_CERT_ISSUER_UNKNOWN``,
``EK_CERT_CHAIN_SIGNATURE``, ``EK_CERT_CHAIN_EXPIRED``, ``EK_CERT_CHAIN_NOT_CA``,
``EK_CERT_CHAIN_PATH_LENGTH``, ``EK_CERT_CHAIN_LEAF_IS_CA``,
``EK_CERT_CHAIN_ROOT_NOT_PINNED``, ``EK_PUBLIC_MISMATCH``, ``EK_NOT_AN_EK``.
The path may go through untrusted intermediates (the TPM's EK chain NV
indices, :mod:`cloud_sdk.tpm_ek_nv`; fetched ones, :mod:`cloud_sdk.tpm_ek_fetch`)
but must end in a root of the bundle (:mod:`cloud_sdk.tpm_ek_path`). With CRLs
(or ``crl_required``, or a fetcher) every certificate of the path is checked
for revocation (:mod:`cloud_sdk.tpm_ek_revocation`: ``EK_CERT_REVOKED``,
``EK_CRL_SIGNATURE``, ``EK_CRL_EXPIRED``, ``EK_CRL_MISSING``).

TPM side (tpm2-pytss): :func:`read_ek` reads the certificate from its NV
index, recreates the EK from the template the certificate belongs to (or the
template / nonce the manufacturer stored next to it, as tpm2-pytss's
``create_ek_template`` does) and refuses an EK whose key is not the
certificate's.
"""

from __future__ import annotations

import datetime
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from cloud_sdk.errors import BackendError, InputError
from cloud_sdk.quote_verify import verify_chain
from cloud_sdk.tpm_ek_fetch import Fetcher
from cloud_sdk.tpm_ek_path import MAX_CHAIN as MAX_CHAIN  # re-exported
from cloud_sdk.tpm_ek_path import SourcedCertificate
from cloud_sdk.tpm_ek_path import build_path as _build_path
from cloud_sdk.tpm_ek_revocation import SourcedCrl, check_revocation
from cloud_sdk.tpm_public import (
    ADMIN_WITH_POLICY,
    DECRYPT,
    FIXED_PARENT,
    FIXED_TPM,
    RESTRICTED,
    SENSITIVE_DATA_ORIGIN,
    SIGN_ENCRYPT,
    TPM_ALG_AES,
    TPM_ALG_CFB,
    TPM_ALG_ECC,
    TPM_ALG_NULL,
    TPM_ALG_RSA,
    USER_WITH_AUTH,
    PublicKey,
    TpmPublic,
    encode_public,
    parse_public,
    with_key,
)
from shared_spec.algorithms import ALG_SHA256, ALG_SHA384, ALG_SHA512, alg_name

TPM_RH_ENDORSEMENT = 0x4000000B
TPM_CC_POLICY_SECRET = 0x00000151
TPM_CC_POLICY_OR = 0x00000171
#: The TCG EK Credential Profile's PolicyC (PolicyNV on the EK policy index), per hash.
POLICY_C = {
    ALG_SHA256: bytes.fromhex("3767e2edd43ff45a3a7e1eaefcef78643dca964632e7aad82c673a30d8633fde"),
    ALG_SHA384: bytes.fromhex("d6032ce61f2fb3c240eb3cf6a33237ef2b6a16f4293c22b455e261cffd217ad5"
                              "b4947c2d73e63005eed2dc2b3593d165"),
    ALG_SHA512: bytes.fromhex("589ee1e146544716e8deafe6db247b01b81e9f9c7dd16b814aa159138749105f"
                              "ba5388dd1dea702f35240c184933121e2c61b8f50d3ef91393a49a38c3f73fc8"),
}


class EkError(BackendError):
    """The TPM's EK cannot be read or made, or is not the one its certificate names."""


def policy_a(hash_alg: int) -> bytes:
    """PolicySecret(TPM_RH_ENDORSEMENT) from an empty digest (Part 3 §23.4, no policyRef)."""
    name = alg_name(hash_alg)
    d = hashlib.new(name, bytes(hashlib.new(name).digest_size)
                    + struct.pack(">II", TPM_CC_POLICY_SECRET, TPM_RH_ENDORSEMENT)).digest()
    return hashlib.new(name, d).digest()  # PolicyUpdate's second hash over the empty policyRef


def policy_or(hash_alg: int, branches: list[bytes]) -> bytes:
    """TPM2_PolicyOR's digest over ``branches`` from an empty digest (Part 3 §23.6)."""
    name = alg_name(hash_alg)
    return hashlib.new(name, bytes(hashlib.new(name).digest_size)
                       + struct.pack(">I", TPM_CC_POLICY_OR) + b"".join(branches)).digest()


def policy_b(hash_alg: int) -> bytes:
    """The high-range EK policy: PolicyOR(PolicyA, PolicyC)."""
    return policy_or(hash_alg, [policy_a(hash_alg), POLICY_C[hash_alg]])


@dataclass(frozen=True)
class EkTemplate:
    """One TCG default EK template and the NV index of its certificate."""

    name: str
    tcg: str
    pytss: str
    cert_index: int
    key_type: int
    size: int  # RSA key bits, or the TPM_ECC_CURVE
    name_alg: int
    sym_bits: int
    high: bool

    def public(self) -> TpmPublic:
        """The template itself (unique zero-filled in the low range, empty in the high)."""
        attrs = (FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | ADMIN_WITH_POLICY
                 | RESTRICTED | DECRYPT | (USER_WITH_AUTH if self.high else 0))
        policy = policy_b(self.name_alg) if self.high else policy_a(self.name_alg)
        if self.key_type == TPM_ALG_RSA:
            p = TpmPublic(TPM_ALG_RSA, self.name_alg, attrs, policy, TPM_ALG_AES, self.sym_bits,
                          TPM_ALG_CFB, TPM_ALG_NULL, 0,
                          b"" if self.high else bytes(self.size // 8), b"",
                          key_bits=self.size, exponent=0)
        else:
            coord = b"" if self.high else bytes(32)
            p = TpmPublic(TPM_ALG_ECC, self.name_alg, attrs, policy, TPM_ALG_AES, self.sym_bits,
                          TPM_ALG_CFB, TPM_ALG_NULL, 0, coord, b"", curve=self.size,
                          kdf=TPM_ALG_NULL, unique_y=coord)
        p.raw = encode_public(p)
        return p

    @property
    def nonce_index(self) -> int | None:
        return None if self.high else self.cert_index + 1

    @property
    def template_index(self) -> int:
        return self.cert_index + (1 if self.high else 2)


#: TCG EK Credential Profile v2.5 Table 2-3: name -> template; the order is the search order.
TEMPLATES: dict[str, EkTemplate] = {t.name: t for t in (
    EkTemplate("rsa2048", "L-1", "EK-RSA2048", 0x01C00002, TPM_ALG_RSA, 2048, ALG_SHA256, 128,
               False),
    EkTemplate("ecc256", "L-2", "EK-ECC256", 0x01C0000A, TPM_ALG_ECC, 0x0003, ALG_SHA256, 128,
               False),
    EkTemplate("high-rsa2048", "H-1", "EK-HIGH-RSA2048", 0x01C00012, TPM_ALG_RSA, 2048,
               ALG_SHA256, 128, True),
    EkTemplate("high-ecc256", "H-2", "EK-HIGH-ECC256", 0x01C00014, TPM_ALG_ECC, 0x0003,
               ALG_SHA256, 128, True),
    EkTemplate("high-ecc384", "H-3", "EK-HIGH-ECC384", 0x01C00016, TPM_ALG_ECC, 0x0004,
               ALG_SHA384, 256, True),
    EkTemplate("high-ecc521", "H-4", "EK-HIGH-ECC521", 0x01C00018, TPM_ALG_ECC, 0x0005,
               ALG_SHA512, 256, True),
    EkTemplate("high-rsa3072", "H-6", "EK-HIGH-RSA3072", 0x01C0001C, TPM_ALG_RSA, 3072,
               ALG_SHA384, 256, True),
    EkTemplate("high-rsa4096", "H-7", "EK-HIGH-RSA4096", 0x01C0001E, TPM_ALG_RSA, 4096,
               ALG_SHA384, 256, True),
)}


def template(name: str) -> EkTemplate:
    """The template called ``name`` (``rsa2048``, ``high-ecc384``, ...); :class:`InputError`."""
    t = TEMPLATES.get(name)
    if t is None:
        raise InputError("EK template %r (choose from %s)" % (name, ", ".join(TEMPLATES)))
    return t


def template_for_key(key: PublicKey) -> EkTemplate:
    """The template a certificate's key belongs to: the low range for RSA 2048 and P-256."""
    for t in TEMPLATES.values():
        try:
            with_key(t.public(), key)
        except InputError:
            continue
        return t
    raise InputError("no TCG EK template has a %s key" % _key_text(key))


def _key_text(key: Any) -> str:
    size = getattr(key, "key_size", 0)
    curve = getattr(getattr(key, "curve", None), "name", None)
    return ("EC %s" % curve) if curve else ("RSA %d" % size)


# ---------------------------------------------------------------- certificates


def load_certificate(data: bytes, source: str) -> x509.Certificate:
    """An X.509 certificate from PEM or DER (an NV index may pad DER with 0x00 / 0xFF)."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(_der_prefix(data, source))
    except ValueError as e:
        raise InputError("%s: not an X.509 certificate: %s" % (source, e)) from None


def _der_prefix(data: bytes, source: str) -> bytes:
    """The DER SEQUENCE at the start of ``data``, without what follows it."""
    if len(data) < 2 or data[0] != 0x30:
        raise InputError("%s: offset 0: not a DER SEQUENCE (first byte 0x%02x)"
                         % (source, data[0] if data else 0))
    first = data[1]
    if first < 0x80:
        return data[:2 + first]
    n = first & 0x7F
    if n == 0 or n > 4 or len(data) < 2 + n:
        raise InputError("%s: offset 1: bad DER length" % source)
    return data[:2 + n + int.from_bytes(data[2:2 + n], "big")]


def load_ca_bundle(path: str | Path) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (or one DER certificate); :class:`InputError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InputError("%s: cannot read: %s" % (path, e.strerror or e)) from e
    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as e:
            raise InputError("%s: not a PEM certificate bundle: %s" % (path, e)) from None
    else:
        certs = [load_certificate(data, str(path))]
    if not certs:
        raise InputError("%s: no certificate" % path)
    return certs


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _label(cert: x509.Certificate) -> str:
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    text = str(cn[0].value) if cn else cert.subject.rfc4514_string() or "(empty subject)"
    return "%s (serial %x)" % (text, cert.serial_number)


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


@dataclass
class EkVerification:
    """The outcome of :func:`verify_ek_certificate`; findings in ``errors``.

    ``public_valid`` is None when no EK public area was given to compare;
    ``revocation_valid`` None when revocation was not checked, or no
    certificate was covered by a CRL and none was required. ``chain`` lists
    the path's certificates with the ``source`` of each (``EK certificate``,
    ``CA bundle``, ``NV 0x01c00100``, a URL); ``revocation`` each non-root
    certificate's status (``good``, ``revoked``, ``stale``, ``unchecked``);
    ``warnings`` what did not fail a check (``EK_FETCH_FAILED``, ``EK_CRL_UNUSED``).
    """

    chain_valid: bool = False
    public_valid: bool | None = None
    template: str = ""
    errors: list[dict[str, str]] = field(default_factory=list)
    chain: list[dict[str, str]] = field(default_factory=list)
    revocation_valid: bool | None = None
    revocation: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)

    def error(self, code: str, message: str) -> None:
        self.errors.append({"code": code, "message": message})

    @property
    def passed(self) -> bool:
        return (self.chain_valid and self.public_valid is not False
                and self.revocation_valid is not False)

    def to_dict(self) -> dict[str, Any]:
        return {"chain_valid": self.chain_valid, "public_valid": self.public_valid,
                "template": self.template, "passed": self.passed, "errors": self.errors,
                "chain": self.chain, "revocation_valid": self.revocation_valid,
                "revocation": self.revocation, "warnings": self.warnings}


def build_path(cert: x509.Certificate, bundle: list[x509.Certificate],
               intermediates: Iterable[SourcedCertificate] = ()) -> list[x509.Certificate]:
    """``cert`` and its issuers from ``bundle`` and ``intermediates``, leaf first, up to a
    self-issued one or a gap (:func:`cloud_sdk.tpm_ek_path.build_path`)."""
    return _build_path(cert, bundle, intermediates).certificates


def verify_ek_certificate(cert: x509.Certificate, bundle: list[x509.Certificate],
                          ek_public: TpmPublic | None = None,
                          at: datetime.datetime | None = None, *,
                          intermediates: Iterable[SourcedCertificate] = (),
                          crls: Sequence[SourcedCrl] | None = None, crl_required: bool = False,
                          fetcher: Fetcher | None = None) -> EkVerification:
    """Check ``cert`` chains through ``bundle`` to a self-signed root in it, valid ``at``.

    ``intermediates`` (untrusted, e.g. from the TPM's NV) may supply links
    between ``cert`` and the bundle. With ``ek_public`` (the EK's public area,
    e.g. from a quote file), also that it holds the certificate's key and is
    shaped like an EK: a restricted decryption key, fixedTPM and fixedParent,
    neither signing nor a duplicate. With ``crls``, ``crl_required`` or
    ``fetcher``, no certificate of the path may be revoked at ``at``; the
    ``fetcher`` (:class:`cloud_sdk.tpm_ek_fetch.Fetcher`) also fetches a
    missing issuer (caIssuers) and missing CRLs (distribution points).
    """
    res = EkVerification()
    when = at or datetime.datetime.now(datetime.timezone.utc)
    extra = list(intermediates)
    path = _build_path(cert, bundle, extra, fetcher)
    top = path.top
    if top.subject != top.issuer:
        where = ["the CA bundle"] + (["the %d intermediates given (%s)" % (
            len(extra), ", ".join(sorted({s.source for s in extra})))] if extra else []) + (
            ["its caIssuers URLs"] if fetcher is not None else [])
        res.error("EK_CERT_ISSUER_UNKNOWN", "no issuer (%s) of %s in %s; the path must reach a "
                  "self-signed root of the CA bundle" % (
                      top.issuer.rfc4514_string() or "(empty)", _label(top), " or ".join(where)))
    else:
        res.chain_valid = verify_chain(path.certificates, bundle, when, res, "EK_CERT_CHAIN",
                                       record=True)
        for entry, source in zip(res.chain, path.sources, strict=True):
            entry["source"] = source
        if crls is not None or crl_required or fetcher is not None:
            rev = check_revocation(path.certificates, crls or [], when, crl_required,
                                   fetcher.crls if fetcher is not None else None)
            res.revocation, res.revocation_valid = rev.certificates, rev.valid
            res.errors += rev.errors
            res.warnings += rev.warnings
    if fetcher is not None:
        res.warnings += fetcher.warnings
    key = cert.public_key()
    try:
        res.template = template_for_key(key).name  # type: ignore[arg-type]
    except InputError:
        res.template = ""
    if ek_public is not None:
        check_public(cert, key, ek_public, res)
    return res


def check_public(cert: x509.Certificate, key: Any, ek: TpmPublic, res: EkVerification) -> None:
    """Report into ``res`` whether ``ek`` holds ``key`` (``cert``'s) and is shaped like an EK."""
    res.public_valid = True
    try:
        same = _spki(ek.public_key()) == _spki(key)
    except InputError as e:
        same = False
        res.error("EK_PUBLIC_MISMATCH", str(e))
    if not same:
        res.public_valid = False
        res.error("EK_PUBLIC_MISMATCH", "the EK public area (%s, %s) does not hold the key of "
                  "the EK certificate %s (%s)" % (ek.describe(), ek.name().hex(), _label(cert),
                                                  _key_text(key)))
    need = FIXED_TPM | FIXED_PARENT | RESTRICTED | DECRYPT
    if ek.attributes & need != need or ek.attributes & SIGN_ENCRYPT:
        res.public_valid = False
        res.error("EK_NOT_AN_EK", "objectAttributes 0x%08x: an EK is a fixedTPM, fixedParent, "
                  "restricted decryption key (0x%08x set, sign clear)" % (ek.attributes, need))


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


# ---------------------------------------------------------------- the TPM side (tpm2-pytss)


@dataclass
class EndorsementKey:
    """An EK as the TPM made it: its template, public area, certificate (DER) if any."""

    template: EkTemplate
    public: TpmPublic
    certificate: bytes | None = None
    handle: Any = None  # the ESYS_TR while the session lives

    @property
    def certificate_pem(self) -> str | None:
        if self.certificate is None:
            return None
        return certificate_pem(load_certificate(self.certificate, "NV 0x%08x"
                                                % self.template.cert_index))


def nv_indices(session: Any, first: int = 0x01000000, last: int = 0x01FFFFFF) -> set[int]:
    """The defined NV indices from ``first`` to ``last`` (TPM2_GetCapability(HANDLES))."""
    t = session.t
    out: set[int] = set()
    more, start = True, first
    while more and start <= last:
        more, cap = session.call("TPM2_GetCapability(HANDLES, NV)", session.esys.get_capability,
                                 t.TPM2_CAP.HANDLES, start, 256)
        handles = [int(h) for h in cap.data.handles]
        out.update(h for h in handles if first <= h <= last)
        if not handles:
            break
        start = max(handles) + 1
    return out


def _nv_indices(session: Any) -> set[int]:
    return nv_indices(session)


#: Chunk size when the TPM does not say its TPM_PT_NV_BUFFER_MAX (PC Client: at least 512).
NV_CHUNK = 512


def nv_buffer_max(session: Any) -> int:
    """The TPM's TPM_PT_NV_BUFFER_MAX: the most one TPM2_NV_Read returns."""
    t = session.t
    _, cap = session.call("TPM2_GetCapability(TPM_PROPERTIES, NV_BUFFER_MAX)",
                          session.esys.get_capability, t.TPM2_CAP.TPM_PROPERTIES,
                          int(t.TPM2_PT_NV.BUFFER_MAX), 1)
    props = cap.data.tpmProperties
    for n in range(int(props.count)):  # iterating the TPML would run past its count
        if int(props[n].property) == int(t.TPM2_PT_NV.BUFFER_MAX) and int(props[n].value) > 0:
            return int(props[n].value)
    return NV_CHUNK


def read_nv(session: Any, index: int) -> bytes:
    """The whole content of NV ``index``, in chunks of the TPM's NV buffer size.

    Read with the index's own authorization when it allows (AUTHREAD), else
    the owner's (OWNERREAD), else the platform's (PPREAD); empty when never written.
    """
    t, esys = session.t, session.esys
    nvh = session.call("ESYS_TR for NV 0x%08x" % index, esys.tr_from_tpmpublic, index)
    pub, _ = session.call("TPM2_NV_ReadPublic(0x%08x)" % index, esys.nv_read_public, nvh)
    size = int(pub.nvPublic.dataSize)
    attrs = int(pub.nvPublic.attributes)
    if not attrs & int(t.TPMA_NV.WRITTEN):
        return b""
    auth = nvh
    if not attrs & int(t.TPMA_NV.AUTHREAD):
        if attrs & int(t.TPMA_NV.OWNERREAD):
            auth = t.ESYS_TR.OWNER
        elif attrs & int(t.TPMA_NV.PPREAD):
            auth = t.ESYS_TR.PLATFORM
    chunk = nv_buffer_max(session)
    out = b""
    while len(out) < size:
        n = min(chunk, size - len(out))
        out += bytes(session.call("TPM2_NV_Read(0x%08x)" % index, esys.nv_read, nvh, n,
                                  len(out), auth))
    return out


def read_ek(session: Any, name: str | None = None, require_certificate: bool = False
            ) -> EndorsementKey:
    """Make the EK of template ``name`` in ``session`` (a :class:`cloud_sdk.tpm_quote.TpmSession`)
    and check it against its certificate.

    Default template: the first of :data:`TEMPLATES` whose certificate index
    is defined, else ``rsa2048``. A template or nonce stored by the
    manufacturer next to the certificate replaces the default's fields.

    The handle is flushed when the session closes. :class:`EkError` when the
    certificate's key is not the EK's, or ``require_certificate`` and none is stored.
    """
    t = session.t
    present = _nv_indices(session)
    if name is not None:
        chosen = template(name)
    else:
        with_cert = [x for x in TEMPLATES.values() if x.cert_index in present]
        chosen = with_cert[0] if with_cert else TEMPLATES["rsa2048"]
    cert = read_nv(session, chosen.cert_index) if chosen.cert_index in present else None
    if cert is None and require_certificate:
        raise EkError("%s: no EK certificate at NV 0x%08x (%s EK); certificates here: %s" % (
            session.tcti, chosen.cert_index, chosen.name,
            ", ".join("%s (0x%08x)" % (x.name, x.cert_index) for x in TEMPLATES.values()
                      if x.cert_index in present) or "none"))
    tmpl = t.TPM2B_PUBLIC.unmarshal(chosen.public().sized())[0]
    if chosen.template_index in present:  # the manufacturer's own template (Profile §2.2.1.5)
        raw = read_nv(session, chosen.template_index)
        tmpl = t.TPM2B_PUBLIC(publicArea=t.TPMT_PUBLIC.unmarshal(raw)[0])
    nonce_index = chosen.nonce_index
    if nonce_index is not None and nonce_index in present:
        nonce = read_nv(session, nonce_index)
        if chosen.key_type == TPM_ALG_RSA:
            tmpl.publicArea.unique.rsa = nonce + bytes(chosen.size // 8 - len(nonce))
        else:
            tmpl.publicArea.unique.ecc.x = nonce + bytes(32 - len(nonce))
            tmpl.publicArea.unique.ecc.y = bytes(32)
    handle, public = session.call("TPM2_CreatePrimary (EK %s)" % chosen.name,
                                  session.esys.create_primary, None, tmpl,
                                  t.ESYS_TR.ENDORSEMENT)[:2]
    session.flush.append(handle)
    pub = parse_public(bytes(public.marshal()), "EK %s from TPM2_CreatePrimary" % chosen.name)
    ek = EndorsementKey(chosen, pub, cert, handle)
    if cert is not None:
        c = load_certificate(cert, "%s: NV 0x%08x" % (session.tcti, chosen.cert_index))
        if _spki(c.public_key()) != _spki(pub.public_key()):
            raise EkError("%s: the EK made from the %s template (%s) is not the key of the EK "
                          "certificate at NV 0x%08x (%s)" % (
                              session.tcti, chosen.name, pub.describe(), chosen.cert_index,
                              _key_text(c.public_key())))
    return ek
