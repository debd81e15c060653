"""Event data of PC Client firmware events: what a digest covers, and decoding for display.

:func:`digest_check_kind` says, per event type, whether the PC Client PFP
(v1.06, §10.4) defines the digest as a hash of the event data itself, so a
verifier can check it:

- event data: EV_SEPARATOR, EV_ACTION, EV_EFI_ACTION, EV_S_CRTM_VERSION,
  EV_COMPACT_HASH, EV_OMIT_BOOT_DEVICE_EVENTS, EV_EFI_GPT_EVENT(2), and the
  UEFI_VARIABLE_DATA of EV_EFI_VARIABLE_DRIVER_CONFIG, _BOOT2 and _AUTHORITY;
- EV_EFI_VARIABLE_BOOT: VariableData per the PFP, the whole structure on
  much deployed firmware (either is accepted);
- nothing checkable: code and data measured from memory (images, blobs,
  handoff tables, POST code), EV_IPL (boot loaders hash the command or file
  and log a description), and EV_EVENT_TAG except cvmchain's own.

:func:`decode_event_data` never raises: malformed data gives ``{"error": ...}``.
"""

import struct

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
    EV_EFI_VARIABLE_AUTHORITY,
    EV_EFI_VARIABLE_BOOT,
    EV_EFI_VARIABLE_BOOT2,
    EV_EFI_VARIABLE_DRIVER_CONFIG,
    EV_EVENT_TAG,
    EV_IPL,
    EV_NO_ACTION,
    EV_OMIT_BOOT_DEVICE_EVENTS,
    EV_POST_CODE,
    EV_S_CRTM_VERSION,
    EV_SEPARATOR,
)

CHECK_EVENT_DATA = "event_data"
CHECK_VARIABLE_BOOT = "variable_boot"

_EVENT_DATA_TYPES = (EV_SEPARATOR, EV_ACTION, EV_EFI_ACTION, EV_S_CRTM_VERSION, EV_COMPACT_HASH,
                     EV_OMIT_BOOT_DEVICE_EVENTS, EV_EFI_GPT_EVENT, EV_EFI_GPT_EVENT2,
                     EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT2,
                     EV_EFI_VARIABLE_AUTHORITY)

_CVMCHAIN_TAG = b"CVMC"

WELL_KNOWN_GUIDS = {
    "8be4df61-93ca-11d2-aa0d-00e098032b8c": "EFI_GLOBAL_VARIABLE",
    "d719b2cb-3d3a-4596-a3bc-dad00e67656f": "EFI_IMAGE_SECURITY_DATABASE",
    "605dab50-e046-4300-abb6-3dd810dd8b23": "SHIM_LOCK",
    "a5c059a1-94e4-4aa7-87b5-ab155c2bf072": "EFI_CERT_X509",
    "c1c41626-504c-4092-aca9-41f936934328": "EFI_CERT_SHA256",
    "8868e871-e4f1-11d3-bc22-0080c73c8881": "EFI_ACPI_20_TABLE",
    "eb9d2d30-2d88-11d3-9a16-0090273fc14d": "ACPI_TABLE",
    "eb9d2d31-2d88-11d3-9a16-0090273fc14d": "SMBIOS_TABLE",
    "f2fd1544-9794-4a2c-992e-e5bbcf20e394": "SMBIOS3_TABLE",
}


def _variable_consistent(data: bytes | None) -> bool:
    """UEFI_VARIABLE_DATA whose lengths add up to exactly the event size."""
    if data is None or len(data) < 32:
        return False
    name_len, data_len = struct.unpack_from("<QQ", data, 16)
    return 32 + 2 * name_len + data_len == len(data)


def _utf16_text(data: bytes | None) -> bool:
    if data is None or len(data) < 4:
        return False
    if len(data) % 2 and data[-1] != 0:
        return False
    for i in range(1, len(data) - len(data) % 2, 2):
        if data[i] != 0 or (data[i - 1] != 0 and data[i - 1] < 0x20):
            return False
    return True


def digest_check_kind(event_type: int, index: int, data: bytes | None = None) -> str | None:
    """``"event_data"``, ``"variable_boot"`` or None (see the module docstring).

    Known firmware variation is absorbed here, not in the checker:
    EV_EFI_VARIABLE_BOOT digests are of VariableData (PFP) on some firmware and of
    the whole structure on others (``variable_boot`` accepts either); variable
    events whose lengths do not add up to the event size (old shim versions log
    6 extra bytes) are not checkable; EV_IPL is checkable only as a UTF-16 string
    (systemd-boot's command line), since GRUB and shim hash something other than
    the description they log.
    """
    if event_type == EV_EFI_VARIABLE_BOOT:
        return CHECK_VARIABLE_BOOT if _variable_consistent(data) else None
    if event_type in (EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT2,
                      EV_EFI_VARIABLE_AUTHORITY):
        return CHECK_EVENT_DATA if _variable_consistent(data) else None
    if event_type in _EVENT_DATA_TYPES:
        return CHECK_EVENT_DATA
    if event_type == EV_IPL and _utf16_text(data):
        return CHECK_EVENT_DATA
    if event_type == EV_EVENT_TAG and data is not None and bytes(data[:4]) == _CVMCHAIN_TAG:
        return CHECK_EVENT_DATA
    return None


def guid_text(raw: bytes) -> str:
    """EFI_GUID (mixed-endian) in its canonical text form."""
    a, b, c = struct.unpack_from("<IHH", raw, 0)
    d = bytes(raw[8:16]).hex()
    return "%08x-%04x-%04x-%s-%s" % (a, b, c, d[:4], d[4:])


def _utf16(raw: bytes) -> str:
    try:
        return bytes(raw).decode("utf-16-le").rstrip("\x00")
    except UnicodeError:
        return bytes(raw).hex()


def _ascii(raw: bytes) -> str | None:
    text = bytes(raw).rstrip(b"\x00")
    for b in text:
        if b < 0x20 or b > 0x7E:
            return None
    return text.decode()


def _variable(data: bytes) -> dict:
    if len(data) < 32:
        return {"error": "UEFI_VARIABLE_DATA needs 32 bytes, has %d" % len(data)}
    name_len, data_len = struct.unpack_from("<QQ", data, 16)
    if 32 + 2 * name_len > len(data) or 32 + 2 * name_len + data_len > len(data):
        return {"error": "UEFI_VARIABLE_DATA lengths (%d, %d) exceed the %d bytes"
                % (name_len, data_len, len(data)), "offset": 16}
    guid = guid_text(data[:16])
    name = _utf16(data[32:32 + 2 * name_len])
    value = bytes(data[32 + 2 * name_len:32 + 2 * name_len + data_len])
    out = {"variable_guid": guid, "variable_guid_name": WELL_KNOWN_GUIDS.get(guid, ""),
           "unicode_name": name, "variable_data_length": data_len}
    if name == "SecureBoot" and data_len == 1:
        out["secure_boot"] = value[0] == 1
    elif name.startswith("Boot") and len(name) == 8 and data_len >= 6:
        attrs, path_len = struct.unpack_from("<IH", value, 0)
        end = 6
        while end + 1 < len(value) and value[end:end + 2] != b"\0\0":
            end += 2
        out["load_option"] = {"attributes": attrs, "description": _utf16(value[6:end]),
                              "device_path_length": path_len}
    elif name == "BootOrder":
        out["boot_order"] = ["Boot%04X" % struct.unpack_from("<H", value, i)[0]
                             for i in range(0, len(value) - 1, 2)]
    else:
        out["variable_data"] = value[:256].hex()
    return out


def _image_load(data: bytes) -> dict:
    if len(data) < 32:
        return {"error": "UEFI_IMAGE_LOAD_EVENT needs 32 bytes, has %d" % len(data)}
    loc, length, link, path_len = struct.unpack_from("<QQQQ", data, 0)
    if 32 + path_len > len(data):
        return {"error": "LengthOfDevicePath %d exceeds the data" % path_len, "offset": 24}
    return {"image_location": loc, "image_length": length, "image_link_time_address": link,
            "device_path": bytes(data[32:32 + path_len]).hex()}


def _blob(event_type: int, data: bytes) -> dict:
    if event_type == EV_EFI_PLATFORM_FIRMWARE_BLOB2:
        if not data:
            return {"error": "empty UEFI_PLATFORM_FIRMWARE_BLOB2"}
        n = data[0]
        if 1 + n + 16 > len(data):
            return {"error": "BlobDescriptionSize %d exceeds the data" % n, "offset": 0}
        base, length = struct.unpack_from("<QQ", data, 1 + n)
        return {"description": _ascii(data[1:1 + n]) or bytes(data[1:1 + n]).hex(),
                "base": base, "length": length}
    if len(data) < 16:
        return {"error": "UEFI_PLATFORM_FIRMWARE_BLOB needs 16 bytes"}
    base, length = struct.unpack_from("<QQ", data, 0)
    return {"base": base, "length": length}


def _handoff(event_type: int, data: bytes) -> dict:
    pos = 0
    out: dict = {}
    if event_type == EV_EFI_HANDOFF_TABLES2:
        if not data:
            return {"error": "empty UEFI_HANDOFF_TABLE_POINTERS2"}
        n = data[0]
        out["description"] = _ascii(data[1:1 + n]) or bytes(data[1:1 + n]).hex()
        pos = 1 + n
    if pos + 8 > len(data):
        return {"error": "NumberOfTables missing", "offset": pos}
    count = struct.unpack_from("<Q", data, pos)[0]
    pos += 8
    if count > (len(data) - pos) // 24:
        return {"error": "NumberOfTables %d exceeds the data" % count, "offset": pos - 8}
    tables = []
    for i in range(count):
        guid = guid_text(data[pos + 24 * i:pos + 24 * i + 16])
        ptr = struct.unpack_from("<Q", data, pos + 24 * i + 16)[0]
        tables.append({"guid": guid, "name": WELL_KNOWN_GUIDS.get(guid, ""), "table": ptr})
    out["tables"] = tables
    return out


def decode_event_data(event_type: int, data: bytes, index: int = 0) -> dict | None:
    """A display dict for ``data`` of ``event_type``; None when there is nothing to add."""
    try:
        return _decode(event_type, bytes(data))
    except (ValueError, IndexError, struct.error) as e:
        return {"error": "undecodable: %s" % e}


def _decode(event_type: int, data: bytes) -> dict | None:
    if event_type == EV_SEPARATOR:
        if len(data) == 4:
            v = struct.unpack_from("<I", data, 0)[0]
            return {"separator": "error" if v == 1 else ("normal" if v in (0, 0xFFFFFFFF)
                                                         else "0x%08x" % v)}
        return {"separator": data.hex()}
    if event_type in (EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT, EV_EFI_VARIABLE_BOOT2,
                      EV_EFI_VARIABLE_AUTHORITY):
        return _variable(data)
    if event_type in (EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_BOOT_SERVICES_DRIVER,
                      EV_EFI_RUNTIME_SERVICES_DRIVER):
        return _image_load(data)
    if event_type in (EV_EFI_PLATFORM_FIRMWARE_BLOB, EV_EFI_PLATFORM_FIRMWARE_BLOB2):
        return _blob(event_type, data)
    if event_type in (EV_EFI_HANDOFF_TABLES, EV_EFI_HANDOFF_TABLES2):
        return _handoff(event_type, data)
    if event_type == EV_EVENT_TAG and len(data) >= 8:
        tag, size = struct.unpack_from("<II", data, 0)
        payload = data[8:8 + size]
        return {"tagged_event_id": "0x%08x" % tag,
                "tagged_event_data": _ascii(payload) or payload.hex()}
    if event_type == EV_S_CRTM_VERSION:
        return {"version": _utf16(data) if len(data) % 2 == 0 else data.hex()}
    if event_type == EV_NO_ACTION:
        sig = data[:16].rstrip(b"\x00")
        text = _ascii(sig)
        if text:
            out: dict = {"signature": text}
            if text == "StartupLocality" and len(data) == 17:
                out["locality"] = data[16]
            return out
        return None
    if event_type in (EV_EFI_ACTION, EV_ACTION, EV_IPL, EV_POST_CODE, EV_OMIT_BOOT_DEVICE_EVENTS):
        text = _ascii(data)
        if text is not None:
            return {"string": text}
        if len(data) % 2 == 0 and data:
            return {"string": _utf16(data)}
    return None
