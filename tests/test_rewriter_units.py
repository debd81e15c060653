"""The image rewriter's host-side pieces: input refusals with the real qemu-img, the GRUB
drop-in, the guest file layout, and the reference predictions (recomputed here with
hashlib and struct, independently of shared_spec's encoder)."""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

from image_rewriter import guest_files as gf
from image_rewriter import qemu_img
from image_rewriter.errors import GuestError, ImageError, RewriteError
from image_rewriter.guest_os import MIN_FREE_BYTES, inspect_guest
from image_rewriter.reference_builder import build_reference
from image_rewriter.rewrite import RewriteOptions, agent_config, rewrite
from initrd_agent.config import AgentConfig
from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512

needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                    reason="qemu-img is not installed (Debian: qemu-utils)")


def _qemu_img(*argv: str) -> None:
    done = subprocess.run(["qemu-img", *argv], check=False, capture_output=True, text=True)
    assert done.returncode == 0, "qemu-img %s: %s" % (" ".join(argv), done.stderr)


# ------------------------------------------------------------------ input refusals


@needs_qemu_img
def test_not_an_image_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(ImageError) as e:
        qemu_img.inspect_image(text)
    assert str(text) in str(e.value) and "not a disk image" in str(e.value)
    with pytest.raises(ImageError, match="no such file"):
        qemu_img.inspect_image(tmp_path / "missing.qcow2")
    with pytest.raises(ImageError, match="not a regular file"):
        qemu_img.inspect_image(tmp_path)


@needs_qemu_img
def test_encrypted_image_is_refused(tmp_path: Path) -> None:
    """A qcow2 whose header says AES encryption (crypt_method = 1 at offset 32, qcow2
    spec). Setting the field by hand avoids qemu-img's LUKS key-derivation benchmark,
    which fails now and then on a loaded machine ("Unable to get accurate CPU usage")."""
    enc = tmp_path / "enc.qcow2"
    _qemu_img("create", "-f", "qcow2", str(enc), "1G")
    with open(enc, "r+b") as f:
        f.seek(32)
        assert struct.unpack(">I", f.read(4)) == (0,)
        f.seek(32)
        f.write(struct.pack(">I", 1))
    with pytest.raises(ImageError) as e:
        qemu_img.inspect_image(enc)
    assert "encrypted" in str(e.value) and str(enc) in str(e.value)


@needs_qemu_img
def test_backing_chain_is_accepted_and_a_missing_backing_file_refused(tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    top = tmp_path / "top.qcow2"
    _qemu_img("create", "-f", "qcow2", str(base), "1G")
    _qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(top))
    info = qemu_img.inspect_image(top)
    assert info.format == "qcow2" and info.virtual_size == 1 << 30
    assert info.backing_chain == [str(base)]
    flat = tmp_path / "flat.raw"
    qemu_img.convert(top, "qcow2", flat, "raw")
    assert flat.stat().st_size == 1 << 30
    base.unlink()
    with pytest.raises(ImageError) as e:
        qemu_img.inspect_image(top)
    assert "backing file" in str(e.value) and str(base) in str(e.value)


@needs_qemu_img
def test_tiny_raw_file_is_not_a_disk(tmp_path: Path) -> None:
    small = tmp_path / "small.img"
    small.write_bytes(b"\0" * 4096)
    with pytest.raises(ImageError, match="not a disk image"):
        qemu_img.inspect_image(small)


@needs_qemu_img
def test_output_over_input_and_existing_output_are_refused(tmp_path: Path) -> None:
    img = tmp_path / "in.qcow2"
    _qemu_img("create", "-f", "qcow2", str(img), "1G")
    before = hashlib.sha256(img.read_bytes()).hexdigest()
    with pytest.raises(RewriteError, match="must not be the input"):
        rewrite(RewriteOptions(input=img, output=img))
    out = tmp_path / "out.qcow2"
    out.write_bytes(b"keep me")
    with pytest.raises(RewriteError, match="exists; pass --force"):
        rewrite(RewriteOptions(input=img, output=out))
    assert out.read_bytes() == b"keep me"
    assert hashlib.sha256(img.read_bytes()).hexdigest() == before
    with pytest.raises(RewriteError, match="does not exist"):
        rewrite(RewriteOptions(input=img, output=tmp_path / "nope" / "out.qcow2"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.qcow2", "out.qcow2"]


def test_bad_agent_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RewriteError, match="agent configuration"):
        agent_config(RewriteOptions(input=tmp_path / "a", output=tmp_path / "b",
                                    on_error="ignore"))
    with pytest.raises(gf.CmdlineError):
        gf.check_kernel_args(['ima_policy="tcb"'])
    with pytest.raises(gf.CmdlineError):
        gf.check_kernel_args(["a b"])
    gf.check_kernel_args(["ima_template=ima-ng", "ima_hash=sha384", "quiet"])


# -------------------------------------------------------- guest inspection refusals


class FakeGuestfs:
    """A stand-in for a launched libguestfs handle (inspection answers only).

    The appliance itself is exercised by qemu_tests; this covers every refusal branch
    of :func:`inspect_guest` without a 20 s launch each.
    """

    def __init__(self, arch: str = "x86_64", files: tuple[str, ...] = (),
                 boot: tuple[str, ...] = (), free: int = 1 << 30) -> None:
        self.arch = arch
        self.files = set(files)
        self.boot = list(boot)
        self.free = free

    def inspect_os(self) -> list[str]:
        return ["/dev/sda1"]

    def inspect_get_type(self, root: str) -> str:
        return "linux"

    def inspect_get_arch(self, root: str) -> str:
        return self.arch

    def inspect_get_mountpoints(self, root: str) -> dict[str, str]:
        return {"/": root}

    def mount(self, dev: str, mp: str) -> None:
        pass

    def is_file(self, path: str) -> bool:
        return path in self.files or path.lstrip("/") in {"boot/" + b for b in self.boot}

    def is_dir(self, path: str) -> bool:
        return path in self.files

    def ls(self, path: str) -> list[str]:
        return self.boot

    def vfs_type(self, dev: str) -> str:
        return "ext4"

    def vfs_uuid(self, dev: str) -> str:
        return "0b5e8c0e-0000-4000-8000-000000000001"

    def statvfs(self, path: str) -> dict[str, int]:
        return {"bavail": self.free // 4096, "frsize": 4096}

    def inspect_get_distro(self, root: str) -> str:
        return "debian"

    def inspect_get_major_version(self, root: str) -> int:
        return 12

    def inspect_get_minor_version(self, root: str) -> int:
        return 0

    def inspect_get_product_name(self, root: str) -> str:
        return "12"


ITOOLS = ("/usr/sbin/update-initramfs", "/usr/share/initramfs-tools")
KERNEL = ("vmlinuz-6.1.0-1-cloud-amd64", "initrd.img-6.1.0-1-cloud-amd64")


def test_inspection_refusals_name_the_reason() -> None:
    ok = inspect_guest(FakeGuestfs(files=ITOOLS, boot=KERNEL), "img")
    assert [k.version for k in ok.kernels] == ["6.1.0-1-cloud-amd64"]
    with pytest.raises(GuestError, match="aarch64; the agent's runtime bundle is x86_64"):
        inspect_guest(FakeGuestfs(arch="aarch64", files=ITOOLS, boot=KERNEL), "img")
    with pytest.raises(GuestError, match="neither initramfs-tools"):
        inspect_guest(FakeGuestfs(boot=KERNEL), "img")
    with pytest.raises(GuestError, match="no kernel with an initrd"):
        inspect_guest(FakeGuestfs(files=ITOOLS, boot=KERNEL[:1]), "img")
    with pytest.raises(GuestError, match="MiB free"):
        inspect_guest(FakeGuestfs(files=ITOOLS, boot=KERNEL, free=MIN_FREE_BYTES - 4096),
                      "img")


def test_no_operating_system_is_refused() -> None:
    class Empty(FakeGuestfs):
        def inspect_os(self) -> list[str]:
            return []

    with pytest.raises(ImageError, match="no Linux found"):
        inspect_guest(Empty(), "blank.qcow2")


# ------------------------------------------------------------------- GRUB and files


def test_grub_args_already_present_are_found() -> None:
    default = ('GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet ima_hash=sha384"\n'
               "GRUB_CMDLINE_LINUX='console=ttyS0,115200 $EXTRA'  # serial\n")
    assert gf.grub_args_present(default) == {"quiet", "ima_hash=sha384", "console=ttyS0,115200"}
    drop = gf.grub_drop_in(["ima_template=ima-ng", "ima_hash=sha384"]).decode()
    assert 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX ima_template=ima-ng ima_hash=sha384"' in drop
    assert gf.grub_args_present(drop) == {"ima_template=ima-ng", "ima_hash=sha384"}


def test_linux_lines_of_grub_cfg() -> None:
    cfg = ("menuentry 'Debian' {\n\tlinux\t/boot/vmlinuz-6.1 root=UUID=x ro quiet a=1\n"
           "\tinitrd\t/boot/initrd.img-6.1\n}\n")
    assert gf.linux_cmdlines(cfg) == [["root=UUID=x", "ro", "quiet", "a=1"]]


def test_tar_touches_only_owned_directories() -> None:
    files = {"usr/lib/cvmchain/agent/a.py": (0o644, b"a"),
             "usr/share/initramfs-tools/hooks/cvmchain": (0o755, b"#!/bin/sh\n"),
             "etc/cvmchain/agent.conf": (0o644, b"x=1\n")}
    with tarfile.open(fileobj=io.BytesIO(gf.tar_of(files))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    dirs = sorted(n for n, m in members.items() if m.isdir())
    assert dirs == ["etc/cvmchain", "usr/lib/cvmchain", "usr/lib/cvmchain/agent"]
    assert members["usr/share/initramfs-tools/hooks/cvmchain"].mode == 0o755
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())


def test_guest_layout_moves_the_boot_script_under_initramfs_tools() -> None:
    initrd = {"scripts/local-bottom/cvmchain": (0o755, b"#!/bin/sh\n"),
              "etc/cvmchain/agent.conf": (0o644, b"")}
    out = gf.guest_files(initrd, ["ima_hash=sha384"])
    assert set(out) == {"usr/share/initramfs-tools/scripts/local-bottom/cvmchain",
                        "usr/share/initramfs-tools/hooks/cvmchain", "etc/cvmchain/agent.conf",
                        "etc/default/grub.d/cvmchain.cfg"}


# ------------------------------------------------------------------------ reference


def _tagged(descriptor: str) -> bytes:
    """TCG_PCClientTaggedEvent{taggedEventID="CVMC", size, data} built by hand."""
    data = descriptor.encode()
    return struct.pack("<II", 0x434D5643, len(data)) + data


def test_reference_predictions_recomputed_independently() -> None:
    config = AgentConfig(ima_policy="/etc/cvmchain/ima-policy")
    policy = b"measure func=BPRM_CHECK\n"
    manifest_digest = hashlib.sha384(b"/usr d 0755 0 0 - - - -\n").hexdigest()
    rootfs_desc = "cvmchain:rootfs:tree:sha384:" + manifest_digest
    ref = build_reference(config, policy, {"mode": "tree", "manifest_sha384": manifest_digest},
                          rootfs_desc, {"kernel_cmdline_add": []})
    descs = ["cvmchain:agent-config:sha384:" + hashlib.sha384(config.render().encode())
             .hexdigest(),
             "cvmchain:ima-policy:sha384:" + hashlib.sha384(policy).hexdigest(),
             rootfs_desc, "cvmchain:leave-initrd"]
    assert [e.descriptor for e in ref.events] == descs
    names = {ALG_SHA1: "sha1", ALG_SHA256: "sha256", ALG_SHA384: "sha384", ALG_SHA512: "sha512"}
    for alg, name in names.items():
        value = bytes(hashlib.new(name).digest_size)
        for d, ev in zip(descs, ref.events, strict=True):
            assert ev.event_data == _tagged(d)
            digest = hashlib.new(name, _tagged(d)).digest()
            assert ev.digests[alg] == digest
            value = hashlib.new(name, value + digest).digest()
        assert ref.pcr_values[alg] == value
        if alg == ALG_SHA384:
            assert ref.cc_mr_value == value
    assert ref.pcr_index == 15 and ref.cc_mr_index == 4


def test_reference_roots_follow_the_configuration() -> None:
    tdx_only = build_reference(AgentConfig(roots="tdx", tdx_rtmr=2), None, {}, "d", {})
    assert tdx_only.pcr_index is None and tdx_only.cc_mr_index == 3
    assert tdx_only.events[1].descriptor == "cvmchain:ima-policy:none"
    tpm_only = build_reference(AgentConfig(roots="tpm", tpm_pcr=14), None, {}, "d", {})
    assert tpm_only.cc_mr_value is None and tpm_only.pcr_index == 14


def test_files_written_after_grub_are_measured_only_under_an_include() -> None:
    from image_rewriter.rewrite import _measured

    def conf(*include: str) -> AgentConfig:
        return AgentConfig(include=include)

    assert not _measured(conf("/usr", "/etc/passwd"), "/boot/grub/grub.cfg")
    assert not _measured(conf("/bo"), "/boot/initrd.img-6.1")
    assert _measured(conf("/usr", "/boot"), "/boot/initrd.img-6.1")
    assert _measured(conf("/boot/grub/"), "/boot/grub/grub.cfg")
    assert _measured(conf("/"), "/boot/grub/grub.cfg")
