"""Where the real evidence of other projects is (never copied into this repo)."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def fixtures_dir() -> Path:
    """``$CVMCHAIN_FIXTURES`` or ``../shared/fixtures``; skips the test when absent."""
    path = Path(os.environ.get("CVMCHAIN_FIXTURES", ROOT.parent / "shared" / "fixtures"))
    if not path.is_dir():
        pytest.skip("real-evidence fixtures not found at %s (set CVMCHAIN_FIXTURES)" % path)
    return path


def fixture(*parts: str) -> Path:
    path = fixtures_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip("fixture %s is absent" % path)
    return path
