"""Replay of every real firmware log in ../shared/fixtures equals the values given there."""

import json
import re
from pathlib import Path

import pytest
import yaml

from cloud_sdk.hashing import hashlib_provider
from shared_spec.algorithms import alg_from_name
from shared_spec.registers import INDEX_CC_MR
from shared_spec.replay import replay
from shared_spec.tcg_log import FORMAT_SHA1, parse_tcg_log
from tests.fixtures import fixture, fixtures_dir

TPM2_TOOLS_LOGS = [
    "event-arch-linux.bin",
    "event-bootorder.bin",
    "event-gce-ubuntu-2104-log.bin",
    "event-postcode.bin",
    "event-sd-boot-fedora37.bin",
    "event-uefi-sha1-log.bin",
    "event-uefiservices.bin",
    "event-uefivar.bin",
]


def _yaml_pcrs(path: Path) -> dict[int, dict[int, bytes]]:
    """The ``pcrs:`` section of tpm2_eventlog's output: {pcr: {alg: value}}."""
    text = path.read_text()
    start = text.find("\npcrs:")
    if start < 0:
        return {}
    # tpm2_eventlog prints keys like "0  :" and values 0x...; normalise for YAML.
    section = re.sub(r"(\d+)\s+:\s*(0x[0-9a-fA-F]+)", r'\1: "\2"', text[start:])
    doc = yaml.safe_load(section)["pcrs"]
    out: dict[int, dict[int, bytes]] = {}
    for bank, regs in doc.items():
        alg = alg_from_name(bank)
        assert alg is not None, bank
        for index, value in regs.items():
            out.setdefault(int(index), {})[alg] = bytes.fromhex(value.removeprefix("0x"))
    return out


@pytest.mark.parametrize("name", TPM2_TOOLS_LOGS)
def test_tpm2_tools_log_replays_to_tpm2_eventlog_pcrs(name: str) -> None:
    log_path = fixture("tpm2-tools", name)
    expected = _yaml_pcrs(Path(str(log_path) + ".yaml"))
    if not expected:
        pytest.skip("%s.yaml has no pcrs section" % name)
    data = log_path.read_bytes()
    log = parse_tcg_log(data, source=str(log_path))
    assert log.encode() == data, "round trip must be byte-exact"
    result = replay(log.events, hashlib_provider())
    compared = 0
    for match in result.compare(expected):
        assert match.matches, match.to_dict()
        compared += 1
    assert compared == sum(len(b) for b in expected.values())


def test_sha1_legacy_log_is_detected_as_such() -> None:
    log = parse_tcg_log(fixture("tpm2-tools", "event-uefi-sha1-log.bin").read_bytes())
    assert log.format == FORMAT_SHA1
    assert log.spec_id is None
    assert len(log.events) > 0


def test_ccel_replays_to_expected_and_quote_rtmrs() -> None:
    base = fixtures_dir() / "tdx-cc-trusted-api"
    expected = json.loads((base / "expected.json").read_text())
    data = fixture("tdx-cc-trusted-api", "ccel_data.bin").read_bytes()
    log = parse_tcg_log(data)
    assert log.header is not None and log.header.index == 1
    assert len(log.events) == expected["ccel_events_after_spec_id"]
    assert log.encode() == data
    result = replay(log.events, hashlib_provider(), INDEX_CC_MR)
    for mr, value in expected["ccel_replay_by_mr_index"].items():
        assert result.registers[int(mr)][0x000C].hex() == value
    # RTMR0 / RTMR1 of the quote are MR1 / MR2 of the CCEL.
    assert result.registers[1][0x000C].hex() == expected["quote"]["rtmr"][0]
    assert result.registers[2][0x000C].hex() == expected["quote"]["rtmr"][1]


def test_replay_names_the_first_unreflected_event() -> None:
    """A register value taken mid-log points at the first event past it."""
    data = fixture("tdx-cc-trusted-api", "ccel_data.bin").read_bytes()
    log = parse_tcg_log(data)
    hashes = hashlib_provider()
    mr2 = [i for i, ev in enumerate(log.events) if ev.index == 2]
    assert len(mr2) > 3
    partial = replay(log.events[: mr2[2] + 1], hashes, INDEX_CC_MR)
    full = replay(log.events, hashes, INDEX_CC_MR)
    (m,) = full.compare({2: {0x000C: partial.registers[2][0x000C]}})
    assert not m.matches
    assert m.first_divergent_event == mr2[3]


def test_flipped_digest_is_located() -> None:
    data = bytearray(fixture("tdx-cc-trusted-api", "ccel_data.bin").read_bytes())
    log = parse_tcg_log(bytes(data))
    hashes = hashlib_provider()
    good = replay(log.events, hashes, INDEX_CC_MR)
    victim = next(i for i, ev in enumerate(log.events) if ev.index == 3)
    # flip one byte of that event's SHA-384 digest (after index, type, count, alg)
    data[log.events[victim].offset + 14] ^= 1
    bad_log = parse_tcg_log(bytes(data))
    bad = replay(bad_log.events, hashes, INDEX_CC_MR)
    (m,) = bad.compare({3: {0x000C: good.registers[3][0x000C]}})
    assert not m.matches
