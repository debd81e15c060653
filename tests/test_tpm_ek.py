"""EK certificates and credential activation against a real swtpm with a real EK certificate.

The TPM is manufactured by ``swtpm_setup --tpm2 --create-ek-cert
--create-platform-cert`` with a private swtpm-localca configuration in a temp
directory: swtpm_localca makes a root CA and an intermediate there and issues
an RSA 2048 EK certificate (NV 0x01C00002) and an ECC NIST P-384 one (NV
0x01C00016, the TCG high-range H-3 template). Expected values come from
elsewhere: the certificates from ``--write-ek-cert-files``, the CA from the
localca directory, the TCG templates from tpm2-pytss's own table, the KDFs
from ``cryptography``'s SP 800-108 / SP 800-56A implementations, and
MakeCredential is proven by the TPM (TPM2_ActivateCredential) returning the
secret.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode
from cryptography.x509.oid import NameOID

from cloud_sdk import tpm_credential, tpm_ek, tpm_quote
from cloud_sdk.cli import main
from cloud_sdk.errors import InputError
from cloud_sdk.tpm_credential import Challenge, CredentialRefused, Response
from cloud_sdk.tpm_device import TpmDevice
from cloud_sdk.tpm_public import parse_public, with_key
from cloud_sdk.tpm_quote import AttestationKey, get_tpm_quote
from shared_spec.algorithms import ALG_SHA256, ALG_SHA384
from tests.test_tpm2_swtpm import Swtpm

TOOLS = ("swtpm", "swtpm_setup", "swtpm_localca")
needs_pytss = pytest.mark.skipif(not tpm_quote.available(),
                                 reason="tpm2-pytss is not importable (apt-get install "
                                 "python3-tpm2-pytss, or pip install 'cvmchain[tpm]')")


@dataclass
class EkTpm:
    """A started swtpm with EK certificates, and what swtpm_setup wrote beside it."""

    tpm: Swtpm
    root: Path  # the self-signed swtpm-localca root
    issuer: Path  # the intermediate that signed the EK certificates
    certs: Path  # ek-rsa2048.crt, ek-secp384r1.crt (DER)

    @property
    def tcti(self) -> str:
        return self.tpm.tcti

    def bundle(self, tmp: Path) -> Path:
        out = tmp / "ek-ca.pem"
        out.write_bytes(self.issuer.read_bytes() + self.root.read_bytes())
        return out


@contextlib.contextmanager
def manufactured_tpm() -> Iterator[EkTpm]:
    """A fresh swtpm with EK certificates from a private swtpm-localca (skips without tools)."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip("%s not installed (Debian packages swtpm, swtpm-tools)" % ", ".join(missing))
    if not tpm_quote.available():
        pytest.skip("tpm2-pytss is not importable")
    base = Path(tempfile.mkdtemp(prefix="cvmchain-ek-", dir="/tmp"))  # short: socket paths
    try:
        ca, state, certs = base / "ca", base / "tpm", base / "certs"
        for d in (ca, state, certs):
            d.mkdir()
        (base / "localca.conf").write_text(
            "statedir = %s\nsigningkey = %s/signkey.pem\nissuercert = %s/issuercert.pem\n"
            "certserial = %s/certserial\n" % (ca, ca, ca, ca))
        (base / "localca.options").write_text(
            "--platform-manufacturer cvmchain-test\n--platform-version 2.1\n"
            "--platform-model swtpm\n")
        (base / "setup.conf").write_text(
            "create_certs_tool = %s\ncreate_certs_tool_config = %s\n"
            "create_certs_tool_options = %s\nactive_pcr_banks = sha256\n"
            % (shutil.which("swtpm_localca"), base / "localca.conf", base / "localca.options"))
        done = subprocess.run(
            ["swtpm_setup", "--tpm2", "--tpmstate", str(state), "--config",
             str(base / "setup.conf"), "--create-ek-cert", "--create-platform-cert",
             "--write-ek-cert-files", str(certs), "--overwrite"],
            capture_output=True, text=True, timeout=120, check=False, cwd=base)
        assert done.returncode == 0, done.stdout + done.stderr
        tpm = Swtpm(state)
        tpm.start()
        try:
            with TpmDevice.unix_socket(str(tpm.sock)) as dev:
                dev.startup_clear()
            _no_lockout(tpm.tcti)
            yield EkTpm(tpm, ca / "swtpm-localca-rootca-cert.pem", ca / "issuercert.pem", certs)
        finally:
            tpm.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def ek_tpm() -> Iterator[EkTpm]:
    with manufactured_tpm() as tpm:
        yield tpm


def _no_lockout(tcti: str) -> None:
    """Refused activations count as authorization failures of the EK (it is not noDA):
    allow many, so the deliberate failures here do not lock the EK for later tests."""
    esys = tpm_quote.pytss().ESAPI(tcti)
    try:
        esys.dictionary_attack_parameters(1000, 1, 1)
    finally:
        esys.close()


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def _spki(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


# ---------------------------------------------------------------- no TPM needed


@needs_pytss
def test_templates_are_the_tcg_ones_tpm2_pytss_lists() -> None:
    from tpm2_pytss.internal.templates import ek_template

    for t in tpm_ek.TEMPLATES.values():
        theirs = ek_template.lookup(t.pytss)
        assert int(theirs.cert_index) == t.cert_index, t.name
        assert t.public().raw == bytes(theirs.template.publicArea.marshal()), t.name


def test_kdfa_and_kdfe_match_cryptography_sp800_108_and_56a() -> None:
    key, u, v = bytes(range(32)), b"name-of-the-ak", b"other"
    for bits in (128, 256, 520):
        want = KBKDFHMAC(algorithm=hashes.SHA256(), mode=Mode.CounterMode, length=bits // 8,
                         rlen=4, llen=4, location=CounterLocation.BeforeFixed, label=b"STORAGE",
                         context=u + v, fixed=None).derive(key)
        assert tpm_credential.kdfa(ALG_SHA256, key, b"STORAGE", u, v, bits) == want
    z, pu, pv = bytes(48), b"\x01" * 48, b"\x02" * 48
    want = ConcatKDFHash(algorithm=hashes.SHA384(), length=48,
                         otherinfo=b"IDENTITY\0" + pu + pv).derive(z)
    assert tpm_credential.kdfe(ALG_SHA384, z, b"IDENTITY", pu, pv, 384) == want


def test_policies_are_the_profiles_digests() -> None:
    # TCG EK Credential Profile v2.5 Table 2-2 and 2-3: PolicyA (SHA-256) and PolicyB (SHA-384)
    assert tpm_ek.policy_a(ALG_SHA256).hex() == ("837197674484b3f81a90cc8d46a5d724"
                                                 "fd52d76e06520b64f2a1da1b331469aa")
    assert tpm_ek.policy_b(ALG_SHA384).hex().startswith("b26e7d28d11a50bc53d882bcf5fd3a1a")


def test_bad_public_areas_and_files_name_the_field(tmp_path: Path) -> None:
    good = tpm_ek.TEMPLATES["ecc256"].public().sized()
    assert parse_public(good).raw == good[2:]
    with pytest.raises(InputError, match=r"ak\.pub, offset 2 \(0x2\), field type: type "
                       r"0x0008 is neither RSA nor ECC"):
        parse_public(good[:2] + b"\x00\x08" + good[4:], "ak.pub")
    with pytest.raises(InputError, match=r"ak\.pub, offset 0 \(0x0\), field size: size 122"):
        parse_public(good[:-2], "ak.pub")
    with pytest.raises(InputError, match=r"field unique\.ecc\.y"):
        parse_public(b"\x00\x78" + good[2:-2], "ak.pub")
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"schema": tpm_credential.CHALLENGE_SCHEMA,
                               "ek_template": "rsa2048", "ek_public": "zz"}))
    with pytest.raises(InputError, match=r"c\.json: ek_public: not hex"):
        Challenge.load(bad)
    bad.write_text(json.dumps({"schema": tpm_credential.CHALLENGE_SCHEMA,
                               "ek_template": "rsa1024"}))
    with pytest.raises(InputError, match="EK template 'rsa1024'"):
        Challenge.load(bad)
    with pytest.raises(InputError, match=r"x\.crt: offset 0: not a DER SEQUENCE"):
        tpm_ek.load_certificate(b"\x04\x00", "x.crt")


def test_make_credential_rejects_what_it_cannot_protect() -> None:
    ek = with_key(tpm_ek.TEMPLATES["ecc256"].public(),
                  ec.generate_private_key(ec.SECP256R1()).public_key())
    name = b"\x00\x0b" + bytes(32)
    with pytest.raises(InputError, match="1 to 64"):
        tpm_credential.make_credential(ek, name, bytes(65))
    signer = tpm_ek.TEMPLATES["ecc256"].public()
    signer.attributes = signer.attributes & ~0x00020000 | 0x00040000
    with pytest.raises(InputError, match="not a restricted decryption key"):
        tpm_credential.make_credential(signer, name, b"s")
    with pytest.raises(InputError, match="not an attestation key"):
        tpm_credential.check_ak(ek, "ak.pub")  # a decryption key is no AK


# ---------------------------------------------------------------- the EK certificate


@pytest.mark.swtpm
def test_quote_carries_the_ek_and_its_certificate(ek_tpm: EkTpm, tmp_path: Path) -> None:
    q = get_tpm_quote(b"n", pcrs=[0], tcti=ek_tpm.tcti)
    assert q.ek_template == "rsa2048" and q.ek_note == ""
    assert q.ek_certificate_pem is not None
    assert _der(q.ek_certificate_pem) == (ek_tpm.certs / "ek-rsa2048.crt").read_bytes()
    cert = x509.load_pem_x509_certificate(q.ek_certificate_pem.encode())
    ek = parse_public(q.ek_public)
    assert _spki(ek.public_key()) == _spki(cert.public_key())
    assert ek.name_alg == ALG_SHA256 and ek.sym_bits == 128 and ek.attributes == 0x000300B2

    p384 = get_tpm_quote(b"n", pcrs=[0], tcti=ek_tpm.tcti, ek="high-ecc384")
    assert p384.ek_certificate_pem is not None
    assert _der(p384.ek_certificate_pem) == (ek_tpm.certs / "ek-secp384r1.crt").read_bytes()
    assert parse_public(p384.ek_public).name_alg == ALG_SHA384

    bundle = tpm_ek.load_ca_bundle(ek_tpm.bundle(tmp_path))
    for quote in (q, p384):
        assert quote.ek_certificate_pem is not None
        leaf = x509.load_pem_x509_certificate(quote.ek_certificate_pem.encode())
        res = tpm_ek.verify_ek_certificate(leaf, bundle, parse_public(quote.ek_public))
        assert res.passed and res.errors == [] and res.template == quote.ek_template
        assert [c["subject"] for c in res.chain] == ["CN=unknown", "CN=swtpm-localca",
                                                     "CN=swtpm-localca-rootca"]
    assert get_tpm_quote(b"", pcrs=[0], tcti=ek_tpm.tcti, ek=None).ek_public == b""
    back = tpm_quote.TpmQuote.loads(q.dumps())
    assert (back.ek_public, back.ek_template, back.ek_certificate_pem) == (
        q.ek_public, q.ek_template, q.ek_certificate_pem)


def _ca(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None = None,
        signer: ec.EllipticCurvePrivateKey | None = None) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(signer or key, hashes.SHA256()))


@pytest.mark.swtpm
def test_ek_certificate_failures_say_which_link(ek_tpm: EkTpm, tmp_path: Path) -> None:
    leaf = x509.load_der_x509_certificate((ek_tpm.certs / "ek-rsa2048.crt").read_bytes())
    root = x509.load_pem_x509_certificate(ek_tpm.root.read_bytes())
    issuer = x509.load_pem_x509_certificate(ek_tpm.issuer.read_bytes())

    res = tpm_ek.verify_ek_certificate(leaf, [issuer])  # no root
    assert [e["code"] for e in res.errors] == ["EK_CERT_ISSUER_UNKNOWN"]
    assert "CN=swtpm-localca-rootca" in res.errors[0]["message"] and not res.passed

    # an impostor CA with the same names: the path is built by name, the signatures fail
    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    fake_root = _ca("swtpm-localca-rootca", k1)
    fake_issuer = _ca("swtpm-localca", k2, fake_root.subject, k1)
    res = tpm_ek.verify_ek_certificate(leaf, [fake_issuer, fake_root])
    assert [e["code"] for e in res.errors] == ["EK_CERT_CHAIN_SIGNATURE"]
    assert "unknown is not signed by swtpm-localca" in res.errors[0]["message"]

    before = leaf.not_valid_before_utc - datetime.timedelta(seconds=1)
    res = tpm_ek.verify_ek_certificate(leaf, [issuer, root], at=before)
    assert {e["code"] for e in res.errors} == {"EK_CERT_CHAIN_EXPIRED"}

    other = parse_public(get_tpm_quote(b"", pcrs=[0], tcti=ek_tpm.tcti,
                                       ek="high-ecc384").ek_public)
    res = tpm_ek.verify_ek_certificate(leaf, [issuer, root], other)
    assert res.chain_valid and res.public_valid is False
    assert [e["code"] for e in res.errors] == ["EK_PUBLIC_MISMATCH"]


# ---------------------------------------------------------------- credential activation


def _challenge(ek_tpm: EkTpm, template: str, ak: AttestationKey | None = None
               ) -> tuple[Challenge, bytes, tpm_quote.TpmQuote]:
    q = get_tpm_quote(b"", pcrs=[0], tcti=ek_tpm.tcti, ak=ak, ek=template)
    challenge, secret = tpm_credential.make_challenge(
        parse_public(q.ek_public), parse_public(q.ak_public), template)
    return challenge, secret, q


@pytest.mark.swtpm
@pytest.mark.parametrize("template", ["rsa2048", "ecc256", "high-ecc384", "high-ecc256",
                                      "high-rsa2048"])
def test_the_tpm_activates_our_make_credential(ek_tpm: EkTpm, template: str) -> None:
    for ak in (AttestationKey(), AttestationKey(hierarchy="owner", key_type="rsa")):
        challenge, secret, q = _challenge(ek_tpm, template, ak)
        got = tpm_credential.activate_credential(challenge, ek_tpm.tcti, ak)
        assert got.secret == secret and len(secret) == 32
        assert got.ak_name == b"\x00\x0b" + hashlib.sha256(q.ak_public[2:]).digest()
        res = tpm_credential.verify_activation(challenge, got, q.ak_public_pem, q.ak_public)
        assert res.passed and res.errors == []


@pytest.mark.swtpm
def test_altered_credentials_and_other_aks_are_refused(ek_tpm: EkTpm) -> None:
    for template in ("rsa2048", "high-ecc384"):
        challenge, _, q = _challenge(ek_tpm, template)
        blob = bytearray(challenge.credential.blob)
        blob[-1] ^= 0x01  # the last byte of encIdentity
        altered = Challenge(**{**challenge.__dict__,
                               "credential": tpm_credential.Credential(
                                   bytes(blob), challenge.credential.secret)})
        with pytest.raises(CredentialRefused, match="TPM_RC_INTEGRITY"):
            tpm_credential.activate_credential(altered, ek_tpm.tcti)
        seed = bytearray(challenge.credential.secret)
        seed[10] ^= 0x80
        altered.credential = tpm_credential.Credential(challenge.credential.blob, bytes(seed))
        with pytest.raises(CredentialRefused, match="refused the challenge"):
            tpm_credential.activate_credential(altered, ek_tpm.tcti)

        # made for another Name: the TPM itself notices (the file claims our AK)
        other = b"\x00\x0b" + hashlib.sha256(b"another key").digest()
        wrong = Challenge(**{**challenge.__dict__, "credential": tpm_credential.make_credential(
            challenge.ek_public, other, b"secret")})
        with pytest.raises(CredentialRefused, match="TPM_RC_INTEGRITY"):
            tpm_credential.activate_credential(wrong, ek_tpm.tcti)
        # a challenge for the RSA AK, answered with the default ECC AK: we say so first
        rsa, _, _ = _challenge(ek_tpm, template, AttestationKey(key_type="rsa"))
        with pytest.raises(CredentialRefused, match="is not the AK the challenge was made"):
            tpm_credential.activate_credential(rsa, ek_tpm.tcti)
        assert q.ak_public != b""

    res = tpm_credential.verify_activation(challenge, Response(
        b"\x00" * 32, challenge.ak_public.name(), challenge.ek_public.name()))
    assert [e["code"] for e in res.errors] == ["ACTIVATION_SECRET"] and not res.passed


@pytest.mark.swtpm
def test_cli_challenge_activate_verify(ek_tpm: EkTpm, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    quote, challenge, response = tmp_path / "q.json", tmp_path / "c.json", tmp_path / "r.json"
    ca = ek_tpm.bundle(tmp_path)
    assert main(["quote", "get", "-o", str(quote), "--tcti", ek_tpm.tcti, "--nonce", "ab",
                 "--pcrs", "0,15"]) == 0
    assert "with the rsa2048 EK and its certificate" in capsys.readouterr().err
    doc = json.loads(quote.read_text())
    assert _der(doc["ek_certificate_pem"]) == (ek_tpm.certs / "ek-rsa2048.crt").read_bytes()

    assert main(["quote", "challenge", "--ak-public", str(quote), "--ek-ca", str(ca),
                 "-o", str(challenge)]) == 0
    c = json.loads(challenge.read_text())
    assert c["schema"] == "cvmchain-tpm-credential-challenge/1" and c["ek_template"] == "rsa2048"
    assert c["ak_public"] == doc["ak_public"] and c["ek_public"] == doc["ek_public"]
    capsys.readouterr()
    assert main(["quote", "activate", str(challenge), "-o", str(response),
                 "--tpm-device", str(ek_tpm.tpm.sock)]) == 0
    r = json.loads(response.read_text())
    assert hashlib.sha256(bytes.fromhex(r["secret"])).hexdigest() == c["secret_sha256"]

    capsys.readouterr()
    argv = ["quote", "verify", str(quote), "--nonce", "ab", "--ek-ca", str(ca), "--activation",
            str(challenge), str(response), "--format", "json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] and out["errors"] == []
    assert out["ek"]["chain_valid"] and out["ek"]["public_valid"]
    assert out["activation"]["secret_valid"] and out["activation"]["ak_valid"]
    assert main(argv[:-2]) == 0
    text = capsys.readouterr().out
    assert "credential activation" in text and "PASSED" in text

    r["secret"] = "00" * 32
    response.write_text(json.dumps(r))
    assert main(argv) == 1
    assert [e["code"] for e in json.loads(capsys.readouterr().out)["errors"]] == [
        "ACTIVATION_SECRET"]

    other_ca = tmp_path / "other.pem"
    other_ca.write_bytes(_ca("someone", ec.generate_private_key(ec.SECP256R1())).public_bytes(
        serialization.Encoding.PEM))
    assert main(["quote", "verify", str(quote), "--ek-ca", str(other_ca), "--format",
                 "json"]) == 1
    assert [e["code"] for e in json.loads(capsys.readouterr().out)["errors"]] == [
        "EK_CERT_ISSUER_UNKNOWN"]
    assert main(["quote", "challenge", "--ak-public", str(quote), "--ek-ca", str(other_ca),
                 "-o", str(tmp_path / "no.json")]) == 1
    assert "EK_CERT_ISSUER_UNKNOWN" in capsys.readouterr().err
    assert not (tmp_path / "no.json").exists()

    # one bit of the blob flipped: the TPM's integrity check fails
    c2 = dict(c)
    c2["credential_blob"] = c["credential_blob"][:-2] + "%02x" % (int(c["credential_blob"][-2:],
                                                                      16) ^ 1)
    challenge.write_text(json.dumps(c2))
    assert main(["quote", "activate", str(challenge), "-o", str(response),
                 "--tcti", ek_tpm.tcti]) == 1
    assert "TPM_RC_INTEGRITY" in capsys.readouterr().err

    bare = tmp_path / "bare.json"
    assert main(["quote", "get", "-o", str(bare), "--tcti", ek_tpm.tcti, "--pcrs", "0",
                 "--no-ek"]) == 0
    capsys.readouterr()
    assert main(["quote", "verify", str(bare), "--ek-ca", str(ca)]) == 2
    assert "no EK certificate to check" in capsys.readouterr().err
