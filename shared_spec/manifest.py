"""The canonical root file system manifest (rootfs measurement mode ``tree``).

The agent (MicroPython, in the initrd) and the rewriter (CPython, at image
build time) walk the same paths and encode what they find with this module,
so both produce the same bytes; the measurement is SHA-384 of those bytes.

Format, version 1: a header line, then one line per file system object,
sorted by the raw bytes of its path, fields separated by one space::

    cvmchain-manifest 1
    <path> <type> <mode> <uid> <gid> <size> <content> <target> <xattrs>

- ``path``: absolute path inside the root (``/usr/bin/ls``), escaped;
- ``type``: ``f`` regular, ``d`` directory, ``l`` symlink, ``c`` / ``b``
  character / block device, ``p`` fifo, ``s`` socket, ``x`` an include path
  that does not exist;
- ``mode``: permission bits with set-id and sticky bits, 4 octal digits;
- ``uid`` / ``gid``: decimal;
- ``size``: bytes of a regular file, ``-`` otherwise;
- ``content``: SHA-384 hex of a regular file's content, ``<major>:<minor>``
  of a device, ``-`` otherwise;
- ``target``: a symlink's target (escaped), ``-`` otherwise;
- ``xattrs``: ``name=hex`` pairs joined by ``,`` in name order, for the
  recorded names (default ``security.capability`` and ``security.ima``), or
  ``-``.

Escaping: bytes outside 0x21..0x7E, and ``%`` ``,`` ``=``, become ``%XX``; a
field that is exactly ``-`` is written ``%2D``. Names need not be UTF-8.

Times, link counts, inode numbers and directory sizes are left out: they
differ between copies of the same tree. Symlinks are never followed; the walk
does not cross mount points; hard links appear once per path.
"""

from shared_spec.errors import FormatError

MANIFEST_HEADER = b"cvmchain-manifest 1\n"
DEFAULT_XATTRS = ("security.capability", "security.ima")

TYPE_FILE = "f"
TYPE_DIR = "d"
TYPE_SYMLINK = "l"
TYPE_CHAR = "c"
TYPE_BLOCK = "b"
TYPE_FIFO = "p"
TYPE_SOCKET = "s"
TYPE_ABSENT = "x"
TYPES = (TYPE_FILE, TYPE_DIR, TYPE_SYMLINK, TYPE_CHAR, TYPE_BLOCK, TYPE_FIFO, TYPE_SOCKET,
         TYPE_ABSENT)

# st_mode file type bits (POSIX)
S_IFMT = 0o170000
_MODE_TYPES = {
    0o100000: TYPE_FILE,
    0o040000: TYPE_DIR,
    0o120000: TYPE_SYMLINK,
    0o020000: TYPE_CHAR,
    0o060000: TYPE_BLOCK,
    0o010000: TYPE_FIFO,
    0o140000: TYPE_SOCKET,
}

_HEX = "0123456789ABCDEF"


def type_of_mode(st_mode: int) -> str:
    """Manifest type letter for an ``st_mode``."""
    t = _MODE_TYPES.get(st_mode & S_IFMT)
    if t is None:
        raise FormatError("unknown file type in mode 0o%o" % st_mode, None, "st_mode")
    return t


def split_rdev(rdev: int) -> tuple:
    """(major, minor) of a Linux ``st_rdev`` (glibc's gnu_dev_major/minor)."""
    major = ((rdev >> 8) & 0xFFF) | ((rdev >> 32) & ~0xFFF & 0xFFFFFFFF)
    minor = (rdev & 0xFF) | ((rdev >> 12) & ~0xFF & 0xFFFFFFFF)
    return major, minor


def escape(raw: bytes) -> str:
    """Escape path or target bytes for a manifest field."""
    if (raw and raw != b"-" and min(raw) > 0x20 and max(raw) < 0x7F and b"%" not in raw
            and b"," not in raw and b"=" not in raw):
        return raw.decode()  # nothing to escape: the common case, without a per-byte loop
    out = []
    for b in raw:
        if 0x21 <= b <= 0x7E and b not in (0x25, 0x2C, 0x3D):
            out.append(chr(b))
        else:
            out.append("%" + _HEX[b >> 4] + _HEX[b & 15])
    text = "".join(out)
    if text == "-":
        return "%2D"
    return text


def unescape(text: str) -> bytes:
    """Inverse of :func:`escape`."""
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "%":
            if i + 3 > n:
                raise FormatError("truncated escape in %r" % text, None, "path")
            try:
                out.append(int(text[i + 1:i + 3], 16))
            except ValueError:
                raise FormatError("bad escape in %r" % text, None, "path") from None
            i += 3
        else:
            out.append(ord(ch))
            i += 1
    return bytes(out)


class ManifestEntry:
    """One file system object of the manifest."""

    __slots__ = ("content", "gid", "mode", "path", "size", "target", "type", "uid", "xattrs")

    def __init__(self, path: bytes, type: str, mode: int = 0, uid: int = 0, gid: int = 0,
                 size: int | None = None, content: str | None = None,
                 target: bytes | None = None, xattrs: list | None = None) -> None:
        self.path = path
        self.type = type
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        #: sha384 hex for regular files, "major:minor" for devices
        self.content = content
        self.target = target
        #: list of (name bytes, value bytes)
        self.xattrs = xattrs or []

    def encode(self) -> bytes:
        """The entry's manifest line, with its newline."""
        if self.xattrs:
            pairs = sorted(self.xattrs)
            xa = ",".join(escape(n) + "=" + bytes(v).hex() for n, v in pairs)
        else:
            xa = "-"
        fields = (
            escape(self.path),
            self.type,
            "%04o" % (self.mode & 0o7777),
            str(self.uid),
            str(self.gid),
            "-" if self.size is None else str(self.size),
            "-" if self.content is None else self.content,
            "-" if self.target is None else escape(self.target),
            xa,
        )
        return (" ".join(fields) + "\n").encode()

    def key(self) -> bytes:
        return self.path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ManifestEntry) and self.encode() == other.encode()

    def __repr__(self) -> str:
        return "ManifestEntry(%r)" % self.encode()


def encode_manifest(entries: list) -> bytes:
    """Header plus entry lines sorted by path bytes; a path listed twice is kept once."""
    seen = {}
    for e in entries:
        seen[e.path] = e
    paths = sorted(seen)
    parts = [MANIFEST_HEADER]
    for p in paths:
        parts.append(seen[p].encode())
    return b"".join(parts)


def parse_manifest(data: bytes, source: str | None = None) -> list:
    """Decode a manifest; :class:`FormatError` names the line."""
    if not data.startswith(MANIFEST_HEADER):
        raise FormatError("not a cvmchain manifest (header %r)" % bytes(data[:24]), 0, "header",
                          source)
    out = []
    pos = len(MANIFEST_HEADER)
    lineno = 1
    prev = None
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            raise FormatError("line %d has no newline" % (lineno + 1), pos, "line", source)
        lineno += 1
        line = bytes(data[pos:end]).decode("ascii")
        f = line.split(" ")
        if len(f) != 9:
            raise FormatError("line %d: %d fields, expected 9" % (lineno, len(f)), pos, "line",
                              source)
        try:
            path = unescape(f[0])
            if f[1] not in TYPES:
                raise ValueError("type " + f[1])
            xattrs = []
            if f[8] != "-":
                for pair in f[8].split(","):
                    name, _, value = pair.partition("=")
                    xattrs.append((unescape(name), bytes.fromhex(value)))
            entry = ManifestEntry(path, f[1], int(f[2], 8), int(f[3]), int(f[4]),
                                  None if f[5] == "-" else int(f[5]),
                                  None if f[6] == "-" else f[6],
                                  None if f[7] == "-" else unescape(f[7]), xattrs)
        except (ValueError, FormatError) as e:
            raise FormatError("line %d: %s" % (lineno, e), pos, "line", source) from None
        if prev is not None and path <= prev:
            raise FormatError("line %d: paths not in byte order" % lineno, pos, "path", source)
        prev = path
        out.append(entry)
        pos = end + 1
    return out


def diff_manifests(expected: list, actual: list) -> tuple:
    """(added, removed, changed) paths: what ``actual`` has that ``expected`` has not, etc.

    ``changed`` lists (path, [field names that differ]).
    """
    a = {e.path: e for e in expected}
    b = {e.path: e for e in actual}
    added = sorted(p for p in b if p not in a)
    removed = sorted(p for p in a if p not in b)
    changed = []
    for p in sorted(a):
        if p in b and a[p].encode() != b[p].encode():
            fields = []
            for name in ("type", "mode", "uid", "gid", "size", "content", "target", "xattrs"):
                if getattr(a[p], name) != getattr(b[p], name):
                    fields.append(name)
            changed.append((p, fields))
    return added, removed, changed


def match_pattern(pattern: str, path: str) -> bool:
    """Shell-style match of an exclude pattern against a whole path.

    ``*`` and ``?`` do not match ``/``; ``**`` matches anything, ``/``
    included. A pattern matching a directory excludes everything under it.
    """
    return _match(pattern, 0, path, 0)


def _match(p: str, i: int, s: str, j: int) -> bool:
    while i < len(p):
        c = p[i]
        if c == "*":
            double = i + 1 < len(p) and p[i + 1] == "*"
            rest = i + 2 if double else i + 1
            k = j
            while True:
                if _match(p, rest, s, k):
                    return True
                if k >= len(s) or (not double and s[k] == "/"):
                    return False
                k += 1
        if j >= len(s):
            return False
        if c == "?":
            if s[j] == "/":
                return False
        elif c != s[j]:
            return False
        i += 1
        j += 1
    return j == len(s)


def is_excluded(path: bytes, patterns: list) -> bool:
    """True when ``path`` (bytes) matches one of the exclude ``patterns``."""
    if not patterns:
        return False
    text = escape(path)
    for pat in patterns:
        if match_pattern(pat, text):
            return True
    return False
