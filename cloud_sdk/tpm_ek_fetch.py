"""Fetch a missing EK CA certificate or CRL over HTTP (``cvmchain quote verify --ek-fetch``).

Off unless asked for. :class:`Fetcher` follows a certificate's Authority
Information Access ``caIssuers`` URLs (RFC 5280 §4.2.2.1: a DER certificate,
or a "certs-only" PKCS#7 bundle; PEM accepted too) and its CRL Distribution
Points (§4.2.1.13: a DER CRL; PEM accepted too). Only ``http`` and ``https``
URLs are opened (redirects too, at most :data:`MAX_REDIRECTS`), each with a
timeout and a size cap, and at most :data:`MAX_FETCHES` per verification.
What is fetched is kept in memory for the one verification and never written
to disk. Everything fetched is untrusted: a certificate can only complete a
path that still ends in a root of the user's CA bundle, a CRL counts only when
its issuer's key signed it. A failure is a warning (``EK_FETCH_FAILED``), never
an exception: the checks that needed the missing piece fail on their own.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from cloud_sdk.errors import InputError
from cloud_sdk.tpm_ek_path import SourcedCertificate
from cloud_sdk.tpm_ek_revocation import SourcedCrl, parse_crls

#: Seconds to wait for a connection or a read.
TIMEOUT = 10.0
#: Largest response body accepted (bytes).
MAX_BYTES = 1 << 20
#: Most URLs one :class:`Fetcher` opens.
MAX_FETCHES = 16
MAX_REDIRECTS = 5
SCHEMES = ("http", "https")


class FetchError(InputError):
    """A URL could not be fetched or did not hold what it should; names the URL."""


class _Redirects(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Any:
        if newurl.split(":", 1)[0].lower() not in SCHEMES:
            raise urllib.error.HTTPError(newurl, code, "redirect to a non-HTTP URL refused",
                                         headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _uris(names: Any) -> list[str]:
    return [n.value for n in names or () if isinstance(n, x509.UniformResourceIdentifier)]


def ca_issuer_urls(cert: x509.Certificate) -> list[str]:
    """The caIssuers URIs of ``cert``'s Authority Information Access extension."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return _uris([d.access_location for d in aia
                  if d.access_method == x509.AuthorityInformationAccessOID.CA_ISSUERS])


def crl_urls(cert: x509.Certificate) -> list[str]:
    """The full-name URIs of ``cert``'s CRL Distribution Points."""
    try:
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    return [u for dp in cdp for u in _uris(dp.full_name)]


def parse_certificates(data: bytes, source: str) -> list[x509.Certificate]:
    """Certificates of a caIssuers response: DER, PEM (one or more) or PKCS#7 (DER or PEM)."""
    loaders: list[Any] = []
    if b"-----BEGIN PKCS7" in data:
        loaders = [pkcs7.load_pem_pkcs7_certificates]
    elif b"-----BEGIN" in data:
        loaders = [x509.load_pem_x509_certificates]
    else:
        loaders = [lambda d: [x509.load_der_x509_certificate(d)],
                   pkcs7.load_der_pkcs7_certificates]
    last: Exception | None = None
    for load in loaders:
        try:
            certs = list(load(data))
        except ValueError as e:
            last = e
            continue
        if certs:
            return certs
    raise FetchError("%s: neither a certificate nor a PKCS#7 bundle of certificates%s"
                     % (source, ": %s" % last if last else ""))


class Fetcher:
    """Fetches caIssuers certificates and CRLs over HTTP; failures go to :attr:`warnings`."""

    def __init__(self, timeout: float = TIMEOUT, max_bytes: int = MAX_BYTES,
                 max_fetches: int = MAX_FETCHES) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_fetches = max_fetches
        self.warnings: list[dict[str, str]] = []
        self.fetched: list[str] = []
        self._cache: dict[str, bytes | FetchError] = {}
        self._opener = urllib.request.build_opener(_Redirects())

    def get(self, url: str) -> bytes:
        """The body at ``url``; :class:`FetchError` (cached for the next call) otherwise."""
        got = self._cache.get(url)
        if got is None:
            try:
                got = self._get(url)
            except FetchError as e:
                got = e
            self._cache[url] = got
        if isinstance(got, FetchError):
            raise got
        return got

    def _get(self, url: str) -> bytes:
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme not in SCHEMES:
            raise FetchError("%s: only http and https URLs are fetched" % url)
        if len(self.fetched) >= self.max_fetches:
            raise FetchError("%s: not fetched, %d URLs already were (the limit)"
                             % (url, self.max_fetches))
        self.fetched.append(url)
        try:
            with self._opener.open(url, timeout=self.timeout) as r:
                body = r.read(self.max_bytes + 1)
        except urllib.error.HTTPError as e:
            raise FetchError("%s: HTTP %s %s" % (url, e.code, e.reason)) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise FetchError("%s: %s" % (url, reason)) from None
        if len(body) > self.max_bytes:
            raise FetchError("%s: larger than %d bytes" % (url, self.max_bytes))
        return bytes(body)

    def _warn(self, message: str) -> None:
        self.warnings.append({"code": "EK_FETCH_FAILED", "message": message})

    def ca_issuers(self, cert: x509.Certificate) -> list[SourcedCertificate]:
        """The certificates ``cert``'s caIssuers URLs give (a warning for each that fails)."""
        out: list[SourcedCertificate] = []
        urls = ca_issuer_urls(cert)
        if not urls:
            self._warn("%s names no caIssuers URL: its issuer %s cannot be fetched" % (
                cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()))
        for url in urls:
            try:
                out += [SourcedCertificate(c, url)
                        for c in parse_certificates(self.get(url), url)]
            except FetchError as e:
                self._warn(str(e))
        return out

    def crls(self, cert: x509.Certificate) -> list[SourcedCrl]:
        """The CRLs ``cert``'s distribution points give (a warning for each that fails)."""
        out: list[SourcedCrl] = []
        for url in crl_urls(cert):
            try:
                out += parse_crls(self.get(url), url)
            except InputError as e:
                self._warn(str(e))
        return out
