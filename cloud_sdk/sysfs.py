"""Reading kernel interface files (sysfs, securityfs, configfs) with errors that name them."""

from pathlib import Path

from cloud_sdk.errors import BackendError


def read_file(path: Path, what: str) -> bytes:
    """Read ``path``; a :class:`BackendError` naming it (and the permission needed)."""
    try:
        return path.read_bytes()
    except PermissionError as e:
        raise BackendError("%s: permission denied reading %s (needs root, or read access "
                           "to this file)" % (path, what)) from e
    except FileNotFoundError as e:
        raise BackendError("%s: %s is absent" % (path, what)) from e
    except OSError as e:
        raise BackendError("%s: cannot read %s: %s" % (path, what, e.strerror or e)) from e
