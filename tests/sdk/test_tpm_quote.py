"""cloud_sdk.tpm_quote and ``cvmchain quote get|verify`` on a TPM: a real swtpm, a real AK.

Quotes are made through tpm2-pytss against a swtpm (the fixtures of
tests/test_tpm2_swtpm.py: TCTI ``swtpm:path=SOCK``). Expected values are
derived here independently: PCR values with hashlib (new = H(old || digest)),
the pcrDigest as SHA-256 of the concatenated values, the signature checked
with ``cryptography`` directly from the TPMT_SIGNATURE bytes (laid out by hand
from TPM 2.0 Part 2 §11.3.4), the nonce and digest located in the TPMS_ATTEST
bytes by their Part 2 offsets.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cloud_sdk import tpm_quote
from cloud_sdk.backends import SocketPerCommand, TpmBackend
from cloud_sdk.cli import main
from cloud_sdk.collect import TPM_QUOTE_BLOB, collect_evidence
from cloud_sdk.errors import InputError
from cloud_sdk.tpm_quote import AttestationKey, TpmQuote, get_tpm_quote, verify_tpm_quote
from shared_spec.algorithms import ALG_SHA256, alg_name
from tests import test_tpm2_swtpm
from tests.fixtures import ROOT
from tests.test_tpm2_swtpm import Swtpm

# fixtures shared with test_tpm2_swtpm
raw_swtpm = test_tpm2_swtpm.raw_swtpm
swtpm = test_tpm2_swtpm.swtpm

HAVE_PYTSS = tpm_quote.available()
needs_pytss = pytest.mark.skipif(not HAVE_PYTSS, reason="tpm2-pytss is not importable "
                                 "(apt-get install python3-tpm2-pytss, or pip install "
                                 "'cvmchain[tpm]')")

EVENT15 = b"cvmchain:test:agent-event"
EVENT10 = b"ima: boot_aggregate stand-in"


def _extend(tpm: Swtpm) -> dict[int, dict[int, bytes]]:
    """Extend PCR 15 and 10 in every bank; their values, computed with hashlib."""
    dev = SocketPerCommand(str(tpm.sock))
    banks = dev.get_active_banks()
    want: dict[int, dict[int, bytes]] = {}
    for pcr, event in ((15, EVENT15), (10, EVENT10)):
        digests = {a: hashlib.new(alg_name(a), event).digest() for a in banks}
        dev.pcr_extend(pcr, digests)
        for a in banks:
            size = hashlib.new(alg_name(a)).digest_size
            want.setdefault(a, {})[pcr] = hashlib.new(alg_name(a), bytes(size) + digests[a]
                                                      ).digest()
    return want


def _attest_offsets(attest: bytes) -> tuple[bytes, int]:
    """(extraData, offset of the TPMS_CLOCK_INFO) read by Part 2 offsets."""
    name_size = int.from_bytes(attest[6:8], "big")
    at = 8 + name_size
    extra_size = int.from_bytes(attest[at:at + 2], "big")
    return attest[at + 2:at + 2 + extra_size], at + 2 + extra_size


@pytest.mark.swtpm
@needs_pytss
def test_quote_then_verify(swtpm: Swtpm) -> None:
    want = _extend(swtpm)
    banks = SocketPerCommand(str(swtpm.sock)).get_active_banks()
    nonce = bytes(range(32))
    q = get_tpm_quote(nonce, tcti=swtpm.tcti)
    # the selection: PCRs 0-7, 10, 15 of every active bank, in the TPM's bank order
    assert q.selection == [(a, [0, 1, 2, 3, 4, 5, 6, 7, 10, 15]) for a in banks]
    for a in banks:
        assert q.pcrs[a][15] == want[a][15] and q.pcrs[a][10] == want[a][10]
        assert q.pcrs[a][0] == bytes(hashlib.new(alg_name(a)).digest_size)  # no firmware
    # TPMS_ATTEST: magic, type, extraData, and the pcrDigest at the very end
    assert q.attest[:6] == bytes.fromhex("ff544347" "8018")
    extra, _ = _attest_offsets(q.attest)
    assert extra == nonce
    concat = b"".join(q.pcrs[a][p] for a in banks for p in (0, 1, 2, 3, 4, 5, 6, 7, 10, 15))
    assert q.attest[-34:] == b"\x00\x20" + hashlib.sha256(concat).digest()
    # TPMT_SIGNATURE: ECDSA (0x0018), SHA-256 (0x000b), r and s of 32 bytes
    sig = q.signature
    assert sig[:6] == bytes.fromhex("0018" "000b" "0020") and sig[38:40] == b"\x00\x20"
    key = serialization.load_pem_public_key(q.ak_public_pem.encode())
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    der = encode_dss_signature(int.from_bytes(sig[6:38], "big"), int.from_bytes(sig[40:72], "big"))
    key.verify(der, q.attest, ec.ECDSA(hashes.SHA256()))  # raises when it does not verify

    res = verify_tpm_quote(q, nonce=nonce)
    assert res.passed and res.errors == []
    assert res.signature_valid and res.attest_valid and res.nonce_valid and res.pcr_digest_valid
    # the same key every time: a primary from a fixed template
    again = get_tpm_quote(b"", pcrs=[15], banks=[ALG_SHA256], tcti=swtpm.tcti)
    assert again.ak_public_pem == q.ak_public_pem
    assert again.pcrs == {ALG_SHA256: {15: want[ALG_SHA256][15]}}
    assert verify_tpm_quote(again).passed and verify_tpm_quote(again).nonce_valid is None


@pytest.mark.swtpm
@needs_pytss
def test_tampering_fails_with_the_right_error(swtpm: Swtpm) -> None:
    _extend(swtpm)
    nonce = b"nonce-for-tamper"
    good = get_tpm_quote(nonce, tcti=swtpm.tcti)

    def flipped(at: int) -> TpmQuote:
        q = TpmQuote.loads(good.dumps())
        b = bytearray(q.attest)
        b[at] ^= 0x01
        q.attest = bytes(b)
        return q

    _, clock_at = _attest_offsets(good.attest)
    res = verify_tpm_quote(flipped(clock_at + 7), nonce=nonce)  # the clock's last byte
    assert not res.signature_valid and not res.passed
    assert [e["code"] for e in res.errors] == ["TPM_QUOTE_SIGNATURE"]
    assert res.nonce_valid and res.pcr_digest_valid  # only the signature notices
    res = verify_tpm_quote(flipped(0), nonce=nonce)  # the magic
    assert [e["code"] for e in res.errors] == ["TPM_QUOTE_SIGNATURE", "TPM_ATTEST_MAGIC"]

    res = verify_tpm_quote(good, nonce=b"another-nonce")
    assert res.signature_valid and res.nonce_valid is False and not res.passed
    assert [e["code"] for e in res.errors] == ["TPM_QUOTE_NONCE"]

    changed = TpmQuote.loads(good.dumps())
    value = bytearray(changed.pcrs[ALG_SHA256][15])
    value[0] ^= 0x80
    changed.pcrs[ALG_SHA256][15] = bytes(value)
    res = verify_tpm_quote(changed, nonce=nonce)
    assert res.signature_valid and not res.pcr_digest_valid and not res.passed
    assert [e["code"] for e in res.errors] == ["TPM_QUOTE_PCR_DIGEST"]

    missing = TpmQuote.loads(good.dumps())
    del missing.pcrs[ALG_SHA256][7]
    res = verify_tpm_quote(missing, nonce=nonce)
    assert [e["code"] for e in res.errors] == ["TPM_QUOTE_PCR_MISSING"]
    assert "pcrs.sha256.7" in res.errors[0]["message"]

    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    res = verify_tpm_quote(good, nonce=nonce, ak_public_pem=other)
    assert [e["code"] for e in res.errors] == ["TPM_QUOTE_SIGNATURE"]


@pytest.mark.swtpm
@needs_pytss
def test_rsa_owner_and_persistent_aks(swtpm: Swtpm) -> None:
    rsa = get_tpm_quote(b"r", banks=[ALG_SHA256], tcti=swtpm.tcti,
                        ak=AttestationKey(hierarchy="owner", key_type="rsa"))
    assert rsa.signature[:4] == bytes.fromhex("0014" "000b")  # RSASSA, SHA-256
    assert verify_tpm_quote(rsa, nonce=b"r").passed
    handle = 0x81010077
    with pytest.raises(tpm_quote.TpmQuoteUnavailable, match="no key at persistent handle"):
        get_tpm_quote(b"", tcti=swtpm.tcti, ak=AttestationKey(handle=handle))
    made = get_tpm_quote(b"1", tcti=swtpm.tcti, ak=AttestationKey(handle=handle, persist=True))
    used = get_tpm_quote(b"2", tcti=swtpm.tcti, ak=AttestationKey(handle=handle))
    assert made.ak_public_pem == used.ak_public_pem and "0x81010077" in used.ak
    assert verify_tpm_quote(used, nonce=b"2").passed


@pytest.mark.swtpm
@needs_pytss
def test_cli_quote_get_and_verify(swtpm: Swtpm, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    _extend(swtpm)
    out = tmp_path / "quote.json"
    assert main(["quote", "get", "-o", str(out), "--nonce", "c0ffee", "--backend", "tpm",
                 "--tpm-device", str(swtpm.sock), "--banks", "sha256", "--pcrs", "0-7,15"]) == 0
    assert "TPM quote (cvmchain-tpm-quote/1) of sha256:0,1,2,3,4,5,6,7,15" \
        in capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["schema"] == "cvmchain-tpm-quote/1" and doc["nonce"] == "c0ffee"
    assert doc["tcti"] == "swtpm:path=%s" % swtpm.sock

    assert main(["quote", "verify", str(out), "--nonce", "c0ffee", "--format", "json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["signature_valid"] and res["pcr_digest_valid"] and res["nonce_valid"]
    assert res["errors"] == [] and res["passed"]
    assert main(["quote", "verify", str(out), "--nonce", "c0ffef", "--format", "json"]) == 1
    res = json.loads(capsys.readouterr().out)
    assert res["nonce_valid"] is False and res["errors"][0]["code"] == "TPM_QUOTE_NONCE"

    doc["pcrs"]["sha256"]["15"] = "00" * 32
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["quote", "verify", str(bad)]) == 1
    text = capsys.readouterr().out
    assert "TPM_QUOTE_PCR_DIGEST" in text and "FAILED" in text
    assert main(["quote", "show", "--format", "json", str(out)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["attest"]["extra_data"] == "c0ffee"
    assert shown["attest"]["pcr_select"] == [{"alg": "sha256", "pcrs": [0, 1, 2, 3, 4, 5, 6, 7,
                                                                         15]}]
    assert main(["quote", "verify", str(out), "--report-data", "00" * 64]) == 2
    assert "--report-data is for TDX quotes" in capsys.readouterr().err


@pytest.mark.swtpm
@needs_pytss
def test_collect_includes_a_tpm_quote(swtpm: Swtpm) -> None:
    want = _extend(swtpm)
    nonce = b"bundle-nonce"
    ev = collect_evidence(TpmBackend(device=str(swtpm.sock)), nonce=nonce)
    q = TpmQuote.loads(ev.blobs[TPM_QUOTE_BLOB])
    assert ev.sources[TPM_QUOTE_BLOB] == "swtpm:path=%s" % swtpm.sock
    assert q.pcrs[ALG_SHA256][15] == want[ALG_SHA256][15] == ev.registers["pcr"][15][ALG_SHA256]
    assert verify_tpm_quote(q, nonce=nonce).passed
    long = collect_evidence(TpmBackend(device=str(swtpm.sock)), nonce=bytes(65))
    assert TPM_QUOTE_BLOB not in long.blobs
    assert any("a TPM takes at most 64" in n for n in long.notes)


def test_without_pytss_import_works_and_quote_says_what_to_install() -> None:
    code = ("import sys; sys.modules['tpm2_pytss'] = None\n"
            "import cloud_sdk.cli, cloud_sdk.collect\n"
            "from cloud_sdk import tpm_quote\n"
            "assert not tpm_quote.available()\n"
            "try:\n"
            "    tpm_quote.get_tpm_quote(b'n', tcti='swtpm:path=/nonexistent')\n"
            "except tpm_quote.TpmQuoteUnavailable as e:\n"
            "    print(e)\n"
            "sys.exit(cloud_sdk.cli.main(['quote', 'get', '-o', '/nonexistent/q.json', "
            "'--tcti', 'swtpm:path=/nonexistent']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=False, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "a TPM quote needs tpm2-pytss" in done.stdout
    assert "apt-get install python3-tpm2-pytss" in done.stdout
    assert done.stderr.startswith("cvmchain: error: a TPM quote needs tpm2-pytss")


def test_bad_quote_files_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a cvmchain-tpm-quote/1 document"):
        TpmQuote.from_json({"schema": "other"}, "q.json")
    doc: dict[str, Any] = {"schema": tpm_quote.SCHEMA, "attest": "zz", "signature": "",
                           "ak_public_pem": "x"}
    with pytest.raises(InputError, match=r"^q\.json: attest: not hex$"):
        TpmQuote.from_json(doc, "q.json")
    doc.update(attest="00", pcrs={"md5": {}})
    with pytest.raises(InputError,
                       match=re.escape("q.json: pcrs.md5: unknown hash algorithm 'md5'")):
        TpmQuote.from_json(doc, "q.json")
    doc.update(pcrs={"sha256": {"x": "00"}})
    with pytest.raises(InputError, match=re.escape("q.json: pcrs.sha256.x: not a PCR number")):
        TpmQuote.from_json(doc, "q.json")
    with pytest.raises(InputError, match="nonce of 65 bytes"):
        get_tpm_quote(bytes(65), tcti="swtpm:path=/nonexistent")
    with pytest.raises(InputError, match="'8-x' is not a PCR"):
        tpm_quote.parse_pcr_list("0-7,8-x")
    assert tpm_quote.parse_pcr_list("0-3,15,10") == [0, 1, 2, 3, 10, 15]


def test_verify_checks_the_bundles_tpm_quote(swtpm: Swtpm) -> None:
    """cloud_sdk.verify checks a bundle's quote: it verifies and attests the bundle's PCRs;
    a register edited in the bundle, or a different nonce, is reported."""
    import copy

    from cloud_sdk.verify import verify

    _extend(swtpm)
    nonce = b"verify-nonce"
    ev = collect_evidence(TpmBackend(device=str(swtpm.sock)), nonce=nonce)
    codes = {f.code: f for f in verify(ev).findings}
    assert "TPM_QUOTE_VERIFIED" in codes and codes["TPM_QUOTE_VERIFIED"].severity == "info"
    assert not [c for c in codes if c.startswith("TPM_QUOTE_") and c != "TPM_QUOTE_VERIFIED"]

    edited = copy.deepcopy(ev)
    old = edited.registers["pcr"][15][ALG_SHA256]
    edited.registers["pcr"][15][ALG_SHA256] = bytes(b ^ 0xFF for b in old)
    bad = [f for f in verify(edited).findings if f.code == "TPM_QUOTE_REGISTERS"]
    assert [(f.register, f.severity) for f in bad] == [(15, "error")]
    assert old.hex() in bad[0].message
    assert "TPM_QUOTE_VERIFIED" not in {f.code for f in verify(edited).findings}

    replayed = copy.deepcopy(ev)
    replayed.nonce = b"another-nonce"
    assert "TPM_QUOTE_NONCE" in {f.code for f in verify(replayed).findings}
