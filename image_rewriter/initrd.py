"""Read a Linux initrd made of cpio segments, and add files to it on the host.

An initrd is a sequence of segments that the kernel unpacks in order, later files
replacing earlier ones (``init/initramfs.c``, ``unpack_to_rootfs``): uncompressed newc
archives (the early microcode one of Debian and dracut), each starting 4-byte aligned,
and compressed streams (gzip, zstd, xz, lzma, bzip2, lz4 legacy) whose content is one
or more archives; zero bytes between segments are skipped.

:func:`read_initrd` splits and lists it; :func:`add_files` writes the cvmchain files in
either by appending a segment (``method="append"``: the kernel honours it; Debian's
``lsinitramfs``/``unmkinitramfs`` read only the first compressed stream and do not see
it) or by rewriting the main (last) segment with the files merged in
(``method="merge"``: seen by the kernel and by initramfs-tools' tools alike; earlier
segments are kept byte for byte). The initramfs-tools helpers at the end compute the
``scripts/<phase>/ORDER`` file exactly as ``cache_run_scripts`` in
``/usr/share/initramfs-tools/hook-functions`` writes it.
"""

import bz2
import lzma
import os
import re
import shutil
import stat
import subprocess
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from image_rewriter.cpio import (
    DEFAULT_DIR_MODE,
    MAGIC_CRC,
    MAGIC_NEWC,
    CpioEntry,
    normalize_path,
    read_cpio,
    resolve_hardlinks,
    write_cpio,
)
from image_rewriter.errors import InitrdError, MissingToolError

#: Largest decompressed segment accepted (a guard against decompression bombs).
MAX_UNPACKED = 4 << 30

NONE = "none"
GZIP = "gzip"
ZSTD = "zstd"
XZ = "xz"
LZMA = "lzma"
LZ4 = "lz4"
BZIP2 = "bzip2"
COMPRESSIONS = (NONE, GZIP, ZSTD, XZ, LZMA, LZ4, BZIP2)
SAME_AS_MAIN = "same-as-main"

# Magic numbers, as the kernel's lib/decompress.c matches them.
_MAGICS = (
    (b"\x1f\x8b", GZIP),
    (b"\x1f\x9e", GZIP),
    (b"\x28\xb5\x2f\xfd", ZSTD),
    (b"\xfd7zXZ\x00", XZ),
    (b"\x5d\x00\x00", LZMA),
    (b"\x02\x21\x4c\x18", LZ4),
    (b"BZh", BZIP2),
)
_LZO_MAGIC = b"\x89LZO"
_LZ4_LEGACY_MAGIC = 0x184C2102
_LZ4_MAX_BLOCK = (8 << 20) + (8 << 20) // 255 + 16  # LZ4_COMPRESSBOUND(8 MiB)
_NONZERO = re.compile(rb"[^\x00]")

# mkinitramfs' default levels (zstd and lz4: 9; the others: the tool's default, gzip 6).
_DEFAULT_LEVEL = {GZIP: 6, ZSTD: 9, XZ: 6, LZMA: 6, LZ4: 9, BZIP2: 9}
_TOOL_PACKAGE = {ZSTD: "zstd", LZ4: "lz4"}


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Segment:
    """One segment: ``[offset, end)`` of the initrd, its compression and members.

    ``entries`` lists the members of every archive of the segment in archive order
    (hard links resolved: each member of a link group has the group's data).
    """

    offset: int
    end: int
    compression: str
    entries: tuple[CpioEntry, ...] = field(repr=False)
    unpacked_size: int


@dataclass(frozen=True)
class FileSpec:
    """A file to write into an initrd: regular file, symbolic link or directory.

    ``mode`` holds the permission bits only (the type comes from the other fields).
    """

    content: bytes = b""
    mode: int = 0o644
    symlink: str | None = None
    directory: bool = False

    def entry(self, path: str) -> CpioEntry:
        """The cpio member that creates this file at ``path``."""
        if self.symlink is not None and (self.directory or self.content):
            raise InitrdError("FileSpec for %s: a symlink has no content and is no directory"
                              % path)
        if self.directory and self.content:
            raise InitrdError("FileSpec for %s: a directory has no content" % path)
        perm = self.mode & 0o7777
        if self.symlink is not None:
            return CpioEntry(path, stat.S_IFLNK | 0o777, os.fsencode(self.symlink))
        if self.directory:
            return CpioEntry(path, stat.S_IFDIR | perm)
        return CpioEntry(path, stat.S_IFREG | perm, bytes(self.content))


@dataclass
class Initrd:
    """A split initrd: its bytes and segments, with the merged view the kernel builds."""

    data: bytes = field(repr=False)
    segments: tuple[Segment, ...]
    _view: dict[str, CpioEntry] | None = field(default=None, repr=False)

    def view(self) -> dict[str, CpioEntry]:
        """Path (normalized, ``.`` for the root) -> the entry that wins (the last one)."""
        if self._view is None:
            view: dict[str, CpioEntry] = {}
            for seg in self.segments:
                for e in seg.entries:
                    view[e.path] = e
            self._view = view
        return self._view

    def paths(self) -> set[str]:
        """Every path the unpacked initrd has."""
        return set(self.view())

    def entry(self, path: str) -> CpioEntry | None:
        """The member that wins for ``path`` (not following symbolic links), or None."""
        return self.view().get(normalize_path(path))

    def file(self, path: str) -> bytes | None:
        """Content of the regular file at ``path`` (symlinks followed), else None."""
        resolved = self.resolve(path)
        e = self.view().get(resolved) if resolved is not None else None
        if e is None or not stat.S_ISREG(e.mode):
            return None
        return e.data

    def resolve(self, path: str, follow_last: bool = True) -> str | None:
        """``path`` with symbolic links of the initrd followed, as the kernel would.

        Returns the normalized path (which may not exist), or None on a link loop.
        With ``follow_last`` False only the parent components are resolved.
        """
        view = self.view()
        todo = [c for c in normalize_path(path).split("/") if c not in ("", ".")]
        done: list[str] = []
        hops = 0
        while todo:
            comp = todo.pop(0)
            if comp == "..":
                if done:
                    done.pop()
                continue
            candidate = "/".join([*done, comp])
            e = view.get(candidate)
            if e is not None and stat.S_ISLNK(e.mode) and (todo or follow_last):
                hops += 1
                if hops > 40:
                    return None
                target = os.fsdecode(e.data)
                if target.startswith("/"):
                    done = []
                todo = [c for c in target.split("/") if c not in ("", ".")] + todo
                continue
            done.append(comp)
        return "/".join(done) or "."

    @property
    def main(self) -> Segment:
        """The last segment: the main archive in initrds made by mkinitramfs or dracut."""
        if not self.segments:
            raise InitrdError("initrd has no segment")
        return self.segments[-1]

    def main_compression(self) -> str:
        """Compression of the last compressed segment, or ``none`` if there is none."""
        for seg in reversed(self.segments):
            if seg.compression != NONE:
                return seg.compression
        return NONE

    def kind(self) -> str:
        """``dracut``, ``initramfs-tools`` or ``unknown``, from what the initrd holds."""
        paths = self.view()
        if any(p == "usr/lib/dracut" or p.startswith("usr/lib/dracut/") for p in paths):
            return "dracut"
        for rel in ("etc/initrd-release", "usr/lib/initrd-release"):
            content = self.file(rel)
            if content is not None and b"dracut" in content.lower():
                return "dracut"
        if "conf/initramfs.conf" in paths and any(p.startswith("scripts/") for p in paths):
            return "initramfs-tools"
        return "unknown"


# --------------------------------------------------------------------- compression


def detect_compression(data: bytes, pos: int = 0) -> str | None:
    """Compression whose magic starts at ``pos``; ``none`` for a cpio header; else None."""
    head = bytes(data[pos : pos + 6])
    if head in (MAGIC_NEWC, MAGIC_CRC):
        return NONE
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    return None


def _need(data: bytes, end: int, what: str, pos: int) -> None:
    if end > len(data):
        raise InitrdError("%s: truncated (needs %d bytes, initrd has %d)"
                          % (what, end, len(data)), pos)


def _zstd_frame_end(data: bytes, pos: int) -> int:
    """End of the zstd frame at ``pos`` (RFC 8878 §3.1.1), found by walking its blocks."""
    p = pos + 4
    _need(data, p + 1, "zstd frame header", pos)
    fhd = data[p]
    p += 1
    if fhd & 0x08:
        raise InitrdError("zstd: reserved bit set in frame header", pos)
    single = (fhd >> 5) & 1
    p += (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + (single, 2, 4, 8)[fhd >> 6]
    while True:
        _need(data, p + 3, "zstd block header", p)
        bh = data[p] | data[p + 1] << 8 | data[p + 2] << 16
        btype = (bh >> 1) & 3
        if btype == 3:
            raise InitrdError("zstd: reserved block type", p)
        p += 3 + (1 if btype == 1 else bh >> 3)
        _need(data, p, "zstd block", pos)
        if bh & 1:
            break
    if fhd & 0x04:
        p += 4
        _need(data, p, "zstd content checksum", pos)
    return p


def _lz4_legacy_end(data: bytes, pos: int) -> int:
    """End of the lz4 legacy stream at ``pos``: its blocks until EOF, a zero or oversized
    block size (the start of what follows), as the lz4 tool reads it."""
    p = pos + 4
    while p + 4 <= len(data):
        n = int.from_bytes(data[p : p + 4], "little")
        if n == _LZ4_LEGACY_MAGIC:
            p += 4
            continue
        if n == 0 or n > _LZ4_MAX_BLOCK:
            break
        _need(data, p + 4 + n, "lz4 block", p)
        p += 4 + n
    return p


def _require_tool(name: str, purpose: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(name, _TOOL_PACKAGE[name], purpose)
    return path


def _run_tool(argv: list[str], payload: bytes, what: str, pos: int | None) -> bytes:
    tool = _require_tool(argv[0], what)
    proc = subprocess.run([tool, *argv[1:]], input=payload, capture_output=True, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip()
        raise InitrdError("%s: %s failed: %s" % (what, argv[0], msg), pos)
    return proc.stdout


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: memoryview, max_length: int = ..., /) -> bytes: ...


def _python_stream(data: bytes, pos: int, name: str,
                   make: Callable[[], _Decompressor]) -> tuple[bytes, int]:
    d = make()
    try:
        out = d.decompress(memoryview(data)[pos:], MAX_UNPACKED)
    except (zlib.error, lzma.LZMAError, OSError, ValueError, EOFError) as e:
        raise InitrdError("%s: corrupt stream: %s" % (name, e), pos) from e
    if not d.eof:
        if len(out) >= MAX_UNPACKED:
            raise InitrdError("%s: unpacks to more than %d bytes" % (name, MAX_UNPACKED), pos)
        raise InitrdError("%s: stream is truncated" % name, pos)
    return out, len(data) - len(d.unused_data)


def decompress_segment(data: bytes, pos: int, compression: str) -> tuple[bytes, int]:
    """Unpack the compressed stream at ``pos``; returns (content, end of the stream)."""
    if compression == GZIP:
        return _python_stream(data, pos, GZIP, lambda: zlib.decompressobj(31))
    if compression == XZ:
        return _python_stream(data, pos, XZ, lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ))
    if compression == LZMA:
        return _python_stream(data, pos, LZMA,
                              lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE))
    if compression == BZIP2:
        return _python_stream(data, pos, BZIP2, bz2.BZ2Decompressor)
    if compression == ZSTD:
        end = _zstd_frame_end(data, pos)
        return _run_tool(["zstd", "-q", "-d", "-c"], bytes(data[pos:end]),
                         "decompress a zstd initrd segment", pos), end
    if compression == LZ4:
        end = _lz4_legacy_end(data, pos)
        return _run_tool(["lz4", "-q", "-d", "-c"], bytes(data[pos:end]),
                         "decompress an lz4 initrd segment", pos), end
    raise InitrdError("unknown compression %r" % compression, pos)


def compress(payload: bytes, compression: str, level: int | None = None) -> bytes:
    """Compress ``payload`` in a form the kernel unpacks (xz with CRC32, lz4 legacy).

    Deterministic: gzip without name and time, zstd single-threaded.
    """
    if compression == NONE:
        return payload
    if compression not in _DEFAULT_LEVEL:
        raise InitrdError("unknown compression %r (known: %s)" % (compression,
                                                                   ", ".join(COMPRESSIONS)))
    if level is None:
        level = _DEFAULT_LEVEL[compression]
    if compression == GZIP:
        c = zlib.compressobj(level, zlib.DEFLATED, 31)
        return c.compress(payload) + c.flush()
    if compression == XZ:
        return lzma.compress(payload, lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=level)
    if compression == LZMA:
        return lzma.compress(payload, lzma.FORMAT_ALONE, preset=level)
    if compression == BZIP2:
        return bz2.compress(payload, level)
    if compression == ZSTD:
        return _run_tool(["zstd", "-q", "-%d" % level, "-c"], payload,
                         "compress a zstd initrd segment", None)
    # lz4, in the legacy format the kernel reads (as mkinitramfs' "lz4 -l").
    return _run_tool(["lz4", "-q", "-l", "-%d" % level, "-c"], payload,
                     "compress an lz4 initrd segment", None)


# ------------------------------------------------------------------------ reading


def _archives(payload: bytes, compression: str, base: int) -> list[CpioEntry]:
    """Members of the archives of one decompressed payload (zero padding between them).

    Errors name the segment's offset in the initrd and the offset in its content.
    """
    entries: list[CpioEntry] = []
    pos = 0
    where = "content of the %s segment at initrd offset %d" % (compression, base)
    while True:
        m = _NONZERO.search(payload, pos)
        if m is None:
            return resolve_hardlinks(entries)
        pos = m.start()
        if pos & 3 or payload[pos : pos + 6] not in (MAGIC_NEWC, MAGIC_CRC):
            raise InitrdError("%s: not a 4-byte aligned cpio header" % where, pos)
        try:
            archive = read_cpio(payload, pos)
        except InitrdError as e:
            raise InitrdError("%s: %s" % (where, e), None) from e
        entries.extend(archive.entries)
        pos = archive.end


def read_initrd(data: bytes) -> Initrd:
    """Split ``data`` into its segments and read their members.

    Raises InitrdError (with the offset) on data that is neither a cpio header nor a
    known compressed stream, a corrupt stream or archive, and MissingToolError when
    ``zstd`` or ``lz4`` is needed but absent.
    """
    data = bytes(data)
    segments: list[Segment] = []
    pos = 0
    while True:
        m = _NONZERO.search(data, pos)
        if m is None:
            break
        pos = m.start()
        compression = detect_compression(data, pos)
        if compression == NONE:
            if pos & 3:
                raise InitrdError("uncompressed archive does not start 4-byte aligned", pos)
            archive = read_cpio(data, pos)
            segments.append(Segment(pos, archive.end, NONE,
                                    tuple(resolve_hardlinks(archive.entries)),
                                    archive.end - pos))
            pos = archive.end
            continue
        if compression is None:
            if data.startswith(_LZO_MAGIC, pos):
                raise InitrdError("lzo-compressed initrd segments are not supported", pos)
            raise InitrdError("neither a cpio archive nor a known compressed stream "
                              "(magic %s)" % data[pos : pos + 6].hex(), pos)
        payload, end = decompress_segment(data, pos, compression)
        if end <= pos:
            raise InitrdError("%s stream consumed no input" % compression, pos)
        segments.append(Segment(pos, end, compression, tuple(_archives(payload, compression, pos)),
                                len(payload)))
        pos = end
    return Initrd(data, tuple(segments))


# ------------------------------------------------------------------------ writing


def _new_entries(initrd: Initrd, files: Mapping[str, FileSpec]) -> list[CpioEntry]:
    """Members for ``files``, placed where the initrd's symlinks lead, plus their missing
    parent directories with the modes the initrd gives them."""
    out: dict[str, CpioEntry] = {}
    for raw, spec in files.items():
        path = normalize_path(raw)
        if path == "." or ".." in path.split("/") or "\0" in path:
            raise InitrdError("add_files: refusing path %r" % raw)
        resolved = initrd.resolve(path, follow_last=False)
        if resolved is None or resolved == "." or resolved.startswith(".."):
            raise InitrdError("add_files: %r leads outside the initrd or into a link loop"
                              % raw)
        out[resolved] = spec.entry(resolved)
    for path in list(out):
        parent = path.rpartition("/")[0]
        while parent and parent not in out:
            existing = initrd.entry(parent)
            if existing is not None and not stat.S_ISDIR(existing.mode):
                raise InitrdError("add_files: parent %s of %s is not a directory"
                                  % (parent, path))
            mode = existing.mode if existing is not None else DEFAULT_DIR_MODE
            out[parent] = CpioEntry(parent, mode)
            parent = parent.rpartition("/")[0]
    return list(out.values())


def add_files(initrd: bytes | Initrd, files: Mapping[str, FileSpec],
              compression: str = SAME_AS_MAIN, method: str = "append",
              level: int | None = None, mtime: int | None = None) -> bytes:
    """A new initrd with ``files`` (path -> FileSpec) added, replacing same paths.

    Paths go where the initrd's symlinks lead (``bin/x`` lands in ``usr/bin/x`` when
    ``bin`` is a link to ``usr/bin``); missing directories are created with mode 0755,
    existing ones keep their mode. ``method="append"`` adds one segment after the
    last, compressed with ``compression`` (``same-as-main``: the main segment's; an
    uncompressed one is put at the next 4-byte offset, as the kernel wants);
    ``method="merge"`` rewrites the main (last) segment with the files merged in,
    compressed with ``compression`` too. ``initrd`` is the initrd's
    bytes or, to save splitting it again, what :func:`read_initrd` returned for them.
    """
    if not isinstance(initrd, Initrd):
        initrd = read_initrd(initrd)
    if compression == SAME_AS_MAIN:
        compression = initrd.main_compression()
    if compression not in COMPRESSIONS:
        raise InitrdError("unknown compression %r (known: %s, %s)"
                          % (compression, SAME_AS_MAIN, ", ".join(COMPRESSIONS)))
    new = _new_entries(initrd, files)
    data = initrd.data
    if method == "append":
        segment = compress(write_cpio(new, mtime=mtime), compression, level)
        if compression == NONE:  # the kernel reads a cpio header only at 4-byte offsets
            return data + b"\0" * (-len(data) & 3) + segment
        return data + segment  # no padding: zstd and lz4 tools reject zeros between frames
    if method == "merge":
        main = initrd.main
        segment = compress(write_cpio([*main.entries, *new], mtime=mtime), compression, level)
        head = data[: main.offset]
        return head + b"\0" * (-len(head) & 3) + segment
    raise InitrdError("unknown method %r (append or merge)" % method)


# ---------------------------------------------------------- initramfs-tools ORDER

PARAM_LINE = "[ -e /conf/param.conf ] && . /conf/param.conf"
_PREREQ = re.compile(r"""^\s*PREREQ=(?:"([^"]*)"|'([^']*)'|(\S*))""", re.MULTILINE)


def parse_order(text: bytes | str, phase: str) -> list[str]:
    """Script names of an ORDER file of ``scripts/<phase>``, in order."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    prefix = "/scripts/%s/" % phase
    names = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line == PARAM_LINE:
            continue
        if line.startswith(prefix) and line.endswith(' "$@"'):
            name = line[len(prefix) : -5]
            if name and "/" not in name and " " not in name:
                names.append(name)
                continue
        raise InitrdError("scripts/%s/ORDER line %d is not as initramfs-tools writes it: %r"
                          % (phase, n, line))
    return names


def render_order(names: Iterable[str], phase: str) -> bytes:
    """ORDER text for ``names``, as ``cache_run_scripts`` writes it."""
    return "".join('/scripts/%s/%s "$@"\n%s\n' % (phase, name, PARAM_LINE)
                   for name in names).encode()


def script_prereqs(script: bytes | str) -> list[str]:
    """The ``PREREQ="..."`` names a boot script declares (empty if none)."""
    if isinstance(script, bytes):
        script = script.decode("utf-8", "surrogateescape")
    m = _PREREQ.search(script)
    if m is None:
        return []
    return (m.group(1) or m.group(2) or m.group(3) or "").split()


def initramfs_tools_order(initrd: Initrd, phase: str = "local-bottom") -> list[str]:
    """Script names of ``scripts/<phase>/ORDER`` in run order ([] when absent)."""
    text = initrd.file("scripts/%s/ORDER" % phase)
    return [] if text is None else parse_order(text, phase)


def phase_scripts(initrd: Initrd, phase: str) -> dict[str, bytes]:
    """Regular files of ``scripts/<phase>/`` other than ORDER, by name."""
    prefix = "scripts/%s/" % phase
    out = {}
    for path, e in initrd.view().items():
        name = path[len(prefix) :]
        if path.startswith(prefix) and "/" not in name and name != "ORDER" and stat.S_ISREG(
                e.mode):
            out[name] = e.data
    return out


def order_with_script(names: list[str], name: str, prereqs: Iterable[str] = (),
                      dependents: Iterable[str] = ()) -> list[str]:
    """``names`` with ``name`` placed after its prereqs and before the scripts that need
    it; with neither, last. An earlier occurrence of ``name`` is dropped first."""
    rest = [n for n in names if n != name]
    after = max((rest.index(p) + 1 for p in prereqs if p in rest), default=0)
    before = min((rest.index(d) for d in dependents if d in rest), default=len(rest))
    if after > before:
        raise InitrdError("cannot order %s: a prereq runs after a script that needs it"
                          % name)
    return [*rest[:before], name, *rest[before:]]


def updated_order(initrd: Initrd, name: str, script: bytes,
                  phase: str = "local-bottom") -> bytes:
    """The ORDER text of ``scripts/<phase>`` once boot script ``name`` is added."""
    scripts = phase_scripts(initrd, phase)
    dependents = [n for n, body in scripts.items() if name in script_prereqs(body)]
    names = order_with_script(initramfs_tools_order(initrd, phase), name,
                              script_prereqs(script), dependents)
    return render_order(names, phase)
