"""Property tests: TCG / CCEL decoders round-trip and fail only with SpecError."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sdk.hashing import hashlib_provider
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384
from shared_spec.ccel import CcelTable
from shared_spec.errors import SpecError
from shared_spec.replay import replay
from shared_spec.tcg_log import (
    SpecIdEvent,
    TcgEvent,
    TcgLog,
    encode_pcr_event2,
    encode_spec_id_header,
    parse_tcg_log,
)

ALGS = [(ALG_SHA1, 20), (ALG_SHA256, 32), (ALG_SHA384, 48)]

events = st.lists(
    st.tuples(st.integers(0, 23), st.integers(0, 0xFFFFFFFF), st.binary(max_size=64)),
    max_size=12,
)


def _log(evs: list, nalgs: int) -> bytes:
    spec = SpecIdEvent(algorithms=ALGS[:nalgs])
    h = hashlib_provider()
    parts = [encode_spec_id_header(spec)]
    for index, etype, data in evs:
        parts.append(encode_pcr_event2(index, etype,
                                       [(a, h.digest(a, data)) for a, _ in ALGS[:nalgs]], data))
    return b"".join(parts)


@given(events, st.integers(1, 3))
def test_round_trip(evs: list, nalgs: int) -> None:
    data = _log(evs, nalgs)
    log = parse_tcg_log(data)
    assert len(log.events) == len(evs)
    assert log.encode() == data
    rebuilt = TcgLog(log.format, log.header, log.spec_id,
                     [TcgEvent(e.index, e.event_type, e.digests, e.data) for e in log.events])
    assert rebuilt.encode() == data


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(events, st.integers(1, 3), st.data())
def test_mutated_logs_fail_only_with_spec_error(evs: list, nalgs: int, data: st.DataObject) -> None:
    raw = bytearray(_log(evs, nalgs))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        log = parse_tcg_log(bytes(raw[:cut]))
    except SpecError as e:
        assert e.offset is None or 0 <= e.offset <= cut
        return
    replay(log.events, hashlib_provider())


@given(st.binary(max_size=600))
def test_random_bytes_fail_only_with_spec_error(raw: bytes) -> None:
    try:
        parse_tcg_log(raw)
    except SpecError:
        pass
    try:
        CcelTable.decode(raw)
    except SpecError:
        pass
