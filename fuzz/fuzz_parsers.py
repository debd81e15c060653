"""atheris target: every shared_spec decoder on arbitrary bytes raises only SpecError.

Run: ``nox -s fuzz`` (or ``python fuzz/fuzz_parsers.py -atheris_runs=200000``).
The first byte picks the decoder, the rest is its input. One target is
differential: kernel-form ima-ng lines edited by the input go through the C
block decoder (shared_spec._speedups) and the Python one, which must agree.
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

#: three kernel-form ima-ng lines (the leading-space form), which the edits start from
_NG_LINES = b"".join(b" 2 %s ima-ng sha256:%s /usr/lib/lib%d.so\n"
                     % ((b"%02x" % i) * 20, (b"%02x" % (i + 7)) * 32, i) for i in range(3))


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


def _outcome(block: bytes) -> tuple:
    out: list = []
    took = ima._bulk_ima_ng(block, 5, False, None, out)
    return took, [(e.pcr, e.index, e.template_hash, e.template_hash_alg, e.template_data,
                   e.offset) for e in out]


def _ima_ng_block_differential(data: bytes) -> None:
    """Edit the base lines at positions the input names; C and Python must agree."""
    block = bytearray(_NG_LINES.rstrip(b"\n"))
    for i in range(0, len(data) - 1, 2):
        at = data[i] % (len(block) + 1)
        if data[i + 1] & 0x80:  # delete one byte
            del block[at:at + 1]
        else:  # write a byte; hex digits, spaces and newlines most often
            block[at:at + 1] = bytes([b"0aF: \n\t\x00g-"[data[i + 1] % 10]
                                      if data[i + 1] & 0x40 else data[i + 1]])
    native = _outcome(bytes(block))
    saved = ima.SPEEDUPS
    ima.SPEEDUPS = None
    try:
        python = _outcome(bytes(block))
    finally:
        ima.SPEEDUPS = saved
    if native != python:
        raise AssertionError("C and Python ima-ng block decoders differ on %r" % bytes(block))


TARGETS = [
    _tcg,
    CcelTable.decode,
    cel.parse_cel,
    _ima_ascii,
    _ima_binary,
    tdx_quote.parse_quote,
    tdx_report.parse_tdreport,
    _ima_ng_block_differential,
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
