"""What every rootfs manifest reader shares: the include list, the exclude rule, path checks.

The agent (``initrd_agent/agent/tree.py``) walks each include path that no other include
covers, skips an include matched by an exclude pattern, and skips an excluded child together
with everything under it. It resolves include paths with the kernel inside the initrd, so an
absolute symlink (or one climbing above the root) in a parent component of an include would
send it outside the guest's root: the readers here refuse such includes instead of guessing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from image_rewriter.errors import RootfsReadError
from shared_spec.manifest import is_excluded

MAX_SYMLINKS = 40


def top_includes(includes: Iterable[str | bytes]) -> list[bytes]:
    """Absolute include paths, normalised, without those another include covers (sorted)."""
    incs = []
    for inc in includes:
        rel = inc.encode() if isinstance(inc, str) else bytes(inc)
        if not rel.startswith(b"/"):
            raise RootfsReadError("include path %r is not absolute" % inc)
        incs.append(rel.rstrip(b"/") or b"/")
    top: list[bytes] = []
    for rel in sorted(incs):
        if any(rel == t or rel.startswith(t + b"/") or t == b"/" for t in top):
            continue
        top.append(rel)
    return top


def check_include_path(include: bytes, readlink: Callable[[bytes], bytes | None]) -> bytes:
    """Refuse an include whose parent components go through a symlink leaving the root.

    ``readlink(path)`` gives the target of ``path`` (a resolved, absolute path inside the
    guest) when it is a symlink, else None (also when it does not exist).

    Returns:
        The include's parent directory with its symlinks resolved (as the kernel would).
    """
    parts = [p for p in include.split(b"/")[:-1] if p]
    resolved: list[bytes] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == b".":
            continue
        if name == b"..":
            if not resolved:
                raise RootfsReadError("include %s climbs above the root"
                                      % include.decode(errors="replace"))
            resolved.pop()
            continue
        path = b"/" + b"/".join([*resolved, name])
        target = readlink(path)
        if target is None:
            resolved.append(name)
            continue
        hops += 1
        if hops > MAX_SYMLINKS:
            raise RootfsReadError("include %s: too many levels of symlinks"
                                  % include.decode(errors="replace"))
        if target.startswith(b"/"):
            raise RootfsReadError(
                "include %s goes through %s, a symlink to the absolute path %s, which the agent "
                "would resolve against the initrd: list the target path instead"
                % (include.decode(errors="replace"), path.decode(errors="replace"),
                   target.decode(errors="replace")))
        depth = len(resolved)
        for t in target.split(b"/"):
            if t == b"..":
                depth -= 1
                if depth < 0:
                    raise RootfsReadError(
                        "include %s goes through %s, a symlink to %s, which leaves the root"
                        % (include.decode(errors="replace"), path.decode(errors="replace"),
                           target.decode(errors="replace")))
            elif t and t != b".":
                depth += 1
        parts = [p for p in target.split(b"/") if p] + parts
    return b"/" + b"/".join(resolved)


class ExcludeFilter:
    """The agent's exclude rule for a stream of paths in which parents come before children."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = list(patterns)
        self.dropped: set[bytes] = set()

    def skip(self, path: bytes, is_dir: bool, root: bytes) -> bool:
        """True when ``path`` (under the include ``root``) is not part of the manifest."""
        if path != root:
            parent = path.rsplit(b"/", 1)[0] or b"/"
            if parent in self.dropped or is_excluded(path, self.patterns):
                if is_dir:
                    self.dropped.add(path)
                return True
        return False
