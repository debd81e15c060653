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
