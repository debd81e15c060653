"""``cvmchain quote show | verify``."""

import argparse
import datetime
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from cloud_sdk.errors import InputError
from cloud_sdk.logs import read_file
from cloud_sdk.quote_verify import verify_quote
from shared_spec.tdx_quote import parse_quote


def register(sub: Any) -> None:
    p = sub.add_parser("quote", help="show and verify TDX quotes")
    q = p.add_subparsers(dest="quote_command", required=True, metavar="SUBCOMMAND")
    show = q.add_parser("show", help="the fields of a TDX quote (v4 or v5)")
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.add_argument("file")
    show.set_defaults(handler=cmd_show)
    ver = q.add_parser("verify", help="signature, QE report and PCK chain checks")
    ver.add_argument("--collateral", metavar="DIR",
                     help="Intel collateral (TCB info, QE identity, CRLs); not yet evaluated")
    ver.add_argument("--time", metavar="ISO8601", help="verify certificates at this time")
    ver.add_argument("--nonce", metavar="HEX", help="REPORTDATA must be this (zero-padded)")
    ver.add_argument("--format", choices=("text", "json"), default="text")
    ver.add_argument("file")
    ver.set_defaults(handler=cmd_verify)


_LABELS = (
    ("version", "version"), ("tee_type", "TEE type"), ("td_attributes", "TD attributes"),
    ("xfam", "XFAM"), ("mrtd", "MRTD"), ("mrconfigid", "MRCONFIGID"), ("mrowner", "MROWNER"),
    ("mrownerconfig", "MROWNERCONFIG"), ("report_data", "REPORTDATA"),
    ("tee_tcb_svn", "TEE TCB SVN"), ("mrseam", "MRSEAM"), ("qe_vendor_id", "QE vendor id"),
    ("certification_data_type", "certification data type"),
)


def cmd_show(args: argparse.Namespace) -> int:
    q = parse_quote(read_file(args.file), source=args.file)
    d = q.to_dict()
    if args.format == "json":
        json.dump(d, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    t = Table(title="%s: TDX quote v%d" % (args.file, q.version), show_header=False)
    t.add_column("field")
    t.add_column("value", overflow="fold")
    for key, label in _LABELS:
        t.add_row(label, str(d[key]))
    for i, v in enumerate(d["rtmrs"]):
        t.add_row("RTMR%d (MR%d)" % (i, i + 1), v)
    Console().print(t)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    q = parse_quote(read_file(args.file), source=args.file)
    at = None
    if args.time:
        try:
            at = datetime.datetime.fromisoformat(args.time.replace("Z", "+00:00"))
        except ValueError as e:
            raise InputError("--time %r is not ISO 8601" % args.time) from e
        if at.tzinfo is None:
            at = at.replace(tzinfo=datetime.timezone.utc)
    nonce = None
    if args.nonce:
        try:
            nonce = bytes.fromhex(args.nonce)
        except ValueError as e:
            raise InputError("--nonce is not hex") from e
        if len(nonce) > 64:
            raise InputError("--nonce is longer than REPORTDATA (64 bytes)")
    res = verify_quote(q, at, nonce)
    if args.format == "json":
        json.dump(res.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        c = Console()
        for name in ("signature_valid", "qe_report_valid", "pck_chain_valid"):
            ok = getattr(res, name)
            c.print("%s %s" % ("[green]\u2713[/green]" if ok else "[red]\u2717[/red]", name))
        c.print("tcb_status: %s" % res.tcb_status)
        for err in res.errors:
            c.print("[red]%s[/red]: %s" % (err["code"], err["message"]), highlight=False)
    return 0 if res.ok else 1
