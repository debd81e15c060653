"""The MicroPython runtime bundle: pinned, verified, self-contained, and really runs.

Also the hashing of the agent (``initrd_agent/agent/mbedhash.py`` through ffi,
``purehash.py`` as the fallback) under the real interpreter, against hashlib.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from initrd_agent import runtime_bundle as rb

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "initrd_agent" / "agent"
SIZES = [0, 1, 111, 112, 127, 128, 129, 1 << 20]
ALGS = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}


@pytest.fixture(scope="module")
def bundle() -> rb.RuntimeBundle:
    try:
        return rb.ensure_bundle()
    except (rb.SourceNotFoundError, rb.SourceUnreachableError) as e:
        pytest.skip("Debian source unreachable, cannot provision the bundle: %s" % e)


@pytest.fixture(scope="module")
def good_debs(bundle: rb.RuntimeBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the pinned .debs (from the .deb cache, else downloaded)."""
    out = tmp_path_factory.mktemp("debs")
    kept = bundle.path.parent / "debs"
    try:
        rb.verify_debs(kept)
        for pin in rb.PINS:
            shutil.copy(kept / pin.filename, out / pin.filename)
    except rb.RuntimeBundleError:
        try:
            rb.download_debs(out)
        except (rb.SourceNotFoundError, rb.SourceUnreachableError) as e:
            pytest.skip("Debian source unreachable: %s" % e)
    return out


def _mpy(bundle: rb.RuntimeBundle, script: str, tmp: Path,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp / "script.py"
    path.write_text("import sys\nsys.path.insert(0, %r)\nsys.path.insert(0, %r)\n%s"
                    % (str(ROOT), str(AGENT), script))
    return subprocess.run([*bundle.interpreter, str(path)], capture_output=True, text=True,
                          env=env, timeout=300, check=False)


# ---------------------------------------------------------------- the bundle


def test_manifest_pins_and_files(bundle: rb.RuntimeBundle) -> None:
    m = bundle.manifest
    assert m["micropython"] == rb.MICROPYTHON_VERSION == "1.25.0"
    assert [(p["name"], p["version"], p["sha256"]) for p in m["packages"]] == [
        (p.name, p.version, p.sha256) for p in rb.PINS]
    assert set(m["files"]) == {dst for _, dst in rb.FILES} | {"bin/micropython-run"}
    for name, sha in m["files"].items():
        assert rb.sha256_file(bundle.path / name) == sha, name
    assert bundle.verify() == []
    size = sum(p.stat().st_size for p in bundle.path.rglob("*") if p.is_file())
    assert 3 << 20 < size < 8 << 20


def test_self_contained(bundle: rb.RuntimeBundle) -> None:
    libs = {p.name for p in (bundle.path / "lib").iterdir()}
    needed = set()
    for p in [bundle.path / "bin" / "micropython", *(bundle.path / "lib").iterdir()]:
        needed |= set(rb.elf_needed(p))
    assert "libc.so.6" in needed and "libmbedcrypto.so.16" in needed
    assert needed <= libs


def test_interpreter_is_micropython_1_25(bundle: rb.RuntimeBundle) -> None:
    out = subprocess.run([*bundle.interpreter, "-c", "import sys; print(sys.implementation)"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert "name='micropython'" in out and "version=(1, 25" in out, out


def test_relocatable(bundle: rb.RuntimeBundle, tmp_path: Path) -> None:
    moved = tmp_path / "else" / "where"
    shutil.copytree(bundle.path, moved, symlinks=True)
    assert rb.RuntimeBundle(moved).verify() == []
    out = subprocess.run(["sh", "else/where/bin/micropython-run", "-c", "print(6 * 7)"],
                         cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "42"


def test_cli_fetch_and_run_pass_exit_code_and_environment(bundle: rb.RuntimeBundle) -> None:
    env = dict(os.environ, MICROPYPATH=".frozen:/nonexistent-a:/nonexistent-b", PROBE="x1")
    fetch = subprocess.run([sys.executable, "-m", "initrd_agent.runtime_bundle", "fetch"],
                           capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    assert fetch.stdout.strip() == str(bundle.path)
    run = subprocess.run([sys.executable, "-m", "initrd_agent.runtime_bundle", "run", "--", "-c",
                          "import os, sys; print(sys.path[2:4], os.getenv('PROBE')); sys.exit(3)"],
                         capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert run.returncode == 3, run.stderr
    assert run.stdout.strip() == "['/nonexistent-a', '/nonexistent-b'] x1"


def test_tampered_deb_is_refused(good_debs: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    debs = tmp_path / "debs"
    shutil.copytree(good_debs, debs)
    victim = debs / rb.PINS[1].filename
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    monkeypatch.setenv("CVMCHAIN_DEB_DIR", str(debs))
    with pytest.raises(rb.HashMismatchError) as info:
        rb.ensure_bundle(cache_dir=tmp_path / "cache")
    e = info.value
    assert e.step == rb.STEP_VERIFY and e.path == victim
    assert e.expected == rb.PINS[1].sha256 and e.got == hashlib.sha256(data).hexdigest()
    assert e.expected in str(e) and e.got in str(e) and victim.name in str(e)
    assert sorted(p.name for p in (tmp_path / "cache" / "runtime").iterdir()) == [".lock"]


def test_offline_debs_build_the_same_bundle_and_damage_is_repaired(
        bundle: rb.RuntimeBundle, good_debs: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVMCHAIN_DEB_DIR", str(good_debs))
    built = rb.ensure_bundle(cache_dir=tmp_path / "cache")
    assert built.path != bundle.path and built.path.name == bundle.path.name
    assert built.manifest == bundle.manifest  # reproducible
    (built.path / "lib" / "libffi.so.8").write_bytes(b"not a library")
    assert built.verify() == ["lib/libffi.so.8"]
    notes: list[str] = []
    again = rb.ensure_bundle(cache_dir=tmp_path / "cache", progress=notes.append)
    assert again.path == built.path and again.verify() == []
    assert any("fails its manifest (lib/libffi.so.8)" in n for n in notes)


def test_missing_offline_deb_names_the_file(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVMCHAIN_DEB_DIR", str(tmp_path))
    with pytest.raises(rb.RuntimeBundleError, match=r"micropython_1\.25\.0\+ds-1_amd64\.deb"):
        rb.ensure_bundle(cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------- the Debian source


def _apt_tree(tmp: Path, sources: str, codename: str = "bookworm") -> tuple[Path, Path]:
    etc = tmp / "etc-apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text(sources)
    osr = tmp / "os-release"
    osr.write_text('ID=debian\nVERSION_CODENAME=%s\n' % codename)
    return etc, osr


def test_debian_uri_from_deb822_and_one_line_sources(tmp_path: Path) -> None:
    etc, osr = _apt_tree(tmp_path, (
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "# a comment\nTypes: deb\nURIs: http://mirror.invalid/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"))
    assert rb.debian_uri(etc, osr) == "http://mirror.invalid/debian"
    (etc / "sources.list.d" / "debian.sources").unlink()
    (etc / "sources.list").write_text(
        "deb http://security.invalid/debian-security bookworm-security main\n"
        "deb [arch=amd64] http://other.invalid/debian bookworm main\n")
    assert rb.debian_uri(etc, osr) == "http://other.invalid/debian"


def test_no_debian_source_is_a_clear_error(tmp_path: Path) -> None:
    etc, osr = _apt_tree(tmp_path, "Types: deb\nURIs: http://mirror.invalid/debian-security\n"
                         "Suites: bookworm-security\nComponents: main\n")
    with pytest.raises(rb.SourceNotFoundError, match="no source of suite 'bookworm'") as info:
        rb.debian_uri(etc, osr)
    assert info.value.step == rb.STEP_SOURCE


def test_unreachable_source_shows_uri_and_apt_output(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get not installed")
    monkeypatch.setattr(rb, "debian_uri", lambda: "http://127.0.0.1:9/debian")
    monkeypatch.setattr(rb, "APT_RETRIES", 0)
    with pytest.raises(rb.SourceUnreachableError) as info:
        rb.download_debs(tmp_path / "debs")
    assert info.value.uri == "http://127.0.0.1:9/debian"
    assert "http://127.0.0.1:9/debian" in str(info.value) and "apt said" in str(info.value)


def test_pin_no_longer_available(bundle: rb.RuntimeBundle, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    gone = rb.Pin("micropython", "0.0.1-1", "0" * 64)
    monkeypatch.setattr(rb, "PINS", (gone, *rb.PINS[1:]))
    try:
        with pytest.raises(rb.PinUnavailableError) as info:
            rb.download_debs(tmp_path / "debs")
    except rb.SourceUnreachableError as e:
        pytest.skip("Debian source unreachable: %s" % e)
    assert info.value.pin == gone and "1.25.0+ds-1" in info.value.available
    assert "micropython 0.0.1-1 is no longer in" in str(info.value)


# ---------------------------------------------------------------- hashing under MicroPython


def _random_files(tmp: Path) -> list[Path]:
    rnd = __import__("random").Random(1234)
    out = []
    for n in SIZES:
        p = tmp / ("d%d" % n)
        p.write_bytes(rnd.randbytes(n))
        out.append(p)
    return out


HASH_SCRIPT = """
import mbedhash
%s
p = mbedhash.provider()
for path in %r:
    data = open(path, 'rb').read()
    view = memoryview(data)
    for alg in (0x0004, 0x000B, 0x000C, 0x000D):
        s = p.new(alg)
        half = len(data) // 3
        s.update(view[:half])
        c = s.copy() if hasattr(s, 'copy') else None
        for off in range(half, len(data), 4099):
            s.update(view[off:off + 4099])
        if c is not None:
            c.update(data[half:])
            assert c.digest() == s.digest()
        print(alg, p.digest(alg, data).hex(), s.digest().hex())
"""


def _expected(files: list[Path], algs: dict[int, str]) -> list[str]:
    out = []
    for f in files:
        data = f.read_bytes()
        for alg in (0x0004, 0x000B, 0x000C, 0x000D):
            if alg in algs:
                d = hashlib.new(algs[alg], data).hexdigest()
                out.append("%d %s %s" % (alg, d, d))
    return out


def test_mbedhash_matches_hashlib_under_micropython(bundle: rb.RuntimeBundle,
                                                    tmp_path: Path) -> None:
    files = _random_files(tmp_path)
    proc = _mpy(bundle, HASH_SCRIPT % ("", [str(f) for f in files]), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == _expected(files, ALGS)


def test_pure_fallback_under_micropython_warns_once(bundle: rb.RuntimeBundle,
                                                    tmp_path: Path) -> None:
    files = [f for f in _random_files(tmp_path) if f.stat().st_size < 4096]
    script = HASH_SCRIPT % ("mbedhash.LIBRARY = 'libnot-there.so.0'", [str(f) for f in files])
    proc = _mpy(bundle, script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("warning") == 1 and "pure Python" in proc.stderr
    assert proc.stdout.splitlines() == _expected(files, ALGS)


def test_purehash_matches_hashlib_on_cpython(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(AGENT))
    import purehash

    rnd = __import__("random").Random(99)
    for n in [0, 1, 111, 112, 127, 128, 129, 255, 256, 3000]:
        data = rnd.randbytes(n)
        for ctor, name in ((purehash.sha384, "sha384"), (purehash.sha512, "sha512")):
            h = ctor()
            for off in range(0, n, 77):
                h.update(memoryview(data)[off:off + 77])
            assert h.digest() == hashlib.new(name, data).digest(), (name, n)
            assert h.copy().digest() == h.digest()
    with pytest.raises(ValueError):
        purehash.new(0x000B)


def test_manifest_is_json_with_sorted_paths(bundle: rb.RuntimeBundle) -> None:
    text = (bundle.path / "bundle.json").read_text()
    files = list(json.loads(text)["files"])
    assert files == sorted(files)


# ---------------------------------------------------------------- the MicroPython test runner

DEMO = '''
from tests.spec._compat import Skip, raises


def _helper(x):
    assert x == 2, "x is %r" % x


def test_passes():
    assert isinstance(raises(ValueError, int, "z"), ValueError)


def test_fails():
    _helper(3)


def test_errors():
    {}["k"]


def test_skips():
    raise Skip("not here")


def test_raises_nothing():
    raises(ValueError, int, "3")
'''


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
def test_mpy_runner_reports_failures_skips_and_exit_code(bundle: rb.RuntimeBundle, tmp_path: Path,
                                                         interpreter: str) -> None:
    repo = tmp_path / "repo"
    (repo / "tests" / "spec").mkdir(parents=True)
    for name in ("shared_spec", "initrd_agent", "cloud_sdk"):
        (repo / name).symlink_to(ROOT / name)
    for name in ("tests/__init__.py", "tests/mpy_runner.py", "tests/spec/__init__.py",
                 "tests/spec/_compat.py"):
        shutil.copy(ROOT / name, repo / name)
    spec = repo / "tests" / "spec"
    (spec / "test_demo.py").write_text(DEMO)
    (spec / "test_broken.py").write_text("import no_such_module\n")
    (spec / "test_modskip.py").write_text(
        "from tests.spec._compat import Skip\nraise Skip('whole module')\n")
    argv = [*bundle.interpreter] if interpreter == "micropython" else [sys.executable]
    run = subprocess.run([*argv, "tests/mpy_runner.py"], cwd=repo, capture_output=True,
                         text=True, timeout=120, check=False)
    lines = run.stdout.splitlines()
    assert run.returncode == 1, run.stdout + run.stderr
    assert lines[0].startswith("ERROR test_broken: ") and "no_such_module" in lines[0]
    assert lines[1].startswith("FAIL test_demo::test_errors: KeyError")
    assert lines[2] == "FAIL test_demo::test_fails: AssertionError: x is 3 [test_demo.py:6]"
    assert lines[3].startswith("FAIL test_demo::test_raises_nothing: AssertionError: ValueError "
                               "not raised") and "[test_demo.py:26 > _compat.py:" in lines[3]
    assert lines[4:6] == ["SKIP test_demo::test_skips: not here",
                          "SKIP test_modskip: whole module"]
    assert lines[6].startswith(interpreter) and "1 passed, 4 failed, 2 skipped" in lines[6]
    ok = subprocess.run([*argv, "tests/mpy_runner.py", "test_demo", "-k", "pass"], cwd=repo,
                        capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0 and "1 passed, 0 failed, 0 skipped" in ok.stdout, ok.stdout
    none = subprocess.run([*argv, "tests/mpy_runner.py", "test_demo", "-k", "zzz"],
                          cwd=repo, capture_output=True, text=True, timeout=120, check=False)
    assert none.returncode == 1 and "no tests selected" in none.stdout
