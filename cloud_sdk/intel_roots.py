"""The pinned trust anchors of Intel's PCK certificate chains.

Every PCK chain in a TDX or SGX ECDSA quote must end in the **Intel SGX Root
CA**. Its certificate is pinned here as PEM text and, independently, by the
SHA-256 fingerprint of its DER; :func:`trusted_roots` refuses to return a
certificate whose fingerprint differs, so an edit of the PEM cannot go
unnoticed. Nothing here is ever taken from a quote.

Production root (the default anchor): subject and issuer
``CN=Intel SGX Root CA, O=Intel Corporation, L=Santa Clara, ST=CA, C=US``,
serial 0x22650cd65a9d3489f383b49552bf501b392706ac, P-256, valid
2018-05-21 10:45:10 UTC to 2049-12-31 23:59:59 UTC, self-signed, CA with
pathLen 1, CRL at https://certificates.trustedservices.intel.com/IntelSGXRootCA.der.
PEM text as published by Intel
(https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.pem)
and embedded with identical text in several independent open-source DCAP
verifiers (Python, Rust and TypeScript ones, and PCS issuer chains recorded in
public test data); it was checked here to be self-signed (its signature
verifies with its own key), P-256, CN=Intel SGX Root CA, and to have the
fingerprint below (tests/sdk/test_quote.py repeats these checks).

Sandbox root (opt-in only): Intel's pre-production PCS ("SBX",
https://sbx-certificates.trustedservices.intel.com/IntelSGXRootCA.der) issues
PCK chains under a *different* root with the same subject name: serial
0xe9e8445253365c4b189a11fc43182ca5dc208048, valid 2019-10-31 09:49:21 UTC to
2049-12-31 23:59:59 UTC. Quotes from pre-production platforms (for example
the cc-trusted-api test quote in ../shared/fixtures) chain to it. It proves
nothing about production hardware, so it is trusted only when a caller asks
(``include_sandbox=True``, ``cvmchain quote verify --trust-sandbox-root``).
Its PEM is the one in Intel's own BSD-3 test data (an SBX
``SGX-PCK-Certificate-Issuer-Chain`` response) and matches the chain in the
fixture quote byte for byte.
"""

from cryptography import x509
from cryptography.hazmat.primitives import hashes

INTEL_SGX_ROOT_CA_PEM = b"""-----BEGIN CERTIFICATE-----
MIICjzCCAjSgAwIBAgIUImUM1lqdNInzg7SVUr9QGzknBqwwCgYIKoZIzj0EAwIw
aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv
cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ
BgNVBAYTAlVTMB4XDTE4MDUyMTEwNDUxMFoXDTQ5MTIzMTIzNTk1OVowaDEaMBgG
A1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENvcnBvcmF0
aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJBgNVBAYT
AlVTMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC6nEwMDIYZOj/iPWsCzaEKi7
1OiOSLRFhWGjbnBVJfVnkY4u3IjkDYYL0MxO4mqsyYjlBalTVYxFP2sJBK5zlKOB
uzCBuDAfBgNVHSMEGDAWgBQiZQzWWp00ifODtJVSv1AbOScGrDBSBgNVHR8ESzBJ
MEegRaBDhkFodHRwczovL2NlcnRpZmljYXRlcy50cnVzdGVkc2VydmljZXMuaW50
ZWwuY29tL0ludGVsU0dYUm9vdENBLmRlcjAdBgNVHQ4EFgQUImUM1lqdNInzg7SV
Ur9QGzknBqwwDgYDVR0PAQH/BAQDAgEGMBIGA1UdEwEB/wQIMAYBAf8CAQEwCgYI
KoZIzj0EAwIDSQAwRgIhAOW/5QkR+S9CiSDcNoowLuPRLsWGf/Yi7GSX94BgwTwg
AiEA4J0lrHoMs+Xo5o/sX6O9QWxHRAvZUGOdRQ7cvqRXaqI=
-----END CERTIFICATE-----
"""

#: SHA-256 of the DER of the production Intel SGX Root CA
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

INTEL_SGX_SBX_ROOT_CA_PEM = b"""-----BEGIN CERTIFICATE-----
MIIClDCCAjmgAwIBAgIVAOnoRFJTNlxLGJoR/EMYLKXcIIBIMAoGCCqGSM49BAMC
MGgxGjAYBgNVBAMMEUludGVsIFNHWCBSb290IENBMRowGAYDVQQKDBFJbnRlbCBD
b3Jwb3JhdGlvbjEUMBIGA1UEBwwLU2FudGEgQ2xhcmExCzAJBgNVBAgMAkNBMQsw
CQYDVQQGEwJVUzAeFw0xOTEwMzEwOTQ5MjFaFw00OTEyMzEyMzU5NTlaMGgxGjAY
BgNVBAMMEUludGVsIFNHWCBSb290IENBMRowGAYDVQQKDBFJbnRlbCBDb3Jwb3Jh
dGlvbjEUMBIGA1UEBwwLU2FudGEgQ2xhcmExCzAJBgNVBAgMAkNBMQswCQYDVQQG
EwJVUzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABE/6D/1WHNrWwPmNMIyBKMW5
J6JzMsjo6xP2vkK1cdZGb1PGRP/C/8ECgiDkmklmzwLzLi+000m7LLrtKJA3oC2j
gb8wgbwwHwYDVR0jBBgwFoAU6ehEUlM2XEsYmhH8QxgspdwggEgwVgYDVR0fBE8w
TTBLoEmgR4ZFaHR0cHM6Ly9zYngtY2VydGlmaWNhdGVzLnRydXN0ZWRzZXJ2aWNl
cy5pbnRlbC5jb20vSW50ZWxTR1hSb290Q0EuZGVyMB0GA1UdDgQWBBTp6ERSUzZc
SxiaEfxDGCyl3CCASDAOBgNVHQ8BAf8EBAMCAQYwEgYDVR0TAQH/BAgwBgEB/wIB
ATAKBggqhkjOPQQDAgNJADBGAiEAzw9zdUiUHPMUd0C4mx41jlFZkrM3y5f1lgnV
O7FbjOoCIQCoGtUmT4cXt7V+ySHbJ8Hob9AanpvXNH1ER+/gZF+opQ==
-----END CERTIFICATE-----"""

#: SHA-256 of the DER of Intel's pre-production (SBX) SGX Root CA
INTEL_SGX_SBX_ROOT_CA_SHA256 = "e3f49e858865d54dde1d2f778817a355c470133165ddce1e488bec66f8f9ecf3"

#: display names of the pinned roots, by fingerprint
ROOT_NAMES = {
    INTEL_SGX_ROOT_CA_SHA256: "Intel SGX Root CA (production)",
    INTEL_SGX_SBX_ROOT_CA_SHA256: "Intel SGX Root CA (pre-production SBX)",
}


class PinnedRootError(RuntimeError):
    """A pinned PEM does not have its pinned fingerprint: the source was altered."""


def _load(pem: bytes, fingerprint: str) -> x509.Certificate:
    cert = x509.load_pem_x509_certificate(pem)
    got = cert.fingerprint(hashes.SHA256()).hex()
    if got != fingerprint:
        raise PinnedRootError("pinned root has SHA-256 %s, expected %s" % (got, fingerprint))
    return cert


def intel_root_ca() -> x509.Certificate:
    """The production Intel SGX Root CA, checked against its pinned fingerprint."""
    return _load(INTEL_SGX_ROOT_CA_PEM, INTEL_SGX_ROOT_CA_SHA256)


def intel_sbx_root_ca() -> x509.Certificate:
    """Intel's pre-production (SBX) SGX Root CA, checked against its pinned fingerprint."""
    return _load(INTEL_SGX_SBX_ROOT_CA_PEM, INTEL_SGX_SBX_ROOT_CA_SHA256)


def trusted_roots(include_sandbox: bool = False) -> list[x509.Certificate]:
    """The anchors a PCK chain may end in: production, plus SBX when asked."""
    roots = [intel_root_ca()]
    if include_sandbox:
        roots.append(intel_sbx_root_ca())
    return roots
