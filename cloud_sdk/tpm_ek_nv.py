"""The EK certificate chain a TPM stores in NV (TCG EK Credential Profile v2.5, §2.2.1.5).

A manufacturer may store the intermediate CA certificates of the EK
certificate's chain in the NV indices :data:`CHAIN_FIRST` .. :data:`CHAIN_LAST`
(0x01C00100 .. 0x01C001FF), each holding one DER certificate or several
concatenated. They are untrusted: the verifier uses them only to link the EK
certificate to a root it trusts (:mod:`cloud_sdk.tpm_ek_path`).

:func:`split_certificates` parses one index's bytes (no TPM needed; padding of
0x00 or 0xFF bytes after the last certificate is accepted). :func:`read_chain`
reads every defined index of the range through a
:class:`cloud_sdk.tpm_quote.TpmSession` (tpm2-pytss) and reports an index that
holds anything else by its number and offset, without giving up the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloud_sdk.errors import InputError
from cloud_sdk.tpm_ek_path import SourcedCertificate

CHAIN_FIRST = 0x01C00100
CHAIN_LAST = 0x01C001FF


def nv_source(index: int) -> str:
    """How a certificate from NV ``index`` is named in findings and files: ``NV 0x01c00100``."""
    return "NV 0x%08x" % index


def _der_length(data: bytes, pos: int, source: str) -> int:
    """Length of the DER SEQUENCE (tag, length and content) at ``pos``."""
    if data[pos] != 0x30:
        raise InputError("%s: offset %d: not a DER SEQUENCE (byte 0x%02x)"
                         % (source, pos, data[pos]))
    if pos + 1 >= len(data):
        raise InputError("%s: offset %d: truncated DER length" % (source, pos + 1))
    first = data[pos + 1]
    if first < 0x80:
        return 2 + first
    n = first & 0x7F
    if n == 0 or n > 4 or pos + 2 + n > len(data):
        raise InputError("%s: offset %d: bad DER length" % (source, pos + 1))
    return 2 + n + int.from_bytes(data[pos + 2:pos + 2 + n], "big")


def split_certificates(data: bytes, source: str) -> list[x509.Certificate]:
    """The DER certificates concatenated in ``data``; :class:`InputError` naming the offset."""
    out: list[x509.Certificate] = []
    pos = 0
    while pos < len(data):
        rest = data[pos:]
        if out and (rest.count(0) == len(rest) or rest.count(0xFF) == len(rest)):
            break  # padding after the last certificate
        size = _der_length(data, pos, source)
        if pos + size > len(data):
            raise InputError("%s: offset %d: a DER SEQUENCE of %d bytes, %d left"
                             % (source, pos, size, len(data) - pos))
        try:
            out.append(x509.load_der_x509_certificate(data[pos:pos + size]))
        except ValueError as e:
            raise InputError("%s: offset %d: not an X.509 certificate: %s"
                             % (source, pos, e)) from None
        pos += size
    if not out:
        raise InputError("%s: empty (no certificate)" % source)
    return out


@dataclass
class NvChain:
    """What :func:`read_chain` found: certificates by index, and the indices it could not use."""

    certificates: list[tuple[int, x509.Certificate]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def sourced(self) -> list[SourcedCertificate]:
        return [SourcedCertificate(c, nv_source(i)) for i, c in self.certificates]

    def pems(self) -> list[tuple[int, str]]:
        return [(i, c.public_bytes(serialization.Encoding.PEM).decode("ascii"))
                for i, c in self.certificates]


def read_chain(session: Any) -> NvChain:
    """Every certificate in the TPM's EK chain indices (``session``: a ``TpmSession``).

    An index that cannot be read or parsed goes to :attr:`NvChain.errors`,
    named with the TPM's TCTI, its number and the offset; the others are still read.
    """
    from cloud_sdk.tpm_ek import nv_indices, read_nv
    from cloud_sdk.tpm_quote import TpmQuoteUnavailable

    out = NvChain()
    for index in sorted(nv_indices(session, CHAIN_FIRST, CHAIN_LAST)):
        where = "%s: %s (EK certificate chain)" % (session.tcti, nv_source(index))
        try:
            data = read_nv(session, index)
            out.certificates += [(index, c) for c in split_certificates(data, where)]
        except (InputError, TpmQuoteUnavailable) as e:
            out.errors.append(str(e) if str(e).startswith(where) else "%s: %s" % (where, e))
    return out
