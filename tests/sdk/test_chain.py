"""The chain verifier on the real TDX evidence of cc-trusted-api (../shared/fixtures)."""

import json

import pytest

from cloud_sdk.chain import SOURCE_FIRMWARE, build_chain
from cloud_sdk.evidence import Evidence
from shared_spec.algorithms import ALG_SHA384
from shared_spec.tcg_log import parse_tcg_log
from shared_spec.uefi_events import digest_check_kind
from tests.fixtures import fixture


def _evidence(ccel: bytes) -> Evidence:
    expected = json.loads(fixture("tdx-cc-trusted-api", "expected.json").read_text())
    rtmrs = [bytes.fromhex(v) for v in expected["quote"]["rtmr"]]
    ev = Evidence()
    # live values come from the quote (an independent source): RTMRn is CC MR n+1
    ev.registers["cc_mr"] = {i + 1: {ALG_SHA384: rtmrs[i]} for i in range(3)}
    ev.blobs["ccel_data"] = ccel
    ev.blobs["ima_ascii"] = fixture("tdx-cc-trusted-api", "ima_log.bin").read_bytes()
    return ev


def test_ccel_and_ima_match_the_quote_rtmrs() -> None:
    ccel = fixture("tdx-cc-trusted-api", "ccel_data.bin").read_bytes()
    result = build_chain(_evidence(ccel))
    assert [(r.index, r.matches) for r in result.registers] == [(1, True), (2, True), (3, True)]
    assert result.ok, [f.to_dict() for f in result.findings]


def test_flipping_any_digest_byte_is_reported_on_its_register() -> None:
    ccel = fixture("tdx-cc-trusted-api", "ccel_data.bin").read_bytes()
    log = parse_tcg_log(ccel)
    located = 0
    for seq, event in enumerate(log.events):
        if not event.extends:
            continue
        bad = bytearray(ccel)
        bad[event.offset + 14] ^= 0x01  # first byte of the SHA-384 digest
        result = build_chain(_evidence(bytes(bad)))
        assert not result.ok
        status = {r.index: r for r in result.registers}[event.index]
        assert not status.matches
        if digest_check_kind(event.event_type, event.index, event.data) is not None:
            assert status.first_divergent is not None
            assert (status.first_divergent.source, status.first_divergent.seq_in_source) == (
                SOURCE_FIRMWARE, seq)
            located += 1
    assert located > 10


@pytest.mark.parametrize("where", ["data", "digest"])
def test_flipped_byte_in_checkable_event_names_it(where: str) -> None:
    ccel = fixture("tdx-cc-trusted-api", "ccel_data.bin").read_bytes()
    log = parse_tcg_log(ccel)
    checkable = [(i, e) for i, e in enumerate(log.events)
                 if e.data and digest_check_kind(e.event_type, e.index, e.data) == "event_data"]
    seq, event = checkable[0]
    bad = bytearray(ccel)
    pos = event.offset + event.size - 1 if where == "data" else event.offset + 14
    bad[pos] ^= 0x80
    result = build_chain(_evidence(bytes(bad)))
    codes = [(f.code, f.event) for f in result.findings]
    assert ("DIGEST_MISMATCH", seq) in codes


def test_cli_verify_on_a_bundle(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from cloud_sdk.cli import main

    ccel = fixture("tdx-cc-trusted-api", "ccel_data.bin").read_bytes()
    good = tmp_path / "good.json"
    _evidence(ccel).save(good)
    assert main(["verify", "--evidence", str(good), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] and len(out["registers"]) == 3
    log = parse_tcg_log(ccel)
    bad_bytes = bytearray(ccel)
    bad_bytes[log.events[5].offset + 14] ^= 1
    bad = tmp_path / "bad.json"
    _evidence(bytes(bad_bytes)).save(bad)
    assert main(["verify", "--evidence", str(bad)]) == 1
    capsys.readouterr()
    (tmp_path / "junk.json").write_text("{}")
    assert main(["verify", "--evidence", str(tmp_path / "junk.json")]) == 2
    assert "junk.json" in capsys.readouterr().err
