"""cloud_sdk.cc_api: the CC Trusted API calls on TDX (mock hardware, real evidence) and a swtpm.

Expected values are independent of the code under test: the cc-trusted-api
fixture's ``expected.json`` (read from its quote, and that project's replay),
tpm2_eventlog's PCRs for the GCE log, and hashlib.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from cloud_sdk import cc_api
from cloud_sdk.backends import TdxBackend, TpmBackend
from cloud_sdk.errors import BackendError, InputError
from shared_spec.algorithms import ALG_SHA256, ALG_SHA384, alg_name
from shared_spec.ima import ImaEntry
from shared_spec.tdx_quote import parse_quote
from tests.fixtures import fixture
from tests.sdk import test_backends
from tests.sdk.test_backends import (
    GCE_LOG,
    FakeTdxSysfs,
    _play_firmware,
    _yaml_pcrs,
)
from tests.test_tpm2_swtpm import Swtpm

# fixtures shared with test_backends
fake_tdx = test_backends.fake_tdx
fw_swtpm = test_backends.fw_swtpm
started_swtpm = test_backends.started_swtpm


def _expected() -> dict:
    return json.loads(fixture("tdx-cc-trusted-api", "expected.json").read_text())


def _tdx(fake: FakeTdxSysfs) -> TdxBackend:
    return TdxBackend(root=fake.root, tsm_entry=FakeTdxSysfs.ENTRY)


def test_tdx_measurements_use_cc_mr_indexes(fake_tdx: FakeTdxSysfs) -> None:
    b = _tdx(fake_tdx)
    want = _expected()["quote"]
    assert cc_api.get_default_algorithms(b).alg_id == ALG_SHA384
    assert cc_api.get_default_algorithms(b).name == "sha384"
    assert cc_api.get_measurement_count(b) == 5
    mrtd = cc_api.get_cc_measurement(0, backend=b)
    assert mrtd.hash.hex() == want["mrtd"] and mrtd.label == "MR0 (MRTD)"
    for n in range(4):
        m = cc_api.get_cc_measurement(n + 1, ALG_SHA384, backend=b)
        assert m.hash.hex() == want["rtmr"][n]
        assert m.label == "MR%d (RTMR%d)" % (n + 1, n)
    with pytest.raises(InputError) as e:
        cc_api.get_cc_measurement(5, backend=b)
    assert str(e.value) == "register index 5 out of range: tdx has CC MR indexes 0..4"
    with pytest.raises(InputError) as e:
        cc_api.get_cc_measurement(1, ALG_SHA256, backend=b)
    assert str(e.value) == "MR1 (RTMR0) has no sha256 bank on tdx"


def test_tdx_eventlog_replays_to_the_quote_rtmrs(fake_tdx: FakeTdxSysfs) -> None:
    b = _tdx(fake_tdx)
    expected = _expected()
    events = cc_api.get_cc_eventlog(backend=b)
    assert len(events) == expected["ccel_events_after_spec_id"] + 1  # + one IMA entry
    assert isinstance(events[-1], ImaEntry) and events[-1].index == 3  # RTMR2 = CC MR 3
    assert {ev.index for ev in events[:-1] if ev.extends} == {1, 2, 3}
    replayed = cc_api.replay_cc_eventlog(events, backend=b)
    rtmrs = expected["quote"]["rtmr"]
    assert {i: v[ALG_SHA384].hex() for i, v in replayed.items()} == {
        1: rtmrs[0], 2: rtmrs[1], 3: rtmrs[2]}
    for index, banks in replayed.items():  # and the live registers
        assert cc_api.get_cc_measurement(index, backend=b).hash == banks[ALG_SHA384]
    # the CCEL alone: MR3 before IMA, as cc-trusted-api's replay gives it
    firmware = cc_api.get_cc_eventlog(0, len(events) - 1, backend=b)
    assert [e.encode() for e in firmware] == [e.encode() for e in events[:-1]]
    assert cc_api.replay_cc_eventlog(firmware, "cc_mr")[3][ALG_SHA384].hex() == \
        expected["ccel_replay_by_mr_index"]["3"]
    assert cc_api.get_cc_eventlog(len(events), backend=b) == []
    assert [e.offset for e in cc_api.get_cc_eventlog(10, 5, backend=b)] == \
        [e.offset for e in events[10:15]]
    with pytest.raises(InputError):
        cc_api.get_cc_eventlog(len(events) + 1, backend=b)
    with pytest.raises(InputError):
        cc_api.get_cc_eventlog(0, -1, backend=b)
    with pytest.raises(InputError):
        cc_api.replay_cc_eventlog(events, "rtmr")


def test_tdx_report_binds_sha512_of_nonce_and_data(fake_tdx: FakeTdxSysfs) -> None:
    b = _tdx(fake_tdx)
    nonce, data = b"12345678", b"abcdefg"
    # cc-api passes base64 strings; bytes work too
    rep = cc_api.get_cc_report(base64.b64encode(nonce).decode(), data, backend=b)
    want = hashlib.sha512(nonce + data).digest()
    assert rep.report_data == want and rep.kind == "tdx-quote"
    assert bytes(parse_quote(rep.data).body.report_data) == want
    assert fake_tdx.requests == [want]
    with pytest.raises(InputError):
        cc_api.get_cc_report("not base64!", backend=b)


@pytest.mark.swtpm
def test_tpm_measurements_are_pcr_numbers(started_swtpm: Swtpm) -> None:
    b = TpmBackend(device=str(started_swtpm.sock))
    assert cc_api.get_measurement_count(b) == 24
    assert cc_api.get_default_algorithms(b).alg_id == ALG_SHA256
    digest = hashlib.sha256(b"cvmchain:cc-api").digest()
    banks = b.algorithms()
    b._open().pcr_extend(0, {a: hashlib.new(alg_name(a), b"cvmchain:cc-api").digest()
                             for a in banks})
    pcr0 = cc_api.get_cc_measurement(0, backend=b)  # PCR 0, not "-1" as in cctrusted-base
    assert pcr0.label == "PCR 0" and pcr0.alg_id == ALG_SHA256
    assert pcr0.hash == hashlib.sha256(bytes(32) + digest).digest()
    assert cc_api.get_cc_measurement(1, backend=b).hash == bytes(32)
    with pytest.raises(InputError):
        cc_api.get_cc_measurement(24, backend=b)
    with pytest.raises(BackendError):
        cc_api.get_cc_report(b"nonce", backend=b)


@pytest.mark.swtpm
def test_tpm_eventlog_replays_to_tpm2_eventlog_values(fw_swtpm: Swtpm, tmp_path: Path) -> None:
    log = fixture("tpm2-tools", GCE_LOG).read_bytes()
    b = TpmBackend(root=tmp_path, device=str(fw_swtpm.sock))
    _play_firmware(fw_swtpm, log, b.algorithms())
    (tmp_path / "sys/kernel/security/tpm0").mkdir(parents=True)
    (tmp_path / "sys/kernel/security/tpm0/binary_bios_measurements").write_bytes(log)
    events = cc_api.get_cc_eventlog(backend=b)
    assert {ev.index for ev in events} == {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14}
    replayed = cc_api.replay_cc_eventlog(events, backend=b)
    want = _yaml_pcrs(GCE_LOG)[ALG_SHA256]
    assert {p: v[ALG_SHA256] for p, v in replayed.items()} == want
    for pcr, banks in replayed.items():
        for alg, value in banks.items():
            assert cc_api.get_cc_measurement(pcr, alg, backend=b).hash == value
