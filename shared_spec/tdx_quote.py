"""TDX quotes, versions 4 and 5: decode and byte-exact encode.

Sources checked for the layout: Intel "TDX DCAP Quote Generation Library and
Quote Verification Library" API document, appendix "TD Quote Format" (v4 and
v5); Intel's SGX-TDX-DCAP-QuoteVerificationLibrary (``QuoteStructures``, body
types 2 = TD report 1.0, 3 = TD report 1.5); Intel SGX SDK ``sgx_report_body_t``
for the QE report; cross-checked against the field lists of the cc-api
``evidence_api/tdx/quote.py`` and Microsoft's ``QuoteV5.py`` parsers, and
against the real v4 quote in ``../shared/fixtures/tdx-cc-trusted-api``.

Layout (all integers little-endian)::

    header (48)    u16 version | u16 att_key_type (2 = ECDSA P-256) | u32 tee_type (0x81)
                   | u16 reserved1 | u16 reserved2 (QE SVN / PCE SVN in Intel's QVL)
                   | qe_vendor_id 16 | user_data 20
    v4 body        TD report body 1.0 (584)
    v5 body        u16 body_type (2 = TD 1.0, 3 = TD 1.5) | u32 body_size | body (584 / 648)
    u32 signature_data_len | signature data:
        signature 64 (ECDSA P-256 r||s over header + body, body descriptor included)
        attestation_key 64 (P-256 x||y)
        certification data: u16 type | u32 size | data
           type 6 (QE report certification data): qe_report 384 (SGX report body)
              | qe_report_signature 64 | u16 qe_auth_size | qe_auth_data
              | nested certification data (type 5: PCK certificate chain, PEM)

    TD report body 1.0: tee_tcb_svn 16, mrseam 48, mrsignerseam 48, seam_attributes 8,
    td_attributes 8, xfam 8, mrtd 48, mrconfigid 48, mrowner 48, mrownerconfig 48,
    rtmr0..3 4 x 48, report_data 64. TD 1.5 appends tee_tcb_svn2 16 and mrservicetd 48.

    SGX report body (QE report, 384): cpusvn 16, miscselect u32, reserved 28,
    attributes 16, mrenclave 32, reserved 32, mrsigner 32, reserved 96, isvprodid u16,
    isvsvn u16, reserved 60, report_data 64.

Every length field is checked against the bytes that remain before use;
errors carry the absolute offset and the field name. Bytes after the
signature data (quote buffers are often zero padded) are kept in ``trailer``
so that encoding is byte-exact.
"""

import struct

from shared_spec.binary import Reader
from shared_spec.errors import EncodeError, FormatError, LimitError, UnsupportedError

HEADER_SIZE = 48
TD10_BODY_SIZE = 584
TD15_BODY_SIZE = 648
BODY_TYPE_TD10 = 2
BODY_TYPE_TD15 = 3
TEE_TYPE_TDX = 0x81
TEE_TYPE_SGX = 0x00
ATT_KEY_ECDSA_P256 = 2
CERT_PCK_CHAIN = 5
CERT_QE_REPORT = 6
QE_REPORT_SIZE = 384
#: certification data nests at most this deep (type 6 wraps one more level)
MAX_CERT_DEPTH = 2

_BODY_FIELDS = (
    ("tee_tcb_svn", 16), ("mrseam", 48), ("mrsignerseam", 48), ("seam_attributes", 8),
    ("td_attributes", 8), ("xfam", 8), ("mrtd", 48), ("mrconfigid", 48), ("mrowner", 48),
    ("mrownerconfig", 48), ("rtmr0", 48), ("rtmr1", 48), ("rtmr2", 48), ("rtmr3", 48),
    ("report_data", 64),
)
_BODY15_FIELDS = _BODY_FIELDS + (("tee_tcb_svn2", 16), ("mrservicetd", 48))

#: SGX report body; (name, size), integers are decoded separately
_QE_REPORT_FIELDS = (
    ("cpusvn", 16), ("miscselect", 4), ("reserved1", 28), ("attributes", 16),
    ("mrenclave", 32), ("reserved2", 32), ("mrsigner", 32), ("reserved3", 96),
    ("isvprodid", 2), ("isvsvn", 2), ("reserved4", 60), ("report_data", 64),
)


def _check_size(name: str, value: bytes, size: int) -> bytes:
    if len(value) != size:
        raise EncodeError("%s must be %d bytes, not %d" % (name, size, len(value)), None, name)
    return bytes(value)


class TdReportBody:
    """A TD report body (1.0 or 1.5): ``fields`` maps each name to its bytes."""

    def __init__(self, fields: dict, is_td15: bool = False) -> None:
        self.fields = fields
        self.is_td15 = is_td15

    @property
    def mrtd(self) -> bytes:
        return self.fields["mrtd"]

    @property
    def report_data(self) -> bytes:
        return self.fields["report_data"]

    @property
    def tee_tcb_svn(self) -> bytes:
        return self.fields["tee_tcb_svn"]

    @property
    def rtmrs(self) -> list:
        """RTMR0..RTMR3 (CC MR indexes 1..4)."""
        f = self.fields
        return [f["rtmr0"], f["rtmr1"], f["rtmr2"], f["rtmr3"]]

    @property
    def size(self) -> int:
        return TD15_BODY_SIZE if self.is_td15 else TD10_BODY_SIZE

    @classmethod
    def decode(cls, r: Reader, is_td15: bool) -> "TdReportBody":
        fields = {}
        for name, size in _BODY15_FIELDS if is_td15 else _BODY_FIELDS:
            fields[name] = r.read(size, "body." + name)
        return cls(fields, is_td15)

    def encode(self) -> bytes:
        """The body bytes; absent fields are zero."""
        out = []
        for name, size in _BODY15_FIELDS if self.is_td15 else _BODY_FIELDS:
            v = self.fields.get(name)
            out.append(bytes(size) if v is None else _check_size("body." + name, v, size))
        return b"".join(out)

    def to_dict(self) -> dict:
        out: dict = {}
        for name, _ in _BODY15_FIELDS if self.is_td15 else _BODY_FIELDS:
            out[name] = bytes(self.fields.get(name) or b"").hex()
        out["rtmrs"] = [bytes(v).hex() for v in self.rtmrs]
        return out


class QeReport:
    """The Quoting Enclave's SGX report body (384 bytes)."""

    def __init__(self, fields: dict) -> None:
        self.fields = fields

    @property
    def miscselect(self) -> int:
        return struct.unpack("<I", self.fields["miscselect"])[0]

    @property
    def isvprodid(self) -> int:
        return struct.unpack("<H", self.fields["isvprodid"])[0]

    @property
    def isvsvn(self) -> int:
        return struct.unpack("<H", self.fields["isvsvn"])[0]

    @property
    def report_data(self) -> bytes:
        return self.fields["report_data"]

    @classmethod
    def decode(cls, data: bytes, base: int = 0, source: str | None = None) -> "QeReport":
        if len(data) != QE_REPORT_SIZE:
            raise FormatError("QE report is %d bytes, not 384" % len(data), base, "qe_report",
                              source)
        r = Reader(data, base=base, source=source)
        fields = {}
        for name, size in _QE_REPORT_FIELDS:
            fields[name] = r.read(size, "qe_report." + name)
        return cls(fields)

    def encode(self) -> bytes:
        out = []
        for name, size in _QE_REPORT_FIELDS:
            v = self.fields.get(name)
            out.append(bytes(size) if v is None else _check_size("qe_report." + name, v, size))
        return b"".join(out)

    def to_dict(self) -> dict:
        return {
            "cpusvn": bytes(self.fields["cpusvn"]).hex(),
            "miscselect": "0x%08x" % self.miscselect,
            "attributes": bytes(self.fields["attributes"]).hex(),
            "mrenclave": bytes(self.fields["mrenclave"]).hex(),
            "mrsigner": bytes(self.fields["mrsigner"]).hex(),
            "isvprodid": self.isvprodid,
            "isvsvn": self.isvsvn,
            "report_data": bytes(self.fields["report_data"]).hex(),
        }


class CertificationData:
    """``u16 type | u32 size | data``; type 6 is decoded into its parts.

    For type 6, ``qe_report`` (384 raw bytes), ``qe_report_signature`` (64),
    ``qe_auth_data`` and ``inner`` (the nested certification data) hold the
    content and :meth:`encode` rebuilds ``data`` from them.
    """

    def __init__(self, cert_type: int, data: bytes = b"") -> None:
        self.cert_type = cert_type
        self.data = data
        self.qe_report = b""
        self.qe_report_signature = b""
        self.qe_auth_data = b""
        self.inner: "CertificationData | None" = None

    @classmethod
    def qe_report_data(cls, qe_report: bytes, qe_report_signature: bytes, qe_auth_data: bytes,
                       inner: "CertificationData") -> "CertificationData":
        """Build a type 6 (QE report certification data) structure."""
        cd = cls(CERT_QE_REPORT)
        cd.qe_report = qe_report
        cd.qe_report_signature = qe_report_signature
        cd.qe_auth_data = qe_auth_data
        cd.inner = inner
        cd.data = cd._type6_data()
        return cd

    @classmethod
    def decode(cls, r: Reader, depth: int = 0) -> "CertificationData":
        if depth >= MAX_CERT_DEPTH:
            raise LimitError("certification data nested deeper than %d" % MAX_CERT_DEPTH,
                             r.offset, "certification_data", r.source)
        ctype = r.u16("certification_data.type")
        data_at = r.offset + 4
        data = r.sized("certification_data.size", "certification_data.data")
        cd = cls(ctype, data)
        if ctype == CERT_QE_REPORT:
            inner = Reader(data, base=data_at, source=r.source)
            cd.qe_report = inner.read(QE_REPORT_SIZE, "qe_report")
            cd.qe_report_signature = inner.read(64, "qe_report_signature")
            cd.qe_auth_data = inner.sized("qe_auth_data.size", "qe_auth_data", 2)
            cd.inner = CertificationData.decode(inner, depth + 1)
            if not inner.at_end():
                raise LimitError("%d bytes after the nested certification data"
                                 % inner.remaining(), inner.offset, "certification_data.data",
                                 r.source)
        return cd

    def _type6_data(self) -> bytes:
        if self.inner is None:
            raise EncodeError("type 6 certification data needs nested certification data",
                              None, "certification_data.inner")
        auth = bytes(self.qe_auth_data)
        if len(auth) > 0xFFFF:
            raise EncodeError("QE auth data is longer than 65535 bytes", None, "qe_auth_data")
        return (_check_size("qe_report", self.qe_report, QE_REPORT_SIZE)
                + _check_size("qe_report_signature", self.qe_report_signature, 64)
                + struct.pack("<H", len(auth)) + auth + self.inner.encode())

    def encode(self) -> bytes:
        data = self._type6_data() if self.cert_type == CERT_QE_REPORT else bytes(self.data)
        if not 0 <= self.cert_type <= 0xFFFF:
            raise EncodeError("certification data type %d out of range" % self.cert_type,
                              None, "certification_data.type")
        return struct.pack("<HI", self.cert_type, len(data)) + data

    @property
    def pck_chain_pem(self) -> bytes:
        """The type 5 PEM chain here or nested (raw, as carried: often NUL terminated)."""
        if self.cert_type == CERT_PCK_CHAIN:
            return self.data
        if self.inner is not None:
            return self.inner.pck_chain_pem
        return b""


class TdxQuote:
    """A TDX quote (v4 or v5). Build one field by field, or get one from :func:`parse_quote`."""

    def __init__(self) -> None:
        self.version = 4
        self.att_key_type = ATT_KEY_ECDSA_P256
        self.tee_type = TEE_TYPE_TDX
        self.reserved1 = 0
        self.reserved2 = 0
        self.qe_vendor_id = bytes(16)
        self.user_data = bytes(20)
        self.body_type = BODY_TYPE_TD10
        self.body = TdReportBody({}, False)
        self.signature = bytes(64)
        self.attestation_key = bytes(64)
        self.certification = CertificationData(CERT_PCK_CHAIN, b"")
        #: bytes after the signature data (not signed; kept for byte-exact encoding)
        self.trailer = b""

    # -- views -------------------------------------------------------------

    @property
    def qe_report(self) -> bytes:
        """The raw 384-byte QE report (empty when the certification data is not type 6)."""
        return self.certification.qe_report

    @property
    def qe_report_signature(self) -> bytes:
        return self.certification.qe_report_signature

    @property
    def qe_auth_data(self) -> bytes:
        return self.certification.qe_auth_data

    @property
    def pck_chain_pem(self) -> bytes:
        return self.certification.pck_chain_pem

    def qe_report_body(self, source: str | None = None) -> "QeReport | None":
        """The decoded QE report, or None when the quote carries none."""
        if not self.qe_report:
            return None
        return QeReport.decode(self.qe_report, 0, source)

    # -- encoding ----------------------------------------------------------

    def header_bytes(self) -> bytes:
        for name, v, top in (("version", self.version, 0xFFFF),
                             ("att_key_type", self.att_key_type, 0xFFFF),
                             ("tee_type", self.tee_type, 0xFFFFFFFF),
                             ("reserved1", self.reserved1, 0xFFFF),
                             ("reserved2", self.reserved2, 0xFFFF)):
            if not 0 <= v <= top:
                raise EncodeError("%s = %d out of range" % (name, v), None, "header." + name)
        return (struct.pack("<HHIHH", self.version, self.att_key_type, self.tee_type,
                            self.reserved1, self.reserved2)
                + _check_size("header.qe_vendor_id", self.qe_vendor_id, 16)
                + _check_size("header.user_data", self.user_data, 20))

    def signed_bytes(self) -> bytes:
        """Header and body (with the v5 body descriptor): what the attestation key signs."""
        body = self.body.encode()
        if self.version == 5:
            want = BODY_TYPE_TD15 if self.body.is_td15 else BODY_TYPE_TD10
            if self.body_type != want:
                raise EncodeError("body_type %d does not match a TD %s body"
                                  % (self.body_type, "1.5" if self.body.is_td15 else "1.0"),
                                  HEADER_SIZE, "body_descriptor.type")
            body = struct.pack("<HI", self.body_type, len(body)) + body
        elif self.version == 4:
            if self.body.is_td15:
                raise EncodeError("a v4 quote carries a TD 1.0 body only", HEADER_SIZE, "body")
        else:
            raise EncodeError("quote version %d (4 or 5)" % self.version, 0, "header.version")
        return self.header_bytes() + body

    def signature_data(self) -> bytes:
        return (_check_size("signature", self.signature, 64)
                + _check_size("attestation_key", self.attestation_key, 64)
                + self.certification.encode())

    def encode(self) -> bytes:
        sig = self.signature_data()
        return self.signed_bytes() + struct.pack("<I", len(sig)) + sig + bytes(self.trailer)

    def to_dict(self) -> dict:
        """Every field, hex for bytes; ``rtmrs`` is a list of four."""
        b = self.body
        cert = self.certification
        out = {
            "version": self.version,
            "att_key_type": self.att_key_type,
            "tee_type": "0x%02x" % self.tee_type,
            "reserved1": self.reserved1,
            "reserved2": self.reserved2,
            "qe_vendor_id": bytes(self.qe_vendor_id).hex(),
            "user_data": bytes(self.user_data).hex(),
            "body_type": self.body_type,
        }
        out.update(b.to_dict())
        if not b.is_td15:
            out["tee_tcb_svn2"] = None
            out["mrservicetd"] = None
        qe = self.qe_report_body()
        out.update({
            "signature": bytes(self.signature).hex(),
            "attestation_key": bytes(self.attestation_key).hex(),
            "certification_data_type": cert.cert_type,
            "inner_certification_data_type": cert.inner.cert_type if cert.inner else None,
            "qe_report": qe.to_dict() if qe is not None else None,
            "qe_report_signature": bytes(self.qe_report_signature).hex(),
            "qe_auth_data": bytes(self.qe_auth_data).hex(),
            "pck_chain_size": len(self.pck_chain_pem),
            "trailing_bytes": len(self.trailer),
        })
        return out


def parse_quote(data: bytes, source: str | None = None) -> TdxQuote:
    """Decode a TDX quote v4 or v5 (ECDSA P-256 attestation key)."""
    r = Reader(data, source=source)
    q = TdxQuote()
    q.version = r.u16("header.version")
    if q.version not in (4, 5):
        raise UnsupportedError("quote version %d (supported: 4, 5)" % q.version, 0,
                               "header.version", source)
    q.att_key_type = r.u16("header.att_key_type")
    q.tee_type = r.u32("header.tee_type")
    q.reserved1 = r.u16("header.reserved1")
    q.reserved2 = r.u16("header.reserved2")
    q.qe_vendor_id = r.read(16, "header.qe_vendor_id")
    q.user_data = r.read(20, "header.user_data")
    if q.tee_type != TEE_TYPE_TDX:
        raise UnsupportedError("TEE type 0x%x is not TDX (0x81)" % q.tee_type, 4,
                               "header.tee_type", source)
    if q.att_key_type != ATT_KEY_ECDSA_P256:
        raise UnsupportedError("attestation key type %d (supported: 2, ECDSA P-256)"
                               % q.att_key_type, 2, "header.att_key_type", source)
    if q.version == 5:
        at = r.offset
        q.body_type = r.u16("body_descriptor.type")
        size = r.u32("body_descriptor.size")
        if q.body_type == BODY_TYPE_TD10:
            want = TD10_BODY_SIZE
        elif q.body_type == BODY_TYPE_TD15:
            want = TD15_BODY_SIZE
        else:
            raise UnsupportedError("v5 body type %d (supported: 2 TD 1.0, 3 TD 1.5)"
                                   % q.body_type, at, "body_descriptor.type", source)
        if size != want:
            raise FormatError("body size %d, body type %d needs %d" % (size, q.body_type, want),
                              at + 2, "body_descriptor.size", source)
    q.body = TdReportBody.decode(r, q.body_type == BODY_TYPE_TD15)
    sig_at = r.offset + 4
    sig = r.sized("signature_data_len", "signature_data")
    sr = Reader(sig, base=sig_at, source=source)
    q.signature = sr.read(64, "signature")
    q.attestation_key = sr.read(64, "attestation_key")
    q.certification = CertificationData.decode(sr)
    if not sr.at_end():
        raise LimitError("%d bytes after the certification data" % sr.remaining(), sr.offset,
                         "signature_data", source)
    q.trailer = r.read(r.remaining(), "trailer")
    return q
