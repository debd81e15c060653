"""The nox session body for the QEMU integration tests, for ``noxfile.py`` to import.

Usage in ``noxfile.py``::

    from qemu_tests.nox_qemu import run_qemu_session

    @nox.session(venv_backend="none")
    def qemu(session):
        run_qemu_session(session)
"""

from __future__ import annotations

import os
from typing import Any

QEMU_ENV_DEFAULTS = {"LIBGUESTFS_BACKEND": "direct"}


def run_qemu_session(session: Any) -> None:
    """Build or reuse the guest image, then run ``pytest qemu_tests -m qemu``.

    Run as root (building the image needs it). Extra arguments are passed to pytest.
    ``-p no:cacheprovider`` is not used: ``--lf`` works across runs.
    """
    env = {k: os.environ.get(k, v) for k, v in QEMU_ENV_DEFAULTS.items()}
    session.run("python", "-m", "qemu_tests.image_builder", env=env)
    session.run("pytest", "qemu_tests", "-m", "qemu", "-v", *session.posargs, env=env)
