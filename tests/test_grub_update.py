"""The memoising grub-probe wrapper of image_rewriter.grub_update, run by /bin/sh on the host
in front of a stand-in "real" binary that logs every call it gets."""

import subprocess
from pathlib import Path

import pytest

from image_rewriter.grub_update import probe_wrapper, update_grub_script

REAL = """#!/bin/sh
echo "$*" >> "{log}"
case "$*" in
  *fail*) echo "no such device" ; exit 3 ;;
esac
echo "answer to: $*"
"""


@pytest.fixture
def wrapper(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "calls.log"
    real = tmp_path / "grub-probe.real"
    real.write_text(REAL.format(log=log))
    real.chmod(0o755)
    w = tmp_path / "wrapper"
    w.write_text(probe_wrapper(str(tmp_path)))
    w.chmod(0o755)
    return w, log


def _run(w: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(w), *args], capture_output=True, text=True, check=False)


def test_each_distinct_question_reaches_the_real_binary_once(wrapper: tuple[Path, Path]) -> None:
    w, log = wrapper
    first = _run(w, "--device", "/dev/sda2", "--target=fs_uuid")
    again = _run(w, "--device", "/dev/sda2", "--target=fs_uuid")
    other = _run(w, "--device", "/dev/sda2", "--target=fs")
    assert first.stdout == again.stdout == "answer to: --device /dev/sda2 --target=fs_uuid\n"
    assert other.stdout == "answer to: --device /dev/sda2 --target=fs\n"
    assert log.read_text().splitlines() == ["--device /dev/sda2 --target=fs_uuid",
                                            "--device /dev/sda2 --target=fs"]


def test_argument_boundaries_are_part_of_the_key(wrapper: tuple[Path, Path]) -> None:
    w, log = wrapper
    assert _run(w, "a b").stdout == _run(w, "a", "b").stdout == "answer to: a b\n"
    assert len(log.read_text().splitlines()) == 2


def test_a_failure_is_replayed_with_its_exit_status(wrapper: tuple[Path, Path]) -> None:
    w, log = wrapper
    first, again = _run(w, "--fail"), _run(w, "--fail")
    assert first.returncode == again.returncode == 3
    assert first.stdout == again.stdout == "no such device\n"
    assert len(log.read_text().splitlines()) == 1


def test_the_script_undoes_its_mounts_and_runs_update_grub() -> None:
    script = update_grub_script()
    assert "@DIR@" not in script
    lines = script.splitlines()
    assert lines[0] == "set -e" and lines[-1] == "update-grub 2>&1"
    trap = next(line for line in lines if line.startswith("trap "))
    assert "umount /usr/sbin/grub-probe" in trap and "umount /run" in trap
    # the trap is armed before anything is bind-mounted over the guest's binary
    assert lines.index(trap) < next(i for i, line in enumerate(lines)
                                    if line.startswith("mount --bind"))
