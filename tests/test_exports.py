"""Verifier exports: the Keylime runtime policy of a real tree and CEL-JSON of agent events."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from cloud_sdk.reference import Reference
from image_rewriter import exports
from image_rewriter.errors import ExportError
from image_rewriter.reference_builder import build_reference
from image_rewriter.tree_manifest import tree_manifest
from initrd_agent.config import AgentConfig
from shared_spec import agent_events as ae
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384, alg_from_name
from shared_spec.cel import CEL_PCCLIENT_STD, parse_cel_json
from shared_spec.event_types import EV_EVENT_TAG
from shared_spec.tcg_log import TcgEvent

# What Keylime 7.14 (keylime/ima/ima.py, RUNTIME_POLICY_SCHEMA, format version 1) requires;
# jsonschema is not a dependency of this project, so the constraints are checked by hand.
KEYLIME_REQUIRED = {"meta", "release", "digests", "excludes", "keyrings", "ima", "ima-buf",
                    "verification-keys"}
KEYLIME_DIGEST = re.compile(r"^[0-9a-f]{40,128}$")


def assert_keylime_schema(policy: dict[str, Any]) -> None:
    assert KEYLIME_REQUIRED <= set(policy)
    meta = policy["meta"]
    assert isinstance(meta["version"], int) and meta["version"] >= 0
    assert isinstance(meta["generator"], int) and 0 <= meta["generator"] <= 3
    assert isinstance(meta.get("timestamp", ""), str)
    assert isinstance(policy["release"], int) and policy["release"] >= 0
    for key in ("digests", "keyrings", "ima-buf"):
        assert isinstance(policy[key], dict)
        for values in policy[key].values():
            assert isinstance(values, list) and len(values) >= 1
            assert all(isinstance(v, str) and KEYLIME_DIGEST.match(v) for v in values)
    assert all(isinstance(x, str) for x in policy["excludes"])
    ima = policy["ima"]
    assert isinstance(ima["ignored_keyrings"], list)
    assert ima["log_hash_alg"] in ("sha1", "sha256", "sha384", "sha512")
    assert ima["dm_policy"] is None
    assert isinstance(policy["verification-keys"], str)
    # Keylime joins the excludes into one regex
    re.compile("(" + ")|(".join(policy["excludes"]) + ")")


def make_tree(root: Path) -> dict[str, bytes]:
    """A small guest tree; returns the regular files a walk of /usr and /etc must find."""
    files = {
        "/usr/bin/tool": b"#!/bin/sh\necho tool\n",
        "/usr/lib/libx.so.1": os.urandom(3000),
        "/usr/lib/sub/deep.py": b"print('deep')\n",
        "/usr/share/doc/readme": b"doc\n",
        "/etc/hostname": b"guest\n",
        "/etc/empty": b"",
    }
    for path, data in files.items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "usr/bin/link").symlink_to("tool")
    os.link(root / "usr/bin/tool", root / "usr/bin/hard")
    files["/usr/bin/hard"] = files["/usr/bin/tool"]
    (root / "usr/lib/cache").mkdir()
    (root / "usr/lib/cache/skip.bin").write_bytes(b"skipped")
    (root / "var").mkdir()
    (root / "var/log").write_bytes(b"not included")
    (root / "bin").symlink_to("usr/bin")
    return files


def test_hash_tree_files_and_keylime_policy(tmp_path: Path) -> None:
    files = make_tree(tmp_path)
    excludes = ["/usr/lib/cache", "/usr/share/**"]
    got = list(exports.hash_tree_files(tmp_path, ["/usr", "/etc", "/usr/lib"], excludes))
    want = {p: hashlib.sha256(d).hexdigest() for p, d in files.items()
            if not p.startswith("/usr/share/")}
    assert dict(got) == want
    assert [p for p, _ in got] == sorted(want)
    # an include reached through a relative symlink in the tree is logged by its real path
    via_link = dict(exports.hash_tree_files(tmp_path, ["/bin/tool"], hash_alg="sha384"))
    assert via_link == {"/usr/bin/tool": hashlib.sha384(files["/usr/bin/tool"]).hexdigest()}

    policy = exports.keylime_runtime_policy(got, "sha256",
                                            [exports.keylime_exclude_regex(p) for p in excludes],
                                            meta={"timestamp": "2025-01-01T00:00:00+00:00"})
    assert_keylime_schema(policy)
    assert policy["digests"] == {p: [h] for p, h in want.items()}
    assert policy["meta"] == {"version": 1, "generator": 3,
                              "timestamp": "2025-01-01T00:00:00+00:00"}
    assert json.loads(json.dumps(policy)) == policy
    rx = re.compile("(" + ")|(".join(policy["excludes"]) + ")")
    assert rx.match("/usr/lib/cache/skip.bin") and rx.match("/usr/lib/cache")
    assert rx.match("/usr/share/doc/readme")
    assert not rx.match("/usr/lib/cachex") and not rx.match("/usr/lib/libx.so.1")


def test_keylime_policy_from_manifest(tmp_path: Path) -> None:
    files = make_tree(tmp_path)
    manifest = tree_manifest(tmp_path, ["/usr", "/etc"], ["/usr/lib/cache"])
    policy = exports.keylime_policy_from_manifest(manifest, ["/usr/lib/cache"])
    assert_keylime_schema(policy)
    assert policy["digests"] == {p: [hashlib.sha384(d).hexdigest()] for p, d in files.items()}
    assert policy["excludes"] == [exports.keylime_exclude_regex("/usr/lib/cache")]


def test_keylime_exclude_regex() -> None:
    rx = re.compile(exports.keylime_exclude_regex("/var/*/x?y%2Cz"))
    assert rx.match("/var/a/x1y,z") and rx.match("/var/a/x1y,z/below")
    assert not rx.match("/var/a/b/x1y,z") and not rx.match("/var/a/x/y,z")
    assert re.compile(exports.keylime_exclude_regex("/opt/**.log")).match("/opt/a/b/c.log")


def test_keylime_policy_errors() -> None:
    good = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(ExportError, match="not absolute"):
        exports.keylime_runtime_policy([("usr/bin/x", good)])
    with pytest.raises(ExportError, match="64 lowercase hex"):
        exports.keylime_runtime_policy([("/x", good[:-2])])
    with pytest.raises(ExportError, match="64 lowercase hex"):
        exports.keylime_runtime_policy([("/x", good.upper())])
    with pytest.raises(ExportError, match="regular expression"):
        exports.keylime_runtime_policy([], excludes=["(unclosed"])
    with pytest.raises(ExportError, match="unknown hash"):
        exports.keylime_runtime_policy([], hash_alg="nohash")
    other = hashlib.sha256(b"y").hexdigest()
    two = exports.keylime_runtime_policy([("/x", good), ("/x", other), ("/x", good)])
    assert two["digests"] == {"/x": sorted([good, other])}


def _agent_events(index: int) -> list[TcgEvent]:
    out = []
    for desc in (ae.config_descriptor("ab" * 48), ae.ima_policy_descriptor("cd" * 48),
                 ae.LEAVE_INITRD):
        data = ae.encode_event_data(desc)
        digests = [(alg, hashlib.new(name, data).digest())
                   for alg, name in ((ALG_SHA1, "sha1"), (ALG_SHA256, "sha256"),
                                     (ALG_SHA384, "sha384"))]
        out.append(TcgEvent(index, EV_EVENT_TAG, digests, data))
    return out


@pytest.mark.parametrize(("index_kind", "key"), [("pcr", "pcr"), ("cc_mr", "mr")])
def test_cel_json_for_events(index_kind: str, key: str) -> None:
    events = _agent_events(15 if index_kind == "pcr" else 4)
    records = exports.cel_json_for_events(events, index_kind)
    text = json.dumps(records)
    back = parse_cel_json(json.loads(text), "cel.json")
    assert [r[key] for r in records] == [e.index for e in events]
    assert [r["recnum"] for r in records] == list(range(len(events)))
    for rec, raw, ev in zip(back, records, events, strict=True):
        assert rec.content_type == CEL_PCCLIENT_STD and rec.event_type == EV_EVENT_TAG
        assert rec.data == ev.data
        assert {d["hashAlg"] for d in raw["digests"]} == {"sha1", "sha256", "sha384"}
        for d in raw["digests"]:
            assert bytes.fromhex(d["digest"]) == hashlib.new(d["hashAlg"], ev.data).digest()
            assert alg_from_name(d["hashAlg"]) is not None
    with pytest.raises(ExportError, match="index_kind"):
        exports.cel_json_for_events(events, "nv")
    with pytest.raises(ExportError, match="event 0 has no index"):
        exports.cel_json_for_events([object()])


def test_cel_json_for_reference() -> None:
    policy = b"measure func=BPRM_CHECK\n"
    config = AgentConfig(ima_policy="/etc/cvmchain/ima-policy")
    desc = ae.rootfs_tree_descriptor("ef" * 48)
    ref = build_reference(config, policy, {"mode": "tree"}, desc, {"output": "x.qcow2"})
    ref = Reference.from_json(json.loads(json.dumps(ref.to_json())))
    pcr = exports.cel_json_for_reference(ref)
    assert [r["pcr"] for r in pcr] == [config.tpm_pcr] * len(ref.events)
    mr = exports.cel_json_for_reference(ref, "cc_mr")
    assert {r["mr"] for r in mr} == {ref.cc_mr_index}
    for records in (pcr, mr):
        back = parse_cel_json(records)
        assert [r.data for r in back] == [e.event_data for e in ref.events]
        for rec in back:
            for alg, digest in rec.digests:
                name = {ALG_SHA1: "sha1", ALG_SHA256: "sha256", ALG_SHA384: "sha384"}.get(alg)
                if name is not None:
                    assert digest == hashlib.new(name, rec.data).digest()
    assert all([d["hashAlg"] for d in r["digests"]] == ["sha384"] for r in mr)
    # the agent's ima-policy event names the policy's own SHA-384
    wanted = ae.encode_event_data(ae.ima_policy_descriptor(hashlib.sha384(policy).hexdigest()))
    assert wanted in [bytes.fromhex(r["content"]["event_data"]) for r in pcr]
