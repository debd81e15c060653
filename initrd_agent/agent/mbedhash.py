"""Hashing for the agent under MicroPython.

SHA-384 / SHA-512 through ``ffi`` to the bundled libmbedcrypto
(``mbedtls_sha512_*`` with is384 = 1 or 0), at native speed; SHA-1 / SHA-256
from MicroPython's builtin ``hashlib``. :func:`provider` returns a
``shared_spec.hashing.HashProvider`` keyed by TPM_ALG_ID. When ffi or the
library is missing, SHA-384/512 fall back to the pure-Python ``purehash``
module, with one warning.
"""

import hashlib

from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512
from shared_spec.hashing import HashProvider

#: generous: sizeof(mbedtls_sha512_context) is 216 on x86_64 in mbedtls 3.6
_CTX_SIZE = 512

_lib = None
_funcs = None
_warned = False


def _load():
    global _lib, _funcs
    if _funcs is not None:
        return _funcs
    import ffi

    lib = None
    for name in ("libmbedcrypto.so.16", "libmbedcrypto.so"):
        try:
            lib = ffi.open(name)
            break
        except OSError:
            pass
    if lib is None:
        raise OSError("libmbedcrypto not found")
    _lib = lib
    _funcs = (
        lib.func("v", "mbedtls_sha512_init", "p"),
        lib.func("i", "mbedtls_sha512_starts", "pi"),
        lib.func("i", "mbedtls_sha512_update", "ppL"),
        lib.func("i", "mbedtls_sha512_finish", "pp"),
        lib.func("v", "mbedtls_sha512_free", "p"),
    )
    return _funcs


class MbedSha512:
    """SHA-384 (is384=1) or SHA-512 via libmbedcrypto; hashlib-style object."""

    def __init__(self, is384, data=None):
        init, starts, _, _, _ = _load()
        self._ctx = bytearray(_CTX_SIZE)
        self._is384 = is384
        self._done = False
        init(self._ctx)
        if starts(self._ctx, 1 if is384 else 0) != 0:
            raise OSError("mbedtls_sha512_starts failed")
        if data is not None:
            self.update(data)

    def update(self, data):
        if self._done:
            raise ValueError("hash already finalised")
        n = len(data)
        if n:
            if _funcs[2](self._ctx, data, n) != 0:
                raise OSError("mbedtls_sha512_update failed")

    def digest(self):
        out = bytearray(64)
        if _funcs[3](self._ctx, out) != 0:
            raise OSError("mbedtls_sha512_finish failed")
        _funcs[4](self._ctx)
        self._done = True
        return bytes(out[:48] if self._is384 else out)


def _fallback(alg):
    global _warned
    if not _warned:
        print("cvmchain: warning: ffi/libmbedcrypto unavailable; SHA-384 in pure Python (slow)")
        _warned = True
    import purehash

    return purehash.new(alg)


def _sha384():
    try:
        return MbedSha512(True)
    except (OSError, ImportError):
        return _fallback(ALG_SHA384)


def _sha512():
    try:
        return MbedSha512(False)
    except (OSError, ImportError):
        return _fallback(ALG_SHA512)


def provider():
    """A HashProvider for SHA-1, SHA-256, SHA-384 and SHA-512."""
    return HashProvider({
        ALG_SHA1: hashlib.sha1,
        ALG_SHA256: hashlib.sha256,
        ALG_SHA384: _sha384,
        ALG_SHA512: _sha512,
    })
