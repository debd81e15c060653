"""``python -m bench``: parse + replay benchmarks, cvmchain side by side with peers.

Each contender runs in its own process on the same input file, reads it into
memory, then times parse + replay from bytes (the call path users take, per
../shared/PEERS.md). The table shows medians and each peer's time as a ratio
of cvmchain's (``12.3x`` = cvmchain is 12.3 times faster). On IMA lists cvmchain
replays both TPM banks (SHA-1 and SHA-256, re-hashing every entry's template
data for each); the ``cvmchain sha1`` row replays the SHA-1 bank alone, the one
the IMA peers replay. Ratios are always against the two-bank row. cvmchain's
rows use shared_spec's optional C kernels (shared_spec/_speedups.c) when built;
the ``cvmchain python`` row runs the same two-bank replay with them off
(``CVMCHAIN_PURE_PYTHON=1``), as a machine without a C compiler would.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.inputs import write_inputs

CVMCHAIN = r"""
import sys, time
from cloud_sdk.hashing import hashlib_provider
from cloud_sdk.logs import combine, load_log
from shared_spec.replay import replay
data = open(sys.argv[1], "rb").read()
t = time.perf_counter()
lg = load_log(sys.argv[1], data=data)
kind, events, banks = combine([lg])
if lg.kind.startswith("ima"):
    # both TPM banks by default; "sha1": the one bank the IMA peers replay
    banks = [0x0004] if sys.argv[2:] == ["sha1"] else [0x0004, 0x000B]
res = replay(events, hashlib_provider(), kind, banks)
print(time.perf_counter() - t, len(events))
"""

CCTRUSTED = r"""
import sys, time
from cctrusted_base.api import CCTrustedApi
from cctrusted_base.eventlog import EventLogs, TcgEventLog
data = open(sys.argv[1], "rb").read()
ima = sys.argv[2] == "ima"
t = time.perf_counter()
logs = EventLogs(b"" if ima else data, data if ima else None, TcgEventLog.TCG_FORMAT_PCCLIENT)
logs.select(None, None)
CCTrustedApi.replay_cc_eventlog(logs.event_logs)
print(time.perf_counter() - t, len(logs.event_logs))
"""

EVIDENCE = r"""
import sys, time
from evidence_api.api import EvidenceApi
from evidence_api.eventlog import EventLogs, TcgEventLog
data = open(sys.argv[1], "rb").read()
ima = sys.argv[2] == "ima"
cc = EvidenceApi.TYPE_CC_TDX if sys.argv[2] in ("ima", "ccel") else EvidenceApi.TYPE_CC_TPM
t = time.perf_counter()
logs = EventLogs(b"" if ima else data, data if ima else None, cc, TcgEventLog.TCG_FORMAT_PCCLIENT)
logs.select(None, None)
EvidenceApi.replay_cc_eventlog(logs.event_logs)
print(time.perf_counter() - t, len(logs.event_logs))
"""


def _run_python(code: str, *args: str, timeout: float, env: dict | None = None) -> float | None:
    try:
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                             timeout=timeout, check=False,
                             env=None if env is None else {**os.environ, **env})
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        print("  (failed: %s)" % out.stderr.strip().splitlines()[-1:], file=sys.stderr)
        return None
    return float(out.stdout.split()[0])


def _run_tpm2_eventlog(path: str, timeout: float) -> float | None:
    exe = shutil.which("tpm2_eventlog")
    if exe is None:
        return None
    t = time.perf_counter()
    with open("/dev/null", "w") as devnull:
        try:
            rc = subprocess.run([exe, path], stdout=devnull, stderr=subprocess.DEVNULL,
                                timeout=timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            return None
    return time.perf_counter() - t if rc == 0 else None


TREE_SCRIPT = """
import sys, time
sys.path.insert(0, %(root)r)
sys.path.insert(0, %(agent)r)
import tree, mbedhash
t = time.time()
digest, count, nbytes = tree.write_manifest(b'/', [%(dir)r], [],
                                            ['security.capability', 'security.ima'],
                                            mbedhash.provider(), '/tmp/cvmchain-bench.manifest')
print(time.time() - t, count, nbytes)
"""


def _timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the children (user + system), stdout) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out


def bench_tree(directory: str, runs: int) -> None:
    """The agent's tree measurement (MicroPython) vs find | sort | xargs sha384sum.

    Runs alternate (agent, baseline) on a warm page cache; the ratio is of the
    median wall times. CPU seconds (user + system, all threads and processes)
    are shown too: on a shared machine they vary less than wall time. The
    agent hashes on one thread per processor, the baseline on one.
    """
    from initrd_agent.runtime_bundle import ensure_bundle

    root = Path(__file__).resolve().parent.parent
    bundle = ensure_bundle()
    script = Path(tempfile.gettempdir()) / "cvmchain-bench-tree.py"
    script.write_text(TREE_SCRIPT % {"root": str(root), "agent": str(root / "initrd_agent" /
                                                                     "agent"),
                                     "dir": directory})
    baseline_cmd = ("find %s -type f -print0 | LC_ALL=C sort -z | xargs -0 sha384sum "
                    "> /dev/null" % directory)
    subprocess.run(baseline_cmd, shell=True, check=False)  # warm the page cache
    agent_times, base_times, agent_cpu, base_cpu = [], [], [], []
    info = ""
    for _ in range(runs):
        wall, cpu, out = _timed([*bundle.interpreter, str(script)])
        agent_times.append(wall)
        agent_cpu.append(cpu)
        fields = out.split()
        info = "%s entries, %.0f MB" % (fields[1], int(fields[2]) / 1e6)
        wall, cpu, _ = _timed(["sh", "-c", baseline_cmd])
        base_times.append(wall)
        base_cpu.append(cpu)
    a, b = statistics.median(agent_times), statistics.median(base_times)
    print("tree %s (%s): agent under MicroPython %.2f s (cpu %.1f s), find|sort|xargs sha384sum "
          "%.2f s (cpu %.1f s), ratio %.2fx (target <= 1.25x); median of %d"
          % (directory, info, a, statistics.median(agent_cpu), b, statistics.median(base_cpu),
             a / b, runs))


def _speedups_state() -> str:
    """Whether cvmchain's rows run shared_spec's C kernels (imported as the rows do)."""
    out = subprocess.run([sys.executable, "-c", "from shared_spec import ima; "
                          "print(ima.SPEEDUPS is not None)"],
                         capture_output=True, text=True, check=False)
    if out.stdout.strip() == "True":
        return "built, used"
    return "not built: cvmchain's rows run Python only (scripts/setup.sh installs the compiler)"


def _median(fn, runs: int) -> float | None:
    times = []
    for _ in range(runs):
        v = fn()
        if v is None:
            return None
        times.append(v)
    return statistics.median(times)


#: what --only selects from: the agent's tree measurement, then the inputs
BENCHMARKS = ("tree", "tcg", "ccel", "ima-ascii", "ima-binary")


def _chosen(only: str | None) -> set[str] | None:
    """The benchmarks ``--only`` names (all without it); None if a name matches none."""
    if only is None:
        return set(BENCHMARKS)
    out = set()
    for word in only.split(","):
        hits = [b for b in BENCHMARKS if b.startswith(word.strip())] if word.strip() else []
        if not hits:
            return None
        out.update(hits)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5, help="runs of cvmchain per input (median)")
    ap.add_argument("--peer-runs", type=int, default=1, help="runs of each peer (median)")
    ap.add_argument("--timeout", type=float, default=300.0, help="per peer run, seconds")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--dir", default=None, help="where inputs are generated (cached)")
    ap.add_argument("--tree", metavar="DIR", default="/usr/lib",
                    help="also time the agent's tree measurement of DIR ('' to skip)")
    ap.add_argument("--only", metavar="NAMES", default=None,
                    help="run only these benchmarks, comma-separated, each a name or its "
                         "prefix: %s (e.g. 'ima' for both IMA lists)" % ", ".join(BENCHMARKS))
    args = ap.parse_args()
    chosen = _chosen(args.only)
    if chosen is None:
        ap.error("--only: choose among %s" % ", ".join(BENCHMARKS))
    if args.tree and "tree" in chosen:
        bench_tree(args.tree, 3)

    directory = Path(args.dir or Path(tempfile.gettempdir()) / "cvmchain-bench")
    inputs = {name: path for name, path in write_inputs(directory, args.events).items()
              if name in chosen}
    results = []
    print("parse + replay, %d entries per input; median of %d (cvmchain) / %d (peers)"
          % (args.events, args.runs, args.peer_runs))
    print("shared_spec C kernels: %s" % _speedups_state())
    header = "%-11s %-15s %10s %10s  %s" % ("input", "contender", "seconds", "MB", "vs cvmchain")
    print(header)
    print("-" * len(header))
    for name, path in inputs.items():
        size_mb = path.stat().st_size / 1e6
        kind = "ima" if name.startswith("ima") else name
        ours = _median(lambda p=str(path): _run_python(CVMCHAIN, p, timeout=args.timeout),
                       args.runs)
        rows = [("cvmchain", ours)]
        if kind == "ima":  # like for like with the IMA peers, which replay SHA-1 only
            rows.append(("cvmchain sha1", _median(
                lambda p=str(path): _run_python(CVMCHAIN, p, "sha1", timeout=args.timeout),
                args.runs)))
            rows.append(("cvmchain python", _median(
                lambda p=str(path): _run_python(CVMCHAIN, p, timeout=args.timeout,
                                                env={"CVMCHAIN_PURE_PYTHON": "1"}),
                args.runs)))
        if not args.no_peers:
            if name != "ima-binary":
                for peer, code in (("cctrusted-base", CCTRUSTED), ("evidence-api", EVIDENCE)):
                    def run_peer(p: str = str(path), c: str = code, k: str = kind) -> float | None:
                        return _run_python(c, p, k, timeout=args.timeout)

                    rows.append((peer, _median(run_peer, args.peer_runs)))
            if name == "tcg":
                rows.append(("tpm2_eventlog", _median(
                    lambda p=str(path): _run_tpm2_eventlog(p, args.timeout), args.peer_runs)))
        for contender, secs in rows:
            ratio = ""
            if not contender.startswith("cvmchain") and secs is not None and ours:
                ratio = "%.1fx" % (secs / ours)
            print("%-11s %-15s %10s %10.1f  %s" % (
                name, contender, "n/a" if secs is None else "%.3f" % secs, size_mb, ratio))
            results.append({"input": name, "contender": contender, "seconds": secs,
                            "events": args.events, "mb": round(size_mb, 2)})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
