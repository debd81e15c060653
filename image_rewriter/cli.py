"""``cvmchain rewrite INPUT -o OUTPUT``: the image rewriter's command line.

Exit codes: 0 rewritten (or dry run shown), 2 refused or failed (the message names
the image, file or step; nothing was written), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from image_rewriter.errors import RewriteError
from initrd_agent.config import DEFAULT_INCLUDE

EXIT_OK = 0
EXIT_FAILED = 2
EXIT_INTERRUPTED = 130
DEFAULT_PRESET = "exec-modules"


def register(sub: Any) -> None:
    """Add the ``rewrite`` subcommand to ``sub`` (argparse subparsers)."""
    p = sub.add_parser(
        "rewrite", help="bake the cvmchain agent into a qcow2 image, write reference values",
        description="Bake the cvmchain agent into a copy of a cloud image and write the "
                    "reference values a verifier needs. The input is never modified.")
    p.add_argument("input", type=Path, metavar="INPUT", help="the cloud image (qcow2 or raw)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT",
                   help="the rewritten image (written atomically)")
    pol = p.add_mutually_exclusive_group()
    pol.add_argument("--ima-policy", type=Path, metavar="FILE",
                     help="an IMA policy file (syntax-checked before anything is written)")
    pol.add_argument("--ima-policy-preset", metavar="NAME",
                     help="a built-in IMA policy (default: %s; 'none' for no policy)"
                          % DEFAULT_PRESET)
    p.add_argument("--rootfs-mode", choices=("tree", "identity", "verity"), default="tree")
    p.add_argument("--include", action="append", default=[], metavar="PATH",
                   help="measure PATH too (repeatable; added to the defaults: %s)"
                        % " ".join(DEFAULT_INCLUDE))
    p.add_argument("--only-include", action="store_true",
                   help="measure only the --include paths, not the defaults")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="do not measure paths matching PATTERN (repeatable)")
    p.add_argument("--tdx-rtmr", type=int, default=3, metavar="N",
                   help="RTMR the agent extends on TDX (default 3 = MR4)")
    p.add_argument("--tpm-pcr", type=int, default=15, metavar="N",
                   help="PCR the agent extends on a TPM (default 15)")
    p.add_argument("--roots", choices=("auto", "tdx", "tpm", "tdx,tpm"), default="auto",
                   help="roots of trust the agent uses (default: every one present)")
    p.add_argument("--on-error", choices=("halt", "continue"), default="halt")
    p.add_argument("--cmdline-add", action="append", default=[], metavar="ARG",
                   help="add a kernel argument (repeatable; never duplicated)")
    p.add_argument("--reference", type=Path, metavar="OUT.json",
                   help="where the reference goes (default: OUTPUT with .reference.json)")
    p.add_argument("--keylime-policy", type=Path, metavar="OUT.json",
                   help="also write a Keylime runtime policy of the measured files")
    p.add_argument("--cel-json", type=Path, metavar="OUT.json",
                   help="also write the agent's predicted events as CEL-JSON (systemd-pcrlock)")
    p.add_argument("--initrd-mode", choices=("host", "appliance"), default="host",
                   help="host: merge the agent into each initrd on the host (fast); "
                        "appliance: run update-initramfs in the libguestfs appliance")
    p.add_argument("--manifest-source", choices=("auto", "debugfs", "mount", "appliance"),
                   default="auto",
                   help="how the reference manifest reads the image: debugfs (user space, "
                        "ext2/3/4), mount (read-only loop mount, needs root), appliance "
                        "(libguestfs, slow); auto: debugfs, else mount, else appliance")
    p.add_argument("--grub-config", choices=("auto", "mkconfig"), default="auto",
                   help="auto: add the kernel arguments to the 10_linux entries of the "
                        "guest's grub.cfg where that gives exactly what grub-mkconfig would, "
                        "else run it; mkconfig: always run the guest's grub-mkconfig")
    p.add_argument("--output-format", choices=("qcow2", "raw"), default="qcow2")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--dry-run", action="store_true",
                   help="show what would change; write nothing")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(handler=_run)


def _policy(args: argparse.Namespace, err: Console) -> tuple[bytes | None, str, list[str]]:
    """The policy bytes, where they came from, and the kernel arguments they need."""
    from image_rewriter import ima_policy

    if args.ima_policy is not None:
        try:
            data = args.ima_policy.read_bytes()
        except OSError as e:
            raise RewriteError("%s: cannot read: %s" % (args.ima_policy, e.strerror)) from e
        source = str(args.ima_policy)
    else:
        name = args.ima_policy_preset or DEFAULT_PRESET
        if name == "none":
            return None, "none", []
        if name not in ima_policy.preset_names():
            raise RewriteError("unknown IMA policy preset %r (presets: %s)"
                               % (name, ", ".join(ima_policy.preset_names())))
        data = ima_policy.preset(name).encode()
        source = "preset:" + name
    checked = ima_policy.check_policy(data, source, agent_pcr=args.tpm_pcr)
    cmdline = ima_policy.kernel_cmdline_for(checked)
    for w in checked.warnings:
        err.print("[yellow]warning[/] %s: %s" % (source, w))
    return data, source, cmdline


def _options(args: argparse.Namespace, err: Console) -> Any:
    from image_rewriter.rewrite import RewriteOptions

    policy, source, policy_args = _policy(args, err)
    include = list(args.include) if args.only_include else [
        *DEFAULT_INCLUDE, *[p for p in args.include if p not in DEFAULT_INCLUDE]]
    if args.only_include and not include:
        raise RewriteError("--only-include needs at least one --include PATH")
    return RewriteOptions(
        input=args.input, output=args.output, ima_policy=policy, ima_policy_source=source,
        cmdline_add=list(dict.fromkeys([*policy_args, *args.cmdline_add])),
        rootfs_mode=args.rootfs_mode, include=include, exclude=list(args.exclude),
        tdx_rtmr=args.tdx_rtmr, tpm_pcr=args.tpm_pcr, on_error=args.on_error,
        roots=args.roots, reference=args.reference, keylime_policy=args.keylime_policy,
        cel_json=args.cel_json, output_format=args.output_format,
        initrd_mode=args.initrd_mode, manifest_source=args.manifest_source,
        grub_config=args.grub_config,
        force=args.force, dry_run=args.dry_run)


class _Progress:
    """One line per step on stderr, with its elapsed time; a spinner while it runs."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status: Any = None
        self.started = 0.0
        self.t0 = time.monotonic()

    def __call__(self, what: str, name: str) -> None:
        if what == "start":
            self.started = time.monotonic()
            self.status = self.console.status("[bold]%s[/] ..." % name)
            self.status.start()
        else:
            if self.status is not None:
                self.status.stop()
            now = time.monotonic()
            self.console.print("  [green]done[/] %-10s %6.1f s   (total %5.1f s)"
                               % (name, now - self.started, now - self.t0))

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()


def _print(report: Any, console: Console) -> None:
    if report.dry_run:
        console.print("[bold]dry run[/]: %s would be written from %s"
                      % (report.output, report.input.get("path")))
        for c in report.changes:
            console.print("  " + c)
        return
    console.print("[bold green]rewritten[/] %s" % report.output)
    console.print("  reference  %s" % report.reference)
    if report.manifest:
        console.print("  manifest   %s (%s entries)" % (report.manifest,
                                                      report.rootfs.get("entries")))
    for path in report.exports.values():
        console.print("  export     %s" % path)
    if report.kernel_args_added:
        console.print("  kernel arguments added: %s" % " ".join(report.kernel_args_added))
    table = Table(title="predicted agent registers", show_lines=False)
    table.add_column("register")
    table.add_column("bank")
    table.add_column("value", overflow="fold")
    regs = report.registers
    if "cc_mr" in regs:
        table.add_row(regs["cc_mr"]["label"], "sha384", regs["cc_mr"]["sha384"])
    if "pcr" in regs:
        for bank, value in regs["pcr"]["values"].items():
            table.add_row("PCR %d" % regs["pcr"]["index"], bank, value)
    console.print(table)
    console.print("  total %.1f s" % report.total_seconds)


def _run(args: argparse.Namespace) -> int:
    from image_rewriter.rewrite import Interrupted, rewrite

    err = Console(stderr=True)
    progress = _Progress(err)
    try:
        report = rewrite(_options(args, err), on_step=progress)
    except Interrupted as e:
        progress.stop()
        err.print("cvmchain rewrite: %s" % e)
        return EXIT_INTERRUPTED
    except RewriteError as e:
        progress.stop()
        print("cvmchain rewrite: error: %s" % e, file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        _print(report, err)
    return EXIT_OK
