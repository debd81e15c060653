"""FIPS 180-4 example vectors for the hash provider (pytest and MicroPython).

Under MicroPython this checks ``mbedhash`` (libmbedcrypto through ffi), under
CPython ``hashlib``: the same known answers on both sides.
"""

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
# the 448-bit message (one block for SHA-1/256, one block for SHA-384/512)
MSG448 = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
MSG448_DIGESTS = {
    ALG_SHA1: "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
    ALG_SHA256: "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ALG_SHA384: "3391fdddfc8dc7393707a65b1b4709397cf8b1d162af05abfe8f450de5f36bc6"
                "b0455a8520bc4e6f5fe95b1fe3c8452b",
    ALG_SHA512: "204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c335"
                "96fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445",
}
# the 896-bit message (two blocks for SHA-384/512)
MSG896 = (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
          b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")
MSG896_384 = ("09330c33f71147e83d192fc782cd1b4753111b173b3b05d22fa08086e3b0f712"
              "fcc7c71a557e2db966c3e9fa91746039")
EMPTY_384 = ("38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da"
             "274edebfe76f65fbd51ad2f14898b95b")
MILLION_A_384 = ("9d0e1809716474cb086e834e310a4a1ced149e9c00f248527972cec5704c2a5b"
                 "07b8b3dc38ecc4ebae97ddd87f3d8985")
MILLION_A_512 = ("e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
                 "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b")


def test_abc():
    h = hash_provider()
    for alg, want in ABC.items():
        require_alg(alg)
        assert h.digest(alg, b"abc").hex() == want, alg


def test_448_bit_message():
    h = hash_provider()
    for alg, want in MSG448_DIGESTS.items():
        require_alg(alg)
        assert h.digest(alg, MSG448).hex() == want, alg
        s = h.new(alg)
        s.update(MSG448[:5])
        s.update(MSG448[5:])
        assert s.digest().hex() == want, alg


def test_sha384_empty_and_two_blocks():
    require_alg(ALG_SHA384)
    h = hash_provider()
    assert h.digest(ALG_SHA384, b"").hex() == EMPTY_384
    assert h.new(ALG_SHA384).digest().hex() == EMPTY_384
    assert h.digest(ALG_SHA384, MSG896).hex() == MSG896_384


def test_million_a_streaming():
    h = hash_provider()
    chunk = b"a" * 1000
    for alg, want in ((ALG_SHA384, MILLION_A_384), (ALG_SHA512, MILLION_A_512)):
        require_alg(alg)
        s = h.new(alg)
        for _ in range(1000):
            s.update(chunk)
        assert s.digest().hex() == want, alg


def test_sha384_memoryview_slices_across_block_boundaries():
    require_alg(ALG_SHA384)
    h = hash_provider()
    data = bytearray(1000)
    for i in range(len(data)):
        data[i] = (i * 7 + 3) & 0xFF
    want = h.digest(ALG_SHA384, bytes(data))
    view = memoryview(data)
    for step in (1, 111, 112, 127, 128, 129, 999):
        s = h.new(ALG_SHA384)
        for off in range(0, len(data), step):
            s.update(view[off:off + step])
        assert s.digest() == want, step


def test_sha384_digest_is_repeatable_and_copy_is_independent():
    require_alg(ALG_SHA384)
    h = hash_provider()
    s = h.new(ALG_SHA384)
    s.update(MSG896[:60])
    c = s.copy()
    assert s.digest() == s.digest()
    s.update(MSG896[60:])
    assert s.digest().hex() == MSG896_384
    c.update(MSG896[60:])
    assert c.digest().hex() == MSG896_384
