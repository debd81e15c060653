"""The MicroPython runtime bundle: Debian's micropython with its shared-library closure.

MicroPython is not in Debian 12; Debian 13 (trixie) has ``micropython``
1.25, built against trixie's C library. The bundle therefore carries that C
library and its loader, and runs on any x86_64 Linux, in an initrd too::

    bin/micropython         the interpreter, unchanged from the .deb
    bin/micropython-run     POSIX sh wrapper: exec ../lib/ld-linux-x86-64.so.2
                            --library-path ../lib bin/micropython ARGS
    lib/                    ld-linux-x86-64.so.2, libc.so.6, libm.so.6, libffi.so.8,
                            libmbedcrypto.so.16, libmbedtls.so.21, libmbedx509.so.7
    bundle.json             package pins and the SHA-256 of every file

The directory is self-contained (every ``DT_NEEDED`` of every ELF file in it
is in ``lib/``, checked when it is built) and relocatable (the wrapper finds
``lib/`` from its own path), so the same tree is copied into the guest initrd.

Where the packages come from, in order:

1. ``$CVMCHAIN_DEB_DIR``: pre-downloaded .debs (offline builds);
2. ``<cache>/runtime/debs``: .debs kept from an earlier download;
3. ``apt-get download`` under a private apt configuration whose only source is
   this machine's own Debian archive URI (read from its apt configuration)
   with the suite ``trixie``, signed by the Debian archive keyring.

Every .deb is checked against its pinned SHA-256 before anything is
extracted. The bundle is built in a temporary directory beside its final
place and renamed into place under a lock; a cached bundle is reused only
while every file still matches ``bundle.json``.

CLI::

    python -m initrd_agent.runtime_bundle fetch          # provision, print the path
    python -m initrd_agent.runtime_bundle run -- ARGS    # exec micropython ARGS
"""

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUITE = "trixie"
MICROPYTHON_VERSION = "1.25.0"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
ARCH = "amd64"
#: apt's Acquire::Retries for the download (a network hiccup is retried, with back-off)
APT_RETRIES = 3


@dataclass(frozen=True)
class Pin:
    """One Debian package, pinned by version and by the SHA-256 of its .deb."""

    name: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        """The file name ``apt-get download`` gives the .deb."""
        return "%s_%s_%s.deb" % (self.name, self.version.replace(":", "%3a"), ARCH)


PINS = (
    Pin("micropython", "1.25.0+ds-1",
        "a2c8327c1005cbf0f15c83d1d3b94c20585135c29a97ab1483ada93b82d94a88"),
    Pin("libffi8", "3.4.8-2", "0ebdc340de33333639c3c63874cd4b15ac2e83dfa1ef3053b7eefaf4919f4f68"),
    Pin("libmbedcrypto16", "3.6.6-0.1~deb13u1",
        "b38baf2ecaca7b28b3005d34b8108ee9b17681426b20662813995e939aea6dfa"),
    Pin("libmbedtls21", "3.6.6-0.1~deb13u1",
        "9e280505afa5f5aa7034e494e7466c82d8e9af2eb3bf2edf46bab0bd7b62e1ac"),
    Pin("libmbedx509-7", "3.6.6-0.1~deb13u1",
        "e0b6630efcf9eae2e05172496576bc3235be134a6bbf8da4cf3570fba65f65b8"),
    Pin("libc6", "2.41-12+deb13u4",
        "967aa62605721081c3eb2a17650611a792aa802d76a6511d1840242623d204c9"),
)

#: files taken from the extracted packages: (path in the packages, path in the bundle)
LIBDIR = "usr/lib/x86_64-linux-gnu"
FILES = (
    ("usr/bin/micropython", "bin/micropython"),
    (LIBDIR + "/ld-linux-x86-64.so.2", "lib/ld-linux-x86-64.so.2"),
    (LIBDIR + "/libc.so.6", "lib/libc.so.6"),
    (LIBDIR + "/libm.so.6", "lib/libm.so.6"),
    (LIBDIR + "/libffi.so.8", "lib/libffi.so.8"),
    (LIBDIR + "/libmbedcrypto.so.16", "lib/libmbedcrypto.so.16"),
    (LIBDIR + "/libmbedtls.so.21", "lib/libmbedtls.so.21"),
    (LIBDIR + "/libmbedx509.so.7", "lib/libmbedx509.so.7"),
)

WRAPPER = """#!/bin/sh
# Run the bundled MicroPython with the bundle's own loader and libraries.
# no dirname: some initrds (dracut's) do not have it
case "$0" in */*) here=${0%/*} ;; *) here=. ;; esac
lib="$here/../lib"
# MicroPython's heap is fixed at start; a root file system manifest needs room.
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$here/micropython" \\
    -X "heapsize=${CVMCHAIN_MPY_HEAP:-256M}" "$@"
"""

#: what the built bundle must answer to ``micropython-run -c SMOKE``
SMOKE = "import sys, ffi; ffi.open('libmbedcrypto.so.16'); print(sys.implementation.version)"

Progress = Callable[[str], None]

# the steps named in errors
STEP_SOURCE = "find the Debian source"
STEP_UPDATE = "apt-get update"
STEP_DOWNLOAD = "apt-get download"
STEP_OFFLINE = "read CVMCHAIN_DEB_DIR"
STEP_VERIFY = "verify .deb SHA-256"
STEP_EXTRACT = "extract"
STEP_ASSEMBLE = "assemble"
STEP_SMOKE = "smoke test"


class RuntimeBundleError(Exception):
    """Provisioning failed; ``step`` names the step, the message the file or URI."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__("%s: %s" % (step, message))
        self.step = step


class SourceNotFoundError(RuntimeBundleError):
    """No Debian archive URI in this machine's apt configuration."""


class SourceUnreachableError(RuntimeBundleError):
    """``apt-get update`` of the private configuration failed."""

    def __init__(self, uri: str, stderr_tail: str) -> None:
        super().__init__(STEP_UPDATE, "cannot read %s suite %s (set CVMCHAIN_DEB_DIR to build "
                         "offline); apt said:\n%s" % (uri, SUITE, stderr_tail))
        self.uri = uri


class PinUnavailableError(RuntimeBundleError):
    """A pinned package version is no longer on the mirror."""

    def __init__(self, pin: Pin, uri: str, available: list[str]) -> None:
        super().__init__(STEP_DOWNLOAD, "%s %s is no longer in %s %s (available: %s); update "
                         "PINS in %s" % (pin.name, pin.version, uri, SUITE,
                                         ", ".join(available) or "none", __name__))
        self.pin = pin
        self.available = available


class HashMismatchError(RuntimeBundleError):
    """A .deb does not have its pinned SHA-256."""

    def __init__(self, path: Path, expected: str, got: str) -> None:
        super().__init__(STEP_VERIFY, "%s: SHA-256 %s, expected %s" % (path, got, expected))
        self.path = path
        self.expected = expected
        self.got = got


@dataclass(frozen=True)
class RuntimeBundle:
    """A provisioned bundle directory (see the module documentation for its layout)."""

    path: Path

    @property
    def interpreter(self) -> list[str]:
        """The argv prefix that runs MicroPython from the bundle."""
        return [str(self.path / "bin" / "micropython-run")]

    @property
    def manifest(self) -> dict[str, Any]:
        """``bundle.json``: ``micropython``, ``suite``, ``packages``, ``files`` (path: sha256)."""
        return dict(json.loads((self.path / "bundle.json").read_text()))

    def verify(self) -> list[str]:
        """The files that no longer match the manifest (empty when the bundle is intact)."""
        return _damaged(self.path)


def cache_root() -> Path:
    """``$CVMCHAIN_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/cvmchain``."""
    base = os.environ.get("CVMCHAIN_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "cvmchain"


def pins_key() -> str:
    """Short hash of everything that determines the bundle's content."""
    h = hashlib.sha256()
    for pin in PINS:
        h.update(("%s=%s:%s\n" % (pin.name, pin.version, pin.sha256)).encode())
    for src, dst in FILES:
        h.update(("%s>%s\n" % (src, dst)).encode())
    h.update(WRAPPER.encode())
    return h.hexdigest()[:12]


def bundle_dir(cache_dir: Path | None = None) -> Path:
    """Where the bundle for the current pins lives (whether or not it exists yet)."""
    return (cache_dir or cache_root()) / "runtime" / (
        "micropython-%s-%s" % (MICROPYTHON_VERSION, pins_key()))


# ---------------------------------------------------------------- the Debian source


def _release_codename(os_release: Path) -> str:
    with contextlib.suppress(OSError):
        m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", os_release.read_text(), re.M)
        if m:
            return m.group(1)
    return "bookworm"


def debian_uri(etc_apt: Path = Path("/etc/apt"),
               os_release: Path = Path("/etc/os-release")) -> str:
    """The URI of this machine's Debian archive (the source of its release suite).

    Read from deb822 ``*.sources`` files (``URIs:`` of an enabled ``deb``
    stanza whose ``Suites:`` holds the release codename) and one-line
    ``sources.list`` / ``*.list`` entries. Raises :class:`SourceNotFoundError`.
    """
    codename = _release_codename(os_release)
    found: list[str] = []
    parts = etc_apt / "sources.list.d"
    for path in sorted(parts.glob("*.sources")) if parts.is_dir() else []:
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.M))
            if fields.get("Enabled", "yes").strip().lower() == "no":
                continue
            if "deb" not in fields.get("Types", "").split():
                continue
            suites = fields.get("Suites", "").split()
            if codename in suites:
                found.extend(fields.get("URIs", "").split())
    lists = [etc_apt / "sources.list"]
    lists += sorted(parts.glob("*.list")) if parts.is_dir() else []
    for path in lists:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                m = re.match(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m and m.group(2) == codename:
                    found.append(m.group(1))
    for uri in found:
        if "security" not in uri:
            return uri.rstrip("/")
    raise SourceNotFoundError(
        STEP_SOURCE, "no source of suite %r in %s/sources.list or %s (*.sources, *.list); "
        "configure apt or set CVMCHAIN_DEB_DIR" % (codename, etc_apt, parts))


# ---------------------------------------------------------------- fetching .debs


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join("    " + ln for ln in text.strip().splitlines()[-lines:])


def private_apt_env(work: Path, uri: str, suite: str = SUITE) -> dict[str, str]:
    """A private apt configuration under ``work`` whose only source is ``uri suite main``;
    returns the environment that selects it (for ``apt-get download`` / ``apt-cache``)."""
    state = work / "apt"
    (state / "lists" / "partial").mkdir(parents=True)
    (state / "archives" / "partial").mkdir(parents=True)
    (state / "status").write_text("")
    (state / "sources.list").write_text(
        "deb [signed-by=%s] %s %s main\n" % (KEYRING, uri, suite))
    conf = state / "apt.conf"
    conf.write_text("".join("%s \"%s\";\n" % kv for kv in [
        ("Dir::Etc::sourcelist", state / "sources.list"),
        ("Dir::Etc::sourceparts", "/nonexistent"),
        ("Dir::Etc::preferencesparts", "/nonexistent"),
        ("Dir::State", state),
        ("Dir::State::lists", state / "lists"),
        ("Dir::State::status", state / "status"),
        ("Dir::Cache", state),
        # the newer suites' Release files on some mirrors are past Valid-Until
        ("Acquire::Check-Valid-Until", "false"),
        ("Acquire::Retries", APT_RETRIES),
        ("APT::Architecture", ARCH),
        ("APT::Architectures", ARCH),
    ] + ([
        # as root, apt-get download would drop to _apt, who cannot write to the target
        ("APT::Sandbox::User", "root"),
    ] if os.geteuid() == 0 else [])))
    return dict(os.environ, APT_CONFIG=str(conf), LC_ALL="C")


def _available_versions(name: str, env: dict[str, str]) -> list[str]:
    proc = subprocess.run(["apt-cache", "madison", name], capture_output=True, text=True,
                          env=env, check=False)
    return [line.split("|")[1].strip() for line in proc.stdout.splitlines() if "|" in line]


def download_debs(dest: Path, progress: Progress | None = None) -> list[Path]:
    """Download the pinned .debs into ``dest`` with ``apt-get download`` (not verified here).

    Raises :class:`SourceNotFoundError`, :class:`SourceUnreachableError`,
    :class:`PinUnavailableError` or :class:`RuntimeBundleError`.
    """
    say = progress or (lambda msg: None)
    uri = debian_uri()
    say("runtime bundle: downloading MicroPython %s and its libraries from %s %s"
        % (MICROPYTHON_VERSION, uri, SUITE))
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cvmchain-apt-") as tmp:
        env = private_apt_env(Path(tmp), uri)
        try:
            proc = subprocess.run(["apt-get", "-q", "update"], capture_output=True, text=True,
                                  env=env, check=False)
        except FileNotFoundError:
            raise RuntimeBundleError(STEP_UPDATE, "apt-get not found: build on Debian or set "
                                     "CVMCHAIN_DEB_DIR to the pinned .debs") from None
        lists = list((Path(tmp) / "apt" / "lists").glob("*_Packages*"))
        if proc.returncode != 0 or not lists or "Failed to fetch" in proc.stderr:
            raise SourceUnreachableError(uri, _tail(proc.stderr or proc.stdout))
        proc = subprocess.run(["apt-get", "-q", "download",
                               *("%s=%s" % (p.name, p.version) for p in PINS)],
                              capture_output=True, text=True, env=env, cwd=dest, check=False)
        if proc.returncode != 0:
            for pin in PINS:
                if re.search(r"'%s' for '%s' was not found" % (re.escape(pin.version),
                                                                re.escape(pin.name)), proc.stderr):
                    raise PinUnavailableError(pin, uri, _available_versions(pin.name, env))
            raise RuntimeBundleError(STEP_DOWNLOAD, "from %s %s:\n%s"
                                     % (uri, SUITE, _tail(proc.stderr or proc.stdout)))
    return [dest / p.filename for p in PINS]


def verify_debs(debs_dir: Path, step: str = STEP_VERIFY) -> dict[str, Path]:
    """The pinned .debs in ``debs_dir`` by package name, each checked against its SHA-256.

    Raises :class:`HashMismatchError` (with expected and actual digests) or a
    :class:`RuntimeBundleError` naming a missing file.
    """
    out = {}
    for pin in PINS:
        path = debs_dir / pin.filename
        if not path.is_file():
            raise RuntimeBundleError(step, "%s %s: %s is missing" % (pin.name, pin.version, path))
        got = sha256_file(path)
        if got != pin.sha256:
            raise HashMismatchError(path, pin.sha256, got)
        out[pin.name] = path
    return out


def _debs(cache: Path, say: Progress) -> dict[str, Path]:
    """Verified .debs: from CVMCHAIN_DEB_DIR, the .deb cache, or a fresh download."""
    given = os.environ.get("CVMCHAIN_DEB_DIR")
    if given:
        say("runtime bundle: using the .debs in %s" % given)
        return verify_debs(Path(given), STEP_OFFLINE)
    kept = cache / "debs"
    with contextlib.suppress(RuntimeBundleError):
        return verify_debs(kept)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".debs-"))
    try:
        download_debs(tmp, say)
        verify_debs(tmp)
        shutil.rmtree(kept, ignore_errors=True)
        tmp.chmod(0o755)
        tmp.rename(kept)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return verify_debs(kept)


# ---------------------------------------------------------------- assembling


def elf_needed(path: Path) -> list[str]:
    """The ``DT_NEEDED`` entries of a 64-bit little-endian ELF file ([] for other files)."""
    data = path.read_bytes()
    if data[:6] != b"\x7fELF\x02\x01":
        return []
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    needed = []
    for _name, sh_type, _f, _a, off, size, link, _i, _al, entsize in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        stroff = sections[link][4]
        for pos in range(off, off + size, entsize or 16):
            tag, val = struct.unpack_from("<qQ", data, pos)
            if tag == 0:
                break
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\0", stroff + val)
                needed.append(data[stroff + val:end].decode())
    return needed


def _assemble(debs: dict[str, Path], out: Path) -> None:
    root = out.parent / "root"
    root.mkdir()
    for name, deb in debs.items():
        try:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True,
                           text=True, check=True)
        except FileNotFoundError:
            raise RuntimeBundleError(STEP_EXTRACT, "dpkg-deb not found") from None
        except subprocess.CalledProcessError as e:
            raise RuntimeBundleError(STEP_EXTRACT, "%s (%s): %s"
                                     % (deb, name, _tail(e.stderr))) from None
    for src, dst in FILES:
        s = root / src
        if not s.exists():
            raise RuntimeBundleError(STEP_ASSEMBLE, "%s is in none of the packages" % src)
        d = out / dst
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(s.resolve(), d)
    wrapper = out / "bin" / "micropython-run"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    shutil.rmtree(root)
    present = {p.name for p in (out / "lib").iterdir()}
    for p in sorted(out.rglob("*")):
        missing = [n for n in elf_needed(p) if n not in present] if p.is_file() else []
        if missing:
            raise RuntimeBundleError(STEP_ASSEMBLE, "%s needs %s, not in the bundle; add it "
                                     "to FILES" % (p.relative_to(out), ", ".join(missing)))
    files = {str(p.relative_to(out)): sha256_file(p) for p in sorted(out.rglob("*"))
             if p.is_file()}
    manifest = {
        "micropython": MICROPYTHON_VERSION,
        "suite": SUITE,
        "packages": [{"name": p.name, "version": p.version, "sha256": p.sha256} for p in PINS],
        "files": files,
    }
    (out / "bundle.json").write_text(json.dumps(manifest, indent=1) + "\n")
    proc = subprocess.run([str(wrapper), "-c", SMOKE], capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, check=False)
    if proc.returncode != 0 or not proc.stdout.startswith("(%s" % ", ".join(
            MICROPYTHON_VERSION.split(".")[:2])):
        raise RuntimeBundleError(STEP_SMOKE, "%s -c %r exited %d:\n%s" % (
            wrapper, SMOKE, proc.returncode, _tail(proc.stderr + proc.stdout)))


def _damaged(path: Path) -> list[str]:
    """Files of the bundle at ``path`` that do not match its manifest (["bundle.json"] if bad)."""
    try:
        manifest = json.loads((path / "bundle.json").read_text())
        files = manifest["files"]
        pins = [(p["name"], p["version"], p["sha256"]) for p in manifest["packages"]]
    except (OSError, ValueError, KeyError, TypeError):
        return ["bundle.json"]
    if pins != [(p.name, p.version, p.sha256) for p in PINS]:
        return ["bundle.json"]
    bad = []
    for name, digest in files.items():
        try:
            if sha256_file(path / name) != digest:
                bad.append(name)
        except OSError:
            bad.append(name)
    return bad


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_bundle(cache_dir: Path | None = None, progress: Progress | None = None) -> RuntimeBundle:
    """The provisioned bundle for the current pins, built on first use.

    ``cache_dir`` defaults to :func:`cache_root`; the bundle lives in
    ``<cache_dir>/runtime/micropython-<version>-<pins key>/``. A cached bundle
    is returned after its files are checked against ``bundle.json``; a damaged
    one is rebuilt. Building happens under ``<cache_dir>/runtime/.lock`` in a
    temporary directory that is renamed into place, so concurrent callers
    wait and then share one result. Errors are :class:`RuntimeBundleError`
    (subclasses per step).
    """
    say = progress or (lambda msg: None)
    target = bundle_dir(cache_dir)
    base = target.parent
    if target.is_dir() and not _damaged(target):
        return RuntimeBundle(target)
    base.mkdir(parents=True, exist_ok=True)
    with _locked(base / ".lock"):
        if target.is_dir():
            bad = _damaged(target)
            if not bad:
                return RuntimeBundle(target)
            say("runtime bundle: %s fails its manifest (%s); rebuilding"
                % (target, ", ".join(bad[:3])))
            shutil.rmtree(target)
        for stale in [*base.glob(".build-*"), *base.glob(".debs-*")]:  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        started = time.monotonic()
        debs = _debs(base, say)
        with tempfile.TemporaryDirectory(dir=base, prefix=".build-") as tmp:
            out = Path(tmp) / "bundle"
            out.mkdir()
            _assemble(debs, out)
            out.rename(target)
        say("runtime bundle: built %s in %.1f s" % (target, time.monotonic() - started))
    return RuntimeBundle(target)


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``fetch`` prints the bundle path; ``run -- ARGS`` execs MicroPython with ARGS."""
    ap = argparse.ArgumentParser(prog="python -m initrd_agent.runtime_bundle",
                                 description="The MicroPython runtime bundle of cvmchain.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="provision the bundle (if needed) and print its path")
    run = sub.add_parser("run", help="exec the bundled MicroPython with ARGS (exit code and "
                         "environment, e.g. MICROPYPATH, pass through)")
    run.add_argument("args", nargs=argparse.REMAINDER, help="-- then the interpreter's arguments")
    ns = ap.parse_args(argv)
    try:
        bundle = ensure_bundle(progress=lambda m: print(m, file=sys.stderr))
    except RuntimeBundleError as e:
        print("runtime bundle: %s" % e, file=sys.stderr)
        return 2
    if ns.cmd == "fetch":
        print(bundle.path)
        return 0
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    sys.stdout.flush()
    os.execv(bundle.interpreter[0], bundle.interpreter + args)


if __name__ == "__main__":
    sys.exit(main())
