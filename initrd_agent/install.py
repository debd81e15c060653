"""Lay out the agent as the initrd (and the guest's /usr/lib/cvmchain) holds it.

``agent_files`` returns {path inside the initrd: (mode, bytes)} for: the
MicroPython runtime bundle (as is), the agent modules, ``shared_spec``
vendored unchanged, the configuration, the optional IMA policy, and the
initramfs-tools boot script. The image rewriter merges them into the
guest's initrd on the host and installs the same tree plus the hook in the
guest, so a later ``update-initramfs`` keeps the agent.
"""

from pathlib import Path

from initrd_agent.runtime_bundle import RuntimeBundle

PACKAGE = Path(__file__).resolve().parent
SHARED_SPEC = PACKAGE.parent / "shared_spec"
PREFIX = "usr/lib/cvmchain"
BOOT_SCRIPT = "scripts/local-bottom/cvmchain"
HOOK = "usr/share/initramfs-tools/hooks/cvmchain"


def _tree(src: Path, dest: str, pattern: str = "*") -> dict[str, tuple[int, bytes]]:
    out = {}
    for p in sorted(src.rglob(pattern)):
        if p.is_file() and "__pycache__" not in p.parts:
            out["%s/%s" % (dest, p.relative_to(src))] = (p.stat().st_mode & 0o777,
                                                         p.read_bytes())
    return out


def agent_files(bundle: RuntimeBundle, config_text: str,
                ima_policy: bytes | None = None) -> dict[str, tuple[int, bytes]]:
    """Files of the agent for the initrd, keyed by path without a leading slash."""
    files = _tree(bundle.path, PREFIX + "/runtime")
    files.update(_tree(PACKAGE / "agent", PREFIX + "/agent", "*.py"))
    files.update(_tree(SHARED_SPEC, PREFIX + "/shared_spec", "*.py"))
    files["etc/cvmchain/agent.conf"] = (0o644, config_text.encode())
    if ima_policy is not None:
        files["etc/cvmchain/ima-policy"] = (0o644, ima_policy)
    script = PACKAGE / "initramfs-tools" / "scripts" / "local-bottom" / "cvmchain"
    files[BOOT_SCRIPT] = (0o755, script.read_bytes())
    return files


def hook_file() -> bytes:
    return (PACKAGE / "initramfs-tools" / "hooks" / "cvmchain").read_bytes()
