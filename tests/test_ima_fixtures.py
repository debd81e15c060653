"""IMA lists from real machines (../shared/fixtures) parse, check and replay right."""

import json
import re

from cloud_sdk.hashing import hashlib_provider
from shared_spec import ima
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384
from shared_spec.registers import INDEX_CC_MR
from shared_spec.replay import replay
from shared_spec.tcg_log import parse_tcg_log
from tests.fixtures import fixture

H = hashlib_provider()


def _tsspcrread(text: str) -> dict[int, bytes]:
    return {int(m.group(1)): bytes.fromhex(m.group(2))
            for m in re.finditer(r"^(\d+): ([0-9a-f]{40})$", text, re.M)}


def test_boot_aggregate_from_firmware_log_and_pcrs() -> None:
    pcrs = _tsspcrread(fixture("ima-evm-utils", "sample-tpm-2.0-pcrs-8-9").read_text())
    log = parse_tcg_log(fixture("ima-evm-utils",
                                "sample-binary_bios_measurements-pcrs-8-9").read_bytes())
    res = replay(log.events, H)
    # the firmware log replays to the machine's SHA-1 PCRs 0-9 (an independent reading)
    for i in range(10):
        assert res.registers[i][ALG_SHA1] == pcrs[i], i
    (entry,) = ima.parse_ima_ascii(
        fixture("ima-evm-utils", "sample-ascii_runtime_measurements-pcrs-8-9").read_bytes())
    assert entry.file_name() == "boot_aggregate"
    logged = ima.decode_field("d-ng", entry.fields()[0].data)
    assert logged is not None and logged["algorithm"] == "sha256"
    sha256_pcrs = {i: res.registers[i][ALG_SHA256] for i in range(10)}
    assert ima.boot_aggregate(sha256_pcrs, ALG_SHA256, H).hex() == logged["digest"]
    assert ima.check_entries([entry], H) == []


def test_tdx_ima_line_extends_rtmr2() -> None:
    expected = json.loads(fixture("tdx-cc-trusted-api", "expected.json").read_text())
    entries = ima.parse_ima_ascii(fixture("tdx-cc-trusted-api", "ima_log.bin").read_bytes())
    assert len(entries) == 1 and entries[0].pcr == 2
    e = entries[0]
    assert e.template_hash_alg == ALG_SHA384
    assert H.digest(ALG_SHA384, e.template_data) == e.template_hash
    ccel = parse_tcg_log(fixture("tdx-cc-trusted-api", "ccel_data.bin").read_bytes())
    res = replay(ccel.events + ima.to_cc_mr(entries), H, INDEX_CC_MR, [ALG_SHA384])
    rtmrs = expected["quote"]["rtmr"]
    for i in range(3):
        assert res.registers[i + 1][ALG_SHA384].hex() == rtmrs[i]
    # its boot_aggregate is SHA-384(MRTD || RTMR0..2 before IMA), per the fixture README
    pre = replay(ccel.events, H, INDEX_CC_MR, [ALG_SHA384])
    mrs = {0: bytes.fromhex(expected["quote"]["mrtd"])}
    mrs.update({i: pre.registers[i][ALG_SHA384] for i in (1, 2, 3)})
    logged = ima.decode_field("d-ng", e.fields()[0].data)
    assert logged is not None
    assert ima.tdx_boot_aggregate(mrs, H).hex() == logged["digest"]
