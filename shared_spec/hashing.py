"""Hashing passed in by the caller.

shared_spec never imports a hash library: CPython callers build a
:class:`HashProvider` from ``hashlib`` (see ``cloud_sdk.hashing``), the
MicroPython agent from its ffi binding to libmbedcrypto. A provider maps
TPM_ALG_ID numbers to hash constructors.
"""

try:  # annotations only; MicroPython has no typing module and ignores annotations
    from typing import Any, Callable
except ImportError:  # pragma: no cover - MicroPython
    pass

from shared_spec.algorithms import alg_name
from shared_spec.errors import UnsupportedError


class HashProvider:
    """TPM_ALG_ID -> hash constructor.

    ``constructors`` maps an algorithm id to a callable that returns a fresh
    hasher with ``update(data)`` and ``digest()`` (the hashlib protocol).
    ``oneshots`` maps ids to ``f(data) -> digest`` shortcuts. ``native_names``
    maps ids to OpenSSL's name of the same digest when the provider hashes
    with OpenSSL (as CPython's hashlib does): a native kernel
    (``shared_spec._speedups``) may then hash in C with the same library.
    """

    def __init__(self, constructors: dict, oneshots: dict | None = None,
                 native_names: dict | None = None) -> None:
        self._ctors = dict(constructors)
        self._oneshots = dict(oneshots or {})
        self._native = dict(native_names or {})

    def supports(self, alg: int) -> bool:
        return alg in self._ctors

    def native_name(self, alg: int) -> "str | None":
        """OpenSSL's name for ``alg`` when a native kernel may hash it in C, else None."""
        if alg not in self._ctors:
            return None
        return self._native.get(alg)

    def algorithms(self) -> list[int]:
        return sorted(self._ctors)

    def new(self, alg: int) -> "Any":
        """A fresh hasher for ``alg``; :class:`UnsupportedError` if none."""
        ctor = self._ctors.get(alg)
        if ctor is None:
            raise UnsupportedError("no hash implementation for " + alg_name(alg), None, "alg")
        return ctor()

    def digest(self, alg: int, data: bytes) -> bytes:
        """One-shot digest of ``data`` with ``alg``."""
        ctor = self._ctors.get(alg)
        if ctor is None:
            raise UnsupportedError("no hash implementation for " + alg_name(alg), None, "alg")
        h = ctor()
        h.update(data)
        return h.digest()

    def oneshot(self, alg: int) -> "Callable[[bytes], bytes]":
        """A function ``f(data) -> digest`` for ``alg`` (the fastest the provider has)."""
        f = self._oneshots.get(alg)
        if f is not None:
            return f
        ctor = self._ctors.get(alg)
        if ctor is None:
            raise UnsupportedError("no hash implementation for " + alg_name(alg), None, "alg")

        def run(data: bytes) -> bytes:
            h = ctor()
            h.update(data)
            return h.digest()

        return run

    def extend(self, alg: int, old: bytes, digest: bytes) -> bytes:
        """The register extend operation: H(old || digest)."""
        return self.digest(alg, bytes(old) + bytes(digest))
