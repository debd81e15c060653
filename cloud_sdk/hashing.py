"""The CPython hash provider for shared_spec, built on :mod:`hashlib`."""

import hashlib
from collections.abc import Callable

from shared_spec.algorithms import (
    ALG_SHA1,
    ALG_SHA3_256,
    ALG_SHA3_384,
    ALG_SHA3_512,
    ALG_SHA256,
    ALG_SHA384,
    ALG_SHA512,
    ALG_SM3_256,
)
from shared_spec.hashing import HashProvider

_NAMES = {
    ALG_SHA1: "sha1",
    ALG_SHA256: "sha256",
    ALG_SHA384: "sha384",
    ALG_SHA512: "sha512",
    ALG_SHA3_256: "sha3_256",
    ALG_SHA3_384: "sha3_384",
    ALG_SHA3_512: "sha3_512",
    ALG_SM3_256: "sm3",
}


def _oneshot(name: str) -> Callable[[bytes], bytes]:
    ctor = getattr(hashlib, name, None)
    if ctor is not None:
        return lambda data: ctor(data).digest()
    return lambda data: hashlib.new(name, data).digest()


def _available(name: str) -> bool:
    try:
        hashlib.new(name)
    except ValueError:
        return False
    return True


#: OpenSSL's names of the same digests (hashlib is OpenSSL's), for shared_spec._speedups
_OPENSSL_NAMES = {
    ALG_SHA1: "SHA1",
    ALG_SHA256: "SHA256",
    ALG_SHA384: "SHA384",
    ALG_SHA512: "SHA512",
    ALG_SHA3_256: "SHA3-256",
    ALG_SHA3_384: "SHA3-384",
    ALG_SHA3_512: "SHA3-512",
    ALG_SM3_256: "SM3",
}


def _hashlib_is_openssl() -> bool:
    """True when hashlib's digests are OpenSSL's (not a build's fallback C code)."""
    return type(hashlib.sha256()).__module__ == "_hashlib"


_PROVIDER: HashProvider | None = None


def hashlib_provider() -> HashProvider:
    """The process-wide provider: every registry algorithm this OpenSSL offers."""
    global _PROVIDER
    if _PROVIDER is None:
        ctors = {}
        oneshots = {}
        for alg, name in _NAMES.items():
            if _available(name):
                ctors[alg] = (lambda n=name: hashlib.new(n))
                oneshots[alg] = _oneshot(name)
        native = {alg: _OPENSSL_NAMES[alg] for alg in ctors} if _hashlib_is_openssl() else {}
        _PROVIDER = HashProvider(ctors, oneshots, native)
    return _PROVIDER
