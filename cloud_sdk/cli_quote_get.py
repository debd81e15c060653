"""``cvmchain quote get``: ask this TDX guest for a quote through configfs-tsm."""

import argparse
import sys
from typing import Any

from cloud_sdk.backends import report_data_for
from cloud_sdk.cli_evidence import parse_hex
from cloud_sdk.cli_registers import add_backend_arguments, backend_from_args
from cloud_sdk.errors import InputError


def _quote_subparsers(sub: Any) -> Any:
    """The ``quote`` command's own subparsers (made by cli_quote.register)."""
    quote = sub.choices.get("quote")
    if quote is None:
        raise RuntimeError("cli_quote.register must run before cli_quote_get.register")
    for action in quote._actions:  # argparse keeps no public handle on it
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("the quote command has no subcommands")


def register(sub: Any) -> None:
    """Add ``quote get`` under the existing ``quote`` command."""
    g = _quote_subparsers(sub).add_parser(
        "get", help="get a TDX quote from this guest (configfs-tsm)",
        description="Write a TDX quote whose REPORTDATA is SHA-512(nonce), or the 64 bytes "
        "given with --report-data, or zeros. Verify it with `cvmchain quote verify FILE "
        "--nonce HEX`.")
    g.add_argument("-o", "--output", metavar="FILE", required=True)
    g.add_argument("--nonce", metavar="HEX")
    g.add_argument("--report-data", metavar="HEX", help="exactly 64 bytes of REPORTDATA")
    add_backend_arguments(g)
    g.set_defaults(handler=cmd_get)


def cmd_get(args: argparse.Namespace) -> int:
    if args.nonce and args.report_data:
        raise InputError("give --nonce or --report-data, not both")
    if args.report_data:
        rd = parse_hex(args.report_data, "--report-data")
        if len(rd) != 64:
            raise InputError("--report-data: %d bytes, need 64" % len(rd))
    else:
        rd = report_data_for(parse_hex(args.nonce, "--nonce") if args.nonce else None)
    report = backend_from_args(args).get_report(rd)
    try:
        with open(args.output, "wb") as f:
            f.write(report.data)
    except OSError as e:
        raise InputError("%s: cannot write: %s" % (args.output, e.strerror or e)) from e
    print("wrote %s: %d-byte %s from %s, REPORTDATA %s" % (
        args.output, len(report.data), report.kind, report.source, report.report_data.hex()),
        file=sys.stderr)
    return 0
