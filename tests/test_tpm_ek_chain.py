"""EK certificate chains from the TPM's NV, revocation by CRL, and fetching over local HTTP.

A real swtpm is manufactured by swtpm_setup with a private swtpm-localca (root
-> intermediate ``swtpm-localca`` -> EK certificates), as in test_tpm_ek.py.
The intermediate is written, as DER, into the TCG EK chain NV range
(0x01C00100..) with tpm2-pytss; a second chain (root -> two intermediates ->
the TPM's real EK public key) is made here with ``cryptography``. CRLs are
signed with the localca's own keys. Fetching is tested against an
``http.server`` on 127.0.0.1 that serves only what the test made, and records
each request. Expected values come from the files swtpm_localca wrote and the
certificates and CRLs the test built, never from the code under test.
"""

from __future__ import annotations

import datetime
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from cloud_sdk import tpm_ek, tpm_ek_fetch, tpm_ek_nv, tpm_quote
from cloud_sdk.cli import main
from cloud_sdk.errors import InputError
from cloud_sdk.tpm_ek_path import SourcedCertificate
from cloud_sdk.tpm_ek_revocation import load_crls, parse_crls
from cloud_sdk.tpm_public import parse_public
from tests.test_tpm_ek import EkTpm, manufactured_tpm

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def chain_tpm() -> Iterator[EkTpm]:
    with manufactured_tpm() as tpm:
        yield tpm


# ---------------------------------------------------------------- helpers


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str, key: Any, issuer: x509.Certificate | None = None, signer: Any = None,
          ca: bool = True, aia: str | None = None, cdp: str | None = None) -> x509.Certificate:
    """A certificate for ``key`` (a public key, or a private key's), issued by ``issuer``."""
    public = key.public_key() if hasattr(key, "private_bytes") else key
    b = (x509.CertificateBuilder().subject_name(_name(cn))
         .issuer_name(issuer.subject if issuer is not None else _name(cn))
         .public_key(public).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if aia:
        b = b.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(aia))]),
            critical=False)
    if cdp:
        b = b.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(cdp)], None, None, None)]), critical=False)
    return b.sign(signer if signer is not None else key, hashes.SHA256())


def _crl(issuer: x509.Certificate, key: Any, revoked: list[x509.Certificate] = (),  # type: ignore[assignment]
         this: datetime.datetime = NOW - DAY, nxt: datetime.datetime = NOW + 7 * DAY,
         revoked_at: datetime.datetime = NOW - 2 * DAY) -> x509.CertificateRevocationList:
    b = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
         .last_update(this).next_update(nxt))
    for c in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(c.serial_number)
            .revocation_date(revoked_at)
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
            .build())
    return b.sign(key, hashes.SHA256())


def _crl_file(path: Path, *crls: x509.CertificateRevocationList, der: bool = False) -> Path:
    enc = serialization.Encoding.DER if der else serialization.Encoding.PEM
    path.write_bytes(b"".join(c.public_bytes(enc) for c in crls))
    return path


def _localca_key(path: Path) -> Any:
    data = path.read_bytes()
    return serialization.load_pem_private_key(data[data.index(b"-----BEGIN"):], None)


@dataclass
class LocalCa:
    """The swtpm-localca chain of the TPM, and its keys."""

    root: x509.Certificate
    root_key: Any
    issuer: x509.Certificate
    issuer_key: Any
    leaf: x509.Certificate  # the RSA 2048 EK certificate in NV 0x01C00002


def _localca(tpm: EkTpm) -> LocalCa:
    d = tpm.root.parent
    return LocalCa(x509.load_pem_x509_certificate(tpm.root.read_bytes()),
                   _localca_key(d / "swtpm-localca-rootca-privkey.pem"),
                   x509.load_pem_x509_certificate(tpm.issuer.read_bytes()),
                   _localca_key(d / "signkey.pem"),
                   x509.load_der_x509_certificate((tpm.certs / "ek-rsa2048.crt").read_bytes()))


def _define(tcti: str, index: int, data: bytes, auth_read: bool = True) -> None:
    """Define NV ``index`` with owner authorization and write ``data`` into it."""
    t = tpm_quote.pytss()
    esys = t.ESAPI(tcti)
    try:
        attrs = t.TPMA_NV.OWNERWRITE | t.TPMA_NV.OWNERREAD | t.TPMA_NV.NO_DA
        if auth_read:
            attrs |= t.TPMA_NV.AUTHREAD
        pub = t.TPM2B_NV_PUBLIC(nvPublic=t.TPMS_NV_PUBLIC(
            nvIndex=index, nameAlg=t.TPM2_ALG.SHA256, attributes=attrs, dataSize=len(data)))
        nvh = esys.nv_define_space(None, pub)
        for off in range(0, len(data), 512):
            esys.nv_write(nvh, data[off:off + 512], off, t.ESYS_TR.OWNER)
    finally:
        esys.close()


def _undefine(tcti: str, index: int) -> None:
    t = tpm_quote.pytss()
    esys = t.ESAPI(tcti)
    try:
        esys.nv_undefine_space(esys.tr_from_tpmpublic(index), t.ESYS_TR.OWNER)
    finally:
        esys.close()


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(argv)
    out = capsys.readouterr()
    try:
        return code, json.loads(out.out)
    except json.JSONDecodeError:
        return code, out.out + out.err


def _codes(doc: dict[str, Any]) -> list[str]:
    return [e["code"] for e in doc["errors"]]


# ---------------------------------------------------------------- no TPM


def test_split_certificates_takes_concatenated_der_and_names_bad_offsets() -> None:
    k = ec.generate_private_key(ec.SECP256R1())
    a, b = _cert("a", k), _cert("b", k)
    got = tpm_ek_nv.split_certificates(_der(a) + _der(b) + b"\xff" * 7, "NV 0x01c00100")
    assert [_der(c) for c in got] == [_der(a), _der(b)]
    with pytest.raises(InputError, match=r"NV 0x01c00101: offset 0: not a DER SEQUENCE "
                       r"\(byte 0xde\)"):
        tpm_ek_nv.split_certificates(b"\xde\xad\xbe\xef", "NV 0x01c00101")
    cut = len(_der(a))
    with pytest.raises(InputError, match=r"X: offset %d: a DER SEQUENCE of %d bytes, 10 left"
                       % (cut, len(_der(b)))):
        tpm_ek_nv.split_certificates(_der(a) + _der(b)[:10], "X")
    with pytest.raises(InputError, match="X: empty"):
        tpm_ek_nv.split_certificates(b"", "X")


def test_crl_files_pem_several_and_der(tmp_path: Path) -> None:
    k = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("ca", k)
    one, two = _crl(ca, k), _crl(ca, k, [ca])
    crls = load_crls([_crl_file(tmp_path / "two.pem", one, two),
                      _crl_file(tmp_path / "one.der", one, der=True)])
    assert [c.source for c in crls] == [str(tmp_path / "two.pem[0]"),
                                        str(tmp_path / "two.pem[1]"), str(tmp_path / "one.der")]
    assert [c.crl.public_bytes(serialization.Encoding.DER) for c in crls] == [
        one.public_bytes(serialization.Encoding.DER), two.public_bytes(serialization.Encoding.DER),
        one.public_bytes(serialization.Encoding.DER)]
    with pytest.raises(InputError, match=r"bad\.crl: offset 0: not a DER CRL \(first byte 0x68\)"):
        parse_crls(b"hello", "bad.crl")
    with pytest.raises(InputError, match=r"cert\.pem: PEM without an X509 CRL block"):
        parse_crls(_pem(ca), "cert.pem")


def test_revocation_is_judged_at_the_given_time() -> None:
    kr, kl = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = _cert("root", kr)
    root = (x509.CertificateBuilder().subject_name(root.subject).issuer_name(root.subject)
            .public_key(kr.public_key()).serial_number(1).not_valid_before(NOW - 30 * DAY)
            .not_valid_after(NOW + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(kr, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(_name("leaf")).issuer_name(root.subject)
            .public_key(kl.public_key()).serial_number(2).not_valid_before(NOW - 20 * DAY)
            .not_valid_after(NOW + 30 * DAY).sign(kr, hashes.SHA256()))
    stale = parse_crls(_crl(root, kr, this=NOW - 10 * DAY, nxt=NOW - 5 * DAY).public_bytes(
        serialization.Encoding.DER), "stale.crl")
    now = tpm_ek.verify_ek_certificate(leaf, [root], crls=stale)
    assert _codes(now.to_dict()) == ["EK_CRL_EXPIRED"] and not now.passed
    assert "stale.crl: current %s to %s" % ((NOW - 10 * DAY).replace(microsecond=0).isoformat(),
                                             (NOW - 5 * DAY).replace(microsecond=0).isoformat()
                                             ) in now.errors[0]["message"]
    then = tpm_ek.verify_ek_certificate(leaf, [root], at=NOW - 7 * DAY, crls=stale)
    assert then.passed and then.revocation_valid is True
    assert [r["status"] for r in then.revocation] == ["good"]
    # the CRL is not current before its thisUpdate either
    early = tpm_ek.verify_ek_certificate(leaf, [root], at=NOW - 12 * DAY, crls=stale)
    assert _codes(early.to_dict()) == ["EK_CRL_EXPIRED"]


# ---------------------------------------------------------------- intermediates in NV


@pytest.mark.swtpm
def test_nv_intermediate_completes_the_chain(chain_tpm: EkTpm, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    ca = _localca(chain_tpm)
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(_pem(ca.root))
    before = tmp_path / "before.json"
    assert main(["quote", "get", "-o", str(before), "--tcti", chain_tpm.tcti, "--pcrs", "0"]) == 0
    assert json.loads(before.read_text())["ek_intermediates"] == []
    code, doc = _run(["quote", "verify", str(before), "--ek-ca", str(root_pem), "--format",
                      "json"], capsys)
    assert code == 1 and _codes(doc) == ["EK_CERT_ISSUER_UNKNOWN"]
    assert "no issuer (CN=swtpm-localca) of unknown" in doc["errors"][0]["message"]

    # 1070 bytes of DER: more than this TPM's 1024-byte NV buffer, so read in two chunks;
    # owner-read only, so read with owner authorization
    assert len(_der(ca.issuer)) > 1024
    _define(chain_tpm.tcti, 0x01C00100, _der(ca.issuer), auth_read=False)
    try:
        q = tpm_quote.get_tpm_quote(b"", pcrs=[0], tcti=chain_tpm.tcti)
        assert [(i, _der(x509.load_pem_x509_certificate(p.encode())))
                for i, p in q.ek_intermediates] == [(0x01C00100, _der(ca.issuer))]
        assert q.ek_chain_errors == []
        back = tpm_quote.TpmQuote.loads(q.dumps())
        assert back.ek_intermediates == q.ek_intermediates

        leaf = x509.load_pem_x509_certificate(q.ek_certificate_pem.encode())  # type: ignore[union-attr]
        nv = [SourcedCertificate(x509.load_pem_x509_certificate(p.encode()), "NV 0x%08x" % i)
              for i, p in q.ek_intermediates]
        res = tpm_ek.verify_ek_certificate(leaf, [ca.root], parse_public(q.ek_public),
                                           intermediates=nv)
        assert res.passed and res.errors == [] and res.revocation_valid is None
        assert [(c["subject"], c["source"]) for c in res.chain] == [
            ("CN=unknown", "EK certificate"), ("CN=swtpm-localca", "NV 0x01c00100"),
            ("CN=swtpm-localca-rootca", "CA bundle")]
        # the NV intermediate is not a trust anchor: a bundle of it alone fails
        res = tpm_ek.verify_ek_certificate(leaf, [ca.issuer], intermediates=nv)
        assert _codes(res.to_dict()) == ["EK_CERT_ISSUER_UNKNOWN"]

        after = tmp_path / "after.json"
        assert main(["quote", "get", "-o", str(after), "--tcti", chain_tpm.tcti, "--pcrs",
                     "0"]) == 0
        assert "1 CA certificate(s) from its EK chain NV (0x01c00100)" in capsys.readouterr().err
        code, doc = _run(["quote", "verify", str(after), "--ek-ca", str(root_pem), "--format",
                          "json"], capsys)
        assert code == 0 and doc["passed"] and doc["ek"]["chain"][1]["source"] == "NV 0x01c00100"
        code, text = _run(["quote", "verify", str(after), "--ek-ca", str(root_pem)], capsys)
        assert code == 0 and "NV 0x01c00100" in text and "PASSED" in text
        code, doc = _run(["quote", "show", str(after), "--format", "json"], capsys)
        assert doc["ek_intermediates"][0]["subject"] == "CN=swtpm-localca"
        # the same file without the intermediates: the chain breaks again
        stripped = json.loads(after.read_text())
        stripped.pop("ek_intermediates")
        after.write_text(json.dumps(stripped))
        code, doc = _run(["quote", "verify", str(after), "--ek-ca", str(root_pem), "--format",
                          "json"], capsys)
        assert code == 1 and _codes(doc) == ["EK_CERT_ISSUER_UNKNOWN"]
    finally:
        _undefine(chain_tpm.tcti, 0x01C00100)


@pytest.mark.swtpm
def test_two_concatenated_intermediates_and_a_garbage_index(
        chain_tpm: EkTpm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q = tpm_quote.get_tpm_quote(b"", pcrs=[0], tcti=chain_tpm.tcti)
    ek_key = x509.load_pem_x509_certificate(
        q.ek_certificate_pem.encode()).public_key()  # type: ignore[union-attr]
    kr, ka, kb = (ec.generate_private_key(ec.SECP384R1()) for _ in range(3))
    root = _cert("other root", kr)
    int_a = _cert("other intermediate A", ka, root, kr)
    int_b = _cert("other intermediate B", kb, int_a, ka)
    reissued = _cert("tpm ek", ek_key, int_b, kb, ca=False)
    (tmp_path / "root.pem").write_bytes(_pem(root))
    (tmp_path / "ek.pem").write_bytes(_pem(reissued))
    # two DER certificates in one index, padded with 0xFF as some vendors do
    _define(chain_tpm.tcti, 0x01C00101, _der(int_b) + _der(int_a) + b"\xff" * 16)
    _define(chain_tpm.tcti, 0x01C00102, b"\x04\x03abc garbage")
    try:
        out = tmp_path / "q.json"
        assert main(["quote", "get", "-o", str(out), "--tcti", chain_tpm.tcti, "--pcrs",
                     "0"]) == 0
        err = capsys.readouterr().err
        assert "2 CA certificate(s) from its EK chain NV (0x01c00101)" in err
        assert ("EK chain index not used: %s: NV 0x01c00102 (EK certificate chain): offset 0: "
                "not a DER SEQUENCE (byte 0x04)" % chain_tpm.tcti) in err
        with pytest.raises(tpm_ek.EkError, match=r"NV 0x01c00102 \(EK certificate chain\): "
                           "offset 0"):
            tpm_quote.get_tpm_quote(b"", pcrs=[0], tcti=chain_tpm.tcti, ek="rsa2048")
        code, doc = _run(["quote", "verify", str(out), "--ek-cert", str(tmp_path / "ek.pem"),
                          "--ek-ca", str(tmp_path / "root.pem"), "--format", "json"], capsys)
        assert code == 0 and doc["ek"]["public_valid"] is True
        assert [(c["subject"], c["source"]) for c in doc["ek"]["chain"]] == [
            ("CN=tpm ek", "EK certificate"), ("CN=other intermediate B", "NV 0x01c00101"),
            ("CN=other intermediate A", "NV 0x01c00101"), ("CN=other root", "CA bundle")]
    finally:
        _undefine(chain_tpm.tcti, 0x01C00101)
        _undefine(chain_tpm.tcti, 0x01C00102)


# ---------------------------------------------------------------- CRLs


@pytest.mark.swtpm
def test_crls_of_the_localca(chain_tpm: EkTpm, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    ca = _localca(chain_tpm)
    quote = tmp_path / "q.json"
    assert main(["quote", "get", "-o", str(quote), "--tcti", chain_tpm.tcti, "--pcrs", "0"]) == 0
    bundle = chain_tpm.bundle(tmp_path)
    verify = ["quote", "verify", str(quote), "--ek-ca", str(bundle), "--format", "json"]
    good_int = _crl_file(tmp_path / "int.crl", _crl(ca.issuer, ca.issuer_key), der=True)
    good_root = _crl_file(tmp_path / "root.crl", _crl(ca.root, ca.root_key))

    code, doc = _run([*verify, "--ek-crl", str(good_int), "--ek-crl", str(good_root)], capsys)
    assert code == 0 and doc["ek"]["revocation_valid"] is True and doc["warnings"] == []
    assert [(r["subject"], r["serial"], r["status"]) for r in doc["ek"]["revocation"]] == [
        ("CN=unknown", "%x" % ca.leaf.serial_number, "good"),
        ("CN=swtpm-localca", "%x" % ca.issuer.serial_number, "good")]

    # the EK certificate listed by its issuer's CRL
    revoked_at = (NOW - 3 * DAY).replace(microsecond=0)
    bad = _crl_file(tmp_path / "revoked.crl",
                    _crl(ca.issuer, ca.issuer_key, [ca.leaf], revoked_at=revoked_at))
    code, doc = _run([*verify, "--ek-crl", str(bad)], capsys)
    assert code == 1 and _codes(doc) == ["EK_CERT_REVOKED"] and not doc["passed"]
    msg = doc["errors"][0]["message"]
    assert ("CN=unknown (serial %x) is revoked since %s, reason keyCompromise"
            % (ca.leaf.serial_number, revoked_at.isoformat())) in msg
    assert doc["ek"]["chain_valid"] is True and doc["ek"]["revocation_valid"] is False
    code, text = _run([*verify[:-2], "--ek-crl", str(bad)], capsys)
    assert code == 1 and "EK_CERT_REVOKED" in text and "FAILED" in text

    # no CRL of the root for the intermediate: only a finding when required
    code, doc = _run([*verify, "--ek-crl", str(good_int)], capsys)
    assert code == 0 and [r["status"] for r in doc["ek"]["revocation"]] == ["good", "unchecked"]
    code, doc = _run([*verify, "--ek-crl", str(good_int), "--ek-crl-required"], capsys)
    assert code == 1 and _codes(doc) == ["EK_CRL_MISSING"]
    assert "no CRL of CN=swtpm-localca-rootca covers CN=swtpm-localca (serial %x)" % (
        ca.issuer.serial_number) in doc["errors"][0]["message"]

    # a stale CRL fails now, passes at a --time it was current
    stale = _crl_file(tmp_path / "stale.crl", _crl(ca.issuer, ca.issuer_key,
                                                   this=NOW - 10 * DAY, nxt=NOW - 5 * DAY))
    code, doc = _run([*verify, "--ek-crl", str(stale)], capsys)
    assert code == 1 and _codes(doc) == ["EK_CRL_EXPIRED"]
    code, doc = _run([*verify, "--ek-crl", str(good_int), "--time", (NOW + 9 * DAY).isoformat()],
                     capsys)
    assert code == 1 and _codes(doc) == ["EK_CRL_EXPIRED"]

    # a CRL in the intermediate's name, signed by another key; and an unrelated CA's CRL
    other = ec.generate_private_key(ec.SECP256R1())
    forged = _crl_file(tmp_path / "forged.crl", _crl(ca.issuer, other))
    code, doc = _run([*verify, "--ek-crl", str(forged)], capsys)
    assert code == 1 and _codes(doc) == ["EK_CRL_SIGNATURE"]
    stranger = _cert("stranger", other)
    unused = _crl_file(tmp_path / "stranger.crl", _crl(stranger, other))
    code, doc = _run([*verify, "--ek-crl", str(unused), "--ek-crl", str(good_int)], capsys)
    assert code == 0 and [w["code"] for w in doc["warnings"]] == ["EK_CRL_UNUSED"]

    # unusable input: exit 2 naming the file; CRL options need --ek-ca
    junk = tmp_path / "junk.crl"
    junk.write_bytes(b"\x30\x03\x02\x01\x00")
    code, text = _run([*verify, "--ek-crl", str(junk)], capsys)
    assert code == 2 and "junk.crl: not a DER CRL" in text
    code, text = _run(["quote", "verify", str(quote), "--ek-crl", str(good_int)], capsys)
    assert code == 2 and "--ek-crl needs --ek-ca" in text
    code, text = _run(["quote", "challenge", "--ak-public", str(quote), "--ek-ca", str(bundle),
                       "--ek-crl", str(bad), "-o", str(tmp_path / "c.json")], capsys)
    assert code == 1 and "EK_CERT_REVOKED" in text and not (tmp_path / "c.json").exists()


# ---------------------------------------------------------------- fetching


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "file:///etc/hostname")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Server:
    root: Path
    url: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[Server]:
    served = tmp_path / "www"
    served.mkdir()
    handler: Any = type("H", (_Handler,), {"requests": []})

    def make(*args: Any) -> Any:
        return handler(*args, directory=str(served))

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(served, "http://127.0.0.1:%d" % httpd.server_address[1], handler.requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.mark.swtpm
def test_fetch_issuers_and_crls_over_local_http(chain_tpm: EkTpm, tmp_path: Path,
                                                http_dir: Server,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    q = tpm_quote.get_tpm_quote(b"", pcrs=[0], tcti=chain_tpm.tcti)
    (tmp_path / "q.json").write_bytes(q.dumps())
    ek_key = x509.load_pem_x509_certificate(
        q.ek_certificate_pem.encode()).public_key()  # type: ignore[union-attr]
    u = http_dir.url
    kr, ka, kb = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("fetch root", kr)
    int_a = _cert("fetch A", ka, root, kr, cdp=u + "/root.crl")
    int_b = _cert("fetch B", kb, int_a, ka, aia=u + "/a.p7c", cdp=u + "/a.crl")
    leaf = _cert("fetch ek", ek_key, int_b, kb, ca=False, aia=u + "/b.cer", cdp=u + "/b.crl")
    www = http_dir.root
    (www / "b.cer").write_bytes(_der(int_b))
    (www / "a.p7c").write_bytes(pkcs7.serialize_certificates([int_a], serialization.Encoding.DER))
    (www / "b.crl").write_bytes(_crl(int_b, kb).public_bytes(serialization.Encoding.DER))
    (www / "a.crl").write_bytes(_crl(int_a, ka).public_bytes(serialization.Encoding.PEM))
    (www / "root.crl").write_bytes(_crl(root, kr).public_bytes(serialization.Encoding.DER))
    (tmp_path / "root.pem").write_bytes(_pem(root))
    (tmp_path / "ek.pem").write_bytes(_pem(leaf))
    argv = ["quote", "verify", str(tmp_path / "q.json"), "--ek-cert", str(tmp_path / "ek.pem"),
            "--ek-ca", str(tmp_path / "root.pem"), "--format", "json"]

    code, doc = _run(argv, capsys)  # without --ek-fetch: nothing is fetched, the chain breaks
    assert code == 1 and _codes(doc) == ["EK_CERT_ISSUER_UNKNOWN"] and http_dir.requests == []

    code, doc = _run([*argv, "--ek-fetch", "--ek-crl-required"], capsys)
    assert code == 0, doc
    assert [(c["subject"], c["source"]) for c in doc["ek"]["chain"]] == [
        ("CN=fetch ek", "EK certificate"), ("CN=fetch B", u + "/b.cer"),
        ("CN=fetch A", u + "/a.p7c"), ("CN=fetch root", "CA bundle")]
    assert [(r["status"], r["crls"]) for r in doc["ek"]["revocation"]] == [
        ("good", [u + "/b.crl"]), ("good", [u + "/a.crl"]), ("good", [u + "/root.crl"])]
    assert sorted(http_dir.requests) == ["/a.crl", "/a.p7c", "/b.cer", "/b.crl", "/root.crl"]

    # B revoked by A: the fetched CRL says so
    (www / "a.crl").write_bytes(_crl(int_a, ka, [int_b]).public_bytes(
        serialization.Encoding.PEM))
    code, doc = _run([*argv, "--ek-fetch"], capsys)
    assert code == 1 and _codes(doc) == ["EK_CERT_REVOKED"]
    assert "CN=fetch B (serial %x) is revoked" % int_b.serial_number in doc["errors"][0]["message"]

    # a CRL given as a file is used instead of fetching that issuer's
    local = _crl_file(tmp_path / "a.crl", _crl(int_a, ka))
    del http_dir.requests[:]
    code, doc = _run([*argv, "--ek-fetch", "--ek-crl", str(local)], capsys)
    assert code == 0 and "/a.crl" not in http_dir.requests

    # a missing CRL URL: a warning, and a finding only when required
    (www / "root.crl").unlink()
    code, doc = _run([*argv, "--ek-fetch"], capsys)
    assert code == 1  # a.crl still revokes B
    (www / "a.crl").write_bytes(_crl(int_a, ka).public_bytes(serialization.Encoding.PEM))
    code, doc = _run([*argv, "--ek-fetch"], capsys)
    assert code == 0 and [w["code"] for w in doc["warnings"]] == ["EK_FETCH_FAILED"]
    assert "%s/root.crl: HTTP 404" % u in doc["warnings"][0]["message"]
    code, doc = _run([*argv, "--ek-fetch", "--ek-crl-required"], capsys)
    assert code == 1 and _codes(doc) == ["EK_CRL_MISSING"]

    # the size cap: the issuer is not taken, the chain breaks, the warning says why
    small = tpm_ek_fetch.Fetcher(max_bytes=100)
    res = tpm_ek.verify_ek_certificate(leaf, [root], fetcher=small)
    assert _codes(res.to_dict()) == ["EK_CERT_ISSUER_UNKNOWN"]
    assert "%s/b.cer: larger than 100 bytes" % u in [w["message"] for w in res.warnings]


def test_fetcher_refuses_other_schemes_redirects_and_slow_servers(http_dir: Server) -> None:
    f = tpm_ek_fetch.Fetcher(timeout=0.5)
    with pytest.raises(tpm_ek_fetch.FetchError, match="only http and https"):
        f.get("file:///etc/hostname")
    with pytest.raises(tpm_ek_fetch.FetchError,
                       match=r"/redirect: HTTP 302.*file:///etc/hostname.* not allowed"):
        f.get(http_dir.url + "/redirect")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    try:
        with pytest.raises(tpm_ek_fetch.FetchError, match="timed out"):
            f.get("http://127.0.0.1:%d/x.crl" % silent.getsockname()[1])
    finally:
        silent.close()
    limited = tpm_ek_fetch.Fetcher(max_fetches=1)
    with pytest.raises(tpm_ek_fetch.FetchError, match="HTTP 404"):
        limited.get(http_dir.url + "/none")
    with pytest.raises(tpm_ek_fetch.FetchError, match="1 URLs already were"):
        limited.get(http_dir.url + "/other")
