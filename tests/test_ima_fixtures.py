"""IMA lists from real machines (../shared/fixtures) parse, check and replay right.

Expected values come from the fixtures (the machine's PCR reading, the TDX
quote's RTMRs) or are computed here with hashlib, never by the code under test.
"""

import hashlib
import json
import re
import struct

from cloud_sdk.hashing import hashlib_provider
from shared_spec import ima
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384
from shared_spec.registers import INDEX_CC_MR
from shared_spec.replay import replay
from shared_spec.tcg_log import parse_tcg_log
from tests.fixtures import fixture

H = hashlib_provider()


def _tsspcrread(text: str) -> dict[int, bytes]:
    """``N: <hex>`` lines of tsspcrread output -> {pcr: value}."""
    return {int(m.group(1)): bytes.fromhex(m.group(2))
            for m in re.finditer(r"^(\d+): ([0-9a-f]+)$", text, re.M)}


def _ng_template_data(algo: bytes, digest_hex: bytes, name: bytes) -> bytes:
    d = algo + b":\0" + bytes.fromhex(digest_hex.decode())
    n = name + b"\0"
    return struct.pack("<I", len(d)) + d + struct.pack("<I", len(n)) + n


def test_boot_aggregate_from_pcr_reading_and_firmware_log() -> None:
    text = fixture("ima-evm-utils", "sample-tpm-2.0-pcrs-8-9").read_text()
    assert "-halg sha1" in text  # the reading is of the SHA-1 bank
    pcrs_sha1 = _tsspcrread(text)
    assert sorted(pcrs_sha1) == list(range(24))
    raw = fixture("ima-evm-utils", "sample-ascii_runtime_measurements-pcrs-8-9").read_bytes()
    (entry,) = ima.parse_ima_ascii(raw)
    assert entry.file_name() == "boot_aggregate" and entry.template_name == "ima-ng"
    tokens = raw.split()
    algo, digest_hex = tokens[3].split(b":")
    assert entry.template_data == _ng_template_data(algo, digest_hex, tokens[4])
    assert hashlib.sha1(entry.template_data).digest() == entry.template_hash
    assert ima.check_entries([entry], H) == []
    assert ima.logged_boot_aggregate([entry]) == (ALG_SHA256, bytes.fromhex(digest_hex.decode()))

    log = parse_tcg_log(fixture("ima-evm-utils",
                                "sample-binary_bios_measurements-pcrs-8-9").read_bytes())
    res = replay(log.events, H)
    # the firmware log replays to the machine's SHA-1 PCR reading, PCRs 0-9
    replayed_sha1 = {i: res.registers[i][ALG_SHA1] for i in range(10)}
    assert replayed_sha1 == {i: pcrs_sha1[i] for i in range(10)}
    # a SHA-1 boot_aggregate (PCRs 0-7 only) from the reading equals the replay's
    want_sha1 = hashlib.sha1(b"".join(pcrs_sha1[i] for i in range(8))).digest()
    assert ima.boot_aggregate(pcrs_sha1, ALG_SHA1, H) == want_sha1
    assert ima.boot_aggregate(replayed_sha1, ALG_SHA1, H) == want_sha1
    # the logged boot_aggregate is SHA-256 over PCRs 0-9 of the same (replayed) boot
    sha256_pcrs = {i: res.registers[i][ALG_SHA256] for i in range(10)}
    logged = bytes.fromhex(digest_hex.decode())
    assert hashlib.sha256(b"".join(sha256_pcrs[i] for i in range(10))).digest() == logged
    assert ima.boot_aggregate(sha256_pcrs, ALG_SHA256, H) == logged
    assert ima.boot_aggregate(sha256_pcrs, ALG_SHA256, H, include_8_9=False) != logged


def test_tdx_ima_line_extends_rtmr2() -> None:
    expected = json.loads(fixture("tdx-cc-trusted-api", "expected.json").read_text())
    raw = fixture("tdx-cc-trusted-api", "ima_log.bin").read_bytes()
    assert ima.detect_ima(raw) == "ascii"
    (e,) = ima.parse_ima_ascii(raw)
    assert e.pcr == 2 and e.template_hash_alg == ALG_SHA384 and e.file_name() == "boot_aggregate"
    tokens = raw.split()
    algo, digest_hex = tokens[3].split(b":")
    assert e.template_data == _ng_template_data(algo, digest_hex, tokens[4])
    assert hashlib.sha384(e.template_data).digest() == e.template_hash
    assert ima.check_entries([e], H) == []
    # the kernel's %2d prints the PCR field as " 2"
    assert ima.encode_ima_ascii_line(e) == raw.rstrip(b"\n") + b"\n"
    assert raw.startswith(b" 2 ")

    ccel = parse_tcg_log(fixture("tdx-cc-trusted-api", "ccel_data.bin").read_bytes())
    (mapped,) = ima.to_cc_mr([e])
    assert mapped.index == 3 and mapped.pcr == 2
    res = replay([*ccel.events, mapped], H, INDEX_CC_MR, [ALG_SHA384])
    rtmrs = expected["quote"]["rtmr"]
    for i in range(3):
        assert res.registers[i + 1][ALG_SHA384].hex() == rtmrs[i], i
    # the same by hand: RTMR2 = SHA384(replay(MR3) || SHA384(template data))
    pre = replay(ccel.events, H, INDEX_CC_MR, [ALG_SHA384])
    mr3 = pre.registers[3][ALG_SHA384]
    assert mr3.hex() == expected["ccel_replay_by_mr_index"]["3"]
    assert hashlib.sha384(mr3 + hashlib.sha384(e.template_data).digest()).hexdigest() == rtmrs[2]
    # its boot_aggregate is SHA-384(MRTD || RTMR0..2 before IMA), per the fixture README
    mrs = {0: bytes.fromhex(expected["quote"]["mrtd"])}
    mrs.update({i: pre.registers[i][ALG_SHA384] for i in (1, 2, 3)})
    logged = bytes.fromhex(digest_hex.decode())
    assert hashlib.sha384(b"".join(mrs[i] for i in range(4))).digest() == logged
    assert ima.tdx_boot_aggregate(mrs, H) == logged
