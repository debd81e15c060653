"""TPM 2.0 quotes: sign PCR values with an attestation key (tpm2-pytss), verify them anywhere.

Making a quote needs a TPM and the optional ``tpm2-pytss`` binding (PyPI
``tpm2-pytss>=2.2``, the project's ``tpm`` extra, or Debian's
``python3-tpm2-pytss`` where it imports); importing this module does not.
Verifying needs neither: only ``cryptography`` and :mod:`shared_spec.tpm2_attest`.

The attestation key (AK) is a restricted signing key: by default an ECC
NIST P-256 ECDSA-SHA256 primary key under the endorsement hierarchy, made
from a fixed template, so the same TPM gives the same key every time (RSA
2048 RSASSA-SHA256 and the owner hierarchy are options). It can instead be
loaded from a persistent handle, or a tpm2-tools context file
(``tpm2_createak -c ak.ctx``); ``persist`` stores the primary at its handle
the first time. The quote file carries the AK's public key, and
:func:`verify_tpm_quote` accepts a pinned one instead. That the AK lives in a
genuine TPM is shown apart: the file also carries the TPM's endorsement key
(EK) certificate and public area when the TPM has one (:mod:`cloud_sdk.tpm_ek`),
and credential activation (:mod:`cloud_sdk.tpm_credential`) proves the AK is
in that EK's TPM.

A quote covers a PCR selection (default: PCRs 0-7, the firmware's; 10, IMA's;
15, the cvmchain agent's; in every active bank) and the caller's nonce as
qualifying data (``extraData``, at most 64 bytes). The PCR values are read
right after the quote and checked against its ``pcrDigest`` before returning,
so a file never holds values the quote does not cover.

The file (:data:`SCHEMA`, JSON)::

    {"schema": "cvmchain-tpm-quote/1", "attest": "<TPMS_ATTEST hex>",
     "signature": "<TPMT_SIGNATURE hex>", "ak_public_pem": "-----BEGIN PUBLIC KEY-----...",
     "ak_public": "<TPM2B_PUBLIC hex>", "ak": "endorsement primary ecc", "nonce": "<hex>",
     "pcr_selection": [{"alg": "sha256", "pcrs": [0, 1, ...]}, ...],
     "pcrs": {"sha256": {"0": "<hex>", ...}, ...}, "tcti": "device:/dev/tpmrm0",
     "collected_at": "2025-01-01T00:00:00Z", "ek_template": "rsa2048",
     "ek_public": "<TPM2B_PUBLIC hex>", "ek_certificate_pem": "-----BEGIN CERTIFICATE-----...",
     "ek_intermediates": [{"nv_index": "0x01c00100", "pem": "-----BEGIN CERTIFICATE-----..."}]}

(the ``ek_*`` keys are empty / null when the quote was made without an EK;
``ek_intermediates`` holds the untrusted CA certificates the TPM stores in its
EK chain NV indices 0x01C00100..0x01C001FF, one entry per certificate, and may
be absent in files of older versions).

Verification (:func:`verify_tpm_quote`) reports, with stable codes in
``errors``: ``TPM_QUOTE_SIGNATURE`` (the AK did not sign these TPMS_ATTEST
bytes), ``TPM_ATTEST_MALFORMED``, ``TPM_ATTEST_MAGIC``, ``TPM_ATTEST_TYPE``,
``TPM_QUOTE_NONCE`` (extraData is not the nonce), ``TPM_QUOTE_PCR_DIGEST`` (the
PCR values do not hash to the quoted digest), ``TPM_QUOTE_PCR_MISSING``.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cloud_sdk.backends import TPM_DEVICES, TpmBackend
from cloud_sdk.errors import BackendError, InputError
from cloud_sdk.hashing import hashlib_provider
from shared_spec import tpm2, tpm2_attest
from shared_spec.algorithms import alg_from_name, alg_name
from shared_spec.binary import Reader
from shared_spec.errors import SpecError

SCHEMA = "cvmchain-tpm-quote/1"

#: The firmware's PCRs 0-7, IMA's PCR 10 and the cvmchain agent's PCR 15.
DEFAULT_PCRS = (0, 1, 2, 3, 4, 5, 6, 7, 10, 15)
#: Largest qualifying data a TPM takes (TPM2B_DATA: sizeof(TPMT_HA) less the algorithm).
MAX_NONCE = 64
HIERARCHIES = ("endorsement", "owner")
#: :func:`get_tpm_quote`'s default: the EK whose certificate the TPM stores, if any.
EK_AUTO = "auto"
KEY_TYPES = ("ecc", "rsa")
#: tpm2-pytss template strings of the AK types: signing scheme and hash, no symmetric cipher
AK_TEMPLATES = {"ecc": "ecc256:ecdsa-sha256:null", "rsa": "rsa2048:rsassa-sha256:null"}
#: How often a quote is taken again when a PCR changed between the quote and the read.
ATTEMPTS = 3

_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    0x0004: hashes.SHA1, 0x000B: hashes.SHA256, 0x000C: hashes.SHA384, 0x000D: hashes.SHA512,
}

PcrValues = dict[int, dict[int, bytes]]
Selection = list[tuple[int, list[int]]]


class TpmQuoteUnavailable(BackendError):
    """No quote can be made here: tpm2-pytss is missing or the TPM refused."""


# ---------------------------------------------------------------- the quote file


@dataclass
class TpmQuote:
    """A TPM2_Quote with what a verifier needs: the AK public key and the quoted PCR values.

    ``pcrs`` is ``{alg: {pcr: value}}`` read in the same TPM session as the
    quote; ``selection`` is ``[(alg, [PCR, ...])]`` in the order quoted.
    """

    attest: bytes
    signature: bytes
    ak_public_pem: str
    pcrs: PcrValues
    selection: Selection
    nonce: bytes = b""
    ak_public: bytes = b""
    ak: str = ""
    tcti: str = ""
    collected_at: float = field(default_factory=time.time)
    ek_template: str = ""
    ek_public: bytes = b""
    ek_certificate_pem: str | None = None
    #: (NV index, PEM) of the CA certificates in the TPM's EK chain indices (untrusted)
    ek_intermediates: list[tuple[int, str]] = field(default_factory=list)
    #: why no EK is in the quote although one was looked for (not saved)
    ek_note: str = ""
    #: the EK chain NV indices that could not be used, and why (not saved)
    ek_chain_errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "attest": self.attest.hex(),
            "signature": self.signature.hex(),
            "ak_public_pem": self.ak_public_pem,
            "ak_public": self.ak_public.hex(),
            "ak": self.ak,
            "nonce": self.nonce.hex(),
            "pcr_selection": [{"alg": alg_name(a), "pcrs": list(p)} for a, p in self.selection],
            "pcrs": {alg_name(a): {str(p): v.hex() for p, v in sorted(bank.items())}
                     for a, bank in self.pcrs.items()},
            "tcti": self.tcti,
            "collected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.collected_at)),
            "ek_template": self.ek_template,
            "ek_public": self.ek_public.hex(),
            "ek_certificate_pem": self.ek_certificate_pem,
            "ek_intermediates": [{"nv_index": "0x%08x" % i, "pem": pem}
                                 for i, pem in self.ek_intermediates],
        }

    def dumps(self) -> bytes:
        return (json.dumps(self.to_json(), indent=1) + "\n").encode()

    def save(self, path: str | Path) -> None:
        """Write the quote file atomically."""
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        try:
            tmp.write_bytes(self.dumps())
            tmp.replace(p)
        except OSError as e:
            raise InputError("%s: cannot write: %s" % (p, e.strerror or e)) from e

    @classmethod
    def from_json(cls, doc: Any, source: str = "<tpm quote>") -> TpmQuote:
        """Parse a :data:`SCHEMA` document; :class:`InputError` names the bad field."""
        if not is_tpm_quote_document(doc):
            raise InputError("%s: not a %s document" % (source, SCHEMA))
        pem = doc.get("ak_public_pem")
        if not isinstance(pem, str) or not pem.strip():
            raise InputError("%s: ak_public_pem: missing" % source)
        pcrs: PcrValues = {}
        raw_pcrs = doc.get("pcrs") or {}
        if not isinstance(raw_pcrs, dict):
            raise InputError("%s: pcrs: not an object" % source)
        for name, bank in raw_pcrs.items():
            alg = _alg(name, source, "pcrs.%s" % name)
            if not isinstance(bank, dict):
                raise InputError("%s: pcrs.%s: not an object" % (source, name))
            for index, value in bank.items():
                where = "pcrs.%s.%s" % (name, index)
                try:
                    pcr = int(index)
                except ValueError:
                    raise InputError("%s: %s: not a PCR number" % (source, where)) from None
                pcrs.setdefault(alg, {})[pcr] = _hex(value, source, where)
        selection: Selection = []
        raw_sel = doc.get("pcr_selection") or []
        if not isinstance(raw_sel, list):
            raise InputError("%s: pcr_selection: not a list" % source)
        for i, entry in enumerate(raw_sel):
            where = "pcr_selection[%d]" % i
            if not isinstance(entry, dict) or not isinstance(entry.get("pcrs"), list):
                raise InputError("%s: %s: not {alg, pcrs}" % (source, where))
            alg = _alg(entry.get("alg"), source, where + ".alg")
            selection.append((alg, [int(p) for p in entry["pcrs"]]))
        return cls(attest=_hex(doc.get("attest"), source, "attest"),
                   signature=_hex(doc.get("signature"), source, "signature"),
                   ak_public_pem=pem, pcrs=pcrs, selection=selection,
                   nonce=_hex(doc.get("nonce") or "", source, "nonce"),
                   ak_public=_hex(doc.get("ak_public") or "", source, "ak_public"),
                   ak=str(doc.get("ak", "")), tcti=str(doc.get("tcti", "")),
                   collected_at=_stamp(doc.get("collected_at"), source),
                   ek_template=str(doc.get("ek_template") or ""),
                   ek_public=_hex(doc.get("ek_public") or "", source, "ek_public"),
                   ek_certificate_pem=_pem_or_none(doc.get("ek_certificate_pem"), source),
                   ek_intermediates=_intermediates(doc.get("ek_intermediates"), source))

    @classmethod
    def loads(cls, data: bytes, source: str = "<tpm quote>") -> TpmQuote:
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError("%s: not JSON: %s" % (source, e)) from e
        return cls.from_json(doc, source)

    @classmethod
    def load(cls, path: str | Path) -> TpmQuote:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise InputError("%s: cannot read: %s" % (path, e.strerror or e)) from e
        return cls.loads(data, str(path))


def is_tpm_quote_document(doc: Any) -> bool:
    """Whether ``doc`` (parsed JSON) claims to be a :data:`SCHEMA` file."""
    return isinstance(doc, dict) and doc.get("schema") == SCHEMA


def looks_like_tpm_quote(data: bytes) -> bool:
    """Whether a file's bytes are a :data:`SCHEMA` JSON file (a TDX quote is binary)."""
    head = data[:256].lstrip()
    return head.startswith(b"{") and SCHEMA.encode() in data[:4096]


def _alg(name: Any, source: str, where: str) -> int:
    alg = alg_from_name(name) if isinstance(name, str) else None
    if alg is None:
        raise InputError("%s: %s: unknown hash algorithm %r" % (source, where, name))
    return alg


def _hex(value: Any, source: str, where: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        raise InputError("%s: %s: not hex" % (source, where)) from None


def _pem_or_none(value: Any, source: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or "-----BEGIN CERTIFICATE-----" not in value:
        raise InputError("%s: ek_certificate_pem: not a PEM certificate" % source)
    return value


def _intermediates(value: Any, source: str) -> list[tuple[int, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError("%s: ek_intermediates: not a list" % source)
    out = []
    for n, entry in enumerate(value):
        where = "%s: ek_intermediates[%d]" % (source, n)
        if not isinstance(entry, dict):
            raise InputError("%s: not {nv_index, pem}" % where)
        try:
            index = int(str(entry.get("nv_index")), 16)
        except ValueError:
            raise InputError("%s.nv_index: %r is not a hex NV index"
                             % (where, entry.get("nv_index"))) from None
        pem = entry.get("pem")
        if not isinstance(pem, str) or "-----BEGIN CERTIFICATE-----" not in pem:
            raise InputError("%s.pem: not a PEM certificate" % where)
        out.append((index, pem))
    return out


def _stamp(value: Any, source: str) -> float:
    if not isinstance(value, str):
        return 0.0
    try:
        return time.mktime(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    except ValueError:
        raise InputError("%s: collected_at %r is not ISO 8601 UTC" % (source, value)) from None


# ---------------------------------------------------------------- verification


@dataclass
class TpmQuoteVerification:
    """The outcome of :func:`verify_tpm_quote`: one flag per check, findings in ``errors``.

    ``nonce_valid`` is None when no nonce was expected.
    """

    signature_valid: bool = False
    attest_valid: bool = False
    nonce_valid: bool | None = None
    pcr_digest_valid: bool = False
    errors: list[dict[str, str]] = field(default_factory=list)
    attest: dict[str, Any] = field(default_factory=dict)
    signature: dict[str, Any] = field(default_factory=dict)

    def error(self, code: str, message: str) -> None:
        self.errors.append({"code": code, "message": message})

    @property
    def passed(self) -> bool:
        return (self.signature_valid and self.attest_valid and self.nonce_valid is not False
                and self.pcr_digest_valid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "tpm-quote",
            "signature_valid": self.signature_valid,
            "attest_valid": self.attest_valid,
            "nonce_valid": self.nonce_valid,
            "pcr_digest_valid": self.pcr_digest_valid,
            "passed": self.passed,
            "errors": self.errors,
            "attest": self.attest,
            "signature": self.signature,
        }


def load_public_key(pem: str | bytes, source: str = "ak_public_pem"
                    ) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """An EC or RSA public key from PEM; :class:`InputError` otherwise."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise InputError("%s: not a PEM public key: %s" % (source, e)) from e
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise InputError("%s: a %s key, not EC or RSA" % (source, type(key).__name__))
    return key


def check_signature(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey, attest: bytes,
                    sig: tpm2_attest.Signature) -> str | None:
    """None when ``sig`` by ``key`` covers ``attest``; else why not."""
    algo = _HASHES.get(sig.hash_alg)
    if algo is None:
        return "signature hash %s is not supported" % alg_name(sig.hash_alg)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if sig.sig_alg != tpm2_attest.TPM_ALG_ECDSA:
                return "an EC key, a %s signature" % tpm2_attest.sig_alg_name(sig.sig_alg)
            der = encode_dss_signature(int.from_bytes(sig.r, "big"), int.from_bytes(sig.s, "big"))
            key.verify(der, attest, ec.ECDSA(algo()))
        else:
            if sig.sig_alg == tpm2_attest.TPM_ALG_RSASSA:
                pad: padding.AsymmetricPadding = padding.PKCS1v15()
            elif sig.sig_alg == tpm2_attest.TPM_ALG_RSAPSS:
                pad = padding.PSS(mgf=padding.MGF1(algo()), salt_length=padding.PSS.AUTO)
            else:
                return "an RSA key, a %s signature" % tpm2_attest.sig_alg_name(sig.sig_alg)
            key.verify(sig.sig, attest, pad, algo())
    except InvalidSignature:
        return "the signature does not verify with the AK public key over these TPMS_ATTEST bytes"
    return None


def verify_tpm_quote(quote: TpmQuote, nonce: bytes | None = None,
                     ak_public_pem: str | bytes | None = None) -> TpmQuoteVerification:
    """Check ``quote`` with ``cryptography`` only (no TPM).

    The signature over the TPMS_ATTEST bytes by the AK (``ak_public_pem`` when
    given, pinning the key, else the file's); magic TPM_GENERATED_VALUE and
    type TPM_ST_ATTEST_QUOTE; extraData equal to ``nonce`` (the file's own
    nonce when ``nonce`` is None and it has one); pcrDigest equal to the hash,
    with the signature's hash algorithm, of the file's PCR values in the quoted
    selection's order. An unusable key or signature encoding raises
    :class:`InputError`; every other problem is a failed check with a code.
    """
    res = TpmQuoteVerification()
    key = load_public_key(ak_public_pem if ak_public_pem is not None else quote.ak_public_pem,
                          "--ak-pem" if ak_public_pem is not None else "ak_public_pem")
    try:
        sig = tpm2_attest.parse_signature(quote.signature, source="signature")
    except SpecError as e:
        raise InputError("TPMT_SIGNATURE: %s" % e.located()) from e
    res.signature = sig.to_dict()
    why = check_signature(key, quote.attest, sig)
    res.signature_valid = why is None
    if why is not None:
        res.error("TPM_QUOTE_SIGNATURE", why)
    try:
        attest = tpm2_attest.parse_attest(quote.attest, source="attest")
    except SpecError as e:
        res.error("TPM_ATTEST_MALFORMED", "TPMS_ATTEST: %s" % e.located())
        return res
    res.attest = attest.to_dict()
    expected = nonce if nonce is not None else (quote.nonce or None)
    problems = tpm2_attest.check_quote(attest, expected)
    for code, message in problems:
        res.error(code, message)
    res.attest_valid = not any(c in ("TPM_ATTEST_MAGIC", "TPM_ATTEST_TYPE") for c, _ in problems)
    if expected is not None:
        res.nonce_valid = not any(c == "TPM_QUOTE_NONCE" for c, _ in problems)
    if not attest.is_quote:
        return res
    try:
        digest = tpm2_attest.pcr_digest(hashlib_provider(), sig.hash_alg, attest.pcr_select,
                                        quote.pcrs)
    except SpecError as e:
        res.error("TPM_QUOTE_PCR_MISSING", e.located())
        return res
    res.pcr_digest_valid = digest == attest.pcr_digest
    if not res.pcr_digest_valid:
        res.error("TPM_QUOTE_PCR_DIGEST",
                  "the PCR values (%s) hash to %s, the quote's pcrDigest is %s"
                  % (tpm2.format_selection(attest.pcr_select), digest.hex(),
                     attest.pcr_digest.hex()))
    return res


# ---------------------------------------------------------------- making a quote (tpm2-pytss)

INSTALL_HINT = ("install tpm2-pytss: `apt-get install python3-tpm2-pytss` (Debian) or "
                "`pip install 'cvmchain[tpm]'` (tpm2-pytss>=2.2; needs libtss2-dev)")


def pytss() -> Any:
    """The ``tpm2_pytss`` module; :class:`TpmQuoteUnavailable` saying how to install it."""
    try:
        import tpm2_pytss
    except ImportError as e:
        raise TpmQuoteUnavailable("a TPM quote needs tpm2-pytss, which is not installed (%s); %s"
                                  % (e, INSTALL_HINT)) from None
    except Exception as e:  # Debian's 1.2.0 fails to import with cryptography >= 42
        raise TpmQuoteUnavailable("tpm2-pytss is installed but does not import here (%s: %s); "
                                  "%s" % (type(e).__name__, e, INSTALL_HINT)) from None
    return tpm2_pytss


def available() -> bool:
    """Whether tpm2-pytss imports (a quote may still fail for want of a TPM)."""
    try:
        pytss()
    except TpmQuoteUnavailable:
        return False
    return True


def tcti_for_device(path: str) -> str:
    """The TCTI string for a TPM device node (``device:``) or swtpm unix socket (``swtpm:``)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise BackendError("%s: %s (no TPM, or its driver is not loaded)"
                           % (path, e.strerror or e)) from None
    if stat.S_ISSOCK(mode):
        return "swtpm:path=%s" % path
    return "device:%s" % path


def tcti_for_backend(backend: TpmBackend) -> str:
    """The TCTI reaching the same TPM as ``backend`` (its device or swtpm socket)."""
    if backend.device is not None:
        return tcti_for_device(backend.device)
    root = backend.root
    for rel in TPM_DEVICES:
        if (root / rel).exists():
            return tcti_for_device(str(root / rel))
    raise TpmQuoteUnavailable("no TPM: neither %s exists (no TPM, or its driver is not loaded)"
                              % " nor ".join(str(root / r) for r in TPM_DEVICES))


def parse_pcr_list(text: str) -> list[int]:
    """``"0-7,10,15"`` -> [0, ..., 7, 10, 15]; :class:`InputError` for anything else."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise InputError("PCR list %r: %r is not a PCR or a range" % (text, part)) from None
    if not out or min(out) < 0 or max(out) > 23:
        raise InputError("PCR list %r: PCRs are 0-23" % text)
    return sorted(out)


@dataclass
class AttestationKey:
    """Which AK to use: a primary made from a template, or a persistent / saved one.

    ``handle`` (0x81xxxxxx) loads a persistent key; with ``persist`` a missing
    one is created from the template and made persistent there. ``context``
    loads a tpm2-tools context file (``tpm2_createak -c``). Otherwise a
    ``key_type`` primary is created under ``hierarchy`` and flushed afterwards.
    """

    hierarchy: str = "endorsement"
    key_type: str = "ecc"
    handle: int | None = None
    context: str | None = None
    persist: bool = False

    def describe(self) -> str:
        if self.context is not None:
            return "context file %s" % self.context
        where = "%s primary %s" % (self.hierarchy, self.key_type)
        if self.handle is not None:
            return "persistent 0x%08x (%s)" % (self.handle, where)
        return where


def _u(obj: Any) -> bytes:
    """The TPM bytes of a tpm2-pytss structure."""
    return bytes(obj.marshal())


def default_tcti(tcti: str | None = None) -> str:
    """``tcti``, else ``$TPM2TOOLS_TCTI``, else ``device:/dev/tpmrm0``."""
    return tcti or os.environ.get("TPM2TOOLS_TCTI") or "device:/dev/tpmrm0"


class TpmSession:
    """One ESAPI context on one TCTI, with the handles to flush when done.

    ``t`` is the tpm2_pytss module, ``esys`` the context; :meth:`call` turns a
    TSS error into :class:`TpmQuoteUnavailable` naming the command and TCTI.
    """

    def __init__(self, tcti: str) -> None:
        self.t = pytss()
        self.tcti = tcti
        try:
            self.esys = self.t.ESAPI(tcti)
        except Exception as e:
            raise TpmQuoteUnavailable("TCTI %s: cannot open the TPM: %s" % (tcti, e)) from None
        self.flush: list[Any] = []

    def close(self) -> None:
        for h in self.flush:
            try:
                self.esys.flush_context(h)
            except Exception:  # best effort: the handle dies with the session anyway
                pass
        self.esys.close()

    def call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.t.TSS2_Exception as e:
            raise TpmQuoteUnavailable("%s on %s: %s" % (what, self.tcti, e)) from None

    def active_banks(self) -> list[int]:
        _, cap = self.call("TPM2_GetCapability(PCRS)", self.esys.get_capability,
                           self.t.TPM2_CAP.PCRS, 0, 1)
        sel = tpm2.decode_pcr_selection(Reader(_u(cap.data.assignedPCR)))
        return tpm2.active_banks(sel)

    def selection(self, sel: Selection) -> Any:
        return self.t.TPML_PCR_SELECTION.unmarshal(tpm2.encode_pcr_selection(sel))[0]

    def load_ak(self, ak: AttestationKey) -> tuple[Any, bytes, str]:
        """(ESYS_TR, TPM2B_PUBLIC bytes, PEM) of the AK."""
        t, esys = self.t, self.esys
        if ak.context is not None:
            try:
                data = Path(ak.context).read_bytes()
            except OSError as e:
                raise InputError("%s: cannot read: %s" % (ak.context, e.strerror or e)) from e
            try:
                ctx = t.TPMS_CONTEXT.from_tools(data)
            except Exception as e:
                raise InputError("%s: not a tpm2-tools context file: %s" % (ak.context, e)
                                 ) from None
            handle = self.call("TPM2_ContextLoad", esys.context_load, ctx)
            self.flush.append(handle)
        elif ak.handle is not None and self._persistent_exists(ak.handle):
            handle = self.call("ESYS_TR for 0x%08x" % ak.handle, esys.tr_from_tpmpublic,
                               ak.handle)
        else:
            if ak.handle is not None and not ak.persist:
                raise TpmQuoteUnavailable("no key at persistent handle 0x%08x (create it with "
                                          "persist, or tpm2_evictcontrol)" % ak.handle)
            handle = self._create_primary(ak)
            if ak.handle is not None:
                self.call("TPM2_EvictControl", esys.evict_control, t.ESYS_TR.OWNER, handle,
                          ak.handle)
                handle = self.call("ESYS_TR for 0x%08x" % ak.handle, esys.tr_from_tpmpublic,
                                   ak.handle)
        public, _, _ = self.call("TPM2_ReadPublic", esys.read_public, handle)
        attrs = int(public.publicArea.objectAttributes)
        need = int(t.TPMA_OBJECT.RESTRICTED | t.TPMA_OBJECT.SIGN_ENCRYPT)
        if attrs & need != need:
            raise TpmQuoteUnavailable("the AK (%s) is not a restricted signing key "
                                      "(objectAttributes 0x%08x)" % (ak.describe(), attrs))
        pem = bytes(public.to_pem()).decode("ascii")
        return handle, _u(public), pem

    def _persistent_exists(self, handle: int) -> bool:
        _, cap = self.call("TPM2_GetCapability(HANDLES)", self.esys.get_capability,
                           self.t.TPM2_CAP.HANDLES, handle, 1)
        return any(int(h) == handle for h in cap.data.handles)

    def _create_primary(self, ak: AttestationKey) -> Any:
        t = self.t
        if ak.hierarchy not in HIERARCHIES:
            raise InputError("AK hierarchy %r (choose from %s)" % (ak.hierarchy,
                                                                   ", ".join(HIERARCHIES)))
        if ak.key_type not in KEY_TYPES:
            raise InputError("AK type %r (choose from %s)" % (ak.key_type, ", ".join(KEY_TYPES)))
        attrs = (t.TPMA_OBJECT.FIXEDTPM | t.TPMA_OBJECT.FIXEDPARENT
                 | t.TPMA_OBJECT.SENSITIVEDATAORIGIN | t.TPMA_OBJECT.USERWITHAUTH
                 | t.TPMA_OBJECT.RESTRICTED | t.TPMA_OBJECT.SIGN_ENCRYPT)
        template = t.TPM2B_PUBLIC.parse(AK_TEMPLATES[ak.key_type], objectAttributes=attrs,
                                        nameAlg="sha256")
        parent = t.ESYS_TR.ENDORSEMENT if ak.hierarchy == "endorsement" else t.ESYS_TR.OWNER
        handle = self.call("TPM2_CreatePrimary (%s AK)" % ak.describe(), self.esys.create_primary,
                           None, template, parent)[0]
        self.flush.append(handle)
        return handle

    def read_pcrs(self, sel: Selection) -> PcrValues:
        """Every PCR of ``sel``: TPM2_PCR_Read returns at most 8 per call."""
        out: PcrValues = {}
        for _ in range(sum(len(p) for _, p in sel) + 1):
            missing = tpm2.missing_selection(sel, out)
            if not missing:
                return out
            _, got_sel, digests = self.call("TPM2_PCR_Read", self.esys.pcr_read,
                                            self.selection(missing))
            got = tpm2.decode_pcr_selection(Reader(_u(got_sel)))
            values = [bytes(d) for d in digests]
            if not values:
                raise TpmQuoteUnavailable("TPM2_PCR_Read returned nothing for %s"
                                          % tpm2.format_selection(missing))
            it = iter(values)
            for alg, pcrs in got:
                for pcr in pcrs:
                    out.setdefault(alg, {})[pcr] = next(it)
        raise TpmQuoteUnavailable("TPM2_PCR_Read did not return %s"
                                  % tpm2.format_selection(tpm2.missing_selection(sel, out)))


def get_tpm_quote(nonce: bytes = b"", pcrs: Iterable[int] = DEFAULT_PCRS,
                  banks: Sequence[int] | None = None, tcti: str | None = None,
                  ak: AttestationKey | None = None, ek: str | None = EK_AUTO) -> TpmQuote:
    """Quote ``pcrs`` of ``banks`` (default: every active bank) with ``nonce`` as extraData.

    ``tcti`` defaults to ``$TPM2TOOLS_TCTI``, else ``device:/dev/tpmrm0``.
    ``ek``: :data:`EK_AUTO` adds the EK certificate and public area when the
    TPM stores a certificate (a failure only sets ``ek_note``); a template
    name (:data:`cloud_sdk.tpm_ek.TEMPLATES`) adds that EK or fails; None adds none.
    With an EK, the certificates of the TPM's EK chain NV indices are added
    too (an unusable index: ``ek_chain_errors`` with :data:`EK_AUTO`, else
    :class:`cloud_sdk.tpm_ek.EkError`).
    Raises :class:`TpmQuoteUnavailable` without tpm2-pytss or a TPM (naming
    the TCTI), :class:`InputError` for a bad argument.
    """
    nonce = bytes(nonce)
    if len(nonce) > MAX_NONCE:
        raise InputError("nonce of %d bytes: a TPM takes at most %d as qualifying data"
                         % (len(nonce), MAX_NONCE))
    pcr_list = sorted(set(pcrs))
    if not pcr_list or pcr_list[0] < 0 or pcr_list[-1] > 23:
        raise InputError("PCRs %r: PCRs are 0-23" % (pcr_list,))
    ak = ak or AttestationKey()
    tcti = default_tcti(tcti)
    session = TpmSession(tcti)
    try:
        active = session.active_banks()
        use = list(banks) if banks is not None else active
        absent = [alg_name(a) for a in use if a not in active]
        if absent or not use:
            raise TpmQuoteUnavailable("%s: no active PCR bank %s (active: %s)" % (
                tcti, ", ".join(absent) or "selected",
                ", ".join(alg_name(a) for a in active)))
        sel: Selection = [(alg, pcr_list) for alg in use]
        handle, public, pem = session.load_ak(ak)
        for _ in range(ATTEMPTS):
            attested, signature = session.call(
                "TPM2_Quote", session.esys.quote, handle, session.selection(sel),
                session.t.TPM2B_DATA(nonce))
            attest = _u(attested)[2:]  # TPM2B_ATTEST: drop the size
            sig = _u(signature)
            values = session.read_pcrs(sel)
            parsed = tpm2_attest.parse_attest(attest, source="TPM2_Quote")
            sig_hash = tpm2_attest.parse_signature(sig, source="TPM2_Quote").hash_alg
            want = tpm2_attest.pcr_digest(hashlib_provider(), sig_hash, parsed.pcr_select,
                                          values)
            if want == parsed.pcr_digest:
                q = TpmQuote(attest=attest, signature=sig, ak_public_pem=pem, pcrs=values,
                             selection=parsed.pcr_select, nonce=nonce, ak_public=public,
                             ak=ak.describe(), tcti=tcti)
                if ek is not None:
                    _add_ek(session, q, ek)
                return q
        raise TpmQuoteUnavailable("%s: the PCRs kept changing between TPM2_Quote and "
                                  "TPM2_PCR_Read (%d attempts)" % (tcti, ATTEMPTS))
    except SpecError as e:
        raise TpmQuoteUnavailable("%s: %s" % (tcti, e.located())) from e
    finally:
        session.close()


def _add_ek(session: TpmSession, q: TpmQuote, ek: str) -> None:
    """Put the EK (public area, template, certificate) into ``q``."""
    from cloud_sdk import tpm_ek

    try:
        key = tpm_ek.read_ek(session, None if ek == EK_AUTO else ek,
                             require_certificate=ek == EK_AUTO)
    except (tpm_ek.EkError, TpmQuoteUnavailable, InputError) as e:
        if ek != EK_AUTO:
            raise
        q.ek_note = str(e)
        return
    q.ek_template = key.template.name
    q.ek_public = key.public.sized()
    q.ek_certificate_pem = key.certificate_pem
    from cloud_sdk import tpm_ek_nv

    chain = tpm_ek_nv.read_chain(session)
    if chain.errors and ek != EK_AUTO:
        raise tpm_ek.EkError("; ".join(chain.errors))
    q.ek_intermediates = chain.pems()
    q.ek_chain_errors = chain.errors
