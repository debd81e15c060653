"""``qemu-img``: what an input image is, and copies of it in another format.

:func:`inspect_image` refuses clearly what the rewriter cannot take: a file that is
not a disk image, an encrypted image (qcow2 AES or LUKS), a backing chain with a
missing member, a dirty or corrupt qcow2. A backing chain that is complete is
accepted: :func:`convert` flattens it, so the output never depends on the input's
backing files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from image_rewriter.errors import ImageError

QEMU_IMG = "qemu-img"
ACCEPTED_FORMATS = ("qcow2", "raw", "vmdk", "vpc", "vhdx", "qed")
#: Smallest disk that can hold a bootable Linux with an ESP; anything less is not an image.
MIN_VIRTUAL_SIZE = 64 << 20


@dataclass(frozen=True)
class ImageInfo:
    """``qemu-img info`` of an image and its backing chain (first = the image itself)."""

    path: Path
    format: str
    virtual_size: int
    actual_size: int
    backing_chain: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"path": str(self.path), "format": self.format,
                "virtual_size": self.virtual_size, "actual_size": self.actual_size,
                "backing_chain": list(self.backing_chain)}


def _qemu_img() -> str:
    tool = shutil.which(QEMU_IMG)
    if tool is None:
        raise ImageError("the 'qemu-img' command is needed but is not installed "
                         "(Debian package: qemu-utils)")
    return tool


def _encrypted(layer: dict[str, object]) -> bool:
    if layer.get("encrypted"):
        return True
    spec = layer.get("format-specific")
    if isinstance(spec, dict):
        data = spec.get("data")
        if spec.get("type") == "luks":
            return True
        if isinstance(data, dict) and data.get("encrypt"):
            return True
    return False


def inspect_image(path: Path) -> ImageInfo:
    """Run ``qemu-img info --backing-chain`` on ``path``; :class:`ImageError` if unusable."""
    path = Path(path)
    if not path.exists():
        raise ImageError("%s: no such file" % path)
    if not path.is_file():
        raise ImageError("%s: not a regular file" % path)
    done = subprocess.run([_qemu_img(), "info", "--output=json", "--backing-chain", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "unreadable"
        missing = re.search(r"Could not open '([^']+)': No such file", reason)
        if missing and Path(missing.group(1)).resolve() != path.resolve():
            raise ImageError("%s: its backing file %s is missing" % (path, missing.group(1)))
        raise ImageError("%s: qemu-img cannot read it: %s" % (path, reason))
    try:
        chain = json.loads(done.stdout)
    except ValueError as exc:
        raise ImageError("%s: qemu-img info gave no JSON: %s" % (path, exc)) from exc
    if isinstance(chain, dict):
        chain = [chain]
    top = chain[0]
    fmt = str(top.get("format", ""))
    for layer in chain:
        name = layer.get("filename", path)
        if _encrypted(layer):
            raise ImageError("%s: the image is encrypted; decrypt it first "
                             "(qemu-img convert with --object secret,...)" % name)
        spec = layer.get("format-specific")
        if isinstance(spec, dict) and isinstance(spec.get("data"), dict):
            if spec["data"].get("corrupt"):
                raise ImageError("%s: the qcow2 image is marked corrupt (qemu-img check -r all)"
                                 % name)
        if layer.get("dirty-flag"):
            raise ImageError("%s: the image is dirty (in use by a running VM, or not closed "
                             "cleanly); stop the VM or run qemu-img check -r all" % name)
        backing = layer.get("full-backing-filename") or layer.get("backing-filename")
        if backing and not Path(str(backing)).exists():
            raise ImageError("%s: its backing file %s is missing" % (name, backing))
    if fmt not in ACCEPTED_FORMATS:
        raise ImageError("%s: format %r is not a disk image format the rewriter takes (%s)"
                         % (path, fmt, ", ".join(ACCEPTED_FORMATS)))
    size = int(top.get("virtual-size", 0))
    if size < MIN_VIRTUAL_SIZE:
        raise ImageError("%s: not a disk image (%s of %d bytes; a bootable disk needs at "
                         "least %d MiB)" % (path, fmt, size, MIN_VIRTUAL_SIZE >> 20))
    return ImageInfo(path=path, format=fmt, virtual_size=size,
                     actual_size=int(top.get("actual-size", 0)),
                     backing_chain=[str(layer.get("filename")) for layer in chain[1:]])


def convert(src: Path, src_format: str, dst: Path, dst_format: str) -> None:
    """``qemu-img convert`` ``src`` into a new ``dst`` (sparse; backing chain flattened)."""
    argv = [_qemu_img(), "convert", "-f", src_format, "-O", dst_format]
    if dst_format == "raw":
        argv += ["-S", "4k"]
    argv += [str(src), str(dst)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ImageError("qemu-img convert %s -> %s failed: %s"
                         % (src, dst, done.stderr.strip() or "exit %d" % done.returncode))
