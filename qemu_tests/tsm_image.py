"""The TSM measurement-register guest image: Debian 12 with a newer kernel and ``tsm_mr_sample``.

There is no TDX hardware here, so the TDX register path is tested against the kernel's own
TSM measurement-register core (``drivers/virt/coco/guest/tsm-mr.c``, Linux 6.16+) with the
provider the kernel tree ships as a sample, ``samples/tsm-mr/tsm_mr_sample.c``. It emulates
registers in software through the same core ``tdx_guest`` uses, so the files look and behave
the same: ``<name>:<hash>`` under a ``measurements`` directory, a 48-byte write at offset 0
extends, a partial write fails with EINVAL, a read returns the live value.

What the variant adds to the default image (:data:`qemu_tests.recipe.DEFAULT_RECIPE`):

- the cloud kernel :data:`KERNEL_RELEASE` from Debian's newer suite :data:`SUITE` (built with
  ``CONFIG_TSM_MEASUREMENTS=y``), pinned by version and SHA-256 (:data:`KERNEL_PINS`),
  instead of Debian 12's kernel; the user space stays Debian 12 but for the newer
  ``linux-base`` the kernel pre-depends on (see :data:`DPKG_EXCLUDE` and :data:`BOOT_HOOK`
  for what it takes on Debian 12);
- ``tsm_mr_sample.ko``, compiled at build time (never committed) from the sample's source in
  Debian's ``linux-source-7.2`` of the same version, against that kernel's
  ``linux-headers``, in a throw-away ``mmdebstrap`` chroot of :data:`SUITE` (the headers need
  that suite's compiler); it goes to ``/usr/lib/modules/<release>/extra/`` and is listed in
  ``/usr/share/initramfs-tools/modules.d/``, so the initrd loads it before ``local-bottom``,
  where the agent runs.

The module's registers (``/sys/class/misc/tsm_mr_sample/measurements/``, the misc device
is named after the module): ``static_mr:sha384`` (read-only), ``config_mr:sha512``,
``rtmr0:sha256`` (live, not writable), ``rtmr1:sha384`` (writable, and the only one named
like a TDX RTMR file: :data:`SAMPLE_RTMR`), ``rtmr_crypto_agile:sha256`` / ``:sha384``
(writable aliases of rtmr0 / rtmr1) and ``report_digest:sha512`` (computed). Their initial
values are not zero: ``static_mr``, ``config_mr``, ``rtmr0`` and ``rtmr1`` start as their own
names, NUL-padded (``rtmr1`` then 43 zero bytes), so a verifier must replay from the value
the agent read before its first extend.

**Secure Boot is off for this image** (boot it with ``secure_boot=False``): the module is not
signed, and the kernel's lockdown under Secure Boot refuses unsigned modules.

Everything is cached under ``<cache>/tsm-mr/`` (the .debs, the sample source, the module,
keyed by what determines them) and the image like the default one, by recipe key, in
``<cache>/images/``. Building needs root (``mmdebstrap --mode=root``).

Command line: ``python -m qemu_tests.tsm_image [--force]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from initrd_agent.runtime_bundle import KEYRING, debian_uri, private_apt_env, sha256_file

from .errors import ImageBuildError
from .image_builder import Progress, build_guest_image, image_cli, locked
from .paths import cache_root
from .procs import run_command
from .recipe import DEFAULT_PACKAGES, GuestRecipe, LocalFile

#: the Debian suite the kernel comes from (its Release files may be past Valid-Until)
SUITE = "forky"
#: ``uname -r`` of the kernel, and the Debian version of its packages
KERNEL_RELEASE = "7.2.12+deb14-cloud-amd64"
KERNEL_PACKAGE_VERSION = "7.2.12-1"
#: the kernel tree's sample provider, as a path in linux-source's tarball
SOURCE_TARBALL = "usr/src/linux-source-7.2.tar.xz"
SAMPLE_SOURCE = "linux-source-7.2/samples/tsm-mr/tsm_mr_sample.c"
MODULE = "tsm_mr_sample"
#: the module's register directory (the misc device is named after the module)
MEASUREMENTS_DIR = "/sys/class/misc/tsm_mr_sample/measurements"
#: the sample's writable SHA-384 RTMR: ``rtmr1:sha384`` (CC MR index 2)
SAMPLE_RTMR = 1
#: packages of the module build chroot besides the pinned headers
BUILD_PACKAGES = ("make", "gcc-16", "libc6-dev")
#: the out-of-tree Kbuild file for the sample
KBUILD = "obj-m += tsm_mr_sample.o\n"
#: dpkg configuration of the guest. The newer linux-base's ``linux-run-hooks`` passes every
#: existing hook directory (``/etc/kernel/<phase>.d`` and ``/usr/share/kernel/<phase>.d``) to
#: one ``run-parts``; Debian 12's run-parts (debianutils 5.7) takes exactly one, so the
#: kernel's postinst would fail. Without ``/usr/share/kernel`` the hooks in /etc run, where
#: :data:`BOOT_HOOK` does the job of the left-out hook.
DPKG_EXCLUDE = ("# cvmchain tsm-mr image: keep linux-run-hooks to /etc/kernel (debianutils 5.7)\n"
                "path-exclude=/usr/share/kernel/*\n")
#: ``/etc/kernel/postinst.d/00-cvmchain-boot``: the newer kernel packages keep the image and
#: its config in ``/usr/lib/modules/<release>/``; Debian 12's GRUB scripts look for them in
#: /boot, and its mkinitramfs reads ``/boot/config-<release>`` (runs before initramfs-tools)
BOOT_HOOK = """#!/bin/sh
# cvmchain tsm-mr image: put the kernel image and its config where Debian 12 expects them.
set -eu
version=$1
image=$2
set -- ${DEB_MAINT_PARAMS:-configure}
[ "$1" = configure ] || exit 0
src=/usr/lib/modules/$version
[ ! -e "$src/vmlinuz" ] || cp -p "$src/vmlinuz" "$image"
[ ! -e "$src/config" ] || cp -p "$src/config" "$(dirname "$image")/config-$version"
"""
#: seconds the module build (mmdebstrap of the build chroot + make) may take
BUILD_TIMEOUT = 1200.0


@dataclass(frozen=True)
class DebPin:
    """One Debian package from :data:`SUITE`, pinned by version and by its .deb's SHA-256."""

    name: str
    version: str
    sha256: str
    arch: str = "amd64"

    @property
    def filename(self) -> str:
        """The file name ``apt-get download`` gives the .deb."""
        return "%s_%s_%s.deb" % (self.name, self.version.replace(":", "%3a"), self.arch)


_V = KERNEL_PACKAGE_VERSION
#: the kernel installed in the guest (the meta-free package set of one kernel release)
KERNEL_PINS = (
    DebPin("linux-image-" + KERNEL_RELEASE, _V,
           "a6f348408cf2fb86a8cbd8aff58919a35275d25263dfc9085296146b2bf49d9f"),
    DebPin("linux-base-" + KERNEL_RELEASE, _V,
           "ed2a648d5d7fd243750e203d51a52421fd61083de983f26cae10ce25ab9f8182"),
    DebPin("linux-binary-" + KERNEL_RELEASE, _V,
           "43451b88872589d518acba127482df16fab53e2a51e92811cbd6221ca92cb6bf"),
    DebPin("linux-modules-" + KERNEL_RELEASE, _V,
           "12e77fcb84416569f8a81cb09c4535b187b8749047df2df2b1a39ad1c9250670"),
    # pre-depended on (>= 4.17~): its kernel hooks copy the image to /boot
    DebPin("linux-base", "4.17",
           "22142de0000ed7f5a8b748198b5b2656a02a3467433f3cae141e09c7b02ba803", "all"),
)
#: what the module is built against (linux-base-<release> is a dependency of the headers)
HEADER_PINS = (
    DebPin("linux-headers-" + KERNEL_RELEASE, _V,
           "b6b98bdd93e0956049edeb2cc6851f17cf49695f277cbac7621a887508709b1c"),
    DebPin("linux-headers-7.2.12+deb14-common", _V,
           "25172b3c5c011670f9d271a882b714baf37f64ae8be212f2fea50755431f0c5c", "all"),
    DebPin("linux-kbuild-7.2.12+deb14", _V,
           "7f3250236ad2e8c2357dbce4563586915e44e89c721e29cd941ad325623ede0b"),
    KERNEL_PINS[1],
)
#: the kernel source the sample is taken from
SOURCE_PIN = DebPin("linux-source-7.2", _V,
                    "6ea01e48037651b01076e4a369d1c76051c97c3cce6f87d48b7f3a9f5fac46a8", "all")
ALL_PINS = (*KERNEL_PINS, *HEADER_PINS[:3], SOURCE_PIN)


def tsm_cache(cache_dir: Path | None = None) -> Path:
    """``<cache>/tsm-mr``: the pinned .debs, the sample source and the built module."""
    return (cache_dir if cache_dir is not None else cache_root()) / "tsm-mr"


# ---------------------------------------------------------------- the pinned packages


def _verified(debs: Path) -> dict[str, Path] | None:
    out = {}
    for pin in ALL_PINS:
        path = debs / pin.filename
        if not path.is_file() or sha256_file(path) != pin.sha256:
            return None
        out[pin.name] = path
    return out


def fetch_debs(cache_dir: Path | None = None, progress: Progress | None = None
               ) -> dict[str, Path]:
    """The pinned .debs (:data:`ALL_PINS`) by package name, downloaded once and verified.

    They come from this machine's own Debian archive URI (its apt configuration) with the
    suite :data:`SUITE`, through ``apt-get download`` under a private apt configuration.

    Raises:
        ImageBuildError: the download failed, or a .deb does not have its pinned SHA-256.
    """
    say = progress or (lambda _msg: None)
    base = tsm_cache(cache_dir)
    debs = base / "debs"
    found = _verified(debs)
    if found is not None:
        return found
    base.mkdir(parents=True, exist_ok=True)
    with locked(base / ".debs.lock"):
        found = _verified(debs)
        if found is not None:
            return found
        uri = debian_uri()
        say("downloading the %s kernel %s and linux-source from %s %s"
            % (SUITE, KERNEL_RELEASE, uri, SUITE))
        debs.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="cvmchain-apt-") as tmp:
            env = private_apt_env(Path(tmp), uri, SUITE)
            run_command(["apt-get", "-q", "update"], env=env, timeout=600,
                        error=ImageBuildError, what="apt-get update (%s %s)" % (uri, SUITE))
            run_command(["apt-get", "-q", "download",
                         *("%s=%s" % (p.name, p.version) for p in ALL_PINS)],
                        env=env, cwd=debs, timeout=1200, error=ImageBuildError,
                        what="apt-get download of the pinned %s kernel packages" % SUITE)
        for pin in ALL_PINS:
            got = sha256_file(debs / pin.filename)
            if got != pin.sha256:
                raise ImageBuildError("%s: SHA-256 %s, pinned %s"
                                      % (debs / pin.filename, got, pin.sha256))
        found = _verified(debs)
        assert found is not None
        return found


# ---------------------------------------------------------------- the module


def sample_source(cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """``tsm_mr_sample.c`` taken from the pinned ``linux-source-7.2`` (extracted once)."""
    base = tsm_cache(cache_dir)
    out = base / ("tsm_mr_sample-%s.c" % SOURCE_PIN.sha256[:16])
    if out.is_file():
        return out
    deb = fetch_debs(cache_dir, progress)[SOURCE_PIN.name]
    (progress or (lambda _msg: None))("extracting %s from %s" % (SAMPLE_SOURCE, deb.name))
    script = ('dpkg-deb --fsys-tarfile "$1" | tar -xO "./$2" | xz -dc | tar -xO "$3"')
    proc = run_command(["sh", "-c", script, "sh", str(deb), SOURCE_TARBALL, SAMPLE_SOURCE],
                       timeout=600, error=ImageBuildError,
                       what="extracting %s from %s" % (SAMPLE_SOURCE, deb))
    if b"tsm_mr_create_attribute_group" not in proc.stdout:
        raise ImageBuildError("%s in %s is not the TSM measurement-register sample"
                              % (SAMPLE_SOURCE, deb))
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(proc.stdout)
    os.replace(tmp, out)
    return out


def _module_key(source: Path) -> str:
    doc = {"kernel": KERNEL_RELEASE, "headers": [p.sha256 for p in HEADER_PINS],
           "source": sha256_file(source), "kbuild": KBUILD, "packages": BUILD_PACKAGES}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def build_module(cache_dir: Path | None = None, progress: Progress | None = None,
                 force: bool = False) -> Path:
    """``tsm_mr_sample.ko`` for :data:`KERNEL_RELEASE`, built once and cached.

    An out-of-tree ``make -C /usr/src/linux-headers-<release> M=/build modules`` in an
    ``mmdebstrap --variant=apt`` chroot of :data:`SUITE` (``/proc`` is mounted there, objtool
    needs it) that holds the pinned headers and :data:`BUILD_PACKAGES`; the chroot itself is
    never kept (``--format=null``).

    Raises:
        ImageBuildError: a step failed; the message names it and ends with its output.
    """
    say = progress or (lambda _msg: None)
    source = sample_source(cache_dir, progress)
    base = tsm_cache(cache_dir)
    out = base / ("module-" + _module_key(source)) / (MODULE + ".ko")
    if out.is_file() and not force:
        return out
    if os.geteuid() != 0:
        raise ImageBuildError("building %s needs root (mmdebstrap --mode=root)" % out.name)
    debs = fetch_debs(cache_dir, progress)
    with locked(base / ".module.lock"):
        if out.is_file() and not force:
            return out
        start = time.monotonic()
        say("building %s.ko for %s in a %s chroot" % (MODULE, KERNEL_RELEASE, SUITE))
        with tempfile.TemporaryDirectory(dir=base, prefix=".module-") as tmp:
            work = Path(tmp)
            (work / "Kbuild").write_text(KBUILD)
            sources = work / "build.sources"
            sources.write_text("Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n"
                               "Signed-By: %s\n" % (debian_uri(), SUITE, KEYRING))
            built = work / (MODULE + ".ko")
            headers = "/usr/src/linux-headers-" + KERNEL_RELEASE
            argv = [
                "mmdebstrap", "--variant=apt", "--mode=root", "--format=null",
                "--aptopt=Acquire::Check-Valid-Until \"false\"",
                "--include=" + ",".join(BUILD_PACKAGES),
                "--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount",
                *("--include=" + str(debs[p.name].resolve()) for p in HEADER_PINS),
                '--customize-hook=mkdir -p "$1/build"',
                "--customize-hook=upload %s /build/%s.c" % (source, MODULE),
                "--customize-hook=upload %s /build/Kbuild" % (work / "Kbuild"),
                '--customize-hook=chroot "$1" make -s -C %s M=/build modules' % headers,
                "--customize-hook=download /build/%s.ko %s" % (MODULE, built),
                SUITE, "/dev/null", str(sources),
            ]
            run_command(argv, timeout=BUILD_TIMEOUT, error=ImageBuildError,
                        what="building %s.ko (mmdebstrap %s + make)" % (MODULE, SUITE))
            _check_vermagic(built)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(built, out.with_suffix(".tmp"))
            os.replace(out.with_suffix(".tmp"), out)
        say("built %s in %.1f s" % (out, time.monotonic() - start))
    return out


def _check_vermagic(ko: Path) -> None:
    proc = subprocess.run(["modinfo", "-F", "vermagic", str(ko)], capture_output=True,
                          text=True, check=False)
    vermagic = proc.stdout.split()
    if not vermagic or vermagic[0] != KERNEL_RELEASE:
        raise ImageBuildError("%s: vermagic %r, expected %s (%s)"
                              % (ko, proc.stdout.strip(), KERNEL_RELEASE, proc.stderr.strip()))


# ---------------------------------------------------------------- the image


def _local(path: Path, dest: str = "", mode: int = 0o644) -> LocalFile:
    return LocalFile(source=str(path), sha256=sha256_file(path), dest=dest, mode=mode)


def tsm_recipe(cache_dir: Path | None = None, progress: Progress | None = None) -> GuestRecipe:
    """The variant's recipe (fetches the .debs and builds the module if needed).

    Debian 12's packages without its kernel, plus the pinned kernel packages (with the
    newer suite's ``linux-base``, which the kernel pre-depends on), the module and its
    initramfs-tools list, and the dpkg and kernel-hook files that let the newer kernel
    install on Debian 12 (:data:`DPKG_EXCLUDE`, :data:`BOOT_HOOK`); the customize commands
    fail the build unless the kernel is in /boot and the module in its initrd.
    """
    debs = fetch_debs(cache_dir, progress)
    ko = build_module(cache_dir, progress)
    modules_list = tsm_cache(cache_dir) / "initramfs-modules"
    modules_list.write_text("# cvmchain QEMU tests: the TSM measurement-register sample\n%s\n"
                            % MODULE)
    dpkg_cfg = tsm_cache(cache_dir) / "dpkg-no-share-kernel-hooks"
    dpkg_cfg.write_text(DPKG_EXCLUDE)
    boot_hook = tsm_cache(cache_dir) / "kernel-postinst-boot"
    boot_hook.write_text(BOOT_HOOK)
    rel = KERNEL_RELEASE
    packages = tuple(p for p in DEFAULT_PACKAGES if p != "linux-image-cloud-amd64")
    return GuestRecipe(
        packages=packages,
        variant="tsm-mr",
        local_debs=tuple(_local(debs[p.name]) for p in KERNEL_PINS),
        local_files=(
            _local(ko, "usr/lib/modules/%s/extra/%s.ko" % (rel, MODULE)),
            _local(modules_list, "usr/share/initramfs-tools/modules.d/cvmchain-tsm-mr"),
            _local(dpkg_cfg, "etc/dpkg/dpkg.cfg.d/cvmchain-no-share-kernel-hooks"),
            _local(boot_hook, "etc/kernel/postinst.d/00-cvmchain-boot", 0o755),
        ),
        customize=(
            f"test -e /boot/vmlinuz-{rel}",
            f"test -e /boot/initrd.img-{rel} || update-initramfs -c -k {rel}",
            f"lsinitramfs /boot/initrd.img-{rel} | grep -q '/extra/{MODULE}.ko$'",
        ),
    )


def build_tsm_image(cache_dir: Path | None = None, progress: Progress | None = None,
                    force: bool = False) -> Path:
    """The cached qcow2 of the variant (see the module documentation), built if needed."""
    return build_guest_image(tsm_recipe(cache_dir, progress), cache_dir, progress, force)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    return image_cli(argv, "python -m qemu_tests.tsm_image", "the tsm_mr_sample guest image",
                     build_tsm_image)


if __name__ == "__main__":
    raise SystemExit(main())
