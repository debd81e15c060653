"""Lay out the agent as the initrd (and the guest's ``/usr/lib/cvmchain``) holds it.

Layout inside the initrd (paths without the leading slash)::

    usr/lib/cvmchain/runtime/        the MicroPython runtime bundle, as is (own loader + libs)
    usr/lib/cvmchain/agent/*.py      the agent modules
    usr/lib/cvmchain/shared_spec/    shared_spec, vendored unchanged
    etc/cvmchain/agent.conf          the configuration (measured as the first event)
    <config.ima_policy>              the IMA policy, when one is configured
    scripts/local-bottom/cvmchain    the initramfs-tools boot script

:func:`install_agent` writes that tree under a staging directory (the image
rewriter packs it into the initrd); :func:`agent_files` returns the same files
as a mapping. A dracut initrd holds the same files but for the boot script, whose
place the pre-pivot hook takes (:data:`DRACUT_HOOK`, where dracut's ``inst_hook
pre-pivot 90`` puts it): :func:`dracut_initrd_files`. The guest's root gets the
same ``usr/lib/cvmchain`` and ``etc/cvmchain`` plus the initramfs-tools hook
(:data:`HOOK`) or the dracut module (:data:`DRACUT_MODULE`, :func:`dracut_module_files`),
so a later ``update-initramfs`` / ``dracut`` keeps the agent.
"""

from pathlib import Path

from initrd_agent.config import AgentConfig
from initrd_agent.runtime_bundle import RuntimeBundle

PACKAGE = Path(__file__).resolve().parent
SHARED_SPEC = PACKAGE.parent / "shared_spec"
PREFIX = "usr/lib/cvmchain"
CONFIG = "etc/cvmchain/agent.conf"
BOOT_SCRIPT = "scripts/local-bottom/cvmchain"
HOOK = "usr/share/initramfs-tools/hooks/cvmchain"
DRACUT_MODULE = "usr/lib/dracut/modules.d/90cvmchain"
#: the module's pre-pivot hook script (in :data:`DRACUT_MODULE`)
DRACUT_HOOK_SCRIPT = "cvmchain-pre-pivot.sh"
#: where the hook is in a dracut initrd: ``inst_hook pre-pivot 90 <script>`` installs it at
#: ``/lib/dracut/hooks/pre-pivot/90-<script>``, and dracut's pre-pivot stage sources
#: ``/lib/dracut/hooks/pre-pivot/*.sh`` (``lib`` is a link to ``usr/lib`` on merged /usr)
DRACUT_HOOK = "lib/dracut/hooks/pre-pivot/90-" + DRACUT_HOOK_SCRIPT

FileMap = dict[str, tuple[int, bytes]]


class InstallError(Exception):
    """The agent cannot be laid out (missing policy, bad configuration, ...)."""


def _tree(src: Path, dest: str, pattern: str = "*") -> FileMap:
    out = {}
    for p in sorted(src.rglob(pattern)):
        if p.is_file() and "__pycache__" not in p.parts:
            out["%s/%s" % (dest, p.relative_to(src).as_posix())] = (p.stat().st_mode & 0o777,
                                                                    p.read_bytes())
    return out


def _files(bundle_dir: Path, config_text: str, ima_policy: bytes | None,
           policy_path: str) -> FileMap:
    if not (bundle_dir / "bin" / "micropython-run").is_file():
        raise InstallError("%s is not a MicroPython runtime bundle (no bin/micropython-run)"
                           % bundle_dir)
    files = _tree(bundle_dir, PREFIX + "/runtime")
    files.update(_tree(PACKAGE / "agent", PREFIX + "/agent", "*.py"))
    files.update(_tree(SHARED_SPEC, PREFIX + "/shared_spec", "*.py"))
    files[CONFIG] = (0o644, config_text.encode())
    if ima_policy is not None:
        files[policy_path.lstrip("/")] = (0o644, ima_policy)
    script = PACKAGE / "initramfs-tools" / "scripts" / "local-bottom" / "cvmchain"
    files[BOOT_SCRIPT] = (0o755, script.read_bytes())
    return files


def agent_files(bundle: RuntimeBundle, config_text: str,
                ima_policy: bytes | None = None) -> FileMap:
    """Files of the agent for the initrd, keyed by path without a leading slash.

    The policy goes to ``/etc/cvmchain/ima-policy`` (the configuration must name it).
    """
    return _files(bundle.path, config_text, ima_policy, "/etc/cvmchain/ima-policy")


def install_agent(dest_root: Path, bundle_dir: Path, config: AgentConfig,
                  ima_policy: bytes | None = None) -> list[Path]:
    """Write the agent's initrd files under ``dest_root``; return the paths written.

    ``ima_policy`` is the policy's content, installed at ``config.ima_policy``;
    giving one without the other is an :class:`InstallError`.
    """
    if bool(config.ima_policy) != (ima_policy is not None):
        raise InstallError("config.ima_policy=%r but %s policy content given"
                           % (config.ima_policy, "a" if ima_policy is not None else "no"))
    files = _files(Path(bundle_dir), config.render(), ima_policy, config.ima_policy)
    written = []
    for name, (mode, data) in sorted(files.items()):
        path = Path(dest_root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
        written.append(path)
    return written


def hook_file() -> bytes:
    """The initramfs-tools hook (installed in the guest at :data:`HOOK`)."""
    return (PACKAGE / "initramfs-tools" / "hooks" / "cvmchain").read_bytes()


def dracut_module_files() -> FileMap:
    """The dracut module, keyed by path under :data:`DRACUT_MODULE`."""
    files = _tree(PACKAGE / "dracut" / "90cvmchain", DRACUT_MODULE)
    if DRACUT_MODULE + "/module-setup.sh" not in files:
        raise InstallError("%s has no module-setup.sh" % (PACKAGE / "dracut" / "90cvmchain"))
    return files


def dracut_hook_file() -> bytes:
    """The dracut pre-pivot hook that runs the agent (installed at :data:`DRACUT_HOOK`)."""
    return (PACKAGE / "dracut" / "90cvmchain" / DRACUT_HOOK_SCRIPT).read_bytes()


def dracut_initrd_files(initrd_files: FileMap) -> FileMap:
    """``initrd_files`` (from :func:`agent_files`) as a dracut initrd holds them.

    The initramfs-tools boot script is left out; the pre-pivot hook is added at
    :data:`DRACUT_HOOK`, executable, as ``inst_hook`` installs it.
    """
    out = {name: entry for name, entry in initrd_files.items() if name != BOOT_SCRIPT}
    out[DRACUT_HOOK] = (0o755, dracut_hook_file())
    return out
