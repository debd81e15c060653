"""The reference file (``<image>.reference.json``): what the rewriter predicts.

Schema ``cvmchain-reference/1``::

    {
      "schema": "cvmchain-reference/1",
      "generator": "cvmchain 0.1.0",
      "image": {"output": "...qcow2", "kernel_cmdline_add": ["ima_template=ima-ng", ...]},
      "agent_config": {"text": "<agent.conf>", "sha384": "<hex>"},
      "ima_policy": {"sha384": "<hex>", "text": "<policy>"} | null,
      "rootfs": {"mode": "tree", "manifest_sha384": "<hex>", "entries": 1234,
                 "manifest_file": "<image>.manifest.gz"} | {"mode": "identity", ...},
      "events": [{"descriptor": "cvmchain:...", "event_type": 6,
                  "event_data": "<hex>",
                  "digests": {"sha1": "..", "sha256": "..", "sha384": ".."}}],
      "registers": {
        "cc_mr": {"index": 4, "label": "MR4 (RTMR3)", "initial": "<hex>", "sha384": "<hex>"},
        "pcr": {"index": 15, "initial": {"sha256": ..}, "values": {"sha1": .., "sha256": ..}}
      }
    }

The predicted register values assume the register starts at its reset value
(zero for RTMR3 and PCR 15, which firmware does not touch) and that only the
agent extends it before the evidence is collected.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_sdk.errors import InputError
from cloud_sdk.hashing import hashlib_provider
from shared_spec.algorithms import alg_from_name, alg_name
from shared_spec.registers import cc_mr_label

SCHEMA = "cvmchain-reference/1"


@dataclass
class ReferenceEvent:
    """One agent event as predicted: descriptor, event data and digests per bank."""

    descriptor: str
    event_type: int
    event_data: bytes
    digests: dict[int, bytes]

    def to_json(self) -> dict[str, Any]:
        return {"descriptor": self.descriptor, "event_type": self.event_type,
                "event_data": self.event_data.hex(),
                "digests": {alg_name(a): d.hex() for a, d in sorted(self.digests.items())}}


@dataclass
class Reference:
    """A parsed reference file."""

    events: list[ReferenceEvent]
    agent_config: str
    rootfs: dict[str, Any]
    ima_policy: dict[str, Any] | None
    cc_mr_index: int | None = None
    cc_mr_initial: bytes | None = None
    cc_mr_value: bytes | None = None
    pcr_index: int | None = None
    pcr_values: dict[int, bytes] = field(default_factory=dict)
    image: dict[str, Any] = field(default_factory=dict)
    generator: str = ""

    def to_json(self) -> dict[str, Any]:
        regs: dict[str, Any] = {}
        if self.cc_mr_index is not None and self.cc_mr_value is not None:
            regs["cc_mr"] = {"index": self.cc_mr_index, "label": cc_mr_label(self.cc_mr_index),
                             "initial": (self.cc_mr_initial or b"\0" * 48).hex(),
                             "sha384": self.cc_mr_value.hex()}
        if self.pcr_index is not None:
            regs["pcr"] = {"index": self.pcr_index,
                           "values": {alg_name(a): v.hex()
                                      for a, v in sorted(self.pcr_values.items())}}
        return {
            "schema": SCHEMA,
            "generator": self.generator,
            "image": self.image,
            "agent_config": {"text": self.agent_config,
                             "sha384": hashlib_provider().digest(
                                 0x000C, self.agent_config.encode()).hex()},
            "ima_policy": self.ima_policy,
            "rootfs": self.rootfs,
            "events": [e.to_json() for e in self.events],
            "registers": regs,
        }

    def save(self, path: str | Path) -> None:
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(p)

    @classmethod
    def from_json(cls, doc: Any, source: str = "<reference>") -> "Reference":
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise InputError("%s: not a %s file" % (source, SCHEMA))
        try:
            events = []
            for i, e in enumerate(doc["events"]):
                digests = {}
                for name, value in e["digests"].items():
                    alg = alg_from_name(name)
                    if alg is None:
                        raise InputError("%s: events[%d].digests: unknown algorithm %r"
                                         % (source, i, name))
                    digests[alg] = bytes.fromhex(value)
                events.append(ReferenceEvent(str(e["descriptor"]), int(e["event_type"]),
                                             bytes.fromhex(e["event_data"]), digests))
            ref = cls(events, str(doc["agent_config"]["text"]), dict(doc["rootfs"]),
                      doc.get("ima_policy"), image=dict(doc.get("image") or {}),
                      generator=str(doc.get("generator", "")))
            regs = doc.get("registers") or {}
            if "cc_mr" in regs:
                ref.cc_mr_index = int(regs["cc_mr"]["index"])
                ref.cc_mr_initial = bytes.fromhex(regs["cc_mr"].get("initial", "00" * 48))
                ref.cc_mr_value = bytes.fromhex(regs["cc_mr"]["sha384"])
            if "pcr" in regs:
                ref.pcr_index = int(regs["pcr"]["index"])
                for name, value in regs["pcr"]["values"].items():
                    alg = alg_from_name(name)
                    if alg is not None:
                        ref.pcr_values[alg] = bytes.fromhex(value)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError("%s: malformed reference: %s: %s"
                             % (source, type(e).__name__, e)) from e
        return ref

    @classmethod
    def load(cls, path: str | Path) -> "Reference":
        try:
            doc = json.loads(Path(path).read_text())
        except OSError as e:
            raise InputError("%s: cannot read: %s" % (path, e.strerror)) from e
        except json.JSONDecodeError as e:
            raise InputError("%s: not JSON: line %d: %s" % (path, e.lineno, e.msg)) from e
        return cls.from_json(doc, str(path))
