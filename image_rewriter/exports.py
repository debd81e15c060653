"""What the rewriter exports for other verifiers: a Keylime runtime policy and CEL-JSON.

**Keylime runtime policy** (format version 1, as ``keylime/ima/ima.py``'s
``RUNTIME_POLICY_SCHEMA`` in Keylime 7.x defines it)::

    {"meta": {"version": 1, "generator": 3, "timestamp": "..."},
     "release": 0,
     "digests": {"/usr/bin/ls": ["<hex>"], ...},
     "excludes": ["<python regex>", ...],
     "keyrings": {}, "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1",
                             "dm_policy": null},
     "ima-buf": {}, "verification-keys": ""}

Keylime compares the file digest of each ``ima-ng`` / ``ima-sig`` entry with the list
under its path, so the digests must be made with the kernel's ``ima_hash`` algorithm.
``log_hash_alg`` is the algorithm of the template hashes in the IMA log (SHA-1 in every
kernel so far). Keylime adds the ``boot_aggregate`` itself from the quote. ``excludes``
are regular expressions Keylime joins with ``|`` and matches at the start of each path.

**CEL-JSON** for ``systemd-pcrlock`` and other CEL readers: one record per predicted agent
event, ``{"recnum", "pcr", "digests": [{"hashAlg", "digest"}], "content_type":
"pcclient_std", "content": {"event_type", "event_data"}}`` (``"mr"`` instead of
``"pcr"`` for CC MR indexes); encoded by :func:`shared_spec.cel.cel_json_records`.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from image_rewriter.errors import ExportError, RootfsReadError
from image_rewriter.rootfs_walk import check_include_path, top_includes
from shared_spec.algorithms import ALG_SHA384
from shared_spec.cel import cel_json_records
from shared_spec.errors import SpecError
from shared_spec.manifest import TYPE_FILE, is_excluded, parse_manifest, unescape
from shared_spec.tcg_log import TcgEvent

#: Keylime's runtime policy format version (``RUNTIME_POLICY_CURRENT_VERSION``).
KEYLIME_POLICY_VERSION = 1
#: ``RUNTIME_POLICY_GENERATOR.LegacyAllowList``: what ``keylime_policy create`` writes.
KEYLIME_GENERATOR = 3
KEYLIME_LOG_HASH_ALGS = ("sha1", "sha256", "sha384", "sha512")
INDEX_KINDS = ("pcr", "cc_mr")
_CHUNK = 1 << 20
_HEXDIGEST = re.compile(r"^[0-9a-f]+$")


def _digest_size(hash_alg: str) -> int:
    try:
        return hashlib.new(hash_alg).digest_size
    except ValueError:
        raise ExportError("unknown hash algorithm %r" % hash_alg) from None


def keylime_runtime_policy(files: Iterable[tuple[str, str]], hash_alg: str = "sha256",
                           excludes: Iterable[str] = (), meta: Mapping[str, Any] | None = None,
                           log_hash_alg: str = "sha1", release: int = 0) -> dict[str, Any]:
    """A Keylime runtime policy allowing ``files``: ``(guest path, hex digest)`` pairs.

    ``hash_alg`` is the algorithm the digests were made with (the kernel's ``ima_hash``);
    each digest is checked to have its length. ``excludes`` are Keylime regular
    expressions (see :func:`keylime_exclude_regex`). ``meta`` adds to or overrides the
    ``meta`` object (the default has a UTC timestamp; pass ``{"timestamp": ...}`` for a
    reproducible file). A path may appear more than once with different digests.

    Raises:
        ExportError: a relative path, a digest that is not lowercase hex of the right
            length, an excludes entry that is not a valid regular expression, or an
            unknown log hash algorithm.
    """
    size = _digest_size(hash_alg)
    if log_hash_alg not in KEYLIME_LOG_HASH_ALGS:
        raise ExportError("log_hash_alg %r is not one Keylime accepts (%s)"
                          % (log_hash_alg, ", ".join(KEYLIME_LOG_HASH_ALGS)))
    if release < 0:
        raise ExportError("release must be >= 0, not %d" % release)
    digests: dict[str, list[str]] = {}
    for path, hexdigest in files:
        if not path.startswith("/"):
            raise ExportError("path %r is not absolute" % path)
        if len(hexdigest) != 2 * size or not _HEXDIGEST.match(hexdigest):
            raise ExportError("%s: digest %r is not %d lowercase hex digits (%s)"
                              % (path, hexdigest[:24], 2 * size, hash_alg))
        entry = digests.setdefault(path, [])
        if hexdigest not in entry:
            entry.append(hexdigest)
    excl = list(excludes)
    for i, rx in enumerate(excl):
        try:
            re.compile(rx)
        except re.error as e:
            raise ExportError("excludes[%d] %r is not a regular expression: %s"
                              % (i, rx, e)) from None
    meta_obj: dict[str, Any] = {
        "version": KEYLIME_POLICY_VERSION,
        "generator": KEYLIME_GENERATOR,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    meta_obj.update(meta or {})
    return {
        "meta": meta_obj,
        "release": release,
        "digests": {p: sorted(digests[p]) for p in sorted(digests)},
        "excludes": excl,
        "keyrings": {},
        "ima": {"ignored_keyrings": [], "log_hash_alg": log_hash_alg, "dm_policy": None},
        "ima-buf": {},
        "verification-keys": "",
    }


def keylime_exclude_regex(pattern: str) -> str:
    """A cvmchain exclude pattern (``shared_spec.manifest.match_pattern``) as a Keylime
    regex: ``*`` and ``?`` stay within one path component, ``**`` crosses them, ``%XX``
    is the escaped byte, and a match also covers everything below it."""
    out = ["^"]
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "%" and i + 3 <= n:
            try:
                out.append(re.escape(unescape(pattern[i:i + 3]).decode("utf-8",
                                                                      "surrogateescape")))
            except SpecError:
                out.append(re.escape(c))
            else:
                i += 3
                continue
        else:
            out.append(re.escape(c))
        i += 1
    out.append("(/.*)?$")
    return "".join(out)


def _hash_path(path: bytes, hash_alg: str) -> str:
    h = hashlib.new(hash_alg)
    try:
        with open(path, "rb", buffering=0) as f:
            while True:
                chunk = f.read(_CHUNK)
                if not chunk:
                    break
                h.update(chunk)
    except OSError as e:
        raise ExportError("cannot read %s: %s" % (os.fsdecode(path), e.strerror)) from e
    return h.hexdigest()


def hash_tree_files(root_dir: str | Path, includes: Iterable[str],
                    excludes: Iterable[str] = (),
                    hash_alg: str = "sha256") -> Iterator[tuple[str, str]]:
    """``(guest path, hex digest)`` of every regular file under ``includes`` of a tree.

    The walk is the agent's (``image_rewriter.tree_manifest.walk_tree``): includes are
    absolute paths inside ``root_dir`` (one covered by another is walked once), exclude
    patterns skip a path and everything under it, symlinks are never followed, mount
    points are not crossed. Symlinks in an include's parent directories are resolved
    inside the tree (and refused when they leave it), so paths are the real ones IMA
    logs. Paths come out in byte order.

    Raises:
        ExportError: a path cannot be listed or read, or ``hash_alg`` is unknown.
    """
    _digest_size(hash_alg)
    root = os.fsencode(str(root_dir)).rstrip(b"/")
    excl = list(excludes)
    try:
        root_dev = os.lstat(root or b"/").st_dev
    except OSError as e:
        raise ExportError("cannot read %s: %s" % (root_dir, e.strerror)) from e
    def readlink(path: bytes) -> bytes | None:
        try:
            return os.readlink(root + path) if os.path.islink(root + path) else None
        except OSError:
            return None

    found: list[tuple[bytes, bytes]] = []
    try:
        tops = [(inc, check_include_path(inc, readlink)) for inc in top_includes(includes)]
    except RootfsReadError as e:
        raise ExportError(str(e)) from None
    for inc, parent in tops:
        if is_excluded(inc, excl):
            continue
        base = inc.rsplit(b"/", 1)[1]
        stack = [(parent.rstrip(b"/") + b"/" + base) if base else b"/"]
        while stack:
            rel = stack.pop()
            full = root + rel
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise ExportError("cannot read %s: %s" % (os.fsdecode(full), e.strerror)) from e
            if stat.S_ISREG(st.st_mode):
                found.append((rel, full))
            elif stat.S_ISDIR(st.st_mode) and st.st_dev == root_dev:
                try:
                    names = os.listdir(full)
                except OSError as e:
                    raise ExportError("cannot list %s: %s"
                                      % (os.fsdecode(full), e.strerror)) from e
                for name in names:
                    child = (rel if rel != b"/" else b"") + b"/" + name
                    if not is_excluded(child, excl):
                        stack.append(child)
    cache: dict[tuple[int, int], str] = {}
    for rel, full in sorted(found):
        st = os.lstat(full)
        key = (st.st_dev, st.st_ino)
        digest = cache.get(key)
        if digest is None:
            digest = cache[key] = _hash_path(full, hash_alg)
        yield os.fsdecode(rel), digest


def manifest_files(manifest: bytes, source: str = "manifest") -> list[tuple[str, str]]:
    """``(path, SHA-384 hex)`` of the regular files of a rootfs manifest."""
    try:
        entries = parse_manifest(manifest, source)
    except SpecError as e:
        raise ExportError("%s: %s" % (source, e)) from None
    return [(os.fsdecode(e.path), str(e.content)) for e in entries
            if e.type == TYPE_FILE and e.content is not None]


def keylime_policy_from_manifest(manifest: bytes, excludes: Iterable[str] = (),
                                 meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A Keylime runtime policy of the files in a rootfs manifest.

    The manifest holds SHA-384 content digests, so the policy matches an IMA log only when
    the kernel hashes files with SHA-384 (``ima_hash=sha384``, which needs SHA-384 built
    into the kernel; :func:`hash_tree_files` gives digests of any algorithm). ``excludes``
    are cvmchain exclude patterns, written out as Keylime regexes.
    """
    return keylime_runtime_policy(manifest_files(manifest), "sha384",
                                  [keylime_exclude_regex(p) for p in excludes], meta)


# --- CEL-JSON ---------------------------------------------------------------------------------


def cel_json_for_events(events: Iterable[Any], index_kind: str = "pcr") -> list[dict[str, Any]]:
    """CEL-JSON records of ``events`` (TCG events: ``index``, ``event_type``, ``digests``
    as ``[(alg id, bytes)]``, ``data``), numbered from 0.

    ``index_kind`` is ``"pcr"`` (the records carry ``"pcr"``, what systemd-pcrlock reads)
    or ``"cc_mr"`` (``"mr"``: a CC MR index, 1..4 = RTMR0..3).
    """
    if index_kind not in INDEX_KINDS:
        raise ExportError("index_kind must be one of %s, not %r"
                          % (", ".join(INDEX_KINDS), index_kind))
    evs = list(events)
    for n, ev in enumerate(evs):
        for attr in ("index", "event_type", "digests", "data"):
            if not hasattr(ev, attr):
                raise ExportError("event %d has no %s" % (n, attr))
    records: list[dict[str, Any]] = cel_json_records(evs, index_kind)
    return records


def reference_events(ref: Any, index_kind: str) -> list[TcgEvent]:
    """The predicted agent events of a reference (``cloud_sdk.reference.Reference``) as TCG
    events at its PCR (every predicted bank) or its CC MR (SHA-384)."""
    if index_kind == "pcr":
        if ref.pcr_index is None:
            raise ExportError("the reference predicts no PCR (roots = tdx)")
        return [TcgEvent(ref.pcr_index, e.event_type, sorted(e.digests.items()), e.event_data)
                for e in ref.events]
    if index_kind == "cc_mr":
        if ref.cc_mr_index is None:
            raise ExportError("the reference predicts no CC MR (roots = tpm)")
        out = []
        for n, e in enumerate(ref.events):
            if ALG_SHA384 not in e.digests:
                raise ExportError("reference event %d has no sha384 digest" % n)
            out.append(TcgEvent(ref.cc_mr_index, e.event_type, [(ALG_SHA384,
                                                                  e.digests[ALG_SHA384])],
                                e.event_data))
        return out
    raise ExportError("index_kind must be one of %s, not %r" % (", ".join(INDEX_KINDS),
                                                               index_kind))


def cel_json_for_reference(ref: Any, index_kind: str | None = None) -> list[dict[str, Any]]:
    """CEL-JSON of a reference's predicted agent events: at its PCR when it predicts one
    (what systemd-pcrlock can use), else at its CC MR; ``index_kind`` forces one."""
    kind = index_kind or ("pcr" if ref.pcr_index is not None else "cc_mr")
    return cel_json_for_events(reference_events(ref, kind), kind)
