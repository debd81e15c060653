"""The evidence bundle: everything a remote verifier needs, in one JSON file.

A bundle is self-describing: a schema tag, where and when it was collected,
the live register values, and every log as a base64 blob with its source
path. ``Evidence.load`` refuses a bundle it does not understand with an
:class:`InputError` naming the field.
"""

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_sdk.errors import InputError
from shared_spec.algorithms import alg_from_name, alg_name

SCHEMA = "cvmchain-evidence/1"

#: Names of the blobs a bundle may carry, and what each is.
BLOB_KINDS = {
    "tpm_eventlog": "TPM firmware event log (binary_bios_measurements)",
    "ccel_table": "ACPI CCEL table",
    "ccel_data": "CCEL log area",
    "agent_tpm_log": "cvmchain agent log, PCR indexed (/run/cvmchain/tpm.log)",
    "agent_ccel_log": "cvmchain agent log, CC MR indexed (/run/cvmchain/ccel.log)",
    "rootfs_manifest": "cvmchain rootfs manifest (/run/cvmchain/rootfs.manifest)",
    "ima_binary": "IMA binary_runtime_measurements",
    "ima_ascii": "IMA ascii_runtime_measurements",
    "quote": "TDX quote",
    "tdreport": "TDX TDREPORT",
    "kernel_cmdline": "the kernel command line (/proc/cmdline)",
    "tpm_quote": "TPM quote (cvmchain-tpm-quote/1 JSON, cloud_sdk.tpm_quote)",
}

Registers = dict[str, dict[int, dict[int, bytes]]]


@dataclass
class Evidence:
    """Live register values plus logs, as collected on one machine at one time.

    ``registers`` is ``{"pcr" | "cc_mr": {index: {alg id: value}}}``.
    """

    registers: Registers = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    collected_at: float = field(default_factory=time.time)
    host: str = ""
    nonce: bytes | None = None
    notes: list[str] = field(default_factory=list)

    def blob(self, name: str) -> bytes | None:
        return self.blobs.get(name)

    def to_json(self) -> dict[str, Any]:
        regs: dict[str, Any] = {}
        for kind, by_index in self.registers.items():
            regs[kind] = {str(i): {alg_name(a): v.hex() for a, v in banks.items()}
                          for i, banks in sorted(by_index.items())}
        return {
            "schema": SCHEMA,
            "collected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.collected_at)),
            "host": self.host,
            "nonce": None if self.nonce is None else self.nonce.hex(),
            "registers": regs,
            "blobs": {k: {"source": self.sources.get(k, ""), "size": len(v),
                          "base64": base64.b64encode(v).decode()}
                      for k, v in sorted(self.blobs.items())},
            "notes": self.notes,
        }

    def save(self, path: str | Path) -> None:
        """Write the bundle atomically."""
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(p)

    @classmethod
    def from_json(cls, doc: Any, source: str = "<bundle>") -> "Evidence":
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise InputError("%s: not a %s bundle (schema %r)"
                             % (source, SCHEMA, doc.get("schema") if isinstance(doc, dict)
                                else type(doc).__name__))
        ev = cls(host=str(doc.get("host", "")), notes=list(doc.get("notes", [])))
        stamp = doc.get("collected_at")
        if isinstance(stamp, str):
            try:
                ev.collected_at = time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
            except ValueError as e:
                raise InputError("%s: collected_at %r is not ISO 8601 UTC" % (source, stamp)) \
                    from e
        if doc.get("nonce"):
            ev.nonce = _hex(doc["nonce"], source, "nonce")
        for kind, by_index in (doc.get("registers") or {}).items():
            if kind not in ("pcr", "cc_mr"):
                raise InputError("%s: registers.%s: unknown register kind" % (source, kind))
            out: dict[int, dict[int, bytes]] = {}
            for index, banks in by_index.items():
                for name, value in banks.items():
                    alg = alg_from_name(name)
                    if alg is None:
                        raise InputError("%s: registers.%s.%s: unknown algorithm %r"
                                         % (source, kind, index, name))
                    out.setdefault(int(index), {})[alg] = _hex(
                        value, source, "registers.%s.%s.%s" % (kind, index, name))
            ev.registers[kind] = out
        for name, blob in (doc.get("blobs") or {}).items():
            if name not in BLOB_KINDS:
                ev.notes.append("unknown blob %r ignored" % name)
                continue
            try:
                ev.blobs[name] = base64.b64decode(blob["base64"], validate=True)
            except (KeyError, TypeError, binascii.Error) as e:
                raise InputError("%s: blobs.%s: bad base64: %s" % (source, name, e)) from e
            ev.sources[name] = str(blob.get("source", ""))
        return ev

    @classmethod
    def load(cls, path: str | Path) -> "Evidence":
        try:
            doc = json.loads(Path(path).read_text())
        except OSError as e:
            raise InputError("%s: cannot read: %s" % (path, e.strerror)) from e
        except json.JSONDecodeError as e:
            raise InputError("%s: not JSON: line %d column %d: %s"
                             % (path, e.lineno, e.colno, e.msg)) from e
        return cls.from_json(doc, str(path))


def _hex(value: Any, source: str, field_name: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError) as e:
        raise InputError("%s: %s: not hex" % (source, field_name)) from e
