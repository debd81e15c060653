"""Verify a TDX quote with ``cryptography``.

Checks, each reported separately:

- ``signature_valid``: the ECDSA P-256 / SHA-256 signature (raw r||s) over
  header + body by the attestation key (raw x||y) carried in the quote;
- ``qe_report_valid``: the QE report's signature by the PCK leaf certificate's
  key, and its REPORTDATA binding: SHA-256(attestation key || QE auth data)
  in the first 32 bytes, zeros after;
- ``pck_chain_valid``: PCK leaf -> PCK Platform/Processor CA -> root, each
  signature and validity period at ``at``, issuers with CA basic constraints,
  and the root equal to the pinned Intel SGX Root CA (by SHA-256 fingerprint
  of its DER, as published; the pin is never taken from the quote);
- ``report_data``: optionally, REPORTDATA equals the caller's 64 bytes, or a
  nonce padded with zeros to 64 bytes.

TCB status needs Intel's collateral (TCB info, QE identity, CRLs); without it
the status is reported as ``unknown (no collateral)``.
"""

import datetime
import hashlib
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from shared_spec.tdx_quote import TdxQuote

#: SHA-256 of the DER of Intel's SGX Root CA (serial 22650CD65A9D3489F383B49552BF501B392706AC),
#: the trust anchor of every PCK chain.
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

QE_REPORT_DATA_OFFSET = 320


@dataclass
class QuoteVerification:
    signature_valid: bool = False
    qe_report_valid: bool = False
    pck_chain_valid: bool = False
    report_data_valid: bool | None = None
    tcb_status: str = "unknown (no collateral)"
    errors: list[dict[str, str]] = field(default_factory=list)
    chain: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.signature_valid and self.qe_report_valid and self.pck_chain_valid
                and self.report_data_valid is not False)

    def error(self, code: str, message: str) -> None:
        self.errors.append({"code": code, "message": message})

    def to_dict(self) -> dict:
        return {"signature_valid": self.signature_valid, "qe_report_valid": self.qe_report_valid,
                "pck_chain_valid": self.pck_chain_valid,
                "report_data_valid": self.report_data_valid, "tcb_status": self.tcb_status,
                "chain": self.chain, "errors": self.errors}


def _p256_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + bytes(raw))


def _raw_sig(raw: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def verify_quote(q: TdxQuote, at: datetime.datetime | None = None,
                 expected_report_data: bytes | None = None) -> QuoteVerification:
    """Run every check on ``q``; failures are listed in ``errors`` with stable codes."""
    res = QuoteVerification()
    when = at or datetime.datetime.now(datetime.timezone.utc)
    try:
        _p256_key(q.attestation_key).verify(_raw_sig(q.signature), q.signed_bytes(),
                                            ec.ECDSA(hashes.SHA256()))
        res.signature_valid = True
    except InvalidSignature:
        res.error("QUOTE_SIGNATURE_INVALID",
                  "the quote signature does not verify with its attestation key")
    except ValueError as e:
        res.error("ATTESTATION_KEY_INVALID", "attestation key is not a P-256 point: %s" % e)

    certs: list[x509.Certificate] = []
    pem = q.pck_chain_pem.rstrip(b"\x00")
    if not pem:
        res.error("PCK_CHAIN_MISSING", "the quote carries no PCK certificate chain")
    else:
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError as e:
            res.error("PCK_CHAIN_UNPARSABLE", "PCK chain: %s" % e)

    if certs and q.qe_report:
        leaf_key = certs[0].public_key()
        try:
            if not isinstance(leaf_key, ec.EllipticCurvePublicKey):
                raise ValueError("PCK key is not EC")
            leaf_key.verify(_raw_sig(q.certification.qe_report_signature), q.qe_report,
                            ec.ECDSA(hashes.SHA256()))
            bound = hashlib.sha256(bytes(q.attestation_key) +
                                   bytes(q.certification.qe_auth_data)).digest()
            rd = q.qe_report[QE_REPORT_DATA_OFFSET:QE_REPORT_DATA_OFFSET + 64]
            if rd[:32] != bound or any(rd[32:]):
                res.error("QE_REPORT_BINDING", "QE report data is not SHA-256(attestation key "
                          "|| QE auth data): the attestation key is not the QE's")
            else:
                res.qe_report_valid = True
        except InvalidSignature:
            res.error("QE_REPORT_SIGNATURE_INVALID",
                      "the QE report signature does not verify with the PCK certificate")
        except ValueError as e:
            res.error("QE_REPORT_SIGNATURE_INVALID", str(e))

    if certs:
        res.pck_chain_valid = _verify_chain(certs, when, res)

    if expected_report_data is not None:
        want = bytes(expected_report_data).ljust(64, b"\x00")
        res.report_data_valid = bytes(q.body.fields["report_data"]) == want
        if not res.report_data_valid:
            res.error("REPORT_DATA_MISMATCH", "REPORTDATA does not bind the expected value")
    return res


def _verify_chain(certs: list[x509.Certificate], when: datetime.datetime,
                  res: QuoteVerification) -> bool:
    ok = True
    for i, cert in enumerate(certs):
        fp = cert.fingerprint(hashes.SHA256()).hex()
        res.chain.append({"subject": cert.subject.rfc4514_string(), "sha256": fp,
                          "not_after": cert.not_valid_after_utc.isoformat()})
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            res.error("PCK_CHAIN_EXPIRED", "%s is not valid at %s"
                      % (cert.subject.rfc4514_string(), when.isoformat()))
            ok = False
        issuer = certs[i + 1] if i + 1 < len(certs) else cert
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as e:
            res.error("PCK_CHAIN_SIGNATURE", "%s is not signed by %s: %s"
                      % (cert.subject.rfc4514_string(), issuer.subject.rfc4514_string(), e))
            ok = False
        if i > 0:
            try:
                bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
                if not bc.ca:
                    raise x509.ExtensionNotFound("not a CA", bc.oid)
            except x509.ExtensionNotFound:
                res.error("PCK_CHAIN_NOT_CA", "%s is not a CA" % cert.subject.rfc4514_string())
                ok = False
    root_fp = certs[-1].fingerprint(hashes.SHA256()).hex()
    if root_fp != INTEL_SGX_ROOT_CA_SHA256:
        res.error("PCK_ROOT_NOT_PINNED", "the chain's root (%s, SHA-256 %s) is not the pinned "
                  "Intel SGX Root CA (%s)" % (certs[-1].subject.rfc4514_string(), root_fp,
                                              INTEL_SGX_ROOT_CA_SHA256))
        ok = False
    return ok
