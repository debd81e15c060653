"""TPM 2.0 command/response vectors (run by pytest and by MicroPython).

Expected bytes are written out here field by field from the TPM 2.0 Library
Part 3 layouts (header: tag, size, command code; handles; authorization
area; parameters), not produced by the code under test. Response-code names
and parts follow Part 2 §6.6 (and agree with tpm2-tools' ``tpm2_rc_decode``).
"""

from shared_spec import tpm2
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512
from shared_spec.errors import EncodeError, FormatError, LimitError, SpecError, TruncatedError
from shared_spec.tpm2_rc import TpmResponseError, decode_rc, describe_rc
from tests.spec._compat import raises


def h(text):
    """Bytes from hex with spaces (the fields of a structure, one group each)."""
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


def be32(n):
    return h("%08x" % n)


SHA1_D = bytes(range(20))
SHA256_D = bytes(range(100, 132))


# ------------------------------------------------------------------ commands


def test_startup_clear_bytes():
    #     tag      size      TPM_CC_Startup  TPM_SU_CLEAR
    assert tpm2.startup_clear() == h("8001 0000000c 00000144 0000")
    assert tpm2.startup(tpm2.TPM_SU_STATE) == h("8001 0000000c 00000144 0001")


def test_get_capability_pcrs_bytes():
    #     tag  size      TPM_CC_GetCapability  TPM_CAP_PCRS property count
    want = h("8001 00000016 0000017a 00000005 00000000 00000001")
    assert tpm2.get_capability_pcrs() == want


def test_get_random_bytes():
    assert tpm2.get_random(16) == h("8001 0000000c 0000017b 0010")


def test_pcr_extend_bytes_every_bank_in_one_command():
    body = (h("0000000f")                      # pcrHandle: PCR 15
            + h("00000009")                    # authorizationSize
            + h("40000009 0000 00 0000")       # TPM_RS_PW, nonce {}, attributes, hmac {}
            + h("00000002")                    # TPML_DIGEST_VALUES.count
            + h("0004") + SHA1_D               # TPMT_HA sha1
            + h("000b") + SHA256_D)            # TPMT_HA sha256
    want = h("8002") + be32(10 + len(body)) + h("00000182") + body
    assert len(want) == 87
    cmd = tpm2.pcr_extend(15, [(ALG_SHA1, SHA1_D), (ALG_SHA256, SHA256_D)])
    assert cmd == want
    assert tpm2.parse_pcr_extend_command(cmd) == (15, [(ALG_SHA1, SHA1_D),
                                                       (ALG_SHA256, SHA256_D)], b"")


def test_pcr_read_bytes():
    #          count     sha1 sizeofSelect  PCR 0, 15, 23    sha256 ...
    sel = h("00000002 0004 03 018080 000b 03 018080")
    want = h("8001") + be32(10 + len(sel)) + h("0000017e") + sel
    cmd = tpm2.pcr_read([ALG_SHA1, ALG_SHA256], [23, 0, 15])
    assert cmd == want
    assert tpm2.parse_pcr_read_command(cmd) == [(ALG_SHA1, [0, 15, 23]),
                                                (ALG_SHA256, [0, 15, 23])]
    assert tpm2.pcr_read_selection([(ALG_SHA1, [0, 15, 23]), (ALG_SHA256, [0, 15, 23])]) == want


def test_command_encode_errors():
    e = raises(EncodeError, tpm2.pcr_extend, 15, [(ALG_SHA256, SHA1_D)])
    assert e.field == "digests.digest"
    e = raises(EncodeError, tpm2.pcr_extend, 15, [])
    assert e.field == "digests.count"
    e = raises(EncodeError, tpm2.pcr_extend, 15, [(ALG_SHA1, SHA1_D), (ALG_SHA1, SHA1_D)])
    assert e.field == "digests.hashAlg"
    e = raises(EncodeError, tpm2.pcr_extend, 15, [(0x0099, b"x")])
    assert e.field == "digests.hashAlg"
    e = raises(EncodeError, tpm2.pcr_extend, -1, [(ALG_SHA1, SHA1_D)])
    assert e.field == "pcrHandle"
    e = raises(EncodeError, tpm2.pcr_read, [ALG_SHA1], [24])
    assert e.field == "pcrSelections.pcrSelect"
    e = raises(EncodeError, tpm2.pcr_read_selection, [(ALG_SHA1, [1]), (ALG_SHA1, [2])])
    assert e.field == "pcrSelections.hash"


def test_command_decode_errors():
    cmd = tpm2.pcr_extend(15, [(ALG_SHA1, SHA1_D)])
    e = raises(TruncatedError, tpm2.parse_pcr_extend_command, cmd[:-1])
    assert e.field == "commandSize" and e.offset == 2
    bad_session = cmd[:18] + h("40000001") + cmd[22:]
    e = raises(FormatError, tpm2.parse_pcr_extend_command, bad_session)
    assert e.field == "sessionHandle" and e.offset == 18
    e = raises(FormatError, tpm2.parse_pcr_read_command, cmd)
    assert e.field == "commandCode"


# ----------------------------------------------------------------- responses


def test_response_header_sizes():
    ok = h("8001 0000000a 00000000")
    assert tpm2.parse_response_header(ok) == (0x8001, 10, 0)
    e = raises(TruncatedError, tpm2.parse_response_header, ok[:5])
    assert e.field == "responseSize" and e.offset == 2
    e = raises(TruncatedError, tpm2.parse_response_header, ok[:8])
    assert e.field == "responseCode" and e.offset == 6
    e = raises(TruncatedError, tpm2.parse_response_header, h("8001 0000000c 00000000 00"))
    assert e.field == "responseSize" and e.offset == 2
    e = raises(FormatError, tpm2.parse_response_header, ok + b"\0")
    assert e.field == "responseSize"
    e = raises(FormatError, tpm2.parse_response_header, h("1234 0000000a 00000000"))
    assert e.field == "tag" and e.offset == 0


def test_get_capability_pcrs_response():
    resp = h("8001 0000002b 00000000"   # header
             "00"                       # moreData: NO
             "00000005"                 # capability TPM_CAP_PCRS
             "00000004"                 # TPML_PCR_SELECTION.count
             "0004 03 000000"           # sha1: nothing allocated
             "000b 03 ffffff"           # sha256: PCRs 0-23
             "000c 03 ffffff"           # sha384: PCRs 0-23
             "000d 03 000000")          # sha512: nothing allocated
    sel = tpm2.parse_get_capability_pcrs(resp)
    every = set(range(24))
    assert sel == [(ALG_SHA1, set()), (ALG_SHA256, every), (ALG_SHA384, every),
                   (ALG_SHA512, set())]
    assert tpm2.active_banks(sel) == [ALG_SHA256, ALG_SHA384]
    assert tpm2.encode_get_capability_pcrs_response(sel) == resp


def test_get_capability_pcrs_response_errors():
    resp = h("8001 00000019 00000000 00 00000005 00000001 000b 03 ffffff")
    assert tpm2.parse_get_capability_pcrs(resp) == [(ALG_SHA256, set(range(24)))]
    e = raises(FormatError, tpm2.parse_get_capability_pcrs,
               resp[:10] + h("02") + resp[11:])
    assert e.field == "moreData" and e.offset == 10
    e = raises(FormatError, tpm2.parse_get_capability_pcrs, resp[:11] + be32(6) + resp[15:])
    assert e.field == "capabilityData.capability" and e.offset == 11
    too_wide = h("8001 0000001f 00000000 00 00000005 00000001 000b 09") + bytes(9)
    e = raises(LimitError, tpm2.parse_get_capability_pcrs, too_wide)
    assert e.field == "capabilityData.assignedPCR.sizeofSelect" and e.offset == 21
    many = h("8001 00000013 00000000 00 00000005 00000011")
    e = raises(LimitError, tpm2.parse_get_capability_pcrs, many)
    assert e.field == "capabilityData.assignedPCR.count"
    short = h("8001 00000017 00000000 00 00000005 00000001 000b 03 ff")
    e = raises(TruncatedError, tpm2.parse_get_capability_pcrs, short)
    assert e.field == "capabilityData.assignedPCR.pcrSelect" and e.offset == 22
    e = raises(FormatError, tpm2.parse_get_capability_pcrs, h("8002") + resp[2:])
    assert e.field == "tag"


def _pcr_read_resp():
    v15 = bytes(range(32))
    v16 = bytes(range(1, 21))
    params = (h("00000014")                 # pcrUpdateCounter 20
              + h("00000002 0004 03 000001 000b 03 008000")  # sha1 PCR 16, sha256 PCR 15
              + h("00000002")               # TPML_DIGEST.count
              + h("0014") + v16             # TPM2B_DIGEST sha1 PCR 16
              + h("0020") + v15)            # TPM2B_DIGEST sha256 PCR 15
    return h("8001") + be32(10 + len(params)) + h("00000000") + params, v15, v16


def test_pcr_read_response():
    resp, v15, v16 = _pcr_read_resp()
    counter, sel, values = tpm2.parse_pcr_read_response(resp)
    assert counter == 20
    assert sel == [(ALG_SHA1, [16]), (ALG_SHA256, [15])]
    assert values == {ALG_SHA1: {16: v16}, ALG_SHA256: {15: v15}}
    assert tpm2.parse_pcr_read(resp) == values
    assert tpm2.encode_pcr_read_response(counter, sel, values) == resp


def test_pcr_read_response_errors():
    resp, _, _ = _pcr_read_resp()
    # digest count that does not match the selection
    bad = resp[:30] + be32(1) + resp[34:]
    e = raises(FormatError, tpm2.parse_pcr_read_response, bad)
    assert e.field == "pcrValues.count" and e.offset == 30
    # more than 8 digests in one TPML_DIGEST
    e = raises(LimitError, tpm2.parse_pcr_read_response, resp[:30] + be32(9) + resp[34:])
    assert e.field == "pcrValues.count"
    # a sha1 value of 32 bytes (the size field says so, the bytes are there)
    v = bytes(32)
    wrong = resp[:34] + h("0020") + v + resp[56:]
    wrong = wrong[:2] + be32(len(wrong)) + wrong[6:]
    e = raises(FormatError, tpm2.parse_pcr_read_response, wrong)
    assert e.field == "pcrValues.digests.size" and e.offset == 34
    # a digest size past the end of the (consistently sized) response
    cut = resp[:-1]
    cut = cut[:2] + be32(len(cut)) + cut[6:]
    e = raises(TruncatedError, tpm2.parse_pcr_read_response, cut)
    assert e.field == "pcrValues.digests.size" and e.offset == 56
    # bytes after the last value
    extra = resp + b"\0"
    extra = extra[:2] + be32(len(extra)) + extra[6:]
    e = raises(FormatError, tpm2.parse_pcr_read_response, extra)
    assert e.field == "pcrValues" and e.offset == len(resp)
    # response size that disagrees with the bytes
    e = raises(TruncatedError, tpm2.parse_pcr_read_response, resp[:-3])
    assert e.field == "responseSize"
    e = raises(FormatError, tpm2.parse_pcr_read_response, resp + b"\0\0")
    assert e.field == "responseSize"


def test_pcr_extend_response():
    #        tag  size      rc       parameterSize nonce attrs hmac
    ok = h("8002 00000013 00000000 00000000 0000 01 0000")
    assert tpm2.parse_pcr_extend_response(ok) == 1
    assert tpm2.encode_pcr_extend_response(1) == ok
    bad = h("8002 00000013 00000000 00000004 0000 01 0000")
    e = raises(FormatError, tpm2.parse_pcr_extend_response, bad)
    assert e.field == "parameterSize" and e.offset == 10
    e = raises(FormatError, tpm2.parse_pcr_extend_response, h("8001") + ok[2:])
    assert e.field == "tag"
    e = raises(TruncatedError, tpm2.parse_pcr_extend_response, h("8002 00000012") + ok[6:-1])
    assert e.field == "authResponse.hmac.size"


def test_get_random_response():
    assert tpm2.parse_get_random_response(h("8001 0000000f 00000000 0003 a1b2c3")) == h("a1b2c3")
    e = raises(LimitError, tpm2.parse_get_random_response, h("8001 0000000c 00000000 0041"))
    assert e.field == "randomBytes.size"


# ------------------------------------------------------------ response codes


def test_error_response_raises_decoded_code():
    resp = h("8001 0000000a 00000907")
    e = raises(TpmResponseError, tpm2.parse_pcr_extend_response, resp)
    assert isinstance(e, SpecError)
    assert e.rc == 0x907 and e.name == "TPM_RC_LOCALITY"
    assert e.field == "responseCode" and e.offset == 6
    assert str(e) == ("TPM2_PCR_Extend failed: TPM_RC_LOCALITY (0x907): "
                      "the command is not allowed at the current locality")
    e = raises(TpmResponseError, tpm2.parse_pcr_read_response, h("8001 0000000a 000002c4"))
    assert e.info.parameter == 2 and e.info.base == 0x084
    e = raises(TpmResponseError, tpm2.check_response, h("8001 0000000a 00000100"), "TPM2_Startup")
    assert "TPM_RC_INITIALIZE (0x100)" in str(e)
    # a TPM 1.2-tagged answer to a bad tag
    e = raises(TpmResponseError, tpm2.parse_startup_response, h("00c4 0000000a 0000001e"))
    assert e.name == "TPM_RC_BAD_TAG"


def test_decode_format_zero():
    # (code, name, kind)
    for rc, name, kind in ((0x100, "TPM_RC_INITIALIZE", "error"),
                           (0x101, "TPM_RC_FAILURE", "error"),
                           (0x127, "TPM_RC_PCR", "error"),
                           (0x128, "TPM_RC_PCR_CHANGED", "error"),
                           (0x143, "TPM_RC_COMMAND_CODE", "error"),
                           (0x148, "TPM_RC_NV_LOCKED", "error"),
                           (0x14b, "TPM_RC_NV_SPACE", "error"),
                           (0x14c, "TPM_RC_NV_DEFINED", "error"),
                           (0x907, "TPM_RC_LOCALITY", "warning"),
                           (0x908, "TPM_RC_YIELDED", "warning"),
                           (0x90a, "TPM_RC_TESTING", "warning"),
                           (0x921, "TPM_RC_LOCKOUT", "warning"),
                           (0x922, "TPM_RC_RETRY", "warning"),
                           (0x903, "TPM_RC_SESSION_MEMORY", "warning")):
        info = decode_rc(rc)
        assert (info.name, info.kind, info.where) == (name, kind, ""), hex(rc)
    assert decode_rc(0x922).retryable and decode_rc(0x908).retryable
    assert not decode_rc(0x907).retryable
    assert decode_rc(0).kind == "success"


def test_decode_format_one():
    # (code, name, parameter, handle, session), as tpm2_rc_decode reports them
    for rc, name, p, hd, s in ((0x2c4, "TPM_RC_VALUE", 2, None, None),
                               (0x1c4, "TPM_RC_VALUE", 1, None, None),
                               (0x184, "TPM_RC_VALUE", None, 1, None),
                               (0x1c3, "TPM_RC_HASH", 1, None, None),
                               (0x1d5, "TPM_RC_SIZE", 1, None, None),
                               (0x28b, "TPM_RC_HANDLE", None, 2, None),
                               (0x08b, "TPM_RC_HANDLE", None, None, None),
                               (0x98e, "TPM_RC_AUTH_FAIL", None, None, 1),
                               (0x9a2, "TPM_RC_BAD_AUTH", None, None, 1),
                               (0xf97, "TPM_RC_TAG", None, None, 7)):
        info = decode_rc(rc)
        assert (info.name, info.kind) == (name, "format1"), hex(rc)
        assert (info.parameter, info.handle, info.session) == (p, hd, s), hex(rc)


def test_describe_rc_text():
    assert describe_rc(0x2c4) == ("TPM_RC_VALUE (0x2c4): value is out of range or not correct "
                                  "for the context, parameter 2")
    assert describe_rc(0x907) == ("TPM_RC_LOCALITY (0x907): the command is not allowed at the "
                                  "current locality")
    assert describe_rc(0x98e).endswith(", session 1")
    assert describe_rc(0x184).endswith(", handle 1")
    # codes no table names still decode
    assert describe_rc(0x970) == "TPM_RC_WARN_0x970 (0x970): unknown warning"
    assert decode_rc(0x530).kind == "vendor"
    assert decode_rc(0x030).kind == "tpm1.2"
    assert decode_rc(0x000a000a).kind == "tss"
    assert "software stack" in describe_rc(0x000a000a)


# ------------------------------------------------------------ PCR_Read loop


SIZES = {ALG_SHA1: 20, ALG_SHA256: 32, ALG_SHA384: 48, ALG_SHA512: 64}


class _StandIn:
    """A TPM stand-in answering PCR_Read with at most ``limit`` values, like a real one."""

    def __init__(self, banks, limit=8, bump_at=None):
        self.banks = banks
        self.limit = limit
        self.calls = 0
        self.counter = 7
        self.bump_at = bump_at

    def value(self, alg, pcr):
        return (bytes([alg, pcr, self.counter]) * 22)[:SIZES[alg]]

    def __call__(self, cmd):
        self.calls += 1
        if self.calls == self.bump_at:
            self.counter += 1
        asked = tpm2.parse_pcr_read_command(cmd)
        left = self.limit
        sel = []
        values = {}
        for alg, pcrs in asked:
            take = pcrs[:left] if alg in self.banks else []
            left -= len(take)
            sel.append((alg, take))
            values[alg] = {p: self.value(alg, p) for p in take}
        return tpm2.encode_pcr_read_response(self.counter, sel, values)


def test_read_pcrs_reissues_for_missing_values():
    banks = [ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512]
    tpm = _StandIn(banks)
    got = tpm2.read_pcrs(tpm, [(alg, range(24)) for alg in banks])
    assert tpm.calls == 12  # 96 values, 8 per call
    for alg in banks:
        assert sorted(got[alg]) == list(range(24))
        for p in range(24):
            assert got[alg][p] == tpm.value(alg, p)


def test_read_pcrs_starts_over_when_the_counter_moves():
    tpm = _StandIn([ALG_SHA256], bump_at=2)
    got = tpm2.read_pcrs(tpm, [(ALG_SHA256, range(24))])
    assert tpm.calls == 2 + 3
    assert got[ALG_SHA256][0] == tpm.value(ALG_SHA256, 0)


def test_read_pcrs_unallocated_bank():
    tpm = _StandIn([ALG_SHA256])
    e = raises(tpm2.TpmProtocolError, tpm2.read_pcrs, tpm, [(ALG_SHA256, [1]), (ALG_SHA1, [1])])
    assert "sha1:1" in str(e)
    assert isinstance(e, SpecError)


def test_read_pcrs_refuses_values_not_asked_for():
    def liar(cmd):
        return tpm2.encode_pcr_read_response(1, [(ALG_SHA1, [3])],
                                             {ALG_SHA1: {3: bytes(20)}})
    e = raises(tpm2.TpmProtocolError, tpm2.read_pcrs, liar, [(ALG_SHA1, [2])])
    assert "PCR 3" in str(e)


def test_format_selection():
    assert tpm2.format_selection([(ALG_SHA1, [2, 0]), (ALG_SHA256, [15])]) == "sha1:0,2+sha256:15"
