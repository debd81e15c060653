"""The SDK as it runs inside a guest (issues #4 and #5).

- ``cvmchain verify`` without ``--evidence`` collects this machine's evidence and verifies it.
- :mod:`qemu_tests.sdk_drive` packs a runnable copy of the SDK; unpacked with GNU tar, as the
  guest does, it runs on Debian 12's own ``python3`` (3.11, ``python3-cryptography`` 38, no
  ``rich``), which is the interpreter of the guest image. This machine's ``/usr/bin/python3``
  is that interpreter when the host is Debian 12; the tests that need it skip otherwise.

TDX evidence comes from ``FakeTdxSysfs`` (a MOCK OF TDX HARDWARE serving real evidence), TPM
evidence from a real swtpm into which a real firmware log was extended.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from cloud_sdk import backends
from cloud_sdk.backends import TdxBackend
from cloud_sdk.cli import main
from cloud_sdk.collect import collect_evidence
from cloud_sdk.verify import verify
from qemu_tests.errors import VMError
from qemu_tests.harness import ReadOnlyDrive
from qemu_tests.paths import REPO_ROOT
from qemu_tests.sdk_drive import (
    GUEST_MISSING,
    PROJECT_PACKAGES,
    SdkDriveError,
    build_sdk_archive,
    dependency_closure,
    guest_cli,
    guest_install_command,
)
from tests.sdk import test_backends, test_collect
from tests.sdk.test_backends import FakeTdxSysfs

fake_tdx = test_backends.fake_tdx
fw_swtpm = test_backends.fw_swtpm
tpm_root = test_collect.tpm_root

#: Debian 12's interpreter, the one the guest image has
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdk") / "sdk.tar"
    return build_sdk_archive(out, {"ref.json": b"{}\n", "more/notes.txt": REPO_ROOT /
                                   "pyproject.toml"}).path


@pytest.fixture(scope="module")
def sdk_dir(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The archive unpacked by GNU tar, as ``guest_install_command`` does in the guest."""
    dest = tmp_path_factory.mktemp("unpacked")
    subprocess.run(["tar", "-xf", str(archive), "-C", str(dest), "--no-same-owner"], check=True)
    return dest


@pytest.fixture(scope="module")
def system_python() -> str:
    """Debian's ``/usr/bin/python3`` with ``python3-cryptography`` (skips without them)."""
    if Path(sys.executable).resolve() == Path(SYSTEM_PYTHON).resolve() \
            and sys.prefix == sys.base_prefix:
        pytest.skip("the tests already run on the system interpreter")
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-I", "-c", "import cryptography"],
                              capture_output=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("%s is absent" % SYSTEM_PYTHON)
    if done.returncode != 0:
        pytest.skip("%s has no cryptography (Debian: python3-cryptography)" % SYSTEM_PYTHON)
    return SYSTEM_PYTHON


def _tdx_args(fake: FakeTdxSysfs) -> list[str]:
    return ["--backend", "tdx", "--root", str(fake.root), "--tsm-entry", FakeTdxSysfs.ENTRY]


def _run_sdk(python: str, sdk_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-I", str(sdk_dir / "cvmchain"), *args], capture_output=True,
                          text=True, timeout=300)


# -- the archive ----------------------------------------------------------------------------


def test_archive_holds_the_packages_and_the_missing_dependencies(archive: Path) -> None:
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        # every source file of the project packages, byte for byte
        for package in PROJECT_PACKAGES:
            sources = [p for p in (REPO_ROOT / package).rglob("*.py")
                       if "__pycache__" not in p.parts]
            assert sources, package
            for path in sources:
                name = "lib/" + path.relative_to(REPO_ROOT).as_posix()
                f = tar.extractfile(members[name])
                assert f is not None and f.read() == path.read_bytes(), name
        # every module of rich (what Debian 12's guest lacks), from this interpreter's copy
        import rich

        rich_dir = Path(rich.__file__).parent
        for path in rich_dir.glob("*.py"):
            assert "lib/rich/" + path.name in members, path
        assert members["cvmchain"].mode == 0o755
        f = tar.extractfile(members["ref.json"])
        assert f is not None and f.read() == b"{}\n"
        f = tar.extractfile(members["more/notes.txt"])
        assert f is not None and f.read() == (REPO_ROOT / "pyproject.toml").read_bytes()
    assert not [n for n in members if "__pycache__" in n or n.endswith((".pyc", ".so"))]
    # a raw disk is whole sectors
    assert archive.stat().st_size % 512 == 0


def test_archive_is_reproducible(archive: Path, tmp_path: Path) -> None:
    again = build_sdk_archive(tmp_path / "again.tar", {"ref.json": b"{}\n", "more/notes.txt":
                                                       REPO_ROOT / "pyproject.toml"})
    assert hashlib.sha256(again.path.read_bytes()).digest() == \
        hashlib.sha256(archive.read_bytes()).digest()
    assert again.size == archive.stat().st_size


def test_dependency_closure_is_closed() -> None:
    dists = dependency_closure(GUEST_MISSING)
    names = {d.metadata["Name"].lower() for d in dists}
    assert "rich" in names
    for dist in dists:
        for text in metadata.requires(dist.metadata["Name"]) or ():
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                assert req.name.lower() in names, (dist.metadata["Name"], text)


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "lib/cloud_sdk/cli.py",
                                  "cvmchain", ""])
def test_bad_extra_file_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SdkDriveError) as e:
        build_sdk_archive(tmp_path / "x.tar", {name: b"x"})
    assert repr(name) in str(e.value)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_unreadable_extra_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SdkDriveError) as e:
        build_sdk_archive(tmp_path / "x.tar", {"ref.json": tmp_path / "absent.json"})
    assert "absent.json" in str(e.value) and "ref.json" in str(e.value)
    assert not list(tmp_path.iterdir())


def test_missing_distribution_is_named() -> None:
    with pytest.raises(SdkDriveError) as e:
        dependency_closure(["cvmchain-no-such-distribution"])
    assert "cvmchain-no-such-distribution" in str(e.value)


def test_drive_and_guest_commands(archive: Path, tmp_path: Path) -> None:
    drive = ReadOnlyDrive(tmp_path / "a,b.tar", "cvmchain-sdk")
    args = drive.qemu_args("extra0")
    assert args == ["-drive", "file=%s,,b.tar,if=none,id=extra0,format=raw,readonly=on"
                    % (tmp_path / "a"), "-device",
                    "virtio-blk-pci,drive=extra0,serial=cvmchain-sdk"]
    with pytest.raises(VMError, match="serial"):
        ReadOnlyDrive(archive, "x" * 21).qemu_args("extra0")
    with pytest.raises(VMError, match="serial"):
        ReadOnlyDrive(archive, "a b").qemu_args("extra0")
    assert "tar -xf \"$dev\" -C /root/sdk" in guest_install_command()
    assert guest_cli("verify", "--reference", "/root/sdk/ref.json") == \
        "python3 /root/sdk/cvmchain verify --reference /root/sdk/ref.json"


def test_guest_install_command_finds_the_disk_by_serial(archive: Path, tmp_path: Path) -> None:
    """The shell command run against a fake /sys/block: it picks the disk with the serial."""
    fake = tmp_path / "root"
    for dev, serial in (("vda", ""), ("vdb", "other"), ("vdc", "cvmchain-sdk")):
        (fake / "sys/block" / dev).mkdir(parents=True)
        (fake / "sys/block" / dev / "serial").write_text(serial)
    (fake / "dev").mkdir()
    (fake / "dev/vdc").symlink_to(archive)
    cmd = guest_install_command(str(fake / "sdk")).replace("/sys/block", str(fake / "sys/block")) \
        .replace("dev=/dev/", "dev=%s/dev/" % fake)
    subprocess.run(["sh", "-c", cmd], check=True)
    assert (fake / "sdk/cvmchain").is_file() and (fake / "sdk/ref.json").read_text() == "{}\n"
    (fake / "sys/block/vdc/serial").write_text("nope")
    done = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)
    assert done.returncode == 1 and "no virtio disk with serial cvmchain-sdk" in done.stderr


# -- live verification ----------------------------------------------------------------------


def test_live_verify_equals_collect_then_verify(fake_tdx: FakeTdxSysfs, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "ev.json"
    assert main(["evidence", "collect", "-o", str(bundle), *_tdx_args(fake_tdx)]) == 0
    capsys.readouterr()
    assert main(["verify", "--evidence", str(bundle), "--format", "json"]) == 0
    offline = json.loads(capsys.readouterr().out)
    assert main(["verify", *_tdx_args(fake_tdx), "--format", "json"]) == 0
    out = capsys.readouterr()
    live = json.loads(out.out)
    assert live == offline and live["verified"] is True
    assert sorted(r["register"] for r in live["registers"]) == [
        "MR1 (RTMR0)", "MR2 (RTMR1)", "MR3 (RTMR2)", "MR4 (RTMR3)"]
    assert all(r["matches"] for r in live["registers"])
    # the collection's notes go to stderr; the quote was asked for with zero REPORTDATA
    assert "cvmchain: live evidence: backend: tdx (cc_mr)" in out.err
    assert fake_tdx.requests[-1] == bytes(64)


def test_live_verify_fails_on_a_register_its_logs_do_not_explain(
        fake_tdx: FakeTdxSysfs, capsys: pytest.CaptureFixture[str]) -> None:
    rtmr1 = fake_tdx.root / backends.TDX_MEASUREMENTS / "rtmr1:sha384"
    value = bytearray(rtmr1.read_bytes())
    value[0] ^= 1
    rtmr1.write_bytes(bytes(value))
    assert main(["verify", *_tdx_args(fake_tdx), "--no-quote", "--format", "json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert [r["register"] for r in verdict["registers"] if not r["matches"]] == ["MR2 (RTMR1)"]
    assert any(f["code"] == "REGISTER_MISMATCH" for f in verdict["findings"])
    assert fake_tdx.requests == []  # --no-quote


def test_unusable_reference_fails_before_anything_is_collected(
        fake_tdx: FakeTdxSysfs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = tmp_path / "absent.reference.json"
    assert main(["verify", "--reference", str(ref), *_tdx_args(fake_tdx)]) == 2
    assert str(ref) in capsys.readouterr().err
    assert fake_tdx.requests == []


def test_live_verify_without_a_root_of_trust_is_unusable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--root", str(tmp_path)]) == 2
    assert "no root of trust" in capsys.readouterr().err


# -- on Debian 12's python3 -----------------------------------------------------------------


def test_archive_runs_on_the_system_python(system_python: str, sdk_dir: Path) -> None:
    """rich comes from the archive, cryptography from the system (Debian's package)."""
    probe = ("import sys; sys.path.insert(0, %r); import cloud_sdk.cli, cryptography, rich; "
             "print(rich.__file__); print(cryptography.__file__)" % str(sdk_dir / "lib"))
    done = subprocess.run([system_python, "-I", "-c", probe], capture_output=True, text=True,
                          timeout=120, check=True)
    rich_file, crypto_file = done.stdout.split()
    assert rich_file.startswith(str(sdk_dir / "lib") + "/")
    assert not crypto_file.startswith(str(sdk_dir)) and ".venv" not in crypto_file
    helped = _run_sdk(system_python, sdk_dir, "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("verify", "evidence", "registers", "eventlog", "quote"):
        assert command in helped.stdout


def test_live_verify_on_the_system_python(system_python: str, sdk_dir: Path,
                                          fake_tdx: FakeTdxSysfs, tmp_path: Path) -> None:
    """The guest's interpreter gives the verdict this interpreter gives."""
    done = _run_sdk(system_python, sdk_dir, "verify", *_tdx_args(fake_tdx), "--format", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    guest = json.loads(done.stdout)
    ev = collect_evidence(TdxBackend(root=fake_tdx.root, tsm_entry=FakeTdxSysfs.ENTRY))
    assert guest == json.loads(json.dumps(verify(ev).to_dict()))
    text = _run_sdk(system_python, sdk_dir, "verify", *_tdx_args(fake_tdx))
    assert text.returncode == 0 and text.stdout.rstrip().endswith("VERIFIED")


@pytest.mark.swtpm
def test_tpm_collect_and_verify_on_the_system_python(
        system_python: str, sdk_dir: Path, fw_swtpm: test_backends.Swtpm, tpm_root: Path,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`evidence collect` then `verify --evidence`, and live `verify`, on a real swtpm
    holding a real firmware log's PCRs: the guest's interpreter and this one agree."""
    tpm = ["--backend", "tpm", "--root", str(tpm_root), "--tpm-device", str(fw_swtpm.sock)]
    bundle = tmp_path / "b.json"
    done = _run_sdk(system_python, sdk_dir, "evidence", "collect", "-o", str(bundle), *tpm)
    assert done.returncode == 0, done.stderr[-3000:]
    done = _run_sdk(system_python, sdk_dir, "verify", "--evidence", str(bundle),
                    "--format", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    guest = json.loads(done.stdout)
    assert main(["verify", "--evidence", str(bundle), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == guest
    matched = {r["register"] for r in guest["registers"] if r["matches"]}
    assert {"PCR %d" % p for p in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14)} <= matched
    live = _run_sdk(system_python, sdk_dir, "verify", *tpm, "--format", "json")
    assert live.returncode == 0, live.stderr[-3000:]
    assert {r["register"] for r in json.loads(live.stdout)["registers"] if r["matches"]} == \
        matched
