"""atheris target: every shared_spec decoder on arbitrary bytes raises only SpecError.

Run: ``nox -s fuzz`` (or ``python fuzz/fuzz_parsers.py -atheris_runs=200000``).
The first byte picks the decoder, the rest is its input.
"""

import sys

import atheris

with atheris.instrument_imports():
    from cloud_sdk.hashing import hashlib_provider
    from shared_spec import cel, ima, tdx_quote, tdx_report
    from shared_spec.ccel import CcelTable
    from shared_spec.checks import check_tcg_events
    from shared_spec.errors import SpecError
    from shared_spec.replay import replay
    from shared_spec.tcg_log import parse_tcg_log
    from shared_spec.uefi_events import decode_event_data

HASHES = hashlib_provider()


def _tcg(data: bytes) -> None:
    log = parse_tcg_log(data)
    replay(log.events, HASHES)
    check_tcg_events(log.events, HASHES)
    for ev in log.events:
        decode_event_data(ev.event_type, ev.data, ev.index)


def _ima_ascii(data: bytes) -> None:
    entries = ima.parse_ima_ascii(data)
    replay(entries, HASHES, algorithms=[0x0004, 0x000B])


def _ima_binary(data: bytes) -> None:
    entries = ima.parse_ima_binary(data)
    replay(entries, HASHES, algorithms=[0x0004, 0x000B])


TARGETS = [
    _tcg,
    CcelTable.decode,
    cel.parse_cel,
    _ima_ascii,
    _ima_binary,
    tdx_quote.parse_quote,
    tdx_report.parse_tdreport,
]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    target = TARGETS[data[0] % len(TARGETS)]
    try:
        target(data[1:])
    except SpecError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
