"""Property and fixture tests of the CEL codec and the UEFI event decoders (CPython)."""

import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sdk.hashing import hashlib_provider
from shared_spec import cel
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384
from shared_spec.errors import FormatError, SpecError
from shared_spec.event_types import EVENT_TYPE_NAMES
from shared_spec.replay import replay
from shared_spec.tcg_log import TcgEvent, parse_tcg_log
from shared_spec.uefi_events import decode_event_data
from tests.fixtures import fixture

H = hashlib_provider()
ALL_TYPES = sorted(EVENT_TYPE_NAMES)
FIXTURE_LOGS = [("tpm2-tools", n) for n in (
    "event-arch-linux.bin", "event-bootorder.bin", "event-gce-ubuntu-2104-log.bin",
    "event-postcode.bin", "event-sd-boot-fedora37.bin", "event-uefi-sha1-log.bin")] + [
    ("tdx-cc-trusted-api", "ccel_data.bin"),
    ("ima-evm-utils", "sample-binary_bios_measurements-pcrs-8-9")]


def _fixture_events() -> list:
    out = []
    for folder, name in FIXTURE_LOGS:
        out.extend(parse_tcg_log(fixture(folder, name).read_bytes()).events)
    return out


@st.composite
def records(draw: st.DrawFn) -> list:
    out = []
    for n in range(draw(st.integers(0, 6))):
        digests = [(alg, draw(st.binary(min_size=size, max_size=size)))
                   for alg, size in ((ALG_SHA1, 20), (ALG_SHA256, 32), (ALG_SHA384, 48))
                   if draw(st.booleans())]
        kind = draw(st.sampled_from(["tcg", "ima", "mgt"]))
        if kind == "tcg":
            ev = TcgEvent(draw(st.integers(0, 23)), draw(st.integers(0, 0xFFFFFFFF)), digests,
                          draw(st.binary(max_size=64)))
            out.extend(cel.from_events([ev], n))
        elif kind == "ima":
            rec = cel.CelRecord(n, 10, digests, cel.CEL_IMA_TEMPLATE,
                                [(0, b"ima-ng"), (1, draw(st.binary(max_size=64)))])
            out.append(rec)
        else:
            out.append(cel.mgt_record(n, 0, [(cel.MGT_CEL_TIMESTAMP,
                                              draw(st.integers(0, 2**64 - 1))),
                                             (cel.MGT_STATE_TRANS, draw(st.integers(0, 2)))]))
    return out


@given(records())
def test_cel_tlv_and_json_round_trip(recs: list) -> None:
    data = cel.encode_cel(recs)
    back = cel.parse_cel(data)
    assert cel.encode_cel(back) == data
    js = json.loads(json.dumps(cel.cel_json_records(back)))
    assert cel.encode_cel(cel.parse_cel_json(js)) == data
    algs = [ALG_SHA1, ALG_SHA256, ALG_SHA384]
    assert replay(back, H, "pcr", algs).registers == replay(recs, H, "pcr", algs).registers


@given(st.binary(max_size=600))
def test_random_cel_bytes_fail_only_with_spec_error(raw: bytes) -> None:
    for data in (raw, b"\x00\x00\x00\x00\x01\x00" + raw):
        try:
            cel.parse_cel(data)
        except SpecError:
            pass


@given(records(), st.data())
def test_mutated_cel_fails_only_with_spec_error(recs: list, data: st.DataObject) -> None:
    raw = bytearray(cel.encode_cel(recs))
    if not raw:
        return
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for blob in (bytes(raw), bytes(raw[:cut])):
        try:
            parsed = cel.parse_cel(blob)
        except SpecError:
            continue
        assert cel.encode_cel(parsed) == blob
        replay(parsed, H, "pcr", [ALG_SHA1, ALG_SHA256])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**70) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["pcr", "recnum", "digests", "hashAlg", "digest", "content",
                         "content_type", "event_type", "event_data", "type", "data", "mr",
                         "nv_index", "template_name", "template_data", "value"]), inner,
        max_size=6),
    max_leaves=20)


@given(st.lists(json_values, max_size=4))
def test_random_cel_json_fails_only_with_format_error(value: list) -> None:
    try:
        recs = cel.parse_cel_json(value)
    except FormatError:
        return
    cel.cel_json_records(recs)


@given(st.sampled_from([*ALL_TYPES, 0x12345678]), st.binary(max_size=400))
def test_decode_event_data_never_raises(event_type: int, data: bytes) -> None:
    out = decode_event_data(event_type, data, 0)
    assert out is None or isinstance(out, dict)
    json.dumps(out)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.data())
def test_mutated_fixture_event_data_never_raises(data: st.DataObject) -> None:
    events = _events()
    ev = events[data.draw(st.integers(0, len(events) - 1))]
    raw = bytearray(ev.data)
    if raw:
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[:data.draw(st.integers(0, len(raw)))] if data.draw(st.booleans()) else raw
    out = decode_event_data(ev.event_type, bytes(raw), ev.index)
    assert out is None or isinstance(out, dict)
    json.dumps(out)


_CACHE: list = []


def _events() -> list:
    """The fixture logs' events, parsed once (skips the test when fixtures are absent)."""
    if not _CACHE:
        _CACHE.extend(_fixture_events())
    return _CACHE


def _yaml_docs() -> list:
    yaml = pytest.importorskip("yaml")
    out = []
    base = fixture("tpm2-tools", "event-arch-linux.bin").parent
    for name in sorted(p.name for p in Path(base).glob("*.bin")):
        doc = yaml.safe_load((base / (name + ".yaml")).read_text())
        if not isinstance(doc["events"], list):
            continue  # the SHA-1 log's YAML has no list markers (the spec test reads it)
        log = parse_tcg_log((base / name).read_bytes())
        events = ([log.header] if log.header is not None else []) + list(log.events)
        out.append((name, events, doc["events"]))
    return out


def test_yaml_fields_with_pyyaml() -> None:
    """Every Event mapping tpm2_eventlog printed agrees with the decoded fields."""
    compared = 0
    for name, events, docs in _yaml_docs():
        assert len(events) == len(docs), name
        for ev, doc in zip(events, docs, strict=True):
            want = doc.get("Event")
            if not isinstance(want, dict):
                continue
            got = decode_event_data(ev.event_type, ev.data, ev.index)
            assert got is not None and "error" not in got, (name, doc)
            if "VariableName" in want:
                assert got["variable_guid"] == want["VariableName"]
                assert got["unicode_name"] == want["UnicodeName"]
                assert got["unicode_name_length"] == want["UnicodeNameLength"]
                assert got["variable_data_length"] == want["VariableDataLength"]
                vd = want.get("VariableData")
                if isinstance(vd, list) and vd and isinstance(vd[0], dict):
                    lists = got["signature_lists"]
                    assert [x["signature_type"] for x in lists] == [x["SignatureType"]
                                                                    for x in vd]
                    assert [x["count"] for x in lists] == [len(x["Keys"]) for x in vd]
                    for mine, theirs in zip(lists, vd, strict=True):
                        assert {o["guid"] for o in mine["owners"]} == \
                            {k["SignatureOwner"] for k in theirs["Keys"]}
                        if "sha256" in mine:
                            assert mine["sha256"] == [k["SignatureData"] for k in theirs["Keys"]]
                elif isinstance(vd, list):
                    assert got["boot_order"] == vd
                elif isinstance(vd, dict) and "Description" in vd:
                    lo = got["load_option"]
                    assert lo["description"] == vd["Description"]
                    assert lo["file_path_list_length"] == vd["FilePathListLength"]
                    assert lo["active"] == (vd["Enabled"] == "Yes")
                elif isinstance(vd, str) and "variable_data" in got:
                    assert got["variable_data"] == vd
            elif "BlobBase" in want:
                assert (got["base"], got["length"]) == (want["BlobBase"], want["BlobLength"])
            elif "ImageLocationInMemory" in want:
                assert got["image_location"] == want["ImageLocationInMemory"]
                assert got["image_length"] == want["ImageLengthInMemory"]
                assert got["device_path_length"] == want["LengthOfDevicePath"]
            elif "Header" in want:
                hdr = want["Header"]
                assert got["header"]["disk_guid"] == hdr["DiskGUID"]
                assert got["header"]["last_usable_lba"] == hdr["LastUsableLBA"]
                assert got["number_of_partitions"] == want["NumberOfPartitions"]
                assert [p["unique_partition_guid"] for p in got["partitions"]] == \
                    [p["UniquePartitionGUID"] for p in want["Partitions"]]
            compared += 1
    assert compared > 100


def test_signature_lists_of_fixture_db_variables() -> None:
    """db / dbx / KEK / PK: every EFI_SIGNATURE_LIST entry counted, sizes add up."""
    seen = 0
    for ev in _events():
        if ev.event_type != 0x80000001:
            continue
        got = decode_event_data(ev.event_type, ev.data, ev.index)
        if got is None or "signature_lists" not in got:
            continue
        data_len = struct.unpack_from("<QQ", ev.data, 16)[1]
        total = 0
        for lst in got["signature_lists"]:
            per = 32 if "sha256" in lst else None
            sizes = lst.get("data_sizes", [per] * lst["count"])
            total += 28 + sum(16 + s for s in sizes)
        assert total == data_len
        seen += 1
    assert seen > 5


def test_cel_parse_speed() -> None:
    """100,000 records parse + replay well under the budget (measured, not asserted tight)."""
    import time

    ev = TcgEvent(1, 0x80000001, [(ALG_SHA256, b"\x11" * 32), (ALG_SHA384, b"\x22" * 48)],
                  b"x" * 60)
    data = cel.encode_cel(cel.from_events([ev])) * 1
    blob = data * 100_000
    t0 = time.perf_counter()
    recs = cel.parse_cel(blob)
    replay(recs, H, "pcr", [ALG_SHA256])
    elapsed = time.perf_counter() - t0
    assert len(recs) == 100_000
    assert elapsed < 5.0, elapsed
