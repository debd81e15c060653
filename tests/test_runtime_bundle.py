"""The MicroPython runtime bundle: pinned, verified, and really runs."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from initrd_agent import runtime_bundle as rb


@pytest.fixture(scope="module")
def bundle() -> rb.RuntimeBundle:
    try:
        return rb.ensure_bundle()
    except rb.RuntimeBundleError as e:
        pytest.skip("Debian source unreachable: %s" % e)


def test_manifest_and_interpreter(bundle: rb.RuntimeBundle) -> None:
    m = bundle.manifest
    assert m["micropython"] == rb.MICROPYTHON_VERSION
    for name, sha in m["files"].items():
        assert rb._sha256(bundle.path / name) == sha
    out = subprocess.run([*bundle.interpreter, "-c", "import sys; print(sys.implementation)"],
                         capture_output=True, text=True, check=True).stdout
    assert "version=(1, 25" in out
    size = sum(p.stat().st_size for p in bundle.path.rglob("*") if p.is_file())
    assert size < 8 << 20


def test_sha384_ffi_matches_hashlib(bundle: rb.RuntimeBundle, tmp_path: Path) -> None:
    import hashlib
    import os

    sizes = [0, 1, 111, 112, 127, 128, 129, 1 << 20]
    for n in sizes:
        (tmp_path / ("d%d" % n)).write_bytes(os.urandom(n))
    script = tmp_path / "h.py"
    script.write_text(
        "import sys\nsys.path.insert(0, %r)\nsys.path.insert(0, %r)\n"
        "import mbedhash\nfrom shared_spec.algorithms import ALG_SHA384\n"
        "p = mbedhash.provider()\n"
        "for n in %r:\n"
        "    d = open(%r + '/d%%d' %% n, 'rb').read()\n"
        "    print(p.digest(ALG_SHA384, d).hex())\n"
        % (str(Path(rb.__file__).parent / "agent"), str(Path(rb.__file__).parent.parent),
           sizes, str(tmp_path)))
    out = subprocess.run([*bundle.interpreter, str(script)], capture_output=True, text=True,
                         check=True).stdout.split()
    want = [hashlib.sha384((tmp_path / ("d%d" % n)).read_bytes()).hexdigest() for n in sizes]
    assert out == want


def test_tampered_deb_is_refused(bundle: rb.RuntimeBundle, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    apt_cache = Path("/var/cache/apt/archives")
    debs = tmp_path / "debs"
    debs.mkdir()
    # rebuild the .debs from the pinned download by fetching again into a private dir
    work = tmp_path / "w"
    work.mkdir()
    try:
        got = rb._download(work, lambda m: None)
    except rb.RuntimeBundleError as e:
        pytest.skip("Debian source unreachable: %s" % e)
    for deb in got.glob("*.deb"):
        shutil.copy(deb, debs / deb.name)
    victim = next(debs.glob("libffi8_*.deb"))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    monkeypatch.setenv("CVMCHAIN_DEB_DIR", str(debs))
    with pytest.raises(rb.RuntimeBundleError, match="SHA-256"):
        rb.ensure_bundle(cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "runtime").glob("micropython-*"))
    assert apt_cache.exists() or True
    json.dumps(bundle.manifest)
