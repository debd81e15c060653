"""``cvmchain registers``: the live registers of this machine (or of a saved bundle).

Also holds the backend options every runtime subcommand shares
(:func:`add_backend_arguments`, :func:`backend_from_args`).
"""

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from cloud_sdk.backends import Backend, detect_backend
from shared_spec.algorithms import alg_name
from shared_spec.registers import register_label


def add_backend_arguments(p: Any, offline: bool = True) -> None:
    """``--backend``, ``--root``, ``--tpm-device``, ``--tsm-entry`` and, with ``offline``,
    ``--evidence`` (``p``: a parser or an argument group)."""
    names = ("auto", "tdx", "tpm", "offline") if offline else ("auto", "tdx", "tpm")
    p.add_argument("--backend", choices=names, default="auto",
                   help="root of trust (default: TDX when /dev/tdx_guest or the TDX "
                   "measurement registers exist, else the TPM)")
    p.add_argument("--root", metavar="DIR", default="/",
                   help="read /sys, /dev, /run and /proc under DIR (default: /)")
    p.add_argument("--tpm-device", metavar="PATH",
                   help="TPM device node or swtpm unix socket (default: /dev/tpmrm0, "
                   "else /dev/tpm0)")
    p.add_argument("--tsm-entry", metavar="NAME",
                   help="use this existing configfs-tsm report entry instead of creating one "
                   "(lets an administrator hand one to an unprivileged user)")
    if offline:
        p.add_argument("--evidence", metavar="BUNDLE",
                       help="offline backend: answer from this evidence bundle")


def backend_from_args(args: argparse.Namespace) -> Backend:
    return detect_backend(args.backend, args.root, tpm_device=args.tpm_device,
                          evidence=args.evidence, tsm_entry=args.tsm_entry)


def register(sub: Any) -> None:
    p = sub.add_parser("registers", help="live register values (TDX CC MRs or TPM PCRs)",
                       description="Print every register of every bank. TDX registers are CC "
                       "MR indexes (MR0 = MRTD, MR1..MR4 = RTMR0..RTMR3), TPM registers are "
                       "PCR numbers.")
    add_backend_arguments(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(handler=cmd_registers)


def registers_json(backend: Backend, regs: dict[int, dict[int, bytes]]) -> dict:
    """``{"backend", "index_kind", "registers": {"<index>": {"label", "<alg>": hex}}}``."""
    out: dict = {}
    for index in sorted(regs):
        entry: dict = {"label": register_label(backend.index_kind, index)}
        for alg in sorted(regs[index]):
            entry[alg_name(alg)] = regs[index][alg].hex()
        out[str(index)] = entry
    return {"backend": backend.name, "index_kind": backend.index_kind, "registers": out}


def cmd_registers(args: argparse.Namespace) -> int:
    backend = backend_from_args(args)
    regs = backend.read_registers()
    if args.format == "json":
        json.dump(registers_json(backend, regs), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    banks = sorted({alg for bank in regs.values() for alg in bank})
    table = Table(title="%s registers (%s)" % (backend.name, backend.index_kind))
    table.add_column("register", no_wrap=True)
    for alg in banks:
        table.add_column(alg_name(alg), overflow="fold")
    for index in sorted(regs):
        table.add_row(register_label(backend.index_kind, index),
                      *(regs[index][alg].hex() if alg in regs[index] else "-" for alg in banks))
    Console().print(table)
    return 0
