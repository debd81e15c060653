"""dracut guests: the module, the guest layout, inspection and the host-side initrd merge.

The initrds here are synthetic but laid out as dracut 059 (Debian 12) lays them out on
merged /usr: ``lib`` a link to ``usr/lib``, hooks under ``usr/lib/dracut/hooks/<stage>/``,
``usr/lib/initrd-release``, an uncompressed early-microcode segment in front of the main
one. The merged result is read back with this package's reader and, independently, with
GNU ``cpio`` on the decompressed main segment. The expected file contents are read from
the source tree, never from the code under test. The real dracut initrd is merged and
booted by ``qemu_tests/test_dracut.py``.
"""

from __future__ import annotations

import gzip
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from image_rewriter import guest_files as gf
from image_rewriter.cpio import CpioEntry, write_cpio
from image_rewriter.errors import GuestError
from image_rewriter.guest_os import inspect_guest
from image_rewriter.initrd import compress, read_initrd
from image_rewriter.rewrite import _merge_initrd_file
from initrd_agent import install
from tests.test_rewriter_units import FakeGuestfs

MODULE_SRC = Path(__file__).resolve().parent.parent / "initrd_agent" / "dracut" / "90cvmchain"
HOOK_SRC = MODULE_SRC / "cvmchain-pre-pivot.sh"
SETUP_SRC = MODULE_SRC / "module-setup.sh"
#: where a merged /usr dracut initrd has the hook: lib -> usr/lib
HOOK_IN_INITRD = "usr/lib/dracut/hooks/pre-pivot/90-cvmchain-pre-pivot.sh"
OTHER_HOOK = "usr/lib/dracut/hooks/pre-pivot/85-write-ifcfg.sh"
KERNEL = "6.1.0-56-cloud-amd64"

AGENT_FILES: install.FileMap = {
    "usr/lib/cvmchain/runtime/bin/micropython-run": (0o755, b"#!/bin/sh\nexec true\n"),
    "usr/lib/cvmchain/agent/cvmchain_agent.py": (0o644, b"print('agent')\n"),
    "usr/lib/cvmchain/shared_spec/__init__.py": (0o644, b""),
    "etc/cvmchain/agent.conf": (0o644, b"on_error=halt\n"),
    install.BOOT_SCRIPT: (0o755, b"#!/bin/sh\n# initramfs-tools boot script\n"),
}


def _dir(path: str) -> CpioEntry:
    return CpioEntry(path, stat.S_IFDIR | 0o755)


def _file(path: str, data: bytes, mode: int = 0o644) -> CpioEntry:
    return CpioEntry(path, stat.S_IFREG | mode, data)


def _dracut_initrd(compression: str) -> tuple[bytes, bytes]:
    """(initrd, its early segment): microcode cpio + the main archive, as dracut 059."""
    early = write_cpio([_dir("kernel"), _dir("kernel/x86"), _dir("kernel/x86/microcode"),
                        _file("kernel/x86/microcode/GenuineIntel.bin", b"\x01" * 64)])
    main = write_cpio([
        _dir("usr"), _dir("usr/lib"), _dir("usr/bin"),
        CpioEntry("lib", stat.S_IFLNK | 0o777, b"usr/lib"),
        CpioEntry("bin", stat.S_IFLNK | 0o777, b"usr/bin"),
        _file("usr/lib/initrd-release", b'NAME="Debian GNU/Linux"\nVERSION="12 dracut-059"\n'),
        _dir("usr/lib/dracut"), _dir("usr/lib/dracut/hooks"),
        _dir("usr/lib/dracut/hooks/pre-pivot"), _dir("usr/lib/dracut/hooks/cleanup"),
        _file(OTHER_HOOK, b"#!/bin/sh\n: other\n", 0o755),
        _file("usr/lib/systemd/system/dracut-pre-pivot.service", b"[Unit]\n"),
        _file("usr/bin/dracut-pre-pivot", b"#!/bin/sh\n", 0o755),
    ])
    return early + compress(main, compression), early


# ------------------------------------------------------------------ the module itself


def test_module_scripts_parse_in_the_shells_dracut_uses() -> None:
    # module-setup.sh is sourced by dracut (bash); the hook by the initrd's /bin/sh
    subprocess.run(["bash", "-n", str(SETUP_SRC)], check=True)
    for shell in ("bash", "dash"):
        if shutil.which(shell) is None:
            pytest.skip("%s is not installed" % shell)
        subprocess.run([shell, "-n", str(HOOK_SRC)], check=True)


def test_module_defines_check_depends_install_and_installs_the_hook() -> None:
    text = SETUP_SRC.read_text()
    for fn in ("check()", "depends()", "install()"):
        assert fn in text
    assert 'inst_hook pre-pivot 90 "${moddir}/cvmchain-pre-pivot.sh"' in text
    # the hook is sourced: it must not exit on success, and the agent gets $NEWROOT
    hook = HOOK_SRC.read_text()
    assert '--root "${NEWROOT:-/sysroot}"' in hook
    code = [ln.split("#")[0] for ln in hook.splitlines()]
    assert not any(ln.strip().startswith("exit") for ln in code)
    assert "while :; do sleep 3600; done" in hook


def test_module_files_keyed_under_modules_d() -> None:
    files = install.dracut_module_files()
    assert set(files) == {install.DRACUT_MODULE + "/module-setup.sh",
                          install.DRACUT_MODULE + "/cvmchain-pre-pivot.sh"}
    assert files[install.DRACUT_MODULE + "/module-setup.sh"] == (0o755, SETUP_SRC.read_bytes())
    assert files[install.DRACUT_MODULE + "/cvmchain-pre-pivot.sh"] == (0o755,
                                                                      HOOK_SRC.read_bytes())


def test_dracut_initrd_files_swap_the_boot_script_for_the_hook() -> None:
    out = install.dracut_initrd_files(AGENT_FILES)
    assert install.BOOT_SCRIPT not in out
    assert out[install.DRACUT_HOOK] == (0o755, HOOK_SRC.read_bytes())
    assert install.DRACUT_HOOK == "lib/dracut/hooks/pre-pivot/90-cvmchain-pre-pivot.sh"
    for name, entry in AGENT_FILES.items():
        if name != install.BOOT_SCRIPT:
            assert out[name] == entry


# ------------------------------------------------------------------ guest layout


def test_guest_layout_for_dracut_has_the_module_and_no_initramfs_tools_files() -> None:
    out = gf.guest_files(AGENT_FILES, ["ima_hash=sha384"], initramfs="dracut")
    assert out[install.DRACUT_MODULE + "/module-setup.sh"] == (0o755, SETUP_SRC.read_bytes())
    assert out[install.DRACUT_MODULE + "/cvmchain-pre-pivot.sh"][1] == HOOK_SRC.read_bytes()
    assert gf.HOOK not in out and gf.GUEST_BOOT_SCRIPT not in out
    assert install.BOOT_SCRIPT not in out
    assert "etc/default/grub.d/cvmchain.cfg" in out
    # the default stays initramfs-tools, without the dracut module
    it = gf.guest_files(AGENT_FILES, [])
    assert gf.HOOK in it and gf.GUEST_BOOT_SCRIPT in it
    assert not any(n.startswith(install.DRACUT_MODULE) for n in it)
    with pytest.raises(ValueError, match="mkinitcpio"):
        gf.guest_files(AGENT_FILES, [], initramfs="mkinitcpio")


def test_module_directory_is_owned_and_gets_its_own_tar_entry() -> None:
    import io
    import tarfile

    assert install.DRACUT_MODULE in gf.OWNED_DIRS
    files = gf.guest_files(AGENT_FILES, [], initramfs="dracut")
    with tarfile.open(fileobj=io.BytesIO(gf.tar_of(files))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members[install.DRACUT_MODULE].isdir()
    assert "usr/lib/dracut/modules.d" not in members  # never touches system directories
    assert members[install.DRACUT_MODULE + "/module-setup.sh"].mode == 0o755


# ------------------------------------------------------------------ inspection

DRACUT = ("/usr/bin/dracut",)


def test_dracut_guests_are_accepted_with_either_initrd_name() -> None:
    debian = inspect_guest(FakeGuestfs(files=DRACUT, boot=("vmlinuz-" + KERNEL,
                                                           "initrd.img-" + KERNEL)), "img")
    assert debian.initramfs == "dracut"
    assert [(k.version, k.initrd) for k in debian.kernels] == [
        (KERNEL, "/boot/initrd.img-" + KERNEL)]
    fedora = inspect_guest(FakeGuestfs(files=DRACUT, boot=("vmlinuz-" + KERNEL,
                                                           "initramfs-%s.img" % KERNEL)), "img")
    assert [k.initrd for k in fedora.kernels] == ["/boot/initramfs-%s.img" % KERNEL]


def test_dracut_guest_without_initrd_and_guest_with_neither_tool_are_refused() -> None:
    with pytest.raises(GuestError, match=r"initrd\.img-\* or initramfs-\*\.img"):
        inspect_guest(FakeGuestfs(files=DRACUT, boot=("vmlinuz-" + KERNEL,)), "img")
    with pytest.raises(GuestError, match="neither initramfs-tools"):
        inspect_guest(FakeGuestfs(boot=("vmlinuz-" + KERNEL, "initrd.img-" + KERNEL)), "img")


# ------------------------------------------------------------------ host-side merge


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_merge_puts_the_hook_where_dracut_sources_it(tmp_path: Path, compression: str) -> None:
    if compression == "zstd" and shutil.which("zstd") is None:
        pytest.skip("zstd is not installed")
    data, early = _dracut_initrd(compression)
    assert read_initrd(data).kind() == "dracut"
    path = tmp_path / "initrd.img"
    path.write_bytes(data)
    _merge_initrd_file(path, AGENT_FILES)
    merged = path.read_bytes()
    assert merged[: len(early)] == early  # the early segment is kept byte for byte
    rd = read_initrd(merged)
    assert [s.compression for s in rd.segments] == ["none", compression]
    hook = rd.entry(HOOK_IN_INITRD)
    assert hook is not None and hook.mode == stat.S_IFREG | 0o755
    assert hook.data == HOOK_SRC.read_bytes()
    lib = rd.entry("lib")
    assert lib is not None and stat.S_ISLNK(lib.mode)  # still the link, no lib/ directory
    assert rd.file(OTHER_HOOK) == b"#!/bin/sh\n: other\n"
    for name, (mode, content) in AGENT_FILES.items():
        if name == install.BOOT_SCRIPT:
            continue
        entry = rd.entry(name)
        assert entry is not None and entry.data == content and entry.mode & 0o777 == mode
    # none of the initramfs-tools machinery
    assert not any(p.startswith("scripts") for p in rd.paths())


def test_merged_main_segment_reads_back_with_gnu_cpio(tmp_path: Path) -> None:
    if shutil.which("cpio") is None:
        pytest.skip("cpio is not installed")
    data, early = _dracut_initrd("gzip")
    path = tmp_path / "initrd.img"
    path.write_bytes(data)
    _merge_initrd_file(path, AGENT_FILES)
    main = gzip.decompress(path.read_bytes()[len(early):])
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames"], input=main, cwd=out,
                   check=True)
    hook = out / HOOK_IN_INITRD
    assert hook.read_bytes() == HOOK_SRC.read_bytes()
    assert hook.stat().st_mode & 0o777 == 0o755
    assert (out / "lib").is_symlink()
    assert (out / "lib/dracut/hooks/pre-pivot/90-cvmchain-pre-pivot.sh").is_file()
    assert not (out / "scripts").exists()


def test_initramfs_tools_initrds_still_get_the_boot_script_and_order(tmp_path: Path) -> None:
    main = write_cpio([_dir("scripts"), _dir("scripts/local-bottom"), _dir("conf"),
                       _file("conf/initramfs.conf", b"MODULES=most\n")])
    path = tmp_path / "initrd.img"
    path.write_bytes(compress(main, "gzip"))
    _merge_initrd_file(path, AGENT_FILES)
    rd = read_initrd(path.read_bytes())
    assert rd.kind() == "initramfs-tools"
    assert rd.file(install.BOOT_SCRIPT) == AGENT_FILES[install.BOOT_SCRIPT][1]
    order = rd.file("scripts/local-bottom/ORDER")
    assert order is not None and b'/scripts/local-bottom/cvmchain "$@"' in order
    assert rd.entry(HOOK_IN_INITRD) is None
