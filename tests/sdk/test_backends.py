"""cloud_sdk.backends: TPM against a real swtpm, TDX against a mock of the TDX guest's kernel files.

There is no TDX hardware here. :class:`FakeTdxSysfs` is a MOCK OF TDX HARDWARE
(and of the kernel's view of it): a directory laid out as Linux lays out
``/sys/devices/virtual/misc/tdx_guest/measurements`` (tsm-mr, Linux 6.16),
``/sys/firmware/acpi/tables/{,data/}CCEL`` and a configfs-tsm report entry,
plus a replacement for the ``TDX_CMD_GET_REPORT0`` ioctl. Every value it
serves comes from the real TDX evidence of cc-trusted-api
(``../shared/fixtures/tdx-cc-trusted-api``): MRTD and RTMRs from its quote,
the CCEL log area and IMA list of the same boot, so replaying that CCEL
must reproduce the RTMRs the mock serves.

The swtpm tests play firmware: they extend a real firmware log's digests into
a fresh swtpm and compare with the PCRs tpm2_eventlog computed for that log
(the fixture's ``.yaml``) and with ``tpm2_pcrread``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cloud_sdk import backends
from cloud_sdk.backends import (
    ConcurrentReportError,
    OfflineBackend,
    TdxBackend,
    TpmBackend,
    detect_backend,
    report_data_for,
)
from cloud_sdk.errors import BackendError
from cloud_sdk.evidence import Evidence
from cloud_sdk.tpm_device import TpmDevice
from shared_spec import tdx_report
from shared_spec.algorithms import ALG_SHA256, ALG_SHA384, alg_from_name, alg_name
from shared_spec.ccel import CcelTable
from shared_spec.tcg_log import parse_tcg_log
from shared_spec.tdx_quote import parse_quote
from tests.fixtures import fixture
from tests.test_tpm2_swtpm import TPM2_TOOLS, Swtpm, _swtpm, _tools_pcrread

TDX = "tdx-cc-trusted-api"
GCE_LOG = "event-gce-ubuntu-2104-log.bin"


# ------------------------------------------------------------------ mock of TDX hardware


class FakeTdxSysfs:
    """MOCK OF TDX HARDWARE: a TDX guest's kernel files under ``root``, from real evidence.

    Serves the fixture quote's MRTD and RTMR0-3 as the tsm-mr files
    (``mrtd:sha384``, ``rtmr<n>:sha384``: raw 48 bytes each), the fixture
    CCEL as ``/sys/firmware/acpi/tables/data/CCEL`` with an ACPI ``CCEL``
    table whose LAML is its length, the fixture IMA list as the ascii IMA
    list, and a TDREPORT through :meth:`ioctl`. ``start_quote_service``
    makes a configfs-tsm report entry whose ``inblob`` and ``outblob`` are
    FIFOs served by a thread, so writes bump ``generation`` as the kernel
    does and ``outblob`` blocks until the report is ready; the quote it
    returns is the fixture quote with REPORTDATA replaced by ``inblob`` (a
    mock has no key: its signature no longer verifies).
    """

    ENTRY = "shared"

    def __init__(self, root: Path, sysfs_registers: bool = True) -> None:
        self.root = root
        self.quote_raw = fixture(TDX, "quote.bin").read_bytes()
        self.quote = parse_quote(self.quote_raw)
        self.ccel_data = fixture(TDX, "ccel_data.bin").read_bytes()
        self.ima_ascii = fixture(TDX, "ima_log.bin").read_bytes()
        self.mrtd = bytes(self.quote.body.mrtd)
        self.rtmrs = [bytes(v) for v in self.quote.body.rtmrs]
        self.ioctl_calls: list[int] = []
        self.requests: list[bytes] = []
        self._thread: threading.Thread | None = None
        self._stop = False
        if sysfs_registers:
            mdir = root / backends.TDX_MEASUREMENTS
            mdir.mkdir(parents=True)
            (mdir / "mrtd:sha384").write_bytes(self.mrtd)
            for n, value in enumerate(self.rtmrs):
                (mdir / ("rtmr%d:sha384" % n)).write_bytes(value)
            for name in ("mrconfigid", "mrowner", "mrownerconfig"):
                (mdir / name).write_bytes(bytes(self.quote.body.fields[name]))
        (root / "dev").mkdir(parents=True, exist_ok=True)
        (root / backends.TDX_DEVICE).write_bytes(b"")
        table = root / backends.CCEL_TABLE
        (table.parent / "data").mkdir(parents=True)
        self.ccel_table = CcelTable(cc_type=2, laml=len(self.ccel_data), lasa=0x7F000000)
        table.write_bytes(self.ccel_table.encode())
        (root / backends.CCEL_DATA).write_bytes(self.ccel_data)
        ima = root / "sys/kernel/security/ima"
        ima.mkdir(parents=True)
        (ima / "ascii_runtime_measurements").write_bytes(self.ima_ascii)
        (root / "proc").mkdir(parents=True, exist_ok=True)
        (root / "proc/cmdline").write_bytes(b"console=ttyS0 ima_policy=tcb\n")

    # -- TDX_CMD_GET_REPORT0 on /dev/tdx_guest

    def ioctl(self, fd: int, request: int, buf: bytearray) -> int:
        """The tdx_guest driver's ioctl: fills a TDREPORT after the 64 bytes of REPORTDATA."""
        self.ioctl_calls.append(request)
        if request != tdx_report.TDX_CMD_GET_REPORT0 or len(buf) != 64 + 1024:
            raise OSError(25, "Inappropriate ioctl for device")
        fields = {"report_type": b"\x81\x00\x00\x00", "report_data": bytes(buf[:64]),
                  "mrtd": self.mrtd}
        for name in ("td_attributes", "xfam", "mrconfigid", "mrowner", "mrownerconfig"):
            fields[name] = bytes(self.quote.body.fields[name])
        for n, value in enumerate(self.rtmrs):
            fields["rtmr%d" % n] = value
        buf[64:] = tdx_report.encode_tdreport(fields)
        return 0

    # -- configfs-tsm

    @property
    def entry(self) -> Path:
        return self.root / backends.TSM_REPORT / self.ENTRY

    def start_quote_service(self) -> None:
        self.entry.mkdir(parents=True)
        (self.entry / "generation").write_text("0\n")
        (self.entry / "provider").write_text("tdx_guest\n")
        os.mkfifo(self.entry / "inblob")
        os.mkfifo(self.entry / "outblob")
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            with open(self.entry / "inblob", "rb") as f:
                inblob = f.read()
            if self._stop:
                return
            self.requests.append(inblob)
            gen = int((self.entry / "generation").read_text()) + 1
            (self.entry / "generation").write_text("%d\n" % gen)
            q = parse_quote(self.quote_raw)
            q.body.fields["report_data"] = inblob
            with open(self.entry / "outblob", "wb") as f:
                f.write(q.encode())

    def bump_generation(self) -> None:
        """What another writer of the entry would do."""
        gen = int((self.entry / "generation").read_text()) + 1
        (self.entry / "generation").write_text("%d\n" % gen)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop = True
        with open(self.entry / "inblob", "wb"):  # wakes the thread with an empty request
            pass
        self._thread.join(timeout=5)
        self._thread = None


@pytest.fixture
def fake_tdx(tmp_path: Path) -> Iterator[FakeTdxSysfs]:
    fake = FakeTdxSysfs(tmp_path / "tdx-root")
    fake.start_quote_service()
    try:
        yield fake
    finally:
        fake.stop()


def _expected() -> dict:
    return json.loads(fixture(TDX, "expected.json").read_text())


# ------------------------------------------------------------------ TDX


def test_tdx_registers_from_tsm_mr_files_are_cc_mr_indexed(fake_tdx: FakeTdxSysfs) -> None:
    want = _expected()["quote"]
    backend = detect_backend(root=fake_tdx.root)
    assert isinstance(backend, TdxBackend) and backend.index_kind == "cc_mr"
    regs = backend.read_registers()
    assert sorted(regs) == [0, 1, 2, 3, 4]
    assert regs[0] == {ALG_SHA384: bytes.fromhex(want["mrtd"])}
    for n in range(4):  # RTMR n is CC MR n + 1
        assert regs[n + 1] == {ALG_SHA384: bytes.fromhex(want["rtmr"][n])}
    assert fake_tdx.ioctl_calls == []
    assert backend.register_count() == 5 and backend.algorithms() == [ALG_SHA384]


def test_tdx_registers_from_a_tdreport_without_tsm_mr(tmp_path: Path) -> None:
    fake = FakeTdxSysfs(tmp_path, sysfs_registers=False)
    backend = TdxBackend(root=tmp_path, ioctl=fake.ioctl)
    assert backend.available()
    regs = backend.read_registers()
    want = _expected()["quote"]
    assert fake.ioctl_calls == [0xC4405401]  # _IOWR('T', 1, 1088 bytes), upstream UAPI
    assert regs[0][ALG_SHA384].hex() == want["mrtd"]
    assert [regs[i][ALG_SHA384].hex() for i in (1, 2, 3, 4)] == want["rtmr"]
    assert backend.last_tdreport is not None
    assert tdx_report.parse_tdreport(backend.last_tdreport).report_data == bytes(64)


def test_tdx_ccel_blobs_and_the_replay_give_the_served_rtmrs(fake_tdx: FakeTdxSysfs) -> None:
    backend = TdxBackend(root=fake_tdx.root)
    blobs = backend.firmware_blobs()
    assert blobs["ccel_data"].data == fake_tdx.ccel_data
    assert blobs["ccel_data"].source == str(fake_tdx.root / "sys/firmware/acpi/tables/data/CCEL")
    table = CcelTable.decode(blobs["ccel_table"].data)
    assert table.laml == len(fake_tdx.ccel_data) and table.checksum_valid
    replay = _expected()["ccel_replay_by_mr_index"]
    regs = backend.read_registers()
    assert regs[1][ALG_SHA384].hex() == replay["1"]
    assert regs[2][ALG_SHA384].hex() == replay["2"]


def test_tdx_quote_through_configfs_tsm_binds_report_data(fake_tdx: FakeTdxSysfs) -> None:
    backend = TdxBackend(root=fake_tdx.root, tsm_entry=FakeTdxSysfs.ENTRY)
    rd = report_data_for(b"verifier nonce")
    assert rd == hashlib.sha512(b"verifier nonce").digest()
    rep = backend.get_report(rd)
    assert fake_tdx.requests == [rd]
    assert rep.kind == "tdx-quote" and rep.provider == "tdx_guest" and rep.generation == 1
    q = parse_quote(rep.data)
    assert bytes(q.body.report_data) == rd
    assert [bytes(r) for r in q.body.rtmrs] == fake_tdx.rtmrs
    # a second request on the same entry: the generation moves on by exactly one
    assert backend.get_report(bytes(64)).generation == 2


def test_tdx_quote_detects_another_writer(fake_tdx: FakeTdxSysfs,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    backend = TdxBackend(root=fake_tdx.root, tsm_entry=FakeTdxSysfs.ENTRY)
    real_read = backends.read_file

    def racing_read(path: Path, what: str) -> bytes:
        data = real_read(path, what)
        if path.name == "outblob":
            fake_tdx.bump_generation()  # someone wrote inblob between our write and read
        return data

    monkeypatch.setattr(backends, "read_file", racing_read)
    with pytest.raises(ConcurrentReportError) as e:
        backend.get_report(bytes(64))
    assert str(e.value).startswith("%s: generation went from 0 to 2" % fake_tdx.entry)


def test_tdx_errors_name_the_path(tmp_path: Path) -> None:
    backend = TdxBackend(root=tmp_path)
    assert not backend.available()
    with pytest.raises(BackendError) as e:
        backend.read_registers()
    assert str(tmp_path / "dev/tdx_guest") in str(e.value)
    with pytest.raises(BackendError) as e:
        backend.get_report(bytes(64))
    assert str(e.value).startswith("%s is absent: no configfs-tsm" % (
        tmp_path / "sys/kernel/config/tsm/report"))
    with pytest.raises(BackendError) as e:
        backend.get_report(bytes(63))
    assert str(e.value) == "report data must be 64 bytes, got 63"
    # a plain file is not the tdx_guest device: the real ioctl says ENOTTY
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/tdx_guest").write_bytes(b"")
    with pytest.raises(BackendError) as e:
        backend.read_registers()
    assert str(e.value).startswith("%s: TDX_CMD_GET_REPORT0 failed" % (tmp_path / "dev/tdx_guest"))
    assert "not the tdx_guest device" in str(e.value)
    with pytest.raises(BackendError) as e:
        detect_backend("tdx", root=tmp_path / "none")
    assert "no TDX guest interface" in str(e.value)


def test_unreadable_register_names_the_file_and_permission(fake_tdx: FakeTdxSysfs,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    target = fake_tdx.root / backends.TDX_MEASUREMENTS / "rtmr2:sha384"
    real = Path.read_bytes

    def denied(self: Path) -> bytes:
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)  # tests run as root: chmod would not stop us
    with pytest.raises(BackendError) as e:
        TdxBackend(root=fake_tdx.root).read_registers()
    assert str(e.value).startswith("%s: permission denied reading MR3 (RTMR2)" % target)


# ------------------------------------------------------------------ detection and offline


def test_detect_prefers_tdx_then_tpm_and_is_overridable(tmp_path: Path) -> None:
    with pytest.raises(BackendError) as e:
        detect_backend(root=tmp_path)
    assert str(tmp_path / "dev/tpmrm0") in str(e.value)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/tpmrm0").write_bytes(b"")
    assert isinstance(detect_backend(root=tmp_path), TpmBackend)
    (tmp_path / "dev/tdx_guest").write_bytes(b"")
    assert isinstance(detect_backend(root=tmp_path), TdxBackend)
    assert isinstance(detect_backend("tpm", root=tmp_path), TpmBackend)
    with pytest.raises(BackendError):
        detect_backend("sev", root=tmp_path)


def test_offline_backend_answers_from_the_bundle(tmp_path: Path) -> None:
    want = _expected()["quote"]
    ev = Evidence()
    ev.registers["cc_mr"] = {i + 1: {ALG_SHA384: bytes.fromhex(v)}
                             for i, v in enumerate(want["rtmr"])}
    ev.blobs["ccel_data"] = fixture(TDX, "ccel_data.bin").read_bytes()
    ev.blobs["quote"] = fixture(TDX, "quote.bin").read_bytes()
    path = tmp_path / "bundle.json"
    ev.save(path)
    backend = detect_backend(evidence=path)
    assert isinstance(backend, OfflineBackend) and backend.index_kind == "cc_mr"
    assert backend.read_registers()[4] == {ALG_SHA384: bytes(48)}
    assert backend.firmware_blobs()["ccel_data"].data == ev.blobs["ccel_data"]
    rep = backend.get_report(bytes.fromhex(want["reportdata"]))
    assert rep.data == ev.blobs["quote"]
    with pytest.raises(BackendError) as e:
        backend.get_report(bytes(64))
    assert "cannot make a new quote" in str(e.value)
    with pytest.raises(BackendError) as e:
        OfflineBackend.load(tmp_path / "missing.json")
    assert str(tmp_path / "missing.json") in str(e.value)


# ------------------------------------------------------------------ TPM (swtpm)


def _started(pcr_banks: str | None) -> Iterator[Swtpm]:
    for tpm in _swtpm(pcr_banks):
        with TpmDevice.unix_socket(str(tpm.sock)) as dev:
            dev.startup_clear()
        yield tpm


@pytest.fixture
def started_swtpm() -> Iterator[Swtpm]:
    """A swtpm with libtpms' default banks, started."""
    yield from _started(None)


@pytest.fixture
def fw_swtpm() -> Iterator[Swtpm]:
    """A swtpm with exactly the banks of the GCE firmware log (SHA-1, SHA-256, SHA-384).

    Real firmware extends every active bank and logs each; a bank the log
    does not cover (libtpms also allocates SHA-512) could not be replayed.
    """
    yield from _started("sha1,sha256,sha384")


def _play_firmware(tpm: Swtpm, log: bytes, banks: list[int]) -> None:
    """Extend every extending event of ``log`` into the swtpm, as firmware would."""
    dev = TpmBackend(device=str(tpm.sock))._open()
    for ev in parse_tcg_log(log).events:
        if ev.extends:
            dev.pcr_extend(ev.index, {a: d for a, d in ev.digests if a in banks})


def _yaml_pcrs(name: str) -> dict[int, dict[int, bytes]]:
    """The PCRs tpm2_eventlog computed for a fixture log, {alg: {pcr: value}}."""
    doc = yaml.safe_load(fixture("tpm2-tools", name + ".yaml").read_text())
    out: dict[int, dict[int, bytes]] = {}
    for bank, pcrs in (doc.get("pcrs") or {}).items():
        alg = alg_from_name(bank)
        assert alg is not None
        size = hashlib.new(bank).digest_size
        for pcr, value in (pcrs or {}).items():
            out.setdefault(alg, {})[int(pcr)] = int(value).to_bytes(size, "big")
    return out


@pytest.mark.swtpm
def test_tpm_backend_reads_every_pcr_of_every_bank(started_swtpm: Swtpm, tmp_path: Path) -> None:
    backend = TpmBackend(root=tmp_path, device=str(started_swtpm.sock))
    assert stat.S_ISSOCK(os.stat(started_swtpm.sock).st_mode)
    banks = backend.algorithms()
    assert banks[0] == ALG_SHA256 and len(banks) >= 2
    event = b"cvmchain:test:backend"
    digests = {alg: hashlib.new(alg_name(alg), event).digest() for alg in banks}
    TpmBackend(device=str(started_swtpm.sock))._open().pcr_extend(15, digests)
    regs = backend.read_registers()
    assert sorted(regs) == list(range(24))
    for alg in banks:
        size = hashlib.new(alg_name(alg)).digest_size
        want15 = hashlib.new(alg_name(alg), bytes(size) + digests[alg]).digest()
        assert regs[15][alg] == want15
        assert regs[16][alg] == bytes(size)
        assert regs[17][alg] == b"\xff" * size  # DRTM PCRs reset to ones
    if TPM2_TOOLS:
        theirs = _tools_pcrread(started_swtpm, "+".join("%s:all" % alg_name(a) for a in banks))
        assert {a: {p: regs[p][a] for p in range(24)} for a in banks} == theirs


@pytest.mark.swtpm
def test_tpm_backend_with_a_real_firmware_log(fw_swtpm: Swtpm, tmp_path: Path) -> None:
    log = fixture("tpm2-tools", GCE_LOG).read_bytes()
    backend = TpmBackend(root=tmp_path, device=str(fw_swtpm.sock))
    assert sorted(backend.algorithms()) == sorted(parse_tcg_log(log).algorithms)
    _play_firmware(fw_swtpm, log, backend.algorithms())
    (tmp_path / "sys/kernel/security/tpm0").mkdir(parents=True)
    (tmp_path / backends.TPM_EVENTLOG).write_bytes(log)
    assert backend.firmware_blobs()["tpm_eventlog"].data == log
    regs = backend.read_registers()
    expected = _yaml_pcrs(GCE_LOG)[ALG_SHA256]
    assert len(expected) == 11
    for pcr, value in expected.items():
        assert regs[pcr][ALG_SHA256] == value, "PCR %d" % pcr


def test_tpm_backend_errors_name_the_device(tmp_path: Path) -> None:
    backend = TpmBackend(root=tmp_path)
    assert not backend.available()
    with pytest.raises(BackendError) as e:
        backend.read_registers()
    assert str(e.value) == "no TPM: neither %s nor %s exists (no TPM, or its driver is not " \
        "loaded)" % (tmp_path / "dev/tpmrm0", tmp_path / "dev/tpm0")
    with pytest.raises(BackendError) as e:
        TpmBackend(device=str(tmp_path / "tpm.sock")).read_registers()
    assert str(e.value).startswith("open %s: no such device" % (tmp_path / "tpm.sock"))
    with pytest.raises(BackendError) as e:
        TpmBackend().get_report(bytes(64))
    assert "attestation key" in str(e.value)
