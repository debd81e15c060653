"""Revocation of the certificates of an EK certificate's path, by CRL (RFC 5280 §6.3, simplified).

For every certificate of a built path but its root, the CRLs whose issuer is
that certificate's issuer are checked: signed by the issuer's key (else
``EK_CRL_SIGNATURE``), in scope (an Issuing Distribution Point limited to CA
or to end-entity certificates, or to attribute certificates, does not cover
the others), current at the verification time (thisUpdate <= time <=
nextUpdate, else ``EK_CRL_EXPIRED`` when no current one is left). A serial
listed by any correctly signed CRL of the issuer is ``EK_CERT_REVOKED``,
naming the certificate's subject, serial, revocation date and reason. A
certificate no complete current CRL covers is ``EK_CRL_MISSING`` only when
revocation checking is required; otherwise it is reported as ``unchecked``.
A CRL limited to some reasons, an indirect CRL, or a delta CRL is used for its
entries but does not count as complete. CRLs that match no issuer of the path
give the warning ``EK_CRL_UNUSED``.

CRLs come from files (:func:`load_crls`: PEM, one or several, or DER) or, for
a certificate no given CRL covers, from a callback (its CRL distribution
points, :class:`cloud_sdk.tpm_ek_fetch.Fetcher`).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from cloud_sdk.errors import InputError

_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.S)


@dataclass(frozen=True)
class SourcedCrl:
    """A CRL and where it came from (a file, ``FILE[2]`` for the third of a PEM file, a URL)."""

    crl: x509.CertificateRevocationList
    source: str


def parse_crls(data: bytes, source: str) -> list[SourcedCrl]:
    """Every CRL of PEM ``data`` (one or more blocks), or the DER CRL ``data``."""
    if b"-----BEGIN" in data:
        blocks = _PEM_CRL.findall(data)
        if not blocks:
            raise InputError("%s: PEM without an X509 CRL block" % source)
        out = []
        for i, block in enumerate(blocks):
            where = source if len(blocks) == 1 else "%s[%d]" % (source, i)
            try:
                out.append(SourcedCrl(x509.load_pem_x509_crl(block), where))
            except ValueError as e:
                raise InputError("%s: offset %d: not a CRL: %s"
                                 % (where, data.find(block), e)) from None
        return out
    if not data.startswith(b"\x30"):
        raise InputError("%s: offset 0: not a DER CRL (first byte 0x%02x)"
                         % (source, data[0] if data else 0))
    try:
        return [SourcedCrl(x509.load_der_x509_crl(data), source)]
    except ValueError as e:
        raise InputError("%s: not a DER CRL: %s" % (source, e)) from None


def load_crls(paths: Sequence[str | Path]) -> list[SourcedCrl]:
    """The CRLs of every file of ``paths``; :class:`InputError` names the unusable file."""
    out: list[SourcedCrl] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise InputError("%s: cannot read: %s" % (path, e.strerror or e)) from e
        out += parse_crls(data, str(path))
    return out


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _scope(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> tuple[bool, bool]:
    """(the CRL covers ``cert``'s kind, the CRL is complete for what it covers)."""
    complete = True
    try:
        crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
        complete = False
    except x509.ExtensionNotFound:
        pass
    try:
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    except x509.ExtensionNotFound:
        return True, complete
    if idp.only_contains_attribute_certs:
        return False, complete
    if idp.only_contains_ca_certs and not _is_ca(cert):
        return False, complete
    if idp.only_contains_user_certs and _is_ca(cert):
        return False, complete
    return True, complete and not idp.only_some_reasons and not idp.indirect_crl


def _signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        return bool(crl.is_signature_valid(issuer.public_key()))  # type: ignore[arg-type]
    except (TypeError, ValueError):  # a key type CRLs cannot be signed with
        return False


def _current(crl: x509.CertificateRevocationList, when: datetime.datetime) -> bool:
    nxt = crl.next_update_utc
    return crl.last_update_utc <= when and (nxt is None or when <= nxt)


def _reason(entry: x509.RevokedCertificate) -> str:
    try:
        return str(entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value)
    except x509.ExtensionNotFound:
        return ""


@dataclass
class Revocation:
    """The outcome of :func:`check_revocation`: per certificate, findings, warnings.

    ``valid`` is None when no certificate was checked and nothing failed.
    """

    certificates: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)

    def error(self, code: str, message: str) -> None:
        self.errors.append({"code": code, "message": message})

    @property
    def valid(self) -> bool | None:
        if self.errors:
            return False
        return True if any(c["status"] == "good" for c in self.certificates) else None


def check_revocation(path: Sequence[x509.Certificate], crls: Sequence[SourcedCrl],
                     when: datetime.datetime, required: bool = False,
                     more: Callable[[x509.Certificate], list[SourcedCrl]] | None = None
                     ) -> Revocation:
    """Check every certificate of leaf-first ``path`` but the last against its issuer's CRLs.

    ``more(cert)`` (optional) gives further CRLs for a certificate that no
    CRL of ``crls`` covers (e.g. fetched from its distribution points).
    """
    res = Revocation()
    used: set[int] = set()
    pool = list(crls)
    for i, cert in enumerate(path[:-1]):
        issuer = path[i + 1]
        entry: dict[str, Any] = {"subject": _name(cert), "serial": "%x" % cert.serial_number,
                                 "issuer": _name(issuer), "status": "unchecked", "crls": []}
        res.certificates.append(entry)
        mine = [c for c in pool if c.crl.issuer == issuer.subject]
        if more is not None and not any(_signed_by(c.crl, issuer) for c in mine):
            fetched = more(cert)
            pool += fetched
            mine += [c for c in fetched if c.crl.issuer == issuer.subject]
        _check_one(cert, issuer, mine, when, required, res, entry)
        used.update(id(c) for c in mine)
    for c in crls:
        if id(c) not in used:
            res.warnings.append({"code": "EK_CRL_UNUSED", "message": "%s: a CRL of %s, which "
                                 "issued no certificate of the EK certificate's path"
                                 % (c.source, c.crl.issuer.rfc4514_string() or "(empty)")})
    return res


def _check_one(cert: x509.Certificate, issuer: x509.Certificate, crls: list[SourcedCrl],
               when: datetime.datetime, required: bool, res: Revocation,
               entry: dict[str, Any]) -> None:
    label = "%s (serial %x)" % (_name(cert), cert.serial_number)
    covered = stale = False
    for c in crls:
        if not _signed_by(c.crl, issuer):
            res.error("EK_CRL_SIGNATURE", "%s: the CRL names %s as its issuer but is not signed "
                      "by that certificate's key" % (c.source, _name(issuer)))
            continue
        in_scope, complete = _scope(c.crl, cert)
        if not in_scope:
            continue
        entry["crls"].append(c.source)
        revoked = c.crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if revoked is not None and entry["status"] != "revoked":
            entry.update(status="revoked",
                         revocation_date=revoked.revocation_date_utc.isoformat(),
                         reason=_reason(revoked))
            res.error("EK_CERT_REVOKED", "%s is revoked since %s%s (CRL of %s, %s)" % (
                label, revoked.revocation_date_utc.isoformat(),
                ", reason %s" % entry["reason"] if entry["reason"] else "", _name(issuer),
                c.source))
        if _current(c.crl, when):
            covered = covered or complete
        else:
            stale = True
            nxt = c.crl.next_update_utc
            entry.setdefault("stale", []).append(
                "%s: current %s to %s" % (c.source, c.crl.last_update_utc.isoformat(),
                                          nxt.isoformat() if nxt else "-"))
    if entry["status"] == "revoked":
        return
    if covered:
        entry["status"] = "good"
    elif stale:
        entry["status"] = "stale"
        res.error("EK_CRL_EXPIRED", "no CRL of %s is current at %s for %s (%s)" % (
            _name(issuer), when.isoformat(), label, "; ".join(entry["stale"])))
    elif required:
        res.error("EK_CRL_MISSING", "no CRL of %s covers %s; revocation checking is required"
                  % (_name(issuer), label))
