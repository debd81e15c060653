"""Agent event descriptors (pytest and MicroPython)."""

from shared_spec import agent_events as ae
from shared_spec.algorithms import ALG_SHA256
from shared_spec.event_types import EV_EVENT_TAG, EV_NO_ACTION
from shared_spec.tcg_log import TcgEvent
from tests.spec._compat import hash_provider


def test_descriptor_round_trip_through_tagged_event():
    d = ae.rootfs_tree_descriptor("ab" * 48)
    data = ae.encode_event_data(d)
    assert data[:4] == b"CVMC"
    assert ae.decode_event_data(data) == d


def test_foreign_tag_is_not_an_agent_event():
    assert ae.decode_event_data(b"\x01\0\0\0\x03\0\0\0abc") is None
    assert ae.decode_event_data(b"junk") is None


def test_error_descriptor_is_one_printable_line():
    d = ae.error_descriptor("rootfs", "cannot read /usr/x\nbad \xe9")
    assert "\n" not in d and d.startswith("cvmchain:error:rootfs:")


def test_digests_are_hash_of_event_data():
    h = hash_provider()
    data = ae.encode_event_data(ae.LEAVE_INITRD)
    ((alg, d),) = ae.event_digests(data, [ALG_SHA256], h)
    assert alg == ALG_SHA256 and d == h.digest(ALG_SHA256, data)


def test_initial_values_are_read_from_no_action_records():
    data = ae.encode_event_data(ae.initial_value_descriptor(0x000C, b"\x07" * 48))
    evs = [TcgEvent(4, EV_NO_ACTION, [], data), TcgEvent(4, EV_EVENT_TAG, [], data)]
    assert ae.initial_values(evs) == {(4, 0x000C): b"\x07" * 48}
