"""The agent under the real MicroPython on the host: order, logs, failure policy.

``FakeTsmDir`` below is a plain directory holding a 48-byte file where a TSM
measurement register would be: a TEST DOUBLE that does not extend (writes
overwrite). It is used only to check what the agent logs, in which order, and
how it fails; real register semantics are tested under QEMU.
"""

import hashlib
import subprocess
from pathlib import Path

import pytest

from initrd_agent import runtime_bundle as rb
from shared_spec import agent_events as ae
from shared_spec.event_types import EV_EVENT_TAG, EV_NO_ACTION
from shared_spec.tcg_log import parse_tcg_log

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "initrd_agent" / "agent" / "cvmchain_agent.py"


@pytest.fixture(scope="module")
def bundle() -> rb.RuntimeBundle:
    try:
        return rb.ensure_bundle()
    except rb.RuntimeBundleError as e:
        pytest.skip("MicroPython bundle unavailable: %s" % e)


class FakeTsmDir:
    """Test double for a TSM measurement-register directory (does NOT extend)."""

    def __init__(self, base: Path) -> None:
        self.path = base / "fake-tsm"
        self.path.mkdir()
        (self.path / "rtmr3:sha384").write_bytes(b"rtmr3".ljust(48, b"\0"))


def _run(bundle: rb.RuntimeBundle, tmp: Path, conf: str) -> subprocess.CompletedProcess:
    (tmp / "agent.conf").write_text(conf)
    env = {"MICROPYPATH": "%s:%s" % (ROOT, ROOT / "initrd_agent" / "agent")}
    return subprocess.run([*bundle.interpreter, str(AGENT), "--root", str(tmp / "rootfs"),
                           "--config", str(tmp / "agent.conf"),
                           "--securityfs", str(tmp / "securityfs")],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def world(tmp_path: Path) -> Path:
    (tmp_path / "rootfs" / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "rootfs" / "usr" / "bin" / "tool").write_bytes(b"binary")
    (tmp_path / "rootfs" / "etc").mkdir()
    (tmp_path / "rootfs" / "etc" / "os-release").write_text("ID=test\n")
    (tmp_path / "securityfs" / "ima").mkdir(parents=True)
    (tmp_path / "securityfs" / "ima" / "policy").write_text("")
    (tmp_path / "policy").write_text("# test\nmeasure func=BPRM_CHECK\n\n"
                                     "measure func=MODULE_CHECK\n")
    (tmp_path / "logs").mkdir()
    return tmp_path


def _conf(tmp: Path, **extra: str) -> str:
    fake = FakeTsmDir(tmp)
    lines = {"tsm_dir": str(fake.path), "tpm_device": str(tmp / "no-tpm"),
             "log_dir": str(tmp / "logs"), "ima_policy": str(tmp / "policy"),
             "include": "/usr /etc/os-release"}
    lines.update(extra)
    return "".join("%s=%s\n" % kv for kv in lines.items())


def test_events_in_order_logged_with_their_digests(bundle: rb.RuntimeBundle, world: Path) -> None:
    conf = _conf(world)
    proc = _run(bundle, world, conf)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cvmchain: rootfs tree sha384:" in proc.stdout
    log = parse_tcg_log((world / "logs" / "ccel.log").read_bytes())
    assert log.header is not None and log.header.index == 1
    first, *events = log.events
    assert first.event_type == EV_NO_ACTION
    assert ae.initial_values([first]) == {(4, 0x000C): b"rtmr3".ljust(48, b"\0")}
    descs = [ae.decode_event_data(e.data) for e in events]
    conf_digest = hashlib.sha384(conf.encode()).hexdigest()
    policy_digest = hashlib.sha384((world / "policy").read_bytes()).hexdigest()
    manifest = (world / "logs" / "rootfs.manifest").read_bytes()
    assert descs == [ae.config_descriptor(conf_digest), ae.ima_policy_descriptor(policy_digest),
                     ae.rootfs_tree_descriptor(hashlib.sha384(manifest).hexdigest()),
                     ae.LEAVE_INITRD]
    for e in events:
        assert e.index == 4 and e.event_type == EV_EVENT_TAG
        assert e.digest(0x000C) == hashlib.sha384(e.data).digest()
    # the policy was written rule by rule, comments and blank lines dropped
    assert (world / "securityfs" / "ima" / "policy").read_text() == \
        "measure func=BPRM_CHECK\nmeasure func=MODULE_CHECK\n"
    # the fake register's last write is the last logged digest: log first, then extend
    assert (world / "fake-tsm" / "rtmr3:sha384").read_bytes() == events[-1].digest(0x000C)


def test_no_root_of_trust_halts(bundle: rb.RuntimeBundle, world: Path) -> None:
    conf = _conf(world, tsm_dir=str(world / "absent"))
    proc = _run(bundle, world, conf)
    assert proc.returncode == 1
    assert "HALT" in proc.stdout and "no TDX measurement register" in proc.stdout


def test_bad_configuration_exits_2(bundle: rb.RuntimeBundle, world: Path) -> None:
    proc = _run(bundle, world, "on_error=maybe\n")
    assert proc.returncode == 2 and "line 1" in proc.stdout
    proc = _run(bundle, world, "colour=blue\n")
    assert proc.returncode == 2 and "unknown key" in proc.stdout


def test_missing_policy_halts_or_logs_an_error_event(bundle: rb.RuntimeBundle,
                                                      world: Path) -> None:
    proc = _run(bundle, world, _conf(world, ima_policy=str(world / "nope")))
    assert proc.returncode == 1 and "ima-policy failed" in proc.stdout
    (world / "fake-tsm" / "rtmr3:sha384").unlink()
    (world / "fake-tsm").rmdir()
    proc = _run(bundle, world, _conf(world, ima_policy=str(world / "nope"), on_error="continue"))
    assert proc.returncode == 0, proc.stdout
    log = parse_tcg_log((world / "logs" / "ccel.log").read_bytes())
    descs = [ae.decode_event_data(e.data) or "" for e in log.events[1:]]
    assert descs[1].startswith("cvmchain:error:ima-policy:")
    assert descs[-1] == ae.LEAVE_INITRD


def test_unwritable_log_dir_halts(bundle: rb.RuntimeBundle, world: Path) -> None:
    proc = _run(bundle, world, _conf(world, log_dir="/proc/cvmchain-cannot-write"))
    assert proc.returncode == 1 and "cannot open" in proc.stdout
