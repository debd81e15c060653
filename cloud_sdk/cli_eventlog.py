"""``cvmchain eventlog show | replay | check``."""

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from cloud_sdk.errors import InputError
from cloud_sdk.hashing import hashlib_provider
from cloud_sdk.logs import KINDS, LoadedLog, combine, load_log, read_file
from shared_spec import cel, ima
from shared_spec.algorithms import alg_from_name, alg_name
from shared_spec.ccel import CcelTable
from shared_spec.checks import check_tcg_events
from shared_spec.event_types import event_type_name
from shared_spec.findings import SEVERITY_ERROR
from shared_spec.registers import INDEX_CC_MR, INDEX_PCR, register_label
from shared_spec.replay import replay
from shared_spec.tcg_log import TcgEvent
from shared_spec.uefi_events import decode_event_data

EXIT_OK = 0
EXIT_FAILED = 1


def register(sub: Any) -> None:
    """Add the ``eventlog`` command group to the top-level parser."""
    p = sub.add_parser("eventlog", help="show, replay and check measurement event logs")
    ev = p.add_subparsers(dest="eventlog_command", required=True, metavar="SUBCOMMAND")

    show = ev.add_parser("show", help="one entry per event, decoded where the spec allows")
    show.add_argument("--format", choices=("text", "json", "cel-json"), default="text")
    _common(show)
    show.add_argument("file")
    show.set_defaults(handler=cmd_show)

    rep = ev.add_parser("replay", help="replay logs (in the order given) to register values")
    rep.add_argument("--format", choices=("text", "json"), default="text")
    rep.add_argument("--ccel-table", metavar="FILE",
                     help="the ACPI CCEL table: bounds the CCEL log area by its LAML")
    rep.add_argument("--bank", action="append", default=[], metavar="ALG",
                     help="replay this bank (sha1, sha256, sha384, ...); repeatable")
    _common(rep)
    rep.add_argument("files", nargs="+", metavar="FILE")
    rep.set_defaults(handler=cmd_replay)

    chk = ev.add_parser("check", help="integrity checks (exit 1 when a digest mismatches)")
    chk.add_argument("--format", choices=("text", "json"), default="text")
    _common(chk)
    chk.add_argument("file")
    chk.set_defaults(handler=cmd_check)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=KINDS, help="log kind (default: detected)")
    p.add_argument("--index-kind", choices=(INDEX_PCR, INDEX_CC_MR),
                   help="register convention of the log (default: from its kind)")


def _load(path: str, args: argparse.Namespace, table: CcelTable | None = None) -> LoadedLog:
    return load_log(path, kind=args.kind, ccel_table=table, index_kind=args.index_kind)


def _banks(names: list[str]) -> list[int] | None:
    if not names:
        return None
    out = []
    for n in names:
        alg = alg_from_name(n)
        if alg is None:
            raise InputError("unknown hash algorithm %r" % n)
        out.append(alg)
    return out


def event_to_dict(seq: int, ev: Any, index_kind: str) -> dict:
    """A JSON-ready dict for any event kind (TCG, CEL, IMA)."""
    if isinstance(ev, TcgEvent):
        return {
            "seq": seq,
            "offset": ev.offset,
            "index": ev.index,
            "register": register_label(index_kind, ev.index),
            "event_type": ev.event_type,
            "event_type_name": event_type_name(ev.event_type),
            "digests": {alg_name(a): bytes(d).hex() for a, d in ev.digests},
            "event_data": bytes(ev.data).hex(),
            "decoded": decode_event_data(ev.event_type, ev.data, ev.index),
        }
    base: dict = {}
    to_dict = getattr(ev, "to_dict", None)
    if callable(to_dict):
        base = dict(to_dict())
    out = {
        "seq": seq,
        "offset": getattr(ev, "offset", None),
        "index": ev.index,
        "register": register_label(index_kind, ev.index),
        "digests": {alg_name(a): bytes(d).hex() for a, d in getattr(ev, "digests", [])},
    }
    out.update({k: v for k, v in base.items() if k not in out})
    return out


def _summary(d: dict) -> str:
    decoded = d.get("decoded")
    if isinstance(decoded, dict) and decoded:
        parts = []
        for k, v in decoded.items():
            if isinstance(v, (dict, list)):
                continue
            parts.append("%s=%s" % (k, v))
        text = ", ".join(parts)
    elif "event_data" in d:
        text = d["event_data"]
    else:
        text = " ".join(str(d[k]) for k in ("template_name", "filename", "file_digest")
                        if d.get(k) is not None)
    return text if len(text) <= 120 else text[:117] + "..."


def cmd_show(args: argparse.Namespace) -> int:
    lg = _load(args.file, args)
    if args.format == "cel-json":
        records = cel.cel_json_records(lg.events, lg.index_kind)
        json.dump(records, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    entries = [event_to_dict(i, ev, lg.index_kind) for i, ev in enumerate(lg.events)]
    if args.format == "json":
        out: dict[str, Any] = {"file": lg.path, "kind": lg.kind, "index_kind": lg.index_kind,
               "algorithms": [alg_name(a) for a in lg.algorithms], "events": entries}
        if lg.tcg is not None and lg.tcg.spec_id is not None:
            s = lg.tcg.spec_id
            out["spec_id"] = {"signature": s.signature.rstrip(b"\0").decode("ascii", "replace"),
                              "platform_class": s.platform_class,
                              "version": "%d.%d errata %d" % (s.version_major, s.version_minor,
                                                              s.errata),
                              "uintn_size": s.uintn_size,
                              "algorithms": {alg_name(a): n for a, n in s.algorithms},
                              "vendor_info": s.vendor_info.hex()}
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    console = Console()
    table = Table(title="%s (%s, %d events)" % (lg.path, lg.kind, len(entries)),
                  show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("register")
    table.add_column("type")
    table.add_column("digests")
    table.add_column("data")
    for d in entries:
        digests = "\n".join("%s:%s" % (a, h) for a, h in d["digests"].items())
        table.add_row(str(d["seq"]), d["register"],
                      d.get("event_type_name") or str(d.get("template_name", "")), digests,
                      _summary(d))
    console.print(table)
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    table = None
    if args.ccel_table:
        table = CcelTable.decode(read_file(args.ccel_table), source=args.ccel_table)
    logs = []
    for i, path in enumerate(args.files):
        logs.append(_load(path, args, table if i == 0 else None))
    index_kind, events, banks = combine(logs)
    chosen = _banks(args.bank) or banks
    hashes = hashlib_provider()
    result = replay(events, hashes, index_kind, chosen)
    findings = list(result.findings)
    for lg in logs:
        if lg.tcg is not None:
            findings.extend(check_tcg_events(lg.events, hashes, lg.index_kind))
        elif lg.kind.startswith("ima"):
            findings.extend(ima.check_entries(lg.events, hashes))
    if args.format == "json":
        out = result.to_dict()
        out["findings"] = [f.to_dict() for f in findings]
        out["files"] = [{"path": lg.path, "kind": lg.kind, "events": len(lg.events)}
                        for lg in logs]
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    console = Console()
    t = Table(title="replay of %d events (%s)" % (result.event_count, index_kind))
    t.add_column("register")
    t.add_column("bank")
    t.add_column("value")
    for index in sorted(result.registers):
        for alg in sorted(result.registers[index]):
            v = result.registers[index][alg]
            t.add_row(register_label(index_kind, index), alg_name(alg),
                      "(not replayable)" if v is None else v.hex())
    console.print(t)
    _print_findings(console, findings)
    return EXIT_OK


def _print_findings(console: Console, findings: list) -> None:
    if not findings:
        console.print("no findings")
        return
    for f in findings:
        style = "red" if f.severity == SEVERITY_ERROR else "yellow"
        console.print("[%s]%s[/%s] %s: %s" % (style, f.severity, style, f.code, f.message),
                      highlight=False)


def cmd_check(args: argparse.Namespace) -> int:
    lg = _load(args.file, args)
    hashes = hashlib_provider()
    if lg.tcg is not None:
        findings = check_tcg_events(lg.events, hashes, lg.index_kind)
    elif lg.kind.startswith("ima"):
        findings = ima.check_entries(lg.events, hashes)
    else:
        findings = []
    mismatch = any(f.severity == SEVERITY_ERROR for f in findings)
    if args.format == "json":
        json.dump({"file": lg.path, "kind": lg.kind, "events": len(lg.events),
                   "ok": not mismatch, "findings": [f.to_dict() for f in findings]},
                  sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        console = Console()
        console.print("%s: %s, %d events" % (lg.path, lg.kind, len(lg.events)), highlight=False)
        _print_findings(console, findings)
    return EXIT_FAILED if mismatch else EXIT_OK
