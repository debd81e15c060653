"""Event data of PC Client firmware events: what a digest covers, and decoding for display.

References: TCG PC Client Platform Firmware Profile (PFP) v1.06 r52 (§10.2.1 event
types, §10.4 event data structures: UEFI_VARIABLE_DATA, UEFI_IMAGE_LOAD_EVENT,
UEFI_PLATFORM_FIRMWARE_BLOB(2), UEFI_HANDOFF_TABLE_POINTERS(2), UEFI_GPT_DATA,
TCG_PCClientTaggedEvent, TCG_DEVICE_SECURITY_EVENT_DATA(2), the EV_NO_ACTION
structures), the UEFI 2.10 specification (§3.1.3 EFI_LOAD_OPTION, §5.3 GPT,
§10.3 device path nodes, §32.4.1 EFI_SIGNATURE_LIST) and EDK2's
``MdePkg/Include/IndustryStandard/UefiTcgPlatform.h`` for the field layouts.

:func:`digest_check_kind` says, per event type, whether the PFP defines the
digest as a hash of the logged event data itself, so a verifier can check it:

- ``"event_data"``: EV_SEPARATOR (PFP §3.3.2.2: the 4-byte value), EV_ACTION and
  EV_EFI_ACTION (the ASCII string), EV_S_CRTM_VERSION, EV_COMPACT_HASH,
  EV_OMIT_BOOT_DEVICE_EVENTS, EV_EFI_GPT_EVENT(2) (the UEFI_GPT_DATA), and the
  UEFI_VARIABLE_DATA of EV_EFI_VARIABLE_DRIVER_CONFIG, _BOOT2 and _AUTHORITY
  (PFP §10.4.4: "the digest of the UEFI_VARIABLE_DATA structure");
- ``"variable_boot"``: EV_EFI_VARIABLE_BOOT, whose digest the PFP defines over
  VariableData only (hence EV_EFI_VARIABLE_BOOT2 for the whole structure), while
  EDK2 since 2015 hashes the whole UEFI_VARIABLE_DATA under the same type: a
  checker accepts H(VariableData) or H(event data);
- None: code and data hashed from memory with a description logged (images,
  blobs, handoff tables, EV_POST_CODE, EV_PLATFORM_CONFIG_FLAGS), EV_IPL except
  systemd-boot's UTF-16 command lines (GRUB and shim hash the file or command
  and log a description), and EV_EVENT_TAG except cvmchain's own (systemd-stub
  tags an initrd whose contents it hashed).

:func:`decode_event_data` never raises: malformed data gives
``{"error": message, "offset": offset in the event data, "field": name}``.
It runs under MicroPython too, so UTF-16 is decoded by hand (MicroPython has
only the UTF-8 codec).
"""

import struct

from shared_spec.binary import Reader
from shared_spec.errors import SpecError
from shared_spec.event_types import (
    EV_ACTION,
    EV_COMPACT_HASH,
    EV_EFI_ACTION,
    EV_EFI_BOOT_SERVICES_APPLICATION,
    EV_EFI_BOOT_SERVICES_DRIVER,
    EV_EFI_GPT_EVENT,
    EV_EFI_GPT_EVENT2,
    EV_EFI_HANDOFF_TABLES,
    EV_EFI_HANDOFF_TABLES2,
    EV_EFI_PLATFORM_FIRMWARE_BLOB,
    EV_EFI_PLATFORM_FIRMWARE_BLOB2,
    EV_EFI_RUNTIME_SERVICES_DRIVER,
    EV_EFI_SPDM_DEVICE_AUTHORITY,
    EV_EFI_SPDM_DEVICE_POLICY,
    EV_EFI_SPDM_FIRMWARE_BLOB,
    EV_EFI_SPDM_FIRMWARE_CONFIG,
    EV_EFI_VARIABLE_AUTHORITY,
    EV_EFI_VARIABLE_BOOT,
    EV_EFI_VARIABLE_BOOT2,
    EV_EFI_VARIABLE_DRIVER_CONFIG,
    EV_EVENT_TAG,
    EV_IPL,
    EV_NO_ACTION,
    EV_NONHOST_INFO,
    EV_OMIT_BOOT_DEVICE_EVENTS,
    EV_PLATFORM_CONFIG_FLAGS,
    EV_POST_CODE,
    EV_S_CRTM_VERSION,
    EV_SEPARATOR,
)
from shared_spec.tcg_log import SPEC_ID_SIGNATURE_00, SPEC_ID_SIGNATURE_03, SpecIdEvent

CHECK_EVENT_DATA = "event_data"
CHECK_VARIABLE_BOOT = "variable_boot"

_EVENT_DATA_TYPES = (EV_SEPARATOR, EV_ACTION, EV_EFI_ACTION, EV_S_CRTM_VERSION, EV_COMPACT_HASH,
                     EV_OMIT_BOOT_DEVICE_EVENTS, EV_EFI_GPT_EVENT, EV_EFI_GPT_EVENT2)
_VARIABLE_TYPES = (EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT, EV_EFI_VARIABLE_BOOT2,
                   EV_EFI_VARIABLE_AUTHORITY, EV_EFI_SPDM_DEVICE_POLICY,
                   EV_EFI_SPDM_DEVICE_AUTHORITY)
_IMAGE_TYPES = (EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_BOOT_SERVICES_DRIVER,
                EV_EFI_RUNTIME_SERVICES_DRIVER)
_STRING_TYPES = (EV_ACTION, EV_EFI_ACTION, EV_IPL, EV_OMIT_BOOT_DEVICE_EVENTS,
                 EV_PLATFORM_CONFIG_FLAGS, EV_NONHOST_INFO, EV_COMPACT_HASH)

#: taggedEventID of cvmchain's own events ("CVMC" as a little-endian u32; agent_events.py).
_CVMCHAIN_TAG = b"CVMC"

#: Hex of variable data shown in full up to this many bytes, then cut.
MAX_HEX_BYTES = 1024

GUID_EFI_GLOBAL_VARIABLE = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
GUID_IMAGE_SECURITY_DATABASE = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
GUID_CERT_SHA256 = "c1c41626-504c-4092-aca9-41f936934328"
GUID_CERT_X509 = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"

#: Names for GUIDs seen in firmware logs (UEFI 2.10, PI 1.8, EDK2, shim, GPT type registry).
WELL_KNOWN_GUIDS = {
    GUID_EFI_GLOBAL_VARIABLE: "EFI_GLOBAL_VARIABLE",
    GUID_IMAGE_SECURITY_DATABASE: "EFI_IMAGE_SECURITY_DATABASE",
    "605dab50-e046-4300-abb6-3dd810dd8b23": "SHIM_LOCK",
    GUID_CERT_X509: "EFI_CERT_X509",
    GUID_CERT_SHA256: "EFI_CERT_SHA256",
    "826ca512-cf10-4ac9-b187-be01496631bd": "EFI_CERT_SHA1",
    "0b6e5233-a65c-44c9-9407-d9ab83bfc8bd": "EFI_CERT_SHA224",
    "ff3e5307-9fd0-48c9-85f1-8ad56c701e01": "EFI_CERT_SHA384",
    "093e0fae-a6c4-4f50-9f1b-d41e2b89c19a": "EFI_CERT_SHA512",
    "3c5766e8-269c-4e34-aa14-ed776e85b3b6": "EFI_CERT_RSA2048",
    "3bd2a492-96c0-4079-b420-fcf98ef103ed": "EFI_CERT_X509_SHA256",
    "7076876e-80c2-4ee6-aad2-28b349a6865b": "EFI_CERT_X509_SHA384",
    "446dbf63-2502-4cda-bcfa-2465d2b0fe9d": "EFI_CERT_X509_SHA512",
    "4aafd29d-68df-49ee-8aa9-347d375665a7": "EFI_CERT_TYPE_PKCS7",
    "77fa9abd-0359-4d32-bd60-28f4e78f784b": "MICROSOFT (signature owner)",
    "8868e871-e4f1-11d3-bc22-0080c73c8881": "EFI_ACPI_20_TABLE",
    "eb9d2d30-2d88-11d3-9a16-0090273fc14d": "ACPI_TABLE",
    "eb9d2d31-2d88-11d3-9a16-0090273fc14d": "SMBIOS_TABLE",
    "f2fd1544-9794-4a2c-992e-e5bbcf20e394": "SMBIOS3_TABLE",
    "7739f24c-93d7-11d4-9a3a-0090273fc14d": "HOB_LIST",
    "93bb96af-b9f2-4eb8-9462-e0ba74564236": "OVMF_PKG_TOKEN_SPACE (TD HOB)",
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI System Partition",
    "21686148-6449-6e6f-744e-656564454649": "BIOS boot partition",
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem data",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
    "bc13c2ff-59e6-4262-a352-b275fd6f7172": "Linux extended boot (XBOOTLDR)",
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
}

_SECURE_BOOT_FLAGS = ("SecureBoot", "SetupMode", "AuditMode", "DeployedMode")
_LOAD_OPTION_PREFIXES = ("Boot", "Driver", "SysPrep", "PlatformRecovery")
_SIGNATURE_DBS = ("PK", "KEK", "db", "dbx", "dbt", "dbr", "PKDefault", "KEKDefault",
                  "dbDefault", "dbxDefault")


# --- small helpers ----------------------------------------------------------------------------


def guid_text(raw: bytes) -> str:
    """EFI_GUID (mixed-endian: u32, u16, u16 little-endian, then 8 bytes) as canonical text."""
    a, b, c = struct.unpack_from("<IHH", raw, 0)
    d = bytes(raw[8:16]).hex()
    return "%08x-%04x-%04x-%s-%s" % (a, b, c, d[:4], d[4:])


def _guid(r: Reader, field: str) -> str:
    return guid_text(r.read(16, field))


def _named(out: dict, key: str, guid: str) -> None:
    out[key] = guid
    name = WELL_KNOWN_GUIDS.get(guid)
    if name:
        out[key + "_name"] = name


def utf16le(raw: bytes, stop_at_nul: bool = True) -> str | None:
    """UCS-2/UTF-16LE text (surrogate pairs joined), or None when not valid text.

    Decoded by hand: MicroPython's ``bytes.decode`` knows UTF-8 only.
    """
    n = len(raw) - (len(raw) & 1)
    if len(raw) & 1 and raw[-1] != 0:
        return None
    chars = []
    i = 0
    while i < n:
        u = raw[i] | (raw[i + 1] << 8)
        i += 2
        if u == 0 and stop_at_nul:
            break
        if 0xD800 <= u < 0xDC00:
            if i + 2 > n:
                return None
            lo = raw[i] | (raw[i + 1] << 8)
            if not 0xDC00 <= lo < 0xE000:
                return None
            i += 2
            u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
        elif 0xDC00 <= u < 0xE000:
            return None
        chars.append(chr(u))
    return "".join(chars)


def _printable(text: str) -> bool:
    """Printable ASCII (and tab, CR, LF) only: firmware and boot loader strings are."""
    for ch in text:
        o = ord(ch)
        if (o < 0x20 and ch not in "\t\r\n") or o > 0x7E:
            return False
    return True


def ascii_text(raw: bytes) -> str | None:
    """Printable ASCII up to the first NUL (trailing bytes after a NUL ignored), else None."""
    raw = bytes(raw)
    end = raw.find(b"\x00")
    text = raw if end < 0 else raw[:end]
    for b in text:
        if (b < 0x20 and b not in (9, 10, 13)) or b > 0x7E:
            return None
    return text.decode()


def _utf16_text(raw: bytes) -> str | None:
    """Printable UTF-16LE text of at least two characters (NUL-terminated or not)."""
    if len(raw) < 4:
        return None
    text = utf16le(raw)
    if text is None or len(text) < 2 or not _printable(text):
        return None
    # everything after the terminating NUL must be NULs too
    cut = 2 * len(text) + 2
    if bytes(raw[cut:]).strip(b"\x00"):
        return None
    return text


def _hex(raw: bytes, out: dict, key: str) -> None:
    raw = bytes(raw)
    if len(raw) > MAX_HEX_BYTES:
        out[key] = raw[:MAX_HEX_BYTES].hex()
        out[key + "_truncated"] = True
    else:
        out[key] = raw.hex()


# --- digest rules -----------------------------------------------------------------------------


def _variable_consistent(data: bytes | None) -> bool:
    """UEFI_VARIABLE_DATA whose lengths add up to exactly the event size."""
    if data is None or len(data) < 32:
        return False
    name_len, data_len = struct.unpack_from("<QQ", data, 16)
    return 32 + 2 * name_len + data_len == len(data)


def digest_check_kind(event_type: int, index: int, data: bytes | None = None) -> str | None:
    """``"event_data"``, ``"variable_boot"`` or None (see the module docstring).

    Known firmware variation is absorbed here, not in the checker: variable events
    whose lengths do not add up to the event size (shim logs 6 extra bytes after
    its own certificates) are not checkable; EV_IPL is checkable only as UTF-16
    text (systemd-boot's command line); EV_EVENT_TAG only for cvmchain's tag.
    """
    if event_type == EV_EFI_VARIABLE_BOOT:
        return CHECK_VARIABLE_BOOT if _variable_consistent(data) else None
    if event_type in (EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT2,
                      EV_EFI_VARIABLE_AUTHORITY):
        return CHECK_EVENT_DATA if _variable_consistent(data) else None
    if event_type in _EVENT_DATA_TYPES:
        return CHECK_EVENT_DATA
    if event_type == EV_IPL and data is not None and _utf16_text(data) is not None:
        return CHECK_EVENT_DATA
    if event_type == EV_EVENT_TAG and data is not None and bytes(data[:4]) == _CVMCHAIN_TAG:
        return CHECK_EVENT_DATA
    return None


# --- UEFI device paths (UEFI 2.10 §10.3) ----------------------------------------------------

_BBS_TYPES = {1: "Floppy", 2: "HD", 3: "CDROM", 4: "PCMCIA", 5: "USB", 6: "Network"}
_EISA_PNP0A03 = 0x0A0341D0
_EISA_PNP0A08 = 0x0A0841D0


def _eisa_text(hid: int) -> str:
    if hid & 0xFFFF != 0x41D0:
        return "0x%08x" % hid
    return "PNP%04X" % (hid >> 16)


def _node_text(t: int, s: int, body: bytes) -> str:
    n = len(body)
    if t == 0x01:
        if s == 0x01 and n >= 2:
            return "Pci(0x%x,0x%x)" % (body[1], body[0])
        if s == 0x03 and n >= 20:
            mt, start, end = struct.unpack_from("<IQQ", body, 0)
            return "MemoryMapped(0x%x,0x%x,0x%x)" % (mt, start, end)
        if s == 0x04 and n >= 16:
            extra = body[16:]
            return "VenHw(%s%s)" % (guid_text(body), "," + extra.hex() if extra else "")
    elif t == 0x02:
        if s == 0x01 and n >= 8:
            hid, uid = struct.unpack_from("<II", body, 0)
            if hid == _EISA_PNP0A03:
                return "PciRoot(0x%x)" % uid
            if hid == _EISA_PNP0A08:
                return "PcieRoot(0x%x)" % uid
            return "Acpi(%s,0x%x)" % (_eisa_text(hid), uid)
    elif t == 0x03:
        if s == 0x02 and n >= 4:
            return "SCSI(%d,%d)" % struct.unpack_from("<HH", body, 0)
        if s == 0x05 and n >= 2:
            return "USB(%d,%d)" % (body[0], body[1])
        if s == 0x0B and n >= 33:
            return "MAC(%s,%d)" % (body[:6].hex(), body[32])
        if s == 0x0C and n >= 8:
            return "IPv4(%d.%d.%d.%d,%d.%d.%d.%d)" % tuple(body[:8])
        if s == 0x12 and n >= 6:
            return "Sata(%d,%d,%d)" % struct.unpack_from("<HHH", body, 0)
        if s == 0x17 and n >= 12:
            nsid = struct.unpack_from("<I", body, 0)[0]
            eui = "-".join("%02x" % b for b in body[4:12])
            return "NVMe(0x%x,%s)" % (nsid, eui)
        if s == 0x0A and n >= 16:
            return "VenMsg(%s)" % guid_text(body)
        if s == 0x18:
            text = ascii_text(body)
            if text is not None:
                return "Uri(%s)" % text
    elif t == 0x04:
        if s == 0x01 and n >= 38:
            part, start, size = struct.unpack_from("<IQQ", body, 0)
            sig_type = body[37]
            if sig_type == 2:
                sig = guid_text(body[20:36])
                return "HD(%d,GPT,%s,0x%x,0x%x)" % (part, sig, start, size)
            if sig_type == 1:
                mbr = struct.unpack_from("<I", body, 20)[0]
                return "HD(%d,MBR,0x%08x,0x%x,0x%x)" % (part, mbr, start, size)
            return "HD(%d,%d,0,0x%x,0x%x)" % (part, sig_type, start, size)
        if s == 0x02 and n >= 20:
            return "CDROM(%d,0x%x,0x%x)" % struct.unpack_from("<IQQ", body, 0)
        if s == 0x03 and n >= 16:
            return "VenMedia(%s)" % guid_text(body)
        if s == 0x04:
            path = utf16le(body)
            if path is not None:
                return "File(%s)" % path
        if s == 0x06 and n >= 16:
            return "FvFile(%s)" % guid_text(body)
        if s == 0x07 and n >= 16:
            return "FvVol(%s)" % guid_text(body)
        if s == 0x08 and n >= 20:
            _, start, end = struct.unpack_from("<IQQ", body, 0)
            return "Offset(0x%x,0x%x)" % (start, end)
    elif t == 0x05 and s == 0x01 and n >= 4:
        dev, flags = struct.unpack_from("<HH", body, 0)
        kind = _BBS_TYPES.get(dev) or "0x%x" % dev
        return "BBS(%s,%s,0x%x)" % (kind, ascii_text(body[4:]) or "", flags)
    return "Path(%d,%d,%s)" % (t, s, body.hex())


def device_path_texts(raw: bytes) -> list:
    """Best-effort texts of the device paths in ``raw`` (UEFI 2.10 §10.6 text forms).

    Each path ends with an End-Entire node; nodes are joined with ``/`` and an
    End-Instance node gives ``,``. A malformed node ends the text with
    ``<malformed@offset>``.
    """
    raw = bytes(raw)
    paths: list = []
    parts: list = []
    pos = 0
    sep = ""
    n = len(raw)
    while pos < n:
        if n - pos < 4:
            parts.append(sep + "<malformed@%d>" % pos)
            break
        t, s, length = raw[pos], raw[pos + 1], raw[pos + 2] | (raw[pos + 3] << 8)
        if length < 4 or length > n - pos:
            parts.append(sep + "<malformed@%d>" % pos)
            break
        pos += length
        if t == 0x7F:
            if s == 0x01:
                sep = ","
                continue
            paths.append("".join(parts))
            parts = []
            sep = ""
            continue
        parts.append(sep + _node_text(t, s, raw[pos - length + 4:pos]))
        sep = "/"
    if parts:
        paths.append("".join(parts))
    return paths


def device_path_text(raw: bytes) -> str:
    """Text of the first device path in ``raw`` ("" when there is none)."""
    paths = device_path_texts(raw)
    return paths[0] if paths else ""


# --- structure decoders (each raises SpecError via Reader on malformed input) ---------------


def _signature_lists(r: Reader) -> list:
    """EFI_SIGNATURE_LIST array (UEFI 2.10 §32.4.1) summarised per list."""
    lists = []
    while not r.at_end():
        at = r.offset
        sig_type = _guid(r, "EFI_SIGNATURE_LIST.SignatureType")
        list_size = r.u32("SignatureListSize")
        header_size = r.u32("SignatureHeaderSize")
        sig_size = r.u32("SignatureSize")
        if list_size < 28 + header_size or list_size - 28 > r.remaining():
            raise SpecError("SignatureListSize %d does not fit" % list_size, at + 16,
                            "SignatureListSize")
        if sig_size < 16 or (list_size - 28 - header_size) % sig_size:
            raise SpecError("SignatureSize %d does not divide the list" % sig_size, at + 24,
                            "SignatureSize")
        r.skip(header_size, "SignatureHeader")
        count = (list_size - 28 - header_size) // sig_size
        entry: dict = {"count": count}
        _named(entry, "signature_type", sig_type)
        owners: list = []
        hashes = []
        sizes = []
        for _ in range(count):
            owner = _guid(r, "SignatureOwner")
            body = r.read(sig_size - 16, "SignatureData")
            if owner not in owners:
                owners.append(owner)
            if sig_type == GUID_CERT_SHA256 and len(body) == 32:
                hashes.append(body.hex())
            else:
                sizes.append(len(body))
        entry["owners"] = [{"guid": o, "name": WELL_KNOWN_GUIDS.get(o, "")} for o in owners]
        if hashes:
            entry["sha256"] = hashes
        if sizes:
            entry["data_sizes"] = sizes
        lists.append(entry)
    return lists


def _signature_data(value: bytes, base: int) -> dict:
    """One EFI_SIGNATURE_DATA (owner GUID + data), or a bare DER certificate (shim)."""
    if len(value) >= 2 and value[0] == 0x30 and value[1] in (0x81, 0x82, 0x83):
        return {"certificate_der_length": len(value)}
    r = Reader(value, base=base)
    out: dict = {}
    _named(out, "signature_owner", _guid(r, "SignatureOwner"))
    rest = r.read(r.remaining(), "SignatureData")
    out["signature_data_length"] = len(rest)
    if len(rest) >= 2 and rest[0] == 0x30:
        out["kind"] = "x509"
    elif len(rest) == 32:
        out["kind"] = "sha256"
        out["sha256"] = rest.hex()
    return out


def _load_option(value: bytes, base: int) -> dict:
    """EFI_LOAD_OPTION (UEFI 2.10 §3.1.3)."""
    r = Reader(value, base=base)
    attrs = r.u32("EFI_LOAD_OPTION.Attributes")
    path_len = r.u16("FilePathListLength")
    desc_at = r.pos
    while True:
        if r.u16("Description") == 0:
            break
    desc = utf16le(value[desc_at:r.pos]) or ""
    path = r.read(path_len, "FilePathList")
    texts = device_path_texts(path)
    out = {"attributes": attrs, "active": bool(attrs & 1), "description": desc,
           "file_path_list_length": path_len, "device_path": path.hex(),
           "device_path_text": texts[0] if texts else ""}
    if len(texts) > 1:
        out["more_device_paths"] = texts[1:]
    if not r.at_end():
        _hex(r.read(r.remaining(), "OptionalData"), out, "optional_data")
    return out


def _variable(event_type: int, data: bytes) -> dict:
    """UEFI_VARIABLE_DATA (PFP §10.4.4) and its VariableData by variable name."""
    r = Reader(data)
    guid = _guid(r, "UEFI_VARIABLE_DATA.VariableName")
    name_len = r.u64("UnicodeNameLength")
    data_len = r.u64("VariableDataLength")
    if name_len > r.remaining() // 2:
        raise SpecError("UnicodeNameLength %d exceeds the data" % name_len, 16,
                        "UnicodeNameLength")
    raw_name = r.read(2 * name_len, "UnicodeName")
    if data_len > r.remaining():
        raise SpecError("VariableDataLength %d exceeds the %d bytes left"
                        % (data_len, r.remaining()), 24, "VariableDataLength")
    value_at = r.pos
    value = r.read(data_len, "VariableData")
    name = utf16le(raw_name)
    out: dict = {"variable_guid": guid, "variable_guid_name": WELL_KNOWN_GUIDS.get(guid, ""),
                 "unicode_name_length": name_len, "variable_data_length": data_len,
                 "unicode_name": name if name is not None else raw_name.hex()}
    if not r.at_end():
        out["trailing_bytes"] = r.remaining()
    name = name or ""
    if name in _SECURE_BOOT_FLAGS and data_len == 1:
        out["enabled"] = value[0] == 1
        if name == "SecureBoot":
            out["secure_boot"] = value[0] == 1
        return out
    if event_type in (EV_EFI_VARIABLE_AUTHORITY, EV_EFI_SPDM_DEVICE_AUTHORITY):
        text = ascii_text(value)
        if text and name not in _SIGNATURE_DBS:
            out["text"] = text
        elif value:
            out["signature"] = _signature_data(value, value_at)
        return out
    for prefix in _LOAD_OPTION_PREFIXES:
        if (len(name) == len(prefix) + 4 and name.startswith(prefix) and _is_hex4(name[-4:])
                and data_len >= 6):
            out["load_option"] = _load_option(value, value_at)
            return out
    if name in ("BootOrder", "DriverOrder") and data_len % 2 == 0:
        prefix = name[:-5]
        out["boot_order"] = ["%s%04X" % (prefix, struct.unpack_from("<H", value, i)[0])
                             for i in range(0, len(value), 2)]
        return out
    if name in _SIGNATURE_DBS or event_type == EV_EFI_SPDM_DEVICE_POLICY:
        out["signature_lists"] = _signature_lists(Reader(value, base=value_at))
        return out
    text = ascii_text(value)
    if text and len(text) == len(value.rstrip(b"\x00")) and value:
        out["text"] = text
    else:
        _hex(value, out, "variable_data")
    return out


def _is_hex4(s: str) -> bool:
    if len(s) != 4:
        return False
    for ch in s:
        if ch not in "0123456789ABCDEFabcdef":
            return False
    return True


def _image_load(data: bytes) -> dict:
    """UEFI_IMAGE_LOAD_EVENT (PFP §10.4.3)."""
    r = Reader(data)
    loc = r.u64("ImageLocationInMemory")
    length = r.u64("ImageLengthInMemory")
    link = r.u64("ImageLinkTimeAddress")
    path = r.sized("LengthOfDevicePath", "DevicePath", 8)
    out = {"image_location": loc, "image_length": length, "image_link_time_address": link,
           "device_path_length": len(path), "device_path": path.hex(),
           "device_path_text": device_path_text(path)}
    if not r.at_end():
        out["trailing_bytes"] = r.remaining()
    return out


def _blob(event_type: int, data: bytes) -> dict:
    """UEFI_PLATFORM_FIRMWARE_BLOB / _BLOB2 (PFP §10.4.5)."""
    r = Reader(data)
    out: dict = {}
    if event_type == EV_EFI_PLATFORM_FIRMWARE_BLOB2:
        desc = r.sized("BlobDescriptionSize", "BlobDescription", 1)
        out["description"] = ascii_text(desc) or desc.hex()
    out["base"] = r.u64("BlobBase")
    out["length"] = r.u64("BlobLength")
    if not r.at_end():
        out["trailing_bytes"] = r.remaining()
    return out


def _handoff(event_type: int, data: bytes) -> dict:
    """UEFI_HANDOFF_TABLE_POINTERS / 2 (PFP §10.4.6); the CCEL's "TdxTable" is one."""
    r = Reader(data)
    out: dict = {}
    if event_type == EV_EFI_HANDOFF_TABLES2:
        desc = r.sized("TableDescriptionSize", "TableDescription", 1)
        out["description"] = ascii_text(desc) or desc.hex()
    at = r.offset
    count = r.u64("NumberOfTables")
    if count > r.remaining() // 24:
        raise SpecError("NumberOfTables %d exceeds the data" % count, at, "NumberOfTables")
    tables = []
    for _ in range(count):
        guid = _guid(r, "VendorGuid")
        tables.append({"guid": guid, "name": WELL_KNOWN_GUIDS.get(guid, ""),
                       "table": r.u64("VendorTable")})
    out["number_of_tables"] = count
    out["tables"] = tables
    return out


def _gpt(data: bytes) -> dict:
    """UEFI_GPT_DATA (PFP §10.4.7): the GPT header (UEFI 2.10 §5.3.2) and the used entries."""
    r = Reader(data)
    sig = r.read(8, "Signature")
    hdr = {"signature": ascii_text(sig) or sig.hex(), "revision": r.u32("Revision"),
           "header_size": r.u32("HeaderSize"), "header_crc32": r.u32("HeaderCRC32")}
    r.skip(4, "Reserved")
    hdr["my_lba"] = r.u64("MyLBA")
    hdr["alternate_lba"] = r.u64("AlternateLBA")
    hdr["first_usable_lba"] = r.u64("FirstUsableLBA")
    hdr["last_usable_lba"] = r.u64("LastUsableLBA")
    hdr["disk_guid"] = _guid(r, "DiskGUID")
    hdr["partition_entry_lba"] = r.u64("PartitionEntryLBA")
    hdr["number_of_partition_entries"] = r.u32("NumberOfPartitionEntries")
    entry_at = r.offset
    entry_size = r.u32("SizeOfPartitionEntry")
    hdr["size_of_partition_entry"] = entry_size
    hdr["partition_entry_array_crc32"] = r.u32("PartitionEntryArrayCRC32")
    at = r.offset
    count = r.u64("NumberOfPartitions")
    if entry_size < 56:
        raise SpecError("SizeOfPartitionEntry %d is below 56" % entry_size, entry_at,
                        "SizeOfPartitionEntry")
    if count > r.remaining() // entry_size:
        raise SpecError("NumberOfPartitions %d exceeds the data" % count, at,
                        "NumberOfPartitions")
    parts = []
    for _ in range(count):
        e = Reader(r.read(entry_size, "Partitions"), base=r.offset - entry_size)
        p: dict = {}
        _named(p, "partition_type_guid", _guid(e, "PartitionTypeGUID"))
        p["unique_partition_guid"] = _guid(e, "UniquePartitionGUID")
        p["starting_lba"] = e.u64("StartingLBA")
        p["ending_lba"] = e.u64("EndingLBA")
        p["attributes"] = e.u64("Attributes")
        p["partition_name"] = utf16le(e.read(e.remaining(), "PartitionName")) or ""
        parts.append(p)
    return {"header": hdr, "number_of_partitions": count, "partitions": parts}


def _tagged(data: bytes) -> dict:
    """TCG_PCClientTaggedEvent (PFP §10.4.2.1)."""
    r = Reader(data)
    tag = r.u32("taggedEventID")
    payload = r.sized("taggedEventDataSize", "taggedEventData")
    out: dict = {"tagged_event_id": "0x%08x" % tag, "tagged_event_data_size": len(payload)}
    text = ascii_text(payload)
    if text is not None and len(text) >= len(payload.rstrip(b"\x00")) and payload:
        out["tagged_event_data"] = text
    else:
        _hex(payload, out, "tagged_event_data")
    if not r.at_end():
        out["trailing_bytes"] = r.remaining()
    return out


def _locator(r: Reader, prefix: str, out: dict) -> None:
    kind = r.u32(prefix + "Type")
    value = r.sized(prefix + "Length", prefix)
    names = {0: "raw", 1: "uri", 2: "device_path", 3: "uefi_variable"}
    key = "rim_locator" if prefix.startswith("Rim") else "platform_cert_locator"
    loc: dict = {"type": names.get(kind, kind)}
    if kind == 1:
        loc["uri"] = ascii_text(value) or value.hex()
    elif kind == 2:
        loc["device_path_text"] = device_path_text(value)
    elif kind == 3 and len(value) >= 16:
        loc["variable_guid"] = guid_text(value)
        loc["variable_name"] = utf16le(value[16:]) or ""
    else:
        _hex(value, loc, "value")
    out[key] = loc


def _sp800_155(sig: bytes, data: bytes) -> dict:
    """TCG_Sp800_155_PlatformId_Event (1, 2 and 3) (PFP §10.4.5.2 / 9.4.5.2)."""
    r = Reader(data, 16)
    out: dict = {"signature": ascii_text(sig) or "", "vendor_id": r.u32("VendorId"),
                 "reference_manifest_guid": _guid(r, "ReferenceManifestGuid")}
    if sig.startswith(b"SP800-155 Event\x00"):
        return out
    for key, field in (("platform_manufacturer", "PlatformManufacturerStr"),
                       ("platform_model", "PlatformModel"),
                       ("platform_version", "PlatformVersion"),
                       ("firmware_manufacturer", "FirmwareManufacturerStr")):
        raw = r.sized(field + "Size", field, 1)
        out[key] = ascii_text(raw) or raw.hex()
    out["firmware_manufacturer_id"] = r.u32("FirmwareManufacturerId")
    raw = r.sized("FirmwareVersionSize", "FirmwareVersion", 1)
    out["firmware_version"] = ascii_text(raw) or raw.hex()
    if sig.startswith(b"SP800-155 Event3"):
        _locator(r, "RimLocator", out)
        _locator(r, "PlatformCertLocator", out)
    return out


def _no_action(data: bytes) -> dict | None:
    """EV_NO_ACTION structures (PFP §10.4.5): Spec ID, StartupLocality, SP800-155, NvIndex."""
    sig = bytes(data[:16])
    if sig in (SPEC_ID_SIGNATURE_03, SPEC_ID_SIGNATURE_00):
        s = SpecIdEvent.decode(data)
        return {"signature": ascii_text(sig), "platform_class": s.platform_class,
                "spec_version": "%d.%d" % (s.version_major, s.version_minor),
                "spec_errata": s.errata, "uintn_size": s.uintn_size,
                "algorithms": [{"algorithm_id": a, "digest_size": n} for a, n in s.algorithms],
                "vendor_info": s.vendor_info.hex()}
    if sig == b"StartupLocality\x00":
        r = Reader(data, 16)
        out: dict = {"signature": "StartupLocality", "startup_locality": r.u8("StartupLocality")}
        out["locality"] = out["startup_locality"]
        return out
    if sig.startswith(b"SP800-155 Event"):
        return _sp800_155(sig, data)
    if sig == b"NvIndexInstance\x00":
        r = Reader(data, 16)
        out = {"signature": "NvIndexInstance", "version": r.u16("Version")}
        r.skip(6, "Reserved")
        rest = r.read(r.remaining(), "Data")
        out["device_security_event_data"] = _device_security(rest, 24)
        return out
    if sig == b"NvIndexDynamic \x00" or sig.startswith(b"NvIndexDynamic"):
        r = Reader(data, 16)
        out = {"signature": "NvIndexDynamic", "version": r.u16("Version")}
        r.skip(6, "Reserved")
        out["uid"] = r.u64("Uid")
        desc = r.sized("DescriptionSize", "Description", 2)
        out["description"] = ascii_text(desc) or desc.hex()
        _hex(r.sized("DataSize", "Data", 2), out, "data")
        return out
    text = ascii_text(sig)
    if text:
        out = {"signature": text}
        _hex(data[16:], out, "data")
        return out
    return None


_AUTH_STATES = {0: "success", 1: "no_auth", 2: "no_binding", 3: "fail_no_sig",
                4: "fail_invalid", 0xFF: "no_spdm"}
_DEVICE_TYPES = {0: "null", 1: "pci", 2: "usb"}


def _device_security(data: bytes, base: int = 0) -> dict:
    """TCG_DEVICE_SECURITY_EVENT_DATA(2) header ("SPDM Device Sec" / "SPDM Device Sec2")."""
    r = Reader(data, base=base)
    sig = r.read(16, "Signature")
    version = r.u16("Version")
    out: dict = {"signature": ascii_text(sig) or sig.hex(), "version": version}
    if sig == b"SPDM Device Sec\x00" and version == 1:
        out["length"] = r.u16("Length")
        out["spdm_hash_algo"] = r.u32("SpdmHashAlgo")
        dev = r.u32("DeviceType")
        out["device_type"] = _DEVICE_TYPES.get(dev, dev)
    elif sig == b"SPDM Device Sec2" and version == 2:
        state = r.u8("AuthState")
        out["auth_state"] = _AUTH_STATES.get(state, state)
        r.skip(1, "Reserved")
        out["length"] = r.u32("Length")
        dev = r.u32("DeviceType")
        out["device_type"] = _DEVICE_TYPES.get(dev, dev)
        sub = r.u32("SubHeaderType")
        out["sub_header_type"] = {0: "spdm_measurement_block", 1: "spdm_cert_chain"}.get(sub,
                                                                                         sub)
        out["sub_header_length"] = r.u32("SubHeaderLength")
        out["sub_header_uid"] = r.u64("SubHeaderUID")
        path = r.sized("DevicePathLength", "DevicePath", 8)
        out["device_path_text"] = device_path_text(path)
    else:
        out["unrecognised"] = True
    _hex(r.read(r.remaining(), "rest"), out, "rest")
    return out


def _separator(data: bytes) -> dict:
    """EV_SEPARATOR: 0 marks the pre-OS/OS boundary, 1 an error (PFP §3.3.2.2)."""
    if len(data) != 4:
        return {"separator": "nonstandard", "value": data.hex()}
    v = struct.unpack_from("<I", data, 0)[0]
    if v == 0:
        kind = "normal"
    elif v == 1:
        kind = "error"
    elif v == 0xFFFFFFFF:
        kind = "legacy_ffffffff"
    else:
        kind = "nonstandard"
    return {"separator": kind, "value": "0x%08x" % v}


def _string_event(event_type: int, data: bytes) -> dict | None:
    if event_type in (EV_POST_CODE, EV_PLATFORM_CONFIG_FLAGS) and len(data) == 16:
        # POST code measured from memory: UEFI_PLATFORM_FIRMWARE_BLOB (PFP §10.4.5)
        text = ascii_text(data)
        if text is None or len(text) < 4:
            return _blob(EV_EFI_PLATFORM_FIRMWARE_BLOB, data)
    wide = _utf16_text(data)
    if wide is not None:
        return {"string": wide, "encoding": "utf-16le"}
    text = ascii_text(data)
    if text is not None and data and (len(text) >= len(bytes(data).rstrip(b"\x00")) or
                                      event_type == EV_IPL):
        out: dict = {"string": text}
        if len(text) < len(bytes(data).rstrip(b"\x00")):
            out["trailing_bytes"] = len(data) - len(text) - 1
        return out
    if not data:
        return None
    out = {}
    _hex(data, out, "data")
    return out


def _crtm_version(data: bytes) -> dict:
    """EV_S_CRTM_VERSION: a UTF-16 version string, or a GUID (PFP §10.4.1)."""
    wide = _utf16_text(data)
    if wide is not None:
        return {"version": wide}
    if len(data) == 16:
        return {"version_guid": guid_text(data)}
    text = ascii_text(data)
    if text:
        return {"version": text}
    return {"version_hex": bytes(data).hex()}


def decode_event_data(event_type: int, data: bytes, index: int = 0) -> dict | None:
    """A display dict for ``data`` of ``event_type``; None when there is nothing to add.

    Never raises: malformed data gives ``{"error", "offset", "field"}`` (offset into
    ``data``).
    """
    try:
        return _decode(event_type, bytes(data))
    except SpecError as e:
        return {"error": e.message, "offset": e.offset, "field": e.field}
    except (ValueError, IndexError, UnicodeError, OverflowError, TypeError) as e:
        return {"error": "undecodable: %s" % e}


def _decode(event_type: int, data: bytes) -> dict | None:
    if event_type == EV_SEPARATOR:
        return _separator(data)
    if event_type in _VARIABLE_TYPES:
        return _variable(event_type, data)
    if event_type in _IMAGE_TYPES:
        return _image_load(data)
    if event_type in (EV_EFI_PLATFORM_FIRMWARE_BLOB, EV_EFI_PLATFORM_FIRMWARE_BLOB2):
        return _blob(event_type, data)
    if event_type in (EV_EFI_HANDOFF_TABLES, EV_EFI_HANDOFF_TABLES2):
        return _handoff(event_type, data)
    if event_type in (EV_EFI_GPT_EVENT, EV_EFI_GPT_EVENT2):
        return _gpt(data)
    if event_type == EV_EVENT_TAG:
        return _tagged(data)
    if event_type == EV_S_CRTM_VERSION:
        return _crtm_version(data)
    if event_type == EV_NO_ACTION:
        return _no_action(data)
    if event_type in (EV_EFI_SPDM_FIRMWARE_BLOB, EV_EFI_SPDM_FIRMWARE_CONFIG):
        return _device_security(data)
    if event_type in _STRING_TYPES or event_type == EV_POST_CODE:
        return _string_event(event_type, data)
    return None
