"""The ``cvmchain eventlog`` contract, on real logs."""

import json

import pytest

from cloud_sdk.cli import main
from tests.fixtures import fixture


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict]:
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_replay_ccel_plus_ima_gives_quote_rtmrs(capsys: pytest.CaptureFixture[str]) -> None:
    expected = json.loads(fixture("tdx-cc-trusted-api", "expected.json").read_text())
    code, out = _json(capsys, ["eventlog", "replay", "--format", "json",
                               str(fixture("tdx-cc-trusted-api", "ccel_data.bin")),
                               str(fixture("tdx-cc-trusted-api", "ima_log.bin"))])
    assert code == 0
    assert out["index_kind"] == "cc_mr"
    assert out["events"] == expected["ccel_events_after_spec_id"] + 1
    for i in range(3):
        assert out["registers"][str(i + 1)]["sha384"] == expected["quote"]["rtmr"][i]


def test_replay_tpm_log_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _json(capsys, ["eventlog", "replay", "--format", "json",
                               str(fixture("tpm2-tools", "event-uefi-sha1-log.bin"))])
    assert code == 0 and out["index_kind"] == "pcr"
    assert set(out) >= {"index_kind", "registers", "events", "findings"}
    assert all(set(b) == {"sha1"} for b in out["registers"].values())


def test_check_exits_1_on_digest_mismatch(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _json(capsys, ["eventlog", "check", "--format", "json",
                               str(fixture("tpm2-tools", "event-arch-linux.bin"))])
    assert code == 1
    # tpm2_eventlog's .warn for this log: "Event 24's digest does not match its payload"
    # (it counts the Spec ID header as event 0)
    bad = {f["event"] for f in out["findings"] if f["code"] == "DIGEST_MISMATCH"}
    assert bad == {23}
    code, out = _json(capsys, ["eventlog", "check", "--format", "json",
                               str(fixture("tpm2-tools", "event-gce-ubuntu-2104-log.bin"))])
    assert code == 0 and out["ok"]


def test_show_json_and_cel_json(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(fixture("tpm2-tools", "event-gce-ubuntu-2104-log.bin"))
    code, out = _json(capsys, ["eventlog", "show", "--format", "json", path])
    assert code == 0
    ev = out["events"][0]
    assert {"index", "event_type_name", "digests", "event_data"} <= set(ev)
    names = {e["event_type_name"] for e in out["events"]}
    assert "EV_EFI_VARIABLE_DRIVER_CONFIG" in names
    sb = [e for e in out["events"] if (e.get("decoded") or {}).get("unicode_name") == "SecureBoot"]
    assert sb and sb[0]["decoded"]["variable_guid"] == "8be4df61-93ca-11d2-aa0d-00e098032b8c"
    code = main(["eventlog", "show", "--format", "cel-json", path])
    records = json.loads(capsys.readouterr().out)
    assert code == 0 and len(records) == len(out["events"])
    assert records[0]["digests"][0]["hashAlg"] in ("sha1", "sha256")
    assert main(["eventlog", "show", path]) == 0


def test_unusable_input_exits_2_naming_file_and_offset(tmp_path, capsys) -> None:  # type: ignore
    data = fixture("tpm2-tools", "event-gce-ubuntu-2104-log.bin").read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[: len(data) - 7])
    assert main(["eventlog", "replay", str(cut)]) == 2
    err = capsys.readouterr().err
    assert str(cut) in err and "offset" in err
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x01\x02\x03 not a log")
    assert main(["eventlog", "show", str(junk)]) == 2
    assert str(junk) in capsys.readouterr().err
    assert main(["eventlog", "show", str(tmp_path / "missing")]) == 2
