"""Carry a runnable copy of the cvmchain SDK into a booted guest on a read-only raw disk.

:func:`build_sdk_archive` writes, on the host, a tar archive that holds

=====================  ==========================================================
``cvmchain``           the launcher: ``python3 /root/sdk/cvmchain ARGS`` is ``cvmchain ARGS``
``lib/<package>/``     the project packages the CLI imports at start-up
                       (:data:`PROJECT_PACKAGES`)
``lib/<dependency>/``  the pure-Python distributions the guest's Debian lacks
                       (:data:`GUEST_MISSING` and what they require), with their
                       ``.dist-info`` (licences), copied from this interpreter's
                       site-packages
``<name>``             any extra files (a reference, its manifest)
=====================  ==========================================================

The archive is a whole number of 512-byte sectors, so QEMU can attach it as a raw
disk (:meth:`SdkArchive.drive`, read-only, found in the guest by its serial number);
:func:`guest_install_command` unpacks it with ``tar`` into :data:`GUEST_SDK_DIR`.
Nothing touches the guest's image: no libguestfs launch, and ``/root`` is outside
the agent's measured tree.
"""

from __future__ import annotations

import io
import os
import shlex
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import machinery, metadata
from pathlib import Path, PurePosixPath

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from .errors import QemuTestsError
from .harness import ReadOnlyDrive
from .paths import REPO_ROOT

__all__ = [
    "GUEST_MISSING",
    "GUEST_PYTHON",
    "GUEST_SDK_DIR",
    "PROJECT_PACKAGES",
    "SERIAL",
    "SdkArchive",
    "SdkDriveError",
    "build_sdk_archive",
    "dependency_closure",
    "guest_cli",
    "guest_install_command",
]

#: Serial number of the virtio disk; the guest finds the disk by it.
SERIAL = "cvmchain-sdk"
#: Where :func:`guest_install_command` unpacks the archive (not measured by the agent).
GUEST_SDK_DIR = "/root/sdk"
LAUNCHER = "cvmchain"
LIB = "lib"
#: The project's packages ``cloud_sdk.cli`` imports at start-up: ``image_rewriter.cli``
#: registers ``cvmchain rewrite`` and reads the agent's defaults from ``initrd_agent``.
PROJECT_PACKAGES = ("cloud_sdk", "shared_spec", "image_rewriter", "initrd_agent")
#: Distributions the CLI needs that the guest (Debian 12: ``python3``,
#: ``python3-cryptography``, ``python3-tpm2-pytss`` for TPM quotes, see
#: :data:`qemu_tests.recipe.TPM_QUOTE_PACKAGES`) does not have; their requirements come
#: along. tpm2-pytss is never carried: it is an extension module built for the guest's
#: libtss2.
GUEST_MISSING = ("rich",)
#: The guest's Python (Debian 12's ``python3``): every copied distribution must allow it.
GUEST_PYTHON = "3.11"
#: Modification time of every archive member (the archive is reproducible).
ARCHIVE_MTIME = 1_700_000_000
SECTOR = 512

_LAUNCHER_TEXT = '''#!/usr/bin/python3
"""cvmchain from this directory: `python3 %(launcher)s COMMAND ...` (built by
qemu_tests.sdk_drive; the packages and their dependencies are in %(lib)s/)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "%(lib)s"))
from cloud_sdk.cli import main  # noqa: E402

sys.exit(main())
''' % {"launcher": LAUNCHER, "lib": LIB}


class SdkDriveError(QemuTestsError):
    """The SDK archive cannot be built (names the distribution, file or member)."""


@dataclass(frozen=True)
class SdkArchive:
    """A built archive: its path, its members (sorted) and its size in bytes."""

    path: Path
    members: tuple[str, ...]
    size: int
    distributions: tuple[str, ...]

    def drive(self, serial: str = SERIAL) -> ReadOnlyDrive:
        """The archive as a read-only raw virtio disk for :class:`~qemu_tests.harness.QemuVM`."""
        return ReadOnlyDrive(self.path, serial)


def dependency_closure(names: Iterable[str]) -> list[metadata.Distribution]:
    """The installed distributions ``names`` and everything they require (no extras),
    in a stable order (sorted by normalised name).

    Raises:
        SdkDriveError: a distribution or one of its requirements is not installed here.
    """
    found: dict[str, metadata.Distribution] = {}
    todo = [(name, "requested") for name in names]
    while todo:
        name, why = todo.pop()
        key = canonicalize_name(name)
        if key in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SdkDriveError(f"distribution {name!r} ({why}) is not installed in "
                                "this interpreter") from None
        found[key] = dist
        for text in dist.requires or ():
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append((req.name, f"required by {dist.metadata['Name']}"))
    return [found[key] for key in sorted(found)]


def _distribution_files(dist: metadata.Distribution) -> Iterator[tuple[str, Path]]:
    """(archive name under ``lib/``, host path) of an installed distribution's files."""
    name = dist.metadata["Name"]
    requires_python = dist.metadata["Requires-Python"]
    if requires_python and not SpecifierSet(requires_python).contains(GUEST_PYTHON):
        raise SdkDriveError(f"{name} {dist.version} requires Python {requires_python}; "
                            f"the guest has {GUEST_PYTHON}")
    files = dist.files
    if files is None:
        raise SdkDriveError(f"{name} {dist.version}: no RECORD, its files are unknown")
    for rel in files:
        if rel.parts[0] == ".." or "__pycache__" in rel.parts or rel.suffix == ".pyc":
            continue  # console scripts outside site-packages, bytecode
        if any(str(rel).endswith(sfx) for sfx in machinery.EXTENSION_SUFFIXES):
            raise SdkDriveError(f"{name} {dist.version}: {rel} is an extension module; "
                                "only pure-Python distributions can be carried to the guest")
        path = Path(str(dist.locate_file(rel)))
        if not path.is_file():
            raise SdkDriveError(f"{name} {dist.version}: {path} is listed in RECORD but absent")
        yield str(PurePosixPath(*rel.parts)), path


def _package_files(package: str, root: Path) -> Iterator[tuple[str, Path]]:
    """(archive name under ``lib/``, host path) of a project package's files."""
    top = root / package
    if not (top / "__init__.py").is_file():
        raise SdkDriveError(f"{top}: not a package (no __init__.py)")
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for fname in sorted(filenames):
            if fname.endswith(".pyc") or fname.startswith("."):
                continue
            if fname.endswith(tuple(machinery.EXTENSION_SUFFIXES)):
                continue  # built for the host (shared_spec's C kernels): the guest runs Python
            path = Path(dirpath) / fname
            yield path.relative_to(root).as_posix(), path


def _check_extra_name(name: str) -> str:
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts or pure.parts[0] in (LAUNCHER, LIB):
        raise SdkDriveError(f"extra file {name!r}: must be a relative path outside "
                            f"{LAUNCHER!r} and {LIB + '/'!r}")
    return pure.as_posix()


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = ARCHIVE_MTIME
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def build_sdk_archive(
    out: Path,
    extra_files: Mapping[str, bytes | Path] | None = None,
    *,
    packages: Iterable[str] = PROJECT_PACKAGES,
    dependencies: Iterable[str] = GUEST_MISSING,
    root: Path = REPO_ROOT,
) -> SdkArchive:
    """Write the SDK archive to ``out`` (atomically) and describe it.

    Args:
        out: the archive to write (a raw disk image once attached).
        extra_files: archive name -> content (bytes, or a host file to copy), e.g.
            ``{"ref.json": reference_path}``.
        packages: the project packages to copy from ``root``.
        dependencies: distributions the guest lacks; copied with their requirements.
        root: the project checkout.

    Raises:
        SdkDriveError: a package, distribution or extra file is unusable; the message
            names it.
    """
    entries: dict[str, tuple[Path | bytes, int]] = {LAUNCHER: (_LAUNCHER_TEXT.encode(), 0o755)}
    for package in packages:
        for name, path in _package_files(package, root):
            entries[f"{LIB}/{name}"] = (path, 0o644)
    dists = dependency_closure(dependencies)
    for dist in dists:
        for name, path in _distribution_files(dist):
            entries[f"{LIB}/{name}"] = (path, 0o644)
    for name, content in (extra_files or {}).items():
        entries[_check_extra_name(name)] = (content, 0o644)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
            for name in sorted(entries):
                content, mode = entries[name]
                if isinstance(content, bytes):
                    data = content
                else:
                    try:
                        data = content.read_bytes()
                    except OSError as e:
                        raise SdkDriveError(f"{content}: cannot read ({e.strerror or e}) "
                                            f"for archive member {name}") from None
                _add(tar, name, data, mode)
        size = tmp.stat().st_size
        if size % SECTOR:  # tarfile pads to its record size already; keep the promise anyway
            with open(tmp, "ab") as f:
                f.write(bytes(SECTOR - size % SECTOR))
            size += SECTOR - size % SECTOR
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return SdkArchive(out, tuple(sorted(entries)), size,
                      tuple(f"{d.metadata['Name']} {d.version}" for d in dists))


def guest_install_command(dest: str = GUEST_SDK_DIR, serial: str = SERIAL) -> str:
    """Shell command for the guest: find the disk whose serial is ``serial`` and unpack it
    into ``dest`` (emptied first). Exits 1 with a message when no such disk is attached."""
    q_dest, q_serial = shlex.quote(dest), shlex.quote(serial)
    return (
        "dev=; for s in /sys/block/vd*/serial; do "
        f"[ \"$(cat \"$s\" 2>/dev/null)\" = {q_serial} ] && "
        "dev=/dev/$(basename \"$(dirname \"$s\")\"); done; "
        f"[ -n \"$dev\" ] || {{ echo \"no virtio disk with serial \"{q_serial} >&2; exit 1; }}; "
        f"rm -rf {q_dest} && mkdir -p {q_dest} && "
        f"tar -xf \"$dev\" -C {q_dest} --no-same-owner"
    )


def guest_cli(*args: str, sdk_dir: str = GUEST_SDK_DIR) -> str:
    """Shell command for the guest running ``cvmchain ARGS`` from the unpacked archive
    with the guest's own ``python3``."""
    return shlex.join(["python3", f"{sdk_dir}/{LAUNCHER}", *args])
