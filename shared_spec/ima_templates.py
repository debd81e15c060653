"""IMA template descriptors and template fields (Linux security/integrity/ima).

A template is a list of field ids (``ima_template.c``); its name in a
measurement list is the descriptor's name (``ima-ng``) or, for a template set
with ``ima_template_fmt=``, the format itself (``d-ng|n-ng|sig``), so both
forms are understood here.

Every field has a kind that fixes both its binary bytes and its ascii text
(``ima_template_lib.c``, ``ima_show_template_*``):

==================  =============================================  ==========================
kind                field bytes                                    ascii text
==================  =============================================  ==========================
``digest``          the digest (``d``: 20 bytes)                   hex
``digest-algo``     ``<algo>:`` NUL digest (``d-ng``, ``d-modsig``)  ``<algo>:<hex>``
``digest-type``     ``<type>:<algo>:`` NUL digest (``d-ngv2``)     ``<type>:<algo>:<hex>``
``string``          text NUL (``n``, ``n-ng``)                     text up to the first NUL
``string-raw``      text, no NUL (``xattrnames``)                  text up to the first NUL
``hex``             raw bytes (``sig``, ``buf``, ``modsig``, ...)  hex
``uint``            u16/u32 in the list's byte order (``imode``...)  decimal
==================  =============================================  ==========================

The ascii form prints one space before every field and nothing for an empty
field, so an ``ima-sig`` line without a signature ends with a space. The
kernel replaces spaces in names with ``_``; names from older kernels may
still hold spaces, which the ascii decoder keeps in the name field.

Functions here convert one field between its bytes and its ascii text; they
never raise anything but :class:`shared_spec.errors.SpecError`.
"""

import struct

from shared_spec.errors import FormatError, LimitError, TruncatedError

KIND_DIGEST = "digest"
KIND_DIGEST_ALGO = "digest-algo"
KIND_DIGEST_TYPE_ALGO = "digest-type"
KIND_STRING = "string"
KIND_STRING_RAW = "string-raw"
KIND_HEX = "hex"
KIND_UINT = "uint"

#: field id -> kind (ima_template.c ``supported_fields``)
FIELD_KINDS = {
    "d": KIND_DIGEST,
    "n": KIND_STRING,
    "d-ng": KIND_DIGEST_ALGO,
    "d-ngv2": KIND_DIGEST_TYPE_ALGO,
    "n-ng": KIND_STRING,
    "sig": KIND_HEX,
    "buf": KIND_HEX,
    "d-modsig": KIND_DIGEST_ALGO,
    "modsig": KIND_HEX,
    "evmsig": KIND_HEX,
    "iuid": KIND_UINT,
    "igid": KIND_UINT,
    "imode": KIND_UINT,
    "xattrnames": KIND_STRING_RAW,
    "xattrlengths": KIND_HEX,
    "xattrvalues": KIND_HEX,
}

#: width in bytes of the ``uint`` fields as the kernel writes them
UINT_WIDTHS = {"iuid": 4, "igid": 4, "imode": 2}

#: built-in template name -> field ids (ima_template.c ``builtin_templates``)
TEMPLATES = {
    "ima": ("d", "n"),
    "ima-ng": ("d-ng", "n-ng"),
    "ima-sig": ("d-ng", "n-ng", "sig"),
    "ima-ngv2": ("d-ngv2", "n-ng"),
    "ima-sigv2": ("d-ngv2", "n-ng", "sig"),
    "ima-buf": ("d-ng", "n-ng", "buf"),
    "ima-modsig": ("d-ng", "n-ng", "sig", "d-modsig", "modsig"),
    "evm-sig": ("d-ng", "n-ng", "evmsig", "xattrnames", "xattrlengths", "xattrvalues",
                "iuid", "igid", "imode"),
}

#: IMA_EVENT_NAME_LEN_MAX: the longest name of the ``ima`` template's ``n`` field
IMA_EVENT_NAME_LEN_MAX = 255
#: the ``ima`` template's digest field: always 20 bytes in the list
IMA_DIGEST_SIZE = 20

def template_fields(name: str) -> tuple | None:
    """The field ids of template ``name`` (a built-in name or a ``|`` format), or None."""
    ids = TEMPLATES.get(name)
    if ids is not None:
        return ids
    if "|" in name:
        parts = tuple(name.split("|"))
        for p in parts:
            if p not in FIELD_KINDS:
                return None
        return parts
    return None


def field_kind(field_id: str) -> str | None:
    return FIELD_KINDS.get(field_id)


def split_fields(data: bytes, big_endian: bool = False, base: int = 0,
                 source: str | None = None) -> list:
    """The u32-length-prefixed fields of template data, as a list of bytes.

    Raises :class:`TruncatedError` / :class:`LimitError` (offsets absolute:
    ``base`` is the offset of ``data[0]``) when the lengths do not add up.
    """
    fmt = ">I" if big_endian else "<I"
    out: list = []
    pos = 0
    n = len(data)
    while pos < n:
        if n - pos < 4:
            raise TruncatedError("template data ends inside a field length (%d bytes left)"
                                 % (n - pos), base + pos, "field_len", source)
        size = struct.unpack_from(fmt, data, pos)[0]
        pos += 4
        if size > n - pos:
            raise LimitError("field length %d exceeds the %d bytes left" % (size, n - pos),
                             base + pos - 4, "field_len", source)
        out.append(bytes(data[pos:pos + size]))
        pos += size
    return out


def join_fields(fields: list, big_endian: bool = False) -> bytes:
    """Template data from field bytes: each field as u32 length + bytes."""
    fmt = ">I" if big_endian else "<I"
    return b"".join([struct.pack(fmt, len(f)) + bytes(f) for f in fields])


def _cstring(data: bytes) -> bytes:
    """``data`` up to its first NUL, as ``%s`` prints it."""
    nul = data.find(b"\x00")
    return data if nul < 0 else data[:nul]


def split_digest(data: bytes) -> tuple | None:
    """``(prefix, digest)`` of a ``digest-algo`` / ``digest-type`` field, or None.

    ``prefix`` is the text before the NUL without its last ``:``
    (``b"sha256"``, ``b"ima:sha256"``). None when the field does not have the
    ``<prefix>:`` NUL form.
    """
    nul = data.find(b"\x00")
    if nul < 1 or data[nul - 1:nul] != b":":
        return None
    return data[:nul - 1], data[nul + 1:]


def field_to_ascii(field_id: str, data: bytes, big_endian: bool = False) -> bytes:
    """The ascii text the kernel prints for a non-empty field (``field_show``, IMA_SHOW_ASCII)."""
    kind = FIELD_KINDS.get(field_id, KIND_HEX)
    data = bytes(data)
    if kind == KIND_DIGEST_ALGO or kind == KIND_DIGEST_TYPE_ALGO:
        sd = split_digest(data)
        if sd is None:
            return data.hex().encode()
        return sd[0] + b":" + sd[1].hex().encode()
    if kind == KIND_STRING or kind == KIND_STRING_RAW:
        return _cstring(data)
    if kind == KIND_UINT:
        n = len(data)
        order = ">" if big_endian else "<"
        if n == 1:
            return b"%d" % data[0]
        if n == 2:
            return b"%d" % struct.unpack(order + "H", data)[0]
        if n == 4:
            return b"%d" % struct.unpack(order + "I", data)[0]
        if n == 8:
            return b"%d" % struct.unpack(order + "Q", data)[0]
        return b""
    return data.hex().encode()


def _unhex(text: bytes, what: str) -> bytes:
    """Strict bytes.fromhex: hex digits only (no whitespace), an even count."""
    try:
        out = bytes.fromhex(text.decode("ascii"))
    except (ValueError, UnicodeError):
        out = None
    if out is None or 2 * len(out) != len(text):
        raise FormatError("%s: not hex: %r" % (what, bytes(text[:40])), None, what)
    return out


def field_from_ascii(field_id: str, text: bytes, big_endian: bool = False) -> bytes:
    """The field bytes the kernel held for ascii ``text`` (inverse of :func:`field_to_ascii`).

    Exact for every value the kernel prints; :class:`FormatError` (offset
    None: the caller places it) for text the field cannot hold.
    """
    kind = FIELD_KINDS.get(field_id, KIND_HEX)
    text = bytes(text)
    if kind == KIND_DIGEST_ALGO or kind == KIND_DIGEST_TYPE_ALGO:
        if not text:
            return b""
        colon = text.rfind(b":")
        if colon < 0:
            return _unhex(text, field_id)
        head = text[:colon]
        if kind == KIND_DIGEST_TYPE_ALGO and head.find(b":") < 0:
            raise FormatError("%s: %r is not <type>:<algo>:<hex>" % (field_id, text[:60]),
                              None, field_id)
        if b"\x00" in head:
            raise FormatError("%s: NUL in the algorithm name" % field_id, None, field_id)
        return head + b":\x00" + _unhex(text[colon + 1:], field_id)
    if kind == KIND_STRING:
        if b"\x00" in text:
            raise FormatError("%s: NUL inside the name" % field_id, None, field_id)
        return text + b"\x00"
    if kind == KIND_STRING_RAW:
        return text
    if kind == KIND_UINT:
        if not text:
            return b""
        for ch in text:
            if ch < 0x30 or ch > 0x39:
                raise FormatError("%s: %r is not a decimal number" % (field_id, text[:20]),
                                  None, field_id)
        width = UINT_WIDTHS.get(field_id, 4)
        value = int(text)
        if value >= 1 << (8 * width):
            raise FormatError("%s: %d does not fit in %d bytes" % (field_id, value, width),
                              None, field_id)
        order = ">" if big_endian else "<"
        return struct.pack(order + ("H" if width == 2 else "I" if width == 4 else "Q"), value)
    return _unhex(text, field_id)


def describe_field(field_id: str, data: bytes, big_endian: bool = False) -> dict:
    """A JSON-ready description of one field: its id plus decoded values."""
    data = bytes(data)
    kind = FIELD_KINDS.get(field_id)
    out: dict = {"field": field_id}
    if kind == KIND_DIGEST_ALGO or kind == KIND_DIGEST_TYPE_ALGO:
        sd = split_digest(data)
        if sd is None:
            out["digest"] = data.hex()
            return out
        prefix = sd[0].decode("utf-8", "replace")
        if kind == KIND_DIGEST_TYPE_ALGO and ":" in prefix:
            out["digest_type"], out["algorithm"] = prefix.split(":", 1)
        else:
            out["algorithm"] = prefix
        out["digest"] = sd[1].hex()
        return out
    if kind == KIND_DIGEST:
        out["digest"] = data.hex()
        return out
    if kind == KIND_STRING or kind == KIND_STRING_RAW:
        out["name" if field_id in ("n", "n-ng") else "text"] = \
            _cstring(data).decode("utf-8", "replace")
        return out
    if kind == KIND_UINT:
        text = field_to_ascii(field_id, data, big_endian)
        if text:
            out["value"] = int(text)
            return out
    out["hex"] = data.hex()
    return out
