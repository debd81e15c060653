"""EV_EVENT_TAG event data: TCG_PCClientTaggedEvent (PC Client PFP §10.4.2.1)::

    u32 taggedEventID | u32 taggedEventDataSize | u8 taggedEventData[taggedEventDataSize]
"""

import struct

from shared_spec.binary import Reader
from shared_spec.errors import FormatError


class TaggedEvent:
    """A TCG_PCClientTaggedEvent."""

    def __init__(self, tag_id: int, data: bytes) -> None:
        self.tag_id = tag_id
        self.data = data

    @classmethod
    def decode(cls, data: bytes, base: int = 0, source: str | None = None) -> "TaggedEvent":
        r = Reader(data, base=base, source=source)
        tag = r.u32("taggedEventID")
        payload = r.sized("taggedEventDataSize", "taggedEventData")
        if not r.at_end():
            raise FormatError("%d bytes after taggedEventData" % r.remaining(), r.offset,
                              "taggedEventData", source)
        return cls(tag, payload)

    def encode(self) -> bytes:
        return struct.pack("<II", self.tag_id, len(self.data)) + bytes(self.data)
