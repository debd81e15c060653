"""TDX quotes: the cc-trusted-api fixture parses to its expected values and verifies."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sdk.cli import main
from cloud_sdk.quote_verify import verify_quote
from shared_spec.errors import SpecError
from shared_spec.tdx_quote import BODY_TYPE_TD15, TdReportBody, parse_quote
from tests.fixtures import fixture


def _quote() -> bytes:
    return fixture("tdx-cc-trusted-api", "quote.bin").read_bytes()


def test_fixture_quote_fields_and_round_trip() -> None:
    expected = json.loads(fixture("tdx-cc-trusted-api", "expected.json").read_text())["quote"]
    data = _quote()
    q = parse_quote(data)
    d = q.to_dict()
    assert q.encode() == data
    assert d["version"] == expected["version"] and d["att_key_type"] == expected["att_key_type"]
    assert d["tee_type"] == expected["tee_type"]
    assert d["mrtd"] == expected["mrtd"] and d["rtmrs"] == expected["rtmr"]
    assert d["report_data"] == expected["reportdata"]
    assert d["td_attributes"] == expected["td_attributes"] and d["xfam"] == expected["xfam"]
    assert d["certification_data_type"] == 6 and d["inner_certification_data_type"] == 5


def test_fixture_quote_signature_and_qe_report_verify() -> None:
    res = verify_quote(parse_quote(_quote()))
    assert res.signature_valid and res.qe_report_valid
    assert [c["subject"].split("CN=")[1] for c in res.chain] == [
        "Intel SGX PCK Certificate", "Intel SGX PCK Platform CA", "Intel SGX Root CA"]


@pytest.mark.parametrize("offset", [48 + 16, 48 + 136, 48 + 520])
def test_modified_body_fails_the_signature(offset: int) -> None:
    data = bytearray(_quote())
    data[offset] ^= 1
    res = verify_quote(parse_quote(bytes(data)))
    assert not res.signature_valid
    assert "QUOTE_SIGNATURE_INVALID" in [e["code"] for e in res.errors]
    assert res.qe_report_valid  # the QE report is untouched


def test_swapped_attestation_key_breaks_the_qe_binding() -> None:
    q = parse_quote(_quote())
    q.attestation_key = bytes(reversed(q.attestation_key))
    res = verify_quote(q)
    assert not res.qe_report_valid or not res.signature_valid


def test_nonce_binding() -> None:
    q = parse_quote(_quote())
    assert verify_quote(q, expected_report_data=q.body.fields["report_data"]).report_data_valid
    assert verify_quote(q, expected_report_data=b"nonce").report_data_valid is False


def test_v5_td15_round_trip() -> None:
    q = parse_quote(_quote())
    q.version = 5
    q.body_type = BODY_TYPE_TD15
    fields = dict(q.body.fields)
    fields["tee_tcb_svn2"] = b"\x01" * 16
    fields["mrservicetd"] = b"\x02" * 48
    q.body = TdReportBody(fields, True)
    q.trailer = b""
    data = q.encode()
    back = parse_quote(data)
    assert back.version == 5 and back.body.is_td15
    assert back.body.fields["mrservicetd"] == b"\x02" * 48
    assert back.encode() == data


def test_cli_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quote", "show", "--format", "json",
                 str(fixture("tdx-cc-trusted-api", "quote.bin"))]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"mrtd", "rtmrs", "report_data"} <= set(out) and len(out["rtmrs"]) == 4


@settings(max_examples=300)
@given(st.data())
def test_mutated_quotes_fail_only_with_spec_error(data: st.DataObject) -> None:
    raw = bytearray(fixture("tdx-cc-trusted-api", "quote.bin").read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, 700))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        parse_quote(bytes(raw[:cut]))
    except SpecError:
        pass
