"""nox sessions for cvmchain.

``lint``, ``tests``, ``micropython`` and ``qemu`` run in the environment nox
itself runs in (``.venv``, made by ``scripts/setup.sh`` from Debian's python3
with system site packages, so libguestfs' binding is importable); ``bench``
gets its own virtualenv because it installs the peers it is compared with.
"""

import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
#: the interpreter nox runs with (.venv): sessions without a virtualenv use it explicitly
PY = sys.executable
nox.options.sessions = ["lint", "tests", "micropython"]
nox.options.reuse_existing_virtualenvs = True

CPYTHON_PACKAGES = ["shared_spec", "cloud_sdk", "image_rewriter", "initrd_agent", "qemu_tests"]


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff over the tree, mypy over the CPython packages."""
    session.run(PY, "-m", "ruff", "check", ".")
    session.run(PY, "-m", "mypy", *CPYTHON_PACKAGES)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Unit, property and fixture tests (fixtures default to ../shared/fixtures)."""
    session.run(PY, "-m", "pytest", "tests", *session.posargs)


@nox.session(venv_backend="none")
def micropython(session: nox.Session) -> None:
    """The shared_spec test vectors under the real MicroPython interpreter."""
    session.run(PY, "-m", "initrd_agent.runtime_bundle", "fetch")
    env = {"MICROPYPATH": ".frozen:" + str(ROOT) + ":" + str(ROOT / "initrd_agent" / "agent")}
    session.run(PY, "-m", "initrd_agent.runtime_bundle", "run", "--",
                str(ROOT / "tests" / "mpy_runner.py"), *session.posargs, env=env)


@nox.session(venv_backend="none")
def qemu(session: nox.Session) -> None:
    """Integration tests that build a guest image and boot it under QEMU + OVMF + swtpm."""
    env = {"LIBGUESTFS_BACKEND": os.environ.get("LIBGUESTFS_BACKEND", "direct")}
    session.run(PY, "-m", "pytest", "qemu_tests", "-m", "qemu", *session.posargs, env=env)


@nox.session(venv_backend="none")
def fuzz(session: nox.Session) -> None:
    """atheris over every decoder (default 200,000 inputs; pass -atheris_runs=N)."""
    runs = session.posargs or ["-atheris_runs=200000"]
    session.run(PY, "fuzz/fuzz_parsers.py", *runs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks side by side with peers (ratios against each baseline)."""
    session.install("-e", ".", "cctrusted-base==0.5.0", "evidence-api==0.5.0")
    session.run("python", "-m", "bench", *session.posargs)
    session.run("python", "-m", "bench.verify")
    # the rewrite needs Debian's libguestfs binding: the project's interpreter sees it
    session.run(PY, "-m", "bench.rewrite", "--runs", "3", external=True)
