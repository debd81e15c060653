"""Exception types of the SDK."""


class CvmchainError(Exception):
    """Base of every error the SDK raises on purpose."""


class InputError(CvmchainError):
    """Unusable input (CLI exit code 2): names the file and what is wrong."""


class BackendError(CvmchainError):
    """A register or log source cannot be read; says which file and why."""
