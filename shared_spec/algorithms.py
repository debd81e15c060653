"""TPM_ALG_ID registry (TCG Algorithm Registry, rev 1.34) for hash algorithms.

Only the hash algorithms that can appear in a PCR bank or an event log are
listed; each has its identifier, digest size and printable name.
"""

ALG_SHA1 = 0x0004
ALG_SHA256 = 0x000B
ALG_SHA384 = 0x000C
ALG_SHA512 = 0x000D
ALG_SM3_256 = 0x0012
ALG_SHA3_256 = 0x0027
ALG_SHA3_384 = 0x0028
ALG_SHA3_512 = 0x0029

#: alg id -> (name, digest size in bytes)
HASH_ALGORITHMS = {
    ALG_SHA1: ("sha1", 20),
    ALG_SHA256: ("sha256", 32),
    ALG_SHA384: ("sha384", 48),
    ALG_SHA512: ("sha512", 64),
    ALG_SM3_256: ("sm3_256", 32),
    ALG_SHA3_256: ("sha3_256", 32),
    ALG_SHA3_384: ("sha3_384", 48),
    ALG_SHA3_512: ("sha3_512", 64),
}

_BY_KEY = {}
for _alg, (_name, _size) in HASH_ALGORITHMS.items():
    _BY_KEY[_name.replace("_", "")] = _alg
_BY_KEY["sm3"] = ALG_SM3_256


def alg_name(alg: int) -> str:
    """Printable name of a hash algorithm (``"sha384"``), or ``"alg_0x00ab"``."""
    entry = HASH_ALGORITHMS.get(alg)
    if entry is None:
        return "alg_0x%04x" % alg
    return entry[0]


def alg_from_name(name: str) -> int | None:
    """The TPM_ALG_ID for a name such as ``sha256``, ``SHA-256`` or ``sha3_384``."""
    return _BY_KEY.get(name.lower().replace("-", "").replace("_", ""))


def digest_size(alg: int) -> int | None:
    """Digest size in bytes, or None for an algorithm not in the registry."""
    entry = HASH_ALGORITHMS.get(alg)
    return None if entry is None else entry[1]
