"""shared_spec.tpm2 and cloud_sdk.tpm_device against a real TPM: swtpm (libtpms).

Each test gets its own swtpm on a unix socket (state in a fresh directory, so
libtpms manufactures a TPM with its default banks), started without firmware:
the fixture sends TPM2_Startup(CLEAR) through our code. tpm2-tools reads the
same TPM independently through the TSS's swtpm TCTI: ``swtpm:path=SOCK``,
whose control channel is ``SOCK.ctrl`` (tpm2-tss 3.2).

Expected PCR values are computed here with hashlib: new = H(old || digest).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cloud_sdk.backends import SocketPerCommand
from cloud_sdk.errors import BackendError
from cloud_sdk.tpm_device import TpmDevice
from shared_spec import tpm2
from shared_spec.algorithms import ALG_SHA256, ALG_SHA384, alg_from_name, alg_name
from shared_spec.tpm2_rc import TPM_RC_INITIALIZE, TPM_RC_LOCALITY, TPM_RC_VALUE

pytestmark = pytest.mark.swtpm

SWTPM = shutil.which("swtpm")
SWTPM_SETUP = shutil.which("swtpm_setup")
TPM2_TOOLS = shutil.which("tpm2_pcrread") and shutil.which("tpm2_getcap")
START_SECONDS = 10.0


class Swtpm:
    """A running ``swtpm socket --tpm2`` (command channel ``sock``, control ``sock.ctrl``)."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.sock = state / "cmd.sock"
        self.ctrl = state / "cmd.sock.ctrl"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def tcti(self) -> str:
        return "swtpm:path=%s" % self.sock

    def start(self) -> None:
        assert SWTPM is not None
        argv = [SWTPM, "socket", "--tpm2",
                "--server", "type=unixio,path=%s" % self.sock,
                "--ctrl", "type=unixio,path=%s" % self.ctrl,
                "--tpmstate", "dir=%s" % self.state,
                "--log", "file=%s,level=1" % (self.state / "swtpm.log"),
                "--flags", "not-need-init"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_SECONDS
        while not (self.sock.exists() and self.ctrl.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.state / "swtpm.log")
                text = log.read_text(errors="replace") if log.exists() else ""
                self.stop()
                pytest.fail("swtpm did not create %s: %s" % (self.sock, text[-2000:]))
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def tool(self, *argv: str) -> str:
        """Run a tpm2-tools program against this TPM; its stdout."""
        env = dict(os.environ, TPM2TOOLS_TCTI=self.tcti)
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=20,
                              check=False)
        assert done.returncode == 0, "%s: %s" % (" ".join(argv), done.stderr)
        return done.stdout


def _swtpm(pcr_banks: str | None = None) -> Iterator[Swtpm]:
    if SWTPM is None:
        pytest.skip("swtpm is not installed (Debian package swtpm)")
    # A short directory: a unix socket path must fit in 108 bytes.
    state = Path(tempfile.mkdtemp(prefix="cvmchain-swtpm-", dir="/tmp"))
    tpm = Swtpm(state)
    try:
        if pcr_banks is not None:
            if SWTPM_SETUP is None:
                pytest.skip("swtpm_setup is not installed (Debian package swtpm-tools)")
            subprocess.run([SWTPM_SETUP, "--tpm2", "--tpmstate", str(state), "--overwrite",
                            "--pcr-banks", pcr_banks], check=True, capture_output=True,
                           timeout=60)
        tpm.start()
        yield tpm
    finally:
        tpm.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def raw_swtpm() -> Iterator[Swtpm]:
    """A swtpm that no TPM2_Startup has been sent to."""
    yield from _swtpm()


@pytest.fixture
def swtpm(raw_swtpm: Swtpm) -> Swtpm:
    """A started swtpm (TPM2_Startup(CLEAR) sent through our code)."""
    with TpmDevice.unix_socket(str(raw_swtpm.sock)) as dev:
        dev.startup_clear()
    return raw_swtpm


@pytest.fixture
def tpm(swtpm: Swtpm) -> Iterator[TpmDevice]:
    yield SocketPerCommand(str(swtpm.sock))


def _needs_tools() -> None:
    if not TPM2_TOOLS:
        pytest.skip("tpm2-tools is not installed (Debian package tpm2-tools)")


def _tools_banks(swtpm: Swtpm) -> list[tuple[int, set[int]]]:
    """``tpm2_getcap pcrs`` as [(alg, PCRs)]."""
    doc = yaml.safe_load(swtpm.tool("tpm2_getcap", "pcrs"))
    out = []
    for entry in doc["selected-pcrs"]:
        ((name, pcrs),) = entry.items()
        alg = alg_from_name(name)
        assert alg is not None, name
        out.append((alg, set(pcrs or [])))
    return out


def _tools_pcrread(swtpm: Swtpm, selection: str) -> dict[int, dict[int, bytes]]:
    """``tpm2_pcrread SELECTION`` as {alg: {pcr: value}}."""
    doc = yaml.safe_load(swtpm.tool("tpm2_pcrread", selection))
    out: dict[int, dict[int, bytes]] = {}
    for name, pcrs in doc.items():
        alg = alg_from_name(name)
        assert alg is not None, name
        # YAML reads 0x... as an int: turn it back into the digest bytes.
        size = hashlib.new(name).digest_size
        out[alg] = {int(p): int(v).to_bytes(size, "big") for p, v in pcrs.items()}
    return out


def test_startup_is_needed_and_happens_once(raw_swtpm: Swtpm) -> None:
    with TpmDevice.unix_socket(str(raw_swtpm.sock)) as dev:
        with pytest.raises(tpm2.TpmResponseError) as before:
            dev.get_active_banks()
        assert before.value.rc == TPM_RC_INITIALIZE
        dev.startup_clear()
        with pytest.raises(tpm2.TpmResponseError) as again:
            dev.startup_clear()
        assert again.value.rc == TPM_RC_INITIALIZE
        assert str(again.value) == ("TPM2_Startup failed: TPM_RC_INITIALIZE (0x100): TPM not "
                                    "initialized by TPM2_Startup, or already initialized")


def test_active_banks_match_tpm2_getcap(swtpm: Swtpm, tpm: TpmDevice) -> None:
    _needs_tools()
    ours = tpm.pcr_banks()
    theirs = _tools_banks(swtpm)
    assert ours == theirs
    assert tpm.get_active_banks() == [alg for alg, pcrs in theirs if pcrs]
    assert ALG_SHA256 in tpm.get_active_banks()


@pytest.fixture
def two_bank_swtpm() -> Iterator[Swtpm]:
    """A swtpm manufactured with only sha256 and sha384 allocated (swtpm_setup)."""
    yield from _swtpm("sha256,sha384")


def test_only_allocated_banks_are_active(two_bank_swtpm: Swtpm) -> None:
    dev = SocketPerCommand(str(two_bank_swtpm.sock))
    dev.startup_clear()
    banks = dev.pcr_banks()
    assert dev.get_active_banks() == [ALG_SHA256, ALG_SHA384]
    assert [alg for alg, pcrs in banks if not pcrs]  # implemented, not allocated
    if TPM2_TOOLS:
        assert banks == _tools_banks(two_bank_swtpm)
    # asking for a bank that is not allocated: the TPM returns nothing for it
    inactive = next(alg for alg, pcrs in banks if not pcrs)
    with pytest.raises(tpm2.TpmProtocolError) as e:
        dev.pcr_read([1], [inactive])
    assert "%s:1" % alg_name(inactive) in str(e.value)


def test_pcr_extend_every_bank_once(swtpm: Swtpm, tpm: TpmDevice) -> None:
    _needs_tools()
    banks = tpm.get_active_banks()
    assert len(banks) >= 2
    before = tpm.pcr_read([15], banks)
    names = {alg: alg_name(alg) for alg in banks}
    event = b"cvmchain:test:pcr15"
    digests = {alg: hashlib.new(names[alg], event).digest() for alg in banks}
    tpm.pcr_extend(15, digests)
    want = {alg: {15: hashlib.new(names[alg], before[alg][15] + digests[alg]).digest()}
            for alg in banks}
    selection = "+".join("%s:15" % names[alg] for alg in banks)
    assert _tools_pcrread(swtpm, selection) == want
    assert tpm.pcr_read([15], banks) == want


def test_pcr_read_every_pcr_of_every_bank(swtpm: Swtpm, tpm: TpmDevice) -> None:
    _needs_tools()
    banks = tpm.get_active_banks()
    digests = {alg: hashlib.new(alg_name(alg), b"x").digest() for alg in banks}
    for pcr in (0, 7, 16, 23):
        tpm.pcr_extend(pcr, digests)
    # one PCR_Read returns at most 8 values: 24 PCRs x every bank needs several
    first = tpm2.parse_pcr_read_response(tpm.transact(tpm2.pcr_read(banks, list(range(24)))))
    assert sum(len(p) for _, p in first[1]) <= tpm2.PCR_READ_MAX_DIGESTS
    ours = tpm.pcr_read(list(range(24)), banks)
    selection = "+".join("%s:all" % alg_name(alg) for alg in banks)
    assert ours == _tools_pcrread(swtpm, selection)
    for alg in banks:
        assert ours[alg][23] != bytes(len(ours[alg][23]))


def test_refused_extends_are_decoded(tpm: TpmDevice) -> None:
    banks = tpm.get_active_banks()
    digests = {alg: bytes(hashlib.new(alg_name(alg)).digest_size) for alg in banks}
    # PCR 17-22 are for the DRTM localities; this socket is locality 0
    with pytest.raises(tpm2.TpmResponseError) as e:
        tpm.pcr_extend(17, digests)
    assert e.value.rc == TPM_RC_LOCALITY
    assert str(e.value) == ("TPM2_PCR_Extend failed: TPM_RC_LOCALITY (0x907): the command is "
                            "not allowed at the current locality")
    # no PCR 24: the handle is out of range
    with pytest.raises(tpm2.TpmResponseError) as e:
        tpm.pcr_extend(24, digests)
    assert e.value.info.base == TPM_RC_VALUE and e.value.info.handle == 1
    assert "TPM_RC_VALUE (0x184)" in str(e.value) and str(e.value).endswith("handle 1")
    # a bank the TPM does not implement, in PCR_Read's selection (parameter 1)
    with pytest.raises(tpm2.TpmResponseError) as e:
        tpm2.parse_pcr_read_response(tpm.transact(tpm2.pcr_read([0x0027], [0])))
    assert e.value.name == "TPM_RC_HASH" and e.value.info.parameter == 1
    # PCR 0 may be extended at locality 0
    tpm.pcr_extend(0, digests)


def test_rc_names_agree_with_tpm2_rc_decode() -> None:
    if not shutil.which("tpm2_rc_decode"):
        pytest.skip("tpm2-tools is not installed (Debian package tpm2-tools)")
    for rc in (0x100, 0x101, 0x907, 0x922, 0x2c4, 0x1c4, 0x184, 0x98e, 0x9a2, 0x1d5, 0x143):
        out = subprocess.run(["tpm2_rc_decode", "0x%x" % rc], capture_output=True, text=True,
                             check=True).stdout
        info = tpm2.decode_rc(rc)
        if info.parameter is not None:
            assert "parameter(%d)" % info.parameter in out
        elif info.handle is not None:
            assert "handle(%d)" % info.handle in out
        elif info.session is not None:
            assert "session(%d)" % info.session in out
        elif info.kind == "warning":
            assert "warn(2.0)" in out
        else:
            assert "error(2.0)" in out


def test_get_random(tpm: TpmDevice) -> None:
    data = tpm.get_random(32)
    assert len(data) == 32 and data != bytes(32)


def test_device_errors_name_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "tpmrm0"
    with pytest.raises(BackendError) as e:
        TpmDevice.open(str(missing))
    assert str(e.value).startswith("open %s: no such device" % missing)
    with pytest.raises(BackendError) as e:
        TpmDevice.unix_socket(str(tmp_path / "none.sock"))
    assert "none.sock" in str(e.value)

    def denied(path: str, flags: int) -> int:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "open", denied)  # we run as root here: no file would refuse
    with pytest.raises(BackendError) as e:
        TpmDevice.open("/dev/tpmrm0")
    assert str(e.value) == "open /dev/tpmrm0: permission denied (needs group tss or root)"
