"""cvmchain agent: measure the root file system and the IMA policy before switch_root.

Run by MicroPython in the initrd, after the real root is mounted read-only:

    micropython cvmchain_agent.py --root /root [--config /etc/cvmchain/agent.conf]

In order: the configuration, the IMA policy (measured, then loaded), the root
file system, and a final ``cvmchain:leave-initrd`` marker. For every event
and every root of trust (TDX register through the kernel's TSM
measurement-register file, vTPM through /dev/tpmrm0): the record is appended
to that root's log and synced, THEN the register is extended. Exit codes:
0 measured, 1 halted (a step failed and on_error=halt), 2 bad configuration.
"""

import sys
import time

import agentconf
import libc

from shared_spec import agent_events as ae
from shared_spec import tpm2
from shared_spec.algorithms import ALG_SHA384, alg_name, digest_size
from shared_spec.event_types import EV_EVENT_TAG, EV_NO_ACTION
from shared_spec.registers import cc_mr_label
from shared_spec.tcg_log import SpecIdEvent, encode_pcr_event2, encode_spec_id_header

_open = libc.open_
_write = libc.write
_read = libc.read
_close = libc.close
_fsync = libc.fsync
O_RDONLY = libc.O_RDONLY
O_WRONLY = libc.O_WRONLY
O_RDWR = libc.O_RDWR
O_CREAT = libc.O_CREAT
O_TRUNC = libc.O_TRUNC
O_APPEND = libc.O_APPEND

EXIT_OK = 0
EXIT_HALT = 1
EXIT_CONFIG = 2

ERRNO_NAMES = {1: "EPERM", 2: "ENOENT", 5: "EIO", 13: "EACCES", 16: "EBUSY", 22: "EINVAL",
               28: "ENOSPC", 30: "EROFS"}


class AgentError(Exception):
    """A step failed; the message says what and where."""


def errno():
    return libc.errno()


def _err(e):
    return "%s (%d)" % (ERRNO_NAMES.get(e, "errno"), e)


def say(msg):
    print("cvmchain: " + msg)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def exists(path):
    import os

    try:
        os.stat(path)
        return True
    except OSError:
        return False


class LogFile:
    """An agent log in TCG crypto-agile format; every record synced before the extend."""

    def __init__(self, path, algorithms, header_index):
        self.path = path
        self.algorithms = algorithms
        spec = SpecIdEvent(algorithms=[(a, digest_size(a)) for a in algorithms],
                           vendor_info=b"cvmchain")
        self._write(encode_spec_id_header(spec, header_index), O_CREAT | O_TRUNC)

    def _write(self, data, extra=0):
        fd = _open(self.path.encode() + b"\x00", O_WRONLY | O_APPEND | extra, 0o644)
        if fd < 0:
            raise AgentError("cannot open %s for writing: %s" % (self.path, _err(errno())))
        try:
            if _write(fd, data, len(data)) != len(data):
                raise AgentError("short write to %s: %s" % (self.path, _err(errno())))
            if _fsync(fd) != 0:
                raise AgentError("fsync %s: %s" % (self.path, _err(errno())))
        finally:
            _close(fd)

    def append(self, index, event_type, digests, data):
        self._write(encode_pcr_event2(index, event_type, digests, data))


class TsmRoot:
    """A TDX RTMR through a TSM measurement-register file (48-byte write = extend)."""

    def __init__(self, conf):
        self.rtmr = int(conf["tdx_rtmr"])
        self.index = self.rtmr + 1
        self.path = conf["tsm_dir"].rstrip("/") + "/" + conf["tsm_register"].replace(
            "{n}", str(self.rtmr))
        self.algorithms = [ALG_SHA384]
        self.label = cc_mr_label(self.index)
        self.log = None

    def present(self):
        return exists(self.path)

    def read(self):
        value = read_file(self.path)
        if len(value) != 48:
            raise AgentError("%s: read %d bytes, expected 48" % (self.path, len(value)))
        return value

    def open_log(self, log_dir):
        self.log = LogFile(log_dir + "/ccel.log", self.algorithms, 1)
        initial = self.read()
        data = ae.encode_event_data(ae.initial_value_descriptor(ALG_SHA384, initial))
        self.log.append(self.index, EV_NO_ACTION, [(ALG_SHA384, b"\x00" * 48)], data)

    def extend(self, digests):
        d = digests[ALG_SHA384]
        fd = _open(self.path.encode() + b"\x00", O_WRONLY, 0)
        if fd < 0:
            raise AgentError("cannot open %s: %s" % (self.path, _err(errno())))
        try:
            n = _write(fd, d, 48)
            if n != 48:
                raise AgentError("extend of %s rejected: %s" % (self.path, _err(errno())))
        finally:
            _close(fd)


class TpmRoot:
    """A vTPM PCR through the kernel's resource manager, every active bank at once."""

    def __init__(self, conf):
        self.index = int(conf["tpm_pcr"])
        self.device = conf["tpm_device"]
        self.label = "PCR %d" % self.index
        self.algorithms = []
        self.log = None
        self.fd = -1

    def present(self):
        if not exists(self.device) and exists("/dev/tpm0"):
            self.device = "/dev/tpm0"
        return exists(self.device)

    def _transact(self, cmd, what):
        if self.fd < 0:
            self.fd = _open(self.device.encode() + b"\x00", O_RDWR, 0)
            if self.fd < 0:
                raise AgentError("cannot open %s: %s" % (self.device, _err(errno())))
        if _write(self.fd, cmd, len(cmd)) != len(cmd):
            raise AgentError("%s: write to %s failed: %s" % (what, self.device, _err(errno())))
        buf = bytearray(4096)
        n = _read(self.fd, buf, len(buf))
        if n < 0:
            raise AgentError("%s: read from %s failed: %s" % (what, self.device, _err(errno())))
        return bytes(buf[:n])

    def open_log(self, log_dir):
        sel = tpm2.parse_get_capability_pcrs(self._transact(tpm2.get_capability_pcrs(),
                                                            "GetCapability"))
        self.algorithms = [alg for alg, pcrs in sel if pcrs and digest_size(alg)]
        if not self.algorithms:
            raise AgentError("%s reports no active PCR bank" % self.device)
        self.log = LogFile(log_dir + "/tpm.log", self.algorithms, 0)

    def read(self):
        return tpm2.parse_pcr_read(self._transact(tpm2.pcr_read(self.algorithms, [self.index]),
                                                  "PCR_Read"))

    def extend(self, digests, hashes):
        before = self.read()
        cmd = tpm2.pcr_extend(self.index, [(a, digests[a]) for a in self.algorithms])
        tpm2.check_response(self._transact(cmd, "PCR_Extend"), "TPM2_PCR_Extend")
        after = self.read()
        for alg in self.algorithms:
            want = hashes.extend(alg, before[alg][self.index], digests[alg])
            if after.get(alg, {}).get(self.index) != want:
                raise AgentError("PCR %d bank %s did not take the extend" % (self.index,
                                                                             alg_name(alg)))


class Agent:
    def __init__(self, conf, conf_bytes, root, hashes, securityfs):
        self.conf = conf
        self.conf_bytes = conf_bytes
        self.root = root.rstrip("/")
        self.hashes = hashes
        self.securityfs = securityfs
        self.roots = []
        self.halt = conf["on_error"] == "halt"

    def select_roots(self):
        wanted = self.conf["roots"]
        candidates = []
        if wanted in ("auto", "tdx", "tdx,tpm", "tpm,tdx"):
            candidates.append(TsmRoot(self.conf))
        if wanted in ("auto", "tpm", "tdx,tpm", "tpm,tdx"):
            candidates.append(TpmRoot(self.conf))
        for r in candidates:
            if r.present():
                self.roots.append(r)
            elif wanted != "auto":
                raise AgentError("root of trust %s not found (%s)" % (
                    r.label, getattr(r, "path", getattr(r, "device", "?"))))
        if not self.roots:
            raise AgentError("no TDX measurement register (%s/%s) and no TPM (%s, /dev/tpm0)"
                             % (self.conf["tsm_dir"], self.conf["tsm_register"],
                                self.conf["tpm_device"]))
        import os

        try:
            os.mkdir(self.conf["log_dir"])
        except OSError:
            pass
        for r in self.roots:
            r.open_log(self.conf["log_dir"])

    def record(self, descriptor):
        """Log then extend ``descriptor`` in every root; an extend failure raises."""
        data = ae.encode_event_data(descriptor)
        for r in self.roots:
            digests = {}
            for alg in r.algorithms:
                digests[alg] = self.hashes.digest(alg, data)
            r.log.append(r.index, EV_EVENT_TAG, [(a, digests[a]) for a in r.algorithms], data)
            if isinstance(r, TpmRoot):
                r.extend(digests, self.hashes)
            else:
                r.extend(digests)

    def step(self, name, fn):
        t = time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.time() * 1000)
        try:
            descriptor, detail = fn()
        except Exception as e:
            msg = "%s failed: %s" % (name, e)
            say(msg)
            if self.halt:
                raise AgentError(msg) from None
            self.record(ae.error_descriptor(name, str(e)))
            return
        self.record(descriptor)
        now = time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.time() * 1000)
        say("%s %s (%d ms) -> %s" % (name, detail, now - t,
                                     ", ".join(r.label for r in self.roots)))

    def measure_config(self):
        digest = self.hashes.digest(ALG_SHA384, self.conf_bytes).hex()
        return ae.config_descriptor(digest), "sha384:" + digest[:16]

    def measure_ima_policy(self):
        path = self.conf["ima_policy"]
        if not path:
            return ae.IMA_POLICY_NONE, "none configured"
        policy = read_file(path)
        digest = self.hashes.digest(ALG_SHA384, policy).hex()
        target = self.securityfs + "/ima/policy"
        if self.conf["ima_policy_load"] == "path":
            self._write_policy(target, [path.encode()], [0])
        else:
            rules = []
            lines = []
            n = 0
            for line in policy.split(b"\n"):
                n += 1
                s = line.strip()
                if s and not s.startswith(b"#"):
                    rules.append(s)
                    lines.append(n)
            self._write_policy(target, rules, lines)
        return ae.ima_policy_descriptor(digest), "sha384:%s loaded" % digest[:16]

    def _write_policy(self, target, rules, lines):
        fd = _open(target.encode() + b"\x00", O_WRONLY, 0)
        if fd < 0:
            raise AgentError("cannot open %s: %s" % (target, _err(errno())))
        try:
            for i in range(len(rules)):
                rule = rules[i]
                lineno = lines[i]
                data = rule + b"\n"
                if _write(fd, data, len(data)) != len(data):
                    raise AgentError("the kernel rejected IMA policy line %d (%s): %s"
                                     % (lineno, rule.decode(), _err(errno())))
        finally:
            if _close(fd) != 0:
                raise AgentError("the kernel rejected the IMA policy: %s" % _err(errno()))

    def measure_rootfs(self):
        mode = self.conf["rootfs_mode"]
        if mode != "tree":
            raise AgentError("rootfs_mode=%s is not implemented yet" % mode)
        import tree

        path = self.conf["log_dir"] + "/rootfs.manifest"
        digest, count, nbytes = tree.write_manifest(
            self.root.encode(), self.conf["include"].split(), self.conf["exclude"].split(),
            self.conf["xattrs"].split(), self.hashes, path)
        return (ae.rootfs_tree_descriptor(digest),
                "tree sha384:%s (%d entries, %d MB)" % (digest[:16], count,
                                                        nbytes // 1000000))

    def run(self):
        self.select_roots()
        self.step("config", self.measure_config)
        self.step("ima-policy", self.measure_ima_policy)
        self.step("rootfs", self.measure_rootfs)
        self.record(ae.LEAVE_INITRD)
        say("leave-initrd recorded; %d events in %s" % (4, ", ".join(r.label for r in self.roots)))


def main(argv):
    root = "/root"
    config = "/etc/cvmchain/agent.conf"
    securityfs = "/sys/kernel/security"
    i = 1
    while i < len(argv):
        if argv[i] == "--root":
            root = argv[i + 1]
            i += 2
        elif argv[i] == "--config":
            config = argv[i + 1]
            i += 2
        elif argv[i] == "--securityfs":
            securityfs = argv[i + 1]
            i += 2
        else:
            say("unknown argument %s" % argv[i])
            return EXIT_CONFIG
    try:
        conf_bytes = read_file(config)
        conf = agentconf.parse_config(conf_bytes.decode())
    except OSError as e:
        say("cannot read configuration %s: %s" % (config, e))
        return EXIT_CONFIG
    except (agentconf.ConfigError, UnicodeError) as e:
        say("bad configuration %s: %s" % (config, e))
        return EXIT_CONFIG
    import mbedhash

    agent = Agent(conf, conf_bytes, root, mbedhash.provider(), securityfs)
    try:
        agent.run()
    except (AgentError, OSError, tpm2.TpmResponseError) as e:
        say("HALT: %s" % e)
        return EXIT_HALT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv))
