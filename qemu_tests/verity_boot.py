"""Run the agent against a real dm-verity root: the host's kernel, a purpose-built initrd.

The guest has no disk image and no firmware beyond QEMU's default BIOS: the host's Debian
kernel boots straight (``-kernel``) into an initrd built here from

- static BusyBox (the shell and its applets), ``dmsetup`` with its shared-library closure
  (``ldd``), and the kernel modules dm-verity and ext4 need on virtio disks (with their
  ``modules.dep`` closure, decompressed on the host);
- the agent as :func:`initrd_agent.install.agent_files` lays it out (MicroPython runtime
  bundle, agent modules, ``shared_spec``), with one configuration file per agent run;
- a generated ``/init`` that mounts the data disk, runs the agent, builds the verity
  device, runs the agent again, and writes what it saw to a results disk.

The host makes the disks: a small ext4 image (``mkfs.ext4 -d``) and its hash tree
(``veritysetup format``, whose printed root hash and salt are the independent expected
values, see :class:`VerityImage`). The guest sees them as virtio disks found by serial.

Agent runs (:class:`AgentRun`) happen in one boot, in this order: runs whose root is the
plain data disk; runs whose root is a dm-linear device over it (a device-mapper root that is
not verity); then ``dmsetup create`` of the verity device and the verity runs with
``dmsetup`` in the initrd; then ``dmsetup`` is deleted and the remaining verity runs go.
Each run extends its own PCR of one swtpm and logs to its own directory, so each replays
from zero. The initrd has no udev: ``dmsetup`` falls back to creating ``/dev/mapper`` nodes.

The results disk holds a tar of ``/run/out``: per run ``<name>.rc``, ``<name>.env``,
``<name>.out`` (the agent's console output) and ``<name>/tpm.log``; ``pcr/<bank>.<pcr>``
as the kernel's ``/sys/class/tpm/tpm0/pcr-<bank>/<pcr>`` shows it (read by the kernel from
the TPM, not by the agent); the data, linear and verity devices' kernel names and
``major:minor``; the probe file read back through the verity device; ``dmesg.txt``.
"""

from __future__ import annotations

import io
import lzma
import os
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import tarfile
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from image_rewriter.accel import forced_accel
from image_rewriter.cpio import CpioEntry, write_cpio
from image_rewriter.initrd import FileSpec
from initrd_agent.install import BOOT_SCRIPT, CONFIG, PREFIX, agent_files
from initrd_agent.runtime_bundle import RuntimeBundle
from shared_spec.algorithms import alg_from_name

from .errors import CommandError, ImageBuildError, VMError, tail
from .procs import kill_group, run_command, set_parent_death_signal, track, untrack
from .swtpm import Swtpm

QEMU = "qemu-system-x86_64"
#: modules the guest loads (with their modules.dep closure). ext4 needs the crc32c shash
#: (softdep ``crypto-crc32c``) for metadata checksums; the generic one runs on any CPU.
MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4", "dm_verity")
DMSETUP_IN_INITRD = "usr/sbin/dmsetup"
SERIALS = {"data": "cvmchain-data", "hash": "cvmchain-hash", "results": "cvmchain-out"}
VERITY_NAME = "vroot"
LINEAR_NAME = "vlinear"
EXT4_BLOCK = 4096
RESULTS_BYTES = 16 * 1024 * 1024
#: file written into the data image; the guest copies it out through the verity device
PROBE_NAME = "probe.txt"


#: host programs this module runs or copies, and the Debian package of each
HOST_TOOLS = {
    QEMU: "qemu-system-x86",
    "swtpm": "swtpm",
    "swtpm_setup": "swtpm-tools",
    "mkfs.ext4": "e2fsprogs",
    "veritysetup": "cryptsetup-bin",
    "dmsetup": "dmsetup",
    "busybox": "busybox-static",
    "ldd": "libc-bin",
}
_SBIN = ("/usr/sbin", "/sbin")


class VerityBootError(VMError):
    """Building the verity guest or reading its results failed; says which step."""


def find_tool(name: str) -> str | None:
    """Full path of a host program (also in /usr/sbin and /sbin, off a user's PATH)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(name, path=path)


def missing_tools() -> list[str]:
    """``program (Debian package)`` for every host program of :data:`HOST_TOOLS` absent."""
    return ["%s (%s)" % (t, pkg) for t, pkg in HOST_TOOLS.items() if find_tool(t) is None]


def _tool(name: str) -> str:
    found = find_tool(name)
    if found is None:
        raise VerityBootError("%s is not installed (Debian package %s)"
                              % (name, HOST_TOOLS.get(name, name)))
    return found


# ------------------------------------------------------------------ host inputs


@dataclass(frozen=True)
class HostKernel:
    """A Debian kernel of this machine and its modules directory."""

    vmlinuz: Path
    version: str
    modules: Path


def find_host_kernel(boot: Path = Path("/boot"),
                     modules_root: Path = Path("/lib/modules")) -> HostKernel | None:
    """The newest ``vmlinuz-<version>`` in ``boot`` that is readable and has its modules."""
    found = []
    for path in boot.glob("vmlinuz-*"):
        version = path.name[len("vmlinuz-"):]
        mods = modules_root / version
        if os.access(path, os.R_OK) and (mods / "modules.dep").is_file():
            found.append(HostKernel(path, version, mods))
    found.sort(key=lambda k: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", k.version)])
    return found[-1] if found else None


def _module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    base = re.sub(r"\.ko(\.(xz|zst|gz))?$", "", base)
    return base.replace("-", "_")


def module_closure(modules: Path, names: Sequence[str]) -> list[Path]:
    """The module files for ``names`` and everything they depend on, dependencies first.

    Raises:
        VerityBootError: a module (or a dependency) is not in ``modules.dep``; built-in
            modules (``modules.builtin``) are skipped.
    """
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in (modules / "modules.dep").read_text().splitlines():
        target, _, rest = line.partition(":")
        if target:
            deps[_module_name(target)] = (target, rest.split())
    builtin = set()
    with_builtin = modules / "modules.builtin"
    if with_builtin.is_file():
        builtin = {_module_name(x) for x in with_builtin.read_text().split()}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, wanted_by: str) -> None:
        if name in seen or name in builtin:
            return
        if name not in deps:
            raise VerityBootError("module %s (needed by %s) is not in %s/modules.dep"
                                  % (name, wanted_by, modules))
        seen.add(name)
        target, needs = deps[name]
        for dep in needs:
            visit(_module_name(dep), name)
        order.append(modules / target)

    for n in names:
        visit(n.replace("-", "_"), "the test")
    return order


def module_bytes(path: Path) -> bytes:
    """A module's ELF image (``.ko.xz``, ``.ko.gz`` and ``.ko.zst`` are decompressed)."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return zlib.decompress(data, 47)
    if path.name.endswith(".zst"):
        return run_command(["zstd", "-dc", str(path)], what="decompress %s" % path).stdout
    return data


def library_closure(binary: Path) -> list[Path]:
    """The shared libraries and loader ``ldd`` lists for ``binary`` ([] if it is static)."""
    proc = subprocess.run([_tool("ldd"), str(binary)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        if "not a dynamic executable" in proc.stdout + proc.stderr:
            return []
        raise CommandError("ldd failed", ["ldd", str(binary)], proc.returncode,
                           tail(proc.stderr))
    libs = []
    for line in proc.stdout.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
        elif "not found" in line:
            raise VerityBootError("%s: a library is missing: %s" % (binary, line.strip()))
    return libs


# ------------------------------------------------------------------ the verity disks


@dataclass(frozen=True)
class VerityImage:
    """An ext4 data image and its dm-verity hash device, as ``veritysetup format`` made them.

    ``root_hash`` and ``salt`` are what veritysetup printed (lower-case hex); the hash
    device starts with veritysetup's superblock, so the tree starts at hash block 1.
    """

    data: Path
    hash: Path
    root_hash: str
    salt: str
    hash_type: int
    data_blocks: int
    data_block_size: int
    hash_block_size: int
    hash_algorithm: str
    probe: bytes

    def table(self, data_dev: str, hash_dev: str) -> str:
        """The device-mapper table line of the verity target over the two devices."""
        sectors = self.data_blocks * self.data_block_size // 512
        return "0 %d verity %d %s %s %d %d %d 1 %s %s %s" % (
            sectors, self.hash_type, data_dev, hash_dev, self.data_block_size,
            self.hash_block_size, self.data_blocks, self.hash_algorithm, self.root_hash,
            self.salt)


def parse_veritysetup_format(text: str) -> dict[str, str]:
    """``Key: value`` lines of ``veritysetup format`` output, keys lower-cased."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            out[key.strip().lower()] = value.strip()
    return out


def make_verity_image(workdir: Path, size_mib: int = 8) -> VerityImage:
    """Build ``data.img`` (ext4 of a small tree with a random probe file) and ``hash.img``."""
    tree = workdir / "tree"
    (tree / "etc").mkdir(parents=True, exist_ok=True)
    probe = ("cvmchain verity probe %s\n" % secrets.token_hex(16)).encode()
    (tree / PROBE_NAME).write_bytes(probe)
    (tree / "etc" / "os-release").write_text('ID=cvmchain-verity-test\n')
    data, hash_ = workdir / "data.img", workdir / "hash.img"
    data.unlink(missing_ok=True)
    hash_.unlink(missing_ok=True)
    with open(data, "wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    run_command([_tool("mkfs.ext4"), "-q", "-F", "-b", str(EXT4_BLOCK), "-L", "vroot",
                 "-d", str(tree), str(data)],
                error=ImageBuildError, what="mkfs.ext4 -d of the data image")
    proc = run_command([_tool("veritysetup"), "format", "--data-block-size", str(EXT4_BLOCK),
                        "--hash-block-size", str(EXT4_BLOCK), str(data), str(hash_)],
                       error=ImageBuildError, what="veritysetup format")
    info = parse_veritysetup_format(proc.stdout.decode())
    try:
        image = VerityImage(
            data=data, hash=hash_, root_hash=info["root hash"].lower(),
            salt=info["salt"].lower(), hash_type=int(info["hash type"]),
            data_blocks=int(info["data blocks"]),
            data_block_size=int(info["data block size"]),
            hash_block_size=int(info["hash block size"]),
            hash_algorithm=info["hash algorithm"], probe=probe)
    except (KeyError, ValueError) as exc:
        raise VerityBootError("veritysetup format printed no usable %s:\n%s"
                              % (exc, proc.stdout.decode())) from None
    if not re.fullmatch(r"[0-9a-f]{64}", image.root_hash):
        raise VerityBootError("veritysetup format: root hash %r is not sha256 hex"
                              % image.root_hash)
    return image


# ------------------------------------------------------------------ agent runs and initrd


#: where an agent run's root is: the data disk itself, a dm-linear device over it, or the
#: dm-verity device over it and the hash disk
ROOTS = ("plain", "linear", "verity")


@dataclass(frozen=True)
class AgentRun:
    """One run of the agent in the guest.

    Args:
        name: names its configuration, output and log directory (``/run/out/<name>``).
        tpm_pcr: the PCR it extends (distinct per run, so each replays from zero).
        root: one of :data:`ROOTS`, mounted read-only.
        dmsetup: ``dmsetup`` is still in the initrd (verity runs without it come last).
        dev: the agent's ``--dev`` (where it opens ``mapper/control``); a directory
            without that node makes the DM_TABLE_STATUS ioctl fail, so the agent falls back
            to ``dmsetup``.
        extra_config: more ``key=value`` lines.
    """

    name: str
    tpm_pcr: int
    root: str = "verity"
    dmsetup: bool = True
    dev: str = "/dev"
    extra_config: str = ""

    def config(self) -> str:
        """The agent.conf text of this run."""
        return ("roots=tpm\nrootfs_mode=verity\ntpm_pcr=%d\nlog_dir=/run/out/%s\n%s"
                % (self.tpm_pcr, self.name, self.extra_config))


def _order(runs: Sequence[AgentRun]) -> list[AgentRun]:
    return ([r for r in runs if r.root == "plain"] + [r for r in runs if r.root == "linear"]
            + [r for r in runs if r.root == "verity" and r.dmsetup]
            + [r for r in runs if r.root == "verity" and not r.dmsetup])


def _dm_device(lines: list[str], name: str, table: str, mount_point: str, what: str) -> None:
    """Shell lines: create dm device ``name``, mount it, record its kernel name and dev_t."""
    lines += [
        "dmsetup create %s --readonly --table \"%s\" || die 'dmsetup create %s'"
        % (name, table, name),
        "dmsetup mknodes %s" % name,
        "mount -t ext4 -o ro /dev/mapper/%s %s || die 'mount the %s device'"
        % (name, mount_point, what),
        "N=; for d in /sys/block/dm-*; do",
        "  [ \"$(cat $d/dm/name)\" = %s ] && N=${d##*/}; done" % name,
        "echo $N > $OUT/%s.name; cat /sys/block/$N/dev > $OUT/%s.dev" % (what, what),
    ]


def init_script(image: VerityImage, runs: Sequence[AgentRun]) -> str:
    """The guest's ``/init`` (BusyBox sh); see the module documentation."""
    for r in runs:
        if r.root not in ROOTS:
            raise VerityBootError("agent run %s: root %r is not one of %s"
                                  % (r.name, r.root, ", ".join(ROOTS)))
    q = shlex.quote
    lines = [
        "#!/bin/busybox sh",
        "# generated by qemu_tests.verity_boot",
        "/bin/busybox --install -s /bin",
        "export PATH=/bin:/usr/sbin",
        "mount -t proc proc /proc; mount -t sysfs sysfs /sys",
        "mount -t devtmpfs devtmpfs /dev; mount -t tmpfs tmpfs /run",
        "OUT=/run/out; mkdir -p $OUT/pcr /run/nodev /mnt/plain /mnt/linear /root",
        "RESULTS=",
        "say() { echo \"cvmchain-verity: $*\"; }",
        "finish() {",
        "  dmesg > $OUT/dmesg.txt",
        "  if [ -n \"$RESULTS\" ]; then tar -cf \"$RESULTS\" -C $OUT . && sync; fi",
        "  say poweroff; poweroff -f",
        "}",
        "die() { say \"FAILED: $*\"; echo \"$*\" > $OUT/failed; finish; }",
        "while read -r m; do insmod \"/lib/modules/$m\" || die \"insmod $m\"; done"
        " < /lib/modules/order",
        "disk() { for d in /sys/block/vd*; do",
        "  [ \"$(cat $d/serial 2>/dev/null)\" = \"$1\" ] && { echo /dev/${d##*/}; return 0; }",
        "done; return 1; }",
        "i=0",
        "until DATA=$(disk %s) && HASH=$(disk %s) && RESULTS=$(disk %s); do"
        % (SERIALS["data"], SERIALS["hash"], SERIALS["results"]),
        "  i=$((i + 1)); [ $i -gt 200 ] && die 'virtio disks not found'; usleep 50000",
        "done",
        "echo ${DATA#/dev/} > $OUT/data.name; cat /sys/block/${DATA#/dev/}/dev > $OUT/data.dev",
        "run_agent() {",
        "  say \"agent run $1 (root $2, --dev $3)\"",
        "  { [ -e /%s ] && echo dmsetup=present || echo dmsetup=absent" % DMSETUP_IN_INITRD,
        "    [ -e \"$3/mapper/control\" ] && echo control=present || echo control=absent",
        "  } > \"$OUT/$1.env\"",
        "  MICROPYPATH=/%s/agent:/%s /%s/runtime/bin/micropython-run \\" % (PREFIX, PREFIX,
                                                                            PREFIX),
        "    /%s/agent/cvmchain_agent.py --root \"$2\" --config \"/etc/cvmchain/$1.conf\" \\"
        % PREFIX,
        "    --dev \"$3\" > \"$OUT/$1.out\" 2>&1",
        "  echo $? > \"$OUT/$1.rc\"; cat \"$OUT/$1.out\"",
        "}",
    ]
    ordered = _order(runs)
    plain = [r for r in ordered if r.root == "plain"]
    if plain:
        lines.append("mount -t ext4 -o ro $DATA /mnt/plain || die 'mount the plain data disk'")
        lines += ["run_agent %s /mnt/plain %s" % (q(r.name), q(r.dev)) for r in plain]
        lines.append("umount /mnt/plain || die 'umount the plain data disk'")
    linear = [r for r in ordered if r.root == "linear"]
    if linear:
        sectors = image.data_blocks * image.data_block_size // 512
        _dm_device(lines, LINEAR_NAME, "0 %d linear $DATA 0" % sectors, "/mnt/linear",
                   "linear")
        lines += ["run_agent %s /mnt/linear %s" % (q(r.name), q(r.dev)) for r in linear]
        lines += ["umount /mnt/linear || die 'umount the linear device'",
                  "dmsetup remove %s || die 'dmsetup remove %s'" % (LINEAR_NAME, LINEAR_NAME)]
    _dm_device(lines, VERITY_NAME, image.table("$DATA", "$HASH"), "/root", "verity")
    lines.append("cp /root/%s $OUT/probe || die 'read the probe file through dm-verity'"
                 % PROBE_NAME)
    dmsetup_gone = False
    for r in ordered:
        if r.root != "verity":
            continue
        if not r.dmsetup and not dmsetup_gone:
            lines.append("rm /%s; [ ! -e /%s ] || die 'dmsetup still there'"
                         % (DMSETUP_IN_INITRD, DMSETUP_IN_INITRD))
            dmsetup_gone = True
        lines.append("run_agent %s /root %s" % (q(r.name), q(r.dev)))
    pcrs = " ".join(str(p) for p in sorted({r.tpm_pcr for r in runs}))
    lines += [
        "for b in /sys/class/tpm/tpm0/pcr-*; do for p in %s; do" % pcrs,
        "  cat $b/$p > $OUT/pcr/${b##*/pcr-}.$p",
        "done; done",
        "echo ok > $OUT/complete",
        "finish",
    ]
    return "\n".join(lines) + "\n"


def build_initrd(kernel: HostKernel, bundle: RuntimeBundle, image: VerityImage,
                 runs: Sequence[AgentRun]) -> bytes:
    """The uncompressed newc initrd of the verity guest."""
    names = [r.name for r in runs]
    if len(set(names)) != len(names) or len({r.tpm_pcr for r in runs}) != len(runs):
        raise VerityBootError("agent runs need distinct names and PCRs: %s" % names)
    files: dict[str, FileSpec] = {}
    agent = agent_files(bundle, runs[0].config())
    for path, (mode, data) in agent.items():
        if path not in (CONFIG, BOOT_SCRIPT):
            files[path] = FileSpec(content=data, mode=mode)
    for r in runs:
        files["etc/cvmchain/%s.conf" % r.name] = FileSpec(content=r.config().encode())
    busybox, dmsetup = Path(_tool("busybox")), Path(_tool("dmsetup"))
    files["bin/busybox"] = FileSpec(content=busybox.read_bytes(), mode=0o755)
    files[DMSETUP_IN_INITRD] = FileSpec(content=dmsetup.read_bytes(), mode=0o755)
    for binary in (busybox, dmsetup):
        for lib in library_closure(binary):
            files[str(lib).lstrip("/")] = FileSpec(content=lib.resolve().read_bytes(),
                                                   mode=0o755)
    order = []
    for ko in module_closure(kernel.modules, MODULES):
        name = _module_name(ko.name) + ".ko"
        files["lib/modules/" + name] = FileSpec(content=module_bytes(ko))
        order.append(name)
    files["lib/modules/order"] = FileSpec(content=("\n".join(order) + "\n").encode())
    files["init"] = FileSpec(content=init_script(image, runs).encode(), mode=0o755)
    for d in ("proc", "sys", "dev", "run", "mnt", "root", "tmp"):
        files[d] = FileSpec(directory=True, mode=0o755)
    entries = [spec.entry(path) for path, spec in files.items()]
    entries.append(CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdevmajor=5, rdevminor=1))
    return write_cpio(entries)


# ------------------------------------------------------------------ boot and results


@dataclass(frozen=True)
class AgentRunResult:
    """What one agent run left: exit status, console output, its log, the PCR per bank.

    ``environment`` is what the guest saw right before the run: ``dmsetup`` and
    ``control`` (``<dev>/mapper/control``), each ``present`` or ``absent``.
    """

    run: AgentRun
    exit_status: int
    output: str
    tpm_log: bytes | None
    pcr: dict[int, bytes]
    environment: dict[str, str]


@dataclass(frozen=True)
class VerityBootResult:
    """The guest's results (see the module documentation) and the boot's wall time."""

    runs: dict[str, AgentRunResult]
    files: dict[str, bytes] = field(repr=False)
    console_log: Path
    seconds: float

    def text(self, name: str) -> str:
        """A results file as stripped text ('' when absent)."""
        return self.files.get(name, b"").decode(errors="replace").strip()


def qemu_argv(kernel: HostKernel, initrd: Path, image: VerityImage, results: Path,
              console_log: Path, swtpm: Swtpm, memory_mib: int = 1024) -> list[str]:
    """QEMU's arguments: BIOS direct kernel boot, three virtio disks, the swtpm, no reboot."""
    accel = forced_accel() or "tcg"
    argv = [QEMU, "-name", "cvmchain-verity", "-machine", "q35", "-accel", accel,
            "-cpu", "host" if accel == "kvm" else "max", "-m", str(memory_mib), "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd),
            "-append", "console=ttyS0 panic=-1 quiet rdinit=/init",
            "-chardev", "file,id=console,path=%s" % console_log, "-serial", "chardev:console"]
    for key, path, ro in (("data", image.data, True), ("hash", image.hash, True),
                          ("results", results, False)):
        argv += ["-drive", "file=%s,if=none,id=%s,format=raw%s"
                 % (path, key, ",readonly=on" if ro else ""),
                 "-device", "virtio-blk-pci,drive=%s,serial=%s" % (key, SERIALS[key])]
    return argv + swtpm.qemu_args("tpm-tis")


def _run_qemu(argv: list[str], log: Path, timeout: float) -> int:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=set_parent_death_signal)
    track(proc.pid)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1
    finally:
        kill_group(proc.pid, grace=1.0)
        proc.wait()
        untrack(proc.pid)


def _read_results(results: Path) -> dict[str, bytes]:
    files = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(results.read_bytes()), mode="r:") as tar:
            for member in tar.getmembers():
                if member.isfile():
                    f = tar.extractfile(member)
                    if f is not None:
                        files[os.path.normpath(member.name)] = f.read()
    except tarfile.ReadError:
        return {}
    return files


def boot_verity_guest(kernel: HostKernel, bundle: RuntimeBundle, image: VerityImage,
                      runs: Sequence[AgentRun], workdir: Path, console_log: Path, *,
                      pcr_banks: tuple[str, ...] = ("sha256", "sha384"),
                      timeout: float = 240.0) -> VerityBootResult:
    """Build the initrd, boot it with a fresh swtpm, and return what the guest wrote.

    Raises:
        VerityBootError: QEMU failed or timed out, or the guest did not finish (the
            message carries the console tail and the guest's own failure note).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    console_log.parent.mkdir(parents=True, exist_ok=True)
    initrd = workdir / "initrd.cpio"
    initrd.write_bytes(build_initrd(kernel, bundle, image, runs))
    results = workdir / "results.img"
    with open(results, "wb") as f:
        f.truncate(RESULTS_BYTES)
    start = time.monotonic()
    with Swtpm(workdir / "swtpm", pcr_banks=pcr_banks) as swtpm:
        argv = qemu_argv(kernel, initrd, image, results, console_log, swtpm)
        status = _run_qemu(argv, workdir / "qemu.log", timeout)
    seconds = time.monotonic() - start
    console = console_log.read_bytes() if console_log.exists() else b""
    if status != 0:
        raise VerityBootError("QEMU %s" % ("timed out after %.0f s" % timeout if status < 0
                                            else "exited with status %d: %s" % (
                                                status, tail((workdir / "qemu.log")
                                                             .read_bytes(), 10))),
                              tail(console, 40))
    files = _read_results(results)
    if "complete" not in files:
        note = files.get("failed", b"no results on the results disk").decode(errors="replace")
        raise VerityBootError("the verity guest did not finish: %s" % note.strip(),
                              tail(console, 40))
    return VerityBootResult(_collect_runs(runs, files), files, console_log, seconds)


def _collect_runs(runs: Sequence[AgentRun],
                  files: Mapping[str, bytes]) -> dict[str, AgentRunResult]:
    out = {}
    for r in runs:
        pcr = {}
        for name, data in files.items():
            m = re.fullmatch(r"pcr/([a-z0-9_]+)\.(\d+)", name)
            if m and int(m.group(2)) == r.tpm_pcr:
                alg = alg_from_name(m.group(1))
                if alg is None:
                    raise VerityBootError("unknown PCR bank %s in the guest's sysfs" % m.group(1))
                pcr[alg] = bytes.fromhex(data.decode().strip())
        rc = files.get("%s.rc" % r.name)
        if rc is None:
            raise VerityBootError("agent run %s left no exit status" % r.name)
        out[r.name] = AgentRunResult(
            run=r, exit_status=int(rc.decode().strip()),
            output=files.get("%s.out" % r.name, b"").decode(errors="replace"),
            tpm_log=files.get("%s/tpm.log" % r.name), pcr=pcr,
            environment=dict(line.partition("=")[::2] for line in files.get(
                "%s.env" % r.name, b"").decode().split()))
    return out
