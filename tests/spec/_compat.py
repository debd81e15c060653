"""Helpers for test modules that run under both pytest (CPython) and MicroPython.

Test modules in ``tests/spec`` use the common subset of the two: plain
``assert``, test functions ``test_*()`` without arguments, no pytest import.
They run under pytest as ordinary tests (``tests/conftest.py`` turns
:class:`Skip` into a pytest skip) and under MicroPython through
``tests/mpy_runner.py``.
"""

import os
import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"


class Skip(Exception):
    """Raised by a test that cannot run here; reported as skipped, with the message."""


def raises(exc_type, fn, *args, **kw):
    """Call ``fn(*args, **kw)``; return the ``exc_type`` it raised, fail if it raised nothing.

    Other exceptions propagate (and fail the test).
    """
    try:
        fn(*args, **kw)
    except exc_type as e:
        return e
    raise AssertionError("%s not raised by %r" % (exc_type.__name__, fn))


def _dirname(path):
    return path.rsplit("/", 1)[0] if "/" in path else "."


def repo_root():
    """The repository root (this file is ``<root>/tests/spec/_compat.py``)."""
    here = __file__ if __file__.startswith("/") else os.getcwd() + "/" + __file__
    return _dirname(_dirname(_dirname(here)))


def _isdir(path):
    try:
        return (os.stat(path)[0] & 0o170000) == 0o040000
    except OSError:
        return False


def fixtures_dir():
    """``$CVMCHAIN_FIXTURES``, else ``<root>/../shared/fixtures``; :class:`Skip` when absent."""
    path = os.getenv("CVMCHAIN_FIXTURES") or (repo_root() + "/../shared/fixtures")
    if not _isdir(path):
        raise Skip("real-evidence fixtures not found at %s (set CVMCHAIN_FIXTURES)" % path)
    return path


def vectors_dir():
    """``<root>/tests/spec/vectors``: small test vectors kept in the repository."""
    return repo_root() + "/tests/spec/vectors"


def read_bytes(path):
    """The content of the file at ``path``."""
    with open(path, "rb") as f:
        return f.read()


_PROVIDER = None


def hash_provider():
    """A ``shared_spec.hashing.HashProvider`` keyed by TPM_ALG_ID, built once.

    CPython: ``cloud_sdk.hashing.hashlib_provider()`` (hashlib: SHA-1, SHA-256,
    SHA-384, SHA-512, SHA3-256/384/512, and SM3 where OpenSSL has it).
    MicroPython: ``mbedhash.provider()`` from ``initrd_agent/agent`` (SHA-1,
    SHA-256, SHA-384, SHA-512).
    """
    global _PROVIDER
    if _PROVIDER is None:
        if IS_MICROPYTHON:
            import mbedhash  # initrd_agent/agent is on sys.path (mpy_runner puts it there)

            _PROVIDER = mbedhash.provider()
        else:
            from cloud_sdk.hashing import hashlib_provider

            _PROVIDER = hashlib_provider()
    return _PROVIDER


def require_alg(alg):
    """:class:`Skip` unless :func:`hash_provider` implements TPM_ALG_ID ``alg``."""
    if not hash_provider().supports(alg):
        raise Skip("no implementation of hash algorithm 0x%04x here" % alg)
