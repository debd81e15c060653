"""TDX quotes, versions 4 and 5 (Intel TDX DCAP Quote Generation Library, appendix A).

Layout::

    header (48)   u16 version | u16 att_key_type | u32 tee_type | u16 reserved | u16 reserved
                  | u8 qe_vendor_id[16] | u8 user_data[20]
    v4 body       TD report body 1.0 (584 bytes)
    v5 body       u16 body_type (2 = TD 1.0, 3 = TD 1.5) | u32 body_size | body (584 / 648)
    u32 signature_data_len | signature data:
        u8 signature[64] (ECDSA P-256 r||s over header + body)
        u8 attestation_key[64] (P-256 x||y)
        certification data: u16 type | u32 size | data
           type 6 (QE report certification data): u8 qe_report[384] | u8 qe_report_sig[64]
              | u16 qe_auth_size | qe_auth_data | nested certification data (type 5: PCK
              certificate chain, PEM)

TD report body 1.0: tee_tcb_svn 16, mrseam 48, mrsignerseam 48, seam_attributes 8,
td_attributes 8, xfam 8, mrtd 48, mrconfigid 48, mrowner 48, mrownerconfig 48,
rtmr0..3 4 x 48, report_data 64. TD 1.5 appends tee_tcb_svn2 16 and mrservicetd 48.
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

_BODY_FIELDS = (
    ("tee_tcb_svn", 16), ("mrseam", 48), ("mrsignerseam", 48), ("seam_attributes", 8),
    ("td_attributes", 8), ("xfam", 8), ("mrtd", 48), ("mrconfigid", 48), ("mrowner", 48),
    ("mrownerconfig", 48), ("rtmr0", 48), ("rtmr1", 48), ("rtmr2", 48), ("rtmr3", 48),
    ("report_data", 64),
)
_BODY15_FIELDS = (("tee_tcb_svn2", 16), ("mrservicetd", 48))


class TdReportBody:
    """A TD report body (1.0 or 1.5): named byte fields."""

    def __init__(self, fields: dict, is_td15: bool = False) -> None:
        self.fields = fields
        self.is_td15 = is_td15

    @property
    def rtmrs(self) -> list:
        return [self.fields["rtmr%d" % i] for i in range(4)]

    @classmethod
    def decode(cls, r: Reader, is_td15: bool) -> "TdReportBody":
        fields = {}
        for name, size in _BODY_FIELDS + (_BODY15_FIELDS if is_td15 else ()):
            fields[name] = r.read(size, "body." + name)
        return cls(fields, is_td15)

    def encode(self) -> bytes:
        out = []
        for name, size in _BODY_FIELDS + (_BODY15_FIELDS if self.is_td15 else ()):
            v = self.fields.get(name, b"\x00" * size)
            if len(v) != size:
                raise EncodeError("%s must be %d bytes" % (name, size), None, name)
            out.append(v)
        return b"".join(out)

    def to_dict(self) -> dict:
        out: dict = {name: bytes(v).hex() for name, v in self.fields.items()}
        out["rtmrs"] = [bytes(v).hex() for v in self.rtmrs]
        return out


class CertificationData:
    """u16 type | u32 size | data, with type 6 decoded."""

    def __init__(self, cert_type: int, data: bytes) -> None:
        self.cert_type = cert_type
        self.data = data
        self.qe_report = b""
        self.qe_report_signature = b""
        self.qe_auth_data = b""
        self.inner: CertificationData | None = None

    @classmethod
    def decode(cls, r: Reader) -> "CertificationData":
        ctype = r.u16("certification_data.type")
        data_at = r.offset
        data = r.sized("certification_data.size", "certification_data.data")
        cd = cls(ctype, data)
        if ctype == CERT_QE_REPORT:
            inner = Reader(data, base=data_at, source=r.source)
            cd.qe_report = inner.read(QE_REPORT_SIZE, "qe_report")
            cd.qe_report_signature = inner.read(64, "qe_report_signature")
            cd.qe_auth_data = inner.sized("qe_auth_data.size", "qe_auth_data", 2)
            cd.inner = CertificationData.decode(inner)
        return cd

    def encode(self) -> bytes:
        data = self.data
        if self.cert_type == CERT_QE_REPORT and self.inner is not None:
            data = (self.qe_report + self.qe_report_signature +
                    struct.pack("<H", len(self.qe_auth_data)) + self.qe_auth_data +
                    self.inner.encode())
        return struct.pack("<HI", self.cert_type, len(data)) + data

    @property
    def pck_chain_pem(self) -> bytes:
        if self.cert_type == CERT_PCK_CHAIN:
            return self.data
        if self.inner is not None:
            return self.inner.pck_chain_pem
        return b""


class TdxQuote:
    """A decoded TDX quote (v4 or v5)."""

    def __init__(self) -> None:
        self.version = 4
        self.att_key_type = ATT_KEY_ECDSA_P256
        self.tee_type = TEE_TYPE_TDX
        self.reserved1 = 0
        self.reserved2 = 0
        self.qe_vendor_id = b"\x00" * 16
        self.user_data = b"\x00" * 20
        self.body_type = BODY_TYPE_TD10
        self.body = TdReportBody({}, False)
        self.signature = b"\x00" * 64
        self.attestation_key = b"\x00" * 64
        self.certification = CertificationData(CERT_PCK_CHAIN, b"")
        self.signed_size = 0
        self.trailer = b""

    def header_bytes(self) -> bytes:
        return struct.pack("<HHIHH", self.version, self.att_key_type, self.tee_type,
                           self.reserved1, self.reserved2) + self.qe_vendor_id + self.user_data

    def signed_bytes(self) -> bytes:
        """Header and body: what the attestation key signs."""
        body = self.body.encode()
        if self.version == 5:
            body = struct.pack("<HI", self.body_type, len(body)) + body
        return self.header_bytes() + body

    def encode(self) -> bytes:
        sig = self.signature + self.attestation_key + self.certification.encode()
        return self.signed_bytes() + struct.pack("<I", len(sig)) + sig + self.trailer

    @property
    def qe_report(self) -> bytes:
        return self.certification.qe_report

    @property
    def pck_chain_pem(self) -> bytes:
        return self.certification.pck_chain_pem

    def to_dict(self) -> dict:
        b = self.body
        return {
            "version": self.version,
            "att_key_type": self.att_key_type,
            "tee_type": "0x%02x" % self.tee_type,
            "qe_vendor_id": self.qe_vendor_id.hex(),
            "user_data": self.user_data.hex(),
            "body_type": self.body_type,
            "tee_tcb_svn": b.fields["tee_tcb_svn"].hex(),
            "mrseam": b.fields["mrseam"].hex(),
            "mrsignerseam": b.fields["mrsignerseam"].hex(),
            "seam_attributes": b.fields["seam_attributes"].hex(),
            "td_attributes": b.fields["td_attributes"].hex(),
            "xfam": b.fields["xfam"].hex(),
            "mrtd": b.fields["mrtd"].hex(),
            "mrconfigid": b.fields["mrconfigid"].hex(),
            "mrowner": b.fields["mrowner"].hex(),
            "mrownerconfig": b.fields["mrownerconfig"].hex(),
            "rtmrs": [v.hex() for v in b.rtmrs],
            "report_data": b.fields["report_data"].hex(),
            "tee_tcb_svn2": b.fields["tee_tcb_svn2"].hex() if b.is_td15 else None,
            "mrservicetd": b.fields["mrservicetd"].hex() if b.is_td15 else None,
            "certification_data_type": self.certification.cert_type,
            "inner_certification_data_type": (self.certification.inner.cert_type
                                              if self.certification.inner else None),
        }


def parse_quote(data: bytes, source: str | None = None) -> TdxQuote:
    """Decode a TDX quote v4 or v5."""
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
    if q.version == 5:
        at = r.offset
        q.body_type = r.u16("body_descriptor.type")
        size = r.u32("body_descriptor.size")
        want = {BODY_TYPE_TD10: TD10_BODY_SIZE, BODY_TYPE_TD15: TD15_BODY_SIZE}.get(q.body_type)
        if want is None:
            raise UnsupportedError("v5 body type %d (supported: 2 TD 1.0, 3 TD 1.5)"
                                   % q.body_type, at, "body_descriptor.type", source)
        if size != want:
            raise FormatError("body size %d, type %d needs %d" % (size, q.body_type, want),
                              at + 2, "body_descriptor.size", source)
    q.body = TdReportBody.decode(r, q.body_type == BODY_TYPE_TD15)
    q.signed_size = r.pos
    sig_at = r.offset
    sig = r.sized("signature_data_len", "signature_data")
    if q.att_key_type != ATT_KEY_ECDSA_P256:
        raise UnsupportedError("attestation key type %d (supported: 2, ECDSA P-256)"
                               % q.att_key_type, 2, "header.att_key_type", source)
    sr = Reader(sig, base=sig_at + 4, source=source)
    q.signature = sr.read(64, "signature")
    q.attestation_key = sr.read(64, "attestation_key")
    q.certification = CertificationData.decode(sr)
    if not sr.at_end():
        raise LimitError("%d bytes after the certification data" % sr.remaining(), sr.offset,
                         "signature_data", source)
    q.trailer = bytes(data[r.pos:])
    return q
