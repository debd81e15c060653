"""``cvmchain quote show | verify | challenge``: a thin layer over :mod:`shared_spec.tdx_quote`
and :mod:`cloud_sdk.quote_verify` for TDX quotes (binary), and over
:mod:`cloud_sdk.tpm_quote` for TPM quotes (``cvmchain-tpm-quote/1`` JSON files,
recognised by their content), with :mod:`cloud_sdk.tpm_ek` (EK certificate)
and :mod:`cloud_sdk.tpm_credential` (credential activation) for the AK.

The TPM flow: ``quote get`` (TPM machine) -> ``quote challenge`` (verifier, no
TPM) -> ``quote activate`` (TPM machine) -> ``quote verify --ek-ca CA
--activation CHALLENGE RESPONSE`` (verifier). The EK certificate's path may use
the intermediates the quote file carries from the TPM's NV (untrusted), and its
revocation is checked with ``--ek-crl FILE`` / ``--ek-crl-required`` /
``--ek-fetch`` (:mod:`cloud_sdk.tpm_ek_revocation`, :mod:`cloud_sdk.tpm_ek_fetch`).

Exit codes: 0 every check passed, 1 a check failed, 2 unusable input (raised
as ``SpecError`` / ``InputError`` and reported by ``cloud_sdk.cli``).
"""

import argparse
import datetime
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from cloud_sdk import tpm_credential, tpm_ek, tpm_ek_fetch, tpm_ek_nv, tpm_quote
from cloud_sdk.errors import InputError
from cloud_sdk.intel_roots import trusted_roots
from cloud_sdk.logs import read_file
from cloud_sdk.quote_verify import DEFAULT_ACCEPTED_TCB, load_collateral, verify_quote
from cloud_sdk.tpm_ek_revocation import load_crls
from cloud_sdk.tpm_public import TpmPublic, parse_public, with_key
from shared_spec.tdx_quote import TdxQuote, parse_quote


def register(sub: Any) -> None:
    """Add ``quote show`` and ``quote verify`` to the ``cvmchain`` subparsers."""
    p = sub.add_parser("quote", help="get, show and verify quotes (TDX v4/v5, TPM 2.0)")
    q = p.add_subparsers(dest="quote_command", required=True, metavar="SUBCOMMAND")
    show = q.add_parser("show", help="the fields of a TDX quote or a TPM quote file")
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.add_argument("file", help="binary TDX quote, or cvmchain-tpm-quote/1 JSON")
    show.set_defaults(handler=cmd_show)

    ver = q.add_parser("verify", help="TDX: quote signature, QE report, PCK chain, TCB "
                       "status; TPM: AK signature, nonce, PCR digest",
                       description="Verify a TDX quote, or a TPM quote file (`cvmchain quote "
                       "get` on a TPM: the AK's signature over TPMS_ATTEST, magic and type, "
                       "extraData = --nonce, pcrDigest = hash of the PCR values). Exit 0 when "
                       "every check passes, 1 when one fails, 2 when the input is unusable.")
    ver.add_argument("file", help="binary TDX quote, or cvmchain-tpm-quote/1 JSON")
    ver.add_argument("--collateral", metavar="DIR",
                     help="Intel PCS collateral: tcb_info.json + tcb_info_issuer_chain.pem, "
                     "qe_identity.json + qe_identity_issuer_chain.pem, root_ca_crl.der, "
                     "pck_crl.der (any subset), or one collateral.json")
    ver.add_argument("--time", metavar="ISO8601",
                     help="check certificates, CRLs and collateral at this time (default: now)")
    ver.add_argument("--nonce", metavar="HEX",
                     help="REPORTDATA must be this nonce zero-padded to 64 bytes, or its SHA-512")
    ver.add_argument("--report-data", metavar="HEX",
                     help="REPORTDATA must be exactly these 64 bytes")
    ver.add_argument("--trust-sandbox-root", action="store_true",
                     help="also accept chains ending in Intel's pre-production (SBX) root")
    ver.add_argument("--accept-tcb", metavar="STATUS", action="append", default=[],
                     help="also accept this TCB status (e.g. SWHardeningNeeded); repeatable")
    ver.add_argument("--ak-pem", metavar="FILE",
                     help="TPM: verify with this AK public key (PEM) instead of the file's")
    ver.add_argument("--ek-ca", metavar="FILE",
                     help="TPM: check the EK certificate (the file's, or --ek-cert) chains to "
                     "a self-signed root in this PEM bundle (roots and intermediates you trust) "
                     "and holds the file's EK")
    ver.add_argument("--ek-cert", metavar="FILE",
                     help="TPM: the EK certificate (PEM or DER) to check instead of the file's")
    add_ek_revocation_arguments(ver)
    ver.add_argument("--activation", metavar=("CHALLENGE", "RESPONSE"), nargs=2,
                     help="TPM: the TPM activated CHALLENGE (made by `quote challenge` for "
                     "this quote's AK) and returned its secret in RESPONSE (`quote activate`)")
    ver.add_argument("--format", choices=("text", "json"), default="text")
    ver.set_defaults(handler=cmd_verify)

    ch = q.add_parser("challenge", help="TPM: a credential challenge for an AK under a "
                      "certified EK (verifier side, no TPM)",
                      description="Make a credential (TPM2_MakeCredential in software) that "
                      "only the TPM holding the EK can open, and only for the AK: the EK is "
                      "the key of --ek-cert (or of the quote file's EK certificate) in the TCG "
                      "template it belongs to; the AK is the quote file's, or a TPM2B_PUBLIC "
                      "file (tpm2_createak -u). The file keeps only the SHA-256 of the secret, "
                      "so it can be sent to the TPM's machine (`cvmchain quote activate`). "
                      "Exit 1 when --ek-ca is given and the EK certificate fails it.")
    ch.add_argument("--ak-public", metavar="FILE", required=True,
                    help="cvmchain-tpm-quote/1 file, or the AK's TPM2B_PUBLIC (binary)")
    ch.add_argument("--ek-cert", metavar="FILE",
                    help="EK certificate, PEM or DER (default: the quote file's)")
    ch.add_argument("--ek-template", metavar="NAME", choices=tuple(tpm_ek.TEMPLATES),
                    help="TCG EK template of the certified key (default: the quote file's, "
                    "else by key: rsa2048, ecc256, high-ecc384, ...)")
    ch.add_argument("--ek-ca", metavar="FILE",
                    help="first check the EK certificate against this CA bundle")
    add_ek_revocation_arguments(ch)
    ch.add_argument("-o", "--output", metavar="FILE", required=True)
    ch.set_defaults(handler=cmd_challenge)


def add_ek_revocation_arguments(p: Any) -> None:
    """``--ek-crl``, ``--ek-crl-required``, ``--ek-fetch`` (with ``--ek-ca``)."""
    p.add_argument("--ek-crl", metavar="FILE", action="append", default=[],
                   help="TPM, with --ek-ca: CRL(s) (PEM, one or more, or DER) of the EK "
                   "certificate's CAs; a certificate of the path they list is revoked; "
                   "repeatable")
    p.add_argument("--ek-crl-required", action="store_true",
                   help="TPM, with --ek-ca: fail when a certificate of the EK path has no "
                   "current CRL of its issuer")
    p.add_argument("--ek-fetch", action="store_true",
                   help="TPM, with --ek-ca: fetch a missing CA certificate (caIssuers URL) and "
                   "missing CRLs (distribution points) over HTTP, %gs timeout, at most %d "
                   "bytes each; nothing is stored" % (tpm_ek_fetch.TIMEOUT,
                                                      tpm_ek_fetch.MAX_BYTES))


def ek_check(args: argparse.Namespace, cert: Any, ek_pub: TpmPublic | None,
             q: tpm_quote.TpmQuote | None, source: str,
             at: datetime.datetime | None = None) -> tpm_ek.EkVerification:
    """The EK certificate ``cert`` against ``--ek-ca`` with the quote's NV intermediates,
    ``--ek-crl``, ``--ek-crl-required`` and ``--ek-fetch``."""
    intermediates = []
    for n, (index, pem) in enumerate(q.ek_intermediates if q is not None else []):
        c = tpm_ek.load_certificate(pem.encode(), "%s: ek_intermediates[%d]" % (source, n))
        intermediates.append(tpm_ek.SourcedCertificate(c, tpm_ek_nv.nv_source(index)))
    revocation = bool(args.ek_crl or args.ek_crl_required or args.ek_fetch)
    return tpm_ek.verify_ek_certificate(
        cert, tpm_ek.load_ca_bundle(args.ek_ca), ek_pub, at, intermediates=intermediates,
        crls=load_crls(args.ek_crl) if revocation else None,
        crl_required=args.ek_crl_required,
        fetcher=tpm_ek_fetch.Fetcher() if args.ek_fetch else None)


def _check_ek_options(args: argparse.Namespace) -> None:
    if not args.ek_ca:
        for option in ("ek_crl", "ek_crl_required", "ek_fetch"):
            if getattr(args, option):
                raise InputError("--%s needs --ek-ca (the CA bundle the EK certificate "
                                 "chains to)" % option.replace("_", "-"))


_LABELS = (
    ("version", "version"), ("att_key_type", "attestation key type"), ("tee_type", "TEE type"),
    ("body_type", "body type"), ("td_attributes", "TD attributes"), ("xfam", "XFAM"),
    ("mrtd", "MRTD (MR0)"), ("mrconfigid", "MRCONFIGID"), ("mrowner", "MROWNER"),
    ("mrownerconfig", "MROWNERCONFIG"), ("report_data", "REPORTDATA"),
    ("tee_tcb_svn", "TEE TCB SVN"), ("mrseam", "MRSEAM"), ("mrsignerseam", "MRSIGNERSEAM"),
    ("seam_attributes", "SEAM attributes"), ("tee_tcb_svn2", "TEE TCB SVN2"),
    ("mrservicetd", "MRSERVICETD"), ("qe_vendor_id", "QE vendor id"),
    ("certification_data_type", "certification data type"),
    ("inner_certification_data_type", "nested certification data type"),
)


def _load(path: str) -> TdxQuote:
    return parse_quote(read_file(path), source=path)


def _dump(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=1)
    sys.stdout.write("\n")


def cmd_show(args: argparse.Namespace) -> int:
    raw = read_file(args.file)
    if tpm_quote.looks_like_tpm_quote(raw):
        return cmd_show_tpm(args, tpm_quote.TpmQuote.loads(raw, args.file))
    q = parse_quote(raw, source=args.file)
    d = q.to_dict()
    if args.format == "json":
        _dump(d)
        return 0
    t = Table(title="%s: TDX quote v%d" % (args.file, q.version), show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    for key, label in _LABELS:
        if d.get(key) is not None:
            t.add_row(label, str(d[key]))
        if key == "mrownerconfig":
            for i, v in enumerate(d["rtmrs"]):
                t.add_row("RTMR%d (MR%d)" % (i, i + 1), v)
    qe = d["qe_report"]
    if qe:
        t.add_row("QE MRENCLAVE", qe["mrenclave"])
        t.add_row("QE MRSIGNER", qe["mrsigner"])
        t.add_row("QE ISVPRODID / ISVSVN", "%d / %d" % (qe["isvprodid"], qe["isvsvn"]))
    t.add_row("PCK chain", "%d bytes of PEM" % d["pck_chain_size"])
    Console().print(t)
    return 0


def _hex_arg(value: str, option: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError as e:
        raise InputError("%s %r is not hex" % (option, value)) from e


def _time_arg(value: str) -> datetime.datetime:
    try:
        at = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise InputError("--time %r is not ISO 8601" % value) from e
    return at if at.tzinfo else at.replace(tzinfo=datetime.timezone.utc)


def cmd_verify(args: argparse.Namespace) -> int:
    raw = read_file(args.file)
    if tpm_quote.looks_like_tpm_quote(raw):
        return cmd_verify_tpm(args, tpm_quote.TpmQuote.loads(raw, args.file))
    if args.ak_pem:
        raise InputError("--ak-pem is for TPM quotes; %s is a TDX quote" % args.file)
    q = parse_quote(raw, source=args.file)
    at = _time_arg(args.time) if args.time else None
    nonce = _hex_arg(args.nonce, "--nonce") if args.nonce else None
    expected = _hex_arg(args.report_data, "--report-data") if args.report_data else None
    collateral = load_collateral(args.collateral) if args.collateral else None
    res = verify_quote(q, at=at, expected_report_data=expected, nonce=nonce,
                       collateral=collateral,
                       anchors=trusted_roots(include_sandbox=args.trust_sandbox_root))
    passed = res.passed(tuple(DEFAULT_ACCEPTED_TCB) + tuple(args.accept_tcb))
    if args.format == "json":
        out = res.to_dict()
        out["passed"] = passed
        _dump(out)
        return 0 if passed else 1
    c = Console()
    t = Table(title="%s: TDX quote v%d" % (args.file, q.version), show_header=False)
    t.add_column("check", style="bold")
    t.add_column("result", overflow="fold")

    def flag(v: bool | None) -> str:
        return "[green]valid[/green]" if v else "[red]INVALID[/red]"

    t.add_row("quote signature", flag(res.signature_valid))
    t.add_row("QE report", flag(res.qe_report_valid))
    t.add_row("PCK chain", flag(res.pck_chain_valid))
    if res.report_data_valid is not None:
        t.add_row("REPORTDATA", flag(res.report_data_valid)
                  + (" (%s)" % res.report_data_binding if res.report_data_binding else ""))
    if res.collateral_valid is not None:
        t.add_row("collateral", flag(res.collateral_valid))
    t.add_row("TCB status", res.tcb_status)
    if res.pck:
        t.add_row("FMSPC / PCE-ID", "%s / %s" % (res.pck["fmspc"], res.pck["pceid"]))
    if res.chain:
        t.add_row("chain root", "%s (SHA-256 %s)" % (res.chain[-1]["subject"],
                                                      res.chain[-1]["sha256"]))
    c.print(t)
    for err in res.errors:
        c.print("[red]%s[/red]: %s" % (err["code"], err["message"]), highlight=False)
    c.print("[green]PASSED[/green]" if passed else "[red]FAILED[/red]")
    return 0 if passed else 1


# ---------------------------------------------------------------- TPM quotes


def cmd_show_tpm(args: argparse.Namespace, q: tpm_quote.TpmQuote) -> int:
    from shared_spec.tpm2_attest import parse_attest, parse_signature

    d: dict[str, Any] = {"kind": "tpm-quote", "ak": q.ak, "tcti": q.tcti,
                         "nonce": q.nonce.hex(), "ak_public_pem": q.ak_public_pem,
                         "attest": parse_attest(q.attest, source=args.file + ": attest"
                                                ).to_dict(),
                         "signature": parse_signature(q.signature, source=args.file
                                                      + ": signature").to_dict(),
                         "pcrs": q.to_json()["pcrs"], "ek_template": q.ek_template,
                         "ek_certificate": _cert_summary(q),
                         "ek_intermediates": _intermediate_summaries(q, args.file)}
    if args.format == "json":
        _dump(d)
        return 0
    t = Table(title="%s: TPM quote" % args.file, show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    a = d["attest"]
    for label, value in (("type", a["type"]), ("magic", a["magic"]),
                         ("qualified signer", a["qualified_signer"]),
                         ("extraData (nonce)", a["extra_data"] or "(empty)"),
                         ("clock / resets / restarts", "%(clock)d ms / %(reset_count)d / "
                          "%(restart_count)d" % a["clock_info"]),
                         ("firmware version", a["firmware_version"]),
                         ("PCR selection", ", ".join("%s:%s" % (s["alg"], ",".join(
                             str(p) for p in s["pcrs"])) for s in a.get("pcr_select", []))),
                         ("PCR digest", a.get("pcr_digest", "")),
                         ("signature", "%s-%s" % (d["signature"]["sig_alg"],
                                                  d["signature"]["hash"])),
                         ("attestation key", q.ak), ("TCTI", q.tcti),
                         ("EK", q.ek_template or "(none)"),
                         ("EK certificate", "%(subject)s issued by %(issuer)s, SHA-256 "
                          "%(sha256)s" % d["ek_certificate"] if d["ek_certificate"]
                          else "(none)")):
        t.add_row(label, str(value))
    for c in d["ek_intermediates"]:
        t.add_row("EK chain %s" % c["nv_index"], "%(subject)s issued by %(issuer)s, SHA-256 "
                  "%(sha256)s" % c)
    for alg, bank in d["pcrs"].items():
        for pcr, value in bank.items():
            t.add_row("PCR %s (%s)" % (pcr, alg), value)
    Console().print(t)
    return 0


def _cert_summary(q: tpm_quote.TpmQuote) -> dict[str, str] | None:
    if not q.ek_certificate_pem:
        return None
    cert = tpm_ek.load_certificate(q.ek_certificate_pem.encode(), "ek_certificate_pem")
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "serial": "%x" % cert.serial_number, "sha256": tpm_ek.fingerprint(cert)}


def _intermediate_summaries(q: tpm_quote.TpmQuote, source: str) -> list[dict[str, str]]:
    out = []
    for n, (index, pem) in enumerate(q.ek_intermediates):
        cert = tpm_ek.load_certificate(pem.encode(), "%s: ek_intermediates[%d]" % (source, n))
        out.append({"nv_index": "0x%08x" % index, "subject": cert.subject.rfc4514_string(),
                    "issuer": cert.issuer.rfc4514_string(), "serial": "%x" % cert.serial_number,
                    "sha256": tpm_ek.fingerprint(cert)})
    return out


def cmd_verify_tpm(args: argparse.Namespace, q: tpm_quote.TpmQuote) -> int:
    for option in ("report_data", "collateral"):
        if getattr(args, option):
            raise InputError("--%s is for TDX quotes; %s is a TPM quote"
                             % (option.replace("_", "-"), args.file))
    if args.time and not args.ek_ca:
        raise InputError("--time: for a TPM quote it sets when the EK certificate and CRLs are "
                         "checked; give --ek-ca")
    nonce = _hex_arg(args.nonce, "--nonce") if args.nonce else None
    pem = None
    if args.ak_pem:
        pem = read_file(args.ak_pem)
    res = tpm_quote.verify_tpm_quote(q, nonce=nonce, ak_public_pem=pem)
    extra = verify_tpm_identity(args, q)
    passed = res.passed and all(v.passed for v in extra.values())
    if args.format == "json":
        out = res.to_dict()
        for key, value in extra.items():
            out[key] = value.to_dict()
            out["errors"] = out["errors"] + value.errors
        out["warnings"] = extra["ek"].warnings if "ek" in extra else []
        out["passed"] = passed
        _dump(out)
        return 0 if passed else 1
    c = Console()
    t = Table(title="%s: TPM quote" % args.file, show_header=False)
    t.add_column("check", style="bold")
    t.add_column("result", overflow="fold")

    def flag(v: bool | None) -> str:
        if v is None:
            return "not checked (no nonce)"
        return "[green]valid[/green]" if v else "[red]INVALID[/red]"

    t.add_row("AK signature", flag(res.signature_valid)
              + (" (%s-%s)" % (res.signature["sig_alg"], res.signature["hash"])))
    t.add_row("TPMS_ATTEST magic, type", flag(res.attest_valid))
    t.add_row("nonce (extraData)", flag(res.nonce_valid))
    t.add_row("PCR digest", flag(res.pcr_digest_valid))
    if res.attest.get("pcr_select"):
        t.add_row("PCRs quoted", ", ".join("%s:%s" % (s["alg"], ",".join(str(p) for p in
                                                                     s["pcrs"]))
                                           for s in res.attest["pcr_select"]))
    t.add_row("attestation key", ("pinned --ak-pem " + args.ak_pem) if args.ak_pem
              else "from the file (%s)" % (q.ak or "unnamed"))
    ek = extra.get("ek")
    if ek is not None:
        root = (" (root %s)" % ek.chain[-1]["subject"]) if ek.chain else ""
        t.add_row("EK certificate chain", flag(ek.chain_valid) + root)
        via = sorted({c["source"] for c in ek.chain if c.get("source") not in
                      (None, "EK certificate", "CA bundle")})
        if via:
            t.add_row("EK chain intermediates from", ", ".join(via))
        if ek.revocation_valid is not None or ek.revocation:
            done = sum(1 for r in ek.revocation if r["status"] != "unchecked")
            t.add_row("EK revocation (CRL)", (flag(ek.revocation_valid) if ek.revocation_valid
                                              is not None else "not checked")
                      + " (%d of %d certificates covered)" % (done, len(ek.revocation)))
        if ek.public_valid is not None:
            t.add_row("EK = certified key", flag(ek.public_valid)
                      + (" (%s)" % ek.template if ek.template else ""))
    else:
        t.add_row("EK certificate", "not checked (no --ek-ca)")
    act = extra.get("activation")
    if act is not None:
        t.add_row("credential activation", flag(act.secret_valid))
        t.add_row("activated AK = quote's AK", flag(act.ak_valid))
    else:
        t.add_row("AK in the EK's TPM", "not checked (no --activation)")
    c.print(t)
    for err in res.errors + [e for v in extra.values() for e in v.errors]:
        c.print("[red]%s[/red]: %s" % (err["code"], err["message"]), highlight=False)
    for w in ek.warnings if ek is not None else []:
        c.print("[yellow]%s[/yellow]: %s" % (w["code"], w["message"]), highlight=False)
    c.print("[green]PASSED[/green]" if passed else "[red]FAILED[/red]")
    return 0 if passed else 1


# ---------------------------------------------------------------- TPM: EK and credential


def _ak_source(path: str) -> tuple[TpmPublic, tpm_quote.TpmQuote | None]:
    raw = read_file(path)
    if tpm_quote.looks_like_tpm_quote(raw):
        q = tpm_quote.TpmQuote.loads(raw, path)
        if not q.ak_public:
            raise InputError("%s: ak_public: empty (a quote file from an older cvmchain)" % path)
        return parse_public(q.ak_public, "%s: ak_public" % path), q
    return parse_public(raw, path), None


def _ek_certificate(option: str | None, q: tpm_quote.TpmQuote | None, what: str) -> Any:
    if option:
        return tpm_ek.load_certificate(read_file(option), option)
    if q is not None and q.ek_certificate_pem:
        return tpm_ek.load_certificate(q.ek_certificate_pem.encode(), what + ": ek_certificate_pem")
    return None


def _ek_public(cert: Any, name: str | None, q: tpm_quote.TpmQuote | None, source: str
               ) -> tuple[str, TpmPublic]:
    """The EK public area for ``cert``'s key: the quote's (when it holds that key and
    ``name`` agrees), else the template's with the key."""
    key = cert.public_key()
    if q is not None and q.ek_public and (name is None or name == q.ek_template):
        pub = parse_public(q.ek_public, "%s: ek_public" % source)
        res = tpm_ek.EkVerification()
        tpm_ek.check_public(cert, key, pub, res)
        if not res.errors:
            return q.ek_template or tpm_ek.template_for_key(key).name, pub
    tmpl = tpm_ek.template(name) if name else tpm_ek.template_for_key(key)
    return tmpl.name, with_key(tmpl.public(), key)


def _print_findings(errors: list[dict[str, str]]) -> None:
    c = Console(stderr=True)
    for err in errors:
        c.print("[red]%s[/red]: %s" % (err["code"], err["message"]), highlight=False)


def cmd_challenge(args: argparse.Namespace) -> int:
    ak, q = _ak_source(args.ak_public)
    tpm_credential.check_ak(ak, args.ak_public)
    cert = _ek_certificate(args.ek_cert, q, args.ak_public)
    if cert is None:
        raise InputError("no EK certificate: %s holds none; give --ek-cert" % args.ak_public)
    template, ek = _ek_public(cert, args.ek_template, q, args.ak_public)
    _check_ek_options(args)
    if args.ek_ca:
        res = ek_check(args, cert, ek, q, args.ak_public)
        _print_findings(res.warnings)
        if not res.passed:
            _print_findings(res.errors)
            print("cvmchain: the EK certificate does not verify against %s; no challenge made"
                  % args.ek_ca, file=sys.stderr)
            return 1
    challenge, _ = tpm_credential.make_challenge(ek, ak, template,
                                                 tpm_ek.certificate_pem(cert))
    challenge.save(args.output)
    print("wrote %s: credential challenge for the AK %s under the %s EK %s%s" % (
        args.output, ak.name().hex(), template, ek.name().hex(),
        " (certificate checked against %s)" % args.ek_ca if args.ek_ca else ""), file=sys.stderr)
    return 0


def verify_tpm_identity(args: argparse.Namespace, q: tpm_quote.TpmQuote
                        ) -> dict[str, Any]:
    """``--ek-ca`` and ``--activation`` for ``quote verify``: {"ek": ..., "activation": ...}."""
    out: dict[str, Any] = {}
    challenge = response = None
    if args.activation:
        challenge = tpm_credential.Challenge.load(args.activation[0])
        response = tpm_credential.Response.load(args.activation[1])
    cert = _ek_certificate(args.ek_cert, q, args.file)
    if cert is None and challenge is not None and challenge.ek_certificate_pem:
        cert = tpm_ek.load_certificate(challenge.ek_certificate_pem.encode(),
                                       args.activation[0] + ": ek_certificate_pem")
    _check_ek_options(args)
    if args.ek_ca:
        if cert is None:
            raise InputError("--ek-ca: no EK certificate to check: %s holds none; give "
                             "--ek-cert" % args.file)
        ek_pub = parse_public(q.ek_public, args.file + ": ek_public") if q.ek_public else None
        if ek_pub is None and challenge is not None:
            ek_pub = challenge.ek_public
        at = _time_arg(args.time) if args.time else None
        out["ek"] = ek_check(args, cert, ek_pub, q, args.file, at)
    if challenge is not None and response is not None:
        out["activation"] = tpm_credential.verify_activation(
            challenge, response, ak_public_pem=q.ak_public_pem, ak_public=q.ak_public or None,
            ek_key=cert.public_key() if cert is not None else None)
    return out
