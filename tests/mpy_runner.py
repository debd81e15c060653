"""Run the shared test modules (tests/spec/test_*.py) under MicroPython, or CPython.

    micropython tests/mpy_runner.py [-v] [-k SUBSTRING] [MODULE ...]

MODULE is ``test_tcg_log``, ``test_tcg_log.py`` or ``tests/spec/test_tcg_log.py``;
without one, every ``tests/spec/test_*.py`` runs. Every module-level function
named ``test_*`` is called without arguments; a test passes when it returns,
is skipped when it raises ``tests.spec._compat.Skip`` and fails on any other
exception (one line per failure: test, exception, innermost file:line; ``-v``
adds the traceback and a line per passing test). A module that cannot be
imported is a failure too. Exit status: 0 when nothing failed, 1 otherwise
(also when no test was selected).

The repository root and ``initrd_agent/agent`` are put on ``sys.path`` from
this file's own location, so ``MICROPYPATH`` is only needed for the frozen
modules: ``MICROPYPATH=.frozen:<root>:<root>/initrd_agent/agent`` (a set
MICROPYPATH replaces the default path, ``.frozen`` included).
"""

import gc
import os
import sys
import time


def _dirname(path):
    return path.rsplit("/", 1)[0] if "/" in path else "."


_HERE = __file__ if __file__.startswith("/") else os.getcwd() + "/" + __file__
ROOT = _dirname(_dirname(_HERE))
SPEC = ROOT + "/tests/spec"
for _p in (ROOT + "/initrd_agent/agent", ROOT):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from tests.spec._compat import Skip  # noqa: E402

IS_MICROPYTHON = sys.implementation.name == "micropython"


def _ticks():
    if IS_MICROPYTHON:
        return time.ticks_ms()
    return int(time.monotonic() * 1000)


def _elapsed(start):
    if IS_MICROPYTHON:
        return time.ticks_diff(time.ticks_ms(), start) / 1000
    return (_ticks() - start) / 1000


def _traceback(e):
    """The exception's traceback as text."""
    if IS_MICROPYTHON:
        import io

        buf = io.StringIO()
        sys.print_exception(e, buf)
        return buf.getvalue()
    import traceback

    return "".join(traceback.format_exception(type(e), e, e.__traceback__))


def _where(text):
    """``file:line`` of the innermost test-module frame of a traceback text (and of the
    innermost frame when that is elsewhere), or ''."""
    frames = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('File "') and ", line " in line:
            name = line[6:line.index('"', 6)].rsplit("/", 1)[-1]
            frames.append("%s:%s" % (name, line.split(", line ", 1)[1].split(",", 1)[0]))
    if not frames:
        return ""
    tests = [f for f in frames if f.startswith("test_")]
    if tests and tests[-1] != frames[-1]:
        return "%s > %s" % (tests[-1], frames[-1])
    return frames[-1]


def _module_names(args):
    if args:
        out = []
        for a in args:
            a = a.rsplit("/", 1)[-1]
            out.append(a[:-3] if a.endswith(".py") else a)
        return out
    return sorted(n[:-3] for n in os.listdir(SPEC) if n.startswith("test_") and n.endswith(".py"))


def _parse(argv):
    verbose = False
    keyword = None
    modules = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-v":
            verbose = True
        elif a == "-k" and i + 1 < len(argv):
            i += 1
            keyword = argv[i]
        elif a in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        else:
            modules.append(a)
        i += 1
    return verbose, keyword, modules


def _report(kind, name, e, verbose):
    text = _traceback(e)
    where = _where(text)
    print("%s %s: %s: %s%s" % (kind, name, type(e).__name__, e, " [%s]" % where if where else ""))
    if verbose:
        print(text)


def main(argv):
    verbose, keyword, selected = _parse(argv)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    start = _ticks()
    for modname in _module_names(selected):
        try:
            mod = __import__("tests.spec." + modname, None, None, ["_"])
        except Skip as e:
            counts["skipped"] += 1
            print("SKIP %s: %s" % (modname, e))
            continue
        except Exception as e:  # an unimportable module is a failure, not the end of the run
            counts["failed"] += 1
            _report("ERROR", modname, e, verbose)
            continue
        for attr in sorted(dir(mod)):
            fn = getattr(mod, attr)
            if not attr.startswith("test_") or not callable(fn):
                continue
            name = "%s::%s" % (modname, attr)
            if keyword and keyword not in name:
                continue
            try:
                fn()
            except Skip as e:
                counts["skipped"] += 1
                print("SKIP %s: %s" % (name, e))
            except Exception as e:
                counts["failed"] += 1
                _report("FAIL", name, e, verbose)
            else:
                counts["passed"] += 1
                if verbose:
                    print("PASS %s" % name)
        gc.collect()
    impl = sys.implementation
    total = counts["passed"] + counts["failed"] + counts["skipped"]
    print("%s %s: %d passed, %d failed, %d skipped in %.2f s" % (
        impl.name, ".".join(str(v) for v in impl.version[:3]), counts["passed"],
        counts["failed"], counts["skipped"], _elapsed(start)))
    if total == 0:
        print("no tests selected")
        return 1
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
