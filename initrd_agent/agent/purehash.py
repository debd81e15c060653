"""SHA-384 and SHA-512 (FIPS 180-4) in plain Python, for MicroPython and CPython.

The fallback of :mod:`mbedhash` when ``ffi`` or libmbedcrypto cannot be
loaded: correct but slow (about 1.5 MB/s under MicroPython 1.25 and 0.6 MB/s
under CPython, against about 500 MB/s through ffi), so the agent can still
measure, just not quickly. Nothing here beyond integers, ``bytearray`` and
``struct``.

The 64-bit words are held as (high, low) 32-bit halves, and no intermediate
value reaches 2**62: on a 64-bit MicroPython that is where small ints end and
every operation would allocate an arbitrary-precision integer on the heap.
"""

import struct

_K = (
    0x428A2F98D728AE22, 0x7137449123EF65CD, 0xB5C0FBCFEC4D3B2F, 0xE9B5DBA58189DBBC,
    0x3956C25BF348B538, 0x59F111F1B605D019, 0x923F82A4AF194F9B, 0xAB1C5ED5DA6D8118,
    0xD807AA98A3030242, 0x12835B0145706FBE, 0x243185BE4EE4B28C, 0x550C7DC3D5FFB4E2,
    0x72BE5D74F27B896F, 0x80DEB1FE3B1696B1, 0x9BDC06A725C71235, 0xC19BF174CF692694,
    0xE49B69C19EF14AD2, 0xEFBE4786384F25E3, 0x0FC19DC68B8CD5B5, 0x240CA1CC77AC9C65,
    0x2DE92C6F592B0275, 0x4A7484AA6EA6E483, 0x5CB0A9DCBD41FBD4, 0x76F988DA831153B5,
    0x983E5152EE66DFAB, 0xA831C66D2DB43210, 0xB00327C898FB213F, 0xBF597FC7BEEF0EE4,
    0xC6E00BF33DA88FC2, 0xD5A79147930AA725, 0x06CA6351E003826F, 0x142929670A0E6E70,
    0x27B70A8546D22FFC, 0x2E1B21385C26C926, 0x4D2C6DFC5AC42AED, 0x53380D139D95B3DF,
    0x650A73548BAF63DE, 0x766A0ABB3C77B2A8, 0x81C2C92E47EDAEE6, 0x92722C851482353B,
    0xA2BFE8A14CF10364, 0xA81A664BBC423001, 0xC24B8B70D0F89791, 0xC76C51A30654BE30,
    0xD192E819D6EF5218, 0xD69906245565A910, 0xF40E35855771202A, 0x106AA07032BBD1B8,
    0x19A4C116B8D2D0C8, 0x1E376C085141AB53, 0x2748774CDF8EEB99, 0x34B0BCB5E19B48A8,
    0x391C0CB3C5C95A63, 0x4ED8AA4AE3418ACB, 0x5B9CCA4F7763E373, 0x682E6FF3D6B2B8A3,
    0x748F82EE5DEFB2FC, 0x78A5636F43172F60, 0x84C87814A1F0AB72, 0x8CC702081A6439EC,
    0x90BEFFFA23631E28, 0xA4506CEBDE82BDE9, 0xBEF9A3F7B2C67915, 0xC67178F2E372532B,
    0xCA273ECEEA26619C, 0xD186B8C721C0C207, 0xEADA7DD6CDE0EB1E, 0xF57D4F7FEE6ED178,
    0x06F067AA72176FBA, 0x0A637DC5A2C898A6, 0x113F9804BEF90DAE, 0x1B710B35131C471B,
    0x28DB77F523047D84, 0x32CAAB7B40C72493, 0x3C9EBE0A15C9BEBC, 0x431D67C49C100D4C,
    0x4CC5D4BECB3E42B6, 0x597F299CFC657E2A, 0x5FCB6FAB3AD6FAEC, 0x6C44198C4A475817,
)
_KH = tuple(k >> 32 for k in _K)
_KL = tuple(k & 0xFFFFFFFF for k in _K)

_IV384 = (
    0xCBBB9D5DC1059ED8, 0x629A292A367CD507, 0x9159015A3070DD17, 0x152FECD8F70E5939,
    0x67332667FFC00B31, 0x8EB44A8768581511, 0xDB0C2E0D64F98FA7, 0x47B5481DBEFA4FA4,
)
_IV512 = (
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
)

_M = 0xFFFFFFFF
_BLOCK = 128


def _split(words):
    out = []
    for w in words:
        out.append(w >> 32)
        out.append(w & _M)
    return out


def _compress(state, w, block, off):
    """One SHA-512 compression of ``block[off:off + 128]`` into ``state`` (16 halves).

    ``w`` is the caller's 160-entry scratch list for the message schedule.
    """
    # No allocation per block: MicroPython's collector scans every reachable
    # buffer word by word, so garbage made here costs in proportion to the
    # caller's (possibly large) buffer.
    b = block
    for i in range(32):
        o = off + 4 * i
        w[i] = (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]
    for t in range(16, 80):
        # sigma0(w[t-15]) = ROTR1 ^ ROTR8 ^ SHR7, sigma1(w[t-2]) = ROTR19 ^ ROTR61 ^ SHR6
        i = 2 * (t - 15)
        h, lo = w[i], w[i + 1]
        s0h = ((h >> 1) | ((lo & 1) << 31)) ^ ((h >> 8) | (lo << 24)) ^ (h >> 7)
        s0l = ((lo >> 1) | ((h & 1) << 31)) ^ ((lo >> 8) | (h << 24)) ^ ((lo >> 7) | (h << 25))
        i = 2 * (t - 2)
        h, lo = w[i], w[i + 1]
        s1h = ((h >> 19) | (lo << 13)) ^ ((lo >> 29) | (h << 3)) ^ (h >> 6)
        s1l = ((lo >> 19) | (h << 13)) ^ ((h >> 29) | (lo << 3)) ^ ((lo >> 6) | (h << 26))
        i = 2 * (t - 16)
        j = 2 * (t - 7)
        lo = (s0l & _M) + (s1l & _M) + w[i + 1] + w[j + 1]
        h = (s0h & _M) + (s1h & _M) + w[i] + w[j] + (lo >> 32)
        w[2 * t] = h & _M
        w[2 * t + 1] = lo & _M
    ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl = state
    kh = _KH
    kl = _KL
    for t in range(80):
        # S1(e) = ROTR14 ^ ROTR18 ^ ROTR41
        s1h = ((eh >> 14) | (el << 18)) ^ ((eh >> 18) | (el << 14)) ^ ((el >> 9) | (eh << 23))
        s1l = ((el >> 14) | (eh << 18)) ^ ((el >> 18) | (eh << 14)) ^ ((eh >> 9) | (el << 23))
        chh = (eh & fh) ^ (~eh & gh)
        chl = (el & fl) ^ (~el & gl)
        t1l = hl + (s1l & _M) + (chl & _M) + kl[t] + w[2 * t + 1]
        t1h = hh + (s1h & _M) + (chh & _M) + kh[t] + w[2 * t] + (t1l >> 32)
        # S0(a) = ROTR28 ^ ROTR34 ^ ROTR39
        s0h = ((ah >> 28) | (al << 4)) ^ ((al >> 2) | (ah << 30)) ^ ((al >> 7) | (ah << 25))
        s0l = ((al >> 28) | (ah << 4)) ^ ((ah >> 2) | (al << 30)) ^ ((ah >> 7) | (al << 25))
        majh = (ah & bh) ^ (ah & ch) ^ (bh & ch)
        majl = (al & bl) ^ (al & cl) ^ (bl & cl)
        t2l = (s0l & _M) + majl
        t2h = (s0h & _M) + majh + (t2l >> 32)
        hh, hl = gh, gl
        gh, gl = fh, fl
        fh, fl = eh, el
        el = dl + (t1l & _M)
        eh = (dh + t1h + (el >> 32)) & _M
        el &= _M
        dh, dl = ch, cl
        ch, cl = bh, bl
        bh, bl = ah, al
        al = (t1l & _M) + (t2l & _M)
        ah = (t1h + t2h + (al >> 32)) & _M
        al &= _M
    _add(state, 0, ah, al)
    _add(state, 2, bh, bl)
    _add(state, 4, ch, cl)
    _add(state, 6, dh, dl)
    _add(state, 8, eh, el)
    _add(state, 10, fh, fl)
    _add(state, 12, gh, gl)
    _add(state, 14, hh, hl)


def _add(state, i, h, lo):
    lo += state[i + 1]
    state[i] = (state[i] + h + (lo >> 32)) & _M
    state[i + 1] = lo & _M


class PureSha512:
    """SHA-512 (``is384`` false) or SHA-384 (true) in Python; hashlib-style object.

    ``update`` accepts any bytes-like object; ``digest`` does not finalise, so
    more data may follow; ``copy`` returns an independent hasher.
    """

    def __init__(self, is384, data=None):
        self._is384 = bool(is384)
        self.digest_size = 48 if is384 else 64
        self.block_size = _BLOCK
        self._state = _split(_IV384 if is384 else _IV512)
        self._buf = bytearray()
        self._len = 0
        self._w = [0] * 160
        if data is not None:
            self.update(data)

    def update(self, data):
        if isinstance(data, str):
            raise TypeError("strings must be encoded before hashing")
        n = len(data)
        self._len += n
        off = 0
        buf = self._buf
        if buf:  # complete the pending block first
            off = min(_BLOCK - len(buf), n)
            buf.extend(data[:off])
            if len(buf) < _BLOCK:
                return
            _compress(self._state, self._w, buf, 0)
            self._buf = buf = bytearray()
        end = n - _BLOCK
        while off <= end:  # whole blocks straight from the caller's buffer
            _compress(self._state, self._w, data, off)
            off += _BLOCK
        if off < n:
            buf.extend(data[off:])

    def digest(self):
        bits = self._len * 8
        pad = bytearray(b"\x80")
        pad.extend(bytes((111 - self._len) % _BLOCK))
        pad.extend(struct.pack(">QQ", bits >> 64, bits & 0xFFFFFFFFFFFFFFFF))
        other = self.copy()
        other.update(pad)
        out = struct.pack(">16I", *other._state)
        return out[:self.digest_size]

    def hexdigest(self):
        return self.digest().hex()

    def copy(self):
        other = PureSha512(self._is384)
        other._state = list(self._state)
        other._buf = bytearray(self._buf)
        other._len = self._len
        return other


def sha384(data=None):
    """A new SHA-384 hasher (optionally fed ``data``)."""
    return PureSha512(True, data)


def sha512(data=None):
    """A new SHA-512 hasher (optionally fed ``data``)."""
    return PureSha512(False, data)


def new(alg, data=None):
    """A hasher for TPM_ALG_ID ``alg`` (SHA384 = 0x000C, SHA512 = 0x000D)."""
    if alg == 0x000C:
        return PureSha512(True, data)
    if alg == 0x000D:
        return PureSha512(False, data)
    raise ValueError("purehash: no implementation of algorithm 0x%04x" % alg)
