"""The initrd splitter, cpio codec and file adder against real tools.

Independent readers: Debian's ``lsinitramfs`` and ``unmkinitramfs``
(initramfs-tools-core), GNU ``cpio``, the ``zstd``/``lz4`` tools, and the kernel itself
(a tiny busybox initrd booted under QEMU TCG). The host's real initrd
(``/boot/initrd.img-*``) is the main input; tests skip with a reason when a tool or the
initrd is absent.
"""

import glob
import itertools
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from image_rewriter import initrd as initrd_mod
from image_rewriter.cpio import (
    MAGIC_CRC,
    CpioEntry,
    read_cpio,
    resolve_hardlinks,
    write_cpio,
)
from image_rewriter.errors import InitrdError, MissingToolError
from image_rewriter.initrd import (
    FileSpec,
    add_files,
    compress,
    initramfs_tools_order,
    order_with_script,
    parse_order,
    read_initrd,
    render_order,
    script_prereqs,
    updated_order,
)

OUR_SCRIPT = (b'#!/bin/sh\nPREREQ=""\nprereqs() { echo "$PREREQ"; }\n'
              b"case $1 in prereqs) prereqs; exit 0;; esac\necho cvmchain-test\n")
OUR_LINE = '/scripts/local-bottom/cvmchain "$@"\n[ -e /conf/param.conf ] && . /conf/param.conf\n'


def _need_tool(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None:
            pytest.skip("%s is not installed" % name)


def _host_initrd_path() -> Path:
    found = sorted(glob.glob("/boot/initrd.img-*"))
    if not found:
        pytest.skip("no /boot/initrd.img-* on this machine")
    path = Path(found[-1])
    if not os.access(path, os.R_OK):
        pytest.skip("%s is not readable" % path)
    return path


@pytest.fixture(scope="module")
def host_path() -> Path:
    return _host_initrd_path()


@pytest.fixture(scope="module")
def host_bytes(host_path: Path) -> bytes:
    return host_path.read_bytes()


@pytest.fixture(scope="module")
def host(host_bytes: bytes) -> initrd_mod.Initrd:
    return read_initrd(host_bytes)


@pytest.fixture(scope="module")
def host_unpacked(host_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_tool("unmkinitramfs", "cpio")
    out = tmp_path_factory.mktemp("unmk")
    subprocess.run(["unmkinitramfs", str(host_path), str(out)], check=True)
    return out


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/") or "."


def lsinitramfs(path: Path, all_uncompressed: bool = False) -> set[str]:
    """Paths lsinitramfs lists. On an initrd without a compressed stream it lists them
    but then exits 2 ("premature end of archive": it feeds cpio the empty rest)."""
    _need_tool("lsinitramfs")
    proc = subprocess.run(["lsinitramfs", str(path)], capture_output=True, check=False)
    if all_uncompressed:
        assert proc.returncode == 2 and b"premature end" in proc.stderr, proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
    return {_norm(os.fsdecode(line)) for line in proc.stdout.splitlines() if line}


def unmkinitramfs(path: Path, dest: Path) -> Path:
    _need_tool("unmkinitramfs", "cpio")
    subprocess.run(["unmkinitramfs", str(path), str(dest)], check=True)
    return dest


def _main_dir(unpacked: Path) -> Path:
    """unmkinitramfs puts the main archive in main/ when early archives precede it."""
    return unpacked / "main" if (unpacked / "main").is_dir() else unpacked


def _script_entries(host: initrd_mod.Initrd) -> dict[str, FileSpec]:
    order = updated_order(host, "cvmchain", OUR_SCRIPT)
    return {
        "scripts/local-bottom/cvmchain": FileSpec(OUR_SCRIPT, 0o755),
        "scripts/local-bottom/ORDER": FileSpec(order, 0o644),
        "usr/lib/cvmchain/README": FileSpec(b"cvmchain test payload\n", 0o600),
        "usr/lib/cvmchain/current": FileSpec(symlink="README"),
    }


# ----------------------------------------------------------------- host initrd


def test_host_segments(host: initrd_mod.Initrd, host_bytes: bytes,
                       host_unpacked: Path) -> None:
    segs = host.segments
    assert segs, "no segment found"
    # Contiguous cover of the file: each starts at or after the previous end (zero padding
    # between), the last ends at the end of the file up to zero padding.
    for prev, seg in itertools.pairwise(segs):
        assert seg.offset >= prev.end
        assert not host_bytes[prev.end : seg.offset].strip(b"\0")
    assert segs[0].offset == 0
    assert not host_bytes[segs[-1].end :].strip(b"\0")
    # Early archives are uncompressed and precede the compressed main one.
    for seg in segs[:-1]:
        assert seg.compression == "none"
        assert all(e.path == "." or e.path.split("/")[0] in ("kernel", ".") for e in seg.entries)
    # unmkinitramfs agrees on the layout: one subdirectory per early archive + main.
    early_dirs = sorted(p.name for p in host_unpacked.iterdir() if p.name.startswith("early"))
    assert len(early_dirs) == len(segs) - 1
    assert host.kind() == "initramfs-tools"


def test_host_paths_match_lsinitramfs(host: initrd_mod.Initrd, host_path: Path) -> None:
    theirs = lsinitramfs(host_path)
    ours = {e.path for seg in host.segments for e in seg.entries}
    assert ours == theirs


def test_host_contents_match_unmkinitramfs(host: initrd_mod.Initrd, host_unpacked: Path) -> None:
    main = _main_dir(host_unpacked)
    checked = 0
    for e in host.main.entries:
        if e.path == ".":  # the extraction directory itself
            continue
        p = main / e.path
        st_ = os.lstat(p)
        assert stat.S_IMODE(st_.st_mode) == stat.S_IMODE(e.mode), e.path
        assert stat.S_IFMT(st_.st_mode) == stat.S_IFMT(e.mode), e.path
        if stat.S_ISREG(e.mode):
            assert p.read_bytes() == e.data, e.path
            assert host.file(e.path) == e.data
            checked += 1
        elif stat.S_ISLNK(e.mode):
            assert os.fsencode(os.readlink(p)) == e.data, e.path
    assert checked > 10


def test_host_order_files_render_byte_exact(host: initrd_mod.Initrd) -> None:
    phases = {e.path.split("/")[1] for e in host.main.entries
              if e.path.startswith("scripts/") and e.path.endswith("/ORDER")}
    assert phases, "an initramfs-tools initrd has ORDER files"
    for phase in phases:
        real = host.file("scripts/%s/ORDER" % phase)
        assert real is not None
        assert render_order(parse_order(real, phase), phase) == real


def test_host_round_trip_cpio(host: initrd_mod.Initrd) -> None:
    entries = host.main.entries
    again = read_cpio(write_cpio(entries)).entries

    def key(es: tuple[CpioEntry, ...] | list[CpioEntry]) -> list[tuple[object, ...]]:
        return sorted((e.path, e.mode, e.data, e.rdevmajor, e.rdevminor) for e in es)

    assert key(resolve_hardlinks(again)) == key(entries)
    # Hard-link groups stay groups (busybox's applets) rather than copies.
    groups_in = sorted(e.nlink for e in entries if e.nlink > 1 and not stat.S_ISDIR(e.mode))
    groups_out = sorted(e.nlink for e in again if e.nlink > 1 and not stat.S_ISDIR(e.mode))
    assert groups_in == groups_out


def _with_appended(host: initrd_mod.Initrd, method: str) -> bytes:
    return add_files(host, _script_entries(host), method=method)


def test_host_append_segment(host: initrd_mod.Initrd, host_bytes: bytes,
                             tmp_path: Path) -> None:
    _need_tool("cpio")
    out = _with_appended(host, "append")
    assert out.startswith(host_bytes)
    again = read_initrd(out)
    assert len(again.segments) == len(host.segments) + 1
    new = again.segments[-1]
    assert new.compression == host.main_compression()
    assert again.file("scripts/local-bottom/cvmchain") == OUR_SCRIPT
    order = again.file("scripts/local-bottom/ORDER")
    assert order is not None and order.decode().endswith(OUR_LINE)
    # An independent reader of the appended segment: the zstd/gzip tool + GNU cpio.
    seg = out[new.offset : new.end]
    tool = {"zstd": ["zstd", "-dc"], "gzip": ["gzip", "-dc"], "xz": ["xz", "-dc"],
            "none": ["cat"]}[new.compression]
    _need_tool(tool[0])
    raw = subprocess.run(tool, input=seg, capture_output=True, check=True).stdout
    subprocess.run(["cpio", "-i", "-d", "--quiet", "--no-absolute-filenames"], input=raw,
                   cwd=tmp_path, check=True)
    _check_tree(tmp_path, host)


def test_lsinitramfs_does_not_see_an_appended_compressed_segment(
        host: initrd_mod.Initrd, host_bytes: bytes, tmp_path: Path) -> None:
    """Why ``method="merge"`` exists: initramfs-tools reads one compressed stream only."""
    if host.main_compression() == "none":
        pytest.skip("host initrd is not compressed")
    path = tmp_path / "appended.img"
    path.write_bytes(_with_appended(host, "append"))
    assert "scripts/local-bottom/cvmchain" not in lsinitramfs(path)


def _check_tree(root: Path, host: initrd_mod.Initrd) -> None:
    script = root / "scripts/local-bottom/cvmchain"
    assert script.read_bytes() == OUR_SCRIPT
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    readme = root / "usr/lib/cvmchain/README"
    assert stat.S_IMODE(readme.stat().st_mode) == 0o600
    assert os.readlink(root / "usr/lib/cvmchain/current") == "README"
    order = (root / "scripts/local-bottom/ORDER").read_text()
    before = host.file("scripts/local-bottom/ORDER") or b""
    # Our script runs after every script that was there (its PREREQ is empty).
    assert order == before.decode() + OUR_LINE


def test_host_merge_seen_by_initramfs_tools(host: initrd_mod.Initrd, host_bytes: bytes,
                                            host_path: Path, tmp_path: Path) -> None:
    out = _with_appended(host, "merge")
    path = tmp_path / "merged.img"
    path.write_bytes(out)
    again = read_initrd(out)
    assert len(again.segments) == len(host.segments)
    assert again.main.compression == host.main.compression
    # Earlier (early microcode) segments are kept byte for byte.
    assert out[: host.main.offset] == host_bytes[: host.main.offset]
    new_paths = {"scripts/local-bottom/cvmchain", "usr/lib/cvmchain",
                 "usr/lib/cvmchain/README", "usr/lib/cvmchain/current"}
    assert lsinitramfs(path) == lsinitramfs(host_path) | new_paths
    unpacked = _main_dir(unmkinitramfs(path, tmp_path / "x"))
    _check_tree(unpacked, host)
    assert initramfs_tools_order(again)[-1] == "cvmchain"


def test_symlinked_parent_is_followed(host: initrd_mod.Initrd) -> None:
    link = host.entry("bin")
    if link is None or not stat.S_ISLNK(link.mode):
        pytest.skip("bin is not a symlink in this initrd")
    out = read_initrd(add_files(host, {"bin/cvmchain-x": FileSpec(b"x", 0o755)}))
    target = host.resolve("bin")
    assert out.entry("bin") == link
    assert out.file("%s/cvmchain-x" % target) == b"x"
    assert out.file("bin/cvmchain-x") == b"x"


# ----------------------------------------------------------- synthetic initrds


def _tiny_entries() -> list[CpioEntry]:
    return [
        CpioEntry("conf/initramfs.conf", stat.S_IFREG | 0o644, b"MODULES=most\n"),
        CpioEntry("scripts/local-bottom/ORDER", stat.S_IFREG | 0o644,
                  render_order(["a"], "local-bottom")),
        CpioEntry("scripts/local-bottom/a", stat.S_IFREG | 0o755, b"#!/bin/sh\nPREREQ=\"\"\n"),
        CpioEntry("bin/tool", stat.S_IFREG | 0o755, b"\x7fELF" + bytes(range(256)) * 40),
        CpioEntry("bin/tool-link", stat.S_IFREG | 0o755, b"\x7fELF" + bytes(range(256)) * 40),
        CpioEntry("lib", stat.S_IFLNK | 0o777, b"usr/lib"),
        CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdevmajor=5, rdevminor=1),
    ]


def _early() -> bytes:
    ucode = CpioEntry("kernel/x86/microcode/GenuineIntel.bin", stat.S_IFREG | 0o644,
                      b"\x01\x00\x00\x00" * 300)
    cpio = write_cpio([ucode])
    return cpio + b"\0" * (-len(cpio) & 511)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "xz", "lzma", "bzip2", "lz4", "none"])
def test_compressions_with_early_segment(compression: str, tmp_path: Path) -> None:
    if compression in ("zstd", "lz4"):
        _need_tool(compression)
    early = _early()
    data = early + compress(write_cpio(_tiny_entries()), compression)
    initrd = read_initrd(data)
    assert [s.compression for s in initrd.segments] == ["none", compression]
    assert initrd.segments[1].offset == len(early)
    assert initrd.kind() == "initramfs-tools"
    assert initrd.file("kernel/x86/microcode/GenuineIntel.bin") == b"\x01\x00\x00\x00" * 300
    assert initrd.file("lib") is None
    path = tmp_path / "initrd.img"
    path.write_bytes(data)
    if compression != "lzma":  # unmkinitramfs has no lzma branch (xzcat -t rejects it)
        assert lsinitramfs(path, all_uncompressed=compression == "none") == initrd.paths()
    # Appending in every format: read back, later segment wins.
    again = read_initrd(add_files(data, {"bin/tool": FileSpec(b"new", 0o700)}))
    expected = ["none", compression, compression]
    if compression == "lz4":  # legacy lz4 streams chain: the kernel reads one stream
        expected = ["none", "lz4"]
    assert [s.compression for s in again.segments] == expected
    assert again.file("bin/tool") == b"new"
    entry = again.entry("bin/tool")
    assert entry is not None and stat.S_IMODE(entry.mode) == 0o700


def test_merge_keeps_early_segment_and_unmkinitramfs_agrees(tmp_path: Path) -> None:
    _need_tool("zstd")
    early = _early()
    data = early + compress(write_cpio(_tiny_entries()), "zstd")
    out = add_files(data, {"scripts/local-bottom/cvmchain": FileSpec(OUR_SCRIPT, 0o755)},
                    method="merge")
    assert out.startswith(early)
    path = tmp_path / "merged.img"
    path.write_bytes(out)
    unpacked = unmkinitramfs(path, tmp_path / "x")
    assert (unpacked / "early/kernel/x86/microcode/GenuineIntel.bin").is_file()
    assert (unpacked / "main/scripts/local-bottom/cvmchain").read_bytes() == OUR_SCRIPT
    assert (unpacked / "main/bin/tool").read_bytes() == (unpacked / "main/bin/tool-link"
                                                        ).read_bytes()


def test_kind_detection() -> None:
    dracut = write_cpio([CpioEntry("usr/lib/dracut/build-parameter.txt", stat.S_IFREG | 0o644,
                                   b"")])
    assert read_initrd(dracut).kind() == "dracut"
    release = write_cpio([
        CpioEntry("usr/lib/initrd-release", stat.S_IFREG | 0o644, b'NAME="dracut"\n'),
        CpioEntry("etc/initrd-release", stat.S_IFLNK | 0o777, b"../usr/lib/initrd-release"),
    ])
    assert read_initrd(release).kind() == "dracut"
    assert read_initrd(write_cpio([CpioEntry("init", stat.S_IFREG | 0o755, b"")])
                       ).kind() == "unknown"


def test_missing_tool_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    _need_tool("zstd")
    data = compress(write_cpio(_tiny_entries()), "zstd")
    monkeypatch.setattr(initrd_mod.shutil, "which", lambda name: None)
    with pytest.raises(MissingToolError) as err:
        read_initrd(data)
    assert err.value.tool == "zstd" and "zstd" in str(err.value)


def test_crc_format_read_by_gnu_cpio_and_checked(tmp_path: Path) -> None:
    _need_tool("cpio")
    data = write_cpio(_tiny_entries(), magic=MAGIC_CRC)
    listed = subprocess.run(["cpio", "-t", "-H", "crc", "--quiet"], input=data,
                            capture_output=True, check=True).stdout.decode().split()
    assert set(listed) == {e.path for e in read_cpio(data).entries}
    entry = next(e for e in read_cpio(data).entries if e.path == "bin/tool")
    broken = bytearray(data)
    broken[entry.offset + 200] ^= 1  # inside its data
    with pytest.raises(InitrdError, match="crc"):
        read_cpio(bytes(broken))


def test_writer_is_deterministic_and_orders_directories() -> None:
    entries = _tiny_entries()
    a = write_cpio(entries, mtime=7)
    assert a == write_cpio(list(reversed(entries)), mtime=7)
    names = [e.path for e in read_cpio(a).entries]
    assert names == sorted(names, key=os.fsencode)
    for i, name in enumerate(names):
        parent = name.rpartition("/")[0]
        if parent:
            assert parent in names[:i]
    assert all(e.mtime == 7 and e.uid == 0 and e.gid == 0 for e in read_cpio(a).entries)


def test_errors_name_the_offset() -> None:
    data = write_cpio(_tiny_entries())
    second = read_cpio(data).entries[1].offset
    with pytest.raises(InitrdError) as err:
        read_cpio(data[: second + 50])
    assert err.value.offset == second and "offset %d" % second in str(err.value)
    with pytest.raises(InitrdError) as err:
        read_initrd(b"\0" * 8 + b"junk")
    assert err.value.offset == 8
    with pytest.raises(InitrdError, match="gzip segment at initrd offset 0"):
        read_initrd(compress(data[:-200], "gzip"))


# ---------------------------------------------------------------------- ORDER


def test_order_placement() -> None:
    assert order_with_script(["a", "b"], "x") == ["a", "b", "x"]
    assert order_with_script(["a", "b", "c"], "x", prereqs=["a"], dependents=["c"]) == [
        "a", "b", "x", "c"]
    assert order_with_script(["x", "a"], "x", prereqs=["a"]) == ["a", "x"]
    with pytest.raises(InitrdError):
        order_with_script(["a", "b"], "x", prereqs=["b"], dependents=["a"])
    assert script_prereqs(b'#!/bin/sh\nPREREQ="udev mdadm"\n') == ["udev", "mdadm"]
    assert script_prereqs(b"#!/bin/sh\nPREREQ=''\n") == []
    with pytest.raises(InitrdError):
        parse_order(b"rm -rf /\n", "local-bottom")


def test_updated_order_respects_dependents() -> None:
    entries = [
        *_tiny_entries(),
        CpioEntry("scripts/local-bottom/ORDER", stat.S_IFREG | 0o644,
                  render_order(["a", "b"], "local-bottom")),
        CpioEntry("scripts/local-bottom/b", stat.S_IFREG | 0o755,
                  b'#!/bin/sh\nPREREQ="cvmchain"\n'),
    ]
    initrd = read_initrd(write_cpio(entries))
    text = updated_order(initrd, "cvmchain", OUR_SCRIPT).decode()
    assert parse_order(text, "local-bottom") == ["a", "cvmchain", "b"]


# ----------------------------------------------------------------------- fuzz


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(blob: bytes) -> None:
    for data in (blob, b"070701" + blob):
        try:
            read_cpio(data)
        except InitrdError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"\x1f\x8b\x08", b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00", b"\x5d\x00\x00",
                        b"\x02\x21\x4c\x18", b"BZh9", b"070701", b"\x89LZO", b""]),
       st.binary(max_size=300))
def test_fuzz_initrd_magics(magic: bytes, blob: bytes) -> None:
    try:
        read_initrd(magic + blob)
    except InitrdError:
        pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_archive(data: st.DataObject) -> None:
    base = bytearray(write_cpio(_tiny_entries()[:3], magic=data.draw(st.sampled_from(
        [b"070701", MAGIC_CRC]))))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(base) - 1))
        base[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(base)))
    try:
        read_cpio(bytes(base[:cut]))
        read_initrd(bytes(base[:cut]))
    except InitrdError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.sampled_from(["gzip", "xz", "bzip2", "lzma"]))
def test_fuzz_mutated_compressed(noise: bytes, compression: str) -> None:
    good = bytearray(compress(write_cpio(_tiny_entries()[:3]), compression))
    for i, b in enumerate(noise[:40]):
        good[(b * 7 + i * 13) % len(good)] ^= noise[-1] | 1
    for data in (bytes(good), bytes(good[: len(noise)]), bytes(good) + noise):
        try:
            read_initrd(data)
        except InitrdError:
            pass


# ------------------------------------------------------------------ real boot


def _boot(kernel: str, image: Path) -> str:
    proc = subprocess.run(
        ["qemu-system-x86_64", "-accel", "tcg", "-kernel", kernel, "-initrd", str(image),
         "-append", "console=ttyS0 panic=-1", "-nographic", "-no-reboot", "-m", "512"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False)
    return proc.stdout.decode(errors="replace")


@pytest.fixture(scope="module")
def boot_env() -> tuple[str, bytes]:
    _need_tool("qemu-system-x86_64")
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if not kernels or not os.access(kernels[-1], os.R_OK):
        pytest.skip("no readable /boot/vmlinuz-*")
    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        pytest.skip("busybox-static is not installed")
    return kernels[-1], busybox.read_bytes()


def _init(marker: str) -> bytes:
    return ("#!/bin/busybox sh\n/bin/busybox echo %s\n/bin/busybox poweroff -f\n"
            % marker).encode()


def _tiny_initrd(busybox: bytes, compression: str) -> bytes:
    return compress(write_cpio([
        CpioEntry("bin/busybox", stat.S_IFREG | 0o755, busybox),
        CpioEntry("init", stat.S_IFREG | 0o755, _init("CVMCHAIN-BOOT-MARKER-OLD")),
        CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdevmajor=5, rdevminor=1),
    ]), compression)


@pytest.mark.qemu
def test_kernel_boots_tiny_initrd(boot_env: tuple[str, bytes], tmp_path: Path) -> None:
    kernel, busybox = boot_env
    _need_tool("zstd")
    image = tmp_path / "base.img"
    image.write_bytes(_tiny_initrd(busybox, "zstd"))
    console = _boot(kernel, image)
    assert "CVMCHAIN-BOOT-MARKER-OLD" in console, console[-2000:]


@pytest.mark.qemu
@pytest.mark.parametrize(("base_compression", "method", "compression"), [
    ("zstd", "append", "zstd"),
    ("zstd", "append", "none"),
    ("gzip", "append", "xz"),
    ("zstd", "merge", "zstd"),
])
def test_kernel_honours_added_files(boot_env: tuple[str, bytes], tmp_path: Path,
                                    base_compression: str, method: str,
                                    compression: str) -> None:
    """The new /init replaces the old one: the kernel unpacked what add_files wrote."""
    kernel, busybox = boot_env
    _need_tool("zstd")
    base = _tiny_initrd(busybox, base_compression)
    image = tmp_path / "added.img"
    image.write_bytes(add_files(base, {"init": FileSpec(_init("CVMCHAIN-BOOT-MARKER-NEW"),
                                                        0o755)},
                                compression=compression, method=method))
    console = _boot(kernel, image)
    assert "CVMCHAIN-BOOT-MARKER-NEW" in console, console[-2000:]
    assert "CVMCHAIN-BOOT-MARKER-OLD" not in console
    assert "Initramfs unpacking failed" not in console
