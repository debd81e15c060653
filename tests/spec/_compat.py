"""Helpers for test modules that run under both pytest and MicroPython."""

import os
import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"


class Skip(Exception):
    """Raised by a test that cannot run here; reported as skipped."""


def raises(exc_type, fn, *args, **kw):
    """Call ``fn``; return the ``exc_type`` it raised, fail if it raised nothing."""
    try:
        fn(*args, **kw)
    except exc_type as e:
        return e
    raise AssertionError("%s not raised by %r" % (exc_type.__name__, fn))


def _repo_root():
    here = __file__
    for _ in range(3):
        here = here.rsplit("/", 1)[0] if "/" in here else "."
    return here


def _isdir(path):
    try:
        return (os.stat(path)[0] & 0o170000) == 0o040000
    except OSError:
        return False


def fixtures_dir():
    """``$CVMCHAIN_FIXTURES`` or ``<repo>/../shared/fixtures``; Skip when absent."""
    path = os.getenv("CVMCHAIN_FIXTURES") or (_repo_root() + "/../shared/fixtures")
    if not _isdir(path):
        raise Skip("real-evidence fixtures not found at %s (set CVMCHAIN_FIXTURES)" % path)
    return path


def vectors_dir():
    return _repo_root() + "/tests/spec/vectors"


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


_PROVIDER = None


def hash_provider():
    """A shared_spec HashProvider: hashlib on CPython, mbedhash on MicroPython."""
    global _PROVIDER
    if _PROVIDER is None:
        if IS_MICROPYTHON:
            import mbedhash  # initrd_agent/agent on MICROPYPATH

            _PROVIDER = mbedhash.provider()
        else:
            from cloud_sdk.hashing import hashlib_provider

            _PROVIDER = hashlib_provider()
    return _PROVIDER


def require_alg(alg):
    if not hash_provider().supports(alg):
        raise Skip("no implementation of hash algorithm 0x%04x here" % alg)
