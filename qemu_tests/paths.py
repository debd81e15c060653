"""Where the test bed keeps things: cache, firmware, test artifacts.

Environment overrides:

- ``CVMCHAIN_CACHE_DIR``: cache root (default ``${XDG_CACHE_HOME:-~/.cache}/cvmchain``);
  images live in its ``images/`` subdirectory.
- ``CVMCHAIN_ARTIFACTS_DIR``: where tests keep console logs and extracted files
  (default ``<repo>/.cache/test-artifacts``).
- ``CVMCHAIN_OVMF_CODE`` / ``CVMCHAIN_OVMF_VARS`` (and ``..._SECBOOT``): firmware code and
  variable-store template (default the Debian ``ovmf`` package's 4M builds; with Secure Boot
  the ``secboot`` code and the ``ms`` variables).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import QemuTestsError

REPO_ROOT = Path(__file__).resolve().parent.parent

OVMF_DIR = Path("/usr/share/OVMF")
#: (code, variable template) without and with Secure Boot; the Secure Boot variable store has
#: Microsoft's keys enrolled (it boots Debian's shim) and Secure Boot enabled.
OVMF_FILES = {
    False: (OVMF_DIR / "OVMF_CODE_4M.fd", OVMF_DIR / "OVMF_VARS_4M.fd"),
    True: (OVMF_DIR / "OVMF_CODE_4M.secboot.fd", OVMF_DIR / "OVMF_VARS_4M.ms.fd"),
}


def cache_root() -> Path:
    """The cvmchain cache directory (not created)."""
    explicit = os.environ.get("CVMCHAIN_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cvmchain"


def images_dir(cache_dir: Path | None = None) -> Path:
    """Directory of cached guest images: ``<cache_dir or cache_root()>/images``."""
    return (cache_dir if cache_dir is not None else cache_root()) / "images"


def artifacts_root() -> Path:
    """Root directory of per-test artifacts (console logs, event logs)."""
    explicit = os.environ.get("CVMCHAIN_ARTIFACTS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return REPO_ROOT / ".cache" / "test-artifacts"


def _firmware(env: str, default: Path) -> Path:
    path = Path(os.environ.get(env) or default)
    if not path.is_file():
        raise QemuTestsError(
            f"firmware file {path} not found (install the Debian 'ovmf' package or set {env})"
        )
    return path


def ovmf_code(secure_boot: bool = False) -> Path:
    """The OVMF code image, mapped read-only as the first pflash unit."""
    suffix = "_SECBOOT" if secure_boot else ""
    return _firmware("CVMCHAIN_OVMF_CODE" + suffix, OVMF_FILES[secure_boot][0])


def ovmf_vars_template(secure_boot: bool = False) -> Path:
    """The OVMF variable store template; every VM gets a private writable copy."""
    suffix = "_SECBOOT" if secure_boot else ""
    return _firmware("CVMCHAIN_OVMF_VARS" + suffix, OVMF_FILES[secure_boot][1])
