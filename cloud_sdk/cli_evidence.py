"""``cvmchain evidence collect``: write this machine's evidence bundle.

Exit 0 written, 2 a source is unusable (the message names the file and the
permission it needs).
"""

import argparse
import sys
from typing import Any

from cloud_sdk.cli_registers import add_backend_arguments, backend_from_args
from cloud_sdk.collect import collect_evidence
from cloud_sdk.errors import InputError
from cloud_sdk.evidence import BLOB_KINDS


def register(sub: Any) -> None:
    p = sub.add_parser("evidence", help="collect an evidence bundle on this machine")
    e = p.add_subparsers(dest="evidence_command", required=True, metavar="SUBCOMMAND")
    c = e.add_parser("collect", help="registers, firmware log, agent logs, IMA list and a "
                     "quote (TDX) into one JSON bundle",
                     description="Collect the evidence a remote verifier needs into one "
                     "cvmchain-evidence/1 JSON file; check it with `cvmchain verify "
                     "--evidence FILE`.")
    c.add_argument("-o", "--output", metavar="FILE", required=True, help="bundle to write")
    c.add_argument("--nonce", metavar="HEX",
                   help="bind a quote to this nonce (REPORTDATA = SHA-512(nonce)); a quote "
                   "is then required")
    c.add_argument("--no-ima", action="store_true", help="leave the IMA list out")
    c.add_argument("--no-quote", action="store_true", help="do not ask for a quote")
    add_backend_arguments(c)
    c.set_defaults(handler=cmd_collect)


def parse_hex(text: str, option: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise InputError("%s: %r is not hex" % (option, text)) from None
    if not value:
        raise InputError("%s: empty" % option)
    return value


def cmd_collect(args: argparse.Namespace) -> int:
    nonce = parse_hex(args.nonce, "--nonce") if args.nonce else None
    backend = backend_from_args(args)
    ev = collect_evidence(backend, nonce=nonce, include_ima=not args.no_ima,
                          include_quote=not args.no_quote)
    try:
        ev.save(args.output)
    except OSError as e:
        raise InputError("%s: cannot write: %s" % (args.output, e.strerror or e)) from e
    count = sum(len(regs) for regs in ev.registers.values())
    print("wrote %s: %s backend, %d registers, %s" % (
        args.output, backend.name, count,
        ", ".join("%s (%d bytes)" % (n, len(ev.blobs[n])) for n in BLOB_KINDS if n in ev.blobs)
        or "no logs"), file=sys.stderr)
    for note in ev.notes:
        print("  note: %s" % note, file=sys.stderr)
    return 0
