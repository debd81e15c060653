"""Assembling the guest disk on the host: GPT, a FAT ESP and an ext4 root, then qcow2.

Nothing here mounts anything or boots an appliance: ``sfdisk`` writes the partition table
into a sparse raw file, ``mkfs.vfat`` + mtools build the ESP in a side file that is copied
in, ``mke2fs -d`` populates the root file system straight from a directory at the root
partition's offset, and ``qemu-img convert`` produces the qcow2.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import ImageBuildError
from .procs import run_command
from .recipe import ESP_TYPE_GUID, ROOT_X86_64_TYPE_GUID, DiskIdentity, GuestRecipe

MIB = 1024 * 1024
SECTOR = 512
EXT4_BLOCK = 4096


@dataclass(frozen=True)
class DiskLayout:
    """Byte offsets and sizes of the two partitions and of the whole disk."""

    esp_offset: int
    esp_size: int
    root_offset: int
    root_size: int
    disk_size: int


def layout_for(recipe: GuestRecipe) -> DiskLayout:
    """1 MiB aligned layout: ESP first, then root; 1 MiB left at the end for the backup GPT."""
    esp_offset = MIB
    esp_size = recipe.esp_size_mib * MIB
    root_offset = esp_offset + esp_size
    root_size = recipe.root_size_mib * MIB
    return DiskLayout(esp_offset, esp_size, root_offset, root_size, root_offset + root_size + MIB)


def partition(raw: Path, lay: DiskLayout, ident: DiskIdentity) -> None:
    """Create the sparse raw disk and write its GPT with fixed GUIDs."""
    with open(raw, "wb") as f:
        f.truncate(lay.disk_size)
    script = (
        "label: gpt\n"
        f"label-id: {ident.disk_guid}\n"
        "unit: sectors\n"
        f"start={lay.esp_offset // SECTOR}, size={lay.esp_size // SECTOR}, "
        f'type={ESP_TYPE_GUID}, uuid={ident.esp_partuuid}, name="EFI System Partition"\n'
        f"start={lay.root_offset // SECTOR}, size={lay.root_size // SECTOR}, "
        f'type={ROOT_X86_64_TYPE_GUID}, uuid={ident.root_partuuid}, name="root"\n'
    )
    run_command(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(raw)],
        input_bytes=script.encode(),
        error=ImageBuildError,
        what="writing the GPT",
    )


def build_esp(
    raw: Path, lay: DiskLayout, ident: DiskIdentity, files: dict[str, Path], work: Path,
    epoch: int,
) -> None:
    """Make the FAT ESP holding ``files`` (ESP path -> host file) and copy it into the disk."""
    esp = work / "esp.img"
    esp.unlink(missing_ok=True)
    env = {"SOURCE_DATE_EPOCH": str(epoch), "MTOOLS_SKIP_CHECK": "1"}
    run_command(
        ["mkfs.vfat", "-C", "-i", ident.esp_volume_id, "-n", "ESP", str(esp),
         str(lay.esp_size // 1024)],
        env=env, error=ImageBuildError, what="formatting the ESP",
    )
    made: set[str] = set()
    for dest, src in sorted(files.items()):
        parts = dest.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                run_command(["mmd", "-i", str(esp), "::/" + d], env=env,
                            error=ImageBuildError, what=f"creating {d} on the ESP")
                made.add(d)
        os.utime(src, (epoch, epoch))
        run_command(["mcopy", "-m", "-i", str(esp), str(src), "::/" + dest], env=env,
                    error=ImageBuildError, what=f"copying {dest} to the ESP")
    with open(esp, "rb") as src_f, open(raw, "r+b") as dst:
        dst.seek(lay.esp_offset)
        shutil.copyfileobj(src_f, dst, 4 * MIB)
    esp.unlink()


def build_root_fs(raw: Path, lay: DiskLayout, ident: DiskIdentity, root: Path, epoch: int) -> None:
    """Create the ext4 root file system at its partition offset, populated from ``root``.

    ``orphan_file`` is left out so older e2fsprogs and libguestfs appliances can repair and
    mount the file system.
    """
    run_command(
        [
            "mke2fs", "-q", "-F", "-t", "ext4", "-b", str(EXT4_BLOCK),
            "-O", "^orphan_file", "-L", "cvmchain-root", "-U", ident.root_fs_uuid,
            "-E", f"offset={lay.root_offset},hash_seed={ident.root_fs_uuid}",
            "-d", str(root), str(raw), str(lay.root_size // EXT4_BLOCK),
        ],
        env={"E2FSPROGS_FAKE_TIME": str(epoch)},
        error=ImageBuildError,
        what="creating and populating the ext4 root file system",
    )


def convert_to_qcow2(raw: Path, out: Path, compress: bool) -> None:
    """Convert the raw disk to qcow2 (optionally compressed)."""
    argv = ["qemu-img", "convert", "-f", "raw", "-O", "qcow2"]
    if compress:
        argv.append("-c")
    run_command([*argv, str(raw), str(out)], error=ImageBuildError, what="converting to qcow2")


def make_overlay(base: Path, overlay: Path) -> Path:
    """Create a qcow2 overlay backed by ``base`` so a VM never writes to the cached image."""
    overlay.parent.mkdir(parents=True, exist_ok=True)
    overlay.unlink(missing_ok=True)
    run_command(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
         str(Path(base).resolve()), str(overlay)],
        what=f"creating overlay {overlay} on {base}",
    )
    return overlay
