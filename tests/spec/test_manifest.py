"""Manifest encoder vectors (pytest and MicroPython)."""

from shared_spec.errors import FormatError
from shared_spec.manifest import (
    MANIFEST_HEADER,
    ManifestEntry,
    diff_manifests,
    encode_manifest,
    escape,
    is_excluded,
    match_pattern,
    parse_manifest,
    split_rdev,
    type_of_mode,
    unescape,
)
from tests.spec._compat import raises


def test_escape_round_trip_non_utf8_and_separators():
    raw = b"/usr/a b/\xff\xfe%,=\n-"
    text = escape(raw)
    assert " " not in text and "\n" not in text
    assert unescape(text) == raw
    assert escape(b"-") == "%2D"


def test_escape_each_byte_alone_and_inside_a_plain_name():
    # the plain-name shortcut and the per-byte path agree: every byte, alone and
    # between printable characters, escapes to %XX exactly when the format says so
    for b in range(256):
        keep = 0x21 <= b <= 0x7E and b not in (0x25, 0x2C, 0x3D)
        one = chr(b) if keep else "%%%02X" % b
        if b == 0x2D:
            assert escape(bytes([b])) == "%2D"
        else:
            assert escape(bytes([b])) == one
        assert escape(b"/a" + bytes([b]) + b"z") == "/a" + one + "z"
    assert escape(b"") == ""


def test_entry_line_layout():
    e = ManifestEntry(b"/usr/bin/x", "f", 0o104755, 0, 0, 3, "ab" * 48, None,
                      [(b"security.ima", b"\x01\x02"), (b"security.capability", b"\x00")])
    line = e.encode()
    assert line == (b"/usr/bin/x f 4755 0 0 3 " + b"ab" * 48 +
                    b" - security.capability=00,security.ima=0102\n")


def test_manifest_sorted_by_path_bytes_and_round_trip():
    entries = [
        ManifestEntry(b"/usr/b", "l", 0o777, 0, 0, None, None, b"../x y"),
        ManifestEntry(b"/usr", "d", 0o755),
        ManifestEntry(b"/usr/\xc3\xa9", "c", 0o600, 0, 5, None, "1:3"),
        ManifestEntry(b"/etc/missing", "x"),
    ]
    data = encode_manifest(entries)
    assert data.startswith(MANIFEST_HEADER)
    paths = [e.path for e in parse_manifest(data)]
    assert paths == [b"/etc/missing", b"/usr", b"/usr/b", b"/usr/\xc3\xa9"]
    assert encode_manifest(parse_manifest(data)) == data


def test_parse_rejects_unsorted_and_bad_lines():
    a = ManifestEntry(b"/b", "d", 0o755).encode()
    b = ManifestEntry(b"/a", "d", 0o755).encode()
    e = raises(FormatError, parse_manifest, MANIFEST_HEADER + a + b)
    assert "line 3" in e.message
    raises(FormatError, parse_manifest, MANIFEST_HEADER + b"/a d 0755\n")
    raises(FormatError, parse_manifest, b"nope\n")


def test_diff_names_added_removed_changed():
    old = [ManifestEntry(b"/a", "f", 0o644, 0, 0, 1, "00" * 48),
           ManifestEntry(b"/b", "f", 0o644, 0, 0, 1, "11" * 48)]
    new = [ManifestEntry(b"/a", "f", 0o644, 0, 0, 1, "22" * 48),
           ManifestEntry(b"/c", "d", 0o755)]
    added, removed, changed = diff_manifests(old, new)
    assert added == [b"/c"] and removed == [b"/b"]
    assert changed == [(b"/a", ["content"])]


def test_patterns():
    assert match_pattern("/usr/**/__pycache__", "/usr/lib/python3/x/__pycache__")
    assert match_pattern("/usr/*/x", "/usr/lib/x")
    assert not match_pattern("/usr/*/x", "/usr/lib/a/x")
    assert match_pattern("/var/?og", "/var/log")
    assert not match_pattern("/var/?og", "/var//og")
    assert is_excluded(b"/usr/share/doc", ["/usr/share/doc"])
    assert not is_excluded(b"/usr/share/doc2", ["/usr/share/doc"])


def test_types_and_rdev():
    assert type_of_mode(0o100644) == "f" and type_of_mode(0o140755) == "s"
    raises(FormatError, type_of_mode, 0o000644)
    # makedev(259, 65537): glibc's encoding of a large minor
    rdev = ((259 & 0xFFF) << 8) | ((259 & ~0xFFF) << 32) | (65537 & 0xFF) | \
        ((65537 & ~0xFF) << 12)
    assert split_rdev(rdev) == (259, 65537)
