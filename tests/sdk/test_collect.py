"""cloud_sdk.collect and ``cvmchain evidence collect``: bundles that ``cvmchain verify`` accepts.

TDX evidence comes from :class:`FakeTdxSysfs` (a mock of TDX hardware serving
the real cc-trusted-api evidence), TPM evidence from a real swtpm into which
a real firmware log was extended.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_sdk import backends
from cloud_sdk.backends import OfflineBackend, TdxBackend, TpmBackend
from cloud_sdk.cli import main
from cloud_sdk.collect import collect_evidence
from cloud_sdk.errors import BackendError
from cloud_sdk.evidence import Evidence
from cloud_sdk.verify import verify
from shared_spec import ima
from shared_spec.algorithms import ALG_SHA384, alg_name
from tests.fixtures import fixture
from tests.sdk import test_backends
from tests.sdk.test_backends import (
    GCE_LOG,
    FakeTdxSysfs,
    _play_firmware,
)
from tests.test_tpm2_swtpm import Swtpm

# fixtures shared with test_backends
fake_tdx = test_backends.fake_tdx
fw_swtpm = test_backends.fw_swtpm


def _tdx(fake: FakeTdxSysfs) -> TdxBackend:
    return TdxBackend(root=fake.root, tsm_entry=FakeTdxSysfs.ENTRY)


def _tdx_args(fake: FakeTdxSysfs) -> list[str]:
    return ["--backend", "tdx", "--root", str(fake.root), "--tsm-entry", FakeTdxSysfs.ENTRY]


def test_tdx_bundle_round_trips_and_verifies(fake_tdx: FakeTdxSysfs, tmp_path: Path) -> None:
    nonce = bytes(range(32))
    ev = collect_evidence(_tdx(fake_tdx), nonce=nonce)
    assert ev.nonce == nonce
    assert ev.registers["cc_mr"][4] == {ALG_SHA384: fake_tdx.rtmrs[3]}
    assert ev.blobs["ccel_data"] == fake_tdx.ccel_data
    assert ev.blobs["ima_ascii"] == fake_tdx.ima_ascii and "ima_binary" not in ev.blobs
    assert ev.sources["ccel_data"] == "/sys/firmware/acpi/tables/data/CCEL"
    assert ev.sources["ima_ascii"] == "/sys/kernel/security/ima/ascii_runtime_measurements"
    assert "tdreport" not in ev.blobs  # registers came from the tsm-mr files
    quote_rd = fake_tdx.requests[-1]
    assert quote_rd == hashlib.sha512(nonce).digest()
    assert ev.blobs["quote"][48 + 520:48 + 584] == quote_rd  # header 48, REPORTDATA at 520
    assert b"console=ttyS0 ima_policy=tcb" in ev.blobs["kernel_cmdline"]

    path = tmp_path / "bundle.json"
    ev.save(path)
    back = Evidence.load(path)
    assert back.registers == ev.registers and back.blobs == ev.blobs
    assert back.sources == ev.sources and back.nonce == nonce

    verdict = verify(back)
    assert verdict.verified, [f.to_dict() for f in verdict.findings]
    matched = {(r.index, r.matches) for r in verdict.chain.registers}
    assert matched == {(1, True), (2, True), (3, True), (4, True)}


def test_cli_collect_then_verify(fake_tdx: FakeTdxSysfs, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ev.json"
    assert main(["evidence", "collect", "-o", str(out), "--nonce", "00ff", *_tdx_args(fake_tdx)]
                ) == 0
    assert "wrote %s: tdx backend, 5 registers" % out in capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["schema"] == "cvmchain-evidence/1" and doc["nonce"] == "00ff"
    assert main(["verify", "--evidence", str(out), "--format", "json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["verified"] is True
    assert sorted(r["register"] for r in verdict["registers"]) == [
        "MR1 (RTMR0)", "MR2 (RTMR1)", "MR3 (RTMR2)", "MR4 (RTMR3)"]


def test_a_register_the_logs_do_not_explain_fails_verification(
        fake_tdx: FakeTdxSysfs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rtmr1 = fake_tdx.root / backends.TDX_MEASUREMENTS / "rtmr1:sha384"
    value = bytearray(rtmr1.read_bytes())
    value[0] ^= 1
    rtmr1.write_bytes(bytes(value))
    out = tmp_path / "ev.json"
    assert main(["evidence", "collect", "-o", str(out), *_tdx_args(fake_tdx)]) == 0
    capsys.readouterr()
    assert main(["verify", "--evidence", str(out), "--format", "json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    bad = [r["register"] for r in verdict["registers"] if not r["matches"]]
    assert bad == ["MR2 (RTMR1)"]
    assert any(f["code"] == "REGISTER_MISMATCH" for f in verdict["findings"])


def test_ima_binary_list_is_preferred_and_newer_kernel_path_found(tmp_path: Path) -> None:
    fake = FakeTdxSysfs(tmp_path)
    old = tmp_path / "sys/kernel/security/ima"
    (old / "ascii_runtime_measurements").unlink()
    old.rmdir()
    new = tmp_path / "sys/kernel/security/integrity/ima"
    new.mkdir(parents=True)
    entries = ima.parse_ima_ascii(fake.ima_ascii)
    binary = ima.encode_ima_binary(entries)
    (new / "binary_runtime_measurements").write_bytes(binary)
    (new / "ascii_runtime_measurements").write_bytes(fake.ima_ascii)
    ev = collect_evidence(TdxBackend(root=tmp_path), include_quote=False)
    assert ev.blobs["ima_binary"] == binary and "ima_ascii" not in ev.blobs
    assert ev.sources["ima_binary"] == \
        "/sys/kernel/security/integrity/ima/binary_runtime_measurements"
    assert verify(ev).verified
    assert "ima_binary" not in collect_evidence(TdxBackend(root=tmp_path), include_ima=False,
                                                include_quote=False).blobs


def test_tdreport_fallback_is_kept_in_the_bundle(tmp_path: Path) -> None:
    fake = FakeTdxSysfs(tmp_path, sysfs_registers=False)
    ev = collect_evidence(TdxBackend(root=tmp_path, ioctl=fake.ioctl))
    assert len(ev.blobs["tdreport"]) == 1024 and ev.sources["tdreport"] == "/dev/tdx_guest"
    assert ev.registers["cc_mr"][3] == {ALG_SHA384: fake.rtmrs[2]}
    # no configfs-tsm and no nonce: the bundle says why there is no quote
    assert "quote" not in ev.blobs
    assert any(n.startswith("no quote: %s is absent" % (tmp_path / backends.TSM_REPORT))
               for n in ev.notes)
    # with a nonce a quote is required
    with pytest.raises(BackendError):
        collect_evidence(TdxBackend(root=tmp_path, ioctl=fake.ioctl), nonce=b"n")
    assert verify(ev).verified


def test_offline_collect_reexports_the_bundle(fake_tdx: FakeTdxSysfs, tmp_path: Path) -> None:
    ev = collect_evidence(_tdx(fake_tdx), nonce=b"abc")
    path = tmp_path / "b.json"
    ev.save(path)
    again = collect_evidence(OfflineBackend.load(path), nonce=b"abc")
    assert again.blobs == ev.blobs and again.registers == ev.registers
    with pytest.raises(BackendError) as e:
        collect_evidence(OfflineBackend.load(path), nonce=b"other")
    assert "collected with nonce 616263" in str(e.value)


@pytest.fixture
def tpm_root(fw_swtpm: Swtpm, tmp_path: Path) -> Iterator[Path]:
    """A machine root whose TPM (the swtpm) holds the PCRs of a real firmware log."""
    log = fixture("tpm2-tools", GCE_LOG).read_bytes()
    _play_firmware(fw_swtpm, log, TpmBackend(device=str(fw_swtpm.sock)).algorithms())
    (tmp_path / "sys/kernel/security/tpm0").mkdir(parents=True)
    (tmp_path / backends.TPM_EVENTLOG).write_bytes(log)
    yield tmp_path


@pytest.mark.swtpm
def test_tpm_bundle_verifies(fw_swtpm: Swtpm, tpm_root: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tpm.json"
    assert main(["evidence", "collect", "-o", str(out), "--backend", "tpm", "--root",
                 str(tpm_root), "--tpm-device", str(fw_swtpm.sock)]) == 0
    ev = Evidence.load(out)
    assert sorted(ev.registers) == ["pcr"] and len(ev.registers["pcr"]) == 24
    assert "quote" not in ev.blobs
    assert ev.sources["tpm_eventlog"] == "/sys/kernel/security/tpm0/binary_bios_measurements"
    capsys.readouterr()
    assert main(["verify", "--evidence", str(out), "--format", "json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    checked = {r["register"] for r in verdict["registers"] if r["matches"]}
    assert {"PCR %d" % p for p in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14)} <= checked
    # one more extend the log does not record: verification must fail on that PCR
    tpm = TpmBackend(device=str(fw_swtpm.sock))
    tpm._open().pcr_extend(9, {a: hashlib.new(alg_name(a), b"x").digest()
                               for a in tpm.algorithms()})
    assert main(["evidence", "collect", "-o", str(out), "--backend", "tpm", "--root",
                 str(tpm_root), "--tpm-device", str(fw_swtpm.sock)]) == 0
    capsys.readouterr()
    assert main(["verify", "--evidence", str(out), "--format", "json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert {r["register"] for r in verdict["registers"] if not r["matches"]} == {"PCR 9"}
