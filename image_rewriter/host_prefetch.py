"""Host work on the raw work copy while the libguestfs appliance starts.

Launching the appliance takes seconds of emulated boot on one core; the other core is
free, and the raw copy is clean and not yet written. Meanwhile the host finds the root
file system itself (the ext2/3/4 partition that has ``/etc/fstab`` and ``/usr``), reads
what the agent will measure (:func:`image_rewriter.rewrite` brings that manifest up to
date afterwards with :mod:`image_rewriter.manifest_delta`), and reads and merges the
agent into each initrd in ``/boot``. Each result is used only when inspection later
agrees (same file system UUID, same initrd paths); anything unusual leaves the result
empty and the rewriter does that work the usual way.

The work runs in daemon threads at a lower priority (the appliance is on the critical
path) and writes only into the rewriter's private work directory.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from image_rewriter.errors import RewriteError
from image_rewriter.partitions import Partition, read_partitions

#: nice value of the prefetch threads (and the tools they start)
PREFETCH_NICE = 10


@dataclass
class RootCandidate:
    """The one ext2/3/4 file system of the disk that looks like a root."""

    partition: Partition
    fs_type: str
    fs_uuid: str


def find_root_candidate(raw: str | Path) -> RootCandidate | None:
    """The partition holding ``/etc/fstab`` and ``/usr``, if exactly one ext2/3/4 one does."""
    from image_rewriter.debugfs_tree import DebugfsReader
    from image_rewriter.rootfs_reader import EXT_TYPES, identify_filesystem

    found = []
    for p in read_partitions(raw):
        info = identify_filesystem(raw, p)
        if info is None or info.type not in EXT_TYPES:
            continue
        reader = DebugfsReader(raw, p.start, [], [])
        if reader.lookup(b"/etc/fstab") is not None and reader.lookup(b"/usr") is not None:
            found.append(RootCandidate(p, info.type, info.uuid))
    return found[0] if len(found) == 1 else None


def boot_initrds(raw: str | Path, root: RootCandidate, dest: Path) -> dict[str, Path]:
    """Copy each ``/boot`` initrd of a kernel in ``/boot`` of the root file system to
    ``dest``; guest path -> local file (nothing when ``/boot`` is empty there, as when it
    is a file system of its own)."""
    from image_rewriter.debugfs_tree import Debugfs, DebugfsReader
    from image_rewriter.guest_os import INITRD_NAMES
    from shared_spec.manifest import TYPE_DIR, TYPE_FILE, type_of_mode

    reader = DebugfsReader(raw, root.partition.start, [], [])
    boot = reader.lookup(b"/boot")
    if boot is None or type_of_mode(boot[1]) != TYPE_DIR:
        return {}
    reader.listdirs([boot[0]])
    names = {n.decode("utf-8", "surrogateescape"): v for n, v in reader.dirs[boot[0]].items()}
    out: dict[str, Path] = {}
    fs = Debugfs(raw, root.partition.start)
    for name in sorted(names):
        if not name.startswith("vmlinuz-"):
            continue
        version = name[len("vmlinuz-"):]
        for pattern in INITRD_NAMES["dracut"]:  # both tools' names, initramfs-tools' first
            initrd = pattern % version
            entry = names.get(initrd[len("/boot/"):])
            if entry is not None and type_of_mode(entry[1]) == TYPE_FILE:
                local = dest / ("prefetch-initrd.%d" % len(out))
                fs.run(["dump <%d> %s" % (entry[0], local)])
                if not local.is_file() or local.stat().st_size != entry[4]:
                    raise RewriteError("debugfs could not copy %s out of %s" % (initrd, raw))
                out[initrd] = local
                break
    return out


class _Job:
    """One background computation: its result, or the error that ended it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.result: Any = None
        self.error: Exception | None = None
        self.seconds = 0.0
        self.done = threading.Event()

    def run(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in this thread and keep its result or error."""
        t = time.monotonic()
        try:
            self.result = fn(*args)
        except (RewriteError, OSError, ValueError) as e:
            self.error = e
        finally:
            self.seconds = time.monotonic() - t
            self.done.set()

    def skip(self, why: str) -> None:
        """Finish without running (``why`` says what was missing)."""
        self.error = RewriteError(why)
        self.done.set()

    def wait(self) -> Any:
        """The result, or None when it failed or was skipped (the caller then does the
        work itself; :attr:`error` says why)."""
        self.done.wait()
        return None if self.error is not None else self.result

    def why_not(self) -> str:
        """Why the result is missing ("" when it is there)."""
        return "" if self.error is None else str(self.error)


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PREFETCH_NICE)
    except OSError:
        pass


class HostPrefetch:
    """The prefetch of one rewrite; see the module docstring.

    Attributes:
        root: finds the :class:`RootCandidate`.
        rootfs: ``read_rootfs(fs_uuid)``'s result.
        initrds: guest initrd path -> local file with the agent merged in.
    """

    def __init__(self) -> None:
        self.root = _Job("root")
        self.rootfs = _Job("rootfs")
        self.initrds = _Job("initrds")
        self._copied = threading.Event()

    def wait_done(self, timeout: float | None = None) -> bool:
        """Wait until every job has finished (nothing is written into the work directory
        any more); False when ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in (self.root, self.rootfs, self.initrds):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not job.done.wait(left):
                return False
        return True

    def wait_reads(self) -> float:
        """Wait until the prefetch no longer reads the raw image (the rootfs read and the
        initrd copies are done; merging may go on); the seconds waited. The rewriter calls
        this before the appliance writes anything: a file system read while it is written
        is not a consistent view."""
        t = time.monotonic()
        self.rootfs.wait()
        self._copied.wait()
        return time.monotonic() - t

    def start(self, raw: Path, work: Path, read_rootfs: Callable[[str], Any] | None,
              merge: Callable[[list[Path]], float] | None) -> HostPrefetch:
        """Start in the background: find the root, then ``read_rootfs(fs_uuid)`` and the
        initrds merged with ``merge(files)``; either may be None (not wanted)."""
        def initrds(root: RootCandidate) -> None:
            _lower_priority()

            def copy_and_merge() -> dict[str, Path]:
                try:
                    files = boot_initrds(raw, root, work)
                finally:
                    self._copied.set()
                if merge is not None:
                    merge(list(files.values()))
                return files

            self.initrds.run(copy_and_merge)

        def main() -> None:
            try:
                run_all()
            finally:  # whatever happened, no one waits forever
                for job in (self.root, self.rootfs, self.initrds):
                    if not job.done.is_set():
                        job.skip("the prefetch stopped early")
                self._copied.set()

        def run_all() -> None:
            _lower_priority()
            self.root.run(find_root_candidate, raw)
            root = self.root.wait()
            if root is None:
                why = self.root.why_not() or "no single ext2/3/4 root file system found"
                self.rootfs.skip(why)
                self.initrds.skip(why)
                self._copied.set()
                return
            worker = None
            if merge is None:
                self.initrds.skip("not wanted")
                self._copied.set()
            else:
                worker = threading.Thread(target=initrds, args=(root,), daemon=True,
                                          name="cvmchain-prefetch-initrds")
                worker.start()
            try:
                if read_rootfs is None:
                    self.rootfs.skip("not wanted")
                else:
                    self.rootfs.run(read_rootfs, root.fs_uuid)
            finally:
                if worker is not None:
                    worker.join()

        threading.Thread(target=main, name="cvmchain-prefetch", daemon=True).start()
        return self
