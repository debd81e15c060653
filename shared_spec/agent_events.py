"""The events the cvmchain agent logs and extends.

Every agent event is a TCG_PCR_EVENT2 of type EV_EVENT_TAG whose event data
is a TCG_PCClientTaggedEvent with tag :data:`CVMCHAIN_TAG_ID` and a short
canonical ASCII descriptor as tagged data. Each bank's digest is that bank's
hash of the whole event data, so any TCG tool can check a record.

Descriptors (``<hex>`` is lower-case)::

    cvmchain:agent-config:sha384:<hex>          the agent configuration file's bytes
    cvmchain:ima-policy:sha384:<hex>            the IMA policy file's exact bytes
    cvmchain:ima-policy:none                    no policy configured
    cvmchain:rootfs:tree:sha384:<hex>           digest of the rootfs manifest
    cvmchain:rootfs:identity:<fs>:<uuid>:<label>:<partuuid>
    cvmchain:rootfs:verity:<root hash hex>
    cvmchain:error:<step>:<message>             on_error=continue: a step failed
    cvmchain:leave-initrd                       last event, right before switch_root

One more record is logged but never extended: an EV_NO_ACTION whose tagged
data is ``cvmchain:initial-value:<alg>:<hex>``, giving the value the agent
read from a register before its first extend (a TSM register provider need
not start at zero). Replay starts that register from it.
"""

from shared_spec.algorithms import alg_from_name, alg_name
from shared_spec.errors import SpecError
from shared_spec.event_types import EV_EVENT_TAG, EV_NO_ACTION
from shared_spec.hashing import HashProvider
from shared_spec.tagged_event import TaggedEvent

#: "CVMC" read as a little-endian u32.
CVMCHAIN_TAG_ID = 0x434D5643

PREFIX = "cvmchain:"
LEAVE_INITRD = "cvmchain:leave-initrd"
IMA_POLICY_NONE = "cvmchain:ima-policy:none"

#: Upper bound on a descriptor's length; error messages are cut to fit.
MAX_DESCRIPTOR = 512


def config_descriptor(sha384_hex: str) -> str:
    return "cvmchain:agent-config:sha384:" + sha384_hex


def ima_policy_descriptor(sha384_hex: str) -> str:
    return "cvmchain:ima-policy:sha384:" + sha384_hex


def rootfs_tree_descriptor(sha384_hex: str) -> str:
    return "cvmchain:rootfs:tree:sha384:" + sha384_hex


def rootfs_identity_descriptor(fstype: str, uuid: str, label: str, partuuid: str) -> str:
    return "cvmchain:rootfs:identity:%s:%s:%s:%s" % (fstype, uuid, _clean(label), partuuid)


def rootfs_verity_descriptor(root_hash_hex: str) -> str:
    return "cvmchain:rootfs:verity:" + root_hash_hex


def error_descriptor(step: str, message: str) -> str:
    text = "cvmchain:error:%s:%s" % (_clean(step), _clean(message))
    return text[:MAX_DESCRIPTOR]


def initial_value_descriptor(alg: int, value: bytes) -> str:
    return "cvmchain:initial-value:%s:%s" % (alg_name(alg), bytes(value).hex())


def _clean(text: str) -> str:
    """Printable ASCII only, no newlines: descriptors are one canonical line."""
    out = []
    for ch in text:
        o = ord(ch)
        out.append(ch if 0x20 <= o < 0x7F else "?")
    return "".join(out)


def encode_event_data(descriptor: str) -> bytes:
    """The EV_EVENT_TAG event data carrying ``descriptor``."""
    raw = descriptor.encode()
    if len(raw) > MAX_DESCRIPTOR:
        raise SpecError("descriptor longer than %d bytes" % MAX_DESCRIPTOR, None, "descriptor")
    return TaggedEvent(CVMCHAIN_TAG_ID, raw).encode()


def decode_event_data(data: bytes) -> str | None:
    """The descriptor of a cvmchain tagged event, or None if ``data`` is not one."""
    try:
        tagged = TaggedEvent.decode(data)
    except SpecError:
        return None
    if tagged.tag_id != CVMCHAIN_TAG_ID:
        return None
    try:
        text = bytes(tagged.data).decode()
    except UnicodeError:
        return None
    if not text.startswith(PREFIX):
        return None
    return text


def event_digests(data: bytes, algorithms: list, hashes: HashProvider) -> list:
    """[(alg, H_alg(data))] for each bank: the digests of an agent record."""
    return [(alg, hashes.digest(alg, data)) for alg in algorithms]


def is_agent_event(ev: object) -> bool:
    et = getattr(ev, "event_type", None)
    if et != EV_EVENT_TAG and et != EV_NO_ACTION:
        return False
    return decode_event_data(getattr(ev, "data", b"")) is not None


def initial_values(events: list) -> dict:
    """{(index, alg): value} from the agent's initial-value records."""
    out = {}
    for ev in events:
        if getattr(ev, "event_type", None) != EV_NO_ACTION:
            continue
        desc = decode_event_data(getattr(ev, "data", b""))
        if desc is None or not desc.startswith("cvmchain:initial-value:"):
            continue
        parts = desc.split(":")
        if len(parts) != 4:
            continue
        alg = alg_from_name(parts[2])
        if alg is None:
            continue
        try:
            value = bytes.fromhex(parts[3])
        except ValueError:
            continue
        out[(ev.index, alg)] = value
    return out
