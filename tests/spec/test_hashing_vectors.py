"""FIPS 180-4 example vectors for the hash provider (pytest and MicroPython)."""

from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512
from tests.spec._compat import hash_provider, require_alg

ABC = {
    ALG_SHA1: "a9993e364706816aba3e25717850c26c9cd0d89d",
    ALG_SHA256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    ALG_SHA384: "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
                "8086072ba1e7cc2358baeca134c825a7",
    ALG_SHA512: "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
}
# 896-bit message of FIPS 180-4 (two blocks for SHA-384/512)
LONG = (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
        b"jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")
LONG_384 = ("09330c33f71147e83d192fc782cd1b4753111b173b3b05d22fa08086e3b0f712"
            "fcc7c71a557e2db966c3e9fa91746039")
MILLION_A_384 = ("9d0e1809716474cb086e834e310a4a1ced149e9c00f248527972cec5704c2a5b"
                 "07b8b3dc38ecc4ebae97ddd87f3d8985")


def test_abc():
    h = hash_provider()
    for alg, want in ABC.items():
        require_alg(alg)
        assert h.digest(alg, b"abc").hex() == want, alg


def test_sha384_two_blocks_and_streaming():
    require_alg(ALG_SHA384)
    h = hash_provider()
    assert h.digest(ALG_SHA384, LONG).hex() == LONG_384
    s = h.new(ALG_SHA384)
    chunk = b"a" * 1000
    for _ in range(1000):
        s.update(chunk)
    assert s.digest().hex() == MILLION_A_384
