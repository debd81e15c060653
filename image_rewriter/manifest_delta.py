"""Bring a rootfs manifest read before the rewriter wrote into the guest up to date by
reading again only what it wrote.

The rewriter reads the guest's tree on the host while the appliance starts (the raw work
copy is clean and nothing writes to it yet). Afterwards it has written a known set of paths
(the agent, the hook, the initrds, ``grub.cfg``), and nothing else writes to the guest. The
manifest of the final image is then the first manifest with every entry at or under those
paths replaced by what a second read of just those paths finds, in the final image. A
written path whose parent directories did not exist before is widened to the highest new
directory, since unpacking created those too. Directory sizes and times, which writes do
change, are not part of the manifest (:mod:`shared_spec.manifest`).
"""

from __future__ import annotations

from collections.abc import Iterable

from image_rewriter.rootfs_walk import top_includes
from shared_spec.manifest import TYPE_ABSENT, ManifestEntry


def _under(path: bytes, root: bytes) -> bool:
    return root == b"/" or path == root or path.startswith(root + b"/")


def _covered(path: bytes, tops: list[bytes]) -> bool:
    return any(_under(path, t) for t in tops)


def reread_roots(before: list[ManifestEntry], written: Iterable[str],
                 includes: Iterable[str]) -> list[bytes]:
    """The paths to read again after writing ``written`` (absolute guest paths).

    Each written path inside the include set is widened to its highest ancestor that the
    first read did not see; a written directory that holds include paths stands for those
    include paths. Written paths outside the include set are dropped (not measured).
    """
    tops = top_includes(includes)
    present = {e.path for e in before}
    roots: set[bytes] = set()
    for path in written:
        p = (path.encode() if isinstance(path, str) else bytes(path)).rstrip(b"/") or b"/"
        if not p.startswith(b"/"):
            raise ValueError("written path %r is not absolute" % path)
        if _covered(p, tops):
            while p != b"/":
                parent = p.rsplit(b"/", 1)[0] or b"/"
                if parent in present or not _covered(parent, tops):
                    break
                p = parent
            roots.add(p)
        else:
            roots.update(t for t in tops if _under(t, p))
    return top_includes(roots) if roots else []


def merge_reread(before: list[ManifestEntry], roots: list[bytes], reread: list[ManifestEntry],
                 includes: Iterable[str]) -> list[ManifestEntry]:
    """``before`` with everything at or under ``roots`` replaced by ``reread`` (the manifest
    entries of ``roots`` read from the final image, with the same excludes and xattrs).

    An absent-path entry of the second read is kept only for a configured include path,
    as the first read writes them.
    """
    tops = set(top_includes(includes))
    kept = [e for e in before if not any(_under(e.path, r) for r in roots)]
    fresh = [e for e in reread if e.type != TYPE_ABSENT or e.path in tops]
    return kept + fresh
