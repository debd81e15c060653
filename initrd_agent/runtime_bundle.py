"""The MicroPython runtime bundle: Debian's micropython with its shared-library closure.

MicroPython is not in Debian 12; the newer suite's ``micropython`` package is,
built against that suite's C library. The bundle therefore carries that C
library and its loader and runs anywhere (in an initrd too)::

    bin/micropython         the interpreter (unchanged from the .deb)
    bin/micropython-run     POSIX sh wrapper: exec lib/ld-linux... --library-path lib
    lib/                    ld-linux-x86-64.so.2, libc, libm, libffi, libmbed*
    bundle.json             the package pins and the SHA-256 of every file

Packages come from the Debian source this machine's apt already uses (its URI,
read from the apt configuration, with the newer suite), downloaded with
``apt-get download`` under a private apt configuration, and are pinned by
version and SHA-256. ``CVMCHAIN_DEB_DIR`` points at pre-downloaded .debs
instead (still hash-checked).
"""

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SUITE = "trixie"
MICROPYTHON_VERSION = "1.25.0"

#: (package, version, SHA-256 of the .deb)
PINS = (
    ("micropython", "1.25.0+ds-1",
     "a2c8327c1005cbf0f15c83d1d3b94c20585135c29a97ab1483ada93b82d94a88"),
    ("libffi8", "3.4.8-2", "0ebdc340de33333639c3c63874cd4b15ac2e83dfa1ef3053b7eefaf4919f4f68"),
    ("libmbedcrypto16", "3.6.6-0.1~deb13u1",
     "b38baf2ecaca7b28b3005d34b8108ee9b17681426b20662813995e939aea6dfa"),
    ("libmbedtls21", "3.6.6-0.1~deb13u1",
     "9e280505afa5f5aa7034e494e7466c82d8e9af2eb3bf2edf46bab0bd7b62e1ac"),
    ("libmbedx509-7", "3.6.6-0.1~deb13u1",
     "e0b6630efcf9eae2e05172496576bc3235be134a6bbf8da4cf3570fba65f65b8"),
    ("libc6", "2.41-12+deb13u4",
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
here=$(dirname "$0")
lib="$here/../lib"
# MicroPython's heap is fixed at start; a root file system manifest needs room.
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$here/micropython" \
    -X "heapsize=${CVMCHAIN_MPY_HEAP:-256M}" "$@"
"""

Progress = Callable[[str], None]


class RuntimeBundleError(Exception):
    """Provisioning failed; the message names the step and the file or URI."""


@dataclass(frozen=True)
class RuntimeBundle:
    """A provisioned bundle directory."""

    path: Path

    @property
    def interpreter(self) -> list[str]:
        """argv prefix that runs MicroPython from the bundle."""
        return [str(self.path / "bin" / "micropython-run")]

    @property
    def manifest(self) -> dict:
        return dict(json.loads((self.path / "bundle.json").read_text()))


def cache_root() -> Path:
    base = os.environ.get("CVMCHAIN_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "cvmchain"


def pins_key() -> str:
    h = hashlib.sha256()
    for name, version, sha in PINS:
        h.update(("%s=%s:%s\n" % (name, version, sha)).encode())
    for src, dst in FILES:
        h.update(("%s>%s\n" % (src, dst)).encode())
    h.update(WRAPPER.encode())
    return h.hexdigest()[:12]


def debian_uri() -> str:
    """The URI of this machine's Debian archive source (not the security one)."""
    candidates: list[str] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(.+)$", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and not re.search(r"-security", suites.group(1)):
                candidates.extend(uris.group(1).split())
    lst = Path("/etc/apt/sources.list")
    if lst.exists():
        for line in lst.read_text().splitlines():
            m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and "-security" not in m.group(2):
                candidates.append(m.group(1))
    for uri in candidates:
        if "security" not in uri:
            return uri
    raise RuntimeBundleError("step 'find Debian source': no Debian archive URI in "
                             "/etc/apt/sources.list(.d); configure apt first")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run(cmd: list[str], step: str, env: dict | None = None, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise RuntimeBundleError("step '%s' failed (%s): %s" % (step, " ".join(cmd[:3]), tail))


def _download(work: Path, say: Progress) -> Path:
    """Download the pinned .debs into work/debs (or take them from CVMCHAIN_DEB_DIR)."""
    debs = work / "debs"
    debs.mkdir()
    given = os.environ.get("CVMCHAIN_DEB_DIR")
    if given:
        for name, version, _ in PINS:
            matches = list(Path(given).glob("%s_%s_*.deb" % (name, version.replace(":", "%3a"))))
            if not matches:
                raise RuntimeBundleError("step 'offline debs': %s %s not in %s"
                                         % (name, version, given))
            shutil.copy(matches[0], debs / matches[0].name)
        return debs
    uri = debian_uri()
    say("downloading MicroPython %s and its libraries from %s (%s)" % (
        MICROPYTHON_VERSION, uri, SUITE))
    etc = work / "apt"
    (etc / "lists" / "partial").mkdir(parents=True)
    (etc / "archives" / "partial").mkdir(parents=True)
    (etc / "status").write_text("")
    (etc / "sources.list").write_text(
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n"
        % (uri, SUITE))
    conf = etc / "apt.conf"
    conf.write_text("\n".join([
        'Dir::Etc::sourcelist "%s";' % (etc / "sources.list"),
        'Dir::Etc::sourceparts "/nonexistent";',
        'Dir::State "%s";' % etc,
        'Dir::State::lists "%s";' % (etc / "lists"),
        'Dir::State::status "%s";' % (etc / "status"),
        'Dir::Cache "%s";' % etc,
        'Acquire::Check-Valid-Until "false";',
        'APT::Architecture "amd64";',
        'APT::Sandbox::User "root";',
        "",
    ]))
    env = dict(os.environ, APT_CONFIG=str(conf))
    try:
        _run(["apt-get", "update"], "apt-get update of %s %s" % (uri, SUITE), env)
    except RuntimeBundleError as e:
        raise RuntimeBundleError("%s (is %s reachable?)" % (e, uri)) from None
    _run(["apt-get", "download"] + ["%s=%s" % (n, v) for n, v, _ in PINS],
         "apt-get download of the pinned packages (a pin may no longer be on the mirror)",
         env, debs)
    return debs


def _assemble(debs: Path, out: Path) -> None:
    pins = {name: (version, sha) for name, version, sha in PINS}
    root = out.parent / (out.name + ".x")
    root.mkdir()
    for deb in sorted(debs.glob("*.deb")):
        name = deb.name.split("_", 1)[0]
        if name not in pins:
            continue
        got = _sha256(deb)
        if got != pins[name][1]:
            raise RuntimeBundleError("step 'verify': %s has SHA-256 %s, pinned %s"
                                     % (deb.name, got, pins[name][1]))
        _run(["dpkg-deb", "-x", str(deb), str(root)], "extract %s" % deb.name)
        del pins[name]
    if pins:
        raise RuntimeBundleError("step 'verify': missing packages: %s" % ", ".join(pins))
    for src, dst in FILES:
        s = root / src
        if not s.exists():
            raise RuntimeBundleError("step 'assemble': %s is not in the packages" % src)
        d = out / dst
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(s.resolve(), d)
    wrapper = out / "bin" / "micropython-run"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    shutil.rmtree(root)
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file():
            files[str(p.relative_to(out))] = _sha256(p)
    manifest = {"micropython": MICROPYTHON_VERSION, "suite": SUITE,
                "packages": [{"name": n, "version": v, "sha256": s} for n, v, s in PINS],
                "files": files}
    (out / "bundle.json").write_text(json.dumps(manifest, indent=1) + "\n")


def _valid(path: Path) -> bool:
    try:
        manifest = json.loads((path / "bundle.json").read_text())
        return all(_sha256(path / f) == h for f, h in manifest["files"].items())
    except (OSError, ValueError, KeyError):
        return False


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ensure_bundle(cache_dir: Path | None = None, progress: Progress | None = None) -> RuntimeBundle:
    """The provisioned bundle, built on first use (atomically, under a lock)."""
    say = progress or (lambda msg: None)
    base = (cache_dir or cache_root()) / "runtime"
    target = base / ("micropython-%s-%s" % (MICROPYTHON_VERSION, pins_key()))
    if _valid(target):
        return RuntimeBundle(target)
    with _locked(base / ".lock"):
        if _valid(target):
            return RuntimeBundle(target)
        if target.exists():
            say("cached bundle %s fails its manifest; rebuilding" % target)
            shutil.rmtree(target)
        with tempfile.TemporaryDirectory(dir=base, prefix=".build-") as tmp:
            work = Path(tmp)
            debs = _download(work, say)
            out = work / "bundle"
            out.mkdir()
            _assemble(debs, out)
            out.rename(target)
    return RuntimeBundle(target)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m initrd_agent.runtime_bundle")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="provision the bundle and print its path")
    run = sub.add_parser("run", help="run the bundled MicroPython with ARGS")
    run.add_argument("args", nargs=argparse.REMAINDER)
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
    os.execv(bundle.interpreter[0], bundle.interpreter + args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
