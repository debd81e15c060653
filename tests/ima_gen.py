"""Synthetic ima-ng measurement lists for tests and benchmarks, built with hashlib only.

Independent of :mod:`shared_spec.ima`: the layouts are written out here from
the kernel's ``ima_measurements_show`` / ``ima_ascii_measurements_show``, so a
test can check the parser against them. Every list starts with a
``boot_aggregate`` entry; ``violation_every`` > 0 turns every k-th entry into
a violation (zero template hash, zero file digest), as the kernel logs one.
"""

import hashlib
import random
import struct

PCR = 10


def make_ima_ng_records(n: int, seed: int = 0, violation_every: int = 0,
                        pcr: int = PCR) -> list[tuple[int, bytes, bytes, bytes]]:
    """``n`` ima-ng records: (pcr, SHA-1 template hash, template data, path)."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        if i == 0:
            path = b"boot_aggregate"
        else:
            path = b"/usr/lib/x86_64-linux-gnu/lib%06d-%s.so.%d" % (
                i, rnd.randbytes(4).hex().encode(), rnd.randrange(10))
        violation = violation_every > 0 and i > 0 and i % violation_every == 0
        fdig = b"\0" * 32 if violation else hashlib.sha256(path + b"%d" % seed).digest()
        d_ng = b"sha256:\0" + fdig
        n_ng = path + b"\0"
        tdata = struct.pack("<I", len(d_ng)) + d_ng + struct.pack("<I", len(n_ng)) + n_ng
        th = b"\0" * 20 if violation else hashlib.sha1(tdata).digest()
        out.append((pcr, th, tdata, path))
    return out


def ascii_line(pcr: int, th: bytes, tdata: bytes, path: bytes) -> bytes:
    """The kernel's ascii line of an ima-ng record."""
    fdig = tdata[4 + 8:4 + 8 + 32]
    return b"%2d %s ima-ng sha256:%s %s\n" % (pcr, th.hex().encode(), fdig.hex().encode(),
                                               path)


def binary_record(pcr: int, th: bytes, tdata: bytes) -> bytes:
    """The kernel's binary record of an ima-ng entry (little-endian)."""
    return (struct.pack("<I", pcr) + th + struct.pack("<I", 6) + b"ima-ng" +
            struct.pack("<I", len(tdata)) + tdata)


def make_ima_ng_ascii(n: int, seed: int = 0, violation_every: int = 0) -> bytes:
    """An ``ascii_runtime_measurements`` list of ``n`` ima-ng entries (~150 bytes each)."""
    return b"".join([ascii_line(p, th, td, path)
                     for p, th, td, path in make_ima_ng_records(n, seed, violation_every)])


def make_ima_ng_binary(n: int, seed: int = 0, violation_every: int = 0) -> bytes:
    """A ``binary_runtime_measurements`` list of ``n`` ima-ng entries (~120 bytes each)."""
    return b"".join([binary_record(p, th, td)
                     for p, th, td, _ in make_ima_ng_records(n, seed, violation_every)])


def expected_pcr(n: int, seed: int = 0, violation_every: int = 0,
                 hash_name: str = "sha1") -> bytes:
    """PCR 10 after the list, computed independently: H(old || H(template data)), 0xFF
    for violations, from zeros."""
    size = hashlib.new(hash_name).digest_size
    value = b"\0" * size
    for _, th, tdata, _ in make_ima_ng_records(n, seed, violation_every):
        d = b"\xff" * size if th == b"\0" * 20 else hashlib.new(hash_name, tdata).digest()
        value = hashlib.new(hash_name, value + d).digest()
    return value
