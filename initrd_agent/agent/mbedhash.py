"""Hashing for the agent under MicroPython: a ``HashProvider`` keyed by TPM_ALG_ID.

MicroPython's ``hashlib`` has SHA-1 and SHA-256 only. SHA-384 and SHA-512
come from the libmbedcrypto of the runtime bundle (the interpreter is linked
against it already), called through ``ffi``::

    mbedtls_sha512_init(ctx)            mbedtls_sha512_starts(ctx, is384)
    mbedtls_sha512_update(ctx, p, n)    mbedtls_sha512_finish(ctx, out)
    mbedtls_sha512_clone(dst, src)      mbedtls_sha512(p, n, out, is384)

and the ``mbedtls_sha1_*`` / ``mbedtls_sha256_*`` equivalents. Measured on
the development machine (MicroPython 1.25, mbedtls 3.6, 1 MiB updates):
SHA-384 about 480 MB/s; SHA-256 about 400 MB/s and SHA-1 about 970 MB/s both
through ffi and through the builtin ``hashlib`` (which is mbedtls inside).

What the provider hands out:

- Streaming hashers (:meth:`provider().new(alg) <shared_spec.hashing.HashProvider.new>`)
  are :class:`MbedHash` objects for all four algorithms, so they behave alike
  and like CPython's: ``update`` takes ``bytes``, ``bytearray`` or a
  ``memoryview`` slice (passed to C as a pointer, not copied); ``digest``
  does not finalise (more data may follow); ``copy`` clones the state.
- One-shot digests (``provider().digest`` / ``oneshot``) use ``mbedtls_sha512``
  for SHA-384/512 and the builtin ``hashlib`` for SHA-1/256: same speed on
  bulk data, and 2-3 times less call overhead on short event data.
- File hashing (``provider().digester(alg)``, SHA-384/512): a
  :class:`Digester` hashes a caller's buffer with one reusable context and no
  per-call allocation but the hex digest; one per thread.

Without ``ffi`` or libmbedcrypto, SHA-1/256 come from the builtin ``hashlib``
(whose ``digest`` finalises the object and which has no ``copy``) and
SHA-384/512 from the pure-Python :mod:`purehash` (about 1.5 MB/s), after one
warning on stderr.

Import path: this module and ``purehash`` are top-level modules (the
directory ``initrd_agent/agent`` is on ``sys.path``), ``shared_spec`` is a
package beside them.
"""

import hashlib
import sys

from shared_spec.algorithms import ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512
from shared_spec.hashing import HashProvider

LIBRARY = "libmbedcrypto.so.16"

#: bytes reserved for an mbedtls context; sizeof(mbedtls_sha512_context) is
#: 216 on x86_64 with mbedtls 3.6, the SHA-1 and SHA-256 contexts are smaller
CTX_SIZE = 512


class MbedError(OSError):
    """An mbedtls call returned an error code (the message names the call)."""


class _Family:
    """The ffi functions of one mbedtls hash family (sha1, sha256 or sha512)."""

    def __init__(self, lib, name, has_variant):
        self.name = name
        self.init = lib.func("v", "mbedtls_%s_init" % name, "p")
        self.starts = lib.func("i", "mbedtls_%s_starts" % name, "pi" if has_variant else "p")
        self.update = lib.func("i", "mbedtls_%s_update" % name, "ppL")
        self.finish = lib.func("i", "mbedtls_%s_finish" % name, "pp")
        self.clone = lib.func("v", "mbedtls_%s_clone" % name, "pp")
        self.has_variant = has_variant
        # one-shot mbedtls_<name>(input, ilen, output, variant); used for sha512 only
        self.oneshot = lib.func("i", "mbedtls_%s" % name, "pLpi") if has_variant else None


# (family, variant argument of starts, digest size, size of the finish output)
_ALGS = {
    ALG_SHA1: ("sha1", 0, 20, 20),
    ALG_SHA256: ("sha256", 0, 32, 32),
    ALG_SHA384: ("sha512", 1, 48, 64),
    ALG_SHA512: ("sha512", 0, 64, 64),
}

_families = None  # name -> _Family once loaded, {} when ffi or the library is missing
_load_error = None
_warned = False


def _load():
    """The mbedtls families, loading libmbedcrypto on first use; {} if unavailable."""
    global _families, _load_error
    if _families is not None:
        return _families
    try:
        import ffi

        lib = ffi.open(LIBRARY)
        _families = {
            "sha1": _Family(lib, "sha1", False),
            "sha256": _Family(lib, "sha256", True),
            "sha512": _Family(lib, "sha512", True),
        }
    except (ImportError, OSError) as e:
        _families = {}
        _load_error = "%s: %s" % (type(e).__name__, e)
    return _families


def _check(rc, what):
    if rc != 0:
        raise MbedError("%s failed: mbedtls error -0x%04x" % (what, -rc))


class MbedHash:
    """One streaming hash through libmbedcrypto; the hashlib protocol plus ``copy``.

    ``alg`` is a TPM_ALG_ID among SHA1, SHA256, SHA384 and SHA512. The
    context is a ``bytearray`` of :data:`CTX_SIZE` bytes owned by the object;
    mbedtls' software contexts hold no pointers, so nothing needs freeing.
    """

    def __init__(self, alg, data=None, _fam=None):
        spec = _ALGS.get(alg)
        if spec is None:
            raise ValueError("mbedhash: no implementation of algorithm 0x%04x" % alg)
        fam = _fam or _load().get(spec[0])
        if fam is None:
            raise MbedError("%s unavailable (%s)" % (LIBRARY, _load_error))
        self.alg = alg
        self.digest_size = spec[2]
        self._fam = fam
        self._spec = spec
        self._ctx = bytearray(CTX_SIZE)
        fam.init(self._ctx)
        if fam.has_variant:
            _check(fam.starts(self._ctx, spec[1]), "mbedtls_%s_starts" % fam.name)
        else:
            _check(fam.starts(self._ctx), "mbedtls_%s_starts" % fam.name)
        if data is not None:
            self.update(data)

    def update(self, data):
        """Add ``data`` (bytes, bytearray or memoryview; not copied)."""
        if isinstance(data, str):
            raise TypeError("strings must be encoded before hashing")
        n = len(data)
        if n:
            _check(self._fam.update(self._ctx, data, n), "mbedtls_%s_update" % self._fam.name)

    def copy(self):
        """An independent hasher with the same state."""
        other = MbedHash(self.alg, None, self._fam)
        self._fam.clone(other._ctx, self._ctx)
        return other

    def digest(self):
        """The digest of the data so far; the object stays usable."""
        fam = self._fam
        tmp = bytearray(CTX_SIZE)
        fam.init(tmp)
        fam.clone(tmp, self._ctx)
        out = bytearray(self._spec[3])
        _check(fam.finish(tmp, out), "mbedtls_%s_finish" % fam.name)
        return bytes(out[:self.digest_size])

    def hexdigest(self):
        return self.digest().hex()


def _mbed_oneshot(alg):
    fam = _load()[_ALGS[alg][0]]
    variant = _ALGS[alg][1]
    size = _ALGS[alg][2]
    fn = fam.oneshot
    what = "mbedtls_" + fam.name

    def run(data):
        if isinstance(data, str):
            raise TypeError("strings must be encoded before hashing")
        out = bytearray(64)
        _check(fn(data, len(data), out, variant), what)
        return bytes(out[:size])

    return run


class Digester:
    """SHA-384 or SHA-512 of data in caller-owned buffers, for hashing many files.

    One context and one output buffer, reused: no allocation per file but the
    hex digest. ``hexdigest_of(buf, n)`` hashes the first ``n`` bytes in one
    call (``mbedtls_sha512``); ``start``, ``update(buf, n)`` and ``finish`` stream.
    The unix port of MicroPython has no GIL, so digesters used by different
    threads hash in parallel; a digester is not safe to share: one per thread.
    """

    def __init__(self, alg):
        spec = _ALGS.get(alg)
        if spec is None or spec[0] != "sha512":
            raise ValueError("mbedhash: no digester for algorithm 0x%04x" % alg)
        fam = _load().get("sha512")
        if fam is None:
            raise MbedError("%s unavailable (%s)" % (LIBRARY, _load_error))
        self._fam = fam
        self._variant = spec[1]
        self._size = spec[2]
        self._ctx = bytearray(CTX_SIZE)
        self._out = bytearray(64)
        fam.init(self._ctx)

    def hexdigest_of(self, buf, n):
        """Hex digest of ``buf[:n]`` (``buf``: bytes, bytearray or memoryview)."""
        _check(self._fam.oneshot(buf, n, self._out, self._variant), "mbedtls_sha512")
        return self._out[:self._size].hex()

    def start(self):
        """Begin a streamed digest (forgets any earlier one)."""
        _check(self._fam.starts(self._ctx, self._variant), "mbedtls_sha512_starts")

    def update(self, buf, n):
        """Add ``buf[:n]``."""
        _check(self._fam.update(self._ctx, buf, n), "mbedtls_sha512_update")

    def finish(self):
        """Hex digest of the streamed data; call :meth:`start` before reusing."""
        _check(self._fam.finish(self._ctx, self._out), "mbedtls_sha512_finish")
        return self._out[:self._size].hex()


def _hashlib_oneshot(ctor):
    def run(data):
        return ctor(data).digest()

    return run


def _warn_once():
    global _warned
    if not _warned:
        _warned = True
        print("cvmchain: warning: %s not usable through ffi (%s); SHA-384/SHA-512 in pure "
              "Python (about 1.5 MB/s)" % (LIBRARY, _load_error), file=sys.stderr)


class MbedHashProvider(HashProvider):
    """A ``HashProvider`` whose :meth:`digest` takes the one-shot path."""

    def digest(self, alg, data):
        f = self._oneshots.get(alg)
        if f is not None:
            return f(data)
        return HashProvider.digest(self, alg, data)

    def digester(self, alg):
        """A new :class:`Digester` for ``alg`` (SHA-384 or SHA-512), or None.

        None when libmbedcrypto is not usable (the pure-Python fallback) or for
        other algorithms: callers then stream through :meth:`new`.
        """
        if not _load() or alg not in (ALG_SHA384, ALG_SHA512):
            return None
        return Digester(alg)


_provider = None


def provider():
    """The process-wide provider for SHA-1, SHA-256, SHA-384 and SHA-512.

    ``provider().supports(alg)``, ``.new(alg)`` (a streaming hasher),
    ``.digest(alg, data)`` (bytes); ``alg`` is a TPM_ALG_ID.
    """
    global _provider
    if _provider is not None:
        return _provider
    fams = _load()
    ctors = {}
    oneshots = {ALG_SHA1: _hashlib_oneshot(hashlib.sha1),
                ALG_SHA256: _hashlib_oneshot(hashlib.sha256)}
    if fams:
        for alg in _ALGS:
            ctors[alg] = (lambda a=alg: MbedHash(a))
        oneshots[ALG_SHA384] = _mbed_oneshot(ALG_SHA384)
        oneshots[ALG_SHA512] = _mbed_oneshot(ALG_SHA512)
    else:
        _warn_once()
        import purehash

        ctors[ALG_SHA1] = hashlib.sha1
        ctors[ALG_SHA256] = hashlib.sha256
        ctors[ALG_SHA384] = purehash.sha384
        ctors[ALG_SHA512] = purehash.sha512
    _provider = MbedHashProvider(ctors, oneshots)
    return _provider


def sha384(data=None):
    """A SHA-384 hasher (mbedtls, or the pure-Python fallback)."""
    return provider().new(ALG_SHA384) if data is None else _fed(ALG_SHA384, data)


def sha512(data=None):
    """A SHA-512 hasher (mbedtls, or the pure-Python fallback)."""
    return provider().new(ALG_SHA512) if data is None else _fed(ALG_SHA512, data)


def _fed(alg, data):
    h = provider().new(alg)
    h.update(data)
    return h
