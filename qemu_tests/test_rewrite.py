"""The image rewriter end to end: rewrite the test guest image, boot it, verify the chain.

One rewrite (``cvmchain rewrite``, the real command) of the cached guest image per test
session, and a second rewrite of its output (idempotence). Each scenario boots the
twice-rewritten image (or an overlay of it, changed with libguestfs) under QEMU + OVMF
+ swtpm and checks what the verifier says against the reference file the first rewrite
wrote.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from cloud_sdk.evidence import Evidence
from cloud_sdk.reference import Reference
from cloud_sdk.tpm_quote import TpmQuote, verify_tpm_quote
from cloud_sdk.verify import load_reference_manifest, verify
from image_rewriter.debugfs_tree import DebugfsReader
from image_rewriter.initrd import FileSpec, add_files, read_initrd
from image_rewriter.partitions import Partition, read_partitions
from image_rewriter.rootfs_reader import identify_filesystem, native_manifest
from qemu_tests.disk import make_overlay
from qemu_tests.errors import GuestTimeout
from qemu_tests.guest_evidence import collect_guest_evidence, parse_pcrread
from qemu_tests.guestfs_io import mounted
from qemu_tests.harness import QemuVM
from qemu_tests.sdk_drive import build_sdk_archive, guest_cli, guest_install_command
from qemu_tests.swtpm import EK_CERT_DIR, EkCa, manufacture
from shared_spec import agent_events as ae
from shared_spec.algorithms import ALG_SHA256, alg_from_name
from shared_spec.manifest import parse_manifest
from tests.test_guest_sdk import check_quote_with_tpm2_tools

if TYPE_CHECKING:
    from qemu_tests.conftest import VMFactory

pytestmark = pytest.mark.qemu

AGENT_DONE = "cvmchain: leave-initrd recorded"
AGENT_TIMEOUT = 600.0


@dataclass
class Rewritten:
    image: Path
    reference_path: Path
    report: dict
    reference: Reference

    @property
    def manifest(self) -> bytes:
        data = load_reference_manifest(self.reference_path, self.reference)
        assert data is not None
        return data


def run_rewrite(src: Path, out: Path, *extra: str) -> Rewritten:
    """``cvmchain rewrite SRC -o OUT --json`` as a user runs it."""
    argv = [sys.executable, "-m", "cloud_sdk.cli", "rewrite", str(src), "-o", str(out),
            "--json", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    ref_path = Path(report["reference"])
    return Rewritten(out, ref_path, report, Reference.load(ref_path))


@pytest.fixture(scope="session")
def rewrite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rewrite")


@pytest.fixture(scope="session")
def rewritten(guest_image: Path, rewrite_dir: Path) -> Rewritten:
    """The cached guest image rewritten once with the defaults (plus the exports)."""
    out = rewrite_dir / "cvm.qcow2"
    return run_rewrite(guest_image, out, "--keylime-policy", str(rewrite_dir / "keylime.json"),
                       "--cel-json", str(rewrite_dir / "agent.cel.json"))


@pytest.fixture(scope="session")
def rewritten_twice(rewritten: Rewritten, rewrite_dir: Path) -> Rewritten:
    """:func:`rewritten`'s output rewritten again with the same options."""
    return run_rewrite(rewritten.image, rewrite_dir / "cvm2.qcow2")


def _image_state(image: Path) -> dict[str, str]:
    """SHA-256 of the files a rewrite touches outside the measured tree."""
    out = {}
    with mounted(image) as g:
        for name in sorted(g.ls("/boot")):
            if name.startswith(("initrd.img-", "vmlinuz-")):
                out["/boot/" + name] = g.checksum("sha256", "/boot/" + name)
        for path in ("/boot/grub/grub.cfg", "/etc/default/grub.d/cvmchain.cfg",
                     "/etc/cvmchain/agent.conf", "/etc/cvmchain/ima-policy"):
            out[path] = g.checksum("sha256", path) if g.is_file(path) else "absent"
    return out


def test_rewrite_twice_gives_the_same_image_and_reference(
        guest_image: Path, rewritten: Rewritten, rewritten_twice: Rewritten) -> None:
    one, two = (json.loads(json.dumps(r.reference.to_json()))  # copies
                for r in (rewritten, rewritten_twice))
    for doc in (one, two):  # where the files are differs, nothing else
        doc["image"].pop("input")
        doc["image"].pop("output")
        doc["rootfs"].pop("manifest_file")
    assert one == two
    assert rewritten.manifest == rewritten_twice.manifest
    assert rewritten.report["grub_updated"] is True
    assert rewritten_twice.report["grub_updated"] is False, "update-grub ran again"
    assert rewritten_twice.report["kernel_args_added"] == rewritten.report["kernel_args_added"]
    assert _image_state(rewritten.image) == _image_state(rewritten_twice.image)
    # every linux line carries each argument once (checked on the generated grub.cfg)
    with mounted(rewritten_twice.image) as g:
        cfg = g.cat("/boot/grub/grub.cfg")
    for line in cfg.splitlines():
        words = line.split()
        if words[:1] == ["linux"]:
            for arg in rewritten.reference.image["kernel_cmdline_add"]:
                assert words.count(arg) == 1, line


def test_reference_manifest_lists_the_image_files(rewritten: Rewritten) -> None:
    """The reference manifest is the image's tree: spot-check entries against libguestfs."""
    entries = {e.path: e for e in parse_manifest(rewritten.manifest)}
    assert hashlib.sha384(rewritten.manifest).hexdigest() == \
        rewritten.reference.rootfs["manifest_sha384"]
    with mounted(rewritten.image) as g:
        checked = 0
        for path in ("/usr/bin/bash", "/usr/lib/cvmchain/agent/cvmchain_agent.py",
                     "/usr/lib/os-release"):
            assert g.is_file(path) and not g.is_symlink(path), path
            entry = entries[path.encode()]
            assert entry.content == g.checksum("sha384", path), path
            assert entry.size == g.filesize(path), path
            checked += 1
        assert checked == 3
    # the agent installed itself inside the measured tree
    assert b"/usr/share/initramfs-tools/hooks/cvmchain" in entries


def _raw_root(image: Path, out: Path) -> tuple[Path, Partition]:
    """``image`` converted to a raw file, and the partition of its root file system."""
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(out)], check=True)
    parts = [p for p in read_partitions(out)
             if (info := identify_filesystem(out, p)) is not None and info.type == "ext4"]
    assert len(parts) == 1, parts
    return out, parts[0]


def test_reference_manifest_equals_a_full_read_of_the_output(rewritten: Rewritten,
                                                            tmp_path: Path) -> None:
    """The rewriter read the tree while its appliance started and, after writing, read
    again only what it wrote; a full read of the output image gives the same bytes."""
    steps = {s["name"]: s["detail"] for s in rewritten.report["steps"]}
    assert "read while the appliance started" in steps["manifest"], steps
    assert "written paths read again" in steps["manifest"], steps
    raw, part = _raw_root(rewritten.image, tmp_path / "out.raw")
    rootfs = rewritten.reference.rootfs
    full = native_manifest(raw, part, rootfs["include"], rootfs["exclude"], method="debugfs")
    assert full == rewritten.manifest


def _grub_cfg(image: Path, tmp: Path) -> bytes:
    raw, part = _raw_root(image, tmp / (image.stem + ".raw"))
    try:
        return DebugfsReader(raw, part.start, [], []).fs.run(["cat /boot/grub/grub.cfg"])[0]
    finally:
        raw.unlink()


IMA_ASCII = "/sys/kernel/security/ima/ascii_runtime_measurements"


def _boot_and_collect(vm, image: Path) -> tuple[Evidence, list[str]]:
    """Boot ``image``, collect the evidence and the file names the IMA list measured."""
    machine = vm(overlay=image, login=False)
    machine.expect(AGENT_DONE, timeout=AGENT_TIMEOUT)
    machine.wait_for_login()
    evidence = collect_guest_evidence(machine)
    names = machine.check("cut -d' ' -f5- %s" % IMA_ASCII).splitlines()
    machine.shutdown()
    return evidence, names


def _verify(evidence: Evidence, rw: Rewritten, artifacts: Path):
    evidence.save(artifacts / "evidence.json")
    verdict = verify(evidence, rw.reference,
                     load_reference_manifest(rw.reference_path, rw.reference))
    (artifacts / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=1))
    return verdict


GUEST_REF = "/root/sdk/ref.json"
GUEST_BUNDLE = "/root/bundle.json"
#: a generous bound for one CLI run under TCG (Python start-up, rich, the replay)
SDK_TIMEOUT = 600.0


GUEST_CHALLENGE = "/root/challenge.json"
GUEST_RESPONSE = "/root/response.json"


def _pcrread_collect_pcrread(machine: QemuVM, nonce: bytes) -> tuple[dict, dict]:
    """``tpm2_pcrread``, ``cvmchain evidence collect --nonce``, ``tpm2_pcrread`` in the guest,
    until PCR 10 stays put across the collection (IMA measures any new executable or mmap).

    Returns:
        The PCRs read before and after the collection, by the independent reader.
    """
    collect = guest_cli("evidence", "collect", "-o", GUEST_BUNDLE, "--nonce", nonce.hex())
    for _attempt in range(3):
        before = parse_pcrread(machine.check("tpm2_pcrread"))
        machine.check(collect, timeout=SDK_TIMEOUT)
        after = parse_pcrread(machine.check("tpm2_pcrread"))
        if before == after:
            break
    return before, after


def _tpm_with_ek_certificates(vm: VMFactory, ca_dir: Path) -> tuple[EkCa, Path]:
    """Manufacture the vTPM of the next VM ``vm`` boots with EK certificates by a private CA.

    :func:`qemu_tests.harness.boot_vm` keeps a VM's swtpm state in ``<its workdir>/swtpm``
    and starts swtpm on a state it finds there; the factory's N-th VM has the workdir
    ``vm.workdir/vmN``. Every bank stays active, as on the default vTPM.

    Returns:
        The CA, and the directory where swtpm_setup wrote the EK certificates it stored.
    """
    state = vm.workdir / ("vm%d" % (len(vm.vms) + 1)) / "swtpm"
    ca = EkCa(ca_dir)
    manufacture(state, ek_ca=ca)
    return ca, state / EK_CERT_DIR


def _host_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``cvmchain ARGS`` on the host, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "cloud_sdk.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300, check=False)


def _sdk_in_guest(machine: QemuVM, artifacts: Path, rw: Rewritten, nonce: bytes,
                  timings: dict[str, float]) -> Evidence:
    """Issues #4 and #5: `cvmchain evidence collect` and `cvmchain verify --reference` run
    inside the guest, from the SDK archive on the read-only disk, with the guest's own
    python3, python3-cryptography and python3-tpm2-pytss; the bundle comes back to the
    host."""
    machine.check(guest_install_command(), timeout=120)
    # the first run of python3 and its extension modules is measured by IMA (PCR 10):
    # once, so the next reads of the registers agree with each other
    warm, status = machine.run(guest_cli("evidence", "collect", "-o", "/root/warm.json"),
                               timeout=SDK_TIMEOUT)
    (artifacts / "guest-collect-warm.txt").write_text(warm)
    assert status == 0, warm[-3000:]
    started = time.monotonic()
    before, after = _pcrread_collect_pcrread(machine, nonce)
    timings["collect_with_quote"] = time.monotonic() - started
    assert before == after, "PCRs moved while the bundle was collected"

    # verify the bundle in the guest, as text (rich) and as JSON
    text, status = machine.run(guest_cli("verify", "--reference", GUEST_REF,
                                         "--evidence", GUEST_BUNDLE), timeout=SDK_TIMEOUT)
    (artifacts / "guest-verify.txt").write_text(text)
    assert status == 0, text[-3000:]
    assert text.rstrip().endswith("VERIFIED") and "NOT VERIFIED" not in text
    out, status = machine.run(guest_cli("verify", "--reference", GUEST_REF, "--evidence",
                                        GUEST_BUNDLE, "--format", "json") + " 2>/dev/null",
                              timeout=SDK_TIMEOUT)
    assert status == 0, out[-3000:]
    guest_verdict = json.loads(out)
    assert guest_verdict["verified"] is True

    # live: no --evidence, the guest collects and verifies in one go
    live, status = machine.run(guest_cli("verify", "--reference", GUEST_REF, "--format", "json")
                               + " 2>/root/live.err", timeout=SDK_TIMEOUT)
    (artifacts / "guest-verify-live.json").write_text(live)
    assert status == 0, live[-3000:] + machine.check("cat /root/live.err")
    live_verdict = json.loads(live)
    assert live_verdict["verified"] is True
    assert {r["register"] for r in live_verdict["registers"]} == \
        {r["register"] for r in guest_verdict["registers"]}

    # the bundle on the host: the host's verifier agrees with the guest's, finding for finding
    raw = machine.read_file(GUEST_BUNDLE)
    (artifacts / "guest-bundle.json").write_bytes(raw)
    bundle = Evidence.load(artifacts / "guest-bundle.json")
    host_verdict = verify(bundle, rw.reference, load_reference_manifest(rw.reference_path,
                                                                        rw.reference))
    assert host_verdict.verified
    assert json.loads(json.dumps(host_verdict.to_dict())) == guest_verdict
    # its PCRs are tpm2_pcrread's (an independent reader), every PCR of every bank
    assert bundle.registers["pcr"] == after
    _check_guest_quote(bundle, after, nonce, rw, artifacts)
    return bundle


def _check_guest_quote(bundle: Evidence, pcrread: dict, nonce: bytes, rw: Rewritten,
                       artifacts: Path) -> TpmQuote:
    """The bundle's TPM quote, made in the guest with Debian's tpm2-pytss: signed by the
    AK over the nonce and the PCR values ``tpm2_pcrread`` read in the guest."""
    assert bundle.nonce == nonce
    assert any(n.startswith("TPM quote by the AK") for n in bundle.notes), bundle.notes
    quote = TpmQuote.loads(bundle.blobs["tpm_quote"], "the guest bundle's tpm_quote")
    assert quote.nonce == nonce
    # checked by tpm2-tools (signature, extraData) and hashlib (pcrDigest of tpm2_pcrread's)
    check_quote_with_tpm2_tools(quote, nonce, pcrread, artifacts / "quote-tpm2-tools")
    # PCRs 0-7, 10 and 15 of every active bank, equal to tpm2_pcrread's; PCR 15 is the
    # rewriter's prediction
    assert sorted(quote.pcrs) == sorted(pcrread[0])
    for alg, bank in quote.pcrs.items():
        assert sorted(bank) == [0, 1, 2, 3, 4, 5, 6, 7, 10, 15], alg
        assert bank == {pcr: pcrread[pcr][alg] for pcr in bank}, alg
        assert bank[15] == rw.reference.pcr_values[alg], alg
    # the SDK's verdict on it
    res = verify_tpm_quote(quote, nonce=nonce)
    assert res.passed and res.signature_valid and res.nonce_valid and res.pcr_digest_valid, \
        res.errors
    wrong = verify_tpm_quote(quote, nonce=secrets.token_bytes(len(nonce)))
    assert not wrong.passed and [e["code"] for e in wrong.errors] == ["TPM_QUOTE_NONCE"]
    verdict = verify(bundle, rw.reference, load_reference_manifest(rw.reference_path,
                                                                   rw.reference))
    assert "TPM_QUOTE_VERIFIED" in [f.code for f in verdict.findings]
    return quote


def _certify_ak(machine: QemuVM, bundle: Evidence, nonce: bytes, ca: EkCa, ek_certs: Path,
                artifacts: Path) -> dict:
    """The quote's AK lives in the vTPM whose EK the CA certified: `quote challenge` on the
    host, `quote activate` in the guest, `quote verify --ek-ca --activation` on the host."""
    qfile, cafile = artifacts / "guest-quote.json", artifacts / "ek-ca.pem"
    cfile, rfile = artifacts / "challenge.json", artifacts / "response.json"
    qfile.write_bytes(bundle.blobs["tpm_quote"])
    cafile.write_bytes(ca.bundle())
    quote = TpmQuote.load(qfile)
    # the EK certificate the guest read from NV is one swtpm_setup stored there
    assert quote.ek_certificate_pem is not None and quote.ek_template == "rsa2048"
    der = x509.load_pem_x509_certificate(quote.ek_certificate_pem.encode()) \
        .public_bytes(serialization.Encoding.DER)
    assert der == (ek_certs / "ek-rsa2048.crt").read_bytes()

    done = _host_cli("quote", "challenge", "--ak-public", qfile, "--ek-ca", cafile, "-o", cfile)
    assert done.returncode == 0, done.stderr[-3000:]
    text = base64.b64encode(cfile.read_bytes()).decode()
    machine.check("printf '%%s' %s | base64 -d > %s" % (shlex.quote(text), GUEST_CHALLENGE))
    out, status = machine.run(guest_cli("quote", "activate", GUEST_CHALLENGE, "-o",
                                        GUEST_RESPONSE), timeout=SDK_TIMEOUT)
    (artifacts / "guest-activate.txt").write_text(out)
    assert status == 0, out[-3000:]
    rfile.write_bytes(machine.read_file(GUEST_RESPONSE))

    done = _host_cli("quote", "verify", qfile, "--nonce", nonce.hex(), "--ek-ca", cafile,
                     "--activation", cfile, rfile, "--format", "json")
    (artifacts / "quote-verify.json").write_text(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["passed"] is True and result["errors"] == []
    assert result["signature_valid"] and result["nonce_valid"] and result["pcr_digest_valid"]
    assert result["ek"]["chain_valid"] and result["ek"]["public_valid"]
    assert result["activation"]["secret_valid"] and result["activation"]["ak_valid"]
    root = x509.load_pem_x509_certificate(ca.root_cert.read_bytes())
    assert result["ek"]["chain"][-1]["sha256"] == root.fingerprint(hashes.SHA256()).hex()
    # a response whose secret is not the challenge's fails the activation check
    forged = json.loads(rfile.read_bytes())
    forged["secret"] = secrets.token_bytes(len(bytes.fromhex(forged["secret"]))).hex()
    (artifacts / "response-forged.json").write_text(json.dumps(forged))
    done = _host_cli("quote", "verify", qfile, "--nonce", nonce.hex(), "--ek-ca", cafile,
                     "--activation", cfile, artifacts / "response-forged.json",
                     "--format", "json")
    assert done.returncode == 1, done.stderr[-3000:]
    assert json.loads(done.stdout)["activation"]["secret_valid"] is False
    return result


def test_rewritten_image_boots_and_verifies(vm, artifacts_dir: Path, tmp_path: Path,
                                            rewritten: Rewritten,
                                            rewritten_twice: Rewritten) -> None:
    """Scenarios 1, 5 and 6: the twice-rewritten image boots, and everything the agent
    extends equals the first rewrite's predictions; the SDK collects and verifies the
    evidence inside the guest too, with a TPM quote over a fresh nonce, and agrees with the
    host; the quote's AK is certified through the vTPM's EK certificate."""
    image = make_overlay(rewritten_twice.image, artifacts_dir.parent / "baseline.qcow2")
    manifest_name = str(rewritten.reference.rootfs["manifest_file"])
    sdk = build_sdk_archive(artifacts_dir.parent / "sdk.tar", {
        "ref.json": rewritten.reference_path,
        manifest_name: rewritten.reference_path.parent / manifest_name,
    })
    timings: dict[str, float] = {}
    started = time.monotonic()
    ca, ek_certs = _tpm_with_ek_certificates(vm, tmp_path / "ek-ca")
    timings["manufacture_ek"] = time.monotonic() - started
    machine = vm(overlay=image, login=False, drives=[sdk.drive()])
    machine.expect(AGENT_DONE, timeout=AGENT_TIMEOUT)
    machine.wait_for_login()
    evidence = collect_guest_evidence(machine)
    ima_names = machine.check("cut -d' ' -f5- %s" % IMA_ASCII).splitlines()
    nonce = secrets.token_bytes(32)
    bundle = _sdk_in_guest(machine, artifacts_dir, rewritten, nonce, timings)
    started = time.monotonic()
    _certify_ak(machine, bundle, nonce, ca, ek_certs, artifacts_dir)
    timings["certify_ak"] = time.monotonic() - started
    machine.shutdown()
    (artifacts_dir / "timings.json").write_text(json.dumps(timings, indent=1))
    verdict = _verify(evidence, rewritten, artifacts_dir)
    assert verdict.verified, [f.to_dict() for f in verdict.findings]
    # the guest's bundle and the console's reads hold the same logs
    for name in ("tpm_eventlog", "agent_tpm_log", "rootfs_manifest"):
        assert bundle.blobs[name] == evidence.blobs[name], name

    # PCR 15 as tpm2_pcrread reads it equals the reference's prediction, every bank
    live = evidence.registers["pcr"]
    ref = rewritten.reference
    assert ref.pcr_index == 15
    banks = set(live[15])
    assert ALG_SHA256 in banks
    for alg in banks:
        assert live[15][alg] == ref.pcr_values[alg], alg

    # the agent's log: its events are the reference's, in order
    from shared_spec.tcg_log import parse_tcg_log

    log = parse_tcg_log(evidence.blobs["agent_tpm_log"])
    descs = [ae.decode_event_data(e.data) for e in log.events if e.event_type != 3]
    assert descs == [e.descriptor for e in ref.events]

    # the IMA policy the kernel holds is the one measured. Debian's kernel cannot read
    # it back (no CONFIG_IMA_READ_POLICY), so look at what it measures: executables
    # (BPRM_CHECK, in the policy) yes, files root merely read (the built-in tcb policy's
    # FILE_CHECK rule) no.
    assert ref.ima_policy is not None and "func=BPRM_CHECK" in ref.ima_policy["text"]
    assert ima_names[0].startswith("boot_aggregate")
    assert "/usr/bin/bash" in ima_names
    assert "/etc/passwd" not in ima_names and "/etc/shadow" not in ima_names
    # ... and the IMA list replays to PCR 10
    pcr10 = [r for r in verdict.chain.registers if r.index == 10 and r.index_kind == "pcr"]
    assert pcr10 and all(r.matches for r in pcr10)


def test_tpm2_eventlog_replays_the_agent_log(vm, artifacts_dir: Path,
                                             rewritten: Rewritten) -> None:
    """Debian's tpm2_eventlog (an independent parser) replays the agent's log to the
    reference's PCR 15 values."""
    image = make_overlay(rewritten.image, artifacts_dir.parent / "eventlog.qcow2")
    machine = vm(overlay=image, login=False)
    machine.expect(AGENT_DONE, timeout=AGENT_TIMEOUT)
    machine.wait_for_login()
    out = machine.check("tpm2_eventlog /run/cvmchain/tpm.log")
    live = parse_pcrread(machine.check("tpm2_pcrread"))
    (artifacts_dir / "tpm2_eventlog.yaml").write_text(out)
    replayed = parse_pcrread(out[out.index("pcrs:"):])
    assert replayed[15], out[-2000:]
    for alg, value in replayed[15].items():
        assert value == rewritten.reference.pcr_values[alg]
        assert value == live[15][alg]


def _flip_byte(g, path: str) -> None:
    data = bytearray(g.read_file(path))
    data[len(data) // 2] ^= 0x01
    mode = g.statns(path)["st_mode"] & 0o7777
    g.write(path, bytes(data))
    g.chmod(mode, path)


TAMPERED = "/usr/share/doc/bash/README"


def test_tampered_usr_file_is_named(vm, artifacts_dir: Path, rewritten: Rewritten) -> None:
    """Scenario 2: one byte of one file under /usr changed offline."""
    image = make_overlay(rewritten.image, artifacts_dir.parent / "tampered.qcow2")
    with mounted(image, readonly=False) as g:
        target = TAMPERED if g.is_file(TAMPERED) else "/usr/share/common-licenses/GPL-3"
        _flip_byte(g, target)
    evidence, _ = _boot_and_collect(vm, image)
    verdict = _verify(evidence, rewritten, artifacts_dir)
    assert not verdict.verified
    codes = {f.code for f in verdict.findings}
    assert "ROOTFS_DIGEST_MISMATCH" in codes
    changed = [f for f in verdict.findings if f.code == "ROOTFS_FILE_CHANGED"]
    assert [f.message for f in changed] == ["changed: %s" % target]
    main = next(f for f in verdict.findings if f.code == "ROOTFS_DIGEST_MISMATCH")
    assert target in main.message
    # nothing else differs: every register replays its log; PCR 15 is off the
    # prediction only because the rootfs event is
    assert "REGISTER_MISMATCH" not in codes
    assert {c for c in codes if c.startswith("AGENT_")} == {"AGENT_REGISTER_PREDICTION"}


def _replace_in_initrd(g, files: dict[str, bytes]) -> None:
    for name in g.ls("/boot"):
        if not name.startswith("initrd.img-"):
            continue
        path = "/boot/" + name
        initrd = read_initrd(g.read_file(path))
        g.write(path, add_files(initrd, {k: FileSpec(content=v, mode=0o644)
                                         for k, v in files.items()}, method="merge"))


def test_tampered_ima_policy_fails_on_its_digest(vm, artifacts_dir: Path,
                                                 rewritten: Rewritten) -> None:
    """Scenario 3: the IMA policy the initrd loads is changed after rewriting."""
    image = make_overlay(rewritten.image, artifacts_dir.parent / "policy.qcow2")
    assert rewritten.reference.ima_policy is not None
    policy = rewritten.reference.ima_policy["text"].encode()
    # one more rule, still valid: whatever root reads is measured too
    evil = policy + b"measure func=FILE_CHECK mask=MAY_READ uid=0\n"
    with mounted(image, readonly=False) as g:
        g.write("/etc/cvmchain/ima-policy", evil)
        _replace_in_initrd(g, {"etc/cvmchain/ima-policy": evil})
    evidence, ima_names = _boot_and_collect(vm, image)
    # the changed policy is what the kernel enforces: files root reads are measured now
    assert "/etc/passwd" in ima_names
    verdict = _verify(evidence, rewritten, artifacts_dir)
    assert not verdict.verified
    mismatch = [f for f in verdict.findings if f.code == "IMA_POLICY_MISMATCH"]
    assert mismatch, [f.to_dict() for f in verdict.findings]
    assert hashlib.sha384(evil).hexdigest()[:16] in json.dumps([f.to_dict() for f in mismatch])


def test_no_vtpm_halts_the_boot(vm, artifacts_dir: Path, rewritten: Rewritten) -> None:
    """Scenario 4a: without a vTPM (and no TDX) the agent halts the boot in the initrd."""
    image = make_overlay(rewritten.image, artifacts_dir.parent / "notpm.qcow2")
    machine = vm(overlay=image, tpm=False, login=False)
    machine.expect("cvmchain: no root of trust", timeout=AGENT_TIMEOUT)
    machine.expect("boot halted", timeout=120)
    with pytest.raises(GuestTimeout):
        machine.expect("login:", timeout=30)
    assert "Hostname set to" not in machine.console_tail(200)


def test_no_vtpm_with_on_error_continue_boots_and_fails_verification(
        vm, artifacts_dir: Path, rewritten: Rewritten) -> None:
    """Scenario 4b: on_error=continue boots on unmeasured; the verifier says so."""
    image = make_overlay(rewritten.image, artifacts_dir.parent / "continue.qcow2")
    conf = rewritten.reference.agent_config.replace("on_error=halt", "on_error=continue")
    assert conf != rewritten.reference.agent_config
    with mounted(image, readonly=False) as g:
        _replace_in_initrd(g, {"etc/cvmchain/agent.conf": conf.encode()})
    machine = vm(overlay=image, tpm=False, login=False)
    machine.expect("cvmchain: no root of trust", timeout=AGENT_TIMEOUT)
    machine.expect("booting unmeasured", timeout=AGENT_TIMEOUT)
    machine.wait_for_login()
    evidence = collect_guest_evidence(machine)
    verdict = _verify(evidence, rewritten, artifacts_dir)
    assert not verdict.verified
    assert verdict.findings and verdict.findings[0].severity == "error"


def test_rejected_ima_rule_with_on_error_continue_is_an_error_event(
        vm, artifacts_dir: Path, rewritten: Rewritten) -> None:
    """Scenario 4c: with a vTPM and on_error=continue, a step that fails (the kernel rejects
    an IMA rule) becomes an error event in the log and the register; the boot goes on, the
    log still replays to the live PCR 15, and the verifier reports that event."""
    image = make_overlay(rewritten.image, artifacts_dir.parent / "errorevent.qcow2")
    conf = rewritten.reference.agent_config.replace("on_error=halt", "on_error=continue")
    assert rewritten.reference.ima_policy is not None
    policy = rewritten.reference.ima_policy["text"].encode()
    bad = policy + b"measure func=NO_SUCH_HOOK\n"
    bad_line = bad.decode().count("\n")
    with mounted(image, readonly=False) as g:
        _replace_in_initrd(g, {"etc/cvmchain/agent.conf": conf.encode(),
                               "etc/cvmchain/ima-policy": bad})
    machine = vm(overlay=image, login=False)
    machine.expect(AGENT_DONE, timeout=AGENT_TIMEOUT)
    machine.wait_for_login()
    evidence = collect_guest_evidence(machine)
    machine.shutdown()
    verdict = _verify(evidence, rewritten, artifacts_dir)
    assert not verdict.verified
    errors = [f for f in verdict.findings if f.code == "AGENT_ERROR_EVENT"]
    assert len(errors) == 1, [f.to_dict() for f in verdict.findings]
    assert "cvmchain:error:ima-policy:" in errors[0].message
    assert "line %d" % bad_line in errors[0].message
    # the error event is in the register too: the agent's log replays to the live PCR 15
    pcr15 = [r for r in verdict.chain.registers if r.index == 15 and r.index_kind == "pcr"]
    assert pcr15 and all(r.matches for r in pcr15)
    assert "REGISTER_MISMATCH" not in {f.code for f in verdict.findings}
    # the rest of the sequence ran: the rootfs event equals the reference's
    from shared_spec.tcg_log import parse_tcg_log

    log = parse_tcg_log(evidence.blobs["agent_tpm_log"])
    descs = [ae.decode_event_data(e.data) for e in log.events if e.event_type != 3]
    rootfs = [e.descriptor for e in rewritten.reference.events
              if e.descriptor.startswith("cvmchain:rootfs:")]
    assert rootfs and rootfs[0] in descs
    assert descs[-1] == ae.LEAVE_INITRD


def test_keylime_and_cel_exports(rewritten: Rewritten, rewrite_dir: Path) -> None:
    """Keylime's policy lists every measured regular file with its ima_hash (sha256)
    digest; the CEL-JSON records are the predicted events."""
    keylime = json.loads((rewrite_dir / "keylime.json").read_text())
    files = {e.path.decode() for e in parse_manifest(rewritten.manifest) if e.type == "f"}
    assert set(keylime["digests"]) == files
    with mounted(rewritten.image) as g:
        for path in ("/usr/bin/bash", "/usr/lib/cvmchain/agent/cvmchain_agent.py"):
            assert keylime["digests"][path] == [g.checksum("sha256", path)]
    cel = json.loads((rewrite_dir / "agent.cel.json").read_text())
    ours = [r for r in cel if r.get("pcr") == 15]
    assert len(ours) == len(rewritten.reference.events)
    for rec, ev in zip(ours, rewritten.reference.events, strict=True):
        for d in rec["digests"]:
            alg = alg_from_name(d["hashAlg"])
            assert alg is not None
            assert bytes.fromhex(d["digest"]) == ev.digests[alg]


def test_manifest_file_is_gzip(rewritten: Rewritten) -> None:
    path = rewritten.reference_path.parent / rewritten.reference.rootfs["manifest_file"]
    assert gzip.decompress(path.read_bytes()) == rewritten.manifest
    assert re.fullmatch(r"[0-9a-f]{96}", rewritten.reference.rootfs["manifest_sha384"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_rewrite_leaves_nothing(guest_image: Path, tmp_path: Path,
                                            sig: signal.Signals) -> None:
    """Atomicity: interrupted once the appliance is working on the copy, the rewrite
    exits 130, the input is unchanged and the output directory is as it was."""
    before = _sha256(guest_image)
    out = tmp_path / "out.qcow2"
    # SIGINT at its default in the child, as in a terminal: a shell without job control
    # starts background jobs (a CI runner's, for one) with SIGINT ignored, and Python then
    # never turns it into KeyboardInterrupt
    proc = subprocess.Popen([sys.executable, "-m", "cloud_sdk.cli", "rewrite", str(guest_image),
                             "-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.qcow2.cvmchain-*/disk.raw")):
        assert proc.poll() is None and time.monotonic() < deadline, "no work copy appeared"
        time.sleep(0.2)
    time.sleep(15)  # the appliance is launching / working on the copy
    assert proc.poll() is None, "the rewrite finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "nothing was written" in err
    assert list(tmp_path.iterdir()) == []
    assert _sha256(guest_image) == before
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftover.stdout == "", "processes left behind: " + leftover.stdout


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def test_appliance_initrd_mode_boots_and_verifies(vm, artifacts_dir: Path, guest_image: Path,
                                                  tmp_path: Path, rewritten: Rewritten) -> None:
    """--initrd-mode appliance (update-initramfs in the appliance, through the hook the
    rewriter installed) gives an initrd that runs the agent too, with the same reference."""
    rw = run_rewrite(guest_image, tmp_path / "appliance.qcow2", "--initrd-mode", "appliance")
    assert rw.report["steps"][[s["name"] for s in rw.report["steps"]].index("initrd")][
        "detail"].startswith("update-initramfs")
    # the appliance ran the guest's own update-grub; the host mode edited the 10_linux
    # entries of the image's grub-mkconfig output: the same bytes, but for GRUB's disk
    # number hints, which grub-probe derives from the appliance's disk enumeration (the
    # edit keeps the image's own; search --fs-uuid finds the root either way)
    host_steps = {s["name"]: s["detail"] for s in rewritten.report["steps"]}
    assert "grub.cfg edited" in host_steps["initrd+grub"], host_steps
    generated, edited = (_grub_cfg(r.image, tmp_path) for r in (rw, rewritten))
    hints = re.compile(rb"\b(hd|ahci)\d+,")
    assert hints.sub(rb"\1N,", generated) == hints.sub(rb"\1N,", edited)
    assert generated.count(b"\n") == edited.count(b"\n")
    assert b"ima_hash=sha256" in edited
    assert [e.descriptor for e in rw.reference.events] == \
        [e.descriptor for e in rewritten.reference.events]
    evidence, _ = _boot_and_collect(vm, make_overlay(rw.image, tmp_path / "boot.qcow2"))
    verdict = _verify(evidence, rw, artifacts_dir)
    assert verdict.verified, [f.to_dict() for f in verdict.findings]


def test_identity_mode_without_policy_boots_and_verifies(vm, artifacts_dir: Path,
                                                         guest_image: Path,
                                                         guest_image_info, tmp_path: Path) -> None:
    """--rootfs-mode identity: the agent measures the root file system's type, UUID, label
    and partition UUID, as the rewriter predicted them from the image."""
    rw = run_rewrite(guest_image, tmp_path / "identity.qcow2", "--rootfs-mode", "identity",
                     "--ima-policy-preset", "none")
    desc = rw.reference.events[2].descriptor
    assert desc.startswith("cvmchain:rootfs:identity:ext4:%s:" % guest_image_info.root_fs_uuid)
    assert rw.reference.events[1].descriptor == ae.IMA_POLICY_NONE
    assert rw.report["kernel_args_added"] == []
    evidence, _ = _boot_and_collect(vm, make_overlay(rw.image, tmp_path / "boot.qcow2"))
    verdict = _verify(evidence, rw, artifacts_dir)
    assert verdict.verified, [f.to_dict() for f in verdict.findings]
    assert evidence.registers["pcr"][15][ALG_SHA256] == rw.reference.pcr_values[ALG_SHA256]
