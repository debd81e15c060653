"""TDX quote verification: the real cc-trusted-api quote, a synthetic PKI with collateral,
property tests of the parser, and the ``cvmchain quote`` CLI.

Expected values come from the fixture's expected.json, from the certificates
themselves (read with ``cryptography``), from DER bytes located by hand, or
from keys and documents this test creates; never from the code under test.
"""

import datetime
import hashlib
import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sdk.cli import main
from cloud_sdk.intel_roots import (
    INTEL_SGX_ROOT_CA_PEM,
    INTEL_SGX_ROOT_CA_SHA256,
    INTEL_SGX_SBX_ROOT_CA_PEM,
    INTEL_SGX_SBX_ROOT_CA_SHA256,
    trusted_roots,
)
from cloud_sdk.quote_verify import (
    Collateral,
    QuoteVerification,
    QuoteVerificationError,
    load_collateral,
    parse_sgx_extension,
    signed_json,
    verify_chain,
    verify_quote,
)
from shared_spec.errors import SpecError
from shared_spec.tdx_quote import (
    BODY_TYPE_TD15,
    CERT_PCK_CHAIN,
    CertificationData,
    QeReport,
    TdReportBody,
    TdxQuote,
    parse_quote,
)
from tests.fixtures import fixture

UTC = datetime.timezone.utc
SGX_OID = "1.2.840.113741.1.13.1"


def _codes(res: Any) -> list[str]:
    return [e["code"] for e in res.errors]


# ---------------------------------------------------------------------------
# the pinned roots


@pytest.mark.parametrize("pem,pin", [(INTEL_SGX_ROOT_CA_PEM, INTEL_SGX_ROOT_CA_SHA256),
                                     (INTEL_SGX_SBX_ROOT_CA_PEM, INTEL_SGX_SBX_ROOT_CA_SHA256)])
def test_pinned_roots_are_self_signed_p256_intel_roots(pem: bytes, pin: str) -> None:
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest() == pin
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        "Intel SGX Root CA"
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    cert.verify_directly_issued_by(cert)  # self-signed: its own key verifies its signature
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_trusted_roots_default_is_production_only() -> None:
    fps = [c.fingerprint(hashes.SHA256()).hex() for c in trusted_roots()]
    assert fps == [INTEL_SGX_ROOT_CA_SHA256]
    assert len(trusted_roots(include_sandbox=True)) == 2


# ---------------------------------------------------------------------------
# the real quote


def _fixture_bytes() -> bytes:
    return fixture("tdx-cc-trusted-api", "quote.bin").read_bytes()


def _fixture_chain() -> list[x509.Certificate]:
    pem = parse_quote(_fixture_bytes()).pck_chain_pem.rstrip(b"\x00")
    return x509.load_pem_x509_certificates(pem)


def _inside_validity() -> datetime.datetime:
    certs = _fixture_chain()
    start = max(c.not_valid_before_utc for c in certs)
    assert start + datetime.timedelta(days=1) < min(c.not_valid_after_utc for c in certs)
    return start + datetime.timedelta(days=1)


def test_fixture_quote_fields_and_round_trip() -> None:
    expected = json.loads(fixture("tdx-cc-trusted-api", "expected.json").read_text())["quote"]
    data = _fixture_bytes()
    q = parse_quote(data)
    d = q.to_dict()
    assert q.encode() == data
    assert d["version"] == expected["version"] and d["att_key_type"] == expected["att_key_type"]
    assert d["tee_type"] == expected["tee_type"]
    assert d["mrtd"] == expected["mrtd"] and d["rtmrs"] == expected["rtmr"]
    assert d["report_data"] == expected["reportdata"]
    assert d["td_attributes"] == expected["td_attributes"] and d["xfam"] == expected["xfam"]
    assert d["certification_data_type"] == 6 and d["inner_certification_data_type"] == 5


def test_fixture_chain_ends_in_the_sandbox_root_not_production() -> None:
    root = _fixture_chain()[-1]
    assert root.fingerprint(hashes.SHA256()).hex() == INTEL_SGX_SBX_ROOT_CA_SHA256
    assert root.public_bytes(serialization.Encoding.DER) == x509.load_pem_x509_certificate(
        INTEL_SGX_SBX_ROOT_CA_PEM).public_bytes(serialization.Encoding.DER)
    assert root.fingerprint(hashes.SHA256()).hex() != INTEL_SGX_ROOT_CA_SHA256


def test_fixture_quote_verifies_signature_qe_report_and_sandbox_chain() -> None:
    q = parse_quote(_fixture_bytes())
    when = _inside_validity()
    res = verify_quote(q, at=when, anchors=trusted_roots(include_sandbox=True))
    assert res.signature_valid and res.qe_report_valid and res.pck_chain_valid, res.errors
    assert res.errors == [] and res.tcb_status == "unknown (no collateral)" and res.ok
    assert [c["subject"].split("CN=")[1].split(",")[0] for c in res.chain] == [
        "Intel SGX PCK Certificate", "Intel SGX PCK Platform CA", "Intel SGX Root CA"]
    # production anchors only: everything but the root holds
    res = verify_quote(q, at=when)
    assert res.signature_valid and res.qe_report_valid and not res.pck_chain_valid
    assert _codes(res) == ["PCK_CHAIN_ROOT_NOT_PINNED"] and not res.ok


def test_fixture_chain_outside_its_validity() -> None:
    leaf = _fixture_chain()[0]
    res = verify_quote(parse_quote(_fixture_bytes()),
                       at=leaf.not_valid_after_utc + datetime.timedelta(seconds=1),
                       anchors=trusted_roots(include_sandbox=True))
    assert not res.pck_chain_valid and "PCK_CHAIN_EXPIRED" in _codes(res)


def test_fixture_pck_extension_matches_the_der() -> None:
    leaf = _fixture_chain()[0]
    ext = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_OID)).value
    der = ext.value  # type: ignore[attr-defined]
    # OID 1.2.840.113741.1.13.1.4 (FMSPC) then OCTET STRING of 6 bytes, located by hand
    marker = bytes.fromhex("060a2a864886f84d010d0104" + "0406")
    at = der.index(marker) + len(marker)
    decoded = parse_sgx_extension(der)
    assert decoded["fmspc"] == der[at:at + 6]
    assert len(decoded["tcb"]["comp_svn"]) == 16 and len(decoded["tcb"]["cpusvn"]) == 16
    assert bytes(decoded["tcb"]["comp_svn"]) == decoded["tcb"]["cpusvn"]  # same 16 SVNs


@pytest.mark.parametrize("offset", [48, 48 + 136, 48 + 328, 48 + 520, 48 + 583, 0, 30])
def test_modified_header_or_body_fails_the_signature(offset: int) -> None:
    data = bytearray(_fixture_bytes())
    data[offset] ^= 1
    if offset == 0:
        data[offset] ^= 1  # the version byte would make the quote unparsable
        data[offset + 8] ^= 1
    res = verify_quote(parse_quote(bytes(data)), at=_inside_validity(),
                       anchors=trusted_roots(include_sandbox=True))
    assert not res.signature_valid and not res.ok
    assert _codes(res) == ["QUOTE_SIGNATURE_INVALID"]
    assert res.qe_report_valid and res.pck_chain_valid


def test_modified_qe_report_fails_its_signature() -> None:
    data = bytearray(_fixture_bytes())
    data[636 + 128 + 6 + 100] ^= 1  # inside the QE report
    res = verify_quote(parse_quote(bytes(data)), at=_inside_validity(),
                       anchors=trusted_roots(include_sandbox=True))
    assert res.signature_valid and not res.qe_report_valid
    assert _codes(res) == ["QE_REPORT_SIGNATURE_INVALID"]


def test_other_attestation_key_breaks_signature_and_qe_binding() -> None:
    q = parse_quote(_fixture_bytes())
    pub = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    q.attestation_key = pub.x.to_bytes(32, "big") + pub.y.to_bytes(32, "big")
    res = verify_quote(q, at=_inside_validity(), anchors=trusted_roots(include_sandbox=True))
    assert _codes(res) == ["QUOTE_SIGNATURE_INVALID", "QE_REPORT_BINDING"]


def test_nonce_and_expected_report_data() -> None:
    q = parse_quote(_fixture_bytes())
    rd = bytes(q.body.report_data)
    assert verify_quote(q, expected_report_data=rd).report_data_valid
    res = verify_quote(q, nonce=rd[:16])
    assert res.report_data_valid is False and "REPORT_DATA_MISMATCH" in _codes(res)
    res = verify_quote(q, nonce=rd)
    assert res.report_data_valid and res.report_data_binding == "raw"
    res = verify_quote(q, expected_report_data=bytes(64))
    assert res.report_data_valid is False
    with pytest.raises(QuoteVerificationError):
        verify_quote(q, expected_report_data=b"short")
    with pytest.raises(QuoteVerificationError):
        verify_quote(q, nonce=b"")


# ---------------------------------------------------------------------------
# a synthetic PKI: root -> platform CA -> PCK leaf, root -> TCB signing


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytes([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return _der(0x06, out)


def _der_int(v: int) -> bytes:
    return _der(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def _sgx_extension(comp: list[int], pcesvn: int, fmspc: bytes, pceid: bytes) -> bytes:
    def item(sub: str, value: bytes) -> bytes:
        return _der(0x30, _der_oid(SGX_OID + "." + sub) + value)

    tcb = b"".join(item("2.%d" % (i + 1), _der_int(v)) for i, v in enumerate(comp))
    tcb += item("2.17", _der_int(pcesvn)) + item("2.18", _der(0x04, bytes(comp)))
    return _der(0x30, item("1", _der(0x04, b"\x11" * 16)) + item("2", _der(0x30, tcb))
                + item("3", _der(0x04, pceid)) + item("4", _der(0x04, fmspc))
                + item("5", _der(0x0A, b"\x00")))


NOW = datetime.datetime(2025, 6, 1, tzinfo=UTC)
FMSPC = bytes.fromhex("00906ed50000")
PCEID = b"\x00\x00"
PCK_COMP = [3, 3, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]
PCK_PCESVN = 13
TEE_TCB_SVN = bytes([5, 0, 2] + [0] * 13)
QE_MRSIGNER = b"\xdc" * 32


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test")])


def _cert(subject: str, key: Any, issuer: str, issuer_key: Any, ca: bool,
          path_len: int | None = None, extra: bytes | None = None,
          days: int = 3650) -> x509.Certificate:
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - datetime.timedelta(days=365))
         .not_valid_after(NOW + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), critical=True))
    if extra is not None:
        b = b.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_OID), extra),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _raw_sign(key: Any, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


class Pki:
    """Keys and certificates of a made-up Intel-like hierarchy."""

    def __init__(self, comp: list[int] = PCK_COMP) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.pck_key = ec.generate_private_key(ec.SECP256R1())
        self.tcb_key = ec.generate_private_key(ec.SECP256R1())
        self.att_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _cert("Test Root CA", self.root_key, "Test Root CA", self.root_key, True, 1)
        self.ca = _cert("Test PCK Platform CA", self.ca_key, "Test Root CA", self.root_key,
                        True, 0)
        self.pck = _cert("Test PCK Certificate", self.pck_key, "Test PCK Platform CA",
                         self.ca_key, False, extra=_sgx_extension(comp, PCK_PCESVN, FMSPC, PCEID))
        self.tcb = _cert("Test TCB Signing", self.tcb_key, "Test Root CA", self.root_key, False)

    def quote(self, report_data: bytes = bytes(64), version: int = 4, td15: bool = False,
              tee_tcb_svn: bytes = TEE_TCB_SVN, qe_isvsvn: int = 8) -> bytes:
        q = TdxQuote()
        q.version = version
        q.body_type = BODY_TYPE_TD15 if td15 else 2
        fields = {"tee_tcb_svn": tee_tcb_svn, "mrtd": b"\x42" * 48, "report_data": report_data}
        if td15:
            fields["mrservicetd"] = b"\x43" * 48
        q.body = TdReportBody(fields, td15)
        pub = self.att_key.public_key().public_numbers()
        q.attestation_key = pub.x.to_bytes(32, "big") + pub.y.to_bytes(32, "big")
        auth = bytes(range(32))
        bound = hashlib.sha256(q.attestation_key + auth).digest() + bytes(32)
        qe = QeReport({"mrsigner": QE_MRSIGNER, "isvprodid": struct.pack("<H", 2),
                       "isvsvn": struct.pack("<H", qe_isvsvn), "report_data": bound}).encode()
        q.certification = CertificationData.qe_report_data(
            qe, _raw_sign(self.pck_key, qe), auth,
            CertificationData(CERT_PCK_CHAIN, _pem(self.pck, self.ca, self.root) + b"\x00"))
        q.signature = _raw_sign(self.att_key, q.signed_bytes())
        return q.encode()

    def signed(self, member: str, value: dict[str, Any]) -> bytes:
        text = json.dumps(value, separators=(",", ":"))
        sig = _raw_sign(self.tcb_key, text.encode())
        return ('{"%s":%s,"signature":"%s"}' % (member, text, sig.hex())).encode()

    def crl(self, issuer: x509.Certificate, key: Any, revoked: Sequence[int] = ()) -> bytes:
        b = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
             .last_update(NOW - datetime.timedelta(days=1))
             .next_update(NOW + datetime.timedelta(days=30)))
        for serial in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(NOW - datetime.timedelta(days=2)).build())
        return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _components(svns: list[int]) -> list[dict[str, int]]:
    return [{"svn": v} for v in svns]


def _tcb_info(levels: list[tuple[list[int], int, list[int], str]],
              **over: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "id": "TDX", "version": 3, "issueDate": "2025-05-01T00:00:00Z",
        "nextUpdate": "2025-07-01T00:00:00Z", "fmspc": FMSPC.hex(), "pceId": PCEID.hex(),
        "tcbType": 0, "tcbEvaluationDataNumber": 17,
        "tdxModule": {"mrsigner": "00" * 48, "attributes": "0000000000000000",
                      "attributesMask": "FFFFFFFFFFFFFFFF"},
        "tdxModuleIdentities": [{
            "id": "TDX_01", "mrsigner": "00" * 48, "attributes": "0000000000000000",
            "attributesMask": "FFFFFFFFFFFFFFFF",
            "tcbLevels": [{"tcb": {"isvsvn": 4}, "tcbDate": "2024-03-13T00:00:00Z",
                           "tcbStatus": "UpToDate"},
                          {"tcb": {"isvsvn": 2}, "tcbDate": "2023-08-09T00:00:00Z",
                           "tcbStatus": "OutOfDate"}]}],
        "tcbLevels": [{"tcb": {"sgxtcbcomponents": _components(sgx), "pcesvn": pce,
                               "tdxtcbcomponents": _components(tdx)},
                       "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": status}
                      for sgx, pce, tdx, status in levels],
    }
    info.update(over)
    return info


LEVELS = [
    (PCK_COMP, 13, [5, 0, 2] + [0] * 13, "UpToDate"),
    ([2, 2, 2, 2, 2, 1, 0, 2] + [0] * 8, 11, [3, 0, 2] + [0] * 13, "OutOfDate"),
]


def _qe_identity(**over: Any) -> dict[str, Any]:
    ident: dict[str, Any] = {
        "id": "TD_QE", "version": 2, "issueDate": "2025-05-01T00:00:00Z",
        "nextUpdate": "2025-07-01T00:00:00Z", "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF", "attributes": "00" * 16, "attributesMask": "FF" * 16,
        "mrsigner": QE_MRSIGNER.hex().upper(), "isvprodid": 2,
        "tcbLevels": [{"tcb": {"isvsvn": 4}, "tcbDate": "2024-03-13T00:00:00Z",
                       "tcbStatus": "UpToDate"},
                      {"tcb": {"isvsvn": 0}, "tcbDate": "2021-11-10T00:00:00Z",
                       "tcbStatus": "OutOfDate"}]}
    ident.update(over)
    return ident


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def _collateral(pki: Pki, tcb_info: dict[str, Any] | None = None,
                qe_identity: dict[str, Any] | None = None, revoked: Sequence[int] = (),
                tcb_body: bytes | None = None) -> Collateral:
    chain = _pem(pki.tcb, pki.root)
    col = Collateral()
    body = tcb_body or pki.signed("tcbInfo", tcb_info or _tcb_info(LEVELS))
    col.tcb_info = signed_json(body, "tcbInfo", chain, "tcb_info.json")
    col.qe_identity = signed_json(pki.signed("enclaveIdentity", qe_identity or _qe_identity()),
                                  "enclaveIdentity", chain, "qe_identity.json")
    col.root_ca_crl = x509.load_der_x509_crl(pki.crl(pki.root, pki.root_key))
    col.pck_crl = x509.load_der_x509_crl(pki.crl(pki.ca, pki.ca_key, revoked))
    return col


def _verify(pki: Pki, data: bytes, col: Collateral | None = None, **kw: Any) -> Any:
    return verify_quote(parse_quote(data), at=NOW, collateral=col, anchors=[pki.root], **kw)


def test_synthetic_quote_passes_everything(pki: Pki) -> None:
    res = _verify(pki, pki.quote(), _collateral(pki))
    assert res.errors == []
    assert res.signature_valid and res.qe_report_valid and res.pck_chain_valid
    assert res.collateral_valid and res.tcb_status == "UpToDate" and res.ok
    assert res.pck["fmspc"] == FMSPC.hex() and res.pck["comp_svn"] == PCK_COMP
    assert res.pck["pcesvn"] == PCK_PCESVN and res.tcb["qe_tcb_status"] == "UpToDate"


def test_chain_rules_basic_constraints_and_path_length(pki: Pki) -> None:
    k1 = ec.generate_private_key(ec.SECP256R1())
    k2 = ec.generate_private_key(ec.SECP256R1())
    not_ca = _cert("Not A CA", k1, "Test Root CA", pki.root_key, False)
    leaf = _cert("Leaf", k2, "Not A CA", k1, False)
    res = QuoteVerification()
    assert not verify_chain([leaf, not_ca, pki.root], [pki.root], NOW, res, "X")
    assert _codes(res) == ["X_NOT_CA"]
    # the platform CA has pathLen 0 (no CA below it), the root pathLen 1 (one CA below)
    sub = _cert("Sub CA", k1, "Test PCK Platform CA", pki.ca_key, True)
    leaf = _cert("Leaf", k2, "Sub CA", k1, False)
    res = QuoteVerification()
    assert not verify_chain([leaf, sub, pki.ca, pki.root], [pki.root], NOW, res, "X")
    assert _codes(res) == ["X_PATH_LENGTH", "X_PATH_LENGTH"]
    res = QuoteVerification()
    assert verify_chain([pki.pck, pki.ca, pki.root], [pki.root], NOW, res, "X") and not res.errors


def test_synthetic_quote_against_intel_roots_fails_the_pin(pki: Pki) -> None:
    res = verify_quote(parse_quote(pki.quote()), at=NOW)
    assert res.signature_valid and res.qe_report_valid and not res.pck_chain_valid
    assert "PCK_CHAIN_ROOT_NOT_PINNED" in _codes(res)


def test_v5_td15_quote_signature_covers_the_descriptor(pki: Pki) -> None:
    data = pki.quote(version=5, td15=True)
    q = parse_quote(data)
    assert q.encode() == data and q.body.is_td15
    assert _verify(pki, data).signature_valid
    bad = bytearray(data)
    bad[48 + 6 + 600] ^= 1  # mrservicetd, only in the TD 1.5 body
    res = _verify(pki, bytes(bad))
    assert not res.signature_valid and _codes(res) == ["QUOTE_SIGNATURE_INVALID"]


def test_sha512_nonce_binding(pki: Pki) -> None:
    nonce = b"verifier challenge 0001"
    res = _verify(pki, pki.quote(hashlib.sha512(nonce).digest()), nonce=nonce)
    assert res.report_data_valid and res.report_data_binding == "sha512"
    res = _verify(pki, pki.quote(nonce + bytes(64 - len(nonce))), nonce=nonce)
    assert res.report_data_binding == "raw"
    res = _verify(pki, pki.quote(), nonce=nonce)
    assert res.report_data_valid is False and not res.ok


def test_lower_platform_tcb_selects_a_lower_level(pki: Pki) -> None:
    # TDX module SVN 3 < 5: only the second level matches
    res = _verify(pki, pki.quote(tee_tcb_svn=bytes([3, 0, 2] + [0] * 13)), _collateral(pki))
    assert res.tcb_status == "OutOfDate" and not res.ok
    assert res.passed(("UpToDate", "OutOfDate"))
    res = _verify(pki, pki.quote(tee_tcb_svn=bytes([1, 0, 2] + [0] * 13)), _collateral(pki))
    assert res.tcb_status == "TCBNotSupported" and "TCB_NOT_SUPPORTED" in _codes(res)


def test_tdx_module_identity_when_major_version_is_set(pki: Pki) -> None:
    # TEE_TCB_SVN[1] = 1: module identity TDX_01 by ISVSVN = TEE_TCB_SVN[0], components 0-1 skipped
    res = _verify(pki, pki.quote(tee_tcb_svn=bytes([3, 1, 2] + [0] * 13)), _collateral(pki))
    assert res.tcb_status == "OutOfDate" and res.tcb["module_status"] == "OutOfDate"
    res = _verify(pki, pki.quote(tee_tcb_svn=bytes([4, 1, 2] + [0] * 13)), _collateral(pki))
    assert res.tcb_status == "UpToDate"
    res = _verify(pki, pki.quote(tee_tcb_svn=bytes([4, 2, 2] + [0] * 13)), _collateral(pki))
    assert res.tcb_status == "TDXModuleMismatch" and "TDX_MODULE_MISMATCH" in _codes(res)


def test_qe_identity_out_of_date_converges(pki: Pki) -> None:
    res = _verify(pki, pki.quote(qe_isvsvn=2), _collateral(pki))
    assert res.tcb["qe_tcb_status"] == "OutOfDate" and res.tcb_status == "OutOfDate"
    res = _verify(pki, pki.quote(), _collateral(pki, qe_identity=_qe_identity(isvprodid=1)))
    assert res.tcb_status == "QEIdentityMismatch" and "QE_IDENTITY_MISMATCH" in _codes(res)


def test_revoked_pck_certificate(pki: Pki) -> None:
    res = _verify(pki, pki.quote(), _collateral(pki, revoked=[pki.pck.serial_number]))
    assert res.tcb_status == "Revoked" and not res.pck_chain_valid and not res.ok
    assert "CERTIFICATE_REVOKED" in _codes(res)


def test_collateral_problems_are_findings(pki: Pki) -> None:
    # signature over different bytes
    body = pki.signed("tcbInfo", _tcb_info(LEVELS)).replace(b'"version":3', b'"version": 3')
    res = _verify(pki, pki.quote(), _collateral(pki, tcb_body=body))
    assert "TCB_INFO_SIGNATURE" in _codes(res) and res.collateral_valid is False
    assert res.tcb_status == "unknown (collateral not trusted)" and not res.ok
    # out of date collateral
    old = _tcb_info(LEVELS, nextUpdate="2025-05-15T00:00:00Z")
    res = _verify(pki, pki.quote(), _collateral(pki, tcb_info=old))
    assert "TCB_INFO_EXPIRED" in _codes(res) and not res.ok
    # collateral of another platform
    other = _tcb_info(LEVELS, fmspc="00906ed50001")
    res = _verify(pki, pki.quote(), _collateral(pki, tcb_info=other))
    assert res.tcb_status == "TCBInfoMismatch" and "TCB_INFO_MISMATCH" in _codes(res)
    # an SGX TCB info, not TDX
    res = _verify(pki, pki.quote(), _collateral(pki, tcb_info=_tcb_info(LEVELS, id="SGX")))
    assert res.tcb_status == "TCBInfoMismatch"


def test_load_collateral_directory_and_single_file(pki: Pki, tmp_path: Path) -> None:
    d = tmp_path / "pcs"
    d.mkdir()
    (d / "tcb_info.json").write_bytes(pki.signed("tcbInfo", _tcb_info(LEVELS)))
    (d / "tcb_info_issuer_chain.pem").write_bytes(_pem(pki.tcb, pki.root))
    (d / "qe_identity.json").write_bytes(pki.signed("enclaveIdentity", _qe_identity()))
    (d / "qe_identity_issuer_chain.pem").write_bytes(_pem(pki.tcb, pki.root))
    (d / "root_ca_crl.der").write_bytes(pki.crl(pki.root, pki.root_key))
    (d / "pck_crl.der").write_bytes(pki.crl(pki.ca, pki.ca_key))
    res = _verify(pki, pki.quote(), load_collateral(d))
    assert res.errors == [] and res.tcb_status == "UpToDate"

    tcb_text = json.dumps(_tcb_info(LEVELS))
    qe_text = json.dumps(_qe_identity())
    single = tmp_path / "v3"
    single.mkdir()
    (single / "collateral.json").write_text(json.dumps({
        "tcb_info": tcb_text,
        "tcb_info_signature": _raw_sign(pki.tcb_key, tcb_text.encode()).hex(),
        "tcb_info_issuer_chain": _pem(pki.tcb, pki.root).decode(),
        "qe_identity": qe_text,
        "qe_identity_signature": _raw_sign(pki.tcb_key, qe_text.encode()).hex(),
        "qe_identity_issuer_chain": _pem(pki.tcb, pki.root).decode(),
        "root_ca_crl": pki.crl(pki.root, pki.root_key).hex(),
        "pck_crl": pki.crl(pki.ca, pki.ca_key).hex()}))
    res = _verify(pki, pki.quote(), load_collateral(single))
    assert res.errors == [] and res.tcb_status == "UpToDate"


def test_unusable_collateral_raises(tmp_path: Path) -> None:
    with pytest.raises(QuoteVerificationError):
        load_collateral(tmp_path / "absent")
    with pytest.raises(QuoteVerificationError):
        load_collateral(tmp_path)  # no files
    (tmp_path / "tcb_info.json").write_text("{not json")
    (tmp_path / "tcb_info_issuer_chain.pem").write_text("")
    with pytest.raises(QuoteVerificationError):
        load_collateral(tmp_path)


# ---------------------------------------------------------------------------
# properties


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_fixture_quotes_fail_only_with_spec_error(data: st.DataObject) -> None:
    raw = bytearray(_fixture_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, 1400))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        q = parse_quote(bytes(raw[:cut]))
    except SpecError as e:
        assert e.offset is not None and e.field
        return
    assert q.encode() == bytes(raw[:cut])  # whatever parses re-encodes byte-exact


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_random_bytes_fail_only_with_spec_error(blob: bytes) -> None:
    for data in (blob, b"\x05\x00\x02\x00\x81\x00\x00\x00" + blob,
                 b"\x04\x00\x02\x00\x81\x00\x00\x00" + blob):
        try:
            q = parse_quote(data)
        except SpecError:
            continue
        assert q.encode() == data


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_sgx_extension_decoder_raises_only_value_error(blob: bytes) -> None:
    try:
        parse_sgx_extension(blob)
    except ValueError:
        pass


# ---------------------------------------------------------------------------
# CLI


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    expected = json.loads(fixture("tdx-cc-trusted-api", "expected.json").read_text())["quote"]
    code, out, _ = _run(capsys, "quote", "show", "--format", "json",
                        str(fixture("tdx-cc-trusted-api", "quote.bin")))
    d = json.loads(out)
    assert code == 0
    assert d["mrtd"] == expected["mrtd"] and d["rtmrs"] == expected["rtmr"]
    assert d["report_data"] == expected["reportdata"]
    for key in ("version", "tee_type", "td_attributes", "xfam", "mrconfigid", "mrowner",
                "mrownerconfig", "tee_tcb_svn", "mrseam", "qe_vendor_id",
                "certification_data_type"):
        assert key in d


def test_cli_show_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "quote", "show", str(fixture("tdx-cc-trusted-api", "quote.bin")))
    assert code == 0
    for label in ("MRTD", "RTMR0 (MR1)", "RTMR3 (MR4)", "REPORTDATA", "XFAM", "MRSEAM"):
        assert label in out


def test_cli_verify_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = str(fixture("tdx-cc-trusted-api", "quote.bin"))
    when = _inside_validity().isoformat()
    code, out, _ = _run(capsys, "quote", "verify", "--format", "json", "--time", when, path)
    d = json.loads(out)
    assert code == 1 and d["signature_valid"] and d["qe_report_valid"]
    assert not d["pck_chain_valid"] and d["tcb_status"] == "unknown (no collateral)"
    assert [e["code"] for e in d["errors"]] == ["PCK_CHAIN_ROOT_NOT_PINNED"]
    code, out, _ = _run(capsys, "quote", "verify", "--format", "json", "--time", when,
                        "--trust-sandbox-root", path)
    assert code == 0 and json.loads(out)["errors"] == []
    code, out, _ = _run(capsys, "quote", "verify", "--time", when, "--trust-sandbox-root", path)
    assert code == 0 and "PASSED" in out
    bad = tmp_path / "bad.bin"
    data = bytearray(Path(path).read_bytes())
    data[48 + 136] ^= 1
    bad.write_bytes(bytes(data))
    code, out, _ = _run(capsys, "quote", "verify", "--format", "json", "--time", when,
                        "--trust-sandbox-root", str(bad))
    assert code == 1 and json.loads(out)["errors"][0]["code"] == "QUOTE_SIGNATURE_INVALID"
    (tmp_path / "junk.bin").write_bytes(b"\x04\x00" + bytes(100))
    code, _, err = _run(capsys, "quote", "verify", str(tmp_path / "junk.bin"))
    assert code == 2 and "offset" in err
    code, _, err = _run(capsys, "quote", "verify", "--time", "yesterday", path)
    assert code == 2 and "--time" in err
    code, _, err = _run(capsys, "quote", "verify", "--collateral", str(tmp_path / "none"), path)
    assert code == 2 and "collateral" in err
    code, _, _ = _run(capsys, "quote", "verify", "--nonce", "zz", path)
    assert code == 2
