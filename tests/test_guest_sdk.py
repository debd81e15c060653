"""The SDK as it runs inside a guest (issues #4 and #5).

- ``cvmchain verify`` without ``--evidence`` collects this machine's evidence and verifies it.
- :mod:`qemu_tests.sdk_drive` packs a runnable copy of the SDK; unpacked with GNU tar, as the
  guest does, it runs on Debian 12's own ``python3`` (3.11, ``python3-cryptography`` 38, no
  ``rich``), which is the interpreter of the guest image. This machine's ``/usr/bin/python3``
  is that interpreter when the host is Debian 12; the tests that need it skip otherwise.

TDX evidence comes from ``FakeTdxSysfs`` (a MOCK OF TDX HARDWARE serving real evidence), TPM
evidence from a real swtpm into which a real firmware log was extended. The guest's TPM quote
(Debian 12's ``python3-tpm2-pytss`` 1.2 next to ``python3-cryptography`` 38) and the AK
certification through the EK run against a swtpm manufactured with EK certificates by
:func:`qemu_tests.swtpm.manufacture`, as the QEMU test's vTPM is; the quote is checked
without cvmchain too (:func:`check_quote_with_tpm2_tools`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from packaging.requirements import Requirement

from cloud_sdk import backends
from cloud_sdk.backends import TdxBackend
from cloud_sdk.cli import main
from cloud_sdk.collect import collect_evidence
from cloud_sdk.evidence import Evidence
from cloud_sdk.tpm_device import TpmDevice
from cloud_sdk.tpm_quote import TpmQuote, verify_tpm_quote
from cloud_sdk.verify import verify
from qemu_tests.errors import VMError
from qemu_tests.guest_evidence import parse_pcrread
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
from qemu_tests.swtpm import EK_CERT_DIR, EkCa, manufacture
from qemu_tests.swtpm import Swtpm as QemuSwtpm
from shared_spec.algorithms import alg_from_name
from tests import test_tpm2_swtpm
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


# -- the TPM quote and the AK's certification, as the guest makes them -----------------------

#: TPM_ALG_ID -> hashlib name, for the signature scheme's hash (TPM 2.0 Part 2, 6.3)
_SIG_HASHES = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}


def check_quote_with_tpm2_tools(quote: TpmQuote, nonce: bytes,
                                pcrs: dict[int, dict[int, bytes]], work: Path) -> dict:
    """Check a quote without cvmchain's verifier, and return tpm2_print's TPMS_ATTEST.

    ``tpm2_checkquote`` (tpm2-tools) verifies the AK's signature over the TPMS_ATTEST bytes
    and extraData = ``nonce``, and refuses another nonce; ``tpm2_print`` decodes the
    TPMS_ATTEST, whose pcrDigest must be the signature's hash over ``pcrs`` (``{pcr: {alg:
    value}}``, e.g. ``tpm2_pcrread``'s) in the quoted selection, computed here with hashlib.
    """
    for tool in ("tpm2_checkquote", "tpm2_print"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed (Debian package tpm2-tools)" % tool)
    work.mkdir(parents=True, exist_ok=True)
    attest, sig, ak = work / "attest.bin", work / "signature.bin", work / "ak.pem"
    attest.write_bytes(quote.attest)
    sig.write_bytes(quote.signature)
    ak.write_text(quote.ak_public_pem)

    def checkquote(qualification: bytes) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tpm2_checkquote", "-u", str(ak), "-m", str(attest), "-s",
                               str(sig), "-q", qualification.hex()],
                              capture_output=True, text=True, timeout=60, check=False)

    done = checkquote(nonce)
    assert done.returncode == 0, done.stderr
    other = bytes([nonce[0] ^ 1]) + nonce[1:] if nonce else b"\x01"
    refused = checkquote(other)
    assert refused.returncode != 0 and "nonce" in refused.stderr.lower(), refused.stderr

    printed = subprocess.run(["tpm2_print", "-t", "TPMS_ATTEST", str(attest)],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    doc = yaml.load(printed, Loader=yaml.BaseLoader)  # every scalar a string: hex stays hex
    assert doc["magic"] == "ff544347" and doc["type"] == "8018"  # TPM_GENERATED, ST_ATTEST_QUOTE
    assert bytes.fromhex(doc["extraData"]) == nonce
    _sig_alg, hash_alg = struct.unpack(">HH", quote.signature[:4])
    h = hashlib.new(_SIG_HASHES[hash_alg])
    selections = doc["attested"]["quote"]["pcrSelect"]["pcrSelections"]
    assert len(selections) == len(quote.selection) > 0
    for i in range(len(selections)):
        sel = selections[str(i)]
        alg = alg_from_name(sel["hash"].split("(")[1].rstrip(")"))
        assert alg is not None, sel
        bitmap = bytes.fromhex(sel["pcrSelect"])
        for pcr in range(8 * len(bitmap)):
            if bitmap[pcr // 8] >> (pcr % 8) & 1:
                h.update(pcrs[pcr][alg])
    assert doc["attested"]["quote"]["pcrDigest"] == h.hexdigest()
    return doc


@pytest.fixture(scope="module")
def ek_swtpm() -> Iterator[tuple[test_tpm2_swtpm.Swtpm, EkCa]]:
    """A started swtpm manufactured with EK certificates by a private CA, with every bank
    libtpms allocates, as :func:`qemu_tests.swtpm.manufacture` makes the guest's vTPM."""
    missing = [t for t in ("swtpm", "swtpm_setup", "swtpm_localca", "tpm2_pcrread")
               if shutil.which(t) is None]
    if missing:
        pytest.skip("%s not installed (Debian packages swtpm, swtpm-tools, tpm2-tools)"
                    % ", ".join(missing))
    base = Path(tempfile.mkdtemp(prefix="cvmchain-gq-", dir="/tmp"))  # short: socket paths
    try:
        ca = EkCa(base / "ca")
        manufacture(base / "tpm", ek_ca=ca)
        tpm = test_tpm2_swtpm.Swtpm(base / "tpm")
        tpm.start()
        try:
            with TpmDevice.unix_socket(str(tpm.sock)) as dev:
                dev.startup_clear()
            yield tpm, ca
        finally:
            tpm.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def test_ek_ca_has_no_bundle_before_it_signs(tmp_path: Path) -> None:
    with pytest.raises(VMError) as e:
        EkCa(tmp_path / "ca").bundle()
    assert str(tmp_path / "ca") in str(e.value)


@pytest.mark.swtpm
def test_qemu_swtpm_with_ek_ca_starts_on_a_tpm_with_ek_certificates() -> None:
    """``Swtpm(ek_ca=...)`` (the QEMU harness's swtpm) manufactures before it starts."""
    for tool in ("swtpm", "swtpm_setup", "swtpm_localca"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed (Debian packages swtpm, swtpm-tools)" % tool)
    base = Path(tempfile.mkdtemp(prefix="cvmchain-gq-", dir="/tmp"))  # short: socket paths
    try:
        ca = EkCa(base / "ca")
        with QemuSwtpm(base / "tpm", ek_ca=ca) as tpm:
            assert tpm.pid is not None and tpm.socket_path.exists()
            certs = sorted((base / "tpm" / EK_CERT_DIR).iterdir())
            assert [p.name for p in certs] == ["ek-rsa2048.crt", "ek-secp384r1.crt"]
            issuer = x509.load_pem_x509_certificate(ca.issuer_cert.read_bytes())
            for path in certs:
                assert x509.load_der_x509_certificate(path.read_bytes()).issuer == \
                    issuer.subject
        assert tpm.pid is None
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.swtpm
def test_manufactured_tpm_keeps_every_bank_and_stores_ek_certificates(
        ek_swtpm: tuple[test_tpm2_swtpm.Swtpm, EkCa]) -> None:
    """The option the QEMU test uses: all of libtpms' banks stay active (the guest's
    reference covers them all), and NV holds the certificates swtpm_setup wrote out."""
    tpm, ca = ek_swtpm
    banks = set(parse_pcrread(tpm.tool("tpm2_pcrread"))[0])
    assert {alg_from_name(n) for n in ("sha1", "sha256", "sha384", "sha512")} <= banks
    files = sorted(p.name for p in (tpm.state / EK_CERT_DIR).iterdir())
    assert files == ["ek-rsa2048.crt", "ek-secp384r1.crt"]
    for index, name in (("0x1c00002", "ek-rsa2048.crt"), ("0x1c00016", "ek-secp384r1.crt")):
        nv = tpm.tool("tpm2_nvreadpublic", index)
        size = int(yaml.safe_load(nv)[int(index, 16)]["size"])
        assert size == (tpm.state / EK_CERT_DIR / name).stat().st_size
    issuer = x509.load_pem_x509_certificate(ca.issuer_cert.read_bytes())
    for name in files:
        cert = x509.load_der_x509_certificate((tpm.state / EK_CERT_DIR / name).read_bytes())
        assert cert.issuer == issuer.subject
    assert ca.bundle().count(b"-----BEGIN CERTIFICATE-----") == 2


@pytest.mark.swtpm
def test_tpm_quote_and_ak_certification_on_the_system_python(
        system_python: str, sdk_dir: Path, ek_swtpm: tuple[test_tpm2_swtpm.Swtpm, EkCa],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What the guest does, on its interpreter and tpm2-pytss: `evidence collect --nonce`
    carries a TPM quote; `quote activate` answers this interpreter's `quote challenge`."""
    tpm, ca = ek_swtpm
    done = subprocess.run([system_python, "-I", "-c", "import tpm2_pytss, cryptography; "
                           "print(cryptography.__version__)"], capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode != 0:
        pytest.skip("%s has no tpm2_pytss (Debian: python3-tpm2-pytss): %s"
                    % (system_python, done.stderr.strip()[-300:]))
    nonce = secrets.token_bytes(32)
    root = tmp_path / "root"
    root.mkdir()
    bundle_path = tmp_path / "bundle.json"
    done = _run_sdk(system_python, sdk_dir, "evidence", "collect", "-o", str(bundle_path),
                    "--backend", "tpm", "--root", str(root), "--tpm-device", str(tpm.sock),
                    "--nonce", nonce.hex())
    assert done.returncode == 0, done.stderr[-3000:]
    bundle = Evidence.load(bundle_path)
    assert bundle.nonce == nonce
    pcrread = parse_pcrread(tpm.tool("tpm2_pcrread"))
    assert bundle.registers["pcr"] == pcrread
    quote = TpmQuote.loads(bundle.blobs["tpm_quote"], "the bundle's tpm_quote")
    assert quote.nonce == nonce
    # the quote, checked by tpm2-tools and hashlib against tpm2_pcrread's values
    check_quote_with_tpm2_tools(quote, nonce, pcrread, tmp_path / "tools")
    assert quote.pcrs == {alg: {pcr: pcrread[pcr][alg] for pcr in bank}
                          for alg, bank in quote.pcrs.items()}
    # ... and by the SDK: alone, and as part of the bundle's verdict
    assert verify_tpm_quote(quote, nonce=nonce).passed
    wrong = verify_tpm_quote(quote, nonce=secrets.token_bytes(32))
    assert not wrong.passed and [e["code"] for e in wrong.errors] == ["TPM_QUOTE_NONCE"]
    verdict = verify(bundle)
    assert "TPM_QUOTE_VERIFIED" in [f.code for f in verdict.findings]
    # the EK certificate it carries is the one swtpm_setup stored
    assert quote.ek_certificate_pem is not None
    assert _der(quote.ek_certificate_pem) in [p.read_bytes() for p in
                                              (tpm.state / EK_CERT_DIR).iterdir()]

    # AK certification: challenge here, activation with the guest's interpreter, verify here
    qfile, cfile, rfile, cafile = (tmp_path / n for n in ("q.json", "c.json", "r.json",
                                                            "ek-ca.pem"))
    qfile.write_bytes(bundle.blobs["tpm_quote"])
    cafile.write_bytes(ca.bundle())
    assert main(["quote", "challenge", "--ak-public", str(qfile), "--ek-ca", str(cafile),
                 "-o", str(cfile)]) == 0
    done = _run_sdk(system_python, sdk_dir, "quote", "activate", str(cfile), "-o", str(rfile),
                    "--tpm-device", str(tpm.sock))
    assert done.returncode == 0, done.stderr[-3000:]
    capsys.readouterr()
    assert main(["quote", "verify", str(qfile), "--nonce", nonce.hex(), "--ek-ca", str(cafile),
                 "--activation", str(cfile), str(rfile), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] is True and result["errors"] == []
    assert result["ek"]["chain_valid"] and result["ek"]["public_valid"]
    assert result["activation"]["secret_valid"] and result["activation"]["ak_valid"]
    root_cert = x509.load_pem_x509_certificate(ca.root_cert.read_bytes())
    assert result["ek"]["chain"][-1]["sha256"] == root_cert.fingerprint(hashes.SHA256()).hex()
