"""TPMS_ATTEST / TPMT_SIGNATURE vectors (run by pytest and by MicroPython).

The expected bytes are written out field by field from TPM 2.0 Library Part 2
(§10.12.12 TPMS_ATTEST, §10.12.8 TPMS_QUOTE_INFO, §11.3.4 TPMT_SIGNATURE),
not produced by the code under test; pcrDigest is computed here by hashing
the concatenated values in the order Part 3 §18.4 gives.
"""

from shared_spec import tpm2_attest
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256
from shared_spec.errors import EncodeError, FormatError, TruncatedError, UnsupportedError
from tests.spec._compat import hash_provider, raises


def h(text):
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


NAME = h("000b") + bytes(range(32))          # nameAlg sha256 + digest
NONCE = b"fresh-nonce-0123"
PCR_DIGEST = bytes(range(200, 232))

# magic, type, qualifiedSigner, extraData, clockInfo, firmwareVersion, TPMS_QUOTE_INFO
QUOTE_ATTEST = (
    h("ff544347")                                  # magic TPM_GENERATED_VALUE
    + h("8018")                                    # TPM_ST_ATTEST_QUOTE
    + h("0022") + NAME                             # TPM2B_NAME, 34 bytes
    + h("0010") + NONCE                            # TPM2B_DATA, 16 bytes
    + h("0000000000012345")                        # clock (ms)
    + h("00000002") + h("00000003") + h("01")      # resetCount, restartCount, safe
    + h("2023112200000001")                        # firmwareVersion
    + h("00000002")                                # TPML_PCR_SELECTION.count
    + h("000b 03 ff8000")                          # sha256: PCRs 0-7, 15 (bit 15 = byte 1 bit 7)
    + h("0004 03 000401")                          # sha1: PCRs 10, 16
    + h("0020") + PCR_DIGEST                       # TPM2B_DIGEST
)
# offsets of the fields above
OFF_EXTRA = 4 + 2 + 2 + 34
OFF_SAFE = OFF_EXTRA + 2 + 16 + 8 + 4 + 4
OFF_SELECT = OFF_SAFE + 1 + 8


def test_quote_attest_fields():
    a = tpm2_attest.parse_attest(QUOTE_ATTEST, source="q.bin")
    assert a.magic == 0xFF544347 and a.type == 0x8018 and a.is_quote
    assert a.qualified_signer == NAME
    assert a.extra_data == NONCE
    c = a.clock_info
    assert (c.clock, c.reset_count, c.restart_count, c.safe) == (0x12345, 2, 3, 1)
    assert a.firmware_version == 0x2023112200000001
    assert a.pcr_select == [(ALG_SHA256, [0, 1, 2, 3, 4, 5, 6, 7, 15]), (ALG_SHA1, [10, 16])]
    assert a.pcr_digest == PCR_DIGEST
    assert a.offsets["extraData"] == OFF_EXTRA
    assert a.offsets["attested.quote.pcrSelect"] == OFF_SELECT
    d = a.to_dict()
    assert d["type"] == "TPM_ST_ATTEST_QUOTE" and d["magic"] == "0xff544347"
    assert d["pcr_select"][1] == {"alg": "sha1", "pcrs": [10, 16]}


def test_quote_attest_round_trip():
    a = tpm2_attest.parse_attest(QUOTE_ATTEST)
    assert tpm2_attest.encode_attest(a) == QUOTE_ATTEST


def test_other_attest_types_keep_their_body():
    body = h("0022") + NAME + h("0022") + NAME        # TPMS_CERTIFY_INFO: name, qualifiedName
    data = QUOTE_ATTEST[:4] + h("8017") + QUOTE_ATTEST[6:OFF_SELECT] + body
    a = tpm2_attest.parse_attest(data)
    assert not a.is_quote and a.attested == body and a.pcr_select == []
    assert tpm2_attest.encode_attest(a) == data
    assert tpm2_attest.attest_type_name(a.type) == "TPM_ST_ATTEST_CERTIFY"


def test_truncated_attest_names_field_and_offset():
    e = raises(TruncatedError, tpm2_attest.parse_attest, QUOTE_ATTEST[:OFF_EXTRA + 10], "q.bin")
    assert e.field == "extraData" and e.offset == OFF_EXTRA + 2 and e.source == "q.bin"
    e = raises(TruncatedError, tpm2_attest.parse_attest, QUOTE_ATTEST[:-1])
    assert e.field == "attested.quote.pcrDigest"


def test_bad_attest_fields():
    bad = bytearray(QUOTE_ATTEST)
    bad[OFF_SAFE] = 2
    e = raises(FormatError, tpm2_attest.parse_attest, bytes(bad))
    assert e.field == "clockInfo.safe" and e.offset == OFF_SAFE
    big = QUOTE_ATTEST[:OFF_EXTRA] + h("0043") + bytes(67)
    e = raises(FormatError, tpm2_attest.parse_attest, big)
    assert e.field == "extraData.size" and e.offset == OFF_EXTRA
    e = raises(FormatError, tpm2_attest.parse_attest, QUOTE_ATTEST + b"\0")
    assert e.offset == len(QUOTE_ATTEST) and "after TPMS_QUOTE_INFO" in e.message


ECDSA_SIG = (h("0018") + h("000b")                  # sigAlg ECDSA, hash sha256
             + h("0020") + bytes(range(1, 33))      # signatureR
             + h("0020") + bytes(range(33, 65)))    # signatureS
RSA_SIG = h("0014") + h("000b") + h("0100") + bytes(256)


def test_signatures():
    s = tpm2_attest.parse_signature(ECDSA_SIG)
    assert s.is_ecc and s.hash_alg == ALG_SHA256
    assert s.r == bytes(range(1, 33)) and s.s == bytes(range(33, 65))
    assert tpm2_attest.encode_signature(s) == ECDSA_SIG
    r = tpm2_attest.parse_signature(RSA_SIG)
    assert r.is_rsa and r.sig_alg == tpm2_attest.TPM_ALG_RSASSA and r.sig == bytes(256)
    assert tpm2_attest.encode_signature(r) == RSA_SIG
    n = tpm2_attest.parse_signature(h("0010"))
    assert n.sig_alg == tpm2_attest.TPM_ALG_NULL and tpm2_attest.encode_signature(n) == h("0010")
    assert r.to_dict()["sig_alg"] == "rsassa" and s.to_dict()["r"] == bytes(range(1, 33)).hex()


def test_bad_signatures():
    e = raises(UnsupportedError, tpm2_attest.parse_signature, h("0001 000b"), "sig")
    assert e.field == "sigAlg" and e.offset == 0 and e.source == "sig"
    e = raises(TruncatedError, tpm2_attest.parse_signature, ECDSA_SIG[:-1])
    assert e.field == "signature.ecdsa.signatureS"
    e = raises(FormatError, tpm2_attest.parse_signature, ECDSA_SIG + b"x")
    assert e.offset == len(ECDSA_SIG)
    e = raises(EncodeError, tpm2_attest.encode_signature, tpm2_attest.Signature(0x0001))
    assert e.field == "sigAlg"


def _values():
    out = {ALG_SHA256: {}, ALG_SHA1: {}}
    for p in range(24):
        out[ALG_SHA256][p] = bytes([p]) * 32
        out[ALG_SHA1][p] = bytes([0x80 + p]) * 20
    return out


def test_pcr_digest_in_selection_order():
    provider = hash_provider()
    values = _values()
    sel = [(ALG_SHA256, [15, 0, 7]), (ALG_SHA1, [10])]
    concat = values[ALG_SHA256][0] + values[ALG_SHA256][7] + values[ALG_SHA256][15] \
        + values[ALG_SHA1][10]
    want = provider.digest(ALG_SHA256, concat)
    assert tpm2_attest.pcr_digest(provider, ALG_SHA256, sel, values) == want
    # another bank order is another digest
    other = tpm2_attest.pcr_digest(provider, ALG_SHA256, [sel[1], sel[0]], values)
    assert other != want
    assert other == provider.digest(ALG_SHA256, values[ALG_SHA1][10] + concat[:96])


def test_pcr_digest_needs_every_selected_value():
    values = _values()
    del values[ALG_SHA256][10]
    e = raises(FormatError, tpm2_attest.selected_values, [(ALG_SHA256, [9, 10])], values)
    assert e.field == "pcrs.sha256.10"
    values[ALG_SHA256][10] = bytes(20)
    e = raises(FormatError, tpm2_attest.selected_values, [(ALG_SHA256, [10])], values)
    assert e.field == "pcrs.sha256.10" and "20 bytes" in e.message


def test_check_quote_codes():
    a = tpm2_attest.parse_attest(QUOTE_ATTEST)
    assert tpm2_attest.check_quote(a, NONCE) == []
    assert tpm2_attest.check_quote(a) == []
    codes = [c for c, _ in tpm2_attest.check_quote(a, b"other")]
    assert codes == ["TPM_QUOTE_NONCE"]
    a.magic = 0x12345678
    a.type = tpm2_attest.TPM_ST_ATTEST_CERTIFY
    found = tpm2_attest.check_quote(a, NONCE)
    assert [c for c, _ in found] == ["TPM_ATTEST_MAGIC", "TPM_ATTEST_TYPE"]
    assert "0x12345678" in found[0][1] and "TPM_ST_ATTEST_CERTIFY" in found[1][1]
