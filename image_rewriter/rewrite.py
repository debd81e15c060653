"""``cvmchain rewrite``: bake the agent into a CVM image and predict what it will measure.

The steps, each timed (see :class:`RewriteReport`):

1. ``validate``: ``qemu-img info`` of the input (format, size, backing chain,
   encryption); the output path, the IMA policy and the agent configuration.
2. ``copy``: ``qemu-img convert`` the input into a sparse raw work copy, in a private
   work directory next to the output. The input is only ever read.
3. ``launch``: one libguestfs appliance on the work copy; inspection refuses what
   cannot be rewritten (no Linux, not x86_64, no initramfs-tools, no kernel, no room).
4. ``install``: the agent, its runtime, configuration, IMA policy, initramfs-tools hook
   and boot script, and the GRUB drop-in; the directories the rewriter owns are
   replaced whole, so a second rewrite gives the same files.
5. ``initrd``: every installed kernel's initrd gets the agent. ``host`` (default): the
   initrd is read out, the agent merged in on the host (its compression kept, the
   local-bottom ORDER updated) and written back; ``appliance``: ``update-initramfs -u
   -k all`` runs inside the appliance (slow under TCG, the distribution's own way).
6. ``grub``: ``update-grub`` inside the appliance when kernel arguments are added
   (skipped when the drop-in is unchanged and grub.cfg already has them), then every
   ``linux`` line of grub.cfg is checked to carry each argument once.
7. ``manifest``: the rootfs manifest of the rewritten image over the agent's
   include/exclude set, read on the host (e2fsprogs' debugfs for ext2/3/4, in user
   space; or a read-only loop mount) or, where neither works, through the appliance;
   all give the same bytes.
8. ``reference``: the agent's events, digests per bank and final register values.
9. ``output``: the work copy converted to the output format, then renamed into place
   (image first, then the reference and manifest); the work directory is removed on
   success, on failure and on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from image_rewriter import guest_files as gf
from image_rewriter import qemu_img
from image_rewriter.appliance import launched
from image_rewriter.errors import ApplianceError, GuestError, ImageError, RewriteError
from image_rewriter.grub_update import run_update_grub
from image_rewriter.guest_os import GuestOS, inspect_guest
from image_rewriter.initrd import FileSpec, add_files, read_initrd, updated_order
from image_rewriter.reference_builder import build_reference
from initrd_agent.config import DEFAULT_INCLUDE, AgentConfig, ConfigError
from initrd_agent.install import BOOT_SCRIPT, agent_files
from initrd_agent.runtime_bundle import ensure_bundle
from shared_spec import agent_events as ae

POLICY_PATH = "/etc/cvmchain/ima-policy"
INITRD_MODES = ("host", "appliance")
MANIFEST_SOURCES = ("auto", "debugfs", "mount", "appliance")
StepCallback = Callable[[str, str], None]


class Interrupted(RewriteError):
    """The rewrite was interrupted (Ctrl-C or SIGTERM); nothing was written."""


@dataclass
class RewriteOptions:
    """What ``cvmchain rewrite`` was asked to do."""

    input: Path
    output: Path
    ima_policy: bytes | None = None
    ima_policy_source: str = "none"
    cmdline_add: list[str] = field(default_factory=list)
    rootfs_mode: str = "tree"
    include: list[str] = field(default_factory=lambda: list(DEFAULT_INCLUDE))
    exclude: list[str] = field(default_factory=list)
    tdx_rtmr: int = 3
    tpm_pcr: int = 15
    on_error: str = "halt"
    roots: str = "auto"
    #: the agent's TSM measurement-register directory and file pattern (None: its defaults,
    #: the tdx_guest ones); e.g. the tsm_mr_sample module's directory in the QEMU tests
    tsm_dir: str | None = None
    tsm_register: str | None = None
    reference: Path | None = None
    keylime_policy: Path | None = None
    cel_json: Path | None = None
    output_format: str = "qcow2"
    initrd_mode: str = "host"
    manifest_source: str = "auto"
    force: bool = False
    dry_run: bool = False

    def reference_path(self) -> Path:
        return self.reference or _sibling(self.output, ".reference.json")

    def manifest_path(self) -> Path:
        return _sibling(self.output, ".manifest.gz")


@dataclass
class StepTime:
    name: str
    seconds: float
    detail: str = ""


@dataclass
class RewriteReport:
    """What a rewrite did: the guest, the files, the steps and their times."""

    input: dict[str, Any] = field(default_factory=dict)
    guest: dict[str, Any] = field(default_factory=dict)
    output: str = ""
    reference: str = ""
    manifest: str = ""
    exports: dict[str, str] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    kernel_args_added: list[str] = field(default_factory=list)
    grub_updated: bool = False
    kernels: list[str] = field(default_factory=list)
    rootfs: dict[str, Any] = field(default_factory=dict)
    registers: dict[str, Any] = field(default_factory=dict)
    steps: list[StepTime] = field(default_factory=list)
    dry_run: bool = False

    @property
    def total_seconds(self) -> float:
        return round(sum(s.seconds for s in self.steps), 2)

    def to_json(self) -> dict[str, Any]:
        return {"input": self.input, "guest": self.guest, "output": self.output,
                "reference": self.reference, "manifest": self.manifest,
                "exports": self.exports, "changes": self.changes,
                "kernel_args_added": self.kernel_args_added,
                "grub_updated": self.grub_updated, "kernels": self.kernels,
                "rootfs": self.rootfs, "registers": self.registers,
                "steps": [{"name": s.name, "seconds": round(s.seconds, 2),
                           "detail": s.detail} for s in self.steps],
                "total_seconds": self.total_seconds, "dry_run": self.dry_run}


def _sibling(image: Path, suffix: str) -> Path:
    name = image.name
    for ext in (".qcow2", ".img", ".raw"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return image.with_name(name + suffix)


def agent_config(opts: RewriteOptions) -> AgentConfig:
    """The agent configuration the options describe (validated by the agent's parser)."""
    conf = AgentConfig(rootfs_mode=opts.rootfs_mode, include=tuple(opts.include),
                       exclude=tuple(opts.exclude),
                       ima_policy=POLICY_PATH if opts.ima_policy is not None else "",
                       roots=opts.roots, tdx_rtmr=opts.tdx_rtmr, tpm_pcr=opts.tpm_pcr,
                       on_error=opts.on_error)
    if opts.tsm_dir is not None:
        conf = dataclasses.replace(conf, tsm_dir=opts.tsm_dir)
    if opts.tsm_register is not None:
        conf = dataclasses.replace(conf, tsm_register=opts.tsm_register)
    try:
        AgentConfig.parse(conf.render())
    except ConfigError as e:
        raise RewriteError("agent configuration: %s" % e) from e
    return conf


@contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM (and SIGHUP) raise :class:`Interrupted` so cleanup runs as for Ctrl-C."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted("interrupted by signal %d; nothing was written" % signum)

    saved = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            saved[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


class _Steps:
    def __init__(self, report: RewriteReport, on_step: StepCallback | None) -> None:
        self.report = report
        self.on_step = on_step

    @contextmanager
    def step(self, name: str, detail: str = "") -> Iterator[StepTime]:
        if self.on_step:
            self.on_step("start", name)
        t = StepTime(name, 0.0, detail)
        start = time.monotonic()
        yield t
        t.seconds = time.monotonic() - start
        self.report.steps.append(t)
        if self.on_step:
            self.on_step("done", name)


def _check_paths(opts: RewriteOptions) -> None:
    out = opts.output.resolve()
    if out == opts.input.resolve():
        raise RewriteError("%s: the output must not be the input (the input is never "
                           "modified)" % opts.output)
    if not out.parent.is_dir():
        raise RewriteError("%s: directory does not exist" % out.parent)
    if not os.access(out.parent, os.W_OK):
        raise RewriteError("%s: directory is not writable" % out.parent)
    for p in (out, opts.reference_path(), opts.manifest_path()):
        if p.exists() and not opts.force and not opts.dry_run:
            raise RewriteError("%s exists; pass --force to replace it" % p)
    if opts.output_format not in ("qcow2", "raw"):
        raise RewriteError("output format %r: qcow2 or raw" % opts.output_format)
    if opts.initrd_mode not in INITRD_MODES:
        raise RewriteError("initrd mode %r: %s" % (opts.initrd_mode, " or ".join(INITRD_MODES)))
    if opts.manifest_source not in MANIFEST_SOURCES:
        raise RewriteError("manifest source %r: %s" % (opts.manifest_source,
                                                       ", ".join(MANIFEST_SOURCES)))
    if opts.rootfs_mode == "verity":
        raise RewriteError("--rootfs-mode verity: the rewriter cannot predict a dm-verity "
                           "root hash for an image whose root is not a verity device; "
                           "use tree or identity")


def _host_space(opts: RewriteOptions, info: qemu_img.ImageInfo) -> None:
    need = 2 * max(info.actual_size, 1) + (256 << 20)
    free = shutil.disk_usage(opts.output.resolve().parent).free
    if free < need:
        raise RewriteError("%s: %d MiB free, the rewrite needs about %d MiB (a raw work copy "
                           "and the output)" % (opts.output.parent, free >> 20, need >> 20))


def rewrite(opts: RewriteOptions, on_step: StepCallback | None = None) -> RewriteReport:
    """Rewrite ``opts.input`` into ``opts.output``; see the module docstring."""
    report = RewriteReport(dry_run=opts.dry_run)
    steps = _Steps(report, on_step)
    with steps.step("validate"):
        info = qemu_img.inspect_image(opts.input)
        _check_paths(opts)
        if not opts.dry_run:
            _host_space(opts, info)
        config = agent_config(opts)
        gf.check_kernel_args(opts.cmdline_add)
        bundle = ensure_bundle()
        initrd_files = agent_files(bundle, config.render(), opts.ima_policy)
        files = gf.guest_files(initrd_files, [])
        report.input = info.to_json()
    work = Path(tempfile.mkdtemp(prefix=".%s.cvmchain-" % opts.output.name,
                                 dir=opts.output.resolve().parent))
    try:
        with _signals_raise():
            if opts.dry_run:
                _dry_run(opts, info, files, steps, report)
                return report
            _rewrite(opts, info, config, initrd_files, files, work, steps, report)
    except KeyboardInterrupt:
        raise Interrupted("interrupted; nothing was written") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _wanted_args(g: Any, opts: RewriteOptions) -> list[str]:
    """``opts.cmdline_add`` minus what the guest's GRUB defaults already set."""
    present: set[str] = set()
    sources = ["/etc/default/grub"]
    if g.is_dir("/etc/default/grub.d"):
        sources += ["/etc/default/grub.d/" + n for n in sorted(g.ls("/etc/default/grub.d"))
                    if n.endswith(".cfg") and n != "cvmchain.cfg"]
    for path in sources:
        if g.is_file(path):
            present |= gf.grub_args_present(g.cat(path))
    return [a for a in dict.fromkeys(opts.cmdline_add) if a not in present]


def _dry_run(opts: RewriteOptions, info: qemu_img.ImageInfo, files: gf.FileMap,
             steps: _Steps, report: RewriteReport) -> None:
    with steps.step("launch"), launched(opts.input, info.format, readonly=True) as g:
        from image_rewriter.appliance import mount_guest
        from image_rewriter.guest_os import find_os_root

        root = find_os_root(g, str(opts.input))
        mount_guest(g, root, readonly=True)
        for name, (_mode, data) in sorted(files.items()):
            path = "/" + name
            if not g.is_file(path):
                report.changes.append("add " + path)
            elif g.read_file(path) != data:
                report.changes.append("replace " + path)
        args = _wanted_args(g, opts)
        if args:
            report.changes.append("add /" + gf.GRUB_DROP_IN + ": " + " ".join(args))
            report.changes.append("run update-grub")
        report.kernel_args_added = args
        kernels = [n[len("vmlinuz-"):] for n in g.ls("/boot") if n.startswith("vmlinuz-")]
        report.kernels = sorted(kernels)
        for k in report.kernels:
            report.changes.append("add the agent to /boot/initrd.img-%s" % k)
    report.output = str(opts.output)
    report.reference = str(opts.reference_path())


def _install(g: Any, guest: GuestOS, opts: RewriteOptions, files: gf.FileMap,
             initrd_files: gf.FileMap, work: Path, steps: _Steps,
             report: RewriteReport) -> None:
    with steps.step("install") as st:
        args = _wanted_args(g, opts)
        report.kernel_args_added = args
        all_files = gf.guest_files(initrd_files, args, guest.initramfs)
        drop_in = "/" + gf.GRUB_DROP_IN
        had_drop_in = bool(g.is_file(drop_in))
        grub_current = (bool(args) and had_drop_in
                        and g.read_file(drop_in) == all_files[gf.GRUB_DROP_IN][1]
                        and _grub_cfg_has(g, args))
        for owned in gf.OWNED_DIRS:
            g.rm_rf("/" + owned)
        for owned in gf.OWNED_FILES:
            if g.is_file("/" + owned):
                g.rm("/" + owned)
        tar = work / "agent.tar"
        tar.write_bytes(gf.tar_of(all_files))
        g.tar_in(str(tar), "/")
        report.changes = ["install /" + n for n in sorted(all_files)]
        st.detail = "%d files" % len(all_files)
    needs_grub = not (args and grub_current) and bool(args or had_drop_in)
    if needs_grub and not guest.has_update_grub:
        raise GuestError("%s: kernel arguments must be added (%s) but the guest has no "
                         "update-grub" % (opts.input, " ".join(args)))
    report.grub_updated = needs_grub
    report.kernels = [k.version for k in guest.kernels]
    if opts.initrd_mode == "appliance":
        with steps.step("initrd") as st:
            if guest.initramfs == "dracut":
                # per kernel, to the initrd the guest boots (Debian names it initrd.img-*,
                # dracut's default elsewhere is initramfs-*.img); generic, not host-only:
                # the appliance's devices are not the guest's
                import shlex

                for k in guest.kernels:
                    g.sh("dracut --force --no-hostonly %s %s 2>&1"
                         % (shlex.quote(k.initrd), shlex.quote(k.version)))
                st.detail = "dracut in the appliance, %d kernels" % len(guest.kernels)
            else:
                g.sh("update-initramfs -u -k all 2>&1")
                st.detail = "update-initramfs in the appliance, %d kernels" % len(guest.kernels)
        if needs_grub:
            with steps.step("grub"):
                run_update_grub(g)
    else:
        # the initrds are merged on the host while the appliance runs update-grub (two cores
        # at work; libguestfs' binding releases the GIL while it waits on the appliance)
        with steps.step("initrd+grub" if needs_grub else "initrd") as st:
            local = {}
            for i, k in enumerate(guest.kernels):
                local[k.initrd] = work / ("initrd.%d" % i)
                g.download(k.initrd, str(local[k.initrd]))
            with ThreadPoolExecutor(max_workers=1) as pool:
                merged = pool.submit(_merge_initrds, list(local.values()), initrd_files)
                grub_s = 0.0
                if needs_grub:
                    t = time.monotonic()
                    run_update_grub(g)
                    grub_s = time.monotonic() - t
                merge_s = merged.result()
            for path, file in local.items():
                g.upload(str(file), path)
                file.unlink()
            st.detail = "merged on the host, %d kernels (%.1f s)" % (len(guest.kernels), merge_s)
            if needs_grub:
                st.detail += ", during update-grub (%.1f s)" % grub_s
    if opts.cmdline_add:
        _check_grub_cfg(g, opts)


def _merge_initrds(files: list[Path], initrd_files: gf.FileMap) -> float:
    """Add the agent to each initrd file in place (host side); the seconds it took."""
    t = time.monotonic()
    for file in files:
        _merge_initrd_file(file, initrd_files)
    return time.monotonic() - t


def _merge_initrd_file(local: Path, initrd_files: gf.FileMap) -> None:
    """Merge the agent into the initrd file ``local`` in place, as its builder would have.

    A dracut initrd (``Initrd.kind()``) gets the pre-pivot hook where dracut's pre-pivot
    stage sources it, instead of the initramfs-tools boot script and its ORDER entry.
    """
    from initrd_agent.install import dracut_initrd_files

    initrd = read_initrd(local.read_bytes())
    if initrd.kind() == "dracut":
        files = dracut_initrd_files(initrd_files)
        specs = {name: FileSpec(content=data, mode=mode) for name, (mode, data) in files.items()}
    else:
        specs = {name: FileSpec(content=data, mode=mode)
                 for name, (mode, data) in initrd_files.items()}
        specs["scripts/local-bottom/ORDER"] = FileSpec(
            content=updated_order(initrd, "cvmchain", initrd_files[BOOT_SCRIPT][1]),
            mode=0o644)
    local.write_bytes(add_files(initrd, specs, method="merge"))


def _grub_cfg_has(g: Any, args: list[str]) -> bool:
    """Every linux line of the guest's grub.cfg carries each of ``args`` exactly once."""
    cfg_path = "/boot/grub/grub.cfg"
    if not g.is_file(cfg_path):
        return False
    lines = gf.linux_cmdlines(g.cat(cfg_path))
    return bool(lines) and all(words.count(a) == 1 for words in lines for a in args)


def _check_grub_cfg(g: Any, opts: RewriteOptions) -> None:
    cfg_path = "/boot/grub/grub.cfg"
    if not g.is_file(cfg_path):
        raise GuestError("%s: no %s after update-grub" % (opts.input, cfg_path))
    lines = gf.linux_cmdlines(g.cat(cfg_path))
    if not lines:
        raise GuestError("%s: %s has no linux lines" % (opts.input, cfg_path))
    for words in lines:
        for arg in opts.cmdline_add:
            n = words.count(arg)
            if n != 1:
                raise GuestError("%s: %s has %s %d times on a linux line (%s)"
                                 % (opts.input, cfg_path, arg, n, " ".join(words)))


def _rootfs(opts: RewriteOptions, config: AgentConfig, raw: Path, guest: GuestOS,
            steps: _Steps, report: RewriteReport) -> tuple[dict[str, Any], str, bytes | None]:
    from image_rewriter import rootfs_reader

    with steps.step("manifest") as st:
        part = rootfs_reader.find_partition_by_fs_uuid(raw, guest.root_fs_uuid)
        if opts.rootfs_mode == "identity":
            desc = rootfs_reader.read_identity(raw, part).descriptor()
            st.detail = "identity"
            return {"mode": "identity", "descriptor": desc}, desc, None
        manifest, source = _manifest(opts, config, raw, part)
        digest = hashlib.sha384(manifest).hexdigest()
        entries = manifest.count(b"\n")
        st.detail = "%d entries, %s" % (entries, source)
        rootfs = {"mode": "tree", "manifest_sha384": digest, "entries": entries,
                  "manifest_file": opts.manifest_path().name, "source": source,
                  "include": list(config.include), "exclude": list(config.exclude)}
        return rootfs, ae.rootfs_tree_descriptor(digest), manifest


def _manifest(opts: RewriteOptions, config: AgentConfig, raw: Path,
              part: Any) -> tuple[bytes, str]:
    from image_rewriter import rootfs_reader

    args = (list(config.include), list(config.exclude), list(config.xattrs))
    source = opts.manifest_source
    if source != "appliance":
        # auto: e2fsprogs' debugfs in user space for ext2/3/4 (an image from elsewhere
        # is never handed to the host kernel's file system driver), else a loop mount
        methods = {"auto": ("debugfs", "mount"), "debugfs": ("debugfs",),
                   "mount": ("mount",)}[source]
        last: Exception | None = None
        for method in methods:
            try:
                return rootfs_reader.native_manifest(raw, part, *args, method=method), method
            except rootfs_reader.NativeAccessError as e:
                last = e
        if source != "auto":
            assert last is not None
            raise last
    with launched(raw, "raw", readonly=True) as g:
        from image_rewriter.appliance import mount_guest
        from image_rewriter.guest_os import find_os_root

        mount_guest(g, find_os_root(g, str(opts.input)), readonly=True)
        return rootfs_reader.appliance_manifest(g, *args), "appliance"


def _rewrite(opts: RewriteOptions, info: qemu_img.ImageInfo, config: AgentConfig,
             initrd_files: gf.FileMap, files: gf.FileMap, work: Path, steps: _Steps,
             report: RewriteReport) -> None:
    raw = work / "disk.raw"
    with steps.step("copy", "%s -> raw" % info.format):
        qemu_img.convert(opts.input, info.format, raw, "raw")
    with steps.step("launch"):
        cm = launched(raw, "raw", readonly=False)
        g = cm.__enter__()
    ok = False
    try:
        with steps.step("inspect"):
            guest = inspect_guest(g, str(opts.input), raw)
            report.guest = guest.to_json()
        _install(g, guest, opts, files, initrd_files, work, steps, report)
        with steps.step("close"):
            g.umount_all()
            g.sync()
        ok = True
    except RuntimeError as exc:
        raise ApplianceError("libguestfs on %s: %s" % (opts.input, exc)) from exc
    finally:
        if ok:
            cm.__exit__(None, None, None)
        else:
            try:
                g.close()
            except RuntimeError:
                pass
    rootfs, rootfs_desc, manifest = _rootfs(opts, config, raw, guest, steps, report)
    with steps.step("reference"):
        guest_json = {k: v for k, v in report.guest.items() if k != "free_bytes"}
        image = {"input": str(opts.input), "output": opts.output.name,
                 "guest": guest_json, "kernels": report.kernels,
                 "kernel_cmdline_add": list(opts.cmdline_add),
                 "ima_policy_source": opts.ima_policy_source}
        from cloud_sdk import __version__

        ref = build_reference(config, opts.ima_policy, rootfs, rootfs_desc, image, __version__)
        ref_tmp = work / "reference.json"
        ref.save(ref_tmp)
        report.rootfs = rootfs
        report.registers = ref.to_json()["registers"]
        man_tmp = work / "manifest.gz"
        if manifest is not None:
            man_tmp.write_bytes(gzip.compress(manifest, mtime=0))
        exports = _exports(opts, config, ref, raw, guest, work)
    with steps.step("output", opts.output_format):
        out_tmp = work / ("output." + opts.output_format)
        if opts.output_format == "raw":
            os.replace(raw, out_tmp)
        else:
            qemu_img.convert(raw, "raw", out_tmp, opts.output_format)
        _fsync(out_tmp)
        os.replace(out_tmp, opts.output)
        os.replace(ref_tmp, opts.reference_path())
        if manifest is not None:
            os.replace(man_tmp, opts.manifest_path())
            report.manifest = str(opts.manifest_path())
        for final, tmp in exports.items():
            os.replace(tmp, final)
            report.exports[final.name] = str(final)
        _fsync_dir(opts.output.resolve().parent)
    report.output = str(opts.output)
    report.reference = str(opts.reference_path())


def _exports(opts: RewriteOptions, config: AgentConfig, ref: Any, raw: Path, guest: GuestOS,
             work: Path) -> dict[Path, Path]:
    out: dict[Path, Path] = {}
    if opts.cel_json is not None:
        from image_rewriter.exports import cel_json_for_reference

        tmp = work / "cel.json"
        tmp.write_text(json.dumps(cel_json_for_reference(ref), indent=1) + "\n")
        out[opts.cel_json] = tmp
    if opts.keylime_policy is not None:
        out[opts.keylime_policy] = _keylime(opts, config, raw, guest, work)
    return out


def _keylime(opts: RewriteOptions, config: AgentConfig, raw: Path, guest: GuestOS,
             work: Path) -> Path:
    """A Keylime runtime policy: the kernel's ``ima_hash`` digest of every measured file."""
    from image_rewriter import rootfs_reader
    from image_rewriter.exports import keylime_exclude_regex, keylime_runtime_policy

    hash_alg = "sha256"
    for arg in opts.cmdline_add:
        if arg.startswith("ima_hash=") and arg.split("=", 1)[1] in ("sha1", "sha256", "sha512"):
            hash_alg = arg.split("=", 1)[1]
    part = rootfs_reader.find_partition_by_fs_uuid(raw, guest.root_fs_uuid)
    try:
        files = rootfs_reader.native_file_digests(raw, part, list(config.include),
                                                  list(config.exclude), hash_alg)
    except rootfs_reader.NativeAccessError as e:
        raise RewriteError("--keylime-policy hashes the files with %s on the host (debugfs "
                           "for ext2/3/4, else a read-only loop mount): %s" % (hash_alg, e)) from e
    doc = keylime_runtime_policy(files, hash_alg=hash_alg,
                                 excludes=[keylime_exclude_regex(x) for x in config.exclude],
                                 meta={"generator": "cvmchain rewrite",
                                       "image": opts.output.name})
    tmp = work / "keylime.json"
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    return tmp


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync(path)
    except OSError:
        pass


__all__ = [
    "GuestError",
    "ImageError",
    "Interrupted",
    "RewriteOptions",
    "RewriteReport",
    "agent_config",
    "rewrite",
]
