"""Verify a TDX quote (v4 / v5, ECDSA P-256) with ``cryptography``.

Checks, each reported on its own so that a caller sees which link broke:

- ``signature_valid``: the quote signature (raw r||s, ECDSA P-256 / SHA-256)
  over header + body (v5: with the body descriptor) by the attestation key
  (raw x||y) carried in the quote.
- ``qe_report_valid``: the QE report's signature by the PCK leaf certificate's
  key, and its REPORTDATA binding: SHA-256(attestation key || QE auth data)
  in the first 32 bytes, zeros in the other 32. Together with the first check
  this ties the quote to a Quoting Enclave the PCK certificate vouches for.
- ``pck_chain_valid``: PCK leaf -> PCK Platform/Processor CA -> root: every
  signature, every validity period at ``at``, CA basic constraints and path
  lengths of the issuers, and the root equal (SHA-256 of its DER) to a pinned
  anchor of :mod:`cloud_sdk.intel_roots` (never one taken from the quote), and,
  when CRLs are given, no certificate of the chain revoked.
- ``report_data_valid`` (only when asked): REPORTDATA binds the caller's value.
  Rule: ``expected_report_data`` (64 bytes) must equal REPORTDATA exactly; a
  ``nonce`` matches when REPORTDATA is the nonce zero-padded to 64 bytes
  (``raw``; nonces up to 64 bytes) or SHA-512(nonce) (``sha512``, the
  convention of most TDX attesters); ``report_data_binding`` says which matched.
- ``tcb_status``: with Intel collateral (see :class:`Collateral`), the TDX TCB
  status the way Intel's Quote Verification Library derives it (TCB info v3
  "TDX": FMSPC / PCE-ID match, first TCB level whose SGX components + PCE SVN
  (from the PCK certificate's SGX extension, OID 1.2.840.113741.1.13.1) and
  TDX components (from TEE_TCB_SVN) are all at or above it, the TDX module
  identity and its TCB level, then convergence with the QE identity's TCB
  level). Without collateral: ``unknown (no collateral)``. Not covered: the
  TD 1.5 relaunch advice (``TDRelaunchAdvised``, needs TEE_TCB_SVN2 rules) and
  the SGX (non-TDX) TCB info flavour.

Everything that is a finding goes to ``errors`` as ``{code, message}`` with a
stable code; :class:`QuoteVerificationError` is raised only for unusable input
(unreadable or malformed collateral files, a malformed expected value).
"""

import datetime
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cloud_sdk.errors import InputError
from cloud_sdk.intel_roots import ROOT_NAMES, trusted_roots
from shared_spec.tdx_quote import QeReport, TdxQuote

#: OID of Intel's SGX extension in PCK certificates
SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
NO_COLLATERAL = "unknown (no collateral)"
COLLATERAL_UNTRUSTED = "unknown (collateral not trusted)"
#: TCB statuses that :attr:`QuoteVerification.ok` accepts by default
DEFAULT_ACCEPTED_TCB = ("UpToDate", NO_COLLATERAL)


class ChainFindings(Protocol):
    """What :func:`verify_chain` reports into: findings and the chain's certificates."""

    chain: list[dict[str, str]]

    def error(self, code: str, message: str) -> None: ...


class QuoteVerificationError(InputError):
    """Input that cannot be verified at all (CLI exit 2); never a failed check."""


@dataclass
class QuoteVerification:
    """The outcome of :func:`verify_quote`: one flag per check, findings in ``errors``."""

    signature_valid: bool = False
    qe_report_valid: bool = False
    pck_chain_valid: bool = False
    report_data_valid: bool | None = None
    report_data_binding: str | None = None
    collateral_valid: bool | None = None
    tcb_status: str = NO_COLLATERAL
    errors: list[dict[str, str]] = field(default_factory=list)
    chain: list[dict[str, str]] = field(default_factory=list)
    pck: dict[str, Any] | None = None
    tcb: dict[str, Any] = field(default_factory=dict)

    def error(self, code: str, message: str) -> None:
        self.errors.append({"code": code, "message": message})

    def passed(self, accepted_tcb: Sequence[str] = DEFAULT_ACCEPTED_TCB) -> bool:
        """Every check passed and the TCB status is one of ``accepted_tcb``."""
        return (self.signature_valid and self.qe_report_valid and self.pck_chain_valid
                and self.report_data_valid is not False and self.collateral_valid is not False
                and self.tcb_status in accepted_tcb)

    @property
    def ok(self) -> bool:
        return self.passed()

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature_valid": self.signature_valid,
            "qe_report_valid": self.qe_report_valid,
            "pck_chain_valid": self.pck_chain_valid,
            "report_data_valid": self.report_data_valid,
            "report_data_binding": self.report_data_binding,
            "collateral_valid": self.collateral_valid,
            "tcb_status": self.tcb_status,
            "tcb": self.tcb,
            "pck": self.pck,
            "chain": self.chain,
            "errors": self.errors,
        }


# ---------------------------------------------------------------------------
# collateral


@dataclass
class SignedJson:
    """A signed collateral document: the exact signed text, its value and raw r||s signature."""

    raw: bytes
    value: dict[str, Any]
    signature: bytes
    issuer_chain: list[x509.Certificate]


@dataclass
class Collateral:
    """Intel PCS collateral for one platform. Any part may be absent.

    Directory layout read by :func:`load_collateral` (names as Intel PCS v4 serves them):

    - ``tcb_info.json``: body of ``GET /tdx/certification/v4/tcb?fmspc=...``
      (``{"tcbInfo": {...}, "signature": "<hex r||s>"}``) and
      ``tcb_info_issuer_chain.pem`` (its ``TCB-Info-Issuer-Chain`` header, URL-decoded);
    - ``qe_identity.json``: body of ``GET /tdx/certification/v4/qe/identity``
      (``{"enclaveIdentity": {...}, "signature": ...}``) and
      ``qe_identity_issuer_chain.pem``;
    - ``root_ca_crl.der`` / ``.pem`` (the Intel SGX Root CA CRL) and
      ``pck_crl.der`` / ``.pem`` (``GET /sgx/certification/v4/pckcrl?ca=platform|processor``).

    Or a single ``collateral.json`` in the "QuoteCollateralV3" shape of common
    DCAP tools (keys ``tcb_info``, ``tcb_info_signature``, ``tcb_info_issuer_chain``,
    ``qe_identity``, ``qe_identity_signature``, ``qe_identity_issuer_chain``,
    ``root_ca_crl``, ``pck_crl``; CRLs and signatures in hex).
    """

    tcb_info: SignedJson | None = None
    qe_identity: SignedJson | None = None
    root_ca_crl: x509.CertificateRevocationList | None = None
    pck_crl: x509.CertificateRevocationList | None = None

    def empty(self) -> bool:
        return (self.tcb_info is None and self.qe_identity is None and self.root_ca_crl is None
                and self.pck_crl is None)


def _json_members(text: str, what: str) -> dict[str, tuple[str, Any]]:
    """Top-level members of a JSON object: name -> (exact source text, value)."""
    dec = json.JSONDecoder()
    ws = " \t\r\n"
    out: dict[str, tuple[str, Any]] = {}
    i = 0
    n = len(text)
    try:
        while i < n and text[i] in ws:
            i += 1
        if i >= n or text[i] != "{":
            raise ValueError("not a JSON object")
        i += 1
        while True:
            while i < n and text[i] in ws:
                i += 1
            if i < n and text[i] == "}" and not out:
                break
            if i >= n or text[i] != '"':
                raise ValueError("member name expected at %d" % i)
            name, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
            while i < n and text[i] in ws:
                i += 1
            if i >= n or text[i] != ":":
                raise ValueError("':' expected at %d" % i)
            i += 1
            while i < n and text[i] in ws:
                i += 1
            value, end = dec.raw_decode(text, i)
            out[name] = (text[i:end], value)
            i = end
            while i < n and text[i] in ws:
                i += 1
            if i < n and text[i] == ",":
                i += 1
                continue
            if i < n and text[i] == "}":
                break
            raise ValueError("',' or '}' expected at %d" % i)
    except ValueError as e:
        raise QuoteVerificationError("%s: malformed JSON: %s" % (what, e)) from e
    return out


def _hex(value: Any, what: str) -> bytes:
    try:
        return bytes.fromhex(str(value))
    except ValueError as e:
        raise QuoteVerificationError("%s is not hex" % what) from e


def _load_pem_chain(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem.rstrip(b"\x00"))
    except ValueError as e:
        raise QuoteVerificationError("%s: not a PEM certificate chain: %s" % (what, e)) from e


def _load_crl(data: bytes, what: str) -> x509.CertificateRevocationList:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as e:
        raise QuoteVerificationError("%s: not a CRL: %s" % (what, e)) from e


def signed_json(body: bytes, member: str, chain_pem: bytes, what: str) -> SignedJson:
    """A PCS response body ``{"<member>": {...}, "signature": "<hex>"}`` and its issuer chain."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise QuoteVerificationError("%s is not UTF-8" % what) from e
    members = _json_members(text, what)
    if member not in members or "signature" not in members:
        raise QuoteVerificationError("%s has no %r and 'signature' members" % (what, member))
    raw, value = members[member]
    if not isinstance(value, dict):
        raise QuoteVerificationError("%s: %r is not an object" % (what, member))
    return SignedJson(raw.encode("utf-8"), value,
                      _hex(members["signature"][1], what + " signature"),
                      _load_pem_chain(chain_pem, what + " issuer chain"))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise QuoteVerificationError("%s: cannot read: %s" % (path, e.strerror or e)) from e


def load_collateral(directory: str | Path) -> Collateral:
    """Read the collateral files of ``directory`` (layout in :class:`Collateral`)."""
    d = Path(directory)
    if not d.is_dir():
        raise QuoteVerificationError("%s: collateral directory not found" % d)
    col = Collateral()
    single = d / "collateral.json"
    if single.exists():
        return _collateral_v3(_read(single), str(single))
    for stem, member in (("tcb_info", "tcbInfo"), ("qe_identity", "enclaveIdentity")):
        body, chain = d / (stem + ".json"), d / (stem + "_issuer_chain.pem")
        if body.exists():
            if not chain.exists():
                raise QuoteVerificationError("%s needs %s" % (body, chain.name))
            setattr(col, stem, signed_json(_read(body), member, _read(chain), str(body)))
    for stem in ("root_ca_crl", "pck_crl"):
        for ext in (".der", ".pem", ".crl"):
            p = d / (stem + ext)
            if p.exists():
                setattr(col, stem, _load_crl(_read(p), str(p)))
                break
    if col.empty():
        raise QuoteVerificationError("%s: no collateral files (tcb_info.json, qe_identity.json, "
                                     "root_ca_crl.der, pck_crl.der, collateral.json)" % d)
    return col


def _collateral_v3(data: bytes, what: str) -> Collateral:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise QuoteVerificationError("%s: malformed JSON: %s" % (what, e)) from e
    if not isinstance(doc, dict):
        raise QuoteVerificationError("%s: not a JSON object" % what)
    col = Collateral()
    for stem in ("tcb_info", "qe_identity"):
        raw = doc.get(stem)
        if raw is None:
            continue
        text = raw if isinstance(raw, str) else json.dumps(raw)
        try:
            value = json.loads(text)
        except ValueError as e:
            raise QuoteVerificationError("%s: %s: malformed JSON" % (what, stem)) from e
        if not isinstance(value, dict):
            raise QuoteVerificationError("%s: %s is not an object" % (what, stem))
        col_doc = SignedJson(text.encode("utf-8"), value,
                             _hex(doc.get(stem + "_signature", ""), stem + "_signature"),
                             _load_pem_chain(str(doc.get(stem + "_issuer_chain", "")).encode(),
                                             stem + "_issuer_chain"))
        setattr(col, stem, col_doc)
    for stem in ("root_ca_crl", "pck_crl"):
        if doc.get(stem):
            setattr(col, stem, _load_crl(_hex(doc[stem], stem), what + ": " + stem))
    return col


# ---------------------------------------------------------------------------
# the SGX extension of PCK certificates (minimal DER reader)


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``."""
    if end - pos < 2:
        raise ValueError("DER element truncated at %d" % pos)
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag numbers are not used in the SGX extension")
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or end - pos < k:
            raise ValueError("bad DER length at %d" % pos)
        n = int.from_bytes(data[pos:pos + k], "big")
        pos += k
    if n > end - pos:
        raise ValueError("DER length %d exceeds the %d bytes left" % (n, end - pos))
    return tag, pos, pos + n


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, s, e = _tlv(data, start, end)
        out.append((tag, s, e))
        start = e
    return out


def _oid(content: bytes) -> str:
    if not content:
        raise ValueError("empty OID")
    first = content[0]
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    v = 0
    for b in content[1:]:
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(v)
            v = 0
    return ".".join(str(p) for p in parts)


def _uint(tag: int, content: bytes) -> int:
    if tag not in (0x02, 0x0A) or not content:
        raise ValueError("INTEGER expected")
    v = int.from_bytes(content, "big", signed=True)
    if v < 0:
        raise ValueError("negative SVN")
    return v


def parse_sgx_extension(der: bytes) -> dict[str, Any]:
    """Decode the PCK certificate's SGX extension (Intel PCK Certificate and CRL spec).

    Returns ``ppid``, ``fmspc``, ``pceid`` (bytes), ``sgx_type`` (0 standard,
    1 scalable, 2 scalable with integrity), and ``tcb``: ``comp_svn`` (16
    ints), ``pcesvn`` and ``cpusvn`` (16 bytes). Raises ValueError when malformed.
    """
    tag, s, e = _tlv(der, 0, len(der))
    if tag != 0x30 or e != len(der):
        raise ValueError("SGX extension is not one SEQUENCE")
    out: dict[str, Any] = {}
    for tag, cs, ce in _children(der, s, e):
        kids = _children(der, cs, ce) if tag == 0x30 else []
        if len(kids) != 2 or kids[0][0] != 0x06:
            raise ValueError("SGX extension item is not SEQUENCE {OID, value}")
        oid = _oid(der[kids[0][1]:kids[0][2]])
        vtag, vs, ve = kids[1]
        value = der[vs:ve]
        leaf = oid[len(SGX_EXTENSION_OID) + 1:] if oid.startswith(SGX_EXTENSION_OID + ".") else ""
        if leaf == "1":
            out["ppid"] = value
        elif leaf == "2":
            comp = [0] * 16
            tcb: dict[str, Any] = {"comp_svn": comp}
            for t2, s2, e2 in _children(der, vs, ve):
                pair = _children(der, s2, e2) if t2 == 0x30 else []
                if len(pair) != 2 or pair[0][0] != 0x06:
                    raise ValueError("TCB item is not SEQUENCE {OID, value}")
                sub = _oid(der[pair[0][1]:pair[0][2]]).rsplit(".", 1)[-1]
                ptag, ps, pe = pair[1]
                if sub == "18":
                    tcb["cpusvn"] = der[ps:pe]
                elif sub == "17":
                    tcb["pcesvn"] = _uint(ptag, der[ps:pe])
                elif sub.isdigit() and 1 <= int(sub) <= 16:
                    comp[int(sub) - 1] = _uint(ptag, der[ps:pe])
            if "pcesvn" not in tcb:
                raise ValueError("TCB without PCESVN")
            out["tcb"] = tcb
        elif leaf == "3":
            out["pceid"] = value
        elif leaf == "4":
            out["fmspc"] = value
        elif leaf == "5":
            out["sgx_type"] = _uint(vtag, value)
    for need in ("fmspc", "pceid", "tcb"):
        if need not in out:
            raise ValueError("SGX extension without %s" % need)
    if len(out["fmspc"]) != 6:
        raise ValueError("FMSPC is %d bytes, not 6" % len(out["fmspc"]))
    return out


def pck_extension(cert: x509.Certificate) -> dict[str, Any]:
    """The decoded SGX extension of a PCK certificate (ValueError when absent or malformed)."""
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    except x509.ExtensionNotFound as e:
        raise ValueError("the PCK certificate has no SGX extension") from e
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise ValueError("unexpected SGX extension type")
    return parse_sgx_extension(value.value)


# ---------------------------------------------------------------------------
# primitives


def _p256_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    if len(raw) != 64:
        raise ValueError("a raw P-256 key is 64 bytes, not %d" % len(raw))
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + bytes(raw))


def _raw_sig(raw: bytes) -> bytes:
    if len(raw) != 64:
        raise ValueError("a raw P-256 signature is 64 bytes, not %d" % len(raw))
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def _verify_raw(key: Any, raw_sig: bytes, data: bytes) -> None:
    """ECDSA-SHA256 with a raw r||s signature; InvalidSignature / ValueError on failure."""
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("the key is not an EC P-256 key")
    key.verify(_raw_sig(raw_sig), data, ec.ECDSA(hashes.SHA256()))


def _name(cert: x509.Certificate) -> str:
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cn[0].value) if cn else cert.subject.rfc4514_string()


def _parse_time(value: Any, what: str) -> datetime.datetime:
    try:
        t = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError("%s %r is not an ISO 8601 time" % (what, value)) from e
    return t if t.tzinfo else t.replace(tzinfo=datetime.timezone.utc)


# ---------------------------------------------------------------------------
# certificate chains and CRLs


def verify_chain(certs: list[x509.Certificate], anchors: list[x509.Certificate],
                 when: datetime.datetime, res: ChainFindings, code: str,
                 record: bool = False) -> bool:
    """Leaf-first ``certs`` ending in a pinned anchor; findings prefixed ``code`` go to ``res``.

    Checked: every validity period at ``when``, every signature (the last
    certificate by itself), CA basic constraints, key usage and path lengths of
    the issuers, no CA as the leaf, and the last certificate among ``anchors``
    (by SHA-256 of its DER). Also used for TPM EK certificates
    (:mod:`cloud_sdk.tpm_ek`).
    """
    ok = True
    pinned = {a.fingerprint(hashes.SHA256()).hex() for a in anchors}
    for i, cert in enumerate(certs):
        fp = cert.fingerprint(hashes.SHA256()).hex()
        if record:
            res.chain.append({"subject": cert.subject.rfc4514_string(), "sha256": fp,
                              "serial": "%x" % cert.serial_number,
                              "not_before": cert.not_valid_before_utc.isoformat(),
                              "not_after": cert.not_valid_after_utc.isoformat()})
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            res.error(code + "_EXPIRED", "%s is valid %s to %s, not at %s" % (
                _name(cert), cert.not_valid_before_utc.isoformat(),
                cert.not_valid_after_utc.isoformat(), when.isoformat()))
            ok = False
        issuer = certs[i + 1] if i + 1 < len(certs) else cert
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as e:
            res.error(code + "_SIGNATURE", "%s is not signed by %s: %s"
                      % (_name(cert), _name(issuer), e or "bad signature"))
            ok = False
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if i > 0:
            try:
                signs_certs = cert.extensions.get_extension_for_class(
                    x509.KeyUsage).value.key_cert_sign
            except x509.ExtensionNotFound:
                signs_certs = True
            if bc is None or not bc.ca or not signs_certs:
                res.error(code + "_NOT_CA", "%s issues certificates but is not a CA (basic "
                          "constraints / key usage)" % _name(cert))
                ok = False
            elif bc.path_length is not None and i - 1 > bc.path_length:
                res.error(code + "_PATH_LENGTH", "%s allows %d CAs below it, the chain has %d"
                          % (_name(cert), bc.path_length, i - 1))
                ok = False
        elif bc is not None and bc.ca and len(certs) > 1:
            res.error(code + "_LEAF_IS_CA", "%s is a CA certificate, not an end entity"
                      % _name(cert))
            ok = False
    last = certs[-1].fingerprint(hashes.SHA256()).hex() if certs else "-"
    if last not in pinned:
        known = " = %s, which is not trusted here" % ROOT_NAMES[last] if last in ROOT_NAMES else ""
        res.error(code + "_ROOT_NOT_PINNED", "the chain ends in %s (SHA-256 %s%s), not a trusted "
                  "anchor (%s)" % (certs[-1].subject.rfc4514_string() if certs else "nothing",
                                   last, known,
                                   ", ".join(ROOT_NAMES.get(p, p) for p in sorted(pinned))))
        ok = False
    return ok


def _check_crl(crl: x509.CertificateRevocationList, issuer: x509.Certificate,
               subjects: list[x509.Certificate], when: datetime.datetime,
               res: QuoteVerification, what: str) -> bool:
    """``crl`` is signed by ``issuer``, current at ``when``, and revokes none of ``subjects``."""
    ok = True
    if crl.issuer != issuer.subject:
        res.error("CRL_ISSUER_MISMATCH", "%s is issued by %s, expected %s" % (
            what, crl.issuer.rfc4514_string(), issuer.subject.rfc4514_string()))
        return False
    if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        res.error("CRL_SIGNATURE", "%s is not signed by %s" % (what, _name(issuer)))
        return False
    nxt = crl.next_update_utc
    if when < crl.last_update_utc or (nxt is not None and when > nxt):
        res.error("CRL_EXPIRED", "%s is current %s to %s, not at %s" % (
            what, crl.last_update_utc.isoformat(), nxt.isoformat() if nxt else "-",
            when.isoformat()))
        ok = False
    for cert in subjects:
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            res.error("CERTIFICATE_REVOKED", "%s (serial %x) is revoked by %s"
                      % (_name(cert), cert.serial_number, what))
            ok = False
    return ok


# ---------------------------------------------------------------------------
# the checks


def verify_quote(q: TdxQuote, at: datetime.datetime | None = None,
                 expected_report_data: bytes | None = None, nonce: bytes | None = None,
                 collateral: Collateral | None = None,
                 anchors: list[x509.Certificate] | None = None) -> QuoteVerification:
    """Run every check on ``q`` at time ``at`` (default: now, UTC).

    ``anchors`` are the roots a chain may end in (default: the production
    Intel SGX Root CA only; see :func:`cloud_sdk.intel_roots.trusted_roots`).
    """
    if expected_report_data is not None and len(expected_report_data) != 64:
        raise QuoteVerificationError("expected REPORTDATA must be 64 bytes, not %d"
                                     % len(expected_report_data))
    if nonce is not None and not nonce:
        raise QuoteVerificationError("the nonce is empty")
    res = QuoteVerification()
    when = at or datetime.datetime.now(datetime.timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    roots = anchors if anchors is not None else trusted_roots()

    _check_quote_signature(q, res)
    certs = _pck_certs(q, res)
    if certs:
        _check_qe_report(q, certs[0], res)
        res.pck_chain_valid = verify_chain(certs, roots, when, res, "PCK_CHAIN", record=True)
        try:
            ext = pck_extension(certs[0])
            res.pck = {"fmspc": ext["fmspc"].hex(), "pceid": ext["pceid"].hex(),
                       "pcesvn": ext["tcb"]["pcesvn"], "comp_svn": ext["tcb"]["comp_svn"],
                       "cpusvn": bytes(ext["tcb"].get("cpusvn", b"")).hex(),
                       "sgx_type": ext.get("sgx_type")}
        except ValueError as e:
            res.error("PCK_EXTENSION_INVALID", "PCK certificate SGX extension: %s" % e)
    _check_report_data(q, expected_report_data, nonce, res)
    if collateral is not None and not collateral.empty():
        _check_collateral(q, certs, collateral, roots, when, res)
    return res


def _check_quote_signature(q: TdxQuote, res: QuoteVerification) -> None:
    try:
        key = _p256_key(q.attestation_key)
    except ValueError as e:
        res.error("ATTESTATION_KEY_INVALID", "the attestation key is not a P-256 point: %s" % e)
        return
    try:
        _verify_raw(key, q.signature, q.signed_bytes())
        res.signature_valid = True
    except (InvalidSignature, ValueError):
        res.error("QUOTE_SIGNATURE_INVALID",
                  "the quote signature over header and body does not verify with its "
                  "attestation key")


def _pck_certs(q: TdxQuote, res: QuoteVerification) -> list[x509.Certificate]:
    pem = bytes(q.pck_chain_pem).rstrip(b"\x00")
    if not pem:
        res.error("PCK_CHAIN_MISSING", "the quote carries no PCK certificate chain "
                  "(certification data type %d)" % q.certification.cert_type)
        return []
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        res.error("PCK_CHAIN_UNPARSABLE", "PCK chain: %s" % e)
        return []


def _check_qe_report(q: TdxQuote, leaf: x509.Certificate, res: QuoteVerification) -> None:
    if not q.qe_report:
        res.error("QE_REPORT_MISSING", "the quote carries no QE report (certification data "
                  "type %d, not 6)" % q.certification.cert_type)
        return
    try:
        _verify_raw(leaf.public_key(), q.qe_report_signature, q.qe_report)
    except (InvalidSignature, ValueError) as e:
        res.error("QE_REPORT_SIGNATURE_INVALID", "the QE report signature does not verify "
                  "with the PCK certificate's key%s" % (": %s" % e if str(e) else ""))
        return
    bound = hashlib.sha256(bytes(q.attestation_key) + bytes(q.qe_auth_data)).digest()
    rd = QeReport.decode(q.qe_report).report_data
    if rd[:32] != bound or any(rd[32:]):
        res.error("QE_REPORT_BINDING", "QE REPORTDATA is not SHA-256(attestation key || QE "
                  "auth data) followed by zeros: the attestation key is not the QE's")
        return
    res.qe_report_valid = True


def _check_report_data(q: TdxQuote, expected: bytes | None, nonce: bytes | None,
                       res: QuoteVerification) -> None:
    rd = bytes(q.body.report_data)
    if expected is not None:
        res.report_data_valid = rd == bytes(expected)
        res.report_data_binding = "exact" if res.report_data_valid else None
        if not res.report_data_valid:
            res.error("REPORT_DATA_MISMATCH", "REPORTDATA is not the expected value")
    if nonce is not None and res.report_data_valid is not False:
        if len(nonce) <= 64 and rd == bytes(nonce) + bytes(64 - len(nonce)):
            res.report_data_binding = "raw"
        elif rd == hashlib.sha512(bytes(nonce)).digest():
            res.report_data_binding = "sha512"
        else:
            res.report_data_binding = None
        res.report_data_valid = res.report_data_binding is not None
        if not res.report_data_valid:
            res.error("REPORT_DATA_MISMATCH", "REPORTDATA is neither the nonce (zero padded) "
                      "nor SHA-512(nonce)")


# ---------------------------------------------------------------------------
# collateral: CRLs, TCB info, QE identity


#: a TCB level status once the TDX module or the QE is OutOfDate (Intel QVL convergence)
_OUT_OF_DATE = {"UpToDate": "OutOfDate", "SWHardeningNeeded": "OutOfDate",
                "ConfigurationNeeded": "OutOfDateConfigurationNeeded",
                "ConfigurationAndSWHardeningNeeded": "OutOfDateConfigurationNeeded"}
_KNOWN_STATUSES = ("UpToDate", "SWHardeningNeeded", "ConfigurationNeeded",
                   "ConfigurationAndSWHardeningNeeded", "OutOfDate",
                   "OutOfDateConfigurationNeeded", "Revoked")


def _check_collateral(q: TdxQuote, certs: list[x509.Certificate], col: Collateral,
                      roots: list[x509.Certificate], when: datetime.datetime,
                      res: QuoteVerification) -> None:
    ok = True
    root = certs[-1] if certs else None
    if col.root_ca_crl is not None:
        if root is None:
            res.error("CRL_NOT_APPLICABLE", "no PCK chain to check the root CA CRL against")
            ok = False
        else:
            ok &= _check_crl(col.root_ca_crl, root, certs[1:-1], when, res, "the root CA CRL")
    if col.pck_crl is not None:
        if len(certs) < 2:
            res.error("CRL_NOT_APPLICABLE", "no PCK CA to check the PCK CRL against")
            ok = False
        else:
            ok &= _check_crl(col.pck_crl, certs[1], certs[:1], when, res, "the PCK CRL")
    if any(e["code"] == "CERTIFICATE_REVOKED" for e in res.errors):
        res.pck_chain_valid = False
        res.tcb_status = "Revoked"
    tcb_info = _trusted(col.tcb_info, "TCB_INFO", roots, col.root_ca_crl, when, res)
    qe_identity = _trusted(col.qe_identity, "QE_IDENTITY", roots, col.root_ca_crl, when, res)
    ok &= tcb_info is not False and qe_identity is not False
    res.collateral_valid = ok
    if res.tcb_status == "Revoked":
        return
    if col.tcb_info is None:
        return
    if not isinstance(tcb_info, dict) or res.pck is None:
        res.tcb_status = COLLATERAL_UNTRUSTED
        if res.pck is None:
            res.error("TCB_NOT_EVALUATED", "no PCK TCB (SGX extension) to match the TCB info")
        return
    qe_status = None
    if isinstance(qe_identity, dict):
        qe_status = _qe_identity_status(q, qe_identity, res)
    try:
        res.tcb_status = _tdx_tcb_status(q, tcb_info, res.pck, qe_status, res)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        res.error("TCB_INFO_INVALID", "TCB info does not have the TDX v3 shape: %s" % e)
        res.collateral_valid = False
        res.tcb_status = COLLATERAL_UNTRUSTED


def _trusted(doc: SignedJson | None, code: str, roots: list[x509.Certificate],
             root_crl: x509.CertificateRevocationList | None, when: datetime.datetime,
             res: QuoteVerification) -> dict[str, Any] | bool | None:
    """The signed document's value when its chain, signature and dates hold; False if not."""
    if doc is None:
        return None
    ok = verify_chain(doc.issuer_chain, roots, when, res, code + "_CHAIN")
    if ok and root_crl is not None and len(doc.issuer_chain) > 1:
        ok = _check_crl(root_crl, doc.issuer_chain[-1], doc.issuer_chain[:-1], when, res,
                        "the root CA CRL")
    if doc.issuer_chain:
        try:
            _verify_raw(doc.issuer_chain[0].public_key(), doc.signature, doc.raw)
        except (InvalidSignature, ValueError):
            res.error(code + "_SIGNATURE", "the %s signature does not verify with %s"
                      % (code.lower().replace("_", " "), _name(doc.issuer_chain[0])))
            ok = False
    try:
        issued = _parse_time(doc.value["issueDate"], "issueDate")
        nxt = _parse_time(doc.value["nextUpdate"], "nextUpdate")
        if not issued <= when <= nxt:
            res.error(code + "_EXPIRED", "%s is current %s to %s, not at %s" % (
                code.lower().replace("_", " "), issued.isoformat(), nxt.isoformat(),
                when.isoformat()))
            ok = False
    except (KeyError, ValueError) as e:
        res.error(code + "_INVALID", "%s: %s" % (code.lower().replace("_", " "), e))
        ok = False
    return doc.value if ok else False


def _hexeq(a: Any, b: bytes) -> bool:
    return str(a).lower() == bytes(b).hex()


def _masked(value: bytes, mask_hex: Any, want_hex: Any) -> bool:
    mask = bytes.fromhex(str(mask_hex))
    want = bytes.fromhex(str(want_hex))
    return (len(mask) == len(want) == len(value)
            and all(v & m == w for v, m, w in zip(value, mask, want, strict=True)))


def _qe_identity_status(q: TdxQuote, ident: dict[str, Any], res: QuoteVerification) -> str:
    """QE TCB status from the QE identity: UpToDate / OutOfDate / Revoked / mismatch."""
    qe = q.qe_report_body()
    if qe is None:
        return "QEIdentityMismatch"
    f = qe.fields
    try:
        misc_ok = (qe.miscselect & int(str(ident["miscselectMask"]), 16)
                   == int(str(ident["miscselect"]), 16))
        same = (ident.get("id", "TD_QE") == "TD_QE" and _hexeq(ident["mrsigner"], f["mrsigner"])
                and int(ident["isvprodid"]) == qe.isvprodid and misc_ok
                and _masked(f["attributes"], ident["attributesMask"], ident["attributes"]))
    except (KeyError, ValueError, TypeError) as e:
        res.error("QE_IDENTITY_INVALID", "QE identity: %s" % e)
        return "QEIdentityMismatch"
    if not same:
        res.error("QE_IDENTITY_MISMATCH", "the QE report does not match the QE identity "
                  "(id, MRSIGNER, ISVPRODID, MISCSELECT or ATTRIBUTES)")
        return "QEIdentityMismatch"
    for level in ident.get("tcbLevels", []):
        if qe.isvsvn >= int(level["tcb"]["isvsvn"]):
            res.tcb["qe_tcb_status"] = level["tcbStatus"]
            return str(level["tcbStatus"])
    res.tcb["qe_tcb_status"] = "TCBNotSupported"
    return "TCBNotSupported"


def _tdx_tcb_status(q: TdxQuote, info: dict[str, Any], pck: dict[str, Any],
                    qe_status: str | None, res: QuoteVerification) -> str:
    """Intel QVL's TDX TCB level selection and status convergence.

    TCB levels are taken in the order the TCB info lists them (Intel PCS
    lists them highest first, as the QVL's sorted set does).
    """
    if info.get("id") != "TDX" or int(info.get("version", 0)) < 3:
        res.error("TCB_INFO_MISMATCH", "TCB info is %s v%s, not TDX v3"
                  % (info.get("id"), info.get("version")))
        return "TCBInfoMismatch"
    if not _hexeq(info["fmspc"], bytes.fromhex(pck["fmspc"])) or not _hexeq(
            info["pceId"], bytes.fromhex(pck["pceid"])):
        res.error("TCB_INFO_MISMATCH", "TCB info is for FMSPC %s / PCE-ID %s, the PCK "
                  "certificate has %s / %s" % (info["fmspc"], info["pceId"], pck["fmspc"],
                                                pck["pceid"]))
        return "TCBInfoMismatch"
    svn = bytes(q.body.tee_tcb_svn)
    module_status = _module_status(q, info, res)
    if module_status in ("TDXModuleMismatch", "TCBNotSupported"):
        return module_status
    first = 2 if svn[1] > 0 else 0
    sgx_level = None
    tdx_level = None
    for level in info["tcbLevels"]:
        tcb = level["tcb"]
        sgx = [int(c["svn"]) for c in tcb["sgxtcbcomponents"]]
        tdx = [int(c["svn"]) for c in tcb["tdxtcbcomponents"]]
        if (all(p >= s for p, s in zip(pck["comp_svn"], sgx, strict=True))
                and pck["pcesvn"] >= int(tcb["pcesvn"])):
            if sgx_level is None:
                sgx_level = level
            if all(svn[i] >= tdx[i] for i in range(first, 16)):
                tdx_level = level
                break
    if sgx_level is None or tdx_level is None:
        res.error("TCB_NOT_SUPPORTED", "no TCB level of the TCB info is at or below this "
                  "platform's %s TCB" % ("SGX" if sgx_level is None else "TDX"))
        return "TCBNotSupported"
    res.tcb.update({"tcb_date": tdx_level.get("tcbDate"),
                    "advisory_ids": tdx_level.get("advisoryIDs", []),
                    "level_status": tdx_level["tcbStatus"], "module_status": module_status,
                    "sgx_level_status": sgx_level["tcbStatus"]})
    status = str(tdx_level["tcbStatus"])
    if status not in _KNOWN_STATUSES:
        return "TCBUnrecognizedStatus"
    if module_status == "Revoked":
        return "Revoked"
    if module_status == "OutOfDate":
        status = _OUT_OF_DATE.get(status, status)
    if status == "Revoked" or qe_status is None:
        return status
    if qe_status == "Revoked":
        return "Revoked"
    if qe_status in ("TCBNotSupported", "QEIdentityMismatch"):
        return qe_status
    if qe_status == "OutOfDate":
        return _OUT_OF_DATE.get(status, status)
    return status


def _module_status(q: TdxQuote, info: dict[str, Any], res: QuoteVerification) -> str:
    """The TDX module's TCB status: UpToDate when TEE_TCB_SVN[1] == 0, else from its identity."""
    svn = bytes(q.body.tee_tcb_svn)
    f = q.body.fields
    if svn[1] == 0:
        module = info.get("tdxModule")
        if module is not None and not (
                _hexeq(module["mrsigner"], f["mrsignerseam"])
                and _masked(f["seam_attributes"], module["attributesMask"],
                            module["attributes"])):
            res.error("TDX_MODULE_MISMATCH", "MRSIGNERSEAM / SEAMATTRIBUTES do not match the "
                      "TCB info's tdxModule")
            return "TDXModuleMismatch"
        return "UpToDate"
    want = "TDX_%02X" % svn[1]
    for ident in info.get("tdxModuleIdentities", []):
        if str(ident.get("id", "")).upper() != want:
            continue
        if not (_hexeq(ident["mrsigner"], f["mrsignerseam"])
                and _masked(f["seam_attributes"], ident["attributesMask"],
                            ident["attributes"])):
            res.error("TDX_MODULE_MISMATCH", "MRSIGNERSEAM / SEAMATTRIBUTES do not match %s"
                      % want)
            return "TDXModuleMismatch"
        for level in ident.get("tcbLevels", []):
            if svn[0] >= int(level["tcb"]["isvsvn"]):
                return str(level["tcbStatus"])
        res.error("TCB_NOT_SUPPORTED", "no %s TCB level at or below TDX module SVN %d"
                  % (want, svn[0]))
        return "TCBNotSupported"
    res.error("TDX_MODULE_MISMATCH", "the TCB info has no TDX module identity %s" % want)
    return "TDXModuleMismatch"
