"""Deterministic benchmark inputs: large TCG, CCEL and IMA logs built from scratch."""

import hashlib
import random
import struct
from pathlib import Path

from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384
from shared_spec.event_types import EV_EFI_ACTION, EV_EVENT_TAG, EV_IPL
from shared_spec.tcg_log import SpecIdEvent, encode_pcr_event2, encode_spec_id_header

_HASHES = {ALG_SHA1: hashlib.sha1, ALG_SHA256: hashlib.sha256, ALG_SHA384: hashlib.sha384}


def tcg_log(n: int, algs: tuple[int, ...] = (ALG_SHA1, ALG_SHA256, ALG_SHA384),
            seed: int = 1, ccel: bool = False) -> bytes:
    """A crypto-agile log of ``n`` events (about 185 bytes each with three banks)."""
    rnd = random.Random(seed)
    spec = SpecIdEvent(algorithms=[(a, _HASHES[a]().digest_size) for a in algs])
    parts = [encode_spec_id_header(spec, index=1 if ccel else 0)]
    types = (EV_IPL, EV_EFI_ACTION, EV_EVENT_TAG)
    for i in range(n):
        data = b"cmdline: linux /vmlinuz root=/dev/vda1 event %08d %s" % (
            i, rnd.randbytes(8).hex().encode())
        index = (rnd.randrange(1, 5) if ccel else rnd.randrange(0, 16))
        digests = [(a, _HASHES[a](data).digest()) for a in algs]
        parts.append(encode_pcr_event2(index, types[i % 3], digests, data))
    out = b"".join(parts)
    if ccel:
        out += b"\xff" * (4096 - len(out) % 4096)
    return out


def ima_ng_entries(n: int, seed: int = 2) -> list[tuple[bytes, bytes, bytes]]:
    """(template hash sha1, file digest sha256, path) for ``n`` ima-ng entries."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        path = b"/usr/lib/x86_64-linux-gnu/lib%06d-%s.so" % (i, rnd.randbytes(4).hex().encode())
        fdig = hashlib.sha256(path).digest()
        d_ng = b"sha256:\0" + fdig
        n_ng = path + b"\0"
        tdata = struct.pack("<I", len(d_ng)) + d_ng + struct.pack("<I", len(n_ng)) + n_ng
        out.append((hashlib.sha1(tdata).digest(), fdig, path))
    return out


def ima_ascii(n: int, seed: int = 2) -> bytes:
    lines = [b"10 %s ima-ng sha256:%s %s\n" % (th.hex().encode(), fd.hex().encode(), p)
             for th, fd, p in ima_ng_entries(n, seed)]
    return b"".join(lines)


def ima_binary(n: int, seed: int = 2) -> bytes:
    parts = []
    for th, fd, p in ima_ng_entries(n, seed):
        d_ng = b"sha256:\0" + fd
        n_ng = p + b"\0"
        tdata = struct.pack("<I", len(d_ng)) + d_ng + struct.pack("<I", len(n_ng)) + n_ng
        parts.append(struct.pack("<I", 10) + th + struct.pack("<I", 6) + b"ima-ng" +
                     struct.pack("<I", len(tdata)) + tdata)
    return b"".join(parts)


def write_inputs(directory: Path, n: int) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "tcg": (directory / ("tcg-%d.bin" % n), lambda: tcg_log(n)),
        "ccel": (directory / ("ccel-%d.bin" % n), lambda: tcg_log(n, (ALG_SHA384,), ccel=True)),
        "ima-ascii": (directory / ("ima-ascii-%d.txt" % n), lambda: ima_ascii(n)),
        "ima-binary": (directory / ("ima-binary-%d.bin" % n), lambda: ima_binary(n)),
    }
    out = {}
    for name, (path, make) in files.items():
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(make())
            tmp.replace(path)
        out[name] = path
    return out
