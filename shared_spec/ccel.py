"""The CC Event Log: its ACPI table (ACPI 6.5 §5.2.34) and its log area.

The ``CCEL`` table (56 bytes) is the standard ACPI header followed by::

    u8 CC Type | u8 CC Subtype | u16 Reserved | u64 LAML | u64 LASA

LAML is the log area's minimum length, LASA its physical start. The log area
holds a TCG crypto-agile log (UEFI 2.10 §38.4) whose registers are CC MR
indexes; the Spec ID event may carry index 1 instead of 0 and the area is
0xFF-padded after the last event. Linux exposes the table at
``/sys/firmware/acpi/tables/CCEL`` and the area at ``.../tables/data/CCEL``.
"""

import struct

from shared_spec.binary import Reader
from shared_spec.errors import EncodeError, FormatError
from shared_spec.tcg_log import TcgLog, parse_tcg_log

CCEL_SIGNATURE = b"CCEL"
CCEL_TABLE_SIZE = 56

CC_TYPE_NAMES = {0: "reserved", 1: "AMD SEV", 2: "Intel TDX"}


class CcelTable:
    """The ACPI ``CCEL`` table."""

    def __init__(self, cc_type: int = 2, cc_subtype: int = 0, laml: int = 0, lasa: int = 0,
                 revision: int = 1, oem_id: bytes = b"CVMCHN", oem_table_id: bytes = b"CVMCHAIN",
                 oem_revision: int = 1, creator_id: bytes = b"CVMC", creator_revision: int = 1,
                 checksum: int | None = None, length: int = CCEL_TABLE_SIZE,
                 reserved: int = 0) -> None:
        self.cc_type = cc_type
        self.cc_subtype = cc_subtype
        self.laml = laml
        self.lasa = lasa
        self.revision = revision
        self.oem_id = oem_id
        self.oem_table_id = oem_table_id
        self.oem_revision = oem_revision
        self.creator_id = creator_id
        self.creator_revision = creator_revision
        self.checksum = checksum
        self.length = length
        self.reserved = reserved

    @property
    def cc_type_name(self) -> str:
        return CC_TYPE_NAMES.get(self.cc_type, "unknown (%d)" % self.cc_type)

    @property
    def checksum_valid(self) -> bool:
        """ACPI rule: all bytes of the table sum to zero modulo 256."""
        return sum(self.encode()) & 0xFF == 0

    @classmethod
    def decode(cls, data: bytes, source: str | None = None) -> "CcelTable":
        r = Reader(data, source=source)
        sig = r.read(4, "Signature")
        if sig != CCEL_SIGNATURE:
            raise FormatError("ACPI signature %r is not CCEL" % sig, 0, "Signature", source)
        length = r.u32("Length")
        if length != CCEL_TABLE_SIZE or len(data) < CCEL_TABLE_SIZE:
            raise FormatError("CCEL table length %d (given %d bytes), expected %d"
                              % (length, len(data), CCEL_TABLE_SIZE), 4, "Length", source)
        revision = r.u8("Revision")
        checksum = r.u8("Checksum")
        oem_id = r.read(6, "OEMID")
        oem_table_id = r.read(8, "OEM Table ID")
        oem_revision = r.u32("OEM Revision")
        creator_id = r.read(4, "Creator ID")
        creator_revision = r.u32("Creator Revision")
        cc_type = r.u8("CC Type")
        cc_subtype = r.u8("CC Subtype")
        reserved = r.u16("Reserved")
        laml = r.u64("LAML")
        lasa = r.u64("LASA")
        return cls(cc_type, cc_subtype, laml, lasa, revision, oem_id, oem_table_id, oem_revision,
                   creator_id, creator_revision, checksum, length, reserved)

    def encode(self) -> bytes:
        for name, value, size in (("OEMID", self.oem_id, 6), ("OEM Table ID", self.oem_table_id, 8),
                                  ("Creator ID", self.creator_id, 4)):
            if len(value) != size:
                raise EncodeError("%s must be %d bytes" % (name, size), None, name)
        body = struct.pack("<4sIBB6s8sI4sIBBHQQ", CCEL_SIGNATURE, self.length, self.revision, 0,
                           self.oem_id, self.oem_table_id, self.oem_revision, self.creator_id,
                           self.creator_revision, self.cc_type, self.cc_subtype, self.reserved,
                           self.laml, self.lasa)
        checksum = self.checksum
        if checksum is None:
            checksum = (-sum(body)) & 0xFF
        return body[:9] + bytes([checksum]) + body[10:]


def parse_ccel_log(data: bytes, table: CcelTable | None = None, source: str | None = None,
                   strict: bool = True) -> TcgLog:
    """Decode a CCEL log area; with ``table`` the area is bounded by its LAML."""
    end = None
    if table is not None and table.laml < len(data):
        end = table.laml
    return parse_tcg_log(data, source=source, strict=strict, end=end)
