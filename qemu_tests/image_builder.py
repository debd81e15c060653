"""Build (or reuse) a bootable Debian guest image for the QEMU tests.

The image is built the way a cloud image is, without booting anything:

1. ``mmdebstrap --variant=minbase`` installs the recipe's packages into a directory, from the
   host's own apt sources (the kernel's initramfs is generated there by initramfs-tools);
2. the configuration files of :mod:`qemu_tests.recipe` are written, boot-slowing units masked,
   GRUB's modules copied to ``/boot/grub/x86_64-efi`` and a first ``grub.cfg`` written;
3. the ESP gets Debian's signed boot chain at the removable path, as a cloud image has it:
   shim as ``EFI/BOOT/BOOTX64.EFI``, signed GRUB next to it, and a stub ``grub.cfg`` in GRUB's
   prefix ``EFI/debian`` that finds the root file system by UUID. Signed GRUB hands the kernel
   to its EFI stub under Secure Boot, which is what passes the firmware's TPM event log on to
   Linux (``/sys/kernel/security/tpm0/binary_bios_measurements``);
4. :mod:`qemu_tests.disk` assembles GPT + ESP + ext4 on the host; the guest's own
   ``update-grub``, run in a libguestfs appliance, then writes ``grub.cfg`` as a cloud
   image has it (:func:`generate_grub_cfg`); last, the raw disk is converted to qcow2.

Images are cached in ``<cache>/images/`` under a name that contains the recipe key, written
atomically (temporary directory + rename) under a per-image lock, next to a JSON file that
describes them (:class:`GuestImageInfo`). Building needs root (``mmdebstrap --mode=root`` and
``mke2fs -d`` keep file ownership only then).

Command line: ``python -m qemu_tests.image_builder [--force] [--print-path]``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from . import disk
from .apt_sources import write_sources
from .errors import ImageBuildError, QemuTestsError
from .paths import images_dir
from .procs import run_command
from .recipe import (
    DEFAULT_RECIPE,
    ESP_FILES,
    ESP_GRUB_CFG_PATHS,
    ConfigFile,
    GuestRecipe,
    LocalFile,
    config_files,
    early_files,
    esp_grub_cfg,
    grub_cfg,
)

Progress = Callable[[str], None]

MMDEBSTRAP_TIMEOUT = 1800.0


@dataclass(frozen=True)
class GuestImageInfo:
    """What the builder recorded about a cached image (``<image>.json``).

    Attributes:
        image: path of the qcow2 file.
        key: the recipe key.
        kernel_version: ``uname -r`` of the guest kernel.
        cmdline: the kernel command line written to grub.cfg.
        root_fs_uuid: UUID of the ext4 root file system.
        esp_fs_uuid: UUID (volume id) of the ESP, as in /etc/fstab.
        hostname: the guest host name.
        ready_marker: the line the root login shell prints on ttyS0.
        build_seconds: how long the cold build took.
        packages: installed package versions (``name`` -> ``version``).
    """

    image: Path
    key: str
    kernel_version: str
    cmdline: str
    root_fs_uuid: str
    esp_fs_uuid: str
    hostname: str
    ready_marker: str
    build_seconds: float
    packages: dict[str, str]


def info_path(image: Path) -> Path:
    """The JSON description that belongs to ``image``."""
    return image.with_suffix(".json")


def load_image_info(image: Path) -> GuestImageInfo:
    """Read the description the builder wrote next to ``image``."""
    path = info_path(image)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise QemuTestsError(f"cannot read image description {path}: {exc}") from exc
    doc["image"] = image
    return GuestImageInfo(**doc)


def build_guest_image(
    recipe: GuestRecipe = DEFAULT_RECIPE,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> Path:
    """Return the path of the cached qcow2 image for ``recipe``, building it if needed.

    Args:
        recipe: what to build.
        cache_dir: cache root (default :func:`qemu_tests.paths.cache_root`).
        progress: called with one line per build step.
        force: rebuild even if a cached image exists.

    Raises:
        ImageBuildError: a build step failed (names the command and its stderr tail).
    """
    say = progress or (lambda _msg: None)
    out_dir = images_dir(cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / recipe.image_name
    if not force and _complete(target):
        return target
    with locked(out_dir / (recipe.image_name + ".lock")):
        if not force and _complete(target):  # built by another process while we waited
            return target
        if os.geteuid() != 0:
            raise ImageBuildError(
                "building the guest image needs root (mmdebstrap --mode=root, mke2fs -d); "
                "build it once as root or point CVMCHAIN_CACHE_DIR at a cache holding "
                f"{target.name}"
            )
        for stale in out_dir.glob(f".build-{recipe.key()}-*"):  # from an interrupted build
            _remove_tree(stale)
        work = Path(tempfile.mkdtemp(prefix=f".build-{recipe.key()}-", dir=out_dir))
        try:
            _build(recipe, work, target, say)
        finally:
            _remove_tree(work)
    return target


def _complete(target: Path) -> bool:
    return target.is_file() and info_path(target).is_file()


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(recipe: GuestRecipe, work: Path, target: Path, say: Progress) -> None:
    start = time.monotonic()
    ident = recipe.identity()
    root = work / "root"

    def step(msg: str) -> None:
        say(f"[{time.monotonic() - start:6.1f}s] {msg}")

    step(f"mmdebstrap {recipe.suite} ({len(recipe.packages)} packages) into {root}")
    _mmdebstrap(recipe, work, root)

    step("configuring the root file system")
    kernel_version = _kernel_version(root)
    _write_files(root, config_files(recipe, ident))
    for unit in recipe.masked_units:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    (root / "boot/efi").mkdir(mode=0o755, exist_ok=True)

    step("installing shim + signed GRUB at the removable path EFI/BOOT/BOOTX64.EFI")
    esp_files = _install_grub(recipe, root, kernel_version, work)
    packages = _package_versions(root)

    lay = disk.layout_for(recipe)
    raw = work / "disk.raw"
    step(f"partitioning {lay.disk_size // disk.MIB} MiB raw disk (GPT)")
    disk.partition(raw, lay, ident)
    step("building the ESP (vfat + mtools)")
    disk.build_esp(raw, lay, ident, esp_files, work, recipe.source_date_epoch)
    step("building the ext4 root file system (mke2fs -d)")
    disk.build_root_fs(raw, lay, ident, root, recipe.source_date_epoch)
    _remove_tree(root)
    step("generating grub.cfg with the guest's own grub-mkconfig (libguestfs appliance)")
    generate_grub_cfg(raw)
    step("converting to qcow2")
    qcow2 = work / "image.qcow2"
    disk.convert_to_qcow2(raw, qcow2, recipe.compress)
    raw.unlink()

    info = GuestImageInfo(
        image=target,
        key=recipe.key(),
        kernel_version=kernel_version,
        cmdline=f"root=UUID={ident.root_fs_uuid} ro {recipe.cmdline}",
        root_fs_uuid=ident.root_fs_uuid,
        esp_fs_uuid=ident.esp_fs_uuid,
        hostname=recipe.hostname,
        ready_marker=recipe.ready_marker,
        build_seconds=round(time.monotonic() - start, 1),
        packages=packages,
    )
    doc = asdict(info)
    del doc["image"]
    meta_tmp = work / "image.json"
    meta_tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(meta_tmp, info_path(target))
    os.replace(qcow2, target)  # last: the qcow2's presence means "complete"
    step(f"done: {target}")


def _mmdebstrap(recipe: GuestRecipe, work: Path, root: Path) -> None:
    sources = work / "debian.sources"
    write_sources(recipe.suite, sources)
    early = work / "early"
    _write_files(early, early_files(recipe))
    _stage_local_files(recipe, early)
    argv = [
        "mmdebstrap",
        "--variant=minbase",
        "--mode=root",
        "--format=directory",
        "--include=" + ",".join(recipe.packages),
        "--essential-hook=cp -rT " + str(early) + ' "$1"',
    ]
    if recipe.local_debs:
        # makes the .deb paths given to --include visible to dpkg inside the chroot
        argv.append("--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount")
    for deb in recipe.local_debs:
        _check_local(deb)
        argv.append("--include=" + str(Path(deb.source).resolve()))
    for command in recipe.customize:
        argv.append('--customize-hook=chroot "$1" sh -ec ' + shlex.quote(command))
    argv += [recipe.suite, str(root), str(sources)]
    run_command(
        argv,
        env={"SOURCE_DATE_EPOCH": str(recipe.source_date_epoch)},
        timeout=MMDEBSTRAP_TIMEOUT,
        error=ImageBuildError,
        what="mmdebstrap",
    )


def _check_local(entry: LocalFile) -> None:
    path = Path(entry.source)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ImageBuildError(f"local file {path} of the recipe: {exc}") from exc
    if digest != entry.sha256:
        raise ImageBuildError(f"local file {path} of the recipe has SHA-256 {digest}, "
                              f"expected {entry.sha256}")


def _stage_local_files(recipe: GuestRecipe, early: Path) -> None:
    """Put the recipe's local files under ``early`` (copied into the root by a hook)."""
    for entry in recipe.local_files:
        _check_local(entry)
        dest = early / entry.dest.lstrip("/")
        for parent in reversed(dest.relative_to(early).parents):
            d = early / parent
            if not d.exists():
                d.mkdir(mode=0o755)
                d.chmod(0o755)
        shutil.copyfile(entry.source, dest)
        dest.chmod(entry.mode)


def _write_files(root: Path, files: dict[str, ConfigFile]) -> None:
    for rel, cfg in files.items():
        path = root / rel
        for parent in reversed(path.relative_to(root).parents):
            d = root / parent
            if not d.exists():
                d.mkdir(mode=0o755)
                d.chmod(0o755)
        path.write_text(cfg.text)
        path.chmod(cfg.mode)


def _kernel_version(root: Path) -> str:
    kernels = sorted(p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise ImageBuildError(f"expected exactly one kernel in {root / 'boot'}, found {kernels}")
    version = kernels[0]
    if not (root / "boot" / f"initrd.img-{version}").is_file():
        raise ImageBuildError(f"no initramfs for kernel {version} in {root / 'boot'}")
    return version


def _install_grub(
    recipe: GuestRecipe, root: Path, kernel_version: str, work: Path
) -> dict[str, Path]:
    """Do what ``grub-install --removable --uefi-secure-boot`` would, without probing devices.

    Returns:
        The ESP's files (ESP path -> host file).
    """
    ident = recipe.identity()
    modules_src = root / "usr/lib/grub/x86_64-efi"
    grub_dir = root / "boot/grub"
    if not modules_src.is_dir():
        raise ImageBuildError(f"{modules_src} missing: is grub-efi-amd64-bin in the recipe?")
    grub_dir.mkdir(mode=0o755, exist_ok=True)
    shutil.copytree(modules_src, grub_dir / "x86_64-efi", dirs_exist_ok=True)
    (grub_dir / "grub.cfg").write_text(grub_cfg(recipe, ident, kernel_version))
    run_command(["chroot", str(root), "grub-editenv", "/boot/grub/grubenv", "create"],
                error=ImageBuildError, what="creating grubenv")
    files: dict[str, Path] = {}
    for dest, src in ESP_FILES:
        path = root / src
        if not path.is_file():
            raise ImageBuildError(f"{path} missing: are shim-signed and grub-efi-amd64-signed "
                                  "in the recipe?")
        files[dest] = path
    stub = work / "esp-grub.cfg"
    stub.write_text(esp_grub_cfg(ident))
    for dest in ESP_GRUB_CFG_PATHS:
        files[dest] = stub
    return files


def generate_grub_cfg(raw: Path, root_device: str = "/dev/sda2") -> None:
    """Regenerate ``/boot/grub/grub.cfg`` of the raw disk ``raw`` with the guest's own
    ``update-grub``, run in a libguestfs appliance where the root file system is a real
    block device (``grub-probe`` cannot answer inside the mmdebstrap chroot). The result is
    the file a cloud image has: ``grub-mkconfig``'s sections, one per ``/etc/grub.d``
    script, which the rewriter edits in place when it can.

    Raises:
        ImageBuildError: libguestfs or ``update-grub`` failed.
    """
    from image_rewriter.appliance import launched
    from image_rewriter.errors import RewriteError
    from image_rewriter.grub_update import run_update_grub

    try:
        with launched(raw, "raw", readonly=False) as g:
            g.mount(root_device, "/")
            run_update_grub(g)
            if b"### BEGIN /etc/grub.d/10_linux ###" not in g.read_file("/boot/grub/grub.cfg"):
                raise ImageBuildError("update-grub wrote a grub.cfg without a 10_linux section")
            g.umount_all()
    except (RewriteError, RuntimeError) as e:
        raise ImageBuildError(f"generating grub.cfg in {raw} with update-grub: {e}") from e


def _package_versions(root: Path) -> dict[str, str]:
    proc = run_command(
        ["chroot", str(root), "dpkg-query", "-W", "-f", "${Package} ${Version}\\n"],
        error=ImageBuildError, what="listing installed packages",
    )
    pairs = (line.split(" ", 1) for line in proc.stdout.decode().splitlines() if " " in line)
    return dict(sorted((name, version) for name, version in pairs))


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mount_point = line.split()[4].replace("\\040", " ")
            if mount_point.startswith(prefix) or mount_point == prefix[:-1]:
                found.append(mount_point)
    return found


def _remove_tree(path: Path) -> None:
    """Remove a build directory, never following a mount point left by an aborted build."""
    if not path.exists():
        return
    mounts = _mounts_under(path)
    for mount_point in sorted(mounts, reverse=True):
        subprocess.run(["umount", "--lazy", mount_point], check=False, capture_output=True)
    if _mounts_under(path):
        raise ImageBuildError(f"not removing {path}: file systems are still mounted below it")
    shutil.rmtree(path)


BuildImage = Callable[[Path | None, Progress, bool], Path]


def image_cli(argv: list[str] | None, prog: str, what: str, build: BuildImage) -> int:
    """The command line of an image module: build or reuse ``what``, print where it is.

    ``build(cache_dir, progress, force)`` returns the image path; exit 1 with the
    error on a :class:`QemuTestsError`.
    """
    parser = argparse.ArgumentParser(prog=prog, description="Build or reuse %s." % what)
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--print-path", action="store_true",
                        help="print only the image path on stdout")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache root directory")
    args = parser.parse_args(argv)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    start = time.monotonic()
    try:
        image = build(args.cache_dir, progress, args.force)
    except QemuTestsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.print_path:
        print(image)
    else:
        info = load_image_info(image)
        print(f"{image}\n  kernel {info.kernel_version}, root UUID {info.root_fs_uuid}, "
              f"built in {info.build_seconds} s; this call took "
              f"{time.monotonic() - start:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    return image_cli(argv, "python -m qemu_tests.image_builder", "the cvmchain guest image",
                     lambda cache, progress, force: build_guest_image(DEFAULT_RECIPE, cache,
                                                                      progress, force=force))

if __name__ == "__main__":
    raise SystemExit(main())
