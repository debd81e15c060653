"""pytest fixtures of the QEMU test bed.

- ``guest_image`` (session): the cached guest image, built on first use.
- ``guest_image_info`` (session): what the builder recorded about it.
- ``artifacts_dir``: a fresh per-test directory under ``.cache/test-artifacts`` (or
  ``$CVMCHAIN_ARTIFACTS_DIR``) that is kept after the run: console logs, event logs.
- ``vm``: a factory that boots the guest image (through a fresh overlay) and returns a
  logged-in :class:`~qemu_tests.harness.QemuVM`; every VM is powered off or killed at the end of
  the test, and on failure the console tails are printed.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Generator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from .disk import make_overlay
from .harness import QemuVM, boot_vm
from .image_builder import GuestImageInfo, build_guest_image, load_image_info
from .paths import artifacts_root


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"cvmchain_report_{report.when}", report)
    return report


def _progress(msg: str) -> None:
    print(f"guest image: {msg}", file=sys.__stderr__, flush=True)


@pytest.fixture(scope="session")
def guest_image() -> Path:
    """Path of the cached base qcow2 (never written by tests)."""
    return build_guest_image(progress=_progress)


@pytest.fixture(scope="session")
def guest_image_info(guest_image: Path) -> GuestImageInfo:
    """The builder's description of :func:`guest_image` (kernel, UUIDs, command line)."""
    return load_image_info(guest_image)


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest) -> Path:
    """A fresh directory for this test's artifacts, kept after the run."""
    module = Path(str(request.node.fspath)).stem
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    path = artifacts_root() / module / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class VMFactory:
    """Boots VMs for one test; see the ``vm`` fixture."""

    def __init__(self, image: Path, artifacts: Path, workdir: Path) -> None:
        self.image = image
        self.artifacts = artifacts
        self.workdir = workdir
        self.vms: list[QemuVM] = []
        self._stack = ExitStack()
        self._count = 0

    def overlay(self, name: str = "disk") -> Path:
        """A fresh overlay on the base image, for changes made before booting."""
        return make_overlay(self.image, self.workdir / f"{name}.qcow2")

    def __call__(
        self,
        *,
        tpm: bool = True,
        tpm_device: str = "tpm-tis",
        secure_boot: bool = True,
        pcr_banks: tuple[str, ...] | None = None,
        overlay: Path | None = None,
        login: bool = True,
        **vm_kwargs: Any,
    ) -> QemuVM:
        """Boot a VM and return it (logged in unless ``login=False``).

        Its console goes to ``<artifacts_dir>/console.log`` (``console-2.log``, ... for
        further VMs of the same test).
        """
        self._count += 1
        suffix = "" if self._count == 1 else f"-{self._count}"
        machine = self._stack.enter_context(boot_vm(
            self.image, self.workdir / f"vm{self._count}", self.artifacts / f"console{suffix}.log",
            tpm=tpm, tpm_device=tpm_device, pcr_banks=pcr_banks, overlay=overlay, login=login,
            secure_boot=secure_boot, **vm_kwargs,
        ))
        self.vms.append(machine)
        return machine

    def close(self, failed: bool) -> None:
        """Power off (or, after a failure, kill) every VM and print console tails on failure."""
        if failed:
            for machine in self.vms:
                machine.kill()
                print(f"\n--- console tail ({machine.console_log}) ---\n"
                      f"{machine.console_tail(60)}", file=sys.stderr)
        self._stack.close()


@pytest.fixture
def vm(
    guest_image: Path, artifacts_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Generator[VMFactory, None, None]:
    """Factory: ``vm(tpm=True, tpm_device="tpm-tis", secure_boot=True, ...) -> QemuVM``."""
    factory = VMFactory(guest_image, artifacts_dir, tmp_path)
    try:
        yield factory
    finally:
        report = getattr(request.node, "cvmchain_report_call", None)
        factory.close(failed=report is None or report.failed)
