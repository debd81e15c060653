"""cvmchain agent: measure the configuration, the IMA policy and the root file system
before switch_root.

Run by MicroPython in the initrd, after the real root is mounted read-only::

    micropython cvmchain_agent.py --root /root [--config /etc/cvmchain/agent.conf]

In this order (one event each, see ``shared_spec.agent_events``):

1. ``cvmchain:agent-config:sha384:<hex>``: the configuration file's bytes;
2. ``cvmchain:ima-policy:sha384:<hex>`` (then the policy is loaded into the
   kernel) or ``cvmchain:ima-policy:none``;
3. ``cvmchain:rootfs:tree|identity|verity:...``: the root file system;
4. ``cvmchain:leave-initrd``, right before switch_root.

Roots of trust (``roots=auto`` takes every one present): the TDX RTMR
``tdx_rtmr`` (TSM measurement-register file, else the legacy ioctl), logged
to ``<log_dir>/ccel.log``; the vTPM PCR ``tpm_pcr`` (all active banks),
logged to ``<log_dir>/tpm.log``. For every event and root the record is
appended to the log and synced, THEN the register is extended; nothing is
extended that was not logged first.

Failure policy (``on_error``): ``halt`` (default) stops at the first step
that cannot be measured, logged or extended, with a console message naming
it, and exits 1; the boot script must then stop the boot. ``continue``
logs and extends ``cvmchain:error:<step>:<message>`` instead and goes on; a
root whose log cannot be written, or that refuses even the error event, is
dropped (with a message), since nothing can be recorded there any more.

Exit codes: 0 measured; 1 halted (on_error=halt); 2 bad configuration
(the boot script stops the boot too); 3 nothing could be recorded (no root
of trust, or every root dropped) and on_error=continue: the boot goes on,
unmeasured, as configured.

Test-only options: ``--securityfs``, ``--proc``, ``--sys``, ``--dev`` move
the kernel interfaces to a prepared directory.
"""

import os
import sys
import time

import agentconf
import libc
from eventlog import LogError, LogFile
from tdx import ExtendError, TdxRoot
from tpm import TpmError, TpmRoot

from shared_spec import agent_events as ae
from shared_spec.algorithms import ALG_SHA384
from shared_spec.event_types import EV_EVENT_TAG, EV_NO_ACTION

EXIT_OK = 0
EXIT_HALT = 1
EXIT_CONFIG = 2
EXIT_UNMEASURED = 3

USAGE = ("usage: cvmchain_agent.py [--root DIR] [--config FILE] "
         "[--securityfs DIR] [--proc DIR] [--sys DIR] [--dev DIR]")


class Halt(Exception):
    """on_error=halt and something failed; the message says what."""


def say(msg):
    print("cvmchain: " + msg)


def _ms():
    return time.ticks_ms()


def _seconds(start):
    return "%.2f s" % (time.ticks_diff(time.ticks_ms(), start) / 1000)


def _mkdirs(path):
    parts = path.strip("/").split("/")
    cur = ""
    for p in parts:
        cur += "/" + p
        try:
            os.mkdir(cur)
        except OSError:
            pass


class Recorder:
    """Log, then extend, one event in every root; applies the failure policy."""

    def __init__(self, roots, hashes, halt):
        self.roots = roots
        self.hashes = hashes
        self.halt = halt

    def labels(self):
        return ", ".join(r.label for r in self.roots) or "nothing"

    def _log_and_extend(self, root, data):
        digests = [(alg, self.hashes.digest(alg, data)) for alg in root.algorithms]
        try:
            root.log.append(root.index, EV_EVENT_TAG, digests, data)
        except LogError as e:
            return False, "log", str(e)
        try:
            root.extend(digests, self.hashes)
        except (ExtendError, TpmError, OSError) as e:
            return True, "extend", "%s: %s" % (root.label, e)
        return True, None, None

    def record(self, descriptor):
        """Record ``descriptor`` everywhere; raises :class:`Halt` under on_error=halt."""
        data = ae.encode_event_data(descriptor)
        for root in list(self.roots):
            logged, what, msg = self._log_and_extend(root, data)
            if what is None:
                continue
            say("%s failed: %s" % (what, msg))
            if self.halt:
                raise Halt("%s failed: %s" % (what, msg))
            if logged:
                err = ae.encode_event_data(ae.error_descriptor(what, msg))
                _, what2, msg2 = self._log_and_extend(root, err)
                if what2 is None:
                    continue
                say("cannot record the error in %s either: %s" % (root.label, msg2))
            self.roots.remove(root)
            say("%s dropped: nothing more can be recorded there" % root.label)


class Agent:
    """The measurement steps, in order; see the module docstring."""

    def __init__(self, conf, conf_bytes, hashes, root, paths):
        self.conf = conf
        self.conf_bytes = conf_bytes
        self.hashes = hashes
        self.root = root.rstrip("/") or "/"
        self.paths = paths
        self.halt = conf["on_error"] == "halt"
        self.rec = None

    def fail(self, msg):
        """A failure outside a step: halt, or say it and go on (on_error=continue)."""
        say(msg)
        if self.halt:
            raise Halt(msg)

    # -- roots of trust -------------------------------------------------------

    def open_roots(self):
        wanted = self.conf["roots"]
        candidates = []
        if wanted != "tpm":
            candidates.append(TdxRoot(self.conf))
        if wanted != "tdx":
            candidates.append(TpmRoot(self.conf))
        log_dir = self.conf["log_dir"]
        _mkdirs(log_dir)
        roots = []
        for r in candidates:
            if not r.probe():
                if wanted != "auto":
                    self.fail("root of trust %s not found (%s)" % (r.label, r.where()))
                continue
            try:
                if isinstance(r, TpmRoot):
                    r.open(self.hashes)
                r.log = LogFile(log_dir + "/" + r.log_name, r.algorithms, r.header_index)
                for alg, value in r.initial_values():
                    data = ae.encode_event_data(ae.initial_value_descriptor(alg, value))
                    zero = [(a, b"\0" * len(self.hashes.digest(a, b""))) for a in r.algorithms]
                    r.log.append(r.index, EV_NO_ACTION, zero, data)
            except (LogError, ExtendError, TpmError, OSError) as e:
                self.fail("cannot use %s: %s" % (r.label, e))
                continue
            roots.append(r)
        if not roots:
            self.fail("no root of trust: no TDX measurement register (%s) and no TPM (%s)"
                      % (candidates[0].where() if wanted != "tpm" else "not wanted",
                         candidates[-1].where() if wanted != "tdx" else "not wanted"))
        self.rec = Recorder(roots, self.hashes, self.halt)
        return roots

    # -- steps ------------------------------------------------------------------

    def step(self, name, fn):
        """Run one measurement: record its event, or fail by the policy."""
        start = _ms()
        try:
            descriptor, detail = fn()
        except Exception as e:  # any failure to measure is reported, never skipped
            msg = "%s failed: %s" % (name, e)
            say(msg)
            if self.halt:
                raise Halt(msg) from None
            self.rec.record(ae.error_descriptor(name, str(e)))
            say("%s: error event recorded -> %s" % (name, self.rec.labels()))
            return
        if descriptor is not None:  # None: the step recorded its event itself
            self.rec.record(descriptor)
        say("%s %s %s -> %s" % (name, detail, _seconds(start), self.rec.labels()))

    def measure_config(self):
        digest = self.hashes.digest(ALG_SHA384, self.conf_bytes).hex()
        return ae.config_descriptor(digest), "sha384:%s.." % digest[:16]

    def measure_ima_policy(self):
        import imapolicy

        path = self.conf["ima_policy"]
        if not path:
            return ae.IMA_POLICY_NONE, "none configured"
        with open(path, "rb") as f:
            policy = f.read()
        digest = self.hashes.digest(ALG_SHA384, policy).hex()
        # measured (logged and extended) before the kernel sees it; a load
        # failure is then reported on its own (halt, or an error event)
        self.rec.record(ae.ima_policy_descriptor(digest))
        securityfs = self.paths["securityfs"]
        imapolicy.ensure_securityfs(securityfs)
        n = imapolicy.load(securityfs + "/ima/policy", policy, path,
                           self.conf["ima_policy_load"] == "path")
        how = "by path" if self.conf["ima_policy_load"] == "path" else "%d rules" % n
        return None, "sha384:%s.. (%s loaded)" % (digest[:16], how)

    def measure_rootfs(self):
        mode = self.conf["rootfs_mode"]
        if mode == "tree":
            import tree

            digest, count, nbytes = tree.write_manifest(
                self.root.encode(), self.conf["include"].split(),
                self.conf["exclude"].split(), self.conf["xattrs"].split(), self.hashes,
                self.conf["log_dir"] + "/rootfs.manifest")
            return (ae.rootfs_tree_descriptor(digest),
                    "tree sha384:%s.. (%d entries, %d MB)" % (digest[:16], count,
                                                              nbytes // 1000000))
        import rootdev

        dev = rootdev.RootDevice(self.root, self.paths["proc"], self.paths["sys"],
                                 self.paths["dev"])
        if mode == "identity":
            fstype, uuid, label, partuuid = dev.identity()
            return (ae.rootfs_identity_descriptor(fstype, uuid, label, partuuid),
                    "identity %s %s %s UUID=%s LABEL=%s PARTUUID=%s"
                    % (dev.name, dev.source, fstype, uuid, label, partuuid or "-"))
        root_hash = dev.verity_root_hash()
        return ae.rootfs_verity_descriptor(root_hash), "verity %s root hash %s" % (dev.name,
                                                                                   root_hash)

    def run(self):
        """The whole measurement; returns the exit code (raises :class:`Halt`)."""
        self.open_roots()
        if not self.rec.roots:
            say("NOT MEASURED: nothing can be recorded; the boot continues (on_error=continue)")
            return EXIT_UNMEASURED
        self.step("config", self.measure_config)
        self.step("ima-policy", self.measure_ima_policy)
        self.step("rootfs", self.measure_rootfs)
        self.rec.record(ae.LEAVE_INITRD)
        if not self.rec.roots:
            say("NOT MEASURED: every root of trust was dropped; the boot continues "
                "(on_error=continue)")
            return EXIT_UNMEASURED
        say("leave-initrd recorded -> %s" % self.rec.labels())
        return EXIT_OK


def parse_args(argv):
    opts = {"root": "/root", "config": "/etc/cvmchain/agent.conf",
            "securityfs": "/sys/kernel/security", "proc": "/proc", "sys": "/sys", "dev": "/dev"}
    i = 1
    while i < len(argv):
        key = argv[i][2:] if argv[i].startswith("--") else None
        if key not in opts or i + 1 >= len(argv):
            raise ValueError("bad argument %s; %s" % (argv[i], USAGE))
        opts[key] = argv[i + 1]
        i += 2
    return opts


def main(argv):
    try:
        opts = parse_args(argv)
    except ValueError as e:
        say(str(e))
        return EXIT_CONFIG
    try:
        with open(opts["config"], "rb") as f:
            conf_bytes = f.read()
        conf = agentconf.parse_config(conf_bytes.decode())
    except OSError as e:
        say("cannot read the configuration %s: %s" % (opts["config"], libc.describe(e.errno)
                                                      if e.errno else e))
        return EXIT_CONFIG
    except (agentconf.ConfigError, UnicodeError) as e:
        say("bad configuration %s: %s" % (opts["config"], e))
        return EXIT_CONFIG
    import mbedhash

    agent = Agent(conf, conf_bytes, mbedhash.provider(), opts["root"], opts)
    try:
        return agent.run()
    except Halt as e:
        say("HALT: %s; the boot stops here (on_error=halt)" % e)
        return EXIT_HALT


if __name__ == "__main__":
    sys.exit(main(sys.argv))
