"""Exception types raised by the shared_spec codecs.

Every decoding error is a :class:`SpecError` and says where it happened:
``offset`` is the absolute byte offset in the input (file) and ``field`` the
name of the structure field being read. Callers that parse untrusted input
catch :class:`SpecError` only; any other exception is a bug.
"""


class SpecError(Exception):
    """Malformed or unsupported input, located by offset and field."""

    def __init__(self, message: str, offset: int | None = None, field: str | None = None,
                 source: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.field = field
        self.source = source
        #: Number of complete records decoded before the error (set by log parsers).
        self.parsed_count: int | None = None

    def located(self) -> str:
        """The message with file, offset and field, for people."""
        parts = []
        if self.source is not None:
            parts.append(self.source)
        if self.offset is not None:
            parts.append("offset %d (0x%x)" % (self.offset, self.offset))
        if self.field is not None:
            parts.append("field " + self.field)
        where = ", ".join(parts)
        text = self.message
        if self.parsed_count is not None:
            text = text + " (after %d complete records)" % self.parsed_count
        return (where + ": " + text) if where else text

    def __str__(self) -> str:
        return self.located()


class TruncatedError(SpecError):
    """The input ends inside a structure."""


class LimitError(SpecError):
    """A length or count field exceeds what the input or a sane bound allows."""


class FormatError(SpecError):
    """A field holds a value the specification does not allow."""


class UnsupportedError(SpecError):
    """Well-formed input of a kind or version this code does not handle."""


class EncodeError(SpecError):
    """A structure cannot be encoded (a value out of range for its field)."""
