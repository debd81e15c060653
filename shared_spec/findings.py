"""Findings: what a check or a verification concluded, as data.

A finding is never an exception: parsing succeeded, and the finding says
what is wrong (or noteworthy) about the content. Codes are stable strings
that scripts can match; messages are for people; ``evidence`` holds the
values the finding rests on (hex digests, offsets, names).
"""

SEVERITY_ERROR = "error"
SEVERITY_WARNING = "warning"
SEVERITY_INFO = "info"


class Finding:
    """One conclusion of a check, with a stable ``code``."""

    __slots__ = ("code", "event", "evidence", "message", "offset", "register", "severity")

    def __init__(self, code: str, severity: str, message: str, register: int | None = None,
                 event: int | None = None, offset: int | None = None,
                 evidence: dict | None = None) -> None:
        self.code = code
        self.severity = severity
        self.message = message
        self.register = register
        #: sequence number of the event in the (concatenated) log, from 0
        self.event = event
        #: absolute byte offset of the record in its source
        self.offset = offset
        self.evidence = evidence or {}

    def to_dict(self) -> dict:
        out: dict = {"code": self.code, "severity": self.severity, "message": self.message}
        if self.register is not None:
            out["register"] = self.register
        if self.event is not None:
            out["event"] = self.event
        if self.offset is not None:
            out["offset"] = self.offset
        if self.evidence:
            out["evidence"] = self.evidence
        return out

    def __repr__(self) -> str:
        return "Finding(%s, %s)" % (self.code, self.message)
