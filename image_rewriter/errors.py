"""Exception types of the image rewriter."""


class RewriteError(Exception):
    """Base of every error the image rewriter raises on purpose."""


class InitrdError(RewriteError):
    """An initrd (or one of its cpio archives) cannot be read or written.

    ``offset`` is the byte offset the problem was found at (in the initrd file, or in
    the decompressed archive of a segment, as the message says), or ``None`` when the
    error is not about a position.
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        if offset is not None:
            message = "%s (at offset %d)" % (message, offset)
        super().__init__(message)
        self.offset = offset


class MissingToolError(InitrdError):
    """A command-line tool needed for a compression format is not installed; names it."""

    def __init__(self, tool: str, package: str, purpose: str) -> None:
        super().__init__(
            "the '%s' command is needed to %s but is not installed "
            "(Debian package: %s)" % (tool, purpose, package)
        )
        self.tool = tool
        self.package = package


class ImageError(RewriteError):
    """The input image is unusable (not an image, encrypted, no Linux, ...); names it."""


class ApplianceError(RewriteError):
    """libguestfs failed; the message names the image and the operation."""


class GuestError(RewriteError):
    """The guest operating system inside the image cannot be rewritten (says why)."""


class PartitionTableError(ImageError):
    """A raw disk image has no usable partition table, or not the partition asked for.

    ``offset`` is the byte offset in the image the problem was found at, or ``None``.
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        if offset is not None:
            message = "%s (at offset %d)" % (message, offset)
        super().__init__(message)
        self.offset = offset


class RootfsReadError(RewriteError):
    """The guest's root file system cannot be read to build the rootfs manifest; says why."""


class NativeAccessError(RootfsReadError):
    """Neither a read-only loop mount nor debugfs can read the file system on this host:
    the libguestfs appliance path must be used instead."""


class ImaPolicyError(RewriteError):
    """An IMA policy the kernel would reject (or a bad IMA kernel argument).

    ``source`` names the policy (a file path or ``preset NAME``); ``line`` (1-based) and
    ``column`` (1-based, of ``token``) locate the offending token, or are ``None`` when the
    error is not about a position; ``reason`` says what is wrong.
    """

    def __init__(self, source: str, line: int | None, column: int | None, token: str | None,
                 reason: str) -> None:
        where = source
        if line is not None:
            where += ":%d" % line
            if column is not None:
                where += ":%d" % column
        message = "%s: %s" % (where, reason)
        if token is not None:
            message += " (token %r)" % token
        super().__init__(message)
        self.source = source
        self.line = line
        self.column = column
        self.token = token
        self.reason = reason


class ExportError(RewriteError):
    """A verifier export (Keylime runtime policy, CEL-JSON) cannot be built; names the
    path, field or record that is wrong."""
