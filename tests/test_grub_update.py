"""The memoising wrapper of image_rewriter.grub_update (for grub-probe and udevadm), run by
/bin/sh on the host in front of a stand-in "real" binary that logs every call it gets."""

import subprocess
from pathlib import Path

import pytest

from image_rewriter.grub_update import probe_wrapper, update_grub_script

REAL = r"""#!/bin/sh
echo "$*" >> "{log}"
case "$*" in
  *fail*) echo "no such device" ; exit 3 ;;
  *raw*) printf '  two  spaces\\n, a backslash\\\\\n\\tand no final newline' ; exit 0 ;;
esac
echo "answer to: $*"
"""


@pytest.fixture
def wrapper(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "calls.log"
    real = tmp_path / "grub-probe.real"
    real.write_text(REAL.format(log=log))
    real.chmod(0o755)
    (tmp_path / "grub-probe.memo").mkdir()
    w = tmp_path / "grub-probe"
    w.write_text(probe_wrapper(str(tmp_path), "grub-probe"))
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


def test_output_is_replayed_byte_for_byte(wrapper: tuple[Path, Path]) -> None:
    w, log = wrapper
    direct = subprocess.run([str(w.with_name("grub-probe.real")), "raw"], capture_output=True,
                            check=True).stdout
    first = subprocess.run([str(w), "raw"], capture_output=True, check=True).stdout
    again = subprocess.run([str(w), "raw"], capture_output=True, check=True).stdout
    assert direct.endswith(b"newline") and b"\\" in direct and direct.startswith(b"  two")
    assert first == again == direct
    assert log.read_text().splitlines() == ["raw", "raw"]  # the direct call, then one


def test_the_working_directory_is_part_of_the_key(wrapper: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    w, log = wrapper
    subprocess.run([str(w), "x"], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run([str(w), "x"], cwd="/", check=True, capture_output=True)
    subprocess.run([str(w), "x"], cwd="/", check=True, capture_output=True)
    assert len(log.read_text().splitlines()) == 2


def test_an_argument_with_a_newline_is_never_memoised(wrapper: tuple[Path, Path]) -> None:
    w, log = wrapper
    assert _run(w, "a\nb").stdout == _run(w, "a\nb").stdout == "answer to: a\nb\n"
    assert len(log.read_text().splitlines()) == 4  # two calls, two lines each


def test_the_script_undoes_its_mounts_and_runs_update_grub() -> None:
    script = update_grub_script()
    assert "@DIR@" not in script and "@NAME@" not in script
    lines = script.splitlines()
    assert lines[0] == "set -e" and lines[-1] == "update-grub 2>&1"
    trap = next(line for line in lines if line.startswith("trap "))
    assert "/usr/sbin/grub-probe" in trap and "/usr/bin/udevadm" in trap
    assert trap.rstrip("' EXIT").endswith("umount /run")
    binds = [i for i, line in enumerate(lines) if line.strip().startswith("mount --bind")]
    assert [lines[i].split()[-1] for i in binds] == ["/usr/sbin/grub-probe", "/usr/bin/udevadm"]
    # the trap is armed before anything is bind-mounted over the guest's binaries
    assert lines.index(trap) < binds[0]


class _ShOnlyGuest:
    """A named stand-in for a libguestfs handle: ``sh`` returns a canned output."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.scripts: list[str] = []

    def sh(self, script: str) -> str:
        self.scripts.append(script)
        return self.output


def test_generated_config_comes_back_through_base64() -> None:
    import base64

    from image_rewriter.grub_update import _CFG_MARK, generate_grub_cfg

    cfg = "menuentry 'Debian' {\n\tlinux /vmlinuz root=UUID=x ro ima_hash=sha256\n}\n"
    encoded = base64.encodebytes(cfg.encode()).decode()
    guest = _ShOnlyGuest("Generating grub configuration file ...\ndone\n%s\n%s"
                         % (_CFG_MARK, encoded))
    got = generate_grub_cfg(guest)
    assert got.content == cfg.encode()
    assert got.messages.startswith("Generating") and _CFG_MARK not in got.messages
    # grub-mkconfig writes to the tmpfs, never to the guest's /boot
    assert "grub-mkconfig -o /run/cvmchain-probe/grub.cfg" in guest.scripts[0]
    assert "/boot/grub/grub.cfg" not in guest.scripts[0]


def test_no_config_back_is_a_guest_error() -> None:
    from image_rewriter.errors import GuestError
    from image_rewriter.grub_update import generate_grub_cfg

    with pytest.raises(GuestError, match="no configuration came back"):
        generate_grub_cfg(_ShOnlyGuest("grub-mkconfig: error: something\n"))
