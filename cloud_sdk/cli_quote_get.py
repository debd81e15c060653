"""``cvmchain quote get``: a quote from this machine.

On TDX, a TDX quote through configfs-tsm (binary). On a TPM-only machine, a
TPM2_Quote by an attestation key through tpm2-pytss, written as a
``cvmchain-tpm-quote/1`` JSON file (:mod:`cloud_sdk.tpm_quote`). Both verify
with ``cvmchain quote verify FILE --nonce HEX``.
"""

import argparse
import sys
from typing import Any

from cloud_sdk import tpm_quote
from cloud_sdk.backends import TpmBackend, report_data_for
from cloud_sdk.cli_evidence import parse_hex
from cloud_sdk.cli_registers import add_backend_arguments, backend_from_args
from cloud_sdk.errors import InputError
from shared_spec.algorithms import alg_from_name
from shared_spec.tpm2 import format_selection


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
        "get", help="get a quote from this machine: TDX (configfs-tsm) or TPM (tpm2-pytss)",
        description="TDX: write a binary TDX quote whose REPORTDATA is SHA-512(nonce), or the "
        "64 bytes given with --report-data, or zeros. TPM (no TDX, or --backend tpm, or "
        "--tcti): write a cvmchain-tpm-quote/1 JSON file: a TPM2_Quote of the selected PCRs "
        "with the nonce as qualifying data, signed by an attestation key, with the AK's "
        "public key and the PCR values. Verify either with `cvmchain quote verify FILE "
        "--nonce HEX`.")
    g.add_argument("-o", "--output", metavar="FILE", required=True)
    g.add_argument("--nonce", metavar="HEX",
                   help="TDX: REPORTDATA = SHA-512(nonce); TPM: the qualifying data itself "
                   "(at most 64 bytes)")
    g.add_argument("--report-data", metavar="HEX", help="TDX: exactly 64 bytes of REPORTDATA")
    add_backend_arguments(g)
    t = g.add_argument_group("TPM quotes (need tpm2-pytss)")
    t.add_argument("--tcti", metavar="TCTI",
                   help="tpm2-tss TCTI, e.g. device:/dev/tpmrm0, swtpm:path=SOCK, "
                   "mssim:port=2321 (default: the --tpm-device / /dev/tpmrm0; implies a TPM)")
    t.add_argument("--pcrs", metavar="LIST", default="0-7,10,15",
                   help="PCRs to quote (default 0-7,10,15: firmware, IMA, the cvmchain agent)")
    t.add_argument("--banks", metavar="ALG[,ALG]",
                   help="PCR banks to quote, e.g. sha256 (default: every active bank)")
    t.add_argument("--ak-hierarchy", choices=tpm_quote.HIERARCHIES, default="endorsement",
                   help="hierarchy of the AK primary key (default: endorsement)")
    t.add_argument("--ak-type", choices=tpm_quote.KEY_TYPES, default="ecc",
                   help="ecc: NIST P-256 ECDSA-SHA256 (default); rsa: 2048 RSASSA-SHA256")
    t.add_argument("--ak-handle", metavar="HEX",
                   help="use the AK at this persistent handle, e.g. 0x81010002")
    t.add_argument("--ak-persist", action="store_true",
                   help="with --ak-handle: create the AK there when it is absent")
    t.add_argument("--ak-context", metavar="FILE",
                   help="use the AK in this tpm2-tools context file (tpm2_createak -c FILE)")
    g.set_defaults(handler=cmd_get)


def _banks(text: str | None) -> list[int] | None:
    if not text:
        return None
    out = []
    for name in text.split(","):
        alg = alg_from_name(name.strip())
        if alg is None:
            raise InputError("--banks: unknown hash algorithm %r" % name)
        out.append(alg)
    return out


def _handle(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text, 16)
    except ValueError:
        raise InputError("--ak-handle: %r is not a hex handle" % text) from None
    if value >> 24 != 0x81:
        raise InputError("--ak-handle: 0x%08x is not a persistent handle (0x81xxxxxx)" % value)
    return value


def cmd_get_tpm(args: argparse.Namespace, tcti: str) -> int:
    """The TPM branch: a ``cvmchain-tpm-quote/1`` file."""
    if args.report_data:
        raise InputError("--report-data is for TDX quotes; a TPM quote binds --nonce itself")
    nonce = parse_hex(args.nonce, "--nonce") if args.nonce else b""
    ak = tpm_quote.AttestationKey(hierarchy=args.ak_hierarchy, key_type=args.ak_type,
                                  handle=_handle(args.ak_handle), context=args.ak_context,
                                  persist=args.ak_persist)
    q = tpm_quote.get_tpm_quote(nonce, tpm_quote.parse_pcr_list(args.pcrs),
                                banks=_banks(args.banks), tcti=tcti, ak=ak)
    q.save(args.output)
    print("wrote %s: TPM quote (%s) of %s by the AK %s on %s, nonce %s" % (
        args.output, tpm_quote.SCHEMA, format_selection(q.selection), q.ak, q.tcti,
        nonce.hex() or "none"), file=sys.stderr)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    if args.nonce and args.report_data:
        raise InputError("give --nonce or --report-data, not both")
    if args.tcti:
        return cmd_get_tpm(args, args.tcti)
    backend = backend_from_args(args)
    if isinstance(backend, TpmBackend):
        return cmd_get_tpm(args, tpm_quote.tcti_for_backend(backend))
    if args.report_data:
        rd = parse_hex(args.report_data, "--report-data")
        if len(rd) != 64:
            raise InputError("--report-data: %d bytes, need 64" % len(rd))
    else:
        rd = report_data_for(parse_hex(args.nonce, "--nonce") if args.nonce else None)
    report = backend.get_report(rd)
    try:
        with open(args.output, "wb") as f:
            f.write(report.data)
    except OSError as e:
        raise InputError("%s: cannot write: %s" % (args.output, e.strerror or e)) from e
    print("wrote %s: %d-byte %s from %s, REPORTDATA %s" % (
        args.output, len(report.data), report.kind, report.source, report.report_data.hex()),
        file=sys.stderr)
    return 0
