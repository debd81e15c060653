"""``cvmchain quote show | verify``: a thin layer over :mod:`shared_spec.tdx_quote` and
:mod:`cloud_sdk.quote_verify` for TDX quotes (binary), and over
:mod:`cloud_sdk.tpm_quote` for TPM quotes (``cvmchain-tpm-quote/1`` JSON files,
recognised by their content).

Exit codes: 0 every check passed, 1 a check failed, 2 unusable input (raised
as ``SpecError`` / ``InputError`` and reported by ``cloud_sdk.cli``).
"""

import argparse
import datetime
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from cloud_sdk import tpm_quote
from cloud_sdk.errors import InputError
from cloud_sdk.intel_roots import trusted_roots
from cloud_sdk.logs import read_file
from cloud_sdk.quote_verify import DEFAULT_ACCEPTED_TCB, load_collateral, verify_quote
from shared_spec.tdx_quote import TdxQuote, parse_quote


def register(sub: Any) -> None:
    """Add ``quote show`` and ``quote verify`` to the ``cvmchain`` subparsers."""
    p = sub.add_parser("quote", help="get, show and verify quotes (TDX v4/v5, TPM 2.0)")
    q = p.add_subparsers(dest="quote_command", required=True, metavar="SUBCOMMAND")
    show = q.add_parser("show", help="the fields of a TDX quote or a TPM quote file")
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.add_argument("file", help="binary TDX quote, or cvmchain-tpm-quote/1 JSON")
    show.set_defaults(handler=cmd_show)

    ver = q.add_parser("verify", help="TDX: quote signature, QE report, PCK chain, TCB "
                       "status; TPM: AK signature, nonce, PCR digest",
                       description="Verify a TDX quote, or a TPM quote file (`cvmchain quote "
                       "get` on a TPM: the AK's signature over TPMS_ATTEST, magic and type, "
                       "extraData = --nonce, pcrDigest = hash of the PCR values). Exit 0 when "
                       "every check passes, 1 when one fails, 2 when the input is unusable.")
    ver.add_argument("file", help="binary TDX quote, or cvmchain-tpm-quote/1 JSON")
    ver.add_argument("--collateral", metavar="DIR",
                     help="Intel PCS collateral: tcb_info.json + tcb_info_issuer_chain.pem, "
                     "qe_identity.json + qe_identity_issuer_chain.pem, root_ca_crl.der, "
                     "pck_crl.der (any subset), or one collateral.json")
    ver.add_argument("--time", metavar="ISO8601",
                     help="check certificates, CRLs and collateral at this time (default: now)")
    ver.add_argument("--nonce", metavar="HEX",
                     help="REPORTDATA must be this nonce zero-padded to 64 bytes, or its SHA-512")
    ver.add_argument("--report-data", metavar="HEX",
                     help="REPORTDATA must be exactly these 64 bytes")
    ver.add_argument("--trust-sandbox-root", action="store_true",
                     help="also accept chains ending in Intel's pre-production (SBX) root")
    ver.add_argument("--accept-tcb", metavar="STATUS", action="append", default=[],
                     help="also accept this TCB status (e.g. SWHardeningNeeded); repeatable")
    ver.add_argument("--ak-pem", metavar="FILE",
                     help="TPM: verify with this AK public key (PEM) instead of the file's")
    ver.add_argument("--format", choices=("text", "json"), default="text")
    ver.set_defaults(handler=cmd_verify)


_LABELS = (
    ("version", "version"), ("att_key_type", "attestation key type"), ("tee_type", "TEE type"),
    ("body_type", "body type"), ("td_attributes", "TD attributes"), ("xfam", "XFAM"),
    ("mrtd", "MRTD (MR0)"), ("mrconfigid", "MRCONFIGID"), ("mrowner", "MROWNER"),
    ("mrownerconfig", "MROWNERCONFIG"), ("report_data", "REPORTDATA"),
    ("tee_tcb_svn", "TEE TCB SVN"), ("mrseam", "MRSEAM"), ("mrsignerseam", "MRSIGNERSEAM"),
    ("seam_attributes", "SEAM attributes"), ("tee_tcb_svn2", "TEE TCB SVN2"),
    ("mrservicetd", "MRSERVICETD"), ("qe_vendor_id", "QE vendor id"),
    ("certification_data_type", "certification data type"),
    ("inner_certification_data_type", "nested certification data type"),
)


def _load(path: str) -> TdxQuote:
    return parse_quote(read_file(path), source=path)


def _dump(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=1)
    sys.stdout.write("\n")


def cmd_show(args: argparse.Namespace) -> int:
    raw = read_file(args.file)
    if tpm_quote.looks_like_tpm_quote(raw):
        return cmd_show_tpm(args, tpm_quote.TpmQuote.loads(raw, args.file))
    q = parse_quote(raw, source=args.file)
    d = q.to_dict()
    if args.format == "json":
        _dump(d)
        return 0
    t = Table(title="%s: TDX quote v%d" % (args.file, q.version), show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    for key, label in _LABELS:
        if d.get(key) is not None:
            t.add_row(label, str(d[key]))
        if key == "mrownerconfig":
            for i, v in enumerate(d["rtmrs"]):
                t.add_row("RTMR%d (MR%d)" % (i, i + 1), v)
    qe = d["qe_report"]
    if qe:
        t.add_row("QE MRENCLAVE", qe["mrenclave"])
        t.add_row("QE MRSIGNER", qe["mrsigner"])
        t.add_row("QE ISVPRODID / ISVSVN", "%d / %d" % (qe["isvprodid"], qe["isvsvn"]))
    t.add_row("PCK chain", "%d bytes of PEM" % d["pck_chain_size"])
    Console().print(t)
    return 0


def _hex_arg(value: str, option: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError as e:
        raise InputError("%s %r is not hex" % (option, value)) from e


def _time_arg(value: str) -> datetime.datetime:
    try:
        at = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise InputError("--time %r is not ISO 8601" % value) from e
    return at if at.tzinfo else at.replace(tzinfo=datetime.timezone.utc)


def cmd_verify(args: argparse.Namespace) -> int:
    raw = read_file(args.file)
    if tpm_quote.looks_like_tpm_quote(raw):
        return cmd_verify_tpm(args, tpm_quote.TpmQuote.loads(raw, args.file))
    if args.ak_pem:
        raise InputError("--ak-pem is for TPM quotes; %s is a TDX quote" % args.file)
    q = parse_quote(raw, source=args.file)
    at = _time_arg(args.time) if args.time else None
    nonce = _hex_arg(args.nonce, "--nonce") if args.nonce else None
    expected = _hex_arg(args.report_data, "--report-data") if args.report_data else None
    collateral = load_collateral(args.collateral) if args.collateral else None
    res = verify_quote(q, at=at, expected_report_data=expected, nonce=nonce,
                       collateral=collateral,
                       anchors=trusted_roots(include_sandbox=args.trust_sandbox_root))
    passed = res.passed(tuple(DEFAULT_ACCEPTED_TCB) + tuple(args.accept_tcb))
    if args.format == "json":
        out = res.to_dict()
        out["passed"] = passed
        _dump(out)
        return 0 if passed else 1
    c = Console()
    t = Table(title="%s: TDX quote v%d" % (args.file, q.version), show_header=False)
    t.add_column("check", style="bold")
    t.add_column("result", overflow="fold")

    def flag(v: bool | None) -> str:
        return "[green]valid[/green]" if v else "[red]INVALID[/red]"

    t.add_row("quote signature", flag(res.signature_valid))
    t.add_row("QE report", flag(res.qe_report_valid))
    t.add_row("PCK chain", flag(res.pck_chain_valid))
    if res.report_data_valid is not None:
        t.add_row("REPORTDATA", flag(res.report_data_valid)
                  + (" (%s)" % res.report_data_binding if res.report_data_binding else ""))
    if res.collateral_valid is not None:
        t.add_row("collateral", flag(res.collateral_valid))
    t.add_row("TCB status", res.tcb_status)
    if res.pck:
        t.add_row("FMSPC / PCE-ID", "%s / %s" % (res.pck["fmspc"], res.pck["pceid"]))
    if res.chain:
        t.add_row("chain root", "%s (SHA-256 %s)" % (res.chain[-1]["subject"],
                                                      res.chain[-1]["sha256"]))
    c.print(t)
    for err in res.errors:
        c.print("[red]%s[/red]: %s" % (err["code"], err["message"]), highlight=False)
    c.print("[green]PASSED[/green]" if passed else "[red]FAILED[/red]")
    return 0 if passed else 1


# ---------------------------------------------------------------- TPM quotes


def cmd_show_tpm(args: argparse.Namespace, q: tpm_quote.TpmQuote) -> int:
    from shared_spec.tpm2_attest import parse_attest, parse_signature

    d: dict[str, Any] = {"kind": "tpm-quote", "ak": q.ak, "tcti": q.tcti,
                         "nonce": q.nonce.hex(), "ak_public_pem": q.ak_public_pem,
                         "attest": parse_attest(q.attest, source=args.file + ": attest"
                                                ).to_dict(),
                         "signature": parse_signature(q.signature, source=args.file
                                                      + ": signature").to_dict(),
                         "pcrs": q.to_json()["pcrs"]}
    if args.format == "json":
        _dump(d)
        return 0
    t = Table(title="%s: TPM quote" % args.file, show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    a = d["attest"]
    for label, value in (("type", a["type"]), ("magic", a["magic"]),
                         ("qualified signer", a["qualified_signer"]),
                         ("extraData (nonce)", a["extra_data"] or "(empty)"),
                         ("clock / resets / restarts", "%(clock)d ms / %(reset_count)d / "
                          "%(restart_count)d" % a["clock_info"]),
                         ("firmware version", a["firmware_version"]),
                         ("PCR selection", ", ".join("%s:%s" % (s["alg"], ",".join(
                             str(p) for p in s["pcrs"])) for s in a.get("pcr_select", []))),
                         ("PCR digest", a.get("pcr_digest", "")),
                         ("signature", "%s-%s" % (d["signature"]["sig_alg"],
                                                  d["signature"]["hash"])),
                         ("attestation key", q.ak), ("TCTI", q.tcti)):
        t.add_row(label, str(value))
    for alg, bank in d["pcrs"].items():
        for pcr, value in bank.items():
            t.add_row("PCR %s (%s)" % (pcr, alg), value)
    Console().print(t)
    return 0


def cmd_verify_tpm(args: argparse.Namespace, q: tpm_quote.TpmQuote) -> int:
    for option in ("report_data", "collateral", "time"):
        if getattr(args, option):
            raise InputError("--%s is for TDX quotes; %s is a TPM quote"
                             % (option.replace("_", "-"), args.file))
    nonce = _hex_arg(args.nonce, "--nonce") if args.nonce else None
    pem = None
    if args.ak_pem:
        pem = read_file(args.ak_pem)
    res = tpm_quote.verify_tpm_quote(q, nonce=nonce, ak_public_pem=pem)
    if args.format == "json":
        _dump(res.to_dict())
        return 0 if res.passed else 1
    c = Console()
    t = Table(title="%s: TPM quote" % args.file, show_header=False)
    t.add_column("check", style="bold")
    t.add_column("result", overflow="fold")

    def flag(v: bool | None) -> str:
        if v is None:
            return "not checked (no nonce)"
        return "[green]valid[/green]" if v else "[red]INVALID[/red]"

    t.add_row("AK signature", flag(res.signature_valid)
              + (" (%s-%s)" % (res.signature["sig_alg"], res.signature["hash"])))
    t.add_row("TPMS_ATTEST magic, type", flag(res.attest_valid))
    t.add_row("nonce (extraData)", flag(res.nonce_valid))
    t.add_row("PCR digest", flag(res.pcr_digest_valid))
    if res.attest.get("pcr_select"):
        t.add_row("PCRs quoted", ", ".join("%s:%s" % (s["alg"], ",".join(str(p) for p in
                                                                     s["pcrs"]))
                                           for s in res.attest["pcr_select"]))
    t.add_row("attestation key", ("pinned --ak-pem " + args.ak_pem) if args.ak_pem
              else "from the file (%s)" % (q.ak or "unnamed"))
    c.print(t)
    for err in res.errors:
        c.print("[red]%s[/red]: %s" % (err["code"], err["message"]), highlight=False)
    c.print("[green]PASSED[/green]" if res.passed else "[red]FAILED[/red]")
    return 0 if res.passed else 1
