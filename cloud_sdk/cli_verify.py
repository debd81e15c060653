"""``cvmchain verify``: replay an evidence bundle and check it against a reference."""

import argparse
import json
import sys
from typing import Any

from rich.console import Console

from cloud_sdk.errors import InputError
from cloud_sdk.evidence import Evidence
from cloud_sdk.reference import Reference
from cloud_sdk.render import print_findings, register_table, verdict_line
from cloud_sdk.verify import load_reference_manifest, verify


def register(sub: Any) -> None:
    p = sub.add_parser("verify", help="replay evidence and verify it (against a reference)")
    p.add_argument("--reference", metavar="REF", help="the rewriter's <image>.reference.json")
    p.add_argument("--evidence", metavar="BUNDLE", required=False,
                   help="an evidence bundle (cvmchain-evidence/1 JSON)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    if not args.evidence:
        raise InputError("--evidence BUNDLE is required: collecting live evidence on this "
                         "machine is not implemented yet")
    evidence = Evidence.load(args.evidence)
    reference = None
    manifest = None
    if args.reference:
        reference = Reference.load(args.reference)
        manifest = load_reference_manifest(args.reference, reference)
    verdict = verify(evidence, reference, manifest)
    if args.format == "json":
        json.dump(verdict.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        console = Console()
        console.print(register_table(verdict.chain))
        print_findings(console, verdict.findings)
        console.print(verdict_line(verdict.verified))
    return 0 if verdict.verified else 1
