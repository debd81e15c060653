"""Collect the evidence of this machine into one :class:`~cloud_sdk.evidence.Evidence` bundle.

Order matters, because IMA keeps measuring while we read: the registers are
read first, then the quote, then the logs. A log can therefore only be ahead
of the registers, never behind, and the chain verifier accepts an IMA list
whose prefix accounts for the register.

Files read, relative to the backend's root (``/`` on a live system):

=========================================================  =====================
``run/cvmchain/ccel.log``, ``tpm.log``, ``rootfs.manifest``  the agent's logs
``sys/kernel/security/ima/binary_runtime_measurements``     IMA (preferred)
``sys/kernel/security/ima/ascii_runtime_measurements``      IMA (fallback)
``sys/kernel/security/integrity/ima/...``                   IMA on newer kernels
``proc/cmdline``                                            kernel command line
=========================================================  =====================

plus what the backend supplies (registers, firmware log, quote).

On a TPM, when tpm2-pytss is installed (:mod:`cloud_sdk.tpm_quote`), the
bundle also holds a TPM quote: blob ``tpm_quote``, a ``cvmchain-tpm-quote/1``
JSON file of PCRs 0-7, 10 and 15 in every active bank, signed by the default
attestation key (an ECC P-256 primary under the endorsement hierarchy), with
the nonce as qualifying data. Without tpm2-pytss, or when the TPM refuses,
the bundle is collected without it and ``notes`` says why.
"""

from __future__ import annotations

import copy
import platform
from pathlib import Path

from cloud_sdk.backends import (
    Backend,
    Blob,
    OfflineBackend,
    TdxBackend,
    TpmBackend,
    read_file,
    read_optional,
    report_data_for,
)
from cloud_sdk.errors import BackendError, CvmchainError
from cloud_sdk.evidence import BLOB_KINDS, Evidence
from shared_spec.registers import INDEX_CC_MR

#: blob of a TPM quote file (cloud_sdk.tpm_quote); Evidence.load keeps it once BLOB_KINDS has it
TPM_QUOTE_BLOB = "tpm_quote"

AGENT_DIR = "run/cvmchain"
#: agent file name -> evidence blob name
AGENT_FILES = {"ccel.log": "agent_ccel_log", "tpm.log": "agent_tpm_log",
               "rootfs.manifest": "rootfs_manifest"}
IMA_DIRS = ("sys/kernel/security/ima", "sys/kernel/security/integrity/ima")
IMA_BINARY = "binary_runtime_measurements"
IMA_ASCII = "ascii_runtime_measurements"
CMDLINE = "proc/cmdline"

#: blob name for the kernel command line, once evidence.py knows it
CMDLINE_BLOB = "kernel_cmdline"


def _guest_path(root: Path, path: str) -> str:
    """``path`` as the machine names it (without a test root prefix)."""
    try:
        return "/" + str(Path(path).relative_to(root))
    except ValueError:
        return path


def _add(ev: Evidence, name: str, blob: Blob, root: Path | None) -> None:
    ev.blobs[name] = blob.data
    ev.sources[name] = _guest_path(root, blob.source) if root is not None else blob.source


def ima_directory(root: Path) -> Path | None:
    """The securityfs IMA directory under ``root``, if IMA is enabled."""
    for rel in IMA_DIRS:
        p = root / rel
        if p.is_dir():
            return p
    return None


def read_ima(root: Path) -> tuple[str, Blob] | None:
    """(blob name, IMA list): the binary list when present, else the ascii one."""
    d = ima_directory(root)
    if d is None:
        return None
    for fname, blob_name in ((IMA_BINARY, "ima_binary"), (IMA_ASCII, "ima_ascii")):
        p = d / fname
        if p.exists():
            return blob_name, Blob(read_file(p, "the IMA measurement list"), str(p))
    return None


def _from_bundle(backend: OfflineBackend, nonce: bytes | None) -> Evidence:
    if nonce is not None and backend.evidence.nonce != nonce:
        raise BackendError("%s: the bundle was collected with nonce %s, not %s"
                           % (backend.source, (backend.evidence.nonce or b"").hex() or "none",
                              nonce.hex()))
    ev = copy.deepcopy(backend.evidence)
    ev.notes.append("re-exported from %s" % backend.source)
    return ev


def _add_tpm_quote(ev: Evidence, backend: TpmBackend, nonce: bytes | None) -> None:
    """A TPM quote through tpm2-pytss into blob ``tpm_quote``, when it can be made."""
    from cloud_sdk import tpm_quote

    if not tpm_quote.available():
        ev.notes.append("no TPM quote: tpm2-pytss is not installed (optional; %s)"
                        % tpm_quote.INSTALL_HINT)
        return
    if nonce is not None and len(nonce) > tpm_quote.MAX_NONCE:
        ev.notes.append("no TPM quote: the nonce has %d bytes, a TPM takes at most %d"
                        % (len(nonce), tpm_quote.MAX_NONCE))
        return
    try:
        tcti = tpm_quote.tcti_for_backend(backend)
        q = tpm_quote.get_tpm_quote(nonce or b"", tcti=tcti)
    except CvmchainError as e:
        ev.notes.append("no TPM quote: %s" % e)
        return
    ev.blobs[TPM_QUOTE_BLOB] = q.dumps()
    ev.sources[TPM_QUOTE_BLOB] = tcti
    ev.notes.append("TPM quote by the AK %s, extraData = %s" % (
        q.ak, "the nonce" if nonce else "empty (no nonce)"))


def collect_evidence(backend: Backend, nonce: bytes | None = None, include_ima: bool = True,
                     include_quote: bool = True) -> Evidence:
    """Registers, firmware log, agent logs, IMA list, command line and a quote.

    The quote is a TDX quote, or on a TPM with tpm2-pytss installed a TPM quote
    (blob ``tpm_quote``, extraData = ``nonce``; optional: its absence is a note).

    The quote's REPORTDATA is SHA-512(``nonce``) (:func:`report_data_for`);
    without a nonce it is 64 zero bytes. When a nonce is given a quote is
    required and its absence is an error; without one, a missing quote is
    recorded in ``notes``. The result has the ``cvmchain-evidence/1`` schema
    and verifies with ``cvmchain verify --evidence``.
    """
    if isinstance(backend, OfflineBackend):
        return _from_bundle(backend, nonce)
    root = backend.root if backend.root is not None else Path("/")
    ev = Evidence(host=platform.node(), nonce=nonce)
    ev.notes.append("backend: %s (%s)" % (backend.name, backend.index_kind))

    # 1. registers, before any log: logs may only run ahead of them
    ev.registers[backend.index_kind] = backend.read_registers()
    if isinstance(backend, TdxBackend) and backend.last_tdreport is not None:
        ev.blobs["tdreport"] = backend.last_tdreport
        ev.sources["tdreport"] = _guest_path(root, str(backend.device))

    # 2. the quote
    if include_quote and backend.index_kind == INDEX_CC_MR:
        try:
            report = backend.get_report(report_data_for(nonce))
        except BackendError as e:
            if nonce is not None:
                raise
            ev.notes.append("no quote: %s" % e)
        else:
            ev.blobs["quote"] = report.data
            ev.sources["quote"] = _guest_path(root, report.source)
            ev.notes.append("quote REPORTDATA = %s" % ("SHA-512(nonce)" if nonce is not None
                                                      else "64 zero bytes (no nonce)"))

    if include_quote and isinstance(backend, TpmBackend):
        _add_tpm_quote(ev, backend, nonce)

    # 3. logs: firmware, agent, IMA
    fw = backend.firmware_blobs()
    if not fw:
        ev.notes.append("no firmware event log found")
    for name, blob in fw.items():
        _add(ev, name, blob, root)
    agent_log = "agent_ccel_log" if backend.index_kind == INDEX_CC_MR else "agent_tpm_log"
    for fname, name in AGENT_FILES.items():
        p = root / AGENT_DIR / fname
        agent = read_optional(p, "the cvmchain agent's %s" % fname)
        if agent is not None:
            _add(ev, name, agent, root)
        elif name in (agent_log, "rootfs_manifest"):
            ev.notes.append("absent: /%s/%s" % (AGENT_DIR, fname))
    if include_ima:
        ima = read_ima(root)
        if ima is None:
            ev.notes.append("no IMA measurement list (IMA not enabled, or securityfs not "
                            "mounted at /sys/kernel/security)")
        else:
            _add(ev, ima[0], ima[1], root)

    # 4. the kernel command line
    cmdline = read_optional(root / CMDLINE, "the kernel command line")
    if cmdline is not None:
        text = cmdline.data.rstrip(b"\n\0")
        if CMDLINE_BLOB in BLOB_KINDS:
            _add(ev, CMDLINE_BLOB, Blob(text, cmdline.source), root)
        else:
            ev.notes.append("kernel command line: %s" % text.decode("utf-8", "replace"))
    return ev
