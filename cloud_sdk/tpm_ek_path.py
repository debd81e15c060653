"""The certification path of an EK certificate: from the leaf to a trusted self-signed root.

Certificates come from three kinds of places, each remembered as the
:attr:`SourcedCertificate.source` of the certificate: the CA bundle the user
trusts (``CA bundle``; only a root found there ends a valid path), the
untrusted intermediates the TPM stores in its EK chain NV indices (TCG EK
Credential Profile v2.5 §2.2.1.5, "EK Certificate Chain": ``NV 0x01c00100``
...), and, only when asked, certificates fetched from a certificate's
Authority Information Access ``caIssuers`` URL (the URL). An untrusted
certificate can only add links; :func:`cloud_sdk.quote_verify.verify_chain`
still checks every signature, validity period and CA constraint, and that the
path ends in a root of the bundle.

:func:`build_path` prefers issuers whose signature verifies, and among those
the first path that ends in a bundle root (a small depth-first search, so a
cross-certificate or a stale duplicate in NV does not hide the right issuer).
When no issuer verifies it still follows one by name, so the verifier can say
which signature is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

#: Longest path :func:`build_path` builds (leaf and root included).
MAX_CHAIN = 8
#: :attr:`SourcedCertificate.source` of a certificate from the user's CA bundle.
FROM_BUNDLE = "CA bundle"
#: :attr:`SourcedCertificate.source` of the certificate being verified.
FROM_LEAF = "EK certificate"


@dataclass(frozen=True)
class SourcedCertificate:
    """A certificate and where it came from (``CA bundle``, ``NV 0x01c00100``, a URL)."""

    certificate: x509.Certificate
    source: str


class IssuerFetcher(Protocol):
    """Gives :func:`build_path` a missing issuer (:class:`~cloud_sdk.tpm_ek_fetch.Fetcher`)."""

    def ca_issuers(self, cert: x509.Certificate) -> list[SourcedCertificate]: ...


@dataclass
class CertificatePath:
    """Leaf-first certificates of a path and the source of each."""

    certificates: list[x509.Certificate] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def top(self) -> x509.Certificate:
        return self.certificates[-1]

    @property
    def ends_self_issued(self) -> bool:
        """The last certificate is self-issued (a root), or the leaf issued itself."""
        return self.top.subject == self.top.issuer


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s name and key signed ``cert``."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _pool(bundle: Sequence[x509.Certificate], extra: Iterable[SourcedCertificate]
          ) -> list[SourcedCertificate]:
    """Bundle certificates first, then ``extra``; one entry per certificate."""
    seen: set[str] = set()
    out: list[SourcedCertificate] = []
    for s in [SourcedCertificate(c, FROM_BUNDLE) for c in bundle] + list(extra):
        fp = fingerprint(s.certificate)
        if fp not in seen:
            seen.add(fp)
            out.append(s)
    return out


def _extend(path: list[SourcedCertificate], pool: list[SourcedCertificate], roots: set[str]
            ) -> list[SourcedCertificate]:
    cur = path[-1].certificate
    if (len(path) > 1 and cur.subject == cur.issuer) or len(path) >= MAX_CHAIN:
        return path
    used = {fingerprint(p.certificate) for p in path}
    named = [s for s in pool if s.certificate.subject == cur.issuer
             and fingerprint(s.certificate) not in used]
    signed = [s for s in named if issued_by(cur, s.certificate)]
    best = path
    for s in signed or named:
        got = _extend([*path, s], pool, roots)
        if _anchored(got, roots):
            return got
        if best is path:
            best = got
    return best


def _anchored(path: list[SourcedCertificate], roots: set[str]) -> bool:
    top = path[-1].certificate
    return top.subject == top.issuer and fingerprint(top) in roots


def build_path(cert: x509.Certificate, bundle: Sequence[x509.Certificate],
               intermediates: Iterable[SourcedCertificate] = (),
               fetcher: IssuerFetcher | None = None) -> CertificatePath:
    """``cert`` and its issuers, leaf first, up to a self-issued certificate or a gap.

    Issuers are taken from ``bundle`` and the untrusted ``intermediates``;
    with ``fetcher``, a path that stops at a gap is extended with what the
    last certificate's caIssuers URLs give, until it reaches a root or nothing new comes.
    """
    pool = _pool(bundle, intermediates)
    roots = {fingerprint(c) for c in bundle if c.subject == c.issuer}
    while True:
        found = _extend([SourcedCertificate(cert, FROM_LEAF)], pool, roots)
        top = found[-1].certificate
        if fetcher is None or top.subject == top.issuer or len(found) >= MAX_CHAIN:
            break
        known = {fingerprint(s.certificate) for s in pool}
        new = []
        for s in fetcher.ca_issuers(top):
            if fingerprint(s.certificate) not in known:
                known.add(fingerprint(s.certificate))
                new.append(s)
        if not new:
            break
        pool += new
    return CertificatePath([s.certificate for s in found], [s.source for s in found])
