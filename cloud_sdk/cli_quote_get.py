"""``cvmchain quote get`` and ``quote activate``: the commands that need this machine's TPM / TEE.

``get``: on TDX, a TDX quote through configfs-tsm (binary). On a TPM-only
machine, a TPM2_Quote by an attestation key through tpm2-pytss, written as a
``cvmchain-tpm-quote/1`` JSON file (:mod:`cloud_sdk.tpm_quote`) that also holds
the TPM's EK certificate and public area when the TPM stores a certificate.
Both verify with ``cvmchain quote verify FILE --nonce HEX``. The TPM file also
holds the CA certificates of the TPM's EK chain NV indices (0x01C00100..0x01C001FF);
an index that holds anything else is named in a warning (with ``--ek-template``: an error).

``activate``: TPM2_ActivateCredential of a verifier's challenge (``cvmchain
quote challenge``) with this TPM's EK and the same AK as ``get``
(:mod:`cloud_sdk.tpm_credential`); exit 1 when the TPM refuses it.
"""

import argparse
import sys
from typing import Any

from cloud_sdk import tpm_credential, tpm_ek, tpm_quote
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
    add_ak_arguments(t)
    e = t.add_mutually_exclusive_group()
    e.add_argument("--ek-template", metavar="NAME", choices=tuple(tpm_ek.TEMPLATES),
                   help="put this EK into the file (%s; default: the one whose certificate the "
                   "TPM stores, if any)" % ", ".join(tpm_ek.TEMPLATES))
    e.add_argument("--no-ek", action="store_true",
                   help="do not read the EK certificate nor make the EK")
    g.set_defaults(handler=cmd_get)

    a = _quote_subparsers(sub).add_parser(
        "activate", help="TPM: answer a credential challenge (TPM2_ActivateCredential)",
        description="On the machine whose TPM made the quote: recreate the EK the challenge "
        "(`cvmchain quote challenge`) names, load the same AK as `quote get` (give the same "
        "--ak-* options), and let the TPM decrypt the challenge's secret, which only it can, "
        "and only for that AK. Writes a cvmchain-tpm-credential-response/1 JSON file for "
        "`cvmchain quote verify --activation CHALLENGE RESPONSE`. Exit 1 when the TPM refuses "
        "the challenge (another EK or AK, or altered bytes), 2 when the input is unusable.")
    a.add_argument("challenge", help="cvmchain-tpm-credential-challenge/1 JSON file")
    a.add_argument("-o", "--output", metavar="FILE", required=True)
    a.add_argument("--tcti", metavar="TCTI",
                   help="tpm2-tss TCTI (default: $TPM2TOOLS_TCTI, else device:/dev/tpmrm0)")
    a.add_argument("--tpm-device", metavar="PATH",
                   help="TPM device node or swtpm unix socket, instead of --tcti")
    add_ak_arguments(a)
    a.set_defaults(handler=cmd_activate)


def add_ak_arguments(p: Any) -> None:
    """The options that choose the attestation key (``get`` and ``activate`` share them)."""
    p.add_argument("--ak-hierarchy", choices=tpm_quote.HIERARCHIES, default="endorsement",
                   help="hierarchy of the AK primary key (default: endorsement)")
    p.add_argument("--ak-type", choices=tpm_quote.KEY_TYPES, default="ecc",
                   help="ecc: NIST P-256 ECDSA-SHA256 (default); rsa: 2048 RSASSA-SHA256")
    p.add_argument("--ak-handle", metavar="HEX",
                   help="use the AK at this persistent handle, e.g. 0x81010002")
    p.add_argument("--ak-persist", action="store_true",
                   help="with --ak-handle: create the AK there when it is absent")
    p.add_argument("--ak-context", metavar="FILE",
                   help="use the AK in this tpm2-tools context file (tpm2_createak -c FILE)")


def ak_from_args(args: argparse.Namespace) -> tpm_quote.AttestationKey:
    return tpm_quote.AttestationKey(hierarchy=args.ak_hierarchy, key_type=args.ak_type,
                                    handle=_handle(args.ak_handle), context=args.ak_context,
                                    persist=args.ak_persist)


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
    ek = None if args.no_ek else (args.ek_template or tpm_quote.EK_AUTO)
    q = tpm_quote.get_tpm_quote(nonce, tpm_quote.parse_pcr_list(args.pcrs),
                                banks=_banks(args.banks), tcti=tcti, ak=ak_from_args(args),
                                ek=ek)
    q.save(args.output)
    if q.ek_template:
        ek_text = "the %s EK%s" % (q.ek_template, " and its certificate"
                                   if q.ek_certificate_pem else " (no certificate)")
        if q.ek_intermediates:
            ek_text += " and %d CA certificate(s) from its EK chain NV (%s)" % (
                len(q.ek_intermediates), ", ".join(sorted({"0x%08x" % i for i, _ in
                                                           q.ek_intermediates})))
    else:
        ek_text = "no EK (%s)" % (q.ek_note or "--no-ek")
    print("wrote %s: TPM quote (%s) of %s by the AK %s on %s, nonce %s, with %s" % (
        args.output, tpm_quote.SCHEMA, format_selection(q.selection), q.ak, q.tcti,
        nonce.hex() or "none", ek_text), file=sys.stderr)
    for problem in q.ek_chain_errors:
        print("cvmchain: warning: EK chain index not used: %s" % problem, file=sys.stderr)
    return 0


def cmd_activate(args: argparse.Namespace) -> int:
    """``quote activate``: the TPM's answer to a challenge."""
    if args.tcti and args.tpm_device:
        raise InputError("give --tcti or --tpm-device, not both")
    challenge = tpm_credential.Challenge.load(args.challenge)
    tcti = tpm_quote.tcti_for_device(args.tpm_device) if args.tpm_device else args.tcti
    try:
        res = tpm_credential.activate_credential(challenge, tcti, ak_from_args(args))
    except tpm_credential.CredentialRefused as e:
        print("cvmchain: %s" % e, file=sys.stderr)
        return 1
    res.save(args.output)
    print("wrote %s: the TPM (%s) activated the credential for the AK %s with the %s EK"
          % (args.output, res.tcti, res.ak_name.hex(), challenge.ek_template), file=sys.stderr)
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
