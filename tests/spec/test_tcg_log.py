"""TCG log codec and replay vectors (run by pytest and by MicroPython).

Expected register values are computed here step by step with the hash
provider, independently of shared_spec.replay.
"""

from shared_spec.algorithms import ALG_SHA1, ALG_SHA256
from shared_spec.ccel import CcelTable
from shared_spec.errors import FormatError, LimitError, SpecError, TruncatedError
from shared_spec.event_types import EV_EVENT_TAG, EV_NO_ACTION, EV_POST_CODE, EV_SEPARATOR
from shared_spec.registers import INDEX_CC_MR, cc_mr_label, pcr_to_cc_mr
from shared_spec.replay import replay
from shared_spec.tagged_event import TaggedEvent
from shared_spec.tcg_log import (
    FORMAT_CRYPTO_AGILE,
    FORMAT_SHA1,
    SpecIdEvent,
    encode_pcr_event,
    encode_pcr_event2,
    encode_spec_id_header,
    encode_startup_locality,
    parse_tcg_log,
)
from tests.spec._compat import hash_provider, raises

SPEC = SpecIdEvent(algorithms=[(ALG_SHA1, 20), (ALG_SHA256, 32)], vendor_info=b"cvm")


def _digests(h, data):
    return [(ALG_SHA1, h.digest(ALG_SHA1, data)), (ALG_SHA256, h.digest(ALG_SHA256, data))]


def _sample_log(h, locality=None):
    parts = [encode_spec_id_header(SPEC)]
    if locality is not None:
        parts.append(encode_pcr_event2(0, EV_NO_ACTION, [(ALG_SHA1, b"\0" * 20),
                                                         (ALG_SHA256, b"\0" * 32)],
                                       encode_startup_locality(locality)))
    for index, etype, data in ((0, EV_POST_CODE, b"POST"), (0, EV_SEPARATOR, b"\0\0\0\0"),
                               (7, EV_SEPARATOR, b"\0\0\0\0"),
                               (15, EV_EVENT_TAG, TaggedEvent(0x43564D43, b"x").encode())):
        parts.append(encode_pcr_event2(index, etype, _digests(h, data), data))
    return b"".join(parts)


def test_spec_id_round_trip():
    enc = SPEC.encode()
    dec = SpecIdEvent.decode(enc)
    assert dec.algorithms == [(ALG_SHA1, 20), (ALG_SHA256, 32)]
    assert dec.vendor_info == b"cvm"
    assert dec.encode() == enc


def test_spec_id_rejects_wrong_digest_size():
    bad = SpecIdEvent(algorithms=[(ALG_SHA256, 20)]).encode()
    e = raises(FormatError, SpecIdEvent.decode, bad)
    assert e.field == "SpecIdEvent.digestSizes.digestSize"


def test_agile_log_round_trip_and_replay():
    h = hash_provider()
    data = _sample_log(h)
    log = parse_tcg_log(data)
    assert log.format == FORMAT_CRYPTO_AGILE
    assert len(log.events) == 4
    assert log.encode() == data
    res = replay(log.events, h)
    for alg in (ALG_SHA1, ALG_SHA256):
        size = 20 if alg == ALG_SHA1 else 32
        pcr0 = b"\0" * size
        for d in (b"POST", b"\0\0\0\0"):
            pcr0 = h.digest(alg, pcr0 + h.digest(alg, d))
        assert res.registers[0][alg] == pcr0


def test_startup_locality_sets_pcr0_initial_value():
    h = hash_provider()
    log = parse_tcg_log(_sample_log(h, locality=3))
    res = replay(log.events, h)
    start = b"\0" * 31 + b"\x03"
    want = h.digest(ALG_SHA256, start + h.digest(ALG_SHA256, b"POST"))
    want = h.digest(ALG_SHA256, want + h.digest(ALG_SHA256, b"\0\0\0\0"))
    assert res.registers[0][ALG_SHA256] == want


def test_no_action_is_not_extended():
    h = hash_provider()
    data = encode_spec_id_header(SPEC) + encode_pcr_event2(
        5, EV_NO_ACTION, _digests(h, b"x"), b"x")
    res = replay(parse_tcg_log(data).events, h)
    assert 5 not in res.registers


def test_legacy_sha1_log():
    h = hash_provider()
    data = encode_pcr_event(0, EV_POST_CODE, h.digest(ALG_SHA1, b"a"), b"a") + \
        encode_pcr_event(4, EV_SEPARATOR, h.digest(ALG_SHA1, b"\0" * 4), b"\0" * 4)
    log = parse_tcg_log(data)
    assert log.format == FORMAT_SHA1
    assert log.encode() == data
    res = replay(log.events, h)
    assert res.registers[4][ALG_SHA1] == h.digest(ALG_SHA1, b"\0" * 20 +
                                                  h.digest(ALG_SHA1, b"\0" * 4))


def test_truncated_log_reports_offset_and_count():
    h = hash_provider()
    data = _sample_log(h)
    cut = data[:-3]
    e = raises(SpecError, parse_tcg_log, cut)
    assert e.parsed_count == 3
    assert e.offset is not None and e.offset < len(cut)
    lenient = parse_tcg_log(cut, strict=False)
    assert len(lenient.events) == 3 and lenient.error is not None


def test_huge_event_size_is_refused_without_allocating():
    data = encode_spec_id_header(SPEC) + b"\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00" + \
        b"\xff\xff\xff\x7f"
    e = raises(LimitError, parse_tcg_log, data)
    assert e.field == "TCG_PCR_EVENT2.EventSize"


def test_unknown_algorithm_in_record():
    data = encode_spec_id_header(SPEC) + encode_pcr_event2(0, 1, [(0x000C, b"\0" * 48)], b"")
    e = raises(FormatError, parse_tcg_log, data)
    assert e.field == "TCG_PCR_EVENT2.Digests.hashAlg"


def test_zero_size_records_terminate():
    # 12-byte records with count 0 and empty data: must progress, never loop.
    rec = encode_pcr_event2(3, EV_POST_CODE, [], b"")
    log = parse_tcg_log(encode_spec_id_header(SPEC) + rec * 50)
    assert len(log.events) == 50


def test_ff_padding_ends_the_log():
    h = hash_provider()
    body = _sample_log(h)
    log = parse_tcg_log(body + b"\xff" * 1000)
    assert len(log.events) == 4
    assert log.trailer == b"\xff" * 1000
    assert log.encode() == body + b"\xff" * 1000


def test_truncated_header_is_an_error():
    raises(TruncatedError, parse_tcg_log, b"\x00" * 10)


def test_ccel_table_round_trip_and_checksum():
    t = CcelTable(cc_type=2, laml=0x10000, lasa=0x7F000000)
    enc = t.encode()
    assert len(enc) == 56
    assert sum(enc) & 0xFF == 0
    d = CcelTable.decode(enc)
    assert (d.cc_type, d.laml, d.lasa) == (2, 0x10000, 0x7F000000)
    assert d.checksum_valid
    assert d.encode() == enc


def test_ccel_table_wrong_signature():
    e = raises(FormatError, CcelTable.decode, b"XXXX" + b"\0" * 52)
    assert e.field == "Signature"


def test_cc_mr_mapping_and_labels():
    assert [pcr_to_cc_mr(p) for p in range(16)] == [0, 1, 2, 2, 2, 2, 2, 1, 3, 3, 3, 3, 3, 3, 3,
                                                    3]
    assert pcr_to_cc_mr(16) is None
    assert cc_mr_label(4) == "MR4 (RTMR3)"
    assert cc_mr_label(0) == "MR0 (MRTD)"


def test_cc_mr_replay_starts_at_zero_and_honours_initial_override():
    h = hash_provider()
    ev = encode_pcr_event2(4, EV_EVENT_TAG, _digests(h, b"e"), b"e")
    log = parse_tcg_log(encode_spec_id_header(SPEC, index=1) + ev)
    init = b"\x01" * 32
    res = replay(log.events, h, INDEX_CC_MR, [ALG_SHA256], {(4, ALG_SHA256): init})
    assert res.registers[4][ALG_SHA256] == h.digest(ALG_SHA256, init + h.digest(ALG_SHA256, b"e"))


def test_tagged_event_round_trip():
    t = TaggedEvent(7, b"cvmchain:leave-initrd")
    assert TaggedEvent.decode(t.encode()).data == b"cvmchain:leave-initrd"
    raises(LimitError, TaggedEvent.decode, b"\x07\0\0\0\xff\0\0\0ab")
