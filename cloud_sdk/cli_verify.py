"""``cvmchain verify``: replay an evidence bundle (or this machine's live evidence) and check
it against a reference.

Without ``--evidence`` the evidence is collected on this machine first, exactly as
``cvmchain evidence collect`` would (registers, then the quote, then the logs), so a guest
can check itself: ``cvmchain verify --reference REF``.
"""

import argparse
import json
import sys
from typing import Any

from rich.console import Console

from cloud_sdk.backends import detect_backend
from cloud_sdk.cli_registers import add_backend_arguments
from cloud_sdk.collect import collect_evidence
from cloud_sdk.evidence import Evidence
from cloud_sdk.reference import Reference
from cloud_sdk.render import print_findings, register_table, verdict_line
from cloud_sdk.verify import load_reference_manifest, verify


def register(sub: Any) -> None:
    p = sub.add_parser("verify", help="replay evidence and verify it (against a reference)",
                       description="Replay an evidence bundle, or without --evidence the "
                       "evidence of this machine collected now, and verify it, against the "
                       "rewriter's reference when one is given.")
    p.add_argument("--reference", metavar="REF", help="the rewriter's <image>.reference.json")
    p.add_argument("--evidence", metavar="BUNDLE", required=False,
                   help="an evidence bundle (cvmchain-evidence/1 JSON); default: collect "
                   "this machine's evidence now")
    p.add_argument("--format", choices=("text", "json"), default="text")
    live = p.add_argument_group("live evidence (without --evidence)")
    add_backend_arguments(live, offline=False)
    live.add_argument("--no-quote", action="store_true", help="do not ask for a quote")
    p.set_defaults(handler=cmd_verify)


def live_evidence(args: argparse.Namespace) -> Evidence:
    """This machine's evidence, collected as ``cvmchain evidence collect`` does; the bundle's
    notes (a quote that could not be made, an absent log) go to stderr."""
    backend = detect_backend(args.backend, args.root, tpm_device=args.tpm_device,
                             tsm_entry=args.tsm_entry)
    evidence = collect_evidence(backend, include_quote=not args.no_quote)
    for note in evidence.notes:
        print("cvmchain: live evidence: %s" % note, file=sys.stderr)
    return evidence


def cmd_verify(args: argparse.Namespace) -> int:
    reference = None
    manifest = None
    if args.reference:  # an unusable reference fails before anything is collected
        reference = Reference.load(args.reference)
        manifest = load_reference_manifest(args.reference, reference)
    evidence = Evidence.load(args.evidence) if args.evidence else live_evidence(args)
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
