"""``rootfs_mode=verity`` against a real dm-verity root (issue #3).

One boot of the host's Debian kernel under QEMU (TCG) with a swtpm vTPM and an initrd
built by :mod:`qemu_tests.verity_boot`; the agent runs four times in it, each run
extending its own PCR:

- ``plain`` (PCR 13): root is the ext4 data disk itself: the agent halts
  (on_error=halt) saying the root is not a dm-verity device and naming it;
- ``linear`` (PCR 12): root is a dm-linear device over the data disk: the agent reads its
  table and halts, naming the ``linear`` target;
- ``dmsetup`` (PCR 14): root is the verity device; the agent's ``--dev`` has no
  ``mapper/control``, so the DM_TABLE_STATUS ioctl cannot run and ``dmsetup`` answers;
- ``ioctl`` (PCR 15): root is the verity device and ``dmsetup`` has been deleted from
  the initrd, so only the ioctl can answer.

Expected values come from elsewhere than the agent: the root hash is what
``veritysetup format`` printed on the host; the PCRs are what the guest kernel's
``/sys/class/tpm/tpm0/pcr-<bank>/<n>`` read from the TPM; device names and numbers are
the guest's sysfs; the probe file read through the verity device is the one the host wrote.
"""

from __future__ import annotations

import hashlib
import shutil

import pytest

from cloud_sdk.hashing import hashlib_provider
from initrd_agent.runtime_bundle import ensure_bundle
from qemu_tests.paths import artifacts_root
from qemu_tests.verity_boot import (
    AgentRun,
    AgentRunResult,
    VerityBootResult,
    VerityImage,
    boot_verity_guest,
    find_host_kernel,
    make_verity_image,
    missing_tools,
)
from shared_spec import agent_events as ae
from shared_spec.algorithms import ALG_SHA256, ALG_SHA384, alg_name
from shared_spec.event_types import EV_EVENT_TAG
from shared_spec.replay import replay
from shared_spec.tcg_log import parse_tcg_log

pytestmark = pytest.mark.qemu

#: the agent's exit status when it stops the boot (cvmchain_agent.EXIT_HALT)
EXIT_HALT = 1
BANKS = ("sha256", "sha384")
RUNS = (
    AgentRun("plain", 13, root="plain"),
    AgentRun("linear", 12, root="linear"),
    AgentRun("dmsetup", 14, root="verity", dev="/run/nodev"),
    AgentRun("ioctl", 15, root="verity", dmsetup=False),
)


@pytest.fixture(scope="module")
def verity_boot(tmp_path_factory: pytest.TempPathFactory) -> tuple[VerityImage, VerityBootResult]:
    """The verity image and what the one boot of this module left."""
    kernel = find_host_kernel()
    if kernel is None:
        pytest.skip("no readable /boot/vmlinuz-* with its /lib/modules directory")
    missing = missing_tools()
    if missing:
        pytest.skip("missing host programs: " + ", ".join(missing))
    workdir = tmp_path_factory.mktemp("verity")
    artifacts = artifacts_root() / "test_agent_verity"
    shutil.rmtree(artifacts, ignore_errors=True)
    image = make_verity_image(workdir)
    result = boot_verity_guest(kernel, ensure_bundle(), image, RUNS, workdir,
                               artifacts / "console.log", pcr_banks=BANKS)
    for name, data in result.files.items():
        out = artifacts / "results" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    return image, result


def _descriptors_and_replay(run: AgentRunResult) -> list[str | None]:
    """The run's event descriptors, after checking its log against the live PCR.

    Every record's digest in every bank must be that bank's hash of its event data, the
    log must carry exactly the TPM's active banks, and replaying it from zero must give
    the PCR as the guest kernel read it from the TPM.
    """
    assert run.tpm_log is not None, "agent run %s wrote no tpm.log" % run.run.name
    log = parse_tcg_log(run.tpm_log, source="%s/tpm.log" % run.run.name)
    wanted = {ALG_SHA256, ALG_SHA384}
    assert set(log.algorithms) == wanted and set(run.pcr) == wanted
    for ev in log.events:
        assert ev.index == run.run.tpm_pcr and ev.event_type == EV_EVENT_TAG
        for alg, digest in ev.digests:
            assert digest == hashlib.new(alg_name(alg), ev.data).digest()
    replayed = replay(log.events, hashlib_provider())
    for alg, live in run.pcr.items():
        assert live != b"\0" * len(live)
        assert replayed.value(run.run.tpm_pcr, alg) == live, (
            "PCR %d %s: log replays to %s, TPM holds %s" % (
                run.run.tpm_pcr, alg_name(alg),
                (replayed.value(run.run.tpm_pcr, alg) or b"").hex(), live.hex()))
    return [ae.decode_event_data(ev.data) for ev in log.events]


def _config_descriptor(run: AgentRunResult) -> str:
    return ae.config_descriptor(hashlib.sha384(run.run.config().encode()).hexdigest())


@pytest.mark.parametrize("name", ["ioctl", "dmsetup"])
def test_verity_root_hash_is_measured(verity_boot: tuple[VerityImage, VerityBootResult],
                                      name: str) -> None:
    image, result = verity_boot
    run = result.runs[name]
    assert run.exit_status == 0, run.output
    assert result.files["probe"] == image.probe  # the verity device really serves the data
    descriptors = _descriptors_and_replay(run)
    assert descriptors == [
        _config_descriptor(run),
        ae.IMA_POLICY_NONE,
        "cvmchain:rootfs:verity:" + image.root_hash,
        ae.LEAVE_INITRD,
    ]
    assert "rootfs verity %s root hash %s" % (result.text("verity.name"), image.root_hash) \
        in run.output


def test_each_table_reader_ran_alone(verity_boot: tuple[VerityImage, VerityBootResult]) -> None:
    """The ``ioctl`` run had no dmsetup to fall back on; the ``dmsetup`` run no ioctl."""
    _, result = verity_boot
    assert result.runs["ioctl"].environment == {"dmsetup": "absent", "control": "present"}
    assert result.runs["dmsetup"].environment == {"dmsetup": "present", "control": "absent"}


def test_plain_root_halts(verity_boot: tuple[VerityImage, VerityBootResult]) -> None:
    _, result = verity_boot
    run = result.runs["plain"]
    assert run.exit_status == EXIT_HALT, run.output
    why = "root is not a dm-verity device (%s, %s, is not device-mapper)" % (
        result.text("data.name"), result.text("data.dev"))
    assert "HALT: rootfs failed: %s; the boot stops here (on_error=halt)" % why in run.output
    # measured up to the failing step, nothing after it
    assert _descriptors_and_replay(run) == [_config_descriptor(run), ae.IMA_POLICY_NONE]


def test_non_verity_device_mapper_root_halts(
        verity_boot: tuple[VerityImage, VerityBootResult]) -> None:
    _, result = verity_boot
    run = result.runs["linear"]
    assert run.exit_status == EXIT_HALT, run.output
    why = "root is not a dm-verity device (%s has a linear target)" % result.text("linear.name")
    assert "HALT: rootfs failed: %s; the boot stops here (on_error=halt)" % why in run.output
    assert _descriptors_and_replay(run) == [_config_descriptor(run), ae.IMA_POLICY_NONE]

