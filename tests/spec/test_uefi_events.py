"""UEFI event data decoding and digest rules (pytest and MicroPython).

Expected values come from the fixtures' own ``.yaml`` files (tpm2_eventlog's
output, read here with a minimal line reader), the ``.warn`` file, hashes the
test computes, and structures the test builds from the PFP / UEFI layouts.
"""

import struct

from shared_spec.algorithms import ALG_SHA256
from shared_spec.event_types import (
    EV_EFI_BOOT_SERVICES_APPLICATION,
    EV_EFI_BOOT_SERVICES_DRIVER,
    EV_EFI_GPT_EVENT,
    EV_EFI_HANDOFF_TABLES2,
    EV_EFI_PLATFORM_FIRMWARE_BLOB2,
    EV_EFI_RUNTIME_SERVICES_DRIVER,
    EV_EFI_SPDM_FIRMWARE_BLOB,
    EV_EFI_VARIABLE_AUTHORITY,
    EV_EFI_VARIABLE_BOOT,
    EV_EFI_VARIABLE_DRIVER_CONFIG,
    EV_EVENT_TAG,
    EV_IPL,
    EV_NO_ACTION,
    EV_POST_CODE,
    EV_S_CRTM_VERSION,
    EV_SEPARATOR,
    EVENT_TYPE_NAMES,
)
from shared_spec.tcg_log import parse_tcg_log
from shared_spec.uefi_events import (
    decode_event_data,
    device_path_text,
    digest_check_kind,
    guid_text,
    utf16le,
)
from tests.spec._compat import Skip, fixtures_dir, hash_provider, read_bytes

TPM2_LOGS = ("event-arch-linux.bin", "event-bootorder.bin", "event-gce-ubuntu-2104-log.bin",
             "event-postcode.bin", "event-sd-boot-fedora37.bin", "event-uefi-sha1-log.bin",
             "event-uefiservices.bin", "event-uefivar.bin")


_IMAGE_EVENTS = (EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_BOOT_SERVICES_DRIVER,
                 EV_EFI_RUNTIME_SERVICES_DRIVER)


def _guid_bytes(text):
    parts = text.split("-")
    return (struct.pack("<IHH", int(parts[0], 16), int(parts[1], 16), int(parts[2], 16))
            + bytes.fromhex(parts[3] + parts[4]))


def _u16(text):
    return "".join(ch + "\x00" for ch in text).encode()


def _all_events(name):
    log = parse_tcg_log(read_bytes(fixtures_dir() + "/tpm2-tools/" + name))
    return ([log.header] if log.header is not None else []) + list(log.events)


def _yaml_events(name):
    """Per event of tpm2_eventlog's YAML: {key: [values]} for the keys the tests compare."""
    keys = ("VariableName", "UnicodeNameLength", "VariableDataLength", "UnicodeName",
            "DevicePath", "Description", "PartitionName", "DiskGUID", "EventType")
    events = []
    with open(fixtures_dir() + "/tpm2-tools/" + name + ".yaml") as f:
        for line in f:
            text = line.strip()
            if text.startswith("- "):
                text = text[2:]
            if text.startswith("pcrs:"):
                break
            indent = len(line) - len(line.lstrip(" -"))
            if text.startswith("PCRIndex:") and indent <= 4:
                events.append({})
                continue
            if ":" not in text or not events:
                continue
            key, _, value = text.partition(":")
            if key in keys:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                    value = value[1:-1]
                events[-1].setdefault(key, []).append(value)
    return events


def test_guid_and_utf16_helpers():
    raw = _guid_bytes("8be4df61-93ca-11d2-aa0d-00e098032b8c")
    assert raw[:4] == b"\x61\xdf\xe4\x8b"  # first field little-endian (UEFI Appendix A)
    assert guid_text(raw) == "8be4df61-93ca-11d2-aa0d-00e098032b8c"
    assert utf16le(_u16("Boot0001") + b"\0\0") == "Boot0001"
    assert utf16le(b"\x3d\xd8\x00\xde") == "\U0001f600"  # surrogate pair
    assert utf16le(b"\x00\xdc") is None  # lone low surrogate


def test_every_fixture_event_decodes():
    found = 0
    for name in TPM2_LOGS:
        for ev in _all_events(name):
            out = decode_event_data(ev.event_type, ev.data, ev.index)
            assert out is None or isinstance(out, dict)
            assert out is None or "error" not in out, (name, ev.offset, out)
            found += 1
    assert found > 300


def test_variable_events_match_tpm2_eventlog_yaml():
    compared = 0
    for name in TPM2_LOGS:
        events = _all_events(name)
        expected = _yaml_events(name)
        assert len(events) == len(expected), name
        for pos in range(len(events)):
            ev, want = events[pos], expected[pos]
            if "VariableName" not in want:
                continue
            got = decode_event_data(ev.event_type, ev.data, ev.index)
            assert got["variable_guid"] == want["VariableName"][0], (name, ev.offset)
            assert str(got["unicode_name_length"]) == want["UnicodeNameLength"][0]
            assert str(got["variable_data_length"]) == want["VariableDataLength"][0]
            assert got["unicode_name"] == want["UnicodeName"][0]
            if "Description" in want:
                assert got["load_option"]["description"] == want["Description"][0]
                assert got["load_option"]["device_path_text"] == want["DevicePath"][0]
            compared += 1
    assert compared > 60


def test_device_paths_and_gpt_match_tpm2_eventlog_yaml():
    paths = 0
    parts = 0
    for name in TPM2_LOGS:
        events, expected = _all_events(name), _yaml_events(name)
        for pos in range(min(len(events), len(expected))):
            ev, want = events[pos], expected[pos]
            got = decode_event_data(ev.event_type, ev.data, ev.index)
            if ev.event_type in _IMAGE_EVENTS:
                text = want.get("DevicePath", [""])[0]
                if "IPv4" in text:  # tpm2-tools prints IPv4 nodes garbled
                    continue
                assert got["device_path_text"] == text, (name, got["device_path_text"], text)
                paths += 1
            if ev.event_type == EV_EFI_GPT_EVENT and "PartitionName" in want:
                assert got["header"]["disk_guid"] == want["DiskGUID"][0]
                assert [p["partition_name"] for p in got["partitions"]] == want["PartitionName"]
                parts += len(want["PartitionName"])
    assert paths >= 15 and parts >= 3


def _bad_events_from_warn(name):
    """EventNum values named by tpm2-tools' ``<log>.warn`` ("Event N's digest ...")."""
    try:
        text = read_bytes(fixtures_dir() + "/tpm2-tools/" + name + ".warn").decode()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        words = line.split()
        for i, w in enumerate(words[:-1]):
            if w == "Event" and words[i + 1].endswith("'s"):
                out.append(int(words[i + 1][:-2]))
    return out


def _variable_data(data):
    name_len, data_len = struct.unpack_from("<QQ", data, 16)
    return data[32 + 2 * name_len:32 + 2 * name_len + data_len]


def _mismatches(events, h):
    """Positions whose digests differ from what digest_check_kind says they cover."""
    bad = []
    for pos, ev in enumerate(events):
        kind = digest_check_kind(ev.event_type, ev.index, ev.data)
        if kind is None:
            continue
        for alg, digest in ev.digests:
            if not h.supports(alg):
                continue
            ok = [h.digest(alg, ev.data)]
            if kind == "variable_boot":
                ok.append(h.digest(alg, _variable_data(ev.data)))
            if bytes(digest) not in ok:
                bad.append(pos)
                break
    return bad


def test_digest_rules_reproduce_tpm2_tools_warnings_and_nothing_else():
    h = hash_provider()
    flagged = 0
    for name in TPM2_LOGS:
        events = _all_events(name)
        bad = _mismatches(events, h)
        assert bad == _bad_events_from_warn(name), (name, bad)
        flagged += len(bad)
    assert flagged == 1  # event-arch-linux.bin, event 24 (systemd-boot EV_IPL)


def test_digest_rules_on_ccel_and_ima_evm_utils_logs():
    h = hash_provider()
    base = fixtures_dir()
    checked = 0
    for path in ("/tdx-cc-trusted-api/ccel_data.bin",
                 "/ima-evm-utils/sample-binary_bios_measurements-pcrs-8-9"):
        log = parse_tcg_log(read_bytes(base + path))
        assert _mismatches(log.events, h) == [] or not h.supports(log.algorithms[0])
        checked += sum(1 for e in log.events if digest_check_kind(e.event_type, e.index, e.data))
    assert checked > 20


def test_digest_check_kind_table():
    assert digest_check_kind(EV_SEPARATOR, 0, b"\0\0\0\0") == "event_data"
    assert digest_check_kind(EV_POST_CODE, 0, b"ACPI DATA") is None
    assert digest_check_kind(EV_EFI_BOOT_SERVICES_APPLICATION, 4, b"") is None
    assert digest_check_kind(EV_IPL, 8, b"grub_cmd: linux\0") is None
    assert digest_check_kind(EV_IPL, 12, _u16("console=ttyS0") + b"\0\0") == "event_data"
    assert digest_check_kind(EV_EVENT_TAG, 9, b"\xec\x22\x3b\x8f\x01\0\0\0x") is None
    var = _guid_bytes("8be4df61-93ca-11d2-aa0d-00e098032b8c") + struct.pack("<QQ", 4, 2)
    var += _u16("Boot") + b"\x01\x00"
    assert digest_check_kind(EV_EFI_VARIABLE_BOOT, 1, var) == "variable_boot"
    assert digest_check_kind(EV_EFI_VARIABLE_DRIVER_CONFIG, 7, var) == "event_data"
    assert digest_check_kind(EV_EFI_VARIABLE_AUTHORITY, 7, var + b"junk") is None


def test_ccel_events_decode():
    try:
        data = read_bytes(fixtures_dir() + "/tdx-cc-trusted-api/ccel_data.bin")
    except OSError:
        raise Skip("no CCEL fixture") from None
    log = parse_tcg_log(data)
    first = log.events[0]
    assert first.event_type == EV_EFI_HANDOFF_TABLES2
    td = decode_event_data(first.event_type, first.data, first.index)
    assert td["description"] == "TdxTable" and td["number_of_tables"] == 1
    # description, u64 count, then a 16-byte GUID and u64 pointer (PFP §10.4.6)
    n = first.data[0]
    assert first.data[1:1 + n].rstrip(b"\0") == b"TdxTable"
    ptr = struct.unpack_from("<Q", first.data, 1 + n + 8 + 16)[0]
    assert td["tables"][0]["table"] == ptr
    assert td["tables"][0]["guid"] == guid_text(first.data[1 + n + 8:1 + n + 24])
    for ev in log.events:
        out = decode_event_data(ev.event_type, ev.data, ev.index)
        assert out is None or "error" not in out, (ev.offset, out)
    blob2 = next(e for e in log.events if e.event_type == EV_EFI_PLATFORM_FIRMWARE_BLOB2)
    got = decode_event_data(blob2.event_type, blob2.data)
    n = blob2.data[0]
    assert got["description"] == blob2.data[1:1 + n].rstrip(b"\0").decode()
    assert (got["base"], got["length"]) == struct.unpack_from("<QQ", blob2.data, 1 + n)


def test_built_structures():
    h = hash_provider()
    # EFI_SIGNATURE_LIST of two EFI_CERT_SHA256 entries (UEFI 2.10 §32.4.1)
    owner = _guid_bytes("77fa9abd-0359-4d32-bd60-28f4e78f784b")
    hashes = [h.digest(ALG_SHA256, b"a"), h.digest(ALG_SHA256, b"b")]
    entries = b"".join(owner + x for x in hashes)
    esl = (_guid_bytes("c1c41626-504c-4092-aca9-41f936934328")
           + struct.pack("<III", 28 + len(entries), 0, 48) + entries)
    var = (_guid_bytes("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
           + struct.pack("<QQ", 3, len(esl)) + _u16("dbx") + esl)
    got = decode_event_data(EV_EFI_VARIABLE_DRIVER_CONFIG, var)
    (lst,) = got["signature_lists"]
    assert lst["signature_type_name"] == "EFI_CERT_SHA256" and lst["count"] == 2
    assert lst["sha256"] == [x.hex() for x in hashes]
    assert lst["owners"][0]["guid"] == "77fa9abd-0359-4d32-bd60-28f4e78f784b"
    # SecureBoot = 1
    sb = (_guid_bytes("8be4df61-93ca-11d2-aa0d-00e098032b8c") + struct.pack("<QQ", 10, 1)
          + _u16("SecureBoot") + b"\x01")
    assert decode_event_data(EV_EFI_VARIABLE_DRIVER_CONFIG, sb)["secure_boot"] is True
    # separators (PFP §3.3.2.2)
    assert decode_event_data(EV_SEPARATOR, b"\0\0\0\0")["separator"] == "normal"
    assert decode_event_data(EV_SEPARATOR, b"\x01\0\0\0")["separator"] == "error"
    # tagged event with printable data
    tag = decode_event_data(EV_EVENT_TAG, struct.pack("<II", 0x8F3B22EC, 3) + b"abc")
    assert tag == {"tagged_event_id": "0x8f3b22ec", "tagged_event_data_size": 3,
                   "tagged_event_data": "abc"}
    # S-CRTM version: UTF-16 string
    crtm = decode_event_data(EV_S_CRTM_VERSION, _u16("v1.2") + b"\0\0")
    assert crtm == {"version": "v1.2"}
    # StartupLocality (PFP §10.4.5.3)
    loc = decode_event_data(EV_NO_ACTION, b"StartupLocality\0\x03")
    assert loc["startup_locality"] == 3
    # SP800-155 Event3 with a URI RIM locator
    ev3 = (b"SP800-155 Event3" + struct.pack("<I", 343) + _guid_bytes(
        "00112233-4455-6677-8899-aabbccddeeff") + b"\x03ACM\x02M1\x011\x04EDK2"
           + struct.pack("<I", 343) + b"\x03" + b"1.0" + struct.pack("<II", 1, 5) + b"http:"
           + struct.pack("<II", 0, 0))
    sp = decode_event_data(EV_NO_ACTION, ev3)
    assert sp["platform_manufacturer"] == "ACM" and sp["firmware_version"] == "1.0"
    assert sp["rim_locator"] == {"type": "uri", "uri": "http:"}
    # SPDM "SPDM Device Sec2" header (EDK2 TCG_DEVICE_SECURITY_EVENT_DATA_HEADER2)
    spdm = (b"SPDM Device Sec2" + struct.pack("<HBBIIIIQ", 2, 0, 0, 40, 1, 0, 8, 7)
            + struct.pack("<Q", 4) + b"\x7f\xff\x04\x00" + b"tail")
    got = decode_event_data(EV_EFI_SPDM_FIRMWARE_BLOB, spdm)
    assert got["auth_state"] == "success" and got["device_type"] == "pci"
    assert got["sub_header_uid"] == 7 and got["rest"] == b"tail".hex()


def test_device_path_nodes():
    hd = struct.pack("<BBH", 4, 1, 42) + struct.pack("<IQQ", 1, 0x800, 0x100000) + _guid_bytes(
        "e3ab8f94-9466-42cc-9b81-ebb7969bb28a") + b"\x02\x02"
    path = _u16("\\EFI\\BOOT\\BOOTX64.EFI") + b"\0\0"
    fp = struct.pack("<BBH", 4, 4, 4 + len(path)) + path
    end = b"\x7f\xff\x04\x00"
    text = device_path_text(hd + fp + end)
    assert text == ("HD(1,GPT,e3ab8f94-9466-42cc-9b81-ebb7969bb28a,0x800,0x100000)/"
                    "File(\\EFI\\BOOT\\BOOTX64.EFI)")
    assert device_path_text(b"\x04\x01\x02\x00").startswith("<malformed@0>")


def test_malformed_data_reports_offset():
    var = _guid_bytes("8be4df61-93ca-11d2-aa0d-00e098032b8c") + struct.pack("<QQ", 100, 0)
    out = decode_event_data(EV_EFI_VARIABLE_BOOT, var)
    assert "error" in out and out["offset"] == 16
    out = decode_event_data(EV_EFI_BOOT_SERVICES_APPLICATION, b"\0" * 24 + b"\xff" * 8)
    assert "error" in out and out["offset"] == 24
    for t in list(EVENT_TYPE_NAMES) + [0x12345678]:
        for data in (b"", b"\xff", b"\x00" * 7, b"\xff" * 64):
            res = decode_event_data(t, data)
            assert res is None or isinstance(res, dict)
